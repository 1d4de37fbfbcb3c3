/*
 * client: saga_client_*. Each call packs one Request, sends it on a fresh
 * REQ context and waits for one Response, all within the client timeout.
 *
 * Resends are off (NNG_OPT_REQ_RESENDTIME infinite): nng would otherwise
 * resend a request whenever a connection drops, so a start could run twice.
 * With resends off a dropped connection fails the call at once with
 * SAGA_ECONN; the caller retries, with an idempotency key if the call was a
 * start. The same rule turns a reply above max_message (nng drops the
 * connection) into a prompt error instead of a resend loop.
 *
 * Several URLs are several dialers on the one socket. nng's REQ hands each
 * request to the next connection that is up (it keeps them in a ring), so
 * calls spread over the sagad instances and skip those that are down; a
 * call waits for a connection only while there is none at all. Nothing
 * else differs from one URL: one context per call, no resend, nothing
 * cancelled.
 */
#include "internal.h"
#include "pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 10000
#define LIST_MAX_LIMIT     1000

/* Longest saga_client_free() waits for replies to timed-out calls. */
#define CLOSE_GRACE_MS 1000

struct saga_client {
	sl_conn conn;
	sl_urls urls; /* urls.text names sagad in messages */
	int timeout_ms;
	size_t max_message;
	char *credential; /* sent with every request; NULL = none */
	saga_log_fn log;
	void *log_user;
	char errmsg[SL_ERRMSG_MAX];
	pthread_mutex_t mu;
	pthread_cond_t cv;        /* an abandoned request finished */
	struct sl_req *abandoned; /* timed-out requests still in flight */
	size_t n_abandoned;
	sl_tls tls; /* saga_client_set_tls */
};

/*
 * A request in flight. Its receive has no timeout: when the caller's
 * deadline passes first the request is abandoned, left to finish in the
 * background, rather than cancelled. In nng 1.5.2 a reply that arrives
 * while its socket is closing can deadlock nng_close(), and cancelling a
 * REQ receive does not stop sagad from sending that reply; an abandoned
 * request instead tells us when its reply has come. Finished ones are
 * reaped at the next call; saga_client_free() gives the others a short
 * grace period before it closes the socket.
 */
typedef struct sl_req {
	struct sl_req *next;
	saga_client *c;
	nng_ctx ctx;
	int ctx_open;
	nng_aio *aio;
	int done; /* under c->mu */
} sl_req;

/* Completion callback of a request's aio (an nng thread). */
static void
req_done(void *arg)
{
	sl_req *r = arg;
	pthread_mutex_lock(&r->c->mu);
	r->done = 1;
	pthread_cond_broadcast(&r->c->cv);
	pthread_mutex_unlock(&r->c->mu);
}

static void
req_free(sl_req *r)
{
	if (r == NULL)
		return;
	if (r->aio != NULL) {
		/* Waits for the callback; a late reply is dropped here. */
		nng_aio_stop(r->aio);
		nng_msg *m = nng_aio_get_msg(r->aio);
		if (m != NULL)
			nng_msg_free(m);
		nng_aio_free(r->aio);
	}
	if (r->ctx_open)
		nng_ctx_close(r->ctx);
	free(r);
}

/* Frees abandoned requests that have finished, waiting up to wait_ms for
 * the others. Returns how many are still unfinished. */
static size_t
reap(saga_client *c, int64_t wait_ms)
{
	int64_t until = wire_mono_ms() + wait_ms;
	sl_req *done = NULL, **pp;
	size_t left;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		left = 0;
		for (sl_req *r = c->abandoned; r != NULL; r = r->next)
			left += !r->done;
		if (left == 0 || wire_mono_ms() >= until)
			break;
		sl_cond_wait_ms(&c->cv, &c->mu, until - wire_mono_ms());
	}
	for (pp = &c->abandoned; *pp != NULL;) {
		sl_req *r = *pp;
		if (r->done) {
			*pp = r->next;
			r->next = done;
			done = r;
			c->n_abandoned--;
		} else {
			pp = &r->next;
		}
	}
	pthread_mutex_unlock(&c->mu);
	while (done != NULL) {
		sl_req *n = done->next;
		req_free(done);
		done = n;
	}
	return left;
}

static int
has_tls_url(const saga_client *c)
{
	for (size_t i = 0; i < c->urls.n; i++)
		if (sl_url_is_tls(c->urls.url[i]))
			return 1;
	return 0;
}

static int
open_conn(saga_client *c)
{
	return sl_conn_open(&c->conn, (const char *const *)c->urls.url, (unsigned)c->urls.n,
	    c->max_message, &c->tls, c->errmsg);
}

int
saga_client_new(const char *urls, saga_client **out)
{
	saga_client *c;
	int rv;

	if (out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SAGA_ENOMEM;
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c);
		return SAGA_ENOMEM;
	}
	if (sl_cond_init(&c->cv) != SAGA_OK) {
		pthread_mutex_destroy(&c->mu);
		free(c);
		return SAGA_ENOMEM;
	}
	if ((rv = sl_conn_init(&c->conn)) != SAGA_OK) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return rv;
	}
	c->timeout_ms = DEFAULT_TIMEOUT_MS;
	c->max_message = SL_DEFAULT_MAX_MESSAGE;
	/* The detail of a bad list is lost with the handle: callers get it
	 * from saga_url_list_check(). */
	if ((rv = sl_urls_parse(urls, &c->urls, c->errmsg)) != SAGA_OK)
		goto fail;
	/* A list with a TLS URL is dialed at the first call, once
	 * saga_client_set_tls has had its chance; the others at once. */
	if (!has_tls_url(c) && (rv = open_conn(c)) != SAGA_OK)
		goto fail;
	*out = c;
	return SAGA_OK;

fail:
	saga_client_free(c);
	return rv;
}

