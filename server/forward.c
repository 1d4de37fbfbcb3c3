/* forward: requests about sagas the engine does not hold. See forward.h. */
#include "forward.h"

#include <arpa/inet.h>
#include <nng/nng.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "handle_rerun.h"
#include "log.h"
#include "names.h"
#include "saga_base.h"
#include "shards.h"
#include "store.h"
#include "wire.h"

#define SS(x) SAGAWIRE__SAGA_STATE__SAGA_##x

/* How often the state of sagas waited on elsewhere is read, and commands
 * in flight looked at when no notification came. */
#define POLL_MS            250
/* A forwarded command not answered in this time gets SAGA_ETIMEDOUT. */
#define COMMAND_TIMEOUT_MS 8000
/* A command taken by an instance that did not finish it in this time is
 * taken again (that instance died or lost the shard). */
#define RETAKE_S           30

enum { P_COMMAND = 1, P_WAIT };

/* A request of a client of this sagad, waiting on another one. */
typedef struct pending {
	int kind;
	rpc_req *r;
	uint8_t id[16];
	unsigned shard;
	int64_t cmd; /* saga_commands.id once written; 0 = not yet */
	uint8_t *req;
	size_t req_len;
	int64_t deadline_ms;
	struct pending *next;
} pending;

/* A command another sagad sent here, running in the engine. */
typedef struct running {
	rpc_req r; /* first: the reply callback finds it from its rpc_req */
	int64_t cmd;
	nng_msg *reply; /* set by the reply callback */
	bool replied;
	struct running *next;
} running;

static struct {
	const cfg *cfg;
	char *conninfo;
	PGconn *c;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	bool stop;
	int wake[2];
	pending *pend;  /* ours, waiting */
	running *run;   /* theirs, running here */
	bool cmd_added; /* a command was written: notify */
} F = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = { -1, -1 } };

/* A big-endian int8 as PostgreSQL sends it in binary. */
static int64_t
be64(const char *p)
{
	uint32_t hi, lo;
	memcpy(&hi, p, 4);
	memcpy(&lo, p + 4, 4);
	return (int64_t)(((uint64_t)ntohl(hi) << 32) | ntohl(lo));
}

static void
wake(void)
{
	if (F.wake[1] >= 0) {
		ssize_t w = write(F.wake[1], "x", 1);
		(void)w;
	}
}

/* ---- on reader threads: the row decides ------------------------------------------------ */

typedef struct row_ctx {
	int state;
	char error[1024];
	rpc_req *r;
	int engine_rv; /* fwd_operate_load: what engine_operate_loaded said */
} row_ctx;

static int
state_cb(const store_saga *s, void *arg)
{
	row_ctx *st = arg;
	st->state = s->state;
	snprintf(st->error, sizeof(st->error), "%s", s->error ? s->error : "");
	return 0;
}

/* Reads the stored state of saga sid into st. Returns 0, or replies to r
 * with the error (not found, database) and returns nonzero. */
static int
read_state(PGconn *c, rpc_req *r, const char *sid, const uint8_t id[16], row_ctx *st)
{
	char err[512] = "";
	int rv = store_get(c, id, state_cb, st, err, sizeof(err));
	if (rv == SAGA_ENOTFOUND)
		rpc_reply_error(r, SAGA_ENOTFOUND, "no saga %s", sid);
	else if (rv != 0)
		rpc_reply_error(r, rv, "cannot read saga %s: %s", sid, err);
	return rv;
}

static bool
is_final(int state)
{
	return state == SS(COMPLETED) || state == SS(COMPENSATED) || state == SS(FAILED) ||
	    state == SS(TERMINATED);
}

static void
reply_wait(rpc_req *r, int state, const char *error)
{
	Sagawire__WaitResponse wr = SAGAWIRE__WAIT_RESPONSE__INIT;
	wr.state = (Sagawire__SagaState)state;
	wr.error = (char *)error;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_WAIT;
	resp.wait = &wr;
	rpc_reply(r, &resp);
}

static void pend_add(int kind, rpc_req *r, const uint8_t id[16], uint32_t timeout_ms);

/* A forwarded request must not be forwarded again (its shard moved on
 * meanwhile): the instance that forwarded it times out and says so. */
static void
refuse_forwarded(rpc_req *r, const char *sid)
{
	rpc_reply_error(r, SAGA_EBUSY,
	    "saga %s is not held by the instance it was forwarded to (its shard moved); try "
	    "again",
	    sid);
}

