/*
 * Integration: operating sagad. Trace context from a start to every
 * handler, the fields of sagad's log lines (logfmt and JSON), SIGHUP
 * reloading the config file, refusing root, and SIGTERM under load losing
 * nothing. Real PostgreSQL, the real sagad, real test-participant
 * processes (tests/lib/th_sagad.h).
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
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
world_args(const char *db, const char *const extra[])
{
	ths *t = ths_new_ok(pg, db);
	ths_sagad_start_ok(t, extra);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	return t;
}

/* The lines of sagad's log that mention text (a saga id). */
static size_t
log_lines_with(ths *t, const char *text, char ***out)
{
	size_t len = 0, n = 0;
	char *log = th_read_file(ths_sagad_log(t), &len), *save = NULL;
	char **v = NULL;
	ck_assert_ptr_nonnull(log);
	for (char *l = strtok_r(log, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		if (strstr(l, text) == NULL)
			continue;
		v = realloc(v, (n + 1) * sizeof(*v));
		v[n++] = strdup(l);
	}
	free(log);
	*out = v;
	return n;
}

static void
free_lines(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* "0190...-..." -> "0190..." (32 hex digits). */
static void
id_hex(const char *id, char out[33])
{
	size_t k = 0;
	for (const char *p = id; *p && k < 32; p++)
		if (*p != '-')
			out[k++] = *p;
	out[k] = '\0';
}

/* ---- trace context and log fields ---------------------------------------------- */

#define GIVEN_TRACE  "4bf92f3577b34da6a3ce929d0e0e4736"
#define GIVEN_PARENT "00f067aa0ba902b7"
#define GIVEN_TP     "00-" GIVEN_TRACE "-" GIVEN_PARENT "-01"

START_TEST(trace_context_given_at_start_reaches_every_handler_and_every_log_line)
{
	const char *const extra[] = { "--log-format", "logfmt", NULL };
	ths *t = world_args("ops_trace", extra);
	saga_start_opts o = { .traceparent = GIVEN_TP };
	char *id = NULL;
	/* C fails: actions A B C and compensations UndoB UndoA all run. */
	ck_assert_int_eq(
	    saga_client_start(ths_client(t), "ittest.Linear3", "fail=C", 6, &o, &id, NULL),
	    SAGA_OK);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	ck_assert_str_eq(info->traceparent, GIVEN_TP);

	ths_journal *j = ths_journal_read_ok(t);
	int seen = 0;
	char parents[16][17];
	for (size_t i = 0; i < j->n; i++) {
		const ths_jline *l = &j->lines[i];
		if (strcmp(l->saga_id, id) != 0)
			continue;
		/* Same trace and flags; a parent id of sagad's own, per attempt. */
		ck_assert_msg(strncmp(l->traceparent, "00-" GIVEN_TRACE "-", 36) == 0 &&
			strlen(l->traceparent) == 55 && strcmp(l->traceparent + 52, "-01") == 0,
		    "%c %s got traceparent %s", l->kind, l->rpc, l->traceparent);
		ck_assert_msg(strncmp(l->traceparent + 36, GIVEN_PARENT, 16) != 0,
		    "the handler's parent id is the caller's own span");
		ck_assert_int_lt(seen, 16);
		memcpy(parents[seen], l->traceparent + 36, 16);
		parents[seen][16] = '\0';
		for (int k = 0; k < seen; k++)
			ck_assert_msg(strcmp(parents[k], parents[seen]) != 0,
			    "two attempts share the parent id %s", parents[seen]);
		seen++;
	}
	ck_assert_int_eq(seen, 5); /* A B C UndoB UndoA */
	ths_journal_free(j);

	/* Every sagad log line about the saga carries its trace id; a line
	 * about a step names the step and its participant too. */
	char **lines;
	size_t n = log_lines_with(t, id, &lines), with_step = 0;
	ck_assert_uint_ge(n, 8); /* started, dispatches, failure, compensating, ... */
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(strstr(lines[i], " trace_id=" GIVEN_TRACE) != NULL,
		    "log line without the trace id: %s", lines[i]);
		ck_assert_msg(strncmp(lines[i], "ts=", 3) == 0 && strstr(lines[i], " level=") &&
			strstr(lines[i], " msg="),
		    "log line without ts/level/msg: %s", lines[i]);
		if (strstr(lines[i], " step=") != NULL) {
			with_step++;
			ck_assert_msg(strstr(lines[i], " participant=p") != NULL,
			    "step line without its participant: %s", lines[i]);
		}
	}
	ck_assert_uint_ge(with_step, 5);
	free_lines(lines, n);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(saga_started_without_a_trace_gets_one_named_after_it_in_json_logs)
{
	const char *const extra[] = { "--log-format", "json", NULL };
	ths *t = world_args("ops_trace_json", extra);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=json");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	char hex[33], want[80];
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	id_hex(id, hex);
	ck_assert_msg(
	    strlen(info->traceparent) == 55 && strncmp(info->traceparent + 3, hex, 32) == 0,
	    "traceparent %s does not carry the saga id %s", info->traceparent, id);

	ths_journal *j = ths_journal_read_ok(t);
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->lines[i].saga_id, id) == 0)
			ck_assert_int_eq(strncmp(j->lines[i].traceparent + 3, hex, 32), 0);
	ths_journal_free(j);

	char **lines;
	size_t n = log_lines_with(t, id, &lines);
	ck_assert_uint_ge(n, 4);
	snprintf(want, sizeof(want), "\"trace_id\":\"%s\"", hex);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(lines[i]);
		ck_assert_msg(lines[i][0] == '{' && lines[i][len - 1] == '}',
		    "not one JSON object: %s", lines[i]);
		ck_assert_msg(strncmp(lines[i], "{\"ts\":\"", 7) == 0 &&
			strstr(lines[i], "\"level\":\"") && strstr(lines[i], "\"msg\":\""),
		    "no ts/level/msg: %s", lines[i]);
		ck_assert_msg(strstr(lines[i], want) != NULL, "no trace id: %s", lines[i]);
	}
	free_lines(lines, n);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(malformed_traceparent_is_refused_saying_what_one_looks_like)
{
	static const char *const bad[] = {
		"00-" GIVEN_TRACE "-" GIVEN_PARENT,                        /* no flags */
		"00-00000000000000000000000000000000-" GIVEN_PARENT "-01", /* zero trace */
		"00-" GIVEN_TRACE "-0000000000000000-01",                  /* zero parent */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-" GIVEN_PARENT "-01", /* upper case */
		"ff-" GIVEN_TRACE "-" GIVEN_PARENT "-01",                  /* version ff */
		"00-" GIVEN_TRACE "-" GIVEN_PARENT "-01-extra",            /* 00 is exact */
		"traceparent",
	};
	ths *t = world_args("ops_trace_bad", NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		saga_start_opts o = { .traceparent = bad[i] };
		char *id = NULL;
		ck_assert_int_eq(
		    saga_client_start(ths_client(t), "ittest.Linear3", "", 0, &o, &id, NULL),
		    SAGA_EINVAL);
		ck_assert_msg(strstr(saga_client_errmsg(ths_client(t)), "W3C traceparent") != NULL,
		    "%s: %s", bad[i], saga_client_errmsg(ths_client(t)));
		ck_assert_ptr_null(id);
	}
	/* A later version's extra fields are ignored, as the spec asks. */
	saga_start_opts o = { .traceparent = "01-" GIVEN_TRACE "-" GIVEN_PARENT "-01-extra" };
	char *id = NULL;
	ck_assert_int_eq(
	    saga_client_start(ths_client(t), "ittest.Linear3", "", 0, &o, &id, NULL), SAGA_OK);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- SIGTERM under load -------------------------------------------------------- */

#define LOAD_THREADS 4
#define LOAD_MAX     4000

static struct {
	ths *t;
	atomic_bool stop;
	pthread_mutex_t mu;
	char *ids[LOAD_MAX];
	size_t n_ids;
	atomic_int refused; /* starts refused while shutting down */
	bool overflow;      /* more sagas than ids[] holds: the test is void */
} load = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Starts sagas until told to stop; keeps every id sagad acknowledged.
 * Each thread has its own client (a client is not shared by threads). */
static void *
load_main(void *arg)
{
	const char *url = arg;
	saga_client *c = NULL;
	int i = 0;
	if (saga_client_new(url, &c) != SAGA_OK)
		return NULL;
	saga_client_set_timeout(c, 3000);
	while (!atomic_load(&load.stop)) {
		char in[64], *id = NULL;
		/* B sleeps: there are always steps in flight when SIGTERM comes. */
		int n = snprintf(in, sizeof(in), "sleep=B:40;tag=%lu-%d",
		    (unsigned long)pthread_self() % 1000, i++);
		int rv = saga_client_start(c, "ittest.Linear3", in, (size_t)n, NULL, &id, NULL);
		if (rv == SAGA_OK) {
			pthread_mutex_lock(&load.mu);
			if (load.n_ids < LOAD_MAX)
				load.ids[load.n_ids++] = id;
			else
				saga_string_free(id), load.overflow = true;
			pthread_mutex_unlock(&load.mu);
			usleep(3000); /* a steady load, not a flood of thousands */
		} else {
			atomic_fetch_add(&load.refused, 1);
			usleep(20000);
		}
	}
	saga_client_free(c);
	return NULL;
}

START_TEST(sigterm_under_load_lets_in_flight_outcomes_land_and_loses_nothing)
{
	const char *const extra[] = { "--shutdown-grace-ms", "8000", NULL };
	ths *t = world_args("ops_sigterm", extra);
	pthread_t th[LOAD_THREADS];

	load.t = t;
	atomic_store(&load.stop, false);
	load.n_ids = 0;
	for (int i = 0; i < LOAD_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, load_main, (void *)ths_url(t)), 0);
	usleep(1500 * 1000);
	pthread_mutex_lock(&load.mu);
	size_t before = load.n_ids;
	pthread_mutex_unlock(&load.mu);
	ck_assert_msg(before >= 20, "only %zu sagas started under load", before);

	int st = ths_sagad_signal(t, SIGTERM);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sagad exit status %d", st);
	usleep(200 * 1000); /* starts against a stopped sagad fail */
	atomic_store(&load.stop, true);
	for (int i = 0; i < LOAD_THREADS; i++)
		pthread_join(th[i], NULL);

	fprintf(stderr, "sigterm under load: %zu sagas acknowledged, %d starts refused\n",
	    load.n_ids, atomic_load(&load.refused));
	ck_assert_msg(!load.overflow, "more than %d sagas started: raise LOAD_MAX", LOAD_MAX);
	/* It stopped dispatching, waited for what was in flight and exited. */
	size_t len = 0;
	char *log = th_read_file(ths_sagad_log(t), &len);
	ck_assert_ptr_nonnull(strstr(log, "shutting down: new sagas refused"));
	ck_assert_msg(strstr(log, "every dispatched step has its outcome recorded") != NULL,
	    "in-flight outcomes did not all land before the exit");
	free(log);

	/* Restarted, every saga it acknowledged is there and completes, and no
	 * action ran twice: the outcomes that landed during the drain were
	 * recorded, nothing was redone. */
	ths_sagad_start_ok(t, extra);
	for (size_t i = 0; i < load.n_ids; i++) {
		saga_info *info = ths_wait_final_ok(t, load.ids[i], WAIT_MS);
		ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga %s ended %s", load.ids[i],
		    saga_state_name(info->state));
		saga_info_free(info);
	}
	ths_journal *j = ths_journal_read_ok(t);
	for (size_t i = 0; i < load.n_ids; i++)
		for (const char *r = "A\0B\0C\0"; *r; r += 2)
			ck_assert_msg(ths_journal_count(j, load.ids[i], 'a', r, "ok") == 1,
			    "saga %s: action %s ran %d times", load.ids[i], r,
			    ths_journal_count(j, load.ids[i], 'a', r, "ok"));
	ths_journal_free(j);
	for (size_t i = 0; i < load.n_ids; i++)
		saga_string_free(load.ids[i]);
	ths_free(t);
}
END_TEST

