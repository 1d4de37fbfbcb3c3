/*
 * Several sagads on one PostgreSQL (docs/SCALING.md): real sagad
 * processes sharing one database, real participants on the barrier
 * (tests/participant/fault_participant.c), which records every effect it
 * applies. The instances split the 64 shards; each saga's steps are
 * dispatched by the instance holding its shard.
 *
 * Faults: an instance killed with SIGKILL (its shards are taken over once
 * their leases expire), one paused with SIGSTOP for twice the lease and
 * resumed (it must commit and dispatch nothing more: it stops, exit 75),
 * and every instance restarted one after another under load (each hands
 * its shards over at SIGTERM). After each, every saga ends, none is lost,
 * no effect is applied twice, and every saga's final state agrees with
 * what its participants did.
 */
#define _GNU_SOURCE
#include <check.h>
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

#define N_INST  3
#define LEASE   "2000"
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

/* The cluster holding sagad's database (the shared one, or the standby
 * after a failover). */
static th_pg *saga_pg;

static long long
q(const char *db, const char *sql)
{
	long long v =
	    th_pg_query_int(saga_pg != NULL && strcmp(db, "fo") == 0 ? saga_pg : pg, db, sql);
	ck_assert_msg(v >= 0, "query failed: %s", sql);
	return v;
}

/* Every instance on the same database, with a short lease. */
static const char *const inst_args[] = { "--lease-ms", LEASE, "--breaker-failure-pct", "0", NULL };

/* Waits until the live instances hold every shard between them, each
 * between min and max shards. */
static void
wait_split_ok(const char *db, int min, int max, int timeout_ms)
{
	long long t0 = th_now_ms();
	char sql[512];
	snprintf(sql, sizeof(sql),
	    "SELECT CASE WHEN (SELECT count(*) FROM saga_shards WHERE owner IS NOT NULL AND "
	    "expires_at > now()) = 64 AND NOT EXISTS (SELECT 1 FROM saga_shards WHERE owner IS "
	    "NOT NULL GROUP BY owner HAVING count(*) < %d OR count(*) > %d) THEN 1 ELSE 0 END",
	    min, max);
	while (q(db, sql) != 1) {
		ck_assert_msg(th_now_ms() - t0 < timeout_ms,
		    "the shards were not split %d-%d between the instances within %d ms", min, max,
		    timeout_ms);
		usleep(100 * 1000);
	}
}

/* ---- participants ------------------------------------------------------------ */

typedef struct parts {
	int n;
	pid_t pid[N_INST];
	char *conninfo;
	char log[N_INST][1024];
	char url[N_INST][THS_MAX_SAGADS * 64 + 8];
	char once[1024];
} parts;

static void
part_start(parts *p, int i)
{
	char inst[16];
	snprintf(inst, sizeof(inst), "r%d", i);
	const char *argv[] = { ths_env_ok("FAULT_PARTICIPANT_BIN"), "--url", p->url[i], "--db",
		p->conninfo, "--instance", inst, "--once-dir", p->once, NULL };
	p->pid[i] = th_spawn(argv, NULL, p->log[i]);
	ck_assert_int_gt(p->pid[i], 0);
}

/* Two replicas of participant "fault", each serving every instance (given
 * the list of their URLs), on one barrier database. */
static void
parts_start(ths *t, parts *p, const char *db, int n_inst)
{
	memset(p, 0, sizeof(*p));
	p->n = 2;
	ck_assert_int_eq(th_pg_create_db(pg, db), 0);
	p->conninfo = th_pg_conninfo(pg, db);
	snprintf(p->once, sizeof(p->once), "%s/once", ths_dir(t));
	ck_assert_int_eq(mkdir(p->once, 0755), 0);
	for (int i = 0; i < p->n; i++) {
		snprintf(
		    p->log[i], sizeof(p->log[i]), "%s/fault-participant-%d.log", ths_dir(t), i);
		snprintf(p->url[i], sizeof(p->url[i]), "%s", ths_urls(t, n_inst));
		part_start(p, i);
	}
}

static void
parts_stop(parts *p)
{
	for (int i = 0; i < p->n; i++)
		th_stop(p->pid[i]);
	free(p->conninfo);
}

/* ---- load ---------------------------------------------------------------------- */

