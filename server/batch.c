/* batch: the open batch (every change goes through eng_touch), handing it
 * to the store's writer, and what follows its commit: start replies,
 * dispatches queued, acks and replies sent, final sagas released. Part of
 * the engine (engine_int.h); runs under E.mu. */
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "failpoint.h"
#include "saga_base.h"
#include "sagarow.h"
#include "store.h"

/* ---- batches: every change goes through eng_touch --------------------------------------- */

static int
post_add(post *p, const action *a)
{
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 256;
		action *nv = realloc(p->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return SAGA_ENOMEM;
		p->v = nv;
		p->cap = ncap;
	}
	p->v[p->n++] = *a;
	return 0;
}

/* Records that s changed: bumps its revision and puts it in the open batch,
 * where it appears once however often it changes before the batch goes. */
void
eng_touch(eng_saga *s)
{
	s->rev++;
	s->updated_us = wire_now_us();
	if (s->in_batch)
		return;
	if (E.n_open == E.cap_open) {
		size_t ncap = E.cap_open ? E.cap_open * 2 : 1024;
		eng_saga **no = realloc(E.open, ncap * sizeof(*no));
		if (no == NULL) {
			slog_error("out of memory growing the batch; aborting");
			abort();
		}
		E.open = no;
		E.cap_open = ncap;
	}
	E.open[E.n_open++] = s;
	s->in_batch = true;
}

void
eng_after_commit(const action *a)
{
	if (post_add(&E.open_post, a) != 0) {
		slog_error("out of memory queueing post-commit work; aborting");
		abort();
	}
}

/* Hands the open batch to the writer if it is idle (or the batch is full).
 * Group commit falls out of this: while one batch commits, the next
 * gathers every change made meanwhile. */
/* Every shard the batch writes, with the epoch of this sagad's lease on
 * it: the batch commits only if they are all still its own. */
static void
fence(store_batch *b)
{
	uint64_t mask = 0;
	for (size_t i = 0; i < b->n_rows; i++)
		mask |= 1ULL << shd_of(b->rows[i].id);
	if (mask == 0 || E.instance == NULL)
		return;
	size_t ns = 0, ne = 0;
	b->fence_shards[ns++] = '{';
	b->fence_epochs[ne++] = '{';
	for (unsigned s = 0; s < SHD_N; s++) {
		if (!(mask >> s & 1))
			continue;
		if (E.shards[s].state == SHARD_NONE)
			slog_error(
			    "invariant broken (a bug: please report it): a saga of shard %u, "
			    "which this sagad does not hold, is being written",
			    s);
		ns += (size_t)snprintf(b->fence_shards + ns, sizeof(b->fence_shards) - ns, "%s%u",
		    ns > 1 ? "," : "", s);
		ne += (size_t)snprintf(b->fence_epochs + ne, sizeof(b->fence_epochs) - ne, "%s%lld",
		    ne > 1 ? "," : "", (long long)E.shards[s].epoch);
	}
	snprintf(b->fence_shards + ns, sizeof(b->fence_shards) - ns, "}");
	snprintf(b->fence_epochs + ne, sizeof(b->fence_epochs) - ne, "}");
	b->fence_owner = E.instance;
}

void
eng_maybe_submit(void)
{
	if (E.n_open == 0 && E.open_post.n == 0)
		return;
	if (E.writing_batches > 0 && E.n_open < E.cfg->max_batch)
		return;
	store_batch *b = store_batch_new();
	post *p = calloc(1, sizeof(*p));
	if (b == NULL || p == NULL) {
		slog_error("out of memory submitting a batch; aborting");
		abort();
	}
	for (size_t i = 0; i < E.n_open; i++) {
		eng_saga *s = E.open[i];
		store_row *r = store_batch_add(b);
		if (r == NULL || sagarow_pack(s->sm, &s->trace, &r->steps, &r->steps_len) != 0) {
			slog_error("out of memory building a batch; aborting");
			abort();
		}
		memcpy(r->id, s->id, 16);
		r->insert = !s->persisted && s->writing == 0;
		r->state = (int16_t)s->sm->state;
		r->rev = s->rev;
		r->updated_us = s->updated_us;
		r->error = strdup(s->sm->error ? s->sm->error : "");
		if (r->insert) {
			r->definition = s->sm->def->name;
			r->version = s->sm->def->version;
			r->idem_key = s->idem_key;
			r->business_key = s->business_key;
			r->created_us = s->sm->created_us;
			r->input = s->input;
			r->input_len = s->input_len;
		}
		s->in_batch = false;
		s->writing++;
	}
	fence(b);
	*p = E.open_post;
	memset(&E.open_post, 0, sizeof(E.open_post));
	E.n_open = 0; /* the array is kept for the next batch */
	b->user = p;
	if (E.writing_batches == 0)
		E.commit_since_ms = wire_mono_ms();
	E.writing_batches++;
	store_writer_submit(b);
}

