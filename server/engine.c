/* engine: the saga state machine and its event loop. See engine.h. */
#include "engine.h"

#include <math.h>
#include <nng/nng.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "defn.h"
#include "failpoint.h"
#include "log.h"
#include "reader.h"
#include "registry.h"
#include "relay.h"
#include "names.h"
#include "saga_base.h"
#include "utf8.h"
#include "store.h"
#include "timerq.h"
#include "wire.h"

#define ST(x)       SAGAWIRE__STEP_STATE__STEP_##x
#define SS(x)       SAGAWIRE__SAGA_STATE__SAGA_##x
#define KIND_ACTION SAGAWIRE__STEP_KIND__STEP_ACTION
#define KIND_COMP   SAGAWIRE__STEP_KIND__STEP_COMPENSATION

/* Limits on what one saga may carry in memory and in its row. */
#define MAX_ERROR_LEN 1024

/* ---- sagas in memory ---------------------------------------------------- */

typedef struct eng_saga eng_saga;

typedef struct eng_step {
	uint8_t state;  /* Sagawire__StepState */
	bool queued;    /* a dispatch of it waits in the relay queue */
	bool uncertain; /* failed without a business answer: compensate anyway */
	uint16_t idx;
	uint32_t attempts, comp_attempts;
	int64_t started_us, finished_us, comp_started_us, comp_finished_us, next_attempt_us;
	char *last_error;
	uint8_t *result;
	size_t result_len;
	uint32_t completion_seq;
	uint32_t gen;     /* outstanding queue items carry it; bump = forget them */
	tq_node t;        /* its timeout (RUNNING/COMPENSATING) or retry (*_RETRY_WAIT) */
	uint32_t pipe_id; /* connection it is in flight on; 0 = none */
	int64_t sent_ms;  /* when the attempt in flight was dispatched (metrics) */
	struct eng_step *pprev, *pnext; /* that connection's in-flight list */
	eng_saga *saga;
} eng_step;

typedef struct waiter {
	rpc_req *req;
	bool existing;  /* a second start with the same idempotency key */
	bool start;     /* a start with wait_ms: answered with a StartResponse */
	tq_node t;      /* wait requests: their timeout */
	eng_saga *saga; /* wait requests: the saga waited on */
	struct waiter *next;
} waiter;

/* One entry of a saga's history (sagawire.Event). */
typedef struct eng_event {
	int64_t at_us;
	uint8_t type;  /* Sagawire__EventType */
	uint16_t step; /* index + 1; 0 = the saga */
	uint32_t attempt;
	char *detail; /* never NULL */
} eng_event;

/* A saga keeps at most this many events: past it, the oldest after the
 * first HISTORY_KEEP_FIRST are dropped (the start stays, the end is
 * recent), so a saga retried for days cannot grow without bound. */
#define HISTORY_MAX        200
#define HISTORY_KEEP_FIRST 20

struct eng_saga {
	uint8_t id[16];
	char ids[WIRE_UUID_STRLEN];
	const defn_saga *def;
	uint8_t state;
	int32_t rev;
	bool persisted;   /* its row is committed */
	bool in_batch;    /* in the open batch */
	uint32_t writing; /* submitted batches holding it */
	char *idem_key, *business_key;
	int64_t created_us, updated_us;
	uint8_t *input;
	size_t input_len;
	char *error;
	uint32_t next_seq;
	int64_t deadline_us; /* unix us; 0 = none */
	tq_node dl;          /* its deadline timer, while running */
	eng_event *ev;       /* its history, oldest first */
	uint32_t n_ev, cap_ev;
	wire_trace trace; /* its W3C trace context (given at start or made there) */
	eng_step *steps;
	waiter *waiters;       /* start requests answered at its first commit */
	waiter *final_waiters; /* wait requests answered once final and durable */
	eng_saga *hnext;       /* id hash chain */
	eng_saga *knext;       /* idempotency-key hash chain */
};

/* A log line about saga s (and its step ds, attempt, when not NULL/0),
 * carrying the saga's trace id. The level is checked before anything is
 * formatted. */
#define elog(lvl, s, ds, attempt, ...)                                        \
	do {                                                                  \
		if ((lvl) <= slog_level)                                      \
			elog_write((lvl), (s), (ds), (attempt), __VA_ARGS__); \
	} while (0)

static void elog_write(int level, const eng_saga *s, const defn_step *ds, uint32_t attempt,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
elog_write(
    int level, const eng_saga *s, const defn_step *ds, uint32_t attempt, const char *fmt, ...)
{
	char tid[33];
	va_list ap;
	wire_trace_id_hex(&s->trace, tid);
	slog_ctx c = { .saga = s->ids,
		.step = ds != NULL ? ds->name : NULL,
		.participant = ds != NULL ? ds->participant : NULL,
		.attempt = attempt,
		.trace = tid };
	va_start(ap, fmt);
	slog_vwrite(level, &c, fmt, ap);
	va_end(ap);
}

/* ---- post-commit work ------------------------------------------------------ */

enum { A_DISPATCH = 1, A_ACK, A_CANCEL_REPLY, A_OPERATE_REPLY };

typedef struct action {
	uint8_t type;
	uint8_t kind;
	uint16_t step;
	uint32_t gen;
	uint8_t id[16];
	rpc_req *req;
	uint32_t a, b;
} action;

typedef struct post {
	action *v;
	size_t n, cap;
} post;

/* ---- timers ------------------------------------------------------------------ */

enum { T_STEP_TIMEOUT = 1, T_RETRY, T_POLL, T_WAIT, T_DEADLINE, T_BREAKER };

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---- events --------------------------------------------------------------------- */

/* ---- the engine ------------------------------------------------------------------ */

static struct {
	const cfg *cfg;
	breaker_cfg brk_cfg;
	char *conninfo;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	bool closed;           /* engine_run() returned: no event may start a batch any more */
	int64_t stop_until_ms; /* shutdown: wait for in-flight outcomes until then */
	uint32_t grace_ms;     /* shutdown_grace_ms, changed by engine_reload() */

	/* engine-thread state */
	eng_saga **ids;  /* hash by id */
	eng_saga **keys; /* hash by idempotency key */
	size_t nbuckets;
	size_t n_sagas;

	eng_saga **open; /* sagas changed since the last submit */
	size_t n_open, cap_open;
	post open_post;
	uint32_t writing_batches; /* submitted, not yet committed */
	uint32_t completing;      /* committed, post-commit work not yet run */

	timerq tq;
	int64_t sleep_until; /* the timer thread's wake-up; arm() signals if earlier */

	uint64_t rng;
} E = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static _Atomic uint64_t stat_dispatched, stat_redelivered; /* for /metrics */

/* ---- metrics (under E.mu unless atomic) ---------------------------------------- */

/* Histogram bucket bounds in milliseconds (Prometheus "le"), shared by
 * commit times and step latencies. */
static const double HIST_LE_MS[] = { 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000, 30000 };
#define N_HIST (sizeof(HIST_LE_MS) / sizeof(HIST_LE_MS[0]))

typedef struct hist {
	uint64_t bucket[N_HIST]; /* non-cumulative */
	uint64_t count;
	double sum_ms;
} hist;

static void
hist_add(hist *h, double ms)
{
	size_t i = 0;
	while (i < N_HIST && ms > HIST_LE_MS[i])
		i++;
	if (i < N_HIST)
		h->bucket[i]++;
	h->count++;
	h->sum_ms += ms;
}

/* Counts by definition name (sagas and their outcomes) and by participant
 * name (step latency): one entry type and one lookup for both tables. */
#define MAX_NAMED_STATS 256
typedef struct named_stat {
	char *name;
	uint64_t started, completed, compensated, parked;
	hist latency;
} named_stat;
static named_stat def_stats[MAX_NAMED_STATS], part_stats[MAX_NAMED_STATS];
static size_t n_def_stats, n_part_stats;
static hist commit_hist;

/* The entry for name in table t (n used), added if absent; NULL when the
 * table is full or out of memory. */
static named_stat *
stat_of(named_stat *t, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(t[i].name, name) == 0)
			return &t[i];
	if (*n == MAX_NAMED_STATS || (t[*n].name = strdup(name)) == NULL)
		return NULL;
	return &t[(*n)++];
}

static int64_t now_ms(void);

/* Step latency (dispatch to outcome or timeout) by participant. */
static void
note_latency(const defn_step *ds, eng_step *st)
{
	if (st->sent_ms == 0)
		return;
	named_stat *ps = stat_of(part_stats, &n_part_stats, ds->participant);
	if (ps != NULL)
		hist_add(&ps->latency, (double)(now_ms() - st->sent_ms));
	st->sent_ms = 0;
}

/* ---- small helpers ------------------------------------------------------------------ */

static int64_t
now_ms(void)
{
	return wire_mono_ms();
}

static double
rand01(void)
{
	/* xorshift64*: backoff jitter needs spread, not secrecy. */
	uint64_t x = E.rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	E.rng = x;
	return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static unsigned
hash_id(const uint8_t id[16])
{
	/* v7 ids: the last 8 bytes are random. */
	uint64_t h;
	memcpy(&h, id + 8, 8);
	return (unsigned)(h ^ (h >> 29));
}

static eng_saga *
saga_find(const uint8_t id[16])
{
	for (eng_saga *s = E.ids[hash_id(id) & (E.nbuckets - 1)]; s; s = s->hnext)
		if (memcmp(s->id, id, 16) == 0)
			return s;
	return NULL;
}

static eng_saga *
saga_find_key(const char *key)
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

static int
saga_insert(eng_saga *s)
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
	return 0;
}

static void
saga_unlink(eng_saga *s)
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
}

static void
saga_free(eng_saga *s)
{
	if (s == NULL)
		return;
	if (s->steps) {
		for (uint32_t i = 0; i < s->def->n_steps; i++) {
			tq_cancel(&E.tq, &s->steps[i].t);
			free(s->steps[i].last_error);
			free(s->steps[i].result);
		}
	}
	for (waiter *w = s->final_waiters; w; w = w->next)
		tq_cancel(&E.tq, &w->t);
	tq_cancel(&E.tq, &s->dl);
	for (uint32_t i = 0; i < s->n_ev; i++)
		free(s->ev[i].detail);
	free(s->ev);
	free(s->steps);
	free(s->idem_key);
	free(s->business_key);
	free(s->input);
	free(s->error);
	free(s);
}

static eng_saga *
saga_alloc(const defn_saga *def)
{
	eng_saga *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->steps = calloc(def->n_steps, sizeof(eng_step));
	if (s->steps == NULL) {
		free(s);
		return NULL;
	}
	s->def = def;
	s->next_seq = 1;
	tq_node_init(&s->dl);
	for (uint32_t i = 0; i < def->n_steps; i++) {
		s->steps[i].idx = (uint16_t)i;
		s->steps[i].saga = s;
		tq_node_init(&s->steps[i].t);
		s->steps[i].state = ST(PENDING);
	}
	return s;
}

static bool
saga_is_final(const eng_saga *s)
{
	return s->state == SS(COMPLETED) || s->state == SS(COMPENSATED) || s->state == SS(FAILED);
}

/* ---- timers ------------------------------------------------------------------ */

static void
arm(tq_node *t, int type, uint8_t kind, int64_t when_ms)
{
	t->type = (uint8_t)type;
	t->kind = kind;
	if (when_ms < E.sleep_until)
		pthread_cond_signal(&E.cv); /* the timer thread sleeps too long */
	if (tq_arm(&E.tq, t, when_ms) != 0) {
		/* Without the timer a step would wait forever: this is the one
		 * allocation failure we cannot route around. */
		slog_error("out of memory arming a timer; aborting");
		abort();
	}
}

