/* engine: sagas in memory, effects, batches, commits, the loop. See
 * engine.h; the state machine itself is sm.c, dispatch is dispatch.c, the
 * requests are handle_*.c. */
#include "engine.h"

#include <nng/nng.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth.h"
#include "defn.h"
#include "engine_int.h"
#include "names.h"
#include "failpoint.h"
#include "otel.h"
#include "registry.h"
#include "saga_base.h"
#include "sagarow.h"
#include "store.h"
#include "token.h"
#include "utf8.h"

#define SS(x) SAGAWIRE__SAGA_STATE__SAGA_##x
#define ST(x) SAGAWIRE__STEP_STATE__STEP_##x
#define EV(x) SAGAWIRE__EVENT_TYPE__EVENT_##x

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

struct engine E = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

void
elog_write(
    int level, const eng_saga *s, const defn_step *ds, uint32_t attempt, const char *fmt, ...)
{
	char tid[33];
	va_list ap;
	wire_trace_id_hex(&s->trace, tid);
	slog_ctx c = { .saga = s->sm->ids,
		.step = ds != NULL ? ds->name : NULL,
		.participant = ds != NULL ? ds->participant : NULL,
		.attempt = attempt,
		.trace = tid };
	va_start(ap, fmt);
	slog_vwrite(level, &c, fmt, ap);
	va_end(ap);
}

/* A broken invariant of the state machine (an illegal transition): a bug.
 * The move was refused; a test build stops here so that it is seen. */
static void
invariant_broken(const char *what)
{
	slog_error("invariant broken (a bug: please report it): %s", what);
#ifdef SAGAD_FATAL_INVARIANTS
	abort();
#endif
}

/* ---- timers ---------------------------------------------------------------------------- */

static void
wake_sooner(int64_t when_ms, void *arg)
{
	(void)arg;
	if (when_ms < E.sleep_until)
		pthread_cond_signal(&E.cv); /* the timer thread sleeps too long */
}

void
eng_count_outcome(const eng_saga *s, uint32_t step, uint8_t kind, int outcome)
{
	char key[1024];
	if (step >= s->sm->def->n_steps || (kind != SM_ACTION && kind != SM_COMPENSATION))
		return;
	snprintf(key, sizeof(key), "%s/%s", s->sm->def->name, s->sm->def->steps[step].name);
	mx_named *n = mx_table_get(&E.step_stats, key);
	if (n != NULL)
		n->outcomes[kind == SM_ACTION ? 0 : 1][outcome]++;
}

/* A step's timer: its attempt timed out, or its backoff is over. */
static void
step_timer_fired(tq_node *t)
{
	eng_step *x = container_of(t, eng_step, t);
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	sm_step_timer(x->saga->sm, &e, x->idx);
	/* An attempt that ended here timed out. */
	for (size_t i = 0; i < o.n; i++)
		if (o.fx[i].type == SM_FX_ENDED && o.fx[i].how == SM_END_FAILED)
			eng_count_outcome(x->saga, o.fx[i].step, o.fx[i].kind, ENG_OC_TIMEOUT);
	eng_apply(x->saga, &o);
}

static void
deadline_fired(tq_node *t)
{
	eng_saga *s = container_of(t, eng_saga, dl);
	if (s->sm->state != SS(RUNNING))
		return;
	elog(SLOG_INFO, s, NULL, 0, "deadline of %lld ms passed: compensating",
	    (long long)((s->sm->deadline_us - s->sm->created_us) / 1000));
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	sm_deadline(s->sm, &e);
	eng_apply(s, &o);
}

/* Every second: a commit that has waited long is said in the log (a
 * frozen or unreachable PostgreSQL otherwise shows nothing), once every
 * 10 s while it lasts. */
static _Atomic int64_t loop_alive_ms; /* the watchdog's last run: the loop is alive */

int64_t
engine_alive_ms(void)
{
	return atomic_load(&loop_alive_ms);
}

static void
watchdog_fired(tq_node *t)
{
	int64_t now = wire_mono_ms();
	atomic_store(&loop_alive_ms, now);
	if (E.commit_since_ms != 0 && now - E.commit_since_ms > 5000 &&
	    (E.stall_logged_ms == 0 || now - E.stall_logged_ms >= 10000)) {
		slog_warn("a commit has been waiting %lld s for PostgreSQL (frozen, overloaded or "
			  "unreachable?); no saga moves until it answers",
		    (long long)((now - E.commit_since_ms) / 1000));
		E.stall_logged_ms = now;
	}
	tq_arm_must(&E.tq, t, now + 1000);
}

uint64_t
engine_queued_mask(const uint8_t id[16])
{
	uint64_t m = 0;
	pthread_mutex_lock(&E.mu);
	eng_saga *s = eng_find(id);
	if (s != NULL)
		for (uint32_t i = 0; i < s->sm->def->n_steps && i < 64; i++)
			if (s->sm->steps[i].queued)
				m |= (uint64_t)1 << i;
	pthread_mutex_unlock(&E.mu);
	return m;
}

int64_t
engine_commit_wait_ms(void)
{
	pthread_mutex_lock(&E.mu);
	int64_t w = E.commit_since_ms != 0 ? wire_mono_ms() - E.commit_since_ms : 0;
	pthread_mutex_unlock(&E.mu);
	return w;
}

/* ---- the saga table -------------------------------------------------------------------- */

