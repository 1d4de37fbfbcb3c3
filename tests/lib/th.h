/*
 * th: the test harness shared by the integration tests. Prefix th_.
 *
 *  - th_pg_*: a real PostgreSQL cluster per test process (or per test) in
 *    a fresh temp directory, reachable only through a unix socket there.
 *    As root (CI), PostgreSQL runs as user `postgres`.
 *  - th_spawn & co: child processes (sagad, participants) with their
 *    output in a log file, killed with the test if the test dies.
 *  - small file and polling helpers.
 *
 * Conventions: functions returning int return 0 on success and -1 on
 * failure, after printing the reason to stderr (a test just asserts the
 * result is 0). Returned char * are malloc'd; the caller frees them.
 *
 * th_pg_stop/kill/restart/free wait for the postmaster, so they must run in
 * the process that called th_pg_start: with Check's fork mode, start a
 * cluster that a test will stop in a checked fixture or the test itself;
 * a cluster shared by a TCase (unchecked fixture) is only queried.
 *
 * Children get PR_SET_PDEATHSIG(SIGKILL), which fires when the *thread*
 * that spawned them ends: start PostgreSQL and processes from the test's
 * main thread (a Check fixture or the test function), not from a helper
 * thread that exits before the test does.
 */
#ifndef TH_H
#define TH_H

#include <libpq-fe.h>
#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- PostgreSQL ------------------------------------------------------- */

typedef struct th_pg th_pg;

typedef struct th_pg_opts {
	/* 0 = fsync=off (faster; only where durability is not under test).
	 * th_pg_start() keeps fsync on. */
	int fsync;
	/* 0 = PostgreSQL's default (100). */
	int max_connections;
	/* "" = no TCP listener (the default). Else PostgreSQL's
	 * listen_addresses (port 5432), and pg_hba trusts user saga from any
	 * IPv4 address: for a test that reaches it over TCP (it-partition). */
	char listen_addresses[64];
} th_pg_opts;

/* Creates a cluster (superuser "saga", trust auth, UTF8, C locale) in a
 * fresh temp dir and starts it with no TCP listener and its socket in that
 * dir. The first call per machine and PostgreSQL version runs initdb into
 * a cached template (/tmp/saga-test-template-<uid>-<major>); later calls
 * copy it. Finds the server programs in $SAGAD_PG_BINDIR, pg_config
 * --bindir or the highest /usr/lib/postgresql/N/bin. */
int th_pg_start(th_pg **out);
/* Where the server programs are (as above); NULL if nowhere. */
const char *th_pg_bindir(void);
/* The OS user PostgreSQL runs as (as root: postgres), NULL = ourselves. */
const char *th_pg_user(void);
int th_pg_start_opts(th_pg **out, const th_pg_opts *opts);
/* A streaming standby of primary (pg_basebackup -R), in its own temp dir
 * with its own socket, started. Make replication synchronous on the
 * primary with synchronous_standby_names; promote with pg_promote(). */
int th_pg_start_standby(th_pg *primary, th_pg **out);

/* Stops at once (like pg_ctl stop -m immediate: SIGQUIT, no checkpoint;
 * restart runs crash recovery). No-op if not running. */
int th_pg_stop(th_pg *pg);
/* SIGKILL the postmaster: the crash a fault test wants. */
int th_pg_kill(th_pg *pg);
/* Starts again on the same data (after stop or kill; stops first if
 * running). Waits until it accepts connections. */
int th_pg_restart(th_pg *pg);
/* Stops and removes everything. NULL is a no-op. */
void th_pg_free(th_pg *pg);

/* The socket (and base) directory, e.g. "/tmp/th-pg-Ab12Cd". */
const char *th_pg_dir(const th_pg *pg);
/* The postmaster's pid, or -1 when stopped. */
pid_t th_pg_pid(const th_pg *pg);
/* Freezes (SIGSTOP) or thaws (SIGCONT) the postmaster and every process
 * it started: a database that hangs without closing a connection. */
int th_pg_freeze(th_pg *pg, int frozen);

/* "host='<dir>' port=5432 dbname=<dbname> user=saga"; caller frees. */
char *th_pg_conninfo(const th_pg *pg, const char *dbname);
/* A connection to dbname, or NULL (reason printed). Caller PQfinish()es. */
PGconn *th_pg_connect(const th_pg *pg, const char *dbname);
/* Drops dbname if it exists and creates it empty. */
int th_pg_create_db(th_pg *pg, const char *dbname);
/* Runs sql (may hold several statements) in dbname on a new connection. */
int th_pg_exec(th_pg *pg, const char *dbname, const char *sql);
/* The first column of the first row of sql as an integer; TH_PG_ERR on an
 * error, no row or NULL (reason printed). */
#define TH_PG_ERR LLONG_MIN
long long th_pg_query_int(th_pg *pg, const char *dbname, const char *sql);

/* ---- processes --------------------------------------------------------- */

/* Starts argv[0] (a path, or a name looked up in PATH) with argv, the
 * current environment plus env (NULL-terminated "KEY=VALUE" entries that
 * replace same-named variables; env may be NULL), stdin /dev/null and
 * stdout+stderr appended to log_path (NULL = inherit the test's). The
 * child is SIGKILLed if the test dies. Returns its pid, or -1 if it could
 * not be started (exec failure included). */
pid_t th_spawn(const char *const argv[], const char *const env[], const char *log_path);
/* th_spawn as OS user `user` when the test runs as root (how PostgreSQL
 * is run in CI); as the test's own user otherwise or when user is NULL. */
pid_t th_spawn_as(
    const char *const argv[], const char *const env[], const char *log_path, const char *user);
int th_kill(pid_t pid, int sig);
/* Waits up to timeout_ms for pid to exit; *status (may be NULL) gets the
 * waitpid status. 0 = exited, -1 = still running (or not our child). */
int th_wait_exit(pid_t pid, int timeout_ms, int *status);
/* SIGTERM, up to 5 s to exit, then SIGKILL. Returns the waitpid status
 * (use WIFEXITED etc.), or -1. */
int th_stop(pid_t pid);
/* th_spawn + th_wait_exit; SIGKILLs it on timeout. Returns 0 and the
 * waitpid status in *status, or -1 (not started, or timed out). */
int th_run(const char *const argv[], const char *const env[], const char *log_path, int timeout_ms,
    int *status);

/* ---- files and waiting -------------------------------------------------- */

/* A new directory $TMPDIR/th-XXXXXX (or /tmp), mode 0711 so that the
 * `postgres` user can reach things inside it when tests run as root. */
char *th_tmpdir(void);
/* rm -rf. 0 if path did not exist. */
int th_rm_rf(const char *path);
/* The whole file, NUL-terminated; *len (may be NULL) without the NUL.
 * NULL if it cannot be read. */
char *th_read_file(const char *path, size_t *len);
int th_write_file(const char *path, const char *data, size_t len);
/* Polls fn(arg) (every 10 ms at first, backing off to 100 ms) until it
 * returns nonzero: 0, or -1 if timeout_ms passed first. */
int th_wait_until(int (*fn)(void *arg), void *arg, int timeout_ms);
/* Milliseconds on a monotonic clock. */
long long th_now_ms(void);

#endif
