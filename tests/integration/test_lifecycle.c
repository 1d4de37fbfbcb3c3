/*
 * Integration: the life of a saga end to end. A real PostgreSQL (one
 * cluster for this executable, a fresh database per test), the real sagad,
 * real test-participant processes and libsaga's client, over tcp on loopback.
 * What the participants did is read from their journal (see
 * tests/participant/test_participant.c): which handler ran, how often, in
 * which order, with which results of earlier steps.
 */
#define _GNU_SOURCE
#include <check.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* sagad, one participant process serving every participant name, and the
 * test sagas registered. */
static ths *
world(const char *db)
{
	ths *t = ths_new_ok(pg, db);
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	return t;
}

/* "<rpc>@<id>": what test-participant returns from an action. */
static char *
result_of(const char *rpc, const char *id)
{
	char *s = NULL;
	ck_assert_int_ge(asprintf(&s, "%s@%s", rpc, id), 0);
	return s;
}

static void
assert_result(const saga_step_info *st, const char *rpc, const char *id)
{
	char *want = result_of(rpc, id);
	ck_assert_uint_eq(st->result_len, strlen(want));
	ck_assert_msg(memcmp(st->result, want, st->result_len) == 0, "step %s result is '%.*s'",
	    st->name, (int)st->result_len, (const char *)st->result);
	free(want);
}

/* The journal line of the one `outcome` run of kind/rpc for saga id. */
static const ths_jline *
only_line(const ths_journal *j, const char *id, char kind, const char *rpc, const char *outcome)
{
	ck_assert_msg(ths_journal_count(j, id, kind, rpc, outcome) == 1,
	    "journal: %d lines of %c %s %s for %s, want 1",
	    ths_journal_count(j, id, kind, rpc, outcome), kind, rpc, outcome ? outcome : "*", id);
	return &j->lines[ths_journal_find(j, 0, id, kind, rpc, outcome)];
}

static int
line_index(const ths_journal *j, const char *id, char kind, const char *rpc)
{
	int i = ths_journal_find(j, 0, id, kind, rpc, NULL);
	ck_assert_msg(i >= 0, "journal: no %c %s for %s", kind, rpc, id);
	return i;
}

static void
assert_dep(const ths_jline *l, const char *step, const char *rpc, const char *id)
{
	char *want = result_of(rpc, id);
	const char *got = ths_jline_dep(l, step);
	ck_assert_msg(
	    got != NULL, "%c %s of %s did not receive the result of %s", l->kind, l->rpc, id, step);
	ck_assert_str_eq(got, want);
	free(want);
}

/* ---- success ----------------------------------------------------------- */

START_TEST(linear_saga_completes_in_order_passing_results_forward)
{
	ths *t = world("lc_success");
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=success");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	static const char *steps[] = { "A", "B", "C" };

	ck_assert_str_eq(saga_state_name(info->state), saga_state_name(SAGA_STATE_COMPLETED));
	ck_assert_str_eq(info->definition, "ittest.Linear3");
	ck_assert_uint_eq(info->n_steps, 3);
	ck_assert_str_eq(info->error, "");
	ck_assert_uint_eq(info->input_len, strlen("tag=success"));
	for (int i = 0; i < 3; i++) {
		const saga_step_info *st = ths_step_ok(info, steps[i]);
		ck_assert_int_eq(st->state, SAGA_STEP_SUCCEEDED);
		ck_assert_uint_eq(st->attempts, 1);
		ck_assert_uint_eq(st->comp_attempts, 0);
		ck_assert_uint_eq(st->completion_seq, (uint32_t)i + 1);
		ck_assert_int_gt(st->started_us, 0);
		ck_assert_int_ge(st->finished_us, st->started_us);
		assert_result(st, steps[i], id);
	}
	ck_assert_str_eq(ths_step_ok(info, "B")->depends_on[0], "A");

	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 0, NULL, NULL), 3);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', NULL, NULL), 0);
	const ths_jline *a = only_line(j, id, 'a', "A", "ok");
	const ths_jline *b = only_line(j, id, 'a', "B", "ok");
	const ths_jline *c = only_line(j, id, 'a', "C", "ok");
	ck_assert_int_lt(line_index(j, id, 'a', "A"), line_index(j, id, 'a', "B"));
	ck_assert_int_lt(line_index(j, id, 'a', "B"), line_index(j, id, 'a', "C"));
	ck_assert_uint_eq(a->attempt, 1);
	ck_assert_uint_eq(a->n_deps, 0);
	assert_dep(b, "A", "A", id);
	assert_dep(c, "B", "B", id);
	ck_assert_ptr_null(ths_jline_dep(c, "A")); /* only its own dependency */
	ck_assert_int_ge(b->t0_us, a->t1_us);
	ck_assert_int_ge(c->t0_us, b->t1_us);

	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- business failure at each step ------------------------------------- */

/* _i = 0, 1, 2: fail at A, B, C. */
START_TEST(business_failure_compensates_exactly_the_completed_steps_newest_first)
{
	static const char *steps[] = { "A", "B", "C" };
	static const char *undo[] = { "UndoA", "UndoB", "UndoC" };
	char db[32], input[32], want[32];
	int k = _i;

	snprintf(db, sizeof(db), "lc_fail_%s", steps[k]);
	snprintf(input, sizeof(input), "fail=%s", steps[k]);
	ths *t = world(db);
	char *id = ths_start_ok(t, "ittest.Linear3", input);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	snprintf(want, sizeof(want), "step %s", steps[k]);
	ck_assert_msg(
	    ths_contains(info->error, want), "saga error '%s' does not name %s", info->error, want);
	for (int i = 0; i < 3; i++) {
		const saga_step_info *st = ths_step_ok(info, steps[i]);
		if (i < k) {
			ck_assert_msg(st->state == SAGA_STEP_COMPENSATED, "step %s is %s", steps[i],
			    saga_step_state_name(st->state));
			ck_assert_uint_eq(st->comp_attempts, 1);
		} else if (i == k) {
			ck_assert_msg(st->state == SAGA_STEP_FAILED, "step %s is %s", steps[i],
			    saga_step_state_name(st->state));
			ck_assert_uint_eq(st->attempts, 1); /* a business failure is not retried */
			ck_assert_uint_eq(st->comp_attempts, 0);
			ck_assert_msg(ths_contains(st->last_error, "business failure"),
			    "last_error '%s'", st->last_error);
		} else {
			ck_assert_int_eq(st->state, SAGA_STEP_PENDING);
			ck_assert_uint_eq(st->attempts, 0);
		}
	}

	ths_journal *j = ths_journal_read_ok(t);
	only_line(j, id, 'a', steps[k], "fail");
	ck_assert_int_eq(ths_journal_count(j, id, 'c', undo[k], NULL), 0);
	for (int i = k + 1; i < 3; i++)
		ck_assert_int_eq(ths_journal_count(j, id, 'a', steps[i], NULL), 0);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', NULL, NULL), k);
	int prev = line_index(j, id, 'a', steps[k]);
	for (int i = k - 1; i >= 0; i--) {
		/* Newest first, each after the failure, with its own result. */
		const ths_jline *l = only_line(j, id, 'c', undo[i], "ok");
		int at = line_index(j, id, 'c', undo[i]);
		ck_assert_msg(at > prev, "%s ran out of order", undo[i]);
		prev = at;
		assert_dep(l, steps[i], steps[i], id);
	}
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- retries ------------------------------------------------------------ */

START_TEST(retryable_errors_are_retried_until_success)
{
	ths *t = world("lc_retry_ok");
	char *id = ths_start_ok(t, "ittest.Linear3", "retry=B:2");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	const saga_step_info *b = ths_step_ok(info, "B");
	ck_assert_int_eq(b->state, SAGA_STEP_SUCCEEDED);
	ck_assert_uint_eq(b->attempts, 3);
	ck_assert_uint_eq(ths_step_ok(info, "A")->attempts, 1);
	ck_assert_uint_eq(ths_step_ok(info, "C")->attempts, 1);
	assert_result(b, "B", id);

	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'a', "B", "retry"), 2);
	const ths_jline *ok = only_line(j, id, 'a', "B", "ok");
	ck_assert_uint_eq(ok->attempt, 3);
	/* attempts are numbered 1, 2, 3 in order */
	int i1 = ths_journal_find(j, 0, id, 'a', "B", "retry");
	int i2 = ths_journal_find(j, (size_t)i1 + 1, id, 'a', "B", "retry");
	ck_assert_uint_eq(j->lines[i1].attempt, 1);
	ck_assert_uint_eq(j->lines[i2].attempt, 2);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', NULL, NULL), 0);
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(exhausted_retries_compensate_the_uncertain_step_then_earlier_ones)
{
	ths *t = world("lc_retry_exhausted");
	char *id = ths_start_ok(t, "ittest.Linear3", "retry=B:5");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_msg(ths_contains(info->error, "step B"), "error '%s'", info->error);
	const saga_step_info *b = ths_step_ok(info, "B");
	ck_assert_uint_eq(b->attempts, 3); /* max_attempts 3 */
	ck_assert_msg(b->state == SAGA_STEP_COMPENSATED, "B is %s", saga_step_state_name(b->state));
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_COMPENSATED);
	ck_assert_int_eq(ths_step_ok(info, "C")->state, SAGA_STEP_PENDING);

	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'a', "B", "retry"), 3);
	ck_assert_int_eq(ths_journal_count(j, id, 'a', "B", "ok"), 0);
	ck_assert_int_eq(ths_journal_count(j, id, 'a', "C", NULL), 0);
	only_line(j, id, 'c', "UndoB", "ok");
	only_line(j, id, 'c', "UndoA", "ok");
	ck_assert_int_lt(line_index(j, id, 'c', "UndoB"), line_index(j, id, 'c', "UndoA"));
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(compensation_retryable_errors_are_retried_until_success)
{
	ths *t = world("lc_compfail");
	char *id = ths_start_ok(t, "ittest.Linear3", "fail=C;compfail=A:3");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	const saga_step_info *a = ths_step_ok(info, "A");
	ck_assert_int_eq(a->state, SAGA_STEP_COMPENSATED);
	ck_assert_uint_eq(a->comp_attempts, 4);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", "retry"), 3);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", "ok"), 1);
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(compensation_exhausting_its_retries_parks_the_saga_failed)
{
	ths *t = world("lc_parked");
	/* compensation_retry max_attempts is 5 */
	char *id = ths_start_ok(t, "ittest.Linear3", "fail=C;compfail=B:99");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_FAILED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_msg(ths_contains(info->error, "UndoB") || ths_contains(info->error, "step B"),
	    "error '%s' does not name the compensation", info->error);
	const saga_step_info *b = ths_step_ok(info, "B");
	ck_assert_int_eq(b->state, SAGA_STEP_COMP_FAILED);
	ck_assert_uint_eq(b->comp_attempts, 5);
	/* A is not compensated before B is: dependents first. */
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_SUCCEEDED);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoB", "retry"), 5);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", NULL), 0);
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- timeouts ----------------------------------------------------------- */

