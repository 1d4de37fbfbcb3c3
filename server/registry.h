/*
 * registry: the in-memory set of registered saga definitions, every version
 * of every name. Shared by the engine (start), the readers (status) and the
 * register RPC. Definitions are immutable and are never freed while sagad
 * runs, so a pointer obtained from a lookup stays valid: no reference counts
 * on hot paths. Lookups take a read lock.
 */
#ifndef SAGAD_REGISTRY_H
#define SAGAD_REGISTRY_H

#include <stdint.h>

#include "defn.h"

int registry_init(void);
void registry_fini(void);

/* Adds a definition (the registry takes ownership). Its name+version must
 * be new. Returns 0 or SAGA_ENOMEM / SAGA_EEXIST. */
int registry_add(defn_saga *d);

/* version 0 = latest. NULL if unknown. */
const defn_saga *registry_get(const char *name, uint32_t version);

/* Up to max definitions into out: every version of `name`, newest first,
 * or (name NULL) the latest version of every name, by name. Returns how
 * many there are (may exceed max). The pointers stay valid while sagad
 * runs. */
size_t registry_list(const char *name, const defn_saga **out, size_t max);

/* Number of definitions (all versions). */
size_t registry_count(void);

#endif
