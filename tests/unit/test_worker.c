/*
 * Unit tests of the libsaga worker (client-lib/src/worker.c) against a fake
 * sagad: an nng REP socket on a TCP port of its own whose threads hold the
 * worker's polls until the test queues dispatches, and collect the results
 * the worker reports. The tests of a worker given several URLs run two
 * fakes that dispatch within the capacity the worker declares, like sagad.
 */
#include <check.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "saga.h"
#include "wire.h"

/* ---- fake sagad -------------------------------------------------------- */

#define FAKE_THREADS 4
#define MAX_BATCHES  64
#define MAX_RESULTS  1024
#define MAX_OWNED    256

typedef struct got_result {
	uint8_t saga_id[16];
	uint32_t step_index;
	char step[64];
	int kind;
	uint32_t attempt;
	int outcome;
	char output[256];
	size_t output_len;
	char error[256];
	uint8_t token[32];
	size_t token_len;
} got_result;

typedef struct batch {
	Sagawire__Dispatch **d;
	size_t n;
} batch;

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t io; /* orders ctx operations before nng_close */
	int sock_closed;
	nng_socket sock;
	pthread_t threads[FAKE_THREADS];
	nng_ctx ctxs[FAKE_THREADS];
	int closing;
	batch batches[MAX_BATCHES];
	size_t b_head, b_tail;
	got_result results[MAX_RESULTS];
	size_t n_results;
	int polls;
	int reports;
	int fail_reports;    /* answer this many reports with EBUSY */
	uint32_t poll_error; /* answer polls with this error code */
	uint32_t last_capacity;
	char last_participant[64];
	char last_instance[64];
	char last_poll_credential[128];   /* what the last poll carried */
	char last_report_credential[128]; /* and the last report */
	int versioned_polls;              /* polls and reports carrying */
	int versioned_reports;            /* WIRE_PROTOCOL_VERSION */
	int unversioned;                  /* requests carrying another Request.protocol */
	void *owned[MAX_OWNED];
	size_t n_owned;
} F = { .mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.io = PTHREAD_MUTEX_INITIALIZER };

/* Starts a ctx operation unless the socket is closing: nng 1.5.2 can panic
 * when one starts while nng_close runs in another thread. */
static int
start_op(void (*op)(nng_ctx, nng_aio *), nng_ctx ctx, nng_aio *aio)
{
	pthread_mutex_lock(&F.io);
	int closed = F.sock_closed;
	if (!closed)
		op(ctx, aio);
	pthread_mutex_unlock(&F.io);
	return closed ? NNG_ECLOSED : 0;
}

static char url[128];
static nng_listener fake_listener;

static void
reply(nng_ctx ctx, nng_aio *aio, const Sagawire__Response *r)
{
	nng_msg *m;
	if (wire_pack_msg(&r->base, &m) != 0)
		return;
	nng_aio_set_msg(aio, m);
	if (start_op(nng_ctx_send, ctx, aio) != 0) {
		nng_msg_free(m);
		return;
	}
	nng_aio_wait(aio);
	if (nng_aio_result(aio) != 0)
		nng_msg_free(m);
}

static void
serve_poll(nng_ctx ctx, nng_aio *aio, const Sagawire__WorkPoll *p)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__WorkBatch wb = SAGAWIRE__WORK_BATCH__INIT;
	Sagawire__Error e = SAGAWIRE__ERROR__INIT;
	batch b = { NULL, 0 };

	pthread_mutex_lock(&F.mu);
	F.polls++;
	F.last_capacity = p->capacity;
	snprintf(F.last_participant, sizeof(F.last_participant), "%s", p->participant);
	snprintf(F.last_instance, sizeof(F.last_instance), "%s", p->instance);
	pthread_cond_broadcast(&F.cv);
	if (F.poll_error != 0) {
		e.code = F.poll_error;
		e.message = "capacity 7 is not allowed here";
		r.error = &e;
		pthread_mutex_unlock(&F.mu);
		reply(ctx, aio, &r);
		return;
	}
	/* Hold the poll like sagad does, with a short poll timeout. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 1;
	while (F.b_head == F.b_tail && !F.closing)
		if (pthread_cond_timedwait(&F.cv, &F.mu, &ts) != 0)
			break;
	if (F.b_head != F.b_tail && !F.closing)
		b = F.batches[F.b_head++ % MAX_BATCHES];
	pthread_mutex_unlock(&F.mu);
	wb.n_dispatches = b.n;
	wb.dispatches = b.d;
	r.body_case = SAGAWIRE__RESPONSE__BODY_WORK;
	r.work = &wb;
	reply(ctx, aio, &r);
}

static void
serve_report(nng_ctx ctx, nng_aio *aio, const Sagawire__Report *rep)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__ReportAck ack = SAGAWIRE__REPORT_ACK__INIT;
	Sagawire__Error e = SAGAWIRE__ERROR__INIT;

	pthread_mutex_lock(&F.mu);
	F.reports++;
	if (F.fail_reports > 0) {
		F.fail_reports--;
		pthread_mutex_unlock(&F.mu);
		e.code = SAGA_EBUSY;
		e.message = "try later";
		r.error = &e;
		reply(ctx, aio, &r);
		return;
	}
	for (size_t i = 0; i < rep->n_results && F.n_results < MAX_RESULTS; i++) {
		const Sagawire__Result *x = rep->results[i];
		got_result *g = &F.results[F.n_results++];
		ck_assert_uint_eq(x->saga_id.len, 16);
		memcpy(g->saga_id, x->saga_id.data, 16);
		g->step_index = x->step_index;
		snprintf(g->step, sizeof(g->step), "%s", x->step);
		g->kind = x->kind;
		g->attempt = x->attempt;
		g->outcome = x->outcome;
		g->output_len = x->output.len;
		if (x->output.len > 0)
			memcpy(g->output, x->output.data,
			    x->output.len < sizeof(g->output) ? x->output.len : sizeof(g->output));
		snprintf(g->error, sizeof(g->error), "%s", x->error);
		g->token_len = x->token.len < sizeof(g->token) ? x->token.len : sizeof(g->token);
		if (g->token_len > 0)
			memcpy(g->token, x->token.data, g->token_len);
	}
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	ack.accepted = (uint32_t)rep->n_results;
	r.body_case = SAGAWIRE__RESPONSE__BODY_ACK;
	r.ack = &ack;
	reply(ctx, aio, &r);
}

/* Each thread serves the context fake_listen opened for it: opened here,
 * one could open while nng_close runs, and nng 1.5.2's nng_close then waits
 * for ever for that context it never saw to close. */
static void *
fake_main(void *arg)
{
	nng_ctx ctx = *(nng_ctx *)arg;
	nng_aio *aio;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0)
		return NULL;
	for (;;) {
		if (start_op(nng_ctx_recv, ctx, aio) != 0)
			break;
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			break;
		nng_msg *m = nng_aio_get_msg(aio);
		int err;
		Sagawire__Request *req = wire_unpack_request(nng_msg_body(m), nng_msg_len(m), &err);
		nng_msg_free(m);
		if (req == NULL)
			continue;
		pthread_mutex_lock(&F.mu);
		snprintf(req->body_case == SAGAWIRE__REQUEST__BODY_POLL ? F.last_poll_credential
									: F.last_report_credential,
		    sizeof(F.last_poll_credential), "%s", req->credential);
		if (req->protocol != WIRE_PROTOCOL_VERSION)
			F.unversioned++;
		else if (req->body_case == SAGAWIRE__REQUEST__BODY_POLL)
			F.versioned_polls++;
		else
			F.versioned_reports++;
		pthread_mutex_unlock(&F.mu);
		if (req->body_case == SAGAWIRE__REQUEST__BODY_POLL)
			serve_poll(ctx, aio, req->poll);
		else if (req->body_case == SAGAWIRE__REQUEST__BODY_REPORT)
			serve_report(ctx, aio, req->report);
		wire_free(&req->base);
	}
	nng_aio_free(aio);
	return NULL;
}

