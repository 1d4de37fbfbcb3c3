/*
 * bench-participant: the participant process of sagabench, built on the
 * public libsaga header only. It does no work of its own: every action
 * answers success at once, so what sagabench measures is sagad, libsaga
 * and PostgreSQL.
 *
 *   bench-participant --url URL --participant NAME[,NAME...] [...]
 *       [--capacity N] [--instance ID] [--fail-on RPC]
 *       [--delay-ms MS --delay-rpc RPC] [--stats FILE]
 *
 * One process serves every participant name given, one saga_worker (and
 * one thread running saga_worker_run) per name. Every worker has handlers
 * for every rpc of bench/bench.proto; sagad only sends a worker the steps
 * of its own participant name.
 *
 * The saga input is a bench.Input message (field 1, flags, first): sagad
 * treats it as opaque bytes, so the handler reads the flags from the first
 * two bytes (0x08 <flags>) and ignores the rest.
 *   flags & 1 (FAIL_LAST): the action named by --fail-on replies
 *                          saga_reply_fail (business failure), so the saga
 *                          compensates.
 *   flags & 2 (ECHO):      the result is a bench.Result as large as the
 *                          input (the 10 KiB payload scenario); otherwise
 *                          it is 4 bytes.
 * Compensations always succeed with an empty result.
 *
 * --delay-ms MS --delay-rpc RPC: the action RPC sleeps MS before it
 * answers (the slow participant of the in-flight scenario). SIGUSR1 ends
 * every delay at once, now and later, and marks the moment: the stats then
 * say when the first step arrived after it (sagabench sends SIGUSR1 while
 * sagad is down, so that is the first dispatch of the restarted sagad).
 *
 * --stats FILE: every 20 ms (when something changed) FILE is replaced
 * (write + rename, so a reader never sees half of it) by lines
 *   released_ns <CLOCK_MONOTONIC ns of SIGUSR1, 0 = not yet>
 *   first_after_release_ns <ns of the first handler entry after it, 0 = none>
 *   first_ns <ns of the first handler entry>
 *   rpc <name> <times its handler ran>   (one line per rpc that ran)
 *
 * SIGTERM/SIGINT stop the workers (saga_worker_stop); exit status 0 after a
 * clean stop, 1 if a worker failed, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "saga.h"

#define MAX_WORKERS    16
#define FLAG_FAIL_LAST 1u
#define FLAG_ECHO      2u
/* Largest echoed result: sagad's default message limit is 1 MiB. */
#define ECHO_MAX       (256 * 1024)

/* Every rpc in bench.proto: actions first, then compensations. */
static const char *const actions[] = { "S1", "S2", "S3", "T1", "T2", "T3", "T4", "T5", "T6", "T7",
	"T8", "T9", "T10", "B1", "B2", "B3", "J" };
static const char *const comps[] = { "U1", "U2", "U3", "UT1", "UT2", "UT3", "UT4", "UT5", "UT6",
	"UT7", "UT8", "UT9", "UT10", "UB1", "UB2", "UB3", "UJ" };
#define N_ACTIONS (sizeof(actions) / sizeof(actions[0]))
#define N_COMPS   (sizeof(comps) / sizeof(comps[0]))
#define N_RPCS    (N_ACTIONS + N_COMPS)

static struct {
	const char *url;
	const char *instance;
	const char *fail_on;
	const char *delay_rpc;
	const char *stats;
	const char *tls_ca, *tls_cert, *tls_key; /* NULL = no TLS */
	const char *credential_dir;              /* DIR/NAME.credential per name (auth on) */
	long delay_ms;
	uint32_t capacity;
	size_t n_names;
	char *names[MAX_WORKERS];
	saga_worker *workers[MAX_WORKERS];
	pthread_t threads[MAX_WORKERS];
	int rv[MAX_WORKERS];
} P;

static atomic_ullong counts[N_RPCS];
static atomic_llong first_ns;
static atomic_llong released_ns;
static atomic_llong first_after_release_ns;
static volatile sig_atomic_t stopping;
static uint8_t *echo_buf; /* a bench.Result header + zeros, ECHO_MAX long */

static long long
mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bench-participant --url URL --participant NAME[,NAME...] [--capacity N]\n"
	    "         [--instance ID] [--fail-on RPC] [--delay-ms MS --delay-rpc RPC]\n"
	    "         [--stats FILE] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n"
	    "         [--credential-dir DIR]\n");
	exit(2);
}

static void
on_log(saga_log_level level, const char *line, void *user)
{
	(void)user;
	if (level <= SAGA_LOG_WARN)
		fprintf(stderr, "bench-participant[%d]: %s\n", (int)getpid(), line);
}

