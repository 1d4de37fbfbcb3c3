/* Unit tests of common/: names of codes and states, UTF-8, varints, JSON
 * string escaping, base64. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "jsonstr.h"
#include "names.h"
#include "utf8.h"
#include "varint.h"
#include "sagawire.pb-c.h"

START_TEST(every_error_code_has_its_own_text)
{
	for (int e = SAGA_OK; e <= SAGA_EPERM; e++) {
		ck_assert_str_ne(cm_strerror(e), "unknown error");
		for (int f = SAGA_OK; f < e; f++)
			ck_assert_str_ne(cm_strerror(e), cm_strerror(f));
	}
	ck_assert_str_eq(cm_strerror(SAGA_ENOTFOUND), "not found");
	ck_assert_str_eq(cm_strerror(-1), "unknown error");
	ck_assert_str_eq(cm_strerror(SAGA_EPERM + 1), "unknown error");
	ck_assert_str_eq(cm_version(), "0.1.0");
}
END_TEST

START_TEST(state_names_follow_the_wire_values)
{
	ck_assert_str_eq(cm_saga_state_name(SAGAWIRE__SAGA_STATE__SAGA_RUNNING), "running");
	ck_assert_str_eq(cm_saga_state_name(SAGAWIRE__SAGA_STATE__SAGA_FAILED), "failed");
	ck_assert_str_eq(
	    cm_saga_state_name(SAGAWIRE__SAGA_STATE__SAGA_STATE_UNSPECIFIED), "unknown");
	ck_assert_str_eq(cm_saga_state_name(SAGAWIRE__SAGA_STATE__SAGA_TERMINATED), "terminated");
	ck_assert_str_eq(cm_saga_state_name(7), "unknown");
	ck_assert_str_eq(cm_saga_state_name(-1), "unknown");
	ck_assert_str_eq(cm_step_state_name(SAGAWIRE__STEP_STATE__STEP_RETRY_WAIT), "retry_wait");
	ck_assert_str_eq(cm_step_state_name(SAGAWIRE__STEP_STATE__STEP_COMP_FAILED), "comp_failed");
	ck_assert_str_eq(cm_step_state_name(10), "unknown");
	for (int s = SAGAWIRE__SAGA_STATE__SAGA_RUNNING; s <= SAGAWIRE__SAGA_STATE__SAGA_TERMINATED;
	     s++)
		ck_assert_int_eq(cm_saga_state_parse(cm_saga_state_name(s)), s);
	ck_assert_int_eq(cm_saga_state_parse("unknown"), 0);
	ck_assert_int_eq(cm_saga_state_parse("Running"), 0);
	ck_assert_int_eq(cm_saga_state_parse(NULL), 0);
}
END_TEST

START_TEST(utf8_validation_rejects_bad_sequences)
{
	ck_assert(cm_utf8_ok("hello", 5));
	ck_assert(cm_utf8_ok("h\xc3\xa9llo", 6));
	ck_assert(!cm_utf8_ok("h\xc3", 2));
	ck_assert(!cm_utf8_ok("a\0b", 3));
	ck_assert(!cm_utf8_ok("\xed\xa0\x80", 3)); /* surrogate */
	ck_assert(!cm_utf8_ok("\xc0\x80", 2));     /* overlong */
}
END_TEST

START_TEST(utf8_trim_cuts_only_an_incomplete_last_character)
{
	char a[] = "caf\xc3\xa9", b[] = "caf\xc3", c[] = "x\xe2\x82", d[] = "plain",
	     e[] = "\xf0\x9f\x98\x80", f[] = "\xf0\x9f\x98";
	cm_utf8_trim(a);
	cm_utf8_trim(b);
	cm_utf8_trim(c);
	cm_utf8_trim(d);
	cm_utf8_trim(e);
	cm_utf8_trim(f);
	ck_assert_str_eq(a, "caf\xc3\xa9");
	ck_assert_str_eq(b, "caf");
	ck_assert_str_eq(c, "x");
	ck_assert_str_eq(d, "plain");
	ck_assert_str_eq(e, "\xf0\x9f\x98\x80");
	ck_assert_str_eq(f, "");
}
END_TEST

