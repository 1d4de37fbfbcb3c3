/*
 * The fault suite: real sagad, real PostgreSQL, two replicas of a real
 * participant (tests/participant/fault_participant.c) that applies every
 * step through libsaga's barrier in its own database and records each
 * effect. While sagas run, faults are injected:
 *
 *   - sagad killed with SIGKILL mid-flight, and started again;
 *   - a participant replica killed with SIGKILL mid-step, and started again;
 *   - every sagad connection to PostgreSQL killed (pg_terminate_backend);
 *   - PostgreSQL stopped with -m immediate under load, and started again;
 *   - timeouts with late answers (input "slow"), attempts that apply nothing
 *     (input "flaky"), an attempt arriving after its own compensation
 *     (input "late"), a step that never answers (input "never"), the
 *     participant dying inside a step's transaction (input "crashpre") and
 *     after its commit, before its report (input "crashpost"), besides
 *     business failures (input "fail").
 *
 * Then invariants are checked over every saga and every effect:
 *   1. every started saga reached a final state (completed or compensated:
 *      nothing here should park);
 *   2. no effect was applied twice (at most one row per saga, step, kind);
 *   3. a completed saga has +1 per step, a compensated one a net effect of
 *      zero; a "fail" or "flaky" saga compensated, an "ok" one completed
 *      unless a fault it names outlasted its retries;
 *   4. compensations ran newest first (reverse order of the actions).
 * sagad also kills itself at chosen points (server/failpoint.h: between a
 * commit and its dispatch, after a dispatch, between a report and its
 * commit, mid-compensation) and sends every 7th step twice.
 * And the faults are shown to have fired (duplicates suppressed, null
 * compensations, refused late actions, the kills), so the test cannot
 * pass by luck.
 *
 * FAULTS_SAGAS (default 120) sets the number of sagas: the soak is
 *   FAULTS_SAGAS=2000 meson test -C build it-faults -v
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

/* Started inside the test, not in a fixture: the test stops PostgreSQL and
 * starts it again, which needs the postmaster to be its own child. */
static th_pg *pg;

typedef struct parts {
	pid_t pid[2];
	char *conninfo;
	const char *url;
	char log[2][1024];
	char once[1024]; /* where crashpre/crashpost mark their one death */
	int crash_restarts;
} parts;

static void
part_start(parts *p, int i)
{
	char inst[16];
	snprintf(inst, sizeof(inst), "r%d", i);
	const char *argv[] = { ths_env_ok("FAULT_PARTICIPANT_BIN"), "--url", p->url, "--db",
		p->conninfo, "--instance", inst, "--once-dir", p->once, NULL };
	p->pid[i] = th_spawn(argv, NULL, p->log[i]);
	ck_assert_int_gt(p->pid[i], 0);
}

/* A replica that died by itself (crashpre, crashpost) is started again. */
static void
revive(parts *p)
{
	for (int i = 0; i < 2; i++) {
		if (th_wait_exit(p->pid[i], 0, NULL) == 0) {
			part_start(p, i);
			p->crash_restarts++;
		}
	}
}

/* Files in dir whose name ends with suffix. */
static int
count_suffix(const char *dir, const char *suffix)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -c -- '%s$'", dir, suffix);
	FILE *f = popen(cmd, "r");
	int n = 0;
	if (f != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = 0;
		pclose(f);
	}
	return n;
}

/* Gives an armed sagad up to ms to reach its kill point, keeping the
 * replicas alive meanwhile (a crashpre/crashpost death must not stall the
 * sagas that would take it there). 0 if it died there. */
static int
wait_for_kill_point(ths *t, parts *p, int ms)
{
	for (long long until = th_now_ms() + ms; th_now_ms() < until;) {
		if (ths_sagad_wait_exit(t, 100, NULL) == 0)
			return 0;
		revive(p);
	}
	return -1;
}

static const char *
input_of(int i)
{
	if (i == 19)
		return "never";
	if (i % 40 == 21)
		return "crashpre";
	if (i % 40 == 23)
		return "crashpost";
	if (i % 10 == 3)
		return "fail";
	if (i % 10 == 5)
		return "slow";
	if (i % 20 == 7)
		return "flaky";
	if (i % 40 == 9 || i % 40 == 39) /* 159: after the faults of a CI run */
		return "late";
	return "ok";
}