void
fwd_wait_check(PGconn *c, rpc_req *r)
{
	const char *sid = r->req->wait->saga_id;
	uint8_t id[16];
	row_ctx st = { 0 };
	wire_uuid_parse(sid, id);
	if (read_state(c, r, sid, id, &st) != 0)
		return;
	if (is_final(st.state)) {
		reply_wait(r, st.state, st.error);
		return;
	}
	/* Running on another sagad: watch its row. */
	uint32_t t = r->req->wait->timeout_ms ? r->req->wait->timeout_ms : 30000;
	pend_add(P_WAIT, r, id, t > 600000 ? 600000 : t);
}

void
fwd_cancel_check(PGconn *c, rpc_req *r)
{
	const char *sid = r->req->cancel->saga_id;
	uint8_t id[16];
	row_ctx st = { 0 };
	wire_uuid_parse(sid, id);
	if (read_state(c, r, sid, id, &st) != 0)
		return;
	if (is_final(st.state)) {
		rpc_reply_error(r, SAGA_ESTATE, "saga %s is already %s: nothing to cancel", sid,
		    cm_saga_state_name(st.state));
		return;
	}
	if (r->forwarded) {
		refuse_forwarded(r, sid);
		return;
	}
	pend_add(P_COMMAND, r, id, COMMAND_TIMEOUT_MS);
}

/* An operator action on a saga not in the engine's memory: a parked
 * (failed) saga whose shard is held here is taken back from its row. */
static int
operate_cb(const store_saga *s, void *arg)
{
	row_ctx *st = arg;
	rpc_req *r = st->r;
	st->state = s->state;
	const char *sid = r->req->operate->saga_id;
	if (s->state == SS(COMPLETED) || s->state == SS(COMPENSATED) ||
	    s->state == SS(TERMINATED)) {
		rpc_reply_error(r, SAGA_ESTATE,
		    "saga %s is %s: only a running or parked (failed) saga can be operated on", sid,
		    cm_saga_state_name(s->state));
		st->engine_rv = ENGINE_ANSWERED;
		return 0;
	}
	st->engine_rv = s->state == SS(FAILED) ? engine_operate_loaded(r, s) : ENGINE_NOT_HELD;
	return 0;
}

void
fwd_operate_load(PGconn *c, rpc_req *r)
{
	const char *sid = r->req->operate->saga_id;
	uint8_t id[16];
	char err[512] = "";
	row_ctx st = { .r = r, .engine_rv = ENGINE_ANSWERED };
	if (r->req->operate->op == SAGAWIRE__OPERATION__OP_RERUN) {
		rerun_run(c, r); /* any sagad can: nothing to forward */
		return;
	}
	wire_uuid_parse(sid, id);
	int rv = store_get(c, id, operate_cb, &st, err, sizeof(err));
	if (rv == SAGA_ENOTFOUND)
		rpc_reply_error(r, SAGA_ENOTFOUND, "no saga %s", sid);
	else if (rv != 0)
		rpc_reply_error(r, rv, "cannot read saga %s: %s", sid, err);
	else if (st.engine_rv == ENGINE_NOT_HELD && r->forwarded)
		refuse_forwarded(r, sid);
	else if (st.engine_rv == ENGINE_NOT_HELD)
		pend_add(P_COMMAND, r, id, COMMAND_TIMEOUT_MS);
}

/* ---- our requests waiting on another sagad -------------------------------------------- */

static void
pend_add(int kind, rpc_req *r, const uint8_t id[16], uint32_t timeout_ms)
{
	pending *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	p->kind = kind;
	p->r = r;
	memcpy(p->id, id, 16);
	p->shard = shd_of(id);
	p->deadline_ms = wire_mono_ms() + timeout_ms;
	if (kind == P_COMMAND) {
		/* The owner records who asked: forwarded requests carry no
		 * credential, so the principal authenticated here goes along. */
		Sagawire__OperateRequest *op =
		    r->req->body_case == SAGAWIRE__REQUEST__BODY_OPERATE ? r->req->operate : NULL;
		char *was = op ? op->principal : NULL;
		if (op)
			op->principal = r->auth.name;
		p->req_len = sagawire__request__get_packed_size(r->req);
		if ((p->req = malloc(p->req_len ? p->req_len : 1)) != NULL)
			sagawire__request__pack(r->req, p->req);
		if (op)
			op->principal = was;
		if (p->req == NULL) {
			free(p);
			rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
			return;
		}
	}
	pthread_mutex_lock(&F.mu);
	if (F.stop || !F.started) {
		pthread_mutex_unlock(&F.mu);
		free(p->req);
		free(p);
		rpc_reply_error(r, SAGA_ECLOSED, "sagad is shutting down");
		return;
	}
	p->next = F.pend;
	F.pend = p;
	pthread_mutex_unlock(&F.mu);
	wake();
}

