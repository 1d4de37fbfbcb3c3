/* from_json: JSON -> protobuf binary (pbjson_from_json). See
 * pj_internal.h. */
#include "pj_internal.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "varint.h"

/* ---- numbers, lookups, dates ------------------------------------------- */

enum { NUM_OK, NUM_SYNTAX, NUM_FRAC, NUM_RANGE };

/* The exact integer value of JSON number text ("12", "-3", "1.0e3"):
 * NUM_OK with sign and magnitude, or NUM_SYNTAX, NUM_FRAC (not a whole
 * number), NUM_RANGE (magnitude of 2^64 or more). */
static int
num_int(const char *s, size_t len, bool *neg, uint64_t *mag)
{
	*neg = false;
	*mag = 0;
	if (!pj_num_syntax(s, len))
		return NUM_SYNTAX;
	size_t i = 0;
	if (s[i] == '-') {
		*neg = true;
		i++;
	}
	size_t is = i;
	while (i < len && pj_isdig(s[i]))
		i++;
	size_t ie = i, fs = i, fe = i;
	if (i < len && s[i] == '.') {
		fs = ++i;
		while (i < len && pj_isdig(s[i]))
			i++;
		fe = i;
	}
	int64_t exp = 0;
	if (i < len) { /* e or E */
		i++;
		bool eneg = false;
		if (s[i] == '+' || s[i] == '-')
			eneg = s[i++] == '-';
		for (; i < len; i++)
			if (exp < 1000000)
				exp = exp * 10 + (s[i] - '0');
		if (eneg)
			exp = -exp;
	}
	/* Digits: the integer part then the fraction; value = D * 10^e. */
	size_t ni = ie - is, nf = fe - fs, nd = ni + nf;
#define DIGIT(k) ((k) < ni ? s[is + (k)] : s[fs + (k)-ni])
	size_t f = 0, l = nd;
	while (f < nd && DIGIT(f) == '0')
		f++;
	if (f == nd)
		return NUM_OK; /* zero, however written */
	while (DIGIT(l - 1) == '0')
		l--;
	int64_t e = exp - (int64_t)nf + (int64_t)(nd - l);
	if (e < 0)
		return NUM_FRAC;
	if ((int64_t)(l - f) + e > 20)
		return NUM_RANGE;
	uint64_t m = 0;
	for (size_t k = f; k < l; k++) {
		unsigned d = (unsigned)(DIGIT(k) - '0');
		if (m > (UINT64_MAX - d) / 10)
			return NUM_RANGE;
		m = m * 10 + d;
	}
#undef DIGIT
	for (int64_t k = 0; k < e; k++) {
		if (m > UINT64_MAX / 10)
			return NUM_RANGE;
		m *= 10;
	}
	*mag = m;
	return NUM_OK;
}

/* strtod over JSON number text (not NUL-terminated). */
static int
num_double(ctx *c, const char *s, size_t len, double *out)
{
	char buf[64];
	char *t = len < sizeof(buf) ? buf : malloc(len + 1);
	if (t == NULL)
		return pj_oom(c);
	memcpy(t, s, len);
	t[len] = '\0';
	*out = strtod(t, NULL);
	if (t != buf)
		free(t);
	return 0;
}

static const char *
type_label(int type)
{
	static const char *const names[] = { "?", "double", "float", "int64", "uint64", "int32",
		"fixed64", "fixed32", "bool", "string", "group", "message", "bytes", "uint32",
		"enum", "sfixed32", "sfixed64", "sint32", "sint64" };
	return type >= 1 && type <= 18 ? names[type] : "?";
}

static int
keycmp(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	int r = memcmp(a, b, alen < blen ? alen : blen);
	if (r != 0)
		return r;
	return alen < blen ? -1 : alen > blen;
}

