/*
 * common: what the example order participants share. Each participant is a
 * table of handlers plus one call to ex_participant_main(), which parses
 * --url/--capacity, wires libsaga's log lines to stderr, turns SIGINT and
 * SIGTERM into saga_worker_stop() and runs the worker.
 *
 * Each participant keeps its data in its own PostgreSQL database (--db) and
 * runs every handler through libsaga's barrier (saga_barrier.h), so a
 * redelivered step never applies twice, a compensation of an action that
 * never ran is a no-op, and a late action cannot apply after its
 * compensation.
 *
 * Only the public libsaga API (saga.h, saga_barrier.h), libpq and the code
 * protoc-c generated from order.proto are used here: this is what a
 * participant outside this tree looks like.
 */
#ifndef EX_COMMON_H
#define EX_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <saga.h>
#include <saga_barrier.h>

#include "order.pb-c.h"

#if defined(__GNUC__)
#define EX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EX_PRINTF(a, b)
#endif

/* One rpc a participant serves. */
typedef struct ex_handler {
	saga_step_kind kind; /* SAGA_ACTION or SAGA_COMPENSATION */
	const char *rpc;     /* rpc name as in order.proto */
	saga_handler_fn fn;
} ex_handler;

/* Runs participant `participant` serving the n handlers until SIGINT or
 * SIGTERM. argv takes --url URLS (default $SAGA_URL, else SAGA_DEFAULT_URL),
 * --db CONNINFO (default $SHOP_DB; required), --capacity N, --verbose
 * (libsaga debug lines) and --help. Before serving, it applies the barrier
 * table and schema_sql (the participant's own tables, idempotent) to the
 * database. Returns the process exit status. */
int ex_participant_main(int argc, char **argv, const char *participant, const char *schema_sql,
    const ex_handler *handlers, size_t n);

/* This thread's connection to the participant's database (each handler
 * thread has its own, made on first use and kept). On failure replies
 * retry with the reason and returns NULL: the handler must return. */
PGconn *ex_db(saga_reply *reply);

/* Runs fn through the barrier on this thread's connection and prints one
 * line: "<rpc> saga=<id> attempt=<n>: <what> [barrier: <verdict>]", where
 * what is the text fn left with ex_say() (or the reply's error). */
void ex_run_barrier(const saga_step *step, saga_reply *reply, saga_barrier_fn fn, void *user);

/* Inside a barrier fn: says what it did, for the line ex_run_barrier prints. */
void ex_say(const char *fmt, ...) EX_PRINTF(1, 2);

/* One SQL statement with text parameters inside a barrier fn. Returns the
 * result (PGRES_COMMAND_OK or PGRES_TUPLES_OK) or NULL after replying
 * retry with PostgreSQL's message. Free it with PQclear. */
PGresult *ex_sql(PGconn *db, saga_reply *reply, const char *sql, int n, const char *const *vals);

/* The default sagad URL: $SAGA_URL if set and not empty, else
 * SAGA_DEFAULT_URL. */
const char *ex_default_url(void);

/* TLS for tls+tcp:// URLs from the environment, as sagactl takes it:
 * SAGA_TLS_CA (the CA sagad's certificate is checked against; nothing is
 * set without it), SAGA_TLS_CERT and SAGA_TLS_KEY (a client certificate,
 * for a sagad that requires one), SAGA_TLS_SERVER_NAME. Applies them to c
 * (or, c NULL, to w). Returns 0 after printing why a setting is unusable,
 * 1 otherwise. (libsaga itself never reads the environment.) */
int ex_tls_from_env(const char *prog, saga_client *c, saga_worker *w);

/* Log callback for saga_*_set_log: writes "<prog>: <level>: <line>" to
 * stderr. user is the program name (const char *). Lines above the level
 * set by ex_set_log_level are dropped before formatting. */
void ex_log(saga_log_level level, const char *line, void *user);
void ex_set_log_level(saga_log_level max);

/* printf to stdout and flush at once, so that the line shows up in a log
 * file or pipe as soon as the step is handled. */
void ex_out(const char *fmt, ...) EX_PRINTF(1, 2);

/* Unpacks the saga input of `step` as an OrderRequest and checks that it
 * names an order. On bad input replies saga_reply_fail() with the reason
 * and returns NULL: the handler must then return at once. Free the result
 * with shop__order_request__free_unpacked(req, NULL). */
Shop__OrderRequest *ex_order_input(const saga_step *step, saga_reply *reply);

/* Packs a generated message into a malloc'ed buffer for
 * saga_reply_success; NULL if out of memory. The caller frees it. */
uint8_t *ex_pack(const ProtobufCMessage *msg, size_t *len);

#endif
