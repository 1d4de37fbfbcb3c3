/*
 * timerq: a binary min-heap of intrusive, cancellable timers. A timer is a
 * tq_node embedded in whatever it times (a step, a parked poll, a wait);
 * the node knows its heap position, so cancelling or re-arming is
 * O(log n) and nothing stale is left behind: the heap holds exactly the
 * armed timers (with 30 s step timeouts at tens of thousands of steps per
 * second, lazily skipped stale entries would number in the millions).
 * Single-threaded: the engine's.
 */
#ifndef SAGAD_TIMERQ_H
#define SAGAD_TIMERQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct tq_node {
	int64_t when_ms; /* monotonic deadline */
	int32_t idx;     /* position in the heap; -1 = not armed */
	uint8_t type;    /* owner's tag: what kind of timer */
	uint8_t kind;    /* owner's extra tag */
} tq_node;

typedef struct timerq {
	tq_node **v;
	size_t n, cap;
} timerq;

#define TQ_NODE_INIT        \
	{                   \
		0, -1, 0, 0 \
	}

static inline void
tq_node_init(tq_node *t)
{
	t->when_ms = 0;
	t->idx = -1;
	t->type = 0;
	t->kind = 0;
}

static inline int
tq_armed(const tq_node *t)
{
	return t->idx >= 0;
}

/* Arms t for when_ms (re-arms if armed). 0 or SAGA_ENOMEM. */
int tq_arm(timerq *q, tq_node *t, int64_t when_ms);
/* Disarms t; no-op if not armed. */
void tq_cancel(timerq *q, tq_node *t);
/* The earliest timer, or NULL. */
tq_node *tq_peek(const timerq *q);
/* Removes and returns the earliest timer if due at now_ms, else NULL. */
tq_node *tq_pop_due(timerq *q, int64_t now_ms);
void tq_free(timerq *q);

#endif
