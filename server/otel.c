/* otel: OpenTelemetry spans over OTLP/HTTP. See otel.h. */
#define _GNU_SOURCE
#include "otel.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "utf8.h"
#include "saga_base.h"
#include "trace_service.pb-c.h"
#include "wire.h"

#define FLUSH_MS       200  /* a partial batch goes out after this */
#define MAX_TRIES      5    /* per batch, while running */
#define BACKOFF_MS     250  /* first retry; doubles */
#define BACKOFF_MAX_MS 4000 /* cap */
#define STOP_BUDGET_MS 2000 /* otel_stop: time given to what is queued */
#define RESP_MAX       16384
#define N_ATTR         8

bool otel_enabled;

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* the exporter waits on it: spans, stop */
	pthread_cond_t done; /* otel_stop waits on it: the exporter ended */
	pthread_t thr;
	bool running, stop, exited;
	atomic_bool abort; /* give up the request under way and everything queued */
	otel_span *ring;
	size_t cap, head, n;
	otel_endpoint ep;
	char *headers; /* extra request header lines */
	char service[128], instance[128];
	uint32_t timeout_ms;
	atomic_uint_fast64_t dropped, exported, failed, errors;
	int64_t last_warn_ms;
	uint64_t warns_skipped;
} O = { .mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER };

/* ---- settings ---------------------------------------------------------------------------- */

int
otel_parse_endpoint(const char *url, otel_endpoint *ep, char *err, size_t errlen)
{
	memset(ep, 0, sizeof(*ep));
	if (strncmp(url, "https://", 8) == 0) {
		snprintf(err, errlen,
		    "otlp-endpoint %.200s: https is not supported; send to a collector on this "
		    "host "
		    "or a trusted network over http:// (an OpenTelemetry Collector can forward "
		    "over TLS)",
		    url);
		return SAGA_EINVAL;
	}
	if (strncmp(url, "http://", 7) != 0) {
		snprintf(err, errlen,
		    "otlp-endpoint %.200s: must be http://HOST[:PORT][/PATH], e.g. "
		    "http://127.0.0.1:4318/v1/traces",
		    url);
		return SAGA_EINVAL;
	}
	const char *p = url + 7, *hend, *rest;
	for (const char *q = p; *q; q++)
		if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f) {
			snprintf(err, errlen,
			    "otlp-endpoint: spaces, control characters and non-ASCII are not "
			    "allowed");
			return SAGA_EINVAL;
		}
	size_t auth_len = strcspn(p, "/?#");
	if (memchr(p, '@', auth_len) != NULL) {
		snprintf(err, errlen,
		    "otlp-endpoint: user info in the URL is not supported (use otlp-headers)");
		return SAGA_EINVAL;
	}
	if (*p == '[') {
		hend = strchr(p, ']');
		if (hend == NULL || hend == p + 1) {
			snprintf(err, errlen, "otlp-endpoint %.200s: bad IPv6 address", url);
			return SAGA_EINVAL;
		}
		if ((size_t)(hend - p - 1) >= sizeof(ep->host))
			goto toolong;
		memcpy(ep->host, p + 1, (size_t)(hend - p - 1));
		rest = hend + 1;
	} else {
		hend = p + strcspn(p, ":/?#");
		if (hend == p) {
			snprintf(err, errlen, "otlp-endpoint %.200s: no host", url);
			return SAGA_EINVAL;
		}
		if ((size_t)(hend - p) >= sizeof(ep->host))
			goto toolong;
		memcpy(ep->host, p, (size_t)(hend - p));
		rest = hend;
	}
	strcpy(ep->port, "4318");
	if (*rest == ':') {
		size_t n = strspn(rest + 1, "0123456789");
		long port = n > 0 && n <= 5 ? strtol(rest + 1, NULL, 10) : 0;
		if (port < 1 || port > 65535 || (rest[1 + n] != '\0' && rest[1 + n] != '/')) {
			snprintf(err, errlen, "otlp-endpoint %.200s: bad port (1 to 65535)", url);
			return SAGA_EINVAL;
		}
		snprintf(ep->port, sizeof(ep->port), "%ld", port);
		rest += 1 + n;
	}
	if (*rest != '\0' && *rest != '/') {
		snprintf(err, errlen, "otlp-endpoint %.200s: expected a path after the host", url);
		return SAGA_EINVAL;
	}
	if (strlen(rest) >= sizeof(ep->path))
		goto toolong;
	strcpy(ep->path, *rest ? rest : "/v1/traces");
	if (strchr(ep->host, ':') != NULL)
		snprintf(ep->hostport, sizeof(ep->hostport), "[%s]:%s", ep->host, ep->port);
	else
		snprintf(ep->hostport, sizeof(ep->hostport), "%s:%s", ep->host, ep->port);
	return 0;