/* ---- config file, SIGHUP, root -------------------------------------------------- */

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* Polls sagad's log until it holds text (timeout_ms). */
static int
log_has(ths *t, const char *text, int timeout_ms)
{
	for (int waited = 0;; waited += 50) {
		size_t len = 0;
		char *log = th_read_file(ths_sagad_log(t), &len);
		int found = log != NULL && strstr(log, text) != NULL;
		free(log);
		if (found)
			return 1;
		if (waited >= timeout_ms)
			return 0;
		usleep(50 * 1000);
	}
}

START_TEST(sighup_reloads_the_config_file_applying_live_settings_only)
{
	ths *t = ths_new_ok(pg, "ops_sighup");
	char conf[600];
	snprintf(conf, sizeof(conf), "%s/sagad.conf", ths_dir(t));
	write_text(conf, "log-level = info\nlog-format = logfmt\nreaders = 2\n");
	const char *args[] = { "--db", ths_conninfo(t), "--listen", ths_url(t), "--config", conf,
		NULL };
	ths_sagad_start_args_ok(t, args, 30000);
	ths_participant_ok(t, "main", 4, NULL);
	ths_register_sagas_ok(t);
	ck_assert(log_has(t, "settings read from", 0));

	char *quiet = ths_start_ok(t, "ittest.Linear3", "tag=quiet");
	saga_info_free(ths_wait_final_ok(t, quiet, WAIT_MS));
	char **lines;
	size_t n = log_lines_with(t, quiet, &lines);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(
		    strstr(lines[i], "level=debug") == NULL, "debug at info: %s", lines[i]);
	free_lines(lines, n);

	write_text(conf, "log-level = debug\nlog-format = logfmt\nreaders = 5\n");
	kill(ths_sagad_pid(t), SIGHUP);
	ck_assert(log_has(t, "SIGHUP: settings reloaded; applied: log_level", 5000));
	ck_assert(log_has(t, "changed but applied only at a restart: readers", 0));
	char *loud = ths_start_ok(t, "ittest.Linear3", "tag=loud");
	saga_info_free(ths_wait_final_ok(t, loud, WAIT_MS));
	size_t dbg = 0;
	n = log_lines_with(t, loud, &lines);
	for (size_t i = 0; i < n; i++)
		dbg += strstr(lines[i], "level=debug") != NULL;
	free_lines(lines, n);
	ck_assert_msg(dbg >= 3, "%zu debug lines after the reload", dbg);

	/* A broken file changes nothing; sagad goes on. */
	write_text(conf, "log-level = loud\nlog-format = logfmt\n");
	kill(ths_sagad_pid(t), SIGHUP);
	ck_assert(log_has(t, "SIGHUP: settings not reloaded, the running ones stay", 5000));
	char *after = ths_start_ok(t, "ittest.Linear3", "tag=after");
	saga_info_free(ths_wait_final_ok(t, after, WAIT_MS));
	saga_string_free(quiet);
	saga_string_free(loud);
	saga_string_free(after);
	ths_free(t);
}
END_TEST

