/*
 * defn: saga definitions. See defn.h.
 *
 * The input is untrusted (it arrives over RPC from sagactl): every size and
 * count is bounded by the input length, decoding goes through wire_unpack()
 * (depth and allocation quota), and no loop is worse than
 * O(n * DEFN_MAX_STEPS) or O(n log n) in the number of rpcs or services.
 */
#include "defn.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descriptor.pb-c.h"
#include "sagaspec.pb-c.h"
#include "saga_base.h"
#include "utf8.h"
#include "varint.h"
#include "wire.h"

/* Extension numbers of the options in proto/sagaspec.proto. */
#define OPT_STEP      50700u
#define OPT_SAGA      50701u
#define OPT_SENSITIVE 50702u /* on FieldOptions */

/* Longest step or participant name; longest type or saga name. */
#define NAME_MAX_LEN 128
#define TYPE_MAX_LEN 512

typedef Google__Protobuf__FileDescriptorSet fdset;
typedef Google__Protobuf__FileDescriptorProto fdproto;
typedef Google__Protobuf__DescriptorProto msgproto;
typedef Google__Protobuf__ServiceDescriptorProto svcproto;
typedef Google__Protobuf__MethodDescriptorProto mthproto;

typedef struct msgref msgref;

typedef struct pctx {
	char *err;
	size_t errlen;
	const char *saga; /* name of the saga being compiled, for messages */
	msgref *idx;      /* top-level messages, see build_msg_index() */
	size_t n_idx;
} pctx;

/* Writes the message and returns rv. Names in messages come from the input,
 * so they are printed with a bounded precision and anything that is not
 * printable ASCII is replaced: the text goes into logs and into a protobuf
 * string field that must stay valid UTF-8. */
static int pfail(pctx *c, int rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
pfail(pctx *c, int rv, const char *fmt, ...)
{
	if (c->err == NULL || c->errlen == 0)
		return rv;
	size_t off = 0;
	if (c->saga != NULL) {
		int n = snprintf(c->err, c->errlen, "saga %.200s: ", c->saga);
		off = n < 0 ? 0 : (size_t)n;
		if (off >= c->errlen)
			off = c->errlen - 1;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err + off, c->errlen - off, fmt, ap);
	va_end(ap);
	for (char *p = c->err; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch < 0x20 || ch >= 0x7f)
			*p = '?';
	}
	return rv;
}

/* ---- small helpers ----------------------------------------------------- */

static char *
xstrdup(const char *s)
{
	size_t n = strlen(s);
	char *p = malloc(n + 1);
	if (p != NULL)
		memcpy(p, s, n + 1);
	return p;
}

static const char *
nz(const char *s)
{
	return s != NULL ? s : "";
}

static const char *
strip_dot(const char *s)
{
	return (s != NULL && s[0] == '.') ? s + 1 : nz(s);
}

/* Step, rpc and participant names: [A-Za-z0-9_.-]{1,128}. They end up in
 * log lines, metric labels and SQL parameters, so keep them plain. */
static bool
name_ok(const char *s)
{
	size_t n = 0;
	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		char ch = s[n];
		if (n >= NAME_MAX_LEN)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			(ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
			return false;
	}
	return n > 0;
}

/* Full protobuf names (no leading dot): identifiers joined by single dots. */
static bool
type_name_ok(const char *s)
{
	size_t n = 0;
	bool start = true;
	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		char ch = s[n];
		if (n >= TYPE_MAX_LEN)
			return false;
		if (ch == '.') {
			if (start)
				return false;
			start = true;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
			(!start && ch >= '0' && ch <= '9')))
			return false;
		start = false;
	}
	return n > 0 && !start;
}

static bool
streq(const char *a, const char *b)
{
	return strcmp(nz(a), nz(b)) == 0;
}

/*
 * Message lookup. Types are looked up a few times per saga, but a hostile
 * set can hold very many sagas and messages, so a linear scan per lookup
 * would be quadratic. Instead the top-level messages of all files go into
 * one array sorted by (package, name), and every message's nested types are
 * sorted by name in place (the unpacked set is ours; nothing else depends
 * on declaration order of messages). A full name is then resolved with a
 * binary search per name component. Full names are never built: with long
 * names and deep nesting they could take far more memory than the input.
 */
typedef struct msgref {
	const char *pkg;
	const msgproto *m;
} msgref;

static int
cmp_msgref(const void *a, const void *b)
{
	const msgref *x = a, *y = b;
	int r = strcmp(x->pkg, y->pkg);
	return r != 0 ? r : strcmp(nz(x->m->name), nz(y->m->name));
}

static int
cmp_msgproto(const void *a, const void *b)
{
	return strcmp(nz((*(msgproto *const *)a)->name), nz((*(msgproto *const *)b)->name));
}

/* Recursion is bounded: wire_check() refused sets nested deeper than
 * WIRE_MAX_DEPTH. */
static void
sort_nested(msgproto *m)
{
	if (m->n_nested_type > 1)
		qsort(m->nested_type, m->n_nested_type, sizeof(*m->nested_type), cmp_msgproto);
	for (size_t i = 0; i < m->n_nested_type; i++)
		sort_nested(m->nested_type[i]);
}

static int
build_msg_index(pctx *c, fdset *set)
{
	size_t n = 0;
	for (size_t f = 0; f < set->n_file; f++)
		n += set->file[f]->n_message_type;
	if (n == 0)
		return 0;
	if ((c->idx = calloc(n, sizeof(*c->idx))) == NULL)
		return pfail(c, SAGA_ENOMEM, "out of memory");
	for (size_t f = 0; f < set->n_file; f++) {
		fdproto *fp = set->file[f];
		for (size_t i = 0; i < fp->n_message_type; i++) {
			c->idx[c->n_idx].pkg = nz(fp->package);
			c->idx[c->n_idx++].m = fp->message_type[i];
			sort_nested(fp->message_type[i]);
		}
	}
	qsort(c->idx, c->n_idx, sizeof(*c->idx), cmp_msgref);
	return 0;
}

/* strcmp() of the first kn bytes of k (no NUL among them) against s. */
static int
cmp_counted(const char *k, size_t kn, const char *s)
{
	int r = strncmp(k, s, kn);
	if (r != 0)
		return r;
	return s[kn] == '\0' ? 0 : -1;
}

