/*
 * Integration: OpenTelemetry spans over OTLP/HTTP (docs/TRACING.md). An
 * OTLP receiver in the test (an HTTP server on a loopback port that decodes
 * the export requests with the same generated code as sagad) checks the
 * span tree of a compensated saga against the traceparents the real
 * participants received; then collectors that never answer or are down
 * must neither slow sagas nor hold sagad's shutdown. Real PostgreSQL, the
 * real sagad, real test-participant processes (tests/lib/th_sagad.h).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"
#include "trace_service.pb-c.h"

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

/* ---- the OTLP receiver --------------------------------------------------------- */

typedef struct rspan {
	char trace[33], span[17], parent[17]; /* hex; parent "" = root */
	char name[200];
	int kind;
	uint64_t start_ns, end_ns;
	int status;
	char status_msg[300];
	char saga_id[40], definition[128], step[128], skind[16], outcome[16], error[300];
	long long version, attempt;
	char service[64];
} rspan;

enum { RX_ANSWER = 0, RX_SILENT };

static struct {
	pthread_mutex_t mu;
	int mode;
	int lfd, port;
	atomic_bool stop;
	pthread_t thr;
	rspan *v;
	size_t n, cap;
	int requests, bad;
	char headers[2048]; /* of the last request */
	int held[64];       /* RX_SILENT: connections accepted and never answered */
	int n_held;
} RX = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = '\0';
}

static void
take_attr(rspan *r, const Opentelemetry__Proto__Common__V1__KeyValue *kv)
{
	const Opentelemetry__Proto__Common__V1__AnyValue *v = kv->value;
	const char *s = v != NULL &&
		v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
	    ? v->string_value
	    : NULL;
	long long iv = v != NULL &&
		v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE
	    ? (long long)v->int_value
	    : -1;
#define STR(k, f)                                 \
	if (strcmp(kv->key, k) == 0 && s != NULL) \
		snprintf(r->f, sizeof(r->f), "%s", s);
	STR("saga.id", saga_id)
	STR("saga.definition", definition)
	STR("saga.step", step)
	STR("saga.kind", skind)
	STR("saga.outcome", outcome)
	STR("saga.error", error)
#undef STR
	if (strcmp(kv->key, "saga.version") == 0)
		r->version = iv;
	if (strcmp(kv->key, "saga.attempt") == 0)
		r->attempt = iv;
}

static void
take_request(const uint8_t *body, size_t len)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *q =
	    opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, body);
	pthread_mutex_lock(&RX.mu);
	RX.requests++;
	if (q == NULL) {
		RX.bad++;
		pthread_mutex_unlock(&RX.mu);
		return;
	}
	for (size_t i = 0; i < q->n_resource_spans; i++) {
		const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = q->resource_spans[i];
		char service[64] = "";
		if (rs->resource != NULL)
			for (size_t a = 0; a < rs->resource->n_attributes; a++)
				if (strcmp(rs->resource->attributes[a]->key, "service.name") == 0 &&
				    rs->resource->attributes[a]->value != NULL)
					snprintf(service, sizeof(service), "%s",
					    rs->resource->attributes[a]->value->string_value);
		for (size_t j = 0; j < rs->n_scope_spans; j++)
			for (size_t k = 0; k < rs->scope_spans[j]->n_spans; k++) {
				const Opentelemetry__Proto__Trace__V1__Span *s =
				    rs->scope_spans[j]->spans[k];
				if (RX.n == RX.cap) {
					RX.cap = RX.cap ? RX.cap * 2 : 64;
					RX.v = realloc(RX.v, RX.cap * sizeof(*RX.v));
				}
				rspan *r = &RX.v[RX.n++];
				memset(r, 0, sizeof(*r));
				r->version = r->attempt = -1;
				if (s->trace_id.len != 16 || s->span_id.len != 8 ||
				    (s->parent_span_id.len != 0 && s->parent_span_id.len != 8))
					RX.bad++;
				hex(s->trace_id.data, s->trace_id.len == 16 ? 16 : 0, r->trace);
				hex(s->span_id.data, s->span_id.len == 8 ? 8 : 0, r->span);
				hex(s->parent_span_id.data, s->parent_span_id.len == 8 ? 8 : 0,
				    r->parent);
				snprintf(r->name, sizeof(r->name), "%s", s->name);
				r->kind = s->kind;
				r->start_ns = s->start_time_unix_nano;
				r->end_ns = s->end_time_unix_nano;
				if (s->status != NULL) {
					r->status = s->status->code;
					snprintf(r->status_msg, sizeof(r->status_msg), "%s",
					    s->status->message);
				}
				for (size_t a = 0; a < s->n_attributes; a++)
					take_attr(r, s->attributes[a]);
				snprintf(r->service, sizeof(r->service), "%s", service);
			}
	}
	pthread_mutex_unlock(&RX.mu);
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
	    q, NULL);
}

