/*
 * Integration tests of libsaga's barrier (saga_barrier.h) against a real
 * PostgreSQL (th_pg): each test has a database with the barrier table and a
 * stock table the handlers change, and checks the stock after every
 * delivery, so an effect applied twice (or not undone) shows as a wrong
 * quantity.
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga.h"
#include "saga_barrier.h"
#include "th.h"

static th_pg *pg;
static char err[1024];

static void
pg_up(void)
{
	th_pg_opts o = { .fsync = 0, .max_connections = 0 };
	ck_assert_int_eq(th_pg_start_opts(&pg, &o), 0);
}

static void
pg_down(void)
{
	th_pg_free(pg);
	pg = NULL;
}

/* A database with the barrier and stock('x') = 10. */
static PGconn *
fresh_db(const char *name)
{
	ck_assert_int_eq(th_pg_create_db(pg, name), 0);
	PGconn *c = th_pg_connect(pg, name);
	ck_assert_ptr_nonnull(c);
	ck_assert_msg(saga_barrier_migrate(c, err, sizeof(err)) == SAGA_OK, "%s", err);
	/* Idempotent: a second run changes nothing. */
	ck_assert_msg(saga_barrier_migrate(c, err, sizeof(err)) == SAGA_OK, "%s", err);
	ck_assert_int_eq(th_pg_exec(pg, name,
			     "CREATE TABLE stock (item text PRIMARY KEY, qty int NOT NULL);"
			     "INSERT INTO stock VALUES ('x', 10)"),
	    0);
	return c;
}

static long long
qty(const char *db)
{
	return th_pg_query_int(pg, db, "SELECT qty FROM stock WHERE item = 'x'");
}

typedef enum { DO_SUCCESS, DO_FAIL, DO_RETRY, DO_NOTHING, DO_BAD_SQL, DO_COMMIT } mode;

typedef struct handler_ctx {
	mode how;
	int delta;    /* added to the stock */
	int sleep_ms; /* inside the transaction, after the write */
	int calls;
	pthread_mutex_t mu;
} handler_ctx;

static void
handler(PGconn *db, const saga_step *s, saga_reply *r, void *user)
{
	handler_ctx *h = user;
	char sql[128];
	(void)s;
	pthread_mutex_lock(&h->mu);
	h->calls++;
	pthread_mutex_unlock(&h->mu);
	snprintf(sql, sizeof(sql), "UPDATE stock SET qty = qty + %d WHERE item = 'x'", h->delta);
	PQclear(PQexec(db, sql));
	if (h->sleep_ms)
		usleep((useconds_t)h->sleep_ms * 1000);
	switch (h->how) {
	case DO_SUCCESS:
		saga_reply_success(r, "r1", 2);
		break;
	case DO_FAIL:
		saga_reply_fail(r, "out of stock");
		break;
	case DO_RETRY:
		saga_reply_retry(r, "busy");
		break;
	case DO_NOTHING:
		break;
	case DO_BAD_SQL:
		PQclear(PQexec(db, "SELECT * FROM no_such_table"));
		saga_reply_success(r, "r1", 2);
		break;
	case DO_COMMIT:
		PQclear(PQexec(db, "COMMIT"));
		saga_reply_success(r, "r1", 2);
		break;
	}
}

static saga_step
step_of(const char *saga_id, saga_step_kind kind)
{
	saga_step s;
	memset(&s, 0, sizeof(s));
	s.saga_id = saga_id;
	s.definition = "shop.Order";
	s.version = 1;
	s.step = "Reserve";
	s.rpc = kind == SAGA_ACTION ? "Reserve" : "Release";
	s.kind = kind;
	s.attempt = 1;
	s.idempotency_key = saga_id;
	return s;
}

static const char *ID1 = "0190a0b0-0000-7000-8000-000000000001";

/* Runs one delivery; returns the barrier's verdict and the outcome. */
static saga_barrier_result
deliver(
    PGconn *c, saga_step_kind kind, handler_ctx *h, saga_outcome *out, char *result, char *error)
{
	saga_step s = step_of(ID1, kind);
	saga_reply *r = saga_reply_new(0);
	ck_assert_ptr_nonnull(r);
	saga_barrier_result br = saga_barrier_run(c, &s, r, handler, h);
	const uint8_t *res;
	size_t len;
	const char *e;
	*out = saga_reply_outcome(r, &res, &len, &e);
	if (result) {
		memcpy(result, res ? (const char *)res : "", len);
		result[len] = '\0';
	}
	if (error)
		snprintf(error, 256, "%s", e);
	saga_reply_free(r);
	/* The connection is always left idle for the next step. */
	ck_assert_int_eq(PQtransactionStatus(c), PQTRANS_IDLE);
	return br;
}

