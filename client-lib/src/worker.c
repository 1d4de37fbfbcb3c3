/*
 * worker: saga_worker_*, the participant side.
 *
 * While saga_worker_run() runs, these threads share one REQ socket:
 *
 *   run()     sleeps on a self-pipe until saga_worker_stop() (an atomic flag
 *             and a write(): both async-signal-safe) or a fatal error, then
 *             shuts everything down in order.
 *   poller    keeps exactly one WorkPoll outstanding on its own context.
 *             sagad holds it until it has steps for this connection (never
 *             more than capacity minus the steps in flight here) or answers
 *             an empty batch after its poll timeout. Each valid Dispatch
 *             becomes a job; the next poll goes out at once.
 *   handlers  up to `capacity` threads, started as work arrives, each running
 *             one job at a time. The outcome becomes a queued result.
 *   reporter  sends every queued result in one Report on a second context
 *             (no delay when idle, large batches under load), waits for the
 *             ack, and sends the same batch again after an error: sagad
 *             treats duplicates as no-ops.
 *
 * Nothing is ever cancelled (nng 1.5.2 crashes when a REQ receive is
 * cancelled during a send and leaks cancelled sends): the poll and report
 * operations have no timeouts. REQ resends a request by itself when its
 * connection drops and after NNG_OPT_REQ_RESENDTIME; that is how a restart
 * of sagad is survived. Shutdown ends both operations by closing the socket
 * once, after the last report was acknowledged or the flush deadline passed.
 *
 * Steps that were received but never reported (dropped at shutdown, or
 * invalid) are redelivered by sagad when this connection closes or the
 * step's timeout passes: delivery is at least once.
 */
#define _GNU_SOURCE /* pipe2 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "utf8.h"

#define DEFAULT_CAPACITY   16
#define MAX_CAPACITY       4096
/* sagad answers an idle poll after ~20 s; a resend after 60 s only happens
 * if the connection silently died. */
#define POLL_RESEND_MS     60000
#define REPORT_RESEND_MS   15000
#define REPORT_MAX_RESULTS 1024
/* Reports stay well below sagad's default 1 MiB message limit. */
#define REPORT_SOFT_BYTES  (512 * 1024)
#define STOP_GRACE_MS      5000
#define FLUSH_MIN_MS       1000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     10000
/* Longest error text a handler can report. */
#define REPLY_ERROR_MAX    (16 * 1024)

typedef struct sl_handler {
	char *rpc;
	saga_step_kind kind;
	saga_handler_fn fn;
	void *user;
} sl_handler;

/* A decoded WorkBatch, shared by the jobs made from it. */
typedef struct sl_batch {
	Sagawire__Response *resp;
	unsigned refs; /* jobs not yet finished; under w->mu */
} sl_batch;

typedef struct sl_job {
	struct sl_job *next;
	sl_batch *batch;
	const Sagawire__Dispatch *d;
} sl_job;

/* One outcome waiting to be reported; owns its strings and bytes. */
typedef struct sl_result {
	struct sl_result *next;
	uint8_t saga_id[16];
	uint32_t step_index;
	char *step;
	Sagawire__StepKind kind;
	uint32_t attempt;
	Sagawire__Outcome outcome;
	uint8_t *output;
	size_t output_len;
	char *error;
} sl_result;

struct saga_reply {
	int replied;
	/* Set by run_job for heartbeats; NULL on replies from saga_reply_new. */
	saga_worker *w;
	const Sagawire__Dispatch *d;
	int64_t last_beat_ms;
	Sagawire__Outcome outcome;
	uint8_t *output;
	size_t output_len;
	char *error;
	size_t max_output;
};

struct saga_worker {
	/* configuration: set before run() */
	char *url;
	char *participant;
	char *instance;     /* set by the user, or NULL */
	char *run_instance; /* what run() announces */
	uint32_t capacity;
	size_t max_message;
	saga_log_fn log;
	void *log_user;
	sl_handler *handlers;
	size_t n_handlers;
	char errmsg[SL_ERRMSG_MAX];

	/* stop: written from signal handlers */
	int wake[2]; /* self-pipe: [0] read by run(), [1] written */
	atomic_int stop_requested;
	atomic_int running;

	/* run state, guarded by mu */
	pthread_mutex_t mu;
	pthread_cond_t job_cv;    /* jobs queued, or closing */
	pthread_cond_t result_cv; /* results queued, or reporter_exit */
	pthread_cond_t idle_cv;   /* a handler or a report finished */
	pthread_cond_t wake_cv;   /* ends backoff pauses at shutdown */
	sl_job *jobs, **jobs_tail;
	size_t n_jobs;
	sl_result *results, **results_tail;
	size_t n_results;
	pthread_t *threads; /* handler threads, joined by join_handlers() */
	uint32_t n_threads;
	uint32_t n_busy;    /* handlers running a job */
	int closing;        /* handler threads exit; no new jobs start */
	int reporter_exit;  /* reporter exits once the queue is empty */
	int sock_closing;   /* the socket is about to close */
	size_t report_busy; /* results in a Report not yet acked */
	int fatal;          /* saga_err that ends run(), 0 = none */

	sl_conn conn;
	nng_ctx poll_ctx, report_ctx;
	nng_aio *poll_aio, *report_aio;
	pthread_t poller, reporter;
};

#define LOG(w, lvl, ...) sl_log((w)->log, (w)->log_user, (lvl), __VA_ARGS__)

static const char *
kind_name(int kind)
{
	return kind == SAGAWIRE__STEP_KIND__STEP_COMPENSATION ? "compensation" : "action";
}

/* ---- configuration ----------------------------------------------------- */

