/*
 * handle_rerun: OP_RERUN, a finished saga started again with its input as
 * a new saga linked to it ("rerun of OLD" in the new saga's history,
 * "rerun as NEW" in the old one's; get and list show the link). With an
 * idempotency key, the same key gives the same new saga (as a start's
 * key does). latest_version: on the definition's latest version instead
 * of the old saga's.
 */
#ifndef SAGAD_HANDLE_RERUN_H
#define SAGAD_HANDLE_RERUN_H

#include <libpq-fe.h>

#include "rpc.h"

/* On a reader: r carries an OperateRequest with op OP_RERUN; answers r
 * (OperateResponse.new_saga_id) once the new saga is durable. */
void rerun_run(PGconn *c, rpc_req *r);

#endif
