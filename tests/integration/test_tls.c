/*
 * Integration: TLS between sagad and its clients and participants
 * (docs/SECURITY.md, "TLS"). Real sagad on tls+tcp://, real PostgreSQL,
 * real test-participant processes and sagactl; the certificates are made
 * in each test's directory with the openssl command line: a CA, a server
 * certificate for localhost / 127.0.0.1, a client certificate, an expired
 * client certificate, and a second, unrelated CA with a server certificate
 * of its own (for rotation).
 */
#define _GNU_SOURCE
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* Makes the certificates in dir (see the top of the file). nng 1.5.2's TLS
 * (mbedtls 2.28) matches a name against DNS entries only, so the server
 * certificate carries 127.0.0.1 as a DNS entry too, as docs/SECURITY.md
 * says to. */
static void
make_certs_ok(const char *dir)
{
	static const char script[] =
	    "set -e\n"
	    "cd \"$1\"\n"
	    "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n"
	    "  -keyout $1.key -out $1.pem -days 30 -subj \"/CN=$1\" 2>/dev/null; }\n"
	    "cert() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n"
	    "  -keyout $1.key -out $1.csr -subj \"/CN=$1\" 2>/dev/null\n"
	    "  printf 'subjectAltName=%s\\nbasicConstraints=CA:FALSE\\n' \"$3\" > $1.ext\n"
	    "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial \\\n"
	    "    -out $1.pem -days $4 -extfile $1.ext 2>/dev/null; }\n"
	    "ca ca\n"
	    "ca ca2\n"
	    "cert server ca DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1 30\n"
	    "cert server2 ca2 DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1 30\n"
	    "cert client ca DNS:client 30\n"
	    "cert expired ca DNS:client -1\n"
	    "cp server.pem live.pem\n"
	    "cp server.key live.key\n";
	const char *argv[] = { "/bin/sh", "-c", script, "sh", dir, NULL };
	int st = -1;
	ck_assert_msg(
	    th_run(argv, NULL, NULL, 60000, &st) == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "openssl could not make the test certificates in %s", dir);
}

/* dir/name, in a static buffer of 8 slots. */
static const char *
path(const ths *t, const char *name)
{
	static char buf[8][700];
	static int i;
	char *p = buf[i++ % 8];
	snprintf(p, sizeof(buf[0]), "%s/%s", ths_dir(t), name);
	return p;
}

/* A world with certificates, its clients trusting ca and showing client
 * (mutual TLS), and sagad started with server/live certificate and key,
 * ca for clients and client_auth (NULL = the default: required, as tls-ca
 * is set). */
static ths *
tls_world_ok(const char *db, const char *client_auth)
{
	ths *t = ths_new_ok(pg, db);
	make_certs_ok(ths_dir(t));
	ths_use_tls(t, path(t, "ca.pem"), path(t, "client.pem"), path(t, "client.key"), NULL);
	const char *extra[12];
	size_t n = 0;
	extra[n++] = "--tls-cert";
	extra[n++] = path(t, "live.pem");
	extra[n++] = "--tls-key";
	extra[n++] = path(t, "live.key");
	extra[n++] = "--tls-ca";
	extra[n++] = path(t, "ca.pem");
	if (client_auth != NULL) {
		extra[n++] = "--tls-client-auth";
		extra[n++] = client_auth;
	}
	extra[n] = NULL;
	ths_sagad_start_ok(t, extra);
	return t;
}

/*
 * One list call from a new client at url with the given TLS settings (ca
 * NULL = none set); returns the result, the error detail in err and the
 * time it took in *ms.
 */
static int
try_client(const char *url, const char *ca, const char *cert, const char *key, char *err,
    size_t errlen, long long *ms)
{
	saga_client *c = NULL;
	saga_list *l = NULL;
	saga_list_filter f;
	long long t0 = th_now_ms();
	int rv;

	ck_assert_int_eq(saga_client_new(url, &c), SAGA_OK);
	saga_client_set_timeout(c, 5000);
	if (ca != NULL)
		ck_assert_int_eq(saga_client_set_tls(c, ca, cert, key, NULL), SAGA_OK);
	memset(&f, 0, sizeof(f));
	f.limit = 1;
	rv = saga_client_list(c, &f, &l);
	if (ms != NULL)
		*ms = th_now_ms() - t0;
	snprintf(err, errlen, "%s", saga_client_errmsg(c));
	saga_list_free(l);
	saga_client_free(c);
	fprintf(stderr, "try_client %s ca=%s cert=%s -> %s: %s\n", url, ca ? ca : "-",
	    cert ? cert : "-", saga_strerror(rv), err);
	return rv;
}

