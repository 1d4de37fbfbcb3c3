/*
 * Integration: listing sagas. Filters by state, definition, business key
 * and creation time; paging visits every saga exactly once, newest first.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

#define WAIT_MS 30000
#define N       5

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

/*
 * Five sagas, oldest first:
 *   s[0] Linear3  completed
 *   s[1] Linear3  compensated (fail=B)
 *   s[2] Parallel completed
 *   s[3] Linear3  completed, business key "order-42"
 *   s[4] Linear3  running (started after the participants are gone)
 */
typedef struct five {
	ths *t;
	char *id[N];
	int64_t created[N];
} five;

static void
make_five(five *f, const char *db)
{
	static const char *defs[N] = { "ittest.Linear3", "ittest.Linear3", "ittest.Parallel",
		"ittest.Linear3", "ittest.Linear3" };
	static const char *inputs[N] = { "tag=0", "fail=B;tag=1", "tag=2", "tag=3", "tag=4" };
	saga_client *c;

	memset(f, 0, sizeof(*f));
	f->t = ths_new_ok(pg, db);
	ths_sagad_start_ok(f->t, NULL);
	pid_t p = ths_participant_ok(f->t, "main", 16, NULL);
	ths_register_sagas_ok(f->t);
	c = ths_client(f->t);

	for (int i = 0; i < N; i++) {
		saga_start_opts o;
		saga_info *info = NULL;
		memset(&o, 0, sizeof(o));
		if (i == 3)
			o.business_key = "order-42";
		if (i == 4)
			ths_participant_signal(f->t, p, SIGTERM);
		int rv = saga_client_start(
		    c, defs[i], inputs[i], strlen(inputs[i]), &o, &f->id[i], NULL);
		ck_assert_msg(
		    rv == SAGA_OK, "start %d: %s: %s", i, saga_strerror(rv), saga_client_errmsg(c));
		if (i < 4) {
			info = ths_wait_final_ok(f->t, f->id[i], WAIT_MS);
		} else {
			ck_assert_int_eq(saga_client_get(c, f->id[i], &info), SAGA_OK);
			ck_assert_int_eq(info->state, SAGA_STATE_RUNNING);
		}
		f->created[i] = info->created_us;
		saga_info_free(info);
	}
	for (int i = 1; i < N; i++)
		ck_assert_int_gt(f->created[i], f->created[i - 1]);
}

static void
free_five(five *f)
{
	for (int i = 0; i < N; i++)
		saga_string_free(f->id[i]);
	ths_free(f->t);
}

/* Lists with the filter; asserts the result is exactly the sagas whose
 * indexes are in want (any order given; the list must be newest first). */
static void
expect(five *f, const char *what, const saga_list_filter *flt, const int *want, int n_want)
{
	saga_list *l = NULL;
	int rv = saga_client_list(ths_client(f->t), flt, &l);
	ck_assert_msg(rv == SAGA_OK, "%s: %s: %s", what, saga_strerror(rv),
	    saga_client_errmsg(ths_client(f->t)));
	ck_assert_msg((int)l->count == n_want, "%s: %zu sagas, want %d", what, l->count, n_want);
	for (size_t i = 0; i < l->count; i++) {
		int found = 0;
		for (int k = 0; k < n_want; k++)
			found |= strcmp(l->sagas[i].saga_id, f->id[want[k]]) == 0;
		ck_assert_msg(found, "%s: unexpected saga %s", what, l->sagas[i].saga_id);
		if (i > 0)
			ck_assert_msg(l->sagas[i].created_us <= l->sagas[i - 1].created_us,
			    "%s: not newest first", what);
	}
	ck_assert_str_eq(l->next_page_token, "");
	saga_list_free(l);
}

