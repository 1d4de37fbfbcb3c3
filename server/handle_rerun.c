/* handle_rerun: OperateRequest OP_RERUN. A finished saga is started again
 * with its input, as a new saga linked to it both ways. See handle_rerun.h.
 *
 * It runs in three steps, none holding the engine while it waits:
 *   1. on a reader: the old saga's row is read and checked (finished), and
 *      a StartRequest made from it goes to the engine as if a client had
 *      sent it (a request made here: rpc_req.reply_fn), with rerun_of set
 *      so the new saga's history starts with "rerun of OLD";
 *   2. when the start is answered (durable): unless the idempotency key
 *      matched a saga made before, the old saga's history gets "rerun as
 *      NEW", written on a reader;
 *   3. the operator is answered with the new saga's id.
 * Any sagad may do it: the new saga goes to one of its own shards, and
 * the old saga is final, so no engine writes its row (a parked one may be
 * taken back by an operator meanwhile: the line is then written only if
 * the row did not change since it was read, see note_old). */
#include "handle_rerun.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "engine.h"
#include "log.h"
#include "names.h"
#include "reader.h"
#include "saga_base.h"
#include "sm.h"
#include "store.h"
#include "wire.h"

#define SS(x) SAGAWIRE__SAGA_STATE__SAGA_##x
#define EV(x) SAGAWIRE__EVENT_TYPE__EVENT_##x

typedef struct rerun {
	rpc_req r;     /* the start made here; first, so reply_fn finds the rest */
	rpc_req *orig; /* the operator's request, answered at the end */
	int phase;     /* 1: the start is on its way; 2: noting it in the old saga */
	uint8_t old_id[16];
	char old_ids[WIRE_UUID_STRLEN], new_ids[WIRE_UUID_STRLEN];
	bool existing;
} rerun;

static void
reply_done(rerun *x)
{
	Sagawire__OperateResponse orr = SAGAWIRE__OPERATE_RESPONSE__INIT;
	/* A new saga has just started; one the key matched may be anywhere. */
	orr.state = x->existing ? SAGAWIRE__SAGA_STATE__SAGA_STATE_UNSPECIFIED : SS(RUNNING);
	orr.new_saga_id = x->new_ids;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_OPERATE;
	resp.operate = &orr;
	rpc_reply(x->orig, &resp);
}

/* Appends "rerun as NEW" to the old saga's stored history; the row is
 * written only if its revision is still the one read (an operator acting
 * on a parked saga meanwhile wins; the line is then lost, the link in the
 * new saga stays). */
static int
note_old(PGconn *c, rerun *x, char *err, size_t errlen)
{
	const char *v[1] = { (const char *)x->old_id };
	int lens[1] = { 16 }, fmts[1] = { 1 };
	PGresult *res = PQexecParams(
	    c, "SELECT steps, rev FROM sagas WHERE id = $1", 1, NULL, v, lens, fmts, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
		PQclear(res);
		return SAGA_EDB;
	}
	int e = 0;
	Sagawire__StoredSteps *ss =
	    (Sagawire__StoredSteps *)wire_unpack(&sagawire__stored_steps__descriptor,
		(const uint8_t *)PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, &e);
	uint32_t rev_be;
	memcpy(&rev_be, PQgetvalue(res, 0, 1), 4);
	PQclear(res);
	if (ss == NULL) {
		snprintf(err, errlen, "its stored steps do not decode");
		return SAGA_EPROTO;
	}
	/* Bounded like the engine's history: past the limit the oldest after
	 * the first ones make room. */
	size_t n = ss->n_events;
	Sagawire__Event **evs = calloc(n + 1, sizeof(*evs));
	Sagawire__Event ev = SAGAWIRE__EVENT__INIT;
	int rv = SAGA_ENOMEM;
	uint8_t *buf = NULL;
	if (evs == NULL)
		goto out;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (n < SM_HISTORY_MAX || i != SM_HISTORY_KEEP_FIRST)
			evs[k++] = ss->events[i];
	ev.at_us = wire_now_us();
	ev.type = EV(RERUN_AS);
	ev.detail = x->new_ids;
	evs[k++] = &ev;
	Sagawire__Event **was = ss->events;
	size_t was_n = ss->n_events;
	ss->events = evs;
	ss->n_events = k;
	size_t len = sagawire__stored_steps__get_packed_size(ss);
	if ((buf = malloc(len ? len : 1)) != NULL)
		sagawire__stored_steps__pack(ss, buf);
	ss->events = was;
	ss->n_events = was_n;
	if (buf == NULL)
		goto out;
	const char *uv[3] = { (const char *)x->old_id, (const char *)buf, (const char *)&rev_be };
	int ul[3] = { 16, (int)len, 4 }, uf[3] = { 1, 1, 1 };
	res = PQexecParams(
	    c, "UPDATE sagas SET steps = $2 WHERE id = $1 AND rev = $3", 3, NULL, uv, ul, uf, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
		rv = SAGA_EDB;
	} else {
		if (strcmp(PQcmdTuples(res), "1") != 0)
			slog_warn("rerun of saga %s as %s: the old saga changed meanwhile; its "
				  "history does not say it was rerun",
			    x->old_ids, x->new_ids);
		rv = 0;
	}
	PQclear(res);
out:
	free(buf);
	free(evs);
	wire_free(&ss->base);
	return rv;
}

