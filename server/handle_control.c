/* handle_control: what clients and operators do to a running or parked
 * saga: CancelRequest and OperateRequest (retry, skip, terminate, force).
 * This is the one entry point for operator actions, whoever received them
 * (the nng RPC, the HTTP API, another sagad through forward.c): it takes
 * an rpc_req whose OperateRequest names the saga, the action and its
 * arguments, and rpc_req.auth the principal. All are answered
 * after the commit of what they changed. A saga not in memory is handed
 * back to the router (ENGINE_NOT_HELD), which asks a reader. */
#include <string.h>

#include "defn.h"
#include "engine.h"
#include "engine_int.h"
#include "saga_base.h"

#define SS(x) SAGAWIRE__SAGA_STATE__SAGA_##x

int
engine_cancel(rpc_req *r)
{
	Sagawire__CancelRequest *q = r->req->cancel;
	uint8_t id[16];
	if (wire_uuid_parse(q->saga_id, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "cancel: '%.64s' is not a saga id", q->saga_id);
		return ENGINE_ANSWERED;
	}
	eng_saga *s = eng_find(id);
	if (s == NULL || sm_saga_is_final(s->sm))
		return ENGINE_NOT_HELD; /* the reader tells unknown from finished */
	const char *why = q->reason && *q->reason ? q->reason : "no reason given";
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	sm_cancel(s->sm, &e, eng_valid_text(why, 512) ? why : "(invalid text)");
	eng_apply(s, &o);
	action a = { .type = A_CANCEL_REPLY, .req = r, .a = s->sm->state };
	memcpy(a.id, s->id, 16);
	eng_after_commit(&a);
	eng_touch(s); /* make sure a batch carries the reply */
	return ENGINE_ANSWERED;
}

/* Who asked, for the history: the authenticated principal; for a command
 * forwarded by another sagad, the one that sagad authenticated (it wrote
 * it into the request: forward.c); "" with auth off. */
static const char *
operator_of(const rpc_req *r)
{
	const char *p = r->forwarded ? r->req->operate->principal : r->auth.name;
	return p != NULL && eng_valid_text(p, 128) ? p : "";
}

int
eng_operate(rpc_req *r, eng_saga *s)
{
	Sagawire__OperateRequest *q = r->req->operate;
	bool whole = q->op == SAGAWIRE__OPERATION__OP_TERMINATE;
	int idx = whole ? 0 : q->step ? defn_step_index(s->sm->def, q->step) : -1;
	if (idx < 0) {
		rpc_reply_error(r, SAGA_EINVAL, "saga %s (%s) has no step '%.128s'", s->sm->ids,
		    s->sm->def->name, q->step ? q->step : "");
		return -1;
	}
	const char *reason = q->reason && *q->reason ? q->reason : "";
	if (!eng_valid_text(reason, 512)) {
		rpc_reply_error(
		    r, SAGA_EINVAL, "the reason must be UTF-8 text of at most 512 bytes");
		return -1;
	}
	char err[512];
	sm_out o;
	sm_env e;
	eng_env(&e, &o);
	int rv;
	switch (q->op) {
	case SAGAWIRE__OPERATION__OP_TERMINATE:
		rv = sm_terminate(s->sm, &e, operator_of(r), reason, err, sizeof(err));
		break;
	case SAGAWIRE__OPERATION__OP_FORCE_SUCCEEDED:
	case SAGAWIRE__OPERATION__OP_FORCE_COMPENSATED:
		rv = sm_force(s->sm, &e, q->op, (uint32_t)idx, q->result.data, q->result.len,
		    operator_of(r), reason, err, sizeof(err));
		break;
	default:
		rv = sm_operate(s->sm, &e, q->op, (uint32_t)idx, reason, err, sizeof(err));
	}
	eng_apply(s, &o);
	if (rv != 0) {
		rpc_reply_error(r, rv, "%s", err);
		return -1;
	}
	action a = { .type = A_OPERATE_REPLY, .req = r, .a = s->sm->state };
	memcpy(a.id, s->id, 16);
	eng_after_commit(&a);
	eng_touch(s);
	return 0;
}

int
engine_operate(rpc_req *r)
{
	Sagawire__OperateRequest *q = r->req->operate;
	uint8_t id[16];
	if (q->saga_id == NULL || wire_uuid_parse(q->saga_id, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "operate: '%.64s' is not a saga id",
		    q->saga_id ? q->saga_id : "");
		return ENGINE_ANSWERED;
	}
	if (q->op == SAGAWIRE__OPERATION__OP_RERUN)
		return ENGINE_NOT_HELD; /* a reader does it (handle_rerun.c) */
	eng_saga *s = eng_find(id);
	if (s == NULL || (sm_saga_is_final(s->sm) && s->sm->state != SS(FAILED)))
		return ENGINE_NOT_HELD; /* parked sagas are not held in memory */
	eng_operate(r, s);
	return ENGINE_ANSWERED;
}
