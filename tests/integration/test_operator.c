/*
 * Integration: the operator actions beyond retry and skip, over the RPC
 * (libsaga): terminate, force a step's outcome, rerun, and who may do them.
 * A real PostgreSQL (one cluster, a database per test), the real sagad,
 * real test-participant processes (tests/participant), whose journal says
 * what ran.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

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

static ths *
world(const char *db)
{
	ths *t = ths_new_ok(pg, db);
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	return t;
}

/* The index of the first event of type (and step, unless NULL) from
 * `from`, or -1. */
static int
event_at(const saga_info *info, size_t from, const char *type, const char *step)
{
	for (size_t i = from; i < info->n_events; i++)
		if (strcmp(info->events[i].type, type) == 0 &&
		    (step == NULL || strcmp(info->events[i].step, step) == 0))
			return (int)i;
	return -1;
}

static saga_info *
get_ok(ths *t, const char *id)
{
	saga_info *info = NULL;
	int rv = saga_client_get(ths_client(t), id, &info);
	ck_assert_msg(rv == SAGA_OK, "get %s: %s: %s", id, saga_strerror(rv),
	    saga_client_errmsg(ths_client(t)));
	return info;
}

/* Another saga run to its end on the same participants: the answers they
 * sent before it (a late answer of a terminated saga's step) have been
 * taken by sagad by then. */
static void
run_one_more(ths *t, const char *tag)
{
	char *id = ths_start_ok(t, "ittest.Linear3", tag);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);
	saga_string_free(id);
}

/* A Linear3 saga parked on B's compensation (UndoB fails while the file
 * `broken` exists; C failed). */
static char *
parked_saga(ths *t, char *broken, size_t len)
{
	char input[1200];
	snprintf(broken, len, "%s/undo-broken", ths_dir(t));
	ck_assert_int_eq(th_write_file(broken, "x", 1), 0);
	snprintf(input, sizeof(input), "fail=C;compfailwhile=%s", broken);
	char *id = ths_start_ok(t, "ittest.Linear3", input);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_FAILED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	saga_info_free(info);
	return id;
}