/* "tcp://HOST:PORT" of the world's "tls+tcp://HOST:PORT". */
static const char *
plain_url(const ths *t)
{
	static char buf[600];
	snprintf(buf, sizeof(buf), "tcp%s", strstr(ths_url(t), "://"));
	return buf;
}

/* Lines of sagad's log containing s. */
static int
log_count(const ths *t, const char *s)
{
	char *log = th_read_file(ths_sagad_log(t), NULL);
	int n = 0;
	for (const char *p = log; p != NULL && (p = strstr(p, s)) != NULL; p += strlen(s))
		n++;
	free(log);
	return n;
}

typedef struct {
	const ths *t;
	const char *s;
	int n;
} log_wait;

static int
log_has(void *arg)
{
	log_wait *w = arg;
	return log_count(w->t, w->s) >= w->n;
}

static void
wait_log_ok(const ths *t, const char *s, int n, int timeout_ms)
{
	log_wait w = { t, s, n };
	ck_assert_msg(th_wait_until(log_has, &w, timeout_ms) == 0,
	    "sagad's log (%s) did not get %d line(s) with \"%s\" within %d ms", ths_sagad_log(t), n,
	    s, timeout_ms);
}

/* Connects to the world's TLS port with a plain TCP socket, sends len
 * bytes of data and closes (abruptly: linger 0) after a short wait. */
