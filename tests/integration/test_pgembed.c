/* Integration tests of server/pgembed.c: the embedded PostgreSQL default,
 * with real initdb and pg_ctl (as user postgres when run as root). */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgembed.h"
#include "saga.h"
#include "th.h"

/*
 * Clusters started by pg_ctl are detached from the test (a new session),
 * so they would outlive a failed test. Every data directory is made under
 * `root`, and the unchecked teardown -- which runs in the parent process
 * even when a test fails -- stops every cluster under it.
 */
static char *root;
static char conninfo[1024], err[2048];

static void
root_up(void)
{
	root = th_tmpdir();
	ck_assert_ptr_nonnull(root);
}

static void
root_down(void)
{
	DIR *d = opendir(root);
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		char dd[4096];
		if (e->d_name[0] == '.')
			continue;
		snprintf(dd, sizeof(dd), "%s/%s", root, e->d_name);
		pgembed_stop(dd, NULL, NULL);
	}
	if (d != NULL)
		closedir(d);
	th_rm_rf(root);
	free(root);
}

static char *
data_dir(const char *name)
{
	char *p;
	ck_assert_int_gt(asprintf(&p, "%s/%s", root, name), 0);
	return p;
}

static long long
query_int(const char *ci, const char *sql)
{
	PGconn *c = PQconnectdb(ci);
	long long v = -1;
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", ci, PQerrorMessage(c));
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
	    "%s: %s", sql, PQresultErrorMessage(r));
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

static long
postmaster_pid(const char *dd)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/pg/postmaster.pid", dd);
	char *s = th_read_file(path, NULL);
	long pid = s != NULL ? strtol(s, NULL, 10) : -1;
	free(s);
	return pid;
}

START_TEST(start_on_relative_data_dir_creates_cluster_and_saga_db_with_working_conninfo)
{
	char *dd = data_dir("fresh"), want_host[4200], path[4200];
	struct stat st;

	/* Relative, as the default "./sagad-data" is. */
	ck_assert_int_eq(chdir(root), 0);
	ck_assert_msg(
	    pgembed_start("./fresh", NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)) == 0,
	    "%s", err);

	snprintf(want_host, sizeof(want_host), "host='%s/pg'", dd);
	ck_assert_msg(strstr(conninfo, want_host) != NULL, "%s", conninfo);
	ck_assert_ptr_nonnull(strstr(conninfo, "dbname=saga"));
	ck_assert_int_eq(query_int(conninfo, "SELECT (current_database() = 'saga')::int"), 1);
	ck_assert_int_eq(query_int(conninfo, "SELECT (current_user = 'saga')::int"), 1);
	/* No TCP listener; durable by default. */
	ck_assert_int_eq(
	    query_int(conninfo, "SELECT (current_setting('listen_addresses') = '')::int"), 1);
	ck_assert_int_eq(query_int(conninfo, "SELECT (current_setting('fsync') = 'on')::int"), 1);

	snprintf(path, sizeof(path), "%s/pg", dd);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/pg/PG_VERSION", dd);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/pg.init", dd);
	ck_assert_int_ne(access(path, F_OK), 0);
	free(dd);
}
END_TEST

