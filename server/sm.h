/*
 * sm: the saga state machine, pure. It takes a saga's state, an event and
 * the time, changes the state and says what must happen as a result
 * (effects): a dispatch owed, a timer armed or disarmed, an attempt that
 * ended, an event added to the history, the saga finished. It takes no
 * lock, does no I/O and reads no clock: the engine (engine.c) owns the
 * sagas, calls in here under its mutex and carries the effects out. The
 * unit tests drive it with a fake clock (tests/unit/test_sm.c).
 *
 * Saga states (Sagawire__SagaState):
 *   (none)       0: not started yet; sm_start moves it to RUNNING
 *   RUNNING      steps run as their dependencies succeed
 *   COMPENSATING a step failed, a cancel or the deadline: actions in
 *                flight finish, then completed steps are undone,
 *                dependents before dependencies
 *   COMPLETED    terminal; every step succeeded
 *   COMPENSATED  terminal; every completed step undone
 *   FAILED       parked: a compensation exhausted its attempts; only an
 *                operator (sm_operate, sm_force, sm_terminate) moves it again
 *   TERMINATED   terminal; an operator stopped it without compensating
 *                (sm_terminate): its steps keep the state they had
 *
 * Step states (Sagawire__StepState):
 *   PENDING          waiting for its dependencies (or never reached)
 *   RUNNING          an action attempt is owed (queued) or on the wire
 *   RETRY_WAIT       an action attempt failed; waiting out the backoff
 *   SUCCEEDED        the action succeeded; its result is kept
 *   FAILED           the action failed: for certain (a business failure:
 *                    nothing to undo) or uncertain (timeouts, retryable
 *                    errors, given up: it may have applied, so it is undone)
 *   COMPENSATING     a compensation attempt is owed or on the wire
 *   COMP_RETRY_WAIT  a compensation attempt failed; waiting out the backoff
 *   COMPENSATED      undone (or there was nothing to undo)
 *   COMP_FAILED      the compensation exhausted its attempts: parks the saga
 *
 * Every change of a saga's or a step's state goes through sm_saga_move()
 * or sm_step_move(), which check it against a table of legal transitions
 * (sm.c). An illegal one is refused and reported to sm_invariant_hook: the
 * engine logs it, and a test build (-Dfatal_invariants=true) aborts.
 */
#ifndef SAGAD_SM_H
#define SAGAD_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "defn.h"
#include "sagawire.pb-c.h"

#define SM_ACTION       SAGAWIRE__STEP_KIND__STEP_ACTION
#define SM_COMPENSATION SAGAWIRE__STEP_KIND__STEP_COMPENSATION

/* Longest error text kept for a saga or a step (bytes, with the NUL). */
#define SM_MAX_ERROR 1024

/* A saga keeps at most SM_HISTORY_MAX events: past it, the oldest after
 * the first SM_HISTORY_KEEP_FIRST are dropped (the start stays, the end is
 * recent), so a saga retried for days cannot grow without bound. */
#define SM_HISTORY_MAX        200
#define SM_HISTORY_KEEP_FIRST 20

typedef struct sm_step {
	uint8_t state;  /* Sagawire__StepState; changed only by sm_step_move */
	bool queued;    /* its dispatch is owed and not on the wire yet */
	bool uncertain; /* failed without a business answer: undo it anyway */
	uint16_t idx;
	uint32_t attempts, comp_attempts;         /* attempt numbers made so far: never go back */
	uint32_t attempt_base, comp_attempt_base; /* attempts before the last operator retry:
						   * the retry budget counts from here */
	int64_t started_us, finished_us, comp_started_us, comp_finished_us;
	int64_t next_attempt_us; /* in a *_RETRY_WAIT state: when it retries */
	char *last_error;        /* NULL = none */
	uint8_t *result;         /* the action's result */
	size_t result_len;
	uint32_t completion_seq; /* order of completion, from 1 */
	uint32_t gen;            /* dispatch generation: a dispatch carries it, a newer one
	                          * makes older queued ones stale */
} sm_step;

/* One entry of a saga's history (sagawire.Event). */
typedef struct sm_event {
	int64_t at_us;
	uint8_t type;  /* Sagawire__EventType */
	uint16_t step; /* index + 1; 0 = the saga */
	uint32_t attempt;
	char *detail; /* never NULL */
} sm_event;

