/* engine_shards: the engine's side of shards (shards.c holds the leases):
 * which shards it holds and at which epoch (every batch is fenced with
 * it), which new sagas go where, whether a dispatch may go out, loading a
 * claimed shard and dropping a released one. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engine_int.h"
#include "saga_base.h"
#include "store.h"

void
engine_set_instance(const char *id)
{
	pthread_mutex_lock(&E.mu);
	free(E.instance);
	E.instance = strdup(id);
	pthread_mutex_unlock(&E.mu);
}

int
eng_pick_shard(void)
{
	for (unsigned k = 0; k < SHD_N; k++) {
		unsigned s = (E.next_shard + k) % SHD_N;
		if (E.shards[s].state == SHARD_ACTIVE) {
			E.next_shard = s + 1;
			return (int)s;
		}
	}
	return -1;
}

static void
hold(eng_shard *sh, const dsp_item *it)
{
	if (sh->n_held == sh->cap_held) {
		size_t ncap = sh->cap_held ? sh->cap_held * 2 : 64;
		dsp_item *nv = realloc(sh->held, ncap * sizeof(*nv));
		if (nv == NULL) {
			slog_error("out of memory holding a dispatch; aborting");
			abort();
		}
		sh->held = nv;
		sh->cap_held = ncap;
	}
	sh->held[sh->n_held++] = *it;
}

int
eng_may_dispatch(const dsp_item *it)
{
	eng_shard *sh = &E.shards[shd_of(it->id)];
	if (sh->state == SHARD_LOADING) {
		/* Its sagas are being loaded: what they owe goes out once the
		 * shard is ready (engine_shard_ready). */
		hold(sh, it);
		return 0;
	}
	if (sh->state != SHARD_ACTIVE)
		return -1;
	if (wire_mono_ms() >= sh->valid_until_ms) {
		/* Its lease may have lapsed (this sagad was paused, or the
		 * database is slow to answer renewals): another instance may
		 * own the shard by now. Hold it until a renewal proves it. */
		hold(sh, it);
		return 0;
	}
	return 1;
}

/* Queues what was held in sh again; true if anything was. */
static bool
requeue_held(eng_shard *sh)
{
	bool any = false;
	for (size_t k = 0; k < sh->n_held; k++) {
		const dsp_item *it = &sh->held[k];
		eng_saga *s = eng_find(it->id);
		if (s == NULL || it->step >= s->sm->def->n_steps)
			continue;
		dsp_queue(s->sm->def->steps[it->step].participant, it);
		any = true;
	}
	sh->n_held = 0;
	return any;
}

void
engine_shard_claimed(unsigned shard, int64_t epoch, int64_t valid_until_ms)
{
	pthread_mutex_lock(&E.mu);
	eng_shard *sh = &E.shards[shard % SHD_N];
	sh->state = SHARD_LOADING;
	sh->epoch = epoch;
	sh->valid_until_ms = valid_until_ms;
	sh->n_held = 0;
	pthread_mutex_unlock(&E.mu);
}

int
engine_shard_load(const store_saga *row)
{
	pthread_mutex_lock(&E.mu);
	int rv = 0;
	if (E.shards[shd_of(row->id)].state != SHARD_LOADING) {
		slog_error("a saga of shard %u was loaded while the shard is not being claimed",
		    shd_of(row->id));
	} else if (eng_find(row->id) == NULL) {
		eng_saga *s;
		rv = eng_load(row, &s);
		/* A saga that cannot be read is logged and left in its row. */
		if (rv != SAGA_ENOMEM)
			rv = 0;
	}
	pthread_mutex_unlock(&E.mu);
	return rv;
}

void
engine_shard_ready(unsigned shard)
{
	pthread_mutex_lock(&E.mu);
	eng_shard *sh = &E.shards[shard % SHD_N];
	if (sh->state == SHARD_LOADING) {
		sh->state = SHARD_ACTIVE;
		if (requeue_held(sh))
			dsp_pump_all();
	}
	/* Loading may have changed sagas (recovery gives up the actions of a
	 * compensating saga, or moves one on): write them. */
	eng_maybe_submit();
	pthread_mutex_unlock(&E.mu);
}