START_TEST(utf8_valid_allows_nul_ok_does_not)
{
	ck_assert(cm_utf8_valid("a\0b", 3));
	ck_assert(!cm_utf8_ok("a\0b", 3));
	ck_assert(cm_utf8_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
	ck_assert(!cm_utf8_valid("\xf4\x90\x80\x80", 4)); /* past it */
	ck_assert(!cm_utf8_valid("\xe0\x9f\xbf", 3));     /* overlong */
	ck_assert(!cm_utf8_valid("\x80", 1));
	ck_assert_uint_eq(cm_utf8_char("\xe2\x82\xac", 3), 3);
	ck_assert_uint_eq(cm_utf8_char("\xe2\x82\xac", 2), 0);
	ck_assert_uint_eq(cm_utf8_char("", 1), 1);
}
END_TEST

START_TEST(utf8_cut_drops_only_a_character_the_cut_split)
{
	const char *s = "ab\xe2\x82\xac";
	ck_assert_uint_eq(cm_utf8_cut(s, 5), 5);
	ck_assert_uint_eq(cm_utf8_cut(s, 4), 2);
	ck_assert_uint_eq(cm_utf8_cut(s, 3), 2);
	ck_assert_uint_eq(cm_utf8_cut(s, 2), 2);
	ck_assert_uint_eq(cm_utf8_cut("a\xff", 2), 2); /* invalid, but not cut */
}
END_TEST

START_TEST(utf8_dup_cleans_and_cuts)
{
	char *a = cm_utf8_dup("ok \xff\xfe \xc3\xa9", 100);
	char *b = cm_utf8_dup("ab\xe2\x82\xac", 4);
	char *c = cm_utf8_dup(NULL, 10);
	ck_assert_str_eq(a, "ok ?? \xc3\xa9");
	ck_assert_str_eq(b, "ab");
	ck_assert_str_eq(c, "");
	free(a);
	free(b);
	free(c);
}
END_TEST

START_TEST(varints_read_back_what_was_written_and_stop_at_ten_bytes)
{
	static const uint64_t vals[] = { 0, 1, 127, 128, 300, UINT32_MAX, UINT64_MAX };
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		uint8_t b[CM_VARINT_MAX];
		uint64_t v = 0;
		size_t n = cm_varint_write(b, vals[i]), pos = 0;
		ck_assert_int_eq(cm_varint_read(b, n, &pos, &v), 0);
		ck_assert_uint_eq(pos, n);
		ck_assert_uint_eq(v, vals[i]);
		pos = 0;
		ck_assert_int_eq(cm_varint_read(b, n - 1, &pos, &v), SAGA_EPROTO);
		ck_assert_uint_eq(pos, 0);
	}
	static const uint8_t eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
		0x80, 0x01 };
	size_t pos = 0;
	uint64_t v;
	ck_assert_int_eq(cm_varint_read(eleven, sizeof(eleven), &pos, &v), SAGA_EPROTO);
	ck_assert_uint_eq(cm_varint_write((uint8_t[CM_VARINT_MAX]) { 0 }, UINT64_MAX), 10);
}
END_TEST

static char *
esc(const char *s, size_t n, unsigned flags)
{
	static char out[256];
	size_t used, k = cm_json_escape(out, sizeof(out) - 1, s, n, flags, &used);
	ck_assert_uint_eq(used, n);
	ck_assert_uint_eq(k, cm_json_escaped_len(s, n, flags));
	out[k] = '\0';
	return out;
}

