/*
 * Integration: principals, credentials and roles (docs/SECURITY.md). A real
 * sagad with --auth on, real PostgreSQL, real participant processes on
 * libsaga, sagactl, and raw sagawire requests from a plain nng REQ socket
 * carrying whatever credential a test wants: every request type without a
 * credential, with a wrong, malformed or revoked one, and with a role too
 * weak for it is refused with the right code, and nothing changes in the
 * database.
 */
#define _GNU_SOURCE
#include <check.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
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

/* A world with auth on and sagad up; sagas.proto registered by the
 * bootstrap admin. */
static ths *
auth_world(const char *db, const char *const extra[])
{
	ths *t = ths_new_ok(pg, db);
	ths_auth_on(t);
	ths_sagad_start_ok(t, extra);
	ths_register_sagas_ok(t);
	return t;
}

/* ---- HTTP (/metrics) ------------------------------------------------------- */

/* ---- raw requests ------------------------------------------------------- */

/* Sends q (with credential cred, may be NULL) on a fresh REQ socket and
 * returns the decoded Response (caller frees with
 * sagawire__response__free_unpacked), or NULL if none came in 10 s. */
static Sagawire__Response *
raw(ths *t, Sagawire__Request *q, const char *cred)
{
	nng_socket s;
	void *reply = NULL;
	size_t rlen = 0;
	Sagawire__Response *resp = NULL;
	q->credential = (char *)(cred != NULL ? cred : "");
	size_t len = sagawire__request__get_packed_size(q);
	uint8_t *buf = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(buf);
	sagawire__request__pack(q, buf);
	ck_assert_int_eq(nng_req0_open(&s), 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 10000);
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 4 << 20);
	ck_assert_int_eq(nng_dial(s, ths_url(t), NULL, NNG_FLAG_NONBLOCK), 0);
	if (nng_send(s, buf, len, 0) == 0 && nng_recv(s, &reply, &rlen, NNG_FLAG_ALLOC) == 0) {
		resp = sagawire__response__unpack(NULL, rlen, reply);
		nng_free(reply, rlen);
	}
	free(buf);
	/* Not closed: nng 1.5.2's nng_close can hang (see test_rpc_input.c). */
	return resp;
}

/* The error code sagad answered q with (0 = no error); *msg (may be NULL)
 * gets a copy of the message. */
static int
raw_code(ths *t, Sagawire__Request *q, const char *cred, char **msg)
{
	Sagawire__Response *r = raw(t, q, cred);
	ck_assert_msg(r != NULL, "no answer from sagad");
	int code = r->error != NULL ? (int)r->error->code : 0;
	if (msg != NULL)
		*msg = strdup(r->error != NULL ? r->error->message : "");
	sagawire__response__free_unpacked(r, NULL);
	return code;
}

/* One request of every type sagad serves, about saga sid. */
typedef struct all_requests {
	Sagawire__Request q[14];
	const char *name[14];
	int need[14]; /* 1 participant, 2 client, 3 operator, 4 admin */
	size_t n;
	Sagawire__RegisterRequest reg;
	Sagawire__StartRequest start;
	Sagawire__GetRequest get;
	Sagawire__ListRequest list;
	Sagawire__CancelRequest cancel;
	Sagawire__WaitRequest wait;
	Sagawire__ParticipantsRequest parts;
	Sagawire__OperateRequest op;
	Sagawire__DescribeRequest desc;
	Sagawire__WorkPoll poll;
	Sagawire__Report report;
	Sagawire__Result result;
	Sagawire__Result *results[1];
	Sagawire__PrincipalRequest pcreate, plist, prevoke;
	uint8_t sid_bytes[16];
	char *descriptor;
} all_requests;

static void
add(all_requests *a, const char *name, int need, Sagawire__Request__BodyCase bc, void *body)
{
	Sagawire__Request *q = &a->q[a->n];
	sagawire__request__init(q);
	q->body_case = bc;
	/* Every body member of the oneof is a pointer at the same place. */
	q->register_ = body;
	a->name[a->n] = name;
	a->need[a->n] = need;
	a->n++;
}