static void
reply_bytes(rpc_req *r, const char *data, size_t len)
{
	nng_msg *m = NULL;
	if (nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, data, len) != 0) {
		nng_msg_free(m);
		m = NULL;
	}
	rpc_reply_msg(r, m);
}

/* Writes the commands not written yet. */
static int
write_commands(char *err, size_t errlen)
{
	bool any = false;
	pthread_mutex_lock(&F.mu);
	for (pending *p = F.pend; p; p = p->next) {
		if (p->kind != P_COMMAND || p->cmd != 0)
			continue;
		char sid[16], shard[8];
		memcpy(sid, p->id, 16);
		snprintf(shard, sizeof(shard), "%u", p->shard);
		const char *v[3] = { sid, shard, (const char *)p->req };
		int l[3] = { 16, 0, (int)p->req_len }, f[3] = { 1, 0, 1 };
		Oid t[3] = { 2950, 0, 17 };
		PGresult *r = PQexecParams(F.c,
		    "INSERT INTO saga_commands (saga_id, shard, request) VALUES ($1, $2::int, $3)"
		    " RETURNING id",
		    3, t, v, l, f, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "%s", PQresultErrorMessage(r));
			PQclear(r);
			pthread_mutex_unlock(&F.mu);
			return SAGA_EDB;
		}
		p->cmd = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		any = true;
	}
	pthread_mutex_unlock(&F.mu);
	if (any)
		PQclear(PQexec(F.c, "NOTIFY saga_commands"));
	return 0;
}