void
saga_client_free(saga_client *c)
{
	if (c == NULL)
		return;
	if (reap(c, CLOSE_GRACE_MS) > 0)
		sl_log(c->log, c->log_user, SAGA_LOG_DEBUG,
		    "closing with %zu timed-out requests "
		    "still unanswered",
		    c->n_abandoned);
	sl_conn_fini(&c->conn);
	/* The socket is closed: whatever was still waiting has ended. */
	while (c->abandoned != NULL) {
		sl_req *r = c->abandoned;
		c->abandoned = r->next;
		req_free(r);
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	sl_urls_free(&c->urls);
	sl_tls_free(&c->tls);
	sl_credential_free(c->credential);
	free(c);
}

int
saga_client_set_tls(saga_client *c, const char *ca_file, const char *cert_file,
    const char *key_file, const char *server_name)
{
	int rv;
	if (c == NULL)
		return SAGA_EINVAL;
	if ((rv = sl_tls_load(&c->tls, ca_file, cert_file, key_file, server_name, c->errmsg)) !=
	    SAGA_OK)
		return rv;
	/* Connections already made keep the settings they were made with:
	 * the socket is closed, and the next call dials again. */
	if (c->conn.open && has_tls_url(c))
		sl_conn_close(&c->conn);
	return SAGA_OK;
}

int
saga_client_set_timeout(saga_client *c, int timeout_ms)
{
	if (c == NULL || timeout_ms <= 0)
		return SAGA_EINVAL;
	c->timeout_ms = timeout_ms;
	return SAGA_OK;
}

int
saga_client_set_max_message(saga_client *c, size_t bytes)
{
	if (c == NULL || bytes < SL_MIN_MAX_MESSAGE || bytes > INT32_MAX)
		return SAGA_EINVAL;
	if (bytes == c->max_message)
		return SAGA_OK;
	if (c->conn.open) {
		int rv = sl_conn_set_max_message(&c->conn, bytes);
		if (rv != SAGA_OK) {
			sl_seterr(c->errmsg, "cannot change the receive limit");
			return rv;
		}
	}
	c->max_message = bytes;
	return SAGA_OK;
}

int
saga_client_set_credential(saga_client *c, const char *credential)
{
	char *copy = NULL;
	if (c == NULL)
		return SAGA_EINVAL;
	int rv = sl_credential_dup(credential, &copy);
	if (rv == SAGA_EINVAL)
		sl_seterr(c->errmsg,
		    "a credential is printable ASCII without spaces, at most %d "
		    "characters",
		    SL_CREDENTIAL_MAX);
	if (rv != SAGA_OK)
		return rv;
	sl_credential_free(c->credential);
	c->credential = copy;
	return SAGA_OK;
}

void
saga_client_set_log(saga_client *c, saga_log_fn fn, void *user)
{
	if (c == NULL)
		return;
	c->log = fn;
	c->log_user = user;
	c->conn.log = fn;
	c->conn.log_user = user;
}

const char *
saga_client_errmsg(const saga_client *c)
{
	return c != NULL ? c->errmsg : "";
}

/* How often a call waiting for a connection looks at nng's counts of
 * failed handshakes, and how many failures in a row mean that waiting
 * longer will not help: nng re-dials every 50 to 500 ms, so two failures
 * take at most about a second. A single failure can be a certificate
 * rotation caught half way. */
#define HANDSHAKE_CHECK_MS 100
#define HANDSHAKE_GIVE_UP  2

/*
 * Waits until a connection is up: SAGA_OK; SAGA_ECONN (c->errmsg says why)
 * when the handshakes keep failing (a certificate sagad or this client
 * refuses, a plaintext URL for a TLS sagad); SAGA_ETIMEDOUT at deadline.
 */
static int
wait_up(saga_client *c, int64_t deadline)
{
	sl_hs before, now;

	if (sl_conn_wait_up(&c->conn, 0))
		return SAGA_OK;
	/* Failures before this call (a sagad since fixed) do not count. */
	sl_conn_handshakes(&c->conn, &before);
	for (;;) {
		int64_t slice = wire_mono_ms() + HANDSHAKE_CHECK_MS;
		if (sl_conn_wait_up(&c->conn, slice < deadline ? slice : deadline))
			return SAGA_OK;
		/* One snapshot of nng's statistics serves both checks. */
		sl_conn_handshakes(&c->conn, &now);
		/* Nothing listens at any URL, and none was ever reached: say so
		 * at once rather than wait out the timeout. */
		if (sl_conn_refused(&c->conn, &now)) {
			sl_seterr(c->errmsg,
			    "cannot reach sagad at %s: connection refused (is sagad running "
			    "there?)",
			    c->urls.text);
			return SAGA_ECONN;
		}
		int over = wire_mono_ms() >= deadline;
		if (sl_conn_handshake_why(
			&c->conn, &before, &now, over ? 1 : HANDSHAKE_GIVE_UP, c->errmsg) > 0)
			return SAGA_ECONN;
		if (over)
			return SAGA_ETIMEDOUT;
	}
}

/*
 * One request/reply with sagad within the client timeout. On success *out
 * is the decoded reply with body `want` (wire_free it). On failure
 * c->errmsg says what went wrong.
 */
static int
call(saga_client *c, const Sagawire__Request *req, Sagawire__Response__BodyCase want,
    Sagawire__Response **out)
{
	nng_msg *msg = NULL, *reply = NULL;
	sl_req *r = NULL;
	int rv;

	*out = NULL;
	reap(c, 0);
	int64_t deadline = wire_mono_ms() + c->timeout_ms;
	int sent = 0; /* sagad took the request: a timeout is then its silence */
	Sagawire__Request q = *req;
	if (c->credential != NULL)
		q.credential = c->credential;
	q.protocol = WIRE_PROTOCOL_VERSION;
	if ((rv = wire_pack_msg(&q.base, &msg)) != SAGA_OK) {
		sl_seterr(c->errmsg, "out of memory packing the request");
		return rv;
	}
	if (!c->conn.open && (rv = open_conn(c)) != SAGA_OK) {
		nng_msg_free(msg);
		return rv;
	}
	/* Waiting for a connection here, rather than letting the send wait,
	 * means a send is never cancelled (see internal.h). */
	if ((rv = wait_up(c, deadline)) != SAGA_OK) {
		if (rv == SAGA_ECONN)
			goto fail;
		goto timeout;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		sl_seterr(c->errmsg, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	r->c = c;
	if ((rv = nng_aio_alloc(&r->aio, req_done, r)) != 0 ||
	    (rv = sl_ctx_open(&c->conn, NNG_DURATION_INFINITE, &r->ctx)) != 0) {
		sl_seterr(c->errmsg, "cannot set up a request to sagad: %s", nng_strerror(rv));
		rv = wire_err_from_nng(rv);
		goto fail;
	}
	r->ctx_open = 1;

	int64_t left = deadline - wire_mono_ms();
	nng_aio_set_timeout(r->aio, (nng_duration)(left < 1 ? 1 : left));
	nng_aio_set_msg(r->aio, msg);
	msg = NULL;
	if ((rv = sl_ctx_send(&c->conn, r->ctx, r->aio)) == 0) {
		nng_aio_wait(r->aio);
		rv = nng_aio_result(r->aio);
	}
	if (rv != 0) {
		/* A failed send hands the message back; req_free frees it. */
		goto nng_failed;
	}
	nng_aio_set_msg(r->aio, NULL); /* sent: the message is nng's now */
	sent = 1;
	pthread_mutex_lock(&c->mu);
	r->done = 0;
	pthread_mutex_unlock(&c->mu);
	nng_aio_set_timeout(r->aio, NNG_DURATION_INFINITE);
	if ((rv = sl_ctx_recv(&c->conn, r->ctx, r->aio)) != 0)
		goto nng_failed;
	pthread_mutex_lock(&c->mu);
	while (!r->done && wire_mono_ms() < deadline)
		sl_cond_wait_ms(&c->cv, &c->mu, deadline - wire_mono_ms());
	if (!r->done) {
		r->next = c->abandoned;
		c->abandoned = r;
		c->n_abandoned++;
		pthread_mutex_unlock(&c->mu);
		r = NULL;
		rv = SAGA_ETIMEDOUT;
		goto timeout;
	}
	pthread_mutex_unlock(&c->mu);
	if ((rv = nng_aio_result(r->aio)) != 0)
		goto nng_failed;
	reply = nng_aio_get_msg(r->aio);
	nng_aio_set_msg(r->aio, NULL);
	rv = sl_decode_reply(reply, want, out, c->errmsg);
	if (rv != SAGA_OK)
		sl_log(c->log, c->log_user, SAGA_LOG_DEBUG, "request to %s failed: %s: %s",
		    c->urls.text, saga_strerror(rv), c->errmsg);
	goto done;

nng_failed:
	if (rv == NNG_ETIMEDOUT) {
		rv = SAGA_ETIMEDOUT;
		goto timeout;
	}
	if (rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT) {
		sl_seterr(c->errmsg,
		    "the connection to sagad at %s closed before it answered "
		    "(did sagad restart? a reply larger than max_message, %zu bytes, also does "
		    "this)",
		    c->urls.text, c->max_message);
		rv = SAGA_ECONN;
		goto fail;
	}
	sl_seterr(c->errmsg, "request to sagad at %s failed: %s", c->urls.text, nng_strerror(rv));
	rv = wire_err_from_nng(rv);
	goto fail;
timeout:
	if (sent)
		sl_seterr(c->errmsg,
		    "sagad at %s took the request but did not answer within %d ms (it may be "
		    "waiting on its database; a start retried with the same idempotency key "
		    "starts nothing twice)",
		    c->urls.text, c->timeout_ms);
	else
		sl_seterr(c->errmsg, "no answer from sagad at %s within %d ms (is it running?)",
		    c->urls.text, c->timeout_ms);
fail:
	sl_log(c->log, c->log_user, SAGA_LOG_DEBUG, "%s", c->errmsg);
done:
	req_free(r);
	if (msg != NULL)
		nng_msg_free(msg);
	if (reply != NULL)
		nng_msg_free(reply);
	return rv;
}

/* The size of the option structs in libsaga 0.1: what struct_size 0 means,
 * and the least a nonzero one may be. */
#define SL_START_OPTS_0_1  (offsetof(saga_start_opts, traceparent) + sizeof(const char *))
#define SL_LIST_FILTER_0_1 (offsetof(saga_list_filter, counts) + sizeof(int))

static int
check_size(saga_client *c, size_t size, size_t min, const char *what)
{
	if (size != 0 && size < min) {
		sl_seterr(c->errmsg,
		    "%s.struct_size is %zu, less than its fields take (%zu): set it to "
		    "sizeof(%s), or 0",
		    what, size, min, what);
		return SAGA_EINVAL;
	}
	return SAGA_OK;
}

/* Checks a caller's string argument: must be valid UTF-8 (protobuf strings
 * are). what names it in the error detail. */
static int
check_arg(saga_client *c, const char *s, const char *what, int required)
{
	if (s == NULL || *s == '\0') {
		if (!required)
			return SAGA_OK;
		sl_seterr(c->errmsg, "%s is required", what);
		return SAGA_EINVAL;
	}
	if (!sl_utf8_ok(s)) {
		sl_seterr(c->errmsg, "%s is not valid UTF-8", what);
		return SAGA_EINVAL;
	}
	return SAGA_OK;
}

/* ---- conversions from the wire: deep copies, strings never NULL -------- */

/* Copies a string from a reply, refusing text that is not UTF-8. */
static int
dup_wire_str(saga_client *c, const char *s, const char *what, char **out)
{
	if (!sl_utf8_ok(s)) {
		sl_seterr(c->errmsg, "reply from sagad has invalid UTF-8 in %s", what);
		return SAGA_EPROTO;
	}
	if ((*out = sl_strdup(s)) == NULL) {
		sl_seterr(c->errmsg, "out of memory");
		return SAGA_ENOMEM;
	}
	return SAGA_OK;
}

static int
dup_wire_bytes(saga_client *c, ProtobufCBinaryData b, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (b.len == 0)
		return SAGA_OK;
	if ((*out = malloc(b.len)) == NULL) {
		sl_seterr(c->errmsg, "out of memory");
		return SAGA_ENOMEM;
	}
	memcpy(*out, b.data, b.len);
	*len = b.len;
	return SAGA_OK;
}

static saga_state
state_from_wire(int s)
{
	return s >= SAGA_STATE_RUNNING && s <= SAGA_STATE_TERMINATED ? (saga_state)s
								     : SAGA_STATE_UNKNOWN;
}

static saga_step_state
step_state_from_wire(int s)
{
	return s >= SAGA_STEP_PENDING && s <= SAGA_STEP_COMP_FAILED ? (saga_step_state)s
								    : SAGA_STEP_UNKNOWN;
}

static void
step_info_clear(saga_step_info *s)
{
	free(s->name);
	free(s->participant);
	free(s->compensation);
	for (size_t i = 0; i < s->n_depends_on; i++)
		free(s->depends_on[i]);
	free(s->depends_on);
	free(s->last_error);
	free(s->result);
}

void
saga_info_free(saga_info *info)
{
	if (info == NULL)
		return;
	free(info->saga_id);
	free(info->definition);
	free(info->idempotency_key);
	free(info->business_key);
	free(info->error);
	free(info->traceparent);
	free(info->input);
	for (size_t i = 0; i < info->n_steps; i++)
		step_info_clear(&info->steps[i]);
	free(info->steps);
	for (size_t i = 0; i < info->n_events; i++) {
		free(info->events[i].type);
		free(info->events[i].step);
		free(info->events[i].detail);
	}
	free(info->events);
	for (size_t i = 0; i < info->n_redacted; i++)
		free(info->redacted[i]);
	free(info->redacted);
	free(info->rerun_of);
	for (size_t i = 0; i < info->n_rerun_as; i++)
		free(info->rerun_as[i]);
	free(info->rerun_as);
	free(info);
}

static const char *
event_type_name(int t)
{
	static const char *const names[] = { "unknown", "started", "attempt", "succeeded",
		"attempt failed", "failed", "compensating", "compensation attempt",
		"compensated step", "compensation attempt failed", "compensation failed",
		"completed", "compensated", "parked", "operator", "terminated", "forced",
		"rerun of", "rerun as" };
	return t > 0 && (size_t)t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

static int
step_from_wire(saga_client *c, const Sagawire__StepInfo *w, saga_step_info *s)
{
	int rv;

	s->state = step_state_from_wire(w->state);
	s->attempts = w->attempts;
	s->comp_attempts = w->comp_attempts;
	s->started_us = w->started_us;
	s->finished_us = w->finished_us;
	s->comp_started_us = w->comp_started_us;
	s->comp_finished_us = w->comp_finished_us;
	s->next_attempt_us = w->next_attempt_us;
	s->queued = w->queued ? 1 : 0;
	s->completion_seq = w->completion_seq;
	if ((rv = dup_wire_str(c, w->name, "step name", &s->name)) != SAGA_OK ||
	    (rv = dup_wire_str(c, w->participant, "step participant", &s->participant)) != 0 ||
	    (rv = dup_wire_str(c, w->compensation, "step compensation", &s->compensation)) != 0 ||
	    (rv = dup_wire_str(c, w->last_error, "step last error", &s->last_error)) != 0 ||
	    (rv = dup_wire_bytes(c, w->result, &s->result, &s->result_len)) != 0)
		return rv;
	if (w->n_depends_on > 0) {
		if ((s->depends_on = calloc(w->n_depends_on, sizeof(char *))) == NULL) {
			sl_seterr(c->errmsg, "out of memory");
			return SAGA_ENOMEM;
		}
		for (size_t i = 0; i < w->n_depends_on; i++) {
			if ((rv = dup_wire_str(c, w->depends_on[i], "step depends_on",
				 &s->depends_on[i])) != SAGA_OK)
				return rv;
			s->n_depends_on++;
		}
	}
	return SAGA_OK;
}

/* Appends prefix + path to info->redacted. */
static int
add_redacted(saga_client *c, saga_info *info, const char *prefix, const char *path)
{
	size_t n = strlen(prefix) + strlen(path) + 1;
	char *p = malloc(n);
	char **v = realloc(info->redacted, (info->n_redacted + 1) * sizeof(*v));
	if (v != NULL)
		info->redacted = v;
	if (p == NULL || v == NULL) {
		free(p);
		sl_seterr(c->errmsg, "out of memory");
		return SAGA_ENOMEM;
	}
	snprintf(p, n, "%s%s", prefix, path);
	info->redacted[info->n_redacted++] = p;
	return SAGA_OK;
}

/* The paths of the sensitive fields sagad left out, as saga.h says. */
static int
redacted_from_wire(saga_client *c, const Sagawire__SagaInfo *w, saga_info *info)
{
	int rv;
	for (size_t i = 0; i < w->n_redacted; i++)
		if ((rv = add_redacted(c, info, "input.", w->redacted[i])) != SAGA_OK)
			return rv;
	for (size_t i = 0; i < w->n_steps && i < info->n_steps; i++) {
		char prefix[300];
		snprintf(prefix, sizeof(prefix), "steps.%.256s.result.", info->steps[i].name);
		for (size_t k = 0; k < w->steps[i]->n_redacted; k++)
			if ((rv = add_redacted(c, info, prefix, w->steps[i]->redacted[k])) !=
			    SAGA_OK)
				return rv;
	}
	return SAGA_OK;
}

static int
info_from_wire(saga_client *c, const Sagawire__SagaInfo *w, saga_info **out)
{
	saga_info *info;
	int rv;

	if ((info = calloc(1, sizeof(*info))) == NULL) {
		sl_seterr(c->errmsg, "out of memory");
		return SAGA_ENOMEM;
	}
	info->version = w->version;
	info->state = state_from_wire(w->state);
	info->created_us = w->created_us;
	info->updated_us = w->updated_us;
	info->deadline_us = w->deadline_us;
	if ((rv = dup_wire_str(c, w->saga_id, "saga id", &info->saga_id)) != SAGA_OK ||
	    (rv = dup_wire_str(c, w->definition, "definition", &info->definition)) != 0 ||
	    (rv = dup_wire_str(c, w->idempotency_key, "idempotency key", &info->idempotency_key)) !=
		0 ||
	    (rv = dup_wire_str(c, w->business_key, "business key", &info->business_key)) != 0 ||
	    (rv = dup_wire_str(c, w->error, "error", &info->error)) != 0 ||
	    (rv = dup_wire_str(c, w->traceparent, "traceparent", &info->traceparent)) != 0 ||
	    (rv = dup_wire_bytes(c, w->input, &info->input, &info->input_len)) != 0)
		goto fail;
	if (w->n_steps > 0) {
		if ((info->steps = calloc(w->n_steps, sizeof(*info->steps))) == NULL) {
			sl_seterr(c->errmsg, "out of memory");
			rv = SAGA_ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < w->n_steps; i++) {
			/* Counted before filling so a partial step is freed. */
			info->n_steps++;
			if ((rv = step_from_wire(c, w->steps[i], &info->steps[i])) != SAGA_OK)
				goto fail;
		}
	}
	if (w->n_events > 0) {
		if ((info->events = calloc(w->n_events, sizeof(*info->events))) == NULL) {
			sl_seterr(c->errmsg, "out of memory");
			rv = SAGA_ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < w->n_events; i++) {
			const Sagawire__Event *e = w->events[i];
			saga_event *o = &info->events[i];
			info->n_events++;
			o->at_us = e->at_us;
			o->attempt = e->attempt;
			const char *step = e->step > 0 && e->step <= info->n_steps
			    ? info->steps[e->step - 1].name
			    : "";
			if ((o->type = sl_strdup(event_type_name((int)e->type))) == NULL ||
			    (o->step = sl_strdup(step)) == NULL) {
				rv = SAGA_ENOMEM;
				goto fail;
			}
			if ((rv = dup_wire_str(c, e->detail, "event detail", &o->detail)) != 0)
				goto fail;
		}
	}
	if ((rv = redacted_from_wire(c, w, info)) != SAGA_OK ||
	    (rv = dup_wire_str(c, w->rerun_of, "rerun_of", &info->rerun_of)) != SAGA_OK)
		goto fail;
	if (w->n_rerun_as > 0) {
		if ((info->rerun_as = calloc(w->n_rerun_as, sizeof(char *))) == NULL) {
			sl_seterr(c->errmsg, "out of memory");
			rv = SAGA_ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < w->n_rerun_as; i++) {
			info->n_rerun_as++;
			if ((rv = dup_wire_str(
				 c, w->rerun_as[i], "rerun_as", &info->rerun_as[i])) != SAGA_OK)
				goto fail;
		}
	}
	*out = info;
	return SAGA_OK;

fail:
	saga_info_free(info);
	return rv;
}

/* ---- definitions ------------------------------------------------------- */

void
saga_register_result_free(saga_register_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->count; i++)
		free(r->defs[i].name);
	free(r->defs);
	free(r);
}

static int register_call(
    saga_client *c, const void *descriptor_set, size_t len, int force, saga_register_result **out);

int
saga_client_register(
    saga_client *c, const void *descriptor_set, size_t len, saga_register_result **out)
{
	return register_call(c, descriptor_set, len, 0, out);
}

int
saga_client_register_force(
    saga_client *c, const void *descriptor_set, size_t len, saga_register_result **out)
{
	return register_call(c, descriptor_set, len, 1, out);
}

static int
register_call(
    saga_client *c, const void *descriptor_set, size_t len, int force, saga_register_result **out)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__RegisterRequest body = SAGAWIRE__REGISTER_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	saga_register_result *r = NULL;
	int rv;

	if (c == NULL || out == NULL || (descriptor_set == NULL && len > 0))
		return SAGA_EINVAL;
	*out = NULL;
	if (len == 0) {
		sl_seterr(c->errmsg, "the descriptor set is empty");
		return SAGA_EINVAL;
	}
	body.descriptor_set.data = (uint8_t *)descriptor_set;
	body.descriptor_set.len = len;
	body.force = force != 0;
	req.body_case = SAGAWIRE__REQUEST__BODY_REGISTER;
	req.register_ = &body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_REGISTER, &resp)) != SAGA_OK)
		return rv;
	const Sagawire__RegisterResponse *w = resp->register_;
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (w->n_definitions > 0 &&
		(r->defs = calloc(w->n_definitions, sizeof(*r->defs))) == NULL)) {
		sl_seterr(c->errmsg, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < w->n_definitions; i++) {
		const Sagawire__RegisteredDefinition *d = w->definitions[i];
		saga_registered *o = &r->defs[i];
		if ((rv = dup_wire_str(c, d->name, "definition name", &o->name)) != SAGA_OK)
			goto fail;
		r->count++;
		o->version = d->version;
		o->unchanged = d->unchanged ? 1 : 0;
		o->steps = d->steps;
	}
	*out = r;
	r = NULL;

fail:
	saga_register_result_free(r);
	wire_free(&resp->base);
	return rv;
}