static void
all_requests_init(all_requests *a, const char *sid, const char *participant)
{
	memset(a, 0, sizeof(*a));
	size_t len = 0;
	a->descriptor = th_read_file(ths_env_ok("IT_SAGAS_V2"), &len);
	ck_assert_ptr_nonnull(a->descriptor);
	sagawire__register_request__init(&a->reg);
	a->reg.descriptor_set.data = (uint8_t *)a->descriptor;
	a->reg.descriptor_set.len = len;
	add(a, "register", 4, SAGAWIRE__REQUEST__BODY_REGISTER, &a->reg);
	sagawire__start_request__init(&a->start);
	a->start.definition = "ittest.Linear3";
	a->start.input.data = (uint8_t *)"tag=forged";
	a->start.input.len = 10;
	add(a, "start", 2, SAGAWIRE__REQUEST__BODY_START, &a->start);
	sagawire__get_request__init(&a->get);
	a->get.saga_id = (char *)sid;
	add(a, "get", 2, SAGAWIRE__REQUEST__BODY_GET, &a->get);
	sagawire__list_request__init(&a->list);
	add(a, "list", 2, SAGAWIRE__REQUEST__BODY_LIST, &a->list);
	sagawire__wait_request__init(&a->wait);
	a->wait.saga_id = (char *)sid;
	a->wait.timeout_ms = 1;
	add(a, "wait", 2, SAGAWIRE__REQUEST__BODY_WAIT, &a->wait);
	sagawire__participants_request__init(&a->parts);
	add(a, "participants", 2, SAGAWIRE__REQUEST__BODY_PARTICIPANTS, &a->parts);
	sagawire__describe_request__init(&a->desc);
	add(a, "describe", 2, SAGAWIRE__REQUEST__BODY_DESCRIBE, &a->desc);
	sagawire__cancel_request__init(&a->cancel);
	a->cancel.saga_id = (char *)sid;
	a->cancel.reason = "forged";
	add(a, "cancel", 3, SAGAWIRE__REQUEST__BODY_CANCEL, &a->cancel);
	sagawire__operate_request__init(&a->op);
	a->op.saga_id = (char *)sid;
	a->op.op = SAGAWIRE__OPERATION__OP_SKIP_STEP;
	a->op.step = "A";
	a->op.reason = "forged";
	add(a, "operate", 3, SAGAWIRE__REQUEST__BODY_OPERATE, &a->op);
	sagawire__principal_request__init(&a->pcreate);
	a->pcreate.op = SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_CREATE;
	a->pcreate.name = "intruder";
	a->pcreate.role = "admin";
	add(a, "principal create", 4, SAGAWIRE__REQUEST__BODY_PRINCIPAL, &a->pcreate);
	sagawire__principal_request__init(&a->plist);
	a->plist.op = SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_LIST;
	add(a, "principal list", 4, SAGAWIRE__REQUEST__BODY_PRINCIPAL, &a->plist);
	sagawire__principal_request__init(&a->prevoke);
	a->prevoke.op = SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_REVOKE;
	a->prevoke.name = "bootstrap";
	add(a, "principal revoke", 4, SAGAWIRE__REQUEST__BODY_PRINCIPAL, &a->prevoke);
	sagawire__work_poll__init(&a->poll);
	a->poll.participant = (char *)participant;
	a->poll.capacity = 4;
	add(a, "poll", 1, SAGAWIRE__REQUEST__BODY_POLL, &a->poll);
	/* A success for step A of the saga: accepted, it would move it on. */
	ck_assert_int_eq(wire_uuid_parse(sid, a->sid_bytes), 0);
	sagawire__result__init(&a->result);
	a->result.saga_id.data = a->sid_bytes;
	a->result.saga_id.len = 16;
	a->result.step_index = 0;
	a->result.step = "A";
	a->result.kind = SAGAWIRE__STEP_KIND__STEP_ACTION;
	a->result.attempt = 1;
	a->result.outcome = SAGAWIRE__OUTCOME__OUTCOME_SUCCESS;
	a->results[0] = &a->result;
	sagawire__report__init(&a->report);
	a->report.participant = (char *)participant;
	a->report.n_results = 1;
	a->report.results = a->results;
	add(a, "report", 1, SAGAWIRE__REQUEST__BODY_REPORT, &a->report);
}

