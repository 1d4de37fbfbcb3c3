/* route: the table of who serves which request, and the least role that
 * may send it. See route.h. */
#include "route.h"

#include <nng/nng.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "engine.h"
#include "forward.h"
#include "handle_batch.h"
#include "log.h"
#include "reader.h"
#include "saga_base.h"
#include "wire.h"

#define B(x) SAGAWIRE__REQUEST__BODY_##x

/* How a request is treated once shutdown has begun. */
enum {
	REFUSE_DRAINING = 1, /* refused at once (new work, reads) */
	NEW_WORK = 2,        /* refused by the engine while it stops */
};

typedef struct route_entry {
	engine_handler engine; /* served by the engine, or */
	reader_fn reader;      /* by a reader */
	reader_fn not_held;    /* engine: a reader serves it if the saga is not in memory */
	int flags;
	auth_role need; /* with auth on: the least role that may send it (auth.h) */
} route_entry;

static const route_entry table[] = {
	[B(START)] = { .engine = engine_start,
	    .not_held = reader_start_unknown,
	    .flags = REFUSE_DRAINING | NEW_WORK,
	    .need = AUTH_CLIENT },
	[B(CANCEL)] = { .engine = engine_cancel,
	    .not_held = fwd_cancel_check,
	    .flags = REFUSE_DRAINING,
	    .need = AUTH_OPERATOR },
	[B(WAIT)] = { .engine = engine_wait,
	    .not_held = fwd_wait_check,
	    .flags = REFUSE_DRAINING,
	    .need = AUTH_CLIENT },
	[B(OPERATE)] = { .engine = engine_operate,
	    .not_held = fwd_operate_load,
	    .flags = REFUSE_DRAINING,
	    .need = AUTH_OPERATOR },
	[B(PARTICIPANTS)] = { .engine = engine_participants,
	    .flags = REFUSE_DRAINING,
	    .need = AUTH_CLIENT },
	/* Participants poll and report as themselves only (auth_check). */
	[B(POLL)] = { .engine = engine_poll, .flags = REFUSE_DRAINING, .need = AUTH_PARTICIPANT },
	/* Reports are taken even while draining: they carry outcomes. */
	[B(REPORT)] = { .engine = engine_report, .need = AUTH_PARTICIPANT },
	[B(GET)] = { .reader = reader_get, .flags = REFUSE_DRAINING, .need = AUTH_CLIENT },
	[B(LIST)] = { .reader = reader_list, .flags = REFUSE_DRAINING, .need = AUTH_CLIENT },
	[B(DESCRIBE)] = { .reader = reader_describe,
	    .flags = REFUSE_DRAINING,
	    .need = AUTH_CLIENT },
	[B(REGISTER)] = { .reader = reader_register, .flags = REFUSE_DRAINING, .need = AUTH_ADMIN },
	/* Each saga of a batch gets its own command (handle_batch.c). */
	[B(BATCH)] = { .reader = batch_run, .flags = REFUSE_DRAINING, .need = AUTH_OPERATOR },
	[B(PRINCIPAL)] = { .reader = auth_principal_rpc,
	    .flags = REFUSE_DRAINING,
	    .need = AUTH_ADMIN },
};

static const route_entry *
entry_of(const rpc_req *r)
{
	size_t b = (size_t)r->req->body_case;
	return &table[b];
}

/* The saga id a request about one saga names, or NULL. */
static const char *
saga_of(const rpc_req *r)
{
	switch (r->req->body_case) {
	case B(GET):
		return r->req->get->saga_id;
	case B(WAIT):
		return r->req->wait->saga_id;
	case B(CANCEL):
		return r->req->cancel->saga_id;
	case B(OPERATE):
		return r->req->operate->saga_id;
	default:
		return NULL;
	}
}

static void serve(PGconn *c, rpc_req *r, const route_entry *t);

/* On a reader: a principal limited to some definitions asks about one
 * saga. Its definition is read first; then the request goes its way. */
static void
check_saga_definition(PGconn *c, rpc_req *r)
{
	uint8_t id[16];
	char def[AUTH_NAME_MAX + 1] = "";
	const char *sid = saga_of(r);
	if (wire_uuid_parse(sid, id) == 0) {
		const char *v[1] = { (const char *)id };
		int lens[1] = { 16 }, fmts[1] = { 1 };
		PGresult *res = PQexecParams(
		    c, "SELECT definition FROM sagas WHERE id = $1", 1, NULL, v, lens, fmts, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			rpc_reply_error(
			    r, SAGA_EDB, "database error: %s", PQresultErrorMessage(res));
			PQclear(res);
			return;
		}
		if (PQntuples(res) == 1)
			snprintf(def, sizeof(def), "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		if (def[0] != '\0' && !auth_definition_allowed(r, def)) {
			rpc_reply_error(r, SAGA_EPERM,
			    "permission denied: principal %s may not see or change sagas of "
			    "definition "
			    "%s",
			    r->auth.name, def);
			return;
		}
	}
	/* An unknown or malformed id goes on: it is refused as usual. */
	serve(c, r, entry_of(r));
}

/* Hands r to its module; c is the reader connection when on a reader. */
static void
serve(PGconn *c, rpc_req *r, const route_entry *t)
{
	if (t->reader != NULL) {
		if (c != NULL)
			t->reader(c, r);
		else
			reader_submit(r, t->reader);
		return;
	}
	if (engine_call(r, t->engine, (t->flags & NEW_WORK) != 0) == ENGINE_NOT_HELD) {
		if (c != NULL)
			t->not_held(c, r);
		else
			reader_submit(r, t->not_held);
	}
}

