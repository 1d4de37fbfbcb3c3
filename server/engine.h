/*
 * engine: the saga state machine. It owns every unfinished saga in memory,
 * behind one mutex, and runs on whichever thread delivers an event (nng's
 * callbacks, the writer); engine_run() only fires timers and drives
 * shutdown. An event changes sagas in memory and records what must
 * happen once those changes are durable (dispatches, replies); the changed
 * sagas go into the open batch, which is handed to the store writer as
 * soon as it is idle. Nothing leaves sagad (no dispatch, no reply that
 * reports a change) before the batch that made it owed has committed.
 *
 * Saga states (sagawire.SagaState):
 *   RUNNING      steps run as their dependencies succeed
 *   COMPENSATING a step failed, or cancel: in-flight actions finish, then
 *                completed steps are undone, dependents before dependencies
 *   COMPLETED    terminal; all steps succeeded
 *   COMPENSATED  terminal; every completed step undone
 *   FAILED       parked: a compensation exhausted its attempts
 * Step states: see sagawire.StepState and docs/ARCHITECTURE.md.
 */
#ifndef SAGAD_ENGINE_H
#define SAGAD_ENGINE_H

#include <stdint.h>

#include "config.h"
#include "rpc.h"

/* Loads unfinished sagas (registry must be loaded first) and starts the
 * writer. conninfo is used by the writer and for loading. */
int engine_init(const cfg *c, const char *conninfo, char *err, size_t errlen);
/* Fires timers on the calling thread until engine_stop() and everything
 * open is committed. */
void engine_run(void);
/* Asks the loop to finish: nothing more is dispatched, the outcomes of
 * steps in flight are awaited (cfg shutdown_grace_ms), pending batches are
 * committed, then engine_run() returns. */
void engine_stop(void);
/* Applies the settings a SIGHUP may change (breaker, grace period). */
void engine_reload(const cfg *c);
void engine_fini(void);

/* Hands a start, cancel, poll or report request to the engine. */
void engine_submit(rpc_req *r);
/* An operator action (OperateRequest) on a parked saga the engine did not
 * hold, read by a reader: the engine takes it back and acts. */
struct store_saga;
void engine_operate_loaded(rpc_req *r, const struct store_saga *row);
/* A connection closed: its in-flight steps are redelivered elsewhere. */
void engine_pipe_closed(uint32_t pipe_id, void *unused);

/* Every metric in Prometheus text format (malloc'ed, *len bytes). */
int engine_metrics(char **out, size_t *len);

#endif
