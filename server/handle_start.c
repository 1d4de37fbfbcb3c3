/* handle_start: StartRequest. A new saga is made, starts moving, and is
 * answered once its first state is durable (or, with wait_ms, once it is
 * final); a start with an idempotency key already in use is answered with
 * the saga that holds it. */
#include <stdlib.h>
#include <string.h>

#include "defn.h"
#include "engine.h"
#include "engine_int.h"
#include "failpoint.h"
#include "log.h"
#include "registry.h"
#include "saga_base.h"
#include "utf8.h"

#define SS(x) SAGAWIRE__SAGA_STATE__SAGA_##x

bool
eng_valid_text(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	return n <= max && cm_utf8_ok(s, n);
}

void
eng_reply_start(waiter *w, const char *id, uint32_t version, bool existing)
{
	Sagawire__StartResponse sr = SAGAWIRE__START_RESPONSE__INIT;
	sr.saga_id = (char *)id;
	sr.version = version;
	sr.existing = existing || w->existing;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_START;
	resp.start = &sr;
	if (!sr.existing && fp_hit(FP_DROP_START_REPLY)) {
		slog_warn("failpoint drop-start-reply: closing the connection of saga %s's start "
			  "instead of answering",
		    id);
		rpc_pipe_close(w->req->pipe_id);
	}
	rpc_reply(w->req, &resp);
}

