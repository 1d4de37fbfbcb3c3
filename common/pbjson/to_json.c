/* to_json: protobuf binary -> JSON (pbjson_to_json). See pj_internal.h. */
#include "pj_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "jsonstr.h"
#include "utf8.h"
#include "varint.h"

/* ---- small helpers ----------------------------------------------------- */

static int
put_b64(ctx *c, const uint8_t *p, size_t len)
{
	TRY(pj_reserve(c, CM_BASE64_LEN(len)));
	c->n += cm_base64_encode((char *)c->b + c->n, p, len);
	return 0;
}

static bool
is_64bit_int(int type)
{
	return type == T_INT64 || type == T_UINT64 || type == T_SINT64 || type == T_FIXED64 ||
	    type == T_SFIXED64;
}

static const pj_enumval *
enum_by_num(const pj_enum *e, int32_t num)
{
	size_t lo = 0, hi = e->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (e->by_num[mid].number < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < e->n && e->by_num[lo].number == num ? &e->by_num[lo] : NULL;
}

static int32_t
zz32_dec(uint32_t v)
{
	return (int32_t)((v >> 1) ^ (uint32_t) - (int32_t)(v & 1));
}

static int64_t
zz64_dec(uint64_t v)
{
	return (int64_t)((v >> 1) ^ (uint64_t) - (int64_t)(v & 1));
}

/* Days since 1970-01-01 to a date (Howard Hinnant's civil_from_days). */
static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* ---- records ----------------------------------------------------------- */

typedef struct ordent {
	uint32_t num;
	size_t i; /* index in recs.r: binary order */
} ordent;

typedef struct recs {
	rec *r;      /* binary order */
	ordent *ord; /* by field number, then binary order */
	size_t n;
} recs;

typedef struct span {
	const uint8_t *p;
	size_t len;
} span;

static void
recs_free(recs *rs)
{
	free(rs->r);
	free(rs->ord);
	rs->r = NULL;
	rs->ord = NULL;
	rs->n = 0;
}

static size_t
off_of(const ctx *c, const uint8_t *p)
{
	return c->base != NULL ? (size_t)(p - c->base) : 0;
}

/* Reads one record from p[*pos..len). A group's payload is what lies
 * between its start and end tags, whose nesting is checked here without
 * recursion (at most PBJSON_MAX_DEPTH - depth groups deep). */
int
pj_next_rec(ctx *c, const uint8_t *p, size_t len, size_t *pos, rec *r)
{
	size_t at = *pos;
	uint64_t tag;
	if (cm_varint_read(p, len, pos, &tag) != 0)
		return pj_fail(
		    c, SAGA_EPROTO, "truncated or malformed tag at byte %zu", off_of(c, p + at));
	if (tag > UINT32_MAX || (tag >> 3) == 0)
		return pj_fail(c, SAGA_EPROTO, "invalid field number %" PRIu64 " at byte %zu",
		    tag >> 3, off_of(c, p + at));
	r->num = (uint32_t)(tag >> 3);
	r->wt = (uint8_t)(tag & 7);
	r->used = false;
	r->v = 0;
	r->p = NULL;
	r->len = 0;
	switch (r->wt) {
	case WT_VARINT:
		if (cm_varint_read(p, len, pos, &r->v) != 0)
			return pj_fail(c, SAGA_EPROTO,
			    "truncated varint field %" PRIu32 " at byte %zu", r->num,
			    off_of(c, p + at));
		return 0;
	case WT_I64:
		if (len - *pos < 8)
			return pj_fail(c, SAGA_EPROTO,
			    "truncated fixed64 field %" PRIu32 " at byte %zu", r->num,
			    off_of(c, p + at));
		for (int k = 7; k >= 0; k--)
			r->v = r->v << 8 | p[*pos + (size_t)k];
		*pos += 8;
		return 0;
	case WT_I32:
		if (len - *pos < 4)
			return pj_fail(c, SAGA_EPROTO,
			    "truncated fixed32 field %" PRIu32 " at byte %zu", r->num,
			    off_of(c, p + at));
		for (int k = 3; k >= 0; k--)
			r->v = r->v << 8 | p[*pos + (size_t)k];
		*pos += 4;
		return 0;
	case WT_LEN: {
		uint64_t l;
		if (cm_varint_read(p, len, pos, &l) != 0 || l > len - *pos)
			return pj_fail(c, SAGA_EPROTO,
			    "truncated length-delimited field %" PRIu32 " at byte %zu", r->num,
			    off_of(c, p + at));
		r->p = p + *pos;
		r->len = (size_t)l;
		*pos += (size_t)l;
		return 0;
	}
	case WT_EGROUP: /* the caller says whether one is expected */
		return 0;
	case WT_SGROUP: {
		uint32_t stack[PBJSON_MAX_DEPTH];
		unsigned sp = 0,
			 limit = PBJSON_MAX_DEPTH > c->depth ? PBJSON_MAX_DEPTH - c->depth : 0;
		if (limit == 0)
			return pj_fail(
			    c, SAGA_ETOOBIG, "groups nest deeper than %d levels", PBJSON_MAX_DEPTH);
		stack[sp++] = r->num;
		r->p = p + *pos;
		for (;;) {
			size_t tat = *pos;
			uint64_t t, skip;
			if (cm_varint_read(p, len, pos, &t) != 0 || t > UINT32_MAX || (t >> 3) == 0)
				return pj_fail(c, SAGA_EPROTO,
				    "malformed group field %" PRIu32 " at byte %zu", r->num,
				    off_of(c, p + at));
			bool ok = true;
			switch (t & 7) {
			case WT_VARINT:
				ok = cm_varint_read(p, len, pos, &skip) == 0;
				break;
			case WT_I64:
				ok = len - *pos >= 8;
				*pos += ok ? 8 : 0;
				break;
			case WT_I32:
				ok = len - *pos >= 4;
				*pos += ok ? 4 : 0;
				break;
			case WT_LEN:
				ok = cm_varint_read(p, len, pos, &skip) == 0 && skip <= len - *pos;
				*pos += ok ? (size_t)skip : 0;
				break;
			case WT_SGROUP:
				if (sp >= limit)
					return pj_fail(c, SAGA_ETOOBIG,
					    "groups nest deeper than %d levels", PBJSON_MAX_DEPTH);
				stack[sp++] = (uint32_t)(t >> 3);
				break;
			case WT_EGROUP:
				ok = stack[--sp] == (uint32_t)(t >> 3);
				if (ok && sp == 0) {
					r->len = (size_t)(p + tat - r->p);
					return 0;
				}
				break;
			default:
				ok = false;
			}
			if (!ok)
				return pj_fail(c, SAGA_EPROTO,
				    "malformed group field %" PRIu32 " at byte %zu", r->num,
				    off_of(c, p + at));
		}
	}
	default:
		return pj_fail(c, SAGA_EPROTO,
		    "invalid wire type %u (field %" PRIu32 ") at byte %zu", (unsigned)r->wt, r->num,
		    off_of(c, p + at));
	}
}

static int
cmp_ord(const void *a, const void *b)
{
	const ordent *x = a, *y = b;
	if (x->num != y->num)
		return x->num < y->num ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Cuts the spans (one message, or the occurrences of a singular message
 * field, which merge) into records. */
static int
collect(ctx *c, const span *sp, size_t nsp, recs *rs)
{
	size_t cap = 0;
	int rv = 0;
	memset(rs, 0, sizeof(*rs));
	for (size_t s = 0; s < nsp; s++) {
		size_t pos = 0;
		while (pos < sp[s].len) {
			size_t at = pos;
			if (rs->n == cap) {
				size_t nc = cap ? 2 * cap : 8;
				rec *nr = realloc(rs->r, nc * sizeof(*nr));
				if (nr == NULL) {
					rv = pj_oom(c);
					goto fail;
				}
				rs->r = nr;
				cap = nc;
			}
			if ((rv = pj_next_rec(c, sp[s].p, sp[s].len, &pos, &rs->r[rs->n])) != 0)
				goto fail;
			if (rs->r[rs->n].wt == WT_EGROUP) {
				rv = pj_fail(c, SAGA_EPROTO, "unexpected end-group tag at byte %zu",
				    off_of(c, sp[s].p + at));
				goto fail;
			}
			rs->n++;
		}
	}
	if (rs->n == 0)
		return 0;
	if ((rs->ord = malloc(rs->n * sizeof(*rs->ord))) == NULL) {
		rv = pj_oom(c);
		goto fail;
	}
	for (size_t i = 0; i < rs->n; i++)
		rs->ord[i] = (ordent) { rs->r[i].num, i };
	qsort(rs->ord, rs->n, sizeof(*rs->ord), cmp_ord);
	return 0;
fail: /* callers free nothing on failure */
	recs_free(rs);
	return rv;
}

/* First index in rs->ord with a field number >= num. */
static size_t
recs_lower(const recs *rs, uint32_t num)
{
	size_t lo = 0, hi = rs->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rs->ord[mid].num < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The last record of field f in rs, or NULL. */
static const rec *
last_rec(const recs *rs, const pj_field *f)
{
	const rec *last = NULL;
	for (size_t i = recs_lower(rs, f->number); i < rs->n && rs->ord[i].num == f->number; i++)
		if (pj_wt_ok(f, rs->r[rs->ord[i].i].wt))
			last = &rs->r[rs->ord[i].i];
	return last;
}

/* ---- JSON writer ------------------------------------------------------- */

static int
w_nl(ctx *c)
{
	static const char spaces[] =
	    "                                                                ";
	if (c->indent == 0)
		return 0;
	TRY(pj_put(c, "\n", 1));
	size_t n = (size_t)c->level * (size_t)c->indent;
	while (n > 0) {
		size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
		TRY(pj_put(c, spaces, k));
		n -= k;
	}
	return 0;
}

static int
w_open(ctx *c, char ch)
{
	if (c->level + 1 >= sizeof(c->first))
		return pj_fail(c, SAGA_ETOOBIG, "JSON would nest too deeply");
	TRY(pj_put(c, &ch, 1));
	c->first[++c->level] = 1;
	return 0;
}

static int
w_close(ctx *c, char ch)
{
	bool empty = c->first[c->level];
	c->level--;
	if (!empty)
		TRY(w_nl(c));
	return pj_put(c, &ch, 1);
}

static int
w_item(ctx *c)
{
	if (!c->first[c->level])
		TRY(pj_put(c, ",", 1));
	c->first[c->level] = 0;
	return w_nl(c);
}

/* A JSON string from valid UTF-8. */
static int
w_str(ctx *c, const uint8_t *s, size_t len)
{
	size_t n = cm_json_escaped_len((const char *)s, len, CM_JSON_BF);
	TRY(pj_reserve(c, n + 2));
	c->b[c->n++] = '"';
	c->n += cm_json_escape((char *)c->b + c->n, n, (const char *)s, len, CM_JSON_BF, NULL);
	c->b[c->n++] = '"';
	return 0;
}

static int
w_key(ctx *c, const char *key, size_t len)
{
	TRY(w_item(c));
	TRY(w_str(c, (const uint8_t *)key, len));
	return c->indent ? pj_put(c, ": ", 2) : pj_put(c, ":", 1);
}

static int
w_ckey(ctx *c, const char *key)
{
	return w_key(c, key, strlen(key));
}

/* Shortest %g that reads back to the same value. */
static int
w_double(ctx *c, double d, bool is_float)
{
	if (isnan(d))
		return pj_puts(c, "\"NaN\"");
	if (isinf(d))
		return pj_puts(c, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	char buf[40];
	int max = is_float ? 9 : 17;
	for (int prec = 1; prec <= max; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (is_float ? strtof(buf, NULL) == (float)d : strtod(buf, NULL) == d)
			break;
	}
	for (char *q = buf; *q; q++) /* a locale's decimal comma */
		if (*q == ',')
			*q = '.';
	return pj_puts(c, buf);
}

static float
f32(uint64_t v)
{
	uint32_t u = (uint32_t)v;
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static double
f64(uint64_t v)
{
	double d;
	memcpy(&d, &v, sizeof(d));
	return d;
}

/* The value of a numeric field as protobuf reads it: 32-bit types keep
 * the low 32 bits, bools are 0 or 1. Zero is the default. */
static uint64_t
norm(int type, uint64_t v)
{
	switch (type) {
	case T_BOOL:
		return v != 0;
	case T_INT32:
	case T_UINT32:
	case T_SINT32:
	case T_ENUM:
	case T_FIXED32:
	case T_SFIXED32:
	case T_FLOAT:
		return v & 0xffffffffu;
	default:
		return v;
	}
}

/* A numeric (or bool/enum) value as JSON; key = map key form (no quotes
 * added, since w_key quotes). */
static int
fmt_int(int type, uint64_t v, char *buf, size_t cap)
{
	switch (type) {
	case T_INT32:
	case T_SFIXED32:
	case T_ENUM:
		return snprintf(buf, cap, "%" PRId32, (int32_t)(uint32_t)v);
	case T_UINT32:
	case T_FIXED32:
		return snprintf(buf, cap, "%" PRIu32, (uint32_t)v);
	case T_SINT32:
		return snprintf(buf, cap, "%" PRId32, zz32_dec((uint32_t)v));
	case T_INT64:
	case T_SFIXED64:
		return snprintf(buf, cap, "%" PRId64, (int64_t)v);
	case T_UINT64:
	case T_FIXED64:
		return snprintf(buf, cap, "%" PRIu64, v);
	case T_SINT64:
		return snprintf(buf, cap, "%" PRId64, zz64_dec(v));
	case T_BOOL:
		return snprintf(buf, cap, "%s", v ? "true" : "false");
	default:
		return snprintf(buf, cap, "?");
	}
}

static int
w_scalar(ctx *c, const pj_field *f, uint64_t v)
{
	char buf[32];
	switch (f->type) {
	case T_FLOAT:
		return w_double(c, f32(v), true);
	case T_DOUBLE:
		return w_double(c, f64(v), false);
	case T_ENUM: {
		if (f->en->null_value && (uint32_t)v == 0) /* other numbers: unknown values */
			return pj_puts(c, "null");
		const pj_enumval *ev = enum_by_num(f->en, (int32_t)(uint32_t)v);
		if (ev != NULL)
			return w_str(c, (const uint8_t *)ev->name, strlen(ev->name));
		break;
	}
	default:
		break;
	}
	int k = fmt_int(f->type, v, buf, sizeof(buf));
	if (is_64bit_int(f->type)) {
		TRY(pj_put(c, "\"", 1));
		TRY(pj_put(c, buf, (size_t)k));
		return pj_put(c, "\"", 1);
	}
	return pj_put(c, buf, (size_t)k);
}

static int
w_string_field(ctx *c, const uint8_t *p, size_t len)
{
	if (!cm_utf8_valid(p, len))
		return pj_fail(
		    c, SAGA_EPROTO, "invalid UTF-8 in a string at byte %zu", off_of(c, p));
	return w_str(c, p, len);
}

/* A value of a non-message field from one record (not packed). */
static int
w_rec_value(ctx *c, const pj_field *f, const rec *r)
{
	switch (f->type) {
	case T_STRING:
		return w_string_field(c, r->p, r->len);
	case T_BYTES:
		TRY(pj_put(c, "\"", 1));
		TRY(put_b64(c, r->p, r->len));
		return pj_put(c, "\"", 1);
	default:
		return w_scalar(c, f, norm(f->type, r->v));
	}
}

/* The default value of a field (map values and wrappers print it). */
static int
w_default(ctx *c, const pj_field *f)
{
	if (f->type == T_STRING || f->type == T_BYTES)
		return pj_puts(c, "\"\"");
	return w_scalar(c, f, 0);
}

static int print_msg(ctx *c, const pj_msg *m, const span *sp, size_t nsp);

/* Prints a singular message field from its records in rs->ord[lo..hi)
 * that come after binary position `after` (a oneof's cut). */
static int
print_merged(ctx *c, const pj_field *f, const recs *rs, size_t lo, size_t hi, size_t after)
{
	span one = { NULL, 0 }, *sp = &one;
	size_t n = 0;
	for (size_t i = lo; i < hi; i++)
		if (rs->ord[i].i + 1 > after && pj_wt_ok(f, rs->r[rs->ord[i].i].wt))
			n++;
	if (n > 1 && (sp = malloc(n * sizeof(*sp))) == NULL)
		return pj_oom(c);
	n = 0;
	for (size_t i = lo; i < hi; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (rs->ord[i].i + 1 > after && pj_wt_ok(f, r->wt))
			sp[n++] = (span) { r->p, r->len };
	}
	int rv = print_msg(c, f->msg, sp, n);
	if (sp != &one)
		free(sp);
	return rv;
}

/* A packed run of numbers: each one as a JSON array element. */
static int
print_packed(ctx *c, const pj_field *f, const rec *r, size_t *idx)
{
	size_t pos = 0;
	unsigned wt = pj_type_wt(f->type);
	size_t w = wt == WT_I64 ? 8 : 4;
	if (wt != WT_VARINT && r->len % w != 0)
		return pj_fail(c, SAGA_EPROTO,
		    "packed field of %zu bytes is not a whole number of %zu-byte values at byte "
		    "%zu",
		    r->len, w, off_of(c, r->p));
	while (pos < r->len) {
		uint64_t v = 0;
		if (wt == WT_VARINT) {
			size_t at = pos;
			if (cm_varint_read(r->p, r->len, &pos, &v) != 0) {
				pj_path_index(c, *idx);
				return pj_fail(c, SAGA_EPROTO, "malformed packed field at byte %zu",
				    off_of(c, r->p + at));
			}
		} else {
			for (size_t k = w; k-- > 0;)
				v = v << 8 | r->p[pos + k];
			pos += w;
		}
		TRY(w_item(c));
		TRY(w_scalar(c, f, norm(f->type, v)));
		(*idx)++;
	}
	return 0;
}

static int
print_repeated(ctx *c, const pj_field *f, const recs *rs, size_t lo, size_t hi)
{
	bool any = false;
	for (size_t i = lo; i < hi && !any; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		any = pj_wt_ok(f, r->wt) &&
		    (r->wt != WT_LEN || !pj_is_packable(f->type) || r->len > 0);
	}
	if (!any)
		return 0;
	TRY(w_key(c, f->json, strlen(f->json)));
	TRY(w_open(c, '['));
	size_t idx = 0;
	for (size_t i = lo; i < hi; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (!pj_wt_ok(f, r->wt))
			continue;
		if (r->wt == WT_LEN && pj_is_packable(f->type)) {
			TRY(print_packed(c, f, r, &idx));
			continue;
		}
		size_t mark = pj_path_index(c, idx);
		TRY(w_item(c));
		if (f->type == T_MESSAGE || f->type == T_GROUP) {
			span s = { r->p, r->len };
			TRY(print_msg(c, f->msg, &s, 1));
		} else {
			TRY(w_rec_value(c, f, r));
		}
		idx++;
		pj_path_pop(c, mark);
	}
	return w_close(c, ']');
}

/* ---- maps ---- */

typedef struct mapent {
	const uint8_t *k; /* string key text in the input, or NULL: kb */
	size_t klen;
	char kb[24];
	span e; /* the entry message */
	size_t idx;
} mapent;

static const uint8_t *
mkey(const mapent *e)
{
	return e->k != NULL ? e->k : (const uint8_t *)e->kb;
}

static int
cmp_mapent_key(const void *a, const void *b)
{
	const mapent *x = a, *y = b;
	size_t l = x->klen < y->klen ? x->klen : y->klen;
	int r = memcmp(mkey(x), mkey(y), l);
	if (r != 0)
		return r;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int
cmp_mapent_idx(const void *a, const void *b)
{
	const mapent *x = a, *y = b;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The key of one map entry as JSON key text. */
static int
map_key(ctx *c, const pj_field *kf, mapent *e)
{
	recs er;
	TRY(collect(c, &e->e, 1, &er));
	const rec *kr = last_rec(&er, kf);
	int rv = 0;
	if (kf->type == T_STRING) {
		e->k = kr ? kr->p : (const uint8_t *)"";
		e->klen = kr ? kr->len : 0;
		if (!cm_utf8_valid(e->k, e->klen))
			rv = pj_fail(c, SAGA_EPROTO, "invalid UTF-8 in a map key at byte %zu",
			    off_of(c, e->k));
	} else {
		e->klen =
		    (size_t)fmt_int(kf->type, norm(kf->type, kr ? kr->v : 0), e->kb, sizeof(e->kb));
		e->k = NULL;
	}
	recs_free(&er);
	return rv;
}

static int
map_value(ctx *c, const pj_field *vf, const span *e)
{
	recs er;
	TRY(collect(c, e, 1, &er));
	int rv;
	if (vf->type == T_MESSAGE) {
		size_t lo = recs_lower(&er, 2), hi = recs_lower(&er, 3);
		rv = print_merged(c, vf, &er, lo, hi, 0);
	} else {
		const rec *vr = last_rec(&er, vf);
		rv = vr ? w_rec_value(c, vf, vr) : w_default(c, vf);
	}
	recs_free(&er);
	return rv;
}

/* A map field as a JSON object (the key is already written). When the
 * binary repeats a key the last entry wins; entries keep binary order. */
static int
print_map(ctx *c, const pj_field *f, const recs *rs, size_t lo, size_t hi)
{
	const pj_field *kf = pj_field_by_num(f->msg, 1), *vf = pj_field_by_num(f->msg, 2);
	size_t n = 0, keep = 0;
	int rv = 0;
	mapent *es = NULL;
	for (size_t i = lo; i < hi; i++)
		n += rs->r[rs->ord[i].i].wt == WT_LEN;
	if (vf->unresolved)
		return pj_unresolved(c, vf);
	if (c->depth >= PBJSON_MAX_DEPTH && n > 0)
		return pj_fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	if (n > 0 && (es = calloc(n, sizeof(*es))) == NULL) {
		rv = pj_oom(c);
		goto out;
	}
	n = 0;
	for (size_t i = lo; i < hi; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (r->wt != WT_LEN)
			continue;
		es[n].e = (span) { r->p, r->len };
		es[n].idx = rs->ord[i].i;
		size_t mark = pj_path_index(c, n);
		rv = map_key(c, kf, &es[n]);
		pj_path_pop(c, mark);
		if (rv != 0)
			goto out;
		n++;
	}
	if (n > 1)
		qsort(es, n, sizeof(*es), cmp_mapent_key);
	for (size_t i = 0; i < n; i++) /* last of each run of equal keys */
		if (i + 1 == n || es[i].klen != es[i + 1].klen ||
		    memcmp(mkey(&es[i]), mkey(&es[i + 1]), es[i].klen) != 0)
			es[keep++] = es[i];
	if (keep > 1)
		qsort(es, keep, sizeof(*es), cmp_mapent_idx);
	if ((rv = w_open(c, '{')) != 0)
		goto out;
	for (size_t i = 0; i < keep; i++) {
		const char *k = (const char *)mkey(&es[i]);
		size_t mark = pj_path_key(c, k, es[i].klen);
		if ((rv = w_key(c, k, es[i].klen)) != 0 || (rv = map_value(c, vf, &es[i].e)) != 0)
			goto out;
		pj_path_pop(c, mark);
	}
	rv = w_close(c, '}');
out:
	free(es);
	c->depth--;
	return rv;
}

/* ---- unknown fields ---- */

static int
print_unknown(ctx *c, const recs *rs)
{
	static const char *const wire[] = { "varint", "fixed64", "bytes", "group", "?", "fixed32" };
	bool any = false;
	for (size_t i = 0; i < rs->n && !any; i++)
		any = !rs->r[i].used;
	if (!any)
		return 0;
	TRY(w_ckey(c, "@unknown"));
	TRY(w_open(c, '['));
	for (size_t i = 0; i < rs->n; i++) {
		const rec *r = &rs->r[i];
		char buf[32];
		if (r->used)
			continue;
		TRY(w_item(c));
		TRY(w_open(c, '{'));
		TRY(w_ckey(c, "field"));
		snprintf(buf, sizeof(buf), "%" PRIu32, r->num);
		TRY(pj_puts(c, buf));
		TRY(w_ckey(c, "wire"));
		TRY(w_str(c, (const uint8_t *)wire[r->wt], strlen(wire[r->wt])));
		TRY(w_ckey(c, "value"));
		switch (r->wt) {
		case WT_VARINT:
		case WT_I64:
			snprintf(buf, sizeof(buf), "\"%" PRIu64 "\"", r->v);
			TRY(pj_puts(c, buf));
			break;
		case WT_I32:
			snprintf(buf, sizeof(buf), "%" PRIu64, r->v);
			TRY(pj_puts(c, buf));
			break;
		default:
			TRY(pj_put(c, "\"", 1));
			TRY(put_b64(c, r->p, r->len));
			TRY(pj_put(c, "\"", 1));
		}
		TRY(w_close(c, '}'));
	}
	return w_close(c, ']');
}

/* ---- ordinary messages ---- */

typedef struct frange {
	size_t lo, hi;
	size_t latest; /* 1 + binary index of its last record, 0 = none */
} frange;

static int
print_field(ctx *c, const pj_field *f, const recs *rs, const frange *fr, size_t after)
{
	if (f->unresolved)
		return pj_unresolved(c, f);
	if (f->is_map) {
		TRY(w_key(c, f->json, strlen(f->json)));
		return print_map(c, f, rs, fr->lo, fr->hi);
	}
	if (f->repeated)
		return print_repeated(c, f, rs, fr->lo, fr->hi);
	if (f->type == T_MESSAGE || f->type == T_GROUP) {
		TRY(w_key(c, f->json, strlen(f->json)));
		return print_merged(c, f, rs, fr->lo, fr->hi, after);
	}
	const rec *r = &rs->r[fr->latest - 1];
	if (!f->presence && f->type != T_STRING && f->type != T_BYTES && norm(f->type, r->v) == 0)
		return 0;
	if (!f->presence && (f->type == T_STRING || f->type == T_BYTES) && r->len == 0)
		return 0;
	TRY(w_key(c, f->json, strlen(f->json)));
	return w_rec_value(c, f, r);
}

/* Was field f of the message at c->rpath removed as sensitive? */
static bool
was_redacted(const ctx *c, const pj_field *f)
{
	size_t nl = strlen(f->name);
	for (size_t i = 0; i < c->n_redacted; i++) {
		const char *p = c->redacted[i];
		if (c->rplen > 0) {
			if (strncmp(p, c->rpath, c->rplen) != 0 || p[c->rplen] != '.')
				continue;
			p += c->rplen + 1;
		}
		if (strncmp(p, f->name, nl) == 0 && p[nl] == '\0')
			return true;
	}
	return false;
}

/* Pushes field name f onto the proto path; returns the mark to pop to
 * (a path too long to hold stays as it was: nothing below it matches). */
static size_t
rpath_push(ctx *c, const pj_field *f)
{
	size_t mark = c->rplen, nl = strlen(f->name);
	if (c->n_redacted == 0 || mark + nl + 2 > sizeof(c->rpath))
		return mark;
	if (mark > 0)
		c->rpath[c->rplen++] = '.';
	memcpy(c->rpath + c->rplen, f->name, nl);
	c->rplen += nl;
	c->rpath[c->rplen] = '\0';
	return mark;
}

static void
rpath_pop(ctx *c, size_t mark)
{
	c->rplen = mark;
	c->rpath[mark] = '\0';
}

static int
print_plain(ctx *c, const pj_msg *m, recs *rs)
{
	size_t nf = m->nfields, no = m->noneofs;
	frange *fr = NULL;
	size_t *best = NULL, *second = NULL, *win = NULL;
	int rv = 0;
	if (nf + no > 0) {
		fr = calloc(nf + 1, sizeof(*fr));
		best = calloc(3 * no + 1, sizeof(size_t));
		if (fr == NULL || best == NULL) {
			rv = pj_oom(c);
			goto out;
		}
		second = best + no;
		win = second + no;
	}
	for (size_t fi = 0; fi < nf; fi++) {
		const pj_field *f = &m->fields[fi];
		fr[fi].lo = recs_lower(rs, f->number);
		for (fr[fi].hi = fr[fi].lo;
		     fr[fi].hi < rs->n && rs->ord[fr[fi].hi].num == f->number; fr[fi].hi++) {
			rec *r = &rs->r[rs->ord[fr[fi].hi].i];
			if (!pj_wt_ok(f, r->wt))
				continue;
			r->used = true;
			fr[fi].latest = rs->ord[fr[fi].hi].i + 1;
		}
		int o = f->oneof;
		if (o < 0 || fr[fi].latest == 0)
			continue;
		if (fr[fi].latest > best[o]) {
			second[o] = best[o];
			best[o] = fr[fi].latest;
			win[o] = fi;
		} else if (fr[fi].latest > second[o]) {
			second[o] = fr[fi].latest;
		}
	}
	if ((rv = w_open(c, '{')) != 0)
		goto out;
	for (size_t fi = 0; fi < nf; fi++) {
		const pj_field *f = &m->fields[fi];
		size_t after = 0;
		if (fr[fi].latest == 0) {
			/* Removed by sagad as sensitive: say so where it was. */
			if (c->n_redacted > 0 && was_redacted(c, f)) {
				static const char mark[] = "[redacted]";
				if ((rv = w_key(c, f->json, strlen(f->json))) != 0 ||
				    (rv = w_str(c, (const uint8_t *)mark, sizeof(mark) - 1)) != 0)
					goto out;
			}
			continue;
		}
		if (f->oneof >= 0) {
			if (win[f->oneof] != fi)
				continue;
			after = second[f->oneof];
		}
		size_t mark = pj_path_field(c, f->json), rmark = rpath_push(c, f);
		rv = print_field(c, f, rs, &fr[fi], after);
		rpath_pop(c, rmark);
		pj_path_pop(c, mark);
		if (rv != 0)
			goto out;
	}
	if ((rv = print_unknown(c, rs)) != 0)
		goto out;
	rv = w_close(c, '}');
out:
	free(fr);
	free(best);
	return rv;
}

/* ---- well-known types ---- */

static int
print_timestamp(ctx *c, const pj_msg *m, const recs *rs)
{
	const rec *sr = last_rec(rs, pj_field_by_num(m, 1)),
		  *nr = last_rec(rs, pj_field_by_num(m, 2));
	int64_t s = sr ? (int64_t)sr->v : 0;
	int32_t ns = nr ? (int32_t)(uint32_t)nr->v : 0;
	if (s < TS_MIN_SECONDS || s > TS_MAX_SECONDS || ns < 0 || ns > 999999999)
		return pj_fail(c, SAGA_EPROTO,
		    "Timestamp out of range (seconds %" PRId64 ", nanos %" PRId32
		    "; years 1 to 9999 and nanos 0 to 999999999 can be shown)",
		    s, ns);
	int64_t days = s / 86400, rem = s % 86400, y;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	int mo, d;
	civil_from_days(days, &y, &mo, &d);
	char buf[48];
	int k = snprintf(buf, sizeof(buf), "\"%04" PRId64 "-%02d-%02dT%02d:%02d:%02d", y, mo, d,
	    (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
	if (ns == 0)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, "Z\"");
	else if (ns % 1000000 == 0)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, ".%03dZ\"", (int)(ns / 1000000));
	else if (ns % 1000 == 0)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, ".%06dZ\"", (int)(ns / 1000));
	else
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, ".%09dZ\"", (int)ns);
	return pj_put(c, buf, (size_t)k);
}

static int
print_duration(ctx *c, const pj_msg *m, const recs *rs)
{
	const rec *sr = last_rec(rs, pj_field_by_num(m, 1)),
		  *nr = last_rec(rs, pj_field_by_num(m, 2));
	int64_t s = sr ? (int64_t)sr->v : 0;
	int32_t ns = nr ? (int32_t)(uint32_t)nr->v : 0;
	if (s < -DUR_MAX_SECONDS || s > DUR_MAX_SECONDS || ns < -999999999 || ns > 999999999 ||
	    (s > 0 && ns < 0) || (s < 0 && ns > 0))
		return pj_fail(c, SAGA_EPROTO,
		    "Duration out of range (seconds %" PRId64 ", nanos %" PRId32
		    "; at most 10000 years, nanos with the sign of seconds)",
		    s, ns);
	bool neg = s < 0 || ns < 0;
	uint64_t as = (uint64_t)(s < 0 ? -s : s);
	int32_t an = ns < 0 ? -ns : ns;
	char buf[48];
	int k = snprintf(buf, sizeof(buf), "\"%s%" PRIu64, neg ? "-" : "", as);
	if (an == 0)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, "s\"");
	else if (an % 1000000 == 0)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, ".%03ds\"", (int)(an / 1000000));
	else if (an % 1000 == 0)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, ".%06ds\"", (int)(an / 1000));
	else
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, ".%09ds\"", (int)an);
	return pj_put(c, buf, (size_t)k);
}

static int
print_value(ctx *c, const pj_msg *m, const recs *rs)
{
	/* The last kind set wins; a message kind merges its occurrences
	 * since the last record of another kind. */
	uint32_t kind = 0;
	size_t start = 0;
	const rec *last = NULL;
	for (size_t i = 0; i < rs->n; i++) {
		const rec *r = &rs->r[i];
		if (r->num < 1 || r->num > 6)
			continue;
		/* Never NULL (wkt_of checked the shape), but a lookup may fail. */
		const pj_field *rf = pj_field_by_num(m, r->num);
		if (rf == NULL || !pj_wt_ok(rf, r->wt))
			continue;
		if (r->num != kind) {
			kind = r->num;
			start = i;
		}
		last = r;
	}
	const pj_field *f = kind ? pj_field_by_num(m, kind) : NULL;
	switch (kind) {
	case 0:
	case 1:
		return pj_puts(c, "null");
	case 2:
		if (!isfinite(f64(last->v)))
			return pj_fail(c, SAGA_EINVAL,
			    "google.protobuf.Value holds %s, which JSON cannot show",
			    isnan(f64(last->v)) ? "NaN" : "an infinity");
		return w_double(c, f64(last->v), false);
	case 3:
	case 4:
		return w_rec_value(c, f, last);
	default: {
		size_t n = 0;
		for (size_t i = start; i < rs->n; i++)
			n += rs->r[i].num == kind && rs->r[i].wt == WT_LEN;
		span *sp = malloc(n * sizeof(*sp));
		if (sp == NULL)
			return pj_oom(c);
		n = 0;
		for (size_t i = start; i < rs->n; i++)
			if (rs->r[i].num == kind && rs->r[i].wt == WT_LEN)
				sp[n++] = (span) { rs->r[i].p, rs->r[i].len };
		int rv = print_msg(c, f->msg, sp, n);
		free(sp);
		return rv;
	}
	}
}

static int
print_list(ctx *c, const pj_msg *m, const recs *rs)
{
	const pj_field *f = pj_field_by_num(m, 1);
	size_t lo = recs_lower(rs, 1), idx = 0;
	TRY(w_open(c, '['));
	for (size_t i = lo; i < rs->n && rs->ord[i].num == 1; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (r->wt != WT_LEN)
			continue;
		size_t mark = pj_path_index(c, idx++);
		span s = { r->p, r->len };
		TRY(w_item(c));
		TRY(print_msg(c, f->msg, &s, 1));
		pj_path_pop(c, mark);
	}
	return w_close(c, ']');
}

static int
print_fieldmask(ctx *c, const recs *rs)
{
	/* The paths, camelCased and joined by commas, as one JSON string. */
	size_t lo = recs_lower(rs, 1), total = 0, o = 0;
	for (size_t i = lo; i < rs->n && rs->ord[i].num == 1; i++)
		total += rs->r[rs->ord[i].i].len + 1;
	char *s = malloc(total + 1);
	if (s == NULL)
		return pj_oom(c);
	for (size_t i = lo; i < rs->n && rs->ord[i].num == 1; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (r->wt != WT_LEN)
			continue;
		bool ok = r->len > 0 && cm_utf8_valid(r->p, r->len);
		if (o > 0)
			s[o++] = ',';
		for (size_t k = 0; k < r->len && ok; k++) {
			uint8_t ch = r->p[k];
			if (ch == '_') {
				ok = k + 1 < r->len && r->p[k + 1] >= 'a' && r->p[k + 1] <= 'z';
				ch = ok ? (uint8_t)(r->p[++k] - 'a' + 'A') : ch;
			} else {
				ok = !(ch >= 'A' && ch <= 'Z') && ch != ',';
			}
			s[o++] = (char)ch;
		}
		if (!ok) {
			char buf[200];
			free(s);
			return pj_fail(c, SAGA_EPROTO,
			    "FieldMask path %s (at byte %zu) has no lowerCamelCase JSON form",
			    pj_snip((const char *)r->p, r->len, true, buf, sizeof(buf)),
			    off_of(c, r->p));
		}
	}
	int rv = w_str(c, (const uint8_t *)s, o);
	free(s);
	return rv;
}

static int
print_msg(ctx *c, const pj_msg *m, const span *sp, size_t nsp)
{
	if (c->depth >= PBJSON_MAX_DEPTH)
		return pj_fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	recs rs;
	int rv = collect(c, sp, nsp, &rs);
	if (rv == 0) {
		switch (m->wkt) {
		case WKT_ANY:
			rv = pj_fail(c, SAGA_EINVAL, "google.protobuf.Any is not supported");
			break;
		case WKT_TIMESTAMP:
			rv = print_timestamp(c, m, &rs);
			break;
		case WKT_DURATION:
			rv = print_duration(c, m, &rs);
			break;
		case WKT_WRAPPER: {
			const pj_field *f = pj_field_by_num(m, 1);
			const rec *r = last_rec(&rs, f);
			rv = r ? w_rec_value(c, f, r) : w_default(c, f);
			break;
		}
		case WKT_STRUCT: {
			const pj_field *f = pj_field_by_num(m, 1);
			rv = print_map(c, f, &rs, recs_lower(&rs, 1), recs_lower(&rs, 2));
			break;
		}
		case WKT_VALUE:
			rv = print_value(c, m, &rs);
			break;
		case WKT_LIST:
			rv = print_list(c, m, &rs);
			break;
		case WKT_FIELDMASK:
			rv = print_fieldmask(c, &rs);
			break;
		default:
			rv = print_plain(c, m, &rs);
		}
	}
	recs_free(&rs);
	c->depth--;
	return rv;
}

int
pbjson_to_json(const pbjson *p, const char *type, const uint8_t *buf, size_t len, int indent,
    char **out, char *err, size_t errlen)
{
	return pbjson_to_json_redacted(p, type, buf, len, indent, NULL, 0, out, err, errlen);
}

int
pbjson_to_json_redacted(const pbjson *p, const char *type, const uint8_t *buf, size_t len,
    int indent, const char *const *redacted, size_t n_redacted, char **out, char *err,
    size_t errlen)
{
	ctx c = { .p = p,
		.err = err,
		.errlen = errlen,
		.base = buf,
		.indent = indent,
		.redacted = redacted,
		.n_redacted = redacted != NULL ? n_redacted : 0 };
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return pj_fail(&c, SAGA_EINVAL, "invalid arguments");
	*out = NULL;
	if (p == NULL || type == NULL || (buf == NULL && len > 0) || indent < 0 ||
	    indent > PBJSON_MAX_INDENT)
		return pj_fail(&c, SAGA_EINVAL, "invalid arguments");
	const pj_msg *m = pj_root_type(&c, p, type);
	if (m == NULL)
		return c.rv;
	span s = { buf, len };
	int rv = print_msg(&c, m, &s, 1);
	if (rv == 0)
		rv = pj_put(&c, "", 1);
	if (rv != 0) {
		free(c.b);
		return rv;
	}
	*out = (char *)c.b;
	return 0;
}