START_TEST(step_timing_out_on_every_attempt_is_compensated_as_uncertain)
{
	ths *t = world("lc_timeout");
	char *id = ths_start_ok(t, "ittest.Timeouty", "sleep=T:1500");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	const saga_step_info *st = ths_step_ok(info, "T");
	ck_assert_uint_eq(st->attempts, 2);
	ck_assert_msg(
	    ths_contains(st->last_error, "timed out") || ths_contains(info->error, "timed out"),
	    "neither last_error '%s' nor error '%s' says it timed out", st->last_error,
	    info->error);
	ck_assert_msg(
	    st->state == SAGA_STEP_COMPENSATED, "T is %s", saga_step_state_name(st->state));
	/* Both attempts reached the participant; their late replies change
	 * nothing. */
	ths_journal_wait_ok(t, id, 'a', "T", "ok", 2, WAIT_MS);
	ths_journal *j = ths_journal_read_ok(t);
	int i1 = ths_journal_find(j, 0, id, 'a', "T", NULL);
	int i2 = ths_journal_find(j, (size_t)i1 + 1, id, 'a', "T", NULL);
	ck_assert_uint_eq(j->lines[i1].attempt, 1);
	ck_assert_uint_eq(j->lines[i2].attempt, 2);
	/* The second attempt started after the first timed out (300 ms), not
	 * after the first's late reply. */
	ck_assert_int_ge(j->lines[i2].t0_us - j->lines[i1].t0_us, 250 * 1000);
	ck_assert_int_lt(j->lines[i2].t0_us, j->lines[i1].t1_us);
	/* An uncertain step has no result: its compensation is handed none
	 * (saga_step_find_result gives NULL), not an empty one. */
	const ths_jline *undo = only_line(j, id, 'c', "UndoT", "ok");
	for (size_t k = 0; k < undo->n_deps; k++)
		ck_assert_msg(strcmp(undo->dep_step[k], "T") != 0,
		    "the compensation of uncertain T was handed a result for T ('%s')",
		    undo->dep_val[k]);
	ths_journal_free(j);
	saga_info_free(info);
	ck_assert_int_eq(saga_client_get(ths_client(t), id, &info), SAGA_OK);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- operator actions and history ---------------------------------------- */

/* The index of the first event of type (and step, if given) at or after
 * from; -1 if none. */
static int
event_at(const saga_info *info, size_t from, const char *type, const char *step)
{
	for (size_t i = from; i < info->n_events; i++)
		if (strcmp(info->events[i].type, type) == 0 &&
		    (step == NULL || strcmp(info->events[i].step, step) == 0))
			return (int)i;
	return -1;
}

START_TEST(parked_saga_is_completed_by_an_operator_retry_after_the_fix)
{
	ths *t = world("lc_op_retry");
	saga_client *c = ths_client(t);
	char broken[1024], input[1200];
	snprintf(broken, sizeof(broken), "%s/undo-broken", ths_dir(t));
	ck_assert_int_eq(th_write_file(broken, "x", 1), 0);
	/* C fails; UndoB fails until the file is gone: 5 attempts, parked. */
	snprintf(input, sizeof(input), "fail=C;compfailwhile=%s", broken);
	char *id = ths_start_ok(t, "ittest.Linear3", input);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_FAILED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_int_eq(ths_step_ok(info, "B")->state, SAGA_STEP_COMP_FAILED);
	ck_assert_uint_eq(ths_step_ok(info, "B")->comp_attempts, 5);
	ck_assert_int_ge(event_at(info, 0, "parked", NULL), 0);
	saga_info_free(info);

	saga_state after = SAGA_STATE_UNKNOWN;
	/* Refused: C failed for certain; no such step; no such saga. */
	ck_assert_int_eq(saga_client_retry_step(c, id, "C", NULL, &after), SAGA_ESTATE);
	ck_assert_msg(ths_contains(saga_client_errmsg(c), "failed"), "%s", saga_client_errmsg(c));
	ck_assert_int_eq(saga_client_retry_step(c, id, "Nope", NULL, &after), SAGA_EINVAL);
	ck_assert_int_eq(
	    saga_client_retry_step(c, "0190a0b0-0000-7000-8000-000000000009", "B", NULL, &after),
	    SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_client_skip_step(c, id, "B", NULL, &after), SAGA_EINVAL);

	/* The fix, then the retry: UndoB then UndoA run and it compensates. */
	ck_assert_int_eq(unlink(broken), 0);
	int rv = saga_client_retry_step(c, id, "B", "undo service fixed", &after);
	ck_assert_msg(rv == SAGA_OK, "retry: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	ck_assert_msg(after == SAGA_STATE_COMPENSATING || after == SAGA_STATE_COMPENSATED, "%s",
	    saga_state_name(after));
	info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	/* A fresh budget, but the numbers go on: attempt 6 after 5. */
	ck_assert_uint_eq(ths_step_ok(info, "B")->comp_attempts, 6);
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_COMPENSATED);
	/* The history tells it in order. */
	int started = event_at(info, 0, "started", NULL);
	int failed = event_at(info, 0, "failed", "C");
	int parked = event_at(info, 0, "parked", NULL);
	int op = event_at(info, 0, "operator", "B");
	int undone_b = event_at(info, (size_t)(op < 0 ? 0 : op), "compensated step", "B");
	int end = event_at(info, 0, "compensated", NULL);
	ck_assert_msg(started == 0 && failed > started && parked > failed && op > parked &&
		undone_b > op && end > undone_b,
	    "history order: started %d, C failed %d, parked %d, operator %d, B undone %d, end %d",
	    started, failed, parked, op, undone_b, end);
	ck_assert_msg(ths_contains(info->events[op].detail, "undo service fixed"), "%s",
	    info->events[op].detail);
	ck_assert_int_eq(event_at(info, 0, "compensation attempt failed", "B") > 0, 1);
	saga_info_free(info);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_lt(ths_journal_find(j, 0, id, 'c', "UndoB", "ok"),
	    ths_journal_find(j, 0, id, 'c', "UndoA", "ok"));
	ths_journal_free(j);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(skipping_a_failed_compensation_moves_the_saga_on_and_is_recorded)
{
	ths *t = world("lc_op_skip");
	saga_client *c = ths_client(t);
	char broken[1024], input[1200];
	snprintf(broken, sizeof(broken), "%s/undo-broken", ths_dir(t));
	ck_assert_int_eq(th_write_file(broken, "x", 1), 0);
	snprintf(input, sizeof(input), "fail=C;compfailwhile=%s", broken);
	char *id = ths_start_ok(t, "ittest.Linear3", input);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_FAILED);
	saga_info_free(info);

	/* B undone by hand: the saga goes on to UndoA, which is still broken,
	 * and parks again at A. */
	saga_state after;
	int rv = saga_client_skip_step(c, id, "B", "refunded by hand, ticket 42", &after);
	ck_assert_msg(rv == SAGA_OK, "skip: %s: %s", saga_strerror(rv), saga_client_errmsg(c));
	long long t0 = th_now_ms();
	for (;;) {
		ck_assert_int_eq(saga_client_get(c, id, &info), SAGA_OK);
		if (info->state == SAGA_STATE_FAILED &&
		    ths_step_ok(info, "A")->state == SAGA_STEP_COMP_FAILED)
			break;
		saga_info_free(info);
		ck_assert_int_lt(th_now_ms() - t0, WAIT_MS);
		usleep(50 * 1000);
	}
	ck_assert_int_eq(ths_step_ok(info, "B")->state, SAGA_STEP_COMPENSATED);
	ck_assert_msg(ths_contains(ths_step_ok(info, "B")->last_error, "ticket 42"), "%s",
	    ths_step_ok(info, "B")->last_error);
	saga_info_free(info);

	ck_assert_int_eq(unlink(broken), 0);
	ck_assert_int_eq(saga_client_retry_step(c, id, "A", NULL, &after), SAGA_OK);
	info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	int op1 = event_at(info, 0, "operator", "B");
	int op2 = event_at(info, 0, "operator", "A");
	ck_assert_msg(op1 > 0 && op2 > op1, "operator events at %d and %d", op1, op2);
	ck_assert_msg(
	    ths_contains(info->events[op1].detail, "skip"), "%s", info->events[op1].detail);
	saga_info_free(info);
	/* UndoB never succeeded at the participant: it was skipped. */
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoB", "ok"), 0);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", "ok"), 1);
	ths_journal_free(j);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- circuit breaker ------------------------------------------------------ */