static void
step_timer(eng_step *st, int type, uint8_t kind, int64_t when_ms)
{
	arm(&st->t, type, kind, when_ms);
}

/* ---- batches: every change goes through saga_touch ------------------------------- */

static int
post_add(post *p, const action *a)
{
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 256;
		action *nv = realloc(p->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return SAGA_ENOMEM;
		p->v = nv;
		p->cap = ncap;
	}
	p->v[p->n++] = *a;
	return 0;
}

/* Records that s changed: bumps its revision and puts it in the open batch,
 * where it appears once however often it changes before the batch goes. */
static void
saga_touch(eng_saga *s)
{
	s->rev++;
	s->updated_us = wire_now_us();
	if (s->in_batch)
		return;
	if (E.n_open == E.cap_open) {
		size_t ncap = E.cap_open ? E.cap_open * 2 : 1024;
		eng_saga **no = realloc(E.open, ncap * sizeof(*no));
		if (no == NULL) {
			slog_error("out of memory growing the batch; aborting");
			abort();
		}
		E.open = no;
		E.cap_open = ncap;
	}
	E.open[E.n_open++] = s;
	s->in_batch = true;
}

static void
after_commit(const action *a)
{
	if (post_add(&E.open_post, a) != 0) {
		slog_error("out of memory queueing post-commit work; aborting");
		abort();
	}
}

/* Serialises the per-step state of s into a StoredSteps message. */
static int
pack_steps(const eng_saga *s, uint8_t **out, size_t *len)
{
	uint32_t n = s->def->n_steps;
	Sagawire__StoredStep ss[DEFN_MAX_STEPS];
	Sagawire__StoredStep *pp[DEFN_MAX_STEPS];
	for (uint32_t i = 0; i < n; i++) {
		const eng_step *st = &s->steps[i];
		sagawire__stored_step__init(&ss[i]);
		ss[i].state = (Sagawire__StepState)st->state;
		ss[i].attempts = st->attempts;
		ss[i].comp_attempts = st->comp_attempts;
		ss[i].started_us = st->started_us;
		ss[i].finished_us = st->finished_us;
		ss[i].comp_started_us = st->comp_started_us;
		ss[i].comp_finished_us = st->comp_finished_us;
		ss[i].last_error = st->last_error ? st->last_error : (char *)"";
		ss[i].result.data = st->result;
		ss[i].result.len = st->result_len;
		ss[i].completion_seq = st->completion_seq;
		ss[i].next_attempt_us = st->next_attempt_us;
		ss[i].uncertain = st->uncertain;
		pp[i] = &ss[i];
	}
	Sagawire__StoredSteps m = SAGAWIRE__STORED_STEPS__INIT;
	m.n_steps = n;
	m.steps = pp;
	m.next_seq = s->next_seq;
	m.deadline_us = s->deadline_us;
	char tp[WIRE_TRACEPARENT_LEN + 1];
	wire_trace_format(&s->trace, tp);
	m.traceparent = tp;
	Sagawire__Event evs[HISTORY_MAX], *evp[HISTORY_MAX];
	for (uint32_t i = 0; i < s->n_ev; i++) {
		sagawire__event__init(&evs[i]);
		evs[i].at_us = s->ev[i].at_us;
		evs[i].type = (Sagawire__EventType)s->ev[i].type;
		evs[i].step = s->ev[i].step;
		evs[i].attempt = s->ev[i].attempt;
		evs[i].detail = s->ev[i].detail;
		evp[i] = &evs[i];
	}
	m.n_events = s->n_ev;
	m.events = evp;
	size_t sz = sagawire__stored_steps__get_packed_size(&m);
	uint8_t *buf = malloc(sz ? sz : 1);
	if (buf == NULL)
		return SAGA_ENOMEM;
	sagawire__stored_steps__pack(&m, buf);
	*out = buf;
	*len = sz;
	return 0;
}

/* Hands the open batch to the writer if it is idle (or the batch is full).
 * Group commit falls out of this: while one batch commits, the next
 * gathers every change made meanwhile. */
static void
maybe_submit(void)
{
	if (E.n_open == 0 && E.open_post.n == 0)
		return;
	if (E.writing_batches > 0 && E.n_open < E.cfg->max_batch)
		return;
	store_batch *b = store_batch_new();
	post *p = calloc(1, sizeof(*p));
	if (b == NULL || p == NULL) {
		slog_error("out of memory submitting a batch; aborting");
		abort();
	}
	for (size_t i = 0; i < E.n_open; i++) {
		eng_saga *s = E.open[i];
		store_row *r = store_batch_add(b);
		if (r == NULL || pack_steps(s, &r->steps, &r->steps_len) != 0) {
			slog_error("out of memory building a batch; aborting");
			abort();
		}
		memcpy(r->id, s->id, 16);
		r->insert = !s->persisted && s->writing == 0;
		r->state = (int16_t)s->state;
		r->rev = s->rev;
		r->updated_us = s->updated_us;
		r->error = strdup(s->error ? s->error : "");
		if (r->insert) {
			r->definition = s->def->name;
			r->version = s->def->version;
			r->idem_key = s->idem_key;
			r->business_key = s->business_key;
			r->created_us = s->created_us;
			r->input = s->input;
			r->input_len = s->input_len;
		}
		s->in_batch = false;
		s->writing++;
	}
	*p = E.open_post;
	memset(&E.open_post, 0, sizeof(E.open_post));
	E.n_open = 0; /* the array is kept for the next batch */
	b->user = p;
	E.writing_batches++;
	store_writer_submit(b);
}

/* ---- transitions ------------------------------------------------------------------- */

#define EV(x) SAGAWIRE__EVENT_TYPE__EVENT_##x

