/* reader: get, list and register, on their own threads and connections.
 * See reader.h. */
#include "reader.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "defn.h"
#include "engine.h"
#include "failpoint.h"
#include "log.h"
#include "registry.h"
#include "names.h"
#include "redact.h"
#include "saga_base.h"
#include "sm.h"
#include "store.h"
#include "wire.h"

typedef struct job {
	rpc_req *req;
	reader_fn fn;
	struct job *next;
} job;

static struct {
	const cfg *cfg;
	char *conninfo;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	job *head, *tail;
	bool stop;
	pthread_t *threads;
	uint32_t n_threads;
} RD = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* ---- get ----------------------------------------------------------------- */

typedef struct get_ctx {
	rpc_req *req;
	PGconn *conn; /* to load a definition registered by another sagad */
	int rv;
	bool summary_only;
	Sagawire__SagaInfo info;
	Sagawire__StepInfo *steps;
	Sagawire__StepInfo **stepp;
	Sagawire__StoredSteps *stored;
	char ids[WIRE_UUID_STRLEN];
	const defn_saga *def;
	bool reveal;  /* show sensitive fields (asked for, and allowed) */
	rdx_out *rdx; /* what redaction made: [0] the input, [1 + i] step i's result */
	size_t n_rdx;
	char **rerun_as; /* borrowed from stored */
} get_ctx;

/* The saga a stored history says this one reruns, or "" (its RERUN_OF
 * event: among the first, which the history always keeps). */
static char *
rerun_of(const Sagawire__StoredSteps *ss)
{
	for (size_t i = 0; ss != NULL && i < ss->n_events && i < SM_HISTORY_KEEP_FIRST; i++)
		if (ss->events[i]->type == SAGAWIRE__EVENT_TYPE__EVENT_RERUN_OF)
			return ss->events[i]->detail;
	return (char *)"";
}

/* Points *data, *len and the redacted list at a redacted copy of the
 * payload, unless the plan is NULL (nothing sensitive in its type) or the
 * caller may see it all. */
static int
redact_payload(get_ctx *g, const defn_redact *plan, rdx_out *o, uint8_t **data, size_t *len,
    size_t *n_redacted, char ***redacted)
{
	if (plan == NULL || g->reveal)
		return 0;
	int rv = rdx_apply(plan, *data, *len, o);
	if (rv != 0)
		return rv;
	*data = o->buf;
	*len = o->len;
	*n_redacted = o->n_paths;
	*redacted = o->paths;
	return 0;
}

/* Fills info from a stored row (pointers borrow from the row, the stored
 * steps and the definition; valid until the row is cleared). */
