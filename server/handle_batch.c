/* handle_batch: BatchRequest, one operator action on every saga a list
 * filter matches, a page per call. See handle_batch.h.
 *
 * On a reader: the page is read by reader_list itself (a ListRequest made
 * here, answered synchronously into list_replied), so a batch matches
 * exactly what `list` shows with the same filter, the principal's
 * definition limit included. Each saga of the page then gets the request a
 * client would send for it alone (CancelRequest, OperateRequest), made
 * here and routed as route.c would (engine first; a reader for a saga not
 * in memory; forward.c for one owned by another sagad), with the caller's
 * principal, so each is checked, recorded and answered exactly as a
 * single command. Their answers are gathered (item_replied, on whatever
 * thread answers) and the batch is answered when the last one is in. */
#include "handle_batch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "engine.h"
#include "forward.h"
#include "handle_rerun.h"
#include "log.h"
#include "names.h"
#include "reader.h"
#include "saga_base.h"
#include "utf8.h"
#include "wire.h"

#define SS(x) SAGAWIRE__SAGA_STATE__SAGA_##x
#define OP(x) SAGAWIRE__OPERATION__OP_##x

#define BATCH_DEFAULT 50
#define BATCH_MAX     100

typedef struct bctx {
	pthread_mutex_t mu;
	rpc_req *orig;
	size_t left;              /* answers still to come, + 1 while items are being sent */
	Sagawire__Response *page; /* the list page (owns the saga ids) */
	size_t n;
	Sagawire__BatchItem *items;
	Sagawire__BatchItem **itemp;
	char (*new_ids)[WIRE_UUID_STRLEN];
	char **whys; /* malloc'd */
	uint64_t applicable;
} bctx;

typedef struct bitem {
	rpc_req r; /* first: the reply callback finds the rest */
	bctx *b;
	size_t i;
} bitem;

/* Whether op applies to a saga in state st (what a single command of it
 * would not refuse for its state alone). */
static bool
applies(int op, int st)
{
	switch (op) {
	case OP(CANCEL):
		return st == SS(RUNNING);
	case OP(TERMINATE):
	case OP(RETRY_STEP):
		return st == SS(RUNNING) || st == SS(COMPENSATING) || st == SS(FAILED);
	case OP(RERUN):
		return st == SS(COMPLETED) || st == SS(COMPENSATED) || st == SS(FAILED) ||
		    st == SS(TERMINATED);
	default:
		return false;
	}
}

static const char *
op_name(int op)
{
	switch (op) {
	case OP(CANCEL):
		return "cancel";
	case OP(TERMINATE):
		return "terminate";
	case OP(RETRY_STEP):
		return "retry";
	case OP(RERUN):
		return "rerun";
	default:
		return "?";
	}
}

/* A request built on the stack, as a heap copy rpc_reply may free. */
static Sagawire__Request *
heap_copy(const Sagawire__Request *q)
{
	size_t len = sagawire__request__get_packed_size(q);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		return NULL;
	sagawire__request__pack(q, buf);
	int e = 0;
	Sagawire__Request *h = wire_unpack_request(buf, len, &e);
	free(buf);
	return h;
}