static void event(eng_saga *s, int type, const eng_step *st, uint32_t attempt, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Appends to the saga's history; the caller's transition stores it. */
static void
event(eng_saga *s, int type, const eng_step *st, uint32_t attempt, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cm_utf8_trim(buf);
	if (s->n_ev == HISTORY_MAX) {
		free(s->ev[HISTORY_KEEP_FIRST].detail);
		memmove(&s->ev[HISTORY_KEEP_FIRST], &s->ev[HISTORY_KEEP_FIRST + 1],
		    (s->n_ev - HISTORY_KEEP_FIRST - 1) * sizeof(*s->ev));
		s->n_ev--;
	}
	if (s->n_ev == s->cap_ev) {
		uint32_t ncap = s->cap_ev ? s->cap_ev * 2 : 8;
		if (ncap > HISTORY_MAX)
			ncap = HISTORY_MAX;
		eng_event *nv = realloc(s->ev, ncap * sizeof(*nv));
		if (nv == NULL)
			return; /* history is best effort; the state is not */
		s->ev = nv;
		s->cap_ev = ncap;
	}
	char *d = strdup(buf);
	if (d == NULL)
		return;
	s->ev[s->n_ev++] = (eng_event) { .at_us = wire_now_us(),
		.type = (uint8_t)type,
		.step = st ? (uint16_t)(st->idx + 1) : 0,
		.attempt = attempt,
		.detail = d };
}

static void set_error(char **dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_error(char **dst, const char *fmt, ...)
{
	char buf[MAX_ERROR_LEN];
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

static uint32_t
backoff_ms(const defn_retry *r, uint32_t attempts_made)
{
	double base = (double)r->initial_backoff_ms *
	    pow(r->multiplier, attempts_made > 0 ? attempts_made - 1 : 0);
	if (base > r->max_backoff_ms)
		base = r->max_backoff_ms;
	double d = base * (1.0 - r->jitter) + rand01() * base * r->jitter;
	return d < 0 ? 0 : (uint32_t)d;
}

/* Makes a dispatch of st owed: persisted with the batch, queued after it. */
static void
owe_dispatch(eng_step *st, uint8_t kind)
{
	st->gen++;
	st->queued = true;
	action a = { .type = A_DISPATCH, .kind = kind, .step = st->idx, .gen = st->gen };
	memcpy(a.id, st->saga->id, 16);
	after_commit(&a);
}

static void
start_action(eng_saga *s, eng_step *st)
{
	st->state = ST(RUNNING);
	st->attempts++;
	if (st->started_us == 0)
		st->started_us = wire_now_us();
	event(s, EV(ATTEMPT), st, st->attempts, "%s", "");
	owe_dispatch(st, KIND_ACTION);
	saga_touch(s);
	elog(SLOG_DEBUG, s, &s->def->steps[st->idx], st->attempts, "dispatch action");
}

static void
start_compensation(eng_saga *s, eng_step *st)
{
	const defn_step *ds = &s->def->steps[st->idx];
	if (ds->compensation == NULL) {
		/* Nothing to undo. */
		st->state = ST(COMPENSATED);
		st->comp_finished_us = wire_now_us();
		event(s, EV(COMPENSATED_STEP), st, 0, "no compensation: nothing to undo");
		saga_touch(s);
		return;
	}
	st->state = ST(COMPENSATING);
	st->comp_attempts++;
	if (st->comp_started_us == 0)
		st->comp_started_us = wire_now_us();
	event(s, EV(COMP_ATTEMPT), st, st->comp_attempts, "%s", ds->compensation);
	owe_dispatch(st, KIND_COMP);
	saga_touch(s);
	elog(SLOG_DEBUG, s, ds, st->comp_attempts, "dispatch compensation %s", ds->compensation);
}

/* Takes a step out of the connection it is in flight on. */
static void
unlink_inflight(eng_step *st)
{
	if (st->pipe_id == 0)
		return;
	relay_pipe *pp = relay_pipe_get(st->pipe_id, 0);
	if (pp != NULL) {
		if (st->pprev)
			st->pprev->pnext = st->pnext;
		else
			pp->inflight_head = st->pnext;
		if (st->pnext)
			st->pnext->pprev = st->pprev;
		if (pp->inflight > 0)
			pp->inflight--;
	}
	st->pprev = st->pnext = NULL;
	st->pipe_id = 0;
}

static void
saga_set_state(eng_saga *s, uint8_t state)
{
	s->state = state;
	saga_touch(s);
}

/* Enters compensation: stop going forward. Actions not yet sent are
 * abandoned; actions waiting to retry are given up. Both count as
 * uncertain (an earlier attempt, or one sent before a crash, may have
 * applied), so they are compensated too; the participant's barrier makes
 * an undo of a never-applied action a no-op. Actions in flight finish. */
static void
begin_compensation(eng_saga *s)
{
	saga_set_state(s, SS(COMPENSATING));
	for (uint32_t i = 0; i < s->def->n_steps; i++) {
		eng_step *st = &s->steps[i];
		if ((st->state == ST(RUNNING) && st->queued) || st->state == ST(RETRY_WAIT)) {
			tq_cancel(&E.tq, &st->t);
			st->gen++;
			st->queued = false;
			st->state = ST(FAILED);
			st->uncertain = true;
			st->finished_us = wire_now_us();
			st->next_attempt_us = 0;
		}
	}
	event(s, EV(COMPENSATING), NULL, 0, "%s", s->error ? s->error : "");
	elog(SLOG_INFO, s, NULL, 0, "compensating: %s", s->error ? s->error : "");
}

static bool
needs_undo(const eng_step *st)
{
	return st->state == ST(SUCCEEDED) || (st->state == ST(FAILED) && st->uncertain);
}

/* Settled for compensation: nothing more will happen to it before its
 * dependencies are undone. */
static bool
settled(const eng_step *st)
{
	return st->state == ST(PENDING) || st->state == ST(COMPENSATED) ||
	    (st->state == ST(FAILED) && !st->uncertain);
}

static void
finish_saga(eng_saga *s, uint8_t state)
{
	saga_set_state(s, state);
	named_stat *ds = stat_of(def_stats, &n_def_stats, s->def->name);
	if (ds)
		*(state == SS(COMPLETED)           ? &ds->completed
			: state == SS(COMPENSATED) ? &ds->compensated
						   : &ds->parked) += 1;
	if (state == SS(COMPLETED)) {
		event(s, EV(COMPLETED), NULL, 0, "%s", "");
		elog(SLOG_INFO, s, NULL, 0, "completed");
	} else if (state == SS(COMPENSATED)) {
		event(s, EV(COMPENSATED), NULL, 0, "%s", "");
		elog(SLOG_INFO, s, NULL, 0, "compensated");
	} else {
		event(s, EV(PARKED), NULL, 0, "%s", s->error ? s->error : "");
		elog(SLOG_WARN, s, NULL, 0, "parked: %s", s->error ? s->error : "");
	}
}

/* Moves a saga as far as it can go. Called after every change. */
static void
advance(eng_saga *s)
{
	const defn_saga *d = s->def;
	if (saga_is_final(s))
		return;
	if (s->state == SS(RUNNING)) {
		uint32_t done = 0;
		for (uint32_t i = 0; i < d->n_steps; i++) {
			if (s->steps[i].state == ST(FAILED)) {
				if (s->error == NULL || *s->error == '\0')
					set_error(&s->error, "step %s failed: %s", d->steps[i].name,
					    s->steps[i].last_error ? s->steps[i].last_error : "");
				begin_compensation(s);
				goto compensate;
			}
		}
		for (uint32_t k = 0; k < d->n_steps; k++) {
			uint32_t i = d->topo[k];
			eng_step *st = &s->steps[i];
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
				start_action(s, st);
		}
		if (done == d->n_steps)
			finish_saga(s, SS(COMPLETED));
		return;
	}
compensate:
	/* Dependents are undone before their dependencies; independent
	 * branches in parallel. Loop: undoing a step without compensation
	 * is immediate and may make its dependencies eligible. */
	for (bool changed = true; changed;) {
		changed = false;
		for (uint32_t i = 0; i < d->n_steps; i++) {
			eng_step *st = &s->steps[i];
			if (!needs_undo(st))
				continue;
			bool ready = true;
			for (uint32_t j = 0; j < d->n_steps && ready; j++)
				if ((d->steps[i].dependents_mask >> j & 1) &&
				    !settled(&s->steps[j]))
					ready = false;
			if (ready) {
				start_compensation(s, st);
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
		finish_saga(s, SS(FAILED));
		return;
	}
	/* Nothing running and nothing eligible. Any step still needing undo
	 * waits on a dependent that cannot be undone: that is a park too. */
	for (uint32_t i = 0; i < d->n_steps; i++) {
		if (needs_undo(&s->steps[i])) {
			finish_saga(s, SS(FAILED));
			return;
		}
	}
	finish_saga(s, SS(COMPENSATED));
}

/* An attempt of st (kind) ended: apply the outcome. */
static void
apply_outcome(eng_saga *s, eng_step *st, uint8_t kind, int outcome, const uint8_t *out,
    size_t out_len, const char *error)
{
	const defn_step *ds = &s->def->steps[st->idx];
	int64_t now = wire_now_us();
	tq_cancel(&E.tq, &st->t); /* its timeout or retry timer */
	unlink_inflight(st);
	if (kind == KIND_ACTION) {
		if (outcome == SAGAWIRE__OUTCOME__OUTCOME_SUCCESS) {
			uint8_t *copy = NULL;
			if (out_len > 0 && (copy = malloc(out_len)) == NULL) {
				/* Treat as a retryable failure rather than lose data. */
				outcome = SAGAWIRE__OUTCOME__OUTCOME_RETRY;
				error = "sagad out of memory storing the result";
			} else {
				if (out_len)
					memcpy(copy, out, out_len);
				free(st->result);
				st->result = copy;
				st->result_len = out_len;
				st->state = ST(SUCCEEDED);
				st->finished_us = now;
				st->completion_seq = s->next_seq++;
				event(s, EV(SUCCEEDED), st, st->attempts, "%zu bytes of result",
				    out_len);
				saga_touch(s);
				elog(SLOG_DEBUG, s, ds, 0, "action succeeded");
				advance(s);
				return;
			}
		}
		set_error(&st->last_error, "%s", error && *error ? error : "(no reason given)");
		if (outcome == SAGAWIRE__OUTCOME__OUTCOME_FAIL) {
			st->state = ST(FAILED);
			st->uncertain = false;
			st->finished_us = now;
			set_error(&s->error, "step %s failed: %s", ds->name, st->last_error);
			event(s, EV(FAILED), st, st->attempts, "business failure: %s",
			    st->last_error);
			elog(SLOG_INFO, s, ds, 0, "business failure: %s", st->last_error);
		} else if (s->state == SS(RUNNING) && st->attempts < ds->retry.max_attempts) {
			uint32_t delay = backoff_ms(&ds->retry, st->attempts);
			st->state = ST(RETRY_WAIT);
			st->next_attempt_us = now + (int64_t)delay * 1000;
			step_timer(st, T_RETRY, KIND_ACTION, now_ms() + delay);
			event(s, EV(ATTEMPT_FAILED), st, st->attempts, "%s; retry in %u ms",
			    st->last_error, delay);
			elog(SLOG_INFO, s, ds, st->attempts, "attempt failed: %s; retry in %u ms",
			    st->last_error, delay);
		} else {
			st->state = ST(FAILED);
			st->uncertain = true;
			st->finished_us = now;
			if (s->state == SS(RUNNING))
				set_error(&s->error, "step %s failed after %u attempts: %s",
				    ds->name, st->attempts, st->last_error);
			event(s, EV(FAILED), st, st->attempts, "failed after %u attempts: %s",
			    st->attempts, st->last_error);
			elog(SLOG_INFO, s, ds, 0, "failed after %u attempts: %s", st->attempts,
			    st->last_error);
		}
		saga_touch(s);
		advance(s);
		return;
	}
	/* compensation */
	if (outcome == SAGAWIRE__OUTCOME__OUTCOME_SUCCESS) {
		st->state = ST(COMPENSATED);
		st->comp_finished_us = now;
		event(s, EV(COMPENSATED_STEP), st, st->comp_attempts, "%s", ds->compensation);
		saga_touch(s);
		elog(SLOG_DEBUG, s, ds, 0, "compensated");
		advance(s);
		return;
	}
	/* A compensation cannot "fail for business reasons": undo must
	 * happen. Both kinds of failure retry up to the limit, then park. */
	set_error(&st->last_error, "%s", error && *error ? error : "(no reason given)");
	if (st->comp_attempts < ds->comp_retry.max_attempts) {
		uint32_t delay = backoff_ms(&ds->comp_retry, st->comp_attempts);
		st->state = ST(COMP_RETRY_WAIT);
		st->next_attempt_us = now + (int64_t)delay * 1000;
		step_timer(st, T_RETRY, KIND_COMP, now_ms() + delay);
		event(s, EV(COMP_ATTEMPT_FAILED), st, st->comp_attempts, "%s; retry in %u ms",
		    st->last_error, delay);
		elog(SLOG_INFO, s, ds, st->comp_attempts,
		    "compensation attempt failed: %s; retry in %u ms", st->last_error, delay);
	} else {
		st->state = ST(COMP_FAILED);
		st->comp_finished_us = now;
		set_error(&s->error, "compensation %s of step %s failed after %u attempts: %s",
		    ds->compensation, ds->name, st->comp_attempts, st->last_error);
		event(s, EV(COMP_FAILED), st, st->comp_attempts, "failed after %u attempts: %s",
		    st->comp_attempts, st->last_error);
	}
	saga_touch(s);
	advance(s);
}

/* ---- dispatch: building and sending WorkBatches ------------------------------------ */

/* Is this queue item still owed? */
static eng_step *
item_step(const relay_item *it, eng_saga **sp)
{
	eng_saga *s = saga_find(it->id);
	if (s == NULL || it->step >= s->def->n_steps)
		return NULL;
	eng_step *st = &s->steps[it->step];
	/* A duplicate (failpoint dup-dispatch) follows a dispatch already
	 * made: the step is in flight, not queued. */
	if (st->gen != it->gen || (!st->queued && !it->dup))
		return NULL;
	uint8_t want = it->kind == KIND_ACTION ? ST(RUNNING) : ST(COMPENSATING);
	if (st->state != want)
		return NULL;
	*sp = s;
	return st;
}

/* Text a Dispatch points into while it is packed. The key is
 * "<36-char id>/<step name, at most 128>/compensation". */
typedef struct dispatch_text {
	char key[WIRE_UUID_STRLEN + 128 + 16];
	char traceparent[WIRE_TRACEPARENT_LEN + 1];
} dispatch_text;

static void
fill_dispatch(Sagawire__Dispatch *d, eng_saga *s, eng_step *st, uint8_t kind, dispatch_text *txt,
    Sagawire__StepResult *res, Sagawire__StepResult **resp)
{
	const defn_step *ds = &s->def->steps[st->idx];
	sagawire__dispatch__init(d);
	d->saga_id.data = s->id;
	d->saga_id.len = 16;
	d->definition = s->def->name;
	d->version = s->def->version;
	d->step = ds->name;
	d->rpc = kind == KIND_ACTION ? ds->name : ds->compensation;
	d->kind = (Sagawire__StepKind)kind;
	d->attempt = kind == KIND_ACTION ? st->attempts : st->comp_attempts;
	snprintf(txt->key, sizeof(txt->key), "%s/%s/%s", s->ids, ds->name,
	    kind == KIND_ACTION ? "action" : "compensation");
	d->idempotency_key = txt->key;
	/* The parent id names this attempt: a redelivery of it carries the
	 * same one, another attempt or the compensation another. */
	wire_trace child;
	wire_trace_child(
	    &s->trace, (uint64_t)st->idx << 40 | (uint64_t)kind << 32 | d->attempt, &child);
	wire_trace_format(&child, txt->traceparent);
	d->traceparent = txt->traceparent;
	d->timeout_ms = kind == KIND_ACTION ? ds->timeout_ms : ds->comp_timeout_ms;
	d->input.data = s->input;
	d->input.len = s->input_len;
	d->participant = ds->participant;
	d->step_index = st->idx;
	size_t n = 0;
	for (uint32_t j = 0; j < ds->n_deps; j++) {
		eng_step *dep = &s->steps[ds->deps[j]];
		sagawire__step_result__init(&res[n]);
		res[n].step = s->def->steps[ds->deps[j]].name;
		res[n].result.data = dep->result;
		res[n].result.len = dep->result_len;
		resp[n] = &res[n];
		n++;
	}
	if (kind == KIND_COMP) {
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

/* Sends as many queued steps of participant p as its connections can take. */
static void
pump(relay_part *p)
{
	enum { MAXB = 4096 };
	if (E.stop)
		return; /* shutting down: what is queued stays owed for the next start */
	while (p->q_len > 0) {
		uint32_t allow = breaker_allow(&p->brk, &E.brk_cfg, now_ms());
		if (allow == 0) {
			if (p->brk.state == BRK_OPEN)
				arm(&p->brk_t, T_BREAKER, 0, p->brk.open_until_ms);
			return;
		}
		relay_pipe *pp = relay_next_pipe(p);
		if (pp == NULL)
			return;
		uint32_t room = pp->capacity - pp->inflight;
		if (room > allow)
			room = allow;
		if (room > E.cfg->dispatch_batch)
			room = E.cfg->dispatch_batch;
		if (room > MAXB)
			room = MAXB;
		Sagawire__Dispatch *ds = calloc(room, sizeof(*ds));
		Sagawire__Dispatch **dp = calloc(room, sizeof(*dp));
		dispatch_text *keys = calloc(room, sizeof(*keys));
		Sagawire__StepResult *res =
		    calloc((size_t)room * (DEFN_MAX_STEPS + 1), sizeof(*res));
		Sagawire__StepResult **resp =
		    calloc((size_t)room * (DEFN_MAX_STEPS + 1), sizeof(*resp));
		eng_step **sent = calloc(room, sizeof(*sent));
		uint8_t *kinds = calloc(room, 1);
		if (!ds || !dp || !keys || !res || !resp || !sent || !kinds) {
			slog_error("out of memory building a work batch; will retry");
			free(ds), free(dp), free(keys), free(res), free(resp), free(sent),
			    free(kinds);
			return;
		}
		uint32_t n = 0;
		size_t bytes = 0;
		/* Keep a batch under what the connection accepts, else nng drops
		 * the connection and the steps bounce back forever. */
		size_t limit = E.cfg->max_message_bytes;
		if (pp->max_bytes != 0 && pp->max_bytes < limit)
			limit = (size_t)pp->max_bytes;
		relay_item it;
		while (n < room && relay_pop(p, &it)) {
			eng_saga *s;
			eng_step *st = item_step(&it, &s);
			if (st == NULL)
				continue;
			fill_dispatch(&ds[n], s, st, it.kind, &keys[n],
			    &res[(size_t)n * (DEFN_MAX_STEPS + 1)],
			    &resp[(size_t)n * (DEFN_MAX_STEPS + 1)]);
			size_t sz = sagawire__dispatch__get_packed_size(&ds[n]);
			if (n > 0 && bytes + sz + 64 > limit) {
				/* Keep messages under the size peers accept:
				 * this one goes first in the next batch. */
				relay_push(p, &it);
				break;
			}
			bytes += sz + 8;
			dp[n] = &ds[n];
			sent[n] = it.dup ? NULL : st; /* a duplicate changes no state */
			kinds[n] = it.kind;
			n++;
		}
		if (n > 0) {
			Sagawire__WorkBatch wb = SAGAWIRE__WORK_BATCH__INIT;
			wb.n_dispatches = n;
			wb.dispatches = dp;
			Sagawire__Response resp_msg = SAGAWIRE__RESPONSE__INIT;
			resp_msg.body_case = SAGAWIRE__RESPONSE__BODY_WORK;
			resp_msg.work = &wb;
			rpc_req *poll = pp->poll;
			pp->poll = NULL;
			tq_cancel(&E.tq, &pp->poll_t);
			int64_t t = now_ms();
			for (uint32_t k = 0; k < n; k++) {
				eng_step *st = sent[k];
				if (st == NULL)
					continue;
				if (fp_hit(FP_DUP_DISPATCH)) {
					relay_item dup = { .gen = st->gen,
						.step = st->idx,
						.kind = kinds[k],
						.dup = 1 };
					memcpy(dup.id, st->saga->id, 16);
					relay_push(p, &dup);
				}
				const defn_step *dstep = &st->saga->def->steps[st->idx];
				st->queued = false;
				st->pipe_id = pp->id;
				st->pprev = NULL;
				st->pnext = pp->inflight_head;
				if (st->pnext)
					st->pnext->pprev = st;
				pp->inflight_head = st;
				pp->inflight++;
				st->sent_ms = t;
				uint32_t to = kinds[k] == KIND_ACTION ? dstep->timeout_ms
								      : dstep->comp_timeout_ms;
				step_timer(st, T_STEP_TIMEOUT, kinds[k], t + to);
			}
			atomic_fetch_add(&stat_dispatched, n);
			if (p->brk.state == BRK_HALF_OPEN)
				slog_info(
				    "participant %s: circuit breaker half-open: probing with one "
				    "step",
				    p->name);
			breaker_dispatched(&p->brk, n);
			rpc_reply(poll, &resp_msg);
			fp_kill(FP_AFTER_DISPATCH);
		}
		free(ds), free(dp), free(keys), free(res), free(resp), free(sent), free(kinds);
		if (n == 0)
			return;
	}
}

static void
pump_all(void)
{
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		if (p->q_len > 0)
			pump(p);
}

static void
queue_step(eng_saga *s, eng_step *st, uint8_t kind)
{
	const defn_step *ds = &s->def->steps[st->idx];
	relay_part *p = relay_part_get(ds->participant, 1);
	relay_item it = { .gen = st->gen, .step = st->idx, .kind = kind };
	memcpy(it.id, s->id, 16);
	if (p == NULL || relay_push(p, &it) != 0) {
		slog_error("out of memory queueing a dispatch; aborting");
		abort();
	}
}

/* ---- request handlers ------------------------------------------------------------ */

static bool
valid_text(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	return n <= max && cm_utf8_ok(s, n);
}

/* Answers a wait (or a start that waits) with the saga's state now. */
static void
reply_final(waiter *w, const eng_saga *s)
{
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	if (w->start) {
		Sagawire__StartResponse sr = SAGAWIRE__START_RESPONSE__INIT;
		sr.saga_id = (char *)s->ids;
		sr.version = s->def->version;
		sr.existing = w->existing;
		sr.state = (Sagawire__SagaState)s->state;
		sr.error = s->error ? s->error : (char *)"";
		resp.body_case = SAGAWIRE__RESPONSE__BODY_START;
		resp.start = &sr;
		rpc_reply(w->req, &resp);
		return;
	}
	Sagawire__WaitResponse wr = SAGAWIRE__WAIT_RESPONSE__INIT;
	wr.state = (Sagawire__SagaState)s->state;
	wr.error = s->error ? s->error : (char *)"";
	resp.body_case = SAGAWIRE__RESPONSE__BODY_WAIT;
	resp.wait = &wr;
	rpc_reply(w->req, &resp);
}

/* Holds r until s is final and durable, or wait_ms passes. */
static int
add_final_waiter(eng_saga *s, rpc_req *r, bool start, bool existing, uint32_t wait_ms)
{
	waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return SAGA_ENOMEM;
	w->req = r;
	w->saga = s;
	w->start = start;
	w->existing = existing;
	tq_node_init(&w->t);
	w->next = s->final_waiters;
	s->final_waiters = w;
	arm(&w->t, T_WAIT, 0, now_ms() + (wait_ms > 600000 ? 600000 : wait_ms));
	return 0;
}

/* Arms the deadline timer of a running saga (monotonic, from its wall-clock
 * deadline: after a restart the time already gone counts). */
static void
arm_deadline(eng_saga *s)
{
	int64_t left_ms = (s->deadline_us - wire_now_us()) / 1000;
	arm(&s->dl, T_DEADLINE, 0, now_ms() + (left_ms > 0 ? left_ms : 0));
}

static void
handle_start(rpc_req *r)
{
	Sagawire__StartRequest *q = r->req->start;
	if (q->definition == NULL || *q->definition == '\0') {
		rpc_reply_error(r, SAGA_EINVAL, "start: no definition named");
		return;
	}
	if (!valid_text(q->definition, 256) || !valid_text(q->idempotency_key, 256) ||
	    !valid_text(q->business_key, 256)) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "start: definition, idempotency_key and business_key must be UTF-8 text of at "
		    "most 256 bytes");
		return;
	}
	if (q->input.len > E.cfg->max_message_bytes) {
		rpc_reply_error(r, SAGA_ETOOBIG, "start: input of %zu bytes exceeds %u",
		    q->input.len, E.cfg->max_message_bytes);
		return;
	}
	wire_trace given;
	bool has_trace = q->traceparent[0] != '\0';
	if (has_trace && wire_trace_parse(q->traceparent, &given) != 0) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "start: traceparent \"%.64s\" is not a W3C traceparent "
		    "(00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lower case); leave it "
		    "empty and sagad starts a trace",
		    q->traceparent);
		return;
	}
	const defn_saga *def = registry_get(q->definition, q->version);
	if (def == NULL) {
		if (q->version && registry_get(q->definition, 0))
			rpc_reply_error(r, SAGA_ENOTFOUND, "saga definition %s has no version %u",
			    q->definition, q->version);
		else
			rpc_reply_error(r, SAGA_ENOTFOUND,
			    "unknown saga definition %s (register it with `sagactl register FILE`)",
			    q->definition);
		return;
	}
	/* The definition may name an input field as the business key. */
	char bk[257] = "";
	if (!q->business_key[0] && def->business_key != NULL &&
	    defn_business_key(def, q->input.data, q->input.len, bk, sizeof(bk)) != 0) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "start: the input is not a valid %s, so its business key field %s cannot be "
		    "read (a string of at most 256 bytes or an integer); send the serialized "
		    "message, or give the business key with the start",
		    def->input_type, def->business_key);
		return;
	}
	bool has_key = q->idempotency_key[0] != '\0';
	if (has_key) {
		eng_saga *s = saga_find_key(q->idempotency_key);
		if (s != NULL && q->wait_ms > 0) {
			if (add_final_waiter(s, r, true, true, q->wait_ms) != 0)
				rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
			return;
		}
		if (s != NULL) {
			if (s->persisted) {
				Sagawire__StartResponse sr = SAGAWIRE__START_RESPONSE__INIT;
				sr.saga_id = s->ids;
				sr.version = s->def->version;
				sr.existing = true;
				Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
				resp.body_case = SAGAWIRE__RESPONSE__BODY_START;
				resp.start = &sr;
				rpc_reply(r, &resp);
				return;
			}
			waiter *w = calloc(1, sizeof(*w));
			if (w == NULL) {
				rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
				return;
			}
			w->req = r;
			w->existing = true;
			w->next = s->waiters;
			s->waiters = w;
			return;
		}
	}
	if (E.n_sagas >= (size_t)E.cfg->max_pending * 16) {
		rpc_reply_error(
		    r, SAGA_EBUSY, "too many sagas in flight (%zu); try again later", E.n_sagas);
		return;
	}
	eng_saga *s = saga_alloc(def);
	waiter *w = calloc(1, sizeof(*w));
	if (s == NULL || w == NULL)
		goto nomem;
	wire_uuid_v7(s->id);
	wire_uuid_format(s->id, s->ids);
	if (has_trace)
		s->trace = given;
	else
		wire_trace_new(s->id, &s->trace); /* trace id = saga id: easy to find */
	s->state = SS(RUNNING);
	s->created_us = s->updated_us = wire_now_us();
	if (has_key && (s->idem_key = strdup(q->idempotency_key)) == NULL)
		goto nomem;
	const char *bkey = q->business_key[0] ? q->business_key : bk;
	if (bkey[0] && (s->business_key = strdup(bkey)) == NULL)
		goto nomem;
	if (q->input.len && (s->input = malloc(q->input.len)) == NULL)
		goto nomem;
	if (q->input.len)
		memcpy(s->input, q->input.data, q->input.len);
	s->input_len = q->input.len;
	if (saga_insert(s) != 0)
		goto nomem;
	uint32_t deadline_ms = q->deadline_ms ? q->deadline_ms : def->deadline_ms;
	if (deadline_ms) {
		s->deadline_us = s->created_us + (int64_t)deadline_ms * 1000;
		arm_deadline(s);
	}
	if (q->wait_ms > 0) {
		/* Answered when final (and durable) instead of when started. */
		free(w);
		w = NULL;
		if (add_final_waiter(s, r, true, false, q->wait_ms) != 0) {
			saga_unlink(s);
			goto nomem;
		}
	} else {
		w->req = r;
		s->waiters = w;
	}
	event(s, EV(STARTED), NULL, 0, "%s@%u", def->name, def->version);
	named_stat *dst = stat_of(def_stats, &n_def_stats, def->name);
	if (dst)
		dst->started++;
	elog(SLOG_INFO, s, NULL, 0, "started %s v%u", def->name, def->version);
	saga_touch(s);
	advance(s);
	return;
nomem:
	free(w);
	saga_free(s);
	rpc_reply_error(r, SAGA_ENOMEM, "out of memory starting a saga");
}

static void
handle_cancel(rpc_req *r)
{
	Sagawire__CancelRequest *q = r->req->cancel;
	uint8_t id[16];
	if (wire_uuid_parse(q->saga_id, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "cancel: '%.64s' is not a saga id", q->saga_id);
		return;
	}
	eng_saga *s = saga_find(id);
	if (s == NULL || saga_is_final(s)) {
		/* Not active here: the reader tells unknown from finished. */
		reader_submit_cancel_check(r);
		return;
	}
	if (s->state == SS(RUNNING)) {
		const char *why = q->reason && *q->reason ? q->reason : "no reason given";
		set_error(
		    &s->error, "cancelled: %.512s", valid_text(why, 512) ? why : "(invalid text)");
		begin_compensation(s);
		advance(s);
	}
	action a = { .type = A_CANCEL_REPLY, .req = r };
	memcpy(a.id, s->id, 16);
	a.a = s->state;
	after_commit(&a);
	saga_touch(s); /* make sure a batch carries the reply */
}

/* Answers every wait on s (it is final and that is committed). */
static void
release_final_waiters(eng_saga *s)
{
	for (waiter *w = s->final_waiters, *n; w; w = n) {
		n = w->next;
		tq_cancel(&E.tq, &w->t);
		reply_final(w, s);
		free(w);
	}
	s->final_waiters = NULL;
}

static void
handle_wait(rpc_req *r)
{
	Sagawire__WaitRequest *q = r->req->wait;
	uint8_t id[16];
	if (wire_uuid_parse(q->saga_id, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "wait: '%.64s' is not a saga id", q->saga_id);
		return;
	}
	eng_saga *s = saga_find(id);
	if (s == NULL) {
		/* Not in memory: final (and durable) or unknown. */
		reader_submit_wait_check(r);
		return;
	}
	if (add_final_waiter(s, r, false, false, q->timeout_ms ? q->timeout_ms : 30000) != 0)
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
}

/* Answers a connection's parked poll with an empty batch: the participant
 * polls again (idle timeout, a replaced poll, shutdown). */
static void
answer_poll_empty(relay_pipe *pp)
{
	Sagawire__WorkBatch wb = SAGAWIRE__WORK_BATCH__INIT;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_WORK;
	resp.work = &wb;
	rpc_reply(pp->poll, &resp);
	pp->poll = NULL;
}

static void
handle_poll(rpc_req *r)
{
	Sagawire__WorkPoll *q = r->req->poll;
	if (q->participant == NULL || q->participant[0] == '\0' ||
	    !valid_text(q->participant, 128)) {
		rpc_reply_error(
		    r, SAGA_EINVAL, "poll: participant name must be 1-128 bytes of UTF-8");
		return;
	}
	if (q->capacity == 0) {
		rpc_reply_error(r, SAGA_EINVAL, "poll: capacity must be at least 1");
		return;
	}
	if (relay_pipe_get(r->pipe_id, 0) == NULL && !rpc_pipe_alive(r->pipe_id)) {
		/* Its close was already handled: parking the poll here would
		 * make a connection nobody can reach. */
		rpc_reply_error(r, SAGA_ECLOSED, "connection closed");
		return;
	}
	relay_pipe *pp = relay_pipe_get(r->pipe_id, 1);
	relay_part *p = relay_part_get(q->participant, 1);
	if (pp == NULL || p == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	if (pp->part != NULL && pp->part != p) {
		slog_warn("connection %u polled as '%s' after '%s': refused", r->pipe_id,
		    q->participant, pp->part->name);
		rpc_reply_error(r, SAGA_EINVAL,
		    "poll: this connection already serves participant '%s'; use one connection per "
		    "participant",
		    pp->part->name);
		return;
	}
	if (pp->part == NULL) {
		if (relay_pipe_bind(pp, p) != 0) {
			rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
			return;
		}
		slog_info("participant %s connected (connection %u, capacity %u, instance %.64s)",
		    p->name, pp->id, q->capacity, q->instance ? q->instance : "");
	}
	pp->capacity = q->capacity > E.cfg->max_capacity ? E.cfg->max_capacity : q->capacity;
	pp->max_bytes = q->max_message_bytes;
	/* A second poll on the same connection (a REQ resend): the newer one
	 * replaces it; the old one gets an empty answer. */
	if (pp->poll != NULL)
		answer_poll_empty(pp);
	pp->poll = r;
	arm(&pp->poll_t, T_POLL, 0, now_ms() + E.cfg->poll_timeout_ms);
	pump(p);
}

/* An attempt of a step of participant ds->participant ended: the
 * breaker learns whether it failed (retryable error or timeout). */
static void
breaker_note(const defn_step *ds, bool failure)
{
	relay_part *p = relay_part_get(ds->participant, 0);
	if (p == NULL)
		return;
	int ns = breaker_record(&p->brk, &E.brk_cfg, now_ms(), failure);
	if (ns == BRK_OPEN) {
		if (p->brk.times_opened > 1 && p->brk.last_calls == 0)
			slog_warn("participant %s: circuit breaker open again: the probe failed; "
				  "no dispatch for %u ms",
			    p->name, E.brk_cfg.cooloff_ms);
		else
			slog_warn("participant %s: circuit breaker open: %u of %u attempts failed "
				  "or timed out within %u ms; no dispatch for %u ms (steps wait)",
			    p->name, p->brk.last_fails, p->brk.last_calls, E.brk_cfg.window_ms,
			    E.brk_cfg.cooloff_ms);
		arm(&p->brk_t, T_BREAKER, 0, p->brk.open_until_ms);
	} else if (ns == BRK_CLOSED) {
		tq_cancel(&E.tq, &p->brk_t);
		slog_info("participant %s: circuit breaker closed: the probe succeeded; "
			  "dispatching resumes",
		    p->name);
		pump(p);
	}
}

/* A heartbeat of the attempt in flight restarts its timeout. Returns
 * whether it was for that attempt. */
static bool
heartbeat(eng_saga *s, eng_step *st, uint8_t kind, uint32_t attempt)
{
	const defn_step *ds = &s->def->steps[st->idx];
	bool live = kind == KIND_ACTION
	    ? st->state == ST(RUNNING) && attempt == st->attempts
	    : kind == KIND_COMP && st->state == ST(COMPENSATING) && attempt == st->comp_attempts;
	if (!live || st->queued || attempt == 0)
		return false;
	uint32_t ms = ds->hb_timeout_ms ? ds->hb_timeout_ms
	    : kind == KIND_ACTION       ? ds->timeout_ms
					: ds->comp_timeout_ms;
	step_timer(st, T_STEP_TIMEOUT, kind, now_ms() + ms);
	return true;
}

static void
handle_report(rpc_req *r)
{
	Sagawire__Report *q = r->req->report;
	uint32_t accepted = 0, ignored = 0, beats = 0;
	relay_pipe *pp = relay_pipe_get(r->pipe_id, 0);
	const char *who = pp && pp->part ? pp->part->name : q->participant;
	for (size_t i = 0; i < q->n_results; i++) {
		Sagawire__Result *res = q->results[i];
		eng_saga *s;
		if (res->saga_id.len != 16 || (s = saga_find(res->saga_id.data)) == NULL ||
		    saga_is_final(s) || res->step_index >= s->def->n_steps) {
			ignored++;
			continue;
		}
		eng_step *st = &s->steps[res->step_index];
		const defn_step *ds = &s->def->steps[st->idx];
		uint8_t kind = (uint8_t)res->kind;
		if (who == NULL || strcmp(who, ds->participant) != 0) {
			elog(SLOG_WARN, s, ds, 0,
			    "result from '%s' for a step of participant '%s' ignored",
			    who ? who : "?", ds->participant);
			ignored++;
			continue;
		}
		int oc = res->outcome;
		if (oc == SAGAWIRE__OUTCOME__OUTCOME_HEARTBEAT) {
			if (heartbeat(s, st, (uint8_t)res->kind, res->attempt))
				beats++;
			else
				ignored++;
			continue;
		}
		if (oc != SAGAWIRE__OUTCOME__OUTCOME_SUCCESS &&
		    oc != SAGAWIRE__OUTCOME__OUTCOME_RETRY &&
		    oc != SAGAWIRE__OUTCOME__OUTCOME_FAIL) {
			elog(SLOG_WARN, s, ds, 0, "result with invalid outcome %d ignored", oc);
			ignored++;
			continue;
		}
		bool awaiting;
		uint32_t cur;
		if (kind == KIND_ACTION) {
			awaiting = st->state == ST(RUNNING) || st->state == ST(RETRY_WAIT);
			cur = st->attempts;
		} else if (kind == KIND_COMP) {
			awaiting =
			    st->state == ST(COMPENSATING) || st->state == ST(COMP_RETRY_WAIT);
			cur = st->comp_attempts;
		} else {
			ignored++;
			continue;
		}
		/* A success or business failure from any attempt is a real
		 * outcome (the effect may have applied); a retryable error
		 * counts only for the attempt in flight now. */
		if (!awaiting || res->attempt > cur || res->attempt == 0 ||
		    (oc == SAGAWIRE__OUTCOME__OUTCOME_RETRY &&
			(res->attempt != cur ||
			    (st->state != ST(RUNNING) && st->state != ST(COMPENSATING))))) {
			ignored++;
			continue;
		}
		const char *err = res->error;
		char clean[MAX_ERROR_LEN];
		if (err && !valid_text(err, MAX_ERROR_LEN - 1)) {
			snprintf(clean, sizeof(clean),
			    "(participant sent an error that is not valid UTF-8)");
			err = clean;
		}
		if (st->state == ST(RETRY_WAIT) || st->state == ST(COMP_RETRY_WAIT))
			st->next_attempt_us = 0;
		if (st->queued) {
			/* A late answer while a redelivery waits: drop it. */
			st->queued = false;
		}
		note_latency(ds, st);
		apply_outcome(s, st, kind, oc, res->output.data, res->output.len, err);
		breaker_note(ds, oc == SAGAWIRE__OUTCOME__OUTCOME_RETRY);
		accepted++;
	}
	if (accepted == 0) {
		/* Nothing to commit (heartbeats change no stored state). */
		Sagawire__ReportAck ack = SAGAWIRE__REPORT_ACK__INIT;
		ack.accepted = beats;
		ack.ignored = ignored;
		Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
		resp.body_case = SAGAWIRE__RESPONSE__BODY_ACK;
		resp.ack = &ack;
		rpc_reply(r, &resp);
		if (pp && pp->part)
			pump(pp->part);
		return;
	}
	action a = { .type = A_ACK, .req = r, .a = accepted + beats, .b = ignored };
	after_commit(&a);
	fp_kill(FP_BEFORE_REPORT_COMMIT);
}

/* Applies an operator action to s (held by the engine). Returns 0 and
 * queues the reply after the commit, or replies with the error. */
static int
operate(rpc_req *r, eng_saga *s)
{
	Sagawire__OperateRequest *q = r->req->operate;
	int idx = q->step ? defn_step_index(s->def, q->step) : -1;
	if (idx < 0) {
		rpc_reply_error(r, SAGA_EINVAL, "saga %s (%s) has no step '%.128s'", s->ids,
		    s->def->name, q->step ? q->step : "");
		return -1;
	}
	const char *reason = q->reason && *q->reason ? q->reason : "";
	if (!valid_text(reason, 512)) {
		rpc_reply_error(
		    r, SAGA_EINVAL, "the reason must be UTF-8 text of at most 512 bytes");
		return -1;
	}
	eng_step *st = &s->steps[idx];
	const defn_step *ds = &s->def->steps[idx];
	bool parked = s->state == SS(FAILED);
	int64_t now = wire_now_us();
	if (q->op == SAGAWIRE__OPERATION__OP_RETRY_STEP) {
		if (st->state == ST(COMP_FAILED) || st->state == ST(COMP_RETRY_WAIT)) {
			tq_cancel(&E.tq, &st->t);
			st->comp_attempts = 0;
			st->next_attempt_us = 0;
			if (parked)
				saga_set_state(s, SS(COMPENSATING));
			event(s, EV(OPERATOR), st, 0, "retry the compensation %s%s%s",
			    ds->compensation, *reason ? ": " : "", reason);
			start_compensation(s, st);
		} else if (st->state == ST(RETRY_WAIT) && s->state == SS(RUNNING)) {
			tq_cancel(&E.tq, &st->t);
			st->attempts = 0;
			st->next_attempt_us = 0;
			event(s, EV(OPERATOR), st, 0, "retry the action%s%s", *reason ? ": " : "",
			    reason);
			start_action(s, st);
		} else {
			rpc_reply_error(r, SAGA_ESTATE,
			    "step %s of saga %s is %s: only a step waiting to retry, or whose "
			    "compensation failed, can be retried",
			    ds->name, s->ids, cm_step_state_name((int)st->state));
			return -1;
		}
	} else if (q->op == SAGAWIRE__OPERATION__OP_SKIP_STEP) {
		if (*reason == '\0') {
			rpc_reply_error(r, SAGA_EINVAL,
			    "skipping a step needs a reason (it is recorded in the saga's "
			    "history)");
			return -1;
		}
		if (st->state == ST(COMP_FAILED) || st->state == ST(COMP_RETRY_WAIT)) {
			tq_cancel(&E.tq, &st->t);
			st->state = ST(COMPENSATED);
			st->comp_finished_us = now;
			st->next_attempt_us = 0;
			set_error(&st->last_error, "compensated by hand (operator): %s", reason);
			if (parked)
				saga_set_state(s, SS(COMPENSATING));
			event(s, EV(OPERATOR), st, 0, "skip: compensated by hand: %s", reason);
			saga_touch(s);
		} else if (st->state == ST(RETRY_WAIT) && s->state == SS(RUNNING)) {
			tq_cancel(&E.tq, &st->t);
			st->state = ST(SUCCEEDED);
			st->finished_us = now;
			st->next_attempt_us = 0;
			st->completion_seq = s->next_seq++;
			set_error(&st->last_error, "done by hand (operator): %s", reason);
			event(s, EV(OPERATOR), st, 0, "skip: done by hand: %s", reason);
			saga_touch(s);
		} else {
			rpc_reply_error(r, SAGA_ESTATE,
			    "step %s of saga %s is %s: only a step waiting to retry, or a "
			    "compensation waiting to retry or failed, can be skipped",
			    ds->name, s->ids, cm_step_state_name((int)st->state));
			return -1;
		}
	} else {
		rpc_reply_error(r, SAGA_EINVAL, "unknown operation %d", (int)q->op);
		return -1;
	}
	elog(SLOG_WARN, s, ds, 0, "operator: %s%s%s",
	    q->op == SAGAWIRE__OPERATION__OP_RETRY_STEP ? "retry" : "skip", *reason ? ": " : "",
	    reason);
	advance(s);
	action a = { .type = A_OPERATE_REPLY, .req = r, .a = s->state };
	memcpy(a.id, s->id, 16);
	after_commit(&a);
	saga_touch(s);
	return 0;
}

static void
handle_operate(rpc_req *r)
{
	Sagawire__OperateRequest *q = r->req->operate;
	uint8_t id[16];
	if (q->saga_id == NULL || wire_uuid_parse(q->saga_id, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "operate: '%.64s' is not a saga id",
		    q->saga_id ? q->saga_id : "");
		return;
	}
	eng_saga *s = saga_find(id);
	if (s == NULL || (saga_is_final(s) && s->state != SS(FAILED))) {
		/* Parked sagas are not held in memory: a reader fetches it. */
		reader_submit_operate_load(r);
		return;
	}
	operate(r, s);
}

static int load_one(const store_saga *row, void *arg);
static void after_event(void);

void
engine_operate_loaded(rpc_req *r, const store_saga *row)
{
	pthread_mutex_lock(&E.mu);
	if (E.closed) {
		rpc_reply_error(r, SAGA_ECLOSED, "sagad is shutting down");
		pthread_mutex_unlock(&E.mu);
		return;
	}
	eng_saga *s = saga_find(row->id);
	bool loaded = false;
	if (s == NULL) {
		if (load_one(row, NULL) != 0 || (s = saga_find(row->id)) == NULL) {
			rpc_reply_error(r, SAGA_EINTERNAL, "cannot take saga back from its row");
			pthread_mutex_unlock(&E.mu);
			return;
		}
		loaded = true;
	}
	if (operate(r, s) != 0 && loaded && !s->in_batch && s->writing == 0) {
		saga_unlink(s);
		saga_free(s);
	}
	after_event();
	pthread_mutex_unlock(&E.mu);
}

static int
cmp_part_name(const void *a, const void *b)
{
	return strcmp((*(Sagawire__ParticipantInfo *const *)a)->name,
	    (*(Sagawire__ParticipantInfo *const *)b)->name);
}

/* Every participant sagad knows (connected, or with steps queued). */
static void
handle_participants(rpc_req *r)
{
	size_t n = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		n++;
	Sagawire__ParticipantInfo *v = calloc(n ? n : 1, sizeof(*v));
	Sagawire__ParticipantInfo **vp = calloc(n ? n : 1, sizeof(*vp));
	if (v == NULL || vp == NULL) {
		free(v);
		free(vp);
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	int64_t now = now_ms(), wall = wire_now_us();
	size_t i = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p), i++) {
		Sagawire__ParticipantInfo *x = &v[i];
		sagawire__participant_info__init(x);
		x->name = p->name;
		x->connections = (uint32_t)p->n_pipes;
		for (size_t k = 0; k < p->n_pipes; k++) {
			x->capacity += p->pipes[k]->capacity;
			x->in_flight += p->pipes[k]->inflight;
		}
		x->queued = (uint32_t)p->q_len; /* may include stale items */
		x->breaker = (char *)breaker_state_name(p->brk.state);
		if (p->brk.state == BRK_OPEN)
			x->breaker_open_until_us = wall + (p->brk.open_until_ms - now) * 1000;
		x->breaker_opened = p->brk.times_opened;
		x->window_attempts = p->brk.calls;
		x->window_failures = p->brk.fails;
		vp[i] = x;
	}
	qsort(vp, n, sizeof(*vp), cmp_part_name);
	Sagawire__ParticipantsResponse pr = SAGAWIRE__PARTICIPANTS_RESPONSE__INIT;
	pr.n_participants = n;
	pr.participants = vp;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_PARTICIPANTS;
	resp.participants = &pr;
	rpc_reply(r, &resp);
	free(v);
	free(vp);
}

static void
handle_request(rpc_req *r)
{
	switch (r->req->body_case) {
	case SAGAWIRE__REQUEST__BODY_START:
		handle_start(r);
		break;
	case SAGAWIRE__REQUEST__BODY_CANCEL:
		handle_cancel(r);
		break;
	case SAGAWIRE__REQUEST__BODY_WAIT:
		handle_wait(r);
		break;
	case SAGAWIRE__REQUEST__BODY_POLL:
		handle_poll(r);
		break;
	case SAGAWIRE__REQUEST__BODY_REPORT:
		handle_report(r);
		break;
	case SAGAWIRE__REQUEST__BODY_PARTICIPANTS:
		handle_participants(r);
		break;
	case SAGAWIRE__REQUEST__BODY_OPERATE:
		handle_operate(r);
		break;
	default:
		rpc_reply_error(r, SAGA_EINTERNAL, "engine got a request it does not serve");
	}
}

static void
handle_pipe_closed(uint32_t pipe_id)
{
	relay_pipe *pp = relay_pipe_get(pipe_id, 0);
	if (pp == NULL)
		return;
	uint32_t n = 0;
	for (eng_step *st = pp->inflight_head, *next; st; st = next) {
		next = st->pnext;
		st->pprev = st->pnext = NULL;
		st->pipe_id = 0;
		/* Same attempt, new delivery: the step did not fail, its
		 * connection did. The idempotency key is unchanged. */
		uint8_t kind = st->state == ST(COMPENSATING) ? KIND_COMP : KIND_ACTION;
		if (kind == KIND_ACTION && st->saga->state != SS(RUNNING)) {
			/* No point learning the outcome of an action whose saga
			 * is undoing itself: count it uncertain and undo it. */
			apply_outcome(st->saga, st, kind, SAGAWIRE__OUTCOME__OUTCOME_RETRY, NULL, 0,
			    "connection to the participant lost");
			continue;
		}
		tq_cancel(&E.tq, &st->t); /* not in flight: no timeout */
		st->gen++;
		st->queued = true;
		queue_step(st->saga, st, kind);
		n++;
	}
	pp->inflight_head = NULL;
	if (pp->poll) {
		rpc_reply_error(pp->poll, SAGA_ECLOSED, "connection closed");
		pp->poll = NULL;
	}
	tq_cancel(&E.tq, &pp->poll_t); /* before the pipe's memory goes */
	relay_part *p = pp->part;
	if (p)
		slog_info("participant %s disconnected (connection %u); %u step(s) to redeliver",
		    p->name, pipe_id, n);
	relay_pipe_remove(pp);
	atomic_fetch_add(&stat_redelivered, n);
	if (p && n)
		pump(p);
}

/* ---- after a batch committed -------------------------------------------------------- */

static void
reply_start(waiter *w, const char *id, uint32_t version, bool existing)
{
	Sagawire__StartResponse sr = SAGAWIRE__START_RESPONSE__INIT;
	sr.saga_id = (char *)id;
	sr.version = version;
	sr.existing = existing || w->existing;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_START;
	resp.start = &sr;
	rpc_reply(w->req, &resp);
}

static void
handle_committed(store_batch *b)
{
	post *p = b->user;
	E.completing--;
	bool owes = false, comp = false;
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].type == A_DISPATCH) {
			owes = true;
			comp = comp || p->v[i].kind == KIND_COMP;
		}
	}
	if (owes)
		fp_kill(FP_AFTER_COMMIT);
	if (comp)
		fp_kill(FP_MID_COMPENSATION);

	/* 1. Rows: first inserts answer their start waiters; an insert that
	 * lost to an existing idempotency key drops the saga we made. */
	for (size_t i = 0; i < b->n_rows; i++) {
		store_row *row = &b->rows[i];
		eng_saga *s = saga_find(row->id);
		if (s == NULL)
			continue;
		if (row->insert && !row->inserted) {
			char ex[WIRE_UUID_STRLEN];
			wire_uuid_format(row->existing_id, ex);
			for (waiter *w = s->waiters, *n; w; w = n) {
				n = w->next;
				reply_start(w, ex, s->def->version, true);
				free(w);
			}
			s->waiters = NULL;
			/* Starts that wait: the existing saga's state is not in
			 * memory, so they get its id with the state unknown, and
			 * the client waits on that id. */
			for (waiter *w = s->final_waiters, *n; w; w = n) {
				n = w->next;
				tq_cancel(&E.tq, &w->t);
				reply_start(w, ex, s->def->version, true);
				free(w);
			}
			s->final_waiters = NULL;
			elog(SLOG_INFO, s, NULL, 0,
			    "idempotency key already used by saga %s: not started", ex);
			/* Its owed dispatches find no saga and are skipped. */
			saga_unlink(s);
			if (s->in_batch) {
				for (size_t k = 0; k < E.n_open; k++) {
					if (E.open[k] == s) {
						E.open[k] = E.open[--E.n_open];
						break;
					}
				}
			}
			saga_free(s);
			continue;
		}
		if (!s->persisted) {
			s->persisted = true;
			for (waiter *w = s->waiters, *n; w; w = n) {
				n = w->next;
				reply_start(w, s->ids, s->def->version, false);
				free(w);
			}
			s->waiters = NULL;
		}
	}
	/* 2. Post-commit work, in the order it was recorded. */
	for (size_t i = 0; i < p->n; i++) {
		action *a = &p->v[i];
		switch (a->type) {
		case A_DISPATCH: {
			eng_saga *s = saga_find(a->id);
			if (s == NULL)
				break;
			eng_step *st = &s->steps[a->step];
			if (st->gen == a->gen && st->queued)
				queue_step(s, st, a->kind);
			break;
		}
		case A_ACK: {
			Sagawire__ReportAck ack = SAGAWIRE__REPORT_ACK__INIT;
			ack.accepted = a->a;
			ack.ignored = a->b;
			Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
			resp.body_case = SAGAWIRE__RESPONSE__BODY_ACK;
			resp.ack = &ack;
			rpc_reply(a->req, &resp);
			break;
		}
		case A_OPERATE_REPLY: {
			eng_saga *s = saga_find(a->id);
			Sagawire__OperateResponse orr = SAGAWIRE__OPERATE_RESPONSE__INIT;
			orr.state = s ? (Sagawire__SagaState)s->state : (Sagawire__SagaState)a->a;
			Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
			resp.body_case = SAGAWIRE__RESPONSE__BODY_OPERATE;
			resp.operate = &orr;
			rpc_reply(a->req, &resp);
			break;
		}
		case A_CANCEL_REPLY: {
			eng_saga *s = saga_find(a->id);
			Sagawire__CancelResponse cr = SAGAWIRE__CANCEL_RESPONSE__INIT;
			cr.state = s ? (Sagawire__SagaState)s->state : (Sagawire__SagaState)a->a;
			Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
			resp.body_case = SAGAWIRE__RESPONSE__BODY_CANCEL;
			resp.cancel = &cr;
			rpc_reply(a->req, &resp);
			break;
		}
		}
	}
	/* 3. Release: sagas that are final and written are done with. */
	for (size_t i = 0; i < b->n_rows; i++) {
		eng_saga *s = saga_find(b->rows[i].id);
		if (s == NULL)
			continue;
		if (s->writing > 0)
			s->writing--;
		if (saga_is_final(s) && s->writing == 0 && !s->in_batch) {
			release_final_waiters(s);
			saga_unlink(s);
			saga_free(s);
		}
	}
	free(p->v);
	free(p);
	store_batch_free(b);
	pump_all();
}