/* Reads one request (headers, then Content-Length bytes) and answers 200. */
static void
serve(int fd)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	char *end = NULL;
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (end == NULL) {
		if (len == cap - 1)
			goto out;
		ssize_t k = read(fd, buf + len, cap - 1 - len);
		if (k <= 0)
			goto out;
		len += (size_t)k;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	size_t hl = (size_t)(end + 4 - buf), clen = 0;
	const char *cl = strcasestr(buf, "\r\ncontent-length:");
	if (cl == NULL || cl > end)
		goto out;
	clen = strtoul(cl + 17, NULL, 10);
	pthread_mutex_lock(&RX.mu);
	snprintf(RX.headers, sizeof(RX.headers), "%.*s", (int)hl, buf);
	pthread_mutex_unlock(&RX.mu);
	if (hl + clen > (64u << 20))
		goto out;
	if (hl + clen + 1 > cap) {
		cap = hl + clen + 1;
		buf = realloc(buf, cap);
	}
	while (len < hl + clen) {
		ssize_t k = read(fd, buf + len, hl + clen - len);
		if (k <= 0)
			goto out;
		len += (size_t)k;
	}
	take_request((const uint8_t *)buf + hl, clen);
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
				 "Content-Length: 0\r\nConnection: close\r\n\r\n";
	ssize_t w = write(fd, ok, sizeof(ok) - 1);
	(void)w;
out:
	free(buf);
	close(fd);
}

