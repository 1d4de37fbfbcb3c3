/*
 * client.c: the client half of libsaga for JavaScript. Each call runs on
 * libuv's thread pool (napi_async_work) and settles a Promise, so the event
 * loop never waits on sagad.
 *
 * A saga_client may be used by one thread at a time, and calls run in
 * parallel on the pool: a JavaScript Client therefore keeps a small pool of
 * libsaga handles, takes an idle one for each call (making one if none is
 * idle) and puts it back after. Handles connect lazily, so making one is
 * cheap; the pool never holds more handles than calls ever ran at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <saga.h>

#include "saga_node.h"

typedef struct sn_client {
	pthread_mutex_t mu;
	char *urls;
	int32_t timeout_ms; /* 0 = libsaga's default */
	char *credential;
	char *ca_file, *cert_file, *key_file, *server_name; /* ca_file NULL = no TLS */
	saga_client **idle;                                 /* handles not in a call */
	size_t n_idle, cap_idle;
	uint32_t busy; /* calls in flight */
	int closed;    /* close() was called: handles are freed when their call ends */
} sn_client;

typedef enum {
	OP_REGISTER,
	OP_START,
	OP_RUN,
	OP_GET,
	OP_LIST,
	OP_WAIT,
	OP_CANCEL,
	OP_RETRY,
	OP_SKIP,
	OP_TERMINATE,
	OP_FORCE_OK,
	OP_FORCE_COMP,
	OP_RERUN,
	OP_BATCH
} call_op;

typedef struct sn_call {
	sn_client *cl;
	napi_ref self; /* keeps the Client alive while the call runs */
	call_op op;
	napi_deferred deferred;
	napi_async_work work;
	/* arguments */
	char *a, *b, *c; /* op-dependent strings (saga id, step, reason, definition) */
	char *idem, *bkey, *traceparent;
	uint8_t *bytes;
	size_t len;
	char *json; /* start/run: the input as JSON text, encoded on the pool */
	uint32_t version, deadline_ms;
	int32_t timeout_ms;
	int flag; /* register: force; get: reveal */
	saga_list_filter filter;
	saga_state *states;
	char *page_token;
	/* results */
	int rv;
	char errmsg[1024];
	char *saga_id;
	int existing;
	saga_state state;
	saga_info *info;
	saga_list *list;
	saga_register_result *reg;
	saga_batch_opts bopts;
	saga_batch_result *batch;
} sn_call;

static void
client_free(sn_client *cl)
{
	if (cl == NULL)
		return;
	for (size_t i = 0; i < cl->n_idle; i++)
		saga_client_free(cl->idle[i]);
	free(cl->idle);
	free(cl->urls);
	free(cl->credential);
	free(cl->ca_file);
	free(cl->cert_file);
	free(cl->key_file);
	free(cl->server_name);
	pthread_mutex_destroy(&cl->mu);
	free(cl);
}

/* A handle for one call, or an error (in call->rv and errmsg). Runs on the
 * thread pool. */
static saga_client *
acquire(sn_call *call)
{
	sn_client *cl = call->cl;
	saga_client *c = NULL;
	int rv;

	pthread_mutex_lock(&cl->mu);
	if (cl->n_idle > 0)
		c = cl->idle[--cl->n_idle];
	pthread_mutex_unlock(&cl->mu);
	if (c != NULL)
		return c;
	if ((rv = saga_client_new(cl->urls, &c)) != SAGA_OK) {
		call->rv = rv;
		strncpy(call->errmsg, "cannot make a libsaga client", sizeof(call->errmsg) - 1);
		return NULL;
	}
	if ((cl->timeout_ms > 0 && (rv = saga_client_set_timeout(c, cl->timeout_ms)) != SAGA_OK) ||
	    (cl->credential != NULL &&
		(rv = saga_client_set_credential(c, cl->credential)) != SAGA_OK) ||
	    (cl->ca_file != NULL &&
		(rv = saga_client_set_tls(
		     c, cl->ca_file, cl->cert_file, cl->key_file, cl->server_name)) != SAGA_OK)) {
		call->rv = rv;
		strncpy(call->errmsg, saga_client_errmsg(c), sizeof(call->errmsg) - 1);
		saga_client_free(c);
		return NULL;
	}
	return c;
}

