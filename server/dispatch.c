/* dispatch: queues, polls, connections, steps in flight, breakers. See
 * dispatch.h. */
#include "dispatch.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failpoint.h"
#include "log.h"
#include "relay.h"
#include "saga_base.h"
#include "utf8.h"

static struct {
	const cfg *cfg;
	timerq *tq;
	dsp_ops ops;
	breaker_cfg brk;
	bool stop;
	mx_table latency; /* step latency by participant */
	tq_node sweep_t;  /* forgets participants gone longer than participant_series_ttl_ms */
} D;

static _Atomic uint64_t stat_dispatched, stat_redelivered;

static void pump(relay_part *p);

/* ---- timers ---------------------------------------------------------------------- */

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Answers a connection's parked poll with an empty batch: the participant
 * polls again (idle timeout, a replaced poll, shutdown). */
static void
answer_poll_empty(relay_pipe *pp)
{
	Sagawire__WorkBatch wb = SAGAWIRE__WORK_BATCH__INIT;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_WORK;
	resp.work = &wb;
	rpc_reply(pp->poll, &resp);
	pp->poll = NULL;
}

/* A parked poll waited poll_timeout_ms: answer it empty (a keep-alive). */
static void
poll_expired(tq_node *t)
{
	relay_pipe *pp = container_of(t, relay_pipe, poll_t);
	if (pp->poll)
		answer_poll_empty(pp);
}

/* A breaker's cool-off is over: probe. */
static void
breaker_expired(tq_node *t)
{
	pump(container_of(t, relay_part, brk_t));
}

/* How often participants are looked at for expiry: a tenth of the TTL,
 * between 100 ms and a minute. */
static int64_t
sweep_period_ms(void)
{
	int64_t p = D.cfg->participant_series_ttl_ms / 10;
	return p < 100 ? 100 : p > 60000 ? 60000 : p;
}

/*
 * Participants are known by the names their polls (and the definitions)
 * give, and each has series in /metrics and a line in ParticipantsRequest.
 * One that has had no connection for participant_series_ttl_ms and is owed
 * no step is forgotten, so that names that come and go (renamed services,
 * typos, a flood of made-up names) do not add up for ever. Its breaker
 * history goes with it; it all starts afresh if it connects again.
 */
static void
sweep_fired(tq_node *t)
{
	int64_t now = wire_mono_ms(), ttl = D.cfg->participant_series_ttl_ms;
	for (relay_part *p = relay_part_first(), *next; p; p = next) {
		next = relay_part_next(p);
		if (p->n_pipes > 0) {
			p->idle_since_ms = 0;
			continue;
		}
		if (p->idle_since_ms == 0) {
			p->idle_since_ms = now;
			continue;
		}
		if (p->q_len > 0 || now - p->idle_since_ms < ttl)
			continue;
		slog_info("participant %s: no connection for %lld s: forgotten (its metrics and "
			  "status go until it connects again)",
		    p->name, (long long)((now - p->idle_since_ms) / 1000));
		tq_cancel(D.tq, &p->brk_t);
		mx_table_remove(&D.latency, p->name);
		relay_part_remove(p);
	}
	tq_arm_must(D.tq, t, now + sweep_period_ms());
}

/* ---- set-up ------------------------------------------------------------------------ */

void
dsp_init(const cfg *c, timerq *tq, const dsp_ops *ops)
{
	D.cfg = c;
	D.tq = tq;
	D.ops = *ops;
	D.stop = false;
	relay_set_timer_fns(poll_expired, breaker_expired);
	relay_init();
	tq_node_init(&D.sweep_t, sweep_fired);
	tq_arm_must(D.tq, &D.sweep_t, wire_mono_ms() + sweep_period_ms());
}

void
dsp_fini(void)
{
	tq_cancel(D.tq, &D.sweep_t);
	mx_table_clear(&D.latency);
	relay_fini();
}

void
dsp_set_breaker(const breaker_cfg *b)
{
	D.brk = *b;
}

/* ---- sending ------------------------------------------------------------------------ */

static void
link_flight(relay_pipe *pp, dsp_flight *f, int64_t now)
{
	f->pipe_id = pp->id;
	f->prev = NULL;
	f->next = pp->inflight_head;
	if (f->next)
		f->next->prev = f;
	pp->inflight_head = f;
	pp->inflight++;
	(void)now;
	f->sent_us = wire_mono_us();
}