START_TEST(list_filters_by_state_definition_business_key_and_time)
{
	five f;
	saga_list_filter flt;
	make_five(&f, "ls_filters");

	memset(&flt, 0, sizeof(flt));
	expect(&f, "no filter", &flt, (int[]) { 0, 1, 2, 3, 4 }, 5);
	expect(&f, "NULL filter", NULL, (int[]) { 0, 1, 2, 3, 4 }, 5);

	saga_state completed = SAGA_STATE_COMPLETED;
	flt.states = &completed;
	flt.n_states = 1;
	expect(&f, "completed", &flt, (int[]) { 0, 2, 3 }, 3);
	saga_state compensated = SAGA_STATE_COMPENSATED;
	flt.states = &compensated;
	expect(&f, "compensated", &flt, (int[]) { 1 }, 1);
	saga_state running = SAGA_STATE_RUNNING;
	flt.states = &running;
	expect(&f, "running", &flt, (int[]) { 4 }, 1);
	saga_state failed = SAGA_STATE_FAILED;
	flt.states = &failed;
	expect(&f, "failed", &flt, NULL, 0);
	saga_state two[] = { SAGA_STATE_COMPLETED, SAGA_STATE_COMPENSATED };
	flt.states = two;
	flt.n_states = 2;
	expect(&f, "completed or compensated", &flt, (int[]) { 0, 1, 2, 3 }, 4);

	memset(&flt, 0, sizeof(flt));
	flt.definition = "ittest.Parallel";
	expect(&f, "Parallel", &flt, (int[]) { 2 }, 1);
	flt.definition = "ittest.Linear3";
	expect(&f, "Linear3", &flt, (int[]) { 0, 1, 3, 4 }, 4);
	flt.definition = "ittest.Nothing";
	expect(&f, "unknown definition", &flt, NULL, 0);
	flt.definition = "ittest.Linear3";
	flt.states = &completed;
	flt.n_states = 1;
	expect(&f, "Linear3 and completed", &flt, (int[]) { 0, 3 }, 2);

	memset(&flt, 0, sizeof(flt));
	flt.business_key = "order-42";
	expect(&f, "business key", &flt, (int[]) { 3 }, 1);
	flt.business_key = "order-4";
	expect(&f, "business key prefix", &flt, NULL, 0);

	memset(&flt, 0, sizeof(flt));
	flt.created_after_us = f.created[2]; /* inclusive */
	expect(&f, "created from s2", &flt, (int[]) { 2, 3, 4 }, 3);
	memset(&flt, 0, sizeof(flt));
	flt.created_before_us = f.created[2]; /* exclusive */
	expect(&f, "created before s2", &flt, (int[]) { 0, 1 }, 2);
	flt.created_after_us = f.created[1];
	flt.created_before_us = f.created[3];
	expect(&f, "created in [s1, s3)", &flt, (int[]) { 1, 2 }, 2);
	flt.states = &completed;
	flt.n_states = 1;
	expect(&f, "created in [s1, s3) and completed", &flt, (int[]) { 2 }, 1);

	/* the summaries say what the sagas are */
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(ths_client(f.t), NULL, &l), SAGA_OK);
	for (size_t i = 0; i < l->count; i++) {
		const saga_summary *s = &l->sagas[i];
		if (strcmp(s->saga_id, f.id[1]) == 0) {
			ck_assert_int_eq(s->state, SAGA_STATE_COMPENSATED);
			ck_assert_str_eq(s->definition, "ittest.Linear3");
			ck_assert_uint_eq(s->steps_total, 3);
			ck_assert_msg(ths_contains(s->error, "step B"), "error '%s'", s->error);
		} else if (strcmp(s->saga_id, f.id[2]) == 0) {
			ck_assert_int_eq(s->state, SAGA_STATE_COMPLETED);
			ck_assert_uint_eq(s->steps_total, 4);
			ck_assert_uint_eq(s->steps_done, 4);
			ck_assert_uint_eq(s->version, 1);
		} else if (strcmp(s->saga_id, f.id[3]) == 0) {
			ck_assert_str_eq(s->business_key, "order-42");
		} else if (strcmp(s->saga_id, f.id[4]) == 0) {
			ck_assert_int_eq(s->state, SAGA_STATE_RUNNING);
			ck_assert_uint_eq(s->steps_done, 0);
		}
	}
	/* newest first */
	ck_assert_str_eq(l->sagas[0].saga_id, f.id[4]);
	ck_assert_str_eq(l->sagas[4].saga_id, f.id[0]);
	saga_list_free(l);
	free_five(&f);
}
END_TEST

