/* http_api: the JSON API and the web UI. See http_api.h and
 * docs/HTTP-API.md. */
#include "http_api.h"

#include <arpa/inet.h>
#include <nng/supplemental/util/platform.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "http_assets.h"
#include "jsonstr.h"
#include "log.h"
#include "names.h"
#include "pbjson.h"
#include "route.h"
#include "rpc.h"
#include "saga_base.h"
#include "utf8.h"
#include "wire.h"

/* API requests in flight at once; more get 503 (the readers' queue is
 * shared with the RPC). */
#define MAX_IN_FLIGHT  64
/* Largest action body (JSON). */
#define MAX_BODY       16384
/* Query parameters read, and the longest value. */
#define MAX_PARAMS     24
#define MAX_PARAM_LEN  1024
/* The list's counts per state stop at this many (ListRequest.counts_limit;
 * the query parameter counts_limit, 0 = exact, overrides it): each costs at
 * most that many index entries, however many sagas are stored. */
#define COUNTS_LIMIT   10000
/* Most states in a list filter. */
#define MAX_STATES     8
/* A credential is "<16 hex>.<43 base64url>"; anything longer is refused. */
#define MAX_CREDENTIAL 128

static struct {
	pbjson *schema; /* sagawire.proto, built in */
	bool on;        /* UI and API served */
	bool check_host;
	char why_off[256];
	atomic_int in_flight;
} H;

/* ---- the actions: one entry each (the UI has the matching entry) -------- */

/* The request an action sends, built in bodies that live as long as the
 * call: a new kind of request adds its body here and a builder below. */
typedef struct action_bodies {
	Sagawire__CancelRequest cancel;
	Sagawire__OperateRequest operate;
} action_bodies;

typedef struct action {
	const char *name;
	bool needs_step;
	Sagawire__Operation op; /* for build_operate */
	void (*build)(const struct action *a, Sagawire__Request *q, action_bodies *b,
	    const char *saga_id, const Sagawire__HttpAction *in);
} action;

static void
build_cancel(const action *a, Sagawire__Request *q, action_bodies *b, const char *saga_id,
    const Sagawire__HttpAction *in)
{
	(void)a;
	sagawire__cancel_request__init(&b->cancel);
	b->cancel.saga_id = (char *)saga_id;
	b->cancel.reason = in->reason;
	q->body_case = SAGAWIRE__REQUEST__BODY_CANCEL;
	q->cancel = &b->cancel;
}

static void
build_operate(const action *a, Sagawire__Request *q, action_bodies *b, const char *saga_id,
    const Sagawire__HttpAction *in)
{
	sagawire__operate_request__init(&b->operate);
	b->operate.saga_id = (char *)saga_id;
	b->operate.op = a->op;
	b->operate.step = a->needs_step ? in->step : "";
	b->operate.reason = in->reason;
	if (a->op == SAGAWIRE__OPERATION__OP_FORCE_SUCCEEDED)
		b->operate.result = in->result;
	if (a->op == SAGAWIRE__OPERATION__OP_RERUN) {
		b->operate.idempotency_key = in->idempotency_key;
		b->operate.latest_version = in->latest_version;
	}
	q->body_case = SAGAWIRE__REQUEST__BODY_OPERATE;
	q->operate = &b->operate;
}

/* The actions of POST /api/v1/sagas/{id}/actions, one entry each (the UI
 * has the matching entry in server/ui/api.js). The role they need is the
 * RPC's (route.c). A new OperateRequest.op is one entry here. */
static const action actions[] = {
	{ "cancel", false, 0, build_cancel },
	{ "retry", true, SAGAWIRE__OPERATION__OP_RETRY_STEP, build_operate },
	{ "skip", true, SAGAWIRE__OPERATION__OP_SKIP_STEP, build_operate },
	{ "terminate", false, SAGAWIRE__OPERATION__OP_TERMINATE, build_operate },
	{ "force_succeeded", true, SAGAWIRE__OPERATION__OP_FORCE_SUCCEEDED, build_operate },
	{ "force_compensated", true, SAGAWIRE__OPERATION__OP_FORCE_COMPENSATED, build_operate },
	{ "rerun", false, SAGAWIRE__OPERATION__OP_RERUN, build_operate },
};

/* ---- JSON text ------------------------------------------------------------ */

typedef struct jb {
	char *b;
	size_t n, cap;
	bool oom;
} jb;