static void
fake_listen(void)
{
	F.closing = 0;
	F.sock_closed = 0;
	ck_assert_int_eq(nng_rep0_open(&F.sock), 0);
	ck_assert_int_eq(nng_socket_set_size(F.sock, NNG_OPT_RECVMAXSZ, 1 << 20), 0);
	/* TCP, not ipc: an nng 1.5.2 ipc listener can be wedged for good by a
	 * peer that disconnects during the handshake (nng #1518). The port is
	 * the kernel's choice the first time and reused after a restart. */
	if (url[0] == '\0') {
		int port;
		ck_assert_int_eq(nng_listen(F.sock, "tcp://127.0.0.1:0", &fake_listener, 0), 0);
		ck_assert_int_eq(
		    nng_listener_get_int(fake_listener, NNG_OPT_TCP_BOUND_PORT, &port), 0);
		snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	} else {
		ck_assert_int_eq(nng_listen(F.sock, url, &fake_listener, 0), 0);
	}
	for (int i = 0; i < FAKE_THREADS; i++) {
		ck_assert_int_eq(nng_ctx_open(&F.ctxs[i], F.sock), 0);
		ck_assert_int_eq(pthread_create(&F.threads[i], NULL, fake_main, &F.ctxs[i]), 0);
	}
}

/* sagad restarting, as the worker sees it: its connection drops and a new
 * one is accepted on the same address. Done by closing the listener (which
 * closes the connections it accepted) rather than the socket: nng 1.5.2's
 * nng_close can hang when messages arrive while it closes (nng #1543), and
 * the worker sends polls and reports at any moment. */
static void
fake_restart(void)
{
	ck_assert_int_eq(nng_listener_close(fake_listener), 0);
	usleep(100 * 1000);
	ck_assert_int_eq(nng_listen(F.sock, url, &fake_listener, 0), 0);
}

static void
fake_close(void)
{
	pthread_mutex_lock(&F.mu);
	F.closing = 1;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	pthread_mutex_lock(&F.io);
	F.sock_closed = 1;
	pthread_mutex_unlock(&F.io);
	nng_close(F.sock);
	for (int i = 0; i < FAKE_THREADS; i++)
		pthread_join(F.threads[i], NULL);
}

static void
fake_start(void)
{
	url[0] = '\0';
	fake_listen();
}

static void
fake_stop(void)
{
	fake_close();
	for (size_t i = 0; i < F.n_owned; i++)
		free(F.owned[i]);
}

static void *
own(void *p)
{
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_lt(F.n_owned, MAX_OWNED);
	F.owned[F.n_owned++] = p;
	return p;
}

/* The token the fake sagad sends with a dispatch: 16 bytes of its own. */
static void
fake_token(uint8_t id, uint32_t step_index, int kind, uint8_t out[16])
{
	for (int i = 0; i < 16; i++)
		out[i] = (uint8_t)(id * 31 + step_index * 7 + (uint32_t)kind * 3 + (uint32_t)i);
}

/* A dispatch for participant "payments"; the saga id is 16 bytes of `id`;
 * its token is fake_token's. */
static Sagawire__Dispatch *
dispatch(uint8_t id, uint32_t step_index, const char *step, const char *rpc, int kind)
{
	Sagawire__Dispatch *d = own(calloc(1, sizeof(*d)));
	uint8_t *sid = own(malloc(16));
	uint8_t *tok = own(malloc(16));
	sagawire__dispatch__init(d);
	memset(sid, id, 16);
	fake_token(id, step_index, kind, tok);
	d->token.data = tok;
	d->token.len = 16;
	d->saga_id.data = sid;
	d->saga_id.len = 16;
	d->definition = "shop.OrderSaga";
	d->version = 1;
	d->step = (char *)step;
	d->rpc = (char *)rpc;
	d->kind = kind;
	d->attempt = 1;
	d->idempotency_key = "key";
	d->participant = "payments";
	d->step_index = step_index;
	return d;
}

#define ACTION SAGAWIRE__STEP_KIND__STEP_ACTION
#define COMP   SAGAWIRE__STEP_KIND__STEP_COMPENSATION

/* Queues one WorkBatch for the next poll. */
static void
push(Sagawire__Dispatch **ds, size_t n)
{
	Sagawire__Dispatch **copy = own(calloc(n, sizeof(*copy)));
	memcpy(copy, ds, n * sizeof(*copy));
	pthread_mutex_lock(&F.mu);
	F.batches[F.b_tail++ % MAX_BATCHES] = (batch) { copy, n };
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

/* Waits until at least n results arrived (or ms passed); returns the count. */
static size_t
wait_results(size_t n, int ms)
{
	int64_t until = wire_mono_ms() + ms;
	pthread_mutex_lock(&F.mu);
	while (F.n_results < n && wire_mono_ms() < until) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&F.cv, &F.mu, &ts);
	}
	size_t got = F.n_results;
	pthread_mutex_unlock(&F.mu);
	return got;
}

static int
wait_polls(int n, int ms)
{
	int64_t until = wire_mono_ms() + ms;
	int got;
	for (;;) {
		pthread_mutex_lock(&F.mu);
		got = F.polls;
		pthread_mutex_unlock(&F.mu);
		if (got >= n || wire_mono_ms() >= until)
			return got;
		usleep(5000);
	}
}

static const got_result *
result_for(const char *step)
{
	for (size_t i = 0; i < F.n_results; i++)
		if (strcmp(F.results[i].step, step) == 0)
			return &F.results[i];
	static const got_result none;
	ck_abort_msg("no result was reported for step %s", step);
	return &none;
}

/* ---- worker under test ------------------------------------------------- */

static saga_worker *W;
static pthread_t run_thread;
static int run_rv = -1;

static void *
run_main(void *arg)
{
	(void)arg;
	run_rv = saga_worker_run(W);
	return NULL;
}

static void
worker_new(uint32_t capacity)
{
	ck_assert_int_eq(saga_worker_new(url, "payments", &W), SAGA_OK);
	ck_assert_int_eq(saga_worker_set_capacity(W, capacity), SAGA_OK);
}

static void
worker_start(void)
{
	ck_assert_int_eq(pthread_create(&run_thread, NULL, run_main, NULL), 0);
}

/* Stops the worker and returns what run() returned. */
static int
worker_stop(void)
{
	saga_worker_stop(W);
	pthread_join(run_thread, NULL);
	saga_worker_free(W);
	W = NULL;
	return run_rv;
}

/* ---- handlers ---------------------------------------------------------- */

static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char saga_id[64];
	char definition[64];
	uint32_t version;
	char step[64];
	char rpc[64];
	saga_step_kind kind;
	uint32_t attempt;
	char key[64];
	uint32_t timeout_ms;
	char input[64];
	size_t n_results;
	char charge_result[64];
	int missing_is_null;
	int second_reply_rv;
	int too_big_rv;
} seen;

static void
h_record(const saga_step *s, saga_reply *r, void *user)
{
	(void)user;
	pthread_mutex_lock(&seen_mu);
	snprintf(seen.saga_id, sizeof(seen.saga_id), "%s", s->saga_id);
	snprintf(seen.definition, sizeof(seen.definition), "%s", s->definition);
	seen.version = s->version;
	snprintf(seen.step, sizeof(seen.step), "%s", s->step);
	snprintf(seen.rpc, sizeof(seen.rpc), "%s", s->rpc);
	seen.kind = s->kind;
	seen.attempt = s->attempt;
	snprintf(seen.key, sizeof(seen.key), "%s", s->idempotency_key);
	seen.timeout_ms = s->timeout_ms;
	snprintf(seen.input, sizeof(seen.input), "%.*s", (int)s->input_len, (const char *)s->input);
	seen.n_results = s->n_results;
	const saga_step_result *c = saga_step_find_result(s, "Charge");
	if (c != NULL)
		snprintf(seen.charge_result, sizeof(seen.charge_result), "%.*s", (int)c->len,
		    (const char *)c->data);
	seen.missing_is_null = saga_step_find_result(s, "Nope") == NULL;
	pthread_mutex_unlock(&seen_mu);
	saga_reply_success(r, "refunded", 8);
}