static const msgproto *
find_nested(const msgproto *parent, const char *k, size_t kn)
{
	size_t lo = 0, hi = parent->n_nested_type;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = cmp_counted(k, kn, nz(parent->nested_type[mid]->name));
		if (r == 0)
			return parent->nested_type[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Is `full` (a valid type name, no leading dot) a message in the set? Any
 * dot may separate package from message ("a.b.C" is message C of package
 * a.b, or message b.C of package a), so each is tried. */
static const msgproto *
find_message(const pctx *c, const char *full)
{
	size_t fl = strlen(full);
	for (size_t b = 0; b < fl; b++) {
		if (b != 0 && full[b] != '.')
			continue;
		const char *rest = b ? full + b + 1 : full;
		const char *dot = strchr(rest, '.');
		size_t cl = dot ? (size_t)(dot - rest) : strlen(rest);
		const msgproto *hit = NULL;
		size_t lo = 0, hi = c->n_idx;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int r = cmp_counted(full, b, c->idx[mid].pkg);
			if (r == 0)
				r = cmp_counted(rest, cl, nz(c->idx[mid].m->name));
			if (r == 0) {
				hit = c->idx[mid].m;
				break;
			}
			if (r < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
		while (hit != NULL && dot != NULL) {
			rest = dot + 1;
			dot = strchr(rest, '.');
			cl = dot ? (size_t)(dot - rest) : strlen(rest);
			hit = find_nested(hit, rest, cl);
		}
		if (hit != NULL)
			return hit;
	}
	return NULL;
}

static bool
message_exists(const pctx *c, const char *full)
{
	return find_message(c, full) != NULL;
}

/*
 * Finds the option with extension number `tag` among a message's unknown
 * fields and unpacks it as `desc`. *out stays NULL if absent. protobuf-c
 * 1.4.1 keeps a length-delimited unknown field's varint length prefix in
 * its data (shared/STACK-NOTES.md), so that prefix is skipped and checked.
 */
static int
unpack_option(pctx *c, const ProtobufCMessage *opts, uint32_t tag,
    const ProtobufCMessageDescriptor *desc, const char *what, const char *where,
    ProtobufCMessage **out)
{
	const ProtobufCMessageUnknownField *uf = NULL;
	*out = NULL;
	if (opts == NULL)
		return 0;
	for (unsigned i = 0; i < opts->n_unknown_fields; i++) {
		if (opts->unknown_fields[i].tag != tag)
			continue;
		/* protoc emits one field per option; several would have to be
		 * merged field by field, which nobody needs. */
		if (uf != NULL)
			return pfail(
			    c, SAGA_EDEFINITION, "%soption %s appears more than once", where, what);
		uf = &opts->unknown_fields[i];
	}
	if (uf == NULL)
		return 0;
	if (uf->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
		return pfail(c, SAGA_EDEFINITION, "%soption %s is not a message", where, what);

	uint64_t v = 0;
	size_t pos = 0;
	if (cm_varint_read(uf->data, uf->len, &pos, &v) != 0)
		return pfail(c, SAGA_EDEFINITION, "%smalformed option %s", where, what);
	if (v != uf->len - pos)
		return pfail(c, SAGA_EDEFINITION, "%smalformed option %s (length %llu, %zu bytes)",
		    where, what, (unsigned long long)v, uf->len - pos);

	int rv = 0;
	ProtobufCMessage *m = wire_unpack(desc, uf->data + pos, uf->len - pos, 0, &rv);
	if (m == NULL)
		return pfail(c, SAGA_EDEFINITION, "%smalformed option %s", where, what);
	*out = m;
	return 0;
}

static bool
has_option(const ProtobufCMessage *opts, uint32_t tag)
{
	if (opts == NULL)
		return false;
	for (unsigned i = 0; i < opts->n_unknown_fields; i++)
		if (opts->unknown_fields[i].tag == tag)
			return true;
	return false;
}

/* ---- fingerprint ------------------------------------------------------- */

/* FNV-1a over a canonical encoding: fixed-width little-endian integers and
 * length-prefixed strings, so no two different definitions encode alike.
 * It covers the compiled values (defaults applied), so spelling a default
 * out does not change the fingerprint; anything that changes behaviour
 * does. The leading tag versions the encoding. */
typedef struct fnv {
	uint64_t h;
} fnv;

static void
fnv_bytes(fnv *f, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		f->h ^= b[i];
		f->h *= 0x100000001b3ull;
	}
}

static void
fnv_u64(fnv *f, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	fnv_bytes(f, b, 8);
}

static void
fnv_str(fnv *f, const char *s)
{
	/* NULL and "" differ: a missing compensation is not an empty name. */
	if (s == NULL) {
		fnv_u64(f, UINT64_MAX);
		return;
	}
	size_t n = strlen(s);
	fnv_u64(f, n);
	fnv_bytes(f, s, n);
}

static void
fnv_double(fnv *f, double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	fnv_u64(f, u);
}

static void
fnv_retry(fnv *f, const defn_retry *r)
{
	fnv_u64(f, r->max_attempts);
	fnv_u64(f, r->initial_backoff_ms);
	fnv_u64(f, r->max_backoff_ms);
	fnv_double(f, r->multiplier);
	fnv_double(f, r->jitter);
}

static uint64_t
fingerprint(const defn_saga *d)
{
	fnv f = { 0xcbf29ce484222325ull };
	fnv_str(&f, "sagad-defn-v1");
	fnv_str(&f, d->name);
	fnv_str(&f, d->input_type);
	fnv_str(&f, d->description);
	/* Only when set: definitions registered before the option existed
	 * keep their fingerprint. */
	if (d->deadline_ms)
		fnv_u64(&f, 0xdead0000ull | d->deadline_ms);
	if (d->business_key != NULL)
		fnv_str(&f, d->business_key);
	fnv_u64(&f, d->n_steps);
	for (uint32_t i = 0; i < d->n_steps; i++) {
		const defn_step *s = &d->steps[i];
		fnv_str(&f, s->name);
		fnv_str(&f, s->participant);
		fnv_str(&f, s->compensation);
		fnv_str(&f, s->input_type);
		fnv_str(&f, s->output_type);
		fnv_u64(&f, s->timeout_ms);
		fnv_u64(&f, s->comp_timeout_ms);
		if (s->hb_timeout_ms) /* only when set: older fingerprints hold */
			fnv_u64(&f, 0xbea70000ull | s->hb_timeout_ms);
		fnv_retry(&f, &s->retry);
		fnv_retry(&f, &s->comp_retry);
		fnv_u64(&f, s->dep_mask);
	}
	/* Only when some field is sensitive: making a field sensitive makes a
	 * new version (the old one's stored descriptor set lacks the option). */
	if (d->n_plans > 0) {
		fnv_u64(&f, 0x5e45ull << 32 | d->n_plans);
		fnv_u64(&f, d->input_redact ? (uint64_t)(d->input_redact - d->plans) + 1 : 0);
		for (uint32_t i = 0; i < d->n_steps; i++) {
			const defn_redact *r = d->steps[i].result_redact;
			fnv_u64(&f, r ? (uint64_t)(r - d->plans) + 1 : 0);
		}
		for (size_t i = 0; i < d->n_plans; i++) {
			fnv_u64(&f, d->plans[i].n);
			for (size_t j = 0; j < d->plans[i].n; j++) {
				const defn_rfield *x = &d->plans[i].f[j];
				fnv_u64(&f, x->number);
				fnv_u64(&f, x->sub ? (uint64_t)(x->sub - d->plans) + 1 : 0);
			}
		}
	}
	return f.h;
}

/* ---- compiling one service --------------------------------------------- */

void
defn_free(defn_saga *d)
{
	if (d == NULL)
		return;
	if (d->steps != NULL) {
		for (uint32_t i = 0; i < d->n_steps; i++) {
			defn_step *s = &d->steps[i];
			free(s->name);
			free(s->participant);
			free(s->compensation);
			free(s->input_type);
			free(s->output_type);
			free(s->deps);
		}
	}
	for (size_t i = 0; i < d->n_plans; i++) {
		for (size_t j = 0; j < d->plans[i].n; j++)
			free(d->plans[i].f[j].name);
		free(d->plans[i].f);
	}
	free(d->plans);
	free(d->steps);
	free(d->topo);
	free(d->name);
	free(d->input_type);
	free(d->description);
	free(d->business_key);
	free(d);
}

void
defn_free_array(defn_saga **defs, size_t n)
{
	if (defs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		defn_free(defs[i]);
	free(defs);
}

int
defn_step_index(const defn_saga *d, const char *name)
{
	if (d == NULL || name == NULL)
		return -1;
	for (uint32_t i = 0; i < d->n_steps; i++)
		if (strcmp(d->steps[i].name, name) == 0)
			return (int)i;
	return -1;
}

static bool
double_ok(double v)
{
	return isfinite(v);
}

/* Validates a retry option (r may be NULL: all defaults) and applies the
 * defaults of sagaspec.proto. */
static int
compile_retry(pctx *c, const char *step, const char *what, const Sagaspec__Retry *r,
    uint32_t def_attempts, defn_retry *out)
{
	out->max_attempts = def_attempts;
	out->initial_backoff_ms = DEFN_DEFAULT_INITIAL_BACKOFF_MS;
	out->max_backoff_ms = DEFN_DEFAULT_MAX_BACKOFF_MS;
	out->multiplier = DEFN_DEFAULT_MULTIPLIER;
	out->jitter = DEFN_DEFAULT_JITTER;
	if (r == NULL)
		return 0;
	if (r->base.n_unknown_fields > 0)
		return pfail(c, SAGA_EDEFINITION, "step %.128s: unknown %s option field %u", step,
		    what, r->base.unknown_fields[0].tag);
	if (!double_ok(r->multiplier) || !double_ok(r->jitter))
		return pfail(c, SAGA_EDEFINITION,
		    "step %.128s: %s multiplier and jitter must be finite numbers", step, what);
	if (r->jitter < 0 || r->jitter > 1)
		return pfail(c, SAGA_EDEFINITION, "step %.128s: %s jitter %g is outside [0, 1]",
		    step, what, r->jitter);
	if (r->multiplier != 0 && r->multiplier < 1)
		return pfail(c, SAGA_EDEFINITION, "step %.128s: %s multiplier %g is below 1", step,
		    what, r->multiplier);
	if (r->initial_backoff_ms != 0 && r->max_backoff_ms != 0 &&
	    r->max_backoff_ms < r->initial_backoff_ms)
		return pfail(c, SAGA_EDEFINITION,
		    "step %.128s: %s max_backoff_ms %u is below initial_backoff_ms %u", step, what,
		    r->max_backoff_ms, r->initial_backoff_ms);
	if (r->max_attempts != 0)
		out->max_attempts = r->max_attempts;
	if (r->multiplier != 0)
		out->multiplier = r->multiplier;
	if (r->jitter != 0)
		out->jitter = r->jitter;
	/* Only one bound given and it is on the wrong side of the other's
	 * default: honour the one the user wrote and keep max >= initial. */
	if (r->initial_backoff_ms != 0) {
		out->initial_backoff_ms = r->initial_backoff_ms;
		if (r->max_backoff_ms == 0 && out->max_backoff_ms < out->initial_backoff_ms)
			out->max_backoff_ms = out->initial_backoff_ms;
	}
	if (r->max_backoff_ms != 0) {
		out->max_backoff_ms = r->max_backoff_ms;
		if (r->initial_backoff_ms == 0 && out->initial_backoff_ms > out->max_backoff_ms)
			out->initial_backoff_ms = out->max_backoff_ms;
	}
	return 0;
}

/* Reports the steps of a cycle among the steps not yet placed in topological
 * order. Every such step has an unplaced dependency (or it would have been
 * placed), so following those from any of them must come back round. */
static int
report_cycle(pctx *c, const defn_saga *d, uint64_t unplaced)
{
	uint32_t at = (uint32_t)__builtin_ctzll(unplaced);
	uint64_t seen = 0;
	/* Walk until a step repeats: that one is on the cycle. */
	while ((seen & (1ull << at)) == 0) {
		seen |= 1ull << at;
		at = (uint32_t)__builtin_ctzll(d->steps[at].dep_mask & unplaced);
	}
	char buf[1024];
	size_t off = 0;
	uint32_t start = at;
	buf[0] = '\0';
	do {
		int n = snprintf(
		    buf + off, sizeof(buf) - off, "%s%.128s", off ? " -> " : "", d->steps[at].name);
		if (n < 0 || (size_t)n >= sizeof(buf) - off) {
			off = sizeof(buf) - 1;
			break;
		}
		off += (size_t)n;
		/* The same successor function as the walk above, so this
		 * goes round the cycle back to start ("A -> B": A depends on
		 * B). */
		at = (uint32_t)__builtin_ctzll(d->steps[at].dep_mask & unplaced);
	} while (at != start);
	if (off < sizeof(buf) - 1)
		snprintf(buf + off, sizeof(buf) - off, " -> %.128s", d->steps[start].name);
	return pfail(
	    c, SAGA_EDEFINITION, "dependency cycle: %s (each step depends on the next)", buf);
}

/* Kahn's algorithm, lowest index first so the order is deterministic. */
static int
compute_topo(pctx *c, defn_saga *d)
{
	uint64_t placed = 0, all;
	all = d->n_steps == 64 ? UINT64_MAX : (1ull << d->n_steps) - 1;
	for (uint32_t k = 0; k < d->n_steps; k++) {
		uint32_t pick = UINT32_MAX;
		for (uint32_t i = 0; i < d->n_steps; i++) {
			if ((placed & (1ull << i)) == 0 && (d->steps[i].dep_mask & ~placed) == 0) {
				pick = i;
				break;
			}
		}
		if (pick == UINT32_MAX)
			return report_cycle(c, d, all & ~placed);
		d->topo[k] = pick;
		placed |= 1ull << pick;
	}
	return 0;
}

static int
copy_str(pctx *c, char **dst, const char *src)
{
	if ((*dst = xstrdup(src)) == NULL)
		return pfail(c, SAGA_ENOMEM, "out of memory");
	return 0;
}

/* Counts the service's rpcs named `name`. */
static size_t
count_rpcs(const svcproto *svc, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < svc->n_method; i++)
		if (streq(svc->method[i]->name, name))
			n++;
	return n;
}

/* Index of the step whose rpc is named `name`, or -1. */
static int
find_step(const mthproto *const *mth, uint32_t n_steps, const char *name)
{
	for (uint32_t i = 0; i < n_steps; i++)
		if (strcmp(name, mth[i]->name) == 0)
			return (int)i;
	return -1;
}

static bool
type_ok(const pctx *c, const char *name)
{
	return type_name_ok(name) && message_exists(c, name);
}

#define NAME_RULE "names must match [A-Za-z0-9_.-]{1,128}"

/* Checks a step's compensation (comp != ""): a plain name, an rpc of the
 * service declared once, and not itself a step. */
static int
check_compensation(pctx *c, const svcproto *svc, const mthproto *const *mth, uint32_t n_steps,
    const char *step, const char *comp)
{
	if (!name_ok(comp))
		return pfail(c, SAGA_EDEFINITION, "step %s: compensation \"%.128s\": " NAME_RULE,
		    step, comp);
	size_t nc = count_rpcs(svc, comp);
	if (nc == 0)
		return pfail(
		    c, SAGA_EDEFINITION, "step %s: unknown compensation rpc %s", step, comp);
	if (find_step(mth, n_steps, comp) >= 0)
		return pfail(c, SAGA_EDEFINITION, "step %s: compensation rpc %s is itself a step",
		    step, comp);
	if (nc > 1)
		return pfail(c, SAGA_EDEFINITION,
		    "step %s: compensation rpc %s is declared %zu times", step, comp, nc);
	return 0;
}

/* Resolves depends_on (absent: the previous step, unless `first`). */
static int
compile_deps(pctx *c, const mthproto *const *mth, uint32_t n_steps, uint32_t i,
    const Sagaspec__Step *o, defn_step *s)
{
	const char *name = mth[i]->name;
	uint64_t mask = 0;

	if (o->first && o->n_depends_on > 0)
		return pfail(c, SAGA_EDEFINITION,
		    "step %s: first and depends_on contradict each other", name);
	if (o->n_depends_on == 0 && i > 0 && !o->first)
		mask = 1ull << (i - 1);
	for (size_t k = 0; k < o->n_depends_on; k++) {
		const char *dn = nz(o->depends_on[k]);
		int j = find_step(mth, n_steps, dn);
		if (j < 0)
			return pfail(c, SAGA_EDEFINITION,
			    "step %s: depends_on names unknown step %.128s", name, dn);
		if ((uint32_t)j == i)
			return pfail(c, SAGA_EDEFINITION, "step %s: depends on itself", name);
		if (mask & (1ull << j))
			return pfail(
			    c, SAGA_EDEFINITION, "step %s: depends_on lists %s twice", name, dn);
		mask |= 1ull << j;
	}
	s->dep_mask = mask;
	s->n_deps = (uint32_t)__builtin_popcountll(mask);
	if (s->n_deps == 0)
		return 0;
	if ((s->deps = calloc(s->n_deps, sizeof(*s->deps))) == NULL)
		return pfail(c, SAGA_ENOMEM, "out of memory");
	uint32_t k = 0;
	for (uint64_t b = mask; b != 0; b &= b - 1)
		s->deps[k++] = (uint32_t)__builtin_ctzll(b);
	return 0;
}

/* Validates step i (option o, rpc mth[i]) and fills s. Whatever it
 * allocates into s is freed with the saga by the caller. */
static int
compile_step(pctx *c, const svcproto *svc, const mthproto *const *mth, uint32_t n_steps, uint32_t i,
    const Sagaspec__Step *o, defn_step *s)
{
	const char *name = mth[i]->name;
	const char *comp = nz(o->compensation);
	const char *in = strip_dot(mth[i]->input_type);
	const char *outt = strip_dot(mth[i]->output_type);
	int rv;

	if (nz(o->participant)[0] == '\0')
		return pfail(c, SAGA_EDEFINITION, "step %s: missing participant", name);
	if (!name_ok(o->participant))
		return pfail(c, SAGA_EDEFINITION, "step %s: participant \"%.128s\": " NAME_RULE,
		    name, o->participant);
	if (comp[0] != '\0' && (rv = check_compensation(c, svc, mth, n_steps, name, comp)) != 0)
		return rv;
	if (!type_ok(c, in))
		return pfail(c, SAGA_EDEFINITION,
		    "step %s: request type %.128s is not in the descriptor set", name, in);
	if (!type_ok(c, outt))
		return pfail(c, SAGA_EDEFINITION,
		    "step %s: response type %.128s is not in the descriptor set", name, outt);

	if ((rv = copy_str(c, &s->name, name)) != 0 ||
	    (rv = copy_str(c, &s->participant, o->participant)) != 0 ||
	    (comp[0] != '\0' && (rv = copy_str(c, &s->compensation, comp)) != 0) ||
	    (rv = copy_str(c, &s->input_type, in)) != 0 ||
	    (rv = copy_str(c, &s->output_type, outt)) != 0)
		return rv;

	s->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFN_DEFAULT_TIMEOUT_MS;
	s->comp_timeout_ms =
	    o->compensation_timeout_ms ? o->compensation_timeout_ms : s->timeout_ms;
	s->hb_timeout_ms = o->heartbeat_timeout_ms;
	if ((rv = compile_retry(
		 c, name, "retry", o->retry, DEFN_DEFAULT_MAX_ATTEMPTS, &s->retry)) != 0 ||
	    (rv = compile_retry(c, name, "compensation_retry", o->compensation_retry,
		 DEFN_DEFAULT_COMP_MAX_ATTEMPTS, &s->comp_retry)) != 0)
		return rv;
	return compile_deps(c, mth, n_steps, i, o, s);
}

/* Every rpc that is not a step must be some step's compensation, declared
 * once: a typo in a step option must not silently turn a step into an
 * unused rpc. O(rpcs * steps). */
static int
check_other_rpcs(pctx *c, const svcproto *svc, const mthproto *const *mth, const defn_saga *d)
{
	for (size_t i = 0; i < svc->n_method; i++) {
		const mthproto *m = svc->method[i];
		bool step = false, comp = false;
		for (uint32_t j = 0; j < d->n_steps; j++) {
			if (m == mth[j])
				step = true;
			else if (streq(m->name, mth[j]->name))
				return pfail(c, SAGA_EDEFINITION,
				    "rpc %s is declared more than once", mth[j]->name);
			if (d->steps[j].compensation != NULL &&
			    streq(m->name, d->steps[j].compensation))
				comp = true;
		}
		if (step)
			continue;
		if (!comp)
			return pfail(c, SAGA_EDEFINITION,
			    "rpc %.128s is neither a step nor a compensation of any step",
			    nz(m->name));
		/* Its payloads are shown as JSON like a step's. */
		if (!type_ok(c, strip_dot(m->input_type)) || !type_ok(c, strip_dot(m->output_type)))
			return pfail(c, SAGA_EDEFINITION,
			    "compensation rpc %s: request or response type is not in the "
			    "descriptor set",
			    m->name);
	}
	return 0;
}

/*
 * Compiles one service. *out is NULL (and 0 returned) if the service is not
 * a saga. The caller has set c->saga to the service's full name.
 */

typedef Google__Protobuf__FieldDescriptorProto fieldproto;

/* ---- sensitive fields --------------------------------------------------- */

/* Is f marked (sagaspec.sensitive) = true? The option arrives as an
 * unknown varint field of FieldOptions; the last occurrence wins. */
static bool
field_sensitive(const fieldproto *f)
{
	const ProtobufCMessage *o = f->options ? &f->options->base : NULL;
	bool on = false;
	for (unsigned i = 0; o != NULL && i < o->n_unknown_fields; i++) {
		const ProtobufCMessageUnknownField *u = &o->unknown_fields[i];
		uint64_t v = 0;
		size_t pos = 0;
		if (u->tag == OPT_SENSITIVE && u->wire_type == PROTOBUF_C_WIRE_TYPE_VARINT &&
		    cm_varint_read(u->data, u->len, &pos, &v) == 0)
			on = v != 0;
	}
	return on;
}

static bool
is_msg_field(const fieldproto *f)
{
	return f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE ||
	    f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP;
}

/* The message types reachable from a saga's input and results, found once
 * each (a pointer hash), with whether each holds a sensitive field at any
 * depth and, if so, its plan's index. */
typedef struct rtype {
	const msgproto *m;
	bool sens;
	size_t plan;
} rtype;

typedef struct redge {
	size_t child, parent; /* a field of parent has type child */
} redge;

typedef struct rset {
	rtype *v;
	size_t n, cap;
	size_t *h; /* index + 1; 0 = empty; hcap a power of 2 > 2n */
	size_t hcap;
	redge *e;
	size_t ne, ecap;
} rset;

static size_t
rhash(const msgproto *m, size_t cap)
{
	return (size_t)(((uintptr_t)m >> 4) * 0x9e3779b97f4a7c15ull) & (cap - 1);
}

/* Index of m in s, added if new; SIZE_MAX when out of memory. */
static size_t
rset_add(rset *s, const msgproto *m)
{
	if (s->hcap != 0) {
		for (size_t k = rhash(m, s->hcap);; k = (k + 1) & (s->hcap - 1)) {
			if (s->h[k] == 0)
				break;
			if (s->v[s->h[k] - 1].m == m)
				return s->h[k] - 1;
		}
	}
	if (s->n == s->cap) {
		size_t nc = s->cap ? 2 * s->cap : 16;
		rtype *v = realloc(s->v, nc * sizeof(*v));
		size_t *h = calloc(4 * nc, sizeof(*h));
		if (v == NULL || h == NULL) {
			free(h);
			if (v != NULL)
				s->v = v;
			return SIZE_MAX;
		}
		s->v = v;
		s->cap = nc;
		free(s->h);
		s->h = h;
		s->hcap = 4 * nc;
		for (size_t i = 0; i < s->n; i++) {
			size_t k = rhash(s->v[i].m, s->hcap);
			while (s->h[k] != 0)
				k = (k + 1) & (s->hcap - 1);
			s->h[k] = i + 1;
		}
	}
	size_t k = rhash(m, s->hcap);
	while (s->h[k] != 0)
		k = (k + 1) & (s->hcap - 1);
	s->v[s->n] = (rtype) { .m = m };
	s->h[k] = ++s->n;
	return s->n - 1;
}

static int
redge_add(rset *s, size_t child, size_t parent)
{
	if (s->ne == s->ecap) {
		size_t nc = s->ecap ? 2 * s->ecap : 32;
		redge *e = realloc(s->e, nc * sizeof(*e));
		if (e == NULL)
			return -1;
		s->e = e;
		s->ecap = nc;
	}
	s->e[s->ne++] = (redge) { child, parent };
	return 0;
}

static int
cmp_redge(const void *a, const void *b)
{
	const redge *x = a, *y = b;
	return x->child < y->child ? -1 : x->child > y->child;
}

static int
cmp_rfield(const void *a, const void *b)
{
	const defn_rfield *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

static const defn_redact *
plan_of(const defn_saga *d, const rset *s, const msgproto *m)
{
	for (size_t k = m && s->hcap ? rhash(m, s->hcap) : 0; m && s->hcap;
	     k = (k + 1) & (s->hcap - 1)) {
		if (s->h[k] == 0)
			return NULL;
		const rtype *t = &s->v[s->h[k] - 1];
		if (t->m == m)
			return t->sens ? &d->plans[t->plan] : NULL;
	}
	return NULL;
}

/*
 * Compiles where the sensitive fields of the saga's input and of every
 * step's result are: the types reachable from them (each once), the ones
 * holding a sensitive field directly, then, walking the "is a field of"
 * edges backwards, every type that holds one deeper. Linear in the fields
 * of the reachable types (plus sorting the edges); recursive types are
 * fine (a plan may point at itself).
 */
static int
compile_redaction(pctx *c, defn_saga *d)
{
	rset s = { 0 };
	size_t *work = NULL, nwork = 0;
	int rv = SAGA_ENOMEM;
	const msgproto *roots[DEFN_MAX_STEPS + 1];
	size_t nroots = 0;
	roots[nroots++] = find_message(c, d->input_type);
	for (uint32_t i = 0; i < d->n_steps; i++)
		roots[nroots++] = find_message(c, d->steps[i].output_type);
	for (size_t i = 0; i < nroots; i++)
		if (roots[i] != NULL && rset_add(&s, roots[i]) == SIZE_MAX)
			goto out;
	for (size_t i = 0; i < s.n; i++) {
		const msgproto *m = s.v[i].m;
		for (size_t j = 0; j < m->n_field; j++) {
			const fieldproto *f = m->field[j];
			if (field_sensitive(f))
				s.v[i].sens = true;
			const msgproto *t = is_msg_field(f) && f->type_name
			    ? find_message(c, strip_dot(f->type_name))
			    : NULL;
			if (t == NULL)
				continue;
			size_t k = rset_add(&s, t);
			if (k == SIZE_MAX || redge_add(&s, k, i) != 0)
				goto out;
		}
	}
	if (s.ne > 1)
		qsort(s.e, s.ne, sizeof(*s.e), cmp_redge);
	if (s.n > 0 && (work = malloc(s.n * sizeof(*work))) == NULL)
		goto out;
	for (size_t i = 0; i < s.n; i++)
		if (s.v[i].sens)
			work[nwork++] = i;
	while (nwork > 0) {
		size_t k = work[--nwork], lo = 0, hi = s.ne;
		while (lo < hi) { /* the first edge whose child is k */
			size_t mid = lo + (hi - lo) / 2;
			if (s.e[mid].child < k)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < s.ne && s.e[lo].child == k; lo++) {
			rtype *p = &s.v[s.e[lo].parent];
			if (!p->sens) {
				p->sens = true;
				work[nwork++] = s.e[lo].parent;
			}
		}
	}
	for (size_t i = 0; i < s.n; i++)
		if (s.v[i].sens)
			s.v[i].plan = d->n_plans++;
	if (d->n_plans == 0) {
		rv = 0;
		goto out;
	}
	if ((d->plans = calloc(d->n_plans, sizeof(*d->plans))) == NULL) {
		d->n_plans = 0;
		goto out;
	}
	for (size_t i = 0; i < s.n; i++) {
		if (!s.v[i].sens)
			continue;
		const msgproto *m = s.v[i].m;
		defn_redact *r = &d->plans[s.v[i].plan];
		if ((r->f = calloc(m->n_field ? m->n_field : 1, sizeof(*r->f))) == NULL)
			goto out;
		for (size_t j = 0; j < m->n_field; j++) {
			const fieldproto *f = m->field[j];
			const defn_redact *sub = NULL;
			if (!field_sensitive(f)) {
				const msgproto *t = is_msg_field(f) && f->type_name
				    ? find_message(c, strip_dot(f->type_name))
				    : NULL;
				if ((sub = plan_of(d, &s, t)) == NULL)
					continue;
				/* A group is dropped whole: its bytes end at a
				 * tag, not at a length, and groups are rare. */
				if (f->type ==
				    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP)
					sub = NULL;
			}
			if (f->number <= 0)
				continue;
			defn_rfield *x = &r->f[r->n];
			x->number = (uint32_t)f->number;
			x->sub = sub;
			if ((x->name = strdup(nz(f->name))) == NULL)
				goto out;
			r->n++;
		}
		qsort(r->f, r->n, sizeof(*r->f), cmp_rfield);
	}
	d->input_redact = plan_of(d, &s, roots[0]);
	for (uint32_t i = 0; i < d->n_steps; i++)
		d->steps[i].result_redact = plan_of(d, &s, roots[i + 1]);
	rv = 0;
out:
	free(work);
	free(s.v);
	free(s.h);
	free(s.e);
	if (rv != 0)
		return pfail(c, rv, "out of memory");
	return 0;
}

/* The saga option business_key names a field of the input message that
 * sagad reads at every start: a singular top-level field of a string or
 * integer type (anything else could not be a search key). */
static int
business_key_field(pctx *c, defn_saga *d, const msgproto *m, const char *name)
{
	if (m == NULL)
		return pfail(c, SAGA_EDEFINITION, "business_key: input type not found");
	for (size_t i = 0; i < m->n_field; i++) {
		const fieldproto *f = m->field[i];
		if (strcmp(nz(f->name), name) != 0)
			continue;
		bool ok =
		    f->label != GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;
		switch (f->type) {
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT64:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT64:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED64:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED64:
			break;
		default:
			ok = false;
		}
		if (!ok || f->number <= 0)
			return pfail(c, SAGA_EDEFINITION,
			    "business_key: field %.128s of %.256s must be a single string or "
			    "integer",
			    name, d->input_type);
		if (field_sensitive(f))
			return pfail(c, SAGA_EDEFINITION,
			    "business_key: field %.128s of %.256s is sensitive, and a business "
			    "key is shown and searched in clear",
			    name, d->input_type);
		d->business_key = strdup(name);
		if (d->business_key == NULL)
			return pfail(c, SAGA_ENOMEM, "out of memory");
		d->bk_number = (uint32_t)f->number;
		d->bk_type = (uint8_t)f->type;
		return 0;
	}
	return pfail(c, SAGA_EDEFINITION, "business_key: %.256s has no field named %.128s",
	    d->input_type, name);
}

static int
compile_service(pctx *c, const svcproto *svc, const char *full, defn_saga **out)
{
	const ProtobufCMessage *sopts = svc->options ? &svc->options->base : NULL;
	Sagaspec__Saga *sopt = NULL;
	Sagaspec__Step *opt[DEFN_MAX_STEPS] = { 0 };
	const mthproto *mth[DEFN_MAX_STEPS];
	defn_saga *d = NULL;
	uint32_t n_steps = 0;
	int rv;

	*out = NULL;

	/* Count steps first without unpacking: a service can carry any number
	 * of rpcs and only 64 steps are allowed. */
	for (size_t i = 0; i < svc->n_method; i++) {
		const mthproto *m = svc->method[i];
		if (!has_option(m->options ? &m->options->base : NULL, OPT_STEP))
			continue;
		if (n_steps >= DEFN_MAX_STEPS)
			return pfail(c, SAGA_EDEFINITION, "more than %d steps", DEFN_MAX_STEPS);
		mth[n_steps++] = m;
	}
	if (n_steps == 0 && !has_option(sopts, OPT_SAGA))
		return 0;

	if (!type_name_ok(full))
		return pfail(c, SAGA_EDEFINITION, "invalid service name");
	if ((rv = unpack_option(c, sopts, OPT_SAGA, &sagaspec__saga__descriptor, "(sagaspec.saga)",
		 "", (ProtobufCMessage **)&sopt)) != 0)
		goto fail;
	if (sopt != NULL && sopt->base.n_unknown_fields > 0) {
		rv = pfail(c, SAGA_EDEFINITION, "unknown saga option field %u",
		    sopt->base.unknown_fields[0].tag);
		goto fail;
	}
	if (n_steps == 0) {
		rv = pfail(c, SAGA_EDEFINITION, "no rpc has the (sagaspec.step) option");
		goto fail;
	}

	/* A step is one request and one reply. */
	for (size_t i = 0; i < svc->n_method; i++) {
		const mthproto *m = svc->method[i];
		if (m->client_streaming || m->server_streaming) {
			rv = pfail(c, SAGA_EDEFINITION,
			    "rpc %.128s: streaming rpcs cannot be steps or compensations",
			    nz(m->name));
			goto fail;
		}
	}

	/* Step names first: every later message names the step. */
	for (uint32_t i = 0; i < n_steps; i++) {
		const mthproto *m = mth[i];
		char where[160];
		if (!name_ok(m->name)) {
			rv = pfail(c, SAGA_EDEFINITION, "rpc %.128s: step " NAME_RULE, nz(m->name));
			goto fail;
		}
		if (find_step(mth, i, m->name) >= 0) {
			rv = pfail(c, SAGA_EDEFINITION, "duplicate step %s", m->name);
			goto fail;
		}
		snprintf(where, sizeof(where), "step %s: ", m->name);
		if ((rv = unpack_option(c, &m->options->base, OPT_STEP, &sagaspec__step__descriptor,
			 "(sagaspec.step)", where, (ProtobufCMessage **)&opt[i])) != 0)
			goto fail;
		if (opt[i]->base.n_unknown_fields > 0) {
			rv = pfail(c, SAGA_EDEFINITION, "step %s: unknown step option field %u",
			    m->name, opt[i]->base.unknown_fields[0].tag);
			goto fail;
		}
	}

	if ((d = calloc(1, sizeof(*d))) == NULL ||
	    (d->steps = calloc(n_steps, sizeof(*d->steps))) == NULL ||
	    (d->topo = calloc(n_steps, sizeof(*d->topo))) == NULL) {
		rv = pfail(c, SAGA_ENOMEM, "out of memory");
		goto fail;
	}
	d->n_steps = n_steps;
	for (uint32_t i = 0; i < n_steps; i++)
		if ((rv = compile_step(c, svc, mth, n_steps, i, opt[i], &d->steps[i])) != 0)
			goto fail;
	for (uint32_t i = 0; i < n_steps; i++)
		for (uint32_t j = 0; j < n_steps; j++)
			if (d->steps[j].dep_mask & (1ull << i))
				d->steps[i].dependents_mask |= 1ull << j;
	if ((rv = check_other_rpcs(c, svc, mth, d)) != 0 || (rv = compute_topo(c, d)) != 0)
		goto fail;

	const char *in = d->steps[0].input_type;
	if (sopt != NULL && nz(sopt->input_type)[0] != '\0') {
		in = strip_dot(sopt->input_type);
		if (!type_ok(c, in)) {
			rv = pfail(c, SAGA_EDEFINITION,
			    "input_type %.128s is not a message in the descriptor set", in);
			goto fail;
		}
	}
	const char *desc = sopt != NULL ? nz(sopt->description) : "";
	/* Shown by sagactl and stored in PostgreSQL text columns. */
	if (!cm_utf8_ok(desc, strlen(desc))) {
		rv = pfail(c, SAGA_EDEFINITION, "description is not valid UTF-8");
		goto fail;
	}
	if ((rv = copy_str(c, &d->name, full)) != 0 ||
	    (rv = copy_str(c, &d->input_type, in)) != 0 ||
	    (rv = copy_str(c, &d->description, desc)) != 0)
		goto fail;

	d->deadline_ms = sopt != NULL ? sopt->deadline_ms : 0;
	if (sopt != NULL && nz(sopt->business_key)[0] != '\0' &&
	    (rv = business_key_field(c, d, find_message(c, in), sopt->business_key)) != 0)
		goto fail;
	if ((rv = compile_redaction(c, d)) != 0)
		goto fail;
	d->fingerprint = fingerprint(d);
	*out = d;
	d = NULL;

fail:
	for (uint32_t i = 0; i < n_steps; i++)
		wire_free(opt[i] != NULL ? &opt[i]->base : NULL);
	wire_free(sopt != NULL ? &sopt->base : NULL);
	defn_free(d);
	return rv;
}

/* ---- the set ----------------------------------------------------------- */

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
defn_parse_set(
    const uint8_t *buf, size_t len, defn_saga ***out, size_t *n_out, char *err, size_t errlen)
{
	pctx c = { .err = err, .errlen = errlen };
	fdset *set = NULL;
	defn_saga **defs = NULL, *d = NULL;
	char *full = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rv = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || n_out == NULL || (buf == NULL && len > 0))
		return pfail(&c, SAGA_EINVAL, "invalid arguments");
	*out = NULL;
	*n_out = 0;

	set = (fdset *)wire_unpack(
	    &google__protobuf__file_descriptor_set__descriptor, buf, len, 0, &rv);
	if (set == NULL) {
		if (rv == 0)
			rv = SAGA_EPROTO;
		return pfail(&c, rv,
		    rv == SAGA_ETOOBIG
			? "descriptor set nests too deeply or is too large to decode"
			: "not a FileDescriptorSet (expected protoc --descriptor_set_out output)");
	}
	if ((rv = build_msg_index(&c, set)) != 0)
		goto fail;

	for (size_t f = 0; f < set->n_file; f++) {
		const fdproto *fp = set->file[f];
		const char *pkg = nz(fp->package);
		for (size_t s = 0; s < fp->n_service; s++) {
			const svcproto *svc = fp->service[s];
			const char *sn = nz(svc->name);
			size_t fl = strlen(pkg) + strlen(sn) + 2;
			if ((full = malloc(fl)) == NULL) {
				rv = pfail(&c, SAGA_ENOMEM, "out of memory");
				goto fail;
			}
			snprintf(full, fl, "%s%s%s", pkg, pkg[0] ? "." : "", sn);
			c.saga = full;
			rv = compile_service(&c, svc, full, &d);
			c.saga = NULL;
			free(full);
			full = NULL;
			if (rv != 0)
				goto fail;
			if (d == NULL)
				continue;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 4;
				defn_saga **nd = realloc(defs, ncap * sizeof(*defs));
				if (nd == NULL) {
					rv = pfail(&c, SAGA_ENOMEM, "out of memory");
					goto fail;
				}
				defs = nd;
				cap = ncap;
			}
			defs[n++] = d;
			d = NULL;
		}
	}
	if (n == 0) {
		rv = pfail(&c, SAGA_EDEFINITION,
		    "no saga service in the descriptor set "
		    "(annotate a service with (sagaspec.saga) or its rpcs with (sagaspec.step))");
		goto fail;
	}

	/* Two sagas with one name would make "the definition X" ambiguous.
	 * Sorting keeps this O(n log n) on hostile input. */
	if ((names = malloc(n * sizeof(*names))) == NULL) {
		rv = pfail(&c, SAGA_ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		names[i] = defs[i]->name;
	qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(names[i - 1], names[i]) == 0) {
			rv = pfail(&c, SAGA_EDEFINITION, "saga %.200s is defined more than once",
			    names[i]);
			goto fail;
		}
	}

	free(names);
	free(c.idx);
	wire_free(&set->base);
	*out = defs;
	*n_out = n;
	return 0;

fail:
	free(names);
	free(c.idx);
	free(full);
	defn_free(d);
	defn_free_array(defs, n);
	wire_free(set ? &set->base : NULL);
	return rv;
}

int
defn_parse_one(
    const uint8_t *buf, size_t len, const char *name, defn_saga **out, char *err, size_t errlen)
{
	defn_saga **defs = NULL;
	size_t n = 0;
	int rv;

	if (out == NULL || name == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "invalid arguments");
		return SAGA_EINVAL;
	}
	*out = NULL;
	if ((rv = defn_parse_set(buf, len, &defs, &n, err, errlen)) != 0)
		return rv;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(defs[i]->name, name) == 0) {
			*out = defs[i];
			defs[i] = NULL;
			break;
		}
	}
	defn_free_array(defs, n);
	if (*out == NULL) {
		pctx c = { .err = err, .errlen = errlen };
		return pfail(&c, SAGA_ENOTFOUND, "saga %.200s is not in the descriptor set", name);
	}
	return 0;
}