static int
build_info(const store_saga *s, get_ctx *g)
{
	sagawire__saga_info__init(&g->info);
	wire_uuid_format(s->id, g->ids);
	g->def = registry_get(s->definition, s->version);
	if (g->def == NULL && g->conn != NULL) {
		/* Registered by another sagad sharing the database. */
		char err[256];
		if (store_load_definitions(g->conn, err, sizeof(err)) == 0)
			g->def = registry_get(s->definition, s->version);
	}
	int err = 0;
	g->stored = (Sagawire__StoredSteps *)wire_unpack(
	    &sagawire__stored_steps__descriptor, s->steps, s->steps_len, 0, &err);
	if (g->def == NULL || g->stored == NULL || g->stored->n_steps != g->def->n_steps)
		return SAGA_EINTERNAL;
	g->info.saga_id = g->ids;
	g->info.definition = (char *)s->definition;
	g->info.version = s->version;
	g->info.state = (Sagawire__SagaState)s->state;
	g->info.idempotency_key = (char *)(s->idem_key ? s->idem_key : "");
	g->info.business_key = (char *)(s->business_key ? s->business_key : "");
	g->info.created_us = s->created_us;
	g->info.updated_us = s->updated_us;
	g->info.input.data = (uint8_t *)s->input;
	g->info.input.len = s->input_len;
	if (!g->reveal && g->def->n_plans > 0) {
		g->n_rdx = 1 + g->def->n_steps;
		if ((g->rdx = calloc(g->n_rdx, sizeof(*g->rdx))) == NULL)
			return SAGA_ENOMEM;
	}
	int rrv = redact_payload(g, g->def->input_redact, g->rdx ? &g->rdx[0] : NULL,
	    &g->info.input.data, &g->info.input.len, &g->info.n_redacted, &g->info.redacted);
	if (rrv != 0)
		return rrv;
	g->info.error = (char *)s->error;
	g->info.deadline_us = g->stored->deadline_us;
	g->info.traceparent = g->stored->traceparent;
	g->info.n_events = g->stored->n_events;
	g->info.events = g->stored->events;
	g->info.rerun_of = rerun_of(g->stored);
	for (size_t i = 0; i < g->stored->n_events; i++) {
		if (g->stored->events[i]->type != SAGAWIRE__EVENT_TYPE__EVENT_RERUN_AS)
			continue;
		if (g->rerun_as == NULL &&
		    (g->rerun_as = calloc(g->stored->n_events, sizeof(char *))) == NULL)
			return SAGA_ENOMEM;
		g->rerun_as[g->info.n_rerun_as++] = g->stored->events[i]->detail;
	}
	g->info.rerun_as = g->rerun_as;
	uint32_t n = g->def->n_steps;
	/* What the database cannot say: an attempt owed but not sent yet
	 * (known here only if this instance holds the saga). */
	uint64_t queued = g->summary_only ? 0 : engine_queued_mask(s->id);
	g->steps = calloc(n, sizeof(*g->steps));
	g->stepp = calloc(n, sizeof(*g->stepp));
	if (g->steps == NULL || g->stepp == NULL)
		return SAGA_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		const defn_step *ds = &g->def->steps[i];
		const Sagawire__StoredStep *x = g->stored->steps[i];
		Sagawire__StepInfo *si = &g->steps[i];
		sagawire__step_info__init(si);
		si->name = ds->name;
		si->participant = ds->participant;
		si->compensation = ds->compensation ? ds->compensation : (char *)"";
		si->n_depends_on = ds->n_deps;
		si->depends_on = calloc(ds->n_deps ? ds->n_deps : 1, sizeof(char *));
		if (si->depends_on == NULL)
			return SAGA_ENOMEM;
		for (uint32_t j = 0; j < ds->n_deps; j++)
			si->depends_on[j] = g->def->steps[ds->deps[j]].name;
		si->state = x->state;
		si->attempts = x->attempts;
		si->comp_attempts = x->comp_attempts;
		si->started_us = x->started_us;
		si->finished_us = x->finished_us;
		si->comp_started_us = x->comp_started_us;
		si->comp_finished_us = x->comp_finished_us;
		si->last_error = x->last_error;
		si->result = x->result;
		if ((rrv = redact_payload(g, ds->result_redact, g->rdx ? &g->rdx[1 + i] : NULL,
			 &si->result.data, &si->result.len, &si->n_redacted, &si->redacted)) != 0)
			return rrv;
		si->completion_seq = x->completion_seq;
		si->next_attempt_us = x->next_attempt_us;
		si->queued = i < 64 && (queued >> i & 1) &&
		    (x->state == SAGAWIRE__STEP_STATE__STEP_RUNNING ||
			x->state == SAGAWIRE__STEP_STATE__STEP_COMPENSATING);
		g->stepp[i] = si;
	}
	g->info.n_steps = n;
	g->info.steps = g->stepp;
	return 0;
}

static void
get_ctx_clear(get_ctx *g)
{
	if (g->steps && g->def)
		for (uint32_t i = 0; i < g->def->n_steps; i++)
			free(g->steps[i].depends_on);
	free(g->steps);
	free(g->stepp);
	for (size_t i = 0; i < g->n_rdx; i++)
		rdx_out_free(&g->rdx[i]);
	free(g->rdx);
	g->rdx = NULL;
	g->n_rdx = 0;
	free(g->rerun_as);
	g->rerun_as = NULL;
	wire_free(g->stored ? &g->stored->base : NULL);
	g->steps = NULL;
	g->stepp = NULL;
	g->stored = NULL;
}

static int
get_cb(const store_saga *s, void *arg)
{
	get_ctx *g = arg;
	int rv = build_info(s, g);
	if (rv != 0) {
		get_ctx_clear(g);
		return rv;
	}
	Sagawire__GetResponse gr = SAGAWIRE__GET_RESPONSE__INIT;
	gr.saga = &g->info;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_GET;
	resp.get = &gr;
	rpc_reply(g->req, &resp);
	get_ctx_clear(g);
	g->req = NULL;
	return 0;
}

