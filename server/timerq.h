/*
 * timerq: a binary min-heap of intrusive, cancellable timers. A timer is a
 * tq_node embedded in whatever it times (a step, a parked poll, a wait);
 * the node knows its heap position, so cancelling or re-arming is
 * O(log n) and nothing stale is left behind: the heap holds exactly the
 * armed timers (with 30 s step timeouts at tens of thousands of steps per
 * second, lazily skipped stale entries would number in the millions).
 *
 * A node carries its own callback (as nng's timer nodes do): whoever
 * armed it handles its expiry, so there is no central switch over kinds
 * of timers. Single-threaded: the engine's, under its mutex.
 */
#ifndef SAGAD_TIMERQ_H
#define SAGAD_TIMERQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct tq_node tq_node;
/* Called when t is due; t is disarmed by then and may be armed again. */
typedef void (*tq_fn)(tq_node *t);

struct tq_node {
	int64_t when_ms; /* monotonic deadline */
	int32_t idx;     /* position in the heap; -1 = not armed */
	tq_fn fn;        /* what its expiry does (container_of finds the owner) */
};

typedef struct timerq {
	tq_node **v;
	size_t n, cap;
	/* Told when a timer is armed before every other one (the thread that
	 * sleeps until the first one must wake earlier); may be NULL. */
	void (*on_sooner)(int64_t when_ms, void *arg);
	void *arg;
} timerq;

static inline void
tq_node_init(tq_node *t, tq_fn fn)
{
	t->when_ms = 0;
	t->idx = -1;
	t->fn = fn;
}

static inline int
tq_armed(const tq_node *t)
{
	return t->idx >= 0;
}

/* Arms t for when_ms (re-arms if armed). 0 or SAGA_ENOMEM. */
int tq_arm(timerq *q, tq_node *t, int64_t when_ms);
/* The same, for callers that cannot route around a lost timer (a step
 * would wait forever): out of memory is logged and aborts. */
void tq_arm_must(timerq *q, tq_node *t, int64_t when_ms);
/* Disarms t; no-op if not armed. */
void tq_cancel(timerq *q, tq_node *t);
/* The earliest timer, or NULL. */
tq_node *tq_peek(const timerq *q);
/* Removes and returns the earliest timer if due at now_ms, else NULL. */
tq_node *tq_pop_due(timerq *q, int64_t now_ms);
/* Runs the callback of every timer due at now_ms, earliest first (a
 * callback may arm and cancel timers). Returns how many ran. */
size_t tq_run_due(timerq *q, int64_t now_ms);
void tq_free(timerq *q);

#endif
