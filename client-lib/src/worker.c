/*
 * worker: saga_worker_*, the participant side.
 *
 * A worker has one link per sagad URL: its own REQ socket with one dialer
 * (sl_conn), a poller and a reporter. While saga_worker_run() runs:
 *
 *   run()     sleeps on a self-pipe until saga_worker_stop() (an atomic flag
 *             and a write(): both async-signal-safe) or a fatal error, then
 *             shuts everything down in order.
 *   poller    (one per link) keeps exactly one WorkPoll outstanding on its
 *             link's poll context, declaring the capacity the link may use
 *             now (see "Capacity"). sagad holds it until it has steps for
 *             this connection (never more than that capacity minus the steps
 *             in flight here) or answers an empty batch after its poll
 *             timeout. Each valid Dispatch becomes a job that remembers its
 *             link; the next poll goes out at once.
 *   handlers  up to `capacity` threads in all, shared by the links, started
 *             as work arrives, each running one job at a time. The outcome
 *             becomes a result queued on the job's link.
 *   reporter  (one per link) sends every result queued on its link in one
 *             Report on a second context (no delay when idle, large batches
 *             under load), waits for the ack, and sends the same batch again
 *             after an error: sagad treats duplicates as no-ops. Outcomes and
 *             heartbeats so go back to the instance that dispatched the step,
 *             on the connection it came from.
 *
 * Nothing is ever cancelled (nng 1.5.2 crashes when a REQ receive is
 * cancelled during a send and leaks cancelled sends): the poll and report
 * operations have no timeouts. A Report is resent by REQ itself when its
 * connection drops and after NNG_OPT_REQ_RESENDTIME: that is how a restart
 * of sagad is survived. A poll is not resent: it fails with NNG_ECONNRESET
 * when its connection drops, so that the slots it declared are free while
 * that instance is away, and the poller sends a new one, with the capacity
 * of that moment, once the link is up again. (A resent poll would carry the
 * capacity of before, counting steps the dropped connection took with it.)
 * What the poll's resend timer did, pushing bytes down a connection that
 * died without a word so that TCP notices, a probe does: a poll unanswered
 * for POLL_PROBE_MS (sagad answers idle polls after 20 s by default) makes
 * the reporter send an empty Report, which sagad acknowledges at once.
 * Shutdown ends both operations by closing the sockets once, after the last
 * reports were acknowledged or the flush deadline passed.
 *
 * Steps that were received but never reported (dropped at shutdown, or
 * invalid) are redelivered by sagad when their connection closes or the
 * step's timeout passes: delivery is at least once.
 *
 * Capacity. A worker runs at most `capacity` handlers at once in all, and
 * sagad sends a connection at most the capacity its poll declared, minus
 * what it has in flight there. A link's poll therefore declares only slots
 * that no other link holds or is owed (the rule is in saga.h, at
 * saga_worker_new). Under w->mu, per link:
 *
 *   held      jobs from the link, queued or running;
 *   held_cur  of which came on the connection up now (cur_pipe): the jobs
 *             of a dropped connection still occupy threads, but that
 *             instance no longer counts them as in flight;
 *   cap       the capacity its outstanding poll declared (0 if none);
 *   busy      its last poll that left sagad room brought steps (that
 *             instance has work; a poll with no room answered empty after
 *             the poll timeout says nothing either way);
 *   share     capacity / links, rounded: what it is owed while busy.
 *
 * A link uses held slots, plus, while its poll is out, cap - held_cur more:
 * sagad counts held_cur in flight until their outcomes arrive, and may then
 * fill the connection up to cap again, so the slots of the link's steps that
 * finish stay the link's until its poll is answered. When link i polls it
 * declares held_cur + p (at least 1, at most the capacity), where
 *
 *   free  = capacity - held_i - sum over the other links of max(use, 1)
 *   fair  = capacity - held_i - sum over the other links of max(use, owed)
 *   owed  = share while busy, else 1
 *   p     = min(free, busy or the only link ? fair : min(fair, 1))
 *
 * An idle link so asks for one slot more than it holds, enough to hear of
 * new work at once, and lends the rest of its share. p is negative for a
 * link holding more than is left after the others' shares: it declares
 * less than it holds, so sagad sends it nothing until enough of its steps
 * finished, and the slots go back to whoever is owed them. A link holding
 * nothing on its connection declares 1 whatever p is: the invariant, sum
 * over all links of max(use, 1) <= capacity, holds after every poll,
 * dispatch and outcome, so that slot is always free; it is why every link
 * can always poll, and why capacity must be at least the number of links.
 * (Jobs of a dropped connection are the exception: while they run, the
 * new connection's first poll may declare one slot they still hold.)
 * sagad's own count of
 * a connection's steps in flight is never below held_cur (it drops a step
 * only when its outcome arrives, later than the handler ends), so it never
 * sends more than the link's part. It can send more only by a step's
 * timeout: such extra jobs wait in the queue, and no more than `capacity`
 * handlers ever run.
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
/* A poll unanswered this long gets the link probed (see above). sagad
 * answers an idle poll after ~20 s by default. */
