/*
 * common: what the example order participants share. Each participant is a
 * table of handlers plus one call to ex_participant_main(), which parses
 * --url/--capacity, wires libsaga's log lines to stderr, turns SIGINT and
 * SIGTERM into saga_worker_stop() and runs the worker.
 *
 * Only the public libsaga API (saga.h) and the code protoc-c generated from
 * order.proto are used here: this is what a participant outside this tree
 * looks like.
 */
#ifndef EX_COMMON_H
#define EX_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <saga.h>

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
 * SIGTERM. argv takes --url URL (default $SAGA_URL, else SAGA_DEFAULT_URL),
 * --capacity N, --verbose (libsaga debug lines) and --help. Returns the
 * process exit status. */
int ex_participant_main(
    int argc, char **argv, const char *participant, const ex_handler *handlers, size_t n);

/* The default sagad URL: $SAGA_URL if set and not empty, else
 * SAGA_DEFAULT_URL. */
const char *ex_default_url(void);

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