static void
release(sn_client *cl, saga_client *c)
{
	pthread_mutex_lock(&cl->mu);
	if (!cl->closed && cl->n_idle == cl->cap_idle) {
		size_t cap = cl->cap_idle ? cl->cap_idle * 2 : 4;
		saga_client **p = realloc(cl->idle, cap * sizeof(*p));
		if (p != NULL) {
			cl->idle = p;
			cl->cap_idle = cap;
		}
	}
	if (!cl->closed && cl->n_idle < cl->cap_idle) {
		cl->idle[cl->n_idle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&cl->mu);
	saga_client_free(c);
}

static void
execute(napi_env env, void *data)
{
	sn_call *call = data;
	saga_client *c = acquire(call);
	if (c == NULL)
		return;
	saga_start_opts so = SAGA_START_OPTS_INIT;
	so.version = call->version;
	so.idempotency_key = call->idem;
	so.business_key = call->bkey;
	so.deadline_ms = call->deadline_ms;
	so.traceparent = call->traceparent;

	if ((call->op == OP_START || call->op == OP_RUN) && call->json != NULL) {
		/* libsaga's encoder (sagactl's too): the definition's types. */
		free(call->bytes);
		call->bytes = NULL;
		call->rv = saga_client_encode_json(c, call->a, call->version, call->json,
		    strlen(call->json), &call->bytes, &call->len);
		if (call->rv != SAGA_OK) {
			strncpy(call->errmsg, saga_client_errmsg(c), sizeof(call->errmsg) - 1);
			release(call->cl, c);
			return;
		}
	}
	switch (call->op) {
	case OP_REGISTER:
		call->rv = call->flag
		    ? saga_client_register_force(c, call->bytes, call->len, &call->reg)
		    : saga_client_register(c, call->bytes, call->len, &call->reg);
		break;
	case OP_START:
		call->rv = saga_client_start(
		    c, call->a, call->bytes, call->len, &so, &call->saga_id, &call->existing);
		break;
	case OP_RUN:
		call->rv = saga_client_run(c, call->a, call->bytes, call->len, &so,
		    call->timeout_ms, &call->saga_id, &call->state, &call->existing);
		break;
	case OP_GET:
		call->rv = call->flag ? saga_client_get_revealed(c, call->a, &call->info)
				      : saga_client_get(c, call->a, &call->info);
		break;
	case OP_LIST:
		call->rv = saga_client_list(c, &call->filter, &call->list);
		break;
	case OP_WAIT:
		call->rv = saga_client_wait(c, call->a, call->timeout_ms, &call->info);
		break;
	case OP_CANCEL:
		call->rv = saga_client_cancel(c, call->a, call->c, &call->state);
		break;
	case OP_RETRY:
		call->rv = saga_client_retry_step(c, call->a, call->b, call->c, &call->state);
		break;
	case OP_SKIP:
		call->rv = saga_client_skip_step(c, call->a, call->b, call->c, &call->state);
		break;
	case OP_TERMINATE:
		call->rv = saga_client_terminate(c, call->a, call->c, &call->state);
		break;
	case OP_FORCE_OK:
		call->rv = saga_client_force_succeeded(
		    c, call->a, call->b, call->bytes, call->len, call->c, &call->state);
		break;
	case OP_FORCE_COMP:
		call->rv =
		    saga_client_force_compensated(c, call->a, call->b, call->c, &call->state);
		break;
	case OP_RERUN:
		call->rv = saga_client_rerun(c, call->a, call->idem, call->flag, &call->saga_id);
		break;
	case OP_BATCH:
		call->bopts.struct_size = sizeof(call->bopts);
		call->bopts.step = call->b;
		call->bopts.reason = call->c;
		call->bopts.idempotency_key = call->idem;
		call->rv = saga_client_batch(c, &call->filter, &call->bopts, &call->batch);
		break;
	default:
		call->rv = SAGA_EINTERNAL;
	}
	if (call->rv != SAGA_OK)
		strncpy(call->errmsg, saga_client_errmsg(c), sizeof(call->errmsg) - 1);
	release(call->cl, c);
}

static napi_status
state_prop(napi_env env, napi_value obj, const char *name, saga_state s)
{
	return sn_set_string(env, obj, name, saga_state_name(s));
}

static napi_status
string_array(napi_env env, napi_value obj, const char *name, char **items, size_t n)
{
	napi_value arr, v;
	napi_status st;
	if ((st = napi_create_array_with_length(env, n, &arr)) != napi_ok)
		return st;
	for (size_t i = 0; i < n; i++) {
		if ((st = napi_create_string_utf8(env, items[i], NAPI_AUTO_LENGTH, &v)) !=
			napi_ok ||
		    (st = napi_set_element(env, arr, (uint32_t)i, v)) != napi_ok)
			return st;
	}
	return napi_set_named_property(env, obj, name, arr);
}

/* saga_info as a plain object (see index.d.ts, SagaInfo). */
static napi_value
info_value(napi_env env, const saga_info *in)
{
	napi_value o, steps, events, v;
	if (napi_create_object(env, &o) != napi_ok)
		return NULL;
	if (sn_set_string(env, o, "sagaId", in->saga_id) != napi_ok ||
	    sn_set_string(env, o, "definition", in->definition) != napi_ok ||
	    sn_set_u32(env, o, "version", in->version) != napi_ok ||
	    state_prop(env, o, "state", in->state) != napi_ok ||
	    sn_set_string(env, o, "idempotencyKey", in->idempotency_key) != napi_ok ||
	    sn_set_string(env, o, "businessKey", in->business_key) != napi_ok ||
	    sn_set_i64(env, o, "createdUs", in->created_us) != napi_ok ||
	    sn_set_i64(env, o, "updatedUs", in->updated_us) != napi_ok ||
	    sn_set_string(env, o, "error", in->error) != napi_ok ||
	    sn_set_i64(env, o, "deadlineUs", in->deadline_us) != napi_ok ||
	    sn_set_buffer(env, o, "input", in->input, in->input_len) != napi_ok ||
	    sn_set_string(env, o, "traceparent", in->traceparent) != napi_ok ||
	    string_array(env, o, "redacted", in->redacted, in->n_redacted) != napi_ok ||
	    sn_set_string(env, o, "rerunOf", in->rerun_of ? in->rerun_of : "") != napi_ok ||
	    string_array(env, o, "rerunAs", in->rerun_as, in->n_rerun_as) != napi_ok)
		return NULL;
	if (napi_create_array_with_length(env, in->n_steps, &steps) != napi_ok)
		return NULL;
	for (size_t i = 0; i < in->n_steps; i++) {
		const saga_step_info *s = &in->steps[i];
		if (napi_create_object(env, &v) != napi_ok ||
		    sn_set_string(env, v, "name", s->name) != napi_ok ||
		    sn_set_string(env, v, "participant", s->participant) != napi_ok ||
		    sn_set_string(env, v, "compensation", s->compensation) != napi_ok ||
		    string_array(env, v, "dependsOn", s->depends_on, s->n_depends_on) != napi_ok ||
		    sn_set_string(env, v, "state", saga_step_state_name(s->state)) != napi_ok ||
		    sn_set_u32(env, v, "attempts", s->attempts) != napi_ok ||
		    sn_set_u32(env, v, "compAttempts", s->comp_attempts) != napi_ok ||
		    sn_set_i64(env, v, "startedUs", s->started_us) != napi_ok ||
		    sn_set_i64(env, v, "finishedUs", s->finished_us) != napi_ok ||
		    sn_set_i64(env, v, "compStartedUs", s->comp_started_us) != napi_ok ||
		    sn_set_i64(env, v, "compFinishedUs", s->comp_finished_us) != napi_ok ||
		    sn_set_i64(env, v, "nextAttemptUs", s->next_attempt_us) != napi_ok ||
		    sn_set_u32(env, v, "completionSeq", s->completion_seq) != napi_ok ||
		    sn_set_string(env, v, "lastError", s->last_error) != napi_ok ||
		    sn_set_buffer(env, v, "result", s->result, s->result_len) != napi_ok ||
		    sn_set_bool(env, v, "queued", s->queued) != napi_ok ||
		    napi_set_element(env, steps, (uint32_t)i, v) != napi_ok)
			return NULL;
	}
	if (napi_set_named_property(env, o, "steps", steps) != napi_ok)
		return NULL;
	if (napi_create_array_with_length(env, in->n_events, &events) != napi_ok)
		return NULL;
	for (size_t i = 0; i < in->n_events; i++) {
		const saga_event *e = &in->events[i];
		if (napi_create_object(env, &v) != napi_ok ||
		    sn_set_i64(env, v, "atUs", e->at_us) != napi_ok ||
		    sn_set_string(env, v, "type", e->type) != napi_ok ||
		    sn_set_string(env, v, "step", e->step) != napi_ok ||
		    sn_set_u32(env, v, "attempt", e->attempt) != napi_ok ||
		    sn_set_string(env, v, "detail", e->detail) != napi_ok ||
		    napi_set_element(env, events, (uint32_t)i, v) != napi_ok)
			return NULL;
	}
	if (napi_set_named_property(env, o, "events", events) != napi_ok)
		return NULL;
	return o;
}

/* saga_batch_result as a plain object (see index.d.ts, BatchResult). */
static napi_value
batch_value(napi_env env, const saga_batch_result *r)
{
	napi_value o, arr, v;
	if (napi_create_object(env, &o) != napi_ok ||
	    napi_create_array_with_length(env, r->count, &arr) != napi_ok)
		return NULL;
	for (size_t i = 0; i < r->count; i++) {
		const saga_batch_item *x = &r->items[i];
		if (napi_create_object(env, &v) != napi_ok ||
		    sn_set_string(env, v, "sagaId", x->saga_id) != napi_ok ||
		    sn_set_bool(env, v, "done", x->done) != napi_ok ||
		    sn_set_u32(env, v, "code", (uint32_t)x->code) != napi_ok ||
		    sn_set_string(env, v, "why", x->why) != napi_ok ||
		    (x->done && state_prop(env, v, "state", x->state) != napi_ok) ||
		    sn_set_string(env, v, "newSagaId", x->new_saga_id) != napi_ok ||
		    napi_set_element(env, arr, (uint32_t)i, v) != napi_ok)
			return NULL;
	}
	if (napi_set_named_property(env, o, "items", arr) != napi_ok ||
	    sn_set_string(env, o, "nextPageToken", r->next_page_token) != napi_ok ||
	    sn_set_u32(env, o, "done", r->done) != napi_ok ||
	    sn_set_u32(env, o, "skipped", r->skipped) != napi_ok ||
	    sn_set_i64(env, o, "applicable", (int64_t)r->applicable) != napi_ok)
		return NULL;
	return o;
}

static napi_value
list_value(napi_env env, const saga_list *l)
{
	napi_value o, arr, v;
	if (napi_create_object(env, &o) != napi_ok ||
	    napi_create_array_with_length(env, l->count, &arr) != napi_ok)
		return NULL;
	for (size_t i = 0; i < l->count; i++) {
		const saga_summary *s = &l->sagas[i];
		if (napi_create_object(env, &v) != napi_ok ||
		    sn_set_string(env, v, "sagaId", s->saga_id) != napi_ok ||
		    sn_set_string(env, v, "definition", s->definition) != napi_ok ||
		    sn_set_u32(env, v, "version", s->version) != napi_ok ||
		    state_prop(env, v, "state", s->state) != napi_ok ||
		    sn_set_string(env, v, "businessKey", s->business_key) != napi_ok ||
		    sn_set_i64(env, v, "createdUs", s->created_us) != napi_ok ||
		    sn_set_i64(env, v, "updatedUs", s->updated_us) != napi_ok ||
		    sn_set_string(env, v, "error", s->error) != napi_ok ||
		    sn_set_u32(env, v, "stepsTotal", s->steps_total) != napi_ok ||
		    sn_set_u32(env, v, "stepsDone", s->steps_done) != napi_ok ||
		    sn_set_string(env, v, "rerunOf", s->rerun_of ? s->rerun_of : "") != napi_ok ||
		    napi_set_element(env, arr, (uint32_t)i, v) != napi_ok)
			return NULL;
	}
	if (napi_set_named_property(env, o, "sagas", arr) != napi_ok ||
	    sn_set_string(env, o, "nextPageToken", l->next_page_token) != napi_ok)
		return NULL;
	if (l->has_counts) {
		if (napi_create_object(env, &v) != napi_ok)
			return NULL;
		for (int s = SAGA_STATE_RUNNING; s <= SAGA_STATE_TERMINATED; s++) {
			napi_value n;
			if (napi_create_double(env, (double)l->state_counts[s], &n) != napi_ok ||
			    napi_set_named_property(env, v, saga_state_name((saga_state)s), n) !=
				napi_ok)
				return NULL;
		}
		if (napi_set_named_property(env, o, "stateCounts", v) != napi_ok)
			return NULL;
	}
	return o;
}

static napi_value
register_value(napi_env env, const saga_register_result *r)
{
	napi_value arr, v;
	if (napi_create_array_with_length(env, r->count, &arr) != napi_ok)
		return NULL;
	for (size_t i = 0; i < r->count; i++) {
		if (napi_create_object(env, &v) != napi_ok ||
		    sn_set_string(env, v, "name", r->defs[i].name) != napi_ok ||
		    sn_set_u32(env, v, "version", r->defs[i].version) != napi_ok ||
		    sn_set_bool(env, v, "unchanged", r->defs[i].unchanged) != napi_ok ||
		    sn_set_u32(env, v, "steps", r->defs[i].steps) != napi_ok ||
		    napi_set_element(env, arr, (uint32_t)i, v) != napi_ok)
			return NULL;
	}
	return arr;
}

static void
call_free(napi_env env, sn_call *call)
{
	free(call->a);
	free(call->b);
	free(call->c);
	free(call->idem);
	free(call->bkey);
	free(call->traceparent);
	free(call->bytes);
	free(call->json);
	free(call->states);
	free(call->page_token);
	saga_string_free(call->saga_id);
	saga_info_free(call->info);
	saga_list_free(call->list);
	saga_register_result_free(call->reg);
	saga_batch_result_free(call->batch);
	if (call->self != NULL)
		napi_delete_reference(env, call->self);
	free(call);
}

static void
complete(napi_env env, napi_status status, void *data)
{
	sn_call *call = data;
	napi_value v = NULL;
	int ok = call->rv == SAGA_OK;

	pthread_mutex_lock(&call->cl->mu);
	call->cl->busy--;
	pthread_mutex_unlock(&call->cl->mu);

	if (status != napi_ok) {
		call->rv = SAGA_EINTERNAL;
		strncpy(call->errmsg, "the call was cancelled", sizeof(call->errmsg) - 1);
		ok = 0;
	}
	if (ok) {
		switch (call->op) {
		case OP_REGISTER:
			v = register_value(env, call->reg);
			break;
		case OP_START:
		case OP_RUN:
			if (napi_create_object(env, &v) != napi_ok ||
			    sn_set_string(env, v, "sagaId", call->saga_id) != napi_ok ||
			    sn_set_bool(env, v, "existing", call->existing) != napi_ok ||
			    (call->op == OP_RUN &&
				state_prop(env, v, "state", call->state) != napi_ok))
				v = NULL;
			break;
		case OP_GET:
		case OP_WAIT:
			v = info_value(env, call->info);
			break;
		case OP_LIST:
			v = list_value(env, call->list);
			break;
		case OP_RERUN:
			if (napi_create_object(env, &v) != napi_ok ||
			    sn_set_string(env, v, "sagaId", call->saga_id) != napi_ok)
				v = NULL;
			break;
		case OP_BATCH:
			v = batch_value(env, call->batch);
			break;
		default: /* cancel, retry, skip: the saga's state after */
			if (napi_create_string_utf8(
				env, saga_state_name(call->state), NAPI_AUTO_LENGTH, &v) != napi_ok)
				v = NULL;
		}
		if (v == NULL) {
			napi_value e;
			if (napi_get_and_clear_last_exception(env, &e) != napi_ok)
				e = NULL;
			call->rv = SAGA_ENOMEM;
			strncpy(call->errmsg, "cannot build the result", sizeof(call->errmsg) - 1);
		}
	}
	if (call->rv == SAGA_OK) {
		napi_resolve_deferred(env, call->deferred, v);
	} else {
		napi_value err = sn_make_error(env, call->rv, call->errmsg);
		/* What a timed-out run or wait still tells: the saga and its state. */
		if (err != NULL && call->saga_id != NULL)
			sn_set_string(env, err, "sagaId", call->saga_id);
		if (err != NULL && call->op == OP_RUN && call->rv == SAGA_ETIMEDOUT)
			state_prop(env, err, "state", call->state);
		if (err != NULL && call->info != NULL) {
			napi_value iv = info_value(env, call->info);
			if (iv != NULL)
				napi_set_named_property(env, err, "info", iv);
		}
		napi_reject_deferred(env, call->deferred, err);
	}
	napi_delete_async_work(env, call->work);
	call_free(env, call);
}

/* Unwraps `this`, checks it is open and starts a call record. */
static sn_call *
call_new(napi_env env, napi_value self, call_op op)
{
	sn_client *cl = NULL;
	sn_call *call;
	if (napi_unwrap(env, self, (void **)&cl) != napi_ok || cl == NULL) {
		napi_throw_type_error(env, NULL, "not a libsaga Client");
		return NULL;
	}
	if (cl->closed) {
		napi_throw(env, sn_make_error(env, SAGA_ECLOSED, "the client is closed"));
		return NULL;
	}
	if ((call = calloc(1, sizeof(*call))) == NULL) {
		napi_throw_error(env, NULL, "libsaga addon: out of memory");
		return NULL;
	}
	call->cl = cl;
	call->op = op;
	call->timeout_ms = -1;
	return call;
}

/* Queues the call; returns its Promise (or NULL with an exception). */
static napi_value
call_queue(napi_env env, napi_value self, sn_call *call)
{
	napi_value promise, name;
	if (napi_create_reference(env, self, 1, &call->self) != napi_ok ||
	    napi_create_promise(env, &call->deferred, &promise) != napi_ok ||
	    napi_create_string_utf8(env, "libsaga.call", NAPI_AUTO_LENGTH, &name) != napi_ok ||
	    napi_create_async_work(env, NULL, name, execute, complete, call, &call->work) !=
		napi_ok) {
		sn_throw_napi(env, "queueing a call");
		call_free(env, call);
		return NULL;
	}
	if (napi_queue_async_work(env, call->work) != napi_ok) {
		sn_throw_napi(env, "napi_queue_async_work");
		napi_delete_async_work(env, call->work);
		call_free(env, call);
		return NULL;
	}
	pthread_mutex_lock(&call->cl->mu);
	call->cl->busy++;
	pthread_mutex_unlock(&call->cl->mu);
	return promise;
}

#define MAX_ARGS 4

/* The method's this and arguments (missing ones are undefined). */
static int
args(napi_env env, napi_callback_info info, napi_value *self, napi_value *argv)
{
	size_t argc = MAX_ARGS;
	napi_value undef;
	if (napi_get_cb_info(env, info, &argc, argv, self, NULL) != napi_ok ||
	    napi_get_undefined(env, &undef) != napi_ok) {
		sn_throw_napi(env, "napi_get_cb_info");
		return -1;
	}
	for (size_t i = argc; i < MAX_ARGS; i++)
		argv[i] = undef;
	return 0;
}

/* Reads start options {idempotencyKey, businessKey, traceparent, version,
 * deadlineMs, timeoutMs} into the call. */
static int
start_opts(napi_env env, napi_value o, sn_call *call)
{
	return sn_prop_string(env, o, "idempotencyKey", &call->idem) != 0 ||
		sn_prop_string(env, o, "businessKey", &call->bkey) != 0 ||
		sn_prop_string(env, o, "traceparent", &call->traceparent) != 0 ||
		sn_prop_u32(env, o, "version", &call->version) != 0 ||
		sn_prop_u32(env, o, "deadlineMs", &call->deadline_ms) != 0 ||
		sn_prop_i32(env, o, "timeoutMs", &call->timeout_ms) != 0
	    ? -1
	    : 0;
}

/* register(descriptorSet: Buffer, force: boolean) */
static napi_value
m_register(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS];
	bool force = false;
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, OP_REGISTER);
	if (call == NULL)
		return NULL;
	if (sn_get_bytes(env, argv[0], "descriptorSet", 0, &call->bytes, &call->len) != 0 ||
	    napi_get_value_bool(env, argv[1], &force) == napi_invalid_arg) {
		call_free(env, call);
		return NULL;
	}
	call->flag = force;
	return call_queue(env, self, call);
}

