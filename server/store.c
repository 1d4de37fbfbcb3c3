/* store: PostgreSQL access for sagad. See store.h for the model. */
#include "store.h"

#include <arpa/inet.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "registry.h"
#include "saga_base.h"
#include "wire.h"

/* PostgreSQL type OIDs (stable, from pg_type.dat). */
#define OID_BYTEA       17
#define OID_INT2        21
#define OID_INT4        23
#define OID_TEXT        25
#define OID_INT8        20
#define OID_TIMESTAMPTZ 1184
#define OID_UUID        2950
#define OID_TEXT_ARR    1009
#define OID_INT4_ARR    1007
#define OID_INT8_ARR    1016

/* Seconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define PG_EPOCH_OFFSET_US (946684800LL * 1000000LL)

/* ---- binary encoding helpers ------------------------------------------ */

static void
put32(char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t
get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

static void
put64(char *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint64_t
get64(const char *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

int64_t
store_ts_from_pg(const char *p)
{
	return (int64_t)get64(p) + PG_EPOCH_OFFSET_US;
}

void
store_ts_to_pg(int64_t us, char out[8])
{
	put64(out, (uint64_t)(us - PG_EPOCH_OFFSET_US));
}

/* A one-dimensional array in PostgreSQL's binary format. */
typedef struct pgarr {
	char *buf;
	size_t len, cap;
	size_t count;
	int failed;
} pgarr;

static void
arr_reserve(pgarr *a, size_t more)
{
	if (a->failed || a->len + more <= a->cap)
		return;
	size_t ncap = a->cap ? a->cap : 256;
	while (ncap < a->len + more)
		ncap *= 2;
	char *nb = realloc(a->buf, ncap);
	if (nb == NULL) {
		a->failed = 1;
		return;
	}
	a->buf = nb;
	a->cap = ncap;
}

static void
arr_begin(pgarr *a, uint32_t elem_oid, size_t n)
{
	memset(a, 0, sizeof(*a));
	arr_reserve(a, 20);
	if (a->failed)
		return;
	/* ndim, has_null (set later if needed), element type, dim, lbound */
	put32(a->buf, n ? 1 : 0);
	put32(a->buf + 4, 0);
	put32(a->buf + 8, elem_oid);
	if (n) {
		put32(a->buf + 12, (uint32_t)n);
		put32(a->buf + 16, 1);
		a->len = 20;
	} else {
		a->len = 12;
	}
	a->count = n;
}

static void
arr_add(pgarr *a, const void *data, size_t len)
{
	arr_reserve(a, 4 + len);
	if (a->failed)
		return;
	put32(a->buf + a->len, (uint32_t)len);
	if (len)
		memcpy(a->buf + a->len + 4, data, len);
	a->len += 4 + len;
}

static void
arr_add_null(pgarr *a)
{
	arr_reserve(a, 4);
	if (a->failed)
		return;
	put32(a->buf + 4, 1);
	put32(a->buf + a->len, 0xffffffffu);
	a->len += 4;
}

static void
arr_add_str(pgarr *a, const char *s)
{
	if (s == NULL)
		arr_add_null(a);
	else
		arr_add(a, s, strlen(s));
}

static void
arr_free(pgarr *a)
{
	free(a->buf);
	a->buf = NULL;
}

/* ---- batches ------------------------------------------------------------ */

store_batch *
store_batch_new(void)
{
	return calloc(1, sizeof(store_batch));
}

store_row *
store_batch_add(store_batch *b)
{
	if (b->n_rows == b->cap_rows) {
		size_t ncap = b->cap_rows ? b->cap_rows * 2 : 64;
		store_row *nr = realloc(b->rows, ncap * sizeof(*nr));
		if (nr == NULL)
			return NULL;
		b->rows = nr;
		b->cap_rows = ncap;
	}
	store_row *r = &b->rows[b->n_rows++];
	memset(r, 0, sizeof(*r));
	return r;
}

void
store_batch_free(store_batch *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->n_rows; i++) {
		free(b->rows[i].steps);
		free(b->rows[i].error);
	}
	free(b->rows);
	free(b);
}

/* ---- connections --------------------------------------------------------- */

PGconn *
store_connect(const char *conninfo, const char *app, char *err, size_t errlen)
{
	/* A database cut off without a reset (a partition, a dead host) must
	 * not hold a connection for minutes: TCP keepalives and a user
	 * timeout end it within seconds, and the caller reconnects (to a
	 * promoted standby, with a multi-host conninfo). They come before
	 * "dbname", so that the user's conninfo may set others; libpq applies
	 * them to TCP connections only. */
	const char *keys[] = { "keepalives", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "tcp_user_timeout", "dbname", "application_name",
		"connect_timeout", NULL };
	const char *vals[] = { "1", "10", "3", "3", "15000", conninfo, app, "10", NULL };
	/* expand_dbname=1: "dbname" may be a full conninfo/URI. */
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (c == NULL) {
		snprintf(err, errlen, "cannot allocate a PostgreSQL connection");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
		/* libpq messages end with a newline; keep log lines on one line. */
		char *nl = strchr(err, '\n');
		if (nl)
			*nl = '\0';
		PQfinish(c);
		return NULL;
	}
	return c;
}

static void
pg_errmsg(PGconn *c, const PGresult *r, char *err, size_t errlen)
{
	const char *m = r ? PQresultErrorMessage(r) : "";
	if (m == NULL || *m == '\0')
		m = PQerrorMessage(c);
	snprintf(err, errlen, "%s", m);
	for (char *p = err; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

/* ---- the batch transaction ---------------------------------------------- */

/*
 * A batch is one transaction sent as one pipeline: BEGIN, one prepared
 * INSERT or UPDATE per row, COMMIT, then a sync, all in one round trip.
 * The statements are prepared once per connection, so PostgreSQL neither
 * parses nor plans them per batch: measured with pgbench on this machine,
 * 16 rows cost 0.28 ms this way against 0.66 ms as one data-modifying CTE
 * over unnest() arrays (the previous form), 128 rows 0.96 ms against 2.8 ms,
 * and a single row 0.17 ms against 0.40 ms (docs/PERFORMANCE.md).
 *
 * libpq's blocking send reads incoming results into its buffer while the
 * socket is full, so a large pipeline cannot deadlock on socket buffers.
 * Any error drops the connection (the writer reconnects and retries the
 * whole batch; every row write is idempotent), so no failed transaction is
 * ever left open.
 */
static const char *INSERT_SQL =
    "INSERT INTO sagas (id, definition, version, state, rev, idempotency_key, business_key,"
    " created_at, updated_at, input, steps, error)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT DO NOTHING RETURNING id";
static const Oid INSERT_TYPES[12] = { OID_UUID, OID_TEXT, OID_INT4, OID_INT2, OID_INT4, OID_TEXT,
	OID_TEXT, OID_TIMESTAMPTZ, OID_TIMESTAMPTZ, OID_BYTEA, OID_BYTEA, OID_TEXT };

static const char *UPDATE_SQL =
    "UPDATE sagas SET state = $2, rev = $3, updated_at = $4, steps = $5, error = $6"
    " WHERE id = $1 AND rev < $3";
static const Oid UPDATE_TYPES[6] = { OID_UUID, OID_INT2, OID_INT4, OID_TIMESTAMPTZ, OID_BYTEA,
	OID_TEXT };

/* The fence (migrations/002_shards.sql, docs/SCALING.md): locks the rows
 * of the shards the batch writes until the commit, and fails (division by
 * zero, SQLSTATE 22012, the only error this statement can raise besides a
 * lost connection) unless every one is still ours at its epoch. One plain
 * statement: a plpgsql function doing the same cost a third more. */
static const char *FENCE_SQL =
    "WITH held AS (SELECT 1 FROM saga_shards s"
    " JOIN unnest($1::int4[], $2::int8[]) AS x(shard, epoch)"
    " ON s.shard = x.shard AND s.epoch = x.epoch WHERE s.owner = $3 FOR SHARE OF s)"
    " SELECT 1 / ((SELECT count(*) FROM held) = cardinality($1::int4[]))::int";

static const char *CONFLICT_SQL =
    "SELECT id, idempotency_key FROM sagas WHERE idempotency_key = ANY($1::text[])";

/* Prepares the writer's statements on a new connection. */
static int
prepare_writer(PGconn *c, char *err, size_t errlen)
{
	PGresult *r = PQprepare(c, "ins", INSERT_SQL, 12, INSERT_TYPES);
	if (PQresultStatus(r) == PGRES_COMMAND_OK) {
		PQclear(r);
		r = PQprepare(c, "upd", UPDATE_SQL, 6, UPDATE_TYPES);
	}
	if (PQresultStatus(r) == PGRES_COMMAND_OK) {
		PQclear(r);
		r = PQprepare(c, "fence", FENCE_SQL, 0, NULL);
	}
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		pg_errmsg(c, r, err, errlen);
	PQclear(r);
	return ok ? 0 : SAGA_EDB;
}

/* Queues one row's statement; binary parameters borrowed from the row. */
static int
send_row(PGconn *c, const store_row *r)
{
	char version[4], state[2], rev[4], created[8], updated[8];
	uint16_t st = htons((uint16_t)r->state);
	const char *err_text = r->error ? r->error : "";

	memcpy(state, &st, 2);
	put32(rev, (uint32_t)r->rev);
	store_ts_to_pg(r->updated_us, updated);
	if (r->insert) {
		put32(version, r->version);
		store_ts_to_pg(r->created_us, created);
		/* A NULL pointer is SQL NULL to libpq, even with length 0: an
		 * empty input is an empty bytea, not NULL (the column is NOT
		 * NULL, and a refused row would stop the writer for good). */
		const char *v[12] = { (const char *)r->id, r->definition, version, state, rev,
			r->idem_key, r->business_key, created, updated,
			r->input ? (const char *)r->input : "", (const char *)r->steps, err_text };
		int l[12] = { 16, 0, 4, 2, 4, 0, 0, 8, 8, (int)r->input_len, (int)r->steps_len, 0 };
		static const int f[12] = { 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0 };
		return PQsendQueryPrepared(c, "ins", 12, v, l, f, 1);
	}
	const char *v[6] = { (const char *)r->id, state, rev, updated, (const char *)r->steps,
		err_text };
	int l[6] = { 16, 2, 4, 8, (int)r->steps_len, 0 };
	static const int f[6] = { 1, 1, 1, 1, 1, 0 };
	return PQsendQueryPrepared(c, "upd", 6, v, l, f, 1);
}

/* Reads the result of the next command in the pipeline: want is the status
 * it must have. For an INSERT row, sets r->inserted. */
static int
read_one_as(PGconn *c, ExecStatusType want, store_row *r, bool fence, char *err, size_t errlen)
{
	PGresult *res = PQgetResult(c);
	if (res == NULL) {
		pg_errmsg(c, NULL, err, errlen);
		return SAGA_EDB;
	}
	int ok = PQresultStatus(res) == want;
	int fenced = 0;
	if (!ok) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		fenced = fence && state != NULL && strcmp(state, "22012") == 0;
		if (fenced)
			snprintf(err, errlen,
			    "fenced: a shard this batch writes is no longer this instance's at the "
			    "epoch it holds");
		else
			pg_errmsg(c, res, err, errlen);
	} else if (r != NULL && r->insert)
		r->inserted = PQntuples(res) == 1;
	PQclear(res);
	/* Each command's results end with a NULL; a sync has none. */
	if (want != PGRES_PIPELINE_SYNC) {
		while ((res = PQgetResult(c)) != NULL) {
			if (ok) {
				ok = 0;
				pg_errmsg(c, res, err, errlen);
			}
			PQclear(res);
		}
	}
	return ok ? 0 : fenced ? SAGA_ESTATE : SAGA_EDB;
}

static int
read_one(PGconn *c, ExecStatusType want, store_row *r, char *err, size_t errlen)
{
	return read_one_as(c, want, r, false, err, errlen);
}

/* Commits every row of b in one transaction. On error the connection is
 * left in pipeline mode or mid-transaction: the caller must drop it. */
static int
commit_rows(PGconn *c, store_batch *b, char *err, size_t errlen)
{
	if (PQenterPipelineMode(c) != 1 ||
	    PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1)
		goto send_failed;
	if (b->fence_owner != NULL) {
		const char *v[3] = { b->fence_shards, b->fence_epochs, b->fence_owner };
		if (PQsendQueryPrepared(c, "fence", 3, v, NULL, NULL, 0) != 1)
			goto send_failed;
	}
	for (size_t i = 0; i < b->n_rows; i++)
		if (send_row(c, &b->rows[i]) != 1)
			goto send_failed;
	if (PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
	    PQpipelineSync(c) != 1)
		goto send_failed;

	int rv = read_one(c, PGRES_COMMAND_OK, NULL, err, errlen);
	if (rv == 0 && b->fence_owner != NULL)
		rv = read_one_as(c, PGRES_TUPLES_OK, NULL, true, err, errlen);
	for (size_t i = 0; rv == 0 && i < b->n_rows; i++) {
		store_row *r = &b->rows[i];
		rv = read_one(c, r->insert ? PGRES_TUPLES_OK : PGRES_COMMAND_OK, r, err, errlen);
	}
	if (rv == 0)
		rv = read_one(c, PGRES_COMMAND_OK, NULL, err, errlen);
	if (rv == 0)
		rv = read_one(c, PGRES_PIPELINE_SYNC, NULL, err, errlen);
	if (rv == 0 && PQexitPipelineMode(c) != 1) {
		pg_errmsg(c, NULL, err, errlen);
		rv = SAGA_EDB;
	}
	return rv;

send_failed:
	pg_errmsg(c, NULL, err, errlen);
	return SAGA_EDB;
}

static int
commit_batch(PGconn *c, store_batch *b, char *err, size_t errlen)
{
	int rv = commit_rows(c, b, err, errlen);
	if (rv != 0)
		return rv;

	/* Rows not inserted: either an earlier try of this very batch
	 * committed them (unknown COMMIT outcome, then retried), or another
	 * saga holds their idempotency key. */
	size_t missing = 0;
	for (size_t i = 0; i < b->n_rows; i++) {
		store_row *r = &b->rows[i];
		if (r->insert && !r->inserted) {
			if (r->idem_key == NULL)
				r->inserted = 1; /* only our own id can have conflicted */
			else
				missing++;
		}
	}
	if (missing == 0)
		return 0;
	pgarr keys;
	arr_begin(&keys, OID_TEXT, missing);
	for (size_t i = 0; i < b->n_rows; i++) {
		store_row *r = &b->rows[i];
		if (r->insert && !r->inserted)
			arr_add_str(&keys, r->idem_key);
	}
	if (keys.failed) {
		arr_free(&keys);
		snprintf(err, errlen, "out of memory building the key lookup");
		return SAGA_ENOMEM;
	}
	Oid kt = OID_TEXT_ARR;
	const char *kv = keys.buf;
	int kl = (int)keys.len, kf = 1;
	PGresult *res = PQexecParams(c, CONFLICT_SQL, 1, &kt, &kv, &kl, &kf, 1);
	arr_free(&keys);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pg_errmsg(c, res, err, errlen);
		PQclear(res);
		return SAGA_EDB;
	}
	for (size_t i = 0; i < b->n_rows; i++) {
		store_row *r = &b->rows[i];
		if (!r->insert || r->inserted)
			continue;
		for (int t = 0; t < PQntuples(res); t++) {
			if (strcmp(PQgetvalue(res, t, 1), r->idem_key) == 0) {
				memcpy(r->existing_id, PQgetvalue(res, t, 0), 16);
				if (memcmp(r->existing_id, r->id, 16) == 0)
					r->inserted = 1;
				break;
			}
		}
	}
	PQclear(res);
	return 0;
}

/* ---- writer thread ------------------------------------------------------ */

/*
 * Two threads: the writer commits batches one after another; the completer
 * runs the engine's post-commit work (replies, dispatches) for committed
 * batches, in commit order. So the next commit need not wait for the
 * previous batch's replies (a third of the writer's time at C=64 before
 * this split). When nothing waits to be committed, the writer runs the
 * completion itself, saving a thread hand-off when idle.
 */
static struct {
	pthread_t thread, completer;
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* batches to commit, or stop */
	pthread_cond_t ccv;         /* batches to complete, or cstop */
	store_batch *head, *tail;   /* to commit */
	store_batch *chead, *ctail; /* committed, to complete */
	int cbusy;                  /* someone is running completions */
	int stop, cstop;
	int running;
	char *conninfo;
	store_done_fn committed, done;
	void *arg;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.ccv = PTHREAD_COND_INITIALIZER };

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Runs done() for every committed batch, in order. Call with W.mu held and
 * W.cbusy just set by the caller. */
static void
run_completions_locked(void)
{
	store_batch *b;
	while ((b = W.chead) != NULL) {
		if ((W.chead = b->next) == NULL)
			W.ctail = NULL;
		b->next = NULL;
		pthread_mutex_unlock(&W.mu);
		W.done(b, W.arg);
		pthread_mutex_lock(&W.mu);
	}
}

static void *
completer_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&W.mu);
	for (;;) {
		while ((W.chead == NULL || W.cbusy) && !W.cstop)
			pthread_cond_wait(&W.ccv, &W.mu);
		if (W.chead == NULL && W.cstop)
			break;
		if (W.cbusy)
			continue;
		W.cbusy = 1;
		run_completions_locked();
		W.cbusy = 0;
	}
	pthread_mutex_unlock(&W.mu);
	return NULL;
}