/* Everything a refused request could have changed, as one text. */
static char *
db_snapshot(ths *t, const char *db)
{
	PGconn *c = th_pg_connect(pg, db);
	ck_assert_ptr_nonnull(c);
	PGresult *r = PQexec(c,
	    "SELECT (SELECT coalesce(string_agg(s::text, '|' ORDER BY id), '') FROM sagas s)"
	    " || '#' || (SELECT count(*) FROM saga_definitions)"
	    " || '#' || (SELECT coalesce(string_agg(p::text, '|' ORDER BY id), '')"
	    "   FROM saga_principals p)");
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
	char *s = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	(void)t;
	return s;
}

/* A credential of the right form for principal id `id` with a secret that
 * is not its. */
static char *
wrong_secret(const char *cred)
{
	char *w = strdup(cred);
	ck_assert_ptr_nonnull(w);
	char *dot = strchr(w, '.');
	ck_assert_ptr_nonnull(dot);
	for (char *p = dot + 1; *p; p++)
		*p = *p == 'A' ? 'B' : 'A';
	return w;
}

START_TEST(every_request_type_is_refused_without_a_valid_credential_or_with_a_weak_role)
{
	int port = ths_free_port();
	char http[64];
	snprintf(http, sizeof(http), "http://127.0.0.1:%d", port);
	const char *extra[] = { "--http-listen", http, NULL };
	ths *t = auth_world("au_every", extra);
	char *clientc = ths_principal_ok(t, "shop", "client", NULL, NULL);
	char *operc = ths_principal_ok(t, "ops", "operator", NULL, NULL);
	char *partc = ths_principal_ok(t, "pay", "participant", "pA", NULL);
	char *gonec = ths_principal_ok(t, "gone", "admin", NULL, NULL);
	saga_client *admin = ths_client(t);
	ck_assert_int_eq(saga_client_principal_revoke(admin, "gone", NULL), SAGA_OK);
	char *wrong = wrong_secret(ths_admin_credential_ok(t));

	/* A saga that stays running at step A: no participant is connected. */
	ths_set_credential(t, clientc);
	char *sid = ths_start_ok(t, "ittest.Linear3", "tag=still");
	ths_set_credential(t, NULL);
	char *before = db_snapshot(t, "au_every");

	all_requests a;
	all_requests_init(&a, sid, "pA");
	const char *no_cred[] = { NULL, "", "garbage", wrong, gonec };
	const char *no_cred_name[] = { "none", "empty", "malformed", "wrong secret", "revoked" };
	for (size_t i = 0; i < a.n; i++) {
		for (size_t k = 0; k < sizeof(no_cred) / sizeof(no_cred[0]); k++) {
			char *msg = NULL;
			int code = raw_code(t, &a.q[i], no_cred[k], &msg);
			ck_assert_msg(code == SAGA_EAUTH, "%s with %s credential: code %d (%s)",
			    a.name[i], no_cred_name[k], code, msg);
			ck_assert_msg(ths_contains(msg, "not authenticated"), "%s", msg);
			free(msg);
		}
		/* The role just too weak (a participant for client requests, a
		 * client for the others; participants' requests from a client). */
		const char *weak = a.need[i] == 2 ? partc
		    : a.need[i] == 3              ? clientc
		    : a.need[i] == 4              ? operc
						  : clientc;
		char *msg = NULL;
		int code = raw_code(t, &a.q[i], weak, &msg);
		ck_assert_msg(
		    code == SAGA_EPERM, "%s with a weak role: code %d (%s)", a.name[i], code, msg);
		ck_assert_msg(ths_contains(msg, "permission denied"), "%s", msg);
		free(msg);
	}
	/* An operator may not register or manage principals, but an admin
	 * reaches the request itself (then refused for its own reasons). */
	char *after = db_snapshot(t, "au_every");
	ck_assert_msg(strcmp(before, after) == 0,
	    "the database changed on refused requests:\nbefore %s\nafter  %s", before, after);

	/* A refused poll made no participant (pA is known only for the step
	 * waiting for it, with no connection). */
	a.poll.participant = "intruder";
	ck_assert_int_eq(raw_code(t, &a.q[12], NULL, NULL), SAGA_EAUTH);
	ck_assert_int_eq(raw_code(t, &a.q[12], partc, NULL), SAGA_EPERM);
	saga_participant_list *pl = NULL;
	ck_assert_int_eq(saga_client_participants(admin, &pl), SAGA_OK);
	for (size_t i = 0; i < pl->count; i++) {
		ck_assert_str_ne(pl->participants[i].name, "intruder");
		ck_assert_uint_eq(pl->participants[i].connections, 0);
	}
	saga_participant_list_free(pl);
	/* Nor a metric series; the refusals are counted. */
	char *m = ths_http_get(port, "/metrics");
	ck_assert_msg(strstr(m, "intruder") == NULL, "a refused name made a series");
	ck_assert_msg(
	    strstr(m, "sagad_requests_refused_total{reason=\"unauthenticated\"} 72\n") != NULL,
	    "%s", m);
	ck_assert_msg(
	    strstr(m, "sagad_requests_refused_total{reason=\"denied\"} 15\n") != NULL, "%s", m);
	free(m);
	/* The refusals are logged with who and what, never the secret. */
	char *log = th_read_file(ths_sagad_log(t), NULL);
	ck_assert_msg(
	    ths_contains(log, "refused register from ops (operator"), "no refusal logged");
	/* Logged at most 20 per 10 s: the rest are counted. */
	ck_assert_msg(
	    ths_contains(log, "further refusals in the next 10 s are counted"), "no limit");
	ck_assert_msg(ths_contains(log, "refused get from anonymous"), "no anonymous refusal");
	ck_assert_msg(strstr(log, strchr(clientc, '.') + 1) == NULL, "a secret is in the log");
	free(log);

	free(before);
	free(after);
	free(a.descriptor);
	saga_string_free(sid);
	free(wrong);
	saga_string_free(clientc);
	saga_string_free(operc);
	saga_string_free(partc);
	saga_string_free(gonec);
	ths_free(t);
}
END_TEST