/* start(definition, input, opts) and run(definition, input, opts) */
static napi_value
start_or_run(napi_env env, napi_callback_info info, call_op op)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, op);
	if (call == NULL)
		return NULL;
	if (sn_get_string(env, argv[0], "definition", 0, &call->a) != 0 ||
	    sn_get_bytes(env, argv[1], "input", 1, &call->bytes, &call->len) != 0 ||
	    start_opts(env, argv[2], call) != 0 ||
	    sn_prop_string(env, argv[2], "json", &call->json)) {
		call_free(env, call);
		return NULL;
	}
	return call_queue(env, self, call);
}

static napi_value
m_start(napi_env env, napi_callback_info info)
{
	return start_or_run(env, info, OP_START);
}

static napi_value
m_run(napi_env env, napi_callback_info info)
{
	return start_or_run(env, info, OP_RUN);
}

/* get(sagaId, reveal) */
static napi_value
m_get(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS];
	bool reveal = false;
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, OP_GET);
	if (call == NULL)
		return NULL;
	if (sn_get_string(env, argv[0], "sagaId", 0, &call->a) != 0) {
		call_free(env, call);
		return NULL;
	}
	napi_get_value_bool(env, argv[1], &reveal);
	call->flag = reveal;
	return call_queue(env, self, call);
}

