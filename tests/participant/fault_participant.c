/*
 * fault-participant: the participant of the fault suite (it-faults). It
 * serves participant "fault" (actions F1 F2 F3, compensations UndoF1..3)
 * through libsaga's barrier on its own database, and records what it did
 * so that the test can check invariants over everything afterwards:
 *
 *   effects(seq, saga_id, step, kind, delta)  one row per applied effect,
 *       written inside the barrier's transaction: +1 for an action, -1 for
 *       a compensation. No unique constraint: a duplicate would show.
 *   barrier_stats(instance, result)  one row per barrier verdict (ran,
 *       duplicate, null compensation, refused, database error), written
 *       after it: the fault counters.
 *
 * The saga input (text) picks a behaviour:
 *   ok        every step succeeds
 *   fail      F3 fails for good (business failure): F2, F1 compensated
 *   slow      F2's first attempt holds its transaction 1.5 s (its timeout is
 *             0.8 s): the retry meets the barrier row and is a duplicate
 *   flaky     F2 answers a retryable error on every attempt without
 *             applying anything: F2 is compensated as uncertain, and that
 *             compensation is a null one
 *   late      F2's first attempt waits 2.5 s before entering the barrier,
 *             later attempts answer retryable errors: F2 fails, its null
 *             compensation runs, and then the first attempt arrives late
 *             and is refused
 *   never     F2 never answers (its handler sleeps for an hour, outside the
 *             barrier): every attempt times out, F2 is compensated (null)
 *   crashpre  the process dies (_exit) inside F2's transaction, before it
 *             commits, the first time any replica runs it
 *   crashpost the process dies right after F2's transaction committed,
 *             before it reports, the first time any replica runs it: the
 *             redelivery meets the barrier
 * "The first time" is kept in DIR (--once-dir): a file per saga and point,
 * created with O_EXCL, so only one delivery dies and the test can count.
 *
 * usage: fault-participant --url URL --db CONNINFO --instance ID --once-dir DIR
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "saga.h"
#include "saga_barrier.h"

static const char *conninfo, *instance, *once_dir;
static saga_worker *worker;
static __thread PGconn *db;

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static PGconn *
conn(void)
{
	/* An idle connection with something to read was closed by the
	 * server (restart, pg_terminate_backend): start afresh. */
	struct pollfd pfd = { .fd = db ? PQsocket(db) : -1, .events = POLLIN };
	if (db != NULL && PQstatus(db) == CONNECTION_OK && pfd.fd >= 0 && poll(&pfd, 1, 0) == 0)
		return db;
	PQfinish(db);
	db = PQconnectdb(conninfo);
	if (PQstatus(db) != CONNECTION_OK) {
		PQfinish(db);
		db = NULL;
	}
	return db;
}

/* True the first time (over all replicas) saga s reaches point `what`. */
static int
first_time(const saga_step *s, const char *what)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s-%s", once_dir, s->saga_id, what);
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd < 0)
		return 0;
	fsync(fd);
	close(fd);
	return 1;
}

static int
input_is(const saga_step *s, const char *what)
{
	size_t n = strlen(what);
	return s->input_len == n && memcmp(s->input, what, n) == 0;
}

/* Inside the barrier: the effect and its record commit together. */
static void
apply(PGconn *c, const saga_step *s, saga_reply *r, void *user)
{
	(void)user;
	int action = s->kind == SAGA_ACTION;
	if (action && input_is(s, "fail") && strcmp(s->step, "F3") == 0) {
		saga_reply_fail(r, "F3 refuses this order");
		return;
	}
	if (action && input_is(s, "slow") && strcmp(s->step, "F2") == 0 && s->attempt == 1)
		sleep_ms(1500); /* holding the barrier row */
	const char *v[4] = { s->saga_id, s->step, action ? "1" : "2", action ? "1" : "-1" };
	PGresult *res = PQexecParams(c,
	    "INSERT INTO effects (saga_id, step, kind, delta) VALUES ($1::uuid, $2, $3::int2, "
	    "$4::int)",
	    4, NULL, v, NULL, NULL, 0);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (!ok) {
		saga_reply_retry(r, PQerrorMessage(c));
		return;
	}
	if (action && input_is(s, "crashpre") && strcmp(s->step, "F2") == 0 &&
	    first_time(s, "crashpre"))
		_exit(137); /* the effect is written, not committed */
	saga_reply_success(r, s->step, strlen(s->step));
}