static void
unlink_flight(dsp_flight *f)
{
	if (f->pipe_id == 0)
		return;
	relay_pipe *pp = relay_pipe_get(f->pipe_id, 0);
	if (pp != NULL) {
		if (f->prev)
			f->prev->next = f->next;
		else
			pp->inflight_head = f->next;
		if (f->next)
			f->next->prev = f->prev;
		if (pp->inflight > 0)
			pp->inflight--;
	}
	f->prev = f->next = NULL;
	f->pipe_id = 0;
}

/* Sends as many queued steps of participant p as its connections can take. */
static void
pump(relay_part *p)
{
	enum { MAXB = 4096 };
	if (D.stop)
		return; /* shutting down: what is queued stays owed for the next start */
	while (p->q_len > 0) {
		uint32_t allow = breaker_allow(&p->brk, &D.brk, wire_mono_ms());
		if (allow == 0) {
			if (p->brk.state == BRK_OPEN)
				tq_arm_must(D.tq, &p->brk_t, p->brk.open_until_ms);
			return;
		}
		relay_pipe *pp = relay_next_pipe(p);
		if (pp == NULL)
			return;
		uint32_t room = pp->capacity - pp->inflight;
		if (room > allow)
			room = allow;
		if (room > D.cfg->dispatch_batch)
			room = D.cfg->dispatch_batch;
		if (room > MAXB)
			room = MAXB;
		Sagawire__Dispatch *ds = calloc(room, sizeof(*ds));
		Sagawire__Dispatch **dp = calloc(room, sizeof(*dp));
		dsp_text *keys = calloc(room, sizeof(*keys));
		Sagawire__StepResult *res = calloc((size_t)room * DSP_MAX_RESULTS, sizeof(*res));
		Sagawire__StepResult **resp = calloc((size_t)room * DSP_MAX_RESULTS, sizeof(*resp));
		dsp_flight **sent = calloc(room, sizeof(*sent));
		dsp_item *items = calloc(room, sizeof(*items));
		if (!ds || !dp || !keys || !res || !resp || !sent || !items) {
			slog_error("out of memory building a work batch; will retry");
			free(ds), free(dp), free(keys), free(res), free(resp), free(sent),
			    free(items);
			return;
		}
		uint32_t n = 0;
		size_t bytes = 0;
		/* Keep a batch under what the connection accepts, else nng drops
		 * the connection and the steps bounce back forever. */
		size_t limit = D.cfg->max_message_bytes;
		if (pp->max_bytes != 0 && pp->max_bytes < limit)
			limit = (size_t)pp->max_bytes;
		relay_item it;
		while (n < room && relay_pop(p, &it)) {
			dsp_item di = {
				.gen = it.gen, .step = it.step, .kind = it.kind, .dup = it.dup
			};
			memcpy(di.id, it.id, 16);
			dsp_flight *f = D.ops.claim(&di, &ds[n], &keys[n],
			    &res[(size_t)n * DSP_MAX_RESULTS], &resp[(size_t)n * DSP_MAX_RESULTS]);
			if (f == NULL)
				continue;
			size_t sz = sagawire__dispatch__get_packed_size(&ds[n]);
			if (n > 0 && bytes + sz + 64 > limit) {
				/* Keep messages under the size peers accept:
				 * this one goes first in the next batch. */
				relay_push(p, &it);
				break;
			}
			bytes += sz + 8;
			dp[n] = &ds[n];
			sent[n] = it.dup ? NULL : f; /* a duplicate changes no state */
			items[n] = di;
			n++;
		}
		if (n > 0) {
			Sagawire__WorkBatch wb = SAGAWIRE__WORK_BATCH__INIT;
			wb.n_dispatches = n;
			wb.dispatches = dp;
			Sagawire__Response resp_msg = SAGAWIRE__RESPONSE__INIT;
			resp_msg.body_case = SAGAWIRE__RESPONSE__BODY_WORK;
			resp_msg.work = &wb;
			rpc_req *poll = pp->poll;
			pp->poll = NULL;
			tq_cancel(D.tq, &pp->poll_t);
			int64_t t = wire_mono_ms();
			for (uint32_t k = 0; k < n; k++) {
				if (sent[k] == NULL)
					continue;
				if (fp_hit(FP_DUP_DISPATCH)) {
					relay_item dup = { .gen = items[k].gen,
						.step = items[k].step,
						.kind = items[k].kind,
						.dup = 1 };
					memcpy(dup.id, items[k].id, 16);
					relay_push(p, &dup);
				}
				link_flight(pp, sent[k], t);
				D.ops.sent(sent[k]);
			}
			atomic_fetch_add(&stat_dispatched, n);
			if (p->brk.state == BRK_HALF_OPEN)
				slog_info(
				    "participant %s: circuit breaker half-open: probing with one "
				    "step",
				    p->name);
			breaker_dispatched(&p->brk, n);
			slog_debug(
			    "participant %s: %u step(s) sent on connection %u", p->name, n, pp->id);
			rpc_reply(poll, &resp_msg);
			fp_kill(FP_AFTER_DISPATCH);
		}
		free(ds), free(dp), free(keys), free(res), free(resp), free(sent), free(items);
		if (n == 0)
			return;
	}
}