/* wait(sagaId, {timeoutMs}) */
static napi_value
m_wait(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, OP_WAIT);
	if (call == NULL)
		return NULL;
	if (sn_get_string(env, argv[0], "sagaId", 0, &call->a) != 0 ||
	    sn_prop_i32(env, argv[1], "timeoutMs", &call->timeout_ms) != 0) {
		call_free(env, call);
		return NULL;
	}
	return call_queue(env, self, call);
}

/* A list filter from obj {states, definition, businessKey, createdAfterUs,
 * createdBeforeUs, limit, pageToken, version, counts} into call->filter
 * (its strings owned by call). Returns 0, or -1 with an exception. */
static int
parse_filter(napi_env env, napi_value obj, sn_call *call)
{
	napi_value states;
	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	int counts = 0;
	if (sn_prop_string(env, obj, "definition", &call->a) != 0 ||
	    sn_prop_string(env, obj, "businessKey", &call->bkey) != 0 ||
	    sn_prop_string(env, obj, "pageToken", &call->page_token) != 0 ||
	    sn_prop_u32(env, obj, "limit", &f.limit) != 0 ||
	    sn_prop_u32(env, obj, "version", &f.version) != 0 ||
	    sn_prop_bool(env, obj, "counts", &counts) != 0)
		return -1;
	napi_valuetype t;
	if (napi_typeof(env, obj, &t) == napi_ok && t == napi_object) {
		const char *times[] = { "createdAfterUs", "createdBeforeUs" };
		for (int i = 0; i < 2; i++) {
			napi_value v;
			double d = 0;
			if (napi_get_named_property(env, obj, times[i], &v) == napi_ok &&
			    napi_get_value_double(env, v, &d) == napi_ok) {
				if (i == 0)
					f.created_after_us = (int64_t)d;
				else
					f.created_before_us = (int64_t)d;
			}
		}
		bool is_array = false;
		if (napi_get_named_property(env, obj, "states", &states) == napi_ok &&
		    napi_is_array(env, states, &is_array) == napi_ok && is_array) {
			uint32_t n = 0;
			napi_get_array_length(env, states, &n);
			if (n > 0 && (call->states = calloc(n, sizeof(*call->states))) == NULL) {
				napi_throw_error(env, NULL, "libsaga addon: out of memory");
				return -1;
			}
			for (uint32_t i = 0; i < n; i++) {
				napi_value e;
				char *name = NULL;
				if (napi_get_element(env, states, i, &e) != napi_ok ||
				    sn_get_string(env, e, "states[i]", 0, &name) != 0)
					return -1;
				call->states[i] = saga_state_parse(name);
				free(name);
				if (call->states[i] == SAGA_STATE_UNKNOWN) {
					napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE",
					    "states: each must be running, compensating, "
					    "completed, compensated, failed or terminated");
					return -1;
				}
			}
			f.states = call->states;
			f.n_states = n;
		}
	}
	f.definition = call->a;
	f.business_key = call->bkey;
	f.page_token = call->page_token;
	f.counts = counts;
	call->filter = f;
	return 0;
}

