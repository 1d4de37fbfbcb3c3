/* shards: the shard lease manager. See shards.h and docs/SCALING.md. */
#include "shards.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "saga_base.h"
#include "store.h"
#include "wire.h"

/* Dispatch stops this long before the lease could expire in the database
 * (clock rates, the renewal's own round trip). */
#define MARGIN_PCT       25
/* A shard being handed over waits at most this long for the outcomes of
 * its steps in flight; after that they are redelivered by the next owner. */
#define RELEASE_GRACE_MS 3000

static struct {
	const cfg *cfg;
	char *conninfo;
	char id[256];
	PGconn *c;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	bool stop;
	int wake[2]; /* a pipe: wakes the thread to stop */
	/* The lease thread's own view (only it touches these). */
	bool owned[SHD_N];
	int64_t epoch[SHD_N];
	int64_t releasing_since[SHD_N]; /* 0 = not being released */
	int live;                       /* instances seen at the last tick */
} S = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = { -1, -1 } };

const char *
shd_instance_id(void)
{
	return S.id;
}

/* When the lease thread last got answers from PostgreSQL (monotonic). */
static _Atomic int64_t db_ok_ms;

int64_t
shd_db_silent_ms(void)
{
	int64_t t = atomic_load(&db_ok_ms);
	return t == 0 ? 0 : wire_mono_ms() - t;
}

static size_t
n_owned(void)
{
	size_t n = 0;
	for (unsigned s = 0; s < SHD_N; s++)
		n += S.owned[s];
	return n;
}

/* "{a,b,c}" of the shards held (and, with epochs, their epochs). */
static void
owned_lists(char *shards, size_t ns, char *epochs, size_t ne)
{
	size_t a = 0, b = 0;
	a += (size_t)snprintf(shards + a, ns - a, "{");
	b += (size_t)snprintf(epochs + b, ne - b, "{");
	for (unsigned s = 0; s < SHD_N; s++) {
		if (!S.owned[s])
			continue;
		a += (size_t)snprintf(shards + a, ns - a, "%s%u", a > 1 ? "," : "", s);
		b += (size_t)snprintf(
		    epochs + b, ne - b, "%s%lld", b > 1 ? "," : "", (long long)S.epoch[s]);
	}
	snprintf(shards + a, ns - a, "}");
	snprintf(epochs + b, ne - b, "}");
}

static void
pg_err(PGresult *r, char *err, size_t errlen)
{
	const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(S.c);
	snprintf(err, errlen, "%s", m && *m ? m : PQerrorMessage(S.c));
	char *nl = strchr(err, '\n');
	if (nl)
		*nl = '\0';
}

/* Runs a statement with text parameters; NULL (and err) unless it
 * returned `want`. */
static PGresult *
q(const char *sql, int n, const char *const *vals, ExecStatusType want, char *err, size_t errlen)
{
	PGresult *r = PQexecParams(S.c, sql, n, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(r) != want) {
		pg_err(r, err, errlen);
		PQclear(r);
		return NULL;
	}
	return r;
}

static int
ensure_conn(char *err, size_t errlen)
{
	if (S.c != NULL && PQstatus(S.c) == CONNECTION_OK)
		return 0;
	PQfinish(S.c);
	S.c = store_connect(S.conninfo, "sagad-shards", err, errlen);
	if (S.c == NULL)
		return SAGA_EDB;
	/* Definitions another sagad registers are loaded at once (and at
	 * every tick, should a notification be missed). */
	PGresult *r = PQexec(S.c, "LISTEN saga_definitions");
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		pg_err(r, err, errlen);
	PQclear(r);
	if (!ok) {
		PQfinish(S.c);
		S.c = NULL;
		return SAGA_EDB;
	}
	return 0;
}

static void
drop_conn(void)
{
	PQfinish(S.c);
	S.c = NULL;
}