/* ---- after a batch committed ----------------------------------------------------------------- */

void
eng_committed(store_batch *b)
{
	post *p = b->user;
	E.completing--;
	bool owes = false, comp = false;
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].type == A_DISPATCH) {
			owes = true;
			comp = comp || p->v[i].kind == SM_COMPENSATION;
		}
	}
	if (owes)
		fp_kill(FP_AFTER_COMMIT);
	if (comp)
		fp_kill(FP_MID_COMPENSATION);

	/* 1. Rows: first inserts answer their start waiters; an insert that
	 * lost to an existing idempotency key drops the saga we made. */
	for (size_t i = 0; i < b->n_rows; i++) {
		store_row *row = &b->rows[i];
		eng_saga *s = eng_find(row->id);
		if (s == NULL)
			continue;
		if (row->insert && !row->inserted) {
			char ex[WIRE_UUID_STRLEN];
			wire_uuid_format(row->existing_id, ex);
			for (waiter *w = s->waiters, *n; w; w = n) {
				n = w->next;
				eng_reply_start(w, ex, s->sm->def->version, true);
				free(w);
			}
			s->waiters = NULL;
			/* Starts that wait: the existing saga's state is not in
			 * memory, so they get its id with the state unknown, and
			 * the client waits on that id. */
			for (waiter *w = s->final_waiters, *n; w; w = n) {
				n = w->next;
				tq_cancel(&E.tq, &w->t);
				eng_reply_start(w, ex, s->sm->def->version, true);
				free(w);
			}
			s->final_waiters = NULL;
			elog(SLOG_INFO, s, NULL, 0,
			    "idempotency key already used by saga %s: not started", ex);
			/* Its owed dispatches find no saga and are skipped. */
			eng_unlink(s);
			if (s->in_batch) {
				for (size_t k = 0; k < E.n_open; k++) {
					if (E.open[k] == s) {
						E.open[k] = E.open[--E.n_open];
						break;
					}
				}
			}
			eng_saga_free(s);
			continue;
		}
		if (!s->persisted) {
			s->persisted = true;
			for (waiter *w = s->waiters, *n; w; w = n) {
				n = w->next;
				eng_reply_start(w, s->sm->ids, s->sm->def->version, false);
				free(w);
			}
			s->waiters = NULL;
		}
	}
	/* 2. Post-commit work, in the order it was recorded. */
	for (size_t i = 0; i < p->n; i++) {
		action *a = &p->v[i];
		switch (a->type) {
		case A_DISPATCH: {
			eng_saga *s = eng_find(a->id);
			if (s == NULL)
				break;
			const sm_step *st = &s->sm->steps[a->step];
			if (st->gen == a->gen && st->queued) {
				dsp_item it = { .gen = a->gen, .step = a->step, .kind = a->kind };
				memcpy(it.id, s->id, 16);
				dsp_queue(s->sm->def->steps[a->step].participant, &it);
			}
			break;
		}
		case A_ACK: {
			Sagawire__ReportAck ack = SAGAWIRE__REPORT_ACK__INIT;
			ack.accepted = a->a;
			ack.ignored = a->b;
			ack.refused = a->c;
			Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
			resp.body_case = SAGAWIRE__RESPONSE__BODY_ACK;
			resp.ack = &ack;
			rpc_reply(a->req, &resp);
			break;
		}
		case A_OPERATE_REPLY: {
			eng_saga *s = eng_find(a->id);
			Sagawire__OperateResponse orr = SAGAWIRE__OPERATE_RESPONSE__INIT;
			orr.state =
			    s ? (Sagawire__SagaState)s->sm->state : (Sagawire__SagaState)a->a;
			Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
			resp.body_case = SAGAWIRE__RESPONSE__BODY_OPERATE;
			resp.operate = &orr;
			rpc_reply(a->req, &resp);
			break;
		}
		case A_CANCEL_REPLY: {
			eng_saga *s = eng_find(a->id);
			Sagawire__CancelResponse cr = SAGAWIRE__CANCEL_RESPONSE__INIT;
			cr.state =
			    s ? (Sagawire__SagaState)s->sm->state : (Sagawire__SagaState)a->a;
			Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
			resp.body_case = SAGAWIRE__RESPONSE__BODY_CANCEL;
			resp.cancel = &cr;
			rpc_reply(a->req, &resp);
			break;
		}
		}
	}
	/* 3. Release: sagas that are final and written are done with. */
	for (size_t i = 0; i < b->n_rows; i++) {
		eng_saga *s = eng_find(b->rows[i].id);
		if (s == NULL)
			continue;
		if (s->writing > 0)
			s->writing--;
		if (sm_saga_is_final(s->sm) && s->writing == 0 && !s->in_batch) {
			eng_release_final_waiters(s);
			eng_unlink(s);
			eng_saga_free(s);
		}
	}
	free(p->v);
	free(p);
	store_batch_free(b);
	dsp_pump_all();
}
