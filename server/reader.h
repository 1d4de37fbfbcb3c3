/*
 * reader: threads with their own PostgreSQL connections that serve the
 * requests which read (get, list) or register definitions, so that slow
 * queries never hold up the engine. Replies go straight back over rpc.
 */
#ifndef SAGAD_READER_H
#define SAGAD_READER_H

#include "config.h"
#include "rpc.h"

int reader_start(const cfg *c, const char *conninfo, char *err, size_t errlen);
void reader_stop(void);
/* register, get, list. */
void reader_submit(rpc_req *r);
/* A cancel the engine could not apply (saga not active): answer with the
 * stored state (SAGA_ESTATE) or SAGA_ENOTFOUND. */
void reader_submit_cancel_check(rpc_req *r);
/* A wait on a saga not in the engine's memory: answer with its stored
 * (final) state, or SAGA_ENOTFOUND. */
void reader_submit_wait_check(rpc_req *r);
/* Operator action on a saga the engine does not hold: reads it and, if it
 * is parked, hands it to engine_operate_loaded(). */
void reader_submit_operate_load(rpc_req *r);

#endif
