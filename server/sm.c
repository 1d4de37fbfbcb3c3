/* sm: the saga state machine, pure. See sm.h. */
#include "sm.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "saga_base.h"
#include "utf8.h"
#include "wire.h"

#define ST(x) SAGAWIRE__STEP_STATE__STEP_##x
#define SS(x) SAGAWIRE__SAGA_STATE__SAGA_##x
#define EV(x) SAGAWIRE__EVENT_TYPE__EVENT_##x
#define OC(x) SAGAWIRE__OUTCOME__OUTCOME_##x

void (*sm_invariant_hook)(const char *what);

static void invariant(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
invariant(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (sm_invariant_hook != NULL)
		sm_invariant_hook(buf);
}

/* ---- the tables of legal moves ------------------------------------------------- */

#define N_SAGA_STATES 7  /* 0 (not started) .. TERMINATED */
#define N_STEP_STATES 10 /* 0 (unused) .. COMP_FAILED */

/* saga_moves[from][to]. */
static const bool saga_moves[N_SAGA_STATES][N_SAGA_STATES] = {
	[0] = { [SS(RUNNING)] = true },
	/* TERMINATED: an operator stopped it (sm_terminate). */
	[SS(RUNNING)] = { [SS(COMPENSATING)] = true,
	    [SS(COMPLETED)] = true,
	    [SS(TERMINATED)] = true },
	[SS(COMPENSATING)] = { [SS(COMPENSATED)] = true,
	    [SS(FAILED)] = true,
	    [SS(TERMINATED)] = true },
	/* An operator's retry, skip or force takes a parked saga back. */
	[SS(FAILED)] = { [SS(COMPENSATING)] = true, [SS(TERMINATED)] = true },
};

/* step_moves[from][to]. A *_RETRY_WAIT state may be entered again: a late
 * failure of an earlier attempt restarts the backoff. */
static const bool step_moves[N_STEP_STATES][N_STEP_STATES] = {
	[ST(PENDING)] = { [ST(RUNNING)] = true },
	[ST(RUNNING)] = { [ST(SUCCEEDED)] = true, [ST(FAILED)] = true, [ST(RETRY_WAIT)] = true },
	[ST(RETRY_WAIT)] = { [ST(RUNNING)] = true,
	    [ST(SUCCEEDED)] = true,
	    [ST(FAILED)] = true,
	    [ST(RETRY_WAIT)] = true },
	[ST(SUCCEEDED)] = { [ST(COMPENSATING)] = true, [ST(COMPENSATED)] = true },
	[ST(FAILED)] = { [ST(COMPENSATING)] = true, [ST(COMPENSATED)] = true },
	[ST(COMPENSATING)] = { [ST(COMPENSATED)] = true,
	    [ST(COMP_RETRY_WAIT)] = true,
	    [ST(COMP_FAILED)] = true },
	[ST(COMP_RETRY_WAIT)] = { [ST(COMPENSATING)] = true,
	    [ST(COMPENSATED)] = true,
	    [ST(COMP_FAILED)] = true,
	    [ST(COMP_RETRY_WAIT)] = true },
	[ST(COMP_FAILED)] = { [ST(COMPENSATING)] = true, [ST(COMPENSATED)] = true },
};

bool
sm_saga_move_legal(uint8_t from, uint8_t to)
{
	return from < N_SAGA_STATES && to < N_SAGA_STATES && saga_moves[from][to];
}

bool
sm_step_move_legal(uint8_t from, uint8_t to)
{
	return from < N_STEP_STATES && to < N_STEP_STATES && step_moves[from][to];
}

int
sm_saga_move(sm_saga *s, uint8_t to)
{
	if (!sm_saga_move_legal(s->state, to)) {
		invariant("saga %s: illegal move %s -> %s", s->ids,
		    cm_saga_state_name((int)s->state), cm_saga_state_name((int)to));
		return -1;
	}
	s->state = to;
	return 0;
}

int
sm_step_move(sm_saga *s, sm_step *st, uint8_t to)
{
	if (!sm_step_move_legal(st->state, to)) {
		invariant("saga %s step %s: illegal move %s -> %s", s->ids,
		    s->def->steps[st->idx].name, cm_step_state_name((int)st->state),
		    cm_step_state_name((int)to));
		return -1;
	}
	st->state = to;
	return 0;
}

/* ---- sagas -------------------------------------------------------------------------- */

sm_saga *
sm_saga_new(const defn_saga *def)
{
	sm_saga *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->steps = calloc(def->n_steps, sizeof(sm_step));
	if (s->steps == NULL) {
		free(s);
		return NULL;
	}
	s->def = def;
	s->next_seq = 1;
	for (uint32_t i = 0; i < def->n_steps; i++) {
		s->steps[i].idx = (uint16_t)i;
		s->steps[i].state = ST(PENDING);
	}
	return s;
}

void
sm_saga_free(sm_saga *s)
{
	if (s == NULL)
		return;
	if (s->steps != NULL) {
		for (uint32_t i = 0; i < s->def->n_steps; i++) {
			free(s->steps[i].last_error);
			free(s->steps[i].result);
		}
	}
	for (uint32_t i = 0; i < s->n_ev; i++)
		free(s->ev[i].detail);
	free(s->ev);
	free(s->steps);
	free(s->error);
	free(s);
}

bool
sm_saga_is_final(const sm_saga *s)
{
	return s->state == SS(COMPLETED) || s->state == SS(COMPENSATED) || s->state == SS(FAILED) ||
	    s->state == SS(TERMINATED);
}

/* ---- small helpers -------------------------------------------------------------------- */

static void
fx_add(sm_env *e, sm_fx f)
{
	sm_out *o = e->out;
	if (o->n == SM_MAX_FX) {
		invariant("more than %d effects from one event", SM_MAX_FX);
		return;
	}
	o->fx[o->n++] = f;
}

static void
fx_step(sm_env *e, uint8_t type, const sm_step *st, uint8_t kind)
{
	fx_add(e, (sm_fx) { .type = type, .kind = kind, .step = st->idx, .gen = st->gen });
}

static void
fx_timer(sm_env *e, const sm_step *st, int64_t at_ms)
{
	fx_add(e, (sm_fx) { .type = SM_FX_STEP_TIMER, .step = st->idx, .at_ms = at_ms });
}

static void
fx_ended(sm_env *e, const sm_step *st, uint8_t kind, uint8_t how)
{
	fx_add(e, (sm_fx) { .type = SM_FX_ENDED, .kind = kind, .how = how, .step = st->idx });
}

/* The stored state changed. */
static void
touch(sm_env *e)
{
	e->out->changed = true;
}

static double
rand01(uint64_t *rng)
{
	/* xorshift64*: backoff jitter needs spread, not secrecy. */
	uint64_t x = *rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*rng = x;
	return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

uint32_t
sm_backoff_ms(const defn_retry *r, uint32_t attempts_made, uint64_t *rng)
{
	double base = (double)r->initial_backoff_ms *
	    pow(r->multiplier, attempts_made > 0 ? attempts_made - 1 : 0);
	if (base > r->max_backoff_ms)
		base = r->max_backoff_ms;
	double d = base * (1.0 - r->jitter) + rand01(rng) * base * r->jitter;
	return d < 0 ? 0 : (uint32_t)d;
}

uint32_t
sm_timeout_ms(const defn_step *ds, uint8_t kind)
{
	return kind == SM_ACTION ? ds->timeout_ms : ds->comp_timeout_ms;
}

static void event(sm_saga *s, sm_env *e, int type, const sm_step *st, uint32_t attempt,
    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Appends to the saga's history (stored with the transition) and tells
 * the engine, which logs it. */
static void
event(sm_saga *s, sm_env *e, int type, const sm_step *st, uint32_t attempt, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cm_utf8_trim(buf);
	if (s->n_ev == SM_HISTORY_MAX) {
		free(s->ev[SM_HISTORY_KEEP_FIRST].detail);
		memmove(&s->ev[SM_HISTORY_KEEP_FIRST], &s->ev[SM_HISTORY_KEEP_FIRST + 1],
		    (s->n_ev - SM_HISTORY_KEEP_FIRST - 1) * sizeof(*s->ev));
		s->n_ev--;
	}
	if (s->n_ev == s->cap_ev) {
		uint32_t ncap = s->cap_ev ? s->cap_ev * 2 : 8;
		if (ncap > SM_HISTORY_MAX)
			ncap = SM_HISTORY_MAX;
		sm_event *nv = realloc(s->ev, ncap * sizeof(*nv));
		if (nv == NULL)
			return; /* history is best effort; the state is not */
		s->ev = nv;
		s->cap_ev = ncap;
	}
	char *d = strdup(buf);
	if (d == NULL)
		return;
	sm_event ev = { .at_us = e->now_us,
		.type = (uint8_t)type,
		.step = st ? (uint16_t)(st->idx + 1) : 0,
		.attempt = attempt,
		.detail = d };
	s->ev[s->n_ev++] = ev;
	fx_add(e,
	    (sm_fx) { .type = SM_FX_EVENT,
		.ev_type = ev.type,
		.step = ev.step,
		.attempt = attempt,
		.detail = d });
}

static void set_error(char **dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_error(char **dst, const char *fmt, ...)
{
	char buf[SM_MAX_ERROR];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cm_utf8_trim(buf);
	char *d = strdup(buf);
	if (d) {
		free(*dst);
		*dst = d;
	}
}

/* ---- transitions ------------------------------------------------------------------------ */

/* Makes a dispatch of st owed: persisted with the change, sent after it. */
static void
owe_dispatch(sm_env *e, sm_step *st, uint8_t kind)
{
	st->gen++;
	st->queued = true;
	fx_step(e, SM_FX_DISPATCH, st, kind);
}

static void
start_action(sm_saga *s, sm_env *e, sm_step *st)
{
	if (sm_step_move(s, st, ST(RUNNING)) != 0)
		return;
	st->attempts++;
	if (st->started_us == 0)
		st->started_us = e->now_us;
	event(s, e, EV(ATTEMPT), st, st->attempts, "%s", "");
	owe_dispatch(e, st, SM_ACTION);
	touch(e);
}

static void
start_compensation(sm_saga *s, sm_env *e, sm_step *st)
{
	const defn_step *ds = &s->def->steps[st->idx];
	if (ds->compensation == NULL) {
		/* Nothing to undo. */
		if (sm_step_move(s, st, ST(COMPENSATED)) != 0)
			return;
		st->comp_finished_us = e->now_us;
		event(s, e, EV(COMPENSATED_STEP), st, 0, "no compensation: nothing to undo");
		touch(e);
		return;
	}
	if (sm_step_move(s, st, ST(COMPENSATING)) != 0)
		return;
	st->comp_attempts++;
	if (st->comp_started_us == 0)
		st->comp_started_us = e->now_us;
	event(s, e, EV(COMP_ATTEMPT), st, st->comp_attempts, "%s", ds->compensation);
	owe_dispatch(e, st, SM_COMPENSATION);
	touch(e);
}

/* Enters compensation: stop going forward. Actions not yet sent are
 * abandoned; actions waiting to retry are given up. Both count as
 * uncertain (an earlier attempt, or one sent before a crash, may have
 * applied), so they are compensated too; the participant's barrier makes
 * an undo of a never-applied action a no-op. Actions in flight finish. */
static void
begin_compensation(sm_saga *s, sm_env *e)
{
	if (sm_saga_move(s, SS(COMPENSATING)) != 0)
		return;
	touch(e);
	for (uint32_t i = 0; i < s->def->n_steps; i++) {
		sm_step *st = &s->steps[i];
		if ((st->state == ST(RUNNING) && st->queued) || st->state == ST(RETRY_WAIT)) {
			fx_step(e, SM_FX_STEP_TIMER_OFF, st, SM_ACTION);
			st->gen++; /* what is queued for it is stale */
			st->queued = false;
			sm_step_move(s, st, ST(FAILED));
			st->uncertain = true;
			st->finished_us = e->now_us;
			st->next_attempt_us = 0;
		}
	}
	event(s, e, EV(COMPENSATING), NULL, 0, "%s", s->error ? s->error : "");
}

static bool
needs_undo(const sm_step *st)
{
	return st->state == ST(SUCCEEDED) || (st->state == ST(FAILED) && st->uncertain);
}

/* Settled for compensation: nothing more will happen to it before its
 * dependencies are undone. */
static bool
settled(const sm_step *st)
{
	return st->state == ST(PENDING) || st->state == ST(COMPENSATED) ||
	    (st->state == ST(FAILED) && !st->uncertain);
}

static void
finish_saga(sm_saga *s, sm_env *e, uint8_t state)
{
	if (sm_saga_move(s, state) != 0)
		return;
	touch(e);
	fx_add(e, (sm_fx) { .type = SM_FX_FINAL });
	if (state == SS(COMPLETED))
		event(s, e, EV(COMPLETED), NULL, 0, "%s", "");
	else if (state == SS(COMPENSATED))
		event(s, e, EV(COMPENSATED), NULL, 0, "%s", "");
	else
		event(s, e, EV(PARKED), NULL, 0, "%s", s->error ? s->error : "");
}

/* Undoes what can be undone now: dependents before their dependencies,
 * independent branches in parallel; then ends the saga if nothing runs. */
static void
advance_compensation(sm_saga *s, sm_env *e)
{
	const defn_saga *d = s->def;
	/* Loop: undoing a step without compensation is immediate and may make
	 * its dependencies eligible. */
	for (bool changed = true; changed;) {
		changed = false;
		for (uint32_t i = 0; i < d->n_steps; i++) {
			sm_step *st = &s->steps[i];
			if (!needs_undo(st))
				continue;
			bool ready = true;
			for (uint32_t j = 0; j < d->n_steps && ready; j++)
				if ((d->steps[i].dependents_mask >> j & 1) &&
				    !settled(&s->steps[j]))
					ready = false;
			if (ready) {
				start_compensation(s, e, st);
				changed = true;
			}
		}
	}
	bool busy = false, parked = false;
	for (uint32_t i = 0; i < d->n_steps; i++) {
		uint8_t x = s->steps[i].state;
		if (x == ST(RUNNING) || x == ST(RETRY_WAIT) || x == ST(COMPENSATING) ||
		    x == ST(COMP_RETRY_WAIT))
			busy = true;
		if (x == ST(COMP_FAILED))
			parked = true;
	}
	if (busy)
		return;
	if (parked) {
		finish_saga(s, e, SS(FAILED));
		return;
	}
	/* Nothing running and nothing eligible. Any step still needing undo
	 * waits on a dependent that cannot be undone: that is a park too. */
	for (uint32_t i = 0; i < d->n_steps; i++) {
		if (needs_undo(&s->steps[i])) {
			finish_saga(s, e, SS(FAILED));
			return;
		}
	}
	finish_saga(s, e, SS(COMPENSATED));
}

/* Moves a saga as far as it can go. Called after every change. */
static void
advance(sm_saga *s, sm_env *e)
{
	const defn_saga *d = s->def;
	if (sm_saga_is_final(s))
		return;
	if (s->state == SS(RUNNING)) {
		for (uint32_t i = 0; i < d->n_steps; i++) {
			if (s->steps[i].state == ST(FAILED)) {
				if (s->error == NULL || *s->error == '\0')
					set_error(&s->error, "step %s failed: %s", d->steps[i].name,
					    s->steps[i].last_error ? s->steps[i].last_error : "");
				begin_compensation(s, e);
				advance_compensation(s, e);
				return;
			}
		}
		uint32_t done = 0;
		for (uint32_t k = 0; k < d->n_steps; k++) {
			uint32_t i = d->topo[k];
			sm_step *st = &s->steps[i];
			if (st->state == ST(SUCCEEDED)) {
				done++;
				continue;
			}
			if (st->state != ST(PENDING))
				continue;
			bool ready = true;
			for (uint32_t j = 0; j < d->steps[i].n_deps; j++)
				if (s->steps[d->steps[i].deps[j]].state != ST(SUCCEEDED))
					ready = false;
			if (ready)
				start_action(s, e, st);
		}
		if (done == d->n_steps)
			finish_saga(s, e, SS(COMPLETED));
		return;
	}
	advance_compensation(s, e);
}

/* The step's next attempt waits out its backoff: attempt (its number) was
 * the round's n-th since the start or the last operator retry. */
static void
retry_later(sm_saga *s, sm_env *e, sm_step *st, const defn_retry *r, uint32_t attempt, uint32_t n,
    uint8_t to)
{
	uint32_t delay = sm_backoff_ms(r, n, e->rng);
	if (sm_step_move(s, st, to) != 0)
		return;
	st->next_attempt_us = e->now_us + (int64_t)delay * 1000;
	fx_timer(e, st, e->now_ms + delay);
	event(s, e, to == ST(RETRY_WAIT) ? EV(ATTEMPT_FAILED) : EV(COMP_ATTEMPT_FAILED), st,
	    attempt, "%s; retry in %u ms", st->last_error, delay);
}

/* An attempt of st (kind) ended with outcome (a Sagawire__Outcome). */
static void
apply_outcome(sm_saga *s, sm_env *e, sm_step *st, uint8_t kind, int outcome, const uint8_t *out,
    size_t out_len, const char *error)
{
	const defn_step *ds = &s->def->steps[st->idx];
	int64_t now = e->now_us;
	/* Attempts of this round: since the start or the last operator retry. */
	uint32_t n = st->attempts - st->attempt_base;
	uint32_t comp_n = st->comp_attempts - st->comp_attempt_base;
	fx_step(e, SM_FX_STEP_TIMER_OFF, st, kind); /* its timeout or retry timer */
	if (kind == SM_ACTION) {
		if (outcome == OC(SUCCESS)) {
			uint8_t *copy = NULL;
			if (out_len > 0 && (copy = malloc(out_len)) == NULL) {
				/* Treat as a retryable failure rather than lose data. */
				outcome = OC(RETRY);
				error = "sagad out of memory storing the result";
			} else if (sm_step_move(s, st, ST(SUCCEEDED)) != 0) {
				free(copy);
				return;
			} else {
				if (out_len)
					memcpy(copy, out, out_len);
				free(st->result);
				st->result = copy;
				st->result_len = out_len;
				st->finished_us = now;
				st->completion_seq = s->next_seq++;
				event(s, e, EV(SUCCEEDED), st, st->attempts, "%zu bytes of result",
				    out_len);
				touch(e);
				advance(s, e);
				return;
			}
		}
		set_error(&st->last_error, "%s", error && *error ? error : "(no reason given)");
		if (outcome == OC(FAIL)) {
			if (sm_step_move(s, st, ST(FAILED)) != 0)
				return;
			st->uncertain = false;
			st->finished_us = now;
			/* Only a failure that makes the saga compensate says why;
			 * one arriving after a cancel or the deadline keeps that. */
			if (s->state == SS(RUNNING))
				set_error(
				    &s->error, "step %s failed: %s", ds->name, st->last_error);
			event(s, e, EV(FAILED), st, st->attempts, "business failure: %s",
			    st->last_error);
		} else if (s->state == SS(RUNNING) && n < ds->retry.max_attempts) {
			retry_later(s, e, st, &ds->retry, st->attempts, n, ST(RETRY_WAIT));
		} else {
			if (sm_step_move(s, st, ST(FAILED)) != 0)
				return;
			st->uncertain = true;
			st->finished_us = now;
			if (s->state == SS(RUNNING))
				set_error(&s->error, "step %s failed after %u attempts: %s",
				    ds->name, n, st->last_error);
			event(s, e, EV(FAILED), st, st->attempts, "failed after %u attempts: %s", n,
			    st->last_error);
		}
		touch(e);
		advance(s, e);
		return;
	}
	/* compensation */
	if (outcome == OC(SUCCESS)) {
		if (sm_step_move(s, st, ST(COMPENSATED)) != 0)
			return;
		st->comp_finished_us = now;
		event(s, e, EV(COMPENSATED_STEP), st, st->comp_attempts, "%s", ds->compensation);
		touch(e);
		advance(s, e);
		return;
	}
	/* A compensation cannot "fail for business reasons": undo must
	 * happen. Both kinds of failure retry up to the limit, then park. */
	set_error(&st->last_error, "%s", error && *error ? error : "(no reason given)");
	if (comp_n < ds->comp_retry.max_attempts) {
		retry_later(
		    s, e, st, &ds->comp_retry, st->comp_attempts, comp_n, ST(COMP_RETRY_WAIT));
	} else {
		if (sm_step_move(s, st, ST(COMP_FAILED)) != 0)
			return;
		st->comp_finished_us = now;
		set_error(&s->error, "compensation %s of step %s failed after %u attempts: %s",
		    ds->compensation, ds->name, comp_n, st->last_error);
		event(s, e, EV(COMP_FAILED), st, st->comp_attempts, "failed after %u attempts: %s",
		    comp_n, st->last_error);
	}
	touch(e);
	advance(s, e);
}

/* ---- events ---------------------------------------------------------------------------------- */

void
sm_start(sm_saga *s, sm_env *e)
{
	if (sm_saga_move(s, SS(RUNNING)) != 0)
		return;
	if (s->deadline_us) {
		int64_t left_ms = (s->deadline_us - e->now_us) / 1000;
		fx_add(e,
		    (sm_fx) {
			.type = SM_FX_DEADLINE, .at_ms = e->now_ms + (left_ms > 0 ? left_ms : 0) });
	}
	event(s, e, EV(STARTED), NULL, 0, "%s@%u", s->def->name, s->def->version);
	touch(e);
	advance(s, e);
}

void
sm_recover(sm_saga *s, sm_env *e)
{
	for (uint32_t i = 0; i < s->def->n_steps; i++) {
		sm_step *st = &s->steps[i];
		/* Owed dispatches are owed again: a crash may have lost them
		 * anywhere between commit and the participant. */
		if (s->state == SS(COMPENSATING) &&
		    (st->state == ST(RUNNING) || st->state == ST(RETRY_WAIT))) {
			/* Compensation had begun: give the action up as uncertain
			 * (it is undone below) instead of sending it again. */
			sm_step_move(s, st, ST(FAILED));
			st->uncertain = true;
			st->next_attempt_us = 0;
			touch(e);
		} else if (st->state == ST(RUNNING) || st->state == ST(COMPENSATING)) {
			st->gen++;
			st->queued = true;
			fx_step(e, SM_FX_QUEUE, st,
			    st->state == ST(RUNNING) ? SM_ACTION : SM_COMPENSATION);
		} else if (st->state == ST(RETRY_WAIT) || st->state == ST(COMP_RETRY_WAIT)) {
			int64_t delay = (st->next_attempt_us - e->now_us) / 1000;
			fx_timer(e, st, e->now_ms + (delay > 0 ? delay : 0));
		}
	}
	if (s->deadline_us && s->state == SS(RUNNING)) {
		int64_t left_ms = (s->deadline_us - e->now_us) / 1000;
		fx_add(e,
		    (sm_fx) {
			.type = SM_FX_DEADLINE, .at_ms = e->now_ms + (left_ms > 0 ? left_ms : 0) });
	}
	/* It may be able to move (e.g. written just before a crash with a
	 * successor not yet dispatched). */
	advance(s, e);
}

/* A heartbeat of the attempt in flight restarts its timeout. Returns
 * whether it was for that attempt. */
static bool
heartbeat(sm_saga *s, sm_env *e, sm_step *st, uint8_t kind, uint32_t attempt)
{
	const defn_step *ds = &s->def->steps[st->idx];
	bool live = kind == SM_ACTION ? st->state == ST(RUNNING) && attempt == st->attempts
				      : kind == SM_COMPENSATION && st->state == ST(COMPENSATING) &&
		attempt == st->comp_attempts;
	if (!live || st->queued || attempt == 0)
		return false;
	uint32_t ms = ds->hb_timeout_ms ? ds->hb_timeout_ms : sm_timeout_ms(ds, kind);
	fx_timer(e, st, e->now_ms + ms);
	return true;
}

int
sm_report(sm_saga *s, sm_env *e, uint32_t step, uint8_t kind, uint32_t attempt, int outcome,
    const uint8_t *result, size_t result_len, const char *error)
{
	if (sm_saga_is_final(s) || step >= s->def->n_steps)
		return SM_IGNORED;
	sm_step *st = &s->steps[step];
	if (outcome == OC(HEARTBEAT))
		return heartbeat(s, e, st, kind, attempt) ? SM_BEAT : SM_IGNORED;
	if (outcome != OC(SUCCESS) && outcome != OC(RETRY) && outcome != OC(FAIL))
		return SM_IGNORED;
	bool awaiting;
	uint32_t cur;
	if (kind == SM_ACTION) {
		awaiting = st->state == ST(RUNNING) || st->state == ST(RETRY_WAIT);
		cur = st->attempts;
	} else if (kind == SM_COMPENSATION) {
		awaiting = st->state == ST(COMPENSATING) || st->state == ST(COMP_RETRY_WAIT);
		cur = st->comp_attempts;
	} else {
		return SM_IGNORED;
	}
	/* A success or business failure from any attempt is a real outcome
	 * (the effect may have applied); a retryable error counts only for
	 * the attempt in flight now. */
	if (!awaiting || attempt > cur || attempt == 0 ||
	    (outcome == OC(RETRY) &&
		(attempt != cur || (st->state != ST(RUNNING) && st->state != ST(COMPENSATING)))))
		return SM_IGNORED;
	if (st->state == ST(RETRY_WAIT) || st->state == ST(COMP_RETRY_WAIT))
		st->next_attempt_us = 0;
	/* A late answer while a redelivery waits: the redelivery is dropped. */
	st->queued = false;
	fx_ended(e, st, kind, outcome == OC(RETRY) ? SM_END_FAILED : SM_END_OK);
	apply_outcome(s, e, st, kind, outcome, result, result_len, error);
	return SM_ACCEPTED;
}

void
sm_sent(sm_saga *s, sm_env *e, uint32_t step)
{
	sm_step *st = &s->steps[step];
	uint8_t kind = st->state == ST(COMPENSATING) ? SM_COMPENSATION : SM_ACTION;
	st->queued = false;
	fx_timer(e, st, e->now_ms + sm_timeout_ms(&s->def->steps[step], kind));
}

void
sm_lost(sm_saga *s, sm_env *e, uint32_t step)
{
	sm_step *st = &s->steps[step];
	if (s->state == SS(TERMINATED))
		return; /* its attempts were let go when it stopped */
	/* Same attempt, new delivery: the step did not fail, its connection
	 * did. The idempotency key is unchanged. */
	uint8_t kind = st->state == ST(COMPENSATING) ? SM_COMPENSATION : SM_ACTION;
	if (kind == SM_ACTION && s->state != SS(RUNNING)) {
		/* No point learning the outcome of an action whose saga is
		 * undoing itself: count it uncertain and undo it. */
		fx_ended(e, st, kind, SM_END_LOST);
		apply_outcome(
		    s, e, st, kind, OC(RETRY), NULL, 0, "connection to the participant lost");
		return;
	}
	fx_step(e, SM_FX_STEP_TIMER_OFF, st, kind); /* not in flight: no timeout */
	st->gen++;
	st->queued = true;
	fx_step(e, SM_FX_QUEUE, st, kind);
}

void
sm_step_timer(sm_saga *s, sm_env *e, uint32_t step)
{
	sm_step *st = &s->steps[step];
	const defn_step *ds = &s->def->steps[step];
	if (s->state == SS(TERMINATED))
		return; /* stopped: its steps stay as they stood */
	switch (st->state) {
	case ST(RUNNING):
	case ST(COMPENSATING): {
		if (st->queued)
			return; /* not on the wire: nothing to time out */
		uint8_t kind = st->state == ST(RUNNING) ? SM_ACTION : SM_COMPENSATION;
		char why[128];
		snprintf(why, sizeof(why), "timed out after %u ms (attempt %u)",
		    sm_timeout_ms(ds, kind), kind == SM_ACTION ? st->attempts : st->comp_attempts);
		fx_ended(e, st, kind, SM_END_FAILED);
		apply_outcome(s, e, st, kind, OC(RETRY), NULL, 0, why);
		return;
	}
	case ST(RETRY_WAIT):
		st->next_attempt_us = 0;
		if (s->state != SS(RUNNING)) {
			/* Compensation began while it waited. */
			if (sm_step_move(s, st, ST(FAILED)) == 0)
				st->uncertain = true;
			touch(e);
			advance(s, e);
			return;
		}
		start_action(s, e, st);
		return;
	case ST(COMP_RETRY_WAIT):
		st->next_attempt_us = 0;
		start_compensation(s, e, st);
		return;
	default:
		return; /* a timer left over from a state it no longer is in */
	}
}

void
sm_deadline(sm_saga *s, sm_env *e)
{
	if (s->state != SS(RUNNING))
		return;
	int64_t over_ms = (s->deadline_us - s->created_us) / 1000;
	set_error(&s->error, "deadline exceeded: not completed within %lld ms of its start",
	    (long long)over_ms);
	begin_compensation(s, e);
	advance(s, e);
}

void
sm_cancel(sm_saga *s, sm_env *e, const char *reason)
{
	if (s->state != SS(RUNNING))
		return;
	set_error(&s->error, "cancelled: %.512s", reason && *reason ? reason : "no reason given");
	begin_compensation(s, e);
	advance(s, e);
}

int
sm_operate(
    sm_saga *s, sm_env *e, int op, uint32_t step, const char *reason, char *err, size_t errlen)
{
	if (step >= s->def->n_steps) {
		snprintf(err, errlen, "saga %s (%s) has no step %u", s->ids, s->def->name, step);
		return SAGA_EINVAL;
	}
	if (reason == NULL)
		reason = "";
	sm_step *st = &s->steps[step];
	const defn_step *ds = &s->def->steps[step];
	bool parked = s->state == SS(FAILED);
	const char *sep = *reason ? ": " : "";
	if (op == SAGAWIRE__OPERATION__OP_RETRY_STEP) {
		if (st->state == ST(COMP_FAILED) || st->state == ST(COMP_RETRY_WAIT)) {
			fx_step(e, SM_FX_STEP_TIMER_OFF, st, SM_COMPENSATION);
			st->comp_attempt_base = st->comp_attempts; /* a fresh budget */
			st->next_attempt_us = 0;
			if (parked)
				sm_saga_move(s, SS(COMPENSATING));
			event(s, e, EV(OPERATOR), st, 0, "retry the compensation %s%s%s",
			    ds->compensation, sep, reason);
			start_compensation(s, e, st);
		} else if (st->state == ST(RETRY_WAIT) && s->state == SS(RUNNING)) {
			fx_step(e, SM_FX_STEP_TIMER_OFF, st, SM_ACTION);
			st->attempt_base = st->attempts; /* a fresh budget */
			st->next_attempt_us = 0;
			event(s, e, EV(OPERATOR), st, 0, "retry the action%s%s", sep, reason);
			start_action(s, e, st);
		} else {
			snprintf(err, errlen,
			    "step %s of saga %s is %s: only a step waiting to retry, or whose "
			    "compensation failed, can be retried",
			    ds->name, s->ids, cm_step_state_name((int)st->state));
			return SAGA_ESTATE;
		}
	} else if (op == SAGAWIRE__OPERATION__OP_SKIP_STEP) {
		if (*reason == '\0') {
			snprintf(err, errlen,
			    "skipping a step needs a reason (it is recorded in the saga's "
			    "history)");
			return SAGA_EINVAL;
		}
		if (st->state == ST(COMP_FAILED) || st->state == ST(COMP_RETRY_WAIT)) {
			fx_step(e, SM_FX_STEP_TIMER_OFF, st, SM_COMPENSATION);
			if (sm_step_move(s, st, ST(COMPENSATED)) != 0)
				return SAGA_EINTERNAL;
			st->comp_finished_us = e->now_us;
			st->next_attempt_us = 0;
			set_error(&st->last_error, "compensated by hand (operator): %s", reason);
			if (parked)
				sm_saga_move(s, SS(COMPENSATING));
			event(s, e, EV(OPERATOR), st, 0, "skip: compensated by hand: %s", reason);
		} else if (st->state == ST(RETRY_WAIT) && s->state == SS(RUNNING)) {
			fx_step(e, SM_FX_STEP_TIMER_OFF, st, SM_ACTION);
			if (sm_step_move(s, st, ST(SUCCEEDED)) != 0)
				return SAGA_EINTERNAL;
			st->finished_us = e->now_us;
			st->next_attempt_us = 0;
			st->completion_seq = s->next_seq++;
			set_error(&st->last_error, "done by hand (operator): %s", reason);
			event(s, e, EV(OPERATOR), st, 0, "skip: done by hand: %s", reason);
		} else {
			snprintf(err, errlen,
			    "step %s of saga %s is %s: only a step waiting to retry, or a "
			    "compensation waiting to retry or failed, can be skipped",
			    ds->name, s->ids, cm_step_state_name((int)st->state));
			return SAGA_ESTATE;
		}
	} else {
		snprintf(err, errlen, "unknown operation %d", op);
		return SAGA_EINVAL;
	}
	touch(e);
	advance(s, e);
	return 0;
}

/* "by WHO: " for an operator's history line; "" when the caller is not
 * known (auth off). */
static const char *
by_whom(const char *who, char *buf, size_t len)
{
	if (who == NULL || *who == '\0')
		return "";
	snprintf(buf, len, "by %.128s: ", who);
	return buf;
}

int
sm_terminate(sm_saga *s, sm_env *e, const char *who, const char *reason, char *err, size_t errlen)
{
	if (reason == NULL || *reason == '\0') {
		snprintf(err, errlen,
		    "terminating a saga needs a reason (it is recorded in the saga's history)");
		return SAGA_EINVAL;
	}
	if (s->state != SS(RUNNING) && s->state != SS(COMPENSATING) && s->state != SS(FAILED)) {
		snprintf(err, errlen,
		    "saga %s is %s: only a running, compensating or parked (failed) saga can be "
		    "terminated",
		    s->ids, cm_saga_state_name((int)s->state));
		return SAGA_ESTATE;
	}
	/* Nothing more goes out: what is owed becomes stale (gen), timers
	 * stop, and an attempt on the wire no longer holds its connection's
	 * capacity. Steps keep the state they had, so the saga page shows
	 * what was in flight when it stopped; a late outcome of it finds the
	 * saga final and is ignored (sm_report). */
	for (uint32_t i = 0; i < s->def->n_steps; i++) {
		sm_step *st = &s->steps[i];
		uint8_t x = st->state;
		if (x == ST(RUNNING) || x == ST(COMPENSATING)) {
			uint8_t kind = x == ST(RUNNING) ? SM_ACTION : SM_COMPENSATION;
			fx_step(e, SM_FX_STEP_TIMER_OFF, st, kind);
			fx_ended(e, st, kind, SM_END_LOST);
			st->gen++;
			st->queued = false;
		} else if (x == ST(RETRY_WAIT) || x == ST(COMP_RETRY_WAIT)) {
			fx_step(e, SM_FX_STEP_TIMER_OFF, st,
			    x == ST(RETRY_WAIT) ? SM_ACTION : SM_COMPENSATION);
			st->gen++;
			st->next_attempt_us = 0;
		}
	}
	if (sm_saga_move(s, SS(TERMINATED)) != 0)
		return SAGA_EINTERNAL;
	char by[160];
	set_error(&s->error, "terminated %s%.512s", by_whom(who, by, sizeof(by)), reason);
	touch(e);
	fx_add(e, (sm_fx) { .type = SM_FX_FINAL });
	event(s, e, EV(TERMINATED), NULL, 0, "%s%.512s", by_whom(who, by, sizeof(by)), reason);
	return 0;
}

int
sm_force(sm_saga *s, sm_env *e, int op, uint32_t step, const uint8_t *result, size_t result_len,
    const char *who, const char *reason, char *err, size_t errlen)
{
	if (step >= s->def->n_steps) {
		snprintf(err, errlen, "saga %s (%s) has no step %u", s->ids, s->def->name, step);
		return SAGA_EINVAL;
	}
	if (reason == NULL || *reason == '\0') {
		snprintf(err, errlen,
		    "forcing a step's outcome needs a reason (it is recorded in the saga's "
		    "history)");
		return SAGA_EINVAL;
	}
	sm_step *st = &s->steps[step];
	const defn_step *ds = &s->def->steps[step];
	char by[160];
	const char *whom = by_whom(who, by, sizeof(by));
	if (op == SAGAWIRE__OPERATION__OP_FORCE_SUCCEEDED) {
		if (s->state != SS(RUNNING) ||
		    (st->state != ST(RUNNING) && st->state != ST(RETRY_WAIT))) {
			snprintf(err, errlen,
			    "step %s of saga %s is %s (the saga %s): only a step running or "
			    "waiting "
			    "to retry in a running saga can be forced succeeded",
			    ds->name, s->ids, cm_step_state_name((int)st->state),
			    cm_saga_state_name((int)s->state));
			return SAGA_ESTATE;
		}
		uint8_t *copy = NULL;
		if (result_len > 0 && (copy = malloc(result_len)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return SAGA_ENOMEM;
		}
		fx_step(e, SM_FX_STEP_TIMER_OFF, st, SM_ACTION);
		if (st->state == ST(RUNNING))
			fx_ended(e, st, SM_ACTION, SM_END_LOST);
		if (sm_step_move(s, st, ST(SUCCEEDED)) != 0) {
			free(copy);
			return SAGA_EINTERNAL;
		}
		st->gen++; /* a queued dispatch of it is stale */
		st->queued = false;
		if (result_len)
			memcpy(copy, result, result_len);
		free(st->result);
		st->result = copy;
		st->result_len = result_len;
		st->finished_us = e->now_us;
		st->next_attempt_us = 0;
		st->completion_seq = s->next_seq++;
		set_error(&st->last_error, "succeeded by hand (operator) %s%.512s", whom, reason);
		event(s, e, EV(FORCED), st, 0, "forced succeeded with %zu bytes of result %s%.512s",
		    result_len, whom, reason);
	} else if (op == SAGAWIRE__OPERATION__OP_FORCE_COMPENSATED) {
		bool owed =
		    st->state == ST(SUCCEEDED) || (st->state == ST(FAILED) && st->uncertain);
		bool undoing = st->state == ST(COMPENSATING) || st->state == ST(COMP_RETRY_WAIT) ||
		    st->state == ST(COMP_FAILED);
		if ((s->state != SS(COMPENSATING) && s->state != SS(FAILED)) ||
		    !(owed || undoing)) {
			snprintf(err, errlen,
			    "step %s of saga %s is %s (the saga %s): only a step of a compensating "
			    "or parked saga that is owed an undo, being undone or whose undo "
			    "failed can be forced compensated",
			    ds->name, s->ids, cm_step_state_name((int)st->state),
			    cm_saga_state_name((int)s->state));
			return SAGA_ESTATE;
		}
		if (undoing) {
			fx_step(e, SM_FX_STEP_TIMER_OFF, st, SM_COMPENSATION);
			if (st->state == ST(COMPENSATING))
				fx_ended(e, st, SM_COMPENSATION, SM_END_LOST);
		}
		if (sm_step_move(s, st, ST(COMPENSATED)) != 0)
			return SAGA_EINTERNAL;
		st->gen++;
		st->queued = false;
		st->comp_finished_us = e->now_us;
		st->next_attempt_us = 0;
		set_error(&st->last_error, "compensated by hand (operator) %s%.512s", whom, reason);
		if (s->state == SS(FAILED))
			sm_saga_move(s, SS(COMPENSATING));
		event(s, e, EV(FORCED), st, 0, "forced compensated %s%.512s", whom, reason);
	} else {
		snprintf(err, errlen, "unknown operation %d", op);
		return SAGA_EINVAL;
	}
	touch(e);
	advance(s, e);
	return 0;
}

void
sm_note(sm_saga *s, sm_env *e, int type, const char *detail)
{
	event(s, e, type, NULL, 0, "%s", detail ? detail : "");
	touch(e);
}