typedef struct load {
	int n;
	char **ids;
	const char **input;
} load;

/* Starts saga k through instance k % n (a start that meets a fault is
 * retried with the same idempotency key, on the next instance). */
static void
start_one(ths *t, load *l, int k, const char *input, const int *up)
{
	char key[64];
	snprintf(key, sizeof(key), "inst-%d", k);
	saga_start_opts o = { 0 };
	o.idempotency_key = key;
	long long t0 = th_now_ms();
	for (int attempt = 0;; attempt++) {
		int i = (k + attempt) % N_INST;
		if (!up[i])
			continue;
		saga_client *c = NULL;
		ck_assert_int_eq(saga_client_new(ths_sagad_n_url(t, i), &c), SAGA_OK);
		saga_client_set_timeout(c, 3000);
		int rv = saga_client_start(
		    c, "ittest.Faulty", input, strlen(input), &o, &l->ids[k], NULL);
		saga_client_free(c);
		if (rv == SAGA_OK)
			break;
		ck_assert_msg(th_now_ms() - t0 < 60000, "start %d: %s", k, saga_strerror(rv));
		usleep(100 * 1000);
	}
	l->input[k] = input;
}

/* Every saga final, none lost, no effect twice, each final state what its
 * participant did (completed: +3, compensated: 0). */
static void
check_whole(load *l, int n, const char *sagadb, const char *partdb)
{
	long long t0 = th_now_ms();
	for (;;) {
		long long open = q(sagadb, "SELECT count(*) FROM sagas WHERE state IN (1, 2)");
		if (open == 0)
			break;
		ck_assert_msg(th_now_ms() - t0 < WAIT_MS, "%lld sagas still open", open);
		usleep(200 * 1000);
	}
	ck_assert_int_eq(q(sagadb, "SELECT count(*) FROM sagas"), n);
	ck_assert_int_eq(q(sagadb, "SELECT count(*) FROM sagas WHERE state = 5"), 0);
	ck_assert_int_eq(q(partdb,
			     "SELECT count(*) FROM (SELECT 1 FROM effects GROUP BY saga_id, step, "
			     "kind HAVING count(*) > 1) d"),
	    0);
	ck_assert_int_eq(q(partdb,
			     "SELECT count(*) FROM (SELECT saga_id, sum(delta) s FROM effects"
			     " GROUP BY saga_id) x WHERE s NOT IN (0, 3)"),
	    0);
	long long completed_fx = q(partdb,
	    "SELECT count(*) FROM (SELECT saga_id FROM effects GROUP BY saga_id"
	    " HAVING sum(delta) = 3) x");
	ck_assert_int_eq(completed_fx, q(sagadb, "SELECT count(*) FROM sagas WHERE state = 3"));
	for (int k = 0; k < n; k++)
		ck_assert_ptr_nonnull(l->ids[k]);
}

static const char *
input_of(int k)
{
	return k % 5 == 3 ? "fail" : "ok";
}

/* Appends a line to an instance's log (to find what it did after). */
static void
mark(ths *t, int i, const char *what)
{
	FILE *f = fopen(ths_sagad_n_log(t, i), "a");
	if (f != NULL) {
		fprintf(f, "==== ths: %s ====\n", what);
		fclose(f);
	}
}

/* What instance i logged after the marker `what`. */
static char *
log_after(ths *t, int i, const char *what)
{
	char *log = th_read_file(ths_sagad_n_log(t, i), NULL);
	ck_assert_ptr_nonnull(log);
	char m[128];
	snprintf(m, sizeof(m), "==== ths: %s ====", what);
	char *at = strstr(log, m);
	ck_assert_msg(at != NULL, "no marker %s in the log of sagad %d", what, i);
	char *out = strdup(at + strlen(m));
	free(log);
	return out;
}

/* Milliseconds until every shard is held again by a live instance. */
static long long
takeover_ms(const char *db, long long since)
{
	while (q(db,
		   "SELECT count(*) FROM saga_shards WHERE owner IS NOT NULL AND expires_at > "
		   "now() AND owner <> 'inst1'") != 64) {
		ck_assert_msg(th_now_ms() - since < 30000, "shards not taken over within 30 s");
		usleep(50 * 1000);
	}
	return th_now_ms() - since;
}

