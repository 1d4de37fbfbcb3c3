/*
 * barrier_replica: a C replica of a participant on libsaga's barrier, for
 * client-lib/node/barrier/test: it runs one delivery through
 * saga_barrier_run() on the same database the Node replica uses, so the
 * test can prove the two share one barrier.
 *
 *   barrier_replica CONNINFO migrate
 *   barrier_replica CONNINFO run SAGA_ID STEP action|compensation ANSWER [HOLD_MS]
 *
 * ANSWER is what the handler replies: success:TEXT, successhex:HEX,
 * fail:TEXT or retry:TEXT. The handler first records its run in the table
 * effects (saga_id, step, kind, who = 'c'), which the test creates, inside
 * the barrier's transaction; then prints {"event":"in-handler"} and holds
 * the transaction open for HOLD_MS (default 0), so the test can race it.
 *
 * Prints one JSON line: {"verdict":"ran","outcome":"success","result":HEX,
 * "error":"..."}. Exits 0 when the barrier ran (whatever its verdict), 2 on
 * bad use, 1 when the database cannot be reached.
 */
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saga.h"
#include "saga_barrier.h"

typedef struct answer {
	const char *what; /* "success", "fail", "retry" */
	uint8_t *bytes;
	size_t len;
	const char *text;
	long hold_ms;
} answer;

static void
json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static int
unhex(const char *h, uint8_t **out, size_t *len)
{
	size_t n = strlen(h);
	if (n % 2 != 0)
		return -1;
	*out = malloc(n / 2 + 1);
	if (*out == NULL)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1) {
			free(*out);
			return -1;
		}
		(*out)[i] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

static void
handle(PGconn *db, const saga_step *s, saga_reply *reply, void *user)
{
	const answer *a = user;
	const char *v[3] = { s->saga_id, s->step,
		s->kind == SAGA_COMPENSATION ? "compensation" : "action" };
	PGresult *r = PQexecParams(db,
	    "INSERT INTO effects (saga_id, step, kind, who) VALUES ($1::uuid, $2, $3, 'c')", 3,
	    NULL, v, NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "barrier_replica: effect: %s", PQresultErrorMessage(r));
	PQclear(r);
	printf("{\"event\":\"in-handler\"}\n");
	fflush(stdout);
	if (a->hold_ms > 0) {
		struct timespec ts = { a->hold_ms / 1000, (a->hold_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (!ok)
		saga_reply_retry(reply, "the effect could not be recorded");
	else if (strcmp(a->what, "success") == 0)
		saga_reply_success(reply, a->bytes, a->len);
	else if (strcmp(a->what, "fail") == 0)
		saga_reply_fail(reply, a->text);
	else
		saga_reply_retry(reply, a->text);
}

static int
usage(void)
{
	fprintf(stderr,
	    "usage: barrier_replica CONNINFO migrate\n"
	    "       barrier_replica CONNINFO run SAGA_ID STEP action|compensation "
	    "success:TEXT|successhex:HEX|fail:TEXT|retry:TEXT [HOLD_MS]\n");
	return 2;
}

int
main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	PGconn *db = PQconnectdb(argv[1]);
	if (PQstatus(db) != CONNECTION_OK) {
		fprintf(stderr, "barrier_replica: %s", PQerrorMessage(db));
		PQfinish(db);
		return 1;
	}
	if (strcmp(argv[2], "migrate") == 0) {
		char err[512];
		int rv = saga_barrier_migrate(db, err, sizeof(err));
		if (rv != SAGA_OK)
			fprintf(stderr, "barrier_replica: migrate: %s\n", err);
		PQfinish(db);
		return rv == SAGA_OK ? 0 : 1;
	}
	if (strcmp(argv[2], "run") != 0 || argc < 7 || argc > 8) {
		PQfinish(db);
		return usage();
	}
	answer a = { .hold_ms = argc == 8 ? atol(argv[7]) : 0 };
	const char *ans = argv[6];
	uint8_t *owned = NULL;
	if (strncmp(ans, "success:", 8) == 0) {
		a.what = "success", a.bytes = (uint8_t *)ans + 8, a.len = strlen(ans + 8);
	} else if (strncmp(ans, "successhex:", 11) == 0) {
		a.what = "success";
		if (unhex(ans + 11, &owned, &a.len) != 0) {
			PQfinish(db);
			return usage();
		}
		a.bytes = owned;
	} else if (strncmp(ans, "fail:", 5) == 0) {
		a.what = "fail", a.text = ans + 5;
	} else if (strncmp(ans, "retry:", 6) == 0) {
		a.what = "retry", a.text = ans + 6;
	} else {
		PQfinish(db);
		return usage();
	}
	char key[512];
	snprintf(key, sizeof(key), "%s/%s/%s", argv[3], argv[4], argv[5]);
	saga_step s = { .saga_id = argv[3],
		.definition = "test.Saga",
		.version = 1,
		.step = argv[4],
		.rpc = argv[4],
		.kind = strcmp(argv[5], "compensation") == 0 ? SAGA_COMPENSATION : SAGA_ACTION,
		.attempt = 1,
		.idempotency_key = key,
		.traceparent = "" };
	saga_reply *reply = saga_reply_new(0);
	if (reply == NULL) {
		free(owned);
		PQfinish(db);
		return 1;
	}
	saga_barrier_result br = saga_barrier_run(db, &s, reply, handle, &a);
	const uint8_t *res = NULL;
	size_t len = 0;
	const char *error = NULL;
	saga_outcome o = saga_reply_outcome(reply, &res, &len, &error);
	printf("{\"verdict\":");
	json_str(saga_barrier_result_name(br));
	printf(",\"outcome\":\"%s\",\"result\":\"",
	    o == SAGA_OUTCOME_SUCCESS     ? "success"
		: o == SAGA_OUTCOME_FAIL  ? "fail"
		: o == SAGA_OUTCOME_RETRY ? "retry"
					  : "none");
	for (size_t i = 0; i < len; i++)
		printf("%02x", res[i]);
	printf("\",\"error\":");
	json_str(error != NULL ? error : "");
	printf("}\n");
	saga_reply_free(reply);
	free(owned);
	PQfinish(db);
	return 0;
}
