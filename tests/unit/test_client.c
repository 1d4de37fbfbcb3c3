/*
 * Unit tests of the libsaga client (client-lib/src/client.c, conn.c,
 * common.c) against a fake sagad: an nng REP socket on a TCP port of its
 * own, answered by a thread with canned replies (and a second one for the
 * tests of a client given several URLs).
 */
#include <check.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga.h"
#include "wire.h"

/* ---- fake sagad -------------------------------------------------------- */

/* Answers one request; returns the reply to send (NULL = never answer). */
typedef nng_msg *(*fake_fn)(const Sagawire__Request *req);

static char tmpdir[64];
static char url[128];
static nng_socket fake_sock;
static pthread_t fake_thread;
static fake_fn fake_handler;
static atomic_int fake_requests;
static Sagawire__Request *last_req; /* the last request decoded, for checks */

static void *
fake_main(void *arg)
{
	(void)arg;
	for (;;) {
		nng_msg *m;
		if (nng_recvmsg(fake_sock, &m, 0) != 0)
			break;
		int err = 0;
		Sagawire__Request *req = wire_unpack_request(nng_msg_body(m), nng_msg_len(m), &err);
		nng_msg_free(m);
		if (req == NULL)
			continue;
		atomic_fetch_add(&fake_requests, 1);
		nng_msg *reply = fake_handler ? fake_handler(req) : NULL;
		if (last_req != NULL)
			wire_free(&last_req->base);
		last_req = req;
		if (reply != NULL && nng_sendmsg(fake_sock, reply, 0) != 0)
			nng_msg_free(reply);
	}
	return NULL;
}

static void
fake_start(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_client.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_int_eq(nng_rep0_open(&fake_sock), 0);
	ck_assert_int_eq(nng_socket_set_size(fake_sock, NNG_OPT_RECVMAXSZ, 1 << 20), 0);
	/* TCP on a port of the kernel's choosing, not ipc: in nng 1.5.2 a
	 * peer that disconnects during the handshake can wedge an ipc
	 * listener for good (nng #1518), which a test that closes clients
	 * early would trip over. */
	nng_listener l;
	int port;
	ck_assert_int_eq(nng_listen(fake_sock, "tcp://127.0.0.1:0", &l, 0), 0);
	ck_assert_int_eq(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), 0);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	ck_assert_int_eq(pthread_create(&fake_thread, NULL, fake_main, NULL), 0);
}

static void
fake_stop(void)
{
	nng_close(fake_sock);
	pthread_join(fake_thread, NULL);
	if (last_req != NULL)
		wire_free(&last_req->base);
	last_req = NULL;
	rmdir(tmpdir);
}

static nng_msg *
pack(const Sagawire__Response *r)
{
	nng_msg *m;
	ck_assert_int_eq(wire_pack_msg(&r->base, &m), 0);
	return m;
}

static nng_msg *
raw(const void *data, size_t len)
{
	nng_msg *m;
	ck_assert_int_eq(nng_msg_alloc(&m, len), 0);
	memcpy(nng_msg_body(m), data, len);
	return m;
}

static saga_client *
client(int timeout_ms)
{
	saga_client *c = NULL;
	ck_assert_int_eq(saga_client_new(url, &c), SAGA_OK);
	ck_assert_int_eq(saga_client_set_timeout(c, timeout_ms), SAGA_OK);
	return c;
}

/* ---- canned replies ---------------------------------------------------- */

static uint8_t input_bytes[] = { 1, 2, 0, 3 };
static uint8_t result_bytes[] = { 9, 8, 7 };

static nng_msg *
reply_full_saga(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__GetResponse g = SAGAWIRE__GET_RESPONSE__INIT;
	Sagawire__SagaInfo s = SAGAWIRE__SAGA_INFO__INIT;
	Sagawire__StepInfo st[2] = { SAGAWIRE__STEP_INFO__INIT, SAGAWIRE__STEP_INFO__INIT };
	Sagawire__StepInfo *sp[2] = { &st[0], &st[1] };
	char *deps[] = { "Reserve", "Charge" };

	ck_assert_int_eq(req->body_case, SAGAWIRE__REQUEST__BODY_GET);
	s.saga_id = req->get->saga_id;
	s.definition = "shop.OrderSaga";
	s.version = 3;
	s.state = SAGAWIRE__SAGA_STATE__SAGA_COMPENSATING;
	s.idempotency_key = "idem-1";
	s.business_key = "order-42";
	s.created_us = 1700000000000001;
	s.updated_us = 1700000000000002;
	s.input.data = input_bytes;
	s.input.len = sizeof(input_bytes);
	s.error = "step Ship failed: no courier";
	st[0].name = "Reserve";
	st[0].participant = "stock";
	st[0].compensation = "Release";
	st[0].state = SAGAWIRE__STEP_STATE__STEP_COMP_RETRY_WAIT;
	st[0].attempts = 2;
	st[0].comp_attempts = 3;
	st[0].started_us = 11;
	st[0].finished_us = 12;
	st[0].comp_started_us = 13;
	st[0].comp_finished_us = 14;
	st[0].last_error = "stock db down";
	st[0].result.data = result_bytes;
	st[0].result.len = sizeof(result_bytes);
	st[0].completion_seq = 1;
	st[0].next_attempt_us = 15;
	st[1].name = "Ship";
	st[1].participant = "shipping";
	st[1].state = SAGAWIRE__STEP_STATE__STEP_FAILED;
	st[1].n_depends_on = 2;
	st[1].depends_on = deps;
	s.n_steps = 2;
	s.steps = sp;
	g.saga = &s;
	r.body_case = SAGAWIRE__RESPONSE__BODY_GET;
	r.get = &g;
	return pack(&r);
}