START_TEST(terminate_stops_a_running_saga_without_compensating_and_ignores_its_late_answer)
{
	ths *t = world("op_terminate");
	saga_client *c = ths_client(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500;tag=term");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	ths_journal_wait_ok(t, id, 'a', "A", "ok", 1, WAIT_MS);

	saga_state after = SAGA_STATE_UNKNOWN;
	/* A reason is required. */
	ck_assert_int_eq(saga_client_terminate(c, id, NULL, &after), SAGA_EINVAL);
	ck_assert_msg(
	    ths_contains(saga_client_errmsg(c), "needs a reason"), "%s", saga_client_errmsg(c));
	int rv = saga_client_terminate(c, id, "duplicate order, refunded by finance", &after);
	ck_assert_msg(rv == SAGA_OK, "terminate: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	ck_assert_int_eq(after, SAGA_STATE_TERMINATED);

	/* B answers late (its sleep ends): ignored; nothing else runs. */
	ths_journal_wait_ok(t, id, 'a', "B", NULL, 1, WAIT_MS);
	run_one_more(t, "tag=after-terminate");
	saga_info *info = get_ok(t, id);
	ck_assert_int_eq(info->state, SAGA_STATE_TERMINATED);
	ck_assert(saga_state_is_final(info->state));
	ck_assert_msg(ths_contains(info->error, "terminated") &&
		ths_contains(info->error, "refunded by finance"),
	    "error '%s'", info->error);
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_SUCCEEDED);
	ck_assert_int_eq(ths_step_ok(info, "B")->state, SAGA_STEP_RUNNING);
	ck_assert_uint_eq(ths_step_ok(info, "B")->result_len, 0);
	ck_assert_int_eq(ths_step_ok(info, "C")->state, SAGA_STEP_PENDING);
	int ev = event_at(info, 0, "terminated", NULL);
	ck_assert_msg(ev > 0, "no terminated event");
	ck_assert_msg(ths_contains(info->events[ev].detail, "refunded by finance"), "%s",
	    info->events[ev].detail);
	ck_assert_int_eq(event_at(info, 0, "compensating", NULL), -1);
	saga_info_free(info);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'a', "C", NULL), 0);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", NULL), 0);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoB", NULL), 0);
	ths_journal_free(j);

	/* Terminated for good: a second terminate, a cancel, a retry refused. */
	ck_assert_int_eq(saga_client_terminate(c, id, "again", &after), SAGA_ESTATE);
	ck_assert_msg(
	    ths_contains(saga_client_errmsg(c), "terminated"), "%s", saga_client_errmsg(c));
	ck_assert_int_eq(saga_client_cancel(c, id, "x", &after), SAGA_ESTATE);
	ck_assert_int_eq(saga_client_retry_step(c, id, "B", "x", &after), SAGA_ESTATE);
	/* wait answers at once; list finds it by its state */
	saga_info *w = NULL;
	ck_assert_int_eq(saga_client_wait(c, id, 5000, &w), SAGA_OK);
	ck_assert_int_eq(w->state, SAGA_STATE_TERMINATED);
	saga_info_free(w);
	saga_state want = SAGA_STATE_TERMINATED;
	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	f.states = &want;
	f.n_states = 1;
	f.counts = 1;
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(c, &f, &l), SAGA_OK);
	ck_assert_uint_eq(l->count, 1);
	ck_assert_str_eq(l->sagas[0].saga_id, id);
	ck_assert_uint_eq(l->state_counts[SAGA_STATE_TERMINATED], 1);
	saga_list_free(l);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(terminate_stops_a_parked_saga_where_it_stands_and_is_counted_in_metrics)
{
	ths *t = ths_new_ok(pg, "op_terminate_parked");
	int port = ths_free_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	const char *args[] = { "--http-listen", url, NULL };
	ths_sagad_start_ok(t, args);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	saga_client *c = ths_client(t);
	char broken[1024];
	char *id = parked_saga(t, broken, sizeof(broken));
	saga_state after;
	int rv = saga_client_terminate(c, id, "undo done elsewhere", &after);
	ck_assert_msg(rv == SAGA_OK, "terminate: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	ck_assert_int_eq(after, SAGA_STATE_TERMINATED);
	ck_assert_int_eq(unlink(broken), 0);
	saga_info *info = get_ok(t, id);
	ck_assert_int_eq(info->state, SAGA_STATE_TERMINATED);
	ck_assert_int_eq(ths_step_ok(info, "B")->state, SAGA_STEP_COMP_FAILED);
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_SUCCEEDED);
	saga_info_free(info);
	ck_assert_int_eq(saga_client_retry_step(c, id, "B", "x", &after), SAGA_ESTATE);
	/* counted once as terminated, not as parked again */
	char *m = ths_http_get(port, "/metrics");
	ck_assert_ptr_nonnull(m);
	ck_assert_msg(
	    ths_contains(m, "sagad_sagas_terminated_total{definition=\"ittest.Linear3\"} 1"),
	    "metrics: %s", m);
	ck_assert_msg(ths_contains(m, "sagad_sagas_parked_total{definition=\"ittest.Linear3\"} 1"),
	    "metrics: %s", m);
	free(m);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(force_succeeded_gives_a_step_in_flight_its_result_and_the_saga_completes_with_it)
{
	ths *t = world("op_force_ok");
	saga_client *c = ths_client(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500;tag=force");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	saga_state after;
	static const uint8_t res[] = "booked-by-hand"; /* the test sagas' results are text */
	/* needs a reason; C is pending: refused */
	ck_assert_int_eq(
	    saga_client_force_succeeded(c, id, "B", res, sizeof(res) - 1, "", &after), SAGA_EINVAL);
	ck_assert_int_eq(saga_client_force_succeeded(c, id, "C", res, sizeof(res) - 1, "x", &after),
	    SAGA_ESTATE);
	ck_assert_msg(ths_contains(saga_client_errmsg(c), "pending"), "%s", saga_client_errmsg(c));
	ck_assert_int_eq(saga_client_force_compensated(c, id, "B", "x", &after), SAGA_ESTATE);
	int rv = saga_client_force_succeeded(
	    c, id, "B", res, sizeof(res) - 1, "booked by phone, ticket 7", &after);
	ck_assert_msg(rv == SAGA_OK, "force: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	/* B's late answer (its sleep ends) changes nothing: the forced result stays */
	ths_journal_wait_ok(t, id, 'a', "B", NULL, 1, WAIT_MS);
	saga_info_free(info);
	run_one_more(t, "tag=after-force");
	info = get_ok(t, id);
	const saga_step_info *b = ths_step_ok(info, "B");
	ck_assert_uint_eq(b->result_len, sizeof(res) - 1);
	ck_assert_int_eq(memcmp(b->result, res, sizeof(res) - 1), 0);
	ck_assert_msg(ths_contains(b->last_error, "ticket 7"), "%s", b->last_error);
	int ev = event_at(info, 0, "forced", "B");
	ck_assert_msg(ev > 0, "no forced event");
	ck_assert_msg(ths_contains(info->events[ev].detail, "succeeded") &&
		ths_contains(info->events[ev].detail, "ticket 7"),
	    "%s", info->events[ev].detail);
	saga_info_free(info);
	/* C was sent B's forced result */
	ths_journal *j = ths_journal_read_ok(t);
	int ci = ths_journal_find(j, 0, id, 'a', "C", "ok");
	ck_assert_int_ge(ci, 0);
	const char *dep = ths_jline_dep(&j->lines[ci], "B");
	ck_assert_ptr_nonnull(dep);
	ck_assert_msg(ths_contains(dep, "booked-by-hand"), "C got B's result '%s'", dep);
	ths_journal_free(j);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(force_compensated_undoes_parked_steps_by_hand_and_the_saga_ends_compensated)
{
	ths *t = world("op_force_comp");
	saga_client *c = ths_client(t);
	char broken[1024];
	char *id = parked_saga(t, broken, sizeof(broken));
	saga_state after;
	ck_assert_int_eq(saga_client_force_compensated(c, id, "C", "x", &after), SAGA_ESTATE);
	int rv = saga_client_force_compensated(c, id, "B", "refunded by hand", &after);
	ck_assert_msg(rv == SAGA_OK, "force B: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	/* UndoA is broken too: it parks again at A; undo it by hand as well */
	long long t0 = th_now_ms();
	saga_info *info;
	for (;;) {
		info = get_ok(t, id);
		if (info->state == SAGA_STATE_FAILED &&
		    ths_step_ok(info, "A")->state == SAGA_STEP_COMP_FAILED)
			break;
		saga_info_free(info);
		ck_assert_int_lt(th_now_ms() - t0, WAIT_MS);
		usleep(50 * 1000);
	}
	saga_info_free(info);
	rv = saga_client_force_compensated(c, id, "A", "reversed in the ledger", &after);
	ck_assert_msg(rv == SAGA_OK, "force A: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	int fb = event_at(info, 0, "forced", "B"), fa = event_at(info, 0, "forced", "A");
	ck_assert_msg(fb > 0 && fa > fb, "forced events at %d and %d", fb, fa);
	ck_assert_msg(
	    ths_contains(info->events[fb].detail, "compensated"), "%s", info->events[fb].detail);
	saga_info_free(info);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoB", "ok"), 0);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", "ok"), 0);
	ths_journal_free(j);
	ck_assert_int_eq(unlink(broken), 0);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(
    rerun_starts_a_finished_saga_again_linked_both_ways_once_per_key_on_its_version_or_the_latest)
{
	ths *t = world("op_rerun");
	saga_client *c = ths_client(t);
	char *old = ths_start_ok(t, "ittest.Linear3", "fail=C;tag=rerun");
	saga_info *info = ths_wait_final_ok(t, old, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	saga_info_free(info);

	char *neu = NULL, *again = NULL, *other = NULL;
	int rv = saga_client_rerun(c, old, "rerun-1", 0, &neu);
	ck_assert_msg(rv == SAGA_OK, "rerun: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	ck_assert_str_ne(neu, old);
	/* the same key: the same new saga */
	ck_assert_int_eq(saga_client_rerun(c, old, "rerun-1", 0, &again), SAGA_OK);
	ck_assert_str_eq(again, neu);
	info = ths_wait_final_ok(t, neu, WAIT_MS);
	/* same input: it fails at C again */
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	ck_assert_uint_eq(info->input_len, strlen("fail=C;tag=rerun"));
	ck_assert_int_eq(memcmp(info->input, "fail=C;tag=rerun", info->input_len), 0);
	ck_assert_str_eq(info->rerun_of, old);
	ck_assert_str_eq(info->definition, "ittest.Linear3");
	int ev = event_at(info, 0, "rerun of", NULL);
	ck_assert_msg(ev > 0, "no 'rerun of' event");
	ck_assert_str_eq(info->events[ev].detail, old);
	saga_info_free(info);
	/* version 2 of Linear3 (a fourth step D): a rerun keeps the old
	 * version unless asked for the latest; no key: another new saga */
	ths_register_file_ok(t, ths_env_ok("IT_SAGAS_V2"));
	char *same = NULL;
	ck_assert_int_eq(saga_client_rerun(c, old, "rerun-v1", 0, &same), SAGA_OK);
	info = ths_wait_final_ok(t, same, WAIT_MS);
	ck_assert_uint_eq(info->version, 1);
	ck_assert_uint_eq(info->n_steps, 3);
	saga_info_free(info);
	ck_assert_int_eq(saga_client_rerun(c, old, NULL, 1, &other), SAGA_OK);
	ck_assert_str_ne(other, neu);
	info = ths_wait_final_ok(t, other, WAIT_MS);
	ck_assert_uint_eq(info->version, 2);
	ck_assert_uint_eq(info->n_steps, 4);
	saga_info_free(info);

	info = get_ok(t, old);
	ck_assert_uint_eq(info->n_rerun_as, 3);
	ck_assert_str_eq(info->rerun_as[0], neu);
	ck_assert_str_eq(info->rerun_as[1], same);
	ck_assert_str_eq(info->rerun_as[2], other);
	ck_assert_str_eq(info->rerun_of, "");
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	saga_info_free(info);

	/* list shows the link */
	saga_list *l = NULL;
	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	ck_assert_int_eq(saga_client_list(c, &f, &l), SAGA_OK);
	int seen = 0;
	for (size_t i = 0; i < l->count; i++) {
		if (strcmp(l->sagas[i].saga_id, neu) == 0) {
			ck_assert_str_eq(l->sagas[i].rerun_of, old);
			seen++;
		} else if (strcmp(l->sagas[i].saga_id, old) == 0) {
			ck_assert_str_eq(l->sagas[i].rerun_of, "");
		}
	}
	ck_assert_int_eq(seen, 1);
	saga_list_free(l);

	/* refused: a running saga, an unknown one, a malformed id */
	char *running = ths_start_ok(t, "ittest.Linear3", "sleep=A:2000;tag=busy");
	char *x = NULL;
	ck_assert_int_eq(saga_client_rerun(c, running, NULL, 0, &x), SAGA_ESTATE);
	ck_assert_msg(ths_contains(saga_client_errmsg(c), "only a finished saga"), "%s",
	    saga_client_errmsg(c));
	ck_assert_ptr_null(x);
	ck_assert_int_eq(saga_client_rerun(c, "0190a0b0-0000-7000-8000-000000000009", NULL, 0, &x),
	    SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_client_rerun(c, "nope", NULL, 0, &x), SAGA_EINVAL);
	saga_info_free(ths_wait_final_ok(t, running, WAIT_MS));
	saga_string_free(running);
	saga_string_free(neu);
	saga_string_free(again);
	saga_string_free(same);
	saga_string_free(other);
	saga_string_free(old);
	ths_free(t);
}
END_TEST

START_TEST(a_client_may_not_terminate_force_or_rerun_and_an_operator_is_named_in_the_history)
{
	ths *t = ths_new_ok(pg, "op_roles");
	ths_auth_on(t);
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	char *clientc = ths_principal_ok(t, "shop", "client", NULL, NULL);
	char *operc = ths_principal_ok(t, "ops-alice", "operator", NULL, NULL);
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500;tag=roles");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);

	ths_set_credential(t, clientc);
	saga_client *c = ths_client(t);
	saga_state after;
	char *x = NULL;
	ck_assert_int_eq(saga_client_terminate(c, id, "x", &after), SAGA_EPERM);
	ck_assert_int_eq(saga_client_force_succeeded(c, id, "B", NULL, 0, "x", &after), SAGA_EPERM);
	ck_assert_int_eq(saga_client_rerun(c, id, NULL, 0, &x), SAGA_EPERM);
	saga_info *info = get_ok(t, id);
	ck_assert_int_eq(info->state, SAGA_STATE_RUNNING);
	saga_info_free(info);
	/* sagactl exits 77 */
	const char *args[] = { "terminate", id, "--reason", "x", NULL };
	ck_assert_int_eq(ths_sagactl(t, args, NULL), 77);

	ths_set_credential(t, operc);
	c = ths_client(t);
	int rv = saga_client_terminate(c, id, "customer asked", &after);
	ck_assert_msg(rv == SAGA_OK, "terminate: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	info = get_ok(t, id);
	int ev = event_at(info, 0, "terminated", NULL);
	ck_assert_int_gt(ev, 0);
	ck_assert_str_eq(info->events[ev].detail, "by ops-alice: customer asked");
	saga_info_free(info);
	ths_set_credential(t, NULL);
	free(clientc);
	free(operc);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

static saga_batch_result *
batch_ok(ths *t, saga_list_filter *f, saga_batch_opts *o)
{
	saga_batch_result *r = NULL;
	int rv = saga_client_batch(ths_client(t), f, o, &r);
	ck_assert_msg(
	    rv == SAGA_OK, "batch: %s: %s", saga_strerror(rv), saga_client_errmsg(ths_client(t)));
	return r;
}

static int
state_of(ths *t, const char *id)
{
	saga_info *info = get_ok(t, id);
	int st = info->state;
	saga_info_free(info);
	return st;
}

START_TEST(
    batch_acts_on_every_saga_of_a_filter_page_by_page_reporting_each_and_a_dry_run_changes_nothing)
{
	ths *t = ths_new_ok(pg, "op_batch");
	ths_sagad_start_ok(t, NULL);
	pid_t part = ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	saga_client *c = ths_client(t);
	/* Two completed sagas; then, with no participant left, five that stay
	 * running (their first step waits for one). */
	char *done_ids[2], *stuck[5];
	for (int i = 0; i < 2; i++) {
		done_ids[i] = ths_start_ok(t, "ittest.Linear3", i ? "tag=done1" : "tag=done0");
		saga_info_free(ths_wait_final_ok(t, done_ids[i], WAIT_MS));
	}
	ths_participant_signal(t, part, SIGKILL);
	for (int i = 0; i < 5; i++) {
		char tag[32];
		snprintf(tag, sizeof(tag), "tag=stuck%d", i);
		stuck[i] = ths_start_ok(t, "ittest.Linear3", tag);
	}

	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	f.definition = "ittest.Linear3";
	f.limit = 3;
	saga_batch_opts o = { .struct_size = sizeof(o), .action = SAGA_BATCH_CANCEL };
	o.reason = "bad price list";
	o.dry_run = 1;
	saga_batch_result *r = batch_ok(t, &f, &o);
	ck_assert_uint_eq(r->count, 3);
	ck_assert_uint_eq(r->applicable, 5);
	ck_assert_uint_eq(r->done, 3);
	ck_assert_str_ne(r->next_page_token, "");
	saga_batch_result_free(r);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(state_of(t, stuck[i]), SAGA_STATE_RUNNING);

	/* For real, a page at a time: 3, then the other 2 and the 2 completed
	 * ones skipped with why. */
	o.dry_run = 0;
	r = batch_ok(t, &f, &o);
	ck_assert_uint_eq(r->count, 3);
	ck_assert_uint_eq(r->done, 3);
	for (size_t i = 0; i < r->count; i++)
		ck_assert_msg(r->items[i].done &&
			(r->items[i].state == SAGA_STATE_COMPENSATING ||
			    r->items[i].state == SAGA_STATE_COMPENSATED),
		    "%s: %s", r->items[i].saga_id, r->items[i].why);
	char token[128];
	snprintf(token, sizeof(token), "%s", r->next_page_token);
	saga_batch_result_free(r);
	/* the next pages: the other 2, then the 2 completed ones skipped with why */
	unsigned pages = 1, done = 3, skipped = 0;
	while (token[0] != '\0') {
		f.page_token = token;
		r = batch_ok(t, &f, &o);
		pages++;
		done += r->done;
		skipped += r->skipped;
		for (size_t i = 0; i < r->count; i++) {
			if (r->items[i].done)
				continue;
			ck_assert_int_eq(r->items[i].code, SAGA_ESTATE);
			ck_assert_msg(
			    ths_contains(r->items[i].why, "completed"), "%s", r->items[i].why);
		}
		snprintf(token, sizeof(token), "%s", r->next_page_token);
		saga_batch_result_free(r);
		ck_assert_uint_le(pages, 3);
	}
	ck_assert_uint_eq(pages, 3);
	ck_assert_uint_eq(done, 5);
	ck_assert_uint_eq(skipped, 2);
	for (int i = 0; i < 5; i++) {
		saga_info *info = get_ok(t, stuck[i]);
		ck_assert_int_ne(info->state, SAGA_STATE_RUNNING);
		ck_assert_msg(ths_contains(info->error, "bad price list"), "%s", info->error);
		saga_info_free(info);
	}
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(state_of(t, done_ids[i]), SAGA_STATE_COMPLETED);

	/* terminate the five (compensating: their undo waits for a participant) */
	saga_state comp = SAGA_STATE_COMPENSATING;
	f.states = &comp;
	f.n_states = 1;
	f.page_token = NULL;
	f.limit = 0;
	o.action = SAGA_BATCH_TERMINATE;
	o.reason = NULL;
	saga_batch_result *bad = NULL;
	ck_assert_int_eq(saga_client_batch(c, &f, &o, &bad), SAGA_EINVAL);
	ck_assert_msg(
	    ths_contains(saga_client_errmsg(c), "needs a reason"), "%s", saga_client_errmsg(c));
	o.reason = "given up";
	r = batch_ok(t, &f, &o);
	ck_assert_uint_eq(r->done, 5);
	saga_batch_result_free(r);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(state_of(t, stuck[i]), SAGA_STATE_TERMINATED);

	/* rerun them, twice with one key: one new saga each */
	saga_state term = SAGA_STATE_TERMINATED;
	f.states = &term;
	o.action = SAGA_BATCH_RERUN;
	o.idempotency_key = "fix-42";
	r = batch_ok(t, &f, &o);
	ck_assert_uint_eq(r->done, 5);
	saga_batch_result *r2 = batch_ok(t, &f, &o);
	ck_assert_uint_eq(r2->done, 5);
	for (size_t i = 0; i < 5; i++) {
		ck_assert_str_eq(r->items[i].saga_id, r2->items[i].saga_id);
		ck_assert_str_ne(r->items[i].new_saga_id, "");
		ck_assert_str_eq(r->items[i].new_saga_id, r2->items[i].new_saga_id);
		saga_info *info = get_ok(t, r->items[i].new_saga_id);
		ck_assert_str_eq(info->rerun_of, r->items[i].saga_id);
		saga_info_free(info);
	}
	saga_batch_result_free(r);
	saga_batch_result_free(r2);
	/* bad use is refused whole */
	o.action = SAGA_BATCH_RETRY;
	o.step = NULL;
	ck_assert_int_eq(saga_client_batch(c, &f, &o, &bad), SAGA_EINVAL);
	f.limit = 101;
	o.action = SAGA_BATCH_CANCEL;
	ck_assert_int_eq(saga_client_batch(c, &f, &o, &bad), SAGA_EINVAL);
	ck_assert_ptr_null(bad);
	for (int i = 0; i < 5; i++)
		saga_string_free(stuck[i]);
	for (int i = 0; i < 2; i++)
		saga_string_free(done_ids[i]);
	ths_free(t);
}
END_TEST

/* Both instances hold shards (16 at least each), so sagas started through
 * each land in its own. */
static void
wait_split(const char *db)
{
	long long t0 = th_now_ms();
	const char *sql =
	    "SELECT CASE WHEN (SELECT count(*) FROM saga_shards WHERE owner IS NOT NULL AND "
	    "expires_at > now()) = 64 AND (SELECT count(DISTINCT owner) FROM saga_shards) = 2 "
	    "AND NOT EXISTS (SELECT 1 FROM saga_shards WHERE owner IS NOT NULL GROUP BY owner "
	    "HAVING count(*) < 16) THEN 1 ELSE 0 END";
	while (th_pg_query_int(pg, db, sql) != 1) {
		ck_assert_msg(th_now_ms() - t0 < WAIT_MS, "the shards were not split in two");
		usleep(100 * 1000);
	}
}

START_TEST(a_batch_sent_to_one_instance_reaches_the_sagas_another_holds)
{
	static const char *const args[] = { "--lease-ms", "2000", NULL };
	ths *t = ths_new_ok(pg, "op_batch_inst");
	ths_sagad_n_start_ok(t, 0, args);
	ths_sagad_n_start_ok(t, 1, args);
	wait_split("op_batch_inst");
	saga_client *c[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(saga_client_new(ths_sagad_n_url(t, i), &c[i]), SAGA_OK);
	size_t len = 0;
	char *set = th_read_file(ths_env_ok("IT_SAGAS"), &len);
	ck_assert_ptr_nonnull(set);
	saga_register_result *reg = NULL;
	ck_assert_int_eq(saga_client_register(c[0], set, len, &reg), SAGA_OK);
	saga_register_result_free(reg);
	free(set);
	/* No participant: every saga stays running where it was started. */
	char *ids[6];
	for (int k = 0; k < 6; k++) {
		char tag[32];
		snprintf(tag, sizeof(tag), "tag=inst%d", k);
		ck_assert_int_eq(saga_client_start(c[k % 2], "ittest.Linear3", tag, strlen(tag),
				     NULL, &ids[k], NULL),
		    SAGA_OK);
	}
	/* Through instance 1: the three held by instance 0 go through the
	 * database to it. */
	saga_list_filter f = SAGA_LIST_FILTER_INIT;
	f.definition = "ittest.Linear3";
	saga_batch_opts o = { .struct_size = sizeof(o), .action = SAGA_BATCH_TERMINATE };
	o.reason = "cleanup across instances";
	saga_batch_result *r = NULL;
	int rv = saga_client_batch(c[1], &f, &o, &r);
	ck_assert_msg(rv == SAGA_OK, "batch: %s: %s", saga_strerror(rv), saga_client_errmsg(c[1]));
	ck_assert_uint_eq(r->count, 6);
	for (size_t i = 0; i < r->count; i++)
		ck_assert_msg(r->items[i].done && r->items[i].state == SAGA_STATE_TERMINATED,
		    "%s: %s", r->items[i].saga_id, r->items[i].why);
	saga_batch_result_free(r);
	for (int k = 0; k < 6; k++) {
		saga_info *info = NULL;
		ck_assert_int_eq(saga_client_get(c[k % 2], ids[k], &info), SAGA_OK);
		ck_assert_int_eq(info->state, SAGA_STATE_TERMINATED);
		ck_assert_msg(
		    ths_contains(info->error, "cleanup across instances"), "%s", info->error);
		saga_info_free(info);
		saga_string_free(ids[k]);
	}
	for (int i = 0; i < 2; i++)
		saga_client_free(c[i]);
	ths_free(t);
}
END_TEST

static Suite *
operator_suite(void)
{
	Suite *s = suite_create("operator");
	TCase *tc = tcase_create("operator");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
	    tc, terminate_stops_a_running_saga_without_compensating_and_ignores_its_late_answer);
	tcase_add_test(tc, terminate_stops_a_parked_saga_where_it_stands_and_is_counted_in_metrics);
	tcase_add_test(
	    tc, force_succeeded_gives_a_step_in_flight_its_result_and_the_saga_completes_with_it);
	tcase_add_test(
	    tc, force_compensated_undoes_parked_steps_by_hand_and_the_saga_ends_compensated);
	tcase_add_test(tc,
	    rerun_starts_a_finished_saga_again_linked_both_ways_once_per_key_on_its_version_or_the_latest);
	tcase_add_test(
	    tc, a_client_may_not_terminate_force_or_rerun_and_an_operator_is_named_in_the_history);
	tcase_add_test(tc,
	    batch_acts_on_every_saga_of_a_filter_page_by_page_reporting_each_and_a_dry_run_changes_nothing);
	tcase_add_test(tc, a_batch_sent_to_one_instance_reaches_the_sagas_another_holds);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(operator_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
