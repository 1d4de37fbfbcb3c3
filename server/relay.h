/*
 * relay: the containers of dispatch (dispatch.c, its only user). Keeps,
 * per participant name, a FIFO of steps ready to send, and per connection
 * (nng pipe) the declared capacity, the steps in flight on it and its
 * parked poll. relay itself sends nothing and knows no saga: dispatch.c
 * picks a connection with relay_next_pipe(), builds the WorkBatch and
 * answers the parked poll.
 *
 * Queue items name a step by saga id + step index + kind + generation, not
 * by pointer: a step whose dispatch became obsolete (cancelled, recovered,
 * timed out) just has a newer generation and the stale item is skipped when
 * popped.
 */
#ifndef SAGAD_RELAY_H
#define SAGAD_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "rpc.h"
#include "timerq.h"

typedef struct relay_item {
	uint8_t id[16];
	uint32_t gen;
	uint16_t step;
	uint8_t kind;      /* Sagawire__StepKind */
	uint8_t dup;       /* a deliberate duplicate (failpoint dup-dispatch) */
	int64_t queued_ms; /* monotonic: when it was first queued */
} relay_item;

typedef struct relay_part relay_part;

typedef struct relay_pipe {
	uint32_t id;
	relay_part *part; /* NULL until its first poll */
	uint32_t capacity;
	uint32_t inflight;
	uint64_t max_bytes;               /* largest message it accepts (0 = unknown) */
	rpc_req *poll;                    /* parked poll, or NULL */
	tq_node poll_t;                   /* the parked poll's timeout */
	struct dsp_flight *inflight_head; /* the steps in flight on it (dispatch.h) */
	struct relay_pipe *hnext;
	size_t part_index; /* position in part->pipes */
} relay_pipe;

struct relay_part {
	char *name;
	relay_item *q; /* ring buffer */
	size_t q_head, q_len, q_cap;
	relay_pipe **pipes; /* connections serving it */
	size_t n_pipes, cap_pipes;
	size_t rr;             /* round-robin cursor */
	breaker brk;           /* its circuit breaker */
	tq_node brk_t;         /* the end of the breaker's cool-off */
	int64_t idle_since_ms; /* monotonic: since when it has had no connection; 0 = has one
	                          (or not looked at yet) */
	struct relay_part *hnext;
};

int relay_init(void);
void relay_fini(void);
/* What the timers of new participants (breaker cool-off) and connections
 * (parked poll) call when they expire; NULL until set. */
void relay_set_timer_fns(tq_fn poll_expired, tq_fn breaker_expired);

/* Participant by name; created on demand when create is set. */
relay_part *relay_part_get(const char *name, int create);
int relay_push(relay_part *p, const relay_item *it);
int relay_pop(relay_part *p, relay_item *out);
/* The earliest queued_ms among p's queued items; 0 if none. */
int64_t relay_oldest_ms(const relay_part *p);

/* Connection by nng pipe id; created on demand when create is set. */
relay_pipe *relay_pipe_get(uint32_t id, int create);
/* Binds a connection to its participant (first poll). */
int relay_pipe_bind(relay_pipe *pp, relay_part *p);
/* Forgets a connection (after the engine requeued its in-flight steps). */
void relay_pipe_remove(relay_pipe *pp);

/* Next connection of p with a parked poll and free capacity, round robin;
 * NULL if none. */
relay_pipe *relay_next_pipe(relay_part *p);

/* Forgets a participant: it must have no connection and an empty queue,
 * and its breaker timer must be cancelled. */
void relay_part_remove(relay_part *p);

/* Iteration over participants (for pumping after a batch). */
relay_part *relay_part_first(void);
relay_part *relay_part_next(relay_part *p);

size_t relay_connected(const relay_part *p); /* connections serving p */

#endif