static nng_msg *
reply_not_found(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__Error e = SAGAWIRE__ERROR__INIT;
	(void)req;
	e.code = SAGA_ENOTFOUND;
	e.message = "no saga 0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10";
	r.error = &e;
	return pack(&r);
}

static nng_msg *
reply_unknown_code(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__Error e = SAGAWIRE__ERROR__INIT;
	(void)req;
	e.code = 999;
	e.message = "from the future";
	r.error = &e;
	return pack(&r);
}

static nng_msg *
reply_garbage(const Sagawire__Request *req)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x99 };
	(void)req;
	return raw(junk, sizeof(junk));
}

static nng_msg *
reply_wrong_body(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__CancelResponse cr = SAGAWIRE__CANCEL_RESPONSE__INIT;
	(void)req;
	r.body_case = SAGAWIRE__RESPONSE__BODY_CANCEL;
	r.cancel = &cr;
	return pack(&r);
}

static nng_msg *
reply_huge(const Sagawire__Request *req)
{
	(void)req;
	nng_msg *m;
	ck_assert_int_eq(nng_msg_alloc(&m, 64 * 1024), 0);
	memset(nng_msg_body(m), 0, 64 * 1024);
	return m;
}

static nng_msg *
reply_never(const Sagawire__Request *req)
{
	(void)req;
	return NULL;
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(get_converts_every_field)
{
	fake_handler = reply_full_saga;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_get(c, "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10", &i), SAGA_OK);
	ck_assert_str_eq(last_req->get->saga_id, "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10");
	ck_assert_str_eq(i->saga_id, "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10");
	ck_assert_str_eq(i->definition, "shop.OrderSaga");
	ck_assert_uint_eq(i->version, 3);
	ck_assert_int_eq(i->state, SAGA_STATE_COMPENSATING);
	ck_assert_str_eq(i->idempotency_key, "idem-1");
	ck_assert_str_eq(i->business_key, "order-42");
	ck_assert_int_eq(i->created_us, 1700000000000001);
	ck_assert_int_eq(i->updated_us, 1700000000000002);
	ck_assert_str_eq(i->error, "step Ship failed: no courier");
	ck_assert_uint_eq(i->input_len, sizeof(input_bytes));
	ck_assert_mem_eq(i->input, input_bytes, sizeof(input_bytes));
	ck_assert_uint_eq(i->n_steps, 2);
	const saga_step_info *s = &i->steps[0];
	ck_assert_str_eq(s->name, "Reserve");
	ck_assert_str_eq(s->participant, "stock");
	ck_assert_str_eq(s->compensation, "Release");
	ck_assert_uint_eq(s->n_depends_on, 0);
	ck_assert_int_eq(s->state, SAGA_STEP_COMP_RETRY_WAIT);
	ck_assert_uint_eq(s->attempts, 2);
	ck_assert_uint_eq(s->comp_attempts, 3);
	ck_assert_int_eq(s->started_us, 11);
	ck_assert_int_eq(s->finished_us, 12);
	ck_assert_int_eq(s->comp_started_us, 13);
	ck_assert_int_eq(s->comp_finished_us, 14);
	ck_assert_int_eq(s->next_attempt_us, 15);
	ck_assert_uint_eq(s->completion_seq, 1);
	ck_assert_str_eq(s->last_error, "stock db down");
	ck_assert_uint_eq(s->result_len, sizeof(result_bytes));
	ck_assert_mem_eq(s->result, result_bytes, sizeof(result_bytes));
	s = &i->steps[1];
	ck_assert_str_eq(s->name, "Ship");
	/* Empty strings arrive as "", never NULL. */
	ck_assert_str_eq(s->compensation, "");
	ck_assert_str_eq(s->last_error, "");
	ck_assert_int_eq(s->state, SAGA_STEP_FAILED);
	ck_assert_uint_eq(s->n_depends_on, 2);
	ck_assert_str_eq(s->depends_on[0], "Reserve");
	ck_assert_str_eq(s->depends_on[1], "Charge");
	ck_assert_uint_eq(s->result_len, 0);
	saga_info_free(i);
	saga_client_free(c);
}
END_TEST

START_TEST(error_reply_surfaces_code_and_message)
{
	fake_handler = reply_not_found;
	saga_client *c = client(5000);
	saga_info *i = (saga_info *)1;
	ck_assert_int_eq(
	    saga_client_get(c, "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10", &i), SAGA_ENOTFOUND);
	ck_assert_ptr_null(i);
	ck_assert_str_eq(saga_client_errmsg(c), "no saga 0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10");
	saga_client_free(c);
}
END_TEST

static nng_msg *
reply_eauth(const Sagawire__Request *req)
{
	(void)req;
	Sagawire__Error e = SAGAWIRE__ERROR__INIT;
	e.code = SAGA_EAUTH;
	e.message = "not authenticated: no credential";
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	r.error = &e;
	return pack(&r);
}

