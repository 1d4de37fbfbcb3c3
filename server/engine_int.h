/*
 * engine_int: what the engine's own files share (engine.c: the saga table,
 * effects, recovery, the loop; batch.c: batches and commits; handle_*.c:
 * one file per kind of request). Not for other modules: they use engine.h.
 *
 * Everything here runs under E.mu.
 */
#ifndef SAGAD_ENGINE_INT_H
#define SAGAD_ENGINE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "breaker.h"
#include "config.h"
#include "dispatch.h"
#include "log.h"
#include "metrics.h"
#include "rpc.h"
#include "shards.h"
#include "sm.h"
#include "timerq.h"
#include "wire.h"

typedef struct eng_saga eng_saga;

/* What the engine keeps for a step beside its state (sm_step): its timer
 * and its place on a connection while in flight. */
typedef struct eng_step {
	tq_node t;    /* its attempt's timeout (on the wire) or its backoff */
	dsp_flight f; /* while on the wire */
	eng_saga *saga;
	uint16_t idx;
} eng_step;

/* A request answered later: a start (at its first commit, or once final
 * with wait_ms), a wait (once final and durable, or at its timeout). */
typedef struct waiter {
	rpc_req *req;
	bool existing;  /* a second start with the same idempotency key */
	bool start;     /* a start with wait_ms: answered with a StartResponse */
	tq_node t;      /* final waiters: their timeout */
	eng_saga *saga; /* final waiters: the saga waited on */
	struct waiter *next;
} waiter;

/* A saga in memory: its state (the state machine's) and what only the
 * engine needs (persistence, keys, input, trace, timers, waiters). */
struct eng_saga {
	sm_saga *sm;
	uint8_t id[16];
	int32_t rev;
	bool persisted;   /* its row is committed */
	bool in_batch;    /* in the open batch */
	uint32_t writing; /* submitted batches holding it */
	char *idem_key, *business_key;
	int64_t updated_us;
	uint8_t *input;
	size_t input_len;
	wire_trace trace;      /* its W3C trace context (given at start or made there) */
	tq_node dl;            /* its deadline timer, while running */
	waiter *waiters;       /* start requests answered at its first commit */
	waiter *final_waiters; /* requests answered once final and durable */
	eng_saga *hnext;       /* id hash chain */
	eng_saga *knext;       /* idempotency-key hash chain */
	eng_step x[];          /* sm->def->n_steps */
};

/* Work that follows a commit, in the order it was recorded. */
enum { A_DISPATCH = 1, A_ACK, A_CANCEL_REPLY, A_OPERATE_REPLY };

typedef struct action {
	uint8_t type;
	uint8_t kind;
	uint16_t step;
	uint32_t gen;
	uint8_t id[16];
	rpc_req *req;
	uint32_t a, b, c;
} action;

typedef struct post {
	action *v;
	size_t n, cap;
} post;

/* A shard as the engine sees it (its lease is shards.c's). */
enum { SHARD_NONE = 0, SHARD_LOADING, SHARD_ACTIVE, SHARD_RELEASING };

typedef struct eng_shard {
	uint8_t state;
	int64_t epoch;          /* the lease's epoch: every batch is fenced with it */
	int64_t valid_until_ms; /* monotonic: dispatch only before this */
	dsp_item *held;         /* dispatches held while the lease is unproven */
	size_t n_held, cap_held;
} eng_shard;

struct engine {
	const cfg *cfg;
	char *conninfo;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	bool closed;           /* engine_run() returned: no event may start a batch any more */
	int64_t stop_until_ms; /* shutdown: wait for in-flight outcomes until then */
	uint32_t grace_ms;     /* shutdown_grace_ms, changed by engine_reload() */

	eng_saga **ids;  /* hash by id */
	eng_saga **keys; /* hash by idempotency key */
	size_t nbuckets;
	size_t n_sagas;
	uint64_t saga_bytes; /* inputs of the sagas in the table (max_saga_memory_mb) */

	eng_saga **open; /* sagas changed since the last submit */
	size_t n_open, cap_open;
	post open_post;
	uint32_t writing_batches; /* submitted, not yet committed */
	int64_t commit_since_ms;  /* when the commit under way began; 0 = none */
	int64_t stall_logged_ms;  /* last "commit waiting" line */
	tq_node watchdog;         /* looks for stalled commits every second */
	uint32_t completing;      /* committed, post-commit work not yet run */