START_TEST(breaker_stops_dispatch_to_a_failing_participant_then_probes_and_resumes)
{
	ths *t = ths_new_ok(pg, "lc_breaker");
	const char *args[] = { "--breaker-min-calls", "4", "--breaker-failure-pct", "50",
		"--breaker-cooloff-ms", "2500", NULL };
	ths_sagad_start_ok(t, args);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	enum { N = 4 };
	char *ids[N];
	char input[64];

	/* Each B fails its first attempt: 4 of 4 failures open pB's breaker.
	 * The retries, due 1 s later, wait for the 2.5 s cool-off instead. */
	for (int i = 0; i < N; i++) {
		snprintf(input, sizeof(input), "retry=B:1;tag=%d", i);
		ids[i] = ths_start_ok(t, "ittest.Breakery", input);
	}
	/* The status shows it open, with the retries waiting in sagad. */
	long long t0 = th_now_ms();
	for (;;) {
		saga_participant_list *pl = NULL;
		ck_assert_int_eq(saga_client_participants(ths_client(t), &pl), SAGA_OK);
		const saga_participant *pb = NULL;
		for (size_t k = 0; k < pl->count; k++)
			if (strcmp(pl->participants[k].name, "pB") == 0)
				pb = &pl->participants[k];
		ck_assert_ptr_nonnull(pb);
		int open = strcmp(pb->breaker, "open") == 0;
		if (open) {
			ck_assert_uint_eq(pb->breaker_opened, 1);
			ck_assert_uint_ge(pb->connections, 1);
			ck_assert_int_gt(pb->breaker_open_until_us, 0);
		}
		saga_participant_list_free(pl);
		if (open)
			break;
		ck_assert_int_lt(th_now_ms() - t0, 3000);
		usleep(20 * 1000);
	}
	for (int i = 0; i < N; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga %d is %s: %s", i,
		    saga_state_name(info->state), info->error);
		ck_assert_uint_eq(ths_step_ok(info, "B")->attempts, 2);
		saga_info_free(info);
	}
	/* No second attempt went out before the cool-off ended. */
	ths_journal *j = ths_journal_read_ok(t);
	int64_t last_first = 0, first_second = INT64_MAX;
	for (int i = 0; i < N; i++) {
		int a1 = ths_journal_find(j, 0, ids[i], 'a', "B", "retry");
		int a2 = ths_journal_find(j, 0, ids[i], 'a', "B", "ok");
		ck_assert_int_ge(a1, 0);
		ck_assert_int_ge(a2, 0);
		if (j->lines[a1].t1_us > last_first)
			last_first = j->lines[a1].t1_us;
		if (j->lines[a2].t0_us < first_second)
			first_second = j->lines[a2].t0_us;
	}
	ck_assert_msg(first_second - last_first >= 2000 * 1000,
	    "a retry went out %lld ms after the 4th failure, within the 2500 ms cool-off",
	    (long long)((first_second - last_first) / 1000));
	ths_journal_free(j);
	char *log = th_read_file(ths_sagad_log(t), NULL);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(ths_contains(log, "participant pB: circuit breaker open: 4 of 4"), "no open");
	ck_assert_msg(ths_contains(log, "participant pB: circuit breaker half-open"), "no probe");
	ck_assert_msg(ths_contains(log, "participant pB: circuit breaker closed"), "not closed");
	free(log);
	saga_participant_list *pl = NULL;
	ck_assert_int_eq(saga_client_participants(ths_client(t), &pl), SAGA_OK);
	for (size_t k = 0; k < pl->count; k++)
		if (strcmp(pl->participants[k].name, "pB") == 0)
			ck_assert_str_eq(pl->participants[k].breaker, "closed");
	saga_participant_list_free(pl);
	for (int i = 0; i < N; i++)
		saga_string_free(ids[i]);
	ths_free(t);
}
END_TEST

/* ---- HTTP: health, readiness, metrics ---------------------------------- */