static void
jb_put(jb *j, const char *s, size_t n)
{
	if (j->oom)
		return;
	if (j->n + n + 1 > j->cap) {
		size_t cap = j->cap ? j->cap : 1024;
		while (cap < j->n + n + 1)
			cap *= 2;
		char *b = realloc(j->b, cap);
		if (b == NULL) {
			j->oom = true;
			return;
		}
		j->b = b;
		j->cap = cap;
	}
	memcpy(j->b + j->n, s, n);
	j->n += n;
	j->b[j->n] = '\0';
}

static void
jb_s(jb *j, const char *s)
{
	jb_put(j, s, strlen(s));
}

/* s as a JSON string, quoted; bytes that are not UTF-8 become U+FFFD. */
static void
jb_str(jb *j, const char *s)
{
	size_t n = strlen(s), len = cm_json_escaped_len(s, n, CM_JSON_DEL | CM_JSON_FFFD);
	char *e = malloc(len + 3);
	if (e == NULL) {
		j->oom = true;
		return;
	}
	e[0] = '"';
	cm_json_escape(e + 1, len + 1, s, n, CM_JSON_DEL | CM_JSON_FFFD, NULL);
	e[len + 1] = '"';
	jb_put(j, e, len + 2);
	free(e);
}

static void jb_printf(jb *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
jb_printf(jb *j, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		jb_put(j, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* m in the proto3 JSON mapping of sagawire.proto. */
static void
jb_message(jb *j, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	char *out = NULL, err[256];
	if (buf == NULL) {
		j->oom = true;
		return;
	}
	protobuf_c_message_pack(m, buf);
	if (pbjson_to_json(H.schema, m->descriptor->name, buf, len, 0, &out, err, sizeof(err)) !=
	    0) {
		jb_s(j, "{\"@error\":");
		jb_str(j, err);
		jb_s(j, "}");
	} else {
		jb_s(j, out);
	}
	free(out);
	free(buf);
}

/* ---- replies ---------------------------------------------------------------- */

static const char *security_headers[][2] = {
	{ "X-Content-Type-Options", "nosniff" },
	{ "Referrer-Policy", "no-referrer" },
	{ "X-Frame-Options", "DENY" },
	{ "Cache-Control", "no-store" },
};

static void
finish(nng_aio *aio, uint16_t status, const char *type, const void *body, size_t len)
{
	nng_http_res *res;
	if (nng_http_res_alloc(&res) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_http_res_set_status(res, status);
	nng_http_res_set_header(res, "Content-Type", type);
	for (size_t i = 0; i < sizeof(security_headers) / sizeof(security_headers[0]); i++)
		nng_http_res_set_header(res, security_headers[i][0], security_headers[i][1]);
	if (status == 401)
		nng_http_res_set_header(res, "WWW-Authenticate", "Bearer realm=\"sagad\"");
	if (nng_http_res_copy_data(res, body, len) != 0) {
		nng_http_res_free(res);
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void
finish_json(nng_aio *aio, uint16_t status, jb *j)
{
	if (j->oom) {
		static const char oom[] = "{\"error\":{\"code\":2,\"message\":\"out of memory\"}}";
		finish(aio, 500, "application/json", oom, sizeof(oom) - 1);
	} else {
		finish(aio, status, "application/json", j->b ? j->b : "{}", j->b ? j->n : 2);
	}
	free(j->b);
	j->b = NULL;
}

static uint16_t
status_of(int code)
{
	switch (code) {
	case SAGA_EINVAL:
	case SAGA_EDEFINITION:
	case SAGA_EPROTO:
		return 400;
	case SAGA_EAUTH:
		return 401;
	case SAGA_EPERM:
		return 403;
	case SAGA_ENOTFOUND:
		return 404;
	case SAGA_EEXIST:
	case SAGA_ESTATE:
		return 409;
	case SAGA_ETOOBIG:
		return 413;
	case SAGA_EUNSUPPORTED:
		return 501;
	case SAGA_EBUSY:
	case SAGA_ECLOSED:
	case SAGA_EDB:
		return 503;
	case SAGA_ETIMEDOUT:
		return 504;
	default:
		return 500;
	}
}

static void finish_error(nng_aio *aio, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
finish_error(nng_aio *aio, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	jb j = { 0 };
	jb_printf(&j, "{\"error\":{\"code\":%d,\"name\":", code);
	jb_str(&j, cm_strerror(code));
	jb_s(&j, ",\"message\":");
	jb_str(&j, msg);
	jb_s(&j, "}}");
	finish_json(aio, status_of(code), &j);
}

/* ---- requests through the router ------------------------------------------ */

typedef enum kind {
	K_LIST,
	K_GET,          /* the saga; then K_GET_DESCRIBE for its payloads' types */
	K_GET_DESCRIBE, /* its definition's descriptor set */
	K_PARTICIPANTS,
	K_DEFINITIONS,
	K_ACTION,
	K_WHOAMI,
} kind;

typedef struct hreq {
	rpc_req r; /* first: reply_fn gets &r */
	nng_aio *aio;
	nng_aio *next; /* K_GET: sends the describe from nng's task thread */
	kind k;
	char *cred;               /* kept for a second request (K_GET), wiped when freed */
	bool reveal;              /* K_GET */
	Sagawire__Response *saga; /* K_GET's answer while K_GET_DESCRIBE runs */
} hreq;

static void on_reply(rpc_req *r, nng_msg *m);

static void
hreq_free(hreq *h)
{
	if (h == NULL)
		return;
	if (h->cred != NULL) {
		memset(h->cred, 0, strlen(h->cred));
		free(h->cred);
	}
	wire_free(h->saga ? &h->saga->base : NULL);
	if (h->next != NULL)
		nng_aio_reap(h->next); /* may be inside its own callback */
	free(h);
	atomic_fetch_sub(&H.in_flight, 1);
}

/* Sends q (a request built on the stack) through the router as h's. It is
 * packed and read back with wire_unpack_request, as a request from the
 * network is, so that it is owned, bounded and freed like one. */
static void
submit(hreq *h, Sagawire__Request *q)
{
	q->protocol = WIRE_PROTOCOL_VERSION;
	q->credential = h->cred ? h->cred : (char *)"";
	size_t len = protobuf_c_message_get_packed_size(&q->base);
	uint8_t *buf = malloc(len ? len : 1);
	int err = SAGA_ENOMEM;
	Sagawire__Request *owned = NULL;
	if (buf != NULL) {
		protobuf_c_message_pack(&q->base, buf);
		owned = wire_unpack_request(buf, len, &err);
		memset(buf, 0, len); /* it held the credential */
		free(buf);
	}
	if (owned == NULL) {
		nng_aio *aio = h->aio;
		hreq_free(h);
		finish_error(aio, err ? err : SAGA_EINVAL, "invalid request: %s", cm_strerror(err));
		return;
	}
	memset(&h->r, 0, sizeof(h->r));
	h->r.req = owned;
	h->r.reply_fn = on_reply;
	route_request(&h->r);
}

static const ProtobufCMessage *
body_of(const Sagawire__Response *resp)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
	    &sagawire__response__descriptor, (unsigned)resp->body_case);
	if (f == NULL)
		return NULL;
	return *(const ProtobufCMessage *const *)((const char *)resp + f->offset);
}

static const char *const role_names[] = { "none", "participant", "client", "operator", "admin" };

static void
reply_whoami(hreq *h, int role)
{
	jb j = { 0 };
	bool on = auth_enabled();
	/* With auth off anyone who reaches the listener may do anything. */
	int eff = on ? role : AUTH_ADMIN;
	jb_printf(&j, "{\"auth\":%s,\"role\":\"%s\",\"actions\":[", on ? "true" : "false",
	    role_names[eff >= 0 && eff <= AUTH_ADMIN ? eff : 0]);
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		jb_printf(&j, "%s{\"name\":\"%s\",\"needsStep\":%s,\"allowed\":%s}", i ? "," : "",
		    actions[i].name, actions[i].needs_step ? "true" : "false",
		    eff >= AUTH_OPERATOR ? "true" : "false");
	jb_printf(&j, "],\"reveal\":%s}", eff >= AUTH_ADMIN ? "true" : "false");
	finish_json(h->aio, 200, &j);
}

/* One payload: JSON of its type, "[redacted]" when wholly removed, or an
 * object naming why it cannot be shown. */
static void
jb_payload(
    jb *j, const pbjson *p, const char *type, ProtobufCBinaryData d, char **red, size_t n_red)
{
	char *out = NULL, err[256];
	if (n_red == 1 && strcmp(red[0], "*") == 0) {
		jb_s(j, "\"[redacted]\"");
		return;
	}
	if (p == NULL || type == NULL || type[0] == '\0') {
		jb_s(j, "{\"@error\":\"no descriptor set to decode it with\"}");
		return;
	}
	if (pbjson_to_json_redacted(p, type, d.data, d.len, 0, (const char *const *)red, n_red,
		&out, err, sizeof(err)) != 0) {
		jb_s(j, "{\"@error\":");
		jb_str(j, err);
		jb_s(j, "}");
		return;
	}
	jb_s(j, out);
	free(out);
}

/* The saga (h->saga) and its payloads decoded with the describe answer d
 * (NULL: not available; why says why). */
static void
reply_saga(hreq *h, const Sagawire__DescribeResponse *d, const char *why)
{
	const Sagawire__SagaInfo *s = h->saga->get->saga;
	const Sagawire__DefinitionInfo *def = NULL;
	pbjson *p = NULL;
	char err[256] = "";
	jb j = { 0 };

	if (d != NULL) {
		for (size_t i = 0; i < d->n_definitions; i++)
			if (d->definitions[i]->version == s->version)
				def = d->definitions[i];
		if (pbjson_new(
			d->descriptor_set.data, d->descriptor_set.len, &p, err, sizeof(err)) != 0)
			why = err;
	}
	jb_s(&j, "{\"saga\":");
	jb_message(&j, &s->base);
	jb_s(&j, ",\"input\":");
	if (p != NULL && def != NULL)
		jb_payload(&j, p, def->input_type, s->input, s->redacted, s->n_redacted);
	else
		jb_s(&j, "null");
	jb_s(&j, ",\"results\":{");
	for (size_t i = 0, n = 0; i < s->n_steps; i++) {
		const Sagawire__StepInfo *st = s->steps[i];
		const char *type = NULL;
		if (st->result.len == 0 && st->n_redacted == 0)
			continue;
		for (size_t k = 0; def != NULL && k < def->n_steps; k++)
			if (strcmp(def->steps[k]->name, st->name) == 0)
				type = def->steps[k]->output_type;
		jb_s(&j, n++ ? "," : "");
		jb_str(&j, st->name);
		jb_s(&j, ":");
		if (p != NULL)
			jb_payload(&j, p, type, st->result, st->redacted, st->n_redacted);
		else
			jb_s(&j, "null");
	}
	jb_s(&j, "}");
	if (p == NULL || def == NULL) {
		jb_s(&j, ",\"payloadError\":");
		jb_str(&j, why ? why : "the definition's version was not found");
	}
	jb_s(&j, "}");
	pbjson_free(p);
	finish_json(h->aio, 200, &j);
}

/* K_GET, its saga read: asks for its definition version's descriptor set. */
static void
send_describe(void *arg)
{
	hreq *h = arg;
	const Sagawire__SagaInfo *s = h->saga->get->saga;
	Sagawire__DescribeRequest dq = SAGAWIRE__DESCRIBE_REQUEST__INIT;
	dq.definition = s->definition;
	dq.version = s->version;
	Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
	q.body_case = SAGAWIRE__REQUEST__BODY_DESCRIBE;
	q.describe = &dq;
	submit(h, &q);
}

static void
on_reply(rpc_req *r, nng_msg *m)
{
	hreq *h = (hreq *)r;
	int role = r->auth.role, err = 0;
	Sagawire__Response *resp = NULL;
	if (m == NULL) {
		finish_error(h->aio, SAGA_ENOMEM, "sagad could not build the reply");
		hreq_free(h);
		return;
	}
	resp = wire_unpack_response(nng_msg_body(m), nng_msg_len(m), &err);
	nng_msg_free(m);
	if (resp == NULL) {
		finish_error(h->aio, err ? err : SAGA_EPROTO, "sagad's reply could not be read");
		hreq_free(h);
		return;
	}
	if (resp->error != NULL && h->k != K_GET_DESCRIBE) {
		finish_error(h->aio, (int)resp->error->code, "%s",
		    resp->error->message ? resp->error->message : "");
		wire_free(&resp->base);
		hreq_free(h);
		return;
	}
	switch (h->k) {
	case K_WHOAMI:
		reply_whoami(h, role);
		break;
	case K_GET: {
		/* Then the descriptor set of its definition's version. */
		const Sagawire__SagaInfo *s = resp->get ? resp->get->saga : NULL;
		if (s == NULL) {
			finish_error(h->aio, SAGA_EPROTO, "sagad's get reply holds no saga");
			break;
		}
		/* Not from here: the thread that replied may still be inside
		 * rpc_reply with this request in hand. */
		h->saga = resp;
		h->k = K_GET_DESCRIBE;
		if (h->next == NULL && nng_aio_alloc(&h->next, send_describe, h) != 0) {
			finish_error(h->aio, SAGA_ENOMEM, "out of memory");
			hreq_free(h); /* frees resp too */
			return;
		}
		nng_sleep_aio(0, h->next);
		return;
	}
	case K_GET_DESCRIBE:
		reply_saga(h, resp->error == NULL ? resp->describe : NULL,
		    resp->error != NULL && resp->error->message ? resp->error->message : NULL);
		break;
	case K_DEFINITIONS:
		if (resp->describe != NULL) {
			/* The descriptor set is for decoding; the UI wants the steps. */
			resp->describe->descriptor_set.len = 0;
		}
		/* fallthrough */
	default: {
		const ProtobufCMessage *b = body_of(resp);
		jb j = { 0 };
		if (b == NULL)
			jb_s(&j, "{}");
		else
			jb_message(&j, b);
		finish_json(h->aio, 200, &j);
		break;
	}
	}
	wire_free(&resp->base);
	hreq_free(h);
}

/* ---- parsing the HTTP request ---------------------------------------------- */

typedef struct params {
	char key[MAX_PARAMS][32];
	char val[MAX_PARAMS][MAX_PARAM_LEN];
	int n;
} params;

static int
hexv(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into out (cap bytes with the NUL); -1 if it does
 * not fit, holds a bad escape or a NUL. */
static int
pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '+')
			c = ' ';
		else if (c == '%') {
			if (i + 2 >= n)
				return -1;
			int a = hexv(s[i + 1]), b = hexv(s[i + 2]);
			if (a < 0 || b < 0)
				return -1;
			c = a * 16 + b;
			i += 2;
		}
		if (c == 0 || o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static int
parse_query(const char *q, params *p, char *err, size_t errlen)
{
	p->n = 0;
	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
		const char *eq = memchr(q, '=', (size_t)(end - q));
		if (end > q) {
			if (p->n == MAX_PARAMS) {
				snprintf(err, errlen, "more than %d query parameters", MAX_PARAMS);
				return -1;
			}
			const char *ke = eq ? eq : end;
			if (pct_decode(q, (size_t)(ke - q), p->key[p->n], sizeof(p->key[0])) != 0 ||
			    pct_decode(eq ? eq + 1 : end, eq ? (size_t)(end - eq - 1) : 0,
				p->val[p->n], sizeof(p->val[0])) != 0 ||
			    !cm_utf8_valid(p->val[p->n], strlen(p->val[p->n]))) {
				snprintf(err, errlen,
				    "query parameter %d: bad escape, NUL, invalid UTF-8, or longer "
				    "than %d bytes",
				    p->n + 1, MAX_PARAM_LEN - 1);
				return -1;
			}
			p->n++;
		}
		q = amp ? amp + 1 : end;
	}
	return 0;
}

static const char *
param(const params *p, const char *key)
{
	for (int i = 0; i < p->n; i++)
		if (strcmp(p->key[i], key) == 0)
			return p->val[i];
	return NULL;
}

static bool
param_true(const params *p, const char *key)
{
	const char *v = param(p, key);
	return v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

/* An unsigned decimal of at most max, or -1. */
static long long
parse_num(const char *s, long long max)
{
	long long v = 0;
	if (s == NULL || *s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	return v;
}

bool
hapi_host_is_loopback(const char *host)
{
	char h[256];
	if (host == NULL)
		return false;
	size_t n = strlen(host);
	if (n == 0 || n >= sizeof(h))
		return false;
	memcpy(h, host, n + 1);
	char *name = h;
	if (h[0] == '[') {
		char *e = strchr(h, ']');
		if (e == NULL || (e[1] != '\0' && e[1] != ':'))
			return false;
		*e = '\0';
		name = h + 1;
		return strcmp(name, "::1") == 0;
	}
	char *colon = strchr(h, ':');
	if (colon != NULL) {
		if (parse_num(colon + 1, 65535) < 0)
			return false;
		*colon = '\0';
	}
	if (strcasecmp(name, "localhost") == 0)
		return true;
	struct in_addr a;
	return inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* The credential of "Authorization: Bearer <credential>", or "" when the
 * header is absent; NULL when the header is there but not of that form. */
static char *
bearer(nng_http_req *req)
{
	const char *a = nng_http_req_get_header(req, "Authorization");
	if (a == NULL)
		return strdup("");
	if (strncasecmp(a, "Bearer ", 7) != 0)
		return NULL;
	a += 7;
	while (*a == ' ')
		a++;
	size_t n = strlen(a);
	while (n > 0 && a[n - 1] == ' ')
		n--;
	if (n > MAX_CREDENTIAL)
		return NULL;
	return strndup(a, n);
}

/* ---- the API's routes --------------------------------------------------------- */

static void
api_list(hreq *h, const params *p)
{
	Sagawire__ListRequest lq = SAGAWIRE__LIST_REQUEST__INIT;
	Sagawire__SagaState states[MAX_STATES];
	char sbuf[MAX_PARAM_LEN];
	const char *v;
	long long n;

	if ((v = param(p, "state")) != NULL && *v) {
		snprintf(sbuf, sizeof(sbuf), "%s", v);
		char *save = NULL;
		for (char *t = strtok_r(sbuf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			int st = strcmp(t, "parked") == 0 ? SAGAWIRE__SAGA_STATE__SAGA_FAILED
							  : cm_saga_state_parse(t);
			if (st == 0 || lq.n_states == MAX_STATES) {
				nng_aio *aio = h->aio;
				hreq_free(h);
				finish_error(aio, SAGA_EINVAL,
				    "state: '%.64s' is not running, compensating, completed, "
				    "compensated, failed or parked (at most %d, comma-separated)",
				    t, MAX_STATES);
				return;
			}
			states[lq.n_states++] = (Sagawire__SagaState)st;
		}
		lq.states = states;
	}
	lq.definition = (char *)((v = param(p, "definition")) ? v : "");
	lq.business_key = (char *)((v = param(p, "business_key")) ? v : "");
	lq.participant = (char *)((v = param(p, "participant")) ? v : "");
	lq.error_contains = (char *)((v = param(p, "error")) ? v : "");
	lq.page_token = (char *)((v = param(p, "page_token")) ? v : "");
	lq.counts = param_true(p, "counts");
	lq.counts_limit = COUNTS_LIMIT;
	static const struct {
		const char *key;
		long long max;
	} nums[] = { { "version", 0xffffffffLL }, { "limit", 1000 },
		{ "counts_limit", 1000000000LL }, { "created_after_us", 253402300799000000LL },
		{ "created_before_us", 253402300799000000LL } };
	long long got[5] = { 0 };
	for (size_t i = 0; i < 5; i++) {
		if ((v = param(p, nums[i].key)) == NULL || *v == '\0')
			continue;
		if ((n = parse_num(v, nums[i].max)) < 0) {
			nng_aio *aio = h->aio;
			hreq_free(h);
			finish_error(aio, SAGA_EINVAL, "%s: '%.64s' is not a number from 0 to %lld",
			    nums[i].key, v, nums[i].max);
			return;
		}
		got[i] = n;
	}
	lq.version = (uint32_t)got[0];
	lq.limit = (uint32_t)got[1];
	if (param(p, "counts_limit") != NULL)
		lq.counts_limit = (uint32_t)got[2];
	lq.created_after_us = got[3];
	lq.created_before_us = got[4];
	Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
	q.body_case = SAGAWIRE__REQUEST__BODY_LIST;
	q.list = &lq;
	h->k = K_LIST;
	submit(h, &q);
}

static void
api_action(hreq *h, const char *id, nng_http_req *req)
{
	void *body = NULL;
	size_t len = 0;
	uint8_t *bin = NULL;
	size_t blen = 0;
	char err[512];
	const char *ct = nng_http_req_get_header(req, "Content-Type");
	nng_aio *aio = h->aio;

	/* CSRF: a form or an image on another site cannot set this header
	 * nor send JSON without asking first (CORS preflight, which sagad
	 * never grants). */
	if (nng_http_req_get_header(req, "X-Sagad-Request") == NULL || ct == NULL ||
	    strncasecmp(ct, "application/json", 16) != 0) {
		hreq_free(h);
		finish_error(aio, SAGA_EPERM,
		    "actions need the header X-Sagad-Request and a JSON body (Content-Type: "
		    "application/json): docs/HTTP-API.md");
		return;
	}
	nng_http_req_get_data(req, &body, &len);
	if (pbjson_from_json(H.schema, "sagawire.HttpAction", body ? body : "", len, &bin, &blen,
		err, sizeof(err)) != 0) {
		hreq_free(h);
		finish_error(aio, SAGA_EINVAL, "action body: %s", err);
		return;
	}
	int e = 0;
	Sagawire__HttpAction *a = (Sagawire__HttpAction *)wire_unpack(
	    &sagawire__http_action__descriptor, bin ? bin : (const uint8_t *)"", blen, 0, &e);
	free(bin);
	if (a == NULL) {
		hreq_free(h);
		finish_error(aio, e ? e : SAGA_EINVAL, "action body: not a valid action");
		return;
	}
	const action *act = NULL;
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (strcmp(actions[i].name, a->action) == 0)
			act = &actions[i];
	if (act == NULL || a->reason[0] == '\0' || (act->needs_step && a->step[0] == '\0')) {
		hreq_free(h);
		finish_error(aio, SAGA_EINVAL,
		    act == NULL
			? "action: '%.64s' is none of cancel, retry, skip, terminate, "
			  "force_succeeded, force_compensated, rerun"
			: "action %.64s: a reason is required (and a step for retry, skip and "
			  "force_*)",
		    a->action);
		wire_free(&a->base);
		return;
	}
	Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
	action_bodies bodies;
	act->build(act, &q, &bodies, id, a);
	h->k = K_ACTION;
	submit(h, &q);
	wire_free(&a->base);
}

static void
api_cb(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	const char *method = nng_http_req_get_method(req);
	const char *uri = nng_http_req_get_uri(req);
	char path[512], err[256];
	params *p = NULL;
	hreq *h = NULL;

	if (!H.on) {
		finish_error(aio, SAGA_EPERM, "%s", H.why_off);
		return;
	}
	if (H.check_host && !hapi_host_is_loopback(nng_http_req_get_header(req, "Host"))) {
		finish_error(aio, SAGA_EPERM,
		    "with auth off the API answers only requests addressed to a loopback name "
		    "(Host: localhost or 127.0.0.1), against DNS rebinding");
		return;
	}
	const char *qm = strchr(uri, '?');
	size_t plen = qm ? (size_t)(qm - uri) : strlen(uri);
	if (plen >= sizeof(path) || pct_decode(uri, plen, path, sizeof(path)) != 0) {
		finish_error(aio, SAGA_EINVAL, "bad path");
		return;
	}
	if ((p = malloc(sizeof(*p))) == NULL || (h = calloc(1, sizeof(*h))) == NULL) {
		free(p);
		finish_error(aio, SAGA_ENOMEM, "out of memory");
		return;
	}
	if (parse_query(qm ? qm + 1 : NULL, p, err, sizeof(err)) != 0) {
		free(p), free(h);
		finish_error(aio, SAGA_EINVAL, "%s", err);
		return;
	}
	if (atomic_fetch_add(&H.in_flight, 1) >= MAX_IN_FLIGHT) {
		atomic_fetch_sub(&H.in_flight, 1);
		free(p), free(h);
		finish_error(aio, SAGA_EBUSY, "too many API requests at once; try again");
		return;
	}
	h->aio = aio;
	if ((h->cred = bearer(req)) == NULL) {
		hreq_free(h);
		free(p);
		finish_error(aio, SAGA_EAUTH,
		    "not authenticated: the Authorization header must be \"Bearer <credential>\"");
		return;
	}
	const char *rest = path + strlen("/api/v1");
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	Sagawire__Request q = SAGAWIRE__REQUEST__INIT;
	char id[64] = "";
	size_t idn = 0;
	if (strncmp(rest, "/sagas/", 7) == 0) {
		const char *s = rest + 7, *sl = strchr(s, '/');
		idn = sl ? (size_t)(sl - s) : strlen(s);
		if (idn == 0 || idn >= sizeof(id))
			idn = 0;
		else
			memcpy(id, s, idn), id[idn] = '\0';
	}
	if (get && strcmp(rest, "/sagas") == 0) {
		api_list(h, p);
	} else if (get && idn > 0 && rest[7 + idn] == '\0') {
		Sagawire__GetRequest gq = SAGAWIRE__GET_REQUEST__INIT;
		gq.saga_id = id;
		gq.reveal = param_true(p, "reveal");
		q.body_case = SAGAWIRE__REQUEST__BODY_GET;
		q.get = &gq;
		h->k = K_GET;
		submit(h, &q);
	} else if (post && idn > 0 && strcmp(rest + 7 + idn, "/actions") == 0) {
		api_action(h, id, req);
	} else if (get && strcmp(rest, "/participants") == 0) {
		Sagawire__ParticipantsRequest pq = SAGAWIRE__PARTICIPANTS_REQUEST__INIT;
		q.body_case = SAGAWIRE__REQUEST__BODY_PARTICIPANTS;
		q.participants = &pq;
		h->k = K_PARTICIPANTS;
		submit(h, &q);
	} else if (get && strcmp(rest, "/whoami") == 0) {
		/* The cheapest request a client may send: its check tells the role. */
		Sagawire__ParticipantsRequest pq = SAGAWIRE__PARTICIPANTS_REQUEST__INIT;
		q.body_case = SAGAWIRE__REQUEST__BODY_PARTICIPANTS;
		q.participants = &pq;
		h->k = K_WHOAMI;
		submit(h, &q);
	} else if (get &&
	    (strcmp(rest, "/definitions") == 0 || strncmp(rest, "/definitions/", 13) == 0)) {
		Sagawire__DescribeRequest dq = SAGAWIRE__DESCRIBE_REQUEST__INIT;
		dq.definition = (char *)(rest[12] == '/' ? rest + 13 : "");
		q.body_case = SAGAWIRE__REQUEST__BODY_DESCRIBE;
		q.describe = &dq;
		h->k = K_DEFINITIONS;
		submit(h, &q);
	} else {
		hreq_free(h);
		finish_error(aio, SAGA_ENOTFOUND, "no such API call: %s %.200s (docs/HTTP-API.md)",
		    method, path);
	}
	free(p);
}

/* ---- the UI's files ---------------------------------------------------------- */

static const char *
content_type(const char *name)
{
	static const char *const types[][2] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
	};
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i][0]) == 0)
			return types[i][1];
	return "application/octet-stream";
}

static void
ui_cb(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	const char *uri = nng_http_req_get_uri(req);
	char name[256];
	size_t n = strcspn(uri, "?#");
	if (!H.on) {
		finish(aio, 403, "text/plain; charset=utf-8", H.why_off, strlen(H.why_off));
		return;
	}
	if (n >= sizeof(name)) {
		finish(aio, 404, "text/plain", "not found\n", 10);
		return;
	}
	memcpy(name, uri, n);
	name[n] = '\0';
	if (strcmp(name, "/ui") == 0 || strcmp(name, "/ui/") == 0)
		snprintf(name, sizeof(name), "/ui/index.html");
	for (size_t i = 0; i < ui_assets_n; i++) {
		if (strcmp(ui_assets[i].name, name) != 0)
			continue;
		nng_http_res *res;
		if (nng_http_res_alloc(&res) != 0) {
			nng_aio_finish(aio, NNG_ENOMEM);
			return;
		}
		nng_http_res_set_status(res, 200);
		nng_http_res_set_header(res, "Content-Type", content_type(name));
		nng_http_res_set_header(res, "Content-Security-Policy",
		    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
		    "data:; "
		    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors "
		    "'none'");
		nng_http_res_set_header(res, "X-Content-Type-Options", "nosniff");
		nng_http_res_set_header(res, "X-Frame-Options", "DENY");
		nng_http_res_set_header(res, "Referrer-Policy", "no-referrer");
		nng_http_res_set_header(res, "Cache-Control", "no-cache");
		/* The assets live as long as the program: no copy. */
		nng_http_res_set_data(res, ui_assets[i].data, ui_assets[i].len);
		nng_aio_set_output(aio, 0, res);
		nng_aio_finish(aio, 0);
		return;
	}
	finish(aio, 404, "text/plain", "not found\n", 10);
}

/* ---- start and stop -------------------------------------------------------------- */

int
hapi_add(nng_http_server *server, const cfg *c, const char *url, char *err, size_t errlen)
{
	int rv;
	nng_http_handler *h;
	char perr[256];

	if (wire_schema_n != 1 ||
	    pbjson_new(wire_schema[0].data, wire_schema[0].len, &H.schema, perr, sizeof(perr)) !=
		0) {
		snprintf(err, errlen, "the built-in wire schema cannot be read: %s", perr);
		return NNG_EINVAL;
	}
	H.on = auth_enabled() || auth_url_is_local(url) || c->insecure;
	H.check_host = !auth_enabled() && auth_url_is_local(url);
	if (!H.on) {
		snprintf(H.why_off, sizeof(H.why_off),
		    "the web UI and /api/v1 are off: --http-listen %.80s is not loopback and auth "
		    "is off (set --auth on, or --insecure for a lab; docs/HTTP-API.md)",
		    url);
		slog_warn("http: %s", H.why_off);
	}
	struct {
		const char *path;
		void (*fn)(nng_aio *);
		const char *method;
		size_t body;
	} tree[] = { { "/api/v1", api_cb, NULL, MAX_BODY }, { "/ui", ui_cb, "GET", 0 } };
	for (size_t i = 0; i < sizeof(tree) / sizeof(tree[0]); i++) {
		if ((rv = nng_http_handler_alloc(&h, tree[i].path, tree[i].fn)) != 0)
			goto fail;
		nng_http_handler_set_method(h, tree[i].method);
		nng_http_handler_set_tree(h);
		nng_http_handler_collect_body(h, true, tree[i].body);
		if ((rv = nng_http_server_add_handler(server, h)) != 0) {
			nng_http_handler_free(h);
			goto fail;
		}
	}
	if ((rv = nng_http_handler_alloc_redirect(&h, "/", 302, "/ui/")) != 0)
		goto fail;
	if ((rv = nng_http_server_add_handler(server, h)) != 0) {
		nng_http_handler_free(h);
		goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "the web UI's handlers: %s", nng_strerror(rv));
	return rv;
}

void
hapi_drain(void)
{
	/* The router refuses new work once shutdown has begun: what is in
	 * flight ends soon. */
	for (int i = 0; i < 500 && atomic_load(&H.in_flight) > 0; i++)
		nng_msleep(10);
}

void
hapi_stop(void)
{
	/* A request still in flight (a reader stuck on the database) keeps
	 * the schema: it is left to the process's end. */
	if (atomic_load(&H.in_flight) == 0) {
		pbjson_free(H.schema);
		H.schema = NULL;
	}
}
