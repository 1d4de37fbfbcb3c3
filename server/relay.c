/* relay: participant queues and connections. See relay.h. */
#include "relay.h"

#include <stdlib.h>
#include <string.h>

#include "saga_base.h"
#include "wire.h"

#define PART_BUCKETS 256
#define PIPE_BUCKETS 4096

static relay_part *parts[PART_BUCKETS];
static relay_pipe *pipes[PIPE_BUCKETS];
static tq_fn poll_fn, breaker_fn;

void
relay_set_timer_fns(tq_fn poll_expired, tq_fn breaker_expired)
{
	poll_fn = poll_expired;
	breaker_fn = breaker_expired;
}

int
relay_init(void)
{
	return 0;
}

void
relay_fini(void)
{
	for (size_t b = 0; b < PART_BUCKETS; b++) {
		relay_part *p = parts[b];
		while (p) {
			relay_part *n = p->hnext;
			free(p->name);
			free(p->q);
			free(p->pipes);
			free(p);
			p = n;
		}
		parts[b] = NULL;
	}
	for (size_t b = 0; b < PIPE_BUCKETS; b++) {
		relay_pipe *pp = pipes[b];
		while (pp) {
			relay_pipe *n = pp->hnext;
			free(pp);
			pp = n;
		}
		pipes[b] = NULL;
	}
}

relay_part *
relay_part_get(const char *name, int create)
{
	unsigned b = wire_hash_str(name) % PART_BUCKETS;
	for (relay_part *p = parts[b]; p; p = p->hnext)
		if (strcmp(p->name, name) == 0)
			return p;
	if (!create)
		return NULL;
	relay_part *p = calloc(1, sizeof(*p));
	if (p == NULL || (p->name = strdup(name)) == NULL) {
		free(p);
		return NULL;
	}
	breaker_init(&p->brk, 0);
	tq_node_init(&p->brk_t, breaker_fn);
	p->hnext = parts[b];
	parts[b] = p;
	return p;
}

void
relay_part_remove(relay_part *p)
{
	unsigned b = wire_hash_str(p->name) % PART_BUCKETS;
	for (relay_part **pl = &parts[b]; *pl; pl = &(*pl)->hnext) {
		if (*pl == p) {
			*pl = p->hnext;
			break;
		}
	}
	free(p->name);
	free(p->q);
	free(p->pipes);
	free(p);
}

int
relay_push(relay_part *p, const relay_item *it)
{
	if (p->q_len == p->q_cap) {
		size_t ncap = p->q_cap ? p->q_cap * 2 : 64;
		relay_item *nq = malloc(ncap * sizeof(*nq));
		if (nq == NULL)
			return SAGA_ENOMEM;
		for (size_t i = 0; i < p->q_len; i++)
			nq[i] = p->q[(p->q_head + i) % p->q_cap];
		free(p->q);
		p->q = nq;
		p->q_cap = ncap;
		p->q_head = 0;
	}
	p->q[(p->q_head + p->q_len) % p->q_cap] = *it;
	p->q_len++;
	return 0;
}

int64_t
relay_oldest_ms(const relay_part *p)
{
	/* Mostly the head (a queue), but an item put back behind others
	 * (a full batch) keeps its first time: look at them all. */
	int64_t oldest = 0;
	for (size_t i = 0; i < p->q_len; i++) {
		int64_t t = p->q[(p->q_head + i) % p->q_cap].queued_ms;
		if (t != 0 && (oldest == 0 || t < oldest))
			oldest = t;
	}
	return oldest;
}

int
relay_pop(relay_part *p, relay_item *out)
{
	if (p->q_len == 0)
		return 0;
	*out = p->q[p->q_head];
	p->q_head = (p->q_head + 1) % p->q_cap;
	p->q_len--;
	/* Give memory back after a burst (e.g. 100k sagas recovered). */
	if (p->q_len == 0 && p->q_cap > 4096) {
		free(p->q);
		p->q = NULL;
		p->q_cap = p->q_head = 0;
	}
	return 1;
}

relay_pipe *
relay_pipe_get(uint32_t id, int create)
{
	unsigned b = id % PIPE_BUCKETS;
	for (relay_pipe *pp = pipes[b]; pp; pp = pp->hnext)
		if (pp->id == id)
			return pp;
	if (!create)
		return NULL;
	relay_pipe *pp = calloc(1, sizeof(*pp));
	if (pp == NULL)
		return NULL;
	pp->id = id;
	tq_node_init(&pp->poll_t, poll_fn);
	pp->hnext = pipes[b];
	pipes[b] = pp;
	return pp;
}

int
relay_pipe_bind(relay_pipe *pp, relay_part *p)
{
	if (pp->part == p)
		return 0;
	if (pp->part != NULL)
		return SAGA_EINVAL;
	if (p->n_pipes == p->cap_pipes) {
		size_t ncap = p->cap_pipes ? p->cap_pipes * 2 : 8;
		relay_pipe **np = realloc(p->pipes, ncap * sizeof(*np));
		if (np == NULL)
			return SAGA_ENOMEM;
		p->pipes = np;
		p->cap_pipes = ncap;
	}
	pp->part_index = p->n_pipes;
	p->pipes[p->n_pipes++] = pp;
	pp->part = p;
	return 0;
}

void
relay_pipe_remove(relay_pipe *pp)
{
	relay_part *p = pp->part;
	if (p != NULL) {
		size_t i = pp->part_index;
		p->pipes[i] = p->pipes[--p->n_pipes];
		p->pipes[i]->part_index = i;
		if (p->rr >= p->n_pipes)
			p->rr = 0;
	}
	unsigned b = pp->id % PIPE_BUCKETS;
	for (relay_pipe **pl = &pipes[b]; *pl; pl = &(*pl)->hnext) {
		if (*pl == pp) {
			*pl = pp->hnext;
			break;
		}
	}
	free(pp);
}

relay_pipe *
relay_next_pipe(relay_part *p)
{
	for (size_t k = 0; k < p->n_pipes; k++) {
		size_t i = (p->rr + k) % p->n_pipes;
		relay_pipe *pp = p->pipes[i];
		if (pp->poll != NULL && pp->inflight < pp->capacity) {
			p->rr = (i + 1) % p->n_pipes;
			return pp;
		}
	}
	return NULL;
}

relay_part *
relay_part_first(void)
{
	for (size_t b = 0; b < PART_BUCKETS; b++)
		if (parts[b])
			return parts[b];
	return NULL;
}

relay_part *
relay_part_next(relay_part *p)
{
	if (p->hnext)
		return p->hnext;
	for (size_t b = wire_hash_str(p->name) % PART_BUCKETS + 1; b < PART_BUCKETS; b++)
		if (parts[b])
			return parts[b];
	return NULL;
}

size_t
relay_connected(const relay_part *p)
{
	return p->n_pipes;
}