typedef struct sm_saga {
	const defn_saga *def;
	uint8_t state; /* Sagawire__SagaState; changed only by sm_saga_move */
	char *error;   /* why it compensates or parked; NULL = none */
	uint32_t next_seq;
	int64_t created_us;
	int64_t deadline_us; /* unix us; 0 = none */
	sm_event *ev;        /* its history, oldest first */
	uint32_t n_ev, cap_ev;
	sm_step *steps; /* def->n_steps */
	char ids[37];   /* its id as text, for error messages */
} sm_saga;

/* ---- effects ---------------------------------------------------------------- */

enum sm_fx_type {
	SM_FX_DISPATCH = 1,   /* a dispatch of (step, kind, gen) is owed: it goes out once the
	                     * change that made it owed is durable */
	SM_FX_QUEUE,          /* the same, owed already durably (a redelivery, a recovered
	                     * saga): it may go out now */
	SM_FX_STEP_TIMER,     /* arm the step's timer for at_ms (its attempt timeout, or
	                     * the end of its backoff): sm_step_timer() when it fires */
	SM_FX_STEP_TIMER_OFF, /* disarm the step's timer */
	SM_FX_DEADLINE,       /* arm the saga's deadline timer for at_ms: sm_deadline() */
	SM_FX_ENDED,          /* the attempt of (step, kind) in flight, if any, ended: how */
	SM_FX_EVENT,          /* an event was added to the history (for the log) */
	SM_FX_FINAL,          /* the saga reached a final state (sm_saga.state) */
};

/* How an attempt ended (SM_FX_ENDED), for the breaker and latency. */
enum sm_end { SM_END_OK = 1, SM_END_FAILED, SM_END_LOST };

typedef struct sm_fx {
	uint8_t type;       /* enum sm_fx_type */
	uint8_t kind;       /* SM_ACTION or SM_COMPENSATION */
	uint8_t how;        /* SM_FX_ENDED: enum sm_end */
	uint8_t ev_type;    /* SM_FX_EVENT: Sagawire__EventType */
	uint16_t step;      /* the step's index; SM_FX_EVENT: index + 1, 0 = the saga */
	uint32_t gen;       /* SM_FX_DISPATCH, SM_FX_QUEUE */
	uint32_t attempt;   /* SM_FX_EVENT */
	int64_t at_ms;      /* SM_FX_STEP_TIMER, SM_FX_DEADLINE: monotonic */
	const char *detail; /* SM_FX_EVENT: owned by the saga's history; valid until the
	                     * next call on the saga */
} sm_fx;

/* Enough for any one call on a saga of DEFN_MAX_STEPS steps. */
#define SM_MAX_FX (8 * DEFN_MAX_STEPS + 16)

/* What one call changed and what must follow. */
typedef struct sm_out {
	bool changed; /* the saga's stored state changed: write it */
	size_t n;
	sm_fx fx[SM_MAX_FX];
} sm_out;

/* What a call needs from outside: the time on two clocks, a random state
 * for backoff jitter, and where effects go. */
typedef struct sm_env {
	int64_t now_us; /* wall clock, unix microseconds: stored times */
	int64_t now_ms; /* monotonic milliseconds: timers */
	uint64_t *rng;  /* xorshift64* state, never 0 */
	sm_out *out;    /* cleared by the caller before each call */
} sm_env;

/* Called with a description of every broken invariant (an illegal
 * transition, an overflowing effect list); NULL = ignored. */
extern void (*sm_invariant_hook)(const char *what);

/* ---- sagas ------------------------------------------------------------------- */

/* A new saga of def in state 0 with every step PENDING; NULL on ENOMEM. */
sm_saga *sm_saga_new(const defn_saga *def);
/* Frees s and everything it owns; NULL is a no-op. */
void sm_saga_free(sm_saga *s);

bool sm_saga_is_final(const sm_saga *s);

/* The one place a saga's or a step's state changes. Returns 0, or -1 (and
 * tells sm_invariant_hook, state unchanged) for a move the tables forbid. */
int sm_saga_move(sm_saga *s, uint8_t to);
int sm_step_move(sm_saga *s, sm_step *st, uint8_t to);
/* The tables themselves, for tests and documentation. */
bool sm_saga_move_legal(uint8_t from, uint8_t to);
bool sm_step_move_legal(uint8_t from, uint8_t to);

/* ---- events ---------------------------------------------------------------------- */

