/*
 * forward: requests about a saga the engine does not hold in memory: one
 * that is finished or parked (its row answers), or one that another sagad
 * holds (several sagads on one database, docs/SCALING.md).
 *
 * fwd_cancel_check, fwd_wait_check and fwd_operate_load run on a reader
 * thread (route.c sends ENGINE_NOT_HELD requests there) and read the row.
 * What another sagad must do goes through this module's thread, on its own
 * connection:
 *
 *   cancel and operator actions are forwarded through the database: the
 *     request is written to saga_commands (NOTIFY saga_commands); the sagad
 *     holding the saga's shard runs it as if a client had sent it, and
 *     writes the response (NOTIFY saga_command_done); the response goes
 *     back to the client here. A command for a shard no one holds (a
 *     takeover in progress) runs when the next owner has loaded it.
 *   waits on a saga held elsewhere are answered once its row is final
 *     (its state is read every WAIT_POLL_MS), or at the wait's timeout.
 *
 * Readers hand requests here (reader.c); the engine never does.
 */
#ifndef SAGAD_FORWARD_H
#define SAGAD_FORWARD_H

#include <stdint.h>

#include "config.h"
#include "rpc.h"

#include <libpq-fe.h>

int fwd_start(const cfg *c, const char *conninfo, char *err, size_t errlen);
/* Answers what waits with SAGA_ECLOSED and stops the thread. */
void fwd_stop(void);

/* On a reader thread (c its connection), for requests the engine answered
 * ENGINE_NOT_HELD:
 * a cancel: a finished saga is SAGA_ESTATE, an unknown one SAGA_ENOTFOUND,
 *   one held elsewhere gets the cancel forwarded; */
void fwd_cancel_check(PGconn *c, rpc_req *r);
/* a wait: a final saga is answered at once, an unknown one SAGA_ENOTFOUND,
 *   one held elsewhere when its row is final (or at the wait's timeout); */
void fwd_wait_check(PGconn *c, rpc_req *r);
/* an operator action: a parked saga in a shard held here is taken back by
 *   the engine (engine_operate_loaded); one held elsewhere (parked or not)
 *   gets the action forwarded; a finished one is SAGA_ESTATE. */
void fwd_operate_load(PGconn *c, rpc_req *r);

#endif
