/*
 * Integration: PostgreSQL cut off by a network partition (packets dropped,
 * nothing reset) and the network healed, with the real sagad, a real
 * PostgreSQL reached over TCP and a real participant.
 *
 * The network, made per run (names and addresses from the pid):
 *
 *   host (sagad, the test)  sph<pid> A.1/30
 *        | veth
 *   ns R (a router)         spr<pid> A.2/30, spq<pid> A.5/30, ip_forward on
 *        | veth
 *   ns P (PostgreSQL)       spp<pid> A.6/30, default via A.5
 *
 * The partition is two blackhole routes in R (to A.6 and to A.1): R drops
 * every packet between sagad and PostgreSQL silently, both ways, while
 * sagad's RPC (ipc://) and HTTP (127.0.0.1) and the test's own queries
 * (PostgreSQL's unix socket) go on working. The heal deletes them.
 *
 * Clean-up whatever happens: R and P are unnamed namespaces held by
 * processes of the test (an `unshare -n sleep` per namespace, and
 * PostgreSQL in P), which die with the test (PR_SET_PDEATHSIG); a namespace
 * dies with its last process, its veth ends with it, the host's end of a
 * veth with its peer, and the host's route to P with that device. Nothing
 * is named in /run/netns and no route is left on the host.
 *
 * Skips (exit 77) only when no namespace with a veth pair can be made
 * (not root, no CAP_NET_ADMIN, no `ip`).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

#define WAIT_MS 30000

/* The settings the bounds below come from (server/store.c store_connect,
 * server/store.c the writer, docs/OPERATIONS.md /readyz). */
#define TCP_USER_TIMEOUT_MS 15000 /* an unacknowledged send gives up after */
#define CONNECT_TIMEOUT_MS  10000 /* a connection attempt gives up after */
#define WRITER_BACKOFF_MS   2000  /* the writer's longest wait between attempts */
#define LEASE_MS            8000  /* default --lease-ms */
#define SLACK_MS            8000  /* a loaded 2-core machine */

/* ---- the network ---------------------------------------------------------- */

typedef struct net {
	pid_t r, p; /* holders of namespaces R and P */
	char rpid[16], ppid[16];
	char hif[16], rif[16], qif[16], pif[16];
	char a1[20], a2[20], a5[20], a6[20], sub_p[24];
} net;

static int
run_quiet(const char *const argv[])
{
	int st = 0;
	if (th_run(argv, NULL, NULL, 15000, &st) != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "it-partition: failed:");
		for (int i = 0; argv[i] != NULL; i++)
			fprintf(stderr, " %s", argv[i]);
		fprintf(stderr, "\n");
		return -1;
	}
	return 0;
}

/* Runs `ip args...` in the namespace of holder pid (NULL = the host's). */
static int
ip_in(const char *pid, const char *const args[])
{
	const char *argv[24];
	int i = 0;
	if (pid != NULL) {
		argv[i++] = "nsenter";
		argv[i++] = "-t";
		argv[i++] = pid;
		argv[i++] = "-n";
	}
	argv[i++] = "ip";
	for (int k = 0; args[k] != NULL && i < 23; k++)
		argv[i++] = args[k];
	argv[i] = NULL;
	return run_quiet(argv);
}
#define IP(pid, ...) ip_in(pid, (const char *const[]) { __VA_ARGS__, NULL })

static int
same_netns(const char *path_a, const char *path_b)
{
	struct stat a, b;
	if (stat(path_a, &a) != 0 || stat(path_b, &b) != 0)
		return 1;
	return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static int
holder_unshared(void *arg)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", *(pid_t *)arg);
	return !same_netns(path, "/proc/self/ns/net");
}

/* A process alone in a new network namespace (it holds it). */
static pid_t
ns_holder(void)
{
	const char *argv[] = { "unshare", "-n", "sleep", "3600", NULL };
	pid_t pid = th_spawn(argv, NULL, NULL);
	if (pid > 0 && th_wait_until(holder_unshared, &pid, 10000) != 0) {
		th_stop(pid);
		return -1;
	}
	return pid;
}