/* ---- timers firing ------------------------------------------------------------------ */

static void
fire(tq_node *t)
{
	if (t->type == T_POLL) {
		relay_pipe *pp = container_of(t, relay_pipe, poll_t);
		if (pp->poll) /* idle */
			answer_poll_empty(pp);
		return;
	}
	if (t->type == T_BREAKER) {
		pump(container_of(t, relay_part, brk_t)); /* the cool-off is over: probe */
		return;
	}
	if (t->type == T_DEADLINE) {
		eng_saga *s = container_of(t, eng_saga, dl);
		if (s->state != SS(RUNNING))
			return;
		int64_t over_ms = (s->deadline_us - s->created_us) / 1000;
		set_error(&s->error, "deadline exceeded: not completed within %lld ms of its start",
		    (long long)over_ms);
		elog(SLOG_INFO, s, NULL, 0, "deadline of %lld ms passed: compensating",
		    (long long)over_ms);
		begin_compensation(s);
		saga_touch(s);
		advance(s);
		return;
	}
	if (t->type == T_WAIT) {
		waiter *w = container_of(t, waiter, t);
		eng_saga *ws = w->saga;
		for (waiter **wl = &ws->final_waiters; *wl; wl = &(*wl)->next) {
			if (*wl == w) {
				*wl = w->next;
				break;
			}
		}
		reply_final(w, ws); /* not final yet: its current state */
		free(w);
		return;
	}
	eng_step *st = container_of(t, eng_step, t);
	eng_saga *s = st->saga;
	const defn_step *ds = &s->def->steps[st->idx];
	if (t->type == T_STEP_TIMEOUT) {
		uint8_t want = t->kind == KIND_ACTION ? ST(RUNNING) : ST(COMPENSATING);
		if (st->state != want || st->queued)
			return;
		char why[128];
		snprintf(why, sizeof(why), "timed out after %u ms (attempt %u)",
		    t->kind == KIND_ACTION ? ds->timeout_ms : ds->comp_timeout_ms,
		    t->kind == KIND_ACTION ? st->attempts : st->comp_attempts);
		elog(SLOG_INFO, s, ds, 0, "%s %s",
		    t->kind == KIND_ACTION ? "action" : "compensation", why);
		note_latency(ds, st);
		apply_outcome(s, st, t->kind, SAGAWIRE__OUTCOME__OUTCOME_RETRY, NULL, 0, why);
		breaker_note(ds, true);
		return;
	}
	if (t->type == T_RETRY) {
		if (t->kind == KIND_ACTION && st->state == ST(RETRY_WAIT)) {
			st->next_attempt_us = 0;
			if (s->state != SS(RUNNING)) {
				/* Compensation began while it waited. */
				st->state = ST(FAILED);
				st->uncertain = true;
				saga_touch(s);
				advance(s);
				return;
			}
			start_action(s, st);
		} else if (t->kind == KIND_COMP && st->state == ST(COMP_RETRY_WAIT)) {
			st->next_attempt_us = 0;
			start_compensation(s, st);
		}
	}
}

