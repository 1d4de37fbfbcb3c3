/*
 * Integration: crashes. sagad killed with SIGKILL (or stopped with SIGTERM)
 * while steps are in flight and started again on the same database;
 * participants killed while they hold a step. Every saga that was
 * acknowledged must reach a final state, and the journal must show that
 * steps ran in order and received their dependencies' results. Delivery is
 * at least once, so a step may run more than once; never less.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

#define WAIT_MS 60000

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

/* Every acknowledged saga completed, every step ran (at least once) in
 * order with its dependency's result, nothing was compensated. */
static void
assert_all_completed(ths *t, char **ids, int n)
{
	static const char *steps[] = { "A", "B", "C" };
	ths_journal *j;

	for (int i = 0; i < n; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga %s is %s: %s", ids[i],
		    saga_state_name(info->state), info->error);
		for (int k = 0; k < 3; k++) {
			const saga_step_info *st = ths_step_ok(info, steps[k]);
			ck_assert_int_eq(st->state, SAGA_STEP_SUCCEEDED);
			ck_assert_uint_eq(st->completion_seq, (uint32_t)k + 1);
		}
		saga_info_free(info);
	}
	j = ths_journal_read_ok(t);
	for (int i = 0; i < n; i++) {
		char want[128];
		ck_assert_int_eq(ths_journal_count(j, ids[i], 'c', NULL, NULL), 0);
		int a = ths_journal_find(j, 0, ids[i], 'a', "A", "ok");
		int b = ths_journal_find(j, 0, ids[i], 'a', "B", "ok");
		int c = ths_journal_find(j, 0, ids[i], 'a', "C", "ok");
		ck_assert_msg(a >= 0 && b >= 0 && c >= 0, "saga %s: A at %d, B at %d, C at %d",
		    ids[i], a, b, c);
		ck_assert_int_lt(a, b);
		ck_assert_int_lt(b, c);
		snprintf(want, sizeof(want), "B@%s", ids[i]);
		for (int at = c; at >= 0;
		     at = ths_journal_find(j, (size_t)at + 1, ids[i], 'a', "C", NULL)) {
			const char *got = ths_jline_dep(&j->lines[at], "B");
			ck_assert_msg(got != NULL && strcmp(got, want) == 0,
			    "C of %s received B's result '%s'", ids[i], got ? got : "(none)");
		}
	}
	ths_journal_free(j);
}

static void
free_ids(char **ids, int n)
{
	for (int i = 0; i < n; i++)
		saga_string_free(ids[i]);
}

static ths *
world(const char *db)
{
	ths *t = ths_new_ok(pg, db);
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "main", 32, NULL);
	ths_register_sagas_ok(t);
	return t;
}

/* ---- sagad crashes ------------------------------------------------------ */

START_TEST(sagad_killed_while_steps_run_loses_no_saga)
{
	enum { N = 5 };
	ths *t = world("rc_kill9_mid_step");
	char *ids[N];
	char input[64];

	for (int i = 0; i < N; i++) {
		snprintf(input, sizeof(input), "sleep=B:1500;tag=%d", i);
		ids[i] = ths_start_ok(t, "ittest.Linear3", input);
	}
	for (int i = 0; i < N; i++)
		ths_wait_step_state_ok(t, ids[i], "B", SAGA_STEP_RUNNING, WAIT_MS);

	int st = ths_sagad_signal(t, SIGKILL);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "sagad status %#x", st);
	ths_sagad_start_ok(t, NULL);

	assert_all_completed(t, ids, N);
	free_ids(ids, N);
	ths_free(t);
}
END_TEST

