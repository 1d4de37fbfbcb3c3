/*
 * Integration: reports that cannot be forged (docs/SECURITY.md,
 * "Unforgeable reports"). A real sagad, real test participants on libsaga,
 * and a raw nng REQ client speaking sagawire that plays the forger: it
 * claims to be a participant and reports outcomes for steps it was not
 * sent, with no token or a wrong one, or with a real token of another
 * participant's step. Each forged result must be refused (ReportAck
 * .refused, the log, the metric), change nothing, and the saga must end as
 * the real participants make it end.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "saga.h"
#include "sagawire.pb-c.h"
#include "th.h"
#include "th_sagad.h"
#include "wire.h"

#define WAIT_MS 30000

static th_pg *pg;

static void
cluster_up(void)
{
	ck_assert_msg(th_pg_start(&pg) == 0, "cannot start PostgreSQL");
}

static void
cluster_down(void)
{
	th_pg_free(pg);
	pg = NULL;
}

/* ---- HTTP (metrics) ------------------------------------------------------ */

/* A world whose sagad serves /metrics on *port. Participants serve names
 * (NULL = all). */
static ths *
world(const char *db, int *port, const char *const names[])
{
	static char url[64];
	*port = ths_free_port();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", *port);
	const char *args[] = { "--http-listen", url, NULL };
	ths *t = ths_new_ok(pg, db);
	ths_sagad_start_ok(t, args);
	ths_participant_ok(t, "main", 16, names);
	ths_register_sagas_ok(t);
	return t;
}

/* The value of sample `line` ("name{labels}") in /metrics, or -1. */
static long long
metric(int port, const char *sample)
{
	char *r = ths_http_get(port, "/metrics");
	char want[256];
	snprintf(want, sizeof(want), "\n%s ", sample);
	const char *p = strstr(r, want);
	long long v = p ? atoll(p + strlen(want)) : -1;
	free(r);
	return v;
}

/* ---- the forger: a raw REQ socket ---------------------------------------- */

/* A raw connection to sagad (one nng pipe). Never closed: nng 1.5.2's
 * nng_close can hang (see test_rpc_input.c); the process ends soon. */
static nng_socket
raw_open(const char *url)
{
	nng_socket s;
	ck_assert_int_eq(nng_req0_open(&s), 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 25000);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 10000);
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 1 << 20);
	int rv = nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK);
	ck_assert_msg(rv == 0, "dial %s: %s", url, nng_strerror(rv));
	return s;
}

/* Sends q, returns the decoded Response (free with
 * sagawire__response__free_unpacked). */
static Sagawire__Response *
raw_call(nng_socket s, const Sagawire__Request *q)
{
	size_t len = sagawire__request__get_packed_size(q);
	uint8_t *buf = malloc(len ? len : 1);
	sagawire__request__pack(q, buf);
	void *reply = NULL;
	size_t rlen = 0;
	int rv = nng_send(s, buf, len, 0);
	if (rv == 0)
		rv = nng_recv(s, &reply, &rlen, NNG_FLAG_ALLOC);
	free(buf);
	ck_assert_msg(rv == 0, "raw call: %s", nng_strerror(rv));
	Sagawire__Response *resp = sagawire__response__unpack(NULL, rlen, reply);
	nng_free(reply, rlen);
	ck_assert_msg(resp != NULL, "sagad's reply is not a Response");
	return resp;
}

/* Polls as participant until a batch with a dispatch comes; returns the
 * response (its first dispatch is the one wanted). */
static Sagawire__Response *
raw_poll_ok(nng_socket s, const char *participant)
{
	for (int i = 0; i < 10; i++) {
		Sagawire__WorkPoll p = SAGAWIRE__WORK_POLL__INIT;
		p.participant = (char *)participant;
		p.capacity = 1;
		p.instance = "forger";
		Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
		q.body_case = SAGAWIRE__REQUEST__BODY_POLL;
		q.poll = &p;
		Sagawire__Response *resp = raw_call(s, &q);
		ck_assert_msg(resp->error == NULL, "poll: %s", resp->error->message);
		ck_assert_int_eq(resp->body_case, SAGAWIRE__RESPONSE__BODY_WORK);
		if (resp->work->n_dispatches > 0)
			return resp;
		sagawire__response__free_unpacked(resp, NULL);
	}
	ck_abort_msg("no dispatch came to the raw participant %s", participant);
	return NULL;
}

