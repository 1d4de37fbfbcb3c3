/* timerq: cancellable timers in a binary heap. See timerq.h. */
#include "timerq.h"

#include <stdlib.h>

#include "log.h"
#include "saga_base.h"

static void
place(timerq *q, size_t i, tq_node *t)
{
	q->v[i] = t;
	t->idx = (int32_t)i;
}

static void
sift_up(timerq *q, size_t i)
{
	tq_node *t = q->v[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (q->v[p]->when_ms <= t->when_ms)
			break;
		place(q, i, q->v[p]);
		i = p;
	}
	place(q, i, t);
}

static void
sift_down(timerq *q, size_t i)
{
	tq_node *t = q->v[i];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		int64_t best = t->when_ms;
		if (l < q->n && q->v[l]->when_ms < best) {
			m = l;
			best = q->v[l]->when_ms;
		}
		if (r < q->n && q->v[r]->when_ms < best)
			m = r;
		if (m == i)
			break;
		place(q, i, q->v[m]);
		i = m;
	}
	place(q, i, t);
}

int
tq_arm(timerq *q, tq_node *t, int64_t when_ms)
{
	if (t->idx >= 0) {
		int64_t old = t->when_ms;
		t->when_ms = when_ms;
		if (when_ms < old)
			sift_up(q, (size_t)t->idx);
		else
			sift_down(q, (size_t)t->idx);
		if (t->idx == 0 && when_ms < old && q->on_sooner != NULL)
			q->on_sooner(when_ms, q->arg);
		return 0;
	}
	if (q->n == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 1024;
		tq_node **nv = realloc(q->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return SAGA_ENOMEM;
		q->v = nv;
		q->cap = ncap;
	}
	t->when_ms = when_ms;
	q->v[q->n] = t;
	t->idx = (int32_t)q->n;
	q->n++;
	sift_up(q, q->n - 1);
	if (t->idx == 0 && q->on_sooner != NULL)
		q->on_sooner(when_ms, q->arg);
	return 0;
}

void
tq_arm_must(timerq *q, tq_node *t, int64_t when_ms)
{
	if (tq_arm(q, t, when_ms) != 0) {
		slog_error("out of memory arming a timer; aborting");
		abort();
	}
}

void
tq_cancel(timerq *q, tq_node *t)
{
	if (t->idx < 0)
		return;
	size_t i = (size_t)t->idx;
	t->idx = -1;
	q->n--;
	if (i == q->n)
		return;
	tq_node *last = q->v[q->n];
	place(q, i, last);
	if (i > 0 && q->v[(i - 1) / 2]->when_ms > last->when_ms)
		sift_up(q, i);
	else
		sift_down(q, i);
}

tq_node *
tq_peek(const timerq *q)
{
	return q->n ? q->v[0] : NULL;
}

tq_node *
tq_pop_due(timerq *q, int64_t now_ms)
{
	if (q->n == 0 || q->v[0]->when_ms > now_ms)
		return NULL;
	tq_node *t = q->v[0];
	tq_cancel(q, t);
	return t;
}

size_t
tq_run_due(timerq *q, int64_t now_ms)
{
	size_t n = 0;
	tq_node *t;
	while ((t = tq_pop_due(q, now_ms)) != NULL) {
		n++;
		if (t->fn != NULL)
			t->fn(t);
	}
	return n;
}

void
tq_free(timerq *q)
{
	for (size_t i = 0; i < q->n; i++)
		q->v[i]->idx = -1;
	free(q->v);
	q->v = NULL;
	q->n = q->cap = 0;
}
