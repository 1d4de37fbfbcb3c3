/*
 * redact: removes a message's sensitive fields from its bytes, following a
 * plan compiled from the definition (defn.h defn_redact), and says which
 * ones it removed. Used for what sagad shows (GetResponse: a saga's input,
 * each step's result), never for what it dispatches. Pure: no I/O, no
 * global state; bounded by the input (depth at most RDX_MAX_DEPTH, at most
 * RDX_MAX_PATHS paths).
 *
 * Bytes that do not parse as protobuf where the plan must look are not
 * shown: a top-level message that does not parse is removed whole (path
 * "*"), a nested one that does not parse (or nests deeper than
 * RDX_MAX_DEPTH) is removed as a field (its path).
 */
#ifndef SAGAD_REDACT_H
#define SAGAD_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include "defn.h"

#define RDX_MAX_DEPTH 64
#define RDX_MAX_PATHS 64

typedef struct rdx_out {
	uint8_t *buf; /* the redacted bytes (malloc'd; NULL when len is 0) */
	size_t len;
	char **paths; /* the removed fields' paths, each once, in the order met */
	size_t n_paths;
} rdx_out;

/* Redacts in[0..len) by plan into *o (cleared first). plan NULL: a copy,
 * no paths. 0, or SAGA_ENOMEM (*o is then empty). */
int rdx_apply(const defn_redact *plan, const uint8_t *in, size_t len, rdx_out *o);
/* Frees what rdx_apply made; the struct is cleared. NULL is a no-op. */
void rdx_out_free(rdx_out *o);

#endif
