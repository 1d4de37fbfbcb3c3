/*
 * http_api: the web UI (server/ui/, built in) under /ui/ and the JSON API
 * behind it under /api/v1/ (docs/HTTP-API.md), on sagad's HTTP listener
 * (http.c). Prefix hapi_.
 *
 * Every API call is turned into the RPC request that asks the same thing
 * (a sagawire.Request, with the caller's Bearer credential) and handed to
 * route_request(), exactly as if it had come over nng: the same auth
 * check and roles, the same engine and reader entry points, the same
 * redaction. Its reply comes back through rpc_req.reply_fn and is turned
 * into JSON with the proto3 JSON mapping of the response message
 * (common/pbjson, over sagad's own wire schema built in); a saga's input
 * and results are decoded with the descriptor set its definition was
 * registered with. Nothing here waits: an nng HTTP thread only builds the
 * request; the reply finishes the HTTP request from the thread that
 * answers (a reader, or the engine for the small replies of cancel,
 * operate and participants).
 */
#ifndef SAGAD_HTTP_API_H
#define SAGAD_HTTP_API_H

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Adds the handlers for /, /ui and /api/v1 to server. With auth off and
 * a listen URL that is not loopback (and not --insecure), the UI and the
 * API answer 403 saying why (their data would be open to the network);
 * /healthz, /readyz and /metrics are served as before. 0 or an nng error. */
int hapi_add(nng_http_server *server, const cfg *c, const char *url, char *err, size_t errlen);
/* At shutdown, before the server stops: waits up to 5 s for the API
 * requests in flight to be answered. */
void hapi_drain(void);
void hapi_stop(void);

/* Is the Host header value one of this machine's loopback names
 * (localhost, 127.x.x.x, [::1], with or without a port)? For tests. */
bool hapi_host_is_loopback(const char *host);

#endif
