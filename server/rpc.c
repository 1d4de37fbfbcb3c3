/* rpc: the nng endpoint of sagad. See rpc.h. */
#include "rpc.h"

#include "auth.h"

#include <netdb.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "names.h"
#include "saga_base.h"
#include "tls.h"
#include "utf8.h"
#include "wire.h"

enum { S_RECV = 1, S_HELD, S_SEND };

typedef struct slot {
	nng_ctx ctx;
	nng_aio *aio;
	int state;
	rpc_req req;
	struct slot *next_free;
} slot;

/* tls+tcp:// URLs listened on, at most. */
#define RPC_MAX_TLS_LISTENERS 16
/* How often refused TLS handshakes are counted (and logged, if any). */
#define TLS_WATCH_MS          10000

/* Contexts always posted for receiving. More are added while requests are
 * held (polls, commits pending), up to max_pending in all. */
#define MIN_RECEIVERS      32
#define MAX_IDLE_RECEIVERS 256

static struct {
	nng_socket sock;
	bool open;
	const cfg *cfg;
	rpc_route_fn route;
	rpc_pipe_fn on_closed;
	void *arg;
	pthread_mutex_t mu;
	slot *free_list;
	slot **all;
	size_t n_all, cap_all;
	uint32_t receiving, held;
	atomic_bool closing;
	atomic_bool draining;
	atomic_uint conns;
	atomic_uint refused_pending;    /* refused since the last log line */
	_Atomic uint64_t refused_total; /* for /metrics */
	_Atomic int64_t refused_logged_ms;
	bool warned_full;
	/* The TLS listeners, for SIGHUP (rpc_tls_reload) and the watch of
	 * refused handshakes. */
	struct {
		nng_listener l;
		char *url;
		uint64_t auth_seen; /* the listener's "auth" count when last read */
	} tls[RPC_MAX_TLS_LISTENERS];
	size_t n_tls;
	pthread_mutex_t tls_mu; /* tls[], the watch's sleep */
	pthread_cond_t tls_cv;  /* wakes the watch to stop */
	pthread_t tls_watch;
	bool tls_watch_started, tls_watch_stop;
	unsigned tls_flushes; /* handshakes we failed ourselves (flush_accept) */
	_Atomic uint64_t tls_refused_total;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER,
	.tls_mu = PTHREAD_MUTEX_INITIALIZER,
	.tls_cv = PTHREAD_COND_INITIALIZER };

static void slot_cb(void *arg);
static void *tls_watch_main(void *arg);

static slot *
slot_new(void)
{
	slot *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	if (nng_aio_alloc(&s->aio, slot_cb, s) != 0) {
		free(s);
		return NULL;
	}
	if (nng_ctx_open(&s->ctx, R.sock) != 0) {
		nng_aio_free(s->aio);
		free(s);
		return NULL;
	}
	s->req.slot = s;
	if (R.n_all == R.cap_all) {
		size_t ncap = R.cap_all ? R.cap_all * 2 : 64;
		slot **na = realloc(R.all, ncap * sizeof(*na));
		if (na == NULL) {
			nng_ctx_close(s->ctx);
			nng_aio_free(s->aio);
			free(s);
			return NULL;
		}
		R.all = na;
		R.cap_all = ncap;
	}
	R.all[R.n_all++] = s;
	return s;
}

/* Keeps enough contexts receiving. Called with R.mu held. */
static void
ensure_receivers_locked(void)
{
	while (R.receiving < MIN_RECEIVERS && !atomic_load(&R.closing)) {
		if (R.receiving + R.held >= R.cfg->max_pending) {
			if (!R.warned_full) {
				slog_warn("%u requests held (max_pending): not receiving more "
					  "until some finish",
				    R.held);
				R.warned_full = true;
			}
			return;
		}
		slot *s = R.free_list;
		if (s != NULL)
			R.free_list = s->next_free;
		else if ((s = slot_new()) == NULL)
			return;
		s->state = S_RECV;
		R.receiving++;
		nng_ctx_recv(s->ctx, s->aio);
	}
}