START_TEST(deadline_that_passed_while_sagad_was_down_compensates_after_restart)
{
	ths *t = world("rc_deadline");
	/* A runs, B sleeps past the 700 ms deadline; sagad is killed before
	 * the deadline and comes back after it. */
	char *id = ths_start_ok(t, "ittest.Deadliney", "sleep=B:1500");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	int st = ths_sagad_signal(t, SIGKILL);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "sagad status %#x", st);
	usleep(900 * 1000);
	ths_sagad_start_ok(t, NULL);

	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_msg(ths_contains(info->error, "deadline exceeded"), "error '%s'", info->error);
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_COMPENSATED);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(sagad_killed_right_after_starts_loses_no_acknowledged_saga)
{
	enum { N = 20 };
	ths *t = world("rc_kill9_after_start");
	char *ids[N];
	char input[64];

	for (int i = 0; i < N; i++) {
		snprintf(input, sizeof(input), "sleep=A:200;tag=%d", i);
		ids[i] = ths_start_ok(t, "ittest.Linear3", input);
	}
	/* acknowledged = committed: kill at once */
	ths_sagad_signal(t, SIGKILL);
	ths_sagad_start_ok(t, NULL);

	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(ths_client(t), NULL, &l), SAGA_OK);
	ck_assert_uint_eq(l->count, N);
	saga_list_free(l);
	assert_all_completed(t, ids, N);
	free_ids(ids, N);
	ths_free(t);
}
END_TEST

START_TEST(sagad_killed_twice_during_compensation_still_compensates)
{
	enum { N = 3 };
	ths *t = world("rc_kill9_compensating");
	char *ids[N];
	char input[64];

	for (int i = 0; i < N; i++) {
		snprintf(input, sizeof(input), "fail=C;compsleep=B:800;tag=%d", i);
		ids[i] = ths_start_ok(t, "ittest.Linear3", input);
	}
	for (int i = 0; i < N; i++)
		ths_wait_step_state_ok(t, ids[i], "B", SAGA_STEP_COMPENSATING, WAIT_MS);
	ths_sagad_signal(t, SIGKILL);
	ths_sagad_start_ok(t, NULL);
	ths_sagad_signal(t, SIGKILL);
	ths_sagad_start_ok(t, NULL);

	ths_journal *j;
	for (int i = 0; i < N; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga %s is %s: %s", ids[i],
		    saga_state_name(info->state), info->error);
		ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_COMPENSATED);
		ck_assert_int_eq(ths_step_ok(info, "B")->state, SAGA_STEP_COMPENSATED);
		ck_assert_int_eq(ths_step_ok(info, "C")->state, SAGA_STEP_FAILED);
		saga_info_free(info);
	}
	j = ths_journal_read_ok(t);
	for (int i = 0; i < N; i++) {
		int ub = ths_journal_find(j, 0, ids[i], 'c', "UndoB", "ok");
		int ua = ths_journal_find(j, 0, ids[i], 'c', "UndoA", "ok");
		ck_assert_msg(
		    ub >= 0 && ua >= 0, "saga %s: UndoB at %d, UndoA at %d", ids[i], ub, ua);
		/* A is undone only after some run of UndoB finished */
		ck_assert_int_lt(ub, ua);
		ck_assert_int_eq(ths_journal_count(j, ids[i], 'c', "UndoC", NULL), 0);
	}
	ths_journal_free(j);
	free_ids(ids, N);
	ths_free(t);
}
END_TEST

START_TEST(sagad_stopped_gracefully_mid_step_resumes_after_restart)
{
	enum { N = 3 };
	ths *t = world("rc_sigterm_mid_step");
	char *ids[N];
	char input[64];

	for (int i = 0; i < N; i++) {
		snprintf(input, sizeof(input), "sleep=B:1500;tag=%d", i);
		ids[i] = ths_start_ok(t, "ittest.Linear3", input);
	}
	for (int i = 0; i < N; i++)
		ths_wait_step_state_ok(t, ids[i], "B", SAGA_STEP_RUNNING, WAIT_MS);
	int st = ths_sagad_signal(t, SIGTERM);
	ck_assert_msg(
	    WIFEXITED(st) && WEXITSTATUS(st) == 0, "sagad exit status %#x after SIGTERM", st);
	ths_sagad_start_ok(t, NULL);
	assert_all_completed(t, ids, N);
	free_ids(ids, N);
	ths_free(t);
}
END_TEST

/* ---- participant crashes ------------------------------------------------ */