/* A batch just committed: tell the engine at once (it may submit the next
 * batch), then complete it here if the writer has nothing else to do. */
static void
committed(store_batch *b)
{
	if (W.committed)
		W.committed(b, W.arg);
	pthread_mutex_lock(&W.mu);
	if (W.ctail)
		W.ctail->next = b;
	else
		W.chead = b;
	W.ctail = b;
	if (!W.cbusy) {
		if (W.head == NULL) {
			W.cbusy = 1;
			run_completions_locked();
			W.cbusy = 0;
		} else {
			pthread_cond_signal(&W.ccv);
		}
	}
	pthread_mutex_unlock(&W.mu);
}

static void *
writer_main(void *unused)
{
	PGconn *c = NULL;
	char err[512];
	int backoff = 50;

	for (;;) {
		pthread_mutex_lock(&W.mu);
		while (W.head == NULL && !W.stop)
			pthread_cond_wait(&W.cv, &W.mu);
		store_batch *b = W.head;
		if (b == NULL) { /* stop and drained */
			pthread_mutex_unlock(&W.mu);
			break;
		}
		W.head = b->next;
		if (W.head == NULL)
			W.tail = NULL;
		pthread_mutex_unlock(&W.mu);
		b->next = NULL;

		/* Retry until committed. A batch never fails for good: the rows
		 * are idempotent, and giving up would lose state the engine
		 * already acts on. While PostgreSQL is away everything waits. */
		for (int tries = 0;; tries++) {
			if (c == NULL) {
				c = store_connect(W.conninfo, "sagad-writer", err, sizeof(err));
				if (c != NULL && prepare_writer(c, err, sizeof(err)) != 0) {
					PQfinish(c);
					c = NULL;
				}
				if (c == NULL) {
					if (tries % 20 == 0)
						slog_error("writer: %s (retrying)", err);
					sleep_ms(backoff);
					backoff = backoff < 2000 ? backoff * 2 : 2000;
					continue;
				}
			}
			struct timespec t0, t1;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			if (b->fence_owner != NULL)
				slog_debug("writer: committing %zu saga(s), fenced on shards %s at "
					   "epochs %s",
				    b->n_rows, b->fence_shards, b->fence_epochs);
			int rv = commit_batch(c, b, err, sizeof(err));
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if (rv == 0) {
				b->commit_us = (t1.tv_sec - t0.tv_sec) * 1000000LL +
				    (t1.tv_nsec - t0.tv_nsec) / 1000;
				backoff = 50;
				slog_debug("writer: committed %zu saga(s) in %lld us", b->n_rows,
				    (long long)b->commit_us);
				break;
			}
			if (rv == SAGA_ESTATE) {
				/* Fenced: another sagad owns a shard of this batch
				 * now (this one was paused or cut off past its
				 * lease). Nothing of it committed; nothing more may
				 * be. Stop: a fresh start loads only what it owns. */
				slog_error(
				    "writer: %s; this sagad lost a shard to another instance "
				    "and stops (exit 75) without committing or dispatching "
				    "anything more",
				    err);
				_exit(75);
			}
			if (tries % 20 == 0)
				slog_error("writer: commit of %zu rows failed: %s (retrying)",
				    b->n_rows, err);
			/* Whatever failed, the connection may be mid-pipeline
			 * or in an aborted transaction: start afresh. */
			PQfinish(c);
			c = NULL;
			sleep_ms(backoff);
			backoff = backoff < 2000 ? backoff * 2 : 2000;
		}
		committed(b);
	}
	PQfinish(c);
	return NULL;
}

