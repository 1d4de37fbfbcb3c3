/*
 * test-participant: a participant for the integration tests, written
 * against libsaga's public header only.
 *
 *   test-participant --url URL --participant NAME [--participant NAME...]
 *       [--capacity N] [--instance ID] --journal PATH
 *       [--action RPC...] [--compensation RPC...] [--verbose]
 *       [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name N]]
 *       [--credential-dir DIR]
 *
 * With --credential-dir, the worker of participant NAME sends the
 * credential in DIR/NAME.credential (its first line), for a sagad with
 * auth on (tests/lib/th_sagad.h, ths_auth_on).
 *
 * One process can serve several participant names (one saga_worker each).
 * It registers a handler for every --action and --compensation rpc given,
 * or, with none given, for the rpcs of tests/integration/sagas.proto
 * (actions A B C D T, compensations UndoA UndoB UndoC UndoD UndoT).
 *
 * What a handler does is driven by the saga INPUT, text of the form
 * "key=value;key=value" (keys may repeat; STEP matches a step name, or the
 * rpc being run):
 *   fail=STEP          business failure of STEP's action
 *   retry=STEP:N       retryable error on the first N attempts of the action
 *   sleep=STEP:MS      sleep MS before answering the action
 *   beat=STEP:N        with sleep: heartbeat every N ms while sleeping, but
 *   beats=STEP:K       only the first K times (default: all along)
 *   compfail=STEP:N    retryable error on the first N attempts of STEP's
 *                      compensation
 *   compsleep=STEP:MS  sleep MS before answering the compensation
 *   echo=STEP          STEP's action returns the saga input as its result
 *                      (for inputs that are protobuf messages: a string
 *                      field holding ";echo=A;" is found among the bytes)
 *   pbresult=1         actions return a sagas.proto Result message (text
 *                      "<rpc>@<saga_id>") instead of the bare text: the
 *                      web UI's tests and screenshots show it as JSON
 *   compfailwhile=PATH every compensation fails (retryable) while the file
 *                      PATH exists (a test "fixes" it by removing the file)
 *   crash=STEP         _exit(137) on receiving STEP's action; only in the
 *   crashinst=ID       instance ID, if crashinst is given. A process
 *                      journals one crash line however many handlers
 *                      hit a crash at once.
 * Anything else in the input is ignored, so a test may add a tag=... of
 * its own to make inputs distinct.
 *
 * The journal: every handler invocation appends ONE line, written with a
 * single write() to a file opened O_APPEND and then fsync()ed, before the
 * reply is made, so lines survive kill -9, processes never interleave and
 * journal order is the order in which outcomes were decided:
 *
 *   <saga_id> <a|c> <rpc> <attempt> <instance> <outcome> <start_us> <end_us> <traceparent>
 *   [<step>=<result>...]
 *
 * outcome is ok, retry, fail or crash; start_us/end_us are the handler's
 * wall-clock entry and decision times (unix microseconds); the W3C
 * traceparent libsaga handed the handler (- if none); then one
 * <step>=<result bytes> per result the dispatch carried (dependencies'
 * results; for a compensation also the step's own result). Result bytes
 * outside printable ASCII (and spaces) are written as '?'.
 *
 * An action's result bytes are "<rpc>@<saga_id>".
 *
 * SIGTERM/SIGINT stop the workers cleanly (saga_worker_stop); the exit
 * status is 0 after a clean stop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "saga.h"

#define MAX_WORKERS 16
#define MAX_RPCS    64

static const char *default_actions[] = { "A", "B", "C", "D", "T", NULL };
static const char *default_comps[] = { "UndoA", "UndoB", "UndoC", "UndoD", "UndoT", NULL };

static struct {
	const char *url;
	const char *tls_ca, *tls_cert, *tls_key, *tls_server_name; /* NULL = not given */
	const char *instance;
	const char *journal;
	const char *credential_dir; /* DIR/NAME.credential per participant, or NULL */
	uint32_t capacity;
	int verbose;
	int journal_fd;
	size_t n_participants;
	const char *participants[MAX_WORKERS];
	size_t n_actions;
	const char *actions[MAX_RPCS];
	size_t n_comps;
	const char *comps[MAX_RPCS];
	saga_worker *workers[MAX_WORKERS];
	size_t n_workers;
	char instance_buf[64];
} P;

static volatile sig_atomic_t stopping;
static pthread_mutex_t crash_mu = PTHREAD_MUTEX_INITIALIZER;

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "test-participant: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static int64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- the directives in the saga input ---------------------------------- */

/*
 * Looks for key=STEP or key=STEP:NUM in the input that matches step or
 * rpc. Returns 1 and *num (NUM, or -1 without one) if found. For
 * key "crashinst" use directive_value().
 */
