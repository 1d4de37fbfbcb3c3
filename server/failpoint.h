/*
 * failpoint: faults sagad injects into itself, for the fault suite only
 * (--failpoints, never set in production). A spec is a comma-separated
 * list of NAME:N. For the kill points, sagad _exit(137)s (as after
 * kill -9: nothing flushed, nothing cleaned up) the Nth time it reaches
 * the point; for dup-dispatch, every Nth dispatched step is sent twice.
 *
 *   after-commit         a batch that owes dispatches has committed, and
 *                        none of them has been sent
 *   after-dispatch       a WorkBatch has been handed to nng, its outcomes
 *                        not yet received
 *   before-report-commit a Report's outcomes are applied in memory, not yet
 *                        committed (nor acknowledged)
 *   mid-compensation     a batch holding a compensation has committed
 *   dup-dispatch         duplicate delivery of a step (same attempt, same
 *                        idempotency key), as a resend would produce
 *   slow-register        not a kill point: every register waits N ms
 *                        before it is stored (so a test can act during one)
 *   drop-start-reply     not a kill point: the Nth new saga's start reply
 *                        is lost with its connection (closed instead of
 *                        answered), after the start is durable, as when the
 *                        network fails at that moment; the client resends
 */
#ifndef SAGAD_FAILPOINT_H
#define SAGAD_FAILPOINT_H

#include <stdbool.h>
#include <stddef.h>

enum fp_point {
	FP_AFTER_COMMIT,
	FP_AFTER_DISPATCH,
	FP_BEFORE_REPORT_COMMIT,
	FP_MID_COMPENSATION,
	FP_DUP_DISPATCH,
	FP_SLOW_REGISTER,
	FP_DROP_START_REPLY,
	FP_N
};

/* Parses the spec ("" = none). Returns 0, or -1 naming the bad entry in
 * err. */
int fp_init(const char *spec, char *err, size_t errlen);
/* Counts a pass through point p; true when this pass is the one (kill
 * points: the Nth; dup-dispatch: every Nth). */
bool fp_hit(enum fp_point p);
/* Counts a pass and, if it is the Nth, logs and _exit(137)s. */
void fp_kill(enum fp_point p);
/* For the points that take a value (slow-register: milliseconds): sleeps
 * that long, saying so in the log, if the point is set. */
void fp_delay(enum fp_point p);

#endif