static long long
q(const char *db, const char *sql)
{
	long long v = th_pg_query_int(pg, db, sql);
	ck_assert_msg(v >= 0, "query failed: %s", sql);
	return v;
}

START_TEST(every_saga_ends_once_and_whole_under_crashes_kills_and_duplicates)
{
	const char *env_n = getenv("FAULTS_SAGAS");
	int n = env_n && atoi(env_n) > 0 ? atoi(env_n) : 160;
	ck_assert_msg(th_pg_start(&pg) == 0, "cannot start PostgreSQL");
	ths *t = ths_new_ok(pg, "faults_sagad");
	/* The breaker (tested on its own) would hold retries back and change
	 * which of the timed faults below fire. */
	/* dup-dispatch:7 also sends every 7th step twice, as a resend would. */
	const char *sagad_args[] = { "--breaker-failure-pct", "0", "--failpoints", "dup-dispatch:7",
		NULL };
	ths_sagad_start_ok(t, sagad_args);
	ths_register_sagas_ok(t);
	ck_assert_int_eq(th_pg_create_db(pg, "faults_part"), 0);
	parts p = { .conninfo = th_pg_conninfo(pg, "faults_part"), .url = ths_url(t) };
	snprintf(p.once, sizeof(p.once), "%s/once", ths_dir(t));
	ck_assert_int_eq(mkdir(p.once, 0755), 0);
	for (int i = 0; i < 2; i++) {
		snprintf(p.log[i], sizeof(p.log[i]), "%s/fault-participant-%d.log", ths_dir(t), i);
		part_start(&p, i);
	}

	char **ids = calloc((size_t)n, sizeof(*ids));
	int sagad_kills = 0, part_kills = 0, terminations = 0, pg_crashes = 0, self_kills = 0;
	/* sagad killing itself at chosen points (server/failpoint.h) */
	static const char *const points[] = { "after-commit:4", "after-dispatch:4",
		"before-report-commit:4", "mid-compensation:1" };
	int armed = 0, n_arms = 0; /* sagad runs with a kill point set */
	for (int i = 0; i < n; i++) {
		const char *in = input_of(i);
		saga_client *c = ths_client(t);
		int rv;
		revive(&p);
		if (armed && ths_sagad_wait_exit(t, 0, NULL) == 0) {
			/* it reached its point and died: bring it back */
			ths_sagad_start_ok(t, sagad_args);
			armed = 0;
			self_kills++;
		}
		/* Starts during a fault may fail; they are retried with the same
		 * idempotency key, so each saga is started exactly once. */
		char key[64];
		snprintf(key, sizeof(key), "fault-%d", i);
		saga_start_opts o = { 0 };
		o.idempotency_key = key;
		long long t0 = th_now_ms();
		while ((rv = saga_client_start(
			    c, "ittest.Faulty", in, strlen(in), &o, &ids[i], NULL)) != SAGA_OK) {
			ck_assert_msg(th_now_ms() - t0 < 60000, "start %d: %s: %s", i,
			    saga_strerror(rv), saga_client_errmsg(c));
			if (armed && ths_sagad_wait_exit(t, 0, NULL) == 0) {
				ths_sagad_start_ok(t, sagad_args); /* died at its point */
				armed = 0;
				self_kills++;
			}
			usleep(100 * 1000);
		}
		/* Every 20 sagas the next fault of a cycle of 8, every other one
		 * a kill point (they rotate): a CI run (160 sagas) gets each fault
		 * and each of the 4 kill points once, a soak run many times. */
		static const int cycle[8] = { 1, 4, 1, 0, 1, 2, 1, 3 };
		int fault = i % 20 == 19 ? cycle[(i / 20) % 8] : -1;
		if (fault >= 0 && armed) {
			/* died at its point since the last look, or never got there
			 * (then stopped the hard way) */
			if (wait_for_kill_point(t, &p, 10000) == 0)
				self_kills++;
			else
				ths_sagad_signal(t, SIGKILL);
			ths_sagad_start_ok(t, sagad_args);
			armed = 0;
		}
		if (fault == 1) { /* sagad will die by itself at a chosen point */
			const char *fp_args[] = { "--breaker-failure-pct", "0", "--failpoints",
				points[n_arms++ % 4], NULL };
			ths_sagad_signal(t, SIGKILL);
			ths_sagad_start_nowait(t, fp_args); /* may die before it answers */
			armed = 1;
			continue;
		}
		if (fault == 0) { /* sagad dies mid-flight */
			int st = ths_sagad_signal(t, SIGKILL);
			ck_assert(WIFSIGNALED(st));
			ths_sagad_start_ok(t, sagad_args);
			sagad_kills++;
		} else if (fault == 2) { /* a replica dies mid-step */
			ck_assert_int_eq(th_kill(p.pid[0], SIGKILL), 0);
			th_wait_exit(p.pid[0], 5000, NULL);
			part_start(&p, 0);
			part_kills++;
		} else if (fault == 3) { /* sagad's database connections die */
			long long k = q("postgres",
			    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
			    "WHERE application_name LIKE 'sagad%'");
			ck_assert_int_gt(k, 0);
			terminations += (int)k;
		} else if (fault == 4) {                     /* PostgreSQL crashes under load */
			ck_assert_int_eq(th_pg_stop(pg), 0); /* -m immediate */
			usleep(300 * 1000);
			ck_assert_int_eq(th_pg_restart(pg), 0);
			pg_crashes++;
		}
	}

	if (armed && wait_for_kill_point(t, &p, 10000) == 0)
		self_kills++;
	if (armed)
		ths_sagad_start_ok(t, sagad_args);

	/* 1. every saga final */
	long long t0 = th_now_ms();
	for (;;) {
		long long open =
		    q("faults_sagad", "SELECT count(*) FROM sagas WHERE state IN (1, 2)");
		if (open == 0)
			break;
		revive(&p);
		ck_assert_msg(th_now_ms() - t0 < 120000, "%lld sagas still open", open);
		usleep(200 * 1000);
	}
	ck_assert_int_eq(q("faults_sagad", "SELECT count(*) FROM sagas"), n);
	ck_assert_int_eq(q("faults_sagad", "SELECT count(*) FROM sagas WHERE state = 5"), 0);

	/* 3. each saga's state is what its input asked for */
	saga_client *c = ths_client(t);
	for (int i = 0; i < n; i++) {
		saga_info *info = NULL;
		int rv = saga_client_get(c, ids[i], &info);
		ck_assert_msg(
		    rv == SAGA_OK, "get %d: %s: %s", i, saga_strerror(rv), saga_client_errmsg(c));
		const char *in = input_of(i);
		/* "slow" and "late" race a late first attempt against the retries:
		 * under load either may win, and either ending is whole (checked
		 * below from the effects). The others have one right ending. */
		if (strcmp(in, "fail") == 0 || strcmp(in, "flaky") == 0 || strcmp(in, "never") == 0)
			ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga %d (%s) is %s",
			    i, in, saga_state_name(info->state));
		/* An "ok" saga completes, unless a fault outlasted a step's retry
		 * budget (4 attempts in under a second): a database crash or a
		 * timeout, which its error must then name. */
		if ((strcmp(in, "ok") == 0 || strncmp(in, "crash", 5) == 0) &&
		    info->state != SAGA_STATE_COMPLETED)
			ck_assert_msg(info->state == SAGA_STATE_COMPENSATED &&
				(ths_contains(info->error, "database unreachable") ||
				    ths_contains(info->error, "timed out")),
			    "saga %d (ok) is %s: %s", i, saga_state_name(info->state), info->error);
		saga_info_free(info);
	}

	/* 2. no effect twice */
	ck_assert_int_eq(
	    q("faults_part",
		"SELECT count(*) FROM (SELECT 1 FROM effects GROUP BY saga_id, step, kind"
		" HAVING count(*) > 1) d"),
	    0);
	/* 3. net effects: completed +3, compensated 0 */
	ck_assert_int_eq(q("faults_part",
			     "SELECT count(*) FROM (SELECT saga_id, sum(delta) s FROM effects"
			     " GROUP BY saga_id) x WHERE s NOT IN (0, 3)"),
	    0);
	long long completed_w = q("faults_part",
	    "SELECT count(*) FROM (SELECT saga_id FROM effects GROUP BY saga_id"
	    " HAVING sum(delta) = 3) x");
	ck_assert_int_eq(
	    completed_w, q("faults_sagad", "SELECT count(*) FROM sagas WHERE state = 3"));
	/* 4. compensations newest first: for every saga, each undo comes after
	 * every action, and undo order is the reverse of action order. */
	ck_assert_int_eq(q("faults_part",
			     "SELECT count(*) FROM effects a JOIN effects b USING (saga_id)"
			     " WHERE a.kind = 1 AND b.kind = 1 AND a.seq < b.seq AND EXISTS ("
			     "  SELECT 1 FROM effects ua, effects ub WHERE ua.saga_id = a.saga_id"
			     "  AND ub.saga_id = a.saga_id AND ua.kind = 2 AND ub.kind = 2"
			     "  AND ua.step = a.step AND ub.step = b.step AND ua.seq < ub.seq)"),
	    0);
	ck_assert_int_eq(q("faults_part",
			     "SELECT count(*) FROM effects u JOIN effects a USING (saga_id)"
			     " WHERE u.kind = 2 AND a.kind = 1 AND u.seq < a.seq"),
	    0);

	/* The faults fired. A "late" first attempt wakes 2.5 s after its start,
	 * after its saga is compensated: wait for the refusals (a late attempt
	 * sleeping through a replica kill or a database crash gives none, but
	 * the last saga, started after every fault, always does). */
	t0 = th_now_ms();
	while (
	    q("faults_part", "SELECT count(*) FROM barrier_stats WHERE result = 'refused'") == 0 &&
	    th_now_ms() - t0 < 15000)
		usleep(100 * 1000);
	/* which kill points fired, from sagad's log */
	char *slog = th_read_file(ths_sagad_log(t), NULL);
	int fired[4] = { 0 };
	for (int k = 0; k < 4; k++) {
		char pat[64];
		snprintf(pat, sizeof(pat), "failpoint %.*s reached", (int)strcspn(points[k], ":"),
		    points[k]);
		for (const char *at = slog; at && (at = strstr(at, pat)) != NULL; at++)
			fired[k]++;
	}
	free(slog);
	long long dups =
	    q("faults_part", "SELECT count(*) FROM barrier_stats WHERE result = 'duplicate'");
	long long nulls = q(
	    "faults_part", "SELECT count(*) FROM barrier_stats WHERE result = 'null compensation'");
	long long refused =
	    q("faults_part", "SELECT count(*) FROM barrier_stats WHERE result = 'refused'");
	long long compensated = q("faults_sagad", "SELECT count(*) FROM sagas WHERE state = 4");
	fprintf(stderr,
	    "faults: %d sagas (%lld completed, %lld compensated); sagad killed %d, sagad died at "
	    "a failpoint %d (after-commit %d, after-dispatch %d, before-report-commit %d, "
	    "mid-compensation %d), participant killed %d, %d database connections terminated, "
	    "PostgreSQL crashed %d; barrier: %lld duplicates suppressed, %lld null compensations, "
	    "%lld late actions refused\n",
	    n, completed_w, compensated, sagad_kills, self_kills, fired[0], fired[1], fired[2],
	    fired[3], part_kills, terminations, pg_crashes, dups, nulls, refused);
	int died_pre = count_suffix(p.once, "-crashpre"),
	    died_post = count_suffix(p.once, "-crashpost");
	fprintf(stderr,
	    "faults: participant died by itself %d times: %d inside a step's transaction, %d "
	    "after its commit and before its report\n",
	    p.crash_restarts, died_pre, died_post);
	ck_assert_int_gt(died_pre, 0);
	ck_assert_int_gt(died_post, 0);
	ck_assert_int_gt(dups, 0);
	ck_assert_int_gt(nulls, 0);
	ck_assert_int_gt(refused, 0);
	ck_assert_int_ge(sagad_kills, 1);
	ck_assert_int_ge(part_kills, 1);
	ck_assert_int_ge(pg_crashes, 1);
	ck_assert_int_ge(self_kills, 1);
	for (int k = 0; k < 4 && n >= 160; k++) /* each kill point was armed at least once */
		ck_assert_msg(fired[k] >= 1, "kill point %s never fired", points[k]);
	ck_assert_int_eq(fired[0] + fired[1] + fired[2] + fired[3], self_kills);
	ck_assert_int_gt(terminations, 0);

	for (int i = 0; i < 2; i++)
		th_stop(p.pid[i]);
	for (int i = 0; i < n; i++)
		saga_string_free(ids[i]);
	free(ids);
	free(p.conninfo);
	ths_free(t);
	th_pg_free(pg);
	pg = NULL;
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("faults");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, every_saga_ends_once_and_whole_under_crashes_kills_and_duplicates);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