static void
send_raw(const ths *t, const void *data, size_t len)
{
	int port = atoi(strrchr(ths_url(t), ':') + 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (len > 0)
		(void)!write(fd, data, len);
	usleep(20 * 1000);
	struct linger lg = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* ---- the tests ------------------------------------------------------------ */

START_TEST(sagas_run_end_to_end_over_mutual_tls_with_client_participant_and_sagactl)
{
	ths *t = tls_world_ok("tls_e2e", NULL);
	ck_assert_int_ge(log_count(t, "client certificates required"), 1);
	ths_register_sagas_ok(t);
	ths_participant_ok(t, "p1", 8, NULL);

	char *id = ths_start_ok(t, "ittest.Linear3", "tag=tls");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(
	    info->state == SAGA_STATE_COMPLETED, "saga is %s", saga_state_name(info->state));
	saga_info_free(info);
	/* A failing saga compensates over the same connections. */
	char *id2 = ths_start_ok(t, "ittest.Linear3", "fail=C");
	info = ths_wait_final_ok(t, id2, WAIT_MS);
	ck_assert_msg(
	    info->state == SAGA_STATE_COMPENSATED, "saga is %s", saga_state_name(info->state));
	saga_info_free(info);

	/* sagactl with --tls-ca, --tls-cert and --tls-key (the harness adds
	 * them), and with the same settings from SAGA_TLS_* alone. */
	char *out = NULL;
	const char *get[] = { "get", id, NULL };
	ck_assert_int_eq(ths_sagactl(t, get, &out), 0);
	ck_assert_msg(ths_contains(out, "completed"), "sagactl get: %s", out);
	free(out);

	const char *argv[] = { ths_env_ok("SAGACTL_BIN"), "--url", ths_url(t), "get", id, NULL };
	char env_ca[800], env_cert[800], env_key[800];
	snprintf(env_ca, sizeof(env_ca), "SAGA_TLS_CA=%s", path(t, "ca.pem"));
	snprintf(env_cert, sizeof(env_cert), "SAGA_TLS_CERT=%s", path(t, "client.pem"));
	snprintf(env_key, sizeof(env_key), "SAGA_TLS_KEY=%s", path(t, "client.key"));
	const char *env[] = { env_ca, env_cert, env_key, NULL };
	int st = -1;
	ck_assert_int_eq(th_run(argv, env, path(t, "sagactl-env.log"), 30000, &st), 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "sagactl with SAGA_TLS_* exited %d (log %s)", WEXITSTATUS(st),
	    path(t, "sagactl-env.log"));

	saga_string_free(id);
	saga_string_free(id2);
	ths_free(t);
}
END_TEST

START_TEST(a_plaintext_client_is_refused_by_a_tls_listener_with_econn_saying_tls)
{
	ths *t = tls_world_ok("tls_plain", NULL);
	char err[4096];
	long long ms = 0;
	ck_assert_int_eq(
	    try_client(plain_url(t), NULL, NULL, NULL, err, sizeof(err), &ms), SAGA_ECONN);
	ck_assert_msg(strstr(err, "TLS") != NULL && strstr(err, "tls+tcp://") != NULL,
	    "the detail does not point at TLS: %s", err);
	ck_assert_msg(ms < 4000, "took %lld ms: a refused handshake should fail fast", ms);
	/* sagactl says so too, and exits 6 (SAGA_ECONN). */
	const char *argv[] = { ths_env_ok("SAGACTL_BIN"), "--url", plain_url(t), "list", NULL };
	int st = -1;
	ck_assert_int_eq(th_run(argv, NULL, path(t, "sagactl-plain.log"), 30000, &st), 0);
	ck_assert_int_eq(WEXITSTATUS(st), SAGA_ECONN);
	char *log = th_read_file(path(t, "sagactl-plain.log"), NULL);
	ck_assert_msg(ths_contains(log, "TLS"), "sagactl said: %s", log);
	free(log);
	ths_free(t);
}
END_TEST

START_TEST(a_client_trusting_another_ca_is_refused_with_econn_saying_tls_failed)
{
	ths *t = tls_world_ok("tls_wrong_ca", NULL);
	char err[4096];
	long long ms = 0;
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca2.pem"), path(t, "client.pem"),
			     path(t, "client.key"), err, sizeof(err), &ms),
	    SAGA_ECONN);
	ck_assert_msg(strstr(err, "TLS handshake") != NULL, "detail: %s", err);
	ck_assert_msg(ms < 4000, "took %lld ms", ms);
	/* sagactl with the wrong CA: exit 6 and a hint at the --tls options
	 * (the last --tls-ca given wins over the harness's). */
	const char *args[] = { "--tls-ca", path(t, "ca2.pem"), "list", NULL };
	ck_assert_int_eq(ths_sagactl(t, args, NULL), SAGA_ECONN);
	char *e = ths_sagactl_stderr(t);
	ck_assert_msg(
	    ths_contains(e, "TLS handshake") && ths_contains(e, "--tls-ca"), "sagactl said: %s", e);
	free(e);
	/* A participant trusting the other CA keeps retrying and says why in
	 * its log. */
	const char *argv[] = { ths_env_ok("TEST_PARTICIPANT_BIN"), "--url", ths_url(t), "--journal",
		path(t, "journal-wrong-ca"), "--participant", "pA", "--tls-ca", path(t, "ca2.pem"),
		"--tls-cert", path(t, "client.pem"), "--tls-key", path(t, "client.key"), NULL };
	pid_t p = th_spawn(argv, NULL, path(t, "part-wrong-ca.log"));
	ck_assert_int_gt(p, 0);
	long long until = th_now_ms() + 10000;
	char *plog = NULL;
	while (th_now_ms() < until) {
		free(plog);
		plog = th_read_file(path(t, "part-wrong-ca.log"), NULL);
		if (plog != NULL && strstr(plog, "TLS handshake") != NULL)
			break;
		usleep(100000);
	}
	ck_assert_msg(plog != NULL && strstr(plog, "TLS handshake") != NULL,
	    "the participant did not log why it cannot connect: %s", plog ? plog : "(no log)");
	free(plog);
	ck_assert_int_eq(th_wait_exit(p, 0, NULL), -1); /* still retrying, not dead */
	th_stop(p);
	ths_free(t);
}
END_TEST

START_TEST(no_client_certificate_is_refused_when_client_auth_is_required)
{
	ths *t = tls_world_ok("tls_no_cert", "required");
	char err[4096];
	ck_assert_int_eq(
	    try_client(ths_url(t), path(t, "ca.pem"), NULL, NULL, err, sizeof(err), NULL),
	    SAGA_ECONN);
	ck_assert_msg(strstr(err, "client certificate") != NULL, "detail: %s", err);
	/* The same client is let in where client certificates are optional. */
	ths *t2 = tls_world_ok("tls_optional", "optional");
	ck_assert_int_eq(
	    try_client(ths_url(t2), path(t2, "ca.pem"), NULL, NULL, err, sizeof(err), NULL),
	    SAGA_OK);
	ths_free(t2);
	ths_free(t);
}
END_TEST