/* list(filter) */
static napi_value
m_list(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, OP_LIST);
	if (call == NULL)
		return NULL;
	if (parse_filter(env, argv[0], call) != 0) {
		call_free(env, call);
		return NULL;
	}
	return call_queue(env, self, call);
}

/* batch(filter, action, {step, reason, dryRun, latestVersion, idempotencyKey}) */
static napi_value
m_batch(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, OP_BATCH);
	if (call == NULL)
		return NULL;
	char *action = NULL;
	int dry = 0, latest = 0;
	if (parse_filter(env, argv[0], call) != 0 ||
	    sn_get_string(env, argv[1], "action", 0, &action) != 0 ||
	    sn_prop_string(env, argv[2], "step", &call->b) != 0 ||
	    sn_prop_string(env, argv[2], "reason", &call->c) != 0 ||
	    sn_prop_string(env, argv[2], "idempotencyKey", &call->idem) != 0 ||
	    sn_prop_bool(env, argv[2], "dryRun", &dry) != 0 ||
	    sn_prop_bool(env, argv[2], "latestVersion", &latest) != 0)
		goto fail;
	if (strcmp(action, "cancel") == 0)
		call->bopts.action = SAGA_BATCH_CANCEL;
	else if (strcmp(action, "terminate") == 0)
		call->bopts.action = SAGA_BATCH_TERMINATE;
	else if (strcmp(action, "retry") == 0)
		call->bopts.action = SAGA_BATCH_RETRY;
	else if (strcmp(action, "rerun") == 0)
		call->bopts.action = SAGA_BATCH_RERUN;
	else {
		napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE",
		    "action must be cancel, terminate, retry or rerun");
		goto fail;
	}
	free(action);
	call->bopts.dry_run = dry;
	call->bopts.latest_version = latest;
	return call_queue(env, self, call);