void
reader_get(PGconn *c, rpc_req *r)
{
	uint8_t id[16];
	const char *sid = r->req->get->saga_id;
	if (wire_uuid_parse(sid, id) != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "'%.64s' is not a saga id (expected a UUID)", sid);
		return;
	}
	char err[512] = "";
	get_ctx g = { .req = r, .conn = c, .reveal = r->req->get->reveal && rpc_may_reveal(r) };
	int rv = store_get(c, id, get_cb, &g, err, sizeof(err));
	if (g.req == NULL)
		return;
	if (rv == SAGA_ENOTFOUND)
		rpc_reply_error(r, SAGA_ENOTFOUND, "no saga %s", sid);
	else if (rv == SAGA_EDB)
		rpc_reply_error(r, SAGA_EDB, "database error: %s", err);
	else
		rpc_reply_error(r, rv, "cannot read saga %s: %s", sid, cm_strerror(rv));
}

void
reader_start_unknown(PGconn *c, rpc_req *r)
{
	char err[512] = "";
	if (store_load_definitions(c, err, sizeof(err)) != 0)
		slog_warn("loading definitions for a start: %s", err);
	engine_call(r, engine_start_refreshed, true);
}

/* ---- list ------------------------------------------------------------------ */

/* Per-state counts of the sagas matching the first np parameters' filter
 * (where: the SQL after WHERE), into counts[] indexed by state. With limit
 * > 0 each state is counted up to limit only (at_least[state] set when it
 * was reached): one bounded walk of sagas_state_created per state instead
 * of a walk of every matching saga. */
static int
count_states(PGconn *c, const char *where, int np, const Oid *types, const char *const *vals,
    const int *lens, const int *fmts, uint32_t limit, uint64_t counts[7], bool at_least[7],
    char *err, size_t errlen)
{
	char sql[4096];
	if (limit == 0) {
		snprintf(sql, sizeof(sql),
		    "SELECT state, count(*) FROM sagas WHERE %s GROUP BY state", where);
	} else {
		size_t n = 0;
		for (int st = 1; st <= 6; st++)
			n += (size_t)snprintf(sql + n, sizeof(sql) - n,
			    "%sSELECT %d, count(*) FROM (SELECT 1 FROM sagas WHERE %s AND state = "
			    "%d "
			    "LIMIT %u) s%d",
			    st > 1 ? " UNION ALL " : "", st, where, st, limit, st);
	}
	PGresult *res = PQexecParams(c, sql, np, types, vals, lens, fmts, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
		PQclear(res);
		return SAGA_EDB;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		long st = strtol(PQgetvalue(res, i, 0), NULL, 10);
		if (st >= 0 && st < 7) {
			counts[st] = strtoull(PQgetvalue(res, i, 1), NULL, 10);
			at_least[st] = limit > 0 && counts[st] >= limit;
		}
	}
	PQclear(res);
	return 0;
}

/* The names of the definitions with a step on participant p (any
 * version), each followed by '\n' (malloc'd; "" for none), or NULL when out
 * of memory: ListRequest.participant. */
static char *
defs_with_participant(const char *p)
{
	size_t n = registry_count(), nn, len = 0, cap = 256;
	const defn_saga **latest = calloc(n ? n : 1, sizeof(*latest));
	const defn_saga **vers = calloc(n ? n : 1, sizeof(*vers));
	char *out = malloc(cap);
	if (latest == NULL || vers == NULL || out == NULL)
		goto fail;
	out[0] = '\0';
	nn = registry_list(NULL, latest, n);
	for (size_t i = 0; i < nn && i < n; i++) {
		size_t nv = registry_list(latest[i]->name, vers, n);
		bool has = false;
		for (size_t v = 0; v < nv && v < n && !has; v++)
			for (uint32_t k = 0; k < vers[v]->n_steps && !has; k++)
				has = strcmp(vers[v]->steps[k].participant, p) == 0;
		if (!has)
			continue;
		size_t l = strlen(latest[i]->name);
		if (len + l + 2 > cap) {
			char *o = realloc(out, cap = (len + l + 2) * 2);
			if (o == NULL)
				goto fail;
			out = o;
		}
		memcpy(out + len, latest[i]->name, l);
		len += l;
		out[len++] = '\n';
		out[len] = '\0';
	}
	free(latest), free(vers);
	return out;
fail:
	free(latest), free(vers), free(out);
	return NULL;
}