START_TEST(an_expired_client_certificate_is_refused_when_client_auth_is_required)
{
	ths *t = tls_world_ok("tls_expired", NULL);
	char err[4096];
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca.pem"), path(t, "expired.pem"),
			     path(t, "expired.key"), err, sizeof(err), NULL),
	    SAGA_ECONN);
	ck_assert_msg(strstr(err, "TLS") != NULL, "detail: %s", err);
	/* The valid certificate of the same CA is let in. */
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca.pem"), path(t, "client.pem"),
			     path(t, "client.key"), err, sizeof(err), NULL),
	    SAGA_OK);
	ths_free(t);
}
END_TEST

START_TEST(a_tls_url_without_a_ca_or_with_unusable_files_fails_at_once_with_einval)
{
	saga_client *c = NULL;
	saga_list *l = NULL;
	saga_list_filter f;
	memset(&f, 0, sizeof(f));
	ck_assert_int_eq(saga_client_new("tls+tcp://127.0.0.1:9", &c), SAGA_OK);
	ck_assert_int_eq(saga_client_list(c, &f, &l), SAGA_EINVAL);
	ck_assert_msg(strstr(saga_client_errmsg(c), "saga_client_set_tls") != NULL, "detail: %s",
	    saga_client_errmsg(c));
	/* A file that cannot be read is named when set. */
	ck_assert_int_eq(
	    saga_client_set_tls(c, "/nonexistent/ca.pem", NULL, NULL, NULL), SAGA_EINVAL);
	ck_assert_msg(strstr(saga_client_errmsg(c), "/nonexistent/ca.pem") != NULL, "detail: %s",
	    saga_client_errmsg(c));
	/* A file that is not PEM, and a certificate without its key. */
	char *dir = th_tmpdir(), notpem[600];
	ck_assert_ptr_nonnull(dir);
	snprintf(notpem, sizeof(notpem), "%s/ca.der", dir);
	ck_assert_int_eq(th_write_file(notpem, "\x30\x82\x01\x0a", 4), 0);
	ck_assert_int_eq(saga_client_set_tls(c, notpem, NULL, NULL, NULL), SAGA_EINVAL);
	ck_assert_msg(strstr(saga_client_errmsg(c), "not a PEM file") != NULL, "detail: %s",
	    saga_client_errmsg(c));
	ck_assert_int_eq(saga_client_set_tls(c, notpem, notpem, NULL, NULL), SAGA_EINVAL);
	ck_assert_msg(strstr(saga_client_errmsg(c), "both or neither") != NULL, "detail: %s",
	    saga_client_errmsg(c));
	th_rm_rf(dir);
	free(dir);
	saga_client_free(c);

	saga_worker *w = NULL;
	ck_assert_int_eq(saga_worker_new("tls+tcp://127.0.0.1:9", "pA", &w), SAGA_OK);
	ck_assert_int_eq(saga_worker_run(w), SAGA_EINVAL);
	ck_assert_msg(strstr(saga_worker_errmsg(w), "saga_worker_set_tls") != NULL, "detail: %s",
	    saga_worker_errmsg(w));
	saga_worker_free(w);
}
END_TEST

