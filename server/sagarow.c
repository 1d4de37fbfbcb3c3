/* sagarow: a saga's state <-> its stored StoredSteps. See sagarow.h. */
#include "sagarow.h"

#include <stdlib.h>
#include <string.h>

#include "saga_base.h"

int
sagarow_pack(const sm_saga *s, const wire_trace *trace, uint8_t **out, size_t *len)
{
	uint32_t n = s->def->n_steps;
	Sagawire__StoredStep ss[DEFN_MAX_STEPS];
	Sagawire__StoredStep *pp[DEFN_MAX_STEPS];
	for (uint32_t i = 0; i < n; i++) {
		const sm_step *st = &s->steps[i];
		sagawire__stored_step__init(&ss[i]);
		ss[i].state = (Sagawire__StepState)st->state;
		ss[i].attempts = st->attempts;
		ss[i].comp_attempts = st->comp_attempts;
		ss[i].started_us = st->started_us;
		ss[i].finished_us = st->finished_us;
		ss[i].comp_started_us = st->comp_started_us;
		ss[i].comp_finished_us = st->comp_finished_us;
		ss[i].last_error = st->last_error ? st->last_error : (char *)"";
		ss[i].result.data = st->result;
		ss[i].result.len = st->result_len;
		ss[i].completion_seq = st->completion_seq;
		ss[i].next_attempt_us = st->next_attempt_us;
		ss[i].uncertain = st->uncertain;
		ss[i].attempt_base = st->attempt_base;
		ss[i].comp_attempt_base = st->comp_attempt_base;
		pp[i] = &ss[i];
	}
	Sagawire__StoredSteps m = SAGAWIRE__STORED_STEPS__INIT;
	m.n_steps = n;
	m.steps = pp;
	m.next_seq = s->next_seq;
	m.deadline_us = s->deadline_us;
	char tp[WIRE_TRACEPARENT_LEN + 1];
	wire_trace_format(trace, tp);
	m.traceparent = tp;
	Sagawire__Event evs[SM_HISTORY_MAX], *evp[SM_HISTORY_MAX];
	for (uint32_t i = 0; i < s->n_ev; i++) {
		sagawire__event__init(&evs[i]);
		evs[i].at_us = s->ev[i].at_us;
		evs[i].type = (Sagawire__EventType)s->ev[i].type;
		evs[i].step = s->ev[i].step;
		evs[i].attempt = s->ev[i].attempt;
		evs[i].detail = s->ev[i].detail;
		evp[i] = &evs[i];
	}
	m.n_events = s->n_ev;
	m.events = evp;
	size_t sz = sagawire__stored_steps__get_packed_size(&m);
	uint8_t *buf = malloc(sz ? sz : 1);
	if (buf == NULL)
		return SAGA_ENOMEM;
	sagawire__stored_steps__pack(&m, buf);
	*out = buf;
	*len = sz;
	return 0;
}

int
sagarow_unpack(const store_saga *row, sm_saga *s, wire_trace *trace)
{
	const defn_saga *def = s->def;
	int err = 0, rv = SAGA_ENOMEM;
	Sagawire__StoredSteps *ss = (Sagawire__StoredSteps *)wire_unpack(
	    &sagawire__stored_steps__descriptor, row->steps, row->steps_len, 0, &err);
	if (ss == NULL || ss->n_steps != def->n_steps ||
	    row->state < SAGAWIRE__SAGA_STATE__SAGA_RUNNING ||
	    row->state > SAGAWIRE__SAGA_STATE__SAGA_TERMINATED) {
		wire_free(ss ? &ss->base : NULL);
		return SAGA_EPROTO;
	}
	for (uint32_t i = 0; i < def->n_steps; i++) {
		if (ss->steps[i]->state < SAGAWIRE__STEP_STATE__STEP_PENDING ||
		    ss->steps[i]->state > SAGAWIRE__STEP_STATE__STEP_COMP_FAILED) {
			wire_free(&ss->base);
			return SAGA_EPROTO;
		}
	}
	wire_uuid_format(row->id, s->ids);
	/* Read from storage, not moved: sm_saga_move is for transitions. */
	s->state = (uint8_t)row->state;
	s->created_us = row->created_us;
	s->next_seq = ss->next_seq ? ss->next_seq : 1;
	s->deadline_us = ss->deadline_us;
	if (ss->traceparent == NULL || wire_trace_parse(ss->traceparent, trace) != 0)
		wire_trace_new(row->id, trace); /* a row from before trace context */
	if (ss->n_events > 0) {
		size_t ne = ss->n_events < SM_HISTORY_MAX ? ss->n_events : SM_HISTORY_MAX;
		if ((s->ev = calloc(ne, sizeof(*s->ev))) == NULL)
			goto out;
		s->cap_ev = (uint32_t)ne;
		for (size_t i = ss->n_events - ne; i < ss->n_events; i++) {
			const Sagawire__Event *e = ss->events[i];
			char *d = strdup(e->detail ? e->detail : "");
			if (d == NULL)
				goto out;
			s->ev[s->n_ev++] = (sm_event) { .at_us = e->at_us,
				.type = (uint8_t)e->type,
				.step = (uint16_t)e->step,
				.attempt = e->attempt,
				.detail = d };
		}
	}
	if (row->error && *row->error && (s->error = strdup(row->error)) == NULL)
		goto out;
	for (uint32_t i = 0; i < def->n_steps; i++) {
		const Sagawire__StoredStep *x = ss->steps[i];
		sm_step *st = &s->steps[i];
		st->state = (uint8_t)x->state;
		st->attempts = x->attempts;
		st->comp_attempts = x->comp_attempts;
		st->started_us = x->started_us;
		st->finished_us = x->finished_us;
		st->comp_started_us = x->comp_started_us;
		st->comp_finished_us = x->comp_finished_us;
		st->next_attempt_us = x->next_attempt_us;
		st->completion_seq = x->completion_seq;
		st->uncertain = x->uncertain;
		/* A base never passes the attempts made (a row of another
		 * writer's making is not trusted to say so). */
		st->attempt_base = x->attempt_base <= x->attempts ? x->attempt_base : x->attempts;
		st->comp_attempt_base = x->comp_attempt_base <= x->comp_attempts
		    ? x->comp_attempt_base
		    : x->comp_attempts;
		if (x->last_error && *x->last_error &&
		    (st->last_error = strdup(x->last_error)) == NULL)
			goto out;
		if (x->result.len) {
			if ((st->result = malloc(x->result.len)) == NULL)
				goto out;
			memcpy(st->result, x->result.data, x->result.len);
			st->result_len = x->result.len;
		}
	}
	rv = 0;
out:
	wire_free(&ss->base);
	return rv;
}
