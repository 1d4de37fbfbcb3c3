/*
 * Integration: operating sagad. Trace context from a start to every
 * handler, the fields of sagad's log lines (logfmt and JSON), SIGHUP
 * reloading the config file, refusing root, and SIGTERM under load losing
 * nothing. Real PostgreSQL, the real sagad, real test-participant
 * processes (tests/lib/th_sagad.h).
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "saga.h"
#include "th.h"
#include "th_sagad.h"

#define WAIT_MS 30000

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

static ths *
world_args(const char *db, const char *const extra[])
{
	ths *t = ths_new_ok(pg, db);
	ths_sagad_start_ok(t, extra);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	return t;
}

/* The lines of sagad's log that mention text (a saga id). */
static size_t
log_lines_with(ths *t, const char *text, char ***out)
{
	size_t len = 0, n = 0;
	char *log = th_read_file(ths_sagad_log(t), &len), *save = NULL;
	char **v = NULL;
	ck_assert_ptr_nonnull(log);
	for (char *l = strtok_r(log, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		if (strstr(l, text) == NULL)
			continue;
		v = realloc(v, (n + 1) * sizeof(*v));
		v[n++] = strdup(l);
	}
	free(log);
	*out = v;
	return n;
}

static void
free_lines(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* "0190...-..." -> "0190..." (32 hex digits). */
static void
id_hex(const char *id, char out[33])
{
	size_t k = 0;
	for (const char *p = id; *p && k < 32; p++)
		if (*p != '-')
			out[k++] = *p;
	out[k] = '\0';
}

/* ---- trace context and log fields ---------------------------------------------- */

#define GIVEN_TRACE  "4bf92f3577b34da6a3ce929d0e0e4736"
#define GIVEN_PARENT "00f067aa0ba902b7"
#define GIVEN_TP     "00-" GIVEN_TRACE "-" GIVEN_PARENT "-01"

START_TEST(trace_context_given_at_start_reaches_every_handler_and_every_log_line)
{
	ths *t = world_args("ops_trace", NULL);
	saga_start_opts o = { .traceparent = GIVEN_TP };
	char *id = NULL;
	/* C fails: actions A B C and compensations UndoB UndoA all run. */
	ck_assert_int_eq(
	    saga_client_start(ths_client(t), "ittest.Linear3", "fail=C", 6, &o, &id, NULL),
	    SAGA_OK);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	ck_assert_str_eq(info->traceparent, GIVEN_TP);

	ths_journal *j = ths_journal_read_ok(t);
	int seen = 0;
	char parents[16][17];
	for (size_t i = 0; i < j->n; i++) {
		const ths_jline *l = &j->lines[i];
		if (strcmp(l->saga_id, id) != 0)
			continue;
		/* Same trace and flags; a parent id of sagad's own, per attempt. */
		ck_assert_msg(strncmp(l->traceparent, "00-" GIVEN_TRACE "-", 36) == 0 &&
			strlen(l->traceparent) == 55 && strcmp(l->traceparent + 52, "-01") == 0,
		    "%c %s got traceparent %s", l->kind, l->rpc, l->traceparent);
		ck_assert_msg(strncmp(l->traceparent + 36, GIVEN_PARENT, 16) != 0,
		    "the handler's parent id is the caller's own span");
		ck_assert_int_lt(seen, 16);
		memcpy(parents[seen], l->traceparent + 36, 16);
		parents[seen][16] = '\0';
		for (int k = 0; k < seen; k++)
			ck_assert_msg(strcmp(parents[k], parents[seen]) != 0,
			    "two attempts share the parent id %s", parents[seen]);
		seen++;
	}
	ck_assert_int_eq(seen, 5); /* A B C UndoB UndoA */
	ths_journal_free(j);

	/* Every sagad log line about the saga carries its trace id; a line
	 * about a step names the step and its participant too. */
	char **lines;
	size_t n = log_lines_with(t, id, &lines), with_step = 0;
	ck_assert_uint_ge(n, 8); /* started, dispatches, failure, compensating, ... */
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(strstr(lines[i], " trace_id=" GIVEN_TRACE) != NULL,
		    "log line without the trace id: %s", lines[i]);
		ck_assert_msg(strncmp(lines[i], "ts=", 3) == 0 && strstr(lines[i], " level=") &&
			strstr(lines[i], " msg="),
		    "log line without ts/level/msg: %s", lines[i]);
		if (strstr(lines[i], " step=") != NULL) {
			with_step++;
			ck_assert_msg(strstr(lines[i], " participant=p") != NULL,
			    "step line without its participant: %s", lines[i]);
		}
	}
	ck_assert_uint_ge(with_step, 5);
	free_lines(lines, n);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(saga_started_without_a_trace_gets_one_named_after_it_in_json_logs)
{
	const char *const extra[] = { "--log-format", "json", NULL };
	ths *t = world_args("ops_trace_json", extra);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=json");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	char hex[33], want[80];
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	id_hex(id, hex);
	ck_assert_msg(
	    strlen(info->traceparent) == 55 && strncmp(info->traceparent + 3, hex, 32) == 0,
	    "traceparent %s does not carry the saga id %s", info->traceparent, id);

	ths_journal *j = ths_journal_read_ok(t);
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->lines[i].saga_id, id) == 0)
			ck_assert_int_eq(strncmp(j->lines[i].traceparent + 3, hex, 32), 0);
	ths_journal_free(j);

	char **lines;
	size_t n = log_lines_with(t, id, &lines);
	ck_assert_uint_ge(n, 4);
	snprintf(want, sizeof(want), "\"trace_id\":\"%s\"", hex);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(lines[i]);
		ck_assert_msg(lines[i][0] == '{' && lines[i][len - 1] == '}',
		    "not one JSON object: %s", lines[i]);
		ck_assert_msg(strncmp(lines[i], "{\"ts\":\"", 7) == 0 &&
			strstr(lines[i], "\"level\":\"") && strstr(lines[i], "\"msg\":\""),
		    "no ts/level/msg: %s", lines[i]);
		ck_assert_msg(strstr(lines[i], want) != NULL, "no trace id: %s", lines[i]);
	}
	free_lines(lines, n);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(malformed_traceparent_is_refused_saying_what_one_looks_like)
{
	static const char *const bad[] = {
		"00-" GIVEN_TRACE "-" GIVEN_PARENT,                        /* no flags */
		"00-00000000000000000000000000000000-" GIVEN_PARENT "-01", /* zero trace */
		"00-" GIVEN_TRACE "-0000000000000000-01",                  /* zero parent */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-" GIVEN_PARENT "-01", /* upper case */
		"ff-" GIVEN_TRACE "-" GIVEN_PARENT "-01",                  /* version ff */
		"00-" GIVEN_TRACE "-" GIVEN_PARENT "-01-extra",            /* 00 is exact */
		"traceparent",
	};
	ths *t = world_args("ops_trace_bad", NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		saga_start_opts o = { .traceparent = bad[i] };
		char *id = NULL;
		ck_assert_int_eq(
		    saga_client_start(ths_client(t), "ittest.Linear3", "", 0, &o, &id, NULL),
		    SAGA_EINVAL);
		ck_assert_msg(strstr(saga_client_errmsg(ths_client(t)), "W3C traceparent") != NULL,
		    "%s: %s", bad[i], saga_client_errmsg(ths_client(t)));
		ck_assert_ptr_null(id);
	}
	/* A later version's extra fields are ignored, as the spec asks. */
	saga_start_opts o = { .traceparent = "01-" GIVEN_TRACE "-" GIVEN_PARENT "-01-extra" };
	char *id = NULL;
	ck_assert_int_eq(
	    saga_client_start(ths_client(t), "ittest.Linear3", "", 0, &o, &id, NULL), SAGA_OK);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

static Suite *
operations_suite(void)
{
	Suite *s = suite_create("operations");
	TCase *tc = tcase_create("operations");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, trace_context_given_at_start_reaches_every_handler_and_every_log_line);
	tcase_add_test(tc, saga_started_without_a_trace_gets_one_named_after_it_in_json_logs);
	tcase_add_test(tc, malformed_traceparent_is_refused_saying_what_one_looks_like);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(operations_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
