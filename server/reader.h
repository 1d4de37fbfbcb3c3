/*
 * reader: threads with their own PostgreSQL connections that serve the
 * requests which read (get, list, describe) or register definitions, and
 * those about sagas the engine does not hold in memory, so that slow
 * queries never hold up the engine. Replies go straight back over rpc.
 */
#ifndef SAGAD_READER_H
#define SAGAD_READER_H

#include <libpq-fe.h>

#include "config.h"
#include "rpc.h"

int reader_start(const cfg *c, const char *conninfo, char *err, size_t errlen);
/* Stops the readers: each finishes the request it is serving and answers
 * it; requests still queued are refused (SAGA_ECLOSED). Call before
 * rpc_close(), which frees every request. */
void reader_stop(void);

/* Work for a reader: fn(conn, r) runs on a reader thread with its own
 * connection, and answers r. */
typedef void (*reader_fn)(PGconn *c, rpc_req *r);
void reader_submit(rpc_req *r, reader_fn fn);

/* GetRequest, ListRequest, DescribeRequest, RegisterRequest. */
void reader_get(PGconn *c, rpc_req *r);
void reader_list(PGconn *c, rpc_req *r);
void reader_describe(PGconn *c, rpc_req *r);
void reader_register(PGconn *c, rpc_req *r);
/* A start of a definition the engine does not know (ENGINE_NOT_HELD): the
 * definitions registered meanwhile (by another sagad) are loaded, and the
 * start goes back to the engine. (Requests about sagas the engine does not
 * hold are forward.c's, also run on reader threads.) */
void reader_start_unknown(PGconn *c, rpc_req *r);

#endif
