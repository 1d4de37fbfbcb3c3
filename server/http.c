/* http: /healthz, /readyz and /metrics; the UI and its API (http_api.c).
 * See http.h. */
#include "http.h"

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "http_api.h"
#include "log.h"
#include "saga_base.h"
#include "shards.h"
#include "tls.h"

static nng_http_server *server;
static int64_t stale_ms; /* the lease thread asks every lease/4: twice that, and a second */

static void
reply(nng_aio *aio, uint16_t status, const char *type, const void *body, size_t len)
{
	nng_http_res *res;
	if (nng_http_res_alloc(&res) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_http_res_set_status(res, status);
	nng_http_res_set_header(res, "Content-Type", type);
	if (nng_http_res_copy_data(res, body, len) != 0) {
		nng_http_res_free(res);
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void
healthz(nng_aio *aio)
{
	reply(aio, 200, "text/plain", "ok\n", 3);
}

/*
 * Ready means PostgreSQL answers and commits go through. Decided from what
 * sagad already knows, never by asking the database here: a frozen
 * database would hold the request (a ping waited for ever), and a few such
 * requests held nng's threads, so that /healthz and every RPC waited too.
 */
static void
readyz(nng_aio *aio)
{
	char body[160];
	int64_t wait = engine_commit_wait_ms(), silent = shd_db_silent_ms();
	int n;
	if (wait > 2000)
		n = snprintf(body, sizeof(body), "a commit has waited %lld ms for PostgreSQL\n",
		    (long long)wait);
	else if (silent > stale_ms)
		n = snprintf(body, sizeof(body), "PostgreSQL has not answered for %lld ms\n",
		    (long long)silent);
	else
		n = 0;
	if (n > 0)
		reply(aio, 503, "text/plain", body, (size_t)n);
	else
		reply(aio, 200, "text/plain", "ready\n", 6);
}

static void
metrics(nng_aio *aio)
{
	char *text = NULL;
	size_t len = 0;
	if (engine_metrics(&text, &len) != 0) {
		reply(aio, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	reply(aio, 200, "text/plain; version=0.0.4", text, len);
	free(text);
}

int
http_start(const cfg *c, char *err, size_t errlen)
{
	static const struct {
		const char *path;
		void (*fn)(nng_aio *);
	} routes[] = { { "/healthz", healthz }, { "/readyz", readyz }, { "/metrics", metrics } };
	const char *url = c->http_listen;
	nng_url *u = NULL;
	nng_tls_config *tc = NULL;
	int rv;

	if (url == NULL || *url == '\0')
		return 0;
	stale_ms = (int64_t)c->lease_ms / 2 + 1000;
	if ((rv = nng_url_parse(&u, url)) != 0 ||
	    (strcmp(u->u_scheme, "http") != 0 && strcmp(u->u_scheme, "https") != 0)) {
		snprintf(err, errlen,
		    "--http-listen %s: not an http://HOST:PORT or https://HOST:PORT URL", url);
		nng_url_free(u);
		return SAGA_EINVAL;
	}
	if ((rv = nng_http_server_hold(&server, u)) != 0)
		goto fail;
	if (strcmp(u->u_scheme, "https") == 0) {
		/* The RPC's certificate and key; browsers show no client
		 * certificate, so none is asked for: the API's credential is
		 * the Bearer header. */
		if (c->tls_cert[0] == '\0' || c->tls_key[0] == '\0') {
			snprintf(err, errlen,
			    "--http-listen %s: https needs --tls-cert and --tls-key", url);
			nng_url_free(u);
			http_stop();
			return SAGA_EINVAL;
		}
		if ((rv = tls_server_config(c, &tc, err, errlen)) != 0) {
			nng_url_free(u);
			http_stop();
			return rv;
		}
		nng_tls_config_auth_mode(tc, NNG_TLS_AUTH_MODE_NONE);
		rv = nng_http_server_set_tls(server, tc);
		nng_tls_config_free(tc);
		if (rv != 0)
			goto fail;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		nng_http_handler *h;
		if ((rv = nng_http_handler_alloc(&h, routes[i].path, routes[i].fn)) != 0)
			goto fail;
		nng_http_handler_set_method(h, "GET");
		if ((rv = nng_http_server_add_handler(server, h)) != 0) {
			nng_http_handler_free(h);
			goto fail;
		}
	}
	if ((rv = hapi_add(server, c, url, err, errlen)) != 0) {
		nng_url_free(u);
		http_stop();
		return SAGA_EINVAL;
	}
	if ((rv = nng_http_server_start(server)) != 0)
		goto fail;
	nng_url_free(u);
	slog_info(
	    "http: /healthz, /readyz, /metrics, the web UI (/ui/) and its API (/api/v1/) on %s",
	    url);
	return 0;
fail:
	snprintf(err, errlen, "--http-listen %s: %s", url, nng_strerror(rv));
	nng_url_free(u);
	http_stop();
	return SAGA_EINVAL;
}

void
http_stop(void)
{
	if (server != NULL) {
		hapi_drain();
		nng_http_server_stop(server);
		nng_http_server_release(server);
		server = NULL;
	}
	hapi_stop();
}
