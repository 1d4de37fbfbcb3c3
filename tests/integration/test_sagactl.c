/*
 * Integration: the sagactl command line against a real sagad. Exit codes
 * (0, or the libsaga error code) and --json output that parses, for
 * register, start (--wait), get, list, cancel and the operator actions
 * (terminate, force, rerun, batch); --url and SAGA_URL with a
 * list of URLs.
 */
#define _GNU_SOURCE
#include <check.h>
#include <ctype.h>
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

/* ---- a strict little JSON checker (RFC 8259 syntax, no semantics) -------- */

typedef struct jp {
	const char *s;
	int depth;
} jp;

static void
jws(jp *p)
{
	while (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')
		p->s++;
}

static int jvalue(jp *p);

static int
jstring(jp *p)
{
	if (*p->s != '"')
		return -1;
	p->s++;
	while (*p->s != '"') {
		unsigned char c = (unsigned char)*p->s;
		if (c == '\0' || c < 0x20)
			return -1;
		if (c == '\\') {
			p->s++;
			if (*p->s == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)p->s[i]))
						return -1;
				p->s += 5;
				continue;
			}
			if (strchr("\"\\/bfnrt", *p->s) == NULL || *p->s == '\0')
				return -1;
		}
		p->s++;
	}
	p->s++;
	return 0;
}

static int
jnumber(jp *p)
{
	const char *s = p->s;
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (isdigit((unsigned char)*s))
		while (isdigit((unsigned char)*s))
			s++;
	else
		return -1;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		while (isdigit((unsigned char)*s))
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		while (isdigit((unsigned char)*s))
			s++;
	}
	p->s = s;
	return 0;
}

static int
jcontainer(jp *p, char open, char close)
{
	if (++p->depth > 64)
		return -1;
	p->s++; /* open */
	jws(p);
	if (*p->s == close) {
		p->s++;
		p->depth--;
		return 0;
	}
	for (;;) {
		jws(p);
		if (open == '{') {
			if (jstring(p) != 0)
				return -1;
			jws(p);
			if (*p->s++ != ':')
				return -1;
		}
		if (jvalue(p) != 0)
			return -1;
		jws(p);
		if (*p->s == ',') {
			p->s++;
			continue;
		}
		if (*p->s != close)
			return -1;
		p->s++;
		p->depth--;
		return 0;
	}
}

static int
jvalue(jp *p)
{
	jws(p);
	switch (*p->s) {
	case '{':
		return jcontainer(p, '{', '}');
	case '[':
		return jcontainer(p, '[', ']');
	case '"':
		return jstring(p);
	case 't':
		return strncmp(p->s, "true", 4) == 0 ? (p->s += 4, 0) : -1;
	case 'f':
		return strncmp(p->s, "false", 5) == 0 ? (p->s += 5, 0) : -1;
	case 'n':
		return strncmp(p->s, "null", 4) == 0 ? (p->s += 4, 0) : -1;
	default:
		return jnumber(p);
	}
}

/* One JSON document, or one per line (JSON Lines) — either is parse-able. */
static int
json_ok(const char *s)
{
	jp p = { s, 0 };
	int docs = 0;
	for (;;) {
		jws(&p);
		if (*p.s == '\0')
			return docs > 0;
		if (jvalue(&p) != 0)
			return 0;
		docs++;
	}
}

START_TEST(json_checker_checks)
{
	ck_assert(json_ok("{\"a\": [1, 2.5e3, -0, true, false, null, \"x\\n\\u00e9\"]}"));
	ck_assert(json_ok("{\"a\":1}\n{\"b\":2}\n"));
	ck_assert(!json_ok(""));
	ck_assert(!json_ok("{\"a\":1,}"));
	ck_assert(!json_ok("{a:1}"));
	ck_assert(!json_ok("[1 2]"));
	ck_assert(!json_ok("\"tab\there\""));
	ck_assert(!json_ok("saga 123 completed"));
}
END_TEST

/* The first canonical UUID in s (caller frees), or NULL. */
static char *
find_uuid(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };
	for (size_t i = 0; s != NULL && s[i] != '\0'; i++) {
		int ok = 1;
		for (int k = 0; k < 36 && ok; k++) {
			char c = s[i + (size_t)k];
			int want_dash =
			    k == dash[0] || k == dash[1] || k == dash[2] || k == dash[3];
			ok = c != '\0' && (want_dash ? c == '-' : isxdigit((unsigned char)c));
		}
		if (ok)
			return strndup(s + i, 36);
	}
	return NULL;
}

static ths *
world(const char *db)
{
	ths *t = ths_new_ok(pg, db);
	ths_sagad_start_ok(t, NULL);
	ths_participant_ok(t, "main", 16, NULL);
	return t;
}

static int count_of(const char *s, const char *needle);

#define CTL(t, out, ...) ths_sagactl((t), (const char *const[]) { __VA_ARGS__, NULL }, (out))