static void *
receiver(void *arg)
{
	(void)arg;
	while (!atomic_load(&RX.stop)) {
		struct pollfd p = { .fd = RX.lfd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(RX.lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (RX.mode == RX_SILENT) {
			/* Hold it open, read nothing, answer never. */
			pthread_mutex_lock(&RX.mu);
			if (RX.n_held < 64)
				RX.held[RX.n_held++] = fd;
			else
				close(fd);
			RX.requests++;
			pthread_mutex_unlock(&RX.mu);
			continue;
		}
		serve(fd);
	}
	return NULL;
}

static void
rx_start(int mode)
{
	RX.mode = mode;
	atomic_store(&RX.stop, false);
	RX.lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(RX.lfd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(bind(RX.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t al = sizeof(a);
	ck_assert_int_eq(getsockname(RX.lfd, (struct sockaddr *)&a, &al), 0);
	RX.port = ntohs(a.sin_port);
	ck_assert_int_eq(listen(RX.lfd, 64), 0);
	ck_assert_int_eq(pthread_create(&RX.thr, NULL, receiver, NULL), 0);
}

static void
rx_stop(void)
{
	atomic_store(&RX.stop, true);
	pthread_join(RX.thr, NULL);
	close(RX.lfd);
	for (int i = 0; i < RX.n_held; i++)
		close(RX.held[i]);
	RX.n_held = 0;
	free(RX.v);
	RX.v = NULL;
	RX.n = RX.cap = 0;
}

/* The spans received for saga_id (copied; caller frees), and how many. */
static size_t
spans_of(const char *saga_id, rspan **out)
{
	pthread_mutex_lock(&RX.mu);
	rspan *v = calloc(RX.n + 1, sizeof(*v));
	size_t n = 0;
	for (size_t i = 0; i < RX.n; i++)
		if (strcmp(RX.v[i].saga_id, saga_id) == 0)
			v[n++] = RX.v[i];
	pthread_mutex_unlock(&RX.mu);
	*out = v;
	return n;
}

static int
saga_span_arrived(void *arg)
{
	rspan *v;
	size_t n = spans_of(arg, &v);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found |= strcmp(v[i].skind, "saga") == 0;
	free(v);
	return found;
}

static const rspan *
find(const rspan *v, size_t n, const char *name, long long attempt)
{
	const rspan *hit = NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0 && (attempt < 0 || v[i].attempt == attempt)) {
			ck_assert_msg(hit == NULL, "two spans %s attempt %lld", name, attempt);
			hit = &v[i];
		}
	ck_assert_msg(hit != NULL, "no span %s attempt %lld", name, attempt);
	return hit;
}

/* A /metrics counter's value (-1 if absent). */
static long long
metric(int port, const char *name)
{
	char *page = ths_http_get(port, "/metrics"), *p = page, key[128];
	long long v = -1;
	snprintf(key, sizeof(key), "\n%s ", name);
	if ((p = strstr(page, key)) != NULL)
		v = atoll(p + strlen(key));
	free(page);
	return v;
}

/* ---- the span tree --------------------------------------------------------------------- */

#define GIVEN_TRACE  "4bf92f3577b34da6a3ce929d0e0e4736"
#define GIVEN_PARENT "00f067aa0ba902b7"
#define GIVEN_TP     "00-" GIVEN_TRACE "-" GIVEN_PARENT "-01"

START_TEST(compensated_saga_exports_one_span_tree_joined_with_the_traceparents_participants_got)
{
	rx_start(RX_ANSWER);
	char ep[128], hl[64];
	int hport = ths_free_port();
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/v1/traces", RX.port);
	snprintf(hl, sizeof(hl), "http://127.0.0.1:%d", hport);
	const char *const extra[] = { "--otlp-endpoint", ep, "--otlp-service-name", "it-otlp",
		"--otlp-headers", "x-test-key=k1", "--http-listen", hl, NULL };
	ths *t = ths_new_ok(pg, "otlp_tree");
	ths_sagad_start_ok(t, extra);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);

	/* B fails once then succeeds, C fails for good: A, B and C run
	 * (B twice), then UndoB, and UndoA twice (it fails once). */
	static const char input[] = "retry=B:1;fail=C;compfail=A:1";
	saga_start_opts o = { .traceparent = GIVEN_TP };
	char *id = NULL;
	ck_assert_int_eq(saga_client_start(ths_client(t), "ittest.Linear3", input,
			     sizeof(input) - 1, &o, &id, NULL),
	    SAGA_OK);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	ck_assert_msg(th_wait_until(saga_span_arrived, id, 10000) == 0,
	    "the saga's span never reached the receiver");

	rspan *v;
	size_t n = spans_of(id, &v);
	ck_assert_uint_eq(n, 8);
	const rspan *saga = find(v, n, "saga ittest.Linear3", -1);
	const rspan *a1 = find(v, n, "step A", 1), *b1 = find(v, n, "step B", 1),
		    *b2 = find(v, n, "step B", 2), *c1 = find(v, n, "step C", 1),
		    *ub = find(v, n, "compensate B", 1), *ua1 = find(v, n, "compensate A", 1),
		    *ua2 = find(v, n, "compensate A", 2);

	/* One trace, the caller's; the saga span is the caller's span's
	 * child, and every attempt is the saga span's child. */
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(v[i].trace, GIVEN_TRACE);
		ck_assert_str_eq(v[i].service, "it-otlp");
		ck_assert_str_eq(v[i].definition, "ittest.Linear3");
		ck_assert_int_eq(v[i].version, 1);
		ck_assert_msg(v[i].start_ns > 0 && v[i].start_ns <= v[i].end_ns,
		    "%s: start %llu end %llu", v[i].name, (unsigned long long)v[i].start_ns,
		    (unsigned long long)v[i].end_ns);
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(v[i].span, v[j].span) != 0, "%s and %s share an id",
			    v[i].name, v[j].name);
		if (&v[i] == saga)
			continue;
		ck_assert_msg(strcmp(v[i].parent, saga->span) == 0, "%s's parent is %s, not %s",
		    v[i].name, v[i].parent, saga->span);
		ck_assert_int_eq(v[i].kind, 3); /* CLIENT */
		ck_assert_msg(v[i].start_ns >= saga->start_ns && v[i].end_ns <= saga->end_ns,
		    "%s lies outside the saga's span", v[i].name);
	}
	ck_assert_str_eq(saga->parent, GIVEN_PARENT);
	ck_assert_int_eq(saga->kind, 1); /* INTERNAL */
	ck_assert_str_eq(saga->skind, "saga");
	ck_assert_str_eq(saga->outcome, "compensated");
	ck_assert_int_eq(saga->status, 2); /* ERROR */
	ck_assert_msg(
	    strstr(saga->status_msg, "step C failed") != NULL, "saga status: %s", saga->status_msg);
	ck_assert_int_eq(saga->attempt, -1);
	ck_assert_str_eq(saga->step, "");

	/* Kinds, outcomes and statuses. */
	const struct {
		const rspan *s;
		const char *step, *kind, *outcome;
		int status;
	} want[] = {
		{ a1, "A", "action", "succeeded", 0 },
		{ b1, "B", "action", "retry", 2 },
		{ b2, "B", "action", "succeeded", 0 },
		{ c1, "C", "action", "failed", 2 },
		{ ub, "B", "compensation", "succeeded", 0 },
		{ ua1, "A", "compensation", "retry", 2 },
		{ ua2, "A", "compensation", "succeeded", 0 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const rspan *s = want[i].s;
		ck_assert_str_eq(s->saga_id, id);
		ck_assert_str_eq(s->step, want[i].step);
		ck_assert_str_eq(s->skind, want[i].kind);
		ck_assert_msg(strcmp(s->outcome, want[i].outcome) == 0, "%s #%lld: outcome %s",
		    s->name, s->attempt, s->outcome);
		ck_assert_msg(s->status == want[i].status, "%s #%lld: status %d", s->name,
		    s->attempt, s->status);
		ck_assert_msg(want[i].status == 0 ? s->error[0] == '\0' : s->error[0] != '\0',
		    "%s #%lld: error \"%s\"", s->name, s->attempt, s->error);
	}
	ck_assert_msg(strstr(c1->error, "business failure") != NULL, "C: %s", c1->error);

	/* Order: each attempt after the one it follows; the unwind after C's
	 * failure, newest first. */
	ck_assert(a1->end_ns <= b1->start_ns);
	ck_assert(b1->end_ns <= b2->start_ns);
	ck_assert(b2->end_ns <= c1->start_ns);
	ck_assert(c1->end_ns <= ub->start_ns);
	ck_assert(ub->end_ns <= ua1->start_ns);
	ck_assert(ua1->end_ns <= ua2->start_ns);

	/* The parent id each handler received is its attempt's span id. */
	ths_journal *j = ths_journal_read_ok(t);
	int matched = 0;
	for (size_t i = 0; i < j->n; i++) {
		const ths_jline *l = &j->lines[i];
		if (strcmp(l->saga_id, id) != 0)
			continue;
		char name[80];
		snprintf(name, sizeof(name), "%s %s", l->kind == 'a' ? "step" : "compensate",
		    l->kind == 'a' ? l->rpc : l->rpc + 4 /* UndoX */);
		const rspan *s = find(v, n, name, l->attempt);
		ck_assert_msg(strncmp(l->traceparent, "00-" GIVEN_TRACE "-", 36) == 0 &&
			strncmp(l->traceparent + 36, s->span, 16) == 0,
		    "%s #%u got %s, its span is %s", name, l->attempt, l->traceparent, s->span);
		matched++;
	}
	ck_assert_int_eq(matched, 7);
	ths_journal_free(j);

	/* The settings' header went along; the counters saw it all. */
	pthread_mutex_lock(&RX.mu);
	ck_assert_msg(
	    strstr(RX.headers, "\r\nx-test-key: k1\r\n") != NULL, "headers: %s", RX.headers);
	ck_assert_msg(strcasestr(RX.headers, "content-type: application/x-protobuf") != NULL,
	    "headers: %s", RX.headers);
	ck_assert_int_eq(RX.bad, 0);
	pthread_mutex_unlock(&RX.mu);
	ck_assert_int_ge(metric(hport, "sagad_otlp_spans_exported_total"), 8);
	ck_assert_int_eq(metric(hport, "sagad_otlp_spans_dropped_total"), 0);
	ck_assert_int_eq(metric(hport, "sagad_otlp_spans_failed_total"), 0);

	free(v);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
	rx_stop();
}
END_TEST

/* A saga sagad started the trace of (no traceparent given): the trace id
 * is the saga id, and the saga span is a root. A saga whose caller's trace
 * is not sampled exports nothing. */
START_TEST(a_trace_sagad_starts_has_a_root_saga_span_and_an_unsampled_one_exports_nothing)
{
	rx_start(RX_ANSWER);
	char ep[128];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", RX.port); /* default path */
	const char *const extra[] = { "--otlp-endpoint", ep, NULL };
	ths *t = ths_new_ok(pg, "otlp_root");
	ths_sagad_start_ok(t, extra);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);

	saga_start_opts o = { .traceparent = "00-" GIVEN_TRACE "-" GIVEN_PARENT "-00" };
	char *quiet = NULL;
	ck_assert_int_eq(
	    saga_client_start(ths_client(t), "ittest.Linear3", "", 0, &o, &quiet, NULL), SAGA_OK);
	saga_info_free(ths_wait_final_ok(t, quiet, WAIT_MS));
	char *id = ths_start_ok(t, "ittest.Linear3", "");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert(th_wait_until(saga_span_arrived, id, 10000) == 0);

	rspan *v;
	size_t n = spans_of(id, &v);
	ck_assert_uint_eq(n, 4);
	const rspan *saga = find(v, n, "saga ittest.Linear3", -1);
	char idhex[33];
	size_t k = 0;
	for (const char *p = id; *p; p++)
		if (*p != '-')
			idhex[k++] = *p;
	idhex[k] = '\0';
	ck_assert_str_eq(saga->trace, idhex);
	ck_assert_str_eq(saga->parent, "");
	ck_assert_str_eq(saga->outcome, "completed");
	ck_assert_int_eq(saga->status, 0);
	for (size_t i = 0; i < n; i++)
		if (&v[i] != saga)
			ck_assert_str_eq(v[i].parent, saga->span);
	free(v);
	/* Spans of the unsampled saga would have come in the same or an
	 * earlier request (it finished first). */
	ck_assert_uint_eq(spans_of(quiet, &v), 0);
	free(v);
	saga_info_free(info);
	saga_string_free(id);
	saga_string_free(quiet);
	ths_free(t);
	rx_stop();
}
END_TEST

/* A saga recovered after a crash ends its spans with the ids they had
 * before it and their recorded starts (docs/TRACING.md). */
static int
span_a_arrived(void *arg)
{
	rspan *v;
	size_t n = spans_of(arg, &v);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found |= strcmp(v[i].name, "step A") == 0;
	free(v);
	return found;
}

START_TEST(a_saga_recovered_after_a_crash_ends_its_spans_with_their_ids_and_recorded_starts)
{
	rx_start(RX_ANSWER);
	char ep[128];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/v1/traces", RX.port);
	const char *const extra[] = { "--otlp-endpoint", ep, NULL };
	ths *t = ths_new_ok(pg, "otlp_crash");
	ths_sagad_start_ok(t, extra);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	saga_start_opts o = { .traceparent = GIVEN_TP };
	char *id = NULL;
	static const char input[] = "sleep=B:1500";
	ck_assert_int_eq(saga_client_start(ths_client(t), "ittest.Linear3", input,
			     sizeof(input) - 1, &o, &id, NULL),
	    SAGA_OK);
	ck_assert(th_wait_until(span_a_arrived, id, 10000) == 0);
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t kill_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	int st = ths_sagad_signal(t, SIGKILL);
	ck_assert(WIFSIGNALED(st));
	ths_sagad_start_ok(t, extra);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert(th_wait_until(saga_span_arrived, id, 10000) == 0);

	rspan *v;
	size_t n = spans_of(id, &v);
	ck_assert_uint_eq(n, 4);
	const rspan *saga = find(v, n, "saga ittest.Linear3", -1), *b = find(v, n, "step B", 1);
	ck_assert_str_eq(saga->parent, GIVEN_PARENT);
	/* Their starts are the recorded ones, from before the crash. */
	ck_assert_msg(saga->start_ns < kill_ns, "saga span starts after the crash");
	ck_assert_msg(b->start_ns < kill_ns, "B's span starts after the crash");
	ck_assert_msg(b->end_ns - b->start_ns >= 1400000000ull, "B's span lasts %llu ns",
	    (unsigned long long)(b->end_ns - b->start_ns));
	for (size_t i = 0; i < n; i++)
		if (&v[i] != saga)
			ck_assert_str_eq(v[i].parent, saga->span);
	ths_journal *j = ths_journal_read_ok(t);
	int idx = ths_journal_find(j, 0, id, 'a', "B", NULL);
	ck_assert_int_ge(idx, 0);
	ck_assert_msg(strncmp(j->lines[idx].traceparent + 36, b->span, 16) == 0,
	    "B got %s, its span is %s", j->lines[idx].traceparent, b->span);
	ths_journal_free(j);
	free(v);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
	rx_stop();
}
END_TEST

/* ---- a collector that hangs or is down ------------------------------------------------------ */

static void
run_sagas_and_stop(ths *t, int hport, int n_sagas, long long *dropped)
{
	char **ids = calloc((size_t)n_sagas, sizeof(*ids));
	long long t0 = th_now_ms();
	for (int i = 0; i < n_sagas; i++)
		ids[i] = ths_start_ok(t, "ittest.Linear3", "");
	for (int i = 0; i < n_sagas; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
		saga_info_free(info);
		saga_string_free(ids[i]);
	}
	long long took = th_now_ms() - t0;
	free(ids);
	/* The export request under way waits 60 s for an answer: had the
	 * engine waited on it, the sagas could not have finished. */
	ck_assert_msg(took < 20000, "%d sagas took %lld ms", n_sagas, took);
	*dropped = metric(hport, "sagad_otlp_spans_dropped_total");
	long long t1 = th_now_ms();
	int st = ths_sagad_signal(t, SIGTERM);
	long long stop_ms = th_now_ms() - t1;
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sagad exit status %d", st);
	ck_assert_msg(stop_ms < 6000, "sagad took %lld ms to stop", stop_ms);
}

START_TEST(a_collector_that_never_answers_slows_no_saga_drops_are_counted_and_shutdown_is_prompt)
{
	rx_start(RX_SILENT);
	char ep[128], hl[64];
	int hport = ths_free_port();
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/v1/traces", RX.port);
	snprintf(hl, sizeof(hl), "http://127.0.0.1:%d", hport);
	const char *const extra[] = { "--otlp-endpoint", ep, "--otlp-queue-spans", "64",
		"--otlp-timeout-ms", "60000", "--http-listen", hl, NULL };
	ths *t = ths_new_ok(pg, "otlp_silent");
	ths_sagad_start_ok(t, extra);
	ths_participant_ok(t, "main", 64, NULL);
	ths_register_sagas_ok(t);
	long long dropped = 0;
	/* 60 sagas make 240 spans: one request takes at most 64 and hangs,
	 * the queue holds 64, the rest must be dropped. */
	run_sagas_and_stop(t, hport, 60, &dropped);
	ck_assert_msg(dropped >= 240 - 128, "only %lld spans dropped", dropped);
	pthread_mutex_lock(&RX.mu);
	ck_assert_int_ge(RX.requests, 1);
	pthread_mutex_unlock(&RX.mu);
	ths_free(t);
	rx_stop();
}
END_TEST

START_TEST(a_collector_that_is_down_slows_no_saga_failures_are_counted_and_shutdown_is_prompt)
{
	char ep[128], hl[64];
	int hport = ths_free_port(), dead = ths_free_port();
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/v1/traces", dead);
	snprintf(hl, sizeof(hl), "http://127.0.0.1:%d", hport);
	const char *const extra[] = { "--otlp-endpoint", ep, "--http-listen", hl, NULL };
	ths *t = ths_new_ok(pg, "otlp_down");
	ths_sagad_start_ok(t, extra);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	/* The first batch is refused, retried with backoff: wait until a
	 * failed try is counted, then stop while retries are pending. */
	char **ids = calloc(5, sizeof(*ids));
	for (int i = 0; i < 5; i++)
		ids[i] = ths_start_ok(t, "ittest.Linear3", "");
	for (int i = 0; i < 5; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
		saga_info_free(info);
		saga_string_free(ids[i]);
	}
	free(ids);
	long long t0 = th_now_ms(), errors = 0;
	while ((errors = metric(hport, "sagad_otlp_export_errors_total")) < 1 &&
	    th_now_ms() - t0 < 10000)
		usleep(50000);
	ck_assert_msg(errors >= 1, "no failed export counted");
	ck_assert_int_eq(metric(hport, "sagad_otlp_spans_exported_total"), 0);
	long long t1 = th_now_ms();
	int st = ths_sagad_signal(t, SIGTERM);
	long long stop_ms = th_now_ms() - t1;
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sagad exit status %d", st);
	ck_assert_msg(stop_ms < 6000, "sagad took %lld ms to stop", stop_ms);
	char *log = th_read_file(ths_sagad_log(t), NULL);
	ck_assert_msg(
	    strstr(log, "otlp: gave up exporting") != NULL, "the failed export is not in the log");
	free(log);
	ths_free(t);
}
END_TEST

static Suite *
otlp_suite(void)
{
	Suite *s = suite_create("otlp");
	TCase *tc = tcase_create("otlp");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc,
	    compensated_saga_exports_one_span_tree_joined_with_the_traceparents_participants_got);
	tcase_add_test(
	    tc, a_trace_sagad_starts_has_a_root_saga_span_and_an_unsampled_one_exports_nothing);
	tcase_add_test(
	    tc, a_saga_recovered_after_a_crash_ends_its_spans_with_their_ids_and_recorded_starts);
	tcase_add_test(tc,
	    a_collector_that_never_answers_slows_no_saga_drops_are_counted_and_shutdown_is_prompt);
	tcase_add_test(
	    tc, a_collector_that_is_down_slows_no_saga_failures_are_counted_and_shutdown_is_prompt);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(otlp_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