/* SIGTERM while a register is being stored: the reader storing it uses the
 * request after the signal; sagad must finish it (or refuse it) and exit
 * 0, never crash. The failpoint makes the register last 2 s, so the signal
 * lands inside it every time. */
START_TEST(sigterm_while_a_register_is_stored_finishes_it_and_exits_cleanly)
{
	ths *t = ths_new_ok(pg, "ops_sigterm_register");
	const char *extra[] = { "--failpoints", "slow-register:2000", NULL };
	ths_sagad_start_ok(t, extra);
	char log[1024];
	snprintf(log, sizeof(log), "%s/register.log", ths_dir(t));
	const char *argv[] = { ths_env_ok("SAGACTL_BIN"), "--url", ths_url(t), "--timeout", "20000",
		"register", ths_env_ok("IT_SAGAS"), NULL };
	pid_t reg = th_spawn(argv, NULL, log);
	ck_assert_int_gt(reg, 0);
	ck_assert_msg(log_has(t, "failpoint slow-register", 10000), "the register never began");
	int st = ths_sagad_signal(t, SIGTERM);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "sagad did not exit 0 after SIGTERM during a register (status 0x%x%s)", st,
	    WIFSIGNALED(st) ? ", killed by a signal" : "");
	/* The register that had begun was finished and answered. */
	int rst = 0;
	ck_assert_int_eq(th_wait_exit(reg, 20000, &rst), 0);
	char *out = th_read_file(log, NULL);
	ck_assert_msg(WIFEXITED(rst) && WEXITSTATUS(rst) == 0,
	    "sagactl register ended with status 0x%x: %s", rst, out ? out : "");
	free(out);
	/* And it is stored: a restarted sagad runs the saga. */
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "p1", 4, NULL);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=after-register");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