START_TEST(sagactl_registers_starts_gets_lists_and_cancels)
{
	ths *t = world("ctl_basic");
	const char *sagas = ths_env_ok("IT_SAGAS");
	char path[1024];
	char *out = NULL;
	int rc;

	/* register */
	rc = CTL(t, &out, "register", sagas);
	ck_assert_msg(rc == 0, "register: exit %d", rc);
	ck_assert_msg(ths_contains(out, "ittest.Linear3"), "register printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "--json", "register", sagas);
	ck_assert_msg(rc == 0, "register --json: exit %d", rc);
	ck_assert_msg(json_ok(out), "register --json printed non-JSON: '%s'", out);
	ck_assert_msg(ths_contains(out, "ittest.Parallel"), "register --json printed '%s'", out);
	free(out);
	snprintf(path, sizeof(path), "%s/bad_cycle.binpb", ths_env_ok("IT_FIXTURES"));
	rc = CTL(t, &out, "register", path);
	ck_assert_int_eq(rc, SAGA_EDEFINITION);
	free(out);
	rc = CTL(t, &out, "register", "/nonexistent/file.binpb");
	ck_assert_int_ne(rc, 0);
	free(out);

	/* start --wait: prints the id, waits for the end */
	rc = CTL(t, &out, "start", "ittest.Linear3", "--input-raw", "tag=cli", "--wait");
	ck_assert_msg(rc == 0, "start --wait: exit %d", rc);
	char *id = find_uuid(out);
	ck_assert_msg(id != NULL, "start printed no saga id: '%s'", out);
	free(out);
	saga_info *info = NULL;
	ck_assert_int_eq(saga_client_get(ths_client(t), id, &info), SAGA_OK);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	ck_assert_uint_eq(info->input_len, 7);
	ck_assert_int_eq(memcmp(info->input, "tag=cli", 7), 0);
	saga_info_free(info);

	/* start --json */
	rc = CTL(t, &out, "--json", "start", "ittest.Linear3", "--input-raw", "tag=cli-json");
	ck_assert_msg(rc == 0, "start --json: exit %d", rc);
	ck_assert_msg(json_ok(out), "start --json printed non-JSON: '%s'", out);
	char *id2 = find_uuid(out);
	ck_assert_ptr_nonnull(id2);
	free(out);
	saga_info_free(ths_wait_final_ok(t, id2, WAIT_MS));

	/* get */
	rc = CTL(t, &out, "get", id);
	ck_assert_msg(rc == 0, "get: exit %d", rc);
	ck_assert_msg(ths_contains(out, "completed"), "get printed '%s'", out);
	ck_assert_msg(
	    ths_contains(out, "UndoB") || ths_contains(out, " B"), "get printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "--json", "get", id);
	ck_assert_msg(rc == 0, "get --json: exit %d", rc);
	ck_assert_msg(json_ok(out), "get --json printed non-JSON: '%s'", out);
	ck_assert_msg(ths_contains(out, id) && ths_contains(out, "completed"),
	    "get --json printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "get", "0190a5f2-6b7c-7d8e-9f00-112233445566");
	ck_assert_int_eq(rc, SAGA_ENOTFOUND);
	free(out);
	rc = CTL(t, &out, "get", "not-a-saga-id");
	ck_assert_int_eq(rc, SAGA_EINVAL);
	free(out);

	/* list */
	rc = CTL(t, &out, "list");
	ck_assert_msg(rc == 0, "list: exit %d", rc);
	ck_assert_msg(ths_contains(out, id) && ths_contains(out, id2), "list printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "--json", "list");
	ck_assert_msg(rc == 0, "list --json: exit %d", rc);
	ck_assert_msg(json_ok(out), "list --json printed non-JSON: '%s'", out);
	ck_assert_msg(
	    ths_contains(out, id) && ths_contains(out, id2), "list --json printed '%s'", out);
	free(out);

	/* cancel: a running saga, a finished one, an unknown one */
	char *running = ths_start_ok(t, "ittest.Linear3", "sleep=B:2000");
	ths_wait_step_state_ok(t, running, "B", SAGA_STEP_RUNNING, WAIT_MS);
	rc = CTL(t, &out, "cancel", running);
	ck_assert_msg(rc == 0, "cancel: exit %d", rc);
	free(out);
	info = ths_wait_final_ok(t, running, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPENSATED);
	ck_assert_msg(ths_contains(info->error, "cancelled"), "error '%s'", info->error);
	saga_info_free(info);
	rc = CTL(t, &out, "cancel", id);
	ck_assert_int_eq(rc, SAGA_ESTATE);
	free(out);
	rc = CTL(t, &out, "cancel", "0190a5f2-6b7c-7d8e-9f00-112233445566");
	ck_assert_int_eq(rc, SAGA_ENOTFOUND);
	free(out);

	/* unknown definition */
	rc = CTL(t, &out, "start", "ittest.NoSuchSaga", "--input-raw", "x");
	ck_assert_int_eq(rc, SAGA_ENOTFOUND);
	free(out);

	/* wait / start --wait report the outcome in the exit status */
	rc = CTL(t, &out, "wait", id);
	ck_assert_msg(rc == 0, "wait on a completed saga: exit %d", rc);
	free(out);
	rc = CTL(t, &out, "--json", "start", "ittest.Linear3", "--input-raw", "fail=B", "--wait");
	ck_assert_msg(rc == 16, "start --wait of a saga that compensates: exit %d", rc);
	ck_assert_msg(json_ok(out), "start --wait --json printed non-JSON: '%s'", out);
	ck_assert_msg(ths_contains(out, "compensated"), "start --wait --json printed '%s'", out);
	free(out);
	rc = CTL(
	    t, &out, "start", "ittest.Linear3", "--input-raw", "fail=C;compfail=B:99", "--wait");
	ck_assert_msg(rc == 17, "start --wait of a saga that parks: exit %d", rc);
	free(out);

	/* idempotency key: the same saga twice */
	rc = CTL(t, &out, "start", "ittest.Linear3", "--input-raw", "tag=keyed", "--key", "cli-key",
	    "--business-key", "order-7");
	ck_assert_int_eq(rc, 0);
	char *k1 = find_uuid(out);
	ck_assert_ptr_nonnull(k1);
	free(out);
	rc =
	    CTL(t, &out, "start", "ittest.Linear3", "--input-raw", "tag=keyed", "--key", "cli-key");
	ck_assert_int_eq(rc, 0);
	char *k2 = find_uuid(out);
	ck_assert_ptr_nonnull(k2);
	ck_assert_str_eq(k1, k2);
	ck_assert_msg(ths_contains(out, "existing"), "second keyed start printed '%s'", out);
	free(out);
	saga_info_free(ths_wait_final_ok(t, k1, WAIT_MS));

	/* list filters */
	rc = CTL(t, &out, "--json", "list", "--state", "compensated");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(json_ok(out), "list --state --json printed non-JSON: '%s'", out);
	ck_assert_msg(ths_contains(out, running) && !ths_contains(out, id),
	    "list --state compensated printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "list", "--business-key", "order-7");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(ths_contains(out, k1) && !ths_contains(out, id),
	    "list --business-key printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "list", "--state", "no-such-state");
	ck_assert_int_eq(rc, 64);
	free(out);

	/* --output jsonl: one saga per line, each a JSON document, as many as
	 * --json lists; --output json is --json; a bad format is a usage error. */
	{
		char *all = NULL;
		ck_assert_int_eq(CTL(t, &all, "--output", "json", "list"), 0);
		ck_assert_msg(json_ok(all), "--output json: '%s'", all);
		int n_json = count_of(all, "\"saga_id\"");
		rc = CTL(t, &out, "list", "--output", "jsonl");
		ck_assert_int_eq(rc, 0);
		int lines = 0;
		for (char *save = NULL, *l = strtok_r(out, "\n", &save); l != NULL;
		     l = strtok_r(NULL, "\n", &save), lines++)
			ck_assert_msg(json_ok(l) && ths_contains(l, "\"saga_id\""),
			    "--output jsonl line %d: '%s'", lines, l);
		ck_assert_msg(lines == n_json && lines >= 3, "%d jsonl lines, %d sagas in --json",
		    lines, n_json);
		free(out);
		free(all);
		ck_assert_int_eq(CTL(t, &out, "list", "--output", "xml"), 64);
		free(out);
	}
	/* Colour: only when asked (not on a pipe), state names coloured, the
	 * columns still aligned. */
	rc = CTL(t, &out, "list");
	ck_assert_msg(rc == 0 && strchr(out, '\033') == NULL, "list on a pipe: '%s'", out);
	free(out);
	rc = CTL(t, &out, "--color", "always", "list", "--state", "completed");
	ck_assert_msg(rc == 0 && ths_contains(out, "\033[32mcompleted\033[0m"),
	    "list --color always: '%s'", out);
	{
		/* The STEPS column starts at the same place on every line. */
		const char *hdr = out, *steps = strstr(hdr, "STEPS");
		ck_assert_ptr_nonnull(steps);
		size_t col = (size_t)(steps - hdr);
		const char *line = strchr(hdr, '\n') + 1;
		const char *p = strstr(line, "\033[0m");
		ck_assert_ptr_nonnull(p);
		/* visible characters before STEPS on the row = col */
		size_t vis = 0;
		for (const char *q = line; *q && *q != '\n'; q++) {
			if (*q == '\033') {
				while (*q && *q != 'm')
					q++;
				continue;
			}
			if (vis == col) {
				ck_assert_msg(
				    isdigit((unsigned char)*q), "row misaligned: '%s'", line);
				break;
			}
			vis++;
		}
	}
	free(out);
	ck_assert_int_eq(CTL(t, &out, "--color", "sometimes", "list"), 64);
	free(out);

	/* cancel --reason */
	char *r2 = ths_start_ok(t, "ittest.Linear3", "sleep=B:2000");
	ths_wait_step_state_ok(t, r2, "B", SAGA_STEP_RUNNING, WAIT_MS);
	rc = CTL(t, &out, "--json", "cancel", r2, "--reason", "from the cli");
	ck_assert_msg(rc == 0, "cancel --reason: exit %d", rc);
	ck_assert_msg(json_ok(out), "cancel --json printed non-JSON: '%s'", out);
	free(out);
	info = ths_wait_final_ok(t, r2, WAIT_MS);
	ck_assert_msg(ths_contains(info->error, "from the cli"), "error '%s'", info->error);
	saga_info_free(info);

	/* history of the completed saga; retry/skip refusals */
	rc = CTL(t, &out, "history", id);
	ck_assert_msg(rc == 0, "history: exit %d", rc);
	ck_assert_msg(ths_contains(out, "started") && ths_contains(out, "attempt") &&
		ths_contains(out, "succeeded") && ths_contains(out, "completed") &&
		ths_contains(out, "+START"),
	    "history printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "--json", "history", id);
	ck_assert_msg(rc == 0 && json_ok(out) && ths_contains(out, "\"events\":[{"),
	    "history --json: exit %d, '%s'", rc, out);
	/* The history, not all of `get --json`. */
	ck_assert_msg(!ths_contains(out, "\"steps\"") && !ths_contains(out, "\"input"),
	    "history --json printed more than the history: '%s'", out);
	free(out);
	rc = CTL(t, &out, "retry", id, "B");
	ck_assert_int_eq(rc, SAGA_ESTATE); /* completed: nothing to retry */
	free(out);
	rc = CTL(t, &out, "skip", id, "B");
	ck_assert_int_eq(rc, 64); /* a skip needs --reason */
	free(out);

	/* participants: the test participant's workers, breakers closed */
	rc = CTL(t, &out, "participants");
	ck_assert_msg(rc == 0, "participants: exit %d", rc);
	ck_assert_msg(ths_contains(out, "PARTICIPANT") && ths_contains(out, "pB") &&
		ths_contains(out, "closed"),
	    "participants printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "--json", "participants");
	ck_assert_msg(rc == 0, "participants --json: exit %d", rc);
	ck_assert_msg(json_ok(out) && ths_contains(out, "\"breaker\":\"closed\""),
	    "participants --json printed '%s'", out);
	free(out);

	/* usage errors and an unreachable sagad */
	rc = CTL(t, &out, "frobnicate");
	ck_assert_int_eq(rc, 64);
	free(out);
	{
		const char *args[] = { "--url", "ipc:///nonexistent/sagad.sock", "--timeout", "500",
			"list", NULL };
		rc = ths_sagactl(t, args, &out);
		ck_assert_msg(rc == SAGA_ECONN || rc == SAGA_ETIMEDOUT,
		    "list on an unreachable sagad: exit %d", rc);
		free(out);
	}
	{
		/* A closed port: "cannot reach sagad" (exit 6) at once, not a
		 * timeout after the whole wait, and no JSON that reads as an
		 * empty list. */
		const char *args[] = { "--url", "tcp://127.0.0.1:1", "--timeout", "8000", "--json",
			"list", NULL };
		long long t0 = th_now_ms();
		rc = ths_sagactl(t, args, &out);
		long long took = th_now_ms() - t0;
		char *err = ths_sagactl_stderr(t);
		ck_assert_msg(rc == SAGA_ECONN, "list on a closed port: exit %d (%s)", rc, err);
		ck_assert_msg(took < 4000, "list on a closed port took %lld ms", took);
		ck_assert_msg(ths_contains(err, "cannot reach sagad"), "stderr: '%s'", err);
		ck_assert_msg(out[0] == '\0', "stdout: '%s'", out);
		free(err);
		free(out);
	}
	/* --limit out of range: one message, whichever side. */
	rc = CTL(t, &out, "list", "--limit", "0");
	ck_assert_int_eq(rc, 64);
	free(out);
	char *e0 = ths_sagactl_stderr(t);
	rc = CTL(t, &out, "list", "--limit", "1001");
	ck_assert_int_eq(rc, 64);
	free(out);
	char *e1 = ths_sagactl_stderr(t);
	ck_assert_msg(ths_contains(e0, "is not a number from 1 to 1000") &&
		ths_contains(e1, "is not a number from 1 to 1000"),
	    "--limit 0: '%s'; --limit 1001: '%s'", e0, e1);
	free(e0);
	free(e1);
	/* The "more:" line repeats the filters: following it lists the same
	 * kind of sagas. */
	rc = CTL(t, &out, "list", "--state", "completed", "--limit", "1");
	ck_assert_msg(rc == 0 && ths_contains(out, "more: sagactl ") &&
		ths_contains(out, "list --state completed --limit 1 --page "),
	    "list --limit 1: exit %d, '%s'", rc, out);
	free(out);

	saga_string_free(r2);
	free(k1);
	free(k2);

	saga_string_free(running);
	free(id);
	free(id2);
	ths_free(t);
}
END_TEST

/* Counts the occurrences of needle in s. */
static int
count_of(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* The typed input, in the order and form sagactl prints it back. */
#define TYPED_JSON                                                                 \
	"{\"note\":\";echo=A;\",\"orderId\":\"ord-42\",\"amountCents\":\"-1234\"," \
	"\"tags\":[\"x\",\"y\"],\"kind\":\"KIND_BIG\",\"attrs\":{\"k\":\"v\"},"    \
	"\"items\":[{\"sku\":\"s1\",\"qty\":2}],\"at\":\"2026-11-22T10:00:00Z\","  \
	"\"blob\":\"AAEC/w==\",\"ratio\":0.25,\"rush\":true}"

START_TEST(sagactl_speaks_json_payloads_describes_watches_and_counts)
{
	ths *t = world("ctl_json");
	char *out = NULL;
	int rc;
	ths_register_sagas_ok(t);

	/* describe: every definition, then one with its steps and flow */
	rc = CTL(t, &out, "describe");
	ck_assert_msg(rc == 0 && ths_contains(out, "ittest.Typed") &&
		ths_contains(out, "ittest.Linear3") && ths_contains(out, "a typed input"),
	    "describe: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "describe", "ittest.Typed");
	ck_assert_msg(rc == 0 && ths_contains(out, "input        ittest.TypedInput") &&
		ths_contains(out, "business key input field order_id") &&
		ths_contains(out, "UndoA") && ths_contains(out, "flow:"),
	    "describe ittest.Typed: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "describe", "ittest.Parallel");
	ck_assert_msg(rc == 0 && ths_contains(out, "D <- B+C") &&
		ths_contains(
		    out, "independent branches in parallel: UndoD, then UndoC + UndoB, then UndoA"),
	    "describe ittest.Parallel: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "describe", "ittest.Linear3");
	ck_assert_msg(rc == 0 && ths_contains(out, "A --> B --> C"),
	    "describe ittest.Linear3: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "--json", "describe", "ittest.Parallel");
	ck_assert_msg(rc == 0 && json_ok(out) && ths_contains(out, "\"depends_on\":[\"B\",\"C\"]"),
	    "describe --json: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "describe", "ittest.NoSuch");
	ck_assert_int_eq(rc, SAGA_ENOTFOUND);
	free(out);
	rc = CTL(t, &out, "describe", "ittest.Typed", "--version", "9");
	ck_assert_int_eq(rc, SAGA_ENOTFOUND);
	free(out);

	/* An input whose business key field is too long is refused as such,
	 * not as an invalid input. */
	{
		char json[400];
		snprintf(json, sizeof(json), "{\"orderId\":\"%0300d\"}", 7);
		rc = CTL(t, &out, "start", "ittest.Typed", "--input", json);
		char *err = ths_sagactl_stderr(t);
		ck_assert_msg(rc == SAGA_EINVAL && ths_contains(err, "longer than 256 bytes") &&
			!ths_contains(err, "is not a valid"),
		    "start with a 300-byte business key: exit %d, '%s'", rc, err);
		free(err);
		free(out);
	}

	/* A JSON input is encoded with the definition's types; the saga's
	 * input and A's result (an echo of it) are shown as the same JSON. */
	rc = CTL(t, &out, "--json", "start", "ittest.Typed", "--input", TYPED_JSON, "--wait");
	ck_assert_msg(rc == 0 && json_ok(out), "start --input JSON: exit %d, '%s'", rc, out);
	ck_assert_msg(count_of(out, TYPED_JSON) == 2, "input and result not both %s in '%s'",
	    TYPED_JSON, out);
	char *id = find_uuid(out);
	ck_assert_ptr_nonnull(id);
	free(out);
	/* The bytes are protobuf: sagad read the business key from them. */
	rc = CTL(t, &out, "list", "--business-key", "ord-42");
	ck_assert_msg(rc == 0 && ths_contains(out, id), "list --business-key: '%s'", out);
	free(out);
	rc = CTL(t, &out, "get", id);
	ck_assert_msg(rc == 0 && ths_contains(out, "input        " TYPED_JSON) &&
		ths_contains(out, "results:") && ths_contains(out, "  A  " TYPED_JSON),
	    "get: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "--raw", "--json", "get", id);
	ck_assert_msg(rc == 0 && json_ok(out) && ths_contains(out, "\"input\":null") &&
		ths_contains(out, "\"input_base64\":\"") && !ths_contains(out, "orderId"),
	    "--raw --json get: '%s'", out);
	free(out);
	rc = CTL(t, &out, "--raw", "get", id);
	ck_assert_msg(rc == 0 && ths_contains(out, "input        ") && ths_contains(out, " bytes"),
	    "--raw get: '%s'", out);
	free(out);
	/* From a file, by proto field names. */
	char path[1024];
	snprintf(path, sizeof(path), "%s/input.json", ths_dir(t));
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{ \"order_id\": \"ord-43\", \"amount_cents\": 7 }\n", f);
	fclose(f);
	rc = CTL(t, &out, "start", "ittest.Typed", "--input-file", path, "--wait");
	ck_assert_msg(rc == 0 && ths_contains(out, "\"orderId\":\"ord-43\",\"amountCents\":\"7\""),
	    "start --input-file: exit %d, '%s'", rc, out);
	free(out);

	/* Input that does not fit the type: exit 65, nothing started. */
	static const char *const bad[] = { "{\"amountCents\":\"abc\"}", "{\"nope\":1}",
		"{\"kind\":\"KIND_HUGE\"}", "{\"tags\":\"x\"}", "{\"blob\":\"%%%\"}", "[1,2]",
		"{\"at\":\"yesterday\"}", "{" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = CTL(t, &out, "start", "ittest.Typed", "--input", bad[i]);
		ck_assert_msg(rc == 65, "input %s: exit %d, want 65", bad[i], rc);
		free(out);
	}
	/* The errors say where and what to do. */
	rc = CTL(t, &out, "start", "ittest.Typed", "--input", "{\"items\":[{\"qty\":-1}]}");
	char *err = ths_sagactl_stderr(t);
	ck_assert_msg(rc == 65 &&
		ths_contains(err, "not a valid ittest.TypedInput: items[0].qty") &&
		ths_contains(err, "sagactl describe ittest.Typed"),
	    "stderr: %s", err);
	free(err);
	free(out);
	rc = CTL(t, &out, "describe", "ittest.Nope");
	err = ths_sagactl_stderr(t);
	ck_assert_msg(rc == SAGA_ENOTFOUND && ths_contains(err, "`sagactl describe` lists them"),
	    "stderr: %s", err);
	free(err);
	free(out);
	rc = CTL(t, &out, "get", "0190a5f2-6b7c-7d8e-9f00-112233445566");
	err = ths_sagactl_stderr(t);
	ck_assert_msg(rc == SAGA_ENOTFOUND && ths_contains(err, "check the id with `sagactl list`"),
	    "stderr: %s", err);
	free(err);
	free(out);
	{
		const char *args[] = { "--url", "tcp://127.0.0.1:1", "--timeout", "500", "describe",
			NULL };
		rc = ths_sagactl(t, args, &out);
		err = ths_sagactl_stderr(t);
		ck_assert_msg((rc == SAGA_ECONN || rc == SAGA_ETIMEDOUT) &&
			ths_contains(err, "is sagad running at tcp://127.0.0.1:1?"),
		    "exit %d, stderr: %s", rc, err);
		free(err);
		free(out);
	}
	rc = CTL(t, &out, "--json", "list", "--definition", "ittest.Typed", "--counts");
	ck_assert_msg(rc == 0 && json_ok(out) && ths_contains(out, "\"completed\":2") &&
		ths_contains(out, "\"running\":0"),
	    "list --counts --json: '%s'", out);
	free(out);

	/* Bytes that are not a message of the input type fall back to bytes. */
	char *lin = ths_start_ok(t, "ittest.Linear3", "tag=text");
	saga_info_free(ths_wait_final_ok(t, lin, WAIT_MS));
	rc = CTL(t, &out, "get", lin);
	ck_assert_msg(rc == 0 && ths_contains(out, "not a valid ittest.Directives"),
	    "get of a text input: '%s'", out);
	free(out);
	rc = CTL(t, &out, "--json", "get", lin);
	ck_assert_msg(rc == 0 && json_ok(out) && ths_contains(out, "\"input_error\":\"not a valid"),
	    "get --json of a text input: '%s'", out);
	free(out);

	/* list: counts, version filter */
	rc = CTL(t, &out, "list", "--counts");
	ck_assert_msg(rc == 0 && ths_contains(out, "completed 3") && ths_contains(out, "failed 0"),
	    "list --counts: '%s'", out);
	free(out);
	rc = CTL(t, &out, "list", "--definition", "ittest.Typed", "--version", "2");
	ck_assert_msg(rc == 0 && ths_contains(out, "(no sagas)"), "list --version 2: '%s'", out);
	free(out);
	rc = CTL(t, &out, "list", "--version", "1");
	ck_assert_int_eq(rc, 64);
	free(out);

	/* watch: follows a running saga to its end; the exit status says how */
	char *slow = ths_start_ok(t, "ittest.Linear3", "sleep=B:700;fail=C");
	rc = CTL(t, &out, "watch", slow, "--interval", "100");
	ck_assert_msg(rc == 16 && ths_contains(out, "started") && ths_contains(out, "failed") &&
		ths_contains(out, "compensating") && ths_contains(out, "is compensated"),
	    "watch: exit %d, '%s'", rc, out);
	ck_assert_int_eq(count_of(out, "  started "), 1); /* no event twice */
	free(out);
	rc = CTL(t, &out, "--json", "watch", slow);
	ck_assert_msg(rc == 16 && json_ok(out) && ths_contains(out, "\"type\":\"started\"") &&
		ths_contains(out, "\"state\":\"compensated\""),
	    "watch --json: exit %d, '%s'", rc, out);
	free(out);

	/* trace context given on the command line */
	rc = CTL(t, &out, "start", "ittest.Linear3", "--input-raw", "tag=tp", "--traceparent",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "--wait");
	ck_assert_msg(rc == 0 &&
		ths_contains(
		    out, "trace        00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
	    "start --traceparent: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "start", "ittest.Linear3", "--traceparent", "nope");
	ck_assert_int_eq(rc, SAGA_EINVAL);
	free(out);

	/* retry and skip bring parked sagas back: B's compensation fails while
	 * a file exists, so each saga parks; then one is retried after the
	 * "fix" and the other's compensation is skipped (done by hand). */
	char flag[1024], in1[1200], in2[1200];
	snprintf(flag, sizeof(flag), "%s/broken", ths_dir(t));
	FILE *bf = fopen(flag, "w");
	ck_assert_ptr_nonnull(bf);
	fclose(bf);
	snprintf(in1, sizeof(in1), "fail=C;tag=r;compfailwhile=%s", flag);
	snprintf(in2, sizeof(in2), "fail=C;tag=s;compfailwhile=%s", flag);
	char *p1 = ths_start_ok(t, "ittest.Linear3", in1);
	char *p2 = ths_start_ok(t, "ittest.Linear3", in2);
	saga_info *pi = ths_wait_final_ok(t, p1, WAIT_MS);
	ck_assert_int_eq(pi->state, SAGA_STATE_FAILED);
	saga_info_free(pi);
	pi = ths_wait_final_ok(t, p2, WAIT_MS);
	ck_assert_int_eq(pi->state, SAGA_STATE_FAILED);
	saga_info_free(pi);
	rc = CTL(t, &out, "skip", p2, "B", "--reason", "refunded by hand");
	ck_assert_msg(rc == 0, "skip: exit %d, '%s'", rc, out);
	free(out);
	unlink(flag);
	rc = CTL(t, &out, "--json", "retry", p1, "B", "--reason", "fixed");
	ck_assert_msg(rc == 0 && json_ok(out), "retry: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "wait", p1);
	ck_assert_msg(rc == 16, "wait after retry: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "wait", p2);
	ck_assert_msg(rc == 16, "wait after skip: exit %d, '%s'", rc, out);
	free(out);
	rc = CTL(t, &out, "history", p2);
	ck_assert_msg(rc == 0 && ths_contains(out, "refunded by hand"), "history: '%s'", out);
	free(out);
	saga_string_free(p1);
	saga_string_free(p2);

	/* --help on every command */
	static const char *const cmds[] = { "register", "start", "get", "wait", "watch", "history",
		"list", "cancel", "retry", "skip", "describe", "participants" };
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char want[64];
		rc = CTL(t, &out, cmds[i], "--help");
		snprintf(want, sizeof(want), "usage: sagactl %s", cmds[i]);
		ck_assert_msg(rc == 0 && strncmp(out, want, strlen(want)) == 0,
		    "%s --help: exit %d, '%s'", cmds[i], rc, out);
		free(out);
	}
	saga_string_free(lin);
	saga_string_free(slow);
	free(id);
	ths_free(t);
}
END_TEST

/* Runs sagactl with SAGA_URL=saga_url and no --url; returns its exit
 * status, with what it wrote in *out (caller frees). */
static int
ctl_env(ths *t, const char *saga_url, const char *const args[], char **out)
{
	const char *argv[16];
	char env_url[512], log[600];
	size_t n = 0;
	int st = -1;
	static int seq;

	argv[n++] = ths_env_ok("SAGACTL_BIN");
	for (size_t i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(env_url, sizeof(env_url), "SAGA_URL=%s", saga_url);
	snprintf(log, sizeof(log), "%s/sagactl-env-%d.log", ths_dir(t), ++seq);
	const char *env[] = { env_url, NULL };
	ck_assert_int_eq(th_run(argv, env, log, 30000, &st), 0);
	*out = th_read_file(log, NULL);
	ck_assert_ptr_nonnull(*out);
	fprintf(stderr, "sagactl with %s -> %d: %s\n", env_url, WEXITSTATUS(st), *out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* libsaga's encoder of JSON inputs, which sagactl's --input and the
 * Node.js package use: the bytes of the input type, or a clear error that
 * names the type and the path, or the describe call's own error. */
START_TEST(libsaga_encodes_a_json_input_with_the_definitions_types)
{
	ths *t = world("ctl_encode");
	ths_register_sagas_ok(t);
	saga_client *c = ths_client_new(t, NULL);
	uint8_t *b = (uint8_t *)"x";
	size_t n = 1;
	static const char ok[] = "{\"order_id\":\"o\",\"items\":[{\"sku\":\"s\",\"qty\":2}]}";
	/* order_id (2) "o", items (7) {sku (1) "s", qty (2) 2} */
	static const uint8_t want[] = { 0x12, 0x01, 'o', 0x3a, 0x05, 0x0a, 0x01, 's', 0x10, 0x02 };

	ck_assert_int_eq(
	    saga_client_encode_json(c, "ittest.Typed", 0, ok, strlen(ok), &b, &n), SAGA_OK);
	ck_assert_uint_eq(n, sizeof(want));
	ck_assert_mem_eq(b, want, sizeof(want));
	saga_bytes_free(b);
	/* {} encodes to nothing; version 1 named explicitly. */
	ck_assert_int_eq(saga_client_encode_json(c, "ittest.Typed", 1, "{}", 2, &b, &n), SAGA_OK);
	ck_assert_ptr_null(b);
	ck_assert_uint_eq(n, 0);

	int rv =
	    saga_client_encode_json(c, "ittest.Typed", 0, "{\"items\":[{\"qty\":-1}]}", 22, &b, &n);
	ck_assert_msg(rv == SAGA_EINVAL &&
		ths_contains(saga_client_errmsg(c),
		    "the input is not a valid ittest.TypedInput: items[0].qty"),
	    "%d %s", rv, saga_client_errmsg(c));
	ck_assert_ptr_null(b);
	ck_assert_uint_eq(n, 0);
	rv = saga_client_encode_json(c, "ittest.Typed", 0, "{\"orderId\": ", 12, &b, &n);
	ck_assert_msg(rv == SAGA_EINVAL, "%d %s", rv, saga_client_errmsg(c));
	/* len counts, not a NUL: the same text cut short is not JSON. */
	rv = saga_client_encode_json(c, "ittest.Typed", 0, ok, 5, &b, &n);
	ck_assert_msg(rv == SAGA_EINVAL, "%d %s", rv, saga_client_errmsg(c));
	ck_assert_int_eq(
	    saga_client_encode_json(c, "ittest.NoSuch", 0, "{}", 2, &b, &n), SAGA_ENOTFOUND);
	ck_assert_int_eq(
	    saga_client_encode_json(c, "ittest.Typed", 99, "{}", 2, &b, &n), SAGA_ENOTFOUND);
	ck_assert_int_eq(saga_client_encode_json(c, NULL, 0, "{}", 2, &b, &n), SAGA_EINVAL);
	ck_assert_int_eq(
	    saga_client_encode_json(c, "ittest.Typed", 0, NULL, 2, &b, &n), SAGA_EINVAL);
	ck_assert_int_eq(
	    saga_client_encode_json(c, "ittest.Typed", 0, "{}", 2, NULL, &n), SAGA_EINVAL);
	saga_bytes_free(NULL);
	saga_client_free(c);
	ths_free(t);
}
END_TEST

START_TEST(sagactl_takes_a_list_of_urls_in_url_and_saga_url)
{
	ths *t = world("ctl_urls");
	char list[512], *out, *err;
	int rc;

	/* An instance that is down, then the one up: calls go to the one up. */
	snprintf(list, sizeof(list), "tcp://127.0.0.1:1, %s", ths_url(t));
	rc = CTL(t, &out, "--url", list, "--json", "participants");
	ck_assert_msg(rc == 0 && json_ok(out), "participants via %s: exit %d", list, rc);
	free(out);
	rc = ctl_env(t, list, (const char *const[]) { "--json", "participants", NULL }, &out);
	ck_assert_msg(rc == 0, "participants via SAGA_URL=%s: exit %d", list, rc);
	free(out);

	/* A bad entry is a usage error that names it, and where it came from. */
	snprintf(list, sizeof(list), "%s,bogus", ths_url(t));
	rc = CTL(t, &out, "--url", list, "participants");
	err = ths_sagactl_stderr(t);
	ck_assert_msg(rc == 64 &&
		ths_contains(err,
		    "invalid --url: entry 2 of the sagad URL list, \"bogus\", is not "
		    "a sagad URL"),
	    "exit %d, stderr: %s", rc, err);
	free(err);
	free(out);
	rc = ctl_env(t, ",", (const char *const[]) { "participants", NULL }, &out);
	ck_assert_msg(rc == 64 &&
		ths_contains(out,
		    "invalid $SAGA_URL: entry 1 of the sagad URL "
		    "list \",\" is empty"),
	    "exit %d: %s", rc, out);
	free(out);

	/* None up: the hint names the whole list. */
	rc = CTL(
	    t, &out, "--url", "tcp://127.0.0.1:1,tcp://127.0.0.1:2", "--timeout", "500", "list");
	err = ths_sagactl_stderr(t);
	ck_assert_msg((rc == SAGA_ECONN || rc == SAGA_ETIMEDOUT) &&
		ths_contains(err, "is sagad running at tcp://127.0.0.1:1,tcp://127.0.0.1:2?"),
	    "exit %d, stderr: %s", rc, err);
	free(err);
	free(out);

	rc = CTL(t, &out, "--help");
	ck_assert_msg(
	    rc == 0 && ths_contains(out, "--url URLS") && ths_contains(out, "separated by commas"),
	    "--help: %s", out);
	free(out);
	ths_free(t);
}
END_TEST

START_TEST(sagactl_terminates_forces_reruns_and_batches_with_the_documented_exit_codes)
{
	ths *t = world("ctl_ops");
	ths_register_sagas_ok(t);
	char *out = NULL;
	int rc;

	/* terminate: a reason is required (usage error), then done; again: 10 */
	char *id = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500;tag=ctl-term");
	ths_wait_step_state_ok(t, id, "B", SAGA_STEP_RUNNING, WAIT_MS);
	rc = CTL(t, &out, "terminate", id);
	ck_assert_int_eq(rc, 64);
	free(out);
	rc = CTL(t, &out, "terminate", id, "--reason", "wrong shop");
	ck_assert_msg(rc == 0, "terminate: exit %d", rc);
	ck_assert_msg(ths_contains(out, "terminated"), "terminate printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "--json", "terminate", id, "--reason", "again");
	ck_assert_int_eq(rc, SAGA_ESTATE);
	free(out);
	rc = CTL(t, &out, "wait", id);
	ck_assert_int_eq(rc, 18);
	free(out);
	rc = CTL(t, &out, "list", "--state", "terminated");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(ths_contains(out, id), "list printed '%s'", out);
	free(out);

	/* force succeeded: the JSON result is checked against the step's type */
	char *id2 = ths_start_ok(t, "ittest.Linear3", "sleep=B:1500;tag=ctl-force");
	ths_wait_step_state_ok(t, id2, "B", SAGA_STEP_RUNNING, WAIT_MS);
	rc = CTL(t, &out, "force", id2, "B", "sideways", "--reason", "x");
	ck_assert_int_eq(rc, 64);
	free(out);
	rc = CTL(
	    t, &out, "force", id2, "B", "succeeded", "--result", "{\"nope\":1}", "--reason", "x");
	ck_assert_int_eq(rc, 65);
	free(out);
	rc = CTL(t, &out, "force", id2, "B", "compensated", "--reason", "x");
	ck_assert_int_eq(rc, SAGA_ESTATE);
	free(out);
	rc = CTL(t, &out, "--json", "force", id2, "B", "succeeded", "--result",
	    "{\"text\":\"by hand\"}", "--reason", "booked by phone");
	ck_assert_msg(rc == 0, "force: exit %d", rc);
	ck_assert_msg(json_ok(out), "force --json printed '%s'", out);
	free(out);
	saga_info *info = ths_wait_final_ok(t, id2, WAIT_MS);
	ck_assert_int_eq(info->state, SAGA_STATE_COMPLETED);
	const saga_step_info *b = ths_step_ok(info, "B");
	ck_assert_uint_eq(b->result_len, 9);
	ck_assert_int_eq(memcmp(b->result,
			     "\x0a\x07"
			     "by hand",
			     9),
	    0);
	saga_info_free(info);

	/* rerun: prints the new id; the same key gives it again; get shows the link */
	rc = CTL(t, &out, "--json", "rerun", id, "--key", "ctl-1");
	ck_assert_msg(rc == 0, "rerun: exit %d", rc);
	ck_assert_msg(json_ok(out), "rerun --json printed '%s'", out);
	char *neu = find_uuid(out);
	ck_assert_ptr_nonnull(neu);
	ck_assert_str_ne(neu, id);
	free(out);
	rc = CTL(t, &out, "rerun", id, "--key", "ctl-1");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(ths_contains(out, neu), "second rerun printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "get", neu);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(
	    ths_contains(out, "rerun of") && ths_contains(out, id), "get printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "rerun", neu);
	ck_assert_int_eq(rc, SAGA_ESTATE); /* still running */
	free(out);

	/* batch: a dry run counts; bad use is a usage error */
	rc = CTL(
	    t, &out, "--json", "batch", "cancel", "--definition", "ittest.Linear3", "--dry-run");
	ck_assert_msg(rc == 0, "batch --dry-run: exit %d", rc);
	ck_assert_msg(json_ok(out), "batch --json printed '%s'", out);
	ck_assert_msg(ths_contains(out, "\"applicable\":1"), "batch printed '%s'", out);
	free(out);
	rc = CTL(t, &out, "batch", "explode");
	ck_assert_int_eq(rc, 64);
	free(out);
	rc = CTL(t, &out, "batch", "retry");
	ck_assert_int_eq(rc, 64);
	free(out);
	rc = CTL(t, &out, "batch", "cancel", "--definition", "ittest.Linear3", "--reason", "done");
	ck_assert_msg(rc == 0, "batch cancel: exit %d", rc);
	ck_assert_msg(ths_contains(out, neu) && ths_contains(out, "done 1, skipped 2"),
	    "batch printed '%s'", out);
	free(out);
	saga_info_free(ths_wait_final_ok(t, neu, WAIT_MS));
	free(neu);
	saga_string_free(id);
	saga_string_free(id2);
	ths_free(t);
}
END_TEST

static Suite *
sagactl_suite(void)
{
	Suite *s = suite_create("sagactl");
	TCase *tc = tcase_create("sagactl");
	tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, json_checker_checks);
	tcase_add_test(tc, sagactl_registers_starts_gets_lists_and_cancels);
	tcase_add_test(tc, sagactl_speaks_json_payloads_describes_watches_and_counts);
	tcase_add_test(tc, sagactl_takes_a_list_of_urls_in_url_and_saga_url);
	tcase_add_test(
	    tc, sagactl_terminates_forces_reruns_and_batches_with_the_documented_exit_codes);
	tcase_add_test(tc, libsaga_encodes_a_json_input_with_the_definitions_types);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sagactl_suite());
	ths_runner_begin();
	srunner_run_all(sr, CK_NORMAL);
	ths_runner_end();
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
