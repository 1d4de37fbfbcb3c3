/*
 * worker.c: the participant half of libsaga for JavaScript.
 *
 * libsaga runs each step's handler on one of its own threads, at most
 * `capacity` at once, and wants the reply before the handler returns. The
 * handler here (on_step) never calls into JavaScript: it hands the step to
 * the event loop through a napi_threadsafe_function and sleeps on the
 * job's own condition variable until the JavaScript handler settles (the
 * loop then records the outcome in the job and wakes it), so capacity
 * counts the handlers in flight in JavaScript. The libsaga thread then
 * replies. A heartbeat from JavaScript is sent from the loop while the
 * libsaga thread sleeps: the reply is touched by one thread at a time,
 * under the worker's mutex.
 *
 * A job that JavaScript never settles is given up on (a retryable error)
 * once its deadline passes: the step's timeout from the last heartbeat, plus
 * a second; sagad has timed the attempt out by then. Its slot is free again
 * and a late settle is ignored. The same happens when the job's handle is
 * garbage-collected unsettled, and when Node's environment goes away.
 *
 * Job lifetime: two references, the libsaga thread's and the JavaScript
 * side's (the call into JS, then the external handed to index.js); the
 * last to let go frees it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <saga.h>

#include "saga_node.h"

/* Slack past a step's timeout before an unsettled job is given up on. */
#define GIVE_UP_GRACE_MS 1000

typedef enum {
	JOB_QUEUED,   /* on its way to the event loop */
	JOB_IN_JS,    /* the JavaScript handler runs */
	JOB_SETTLED,  /* outcome recorded; the libsaga thread replies */
	JOB_ABANDONED /* given up on (see above); the libsaga thread replies retry */
} job_state;

typedef enum { OUT_SUCCESS = 0, OUT_RETRY = 1, OUT_FAIL = 2 } job_outcome;

typedef struct sn_worker sn_worker;

typedef struct sn_job {
	sn_worker *sw;
	const saga_step *step; /* valid while the libsaga thread waits (QUEUED, IN_JS) */
	saga_reply *reply;     /* idem */
	job_state state;
	int refs;
	job_outcome outcome;
	uint8_t *result;
	size_t len;
	char *error;
	const char *why; /* ABANDONED: the error reported */
	int64_t deadline_ms;
	/* The libsaga thread sleeps on the job's own condition variable, so a
	 * settle wakes that thread only: one shared one woke every handler
	 * thread waiting (up to capacity of them) on every settle. */
	pthread_cond_t cv;
	struct sn_job *prev, *next; /* in sw->waiting while the thread sleeps */
} sn_job;

struct sn_worker {
	saga_worker *w; /* NULL once freed after run */
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* a handler thread left on_step (run_main drains) */
	pthread_condattr_t cv_attr; /* CLOCK_MONOTONIC, for every job's cv */
	sn_job *waiting;            /* jobs whose libsaga thread sleeps in on_step */
	napi_env env;
	napi_threadsafe_function tsfn;
	napi_ref self; /* held while running: the Worker stays alive */
	napi_deferred run_deferred;
	pthread_t thread;
	int running;  /* run() was called and its thread not joined yet */
	int ran;      /* a worker runs once */
	int stopping; /* the environment goes away: handlers answer at once */
	int cleanup_hook;
	uint32_t active; /* libsaga handler threads inside on_step */
	uint32_t jobs;   /* jobs not freed yet: an external may outlive the Worker */
	int finalized;   /* the Worker was collected: the last job frees sw */
	/* libsaga's log lines, to the JavaScript log function on the loop. A
	 * lock of its own: libsaga may log while sw->mu is held (heartbeat). */
	pthread_mutex_t log_mu;
	napi_threadsafe_function log_tsfn;
	int log_open;  /* log_tsfn may be called */
	int log_level; /* lines above this level are dropped before queueing */
	int run_rv;
	char errmsg[1024];
};

/* The marker for "run() returned" on the threadsafe function's queue. */
static sn_job run_done_marker;

static int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drops one reference; the caller holds sw->mu. Returns nonzero when the
 * Worker is gone and this was its last job: the caller then unlocks and
 * calls sw_free. */
static void job_abandon_locked(sn_job *j, const char *why);

