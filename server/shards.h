/*
 * shards: several sagads on one PostgreSQL. Sagas are spread over SHD_N
 * shards by their id; each sagad owns some shards through lease rows
 * (saga_shards: owner, epoch, expiry; migrations/002_shards.sql) and holds
 * only those shards' sagas. This module is the lease manager: a thread
 * with its own connection that, every quarter of the lease,
 *
 *   renews the leases it holds (a lease it finds lost means another
 *     instance took the shard over: this sagad stops at once, exit 75, so
 *     that its supervisor restarts it clean; its batches are fenced anyway),
 *   counts the live instances (saga_instances) and claims shards up to its
 *     fair share: free ones, expired ones (a dead or paused instance's),
 *     and its own from before a restart at once; each claim bumps the
 *     shard's epoch, and the engine loads the shard's unfinished sagas,
 *   releases shards above its fair share when another instance has too
 *     few: the engine stops dispatching in them, lets the outcomes in
 *     flight land (bounded), commits, drops them from memory; then the row
 *     is freed for the other instance to claim.
 *
 * On SIGTERM (shd_stop), after the engine's last commit, every shard is
 * released and the instance row removed, so the others take over at their
 * next tick instead of waiting for the lease to expire.
 *
 * The fence itself is in the batch (store.c, FENCE_SQL): a sagad paused
 * past its lease commits nothing once another has claimed its shards; and
 * it dispatches only for shards whose lease it can prove valid (the engine
 * checks the expiry, with a margin, on its monotonic clock).
 */
#ifndef SAGAD_SHARDS_H
#define SAGAD_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define SHD_N 64

/* The shard of a saga id: the low bits of its last byte (random in a
 * UUIDv7). migrations/002_shards.sql computes the same for the column. */
static inline unsigned
shd_of(const uint8_t id[16])
{
	return id[15] & (SHD_N - 1);
}

/* This sagad's instance id (set by shd_start). */
const char *shd_instance_id(void);
/* Milliseconds since the lease thread last had its round of queries
 * answered (it asks every quarter of the lease): how long PostgreSQL has
 * been silent, for /readyz. 0 before the first. */
int64_t shd_db_silent_ms(void);

/* Connects, registers the instance, claims its first shards (loading
 * their sagas into the engine, which must be initialised), and starts the
 * lease thread. Returns 0 or a saga_err with err set. */
int shd_start(const cfg *c, const char *conninfo, char *err, size_t errlen);

/* Stops the lease thread and releases every shard (call after the engine's
 * last commit). */
void shd_stop(void);

#endif