/* ---- recovery ---------------------------------------------------------------------- */

static int
load_one(const store_saga *row, void *arg)
{
	(void)arg;
	const defn_saga *def = registry_get(row->definition, row->version);
	char ids[WIRE_UUID_STRLEN];
	wire_uuid_format(row->id, ids);
	if (def == NULL) {
		slog_saga(SLOG_ERROR, ids, NULL, "definition %s v%u missing: saga not loaded",
		    row->definition, row->version);
		return 0;
	}
	int err = 0;
	Sagawire__StoredSteps *ss = (Sagawire__StoredSteps *)wire_unpack(
	    &sagawire__stored_steps__descriptor, row->steps, row->steps_len, 0, &err);
	if (ss == NULL || ss->n_steps != def->n_steps) {
		slog_saga(SLOG_ERROR, ids, NULL, "stored steps unreadable: saga not loaded");
		wire_free(ss ? &ss->base : NULL);
		return 0;
	}
	eng_saga *s = saga_alloc(def);
	if (s == NULL)
		goto nomem;
	memcpy(s->id, row->id, 16);
	memcpy(s->ids, ids, sizeof(ids));
	s->state = (uint8_t)row->state;
	s->rev = row->rev;
	s->persisted = true;
	s->created_us = row->created_us;
	s->updated_us = row->updated_us;
	s->next_seq = ss->next_seq ? ss->next_seq : 1;
	s->deadline_us = ss->deadline_us;
	if (ss->traceparent == NULL || wire_trace_parse(ss->traceparent, &s->trace) != 0)
		wire_trace_new(s->id, &s->trace); /* a row from before trace context */
	if (ss->n_events > 0) {
		size_t ne = ss->n_events < HISTORY_MAX ? ss->n_events : HISTORY_MAX;
		if ((s->ev = calloc(ne, sizeof(*s->ev))) == NULL)
			goto nomem;
		s->cap_ev = (uint32_t)ne;
		for (size_t i = ss->n_events - ne; i < ss->n_events; i++) {
			const Sagawire__Event *e = ss->events[i];
			char *d = strdup(e->detail ? e->detail : "");
			if (d == NULL)
				goto nomem;
			s->ev[s->n_ev++] = (eng_event) { .at_us = e->at_us,
				.type = (uint8_t)e->type,
				.step = (uint16_t)e->step,
				.attempt = e->attempt,
				.detail = d };
		}
	}
	if (row->idem_key && (s->idem_key = strdup(row->idem_key)) == NULL)
		goto nomem;
	if (row->business_key && (s->business_key = strdup(row->business_key)) == NULL)
		goto nomem;
	if (row->error && *row->error && (s->error = strdup(row->error)) == NULL)
		goto nomem;
	if (row->input_len) {
		if ((s->input = malloc(row->input_len)) == NULL)
			goto nomem;
		memcpy(s->input, row->input, row->input_len);
	}
	s->input_len = row->input_len;
	int64_t t = now_ms(), wall = wire_now_us();
	for (uint32_t i = 0; i < def->n_steps; i++) {
		Sagawire__StoredStep *x = ss->steps[i];
		eng_step *st = &s->steps[i];
		st->state = (uint8_t)x->state;
		st->attempts = x->attempts;
		st->comp_attempts = x->comp_attempts;
		st->started_us = x->started_us;
		st->finished_us = x->finished_us;
		st->comp_started_us = x->comp_started_us;
		st->comp_finished_us = x->comp_finished_us;
		st->next_attempt_us = x->next_attempt_us;
		st->completion_seq = x->completion_seq;
		st->uncertain = x->uncertain;
		if (x->last_error && *x->last_error &&
		    (st->last_error = strdup(x->last_error)) == NULL)
			goto nomem;
		if (x->result.len) {
			if ((st->result = malloc(x->result.len)) == NULL)
				goto nomem;
			memcpy(st->result, x->result.data, x->result.len);
			st->result_len = x->result.len;
		}
		/* Owed dispatches are owed again: a crash may have lost them
		 * anywhere between commit and the participant. */
		if (s->state == SS(COMPENSATING) &&
		    (st->state == ST(RUNNING) || st->state == ST(RETRY_WAIT))) {
			/* Compensation had begun: give the action up as uncertain
			 * (it is undone below) instead of sending it again. */
			st->state = ST(FAILED);
			st->uncertain = true;
			st->next_attempt_us = 0;
			s->rev++;
		} else if (st->state == ST(RUNNING) || st->state == ST(COMPENSATING)) {
			st->gen++;
			st->queued = true;
			queue_step(s, st, st->state == ST(RUNNING) ? KIND_ACTION : KIND_COMP);
			atomic_fetch_add(&stat_redelivered, 1);
		} else if (st->state == ST(RETRY_WAIT) || st->state == ST(COMP_RETRY_WAIT)) {
			int64_t delay = (x->next_attempt_us - wall) / 1000;
			step_timer(st, T_RETRY,
			    st->state == ST(RETRY_WAIT) ? KIND_ACTION : KIND_COMP,
			    t + (delay > 0 ? delay : 0));
		}
	}
	wire_free(&ss->base);
	if (saga_insert(s) != 0) {
		saga_free(s);
		return SAGA_ENOMEM;
	}
	if (s->deadline_us && s->state == SS(RUNNING))
		arm_deadline(s);
	return 0;
nomem:
	wire_free(&ss->base);
	saga_free(s);
	return SAGA_ENOMEM;
}