START_TEST(participant_crash_redelivers_the_step_to_another_replica)
{
	enum { PER_ROUND = 4, ROUNDS = 5 };
	static const char *const ac[] = { "pA", "pC", NULL };
	static const char *const b[] = { "pB", NULL };
	ths *t = ths_new_ok(pg, "rc_participant_crash");
	char *ids[PER_ROUND * ROUNDS];
	int n = 0, crashed_round = -1;
	char input[96];

	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "ac", 16, ac);
	pid_t x = ths_participant_ok(t, "X", 16, b);
	ths_participant_ok(t, "Y", 2, b);
	ths_register_sagas_ok(t);

	/* Which replica gets a step is sagad's choice: start sagas until X
	 * has received one of them (and died of it). */
	for (int r = 0; r < ROUNDS && crashed_round < 0; r++) {
		int first = n;
		for (int i = 0; i < PER_ROUND; i++) {
			snprintf(input, sizeof(input), "crash=B;crashinst=X;tag=%d-%d", r, i);
			ids[n++] = ths_start_ok(t, "ittest.Linear3", input);
		}
		for (int i = first; i < n; i++)
			saga_info_free(ths_wait_final_ok(t, ids[i], WAIT_MS));
		if (ths_participant_exited(t, x))
			crashed_round = r;
	}
	ck_assert_msg(crashed_round >= 0, "replica X never received a B step in %d sagas", n);
	fprintf(stderr, "participant_crash: X crashed in round %d of %d sagas each\n",
	    crashed_round, PER_ROUND);

	assert_all_completed(t, ids, n);
	ths_journal *j = ths_journal_read_ok(t);
	int crashes = ths_journal_count(j, NULL, 'a', "B", "crash");
	ck_assert_int_eq(crashes, 1); /* X died at its first B */
	int at = ths_journal_find(j, 0, NULL, 'a', "B", "crash");
	const ths_jline *crash = &j->lines[at];
	ck_assert_str_eq(crash->instance, "X");
	/* the crashed step was redelivered to Y and succeeded there */
	int redo = ths_journal_find(j, (size_t)at + 1, crash->saga_id, 'a', "B", "ok");
	ck_assert_msg(redo >= 0, "B of %s never ran again after X crashed", crash->saga_id);
	ck_assert_str_eq(j->lines[redo].instance, "Y");
	/* every B that succeeded ran on Y */
	ck_assert_int_eq(ths_journal_count(j, NULL, 'a', "B", "ok"),
	    ths_journal_count(j, NULL, 'a', "B", NULL) - 1);
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->lines[i].rpc, "B") == 0 && strcmp(j->lines[i].outcome, "ok") == 0)
			ck_assert_str_eq(j->lines[i].instance, "Y");
	ths_journal_free(j);
	free_ids(ids, n);
	ths_free(t);
}
END_TEST

START_TEST(participant_killed_mid_step_gets_it_again_after_restart)
{
	ths *t = ths_new_ok(pg, "rc_participant_kill9");
	ths_sagad_start_ok(t, NULL);
	pid_t p1 = ths_participant_ok(t, "first", 16, NULL);
	ths_register_sagas_ok(t);

	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	ths_participant_signal(t, p1, SIGKILL);
	ths_participant_ok(t, "second", 16, NULL);

	assert_all_completed(t, &id, 1);
	ths_journal *j = ths_journal_read_ok(t);
	/* the killed run never journaled (it was sleeping); B ran on second */
	const ths_jline *b = &j->lines[ths_journal_find(j, 0, id, 'a', "B", "ok")];
	ck_assert_str_eq(b->instance, "second");
	ck_assert_int_eq(ths_journal_count(j, id, 'a', "B", NULL), 1);
	ths_journal_free(j);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

static Suite *
recovery_suite(void)
{
	Suite *s = suite_create("recovery");
	TCase *tc = tcase_create("recovery");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, sagad_killed_while_steps_run_loses_no_saga);
	tcase_add_test(tc, sagad_killed_right_after_starts_loses_no_acknowledged_saga);
	tcase_add_test(tc, deadline_that_passed_while_sagad_was_down_compensates_after_restart);
	tcase_add_test(tc, sagad_killed_twice_during_compensation_still_compensates);
	tcase_add_test(tc, sagad_stopped_gracefully_mid_step_resumes_after_restart);
	tcase_add_test(tc, participant_crash_redelivers_the_step_to_another_replica);
	tcase_add_test(tc, participant_killed_mid_step_gets_it_again_after_restart);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(recovery_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