START_TEST(health_readiness_and_metrics_are_served_over_http)
{
	ths *t = ths_new_ok(pg, "lc_http");
	int port = ths_free_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	const char *args[] = { "--http-listen", url, NULL };
	ths_sagad_start_ok(t, args);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	char *ok = ths_start_ok(t, "ittest.Linear3", "tag=m1");
	char *bad = ths_start_ok(t, "ittest.Linear3", "fail=C");
	saga_info *i1 = ths_wait_final_ok(t, ok, WAIT_MS), *i2 = ths_wait_final_ok(t, bad, WAIT_MS);
	ck_assert_int_eq(i1->state, SAGA_STATE_COMPLETED);
	ck_assert_int_eq(i2->state, SAGA_STATE_COMPENSATED);
	saga_info_free(i1);
	saga_info_free(i2);

	char *r = ths_http_get(port, "/healthz");
	ck_assert_msg(
	    strncmp(r, "HTTP/1.1 200", 12) == 0 && ths_contains(r, "\r\n\r\nok"), "%s", r);
	free(r);
	r = ths_http_get(port, "/readyz");
	ck_assert_msg(strncmp(r, "HTTP/1.1 200", 12) == 0 && ths_contains(r, "ready"), "%s", r);
	free(r);
	r = ths_http_get(port, "/nope");
	ck_assert_msg(strncmp(r, "HTTP/1.1 404", 12) == 0, "%s", r);
	free(r);
	r = ths_http_get(port, "/metrics");
	ck_assert_msg(strncmp(r, "HTTP/1.1 200", 12) == 0, "%.200s", r);
	/* Every sample line is NAME{labels} VALUE or NAME VALUE; and the
	 * figures are the ones these two sagas produced. */
	const char *body = strstr(r, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	int samples = 0;
	for (char *line = strtok((char *)body + 4, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		char *sp = strrchr(line, ' ');
		ck_assert_msg(sp != NULL &&
			(strncmp(line, "sagad_", 6) == 0 || strncmp(line, "process_", 8) == 0),
		    "bad line '%s'", line);
		char *end;
		strtod(sp + 1, &end);
		ck_assert_msg(*end == '\0', "bad value in '%s'", line);
		samples++;
		if (strncmp(line, "sagad_sagas_started_total{definition=\"ittest.Linear3\"}", 54) ==
		    0)
			ck_assert_str_eq(sp + 1, "2");
		if (strncmp(line, "sagad_sagas_completed_total{definition=\"ittest.Linear3\"}",
			56) == 0)
			ck_assert_str_eq(sp + 1, "1");
		if (strncmp(line, "sagad_sagas_compensated_total{definition=\"ittest.Linear3\"}",
			58) == 0)
			ck_assert_str_eq(sp + 1, "1");
		if (strncmp(line, "sagad_breaker_state{participant=\"pA\"}", 37) == 0)
			ck_assert_str_eq(sp + 1, "0");
		if (strncmp(line, "sagad_step_latency_seconds_count{participant=\"pA\"}", 50) == 0)
			ck_assert_str_eq(sp + 1, "3"); /* A in both sagas, UndoA in the second */
	}
	ck_assert_int_gt(samples, 20);
	free(r);
	r = ths_http_get(port, "/metrics");
	ck_assert_msg(
	    ths_contains(r, "sagad_sagas_completed_total{definition=\"ittest.Linear3\"} 1") &&
		ths_contains(r, "sagad_db_commit_seconds_count ") &&
		ths_contains(r, "sagad_participant_connections{participant=\"pB\"} 1") &&
		ths_contains(r, "sagad_sagas_in_flight 0"),
	    "%s", r);
	/* Outcomes by definition and step: A succeeded in both sagas, C failed
	 * for good (business failure) in the second, and UndoA ran once. */
	static const char *const outcomes[] = {
		"sagad_step_outcomes_total{definition=\"ittest.Linear3\",step=\"A\",kind="
		"\"action\","
		"outcome=\"success\"} 2",
		"sagad_step_outcomes_total{definition=\"ittest.Linear3\",step=\"C\",kind="
		"\"action\","
		"outcome=\"failure\"} 1",
		"sagad_step_outcomes_total{definition=\"ittest.Linear3\",step=\"A\","
		"kind=\"compensation\",outcome=\"success\"} 1",
		/* latency below a millisecond has buckets of its own */
		"sagad_step_latency_seconds_bucket{participant=\"pA\",le=\"0.0001\"} ",
		"sagad_step_latency_seconds_bucket{participant=\"pA\",le=\"0.0005\"} ",
		/* nothing waits to be sent */
		"sagad_participant_oldest_queued_seconds{participant=\"pA\"} 0.000",
		"sagad_outbox_oldest_seconds 0.000",
	};
	for (size_t k = 0; k < sizeof(outcomes) / sizeof(outcomes[0]); k++)
		ck_assert_msg(ths_contains(r, outcomes[k]), "no '%s' in /metrics", outcomes[k]);
	/* The process figures and the version, as every exporter gives them. */
	char want[64];
	snprintf(want, sizeof(want), "sagad_build_info{version=\"%s\"} 1", saga_version());
	ck_assert_msg(ths_contains(r, want), "no '%s'", want);
	static const char *const proc[] = { "process_cpu_seconds_total ",
		"process_resident_memory_bytes ", "process_open_fds ", "process_max_fds ",
		"process_start_time_seconds " };
	for (size_t k = 0; k < sizeof(proc) / sizeof(proc[0]); k++) {
		const char *at = strstr(r, proc[k]);
		while (at != NULL && at[-1] != '\n')
			at = strstr(at + 1, proc[k]);
		ck_assert_msg(at != NULL, "no %s", proc[k]);
		double v = strtod(at + strlen(proc[k]), NULL);
		/* CPU time may still round to 0.00; the rest cannot be 0. */
		ck_assert_msg(k == 0 ? v >= 0 : v > 0, "%s is %g", proc[k], v);
		if (k == 4) /* the start time: within the last hour */
			ck_assert_msg(v > (double)time(NULL) - 3600 && v <= (double)time(NULL) + 1,
			    "start time %f", v);
	}
	free(r);
	saga_string_free(ok);
	saga_string_free(bad);
	ths_free(t);
}
END_TEST

/* ---- heartbeats ---------------------------------------------------------- */

START_TEST(heartbeating_step_runs_past_its_timeout_on_one_attempt)
{
	ths *t = world("lc_beat");
	/* 2 s of work against a 600 ms timeout, a heartbeat every 200 ms. */
	char *id = ths_start_ok(t, "ittest.Beaty", "sleep=A:2000;beat=A:200");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_uint_eq(ths_step_ok(info, "A")->attempts, 1);
	saga_info_free(info);
	/* Without heartbeats the same work times out on both attempts. */
	char *id2 = ths_start_ok(t, "ittest.Beaty", "sleep=A:2000");
	info = ths_wait_final_ok(t, id2, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_uint_eq(ths_step_ok(info, "A")->attempts, 2);
	saga_info_free(info);
	saga_string_free(id);
	saga_string_free(id2);
	ths_free(t);
}
END_TEST

START_TEST(missed_heartbeat_times_the_attempt_out_long_before_its_timeout)
{
	ths *t = world("lc_beat_missed");
	/* 3 heartbeats 150 ms apart, then silence for the rest of 3 s: each
	 * attempt times out ~400 ms after its last heartbeat, not after 10 s. */
	char *id = ths_start_ok(t, "ittest.HeartbeatTimeouty", "sleep=T:3000;beat=T:150;beats=T:3");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	const saga_step_info *st = ths_step_ok(info, "T");
	ck_assert_uint_eq(st->attempts, 2);
	ths_journal *j = ths_journal_read_ok(t);
	ths_journal_wait_ok(t, id, 'a', "T", "ok", 2, WAIT_MS);
	ths_journal_free(j);
	j = ths_journal_read_ok(t);
	int i1 = ths_journal_find(j, 0, id, 'a', "T", NULL);
	int i2 = ths_journal_find(j, (size_t)i1 + 1, id, 'a', "T", NULL);
	/* The second attempt started while the first still slept, ~0.85 s in. */
	int64_t gap_ms = (j->lines[i2].t0_us - j->lines[i1].t0_us) / 1000;
	ck_assert_msg(
	    gap_ms >= 600 && gap_ms < 2500, "attempt 2 started %lld ms after 1", (long long)gap_ms);
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- saga deadline ------------------------------------------------------ */

START_TEST(deadline_of_the_definition_compensates_a_saga_still_running_at_it)
{
	ths *t = world("lc_deadline");
	long long t0 = th_now_ms();
	char *id = ths_start_ok(t, "ittest.Deadliney", "sleep=B:3000");
	saga_info *info = NULL;

	/* At the deadline it stops going forward: compensating while B (3 s)
	 * is still in flight, whose outcome it then waits for. */
	for (;;) {
		ck_assert_int_eq(saga_client_get(ths_client(t), id, &info), SAGA_OK);
		if (info->state != SAGA_STATE_RUNNING)
			break;
		saga_info_free(info);
		ck_assert_int_lt(th_now_ms() - t0, 2500);
		usleep(50 * 1000);
	}
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATING, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_int_ge(th_now_ms() - t0, 650);
	saga_info_free(info);
	info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_msg(ths_contains(info->error, "deadline exceeded"), "error '%s'", info->error);
	ck_assert_int_eq(info->deadline_us - info->created_us, 700 * 1000);
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_COMPENSATED);
	/* B was in flight: compensated as uncertain; A undone last. */
	ck_assert_int_eq(ths_step_ok(info, "B")->state, SAGA_STEP_COMPENSATED);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_lt(line_index(j, id, 'c', "UndoB"), line_index(j, id, 'c', "UndoA"));
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(deadline_given_at_start_overrides_and_a_saga_done_in_time_completes)
{
	ths *t = world("lc_deadline2");
	saga_client *c = ths_client(t);
	saga_start_opts o = { 0 };
	char *slow = NULL, *quick = NULL;
	saga_info *info = NULL;

	o.deadline_ms = 400;
	ck_assert_int_eq(
	    saga_client_start(c, "ittest.Linear3", "sleep=B:3000", 12, &o, &slow, NULL), SAGA_OK);
	o.deadline_ms = 20000; /* longer than Deadliney's own 700 ms */
	ck_assert_int_eq(
	    saga_client_start(c, "ittest.Deadliney", "sleep=B:1000", 12, &o, &quick, NULL),
	    SAGA_OK);
	info = ths_wait_final_ok(t, slow, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED && ths_contains(info->error, "400 ms"),
	    "slow saga is %s: %s", saga_state_name(info->state), info->error);
	ck_assert_int_eq(ths_step_ok(info, "C")->state, SAGA_STEP_PENDING);
	saga_info_free(info);
	info = ths_wait_final_ok(t, quick, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED || info->state == SAGA_STATE_COMPLETED,
	    "%s", saga_state_name(info->state));
	ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "quick saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_int_eq(info->deadline_us - info->created_us, 20000LL * 1000);
	saga_info_free(info);
	saga_string_free(slow);
	saga_string_free(quick);
	ths_free(t);
}
END_TEST

/* ---- parallel branches -------------------------------------------------- */

START_TEST(parallel_branches_run_concurrently_and_join)
{
	ths *t = world("lc_parallel");
	char *id = ths_start_ok(t, "ittest.Parallel", "sleep=B:300;sleep=C:300");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPLETED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_uint_eq(ths_step_ok(info, "A")->completion_seq, 1);
	ck_assert_uint_eq(ths_step_ok(info, "D")->completion_seq, 4);
	uint32_t sb = ths_step_ok(info, "B")->completion_seq;
	uint32_t sc = ths_step_ok(info, "C")->completion_seq;
	ck_assert_msg((sb == 2 && sc == 3) || (sb == 3 && sc == 2), "B seq %u, C seq %u", sb, sc);
	ck_assert_uint_eq(ths_step_ok(info, "D")->n_depends_on, 2);

	ths_journal *j = ths_journal_read_ok(t);
	const ths_jline *a = only_line(j, id, 'a', "A", "ok");
	const ths_jline *b = only_line(j, id, 'a', "B", "ok");
	const ths_jline *c = only_line(j, id, 'a', "C", "ok");
	const ths_jline *d = only_line(j, id, 'a', "D", "ok");
	/* both after A, with A's result */
	ck_assert_int_ge(b->t0_us, a->t1_us);
	ck_assert_int_ge(c->t0_us, a->t1_us);
	assert_dep(b, "A", "A", id);
	assert_dep(c, "A", "A", id);
	/* overlapping: each started before the other finished */
	ck_assert_msg(b->t0_us < c->t1_us && c->t0_us < b->t1_us,
	    "B [%lld, %lld] and C [%lld, %lld] did not overlap", b->t0_us, b->t1_us, c->t0_us,
	    c->t1_us);
	/* D after both, with both results */
	ck_assert_int_ge(d->t0_us, b->t1_us);
	ck_assert_int_ge(d->t0_us, c->t1_us);
	assert_dep(d, "B", "B", id);
	assert_dep(d, "C", "C", id);
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

START_TEST(failed_join_compensates_both_branches_before_their_dependency)
{
	ths *t = world("lc_parallel_fail");
	char *id = ths_start_ok(t, "ittest.Parallel", "fail=D");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);

	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_int_eq(ths_step_ok(info, "D")->state, SAGA_STEP_FAILED);
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_COMPENSATED);
	ck_assert_int_eq(ths_step_ok(info, "B")->state, SAGA_STEP_COMPENSATED);
	ck_assert_int_eq(ths_step_ok(info, "C")->state, SAGA_STEP_COMPENSATED);

	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoD", NULL), 0);
	const ths_jline *ub = only_line(j, id, 'c', "UndoB", "ok");
	const ths_jline *uc = only_line(j, id, 'c', "UndoC", "ok");
	const ths_jline *ua = only_line(j, id, 'c', "UndoA", "ok");
	int ia = line_index(j, id, 'c', "UndoA");
	ck_assert_int_lt(line_index(j, id, 'c', "UndoB"), ia);
	ck_assert_int_lt(line_index(j, id, 'c', "UndoC"), ia);
	ck_assert_int_gt(line_index(j, id, 'c', "UndoB"), line_index(j, id, 'a', "D"));
	/* UndoA was dispatched only after both branch compensations finished */
	ck_assert_int_ge(ua->t0_us, ub->t1_us);
	ck_assert_int_ge(ua->t0_us, uc->t1_us);
	assert_dep(ub, "B", "B", id);
	assert_dep(uc, "C", "C", id);
	assert_dep(ua, "A", "A", id);
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- cancel ------------------------------------------------------------- */

START_TEST(cancel_of_a_running_saga_compensates_it)
{
	ths *t = world("lc_cancel");
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:2000");
	saga_state after = SAGA_STATE_UNKNOWN;

	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	int rv = saga_client_cancel(ths_client(t), id, "operator says no", &after);
	ck_assert_msg(
	    rv == SAGA_OK, "cancel: %s: %s", saga_strerror(rv), saga_client_errmsg(ths_client(t)));
	ck_assert_msg(after == SAGA_STATE_COMPENSATING || after == SAGA_STATE_COMPENSATED,
	    "state after cancel: %s", saga_state_name(after));
	/* cancelling again while it compensates is fine */
	rv = saga_client_cancel(ths_client(t), id, NULL, &after);
	ck_assert_msg(rv == SAGA_OK || rv == SAGA_ESTATE, "second cancel: %s", saga_strerror(rv));

	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_msg(info->state == SAGA_STATE_COMPENSATED, "saga is %s: %s",
	    saga_state_name(info->state), info->error);
	ck_assert_msg(ths_contains(info->error, "cancelled"), "error '%s'", info->error);
	ck_assert_msg(ths_contains(info->error, "operator says no"), "error '%s'", info->error);
	ck_assert_int_eq(ths_step_ok(info, "A")->state, SAGA_STEP_COMPENSATED);
	ck_assert_int_eq(ths_step_ok(info, "C")->state, SAGA_STEP_PENDING);

	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id, 'a', "C", NULL), 0);
	/* B was in flight: whatever became of it, A is undone last */
	int ia = line_index(j, id, 'c', "UndoA");
	if (ths_journal_count(j, id, 'c', "UndoB", NULL) > 0)
		ck_assert_int_lt(line_index(j, id, 'c', "UndoB"), ia);
	ck_assert_int_eq(ths_journal_count(j, id, 'c', "UndoA", NULL), 1);
	ths_journal_free(j);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* sagad's wait request: answered when the final state is durable, with
 * the state at the end of the wait otherwise; also for sagas long gone
 * from memory (read back from the database). */
START_TEST(wait_answers_at_the_final_state_or_times_out_with_the_current_one)
{
	ths *t = world("it_wait");
	saga_client *c = ths_client(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500");
	saga_info *info = NULL;

	/* while B sleeps: a short wait times out, reporting running */
	long long t0 = th_now_ms();
	ck_assert_int_eq(saga_client_wait(c, id, 300, &info), SAGA_ETIMEDOUT);
	ck_assert_int_ge(th_now_ms() - t0, 250);
	ck_assert_ptr_nonnull(info);
	ck_assert_int_eq(info->state, SAGA_STATE_RUNNING);
	ck_assert_msg(
	    ths_contains(saga_client_errmsg(c), "still running"), "%s", saga_client_errmsg(c));
	saga_info_free(info);

	/* a long wait returns once it completes, not at its timeout */
	t0 = th_now_ms();
	ck_assert_int_eq(saga_client_wait(c, id, WAIT_MS, NULL), SAGA_OK);
	ck_assert_int_lt(th_now_ms() - t0, 10000);
	info = NULL;
	ck_assert_int_eq(saga_client_get(c, id, &info), SAGA_OK);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);

	/* final and gone from sagad's memory: answered from the database */
	ck_assert_int_eq(saga_client_wait(c, id, 1000, NULL), SAGA_OK);
	/* unknown and malformed ids */
	ck_assert_int_eq(saga_client_wait(c, "01a20000-0000-7000-8000-000000000000", 1000, NULL),
	    SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_client_wait(c, "not-an-id", 1000, NULL), SAGA_EINVAL);
	free(id);
	ths_free(t);
}
END_TEST

/* saga_client_run: start and wait for the outcome in one request. */
START_TEST(run_starts_and_returns_the_final_state_in_one_request)
{
	ths *t = world("it_run");
	saga_client *c = ths_client(t);
	char *id = NULL;
	saga_state st = SAGA_STATE_UNKNOWN;
	int existing = -1;
	const char *ok = "tag=run-ok";

	ck_assert_int_eq(saga_client_run(c, "ittest.Linear3", ok, strlen(ok), NULL, WAIT_MS, &id,
			     &st, &existing),
	    SAGA_OK);
	ck_assert_int_eq(st, SAGA_STATE_COMPLETED);
	ck_assert_int_eq(existing, 0);
	saga_info *info = NULL;
	ck_assert_int_eq(saga_client_get(c, id, &info), SAGA_OK);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED); /* durable when answered */
	saga_info_free(info);
	saga_string_free(id);

	const char *bad = "fail=C";
	ck_assert_int_eq(
	    saga_client_run(c, "ittest.Linear3", bad, strlen(bad), NULL, WAIT_MS, &id, &st, NULL),
	    SAGA_OK);
	ck_assert_int_eq(st, SAGA_STATE_COMPENSATED);
	saga_string_free(id);

	/* the same idempotency key: the same saga, final, marked existing */
	saga_start_opts o = { 0 };
	o.idempotency_key = "run-key";
	char *id1 = NULL, *id2 = NULL;
	ck_assert_int_eq(
	    saga_client_run(c, "ittest.Linear3", ok, strlen(ok), &o, WAIT_MS, &id1, &st, &existing),
	    SAGA_OK);
	ck_assert_int_eq(existing, 0);
	ck_assert_int_eq(
	    saga_client_run(c, "ittest.Linear3", ok, strlen(ok), &o, WAIT_MS, &id2, &st, &existing),
	    SAGA_OK);
	ck_assert_int_eq(existing, 1);
	ck_assert_str_eq(id1, id2);
	ck_assert_int_eq(st, SAGA_STATE_COMPLETED);
	saga_string_free(id1);
	saga_string_free(id2);

	/* the wait runs out first: the id and the state then */
	const char *slow = "sleep=B:1500";
	long long t0 = th_now_ms();
	ck_assert_int_eq(
	    saga_client_run(c, "ittest.Linear3", slow, strlen(slow), NULL, 300, &id, &st, NULL),
	    SAGA_ETIMEDOUT);
	ck_assert_int_lt(th_now_ms() - t0, 5000);
	ck_assert_ptr_nonnull(id);
	ck_assert_int_eq(st, SAGA_STATE_RUNNING);
	ck_assert_int_eq(saga_client_wait(c, id, WAIT_MS, NULL), SAGA_OK);
	saga_string_free(id);

	/* an unknown definition is refused as by start */
	ck_assert_int_eq(
	    saga_client_run(c, "ittest.Nope", ok, strlen(ok), NULL, 1000, &id, &st, NULL),
	    SAGA_ENOTFOUND);
	ck_assert_ptr_null(id);
	ths_free(t);
}
END_TEST

START_TEST(cancel_refuses_final_unknown_and_malformed_sagas)
{
	ths *t = world("lc_cancel_bad");
	saga_client *c = ths_client(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=done");
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);

	ck_assert_int_eq(saga_client_cancel(c, id, "too late", NULL), SAGA_ESTATE);
	ck_assert_str_ne(saga_client_errmsg(c), "");
	ck_assert_int_eq(saga_client_cancel(c, "0190a5f2-6b7c-7d8e-9f00-112233445566", NULL, NULL),
	    SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_client_cancel(c, "not-a-saga-id", NULL, NULL), SAGA_EINVAL);
	ck_assert_int_eq(saga_client_get(c, "not-a-saga-id", &info), SAGA_EINVAL);
	ck_assert_int_eq(
	    saga_client_get(c, "0190a5f2-6b7c-7d8e-9f00-112233445566", &info), SAGA_ENOTFOUND);

	/* and the completed saga is untouched */
	ck_assert_int_eq(saga_client_get(c, id, &info), SAGA_OK);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert_str_eq(info->error, "");
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- idempotent start --------------------------------------------------- */

static char *
start_keyed(saga_client *c, const char *key, const char *input, int *existing)
{
	saga_start_opts o;
	char *id = NULL;
	memset(&o, 0, sizeof(o));
	o.idempotency_key = key;
	int rv = saga_client_start(c, "ittest.Linear3", input, strlen(input), &o, &id, existing);
	ck_assert_msg(rv == SAGA_OK, "start with key %s: %s: %s", key, saga_strerror(rv),
	    saga_client_errmsg(c));
	return id;
}

typedef struct racer {
	saga_client *c; /* its own connection, made by the harness */
	pthread_barrier_t *go;
	char *id;
	int existing;
	int rv;
	char err[256];
} racer;

static void *
race_start(void *arg)
{
	racer *r = arg;
	saga_client *c = r->c;
	saga_start_opts o;
	memset(&o, 0, sizeof(o));
	o.idempotency_key = "race-key";
	pthread_barrier_wait(r->go);
	r->rv = saga_client_start(c, "ittest.Linear3", "tag=race", 8, &o, &r->id, &r->existing);
	snprintf(r->err, sizeof(r->err), "%s", saga_client_errmsg(c));
	saga_client_free(c);
	return NULL;
}

START_TEST(same_idempotency_key_always_returns_the_same_saga)
{
	ths *t = world("lc_idem");
	saga_client *c = ths_client(t);
	int existing = -1;

	char *id1 = start_keyed(c, "key-1", "tag=first", &existing);
	ck_assert_int_eq(existing, 0);
	char *id2 = start_keyed(c, "key-1", "tag=second", &existing);
	ck_assert_int_ne(existing, 0);
	ck_assert_str_eq(id1, id2);

	saga_info *info = ths_wait_final_ok(t, id1, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert_str_eq(info->idempotency_key, "key-1");
	saga_info_free(info);
	/* still the same saga after it completed */
	char *id3 = start_keyed(c, "key-1", "tag=third", &existing);
	ck_assert_int_ne(existing, 0);
	ck_assert_str_eq(id1, id3);

	/* concurrently from two threads with two connections */
	pthread_barrier_t go;
	pthread_t th[2];
	racer r[2];
	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].c = ths_client_new(t, NULL);
		r[i].go = &go;
		pthread_create(&th[i], NULL, race_start, &r[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < 2; i++)
		ck_assert_msg(
		    r[i].rv == SAGA_OK, "racer %d: %s: %s", i, saga_strerror(r[i].rv), r[i].err);
	ck_assert_str_eq(r[0].id, r[1].id);
	ck_assert_msg((r[0].existing != 0) + (r[1].existing != 0) == 1,
	    "existing flags %d and %d: exactly one start must be new", r[0].existing,
	    r[1].existing);
	ck_assert_str_ne(r[0].id, id1);
	info = ths_wait_final_ok(t, r[0].id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	saga_info_free(info);

	/* two sagas in all, and each ran once */
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(c, NULL, &l), SAGA_OK);
	ck_assert_uint_eq(l->count, 2);
	saga_list_free(l);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, id1, 'a', "A", NULL), 1);
	ck_assert_int_eq(ths_journal_count(j, r[0].id, 'a', "A", NULL), 1);
	ck_assert_int_eq(ths_journal_count(j, NULL, 'a', "A", NULL), 2);
	ths_journal_free(j);

	saga_string_free(r[0].id);
	saga_string_free(r[1].id);
	saga_string_free(id1);
	saga_string_free(id2);
	saga_string_free(id3);
	ths_free(t);
}
END_TEST

/* The start is stored but its reply is lost with the connection: libsaga's
 * resend must not make a second saga, though the caller gave no key. */
START_TEST(a_start_without_a_key_resent_after_its_reply_was_lost_makes_one_saga)
{
	ths *t = ths_new_ok(pg, "lc_autokey");
	const char *args[] = { "--failpoints", "drop-start-reply:1", NULL };
	ths_sagad_start_ok(t, args);
	ths_participant_ok(t, "main", 16, NULL);
	ths_register_sagas_ok(t);
	saga_client *c = ths_client(t);
	char *id = NULL;
	int existing = -1;
	const char *in = "tag=autokey";
	ck_assert_int_eq(
	    saga_client_start(c, "ittest.Linear3", in, strlen(in), NULL, &id, &existing), SAGA_OK);
	/* The caller gave no key: it is told of a new saga, as it started one. */
	ck_assert_int_eq(existing, 0);
	saga_info *info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert_msg(strncmp(info->idempotency_key, "auto-", 5) == 0,
	    "the key libsaga gave the start: '%s'", info->idempotency_key);
	saga_info_free(info);
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(c, NULL, &l), SAGA_OK);
	ck_assert_msg(l->count == 1, "%zu sagas from one start", (size_t)l->count);
	saga_list_free(l);
	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, NULL, 'a', "A", NULL), 1);
	ths_journal_free(j);
	/* The failpoint fired: sagad closed the connection once. */
	char *log = th_read_file(ths_sagad_log(t), NULL);
	ck_assert_msg(log != NULL && strstr(log, "failpoint drop-start-reply") != NULL,
	    "the failpoint did not fire");
	free(log);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* A step whose participant is not connected is owed, not running: get says
 * so (queued), and sagactl does not show it as running. */