	timerq tq;
	int64_t sleep_until; /* the timer thread's wake-up; on_sooner signals if earlier */

	uint64_t rng;

	char *instance; /* this sagad's instance id (the shards' owner) */
	eng_shard shards[SHD_N];
	unsigned next_shard; /* round robin of starts over active shards */

	mx_table def_stats;  /* sagas by definition */
	mx_table step_stats; /* step outcomes, by "definition/step" */
	mx_hist commit_hist;
};

extern struct engine E;

/* A log line about saga s (and its step ds, attempt, when not NULL/0),
 * carrying the saga's trace id. The level is checked before anything is
 * formatted. */
#define elog(lvl, s, ds, attempt, ...)                                        \
	do {                                                                  \
		if ((lvl) <= slog_level)                                      \
			elog_write((lvl), (s), (ds), (attempt), __VA_ARGS__); \
	} while (0)

void elog_write(int level, const eng_saga *s, const defn_step *ds, uint32_t attempt,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- the saga table (engine.c) ---------------------------------------------------------- */

eng_saga *eng_saga_new(const defn_saga *def);
/* Frees s, its timers disarmed; NULL is a no-op. */
void eng_saga_free(eng_saga *s);
eng_saga *eng_find(const uint8_t id[16]);
eng_saga *eng_find_key(const char *key);
int eng_insert(eng_saga *s);
void eng_unlink(eng_saga *s);

/* ---- running the state machine (engine.c) ----------------------------------------------- */

/* An environment for one state machine call: the time now, the engine's
 * random state, and o (cleared) for the effects. */
void eng_env(sm_env *e, sm_out *o);
/* Carries out the effects of a call on s: timers, dispatches (after the
 * commit, or now), attempts ended, log lines, counts; puts s in the open
 * batch if it changed. Returns how many dispatches were queued at once. */
uint32_t eng_apply(eng_saga *s, const sm_out *o);
/* Counts an attempt's outcome for /metrics (sagad_step_outcomes_total). */
enum { ENG_OC_SUCCESS, ENG_OC_RETRY, ENG_OC_TIMEOUT, ENG_OC_FAILURE };
void eng_count_outcome(const eng_saga *s, uint32_t step, uint8_t kind, int outcome);

/* ---- batches (batch.c) ----------------------------------------------------------------------- */

/* Puts s in the open batch (its latest state goes once per batch). */
void eng_touch(eng_saga *s);
/* Work to do once the open batch has committed. */
void eng_after_commit(const action *a);
/* Hands the open batch to the writer if it is idle (or the batch is full). */
void eng_maybe_submit(void);
/* A batch committed: answer, dispatch and release what it carried. */
struct store_batch;
void eng_committed(struct store_batch *b);

/* ---- shards (engine_shards.c) ------------------------------------------------------ */

/* The shard a new saga goes to (an active one, round robin), or -1 when
 * this sagad holds none. */
int eng_pick_shard(void);
/* May a dispatch of a step of the saga with this id go out now? 1 yes;
 * 0 not now (held: the shard's lease is unproven; queued again when it
 * is renewed); -1 never (the shard is being released or is not ours). */
int eng_may_dispatch(const dsp_item *it);

/* ---- requests (handle_*.c) ----------------------------------------------------------------------- */

/* Is s at most max bytes of UTF-8 (no NUL)? For text from the network. */
bool eng_valid_text(const char *s, size_t max);
/* Holds r until s is final and durable, or wait_ms passes (at most 10 min). */
int eng_add_final_waiter(eng_saga *s, rpc_req *r, bool start, bool existing, uint32_t wait_ms);
/* Answers every final waiter of s (it is final and that is committed). */
void eng_release_final_waiters(eng_saga *s);
/* Answers a start waiter with a saga id. */
void eng_reply_start(waiter *w, const char *id, uint32_t version, bool existing);
/* The refused-results counter of /metrics (handle_participant.c). */
void eng_report_metrics(mx_buf *b);
/* Applies an operator action (OperateRequest) to s, which the engine holds.
 * Returns 0 with the reply queued after the commit, or -1 after replying
 * with the error. */
int eng_operate(rpc_req *r, eng_saga *s);
/* Takes a saga back from its row (recovery, a parked saga an operator acts
 * on): s is in the table, what it owes queued or re-armed. 0, or a
 * saga_err (a missing definition, an unreadable row: logged). */
struct store_saga;
int eng_load(const struct store_saga *row, eng_saga **out);

#endif
