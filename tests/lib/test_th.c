/* Tests of the test harness itself: other tests trust it to start and,
 * above all, to clean up processes and clusters. */
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

#include "th.h"

static char *dir;

static void
dir_up(void)
{
	dir = th_tmpdir();
	ck_assert_ptr_nonnull(dir);
}

static void
dir_down(void)
{
	th_rm_rf(dir);
	free(dir);
}

/* Gone, or a zombie nobody reaps (PID 1 of some sandboxes does not). */
static int
is_dead(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	char path[64], *st;
	int dead;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((st = th_read_file(path, NULL)) == NULL)
		return 1;
	const char *rp = strrchr(st, ')');
	dead = rp != NULL && (rp[2] == 'Z' || rp[2] == 'X');
	free(st);
	return dead;
}

START_TEST(tmpdir_is_fresh_and_reachable_by_others)
{
	char *a = th_tmpdir(), *b = th_tmpdir();
	struct stat st;
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(stat(a, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0711);
	ck_assert_int_eq(th_rm_rf(a), 0);
	ck_assert_int_ne(access(a, F_OK), 0);
	ck_assert_int_eq(th_rm_rf(a), 0); /* already gone */
	th_rm_rf(b);
	free(a);
	free(b);
}
END_TEST

START_TEST(spawn_writes_output_to_log_with_extra_env)
{
	char log[4200];
	int status;
	snprintf(log, sizeof(log), "%s/out.log", dir);
	const char *argv[] = { "sh", "-c", "echo out=$TH_X; echo err=$HOME >&2; exit 3", NULL };
	const char *env[] = { "TH_X=hello world", "HOME=/nowhere", NULL };
	ck_assert_int_eq(th_run(argv, env, log, 10000, &status), 0);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 3);
	char *out = th_read_file(log, NULL);
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, "out=hello world\nerr=/nowhere\n");
	free(out);
}
END_TEST

START_TEST(spawn_of_missing_program_fails_at_once)
{
	const char *argv[] = { "/nonexistent/prog", NULL };
	const char *argv2[] = { "th-no-such-program-in-path", NULL };
	ck_assert_int_eq(th_spawn(argv, NULL, NULL), -1);
	ck_assert_int_eq(th_spawn(argv2, NULL, NULL), -1);
}
END_TEST

START_TEST(stop_escalates_to_sigkill_when_sigterm_is_ignored)
{
	const char *polite[] = { "sleep", "30", NULL };
	const char *stubborn[] = { "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done", NULL };
	pid_t p = th_spawn(polite, NULL, NULL);
	ck_assert_int_gt(p, 0);
	int st = th_stop(p);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);

	p = th_spawn(stubborn, NULL, NULL);
	ck_assert_int_gt(p, 0);
	usleep(200 * 1000); /* let the trap be set */
	long long t0 = th_now_ms();
	st = th_stop(p);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	ck_assert_int_ge(th_now_ms() - t0, 4900);
}
END_TEST

START_TEST(wait_exit_times_out_on_a_running_child)
{
	const char *argv[] = { "sleep", "30", NULL };
	pid_t p = th_spawn(argv, NULL, NULL);
	ck_assert_int_eq(th_wait_exit(p, 100, NULL), -1);
	ck_assert_int_eq(th_kill(p, SIGKILL), 0);
	int st;
	ck_assert_int_eq(th_wait_exit(p, 5000, &st), 0);
	ck_assert(WIFSIGNALED(st));
}
END_TEST

START_TEST(children_die_when_the_test_process_dies)
{
	int pfd[2];
	pid_t mid, grandchild = 0;
	ck_assert_int_eq(pipe(pfd), 0);
	mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		/* A "test process" that spawns a child and then crashes. */
		const char *argv[] = { "sleep", "60", NULL };
		pid_t p = th_spawn(argv, NULL, NULL);
		(void)!write(pfd[1], &p, sizeof(p));
		_exit(0);
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &grandchild, sizeof(grandchild)), sizeof(grandchild));
	ck_assert_int_gt(grandchild, 0);
	waitpid(mid, NULL, 0);
	ck_assert_int_eq(th_wait_until(is_dead, &grandchild, 5000), 0);
}
END_TEST

static int counter;
static int
third_call(void *arg)
{
	(void)arg;
	return ++counter >= 3;
}
static int
never(void *arg)
{
	(void)arg;
	return 0;
}

START_TEST(wait_until_polls_until_true_or_timeout)
{
	ck_assert_int_eq(th_wait_until(third_call, NULL, 5000), 0);
	ck_assert_int_eq(counter, 3);
	long long t0 = th_now_ms();
	ck_assert_int_eq(th_wait_until(never, NULL, 200), -1);
	ck_assert_int_ge(th_now_ms() - t0, 200);
}
END_TEST

START_TEST(read_and_write_file_round_trip)
{
	char path[4200];
	size_t len;
	snprintf(path, sizeof(path), "%s/f.bin", dir);
	ck_assert_int_eq(th_write_file(path, "a\0b", 3), 0);
	char *s = th_read_file(path, &len);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(memcmp(s, "a\0b", 4), 0); /* NUL-terminated too */
	free(s);
	ck_assert_ptr_null(th_read_file("/nonexistent/x", NULL));
}
END_TEST

/* ---- PostgreSQL ------------------------------------------------------------- */

