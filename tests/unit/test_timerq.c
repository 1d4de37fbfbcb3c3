/* Unit tests of server/timerq.c: cancellable timers. */
#include <check.h>
#include <stddef.h>
#include <stdlib.h>

#include "timerq.h"

#define N 5000

static uint64_t rng = 88172645463325252ULL;

static uint64_t
next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

START_TEST(timers_pop_in_deadline_order)
{
	timerq q = { 0 };
	tq_node *nodes = calloc(N, sizeof(*nodes));
	for (int i = 0; i < N; i++) {
		tq_node_init(&nodes[i], NULL);
		ck_assert_int_eq(tq_arm(&q, &nodes[i], (int64_t)(next() % 100000)), 0);
	}
	int64_t last = -1;
	int n = 0;
	tq_node *t;
	while ((t = tq_pop_due(&q, 1000000)) != NULL) {
		ck_assert_int_ge(t->when_ms, last);
		ck_assert(!tq_armed(t));
		last = t->when_ms;
		n++;
	}
	ck_assert_int_eq(n, N);
	tq_free(&q);
	free(nodes);
}
END_TEST

START_TEST(cancelled_timers_never_fire_and_leave_nothing_behind)
{
	timerq q = { 0 };
	tq_node *nodes = calloc(N, sizeof(*nodes));
	for (int i = 0; i < N; i++) {
		tq_node_init(&nodes[i], NULL);
		tq_arm(&q, &nodes[i], (int64_t)(next() % 100000));
	}
	for (int i = 0; i < N; i += 2)
		tq_cancel(&q, &nodes[i]);
	tq_cancel(&q, &nodes[0]); /* twice: no-op */
	ck_assert_uint_eq(q.n, N / 2);
	int64_t last = -1;
	tq_node *t;
	while ((t = tq_pop_due(&q, 1000000)) != NULL) {
		ck_assert_int_eq((int)(t - nodes) % 2, 1);
		ck_assert_int_ge(t->when_ms, last);
		last = t->when_ms;
	}
	ck_assert_uint_eq(q.n, 0);
	tq_free(&q);
	free(nodes);
}
END_TEST

START_TEST(rearming_moves_a_timer_both_ways)
{
	timerq q = { 0 };
	tq_node a, b, c;
	tq_node_init(&a, NULL);
	tq_node_init(&b, NULL);
	tq_node_init(&c, NULL);
	tq_arm(&q, &a, 10);
	tq_arm(&q, &b, 20);
	tq_arm(&q, &c, 30);
	tq_arm(&q, &c, 5); /* earlier */
	ck_assert_ptr_eq(tq_peek(&q), &c);
	tq_arm(&q, &c, 50); /* later */
	ck_assert_ptr_eq(tq_peek(&q), &a);
	ck_assert_uint_eq(q.n, 3);
	ck_assert_ptr_null(tq_pop_due(&q, 9));
	ck_assert_ptr_eq(tq_pop_due(&q, 10), &a);
	ck_assert_ptr_eq(tq_pop_due(&q, 100), &b);
	ck_assert_ptr_eq(tq_pop_due(&q, 100), &c);
	ck_assert_ptr_null(tq_pop_due(&q, 100));
	tq_free(&q);
}
END_TEST

START_TEST(random_mix_keeps_heap_order)
{
	timerq q = { 0 };
	tq_node *nodes = calloc(N, sizeof(*nodes));
	for (int i = 0; i < N; i++)
		tq_node_init(&nodes[i], NULL);
	for (int round = 0; round < 20 * N; round++) {
		tq_node *t = &nodes[next() % N];
		switch (next() % 3) {
		case 0:
		case 1:
			tq_arm(&q, t, (int64_t)(next() % 1000));
			break;
		default:
			tq_cancel(&q, t);
		}
	}
	size_t armed = 0;
	for (int i = 0; i < N; i++)
		armed += tq_armed(&nodes[i]);
	ck_assert_uint_eq(armed, q.n);
	for (size_t i = 1; i < q.n; i++) {
		ck_assert_int_le(q.v[(i - 1) / 2]->when_ms, q.v[i]->when_ms);
		ck_assert_int_eq(q.v[i]->idx, (int32_t)i);
	}
	tq_free(&q);
	free(nodes);
}
END_TEST

/* An owner of timers: each node's callback finds its owner (container_of)
 * and handles the expiry itself; a callback may arm timers again. */
typedef struct owner {
	tq_node t;
	int fired;
	timerq *q;
	int rearm_left;
} owner;

static void
owner_fired(tq_node *t)
{
	owner *o = (owner *)(void *)((char *)t - offsetof(owner, t));
	o->fired++;
	if (o->rearm_left > 0) {
		o->rearm_left--;
		tq_arm(o->q, &o->t, t->when_ms + 10);
	}
}

static int64_t sooner_seen = -1;
static void
note_sooner(int64_t when_ms, void *arg)
{
	(void)arg;
	sooner_seen = when_ms;
}

START_TEST(due_timers_run_their_own_callbacks_and_may_rearm)
{
	timerq q = { 0 };
	q.on_sooner = note_sooner;
	owner a = { .q = &q }, b = { .q = &q, .rearm_left = 2 };
	tq_node_init(&a.t, owner_fired);
	tq_node_init(&b.t, owner_fired);
	tq_arm(&q, &a.t, 100);
	ck_assert_int_eq(sooner_seen, 100); /* the first timer is the soonest */
	sooner_seen = -1;
	tq_arm(&q, &b.t, 200);
	ck_assert_int_eq(sooner_seen, -1); /* not before a */
	tq_arm(&q, &b.t, 50);
	ck_assert_int_eq(sooner_seen, 50); /* moved before a: the sleeper must know */
	ck_assert_uint_eq(tq_run_due(&q, 49), 0);
	ck_assert_uint_eq(tq_run_due(&q, 100), 4); /* b at 50, 60 and 70; a at 100 */
	ck_assert_int_eq(a.fired, 1);
	ck_assert_int_eq(b.fired, 3);
	ck_assert(!tq_armed(&a.t));
	ck_assert(!tq_armed(&b.t));
	tq_free(&q);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("timerq");
	TCase *tc = tcase_create("timerq");
	tcase_add_test(tc, timers_pop_in_deadline_order);
	tcase_add_test(tc, cancelled_timers_never_fire_and_leave_nothing_behind);
	tcase_add_test(tc, rearming_moves_a_timer_both_ways);
	tcase_add_test(tc, random_mix_keeps_heap_order);
	tcase_add_test(tc, due_timers_run_their_own_callbacks_and_may_rearm);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