static void
deliver(slot *s, nng_msg *m)
{
	size_t len = nng_msg_len(m);
	if (len > R.cfg->max_message_bytes) {
		nng_msg_free(m);
		slog_warn("request of %zu bytes on connection %u refused (max_message_bytes %u)",
		    len, s->req.pipe_id, R.cfg->max_message_bytes);
		rpc_reply_error(&s->req, SAGA_ETOOBIG,
		    "request of %zu bytes exceeds the limit of %u bytes (max_message_bytes)", len,
		    R.cfg->max_message_bytes);
		return;
	}
	int err = 0;
	Sagawire__Request *q = wire_unpack_request(nng_msg_body(m), len, &err);
	nng_msg_free(m);
	if (q == NULL) {
		slog_warn("malformed request (%zu bytes) on connection %u: %s", len, s->req.pipe_id,
		    cm_strerror(err));
		rpc_reply_error(&s->req, err ? err : SAGA_EPROTO,
		    "malformed request: not a valid sagawire.Request (%s)", cm_strerror(err));
		return;
	}
	s->req.req = q;
	R.route(&s->req);
}

static void
slot_cb(void *arg)
{
	slot *s = arg;
	int rv = nng_aio_result(s->aio);

	if (s->state == S_RECV) {
		if (rv != 0) {
			pthread_mutex_lock(&R.mu);
			R.receiving--;
			if (rv != NNG_ECLOSED && !atomic_load(&R.closing)) {
				R.receiving++;
				nng_ctx_recv(s->ctx, s->aio);
			}
			pthread_mutex_unlock(&R.mu);
			return;
		}
		nng_msg *m = nng_aio_get_msg(s->aio);
		nng_aio_set_msg(s->aio, NULL);
		s->req.pipe_id = nng_pipe_id(nng_msg_get_pipe(m));
		s->req.req = NULL;
		s->req.auth.role = 0;
		s->req.auth.defs = NULL;
		pthread_mutex_lock(&R.mu);
		s->state = S_HELD;
		R.receiving--;
		R.held++;
		ensure_receivers_locked();
		pthread_mutex_unlock(&R.mu);
		deliver(s, m);
		return;
	}
	if (s->state == S_SEND) {
		if (rv != 0) {
			nng_msg *m = nng_aio_get_msg(s->aio);
			nng_aio_set_msg(s->aio, NULL);
			nng_msg_free(m);
		}
		pthread_mutex_lock(&R.mu);
		R.held--;
		R.warned_full = false;
		if (atomic_load(&R.closing)) {
			s->state = 0;
		} else if (R.receiving < MAX_IDLE_RECEIVERS) {
			s->state = S_RECV;
			R.receiving++;
			nng_ctx_recv(s->ctx, s->aio);
		} else {
			s->state = 0;
			s->next_free = R.free_list;
			R.free_list = s;
		}
		ensure_receivers_locked();
		pthread_mutex_unlock(&R.mu);
	}
}

void
rpc_reply_msg(rpc_req *r, nng_msg *m)
{
	slot *s = r->slot;
	wire_free(r->req ? &r->req->base : NULL);
	r->req = NULL;
	free(r->auth.defs);
	int role = r->auth.role;
	memset(&r->auth, 0, sizeof(r->auth));
	if (r->reply_fn != NULL) {
		r->auth.role = role; /* the HTTP API tells the UI the caller's role */
		r->reply_fn(r, m);
		return;
	}
	if (m == NULL) {
		/* Cannot answer (out of memory): the caller's REQ times out
		 * and resends. Recycle the context by closing nothing. */
		pthread_mutex_lock(&R.mu);
		R.held--;
		s->state = 0;
		s->next_free = R.free_list;
		R.free_list = s;
		pthread_mutex_unlock(&R.mu);
		return;
	}
	/* nng 1.5.2 panics if a context operation starts while another
	 * thread is inside nng_close: every start happens under R.mu after
	 * checking `closing`, which rpc_close sets under R.mu. */
	pthread_mutex_lock(&R.mu);
	if (atomic_load(&R.closing)) {
		R.held--;
		s->state = 0;
		pthread_mutex_unlock(&R.mu);
		nng_msg_free(m);
		return;
	}
	s->state = S_SEND;
	nng_aio_set_msg(s->aio, m);
	nng_ctx_send(s->ctx, s->aio);
	pthread_mutex_unlock(&R.mu);
}