fail:
	free(action);
	call_free(env, call);
	return NULL;
}

/* cancel / terminate (sagaId, reason) */
static napi_value
saga_op(napi_env env, napi_callback_info info, call_op op)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, op);
	if (call == NULL)
		return NULL;
	if (sn_get_string(env, argv[0], "sagaId", 0, &call->a) != 0 ||
	    sn_get_string(env, argv[1], "reason", 1, &call->c) != 0) {
		call_free(env, call);
		return NULL;
	}
	return call_queue(env, self, call);
}

static napi_value
m_cancel(napi_env env, napi_callback_info info)
{
	return saga_op(env, info, OP_CANCEL);
}

/* retryStep / skipStep (sagaId, step, reason) */
static napi_value
step_op(napi_env env, napi_callback_info info, call_op op)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, op);
	if (call == NULL)
		return NULL;
	if (sn_get_string(env, argv[0], "sagaId", 0, &call->a) != 0 ||
	    sn_get_string(env, argv[1], "step", 0, &call->b) != 0 ||
	    sn_get_string(env, argv[2], "reason", op == OP_RETRY, &call->c) != 0) {
		call_free(env, call);
		return NULL;
	}
	return call_queue(env, self, call);
}

static napi_value
m_retry(napi_env env, napi_callback_info info)
{
	return step_op(env, info, OP_RETRY);
}