toolong:
	snprintf(err, errlen, "otlp-endpoint: too long");
	return SAGA_EINVAL;
}

static bool
is_tchar(int c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int
otel_parse_headers(const char *spec, char **out, char *err, size_t errlen)
{
	static const char *const own[] = { "host", "content-type", "content-length", "connection",
		"transfer-encoding" };
	size_t len = strlen(spec);
	if (len > 8192) {
		snprintf(err, errlen, "otlp-headers: longer than 8192 bytes");
		return SAGA_EINVAL;
	}
	char *buf = malloc(len * 2 + 8), *w = buf;
	if (buf == NULL) {
		snprintf(err, errlen, "otlp-headers: out of memory");
		return SAGA_ENOMEM;
	}
	const char *p = spec;
	while (*p) {
		const char *end = p + strcspn(p, ","), *eq = memchr(p, '=', (size_t)(end - p));
		while (p < end && *p == ' ')
			p++;
		if (p == end) { /* an empty item: "a=b,,c=d" or a trailing comma */
			p = *end ? end + 1 : end;
			continue;
		}
		if (eq == NULL || eq == p) {
			snprintf(err, errlen, "otlp-headers: \"%.*s\" is not name=value",
			    (int)(end - p > 64 ? 64 : end - p), p);
			goto fail;
		}
		const char *ne = eq;
		while (ne > p && ne[-1] == ' ')
			ne--;
		for (const char *q = p; q < ne; q++)
			if (!is_tchar((unsigned char)*q)) {
				snprintf(err, errlen,
				    "otlp-headers: header name \"%.*s\" has a character not "
				    "allowed "
				    "in an HTTP header name",
				    (int)(ne - p > 64 ? 64 : ne - p), p);
				goto fail;
			}
		for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
			if ((size_t)(ne - p) == strlen(own[i]) &&
			    strncasecmp(p, own[i], (size_t)(ne - p)) == 0) {
				snprintf(
				    err, errlen, "otlp-headers: %s is set by sagad itself", own[i]);
				goto fail;
			}
		const char *v = eq + 1, *ve = end;
		while (v < ve && *v == ' ')
			v++;
		while (ve > v && ve[-1] == ' ')
			ve--;
		for (const char *q = v; q < ve; q++)
			if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f) {
				snprintf(err, errlen,
				    "otlp-headers: the value of %.*s has a control or non-ASCII "
				    "character",
				    (int)(ne - p > 64 ? 64 : ne - p), p);
				goto fail;
			}
		memcpy(w, p, (size_t)(ne - p));
		w += ne - p;
		*w++ = ':';
		*w++ = ' ';
		memcpy(w, v, (size_t)(ve - v));
		w += ve - v;
		*w++ = '\r';
		*w++ = '\n';
		p = *end ? end + 1 : end;
	}
	*w = '\0';
	*out = buf;
	return 0;
fail:
	free(buf);
	return SAGA_EINVAL;
}

/* ---- encoding ---------------------------------------------------------------------------- */

typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue av_t;

static void
kv_str(kv_t *kv, av_t *av, kv_t **slot, const char *key, const char *v)
{
	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(av);
	av->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
	av->string_value = (char *)v;
	kv->key = (char *)key;
	kv->value = av;
	*slot = kv;
}

static void
kv_int(kv_t *kv, av_t *av, kv_t **slot, const char *key, int64_t v)
{
	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(av);
	av->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
	av->int_value = v;
	kv->key = (char *)key;
	kv->value = av;
	*slot = kv;
}

static const char *const kind_names[] = { "saga", "action", "compensation" };

int
otel_encode(const otel_span *v, size_t n, const char *service, const char *instance, uint8_t **out,
    size_t *len)
{
	int rv = SAGA_ENOMEM;
	size_t na = n * N_ATTR;
	Opentelemetry__Proto__Trace__V1__Span *sp = calloc(n ? n : 1, sizeof(*sp));
	Opentelemetry__Proto__Trace__V1__Span **spp = calloc(n ? n : 1, sizeof(*spp));
	Opentelemetry__Proto__Trace__V1__Status *st = calloc(n ? n : 1, sizeof(*st));
	kv_t *kv = calloc(na + 3, sizeof(*kv));
	kv_t **kvp = calloc(na + 3, sizeof(*kvp));
	av_t *av = calloc(na + 3, sizeof(*av));
	char(*names)[OTEL_NAME_MAX + 16] = calloc(n ? n : 1, sizeof(*names));
	char(*ids)[WIRE_UUID_STRLEN] = calloc(n ? n : 1, sizeof(*ids));
	uint8_t *buf = NULL;
	if (!sp || !spp || !st || !kv || !kvp || !av || !names || !ids)
		goto out;
	size_t a = 0;
	for (size_t i = 0; i < n; i++) {
		const otel_span *s = &v[i];
		Opentelemetry__Proto__Trace__V1__Span *o = &sp[i];
		opentelemetry__proto__trace__v1__span__init(o);
		o->trace_id.data = (uint8_t *)s->trace_id;
		o->trace_id.len = 16;
		o->span_id.data = (uint8_t *)s->span_id;
		o->span_id.len = 8;
		static const uint8_t zero[8];
		if (memcmp(s->parent_id, zero, 8) != 0) {
			o->parent_span_id.data = (uint8_t *)s->parent_id;
			o->parent_span_id.len = 8;
		}
		o->flags = s->flags;
		uint8_t k = s->kind <= OTEL_COMPENSATION ? s->kind : OTEL_SAGA;
		if (k == OTEL_SAGA)
			snprintf(names[i], sizeof(names[i]), "saga %s", s->definition);
		else
			snprintf(names[i], sizeof(names[i]), "%s %s",
			    k == OTEL_ACTION ? "step" : "compensate", s->step);
		o->name = names[i];
		o->kind = k == OTEL_SAGA
		    ? OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL
		    : OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
		o->start_time_unix_nano = (uint64_t)(s->start_us > 0 ? s->start_us : 0) * 1000;
		o->end_time_unix_nano =
		    (uint64_t)(s->end_us > s->start_us ? s->end_us : s->start_us) * 1000;
		wire_uuid_format(s->saga_id, ids[i]);
		size_t a0 = a;
		kv_str(&kv[a], &av[a], &kvp[a], "saga.id", ids[i]);
		a++;
		kv_str(&kv[a], &av[a], &kvp[a], "saga.definition", s->definition);
		a++;
		kv_int(&kv[a], &av[a], &kvp[a], "saga.version", s->version);
		a++;
		kv_str(&kv[a], &av[a], &kvp[a], "saga.kind", kind_names[k]);
		a++;
		kv_str(&kv[a], &av[a], &kvp[a], "saga.outcome", s->outcome);
		a++;
		if (k != OTEL_SAGA) {
			kv_str(&kv[a], &av[a], &kvp[a], "saga.step", s->step);
			a++;
			kv_int(&kv[a], &av[a], &kvp[a], "saga.attempt", s->attempt);
			a++;
		}
		if (s->error[0]) {
			kv_str(&kv[a], &av[a], &kvp[a], "saga.error", s->error);
			a++;
		}
		o->attributes = &kvp[a0];
		o->n_attributes = a - a0;
		if (s->failed) {
			opentelemetry__proto__trace__v1__status__init(&st[i]);
			st[i].code =
			    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
			st[i].message = (char *)s->error;
			o->status = &st[i];
		}
		spp[i] = o;
	}
	size_t r0 = a;
	kv_str(&kv[a], &av[a], &kvp[a], "service.name", service);
	a++;
	if (instance != NULL && instance[0]) {
		kv_str(&kv[a], &av[a], &kvp[a], "service.instance.id", instance);
		a++;
	}
	kv_str(&kv[a], &av[a], &kvp[a], "service.version", cm_version());
	a++;
	Opentelemetry__Proto__Resource__V1__Resource res;
	opentelemetry__proto__resource__v1__resource__init(&res);
	res.attributes = &kvp[r0];
	res.n_attributes = a - r0;
	Opentelemetry__Proto__Common__V1__InstrumentationScope scope;
	opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
	scope.name = "sagad";
	scope.version = (char *)cm_version();
	Opentelemetry__Proto__Trace__V1__ScopeSpans ss;
	opentelemetry__proto__trace__v1__scope_spans__init(&ss);
	ss.scope = &scope;
	ss.spans = spp;
	ss.n_spans = n;
	Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
	Opentelemetry__Proto__Trace__V1__ResourceSpans rs;
	opentelemetry__proto__trace__v1__resource_spans__init(&rs);
	rs.resource = &res;
	rs.scope_spans = &ssp;
	rs.n_scope_spans = 1;
	Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req;
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
	req.resource_spans = &rsp;
	req.n_resource_spans = 1;
	size_t sz =
	    opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
		&req);
	if ((buf = malloc(sz ? sz : 1)) == NULL)
		goto out;
	*len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(
	    &req, buf);
	*out = buf;
	rv = 0;
