/*
 * Unit: server/token.c, the per-dispatch tokens. A token is the first 16
 * bytes of HMAC-SHA256 over the attempt's coordinates (checked against
 * OpenSSL's own HMAC), binds each coordinate and the key, and the check
 * refuses anything but the exact token.
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

static uint8_t key[TOK_KEY_LEN], id[16];

static void
setup(void)
{
	for (int i = 0; i < TOK_KEY_LEN; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)(0xa0 + i);
	ck_assert_int_eq(tok_set_key(key), 0);
}

static void
teardown(void)
{
	tok_fini();
}

START_TEST(a_token_is_the_truncated_hmac_sha256_of_the_attempt)
{
	static const struct {
		uint32_t step, attempt;
		uint8_t kind;
	} cases[] = { { 0, 1, 1 }, { 3, 2, 2 }, { 0xffffffffu, 0x01020304u, 255 } };
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint8_t m[25], want[32], got[TOK_LEN];
		unsigned wl = 0;
		memcpy(m, id, 16);
		m[16] = (uint8_t)(cases[c].step >> 24), m[17] = (uint8_t)(cases[c].step >> 16);
		m[18] = (uint8_t)(cases[c].step >> 8), m[19] = (uint8_t)cases[c].step;
		m[20] = cases[c].kind;
		m[21] = (uint8_t)(cases[c].attempt >> 24),
		m[22] = (uint8_t)(cases[c].attempt >> 16);
		m[23] = (uint8_t)(cases[c].attempt >> 8), m[24] = (uint8_t)cases[c].attempt;
		ck_assert_ptr_nonnull(
		    HMAC(EVP_sha256(), key, TOK_KEY_LEN, m, sizeof(m), want, &wl));
		tok_make(id, cases[c].step, cases[c].kind, cases[c].attempt, got);
		ck_assert_mem_eq(got, want, TOK_LEN);
		ck_assert(
		    tok_check(id, cases[c].step, cases[c].kind, cases[c].attempt, want, TOK_LEN));
	}
}
END_TEST

START_TEST(a_token_proves_only_its_own_saga_step_kind_attempt_and_key)
{
	uint8_t t[TOK_LEN], other_id[16];
	tok_make(id, 2, 1, 3, t);
	ck_assert(tok_check(id, 2, 1, 3, t, TOK_LEN));
	memcpy(other_id, id, 16);
	other_id[15] ^= 1;
	ck_assert(!tok_check(other_id, 2, 1, 3, t, TOK_LEN));
	ck_assert(!tok_check(id, 1, 1, 3, t, TOK_LEN));
	ck_assert(!tok_check(id, 2, 2, 3, t, TOK_LEN));
	ck_assert(!tok_check(id, 2, 1, 4, t, TOK_LEN));
	ck_assert(!tok_check(id, 2, 1, 2, t, TOK_LEN));
	/* another key (another database): the same attempt, another token */
	uint8_t k2[TOK_KEY_LEN];
	memcpy(k2, key, sizeof(k2));
	k2[0] ^= 0x80;
	ck_assert_int_eq(tok_set_key(k2), 0);
	ck_assert(!tok_check(id, 2, 1, 3, t, TOK_LEN));
	ck_assert_int_eq(tok_set_key(key), 0);
	ck_assert(tok_check(id, 2, 1, 3, t, TOK_LEN));
}
END_TEST

START_TEST(the_check_refuses_a_missing_short_long_or_altered_token)
{
	uint8_t t[TOK_LEN + 4];
	tok_make(id, 0, 1, 1, t);
	memset(t + TOK_LEN, 0, 4);
	ck_assert(!tok_check(id, 0, 1, 1, NULL, 0));
	ck_assert(!tok_check(id, 0, 1, 1, t, 0));
	ck_assert(!tok_check(id, 0, 1, 1, t, TOK_LEN - 1));
	ck_assert(!tok_check(id, 0, 1, 1, t, TOK_LEN + 4));
	for (int i = 0; i < TOK_LEN; i++) {
		t[i] ^= 0x01;
		ck_assert(!tok_check(id, 0, 1, 1, t, TOK_LEN));
		t[i] ^= 0x01;
	}
	ck_assert(tok_check(id, 0, 1, 1, t, TOK_LEN));
}
END_TEST

START_TEST(without_a_key_every_token_is_refused)
{
	uint8_t t[TOK_LEN], zero[TOK_LEN] = { 0 };
	tok_fini();
	tok_make(id, 0, 1, 1, t);
	ck_assert_mem_eq(t, zero, TOK_LEN);
	ck_assert(!tok_check(id, 0, 1, 1, t, TOK_LEN));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("token");
	TCase *tc = tcase_create("token");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, a_token_is_the_truncated_hmac_sha256_of_the_attempt);
	tcase_add_test(tc, a_token_proves_only_its_own_saga_step_kind_attempt_and_key);
	tcase_add_test(tc, the_check_refuses_a_missing_short_long_or_altered_token);
	tcase_add_test(tc, without_a_key_every_token_is_refused);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
