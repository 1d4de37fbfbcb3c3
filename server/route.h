/*
 * route: which module serves which request, in one table. rpc.c decodes a
 * request and hands it here; the table sends it to the engine (through
 * engine_call, under its lock) or to a reader thread, and a request the
 * engine answers ENGINE_NOT_HELD for (a saga not in memory) to the reader
 * that reads its row. Nothing else switches over request types.
 *
 * With auth on, every request from the network is checked first
 * (auth_check: credential, then the least role its row names) and a
 * refused one goes nowhere. A principal limited to some definitions that
 * names one saga (get, wait, cancel, operate) has that saga's definition
 * read on a reader before the request goes on.
 *
 * Module order, with no circles: route -> engine, reader; reader -> engine
 * (a parked saga it read); engine -> dispatch, sm, store; everyone -> rpc
 * (replies).
 */
#ifndef SAGAD_ROUTE_H
#define SAGAD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

/* rpc_start's route function. */
void route_request(rpc_req *r);

/* For a request handler other than the nng RPC (the HTTP API): serves q
 * exactly as if it had arrived over nng. Its credential (q->credential,
 * with auth on) is checked and the role the table asks for, then the same
 * handler runs (an operator action goes to the engine, a reader or the
 * sagad holding the saga). done(arg, resp) is called once, on whichever
 * thread answers, with the decoded response (resp->error set on a
 * refusal; NULL if no answer could be made); resp is freed when done
 * returns. q is copied. Returns 0, or SAGA_ENOMEM (done is not called). */
typedef void (*route_done_fn)(void *arg, const Sagawire__Response *resp);
int route_call(const Sagawire__Request *q, route_done_fn done, void *arg);

/* An operator action through route_call: op a Sagawire__Operation
 * (OP_RETRY_STEP, OP_SKIP_STEP, OP_TERMINATE, OP_FORCE_SUCCEEDED,
 * OP_FORCE_COMPENSATED, OP_RERUN); step NULL for terminate and rerun;
 * result (force succeeded) may be NULL; idempotency_key (rerun) may be
 * NULL; credential: the caller's, NULL with auth off. The answer is an
 * OperateResponse (state, new_saga_id) or an error. */
int route_operate(const char *saga_id, int op, const char *step, const uint8_t *result,
    size_t result_len, const char *reason, const char *idempotency_key, bool latest_version,
    const char *credential, route_done_fn done, void *arg);

#endif