/* ---- event queue and loop ------------------------------------------------------------- */

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
	maybe_submit();
	if (E.stop)
		pthread_cond_signal(&E.cv); /* shutdown waits for drained() */
}

void
engine_submit(rpc_req *r)
{
	pthread_mutex_lock(&E.mu);
	/* Once closed, a late report is refused too: nothing would commit
	 * it. The participant sends it again to the next sagad, or the step
	 * is dispatched again there (it is still owed in the database). */
	if (E.closed || (E.stop && r->req->body_case == SAGAWIRE__REQUEST__BODY_START))
		rpc_reply_error(r, SAGA_ECLOSED, "sagad is shutting down");
	else
		handle_request(r);
	after_event();
	pthread_mutex_unlock(&E.mu);
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
	handle_pipe_closed(pipe_id);
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
	hist_add(&commit_hist, (double)b->commit_us / 1000.0);
	E.writing_batches--;
	E.completing++;
	maybe_submit();
	pthread_mutex_unlock(&E.mu);
}

static void
committed_cb(store_batch *b, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&E.mu);
	handle_committed(b);
	after_event();
	pthread_mutex_unlock(&E.mu);
}

/* The settings a SIGHUP may change (config.c live_opts), as the engine
 * keeps them. Under E.mu once the engine runs. */