START_TEST(a_step_whose_participant_is_away_shows_as_not_sent_yet)
{
	ths *t = ths_new_ok(pg, "lc_queued");
	int port = ths_free_port();
	char hl[64];
	snprintf(hl, sizeof(hl), "http://127.0.0.1:%d", port);
	const char *args[] = { "--http-listen", hl, NULL };
	ths_sagad_start_ok(t, args);
	ths_register_sagas_ok(t);
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=queued");
	/* /metrics shows how long it has waited. */
	usleep(400 * 1000);
	char *m = ths_http_get(port, "/metrics");
	const char *at = strstr(m, "\nsagad_outbox_oldest_seconds ");
	ck_assert_ptr_nonnull(at);
	double age = strtod(at + strlen("\nsagad_outbox_oldest_seconds "), NULL);
	ck_assert_msg(age >= 0.3 && age < 30, "oldest queued step %.3f s old", age);
	at = strstr(m, "sagad_participant_oldest_queued_seconds{participant=\"pA\"} ");
	ck_assert_msg(at != NULL && strtod(strchr(at, '}') + 2, NULL) >= 0.3, "%s", m);
	free(m);
	saga_info *info = NULL;
	ck_assert_int_eq(saga_client_get(ths_client(t), id, &info), SAGA_OK);
	const saga_step_info *a = ths_step_ok(info, "A");
	ck_assert_int_eq(a->state, SAGA_STEP_RUNNING);
	ck_assert_int_eq(a->queued, 1);
	ck_assert_int_eq(ths_step_ok(info, "B")->queued, 0);
	saga_info_free(info);
	char *out = NULL;
	const char *get[] = { "get", id, NULL };
	ck_assert_int_eq(ths_sagactl(t, get, &out), 0);
	ck_assert_msg(ths_contains(out, "running, not sent yet"), "sagactl get: '%s'", out);
	free(out);
	/* The participant comes: it is sent, and the saga completes. */
	ths_participant_ok(t, "main", 16, NULL);
	info = ths_wait_final_ok(t, id, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	for (size_t i = 0; i < info->n_steps; i++)
		ck_assert_int_eq(info->steps[i].queued, 0);
	saga_info_free(info);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* A version whose input reuses a field number with another type would hand
 * participants of unfinished sagas payloads they read wrong: refused naming
 * the field, unless forced. */
START_TEST(an_incompatible_version_is_refused_while_sagas_run_on_the_old_one_unless_forced)
{
	ths *t = ths_new_ok(pg, "lc_incompat");
	ths_sagad_start_ok(t, NULL);
	ths_register_sagas_ok(t);
	/* No participant: the saga stays unfinished on version 1. */
	char *id = ths_start_ok(t, "ittest.Linear3", "tag=old");
	size_t len = 0;
	char *set = th_read_file(ths_env_ok("IT_SAGAS_V3"), &len);
	ck_assert_ptr_nonnull(set);
	saga_register_result *r = NULL;
	saga_client *c = ths_client(t);
	ck_assert_int_eq(saga_client_register(c, set, len, &r), SAGA_EDEFINITION);
	const char *why = saga_client_errmsg(c);
	ck_assert_msg(ths_contains(why, "field number 1 of ittest.Directives was string 'text'") &&
		ths_contains(why, "is int64 'text'") && ths_contains(why, "1 unfinished sagas"),
	    "%s", why);
	/* Nothing was registered: version 1 is still the latest. */
	saga_definition_list *dl = NULL;
	ck_assert_int_eq(saga_client_describe(c, "ittest.Linear3", 0, &dl), SAGA_OK);
	ck_assert_uint_eq(dl->definitions[0].version, 1);
	for (size_t k = 0; k < dl->count; k++)
		ck_assert_uint_eq(dl->definitions[k].version, 1);
	saga_definition_list_free(dl);
	/* sagactl says so too (exit 9), and --force registers it. */
	char *out = NULL;
	const char *args[] = { "register", ths_env_ok("IT_SAGAS_V3"), NULL };
	ck_assert_int_eq(ths_sagactl(t, args, &out), SAGA_EDEFINITION);
	free(out);
	ck_assert_int_eq(saga_client_register_force(c, set, len, &r), SAGA_OK);
	ck_assert_uint_eq(r->defs[0].version, 2);
	saga_register_result_free(r);
	free(set);
	saga_string_free(id);
	ths_free(t);
}
END_TEST

/* ---- unknown definitions ------------------------------------------------ */

START_TEST(start_of_an_unknown_definition_is_refused_naming_it)
{
	ths *t = world("lc_unknown_def");
	saga_client *c = ths_client(t);
	char *id = NULL;
	int rv = saga_client_start(c, "ittest.NoSuchSaga", "x", 1, NULL, &id, NULL);
	ck_assert_int_eq(rv, SAGA_ENOTFOUND);
	ck_assert_ptr_null(id);
	ck_assert_msg(ths_contains(saga_client_errmsg(c), "ittest.NoSuchSaga"), "errmsg '%s'",
	    saga_client_errmsg(c));
	/* a version that does not exist */
	saga_start_opts o;
	memset(&o, 0, sizeof(o));
	o.version = 99;
	rv = saga_client_start(c, "ittest.Linear3", "x", 1, &o, &id, NULL);
	ck_assert_int_eq(rv, SAGA_ENOTFOUND);
	ck_assert_msg(ths_contains(saga_client_errmsg(c), "ittest.Linear3"), "errmsg '%s'",
	    saga_client_errmsg(c));
	saga_list *l = NULL;
	ck_assert_int_eq(saga_client_list(c, NULL, &l), SAGA_OK);
	ck_assert_uint_eq(l->count, 0);
	saga_list_free(l);
	ths_free(t);
}
END_TEST

/* ---- versions ----------------------------------------------------------- */

static saga_register_result *
register_file(ths *t, const char *path)
{
	size_t len = 0;
	char *data = th_read_file(path, &len);
	saga_register_result *res = NULL;
	ck_assert_ptr_nonnull(data);
	int rv = saga_client_register(ths_client(t), data, len, &res);
	ck_assert_msg(rv == SAGA_OK, "register %s: %s: %s", path, saga_strerror(rv),
	    saga_client_errmsg(ths_client(t)));
	free(data);
	return res;
}

static const saga_registered *
registered(const saga_register_result *r, const char *name)
{
	for (size_t i = 0; i < r->count; i++)
		if (strcmp(r->defs[i].name, name) == 0)
			return &r->defs[i];
	ck_abort_msg("%s was not registered", name);
	return NULL;
}

START_TEST(running_saga_keeps_the_version_it_started_with)
{
	ths *t = ths_new_ok(pg, "lc_versions");
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "main", 16, NULL);

	saga_register_result *r1 = register_file(t, ths_env_ok("IT_SAGAS"));
	ck_assert_uint_eq(r1->count, 10) /* the services of sagas.proto */;
	ck_assert_uint_eq(registered(r1, "ittest.Linear3")->version, 1);
	ck_assert_uint_eq(registered(r1, "ittest.Linear3")->steps, 3);
	ck_assert_uint_eq(registered(r1, "ittest.Parallel")->steps, 4);
	ck_assert_int_eq(registered(r1, "ittest.Linear3")->unchanged, 0);
	saga_register_result_free(r1);
	/* the same set again changes nothing */
	r1 = register_file(t, ths_env_ok("IT_SAGAS"));
	ck_assert_uint_eq(registered(r1, "ittest.Linear3")->version, 1);
	ck_assert_int_ne(registered(r1, "ittest.Linear3")->unchanged, 0);
	saga_register_result_free(r1);

	char *old = ths_start_ok(t, "ittest.Linear3", "sleep=A:1000;tag=v1");
	saga_register_result *r2 = register_file(t, ths_env_ok("IT_SAGAS_V2"));
	ck_assert_uint_eq(registered(r2, "ittest.Linear3")->version, 2);
	ck_assert_uint_eq(registered(r2, "ittest.Linear3")->steps, 4);
	ck_assert_int_eq(registered(r2, "ittest.Linear3")->unchanged, 0);
	saga_register_result_free(r2);
	char *new = ths_start_ok(t, "ittest.Linear3", "tag=v2");
	saga_start_opts o;
	memset(&o, 0, sizeof(o));
	o.version = 1;
	char *pinned = NULL;
	ck_assert_int_eq(
	    saga_client_start(ths_client(t), "ittest.Linear3", "tag=pinned", 10, &o, &pinned, NULL),
	    SAGA_OK);

	saga_info *info = ths_wait_final_ok(t, old, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert_uint_eq(info->version, 1);
	ck_assert_uint_eq(info->n_steps, 3);
	saga_info_free(info);
	info = ths_wait_final_ok(t, new, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert_uint_eq(info->version, 2);
	ck_assert_uint_eq(info->n_steps, 4);
	ck_assert_str_eq(info->steps[3].name, "D");
	saga_info_free(info);
	info = ths_wait_final_ok(t, pinned, WAIT_MS);
	ck_assert_uint_eq(info->version, 1);
	ck_assert_uint_eq(info->n_steps, 3);
	saga_info_free(info);

	ths_journal *j = ths_journal_read_ok(t);
	ck_assert_int_eq(ths_journal_count(j, old, 'a', "D", NULL), 0);
	ck_assert_int_eq(ths_journal_count(j, pinned, 'a', "D", NULL), 0);
	assert_dep(only_line(j, new, 'a', "D", "ok"), "C", "C", new);
	ths_journal_free(j);
	saga_string_free(old);
	saga_string_free(new);
	saga_string_free(pinned);
	ths_free(t);
}
END_TEST

/* ---- many at once ------------------------------------------------------- */

START_TEST(many_concurrent_sagas_each_reach_their_own_outcome_once)
{
	enum { N = 60 };
	ths *t = world("lc_many");
	char *ids[N];
	char input[64];

	for (int i = 0; i < N; i++) {
		const char *what = i % 3 == 0 ? "fail=C" : i % 3 == 1 ? "retry=A:1" : "sleep=B:20";
		snprintf(input, sizeof(input), "%s;tag=%d", what, i);
		ids[i] = ths_start_ok(t, i % 2 ? "ittest.Linear3" : "ittest.Parallel", input);
	}
	ths_journal *j = NULL;
	for (int i = 0; i < N; i++) {
		saga_info *info = ths_wait_final_ok(t, ids[i], WAIT_MS);
		saga_state want = i % 3 == 0 ? SAGA_STATE_COMPENSATED : SAGA_STATE_COMPLETED;
		ck_assert_msg(info->state == want, "saga %d (%s) is %s: %s", i, ids[i],
		    saga_state_name(info->state), info->error);
		ck_assert_uint_eq(ths_step_ok(info, "A")->attempts, i % 3 == 1 ? 2 : 1);
		saga_info_free(info);
	}
	j = ths_journal_read_ok(t);
	for (int i = 0; i < N; i++) {
		int parallel = i % 2 == 0;
		if (i % 3 == 0) {
			/* C fails: B and A are undone, B first (in Parallel B
			 * is C's sibling: it finishes, then is undone) */
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "C", "fail"), 1);
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'c', "UndoC", NULL), 0);
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'c', "UndoA", "ok"), 1);
			ck_assert_int_lt(line_index(j, ids[i], 'c', "UndoB"),
			    line_index(j, ids[i], 'c', "UndoA"));
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "D", NULL), 0);
		} else {
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'c', NULL, NULL), 0);
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "A", "ok"), 1);
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "B", "ok"), 1);
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "C", "ok"), 1);
			ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "D", "ok"), parallel);
		}
	}
	ths_journal_free(j);
	for (int i = 0; i < N; i++)
		saga_string_free(ids[i]);
	ths_free(t);
}
END_TEST

