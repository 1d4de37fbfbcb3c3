/* Unit tests of server/breaker.c: the per-participant circuit breaker. */
#include <check.h>
#include <stdint.h>

#include "breaker.h"

static const breaker_cfg CFG = {
	.window_ms = 10000, .min_calls = 10, .fail_pct = 50, .cooloff_ms = 5000
};

START_TEST(closed_breaker_lets_everything_through)
{
	breaker b;
	breaker_init(&b, 0);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 0), UINT32_MAX);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(breaker_record(&b, &CFG, i, false), -1);
	ck_assert_int_eq(b.state, BRK_CLOSED);
}
END_TEST

START_TEST(opens_when_failures_reach_the_share_after_enough_calls)
{
	breaker b;
	breaker_init(&b, 0);
	/* 9 failures: below min_calls, stays closed. */
	for (int i = 0; i < 9; i++)
		ck_assert_int_eq(breaker_record(&b, &CFG, 100 + i, true), -1);
	/* the 10th call, a failure: 10/10 >= 50% */
	ck_assert_int_eq(breaker_record(&b, &CFG, 200, true), BRK_OPEN);
	ck_assert_uint_eq(b.last_calls, 10);
	ck_assert_uint_eq(b.last_fails, 10);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 300), 0);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 200 + 4999), 0);
	ck_assert_uint_eq(b.times_opened, 1);
}
END_TEST

START_TEST(failures_below_the_share_or_in_old_windows_do_not_open_it)
{
	breaker b;
	breaker_init(&b, 0);
	/* 4 failures in 10 calls: 40% */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(breaker_record(&b, &CFG, i, i < 4), -1);
	/* a new window forgets them: 9 more failures are 9 of 9 (< min) */
	for (int i = 0; i < 9; i++)
		ck_assert_int_eq(breaker_record(&b, &CFG, 20000 + i, true), -1);
	ck_assert_int_eq(b.state, BRK_CLOSED);
	/* fail_pct 0 never opens */
	breaker_cfg never = CFG;
	never.fail_pct = 0;
	breaker_init(&b, 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(breaker_record(&b, &never, i, true), -1);
}
END_TEST

START_TEST(after_the_cooloff_one_probe_goes_and_its_success_closes_it)
{
	breaker b;
	breaker_init(&b, 0);
	for (int i = 0; i < 10; i++)
		breaker_record(&b, &CFG, 0, true);
	ck_assert_int_eq(b.state, BRK_OPEN);
	/* late outcomes of earlier dispatches are ignored while open */
	ck_assert_int_eq(breaker_record(&b, &CFG, 10, false), -1);
	ck_assert_int_eq(b.state, BRK_OPEN);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 5000), 1);
	ck_assert_int_eq(b.state, BRK_HALF_OPEN);
	breaker_dispatched(&b, 1);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 5001), 0); /* one probe at a time */
	ck_assert_int_eq(breaker_record(&b, &CFG, 5100, false), BRK_CLOSED);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 5101), UINT32_MAX);
	ck_assert_uint_eq(b.times_opened, 1);
	ck_assert_uint_eq(b.calls, 0);
}
END_TEST

START_TEST(a_failed_probe_opens_it_for_another_cooloff)
{
	breaker b;
	breaker_init(&b, 0);
	for (int i = 0; i < 10; i++)
		breaker_record(&b, &CFG, 0, true);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 6000), 1);
	/* an outcome before the probe went out says nothing */
	ck_assert_int_eq(breaker_record(&b, &CFG, 6001, true), -1);
	breaker_dispatched(&b, 1);
	ck_assert_int_eq(breaker_record(&b, &CFG, 6100, true), BRK_OPEN);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 6100 + 4999), 0);
	ck_assert_uint_eq(breaker_allow(&b, &CFG, 6100 + 5000), 1);
	ck_assert_uint_eq(b.times_opened, 2);
	ck_assert_str_eq(breaker_state_name(BRK_HALF_OPEN), "half-open");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("breaker");
	TCase *tc = tcase_create("breaker");
	tcase_add_test(tc, closed_breaker_lets_everything_through);
	tcase_add_test(tc, opens_when_failures_reach_the_share_after_enough_calls);
	tcase_add_test(tc, failures_below_the_share_or_in_old_windows_do_not_open_it);
	tcase_add_test(tc, after_the_cooloff_one_probe_goes_and_its_success_closes_it);
	tcase_add_test(tc, a_failed_probe_opens_it_for_another_cooloff);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