static void
h_success(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	(void)user;
	saga_reply_success(r, "charge-77", 9);
}

static void
h_retry(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	(void)user;
	saga_reply_retry(r, "bank unreachable");
}

static void
h_fail(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	(void)user;
	saga_reply_fail(r, "card declined");
}

static void
h_bad_text(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	(void)user;
	saga_reply_fail(r, "caf\xc3\xa9 \xff!");
}

static void
h_silent(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	(void)r;
	(void)user;
}

static void
h_double(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	(void)user;
	char big[2048] = { 0 };
	int too_big = saga_reply_success(r, big, sizeof(big));
	saga_reply_success(r, "first", 5);
	int second = saga_reply_fail(r, "second");
	pthread_mutex_lock(&seen_mu);
	seen.too_big_rv = too_big;
	seen.second_reply_rv = second;
	pthread_mutex_unlock(&seen_mu);
}

static atomic_int running_now, running_max, started;

static void
h_slow(const saga_step *s, saga_reply *r, void *user)
{
	int ms = (int)(intptr_t)user;
	(void)s;
	atomic_fetch_add(&started, 1);
	int now = atomic_fetch_add(&running_now, 1) + 1;
	int max = atomic_load(&running_max);
	while (now > max && !atomic_compare_exchange_weak(&running_max, &max, now))
		;
	usleep((useconds_t)ms * 1000);
	atomic_fetch_sub(&running_now, 1);
	saga_reply_success(r, "slow", 4);
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(handler_gets_step_fields_and_results)
{
	static Sagawire__StepResult r1 = SAGAWIRE__STEP_RESULT__INIT,
				    r2 = SAGAWIRE__STEP_RESULT__INIT;
	static Sagawire__StepResult *rs[2] = { &r1, &r2 };
	r1.step = "Reserve";
	r1.result.data = (uint8_t *)"r1";
	r1.result.len = 2;
	r2.step = "Charge";
	r2.result.data = (uint8_t *)"ch_123";
	r2.result.len = 6;
	Sagawire__Dispatch *d = dispatch(0xab, 1, "Charge", "Refund", COMP);
	d->version = 3;
	d->attempt = 2;
	d->idempotency_key = "abab/Charge/compensation";
	d->timeout_ms = 1500;
	d->input.data = (uint8_t *)"in";
	d->input.len = 2;
	d->n_results = 2;
	d->results = rs;

	worker_new(4);
	ck_assert_int_eq(saga_worker_on_compensation(W, "Refund", h_record, NULL), SAGA_OK);
	worker_start();
	push(&d, 1);
	ck_assert_uint_eq(wait_results(1, 5000), 1);

	pthread_mutex_lock(&seen_mu);
	ck_assert_str_eq(seen.saga_id, "abababab-abab-abab-abab-abababababab");
	ck_assert_str_eq(seen.definition, "shop.OrderSaga");
	ck_assert_uint_eq(seen.version, 3);
	ck_assert_str_eq(seen.step, "Charge");
	ck_assert_str_eq(seen.rpc, "Refund");
	ck_assert_int_eq(seen.kind, SAGA_COMPENSATION);
	ck_assert_uint_eq(seen.attempt, 2);
	ck_assert_str_eq(seen.key, "abab/Charge/compensation");
	ck_assert_uint_eq(seen.timeout_ms, 1500);
	ck_assert_str_eq(seen.input, "in");
	ck_assert_uint_eq(seen.n_results, 2);
	ck_assert_str_eq(seen.charge_result, "ch_123");
	ck_assert_int_eq(seen.missing_is_null, 1);
	pthread_mutex_unlock(&seen_mu);

	const got_result *g = &F.results[0];
	uint8_t id[16];
	memset(id, 0xab, 16);
	ck_assert_mem_eq(g->saga_id, id, 16);
	ck_assert_uint_eq(g->step_index, 1);
	ck_assert_str_eq(g->step, "Charge");
	ck_assert_int_eq(g->kind, COMP);
	ck_assert_uint_eq(g->attempt, 2);
	ck_assert_int_eq(g->outcome, SAGAWIRE__OUTCOME__OUTCOME_SUCCESS);
	ck_assert_uint_eq(g->output_len, 8);
	ck_assert_mem_eq(g->output, "refunded", 8);
	ck_assert_str_eq(g->error, "");
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

START_TEST(outcomes_are_reported_with_outputs_and_errors)
{
	Sagawire__Dispatch *ds[4] = {
		dispatch(1, 0, "Charge", "Charge", ACTION),
		dispatch(2, 0, "Reserve", "Reserve", ACTION),
		dispatch(3, 0, "Ship", "Ship", ACTION),
		dispatch(4, 0, "Text", "Text", ACTION),
	};
	worker_new(4);
	ck_assert_int_eq(saga_worker_on_action(W, "Charge", h_success, NULL), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(W, "Reserve", h_retry, NULL), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(W, "Ship", h_fail, NULL), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(W, "Text", h_bad_text, NULL), SAGA_OK);
	worker_start();
	push(ds, 4);
	ck_assert_uint_eq(wait_results(4, 5000), 4);
	pthread_mutex_lock(&F.mu);
	const got_result *g = result_for("Charge");
	ck_assert_int_eq(g->outcome, SAGAWIRE__OUTCOME__OUTCOME_SUCCESS);
	ck_assert_uint_eq(g->output_len, 9);
	ck_assert_mem_eq(g->output, "charge-77", 9);
	g = result_for("Reserve");
	ck_assert_int_eq(g->outcome, SAGAWIRE__OUTCOME__OUTCOME_RETRY);
	ck_assert_str_eq(g->error, "bank unreachable");
	ck_assert_uint_eq(g->output_len, 0);
	g = result_for("Ship");
	ck_assert_int_eq(g->outcome, SAGAWIRE__OUTCOME__OUTCOME_FAIL);
	ck_assert_str_eq(g->error, "card declined");
	/* Invalid UTF-8 in an error is replaced, not sent as an invalid string. */
	g = result_for("Text");
	ck_assert_str_eq(g->error, "caf\xc3\xa9 ?!");
	/* Every poll and report says which protocol it speaks. */
	ck_assert_int_ge(F.versioned_polls, 1);
	ck_assert_int_ge(F.versioned_reports, 1);
	ck_assert_int_eq(F.unversioned, 0);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

static void
h_beat_then_success(const saga_step *s, saga_reply *r, void *user)
{
	(void)user;
	saga_reply_heartbeat(r); /* the test counts what arrives */
	/* the heartbeat goes out before the outcome */
	int64_t until = wire_mono_ms() + 5000;
	for (;;) {
		pthread_mutex_lock(&F.mu);
		int beat_seen = 0;
		for (size_t i = 0; i < F.n_results; i++)
			beat_seen += F.results[i].outcome == SAGAWIRE__OUTCOME__OUTCOME_HEARTBEAT &&
			    strcmp(F.results[i].step, s->step) == 0;
		pthread_mutex_unlock(&F.mu);
		if (beat_seen || wire_mono_ms() > until)
			break;
		usleep(5000);
	}
	saga_reply_success(r, "done", 4);
}

/* sagad believes a result only with its dispatch's token (docs/SECURITY.md):
 * every outcome and heartbeat carries back the token of the dispatch it is
 * about, whatever the order they come in. */
START_TEST(every_outcome_and_heartbeat_echoes_its_dispatch_token)
{
	Sagawire__Dispatch *ds[3] = {
		dispatch(7, 0, "Charge", "Charge", ACTION),
		dispatch(8, 1, "Reserve", "Reserve", ACTION),
		dispatch(9, 0, "Charge", "Refund", COMP),
	};
	worker_new(4);
	ck_assert_int_eq(saga_worker_on_action(W, "Charge", h_beat_then_success, NULL), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(W, "Reserve", h_beat_then_success, NULL), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_compensation(W, "Refund", h_fail, NULL), SAGA_OK);
	worker_start();
	push(ds, 3);
	ck_assert_uint_eq(wait_results(5, 10000), 5);
	pthread_mutex_lock(&F.mu);
	int beats = 0;
	for (size_t i = 0; i < F.n_results; i++) {
		const got_result *g = &F.results[i];
		uint8_t want[16];
		fake_token(g->saga_id[0], g->step_index, g->kind, want);
		ck_assert_msg(g->token_len == 16 && memcmp(g->token, want, 16) == 0,
		    "result %zu (%s, outcome %d) does not carry its dispatch's token", i, g->step,
		    g->outcome);
		beats += g->outcome == SAGAWIRE__OUTCOME__OUTCOME_HEARTBEAT;
	}
	ck_assert_int_eq(beats, 2);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

static atomic_int warn_lines;

static void
count_warnings(saga_log_level level, const char *line, void *user)
{
	(void)user;
	if (level <= SAGA_LOG_WARN && strstr(line, "has no handler") != NULL)
		atomic_fetch_add(&warn_lines, 1);
}

START_TEST(missing_handler_reports_retry_with_message)
{
	Sagawire__Dispatch *ds[2] = {
		dispatch(1, 0, "Charge", "Charge", ACTION),
		dispatch(2, 0, "Charge", "Refund", COMP),
	};
	worker_new(2);
	saga_worker_set_log(W, count_warnings, NULL);
	/* An action handler named Refund must not serve the compensation. */
	ck_assert_int_eq(saga_worker_on_action(W, "Refund", h_success, NULL), SAGA_OK);
	worker_start();
	push(ds, 2);
	ck_assert_uint_eq(wait_results(2, 5000), 2);
	pthread_mutex_lock(&F.mu);
	for (size_t i = 0; i < 2; i++) {
		const got_result *g = &F.results[i];
		ck_assert_int_eq(g->outcome, SAGAWIRE__OUTCOME__OUTCOME_RETRY);
		if (g->kind == ACTION)
			ck_assert_str_eq(
			    g->error, "participant payments has no handler for action Charge");
		else
			ck_assert_str_eq(g->error,
			    "participant payments has no handler for compensation Refund");
	}
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(atomic_load(&warn_lines), 2);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

START_TEST(handler_without_reply_reports_retry_and_second_reply_is_refused)
{
	Sagawire__Dispatch *ds[2] = {
		dispatch(1, 0, "Silent", "Silent", ACTION),
		dispatch(2, 0, "Double", "Double", ACTION),
	};
	worker_new(2);
	ck_assert_int_eq(saga_worker_set_max_message(W, 1024), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(W, "Silent", h_silent, NULL), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(W, "Double", h_double, NULL), SAGA_OK);
	worker_start();
	push(ds, 2);
	ck_assert_uint_eq(wait_results(2, 5000), 2);
	pthread_mutex_lock(&F.mu);
	const got_result *g = result_for("Silent");
	ck_assert_int_eq(g->outcome, SAGAWIRE__OUTCOME__OUTCOME_RETRY);
	ck_assert_str_eq(g->error, "handler returned without replying");
	g = result_for("Double");
	ck_assert_int_eq(g->outcome, SAGAWIRE__OUTCOME__OUTCOME_SUCCESS);
	ck_assert_mem_eq(g->output, "first", 5);
	pthread_mutex_unlock(&F.mu);
	pthread_mutex_lock(&seen_mu);
	ck_assert_int_eq(seen.second_reply_rv, SAGA_ESTATE);
	ck_assert_int_eq(seen.too_big_rv, SAGA_ETOOBIG);
	pthread_mutex_unlock(&seen_mu);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

START_TEST(capacity_bounds_concurrent_handlers)
{
	Sagawire__Dispatch *ds[12];
	char *names[12];
	for (int i = 0; i < 12; i++) {
		names[i] = own(malloc(16));
		snprintf(names[i], 16, "S%d", i);
		ds[i] = dispatch((uint8_t)i, (uint32_t)i, names[i], "Slow", ACTION);
	}
	worker_new(3);
	ck_assert_int_eq(saga_worker_set_instance(W, "replica-a"), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(W, "Slow", h_slow, (void *)(intptr_t)50), SAGA_OK);
	worker_start();
	/* The fake ignores capacity and sends more than that at once. */
	push(ds, 7);
	push(ds + 7, 5);
	ck_assert_uint_eq(wait_results(12, 10000), 12);
	ck_assert_int_le(atomic_load(&running_max), 3);
	ck_assert_int_ge(atomic_load(&running_max), 2);
	pthread_mutex_lock(&F.mu);
	ck_assert_uint_eq(F.last_capacity, 3);
	ck_assert_str_eq(F.last_participant, "payments");
	ck_assert_str_eq(F.last_instance, "replica-a");
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

START_TEST(stop_waits_for_running_handlers_and_flushes_reports)
{
	Sagawire__Dispatch *d = dispatch(1, 0, "Slow", "Slow", ACTION);
	worker_new(2);
	ck_assert_int_eq(saga_worker_on_action(W, "Slow", h_slow, (void *)(intptr_t)400), SAGA_OK);
	worker_start();
	push(&d, 1);
	while (atomic_load(&started) == 0)
		usleep(1000);
	int64_t t0 = wire_mono_ms();
	ck_assert_int_eq(worker_stop(), SAGA_OK);
	int64_t took = wire_mono_ms() - t0;
	ck_assert_int_lt(took, 5000);
	/* The outcome was reported before run() returned. */
	pthread_mutex_lock(&F.mu);
	ck_assert_uint_eq(F.n_results, 1);
	ck_assert_int_eq(F.results[0].outcome, SAGAWIRE__OUTCOME__OUTCOME_SUCCESS);
	pthread_mutex_unlock(&F.mu);
}
END_TEST

START_TEST(stop_returns_promptly_while_a_poll_is_held)
{
	worker_new(2);
	ck_assert_int_eq(saga_worker_on_action(W, "Slow", h_slow, NULL), SAGA_OK);
	worker_start();
	ck_assert_int_ge(wait_polls(1, 5000), 1);
	int64_t t0 = wire_mono_ms();
	ck_assert_int_eq(worker_stop(), SAGA_OK);
	ck_assert_int_lt(wire_mono_ms() - t0, 1000);
}
END_TEST

START_TEST(invalid_dispatches_are_skipped)
{
	Sagawire__Dispatch *ds[5] = {
		dispatch(1, 0, "A", "Charge", ACTION),
		dispatch(2, 0, "B", "Charge", ACTION),
		dispatch(3, 0, "C", "Charge", ACTION),
		dispatch(4, 0, "D", "Charge", ACTION),
		dispatch(5, 0, "Good", "Charge", ACTION),
	};
	ds[0]->saga_id.len = 5;          /* bad id length */
	ds[1]->rpc = "Ch\xc3(arge";      /* invalid UTF-8 */
	ds[2]->kind = 9;                 /* unknown kind */
	ds[3]->participant = "shipping"; /* not ours */
	worker_new(2);
	ck_assert_int_eq(saga_worker_on_action(W, "Charge", h_success, NULL), SAGA_OK);
	worker_start();
	push(ds, 5);
	ck_assert_uint_eq(wait_results(1, 5000), 1);
	/* Give skipped ones a chance to show up wrongly. */
	ck_assert_uint_eq(wait_results(2, 300), 1);
	ck_assert_str_eq(F.results[0].step, "Good");
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

START_TEST(worker_polls_again_after_server_restart)
{
	Sagawire__Dispatch *d1 = dispatch(1, 0, "Charge", "Charge", ACTION);
	Sagawire__Dispatch *d2 = dispatch(2, 0, "Charge2", "Charge", ACTION);
	worker_new(2);
	ck_assert_int_eq(saga_worker_on_action(W, "Charge", h_success, NULL), SAGA_OK);
	worker_start();
	push(&d1, 1);
	ck_assert_uint_eq(wait_results(1, 5000), 1);
	int polls = wait_polls(2, 5000);
	ck_assert_int_ge(polls, 2);

	fake_restart();
	/* The held poll is resent on the new connection. */
	ck_assert_int_gt(wait_polls(polls + 1, 5000), polls);
	/* The fake holds a poll for up to 1 s: let those held for the dropped
	 * connection expire, or one of them could take d2 and answer into it. */
	usleep(1200 * 1000);
	push(&d2, 1);
	/* Waits for Charge2; Charge may come again first: a report whose ack
	 * was lost in the restart is sent again (delivery is at least once). */
	int64_t until = wire_mono_ms() + 5000;
	int found = 0;
	while (!found && wire_mono_ms() < until) {
		pthread_mutex_lock(&F.mu);
		size_t have = F.n_results;
		pthread_mutex_unlock(&F.mu);
		size_t n = wait_results(have + 1, 100);
		pthread_mutex_lock(&F.mu);
		for (size_t i = 0; i < n; i++)
			found |= strcmp(F.results[i].step, "Charge2") == 0;
		pthread_mutex_unlock(&F.mu);
	}
	ck_assert_msg(found, "no result for the dispatch sent after the restart");
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

START_TEST(refused_report_is_sent_again)
{
	Sagawire__Dispatch *d = dispatch(1, 0, "Charge", "Charge", ACTION);
	F.fail_reports = 2;
	worker_new(2);
	ck_assert_int_eq(saga_worker_on_action(W, "Charge", h_success, NULL), SAGA_OK);
	worker_start();
	push(&d, 1);
	ck_assert_uint_eq(wait_results(1, 5000), 1);
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.reports, 3);
	ck_assert_str_eq(F.results[0].step, "Charge");
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
}
END_TEST

START_TEST(refused_poll_ends_run_with_the_error)
{
	F.poll_error = SAGA_EINVAL;
	worker_new(2);
	ck_assert_int_eq(saga_worker_run(W), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_worker_errmsg(W), "capacity 7 is not allowed here"));
	saga_worker_free(W);
}
END_TEST

START_TEST(polls_carry_the_credential_and_a_refused_one_ends_run)
{
	const char *cred = "0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	worker_new(2);
	ck_assert_int_eq(saga_worker_set_credential(W, "not one"), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_set_credential(W, cred), SAGA_OK);
	F.poll_error = SAGA_EPERM;
	ck_assert_int_eq(saga_worker_run(W), SAGA_EPERM);
	pthread_mutex_lock(&F.mu);
	ck_assert_str_eq(F.last_poll_credential, cred);
	pthread_mutex_unlock(&F.mu);
	saga_worker_free(W);
}
END_TEST

static void
on_sigusr1(int sig)
{
	(void)sig;
	saga_worker_stop(W);
}

START_TEST(stop_from_a_signal_handler_ends_run)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;
	sigaction(SIGUSR1, &sa, NULL);
	worker_new(2);
	worker_start();
	ck_assert_int_ge(wait_polls(1, 5000), 1);
	raise(SIGUSR1);
	pthread_join(run_thread, NULL);
	ck_assert_int_eq(run_rv, SAGA_OK);
	saga_worker_free(W);
}
END_TEST

START_TEST(stop_before_run_returns_at_once)
{
	worker_new(2);
	saga_worker_stop(W);
	ck_assert_int_eq(saga_worker_run(W), SAGA_OK);
	ck_assert_int_eq(wait_polls(1, 200), 0);
	saga_worker_free(W);
}
END_TEST

START_TEST(configuration_is_validated)
{
	saga_worker *w = NULL;
	ck_assert_int_eq(saga_worker_new(url, NULL, &w), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_new(url, "", &w), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_new(url, "bad\xff", &w), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_new("not a url", "p", &w), SAGA_EINVAL);
	ck_assert_ptr_null(w);
	ck_assert_int_eq(saga_worker_new(NULL, "p", &w), SAGA_OK);
	ck_assert_int_eq(saga_worker_set_capacity(w, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_set_capacity(w, 4097), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_set_capacity(w, 4096), SAGA_OK);
	ck_assert_int_eq(saga_worker_set_max_message(w, 100), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_on_action(w, "A", NULL, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_worker_on_action(w, "A", h_success, NULL), SAGA_OK);
	ck_assert_int_eq(saga_worker_on_action(w, "A", h_success, NULL), SAGA_EEXIST);
	ck_assert_int_eq(saga_worker_on_compensation(w, "A", h_success, NULL), SAGA_OK);
	ck_assert_ptr_null(saga_step_find_result(NULL, "x"));
	ck_assert_int_eq(saga_reply_success(NULL, NULL, 0), SAGA_EINVAL);
	saga_worker_free(w);
	saga_worker_free(NULL);
	saga_worker_stop(NULL);
}
END_TEST

/* ---- two fake sagads, for a worker given several URLs --------------------

 * Each instance is a REP socket of its own that behaves like sagad's
 * dispatch: it holds a poll until it has a step and room (the capacity the
 * poll declared minus its steps in flight, which drop when their outcomes
 * are reported), answers an idle poll empty after hold_ms, and sends as
 * many steps as that room allows. The saga id of every step names the
 * instance that sent it (its first byte), so a result reported to the other
 * one is seen. Under M.mu, which the two share. */

#define INST_THREADS 3

typedef struct inst {
	uint8_t tag; /* first byte of the saga ids it makes */
	nng_socket sock;
	nng_listener listener;
	char url[64];
	int sock_closed; /* under M.io */
	pthread_t threads[INST_THREADS];
	struct inst_thread {
		struct inst *in;
		nng_ctx ctx; /* opened by inst_start (see fake_main) */
	} thr[INST_THREADS];
	int hold_ms; /* an idle poll is answered empty after this */
	int live[8]; /* ids of the connections up */
	int n_live;
	int pending;       /* steps waiting for a poll with room */
	uint32_t next_seq; /* sequence of the next step */
	int outstanding;   /* dispatched, outcome not reported yet */
	int polls;         /* polls received */
	int polls_held;    /* polls being held now */
	uint32_t last_cap; /* capacity of the last poll */
	int dispatched;    /* steps sent */
	int results;       /* outcomes received */
	int over_cap;      /* steps sent beyond the capacity declared (must stay 0) */
	int foreign;       /* outcomes of steps this instance never sent (must stay 0) */
	int seen[256];     /* outcomes per sequence number, to see duplicates */
} inst;

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t io;
	int closing;
	int max_total; /* most steps outstanding at both at once, while gated */
	inst a, b;
} M = { .mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.io = PTHREAD_MUTEX_INITIALIZER };

static int
inst_op(inst *in, void (*op)(nng_ctx, nng_aio *), nng_ctx ctx, nng_aio *aio)
{
	pthread_mutex_lock(&M.io);
	int closed = in->sock_closed;
	if (!closed)
		op(ctx, aio);
	pthread_mutex_unlock(&M.io);
	return closed ? NNG_ECLOSED : 0;
}

static void
inst_reply(inst *in, nng_ctx ctx, nng_aio *aio, const Sagawire__Response *r)
{
	nng_msg *m;
	if (wire_pack_msg(&r->base, &m) != 0)
		return;
	nng_aio_set_msg(aio, m);
	if (inst_op(in, nng_ctx_send, ctx, aio) != 0) {
		nng_msg_free(m);
		return;
	}
	nng_aio_wait(aio);
	if (nng_aio_result(aio) != 0)
		nng_msg_free(m);
}

/* Is connection pipe_id up? Call with M.mu held. */
static int
inst_live(const inst *in, int pipe_id)
{
	for (int i = 0; i < in->n_live; i++)
		if (in->live[i] == pipe_id)
			return 1;
	return 0;
}

static void
inst_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	inst *in = arg;
	pthread_mutex_lock(&M.mu);
	if (ev == NNG_PIPE_EV_ADD_POST && in->n_live < 8) {
		in->live[in->n_live++] = nng_pipe_id(p);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		for (int i = 0; i < in->n_live; i++)
			if (in->live[i] == nng_pipe_id(p))
				in->live[i--] = in->live[--in->n_live];
	}
	pthread_cond_broadcast(&M.cv);
	pthread_mutex_unlock(&M.mu);
}

static void
inst_poll(inst *in, nng_ctx ctx, nng_aio *aio, const Sagawire__WorkPoll *p, int pipe_id)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__WorkBatch wb = SAGAWIRE__WORK_BATCH__INIT;
	Sagawire__Dispatch ds[16], *dp[16];
	uint8_t ids[16][16];
	char steps[16][16];
	size_t n = 0;
	int64_t until = wire_mono_ms() + in->hold_ms;

	pthread_mutex_lock(&M.mu);
	in->polls++;
	in->polls_held++;
	in->last_cap = p->capacity;
	pthread_cond_broadcast(&M.cv);
	/* A poll held for a connection that dropped gets nothing, as in
	 * sagad, which forgets it: a step sent there would be lost. */
	while (!M.closing && wire_mono_ms() < until && inst_live(in, pipe_id) &&
	    (in->pending == 0 || in->outstanding >= (int)p->capacity)) {
		/* Like sagad, a poll is held while there is no room: outcomes
		 * reported make room. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&M.cv, &M.mu, &ts);
	}
	while (!M.closing && inst_live(in, pipe_id) && in->pending > 0 &&
	    in->outstanding < (int)p->capacity && n < 16) {
		sagawire__dispatch__init(&ds[n]);
		memset(ids[n], 0, 16);
		ids[n][0] = in->tag;
		ids[n][1] = (uint8_t)in->next_seq;
		snprintf(steps[n], sizeof(steps[n]), "%c%u", in->tag, in->next_seq);
		ds[n].saga_id.data = ids[n];
		ds[n].saga_id.len = 16;
		ds[n].definition = "shop.OrderSaga";
		ds[n].version = 1;
		ds[n].step = steps[n];
		ds[n].rpc = "Gate";
		ds[n].kind = ACTION;
		ds[n].attempt = 1;
		ds[n].idempotency_key = steps[n];
		ds[n].participant = "payments";
		dp[n] = &ds[n];
		n++;
		in->next_seq++;
		in->pending--;
		in->outstanding++;
		in->dispatched++;
	}
	if (in->outstanding > (int)p->capacity)
		in->over_cap++;
	int total = M.a.outstanding + M.b.outstanding;
	if (total > M.max_total)
		M.max_total = total;
	in->polls_held--;
	pthread_cond_broadcast(&M.cv);
	pthread_mutex_unlock(&M.mu);
	wb.n_dispatches = n;
	wb.dispatches = dp;
	r.body_case = SAGAWIRE__RESPONSE__BODY_WORK;
	r.work = &wb;
	inst_reply(in, ctx, aio, &r);
}

static void
inst_report(inst *in, nng_ctx ctx, nng_aio *aio, const Sagawire__Report *rep)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__ReportAck ack = SAGAWIRE__REPORT_ACK__INIT;

	pthread_mutex_lock(&M.mu);
	for (size_t i = 0; i < rep->n_results; i++) {
		const Sagawire__Result *x = rep->results[i];
		if (x->outcome == SAGAWIRE__OUTCOME__OUTCOME_HEARTBEAT)
			continue;
		if (x->saga_id.len != 16 || x->saga_id.data[0] != in->tag) {
			in->foreign++;
			continue;
		}
		in->results++;
		if (in->seen[x->saga_id.data[1]]++ == 0 && in->outstanding > 0)
			in->outstanding--;
	}
	pthread_cond_broadcast(&M.cv);
	pthread_mutex_unlock(&M.mu);
	ack.accepted = (uint32_t)rep->n_results;
	r.body_case = SAGAWIRE__RESPONSE__BODY_ACK;
	r.ack = &ack;
	inst_reply(in, ctx, aio, &r);
}

static void *
inst_main(void *arg)
{
	struct inst_thread *t = arg;
	inst *in = t->in;
	nng_ctx ctx = t->ctx;
	nng_aio *aio;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0)
		return NULL;
	for (;;) {
		if (inst_op(in, nng_ctx_recv, ctx, aio) != 0)
			break;
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			break;
		nng_msg *m = nng_aio_get_msg(aio);
		int err, pipe_id = nng_pipe_id(nng_msg_get_pipe(m));
		Sagawire__Request *req = wire_unpack_request(nng_msg_body(m), nng_msg_len(m), &err);
		nng_msg_free(m);
		if (req == NULL)
			continue;
		if (req->body_case == SAGAWIRE__REQUEST__BODY_POLL)
			inst_poll(in, ctx, aio, req->poll, pipe_id);
		else if (req->body_case == SAGAWIRE__REQUEST__BODY_REPORT)
			inst_report(in, ctx, aio, req->report);
		wire_free(&req->base);
	}
	nng_aio_free(aio);
	return NULL;
}

static void
inst_start(inst *in, uint8_t tag)
{
	int port;
	memset(in, 0, sizeof(*in));
	in->tag = tag;
	in->hold_ms = 1000;
	ck_assert_int_eq(nng_rep0_open(&in->sock), 0);
	ck_assert_int_eq(nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, 1 << 20), 0);
	ck_assert_int_eq(nng_pipe_notify(in->sock, NNG_PIPE_EV_ADD_POST, inst_pipe_cb, in), 0);
	ck_assert_int_eq(nng_pipe_notify(in->sock, NNG_PIPE_EV_REM_POST, inst_pipe_cb, in), 0);
	ck_assert_int_eq(nng_listen(in->sock, "tcp://127.0.0.1:0", &in->listener, 0), 0);
	ck_assert_int_eq(nng_listener_get_int(in->listener, NNG_OPT_TCP_BOUND_PORT, &port), 0);
	snprintf(in->url, sizeof(in->url), "tcp://127.0.0.1:%d", port);
	for (int i = 0; i < INST_THREADS; i++) {
		in->thr[i].in = in;
		ck_assert_int_eq(nng_ctx_open(&in->thr[i].ctx, in->sock), 0);
		ck_assert_int_eq(pthread_create(&in->threads[i], NULL, inst_main, &in->thr[i]), 0);
	}
}

/* The instance goes away: its connections drop and no new one is taken
 * (closing the listener, not the socket: see fake_restart). */
static void
inst_down(inst *in)
{
	ck_assert_int_eq(nng_listener_close(in->listener), 0);
}

/* ... and comes back on the same address. */
static void
inst_up(inst *in)
{
	ck_assert_int_eq(nng_listen(in->sock, in->url, &in->listener, 0), 0);
}

static void
inst_stop(inst *in)
{
	pthread_mutex_lock(&M.io);
	in->sock_closed = 1;
	pthread_mutex_unlock(&M.io);
	nng_close(in->sock);
	for (int i = 0; i < INST_THREADS; i++)
		pthread_join(in->threads[i], NULL);
}

static void
multi_start(void)
{
	M.closing = 0;
	M.max_total = 0;
	inst_start(&M.a, 'A');
	inst_start(&M.b, 'B');
	snprintf(url, sizeof(url), "%s,%s", M.a.url, M.b.url);
}

static void
multi_stop(void)
{
	pthread_mutex_lock(&M.mu);
	M.closing = 1;
	pthread_cond_broadcast(&M.cv);
	pthread_mutex_unlock(&M.mu);
	inst_stop(&M.a);
	inst_stop(&M.b);
}

/* Gives an instance n more steps to dispatch. */
static void
inst_give(inst *in, int n)
{
	pthread_mutex_lock(&M.mu);
	in->pending += n;
	pthread_cond_broadcast(&M.cv);
	pthread_mutex_unlock(&M.mu);
}

/* Waits up to ms for cond (evaluated under M.mu); returns it. */
#define M_WAIT(cond, ms)                                             \
	({                                                           \
		int64_t until_ = wire_mono_ms() + (ms);              \
		int ok_;                                             \
		pthread_mutex_lock(&M.mu);                           \
		while (!(ok_ = (cond)) && wire_mono_ms() < until_) { \
			pthread_mutex_unlock(&M.mu);                 \
			usleep(2000);                                \
			pthread_mutex_lock(&M.mu);                   \
		}                                                    \
		pthread_mutex_unlock(&M.mu);                         \
		ok_;                                                 \
	})

/* Handlers on "Gate" wait until the gate opens (or run at once when it is
 * open), counting how many run at once. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void
h_gate(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	(void)user;
	int now = atomic_fetch_add(&running_now, 1) + 1;
	int max = atomic_load(&running_max);
	while (now > max && !atomic_compare_exchange_weak(&running_max, &max, now))
		;
	pthread_mutex_lock(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	atomic_fetch_sub(&running_now, 1);
	saga_reply_success(r, "ok", 2);
}

/* Waits up to ms for n handlers to be running at once; returns how many. */
static int
wait_running(int n, int ms)
{
	int64_t until = wire_mono_ms() + ms;
	while (atomic_load(&running_now) < n && wire_mono_ms() < until)
		usleep(2000);
	return atomic_load(&running_now);
}

static void
gate_set(int open)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = open;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

static void *
open_gate_soon(void *arg)
{
	(void)arg;
	usleep(200 * 1000);
	gate_set(1);
	return NULL;
}

static void
multi_worker_start(uint32_t capacity)
{
	atomic_store(&running_now, 0);
	atomic_store(&running_max, 0);
	worker_new(capacity);
	ck_assert_int_eq(saga_worker_on_action(W, "Gate", h_gate, NULL), SAGA_OK);
	worker_start();
}

START_TEST(worker_polls_at_every_url_and_reports_each_outcome_to_its_sender)
{
	gate_set(1);
	multi_worker_start(4);
	/* Idle: a poll is held at each instance. */
	ck_assert_msg(M_WAIT(M.a.polls_held == 1 && M.b.polls_held == 1, 5000),
	    "polls held: A %d, B %d", M.a.polls_held, M.b.polls_held);
	inst_give(&M.a, 12);
	inst_give(&M.b, 9);
	ck_assert_msg(M_WAIT(M.a.results >= 12 && M.b.results >= 9, 10000),
	    "results: A %d of 12, B %d of 9", M.a.results, M.b.results);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
	pthread_mutex_lock(&M.mu);
	/* Every outcome went to the instance that sent the step, and to no
	 * other; each was reported once (no redelivery happened here). */
	ck_assert_int_eq(M.a.foreign, 0);
	ck_assert_int_eq(M.b.foreign, 0);
	ck_assert_int_eq(M.a.results, 12);
	ck_assert_int_eq(M.b.results, 9);
	ck_assert_int_eq(M.a.over_cap + M.b.over_cap, 0);
	pthread_mutex_unlock(&M.mu);
	ck_assert_int_le(atomic_load(&running_max), 4);
}
END_TEST

START_TEST(worker_capacity_is_split_between_urls_and_never_exceeded)
{
	gate_set(0);
	multi_worker_start(4);
	inst_give(&M.a, 10);
	inst_give(&M.b, 10);
	/* With every handler held at the gate no outcome is reported, so what
	 * the two have in flight is what the worker took on: the whole
	 * capacity, never more, and some for each. */
	ck_assert_msg(M_WAIT(M.a.outstanding + M.b.outstanding == 4, 5000), "in flight: A %d, B %d",
	    M.a.outstanding, M.b.outstanding);
	usleep(300 * 1000);
	pthread_mutex_lock(&M.mu);
	ck_assert_int_eq(M.max_total, 4);
	ck_assert_int_ge(M.a.outstanding, 1);
	ck_assert_int_ge(M.b.outstanding, 1);
	ck_assert_int_eq(M.a.over_cap + M.b.over_cap, 0);
	/* Both still have a poll out, declaring no room beyond what they
	 * hold: the slots are all taken. */
	ck_assert_int_le(M.a.outstanding + M.b.outstanding, 4);
	pthread_mutex_unlock(&M.mu);
	ck_assert_int_eq(wait_running(4, 2000), 4);
	ck_assert_int_eq(atomic_load(&running_max), 4);
	gate_set(1);
	ck_assert_msg(M_WAIT(M.a.results >= 10 && M.b.results >= 10, 10000), "results: A %d, B %d",
	    M.a.results, M.b.results);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
	ck_assert_int_le(atomic_load(&running_max), 4);
	pthread_mutex_lock(&M.mu);
	ck_assert_int_eq(M.a.over_cap + M.b.over_cap, 0);
	ck_assert_int_eq(M.a.foreign + M.b.foreign, 0);
	pthread_mutex_unlock(&M.mu);
}
END_TEST

START_TEST(busy_url_borrows_an_idle_ones_slots_but_leaves_it_one)
{
	gate_set(0);
	M.b.hold_ms = 300; /* B answers its idle polls empty often */
	multi_worker_start(4);
	inst_give(&M.a, 10);
	/* B has nothing: A takes all but the one slot B keeps, more than its
	 * half, however long B stays idle. */
	ck_assert_msg(M_WAIT(M.a.outstanding == 3, 5000), "A has %d in flight", M.a.outstanding);
	ck_assert_msg(M_WAIT(M.b.polls >= 3, 5000), "B polled %d times", M.b.polls);
	pthread_mutex_lock(&M.mu);
	ck_assert_int_eq(M.a.outstanding, 3);
	ck_assert_uint_ge(M.b.last_cap, 1);
	pthread_mutex_unlock(&M.mu);
	/* Work comes to B: it gets its step at once, though A holds the rest. */
	inst_give(&M.b, 5);
	ck_assert_msg(M_WAIT(M.b.outstanding == 1, 2000), "B has %d in flight", M.b.outstanding);
	ck_assert_int_eq(wait_running(4, 2000), 4);
	pthread_mutex_lock(&M.mu);
	ck_assert_int_eq(M.max_total, 4);
	ck_assert_int_eq(M.a.over_cap + M.b.over_cap, 0);
	pthread_mutex_unlock(&M.mu);
	ck_assert_int_eq(atomic_load(&running_max), 4);
	gate_set(1);
	ck_assert_msg(M_WAIT(M.a.results >= 10 && M.b.results >= 5, 10000), "results: A %d, B %d",
	    M.a.results, M.b.results);
	ck_assert_int_eq(worker_stop(), SAGA_OK);
	ck_assert_int_le(atomic_load(&running_max), 4);
	pthread_mutex_lock(&M.mu);
	ck_assert_int_eq(M.a.over_cap + M.b.over_cap, 0);
	ck_assert_int_eq(M.a.foreign + M.b.foreign, 0);
	pthread_mutex_unlock(&M.mu);
}
END_TEST

START_TEST(one_url_going_away_does_not_stop_work_from_the_other)
{
	gate_set(1);
	multi_worker_start(4);
	ck_assert(M_WAIT(M.a.polls_held == 1 && M.b.polls_held == 1, 5000));
	inst_down(&M.b);
	/* A gets work while B is away, and all of the capacity but the slot
	 * B's link keeps. */
	gate_set(0);
	inst_give(&M.a, 6);
	ck_assert_msg(M_WAIT(M.a.outstanding == 3, 5000), "A has %d in flight", M.a.outstanding);
	gate_set(1);
	ck_assert_msg(M_WAIT(M.a.results >= 6, 10000), "A got %d of 6 outcomes", M.a.results);
	/* B comes back: the worker reconnects to it by itself and serves it. */
	pthread_mutex_lock(&M.mu);
	int b_polls = M.b.polls;
	pthread_mutex_unlock(&M.mu);
	inst_up(&M.b);
	inst_give(&M.b, 3);
	ck_assert_msg(M_WAIT(M.b.results >= 3, 10000),
	    "B got %d of 3 outcomes (polls %d -> %d, cap %u, in flight %d, pending %d)",
	    M.b.results, b_polls, M.b.polls, M.b.last_cap, M.b.outstanding, M.b.pending);
	pthread_mutex_lock(&M.mu);
	ck_assert_int_gt(M.b.polls, b_polls);
	ck_assert_int_eq(M.a.foreign + M.b.foreign, 0);
	ck_assert_int_eq(M.a.over_cap + M.b.over_cap, 0);
	pthread_mutex_unlock(&M.mu);
	int64_t t0 = wire_mono_ms();
	ck_assert_int_eq(worker_stop(), SAGA_OK);
	ck_assert_int_lt(wire_mono_ms() - t0, 5000);
}
END_TEST

START_TEST(stop_drains_every_url_while_the_other_is_down)
{
	gate_set(0);
	multi_worker_start(4);
	inst_give(&M.a, 2);
	inst_give(&M.b, 2);
	ck_assert_msg(M_WAIT(M.a.outstanding == 2 && M.b.outstanding == 2, 5000),
	    "in flight: A %d (cap %u), B %d (cap %u)", M.a.outstanding, M.a.last_cap,
	    M.b.outstanding, M.b.last_cap);
	/* Sent is not yet received: a step that reaches the worker after the
	 * stop began is left for sagad to redeliver, so wait until all four
	 * handlers hold their steps. */
	ck_assert_int_eq(wait_running(4, 5000), 4);
	inst_down(&M.b);
	/* Stopping: the handlers finish, A gets its outcomes; B's cannot be
	 * delivered (B redelivers them when it sees the connection gone), and
	 * the stop is still bounded. */
	pthread_t opener;
	ck_assert_int_eq(pthread_create(&opener, NULL, open_gate_soon, NULL), 0);
	int64_t t0 = wire_mono_ms();
	ck_assert_int_eq(worker_stop(), SAGA_OK);
	ck_assert_int_lt(wire_mono_ms() - t0, 8000);
	pthread_join(opener, NULL);
	pthread_mutex_lock(&M.mu);
	ck_assert_int_eq(M.a.results, 2);
	ck_assert_int_eq(M.b.results, 0);
	ck_assert_int_eq(M.a.foreign, 0);
	pthread_mutex_unlock(&M.mu);
}
END_TEST

START_TEST(bad_url_lists_are_refused_naming_the_entry)
{
	saga_worker *w = NULL;
	char err[512];
	const char *bad[] = { "", " ", ",", "tcp://127.0.0.1:7700,", ",tcp://127.0.0.1:7700",
		"tcp://127.0.0.1:7700,,tcp://127.0.0.1:7701", "tcp://127.0.0.1:7700,bogus",
		"tcp://127.0.0.1", "nope://x:1", "tcp://127.0.0.1:7700 tcp://127.0.0.1:7701" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(
		    saga_worker_new(bad[i], "p", &w) == SAGA_EINVAL, "accepted '%s'", bad[i]);
		ck_assert_ptr_null(w);
		ck_assert_int_eq(saga_url_list_check(bad[i], err, sizeof(err)), SAGA_EINVAL);
		ck_assert_msg(err[0] != '\0', "no reason for '%s'", bad[i]);
	}
	ck_assert_int_eq(saga_url_list_check("", err, sizeof(err)), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "the sagad URL list is empty"));
	ck_assert_int_eq(
	    saga_url_list_check("tcp://127.0.0.1:7700,bogus", err, sizeof(err)), SAGA_EINVAL);
	ck_assert_msg(
	    strstr(err, "entry 2 of the sagad URL list, \"bogus\", is not a sagad URL") != NULL,
	    "%s", err);
	ck_assert_int_eq(
	    saga_url_list_check("tcp://127.0.0.1:7700,,tcp://127.0.0.1:7701", err, sizeof(err)),
	    SAGA_EINVAL);
	ck_assert_msg(strstr(err, "entry 2 of the sagad URL list") != NULL && strstr(err, "empty"),
	    "%s", err);
	ck_assert_int_eq(saga_url_list_check("nope://x:1", err, sizeof(err)), SAGA_EINVAL);
	ck_assert_msg(
	    strstr(err, "\"nope://x:1\" is not a sagad URL: nng knows no such scheme"), "%s", err);
	/* At most 16 URLs. */
	char many[17 * 24] = "";
	for (int i = 0; i < 17; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%stcp://127.0.0.1:%d",
		    i ? "," : "", 7700 + i);
	ck_assert_int_eq(saga_worker_new(many, "p", &w), SAGA_EINVAL);
	ck_assert_int_eq(saga_url_list_check(many, err, sizeof(err)), SAGA_EINVAL);
	ck_assert_msg(strstr(err, "has 17 entries; at most 16 are allowed"), "%s", err);
	*strrchr(many, ',') = '\0';
	ck_assert_int_eq(saga_url_list_check(many, err, sizeof(err)), SAGA_OK);
	ck_assert_str_eq(err, "");
	/* Whitespace around entries is ignored; a URL may come twice. */
	ck_assert_int_eq(
	    saga_url_list_check(" tcp://127.0.0.1:7700 ,\ttcp://127.0.0.1:7700\n", NULL, 0),
	    SAGA_OK);
	ck_assert_int_eq(
	    saga_worker_new(" tcp://127.0.0.1:7700 ,\ttcp://127.0.0.1:7701", "p", &w), SAGA_OK);
	/* Each connection keeps one slot: capacity covers the URLs. */
	ck_assert_int_eq(saga_worker_set_capacity(w, 1), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_worker_errmsg(w), "less than the 2 sagad URLs"));
	ck_assert_int_eq(saga_worker_set_capacity(w, 2), SAGA_OK);
	saga_worker_free(w);
	ck_assert_int_eq(saga_url_list_check(NULL, NULL, 0), SAGA_OK);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("worker");
	TCase *tc = tcase_create("worker");
	tcase_add_checked_fixture(tc, fake_start, fake_stop);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, handler_gets_step_fields_and_results);
	tcase_add_test(tc, outcomes_are_reported_with_outputs_and_errors);
	tcase_add_test(tc, every_outcome_and_heartbeat_echoes_its_dispatch_token);
	tcase_add_test(tc, missing_handler_reports_retry_with_message);
	tcase_add_test(tc, handler_without_reply_reports_retry_and_second_reply_is_refused);
	tcase_add_test(tc, capacity_bounds_concurrent_handlers);
	tcase_add_test(tc, stop_waits_for_running_handlers_and_flushes_reports);
	tcase_add_test(tc, stop_returns_promptly_while_a_poll_is_held);
	tcase_add_test(tc, invalid_dispatches_are_skipped);
	tcase_add_test(tc, worker_polls_again_after_server_restart);
	tcase_add_test(tc, refused_report_is_sent_again);
	tcase_add_test(tc, refused_poll_ends_run_with_the_error);
	tcase_add_test(tc, polls_carry_the_credential_and_a_refused_one_ends_run);
	tcase_add_test(tc, stop_from_a_signal_handler_ends_run);
	tcase_add_test(tc, stop_before_run_returns_at_once);
	tcase_add_test(tc, configuration_is_validated);
	suite_add_tcase(s, tc);
	TCase *tm = tcase_create("several urls");
	tcase_add_checked_fixture(tm, multi_start, multi_stop);
	tcase_set_timeout(tm, 60);
	tcase_add_test(tm, worker_polls_at_every_url_and_reports_each_outcome_to_its_sender);
	tcase_add_test(tm, worker_capacity_is_split_between_urls_and_never_exceeded);
	tcase_add_test(tm, busy_url_borrows_an_idle_ones_slots_but_leaves_it_one);
	tcase_add_test(tm, one_url_going_away_does_not_stop_work_from_the_other);
	tcase_add_test(tm, stop_drains_every_url_while_the_other_is_down);
	tcase_add_test(tm, bad_url_lists_are_refused_naming_the_entry);
	suite_add_tcase(s, tm);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