/* A caller speaking a protocol major this sagad does not: logged once per
 * VERSION_LOG_MS at most (a participant retries its poll in a loop), with
 * the count of the others. */
#define VERSION_LOG_MS 10000
static struct {
	pthread_mutex_t mu;
	int64_t window_ms;
	unsigned refused;
} V = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Refuses r if it speaks a protocol major this sagad does not
 * (docs/PROTOCOL.md, "Versions"); returns -1 then, 0 to go on. */
static int
check_protocol(rpc_req *r)
{
	uint32_t v = r->req->protocol;
	unsigned major = WIRE_PROTOCOL_MAJOR_OF(v), minor = WIRE_PROTOCOL_MINOR_OF(v);
	if (major == WIRE_PROTOCOL_MAJOR)
		return 0;
	int64_t now = wire_mono_ms();
	unsigned others = 0;
	bool log = false;
	pthread_mutex_lock(&V.mu);
	if (V.window_ms == 0 || now - V.window_ms >= VERSION_LOG_MS) {
		others = V.refused;
		V.refused = 0;
		V.window_ms = now;
		log = true;
	} else {
		V.refused++;
	}
	pthread_mutex_unlock(&V.mu);
	if (log && SLOG_WARN <= slog_level) {
		char peer[128], more[64] = "";
		rpc_pipe_peer(r->pipe_id, peer, sizeof(peer));
		if (others > 0)
			snprintf(more, sizeof(more), " (%u more refused since the last such line)",
			    others);
		slog_warn("refused a request of protocol %u.%u on connection %u (%s): this sagad "
			  "speaks %u.%u%s",
		    major, minor, r->pipe_id, peer, WIRE_PROTOCOL_MAJOR, WIRE_PROTOCOL_MINOR, more);
	}
	rpc_reply_error(r, SAGA_EUNSUPPORTED,
	    "protocol version %u.%u is not supported: this sagad speaks protocol %u.%u "
	    "(major %u only; docs/PROTOCOL.md)",
	    major, minor, WIRE_PROTOCOL_MAJOR, WIRE_PROTOCOL_MINOR, WIRE_PROTOCOL_MAJOR);
	return -1;
}

void
route_request(rpc_req *r)
{
	/* First: a request of another major may mean anything else, its
	 * credential and body included. Forwarded requests were checked by
	 * the sagad that received them. */
	if (!r->forwarded && check_protocol(r) != 0)
		return;
	size_t b = (size_t)r->req->body_case;
	const route_entry *t = b < sizeof(table) / sizeof(table[0]) ? &table[b] : NULL;
	if (t == NULL || (t->engine == NULL && t->reader == NULL)) {
		rpc_reply_error(r, SAGA_EUNSUPPORTED,
		    "request has no body this sagad understands (newer client?)");
		return;
	}
	/* Before anything runs: a refused request changes nothing, creates
	 * no participant and no metric series. */
	if (auth_enabled() && !r->forwarded && auth_check(r, t->need) != 0)
		return;
	if ((t->flags & REFUSE_DRAINING) && rpc_draining()) {
		rpc_reply_error(r, SAGA_ECLOSED, "sagad is shutting down");
		return;
	}
	if (r->auth.defs != NULL && saga_of(r) != NULL) {
		reader_submit(r, check_saga_definition);
		return;
	}
	serve(NULL, r, t);
}

/* ---- requests made inside sagad (route.h) --------------------------------------------- */

typedef struct call {
	rpc_req r; /* first: the reply callback finds the rest */
	route_done_fn done;
	void *arg;
} call;

static void
call_replied(rpc_req *r, nng_msg *m)
{
	call *c = (call *)(void *)r;
	int e = 0;
	Sagawire__Response *resp =
	    m != NULL ? wire_unpack_response(nng_msg_body(m), nng_msg_len(m), &e) : NULL;
	nng_msg_free(m);
	c->done(c->arg, resp);
	wire_free(resp != NULL ? &resp->base : NULL);
	free(c);
}

int
route_call(const Sagawire__Request *q, route_done_fn done, void *arg)
{
	size_t len = sagawire__request__get_packed_size(q);
	uint8_t *buf = malloc(len ? len : 1);
	call *c = calloc(1, sizeof(*c));
	if (buf == NULL || c == NULL) {
		free(buf);
		free(c);
		return SAGA_ENOMEM;
	}
	sagawire__request__pack(q, buf);
	int e = 0;
	c->r.req = wire_unpack_request(buf, len, &e);
	free(buf);
	if (c->r.req == NULL) {
		free(c);
		return SAGA_ENOMEM;
	}
	c->r.reply_fn = call_replied;
	c->done = done;
	c->arg = arg;
	route_request(&c->r);
	return 0;
}

int
route_operate(const char *saga_id, int op, const char *step, const uint8_t *result,
    size_t result_len, const char *reason, const char *idempotency_key, bool latest_version,
    const char *credential, route_done_fn done, void *arg)
{
	Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
	Sagawire__OperateRequest o = SAGAWIRE__OPERATE_REQUEST__INIT;
	o.saga_id = (char *)(saga_id ? saga_id : "");
	o.op = (Sagawire__Operation)op;
	o.step = (char *)(step ? step : "");
	o.reason = (char *)(reason ? reason : "");
	o.result.data = (uint8_t *)result;
	o.result.len = result ? result_len : 0;
	o.idempotency_key = (char *)(idempotency_key ? idempotency_key : "");
	o.latest_version = latest_version;
	q.credential = (char *)(credential ? credential : "");
	q.protocol = WIRE_PROTOCOL_VERSION;
	q.body_case = SAGAWIRE__REQUEST__BODY_OPERATE;
	q.operate = &o;
	return route_call(&q, done, arg);
}