/* ---- start ------------------------------------------------------------- */

/*
 * One start request. wait_ms 0: answered once the start is durable; > 0:
 * answered when the saga is final, or after wait_ms (the call's own
 * timeout is stretched by as much). *state (may be NULL) receives the
 * state sagad reported (unknown for a plain start).
 */
static void sleep_ms(int64_t ms);

static int
start_call(saga_client *c, const char *definition, const void *input, size_t len,
    const saga_start_opts *opts, uint32_t wait_ms, char **saga_id, int *existing, saga_state *state)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__StartRequest body = SAGAWIRE__START_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	char auto_key[5 + WIRE_UUID_STRLEN];
	int rv;

	if (c == NULL || saga_id == NULL || (input == NULL && len > 0))
		return SAGA_EINVAL;
	*saga_id = NULL;
	if (existing != NULL)
		*existing = 0;
	if (state != NULL)
		*state = SAGA_STATE_UNKNOWN;
	if ((rv = check_arg(c, definition, "the definition name", 1)) != SAGA_OK ||
	    (opts != NULL &&
		((rv = check_size(c, opts->struct_size, SL_START_OPTS_0_1, "saga_start_opts")) !=
			0 ||
		    (rv = check_arg(c, opts->idempotency_key, "the idempotency key", 0)) != 0 ||
		    (rv = check_arg(c, opts->business_key, "the business key", 0)) != 0 ||
		    (rv = check_arg(c, opts->traceparent, "the traceparent", 0)) != 0)))
		return rv;
	body.definition = (char *)definition;
	body.input.data = (uint8_t *)input;
	body.input.len = len;
	body.wait_ms = wait_ms;
	if (opts != NULL) {
		body.version = opts->version;
		body.deadline_ms = opts->deadline_ms;
		if (opts->idempotency_key != NULL)
			body.idempotency_key = (char *)opts->idempotency_key;
		if (opts->business_key != NULL)
			body.business_key = (char *)opts->business_key;
		if (opts->traceparent != NULL)
			body.traceparent = (char *)opts->traceparent;
	}
	/* A start without a key gets one, so that a start whose reply was
	 * lost (the connection dropped after sagad stored it) is sent again
	 * within the call's time without making a second saga. */
	int auto_k = body.idempotency_key == NULL || body.idempotency_key[0] == '\0';
	if (auto_k) {
		uint8_t u[16];
		wire_uuid_v7(u);
		memcpy(auto_key, "auto-", 5);
		wire_uuid_format(u, auto_key + 5);
		body.idempotency_key = auto_key;
	}
	req.body_case = SAGAWIRE__REQUEST__BODY_START;
	req.start = &body;
	int saved_timeout = c->timeout_ms;
	int64_t deadline = wire_mono_ms() + (int64_t)wait_ms + saved_timeout;
	for (;;) {
		int64_t left = deadline - wire_mono_ms();
		c->timeout_ms = (int)(left > 1 ? left : 1);
		rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_START, &resp);
		c->timeout_ms = saved_timeout;
		if (rv != SAGA_ECONN || !auto_k || wire_mono_ms() + 100 >= deadline)
			break;
		sleep_ms(100); /* the connection is re-made meanwhile */
	}
	if (rv != SAGA_OK)
		return rv;
	if (resp->start->saga_id == NULL || resp->start->saga_id[0] == '\0') {
		sl_seterr(c->errmsg, "sagad's start reply has no saga id");
		rv = SAGA_EPROTO;
		goto done;
	}
	if ((rv = dup_wire_str(c, resp->start->saga_id, "saga id", saga_id)) != SAGA_OK)
		goto done;
	/* With a key of its own, "existing" can only mean this call's own
	 * earlier try: the caller started one saga. */
	if (existing != NULL)
		*existing = resp->start->existing && !auto_k ? 1 : 0;
	if (state != NULL)
		*state = (saga_state)resp->start->state;