void
rpc_reply(rpc_req *r, const Sagawire__Response *resp)
{
	nng_msg *m = NULL;
	if (wire_pack_msg(&resp->base, &m) != 0)
		m = NULL;
	rpc_reply_msg(r, m);
}

void
rpc_reply_error(rpc_req *r, int code, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cm_utf8_trim(buf); /* a %.Ns may have cut a character in two */
	Sagawire__Error e = SAGAWIRE__ERROR__INIT;
	e.code = (uint32_t)code;
	e.message = buf;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.error = &e;
	rpc_reply(r, &resp);
}

/* A refused connection is logged at once the first time, then at most
 * every 10 s with the count since: a flood (and the reconnect storm of
 * clients refused) must not become a flood of log lines. */
static void
note_refused(unsigned open_now)
{
	atomic_fetch_add(&R.refused_total, 1);
	unsigned pending = atomic_fetch_add(&R.refused_pending, 1) + 1;
	int64_t now = wire_mono_ms(), last = atomic_load(&R.refused_logged_ms);
	if (last != 0 && now - last < 10000)
		return;
	if (!atomic_compare_exchange_strong(&R.refused_logged_ms, &last, now))
		return; /* another thread logs */
	pending = atomic_exchange(&R.refused_pending, 0);
	if (last == 0)
		slog_warn("connection refused: %u open (max_connections %u); further refusals are "
			  "counted and logged every 10 s",
		    open_now, R.cfg->max_connections);
	else
		slog_warn(
		    "%u connection(s) refused in the last %lld s: %u open (max_connections %u)",
		    pending, (long long)((now - last) / 1000), open_now, R.cfg->max_connections);
}

/*
 * The connection count. nng runs ADD_PRE for every pipe it negotiated,
 * and REM_POST for every pipe that had ADD_PRE, whether or not it ever got
 * to ADD_POST (a peer of the wrong protocol is refused in between, a peer
 * may leave in between). So the count goes up in ADD_PRE and down in
 * REM_POST, never in ADD_POST: counting there once let every refused
 * wrong-protocol peer take one off, until the count wrapped below zero and
 * every later connection was refused (nng 1.5.2 has no cap of its own).
 * Closing a pipe in ADD_PRE is nng's way of refusing it.
 */
static void
pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)arg;
	if (ev == NNG_PIPE_EV_ADD_PRE) {
		unsigned n = atomic_fetch_add(&R.conns, 1) + 1;
		if (n > R.cfg->max_connections) {
			note_refused(n - 1);
			nng_pipe_close(p);
		}
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		atomic_fetch_sub(&R.conns, 1);
		if (R.on_closed)
			R.on_closed((uint32_t)nng_pipe_id(p), R.arg);
	}
}

bool
rpc_pipe_alive(uint32_t pipe_id)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;
	nng_sockaddr sa;
	memcpy(&p, &pipe_id, sizeof(pipe_id));
	/* A closed pipe is gone from nng's id map: every option fails. */
	return nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0;
}

void
rpc_pipe_close(uint32_t pipe_id)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;
	memcpy(&p, &pipe_id, sizeof(pipe_id));
	nng_pipe_close(p);
}