START_TEST(a_payment_participant_cannot_poll_or_report_as_inventory)
{
	static const char *const extra[] = { "--poll-timeout-ms", "300", NULL };
	ths *t = auth_world("au_payment", extra);
	char *payc = ths_principal_ok(t, "payment-svc", "participant", "payment", NULL);
	ths_set_credential(t, ths_admin_credential_ok(t));
	char *sid = ths_start_ok(t, "ittest.Linear3", "tag=inv");
	char *before = db_snapshot(t, "au_payment");

	all_requests a;
	all_requests_init(&a, sid, "inventory");
	for (size_t i = 0; i < a.n; i++) {
		if (a.need[i] != 1)
			continue;
		char *msg = NULL;
		int code = raw_code(t, &a.q[i], payc, &msg);
		ck_assert_msg(
		    code == SAGA_EPERM, "%s as inventory: code %d (%s)", a.name[i], code, msg);
		ck_assert_msg(ths_contains(msg, "participant:payment may not"), "%s", msg);
		free(msg);
	}
	char *after = db_snapshot(t, "au_payment");
	ck_assert_str_eq(before, after);
	/* As itself it is served: an empty batch after the poll timeout, an
	 * empty report acknowledged. */
	a.poll.participant = "payment";
	Sagawire__Response *r = raw(t, &a.q[12], payc);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->error == NULL, "poll as itself: %s", r->error ? r->error->message : "");
	ck_assert_int_eq(r->body_case, SAGAWIRE__RESPONSE__BODY_WORK);
	sagawire__response__free_unpacked(r, NULL);
	a.report.participant = "payment";
	a.report.n_results = 0;
	ck_assert_int_eq(raw_code(t, &a.q[13], payc, NULL), 0);

	free(before);
	free(after);
	free(a.descriptor);
	saga_string_free(sid);
	saga_string_free(payc);
	ths_free(t);
}
END_TEST

START_TEST(sagas_run_end_to_end_with_credentials_for_client_and_participants)
{
	ths *t = auth_world("au_e2e", NULL);
	/* ths_participant_ok makes participant:pA ... principals for it. */
	ths_participant_ok(t, "main", 16, NULL);
	char *clientc = ths_principal_ok(t, "shop", "client", NULL, NULL);
	ths_set_credential(t, clientc);
	char *ids[4];
	for (int i = 0; i < 4; i++) {
		char tag[32];
		snprintf(tag, sizeof(tag), "tag=%d", i);
		ids[i] = ths_start_ok(t, i % 2 ? "ittest.Parallel" : "ittest.Linear3", tag);
	}
	for (int i = 0; i < 4; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga %s is %s: %s", ids[i],
		    saga_state_name(info->state), info->error);
		saga_info_free(info);
		saga_string_free(ids[i]);
	}
	/* A failing saga compensates: compensations are reported too. */
	char *f = ths_start_ok(t, "ittest.Linear3", "fail=C");
	saga_info *info = ths_wait_final_ok(t, f, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	saga_info_free(info);
	saga_string_free(f);
	saga_string_free(clientc);
	ths_free(t);
}
END_TEST