static const pj_field *
field_by_key(const pj_msg *m, const char *key, size_t len)
{
	size_t lo = 0, hi = m->nkeys;
	while (lo < hi) { /* first match: the field declared first */
		size_t mid = lo + (hi - lo) / 2;
		if (keycmp(key, len, m->by_key[mid].key) > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < m->nkeys && keycmp(key, len, m->by_key[lo].key) == 0)
		return &m->fields[m->by_key[lo].field];
	return NULL;
}

static const pj_enumval *
enum_by_name(const pj_enum *e, const char *name, size_t len)
{
	size_t lo = 0, hi = e->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = keycmp(name, len, e->by_name[mid].name);
		if (r == 0)
			return &e->by_name[mid];
		if (r > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Does a JSON null set this field (rather than leave it unset)? */
static bool
takes_null(const pj_field *f)
{
	return (f->msg != NULL && f->msg->wkt == WKT_VALUE) || (f->en != NULL && f->en->null_value);
}

static uint32_t
zz32_enc(int32_t v)
{
	return ((uint32_t)v << 1) ^ (uint32_t) - (int32_t)((uint32_t)v >> 31);
}

static uint64_t
zz64_enc(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t) - (int64_t)((uint64_t)v >> 63);
}

/* A date to days since 1970-01-01 (Howard Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
days_in_month(int64_t y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

/* ---- describing JSON values in errors ---- */

static const char *
jdesc(const jnode *n, char *buf, size_t cap)
{
	switch (n->t) {
	case J_NULL:
		return "null";
	case J_TRUE:
		return "true";
	case J_FALSE:
		return "false";
	case J_OBJ:
		return "an object";
	case J_ARR:
		return "an array";
	case J_NUM:
		return pj_snip(n->s, n->len, false, buf, cap);
	default:
		return pj_snip(n->s, n->len, true, buf, cap);
	}
}

static int
expected(ctx *c, const char *what, const jnode *n)
{
	char buf[200];
	return pj_fail(c, SAGA_EINVAL, "expected %s, got %s", what, jdesc(n, buf, sizeof(buf)));
}

/* ---- binary writer ---- */

static int
put_varint(ctx *c, uint64_t v)
{
	uint8_t b[CM_VARINT_MAX];
	return pj_put(c, b, cm_varint_write(b, v));
}

static int
put_tag(ctx *c, uint32_t num, unsigned wt)
{
	return put_varint(c, (uint64_t)num << 3 | wt);
}

static int
put_fixed(ctx *c, uint64_t v, size_t w)
{
	uint8_t b[8];
	for (size_t k = 0; k < w; k++)
		b[k] = (uint8_t)(v >> (8 * k));
	return pj_put(c, b, w);
}

/* Length-delimited content: one byte is reserved for the length, the
 * content moves if its length needs more. */
static int
len_begin(ctx *c, size_t *mark)
{
	TRY(pj_put(c, "", 1));
	*mark = c->n;
	return 0;
}

static int
len_end(ctx *c, size_t mark)
{
	size_t l = c->n - mark;
	uint8_t v[CM_VARINT_MAX];
	size_t k = cm_varint_write(v, l);
	if (k > 1) {
		TRY(pj_reserve(c, k - 1));
		memmove(c->b + mark + k - 1, c->b + mark, l);
		c->n += k - 1;
	}
	memcpy(c->b + mark - 1, v, k);
	return 0;
}

/* ---- scalars from JSON ---- */

static bool
int_fits(int type, bool neg, uint64_t mag)
{
	switch (type) {
	case T_INT32:
	case T_SINT32:
	case T_SFIXED32:
	case T_ENUM:
		return neg ? mag <= 0x80000000u : mag <= 0x7fffffffu;
	case T_UINT32:
	case T_FIXED32:
		return (!neg || mag == 0) && mag <= 0xffffffffu;
	case T_INT64:
	case T_SINT64:
	case T_SFIXED64:
		return neg ? mag <= (uint64_t)1 << 63 : mag < (uint64_t)1 << 63;
	default: /* uint64, fixed64 */
		return !neg || mag == 0;
	}
}

/* The wire value of an integer already checked by int_fits. */
static uint64_t
int_wire(int type, bool neg, uint64_t mag)
{
	int64_t s = neg ? (int64_t)(0 - mag) : (int64_t)mag; /* two's complement */
	switch (type) {
	case T_INT32:
	case T_ENUM:
		return (uint64_t)(int64_t)(int32_t)s; /* varint: sign-extended */
	case T_SFIXED32:
		return (uint32_t)(int32_t)s;
	case T_SINT32:
		return zz32_enc((int32_t)s);
	case T_SINT64:
		return zz64_enc(s);
	case T_INT64:
	case T_SFIXED64:
		return (uint64_t)s;
	default:
		return mag;
	}
}

static const char *
int_range(int type)
{
	switch (type) {
	case T_INT32:
	case T_SINT32:
	case T_SFIXED32:
	case T_ENUM:
		return "-2147483648 to 2147483647";
	case T_UINT32:
	case T_FIXED32:
		return "0 to 4294967295";
	case T_INT64:
	case T_SINT64:
	case T_SFIXED64:
		return "-9223372036854775808 to 9223372036854775807";
	default:
		return "0 to 18446744073709551615";
	}
}

static int
json_int(ctx *c, int type, const jnode *n, bool *neg, uint64_t *mag)
{
	char buf[200];
	if (n->t != J_NUM && n->t != J_STR)
		return expected(c, "an integer", n);
	int r = num_int(n->s, n->len, neg, mag);
	if (r == NUM_SYNTAX)
		return expected(c, "an integer", n);
	if (r == NUM_FRAC)
		return pj_fail(c, SAGA_EINVAL, "expected an integer, got %s (not a whole number)",
		    jdesc(n, buf, sizeof(buf)));
	if (r == NUM_RANGE || !int_fits(type, *neg, *mag))
		return pj_fail(c, SAGA_EINVAL, "%s is out of range for %s (%s)",
		    jdesc(n, buf, sizeof(buf)), type_label(type), int_range(type));
	return 0;
}

static int
json_double(ctx *c, const jnode *n, bool is_float, double *d)
{
	char buf[200];
	if (n->t == J_STR) {
		if (n->len == 3 && memcmp(n->s, "NaN", 3) == 0) {
			*d = NAN;
			return 0;
		}
		if (n->len == 8 && memcmp(n->s, "Infinity", 8) == 0) {
			*d = INFINITY;
			return 0;
		}
		if (n->len == 9 && memcmp(n->s, "-Infinity", 9) == 0) {
			*d = -INFINITY;
			return 0;
		}
		if (!pj_num_syntax(n->s, n->len))
			return expected(c, "a number (or \"NaN\", \"Infinity\", \"-Infinity\")", n);
	} else if (n->t != J_NUM) {
		return expected(c, "a number", n);
	}
	TRY(num_double(c, n->s, n->len, d));
	if (isinf(*d))
		return pj_fail(c, SAGA_EINVAL, "%s is out of range for %s",
		    jdesc(n, buf, sizeof(buf)), is_float ? "float" : "double");
	if (is_float && fabs(*d) > FLT_MAX) {
		/* Within half an ulp of FLT_MAX rounds to it; past that, inf. */
		if (fabs(*d) >= (double)FLT_MAX + ldexp(1.0, 103))
			return pj_fail(c, SAGA_EINVAL, "%s is out of range for float",
			    jdesc(n, buf, sizeof(buf)));
		*d = *d > 0 ? FLT_MAX : -FLT_MAX;
	}
	return 0;
}

static int
json_enum(ctx *c, const pj_field *f, const jnode *n, uint64_t *v)
{
	const pj_enum *e = f->en;
	if (n->t == J_NULL && e->null_value) {
		*v = 0;
		return 0;
	}
	if (n->t == J_STR) {
		const pj_enumval *ev = enum_by_name(e, n->s, n->len);
		if (ev == NULL) {
			char buf[200], names[240];
			size_t o = 0;
			names[0] = '\0';
			for (size_t i = 0; i < e->n && o + 1 < sizeof(names); i++) {
				int k = snprintf(names + o, sizeof(names) - o, "%s%s",
				    i ? ", " : "", e->dp->value[i]->name);
				o += k > 0 ? (size_t)k : 0;
			}
			if (o >= sizeof(names))
				strcpy(names + sizeof(names) - 4, "...");
			return pj_fail(c, SAGA_EINVAL,
			    "unknown value %s for enum %s (expected one of %s, or a number)",
			    pj_snip(n->s, n->len, true, buf, sizeof(buf)), e->name, names);
		}
		*v = (uint64_t)(int64_t)ev->number;
		return 0;
	}
	if (n->t != J_NUM)
		return expected(c, "an enum name or number", n);
	bool neg;
	uint64_t mag;
	TRY(json_int(c, T_ENUM, n, &neg, &mag));
	*v = int_wire(T_ENUM, neg, mag);
	return 0;
}

/* A numeric, bool or enum value: *v is what goes on the wire (varint
 * value or fixed bits), *zero whether it is the type's default. Both are
 * set whatever it returns: the compiler cannot see that the helpers it
 * returns the errors of never return 0 on a path that left them unset. */
static int
json_scalar(ctx *c, const pj_field *f, const jnode *n, uint64_t *v, bool *zero)
{
	*v = 0;
	*zero = true;
	switch (f->type) {
	case T_BOOL:
		if (n->t != J_TRUE && n->t != J_FALSE)
			return expected(c, "true or false", n);
		*v = n->t == J_TRUE;
		break;
	case T_ENUM:
		TRY(json_enum(c, f, n, v));
		break;
	case T_FLOAT: {
		double d;
		TRY(json_double(c, n, true, &d));
		float fl = (float)d;
		uint32_t u;
		memcpy(&u, &fl, sizeof(u));
		*v = u;
		break;
	}
	case T_DOUBLE: {
		double d;
		TRY(json_double(c, n, false, &d));
		memcpy(v, &d, sizeof(*v));
		break;
	}
	default: {
		bool neg;
		uint64_t mag;
		TRY(json_int(c, f->type, n, &neg, &mag));
		*v = int_wire(f->type, neg, mag);
	}
	}
	*zero = *v == 0;
	return 0;
}

static int
put_scalar(ctx *c, int type, uint64_t v)
{
	switch (pj_type_wt(type)) {
	case WT_I64:
		return put_fixed(c, v, 8);
	case WT_I32:
		return put_fixed(c, v, 4);
	default:
		return put_varint(c, v);
	}
}

/* ---- messages ---- */

static int enc_msg(ctx *c, const pj_msg *m, const jnode *n);

static int
enc_bytes(ctx *c, uint32_t num, const jnode *n, bool omit_empty)
{
	if (n->t != J_STR)
		return expected(c, "base64 text", n);
	size_t start = c->n, mark, dl, bad;
	TRY(put_tag(c, num, WT_LEN));
	TRY(len_begin(c, &mark));
	TRY(pj_reserve(c, n->len / 4 * 3 + 3));
	if (cm_base64_decode(n->s, n->len, c->b + c->n, &dl, &bad) != 0) {
		char buf[200];
		return pj_fail(c, SAGA_EINVAL, "invalid base64 at character %zu of %s", bad,
		    pj_snip(n->s, n->len, true, buf, sizeof(buf)));
	}
	c->n += dl;
	if (omit_empty && dl == 0) {
		c->n = start;
		return 0;
	}
	return len_end(c, mark);
}

/* One value of field f (not a map, not a packed run), tagged. */
static int
enc_one(ctx *c, const pj_field *f, const jnode *n, bool omit_default)
{
	size_t mark;
	if (f->unresolved)
		return pj_unresolved(c, f);
	switch (f->type) {
	case T_MESSAGE:
		TRY(put_tag(c, f->number, WT_LEN));
		TRY(len_begin(c, &mark));
		TRY(enc_msg(c, f->msg, n));
		return len_end(c, mark);
	case T_GROUP:
		TRY(put_tag(c, f->number, WT_SGROUP));
		TRY(enc_msg(c, f->msg, n));
		return put_tag(c, f->number, WT_EGROUP);
	case T_STRING:
		if (n->t != J_STR)
			return expected(c, "a string", n);
		if (omit_default && n->len == 0)
			return 0;
		TRY(put_tag(c, f->number, WT_LEN));
		TRY(put_varint(c, n->len));
		return pj_put(c, n->s, n->len);
	case T_BYTES:
		return enc_bytes(c, f->number, n, omit_default);
	default: {
		uint64_t v;
		bool zero;
		TRY(json_scalar(c, f, n, &v, &zero));
		if (omit_default && zero)
			return 0;
		TRY(put_tag(c, f->number, pj_type_wt(f->type)));
		return put_scalar(c, f->type, v);
	}
	}
}

static int
enc_repeated(ctx *c, const pj_field *f, const jnode *n)
{
	if (n->t != J_ARR)
		return expected(c, "an array", n);
	if (n->nkids == 0)
		return 0;
	size_t i = 0, mark = 0, lmark = 0;
	if (f->packed) {
		TRY(put_tag(c, f->number, WT_LEN));
		TRY(len_begin(c, &lmark));
	}
	for (const jnode *el = n->kid; el != NULL; el = el->next, i++) {
		mark = pj_path_index(c, i);
		if (el->t == J_NULL && !takes_null(f))
			return pj_fail(c, SAGA_EINVAL, "null is not allowed in a repeated field");
		if (f->packed) {
			uint64_t v;
			bool zero;
			TRY(json_scalar(c, f, el, &v, &zero));
			TRY(put_scalar(c, f->type, v));
		} else {
			TRY(enc_one(c, f, el, false));
		}
		pj_path_pop(c, mark);
	}
	return f->packed ? len_end(c, lmark) : 0;
}

/* A map key from its JSON text: strictly canonical for integers, so that
 * distinct JSON keys (which the parser checked) are distinct map keys. */
static int
enc_map_key(ctx *c, const pj_field *kf, const char *key, size_t len)
{
	char buf[200];
	if (kf->type == T_STRING) {
		TRY(put_tag(c, 1, WT_LEN));
		TRY(put_varint(c, len));
		return pj_put(c, key, len);
	}
	uint64_t v = 0;
	if (kf->type == T_BOOL) {
		if (len == 4 && memcmp(key, "true", 4) == 0)
			v = 1;
		else if (!(len == 5 && memcmp(key, "false", 5) == 0))
			return pj_fail(c, SAGA_EINVAL, "map key %s is not true or false",
			    pj_snip(key, len, true, buf, sizeof(buf)));
	} else {
		bool neg;
		uint64_t mag;
		size_t d = len > 0 && key[0] == '-';
		bool canon = len > d && pj_isdig(key[d]) && (key[d] != '0' || (len == 1));
		for (size_t i = d; i < len && canon; i++)
			canon = pj_isdig(key[i]);
		if (!canon || num_int(key, len, &neg, &mag) != NUM_OK ||
		    !int_fits(kf->type, neg, mag))
			return pj_fail(c, SAGA_EINVAL,
			    "map key %s is not a valid %s key (%s, no leading zeros)",
			    pj_snip(key, len, true, buf, sizeof(buf)), type_label(kf->type),
			    int_range(kf->type));
		v = int_wire(kf->type, neg, mag);
	}
	TRY(put_tag(c, 1, pj_type_wt(kf->type)));
	return put_scalar(c, kf->type, v);
}

static int
enc_map(ctx *c, const pj_field *f, const jnode *n)
{
	if (n->t != J_OBJ)
		return expected(c, "an object", n);
	if (n->nkids == 0)
		return 0;
	const pj_field *kf = pj_field_by_num(f->msg, 1), *vf = pj_field_by_num(f->msg, 2);
	if (c->depth >= PBJSON_MAX_DEPTH)
		return pj_fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	for (const jnode *el = n->kid; el != NULL; el = el->next) {
		size_t pmark = pj_path_key(c, el->key, el->klen), lmark;
		if (el->t == J_NULL && !takes_null(vf))
			return pj_fail(c, SAGA_EINVAL, "null is not a valid map value");
		TRY(put_tag(c, f->number, WT_LEN));
		TRY(len_begin(c, &lmark));
		TRY(enc_map_key(c, kf, el->key, el->klen));
		TRY(enc_one(c, vf, el, false));
		TRY(len_end(c, lmark));
		pj_path_pop(c, pmark);
	}
	c->depth--;
	return 0;
}

static int
enc_field(ctx *c, const pj_field *f, const jnode *n)
{
	if (f->unresolved)
		return pj_unresolved(c, f);
	if (n->t == J_NULL && !takes_null(f))
		return 0;
	if (f->is_map)
		return enc_map(c, f, n);
	if (f->repeated)
		return enc_repeated(c, f, n);
	return enc_one(c, f, n, !f->presence);
}

static int
unknown_key(ctx *c, const pj_msg *m, const jnode *el)
{
	char buf[200], names[300];
	size_t o = 0;
	names[0] = '\0';
	for (size_t i = 0; i < m->nfields && o + 1 < sizeof(names); i++) {
		int k = snprintf(
		    names + o, sizeof(names) - o, "%s%s", i ? ", " : "", m->fields[i].json);
		o += k > 0 ? (size_t)k : 0;
	}
	if (o >= sizeof(names))
		strcpy(names + sizeof(names) - 4, "...");
	return pj_fail(c, SAGA_EINVAL, "unknown field %s in %s (its fields: %s)",
	    pj_snip(el->key, el->klen, true, buf, sizeof(buf)), m->name,
	    m->nfields ? names : "none");
}

/* "@unknown": [{"field": N, "wire": W, "value": V}, ...] */
static int
enc_unknown(ctx *c, const pj_msg *m, const jnode *n)
{
	static const char *const wires[] = { "varint", "fixed64", "bytes", "group", "", "fixed32" };
	size_t pmark = pj_path_field(c, "@unknown"), i = 0;
	if (n->t != J_ARR)
		return expected(c, "an array of {\"field\", \"wire\", \"value\"} objects", n);
	for (const jnode *el = n->kid; el != NULL; el = el->next, i++) {
		size_t imark = pj_path_index(c, i);
		const jnode *fn = NULL, *wn = NULL, *vn = NULL;
		if (el->t != J_OBJ)
			return expected(c, "an object with field, wire and value", el);
		for (const jnode *k = el->kid; k != NULL; k = k->next) {
			if (k->klen == 5 && memcmp(k->key, "field", 5) == 0)
				fn = k;
			else if (k->klen == 4 && memcmp(k->key, "wire", 4) == 0)
				wn = k;
			else if (k->klen == 5 && memcmp(k->key, "value", 5) == 0)
				vn = k;
			else
				return pj_fail(c, SAGA_EINVAL,
				    "an unknown-field entry has only field, wire and value");
		}
		if (fn == NULL || wn == NULL || vn == NULL)
			return pj_fail(
			    c, SAGA_EINVAL, "an unknown-field entry needs field, wire and value");
		bool neg;
		uint64_t num;
		int r = fn->t == J_NUM ? num_int(fn->s, fn->len, &neg, &num) : NUM_SYNTAX;
		if (r != NUM_OK || neg || num < 1 || num > MAX_FIELD_NUMBER)
			return expected(c, "a field number from 1 to 536870911", fn);
		unsigned wt = 6;
		for (unsigned w = 0; w < 6 && wn->t == J_STR; w++)
			if (wires[w][0] != '\0' && wn->len == strlen(wires[w]) &&
			    memcmp(wn->s, wires[w], wn->len) == 0)
				wt = w;
		if (wt == 6)
			return expected(c,
			    "wire \"varint\", \"fixed64\", \"fixed32\", \"bytes\" or "
			    "\"group\"",
			    wn);
		const pj_field *known = pj_field_by_num(m, (uint32_t)num);
		if (known != NULL && pj_wt_ok(known, wt))
			return pj_fail(c, SAGA_EINVAL,
			    "field %" PRIu64 " is %s of %s: give it by name, not as unknown", num,
			    known->json, m->name);
		uint64_t v;
		size_t vmark = pj_path_field(c, "value");
		switch (wt) {
		case WT_VARINT:
		case WT_I64:
		case WT_I32:
			TRY(json_int(c, wt == WT_I32 ? T_FIXED32 : T_UINT64, vn, &neg, &v));
			TRY(put_tag(c, (uint32_t)num, wt));
			TRY(wt == WT_VARINT ? put_varint(c, v)
					    : put_fixed(c, v, wt == WT_I64 ? 8 : 4));
			break;
		case WT_LEN:
			TRY(enc_bytes(c, (uint32_t)num, vn, false));
			break;
		default: { /* a group: its content must be well-formed records */
			size_t dl, bad, pos = 0;
			if (vn->t != J_STR)
				return expected(c, "base64 text", vn);
			TRY(put_tag(c, (uint32_t)num, WT_SGROUP));
			size_t cstart = c->n;
			TRY(pj_reserve(c, vn->len / 4 * 3 + 3));
			if (cm_base64_decode(vn->s, vn->len, c->b + c->n, &dl, &bad) != 0) {
				char buf[200];
				return pj_fail(c, SAGA_EINVAL,
				    "invalid base64 at character %zu of %s", bad,
				    pj_snip(vn->s, vn->len, true, buf, sizeof(buf)));
			}
			c->n += dl;
			while (pos < dl) {
				rec gr;
				/* c->b may not move in here: nothing is written. */
				/* Bad content is a bad JSON value: EINVAL. */
				if (pj_next_rec(c, c->b + cstart, dl, &pos, &gr) != 0)
					return c->rv = SAGA_EINVAL;
				if (gr.wt == WT_EGROUP)
					return pj_fail(c, SAGA_EINVAL,
					    "group content holds an unmatched end-group tag");
			}
			TRY(put_tag(c, (uint32_t)num, WT_EGROUP));
		}
		}
		pj_path_pop(c, vmark);
		pj_path_pop(c, imark);
	}
	pj_path_pop(c, pmark);
	return 0;
}

static int
enc_plain(ctx *c, const pj_msg *m, const jnode *n)
{
	char what[300];
	if (n->t != J_OBJ) {
		snprintf(what, sizeof(what), "an object for %s", m->name);
		return expected(c, what, n);
	}
	const jnode **slot = NULL, **oneof_set, *unknown = NULL;
	int rv = 0;
	if ((slot = calloc(m->nfields + m->noneofs + 1, sizeof(*slot))) == NULL)
		return pj_oom(c);
	oneof_set = slot + m->nfields;
	for (const jnode *el = n->kid; el != NULL; el = el->next) {
		if (el->klen == 8 && memcmp(el->key, "@unknown", 8) == 0) {
			unknown = el;
			continue;
		}
		const pj_field *f = field_by_key(m, el->key, el->klen);
		if (f == NULL) {
			rv = unknown_key(c, m, el);
			goto out;
		}
		size_t fi = (size_t)(f - m->fields);
		if (slot[fi] != NULL) {
			char a[200], b[200];
			rv = pj_fail(c, SAGA_EINVAL, "field %s is given twice (as %s and %s)",
			    f->json, pj_snip(slot[fi]->key, slot[fi]->klen, true, a, sizeof(a)),
			    pj_snip(el->key, el->klen, true, b, sizeof(b)));
			goto out;
		}
		slot[fi] = el;
		if (f->oneof >= 0 && (el->t != J_NULL || takes_null(f))) {
			const jnode *prev = oneof_set[f->oneof];
			if (prev != NULL) {
				char a[200], b[200];
				const char *on = m->dp->oneof_decl[f->oneof]->name;
				rv = pj_fail(c, SAGA_EINVAL,
				    "%s and %s are both set, but oneof %s takes one",
				    pj_snip(prev->key, prev->klen, true, a, sizeof(a)),
				    pj_snip(el->key, el->klen, true, b, sizeof(b)), on ? on : "?");
				goto out;
			}
			oneof_set[f->oneof] = el;
		}
	}
	for (size_t k = 0; k < m->nfields; k++) {
		const pj_field *f = &m->fields[m->by_num[k]];
		const jnode *el = slot[m->by_num[k]];
		if (el == NULL)
			continue;
		size_t mark = pj_path_field(c, f->json);
		rv = enc_field(c, f, el);
		pj_path_pop(c, mark);
		if (rv != 0)
			goto out;
	}
	if (unknown != NULL)
		rv = enc_unknown(c, m, unknown);
out:
	free(slot);
	return rv;
}

static int
parse_digits(const char *s, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!pj_isdig(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM). */
static bool
parse_timestamp(const char *s, size_t len, int64_t *secs, int32_t *nanos)
{
	int y, mo, d, h, mi, se, oh = 0, om = 0, ns = 0;
	if (len < 20 || parse_digits(s, 4, &y) || s[4] != '-' || parse_digits(s + 5, 2, &mo) ||
	    s[7] != '-' || parse_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    parse_digits(s + 11, 2, &h) || s[13] != ':' || parse_digits(s + 14, 2, &mi) ||
	    s[16] != ':' || parse_digits(s + 17, 2, &se))
		return false;
	size_t i = 19;
	if (s[i] == '.') {
		size_t k = 0;
		for (i++; i < len && pj_isdig(s[i]); i++, k++) {
			if (k >= 9)
				return false;
			ns = ns * 10 + (s[i] - '0');
		}
		if (k == 0)
			return false;
		for (; k < 9; k++)
			ns *= 10;
	}
	int sign = 0;
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		if (len - i < 6 || parse_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
		    parse_digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			return false;
		i += 6;
	} else {
		return false;
	}
	if (i != len || y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
	    mi > 59 || se > 59)
		return false;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se -
	    sign * (oh * 3600 + om * 60);
	if (t < TS_MIN_SECONDS || t > TS_MAX_SECONDS)
		return false;
	*secs = t;
	*nanos = ns;
	return true;
}

/* -?digits(.f{1,9})?s */
static bool
parse_duration(const char *s, size_t len, int64_t *secs, int32_t *nanos)
{
	size_t i = 0;
	bool neg = false;
	if (i < len && s[i] == '-') {
		neg = true;
		i++;
	}
	int64_t sv = 0;
	size_t nd = 0;
	for (; i < len && pj_isdig(s[i]); i++, nd++) {
		if (nd >= 12)
			return false;
		sv = sv * 10 + (s[i] - '0');
	}
	if (nd == 0)
		return false;
	int32_t ns = 0;
	if (i < len && s[i] == '.') {
		size_t k = 0;
		for (i++; i < len && pj_isdig(s[i]); i++, k++) {
			if (k >= 9)
				return false;
			ns = ns * 10 + (s[i] - '0');
		}
		if (k == 0)
			return false;
		for (; k < 9; k++)
			ns *= 10;
	}
	if (i + 1 != len || s[i] != 's' || sv > DUR_MAX_SECONDS)
		return false;
	*secs = neg ? -sv : sv;
	*nanos = neg ? -ns : ns;
	return true;
}

static int
enc_seconds_nanos(ctx *c, int64_t s, int32_t ns)
{
	if (s != 0) {
		TRY(put_tag(c, 1, WT_VARINT));
		TRY(put_varint(c, (uint64_t)s));
	}
	if (ns != 0) {
		TRY(put_tag(c, 2, WT_VARINT));
		TRY(put_varint(c, (uint64_t)(int64_t)ns));
	}
	return 0;
}

static int
enc_value(ctx *c, const pj_msg *m, const jnode *n)
{
	size_t mark;
	switch (n->t) {
	case J_NULL:
		TRY(put_tag(c, 1, WT_VARINT));
		return put_varint(c, 0);
	case J_NUM: {
		double d;
		TRY(json_double(c, n, false, &d));
		uint64_t v;
		memcpy(&v, &d, sizeof(v));
		TRY(put_tag(c, 2, WT_I64));
		return put_fixed(c, v, 8);
	}
	case J_STR:
		TRY(put_tag(c, 3, WT_LEN));
		TRY(put_varint(c, n->len));
		return pj_put(c, n->s, n->len);
	case J_TRUE:
	case J_FALSE:
		TRY(put_tag(c, 4, WT_VARINT));
		return put_varint(c, n->t == J_TRUE);
	default: {
		uint32_t num = n->t == J_OBJ ? 5 : 6;
		const pj_field *f = pj_field_by_num(m, num); /* wkt_of checked the shape */
		if (f == NULL)
			return pj_fail(
			    c, SAGA_EINTERNAL, "google.protobuf.Value has no field %u", num);
		TRY(put_tag(c, num, WT_LEN));
		TRY(len_begin(c, &mark));
		TRY(enc_msg(c, f->msg, n));
		return len_end(c, mark);
	}
	}
}

static int
enc_fieldmask(ctx *c, const jnode *n)
{
	if (n->t != J_STR)
		return expected(c, "a FieldMask string like \"a.fooBar,b\"", n);
	size_t i = 0;
	while (i < n->len) {
		size_t end = i, mark;
		while (end < n->len && n->s[end] != ',')
			end++;
		if (end == i)
			return expected(
			    c, "a FieldMask string like \"a.fooBar,b\" (no empty paths)", n);
		TRY(put_tag(c, 1, WT_LEN));
		TRY(len_begin(c, &mark));
		for (size_t k = i; k < end; k++) {
			char ch = n->s[k];
			if (ch == '_')
				return expected(c, "lowerCamelCase FieldMask paths", n);
			if (ch >= 'A' && ch <= 'Z') {
				char two[2] = { '_', (char)(ch - 'A' + 'a') };
				TRY(pj_put(c, two, 2));
			} else {
				TRY(pj_put(c, &ch, 1));
			}
		}
		TRY(len_end(c, mark));
		i = end + 1;
		if (end + 1 == n->len)
			return expected(
			    c, "a FieldMask string like \"a.fooBar,b\" (no empty paths)", n);
	}
	return 0;
}

static int
enc_msg(ctx *c, const pj_msg *m, const jnode *n)
{
	if (c->depth >= PBJSON_MAX_DEPTH)
		return pj_fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	int rv;
	switch (m->wkt) {
	case WKT_ANY:
		rv = pj_fail(c, SAGA_EINVAL, "google.protobuf.Any is not supported");
		break;
	case WKT_TIMESTAMP:
	case WKT_DURATION: {
		int64_t s;
		int32_t ns;
		bool ts = m->wkt == WKT_TIMESTAMP;
		if (n->t != J_STR ||
		    !(ts ? parse_timestamp(n->s, n->len, &s, &ns)
			 : parse_duration(n->s, n->len, &s, &ns)))
			rv = expected(c,
			    ts ? "an RFC 3339 timestamp like \"2024-01-02T03:04:05.5Z\" (years 1 "
				 "to 9999)"
			       : "a duration like \"1.5s\" (at most 10000 years)",
			    n);
		else
			rv = enc_seconds_nanos(c, s, ns);
		break;
	}
	case WKT_WRAPPER:
		if (n->t == J_NULL) /* a null field is skipped before; here it is the root */
			rv = expected(c, "a value", n);
		else
			rv = enc_one(c, pj_field_by_num(m, 1), n, true);
		break;
	case WKT_STRUCT:
		rv = n->t == J_OBJ ? enc_map(c, pj_field_by_num(m, 1), n)
				   : expected(c, "an object", n);
		break;
	case WKT_VALUE:
		rv = enc_value(c, m, n);
		break;
	case WKT_LIST:
		rv = enc_repeated(c, pj_field_by_num(m, 1), n);
		break;
	case WKT_FIELDMASK:
		rv = enc_fieldmask(c, n);
		break;
	default:
		rv = enc_plain(c, m, n);
	}
	c->depth--;
	return rv;
}

int
pbjson_from_json(const pbjson *p, const char *type, const char *json, size_t len, uint8_t **out,
    size_t *outlen, char *err, size_t errlen)
{
	ctx c = { .p = p, .err = err, .errlen = errlen };
	jparser j = { .c = &c, .s = json, .len = len };
	jnode *root = NULL;
	int rv;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || outlen == NULL)
		return pj_fail(&c, SAGA_EINVAL, "invalid arguments");
	*out = NULL;
	*outlen = 0;
	if (p == NULL || type == NULL || (json == NULL && len > 0))
		return pj_fail(&c, SAGA_EINVAL, "invalid arguments");
	const pj_msg *m = pj_root_type(&c, p, type);
	if (m == NULL)
		return c.rv;
	if ((rv = pj_json_parse(&j, &root)) == 0)
		rv = enc_msg(&c, m, root);
	pj_json_free(&j);
	if (rv != 0) {
		free(c.b);
		return rv;
	}
	if (c.n == 0) {
		free(c.b);
		return 0;
	}
	*out = c.b;
	*outlen = c.n;
	return 0;
}