done:
	wire_free(&resp->base);
	return rv;
}

int
saga_client_start(saga_client *c, const char *definition, const void *input, size_t len,
    const saga_start_opts *opts, char **saga_id, int *existing)
{
	return start_call(c, definition, input, len, opts, 0, saga_id, existing, NULL);
}

int
saga_client_run(saga_client *c, const char *definition, const void *input, size_t len,
    const saga_start_opts *opts, int timeout_ms, char **saga_id, saga_state *state, int *existing)
{
	int64_t deadline = wire_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int rv;

	if (state == NULL)
		return SAGA_EINVAL;
	/* At most 25 s in one request, as for saga_client_wait. */
	int64_t wait = timeout_ms < 0 ? 25000 : timeout_ms;
	if (wait > 25000)
		wait = 25000;
	if (wait < 1)
		wait = 1;
	rv = start_call(c, definition, input, len, opts, (uint32_t)wait, saga_id, existing, state);
	if (rv != SAGA_OK || saga_state_is_final(*state))
		return rv;
	/* Not final yet (the wait ran out, an existing saga's state was not
	 * at hand, or an older sagad answered at the start): wait on the id. */
	int64_t left = timeout_ms < 0 ? -1 : deadline - wire_mono_ms();
	saga_info *info = NULL;
	rv = saga_client_wait(c, *saga_id, timeout_ms < 0 ? -1 : (int)(left > 0 ? left : 0), &info);
	if (info != NULL)
		*state = info->state;
	saga_info_free(info);
	return rv;
}