void
rpc_pipe_peer(uint32_t pipe_id, char *buf, size_t len)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;
	nng_sockaddr sa;
	char ip[64];
	memcpy(&p, &pipe_id, sizeof(pipe_id));
	snprintf(buf, len, "?");
	if (pipe_id == 0 || nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
		const uint8_t *pt = (const uint8_t *)&sa.s_in.sa_port;
		snprintf(buf, len, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
		    (unsigned)(pt[0] << 8 | pt[1]));
	} else if (sa.s_family == NNG_AF_INET6) {
		const uint8_t *a = sa.s_in6.sa_addr;
		size_t n = 0;
		for (int i = 0; i < 16; i += 2)
			n += (size_t)snprintf(ip + n, sizeof(ip) - n, "%s%x", i ? ":" : "",
			    (unsigned)(a[i] << 8 | a[i + 1]));
		snprintf(buf, len, "[%s]", ip);
	} else if (sa.s_family == NNG_AF_IPC) {
		snprintf(buf, len, "ipc");
	}
}

uint32_t
rpc_connections(void)
{
	return atomic_load(&R.conns);
}

uint64_t
rpc_connections_refused(void)
{
	return atomic_load(&R.refused_total);
}

/* ---- TLS: reload and refused handshakes ---------------------------------- */

/*
 * nng 1.5.2 accepts one connection ahead: a TLS listener posts its next
 * accept, with the configuration in force at that moment, as soon as the
 * previous one completes. A configuration set on a started listener (which
 * nng allows) therefore reaches the connection after next; the one accept
 * already posted would still present the old certificate. Connecting once
 * ourselves, and closing at once, uses that accept up, so every client
 * that connects after rpc_tls_reload returns gets the new configuration.
 * (A new listener instead would close every connection of the old one:
 * closing an nng listener closes its pipes.)
 */
static void
flush_accept(nng_listener l, const char *url)
{
	nng_url *u = NULL;
	int port = 0;
	char ports[16];
	const char *host;
	struct addrinfo hints, *ai = NULL;

	if (nng_url_parse(&u, url) != 0)
		return;
	if (nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0 || port <= 0)
		goto out;
	host = u->u_hostname;
	if (host[0] == '\0' || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	snprintf(ports, sizeof(ports), "%d", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, ports, &hints, &ai) != 0)
		goto out;
	for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		int ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
		if (!ok) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int e = 0;
			socklen_t el = sizeof(e);
			ok = poll(&p, 1, 1000) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0;
		}
		close(fd);
		if (ok) {
			pthread_mutex_lock(&R.tls_mu);
			R.tls_flushes++;
			pthread_mutex_unlock(&R.tls_mu);
			break;
		}
	}
	freeaddrinfo(ai);
out:
	nng_url_free(u);
}

int
rpc_tls_reload(const cfg *c)
{
	nng_tls_config *t = NULL;
	char err[1024] = "";
	int rv;

	if (R.n_tls == 0) {
		if (tls_wanted(c))
			slog_warn("SIGHUP: no TLS listener is running; listen URLs change only at "
				  "a restart");
		return SAGA_OK;
	}
	if ((rv = tls_server_config(c, &t, err, sizeof(err))) != SAGA_OK) {
		slog_error("SIGHUP: TLS certificates not reloaded, the running ones stay: %s", err);
		return rv;
	}
	for (size_t i = 0; i < R.n_tls; i++) {
		if ((rv = nng_listener_set_ptr(R.tls[i].l, NNG_OPT_TLS_CONFIG, t)) != 0) {
			slog_error("SIGHUP: cannot apply the TLS configuration to %s: %s",
			    R.tls[i].url, nng_strerror(rv));
			continue;
		}
		flush_accept(R.tls[i].l, R.tls[i].url);
	}
	nng_tls_config_free(t); /* the listeners hold it */
	slog_info("SIGHUP: TLS certificates reloaded (client certificates %s): new connections "
		  "use them, open connections keep theirs",
	    tls_client_auth_name(tls_client_auth_mode(c)));
	return SAGA_OK;
}

/* The "auth" count of listener l (handshakes that failed: the client's
 * certificate missing, expired or from another CA, the client not trusting
 * ours, or a client not speaking TLS), from nng's statistics. */