/* The instance row: "I am alive" for the others' fair-share count. */
static int
heartbeat(char *err, size_t errlen)
{
	char lease[16];
	snprintf(lease, sizeof(lease), "%u", S.cfg->lease_ms);
	const char *v[3] = { S.id, S.cfg->listen, lease };
	/* Instances gone for an hour are forgotten. */
	PQclear(
	    PQexec(S.c, "DELETE FROM saga_instances WHERE expires_at < now() - interval '1 hour'"));
	PGresult *r = q("INSERT INTO saga_instances (id, url, expires_at)"
			" VALUES ($1, $2, now() + $3::int * interval '1 millisecond')"
			" ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url,"
			" expires_at = EXCLUDED.expires_at",
	    3, v, PGRES_COMMAND_OK, err, errlen);
	if (r == NULL)
		return SAGA_EDB;
	PQclear(r);
	return 0;
}

/* Renews every lease held. A lease not renewed was lost: another instance
 * bumped its epoch (this one was paused or cut off past it). */
static int
renew(char *err, size_t errlen)
{
	if (n_owned() == 0)
		return 0;
	char shards[SHD_N * 4 + 3], epochs[SHD_N * 21 + 3], lease[16];
	owned_lists(shards, sizeof(shards), epochs, sizeof(epochs));
	snprintf(lease, sizeof(lease), "%u", S.cfg->lease_ms);
	const char *v[4] = { S.id, shards, epochs, lease };
	int64_t t0 = wire_mono_ms();
	PGresult *r = q("UPDATE saga_shards s SET expires_at = now() + $4::int * interval '1 "
			"millisecond'"
			" FROM unnest($2::int4[], $3::int8[]) AS x(shard, epoch)"
			" WHERE s.shard = x.shard AND s.epoch = x.epoch AND s.owner = $1"
			" RETURNING s.shard",
	    4, v, PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		return SAGA_EDB;
	bool kept[SHD_N] = { false };
	for (int i = 0; i < PQntuples(r); i++) {
		long s = strtol(PQgetvalue(r, i, 0), NULL, 10);
		if (s >= 0 && s < SHD_N)
			kept[s] = true;
	}
	PQclear(r);
	unsigned ok[SHD_N];
	size_t n = 0;
	for (unsigned s = 0; s < SHD_N; s++) {
		if (!S.owned[s])
			continue;
		if (!kept[s]) {
			slog_error("shard %u: lease lost (epoch %lld is no longer ours: another "
				   "instance took the shard over after this sagad did not renew "
				   "it for %u ms); stopping (exit 75) without committing or "
				   "dispatching anything more",
			    s, (long long)S.epoch[s], S.cfg->lease_ms);
			_exit(75);
		}
		ok[n++] = s;
	}
	int64_t margin = (int64_t)S.cfg->lease_ms * MARGIN_PCT / 100;
	engine_shards_valid(ok, n, t0 + S.cfg->lease_ms - margin);
	return 0;
}

static int
load_cb(const store_saga *row, void *arg)
{
	(void)arg;
	return engine_shard_load(row);
}

/* Claims up to k free or expired shards (or this instance's own from
 * before a restart) and loads their sagas. */
static int
claim(size_t k, char *err, size_t errlen)
{
	char shards[SHD_N * 4 + 3], epochs[SHD_N * 21 + 3], lease[16], lim[24];
	owned_lists(shards, sizeof(shards), epochs, sizeof(epochs));
	snprintf(lease, sizeof(lease), "%u", S.cfg->lease_ms);
	snprintf(lim, sizeof(lim), "%zu", k);
	const char *v[4] = { S.id, shards, lease, lim };
	int64_t t0 = wire_mono_ms();
	PGresult *r = q("UPDATE saga_shards s SET owner = $1, epoch = s.epoch + 1,"
			" expires_at = now() + $3::int * interval '1 millisecond'"
			" WHERE s.shard IN (SELECT shard FROM saga_shards"
			"  WHERE (owner IS NULL OR owner = $1 OR expires_at < now())"
			"  AND shard <> ALL($2::int4[])"
			"  ORDER BY (owner = $1) DESC NULLS LAST, shard LIMIT $4::int"
			"  FOR UPDATE SKIP LOCKED)"
			" RETURNING s.shard, s.epoch",
	    4, v, PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		return SAGA_EDB;
	int n = PQntuples(r);
	if (n == 0) {
		PQclear(r);
		return 0;
	}
	int64_t margin = (int64_t)S.cfg->lease_ms * MARGIN_PCT / 100;
	char list[SHD_N * 4 + 3];
	size_t a = (size_t)snprintf(list, sizeof(list), "{");
	unsigned got[SHD_N];
	for (int i = 0; i < n; i++) {
		unsigned s = (unsigned)strtoul(PQgetvalue(r, i, 0), NULL, 10) % SHD_N;
		S.owned[s] = true;
		S.epoch[s] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		S.releasing_since[s] = 0;
		got[i] = s;
		engine_shard_claimed(s, S.epoch[s], t0 + S.cfg->lease_ms - margin);
		a += (size_t)snprintf(list + a, sizeof(list) - a, "%s%u", i ? "," : "", s);
	}
	snprintf(list + a, sizeof(list) - a, "}");
	PQclear(r);
	/* The claim bumped each epoch after any batch of the previous owner
	 * ended (its fence holds the rows): what is read now is final. */
	int64_t l0 = wire_mono_ms();
	int rv = store_load_definitions(S.c, err, errlen);
	if (rv == 0)
		rv = store_load_active(S.c, list, load_cb, NULL, err, errlen);
	if (rv != 0) {
		/* Give them back whole rather than hold half-loaded shards;
		 * they are claimed again at a later tick. */
		for (int i = 0; i < n; i++) {
			engine_shard_release(got[i]);
			engine_shard_drop(got[i], true);
			S.owned[got[i]] = false;
		}
		return rv;
	}
	for (int i = 0; i < n; i++)
		engine_shard_ready(got[i]);
	slog_info("claimed %d shard(s) %s; their unfinished sagas loaded in %lld ms (%zu shard(s) "
		  "held, %d instance(s) live)",
	    n, list, (long long)(wire_mono_ms() - l0), n_owned(), S.live);
	return 0;
}

/* Frees a shard's lease (after the engine dropped its sagas). */
static int
release(unsigned s, char *err, size_t errlen)
{
	char shard[8], epoch[24];
	snprintf(shard, sizeof(shard), "%u", s);
	snprintf(epoch, sizeof(epoch), "%lld", (long long)S.epoch[s]);
	const char *v[3] = { S.id, shard, epoch };
	PGresult *r = q("UPDATE saga_shards SET owner = NULL, epoch = epoch + 1,"
			" expires_at = '-infinity'"
			" WHERE shard = $2::int AND owner = $1 AND epoch = $3::bigint",
	    3, v, PGRES_COMMAND_OK, err, errlen);
	if (r == NULL)
		return SAGA_EDB;
	PQclear(r);
	S.owned[s] = false;
	S.releasing_since[s] = 0;
	return 0;
}

/* The fair share: every live instance claims up to 64/live shards,
 * rounded up; when one holds fewer than 64/live rounded down and none is
 * free, those holding more than that give the excess back. So three
 * instances settle at 22/21/21 (or 22/22/20 on the way). */
static int
balance(char *err, size_t errlen)
{
	PGresult *r = q("SELECT i.id, (SELECT count(*) FROM saga_shards s"
			"  WHERE s.owner = i.id AND s.expires_at > now())"
			" FROM saga_instances i WHERE i.expires_at > now()",
	    0, NULL, PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		return SAGA_EDB;
	int live = PQntuples(r), needy = 0;
	if (live < 1)
		live = 1;
	int floor_share = SHD_N / live, fair = (SHD_N + live - 1) / live;
	for (int i = 0; i < PQntuples(r); i++)
		if (strcmp(PQgetvalue(r, i, 0), S.id) != 0 &&
		    atoi(PQgetvalue(r, i, 1)) < floor_share)
			needy = 1;
	PQclear(r);
	S.live = live;
	r = q("SELECT count(*) FROM saga_shards WHERE owner IS NULL OR expires_at < now()", 0, NULL,
	    PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		return SAGA_EDB;
	int free_shards = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);

	size_t held = n_owned();
	if (held < (size_t)fair) {
		int rv = claim((size_t)fair - held, err, errlen);
		if (rv != 0)
			return rv;
		held = n_owned();
	}
	/* Someone waits for shards no one has left free: give back what is
	 * above the floor, highest numbers first. */
	size_t releasing = 0;
	for (unsigned s = 0; s < SHD_N; s++)
		releasing += S.releasing_since[s] != 0;
	if (needy && free_shards == 0 && held > (size_t)floor_share + releasing) {
		size_t excess = held - (size_t)floor_share - releasing, n = 0;
		char list[SHD_N * 4 + 3];
		size_t a = (size_t)snprintf(list, sizeof(list), "{");
		for (int s = SHD_N - 1; s >= 0 && excess > 0; s--) {
			if (!S.owned[s] || S.releasing_since[s] != 0)
				continue;
			S.releasing_since[s] = wire_mono_ms();
			engine_shard_release((unsigned)s);
			excess--;
			a +=
			    (size_t)snprintf(list + a, sizeof(list) - a, "%s%d", n++ ? "," : "", s);
		}
		snprintf(list + a, sizeof(list) - a, "}");
		slog_info("handing %zu shard(s) %s over: %zu held, fair share %d of %d instance(s)",
		    n, list, held, fair, live);
	}
	/* Hand over the shards whose sagas the engine has let go. */
	for (unsigned s = 0; s < SHD_N; s++) {
		if (S.releasing_since[s] == 0)
			continue;
		bool force = wire_mono_ms() - S.releasing_since[s] > RELEASE_GRACE_MS;
		if (engine_shard_drop(s, force)) {
			int rv = release(s, err, errlen);
			if (rv != 0)
				return rv;
		}
	}
	return 0;
}

static int
tick(char *err, size_t errlen)
{
	int rv;
	if ((rv = ensure_conn(err, errlen)) != 0)
		return rv;
	if ((rv = renew(err, errlen)) != 0 || (rv = heartbeat(err, errlen)) != 0 ||
	    (rv = store_load_definitions(S.c, err, errlen)) != 0 ||
	    (rv = balance(err, errlen)) != 0)
		drop_conn();
	else
		atomic_store(&db_ok_ms, wire_mono_ms());
	return rv;
}

/* Waits until the next tick is due (true), or a notification came, or a
 * stop was asked (false). */
static bool
wait_tick(int64_t due_ms, bool *notified)
{
	struct pollfd fds[2] = { { .fd = S.wake[0], .events = POLLIN },
		{ .fd = S.c != NULL ? PQsocket(S.c) : -1, .events = POLLIN } };
	int64_t left = due_ms - wire_mono_ms();
	if (left > 0 && poll(fds, 2, (int)left) > 0) {
		if (fds[1].revents != 0 && S.c != NULL) {
			PQconsumeInput(S.c);
			PGnotify *n;
			while ((n = PQnotifies(S.c)) != NULL) {
				*notified = true;
				PQfreemem(n);
			}
		}
		return false;
	}
	return true;
}

static void *
shards_main(void *arg)
{
	(void)arg;
	char err[512];
	int fails = 0;
	int64_t due = wire_mono_ms() + S.cfg->lease_ms / 4;
	for (;;) {
		bool notified = false;
		bool now = wait_tick(due, &notified);
		pthread_mutex_lock(&S.mu);
		bool stop = S.stop;
		pthread_mutex_unlock(&S.mu);
		if (stop)
			break;
		if (notified && store_load_definitions(S.c, err, sizeof(err)) != 0)
			slog_error("loading definitions registered elsewhere: %s", err);
		if (!now)
			continue;
		due = wire_mono_ms() + S.cfg->lease_ms / 4;
		if (tick(err, sizeof(err)) != 0) {
			if (fails++ % 8 == 0)
				slog_error(
				    "shard leases: %s (retrying; dispatch stops in a shard once "
				    "its lease cannot be proven)",
				    err);
		} else {
			fails = 0;
		}
	}
	return NULL;
}

static void
derive_id(const cfg *c)
{
	if (c->instance_id[0] != '\0') {
		snprintf(S.id, sizeof(S.id), "%s", c->instance_id);
		return;
	}
	char host[128] = "localhost";
	gethostname(host, sizeof(host) - 1);
	/* Stable across restarts (its shards come back at once after a
	 * crash), different for instances on one host (they listen on
	 * different addresses). A port the system picks is not stable. */
	if (strstr(c->listen, ":0") != NULL && c->listen[strlen(c->listen) - 1] == '0')
		snprintf(S.id, sizeof(S.id), "%s/%s/%d", host, c->listen, (int)getpid());
	else
		snprintf(S.id, sizeof(S.id), "%s/%s", host, c->listen);
}

int
shd_start(const cfg *c, const char *conninfo, char *err, size_t errlen)
{
	S.cfg = c;
	S.conninfo = strdup(conninfo);
	if (S.conninfo == NULL) {
		snprintf(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	derive_id(c);
	engine_set_instance(S.id);
	int rv;
	if ((rv = ensure_conn(err, errlen)) != 0 || (rv = heartbeat(err, errlen)) != 0 ||
	    (rv = balance(err, errlen)) != 0)
		return rv;
	atomic_store(&db_ok_ms, wire_mono_ms());
	slog_info("instance %s holds %zu of %d shards (%d instance(s) live; lease %u ms)", S.id,
	    n_owned(), SHD_N, S.live, c->lease_ms);
	if (pipe(S.wake) != 0 || pthread_create(&S.thread, NULL, shards_main, NULL) != 0) {
		snprintf(err, errlen, "cannot start the shard lease thread");
		return SAGA_ENOMEM;
	}
	S.running = true;
	return 0;
}

void
shd_stop(void)
{
	if (S.running) {
		pthread_mutex_lock(&S.mu);
		S.stop = true;
		pthread_mutex_unlock(&S.mu);
		ssize_t w = write(S.wake[1], "x", 1);
		(void)w;
		pthread_join(S.thread, NULL);
		S.running = false;
		close(S.wake[0]);
		close(S.wake[1]);
		S.wake[0] = S.wake[1] = -1;
	}
	/* Hand every shard over now rather than at the lease's expiry: the
	 * engine has committed everything it will. */
	char err[512] = "";
	if (n_owned() > 0 && ensure_conn(err, sizeof(err)) == 0) {
		char shards[SHD_N * 4 + 3], epochs[SHD_N * 21 + 3];
		owned_lists(shards, sizeof(shards), epochs, sizeof(epochs));
		const char *v[3] = { S.id, shards, epochs };
		PGresult *r = q("UPDATE saga_shards s SET owner = NULL, epoch = s.epoch + 1,"
				" expires_at = '-infinity'"
				" FROM unnest($2::int4[], $3::int8[]) AS x(shard, epoch)"
				" WHERE s.shard = x.shard AND s.epoch = x.epoch AND s.owner = $1",
		    3, v, PGRES_COMMAND_OK, err, sizeof(err));
		if (r != NULL) {
			slog_info("handed %zu shard(s) over to the other instances", n_owned());
			PQclear(r);
			memset(S.owned, 0, sizeof(S.owned));
		}
		const char *w[1] = { S.id };
		r = q("DELETE FROM saga_instances WHERE id = $1", 1, w, PGRES_COMMAND_OK, err,
		    sizeof(err));
		PQclear(r);
	}
	if (err[0] != '\0')
		slog_warn(
		    "shard hand-over at stop: %s (the shards move when their leases expire)", err);
	drop_conn();
	free(S.conninfo);
	S.conninfo = NULL;
}