static void
net_setup_ok(net *n)
{
	int pid = (int)getpid();
	unsigned b = 200 + (unsigned)(pid / 250) % 50, c = (unsigned)pid % 250;
	snprintf(n->a1, sizeof(n->a1), "10.%u.%u.1", b, c);
	snprintf(n->a2, sizeof(n->a2), "10.%u.%u.2", b, c);
	snprintf(n->a5, sizeof(n->a5), "10.%u.%u.5", b, c);
	snprintf(n->a6, sizeof(n->a6), "10.%u.%u.6", b, c);
	snprintf(n->sub_p, sizeof(n->sub_p), "10.%u.%u.4/30", b, c);
	snprintf(n->hif, sizeof(n->hif), "sph%d", pid);
	snprintf(n->rif, sizeof(n->rif), "spr%d", pid);
	snprintf(n->qif, sizeof(n->qif), "spq%d", pid);
	snprintf(n->pif, sizeof(n->pif), "spp%d", pid);

	n->r = ns_holder();
	n->p = ns_holder();
	ck_assert_msg(n->r > 0 && n->p > 0, "cannot make the network namespaces");
	snprintf(n->rpid, sizeof(n->rpid), "%d", (int)n->r);
	snprintf(n->ppid, sizeof(n->ppid), "%d", (int)n->p);
	char a1[24], a2[24], a5[24], a6[24];
	snprintf(a1, sizeof(a1), "%s/30", n->a1);
	snprintf(a2, sizeof(a2), "%s/30", n->a2);
	snprintf(a5, sizeof(a5), "%s/30", n->a5);
	snprintf(a6, sizeof(a6), "%s/30", n->a6);
	const char *fwd[] = { "nsenter", "-t", n->rpid, "-n", "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1", NULL };
	int ok = IP(NULL, "link", "add", n->hif, "type", "veth", "peer", "name", n->rif) == 0 &&
	    IP(NULL, "link", "set", n->rif, "netns", n->rpid) == 0 &&
	    IP(NULL, "addr", "add", a1, "dev", n->hif) == 0 &&
	    IP(NULL, "link", "set", n->hif, "up") == 0 &&
	    IP(n->rpid, "link", "add", n->qif, "type", "veth", "peer", "name", n->pif) == 0 &&
	    IP(n->rpid, "link", "set", n->pif, "netns", n->ppid) == 0 &&
	    IP(n->rpid, "addr", "add", a2, "dev", n->rif) == 0 &&
	    IP(n->rpid, "addr", "add", a5, "dev", n->qif) == 0 &&
	    IP(n->rpid, "link", "set", n->rif, "up") == 0 &&
	    IP(n->rpid, "link", "set", n->qif, "up") == 0 && run_quiet(fwd) == 0 &&
	    IP(n->ppid, "addr", "add", a6, "dev", n->pif) == 0 &&
	    IP(n->ppid, "link", "set", n->pif, "up") == 0 &&
	    IP(n->ppid, "link", "set", "lo", "up") == 0 &&
	    IP(n->ppid, "route", "add", "default", "via", n->a5) == 0 &&
	    IP(NULL, "route", "add", n->sub_p, "via", n->a2, "dev", n->hif) == 0;
	ck_assert_msg(ok, "cannot set up the veth pairs and routes (see above)");
}

/* Cuts (1) or heals (0) the path between sagad and PostgreSQL in R. */
static void
net_cut_ok(net *n, int cut)
{
	char to_p[24], to_h[24];
	snprintf(to_p, sizeof(to_p), "%s/32", n->a6);
	snprintf(to_h, sizeof(to_h), "%s/32", n->a1);
	const char *op = cut ? "add" : "del";
	ck_assert_int_eq(IP(n->rpid, "route", op, "blackhole", to_p), 0);
	ck_assert_int_eq(IP(n->rpid, "route", op, "blackhole", to_h), 0);
}

