/*
 * otel: OpenTelemetry spans over OTLP/HTTP (protobuf) to the collector at
 * `otlp-endpoint` (docs/TRACING.md has the span model). Off by default;
 * off, nothing is started and the engine pays one branch per event.
 *
 * The engine never waits on export: otel_submit() copies a small fixed
 * record into a bounded ring under a lock of its own (held for one
 * memcpy), or counts it dropped when the ring is full. One exporter
 * thread takes up to OTEL_BATCH spans at a time, encodes an
 * ExportTraceServiceRequest and POSTs it over HTTP/1.1 with a timeout,
 * retrying a few times with backoff on network errors, 429, 502, 503 and
 * 504; then the batch counts as failed. Memory is the ring and one batch.
 */
#ifndef SAGAD_OTEL_H
#define SAGAD_OTEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

enum otel_kind {
	OTEL_SAGA = 0,     /* the saga, from its start to its final state */
	OTEL_ACTION,       /* one attempt of a step's action */
	OTEL_COMPENSATION, /* one attempt of a step's compensation */
};

#define OTEL_NAME_MAX 128 /* definition and step names: longer ones are cut */
#define OTEL_ERR_MAX  256 /* error text: longer is cut */
#define OTEL_BATCH    512 /* spans per export request, at most */

/* One finished span, as the engine hands it over (copied). */
typedef struct otel_span {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_id[8]; /* all zero: a root span */
	uint8_t flags;        /* W3C trace flags */
	uint8_t kind;         /* enum otel_kind */
	bool failed;          /* status ERROR, with `error` as its message */
	uint32_t version;     /* the definition's */
	uint32_t attempt;     /* 1, 2, ...; 0 for a saga */
	int64_t start_us, end_us;
	uint8_t saga_id[16];
	char definition[OTEL_NAME_MAX];
	char step[OTEL_NAME_MAX]; /* "" for a saga */
	char outcome[16];         /* see docs/TRACING.md */
	char error[OTEL_ERR_MAX]; /* "" = none */
} otel_span;

/* True while export is on (set by otel_start before the engine serves,
 * cleared by otel_stop after it): the engine's one check. */
extern bool otel_enabled;

/* Checks the otlp-* settings and, with an endpoint set, starts the
 * exporter. 0, or a saga_err with a message naming the setting in err. */
int otel_start(const cfg *c, const char *instance, char *err, size_t errlen);

/* Stops the exporter: what is queued gets one try, for at most about two
 * seconds (a collector that is down or never answers does not hold the
 * shutdown), then the rest is counted failed. An exporter stuck in a name
 * lookup a second later is left behind (sagad is exiting). Safe when
 * never started. */
void otel_stop(void);

/* Copies sp into the queue, or counts it dropped when the queue is full.
 * Never blocks on the network. Only while otel_enabled. */
void otel_submit(const otel_span *sp);

/* The exporter's counters in Prometheus text (also when off: zeros). */
void otel_metrics(mx_buf *b);

/* ---- pure parts, for the unit tests ------------------------------------------------ */

typedef struct otel_endpoint {
	char host[256]; /* without brackets for an IPv6 literal */
	char port[8];
	char path[512];
	char hostport[280]; /* the Host header */
} otel_endpoint;

/* Parses http://HOST[:PORT][/PATH] (port 4318 and path /v1/traces when
 * absent, the OTLP/HTTP defaults). 0, or SAGA_EINVAL with the reason. */
int otel_parse_endpoint(const char *url, otel_endpoint *ep, char *err, size_t errlen);

/* Parses "name=value,name=value" (the OTEL_EXPORTER_OTLP_HEADERS form)
 * into request header lines "name: value\r\n" in *out (malloc'd, "" for
 * an empty spec; the caller frees it). Names are HTTP tokens, values
 * printable ASCII; Host, Content-Type, Content-Length, Connection and
 * Transfer-Encoding are sagad's own. 0, or SAGA_EINVAL with the reason. */
int otel_parse_headers(const char *spec, char **out, char *err, size_t errlen);

/* Encodes spans v[0..n) as one ExportTraceServiceRequest of one resource
 * (service.name = service, service.instance.id = instance when not
 * empty) into *out (malloc'd; the caller frees it). 0 or SAGA_ENOMEM. */
int otel_encode(const otel_span *v, size_t n, const char *service, const char *instance,
    uint8_t **out, size_t *len);

#endif
