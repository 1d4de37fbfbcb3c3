/*
 * token: per-dispatch tokens, so that a participant's report cannot be
 * forged. Every Dispatch carries
 *
 *   token = HMAC-SHA256(key, saga id (16 bytes) || step index (u32, big
 *           endian) || kind (u8) || attempt (u32, big endian))[0..16)
 *
 * and a Result (outcome or heartbeat) is accepted only if it carries the
 * token of the attempt it names, compared in constant time. Nothing is
 * stored per dispatch: the token is derived again when the result comes.
 * The key (32 random bytes) is one row of saga_dispatch_key
 * (migrations/004_dispatch_key.sql), made by the first sagad to start and
 * read by every one, so tokens made by one instance are checked by any
 * other (a restart, a shard taken over). See docs/SECURITY.md.
 *
 * A token costs about 150 ns (the key's padded blocks are hashed once at
 * load; each token hashes 25 + 32 bytes more). Thread safe.
 */
#ifndef SAGAD_TOKEN_H
#define SAGAD_TOKEN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOK_LEN     16
#define TOK_KEY_LEN 32

/* Reads the key from the database, making it first if no sagad has (two
 * starting at once agree on one). 0, or a saga_err with a message in err. */
int tok_load(PGconn *conn, char *err, size_t errlen);
/* Uses this key (tests). 0, or SAGA_ENOMEM. */
int tok_set_key(const uint8_t key[TOK_KEY_LEN]);
/* Frees what tok_load/tok_set_key made; then tokens are all zero. */
void tok_fini(void);

/* The token of one attempt. Before a key is loaded it is all zero (and
 * tok_check refuses everything). */
void tok_make(
    const uint8_t saga_id[16], uint32_t step, uint8_t kind, uint32_t attempt, uint8_t out[TOK_LEN]);
/* Does token (len bytes, from the network) prove that attempt? Constant
 * time in the token's content. */
bool tok_check(const uint8_t saga_id[16], uint32_t step, uint8_t kind, uint32_t attempt,
    const uint8_t *token, size_t len);

#endif
