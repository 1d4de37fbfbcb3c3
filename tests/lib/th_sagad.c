/* th_sagad: one integration test case's world. See th_sagad.h. */
#define _GNU_SOURCE
#include "th_sagad.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PARTS 16

struct ths {
	th_pg *pg;
	char *dir;
	char dbname[64];
	char *conninfo;
	char url[600];
	char journal[600];
	char sagad_log[600];
	char ctl_err[800]; /* stderr of the last sagactl run */
	pid_t sagad;
	int sagad_starts;
	size_t n_parts;
	pid_t parts[MAX_PARTS];
	char part_inst[MAX_PARTS][64];
	saga_client *client;
	char postmaster_pidfile[700]; /* embedded PostgreSQL to kill on failure */
	/* instances 1.. of several sagads on one database */
	pid_t nsagad[THS_MAX_SAGADS];
	char nurl[THS_MAX_SAGADS][64];
	char nlog[THS_MAX_SAGADS][620];
	char urls[THS_MAX_SAGADS * 64 + 8];
	/* THS_TLS=1: sagad's own certificate and key (its --tls-* settings) */
	char srv_cert[600], srv_key[600];
	/* ths_use_tls; tls_ca[0] == '\0' = no TLS */
	char tls_ca[600], tls_cert[600], tls_key[600], tls_server_name[256];
	/* auth */
	int auth;
	char data_dir[620];
	char admin_cred[256];
	char *cred;          /* ths_set_credential; NULL = default */
	char cred_file[640]; /* the client's credential, for sagactl */
};

/* Every world made in this run is listed in the registry (one line: its
 * dir, a tab, its name). Passing tests remove their dir in ths_free, so a
 * dir still there at ths_runner_end belongs to a test that failed. The
 * registry path is set in the runner before Check forks the tests. */
static char g_registry[600];

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Prints the last `lines` lines of path to stderr. */
static void
print_tail(const char *title, const char *path, int lines)
{
	size_t len = 0;
	char *s = th_read_file(path, &len);
	if (s == NULL)
		return;
	const char *p = s + len;
	int n = 0;
	while (p > s) {
		p--;
		if (*p == '\n' && p != s + len - 1 && ++n >= lines) {
			p++;
			break;
		}
	}
	fprintf(stderr, "---- %s (%s), last %d lines ----\n%s%s---- end of %s ----\n", title, path,
	    lines, p, (len > 0 && s[len - 1] != '\n') ? "\n" : "", title);
	free(s);
}

static void
kill_postmaster(const char *pidfile)
{
	char *s;
	if (pidfile[0] == '\0' || (s = th_read_file(pidfile, NULL)) == NULL)
		return;
	long pid = strtol(s, NULL, 10);
	free(s);
	if (pid > 1)
		kill((pid_t)pid, SIGQUIT); /* immediate shutdown */
}

void
ths_runner_begin(void)
{
	char *d = th_tmpdir();
	if (d == NULL)
		return;
	snprintf(g_registry, sizeof(g_registry), "%s/worlds", d);
	free(d);
}

/* What the servers of a failed test said. */
static void
report_world(const char *dir, const char *name)
{
	char p[800];
	char *names, *save = NULL;

	fprintf(stderr, "\n==== %s failed; its files are kept in %s ====\n", name, dir);
	snprintf(p, sizeof(p), "%s/sagad.log", dir);
	print_tail("sagad log", p, 80);
	for (int i = 1; i < THS_MAX_SAGADS; i++) {
		struct stat sb;
		snprintf(p, sizeof(p), "%s/sagad-%d.log", dir, i);
		if (stat(p, &sb) == 0)
			print_tail("sagad log", p, 40);
	}
	snprintf(p, sizeof(p), "%s/participants", dir);
	if ((names = th_read_file(p, NULL)) != NULL) {
		for (char *n = strtok_r(names, "\n", &save); n != NULL;
		     n = strtok_r(NULL, "\n", &save)) {
			snprintf(p, sizeof(p), "%s/part-%s.log", dir, n);
			print_tail("participant log", p, 30);
		}
		free(names);
	}
	snprintf(p, sizeof(p), "%s/journal", dir);
	print_tail("journal", p, 60);
	snprintf(p, sizeof(p), "%s/postmaster-pidfile", dir);
	if ((names = th_read_file(p, NULL)) != NULL) {
		kill_postmaster(names);
		free(names);
	}
}

int
ths_runner_end(void)
{
	char *reg, *save = NULL;
	int n = 0;
	if (g_registry[0] == '\0')
		return 0;
	if ((reg = th_read_file(g_registry, NULL)) != NULL) {
		for (char *line = strtok_r(reg, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save)) {
			char *tab = strchr(line, '\t');
			struct stat sb;
			if (tab == NULL)
				continue;
			*tab = '\0';
			if (stat(line, &sb) == 0) {
				report_world(line, tab + 1);
				n++;
			}
		}
		free(reg);
	}
	char *slash = strrchr(g_registry, '/');
	if (slash != NULL) {
		*slash = '\0';
		th_rm_rf(g_registry);
	}
	g_registry[0] = '\0';
	return n;
}

static void
append_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		(void)!write(fd, line, strlen(line));
		close(fd);
	}
}