/* Starts s (state 0, fields filled by the caller): RUNNING, its first steps
 * owed, its deadline armed. */
void sm_start(sm_saga *s, sm_env *e);

/* Takes s back after it was read from its row (sagarow.c): what was owed
 * is queued again, backoffs and the deadline re-armed with the time
 * already gone counted, actions of a compensating saga given up; then it
 * moves as far as it can. */
void sm_recover(sm_saga *s, sm_env *e);

/* A report for (step, kind, attempt) arrived. */
enum sm_report_result { SM_IGNORED = 0, SM_ACCEPTED, SM_BEAT };
/* outcome: a Sagawire__Outcome. A success or a business failure of any
 * attempt of a step still awaiting its outcome counts (it is a real
 * outcome); a retryable error only for the attempt in flight; a heartbeat
 * of the attempt in flight re-arms its timeout. Anything else is ignored. */
int sm_report(sm_saga *s, sm_env *e, uint32_t step, uint8_t kind, uint32_t attempt, int outcome,
    const uint8_t *result, size_t result_len, const char *error);

/* The step's dispatch went out on a connection: its timeout starts. */
void sm_sent(sm_saga *s, sm_env *e, uint32_t step);

/* The connection the step was in flight on closed. The same attempt is
 * owed again (same idempotency key), except an action of a saga already
 * compensating, which is given up as uncertain. */
void sm_lost(sm_saga *s, sm_env *e, uint32_t step);

/* The step's timer fired: its attempt timed out, or its backoff is over. */
void sm_step_timer(sm_saga *s, sm_env *e, uint32_t step);

/* The saga's deadline passed: a running saga compensates. */
void sm_deadline(sm_saga *s, sm_env *e);

/* Cancel: a running saga compensates (reason recorded); any other state is
 * left as it is. The caller tells the client the resulting state. */
void sm_cancel(sm_saga *s, sm_env *e, const char *reason);

/* Operator actions (Sagawire__Operation): retry a step waiting to retry or
 * whose compensation failed; skip one (done, or compensated, by hand; a
 * reason is required). Returns 0, or a saga_err with a message in err. */
int sm_operate(
    sm_saga *s, sm_env *e, int op, uint32_t step, const char *reason, char *err, size_t errlen);

/* Terminate: a running, compensating or parked saga stops at once without
 * compensating (TERMINATED). Nothing owed goes out, timers stop, attempts
 * on the wire are let go (a late outcome finds the saga final and is
 * ignored). who: the principal (may be NULL); reason: required; both go
 * into the history and the saga's error. Returns 0, or a saga_err with a
 * message in err (the saga unchanged). */
int sm_terminate(
    sm_saga *s, sm_env *e, const char *who, const char *reason, char *err, size_t errlen);

/* Force a step's outcome (op: OP_FORCE_SUCCEEDED or OP_FORCE_COMPENSATED).
 * Succeeded: a step RUNNING (queued, in flight, its outcome uncertain) or
 * RETRY_WAIT in a RUNNING saga gets result as its result, and the saga goes
 * on. Compensated: in a COMPENSATING or parked saga, a step owed an undo
 * (succeeded, or failed uncertain), being undone, waiting to retry its undo
 * or whose undo failed is marked undone by hand; a parked saga resumes.
 * Late outcomes of the abandoned attempt are ignored. who, reason: as for
 * sm_terminate (reason required). Returns 0 or a saga_err (err says why;
 * the saga unchanged). */
int sm_force(sm_saga *s, sm_env *e, int op, uint32_t step, const uint8_t *result, size_t result_len,
    const char *who, const char *reason, char *err, size_t errlen);

/* Adds an event of type with detail to the history (the saga's state is
 * unchanged; it is written with the next change): a rerun's link. */
void sm_note(sm_saga *s, sm_env *e, int type, const char *detail);

/* ---- helpers shared with the engine ----------------------------------------------------- */

/* The retry delay after attempts_made attempts:
 * base = min(max_backoff, initial * multiplier^(n-1)),
 * delay = base*(1-jitter) + uniform(0, base*jitter). */
uint32_t sm_backoff_ms(const defn_retry *r, uint32_t attempts_made, uint64_t *rng);

/* The timeout of an attempt of kind of step ds. */
uint32_t sm_timeout_ms(const defn_step *ds, uint8_t kind);

#endif
