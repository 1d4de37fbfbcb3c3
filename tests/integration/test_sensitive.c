/*
 * Integration: sensitive fields (docs/SECURITY.md, "Sensitive fields"). A
 * saga whose input carries a card number and a CVV marked
 * (sagaspec.sensitive), started with sagactl as JSON, run by real test
 * participants: the secrets reach the participants, but never appear in
 * what sagactl shows (start --wait, get, wait, history, list, as text and
 * as --json) nor in sagad's log (at debug level); get shows "[redacted]"
 * where they were and lists them; get --reveal shows them.
 */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

#define WAIT_MS 30000

#define CARD "4111111111111111"
#define CVV  "cvv-7731"

static th_pg *pg;

static void
cluster_up(void)
{
	ck_assert_msg(th_pg_start(&pg) == 0, "cannot start PostgreSQL");
}

static void
cluster_down(void)
{
	th_pg_free(pg);
	pg = NULL;
}

#define CTL(t, out, ...) ths_sagactl((t), (const char *const[]) { __VA_ARGS__, NULL }, (out))

static void
assert_no_secret(const char *what, const char *text)
{
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, CARD) == NULL, "%s shows the card number:\n%s", what, text);
	ck_assert_msg(strstr(text, CVV) == NULL, "%s shows the CVV:\n%s", what, text);
}

/* Runs sagactl, asserts it exits 0 and shows no secret; returns stdout. */
static char *
ctl_clean(ths *t, const char *what, const char *const args[])
{
	char *out = NULL;
	int rc = ths_sagactl(t, args, &out);
	ck_assert_msg(rc == 0, "%s: exit %d: %s", what, rc, out ? out : "");
	assert_no_secret(what, out);
	char *err = ths_sagactl_stderr(t);
	assert_no_secret(what, err);
	free(err);
	return out;
}

START_TEST(sensitive_fields_reach_participants_but_no_output_or_log_line)
{
	ths *t = ths_new_ok(pg, "sens_all");
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);

	char *out = ctl_clean(t, "start --json --wait",
	    (const char *const[]) { "--json", "start", "ittest.Secretive", "--input",
		"{\"note\":\";echo=A;\",\"card\":{\"number\":\"" CARD "\",\"holder\":\"Ann "
		"Lee\"},\"cvv\":\"" CVV "\",\"orderId\":\"o-1\"}",
		"--wait", NULL });
	const char *k = strstr(out, "\"saga_id\":\"");
	ck_assert_msg(k != NULL, "no saga id in %s", out);
	char id[40];
	snprintf(id, sizeof(id), "%.36s", k + 11);
	ck_assert_msg(strstr(out, "completed") != NULL, "%s", out);
	free(out);

	/* get, text and JSON: "[redacted]" where the secrets were. */
	out = ctl_clean(t, "get", (const char *const[]) { "get", id, NULL });
	ck_assert_msg(strstr(out, "[redacted]") && strstr(out, "Ann Lee"), "%s", out);
	ck_assert_msg(strstr(out, "input.card.number") && strstr(out, "input.cvv"), "%s", out);
	free(out);
	out = ctl_clean(t, "get --json", (const char *const[]) { "--json", "get", id, NULL });
	ck_assert_msg(strstr(out, "\"number\":\"[redacted]\"") &&
		strstr(out, "\"cvv\":\"[redacted]\"") && strstr(out, "\"holder\":\"Ann Lee\""),
	    "%s", out);
	ck_assert_msg(strstr(out,
			  "\"redacted\":[\"input.card.number\",\"input.cvv\","
			  "\"steps.A.result.card.number\",\"steps.A.result.cvv\"]"),
	    "%s", out);
	free(out);
	/* --raw --json: base64 of the bytes sagad sent, which hold no secret */
	out = ctl_clean(
	    t, "get --raw --json", (const char *const[]) { "--json", "--raw", "get", id, NULL });
	free(out);
	out = ctl_clean(t, "wait", (const char *const[]) { "wait", id, NULL });
	free(out);
	out = ctl_clean(t, "history", (const char *const[]) { "history", id, NULL });
	free(out);
	out =
	    ctl_clean(t, "history --json", (const char *const[]) { "--json", "history", id, NULL });
	free(out);
	out = ctl_clean(t, "list", (const char *const[]) { "list", NULL });
	ck_assert_msg(strstr(out, id) != NULL, "%s", out);
	free(out);
	out = ctl_clean(t, "list --json", (const char *const[]) { "--json", "list", NULL });
	free(out);

	/* libsaga: the bytes hold no secret; the paths say what is missing. */
	saga_info *info = NULL;
	ck_assert_int_eq(saga_client_get(ths_client(t), id, &info), SAGA_OK);
	ck_assert(memmem(info->input, info->input_len, CARD, strlen(CARD)) == NULL);
	ck_assert(memmem(info->input, info->input_len, "Ann Lee", 7) != NULL);
	ck_assert_uint_eq(info->n_redacted, 4);
	const saga_step_info *a = ths_step_ok(info, "A");
	ck_assert(memmem(a->result, a->result_len, CARD, strlen(CARD)) == NULL);
	saga_info_free(info);

	/* The participants got them: A echoed the input, and B received A's
	 * result with the card in it. */
	ths_journal *j = ths_journal_read_ok(t);
	int b = ths_journal_find(j, 0, id, 'a', "B", "ok");
	ck_assert_int_ge(b, 0);
	const char *dep = ths_jline_dep(&j->lines[b], "A");
	ck_assert_msg(dep != NULL && strstr(dep, CARD) && strstr(dep, CVV),
	    "B did not get A's result in full: %s", dep ? dep : "(none)");
	ths_journal_free(j);

	/* get --reveal shows them. */
	char *rev = NULL;
	ck_assert_int_eq(CTL(t, &rev, "get", id, "--reveal"), 0);
	ck_assert_msg(
	    strstr(rev, CARD) && strstr(rev, CVV) && !strstr(rev, "[redacted]"), "%s", rev);
	free(rev);
	ck_assert_int_eq(CTL(t, &rev, "--json", "get", "--reveal", id), 0);
	ck_assert_msg(
	    strstr(rev, "\"number\":\"" CARD "\"") && !strstr(rev, "\"redacted\""), "%s", rev);
	free(rev);
	ck_assert_int_eq(saga_client_get_revealed(ths_client(t), id, &info), SAGA_OK);
	ck_assert(memmem(info->input, info->input_len, CARD, strlen(CARD)) != NULL);
	ck_assert_uint_eq(info->n_redacted, 0);
	saga_info_free(info);

	/* sagad's log (debug level) never held them. */
	size_t len = 0;
	char *log = th_read_file(ths_sagad_log(t), &len);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(memmem(log, len, CARD, strlen(CARD)) == NULL, "sagad logged the card");
	ck_assert_msg(memmem(log, len, CVV, strlen(CVV)) == NULL, "sagad logged the CVV");
	free(log);
	ths_free(t);
}
END_TEST

static Suite *
sensitive_suite(void)
{
	Suite *s = suite_create("sensitive");
	TCase *tc = tcase_create("sensitive");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, sensitive_fields_reach_participants_but_no_output_or_log_line);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sensitive_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