typedef struct probe {
	int port;
	const char *path;
	char *reply;
	long long ms;
} probe;

static void *
probe_main(void *arg)
{
	probe *p = arg;
	p->reply = ths_http_get_timed(p->port, p->path, 5000, &p->ms);
	return NULL;
}

/* PostgreSQL frozen (SIGSTOP: connections stay open, nothing answers):
 * /readyz answers 503 at once instead of hanging, several at once starve
 * neither /healthz nor the RPC, a stalled commit is logged, and all is
 * well again once it thaws. */
START_TEST(frozen_database_gives_a_prompt_503_and_starves_neither_health_nor_rpc)
{
	th_pg *own = NULL;
	ck_assert_int_eq(th_pg_start(&own), 0);
	ths *t = ths_new_ok(own, "ops_frozen");
	int port = ths_free_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	const char *args[] = { "--http-listen", url, "--log-format", "logfmt", NULL };
	ths_sagad_start_ok(t, args);
	ths_register_sagas_ok(t);
	ths_participant_ok(t, "p1", 4, NULL);
	long long ms;
	char *r = ths_http_get_timed(port, "/readyz", 5000, &ms);
	ck_assert_msg(strncmp(r, "HTTP/1.1 200", 12) == 0, "ready before the freeze: %s", r);
	free(r);

	ck_assert_int_eq(th_pg_freeze(own, 1), 0);
	/* A start now waits for its commit, which cannot happen. */
	char slog[1024];
	snprintf(slog, sizeof(slog), "%s/start-frozen.log", ths_dir(t));
	const char *sargv[] = { ths_env_ok("SAGACTL_BIN"), "--url", ths_url(t), "--timeout",
		"60000", "start", "ittest.Linear3", "--input-raw", "tag=frozen", NULL };
	pid_t starter = th_spawn(sargv, NULL, slog);
	ck_assert_int_gt(starter, 0);
	/* Readiness turns 503 within a few seconds, every answer prompt. */
	long long t0 = th_now_ms();
	int saw_503 = 0;
	while (!saw_503) {
		probe pr[4];
		pthread_t th[4];
		for (int i = 0; i < 4; i++) {
			pr[i] = (probe) { .port = port, .path = "/readyz" };
			pthread_create(&th[i], NULL, probe_main, &pr[i]);
		}
		/* meanwhile health and an RPC that needs no database */
		r = ths_http_get_timed(port, "/healthz", 5000, &ms);
		ck_assert_msg(strncmp(r, "HTTP/1.1 200", 12) == 0 && ms < 1000,
		    "/healthz during the freeze: %lld ms: %s", ms, r);
		free(r);
		saga_participant_list *parts = NULL;
		long long t1 = th_now_ms();
		int rv = saga_client_participants(ths_client(t), &parts);
		ck_assert_msg(rv == SAGA_OK && th_now_ms() - t1 < 1000,
		    "participants during the freeze: %s, %lld ms", saga_strerror(rv),
		    th_now_ms() - t1);
		saga_participant_list_free(parts);
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			ck_assert_msg(pr[i].ms < 1000 && pr[i].reply[0] != '\0',
			    "/readyz took %lld ms during the freeze: %s", pr[i].ms, pr[i].reply);
			saw_503 |= strncmp(pr[i].reply, "HTTP/1.1 503", 12) == 0;
			free(pr[i].reply);
		}
		ck_assert_msg(th_now_ms() - t0 < 15000, "/readyz never said 503 during the freeze");
		usleep(250 * 1000);
	}
	/* The stalled commit is in the log. */
	ck_assert(log_has(t, "waiting", 15000));
	char *log = th_read_file(ths_sagad_log(t), NULL);
	ck_assert_msg(strstr(log, "PostgreSQL") != NULL && strstr(log, "commit") != NULL,
	    "no line about the stalled commit");
	free(log);

	ck_assert_int_eq(th_pg_freeze(own, 0), 0);
	int st = 0;
	ck_assert_int_eq(th_wait_exit(starter, 30000, &st), 0);
	ck_assert_msg(
	    WIFEXITED(st) && WEXITSTATUS(st) == 0, "the start made during the freeze failed");
	t0 = th_now_ms();
	for (;;) {
		r = ths_http_get_timed(port, "/readyz", 5000, &ms);
		int ok = strncmp(r, "HTTP/1.1 200", 12) == 0;
		free(r);
		if (ok)
			break;
		ck_assert_msg(th_now_ms() - t0 < 15000, "not ready again after the thaw");
		usleep(200 * 1000);
	}
	ths_free(t);
	th_pg_free(own);
}
END_TEST

