/* Unit tests of common/: names of codes and states. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "sagawire.pb-c.h"

START_TEST(every_error_code_has_its_own_text)
{
	for (int e = SAGA_OK; e <= SAGA_EUNSUPPORTED; e++) {
		ck_assert_str_ne(cm_strerror(e), "unknown error");
		for (int f = SAGA_OK; f < e; f++)
			ck_assert_str_ne(cm_strerror(e), cm_strerror(f));
	}
	ck_assert_str_eq(cm_strerror(SAGA_ENOTFOUND), "not found");
	ck_assert_str_eq(cm_strerror(-1), "unknown error");
	ck_assert_str_eq(cm_strerror(SAGA_EUNSUPPORTED + 1), "unknown error");
	ck_assert_str_eq(cm_version(), "0.1.0");
}
END_TEST

START_TEST(state_names_follow_the_wire_values)
{
	ck_assert_str_eq(cm_saga_state_name(SAGAWIRE__SAGA_STATE__SAGA_RUNNING), "running");
	ck_assert_str_eq(cm_saga_state_name(SAGAWIRE__SAGA_STATE__SAGA_FAILED), "failed");
	ck_assert_str_eq(
	    cm_saga_state_name(SAGAWIRE__SAGA_STATE__SAGA_STATE_UNSPECIFIED), "unknown");
	ck_assert_str_eq(cm_saga_state_name(6), "unknown");
	ck_assert_str_eq(cm_saga_state_name(-1), "unknown");
	ck_assert_str_eq(cm_step_state_name(SAGAWIRE__STEP_STATE__STEP_RETRY_WAIT), "retry_wait");
	ck_assert_str_eq(cm_step_state_name(SAGAWIRE__STEP_STATE__STEP_COMP_FAILED), "comp_failed");
	ck_assert_str_eq(cm_step_state_name(10), "unknown");
	for (int s = SAGAWIRE__SAGA_STATE__SAGA_RUNNING; s <= SAGAWIRE__SAGA_STATE__SAGA_FAILED;
	     s++)
		ck_assert_int_eq(cm_saga_state_parse(cm_saga_state_name(s)), s);
	ck_assert_int_eq(cm_saga_state_parse("unknown"), 0);
	ck_assert_int_eq(cm_saga_state_parse("Running"), 0);
	ck_assert_int_eq(cm_saga_state_parse(NULL), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("common");
	tcase_add_test(tc, every_error_code_has_its_own_text);
	tcase_add_test(tc, state_names_follow_the_wire_values);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