int
store_writer_start(const char *conninfo, store_done_fn committed_fn, store_done_fn done, void *arg)
{
	W.conninfo = strdup(conninfo);
	if (W.conninfo == NULL)
		return SAGA_ENOMEM;
	W.committed = committed_fn;
	W.done = done;
	W.arg = arg;
	W.stop = W.cstop = 0;
	if (pthread_create(&W.completer, NULL, completer_main, NULL) != 0) {
		free(W.conninfo);
		return SAGA_ENOMEM;
	}
	if (pthread_create(&W.thread, NULL, writer_main, NULL) != 0) {
		pthread_mutex_lock(&W.mu);
		W.cstop = 1;
		pthread_cond_signal(&W.ccv);
		pthread_mutex_unlock(&W.mu);
		pthread_join(W.completer, NULL);
		free(W.conninfo);
		return SAGA_ENOMEM;
	}
	W.running = 1;
	return 0;
}

void
store_writer_submit(store_batch *b)
{
	pthread_mutex_lock(&W.mu);
	b->next = NULL;
	if (W.tail)
		W.tail->next = b;
	else
		W.head = b;
	W.tail = b;
	pthread_cond_signal(&W.cv);
	pthread_mutex_unlock(&W.mu);
}

void
store_writer_stop(void)
{
	if (!W.running)
		return;
	pthread_mutex_lock(&W.mu);
	W.stop = 1;
	pthread_cond_signal(&W.cv);
	pthread_mutex_unlock(&W.mu);
	pthread_join(W.thread, NULL);
	pthread_mutex_lock(&W.mu);
	W.cstop = 1;
	pthread_cond_signal(&W.ccv);
	pthread_mutex_unlock(&W.mu);
	pthread_join(W.completer, NULL);
	W.running = 0;
	free(W.conninfo);
	W.conninfo = NULL;
}

