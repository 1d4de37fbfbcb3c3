/* migrate: forward-only schema migrations under an advisory lock. See migrate.h. */
#include "migrate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "saga_base.h"

/* pg_advisory_lock key shared by every sagad (and every version of it):
 * "saga" in ASCII. Changing it would let an old and a new binary migrate
 * at the same time. */
#define LOCK_KEY "1935763297"

static __attribute__((format(printf, 3, 4))) void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* libpq messages end in a newline; error strings here do not. */
	size_t n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
}

/* Runs a parameterized statement; returns the result if its status is
 * `want`, else NULL with the server's message in err. */
static PGresult *
q(PGconn *conn, ExecStatusType want, const char *sql, int n, const char *const *params,
    const char *what, char *err, size_t errlen)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == want)
		return res;
	seterr(err, errlen, "migrate: %s: %s", what,
	    res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	PQclear(res);
	return NULL;
}

static int
cmd(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
	PGresult *res = q(conn, PGRES_COMMAND_OK, sql, 0, NULL, what, err, errlen);
	if (res == NULL)
		return SAGA_EDB;
	PQclear(res);
	return 0;
}

/* Applies one migration and its record in one transaction. */
static int
apply_one(PGconn *conn, const migration *m, char *err, size_t errlen)
{
	char ver[16];
	const char *params[2] = { ver, m->name };
	PGresult *res;
	int rv;

	snprintf(ver, sizeof(ver), "%d", m->version);
	if ((rv = cmd(conn, "BEGIN", "begin", err, errlen)) != 0)
		return rv;
	/* "already exists, skipping" and the like are not worth a line on
	 * sagad's stderr, which libpq would print them to. */
	if ((rv = cmd(conn, "SET LOCAL client_min_messages = warning", "set", err, errlen)) != 0)
		return rv;
	/* The migration text is compiled into the binary, trusted, and may
	 * hold several statements: only PQexec runs those. It must not
	 * contain transaction control (see migrations/). */
	res = PQexec(conn, m->sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		seterr(err, errlen, "migration %s failed: %s", m->name,
		    res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return SAGA_EDB;
	}
	PQclear(res);
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		/* A COMMIT inside the text would have split the migration
		 * from its record: the schema may now be half-migrated. */
		seterr(err, errlen,
		    "migration %s ended our transaction: migrations must not "
		    "contain BEGIN, COMMIT or ROLLBACK",
		    m->name);
		return SAGA_EINTERNAL;
	}
	res = q(conn, PGRES_COMMAND_OK,
	    "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)", 2, params,
	    "recording migration", err, errlen);
	if (res == NULL)
		return SAGA_EDB;
	PQclear(res);
	if ((rv = cmd(conn, "COMMIT", "commit", err, errlen)) != 0)
		return rv;
	slog_info("applied migration %s", m->name);
	return 0;
}

int
migrate_apply_list(
    PGconn *conn, const migration *list, size_t n, int *applied, char *err, size_t errlen)
{
	const char *key[1] = { LOCK_KEY };
	PGresult *res = NULL;
	int rv = 0, locked = 0, count = 0, known_max, db_max = 0, unknown = 0;
	int *have = NULL; /* have[i]: list[i] is recorded */
	size_t i;

	if (applied != NULL)
		*applied = 0;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		seterr(err, errlen, "migrate: no database connection");
		return SAGA_EDB;
	}
	/* A session lock taken inside the caller's transaction would outlive
	 * it confusingly, and our BEGIN would fail: refuse up front. */
	if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
		seterr(err, errlen, "migrate: the connection is inside a transaction");
		return SAGA_EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (list[i].name == NULL || list[i].sql == NULL || list[i].version <= 0 ||
		    (i > 0 && list[i].version <= list[i - 1].version)) {
			seterr(err, errlen,
			    "migrate: migration list is not in increasing version "
			    "order at entry %zu",
			    i);
			return SAGA_EINVAL;
		}
	}
	known_max = n > 0 ? list[n - 1].version : 0;
	if (n > 0 && (have = calloc(n, sizeof(*have))) == NULL) {
		seterr(err, errlen, "migrate: out of memory");
		return SAGA_ENOMEM;
	}

	/* Session-level, so it spans the per-migration transactions; a second
	 * sagad waits here and then finds everything applied. */
	if ((res = q(conn, PGRES_TUPLES_OK, "SELECT pg_advisory_lock($1::bigint)", 1, key,
		 "taking the migration lock", err, errlen)) == NULL) {
		rv = SAGA_EDB;
		goto fail;
	}
	PQclear(res);
	res = NULL;
	locked = 1;

	if ((rv = cmd(conn, "BEGIN", "begin", err, errlen)) != 0 ||
	    (rv = cmd(conn, "SET LOCAL client_min_messages = warning", "set", err, errlen)) != 0 ||
	    (rv = cmd(conn,
		 "CREATE TABLE IF NOT EXISTS schema_migrations ("
		 " version integer PRIMARY KEY,"
		 " name text NOT NULL,"
		 " applied_at timestamptz NOT NULL DEFAULT now())",
		 "creating schema_migrations", err, errlen)) != 0 ||
	    (rv = cmd(conn, "COMMIT", "commit", err, errlen)) != 0)
		goto fail;

	if ((res = q(conn, PGRES_TUPLES_OK,
		 "SELECT version FROM schema_migrations ORDER BY version", 0, NULL,
		 "reading schema_migrations", err, errlen)) == NULL) {
		rv = SAGA_EDB;
		goto fail;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		int v = atoi(PQgetvalue(res, r, 0));
		for (i = 0; i < n && list[i].version != v; i++)
			;
		if (i < n)
			have[i] = 1;
		else if (unknown == 0)
			unknown = v;
		if (v > db_max)
			db_max = v;
	}
	/* Forward only: a newer binary has been here, and this one does not
	 * know what the schema now looks like. */
	if (db_max > known_max) {
		seterr(err, errlen,
		    "database schema version %d is newer than this sagad (knows up "
		    "to %d); run a newer sagad",
		    db_max, known_max);
		rv = SAGA_EDB;
		goto fail;
	}
	if (unknown != 0) {
		seterr(err, errlen,
		    "database records schema migration %d, which this sagad does "
		    "not know",
		    unknown);
		rv = SAGA_EDB;
		goto fail;
	}
	PQclear(res);
	res = NULL;

	for (i = 0; i < n; i++) {
		if (have[i])
			continue;
		if ((rv = apply_one(conn, &list[i], err, errlen)) != 0)
			goto fail;
		count++;
	}

fail:
	PQclear(res);
	if (PQtransactionStatus(conn) == PQTRANS_INTRANS ||
	    PQtransactionStatus(conn) == PQTRANS_INERROR)
		PQclear(PQexec(conn, "ROLLBACK"));
	if (locked) {
		/* If the connection is gone, so is the lock. */
		res = PQexecParams(
		    conn, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, key, NULL, NULL, 0);
		PQclear(res);
	}
	free(have);
	if (applied != NULL)
		*applied = count;
	return rv;
}

int
migrate_apply(PGconn *conn, int *applied, char *err, size_t errlen)
{
	return migrate_apply_list(conn, migrations, n_migrations, applied, err, errlen);
}