/* Answers what is done, final or past its time. */
static int
check_pending(char *err, size_t errlen)
{
	char ids[4096], cmds[4096];
	size_t a = 0, b = 0;
	int nw = 0, nc = 0;
	pthread_mutex_lock(&F.mu);
	a += (size_t)snprintf(ids + a, sizeof(ids) - a, "{");
	b += (size_t)snprintf(cmds + b, sizeof(cmds) - b, "{");
	for (pending *p = F.pend; p; p = p->next) {
		if (p->kind == P_WAIT && a < sizeof(ids) - 64) {
			char sid[WIRE_UUID_STRLEN];
			wire_uuid_format(p->id, sid);
			a += (size_t)snprintf(
			    ids + a, sizeof(ids) - a, "%s%s", nw++ ? "," : "", sid);
		} else if (p->kind == P_COMMAND && p->cmd != 0 && b < sizeof(cmds) - 32) {
			b += (size_t)snprintf(cmds + b, sizeof(cmds) - b, "%s%lld", nc++ ? "," : "",
			    (long long)p->cmd);
		}
	}
	pthread_mutex_unlock(&F.mu);
	snprintf(ids + a, sizeof(ids) - a, "}");
	snprintf(cmds + b, sizeof(cmds) - b, "}");
	PGresult *rw = NULL, *rc = NULL;
	if (nw > 0) {
		const char *v[1] = { ids };
		rw = PQexecParams(F.c,
		    "SELECT id::text, state, error FROM sagas WHERE id = ANY($1::uuid[])", 1, NULL,
		    v, NULL, NULL, 0);
		if (PQresultStatus(rw) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "%s", PQresultErrorMessage(rw));
			PQclear(rw);
			return SAGA_EDB;
		}
	}
	if (nc > 0) {
		const char *v[1] = { cmds };
		rc = PQexecParams(F.c,
		    "SELECT id, response FROM saga_commands WHERE id = ANY($1::int8[])"
		    " AND done_at IS NOT NULL",
		    1, NULL, v, NULL, NULL, 1);
		if (PQresultStatus(rc) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "%s", PQresultErrorMessage(rc));
			PQclear(rw);
			PQclear(rc);
			return SAGA_EDB;
		}
	}
	int64_t now = wire_mono_ms();
	pending *answer = NULL;
	pthread_mutex_lock(&F.mu);
	for (pending **pp = &F.pend; *pp;) {
		pending *p = *pp;
		bool done = false;
		if (p->kind == P_WAIT && rw != NULL) {
			char sid[WIRE_UUID_STRLEN];
			wire_uuid_format(p->id, sid);
			for (int i = 0; i < PQntuples(rw); i++) {
				if (strcmp(PQgetvalue(rw, i, 0), sid) != 0)
					continue;
				int st = atoi(PQgetvalue(rw, i, 1));
				if (is_final(st) || now >= p->deadline_ms) {
					reply_wait(p->r, st, PQgetvalue(rw, i, 2));
					done = true;
				}
			}
		} else if (p->kind == P_COMMAND && rc != NULL && p->cmd != 0) {
			for (int i = 0; i < PQntuples(rc); i++) {
				if (be64(PQgetvalue(rc, i, 0)) == p->cmd) {
					reply_bytes(p->r, PQgetvalue(rc, i, 1),
					    (size_t)PQgetlength(rc, i, 1));
					done = true;
				}
			}
		}
		if (!done && now >= p->deadline_ms) {
			/* Past its time: answered below, outside the lock. */
			*pp = p->next;
			p->next = answer;
			answer = p;
			continue;
		}
		if (done) {
			*pp = p->next;
			free(p->req);
			free(p);
			continue;
		}
		pp = &p->next;
	}
	pthread_mutex_unlock(&F.mu);
	PQclear(rw);
	/* The commands answered are done with: those read done above, not
	 * every one asked about (one finished since the read would be
	 * deleted unread, and its requester would time out). */
	if (rc != NULL && PQntuples(rc) > 0) {
		char done[4096];
		size_t d = (size_t)snprintf(done, sizeof(done), "{");
		for (int i = 0; i < PQntuples(rc) && d < sizeof(done) - 32; i++)
			d += (size_t)snprintf(done + d, sizeof(done) - d, "%s%lld", i ? "," : "",
			    (long long)be64(PQgetvalue(rc, i, 0)));
		snprintf(done + d, sizeof(done) - d, "}");
		const char *v[1] = { done };
		PQclear(PQexecParams(F.c, "DELETE FROM saga_commands WHERE id = ANY($1::int8[])", 1,
		    NULL, v, NULL, NULL, 0));
	}
	PQclear(rc);
	for (pending *p = answer, *n; p; p = n) {
		n = p->next;
		char sid[WIRE_UUID_STRLEN];
		wire_uuid_format(p->id, sid);
		if (p->kind == P_WAIT) {
			/* Not in the database any more? Unknown after all. */
			rpc_reply_error(p->r, SAGA_ENOTFOUND, "no saga %s", sid);
		} else {
			/* Withdraw it if no instance took it yet. */
			bool withdrawn = false;
			if (p->cmd != 0) {
				char cmd[24];
				snprintf(cmd, sizeof(cmd), "%lld", (long long)p->cmd);
				const char *v[1] = { cmd };
				PGresult *r = PQexecParams(F.c,
				    "DELETE FROM saga_commands WHERE id = $1::int8 AND taken_at IS "
				    "NULL",
				    1, NULL, v, NULL, NULL, 0);
				withdrawn = PQresultStatus(r) == PGRES_COMMAND_OK &&
				    atoi(PQcmdTuples(r)) == 1;
				PQclear(r);
			} else {
				withdrawn = true;
			}
			rpc_reply_error(p->r, SAGA_ETIMEDOUT,
			    "saga %s is held by another sagad instance, which did not answer "
			    "within "
			    "%d ms; %s",
			    sid, COMMAND_TIMEOUT_MS,
			    withdrawn ? "the request was withdrawn: nothing was done"
				      : "it may still apply the request: check the saga");
		}
		free(p->req);
		free(p);
	}
	return 0;
}

/* ---- their commands, run here ------------------------------------------------------------ */

/* The engine answered a command another sagad sent (any thread, maybe
 * under the engine's lock: only records it). */
static void
command_replied(rpc_req *r, nng_msg *m)
{
	running *x = (running *)(void *)r;
	pthread_mutex_lock(&F.mu);
	x->reply = m;
	x->replied = true;
	pthread_mutex_unlock(&F.mu);
	wake();
}

