/*
 * http: sagad's HTTP endpoints (nng's HTTP server), off unless
 * --http-listen is set:
 *   GET /healthz  200 "ok": the process serves requests
 *   GET /readyz   200 "ready" when PostgreSQL answers (migrations are
 *                 applied before sagad listens at all), else 503
 *   GET /metrics  Prometheus text format (engine_metrics)
 */
#ifndef SAGAD_HTTP_H
#define SAGAD_HTTP_H

#include <stddef.h>

int http_start(const char *url, const char *conninfo, char *err, size_t errlen);
void http_stop(void);

#endif
