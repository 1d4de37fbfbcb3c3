/* th_pg: throw-away PostgreSQL clusters for tests. See th.h. */
#define _GNU_SOURCE
#include "th.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG_PORT      "5432"
/* Bumped when the template's initdb options change. */
#define TEMPLATE_REV 1

struct th_pg {
	char dir[256];  /* socket dir and base; removed by th_pg_free */
	char data[300]; /* dir/data */
	char log[300];  /* dir/postgres.log */
	th_pg_opts opts;
	pid_t pid;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_bindir[4096];
static int g_major;

/* As root, PostgreSQL runs as this user; NULL = as ourselves. */
static const char *
pg_user(void)
{
	const char *u;
	if (geteuid() != 0)
		return NULL;
	u = getenv("TH_PG_USER");
	return u != NULL && u[0] != '\0' ? u : "postgres";
}

static int
chown_to_pg(const char *path)
{
	const char *u = pg_user();
	struct passwd *pw;
	if (u == NULL)
		return 0;
	if ((pw = getpwnam(u)) == NULL) {
		fprintf(stderr, "th_pg: running as root needs OS user %s for PostgreSQL\n", u);
		return -1;
	}
	if (chown(path, pw->pw_uid, pw->pw_gid) != 0) {
		fprintf(stderr, "th_pg: chown %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
has_initdb(const char *dir)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/initdb", dir);
	return access(p, X_OK) == 0;
}

/* One line of a command's stdout (popen: test code, trusted arguments). */
static int
first_line(const char *cmd, char *out, size_t outlen)
{
	FILE *f = popen(cmd, "r");
	int ok;
	if (f == NULL)
		return -1;
	ok = fgets(out, (int)outlen, f) != NULL;
	pclose(f);
	if (!ok)
		return -1;
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

static int
find_bindir(void)
{
	const char *env = getenv("SAGAD_PG_BINDIR");
	char line[4096], cmd[4200];
	const char *ver;

	if (g_bindir[0] != '\0')
		return 0;
	if (env != NULL && env[0] != '\0' && has_initdb(env)) {
		snprintf(g_bindir, sizeof(g_bindir), "%s", env);
	} else if (first_line("pg_config --bindir 2>/dev/null", line, sizeof(line)) == 0 &&
	    has_initdb(line)) {
		snprintf(g_bindir, sizeof(g_bindir), "%s", line);
	} else {
		DIR *d = opendir("/usr/lib/postgresql");
		struct dirent *e;
		long best = -1;
		while (d != NULL && (e = readdir(d)) != NULL) {
			char bin[4096];
			long v = strtol(e->d_name, NULL, 10);
			snprintf(bin, sizeof(bin), "/usr/lib/postgresql/%s/bin", e->d_name);
			if (v > best && has_initdb(bin)) {
				best = v;
				snprintf(g_bindir, sizeof(g_bindir), "%s", bin);
			}
		}
		if (d != NULL)
			closedir(d);
	}
	if (g_bindir[0] == '\0') {
		fprintf(stderr, "th_pg: cannot find initdb (set SAGAD_PG_BINDIR)\n");
		return -1;
	}
	/* "postgres (PostgreSQL) 15.5 (Debian ...)" -> 15 */
	snprintf(cmd, sizeof(cmd), "'%s/postgres' --version", g_bindir);
	if (first_line(cmd, line, sizeof(line)) != 0 || (ver = strstr(line, ") ")) == NULL) {
		fprintf(stderr, "th_pg: cannot run %s\n", cmd);
		g_bindir[0] = '\0';
		return -1;
	}
	g_major = atoi(ver + 2);
	return 0;
}

/* Runs argv (as the PostgreSQL user if `as_pg`), output into log. */
static int
run(const char *const argv[], int as_pg, const char *log, int timeout_ms)
{
	int st;
	pid_t pid = th_spawn_as(argv, NULL, log, as_pg ? pg_user() : NULL);
	if (pid < 0)
		return -1;
	if (th_wait_exit(pid, timeout_ms, &st) != 0) {
		kill(pid, SIGKILL);
		(void)th_wait_exit(pid, 5000, NULL);
		fprintf(stderr, "th_pg: %s timed out\n", argv[0]);
		return -1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char *out = log != NULL ? th_read_file(log, NULL) : NULL;
		fprintf(stderr, "th_pg: %s failed (status 0x%x)%s%s\n", argv[0], st,
		    out != NULL ? ":\n" : "", out != NULL ? out : "");
		free(out);
		return -1;
	}
	return 0;
}

/*
 * initdb takes seconds, a copy of its result a fraction of one: initdb
 * once per machine, user and major version into a template and copy that.
 * Concurrent test processes each build into a private directory and
 * rename() it into place; the loser throws its copy away.
 */
static int
ensure_template(char *tpl, size_t tpllen)
{
	char work[64], data[96], log[96], pv[4200];
	int rv = -1;

	snprintf(tpl, tpllen, "/tmp/saga-test-template-%u-%d-r%d", (unsigned)geteuid(), g_major,
	    TEMPLATE_REV);
	snprintf(pv, sizeof(pv), "%s/PG_VERSION", tpl);
	if (access(pv, F_OK) == 0)
		return 0;
	snprintf(work, sizeof(work), "/tmp/saga-test-tpl-XXXXXX");
	if (mkdtemp(work) == NULL || chmod(work, 0711) != 0) {
		fprintf(stderr, "th_pg: mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(data, sizeof(data), "%s/data", work);
	snprintf(log, sizeof(log), "%s/initdb.log", work);
	if (mkdir(data, 0700) != 0 || chown_to_pg(data) != 0)
		goto fail;
	{
		char initdb[4200];
		snprintf(initdb, sizeof(initdb), "%s/initdb", g_bindir);
		const char *argv[] = { initdb, "-D", data, "-U", "saga", "-A", "trust", "-E",
			"UTF8", "--locale=C", "--nosync", NULL };
		if (run(argv, 1, log, 120000) != 0)
			goto fail;
	}
	if (rename(data, tpl) != 0 && errno != ENOTEMPTY && errno != EEXIST) {
		fprintf(stderr, "th_pg: rename %s %s: %s\n", data, tpl, strerror(errno));
		goto fail;
	}
	rv = 0;
fail:
	th_rm_rf(work);
	return rv;
}

static char *
conninfo(const th_pg *pg, const char *db)
{
	char *s;
	if (asprintf(&s, "host='%s' port=" PG_PORT " dbname=%s user=saga", pg->dir, db) < 0)
		return NULL;
	return s;
}

/* Starts postgres as our child (so that it dies with the test) and waits
 * until it accepts connections. Fails fast if it exits. */
static int
start_server(th_pg *pg)
{
	char postgres[4200], fs[32], mc[48], la[96];
	const char *argv[20];
	int i = 0, st;
	char *ci;
	long long deadline;

	snprintf(postgres, sizeof(postgres), "%s/postgres", g_bindir);
	argv[i++] = postgres;
	argv[i++] = "-D";
	argv[i++] = pg->data;
	argv[i++] = "-k";
	argv[i++] = pg->dir;
	snprintf(la, sizeof(la), "listen_addresses=%s", pg->opts.listen_addresses);
	argv[i++] = "-c";
	argv[i++] = la;
	argv[i++] = "-p";
	argv[i++] = PG_PORT;
	snprintf(fs, sizeof(fs), "fsync=%s", pg->opts.fsync ? "on" : "off");
	argv[i++] = "-c";
	argv[i++] = fs;
	if (pg->opts.max_connections > 0) {
		snprintf(mc, sizeof(mc), "max_connections=%d", pg->opts.max_connections);
		argv[i++] = "-c";
		argv[i++] = mc;
	}
	argv[i] = NULL;

	pg->pid = th_spawn_as(argv, NULL, pg->log, pg_user());
	if (pg->pid < 0)
		return -1;
	if ((ci = conninfo(pg, "postgres")) == NULL)
		return -1;
	deadline = th_now_ms() + 60000;
	while (th_now_ms() < deadline) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		if (PQping(ci) == PQPING_OK) {
			free(ci);
			return 0;
		}
		if (waitpid(pg->pid, &st, WNOHANG) == pg->pid) {
			pg->pid = -1;
			break;
		}
		nanosleep(&ts, NULL);
	}
	free(ci);
	if (pg->pid > 0) {
		kill(pg->pid, SIGKILL);
		(void)th_wait_exit(pg->pid, 5000, NULL);
		pg->pid = -1;
	}
	return -1;
}

static void
print_log(const th_pg *pg, const char *what)
{
	char *out = th_read_file(pg->log, NULL);
	fprintf(stderr, "th_pg: %s; %s:\n%s\n", what, pg->log, out != NULL ? out : "(no log)");
	free(out);
}

int
th_pg_start_opts(th_pg **out, const th_pg_opts *opts)
{
	const char *base = getenv("TMPDIR");
	char tpl[256];
	th_pg *pg;

	*out = NULL;
	pthread_mutex_lock(&g_mu);
	if (find_bindir() != 0 || ensure_template(tpl, sizeof(tpl)) != 0) {
		pthread_mutex_unlock(&g_mu);
		return -1;
	}
	pthread_mutex_unlock(&g_mu);

	if ((pg = calloc(1, sizeof(*pg))) == NULL)
		return -1;
	pg->pid = -1;
	pg->opts = *opts;
	/* The socket path must fit sun_path (108 bytes) and be one element
	 * of unix_socket_directories: fall back to /tmp for odd $TMPDIRs. */
	if (base == NULL || base[0] == '\0' || strlen(base) > 60 ||
	    strpbrk(base, " ,\"'\\") != NULL)
		base = "/tmp";
	snprintf(pg->dir, sizeof(pg->dir), "%s/th-pg-XXXXXX", base);
	if (mkdtemp(pg->dir) == NULL) {
		fprintf(stderr, "th_pg: mkdtemp %s: %s\n", pg->dir, strerror(errno));
		free(pg);
		return -1;
	}
	snprintf(pg->data, sizeof(pg->data), "%s/data", pg->dir);
	snprintf(pg->log, sizeof(pg->log), "%s/postgres.log", pg->dir);
	if (chown_to_pg(pg->dir) != 0)
		goto fail;
	{
		/* cp -a keeps the owner (postgres) and the 0700 modes. */
		const char *argv[] = { "cp", "-a", tpl, pg->data, NULL };
		if (run(argv, 0, NULL, 60000) != 0)
			goto fail;
	}
	if (pg->opts.listen_addresses[0] != '\0') {
		char hba[320];
		snprintf(hba, sizeof(hba), "%s/pg_hba.conf", pg->data);
		FILE *f = fopen(hba, "a");
		if (f == NULL || fputs("host all saga 0.0.0.0/0 trust\n", f) == EOF) {
			fprintf(stderr, "th_pg: %s: %s\n", hba, strerror(errno));
			if (f != NULL)
				fclose(f);
			goto fail;
		}
		fclose(f);
	}
	if (start_server(pg) != 0) {
		print_log(pg, "postgres did not start");
		goto fail;
	}
	*out = pg;
	return 0;
fail:
	th_rm_rf(pg->dir);
	free(pg);
	return -1;
}

int
th_pg_start_standby(th_pg *primary, th_pg **out)
{
	const char *base = getenv("TMPDIR");
	th_pg *pg;
	char pgbb[4200], log[320];

	*out = NULL;
	if ((pg = calloc(1, sizeof(*pg))) == NULL)
		return -1;
	pg->pid = -1;
	pg->opts = primary->opts;
	if (base == NULL || base[0] == '\0' || strlen(base) > 60 ||
	    strpbrk(base, " ,\"'\\") != NULL)
		base = "/tmp";
	snprintf(pg->dir, sizeof(pg->dir), "%s/th-pg-XXXXXX", base);
	if (mkdtemp(pg->dir) == NULL) {
		free(pg);
		return -1;
	}
	snprintf(pg->data, sizeof(pg->data), "%s/data", pg->dir);
	snprintf(pg->log, sizeof(pg->log), "%s/postgres.log", pg->dir);
	snprintf(log, sizeof(log), "%s/basebackup.log", pg->dir);
	if (chown_to_pg(pg->dir) != 0)
		goto fail;
	snprintf(pgbb, sizeof(pgbb), "%s/pg_basebackup", g_bindir);
	{
		/* -R: standby.signal and primary_conninfo; the standby streams
		 * from the primary's socket. */
		const char *argv[] = { pgbb, "-h", primary->dir, "-p", PG_PORT, "-U", "saga", "-D",
			pg->data, "-R", "-X", "stream", "--no-sync", NULL };
		if (run(argv, 1, log, 120000) != 0) {
			char *msg = th_read_file(log, NULL);
			fprintf(stderr, "th_pg: pg_basebackup failed: %s\n", msg ? msg : "");
			free(msg);
			goto fail;
		}
	}
	if (start_server(pg) != 0) {
		print_log(pg, "the standby did not start");
		goto fail;
	}
	*out = pg;
	return 0;
fail:
	th_rm_rf(pg->dir);
	free(pg);
	return -1;
}

int
th_pg_start(th_pg **out)
{
	th_pg_opts o = { .fsync = 1, .max_connections = 0 };
	return th_pg_start_opts(out, &o);
}

int
th_pg_stop(th_pg *pg)
{
	if (pg == NULL || pg->pid <= 0)
		return 0;
	/* SIGQUIT is what pg_ctl stop -m immediate sends. */
	kill(pg->pid, SIGQUIT);
	if (th_wait_exit(pg->pid, 10000, NULL) != 0) {
		kill(pg->pid, SIGKILL);
		(void)th_wait_exit(pg->pid, 5000, NULL);
	}
	pg->pid = -1;
	return 0;
}

int
th_pg_kill(th_pg *pg)
{
	if (pg == NULL || pg->pid <= 0)
		return 0;
	kill(pg->pid, SIGKILL);
	(void)th_wait_exit(pg->pid, 5000, NULL);
	pg->pid = -1;
	return 0;
}

int
th_pg_restart(th_pg *pg)
{
	long long deadline = th_now_ms() + 15000;

	th_pg_stop(pg);
	/* After a SIGKILL, backends may still hold the old shared memory for
	 * a moment ("pre-existing shared memory block is still in use"):
	 * retry until they are gone. */
	for (;;) {
		if (start_server(pg) == 0)
			return 0;
		if (th_now_ms() >= deadline) {
			print_log(pg, "postgres did not restart");
			return -1;
		}
		struct timespec ts = { 0, 200 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

void
th_pg_free(th_pg *pg)
{
	if (pg == NULL)
		return;
	th_pg_stop(pg);
	th_rm_rf(pg->dir);
	free(pg);
}

int
th_pg_freeze(th_pg *pg, int frozen)
{
	if (pg == NULL || pg->pid <= 0)
		return -1;
	int sig = frozen ? SIGSTOP : SIGCONT;
	DIR *d = opendir("/proc");
	struct dirent *e;
	/* Children first when freezing (nothing new forks meanwhile), the
	 * postmaster first when thawing. */
	if (!frozen)
		kill(pg->pid, sig);
	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], buf[512];
		long pid = strtol(e->d_name, NULL, 10);
		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		const char *rp = strrchr(buf, ')');
		long ppid = 0;
		char state;
		if (rp != NULL && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == pg->pid)
			kill((pid_t)pid, sig);
	}
	if (d != NULL)
		closedir(d);
	if (frozen)
		kill(pg->pid, sig);
	return 0;
}

const char *
th_pg_bindir(void)
{
	pthread_mutex_lock(&g_mu);
	int rv = find_bindir();
	pthread_mutex_unlock(&g_mu);
	return rv == 0 ? g_bindir : NULL;
}

const char *
th_pg_user(void)
{
	return pg_user();
}

const char *
th_pg_dir(const th_pg *pg)
{
	return pg->dir;
}

pid_t
th_pg_pid(const th_pg *pg)
{
	return pg->pid;
}

char *
th_pg_conninfo(const th_pg *pg, const char *dbname)
{
	return conninfo(pg, dbname);
}

PGconn *
th_pg_connect(const th_pg *pg, const char *dbname)
{
	char *ci = conninfo(pg, dbname);
	PGconn *c;
	if (ci == NULL)
		return NULL;
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "th_pg: connect %s: %s", ci, PQerrorMessage(c));
		PQfinish(c);
		c = NULL;
	}
	free(ci);
	return c;
}

static int
exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);
	int ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "th_pg: %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

int
th_pg_create_db(th_pg *pg, const char *dbname)
{
	PGconn *c = th_pg_connect(pg, "postgres");
	char *id = NULL, *sql = NULL;
	int rv = -1;

	if (c == NULL)
		return -1;
	/* Identifiers cannot be parameters; quote it instead. */
	if ((id = PQescapeIdentifier(c, dbname, strlen(dbname))) == NULL)
		goto fail;
	if (exec_ok(c, "SET client_min_messages = warning") != 0)
		goto fail;
	if (asprintf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", id) < 0) {
		sql = NULL;
		goto fail;
	}
	if (exec_ok(c, sql) != 0)
		goto fail;
	free(sql);
	if (asprintf(&sql, "CREATE DATABASE %s", id) < 0) {
		sql = NULL;
		goto fail;
	}
	if (exec_ok(c, sql) != 0)
		goto fail;
	rv = 0;
fail:
	free(sql);
	PQfreemem(id);
	PQfinish(c);
	return rv;
}

int
th_pg_exec(th_pg *pg, const char *dbname, const char *sql)
{
	PGconn *c = th_pg_connect(pg, dbname);
	int rv;
	if (c == NULL)
		return -1;
	rv = exec_ok(c, sql);
	PQfinish(c);
	return rv;
}

long long
th_pg_query_int(th_pg *pg, const char *dbname, const char *sql)
{
	PGconn *c = th_pg_connect(pg, dbname);
	PGresult *r;
	long long v = TH_PG_ERR;

	if (c == NULL)
		return TH_PG_ERR;
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "th_pg: %s: %s", sql, PQresultErrorMessage(r));
	else if (PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0))
		fprintf(stderr, "th_pg: %s: no value\n", sql);
	else
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}