/* ---- definitions ---------------------------------------------------------- */

int
store_load_definitions(PGconn *c, char *err, size_t errlen)
{
	/* Which versions are not in memory yet (all of them at start; those
	 * another sagad registered, later). */
	PGresult *r = PQexecParams(
	    c, "SELECT name, version FROM saga_definitions", 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_errmsg(c, r, err, errlen);
		PQclear(r);
		return SAGA_EDB;
	}
	pgarr names, versions;
	size_t missing = 0;
	for (int i = 0; i < PQntuples(r); i++)
		if (registry_get(PQgetvalue(r, i, 0), get32(PQgetvalue(r, i, 1))) == NULL)
			missing++;
	if (missing == 0) {
		PQclear(r);
		return 0;
	}
	arr_begin(&names, OID_TEXT, missing);
	arr_begin(&versions, OID_INT4, missing);
	for (int i = 0; i < PQntuples(r); i++) {
		if (registry_get(PQgetvalue(r, i, 0), get32(PQgetvalue(r, i, 1))) != NULL)
			continue;
		arr_add_str(&names, PQgetvalue(r, i, 0));
		arr_add(&versions, PQgetvalue(r, i, 1), 4);
	}
	PQclear(r);
	if (names.failed || versions.failed) {
		arr_free(&names);
		arr_free(&versions);
		snprintf(err, errlen, "out of memory listing definitions");
		return SAGA_ENOMEM;
	}
	Oid types[2] = { OID_TEXT_ARR, OID_INT4_ARR };
	const char *vals[2] = { names.buf, versions.buf };
	int lens[2] = { (int)names.len, (int)versions.len }, fmts[2] = { 1, 1 };
	r = PQexecParams(c,
	    "SELECT d.name, d.version, COALESCE(d.descriptor_set, s.descriptor_set)"
	    " FROM saga_definitions d"
	    " JOIN unnest($1::text[], $2::int4[]) AS x(name, version)"
	    " ON d.name = x.name AND d.version = x.version"
	    " LEFT JOIN saga_descriptor_sets s ON s.digest = d.set_digest"
	    " ORDER BY d.name, d.version",
	    2, types, vals, lens, fmts, 1);
	arr_free(&names);
	arr_free(&versions);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_errmsg(c, r, err, errlen);
		PQclear(r);
		return SAGA_EDB;
	}
	int rv = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *name = PQgetvalue(r, i, 0);
		uint32_t version = get32(PQgetvalue(r, i, 1));
		defn_saga *d = NULL;
		char perr[512];
		rv = defn_parse_one((const uint8_t *)PQgetvalue(r, i, 2),
		    (size_t)PQgetlength(r, i, 2), name, &d, perr, sizeof(perr));
		if (rv != 0) {
			snprintf(err, errlen, "stored definition %s version %u does not parse: %s",
			    name, version, perr);
			break;
		}
		d->version = version;
		/* Another thread of this sagad may have added it meanwhile. */
		if (registry_get(name, version) != NULL) {
			defn_free(d);
			continue;
		}
		if ((rv = registry_add(d)) != 0) {
			defn_free(d);
			if (rv == SAGA_EEXIST) {
				rv = 0;
				continue;
			}
			snprintf(err, errlen, "cannot add definition %s version %u", name, version);
			break;
		}
	}
	PQclear(r);
	return rv;
}

