/*
 * engine: runs the saga state machine (sm.c). It owns every unfinished
 * saga in memory, behind one mutex, and runs on whichever thread delivers
 * an event (nng's callbacks, the writer); engine_run() only fires timers
 * and drives shutdown. It carries out what the state machine says must
 * happen, through dispatch.c (steps to participants) and the store's
 * writer (batches). An event changes sagas in memory and records what must
 * happen once those changes are durable (dispatches, replies); the changed
 * sagas go into the open batch, which is handed to the store writer as
 * soon as it is idle. Nothing leaves sagad (no dispatch, no reply that
 * reports a change) before the batch that made it owed has committed.
 *
 * The saga and step states, and which moves between them are legal: sm.h.
 */
#ifndef SAGAD_ENGINE_H
#define SAGAD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rpc.h"

/* Loads unfinished sagas (registry must be loaded first) and starts the
 * writer. conninfo is used by the writer and for loading. */
int engine_init(const cfg *c, const char *conninfo, char *err, size_t errlen);
/* Fires timers on the calling thread until engine_stop() and everything
 * open is committed. */
void engine_run(void);
/* Monotonic ms at which the engine loop last ran its once-a-second check
 * (systemd's watchdog is fed only while it is recent). */
int64_t engine_alive_ms(void);
/* Of a saga this instance holds: a bit per step whose attempt is owed but
 * not sent yet (queued); 0 if it holds no such saga. Safe from readers. */
uint64_t engine_queued_mask(const uint8_t id[16]);
/* Asks the loop to finish: nothing more is dispatched, the outcomes of
 * steps in flight are awaited (cfg shutdown_grace_ms), pending batches are
 * committed, then engine_run() returns. */
void engine_stop(void);
/* Applies the settings a SIGHUP may change (breaker, grace period). */
void engine_reload(const cfg *c);
void engine_fini(void);

/*
 * Requests. The router (route.c) hands each request to one handler through
 * engine_call(), which takes the engine's lock and refuses when the engine
 * is closed (and new work when it is stopping). A handler answers the
 * request (now, or after the commit of what it changed) and returns
 * ENGINE_ANSWERED, or returns ENGINE_NOT_HELD without answering when the
 * saga it names is not in memory (finished, parked or unknown): the router
 * then hands it to a reader, which reads the saga's row.
 */
enum { ENGINE_ANSWERED = 0, ENGINE_NOT_HELD = 1 };
typedef int (*engine_handler)(rpc_req *r);
int engine_call(rpc_req *r, engine_handler h, bool new_work);

int engine_start(rpc_req *r); /* StartRequest; NOT_HELD: unknown definition */
/* A start whose definition was unknown, after the reader loaded the
 * definitions another sagad may have registered. */
int engine_start_refreshed(rpc_req *r);
int engine_cancel(rpc_req *r);       /* CancelRequest; NOT_HELD */
int engine_wait(rpc_req *r);         /* WaitRequest; NOT_HELD */
int engine_operate(rpc_req *r);      /* OperateRequest; NOT_HELD */
int engine_poll(rpc_req *r);         /* WorkPoll */
int engine_report(rpc_req *r);       /* Report */
int engine_participants(rpc_req *r); /* ParticipantsRequest */

struct store_saga;

/* An operator action on a parked saga the engine did not hold, read from
 * its row: the engine takes it back and acts (ENGINE_ANSWERED), unless the
 * saga's shard is not held here (ENGINE_NOT_HELD, r not answered). */
int engine_operate_loaded(rpc_req *r, const struct store_saga *row);
/* A connection closed: its in-flight steps are redelivered elsewhere. */
void engine_pipe_closed(uint32_t pipe_id, void *unused);

/*
 * Shards (docs/SCALING.md). shards.c holds the leases and tells the engine
 * what it holds; the engine keeps, per shard, its epoch (every batch is
 * fenced with it), how long its lease is proven (dispatch stops after),
 * and its sagas in memory.
 */
/* The owner name batches are fenced with (before any claim). */
void engine_set_instance(const char *id);
/* A shard was claimed at epoch; its lease is proven until valid_until_ms
 * (monotonic). Its sagas are loaded next, one call each. */
void engine_shard_claimed(unsigned shard, int64_t epoch, int64_t valid_until_ms);
int engine_shard_load(const struct store_saga *row);
/* The claimed shard is loaded: new sagas may go to it. */
void engine_shard_ready(unsigned shard);
/* Leases renewed: dispatch in these shards is safe until valid_until_ms;
 * what was held while unproven goes out. */
void engine_shards_valid(const unsigned *shards, size_t n, int64_t valid_until_ms);
/* Begins handing a shard over: no new sagas in it, nothing dispatched. */
void engine_shard_release(unsigned shard);
/* Drops a releasing shard's sagas once nothing of them waits for a commit
 * and (unless force) no step of them is on the wire: 1 = dropped (its
 * lease may be freed), 0 = not yet. */
int engine_shard_drop(unsigned shard, bool force);
/* Shards held (claimed, active or releasing); the active ones as a mask. */
size_t engine_shards_held(void);
uint64_t engine_shards_active_mask(void);

/* How long the commit under way has waited for PostgreSQL (0 = none). */
int64_t engine_commit_wait_ms(void);

/* Every metric in Prometheus text format (malloc'ed, *len bytes). */
int engine_metrics(char **out, size_t *len);

#endif