out:
	free(sp);
	free(spp);
	free(st);
	free(kv);
	free(kvp);
	free(av);
	free(names);
	free(ids);
	return rv;
}

/* ---- the queue --------------------------------------------------------------------------- */

void
otel_submit(const otel_span *sp)
{
	pthread_mutex_lock(&O.mu);
	if (O.ring == NULL || O.n == O.cap) {
		pthread_mutex_unlock(&O.mu);
		atomic_fetch_add(&O.dropped, 1);
		return;
	}
	O.ring[(O.head + O.n) % O.cap] = *sp;
	/* Wake the exporter for a full batch only: a partial one waits for
	 * FLUSH_MS, so a busy engine does not pay a wake-up per span. */
	if (++O.n == OTEL_BATCH)
		pthread_cond_signal(&O.cv);
	pthread_mutex_unlock(&O.mu);
}

void
otel_metrics(mx_buf *b)
{
	mx_printf(b,
	    "# HELP sagad_otlp_spans_exported_total Spans the OTLP collector accepted.\n"
	    "# TYPE sagad_otlp_spans_exported_total counter\n"
	    "sagad_otlp_spans_exported_total %llu\n"
	    "# HELP sagad_otlp_spans_dropped_total Spans dropped because the export queue was "
	    "full (otlp-queue-spans).\n"
	    "# TYPE sagad_otlp_spans_dropped_total counter\n"
	    "sagad_otlp_spans_dropped_total %llu\n"
	    "# HELP sagad_otlp_spans_failed_total Spans given up after their export failed "
	    "(retries exhausted, refused by the collector, or left at shutdown).\n"
	    "# TYPE sagad_otlp_spans_failed_total counter\n"
	    "sagad_otlp_spans_failed_total %llu\n"
	    "# HELP sagad_otlp_export_errors_total Export requests that failed (each try).\n"
	    "# TYPE sagad_otlp_export_errors_total counter\n"
	    "sagad_otlp_export_errors_total %llu\n",
	    (unsigned long long)atomic_load(&O.exported),
	    (unsigned long long)atomic_load(&O.dropped), (unsigned long long)atomic_load(&O.failed),
	    (unsigned long long)atomic_load(&O.errors));
}