static int
job_unref_locked(sn_job *j)
{
	sn_worker *sw = j->sw;
	if (--j->refs > 0)
		return 0;
	pthread_cond_destroy(&j->cv);
	free(j->result);
	free(j->error);
	free(j);
	return --sw->jobs == 0 && sw->finalized;
}

static void
sw_free(sn_worker *sw)
{
	pthread_cond_destroy(&sw->cv);
	pthread_condattr_destroy(&sw->cv_attr);
	pthread_mutex_destroy(&sw->mu);
	pthread_mutex_destroy(&sw->log_mu);
	free(sw);
}

/* Drops the JavaScript side's reference, on the loop. */
static void
job_unref_js(sn_job *j, const char *abandon_why)
{
	sn_worker *sw = j->sw;
	pthread_mutex_lock(&sw->mu);
	if (abandon_why != NULL)
		job_abandon_locked(j, abandon_why);
	int gone = job_unref_locked(j);
	pthread_mutex_unlock(&sw->mu);
	if (gone)
		sw_free(sw);
}

static void
job_abandon_locked(sn_job *j, const char *why)
{
	if (j->state == JOB_QUEUED || j->state == JOB_IN_JS) {
		j->state = JOB_ABANDONED;
		j->why = why;
		pthread_cond_signal(&j->cv);
	}
}

/* The libsaga handler, on one of its threads. */
static void
on_step(const saga_step *step, saga_reply *reply, void *user)
{
	sn_worker *sw = user;
	sn_job *j = calloc(1, sizeof(*j));
	char msg[256];

	if (j == NULL) {
		saga_reply_retry(reply, "participant out of memory");
		return;
	}
	j->sw = sw;
	j->step = step;
	j->reply = reply;
	j->state = JOB_QUEUED;
	j->refs = 2;
	j->deadline_ms = mono_ms() + step->timeout_ms + GIVE_UP_GRACE_MS;
	pthread_cond_init(&j->cv, &sw->cv_attr);

	pthread_mutex_lock(&sw->mu);
	sw->active++;
	sw->jobs++;
	j->next = sw->waiting;
	if (sw->waiting != NULL)
		sw->waiting->prev = j;
	sw->waiting = j;
	int stopping = sw->stopping;
	pthread_mutex_unlock(&sw->mu);
	if (stopping || napi_call_threadsafe_function(sw->tsfn, j, napi_tsfn_blocking) != napi_ok) {
		/* The loop will never see it: drop the JS side's reference too. */
		pthread_mutex_lock(&sw->mu);
		j->refs--;
		job_abandon_locked(j, "the Node.js participant is shutting down");
	} else {
		pthread_mutex_lock(&sw->mu);
	}
	while (j->state == JOB_QUEUED || j->state == JOB_IN_JS) {
		if (sw->stopping) {
			job_abandon_locked(j, "the Node.js participant is shutting down");
			break;
		}
		int64_t left = j->deadline_ms - mono_ms();
		if (left <= 0) {
			snprintf(msg, sizeof(msg),
			    "the handler did not settle within the step's timeout (%u ms)",
			    step->timeout_ms);
			job_abandon_locked(j, msg);
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (left > 1000)
			left = 1000; /* re-read the deadline, which heartbeats move */
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&j->cv, &sw->mu, &ts);
	}
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		sw->waiting = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	/* From here JavaScript no longer touches the reply or the outcome. */
	job_state st = j->state;
	const char *why = j->why;
	pthread_mutex_unlock(&sw->mu);

	if (st == JOB_SETTLED && j->outcome == OUT_SUCCESS) {
		if (saga_reply_success(reply, j->result, j->len) != SAGA_OK)
			saga_reply_retry(reply, "the handler's result is larger than allowed");
	} else if (st == JOB_SETTLED && j->outcome == OUT_FAIL) {
		saga_reply_fail(reply, j->error != NULL ? j->error : "business failure");
	} else if (st == JOB_SETTLED) {
		saga_reply_retry(reply, j->error != NULL ? j->error : "retryable error");
	} else {
		saga_reply_retry(reply, why != NULL ? why : "abandoned");
	}

	pthread_mutex_lock(&sw->mu);
	j->step = NULL;
	j->reply = NULL;
	/* Never the last job of a collected Worker: it is collected only after
	 * run() drained, which waits for active to reach 0 below. */
	(void)job_unref_locked(j);
	sw->active--;
	pthread_cond_broadcast(&sw->cv);
	pthread_mutex_unlock(&sw->mu);
}

