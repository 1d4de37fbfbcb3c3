/* Unit tests of server/relay.c: participant queues and connections. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"
#include "saga_base.h"

static relay_item
item(uint8_t tag, uint32_t gen)
{
	relay_item it;
	memset(&it, 0, sizeof(it));
	it.id[0] = tag;
	it.gen = gen;
	it.step = tag;
	it.kind = 1;
	return it;
}

START_TEST(queue_is_fifo_across_growth)
{
	relay_init();
	relay_part *p = relay_part_get("inventory", 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_eq(relay_part_get("inventory", 0), p);
	ck_assert_ptr_null(relay_part_get("payment", 0));
	/* interleave pushes and pops so the ring wraps while it grows */
	uint32_t next_in = 0, next_out = 0;
	for (int round = 0; round < 50; round++) {
		for (int k = 0; k < 37; k++) {
			relay_item it = item((uint8_t)next_in, next_in);
			ck_assert_int_eq(relay_push(p, &it), 0);
			next_in++;
		}
		for (int k = 0; k < 20; k++) {
			relay_item out;
			ck_assert_int_eq(relay_pop(p, &out), 1);
			ck_assert_uint_eq(out.gen, next_out);
			next_out++;
		}
	}
	relay_item out;
	while (relay_pop(p, &out)) {
		ck_assert_uint_eq(out.gen, next_out);
		next_out++;
	}
	ck_assert_uint_eq(next_out, next_in);
	ck_assert_int_eq(relay_pop(p, &out), 0);
	relay_fini();
}
END_TEST

START_TEST(next_pipe_needs_a_parked_poll_and_room_and_rotates)
{
	relay_init();
	relay_part *p = relay_part_get("p", 1);
	relay_pipe *a = relay_pipe_get(11, 1), *b = relay_pipe_get(12, 1);
	ck_assert_int_eq(relay_pipe_bind(a, p), 0);
	ck_assert_int_eq(relay_pipe_bind(b, p), 0);
	ck_assert_uint_eq(relay_connected(p), 2);
	rpc_req poll_a, poll_b;
	a->capacity = b->capacity = 2;
	/* no polls parked: nobody can take work */
	ck_assert_ptr_null(relay_next_pipe(p));
	a->poll = &poll_a;
	b->poll = &poll_b;
	relay_pipe *first = relay_next_pipe(p);
	relay_pipe *second = relay_next_pipe(p);
	ck_assert_ptr_nonnull(first);
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_ne(first, second); /* round robin */
	/* full capacity excludes a connection */
	a->inflight = 2;
	ck_assert_ptr_eq(relay_next_pipe(p), b);
	ck_assert_ptr_eq(relay_next_pipe(p), b);
	b->poll = NULL;
	ck_assert_ptr_null(relay_next_pipe(p));
	relay_fini();
}
END_TEST

START_TEST(bound_connection_cannot_switch_participant_and_removal_unbinds)
{
	relay_init();
	relay_part *p = relay_part_get("p", 1), *q = relay_part_get("q", 1);
	relay_pipe *a = relay_pipe_get(7, 1);
	ck_assert_int_eq(relay_pipe_bind(a, p), 0);
	ck_assert_int_eq(relay_pipe_bind(a, p), 0);
	ck_assert_int_eq(relay_pipe_bind(a, q), SAGA_EINVAL);
	relay_pipe *b = relay_pipe_get(8, 1);
	ck_assert_int_eq(relay_pipe_bind(b, p), 0);
	relay_pipe_remove(a);
	ck_assert_ptr_null(relay_pipe_get(7, 0));
	ck_assert_uint_eq(relay_connected(p), 1);
	ck_assert_ptr_eq(p->pipes[0], b);
	ck_assert_uint_eq(b->part_index, 0);
	relay_fini();
}
END_TEST

START_TEST(participants_are_all_visited_by_iteration)
{
	relay_init();
	char name[32];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "part-%d", i);
		ck_assert_ptr_nonnull(relay_part_get(name, 1));
	}
	int n = 0;
	for (relay_part *p = relay_part_first(); p; p = relay_part_next(p))
		n++;
	ck_assert_int_eq(n, 300);
	relay_fini();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("relay");
	TCase *tc = tcase_create("relay");
	tcase_add_test(tc, queue_is_fifo_across_growth);
	tcase_add_test(tc, next_pipe_needs_a_parked_poll_and_room_and_rotates);
	tcase_add_test(tc, bound_connection_cannot_switch_participant_and_removal_unbinds);
	tcase_add_test(tc, participants_are_all_visited_by_iteration);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