/* The flags of a bench.Input, from its first field (0 if absent). */
static unsigned
input_flags(const saga_step *s)
{
	if (s->input_len >= 2 && s->input[0] == 0x08 && s->input[1] < 0x80)
		return s->input[1];
	return 0;
}

static void
note_entry(void)
{
	long long now = mono_ns(), zero = 0;
	atomic_compare_exchange_strong(&first_ns, &zero, now);
	if (atomic_load(&released_ns) != 0) {
		zero = 0;
		atomic_compare_exchange_strong(&first_after_release_ns, &zero, now);
	}
}

static void
on_action(const saga_step *s, saga_reply *r, void *user)
{
	size_t idx = (size_t)(uintptr_t)user;
	unsigned flags = input_flags(s);

	note_entry();
	if (P.delay_ms > 0 && P.delay_rpc != NULL && strcmp(s->rpc, P.delay_rpc) == 0) {
		long long until = mono_ns() + P.delay_ms * 1000000LL;
		while (!stopping && atomic_load(&released_ns) == 0 && mono_ns() < until)
			sleep_ms(10);
	}
	atomic_fetch_add(&counts[idx], 1);
	if ((flags & FLAG_FAIL_LAST) && P.fail_on != NULL && strcmp(s->rpc, P.fail_on) == 0) {
		saga_reply_fail(r, "bench: planned failure");
		return;
	}
	if (flags & FLAG_ECHO) {
		/* A bench.Result whose encoding is as long as the input. */
		size_t len = s->input_len < 8 ? 8
		    : s->input_len > ECHO_MAX ? ECHO_MAX
					      : s->input_len;
		size_t data = len - 5; /* tag + 4-byte varint length */
		echo_buf[0] = 0x0a;
		echo_buf[1] = (uint8_t)(0x80 | (data & 0x7f));
		echo_buf[2] = (uint8_t)(0x80 | ((data >> 7) & 0x7f));
		echo_buf[3] = (uint8_t)(0x80 | ((data >> 14) & 0x7f));
		echo_buf[4] = (uint8_t)((data >> 21) & 0x7f);
		saga_reply_success(r, echo_buf, len);
		return;
	}
	saga_reply_success(r, "\x0a\x02ok", 4);
}

static void
on_comp(const saga_step *s, saga_reply *r, void *user)
{
	(void)s;
	note_entry();
	atomic_fetch_add(&counts[(size_t)(uintptr_t)user], 1);
	saga_reply_success(r, NULL, 0);
}

static void
on_signal(int sig)
{
	if (sig == SIGUSR1) {
		long long zero = 0;
		atomic_compare_exchange_strong(&released_ns, &zero, mono_ns());
		return;
	}
	stopping = 1;
	for (size_t i = 0; i < P.n_names; i++)
		if (P.workers[i] != NULL)
			saga_worker_stop(P.workers[i]);
}

static void *
worker_main(void *arg)
{
	size_t i = (size_t)(uintptr_t)arg;
	P.rv[i] = saga_worker_run(P.workers[i]);
	if (P.rv[i] != SAGA_OK)
		fprintf(stderr, "bench-participant: worker %s: %s: %s\n", P.names[i],
		    saga_strerror(P.rv[i]), saga_worker_errmsg(P.workers[i]));
	return NULL;
}

/* Replaces the stats file if anything changed since the last call. */
static void
write_stats(unsigned long long *last_sum, long long *last_rel)
{
	unsigned long long sum = 0;
	long long rel = atomic_load(&first_after_release_ns) + atomic_load(&released_ns);
	char tmp[4200], buf[4096];
	size_t n = 0;
	FILE *f;

	for (size_t i = 0; i < N_RPCS; i++)
		sum += atomic_load(&counts[i]);
	if (sum == *last_sum && rel == *last_rel)
		return;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n,
	    "released_ns %lld\nfirst_after_release_ns %lld\nfirst_ns %lld\n",
	    (long long)atomic_load(&released_ns), (long long)atomic_load(&first_after_release_ns),
	    (long long)atomic_load(&first_ns));
	for (size_t i = 0; i < N_RPCS && n < sizeof(buf) - 64; i++) {
		unsigned long long c = atomic_load(&counts[i]);
		if (c > 0)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "rpc %s %llu\n",
			    i < N_ACTIONS ? actions[i] : comps[i - N_ACTIONS], c);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", P.stats);
	if ((f = fopen(tmp, "w")) == NULL)
		return;
	fwrite(buf, 1, n, f);
	if (fclose(f) == 0 && rename(tmp, P.stats) == 0) {
		*last_sum = sum;
		*last_rel = rel;
	}
}