START_TEST(client_sends_its_credential_with_every_call_and_refuses_bad_ones)
{
	fake_handler = reply_not_found;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	const char *cred = "0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	ck_assert_int_eq(saga_client_set_credential(c, cred), SAGA_OK);
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_ENOTFOUND);
	ck_assert_str_eq(last_req->credential, cred);
	/* and the protocol version it speaks (docs/PROTOCOL.md) */
	ck_assert_uint_eq(last_req->protocol, WIRE_PROTOCOL_VERSION);
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(c, NULL, &l), SAGA_ENOTFOUND);
	ck_assert_str_eq(last_req->credential, cred);
	ck_assert_uint_eq(last_req->protocol, WIRE_PROTOCOL_VERSION);
	/* Not a credential: refused, the one set stays. */
	ck_assert_int_eq(saga_client_set_credential(c, "has space"), SAGA_EINVAL);
	ck_assert_int_eq(saga_client_set_credential(c, "line\n"), SAGA_EINVAL);
	ck_assert_int_eq(saga_client_set_credential(c, "caf\xc3\xa9"), SAGA_EINVAL);
	char big[600];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(saga_client_set_credential(c, big), SAGA_EINVAL);
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_ENOTFOUND);
	ck_assert_str_eq(last_req->credential, cred);
	/* NULL: none any more. */
	ck_assert_int_eq(saga_client_set_credential(c, NULL), SAGA_OK);
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_ENOTFOUND);
	ck_assert_str_eq(last_req->credential, "");
	/* A refusal surfaces as SAGA_EAUTH with sagad's message. */
	fake_handler = reply_eauth;
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_EAUTH);
	ck_assert_str_eq(saga_client_errmsg(c), "not authenticated: no credential");
	saga_client_free(c);
}
END_TEST

START_TEST(unknown_error_code_is_protocol_error)
{
	fake_handler = reply_unknown_code;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_EPROTO);
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "999"));
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "from the future"));
	saga_client_free(c);
}
END_TEST

START_TEST(malformed_reply_is_protocol_error)
{
	fake_handler = reply_garbage;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_EPROTO);
	ck_assert_ptr_null(i);
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "malformed"));
	saga_client_free(c);
}
END_TEST

START_TEST(wrong_body_case_is_protocol_error)
{
	fake_handler = reply_wrong_body;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_EPROTO);
	ck_assert_ptr_nonnull(
	    strstr(saga_client_errmsg(c), "a cancel reply instead of a get reply"));
	saga_client_free(c);
}
END_TEST

START_TEST(no_server_listening_is_reported_unreachable_at_once)
{
	char nowhere[160];
	snprintf(nowhere, sizeof(nowhere), "ipc://%s/nobody.sock", tmpdir);
	saga_client *c = NULL;
	ck_assert_int_eq(saga_client_new(nowhere, &c), SAGA_OK);
	ck_assert_int_eq(saga_client_set_timeout(c, 5000), SAGA_OK);
	saga_info *i = NULL;
	int64_t t0 = wire_mono_ms();
	/* Refused: not worth the whole 5 s wait. */
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_ECONN);
	ck_assert_int_lt(wire_mono_ms() - t0, 2000);
	char want[256];
	snprintf(want, sizeof(want),
	    "cannot reach sagad at %s: connection refused (is sagad running there?)", nowhere);
	ck_assert_str_eq(saga_client_errmsg(c), want);
	saga_client_free(c);
}
END_TEST

START_TEST(silent_server_times_out)
{
	fake_handler = reply_never;
	saga_client *c = client(300);
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_ETIMEDOUT);
	/* It took the request: the message says so, and that a start may be
	 * retried with its key (not "is it running?"). */
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "took the request but did not answer"));
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "same idempotency key"));
	ck_assert_ptr_null(strstr(saga_client_errmsg(c), "is it running?"));
	/* No resend: the server saw the request exactly once. */
	ck_assert_int_eq(atomic_load(&fake_requests), 1);
	saga_client_free(c);
}
END_TEST

START_TEST(oversized_reply_is_an_error_not_a_crash)
{
	fake_handler = reply_huge;
	saga_client *c = client(2000);
	ck_assert_int_eq(saga_client_set_max_message(c, 4096), SAGA_OK);
	saga_info *i = NULL;
	int rv = saga_client_get(c, "x", &i);
	ck_assert_msg(rv == SAGA_ECONN, "rv %d: %s", rv, saga_client_errmsg(c));
	ck_assert_ptr_null(i);
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "max_message"));
	/* The request was not resent after the connection dropped. */
	ck_assert_int_eq(atomic_load(&fake_requests), 1);
	/* The handle still works afterwards. */
	fake_handler = reply_full_saga;
	ck_assert_int_eq(saga_client_get(c, "x", &i), SAGA_OK);
	saga_info_free(i);
	saga_client_free(c);
}
END_TEST

static nng_msg *
reply_register(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__RegisterResponse rr = SAGAWIRE__REGISTER_RESPONSE__INIT;
	Sagawire__RegisteredDefinition d[2] = { SAGAWIRE__REGISTERED_DEFINITION__INIT,
		SAGAWIRE__REGISTERED_DEFINITION__INIT };
	Sagawire__RegisteredDefinition *dp[2] = { &d[0], &d[1] };
	ck_assert_int_eq(req->body_case, SAGAWIRE__REQUEST__BODY_REGISTER);
	ck_assert_uint_eq(req->register_->descriptor_set.len, 5);
	ck_assert_mem_eq(req->register_->descriptor_set.data,
	    "\x0a\x03"
	    "abc",
	    5);
	d[0].name = "shop.OrderSaga";
	d[0].version = 2;
	d[0].steps = 4;
	d[1].name = "shop.RefundSaga";
	d[1].version = 1;
	d[1].unchanged = 1;
	d[1].steps = 2;
	rr.n_definitions = 2;
	rr.definitions = dp;
	r.body_case = SAGAWIRE__RESPONSE__BODY_REGISTER;
	r.register_ = &rr;
	return pack(&r);
}