/* sagad paused (SIGSTOP) while steps are in flight; their answers arrive
 * during the pause and wait in the sockets. After SIGCONT the timeouts
 * that fell due during the pause must not beat those answers: the steps
 * succeed on their first attempt and no breaker opens. */
START_TEST(a_pause_does_not_time_out_steps_whose_answers_are_waiting)
{
	ths *t = ths_new_ok(pg, "ops_pause");
	const char *args[] = { "--breaker-min-calls", "3", NULL };
	ths_sagad_start_ok(t, args);
	ths_register_sagas_ok(t);
	static const char *const names[] = { "pT", NULL };
	ths_participant_ok(t, "p1", 16, names);
	/* warm: one saga through */
	char *w = ths_start_ok(t, "ittest.Timeouty", "sleep=T:10");
	saga_info_free(ths_wait_final_ok(t, w, WAIT_MS));
	saga_string_free(w);
	char *ids[8];
	for (int i = 0; i < 8; i++)
		ids[i] = ths_start_ok(t, "ittest.Timeouty", "sleep=T:100");
	usleep(60 * 1000); /* dispatched; answered 100 ms later, while paused */
	ck_assert_int_eq(kill(ths_sagad_pid(t), SIGSTOP), 0);
	usleep(1500 * 1000); /* five times the step's 300 ms timeout */
	ck_assert_int_eq(kill(ths_sagad_pid(t), SIGCONT), 0);
	for (int i = 0; i < 8; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		const saga_step_info *st = ths_step_ok(info, "T");
		ck_assert_msg(info->state == SAGA_STATE_COMPLETED && st->attempts == 1,
		    "saga %d after the pause: %s, step T took %u attempt(s): %s", i,
		    saga_state_name(info->state), st->attempts,
		    st->last_error ? st->last_error : "");
		saga_info_free(info);
		saga_string_free(ids[i]);
	}
	char *log = th_read_file(ths_sagad_log(t), NULL);
	ck_assert_msg(strstr(log, "timed out") == NULL, "a step timed out after the pause");
	ck_assert_msg(strstr(log, "circuit breaker open") == NULL, "a breaker opened");
	free(log);
	ths_free(t);
}
END_TEST