START_TEST(second_start_reuses_the_running_cluster)
{
	char *dd = data_dir("reuse");
	char first[1024];

	ck_assert_msg(
	    pgembed_start(dd, NULL, NULL, first, sizeof(first), err, sizeof(err)) == 0, "%s", err);
	long pid = postmaster_pid(dd);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(query_int(first, "CREATE TABLE t (x int)"), -1);

	ck_assert_msg(
	    pgembed_start(dd, NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_str_eq(conninfo, first);
	ck_assert_int_eq(postmaster_pid(dd), pid);
	ck_assert_int_eq(query_int(conninfo, "SELECT count(*) FROM t"), 0);
	free(dd);
}
END_TEST

START_TEST(stop_then_start_keeps_the_data)
{
	char *dd = data_dir("restart");

	ck_assert_msg(
	    pgembed_start(dd, NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)) == 0, "%s",
	    err);
	query_int(conninfo, "CREATE TABLE kept (x int)");
	query_int(conninfo, "INSERT INTO kept VALUES (42)");

	ck_assert_int_eq(pgembed_stop(dd, NULL, NULL), 0);
	ck_assert_int_eq(PQping(conninfo), PQPING_NO_RESPONSE);
	ck_assert_int_eq(postmaster_pid(dd), -1);
	/* Stopping a stopped cluster is fine. */
	ck_assert_int_eq(pgembed_stop(dd, NULL, NULL), 0);

	ck_assert_msg(
	    pgembed_start(dd, NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_int_eq(query_int(conninfo, "SELECT x FROM kept"), 42);
	free(dd);
}
END_TEST

/* The cluster's settings are in its configuration, not on pg_ctl's command
 * line: started by hand, it still serves only its socket in its directory. */
START_TEST(a_cluster_started_by_hand_with_pg_ctl_serves_only_its_own_socket)
{
	char *dd = data_dir("byhand");
	ck_assert_msg(
	    pgembed_start(dd, NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_int_eq(pgembed_stop(dd, NULL, NULL), 0);
	char pgdir[4200], pg_ctl[4200], log[4300];
	snprintf(pgdir, sizeof(pgdir), "%s/pg", dd);
	snprintf(log, sizeof(log), "%s/pg/byhand.log", dd); /* the cluster user can write there */
	const char *bindir = th_pg_bindir();
	ck_assert_ptr_nonnull(bindir);
	snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", bindir);
	const char *argv[] = { pg_ctl, "-D", pgdir, "-l", log, "-w", "start", NULL };
	pid_t p = th_spawn_as(argv, NULL, NULL, th_pg_user());
	int st = -1;
	ck_assert_int_eq(th_wait_exit(p, 60000, &st), 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pg_ctl start: 0x%x", st);
	/* It answers on the socket in its directory, the conninfo sagad uses. */
	ck_assert_int_eq(query_int(conninfo, "SELECT 1"), 1);
	PGconn *c = PQconnectdb(conninfo);
	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, "SELECT current_setting('listen_addresses')");
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	ck_assert_msg(
	    strcmp(PQgetvalue(r, 0, 0), "") == 0, "listen_addresses = '%s'", PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	ck_assert_int_eq(pgembed_stop(dd, NULL, NULL), 0);
	free(dd);
}
END_TEST

START_TEST(stop_without_a_cluster_is_a_no_op)
{
	char *dd = data_dir("never");
	ck_assert_int_eq(pgembed_stop(dd, NULL, NULL), 0);
	ck_assert_int_ne(access(dd, F_OK), 0); /* and creates nothing */
	free(dd);
}
END_TEST

START_TEST(bad_bindir_is_a_clear_error)
{
	char *dd = data_dir("badbin");
	ck_assert_int_eq(pgembed_start(dd, "/nonexistent/pg/bin", NULL, conninfo, sizeof(conninfo),
			     err, sizeof(err)),
	    SAGA_EINVAL);
	ck_assert_msg(
	    strstr(err, "/nonexistent/pg/bin") != NULL && strstr(err, "initdb") != NULL, "%s", err);

	/* From the environment, too: named, never silently replaced. */
	setenv("SAGAD_PG_BINDIR", "/also/missing", 1);
	ck_assert_int_ne(
	    pgembed_start(dd, NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "SAGAD_PG_BINDIR /also/missing") != NULL, "%s", err);
	unsetenv("SAGAD_PG_BINDIR");
	free(dd);
}
END_TEST

START_TEST(too_long_data_dir_is_refused_before_creating_anything)
{
	char long_dir[300];
	snprintf(long_dir, sizeof(long_dir), "%s/%0120d", root, 0);
	ck_assert_int_eq(
	    pgembed_start(long_dir, NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)),
	    SAGA_EINVAL);
	ck_assert_msg(
	    strstr(err, "too long") != NULL && strstr(err, "--data-dir") != NULL, "%s", err);
	ck_assert_int_ne(access(long_dir, F_OK), 0);
}
END_TEST

START_TEST(non_cluster_directory_in_the_way_is_refused)
{
	char *dd = data_dir("inway"), path[4200];
	snprintf(path, sizeof(path), "%s/pg", dd);
	ck_assert_int_eq(mkdir(dd, 0700), 0);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/pg/precious.txt", dd);
	ck_assert_int_eq(th_write_file(path, "x", 1), 0);
	ck_assert_int_eq(
	    pgembed_start(dd, NULL, NULL, conninfo, sizeof(conninfo), err, sizeof(err)),
	    SAGA_EINVAL);
	ck_assert_msg(strstr(err, "not a PostgreSQL data directory") != NULL, "%s", err);
	ck_assert_int_eq(access(path, F_OK), 0); /* untouched */
	free(dd);
}
END_TEST

START_TEST(root_with_missing_pg_user_is_refused)
{
	if (geteuid() != 0)
		return; /* only root switches users */
	char *dd = data_dir("nouser");
	ck_assert_int_eq(pgembed_start(dd, NULL, "sagad-no-such-user", conninfo, sizeof(conninfo),
			     err, sizeof(err)),
	    SAGA_EINVAL);
	ck_assert_msg(
	    strstr(err, "create user 'sagad-no-such-user' or set --pg-user") != NULL, "%s", err);
	free(dd);
}
END_TEST

START_TEST(small_conninfo_buffer_is_an_error_not_an_overflow)
{
	char *dd = data_dir("small");
	char tiny[16];
	ck_assert_int_eq(
	    pgembed_start(dd, NULL, NULL, tiny, sizeof(tiny), err, sizeof(err)), SAGA_EINVAL);
	ck_assert_msg(strstr(err, "too small") != NULL, "%s", err);
	free(dd);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pgembed");
	TCase *tc = tcase_create("pgembed");
	tcase_add_unchecked_fixture(tc, root_up, root_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
	    tc, start_on_relative_data_dir_creates_cluster_and_saga_db_with_working_conninfo);
	tcase_add_test(tc, second_start_reuses_the_running_cluster);
	tcase_add_test(tc, stop_then_start_keeps_the_data);
	tcase_add_test(tc, a_cluster_started_by_hand_with_pg_ctl_serves_only_its_own_socket);
	tcase_add_test(tc, stop_without_a_cluster_is_a_no_op);
	tcase_add_test(tc, bad_bindir_is_a_clear_error);
	tcase_add_test(tc, too_long_data_dir_is_refused_before_creating_anything);
	tcase_add_test(tc, non_cluster_directory_in_the_way_is_refused);
	tcase_add_test(tc, root_with_missing_pg_user_is_refused);
	tcase_add_test(tc, small_conninfo_buffer_is_an_error_not_an_overflow);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