START_TEST(register_round_trip)
{
	fake_handler = reply_register;
	saga_client *c = client(5000);
	saga_register_result *res = NULL;
	ck_assert_int_eq(saga_client_register(c,
			     "\x0a\x03"
			     "abc",
			     5, &res),
	    SAGA_OK);
	ck_assert_uint_eq(res->count, 2);
	ck_assert_str_eq(res->defs[0].name, "shop.OrderSaga");
	ck_assert_uint_eq(res->defs[0].version, 2);
	ck_assert_int_eq(res->defs[0].unchanged, 0);
	ck_assert_uint_eq(res->defs[0].steps, 4);
	ck_assert_str_eq(res->defs[1].name, "shop.RefundSaga");
	ck_assert_int_ne(res->defs[1].unchanged, 0);
	saga_register_result_free(res);
	saga_client_free(c);
}
END_TEST

static nng_msg *
reply_definition_error(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__Error e = SAGAWIRE__ERROR__INIT;
	(void)req;
	e.code = SAGA_EDEFINITION;
	e.message = "shop.OrderSaga: step Charge: compensation Refnd is not an rpc of the service";
	r.error = &e;
	return pack(&r);
}

START_TEST(register_refused_names_the_problem)
{
	fake_handler = reply_definition_error;
	saga_client *c = client(5000);
	saga_register_result *res = NULL;
	ck_assert_int_eq(saga_client_register(c, "x", 1, &res), SAGA_EDEFINITION);
	ck_assert_ptr_null(res);
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "Refnd"));
	saga_client_free(c);
}
END_TEST

static nng_msg *
reply_start(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__StartResponse sr = SAGAWIRE__START_RESPONSE__INIT;
	ck_assert_int_eq(req->body_case, SAGAWIRE__REQUEST__BODY_START);
	sr.saga_id = "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10";
	sr.version = 7;
	sr.existing = req->start->idempotency_key[0] != '\0';
	r.body_case = SAGAWIRE__RESPONSE__BODY_START;
	r.start = &sr;
	return pack(&r);
}

START_TEST(start_round_trip_sends_options)
{
	fake_handler = reply_start;
	saga_client *c = client(5000);
	saga_start_opts o = { .version = 7, .idempotency_key = "k-1", .business_key = "order-9" };
	char *id = NULL;
	int existing = -1;
	ck_assert_int_eq(
	    saga_client_start(c, "shop.OrderSaga", "in\0put", 6, &o, &id, &existing), SAGA_OK);
	ck_assert_str_eq(id, "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f0a10");
	ck_assert_int_eq(existing, 1);
	const Sagawire__StartRequest *s = last_req->start;
	ck_assert_str_eq(s->definition, "shop.OrderSaga");
	ck_assert_uint_eq(s->version, 7);
	ck_assert_uint_eq(s->input.len, 6);
	ck_assert_mem_eq(s->input.data, "in\0put", 6);
	ck_assert_str_eq(s->idempotency_key, "k-1");
	ck_assert_str_eq(s->business_key, "order-9");
	saga_string_free(id);

	/* No options, no input: libsaga gives the start a key of its own
	 * ("auto-" and a UUID, a new one per call), and since the caller gave
	 * none, an "existing" answer (its own resend) is not passed on. */
	ck_assert_int_eq(
	    saga_client_start(c, "shop.OrderSaga", NULL, 0, NULL, &id, &existing), SAGA_OK);
	char key1[64];
	snprintf(key1, sizeof(key1), "%s", last_req->start->idempotency_key);
	ck_assert_msg(strncmp(key1, "auto-", 5) == 0 && strlen(key1) == 5 + 36, "key '%s'", key1);
	ck_assert_int_eq(existing, 0);
	ck_assert_uint_eq(last_req->start->input.len, 0);
	saga_string_free(id);
	ck_assert_int_eq(saga_client_start(c, "shop.OrderSaga", NULL, 0, NULL, &id, NULL), SAGA_OK);
	ck_assert_str_ne(last_req->start->idempotency_key, key1);
	saga_string_free(id);

	/* Option structs carry their size: SAGA_START_OPTS_INIT sets it, 0
	 * means the fields of libsaga 0.1, and a size too small for those is
	 * refused naming the field. */
	saga_start_opts oi = SAGA_START_OPTS_INIT;
	oi.business_key = "order-10";
	ck_assert_int_eq(saga_client_start(c, "shop.OrderSaga", NULL, 0, &oi, &id, NULL), SAGA_OK);
	ck_assert_str_eq(last_req->start->business_key, "order-10");
	saga_string_free(id);
	oi.struct_size = sizeof(uint32_t);
	ck_assert_int_eq(
	    saga_client_start(c, "shop.OrderSaga", NULL, 0, &oi, &id, NULL), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "saga_start_opts.struct_size is 4"));
	saga_list_filter fi = SAGA_LIST_FILTER_INIT;
	fi.struct_size = 1;
	saga_list *sl = NULL;
	ck_assert_int_eq(saga_client_list(c, &fi, &sl), SAGA_EINVAL);
	ck_assert_ptr_null(sl);
	saga_client_free(c);
}
END_TEST

