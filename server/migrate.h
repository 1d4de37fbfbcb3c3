/*
 * migrate: schema migrations. The SQL files in migrations/ (NNN_name.sql)
 * are compiled into sagad. migrate_apply() applies, in order, every one not
 * yet recorded in table schema_migrations, each in its own transaction
 * together with its record; an advisory lock makes concurrent runs (two
 * sagad starting at once) apply each migration exactly once. Forward only:
 * a database that records a migration this binary does not know is refused.
 */
#ifndef SAGAD_MIGRATE_H
#define SAGAD_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

typedef struct migration {
	int version;      /* NNN */
	const char *name; /* file name */
	const char *sql;
} migration;

extern const migration migrations[];
extern const size_t n_migrations;

/* Applies pending migrations. *applied (may be NULL) = how many were
 * applied now. Returns 0 or a saga_err value with a message in err. */
int migrate_apply(PGconn *conn, int *applied, char *err, size_t errlen);

/* Applies a given list (for tests). */
int migrate_apply_list(
    PGconn *conn, const migration *list, size_t n, int *applied, char *err, size_t errlen);

#endif