eng_saga *
eng_saga_new(const defn_saga *def)
{
	eng_saga *s = calloc(1, sizeof(*s) + def->n_steps * sizeof(eng_step));
	if (s == NULL)
		return NULL;
	if ((s->sm = sm_saga_new(def)) == NULL) {
		free(s);
		return NULL;
	}
	tq_node_init(&s->dl, deadline_fired);
	for (uint32_t i = 0; i < def->n_steps; i++) {
		s->x[i].idx = (uint16_t)i;
		s->x[i].saga = s;
		tq_node_init(&s->x[i].t, step_timer_fired);
	}
	return s;
}

void
eng_saga_free(eng_saga *s)
{
	if (s == NULL)
		return;
	for (uint32_t i = 0; i < s->sm->def->n_steps; i++)
		tq_cancel(&E.tq, &s->x[i].t);
	for (waiter *w = s->final_waiters; w; w = w->next)
		tq_cancel(&E.tq, &w->t);
	tq_cancel(&E.tq, &s->dl);
	sm_saga_free(s->sm);
	free(s->idem_key);
	free(s->business_key);
	free(s->input);
	free(s);
}

static unsigned
hash_id(const uint8_t id[16])
{
	/* v7 ids: the last 8 bytes are random. */
	uint64_t h;
	memcpy(&h, id + 8, 8);
	return (unsigned)(h ^ (h >> 29));
}

eng_saga *
eng_find(const uint8_t id[16])
{
	for (eng_saga *s = E.ids[hash_id(id) & (E.nbuckets - 1)]; s; s = s->hnext)
		if (memcmp(s->id, id, 16) == 0)
			return s;
	return NULL;
}

eng_saga *
eng_find_key(const char *key)
{
	for (eng_saga *s = E.keys[wire_hash_str(key) & (E.nbuckets - 1)]; s; s = s->knext)
		if (strcmp(s->idem_key, key) == 0)
			return s;
	return NULL;
}

static int
hash_grow(void)
{
	size_t nb = E.nbuckets * 2;
	eng_saga **ni = calloc(nb, sizeof(*ni)), **nk = calloc(nb, sizeof(*nk));
	if (ni == NULL || nk == NULL) {
		free(ni);
		free(nk);
		return SAGA_ENOMEM;
	}
	for (size_t b = 0; b < E.nbuckets; b++) {
		for (eng_saga *s = E.ids[b], *n; s; s = n) {
			n = s->hnext;
			size_t h = hash_id(s->id) & (nb - 1);
			s->hnext = ni[h];
			ni[h] = s;
		}
		for (eng_saga *s = E.keys[b], *n; s; s = n) {
			n = s->knext;
			size_t h = wire_hash_str(s->idem_key) & (nb - 1);
			s->knext = nk[h];
			nk[h] = s;
		}
	}
	free(E.ids);
	free(E.keys);
	E.ids = ni;
	E.keys = nk;
	E.nbuckets = nb;
	return 0;
}

int
eng_insert(eng_saga *s)
{
	if (E.n_sagas + 1 > E.nbuckets && hash_grow() != 0)
		return SAGA_ENOMEM;
	size_t h = hash_id(s->id) & (E.nbuckets - 1);
	s->hnext = E.ids[h];
	E.ids[h] = s;
	if (s->idem_key) {
		h = wire_hash_str(s->idem_key) & (E.nbuckets - 1);
		s->knext = E.keys[h];
		E.keys[h] = s;
	}
	E.n_sagas++;
	E.saga_bytes += s->input_len;
	return 0;
}

void
eng_unlink(eng_saga *s)
{
	eng_saga **pl = &E.ids[hash_id(s->id) & (E.nbuckets - 1)];
	for (; *pl; pl = &(*pl)->hnext) {
		if (*pl == s) {
			*pl = s->hnext;
			break;
		}
	}
	if (s->idem_key) {
		pl = &E.keys[wire_hash_str(s->idem_key) & (E.nbuckets - 1)];
		for (; *pl; pl = &(*pl)->knext) {
			if (*pl == s) {
				*pl = s->knext;
				break;
			}
		}
	}
	E.n_sagas--;
	E.saga_bytes -= s->input_len;
}

/* ---- carrying out the state machine's effects ----------------------------------------------- */

void
eng_env(sm_env *e, sm_out *o)
{
	o->changed = false;
	o->n = 0;
	e->now_us = wire_now_us();
	e->now_ms = wire_mono_ms();
	e->rng = &E.rng;
	e->out = o;
}