static napi_value
m_skip(napi_env env, napi_callback_info info)
{
	return step_op(env, info, OP_SKIP);
}

/* forceCompensated(sagaId, step, reason) */
static napi_value
m_force_comp(napi_env env, napi_callback_info info)
{
	return step_op(env, info, OP_FORCE_COMP);
}

/* forceSucceeded(sagaId, step, result, reason) */
static napi_value
m_force_ok(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, OP_FORCE_OK);
	if (call == NULL)
		return NULL;
	if (sn_get_string(env, argv[0], "sagaId", 0, &call->a) != 0 ||
	    sn_get_string(env, argv[1], "step", 0, &call->b) != 0 ||
	    sn_get_bytes(env, argv[2], "result", 1, &call->bytes, &call->len) != 0 ||
	    sn_get_string(env, argv[3], "reason", 1, &call->c) != 0) {
		call_free(env, call);
		return NULL;
	}
	return call_queue(env, self, call);
}

static napi_value
m_terminate(napi_env env, napi_callback_info info)
{
	return saga_op(env, info, OP_TERMINATE);
}

/* rerun(sagaId, {idempotencyKey, latestVersion}) */
static napi_value
m_rerun(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS];
	if (args(env, info, &self, argv) != 0)
		return NULL;
	sn_call *call = call_new(env, self, OP_RERUN);
	if (call == NULL)
		return NULL;
	if (sn_get_string(env, argv[0], "sagaId", 0, &call->a) != 0 ||
	    sn_prop_string(env, argv[1], "idempotencyKey", &call->idem) != 0 ||
	    sn_prop_bool(env, argv[1], "latestVersion", &call->flag) != 0) {
		call_free(env, call);
		return NULL;
	}
	return call_queue(env, self, call);
}