#define POLL_PROBE_MS      60000
#define REPORT_RESEND_MS   15000
#define REPORT_MAX_RESULTS 1024
/* Reports stay well below sagad's default 1 MiB message limit. */
#define REPORT_SOFT_BYTES  (512 * 1024)
#define STOP_GRACE_MS      5000
#define FLUSH_MIN_MS       1000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     10000
/* How often a poller waiting for its connection looks at the stop flag. */
#define WAIT_UP_MS         1000
/* Failed handshakes are logged at most this often per connection. */
#define HANDSHAKE_LOG_MS   30000
/* Longest error text a handler can report. */
#define REPLY_ERROR_MAX    (16 * 1024)

/* Every link keeps one slot, and the default capacity must fit them all. */
_Static_assert(DEFAULT_CAPACITY >= SL_MAX_URLS, "the default capacity serves every URL");
_Static_assert(SAGA_MAX_URLS == SL_MAX_URLS, "saga.h and internal.h agree");

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

typedef struct sl_link sl_link;

typedef struct sl_job {
	struct sl_job *next;
	sl_batch *batch;
	const Sagawire__Dispatch *d;
	sl_link *link; /* where it came from, and where its outcome goes */
	uint32_t pipe; /* the connection it came on */
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
	/* The dispatch's token, echoed: sagad believes no result without it
	 * (sagad's token.h makes 16 bytes; room for a longer one). */
	uint8_t token[32];
	uint8_t token_len;
} sl_result;

/* One sagad URL: a connection, its poller and reporter, its results and its
 * part of the capacity. The fields after `w` are guarded by w->mu. */
struct sl_link {
	saga_worker *w;
	const char *url; /* w->urls.url[i] */
	sl_conn conn;
	nng_ctx poll_ctx, report_ctx;
	nng_aio *poll_aio, *report_aio;
	pthread_t poller, reporter;
	int poller_started, reporter_started;

	pthread_cond_t result_cv; /* results queued, a probe due, or reporter_exit */
	sl_result *results, **results_tail;
	size_t n_results;
	size_t report_busy; /* results in a Report not yet acked */

	/* capacity, see the top of this file */
	uint32_t held, held_cur, cur_pipe, cap, share;
	int polling;          /* a poll is outstanding */
	int room;             /* ... declaring more than held_cur */
	int busy;             /* the last poll with room brought steps */
	int64_t poll_sent_ms; /* when the poll went out (or was last probed) */
};

struct saga_reply {
	int replied;
	/* Set by run_job for heartbeats; NULL on replies from saga_reply_new. */
	saga_worker *w;
	sl_link *link;
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
	sl_urls urls;
	char *participant;
	char *instance;     /* set by the user, or NULL */
	char *run_instance; /* what run() announces */
	char *credential;   /* sent with every poll and report; NULL = none */
	uint32_t capacity;
	size_t max_message;
	saga_log_fn log;
	void *log_user;
	sl_handler *handlers;
	size_t n_handlers;
	char errmsg[SL_ERRMSG_MAX];
	sl_link *links; /* one per URL */
	size_t n_links;
	sl_tls tls; /* saga_worker_set_tls */

	/* stop: written from signal handlers */
	int wake[2]; /* self-pipe: [0] read by run(), [1] written */
	atomic_int stop_requested;
	atomic_int running;

	/* run state, guarded by mu (lock order: mu, then a link's conn.mu) */
	pthread_mutex_t mu;
	pthread_cond_t job_cv;  /* jobs queued, or closing */
	pthread_cond_t idle_cv; /* a handler or a report finished */
	pthread_cond_t wake_cv; /* ends backoff pauses at shutdown */
	sl_job *jobs, **jobs_tail;
	size_t n_jobs;
	pthread_t *threads; /* handler threads, joined by join_handlers() */
	uint32_t n_threads;
	uint32_t n_busy;   /* handlers running a job */
	int closing;       /* handler threads exit; no new jobs start */
	int reporter_exit; /* reporters exit once their queue is empty */
	int sock_closing;  /* the sockets are about to close */
	int fatal;         /* saga_err that ends run(), 0 = none */
};