/* Takes the commands for shards held here and runs them. */
static int
take_commands(char *err, size_t errlen)
{
	uint64_t mask = engine_shards_active_mask();
	if (mask == 0)
		return 0;
	char shards[SHD_N * 4 + 3], who[300], retake[16];
	size_t a = (size_t)snprintf(shards, sizeof(shards), "{");
	for (unsigned s = 0, n = 0; s < SHD_N; s++)
		if (mask >> s & 1)
			a += (size_t)snprintf(
			    shards + a, sizeof(shards) - a, "%s%u", n++ ? "," : "", s);
	snprintf(shards + a, sizeof(shards) - a, "}");
	snprintf(who, sizeof(who), "%s", shd_instance_id());
	snprintf(retake, sizeof(retake), "%d", RETAKE_S);
	const char *v[3] = { shards, who, retake };
	PGresult *r = PQexecParams(F.c,
	    "UPDATE saga_commands SET taken_at = now(), taken_by = $2"
	    " WHERE id IN (SELECT id FROM saga_commands WHERE done_at IS NULL"
	    "  AND shard = ANY($1::int4[])"
	    "  AND (taken_at IS NULL OR taken_at < now() - $3::int * interval '1 second')"
	    "  ORDER BY id FOR UPDATE SKIP LOCKED)"
	    " RETURNING id, request",
	    3, NULL, v, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
		PQclear(r);
		return SAGA_EDB;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t cmd = be64(PQgetvalue(r, i, 0));
		int e = 0;
		Sagawire__Request *q = wire_unpack_request(
		    (const uint8_t *)PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), &e);
		running *x = calloc(1, sizeof(*x));
		if (q == NULL || x == NULL ||
		    (q->body_case != SAGAWIRE__REQUEST__BODY_CANCEL &&
			q->body_case != SAGAWIRE__REQUEST__BODY_OPERATE)) {
			wire_free(q ? &q->base : NULL);
			free(x);
			slog_warn("forwarded command %lld is not a cancel or operate: dropped",
			    (long long)cmd);
			continue;
		}
		x->cmd = cmd;
		x->r.req = q;
		x->r.forwarded = true;
		x->r.reply_fn = command_replied;
		pthread_mutex_lock(&F.mu);
		x->next = F.run;
		F.run = x;
		pthread_mutex_unlock(&F.mu);
		/* As if a client had sent it here. */
		int rv = engine_call(&x->r,
		    q->body_case == SAGAWIRE__REQUEST__BODY_CANCEL ? engine_cancel : engine_operate,
		    false);
		if (rv == ENGINE_NOT_HELD) {
			if (q->body_case == SAGAWIRE__REQUEST__BODY_CANCEL)
				fwd_cancel_check(F.c, &x->r);
			else
				fwd_operate_load(F.c, &x->r);
		}
	}
	PQclear(r);
	return 0;
}

/* Writes the responses of the commands run here. */
static int
finish_commands(char *err, size_t errlen)
{
	running *done = NULL;
	pthread_mutex_lock(&F.mu);
	for (running **pp = &F.run; *pp;) {
		running *x = *pp;
		if (x->replied) {
			*pp = x->next;
			x->next = done;
			done = x;
			continue;
		}
		pp = &x->next;
	}
	pthread_mutex_unlock(&F.mu);
	int rv = 0;
	bool any = false;
	for (running *x = done, *n; x; x = n) {
		n = x->next;
		if (rv == 0) {
			char cmd[24];
			snprintf(cmd, sizeof(cmd), "%lld", (long long)x->cmd);
			const char *v[2] = { cmd,
				x->reply ? (const char *)nng_msg_body(x->reply) : "" };
			int l[2] = { 0, x->reply ? (int)nng_msg_len(x->reply) : 0 },
			    f[2] = { 0, 1 };
			PGresult *r = PQexecParams(F.c,
			    "UPDATE saga_commands SET response = $2, done_at = now() WHERE id = "
			    "$1::int8",
			    2, NULL, v, l, f, 0);
			if (PQresultStatus(r) != PGRES_COMMAND_OK) {
				snprintf(err, errlen, "%s", PQresultErrorMessage(r));
				rv = SAGA_EDB;
			}
			PQclear(r);
			any = true;
		}
		nng_msg_free(x->reply);
		free(x);
	}
	if (any && rv == 0)
		PQclear(PQexec(F.c, "NOTIFY saga_command_done"));
	return rv;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static int
ensure_conn(char *err, size_t errlen)
{
	if (F.c != NULL && PQstatus(F.c) == CONNECTION_OK)
		return 0;
	PQfinish(F.c);
	F.c = store_connect(F.conninfo, "sagad-forward", err, errlen);
	if (F.c == NULL)
		return SAGA_EDB;
	PGresult *r = PQexec(F.c, "LISTEN saga_commands; LISTEN saga_command_done");
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		snprintf(err, errlen, "%s", PQerrorMessage(F.c));
		PQfinish(F.c);
		F.c = NULL;
		return SAGA_EDB;
	}
	return 0;
}

