/* handle_participant: what participants send (WorkPoll, Report) and the
 * ParticipantsRequest about them. Polls and the participants' status are
 * dispatch's (dispatch.c); a report's outcomes go to the state machine. */
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "engine_int.h"
#include "failpoint.h"
#include "saga_base.h"
#include "token.h"

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

/* ---- refused results -------------------------------------------------------------------- */

/* Why a result was refused (the metric's label values: a fixed set, so a
 * forger cannot make series). */
enum { REFUSED_TOKEN = 0, REFUSED_PARTICIPANT, REFUSED_N };
static const char *const refused_label[REFUSED_N] = { "token", "participant" };
static uint64_t refused_total[REFUSED_N]; /* under E.mu */

/* At most LOG_BURST lines about refused results per LOG_WINDOW_MS; the
 * rest are counted and said in one line when the next window opens, so a
 * flood of forged reports cannot flood the log. */
#define LOG_BURST     10
#define LOG_WINDOW_MS 10000
static struct {
	int64_t window_ms;
	uint32_t lines, suppressed;
} rl; /* under E.mu */

static bool
refusal_may_log(void)
{
	int64_t now = wire_mono_ms();
	if (now - rl.window_ms >= LOG_WINDOW_MS) {
		if (rl.suppressed > 0)
			slog_warn("%u more refused result(s) in the last %d s not logged "
				  "(sagad_reports_refused_total counts them all)",
			    rl.suppressed, LOG_WINDOW_MS / 1000);
		rl.window_ms = now;
		rl.lines = rl.suppressed = 0;
	}
	if (rl.lines >= LOG_BURST) {
		rl.suppressed++;
		return false;
	}
	rl.lines++;
	return true;
}

/* A result that proves no dispatch to its sender: counted, and logged with
 * who sent it, about what, and why. Nothing else happens. */
static void
refuse(int why, const char *sender, const Sagawire__Result *res, const char *step_name,
    const char *detail)
{
	refused_total[why]++;
	if (SLOG_WARN > slog_level || !refusal_may_log())
		return;
	char ids[WIRE_UUID_STRLEN] = "(malformed id)";
	if (res->saga_id.len == 16)
		wire_uuid_format(res->saga_id.data, ids);
	char step[160];
	if (step_name != NULL)
		snprintf(step, sizeof(step), "%s", step_name);
	else
		snprintf(step, sizeof(step), "#%u", res->step_index);
	static const char *const oc_name[] = { "?", "success", "retryable error", "failure",
		"heartbeat" };
	unsigned oc = (unsigned)res->outcome < 5 ? (unsigned)res->outcome : 0;
	slog_ctx c = { .saga = ids, .step = step, .participant = sender, .attempt = res->attempt };
	slog_write_ctx(SLOG_WARN, &c, "%s %s refused: %s",
	    res->kind == SAGAWIRE__STEP_KIND__STEP_COMPENSATION ? "compensation" : "action",
	    oc_name[oc], detail);
}

void
eng_report_metrics(mx_buf *b)
{
	mx_printf(b,
	    "# HELP sagad_reports_refused_total Results refused because they proved no "
	    "dispatch to their sender (reason: token = missing or wrong dispatch token, "
	    "participant = another participant's step).\n"
	    "# TYPE sagad_reports_refused_total counter\n");
	for (int i = 0; i < REFUSED_N; i++)
		mx_printf(b, "sagad_reports_refused_total{reason=\"%s\"} %llu\n", refused_label[i],
		    (unsigned long long)refused_total[i]);
}

/* ---- reports ------------------------------------------------------------------------------ */

/*
 * Each result is believed only if it proves a dispatch to its sender: it
 * carries the token of the attempt it names (token.h), and that step is
 * the sender's (Report.participant, and the participant the connection
 * polls as, if it does). Otherwise it is refused: counted, logged, and
 * nothing changes. The token is checked first, so a forged result is
 * refused whether or not its saga is still running; a result that proves
 * its dispatch but comes late (the saga moved on) is ignored, as before.
 */
int
engine_report(rpc_req *r)
{
	Sagawire__Report *q = r->req->report;
	uint32_t accepted = 0, ignored = 0, beats = 0, refused = 0;
	const char *bound = dsp_pipe_participant(r->pipe_id);
	const char *claimed = q->participant && eng_valid_text(q->participant, 128)
	    ? q->participant
	    : "(invalid name)";
	for (size_t i = 0; i < q->n_results; i++) {
		Sagawire__Result *res = q->results[i];
		if (res->saga_id.len != 16 ||
		    !tok_check(res->saga_id.data, res->step_index, (uint8_t)res->kind, res->attempt,
			res->token.data, res->token.len)) {
			refuse(REFUSED_TOKEN, claimed, res, NULL,
			    res->token.len == 0
				? "it carries no dispatch token"
				: "its token is not the one sent with that attempt");
			refused++;
			continue;
		}
		eng_saga *s;
		if ((s = eng_find(res->saga_id.data)) == NULL || sm_saga_is_final(s->sm) ||
		    res->step_index >= s->sm->def->n_steps) {
			ignored++;
			continue;
		}
		const defn_step *ds = &s->sm->def->steps[res->step_index];
		if (strcmp(claimed, ds->participant) != 0 ||
		    (bound != NULL && strcmp(bound, ds->participant) != 0)) {
			char why[384];
			snprintf(why, sizeof(why), "the step belongs to participant '%s'%s%s%s",
			    ds->participant, bound ? " (the connection polls as '" : "",
			    bound ? bound : "", bound ? "')" : "");
			refuse(REFUSED_PARTICIPANT, claimed, res, ds->name, why);
			refused++;
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
		if (got == SM_ACCEPTED) {
			accepted++;
			eng_count_outcome(s, res->step_index, (uint8_t)res->kind,
			    oc == SAGAWIRE__OUTCOME__OUTCOME_SUCCESS    ? ENG_OC_SUCCESS
				: oc == SAGAWIRE__OUTCOME__OUTCOME_FAIL ? ENG_OC_FAILURE
									: ENG_OC_RETRY);
		} else if (got == SM_BEAT)
			beats++;
		else
			ignored++;
	}
	if (accepted == 0) {
		/* Nothing to commit (heartbeats change no stored state). */
		Sagawire__ReportAck ack = SAGAWIRE__REPORT_ACK__INIT;
		ack.accepted = beats;
		ack.ignored = ignored;
		ack.refused = refused;
		Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
		resp.body_case = SAGAWIRE__RESPONSE__BODY_ACK;
		resp.ack = &ack;
		rpc_reply(r, &resp);
		dsp_pump_pipe(r->pipe_id);
		return ENGINE_ANSWERED;
	}
	action a = { .type = A_ACK, .req = r, .a = accepted + beats, .b = ignored, .c = refused };
	eng_after_commit(&a);
	fp_kill(FP_BEFORE_REPORT_COMMIT);
	return ENGINE_ANSWERED;
}