START_TEST(invalid_arguments_are_refused_before_sending)
{
	fake_handler = reply_start;
	saga_client *c = client(5000);
	char *id = NULL;
	ck_assert_int_eq(saga_client_start(c, "bad\xff", NULL, 0, NULL, &id, NULL), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "UTF-8"));
	ck_assert_int_eq(saga_client_start(c, "", NULL, 0, NULL, &id, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_client_start(c, "x", NULL, 3, NULL, &id, NULL), SAGA_EINVAL);
	saga_list *l = NULL;
	saga_list_filter f = { .limit = 1001 };
	ck_assert_int_eq(saga_client_list(c, &f, &l), SAGA_EINVAL);
	ck_assert_int_eq(atomic_load(&fake_requests), 0);
	ck_assert_int_eq(saga_client_set_timeout(c, 0), SAGA_EINVAL);
	ck_assert_int_eq(saga_client_set_max_message(c, 10), SAGA_EINVAL);
	saga_client_free(c);
	ck_assert_int_eq(saga_client_new("", &c), SAGA_EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(saga_client_new("nonsense://where", &c), SAGA_EINVAL);
	ck_assert_ptr_null(c);
}
END_TEST

static nng_msg *
reply_list(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__ListResponse lr = SAGAWIRE__LIST_RESPONSE__INIT;
	Sagawire__SagaSummary s = SAGAWIRE__SAGA_SUMMARY__INIT;
	Sagawire__SagaSummary *sp = &s;
	ck_assert_int_eq(req->body_case, SAGAWIRE__REQUEST__BODY_LIST);
	s.saga_id = "id-1";
	s.definition = "shop.OrderSaga";
	s.version = 2;
	s.state = SAGAWIRE__SAGA_STATE__SAGA_FAILED;
	s.business_key = "order-1";
	s.created_us = 100;
	s.updated_us = 200;
	s.error = "parked";
	s.steps_total = 5;
	s.steps_done = 3;
	lr.n_sagas = 1;
	lr.sagas = &sp;
	lr.next_page_token = "page-2";
	r.body_case = SAGAWIRE__RESPONSE__BODY_LIST;
	r.list = &lr;
	return pack(&r);
}

START_TEST(list_round_trip_sends_filter)
{
	fake_handler = reply_list;
	saga_client *c = client(5000);
	saga_state states[] = { SAGA_STATE_FAILED, SAGA_STATE_RUNNING };
	saga_list_filter f = {
		.states = states,
		.n_states = 2,
		.definition = "shop.OrderSaga",
		.business_key = "order-1",
		.created_after_us = 10,
		.created_before_us = 20,
		.limit = 25,
		.page_token = "page-1",
	};
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(c, &f, &l), SAGA_OK);
	const Sagawire__ListRequest *q = last_req->list;
	ck_assert_uint_eq(q->n_states, 2);
	ck_assert_int_eq(q->states[0], SAGAWIRE__SAGA_STATE__SAGA_FAILED);
	ck_assert_int_eq(q->states[1], SAGAWIRE__SAGA_STATE__SAGA_RUNNING);
	ck_assert_str_eq(q->definition, "shop.OrderSaga");
	ck_assert_str_eq(q->business_key, "order-1");
	ck_assert_int_eq(q->created_after_us, 10);
	ck_assert_int_eq(q->created_before_us, 20);
	ck_assert_uint_eq(q->limit, 25);
	ck_assert_str_eq(q->page_token, "page-1");
	ck_assert_uint_eq(l->count, 1);
	const saga_summary *s = &l->sagas[0];
	ck_assert_str_eq(s->saga_id, "id-1");
	ck_assert_str_eq(s->definition, "shop.OrderSaga");
	ck_assert_uint_eq(s->version, 2);
	ck_assert_int_eq(s->state, SAGA_STATE_FAILED);
	ck_assert_str_eq(s->business_key, "order-1");
	ck_assert_int_eq(s->created_us, 100);
	ck_assert_int_eq(s->updated_us, 200);
	ck_assert_str_eq(s->error, "parked");
	ck_assert_uint_eq(s->steps_total, 5);
	ck_assert_uint_eq(s->steps_done, 3);
	ck_assert_str_eq(l->next_page_token, "page-2");
	saga_list_free(l);

	ck_assert_int_eq(saga_client_list(c, NULL, &l), SAGA_OK);
	ck_assert_uint_eq(last_req->list->n_states, 0);
	saga_list_free(l);
	saga_client_free(c);
}
END_TEST

static nng_msg *
reply_cancel(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	Sagawire__CancelResponse cr = SAGAWIRE__CANCEL_RESPONSE__INIT;
	ck_assert_int_eq(req->body_case, SAGAWIRE__REQUEST__BODY_CANCEL);
	cr.state = SAGAWIRE__SAGA_STATE__SAGA_COMPENSATING;
	r.body_case = SAGAWIRE__RESPONSE__BODY_CANCEL;
	r.cancel = &cr;
	return pack(&r);
}

START_TEST(cancel_round_trip)
{
	fake_handler = reply_cancel;
	saga_client *c = client(5000);
	saga_state after = SAGA_STATE_UNKNOWN;
	ck_assert_int_eq(saga_client_cancel(c, "id-1", "customer asked", &after), SAGA_OK);
	ck_assert_int_eq(after, SAGA_STATE_COMPENSATING);
	ck_assert_str_eq(last_req->cancel->saga_id, "id-1");
	ck_assert_str_eq(last_req->cancel->reason, "customer asked");
	ck_assert_int_eq(saga_client_cancel(c, "id-1", NULL, NULL), SAGA_OK);
	ck_assert_str_eq(last_req->cancel->reason, "");
	saga_client_free(c);
}
END_TEST

static atomic_int gets_until_final;

/* Answers wait and get alike: running until the counter runs out. */
static nng_msg *
reply_running_then_completed(const Sagawire__Request *req)
{
	Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
	int st = atomic_fetch_sub(&gets_until_final, 1) > 1 ? SAGAWIRE__SAGA_STATE__SAGA_RUNNING
							    : SAGAWIRE__SAGA_STATE__SAGA_COMPLETED;
	if (req->body_case == SAGAWIRE__REQUEST__BODY_WAIT) {
		Sagawire__WaitResponse w = SAGAWIRE__WAIT_RESPONSE__INIT;
		w.state = (Sagawire__SagaState)st;
		r.body_case = SAGAWIRE__RESPONSE__BODY_WAIT;
		r.wait = &w;
		return pack(&r);
	}
	Sagawire__GetResponse g = SAGAWIRE__GET_RESPONSE__INIT;
	Sagawire__SagaInfo s = SAGAWIRE__SAGA_INFO__INIT;
	ck_assert_int_eq(req->body_case, SAGAWIRE__REQUEST__BODY_GET);
	s.saga_id = req->get->saga_id;
	s.state = (Sagawire__SagaState)st;
	g.saga = &s;
	r.body_case = SAGAWIRE__RESPONSE__BODY_GET;
	r.get = &g;
	return pack(&r);
}

