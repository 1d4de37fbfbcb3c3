/* handle_participant: what participants send (WorkPoll, Report) and the
 * ParticipantsRequest about them. Polls and the participants' status are
 * dispatch's (dispatch.c); a report's outcomes go to the state machine. */
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "engine_int.h"
#include "failpoint.h"
#include "saga_base.h"

#define OC(x) SAGAWIRE__OUTCOME__OUTCOME_##x

int
engine_poll(rpc_req *r)
{
	dsp_poll(r);
	return ENGINE_ANSWERED;
}

int
engine_participants(rpc_req *r)
{
	dsp_participants(r);
	return ENGINE_ANSWERED;
}

int
engine_report(rpc_req *r)
{
	Sagawire__Report *q = r->req->report;
	uint32_t accepted = 0, ignored = 0, beats = 0;
	const char *who = dsp_pipe_participant(r->pipe_id);
	if (who == NULL)
		who = q->participant;
	for (size_t i = 0; i < q->n_results; i++) {
		Sagawire__Result *res = q->results[i];
		eng_saga *s;
		if (res->saga_id.len != 16 || (s = eng_find(res->saga_id.data)) == NULL ||
		    sm_saga_is_final(s->sm) || res->step_index >= s->sm->def->n_steps) {
			ignored++;
			continue;
		}
		const defn_step *ds = &s->sm->def->steps[res->step_index];
		if (who == NULL || strcmp(who, ds->participant) != 0) {
			elog(SLOG_WARN, s, ds, 0,
			    "result from '%s' for a step of participant '%s' ignored",
			    who ? who : "?", ds->participant);
			ignored++;
			continue;
		}
		int oc = res->outcome;
		if (oc != OC(HEARTBEAT) && oc != OC(SUCCESS) && oc != OC(RETRY) && oc != OC(FAIL)) {
			elog(SLOG_WARN, s, ds, 0, "result with invalid outcome %d ignored", oc);
			ignored++;
			continue;
		}
		const char *err = res->error;
		char clean[SM_MAX_ERROR];
		if (err && !eng_valid_text(err, SM_MAX_ERROR - 1)) {
			snprintf(clean, sizeof(clean),
			    "(participant sent an error that is not valid UTF-8)");
			err = clean;
		}
		sm_out o;
		sm_env e;
		eng_env(&e, &o);
		int got = sm_report(s->sm, &e, res->step_index, (uint8_t)res->kind, res->attempt,
		    oc, res->output.data, res->output.len, err);
		eng_apply(s, &o);
		if (got == SM_ACCEPTED)
			accepted++;
		else if (got == SM_BEAT)
			beats++;
		else
			ignored++;
	}
	if (accepted == 0) {
		/* Nothing to commit (heartbeats change no stored state). */
		Sagawire__ReportAck ack = SAGAWIRE__REPORT_ACK__INIT;
		ack.accepted = beats;
		ack.ignored = ignored;
		Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
		resp.body_case = SAGAWIRE__RESPONSE__BODY_ACK;
		resp.ack = &ack;
		rpc_reply(r, &resp);
		dsp_pump_pipe(r->pipe_id);
		return ENGINE_ANSWERED;
	}
	action a = { .type = A_ACK, .req = r, .a = accepted + beats, .b = ignored };
	eng_after_commit(&a);
	fp_kill(FP_BEFORE_REPORT_COMMIT);
	return ENGINE_ANSWERED;
}