#define CTX(how_, delta_)                                                         \
	{                                                                         \
		.how = (how_), .delta = (delta_), .mu = PTHREAD_MUTEX_INITIALIZER \
	}

START_TEST(duplicate_action_is_a_no_op_that_replays_the_first_outcome)
{
	PGconn *c = fresh_db("b_dup");
	handler_ctx h = CTX(DO_SUCCESS, -1);
	saga_outcome o;
	char res[64];

	ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, res, NULL), SAGA_BARRIER_RAN);
	ck_assert_int_eq(o, SAGA_OUTCOME_SUCCESS);
	ck_assert_str_eq(res, "r1");
	ck_assert_int_eq(qty("b_dup"), 9);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(
		    deliver(c, SAGA_ACTION, &h, &o, res, NULL), SAGA_BARRIER_DUPLICATE);
		ck_assert_int_eq(o, SAGA_OUTCOME_SUCCESS);
		ck_assert_str_eq(res, "r1");
	}
	ck_assert_int_eq(h.calls, 1);
	ck_assert_int_eq(qty("b_dup"), 9);
	PQfinish(c);
}
END_TEST

START_TEST(compensation_undoes_the_action_once_and_duplicates_are_no_ops)
{
	PGconn *c = fresh_db("b_comp");
	handler_ctx act = CTX(DO_SUCCESS, -1), comp = CTX(DO_SUCCESS, +1);
	saga_outcome o;

	ck_assert_int_eq(deliver(c, SAGA_ACTION, &act, &o, NULL, NULL), SAGA_BARRIER_RAN);
	ck_assert_int_eq(qty("b_comp"), 9);
	ck_assert_int_eq(deliver(c, SAGA_COMPENSATION, &comp, &o, NULL, NULL), SAGA_BARRIER_RAN);
	ck_assert_int_eq(o, SAGA_OUTCOME_SUCCESS);
	ck_assert_int_eq(qty("b_comp"), 10);
	ck_assert_int_eq(
	    deliver(c, SAGA_COMPENSATION, &comp, &o, NULL, NULL), SAGA_BARRIER_DUPLICATE);
	ck_assert_int_eq(o, SAGA_OUTCOME_SUCCESS);
	/* A late duplicate of the action after the compensation: still the
	 * first outcome, and nothing applied. */
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &act, &o, NULL, NULL), SAGA_BARRIER_DUPLICATE);
	ck_assert_int_eq(act.calls, 1);
	ck_assert_int_eq(comp.calls, 1);
	ck_assert_int_eq(qty("b_comp"), 10);
	PQfinish(c);
}
END_TEST

START_TEST(compensation_before_its_action_is_null_and_the_late_action_is_refused)
{
	PGconn *c = fresh_db("b_null");
	handler_ctx act = CTX(DO_SUCCESS, -1), comp = CTX(DO_SUCCESS, +1);
	saga_outcome o;
	char e[256];

	ck_assert_int_eq(
	    deliver(c, SAGA_COMPENSATION, &comp, &o, NULL, NULL), SAGA_BARRIER_NULL_COMPENSATION);
	ck_assert_int_eq(o, SAGA_OUTCOME_SUCCESS);
	ck_assert_int_eq(comp.calls, 0);
	ck_assert_int_eq(qty("b_null"), 10);
	ck_assert_int_eq(th_pg_query_int(pg, "b_null",
			     "SELECT count(*) FROM saga_barrier WHERE kind = 2 AND nulled"),
	    1);
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &act, &o, NULL, e), SAGA_BARRIER_REFUSED);
	ck_assert_int_eq(o, SAGA_OUTCOME_FAIL);
	ck_assert_msg(strstr(e, "compensated before") != NULL, "%s", e);
	ck_assert_int_eq(act.calls, 0);
	ck_assert_int_eq(qty("b_null"), 10);
	/* ... every time it is redelivered. */
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &act, &o, NULL, NULL), SAGA_BARRIER_REFUSED);
	ck_assert_int_eq(
	    deliver(c, SAGA_COMPENSATION, &comp, &o, NULL, NULL), SAGA_BARRIER_DUPLICATE);
	ck_assert_int_eq(qty("b_null"), 10);
	PQfinish(c);
}
END_TEST