START_TEST(a_client_limited_to_some_definitions_sees_and_starts_only_those)
{
	ths *t = auth_world("au_defs", NULL);
	char *linc = ths_principal_ok(t, "lin", "client", NULL, "ittest.Linear3");
	char *opc = ths_principal_ok(t, "linops", "operator", NULL, "ittest.Linear3");
	char *par = ths_start_ok(t, "ittest.Parallel", "tag=p"); /* by the admin */
	ths_set_credential(t, linc);
	char *lin = ths_start_ok(t, "ittest.Linear3", "tag=l");
	saga_client *c = ths_client(t);
	char *id = NULL;
	ck_assert_int_eq(
	    saga_client_start(c, "ittest.Parallel", "x", 1, NULL, &id, NULL), SAGA_EPERM);
	saga_info *info = NULL;
	ck_assert_int_eq(saga_client_get(c, par, &info), SAGA_EPERM);
	ck_assert_int_eq(saga_client_get(c, lin, &info), SAGA_OK);
	saga_info_free(info);
	ck_assert_int_eq(saga_client_wait(c, par, 100, NULL), SAGA_EPERM);
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(c, NULL, &l), SAGA_OK);
	ck_assert_uint_eq(l->count, 1);
	ck_assert_str_eq(l->sagas[0].saga_id, lin);
	saga_list_free(l);
	saga_list_filter flt;
	memset(&flt, 0, sizeof(flt));
	flt.definition = "ittest.Parallel";
	ck_assert_int_eq(saga_client_list(c, &flt, &l), SAGA_EPERM);
	saga_definition_list *dl = NULL;
	ck_assert_int_eq(saga_client_describe(c, NULL, 0, &dl), SAGA_OK);
	ck_assert_uint_eq(dl->count, 1);
	ck_assert_str_eq(dl->definitions[0].name, "ittest.Linear3");
	saga_definition_list_free(dl);
	/* An operator limited so cannot cancel another definition's saga. */
	ths_set_credential(t, opc);
	c = ths_client(t);
	ck_assert_int_eq(saga_client_cancel(c, par, "no", NULL), SAGA_EPERM);
	ck_assert_int_eq(saga_client_cancel(c, lin, "yes", NULL), SAGA_OK);
	saga_string_free(par);
	saga_string_free(lin);
	saga_string_free(linc);
	saga_string_free(opc);
	ths_free(t);
}
END_TEST

START_TEST(sagactl_exits_77_when_refused_and_manages_principals)
{
	ths *t = auth_world("au_ctl", NULL);
	char *out = NULL;
	static const char *const list[] = { "list", NULL };
	/* The bootstrap admin (the harness's default credential). */
	static const char *const create[] = { "principal", "create", "viewer", "--role", "client",
		NULL };
	ck_assert_int_eq(ths_sagactl(t, create, &out), 0);
	char viewer[256];
	snprintf(viewer, sizeof(viewer), "%s", out);
	viewer[strcspn(viewer, "\n")] = '\0';
	ck_assert_uint_eq(strlen(viewer), 60);
	free(out);

	ths_set_credential(t, "");
	ck_assert_int_eq(ths_sagactl(t, list, NULL), 77);
	char *err = ths_sagactl_stderr(t);
	ck_assert_msg(ths_contains(err, "credential-file"), "no hint: %s", err);
	free(err);
	/* SAGA_CREDENTIAL from the environment. */
	setenv("SAGA_CREDENTIAL", viewer, 1);
	ck_assert_int_eq(ths_sagactl(t, list, NULL), 0);
	unsetenv("SAGA_CREDENTIAL");

	ths_set_credential(t, viewer);
	static const char *const cancel[] = { "cancel", "0190d6c0-0000-7000-8000-000000000000",
		NULL };
	ck_assert_int_eq(ths_sagactl(t, cancel, NULL), 77);
	err = ths_sagactl_stderr(t);
	ck_assert_msg(ths_contains(err, "permission denied"), "%s", err);
	free(err);
	static const char *const plist[] = { "principal", "list", NULL };
	ck_assert_int_eq(ths_sagactl(t, plist, NULL), 77);

	ths_set_credential(t, NULL); /* the admin again */
	static const char *const plist_json[] = { "principal", "list", "--json", NULL };
	ck_assert_int_eq(ths_sagactl(t, plist_json, &out), 0);
	ck_assert_msg(strstr(out, "\"name\":\"viewer\"") != NULL, "%s", out);
	ck_assert_msg(strstr(out, strchr(viewer, '.') + 1) == NULL, "list shows a secret");
	free(out);
	static const char *const revoke[] = { "principal", "revoke", "viewer", NULL };
	ck_assert_int_eq(ths_sagactl(t, revoke, NULL), 0);
	static const char *const revoke_last[] = { "principal", "revoke", "bootstrap", NULL };
	ck_assert_int_eq(ths_sagactl(t, revoke_last, NULL), SAGA_ESTATE);
	ths_set_credential(t, viewer);
	ck_assert_int_eq(ths_sagactl(t, list, NULL), 77);
	ths_free(t);
}
END_TEST