/* The log line for a history event. */
static void
log_event(eng_saga *s, const sm_fx *f)
{
	const defn_step *ds = f->step ? &s->sm->def->steps[f->step - 1] : NULL;
	const char *d = f->detail;
	switch (f->ev_type) {
	case EV(STARTED):
		elog(
		    SLOG_INFO, s, NULL, 0, "started %s v%u", s->sm->def->name, s->sm->def->version);
		break;
	case EV(ATTEMPT):
		elog(SLOG_DEBUG, s, ds, f->attempt, "dispatch action");
		break;
	case EV(SUCCEEDED):
		elog(SLOG_DEBUG, s, ds, 0, "action succeeded");
		break;
	case EV(ATTEMPT_FAILED):
		elog(SLOG_INFO, s, ds, f->attempt, "attempt failed: %s", d);
		break;
	case EV(FAILED):
		elog(SLOG_INFO, s, ds, 0, "%s", d);
		break;
	case EV(COMPENSATING):
		elog(SLOG_INFO, s, NULL, 0, "compensating: %s", d);
		break;
	case EV(COMP_ATTEMPT):
		elog(SLOG_DEBUG, s, ds, f->attempt, "dispatch compensation %s", d);
		break;
	case EV(COMPENSATED_STEP):
		elog(SLOG_DEBUG, s, ds, 0, "compensated: %s", d);
		break;
	case EV(COMP_ATTEMPT_FAILED):
		elog(SLOG_INFO, s, ds, f->attempt, "compensation attempt failed: %s", d);
		break;
	case EV(COMP_FAILED):
		elog(SLOG_WARN, s, ds, 0, "compensation %s", d);
		break;
	case EV(COMPLETED):
		elog(SLOG_INFO, s, NULL, 0, "completed");
		break;
	case EV(COMPENSATED):
		elog(SLOG_INFO, s, NULL, 0, "compensated");
		break;
	case EV(PARKED):
		elog(SLOG_WARN, s, NULL, 0, "parked: %s", d);
		break;
	case EV(OPERATOR):
		elog(SLOG_WARN, s, ds, 0, "operator: %s", d);
		break;
	case EV(TERMINATED):
		elog(SLOG_WARN, s, NULL, 0, "terminated (operator) %s", d);
		break;
	case EV(FORCED):
		elog(SLOG_WARN, s, ds, 0, "operator: %s", d);
		break;
	case EV(RERUN_OF):
	case EV(RERUN_AS):
		elog(SLOG_INFO, s, NULL, 0, "%s %s",
		    f->ev_type == EV(RERUN_OF) ? "rerun of" : "rerun as", d);
		break;
	}
}

/* ---- spans (otel.h; docs/TRACING.md) ---------------------------------------------------------- */

/* The salt of the saga span's id: never an attempt's, whose salts are
 * step << 40 | kind << 32 | attempt with step < DEFN_MAX_STEPS. */
#define SAGA_SPAN_SALT UINT64_MAX

/* The trace context of an attempt: its parent id is the id of the
 * attempt's span, and what the participant receives in the dispatch. */
static void
attempt_trace(const eng_saga *s, uint32_t idx, uint8_t kind, uint32_t attempt, wire_trace *out)
{
	wire_trace_child(&s->trace, (uint64_t)idx << 40 | (uint64_t)kind << 32 | attempt, out);
}

/* src into dst[cap], cut at a character boundary when too long. */
static void
copy_text(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap) : 0;
	if (n == cap)
		n = cm_utf8_cut(src, cap - 1);
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

/* What every span of s shares; the caller sets the rest. */
static void
span_common(const eng_saga *s, otel_span *sp, bool failed, const char *outcome, const char *error)
{
	const sm_saga *m = s->sm;
	memcpy(sp->trace_id, s->trace.trace_id, 16);
	sp->flags = s->trace.flags;
	sp->failed = failed;
	sp->version = m->def->version;
	memcpy(sp->saga_id, s->id, 16);
	copy_text(sp->definition, sizeof(sp->definition), m->def->name);
	copy_text(sp->outcome, sizeof(sp->outcome), outcome);
	copy_text(sp->error, sizeof(sp->error), failed ? error : NULL);
}

/*
 * An attempt's span ends with the history event of its outcome; its start
 * is the attempt's dispatch event, read from the history, which is stored
 * with the saga: a saga recovered after a restart or taken over by another
 * instance ends its spans with their recorded starts and the same ids.
 * Other event types (new kinds included) make no span here.
 */
static void
span_event(const eng_saga *s, const sm_fx *f)
{
	otel_span sp;
	uint8_t start_ev;
	const char *outcome;
	bool failed = false;
	switch (f->ev_type) {
	case EV(SUCCEEDED):
		sp.kind = OTEL_ACTION, outcome = "succeeded", start_ev = EV(ATTEMPT);
		break;
	case EV(ATTEMPT_FAILED):
		sp.kind = OTEL_ACTION, outcome = "retry", start_ev = EV(ATTEMPT), failed = true;
		break;
	case EV(FAILED):
		sp.kind = OTEL_ACTION, outcome = "failed", start_ev = EV(ATTEMPT), failed = true;
		break;
	case EV(COMPENSATED_STEP):
		if (f->attempt == 0)
			return; /* no compensation to run: no attempt */
		sp.kind = OTEL_COMPENSATION, outcome = "succeeded", start_ev = EV(COMP_ATTEMPT);
		break;
	case EV(COMP_ATTEMPT_FAILED):
		sp.kind = OTEL_COMPENSATION, outcome = "retry", start_ev = EV(COMP_ATTEMPT);
		failed = true;
		break;
	case EV(COMP_FAILED):
		sp.kind = OTEL_COMPENSATION, outcome = "failed", start_ev = EV(COMP_ATTEMPT);
		failed = true;
		break;
	default:
		return;
	}
	const sm_saga *m = s->sm;
	uint32_t idx = f->step - 1u;
	if (!(s->trace.flags & 0x01) || f->step == 0 || idx >= m->def->n_steps)
		return; /* the caller's trace is not sampled; or no step */
	/* Its end is its event (the latest of that type), its start the
	 * latest start event of the same attempt before it. */
	int64_t end_us = 0, start_us = 0;
	for (uint32_t i = m->n_ev; i-- > 0;) {
		const sm_event *ev = &m->ev[i];
		if (ev->step != f->step || ev->attempt != f->attempt)
			continue;
		if (end_us == 0) {
			if (ev->type == f->ev_type)
				end_us = ev->at_us;
		} else if (ev->type == start_ev) {
			start_us = ev->at_us;
			break;
		}
	}
	if (end_us == 0)
		end_us = wire_now_us();
	if (start_us == 0 || start_us > end_us)
		start_us = end_us; /* its start left the bounded history */
	wire_trace at, saga_span;
	attempt_trace(s, idx,
	    sp.kind == OTEL_ACTION ? (uint8_t)SM_ACTION : (uint8_t)SM_COMPENSATION, f->attempt,
	    &at);
	wire_trace_child(&s->trace, SAGA_SPAN_SALT, &saga_span);
	memcpy(sp.span_id, at.parent_id, 8);
	memcpy(sp.parent_id, saga_span.parent_id, 8);
	copy_text(sp.step, sizeof(sp.step), m->def->steps[idx].name);
	sp.attempt = f->attempt;
	sp.start_us = start_us;
	sp.end_us = end_us;
	span_common(s, &sp, failed, outcome, f->detail);
	otel_submit(&sp);
}