int
saga_worker_new(const char *url, const char *participant, saga_worker **out)
{
	saga_worker *w;
	nng_url *u = NULL;
	int rv;

	if (out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if (url == NULL)
		url = SAGA_DEFAULT_URL;
	if (participant == NULL || *participant == '\0' || !sl_utf8_ok(participant))
		return SAGA_EINVAL;
	if (nng_url_parse(&u, url) != 0)
		return SAGA_EINVAL;
	nng_url_free(u);
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return SAGA_ENOMEM;
	w->wake[0] = w->wake[1] = -1;
	w->capacity = DEFAULT_CAPACITY;
	w->max_message = SL_DEFAULT_MAX_MESSAGE;
	atomic_init(&w->stop_requested, 0);
	atomic_init(&w->running, 0);
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		free(w);
		return SAGA_ENOMEM;
	}
	if (sl_cond_init(&w->job_cv) != 0 || sl_cond_init(&w->result_cv) != 0 ||
	    sl_cond_init(&w->idle_cv) != 0 || sl_cond_init(&w->wake_cv) != 0 ||
	    sl_conn_init(&w->conn) != 0) {
		/* Partly initialized condition variables cannot be told
		 * apart; this only happens without memory, so leak them. */
		pthread_mutex_destroy(&w->mu);
		free(w);
		return SAGA_ENOMEM;
	}
	w->jobs_tail = &w->jobs;
	w->results_tail = &w->results;
	if ((w->url = strdup(url)) == NULL || (w->participant = strdup(participant)) == NULL) {
		rv = SAGA_ENOMEM;
		goto fail;
	}
	if (pipe2(w->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		w->wake[0] = w->wake[1] = -1;
		rv = SAGA_ENOMEM;
		goto fail;
	}
	*out = w;
	return SAGA_OK;

fail:
	saga_worker_free(w);
	return rv;
}

static void join_handlers(saga_worker *w);
static void drop_results(saga_worker *w);

void
saga_worker_free(saga_worker *w)
{
	if (w == NULL)
		return;
	/* Handlers that outlived run()'s grace period are waited for here:
	 * they may still use the worker. */
	join_handlers(w);
	drop_results(w);
	for (size_t i = 0; i < w->n_handlers; i++)
		free(w->handlers[i].rpc);
	free(w->handlers);
	if (w->wake[0] >= 0)
		close(w->wake[0]);
	if (w->wake[1] >= 0)
		close(w->wake[1]);
	sl_conn_fini(&w->conn);
	pthread_cond_destroy(&w->job_cv);
	pthread_cond_destroy(&w->result_cv);
	pthread_cond_destroy(&w->idle_cv);
	pthread_cond_destroy(&w->wake_cv);
	pthread_mutex_destroy(&w->mu);
	free(w->url);
	free(w->participant);
	free(w->instance);
	free(w->run_instance);
	free(w);
}

int
saga_worker_set_capacity(saga_worker *w, uint32_t capacity)
{
	if (w == NULL || capacity == 0 || capacity > MAX_CAPACITY)
		return SAGA_EINVAL;
	if (atomic_load(&w->running))
		return SAGA_ESTATE;
	w->capacity = capacity;
	return SAGA_OK;
}

int
saga_worker_set_instance(saga_worker *w, const char *instance)
{
	if (w == NULL || instance == NULL || !sl_utf8_ok(instance) || strlen(instance) > 256)
		return SAGA_EINVAL;
	if (atomic_load(&w->running))
		return SAGA_ESTATE;
	char *s = strdup(instance);
	if (s == NULL)
		return SAGA_ENOMEM;
	free(w->instance);
	w->instance = s;
	return SAGA_OK;
}

int
saga_worker_set_max_message(saga_worker *w, size_t bytes)
{
	if (w == NULL || bytes < SL_MIN_MAX_MESSAGE || bytes > INT32_MAX)
		return SAGA_EINVAL;
	if (atomic_load(&w->running))
		return SAGA_ESTATE;
	w->max_message = bytes;
	return SAGA_OK;
}

void
saga_worker_set_log(saga_worker *w, saga_log_fn fn, void *user)
{
	/* Threads read these without a lock: only before run(). */
	if (w == NULL || atomic_load(&w->running))
		return;
	w->log = fn;
	w->log_user = user;
	w->conn.log = fn;
	w->conn.log_user = user;
}

const char *
saga_worker_errmsg(const saga_worker *w)
{
	return w != NULL ? w->errmsg : "";
}

static int
add_handler(saga_worker *w, saga_step_kind kind, const char *rpc, saga_handler_fn fn, void *user)
{
	if (w == NULL)
		return SAGA_EINVAL;
	if (rpc == NULL || *rpc == '\0' || !sl_utf8_ok(rpc) || fn == NULL) {
		sl_seterr(w->errmsg, "a handler needs a non-empty UTF-8 rpc name and a function");
		return SAGA_EINVAL;
	}
	if (atomic_load(&w->running)) {
		sl_seterr(w->errmsg, "handlers must be registered before saga_worker_run");
		return SAGA_ESTATE;
	}
	for (size_t i = 0; i < w->n_handlers; i++) {
		if (w->handlers[i].kind == kind && strcmp(w->handlers[i].rpc, rpc) == 0) {
			sl_seterr(
			    w->errmsg, "%s %s already has a handler", kind_name((int)kind), rpc);
			return SAGA_EEXIST;
		}
	}
	sl_handler *h = realloc(w->handlers, (w->n_handlers + 1) * sizeof(*h));
	if (h == NULL)
		return SAGA_ENOMEM;
	w->handlers = h;
	if ((h[w->n_handlers].rpc = strdup(rpc)) == NULL)
		return SAGA_ENOMEM;
	h[w->n_handlers].kind = kind;
	h[w->n_handlers].fn = fn;
	h[w->n_handlers].user = user;
	w->n_handlers++;
	return SAGA_OK;
}

int
saga_worker_on_action(saga_worker *w, const char *rpc, saga_handler_fn fn, void *user)
{
	return add_handler(w, SAGA_ACTION, rpc, fn, user);
}

int
saga_worker_on_compensation(saga_worker *w, const char *rpc, saga_handler_fn fn, void *user)
{
	return add_handler(w, SAGA_COMPENSATION, rpc, fn, user);
}

static const sl_handler *
find_handler(const saga_worker *w, int kind, const char *rpc)
{
	for (size_t i = 0; i < w->n_handlers; i++)
		if ((int)w->handlers[i].kind == kind && strcmp(w->handlers[i].rpc, rpc) == 0)
			return &w->handlers[i];
	return NULL;
}

/* ---- replies ----------------------------------------------------------- */

const saga_step_result *
saga_step_find_result(const saga_step *s, const char *step)
{
	if (s == NULL || step == NULL)
		return NULL;
	for (size_t i = 0; i < s->n_results; i++)
		if (s->results[i].step != NULL && strcmp(s->results[i].step, step) == 0)
			return &s->results[i];
	return NULL;
}

int
saga_reply_success(saga_reply *r, const void *result, size_t len)
{
	if (r == NULL || (result == NULL && len > 0))
		return SAGA_EINVAL;
	if (r->replied)
		return SAGA_ESTATE;
	if (len > r->max_output)
		return SAGA_ETOOBIG;
	if (len > 0) {
		if ((r->output = malloc(len)) == NULL)
			return SAGA_ENOMEM;
		memcpy(r->output, result, len);
	}
	r->output_len = len;
	r->outcome = SAGAWIRE__OUTCOME__OUTCOME_SUCCESS;
	r->replied = 1;
	return SAGA_OK;
}

static int
reply_error(saga_reply *r, Sagawire__Outcome outcome, const char *error)
{
	if (r == NULL)
		return SAGA_EINVAL;
	if (r->replied)
		return SAGA_ESTATE;
	/* Invalid UTF-8 is replaced rather than refused: the handler would
	 * otherwise end up not replying at all. */
	if ((r->error = cm_utf8_dup(error, REPLY_ERROR_MAX)) == NULL)
		return SAGA_ENOMEM;
	r->outcome = outcome;
	r->replied = 1;
	return SAGA_OK;
}

int
saga_reply_retry(saga_reply *r, const char *error)
{
	return reply_error(r, SAGAWIRE__OUTCOME__OUTCOME_RETRY, error);
}

int
saga_reply_fail(saga_reply *r, const char *error)
{
	return reply_error(r, SAGAWIRE__OUTCOME__OUTCOME_FAIL, error);
}

_Static_assert((int)SAGA_OUTCOME_SUCCESS == (int)SAGAWIRE__OUTCOME__OUTCOME_SUCCESS &&
	(int)SAGA_OUTCOME_RETRY == (int)SAGAWIRE__OUTCOME__OUTCOME_RETRY &&
	(int)SAGA_OUTCOME_FAIL == (int)SAGAWIRE__OUTCOME__OUTCOME_FAIL,
    "saga_outcome and Sagawire__Outcome share their values");

saga_reply *
saga_reply_new(size_t max_result)
{
	saga_reply *r = calloc(1, sizeof(*r));
	if (r != NULL)
		r->max_output = max_result ? max_result : SL_DEFAULT_MAX_MESSAGE;
	return r;
}

void
saga_reply_free(saga_reply *r)
{
	if (r == NULL)
		return;
	sl_reply_reset(r);
	free(r);
}

saga_outcome
saga_reply_outcome(const saga_reply *r, const uint8_t **result, size_t *len, const char **error)
{
	if (result)
		*result = r ? r->output : NULL;
	if (len)
		*len = r ? r->output_len : 0;
	if (error)
		*error = r && r->error ? r->error : "";
	if (r == NULL || !r->replied)
		return SAGA_OUTCOME_NONE;
	return (saga_outcome)r->outcome;
}

void
sl_reply_reset(saga_reply *r)
{
	free(r->output);
	free(r->error);
	r->output = NULL;
	r->output_len = 0;
	r->error = NULL;
	r->replied = 0;
}

#define HEARTBEAT_MIN_MS 100

static void result_free(sl_result *r);

int
saga_reply_heartbeat(saga_reply *r)
{
	if (r == NULL)
		return SAGA_EINVAL;
	if (r->replied)
		return SAGA_ESTATE;
	if (r->w == NULL)
		return SAGA_OK;
	int64_t now = wire_mono_ms();
	if (r->last_beat_ms && now - r->last_beat_ms < HEARTBEAT_MIN_MS)
		return SAGA_OK;
	r->last_beat_ms = now;
	saga_worker *w = r->w;
	const Sagawire__Dispatch *d = r->d;
	sl_result *res = calloc(1, sizeof(*res));
	if (res == NULL || (res->step = strdup(d->step)) == NULL) {
		free(res);
		return SAGA_ENOMEM;
	}
	memcpy(res->saga_id, d->saga_id.data, 16);
	res->step_index = d->step_index;
	res->kind = d->kind;
	res->attempt = d->attempt;
	res->outcome = SAGAWIRE__OUTCOME__OUTCOME_HEARTBEAT;
	pthread_mutex_lock(&w->mu);
	if (w->closing || w->reporter_exit) {
		pthread_mutex_unlock(&w->mu);
		result_free(res);
		return SAGA_OK;
	}
	/* Queued like an outcome: the reporter sends it with the next Report. */
	*w->results_tail = res;
	w->results_tail = &res->next;
	w->n_results++;
	pthread_cond_signal(&w->result_cv);
	pthread_mutex_unlock(&w->mu);
	return SAGA_OK;
}

/* ---- results ----------------------------------------------------------- */

static void
result_free(sl_result *r)
{
	if (r == NULL)
		return;
	free(r->step);
	free(r->output);
	free(r->error);
	free(r);
}

/* Rough packed size of a result, for sizing Reports. */
static size_t
result_size(const sl_result *r)
{
	return 48 + strlen(r->step) + r->output_len + (r->error ? strlen(r->error) : 0);
}

static void
drop_results(saga_worker *w)
{
	pthread_mutex_lock(&w->mu);
	sl_result *r = w->results;
	w->results = NULL;
	w->results_tail = &w->results;
	w->n_results = 0;
	pthread_mutex_unlock(&w->mu);
	while (r != NULL) {
		sl_result *n = r->next;
		result_free(r);
		r = n;
	}
}

/* ---- handler threads --------------------------------------------------- */

/* Releases one job's hold on its batch; call with w->mu held. Returns the
 * decoded message to free (outside the lock), or NULL. */
static Sagawire__Response *
batch_release_locked(sl_batch *b)
{
	if (--b->refs > 0)
		return NULL;
	Sagawire__Response *resp = b->resp;
	free(b);
	return resp;
}

/*
 * Runs the handler for one dispatch and returns its outcome as a result
 * (NULL only when out of memory: the step then times out in sagad and is
 * retried).
 */
/* A traceparent worth handing to the handler's tracer. */
static int
trace_ok(const char *tp)
{
	wire_trace t;
	return tp != NULL && wire_trace_parse(tp, &t) == 0;
}

static sl_result *
run_job(saga_worker *w, const Sagawire__Dispatch *d)
{
	saga_reply reply = { .max_output = w->max_message, .w = w, .d = d };
	saga_step_result *results = NULL;
	char id[WIRE_UUID_STRLEN];
	sl_result *r;

	wire_uuid_format(d->saga_id.data, id);
	if (d->n_results > 0 && (results = calloc(d->n_results, sizeof(*results))) == NULL) {
		reply_error(&reply, SAGAWIRE__OUTCOME__OUTCOME_RETRY, "participant out of memory");
	} else {
		for (size_t i = 0; i < d->n_results; i++) {
			results[i].step = d->results[i]->step;
			results[i].data = d->results[i]->result.data;
			results[i].len = d->results[i]->result.len;
		}
		saga_step st = {
			.saga_id = id,
			.definition = d->definition,
			.version = d->version,
			.step = d->step,
			.rpc = d->rpc,
			.kind = d->kind == SAGAWIRE__STEP_KIND__STEP_COMPENSATION
			    ? SAGA_COMPENSATION
			    : SAGA_ACTION,
			.attempt = d->attempt,
			.idempotency_key = d->idempotency_key,
			.timeout_ms = d->timeout_ms,
			.input = d->input.data,
			.input_len = d->input.len,
			.n_results = d->n_results,
			.results = results,
			.traceparent = trace_ok(d->traceparent) ? d->traceparent : "",
		};
		const sl_handler *h = find_handler(w, d->kind, d->rpc);
		if (h == NULL) {
			char msg[512];
			snprintf(msg, sizeof(msg), "participant %s has no handler for %s %s",
			    w->participant, kind_name(d->kind), d->rpc);
			LOG(w, SAGA_LOG_WARN, "saga %s step %s: %s", id, d->step, msg);
			reply_error(&reply, SAGAWIRE__OUTCOME__OUTCOME_RETRY, msg);
		} else {
			LOG(w, SAGA_LOG_DEBUG, "saga %s step %s: running %s %s, attempt %u", id,
			    d->step, kind_name(d->kind), d->rpc, d->attempt);
			h->fn(&st, &reply, h->user);
			if (!reply.replied) {
				LOG(w, SAGA_LOG_WARN,
				    "saga %s step %s: %s handler %s returned "
				    "without replying; reporting a retryable error",
				    id, d->step, kind_name(d->kind), d->rpc);
				reply_error(&reply, SAGAWIRE__OUTCOME__OUTCOME_RETRY,
				    "handler returned without replying");
			}
		}
	}
	free(results);
	if (!reply.replied) {
		/* Even the error text could not be allocated. */
		reply.outcome = SAGAWIRE__OUTCOME__OUTCOME_RETRY;
	}

	if ((r = calloc(1, sizeof(*r))) == NULL || (r->step = strdup(d->step)) == NULL) {
		LOG(w, SAGA_LOG_ERROR,
		    "saga %s step %s: out of memory; the outcome is lost and "
		    "sagad will retry the step after its timeout",
		    id, d->step);
		free(r);
		free(reply.output);
		free(reply.error);
		return NULL;
	}
	memcpy(r->saga_id, d->saga_id.data, 16);
	r->step_index = d->step_index;
	r->kind = d->kind;
	r->attempt = d->attempt;
	r->outcome = reply.outcome;
	r->output = reply.output;
	r->output_len = reply.output_len;
	r->error = reply.error;
	LOG(w, SAGA_LOG_DEBUG, "saga %s step %s: %s %s attempt %u -> %s", id, d->step,
	    kind_name(d->kind), d->rpc, d->attempt,
	    r->outcome == SAGAWIRE__OUTCOME__OUTCOME_SUCCESS    ? "success"
		: r->outcome == SAGAWIRE__OUTCOME__OUTCOME_FAIL ? "fail"
								: "retry");
	return r;
}

static void *
handler_main(void *arg)
{
	saga_worker *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->jobs == NULL && !w->closing)
			pthread_cond_wait(&w->job_cv, &w->mu);
		if (w->closing)
			break;
		sl_job *j = w->jobs;
		if ((w->jobs = j->next) == NULL)
			w->jobs_tail = &w->jobs;
		w->n_jobs--;
		w->n_busy++;
		pthread_mutex_unlock(&w->mu);

		sl_result *r = run_job(w, j->d);

		pthread_mutex_lock(&w->mu);
		Sagawire__Response *done = batch_release_locked(j->batch);
		if (r != NULL) {
			*w->results_tail = r;
			w->results_tail = &r->next;
			w->n_results++;
			pthread_cond_signal(&w->result_cv);
		}
		w->n_busy--;
		pthread_cond_broadcast(&w->idle_cv);
		if (done != NULL) {
			pthread_mutex_unlock(&w->mu);
			wire_free(&done->base);
			pthread_mutex_lock(&w->mu);
		}
		free(j);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Waits for every handler thread, including ones that outlived a previous
 * run()'s grace period. */
static void
join_handlers(saga_worker *w)
{
	for (uint32_t i = 0; i < w->n_threads; i++)
		pthread_join(w->threads[i], NULL);
	free(w->threads);
	w->threads = NULL;
	w->n_threads = 0;
}

/* ---- poller ------------------------------------------------------------ */

/* Records a fatal error (the first one wins) and wakes run(). */
static void set_fatal(saga_worker *w, int code, const char *fmt, ...) SL_PRINTF(3, 4);

static void
set_fatal(saga_worker *w, int code, const char *fmt, ...)
{
	char detail[SL_ERRMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	LOG(w, SAGA_LOG_ERROR, "%s", detail);
	pthread_mutex_lock(&w->mu);
	if (w->fatal == 0) {
		w->fatal = code;
		sl_seterr(w->errmsg, "%s", detail);
	}
	pthread_mutex_unlock(&w->mu);
	ssize_t n = write(w->wake[1], "f", 1);
	(void)n;
}

/* Sleeps ms, or less if the socket is about to close. */
static void
pause_ms(saga_worker *w, int64_t ms)
{
	int64_t until = wire_mono_ms() + ms;
	pthread_mutex_lock(&w->mu);
	while (!w->sock_closing && !atomic_load(&w->stop_requested) && wire_mono_ms() < until)
		sl_cond_wait_ms(&w->wake_cv, &w->mu, until - wire_mono_ms());
	pthread_mutex_unlock(&w->mu);
}

static int64_t
next_backoff(int64_t b)
{
	return b == 0 ? BACKOFF_MIN_MS : b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
}

static int
str_ok(const char *s)
{
	return s != NULL && sl_utf8_ok(s);
}

/* Is a dispatch from the network well-formed? If not, why says what is
 * wrong. */
static int
dispatch_ok(const saga_worker *w, const Sagawire__Dispatch *d, char *why, size_t n)
{
	if (d->saga_id.len != 16 || d->saga_id.data == NULL) {
		snprintf(why, n, "saga_id has %zu bytes instead of 16", d->saga_id.len);
		return 0;
	}
	if (!str_ok(d->definition) || !str_ok(d->step) || !str_ok(d->rpc) ||
	    !str_ok(d->idempotency_key) || !str_ok(d->participant)) {
		snprintf(why, n, "a text field is not valid UTF-8");
		return 0;
	}
	if (d->step[0] == '\0' || d->rpc[0] == '\0') {
		snprintf(why, n, "step or rpc name is empty");
		return 0;
	}
	if (d->kind != SAGAWIRE__STEP_KIND__STEP_ACTION &&
	    d->kind != SAGAWIRE__STEP_KIND__STEP_COMPENSATION) {
		snprintf(why, n, "unknown step kind %d", (int)d->kind);
		return 0;
	}
	if (d->participant[0] != '\0' && strcmp(d->participant, w->participant) != 0) {
		snprintf(why, n, "it is for participant %.100s, not this one", d->participant);
		return 0;
	}
	for (size_t i = 0; i < d->n_results; i++) {
		if (d->results[i] == NULL || !str_ok(d->results[i]->step)) {
			snprintf(why, n, "result %zu has an invalid step name", i);
			return 0;
		}
	}
	return 1;
}

/* Starts handler threads until there is one per queued job or capacity is
 * reached. Call with w->mu held. */
static void
spawn_handlers_locked(saga_worker *w)
{
	while (w->n_threads - w->n_busy < w->n_jobs && w->n_threads < w->capacity) {
		int rv = pthread_create(&w->threads[w->n_threads], NULL, handler_main, w);
		if (rv != 0) {
			LOG(w, SAGA_LOG_ERROR,
			    "cannot start a handler thread (error %d); %u "
			    "running",
			    rv, w->n_threads);
			if (w->n_threads == 0) {
				pthread_mutex_unlock(&w->mu);
				set_fatal(w, SAGA_ENOMEM, "cannot start any handler thread");
				pthread_mutex_lock(&w->mu);
			}
			return;
		}
		w->n_threads++;
	}
}

/* Turns a WorkBatch into jobs; takes ownership of resp. */
static void
enqueue_batch(saga_worker *w, Sagawire__Response *resp)
{
	const Sagawire__WorkBatch *b = resp->work;
	sl_job *head = NULL, **tail = &head;
	sl_batch *batch;
	size_t n = 0;

	if (b->n_dispatches == 0 || (batch = malloc(sizeof(*batch))) == NULL) {
		if (b->n_dispatches > 0)
			LOG(w, SAGA_LOG_ERROR,
			    "out of memory: %zu steps dropped; sagad will "
			    "redeliver them after their timeout",
			    b->n_dispatches);
		wire_free(&resp->base);
		return;
	}
	batch->resp = resp;
	for (size_t i = 0; i < b->n_dispatches; i++) {
		const Sagawire__Dispatch *d = b->dispatches[i];
		char why[256];
		if (!dispatch_ok(w, d, why, sizeof(why))) {
			char id[WIRE_UUID_STRLEN] = "?";
			if (d->saga_id.len == 16)
				wire_uuid_format(d->saga_id.data, id);
			LOG(w, SAGA_LOG_ERROR,
			    "skipping an invalid dispatch from sagad (saga %s): %s", id, why);
			continue;
		}
		sl_job *j = malloc(sizeof(*j));
		if (j == NULL) {
			LOG(w, SAGA_LOG_ERROR,
			    "out of memory: a step is dropped; sagad will "
			    "redeliver it after its timeout");
			continue;
		}
		j->batch = batch;
		j->d = d;
		j->next = NULL;
		*tail = j;
		tail = &j->next;
		n++;
	}
	if (n == 0) {
		free(batch);
		wire_free(&resp->base);
		return;
	}
	batch->refs = (unsigned)n;
	pthread_mutex_lock(&w->mu);
	if (w->closing) {
		/* Shutting down after a fatal error: sagad redelivers. */
		pthread_mutex_unlock(&w->mu);
		while (head != NULL) {
			sl_job *j = head;
			head = j->next;
			free(j);
		}
		free(batch);
		wire_free(&resp->base);
		return;
	}
	*w->jobs_tail = head;
	w->jobs_tail = tail;
	w->n_jobs += n;
	spawn_handlers_locked(w);
	/* One wake-up per job, not a broadcast: with hundreds of idle
	 * handler threads a broadcast per batch woke them all, and most went
	 * back to sleep (a fifth of the worker's time in a profile). */
	for (size_t k = 0; k < n; k++)
		pthread_cond_signal(&w->job_cv);
	pthread_mutex_unlock(&w->mu);
}

static void *
poller_main(void *arg)
{
	saga_worker *w = arg;
	char err[SL_ERRMSG_MAX];
	int64_t backoff = 0;

	while (!atomic_load(&w->stop_requested)) {
		Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
		Sagawire__WorkPoll poll = SAGAWIRE__WORK_POLL__INIT;
		Sagawire__Response *resp;
		nng_msg *msg, *reply;
		int rv;

		if (backoff > 0)
			pause_ms(w, backoff);
		if (atomic_load(&w->stop_requested))
			break;
		poll.participant = w->participant;
		poll.capacity = w->capacity;
		poll.instance = w->run_instance;
		poll.max_message_bytes = w->max_message;
		req.body_case = SAGAWIRE__REQUEST__BODY_POLL;
		req.poll = &poll;
		if (wire_pack_msg(&req.base, &msg) != SAGA_OK) {
			backoff = next_backoff(backoff);
			continue;
		}
		rv = sl_ctx_call(&w->conn, w->poll_ctx, w->poll_aio, msg, &reply);
		if (rv == NNG_ECLOSED)
			break;
		if (rv != 0) {
			backoff = next_backoff(backoff);
			LOG(w, SAGA_LOG_WARN, "polling sagad at %s failed: %s; again in %lld ms",
			    w->url, nng_strerror(rv), (long long)backoff);
			continue;
		}
		rv = sl_decode_reply(reply, SAGAWIRE__RESPONSE__BODY_WORK, &resp, err);
		nng_msg_free(reply);
		if (rv == SAGA_EINVAL || rv == SAGA_EUNSUPPORTED) {
			/* Asking again cannot help: the participant name or
			 * capacity is refused, or sagad does not serve polls. */
			set_fatal(w, rv, "sagad at %s refused the poll of participant %s: %s",
			    w->url, w->participant, err);
			break;
		}
		if (rv != SAGA_OK) {
			backoff = next_backoff(backoff);
			LOG(w, SAGA_LOG_WARN,
			    "sagad answered a poll with an error: %s: %s; "
			    "again in %lld ms",
			    saga_strerror(rv), err, (long long)backoff);
			continue;
		}
		backoff = 0;
		if (atomic_load(&w->stop_requested)) {
			if (resp->work->n_dispatches > 0)
				LOG(w, SAGA_LOG_INFO,
				    "stopping: %zu steps just received are left "
				    "for sagad to redeliver",
				    resp->work->n_dispatches);
			wire_free(&resp->base);
			break;
		}
		enqueue_batch(w, resp);
	}
	return NULL;
}

/* ---- reporter ---------------------------------------------------------- */

/*
 * Sends results rs[0..n) in one Report until sagad acknowledges it.
 * A Report that sagad finds too big is split; a single result that is too
 * big is replaced by a retryable error saying so. Returns SAGA_OK, or
 * SAGA_ECLOSED when the socket closed first.
 */
static int
send_report(saga_worker *w, sl_result **rs, size_t n)
{
	char err[SL_ERRMSG_MAX];
	int64_t backoff = 0;

	for (;;) {
		Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
		Sagawire__Report rep = SAGAWIRE__REPORT__INIT;
		Sagawire__Response *resp;
		Sagawire__Result *wr, **wp;
		nng_msg *msg, *reply;
		int rv;

		if (backoff > 0)
			pause_ms(w, backoff);
		wr = calloc(n, sizeof(*wr));
		wp = calloc(n, sizeof(*wp));
		if (wr == NULL || wp == NULL) {
			free(wr);
			free(wp);
			backoff = next_backoff(backoff);
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			sagawire__result__init(&wr[i]);
			wr[i].saga_id.data = rs[i]->saga_id;
			wr[i].saga_id.len = 16;
			wr[i].step_index = rs[i]->step_index;
			wr[i].step = rs[i]->step;
			wr[i].kind = rs[i]->kind;
			wr[i].attempt = rs[i]->attempt;
			wr[i].outcome = rs[i]->outcome;
			wr[i].output.data = rs[i]->output;
			wr[i].output.len = rs[i]->output_len;
			if (rs[i]->error != NULL)
				wr[i].error = rs[i]->error;
			wp[i] = &wr[i];
		}
		rep.participant = w->participant;
		rep.n_results = n;
		rep.results = wp;
		req.body_case = SAGAWIRE__REQUEST__BODY_REPORT;
		req.report = &rep;
		rv = wire_pack_msg(&req.base, &msg);
		free(wr);
		free(wp);
		if (rv != SAGA_OK) {
			backoff = next_backoff(backoff);
			continue;
		}
		rv = sl_ctx_call(&w->conn, w->report_ctx, w->report_aio, msg, &reply);
		if (rv == NNG_ECLOSED)
			return SAGA_ECLOSED;
		if (rv != 0) {
			backoff = next_backoff(backoff);
			LOG(w, SAGA_LOG_WARN, "reporting %zu results failed: %s; again in %lld ms",
			    n, nng_strerror(rv), (long long)backoff);
			continue;
		}
		rv = sl_decode_reply(reply, SAGAWIRE__RESPONSE__BODY_ACK, &resp, err);
		nng_msg_free(reply);
		if (rv == SAGA_OK) {
			LOG(w, SAGA_LOG_DEBUG, "reported %zu results: %u accepted, %u ignored", n,
			    resp->ack->accepted, resp->ack->ignored);
			wire_free(&resp->base);
			return SAGA_OK;
		}
		if (rv == SAGA_ETOOBIG && n > 1) {
			LOG(w, SAGA_LOG_INFO,
			    "sagad finds a report of %zu results too big; "
			    "splitting it",
			    n);
			size_t h = n / 2;
			if ((rv = send_report(w, rs, h)) != SAGA_OK)
				return rv;
			return send_report(w, rs + h, n - h);
		}
		if (rv == SAGA_ETOOBIG) {
			char id[WIRE_UUID_STRLEN], *e;
			wire_uuid_format(rs[0]->saga_id, id);
			char text[256];
			snprintf(text, sizeof(text),
			    "participant %s: the step's result (%zu bytes) "
			    "is larger than sagad accepts",
			    w->participant, rs[0]->output_len);
			LOG(w, SAGA_LOG_ERROR,
			    "saga %s step %s: %s; reporting a retryable error "
			    "instead",
			    id, rs[0]->step, text);
			if ((e = strdup(text)) != NULL) {
				free(rs[0]->error);
				rs[0]->error = e;
			}
			free(rs[0]->output);
			rs[0]->output = NULL;
			rs[0]->output_len = 0;
			rs[0]->outcome = SAGAWIRE__OUTCOME__OUTCOME_RETRY;
			continue;
		}
		backoff = next_backoff(backoff);
		LOG(w, SAGA_LOG_WARN,
		    "sagad refused a report of %zu results: %s: %s; sending it "
		    "again in %lld ms",
		    n, saga_strerror(rv), err, (long long)backoff);
	}
}

static void *
reporter_main(void *arg)
{
	saga_worker *w = arg;
	sl_result **batch = calloc(REPORT_MAX_RESULTS, sizeof(*batch));

	pthread_mutex_lock(&w->mu);
	while (batch != NULL) {
		while (w->results == NULL && !w->reporter_exit)
			pthread_cond_wait(&w->result_cv, &w->mu);
		if (w->results == NULL)
			break;
		/* Everything queued, up to the count and size caps: one
		 * result when idle, large batches under load. */
		size_t n = 0, bytes = 0;
		while (w->results != NULL && n < REPORT_MAX_RESULTS) {
			size_t sz = result_size(w->results);
			if (n > 0 && bytes + sz > REPORT_SOFT_BYTES)
				break;
			bytes += sz;
			batch[n++] = w->results;
			if ((w->results = w->results->next) == NULL)
				w->results_tail = &w->results;
			w->n_results--;
		}
		w->report_busy = n;
		pthread_mutex_unlock(&w->mu);

		int rv = send_report(w, batch, n);
		if (rv != SAGA_OK)
			LOG(w, SAGA_LOG_WARN,
			    "%zu results were not acknowledged before the "
			    "connection closed; sagad will redeliver those steps",
			    n);
		for (size_t i = 0; i < n; i++)
			result_free(batch[i]);

		pthread_mutex_lock(&w->mu);
		w->report_busy = 0;
		pthread_cond_broadcast(&w->idle_cv);
		if (rv != SAGA_OK)
			break;
	}
	pthread_mutex_unlock(&w->mu);
	if (batch == NULL)
		set_fatal(w, SAGA_ENOMEM, "out of memory starting the reporter");
	free(batch);
	return NULL;
}

/* ---- run / stop -------------------------------------------------------- */

void
saga_worker_stop(saga_worker *w)
{
	if (w == NULL)
		return;
	int saved = errno;
	atomic_store(&w->stop_requested, 1);
	/* A full pipe already holds a wake-up. */
	ssize_t n = write(w->wake[1], "s", 1);
	(void)n;
	errno = saved;
}

static void
drain_wake(saga_worker *w)
{
	char buf[64];
	while (read(w->wake[0], buf, sizeof(buf)) > 0)
		;
}

/* Sleeps until stop or a fatal error. */
static void
wait_for_stop(saga_worker *w)
{
	for (;;) {
		if (atomic_load(&w->stop_requested))
			return;
		pthread_mutex_lock(&w->mu);
		int fatal = w->fatal;
		pthread_mutex_unlock(&w->mu);
		if (fatal)
			return;
		struct pollfd p = { .fd = w->wake[0], .events = POLLIN };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return; /* cannot wait: treat as a stop */
		drain_wake(w);
	}
}

static int
make_instance(saga_worker *w)
{
	char host[256] = "";
	char buf[512];

	if (w->instance != NULL) {
		snprintf(buf, sizeof(buf), "%s", w->instance);
	} else {
		if (gethostname(host, sizeof(host) - 1) != 0)
			snprintf(host, sizeof(host), "unknown");
		snprintf(buf, sizeof(buf), "%s:%ld", host, (long)getpid());
	}
	free(w->run_instance);
	if ((w->run_instance = cm_utf8_dup(buf, sizeof(buf))) == NULL)
		return SAGA_ENOMEM;
	return SAGA_OK;
}

/* Sets up the socket, contexts and threads. On failure everything made is
 * undone and errmsg says why. */
static int
start(saga_worker *w)
{
	int rv;

	if ((rv = make_instance(w)) != SAGA_OK)
		return rv;
	if ((w->threads = calloc(w->capacity, sizeof(pthread_t))) == NULL)
		return SAGA_ENOMEM;
	w->poll_aio = w->report_aio = NULL;
	if ((rv = sl_conn_open(
		 &w->conn, (const char *const *)&w->url, 1, w->max_message, w->errmsg)) != SAGA_OK)
		goto fail;
	if ((rv = nng_aio_alloc(&w->poll_aio, NULL, NULL)) != 0 ||
	    (rv = nng_aio_alloc(&w->report_aio, NULL, NULL)) != 0 ||
	    (rv = sl_ctx_open(&w->conn, POLL_RESEND_MS, &w->poll_ctx)) != 0 ||
	    (rv = sl_ctx_open(&w->conn, REPORT_RESEND_MS, &w->report_ctx)) != 0) {
		sl_seterr(w->errmsg, "cannot set up the nng contexts: %s", nng_strerror(rv));
		rv = wire_err_from_nng(rv);
		goto fail;
	}
	if ((rv = pthread_create(&w->reporter, NULL, reporter_main, w)) != 0) {
		sl_seterr(w->errmsg, "cannot start the reporter thread: %s", strerror(rv));
		rv = SAGA_ENOMEM;
		goto fail;
	}
	if ((rv = pthread_create(&w->poller, NULL, poller_main, w)) != 0) {
		sl_seterr(w->errmsg, "cannot start the poller thread: %s", strerror(rv));
		pthread_mutex_lock(&w->mu);
		w->reporter_exit = 1;
		pthread_cond_broadcast(&w->result_cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->reporter, NULL);
		rv = SAGA_ENOMEM;
		goto fail;
	}
	return SAGA_OK;

fail:
	sl_conn_close(&w->conn);
	if (w->poll_aio != NULL)
		nng_aio_free(w->poll_aio);
	if (w->report_aio != NULL)
		nng_aio_free(w->report_aio);
	free(w->threads);
	w->threads = NULL;
	return rv;
}

int
saga_worker_run(saga_worker *w)
{
	int expected = 0;
	int rv;

	if (w == NULL)
		return SAGA_EINVAL;
	if (!atomic_compare_exchange_strong(&w->running, &expected, 1))
		return SAGA_ESTATE;
	/* Handlers left over from a previous run's grace period. */
	join_handlers(w);
	drop_results(w);
	drain_wake(w);
	w->errmsg[0] = '\0';
	w->jobs = NULL;
	w->jobs_tail = &w->jobs;
	w->n_jobs = 0;
	w->n_busy = 0;
	w->closing = w->reporter_exit = w->sock_closing = 0;
	w->report_busy = 0;
	w->fatal = 0;
	if (atomic_load(&w->stop_requested)) {
		/* Stopped before it started (e.g. a signal during setup). */
		rv = SAGA_OK;
		goto out;
	}
	if (w->n_handlers == 0)
		LOG(w, SAGA_LOG_WARN,
		    "participant %s has no handlers: every step it receives "
		    "is reported as a retryable error",
		    w->participant);
	if ((rv = start(w)) != SAGA_OK)
		goto out;
	LOG(w, SAGA_LOG_INFO,
	    "participant %s (instance %s, capacity %u, %zu handlers) "
	    "serving sagad at %s",
	    w->participant, w->run_instance, w->capacity, w->n_handlers, w->url);

	wait_for_stop(w);

	/* 1. No new jobs start; queued ones are dropped (redelivered after the
	 *    connection closes). Running handlers get the grace period. */
	int64_t deadline = wire_mono_ms() + STOP_GRACE_MS;
	sl_job *dropped;
	pthread_mutex_lock(&w->mu);
	w->closing = 1;
	dropped = w->jobs;
	size_t n_dropped = w->n_jobs;
	w->jobs = NULL;
	w->jobs_tail = &w->jobs;
	w->n_jobs = 0;
	pthread_cond_broadcast(&w->job_cv);
	pthread_cond_broadcast(&w->wake_cv);
	while (dropped != NULL) {
		sl_job *j = dropped;
		dropped = j->next;
		Sagawire__Response *done = batch_release_locked(j->batch);
		if (done != NULL)
			wire_free(&done->base);
		free(j);
	}
	if (n_dropped > 0)
		LOG(w, SAGA_LOG_INFO, "stopping: %zu queued steps are left for sagad to redeliver",
		    n_dropped);
	while (w->n_busy > 0 && wire_mono_ms() < deadline)
		sl_cond_wait_ms(&w->idle_cv, &w->mu, deadline - wire_mono_ms());
	uint32_t stuck = w->n_busy;

	/* 2. Flush the outcomes: the reporter sends what is queued, then
	 *    exits. */
	int64_t flush_deadline = wire_mono_ms() + FLUSH_MIN_MS;
	if (flush_deadline < deadline)
		flush_deadline = deadline;
	w->reporter_exit = 1;
	pthread_cond_broadcast(&w->result_cv);
	while ((w->results != NULL || w->report_busy > 0) && wire_mono_ms() < flush_deadline)
		sl_cond_wait_ms(&w->idle_cv, &w->mu, flush_deadline - wire_mono_ms());
	size_t unflushed = w->n_results + w->report_busy;

	/* 3. Close the socket once: the held poll and any report still
	 *    waiting end with NNG_ECLOSED. */
	w->sock_closing = 1;
	pthread_cond_broadcast(&w->wake_cv);
	pthread_mutex_unlock(&w->mu);
	sl_conn_close(&w->conn);
	pthread_join(w->poller, NULL);
	pthread_join(w->reporter, NULL);
	nng_aio_free(w->poll_aio);
	nng_aio_free(w->report_aio);
	w->poll_aio = w->report_aio = NULL;

	if (unflushed > 0)
		LOG(w, SAGA_LOG_WARN,
		    "stopping: %zu outcomes could not be reported in time; "
		    "sagad will redeliver those steps",
		    unflushed);
	if (stuck == 0) {
		join_handlers(w);
	} else {
		/* They cannot be interrupted. saga_worker_free() (or the next
		 * run) waits for them; their outcomes are dropped. */
		LOG(w, SAGA_LOG_WARN,
		    "stopping: %u handlers still running after %d ms; their "
		    "outcomes are dropped and sagad will redeliver those steps",
		    stuck, STOP_GRACE_MS);
	}
	drop_results(w);

	pthread_mutex_lock(&w->mu);
	rv = w->fatal;
	pthread_mutex_unlock(&w->mu);
	LOG(w, rv ? SAGA_LOG_ERROR : SAGA_LOG_INFO, "participant %s stopped%s%s", w->participant,
	    rv ? ": " : "", rv ? w->errmsg : "");

out:
	drain_wake(w);
	atomic_store(&w->stop_requested, 0);
	atomic_store(&w->running, 0);
	return rv;
}
