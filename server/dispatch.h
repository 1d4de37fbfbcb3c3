/*
 * dispatch: everything between a step owed and a step on the wire, and
 * back. It owns, per participant, the queue of steps ready to send, the
 * circuit breaker and its cool-off timer, and per connection (nng pipe)
 * the declared capacity, the parked poll and its timer, and the list of
 * steps in flight (relay.c holds these containers). It answers WorkPolls
 * with WorkBatches, redelivers what was in flight on a connection that
 * closed, notes every attempt's end for the breaker and the latency
 * histogram, and describes participants (ParticipantsRequest, /metrics).
 *
 * It knows no saga. A queued item names a step by saga id, index, kind and
 * generation; the engine's dsp_ops turn an item into a Dispatch (or say it
 * is stale), learn that it went out, and take back what a closed
 * connection had in flight. A step in flight is a dsp_flight node embedded
 * in the engine's step, linked into its connection's list.
 *
 * Runs under the engine's mutex, on the engine's timerq.
 */
#ifndef SAGAD_DISPATCH_H
#define SAGAD_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "config.h"
#include "defn.h"
#include "metrics.h"
#include "rpc.h"
#include "sagawire.pb-c.h"
#include "timerq.h"
#include "wire.h"

/* A step owed a dispatch, as queued. */
typedef struct dsp_item {
	uint8_t id[16]; /* the saga */
	uint32_t gen;   /* the step's dispatch generation when it was queued */
	uint16_t step;
	uint8_t kind; /* Sagawire__StepKind */
	uint8_t dup;  /* a deliberate duplicate (failpoint dup-dispatch) */
} dsp_item;

/* A step in flight: embedded in the step, linked into its connection. */
typedef struct dsp_flight {
	uint32_t pipe_id; /* the connection; 0 = not in flight */
	int64_t sent_us;  /* when it went out, monotonic us (latency); 0 = noted already */
	struct dsp_flight *prev, *next;
} dsp_flight;

/* Text and bytes a Dispatch points into while it is packed. The key is
 * "<36-char id>/<step name, at most 128>/compensation"; the token is
 * token.h's (TOK_LEN bytes). */
typedef struct dsp_text {
	char key[WIRE_UUID_STRLEN + 128 + 16];
	char traceparent[WIRE_TRACEPARENT_LEN + 1];
	uint8_t token[16];
} dsp_text;

/* Room for the results one Dispatch carries (its dependencies' and, for a
 * compensation, its own). */
#define DSP_MAX_RESULTS (DEFN_MAX_STEPS + 1)

typedef struct dsp_ops {
	/* The step `it` names, if its dispatch is still owed (or it is a
	 * duplicate): fills d, pointing into the saga, txt and res, and
	 * returns its flight node; NULL if the item is stale. */
	dsp_flight *(*claim)(const dsp_item *it, Sagawire__Dispatch *d, dsp_text *txt,
	    Sagawire__StepResult *res, Sagawire__StepResult **resp);
	/* The claimed step went out (not called for duplicates). */
	void (*sent)(dsp_flight *f);
	/* The connection f was in flight on closed (f is unlinked already).
	 * Returns whether it was queued again. */
	bool (*lost)(dsp_flight *f);
} dsp_ops;

/* How an attempt ended, for the breaker and the latency histogram. */
enum { DSP_END_OK = 1, DSP_END_FAILED, DSP_END_LOST };

void dsp_init(const cfg *c, timerq *tq, const dsp_ops *ops);
void dsp_fini(void);
/* The breaker settings (SIGHUP may change them). */
void dsp_set_breaker(const breaker_cfg *b);

/* Queues a step owed to participant, to go out as soon as a connection of
 * it has room. Out of memory aborts (a lost dispatch would stall a saga). */
void dsp_queue(const char *participant, const dsp_item *it);
/* Sends what every participant's connections can take now. */
void dsp_pump_all(void);
/* The same for the participant polling on pipe_id (after a report). */
void dsp_pump_pipe(uint32_t pipe_id);

/* A WorkPoll: binds its connection to the participant, parks it, and
 * answers it with work when there is some. */
void dsp_poll(rpc_req *r);
/* The participant a connection serves (its first poll), or NULL. */
const char *dsp_pipe_participant(uint32_t pipe_id);
/* A connection closed: what it had in flight is handed to ops->lost. */
void dsp_pipe_closed(uint32_t pipe_id);
/* The attempt in flight as f (of a step of participant) ended (how:
 * DSP_END_*): it leaves its connection, its latency and (unless lost) its
 * outcome are noted. */
void dsp_attempt_ended(dsp_flight *f, const char *participant, int how);
/* Counts steps sent again after a restart (for /metrics). */
void dsp_note_redelivered(uint32_t n);

/* Shutdown: parked polls are answered empty and nothing more goes out. */
void dsp_stop(void);
/* Steps dispatched and not yet answered, over every connection. */
size_t dsp_in_flight(void);
/* Steps queued, over every participant (may count stale items). */
size_t dsp_backlog(void);

/* Answers a ParticipantsRequest. */
void dsp_participants(rpc_req *r);
/* The dispatch part of /metrics. */
void dsp_metrics(mx_buf *b);

#endif