/* The step as a plain object for index.js. Called with sw->mu held and the
 * job IN_JS, so j->step is valid. */
static napi_value
step_value(napi_env env, const saga_step *s)
{
	napi_value o, results;
	if (napi_create_object(env, &o) != napi_ok ||
	    sn_set_string(env, o, "sagaId", s->saga_id) != napi_ok ||
	    sn_set_string(env, o, "definition", s->definition) != napi_ok ||
	    sn_set_u32(env, o, "version", s->version) != napi_ok ||
	    sn_set_string(env, o, "step", s->step) != napi_ok ||
	    sn_set_string(env, o, "rpc", s->rpc) != napi_ok ||
	    sn_set_string(env, o, "kind",
		s->kind == SAGA_COMPENSATION ? "compensation" : "action") != napi_ok ||
	    sn_set_u32(env, o, "attempt", s->attempt) != napi_ok ||
	    sn_set_string(env, o, "idempotencyKey", s->idempotency_key) != napi_ok ||
	    sn_set_u32(env, o, "timeoutMs", s->timeout_ms) != napi_ok ||
	    sn_set_buffer(env, o, "input", s->input, s->input_len) != napi_ok ||
	    sn_set_string(env, o, "traceparent", s->traceparent) != napi_ok ||
	    napi_create_object(env, &results) != napi_ok)
		return NULL;
	for (size_t i = 0; i < s->n_results; i++) {
		/* Defined, not assigned: a step named __proto__ stays a plain key. */
		napi_value buf;
		void *copy;
		const saga_step_result *r = &s->results[i];
		if (napi_create_buffer_copy(env, r->data != NULL ? r->len : 0,
			r->data != NULL ? (const void *)r->data : "", &copy, &buf) != napi_ok)
			return NULL;
		napi_property_descriptor d = { r->step, NULL, NULL, NULL, NULL, buf,
			napi_enumerable, NULL };
		if (napi_define_properties(env, results, 1, &d) != napi_ok)
			return NULL;
	}
	if (napi_set_named_property(env, o, "results", results) != napi_ok)
		return NULL;
	return o;
}

static void
job_external_finalize(napi_env env, void *data, void *hint)
{
	job_unref_js(data, "the handler's promise was garbage-collected without settling");
}

static void run_finished(napi_env env, sn_worker *sw);

/* On the event loop: a step for JavaScript, or the end of run(). */
static void
call_js(napi_env env, napi_value js_cb, void *context, void *data)
{
	sn_worker *sw = context;
	sn_job *j = data;
	napi_value argv[2], undef;

	if (j == &run_done_marker) {
		if (env != NULL)
			run_finished(env, sw);
		return;
	}
	pthread_mutex_lock(&sw->mu);
	if (env == NULL || j->state != JOB_QUEUED) {
		pthread_mutex_unlock(&sw->mu);
		job_unref_js(j, "the Node.js participant is shutting down");
		return;
	}
	j->state = JOB_IN_JS;
	argv[0] = step_value(env, j->step);
	pthread_mutex_unlock(&sw->mu);
	if (argv[0] == NULL ||
	    napi_create_external(env, j, job_external_finalize, NULL, &argv[1]) != napi_ok) {
		napi_value e;
		napi_get_and_clear_last_exception(env, &e);
		job_unref_js(j, "the participant could not hand the step to JavaScript");
		return;
	}
	napi_get_undefined(env, &undef);
	/* index.js's dispatcher catches everything a handler does; an exception
	 * here is a bug in it, surfaced as an uncaught exception by Node. */
	napi_call_function(env, undef, js_cb, 2, argv, NULL);
}

