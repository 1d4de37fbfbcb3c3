/*
 * sagabench: the benchmark of sagad. See docs/PERFORMANCE.md.
 *
 * One run needs nothing set up first. It starts its own PostgreSQL cluster
 * (durable: fsync and synchronous_commit on, otherwise defaults), measures
 * PostgreSQL's own rate with pgbench (the reference), then for every
 * scenario and concurrency C starts a fresh database, sagad and
 * bench-participant processes, drives sagas in a closed loop from C
 * threads (start, then wait for the final state), and prints one table of
 * the results beside the reference. The in-flight scenario parks N sagas
 * on a slow participant, measures sagad's memory, kills sagad with
 * SIGKILL, restarts it and measures how soon dispatch resumes and how long
 * the backlog takes to drain.
 *
 * Everything is bounded in time; every process it starts dies with it
 * (th_spawn: PR_SET_PDEATHSIG) and is stopped on every exit path,
 * SIGINT/SIGTERM included. The exit status says only whether every saga
 * ran as expected (0) or not (1), never whether a target was met; 2 is bad
 * usage, 130 an interrupt.
 *
 * The harness (tests/lib/th_pg.c, th_proc.c, th_fs.c) is compiled in.
 * Programs come from paths meson compiles in (-D), overridable with the
 * environment: SAGAD_BIN, BENCH_PARTICIPANT_BIN, BENCH_BINPB,
 * BENCH_PGBENCH_SCRIPT, and for --participant node NODE_BIN (default: node
 * on PATH), BENCH_NODE_PARTICIPANT (bench-participant.js) and
 * SAGA_NODE_ADDON (the addon it loads), BENCH_NODE_PRELOAD (LD_PRELOAD for
 * node alone: the sanitizer runtimes of a sanitizer build); PostgreSQL's programs as th_pg finds them
 * ($SAGAD_PG_BINDIR, pg_config --bindir, /usr/lib/postgresql/N/bin).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "saga.h"
#include "th.h"

#ifndef BENCH_SAGAD
#define BENCH_SAGAD "sagad"
#endif
#ifndef BENCH_PARTICIPANT
#define BENCH_PARTICIPANT "bench-participant"
#endif
#ifndef BENCH_BINPB
#define BENCH_BINPB "bench.binpb"
#endif
#ifndef BENCH_PGBENCH_SCRIPT
#define BENCH_PGBENCH_SCRIPT "pgbench_ref.sql"
#endif
#ifndef BENCH_NODE_PARTICIPANT
#define BENCH_NODE_PARTICIPANT "bench-participant.js"
#endif
#ifndef BENCH_NODE_ADDON
#define BENCH_NODE_ADDON "" /* not built: SAGA_NODE_ADDON must name one */
#endif

#define MAX_CONC        16
#define MAX_RUNS        64
#define MAX_PARTS       8
#define MAX_THREADS     1024
#define WAIT_MS         60000 /* one saga's wait; far above any sane latency */
#define READY_MS        60000 /* sagad answering after a start */
#define FLAG_FAIL_LAST  1u
#define FLAG_ECHO       2u
#define PG_REF_DB       "benchref"
#define PGBENCH_CLIENTS 64

/* ---- scenarios ------------------------------------------------------------ */

typedef struct scen {
	const char *name;
	const char *definition;
	const char *participants; /* comma-separated names served */
	const char *fail_on;      /* action that fails for FAIL_LAST sagas */
	unsigned fail_every;      /* every n-th saga fails at the last step; 0 = none */
	size_t input_bytes;       /* saga input size (bench.Input encoding) */
	unsigned flags;           /* flags in every input */
	const char *what;
} scen;

static const scen scenarios[] = {
	{ "3step", "bench.Three", "p1,p2,p3", NULL, 0, 16, 0, "3 steps in a row" },
	{ "10step", "bench.Ten", "p1,p2,p3,p4,p5,p6,p7,p8,p9,p10", NULL, 0, 16, 0,
	    "10 steps in a row" },
	{ "comp10", "bench.Three", "p1,p2,p3", "S3", 10, 16, 0,
	    "3 steps, 10% fail at S3 and compensate S2, S1" },
	{ "payload10k", "bench.Three", "p1,p2,p3", NULL, 0, 10240, FLAG_ECHO,
	    "3 steps, 10 KiB input and 10 KiB result per step" },
	{ "parallel3", "bench.Par3", "p1,p2,p3,p4", NULL, 0, 16, 0,
	    "3 parallel branches, then a join" },
};
#define N_SCEN (sizeof(scenarios) / sizeof(scenarios[0]))

/* ---- options ------------------------------------------------------------- */

static struct {
	double duration, warmup;
	int conc[MAX_CONC];
	size_t n_conc;
	int want[N_SCEN];
	int want_inflight;
	int pgbench_seconds;
	int quick, keep, verbose;
	const char *out;
	long inflight;
	int inflight_starters;
	int inflight_timeout_s;
	int part_procs;
	int instances; /* sagads on the one database (docs/SCALING.md) */
	unsigned capacity;
	const char *sagad_args[32];
	size_t n_sagad_args;
	const char *tls_dir; /* --tls: ca.pem, sagad.pem/.key, client.pem/.key; NULL = off */
	int auth;            /* --auth: sagad with --auth on, everyone with credentials */
	int node;            /* --participant node: bench-participant.js, not the C one */
} O;

/* --tls: the file DIR/name, in one of 8 static buffers. */
static const char *
tls_file(const char *name)
{
	static char buf[8][600];
	static int i;
	char *p = buf[i++ % 8];
	snprintf(p, sizeof(buf[0]), "%s/%s", O.tls_dir, name);
	return p;
}

/* Gives a new client the --tls settings (mutual TLS); aborts if the files
 * cannot be used (checked at start-up already). */
static void
client_tls(saga_client *c)
{
	if (O.tls_dir == NULL)
		return;
	if (saga_client_set_tls(c, tls_file("ca.pem"), tls_file("client.pem"),
		tls_file("client.key"), NULL) != SAGA_OK) {
		fprintf(stderr, "sagabench: --tls: %s\n", saga_client_errmsg(c));
		abort();
	}
}

/* ---- the world this run started ------------------------------------------- */

static volatile sig_atomic_t g_stop; /* SIGINT/SIGTERM: wind down now */
static th_pg *g_pg;
static char *g_dir;
static PGconn *g_stat; /* to database "postgres": xids, WAL */
static pid_t g_sagad = -1;
#define MAX_INSTANCES 8
static pid_t g_more_sagads[MAX_INSTANCES]; /* instances 1.. of --instances */
static pid_t g_parts[MAX_PARTS];
static size_t g_n_parts;
/* --auth: the current world's credentials ("" = none). */
static char g_admin_cred[128];
static char g_client_cred[128];

/* With --auth, every client of the bench calls with the client credential
 * (the admin's for registering). */
static void
use_cred(saga_client *c, const char *cred)
{
	if (O.auth && cred[0] != '\0')
		saga_client_set_credential(c, cred);
}
static const char *g_sagad_bin, *g_part_bin, *g_binpb, *g_pgbench_script;
/* --participant node: node, bench-participant.js, and the addon it loads
 * ("SAGA_NODE_ADDON=..."). */
static const char *g_node_bin, *g_node_part;
static char g_node_addon_env[1200];
/* BENCH_NODE_PRELOAD (a sanitizer build): LD_PRELOAD for node only, with
 * LeakSanitizer off in it (V8's allocations at exit are not ours). */
static char g_node_preload_env[1200], g_node_asan_env[1200];
static char g_pg_bindir[4096];
static long g_clk_tck;
static int g_errors; /* total; decides the exit status */
static char g_started_at[32];

static long long
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_stop)
		;
}