/* A second start with an idempotency key held by s (in memory). */
static void
start_existing(rpc_req *r, eng_saga *s, uint32_t wait_ms)
{
	if (wait_ms > 0) {
		if (eng_add_final_waiter(s, r, true, true, wait_ms) != 0)
			rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	if (s->persisted) {
		Sagawire__StartResponse sr = SAGAWIRE__START_RESPONSE__INIT;
		sr.saga_id = s->sm->ids;
		sr.version = s->sm->def->version;
		sr.existing = true;
		Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
		resp.body_case = SAGAWIRE__RESPONSE__BODY_START;
		resp.start = &sr;
		rpc_reply(r, &resp);
		return;
	}
	/* Not durable yet: answered with the first start, at its commit. */
	waiter *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	w->req = r;
	w->existing = true;
	w->next = s->waiters;
	s->waiters = w;
}

/* defer: a definition not known here is looked up in the database first
 * (another sagad sharing it may have registered it): ENGINE_NOT_HELD. */
static int
start(rpc_req *r, bool defer)
{
	Sagawire__StartRequest *q = r->req->start;
	if (q->definition == NULL || *q->definition == '\0') {
		rpc_reply_error(r, SAGA_EINVAL, "start: no definition named");
		return ENGINE_ANSWERED;
	}
	if (!eng_valid_text(q->definition, 256) || !eng_valid_text(q->idempotency_key, 256) ||
	    !eng_valid_text(q->business_key, 256)) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "start: definition, idempotency_key and business_key must be UTF-8 text of at "
		    "most 256 bytes");
		return ENGINE_ANSWERED;
	}
	if (q->input.len > E.cfg->max_message_bytes) {
		rpc_reply_error(r, SAGA_ETOOBIG, "start: input of %zu bytes exceeds %u",
		    q->input.len, E.cfg->max_message_bytes);
		return ENGINE_ANSWERED;
	}
	wire_trace given;
	bool has_trace = q->traceparent[0] != '\0';
	if (has_trace && wire_trace_parse(q->traceparent, &given) != 0) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "start: traceparent \"%.64s\" is not a W3C traceparent "
		    "(00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lower case); leave it "
		    "empty and sagad starts a trace",
		    q->traceparent);
		return ENGINE_ANSWERED;
	}
	const defn_saga *def = registry_get(q->definition, q->version);
	if (def == NULL && defer)
		return ENGINE_NOT_HELD;
	if (def == NULL) {
		if (q->version && registry_get(q->definition, 0))
			rpc_reply_error(r, SAGA_ENOTFOUND, "saga definition %s has no version %u",
			    q->definition, q->version);
		else
			rpc_reply_error(r, SAGA_ENOTFOUND,
			    "unknown saga definition %s (register it with `sagactl register FILE`)",
			    q->definition);
		return ENGINE_ANSWERED;
	}
	/* The definition may name an input field as the business key. */
	char bk[257] = "";
	int bkrv = q->business_key[0] || def->business_key == NULL
	    ? 0
	    : defn_business_key(def, q->input.data, q->input.len, bk, sizeof(bk));
	if (bkrv == SAGA_ETOOBIG) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "start: the input's business key field %s is longer than 256 bytes; "
		    "a business key may be at most 256 bytes (give a shorter one with the start)",
		    def->business_key);
		return ENGINE_ANSWERED;
	}
	if (bkrv != 0) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "start: the input is not a valid %s, so its business key field %s cannot be "
		    "read (a string of at most 256 bytes or an integer); send the serialized "
		    "message, or give the business key with the start",
		    def->input_type, def->business_key);
		return ENGINE_ANSWERED;
	}
	bool has_key = q->idempotency_key[0] != '\0';
	if (has_key) {
		eng_saga *s = eng_find_key(q->idempotency_key);
		if (s != NULL) {
			start_existing(r, s, q->wait_ms);
			return ENGINE_ANSWERED;
		}
	}
	if (E.n_sagas >= (size_t)E.cfg->max_pending * 16) {
		rpc_reply_error(
		    r, SAGA_EBUSY, "too many sagas in flight (%zu); try again later", E.n_sagas);
		return ENGINE_ANSWERED;
	}
	/* Memory is bounded in bytes, not only in sagas: a thousand 1 MiB
	 * inputs waiting for a participant would hold a gigabyte. */
	uint64_t limit = (uint64_t)E.cfg->max_saga_memory_mb << 20;
	if (E.saga_bytes + q->input.len > limit) {
		rpc_reply_error(r, SAGA_EBUSY,
		    "sagad holds %llu MiB of unfinished sagas' inputs (max-saga-memory-mb %u); "
		    "try again once some finish",
		    (unsigned long long)(E.saga_bytes >> 20), E.cfg->max_saga_memory_mb);
		return ENGINE_ANSWERED;
	}
	int shard = eng_pick_shard();
	if (shard < 0) {
		rpc_reply_error(r, SAGA_EBUSY,
		    "this sagad holds no shard yet (it is starting, or other instances hold them "
		    "all); try again, or another instance");
		return ENGINE_ANSWERED;
	}
	eng_saga *s = eng_saga_new(def);
	waiter *w = calloc(1, sizeof(*w));
	if (s == NULL || w == NULL)
		goto nomem;
	wire_uuid_v7(s->id);
	/* The saga lives in one of this sagad's shards: the low bits of its
	 * id's last byte (random in a UUIDv7) say which. */
	s->id[15] = (uint8_t)((s->id[15] & ~(SHD_N - 1)) | (unsigned)shard);
	wire_uuid_format(s->id, s->sm->ids);
	if (has_trace)
		s->trace = given;
	else
		wire_trace_new(s->id, &s->trace); /* trace id = saga id: easy to find */
	s->sm->created_us = s->updated_us = wire_now_us();
	if (has_key && (s->idem_key = strdup(q->idempotency_key)) == NULL)
		goto nomem;
	const char *bkey = q->business_key[0] ? q->business_key : bk;
	if (bkey[0] && (s->business_key = strdup(bkey)) == NULL)
		goto nomem;
	if (q->input.len && (s->input = malloc(q->input.len)) == NULL)
		goto nomem;
	if (q->input.len)
		memcpy(s->input, q->input.data, q->input.len);
	s->input_len = q->input.len;
	if (eng_insert(s) != 0)
		goto nomem;
	uint32_t deadline_ms = q->deadline_ms ? q->deadline_ms : def->deadline_ms;
	if (deadline_ms)
		s->sm->deadline_us = s->sm->created_us + (int64_t)deadline_ms * 1000;
	if (q->wait_ms > 0) {
		/* Answered when final (and durable) instead of when started. */
		free(w);
		w = NULL;
		if (eng_add_final_waiter(s, r, true, false, q->wait_ms) != 0) {
			eng_unlink(s);
			goto nomem;
		}
	} else {
		w->req = r;
		s->waiters = w;
	}
	mx_named *dst = mx_table_get(&E.def_stats, def->name);
	if (dst)
		dst->started++;
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	sm_start(s->sm, &e);
	if (r->rerun_of != NULL)
		sm_note(s->sm, &e, SAGAWIRE__EVENT_TYPE__EVENT_RERUN_OF, r->rerun_of);
	eng_apply(s, &o);
	return ENGINE_ANSWERED;
nomem:
	free(w);
	eng_saga_free(s);
	rpc_reply_error(r, SAGA_ENOMEM, "out of memory starting a saga");
	return ENGINE_ANSWERED;
}

int
engine_start(rpc_req *r)
{
	return start(r, true);
}

int
engine_start_refreshed(rpc_req *r)
{
	return start(r, false);
}