/*
 * The saga's span ends when the saga reaches a final state, whichever
 * (a state added later included): from its creation to its latest event.
 * A saga parked once had its span at the parking: a later end makes none,
 * so that no span id is sent twice.
 */
static void
span_final(const eng_saga *s)
{
	const sm_saga *m = s->sm;
	if (!(s->trace.flags & 0x01))
		return;
	uint32_t parked = 0;
	for (uint32_t i = 0; i < m->n_ev; i++)
		parked += m->ev[i].type == EV(PARKED);
	if (parked > (m->state == SS(FAILED) ? 1u : 0u))
		return;
	otel_span sp;
	sp.kind = OTEL_SAGA;
	sp.end_us = m->n_ev > 0 ? m->ev[m->n_ev - 1].at_us : wire_now_us();
	sp.start_us = m->created_us > 0 && m->created_us <= sp.end_us ? m->created_us : sp.end_us;
	wire_trace saga_span;
	wire_trace_child(&s->trace, SAGA_SPAN_SALT, &saga_span);
	memcpy(sp.span_id, saga_span.parent_id, 8);
	/* A trace sagad made (its id is the saga's) has no parent; a caller's
	 * trace has the caller's span. */
	if (memcmp(s->trace.trace_id, s->id, 16) == 0)
		memset(sp.parent_id, 0, 8);
	else
		memcpy(sp.parent_id, s->trace.parent_id, 8);
	sp.step[0] = '\0';
	sp.attempt = 0;
	const char *outcome = m->state == SS(FAILED) ? "parked" : cm_saga_state_name(m->state);
	span_common(s, &sp, m->state != SS(COMPLETED), outcome, m->error);
	otel_submit(&sp);
}

static void
count_final(const eng_saga *s)
{
	mx_named *ds = mx_table_get(&E.def_stats, s->sm->def->name);
	if (ds == NULL)
		return;
	uint8_t state = s->sm->state;
	*(state == SS(COMPLETED)           ? &ds->completed
		: state == SS(COMPENSATED) ? &ds->compensated
		: state == SS(TERMINATED)  ? &ds->terminated
					   : &ds->parked) += 1;
}

uint32_t
eng_apply(eng_saga *s, const sm_out *o)
{
	uint32_t queued = 0;
	for (size_t i = 0; i < o->n; i++) {
		const sm_fx *f = &o->fx[i];
		switch (f->type) {
		case SM_FX_DISPATCH: {
			action a = {
				.type = A_DISPATCH, .kind = f->kind, .step = f->step, .gen = f->gen
			};
			memcpy(a.id, s->id, 16);
			eng_after_commit(&a);
			break;
		}
		case SM_FX_QUEUE: {
			dsp_item it = { .gen = f->gen, .step = f->step, .kind = f->kind };
			memcpy(it.id, s->id, 16);
			dsp_queue(s->sm->def->steps[f->step].participant, &it);
			queued++;
			break;
		}
		case SM_FX_STEP_TIMER:
			tq_arm_must(&E.tq, &s->x[f->step].t, f->at_ms);
			break;
		case SM_FX_STEP_TIMER_OFF:
			tq_cancel(&E.tq, &s->x[f->step].t);
			break;
		case SM_FX_DEADLINE:
			tq_arm_must(&E.tq, &s->dl, f->at_ms);
			break;
		case SM_FX_ENDED:
			dsp_attempt_ended(&s->x[f->step].f, s->sm->def->steps[f->step].participant,
			    f->how == SM_END_OK           ? DSP_END_OK
				: f->how == SM_END_FAILED ? DSP_END_FAILED
							  : DSP_END_LOST);
			break;
		case SM_FX_EVENT:
			log_event(s, f);
			if (otel_enabled)
				span_event(s, f);
			break;
		case SM_FX_FINAL:
			count_final(s);
			if (otel_enabled)
				span_final(s);
			break;
		}
	}
	if (o->changed)
		eng_touch(s);
	return queued;
}

/* ---- what dispatch asks of the engine ---------------------------------------------------------- */