/* Sleeps until monotonic time t (ns) or an interrupt. */
static void
sleep_until(long long t)
{
	for (;;) {
		long long left = t - now_ns();
		if (left <= 0 || g_stop)
			return;
		sleep_ms(left > 100000000LL ? 100 : (long)(left / 1000000LL) + 1);
	}
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
note(const char *fmt, ...)
{
	va_list ap;
	time_t t = time(NULL);
	struct tm tm;
	char ts[16];
	localtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
	fprintf(stderr, "sagabench %s: ", ts);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
stop_parts(void)
{
	for (size_t i = 0; i < g_n_parts; i++)
		if (g_parts[i] > 0)
			(void)th_stop(g_parts[i]);
	g_n_parts = 0;
}

static void
stop_sagad(void)
{
	if (g_sagad > 0)
		(void)th_stop(g_sagad);
	g_sagad = -1;
	for (int i = 1; i < MAX_INSTANCES; i++) {
		if (g_more_sagads[i] > 0)
			(void)th_stop(g_more_sagads[i]);
		g_more_sagads[i] = -1;
	}
}

/* Stops everything this run started; safe to call more than once. */
static void
cleanup(void)
{
	stop_parts();
	stop_sagad();
	if (g_stat != NULL)
		PQfinish(g_stat);
	g_stat = NULL;
	th_pg_free(g_pg);
	g_pg = NULL;
	if (g_dir != NULL) {
		if (O.keep)
			note("files kept in %s", g_dir);
		else
			th_rm_rf(g_dir);
		free(g_dir);
		g_dir = NULL;
	}
}

static void
on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* ---- /proc ------------------------------------------------------------------ */

/* utime+stime of pid in clock ticks; *ppid (may be NULL) its parent. 0 if
 * gone. */
static unsigned long long
proc_ticks(pid_t pid, pid_t *ppid)
{
	char p[64], buf[1024];
	FILE *f;
	size_t n;
	unsigned long long ut = 0, st = 0;
	int pp = 0;

	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	if ((f = fopen(p, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *rp = strrchr(buf, ')');
	/* After ")": state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime (fields 3..15). */
	if (rp == NULL ||
	    sscanf(rp + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &pp, &ut, &st) !=
		3)
		return 0;
	if (ppid != NULL)
		*ppid = pp;
	return ut + st;
}

/* PostgreSQL: the postmaster and all its children (backends, walwriter,
 * checkpointer, ...). */
static unsigned long long
pg_ticks(void)
{
	pid_t pm = g_pg != NULL ? th_pg_pid(g_pg) : -1;
	unsigned long long sum = 0;
	DIR *d;
	struct dirent *e;

	if (pm <= 0 || (d = opendir("/proc")) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		pid_t pid, pp = 0;
		unsigned long long t;
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = (pid_t)strtol(e->d_name, NULL, 10);
		t = proc_ticks(pid, &pp);
		if (pid == pm || pp == pm)
			sum += t;
	}
	closedir(d);
	return sum;
}

/* A "VmHWM:" style field of /proc/pid/status in kB; -1 if unreadable. */
static long
proc_status_kb(pid_t pid, const char *field)
{
	char p[64], line[256];
	FILE *f;
	long v = -1;
	size_t fl = strlen(field);

	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	if ((f = fopen(p, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
			v = strtol(line + fl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Busy and total jiffies of the whole machine (/proc/stat "cpu"). */
static void
sys_ticks(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	*busy = *total = 0;
	if (f == NULL)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		&v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
		for (int i = 0; i < 8; i++)
			*total += v[i];
		*busy = *total - v[3] - v[4]; /* minus idle and iowait */
	}
	fclose(f);
}

/* ---- PostgreSQL figures ------------------------------------------------------ */

typedef struct sample {
	long long t_ns;
	unsigned long long sagad, pg, parts, self, sys_busy, sys_total;
	long long xid; /* next xid: write transactions started so far */
	long long wal; /* WAL insert position, bytes */
	int pg_ok;
} sample;

static long long
parse_lsn(const char *s)
{
	unsigned hi = 0, lo = 0;
	if (sscanf(s, "%X/%X", &hi, &lo) != 2)
		return -1;
	return ((long long)hi << 32) | lo;
}

static void
take_sample(sample *s)
{
	memset(s, 0, sizeof(*s));
	s->t_ns = now_ns();
	s->sagad = g_sagad > 0 ? proc_ticks(g_sagad, NULL) : 0;
	for (int i = 1; i < MAX_INSTANCES; i++)
		if (g_more_sagads[i] > 0)
			s->sagad += proc_ticks(g_more_sagads[i], NULL);
	s->pg = pg_ticks();
	for (size_t i = 0; i < g_n_parts; i++)
		s->parts += proc_ticks(g_parts[i], NULL);
	s->self = proc_ticks(getpid(), NULL);
	sys_ticks(&s->sys_busy, &s->sys_total);
	if (g_stat != NULL) {
		/* pg_snapshot_xmax of the current snapshot is the next xid to be
		 * assigned: its delta counts the write transactions in between,
		 * exactly and at once (pg_stat_database lags up to a second). */
		PGresult *r = PQexec(g_stat,
		    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text, "
		    "pg_current_wal_insert_lsn()::text");
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
			s->xid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
			s->wal = parse_lsn(PQgetvalue(r, 0, 1));
			s->pg_ok = s->wal >= 0;
		} else {
			note("sample: %s", PQresultErrorMessage(r));
		}
		PQclear(r);
	}
}

typedef struct cpu_pct {
	double sagad, pg, parts, self, machine; /* % of one core; machine: % of all */
} cpu_pct;

static cpu_pct
cpu_between(const sample *a, const sample *b)
{
	cpu_pct c;
	double secs = (double)(b->t_ns - a->t_ns) / 1e9;
	double k = secs > 0 ? 100.0 / ((double)g_clk_tck * secs) : 0;
	c.sagad = (double)(b->sagad - a->sagad) * k;
	c.pg = (double)(b->pg > a->pg ? b->pg - a->pg : 0) * k;
	c.parts = (double)(b->parts - a->parts) * k;
	c.self = (double)(b->self - a->self) * k;
	c.machine = b->sys_total > a->sys_total
	    ? 100.0 * (double)(b->sys_busy - a->sys_busy) / (double)(b->sys_total - a->sys_total)
	    : 0;
	return c;
}

/* ---- results ----------------------------------------------------------------- */

typedef struct result {
	char name[32];
	int conc;
	double rate;          /* completed per second in the window */
	double p50, p95, p99; /* ms; <0 = n/a */
	double lat_avg;       /* ms; pgbench's "latency average" (reference only) */
	cpu_pct cpu;
	double rss_peak_mb, rss_end_mb;
	double xact_per, wal_per; /* <0 = n/a */
	long measured, started, failing, errors;
	char err[300];
	char log_note[300]; /* first warning/error sagad logged */
	int log_lines;
} result;

static result g_ref;
static int g_have_ref;
static result g_res[MAX_RUNS];
static size_t g_n_res;

static struct {
	int ran;
	long n, started, errors;
	double start_rate;       /* starts/s while filling */
	double rss_mb, hwm_mb;   /* sagad with n in flight */
	double restart_ready_ms; /* restart -> answering */
	double resume_ms;        /* restart -> first dispatch */
	double resume_after_ready_ms;
	double drain_s;      /* restart -> none unfinished */
	double rss_after_mb; /* restarted sagad's peak */
	char err[300];
} g_inf;

static void set_err(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
set_err(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	if (buf[0] != '\0')
		return; /* keep the first */
	va_start(ap, fmt);
	vsnprintf(buf, n, fmt, ap);
	va_end(ap);
}

/* ---- helpers: files, ports, programs ------------------------------------------- */

static int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int port = -1;
	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static const char *
env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v != NULL && v[0] != '\0' ? v : def;
}

static int
has_prog(const char *dir, const char *prog)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/%s", dir, prog);
	return access(p, X_OK) == 0;
}

/* Where pgbench lives: th_pg's search order. */
static int
find_pg_bindir(void)
{
	const char *env = getenv("SAGAD_PG_BINDIR");
	char line[4096];
	FILE *f;

	if (env != NULL && env[0] != '\0' && has_prog(env, "pgbench")) {
		snprintf(g_pg_bindir, sizeof(g_pg_bindir), "%s", env);
		return 0;
	}
	if ((f = popen("pg_config --bindir 2>/dev/null", "r")) != NULL) {
		int ok = fgets(line, sizeof(line), f) != NULL;
		pclose(f);
		line[strcspn(line, "\r\n")] = '\0';
		if (ok && has_prog(line, "pgbench")) {
			snprintf(g_pg_bindir, sizeof(g_pg_bindir), "%s", line);
			return 0;
		}
	}
	DIR *d = opendir("/usr/lib/postgresql");
	struct dirent *e;
	long best = -1;
	while (d != NULL && (e = readdir(d)) != NULL) {
		char bin[4096];
		long v = strtol(e->d_name, NULL, 10);
		snprintf(bin, sizeof(bin), "/usr/lib/postgresql/%s/bin", e->d_name);
		if (v > best && has_prog(bin, "pgbench")) {
			best = v;
			snprintf(g_pg_bindir, sizeof(g_pg_bindir), "%s", bin);
		}
	}
	if (d != NULL)
		closedir(d);
	return g_pg_bindir[0] != '\0' ? 0 : -1;
}

/* Number of lines in path (the warnings and errors sagad logged at
 * --log-level warn) and the first one in first. */
static int
log_lines(const char *path, char *first, size_t n)
{
	char *s = th_read_file(path, NULL);
	int c = 0;
	first[0] = '\0';
	if (s == NULL)
		return 0;
	for (char *p = s; *p != '\0';) {
		char *e = strchr(p, '\n');
		size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
		if (len > 0) {
			if (c == 0)
				snprintf(first, n, "%.*s", (int)(len < n - 1 ? len : n - 1), p);
			c++;
		}
		p += len + (e != NULL);
	}
	free(s);
	return c;
}

/* ---- sagad and participants ------------------------------------------------------ */

typedef struct world {
	char dir[600];
	char db[64];
	char *conninfo;
	char url[64 * MAX_INSTANCES]; /* every instance's, comma-separated */
	char inst_url[MAX_INSTANCES][64];
	char sagad_log[700];
	char data_dir[700];
} world;

/* Waits until sagad answers a list (timeout_ms); -1 if it died or never
 * answered. Each attempt uses a new client: a client's dialer backs off
 * (up to 2 s) while nothing listens, which would blur the moment sagad
 * starts answering. */
static int
wait_ready(const world *w, int timeout_ms)
{
	long long deadline = now_ns() + (long long)timeout_ms * 1000000LL;
	char last[256] = "";

	while (!g_stop) {
		saga_client *c = NULL;
		saga_list_filter f;
		saga_list *l = NULL;
		int rv;

		if (saga_client_new(w->inst_url[0], &c) != SAGA_OK)
			return -1;
		client_tls(c);
		saga_client_set_timeout(c, 250);
		memset(&f, 0, sizeof(f));
		f.limit = 1;
		rv = saga_client_list(c, &f, &l);
		if (rv != SAGA_OK)
			snprintf(last, sizeof(last), "%s", saga_client_errmsg(c));
		saga_list_free(l);
		saga_client_free(c);
		if (rv == SAGA_OK || (O.auth && rv == SAGA_EAUTH))
			return 0;
		if (g_sagad > 0 && th_wait_exit(g_sagad, 0, NULL) == 0) {
			note("sagad exited during start-up (log: %s)", w->sagad_log);
			g_sagad = -1;
			return -1;
		}
		if (now_ns() >= deadline) {
			note("sagad did not answer within %d ms: %s", timeout_ms, last);
			return -1;
		}
		sleep_ms(5);
	}
	return -1;
}

/* Starts sagad instance i (0 = the one the single-instance runs use). */
static int
start_sagad_n(const world *w, int i)
{
	const char *argv[64];
	char id[32], log[720];
	size_t n = 0;

	snprintf(id, sizeof(id), "bench%d", i);
	if (i == 0)
		snprintf(log, sizeof(log), "%s", w->sagad_log);
	else
		snprintf(log, sizeof(log), "%s/sagad-%d.log", w->dir, i);
	argv[n++] = g_sagad_bin;
	argv[n++] = "--db";
	argv[n++] = w->conninfo;
	argv[n++] = "--listen";
	argv[n++] = w->inst_url[i];
	argv[n++] = "--data-dir";
	argv[n++] = w->data_dir;
	argv[n++] = "--log-level";
	argv[n++] = "warn";
	argv[n++] = "--instance-id";
	argv[n++] = id;
	if (geteuid() == 0)
		argv[n++] = "--allow-root";
	if (O.tls_dir != NULL) {
		argv[n++] = "--tls-cert";
		argv[n++] = tls_file("sagad.pem");
		argv[n++] = "--tls-key";
		argv[n++] = tls_file("sagad.key");
		argv[n++] = "--tls-ca";
		argv[n++] = tls_file("ca.pem");
	}
	if (O.auth) {
		argv[n++] = "--auth";
		argv[n++] = "on";
	}
	for (size_t k = 0; k < O.n_sagad_args && n < 63; k++)
		argv[n++] = O.sagad_args[k];
	argv[n] = NULL;
	pid_t pid = th_spawn(argv, NULL, log);
	if (pid < 0) {
		note("cannot start %s", g_sagad_bin);
		return -1;
	}
	if (i == 0)
		g_sagad = pid;
	else
		g_more_sagads[i] = pid;
	return 0;
}

static int
start_sagad(const world *w)
{
	return start_sagad_n(w, 0);
}

static const char *part_creds(const world *w, const char *names, char *dir, size_t dirlen);

/* Starts one bench-participant serving names; extra args (NULL-ended) are
 * appended. */
static int
start_part(const world *w, const char *names, const char *const extra[])
{
	const char *argv[34];
	const char *env[] = { g_node_addon_env, g_node_preload_env[0] ? g_node_preload_env : NULL,
		g_node_asan_env, NULL };
	char cap[16], inst[32], log[700];
	size_t n = 0;

	if (g_n_parts == MAX_PARTS)
		return -1;
	snprintf(cap, sizeof(cap), "%u", O.capacity);
	snprintf(inst, sizeof(inst), "bench%zu", g_n_parts);
	snprintf(log, sizeof(log), "%s/part-%zu.log", w->dir, g_n_parts);
	if (O.node) {
		argv[n++] = g_node_bin;
		argv[n++] = g_node_part;
	} else {
		argv[n++] = g_part_bin;
	}
	argv[n++] = "--url";
	argv[n++] = w->url;
	argv[n++] = "--participant";
	argv[n++] = names;
	argv[n++] = "--capacity";
	argv[n++] = cap;
	argv[n++] = "--instance";
	argv[n++] = inst;
	if (O.tls_dir != NULL) {
		argv[n++] = "--tls-ca";
		argv[n++] = tls_file("ca.pem");
		argv[n++] = "--tls-cert";
		argv[n++] = tls_file("client.pem");
		argv[n++] = "--tls-key";
		argv[n++] = tls_file("client.key");
	}
	char creds[700];
	if (O.auth) {
		if (part_creds(w, names, creds, sizeof(creds)) == NULL)
			return -1;
		argv[n++] = "--credential-dir";
		argv[n++] = creds;
	}
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 33; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid_t pid = th_spawn(argv, O.node ? env : NULL, log);
	if (pid < 0) {
		note("cannot start %s", argv[0]);
		return -1;
	}
	g_parts[g_n_parts++] = pid;
	return 0;
}

static int
register_defs(const world *w)
{
	size_t len = 0;
	char *data = th_read_file(g_binpb, &len);
	saga_client *c = NULL;
	saga_register_result *res = NULL;
	int rv;

	if (data == NULL) {
		note("cannot read %s", g_binpb);
		return -1;
	}
	if ((rv = saga_client_new(w->inst_url[0], &c)) == SAGA_OK) {
		client_tls(c);
		use_cred(c, g_admin_cred);
		rv = saga_client_register(c, data, len, &res);
	}
	if (rv != SAGA_OK)
		note("register %s: %s: %s", g_binpb, saga_strerror(rv),
		    c != NULL ? saga_client_errmsg(c) : "");
	saga_register_result_free(res);
	saga_client_free(c);
	free(data);
	return rv == SAGA_OK ? 0 : -1;
}

/* --auth: reads the bootstrap admin's credential and makes the drivers'
 * client principal. */
static int
auth_setup(const world *w)
{
	char path[800], *cred = NULL;
	snprintf(path, sizeof(path), "%s/bootstrap-admin.credential", w->data_dir);
	char *s = th_read_file(path, NULL);
	if (s == NULL) {
		note("no bootstrap credential in %s", path);
		return -1;
	}
	s[strcspn(s, "\r\n")] = '\0';
	snprintf(g_admin_cred, sizeof(g_admin_cred), "%s", s);
	free(s);
	saga_client *c = NULL;
	int rv = saga_client_new(w->inst_url[0], &c);
	if (rv == SAGA_OK) {
		client_tls(c);
		use_cred(c, g_admin_cred);
		rv = saga_client_principal_create(
		    c, "bench-client", "client", NULL, NULL, 0, &cred, NULL);
	}
	if (rv != SAGA_OK) {
		note("cannot make the client principal: %s", c ? saga_client_errmsg(c) : "");
		saga_client_free(c);
		return -1;
	}
	snprintf(g_client_cred, sizeof(g_client_cred), "%s", cred);
	saga_string_free(cred);
	saga_client_free(c);
	return 0;
}

/* --auth: a participant principal per name (comma-separated), its
 * credential in DIR/creds/NAME.credential. Returns DIR/creds or NULL. */
static const char *
part_creds(const world *w, const char *names, char *dir, size_t dirlen)
{
	snprintf(dir, dirlen, "%s/creds", w->dir);
	(void)mkdir(dir, 0700);
	char *copy = strdup(names), *save = NULL;
	saga_client *c = NULL;
	if (copy == NULL || saga_client_new(w->inst_url[0], &c) != SAGA_OK) {
		free(copy);
		return NULL;
	}
	client_tls(c);
	use_cred(c, g_admin_cred);
	const char *ok = dir;
	for (char *n = strtok_r(copy, ",", &save); n != NULL; n = strtok_r(NULL, ",", &save)) {
		char path[900], pname[128], *cred = NULL;
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s.credential", dir, n);
		if (stat(path, &sb) == 0)
			continue;
		snprintf(pname, sizeof(pname), "bench-%s", n);
		if (saga_client_principal_create(
			c, pname, "participant", n, NULL, 0, &cred, NULL) != SAGA_OK ||
		    th_write_file(path, cred, strlen(cred)) != 0) {
			note("cannot make participant principal %s: %s", n, saga_client_errmsg(c));
			ok = NULL;
		}
		saga_string_free(cred);
	}
	saga_client_free(c);
	free(copy);
	return ok;
}

/* A fresh database, sagad on it (answering) and the definitions
 * registered. */
static int
world_up(world *w, const char *name)
{
	memset(w, 0, sizeof(*w));
	snprintf(w->dir, sizeof(w->dir), "%s/%s", g_dir, name);
	snprintf(w->db, sizeof(w->db), "bench_%s", name);
	for (char *p = w->db; *p; p++)
		if (!isalnum((unsigned char)*p))
			*p = '_';
	snprintf(w->sagad_log, sizeof(w->sagad_log), "%s/sagad.log", w->dir);
	snprintf(w->data_dir, sizeof(w->data_dir), "%s/sagad-data", w->dir);
	if (mkdir(w->dir, 0711) != 0) {
		note("cannot prepare %s", w->dir);
		return -1;
	}
	int n_inst = O.instances > 0 ? O.instances : 1;
	size_t ul = 0;
	for (int i = 0; i < n_inst; i++) {
		int port = free_port();
		if (port < 0)
			return -1;
		snprintf(w->inst_url[i], sizeof(w->inst_url[i]), "%s://127.0.0.1:%d",
		    O.tls_dir != NULL ? "tls+tcp" : "tcp", port);
		ul += (size_t)snprintf(
		    w->url + ul, sizeof(w->url) - ul, "%s%s", i ? "," : "", w->inst_url[i]);
	}
	if (th_pg_create_db(g_pg, w->db) != 0 ||
	    (w->conninfo = th_pg_conninfo(g_pg, w->db)) == NULL)
		return -1;
	/* Every run starts right after a checkpoint: the same full-page-write
	 * state for each, and a timed checkpoint (5 min) unlikely inside. */
	(void)th_pg_exec(g_pg, "postgres", "CHECKPOINT");
	if (start_sagad(w) != 0 || wait_ready(w, READY_MS) != 0)
		return -1;
	if (O.auth && auth_setup(w) != 0)
		return -1;
	if (register_defs(w) != 0)
		return -1;
	if (n_inst > 1) {
		/* The others join and the 64 shards are split before anything
		 * is measured. */
		for (int i = 1; i < n_inst; i++)
			if (start_sagad_n(w, i) != 0)
				return -1;
		char sql[300];
		snprintf(sql, sizeof(sql),
		    "SELECT count(*) FROM (SELECT owner FROM saga_shards WHERE owner IS NOT NULL"
		    " AND expires_at > now() GROUP BY owner HAVING count(*) >= %d) x",
		    64 / n_inst);
		long long until = now_ns() + 60000000000LL;
		while (th_pg_query_int(g_pg, w->db, sql) != n_inst) {
			if (now_ns() > until || g_stop) {
				note("the %d instances did not split the shards in 60 s", n_inst);
				return -1;
			}
			sleep_ms(100);
		}
	}
	return 0;
}

static void
world_down(world *w)
{
	stop_parts();
	stop_sagad();
	free(w->conninfo);
	w->conninfo = NULL;
}

/* Saga states in the database: counts[state] for states 0..7. The schema
 * is migrations/001_init.sql's (sagas.state is sagawire.SagaState). */
static int
state_counts(const world *w, long counts[8])
{
	PGconn *c = th_pg_connect(g_pg, w->db);
	PGresult *r;
	int rv = -1;

	memset(counts, 0, 8 * sizeof(long));
	if (c == NULL)
		return -1;
	r = PQexec(c, "SELECT state, count(*) FROM sagas GROUP BY state");
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		for (int i = 0; i < PQntuples(r); i++) {
			long st = strtol(PQgetvalue(r, i, 0), NULL, 10);
			counts[st >= 0 && st < 8 ? st : 0] += strtol(PQgetvalue(r, i, 1), NULL, 10);
		}
		rv = 0;
	} else {
		note("state counts: %s", PQresultErrorMessage(r));
	}
	PQclear(r);
	PQfinish(c);
	return rv;
}

/* ---- the closed loop ---------------------------------------------------------- */

typedef struct drv {
	pthread_t th;
	int idx;
	const scen *s;
	const char *url;
	saga_client *c;
	uint8_t *input;
	size_t input_len;
	long long t_meas0, t_meas1; /* ns */
	uint32_t *lat;              /* microseconds, sagas that finished inside the window */
	size_t n_lat, cap_lat;
	long started, finished, failing, errors;
	char err[300];
} drv;

/* A bench.Input of about len bytes: flags (field 1) and pad (field 2). */
static uint8_t *
make_input(size_t len, size_t *out_len)
{
	size_t pad = len > 8 ? len - 8 : 0;
	uint8_t *b = calloc(1, pad + 8);
	size_t n = 0;
	if (b == NULL)
		return NULL;
	b[n++] = 0x08;
	b[n++] = 0; /* flags, set per saga */
	b[n++] = 0x12;
	/* pad length as a 3-byte varint (non-minimal encodings are valid) */
	b[n++] = (uint8_t)(0x80 | (pad & 0x7f));
	b[n++] = (uint8_t)(0x80 | ((pad >> 7) & 0x7f));
	b[n++] = (uint8_t)((pad >> 14) & 0x7f);
	memset(b + n, 'x', pad);
	*out_len = n + pad;
	return b;
}

/* Drive with start + wait instead of saga_client_run (--two-calls). */
static int g_two_calls;

static void *
drv_main(void *arg)
{
	drv *d = arg;
	unsigned long seq = (unsigned long)d->idx * 7u;

	while (!g_stop && now_ns() < d->t_meas1) {
		char *id = NULL;
		int fail = d->s->fail_every > 0 && (seq++ % d->s->fail_every) == 0;
		long long t0, t1;
		int rv;

		d->input[1] = (uint8_t)(d->s->flags | (fail ? FLAG_FAIL_LAST : 0));
		t0 = now_ns();
		if (!g_two_calls) {
			/* One request: start, answered when final and durable. */
			saga_state st = SAGA_STATE_UNKNOWN;
			rv = saga_client_run(d->c, d->s->definition, d->input, d->input_len, NULL,
			    WAIT_MS, &id, &st, NULL);
			if (id == NULL) {
				d->errors++;
				set_err(d->err, sizeof(d->err), "run: %s: %s", saga_strerror(rv),
				    saga_client_errmsg(d->c));
				sleep_ms(100);
				continue;
			}
			d->started++;
			d->failing += fail;
			goto finished;
		}
		rv = saga_client_start(
		    d->c, d->s->definition, d->input, d->input_len, NULL, &id, NULL);
		if (rv != SAGA_OK) {
			d->errors++;
			set_err(d->err, sizeof(d->err), "start: %s: %s", saga_strerror(rv),
			    saga_client_errmsg(d->c));
			sleep_ms(100);
			continue;
		}
		d->started++;
		d->failing += fail;
		rv = saga_client_wait(d->c, id, WAIT_MS, NULL);
	finished:
		t1 = now_ns();
		if (rv != SAGA_OK) {
			d->errors++;
			set_err(d->err, sizeof(d->err), "wait %s: %s: %s", id, saga_strerror(rv),
			    saga_client_errmsg(d->c));
		} else {
			d->finished++;
			if (t1 >= d->t_meas0 && t1 <= d->t_meas1) {
				if (d->n_lat == d->cap_lat) {
					size_t nc = d->cap_lat ? d->cap_lat * 2 : 4096;
					uint32_t *nl = realloc(d->lat, nc * sizeof(*nl));
					if (nl == NULL)
						abort();
					d->lat = nl;
					d->cap_lat = nc;
				}
				long long us = (t1 - t0) / 1000;
				d->lat[d->n_lat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
			}
		}
		saga_string_free(id);
	}
	return NULL;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double
pct_ms(const uint32_t *v, size_t n, double q)
{
	size_t i;
	if (n == 0)
		return -1;
	i = (size_t)ceil(q * (double)n);
	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	return v[i] / 1000.0;
}

static void
run_closed(const scen *s, int conc, result *r)
{
	world w;
	char name[64];
	drv *d = NULL;
	sample a, b;
	long counts[8];
	uint32_t *all = NULL;
	size_t n_all = 0;
	int nthreads = 0;
	char stats_arg[700];

	memset(r, 0, sizeof(*r));
	if (O.instances > 1)
		snprintf(r->name, sizeof(r->name), "%s-i%d", s->name, O.instances);
	else
		snprintf(r->name, sizeof(r->name), "%s", s->name);
	r->conc = conc;
	r->p50 = r->p95 = r->p99 = r->xact_per = r->wal_per = -1;
	snprintf(name, sizeof(name), "%s-c%d", r->name, conc);
	note("run %s: %s, C=%d, warm-up %.0f s, %.0f s measured", name, s->what, conc, O.warmup,
	    O.duration);

	if (world_up(&w, name) != 0) {
		set_err(r->err, sizeof(r->err), "setup failed (see %s)", w.sagad_log);
		r->errors++;
		goto out;
	}
	for (int i = 0; i < O.part_procs; i++) {
		const char *extra[6];
		size_t k = 0;
		if (s->fail_on != NULL) {
			extra[k++] = "--fail-on";
			extra[k++] = s->fail_on;
		}
		snprintf(stats_arg, sizeof(stats_arg), "%s/part-%d.stats", w.dir, i);
		extra[k++] = "--stats";
		extra[k++] = stats_arg;
		extra[k] = NULL;
		if (start_part(&w, s->participants, extra) != 0) {
			r->errors++;
			set_err(r->err, sizeof(r->err), "cannot start participants");
			goto out;
		}
	}

	if ((d = calloc((size_t)conc, sizeof(*d))) == NULL)
		abort();
	long long t_begin = now_ns();
	long long t_meas0 = t_begin + (long long)(O.warmup * 1e9);
	long long t_meas1 = t_meas0 + (long long)(O.duration * 1e9);
	for (int i = 0; i < conc; i++) {
		d[i].idx = i;
		d[i].s = s;
		d[i].url = w.url;
		d[i].t_meas0 = t_meas0;
		d[i].t_meas1 = t_meas1;
		if ((d[i].input = make_input(s->input_bytes, &d[i].input_len)) == NULL ||
		    saga_client_new(w.url, &d[i].c) != SAGA_OK)
			abort();
		client_tls(d[i].c);
		use_cred(d[i].c, g_client_cred);
		saga_client_set_timeout(d[i].c, 30000);
		if (pthread_create(&d[i].th, NULL, drv_main, &d[i]) != 0) {
			note("pthread_create failed");
			saga_client_free(d[i].c);
			free(d[i].input);
			r->errors++;
			break;
		}
		nthreads++;
	}
	sleep_until(t_meas0);
	take_sample(&a);
	sleep_until(t_meas1);
	take_sample(&b);
	if (g_sagad > 0)
		r->rss_peak_mb = proc_status_kb(g_sagad, "VmHWM") / 1024.0;
	if (g_stop) {
		/* The threads may sit in a wait for a minute: leave them. */
		goto out;
	}
	for (int i = 0; i < nthreads; i++) {
		pthread_join(d[i].th, NULL);
		r->started += d[i].started;
		r->failing += d[i].failing;
		r->errors += d[i].errors;
		if (d[i].err[0] != '\0')
			set_err(r->err, sizeof(r->err), "%s", d[i].err);
		n_all += d[i].n_lat;
	}
	if ((all = malloc((n_all + 1) * sizeof(*all))) == NULL)
		abort();
	n_all = 0;
	for (int i = 0; i < nthreads; i++) {
		memcpy(all + n_all, d[i].lat, d[i].n_lat * sizeof(*all));
		n_all += d[i].n_lat;
	}
	qsort(all, n_all, sizeof(*all), cmp_u32);
	r->measured = (long)n_all;
	r->rate = (double)n_all / ((double)(b.t_ns - a.t_ns) / 1e9);
	r->p50 = pct_ms(all, n_all, 0.50);
	r->p95 = pct_ms(all, n_all, 0.95);
	r->p99 = pct_ms(all, n_all, 0.99);
	r->cpu = cpu_between(&a, &b);
	if (a.pg_ok && b.pg_ok && n_all > 0) {
		r->xact_per = (double)(b.xid - a.xid) / (double)n_all;
		r->wal_per = (double)(b.wal - a.wal) / (double)n_all;
	}
	if (g_sagad > 0) {
		r->rss_peak_mb = proc_status_kb(g_sagad, "VmHWM") / 1024.0;
		r->rss_end_mb = proc_status_kb(g_sagad, "VmRSS") / 1024.0;
	} else {
		r->errors++;
		set_err(r->err, sizeof(r->err), "sagad is gone");
	}

	/* Every saga started must be final, in the state its input asked for. */
	if (state_counts(&w, counts) != 0) {
		r->errors++;
		set_err(r->err, sizeof(r->err), "cannot count saga states");
	} else {
		long total = 0;
		for (int i = 0; i < 8; i++)
			total += counts[i];
		long bad = labs(counts[SAGA_STATE_COMPLETED] - (r->started - r->failing)) +
		    labs(counts[SAGA_STATE_COMPENSATED] - r->failing);
		if (total != r->started || bad != 0) {
			r->errors += bad > 0 ? bad : 1;
			set_err(r->err, sizeof(r->err),
			    "states: %ld sagas stored, %ld started; completed %ld (want %ld), "
			    "compensated %ld (want %ld), running %ld, compensating %ld, failed %ld",
			    total, r->started, counts[SAGA_STATE_COMPLETED],
			    r->started - r->failing, counts[SAGA_STATE_COMPENSATED], r->failing,
			    counts[SAGA_STATE_RUNNING], counts[SAGA_STATE_COMPENSATING],
			    counts[SAGA_STATE_FAILED]);
		}
	}
out:
	/* Interrupted: the threads may still be inside a wait for up to a
	 * minute; their memory is left to the process's exit. */
	if (!g_stop && d != NULL) {
		for (int i = 0; i < nthreads; i++) {
			saga_client_free(d[i].c);
			free(d[i].input);
			free(d[i].lat);
		}
		free(d);
	}
	free(all);
	world_down(&w);
	r->log_lines = log_lines(w.sagad_log, r->log_note, sizeof(r->log_note));
	g_errors += (int)r->errors;
	if (g_stop)
		return;
	if (r->errors > 0)
		note("run %s: %ld errors: %s", name, r->errors, r->err);
	else
		note("run %s: %.0f sagas/s, p50 %.2f ms, p99 %.2f ms, %ld sagas", name, r->rate,
		    r->p50, r->p99, r->started);
}

/* ---- the in-flight scenario ------------------------------------------------------- */

typedef struct starter {
	pthread_t th;
	saga_client *c;
	atomic_long *next;
	long n, started, errors;
	char err[300];
} starter;

static void *
starter_main(void *arg)
{
	starter *st = arg;
	size_t len = 0;
	uint8_t *in = make_input(16, &len);
	if (in == NULL)
		abort();
	while (!g_stop && atomic_fetch_add(st->next, 1) < st->n) {
		char *id = NULL;
		int rv = saga_client_start(st->c, "bench.Hold3", in, len, NULL, &id, NULL);
		if (rv != SAGA_OK) {
			st->errors++;
			set_err(st->err, sizeof(st->err), "start: %s: %s", saga_strerror(rv),
			    saga_client_errmsg(st->c));
			sleep_ms(100);
			continue;
		}
		st->started++;
		saga_string_free(id);
	}
	free(in);
	return NULL;
}

/* The value of "key N" in a participant's stats file, or -1. For "rpc X",
 * key is "rpc X". */
static long long
stats_value(const char *path, const char *key)
{
	char *s = th_read_file(path, NULL);
	long long v = -1;
	size_t kl = strlen(key);
	if (s == NULL)
		return -1;
	for (char *p = s; p != NULL && *p;) {
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
			v = strtoll(p + kl + 1, NULL, 10);
			break;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	free(s);
	return v;
}

/* Number of sagas still running or compensating, by the public API (one
 * list call); -1 on an error. */
static long
unfinished(saga_client *c)
{
	saga_state st[2] = { SAGA_STATE_RUNNING, SAGA_STATE_COMPENSATING };
	saga_list_filter f;
	saga_list *l = NULL;
	long n;
	memset(&f, 0, sizeof(f));
	f.states = st;
	f.n_states = 2;
	f.limit = 1;
	if (saga_client_list(c, &f, &l) != SAGA_OK)
		return -1;
	n = (long)l->count;
	saga_list_free(l);
	return n;
}

static void
run_inflight(void)
{
	world w;
	char name[32], stats[700];
	starter *st = NULL;
	atomic_long next = 0;
	int n_st = O.inflight_starters;
	long long deadline, t0, t_ready, t_first = 0;
	saga_client *c = NULL;
	long counts[8];

	memset(&g_inf, 0, sizeof(g_inf));
	g_inf.ran = 1;
	g_inf.n = O.inflight;
	g_inf.restart_ready_ms = g_inf.resume_ms = g_inf.resume_after_ready_ms = g_inf.drain_s = -1;
	snprintf(name, sizeof(name), "inflight%ld", O.inflight);
	note("run %s: %ld sagas parked at a slow S2, then kill -9 and restart of sagad", name,
	    O.inflight);
	if (world_up(&w, name) != 0) {
		set_err(g_inf.err, sizeof(g_inf.err), "setup failed (see %s)", w.sagad_log);
		g_inf.errors++;
		goto out;
	}
	snprintf(stats, sizeof(stats), "%s/part.stats", w.dir);
	{
		/* One process serves p1..p3; S2 sleeps (up to an hour) until
		 * SIGUSR1. */
		const char *extra[] = { "--delay-rpc", "S2", "--delay-ms", "3600000", "--stats",
			stats, NULL };
		if (start_part(&w, "p1,p2,p3", extra) != 0) {
			g_inf.errors++;
			goto out;
		}
	}

	/* Fill: n starters, no waiting. */
	if ((st = calloc((size_t)n_st, sizeof(*st))) == NULL)
		abort();
	long long f0 = now_ns();
	int started_threads = 0;
	for (int i = 0; i < n_st; i++) {
		st[i].next = &next;
		st[i].n = O.inflight;
		if (saga_client_new(w.url, &st[i].c) != SAGA_OK)
			abort();
		client_tls(st[i].c);
		use_cred(st[i].c, g_client_cred);
		saga_client_set_timeout(st[i].c, 60000);
		if (pthread_create(&st[i].th, NULL, starter_main, &st[i]) != 0)
			break;
		started_threads++;
	}
	for (int i = 0; i < started_threads; i++) {
		pthread_join(st[i].th, NULL);
		g_inf.started += st[i].started;
		g_inf.errors += st[i].errors;
		if (st[i].err[0])
			set_err(g_inf.err, sizeof(g_inf.err), "%s", st[i].err);
		saga_client_free(st[i].c);
	}
	if (g_stop)
		goto out;
	g_inf.start_rate = (double)g_inf.started / ((double)(now_ns() - f0) / 1e9);
	note("%s: %ld started at %.0f/s; waiting until all of them wait at S2", name, g_inf.started,
	    g_inf.start_rate);

	/* All at S2: S1 ran for every saga (and then a moment for the
	 * transitions to commit). */
	deadline = now_ns() + (long long)O.inflight_timeout_s * 1000000000LL;
	while (!g_stop && stats_value(stats, "rpc S1") < g_inf.started) {
		if (now_ns() > deadline) {
			g_inf.errors++;
			set_err(g_inf.err, sizeof(g_inf.err), "S1 ran %lld times of %ld in %d s",
			    stats_value(stats, "rpc S1"), g_inf.started, O.inflight_timeout_s);
			goto out;
		}
		sleep_ms(50);
	}
	sleep_ms(1000);
	if (g_stop || g_sagad <= 0)
		goto out;
	g_inf.rss_mb = proc_status_kb(g_sagad, "VmRSS") / 1024.0;
	g_inf.hwm_mb = proc_status_kb(g_sagad, "VmHWM") / 1024.0;
	note("%s: sagad RSS %.1f MB (peak %.1f MB) with %ld in flight; kill -9", name, g_inf.rss_mb,
	    g_inf.hwm_mb, g_inf.started);

	/* Crash, make the participant fast, restart. */
	kill(g_sagad, SIGKILL);
	(void)th_wait_exit(g_sagad, 10000, NULL);
	g_sagad = -1;
	kill(g_parts[0], SIGUSR1);
	t0 = now_ns();
	{
		FILE *f = fopen(w.sagad_log, "a");
		if (f != NULL) {
			fprintf(f, "==== sagabench: restart after kill -9 ====\n");
			fclose(f);
		}
	}
	if (start_sagad(&w) != 0 || wait_ready(&w, READY_MS) != 0) {
		g_inf.errors++;
		set_err(
		    g_inf.err, sizeof(g_inf.err), "sagad did not restart (see %s)", w.sagad_log);
		goto out;
	}
	t_ready = now_ns();
	g_inf.restart_ready_ms = (double)(t_ready - t0) / 1e6;
	if (saga_client_new(w.url, &c) != SAGA_OK)
		abort();
	client_tls(c);
	use_cred(c, g_client_cred);
	saga_client_set_timeout(c, 30000);
	deadline = t0 + (long long)O.inflight_timeout_s * 1000000000LL;
	for (;;) {
		long long fa = stats_value(stats, "first_after_release_ns");
		if (t_first == 0 && fa > 0) {
			t_first = fa;
			g_inf.resume_ms = (double)(t_first - t0) / 1e6;
			g_inf.resume_after_ready_ms = (double)(t_first - t_ready) / 1e6;
		}
		long u = t_first > 0 ? unfinished(c) : -1;
		if (u == 0) {
			g_inf.drain_s = (double)(now_ns() - t0) / 1e9;
			break;
		}
		if (g_stop || now_ns() > deadline || g_sagad <= 0 ||
		    th_wait_exit(g_sagad, 0, NULL) == 0) {
			g_inf.errors++;
			set_err(g_inf.err, sizeof(g_inf.err),
			    "not drained %d s after the restart (first dispatch: %s)",
			    O.inflight_timeout_s, t_first > 0 ? "yes" : "none");
			goto out;
		}
		sleep_ms(t_first > 0 ? 50 : 2);
	}
	g_inf.rss_after_mb = proc_status_kb(g_sagad, "VmHWM") / 1024.0;
	if (state_counts(&w, counts) != 0 || counts[SAGA_STATE_COMPLETED] != g_inf.started) {
		g_inf.errors++;
		set_err(g_inf.err, sizeof(g_inf.err), "%ld completed of %ld started",
		    counts[SAGA_STATE_COMPLETED], g_inf.started);
	}
	note("%s: first dispatch %.0f ms after the restart (%.0f ms after answering), all done "
	     "in %.1f s",
	    name, g_inf.resume_ms, g_inf.resume_after_ready_ms, g_inf.drain_s);
out:
	saga_client_free(c);
	free(st);
	world_down(&w);
	g_errors += (int)g_inf.errors;
	if (g_inf.errors > 0)
		note("run %s: %ld errors: %s", name, g_inf.errors, g_inf.err);
}

/* ---- the reference: pgbench ---------------------------------------------------------- */

static const char ref_setup[] =
    "CREATE TABLE bench_accounts (aid int PRIMARY KEY, balance int NOT NULL);"
    "INSERT INTO bench_accounts SELECT g, 0 FROM generate_series(1, 100000) g;"
    "CREATE TABLE bench_history (aid int NOT NULL, delta int NOT NULL, mtime timestamptz);";

static void
run_reference(void)
{
	char pgbench[4200], cl[16], secs[16], log[700], port_dir[600];
	sample a = { 0 }, b = { 0 };
	int status = -1;
	result *r = &g_ref;

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "pgbench ref");
	r->conc = PGBENCH_CLIENTS;
	r->p50 = r->p95 = r->p99 = r->rss_peak_mb = r->rss_end_mb = -1;
	note("reference: pgbench, %d clients, %d s: BEGIN; UPDATE one row; INSERT one row; COMMIT",
	    PGBENCH_CLIENTS, O.pgbench_seconds);
	if (th_pg_create_db(g_pg, PG_REF_DB) != 0 || th_pg_exec(g_pg, PG_REF_DB, ref_setup) != 0 ||
	    th_pg_exec(g_pg, PG_REF_DB, "VACUUM ANALYZE") != 0 ||
	    th_pg_exec(g_pg, "postgres", "CHECKPOINT") != 0) {
		set_err(r->err, sizeof(r->err), "cannot set up the reference tables");
		goto fail;
	}
	snprintf(pgbench, sizeof(pgbench), "%s/pgbench", g_pg_bindir);
	snprintf(cl, sizeof(cl), "%d", PGBENCH_CLIENTS);
	snprintf(secs, sizeof(secs), "%d", O.pgbench_seconds);
	snprintf(log, sizeof(log), "%s/pgbench.log", g_dir);
	snprintf(port_dir, sizeof(port_dir), "%s", th_pg_dir(g_pg));
	const char *argv[] = { pgbench, "-n", "-c", cl, "-j", "2", "-T", secs, "-f",
		g_pgbench_script, "-h", port_dir, "-p", "5432", "-U", "saga", PG_REF_DB, NULL };
	pid_t pid = th_spawn(argv, NULL, log);
	if (pid < 0) {
		set_err(r->err, sizeof(r->err), "cannot start %s", pgbench);
		goto fail;
	}
	/* PostgreSQL's CPU is its processes' and pgbench's backends exit with
	 * it: sample inside the run, after the connections are made and
	 * before they close. */
	long long t_spawn = now_ns(), span = O.pgbench_seconds * 1000000000LL;
	long long t_a = t_spawn + (span / 5 < 1000000000LL ? span / 5 : 1000000000LL);
	long long t_b = t_spawn + span - (span / 10 < 500000000LL ? span / 10 : 500000000LL);
	int sampled = 0;
	/* Poll so that an interrupt is noticed; bounded. */
	long long deadline = t_spawn + span + 60000000000LL;
	while (th_wait_exit(pid, 20, &status) != 0) {
		long long t = now_ns();
		if (sampled == 0 && t >= t_a) {
			take_sample(&a);
			a.self = proc_ticks(pid, NULL); /* the driver here is pgbench */
			sampled = 1;
		} else if (sampled == 1 && t >= t_b) {
			take_sample(&b);
			b.self = proc_ticks(pid, NULL);
			sampled = 2;
		}
		if (g_stop || t > deadline) {
			kill(pid, SIGKILL);
			(void)th_wait_exit(pid, 5000, NULL);
			set_err(r->err, sizeof(r->err), "pgbench %s",
			    g_stop ? "interrupted" : "timed out");
			goto fail;
		}
	}
	char *out = th_read_file(log, NULL);
	const char *tps = out != NULL ? strstr(out, "tps = ") : NULL;
	const char *lat = out != NULL ? strstr(out, "latency average = ") : NULL;
	static const char processed[] = "number of transactions actually processed: ";
	const char *xacts = out != NULL ? strstr(out, processed) : NULL;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || tps == NULL) {
		set_err(
		    r->err, sizeof(r->err), "pgbench failed (status 0x%x); see %s", status, log);
		if (out != NULL)
			fprintf(stderr, "%s\n", out);
		free(out);
		goto fail;
	}
	r->rate = strtod(tps + 6, NULL);
	if (lat != NULL)
		r->lat_avg = strtod(lat + 18, NULL);
	if (xacts != NULL)
		r->measured = strtol(xacts + strlen(processed), NULL, 10);
	free(out);
	if (sampled == 2) {
		/* Transactions in the sampled window, at pgbench's rate. */
		double n = r->rate * (double)(b.t_ns - a.t_ns) / 1e9;
		r->cpu = cpu_between(&a, &b);
		if (a.pg_ok && b.pg_ok && n > 0) {
			r->xact_per = (double)(b.xid - a.xid) / n;
			r->wal_per = (double)(b.wal - a.wal) / n;
		}
	}
	g_have_ref = 1;
	note("reference: %.0f tps (latency average %.2f ms)", r->rate, r->lat_avg);
	return;
fail:
	r->errors++;
	g_errors++;
	note("reference failed: %s", r->err);
}

/* ---- output --------------------------------------------------------------------------- */

static void
fmt_num(char *b, size_t n, double v, int prec)
{
	if (v < 0 || isnan(v))
		snprintf(b, n, "-");
	else
		snprintf(b, n, "%.*f", prec, v);
}

static void
print_row(FILE *f, const result *r, int is_ref)
{
	char rate[32], ratio[32], p50[32], p95[32], p99[32], cpu[32], rss[32], x[32], wal[32];
	fmt_num(rate, sizeof(rate), r->errors && r->measured == 0 ? -1 : r->rate, 0);
	fmt_num(ratio, sizeof(ratio), g_have_ref && g_ref.rate > 0 ? r->rate / g_ref.rate : -1, 3);
	fmt_num(p50, sizeof(p50), is_ref ? -1 : r->p50, 2);
	fmt_num(p95, sizeof(p95), is_ref ? -1 : r->p95, 2);
	fmt_num(p99, sizeof(p99), is_ref ? -1 : r->p99, 2);
	fmt_num(cpu, sizeof(cpu), is_ref ? -1 : r->cpu.sagad, 0);
	fmt_num(rss, sizeof(rss), is_ref ? -1 : r->rss_peak_mb, 1);
	fmt_num(x, sizeof(x), r->xact_per, 2);
	fmt_num(wal, sizeof(wal), r->wal_per, 0);
	fprintf(f, "%-12s %4d %9s %7s %8s %8s %8s %7s %9s %8s %8s %6ld\n", r->name, r->conc, rate,
	    ratio, p50, p95, p99, cpu, rss, x, wal, r->errors);
}

/* CPU the machine spent outside the processes of this run (other
 * programs, the kernel's own threads), in % of one core: a run with much
 * of it was disturbed. */
static double
cpu_other(const cpu_pct *c)
{
	double o = c->machine * (double)sysconf(_SC_NPROCESSORS_ONLN) -
	    (c->sagad + c->pg + c->parts + c->self);
	return o > 0 ? o : 0;
}

static void
print_cpu_row(FILE *f, const result *r)
{
	fprintf(f, "%-12s %4d %7.0f %7.0f %7.0f %7.0f %7.0f %9.0f\n", r->name, r->conc,
	    r->cpu.sagad, r->cpu.pg, r->cpu.parts, r->cpu.self, cpu_other(&r->cpu), r->cpu.machine);
}

static const result *
find_res(const char *name, int conc)
{
	for (size_t i = 0; i < g_n_res; i++)
		if (strcmp(g_res[i].name, name) == 0 && g_res[i].conc == conc)
			return &g_res[i];
	return NULL;
}

static void target(FILE *f, int known, int pass, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void
target(FILE *f, int known, int pass, const char *fmt, ...)
{
	va_list ap;
	fprintf(f, "  [%s] ", !known ? " n/a" : pass ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

static void
print_report(FILE *f)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	fprintf(f,
	    "\nsagabench %s: %.0f s measured after %.0f s warm-up per run, %d %s participant "
	    "process(es) of capacity %u, %ld CPUs\n",
	    g_started_at, O.duration, O.warmup, O.part_procs, O.node ? "Node.js" : "C", O.capacity,
	    ncpu);
	fprintf(f, "%-12s %4s %9s %7s %8s %8s %8s %7s %9s %8s %8s %6s\n", "scenario", "C",
	    "sagas/s", "x_ref", "p50_ms", "p95_ms", "p99_ms", "sagad%", "rss_MB", "xact/sg",
	    "walB/sg", "errors");
	print_row(f, &g_ref, 1);
	for (size_t i = 0; i < g_n_res; i++)
		print_row(f, &g_res[i], 0);
	if (g_have_ref)
		fprintf(f,
		    "(pgbench: sagas/s is tps, xact/sg and walB/sg are per transaction; latency "
		    "average %.2f ms)\n",
		    g_ref.lat_avg);

	fprintf(f,
	    "\nCPU during the measured window, %% of one core (driver: sagabench, or pgbench "
	    "itself; other: the rest of the machine; machine: %% of all %ld):\n",
	    ncpu);
	fprintf(f, "%-12s %4s %7s %7s %7s %7s %7s %9s\n", "scenario", "C", "sagad", "postgres",
	    "partic.", "driver", "other", "machine");
	print_cpu_row(f, &g_ref);
	for (size_t i = 0; i < g_n_res; i++)
		print_cpu_row(f, &g_res[i]);

	if (g_inf.ran) {
		fprintf(f, "\nIn flight: %ld sagas (%ld started at %.0f/s) parked at a slow S2\n",
		    g_inf.n, g_inf.started, g_inf.start_rate);
		fprintf(f, "  sagad RSS with them in flight      %8.1f MB (peak so far %.1f MB)\n",
		    g_inf.rss_mb, g_inf.hwm_mb);
		fprintf(
		    f, "  kill -9, restart: answering after  %8.0f ms\n", g_inf.restart_ready_ms);
		fprintf(f,
		    "  first dispatch after the restart   %8.0f ms (%.0f ms after answering)\n",
		    g_inf.resume_ms, g_inf.resume_after_ready_ms);
		fprintf(f, "  all complete after the restart     %8.1f s  (%.0f sagas/s)\n",
		    g_inf.drain_s, g_inf.drain_s > 0 ? (double)g_inf.started / g_inf.drain_s : 0);
		fprintf(f, "  restarted sagad's peak RSS         %8.1f MB\n", g_inf.rss_after_mb);
		fprintf(f, "  errors                             %8ld%s%s\n", g_inf.errors,
		    g_inf.err[0] ? "  " : "", g_inf.err);
	}

	fprintf(f, "\nTargets (informative; the exit status depends only on errors):\n");
	const result *t1 = find_res("3step", 1), *t64 = find_res("3step", 64);
	const result *ten64 = find_res("10step", 64);
	target(f, t64 != NULL && g_have_ref, t64 && g_have_ref && t64->rate >= g_ref.rate,
	    "3step C=64 rate >= 1.0x reference: %.0f vs %.0f (%.2fx)", t64 ? t64->rate : 0,
	    g_ref.rate, t64 && g_ref.rate > 0 ? t64->rate / g_ref.rate : 0);
	target(f, t1 != NULL && t1->p50 >= 0, t1 && t1->p50 >= 0 && t1->p50 < 2.0,
	    "3step C=1 p50 < 2 ms: %.2f ms", t1 ? t1->p50 : 0);
	target(f, t64 != NULL && t64->p99 >= 0, t64 && t64->p99 >= 0 && t64->p99 < 50.0,
	    "3step C=64 p99 < 50 ms: %.2f ms", t64 ? t64->p99 : 0);
	target(f, ten64 != NULL && t64 != NULL, ten64 && t64 && ten64->rate >= 0.25 * t64->rate,
	    "10step C=64 rate >= 0.25x 3step C=64: %.0f vs %.0f (%.2fx)", ten64 ? ten64->rate : 0,
	    t64 ? t64->rate : 0, ten64 && t64 && t64->rate > 0 ? ten64->rate / t64->rate : 0);
	target(f, g_inf.ran && g_inf.rss_mb > 0, g_inf.rss_mb > 0 && g_inf.rss_mb < 100.0,
	    "sagad RSS < 100 MB with %ld in flight: %.1f MB", g_inf.n, g_inf.rss_mb);
	target(f, g_inf.ran && g_inf.resume_ms >= 0, g_inf.resume_ms >= 0 && g_inf.resume_ms < 1000,
	    "dispatch resumes < 1 s after a restart: %.0f ms", g_inf.resume_ms);
	target(f, g_inf.ran, g_inf.ran && g_inf.drain_s > 0 && g_inf.errors == 0,
	    "all %ld complete after the restart: %s", g_inf.n, g_inf.drain_s > 0 ? "yes" : "no");

	int any_log = 0;
	for (size_t i = 0; i < g_n_res; i++)
		if (g_res[i].log_lines > 0) {
			if (!any_log)
				fprintf(f, "\nsagad logged warnings/errors:\n");
			any_log = 1;
			fprintf(f, "  %s C=%d: %d lines, first: %s\n", g_res[i].name, g_res[i].conc,
			    g_res[i].log_lines, g_res[i].log_note);
		}
	int any_err = 0;
	for (size_t i = 0; i < g_n_res; i++)
		if (g_res[i].errors > 0) {
			if (!any_err)
				fprintf(f, "\nErrors:\n");
			any_err = 1;
			fprintf(f, "  %s C=%d: %s\n", g_res[i].name, g_res[i].conc, g_res[i].err);
		}
	if (g_ref.errors > 0)
		fprintf(f, "  reference: %s\n", g_ref.err);
	fprintf(f, "\n%s\n",
	    g_errors == 0 ? "OK: every saga reached the expected final state"
			  : "ERRORS: see above");
	fflush(f);
}

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void
json_num(FILE *f, const char *key, double v, int comma)
{
	if (v < 0 || isnan(v) || isinf(v))
		fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
	else
		fprintf(f, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
}

static void
json_result(FILE *f, const result *r)
{
	fprintf(f, "    {\"scenario\": ");
	json_str(f, r->name);
	fprintf(f, ", \"concurrency\": %d, ", r->conc);
	json_num(f, "rate", r->rate, 1);
	json_num(f, "ratio_to_ref", g_have_ref && g_ref.rate > 0 ? r->rate / g_ref.rate : -1, 1);
	json_num(f, "p50_ms", r->p50, 1);
	json_num(f, "p95_ms", r->p95, 1);
	json_num(f, "p99_ms", r->p99, 1);
	json_num(f, "sagad_cpu_pct", r->cpu.sagad, 1);
	json_num(f, "pg_cpu_pct", r->cpu.pg, 1);
	json_num(f, "participants_cpu_pct", r->cpu.parts, 1);
	json_num(f, "driver_cpu_pct", r->cpu.self, 1);
	json_num(f, "machine_busy_pct", r->cpu.machine, 1);
	json_num(f, "other_cpu_pct", cpu_other(&r->cpu), 1);
	json_num(f, "sagad_peak_rss_mb", r->rss_peak_mb, 1);
	json_num(f, "sagad_end_rss_mb", r->rss_end_mb, 1);
	json_num(f, "pg_xact_per_saga", r->xact_per, 1);
	json_num(f, "wal_bytes_per_saga", r->wal_per, 1);
	fprintf(f, "\"measured\": %ld, \"started\": %ld, \"errors\": %ld, \"error\": ", r->measured,
	    r->started, r->errors);
	json_str(f, r->err);
	fprintf(f, "}");
}

static int
write_json(const char *path)
{
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		note("cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f,
	    "{\n  \"duration_s\": %g, \"warmup_s\": %g, \"pgbench_seconds\": %d, "
	    "\"participant\": \"%s\",\n",
	    O.duration, O.warmup, O.pgbench_seconds, O.node ? "node" : "c");
	fprintf(f, "  \"reference\":\n");
	json_result(f, &g_ref);
	fprintf(f, ",\n  \"runs\": [\n");
	for (size_t i = 0; i < g_n_res; i++) {
		json_result(f, &g_res[i]);
		fprintf(f, "%s\n", i + 1 < g_n_res ? "," : "");
	}
	fprintf(f, "  ],\n  \"inflight\": ");
	if (!g_inf.ran) {
		fprintf(f, "null");
	} else {
		fprintf(f, "{\"sagas\": %ld, \"started\": %ld, ", g_inf.n, g_inf.started);
		json_num(f, "start_rate", g_inf.start_rate, 1);
		json_num(f, "sagad_rss_mb", g_inf.rss_mb, 1);
		json_num(f, "sagad_peak_rss_mb", g_inf.hwm_mb, 1);
		json_num(f, "restart_answering_ms", g_inf.restart_ready_ms, 1);
		json_num(f, "resume_ms", g_inf.resume_ms, 1);
		json_num(f, "resume_after_answering_ms", g_inf.resume_after_ready_ms, 1);
		json_num(f, "drain_s", g_inf.drain_s, 1);
		json_num(f, "restarted_peak_rss_mb", g_inf.rss_after_mb, 1);
		fprintf(f, "\"errors\": %ld, \"error\": ", g_inf.errors);
		json_str(f, g_inf.err);
		fprintf(f, "}");
	}
	fprintf(f, ",\n  \"errors\": %d\n}\n", g_errors);
	return fclose(f) == 0 ? 0 : -1;
}

/* ---- main ------------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sagabench [options]\n"
	    "  --duration S          measured seconds per run (default 15; --quick 3)\n"
	    "  --warmup S            warm-up seconds per run (default 3; --quick 1)\n"
	    "  --concurrency LIST    concurrent starters C (default 1,16,64; --quick 1,64)\n"
	    "  --scenarios LIST      3step,10step,comp10,payload10k,parallel3,inflight100k\n"
	    "                        (default: all)\n"
	    "  --pgbench-seconds S   reference run (default 20; --quick 5; 0 = skip)\n"
	    "  --inflight N          sagas parked by inflight100k (default 100000; --quick 10000)\n"
	    "  --participants N      bench-participant processes per run (default 1)\n"
	    "  --capacity N          capacity of every participant worker (default 256)\n"
	    "  --participant KIND    c (default): bench-participant, on libsaga in C; node:\n"
	    "                        bench/bench-participant.js on the npm package libsaga\n"
	    "  --instances N         sagads sharing the database (default 1; at most 8): the\n"
	    "                        participants and the drivers are given every one\n"
	    "  --sagad-arg ARG       pass ARG to sagad (repeatable), e.g. "
	    "--sagad-arg=--max-batch=500\n"
	    "  --tls DIR             mutual TLS everywhere (tls+tcp://), with DIR/ca.pem,\n"
	    "                        sagad.pem, sagad.key, client.pem, client.key (as\n"
	    "                        docker/dev-certs.sh DIR makes them)\n"
	    "  --quick               short smoke run (about 1-2 minutes)\n"
	    "  --keep                keep the temp dir (logs, PostgreSQL data)\n"
	    "  --two-calls           drive with start then wait (two requests per saga)\n"
	    "                        instead of saga_client_run (one)\n"
	    "  --out FILE.json       also write the results as JSON\n"
	    "  --auth                run sagad with --auth on: drivers use a client credential,\n"
	    "                        participants participant credentials (docs/SECURITY.md)\n");
}

static int
parse_list_int(const char *s)
{
	char *copy = strdup(s), *save = NULL;
	O.n_conc = 0;
	if (copy == NULL)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		long v = strtol(t, NULL, 10);
		if (v < 1 || v > MAX_THREADS || O.n_conc == MAX_CONC) {
			free(copy);
			return -1;
		}
		O.conc[O.n_conc++] = (int)v;
	}
	free(copy);
	return O.n_conc > 0 ? 0 : -1;
}

static int
parse_scenarios(const char *s)
{
	char *copy = strdup(s), *save = NULL;
	if (copy == NULL)
		return -1;
	memset(O.want, 0, sizeof(O.want));
	O.want_inflight = 0;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		int found = 0;
		for (size_t i = 0; i < N_SCEN; i++)
			if (strcmp(t, scenarios[i].name) == 0)
				O.want[i] = found = 1;
		if (strncmp(t, "inflight", 8) == 0)
			O.want_inflight = found = 1;
		if (!found) {
			fprintf(stderr, "sagabench: unknown scenario %s\n", t);
			free(copy);
			return -1;
		}
	}
	free(copy);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dur = NULL, *warm = NULL, *conc = NULL, *scens = NULL, *pgs = NULL,
		   *inflight = NULL;
	struct sigaction sa;
	struct utsname un;

	O.part_procs = 1;
	O.capacity = 256;
	O.inflight_starters = 64;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i], *v = NULL, *eq;
		if (strcmp(a, "--quick") == 0) {
			O.quick = 1;
			continue;
		}
		if (strcmp(a, "--two-calls") == 0) {
			g_two_calls = 1;
			continue;
		}
		if (strcmp(a, "--auth") == 0) {
			O.auth = 1;
			continue;
		}
		if (strcmp(a, "--keep") == 0) {
			O.keep = 1;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strncmp(a, "--", 2) == 0 && (eq = strchr(a, '=')) != NULL) {
			*eq = '\0';
			v = eq + 1;
		} else if (i + 1 < argc) {
			v = argv[++i];
		} else {
			usage(stderr);
			return 2;
		}
		if (strcmp(a, "--duration") == 0)
			dur = v;
		else if (strcmp(a, "--warmup") == 0)
			warm = v;
		else if (strcmp(a, "--concurrency") == 0)
			conc = v;
		else if (strcmp(a, "--scenarios") == 0)
			scens = v;
		else if (strcmp(a, "--pgbench-seconds") == 0)
			pgs = v;
		else if (strcmp(a, "--inflight") == 0)
			inflight = v;
		else if (strcmp(a, "--instances") == 0)
			O.instances = atoi(v) < 1     ? 1
			    : atoi(v) > MAX_INSTANCES ? MAX_INSTANCES
						      : atoi(v);
		else if (strcmp(a, "--participants") == 0)
			O.part_procs = atoi(v);
		else if (strcmp(a, "--capacity") == 0)
			O.capacity = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--sagad-arg") == 0 && O.n_sagad_args < 32)
			O.sagad_args[O.n_sagad_args++] = v;
		else if (strcmp(a, "--out") == 0)
			O.out = v;
		else if (strcmp(a, "--tls") == 0)
			O.tls_dir = v;
		else if (strcmp(a, "--participant") == 0 &&
		    (strcmp(v, "c") == 0 || strcmp(v, "node") == 0))
			O.node = strcmp(v, "node") == 0;
		else {
			usage(stderr);
			return 2;
		}
	}
	O.duration = dur ? strtod(dur, NULL) : O.quick ? 3 : 15;
	O.warmup = warm ? strtod(warm, NULL) : O.quick ? 1 : 3;
	O.pgbench_seconds = pgs ? atoi(pgs) : O.quick ? 5 : 20;
	O.inflight = inflight ? strtol(inflight, NULL, 10) : O.quick ? 10000 : 100000;
	O.inflight_timeout_s = O.quick ? 120 : 300;
	if (parse_list_int(conc ? conc
		    : O.quick   ? "1,64"
				: "1,16,64") != 0 ||
	    parse_scenarios(scens ? scens : "3step,10step,comp10,payload10k,parallel3,inflight") !=
		0 ||
	    O.duration <= 0 || O.warmup < 0 || O.pgbench_seconds < 0 || O.inflight < 1 ||
	    O.part_procs < 1 || O.part_procs > MAX_PARTS || O.capacity < 1) {
		usage(stderr);
		return 2;
	}

	g_sagad_bin = env_or("SAGAD_BIN", BENCH_SAGAD);
	g_part_bin = env_or("BENCH_PARTICIPANT_BIN", BENCH_PARTICIPANT);
	g_binpb = env_or("BENCH_BINPB", BENCH_BINPB);
	g_pgbench_script = env_or("BENCH_PGBENCH_SCRIPT", BENCH_PGBENCH_SCRIPT);
	g_node_bin = env_or("NODE_BIN", "node");
	g_node_part = env_or("BENCH_NODE_PARTICIPANT", BENCH_NODE_PARTICIPANT);
	if (O.node) {
		/* Found now, with the reason, rather than as a participant that
		 * never connects. */
		const char *addon = env_or("SAGA_NODE_ADDON", BENCH_NODE_ADDON);
		if (addon[0] == '\0' || access(addon, R_OK) != 0 ||
		    access(g_node_part, R_OK) != 0) {
			fprintf(stderr,
			    "sagabench: --participant node needs the Node.js addon and %s\n"
			    "sagabench: the addon %s; set SAGA_NODE_ADDON, or install libnode-dev\n"
			    "sagabench: and reconfigure meson so that it is built\n",
			    g_node_part, addon[0] == '\0' ? "was not built" : addon);
			return 2;
		}
		snprintf(g_node_addon_env, sizeof(g_node_addon_env), "SAGA_NODE_ADDON=%s", addon);
		const char *pre = getenv("BENCH_NODE_PRELOAD"), *ao = getenv("ASAN_OPTIONS");
		if (pre != NULL && pre[0] != '\0') {
			snprintf(
			    g_node_preload_env, sizeof(g_node_preload_env), "LD_PRELOAD=%s", pre);
			snprintf(g_node_asan_env, sizeof(g_node_asan_env),
			    "ASAN_OPTIONS=%s%sdetect_leaks=0", ao != NULL ? ao : "",
			    ao != NULL && ao[0] != '\0' ? ":" : "");
		}
	}
	g_clk_tck = sysconf(_SC_CLK_TCK);
	if (O.pgbench_seconds > 0 && find_pg_bindir() != 0) {
		fprintf(stderr, "sagabench: cannot find pgbench (set SAGAD_PG_BINDIR)\n");
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	{
		time_t t = time(NULL);
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(g_started_at, sizeof(g_started_at), "%Y-%m-%d %H:%M %Z", &tm);
	}
	uname(&un);
	note("sagad %s; %ld CPUs; %s %s", g_sagad_bin, sysconf(_SC_NPROCESSORS_ONLN), un.sysname,
	    un.release);
	if (O.tls_dir != NULL) {
		/* A bad file is found here, not in the middle of a run. */
		saga_client *c = NULL;
		if (saga_client_new("tls+tcp://127.0.0.1:1", &c) != SAGA_OK)
			return 1;
		client_tls(c);
		saga_client_free(c);
		note("mutual TLS on every connection (tls+tcp://), certificates in %s", O.tls_dir);
	}
	if ((g_dir = th_tmpdir()) == NULL) {
		return 1;
	}
	{
		/* A durable cluster: th_pg keeps fsync on; synchronous_commit
		 * and everything else are PostgreSQL's defaults. */
		th_pg_opts po = { .fsync = 1, .max_connections = 0 };
		if (th_pg_start_opts(&g_pg, &po) != 0) {
			cleanup();
			return 1;
		}
	}
	if ((g_stat = th_pg_connect(g_pg, "postgres")) == NULL) {
		cleanup();
		return 1;
	}
	{
		PGresult *r = PQexec(g_stat,
		    "SELECT current_setting('fsync') || ' ' || "
		    "current_setting('synchronous_commit')"
		    " || ' ' || current_setting('shared_buffers') || ' ' || version()");
		if (PQresultStatus(r) == PGRES_TUPLES_OK)
			note("PostgreSQL (fsync, synchronous_commit, shared_buffers): %s",
			    PQgetvalue(r, 0, 0));
		PQclear(r);
	}

	if (O.pgbench_seconds > 0 && !g_stop)
		run_reference();
	for (size_t s = 0; s < N_SCEN && !g_stop; s++) {
		if (!O.want[s])
			continue;
		for (size_t c = 0; c < O.n_conc && !g_stop && g_n_res < MAX_RUNS; c++)
			run_closed(&scenarios[s], O.conc[c], &g_res[g_n_res++]);
	}
	if (O.want_inflight && !g_stop)
		run_inflight();

	if (g_stop) {
		note("interrupted; stopping everything");
		cleanup();
		_exit(130); /* driver threads may still be inside libsaga */
	}
	print_report(stdout);
	if (O.out != NULL && write_json(O.out) != 0)
		g_errors++;
	if (g_errors > 0)
		O.keep = 1;
	cleanup();
	return g_errors > 0 ? 1 : 0;
}
