/* handle_wait: WaitRequest, and every request held until a saga is final
 * and durable (a start with wait_ms too). */
#include <stdlib.h>

#include "engine.h"
#include "engine_int.h"
#include "saga_base.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Answers a wait (or a start that waits) with the saga's state now. */
static void
reply_final(waiter *w, const eng_saga *s)
{
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	if (w->start) {
		Sagawire__StartResponse sr = SAGAWIRE__START_RESPONSE__INIT;
		sr.saga_id = (char *)s->sm->ids;
		sr.version = s->sm->def->version;
		sr.existing = w->existing;
		sr.state = (Sagawire__SagaState)s->sm->state;
		sr.error = s->sm->error ? s->sm->error : (char *)"";
		resp.body_case = SAGAWIRE__RESPONSE__BODY_START;
		resp.start = &sr;
		rpc_reply(w->req, &resp);
		return;
	}
	Sagawire__WaitResponse wr = SAGAWIRE__WAIT_RESPONSE__INIT;
	wr.state = (Sagawire__SagaState)s->sm->state;
	wr.error = s->sm->error ? s->sm->error : (char *)"";
	resp.body_case = SAGAWIRE__RESPONSE__BODY_WAIT;
	resp.wait = &wr;
	rpc_reply(w->req, &resp);
}

/* A wait's own timeout: answered with the state now (not final yet). */
static void
wait_expired(tq_node *t)
{
	waiter *w = container_of(t, waiter, t);
	eng_saga *ws = w->saga;
	for (waiter **wl = &ws->final_waiters; *wl; wl = &(*wl)->next) {
		if (*wl == w) {
			*wl = w->next;
			break;
		}
	}
	reply_final(w, ws);
	free(w);
}

int
eng_add_final_waiter(eng_saga *s, rpc_req *r, bool start, bool existing, uint32_t wait_ms)
{
	waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return SAGA_ENOMEM;
	w->req = r;
	w->saga = s;
	w->start = start;
	w->existing = existing;
	tq_node_init(&w->t, wait_expired);
	w->next = s->final_waiters;
	s->final_waiters = w;
	tq_arm_must(&E.tq, &w->t, wire_mono_ms() + (wait_ms > 600000 ? 600000 : wait_ms));
	return 0;
}

void
eng_release_final_waiters(eng_saga *s)
{
	for (waiter *w = s->final_waiters, *n; w; w = n) {
		n = w->next;
		tq_cancel(&E.tq, &w->t);
		reply_final(w, s);
		free(w);
	}
	s->final_waiters = NULL;
}

int
engine_wait(rpc_req *r)
{
	Sagawire__WaitRequest *q = r->req->wait;
	uint8_t id[16];
	if (wire_uuid_parse(q->saga_id, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "wait: '%.64s' is not a saga id", q->saga_id);
		return ENGINE_ANSWERED;
	}
	eng_saga *s = eng_find(id);
	if (s == NULL)
		return ENGINE_NOT_HELD; /* final (and durable) or unknown */
	if (eng_add_final_waiter(s, r, false, false, q->timeout_ms ? q->timeout_ms : 30000) != 0)
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
	return ENGINE_ANSWERED;
}