static uint64_t
listener_auth_failures(nng_stat *all, nng_listener l)
{
	/* nng_stat_find_listener (1.5.2) is not used: it matched the wrong
	 * endpoint in a test. The tree is walked by hand: a "listener" scope
	 * whose "id" is the listener's. */
	for (nng_stat *s = nng_stat_child(all); s != NULL; s = nng_stat_next(s)) {
		if (nng_stat_type(s) != NNG_STAT_SCOPE || strcmp(nng_stat_name(s), "listener") != 0)
			continue;
		nng_stat *id = nng_stat_find(s, "id");
		if (id == NULL || (int)nng_stat_value(id) != nng_listener_id(l))
			continue;
		nng_stat *a = nng_stat_find(s, "auth");
		return a != NULL ? nng_stat_value(a) : 0;
	}
	return 0;
}

/* Counts refused handshakes every TLS_WATCH_MS and logs one line per
 * listener that had any: a flood of bad clients is one line per period. */
static void *
tls_watch_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&R.tls_mu);
	while (!R.tls_watch_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += TLS_WATCH_MS / 1000;
		pthread_cond_timedwait(&R.tls_cv, &R.tls_mu, &ts);
		if (R.tls_watch_stop)
			break;
		nng_stat *all = NULL;
		if (nng_stats_get(&all) != 0)
			continue;
		for (size_t i = 0; i < R.n_tls; i++) {
			uint64_t now = listener_auth_failures(all, R.tls[i].l);
			uint64_t d = now > R.tls[i].auth_seen ? now - R.tls[i].auth_seen : 0;
			R.tls[i].auth_seen = now;
			uint64_t ours = d < R.tls_flushes ? d : R.tls_flushes;
			R.tls_flushes -= (unsigned)ours;
			d -= ours;
			if (d == 0)
				continue;
			atomic_fetch_add(&R.tls_refused_total, d);
			slog_warn("%llu TLS handshake(s) refused on %s in the last %d s: a client "
				  "without a valid certificate (missing, expired or signed by "
				  "another CA), one that does not trust sagad's certificate, or "
				  "one not speaking TLS",
			    (unsigned long long)d, R.tls[i].url, TLS_WATCH_MS / 1000);
		}
		nng_stats_free(all);
	}
	pthread_mutex_unlock(&R.tls_mu);
	return NULL;
}

uint64_t
rpc_tls_handshakes_refused(void)
{
	return atomic_load(&R.tls_refused_total);
}