/* The thread that runs saga_worker_run. */
static void *
run_main(void *arg)
{
	sn_worker *sw = arg;
	int rv = saga_worker_run(sw->w);
	pthread_mutex_lock(&sw->mu);
	sw->run_rv = rv;
	if (rv != SAGA_OK)
		snprintf(sw->errmsg, sizeof(sw->errmsg), "%s", saga_worker_errmsg(sw->w));
	/* Drain: handlers still waiting on JavaScript keep their slots until
	 * they settle or are given up on. */
	while (sw->active > 0)
		pthread_cond_wait(&sw->cv, &sw->mu);
	pthread_mutex_unlock(&sw->mu);
	if (napi_call_threadsafe_function(sw->tsfn, &run_done_marker, napi_tsfn_blocking) !=
	    napi_ok) {
		/* The environment is going away; the cleanup hook joins us. */
	}
	napi_release_threadsafe_function(sw->tsfn, napi_tsfn_release);
	return NULL;
}

/* A log line on its way to the loop. */
typedef struct sn_log_line {
	int level;
	char text[];
} sn_log_line;

/* libsaga's log callback, on any of its threads. */
static void
log_cb(saga_log_level level, const char *line, void *user)
{
	sn_worker *sw = user;
	if ((int)level > sw->log_level)
		return;
	size_t n = strlen(line);
	sn_log_line *l = malloc(sizeof(*l) + n + 1);
	if (l == NULL)
		return;
	l->level = (int)level;
	memcpy(l->text, line, n + 1);
	pthread_mutex_lock(&sw->log_mu);
	if (!sw->log_open ||
	    napi_call_threadsafe_function(sw->log_tsfn, l, napi_tsfn_nonblocking) != napi_ok) {
		free(l);
	}
	pthread_mutex_unlock(&sw->log_mu);
}

static void
call_js_log(napi_env env, napi_value js_cb, void *context, void *data)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	sn_log_line *l = data;
	napi_value argv[2], undef;
	if (env != NULL &&
	    napi_create_string_utf8(env, names[l->level & 3], NAPI_AUTO_LENGTH, &argv[0]) ==
		napi_ok &&
	    napi_create_string_utf8(env, l->text, NAPI_AUTO_LENGTH, &argv[1]) == napi_ok &&
	    napi_get_undefined(env, &undef) == napi_ok) {
		/* index.js catches what the user's log function throws. */
		napi_call_function(env, undef, js_cb, 2, argv, NULL);
	}
	free(l);
}

/* No log line is queued after this; the tsfn is let go. */
static void
log_close(sn_worker *sw)
{
	pthread_mutex_lock(&sw->log_mu);
	if (sw->log_open) {
		sw->log_open = 0;
		napi_release_threadsafe_function(sw->log_tsfn, napi_tsfn_release);
	}
	pthread_mutex_unlock(&sw->log_mu);
}

static void
worker_destroy(sn_worker *sw)
{
	log_close(sw);
	saga_worker_free(sw->w);
	sw->w = NULL;
}

static void
env_cleanup(void *arg)
{
	sn_worker *sw = arg;
	pthread_mutex_lock(&sw->mu);
	sw->stopping = 1;
	pthread_cond_broadcast(&sw->cv);
	for (sn_job *j = sw->waiting; j != NULL; j = j->next)
		pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&sw->mu);
	if (sw->running) {
		saga_worker_stop(sw->w);
		pthread_join(sw->thread, NULL);
		sw->running = 0;
	}
	sw->cleanup_hook = 0;
	worker_destroy(sw);
}

/* On the loop, once run() returned and every handler let go. */
static void
run_finished(napi_env env, sn_worker *sw)
{
	if (!sw->running)
		return;
	pthread_join(sw->thread, NULL);
	sw->running = 0;
	if (sw->cleanup_hook) {
		napi_remove_env_cleanup_hook(env, env_cleanup, sw);
		sw->cleanup_hook = 0;
	}
	if (sw->run_rv == SAGA_OK) {
		napi_value undef;
		napi_get_undefined(env, &undef);
		napi_resolve_deferred(env, sw->run_deferred, undef);
	} else {
		napi_reject_deferred(
		    env, sw->run_deferred, sn_make_error(env, sw->run_rv, sw->errmsg));
	}
	worker_destroy(sw);
	if (sw->self != NULL) {
		napi_delete_reference(env, sw->self);
		sw->self = NULL;
	}
}