static int
directive(const char *input, const char *key, const char *step, const char *rpc, long *num)
{
	size_t klen = strlen(key);
	const char *p = input;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ';');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			const char *v = p + klen + 1;
			size_t vlen = len - klen - 1;
			const char *colon = memchr(v, ':', vlen);
			size_t nlen = colon != NULL ? (size_t)(colon - v) : vlen;
			int match = (strlen(step) == nlen && strncmp(v, step, nlen) == 0) ||
			    (rpc != NULL && strlen(rpc) == nlen && strncmp(v, rpc, nlen) == 0);
			if (match) {
				*num = colon != NULL ? strtol(colon + 1, NULL, 10) : -1;
				return 1;
			}
		}
		p = end != NULL ? end + 1 : NULL;
	}
	return 0;
}

/* The value of key=VALUE into out; 1 if present. */
static int
directive_value(const char *input, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = input;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ';');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			snprintf(out, outlen, "%.*s", (int)(len - klen - 1), p + klen + 1);
			return 1;
		}
		p = end != NULL ? end + 1 : NULL;
	}
	return 0;
}

/* ---- the journal ------------------------------------------------------- */

static void
append_clean(char *buf, size_t cap, size_t *pos, const uint8_t *data, size_t len)
{
	for (size_t i = 0; i < len && *pos + 1 < cap; i++) {
		uint8_t c = data[i];
		buf[(*pos)++] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
	}
	buf[*pos] = '\0';
}

static void
appendf(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;
	if (*pos >= cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos = *pos + (size_t)n < cap ? *pos + (size_t)n : cap - 1;
}

/* One line, one write(), then fsync: must be on disk before we reply or
 * _exit. */
static void
journal(const saga_step *s, const char *outcome, int64_t t0, int64_t t1)
{
	char line[8192];
	size_t pos = 0;

	appendf(line, sizeof(line), &pos, "%s %c %s %u %s %s %lld %lld %s", s->saga_id,
	    s->kind == SAGA_COMPENSATION ? 'c' : 'a', s->rpc, s->attempt, P.instance, outcome,
	    (long long)t0, (long long)t1, s->traceparent[0] ? s->traceparent : "-");
	for (size_t i = 0; i < s->n_results; i++) {
		appendf(line, sizeof(line), &pos, " %s=", s->results[i].step);
		append_clean(line, sizeof(line) - 1, &pos, s->results[i].data, s->results[i].len);
	}
	if (pos > sizeof(line) - 2)
		pos = sizeof(line) - 2;
	line[pos++] = '\n';

	size_t off = 0;
	while (off < pos) {
		ssize_t n = write(P.journal_fd, line + off, pos - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "test-participant: journal write: %s\n", strerror(errno));
			_exit(3);
		}
		off += (size_t)n;
	}
	if (fsync(P.journal_fd) != 0) {
		fprintf(stderr, "test-participant: journal fsync: %s\n", strerror(errno));
		_exit(3);
	}
}

/* ---- the handler ------------------------------------------------------- */