static void
add_names(const char *arg)
{
	/* A copy (kept for the process's life): tokenizing argv in place
	 * would change what ps shows. */
	char *list = strdup(arg), *save = NULL;
	if (list == NULL)
		exit(1);
	for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (P.n_names == MAX_WORKERS) {
			fprintf(stderr, "bench-participant: at most %d participant names\n",
			    MAX_WORKERS);
			exit(2);
		}
		P.names[P.n_names++] = t;
	}
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	sigset_t mask;
	int status = 0;

	P.capacity = 256;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--url") == 0)
			P.url = v;
		else if (strcmp(a, "--participant") == 0)
			add_names(v);
		else if (strcmp(a, "--capacity") == 0)
			P.capacity = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--instance") == 0)
			P.instance = v;
		else if (strcmp(a, "--fail-on") == 0)
			P.fail_on = v;
		else if (strcmp(a, "--delay-ms") == 0)
			P.delay_ms = strtol(v, NULL, 10);
		else if (strcmp(a, "--delay-rpc") == 0)
			P.delay_rpc = v;
		else if (strcmp(a, "--stats") == 0)
			P.stats = v;
		else if (strcmp(a, "--tls-ca") == 0)
			P.tls_ca = v;
		else if (strcmp(a, "--tls-cert") == 0)
			P.tls_cert = v;
		else if (strcmp(a, "--tls-key") == 0)
			P.tls_key = v;
		else if (strcmp(a, "--credential-dir") == 0)
			P.credential_dir = v;
		else
			usage();
	}
	if (P.url == NULL || P.n_names == 0 || P.capacity == 0)
		usage();
	if ((echo_buf = calloc(1, ECHO_MAX)) == NULL)
		return 1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	/* Only this thread takes the signals: the handler must not run on
	 * a libsaga thread that holds a lock saga_worker_stop() needs. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	for (size_t i = 0; i < P.n_names; i++) {
		saga_worker *w = NULL;
		int rv = saga_worker_new(P.url, P.names[i], &w);
		if (rv != SAGA_OK) {
			fprintf(
			    stderr, "bench-participant: saga_worker_new: %s\n", saga_strerror(rv));
			return 1;
		}
		saga_worker_set_log(w, on_log, NULL);
		if (P.tls_ca != NULL &&
		    (rv = saga_worker_set_tls(w, P.tls_ca, P.tls_cert, P.tls_key, NULL)) !=
			SAGA_OK) {
			fprintf(stderr, "bench-participant: TLS: %s\n", saga_worker_errmsg(w));
			return 2;
		}
		if (P.credential_dir != NULL) {
			char path[1024], cred[1024] = "";
			snprintf(
			    path, sizeof(path), "%s/%s.credential", P.credential_dir, P.names[i]);
			FILE *f = fopen(path, "r");
			if (f == NULL || fgets(cred, sizeof(cred), f) == NULL) {
				fprintf(stderr, "bench-participant: cannot read %s\n", path);
				return 1;
			}
			fclose(f);
			cred[strcspn(cred, "\r\n")] = '\0';
			if ((rv = saga_worker_set_credential(w, cred)) != SAGA_OK) {
				fprintf(stderr, "bench-participant: credential: %s\n",
				    saga_strerror(rv));
				return 1;
			}
		}
		if ((rv = saga_worker_set_capacity(w, P.capacity)) != SAGA_OK) {
			fprintf(stderr, "bench-participant: capacity %u: %s\n", P.capacity,
			    saga_strerror(rv));
			return 2;
		}
		if (P.instance != NULL) {
			char inst[128];
			snprintf(inst, sizeof(inst), "%s/%s", P.instance, P.names[i]);
			saga_worker_set_instance(w, inst);
		}
		for (size_t k = 0; k < N_ACTIONS; k++)
			saga_worker_on_action(w, actions[k], on_action, (void *)(uintptr_t)k);
		for (size_t k = 0; k < N_COMPS; k++)
			saga_worker_on_compensation(
			    w, comps[k], on_comp, (void *)(uintptr_t)(N_ACTIONS + k));
		P.workers[i] = w;
	}
	/* Threads made from here on inherit the blocked mask. */
	for (size_t i = 0; i < P.n_names; i++)
		if (pthread_create(&P.threads[i], NULL, worker_main, (void *)(uintptr_t)i) != 0) {
			fprintf(stderr, "bench-participant: pthread_create failed\n");
			return 1;
		}
	pthread_sigmask(SIG_UNBLOCK, &mask, NULL);

	{
		unsigned long long last_sum = ~0ULL;
		long long last_rel = -1;
		while (!stopping) {
			if (P.stats != NULL)
				write_stats(&last_sum, &last_rel);
			sleep_ms(20);
		}
		if (P.stats != NULL)
			write_stats(&last_sum, &last_rel);
	}
	for (size_t i = 0; i < P.n_names; i++) {
		pthread_join(P.threads[i], NULL);
		if (P.rv[i] != SAGA_OK)
			status = 1;
		saga_worker_free(P.workers[i]);
	}
	free(echo_buf);
	return status;
}