/* ---- several URLs -------------------------------------------------------- */

/*
 * Several sagad instances sharing one database are not built yet, but the
 * real sagad takes one worker connection per URL: this sagad listens on two
 * ports, and a participant and a client are given the first one twice and
 * the second once. Every saga completes, every step ran exactly once, each
 * participant keeps three connections, and what they declare together
 * stays within the worker's capacity.
 */
START_TEST(worker_and_client_given_sagad_several_times_run_every_step_once)
{
	enum { N = 30, CAP = 6 };
	ths *t = ths_new_ok(pg, "lc_urls");
	char second[64], listen[160], urls[300];
	/* The second listener speaks as the first (tls+tcp:// under THS_TLS). */
	snprintf(second, sizeof(second), "%.*s127.0.0.1:%d",
	    (int)(strstr(ths_url(t), "://") + 3 - ths_url(t)), ths_url(t), ths_free_port());
	snprintf(listen, sizeof(listen), "%s,%s", ths_url(t), second);
	ths_sagad_start_ok(t, (const char *const[]) { "--listen", listen, NULL });
	snprintf(urls, sizeof(urls), "%s, %s ,%s", ths_url(t), ths_url(t), second);
	ths_participant_at_ok(t, urls, "multi", CAP, NULL);
	ths_register_sagas_ok(t);

	saga_client *c = ths_client_new(t, urls);
	/* Every participant name has a connection at each URL. */
	long long until = th_now_ms() + 10000;
	for (;;) {
		saga_participant_list *pl = NULL;
		ck_assert_int_eq(saga_client_participants(c, &pl), SAGA_OK);
		size_t full = 0;
		for (size_t i = 0; i < pl->count; i++) {
			full += pl->participants[i].connections == 3;
			ck_assert_uint_le(pl->participants[i].connections, 3);
			ck_assert_uint_le(pl->participants[i].capacity, CAP);
		}
		size_t n = pl->count;
		saga_participant_list_free(pl);
		if (n == 5 && full == 5)
			break;
		ck_assert_msg(
		    th_now_ms() < until, "%zu of 5 participants have 3 connections", full);
		usleep(20 * 1000);
	}

	char *ids[N];
	for (int i = 0; i < N; i++) {
		char input[32], key[32];
		snprintf(input, sizeof(input), "tag=%d", i);
		snprintf(key, sizeof(key), "urls-%d", i);
		saga_start_opts o = { .idempotency_key = key };
		ck_assert_int_eq(saga_client_start(c, i % 2 ? "ittest.Linear3" : "ittest.Parallel",
				     input, strlen(input), &o, &ids[i], NULL),
		    SAGA_OK);
	}
	int completed = 0;
	for (int i = 0; i < N; i++) {
		saga_info *info = NULL;
		int rv = saga_client_wait(c, ids[i], WAIT_MS, &info);
		ck_assert_msg(rv == SAGA_OK, "saga %s: %s: %s", ids[i], saga_strerror(rv),
		    saga_client_errmsg(c));
		completed += info->state == SAGA_STATE_COMPLETED;
		saga_info_free(info);
	}
	ck_assert_int_eq(completed, N);
	ths_journal *j = ths_journal_read_ok(t);
	for (int i = 0; i < N; i++) {
		int parallel = i % 2 == 0;
		ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "A", NULL), 1);
		ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "B", NULL), 1);
		ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "C", NULL), 1);
		ck_assert_int_eq(ths_journal_count(j, ids[i], 'a', "D", NULL), parallel);
		ck_assert_int_eq(ths_journal_count(j, ids[i], 'c', NULL, NULL), 0);
	}
	ths_journal_free(j);
	for (int i = 0; i < N; i++)
		saga_string_free(ids[i]);
	saga_client_free(c);
	ths_free(t);
}
END_TEST