static int
exec_ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		pg_errmsg(c, r, err, errlen);
	PQclear(r);
	return ok ? 0 : SAGA_EDB;
}

/* A new version of d after `latest`: refused if its types would read the
 * payloads of sagas still unfinished (running, compensating or parked) on
 * an earlier version differently. The sagas are counted only when the
 * types differ, which is rare. */
static int
check_compatible(PGconn *c, const defn_saga *d, uint32_t latest, const uint8_t *set, size_t set_len,
    char *err, size_t errlen)
{
	char vbuf[16], why[768];
	snprintf(vbuf, sizeof(vbuf), "%u", latest);
	const char *p[2] = { d->name, vbuf };
	PGresult *r = PQexecParams(c,
	    "SELECT COALESCE(d.descriptor_set, s.descriptor_set) FROM saga_definitions d"
	    " LEFT JOIN saga_descriptor_sets s ON s.digest = d.set_digest"
	    " WHERE d.name = $1 AND d.version = $2::int",
	    2, NULL, p, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_errmsg(c, r, err, errlen);
		PQclear(r);
		return SAGA_EDB;
	}
	int rv = 0;
	if (PQntuples(r) == 1 &&
	    defn_compat_check((const uint8_t *)PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0),
		set, set_len, d, why, sizeof(why)) != 0) {
		PQclear(r);
		r = PQexecParams(c,
		    "SELECT count(*) FROM sagas WHERE definition = $1 AND state IN (1, 2, 5)", 1,
		    NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			pg_errmsg(c, r, err, errlen);
			PQclear(r);
			return SAGA_EDB;
		}
		long long unfinished = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		if (unfinished > 0) {
			snprintf(err, errlen,
			    "%s; %lld unfinished sagas of %.200s (version %u or earlier) would "
			    "hand their participants such payloads. Keep the field number's "
			    "meaning (add a new number instead), or register with --force once "
			    "every participant reads both",
			    why, unfinished, d->name, latest);
			rv = SAGA_EDEFINITION;
		}
	}
	PQclear(r);
	return rv;
}