void
reader_list(PGconn *c, rpc_req *r)
{
	Sagawire__ListRequest *q = r->req->list;
	uint32_t limit = q->limit ? q->limit : 50;
	if (limit > 1000)
		limit = 1000;
	char sql[1024], where[600];
	size_t n = 0, w = 0;
	const char *vals[16];
	int lens[16], fmts[16];
	Oid types[16];
	int np = 0;
	char tsa[8], tsb[8], tsp[8], lim[4], ver[4];
	uint8_t pid[16];
	char *states_arr = NULL, *part_defs = NULL;
	uint64_t counts[7] = { 0 };
	bool at_least[7] = { false };

	if (q->version != 0 && !q->definition[0]) {
		rpc_reply_error(r, SAGA_EINVAL, "list: a version needs a definition");
		return;
	}
	/* The filter the counts share: definition, version, key, time. */
	w += (size_t)snprintf(where + w, sizeof(where) - w, "true");
	if (q->definition[0]) {
		vals[np] = q->definition, lens[np] = 0, fmts[np] = 0, types[np] = 25;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w, " AND definition = $%d", np);
	}
	if (r->auth.defs != NULL) {
		/* A principal limited to some definitions lists only those. */
		vals[np] = r->auth.defs, lens[np] = 0, fmts[np] = 0, types[np] = 25;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w,
		    " AND definition = ANY(string_to_array($%d, E'\\n'))", np);
	}
	if (q->version != 0) {
		uint32_t v = htonl(q->version);
		memcpy(ver, &v, 4);
		vals[np] = ver, lens[np] = 4, fmts[np] = 1, types[np] = 23;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w, " AND version = $%d", np);
	}
	if (q->business_key[0]) {
		vals[np] = q->business_key, lens[np] = 0, fmts[np] = 0, types[np] = 25;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w, " AND business_key = $%d", np);
	}
	if (q->created_after_us) {
		store_ts_to_pg(q->created_after_us, tsa);
		vals[np] = tsa, lens[np] = 8, fmts[np] = 1, types[np] = 1184;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w, " AND created_at >= $%d", np);
	}
	if (q->created_before_us) {
		store_ts_to_pg(q->created_before_us, tsb);
		vals[np] = tsb, lens[np] = 8, fmts[np] = 1, types[np] = 1184;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w, " AND created_at < $%d", np);
	}
	if (q->participant[0]) {
		if ((part_defs = defs_with_participant(q->participant)) == NULL) {
			rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
			return;
		}
		vals[np] = part_defs, lens[np] = 0, fmts[np] = 0, types[np] = 25;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w,
		    " AND definition = ANY(string_to_array($%d, E'\\n'))", np);
	}
	if (q->error_contains[0]) {
		vals[np] = q->error_contains, lens[np] = 0, fmts[np] = 0, types[np] = 25;
		np++;
		w += (size_t)snprintf(where + w, sizeof(where) - w,
		    " AND error <> '' AND strpos(lower(error), lower($%d)) > 0", np);
	}
	if (q->counts) {
		char err[512];
		if (count_states(c, where, np, types, vals, lens, fmts, q->counts_limit, counts,
			at_least, err, sizeof(err)) != 0) {
			free(part_defs);
			rpc_reply_error(r, SAGA_EDB, "database error: %s", err);
			return;
		}
	}

	n += (size_t)snprintf(sql + n, sizeof(sql) - n,
	    "SELECT id, definition, version, state, business_key, created_at, updated_at, error,"
	    " steps FROM sagas WHERE %s",
	    where);
	if (q->n_states > 0) {
		if (q->n_states > 16) {
			free(part_defs);
			rpc_reply_error(r, SAGA_EINVAL, "list: at most 16 states");
			return;
		}
		size_t len = 20 + q->n_states * 6;
		states_arr = calloc(1, len);
		if (states_arr == NULL) {
			free(part_defs);
			rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
			return;
		}
		uint32_t v;
		v = htonl(1), memcpy(states_arr, &v, 4);
		v = htonl(0), memcpy(states_arr + 4, &v, 4);
		v = htonl(21), memcpy(states_arr + 8, &v, 4);
		v = htonl((uint32_t)q->n_states), memcpy(states_arr + 12, &v, 4);
		v = htonl(1), memcpy(states_arr + 16, &v, 4);
		for (size_t i = 0; i < q->n_states; i++) {
			v = htonl(2), memcpy(states_arr + 20 + i * 6, &v, 4);
			uint16_t s16 = htons((uint16_t)q->states[i]);
			memcpy(states_arr + 24 + i * 6, &s16, 2);
		}
		vals[np] = states_arr, lens[np] = (int)len, fmts[np] = 1, types[np] = 1005;
		np++;
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND state = ANY($%d)", np);
	}
	if (q->page_token[0]) {
		/* token: "<created_us>.<uuid>" of the last saga on the previous page */
		char *dot = strchr(q->page_token, '.');
		char *end = NULL;
		long long us = strtoll(q->page_token, &end, 10);
		if (dot == NULL || end != dot || wire_uuid_parse(dot + 1, pid) != 0) {
			free(states_arr), free(part_defs);
			rpc_reply_error(r, SAGA_EINVAL, "list: invalid page token");
			return;
		}
		store_ts_to_pg(us, tsp);
		vals[np] = tsp, lens[np] = 8, fmts[np] = 1, types[np] = 1184;
		vals[np + 1] = (const char *)pid, lens[np + 1] = 16, fmts[np + 1] = 1,
			  types[np + 1] = 2950;
		np += 2;
		n += (size_t)snprintf(
		    sql + n, sizeof(sql) - n, " AND (created_at, id) < ($%d, $%d)", np - 1, np);
	}
	uint32_t l1 = htonl(limit + 1);
	memcpy(lim, &l1, 4);
	vals[np] = lim, lens[np] = 4, fmts[np] = 1, types[np] = 23;
	np++;
	snprintf(sql + n, sizeof(sql) - n, " ORDER BY created_at DESC, id DESC LIMIT $%d", np);

	PGresult *res = PQexecParams(c, sql, np, types, vals, lens, fmts, 1);
	free(states_arr), free(part_defs);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rpc_reply_error(r, SAGA_EDB, "database error: %s", PQresultErrorMessage(res));
		PQclear(res);
		return;
	}
	int rows = PQntuples(res);
	uint32_t count = rows > (int)limit ? limit : (uint32_t)rows;
	Sagawire__SagaSummary *sums = calloc(count ? count : 1, sizeof(*sums));
	Sagawire__SagaSummary **sp = calloc(count ? count : 1, sizeof(*sp));
	char(*ids)[WIRE_UUID_STRLEN] = calloc(count ? count : 1, WIRE_UUID_STRLEN);
	char(*links)[WIRE_UUID_STRLEN] = calloc(count ? count : 1, WIRE_UUID_STRLEN);
	char token[64] = "";
	if (sums == NULL || sp == NULL || ids == NULL || links == NULL) {
		free(sums), free(sp), free(ids), free(links);
		PQclear(res);
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	for (uint32_t i = 0; i < count; i++) {
		Sagawire__SagaSummary *s = &sums[i];
		sagawire__saga_summary__init(s);
		wire_uuid_format((const uint8_t *)PQgetvalue(res, (int)i, 0), ids[i]);
		s->saga_id = ids[i];
		s->definition = PQgetvalue(res, (int)i, 1);
		uint32_t v;
		memcpy(&v, PQgetvalue(res, (int)i, 2), 4);
		s->version = ntohl(v);
		uint16_t st;
		memcpy(&st, PQgetvalue(res, (int)i, 3), 2);
		s->state = (Sagawire__SagaState)ntohs(st);
		s->business_key =
		    PQgetisnull(res, (int)i, 4) ? (char *)"" : PQgetvalue(res, (int)i, 4);
		s->created_us = store_ts_from_pg(PQgetvalue(res, (int)i, 5));
		s->updated_us = store_ts_from_pg(PQgetvalue(res, (int)i, 6));
		s->error = PQgetvalue(res, (int)i, 7);
		int err = 0;
		Sagawire__StoredSteps *ss =
		    (Sagawire__StoredSteps *)wire_unpack(&sagawire__stored_steps__descriptor,
			(const uint8_t *)PQgetvalue(res, (int)i, 8),
			(size_t)PQgetlength(res, (int)i, 8), 0, &err);
		if (ss) {
			s->steps_total = (uint32_t)ss->n_steps;
			for (size_t k = 0; k < ss->n_steps; k++)
				if (ss->steps[k]->state == SAGAWIRE__STEP_STATE__STEP_SUCCEEDED)
					s->steps_done++;
			snprintf(links[i], WIRE_UUID_STRLEN, "%s", rerun_of(ss));
			s->rerun_of = links[i];
			wire_free(&ss->base);
		}
		sp[i] = s;
	}
	if (rows > (int)limit && count > 0)
		snprintf(token, sizeof(token), "%" PRId64 ".%s", sums[count - 1].created_us,
		    ids[count - 1]);
	Sagawire__ListResponse lr = SAGAWIRE__LIST_RESPONSE__INIT;
	lr.n_sagas = count;
	lr.sagas = sp;
	lr.next_page_token = token;
	Sagawire__StateCount sc[6], *scp[6];
	if (q->counts) {
		for (int k = 0; k < 6; k++) {
			sagawire__state_count__init(&sc[k]);
			sc[k].state = (Sagawire__SagaState)(k + 1);
			sc[k].count = counts[k + 1];
			sc[k].at_least = at_least[k + 1];
			scp[k] = &sc[k];
		}
		lr.n_counts = 6;
		lr.counts = scp;
	}
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_LIST;
	resp.list = &lr;
	rpc_reply(r, &resp);
	free(sums), free(sp), free(ids), free(links);
	PQclear(res);
}