/* A sagad from before the wait request: refuses it, serves get. */
static nng_msg *
reply_old_server(const Sagawire__Request *req)
{
	if (req->body_case == SAGAWIRE__REQUEST__BODY_WAIT) {
		Sagawire__Response r = SAGAWIRE__RESPONSE__INIT;
		Sagawire__Error e = SAGAWIRE__ERROR__INIT;
		e.code = SAGA_EUNSUPPORTED;
		e.message = "request has no body this sagad understands";
		r.error = &e;
		return pack(&r);
	}
	return reply_running_then_completed(req);
}

START_TEST(wait_uses_one_wait_request_then_reads_the_final_status)
{
	atomic_store(&gets_until_final, 1);
	fake_handler = reply_running_then_completed;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_wait(c, "id-1", 5000, &i), SAGA_OK);
	ck_assert_int_eq(i->state, SAGA_STATE_COMPLETED);
	/* one wait (final at once), one get for *out */
	ck_assert_int_eq(atomic_load(&fake_requests), 2);
	ck_assert_int_eq(last_req->body_case, SAGAWIRE__REQUEST__BODY_GET);
	saga_info_free(i);
	/* without *out: the wait alone */
	atomic_store(&gets_until_final, 1);
	atomic_store(&fake_requests, 0);
	ck_assert_int_eq(saga_client_wait(c, "id-1", 5000, NULL), SAGA_OK);
	ck_assert_int_eq(atomic_load(&fake_requests), 1);
	ck_assert_int_eq(last_req->body_case, SAGAWIRE__REQUEST__BODY_WAIT);
	ck_assert_str_eq(last_req->wait->saga_id, "id-1");
	ck_assert_uint_gt(last_req->wait->timeout_ms, 0);
	ck_assert_uint_le(last_req->wait->timeout_ms, 5000);
	saga_client_free(c);
}
END_TEST

START_TEST(wait_falls_back_to_polling_an_older_sagad)
{
	atomic_store(&gets_until_final, 4);
	fake_handler = reply_old_server;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_wait(c, "id-1", 5000, &i), SAGA_OK);
	ck_assert_int_eq(i->state, SAGA_STATE_COMPLETED);
	/* the refused wait, then gets until final */
	ck_assert_int_eq(atomic_load(&fake_requests), 5);
	saga_info_free(i);
	saga_client_free(c);
}
END_TEST

START_TEST(wait_times_out_with_last_status)
{
	atomic_store(&gets_until_final, 1000000);
	fake_handler = reply_running_then_completed;
	saga_client *c = client(5000);
	saga_info *i = NULL;
	int64_t t0 = wire_mono_ms();
	ck_assert_int_eq(saga_client_wait(c, "id-1", 300, &i), SAGA_ETIMEDOUT);
	ck_assert_int_lt(wire_mono_ms() - t0, 2000);
	ck_assert_ptr_nonnull(i);
	ck_assert_int_eq(i->state, SAGA_STATE_RUNNING);
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), "still running"));
	saga_info_free(i);
	saga_client_free(c);
}
END_TEST

START_TEST(wait_stops_at_a_permanent_error)
{
	fake_handler = reply_not_found;
	saga_client *c = client(5000);
	saga_info *i = (saga_info *)1;
	ck_assert_int_eq(saga_client_wait(c, "id-1", 5000, &i), SAGA_ENOTFOUND);
	ck_assert_ptr_null(i);
	ck_assert_int_eq(atomic_load(&fake_requests), 1);
	saga_client_free(c);
}
END_TEST

/* ---- common.c ---------------------------------------------------------- */

START_TEST(every_error_has_a_description)
{
	for (int e = SAGA_OK; e <= SAGA_EPERM; e++)
		ck_assert_str_ne(saga_strerror(e), "unknown error");
	ck_assert_str_eq(saga_strerror(-1), "unknown error");
	ck_assert_str_eq(saga_strerror(SAGA_EPERM + 1), "unknown error");
	ck_assert_str_eq(saga_version(), "0.1.0");
}
END_TEST

START_TEST(state_names_round_trip)
{
	static const char *names[] = { "running", "compensating", "completed", "compensated",
		"failed" };
	for (int s = SAGA_STATE_RUNNING; s <= SAGA_STATE_FAILED; s++) {
		ck_assert_str_eq(saga_state_name((saga_state)s), names[s - 1]);
		ck_assert_int_eq(saga_state_parse(names[s - 1]), s);
	}
	ck_assert_str_eq(saga_state_name(SAGA_STATE_UNKNOWN), "unknown");
	ck_assert_str_eq(saga_state_name((saga_state)77), "unknown");
	ck_assert_int_eq(saga_state_parse("Running"), SAGA_STATE_UNKNOWN);
	ck_assert_int_eq(saga_state_parse(NULL), SAGA_STATE_UNKNOWN);
	ck_assert(!saga_state_is_final(SAGA_STATE_RUNNING));
	ck_assert(!saga_state_is_final(SAGA_STATE_COMPENSATING));
	ck_assert(saga_state_is_final(SAGA_STATE_COMPLETED));
	ck_assert(saga_state_is_final(SAGA_STATE_COMPENSATED));
	ck_assert(saga_state_is_final(SAGA_STATE_FAILED));

	static const char *steps[] = { "pending", "running", "retry_wait", "succeeded", "failed",
		"compensating", "comp_retry_wait", "compensated", "comp_failed" };
	for (int s = SAGA_STEP_PENDING; s <= SAGA_STEP_COMP_FAILED; s++)
		ck_assert_str_eq(saga_step_state_name((saga_step_state)s), steps[s - 1]);
	ck_assert_str_eq(saga_step_state_name(SAGA_STEP_UNKNOWN), "unknown");
	ck_assert_str_eq(saga_step_state_name((saga_step_state)-3), "unknown");
}
END_TEST