START_TEST(the_bootstrap_admin_credential_is_written_once_with_mode_0600)
{
	ths *t = auth_world("au_boot", NULL);
	char path[800];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/data/bootstrap-admin.credential", ths_dir(t));
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	char *first = th_read_file(path, NULL);
	/* A restart finds an active admin: no new one, the file unchanged. */
	ths_sagad_signal(t, SIGTERM);
	ths_sagad_start_ok(t, NULL);
	char *again = th_read_file(path, NULL);
	ck_assert_str_eq(first, again);
	saga_principal_list *l = NULL;
	ck_assert_int_eq(saga_client_principal_list(ths_client(t), &l), SAGA_OK);
	ck_assert_uint_eq(l->count, 1);
	ck_assert_str_eq(l->principals[0].name, "bootstrap");
	ck_assert_str_eq(l->principals[0].role, "admin");
	saga_principal_list_free(l);
	free(first);
	free(again);
	ths_free(t);
}
END_TEST

START_TEST(non_loopback_listen_without_auth_refuses_to_start_unless_insecure)
{
	ths *t = ths_new_ok(pg, "au_listen");
	const char *port = strrchr(ths_url(t), ':') + 1;
	char any[64], log[800];
	snprintf(any, sizeof(any), "tcp://0.0.0.0:%s", port);
	snprintf(log, sizeof(log), "%s/refused.log", ths_dir(t));
	const char *argv[] = { ths_env_ok("SAGAD_BIN"), "--allow-root", "--db", ths_conninfo(t),
		"--listen", any, NULL };
	int st = 0;
	ck_assert_int_eq(th_run(argv, NULL, log, 30000, &st), 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 78, "status %d", st);
	char *text = th_read_file(log, NULL);
	ck_assert_msg(
	    ths_contains(text, "--auth on") && ths_contains(text, "--insecure"), "%s", text);
	free(text);
	/* --insecure: it starts (and is reachable on loopback). */
	static const char *insecure[] = { "--listen", NULL, "--insecure", NULL };
	insecure[1] = any;
	ths_sagad_start_ok(t, insecure);
	ths_sagad_signal(t, SIGTERM);
	/* With auth on it starts too. */
	ths_auth_on(t);
	static const char *on[] = { "--listen", NULL, NULL };
	on[1] = any;
	ths_sagad_start_ok(t, on);
	ths_free(t);
}
END_TEST