static int
host_if_gone(void *arg)
{
	const net *n = arg;
	char path[64];
	snprintf(path, sizeof(path), "/sys/class/net/%s", n->hif);
	return access(path, F_OK) != 0;
}

/* Starts PostgreSQL inside P, listening on A.6 (and its unix socket). */
static th_pg *
pg_in_p_ok(net *n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)n->p);
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int there = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(home >= 0 && there >= 0, "open netns: %s", strerror(errno));
	ck_assert_msg(setns(there, CLONE_NEWNET) == 0, "setns: %s", strerror(errno));
	th_pg_opts o = { .fsync = 1 };
	snprintf(o.listen_addresses, sizeof(o.listen_addresses), "%s", n->a6);
	th_pg *pg = NULL;
	int rv = th_pg_start_opts(&pg, &o);
	ck_assert_msg(setns(home, CLONE_NEWNET) == 0, "setns back: %s", strerror(errno));
	close(home);
	close(there);
	ck_assert_msg(rv == 0, "cannot start PostgreSQL in the namespace");
	return pg;
}

/* ---- HTTP ---------------------------------------------------------------- */

static int
http_status_is(int port, const char *path, const char *status)
{
	long long ms;
	char *r = ths_http_get_timed(port, path, 5000, &ms);
	int ok = strncmp(r, status, strlen(status)) == 0;
	free(r);
	return ok;
}

static int
log_has(ths *t, const char *text)
{
	char *log = th_read_file(ths_sagad_log(t), NULL);
	int found = log != NULL && strstr(log, text) != NULL;
	free(log);
	return found;
}

/* ---- the test ------------------------------------------------------------ */

#define N_BEFORE 3
#define N_AFTER  3
#define CUT_KEY  "it-partition-cut"

/* A start with a 5 s client timeout, from its own thread and client. */
typedef struct cut_start {
	const char *url;
	int rv;
	long long ms;
	char err[512];
} cut_start;

static void *
cut_start_main(void *arg)
{
	cut_start *cs = arg;
	saga_client *c = NULL;
	cs->rv = saga_client_new(cs->url, &c);
	if (cs->rv != SAGA_OK)
		return NULL;
	saga_client_set_timeout(c, 5000);
	saga_start_opts so = SAGA_START_OPTS_INIT;
	so.idempotency_key = CUT_KEY;
	char *id = NULL;
	long long t0 = th_now_ms();
	cs->rv = saga_client_start(c, "ittest.Linear3", "tag=cut", 7, &so, &id, NULL);
	cs->ms = th_now_ms() - t0;
	snprintf(cs->err, sizeof(cs->err), "%s", saga_client_errmsg(c));
	saga_string_free(id);
	saga_client_free(c);
	return NULL;
}