int
rpc_start(
    const cfg *c, rpc_route_fn route, rpc_pipe_fn on_closed, void *arg, char *err, size_t errlen)
{
	int rv;
	R.cfg = c;
	R.route = route;
	R.on_closed = on_closed;
	R.arg = arg;
	if ((rv = nng_rep0_open(&R.sock)) != 0) {
		snprintf(err, errlen, "cannot open socket: %s", nng_strerror(rv));
		return wire_err_from_nng(rv);
	}
	R.open = true;
	/* The transport-level limit: anything larger is dropped by nng
	 * before it is allocated. Between max_message_bytes and this the
	 * caller gets a clear SAGA_ETOOBIG reply instead. */
	size_t hard = (size_t)c->max_message_bytes * 2 + 65536;
	nng_socket_set_size(R.sock, NNG_OPT_RECVMAXSZ, hard);
	nng_pipe_notify(R.sock, NNG_PIPE_EV_ADD_PRE, pipe_cb, NULL);
	nng_pipe_notify(R.sock, NNG_PIPE_EV_REM_POST, pipe_cb, NULL);

	nng_tls_config *tls = NULL;
	if (!tls_wanted(c) && (c->tls_cert[0] != '\0' || c->tls_ca[0] != '\0'))
		slog_warn("TLS settings are given but no listen URL is tls+tcp://: every "
			  "connection is plaintext");
	if (tls_wanted(c)) {
		if ((rv = tls_server_config(c, &tls, err, errlen)) != SAGA_OK)
			return rv;
		slog_info("TLS on tls+tcp:// listeners: client certificates %s%s%s",
		    tls_client_auth_name(tls_client_auth_mode(c)),
		    c->tls_ca[0] != '\0' ? ", checked against " : "", c->tls_ca);
	}
	char *urls = strdup(c->listen);
	if (urls == NULL) {
		snprintf(err, errlen, "out of memory");
		if (tls != NULL)
			nng_tls_config_free(tls);
		return SAGA_ENOMEM;
	}
	char *save = NULL;
	int n = 0;
	for (char *u = strtok_r(urls, ", ", &save); u; u = strtok_r(NULL, ", ", &save)) {
		nng_listener l;
		bool is_tls = tls_url(u);
		if (is_tls && R.n_tls == RPC_MAX_TLS_LISTENERS) {
			snprintf(
			    err, errlen, "more than %d TLS listen URLs", RPC_MAX_TLS_LISTENERS);
			free(urls);
			nng_tls_config_free(tls);
			return SAGA_EINVAL;
		}
		if ((rv = nng_listener_create(&l, R.sock, u)) != 0 ||
		    (rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, hard)) != 0 ||
		    (is_tls && (rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tls)) != 0) ||
		    (rv = nng_listener_start(l, 0)) != 0) {
			snprintf(err, errlen, "cannot listen on %s: %s", u, nng_strerror(rv));
			free(urls);
			if (tls != NULL)
				nng_tls_config_free(tls);
			return wire_err_from_nng(rv);
		}
		if (is_tls) {
			R.tls[R.n_tls].l = l;
			R.tls[R.n_tls].url = strdup(u);
			R.n_tls++;
		}
		int port = 0;
		if (strncmp(u, "tcp", 3) == 0 &&
		    nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0 &&
		    strstr(u, ":0") != NULL && u[strlen(u) - 1] == '0' && u[strlen(u) - 2] == ':') {
			/* Port 0: tell which port the OS chose. */
			slog_info("listening on %.*s:%d", (int)(strlen(u) - 2), u, port);
		} else {
			slog_info("listening on %s", u);
		}
		n++;
	}
	free(urls);
	if (tls != NULL)
		nng_tls_config_free(tls); /* the listeners hold it */
	if (n == 0) {
		snprintf(err, errlen, "no listen URL configured");
		return SAGA_EINVAL;
	}
	if (R.n_tls > 0 && pthread_create(&R.tls_watch, NULL, tls_watch_main, NULL) == 0)
		R.tls_watch_started = true;
	pthread_mutex_lock(&R.mu);
	ensure_receivers_locked();
	pthread_mutex_unlock(&R.mu);
	return 0;
}

void
rpc_stop_receiving(void)
{
	atomic_store(&R.draining, true);
}

bool
rpc_draining(void)
{
	return atomic_load(&R.draining);
}

void
rpc_close(void)
{
	if (R.tls_watch_started) {
		pthread_mutex_lock(&R.tls_mu);
		R.tls_watch_stop = true;
		pthread_cond_broadcast(&R.tls_cv);
		pthread_mutex_unlock(&R.tls_mu);
		pthread_join(R.tls_watch, NULL);
		R.tls_watch_started = false;
	}
	for (size_t i = 0; i < R.n_tls; i++)
		free(R.tls[i].url);
	R.n_tls = 0;
	if (!R.open)
		return;
	pthread_mutex_lock(&R.mu);
	atomic_store(&R.closing, true);
	pthread_mutex_unlock(&R.mu);
	nng_close(R.sock);
	R.open = false;
	for (size_t i = 0; i < R.n_all; i++) {
		slot *s = R.all[i];
		nng_aio_stop(s->aio);
		if (s->state == S_HELD || s->state == S_SEND) {
			wire_free(s->req.req ? &s->req.req->base : NULL);
			free(s->req.auth.defs);
		}
		nng_aio_free(s->aio);
		free(s);
	}
	free(R.all);
	R.all = NULL;
	R.n_all = R.cap_all = 0;
	R.free_list = NULL;
}

bool
rpc_may_reveal(const rpc_req *r)
{
	/* Admin, or auth off (no identity to check). */
	return auth_may_reveal(r);
}