void
engine_shards_valid(const unsigned *shards, size_t n, int64_t valid_until_ms)
{
	pthread_mutex_lock(&E.mu);
	bool requeued = false;
	for (size_t i = 0; i < n; i++) {
		eng_shard *sh = &E.shards[shards[i] % SHD_N];
		sh->valid_until_ms = valid_until_ms;
		if (sh->state == SHARD_ACTIVE)
			requeued = requeue_held(sh) || requeued;
	}
	if (requeued)
		dsp_pump_all();
	pthread_mutex_unlock(&E.mu);
}

void
engine_shard_release(unsigned shard)
{
	pthread_mutex_lock(&E.mu);
	eng_shard *sh = &E.shards[shard % SHD_N];
	if (sh->state == SHARD_ACTIVE || sh->state == SHARD_LOADING)
		sh->state = SHARD_RELEASING;
	sh->n_held = 0; /* the next owner sends them */
	pthread_mutex_unlock(&E.mu);
}

/* Drops s from memory: its shard goes to another instance, which loads it
 * from its row (every change of it is committed). */
static void
drop_saga(eng_saga *s)
{
	for (uint32_t i = 0; i < s->sm->def->n_steps; i++)
		dsp_attempt_ended(&s->x[i].f, s->sm->def->steps[i].participant, DSP_END_LOST);
	/* Waits get the state now; their client waits again, on any instance. */
	eng_release_final_waiters(s);
	eng_unlink(s);
	eng_saga_free(s);
}

int
engine_shard_drop(unsigned shard, bool force)
{
	pthread_mutex_lock(&E.mu);
	eng_shard *sh = &E.shards[shard % SHD_N];
	if (sh->state != SHARD_RELEASING) {
		pthread_mutex_unlock(&E.mu);
		return sh->state == SHARD_NONE;
	}
	/* Quiet: nothing of it waits to be committed, and (unless forced)
	 * no step of it is on the wire. */
	for (size_t b = 0; b < E.nbuckets; b++) {
		for (eng_saga *s = E.ids[b]; s; s = s->hnext) {
			if (shd_of(s->id) != shard % SHD_N)
				continue;
			if (s->in_batch || s->writing > 0 || s->waiters != NULL) {
				pthread_mutex_unlock(&E.mu);
				return 0;
			}
			for (uint32_t i = 0; i < s->sm->def->n_steps && !force; i++) {
				if (s->x[i].f.pipe_id != 0) {
					pthread_mutex_unlock(&E.mu);
					return 0;
				}
			}
		}
	}
	size_t n = 0;
	for (size_t b = 0; b < E.nbuckets; b++) {
		for (eng_saga *s = E.ids[b], *next; s; s = next) {
			next = s->hnext;
			if (shd_of(s->id) == shard % SHD_N) {
				drop_saga(s);
				n++;
			}
		}
	}
	sh->state = SHARD_NONE;
	sh->n_held = 0;
	pthread_mutex_unlock(&E.mu);
	slog_debug("shard %u released: %zu saga(s) handed over", shard, n);
	return 1;
}

size_t
engine_shards_held(void)
{
	size_t n = 0;
	pthread_mutex_lock(&E.mu);
	for (unsigned s = 0; s < SHD_N; s++)
		n += E.shards[s].state != SHARD_NONE;
	pthread_mutex_unlock(&E.mu);
	return n;
}

uint64_t
engine_shards_active_mask(void)
{
	uint64_t m = 0;
	pthread_mutex_lock(&E.mu);
	for (unsigned s = 0; s < SHD_N; s++)
		if (E.shards[s].state == SHARD_ACTIVE)
			m |= 1ULL << s;
	pthread_mutex_unlock(&E.mu);
	return m;
}