static void *
fwd_main(void *arg)
{
	(void)arg;
	char err[512];
	int fails = 0;
	int64_t next_take = 0;
	for (;;) {
		pthread_mutex_lock(&F.mu);
		bool stop = F.stop, busy = F.pend != NULL || F.run != NULL;
		pthread_mutex_unlock(&F.mu);
		if (stop)
			break;
		struct pollfd fds[2] = { { .fd = F.wake[0], .events = POLLIN },
			{ .fd = F.c != NULL ? PQsocket(F.c) : -1, .events = POLLIN } };
		int timeout = busy ? POLL_MS : 1000;
		bool notified = false;
		if (poll(fds, 2, timeout) > 0) {
			if (fds[0].revents != 0) {
				char buf[64];
				ssize_t n = read(F.wake[0], buf, sizeof(buf));
				(void)n;
			}
			if (fds[1].revents != 0 && F.c != NULL) {
				PQconsumeInput(F.c);
				PGnotify *nt;
				while ((nt = PQnotifies(F.c)) != NULL) {
					notified = true;
					PQfreemem(nt);
				}
			}
		}
		int rv = ensure_conn(err, sizeof(err));
		if (rv == 0)
			rv = write_commands(err, sizeof(err));
		if (rv == 0)
			rv = finish_commands(err, sizeof(err));
		if (rv == 0 && (notified || wire_mono_ms() >= next_take)) {
			rv = take_commands(err, sizeof(err));
			next_take = wire_mono_ms() + 1000;
		}
		if (rv == 0)
			rv = check_pending(err, sizeof(err));
		if (rv != 0) {
			if (fails++ % 20 == 0)
				slog_error(
				    "forwarding requests to other instances: %s (retrying)", err);
			PQfinish(F.c);
			F.c = NULL;
		} else {
			fails = 0;
		}
	}
	return NULL;
}

int
fwd_start(const cfg *c, const char *conninfo, char *err, size_t errlen)
{
	F.cfg = c;
	F.conninfo = strdup(conninfo);
	if (F.conninfo == NULL || pipe(F.wake) != 0) {
		snprintf(err, errlen, "cannot start forwarding: out of resources");
		return SAGA_ENOMEM;
	}
	F.started = true;
	if (pthread_create(&F.thread, NULL, fwd_main, NULL) != 0) {
		F.started = false;
		snprintf(err, errlen, "cannot start the forwarding thread");
		return SAGA_ENOMEM;
	}
	return 0;
}

void
fwd_stop(void)
{
	if (!F.started)
		return;
	pthread_mutex_lock(&F.mu);
	F.stop = true;
	pthread_mutex_unlock(&F.mu);
	wake();
	pthread_join(F.thread, NULL);
	F.started = false;
	/* What still waits on another instance is refused; commands run
	 * here that are not answered yet are taken again by the next owner. */
	for (pending *p = F.pend, *n; p; p = n) {
		n = p->next;
		rpc_reply_error(p->r, SAGA_ECLOSED, "sagad is shutting down");
		free(p->req);
		free(p);
	}
	F.pend = NULL;
	for (running *x = F.run, *n; x; x = n) {
		n = x->next;
		if (x->replied) {
			nng_msg_free(x->reply);
			free(x);
		}
		/* An unanswered one is still the engine's: leak it rather than
		 * free what a late reply would touch (the process ends). */
	}
	F.run = NULL;
	PQfinish(F.c);
	F.c = NULL;
	close(F.wake[0]);
	close(F.wake[1]);
	F.wake[0] = F.wake[1] = -1;
	free(F.conninfo);
	F.conninfo = NULL;
}