START_TEST(free_functions_accept_null)
{
	saga_client_free(NULL);
	saga_info_free(NULL);
	saga_list_free(NULL);
	saga_register_result_free(NULL);
	saga_string_free(NULL);
	ck_assert_str_eq(saga_client_errmsg(NULL), "");
}
END_TEST

/* ---- several URLs --------------------------------------------------------

 * A second fake sagad, for clients given two URLs: it answers every get
 * like the first (reply_full_saga), or nothing while `silent`, and counts
 * what it receives. */
static struct {
	nng_socket sock;
	nng_listener listener;
	pthread_t thread;
	atomic_int requests;
	atomic_int silent;
	char url[64];
} B;

static void *
b_main(void *arg)
{
	(void)arg;
	for (;;) {
		nng_msg *m;
		if (nng_recvmsg(B.sock, &m, 0) != 0)
			break;
		int err = 0;
		Sagawire__Request *req = wire_unpack_request(nng_msg_body(m), nng_msg_len(m), &err);
		nng_msg_free(m);
		if (req == NULL)
			continue;
		atomic_fetch_add(&B.requests, 1);
		nng_msg *reply = atomic_load(&B.silent) ? NULL : reply_full_saga(req);
		wire_free(&req->base);
		if (reply != NULL && nng_sendmsg(B.sock, reply, 0) != 0)
			nng_msg_free(reply);
	}
	return NULL;
}

static void
b_start(void)
{
	int port;
	atomic_store(&B.requests, 0);
	atomic_store(&B.silent, 0);
	ck_assert_int_eq(nng_rep0_open(&B.sock), 0);
	ck_assert_int_eq(nng_listen(B.sock, "tcp://127.0.0.1:0", &B.listener, 0), 0);
	ck_assert_int_eq(nng_listener_get_int(B.listener, NNG_OPT_TCP_BOUND_PORT, &port), 0);
	snprintf(B.url, sizeof(B.url), "tcp://127.0.0.1:%d", port);
	ck_assert_int_eq(pthread_create(&B.thread, NULL, b_main, NULL), 0);
}

static void
b_stop(void)
{
	nng_close(B.sock);
	pthread_join(B.thread, NULL);
}

static saga_client *
client_of(const char *urls, int timeout_ms)
{
	saga_client *c = NULL;
	ck_assert_int_eq(saga_client_new(urls, &c), SAGA_OK);
	ck_assert_int_eq(saga_client_set_timeout(c, timeout_ms), SAGA_OK);
	return c;
}

static int
get_ok(saga_client *c)
{
	saga_info *i = NULL;
	int rv = saga_client_get(c, "0190a5f2-6b7c-7d8e-9f00-112233445566", &i);
	saga_info_free(i);
	return rv;
}

START_TEST(client_with_a_dead_url_completes_calls_on_the_live_one)
{
	char urls[256];
	fake_handler = reply_full_saga;
	/* The dead one first: nothing listens there. */
	snprintf(urls, sizeof(urls), "ipc://%s/nobody.sock , %s", tmpdir, url);
	saga_client *c = client_of(urls, 2000);
	int64_t t0 = wire_mono_ms();
	for (int i = 0; i < 10; i++)
		ck_assert_msg(get_ok(c) == SAGA_OK, "call %d: %s", i, saga_client_errmsg(c));
	/* No call waited for the dead one. */
	ck_assert_int_lt(wire_mono_ms() - t0, 1500);
	ck_assert_int_eq(atomic_load(&fake_requests), 10);
	saga_client_free(c);
}
END_TEST

START_TEST(client_with_no_url_up_is_refused_naming_the_list)
{
	char urls[256], want[512];
	snprintf(urls, sizeof(urls), "ipc://%s/a.sock,ipc://%s/b.sock", tmpdir, tmpdir);
	saga_client *c = client_of(urls, 200);
	ck_assert_int_eq(get_ok(c), SAGA_ECONN);
	snprintf(want, sizeof(want),
	    "cannot reach sagad at %s: connection refused (is sagad running there?)", urls);
	ck_assert_str_eq(saga_client_errmsg(c), want);
	saga_client_free(c);
}
END_TEST

START_TEST(client_with_two_urls_up_spreads_its_calls_over_both)
{
	char urls[256];
	fake_handler = reply_full_saga;
	b_start();
	snprintf(urls, sizeof(urls), "%s,%s", url, B.url);
	saga_client *c = client_of(urls, 2000);
	/* Until both connections are up, calls go to the one that is. */
	int64_t until = wire_mono_ms() + 5000;
	while ((atomic_load(&fake_requests) == 0 || atomic_load(&B.requests) == 0) &&
	    wire_mono_ms() < until) {
		ck_assert_int_eq(get_ok(c), SAGA_OK);
		usleep(5000);
	}
	int a0 = atomic_load(&fake_requests), b0 = atomic_load(&B.requests);
	ck_assert_int_gt(a0, 0);
	ck_assert_int_gt(b0, 0);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(get_ok(c), SAGA_OK);
	int a = atomic_load(&fake_requests) - a0, b = atomic_load(&B.requests) - b0;
	ck_assert_int_eq(a + b, 20);
	ck_assert_msg(a >= 5 && b >= 5, "calls: %d to one, %d to the other", a, b);
	saga_client_free(c);
	b_stop();
}
END_TEST