START_TEST(json_escaping_keeps_each_callers_form)
{
	static const char in[] = "q\" b\\ \n\r\t \b\f \x01\x7f \xc3\xa9 \xff\0";
	size_t n = sizeof(in) - 1;
	/* pbjson */
	ck_assert_str_eq(esc(in, n, CM_JSON_BF),
	    "q\\\" b\\\\ \\n\\r\\t \\b\\f \\u0001\x7f \xc3\xa9 \xff\\u0000");
	/* sagactl */
	ck_assert_str_eq(esc(in, n, CM_JSON_DEL),
	    "q\\\" b\\\\ \\n\\r\\t \\u0008\\u000c \\u0001\\u007f \xc3\xa9 \xff\\u0000");
	/* sagad's JSON and logfmt logs */
	ck_assert_str_eq(esc(in, n, CM_JSON_DEL | CM_JSON_FFFD),
	    "q\\\" b\\\\ \\n\\r\\t \\u0008\\u000c \\u0001\\u007f \xc3\xa9 \\ufffd\\u0000");
	ck_assert_str_eq(esc(in, n, CM_JSON_DEL | CM_JSON_XNN),
	    "q\\\" b\\\\ \\n\\r\\t \\u0008\\u000c \\u0001\\u007f \xc3\xa9 \\xff\\u0000");
}
END_TEST

START_TEST(json_escaping_stops_before_a_character_that_does_not_fit)
{
	char out[8];
	size_t used;
	/* "ab" then a 3-byte character: 4 bytes of room take only "ab". */
	ck_assert_uint_eq(cm_json_escape(out, 4, "ab\xe2\x82\xac", 5, 0, &used), 2);
	ck_assert_uint_eq(used, 2);
	ck_assert_uint_eq(cm_json_escape(out, 7, "a\n\x01", 3, 0, &used), 3);
	ck_assert_uint_eq(used, 2);
	ck_assert_uint_eq(cm_json_escape(out, 0, "a", 1, 0, NULL), 0);
}
END_TEST

START_TEST(base64_round_trips_and_reads_both_alphabets)
{
	static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "+/8=" };
	static const char *const dec[] = { "", "f", "fo", "foo", "foob", "\xfb\xff" };
	for (size_t i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
		char out[16];
		uint8_t back[16];
		size_t n = strlen(dec[i]), k = cm_base64_encode(out, (const uint8_t *)dec[i], n),
		       bl, bad;
		ck_assert_uint_eq(k, CM_BASE64_LEN(n));
		ck_assert_mem_eq(out, enc[i], k);
		ck_assert_int_eq(cm_base64_decode(out, k, back, &bl, &bad), 0);
		ck_assert_uint_eq(bl, n);
		ck_assert_mem_eq(back, dec[i], n);
	}
	uint8_t b[16];
	size_t bl, bad = 0;
	ck_assert_int_eq(cm_base64_decode("-_8", 3, b, &bl, &bad), 0); /* URL-safe, unpadded */
	ck_assert_uint_eq(bl, 2);
	ck_assert_int_eq(b[0], 0xfb);
	ck_assert_int_eq(cm_base64_decode("Zm9v!", 5, b, &bl, &bad), SAGA_EINVAL);
	ck_assert_uint_eq(bad, 4);
	ck_assert_int_eq(cm_base64_decode("Zg=", 3, b, &bl, &bad), SAGA_EINVAL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("common");
	tcase_add_test(tc, every_error_code_has_its_own_text);
	tcase_add_test(tc, state_names_follow_the_wire_values);
	tcase_add_test(tc, utf8_validation_rejects_bad_sequences);
	tcase_add_test(tc, utf8_trim_cuts_only_an_incomplete_last_character);
	tcase_add_test(tc, utf8_valid_allows_nul_ok_does_not);
	tcase_add_test(tc, utf8_cut_drops_only_a_character_the_cut_split);
	tcase_add_test(tc, utf8_dup_cleans_and_cuts);
	tcase_add_test(tc, varints_read_back_what_was_written_and_stop_at_ten_bytes);
	tcase_add_test(tc, json_escaping_keeps_each_callers_form);
	tcase_add_test(tc, json_escaping_stops_before_a_character_that_does_not_fit);
	tcase_add_test(tc, base64_round_trips_and_reads_both_alphabets);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