int
store_register(PGconn *c, const uint8_t *set, size_t set_len, defn_saga **defs, size_t n,
    bool force, Sagawire__RegisteredDefinition *out, char *err, size_t errlen)
{
	int rv;
	/* All definitions of one set in one transaction: a set registers
	 * entirely or not at all. The advisory lock per name serialises
	 * concurrent registrations of the same saga (version numbers). */
	if ((rv = exec_ok(c, "BEGIN", err, errlen)) != 0)
		return rv;
	uint32_t *versions = calloc(n, sizeof(*versions));
	int *unchanged = calloc(n, sizeof(*unchanged));
	if (versions == NULL || unchanged == NULL) {
		rv = SAGA_ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* The stored fingerprint also covers the descriptor set itself: a
	 * changed message schema is a new version, so payloads are always
	 * rendered with the descriptors a saga was started with. */
	uint64_t set_fp = 1469598103934665603ULL;
	for (size_t k = 0; k < set_len; k++)
		set_fp = (set_fp ^ set[k]) * 1099511628211ULL;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	SHA256(set, set_len, digest);
	int set_stored = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = defs[i]->name;
		const char *p1[1] = { name };
		uint64_t fingerprint = defs[i]->fingerprint ^ (set_fp * 0x9e3779b97f4a7c15ULL);
		PGresult *r = PQexecParams(
		    c, "SELECT pg_advisory_xact_lock(hashtext($1))", 1, NULL, p1, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			pg_errmsg(c, r, err, errlen);
			PQclear(r);
			rv = SAGA_EDB;
			goto fail;
		}
		PQclear(r);
		r = PQexecParams(c,
		    "SELECT version, fingerprint FROM saga_definitions WHERE name = $1"
		    " ORDER BY version DESC LIMIT 1",
		    1, NULL, p1, NULL, NULL, 1);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			pg_errmsg(c, r, err, errlen);
			PQclear(r);
			rv = SAGA_EDB;
			goto fail;
		}
		uint32_t latest = 0;
		int64_t fp = 0;
		if (PQntuples(r) == 1) {
			latest = get32(PQgetvalue(r, 0, 0));
			fp = (int64_t)get64(PQgetvalue(r, 0, 1));
		}
		PQclear(r);
		if (latest != 0 && fp == (int64_t)fingerprint) {
			versions[i] = latest;
			unchanged[i] = 1;
			continue;
		}
		if (latest != 0 && !force &&
		    (rv = check_compatible(c, defs[i], latest, set, set_len, err, errlen)) != 0)
			goto fail;
		versions[i] = latest + 1;
		/* The set itself once per register, whatever number of sagas it
		 * defines (and once at all, if registered before). */
		if (!set_stored) {
			const char *sv[2] = { (const char *)digest, (const char *)set };
			int sl[2] = { (int)sizeof(digest), (int)set_len }, sf[2] = { 1, 1 };
			Oid st[2] = { OID_BYTEA, OID_BYTEA };
			r = PQexecParams(c,
			    "INSERT INTO saga_descriptor_sets (digest, descriptor_set) VALUES ($1, "
			    "$2)"
			    " ON CONFLICT (digest) DO NOTHING",
			    2, st, sv, sl, sf, 0);
			if (PQresultStatus(r) != PGRES_COMMAND_OK) {
				pg_errmsg(c, r, err, errlen);
				PQclear(r);
				rv = SAGA_EDB;
				goto fail;
			}
			PQclear(r);
			set_stored = 1;
		}
		char vbuf[4], fbuf[8], nbuf[4];
		put32(vbuf, versions[i]);
		put64(fbuf, fingerprint);
		put32(nbuf, defs[i]->n_steps);
		const char *vals[5] = { name, vbuf, fbuf, nbuf, (const char *)digest };
		int lens[5] = { 0, 4, 8, 4, (int)sizeof(digest) };
		int fmts[5] = { 0, 1, 1, 1, 1 };
		Oid types[5] = { OID_TEXT, OID_INT4, OID_INT8, OID_INT4, OID_BYTEA };
		r = PQexecParams(c,
		    "INSERT INTO saga_definitions (name, version, fingerprint, n_steps, set_digest)"
		    " VALUES ($1, $2, $3, $4, $5)",
		    5, types, vals, lens, fmts, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			pg_errmsg(c, r, err, errlen);
			PQclear(r);
			rv = SAGA_EDB;
			goto fail;
		}
		PQclear(r);
	}
	/* The other sagads sharing the database load the new versions at
	 * once (shards.c listens). */
	if ((rv = exec_ok(c, "NOTIFY saga_definitions", err, errlen)) != 0)
		goto fail;
	if ((rv = exec_ok(c, "COMMIT", err, errlen)) != 0)
		goto fail_nr;
	for (size_t i = 0; i < n; i++) {
		out[i].version = versions[i];
		out[i].unchanged = unchanged[i];
		out[i].steps = defs[i]->n_steps;
		defs[i]->version = versions[i];
		/* A version registered by another sagad sharing the database
		 * may already be loaded; or this one may be. */
		if (unchanged[i] || registry_get(defs[i]->name, versions[i]) != NULL ||
		    registry_add(defs[i]) != 0) {
			defn_free(defs[i]);
		}
		defs[i] = NULL;
	}
	free(versions);
	free(unchanged);
	return 0;