void
dsp_pump_all(void)
{
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		if (p->q_len > 0)
			pump(p);
}

void
dsp_pump_pipe(uint32_t pipe_id)
{
	relay_pipe *pp = relay_pipe_get(pipe_id, 0);
	if (pp && pp->part)
		pump(pp->part);
}

void
dsp_queue(const char *participant, const dsp_item *di)
{
	relay_part *p = relay_part_get(participant, 1);
	relay_item it = { .gen = di->gen,
		.step = di->step,
		.kind = di->kind,
		.dup = di->dup,
		.queued_ms = wire_mono_ms() };
	memcpy(it.id, di->id, 16);
	if (p == NULL || relay_push(p, &it) != 0) {
		slog_error("out of memory queueing a dispatch; aborting");
		abort();
	}
}

/* ---- polls and connections ------------------------------------------------------------ */

static bool
valid_text(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	return n <= max && cm_utf8_ok(s, n);
}

void
dsp_poll(rpc_req *r)
{
	Sagawire__WorkPoll *q = r->req->poll;
	if (q->participant == NULL || q->participant[0] == '\0' ||
	    !valid_text(q->participant, 128)) {
		rpc_reply_error(
		    r, SAGA_EINVAL, "poll: participant name must be 1-128 bytes of UTF-8");
		return;
	}
	if (q->capacity == 0) {
		rpc_reply_error(r, SAGA_EINVAL, "poll: capacity must be at least 1");
		return;
	}
	if (relay_pipe_get(r->pipe_id, 0) == NULL && !rpc_pipe_alive(r->pipe_id)) {
		/* Its close was already handled: parking the poll here would
		 * make a connection nobody can reach. */
		rpc_reply_error(r, SAGA_ECLOSED, "connection closed");
		return;
	}
	relay_pipe *pp = relay_pipe_get(r->pipe_id, 1);
	relay_part *p = relay_part_get(q->participant, 1);
	if (pp == NULL || p == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	if (pp->part != NULL && pp->part != p) {
		slog_warn("connection %u polled as '%s' after '%s': refused", r->pipe_id,
		    q->participant, pp->part->name);
		rpc_reply_error(r, SAGA_EINVAL,
		    "poll: this connection already serves participant '%s'; use one connection per "
		    "participant",
		    pp->part->name);
		return;
	}
	if (pp->part == NULL) {
		p->idle_since_ms = 0;
		if (relay_pipe_bind(pp, p) != 0) {
			rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
			return;
		}
		slog_info("participant %s connected (connection %u, capacity %u, instance %.64s)",
		    p->name, pp->id, q->capacity, q->instance ? q->instance : "");
	}
	pp->capacity = q->capacity > D.cfg->max_capacity ? D.cfg->max_capacity : q->capacity;
	pp->max_bytes = q->max_message_bytes;
	/* A second poll on the same connection (a REQ resend): the newer one
	 * replaces it; the old one gets an empty answer. */
	if (pp->poll != NULL)
		answer_poll_empty(pp);
	pp->poll = r;
	tq_arm_must(D.tq, &pp->poll_t, wire_mono_ms() + D.cfg->poll_timeout_ms);
	pump(p);
}

const char *
dsp_pipe_participant(uint32_t pipe_id)
{
	relay_pipe *pp = relay_pipe_get(pipe_id, 0);
	return pp && pp->part ? pp->part->name : NULL;
}

void
dsp_pipe_closed(uint32_t pipe_id)
{
	relay_pipe *pp = relay_pipe_get(pipe_id, 0);
	if (pp == NULL)
		return;
	uint32_t n = 0;
	for (dsp_flight *f = pp->inflight_head, *next; f; f = next) {
		next = f->next;
		f->prev = f->next = NULL;
		f->pipe_id = 0;
		if (D.ops.lost(f))
			n++;
	}
	pp->inflight_head = NULL;
	pp->inflight = 0;
	if (pp->poll) {
		rpc_reply_error(pp->poll, SAGA_ECLOSED, "connection closed");
		pp->poll = NULL;
	}
	tq_cancel(D.tq, &pp->poll_t); /* before the pipe's memory goes */
	relay_part *p = pp->part;
	if (p)
		slog_info("participant %s disconnected (connection %u); %u step(s) to redeliver",
		    p->name, pipe_id, n);
	relay_pipe_remove(pp);
	if (p && p->n_pipes == 0)
		p->idle_since_ms = wire_mono_ms(); /* its TTL starts (sweep_fired) */
	atomic_fetch_add(&stat_redelivered, n);
	if (p && n)
		pump(p);
}

void
dsp_note_redelivered(uint32_t n)
{
	atomic_fetch_add(&stat_redelivered, n);
}

/* ---- outcomes ------------------------------------------------------------------------- */

/* An attempt of a step of participant ended: the breaker learns whether
 * it failed (retryable error or timeout). */
static void
breaker_note(const char *participant, bool failure)
{
	relay_part *p = relay_part_get(participant, 0);
	if (p == NULL)
		return;
	int ns = breaker_record(&p->brk, &D.brk, wire_mono_ms(), failure);
	if (ns == BRK_OPEN) {
		if (p->brk.times_opened > 1 && p->brk.last_calls == 0)
			slog_warn("participant %s: circuit breaker open again: the probe failed; "
				  "no dispatch for %u ms",
			    p->name, D.brk.cooloff_ms);
		else
			slog_warn("participant %s: circuit breaker open: %u of %u attempts failed "
				  "or timed out within %u ms; no dispatch for %u ms (steps wait)",
			    p->name, p->brk.last_fails, p->brk.last_calls, D.brk.window_ms,
			    D.brk.cooloff_ms);
		tq_arm_must(D.tq, &p->brk_t, p->brk.open_until_ms);
	} else if (ns == BRK_CLOSED) {
		tq_cancel(D.tq, &p->brk_t);
		slog_info("participant %s: circuit breaker closed: the probe succeeded; "
			  "dispatching resumes",
		    p->name);
		pump(p);
	}
}

void
dsp_attempt_ended(dsp_flight *f, const char *participant, int how)
{
	unlink_flight(f);
	if (how == DSP_END_LOST)
		return;
	if (f->sent_us != 0) {
		mx_named *ps = mx_table_get(&D.latency, participant);
		if (ps != NULL)
			mx_hist_add(&ps->latency, (double)(wire_mono_us() - f->sent_us) / 1000.0);
		f->sent_us = 0;
	}
	breaker_note(participant, how == DSP_END_FAILED);
}

/* ---- shutdown and status ----------------------------------------------------------------- */

void
dsp_stop(void)
{
	D.stop = true;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p)) {
		for (size_t k = 0; k < p->n_pipes; k++)
			if (p->pipes[k]->poll != NULL)
				answer_poll_empty(p->pipes[k]);
	}
}