/* close(): frees the idle handles now and the busy ones as their calls end. */
static napi_value
m_close(napi_env env, napi_callback_info info)
{
	napi_value self;
	sn_client *cl = NULL;
	SN_CALL(env, napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	SN_CALL(env, napi_unwrap(env, self, (void **)&cl));
	pthread_mutex_lock(&cl->mu);
	cl->closed = 1;
	for (size_t i = 0; i < cl->n_idle; i++)
		saga_client_free(cl->idle[i]);
	cl->n_idle = 0;
	pthread_mutex_unlock(&cl->mu);
	return NULL;
}

static void
client_finalize(napi_env env, void *data, void *hint)
{
	/* Every call holds a reference to the Client, so none is in flight. */
	client_free(data);
}

/* new Client(urls, {timeoutMs, credential, tls: {ca, cert, key, serverName}}) */
static napi_value
client_ctor(napi_env env, napi_callback_info info)
{
	napi_value self, argv[MAX_ARGS], tls = NULL;
	sn_client *cl;
	char err[512];
	int rv;

	if (args(env, info, &self, argv) != 0)
		return NULL;
	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		napi_throw_error(env, NULL, "libsaga addon: out of memory");
		return NULL;
	}
	pthread_mutex_init(&cl->mu, NULL);
	if (sn_get_string(env, argv[0], "url", 1, &cl->urls) != 0 ||
	    sn_prop_i32(env, argv[1], "timeoutMs", &cl->timeout_ms) != 0 ||
	    sn_prop_string(env, argv[1], "credential", &cl->credential) != 0)
		goto fail;
	napi_valuetype t;
	if (napi_typeof(env, argv[1], &t) == napi_ok && t == napi_object &&
	    napi_get_named_property(env, argv[1], "tls", &tls) == napi_ok &&
	    napi_typeof(env, tls, &t) == napi_ok && t == napi_object) {
		if (sn_prop_string(env, tls, "ca", &cl->ca_file) != 0 ||
		    sn_prop_string(env, tls, "cert", &cl->cert_file) != 0 ||
		    sn_prop_string(env, tls, "key", &cl->key_file) != 0 ||
		    sn_prop_string(env, tls, "serverName", &cl->server_name) != 0)
			goto fail;
	}
	if ((rv = saga_url_list_check(cl->urls, err, sizeof(err))) != SAGA_OK) {
		napi_throw(env, sn_make_error(env, rv, err));
		goto fail;
	}
	/* Settings that libsaga refuses are found now, not at the first call. */
	saga_client *probe = NULL;
	if ((rv = saga_client_new(cl->urls, &probe)) != SAGA_OK ||
	    (cl->timeout_ms > 0 && (rv = saga_client_set_timeout(probe, cl->timeout_ms)) != 0) ||
	    (cl->credential != NULL &&
		(rv = saga_client_set_credential(probe, cl->credential)) != SAGA_OK) ||
	    (cl->ca_file != NULL &&
		(rv = saga_client_set_tls(probe, cl->ca_file, cl->cert_file, cl->key_file,
		     cl->server_name)) != SAGA_OK)) {
		napi_throw(
		    env, sn_make_error(env, rv, probe != NULL ? saga_client_errmsg(probe) : ""));
		saga_client_free(probe);
		goto fail;
	}
	if ((cl->idle = malloc(4 * sizeof(*cl->idle))) == NULL) {
		saga_client_free(probe);
		napi_throw_error(env, NULL, "libsaga addon: out of memory");
		goto fail;
	}
	cl->cap_idle = 4;
	cl->idle[cl->n_idle++] = probe;
	if (napi_wrap(env, self, cl, client_finalize, NULL, NULL) != napi_ok) {
		sn_throw_napi(env, "napi_wrap");
		goto fail;
	}
	return self;
fail:
	client_free(cl);
	return NULL;
}

napi_status
sn_client_init(napi_env env, napi_value exports)
{
	napi_property_descriptor m[] = {
		{ "register", NULL, m_register, NULL, NULL, NULL, napi_default, NULL },
		{ "start", NULL, m_start, NULL, NULL, NULL, napi_default, NULL },
		{ "run", NULL, m_run, NULL, NULL, NULL, napi_default, NULL },
		{ "get", NULL, m_get, NULL, NULL, NULL, napi_default, NULL },
		{ "list", NULL, m_list, NULL, NULL, NULL, napi_default, NULL },
		{ "wait", NULL, m_wait, NULL, NULL, NULL, napi_default, NULL },
		{ "cancel", NULL, m_cancel, NULL, NULL, NULL, napi_default, NULL },
		{ "retryStep", NULL, m_retry, NULL, NULL, NULL, napi_default, NULL },
		{ "skipStep", NULL, m_skip, NULL, NULL, NULL, napi_default, NULL },
		{ "terminate", NULL, m_terminate, NULL, NULL, NULL, napi_default, NULL },
		{ "forceSucceeded", NULL, m_force_ok, NULL, NULL, NULL, napi_default, NULL },
		{ "forceCompensated", NULL, m_force_comp, NULL, NULL, NULL, napi_default, NULL },
		{ "rerun", NULL, m_rerun, NULL, NULL, NULL, napi_default, NULL },
		{ "batch", NULL, m_batch, NULL, NULL, NULL, napi_default, NULL },
		{ "close", NULL, m_close, NULL, NULL, NULL, napi_default, NULL },
	};
	napi_value cls;
	napi_status st = napi_define_class(env, "NativeClient", NAPI_AUTO_LENGTH, client_ctor, NULL,
	    sizeof(m) / sizeof(m[0]), m, &cls);
	return st != napi_ok ? st : napi_set_named_property(env, exports, "NativeClient", cls);
}
