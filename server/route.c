/* route: the table of who serves which request. See route.h. */
#include "route.h"

#include <stddef.h>

#include "engine.h"
#include "forward.h"
#include "reader.h"
#include "saga_base.h"

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
} route_entry;

static const route_entry table[] = {
	[B(START)] = { .engine = engine_start,
	    .not_held = reader_start_unknown,
	    .flags = REFUSE_DRAINING | NEW_WORK },
	[B(CANCEL)] = { .engine = engine_cancel,
	    .not_held = fwd_cancel_check,
	    .flags = REFUSE_DRAINING },
	[B(WAIT)] = { .engine = engine_wait, .not_held = fwd_wait_check, .flags = REFUSE_DRAINING },
	[B(OPERATE)] = { .engine = engine_operate,
	    .not_held = fwd_operate_load,
	    .flags = REFUSE_DRAINING },
	[B(PARTICIPANTS)] = { .engine = engine_participants, .flags = REFUSE_DRAINING },
	[B(POLL)] = { .engine = engine_poll, .flags = REFUSE_DRAINING },
	/* Reports are taken even while draining: they carry outcomes. */
	[B(REPORT)] = { .engine = engine_report },
	[B(GET)] = { .reader = reader_get, .flags = REFUSE_DRAINING },
	[B(LIST)] = { .reader = reader_list, .flags = REFUSE_DRAINING },
	[B(DESCRIBE)] = { .reader = reader_describe, .flags = REFUSE_DRAINING },
	[B(REGISTER)] = { .reader = reader_register, .flags = REFUSE_DRAINING },
};

void
route_request(rpc_req *r)
{
	size_t b = (size_t)r->req->body_case;
	const route_entry *t = b < sizeof(table) / sizeof(table[0]) ? &table[b] : NULL;
	if (t == NULL || (t->engine == NULL && t->reader == NULL)) {
		rpc_reply_error(r, SAGA_EUNSUPPORTED,
		    "request has no body this sagad understands (newer client?)");
		return;
	}
	if ((t->flags & REFUSE_DRAINING) && rpc_draining()) {
		rpc_reply_error(r, SAGA_ECLOSED, "sagad is shutting down");
		return;
	}
	if (t->reader != NULL) {
		reader_submit(r, t->reader);
		return;
	}
	if (engine_call(r, t->engine, (t->flags & NEW_WORK) != 0) == ENGINE_NOT_HELD)
		reader_submit(r, t->not_held);
}