/* ---- get / wait -------------------------------------------------------- */

static int
get_info(saga_client *c, const char *saga_id, bool reveal, saga_info **out)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__GetRequest body = SAGAWIRE__GET_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	int rv;

	if (c == NULL || out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if ((rv = check_arg(c, saga_id, "the saga id", 1)) != SAGA_OK)
		return rv;
	body.saga_id = (char *)saga_id;
	body.reveal = reveal;
	req.body_case = SAGAWIRE__REQUEST__BODY_GET;
	req.get = &body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_GET, &resp)) != SAGA_OK)
		return rv;
	if (resp->get->saga == NULL) {
		sl_seterr(c->errmsg, "sagad's get reply has no saga");
		rv = SAGA_EPROTO;
	} else {
		rv = info_from_wire(c, resp->get->saga, out);
	}
	wire_free(&resp->base);
	return rv;
}

int
saga_client_get(saga_client *c, const char *saga_id, saga_info **out)
{
	return get_info(c, saga_id, false, out);
}

int
saga_client_get_revealed(saga_client *c, const char *saga_id, saga_info **out)
{
	return get_info(c, saga_id, true, out);
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Waiting by polling get: for a sagad without the wait request. */
static int
wait_polling(saga_client *c, const char *saga_id, int timeout_ms, saga_info **out)
{
	saga_info *last = NULL;
	int64_t deadline = wire_mono_ms() + timeout_ms;
	int64_t delay = 20;
	int saved_timeout;
	int rv;

	if (out != NULL)
		*out = NULL;
	if (c == NULL)
		return SAGA_EINVAL;
	saved_timeout = c->timeout_ms;
	for (;;) {
		saga_info *info = NULL;
		/* A negative timeout waits for ever; otherwise no single get
		 * may run past the deadline. */
		int64_t left = timeout_ms < 0 ? saved_timeout : deadline - wire_mono_ms();
		c->timeout_ms = (int)(left < 1 ? 1 : left < saved_timeout ? left : saved_timeout);
		rv = saga_client_get(c, saga_id, &info);
		c->timeout_ms = saved_timeout;
		if (rv == SAGA_OK) {
			saga_info_free(last);
			last = info;
			if (saga_state_is_final(last->state))
				break;
		} else if (rv != SAGA_ETIMEDOUT && rv != SAGA_ECONN && rv != SAGA_EBUSY) {
			/* Not found, refused, malformed: waiting won't help. */
			saga_info_free(last);
			last = NULL;
			goto done;
		}
		left = deadline - wire_mono_ms();
		if (timeout_ms >= 0 && left <= 0) {
			if (last != NULL)
				sl_seterr(c->errmsg, "saga %s is still %s after %d ms", saga_id,
				    saga_state_name(last->state), timeout_ms);
			/* else: errmsg says why get failed. */
			rv = SAGA_ETIMEDOUT;
			goto done;
		}
		sleep_ms(timeout_ms >= 0 && left < delay ? left : delay);
		delay = delay * 2 > 500 ? 500 : delay * 2;
	}
	rv = SAGA_OK;

done:
	if (out != NULL)
		*out = last;
	else
		saga_info_free(last);
	return rv;
}

/*
 * Waits with sagad's wait request: sagad answers as soon as the saga's
 * final state is committed (or after the time given), so there is no
 * polling and no added latency. Each request asks for at most 25 s, so a
 * long wait survives a sagad restart in between.
 */
int
saga_client_wait(saga_client *c, const char *saga_id, int timeout_ms, saga_info **out)
{
	int64_t deadline = wire_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int saved_timeout;
	int rv;

	if (out != NULL)
		*out = NULL;
	if (c == NULL)
		return SAGA_EINVAL;
	if ((rv = check_arg(c, saga_id, "the saga id", 1)) != SAGA_OK)
		return rv;
	saved_timeout = c->timeout_ms;
	for (;;) {
		Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
		Sagawire__WaitRequest body = SAGAWIRE__WAIT_REQUEST__INIT;
		Sagawire__Response *resp = NULL;
		int64_t left = timeout_ms < 0 ? 25000 : deadline - wire_mono_ms();
		if (left < 1)
			left = 1;
		if (left > 25000)
			left = 25000;
		body.saga_id = (char *)saga_id;
		body.timeout_ms = (uint32_t)left;
		req.body_case = SAGAWIRE__REQUEST__BODY_WAIT;
		req.wait = &body;
		/* The call itself may take as long as the wait, plus slack. */
		c->timeout_ms = (int)left + saved_timeout;
		rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_WAIT, &resp);
		c->timeout_ms = saved_timeout;
		if (rv == SAGA_EUNSUPPORTED) {
			int64_t rest = timeout_ms < 0 ? -1 : deadline - wire_mono_ms();
			return wait_polling(
			    c, saga_id, (int)(rest < 0 && timeout_ms >= 0 ? 0 : rest), out);
		}
		if (rv == SAGA_OK) {
			saga_state st = (saga_state)resp->wait->state;
			wire_free(&resp->base);
			if (saga_state_is_final(st))
				break;
			if (timeout_ms >= 0 && wire_mono_ms() >= deadline) {
				/* As documented: *out is the last status seen. */
				if (out != NULL)
					saga_client_get(c, saga_id, out);
				sl_seterr(c->errmsg, "saga %s is still %s after %d ms", saga_id,
				    saga_state_name(st), timeout_ms);
				rv = SAGA_ETIMEDOUT;
				goto done;
			}
			continue;
		}
		if (rv != SAGA_ETIMEDOUT && rv != SAGA_ECONN && rv != SAGA_EBUSY &&
		    rv != SAGA_ECLOSED)
			goto done; /* not found, refused, malformed: waiting won't help */
		if (timeout_ms >= 0 && wire_mono_ms() >= deadline) {
			rv = SAGA_ETIMEDOUT;
			goto done;
		}
		sleep_ms(100); /* sagad away: try again shortly */
	}
	rv = SAGA_OK;
	if (out != NULL)
		rv = saga_client_get(c, saga_id, out);
done:
	return rv;
}

/* ---- list -------------------------------------------------------------- */

void
saga_list_free(saga_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->count; i++) {
		free(l->sagas[i].saga_id);
		free(l->sagas[i].definition);
		free(l->sagas[i].business_key);
		free(l->sagas[i].error);
		free(l->sagas[i].rerun_of);
	}
	free(l->sagas);
	free(l->next_page_token);
	free(l);
}

/* A ListRequest from a filter (NULL: everything); *statesp (free it)
 * holds the states it points to. */
static int
list_body(saga_client *c, const saga_list_filter *filter, Sagawire__ListRequest *body,
    Sagawire__SagaState **statesp)
{
	Sagawire__SagaState *states = NULL;
	int rv = SAGA_OK;
	*statesp = NULL;
	if (filter != NULL) {
		if ((rv = check_size(
			 c, filter->struct_size, SL_LIST_FILTER_0_1, "saga_list_filter")) != 0 ||
		    (rv = check_arg(c, filter->definition, "the definition filter", 0)) != 0 ||
		    (rv = check_arg(c, filter->business_key, "the business key filter", 0)) != 0 ||
		    (rv = check_arg(c, filter->page_token, "the page token", 0)) != 0)
			return rv;
		if (filter->limit > LIST_MAX_LIMIT) {
			sl_seterr(c->errmsg, "limit %u is above the maximum of %d", filter->limit,
			    LIST_MAX_LIMIT);
			return SAGA_EINVAL;
		}
		if (filter->n_states > 0 && filter->states == NULL)
			return SAGA_EINVAL;
		if (filter->n_states > 0) {
			if ((states = calloc(filter->n_states, sizeof(*states))) == NULL)
				return SAGA_ENOMEM;
			for (size_t i = 0; i < filter->n_states; i++) {
				if (filter->states[i] < SAGA_STATE_RUNNING ||
				    filter->states[i] > SAGA_STATE_TERMINATED) {
					sl_seterr(c->errmsg, "state filter %d is not a saga state",
					    (int)filter->states[i]);
					rv = SAGA_EINVAL;
					goto fail;
				}
				states[i] = (Sagawire__SagaState)filter->states[i];
			}
			body->n_states = filter->n_states;
			body->states = states;
		}
		if (filter->definition != NULL)
			body->definition = (char *)filter->definition;
		if (filter->business_key != NULL)
			body->business_key = (char *)filter->business_key;
		if (filter->page_token != NULL)
			body->page_token = (char *)filter->page_token;
		body->created_after_us = filter->created_after_us;
		body->created_before_us = filter->created_before_us;
		body->limit = filter->limit;
		body->version = filter->version;
		body->counts = filter->counts != 0;
	}
	*statesp = states;
	return SAGA_OK;
fail:
	free(states);
	return rv;
}

