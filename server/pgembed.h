/*
 * pgembed: the embedded default. With no conninfo configured, sagad runs a
 * private PostgreSQL cluster in <data_dir>/pg: initdb on first start, then
 * pg_ctl start with a unix socket in that directory and no TCP listener.
 * The cluster is a separate process group: it outlives a crash (kill -9) of
 * sagad, and the next start re-uses it if still running.
 * When sagad runs as root, PostgreSQL (which refuses root) is run as
 * `pg_user` via runuser, with its directory owned by that user.
 */
#ifndef SAGAD_PGEMBED_H
#define SAGAD_PGEMBED_H

#include <stddef.h>

/* Ensures the cluster exists and runs, and that database "saga" exists.
 * Writes a conninfo for it into conninfo (e.g. "host=/abs/dir/pg
 * port=5432 dbname=saga user=saga"). bindir NULL/"" = search the usual
 * places (SAGAD_PG_BINDIR, pg_config --bindir, /usr/lib/postgresql/N/bin,
 * PATH). Returns 0 or a saga_err value with a message in err. */
int pgembed_start(const char *data_dir, const char *bindir, const char *pg_user, char *conninfo,
    size_t conninfo_len, char *err, size_t errlen);

/* Stops the cluster (pg_ctl stop -m fast). Safe if not running. */
int pgembed_stop(const char *data_dir, const char *bindir, const char *pg_user);

#endif