START_TEST(sagad_refuses_to_start_when_tls_settings_cannot_work)
{
	ths *t = ths_new_ok(pg, "tls_refuse");
	make_certs_ok(ths_dir(t));
	const char *sagad = ths_env_ok("SAGAD_BIN");
	const char *root = geteuid() == 0 ? "--allow-root" : "--log-level=info";
	struct {
		const char *args[8];
		const char *says;
	} cases[] = {
		{ { "--listen", "tls+tcp://127.0.0.1:9", NULL }, "--tls-cert" },
		{ { "--listen", "tls+tcp://127.0.0.1:9", "--tls-cert", path(t, "server.pem"),
		      "--tls-key", path(t, "client.key"), NULL },
		    "is not the key" },
		{ { "--listen", "tls+tcp://127.0.0.1:9", "--tls-cert", path(t, "server.pem"),
		      "--tls-key", path(t, "server.key"), "--tls-client-auth=required", NULL },
		    "needs tls-ca" },
		{ { "--listen", "tls+tcp://127.0.0.1:9", "--tls-cert", path(t, "nothere.pem"),
		      "--tls-key", path(t, "server.key"), NULL },
		    "nothere.pem" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[16];
		size_t n = 0;
		argv[n++] = sagad;
		argv[n++] = root;
		argv[n++] = "--db";
		argv[n++] = ths_conninfo(t);
		for (size_t k = 0; cases[i].args[k] != NULL; k++)
			argv[n++] = cases[i].args[k];
		argv[n] = NULL;
		char logp[800];
		snprintf(logp, sizeof(logp), "%s/refuse-%zu.log", ths_dir(t), i);
		int st = -1;
		ck_assert_int_eq(th_run(argv, NULL, logp, 30000, &st), 0);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 78, "case %zu: exit %d", i,
		    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		char *log = th_read_file(logp, NULL);
		ck_assert_msg(log != NULL && strstr(log, cases[i].says) != NULL,
		    "case %zu: sagad said %s", i, log ? log : "(nothing)");
		free(log);
	}
	ths_free(t);
}
END_TEST

/* With auth off, a non-loopback listener is accepted only if it keeps the
 * network out: tls+tcp:// with client certificates required. */
START_TEST(a_wildcard_listener_with_auth_off_needs_client_certificates_required)
{
	ths *t = ths_new_ok(pg, "tls_wild");
	make_certs_ok(ths_dir(t));
	const char *port = strrchr(ths_url(t), ':') + 1;
	char any[64], logp[800];
	snprintf(any, sizeof(any), "tls+tcp://0.0.0.0:%s", port);
	/* Server certificate only: anyone may connect, so it is refused. */
	const char *argv[] = { ths_env_ok("SAGAD_BIN"), "--allow-root", "--db", ths_conninfo(t),
		"--listen", any, "--tls-cert", path(t, "live.pem"), "--tls-key",
		path(t, "live.key"), NULL };
	snprintf(logp, sizeof(logp), "%s/wild.log", ths_dir(t));
	int st = -1;
	ck_assert_int_eq(th_run(argv, NULL, logp, 30000, &st), 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 78, "status 0x%x", st);
	char *log = th_read_file(logp, NULL);
	ck_assert_msg(log != NULL && strstr(log, "client certificates required") != NULL, "%s",
	    log ? log : "(nothing)");
	free(log);
	/* With a CA for client certificates (required by default) it starts,
	 * and a client with a certificate is served. */
	ths_use_tls(t, path(t, "ca.pem"), path(t, "client.pem"), path(t, "client.key"), NULL);
	const char *extra[] = { "--listen", any, "--tls-cert", path(t, "live.pem"), "--tls-key",
		path(t, "live.key"), "--tls-ca", path(t, "ca.pem"), NULL };
	ths_sagad_start_ok(t, extra);
	char err[2048];
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca.pem"), path(t, "client.pem"),
			     path(t, "client.key"), err, sizeof(err), NULL),
	    SAGA_OK);
	ths_free(t);
}
END_TEST

