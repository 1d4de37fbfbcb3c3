/* Integration tests of server/migrate.c against a real PostgreSQL (th_pg). */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "saga.h"
#include "th.h"

/* One cluster for the whole TCase, started in the (unchecked) fixture of
 * the parent process; every test works in a database of its own. */
static th_pg *pg;
static char err[1024];

static void
pg_up(void)
{
	/* Durability is not under test here. */
	th_pg_opts o = { .fsync = 0, .max_connections = 0 };
	ck_assert_int_eq(th_pg_start_opts(&pg, &o), 0);
}

static void
pg_down(void)
{
	th_pg_free(pg);
	pg = NULL;
}

static PGconn *
fresh_db(const char *name)
{
	ck_assert_int_eq(th_pg_create_db(pg, name), 0);
	PGconn *c = th_pg_connect(pg, name);
	ck_assert_ptr_nonnull(c);
	return c;
}

START_TEST(applies_all_on_empty_db_and_records_them)
{
	PGconn *c = fresh_db("m_all");
	int applied = -1;

	ck_assert_uint_gt(n_migrations, 0);
	ck_assert_msg(migrate_apply(c, &applied, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(applied, (int)n_migrations);
	ck_assert_int_eq(th_pg_query_int(pg, "m_all", "SELECT count(*) FROM schema_migrations"),
	    (long long)n_migrations);
	ck_assert_int_eq(th_pg_query_int(pg, "m_all", "SELECT max(version) FROM schema_migrations"),
	    migrations[n_migrations - 1].version);
	/* Names recorded as the files are named. */
	PGresult *r = PQexec(c, "SELECT name FROM schema_migrations ORDER BY version");
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	for (size_t i = 0; i < n_migrations; i++)
		ck_assert_str_eq(PQgetvalue(r, (int)i, 0), migrations[i].name);
	PQclear(r);
	/* 001 made the core tables. */
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_all",
		"SELECT count(*) FROM pg_tables WHERE tablename IN ('sagas', 'saga_definitions')"),
	    2);
	/* The lock is released: another session can take it at once. */
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_all", "SELECT pg_try_advisory_lock(1935763297)::int"), 1);
	PQfinish(c);
}
END_TEST