#define LOG(w, lvl, ...) sl_log((w)->log, (w)->log_user, (lvl), __VA_ARGS__)

static const char *
kind_name(int kind)
{
	return kind == SAGAWIRE__STEP_KIND__STEP_COMPENSATION ? "compensation" : "action";
}

/* ---- configuration ----------------------------------------------------- */

int
saga_worker_new(const char *urls, const char *participant, saga_worker **out)
{
	saga_worker *w;
	char err[SL_ERRMSG_MAX];
	int rv;

	if (out == NULL)
		return SAGA_EINVAL;
	*out = NULL;
	if (participant == NULL || *participant == '\0' || !sl_utf8_ok(participant))
		return SAGA_EINVAL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return SAGA_ENOMEM;
	/* The detail of a bad list is lost with the handle: callers get it
	 * from saga_url_list_check(). */
	if ((rv = sl_urls_parse(urls, &w->urls, err)) != SAGA_OK) {
		free(w);
		return rv;
	}
	w->wake[0] = w->wake[1] = -1;
	w->capacity = DEFAULT_CAPACITY;
	w->max_message = SL_DEFAULT_MAX_MESSAGE;
	atomic_init(&w->stop_requested, 0);
	atomic_init(&w->running, 0);
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		sl_urls_free(&w->urls);
		free(w);
		return SAGA_ENOMEM;
	}
	if ((w->links = calloc(w->urls.n, sizeof(*w->links))) == NULL ||
	    sl_cond_init(&w->job_cv) != 0 || sl_cond_init(&w->idle_cv) != 0 ||
	    sl_cond_init(&w->wake_cv) != 0) {
		/* Partly initialized condition variables cannot be told
		 * apart; this only happens without memory, so leak them. */
		pthread_mutex_destroy(&w->mu);
		free(w->links);
		sl_urls_free(&w->urls);
		free(w);
		return SAGA_ENOMEM;
	}
	for (; w->n_links < w->urls.n; w->n_links++) {
		sl_link *l = &w->links[w->n_links];
		l->w = w;
		l->url = w->urls.url[w->n_links];
		l->results_tail = &l->results;
		if (sl_conn_init(&l->conn) != SAGA_OK)
			break;
		if (sl_cond_init(&l->result_cv) != SAGA_OK) {
			sl_conn_fini(&l->conn);
			break;
		}
	}
	w->jobs_tail = &w->jobs;
	if (w->n_links < w->urls.n) {
		rv = SAGA_ENOMEM;
		goto fail;
	}
	if ((w->participant = strdup(participant)) == NULL) {
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
	for (size_t i = 0; i < w->n_links; i++) {
		sl_conn_fini(&w->links[i].conn);
		pthread_cond_destroy(&w->links[i].result_cv);
	}
	free(w->links);
	pthread_cond_destroy(&w->job_cv);
	pthread_cond_destroy(&w->idle_cv);
	pthread_cond_destroy(&w->wake_cv);
	pthread_mutex_destroy(&w->mu);
	sl_urls_free(&w->urls);
	sl_tls_free(&w->tls);
	free(w->participant);
	free(w->instance);
	sl_credential_free(w->credential);
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
	if (capacity < w->n_links) {
		sl_seterr(w->errmsg,
		    "capacity %u is less than the %zu sagad URLs the worker serves: each "
		    "connection keeps at least one slot",
		    capacity, w->n_links);
		return SAGA_EINVAL;
	}
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
saga_worker_set_credential(saga_worker *w, const char *credential)
{
	char *copy = NULL;
	if (w == NULL)
		return SAGA_EINVAL;
	if (atomic_load(&w->running))
		return SAGA_ESTATE;
	int rv = sl_credential_dup(credential, &copy);
	if (rv == SAGA_EINVAL)
		sl_seterr(w->errmsg,
		    "a credential is printable ASCII without spaces, at most %d "
		    "characters",
		    SL_CREDENTIAL_MAX);
	if (rv != SAGA_OK)
		return rv;
	sl_credential_free(w->credential);
	w->credential = copy;
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

int
saga_worker_set_tls(saga_worker *w, const char *ca_file, const char *cert_file,
    const char *key_file, const char *server_name)
{
	if (w == NULL)
		return SAGA_EINVAL;
	if (atomic_load(&w->running))
		return SAGA_ESTATE;
	return sl_tls_load(&w->tls, ca_file, cert_file, key_file, server_name, w->errmsg);
}

void
saga_worker_set_log(saga_worker *w, saga_log_fn fn, void *user)
{
	/* Threads read these without a lock: only before run(). */
	if (w == NULL || atomic_load(&w->running))
		return;
	w->log = fn;
	w->log_user = user;
	for (size_t i = 0; i < w->n_links; i++) {
		w->links[i].conn.log = fn;
		w->links[i].conn.log_user = user;
	}
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

/* Copies the token of the dispatch d into r. */
static void
result_set_token(sl_result *r, const Sagawire__Dispatch *d)
{
	size_t n = d->token.len < sizeof(r->token) ? d->token.len : sizeof(r->token);
	if (n > 0)
		memcpy(r->token, d->token.data, n);
	r->token_len = (uint8_t)n;
}

/* Queues a result for l's reporter. Call with w->mu held. */
static void
queue_result_locked(sl_link *l, sl_result *r)
{
	*l->results_tail = r;
	l->results_tail = &r->next;
	l->n_results++;
	pthread_cond_signal(&l->result_cv);
}

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
	sl_link *l = r->link;
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
	result_set_token(res, d);
	pthread_mutex_lock(&w->mu);
	if (w->closing || w->reporter_exit) {
		pthread_mutex_unlock(&w->mu);
		result_free(res);
		return SAGA_OK;
	}
	/* Queued like an outcome, on the step's link: its reporter sends it
	 * with the next Report to the instance that dispatched the step. */
	queue_result_locked(l, res);
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
	return 48 + sizeof(r->token) + strlen(r->step) + r->output_len +
	    (r->error ? strlen(r->error) : 0);
}

static void
drop_results(saga_worker *w)
{
	for (size_t i = 0; i < w->n_links; i++) {
		sl_link *l = &w->links[i];
		pthread_mutex_lock(&w->mu);
		sl_result *r = l->results;
		l->results = NULL;
		l->results_tail = &l->results;
		l->n_results = 0;
		pthread_mutex_unlock(&w->mu);
		while (r != NULL) {
			sl_result *n = r->next;
			result_free(r);
			r = n;
		}
	}
}

/* Results queued or in a Report not yet acknowledged, on every link. Call
 * with w->mu held. */
static size_t
unreported_locked(const saga_worker *w)
{
	size_t n = 0;
	for (size_t i = 0; i < w->n_links; i++)
		n += w->links[i].n_results + w->links[i].report_busy;
	return n;
}

/* ---- handler threads --------------------------------------------------- */

/* A job of l ended (ran, or was dropped): its slot is no longer held. Call
 * with w->mu held. */
static void
job_done_locked(const sl_job *j)
{
	sl_link *l = j->link;
	l->held--;
	if (j->pipe == l->cur_pipe && l->held_cur > 0)
		l->held_cur--;
}

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
run_job(saga_worker *w, const sl_job *j)
{
	const Sagawire__Dispatch *d = j->d;
	saga_reply reply = { .max_output = w->max_message, .w = w, .link = j->link, .d = d };
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
	result_set_token(r, d);
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

		sl_result *r = run_job(w, j);

		pthread_mutex_lock(&w->mu);
		Sagawire__Response *done = batch_release_locked(j->batch);
		job_done_locked(j);
		if (r != NULL)
			queue_result_locked(j->link, r);
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

/* ---- helpers of the pollers and reporters ------------------------------ */

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

/* ---- capacity (see the top of this file) -------------------------------- */

/* Slots link k uses: its jobs, and while its poll is out, what that poll
 * lets sagad send on top of the jobs sagad counts in flight. Call with
 * w->mu held. */
static int64_t
link_use_locked(const sl_link *k)
{
	int64_t use = k->held;
	if (k->polling && k->cap > k->held_cur)
		use += (int64_t)k->cap - k->held_cur;
	return use;
}

/* Link l is about to poll: the capacity its poll declares. Marks the poll
 * outstanding. Call with w->mu held. */
static uint32_t
plan_poll_locked(saga_worker *w, sl_link *l)
{
	int64_t c = w->capacity;
	int64_t free_slots = c - l->held, fair = c - l->held;

	/* Jobs of a connection that has since closed no longer count in
	 * sagad's view of this link: it has taken them back. */
	if (l->cur_pipe != 0 && !sl_conn_pipe_up(&l->conn, l->cur_pipe)) {
		l->cur_pipe = 0;
		l->held_cur = 0;
	}
	for (size_t i = 0; i < w->n_links; i++) {
		const sl_link *k = &w->links[i];
		if (k == l)
			continue;
		int64_t use = link_use_locked(k);
		int64_t owed = k->busy ? k->share : 1;
		free_slots -= use > 1 ? use : 1;
		fair -= use > owed ? use : owed;
	}
	int64_t want = w->n_links == 1 || l->busy ? fair : fair < 1 ? fair : 1;
	int64_t cap = (int64_t)l->held_cur + (want < free_slots ? want : free_slots);
	if (cap > c)
		cap = c;
	if (cap < 1)
		cap = 1; /* sagad refuses 0; one slot is every link's own */
	l->cap = (uint32_t)cap;
	l->room = l->cap > l->held_cur;
	l->polling = 1;
	l->poll_sent_ms = wire_mono_ms();
	return l->cap;
}

/* l's poll ended without steps (an error, or the worker stopping). */
static void
poll_failed(saga_worker *w, sl_link *l)
{
	pthread_mutex_lock(&w->mu);
	l->polling = 0;
	l->cap = 0;
	l->busy = 0;
	pthread_mutex_unlock(&w->mu);
}

/* ---- poller ------------------------------------------------------------ */

/*
 * Turns a WorkBatch that came on connection `pipe` of l into jobs and ends
 * l's poll, in one step under w->mu so that the slots the poll declared
 * pass to the jobs without a moment free. Takes ownership of resp.
 */
static void
enqueue_batch(sl_link *l, Sagawire__Response *resp, uint32_t pipe)
{
	saga_worker *w = l->w;
	const Sagawire__WorkBatch *b = resp->work;
	sl_job *head = NULL, **tail = &head;
	sl_batch *batch = NULL;
	size_t n = 0;

	if (b->n_dispatches > 0 && (batch = malloc(sizeof(*batch))) == NULL)
		LOG(w, SAGA_LOG_ERROR,
		    "out of memory: %zu steps dropped; sagad will "
		    "redeliver them after their timeout",
		    b->n_dispatches);
	for (size_t i = 0; batch != NULL && i < b->n_dispatches; i++) {
		const Sagawire__Dispatch *d = b->dispatches[i];
		char why[256];
		if (!dispatch_ok(w, d, why, sizeof(why))) {
			char id[WIRE_UUID_STRLEN] = "?";
			if (d->saga_id.len == 16)
				wire_uuid_format(d->saga_id.data, id);
			LOG(w, SAGA_LOG_ERROR,
			    "skipping an invalid dispatch from sagad at %s (saga %s): %s", l->url,
			    id, why);
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
		j->link = l;
		j->pipe = pipe;
		j->next = NULL;
		*tail = j;
		tail = &j->next;
		n++;
	}

	pthread_mutex_lock(&w->mu);
	/* An empty answer to a poll that left sagad no room says nothing of
	 * whether that instance has work. */
	if (b->n_dispatches > 0 || l->room)
		l->busy = b->n_dispatches > 0;
	l->polling = 0;
	l->cap = 0;
	if (pipe != l->cur_pipe) {
		l->cur_pipe = pipe;
		l->held_cur = 0;
	}
	if (n == 0 || w->closing) {
		/* Nothing valid, or shutting down after a fatal error: sagad
		 * redelivers. */
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
	batch->resp = resp;
	batch->refs = (unsigned)n;
	l->held += (uint32_t)n;
	l->held_cur += (uint32_t)n;
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

/* Has the worker begun closing its sockets? */
static int
sock_closing(saga_worker *w)
{
	pthread_mutex_lock(&w->mu);
	int closing = w->sock_closing;
	pthread_mutex_unlock(&w->mu);
	return closing;
}

static void *
poller_main(void *arg)
{
	sl_link *l = arg;
	saga_worker *w = l->w;
	char err[SL_ERRMSG_MAX];
	int64_t backoff = 0;
	sl_hs hs_logged; /* the handshake failures already told */
	int64_t hs_logged_ms = 0;

	sl_conn_handshakes(&l->conn, &hs_logged);

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
		/* A poll goes out on a connection that is up: one queued while
		 * its instance is away would keep the slots it declares. */
		if (!sl_conn_wait_up(&l->conn, wire_mono_ms() + WAIT_UP_MS)) {
			if (sock_closing(w))
				break;
			/* A refused handshake (TLS, or plaintext against TLS)
			 * is retried for ever by nng: say why, at most every
			 * HANDSHAKE_LOG_MS, so that it is not a silent wait. */
			sl_hs now;
			sl_conn_handshakes(&l->conn, &now);
			if (wire_mono_ms() - hs_logged_ms >= HANDSHAKE_LOG_MS &&
			    sl_conn_handshake_why(&l->conn, &hs_logged, &now, 1, err) > 0) {
				LOG(w, SAGA_LOG_ERROR, "participant %s: %s", w->participant, err);
				hs_logged = now;
				hs_logged_ms = wire_mono_ms();
			}
			continue;
		}
		pthread_mutex_lock(&w->mu);
		poll.capacity = plan_poll_locked(w, l);
		pthread_mutex_unlock(&w->mu);
		poll.participant = w->participant;
		poll.instance = w->run_instance;
		poll.max_message_bytes = w->max_message;
		req.body_case = SAGAWIRE__REQUEST__BODY_POLL;
		req.poll = &poll;
		if (w->credential != NULL)
			req.credential = w->credential;
		req.protocol = WIRE_PROTOCOL_VERSION;
		if (wire_pack_msg(&req.base, &msg) != SAGA_OK) {
			poll_failed(w, l);
			backoff = next_backoff(backoff);
			continue;
		}
		rv = sl_ctx_call(&l->conn, l->poll_ctx, l->poll_aio, msg, &reply);
		if (rv != 0) {
			poll_failed(w, l);
			if (rv == NNG_ECLOSED)
				break;
			if (rv == NNG_ECONNRESET) {
				/* The connection dropped (its loss is logged):
				 * poll again once it is back. */
				backoff = 0;
				continue;
			}
			backoff = next_backoff(backoff);
			LOG(w, SAGA_LOG_WARN, "polling sagad at %s failed: %s; again in %lld ms",
			    l->url, nng_strerror(rv), (long long)backoff);
			continue;
		}
		uint32_t pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(reply));
		rv = sl_decode_reply(reply, SAGAWIRE__RESPONSE__BODY_WORK, &resp, err);
		nng_msg_free(reply);
		if (rv != SAGA_OK)
			poll_failed(w, l);
		if (rv == SAGA_EINVAL || rv == SAGA_EUNSUPPORTED || rv == SAGA_EAUTH ||
		    rv == SAGA_EPERM) {
			/* Asking again cannot help: the participant name or
			 * capacity is refused, sagad does not serve polls, or
			 * the credential is missing, wrong, revoked or not
			 * this participant's (saga_worker_set_credential). */
			set_fatal(w, rv, "sagad at %s refused the poll of participant %s: %s",
			    l->url, w->participant, err);
			break;
		}
		if (rv != SAGA_OK) {
			backoff = next_backoff(backoff);
			LOG(w, SAGA_LOG_WARN,
			    "sagad at %s answered a poll with an error: %s: %s; "
			    "again in %lld ms",
			    l->url, saga_strerror(rv), err, (long long)backoff);
			continue;
		}
		backoff = 0;
		if (atomic_load(&w->stop_requested)) {
			poll_failed(w, l);
			if (resp->work->n_dispatches > 0)
				LOG(w, SAGA_LOG_INFO,
				    "stopping: %zu steps just received from sagad at %s are "
				    "left for it to redeliver",
				    resp->work->n_dispatches, l->url);
			wire_free(&resp->base);
			break;
		}
		enqueue_batch(l, resp, pipe);
	}
	return NULL;
}

/* ---- reporter ---------------------------------------------------------- */

/*
 * Sends results rs[0..n) in one Report on l until sagad acknowledges it.
 * A Report that sagad finds too big is split; a single result that is too
 * big is replaced by a retryable error saying so. Returns SAGA_OK, or
 * SAGA_ECLOSED when the socket closed first.
 */
static int
send_report(sl_link *l, sl_result **rs, size_t n)
{
	saga_worker *w = l->w;
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
			wr[i].token.data = rs[i]->token;
			wr[i].token.len = rs[i]->token_len;
			wp[i] = &wr[i];
		}
		rep.participant = w->participant;
		rep.n_results = n;
		rep.results = wp;
		req.body_case = SAGAWIRE__REQUEST__BODY_REPORT;
		req.report = &rep;
		if (w->credential != NULL)
			req.credential = w->credential;
		req.protocol = WIRE_PROTOCOL_VERSION;
		rv = wire_pack_msg(&req.base, &msg);
		free(wr);
		free(wp);
		if (rv != SAGA_OK) {
			backoff = next_backoff(backoff);
			continue;
		}
		rv = sl_ctx_call(&l->conn, l->report_ctx, l->report_aio, msg, &reply);
		if (rv == NNG_ECLOSED)
			return SAGA_ECLOSED;
		if (rv != 0) {
			backoff = next_backoff(backoff);
			LOG(w, SAGA_LOG_WARN,
			    "reporting %zu results to sagad at %s failed: %s; again in %lld ms", n,
			    l->url, nng_strerror(rv), (long long)backoff);
			continue;
		}
		rv = sl_decode_reply(reply, SAGAWIRE__RESPONSE__BODY_ACK, &resp, err);
		nng_msg_free(reply);
		if (rv == SAGA_OK) {
			LOG(w, SAGA_LOG_DEBUG,
			    "reported %zu results to sagad at %s: %u accepted, %u ignored, %u "
			    "refused",
			    n, l->url, resp->ack->accepted, resp->ack->ignored, resp->ack->refused);
			if (resp->ack->refused > 0)
				LOG(w, SAGA_LOG_WARN,
				    "sagad at %s refused %u of %zu results: they did not match a "
				    "dispatch to participant %s (see sagad's log)",
				    l->url, resp->ack->refused, n, w->participant);
			wire_free(&resp->base);
			return SAGA_OK;
		}
		if (rv == SAGA_ETOOBIG && n > 1) {
			LOG(w, SAGA_LOG_INFO,
			    "sagad finds a report of %zu results too big; "
			    "splitting it",
			    n);
			size_t h = n / 2;
			if ((rv = send_report(l, rs, h)) != SAGA_OK)
				return rv;
			return send_report(l, rs + h, n - h);
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
		    "sagad at %s refused a report of %zu results: %s: %s; sending it "
		    "again in %lld ms",
		    l->url, n, saga_strerror(rv), err, (long long)backoff);
	}
}

/*
 * Sends an empty Report on l and waits for any answer: bytes on a
 * connection that died silently make TCP find out and close it, and the
 * poll then fails and is sent again on a new one (see the top of this
 * file). Returns SAGA_ECLOSED if the socket closed first.
 */
static int
send_probe(sl_link *l)
{
	saga_worker *w = l->w;
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__Report rep = SAGAWIRE__REPORT__INIT;
	nng_msg *msg, *reply;

	rep.participant = w->participant;
	req.body_case = SAGAWIRE__REQUEST__BODY_REPORT;
	req.report = &rep;
	if (w->credential != NULL)
		req.credential = w->credential;
	req.protocol = WIRE_PROTOCOL_VERSION;
	if (wire_pack_msg(&req.base, &msg) != SAGA_OK)
		return SAGA_OK;
	LOG(w, SAGA_LOG_DEBUG, "no answer to a poll from sagad at %s for %d s: probing", l->url,
	    POLL_PROBE_MS / 1000);
	int rv = sl_ctx_call(&l->conn, l->report_ctx, l->report_aio, msg, &reply);
	if (rv == NNG_ECLOSED)
		return SAGA_ECLOSED;
	if (rv == 0)
		nng_msg_free(reply);
	return SAGA_OK;
}

static void *
reporter_main(void *arg)
{
	sl_link *l = arg;
	saga_worker *w = l->w;
	sl_result **batch = calloc(REPORT_MAX_RESULTS, sizeof(*batch));

	pthread_mutex_lock(&w->mu);
	while (batch != NULL) {
		int probe = 0;
		while (l->results == NULL && !w->reporter_exit) {
			/* With no poll out, look again a probe period later. */
			int64_t now = wire_mono_ms();
			int64_t due = (l->polling ? l->poll_sent_ms : now) + POLL_PROBE_MS;
			if (l->polling && due <= now) {
				probe = 1;
				break;
			}
			sl_cond_wait_ms(&l->result_cv, &w->mu, due - now);
		}
		if (probe) {
			l->poll_sent_ms = wire_mono_ms(); /* the next probe a period later */
			pthread_mutex_unlock(&w->mu);
			int rv = send_probe(l);
			pthread_mutex_lock(&w->mu);
			if (rv != SAGA_OK)
				break;
			continue;
		}
		if (l->results == NULL)
			break;
		/* Everything queued, up to the count and size caps: one
		 * result when idle, large batches under load. */
		size_t n = 0, bytes = 0;
		while (l->results != NULL && n < REPORT_MAX_RESULTS) {
			size_t sz = result_size(l->results);
			if (n > 0 && bytes + sz > REPORT_SOFT_BYTES)
				break;
			bytes += sz;
			batch[n++] = l->results;
			if ((l->results = l->results->next) == NULL)
				l->results_tail = &l->results;
			l->n_results--;
		}
		l->report_busy = n;
		pthread_mutex_unlock(&w->mu);

		int rv = send_report(l, batch, n);
		if (rv != SAGA_OK)
			LOG(w, SAGA_LOG_WARN,
			    "%zu results were not acknowledged by sagad at %s before the "
			    "connection closed; sagad will redeliver those steps",
			    n, l->url);
		for (size_t i = 0; i < n; i++)
			result_free(batch[i]);

		pthread_mutex_lock(&w->mu);
		l->report_busy = 0;
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

/*
 * Closes the sockets of links [0, n) once (their held polls and reports
 * end with NNG_ECLOSED), then waits for their pollers and reporters and
 * frees their operations.
 */
static void
close_links(saga_worker *w, size_t n)
{
	pthread_mutex_lock(&w->mu);
	w->reporter_exit = 1;
	w->sock_closing = 1;
	for (size_t i = 0; i < n; i++)
		pthread_cond_broadcast(&w->links[i].result_cv);
	pthread_cond_broadcast(&w->wake_cv);
	pthread_mutex_unlock(&w->mu);
	for (size_t i = 0; i < n; i++)
		sl_conn_close(&w->links[i].conn);
	for (size_t i = 0; i < n; i++) {
		sl_link *l = &w->links[i];
		if (l->poller_started)
			pthread_join(l->poller, NULL);
		if (l->reporter_started)
			pthread_join(l->reporter, NULL);
		l->poller_started = l->reporter_started = 0;
		if (l->poll_aio != NULL)
			nng_aio_free(l->poll_aio);
		if (l->report_aio != NULL)
			nng_aio_free(l->report_aio);
		l->poll_aio = l->report_aio = NULL;
	}
}

/* Sets up every link's socket, contexts and threads. On failure everything
 * made is undone and errmsg says why. */
static int
start(saga_worker *w)
{
	size_t i, n_open = 0;
	int rv;

	if ((rv = make_instance(w)) != SAGA_OK)
		return rv;
	if ((w->threads = calloc(w->capacity, sizeof(pthread_t))) == NULL)
		return SAGA_ENOMEM;
	for (i = 0; i < w->n_links; i++) {
		sl_link *l = &w->links[i];
		l->share = w->capacity / (uint32_t)w->n_links +
		    (i < w->capacity % (uint32_t)w->n_links ? 1 : 0);
		l->held = l->held_cur = l->cur_pipe = l->cap = 0;
		l->polling = l->busy = 0;
		l->report_busy = 0;
		l->poll_aio = l->report_aio = NULL;
		if ((rv = sl_conn_open(&l->conn, &l->url, 1, w->max_message, &w->tls, w->errmsg)) !=
		    SAGA_OK)
			goto fail;
		n_open++;
		/* Polls are not resent (see the top of this file); reports are. */
		if ((rv = nng_aio_alloc(&l->poll_aio, NULL, NULL)) != 0 ||
		    (rv = nng_aio_alloc(&l->report_aio, NULL, NULL)) != 0 ||
		    (rv = sl_ctx_open(&l->conn, NNG_DURATION_INFINITE, &l->poll_ctx)) != 0 ||
		    (rv = sl_ctx_open(&l->conn, REPORT_RESEND_MS, &l->report_ctx)) != 0) {
			sl_seterr(
			    w->errmsg, "cannot set up the nng contexts: %s", nng_strerror(rv));
			rv = wire_err_from_nng(rv);
			goto fail;
		}
	}
	for (i = 0; i < w->n_links; i++) {
		sl_link *l = &w->links[i];
		if ((rv = pthread_create(&l->reporter, NULL, reporter_main, l)) != 0) {
			sl_seterr(w->errmsg, "cannot start a reporter thread: %s", strerror(rv));
			rv = SAGA_ENOMEM;
			goto fail;
		}
		l->reporter_started = 1;
		if ((rv = pthread_create(&l->poller, NULL, poller_main, l)) != 0) {
			sl_seterr(w->errmsg, "cannot start a poller thread: %s", strerror(rv));
			rv = SAGA_ENOMEM;
			goto fail;
		}
		l->poller_started = 1;
	}
	return SAGA_OK;

fail:
	close_links(w, n_open);
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
	    w->participant, w->run_instance, w->capacity, w->n_handlers, w->urls.text);

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
		job_done_locked(j);
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

	/* 2. Flush the outcomes: every reporter sends what its link has
	 *    queued, then exits. */
	int64_t flush_deadline = wire_mono_ms() + FLUSH_MIN_MS;
	if (flush_deadline < deadline)
		flush_deadline = deadline;
	w->reporter_exit = 1;
	for (size_t i = 0; i < w->n_links; i++)
		pthread_cond_broadcast(&w->links[i].result_cv);
	while (unreported_locked(w) > 0 && wire_mono_ms() < flush_deadline)
		sl_cond_wait_ms(&w->idle_cv, &w->mu, flush_deadline - wire_mono_ms());
	size_t unflushed = unreported_locked(w);
	pthread_mutex_unlock(&w->mu);

	/* 3. Close the sockets once: held polls and any report still
	 *    waiting end with NNG_ECLOSED. */
	close_links(w, w->n_links);

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