static void
handle(const saga_step *s, saga_reply *r, void *user)
{
	char input[4096];
	char result[512];
	char inst[128];
	int64_t t0 = now_us();
	long n = 0;
	(void)user;

	/* The input as a C string (it is text by our convention). */
	size_t il = s->input_len < sizeof(input) - 1 ? s->input_len : sizeof(input) - 1;
	if (il > 0)
		memcpy(input, s->input, il);
	input[il] = '\0';

	if (P.verbose)
		fprintf(stderr, "test-participant[%s]: %s %s %s attempt %u input '%s'\n",
		    P.instance, s->saga_id, s->kind == SAGA_ACTION ? "action" : "compensation",
		    s->rpc, s->attempt, input);

	if (s->kind == SAGA_ACTION) {
		if (directive(input, "crash", s->step, s->rpc, &n) &&
		    (!directive_value(input, "crashinst", inst, sizeof(inst)) ||
			strcmp(inst, P.instance) == 0)) {
			/* The first crashing handler journals and exits; any
			 * other one running at the same time waits here for
			 * the exit, so a process records one crash. */
			pthread_mutex_lock(&crash_mu);
			journal(s, "crash", t0, now_us());
			fprintf(stderr, "test-participant[%s]: crashing on %s of %s\n", P.instance,
			    s->rpc, s->saga_id);
			_exit(137);
		}
		if (directive(input, "sleep", s->step, s->rpc, &n) && n > 0) {
			long every = 0, k = -1;
			if (directive(input, "beat", s->step, s->rpc, &every) && every > 0) {
				directive(input, "beats", s->step, s->rpc, &k);
				for (long left = n, i = 0; left > 0; left -= every, i++) {
					sleep_ms(left < every ? left : every);
					if ((k < 0 || i < k) && left > every)
						saga_reply_heartbeat(r);
				}
			} else {
				sleep_ms(n);
			}
		}
		if (directive(input, "fail", s->step, s->rpc, &n)) {
			journal(s, "fail", t0, now_us());
			snprintf(result, sizeof(result), "business failure of %s (fail=%s)", s->rpc,
			    s->step);
			saga_reply_fail(r, result);
			return;
		}
		if (directive(input, "retry", s->step, s->rpc, &n) && (long)s->attempt <= n) {
			journal(s, "retry", t0, now_us());
			snprintf(result, sizeof(result),
			    "transient error in %s attempt %u (retry=%s:%ld)", s->rpc, s->attempt,
			    s->step, n);
			saga_reply_retry(r, result);
			return;
		}
		journal(s, "ok", t0, now_us());
		if (directive(input, "echo", s->step, s->rpc, &n)) {
			saga_reply_success(r, s->input, s->input_len);
			return;
		}
		int len = snprintf(result + 2, sizeof(result) - 2, "%s@%s", s->rpc, s->saga_id);
		if (directive_value(input, "pbresult", inst, sizeof(inst)) && len < 128) {
			/* tests/integration/sagas.proto's Result{text}: field 1, bytes */
			result[0] = 0x0a;
			result[1] = (char)len;
			saga_reply_success(r, result, (size_t)len + 2);
			return;
		}
		saga_reply_success(r, result + 2, (size_t)len);
		return;
	}

	if (directive(input, "compsleep", s->step, s->rpc, &n) && n > 0)
		sleep_ms(n);
	if (directive(input, "compfail", s->step, s->rpc, &n) && (long)s->attempt <= n) {
		journal(s, "retry", t0, now_us());
		snprintf(result, sizeof(result),
		    "transient error in %s attempt %u (compfail=%s:%ld)", s->rpc, s->attempt,
		    s->step, n);
		saga_reply_retry(r, result);
		return;
	}
	char path[1024];
	if (directive_value(input, "compfailwhile", path, sizeof(path)) &&
	    access(path, F_OK) == 0) {
		journal(s, "retry", t0, now_us());
		snprintf(result, sizeof(result), "compensation %s broken while %.300s exists",
		    s->rpc, path);
		saga_reply_retry(r, result);
		return;
	}
	journal(s, "ok", t0, now_us());
	saga_reply_success(r, NULL, 0);
}

/* ---- process ------------------------------------------------------------ */

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
	for (size_t i = 0; i < P.n_workers; i++)
		saga_worker_stop(P.workers[i]);
}

static void
log_line(saga_log_level level, const char *line, void *user)
{
	if (level <= SAGA_LOG_WARN || P.verbose)
		fprintf(
		    stderr, "test-participant[%s] %s: %s\n", P.instance, (const char *)user, line);
}

static void *
worker_main(void *arg)
{
	saga_worker *w = arg;
	intptr_t rv = saga_worker_run(w);
	if (rv != SAGA_OK)
		fprintf(stderr, "test-participant[%s]: saga_worker_run: %s: %s\n", P.instance,
		    saga_strerror((int)rv), saga_worker_errmsg(w));
	return (void *)rv;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: test-participant --url URL --participant NAME [--participant NAME...]\n"
	    "       [--capacity N] [--instance ID] --journal PATH\n"
	    "       [--action RPC...] [--compensation RPC...] [--verbose]\n"
	    "       [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name N]]\n"
	    "       [--credential-dir DIR]\n");
}