/* One result to forge. */
typedef struct forged {
	const uint8_t *saga; /* 16 bytes */
	uint32_t step_index;
	const char *step;
	Sagawire__StepKind kind;
	uint32_t attempt;
	Sagawire__Outcome outcome;
	const char *output;
	const uint8_t *token; /* NULL: none */
	size_t token_len;
} forged;

/* Reports results as participant; returns the ack's counts. */
static void
raw_report_ok(nng_socket s, const char *participant, const forged *f, size_t n, uint32_t *accepted,
    uint32_t *ignored, uint32_t *refused)
{
	Sagawire__Result r[16], *rp[16];
	ck_assert_uint_le(n, 16);
	for (size_t i = 0; i < n; i++) {
		sagawire__result__init(&r[i]);
		r[i].saga_id.data = (uint8_t *)f[i].saga;
		r[i].saga_id.len = 16;
		r[i].step_index = f[i].step_index;
		r[i].step = (char *)f[i].step;
		r[i].kind = f[i].kind;
		r[i].attempt = f[i].attempt;
		r[i].outcome = f[i].outcome;
		if (f[i].output) {
			r[i].output.data = (uint8_t *)f[i].output;
			r[i].output.len = strlen(f[i].output);
		}
		if (f[i].outcome == SAGAWIRE__OUTCOME__OUTCOME_FAIL)
			r[i].error = "forged failure";
		r[i].token.data = (uint8_t *)f[i].token;
		r[i].token.len = f[i].token ? f[i].token_len : 0;
		rp[i] = &r[i];
	}
	Sagawire__Report rep = SAGAWIRE__REPORT__INIT;
	rep.participant = (char *)participant;
	rep.n_results = n;
	rep.results = rp;
	Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
	q.body_case = SAGAWIRE__REQUEST__BODY_REPORT;
	q.report = &rep;
	Sagawire__Response *resp = raw_call(s, &q);
	ck_assert_msg(resp->error == NULL, "report: %s", resp->error->message);
	ck_assert_int_eq(resp->body_case, SAGAWIRE__RESPONSE__BODY_ACK);
	*accepted = resp->ack->accepted;
	*ignored = resp->ack->ignored;
	*refused = resp->ack->refused;
	sagawire__response__free_unpacked(resp, NULL);
}

/* ---- checks --------------------------------------------------------------- */

static saga_info *
get_ok(ths *t, const char *id)
{
	saga_info *i = NULL;
	ck_assert_int_eq(saga_client_get(ths_client(t), id, &i), SAGA_OK);
	return i;
}

/* The saga is as it was: same state, same last change, every step in the
 * same state with the same attempts. */
static void
assert_unchanged(const saga_info *before, const saga_info *after)
{
	ck_assert_int_eq(after->state, before->state);
	ck_assert_int_eq(after->updated_us, before->updated_us);
	ck_assert_uint_eq(after->n_steps, before->n_steps);
	ck_assert_uint_eq(after->n_events, before->n_events);
	for (size_t i = 0; i < before->n_steps; i++) {
		ck_assert_int_eq(after->steps[i].state, before->steps[i].state);
		ck_assert_uint_eq(after->steps[i].attempts, before->steps[i].attempts);
		ck_assert_uint_eq(after->steps[i].comp_attempts, before->steps[i].comp_attempts);
		ck_assert_uint_eq(after->steps[i].result_len, before->steps[i].result_len);
	}
}

/* A step's result is what the real test participant returns:
 * "<rpc>@<saga id>". */
static void
assert_real_result(const saga_info *i, const char *step)
{
	const saga_step_info *s = ths_step_ok(i, step);
	char want[128];
	snprintf(want, sizeof(want), "%s@%s", step, i->saga_id);
	ck_assert_msg(s->result_len == strlen(want) && memcmp(s->result, want, s->result_len) == 0,
	    "step %s's result is '%.*s', not the real participant's '%s'", step, (int)s->result_len,
	    (const char *)s->result, want);
}

