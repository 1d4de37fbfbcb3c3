/*
 * Integration: the embedded default. sagad with no --db runs its own
 * PostgreSQL in --data-dir: a saga completes on it, SIGTERM stops sagad
 * and that PostgreSQL, and the next start finds the saga again.
 * (server/pgembed.c's own behaviour is covered by test_pgembed; this runs
 * the real sagad binary.)
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

#define WAIT_MS 30000

static pid_t
postmaster_pid(const char *pgdata)
{
	char *p = NULL;
	if (asprintf(&p, "%s/postmaster.pid", pgdata) < 0)
		return -1;
	char *s = th_read_file(p, NULL);
	free(p);
	if (s == NULL)
		return -1;
	pid_t pid = (pid_t)strtol(s, NULL, 10);
	free(s);
	return pid;
}

static int
process_gone(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	return kill(pid, 0) != 0 && errno == ESRCH;
}

static void
start_embedded(ths *t, const char *data)
{
	const char *args[] = { "--data-dir", data, "--listen", ths_url(t), "--log-level", "debug",
		NULL };
	/* the first start runs initdb */
	ths_sagad_start_args_ok(t, args, 120000);
}

START_TEST(sagad_without_db_runs_its_own_postgresql_and_stops_it_on_sigterm)
{
	ths *t = ths_new_ok(NULL, "embedded");
	char data[1024], pgdata[1100];

	snprintf(data, sizeof(data), "%s/data", ths_dir(t));
	/* As root the cluster belongs to `postgres`, who must reach it. */
	ck_assert_int_eq(mkdir(data, 0755), 0);
	snprintf(pgdata, sizeof(pgdata), "%s/pg", data);
	ths_track_postmaster(t, pgdata);

	start_embedded(t, data);
	pid_t pm = postmaster_pid(pgdata);
	ck_assert_msg(pm > 0, "no postmaster.pid in %s", pgdata);
	ck_assert_int_eq(kill(pm, 0), 0);

	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=embedded");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	saga_info_free(info);

	int st = ths_sagad_signal(t, SIGTERM);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sagad exit status %#x", st);
	ck_assert_msg(th_wait_until(process_gone, &pm, 30000) == 0,
	    "the embedded PostgreSQL (pid %d) still runs after sagad stopped", (int)pm);

	/* the same data dir again: the saga is still there */
	start_embedded(t, data);
	pid_t pm2 = postmaster_pid(pgdata);
	ck_assert_int_gt(pm2, 0);
	ck_assert_int_ne(pm2, pm);
	ck_assert_int_eq(saga_client_get(ths_client(t), id, &info), SAGA_OK);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);
	/* and it still runs sagas (the definitions were kept too) */
	saga_string_free(id);
	id = ths_start_ok(t, "ittest.Linear3", "tag=embedded-again");
	info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);
	saga_string_free(id);

	st = ths_sagad_signal(t, SIGTERM);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sagad exit status %#x", st);
	ck_assert_msg(th_wait_until(process_gone, &pm2, 30000) == 0,
	    "the embedded PostgreSQL (pid %d) still runs after sagad stopped", (int)pm2);
	ths_free(t);
}
END_TEST

START_TEST(sagad_killed_leaves_its_postgresql_for_the_next_start)
{
	ths *t = ths_new_ok(NULL, "embedded_kill9");
	char data[1024], pgdata[1100];

	snprintf(data, sizeof(data), "%s/data", ths_dir(t));
	ck_assert_int_eq(mkdir(data, 0755), 0);
	snprintf(pgdata, sizeof(pgdata), "%s/pg", data);
	ths_track_postmaster(t, pgdata);

	start_embedded(t, data);
	pid_t pm = postmaster_pid(pgdata);
	ck_assert_int_gt(pm, 0);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1000");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);

	ths_sagad_signal(t, SIGKILL);
	start_embedded(t, data);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	saga_info_free(info);
	saga_string_free(id);

	pid_t pm2 = postmaster_pid(pgdata);
	ck_assert_int_gt(pm2, 0);
	ths_sagad_signal(t, SIGTERM);
	ck_assert_msg(th_wait_until(process_gone, &pm2, 30000) == 0,
	    "the embedded PostgreSQL (pid %d) still runs after sagad stopped", (int)pm2);
	ths_free(t);
}
END_TEST

static Suite *
embedded_suite(void)
{
	Suite *s = suite_create("embedded");
	TCase *tc = tcase_create("embedded");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, sagad_without_db_runs_its_own_postgresql_and_stops_it_on_sigterm);
	tcase_add_test(tc, sagad_killed_leaves_its_postgresql_for_the_next_start);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(embedded_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