static void
set_live_settings(const cfg *c)
{
	E.brk_cfg = (breaker_cfg) { .window_ms = c->breaker_window_ms,
		.min_calls = c->breaker_min_calls,
		.fail_pct = c->breaker_failure_pct,
		.cooloff_ms = c->breaker_cooloff_ms };
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
	set_live_settings(c);
	E.sleep_until = INT64_MAX;
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
	relay_init();
	PGconn *conn = store_connect(conninfo, "sagad-recovery", err, errlen);
	if (conn == NULL)
		return SAGA_EDB;
	int64_t t0 = now_ms();
	int rv = store_load_active(conn, load_one, NULL, err, errlen);
	PQfinish(conn);
	if (rv != 0)
		return rv;
	if (E.n_sagas > 0)
		slog_info("recovered %zu unfinished saga(s) in %lld ms", E.n_sagas,
		    (long long)(now_ms() - t0));
	/* Recovered sagas may be able to move (e.g. written just before a
	 * crash with a successor not yet dispatched): let advance decide. */
	for (size_t b = 0; b < E.nbuckets; b++)
		for (eng_saga *s = E.ids[b]; s; s = s->hnext)
			advance(s);
	return store_writer_start(conninfo, writer_free_cb, committed_cb, NULL);
}

/* Steps dispatched and not yet answered, over every connection. */
static size_t
inflight_total(void)
{
	size_t n = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		for (size_t k = 0; k < p->n_pipes; k++)
			n += p->pipes[k]->inflight;
	return n;
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
		E.stop_until_ms = now_ms() + E.grace_ms;
		for (relay_part *p = relay_part_first(); p; p = relay_part_next(p)) {
			for (size_t k = 0; k < p->n_pipes; k++)
				if (p->pipes[k]->poll != NULL)
					answer_poll_empty(p->pipes[k]);
		}
		slog_info(
		    "shutting down: new sagas refused, nothing more dispatched; waiting up to "
		    "%u ms for the outcomes of %zu step(s) in flight",
		    E.grace_ms, inflight_total());
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
	return inflight_total() == 0 || now_ms() >= E.stop_until_ms;
}