int
saga_client_list(saga_client *c, const saga_list_filter *filter, saga_list **out)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__ListRequest body = SAGAWIRE__LIST_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	Sagawire__SagaState *states = NULL;
	saga_list *l = NULL;
	int rv;

	if (c == NULL || out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if ((rv = list_body(c, filter, &body, &states)) != SAGA_OK)
		goto fail;
	req.body_case = SAGAWIRE__REQUEST__BODY_LIST;
	req.list = &body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_LIST, &resp)) != SAGA_OK)
		goto fail;
	const Sagawire__ListResponse *w = resp->list;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (w->n_sagas > 0 && (l->sagas = calloc(w->n_sagas, sizeof(*l->sagas))) == NULL)) {
		sl_seterr(c->errmsg, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < w->n_sagas; i++) {
		const Sagawire__SagaSummary *s = w->sagas[i];
		saga_summary *o = &l->sagas[i];
		l->count++;
		o->version = s->version;
		o->state = state_from_wire(s->state);
		o->created_us = s->created_us;
		o->updated_us = s->updated_us;
		o->steps_total = s->steps_total;
		o->steps_done = s->steps_done;
		if ((rv = dup_wire_str(c, s->saga_id, "saga id", &o->saga_id)) != SAGA_OK ||
		    (rv = dup_wire_str(c, s->definition, "definition", &o->definition)) != 0 ||
		    (rv = dup_wire_str(c, s->business_key, "business key", &o->business_key)) !=
			0 ||
		    (rv = dup_wire_str(c, s->error, "error", &o->error)) != 0 ||
		    (rv = dup_wire_str(c, s->rerun_of, "rerun_of", &o->rerun_of)) != 0)
			goto fail;
	}
	if ((rv = dup_wire_str(c, w->next_page_token, "page token", &l->next_page_token)) != 0)
		goto fail;
	l->has_counts = body.counts && w->n_counts > 0;
	for (size_t i = 0; i < w->n_counts; i++) {
		saga_state st = state_from_wire(w->counts[i]->state);
		if (st != SAGA_STATE_UNKNOWN)
			l->state_counts[st] = w->counts[i]->count;
	}
	*out = l;
	l = NULL;

fail:
	saga_list_free(l);
	free(states);
	if (resp != NULL)
		wire_free(&resp->base);
	return rv;
}

/* ---- describe -------------------------------------------------------------- */

static void
definition_clear(saga_definition *d)
{
	free(d->name);
	free(d->input_type);
	free(d->description);
	free(d->business_key);
	for (size_t i = 0; i < d->n_steps; i++) {
		saga_definition_step *s = &d->steps[i];
		free(s->name);
		free(s->participant);
		free(s->compensation);
		free(s->input_type);
		free(s->output_type);
		for (size_t k = 0; k < s->n_depends_on; k++)
			free(s->depends_on[k]);
		free(s->depends_on);
	}
	free(d->steps);
}

void
saga_definition_list_free(saga_definition_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->count; i++)
		definition_clear(&l->definitions[i]);
	free(l->definitions);
	free(l->descriptor_set);
	free(l);
}

static int
defstep_from_wire(saga_client *c, const Sagawire__DefinitionStep *w, saga_definition_step *o)
{
	int rv;
	o->timeout_ms = w->timeout_ms;
	o->max_attempts = w->max_attempts;
	o->compensation_timeout_ms = w->compensation_timeout_ms;
	o->compensation_max_attempts = w->compensation_max_attempts;
	o->heartbeat_timeout_ms = w->heartbeat_timeout_ms;
	if ((rv = dup_wire_str(c, w->name, "step name", &o->name)) != 0 ||
	    (rv = dup_wire_str(c, w->participant, "participant", &o->participant)) != 0 ||
	    (rv = dup_wire_str(c, w->compensation, "compensation", &o->compensation)) != 0 ||
	    (rv = dup_wire_str(c, w->input_type, "input type", &o->input_type)) != 0 ||
	    (rv = dup_wire_str(c, w->output_type, "output type", &o->output_type)) != 0)
		return rv;
	if (w->n_depends_on > 0 &&
	    (o->depends_on = calloc(w->n_depends_on, sizeof(*o->depends_on))) == NULL) {
		sl_seterr(c->errmsg, "out of memory");
		return SAGA_ENOMEM;
	}
	for (size_t k = 0; k < w->n_depends_on; k++) {
		if ((rv = dup_wire_str(c, w->depends_on[k], "dependency", &o->depends_on[k])) != 0)
			return rv;
		o->n_depends_on++;
	}
	return SAGA_OK;
}

int
saga_client_describe(
    saga_client *c, const char *definition, uint32_t version, saga_definition_list **out)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__DescribeRequest body = SAGAWIRE__DESCRIBE_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	saga_definition_list *l = NULL;
	int rv;

	if (c == NULL || out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if ((rv = check_arg(c, definition, "the definition name", 0)) != SAGA_OK)
		return rv;
	if (definition != NULL)
		body.definition = (char *)definition;
	body.version = version;
	req.body_case = SAGAWIRE__REQUEST__BODY_DESCRIBE;
	req.describe = &body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_DESCRIBE, &resp)) != SAGA_OK)
		return rv;
	const Sagawire__DescribeResponse *w = resp->describe;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (w->n_definitions > 0 &&
		(l->definitions = calloc(w->n_definitions, sizeof(*l->definitions))) == NULL)) {
		sl_seterr(c->errmsg, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < w->n_definitions; i++) {
		const Sagawire__DefinitionInfo *d = w->definitions[i];
		saga_definition *o = &l->definitions[i];
		l->count++;
		o->version = d->version;
		o->registered_us = d->registered_us;
		o->deadline_ms = d->deadline_ms;
		if ((rv = dup_wire_str(c, d->name, "definition", &o->name)) != 0 ||
		    (rv = dup_wire_str(c, d->input_type, "input type", &o->input_type)) != 0 ||
		    (rv = dup_wire_str(c, d->description, "description", &o->description)) != 0 ||
		    (rv = dup_wire_str(c, d->business_key, "business key", &o->business_key)) != 0)
			goto fail;
		if (d->n_steps > 0 && (o->steps = calloc(d->n_steps, sizeof(*o->steps))) == NULL) {
			sl_seterr(c->errmsg, "out of memory");
			rv = SAGA_ENOMEM;
			goto fail;
		}
		for (size_t k = 0; k < d->n_steps; k++) {
			o->n_steps++;
			if ((rv = defstep_from_wire(c, d->steps[k], &o->steps[k])) != SAGA_OK)
				goto fail;
		}
	}
	if ((rv = dup_wire_bytes(
		 c, w->descriptor_set, &l->descriptor_set, &l->descriptor_set_len)) != SAGA_OK)
		goto fail;
	*out = l;
	l = NULL;
fail:
	saga_definition_list_free(l);
	wire_free(&resp->base);
	return rv;
}

/* The one implementation of "a JSON input, as the definition's input
 * message" (sagactl's --input and the Node.js package use it): the
 * descriptor set of that version, from sagad, read by common/pbjson. */