START_TEST(three_sagads_split_the_shards_and_any_one_serves_every_request)
{
	ths *t = ths_new_ok(pg, "inst_basic");
	for (int i = 0; i < N_INST; i++)
		ths_sagad_n_start_ok(t, i, inst_args);
	wait_split_ok("inst_basic", 21, 22, 20000);
	/* Registered through one: known to all (a start on the others). */
	saga_client *c1 = NULL;
	ck_assert_int_eq(saga_client_new(ths_sagad_n_url(t, 1), &c1), SAGA_OK);
	size_t len = 0;
	char *set = th_read_file(ths_env_ok("IT_SAGAS"), &len);
	ck_assert_ptr_nonnull(set);
	saga_register_result *reg = NULL;
	ck_assert_int_eq(saga_client_register(c1, set, len, &reg), SAGA_OK);
	saga_register_result_free(reg);
	free(set);
	parts p;
	parts_start(t, &p, "inst_basic_part", N_INST);
	load l = { .n = 30 };
	l.ids = calloc(30, sizeof(char *));
	l.input = calloc(30, sizeof(char *));
	int up[N_INST] = { 1, 1, 1 };
	for (int k = 0; k < 30; k++)
		start_one(t, &l, k, input_of(k), up);
	/* Each instance answers get and wait for every saga, whichever holds
	 * it; sagas were made in the shards of the instance that took the
	 * start. */
	for (int k = 0; k < 30; k++) {
		saga_client *c = NULL;
		/* half through one instance (not always the holder), half
		 * through a client given every instance */
		ck_assert_int_eq(
		    saga_client_new(
			k % 2 ? ths_sagad_n_url(t, (k + 1) % N_INST) : ths_urls(t, N_INST), &c),
		    SAGA_OK);
		saga_info *w = NULL;
		int rv = saga_client_wait(c, l.ids[k], 30000, &w);
		ck_assert_msg(rv == SAGA_OK, "wait %d through instance %d: %s: %s", k,
		    (k + 1) % N_INST, saga_strerror(rv), saga_client_errmsg(c));
		saga_state st = w->state;
		saga_info_free(w);
		ck_assert_int_eq(st,
		    strcmp(l.input[k], "fail") == 0 ? SAGA_STATE_COMPENSATED
						    : SAGA_STATE_COMPLETED);
		saga_info *info = NULL;
		ck_assert_int_eq(saga_client_get(c, l.ids[k], &info), SAGA_OK);
		ck_assert_int_eq(info->state, st);
		saga_info_free(info);
		saga_client_free(c);
	}
	check_whole(&l, 30, "inst_basic", "inst_basic_part");
	/* A cancel sent to an instance that does not hold the saga reaches
	 * the one that does (a saga held for a while by a slow step). */
	char key[] = "inst-cancel";
	saga_start_opts o = { 0 };
	o.idempotency_key = key;
	char *id = NULL;
	ck_assert_int_eq(
	    saga_client_start(c1, "ittest.Faulty", "never", 5, &o, &id, NULL), SAGA_OK);
	long long holder = -1;
	char sql[256];
	snprintf(sql, sizeof(sql),
	    "SELECT substr(owner, 5)::int FROM saga_shards s JOIN sagas g ON g.shard = s.shard"
	    " WHERE g.id = '%s'",
	    id);
	holder = q("inst_basic", sql);
	int other = (int)(holder + 1) % N_INST;
	saga_client *co = NULL;
	ck_assert_int_eq(saga_client_new(ths_sagad_n_url(t, other), &co), SAGA_OK);
	saga_state after = SAGA_STATE_UNKNOWN;
	/* An operator action goes the same way: the holder's refusal (F1 has
	 * succeeded, nothing to retry) comes back through the database. */
	int rv = saga_client_retry_step(co, id, "F1", "test", &after);
	ck_assert_msg(rv == SAGA_ESTATE && ths_contains(saga_client_errmsg(co), "retried"),
	    "retry through instance %d (held by %lld): %s: %s", other, holder, saga_strerror(rv),
	    saga_client_errmsg(co));
	rv = saga_client_cancel(co, id, "test: cancelled through another instance", &after);
	ck_assert_msg(rv == SAGA_OK, "cancel through instance %d (held by %lld): %s: %s", other,
	    holder, saga_strerror(rv), saga_client_errmsg(co));
	saga_info *info = NULL;
	ck_assert_int_eq(saga_client_wait(co, id, 30000, &info), SAGA_OK);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	ck_assert_msg(
	    ths_contains(info->error, "cancelled through another instance"), "%s", info->error);
	saga_info_free(info);
	saga_client_free(co);
	saga_string_free(id);
	saga_client_free(c1);
	parts_stop(&p);
	for (int k = 0; k < 30; k++)
		saga_string_free(l.ids[k]);
	free(l.ids);
	free(l.input);
	ths_free(t);
}
END_TEST