/* ---- the business key of an input ------------------------------------------ */

int
defn_business_key(const defn_saga *d, const uint8_t *in, size_t len, char *out, size_t outlen)
{
	size_t pos = 0;
	out[0] = '\0';
	if (d->business_key == NULL)
		return 0;
	while (pos < len) {
		uint64_t tag, v = 0;
		const uint8_t *bytes = NULL;
		if (cm_varint_read(in, len, &pos, &tag) != 0 || (tag >> 3) == 0 ||
		    (tag >> 3) > 536870911)
			return SAGA_EINVAL;
		switch (tag & 7) {
		case 0:
			if (cm_varint_read(in, len, &pos, &v) != 0)
				return SAGA_EINVAL;
			break;
		case 1:
			if (len - pos < 8)
				return SAGA_EINVAL;
			for (int i = 7; i >= 0; i--)
				v = v << 8 | in[pos + (size_t)i];
			pos += 8;
			break;
		case 2:
			if (cm_varint_read(in, len, &pos, &v) != 0 || v > len - pos)
				return SAGA_EINVAL;
			bytes = in + pos;
			pos += (size_t)v;
			break;
		case 5:
			if (len - pos < 4)
				return SAGA_EINVAL;
			for (int i = 3; i >= 0; i--)
				v = v << 8 | in[pos + (size_t)i];
			pos += 4;
			break;
		default: /* groups (3, 4) have no place in a proto3 input */
			return SAGA_EINVAL;
		}
		if ((tag >> 3) != d->bk_number)
			continue;
		/* The last occurrence wins, as in any protobuf parser. */
		switch (d->bk_type) {
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING:
			if ((tag & 7) != 2 || !cm_utf8_ok((const char *)bytes, (size_t)v))
				return SAGA_EINVAL;
			if (v >= outlen)
				return SAGA_ETOOBIG; /* valid, but longer than a key may be */
			memcpy(out, bytes, (size_t)v);
			out[v] = '\0';
			break;
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64:
			if ((tag & 7) != 0)
				return SAGA_EINVAL;
			snprintf(out, outlen, "%lld",
			    d->bk_type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32
				? (long long)(int32_t)(uint32_t)v
				: (long long)(int64_t)v);
			break;
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT64:
			if ((tag & 7) != 0)
				return SAGA_EINVAL;
			snprintf(out, outlen, "%llu",
			    (unsigned long long)(d->bk_type ==
					GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32
				    ? (uint32_t)v
				    : v));
			break;
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT64:
			if ((tag & 7) != 0)
				return SAGA_EINVAL;
			snprintf(out, outlen, "%lld", (long long)((v >> 1) ^ (~(v & 1) + 1)));
			break;
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED32:
		case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED32:
			if ((tag & 7) != 5)
				return SAGA_EINVAL;
			if (d->bk_type ==
			    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED32)
				snprintf(out, outlen, "%lu", (unsigned long)(uint32_t)v);
			else
				snprintf(out, outlen, "%ld", (long)(int32_t)(uint32_t)v);
			break;
		default: /* fixed64, sfixed64 */
			if ((tag & 7) != 1)
				return SAGA_EINVAL;
			if (d->bk_type ==
			    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED64)
				snprintf(out, outlen, "%llu", (unsigned long long)v);
			else
				snprintf(out, outlen, "%lld", (long long)(int64_t)v);
			break;
		}
	}
	return 0;
}