START_TEST(pg_starts_serves_restarts_and_is_removed)
{
	th_pg *pg;
	ck_assert_int_eq(th_pg_start(&pg), 0);
	char *d = strdup(th_pg_dir(pg));
	ck_assert_int_eq(
	    th_pg_query_int(pg, "postgres", "SELECT (current_setting('fsync') = 'on')::int"), 1);
	ck_assert_int_eq(th_pg_create_db(pg, "t1"), 0);
	ck_assert_int_eq(
	    th_pg_exec(pg, "t1", "CREATE TABLE x (v int); INSERT INTO x VALUES (7)"), 0);
	/* create_db gives a fresh database every time. */
	ck_assert_int_eq(th_pg_create_db(pg, "t2"), 0);
	ck_assert_int_eq(th_pg_exec(pg, "t2", "CREATE TABLE x (v int)"), 0);
	ck_assert_int_eq(th_pg_create_db(pg, "t2"), 0);
	ck_assert_int_eq(
	    th_pg_query_int(pg, "t2", "SELECT count(*) FROM pg_tables WHERE tablename = 'x'"), 0);
	ck_assert(th_pg_query_int(pg, "t1", "SELECT nosuch") == TH_PG_ERR);
	ck_assert_int_ne(th_pg_exec(pg, "t1", "SELEC 1"), 0);

	/* Crash and recover: committed data is there. */
	pid_t old = th_pg_pid(pg);
	ck_assert_int_eq(th_pg_kill(pg), 0);
	ck_assert_int_eq(th_pg_pid(pg), -1);
	ck_assert_ptr_null(th_pg_connect(pg, "t1"));
	ck_assert_int_eq(th_pg_restart(pg), 0);
	ck_assert_int_ne(th_pg_pid(pg), old);
	ck_assert_int_eq(th_pg_query_int(pg, "t1", "SELECT v FROM x"), 7);

	ck_assert_int_eq(th_pg_stop(pg), 0);
	ck_assert_int_eq(th_pg_restart(pg), 0);
	ck_assert_int_eq(th_pg_query_int(pg, "t1", "SELECT v FROM x"), 7);

	th_pg_free(pg);
	ck_assert_int_ne(access(d, F_OK), 0);
	free(d);
}
END_TEST

START_TEST(pg_options_apply_and_clusters_run_side_by_side)
{
	th_pg *a, *b;
	th_pg_opts o = { .fsync = 0, .max_connections = 20 };
	ck_assert_int_eq(th_pg_start_opts(&a, &o), 0);
	ck_assert_int_eq(th_pg_start(&b), 0);
	ck_assert_str_ne(th_pg_dir(a), th_pg_dir(b));
	ck_assert_int_eq(
	    th_pg_query_int(a, "postgres", "SELECT (current_setting('fsync') = 'off')::int"), 1);
	ck_assert_int_eq(
	    th_pg_query_int(a, "postgres", "SELECT current_setting('max_connections')::int"), 20);
	ck_assert_int_eq(th_pg_query_int(a, "postgres",
			     "SELECT (current_setting('listen_addresses') = '')::int"),
	    1);
	char *ci = th_pg_conninfo(b, "postgres");
	ck_assert_ptr_nonnull(strstr(ci, th_pg_dir(b)));
	ck_assert_int_eq(PQping(ci), PQPING_OK);
	free(ci);
	th_pg_free(a);
	th_pg_free(b);
	th_pg_free(NULL);
}
END_TEST

START_TEST(pg_dies_with_the_test_process)
{
	int pfd[2];
	pid_t mid, pm = 0;
	ck_assert_int_eq(pipe(pfd), 0);
	mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		th_pg *pg;
		char d[256] = "";
		pid_t p = -1;
		if (th_pg_start(&pg) == 0) {
			p = th_pg_pid(pg);
			snprintf(d, sizeof(d), "%s", th_pg_dir(pg));
		}
		(void)!write(pfd[1], &p, sizeof(p));
		(void)!write(pfd[1], d, sizeof(d));
		_exit(0); /* a crashed test: no th_pg_free */
	}
	close(pfd[1]);
	char d[256];
	ck_assert_int_eq(read(pfd[0], &pm, sizeof(pm)), sizeof(pm));
	ck_assert_int_eq(read(pfd[0], d, sizeof(d)), sizeof(d));
	ck_assert_int_gt(pm, 0);
	waitpid(mid, NULL, 0);
	ck_assert_int_eq(th_wait_until(is_dead, &pm, 10000), 0);
	th_rm_rf(d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("th");
	TCase *tc = tcase_create("proc");
	tcase_add_unchecked_fixture(tc, dir_up, dir_down);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, tmpdir_is_fresh_and_reachable_by_others);
	tcase_add_test(tc, spawn_writes_output_to_log_with_extra_env);
	tcase_add_test(tc, spawn_of_missing_program_fails_at_once);
	tcase_add_test(tc, stop_escalates_to_sigkill_when_sigterm_is_ignored);
	tcase_add_test(tc, wait_exit_times_out_on_a_running_child);
	tcase_add_test(tc, children_die_when_the_test_process_dies);
	tcase_add_test(tc, wait_until_polls_until_true_or_timeout);
	tcase_add_test(tc, read_and_write_file_round_trip);
	suite_add_tcase(s, tc);
	TCase *tp = tcase_create("pg");
	tcase_set_timeout(tp, 120);
	tcase_add_test(tp, pg_starts_serves_restarts_and_is_removed);
	tcase_add_test(tp, pg_options_apply_and_clusters_run_side_by_side);
	tcase_add_test(tp, pg_dies_with_the_test_process);
	suite_add_tcase(s, tp);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