int
main(int argc, char **argv)
{
	pthread_t threads[MAX_WORKERS];
	struct sigaction sa;
	sigset_t block, old;
	int status = 0;

	P.capacity = 16;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(a, "--verbose") == 0) {
			P.verbose = 1;
			continue;
		}
		if (v == NULL) {
			usage(stderr);
			die("%s needs a value", a);
		}
		i++;
		if (strcmp(a, "--url") == 0)
			P.url = v;
		else if (strcmp(a, "--instance") == 0)
			P.instance = v;
		else if (strcmp(a, "--journal") == 0)
			P.journal = v;
		else if (strcmp(a, "--tls-ca") == 0)
			P.tls_ca = v;
		else if (strcmp(a, "--tls-cert") == 0)
			P.tls_cert = v;
		else if (strcmp(a, "--tls-key") == 0)
			P.tls_key = v;
		else if (strcmp(a, "--tls-server-name") == 0)
			P.tls_server_name = v;
		else if (strcmp(a, "--credential-dir") == 0)
			P.credential_dir = v;
		else if (strcmp(a, "--capacity") == 0) {
			char *end;
			unsigned long c = strtoul(v, &end, 10);
			if (*end != '\0' || c == 0 || c > 4096)
				die("bad --capacity %s", v);
			P.capacity = (uint32_t)c;
		} else if (strcmp(a, "--participant") == 0) {
			if (P.n_participants == MAX_WORKERS)
				die("too many --participant");
			P.participants[P.n_participants++] = v;
		} else if (strcmp(a, "--action") == 0) {
			if (P.n_actions == MAX_RPCS)
				die("too many --action");
			P.actions[P.n_actions++] = v;
		} else if (strcmp(a, "--compensation") == 0) {
			if (P.n_comps == MAX_RPCS)
				die("too many --compensation");
			P.comps[P.n_comps++] = v;
		} else {
			usage(stderr);
			die("unknown argument %s", a);
		}
	}
	if (P.url == NULL || P.journal == NULL || P.n_participants == 0) {
		usage(stderr);
		die("--url, --journal and --participant are required");
	}
	if (P.instance == NULL) {
		snprintf(P.instance_buf, sizeof(P.instance_buf), "pid%d", (int)getpid());
		P.instance = P.instance_buf;
	}
	if (strchr(P.instance, ' ') != NULL)
		die("--instance must not contain spaces");
	if (P.n_actions == 0 && P.n_comps == 0) {
		for (size_t i = 0; default_actions[i] != NULL; i++)
			P.actions[P.n_actions++] = default_actions[i];
		for (size_t i = 0; default_comps[i] != NULL; i++)
			P.comps[P.n_comps++] = default_comps[i];
	}
	P.journal_fd = open(P.journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (P.journal_fd < 0)
		die("%s: %s", P.journal, strerror(errno));

	for (size_t i = 0; i < P.n_participants; i++) {
		saga_worker *w = NULL;
		int rv;
		if ((rv = saga_worker_new(P.url, P.participants[i], &w)) != SAGA_OK)
			die("saga_worker_new(%s): %s", P.participants[i], saga_strerror(rv));
		saga_worker_set_log(w, log_line, (void *)P.participants[i]);
		if (P.tls_ca != NULL &&
		    (rv = saga_worker_set_tls(
			 w, P.tls_ca, P.tls_cert, P.tls_key, P.tls_server_name)) != SAGA_OK)
			die("TLS of %s: %s: %s", P.participants[i], saga_strerror(rv),
			    saga_worker_errmsg(w));
		if (P.credential_dir != NULL) {
			char path[1024], cred[1024] = "";
			snprintf(path, sizeof(path), "%s/%s.credential", P.credential_dir,
			    P.participants[i]);
			FILE *f = fopen(path, "r");
			if (f == NULL)
				die("%s: %s", path, strerror(errno));
			if (fgets(cred, sizeof(cred), f) == NULL)
				cred[0] = '\0';
			fclose(f);
			cred[strcspn(cred, "\r\n")] = '\0';
			if ((rv = saga_worker_set_credential(w, cred)) != SAGA_OK)
				die("credential of %s: %s", P.participants[i], saga_strerror(rv));
		}
		if ((rv = saga_worker_set_capacity(w, P.capacity)) != SAGA_OK ||
		    (rv = saga_worker_set_instance(w, P.instance)) != SAGA_OK)
			die("configuring %s: %s: %s", P.participants[i], saga_strerror(rv),
			    saga_worker_errmsg(w));
		for (size_t j = 0; j < P.n_actions; j++)
			if ((rv = saga_worker_on_action(w, P.actions[j], handle, NULL)) != SAGA_OK)
				die("on_action %s: %s: %s", P.actions[j], saga_strerror(rv),
				    saga_worker_errmsg(w));
		for (size_t j = 0; j < P.n_comps; j++)
			if ((rv = saga_worker_on_compensation(w, P.comps[j], handle, NULL)) !=
			    SAGA_OK)
				die("on_compensation %s: %s: %s", P.comps[j], saga_strerror(rv),
				    saga_worker_errmsg(w));
		P.workers[P.n_workers++] = w;
	}

	/* Worker threads must not take the signals: block them while they are
	 * created, then install the handler and unblock on this thread. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (size_t i = 0; i < P.n_workers; i++)
		if (pthread_create(&threads[i], NULL, worker_main, P.workers[i]) != 0)
			die("pthread_create: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	fprintf(stderr, "test-participant[%s]: serving %zu participant(s) at %s\n", P.instance,
	    P.n_workers, P.url);
	for (size_t i = 0; i < P.n_workers; i++) {
		void *rv = NULL;
		pthread_join(threads[i], &rv);
		if ((intptr_t)rv != SAGA_OK) {
			status = 1;
			/* One worker failed for good: take the others down too. */
			for (size_t j = 0; j < P.n_workers; j++)
				saga_worker_stop(P.workers[j]);
		}
	}
	for (size_t i = 0; i < P.n_workers; i++)
		saga_worker_free(P.workers[i]);
	close(P.journal_fd);
	fprintf(
	    stderr, "test-participant[%s]: stopped%s\n", P.instance, stopping ? " (signal)" : "");
	return status;
}