static void *
close_b_once_asked(void *arg)
{
	(void)arg;
	int64_t until = wire_mono_ms() + 5000;
	while (atomic_load(&B.requests) == 0 && wire_mono_ms() < until)
		usleep(1000);
	usleep(50 * 1000);
	/* B goes away with the call unanswered (its listener closes, and
	 * with it the connection). */
	nng_listener_close(B.listener);
	return NULL;
}

START_TEST(client_call_to_an_instance_that_dies_fails_and_is_not_resent)
{
	char urls[256];
	fake_handler = reply_full_saga;
	b_start();
	atomic_store(&B.silent, 1);
	snprintf(urls, sizeof(urls), "%s,%s", url, B.url);
	saga_client *c = client_of(urls, 5000);
	pthread_t closer;
	ck_assert_int_eq(pthread_create(&closer, NULL, close_b_once_asked, NULL), 0);
	/* Calls alternate between the two: one soon lands on B. */
	int rv = SAGA_OK, ok = 0;
	for (int i = 0; i < 200 && rv == SAGA_OK; i++) {
		if ((rv = get_ok(c)) == SAGA_OK)
			ok++;
		usleep(2000);
	}
	pthread_join(closer, NULL);
	ck_assert_msg(rv == SAGA_ECONN, "rv %d: %s", rv, saga_client_errmsg(c));
	ck_assert_ptr_nonnull(strstr(saga_client_errmsg(c), urls));
	/* It was not sent again to the other instance. */
	ck_assert_int_eq(atomic_load(&B.requests), 1);
	ck_assert_int_eq(atomic_load(&fake_requests), ok);
	/* The caller retries: the next calls go to the one left. */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(get_ok(c), SAGA_OK);
	ck_assert_int_eq(atomic_load(&fake_requests), ok + 3);
	saga_client_free(c);
	b_stop();
}
END_TEST

START_TEST(client_refuses_bad_url_lists)
{
	saga_client *c = NULL;
	char err[512];
	const char *bad[] = { "", ",", " , ", "tcp://127.0.0.1:7700,", "tcp://127.0.0.1:7700,,x",
		"tcp://127.0.0.1:7700,nonsense://where", "tcp://127.0.0.1:7700,tcp://no-port" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(saga_client_new(bad[i], &c) == SAGA_EINVAL, "accepted '%s'", bad[i]);
		ck_assert_ptr_null(c);
	}
	ck_assert_int_eq(
	    saga_url_list_check("tcp://127.0.0.1:7700,tcp://no-port", err, sizeof(err)),
	    SAGA_EINVAL);
	ck_assert_msg(strstr(err,
			  "entry 2 of the sagad URL list, \"tcp://no-port\", is not a "
			  "sagad URL: the address does not fit its scheme") != NULL,
	    "%s", err);
	/* A short buffer gets the start of the reason, still a string. */
	ck_assert_int_eq(saga_url_list_check(",", err, 8), SAGA_EINVAL);
	ck_assert_uint_eq(strlen(err), 7);
	/* Whitespace around entries is fine, and so is one URL twice. */
	char ok[300];
	snprintf(ok, sizeof(ok), " %s ,\t%s ", url, url);
	c = client_of(ok, 2000);
	fake_handler = reply_full_saga;
	ck_assert_int_eq(get_ok(c), SAGA_OK);
	saga_client_free(c);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("rpc");
	tcase_add_checked_fixture(tc, fake_start, fake_stop);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, get_converts_every_field);
	tcase_add_test(tc, error_reply_surfaces_code_and_message);
	tcase_add_test(tc, client_sends_its_credential_with_every_call_and_refuses_bad_ones);
	tcase_add_test(tc, unknown_error_code_is_protocol_error);
	tcase_add_test(tc, malformed_reply_is_protocol_error);
	tcase_add_test(tc, wrong_body_case_is_protocol_error);
	tcase_add_test(tc, no_server_listening_is_reported_unreachable_at_once);
	tcase_add_test(tc, silent_server_times_out);
	tcase_add_test(tc, oversized_reply_is_an_error_not_a_crash);
	tcase_add_test(tc, register_round_trip);
	tcase_add_test(tc, register_refused_names_the_problem);
	tcase_add_test(tc, start_round_trip_sends_options);
	tcase_add_test(tc, invalid_arguments_are_refused_before_sending);
	tcase_add_test(tc, list_round_trip_sends_filter);
	tcase_add_test(tc, cancel_round_trip);
	tcase_add_test(tc, wait_uses_one_wait_request_then_reads_the_final_status);
	tcase_add_test(tc, wait_falls_back_to_polling_an_older_sagad);
	tcase_add_test(tc, wait_times_out_with_last_status);
	tcase_add_test(tc, wait_stops_at_a_permanent_error);
	tcase_add_test(tc, client_with_a_dead_url_completes_calls_on_the_live_one);
	tcase_add_test(tc, client_with_no_url_up_is_refused_naming_the_list);
	tcase_add_test(tc, client_with_two_urls_up_spreads_its_calls_over_both);
	tcase_add_test(tc, client_call_to_an_instance_that_dies_fails_and_is_not_resent);
	tcase_add_test(tc, client_refuses_bad_url_lists);
	suite_add_tcase(s, tc);
	TCase *tcc = tcase_create("common");
	tcase_add_test(tcc, every_error_has_a_description);
	tcase_add_test(tcc, state_names_round_trip);
	tcase_add_test(tcc, free_functions_accept_null);
	suite_add_tcase(s, tcc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