START_TEST(garbage_credentials_leave_sagad_up)
{
	ths *t = auth_world("au_garbage", NULL);
	Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
	Sagawire__ListRequest lr = SAGAWIRE__LIST_REQUEST__INIT;
	q.body_case = SAGAWIRE__REQUEST__BODY_LIST;
	q.list = &lr;
	size_t big = 200000;
	char *huge = malloc(big + 1);
	ck_assert_ptr_nonnull(huge);
	memset(huge, 'a', big);
	huge[big] = '\0';
	char bin[300];
	srand(12);
	for (int round = 0; round < 50; round++) {
		for (size_t i = 0; i + 1 < sizeof(bin); i++)
			bin[i] = (char)(1 + rand() % 255); /* no NUL: a C string */
		bin[sizeof(bin) - 1] = '\0';
		int code = raw_code(t, &q, bin, NULL);
		/* Not UTF-8: refused by the decoder, or not a credential. */
		ck_assert_msg(code == SAGA_EPROTO || code == SAGA_EAUTH, "code %d", code);
	}
	char shaped[80];
	snprintf(shaped, sizeof(shaped), "0123456789abcdef.%s",
	    "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xef\xee\xed\xec\xeb"
	    "\xea\xe9\xe8\xe7\xe6\xe5\xe4\xe3\xe2\xe1\xe0\xdf\xde\xdd\xdc\xdb\xda\xd9\xd8\xd7\xd6"
	    "\xd5");
	int code = raw_code(t, &q, shaped, NULL);
	ck_assert_msg(code == SAGA_EPROTO || code == SAGA_EAUTH, "code %d", code);
	ck_assert_int_eq(raw_code(t, &q, huge, NULL), SAGA_EAUTH);
	ck_assert_int_eq(raw_code(t, &q, "0123456789abcdef.", NULL), SAGA_EAUTH);
	ck_assert_int_eq(
	    raw_code(t, &q, "0123456789ABCDEF.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL),
	    SAGA_EAUTH);
	free(huge);
	ck_assert_msg(th_wait_exit(ths_sagad_pid(t), 0, NULL) != 0, "sagad exited");
	/* Still serving, with the admin's credential. */
	ck_assert_int_eq(raw_code(t, &q, ths_admin_credential_ok(t), NULL), 0);
	ths_free(t);
}
END_TEST

START_TEST(a_revocation_on_one_instance_is_refused_by_another_within_about_2_s)
{
	ths *t = ths_new_ok(pg, "au_revoke2");
	ths_auth_on(t);
	ths_sagad_n_start_ok(t, 0, NULL);
	ths_sagad_n_start_ok(t, 1, NULL);
	char *cred = ths_principal_ok(t, "temp", "client", NULL, NULL);
	saga_client *c = NULL;
	ck_assert_int_eq(saga_client_new(ths_sagad_n_url(t, 1), &c), SAGA_OK);
	ck_assert_int_eq(saga_client_set_credential(c, cred), SAGA_OK);
	saga_list *l = NULL;
	/* Instance 1 learns of the new principal by its poll too. */
	long long until = th_now_ms() + 10000;
	int rv;
	while ((rv = saga_client_list(c, NULL, &l)) == SAGA_EAUTH && th_now_ms() < until)
		usleep(50000);
	ck_assert_int_eq(rv, SAGA_OK);
	saga_list_free(l);
	ck_assert_int_eq(saga_client_principal_revoke(ths_client(t), "temp", NULL), SAGA_OK);
	long long t0 = th_now_ms();
	while ((rv = saga_client_list(c, NULL, &l)) == SAGA_OK && th_now_ms() < t0 + 10000) {
		saga_list_free(l);
		l = NULL;
		usleep(20000);
	}
	long long took = th_now_ms() - t0;
	ck_assert_int_eq(rv, SAGA_EAUTH);
	/* 2 s poll; slack for a loaded machine. */
	ck_assert_msg(took < 4000, "instance 1 took %lld ms to refuse a revoked credential", took);
	fprintf(stderr, "revocation seen by the other instance after %lld ms\n", took);
	saga_client_free(c);
	saga_string_free(cred);
	ths_free(t);
}
END_TEST

static Suite *
auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("auth");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
	    tc, every_request_type_is_refused_without_a_valid_credential_or_with_a_weak_role);
	tcase_add_test(tc, a_payment_participant_cannot_poll_or_report_as_inventory);
	tcase_add_test(tc, sagas_run_end_to_end_with_credentials_for_client_and_participants);
	tcase_add_test(tc, a_client_limited_to_some_definitions_sees_and_starts_only_those);
	tcase_add_test(tc, sagactl_exits_77_when_refused_and_manages_principals);
	tcase_add_test(tc, the_bootstrap_admin_credential_is_written_once_with_mode_0600);
	tcase_add_test(tc, non_loopback_listen_without_auth_refuses_to_start_unless_insecure);
	tcase_add_test(tc, garbage_credentials_leave_sagad_up);
	tcase_add_test(tc, a_revocation_on_one_instance_is_refused_by_another_within_about_2_s);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(auth_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