/* ---- register ---------------------------------------------------------------- */

static pthread_mutex_t register_mu = PTHREAD_MUTEX_INITIALIZER;

void
reader_register(PGconn *c, rpc_req *r)
{
	Sagawire__RegisterRequest *q = r->req->register_;
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[1024] = "";
	int rv = defn_parse_set(
	    q->descriptor_set.data, q->descriptor_set.len, &defs, &n, err, sizeof(err));
	if (rv == 0 && n > DEFN_MAX_SAGAS_PER_SET) {
		/* Storing is the costly part (a lock, a lookup and a row per
		 * saga, in one transaction): one register may do only so much. */
		snprintf(err, sizeof(err),
		    "the descriptor set defines %zu sagas; one register may define at most %d "
		    "(split it, e.g. one protoc run per .proto file)",
		    n, DEFN_MAX_SAGAS_PER_SET);
		defn_free_array(defs, n);
		defs = NULL;
		rv = SAGA_EDEFINITION;
	}
	if (rv != 0) {
		slog_info("register refused: %s", err);
		rpc_reply_error(r, rv, "%s", err);
		return;
	}
	/* One register at a time per sagad: a second one would hold another
	 * reader, and with them every get and list, for as long. */
	bool locked = true;
	if (pthread_mutex_trylock(&register_mu) != 0) {
		defn_free_array(defs, n);
		rpc_reply_error(r, SAGA_EBUSY,
		    "another register is being stored by this sagad; try again in a moment");
		return;
	}
	fp_delay(FP_SLOW_REGISTER);
	Sagawire__RegisteredDefinition *out = calloc(n, sizeof(*out));
	Sagawire__RegisteredDefinition **outp = calloc(n, sizeof(*outp));
	char **names = calloc(n, sizeof(*names));
	if (out == NULL || outp == NULL || names == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		sagawire__registered_definition__init(&out[i]);
		if ((names[i] = strdup(defs[i]->name)) == NULL) {
			rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
			goto done;
		}
		out[i].name = names[i];
		outp[i] = &out[i];
	}
	rv = store_register(c, q->descriptor_set.data, q->descriptor_set.len, defs, n, q->force,
	    out, err, sizeof(err));
	/* Released before the reply: the caller may register again at once. */
	pthread_mutex_unlock(&register_mu);
	locked = false;
	if (rv != 0) {
		rpc_reply_error(r, rv, "cannot store definitions: %s", err);
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		slog_info("registered %s version %u%s", out[i].name, out[i].version,
		    out[i].unchanged ? " (unchanged)" : "");
	free(defs); /* entries now owned by the registry or freed */
	defs = NULL;
	Sagawire__RegisterResponse rr = SAGAWIRE__REGISTER_RESPONSE__INIT;
	rr.n_definitions = n;
	rr.definitions = outp;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_REGISTER;
	resp.register_ = &rr;
	rpc_reply(r, &resp);
done:
	if (names)
		for (size_t i = 0; i < n; i++)
			free(names[i]);
	free(names);
	free(out);
	free(outp);
	if (defs)
		defn_free_array(defs, n);
	if (locked)
		pthread_mutex_unlock(&register_mu);
}

/* ---- describe ---------------------------------------------------------------- */

#define DESCRIBE_MAX 1000 /* versions (or definitions) described at once */

static void
step_of(const defn_saga *d, const defn_step *ds, Sagawire__DefinitionStep *o, char **deps)
{
	sagawire__definition_step__init(o);
	o->name = ds->name;
	o->participant = ds->participant;
	o->compensation = ds->compensation ? ds->compensation : (char *)"";
	for (uint32_t k = 0; k < ds->n_deps; k++)
		deps[k] = d->steps[ds->deps[k]].name;
	o->n_depends_on = ds->n_deps;
	o->depends_on = deps;
	o->timeout_ms = ds->timeout_ms;
	o->max_attempts = ds->retry.max_attempts;
	o->compensation_timeout_ms = ds->compensation ? ds->comp_timeout_ms : 0;
	o->compensation_max_attempts = ds->compensation ? ds->comp_retry.max_attempts : 0;
	o->heartbeat_timeout_ms = ds->hb_timeout_ms;
	o->input_type = ds->input_type;
	o->output_type = ds->output_type;
}

void
reader_describe(PGconn *c, rpc_req *r)
{
	Sagawire__DescribeRequest *q = r->req->describe;
	const char *name = q->definition[0] ? q->definition : NULL;
	const defn_saga **defs = calloc(DESCRIBE_MAX, sizeof(*defs));
	Sagawire__DefinitionInfo *infos = calloc(DESCRIBE_MAX, sizeof(*infos));
	Sagawire__DefinitionInfo **ip = calloc(DESCRIBE_MAX, sizeof(*ip));
	Sagawire__DefinitionStep *steps = NULL, **sp = NULL;
	char **deps = NULL;
	PGresult *res = NULL;
	size_t n, total_steps = 0;
	uint32_t want = 0;

	if (defs == NULL || infos == NULL || ip == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		goto done;
	}
	if (name == NULL && q->version != 0) {
		rpc_reply_error(r, SAGA_EINVAL, "describe: a version needs a definition");
		goto done;
	}
	/* What another sagad sharing the database registered, too. */
	char lerr[256];
	if (store_load_definitions(c, lerr, sizeof(lerr)) != 0)
		slog_warn("describe: loading definitions: %s", lerr);
	n = registry_list(name, defs, DESCRIBE_MAX);
	if (n > DESCRIBE_MAX)
		n = DESCRIBE_MAX;
	if (name == NULL && r->auth.defs != NULL) {
		/* A principal limited to some definitions sees only those. */
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (auth_definition_allowed(r, defs[i]->name))
				defs[k++] = defs[i];
		n = k;
	}
	if (name != NULL && n == 0) {
		rpc_reply_error(r, SAGA_ENOTFOUND,
		    "unknown saga definition %.256s (`sagactl describe` lists them; register one "
		    "with `sagactl register FILE`)",
		    name);
		goto done;
	}
	if (name != NULL) {
		want = q->version ? q->version : defs[0]->version;
		if (registry_get(name, want) == NULL) {
			rpc_reply_error(r, SAGA_ENOTFOUND,
			    "saga definition %.256s has no version %u", name, want);
			goto done;
		}
	}
	/* Registration times, and the descriptor set of the version asked. */
	const char *sql = name != NULL
	    ? "SELECT d.name, d.version, d.created_at, CASE WHEN d.version = $2::int THEN "
	      "COALESCE(d.descriptor_set, s.descriptor_set) END FROM saga_definitions d "
	      "LEFT JOIN saga_descriptor_sets s ON s.digest = d.set_digest WHERE d.name = $1"
	    : "SELECT name, version, created_at, NULL::bytea FROM saga_definitions";
	char wantbuf[16];
	snprintf(wantbuf, sizeof(wantbuf), "%u", want);
	const char *params[2] = { name, wantbuf };
	res = PQexecParams(c, sql, name != NULL ? 2 : 0, NULL, params, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rpc_reply_error(r, SAGA_EDB, "database error: %s", PQresultErrorMessage(res));
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		total_steps += defs[i]->n_steps;
	steps = calloc(total_steps ? total_steps : 1, sizeof(*steps));
	sp = calloc(total_steps ? total_steps : 1, sizeof(*sp));
	deps = calloc(total_steps ? total_steps * DEFN_MAX_STEPS : 1, sizeof(*deps));
	if (steps == NULL || sp == NULL || deps == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		goto done;
	}
	Sagawire__DescribeResponse dr = SAGAWIRE__DESCRIBE_RESPONSE__INIT;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const defn_saga *d = defs[i];
		Sagawire__DefinitionInfo *o = &infos[i];
		sagawire__definition_info__init(o);
		o->name = d->name;
		o->version = d->version;
		o->input_type = d->input_type;
		o->description = d->description;
		o->deadline_ms = d->deadline_ms;
		o->business_key = d->business_key ? d->business_key : (char *)"";
		o->n_steps = d->n_steps;
		o->steps = &sp[k];
		for (uint32_t j = 0; j < d->n_steps; j++, k++) {
			step_of(d, &d->steps[j], &steps[k], &deps[k * DEFN_MAX_STEPS]);
			sp[k] = &steps[k];
		}
		for (int row = 0; row < PQntuples(res); row++) {
			uint32_t v;
			memcpy(&v, PQgetvalue(res, row, 1), 4);
			if (ntohl(v) != d->version || strcmp(PQgetvalue(res, row, 0), d->name) != 0)
				continue;
			o->registered_us = store_ts_from_pg(PQgetvalue(res, row, 2));
			if (!PQgetisnull(res, row, 3)) {
				dr.descriptor_set.data = (uint8_t *)PQgetvalue(res, row, 3);
				dr.descriptor_set.len = (size_t)PQgetlength(res, row, 3);
			}
		}
		ip[i] = o;
	}
	dr.n_definitions = n;
	dr.definitions = ip;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_DESCRIBE;
	resp.describe = &dr;
	rpc_reply(r, &resp);
done:
	PQclear(res);
	free(defs), free(infos), free(ip), free(steps), free(sp), free(deps);
}

/* ---- threads -------------------------------------------------------------------- */

static void *
reader_main(void *arg)
{
	(void)arg;
	PGconn *c = NULL;
	char err[512];
	for (;;) {
		pthread_mutex_lock(&RD.mu);
		while (RD.head == NULL && !RD.stop)
			pthread_cond_wait(&RD.cv, &RD.mu);
		job *j = RD.head;
		if (j == NULL) {
			pthread_mutex_unlock(&RD.mu);
			break;
		}
		RD.head = j->next;
		if (RD.head == NULL)
			RD.tail = NULL;
		bool stopping = RD.stop;
		pthread_mutex_unlock(&RD.mu);
		if (stopping) {
			/* Shutting down: what had begun is finished, what waits
			 * in the queue is refused (the client may try again). */
			rpc_reply_error(j->req, SAGA_ECLOSED, "sagad is shutting down");
			free(j);
			continue;
		}

		/* A connection the server closed while idle (restart,
		 * pg_terminate_backend) looks fine until used. An idle reader
		 * connection has nothing to receive, so a readable socket means
		 * the server's goodbye or EOF: start afresh, so that this
		 * request gets a new connection instead of an error. */
		struct pollfd pfd = { .fd = c ? PQsocket(c) : -1, .events = POLLIN };
		if (c != NULL &&
		    (PQstatus(c) != CONNECTION_OK || pfd.fd < 0 || poll(&pfd, 1, 0) != 0)) {
			PQfinish(c);
			c = NULL;
		}
		if (c == NULL &&
		    (c = store_connect(RD.conninfo, "sagad-reader", err, sizeof(err))) == NULL) {
			slog_error("reader: %s", err);
			rpc_reply_error(j->req, SAGA_EDB, "database unavailable: %s", err);
			free(j);
			continue;
		}
		j->fn(c, j->req);
		free(j);
	}
	PQfinish(c);
	return NULL;
}

void
reader_submit(rpc_req *r, reader_fn fn)
{
	job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	j->req = r;
	j->fn = fn;
	pthread_mutex_lock(&RD.mu);
	if (RD.tail)
		RD.tail->next = j;
	else
		RD.head = j;
	RD.tail = j;
	pthread_cond_signal(&RD.cv);
	pthread_mutex_unlock(&RD.mu);
}

int
reader_start(const cfg *c, const char *conninfo, char *err, size_t errlen)
{
	RD.cfg = c;
	RD.conninfo = strdup(conninfo);
	RD.n_threads = c->readers ? c->readers : 1;
	RD.threads = calloc(RD.n_threads, sizeof(pthread_t));
	if (RD.conninfo == NULL || RD.threads == NULL) {
		snprintf(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	for (uint32_t i = 0; i < RD.n_threads; i++) {
		if (pthread_create(&RD.threads[i], NULL, reader_main, NULL) != 0) {
			snprintf(err, errlen, "cannot start reader thread");
			RD.n_threads = i;
			return SAGA_ENOMEM;
		}
	}
	return 0;
}

void
reader_stop(void)
{
	pthread_mutex_lock(&RD.mu);
	RD.stop = true;
	pthread_cond_broadcast(&RD.cv);
	pthread_mutex_unlock(&RD.mu);
	for (uint32_t i = 0; i < RD.n_threads; i++)
		pthread_join(RD.threads[i], NULL);
	free(RD.threads);
	free(RD.conninfo);
	RD.threads = NULL;
	RD.conninfo = NULL;
}