START_TEST(second_run_applies_nothing)
{
	PGconn *c = fresh_db("m_twice");
	int applied = -1;

	ck_assert_msg(migrate_apply(c, &applied, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(applied, (int)n_migrations);
	ck_assert_msg(migrate_apply(c, &applied, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(applied, 0);
	ck_assert_int_eq(th_pg_query_int(pg, "m_twice", "SELECT count(*) FROM schema_migrations"),
	    (long long)n_migrations);
	PQfinish(c);
}
END_TEST

START_TEST(later_migrations_apply_on_top_of_earlier_ones)
{
	PGconn *c = fresh_db("m_later");
	const migration v1[] = { { 1, "001_a.sql", "CREATE TABLE a (x int)" } };
	const migration v2[] = {
		{ 1, "001_a.sql", "CREATE TABLE a (x int)" },
		{ 2, "002_b.sql", "ALTER TABLE a ADD COLUMN y int; CREATE TABLE b (z int);" },
	};
	int applied = -1;

	ck_assert_msg(migrate_apply_list(c, v1, 1, &applied, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(applied, 1);
	ck_assert_msg(migrate_apply_list(c, v2, 2, &applied, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(applied, 1);
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_later",
		"SELECT count(*) FROM information_schema.columns WHERE table_name = 'a'"),
	    2);
	PQfinish(c);
}
END_TEST

/* ---- concurrency ---------------------------------------------------------- */

#define RACERS 4

/* Each migration leaves a visible trace; applied twice, 001 would fail
 * (table exists) and 002/003 would insert twice. 001 sleeps to make sure
 * the others arrive while it holds the lock. */
static const migration race_list[] = {
	{ 1, "001_ran.sql",
	    "CREATE TABLE ran (v int); INSERT INTO ran VALUES (1); "
	    "SELECT pg_sleep(0.3);" },
	{ 2, "002_two.sql", "INSERT INTO ran VALUES (2);" },
	{ 3, "003_three.sql", "INSERT INTO ran VALUES (3);" },
};

typedef struct racer {
	pthread_barrier_t *go;
	const migration *list;
	size_t n;
	const char *db;
	int rv;
	int applied;
	char err[512];
} racer;

static void *
race(void *arg)
{
	racer *r = arg;
	PGconn *c = th_pg_connect(pg, r->db);
	r->rv = -1;
	pthread_barrier_wait(r->go);
	if (c != NULL)
		r->rv = migrate_apply_list(c, r->list, r->n, &r->applied, r->err, sizeof(r->err));
	PQfinish(c);
	return NULL;
}

static void
run_racers(const char *db, const migration *list, size_t n, int *total)
{
	pthread_barrier_t go;
	pthread_t t[RACERS];
	racer r[RACERS];

	pthread_barrier_init(&go, NULL, RACERS);
	*total = 0;
	for (int i = 0; i < RACERS; i++) {
		r[i] = (racer) { .go = &go, .list = list, .n = n, .db = db };
		pthread_create(&t[i], NULL, race, &r[i]);
	}
	for (int i = 0; i < RACERS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(r[i].rv == 0, "racer %d: %d %s", i, r[i].rv, r[i].err);
		*total += r[i].applied;
	}
	pthread_barrier_destroy(&go);
}

START_TEST(concurrent_runs_apply_each_migration_exactly_once)
{
	int total;
	ck_assert_int_eq(th_pg_create_db(pg, "m_race"), 0);
	run_racers("m_race", race_list, 3, &total);
	ck_assert_int_eq(total, 3);
	ck_assert_int_eq(th_pg_query_int(pg, "m_race", "SELECT count(*) FROM ran"), 3);
	ck_assert_int_eq(th_pg_query_int(pg, "m_race", "SELECT sum(v) FROM ran"), 6);
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_race", "SELECT count(*) FROM schema_migrations"), 3);
}
END_TEST

START_TEST(concurrent_runs_of_the_real_migrations_on_an_empty_db_succeed)
{
	int total;
	/* Includes racing on CREATE TABLE schema_migrations itself. */
	ck_assert_int_eq(th_pg_create_db(pg, "m_race_real"), 0);
	run_racers("m_race_real", migrations, n_migrations, &total);
	ck_assert_int_eq(total, (int)n_migrations);
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_race_real", "SELECT count(*) FROM schema_migrations"),
	    (long long)n_migrations);
}
END_TEST

/* ---- refusals and failures -------------------------------------------------- */

START_TEST(database_with_newer_version_is_refused_naming_it)
{
	PGconn *c = fresh_db("m_newer");
	const migration newer[] = {
		{ 1, "001_a.sql", "CREATE TABLE a (x int)" },
		{ 2, "002_b.sql", "CREATE TABLE b (x int)" },
		{ 7, "007_c.sql", "CREATE TABLE c (x int)" },
	};
	const migration older[] = {
		{ 1, "001_a.sql", "CREATE TABLE a (x int)" },
		{ 2, "002_b.sql", "CREATE TABLE b (x int)" },
		{ 3, "003_d.sql", "CREATE TABLE d (x int)" },
	};
	int applied = -1;

	ck_assert_msg(migrate_apply_list(c, newer, 3, &applied, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_ne(migrate_apply_list(c, older, 3, &applied, err, sizeof(err)), 0);
	ck_assert_int_eq(applied, 0);
	ck_assert_msg(strstr(err,
			  "database schema version 7 is newer than this sagad "
			  "(knows up to 3)") != NULL,
	    "%s", err);
	/* Nothing of the older binary's pending 003 was applied. */
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_newer", "SELECT count(*) FROM pg_tables WHERE tablename = 'd'"),
	    0);
	/* The real binary refuses it too. */
	ck_assert_int_eq(
	    th_pg_exec(pg, "m_newer",
		"INSERT INTO schema_migrations (version, name) VALUES (999, '999_future.sql')"),
	    0);
	ck_assert_int_ne(migrate_apply(c, &applied, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "version 999 is newer") != NULL, "%s", err);
	PQfinish(c);
}
END_TEST

START_TEST(failing_migration_rolls_back_and_is_not_recorded)
{
	PGconn *c = fresh_db("m_fail");
	PGconn *other = th_pg_connect(pg, "m_fail");
	const migration bad[] = {
		{ 1, "001_a.sql", "CREATE TABLE a (x int)" },
		{ 2, "002_half.sql", "CREATE TABLE half (x int); INSERT INTO nosuch VALUES (1);" },
		{ 3, "003_c.sql", "CREATE TABLE c (x int)" },
	};
	const migration fixed[] = {
		{ 1, "001_a.sql", "CREATE TABLE a (x int)" },
		{ 2, "002_half.sql", "CREATE TABLE half (x int);" },
		{ 3, "003_c.sql", "CREATE TABLE c (x int)" },
	};
	int applied = -1;

	ck_assert_ptr_nonnull(other);
	ck_assert_int_eq(migrate_apply_list(c, bad, 3, &applied, err, sizeof(err)), SAGA_EDB);
	ck_assert_int_eq(applied, 1);
	ck_assert_msg(
	    strstr(err, "002_half.sql") != NULL && strstr(err, "nosuch") != NULL, "%s", err);
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_fail", "SELECT count(*) FROM schema_migrations"), 1);
	/* The half-done part of 002 is gone, and 003 never ran. */
	ck_assert_int_eq(th_pg_query_int(pg, "m_fail",
			     "SELECT count(*) FROM pg_tables WHERE tablename IN ('half', 'c')"),
	    0);
	/* The connection is usable and idle again. */
	ck_assert_int_eq(PQtransactionStatus(c), PQTRANS_IDLE);

	/* The lock was released although c stays open: another session
	 * migrates without waiting (lock_timeout turns a wait into an error). */
	PQclear(PQexec(other, "SET lock_timeout = '5s'"));
	ck_assert_msg(
	    migrate_apply_list(other, fixed, 3, &applied, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(applied, 2);
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_fail", "SELECT count(*) FROM schema_migrations"), 3);
	PQfinish(other);
	PQfinish(c);
}
END_TEST

START_TEST(migration_that_commits_itself_is_refused)
{
	PGconn *c = fresh_db("m_commit");
	const migration bad[] = { { 1, "001_c.sql", "CREATE TABLE a (x int); COMMIT;" } };
	int applied = -1;

	ck_assert_int_ne(migrate_apply_list(c, bad, 1, &applied, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "must not contain") != NULL, "%s", err);
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_commit", "SELECT count(*) FROM schema_migrations"), 0);
	PQfinish(c);
}
END_TEST

START_TEST(bad_arguments_are_refused_before_touching_the_database)
{
	PGconn *c = fresh_db("m_args");
	const migration unordered[] = {
		{ 2, "002_b.sql", "SELECT 1" },
		{ 1, "001_a.sql", "SELECT 1" },
	};
	int applied = -1;

	ck_assert_int_eq(
	    migrate_apply_list(c, unordered, 2, &applied, err, sizeof(err)), SAGA_EINVAL);
	ck_assert_int_eq(migrate_apply(NULL, &applied, err, sizeof(err)), SAGA_EDB);
	PQclear(PQexec(c, "BEGIN"));
	ck_assert_int_eq(migrate_apply(c, &applied, err, sizeof(err)), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "inside a transaction"));
	PQclear(PQexec(c, "ROLLBACK"));
	ck_assert_int_eq(
	    th_pg_query_int(pg, "m_args",
		"SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"),
	    0);
	PQfinish(c);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("migrate");
	TCase *tc = tcase_create("migrate");
	tcase_add_unchecked_fixture(tc, pg_up, pg_down);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, applies_all_on_empty_db_and_records_them);
	tcase_add_test(tc, second_run_applies_nothing);
	tcase_add_test(tc, later_migrations_apply_on_top_of_earlier_ones);
	tcase_add_test(tc, concurrent_runs_apply_each_migration_exactly_once);
	tcase_add_test(tc, concurrent_runs_of_the_real_migrations_on_an_empty_db_succeed);
	tcase_add_test(tc, database_with_newer_version_is_refused_naming_it);
	tcase_add_test(tc, failing_migration_rolls_back_and_is_not_recorded);
	tcase_add_test(tc, migration_that_commits_itself_is_refused);
	tcase_add_test(tc, bad_arguments_are_refused_before_touching_the_database);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