static void
fill_dispatch(Sagawire__Dispatch *d, eng_saga *s, uint32_t idx, uint8_t kind, dsp_text *txt,
    Sagawire__StepResult *res, Sagawire__StepResult **resp)
{
	const defn_saga *def = s->sm->def;
	const defn_step *ds = &def->steps[idx];
	const sm_step *st = &s->sm->steps[idx];
	sagawire__dispatch__init(d);
	d->saga_id.data = s->id;
	d->saga_id.len = 16;
	d->definition = def->name;
	d->version = def->version;
	d->step = ds->name;
	d->rpc = kind == SM_ACTION ? ds->name : ds->compensation;
	d->kind = (Sagawire__StepKind)kind;
	d->attempt = kind == SM_ACTION ? st->attempts : st->comp_attempts;
	snprintf(txt->key, sizeof(txt->key), "%s/%s/%s", s->sm->ids, ds->name,
	    kind == SM_ACTION ? "action" : "compensation");
	d->idempotency_key = txt->key;
	/* The parent id names this attempt: a redelivery of it carries the
	 * same one, another attempt or the compensation another. */
	wire_trace child;
	attempt_trace(s, idx, kind, d->attempt, &child);
	wire_trace_format(&child, txt->traceparent);
	d->traceparent = txt->traceparent;
	d->timeout_ms = sm_timeout_ms(ds, kind);
	d->input.data = s->input;
	d->input.len = s->input_len;
	d->participant = ds->participant;
	d->step_index = idx;
	/* What the result must carry back to be believed (token.h). */
	tok_make(s->id, idx, kind, d->attempt, txt->token);
	d->token.data = txt->token;
	d->token.len = TOK_LEN;
	size_t n = 0;
	for (uint32_t j = 0; j < ds->n_deps; j++) {
		const sm_step *dep = &s->sm->steps[ds->deps[j]];
		sagawire__step_result__init(&res[n]);
		res[n].step = def->steps[ds->deps[j]].name;
		res[n].result.data = dep->result;
		res[n].result.len = dep->result_len;
		resp[n] = &res[n];
		n++;
	}
	/* A compensation gets its own step's result if the action succeeded;
	 * an uncertain step (no business answer) has none, so the entry is
	 * left out rather than sent empty. */
	if (kind == SM_COMPENSATION && st->completion_seq > 0) {
		sagawire__step_result__init(&res[n]);
		res[n].step = ds->name;
		res[n].result.data = st->result;
		res[n].result.len = st->result_len;
		resp[n] = &res[n];
		n++;
	}
	d->n_results = n;
	d->results = resp;
}

_Static_assert(sizeof(((dsp_text *)0)->token) == TOK_LEN, "dsp_text holds one token");

/* Is this queue item still owed? Then it becomes a Dispatch. */
static dsp_flight *
op_claim(const dsp_item *it, Sagawire__Dispatch *d, dsp_text *txt, Sagawire__StepResult *res,
    Sagawire__StepResult **resp)
{
	eng_saga *s = eng_find(it->id);
	if (s == NULL || it->step >= s->sm->def->n_steps)
		return NULL;
	const sm_step *st = &s->sm->steps[it->step];
	/* A duplicate (failpoint dup-dispatch) follows a dispatch already
	 * made: the step is in flight, not queued. */
	if (st->gen != it->gen || (!st->queued && !it->dup))
		return NULL;
	uint8_t want = it->kind == SM_ACTION ? ST(RUNNING) : ST(COMPENSATING);
	if (st->state != want || eng_may_dispatch(it) != 1)
		return NULL;
	fill_dispatch(d, s, it->step, it->kind, txt, res, resp);
	return &s->x[it->step].f;
}

static void
op_sent(dsp_flight *f)
{
	eng_step *x = container_of(f, eng_step, f);
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	sm_sent(x->saga->sm, &e, x->idx);
	eng_apply(x->saga, &o);
}

static bool
op_lost(dsp_flight *f)
{
	eng_step *x = container_of(f, eng_step, f);
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	sm_lost(x->saga->sm, &e, x->idx);
	return eng_apply(x->saga, &o) > 0;
}

/* ---- recovery ---------------------------------------------------------------------------------- */

int
eng_load(const store_saga *row, eng_saga **out)
{
	const defn_saga *def = registry_get(row->definition, row->version);
	char ids[WIRE_UUID_STRLEN];
	wire_uuid_format(row->id, ids);
	*out = NULL;
	if (def == NULL) {
		slog_saga(SLOG_ERROR, ids, NULL, "definition %s v%u missing: saga not loaded",
		    row->definition, row->version);
		return SAGA_ENOTFOUND;
	}
	eng_saga *s = eng_saga_new(def);
	if (s == NULL)
		return SAGA_ENOMEM;
	memcpy(s->id, row->id, 16);
	int rv = sagarow_unpack(row, s->sm, &s->trace);
	if (rv == SAGA_EPROTO)
		slog_saga(SLOG_ERROR, ids, NULL, "stored steps unreadable: saga not loaded");
	if (rv != 0)
		goto fail;
	rv = SAGA_ENOMEM;
	s->rev = row->rev;
	s->persisted = true;
	s->updated_us = row->updated_us;
	if (row->idem_key && (s->idem_key = strdup(row->idem_key)) == NULL)
		goto fail;
	if (row->business_key && (s->business_key = strdup(row->business_key)) == NULL)
		goto fail;
	if (row->input_len) {
		if ((s->input = malloc(row->input_len)) == NULL)
			goto fail;
		memcpy(s->input, row->input, row->input_len);
	}
	s->input_len = row->input_len;
	if (eng_insert(s) != 0)
		goto fail;
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	sm_recover(s->sm, &e);
	dsp_note_redelivered(eng_apply(s, &o));
	*out = s;
	return 0;
fail:
	eng_saga_free(s);
	return rv;
}

