/*
 * rpc: sagad's nng endpoint. One REP socket listens on every configured
 * URL and serves clients and participants alike. Each request is received
 * on its own nng context, decoded with bounds (wire_unpack), and handed to
 * the route function given at start (route.c: the engine or a reader
 * thread). Whoever handles it answers exactly once with rpc_reply*();
 * that sends the reply and recycles the context. A request can be held for
 * a long time (a participant's poll waits for work) at no cost but its
 * context.
 *
 * Size limits: messages above max_message_bytes get an SAGA_ETOOBIG error
 * reply; nng itself drops connections that send more than twice that (its
 * receive limit), so no peer can make sagad allocate unbounded memory.
 */
#ifndef SAGAD_RPC_H
#define SAGAD_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sagawire.pb-c.h"

struct nng_msg;

/* Who sent a request, once auth.c has checked it (auth on); all zero when
 * it was not checked (auth off, or forwarded by another sagad). */
typedef struct rpc_auth {
	int role;       /* auth_role (auth.h); 0 = not checked */
	char id[17];    /* the principal's id */
	char name[129]; /* its name */
	char *defs;     /* its definition limit: names, each followed by '\n'
	                  (malloc'd, freed on reply); NULL = every definition */
} rpc_auth;

typedef struct rpc_req {
	Sagawire__Request *req; /* decoded request (owned; freed on reply) */
	rpc_auth auth;          /* the caller (auth.c) */
	uint32_t pipe_id;       /* the connection it came on */
	bool forwarded;         /* from another sagad through the database (forward.c) */
	const char *rerun_of;   /* a start made by a rerun (handle_rerun.c): the old saga's id,
	                         * recorded in the new saga's history; NULL otherwise */
	/* private */
	void *slot;
	/* A request made here, not received (forward.c): the reply goes to
	 * reply_fn (which owns the message, NULL when it could not be built)
	 * instead of the network. reply_fn still sees auth.role (the role
	 * auth_check found; 0 if unchecked), nothing else of auth. */
	void (*reply_fn)(struct rpc_req *r, struct nng_msg *m);
} rpc_req;

typedef void (*rpc_pipe_fn)(uint32_t pipe_id, void *arg);
/* Takes a decoded request; it must be answered exactly once. */
typedef void (*rpc_route_fn)(rpc_req *r);

/* Opens the socket and listens on every URL in c->listen. Every decoded
 * request goes to route; every closed connection to on_pipe_closed. */
int rpc_start(const cfg *c, rpc_route_fn route, rpc_pipe_fn on_pipe_closed, void *arg, char *err,
    size_t errlen);
/* Shutdown has begun: new work is refused (by the router); replies can
 * still be sent. */
void rpc_stop_receiving(void);
bool rpc_draining(void);
void rpc_close(void);

/* Replies; each consumes the request. Safe from any thread. */
void rpc_reply(rpc_req *r, const Sagawire__Response *resp);
void rpc_reply_msg(rpc_req *r, struct nng_msg *m);
void rpc_reply_error(rpc_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* May the caller of r see sensitive fields (GetRequest.reveal)? For now
 * every caller may: the auth part of issue 12 makes it "admin role, or
 * auth off". */
bool rpc_may_reveal(const rpc_req *r);

/* Is the connection still open? (A request can be handled after its
 * connection's close was reported.) */
bool rpc_pipe_alive(uint32_t pipe_id);
/* Closes a connection (the fault suite's drop-start-reply). */
void rpc_pipe_close(uint32_t pipe_id);
/* The connection's remote address as text ("127.0.0.1:5123", "ipc"), for
 * log lines; "?" when unknown. */
void rpc_pipe_peer(uint32_t pipe_id, char *buf, size_t len);

/* Connections currently open; connections refused (max_connections) since
 * start. */
uint32_t rpc_connections(void);
uint64_t rpc_connections_refused(void);

/* SIGHUP: reads tls-cert, tls-key and tls-ca again and applies them (and
 * tls-client-auth) to every tls+tcp:// listener, for the connections made
 * from now on; open connections keep the configuration they started with.
 * If a file is missing or bad, logs why and changes nothing. */
int rpc_tls_reload(const cfg *c);
/* TLS handshakes the listeners refused since start (counted every 10 s). */
uint64_t rpc_tls_handshakes_refused(void);

#endif