/* ---- compatibility of a new version with the previous one ------------------ */

typedef Google__Protobuf__FieldDescriptorProto fldproto;

#define COMPAT_MAX_MSGS 256

typedef struct compat {
	pctx oldc, newc;
	const msgproto *seen[COMPAT_MAX_MSGS];
	size_t n_seen;
	char *err;
	size_t errlen;
} compat;

static const char *
field_type_name(const fldproto *f)
{
	static const char *const names[] = { "?", "double", "float", "int64", "uint64", "int32",
		"fixed64", "fixed32", "bool", "string", "group", "message", "bytes", "uint32",
		"enum", "sfixed32", "sfixed64", "sint32", "sint64" };
	unsigned t = (unsigned)f->type;
	if (t == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE ||
	    t == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM)
		return f->type_name != NULL
		    ? (f->type_name[0] == '.' ? f->type_name + 1 : f->type_name)
		    : names[t];
	return t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

static bool
is_repeated(const fldproto *f)
{
	return f->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;
}

/* Compares message `full` (no leading dot) in both sets, then the message
 * types of its fields. 0, or SAGA_EDEFINITION naming the first field whose
 * number now means something else. */
static int
compat_message(compat *k, const char *full, const char *where, int depth)
{
	const msgproto *nm = find_message(&k->newc, full), *om = find_message(&k->oldc, full);
	if (nm == NULL || om == NULL || depth > 32)
		return 0; /* a new or a removed type: nothing read twice */
	for (size_t i = 0; i < k->n_seen; i++)
		if (k->seen[i] == nm)
			return 0;
	if (k->n_seen == COMPAT_MAX_MSGS)
		return 0;
	k->seen[k->n_seen++] = nm;
	for (size_t i = 0; i < nm->n_field; i++) {
		const fldproto *nf = nm->field[i];
		for (size_t j = 0; j < om->n_field; j++) {
			const fldproto *of = om->field[j];
			if (of->number != nf->number)
				continue;
			const char *ot = field_type_name(of), *nt = field_type_name(nf);
			if (of->type != nf->type || strcmp(ot, nt) != 0 ||
			    is_repeated(of) != is_repeated(nf)) {
				snprintf(k->err, k->errlen,
				    "%.200s: field number %d of %.200s was %s%.200s '%.100s' and "
				    "is "
				    "%s%.200s '%.100s' in the new version: payloads of sagas still "
				    "running on the old version would be read wrong",
				    where, nf->number, full, is_repeated(of) ? "repeated " : "", ot,
				    nz(of->name), is_repeated(nf) ? "repeated " : "", nt,
				    nz(nf->name));
				return SAGA_EDEFINITION;
			}
		}
		if (nf->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE &&
		    nf->type_name != NULL) {
			const char *tn =
			    nf->type_name[0] == '.' ? nf->type_name + 1 : nf->type_name;
			int rv = compat_message(k, tn, where, depth + 1);
			if (rv != 0)
				return rv;
		}
	}
	return 0;
}

int
defn_compat_check(const uint8_t *old_set, size_t old_len, const uint8_t *new_set, size_t new_len,
    const defn_saga *d, char *err, size_t errlen)
{
	compat k = { .err = err, .errlen = errlen };
	fdset *os = NULL, *ns = NULL;
	int rv = 0, e = 0;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	os = (fdset *)wire_unpack(
	    &google__protobuf__file_descriptor_set__descriptor, old_set, old_len, 0, &e);
	ns = (fdset *)wire_unpack(
	    &google__protobuf__file_descriptor_set__descriptor, new_set, new_len, 0, &e);
	if (os == NULL || ns == NULL)
		goto out; /* the new one parsed already; an unreadable old one: nothing to compare */
	if (build_msg_index(&k.oldc, os) != 0 || build_msg_index(&k.newc, ns) != 0)
		goto out;
	char where[320];
	snprintf(where, sizeof(where), "%.200s input", d->name);
	if ((rv = compat_message(&k, d->input_type, where, 0)) != 0)
		goto out;
	for (uint32_t i = 0; i < d->n_steps && rv == 0; i++) {
		if (d->steps[i].output_type == NULL)
			continue;
		snprintf(
		    where, sizeof(where), "%.200s step %.100s result", d->name, d->steps[i].name);
		rv = compat_message(&k, d->steps[i].output_type, where, 0);
	}
out:
	free(k.oldc.idx);
	free(k.newc.idx);
	if (os != NULL)
		wire_free(&os->base);
	if (ns != NULL)
		wire_free(&ns->base);
	return rv;
}