size_t
dsp_in_flight(void)
{
	size_t n = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		for (size_t k = 0; k < p->n_pipes; k++)
			n += p->pipes[k]->inflight;
	return n;
}

size_t
dsp_backlog(void)
{
	size_t n = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		n += p->q_len;
	return n;
}

static int
cmp_part_name(const void *a, const void *b)
{
	return strcmp((*(Sagawire__ParticipantInfo *const *)a)->name,
	    (*(Sagawire__ParticipantInfo *const *)b)->name);
}

/* Every participant sagad knows (connected, or with steps queued). */
void
dsp_participants(rpc_req *r)
{
	size_t n = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		n++;
	Sagawire__ParticipantInfo *v = calloc(n ? n : 1, sizeof(*v));
	Sagawire__ParticipantInfo **vp = calloc(n ? n : 1, sizeof(*vp));
	if (v == NULL || vp == NULL) {
		free(v);
		free(vp);
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	int64_t now = wire_mono_ms(), wall = wire_now_us();
	size_t i = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p), i++) {
		Sagawire__ParticipantInfo *x = &v[i];
		sagawire__participant_info__init(x);
		x->name = p->name;
		x->connections = (uint32_t)p->n_pipes;
		for (size_t k = 0; k < p->n_pipes; k++) {
			x->capacity += p->pipes[k]->capacity;
			x->in_flight += p->pipes[k]->inflight;
		}
		x->queued = (uint32_t)p->q_len; /* may include stale items */
		x->breaker = (char *)breaker_state_name(p->brk.state);
		if (p->brk.state == BRK_OPEN)
			x->breaker_open_until_us = wall + (p->brk.open_until_ms - now) * 1000;
		x->breaker_opened = p->brk.times_opened;
		x->window_attempts = p->brk.calls;
		x->window_failures = p->brk.fails;
		vp[i] = x;
	}
	qsort(vp, n, sizeof(*vp), cmp_part_name);
	Sagawire__ParticipantsResponse pr = SAGAWIRE__PARTICIPANTS_RESPONSE__INIT;
	pr.n_participants = n;
	pr.participants = vp;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_PARTICIPANTS;
	resp.participants = &pr;
	rpc_reply(r, &resp);
	free(v);
	free(vp);
}

