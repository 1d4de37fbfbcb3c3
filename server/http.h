/*
 * http: sagad's HTTP endpoints (nng's HTTP server), off unless
 * --http-listen is set:
 *   GET /healthz  200 "ok": the process serves requests
 *   GET /readyz   200 "ready" when PostgreSQL answers and commits go
 *                 through, else 503 saying which: decided from what sagad
 *                 knows (a commit waiting over 2 s; no answer to the lease
 *                 thread's queries for over half the lease plus 1 s),
 *                 never by asking the database, so it answers at once
 *                 even when the database hangs
 *   GET /metrics  Prometheus text format (engine_metrics)
 *   /ui/, /api/v1/ the web UI and its JSON API (http_api.h,
 *                 docs/HTTP-API.md); / redirects to /ui/
 */
#ifndef SAGAD_HTTP_H
#define SAGAD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Serves on c->http_listen (http:// or https://, the latter with the
 * RPC's tls-cert and tls-key); nothing when it is empty. */
int http_start(const cfg *c, char *err, size_t errlen);
void http_stop(void);

#endif
