/*
 * saga_barrier.h: exactly-once effects for participants that keep their data
 * in PostgreSQL.
 *
 * sagad delivers every step at least once: after a crash, a lost connection,
 * a timeout or a resend to another replica, the same action or compensation
 * can arrive twice, a compensation can arrive for an action that never ran
 * (it timed out on the way), and an action can arrive after its own
 * compensation. The barrier turns these into no-ops:
 *
 *   saga_barrier_run(db, step, reply, fn, user)
 *
 * opens a transaction on the participant's own connection `db`, records the
 * step (saga id, step name, action or compensation) in the table
 * saga_barrier, runs fn() inside that transaction for the business writes,
 * and records fn's outcome in the same transaction before committing. So the
 * business writes and the record commit together or not at all:
 *
 *   - a duplicate delivery of an action or compensation does not run fn; the
 *     first recorded outcome (success with its result, or business failure)
 *     is replied again (SAGA_BARRIER_DUPLICATE);
 *   - a compensation whose action never ran (or failed for certain) does not
 *     run fn; it is recorded and succeeds (SAGA_BARRIER_NULL_COMPENSATION);
 *   - an action that arrives after its compensation does not run fn; it is
 *     refused with a business failure (SAGA_BARRIER_REFUSED), so it cannot
 *     apply late;
 *   - replicas of one participant sharing one database share the barrier: a
 *     step resent to another replica is caught the same way. Two replicas
 *     running the same step at once serialize on the barrier row.
 *
 * A retryable outcome (saga_reply_retry, no reply, or a database error)
 * rolls everything back and records nothing, so the next attempt runs fn
 * afresh. A business failure rolls back fn's writes (a savepoint) but
 * records the failure, so a duplicate gets the same failure.
 *
 * The table is created by saga_barrier_migrate(), or by applying
 * share/saga/sql/saga_barrier.sql to the participant's database.
 *
 * Rules for fn: use only `db` for the writes that must be exactly-once; do
 * not COMMIT or ROLLBACK (the barrier does); reply exactly once as in any
 * handler. `db` must be idle (no transaction open) when saga_barrier_run is
 * called and used by one thread at a time: give each handler thread its own
 * connection (the example participants keep one per thread).
 */
#ifndef SAGA_BARRIER_H
#define SAGA_BARRIER_H

#include <libpq-fe.h>

#include "saga.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What saga_barrier_run did; the reply is set in every case. */
typedef enum saga_barrier_result {
	SAGA_BARRIER_RAN = 0,               /* fn ran; its outcome was recorded unless retryable */
	SAGA_BARRIER_DUPLICATE = 1,         /* seen before: the first outcome replied again */
	SAGA_BARRIER_NULL_COMPENSATION = 2, /* compensation without its action: recorded, success */
	SAGA_BARRIER_REFUSED = 3,           /* action after its compensation: business failure */
	SAGA_BARRIER_DB_ERROR = 4           /* database error: rolled back, replied retry */
} saga_barrier_result;

/* The business part of a handler, run inside the barrier's transaction. */
typedef void (*saga_barrier_fn)(PGconn *db, const saga_step *step, saga_reply *reply, void *user);

/* Creates the saga_barrier table and its index if they do not exist.
 * Returns SAGA_OK, or SAGA_EDB with PostgreSQL's message in err. */
SAGA_API int saga_barrier_migrate(PGconn *db, char *err, size_t errlen);

/* Runs fn for step exactly once per (saga, step, kind), as described above. */
SAGA_API saga_barrier_result saga_barrier_run(
    PGconn *db, const saga_step *step, saga_reply *reply, saga_barrier_fn fn, void *user);

/* Text for a saga_barrier_result ("ran", "duplicate", ...). */
SAGA_API const char *saga_barrier_result_name(saga_barrier_result r);

#ifdef __cplusplus
}
#endif

#endif