static void
worker_finalize(napi_env env, void *data, void *hint)
{
	sn_worker *sw = data;
	/* Not running: a running Worker holds a reference to itself. */
	if (sw->cleanup_hook)
		napi_remove_env_cleanup_hook(env, env_cleanup, sw);
	worker_destroy(sw);
	pthread_mutex_lock(&sw->mu);
	sw->finalized = 1;
	int now = sw->jobs == 0;
	pthread_mutex_unlock(&sw->mu);
	if (now)
		sw_free(sw);
}

static sn_worker *
unwrap(napi_env env, napi_value self)
{
	sn_worker *sw = NULL;
	if (napi_unwrap(env, self, (void **)&sw) != napi_ok || sw == NULL) {
		napi_throw_type_error(env, NULL, "not a libsaga Worker");
		return NULL;
	}
	return sw;
}

static napi_value
throw_saga(napi_env env, int rv, const char *detail)
{
	napi_throw(env, sn_make_error(env, rv, detail));
	return NULL;
}

/* new NativeWorker(urls, participant, {capacity, instance, credential,
 * maxMessage, tls: {ca, cert, key, serverName}}) */
static napi_value
worker_ctor(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3], self, tls;
	char *urls = NULL, *participant = NULL, *instance = NULL, *credential = NULL;
	char *ca = NULL, *cert = NULL, *key = NULL, *server_name = NULL;
	uint32_t capacity = 0, max_message = 0;
	sn_worker *sw = NULL;
	napi_valuetype t;
	int rv;

	SN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	if (argc < 3) {
		napi_throw_type_error(env, NULL, "NativeWorker(urls, participant, options)");
		return NULL;
	}
	if (sn_get_string(env, argv[0], "url", 1, &urls) != 0 ||
	    sn_get_string(env, argv[1], "participant", 0, &participant) != 0 ||
	    sn_prop_u32(env, argv[2], "capacity", &capacity) != 0 ||
	    sn_prop_u32(env, argv[2], "maxMessage", &max_message) != 0 ||
	    sn_prop_string(env, argv[2], "instance", &instance) != 0 ||
	    sn_prop_string(env, argv[2], "credential", &credential) != 0)
		goto done;
	if (napi_typeof(env, argv[2], &t) == napi_ok && t == napi_object &&
	    napi_get_named_property(env, argv[2], "tls", &tls) == napi_ok &&
	    napi_typeof(env, tls, &t) == napi_ok && t == napi_object) {
		if (sn_prop_string(env, tls, "ca", &ca) != 0 ||
		    sn_prop_string(env, tls, "cert", &cert) != 0 ||
		    sn_prop_string(env, tls, "key", &key) != 0 ||
		    sn_prop_string(env, tls, "serverName", &server_name) != 0)
			goto done;
	}
	if ((sw = calloc(1, sizeof(*sw))) == NULL) {
		napi_throw_error(env, NULL, "libsaga addon: out of memory");
		goto done;
	}
	pthread_mutex_init(&sw->mu, NULL);
	pthread_mutex_init(&sw->log_mu, NULL);
	pthread_condattr_init(&sw->cv_attr);
	pthread_condattr_setclock(&sw->cv_attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sw->cv, &sw->cv_attr);
	sw->env = env;
	if ((rv = saga_worker_new(urls, participant, &sw->w)) != SAGA_OK) {
		char err[512] = "";
		saga_url_list_check(urls, err, sizeof(err));
		throw_saga(env, rv, err[0] != '\0' ? err : "cannot make the worker");
		goto fail;
	}
	if ((capacity > 0 && (rv = saga_worker_set_capacity(sw->w, capacity)) != SAGA_OK) ||
	    (max_message > 0 &&
		(rv = saga_worker_set_max_message(sw->w, max_message)) != SAGA_OK) ||
	    (instance != NULL && (rv = saga_worker_set_instance(sw->w, instance)) != SAGA_OK) ||
	    (credential != NULL &&
		(rv = saga_worker_set_credential(sw->w, credential)) != SAGA_OK) ||
	    (ca != NULL &&
		(rv = saga_worker_set_tls(sw->w, ca, cert, key, server_name)) != SAGA_OK)) {
		throw_saga(env, rv, saga_worker_errmsg(sw->w));
		goto fail;
	}
	if (napi_wrap(env, self, sw, worker_finalize, NULL, NULL) != napi_ok) {
		sn_throw_napi(env, "napi_wrap");
		goto fail;
	}
	sw = NULL;
	goto done;