static int
log_count(ths *t, const char *needle)
{
	size_t len = 0;
	char *log = th_read_file(ths_sagad_log(t), &len);
	int n = 0;
	for (const char *p = log; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(log);
	return n;
}

#define A  SAGAWIRE__STEP_KIND__STEP_ACTION
#define C  SAGAWIRE__STEP_KIND__STEP_COMPENSATION
#define OK SAGAWIRE__OUTCOME__OUTCOME_SUCCESS
#define NO SAGAWIRE__OUTCOME__OUTCOME_FAIL
#define HB SAGAWIRE__OUTCOME__OUTCOME_HEARTBEAT

/* ---- tests ------------------------------------------------------------------ */

/*
 * While B runs at the real pB, a forger claiming to be pB reports B's
 * success and failure (no token, a made-up one), a heartbeat for it, the
 * success of C (never dispatched yet) and A's compensation: every one is
 * refused, nothing changes, and the saga completes with the real results.
 */
START_TEST(forged_outcomes_without_the_dispatch_token_are_refused_and_change_nothing)
{
	int port;
	ths *t = world("rp_forged", &port, NULL);
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	saga_info *before = get_ok(t, id);
	uint8_t sid[16], made_up[16];
	ck_assert_int_eq(wire_uuid_parse(id, sid), 0);
	memset(made_up, 0x5a, sizeof(made_up));
	const forged f[] = {
		{ sid, 1, "B", A, 1, OK, "forged", NULL, 0 },
		{ sid, 1, "B", A, 1, NO, NULL, made_up, 16 },
		{ sid, 1, "B", A, 1, HB, NULL, made_up, 16 },
		{ sid, 1, "B", A, 1, OK, "forged", made_up, 8 }, /* a short token */
		{ sid, 2, "C", A, 1, OK, "forged", made_up, 16 },
		{ sid, 0, "A", C, 1, OK, NULL, made_up, 16 },
	};
	nng_socket s = raw_open(ths_url(t));
	uint32_t acc, ign, ref;
	raw_report_ok(s, "pB", f, 6, &acc, &ign, &ref);
	ck_assert_uint_eq(acc, 0);
	ck_assert_uint_eq(ign, 0);
	ck_assert_uint_eq(ref, 6);
	saga_info *after = get_ok(t, id);
	assert_unchanged(before, after);
	saga_info_free(after);
	/* Counted and logged (the log says why, naming the saga). */
	ck_assert_int_eq(metric(port, "sagad_reports_refused_total{reason=\"token\"}"), 6);
	ck_assert_int_eq(metric(port, "sagad_reports_refused_total{reason=\"participant\"}"), 0);
	ck_assert_int_ge(log_count(t, "it carries no dispatch token"), 1);
	ck_assert_int_ge(log_count(t, "its token is not the one sent with that attempt"), 5);

	saga_info *fin = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(fin->state, SAGA_STATE_COMPLETED);
	ck_assert_uint_eq(ths_step_ok(fin, "B")->attempts, 1);
	assert_real_result(fin, "A");
	assert_real_result(fin, "B");
	assert_real_result(fin, "C");
	saga_info_free(fin);
	saga_info_free(before);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/*
 * C fails, so B and A are compensated; B's compensation takes its time at
 * the real pB. A forged "compensation succeeded" for B and for A (whose
 * compensation was not dispatched yet) is refused; the saga is compensated
 * only when the real participant has undone each step.
 */
START_TEST(a_forged_compensation_success_is_refused_while_the_real_one_runs)
{
	int port;
	ths *t = world("rp_comp", &port, NULL);
	char *id = ths_start_ok(t, "ittest.Linear3", "fail=C;compsleep=B:1500");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_COMPENSATING, WAIT_MS);
	saga_info *before = get_ok(t, id);
	uint8_t sid[16], made_up[16];
	ck_assert_int_eq(wire_uuid_parse(id, sid), 0);
	memset(made_up, 0xa5, sizeof(made_up));
	const forged f[] = {
		{ sid, 1, "B", C, 1, OK, NULL, NULL, 0 },
		{ sid, 1, "B", C, 1, OK, NULL, made_up, 16 },
		{ sid, 0, "A", C, 1, OK, NULL, made_up, 16 },
	};
	nng_socket s = raw_open(ths_url(t));
	uint32_t acc, ign, ref;
	raw_report_ok(s, "pB", f, 2, &acc, &ign, &ref);
	ck_assert_uint_eq(acc + ign, 0);
	ck_assert_uint_eq(ref, 2);
	raw_report_ok(s, "pA", f + 2, 1, &acc, &ign, &ref);
	ck_assert_uint_eq(acc + ign, 0);
	ck_assert_uint_eq(ref, 1);
	saga_info *after = get_ok(t, id);
	assert_unchanged(before, after);
	ck_assert_int_eq(ths_step_ok(after, "B")->state, SAGA_STEP_COMPENSATING);
	ck_assert_int_eq(ths_step_ok(after, "A")->state, SAGA_STEP_SUCCEEDED);
	saga_info_free(after);

	saga_info *fin = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(fin->state, SAGA_STATE_COMPENSATED);
	ck_assert_int_eq(ths_step_ok(fin, "B")->state, SAGA_STEP_COMPENSATED);
	/* The real participant undid both, B before A. */
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoB", "ok"), 1);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", "ok"), 1);
	ck_assert_int_gt(ths_journal_find(j, 0, id, 'c', "UndoA", "ok"),
	    ths_journal_find(j, 0, id, 'c', "UndoB", "ok"));
	ck_assert_int_ge(
	    ths_step_ok(fin, "A")->comp_finished_us, ths_step_ok(fin, "B")->comp_finished_us);
	ths_journal_free(j);
	saga_info_free(fin);
	saga_info_free(before);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/*
 * The forger serves pA itself, so it holds A's real dispatch and token. The
 * token proves that one attempt of that one step to pA only: reported as
 * pB (on the pA connection, or on another), for another attempt or as the
 * compensation, it is refused. Reported right, as pA, it is accepted and
 * the saga goes on.
 */