START_TEST(a_partition_from_postgresql_gives_503_then_heals_within_seconds_losing_nothing)
{
	net n;
	memset(&n, 0, sizeof(n));
	net_setup_ok(&n);
	th_pg *pg = pg_in_p_ok(&n);
	ths *t = ths_new_ok(pg, "part");
	char ci[160];
	snprintf(ci, sizeof(ci), "host=%s port=5432 dbname=part user=saga", n.a6);
	ths_set_conninfo(t, ci);
	int port = ths_free_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	const char *args[] = { "--http-listen", url, "--log-format", "logfmt", NULL };
	ths_sagad_start_ok(t, args);
	ths_register_sagas_ok(t);
	ths_participant_ok(t, "p1", 8, NULL);

	/* before: over TCP through R, sagas complete */
	char *ids[N_BEFORE + N_AFTER + 1];
	size_t n_ids = 0;
	for (int i = 0; i < N_BEFORE; i++) {
		ids[n_ids] = ths_start_ok(t, "ittest.Linear3", "tag=before");
		saga_info *info = ths_wait_final_ok(t, ids[n_ids], WAIT_MS);
		ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
		saga_info_free(info);
		n_ids++;
	}
	ck_assert(http_status_is(port, "/readyz", "HTTP/1.1 200"));
	ck_assert_int_gt(th_pg_query_int(pg, "part",
			     "SELECT count(*) FROM pg_stat_activity WHERE client_addr IS NOT NULL"),
	    0);

	/* during: a start (in a thread: meanwhile the probes below) cannot
	 * be committed; the client gets its timeout, not a hang */
	net_cut_ok(&n, 1);
	long long t_cut = th_now_ms();
	cut_start cs = { .url = ths_url(t) };
	pthread_t starter;
	ck_assert_int_eq(pthread_create(&starter, NULL, cut_start_main, &cs), 0);

	/* /readyz 503 (the commit has waited over 2 s, the lease queries
	 * over half the lease plus 1 s), answered at once; /healthz 200 */
	long long t_503 = -1;
	while (t_503 < 0) {
		long long ms;
		char *r = ths_http_get_timed(port, "/healthz", 5000, &ms);
		ck_assert_msg(strncmp(r, "HTTP/1.1 200", 12) == 0 && ms < 1000,
		    "/healthz during the partition: %lld ms: %s", ms, r);
		free(r);
		r = ths_http_get_timed(port, "/readyz", 5000, &ms);
		ck_assert_msg(
		    ms < 1000 && r[0] != '\0', "/readyz took %lld ms during the partition", ms);
		if (strncmp(r, "HTTP/1.1 503", 12) == 0) {
			t_503 = th_now_ms() - t_cut;
			ck_assert_msg(strstr(r, "PostgreSQL") != NULL,
			    "the 503 does not say what is wrong: %s", r);
		}
		free(r);
		ck_assert_msg(
		    th_now_ms() - t_cut < 15000, "/readyz still not 503 15 s into the partition");
		usleep(200 * 1000);
	}
	fprintf(stderr, "it-partition: /readyz 503 %lld ms into the partition\n", t_503);
	pthread_join(starter, NULL);
	ck_assert_msg(cs.rv != SAGA_OK, "a start was acknowledged during the partition");
	ck_assert_msg(cs.ms < 5000 + 2000, "the start during the partition took %lld ms", cs.ms);
	fprintf(stderr, "it-partition: start during the partition: %s (%s) after %lld ms\n",
	    saga_strerror(cs.rv), cs.err, cs.ms);
	/* It says sagad took the request, and that a retry with the key is safe. */
	ck_assert_msg(cs.rv == SAGA_ETIMEDOUT && strstr(cs.err, "took the request") &&
		strstr(cs.err, "same idempotency key"),
	    "%s", cs.err);

	/* the stalled commit is logged (after 5 s) */
	while (!log_has(t, "a commit has been waiting")) {
		ck_assert_msg(th_now_ms() - t_cut < 5000 + 1000 + SLACK_MS,
		    "no stalled-commit line in sagad's log");
		usleep(100 * 1000);
	}
	/* the writer's dead connection is given up (tcp_user_timeout), not
	 * kept through the outage */
	while (!log_has(t, "writer: commit of")) {
		ck_assert_msg(th_now_ms() - t_cut < TCP_USER_TIMEOUT_MS + SLACK_MS,
		    "the writer kept its dead connection %d ms into the partition",
		    TCP_USER_TIMEOUT_MS + SLACK_MS);
		usleep(100 * 1000);
	}
	long long t_drop = th_now_ms() - t_cut;
	fprintf(stderr, "it-partition: writer dropped its connection %lld ms into the partition\n",
	    t_drop);
	/* still cut off: still 503, /healthz still 200 */
	ck_assert(http_status_is(port, "/readyz", "HTTP/1.1 503"));
	ck_assert(http_status_is(port, "/healthz", "HTTP/1.1 200"));
	/* a few reconnection attempts into the silence (each up to the
	 * connect timeout) before the heal */
	usleep(3000 * 1000);

	/* after the heal: the start (same key) is acknowledged within
	 * the connect timeout + the writer's backoff + slack */
	net_cut_ok(&n, 0);
	long long t_heal = th_now_ms();
	saga_client *c = ths_client_new(t, NULL);
	ck_assert_int_eq(saga_client_set_timeout(c, 5000), SAGA_OK);
	saga_start_opts so = SAGA_START_OPTS_INIT;
	so.idempotency_key = CUT_KEY;
	char *cut_id = NULL;
	int rv;
	const long long bound = CONNECT_TIMEOUT_MS + WRITER_BACKOFF_MS + SLACK_MS;
	int existing = -1;
	for (;;) {
		rv = saga_client_start(c, "ittest.Linear3", "tag=cut", 7, &so, &cut_id, &existing);
		if (rv == SAGA_OK)
			break;
		ck_assert_msg(th_now_ms() - t_heal < bound,
		    "no start acknowledged %lld ms after the heal: %s: %s", bound,
		    saga_strerror(rv), saga_client_errmsg(c));
		usleep(200 * 1000);
	}
	long long t_ack = th_now_ms() - t_heal;
	/* the start made during the partition was kept (the writer retries
	 * its batch until committed), and the retry found it */
	ck_assert_msg(existing == 1, "the start made during the partition was lost");
	ids[n_ids++] = cut_id;
	while (!http_status_is(port, "/readyz", "HTTP/1.1 200")) {
		ck_assert_msg(
		    th_now_ms() - t_heal < bound, "/readyz not 200 %lld ms after the heal", bound);
		usleep(200 * 1000);
	}
	long long t_ready = th_now_ms() - t_heal;
	fprintf(stderr,
	    "it-partition: after the heal: start acknowledged in %lld ms (existing=%d), /readyz "
	    "200 in %lld ms (bound %lld ms)\n",
	    t_ack, existing, t_ready, bound);
	for (int i = 0; i < N_AFTER; i++)
		ids[n_ids++] = ths_start_ok(t, "ittest.Linear3", "tag=after");

	/* nothing lost, nothing doubled: every saga completes, once */
	for (size_t i = 0; i < n_ids; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga %s is %s", ids[i],
		    saga_state_name(info->state));
		saga_info_free(info);
		saga_string_free(ids[i]);
	}
	ck_assert_int_eq(
	    th_pg_query_int(pg, "part", "SELECT count(*) FROM sagas"), N_BEFORE + 1 + N_AFTER);
	ck_assert_int_eq(th_pg_query_int(pg, "part",
			     "SELECT count(*) FROM sagas WHERE idempotency_key = '" CUT_KEY "'"),
	    1);
	saga_client_free(c);

	ths_free(t);
	th_pg_free(pg);
	th_stop(n.p);
	th_stop(n.r);
	/* the namespaces died with their processes, and the veths with them */
	ck_assert_msg(th_wait_until(host_if_gone, &n, 20000) == 0,
	    "%s still exists after the namespaces' processes ended", n.hif);
}
END_TEST

/* Exit 77 (skip) unless a network namespace with a veth pair can be made. */
static void
skip_unless_netns(void)
{
	const char *argv[] = { "unshare", "-n", "ip", "link", "add", "probe0", "type", "veth",
		"peer", "name", "probe1", NULL };
	int st = 0;
	if (th_run(argv, NULL, "/dev/null", 15000, &st) != 0 || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		fprintf(stderr,
		    "it-partition: SKIPPED: cannot make a network namespace with a veth pair "
		    "(`unshare -n ip link add probe0 type veth peer name probe1` failed: this "
		    "test needs root or CAP_NET_ADMIN and CAP_SYS_ADMIN, and `ip` from iproute2, "
		    "see tests/install-deps.sh)\n");
		exit(77);
	}
}

int
main(void)
{
	skip_unless_netns();
	Suite *s = suite_create("partition");
	TCase *tc = tcase_create("partition");
	tcase_set_timeout(tc, 240);
	tcase_add_test(
	    tc, a_partition_from_postgresql_gives_503_then_heals_within_seconds_losing_nothing);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