START_TEST(business_failure_applies_nothing_and_is_remembered)
{
	PGconn *c = fresh_db("b_fail");
	handler_ctx act = CTX(DO_FAIL, -1), comp = CTX(DO_SUCCESS, +1);
	saga_outcome o;
	char e[256];

	ck_assert_int_eq(deliver(c, SAGA_ACTION, &act, &o, NULL, e), SAGA_BARRIER_RAN);
	ck_assert_int_eq(o, SAGA_OUTCOME_FAIL);
	ck_assert_str_eq(e, "out of stock");
	/* The handler's write before it failed is rolled back. */
	ck_assert_int_eq(qty("b_fail"), 10);
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &act, &o, NULL, e), SAGA_BARRIER_DUPLICATE);
	ck_assert_int_eq(o, SAGA_OUTCOME_FAIL);
	ck_assert_str_eq(e, "out of stock");
	ck_assert_int_eq(act.calls, 1);
	/* Nothing to undo. */
	ck_assert_int_eq(
	    deliver(c, SAGA_COMPENSATION, &comp, &o, NULL, NULL), SAGA_BARRIER_NULL_COMPENSATION);
	ck_assert_int_eq(comp.calls, 0);
	ck_assert_int_eq(qty("b_fail"), 10);
	PQfinish(c);
}
END_TEST

START_TEST(retryable_outcomes_record_nothing_so_the_next_attempt_runs)
{
	PGconn *c = fresh_db("b_retry");
	handler_ctx h = CTX(DO_RETRY, -1);
	saga_outcome o;

	ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, NULL, NULL), SAGA_BARRIER_RAN);
	ck_assert_int_eq(o, SAGA_OUTCOME_RETRY);
	h.how = DO_NOTHING;
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, NULL, NULL), SAGA_BARRIER_RAN);
	ck_assert_int_eq(o, SAGA_OUTCOME_NONE);
	h.how = DO_BAD_SQL; /* replies success, but its transaction failed */
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, NULL, NULL), SAGA_BARRIER_DB_ERROR);
	ck_assert_int_eq(o, SAGA_OUTCOME_RETRY);
	h.how = DO_COMMIT; /* ends the transaction itself: not allowed */
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, NULL, NULL), SAGA_BARRIER_DB_ERROR);
	ck_assert_int_eq(o, SAGA_OUTCOME_RETRY);
	/* DO_COMMIT committed its write (and the barrier row) on its own;
	 * from here the step counts as done, which the next delivery shows. */
	ck_assert_int_eq(qty("b_retry"), 9);
	h.how = DO_SUCCESS;
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, NULL, NULL), SAGA_BARRIER_DUPLICATE);
	ck_assert_int_eq(h.calls, 4);
	ck_assert_int_eq(qty("b_retry"), 9);
	PQfinish(c);
}
END_TEST

START_TEST(retry_then_success_applies_once)
{
	PGconn *c = fresh_db("b_retry2");
	handler_ctx h = CTX(DO_RETRY, -1);
	saga_outcome o;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, NULL, NULL), SAGA_BARRIER_RAN);
	ck_assert_int_eq(qty("b_retry2"), 10);
	h.how = DO_SUCCESS;
	ck_assert_int_eq(deliver(c, SAGA_ACTION, &h, &o, NULL, NULL), SAGA_BARRIER_RAN);
	ck_assert_int_eq(o, SAGA_OUTCOME_SUCCESS);
	ck_assert_int_eq(qty("b_retry2"), 9);
	PQfinish(c);
}
END_TEST

typedef struct replica {
	const char *db;
	saga_step_kind kind;
	handler_ctx *h;
	saga_barrier_result br;
	saga_outcome o;
} replica;

static void *
replica_main(void *arg)
{
	replica *rp = arg;
	PGconn *c = th_pg_connect(pg, rp->db);
	saga_step s = step_of(ID1, rp->kind);
	saga_reply *r = saga_reply_new(0);
	rp->br = saga_barrier_run(c, &s, r, handler, rp->h);
	rp->o = saga_reply_outcome(r, NULL, NULL, NULL);
	saga_reply_free(r);
	PQfinish(c);
	return NULL;
}

START_TEST(replicas_running_the_same_step_at_once_apply_it_once)
{
	PGconn *c = fresh_db("b_repl");
	/* The first one holds its transaction 300 ms: the others wait on the
	 * barrier row, then see it committed. */
	handler_ctx h = CTX(DO_SUCCESS, -1);
	h.sleep_ms = 300;
	enum { N = 4 };
	replica rp[N];
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		rp[i] = (replica) { .db = "b_repl", .kind = SAGA_ACTION, .h = &h };
		ck_assert_int_eq(pthread_create(&t[i], NULL, replica_main, &rp[i]), 0);
	}
	int ran = 0, dup = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(rp[i].o, SAGA_OUTCOME_SUCCESS);
		ran += rp[i].br == SAGA_BARRIER_RAN;
		dup += rp[i].br == SAGA_BARRIER_DUPLICATE;
	}
	ck_assert_int_eq(ran, 1);
	ck_assert_int_eq(dup, N - 1);
	ck_assert_int_eq(h.calls, 1);
	ck_assert_int_eq(qty("b_repl"), 9);
	PQfinish(c);
}
END_TEST