fail:
	exec_ok(c, "ROLLBACK", err + strlen(err), errlen - strlen(err));
fail_nr:
	free(versions);
	free(unchanged);
	return rv;
}

/* ---- reading sagas ---------------------------------------------------------- */

#define SAGA_COLS                                                                         \
	"id, definition, version, state, rev, idempotency_key, business_key, created_at," \
	" updated_at, input, steps, error"

static void
row_to_saga(const PGresult *r, int i, store_saga *s)
{
	memcpy(s->id, PQgetvalue(r, i, 0), 16);
	s->definition = PQgetvalue(r, i, 1);
	s->version = get32(PQgetvalue(r, i, 2));
	s->state = (int16_t)ntohs(*(const uint16_t *)(const void *)PQgetvalue(r, i, 3));
	s->rev = (int32_t)get32(PQgetvalue(r, i, 4));
	s->idem_key = PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5);
	s->business_key = PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6);
	s->created_us = store_ts_from_pg(PQgetvalue(r, i, 7));
	s->updated_us = store_ts_from_pg(PQgetvalue(r, i, 8));
	s->input = (const uint8_t *)PQgetvalue(r, i, 9);
	s->input_len = (size_t)PQgetlength(r, i, 9);
	s->steps = (const uint8_t *)PQgetvalue(r, i, 10);
	s->steps_len = (size_t)PQgetlength(r, i, 10);
	s->error = PQgetvalue(r, i, 11);
}