static Suite *
lifecycle_suite(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc = tcase_create("lifecycle");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, linear_saga_completes_in_order_passing_results_forward);
	tcase_add_loop_test(
	    tc, business_failure_compensates_exactly_the_completed_steps_newest_first, 0, 3);
	tcase_add_test(tc, retryable_errors_are_retried_until_success);
	tcase_add_test(tc, exhausted_retries_compensate_the_uncertain_step_then_earlier_ones);
	tcase_add_test(tc, compensation_retryable_errors_are_retried_until_success);
	tcase_add_test(tc, compensation_exhausting_its_retries_parks_the_saga_failed);
	tcase_add_test(tc, step_timing_out_on_every_attempt_is_compensated_as_uncertain);
	tcase_add_test(tc, heartbeating_step_runs_past_its_timeout_on_one_attempt);
	tcase_add_test(tc, health_readiness_and_metrics_are_served_over_http);
	tcase_add_test(tc, parked_saga_is_completed_by_an_operator_retry_after_the_fix);
	tcase_add_test(tc, skipping_a_failed_compensation_moves_the_saga_on_and_is_recorded);
	tcase_add_test(tc, breaker_stops_dispatch_to_a_failing_participant_then_probes_and_resumes);
	tcase_add_test(tc, missed_heartbeat_times_the_attempt_out_long_before_its_timeout);
	tcase_add_test(tc, deadline_of_the_definition_compensates_a_saga_still_running_at_it);
	tcase_add_test(tc, deadline_given_at_start_overrides_and_a_saga_done_in_time_completes);
	tcase_add_test(tc, parallel_branches_run_concurrently_and_join);
	tcase_add_test(tc, failed_join_compensates_both_branches_before_their_dependency);
	tcase_add_test(tc, cancel_of_a_running_saga_compensates_it);
	tcase_add_test(tc, cancel_refuses_final_unknown_and_malformed_sagas);
	tcase_add_test(tc, wait_answers_at_the_final_state_or_times_out_with_the_current_one);
	tcase_add_test(tc, run_starts_and_returns_the_final_state_in_one_request);
	tcase_add_test(tc, same_idempotency_key_always_returns_the_same_saga);
	tcase_add_test(tc, a_start_without_a_key_resent_after_its_reply_was_lost_makes_one_saga);
	tcase_add_test(tc, a_step_whose_participant_is_away_shows_as_not_sent_yet);
	tcase_add_test(
	    tc, an_incompatible_version_is_refused_while_sagas_run_on_the_old_one_unless_forced);
	tcase_add_test(tc, start_of_an_unknown_definition_is_refused_naming_it);
	tcase_add_test(tc, running_saga_keeps_the_version_it_started_with);
	tcase_add_test(tc, many_concurrent_sagas_each_reach_their_own_outcome_once);
	tcase_add_test(tc, worker_and_client_given_sagad_several_times_run_every_step_once);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(lifecycle_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