const char *
ths_env_ok(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v != NULL && v[0] != '\0',
	    "environment variable %s is not set (run the "
	    "test through meson test)",
	    name);
	return v;
}

/* A loopback TCP port free right now. Tests use tcp rather than ipc:
 * nng 1.5.2's ipc listener stops accepting for good after a peer drops
 * out mid-handshake (nng issue 1518), which made runs flaky. The port is
 * kept for the test's restarts of sagad. */
int
ths_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = 0;
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

char *
ths_http_get(int port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	char req[256];
	int n = snprintf(
	    req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	size_t cap = 1 << 20, len = 0;
	char *buf = calloc(1, cap);
	ssize_t k;
	while (len < cap - 1 && (k = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)k;
	close(fd);
	return buf;
}

char *
ths_http_get_timed(int port, const char *path, int timeout_ms, long long *ms)
{
	long long t0 = th_now_ms();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char *buf = calloc(1, 4096);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		char req[256];
		int n = snprintf(req, sizeof(req),
		    "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
		if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
			size_t len = 0;
			ssize_t k;
			while (len < 4095 && (k = read(fd, buf + len, 4095 - len)) > 0)
				len += (size_t)k;
		}
	}
	close(fd);
	*ms = th_now_ms() - t0;
	return buf;
}

static void world_tls(ths *t);
static int client_tls(const ths *t, saga_client *c);

ths *
ths_new_ok(th_pg *pg, const char *dbname)
{
	ths *t = calloc(1, sizeof(*t));
	ck_assert_ptr_nonnull(t);
	t->pg = pg;
	t->sagad = -1;
	snprintf(t->dbname, sizeof(t->dbname), "%s", dbname);
	t->dir = th_tmpdir();
	ck_assert_msg(t->dir != NULL, "th_tmpdir failed");
	snprintf(t->url, sizeof(t->url), "tcp://127.0.0.1:%d", ths_free_port());
	for (int i = 1; i < THS_MAX_SAGADS; i++) {
		t->nsagad[i] = -1;
		snprintf(t->nurl[i], sizeof(t->nurl[i]), "tcp://127.0.0.1:%d", ths_free_port());
		snprintf(t->nlog[i], sizeof(t->nlog[i]), "%s/sagad-%d.log", t->dir, i);
	}
	snprintf(t->journal, sizeof(t->journal), "%s/journal", t->dir);
	snprintf(t->sagad_log, sizeof(t->sagad_log), "%s/sagad.log", t->dir);
	if (pg != NULL) {
		ck_assert_msg(
		    th_pg_create_db(pg, dbname) == 0, "cannot create database %s", dbname);
		t->conninfo = th_pg_conninfo(pg, dbname);
		ck_assert_ptr_nonnull(t->conninfo);
	}
	/* THS_AUTH=1: every world runs with auth on (a whole suite with
	 * credentials; see ths_auth_on). */
	const char *a = getenv("THS_AUTH");
	if (a != NULL && strcmp(a, "1") == 0)
		ths_auth_on(t);
	/* THS_TLS=1: every world's sagad listens with mutual TLS, and its
	 * clients, participants and sagactl use it. */
	a = getenv("THS_TLS");
	if (a != NULL && strcmp(a, "1") == 0)
		world_tls(t);
	if (g_registry[0] != '\0') {
		char line[800];
		snprintf(line, sizeof(line), "%s\t%s\n", t->dir, dbname);
		append_line(g_registry, line);
	}
	return t;
}

/* Development certificates in t->dir (a CA, sagad's, a client's), and the
 * world set to use them. */
static void
world_tls(ths *t)
{
	static const char script[] =
	    "set -e\n"
	    "cd \"$1\"\n"
	    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
	    "\\\n"
	    "  -out ca.pem -days 2 -subj /CN=ths-ca 2>/dev/null\n"
	    "for n in sagad client; do\n"
	    "  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key \\\n"
	    "    -out $n.csr -subj /CN=$n 2>/dev/null\n"
	    "  printf 'subjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1\\n' > $n.ext\n"
	    "  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial \\\n"
	    "    -out $n.pem -days 2 -extfile $n.ext 2>/dev/null\n"
	    "done\n";
	const char *argv[] = { "/bin/sh", "-c", script, "sh", t->dir, NULL };
	int st = -1;
	ck_assert_msg(
	    th_run(argv, NULL, NULL, 60000, &st) == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "THS_TLS: openssl could not make certificates in %s", t->dir);
	char ca[600], cert[600], key[600];
	snprintf(ca, sizeof(ca), "%s/ca.pem", t->dir);
	snprintf(cert, sizeof(cert), "%s/client.pem", t->dir);
	snprintf(key, sizeof(key), "%s/client.key", t->dir);
	snprintf(t->srv_cert, sizeof(t->srv_cert), "%s/sagad.pem", t->dir);
	snprintf(t->srv_key, sizeof(t->srv_key), "%s/sagad.key", t->dir);
	ths_use_tls(t, ca, cert, key, NULL);
}

saga_client *
ths_client_new(ths *t, const char *urls)
{
	saga_client *c = NULL;
	ck_assert_int_eq(saga_client_new(urls != NULL ? urls : t->url, &c), SAGA_OK);
	ck_assert_int_eq(client_tls(t, c), SAGA_OK);
	saga_client_set_timeout(c, 10000);
	const char *cred = t->cred != NULL ? t->cred : t->auth ? ths_admin_credential_ok(t) : NULL;
	ck_assert_int_eq(saga_client_set_credential(c, cred), SAGA_OK);
	return c;
}

void
ths_free(ths *t)
{
	if (t == NULL)
		return;
	saga_client_free(t->client);
	for (size_t i = 0; i < t->n_parts; i++)
		if (t->parts[i] > 0)
			(void)th_stop(t->parts[i]);
	if (t->sagad > 0)
		(void)th_stop(t->sagad);
	for (int i = 1; i < THS_MAX_SAGADS; i++) {
		if (t->nsagad[i] > 0) {
			kill(t->nsagad[i], SIGCONT);
			(void)th_stop(t->nsagad[i]);
		}
	}
	kill_postmaster(t->postmaster_pidfile);
	th_rm_rf(t->dir);
	free(t->dir);
	free(t->conninfo);
	free(t->cred);
	free(t);
}

void
ths_set_conninfo(ths *t, const char *conninfo)
{
	free(t->conninfo);
	t->conninfo = strdup(conninfo);
	ck_assert_ptr_nonnull(t->conninfo);
}

void
ths_use_tls(ths *t, const char *ca, const char *cert, const char *key, const char *server_name)
{
	const char *hostport = strstr(t->url, "://");
	char url[600];
	ck_assert_ptr_nonnull(hostport);
	ck_assert_ptr_nonnull(ca);
	snprintf(url, sizeof(url), "tls+tcp%s", hostport);
	snprintf(t->url, sizeof(t->url), "%s", url);
	snprintf(t->tls_ca, sizeof(t->tls_ca), "%s", ca);
	snprintf(t->tls_cert, sizeof(t->tls_cert), "%s", cert ? cert : "");
	snprintf(t->tls_key, sizeof(t->tls_key), "%s", key ? key : "");
	snprintf(
	    t->tls_server_name, sizeof(t->tls_server_name), "%s", server_name ? server_name : "");
}

/* Applies the world's TLS settings (if any) to a client of it. */
static int
client_tls(const ths *t, saga_client *c)
{
	if (t->tls_ca[0] == '\0')
		return SAGA_OK;
	int rv = saga_client_set_tls(c, t->tls_ca, t->tls_cert[0] ? t->tls_cert : NULL,
	    t->tls_key[0] ? t->tls_key : NULL, t->tls_server_name[0] ? t->tls_server_name : NULL);
	if (rv != SAGA_OK)
		fprintf(stderr, "ths: saga_client_set_tls: %s\n", saga_client_errmsg(c));
	return rv;
}

/* Appends the world's TLS settings as --tls-* options (test-participant
 * and sagactl spell them alike). */
static size_t
tls_args(const ths *t, const char **argv, size_t n)
{
	if (t->tls_ca[0] == '\0')
		return n;
	argv[n++] = "--tls-ca";
	argv[n++] = t->tls_ca;
	if (t->tls_cert[0] != '\0') {
		argv[n++] = "--tls-cert";
		argv[n++] = t->tls_cert;
		argv[n++] = "--tls-key";
		argv[n++] = t->tls_key;
	}
	if (t->tls_server_name[0] != '\0') {
		argv[n++] = "--tls-server-name";
		argv[n++] = t->tls_server_name;
	}
	return n;
}

const char *
ths_dir(const ths *t)
{
	return t->dir;
}
const char *
ths_url(const ths *t)
{
	return t->url;
}
const char *
ths_conninfo(const ths *t)
{
	return t->conninfo;
}
const char *
ths_journal_path(const ths *t)
{
	return t->journal;
}
const char *
ths_sagad_log(const ths *t)
{
	return t->sagad_log;
}
pid_t
ths_sagad_pid(const ths *t)
{
	return t->sagad;
}

void
ths_track_postmaster(ths *t, const char *pgdata)
{
	char p[800];
	snprintf(t->postmaster_pidfile, sizeof(t->postmaster_pidfile), "%s/postmaster.pid", pgdata);
	snprintf(p, sizeof(p), "%s/postmaster-pidfile", t->dir);
	th_write_file(p, t->postmaster_pidfile, strlen(t->postmaster_pidfile));
}

/* ---- sagad --------------------------------------------------------------- */

static void
log_marker(ths *t, const char *what)
{
	FILE *f = fopen(t->sagad_log, "a");
	if (f != NULL) {
		fprintf(f, "==== ths: %s ====\n", what);
		fclose(f);
	}
}

int
ths_wait_ready(ths *t, int timeout_ms)
{
	saga_client *c = NULL;
	long long deadline = th_now_ms() + timeout_ms;
	int rv = -1;

	if (saga_client_new(t->url, &c) != SAGA_OK)
		return -1;
	if (client_tls(t, c) != SAGA_OK) {
		saga_client_free(c);
		return -1;
	}
	saga_client_set_timeout(c, 1000);
	for (;;) {
		saga_list_filter f;
		saga_list *l = NULL;
		memset(&f, 0, sizeof(f));
		f.limit = 1;
		int lrv = saga_client_list(c, &f, &l);
		/* With auth on, a refusal is an answer too. */
		if (lrv == SAGA_OK || lrv == SAGA_EAUTH || lrv == SAGA_EPERM) {
			saga_list_free(l);
			rv = 0;
			break;
		}
		if (t->sagad > 0 && th_wait_exit(t->sagad, 0, NULL) == 0) {
			fprintf(stderr, "ths: sagad exited during start-up\n");
			t->sagad = -1;
			break;
		}
		if (th_now_ms() >= deadline) {
			fprintf(stderr, "ths: sagad did not answer within %d ms: %s\n", timeout_ms,
			    saga_client_errmsg(c));
			break;
		}
		sleep_ms(20);
	}
	saga_client_free(c);
	return rv;
}

static void
sagad_spawn(ths *t, const char *const args[])
{
	const char *argv[64];
	size_t n = 0;
	char mark[64];

	ck_assert_msg(t->sagad <= 0, "sagad is already running");
	argv[n++] = ths_env_ok("SAGAD_BIN");
	if (geteuid() == 0)
		argv[n++] = "--allow-root"; /* CI runs as root; sagad refuses it otherwise */
	for (size_t i = 0; args != NULL && args[i] != NULL && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(mark, sizeof(mark), "sagad start #%d", ++t->sagad_starts);
	log_marker(t, mark);
	t->sagad = th_spawn(argv, NULL, t->sagad_log);
	ck_assert_msg(t->sagad > 0, "cannot start %s", argv[0]);
}

void
ths_sagad_start_args_ok(ths *t, const char *const args[], int wait_ms)
{
	sagad_spawn(t, args);
	ck_assert_msg(
	    ths_wait_ready(t, wait_ms) == 0, "sagad did not come up (log: %s)", t->sagad_log);
}

/* The arguments every test sagad gets, then extra. */
static void
std_args(ths *t, const char *const extra[], const char *args[64])
{
	size_t n = 0;
	ck_assert_ptr_nonnull(t->conninfo);
	args[n++] = "--db";
	args[n++] = t->conninfo;
	args[n++] = "--listen";
	args[n++] = t->url;
	args[n++] = "--log-level";
	args[n++] = "debug";
	if (t->auth) {
		args[n++] = "--auth";
		args[n++] = "on";
		args[n++] = "--data-dir";
		args[n++] = t->data_dir;
	}
	if (t->srv_cert[0] != '\0') {
		args[n++] = "--tls-cert";
		args[n++] = t->srv_cert;
		args[n++] = "--tls-key";
		args[n++] = t->srv_key;
		args[n++] = "--tls-ca";
		args[n++] = t->tls_ca;
	}
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 63; i++)
		args[n++] = extra[i];
	args[n] = NULL;
}

void
ths_sagad_start_nowait(ths *t, const char *const extra[])
{
	const char *args[64];
	std_args(t, extra, args);
	sagad_spawn(t, args);
}

void
ths_sagad_start_ok(ths *t, const char *const extra[])
{
	const char *args[64];
	std_args(t, extra, args);
	ths_sagad_start_args_ok(t, args, 30000);
}

int
ths_sagad_signal(ths *t, int sig)
{
	int st = -1;
	char mark[64];
	if (t->sagad <= 0)
		return -1;
	snprintf(mark, sizeof(mark), "signal %d to sagad", sig);
	log_marker(t, mark);
	kill(t->sagad, sig);
	if (th_wait_exit(t->sagad, 10000, &st) != 0) {
		fprintf(stderr, "ths: sagad ignored signal %d for 10 s; SIGKILL\n", sig);
		kill(t->sagad, SIGKILL);
		(void)th_wait_exit(t->sagad, 5000, &st);
		st = -1;
	}
	t->sagad = -1;
	return st;
}

int
ths_sagad_wait_exit(ths *t, int timeout_ms, int *status)
{
	int st = -1;
	if (t->sagad <= 0)
		return -1;
	if (th_wait_exit(t->sagad, timeout_ms, &st) != 0)
		return -1; /* still running */
	if (status)
		*status = st;
	t->sagad = -1;
	return 0;
}

/* ---- several sagads ------------------------------------------------------ */

static void
check_instance(int i)
{
	ck_assert_msg(i >= 0 && i < THS_MAX_SAGADS, "no sagad instance %d", i);
}

/* Waits until the sagad at url answers a list. */
static int
wait_url_ready(const char *url, pid_t pid, int timeout_ms)
{
	saga_client *c = NULL;
	long long deadline = th_now_ms() + timeout_ms;
	int rv = -1;
	if (saga_client_new(url, &c) != SAGA_OK)
		return -1;
	saga_client_set_timeout(c, 1000);
	for (;;) {
		saga_list_filter f;
		saga_list *l = NULL;
		memset(&f, 0, sizeof(f));
		f.limit = 1;
		int lrv = saga_client_list(c, &f, &l);
		if (lrv == SAGA_OK || lrv == SAGA_EAUTH || lrv == SAGA_EPERM) {
			saga_list_free(l);
			rv = 0;
			break;
		}
		if (pid > 0 && th_wait_exit(pid, 0, NULL) == 0) {
			fprintf(stderr, "ths: sagad at %s exited during start-up\n", url);
			break;
		}
		if (th_now_ms() >= deadline) {
			fprintf(stderr, "ths: sagad at %s did not answer within %d ms\n", url,
			    timeout_ms);
			break;
		}
		sleep_ms(20);
	}
	saga_client_free(c);
	return rv;
}

void
ths_sagad_n_start_ok(ths *t, int i, const char *const extra[])
{
	check_instance(i);
	char id[16];
	snprintf(id, sizeof(id), "inst%d", i);
	const char *args[64];
	size_t n = 0;
	args[n++] = "--instance-id";
	args[n++] = id;
	for (size_t k = 0; extra != NULL && extra[k] != NULL && n < 40; k++)
		args[n++] = extra[k];
	args[n] = NULL;
	if (i == 0) {
		ths_sagad_start_ok(t, args);
		return;
	}
	ck_assert_msg(t->nsagad[i] <= 0, "sagad %d is already running", i);
	const char *argv[64];
	size_t k = 0;
	argv[k++] = ths_env_ok("SAGAD_BIN");
	if (geteuid() == 0)
		argv[k++] = "--allow-root";
	argv[k++] = "--db";
	argv[k++] = t->conninfo;
	argv[k++] = "--listen";
	argv[k++] = t->nurl[i];
	argv[k++] = "--log-level";
	argv[k++] = "debug";
	if (t->auth) {
		argv[k++] = "--auth";
		argv[k++] = "on";
		argv[k++] = "--data-dir";
		argv[k++] = t->data_dir;
	}
	for (size_t a = 0; args[a] != NULL && k < 63; a++)
		argv[k++] = args[a];
	argv[k] = NULL;
	FILE *f = fopen(t->nlog[i], "a");
	if (f != NULL) {
		fprintf(f, "==== ths: sagad %d start ====\n", i);
		fclose(f);
	}
	t->nsagad[i] = th_spawn(argv, NULL, t->nlog[i]);
	ck_assert_msg(t->nsagad[i] > 0, "cannot start sagad %d", i);
	ck_assert_msg(wait_url_ready(t->nurl[i], t->nsagad[i], 30000) == 0,
	    "sagad %d did not come up (log: %s)", i, t->nlog[i]);
}

int
ths_sagad_n_signal(ths *t, int i, int sig)
{
	check_instance(i);
	if (i == 0 && sig != SIGSTOP && sig != SIGCONT)
		return ths_sagad_signal(t, sig);
	pid_t pid = i == 0 ? t->sagad : t->nsagad[i];
	if (pid <= 0)
		return -1;
	kill(pid, sig);
	if (sig == SIGSTOP || sig == SIGCONT)
		return 0;
	int st = -1;
	if (th_wait_exit(pid, 10000, &st) != 0) {
		kill(pid, SIGKILL);
		(void)th_wait_exit(pid, 5000, &st);
		st = -1;
	}
	t->nsagad[i] = -1;
	return st;
}

int
ths_sagad_n_wait_exit(ths *t, int i, int timeout_ms, int *status)
{
	check_instance(i);
	if (i == 0)
		return ths_sagad_wait_exit(t, timeout_ms, status);
	if (t->nsagad[i] <= 0)
		return -1;
	int st = -1;
	if (th_wait_exit(t->nsagad[i], timeout_ms, &st) != 0)
		return -1;
	if (status != NULL)
		*status = st;
	t->nsagad[i] = -1;
	return 0;
}

pid_t
ths_sagad_n_pid(const ths *t, int i)
{
	return i == 0 ? t->sagad : (i > 0 && i < THS_MAX_SAGADS ? t->nsagad[i] : -1);
}

const char *
ths_sagad_n_url(const ths *t, int i)
{
	return i == 0 ? t->url : (i > 0 && i < THS_MAX_SAGADS ? t->nurl[i] : "");
}

const char *
ths_sagad_n_log(const ths *t, int i)
{
	return i == 0 ? t->sagad_log : (i > 0 && i < THS_MAX_SAGADS ? t->nlog[i] : "");
}

const char *
ths_urls(ths *t, int n)
{
	size_t a = 0;
	t->urls[0] = '\0';
	for (int i = 0; i < n && i < THS_MAX_SAGADS; i++)
		a += (size_t)snprintf(
		    t->urls + a, sizeof(t->urls) - a, "%s%s", i ? "," : "", ths_sagad_n_url(t, i));
	return t->urls;
}

/* ---- participants ------------------------------------------------------- */

pid_t
ths_participant_ok(ths *t, const char *instance, uint32_t capacity, const char *const names[])
{
	return ths_participant_at_ok(t, t->url, instance, capacity, names);
}

pid_t
ths_participant_at_ok(
    ths *t, const char *urls, const char *instance, uint32_t capacity, const char *const names[])
{
	static const char *const all[] = { "pA", "pB", "pC", "pD", "pT", NULL };
	const char *argv[64];
	char cap[16], log[800];
	size_t n = 0;

	ck_assert_msg(t->n_parts < MAX_PARTS, "too many participants");
	if (names == NULL)
		names = all;
	snprintf(cap, sizeof(cap), "%u", capacity);
	snprintf(log, sizeof(log), "%s/part-%s.log", t->dir, instance);
	argv[n++] = ths_env_ok("TEST_PARTICIPANT_BIN");
	argv[n++] = "--url";
	argv[n++] = urls;
	argv[n++] = "--journal";
	argv[n++] = t->journal;
	argv[n++] = "--instance";
	argv[n++] = instance;
	argv[n++] = "--capacity";
	argv[n++] = cap;
	n = tls_args(t, argv, n);
	for (size_t i = 0; names[i] != NULL && n < 58; i++) {
		argv[n++] = "--participant";
		argv[n++] = names[i];
	}
	char creds[700];
	if (t->auth) {
		snprintf(creds, sizeof(creds), "%s/creds", t->dir);
		(void)mkdir(creds, 0700);
		for (size_t i = 0; names[i] != NULL; i++) {
			char path[800], pname[128];
			struct stat sb;
			snprintf(path, sizeof(path), "%s/%s.credential", creds, names[i]);
			if (stat(path, &sb) == 0)
				continue;
			snprintf(pname, sizeof(pname), "part-%s", names[i]);
			char *c = ths_principal_ok(t, pname, "participant", names[i], NULL);
			ck_assert_int_eq(th_write_file(path, c, strlen(c)), 0);
			free(c);
		}
		argv[n++] = "--credential-dir";
		argv[n++] = creds;
	}
	argv[n] = NULL;
	pid_t pid = th_spawn(argv, NULL, log);
	ck_assert_msg(pid > 0, "cannot start test-participant %s", instance);
	{
		char reg[800], line[80];
		snprintf(reg, sizeof(reg), "%s/participants", t->dir);
		snprintf(line, sizeof(line), "%s\n", instance);
		append_line(reg, line);
	}
	t->parts[t->n_parts] = pid;
	snprintf(t->part_inst[t->n_parts], sizeof(t->part_inst[0]), "%s", instance);
	t->n_parts++;
	return pid;
}

static void
forget_part(ths *t, pid_t pid)
{
	for (size_t i = 0; i < t->n_parts; i++)
		if (t->parts[i] == pid)
			t->parts[i] = -1;
}

int
ths_participant_signal(ths *t, pid_t pid, int sig)
{
	int st = -1;
	kill(pid, sig);
	if (th_wait_exit(pid, 10000, &st) != 0) {
		kill(pid, SIGKILL);
		(void)th_wait_exit(pid, 5000, &st);
		st = -1;
	}
	forget_part(t, pid);
	return st;
}

int
ths_participant_exited(ths *t, pid_t pid)
{
	if (th_wait_exit(pid, 0, NULL) == 0) {
		forget_part(t, pid);
		return 1;
	}
	return 0;
}

/* ---- client calls ------------------------------------------------------- */

saga_client *
ths_client(ths *t)
{
	if (t->client == NULL)
		t->client = ths_client_new(t, NULL);
	return t->client;
}

/* ---- auth --------------------------------------------------------------- */

void
ths_auth_on(ths *t)
{
	t->auth = 1;
	snprintf(t->data_dir, sizeof(t->data_dir), "%s/data", t->dir);
}

const char *
ths_admin_credential_ok(ths *t)
{
	char path[700];
	ck_assert_msg(t->auth, "ths_admin_credential_ok needs ths_auth_on");
	if (t->admin_cred[0] == '\0') {
		snprintf(path, sizeof(path), "%s/bootstrap-admin.credential", t->data_dir);
		char *s = th_read_file(path, NULL);
		ck_assert_msg(s != NULL, "no bootstrap credential in %s", path);
		s[strcspn(s, "\r\n")] = '\0';
		snprintf(t->admin_cred, sizeof(t->admin_cred), "%s", s);
		free(s);
	}
	return t->admin_cred;
}

char *
ths_principal_ok(
    ths *t, const char *name, const char *role, const char *participant, const char *definitions)
{
	saga_client *c = NULL;
	char *cred = NULL, *copy = NULL;
	const char *defs[32];
	size_t n = 0;
	ck_assert_int_eq(saga_client_new(t->url, &c), SAGA_OK);
	ck_assert_int_eq(client_tls(t, c), SAGA_OK);
	ck_assert_int_eq(saga_client_set_credential(c, ths_admin_credential_ok(t)), SAGA_OK);
	if (definitions != NULL) {
		copy = strdup(definitions);
		char *save = NULL;
		for (char *d = strtok_r(copy, ",", &save); d != NULL && n < 32;
		     d = strtok_r(NULL, ",", &save))
			defs[n++] = d;
	}
	int rv = saga_client_principal_create(c, name, role, participant, defs, n, &cred, NULL);
	ck_assert_msg(rv == SAGA_OK, "principal create %s (%s): %s: %s", name, role,
	    saga_strerror(rv), saga_client_errmsg(c));
	free(copy);
	saga_client_free(c);
	return cred;
}

void
ths_set_credential(ths *t, const char *credential)
{
	free(t->cred);
	t->cred = credential != NULL ? strdup(credential) : NULL;
	if (t->client != NULL) {
		const char *cred = t->cred != NULL ? t->cred
		    : t->auth                      ? ths_admin_credential_ok(t)
						   : NULL;
		ck_assert_int_eq(saga_client_set_credential(t->client, cred), SAGA_OK);
	}
}

const char *
ths_credential_file(ths *t)
{
	const char *cred = t->cred != NULL ? t->cred : t->auth ? ths_admin_credential_ok(t) : NULL;
	if (cred == NULL || cred[0] == '\0')
		return NULL;
	snprintf(t->cred_file, sizeof(t->cred_file), "%s/client.credential", t->dir);
	int fd = open(t->cred_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq((int)write(fd, cred, strlen(cred)), (int)strlen(cred));
	close(fd);
	return t->cred_file;
}

void
ths_register_file_ok(ths *t, const char *path)
{
	size_t len = 0;
	char *data = th_read_file(path, &len);
	saga_register_result *res = NULL;
	ck_assert_msg(data != NULL, "cannot read %s", path);
	int rv = saga_client_register(ths_client(t), data, len, &res);
	ck_assert_msg(rv == SAGA_OK, "register %s: %s: %s", path, saga_strerror(rv),
	    saga_client_errmsg(ths_client(t)));
	ck_assert_ptr_nonnull(res);
	ck_assert_uint_gt(res->count, 0);
	saga_register_result_free(res);
	free(data);
}

void
ths_register_sagas_ok(ths *t)
{
	ths_register_file_ok(t, ths_env_ok("IT_SAGAS"));
}

char *
ths_start_ok(ths *t, const char *definition, const char *input)
{
	char *id = NULL;
	int existing = -1;
	int rv = saga_client_start(
	    ths_client(t), definition, input, input ? strlen(input) : 0, NULL, &id, &existing);
	ck_assert_msg(rv == SAGA_OK, "start %s '%s': %s: %s", definition, input ? input : "",
	    saga_strerror(rv), saga_client_errmsg(ths_client(t)));
	ck_assert_ptr_nonnull(id);
	ck_assert_int_eq(existing, 0);
	return id;
}

saga_info *
ths_wait_final_ok(ths *t, const char *saga_id, int timeout_ms)
{
	saga_info *info = NULL;
	int rv = saga_client_wait(ths_client(t), saga_id, timeout_ms, &info);
	ck_assert_msg(rv == SAGA_OK, "wait for saga %s: %s: %s", saga_id, saga_strerror(rv),
	    saga_client_errmsg(ths_client(t)));
	ck_assert_ptr_nonnull(info);
	ck_assert_msg(saga_state_is_final(info->state), "saga %s is %s", saga_id,
	    saga_state_name(info->state));
	return info;
}

const saga_step_info *
ths_step_ok(const saga_info *info, const char *name)
{
	for (size_t i = 0; i < info->n_steps; i++)
		if (strcmp(info->steps[i].name, name) == 0)
			return &info->steps[i];
	ck_abort_msg("saga %s has no step %s", info->saga_id, name);
	return NULL;
}

void
ths_wait_step_state_ok(
    ths *t, const char *saga_id, const char *step, saga_step_state st, int timeout_ms)
{
	long long deadline = th_now_ms() + timeout_ms;
	saga_step_state last = SAGA_STEP_UNKNOWN;
	for (;;) {
		saga_info *info = NULL;
		int rv = saga_client_get(ths_client(t), saga_id, &info);
		ck_assert_msg(rv == SAGA_OK, "get %s: %s: %s", saga_id, saga_strerror(rv),
		    saga_client_errmsg(ths_client(t)));
		last = ths_step_ok(info, step)->state;
		saga_info_free(info);
		if (last == st)
			return;
		ck_assert_msg(th_now_ms() < deadline,
		    "step %s of saga %s is %s, not %s after %d ms", step, saga_id,
		    saga_step_state_name(last), saga_step_state_name(st), timeout_ms);
		sleep_ms(10);
	}
}

/* ---- journal ------------------------------------------------------------ */

static int
parse_line(char *s, ths_jline *l)
{
	char *save = NULL, *tok;
	int field = 0;
	memset(l, 0, sizeof(*l));
	for (tok = strtok_r(s, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		switch (field++) {
		case 0:
			snprintf(l->saga_id, sizeof(l->saga_id), "%s", tok);
			break;
		case 1:
			l->kind = tok[0];
			break;
		case 2:
			snprintf(l->rpc, sizeof(l->rpc), "%s", tok);
			break;
		case 3:
			l->attempt = (unsigned)strtoul(tok, NULL, 10);
			break;
		case 4:
			snprintf(l->instance, sizeof(l->instance), "%s", tok);
			break;
		case 5:
			snprintf(l->outcome, sizeof(l->outcome), "%s", tok);
			break;
		case 6:
			l->t0_us = strtoll(tok, NULL, 10);
			break;
		case 7:
			l->t1_us = strtoll(tok, NULL, 10);
			break;
		case 8:
			snprintf(l->traceparent, sizeof(l->traceparent), "%s", tok);
			break;
		default: {
			char *eq = strchr(tok, '=');
			if (eq == NULL || l->n_deps == THS_MAX_DEPS)
				return -1;
			*eq = '\0';
			snprintf(l->dep_step[l->n_deps], sizeof(l->dep_step[0]), "%s", tok);
			snprintf(l->dep_val[l->n_deps], sizeof(l->dep_val[0]), "%s", eq + 1);
			l->n_deps++;
		}
		}
	}
	return field >= 9 ? 0 : -1;
}

ths_journal *
ths_journal_read_ok(ths *t)
{
	ths_journal *j = calloc(1, sizeof(*j));
	size_t len = 0, cap = 0;
	char *s = th_read_file(t->journal, &len);
	ck_assert_ptr_nonnull(j);
	if (s == NULL)
		return j;
	char *save = NULL;
	for (char *line = strtok_r(s, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char copy[2048];
		if (j->n == cap) {
			cap = cap ? cap * 2 : 64;
			j->lines = realloc(j->lines, cap * sizeof(*j->lines));
			ck_assert_ptr_nonnull(j->lines);
		}
		snprintf(copy, sizeof(copy), "%s", line);
		ck_assert_msg(parse_line(line, &j->lines[j->n]) == 0, "bad journal line: %s", copy);
		j->n++;
	}
	free(s);
	return j;
}

void
ths_journal_free(ths_journal *j)
{
	if (j == NULL)
		return;
	free(j->lines);
	free(j);
}

static int
jmatch(const ths_jline *l, const char *saga_id, char kind, const char *rpc, const char *outcome)
{
	return (saga_id == NULL || strcmp(l->saga_id, saga_id) == 0) &&
	    (kind == 0 || l->kind == kind) && (rpc == NULL || strcmp(l->rpc, rpc) == 0) &&
	    (outcome == NULL || strcmp(l->outcome, outcome) == 0);
}

int
ths_journal_count(
    const ths_journal *j, const char *saga_id, char kind, const char *rpc, const char *outcome)
{
	int n = 0;
	for (size_t i = 0; i < j->n; i++)
		n += jmatch(&j->lines[i], saga_id, kind, rpc, outcome);
	return n;
}

int
ths_journal_find(const ths_journal *j, size_t from, const char *saga_id, char kind, const char *rpc,
    const char *outcome)
{
	for (size_t i = from; i < j->n; i++)
		if (jmatch(&j->lines[i], saga_id, kind, rpc, outcome))
			return (int)i;
	return -1;
}

const char *
ths_jline_dep(const ths_jline *l, const char *step)
{
	for (size_t i = 0; i < l->n_deps; i++)
		if (strcmp(l->dep_step[i], step) == 0)
			return l->dep_val[i];
	return NULL;
}

void
ths_journal_wait_ok(ths *t, const char *saga_id, char kind, const char *rpc, const char *outcome,
    int n, int timeout_ms)
{
	long long deadline = th_now_ms() + timeout_ms;
	for (;;) {
		ths_journal *j = ths_journal_read_ok(t);
		int c = ths_journal_count(j, saga_id, kind, rpc, outcome);
		ths_journal_free(j);
		if (c >= n)
			return;
		ck_assert_msg(th_now_ms() < deadline,
		    "journal: %d of %d lines (%s %c %s %s) after %d ms", c, n,
		    saga_id ? saga_id : "*", kind ? kind : '*', rpc ? rpc : "*",
		    outcome ? outcome : "*", timeout_ms);
		sleep_ms(10);
	}
}

/* ---- sagactl ------------------------------------------------------------ */

int
ths_sagactl(ths *t, const char *const args[], char **out)
{
	const char *argv[64];
	char outp[800], errp[800];
	size_t n = 0;
	int st = -1;
	static int seq;

	argv[n++] = ths_env_ok("SAGACTL_BIN");
	argv[n++] = "--url";
	argv[n++] = t->url;
	size_t first_arg = n = tls_args(t, argv, n);
	const char *cf = ths_credential_file(t);
	if (cf != NULL) {
		argv[n++] = "--credential-file";
		argv[n++] = cf;
		first_arg = n;
	}
	for (size_t i = 0; args[i] != NULL && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	seq++;
	snprintf(outp, sizeof(outp), "%s/sagactl-%d.out", t->dir, seq);
	snprintf(errp, sizeof(errp), "%s/sagactl-%d.err", t->dir, seq);
	snprintf(t->ctl_err, sizeof(t->ctl_err), "%s", errp);

	int ofd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int efd = open(errp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (ofd < 0 || efd < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		dup2(nul, 0);
		dup2(ofd, 1);
		dup2(efd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(ofd);
	close(efd);
	if (pid < 0)
		return -1;
	if (th_wait_exit(pid, 30000, &st) != 0) {
		kill(pid, SIGKILL);
		(void)th_wait_exit(pid, 5000, NULL);
		fprintf(stderr, "ths: sagactl did not exit within 30 s\n");
		return -1;
	}
	{
		char *e = th_read_file(errp, NULL);
		fprintf(stderr, "ths: sagactl");
		for (size_t i = first_arg; argv[i] != NULL; i++)
			fprintf(stderr, " %s", argv[i]);
		fprintf(stderr, " -> status %d%s%s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
		    e && e[0] ? "; stderr: " : "", e ? e : "");
		fprintf(stderr, "\n");
		free(e);
	}
	if (out != NULL)
		*out = th_read_file(outp, NULL);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *
ths_sagactl_stderr(const ths *t)
{
	char *e = t->ctl_err[0] ? th_read_file(t->ctl_err, NULL) : NULL;
	return e != NULL ? e : strdup("");
}

int
ths_contains(const char *haystack, const char *needle)
{
	return haystack != NULL && needle != NULL && strcasestr(haystack, needle) != NULL;
}