START_TEST(refused_handshakes_are_logged_at_most_every_10_s_and_sagad_stays_up)
{
	ths *t = tls_world_ok("tls_log", NULL);
	char err[4096];
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(try_client(ths_url(t), path(t, "ca.pem"), path(t, "expired.pem"),
				     path(t, "expired.key"), err, sizeof(err), NULL),
		    SAGA_ECONN);
		ck_assert_int_eq(
		    try_client(plain_url(t), NULL, NULL, NULL, err, sizeof(err), NULL), SAGA_ECONN);
	}
	/* Garbage where a handshake belongs: random bytes, a TLS record header
	 * announcing more than follows, a ClientHello cut short, nothing at
	 * all; each connection then dropped. */
	for (int i = 0; i < 20; i++) {
		uint8_t junk[512];
		ck_assert_int_eq(getrandom(junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
		send_raw(t, junk, (size_t)(1 + junk[0] % sizeof(junk)));
	}
	static const uint8_t short_record[] = { 0x16, 0x03, 0x01, 0x40, 0x00, 0x01 };
	static const uint8_t cut_hello[] = { 0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0x00, 0x00, 0x2c,
		0x03, 0x03 };
	send_raw(t, short_record, sizeof(short_record));
	send_raw(t, cut_hello, sizeof(cut_hello));
	send_raw(t, NULL, 0);
	/* Some dozen refused handshakes: one line per 10 s, not one each. */
	wait_log_ok(t, "TLS handshake(s) refused", 1, 15000);
	ck_assert_int_le(log_count(t, "TLS handshake(s) refused"), 2);
	ck_assert_int_eq(ths_sagad_wait_exit(t, 0, NULL), -1); /* still running */
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca.pem"), path(t, "client.pem"),
			     path(t, "client.key"), err, sizeof(err), NULL),
	    SAGA_OK);
	ths_free(t);
}
END_TEST

START_TEST(sighup_gives_new_connections_a_new_certificate_and_open_ones_keep_theirs)
{
	ths *t = tls_world_ok("tls_reload", NULL);
	char err[4096];
	ths_register_sagas_ok(t);
	/* Connected before the reload, trusting only the first CA. */
	ths_participant_ok(t, "p1", 8, NULL);
	saga_client *old = ths_client(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=before");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);
	saga_string_free(id);

	/* The server certificate moves to one signed by a new CA. */
	size_t len;
	char *pem = th_read_file(path(t, "server2.pem"), &len);
	ck_assert_int_eq(th_write_file(path(t, "live.pem"), pem, len), 0);
	free(pem);
	pem = th_read_file(path(t, "server2.key"), &len);
	ck_assert_int_eq(th_write_file(path(t, "live.key"), pem, len), 0);
	free(pem);
	kill(ths_sagad_pid(t), SIGHUP);
	wait_log_ok(t, "TLS certificates reloaded", 1, 10000);

	/* New connections need the new CA... */
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca.pem"), path(t, "client.pem"),
			     path(t, "client.key"), err, sizeof(err), NULL),
	    SAGA_ECONN);
	ck_assert_msg(strstr(err, "TLS handshake") != NULL, "detail: %s", err);
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca2.pem"), path(t, "client.pem"),
			     path(t, "client.key"), err, sizeof(err), NULL),
	    SAGA_OK);
	/* ...while the client and participant connected before go on. */
	ck_assert_ptr_eq(ths_client(t), old);
	id = ths_start_ok(t, "ittest.Linear3", "tag=after");
	info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);
	saga_string_free(id);

	/* A bad file on reload changes nothing. */
	ck_assert_int_eq(th_write_file(path(t, "live.pem"), "garbage\n", 8), 0);
	kill(ths_sagad_pid(t), SIGHUP);
	wait_log_ok(t, "TLS certificates not reloaded", 1, 10000);
	ck_assert_int_eq(try_client(ths_url(t), path(t, "ca2.pem"), path(t, "client.pem"),
			     path(t, "client.key"), err, sizeof(err), NULL),
	    SAGA_OK);
	ths_free(t);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(
	    tc, sagas_run_end_to_end_over_mutual_tls_with_client_participant_and_sagactl);
	tcase_add_test(tc, a_plaintext_client_is_refused_by_a_tls_listener_with_econn_saying_tls);
	tcase_add_test(tc, a_client_trusting_another_ca_is_refused_with_econn_saying_tls_failed);
	tcase_add_test(tc, no_client_certificate_is_refused_when_client_auth_is_required);
	tcase_add_test(tc, an_expired_client_certificate_is_refused_when_client_auth_is_required);
	tcase_add_test(tc, a_tls_url_without_a_ca_or_with_unusable_files_fails_at_once_with_einval);
	tcase_add_test(tc, sagad_refuses_to_start_when_tls_settings_cannot_work);
	tcase_add_test(tc, a_wildcard_listener_with_auth_off_needs_client_certificates_required);
	tcase_add_test(tc, refused_handshakes_are_logged_at_most_every_10_s_and_sagad_stays_up);
	tcase_add_test(
	    tc, sighup_gives_new_connections_a_new_certificate_and_open_ones_keep_theirs);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(tls_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