START_TEST(root_is_refused_unless_allowed_and_print_config_documents_every_setting)
{
	char *out = NULL;
	const char *bin = ths_env_ok("SAGAD_BIN");
	char cmd[1200];
	int st;

	snprintf(cmd, sizeof(cmd), "%s print-config", bin);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t cap = 1 << 16, len = 0;
	out = calloc(1, cap);
	len = fread(out, 1, cap - 1, p);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_gt(len, 1000);
	ck_assert_ptr_nonnull(strstr(out, "\n#shutdown-grace-ms = 10000\n"));
	ck_assert_ptr_nonnull(strstr(out, "\n#allow-root = false\n"));
	free(out);

	if (geteuid() != 0) {
		fprintf(stderr, "not root: the refusal of root cannot be shown here\n");
		return;
	}
	/* As root without --allow-root: refused before touching anything. */
	snprintf(cmd, sizeof(cmd),
	    "env -u SAGAD_ALLOW_ROOT %s --data-dir /nonexistent/never 2>&1 | grep -q "
	    "'refusing to run as root'; exit ${PIPESTATUS[0]}",
	    bin);
	char *argv[] = { "bash", "-c", cmd, NULL };
	pid_t pid = fork();
	if (pid == 0) {
		execvp("bash", argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 78, "exit status %d, want 78", st);
}
END_TEST

/* ---- registers: stored once, bounded, one at a time ----------------------------- */

START_TEST(a_register_stores_its_set_once_is_bounded_and_leaves_reads_answering)
{
	ths *t = ths_new_ok(pg, "ops_register_once");
	const char *extra[] = { "--failpoints", "slow-register:1500", NULL };
	ths_sagad_start_ok(t, extra);
	char log[1024];
	snprintf(log, sizeof(log), "%s/register.log", ths_dir(t));
	const char *argv[] = { ths_env_ok("SAGACTL_BIN"), "--url", ths_url(t), "--timeout", "20000",
		"register", ths_env_ok("IT_SAGAS"), NULL };
	pid_t reg = th_spawn(argv, NULL, log);
	ck_assert_int_gt(reg, 0);
	ck_assert_msg(log_has(t, "failpoint slow-register", 10000), "the register never began");
	/* A second register meanwhile is refused at once, and reads go on. */
	size_t len = 0;
	char *set = th_read_file(ths_env_ok("IT_SAGAS"), &len);
	ck_assert_ptr_nonnull(set);
	saga_client *c = ths_client(t);
	saga_register_result *res = NULL;
	long long t0 = th_now_ms();
	ck_assert_int_eq(saga_client_register(c, set, len, &res), SAGA_EBUSY);
	ck_assert_msg(
	    strstr(saga_client_errmsg(c), "another register") != NULL, "%s", saga_client_errmsg(c));
	saga_list *l = NULL;
	saga_list_filter f = { .limit = 1 };
	ck_assert_int_eq(saga_client_list(c, &f, &l), SAGA_OK);
	saga_list_free(l);
	ck_assert_msg(th_now_ms() - t0 < 1000, "refusal and list took %lld ms", th_now_ms() - t0);
	int rst = 0;
	ck_assert_int_eq(th_wait_exit(reg, 20000, &rst), 0);
	ck_assert_msg(WIFEXITED(rst) && WEXITSTATUS(rst) == 0, "the slow register failed");
	/* The set is stored once, not once per saga it defines. */
	const char *db = "ops_register_once";
	long long defs = th_pg_query_int(pg, db, "SELECT count(*) FROM saga_definitions");
	ck_assert_msg(defs >= 5, "%lld definitions", defs);
	ck_assert_int_eq(th_pg_query_int(pg, db, "SELECT count(*) FROM saga_descriptor_sets"), 1);
	ck_assert_int_eq(
	    th_pg_query_int(
		pg, db, "SELECT count(*) FROM saga_definitions WHERE descriptor_set IS NOT NULL"),
	    0);
	ck_assert_int_eq(th_pg_query_int(pg, db,
			     "SELECT octet_length(descriptor_set) FROM saga_descriptor_sets"),
	    (long long)len);
	/* Registering it again stores nothing new. */
	ck_assert_int_eq(saga_client_register(c, set, len, &res), SAGA_OK);
	saga_register_result_free(res);
	ck_assert_int_eq(th_pg_query_int(pg, db, "SELECT count(*) FROM saga_descriptor_sets"), 1);
	free(set);
	/* A set with more sagas than one register may define is refused,
	 * saying so, and stores nothing. */
	set = th_read_file(ths_env_ok("IT_MANY_SAGAS"), &len);
	ck_assert_ptr_nonnull(set);
	ck_assert_int_eq(saga_client_register(c, set, len, &res), SAGA_EDEFINITION);
	ck_assert_msg(strstr(saga_client_errmsg(c),
			  "defines 101 sagas; one register may define at "
			  "most 100") != NULL,
	    "%s", saga_client_errmsg(c));
	ck_assert_int_eq(th_pg_query_int(pg, db, "SELECT count(*) FROM saga_definitions"), defs);
	free(set);
	/* The sagas run, their definitions read back from the one set. */
	ths_sagad_signal(t, SIGTERM);
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "p1", 4, NULL);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=after-once");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- systemd: Type=notify and the watchdog -------------------------------------- */

/* Reads one datagram from fd within ms; "" on timeout. */
static void
notify_read(int fd, int ms, char *buf, size_t len)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = recv(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
}

START_TEST(systemd_is_told_ready_once_serving_fed_by_the_watchdog_and_told_stopping)
{
	ths *t = ths_new_ok(pg, "op_notify");
	char path[256], buf[512];
	snprintf(path, sizeof(path), "%s/notify.sock", ths_dir(t));
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* As systemd sets them for a unit with Type=notify, WatchdogSec=0.6. */
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "600000", 1);
	ths_sagad_start_ok(t, NULL);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	/* READY=1 came, and only once sagad answered (the harness waits for
	 * an answer before returning, so it is already queued). */
	notify_read(fd, 2000, buf, sizeof(buf));
	ck_assert_msg(strstr(buf, "READY=1") != NULL, "first notification: '%s'", buf);
	/* Fed every half period while the engine loop runs. */
	int pings = 0;
	long long t0 = th_now_ms();
	while (th_now_ms() - t0 < 1500) {
		notify_read(fd, 1000, buf, sizeof(buf));
		pings += strcmp(buf, "WATCHDOG=1") == 0;
	}
	ck_assert_msg(pings >= 3, "%d watchdog pings in 1.5 s with a 0.6 s period", pings);
	/* A stopped sagad stops feeding it: systemd would restart it. */
	ck_assert_int_eq(kill(ths_sagad_pid(t), SIGSTOP), 0);
	notify_read(fd, 100, buf, sizeof(buf)); /* one may be on its way */
	notify_read(fd, 1200, buf, sizeof(buf));
	ck_assert_msg(buf[0] == '\0', "a stopped sagad sent '%s'", buf);
	ck_assert_int_eq(kill(ths_sagad_pid(t), SIGCONT), 0);
	/* SIGTERM: STOPPING=1 before it exits. */
	int st = ths_sagad_signal(t, SIGTERM);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x", st);
	int stopping = 0;
	for (int i = 0; i < 20 && !stopping; i++) {
		notify_read(fd, 200, buf, sizeof(buf));
		stopping = strstr(buf, "STOPPING=1") != NULL;
	}
	ck_assert_msg(stopping, "no STOPPING=1");
	close(fd);
	ths_free(t);
}
END_TEST