START_TEST(a_real_token_proves_only_its_own_attempt_to_its_own_participant)
{
	int port;
	static const char *const others[] = { "pB", "pC", NULL };
	ths *t = world("rp_real_token", &port, others);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=real-token");
	nng_socket pa = raw_open(ths_url(t));
	Sagawire__Response *batch = raw_poll_ok(pa, "pA");
	const Sagawire__Dispatch *d = batch->work->dispatches[0];
	char did[WIRE_UUID_STRLEN];
	wire_uuid_format(d->saga_id.data, did);
	ck_assert_str_eq(did, id);
	ck_assert_str_eq(d->step, "A");
	ck_assert_uint_eq(d->attempt, 1);
	ck_assert_uint_eq(d->token.len, 16);
	saga_info *before = get_ok(t, id);

	char out[128];
	snprintf(out, sizeof(out), "A@%s", id);
	const uint8_t *sid = d->saga_id.data, *tok = d->token.data;
	uint32_t acc, ign, ref;
	/* as another participant, on the connection that polls as pA */
	forged f = { sid, 0, "A", A, 1, OK, out, tok, 16 };
	raw_report_ok(pa, "pB", &f, 1, &acc, &ign, &ref);
	ck_assert_uint_eq(ref, 1);
	/* as another participant, on a fresh connection */
	nng_socket other = raw_open(ths_url(t));
	raw_report_ok(other, "pB", &f, 1, &acc, &ign, &ref);
	ck_assert_uint_eq(ref, 1);
	/* as pA, but for another attempt, or the compensation */
	forged g[] = { f, f };
	g[0].attempt = 2;
	g[1].kind = C;
	raw_report_ok(other, "pA", g, 2, &acc, &ign, &ref);
	ck_assert_uint_eq(acc + ign, 0);
	ck_assert_uint_eq(ref, 2);
	saga_info *after = get_ok(t, id);
	assert_unchanged(before, after);
	saga_info_free(after);
	ck_assert_int_eq(metric(port, "sagad_reports_refused_total{reason=\"participant\"}"), 2);
	ck_assert_int_eq(metric(port, "sagad_reports_refused_total{reason=\"token\"}"), 2);
	ck_assert_int_ge(log_count(t, "the step belongs to participant 'pA'"), 2);

	/* The right answer, from pA with its token: accepted. */
	raw_report_ok(pa, "pA", &f, 1, &acc, &ign, &ref);
	ck_assert_uint_eq(acc, 1);
	ck_assert_uint_eq(ref, 0);
	/* A late duplicate of it proves its dispatch but comes late: ignored. */
	raw_report_ok(other, "pA", &f, 1, &acc, &ign, &ref);
	ck_assert_uint_eq(acc + ref, 0);
	ck_assert_uint_eq(ign, 1);
	sagawire__response__free_unpacked(batch, NULL);

	saga_info *fin = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(fin->state, SAGA_STATE_COMPLETED);
	assert_real_result(fin, "A");
	assert_real_result(fin, "C");
	saga_info_free(fin);
	saga_info_free(before);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/*
 * The key is in the database, not in the process: a token sagad sent
 * before it was killed is accepted by the sagad that starts next.
 */
START_TEST(a_token_made_before_a_crash_is_accepted_after_the_restart)
{
	int port;
	static const char *const others[] = { "pB", "pC", NULL };
	ths *t = world("rp_restart", &port, others);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=restart");
	nng_socket pa = raw_open(ths_url(t));
	Sagawire__Response *batch = raw_poll_ok(pa, "pA");
	const Sagawire__Dispatch *d = batch->work->dispatches[0];
	ck_assert_str_eq(d->step, "A");
	ths_sagad_signal(t, SIGKILL);
	static char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	const char *args[] = { "--http-listen", url, NULL };
	ths_sagad_start_ok(t, args);

	char out[128];
	snprintf(out, sizeof(out), "A@%s", id);
	forged f = { d->saga_id.data, 0, "A", A, d->attempt, OK, out, d->token.data, 16 };
	nng_socket again = raw_open(ths_url(t));
	uint32_t acc, ign, ref;
	raw_report_ok(again, "pA", &f, 1, &acc, &ign, &ref);
	ck_assert_uint_eq(ref, 0);
	ck_assert_uint_eq(acc, 1);
	sagawire__response__free_unpacked(batch, NULL);
	saga_info *fin = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(fin->state, SAGA_STATE_COMPLETED);
	ck_assert_uint_eq(ths_step_ok(fin, "A")->attempts, 1);
	assert_real_result(fin, "A");
	saga_info_free(fin);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/*
 * Two sagads on one database share the key: a dispatch instance 0 made is
 * proved to instance 1, which takes the saga over when instance 0 is
 * killed. Before the takeover instance 1 does not hold the saga (the result
 * is ignored, not refused: its token is good); after, it is accepted.
 */
START_TEST(a_token_made_by_one_instance_is_accepted_by_the_one_that_takes_over)
{
	static const char *const args[] = { "--lease-ms", "2000", NULL };
	static const char *const others[] = { "pB", "pC", NULL };
	ths *t = ths_new_ok(pg, "rp_takeover");
	ths_sagad_n_start_ok(t, 0, args);
	ths_sagad_n_start_ok(t, 1, args);
	ths_participant_at_ok(t, ths_urls(t, 2), "main", 16, others);
	ths_register_sagas_ok(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=takeover"); /* at instance 0 */
	nng_socket pa = raw_open(ths_sagad_n_url(t, 0));
	Sagawire__Response *batch = raw_poll_ok(pa, "pA");
	const Sagawire__Dispatch *d = batch->work->dispatches[0];
	ck_assert_str_eq(d->step, "A");
	ths_sagad_n_signal(t, 0, SIGKILL);

	char out[128];
	snprintf(out, sizeof(out), "A@%s", id);
	forged f = { d->saga_id.data, 0, "A", A, d->attempt, OK, out, d->token.data, 16 };
	nng_socket one = raw_open(ths_sagad_n_url(t, 1));
	uint32_t acc = 0, ign, ref;
	int64_t until = wire_mono_ms() + 20000;
	while (acc == 0 && wire_mono_ms() < until) {
		raw_report_ok(one, "pA", &f, 1, &acc, &ign, &ref);
		ck_assert_uint_eq(ref, 0);
		if (acc == 0)
			usleep(200000);
	}
	ck_assert_uint_eq(acc, 1);
	sagawire__response__free_unpacked(batch, NULL);
	saga_client *c1 = NULL;
	ck_assert_int_eq(saga_client_new(ths_sagad_n_url(t, 1), &c1), SAGA_OK);
	saga_info *fin = NULL;
	ck_assert_int_eq(saga_client_wait(c1, id, WAIT_MS, &fin), SAGA_OK);
	ck_assert_int_eq(fin->state, SAGA_STATE_COMPLETED);
	ck_assert_uint_eq(ths_step_ok(fin, "A")->attempts, 1);
	assert_real_result(fin, "A");
	saga_info_free(fin);
	saga_client_free(c1);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- expiring series ------------------------------------------------------ */

static int
participant_listed(ths *t, const char *name)
{
	saga_participant_list *l = NULL;
	ck_assert_int_eq(saga_client_participants(ths_client(t), &l), SAGA_OK);
	int found = 0;
	for (size_t i = 0; i < l->count; i++)
		found |= strcmp(l->participants[i].name, name) == 0;
	saga_participant_list_free(l);
	return found;
}

static int
metrics_mention(int port, const char *needle)
{
	char *r = ths_http_get(port, "/metrics");
	int found = strstr(r, needle) != NULL;
	free(r);
	return found;
}

/*
 * pT serves one saga and goes away: its series (connections, breaker,
 * step latency) and its line in the participants list stay while it may
 * come back, and go once it has been gone longer than
 * --participant-series-ttl-ms. Participants still connected stay.
 */
START_TEST(series_of_a_participant_gone_longer_than_the_ttl_expire)
{
	int port = ths_free_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	const char *args[] = { "--http-listen", url, "--participant-series-ttl-ms", "2000", NULL };
	ths *t = ths_new_ok(pg, "rp_series");
	ths_sagad_start_ok(t, args);
	static const char *const main_names[] = { "pA", "pB", "pC", NULL };
	static const char *const t_names[] = { "pT", NULL };
	ths_participant_ok(t, "main", 16, main_names);
	pid_t pt = ths_participant_ok(t, "tee", 4, t_names);
	ths_register_sagas_ok(t);
	char *id = ths_start_ok(t, "ittest.Timeouty", "tag=series");
	saga_info *fin = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(fin->state, SAGA_STATE_COMPLETED);
	saga_info_free(fin);
	saga_string_free(id);
	ck_assert(metrics_mention(port, "sagad_step_latency_seconds_count{participant=\"pT\"} 1"));
	ck_assert(metrics_mention(port, "sagad_participant_connections{participant=\"pT\"} 1"));

	ck_assert_int_eq(ths_participant_signal(t, pt, SIGTERM), 0);
	/* Gone, but not for long: still known, with no connection. */
	ck_assert(metrics_mention(port, "sagad_participant_connections{participant=\"pT\"} 0"));
	ck_assert(participant_listed(t, "pT"));
	/* Forgotten within the TTL and a sweep (a tenth of it). */
	int64_t until = wire_mono_ms() + 10000;
	while ((participant_listed(t, "pT") || metrics_mention(port, "participant=\"pT\"")) &&
	    wire_mono_ms() < until)
		usleep(100000);
	ck_assert_msg(!participant_listed(t, "pT"), "pT still listed after its TTL");
	ck_assert_msg(!metrics_mention(port, "participant=\"pT\""), "pT's series still there");
	ck_assert(participant_listed(t, "pA"));
	ck_assert(metrics_mention(port, "sagad_participant_connections{participant=\"pA\"} 1"));
	ck_assert_int_ge(log_count(t, "participant pT: no connection for"), 1);

	/* It comes back: known again. */
	ths_participant_ok(t, "tee2", 4, t_names);
	until = wire_mono_ms() + 10000;
	while (!participant_listed(t, "pT") && wire_mono_ms() < until)
		usleep(50000);
	ck_assert(participant_listed(t, "pT"));
	ths_free(t);
}
END_TEST

static Suite *
reports_suite(void)
{
	Suite *s = suite_create("reports");
	TCase *tc = tcase_create("forged");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
	    tc, forged_outcomes_without_the_dispatch_token_are_refused_and_change_nothing);
	tcase_add_test(tc, a_forged_compensation_success_is_refused_while_the_real_one_runs);
	tcase_add_test(tc, a_real_token_proves_only_its_own_attempt_to_its_own_participant);
	tcase_add_test(tc, a_token_made_before_a_crash_is_accepted_after_the_restart);
	tcase_add_test(tc, a_token_made_by_one_instance_is_accepted_by_the_one_that_takes_over);
	suite_add_tcase(s, tc);
	tc = tcase_create("series");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, series_of_a_participant_gone_longer_than_the_ttl_expire);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(reports_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