int
store_load_active(PGconn *c, const char *shards, int (*fn)(const store_saga *s, void *arg),
    void *arg, char *err, size_t errlen)
{
	int rv;
	/* A cursor keeps client memory to one chunk however many sagas
	 * are unfinished (the 100k-in-flight restart case). */
	if ((rv = exec_ok(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen)) != 0)
		return rv;
	Oid t = OID_INT4_ARR;
	PGresult *d = PQexecParams(c,
	    "DECLARE active BINARY NO SCROLL CURSOR FOR SELECT " SAGA_COLS
	    " FROM sagas WHERE state IN (1, 2) AND shard = ANY($1::int4[]) ORDER BY created_at",
	    1, &t, &shards, NULL, NULL, 0);
	if (PQresultStatus(d) != PGRES_COMMAND_OK) {
		pg_errmsg(c, d, err, errlen);
		PQclear(d);
		rv = SAGA_EDB;
		goto fail;
	}
	PQclear(d);
	for (;;) {
		PGresult *r =
		    PQexecParams(c, "FETCH 2000 FROM active", 0, NULL, NULL, NULL, NULL, 1);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			pg_errmsg(c, r, err, errlen);
			PQclear(r);
			rv = SAGA_EDB;
			goto fail;
		}
		int n = PQntuples(r);
		for (int i = 0; i < n; i++) {
			store_saga s;
			row_to_saga(r, i, &s);
			if ((rv = fn(&s, arg)) != 0) {
				PQclear(r);
				snprintf(err, errlen, "loading saga failed: %s", cm_strerror(rv));
				goto fail;
			}
		}
		PQclear(r);
		if (n == 0)
			break;
	}
	return exec_ok(c, "COMMIT", err, errlen);
fail:
	exec_ok(c, "ROLLBACK", err + strlen(err), errlen - strlen(err));
	return rv;
}

int
store_get(PGconn *c, const uint8_t id[16], int (*fn)(const store_saga *s, void *arg), void *arg,
    char *err, size_t errlen)
{
	Oid t = OID_UUID;
	const char *v = (const char *)id;
	int l = 16, f = 1;
	PGresult *r =
	    PQexecParams(c, "SELECT " SAGA_COLS " FROM sagas WHERE id = $1", 1, &t, &v, &l, &f, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_errmsg(c, r, err, errlen);
		PQclear(r);
		return SAGA_EDB;
	}
	if (PQntuples(r) == 0) {
		PQclear(r);
		return SAGA_ENOTFOUND;
	}
	store_saga s;
	row_to_saga(r, 0, &s);
	int rv = fn(&s, arg);
	PQclear(r);
	return rv;
}