static Suite *
operations_suite(void)
{
	Suite *s = suite_create("operations");
	TCase *tc = tcase_create("operations");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, trace_context_given_at_start_reaches_every_handler_and_every_log_line);
	tcase_add_test(tc, saga_started_without_a_trace_gets_one_named_after_it_in_json_logs);
	tcase_add_test(tc, malformed_traceparent_is_refused_saying_what_one_looks_like);
	tcase_add_test(tc, sigterm_under_load_lets_in_flight_outcomes_land_and_loses_nothing);
	tcase_add_test(tc, sighup_reloads_the_config_file_applying_live_settings_only);
	tcase_add_test(tc, sigterm_while_a_register_is_stored_finishes_it_and_exits_cleanly);
	tcase_add_test(tc, frozen_database_gives_a_prompt_503_and_starves_neither_health_nor_rpc);
	tcase_add_test(tc, a_pause_does_not_time_out_steps_whose_answers_are_waiting);
	tcase_add_test(
	    tc, systemd_is_told_ready_once_serving_fed_by_the_watchdog_and_told_stopping);
	tcase_add_test(tc, a_register_stores_its_set_once_is_bounded_and_leaves_reads_answering);
	tcase_add_test(tc, root_is_refused_unless_allowed_and_print_config_documents_every_setting);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(operations_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