static void
finish(bctx *b)
{
	Sagawire__BatchResponse br = SAGAWIRE__BATCH_RESPONSE__INIT;
	br.n_items = b->n;
	br.items = b->itemp;
	for (size_t i = 0; i < b->n; i++) {
		if (b->items[i].done)
			br.done++;
		else
			br.skipped++;
	}
	br.next_page_token = b->page->list->next_page_token;
	br.applicable = b->applicable;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_BATCH;
	resp.batch = &br;
	rpc_reply(b->orig, &resp);
	for (size_t i = 0; i < b->n; i++)
		free(b->whys[i]);
	free(b->whys);
	free(b->new_ids);
	free(b->itemp);
	free(b->items);
	wire_free(&b->page->base);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

static void
release(bctx *b)
{
	pthread_mutex_lock(&b->mu);
	bool last = --b->left == 0;
	pthread_mutex_unlock(&b->mu);
	if (last)
		finish(b);
}

static void
skip(bctx *b, size_t i, int code, const char *why)
{
	b->items[i].done = false;
	b->items[i].code = (uint32_t)code;
	b->whys[i] = strdup(why ? why : "");
	b->items[i].why = b->whys[i] ? b->whys[i] : (char *)"(out of memory)";
}

/* One saga's answer: its command's response, or an error. */
static void
item_replied(rpc_req *r, nng_msg *m)
{
	bitem *x = (bitem *)(void *)r;
	bctx *b = x->b;
	size_t i = x->i;
	int e = 0;
	Sagawire__Response *resp =
	    m ? wire_unpack_response(nng_msg_body(m), nng_msg_len(m), &e) : NULL;
	nng_msg_free(m);
	if (resp == NULL) {
		skip(b, i, SAGA_ENOMEM, "no answer could be made (out of memory)");
	} else if (resp->error != NULL) {
		skip(b, i, (int)resp->error->code, resp->error->message);
	} else {
		b->items[i].done = true;
		if (resp->body_case == SAGAWIRE__RESPONSE__BODY_CANCEL) {
			b->items[i].state = resp->cancel->state;
		} else if (resp->body_case == SAGAWIRE__RESPONSE__BODY_OPERATE) {
			b->items[i].state = resp->operate->state;
			if (resp->operate->new_saga_id != NULL) {
				snprintf(b->new_ids[i], WIRE_UUID_STRLEN, "%s",
				    resp->operate->new_saga_id);
				b->items[i].new_saga_id = b->new_ids[i];
			}
		}
	}
	wire_free(resp ? &resp->base : NULL);
	free(x);
	release(b);
}

/* Sends saga i of the page its own command. */
static void
send_item(PGconn *c, bctx *b, size_t i, const Sagawire__BatchRequest *q)
{
	const char *sid = b->items[i].saga_id;
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__CancelRequest cr = SAGAWIRE__CANCEL_REQUEST__INIT;
	Sagawire__OperateRequest orq = SAGAWIRE__OPERATE_REQUEST__INIT;
	char key[300];
	if (q->op == OP(CANCEL)) {
		cr.saga_id = (char *)sid;
		cr.reason = q->reason;
		req.body_case = SAGAWIRE__REQUEST__BODY_CANCEL;
		req.cancel = &cr;
	} else {
		orq.saga_id = (char *)sid;
		orq.op = q->op;
		orq.step = q->step;
		orq.reason = q->reason;
		orq.latest_version = q->latest_version;
		if (q->op == OP(RERUN) && q->idempotency_key[0] != '\0') {
			snprintf(key, sizeof(key), "%s/%s", q->idempotency_key, sid);
			orq.idempotency_key = key;
		}
		req.body_case = SAGAWIRE__REQUEST__BODY_OPERATE;
		req.operate = &orq;
	}
	bitem *x = calloc(1, sizeof(*x));
	Sagawire__Request *h = x ? heap_copy(&req) : NULL;
	if (h == NULL) {
		free(x);
		pthread_mutex_lock(&b->mu);
		skip(b, i, SAGA_ENOMEM, "out of memory");
		b->left--; /* never sent: no answer to wait for */
		pthread_mutex_unlock(&b->mu);
		return;
	}
	x->b = b;
	x->i = i;
	x->r.req = h;
	x->r.reply_fn = item_replied;
	/* The caller, so each saga's history names it and forward.c passes it
	 * on; its definition limit already narrowed the list. */
	x->r.auth = b->orig->auth;
	x->r.auth.defs = NULL;
	rpc_req *r = &x->r;
	if (q->op == OP(CANCEL)) {
		if (engine_call(r, engine_cancel, false) == ENGINE_NOT_HELD)
			fwd_cancel_check(c, r);
	} else if (q->op == OP(RERUN)) {
		rerun_run(c, r);
	} else if (engine_call(r, engine_operate, false) == ENGINE_NOT_HELD) {
		fwd_operate_load(c, r);
	}
	/* x may be gone now: answered already. */
}

typedef struct list_call {
	rpc_req r; /* first */
	nng_msg *m;
} list_call;

static void
list_replied(rpc_req *r, nng_msg *m)
{
	((list_call *)(void *)r)->m = m;
}

void
batch_run(PGconn *c, rpc_req *r)
{
	Sagawire__BatchRequest *q = r->req->batch;
	if (q->op != OP(CANCEL) && q->op != OP(TERMINATE) && q->op != OP(RETRY_STEP) &&
	    q->op != OP(RERUN)) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "batch: the action must be cancel, terminate, retry or rerun (op %d)", q->op);
		return;
	}
	if (!cm_utf8_ok(q->reason, strnlen(q->reason, 513)) || strlen(q->reason) > 512 ||
	    !cm_utf8_ok(q->step, strnlen(q->step, 257)) || strlen(q->step) > 256 ||
	    strlen(q->idempotency_key) > 200) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "batch: reason (at most 512 bytes), step (256) and idempotency key (200) "
		    "must be UTF-8 text");
		return;
	}
	if (q->op == OP(TERMINATE) && !q->dry_run && q->reason[0] == '\0') {
		rpc_reply_error(r, SAGA_EINVAL,
		    "batch: terminating sagas needs a reason (it is recorded in each saga's "
		    "history)");
		return;
	}
	if (q->op == OP(RETRY_STEP) && q->step[0] == '\0') {
		rpc_reply_error(r, SAGA_EINVAL, "batch: retry needs the step to retry");
		return;
	}
	if (q->filter != NULL && q->filter->limit > BATCH_MAX) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "batch: at most %d sagas per call (limit %u); follow next_page_token for "
		    "more",
		    BATCH_MAX, q->filter->limit);
		return;
	}

	/* The page, read as `list` reads it. */
	Sagawire__ListRequest lq = SAGAWIRE__LIST_REQUEST__INIT;
	if (q->filter != NULL)
		lq = *q->filter;
	lq.limit = lq.limit ? lq.limit : BATCH_DEFAULT;
	lq.counts = q->dry_run;
	Sagawire__Request lr = SAGAWIRE__REQUEST__INIT;
	lr.body_case = SAGAWIRE__REQUEST__BODY_LIST;
	lr.list = &lq;
	list_call lc = { 0 };
	lc.r.req = heap_copy(&lr);
	lc.r.reply_fn = list_replied;
	lc.r.auth = r->auth;
	lc.r.auth.defs = r->auth.defs ? strdup(r->auth.defs) : NULL;
	if (lc.r.req == NULL || (r->auth.defs != NULL && lc.r.auth.defs == NULL)) {
		wire_free(lc.r.req ? &lc.r.req->base : NULL);
		free(lc.r.auth.defs);
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	reader_list(c, &lc.r); /* answers at once, into lc.m */
	int e = 0;
	Sagawire__Response *page =
	    lc.m ? wire_unpack_response(nng_msg_body(lc.m), nng_msg_len(lc.m), &e) : NULL;
	nng_msg_free(lc.m);
	if (page == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "batch: the page could not be read");
		return;
	}
	if (page->error != NULL || page->body_case != SAGAWIRE__RESPONSE__BODY_LIST) {
		rpc_reply_error(r, page->error ? (int)page->error->code : SAGA_EINTERNAL,
		    "batch: %s", page->error ? page->error->message : "unexpected list answer");
		wire_free(&page->base);
		return;
	}

	bctx *b = calloc(1, sizeof(*b));
	size_t n = page->list->n_sagas;
	if (b == NULL || (b->items = calloc(n + 1, sizeof(*b->items))) == NULL ||
	    (b->itemp = calloc(n + 1, sizeof(*b->itemp))) == NULL ||
	    (b->new_ids = calloc(n + 1, WIRE_UUID_STRLEN)) == NULL ||
	    (b->whys = calloc(n + 1, sizeof(char *))) == NULL) {
		if (b != NULL) {
			free(b->items), free(b->itemp), free(b->new_ids), free(b->whys);
			free(b);
		}
		wire_free(&page->base);
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	pthread_mutex_init(&b->mu, NULL);
	b->orig = r;
	b->page = page;
	b->n = n;
	if (q->dry_run) {
		/* Over every page: the states the action applies to, among those
		 * the filter asks for. */
		for (size_t k = 0; k < page->list->n_counts; k++) {
			int st = page->list->counts[k]->state;
			bool wanted = lq.n_states == 0;
			for (size_t s = 0; s < lq.n_states && !wanted; s++)
				wanted = (int)lq.states[s] == st;
			if (wanted && applies(q->op, st))
				b->applicable += page->list->counts[k]->count;
		}
	}
	for (size_t i = 0; i < n; i++) {
		sagawire__batch_item__init(&b->items[i]);
		b->items[i].saga_id = page->list->sagas[i]->saga_id;
		b->itemp[i] = &b->items[i];
	}
	b->left = n + 1;
	for (size_t i = 0; i < n; i++) {
		int st = page->list->sagas[i]->state;
		if (!applies(q->op, st)) {
			char why[160];
			snprintf(why, sizeof(why), "saga is %s: %s does not apply to it",
			    cm_saga_state_name(st), op_name(q->op));
			pthread_mutex_lock(&b->mu);
			skip(b, i, SAGA_ESTATE, why);
			b->left--;
			pthread_mutex_unlock(&b->mu);
		} else if (q->dry_run) {
			pthread_mutex_lock(&b->mu);
			b->items[i].done = true;
			b->items[i].state = (Sagawire__SagaState)st;
			b->left--;
			pthread_mutex_unlock(&b->mu);
		} else {
			send_item(c, b, i, q);
		}
	}
	if (!q->dry_run)
		slog_info("batch %s by %s: %zu sagas of this page sent their command",
		    op_name(q->op), r->auth.name[0] ? r->auth.name : "(auth off)", n);
	release(b); /* the sender's hold */
}