/* ---- event entry points and the loop --------------------------------------------------------------- */

/*
 * Every entry point runs the state machine on the calling thread, under
 * E.mu: nng's callback threads (requests, closed connections) and the
 * writer (commits). Handing each event to an engine thread instead cost a
 * thread wake-up per event, which on a small VM dominated the latency of a
 * step (see docs/PERFORMANCE.md). The engine thread remains for timers and
 * shutdown only. Nothing under E.mu waits for another thread: replies are
 * queued to nng, batches to the writer, reads to the readers.
 */
static void
after_event(void)
{
	eng_maybe_submit();
	if (E.stop)
		pthread_cond_signal(&E.cv); /* shutdown waits for drained() */
}

int
engine_call(rpc_req *r, engine_handler h, bool new_work)
{
	int rv = ENGINE_ANSWERED;
	pthread_mutex_lock(&E.mu);
	/* Once closed, a late report is refused too: nothing would commit
	 * it. The participant sends it again to the next sagad, or the step
	 * is dispatched again there (it is still owed in the database). */
	if (E.closed || (E.stop && new_work))
		rpc_reply_error(r, SAGA_ECLOSED, "sagad is shutting down");
	else
		rv = h(r);
	after_event();
	pthread_mutex_unlock(&E.mu);
	return rv;
}

int
engine_operate_loaded(rpc_req *r, const store_saga *row)
{
	pthread_mutex_lock(&E.mu);
	if (E.closed) {
		rpc_reply_error(r, SAGA_ECLOSED, "sagad is shutting down");
		pthread_mutex_unlock(&E.mu);
		return ENGINE_ANSWERED;
	}
	eng_saga *s = eng_find(row->id);
	bool loaded = false;
	if (s == NULL && E.shards[shd_of(row->id)].state != SHARD_ACTIVE) {
		pthread_mutex_unlock(&E.mu);
		return ENGINE_NOT_HELD; /* another sagad holds its shard */
	}
	if (s == NULL) {
		if (eng_load(row, &s) != 0 || s == NULL) {
			rpc_reply_error(r, SAGA_EINTERNAL, "cannot take saga back from its row");
			pthread_mutex_unlock(&E.mu);
			return ENGINE_ANSWERED;
		}
		loaded = true;
	}
	if (eng_operate(r, s) != 0 && loaded && !s->in_batch && s->writing == 0) {
		eng_unlink(s);
		eng_saga_free(s);
	}
	after_event();
	pthread_mutex_unlock(&E.mu);
	return ENGINE_ANSWERED;
}

void
engine_pipe_closed(uint32_t pipe_id, void *unused)
{
	(void)unused;
	pthread_mutex_lock(&E.mu);
	if (E.closed) {
		pthread_mutex_unlock(&E.mu);
		return;
	}
	dsp_pipe_closed(pipe_id);
	after_event();
	pthread_mutex_unlock(&E.mu);
}

/* On the writer thread, right after a commit: the writer is free, so the
 * open batch can go now; the committed one is completed afterwards. */
static void
writer_free_cb(store_batch *b, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&E.mu);
	mx_hist_add(&E.commit_hist, (double)b->commit_us / 1000.0);
	E.writing_batches--;
	/* The next batch, if one waits, starts committing now. */
	E.commit_since_ms = E.writing_batches > 0 ? wire_mono_ms() : 0;
	if (E.stall_logged_ms != 0) {
		slog_info("commits go through again");
		E.stall_logged_ms = 0;
	}
	E.completing++;
	eng_maybe_submit();
	pthread_mutex_unlock(&E.mu);
}

static void
committed_cb(store_batch *b, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&E.mu);
	eng_committed(b);
	after_event();
	pthread_mutex_unlock(&E.mu);
}

/* The settings a SIGHUP may change (config.c live_opts), as the engine
 * keeps them. Under E.mu once the engine runs. */
static void
set_live_settings(const cfg *c)
{
	breaker_cfg b = { .window_ms = c->breaker_window_ms,
		.min_calls = c->breaker_min_calls,
		.fail_pct = c->breaker_failure_pct,
		.cooloff_ms = c->breaker_cooloff_ms };
	dsp_set_breaker(&b);
	E.grace_ms = c->shutdown_grace_ms;
}

