/*
 * store: everything sagad writes to and reads from PostgreSQL.
 *
 * The writer is one thread with one connection. The engine hands it
 * batches; each batch is one transaction, sent as one pipeline (libpq
 * pipeline mode: BEGIN, a prepared INSERT per new saga and a prepared
 * UPDATE per changed one, COMMIT; one round trip, one commit), whatever
 * the number of sagas in it:
 * under load the engine gathers many sagas' transitions into one batch
 * while the previous one commits (group commit), and when idle a batch
 * holds a single transition and goes out at once. Batches are applied in
 * submission order. A batch that fails (connection lost, even during
 * COMMIT) is retried until it succeeds: every row write is idempotent
 * (inserts ignore an existing id; updates apply only if they move the
 * row's revision forward), so an unknown commit outcome is harmless.
 */
#ifndef SAGAD_STORE_H
#define SAGAD_STORE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "defn.h"
#include "sagawire.pb-c.h"

typedef struct store_row {
	uint8_t id[16];
	int insert;    /* 1 = a new saga */
	int16_t state; /* Sagawire__SagaState */
	int32_t rev;
	int64_t updated_us;
	uint8_t *steps; /* packed StoredSteps (owned by the row) */
	size_t steps_len;
	char *error; /* owned; never NULL */
	/* Inserts only; borrowed from the saga, which outlives the batch. */
	const char *definition;
	uint32_t version;
	const char *idem_key;     /* NULL = none */
	const char *business_key; /* NULL = none */
	int64_t created_us;
	const uint8_t *input;
	size_t input_len;
	/* Set by the writer for inserts: 1 = the row is ours; 0 = another saga
	 * already holds idem_key, whose id is in existing_id. */
	int inserted;
	uint8_t existing_id[16];
} store_row;

typedef struct store_batch {
	store_row *rows;
	size_t n_rows, cap_rows;
	/* The fence (several sagads on one database, docs/SCALING.md): the
	 * batch commits only if every shard it writes is still owned by
	 * fence_owner at the epoch given (FENCE_SQL, which also locks
	 * them until the commit). Array literals such as "{3,17}" and
	 * "{5,9}"; fence_owner NULL = no fence. A batch that fails its fence
	 * is not retried: sagad stops (exit 75), it no longer owns the
	 * shards its sagas are in. */
	const char *fence_owner;
	char fence_shards[64 * 4 + 3];
	char fence_epochs[64 * 21 + 3];
	void *user;        /* the engine's post-commit work */
	int64_t commit_us; /* how long the commit took (for metrics) */
	struct store_batch *next;
} store_batch;

store_batch *store_batch_new(void);
/* Appends a zeroed row; NULL on ENOMEM. */
store_row *store_batch_add(store_batch *b);
void store_batch_free(store_batch *b);

typedef void (*store_done_fn)(store_batch *b, void *arg);

/* Starts the writer thread on its own connection. After each batch
 * commits, committed() is called on the writer thread at once (keep it
 * short: the next commit waits for it), then done() on the writer or on a
 * completion thread, one batch at a time, in commit order. */
int store_writer_start(
    const char *conninfo, store_done_fn committed, store_done_fn done, void *arg);
void store_writer_submit(store_batch *b);
/* Finishes queued batches, then stops. */
void store_writer_stop(void);

/* Connects (with application_name) and checks the server. Returns NULL and
 * a message in err on failure. */
PGconn *store_connect(const char *conninfo, const char *app, char *err, size_t errlen);

/* Loads every stored definition version the registry does not hold yet
 * (all at start; later, those another sagad registered). */
int store_load_definitions(PGconn *conn, char *err, size_t errlen);

/* Registers parsed definitions (takes ownership of defs[i] on success:
 * each goes to the registry or is freed if unchanged). out[i] receives
 * name/version/unchanged. */
int store_register(PGconn *conn, const uint8_t *set, size_t set_len, defn_saga **defs, size_t n,
    bool force, Sagawire__RegisteredDefinition *out, char *err, size_t errlen);

/* One unfinished saga as stored. Pointers valid during the callback. */
typedef struct store_saga {
	uint8_t id[16];
	const char *definition;
	uint32_t version;
	int state;
	int32_t rev;
	const char *idem_key;     /* NULL = none */
	const char *business_key; /* NULL = none */
	int64_t created_us, updated_us;
	const uint8_t *input;
	size_t input_len;
	const uint8_t *steps;
	size_t steps_len;
	const char *error;
} store_saga;

/* Calls fn for every saga in state RUNNING or COMPENSATING of the shards
 * listed in `shards` (an int array literal, "{0,5,7}"), in creation order,
 * reading in chunks so memory stays bounded. */
int store_load_active(PGconn *conn, const char *shards, int (*fn)(const store_saga *s, void *arg),
    void *arg, char *err, size_t errlen);

/* Reads one saga (any state). SAGA_ENOTFOUND if absent. */
int store_get(PGconn *conn, const uint8_t id[16], int (*fn)(const store_saga *s, void *arg),
    void *arg, char *err, size_t errlen);

/* Binary helpers shared with reader.c. */
int64_t store_ts_from_pg(const char *p); /* timestamptz binary -> unix us */
void store_ts_to_pg(int64_t us, char out[8]);

#endif
