/*
 * barrier: saga_barrier_*, exactly-once effects in the participant's own
 * PostgreSQL transaction. See include/saga_barrier.h for the contract and
 * sql/saga_barrier.sql for the table.
 *
 * Action (kind 1), in one transaction:
 *   INSERT its row ON CONFLICT DO NOTHING
 *     conflict: the row is committed (a concurrent insert waits for the
 *       other transaction): outcome 1/2 -> duplicate, replay; 3 -> refused.
 *     inserted: SAVEPOINT, fn(); success -> record result, COMMIT;
 *       fail -> ROLLBACK TO SAVEPOINT, record error, COMMIT;
 *       retry/none -> ROLLBACK (nothing recorded).
 * Compensation (kind 2):
 *   INSERT its row ON CONFLICT DO NOTHING -> conflict: duplicate, replay.
 *   INSERT the action's row as "prevented" ON CONFLICT DO NOTHING
 *     inserted: the action never ran and now never will: null
 *       compensation, COMMIT, success.
 *     conflict: action failed (2) -> null compensation; succeeded (1) ->
 *       SAVEPOINT, fn(); success -> COMMIT; anything else -> ROLLBACK.
 */
#include "saga_barrier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "barrier_sql.h"
#include "internal.h"

#define KIND_ACTION 1
#define KIND_COMP   2

#define OUT_SUCCESS   1
#define OUT_FAILED    2
#define OUT_PREVENTED 3

/* Advisory lock key serializing saga_barrier_migrate ("sagabarr"). */
#define BARRIER_LOCK_KEY 0x7361676162617272LL

const char *
saga_barrier_result_name(saga_barrier_result r)
{
	switch (r) {
	case SAGA_BARRIER_RAN:
		return "ran";
	case SAGA_BARRIER_DUPLICATE:
		return "duplicate";
	case SAGA_BARRIER_NULL_COMPENSATION:
		return "null compensation";
	case SAGA_BARRIER_REFUSED:
		return "refused";
	case SAGA_BARRIER_DB_ERROR:
		return "database error";
	}
	return "unknown";
}