int
saga_client_encode_json(saga_client *c, const char *definition, uint32_t version, const char *json,
    size_t len, uint8_t **out, size_t *out_len)
{
	saga_definition_list *l = NULL;
	const saga_definition *d = NULL;
	pbjson *pb = NULL;
	char err[SL_ERRMSG_MAX - 128];
	int rv;

	if (c == NULL || out == NULL || out_len == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	*out_len = 0;
	if (json == NULL && len > 0) {
		sl_seterr(c->errmsg, "no JSON text given");
		return SAGA_EINVAL;
	}
	if ((rv = check_arg(c, definition, "the definition name", 1)) != SAGA_OK)
		return rv;
	if ((rv = saga_client_describe(c, definition, version, &l)) != SAGA_OK)
		return rv;
	/* Newest first: the version asked for, or the latest. */
	for (size_t i = 0; i < l->count; i++)
		if (d == NULL || l->definitions[i].version == version)
			d = &l->definitions[i];
	if (d == NULL || l->descriptor_set == NULL) {
		sl_seterr(c->errmsg, "cannot encode the input of %s: sagad sent no descriptor set",
		    definition);
		rv = SAGA_EDEFINITION;
		goto done;
	}
	if ((rv = pbjson_new(l->descriptor_set, l->descriptor_set_len, &pb, err, sizeof(err))) !=
	    0) {
		sl_seterr(c->errmsg,
		    "cannot encode the input of %s: its descriptor set cannot be read: %s",
		    definition, err);
		rv = rv == SAGA_ENOMEM ? SAGA_ENOMEM : SAGA_EDEFINITION;
		goto done;
	}
	if ((rv = pbjson_from_json(pb, d->input_type, json != NULL ? json : "", len, out, out_len,
		 err, sizeof(err))) != 0) {
		sl_seterr(c->errmsg, "the input is not a valid %s: %s", d->input_type, err);
		rv = rv == SAGA_ENOMEM ? SAGA_ENOMEM : SAGA_EINVAL;
		goto done;
	}
	if (*out_len > c->max_message) {
		sl_seterr(c->errmsg, "the input of %s encodes to %zu bytes, more than %zu allowed",
		    definition, *out_len, c->max_message);
		free(*out);
		*out = NULL;
		*out_len = 0;
		rv = SAGA_ETOOBIG;
	}
done:
	pbjson_free(pb);
	saga_definition_list_free(l);
	return rv;
}

/* ---- operator actions ---------------------------------------------------- */

/* One OperateRequest. step NULL: an action on the whole saga (terminate,
 * rerun); need_reason: refused here without one (sagad refuses it too). */
static int
operate_full(saga_client *c, Sagawire__OperateRequest *body, int need_reason,
    saga_state *state_after, char **new_saga_id)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	int rv;

	if (c == NULL)
		return SAGA_EINVAL;
	if (state_after != NULL)
		*state_after = SAGA_STATE_UNKNOWN;
	if (new_saga_id != NULL)
		*new_saga_id = NULL;
	bool whole = body->op == SAGAWIRE__OPERATION__OP_TERMINATE ||
	    body->op == SAGAWIRE__OPERATION__OP_RERUN;
	if ((rv = check_arg(c, body->saga_id, "the saga id", 1)) != SAGA_OK ||
	    (!whole && (rv = check_arg(c, body->step, "the step name", 1)) != SAGA_OK) ||
	    (rv = check_arg(c, body->reason, "the reason", need_reason)) != SAGA_OK ||
	    (rv = check_arg(c, body->idempotency_key, "the idempotency key", 0)) != SAGA_OK)
		return rv;
	if (body->reason == NULL)
		body->reason = (char *)"";
	if (body->step == NULL)
		body->step = (char *)"";
	if (body->idempotency_key == NULL)
		body->idempotency_key = (char *)"";
	req.body_case = SAGAWIRE__REQUEST__BODY_OPERATE;
	req.operate = body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_OPERATE, &resp)) != SAGA_OK)
		return rv;
	if (state_after != NULL)
		*state_after = state_from_wire(resp->operate->state);
	if (new_saga_id != NULL &&
	    (rv = dup_wire_str(c, resp->operate->new_saga_id, "new saga id", new_saga_id)) !=
		SAGA_OK) {
		wire_free(&resp->base);
		return rv;
	}
	wire_free(&resp->base);
	return SAGA_OK;
}

static int
operate_call(saga_client *c, int op, const char *saga_id, const char *step, const char *reason,
    saga_state *state_after)
{
	Sagawire__OperateRequest body = SAGAWIRE__OPERATE_REQUEST__INIT;
	body.saga_id = (char *)saga_id;
	body.op = (Sagawire__Operation)op;
	body.step = (char *)step;
	body.reason = (char *)reason;
	return operate_full(c, &body, 0, state_after, NULL);
}

int
saga_client_terminate(
    saga_client *c, const char *saga_id, const char *reason, saga_state *state_after)
{
	return operate_call(
	    c, SAGAWIRE__OPERATION__OP_TERMINATE, saga_id, NULL, reason, state_after);
}

int
saga_client_force_succeeded(saga_client *c, const char *saga_id, const char *step,
    const uint8_t *result, size_t result_len, const char *reason, saga_state *state_after)
{
	if (result == NULL && result_len > 0)
		return SAGA_EINVAL;
	Sagawire__OperateRequest body = SAGAWIRE__OPERATE_REQUEST__INIT;
	body.saga_id = (char *)saga_id;
	body.op = SAGAWIRE__OPERATION__OP_FORCE_SUCCEEDED;
	body.step = (char *)step;
	body.reason = (char *)reason;
	body.result.data = (uint8_t *)result;
	body.result.len = result_len;
	return operate_full(c, &body, 0, state_after, NULL);
}

int
saga_client_force_compensated(saga_client *c, const char *saga_id, const char *step,
    const char *reason, saga_state *state_after)
{
	return operate_call(
	    c, SAGAWIRE__OPERATION__OP_FORCE_COMPENSATED, saga_id, step, reason, state_after);
}

int
saga_client_rerun(saga_client *c, const char *saga_id, const char *idempotency_key,
    int latest_version, char **new_saga_id)
{
	if (new_saga_id == NULL)
		return SAGA_EINVAL;
	Sagawire__OperateRequest body = SAGAWIRE__OPERATE_REQUEST__INIT;
	body.saga_id = (char *)saga_id;
	body.op = SAGAWIRE__OPERATION__OP_RERUN;
	body.idempotency_key = (char *)idempotency_key;
	body.latest_version = latest_version != 0;
	return operate_full(c, &body, 0, NULL, new_saga_id);
}

int
saga_client_retry_step(saga_client *c, const char *saga_id, const char *step, const char *reason,
    saga_state *state_after)
{
	return operate_call(
	    c, SAGAWIRE__OPERATION__OP_RETRY_STEP, saga_id, step, reason, state_after);
}

int
saga_client_skip_step(saga_client *c, const char *saga_id, const char *step, const char *reason,
    saga_state *state_after)
{
	return operate_call(
	    c, SAGAWIRE__OPERATION__OP_SKIP_STEP, saga_id, step, reason, state_after);
}

/* ---- batches -------------------------------------------------------------- */

void
saga_batch_result_free(saga_batch_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->count; i++) {
		free(r->items[i].saga_id);
		free(r->items[i].why);
		free(r->items[i].new_saga_id);
	}
	free(r->items);
	free(r->next_page_token);
	free(r);
}

#define SL_BATCH_OPTS_0_1 (offsetof(saga_batch_opts, idempotency_key) + sizeof(const char *))

int
saga_client_batch(saga_client *c, const saga_list_filter *filter, const saga_batch_opts *opts,
    saga_batch_result **out)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__BatchRequest body = SAGAWIRE__BATCH_REQUEST__INIT;
	Sagawire__ListRequest lb = SAGAWIRE__LIST_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	Sagawire__SagaState *states = NULL;
	saga_batch_result *r = NULL;
	int rv;

	if (c == NULL || out == NULL || opts == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if ((rv = check_size(c, opts->struct_size, SL_BATCH_OPTS_0_1, "saga_batch_opts")) != 0 ||
	    (rv = check_arg(c, opts->step, "the step", 0)) != 0 ||
	    (rv = check_arg(c, opts->reason, "the reason", 0)) != 0 ||
	    (rv = check_arg(c, opts->idempotency_key, "the idempotency key", 0)) != 0)
		return rv;
	if ((rv = list_body(c, filter, &lb, &states)) != SAGA_OK)
		return rv;
	body.filter = &lb;
	body.op = (Sagawire__Operation)opts->action;
	if (opts->step != NULL)
		body.step = (char *)opts->step;
	if (opts->reason != NULL)
		body.reason = (char *)opts->reason;
	if (opts->idempotency_key != NULL)
		body.idempotency_key = (char *)opts->idempotency_key;
	body.dry_run = opts->dry_run != 0;
	body.latest_version = opts->latest_version != 0;
	req.body_case = SAGAWIRE__REQUEST__BODY_BATCH;
	req.batch = &body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_BATCH, &resp)) != SAGA_OK)
		goto fail;
	const Sagawire__BatchResponse *w = resp->batch;
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (w->n_items > 0 && (r->items = calloc(w->n_items, sizeof(*r->items))) == NULL)) {
		sl_seterr(c->errmsg, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	r->done = w->done;
	r->skipped = w->skipped;
	r->applicable = w->applicable;
	for (size_t i = 0; i < w->n_items; i++) {
		const Sagawire__BatchItem *x = w->items[i];
		saga_batch_item *o = &r->items[i];
		r->count++;
		o->done = x->done;
		o->code = (int)x->code;
		o->state = state_from_wire(x->state);
		if ((rv = dup_wire_str(c, x->saga_id, "saga id", &o->saga_id)) != 0 ||
		    (rv = dup_wire_str(c, x->why, "why", &o->why)) != 0 ||
		    (rv = dup_wire_str(c, x->new_saga_id, "new saga id", &o->new_saga_id)) != 0)
			goto fail;
	}
	if ((rv = dup_wire_str(c, w->next_page_token, "page token", &r->next_page_token)) != 0)
		goto fail;
	*out = r;
	r = NULL;
fail:
	saga_batch_result_free(r);
	free(states);
	if (resp != NULL)
		wire_free(&resp->base);
	return rv;
}

/* ---- participants ------------------------------------------------------ */

void
saga_participant_list_free(saga_participant_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->count; i++) {
		free(l->participants[i].name);
		free(l->participants[i].breaker);
	}
	free(l->participants);
	free(l);
}