static void
record(PGconn *c, saga_barrier_result br)
{
	const char *v[2] = { instance, saga_barrier_result_name(br) };
	PQclear(PQexecParams(c, "INSERT INTO barrier_stats (instance, result) VALUES ($1, $2)", 2,
	    NULL, v, NULL, NULL, 0));
}

static void
handle(const saga_step *s, saga_reply *r, void *user)
{
	(void)user;
	int f2 = strcmp(s->step, "F2") == 0 && s->kind == SAGA_ACTION;
	if (f2 && input_is(s, "flaky")) {
		saga_reply_retry(r, "F2 is flaky today");
		return;
	}
	if (f2 && input_is(s, "never"))
		sleep_ms(3600 * 1000); /* no answer, ever (outside the barrier) */
	if (f2 && input_is(s, "late")) {
		if (s->attempt > 1) {
			saga_reply_retry(r, "F2 is busy");
			return;
		}
		sleep_ms(2500); /* arrives after its own compensation */
	}
	PGconn *c = conn();
	if (c == NULL) {
		saga_reply_retry(r, "participant database unreachable");
		return;
	}
	saga_barrier_result br = saga_barrier_run(c, s, r, apply, NULL);
	if (f2 && br == SAGA_BARRIER_RAN && input_is(s, "crashpost") && first_time(s, "crashpost"))
		_exit(137); /* committed, not reported */
	record(c, br);
}

static void
on_signal(int sig)
{
	(void)sig;
	if (worker)
		saga_worker_stop(worker);
}

int
main(int argc, char **argv)
{
	const char *url = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--url") == 0)
			url = argv[i + 1];
		else if (strcmp(argv[i], "--db") == 0)
			conninfo = argv[i + 1];
		else if (strcmp(argv[i], "--instance") == 0)
			instance = argv[i + 1];
		else if (strcmp(argv[i], "--once-dir") == 0)
			once_dir = argv[i + 1];
	}
	if (url == NULL || conninfo == NULL || instance == NULL || once_dir == NULL) {
		fprintf(stderr,
		    "usage: fault-participant --url URL --db CONNINFO --instance ID "
		    "--once-dir DIR\n");
		return 2;
	}
	PGconn *c = PQconnectdb(conninfo);
	char err[512];
	if (PQstatus(c) != CONNECTION_OK || saga_barrier_migrate(c, err, sizeof(err)) != 0) {
		fprintf(stderr, "fault-participant: database: %s %s\n", PQerrorMessage(c), err);
		return 1;
	}
	PGresult *r = PQexec(c,
	    "BEGIN; SET LOCAL client_min_messages = warning;"
	    " SELECT pg_advisory_xact_lock(7002);"
	    " CREATE TABLE IF NOT EXISTS effects (seq bigserial PRIMARY KEY,"
	    "  saga_id uuid NOT NULL, step text NOT NULL, kind smallint NOT NULL,"
	    "  delta int NOT NULL);"
	    " CREATE TABLE IF NOT EXISTS barrier_stats (instance text, result text);"
	    " COMMIT");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "fault-participant: schema: %s\n", PQerrorMessage(c));
		return 1;
	}
	PQclear(r);
	PQfinish(c);

	if (saga_worker_new(url, "fault", &worker) != SAGA_OK)
		return 1;
	saga_worker_set_capacity(worker, 32);
	saga_worker_set_instance(worker, instance);
	const char *acts[] = { "F1", "F2", "F3" }, *comps[] = { "UndoF1", "UndoF2", "UndoF3" };
	for (int i = 0; i < 3; i++) {
		saga_worker_on_action(worker, acts[i], handle, NULL);
		saga_worker_on_compensation(worker, comps[i], handle, NULL);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	fprintf(stderr, "fault-participant[%s]: serving at %s\n", instance, url);
	int rv = saga_worker_run(worker);
	saga_worker_free(worker);
	return rv == SAGA_OK ? 0 : 1;
}