static void
copy_err(PGconn *db, const PGresult *r, char *err, size_t errlen)
{
	const char *m = r ? PQresultErrorMessage(r) : NULL;
	if (m == NULL || *m == '\0')
		m = PQerrorMessage(db);
	snprintf(err, errlen, "%s", m);
	for (char *p = err; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

static void rollback(PGconn *db);

int
saga_barrier_migrate(PGconn *db, char *err, size_t errlen)
{
	if (db == NULL)
		return SAGA_EINVAL;
	/* Replicas starting at once would race on CREATE TABLE IF NOT EXISTS
	 * (a unique violation in pg_type): one at a time, under an advisory
	 * lock held until the transaction ends. */
	char sql[sizeof(BARRIER_SQL) + 128];
	snprintf(sql, sizeof(sql),
	    "BEGIN; SET LOCAL client_min_messages = warning;"
	    " SELECT pg_advisory_xact_lock(%lld); %s; COMMIT",
	    (long long)BARRIER_LOCK_KEY, BARRIER_SQL);
	PGresult *r = PQexec(db, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok && err != NULL && errlen > 0)
		copy_err(db, r, err, errlen);
	PQclear(r);
	if (PQtransactionStatus(db) != PQTRANS_IDLE)
		rollback(db);
	return ok ? SAGA_OK : SAGA_EDB;
}

/* One command; 0 or -1 with err set. */
static int
cmd(PGconn *db, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(db, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		copy_err(db, r, err, errlen);
	PQclear(r);
	return ok ? 0 : -1;
}

/* INSERT of a barrier row: 1 inserted, 0 already there, -1 error. */
static int
insert_row(
    PGconn *db, const saga_step *s, int kind, int outcome, int nulled, char *err, size_t errlen)
{
	char k[4], o[4];
	snprintf(k, sizeof(k), "%d", kind);
	snprintf(o, sizeof(o), "%d", outcome);
	const char *v[5] = { s->saga_id, s->step, k, o, nulled ? "t" : "f" };
	PGresult *r = PQexecParams(db,
	    "INSERT INTO saga_barrier (saga_id, step, kind, outcome, nulled)"
	    " VALUES ($1::uuid, $2, $3::int2, $4::int2, $5::bool) ON CONFLICT DO NOTHING",
	    5, NULL, v, NULL, NULL, 0);
	int rv = -1;
	if (PQresultStatus(r) == PGRES_COMMAND_OK)
		rv = strcmp(PQcmdTuples(r), "1") == 0;
	else
		copy_err(db, r, err, errlen);
	PQclear(r);
	return rv;
}

/* Reads a committed row: its outcome (1..3) and, through *res, the result
 * (binary: outcome int2, result bytea, error text). 0 = no row, -1 error. */
static int
read_row(PGconn *db, const saga_step *s, int kind, PGresult **res, char *err, size_t errlen)
{
	char k[4];
	snprintf(k, sizeof(k), "%d", kind);
	const char *v[3] = { s->saga_id, s->step, k };
	PGresult *r = PQexecParams(db,
	    "SELECT outcome::int4, result, error FROM saga_barrier"
	    " WHERE saga_id = $1::uuid AND step = $2 AND kind = $3::int2",
	    3, NULL, v, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		copy_err(db, r, err, errlen);
		PQclear(r);
		return -1;
	}
	if (PQntuples(r) != 1 || PQgetlength(r, 0, 0) != 4) {
		PQclear(r);
		return 0;
	}
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, 0, 0);
	int outcome =
	    (int)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
	*res = r;
	return outcome;
}

/* Records fn's outcome on the row just inserted. */
static int
record(PGconn *db, const saga_step *s, int kind, int outcome, const uint8_t *result, size_t len,
    const char *error, char *err, size_t errlen)
{
	char k[4], o[4];
	snprintf(k, sizeof(k), "%d", kind);
	snprintf(o, sizeof(o), "%d", outcome);
	const char *v[6] = { s->saga_id, s->step, k, o, (const char *)result, error };
	int l[6] = { 0, 0, 0, 0, (int)len, 0 };
	int f[6] = { 0, 0, 0, 0, 1, 0 };
	if (result == NULL)
		v[4] = len == 0 ? "" : NULL;
	PGresult *r = PQexecParams(db,
	    "UPDATE saga_barrier SET outcome = $4::int2, result = $5, error = $6"
	    " WHERE saga_id = $1::uuid AND step = $2 AND kind = $3::int2",
	    6, NULL, v, l, f, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0;
	if (!ok)
		copy_err(db, r, err, errlen);
	PQclear(r);
	return ok ? 0 : -1;
}

static void
rollback(PGconn *db)
{
	PGresult *r = PQexec(db, "ROLLBACK");
	PQclear(r);
}

/* Sets a retryable reply for a database error and rolls back. */
static saga_barrier_result
db_error(PGconn *db, const saga_step *s, saga_reply *reply, const char *what, const char *err)
{
	char msg[1024];
	if (PQtransactionStatus(db) != PQTRANS_IDLE)
		rollback(db);
	snprintf(msg, sizeof(msg), "barrier: %s for saga %s step %s: %s", what, s->saga_id, s->step,
	    err);
	sl_reply_reset(reply);
	saga_reply_retry(reply, msg);
	return SAGA_BARRIER_DB_ERROR;
}

/* Replies the outcome recorded by the first delivery. */
static void
replay(PGresult *row, int outcome, saga_reply *reply)
{
	sl_reply_reset(reply);
	if (outcome == OUT_SUCCESS) {
		saga_reply_success(reply, PQgetisnull(row, 0, 1) ? NULL : PQgetvalue(row, 0, 1),
		    PQgetisnull(row, 0, 1) ? 0 : (size_t)PQgetlength(row, 0, 1));
	} else {
		const char *e = PQgetvalue(row, 0, 2);
		saga_reply_fail(reply, e && *e ? e : "failed (recorded by the barrier)");
	}
}

/* Runs fn after the SAVEPOINT and records what it replied. */
static saga_barrier_result
run_fn(PGconn *db, const saga_step *s, saga_reply *reply, saga_barrier_fn fn, void *user, int kind)
{
	char err[512];
	if (cmd(db, "SAVEPOINT saga_barrier", err, sizeof(err)) != 0)
		return db_error(db, s, reply, "SAVEPOINT failed", err);
	fn(db, s, reply, user);

	const uint8_t *result;
	size_t len;
	const char *error;
	saga_outcome outcome = saga_reply_outcome(reply, &result, &len, &error);
	PGTransactionStatusType ts = PQtransactionStatus(db);
	if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR) {
		/* fn committed or rolled back by itself: the record and the
		 * effect can no longer go together. */
		if (ts == PQTRANS_IDLE)
			return db_error(
			    db, s, reply, "the handler ended the transaction", "not allowed");
		return db_error(db, s, reply, "the connection broke", PQerrorMessage(db));
	}
	if (outcome == SAGA_OUTCOME_FAIL && kind == KIND_ACTION) {
		/* A business failure applies nothing but is remembered. */
		char *keep = strdup(error);
		if (keep == NULL)
			return db_error(db, s, reply, "out of memory", "");
		int bad = cmd(db, "ROLLBACK TO SAVEPOINT saga_barrier", err, sizeof(err)) != 0 ||
		    record(db, s, kind, OUT_FAILED, NULL, 0, keep, err, sizeof(err)) != 0 ||
		    cmd(db, "COMMIT", err, sizeof(err)) != 0;
		free(keep);
		if (bad)
			return db_error(db, s, reply, "recording the failure failed", err);
		return SAGA_BARRIER_RAN;
	}
	if (outcome != SAGA_OUTCOME_SUCCESS) {
		/* Retryable (or a compensation that failed): nothing happened. */
		rollback(db);
		return SAGA_BARRIER_RAN;
	}
	if (ts == PQTRANS_INERROR)
		return db_error(db, s, reply,
		    "the handler replied success but its transaction failed", PQerrorMessage(db));
	if (record(db, s, kind, OUT_SUCCESS, result, len, "", err, sizeof(err)) != 0)
		return db_error(db, s, reply, "recording the outcome failed", err);
	if (cmd(db, "COMMIT", err, sizeof(err)) != 0)
		return db_error(db, s, reply, "COMMIT failed", err);
	return SAGA_BARRIER_RAN;
}

saga_barrier_result
saga_barrier_run(PGconn *db, const saga_step *s, saga_reply *reply, saga_barrier_fn fn, void *user)
{
	char err[512];
	PGresult *row = NULL;
	int rv;

	if (reply == NULL)
		return SAGA_BARRIER_DB_ERROR;
	if (db == NULL || s == NULL || fn == NULL || s->saga_id == NULL || s->step == NULL) {
		sl_reply_reset(reply);
		saga_reply_retry(
		    reply, "barrier: invalid arguments (NULL connection, step or handler)");
		return SAGA_BARRIER_DB_ERROR;
	}
	if (PQstatus(db) != CONNECTION_OK || PQtransactionStatus(db) != PQTRANS_IDLE) {
		/* Try to recover a broken connection for the next step. */
		if (PQstatus(db) != CONNECTION_OK)
			PQreset(db);
		return db_error(db, s, reply, "the connection is not idle", PQerrorMessage(db));
	}
	if (cmd(db, "BEGIN", err, sizeof(err)) != 0)
		return db_error(db, s, reply, "BEGIN failed", err);

	int kind = s->kind == SAGA_COMPENSATION ? KIND_COMP : KIND_ACTION;
	if ((rv = insert_row(db, s, kind, OUT_SUCCESS, 0, err, sizeof(err))) < 0)
		return db_error(db, s, reply, "recording the step failed", err);
	if (rv == 0) {
		/* Seen before. */
		int outcome = read_row(db, s, kind, &row, err, sizeof(err));
		if (outcome < 0)
			return db_error(db, s, reply, "reading the first outcome failed", err);
		rollback(db);
		if (outcome == 0) {
			PQclear(row);
			return db_error(db, s, reply, "the barrier row vanished", "retry");
		}
		if (outcome == OUT_PREVENTED) {
			PQclear(row);
			sl_reply_reset(reply);
			saga_reply_fail(reply,
			    "refused by the barrier: this step was compensated before the "
			    "action arrived");
			return SAGA_BARRIER_REFUSED;
		}
		replay(row, outcome, reply);
		PQclear(row);
		return SAGA_BARRIER_DUPLICATE;
	}
	if (kind == KIND_ACTION)
		return run_fn(db, s, reply, fn, user, kind);

	/* A compensation seen for the first time: did its action apply? */
	if ((rv = insert_row(db, s, KIND_ACTION, OUT_PREVENTED, 0, err, sizeof(err))) < 0)
		return db_error(db, s, reply, "recording the prevented action failed", err);
	int action = rv == 1 ? OUT_PREVENTED : read_row(db, s, KIND_ACTION, &row, err, sizeof(err));
	PQclear(row);
	if (action < 0)
		return db_error(db, s, reply, "reading the action's outcome failed", err);
	if (action == OUT_SUCCESS)
		return run_fn(db, s, reply, fn, user, kind);
	/* Never ran (now prevented), or failed for certain: nothing to undo. */
	char sql[] = "UPDATE saga_barrier SET nulled = true"
		     " WHERE saga_id = $1::uuid AND step = $2 AND kind = 2";
	const char *v[2] = { s->saga_id, s->step };
	PGresult *r = PQexecParams(db, sql, 2, NULL, v, NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		copy_err(db, r, err, sizeof(err));
	PQclear(r);
	if (!ok || cmd(db, "COMMIT", err, sizeof(err)) != 0)
		return db_error(db, s, reply, "recording the null compensation failed", err);
	sl_reply_reset(reply);
	saga_reply_success(reply, NULL, 0);
	return SAGA_BARRIER_NULL_COMPENSATION;
}