START_TEST(compensation_racing_an_uncommitted_action_waits_for_it)
{
	PGconn *c = fresh_db("b_race");
	/* The action commits after 300 ms; the compensation, started meanwhile
	 * on another replica, must wait and then really undo it. */
	handler_ctx act = CTX(DO_SUCCESS, -1), comp = CTX(DO_SUCCESS, +1);
	act.sleep_ms = 300;
	replica a = { .db = "b_race", .kind = SAGA_ACTION, .h = &act };
	replica k = { .db = "b_race", .kind = SAGA_COMPENSATION, .h = &comp };
	pthread_t ta, tk;
	ck_assert_int_eq(pthread_create(&ta, NULL, replica_main, &a), 0);
	usleep(100 * 1000);
	ck_assert_int_eq(pthread_create(&tk, NULL, replica_main, &k), 0);
	pthread_join(ta, NULL);
	pthread_join(tk, NULL);
	ck_assert_int_eq(a.br, SAGA_BARRIER_RAN);
	ck_assert_int_eq(k.br, SAGA_BARRIER_RAN);
	ck_assert_int_eq(comp.calls, 1);
	ck_assert_int_eq(qty("b_race"), 10);
	PQfinish(c);
}
END_TEST

START_TEST(connection_in_a_transaction_or_null_arguments_reply_retry_without_running)
{
	PGconn *c = fresh_db("b_bad");
	handler_ctx h = CTX(DO_SUCCESS, -1);
	saga_step s = step_of(ID1, SAGA_ACTION);
	saga_reply *r = saga_reply_new(0);

	PQclear(PQexec(c, "BEGIN"));
	ck_assert_int_eq(saga_barrier_run(c, &s, r, handler, &h), SAGA_BARRIER_DB_ERROR);
	ck_assert_int_eq(saga_reply_outcome(r, NULL, NULL, NULL), SAGA_OUTCOME_RETRY);
	PQclear(PQexec(c, "ROLLBACK"));
	saga_reply_free(r);

	r = saga_reply_new(0);
	ck_assert_int_eq(saga_barrier_run(NULL, &s, r, handler, &h), SAGA_BARRIER_DB_ERROR);
	ck_assert_int_eq(saga_reply_outcome(r, NULL, NULL, NULL), SAGA_OUTCOME_RETRY);
	saga_reply_free(r);
	ck_assert_int_eq(saga_barrier_run(c, &s, NULL, handler, &h), SAGA_BARRIER_DB_ERROR);
	ck_assert_int_eq(h.calls, 0);
	ck_assert_int_eq(qty("b_bad"), 10);
	ck_assert_str_eq(
	    saga_barrier_result_name(SAGA_BARRIER_NULL_COMPENSATION), "null compensation");
	PQfinish(c);
}
END_TEST

static void *
migrate_main(void *arg)
{
	PGconn *c = th_pg_connect(pg, "b_mig");
	char e[512] = "";
	*(int *)arg = c ? saga_barrier_migrate(c, e, sizeof(e)) : -1;
	if (*(int *)arg != SAGA_OK)
		fprintf(stderr, "migrate: %s\n", e);
	PQfinish(c);
	return NULL;
}

START_TEST(replicas_creating_the_table_at_once_all_succeed)
{
	ck_assert_int_eq(th_pg_create_db(pg, "b_mig"), 0);
	enum { N = 6 };
	pthread_t t[N];
	int rv[N];
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, migrate_main, &rv[i]), 0);
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(rv[i], SAGA_OK);
	}
	ck_assert_int_eq(th_pg_query_int(pg, "b_mig",
			     "SELECT count(*) FROM pg_tables WHERE tablename = 'saga_barrier'"),
	    1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("barrier");
	TCase *tc = tcase_create("barrier");
	tcase_add_unchecked_fixture(tc, pg_up, pg_down);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, duplicate_action_is_a_no_op_that_replays_the_first_outcome);
	tcase_add_test(tc, compensation_undoes_the_action_once_and_duplicates_are_no_ops);
	tcase_add_test(tc, compensation_before_its_action_is_null_and_the_late_action_is_refused);
	tcase_add_test(tc, business_failure_applies_nothing_and_is_remembered);
	tcase_add_test(tc, retryable_outcomes_record_nothing_so_the_next_attempt_runs);
	tcase_add_test(tc, retry_then_success_applies_once);
	tcase_add_test(tc, replicas_running_the_same_step_at_once_apply_it_once);
	tcase_add_test(tc, compensation_racing_an_uncommitted_action_waits_for_it);
	tcase_add_test(
	    tc, connection_in_a_transaction_or_null_arguments_reply_retry_without_running);
	tcase_add_test(tc, replicas_creating_the_table_at_once_all_succeed);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