START_TEST(paging_returns_every_saga_exactly_once_newest_first)
{
	five f;
	saga_list_filter flt;
	int seen[N] = { 0 };
	int pages = 0, total = 0;
	char token[1024] = "";
	int64_t last_created = INT64_MAX;

	make_five(&f, "ls_paging");
	for (;;) {
		saga_list *l = NULL;
		memset(&flt, 0, sizeof(flt));
		flt.limit = 2;
		flt.page_token = token[0] ? token : NULL;
		int rv = saga_client_list(ths_client(f.t), &flt, &l);
		ck_assert_msg(rv == SAGA_OK, "page %d: %s: %s", pages, saga_strerror(rv),
		    saga_client_errmsg(ths_client(f.t)));
		ck_assert_uint_le(l->count, 2);
		pages++;
		for (size_t i = 0; i < l->count; i++) {
			int k;
			for (k = 0; k < N && strcmp(f.id[k], l->sagas[i].saga_id) != 0; k++)
				;
			ck_assert_msg(k < N, "unknown saga %s", l->sagas[i].saga_id);
			seen[k]++;
			total++;
			ck_assert_int_le(l->sagas[i].created_us, last_created);
			last_created = l->sagas[i].created_us;
		}
		ck_assert_msg(strlen(l->next_page_token) < sizeof(token), "page token too long");
		snprintf(token, sizeof(token), "%s", l->next_page_token);
		saga_list_free(l);
		if (token[0] == '\0')
			break;
		ck_assert_msg(pages < 10, "paging does not end");
	}
	ck_assert_int_eq(total, N);
	for (int k = 0; k < N; k++)
		ck_assert_msg(seen[k] == 1, "saga %d seen %d times", k, seen[k]);
	ck_assert_int_ge(pages, 3);

	/* paging with a filter */
	saga_state completed = SAGA_STATE_COMPLETED;
	memset(seen, 0, sizeof(seen));
	token[0] = '\0';
	total = 0;
	for (pages = 0;; pages++) {
		saga_list *l = NULL;
		memset(&flt, 0, sizeof(flt));
		flt.limit = 1;
		flt.states = &completed;
		flt.n_states = 1;
		flt.page_token = token[0] ? token : NULL;
		ck_assert_int_eq(saga_client_list(ths_client(f.t), &flt, &l), SAGA_OK);
		for (size_t i = 0; i < l->count; i++) {
			int k;
			for (k = 0; k < N && strcmp(f.id[k], l->sagas[i].saga_id) != 0; k++)
				;
			ck_assert_int_lt(k, N);
			ck_assert_int_eq(l->sagas[i].state, SAGA_STATE_COMPLETED);
			seen[k]++;
			total++;
		}
		snprintf(token, sizeof(token), "%s", l->next_page_token);
		saga_list_free(l);
		if (token[0] == '\0')
			break;
		ck_assert_msg(pages < 10, "paging does not end");
	}
	ck_assert_int_eq(total, 3);
	ck_assert_int_eq(seen[0] + seen[2] + seen[3], 3);

	/* a page token that is not one */
	saga_list *l = NULL;
	memset(&flt, 0, sizeof(flt));
	flt.page_token = "this is not a page token";
	ck_assert_int_eq(saga_client_list(ths_client(f.t), &flt, &l), SAGA_EINVAL);
	ck_assert_ptr_null(l);
	free_five(&f);
}
END_TEST

static Suite *
list_suite(void)
{
	Suite *s = suite_create("list");
	TCase *tc = tcase_create("list");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, list_filters_by_state_definition_business_key_and_time);
	tcase_add_test(tc, paging_returns_every_saga_exactly_once_newest_first);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(list_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