void
dsp_metrics(mx_buf *b)
{
	mx_printf(b,
	    "# HELP sagad_outbox_backlog Steps owed a dispatch, waiting for a participant.\n"
	    "# TYPE sagad_outbox_backlog gauge\nsagad_outbox_backlog %zu\n"
	    "# HELP sagad_steps_dispatched_total Step attempts dispatched.\n"
	    "# TYPE sagad_steps_dispatched_total counter\nsagad_steps_dispatched_total %llu\n"
	    "# HELP sagad_steps_redelivered_total Steps sent again after a connection closed or "
	    "a restart.\n"
	    "# TYPE sagad_steps_redelivered_total counter\nsagad_steps_redelivered_total %llu\n",
	    dsp_backlog(), (unsigned long long)atomic_load(&stat_dispatched),
	    (unsigned long long)atomic_load(&stat_redelivered));
	static const char *const part_gauges[][2] = {
		{ "sagad_participant_connections", "Connected worker connections." },
		{ "sagad_participant_capacity", "Declared capacity of the connected workers." },
		{ "sagad_participant_in_flight",
		    "Steps dispatched to the participant, unanswered." },
		{ "sagad_breaker_state", "Circuit breaker: 0 closed, 1 open, 2 half-open." },
		{ "sagad_breaker_opened_total", "Times the circuit breaker opened." },
	};
	for (size_t g = 0; g < sizeof(part_gauges) / sizeof(part_gauges[0]); g++) {
		mx_printf(b, "# HELP %s %s\n# TYPE %s %s\n", part_gauges[g][0], part_gauges[g][1],
		    part_gauges[g][0], g == 4 ? "counter" : "gauge");
		for (relay_part *p = relay_part_first(); p; p = relay_part_next(p)) {
			uint64_t v = 0;
			for (size_t k = 0; k < p->n_pipes; k++)
				v += g == 0  ? 1
				    : g == 1 ? p->pipes[k]->capacity
				    : g == 2 ? p->pipes[k]->inflight
					     : 0;
			if (g == 3)
				v = p->brk.state;
			if (g == 4)
				v = p->brk.times_opened;
			mx_printf(b, "%s{participant=\"", part_gauges[g][0]);
			mx_label(b, p->name);
			mx_printf(b, "\"} %llu\n", (unsigned long long)v);
		}
	}
	/* How long the oldest step owed a dispatch has waited: a participant
	 * away, full or behind an open breaker shows here first. */
	int64_t now = wire_mono_ms(), oldest = 0;
	mx_printf(b,
	    "# HELP sagad_participant_oldest_queued_seconds Age of the oldest step "
	    "waiting to be sent to the participant (0: none waits).\n"
	    "# TYPE sagad_participant_oldest_queued_seconds gauge\n");
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p)) {
		int64_t t = relay_oldest_ms(p);
		if (t != 0 && (oldest == 0 || t < oldest))
			oldest = t;
		mx_printf(b, "sagad_participant_oldest_queued_seconds{participant=\"");
		mx_label(b, p->name);
		mx_printf(b, "\"} %.3f\n", t != 0 ? (double)(now - t) / 1000.0 : 0.0);
	}
	mx_printf(b,
	    "# HELP sagad_outbox_oldest_seconds Age of the oldest step waiting to be sent, any "
	    "participant (0: none waits).\n"
	    "# TYPE sagad_outbox_oldest_seconds gauge\nsagad_outbox_oldest_seconds %.3f\n",
	    oldest != 0 ? (double)(now - oldest) / 1000.0 : 0.0);
	mx_printf(b,
	    "# HELP sagad_step_latency_seconds Time from a step's dispatch to its "
	    "outcome or timeout.\n# TYPE sagad_step_latency_seconds histogram\n");
	for (size_t i = 0; i < D.latency.n; i++)
		mx_hist_write(b, "sagad_step_latency_seconds", "participant", D.latency.v[i].name,
		    &D.latency.v[i].latency);
}