fail:
	if (sw != NULL) {
		saga_worker_free(sw->w);
		sw_free(sw);
	}
	self = NULL;
done:
	free(urls);
	free(participant);
	free(instance);
	free(credential);
	free(ca);
	free(cert);
	free(key);
	free(server_name);
	return self;
}

/* handle(kind: "action" | "compensation", rpc) */
static napi_value
m_handle(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], self;
	char *kind = NULL, *rpc = NULL;
	sn_worker *sw;
	int rv;

	SN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	if ((sw = unwrap(env, self)) == NULL)
		return NULL;
	if (argc < 2 || sn_get_string(env, argv[0], "kind", 0, &kind) != 0 ||
	    sn_get_string(env, argv[1], "rpcName", 0, &rpc) != 0)
		goto done;
	if (sw->ran || sw->w == NULL) {
		throw_saga(env, SAGA_ESTATE, "handlers are added before run()");
		goto done;
	}
	rv = strcmp(kind, "compensation") == 0
	    ? saga_worker_on_compensation(sw->w, rpc, on_step, sw)
	    : saga_worker_on_action(sw->w, rpc, on_step, sw);
	if (rv != SAGA_OK)
		throw_saga(env, rv, saga_worker_errmsg(sw->w));
done:
	free(kind);
	free(rpc);
	return NULL;
}

/* run(onStep(step, job), onLog(level, line) | undefined, logLevel 0..3)
 * -> Promise: serves until stop(). */
static napi_value
m_run(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3], self, promise, name;
	napi_valuetype lt = napi_undefined;
	napi_valuetype t;
	sn_worker *sw;

	SN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	if ((sw = unwrap(env, self)) == NULL)
		return NULL;
	if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
		napi_throw_type_error(env, NULL, "run needs the step dispatcher");
		return NULL;
	}
	if (sw->ran || sw->w == NULL)
		return throw_saga(env, SAGA_ESTATE, "a Worker runs once");
	if (argc >= 2 && napi_typeof(env, argv[1], &lt) == napi_ok && lt == napi_function) {
		int32_t level = SAGA_LOG_INFO;
		if (argc >= 3)
			napi_get_value_int32(env, argv[2], &level);
		SN_CALL(env, napi_create_string_utf8(env, "libsaga.log", NAPI_AUTO_LENGTH, &name));
		SN_CALL(env,
		    napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, sw,
			call_js_log, &sw->log_tsfn));
		/* Log lines alone do not keep the process alive. */
		napi_unref_threadsafe_function(env, sw->log_tsfn);
		sw->log_level = level;
		sw->log_open = 1;
		saga_worker_set_log(sw->w, log_cb, sw);
	}
	SN_CALL(env, napi_create_string_utf8(env, "libsaga.worker", NAPI_AUTO_LENGTH, &name));
	SN_CALL(env,
	    napi_create_threadsafe_function(
		env, argv[0], NULL, name, 0, 1, NULL, NULL, sw, call_js, &sw->tsfn));
	if (napi_create_promise(env, &sw->run_deferred, &promise) != napi_ok ||
	    napi_create_reference(env, self, 1, &sw->self) != napi_ok) {
		napi_release_threadsafe_function(sw->tsfn, napi_tsfn_abort);
		sn_throw_napi(env, "starting the worker");
		return NULL;
	}
	sw->ran = 1;
	sw->running = 1;
	if (pthread_create(&sw->thread, NULL, run_main, sw) != 0) {
		sw->running = 0;
		napi_release_threadsafe_function(sw->tsfn, napi_tsfn_abort);
		napi_delete_reference(env, sw->self);
		sw->self = NULL;
		return throw_saga(env, SAGA_ENOMEM, "cannot start the worker's thread");
	}
	if (napi_add_env_cleanup_hook(env, env_cleanup, sw) == napi_ok)
		sw->cleanup_hook = 1;
	return promise;
}