int
saga_client_participants(saga_client *c, saga_participant_list **out)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__ParticipantsRequest body = SAGAWIRE__PARTICIPANTS_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	saga_participant_list *l = NULL;
	int rv;

	if (c == NULL || out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	req.body_case = SAGAWIRE__REQUEST__BODY_PARTICIPANTS;
	req.participants = &body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_PARTICIPANTS, &resp)) != SAGA_OK)
		return rv;
	const Sagawire__ParticipantsResponse *w = resp->participants;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (w->n_participants > 0 &&
		(l->participants = calloc(w->n_participants, sizeof(*l->participants))) == NULL)) {
		sl_seterr(c->errmsg, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < w->n_participants; i++) {
		const Sagawire__ParticipantInfo *x = w->participants[i];
		saga_participant *o = &l->participants[i];
		l->count++;
		o->connections = x->connections;
		o->capacity = x->capacity;
		o->in_flight = x->in_flight;
		o->queued = x->queued;
		o->breaker_open_until_us = x->breaker_open_until_us;
		o->breaker_opened = x->breaker_opened;
		o->window_attempts = x->window_attempts;
		o->window_failures = x->window_failures;
		if ((rv = dup_wire_str(c, x->name, "participant name", &o->name)) != SAGA_OK ||
		    (rv = dup_wire_str(c, x->breaker, "breaker state", &o->breaker)) != SAGA_OK)
			goto fail;
	}
	*out = l;
	l = NULL;
fail:
	saga_participant_list_free(l);
	wire_free(&resp->base);
	return rv;
}

/* ---- cancel ------------------------------------------------------------ */

int
saga_client_cancel(saga_client *c, const char *saga_id, const char *reason, saga_state *state_after)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__CancelRequest body = SAGAWIRE__CANCEL_REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	int rv;

	if (c == NULL)
		return SAGA_EINVAL;
	if (state_after != NULL)
		*state_after = SAGA_STATE_UNKNOWN;
	if ((rv = check_arg(c, saga_id, "the saga id", 1)) != SAGA_OK ||
	    (rv = check_arg(c, reason, "the reason", 0)) != SAGA_OK)
		return rv;
	body.saga_id = (char *)saga_id;
	if (reason != NULL)
		body.reason = (char *)reason;
	req.body_case = SAGAWIRE__REQUEST__BODY_CANCEL;
	req.cancel = &body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_CANCEL, &resp)) != SAGA_OK)
		return rv;
	if (state_after != NULL)
		*state_after = state_from_wire(resp->cancel->state);
	wire_free(&resp->base);
	return SAGA_OK;
}

/* ---- principals ------------------------------------------------------- */

void
saga_principal_list_free(saga_principal_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->count; i++) {
		saga_principal *p = &l->principals[i];
		free(p->id);
		free(p->name);
		free(p->role);
		free(p->participant);
		for (size_t k = 0; k < p->n_definitions; k++)
			free(p->definitions[k]);
		free(p->definitions);
		free(p->created_by);
	}
	free(l->principals);
	free(l);
}

/* One PrincipalRequest; the reply's principals into *out (may be NULL)
 * and its credential into *credential (may be NULL). */
static int
principal_call(
    saga_client *c, Sagawire__PrincipalRequest *body, char **credential, saga_principal_list **out)
{
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__Response *resp = NULL;
	saga_principal_list *l = NULL;
	int rv;

	req.body_case = SAGAWIRE__REQUEST__BODY_PRINCIPAL;
	req.principal = body;
	if ((rv = call(c, &req, SAGAWIRE__RESPONSE__BODY_PRINCIPAL, &resp)) != SAGA_OK)
		return rv;
	const Sagawire__PrincipalResponse *w = resp->principal;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (w->n_principals > 0 &&
		(l->principals = calloc(w->n_principals, sizeof(*l->principals))) == NULL)) {
		sl_seterr(c->errmsg, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < w->n_principals; i++) {
		const Sagawire__PrincipalInfo *x = w->principals[i];
		saga_principal *o = &l->principals[i];
		l->count++;
		o->created_us = x->created_us;
		o->revoked_us = x->revoked_us;
		if ((rv = dup_wire_str(c, x->id, "principal id", &o->id)) != SAGA_OK ||
		    (rv = dup_wire_str(c, x->name, "principal name", &o->name)) != SAGA_OK ||
		    (rv = dup_wire_str(c, x->role, "role", &o->role)) != SAGA_OK ||
		    (rv = dup_wire_str(c, x->participant, "participant", &o->participant)) !=
			SAGA_OK ||
		    (rv = dup_wire_str(c, x->created_by, "created by", &o->created_by)) != SAGA_OK)
			goto fail;
		if (x->n_definitions > 0) {
			if ((o->definitions = calloc(x->n_definitions, sizeof(char *))) == NULL) {
				sl_seterr(c->errmsg, "out of memory");
				rv = SAGA_ENOMEM;
				goto fail;
			}
			for (size_t k = 0; k < x->n_definitions; k++) {
				o->n_definitions++;
				if ((rv = dup_wire_str(c, x->definitions[k], "definition",
					 &o->definitions[k])) != SAGA_OK)
					goto fail;
			}
		}
	}
	if (credential != NULL) {
		if (w->credential[0] == '\0') {
			sl_seterr(c->errmsg, "sagad sent no credential");
			rv = SAGA_EPROTO;
			goto fail;
		}
		if ((rv = dup_wire_str(c, w->credential, "credential", credential)) != SAGA_OK)
			goto fail;
	}
	if (out != NULL) {
		*out = l;
		l = NULL;
	}
fail:
	saga_principal_list_free(l);
	if (w->credential[0] != '\0')
		memset(w->credential, 0, strlen(w->credential));
	wire_free(&resp->base);
	return rv;
}

int
saga_client_principal_create(saga_client *c, const char *name, const char *role,
    const char *participant, const char *const *definitions, size_t n_definitions,
    char **credential, saga_principal_list **out)
{
	Sagawire__PrincipalRequest body = SAGAWIRE__PRINCIPAL_REQUEST__INIT;
	int rv;

	if (c == NULL || credential == NULL || (n_definitions > 0 && definitions == NULL))
		return SAGA_EINVAL;
	*credential = NULL;
	if (out != NULL)
		*out = NULL;
	if ((rv = check_arg(c, name, "the principal name", 1)) != SAGA_OK ||
	    (rv = check_arg(c, role, "the role", 1)) != SAGA_OK ||
	    (rv = check_arg(c, participant, "the participant", 0)) != SAGA_OK)
		return rv;
	for (size_t i = 0; i < n_definitions; i++)
		if ((rv = check_arg(c, definitions[i], "a definition", 1)) != SAGA_OK)
			return rv;
	body.op = SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_CREATE;
	body.name = (char *)name;
	body.role = (char *)role;
	if (participant != NULL)
		body.participant = (char *)participant;
	body.n_definitions = n_definitions;
	body.definitions = (char **)definitions;
	return principal_call(c, &body, credential, out);
}

int
saga_client_principal_list(saga_client *c, saga_principal_list **out)
{
	Sagawire__PrincipalRequest body = SAGAWIRE__PRINCIPAL_REQUEST__INIT;
	if (c == NULL || out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	body.op = SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_LIST;
	return principal_call(c, &body, NULL, out);
}

int
saga_client_principal_revoke(saga_client *c, const char *name_or_id, saga_principal_list **out)
{
	Sagawire__PrincipalRequest body = SAGAWIRE__PRINCIPAL_REQUEST__INIT;
	int rv;
	if (c == NULL)
		return SAGA_EINVAL;
	if (out != NULL)
		*out = NULL;
	if ((rv = check_arg(c, name_or_id, "the principal's name or id", 1)) != SAGA_OK)
		return rv;
	body.op = SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_REVOKE;
	body.name = (char *)name_or_id;
	return principal_call(c, &body, NULL, out);
}