int
engine_init(const cfg *c, const char *conninfo, char *err, size_t errlen)
{
	if (fp_init(c->failpoints, err, errlen) != 0)
		return SAGA_EINVAL;
	if (c->failpoints[0])
		slog_warn("failpoints set (fault testing): %s", c->failpoints);
	E.cfg = c;
	sm_invariant_hook = invariant_broken;
	E.tq.on_sooner = wake_sooner;
	static const dsp_ops ops = { .claim = op_claim, .sent = op_sent, .lost = op_lost };
	dsp_init(c, &E.tq, &ops);
	set_live_settings(c);
	E.sleep_until = INT64_MAX;
	atomic_store(&loop_alive_ms, wire_mono_ms());
	tq_node_init(&E.watchdog, watchdog_fired);
	tq_arm_must(&E.tq, &E.watchdog, wire_mono_ms() + 1000);
	E.conninfo = strdup(conninfo);
	E.nbuckets = 1024;
	E.ids = calloc(E.nbuckets, sizeof(*E.ids));
	E.keys = calloc(E.nbuckets, sizeof(*E.keys));
	if (E.conninfo == NULL || E.ids == NULL || E.keys == NULL) {
		snprintf(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	if (getrandom(&E.rng, sizeof(E.rng), 0) != sizeof(E.rng) || E.rng == 0)
		E.rng = (uint64_t)wire_now_us() | 1;
	/* Sagas are loaded shard by shard as shards.c claims them. */
	return store_writer_start(conninfo, writer_free_cb, committed_cb, NULL);
}

/*
 * Shutdown, in order: new sagas and polls are refused (rpc.c), parked polls
 * are answered empty so nothing more is dispatched, and the outcomes of
 * steps already dispatched are let in until there are none or the grace
 * period ends; then what is open is committed and engine_run() returns.
 * Steps not answered by then stay owed in the database and are dispatched
 * again on the next start (the participant's barrier makes the repeat
 * harmless).
 */
void
engine_stop(void)
{
	pthread_mutex_lock(&E.mu);
	if (!E.stop) {
		E.stop = true;
		E.stop_until_ms = wire_mono_ms() + E.grace_ms;
		dsp_stop();
		slog_info(
		    "shutting down: new sagas refused, nothing more dispatched; waiting up to "
		    "%u ms for the outcomes of %zu step(s) in flight",
		    E.grace_ms, dsp_in_flight());
	}
	pthread_cond_signal(&E.cv);
	pthread_mutex_unlock(&E.mu);
}

void
engine_reload(const cfg *c)
{
	pthread_mutex_lock(&E.mu);
	set_live_settings(c);
	pthread_mutex_unlock(&E.mu);
}

static bool
drained(void)
{
	if (E.writing_batches != 0 || E.completing != 0 || E.n_open != 0 || E.open_post.n != 0)
		return false;
	return dsp_in_flight() == 0 || wire_mono_ms() >= E.stop_until_ms;
}

void
engine_run(void)
{
	int64_t hold_until = 0; /* after a pause: timers wait until then */
	pthread_mutex_lock(&E.mu);
	for (;;) {
		int64_t t = wire_mono_ms();
		/* Woken far later than asked (sagad was stopped, or starved of
		 * CPU): answers that arrived meanwhile wait in the sockets, and
		 * the timeouts that fell due must not beat them. Timers wait a
		 * second while nng's threads deliver what is there. */
		if (E.sleep_until != INT64_MAX && t - E.sleep_until > 1000 && hold_until == 0) {
			slog_warn("sagad was not running for %lld ms (stopped or starved): timers "
				  "wait 1 s for the answers that arrived meanwhile",
			    (long long)(t - E.sleep_until));
			hold_until = t + 1000;
		}
		if (hold_until != 0 && t >= hold_until)
			hold_until = 0;
		if (hold_until == 0)
			tq_run_due(&E.tq, t);
		eng_maybe_submit();
		if (E.stop && drained()) {
			size_t left = dsp_in_flight();
			if (left > 0)
				slog_warn("shutdown grace period (%u ms) over with %zu step(s) in "
					  "flight: they stay owed and are dispatched again on the "
					  "next start",
				    E.grace_ms, left);
			else
				slog_info("every dispatched step has its outcome recorded");
			E.closed = true;
			break;
		}
		tq_node *first = tq_peek(&E.tq);
		int64_t until = first != NULL ? first->when_ms : INT64_MAX;
		if (hold_until != 0)
			until = hold_until;
		/* The end of the grace period wakes the loop once; after it,
		 * the commits still open do (after_event). */
		if (E.stop && E.stop_until_ms < until && E.stop_until_ms > t)
			until = E.stop_until_ms;
		if (until == INT64_MAX) {
			E.sleep_until = INT64_MAX;
			pthread_cond_wait(&E.cv, &E.mu);
			continue;
		}
		int64_t wait = until - wire_mono_ms();
		if (wait <= 0)
			continue;
		E.sleep_until = until;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&E.cv, &E.mu, &ts);
	}
	E.sleep_until = INT64_MAX;
	pthread_mutex_unlock(&E.mu);
}

void
engine_fini(void)
{
	store_writer_stop();
	/* Disarm every timer first, while what embeds them still exists. */
	tq_free(&E.tq);
	for (size_t b = 0; b < E.nbuckets; b++) {
		for (eng_saga *s = E.ids[b], *n; s; s = n) {
			n = s->hnext;
			for (waiter *w = s->waiters, *wn; w; w = wn) {
				wn = w->next;
				free(w);
			}
			for (waiter *w = s->final_waiters, *wn; w; w = wn) {
				wn = w->next;
				free(w);
			}
			s->final_waiters = NULL;
			eng_saga_free(s);
		}
	}
	free(E.ids);
	free(E.keys);
	mx_table_clear(&E.def_stats);
	mx_table_clear(&E.step_stats);
	free(E.open);
	free(E.open_post.v);
	free(E.conninfo);
	free(E.instance);
	for (unsigned sh = 0; sh < SHD_N; sh++)
		free(E.shards[sh].held);
	dsp_fini();
}

/* ---- metrics --------------------------------------------------------------------------------- */

static size_t
shards_held_locked(void)
{
	size_t n = 0;
	for (unsigned s = 0; s < SHD_N; s++)
		n += E.shards[s].state != SHARD_NONE;
	return n;
}

int
engine_metrics(char **out, size_t *len)
{
	mx_buf b = { 0 };
	pthread_mutex_lock(&E.mu);
	static const struct {
		const char *name, *help;
		size_t off;
	} counters[] = {
		{ "sagad_sagas_started_total", "Sagas started.", offsetof(mx_named, started) },
		{ "sagad_sagas_completed_total", "Sagas that completed.",
		    offsetof(mx_named, completed) },
		{ "sagad_sagas_compensated_total", "Sagas that were compensated.",
		    offsetof(mx_named, compensated) },
		{ "sagad_sagas_parked_total", "Sagas parked as failed (need an operator).",
		    offsetof(mx_named, parked) },
		{ "sagad_sagas_terminated_total",
		    "Sagas an operator terminated (stopped without compensating).",
		    offsetof(mx_named, terminated) },
	};
	for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
		mx_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", counters[c].name,
		    counters[c].help, counters[c].name);
		for (size_t i = 0; i < E.def_stats.n; i++) {
			mx_printf(&b, "%s{definition=\"", counters[c].name);
			mx_label(&b, E.def_stats.v[i].name);
			mx_printf(&b, "\"} %llu\n",
			    (unsigned long long)*(
				const uint64_t *)(const void *)((const char *)&E.def_stats.v[i] +
				counters[c].off));
		}
	}
	mx_printf(&b,
	    "# HELP sagad_sagas_in_flight Unfinished sagas held by sagad.\n"
	    "# TYPE sagad_sagas_in_flight gauge\nsagad_sagas_in_flight %zu\n"
	    "# HELP sagad_shards_held Shards (of 64) this instance holds.\n"
	    "# TYPE sagad_shards_held gauge\nsagad_shards_held %zu\n"
	    "# HELP sagad_connections Open connections (clients and participants).\n"
	    "# TYPE sagad_connections gauge\nsagad_connections %u\n"
	    "# HELP sagad_connections_refused_total Connections refused because "
	    "max_connections were open.\n"
	    "# TYPE sagad_connections_refused_total counter\nsagad_connections_refused_total "
	    "%llu\n"
	    "# HELP sagad_tls_handshakes_refused_total TLS handshakes refused on tls+tcp:// "
	    "listeners (counted every 10 s).\n"
	    "# TYPE sagad_tls_handshakes_refused_total counter\n"
	    "sagad_tls_handshakes_refused_total %llu\n",
	    E.n_sagas, shards_held_locked(), rpc_connections(),
	    (unsigned long long)rpc_connections_refused(),
	    (unsigned long long)rpc_tls_handshakes_refused());
	static const char *const oc_names[] = { "success", "retry", "timeout", "failure" };
	mx_printf(&b,
	    "# HELP sagad_step_outcomes_total Attempts that ended, by definition, step, "
	    "kind (action, compensation) and outcome (success, retry: a retryable "
	    "error, timeout, failure: a business failure).\n"
	    "# TYPE sagad_step_outcomes_total counter\n");
	for (size_t i = 0; i < E.step_stats.n; i++) {
		const mx_named *n = &E.step_stats.v[i];
		const char *slash = strchr(n->name, '/');
		if (slash == NULL)
			continue;
		for (int k = 0; k < 2; k++)
			for (int o = 0; o < 4; o++) {
				if (n->outcomes[k][o] == 0)
					continue;
				mx_printf(&b,
				    "sagad_step_outcomes_total{definition=\"%.*s\",step=\"",
				    (int)(slash - n->name), n->name);
				mx_label(&b, slash + 1);
				mx_printf(&b, "\",kind=\"%s\",outcome=\"%s\"} %llu\n",
				    k == 0 ? "action" : "compensation", oc_names[o],
				    (unsigned long long)n->outcomes[k][o]);
			}
	}
	dsp_metrics(&b);
	uint64_t unauth = 0, denied = 0;
	auth_refusals(&unauth, &denied);
	mx_printf(&b,
	    "# HELP sagad_requests_refused_total Requests refused with auth on: reason "
	    "\"unauthenticated\" (no valid credential) or \"denied\" (role too weak).\n"
	    "# TYPE sagad_requests_refused_total counter\n"
	    "sagad_requests_refused_total{reason=\"unauthenticated\"} %llu\n"
	    "sagad_requests_refused_total{reason=\"denied\"} %llu\n",
	    (unsigned long long)unauth, (unsigned long long)denied);
	eng_report_metrics(&b);
	otel_metrics(&b);
	mx_printf(&b,
	    "# HELP sagad_db_commit_seconds Time to commit one batch of saga "
	    "transitions in PostgreSQL.\n# TYPE sagad_db_commit_seconds histogram\n");
	mx_hist_write(&b, "sagad_db_commit_seconds", NULL, NULL, &E.commit_hist);
	pthread_mutex_unlock(&E.mu);
	mx_process(&b, cm_version());
	if (b.failed) {
		free(b.p);
		return SAGA_ENOMEM;
	}
	*out = b.p;
	*len = b.n;
	return 0;
}