void
engine_run(void)
{
	pthread_mutex_lock(&E.mu);
	for (;;) {
		int64_t t = now_ms();
		tq_node *due;
		while ((due = tq_pop_due(&E.tq, t)) != NULL)
			fire(due);
		maybe_submit();
		if (E.stop && drained()) {
			size_t left = inflight_total();
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
		/* The end of the grace period wakes the loop once; after it,
		 * the commits still open do (after_event). */
		if (E.stop && E.stop_until_ms < until && E.stop_until_ms > t)
			until = E.stop_until_ms;
		if (until == INT64_MAX) {
			E.sleep_until = INT64_MAX;
			pthread_cond_wait(&E.cv, &E.mu);
			continue;
		}
		int64_t wait = until - now_ms();
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
			saga_free(s);
		}
	}
	free(E.ids);
	free(E.keys);
	for (size_t i = 0; i < n_def_stats; i++)
		free(def_stats[i].name);
	for (size_t i = 0; i < n_part_stats; i++)
		free(part_stats[i].name);
	n_def_stats = n_part_stats = 0;
	free(E.open);
	free(E.open_post.v);
	free(E.conninfo);
	relay_fini();
}

/* ---- metrics ---------------------------------------------------------------------- */

typedef struct sbuf {
	char *p;
	size_t n, cap;
	int failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(sbuf *b, const char *fmt, ...)
{
	for (int tries = 0; tries < 2 && !b->failed; tries++) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->failed = 1;
			return;
		}
		if (b->p && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		size_t ncap = (b->cap ? b->cap * 2 : 8192) + (size_t)k;
		char *np = realloc(b->p, ncap);
		if (np == NULL) {
			b->failed = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Label values: names are checked UTF-8 text; escape \, " and newlines. */
static void
sb_label(sbuf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			sb_printf(b, "\\%c", *v);
		else if (*v == '\n')
			sb_printf(b, "\\n");
		else
			sb_printf(b, "%c", *v);
	}
}

static void
sb_hist(sbuf *b, const char *name, const char *label, const char *value, const hist *h)
{
	/* The label pair once: `participant="x"`, or nothing. */
	sbuf l = { 0 };
	if (label) {
		sb_printf(&l, "%s=\"", label);
		sb_label(&l, value);
		sb_printf(&l, "\"");
	}
	if (l.failed) {
		b->failed = 1;
		free(l.p);
		return;
	}
	const char *pair = l.p ? l.p : "", *comma = l.p ? "," : "";
	uint64_t cum = 0;
	for (size_t i = 0; i < N_HIST; i++) {
		cum += h->bucket[i];
		sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, pair, comma,
		    HIST_LE_MS[i] / 1000.0, (unsigned long long)cum);
	}
	sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, pair, comma,
	    (unsigned long long)h->count);
	if (l.p) {
		sb_printf(b, "%s_sum{%s} %.6f\n", name, pair, h->sum_ms / 1000.0);
		sb_printf(b, "%s_count{%s} %llu\n", name, pair, (unsigned long long)h->count);
	} else {
		sb_printf(b, "%s_sum %.6f\n", name, h->sum_ms / 1000.0);
		sb_printf(b, "%s_count %llu\n", name, (unsigned long long)h->count);
	}
	free(l.p);
}

int
engine_metrics(char **out, size_t *len)
{
	sbuf b = { 0 };
	pthread_mutex_lock(&E.mu);
	static const struct {
		const char *name, *help;
		size_t off;
	} counters[] = {
		{ "sagad_sagas_started_total", "Sagas started.", offsetof(named_stat, started) },
		{ "sagad_sagas_completed_total", "Sagas that completed.",
		    offsetof(named_stat, completed) },
		{ "sagad_sagas_compensated_total", "Sagas that were compensated.",
		    offsetof(named_stat, compensated) },
		{ "sagad_sagas_parked_total", "Sagas parked as failed (need an operator).",
		    offsetof(named_stat, parked) },
	};
	for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
		sb_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", counters[c].name,
		    counters[c].help, counters[c].name);
		for (size_t i = 0; i < n_def_stats; i++) {
			sb_printf(&b, "%s{definition=\"", counters[c].name);
			sb_label(&b, def_stats[i].name);
			sb_printf(&b, "\"} %llu\n",
			    (unsigned long long)*(
				const uint64_t *)(const void *)((const char *)&def_stats[i] +
				counters[c].off));
		}
	}
	size_t backlog = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		backlog += p->q_len;
	sb_printf(&b,
	    "# HELP sagad_sagas_in_flight Unfinished sagas held by sagad.\n"
	    "# TYPE sagad_sagas_in_flight gauge\nsagad_sagas_in_flight %zu\n"
	    "# HELP sagad_outbox_backlog Steps owed a dispatch, waiting for a participant.\n"
	    "# TYPE sagad_outbox_backlog gauge\nsagad_outbox_backlog %zu\n"
	    "# HELP sagad_steps_dispatched_total Step attempts dispatched.\n"
	    "# TYPE sagad_steps_dispatched_total counter\nsagad_steps_dispatched_total %llu\n"
	    "# HELP sagad_steps_redelivered_total Steps sent again after a connection closed or "
	    "a restart.\n"
	    "# TYPE sagad_steps_redelivered_total counter\nsagad_steps_redelivered_total %llu\n",
	    E.n_sagas, backlog, (unsigned long long)atomic_load(&stat_dispatched),
	    (unsigned long long)atomic_load(&stat_redelivered));
	static const char *const part_gauges[][2] = {
		{ "sagad_participant_connections", "Connected worker connections." },
		{ "sagad_participant_capacity", "Declared capacity of the connected workers." },
		{ "sagad_participant_in_flight",
		    "Steps dispatched to the participant, unanswered." },
		{ "sagad_breaker_state", "Circuit breaker: 0 closed, 1 open, 2 half-open." },
		{ "sagad_breaker_opened_total", "Times the circuit breaker opened." },
	};
	for (size_t g = 0; g < sizeof(part_gauges) / sizeof(part_gauges[0]); g++) {
		sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", part_gauges[g][0], part_gauges[g][1],
		    part_gauges[g][0], g == 4 ? "counter" : "gauge");
		for (relay_part *p = relay_part_first(); p; p = relay_part_next(p)) {
			uint64_t v = 0;
			for (size_t k = 0; k < p->n_pipes; k++)
				v += g == 0  ? 1
				    : g == 1 ? p->pipes[k]->capacity
				    : g == 2 ? p->pipes[k]->inflight
					     : 0;
			if (g == 3)
				v = p->brk.state;
			if (g == 4)
				v = p->brk.times_opened;
			sb_printf(&b, "%s{participant=\"", part_gauges[g][0]);
			sb_label(&b, p->name);
			sb_printf(&b, "\"} %llu\n", (unsigned long long)v);
		}
	}
	sb_printf(&b,
	    "# HELP sagad_step_latency_seconds Time from a step's dispatch to its "
	    "outcome or timeout.\n# TYPE sagad_step_latency_seconds histogram\n");
	for (size_t i = 0; i < n_part_stats; i++)
		sb_hist(&b, "sagad_step_latency_seconds", "participant", part_stats[i].name,
		    &part_stats[i].latency);
	sb_printf(&b,
	    "# HELP sagad_db_commit_seconds Time to commit one batch of saga "
	    "transitions in PostgreSQL.\n# TYPE sagad_db_commit_seconds histogram\n");
	sb_hist(&b, "sagad_db_commit_seconds", NULL, NULL, &commit_hist);
	pthread_mutex_unlock(&E.mu);
	if (b.failed) {
		free(b.p);
		return SAGA_ENOMEM;
	}
	*out = b.p;
	*len = b.n;
	return 0;
}