START_TEST(kill_pause_and_rolling_restart_lose_nothing_and_double_nothing)
{
	ths *t = ths_new_ok(pg, "inst_faults");
	for (int i = 0; i < N_INST; i++)
		ths_sagad_n_start_ok(t, i, inst_args);
	wait_split_ok("inst_faults", 21, 22, 20000);
	ths_register_sagas_ok(t);
	parts p;
	parts_start(t, &p, "inst_faults_part", N_INST);
	int n = 0, cap = 400;
	load l = { 0 };
	l.ids = calloc((size_t)cap, sizeof(char *));
	l.input = calloc((size_t)cap, sizeof(char *));
	int up[N_INST] = { 1, 1, 1 };

	/* 1. kill -9 instance 1 under load; its shards are taken over. */
	for (int k = 0; k < 40; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	long long t_kill = th_now_ms();
	int st = ths_sagad_n_signal(t, 1, SIGKILL);
	ck_assert(WIFSIGNALED(st));
	up[1] = 0;
	for (int k = 0; k < 40; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	long long kill_takeover = takeover_ms("inst_faults", t_kill);
	check_whole(&l, n, "inst_faults", "inst_faults_part");
	fprintf(stderr, "instances: kill -9: every shard held again after %lld ms (lease %s ms)\n",
	    kill_takeover, LEASE);
	ths_sagad_n_start_ok(t, 1, inst_args);
	up[1] = 1;
	wait_split_ok("inst_faults", 21, 22, 30000);

	/* 2. SIGSTOP instance 2 for twice the lease, then SIGCONT: it must
	 * commit and dispatch nothing more, and stop (exit 75). */
	for (int k = 0; k < 40; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	ths_sagad_n_signal(t, 2, SIGSTOP);
	long long t_stop = th_now_ms();
	up[2] = 0;
	for (int k = 0; k < 40; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	/* the others take its shards over */
	long long stop_takeover = -1;
	while (q("inst_faults",
		   "SELECT count(*) FROM saga_shards WHERE owner IN ('inst0', "
		   "'inst1') AND expires_at > now()") != 64) {
		ck_assert_msg(th_now_ms() - t_stop < 30000, "no takeover of the paused instance");
		usleep(50 * 1000);
	}
	stop_takeover = th_now_ms() - t_stop;
	/* paused for twice the lease in all */
	long long rest = 2LL * atoi(LEASE) - (th_now_ms() - t_stop);
	if (rest > 0)
		usleep((useconds_t)rest * 1000);
	mark(t, 2, "SIGCONT");
	ths_sagad_n_signal(t, 2, SIGCONT);
	int est = 0;
	ck_assert_msg(ths_sagad_n_wait_exit(t, 2, 15000, &est) == 0,
	    "the paused instance went on after losing its shards");
	ck_assert_msg(WIFEXITED(est) && WEXITSTATUS(est) == 75, "it ended with status 0x%x", est);
	char *after = log_after(t, 2, "SIGCONT");
	/* A batch sent before the pause may complete after it (PostgreSQL
	 * committed it while the process was stopped, before the takeover,
	 * which its fence made wait); one begun after the resume must be
	 * refused by its fence, never committed. */
	{
		const char *first_begin = strstr(after, "writer: committing");
		const char *c = after;
		while ((c = strstr(c, "writer: committed")) != NULL) {
			ck_assert_msg(first_begin == NULL || c < first_begin,
			    "the paused instance committed a batch it began after it was "
			    "resumed:%s",
			    after);
			c++;
		}
	}
	ck_assert_msg(strstr(after, "sent on connection") == NULL,
	    "the paused instance dispatched after it was resumed:%s", after);
	ck_assert_msg(strstr(after, "lease lost") != NULL || strstr(after, "fenced") != NULL,
	    "the paused instance did not say why it stopped:%s", after);
	free(after);
	check_whole(&l, n, "inst_faults", "inst_faults_part");
	fprintf(stderr,
	    "instances: SIGSTOP: every shard held by the others after %lld ms; after SIGCONT the "
	    "paused instance committed 0 batches, sent 0 steps, and stopped (exit 75)\n",
	    stop_takeover);
	ths_sagad_n_start_ok(t, 2, inst_args);
	up[2] = 1;
	wait_split_ok("inst_faults", 21, 22, 30000);

	/* 3. Rolling restart of all three under load. */
	int restarts = 0;
	for (int i = 0; i < N_INST; i++) {
		for (int k = 0; k < 15; k++, n++)
			start_one(t, &l, n, input_of(n), up);
		st = ths_sagad_n_signal(t, i, SIGTERM);
		ck_assert_msg(
		    WIFEXITED(st) && WEXITSTATUS(st) == 0, "sagad %d: status 0x%x", i, st);
		up[i] = 0;
		for (int k = 0; k < 15; k++, n++)
			start_one(t, &l, n, input_of(n), up);
		ths_sagad_n_start_ok(t, i, inst_args);
		up[i] = 1;
		restarts++;
		for (int k = 0; k < 10; k++, n++)
			start_one(t, &l, n, input_of(n), up);
	}
	check_whole(&l, n, "inst_faults", "inst_faults_part");
	long long dups =
	    q("inst_faults_part", "SELECT count(*) FROM barrier_stats WHERE result = 'duplicate'");
	fprintf(stderr,
	    "instances: %d sagas (%lld completed, %lld compensated) through 1 kill -9, 1 "
	    "SIGSTOP/SIGCONT and %d restarts; 0 lost, 0 effects doubled, %lld duplicate "
	    "deliveries suppressed by the barrier\n",
	    n, q("inst_faults", "SELECT count(*) FROM sagas WHERE state = 3"),
	    q("inst_faults", "SELECT count(*) FROM sagas WHERE state = 4"), restarts, dups);
	parts_stop(&p);
	for (int k = 0; k < n; k++)
		saga_string_free(l.ids[k]);
	free(l.ids);
	free(l.input);
	ths_free(t);
}
END_TEST

START_TEST(two_sagads_started_by_mistake_with_default_settings_keep_every_saga_consistent)
{
	/* Two sagads on one database with nothing set but the database (as
	 * someone copying a single-instance setup twice would): they are not
	 * told of each other. */
	ths *t = ths_new_ok(pg, "inst_mistake");
	ths_sagad_start_ok(t, NULL);
	ths_register_sagas_ok(t);
	parts p;
	parts_start(t, &p, "inst_mistake_part", 2);
	load l = { 0 };
	int n = 0;
	l.ids = calloc(120, sizeof(char *));
	l.input = calloc(120, sizeof(char *));
	int up[N_INST] = { 1, 0, 0 };
	for (int k = 0; k < 40; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	/* The second, started with the same flags but its own address. */
	const char *argv[] = { ths_env_ok("SAGAD_BIN"), "--allow-root", "--db", ths_conninfo(t),
		"--listen", ths_sagad_n_url(t, 1), "--log-level", "debug", NULL };
	char log2[1024];
	snprintf(log2, sizeof(log2), "%s/sagad-second.log", ths_dir(t));
	pid_t second = th_spawn(argv, NULL, log2);
	ck_assert_int_gt(second, 0);
	up[1] = 1;
	for (int k = 0; k < 80; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	check_whole(&l, n, "inst_mistake", "inst_mistake_part");
	/* Both took part. */
	ck_assert_int_eq(q("inst_mistake", "SELECT count(DISTINCT owner) FROM saga_shards"), 2);
	th_stop(second);
	parts_stop(&p);
	for (int k = 0; k < n; k++)
		saga_string_free(l.ids[k]);
	free(l.ids);
	free(l.input);
	ths_free(t);
}
END_TEST

/* PostgreSQL's own failover: a primary with a synchronous standby; sagad
 * is given both hosts (target_session_attrs=read-write). The primary is
 * killed under load and the standby promoted: sagad follows, and every
 * saga it acknowledged is there and ends. */
START_TEST(failover_to_a_promoted_synchronous_standby_loses_no_acknowledged_saga)
{
	th_pg *primary = NULL, *standby = NULL;
	ck_assert_int_eq(th_pg_start(&primary), 0);
	ck_assert_int_eq(th_pg_create_db(primary, "fo"), 0);
	ck_assert_int_eq(th_pg_start_standby(primary, &standby), 0);
	/* Set after the base backup, so that the standby, once promoted, does
	 * not wait for a standby of its own. */
	ck_assert_int_eq(
	    th_pg_exec(primary, "postgres", "ALTER SYSTEM SET synchronous_standby_names = '*'"), 0);
	ck_assert_int_eq(th_pg_exec(primary, "postgres", "SELECT pg_reload_conf()"), 0);
	long long t0 = th_now_ms();
	while (th_pg_query_int(primary, "postgres",
		   "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") != 1) {
		ck_assert_msg(th_now_ms() - t0 < 30000, "the standby never became synchronous");
		usleep(100 * 1000);
	}
	char ci[1200];
	snprintf(ci, sizeof(ci),
	    "host=%s,%s port=5432,5432 dbname=fo user=saga target_session_attrs=read-write "
	    "connect_timeout=3",
	    th_pg_dir(primary), th_pg_dir(standby));
	saga_pg = primary;
	ths *t = ths_new_ok(NULL, "fo");
	ths_set_conninfo(t, ci);
	ths_sagad_n_start_ok(t, 0, inst_args);
	ths_register_sagas_ok(t);
	parts p;
	parts_start(t, &p, "fo_part", 1);
	load l = { 0 };
	int n = 0;
	l.ids = calloc(120, sizeof(char *));
	l.input = calloc(120, sizeof(char *));
	int up[N_INST] = { 1, 0, 0 };
	for (int k = 0; k < 50; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	/* The primary dies; the standby takes its place. */
	long long t_fail = th_now_ms();
	ck_assert_int_eq(th_pg_kill(primary), 0);
	ck_assert_int_eq(th_pg_exec(standby, "postgres", "SELECT pg_promote()"), 0);
	saga_pg = standby;
	start_one(t, &l, n, input_of(n), up);
	n++;
	long long first_after = th_now_ms() - t_fail;
	for (int k = 1; k < 50; k++, n++)
		start_one(t, &l, n, input_of(n), up);
	check_whole(&l, n, "fo", "fo_part");
	/* every acknowledged saga is in the promoted standby */
	char sql[8192];
	size_t a = (size_t)snprintf(sql, sizeof(sql), "SELECT count(*) FROM sagas WHERE id IN (");
	for (int k = 0; k < n && a < sizeof(sql) - 64; k++)
		a += (size_t)snprintf(sql + a, sizeof(sql) - a, "%s'%s'", k ? "," : "", l.ids[k]);
	snprintf(sql + a, sizeof(sql) - a, ")");
	ck_assert_int_eq(q("fo", sql), n);
	fprintf(stderr,
	    "instances: failover: primary killed and standby promoted under load; sagad "
	    "acknowledged its next start %lld ms after the kill; %d of %d acknowledged sagas "
	    "found and final on the standby\n",
	    first_after, n, n);
	parts_stop(&p);
	for (int k = 0; k < n; k++)
		saga_string_free(l.ids[k]);
	free(l.ids);
	free(l.input);
	ths_free(t);
	saga_pg = NULL;
	th_pg_free(standby);
	th_pg_free(primary);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("instances");
	TCase *tc = tcase_create("instances");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, three_sagads_split_the_shards_and_any_one_serves_every_request);
	tcase_add_test(tc, kill_pause_and_rolling_restart_lose_nothing_and_double_nothing);
	tcase_add_test(
	    tc, two_sagads_started_by_mistake_with_default_settings_keep_every_saga_consistent);
	tcase_add_test(tc, failover_to_a_promoted_synchronous_standby_loses_no_acknowledged_saga);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