/* ---- HTTP/1.1 POST ----------------------------------------------------------------------- */

/* Waits for fd to become ready for ev until deadline (monotonic ms), in
 * slices, so that an abort is seen within 50 ms. 0, or -1 with err set. */
static int
wait_fd(int fd, short ev, int64_t deadline, char *err, size_t errlen)
{
	for (;;) {
		if (atomic_load(&O.abort)) {
			snprintf(err, errlen, "stopped");
			return -1;
		}
		int64_t left = deadline - wire_mono_ms();
		if (left <= 0) {
			snprintf(err, errlen, "timed out after %u ms", O.timeout_ms);
			return -1;
		}
		struct pollfd p = { .fd = fd, .events = ev };
		int r = poll(&p, 1, left < 50 ? (int)left : 50);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

/* POSTs body to the endpoint. Returns the HTTP status, or -1 for a
 * network error or timeout (err says which). */
static int
http_post(const uint8_t *body, size_t len, char *err, size_t errlen)
{
	int64_t deadline = wire_mono_ms() + O.timeout_ms;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int fd = -1, status = -1, g;
	char *req = NULL, *resp = NULL;
	if ((g = getaddrinfo(O.ep.host, O.ep.port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "resolving %.100s: %s", O.ep.host, gai_strerror(g));
		return -1;
	}
	for (struct addrinfo *x = ai; x != NULL; x = x->ai_next) {
		fd = socket(x->ai_family, x->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, x->ai_addr, x->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline, err, errlen) == 0) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (soerr == 0)
				break;
			snprintf(err, errlen, "connecting to %.100s: %s", O.ep.hostport,
			    strerror(soerr));
		} else if (errno != EINPROGRESS) {
			snprintf(err, errlen, "connecting to %.100s: %s", O.ep.hostport,
			    strerror(errno));
		}
		close(fd);
		fd = -1;
		if (atomic_load(&O.abort) || wire_mono_ms() >= deadline)
			break;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return -1;
	size_t hcap = 512 + strlen(O.ep.path) + strlen(O.ep.hostport) + strlen(O.headers);
	if ((req = malloc(hcap)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	int hl = snprintf(req, hcap,
	    "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sagad/%s\r\n"
	    "Content-Type: application/x-protobuf\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n%s\r\n",
	    O.ep.path, O.ep.hostport, cm_version(), len, O.headers);
	if (hl < 0 || (size_t)hl >= hcap) {
		snprintf(err, errlen, "request header too long");
		goto out;
	}
	for (int part = 0; part < 2; part++) {
		const uint8_t *p = part == 0 ? (const uint8_t *)req : body;
		size_t left = part == 0 ? (size_t)hl : len;
		while (left > 0) {
			ssize_t w = send(fd, p, left, MSG_NOSIGNAL);
			if (w > 0) {
				p += w;
				left -= (size_t)w;
			} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
				if (wait_fd(fd, POLLOUT, deadline, err, errlen) != 0)
					goto out;
			} else {
				snprintf(err, errlen, "sending to %.100s: %s", O.ep.hostport,
				    strerror(errno));
				goto out;
			}
		}
	}
	/* Only the status line matters; the rest is read no further than
	 * RESP_MAX and dropped with the connection. */
	if ((resp = malloc(RESP_MAX + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	size_t got = 0;
	while (got < RESP_MAX && memchr(resp, '\n', got) == NULL) {
		ssize_t r = recv(fd, resp + got, RESP_MAX - got, 0);
		if (r > 0) {
			got += (size_t)r;
		} else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (wait_fd(fd, POLLIN, deadline, err, errlen) != 0)
				goto out;
		} else {
			snprintf(err, errlen, "%.100s closed the connection without an answer",
			    O.ep.hostport);
			goto out;
		}
	}
	resp[got] = '\0';
	int code = 0;
	if (sscanf(resp, "HTTP/1.%*1[01] %3d", &code) != 1 || code < 100 || code > 599) {
		snprintf(err, errlen, "%.100s answered something that is not HTTP", O.ep.hostport);
		goto out;
	}
	status = code;
	if (code < 200 || code > 299) {
		char *eol = strpbrk(resp, "\r\n");
		if (eol)
			*eol = '\0';
		snprintf(err, errlen, "%.100s answered \"%.100s\"", O.ep.hostport, resp);
	}
out:
	free(req);
	free(resp);
	close(fd);
	return status;
}

/* ---- the exporter ------------------------------------------------------------------------ */

static void
warn_failure(const char *what, size_t n, const char *err)
{
	/* At most one line every 10 s: a collector that is down must not
	 * flood the log. */
	int64_t now = wire_mono_ms();
	if (O.last_warn_ms != 0 && now - O.last_warn_ms < 10000) {
		O.warns_skipped++;
		return;
	}
	slog_warn("otlp: %s %zu spans to %s%s: %s (%llu similar lines skipped)", what, n,
	    O.ep.hostport, O.ep.path, err, (unsigned long long)O.warns_skipped);
	O.last_warn_ms = now;
	O.warns_skipped = 0;
}

/* Sleeps ms unless stopping; true if it slept the whole time. */
static bool
backoff(uint32_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&O.mu);
	while (!O.stop && pthread_cond_timedwait(&O.cv, &O.mu, &ts) != ETIMEDOUT)
		;
	bool ok = !O.stop;
	pthread_mutex_unlock(&O.mu);
	return ok;
}

static void
export_batch(const otel_span *v, size_t n)
{
	uint8_t *body = NULL;
	size_t len = 0;
	char err[256] = "";
	if (otel_encode(v, n, O.service, O.instance, &body, &len) != 0) {
		atomic_fetch_add(&O.failed, n);
		warn_failure("could not encode", n, "out of memory");
		return;
	}
	uint32_t wait = BACKOFF_MS;
	for (int t = 1;; t++) {
		int code = http_post(body, len, err, sizeof(err));
		if (code >= 200 && code <= 299) {
			atomic_fetch_add(&O.exported, n);
			break;
		}
		atomic_fetch_add(&O.errors, 1);
		bool retryable =
		    code < 0 || code == 429 || code == 502 || code == 503 || code == 504;
		/* Stopping: one try only. */
		if (!retryable || t >= MAX_TRIES || atomic_load(&O.abort) || !backoff(wait)) {
			atomic_fetch_add(&O.failed, n);
			warn_failure(retryable ? "gave up exporting" : "collector refused", n, err);
			break;
		}
		wait = wait * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : wait * 2;
	}
	free(body);
}

static void *
exporter(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "sagad-otlp");
	otel_span *batch = malloc(sizeof(otel_span) * OTEL_BATCH);
	pthread_mutex_lock(&O.mu);
	for (;;) {
		if (O.n < OTEL_BATCH && !O.stop) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += FLUSH_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&O.cv, &O.mu, &ts);
		}
		if (O.n == 0) {
			if (O.stop)
				break;
			continue;
		}
		if (atomic_load(&O.abort) || batch == NULL) {
			atomic_fetch_add(&O.failed, O.n);
			O.head = (O.head + O.n) % O.cap;
			O.n = 0;
			continue;
		}
		/* Copy the batch out and free its slots at once, so the engine
		 * has the whole ring while the request is under way. */
		size_t k = O.n < OTEL_BATCH ? O.n : OTEL_BATCH;
		for (size_t i = 0; i < k; i++)
			batch[i] = O.ring[(O.head + i) % O.cap];
		O.head = (O.head + k) % O.cap;
		O.n -= k;
		pthread_mutex_unlock(&O.mu);
		export_batch(batch, k);
		pthread_mutex_lock(&O.mu);
	}
	O.exited = true;
	pthread_cond_broadcast(&O.done);
	pthread_mutex_unlock(&O.mu);
	free(batch);
	return NULL;
}

int
otel_start(const cfg *c, const char *instance, char *err, size_t errlen)
{
	int rv;
	if (c->otlp_endpoint[0] == '\0') {
		if (c->otlp_headers[0] != '\0') {
			snprintf(err, errlen, "otlp-headers is set but otlp-endpoint is empty");
			return SAGA_EINVAL;
		}
		return 0;
	}
	if ((rv = otel_parse_endpoint(c->otlp_endpoint, &O.ep, err, errlen)) != 0)
		return rv;
	if ((rv = otel_parse_headers(c->otlp_headers, &O.headers, err, errlen)) != 0)
		return rv;
	snprintf(O.service, sizeof(O.service), "%s", c->otlp_service_name);
	cm_utf8_trim(O.service);
	snprintf(O.instance, sizeof(O.instance), "%s", instance ? instance : "");
	cm_utf8_trim(O.instance);
	O.timeout_ms = c->otlp_timeout_ms;
	O.cap = c->otlp_queue_spans;
	if ((O.ring = calloc(O.cap, sizeof(otel_span))) == NULL) {
		free(O.headers);
		O.headers = NULL;
		snprintf(err, errlen, "otlp: no memory for a queue of %zu spans", O.cap);
		return SAGA_ENOMEM;
	}
	O.stop = O.exited = false;
	atomic_store(&O.abort, false);
	if (pthread_create(&O.thr, NULL, exporter, NULL) != 0) {
		free(O.ring);
		O.ring = NULL;
		free(O.headers);
		O.headers = NULL;
		snprintf(err, errlen, "otlp: cannot start the exporter thread");
		return SAGA_ENOMEM;
	}
	O.running = true;
	otel_enabled = true;
	slog_info("otlp: exporting spans to http://%s%s (queue of %zu spans)", O.ep.hostport,
	    O.ep.path, O.cap);
	return 0;
}

void
otel_stop(void)
{
	if (!O.running)
		return;
	otel_enabled = false;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += STOP_BUDGET_MS / 1000;
	pthread_mutex_lock(&O.mu);
	O.stop = true;
	pthread_cond_broadcast(&O.cv);
	while (!O.exited && pthread_cond_timedwait(&O.done, &O.mu, &ts) != ETIMEDOUT)
		;
	/* Out of time: the request under way gives up within 50 ms and
	 * what is left counts as failed. */
	atomic_store(&O.abort, true);
	ts.tv_sec += 1;
	while (!O.exited && pthread_cond_timedwait(&O.done, &O.mu, &ts) != ETIMEDOUT)
		;
	if (!O.exited) {
		/* Only a name lookup (getaddrinfo has no timeout) holds it
		 * this long: sagad is exiting, so leave it and its memory
		 * rather than hold the exit. */
		pthread_mutex_unlock(&O.mu);
		slog_warn(
		    "otlp: the exporter is stuck resolving %s; exiting without it", O.ep.host);
		pthread_detach(O.thr);
		return;
	}
	pthread_mutex_unlock(&O.mu);
	pthread_join(O.thr, NULL);
	pthread_mutex_lock(&O.mu);
	free(O.ring);
	O.ring = NULL;
	O.n = O.head = 0;
	pthread_mutex_unlock(&O.mu);
	free(O.headers);
	O.headers = NULL;
	O.running = false;
}