/* stop(): run()'s promise settles once in-flight steps are drained. */
static napi_value
m_stop(napi_env env, napi_callback_info info)
{
	napi_value self;
	sn_worker *sw;
	SN_CALL(env, napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	if ((sw = unwrap(env, self)) == NULL)
		return NULL;
	if (sw->running)
		saga_worker_stop(sw->w);
	return NULL;
}

/* The job behind an external, or NULL with a TypeError. */
static sn_job *
job_arg(napi_env env, napi_value v)
{
	sn_job *j = NULL;
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
	    napi_get_value_external(env, v, (void **)&j) != napi_ok || j == NULL) {
		napi_throw_type_error(env, NULL, "not a step handle");
		return NULL;
	}
	return j;
}

/* settle(job, outcome 0|1|2, result Buffer | error string) -> boolean:
 * false if the job was already settled or given up on. */
static napi_value
m_settle(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3], out;
	int32_t outcome = -1;
	uint8_t *bytes = NULL;
	size_t len = 0;
	char *error = NULL;
	sn_job *j;

	SN_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 3 || (j = job_arg(env, argv[0])) == NULL)
		return NULL;
	if (napi_get_value_int32(env, argv[1], &outcome) != napi_ok || outcome < OUT_SUCCESS ||
	    outcome > OUT_FAIL) {
		napi_throw_range_error(env, NULL, "outcome must be 0, 1 or 2");
		return NULL;
	}
	if (outcome == OUT_SUCCESS ? sn_get_bytes(env, argv[2], "result", 1, &bytes, &len) != 0
				   : sn_get_string(env, argv[2], "error", 0, &error) != 0)
		return NULL;
	sn_worker *sw = j->sw;
	pthread_mutex_lock(&sw->mu);
	bool accepted = j->state == JOB_IN_JS;
	if (accepted) {
		j->outcome = (job_outcome)outcome;
		j->result = bytes;
		j->len = len;
		j->error = error;
		j->state = JOB_SETTLED;
		bytes = NULL;
		error = NULL;
		pthread_cond_signal(&j->cv);
	}
	pthread_mutex_unlock(&sw->mu);
	free(bytes);
	free(error);
	SN_CALL(env, napi_get_boolean(env, accepted, &out));
	return out;
}

/* heartbeat(job) -> boolean: false once settled or given up on. Moves the
 * job's give-up deadline too. */
static napi_value
m_heartbeat(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], out;
	sn_job *j;
	int rv = SAGA_ESTATE;

	SN_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 1 || (j = job_arg(env, argv[0])) == NULL)
		return NULL;
	sn_worker *sw = j->sw;
	pthread_mutex_lock(&sw->mu);
	if (j->state == JOB_IN_JS) {
		/* The libsaga thread sleeps until the state changes: the reply is
		 * ours to use. */
		rv = saga_reply_heartbeat(j->reply);
		j->deadline_ms = mono_ms() + j->step->timeout_ms + GIVE_UP_GRACE_MS;
	}
	pthread_mutex_unlock(&sw->mu);
	if (rv != SAGA_OK && rv != SAGA_ESTATE)
		return throw_saga(env, rv, "the heartbeat could not be sent");
	SN_CALL(env, napi_get_boolean(env, rv == SAGA_OK, &out));
	return out;
}

napi_status
sn_worker_init(napi_env env, napi_value exports)
{
	napi_property_descriptor m[] = {
		{ "handle", NULL, m_handle, NULL, NULL, NULL, napi_default, NULL },
		{ "run", NULL, m_run, NULL, NULL, NULL, napi_default, NULL },
		{ "stop", NULL, m_stop, NULL, NULL, NULL, napi_default, NULL },
	};
	napi_property_descriptor f[] = {
		{ "settle", NULL, m_settle, NULL, NULL, NULL, napi_default, NULL },
		{ "heartbeat", NULL, m_heartbeat, NULL, NULL, NULL, napi_default, NULL },
	};
	napi_value cls;
	napi_status st = napi_define_class(env, "NativeWorker", NAPI_AUTO_LENGTH, worker_ctor, NULL,
	    sizeof(m) / sizeof(m[0]), m, &cls);
	if (st != napi_ok ||
	    (st = napi_set_named_property(env, exports, "NativeWorker", cls)) != napi_ok)
		return st;
	return napi_define_properties(env, exports, sizeof(f) / sizeof(f[0]), f);
}