/* Step 2, on a reader. */
static void
noted(PGconn *c, rpc_req *r)
{
	rerun *x = (rerun *)(void *)r;
	char err[512] = "";
	if (!x->existing && note_old(c, x, err, sizeof(err)) != 0)
		slog_warn("rerun of saga %s as %s: noting it in the old saga: %s", x->old_ids,
		    x->new_ids, err);
	else if (!x->existing)
		slog_info("saga %s rerun as %s", x->old_ids, x->new_ids);
	reply_done(x);
	free(x);
}

/* The start's answer (phase 1), or a reader refusing step 2 (shutdown). */
static void
start_replied(rpc_req *r, nng_msg *m)
{
	rerun *x = (rerun *)(void *)r;
	if (x->phase == 2) {
		/* The reader could not run step 2: the new saga exists. */
		nng_msg_free(m);
		reply_done(x);
		free(x);
		return;
	}
	int e = 0;
	Sagawire__Response *resp =
	    m ? wire_unpack_response(nng_msg_body(m), nng_msg_len(m), &e) : NULL;
	nng_msg_free(m);
	if (resp == NULL) {
		rpc_reply_error(x->orig, SAGA_ENOMEM, "rerun: the start could not be answered");
		free(x);
	} else if (resp->error != NULL) {
		rpc_reply_error(x->orig, (int)resp->error->code, "rerun of saga %s: %s", x->old_ids,
		    resp->error->message ? resp->error->message : "");
		free(x);
	} else if (resp->body_case != SAGAWIRE__RESPONSE__BODY_START ||
	    resp->start->saga_id == NULL || strlen(resp->start->saga_id) >= sizeof(x->new_ids)) {
		rpc_reply_error(x->orig, SAGA_EINTERNAL, "rerun: unexpected answer to the start");
		free(x);
	} else {
		snprintf(x->new_ids, sizeof(x->new_ids), "%s", resp->start->saga_id);
		x->existing = resp->start->existing;
		x->phase = 2;
		reader_submit(&x->r, noted);
	}
	wire_free(resp ? &resp->base : NULL);
}

typedef struct old_row {
	rpc_req *r;
	Sagawire__Request *start; /* made from the row; NULL if refused */
	bool answered;
} old_row;

static int
old_cb(const store_saga *s, void *arg)
{
	old_row *o = arg;
	Sagawire__OperateRequest *q = o->r->req->operate;
	if (s->state != SS(COMPLETED) && s->state != SS(COMPENSATED) && s->state != SS(FAILED) &&
	    s->state != SS(TERMINATED)) {
		rpc_reply_error(o->r, SAGA_ESTATE,
		    "saga %s is %s: only a finished saga (completed, compensated, failed or "
		    "terminated) can be rerun; cancel or terminate it first",
		    q->saga_id, cm_saga_state_name(s->state));
		o->answered = true;
		return 0;
	}
	Sagawire__Request req = SAGAWIRE__REQUEST__INIT;
	Sagawire__StartRequest st = SAGAWIRE__START_REQUEST__INIT;
	st.definition = (char *)s->definition;
	st.version = q->latest_version ? 0 : s->version;
	st.input.data = (uint8_t *)s->input;
	st.input.len = s->input_len;
	st.business_key = s->business_key ? (char *)s->business_key : (char *)"";
	st.idempotency_key = q->idempotency_key ? q->idempotency_key : (char *)"";
	req.body_case = SAGAWIRE__REQUEST__BODY_START;
	req.start = &st;
	size_t len = sagawire__request__get_packed_size(&req);
	uint8_t *buf = malloc(len ? len : 1);
	int e = 0;
	if (buf != NULL) {
		sagawire__request__pack(&req, buf);
		o->start = wire_unpack_request(buf, len, &e);
		free(buf);
	}
	if (o->start == NULL) {
		rpc_reply_error(o->r, SAGA_ENOMEM, "out of memory");
		o->answered = true;
	}
	return 0;
}

void
rerun_run(PGconn *c, rpc_req *r)
{
	Sagawire__OperateRequest *q = r->req->operate;
	uint8_t id[16];
	if (q->saga_id == NULL || wire_uuid_parse(q->saga_id, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "rerun: '%.64s' is not a saga id",
		    q->saga_id ? q->saga_id : "");
		return;
	}
	if (q->idempotency_key == NULL || strnlen(q->idempotency_key, 257) > 256) {
		rpc_reply_error(
		    r, SAGA_EINVAL, "rerun: the idempotency key is longer than 256 bytes");
		return;
	}
	old_row o = { .r = r };
	char err[512] = "";
	int rv = store_get(c, id, old_cb, &o, err, sizeof(err));
	if (rv == SAGA_ENOTFOUND) {
		rpc_reply_error(r, SAGA_ENOTFOUND, "no saga %s", q->saga_id);
		return;
	}
	if (rv != 0) {
		wire_free(o.start ? &o.start->base : NULL);
		rpc_reply_error(r, rv, "cannot read saga %s: %s", q->saga_id, err);
		return;
	}
	if (o.answered)
		return;
	rerun *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		wire_free(&o.start->base);
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	x->orig = r;
	x->phase = 1;
	memcpy(x->old_id, id, 16);
	wire_uuid_format(id, x->old_ids);
	x->r.req = o.start;
	x->r.reply_fn = start_replied;
	x->r.rerun_of = x->old_ids;
	/* As if a client had sent the start here (the operator was allowed to
	 * act on the old saga's definition: route.c checked). */
	if (engine_call(&x->r, engine_start, true) == ENGINE_NOT_HELD)
		reader_start_unknown(c, &x->r);
}
