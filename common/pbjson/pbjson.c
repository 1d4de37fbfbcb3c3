/*
 * pbjson.c: protobuf binary <-> JSON driven by a FileDescriptorSet (see
 * pbjson.h for the mapping and the rules).
 *
 * Layout:
 *  - the type pool: messages and enums by full name, each message's
 *    fields by declaration, by number and by JSON key;
 *  - a shared context: error message with the JSON path, nesting depth,
 *    one growable output buffer (JSON text or protobuf bytes);
 *  - binary -> JSON: a message's bytes are first cut into records (tag,
 *    wire type, value or payload), sorted by field number, then printed
 *    field by field, recursing into nested messages;
 *  - JSON -> binary: a small JSON parser builds a tree (arena-allocated),
 *    which is then encoded field by field in number order.
 * Nothing recurses more than PBJSON_MAX_DEPTH message levels (plus the
 * JSON parser's 2 * PBJSON_MAX_DEPTH + 8 levels).
 */
#include "pbjson.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "descriptor.pb-c.h"
#include "jsonstr.h"
#include "saga_base.h"
#include "utf8.h"
#include "varint.h"
#include "wire.h"

typedef Google__Protobuf__FileDescriptorSet fdset;
typedef Google__Protobuf__FileDescriptorProto fileproto;
typedef Google__Protobuf__DescriptorProto msgproto;
typedef Google__Protobuf__FieldDescriptorProto fieldproto;
typedef Google__Protobuf__EnumDescriptorProto enumproto;

/* FieldDescriptorProto.Type: the values are fixed by descriptor.proto. */
enum {
	T_DOUBLE = 1,
	T_FLOAT = 2,
	T_INT64 = 3,
	T_UINT64 = 4,
	T_INT32 = 5,
	T_FIXED64 = 6,
	T_FIXED32 = 7,
	T_BOOL = 8,
	T_STRING = 9,
	T_GROUP = 10,
	T_MESSAGE = 11,
	T_BYTES = 12,
	T_UINT32 = 13,
	T_ENUM = 14,
	T_SFIXED32 = 15,
	T_SFIXED64 = 16,
	T_SINT32 = 17,
	T_SINT64 = 18,
};

/* Wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* Well-known types with a JSON form of their own. */
enum {
	WKT_NONE,
	WKT_ANY,
	WKT_TIMESTAMP,
	WKT_DURATION,
	WKT_WRAPPER,
	WKT_STRUCT,
	WKT_VALUE,
	WKT_LIST,
	WKT_FIELDMASK,
};

#define MAX_FIELD_NUMBER 536870911u
#define JSON_LEVELS      (2 * PBJSON_MAX_DEPTH + 8)
/* A path segment is at most ~140 bytes (a field name cut at 64, an index,
 * a map key cut at 40 and escaped), at most 3 per message level. */
#define PATH_CAP         (PBJSON_MAX_DEPTH * 3 * 144)
/* Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z. */
#define TS_MIN_SECONDS   -62135596800LL
#define TS_MAX_SECONDS   253402300799LL
/* Duration: +-10000 years. */
#define DUR_MAX_SECONDS  315576000000LL

/* ---- the type pool ----------------------------------------------------- */

struct pj_msg;
struct pj_enum;

typedef struct pj_field {
	const char *name; /* proto name (in the decoded set) */
	char *json;       /* json_name, malloc'd */
	uint32_t number;
	int type;              /* T_* */
	int oneof;             /* index in the message's oneof_decl, or -1 */
	bool repeated;         /* label repeated (maps too) */
	bool packed;           /* JSON -> binary writes it packed */
	bool presence;         /* singular with explicit presence */
	bool is_map;           /* repeated map entry */
	bool unresolved;       /* type_name names nothing in the set */
	const char *type_name; /* for messages, groups, enums */
	struct pj_msg *msg;
	struct pj_enum *en;
} pj_field;

typedef struct pj_key {
	const char *key; /* json_name or proto name */
	uint32_t field;  /* index in fields */
} pj_key;

typedef struct pj_msg {
	char *name; /* full name, no leading dot; malloc'd */
	const msgproto *dp;
	bool proto3;
	bool map_entry;
	int wkt;
	pj_field *fields; /* declaration order */
	size_t nfields;
	uint32_t *by_num; /* field indices by number */
	pj_key *by_key;   /* sorted by key, then field index */
	size_t nkeys;
	size_t noneofs;
} pj_msg;

typedef struct pj_enumval {
	const char *name;
	int32_t number;
	uint32_t idx; /* declaration order */
} pj_enumval;

typedef struct pj_enum {
	char *name;
	const enumproto *dp;
	pj_enumval *by_name; /* sorted by name */
	pj_enumval *by_num;  /* sorted by number, then declaration order */
	size_t n;
	bool null_value; /* google.protobuf.NullValue */
} pj_enum;

struct pbjson {
	fdset *set; /* names point into it */
	pj_msg *msgs;
	size_t nmsgs;
	pj_enum *enums;
	size_t nenums;
};

/* ---- context: errors, path, depth, output ----------------------------- */

typedef struct ctx {
	const pbjson *p;
	char *err;
	size_t errlen;
	int rv; /* first error; later ones do not overwrite its message */
	char path[PATH_CAP];
	size_t plen;
	unsigned depth;
	uint8_t *b; /* output */
	size_t n, cap;
	const uint8_t *base; /* binary input, for byte offsets in messages */
	int indent;
	unsigned level;
	uint8_t first[JSON_LEVELS + 4];
} ctx;

static void
sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

static int fail(ctx *c, int rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first error: "path: message". Returns rv. */
static int
fail(ctx *c, int rv, const char *fmt, ...)
{
	if (c->rv != 0)
		return c->rv;
	c->rv = rv;
	if (c->err == NULL || c->errlen == 0)
		return rv;
	size_t off = 0;
	int k = 0;
	if (c->plen > 160) /* deep: keep both ends */
		k = snprintf(c->err, c->errlen, "%.40s...%s: ", c->path, c->path + c->plen - 110);
	else if (c->plen > 0)
		k = snprintf(c->err, c->errlen, "%s: ", c->path);
	off = k < 0 ? 0 : (size_t)k;
	if (off < c->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err + off, c->errlen - off, fmt, ap);
		va_end(ap);
	}
	sanitize(c->err);
	return rv;
}

static int
oom(ctx *c)
{
	return fail(c, SAGA_ENOMEM, "out of memory");
}

/* Quotes up to 40 bytes of s for an error message: printable ASCII as is,
 * the rest as \xNN, "..." when cut. */
static const char *
snip(const char *s, size_t len, bool quote, char *buf, size_t cap)
{
	size_t o = 0;
	if (quote)
		buf[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (i >= 40 || o + 8 >= cap) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (ch == '"' || ch == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)ch;
		} else if (ch >= 0x20 && ch < 0x7f) {
			buf[o++] = (char)ch;
		} else {
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
		}
	}
	if (quote)
		buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static void path_add(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
path_add(ctx *c, const char *fmt, ...)
{
	if (c->plen + 1 >= PATH_CAP)
		return;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(c->path + c->plen, PATH_CAP - c->plen, fmt, ap);
	va_end(ap);
	if (k > 0)
		c->plen += (size_t)k < PATH_CAP - c->plen ? (size_t)k : PATH_CAP - 1 - c->plen;
}

static size_t
path_field(ctx *c, const char *name)
{
	size_t mark = c->plen;
	path_add(c, c->plen > 0 ? ".%.64s" : "%.64s", name);
	return mark;
}

static size_t
path_index(ctx *c, size_t i)
{
	size_t mark = c->plen;
	path_add(c, "[%zu]", i);
	return mark;
}

static size_t
path_key(ctx *c, const char *key, size_t len)
{
	char buf[200];
	size_t mark = c->plen;
	path_add(c, "[%s]", snip(key, len, true, buf, sizeof(buf)));
	return mark;
}

static void
path_pop(ctx *c, size_t mark)
{
	c->plen = mark;
	c->path[mark] = '\0';
}

/* Room for len more output bytes. */
static int
reserve(ctx *c, size_t len)
{
	if (len <= c->cap - c->n)
		return 0;
	if (len > PBJSON_MAX_OUTPUT - c->n)
		return fail(
		    c, SAGA_ETOOBIG, "output would be larger than %u bytes", PBJSON_MAX_OUTPUT);
	size_t nc = c->cap ? c->cap : 256;
	while (nc - c->n < len)
		nc *= 2;
	if (nc > PBJSON_MAX_OUTPUT)
		nc = PBJSON_MAX_OUTPUT;
	uint8_t *nb = realloc(c->b, nc);
	if (nb == NULL)
		return oom(c);
	c->b = nb;
	c->cap = nc;
	return 0;
}

static int
put(ctx *c, const void *s, size_t len)
{
	int rv;
	if ((rv = reserve(c, len)) != 0)
		return rv;
	if (len > 0)
		memcpy(c->b + c->n, s, len);
	c->n += len;
	return 0;
}

static int
puts_(ctx *c, const char *s)
{
	return put(c, s, strlen(s));
}

#define TRY(x)                      \
	do {                        \
		int rv_ = (x);      \
		if (rv_ != 0)       \
			return rv_; \
	} while (0)

/* ---- small shared helpers ---------------------------------------------- */

static int
put_b64(ctx *c, const uint8_t *p, size_t len)
{
	TRY(reserve(c, CM_BASE64_LEN(len)));
	c->n += cm_base64_encode((char *)c->b + c->n, p, len);
	return 0;
}

static bool
isdig(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Is s[0..len) a JSON number? */
static bool
num_syntax(const char *s, size_t len)
{
	size_t i = 0;
	if (i < len && s[i] == '-')
		i++;
	if (i >= len || !isdig(s[i]))
		return false;
	if (s[i] == '0')
		i++;
	else
		while (i < len && isdig(s[i]))
			i++;
	if (i < len && s[i] == '.') {
		i++;
		if (i >= len || !isdig(s[i]))
			return false;
		while (i < len && isdig(s[i]))
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || !isdig(s[i]))
			return false;
		while (i < len && isdig(s[i]))
			i++;
	}
	return i == len;
}

enum { NUM_OK, NUM_SYNTAX, NUM_FRAC, NUM_RANGE };

/* The exact integer value of JSON number text ("12", "-3", "1.0e3"):
 * NUM_OK with sign and magnitude, or NUM_SYNTAX, NUM_FRAC (not a whole
 * number), NUM_RANGE (magnitude of 2^64 or more). */
static int
num_int(const char *s, size_t len, bool *neg, uint64_t *mag)
{
	*neg = false;
	*mag = 0;
	if (!num_syntax(s, len))
		return NUM_SYNTAX;
	size_t i = 0;
	if (s[i] == '-') {
		*neg = true;
		i++;
	}
	size_t is = i;
	while (i < len && isdig(s[i]))
		i++;
	size_t ie = i, fs = i, fe = i;
	if (i < len && s[i] == '.') {
		fs = ++i;
		while (i < len && isdig(s[i]))
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
		return oom(c);
	memcpy(t, s, len);
	t[len] = '\0';
	*out = strtod(t, NULL);
	if (t != buf)
		free(t);
	return 0;
}

static bool
is_packable(int type)
{
	return type != T_STRING && type != T_BYTES && type != T_MESSAGE && type != T_GROUP;
}

static unsigned
type_wt(int type)
{
	switch (type) {
	case T_DOUBLE:
	case T_FIXED64:
	case T_SFIXED64:
		return WT_I64;
	case T_FLOAT:
	case T_FIXED32:
	case T_SFIXED32:
		return WT_I32;
	case T_STRING:
	case T_BYTES:
	case T_MESSAGE:
		return WT_LEN;
	case T_GROUP:
		return WT_SGROUP;
	default:
		return WT_VARINT;
	}
}

static bool
is_64bit_int(int type)
{
	return type == T_INT64 || type == T_UINT64 || type == T_SINT64 || type == T_FIXED64 ||
	    type == T_SFIXED64;
}

static const char *
type_label(int type)
{
	static const char *const names[] = { "?", "double", "float", "int64", "uint64", "int32",
		"fixed64", "fixed32", "bool", "string", "group", "message", "bytes", "uint32",
		"enum", "sfixed32", "sfixed64", "sint32", "sint64" };
	return type >= 1 && type <= 18 ? names[type] : "?";
}

/* Binary search over a by_num array. */
static const pj_field *
field_by_num(const pj_msg *m, uint32_t num)
{
	size_t lo = 0, hi = m->nfields;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t v = m->fields[m->by_num[mid]].number;
		if (v == num)
			return &m->fields[m->by_num[mid]];
		if (v < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
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

/* ---- calendar (Howard Hinnant's civil-from-days) ----------------------- */

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

static int
days_in_month(int64_t y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

/* ======================================================================
 * The type pool
 * ====================================================================== */

typedef struct builder {
	pbjson *p;
	size_t mcap, ecap;
	char *err;
	size_t errlen;
} builder;

static int bfail(builder *b, int rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
bfail(builder *b, int rv, const char *fmt, ...)
{
	if (b->err != NULL && b->errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(b->err, b->errlen, fmt, ap);
		va_end(ap);
		sanitize(b->err);
	}
	return rv;
}

static char *
join_name(const char *prefix, const char *name)
{
	size_t pl = strlen(prefix), nl = strlen(name);
	char *s = malloc(pl + nl + 2);
	if (s == NULL)
		return NULL;
	memcpy(s, prefix, pl);
	size_t o = pl;
	if (pl > 0)
		s[o++] = '.';
	memcpy(s + o, name, nl + 1);
	return s;
}

static int
add_enums(builder *b, const char *prefix, enumproto *const *enums, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (enums[i]->name == NULL)
			return bfail(b, SAGA_EPROTO, "an enum in %s has no name", prefix);
		if (b->p->nenums == b->ecap) {
			size_t nc = b->ecap ? 2 * b->ecap : 16;
			pj_enum *ne = realloc(b->p->enums, nc * sizeof(*ne));
			if (ne == NULL)
				return bfail(b, SAGA_ENOMEM, "out of memory");
			b->p->enums = ne;
			b->ecap = nc;
		}
		pj_enum *e = &b->p->enums[b->p->nenums];
		memset(e, 0, sizeof(*e));
		e->dp = enums[i];
		if ((e->name = join_name(prefix, enums[i]->name)) == NULL)
			return bfail(b, SAGA_ENOMEM, "out of memory");
		b->p->nenums++;
	}
	return 0;
}

static int
add_msgs(builder *b, const char *prefix, msgproto *const *msgs, size_t n, bool proto3)
{
	for (size_t i = 0; i < n; i++) {
		const msgproto *dp = msgs[i];
		if (dp->name == NULL)
			return bfail(b, SAGA_EPROTO, "a message in %s has no name", prefix);
		if (b->p->nmsgs == b->mcap) {
			size_t nc = b->mcap ? 2 * b->mcap : 16;
			pj_msg *nm = realloc(b->p->msgs, nc * sizeof(*nm));
			if (nm == NULL)
				return bfail(b, SAGA_ENOMEM, "out of memory");
			b->p->msgs = nm;
			b->mcap = nc;
		}
		pj_msg *m = &b->p->msgs[b->p->nmsgs];
		memset(m, 0, sizeof(*m));
		m->dp = dp;
		m->proto3 = proto3;
		m->map_entry =
		    dp->options != NULL && dp->options->has_map_entry && dp->options->map_entry;
		if ((m->name = join_name(prefix, dp->name)) == NULL)
			return bfail(b, SAGA_ENOMEM, "out of memory");
		b->p->nmsgs++;
		/* m may move as the array grows: use the name through the
		 * array again. wire_unpack bounded the nesting of the set. */
		const char *name = b->p->msgs[b->p->nmsgs - 1].name;
		int rv;
		if ((rv = add_enums(b, name, dp->enum_type, dp->n_enum_type)) != 0)
			return rv;
		if ((rv = add_msgs(b, name, dp->nested_type, dp->n_nested_type, proto3)) != 0)
			return rv;
	}
	return 0;
}

static int
cmp_msg(const void *a, const void *b)
{
	return strcmp(((const pj_msg *)a)->name, ((const pj_msg *)b)->name);
}

static int
cmp_enum(const void *a, const void *b)
{
	return strcmp(((const pj_enum *)a)->name, ((const pj_enum *)b)->name);
}

/* Binary search of n records of `size` bytes sorted by their first
 * member, a `char *name` (pj_msg, pj_enum). A leading dot is ignored. */
static void *
find_named(void *base, size_t n, size_t size, const char *name)
{
	if (name[0] == '.')
		name++;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		char *rec = (char *)base + mid * size;
		int r = strcmp(name, *(char *const *)(void *)rec);
		if (r == 0)
			return rec;
		if (r > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

_Static_assert(offsetof(pj_msg, name) == 0, "find_named needs the name first");
_Static_assert(offsetof(pj_enum, name) == 0, "find_named needs the name first");

static pj_msg *
find_msg(const pbjson *p, const char *name)
{
	return find_named(p->msgs, p->nmsgs, sizeof(*p->msgs), name);
}

static pj_enum *
find_enum(const pbjson *p, const char *name)
{
	return find_named(p->enums, p->nenums, sizeof(*p->enums), name);
}

/* protoc's ToJsonName: drop underscores, capitalize the letter after. */
static char *
json_name_of(const char *name)
{
	char *s = malloc(strlen(name) + 1);
	if (s == NULL)
		return NULL;
	size_t o = 0;
	bool up = false;
	for (const char *q = name; *q; q++) {
		if (*q == '_') {
			up = true;
		} else if (up) {
			s[o++] = (*q >= 'a' && *q <= 'z') ? (char)(*q - 'a' + 'A') : *q;
			up = false;
		} else {
			s[o++] = *q;
		}
	}
	s[o] = '\0';
	return s;
}

typedef struct numidx {
	uint32_t num, idx;
} numidx;

static int
cmp_numidx(const void *a, const void *b)
{
	const numidx *x = a, *y = b;
	if (x->num != y->num)
		return x->num < y->num ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int
cmp_key(const void *a, const void *b)
{
	const pj_key *ka = a, *kb = b;
	int r = strcmp(ka->key, kb->key);
	if (r != 0)
		return r;
	return ka->field < kb->field ? -1 : ka->field > kb->field;
}

static int
cmp_enumval_name(const void *a, const void *b)
{
	return strcmp(((const pj_enumval *)a)->name, ((const pj_enumval *)b)->name);
}

static int
cmp_enumval_num(const void *a, const void *b)
{
	const pj_enumval *x = a, *y = b;
	if (x->number != y->number)
		return x->number < y->number ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int
build_enum(builder *b, pj_enum *e)
{
	const enumproto *dp = e->dp;
	e->n = dp->n_value;
	e->null_value = strcmp(e->name, "google.protobuf.NullValue") == 0;
	if (e->n == 0)
		return 0;
	e->by_name = calloc(e->n, sizeof(*e->by_name));
	e->by_num = calloc(e->n, sizeof(*e->by_num));
	if (e->by_name == NULL || e->by_num == NULL)
		return bfail(b, SAGA_ENOMEM, "out of memory");
	for (size_t i = 0; i < e->n; i++) {
		const Google__Protobuf__EnumValueDescriptorProto *v = dp->value[i];
		if (v->name == NULL || !v->has_number)
			return bfail(
			    b, SAGA_EPROTO, "enum %s: a value has no name or number", e->name);
		e->by_name[i] = (pj_enumval) { v->name, v->number, (uint32_t)i };
	}
	memcpy(e->by_num, e->by_name, e->n * sizeof(*e->by_num));
	qsort(e->by_name, e->n, sizeof(*e->by_name), cmp_enumval_name);
	qsort(e->by_num, e->n, sizeof(*e->by_num), cmp_enumval_num);
	return 0;
}

static int
build_fields(builder *b, pj_msg *m)
{
	const msgproto *dp = m->dp;
	m->nfields = dp->n_field;
	m->noneofs = dp->n_oneof_decl;
	if (m->nfields == 0)
		return 0;
	m->fields = calloc(m->nfields, sizeof(*m->fields));
	m->by_num = calloc(m->nfields, sizeof(*m->by_num));
	m->by_key = calloc(2 * m->nfields, sizeof(*m->by_key));
	if (m->fields == NULL || m->by_num == NULL || m->by_key == NULL)
		return bfail(b, SAGA_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->nfields; i++) {
		const fieldproto *fp = dp->field[i];
		pj_field *f = &m->fields[i];
		if (fp->name == NULL)
			return bfail(b, SAGA_EPROTO, "message %s: a field has no name", m->name);
		f->name = fp->name;
		if (!fp->has_number || fp->number < 1 || (uint32_t)fp->number > MAX_FIELD_NUMBER)
			return bfail(b, SAGA_EPROTO, "message %s: field %s has no valid number",
			    m->name, f->name);
		f->number = (uint32_t)fp->number;
		if (!fp->has_type || (int)fp->type < T_DOUBLE || (int)fp->type > T_SINT64)
			return bfail(b, SAGA_EPROTO, "message %s: field %s has no valid type",
			    m->name, f->name);
		f->type = (int)fp->type;
		f->json = fp->json_name != NULL ? strdup(fp->json_name) : json_name_of(fp->name);
		if (f->json == NULL)
			return bfail(b, SAGA_ENOMEM, "out of memory");
		f->repeated = fp->has_label &&
		    fp->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;
		f->oneof = -1;
		if (fp->has_oneof_index) {
			if (fp->oneof_index < 0 || (size_t)fp->oneof_index >= m->noneofs ||
			    f->repeated)
				return bfail(b, SAGA_EPROTO, "message %s: field %s has a bad oneof",
				    m->name, f->name);
			f->oneof = fp->oneof_index;
		}
		if (f->type == T_MESSAGE || f->type == T_GROUP || f->type == T_ENUM) {
			if (fp->type_name == NULL)
				return bfail(b, SAGA_EPROTO,
				    "message %s: field %s has no type name", m->name, f->name);
			f->type_name = fp->type_name[0] == '.' ? fp->type_name + 1 : fp->type_name;
			if (f->type == T_ENUM)
				f->en = find_enum(b->p, fp->type_name);
			else
				f->msg = find_msg(b->p, fp->type_name);
			f->unresolved = f->en == NULL && f->msg == NULL;
		}
		f->presence = !f->repeated &&
		    (f->type == T_MESSAGE || f->type == T_GROUP || f->oneof >= 0 ||
			(fp->has_proto3_optional && fp->proto3_optional) || !m->proto3);
		if (f->repeated && is_packable(f->type)) {
			const Google__Protobuf__FieldOptions *o = fp->options;
			bool set = o != NULL && o->has_packed;
			f->packed = m->proto3 ? !(set && !o->packed) : (set && o->packed);
		}
		m->by_key[m->nkeys++] = (pj_key) { f->json, (uint32_t)i };
		if (strcmp(f->json, f->name) != 0)
			m->by_key[m->nkeys++] = (pj_key) { f->name, (uint32_t)i };
	}
	numidx *ni = malloc(m->nfields * sizeof(*ni));
	if (ni == NULL)
		return bfail(b, SAGA_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->nfields; i++)
		ni[i] = (numidx) { m->fields[i].number, (uint32_t)i };
	qsort(ni, m->nfields, sizeof(*ni), cmp_numidx);
	for (size_t i = 0; i < m->nfields; i++)
		m->by_num[i] = ni[i].idx;
	free(ni);
	for (size_t i = 1; i < m->nfields; i++)
		if (m->fields[m->by_num[i]].number == m->fields[m->by_num[i - 1]].number)
			return bfail(b, SAGA_EPROTO,
			    "message %s: field number %" PRIu32 " used twice", m->name,
			    m->fields[m->by_num[i]].number);
	qsort(m->by_key, m->nkeys, sizeof(*m->by_key), cmp_key);
	return 0;
}

static bool
singular(const pj_field *f, int type)
{
	return f != NULL && !f->repeated && f->type == type;
}

static bool
is_map_entry_shape(const pj_msg *e)
{
	if (!e->map_entry || e->nfields != 2)
		return false;
	const pj_field *k = field_by_num(e, 1), *v = field_by_num(e, 2);
	if (k == NULL || v == NULL || k->repeated || v->repeated || v->unresolved)
		return false;
	switch (k->type) {
	case T_DOUBLE:
	case T_FLOAT:
	case T_BYTES:
	case T_MESSAGE:
	case T_GROUP:
	case T_ENUM:
		return false;
	default:
		return v->type != T_GROUP;
	}
}

static int
wkt_of(const pj_msg *m)
{
	static const struct {
		const char *name;
		int type;
	} wrappers[] = {
		{ "google.protobuf.DoubleValue", T_DOUBLE },
		{ "google.protobuf.FloatValue", T_FLOAT },
		{ "google.protobuf.Int64Value", T_INT64 },
		{ "google.protobuf.UInt64Value", T_UINT64 },
		{ "google.protobuf.Int32Value", T_INT32 },
		{ "google.protobuf.UInt32Value", T_UINT32 },
		{ "google.protobuf.BoolValue", T_BOOL },
		{ "google.protobuf.StringValue", T_STRING },
		{ "google.protobuf.BytesValue", T_BYTES },
	};
	const char *n = m->name;
	if (strncmp(n, "google.protobuf.", 16) != 0)
		return WKT_NONE;
	const pj_field *f1 = field_by_num(m, 1);
	if (strcmp(n, "google.protobuf.Any") == 0)
		return WKT_ANY;
	if (strcmp(n, "google.protobuf.Timestamp") == 0 ||
	    strcmp(n, "google.protobuf.Duration") == 0) {
		if (m->nfields == 2 && singular(f1, T_INT64) &&
		    singular(field_by_num(m, 2), T_INT32))
			return n[16] == 'T' ? WKT_TIMESTAMP : WKT_DURATION;
		return WKT_NONE;
	}
	for (size_t i = 0; i < sizeof(wrappers) / sizeof(wrappers[0]); i++)
		if (strcmp(n, wrappers[i].name) == 0)
			return m->nfields == 1 && singular(f1, wrappers[i].type) ? WKT_WRAPPER
										 : WKT_NONE;
	if (strcmp(n, "google.protobuf.Struct") == 0) {
		if (m->nfields == 1 && f1 != NULL && f1->is_map) {
			const pj_field *k = field_by_num(f1->msg, 1), *v = field_by_num(f1->msg, 2);
			if (k->type == T_STRING && v->type == T_MESSAGE &&
			    strcmp(v->msg->name, "google.protobuf.Value") == 0)
				return WKT_STRUCT;
		}
		return WKT_NONE;
	}
	if (strcmp(n, "google.protobuf.ListValue") == 0) {
		if (m->nfields == 1 && f1 != NULL && f1->repeated && f1->type == T_MESSAGE &&
		    !f1->unresolved && strcmp(f1->msg->name, "google.protobuf.Value") == 0)
			return WKT_LIST;
		return WKT_NONE;
	}
	if (strcmp(n, "google.protobuf.FieldMask") == 0) {
		if (m->nfields == 1 && f1 != NULL && f1->repeated && f1->type == T_STRING)
			return WKT_FIELDMASK;
		return WKT_NONE;
	}
	if (strcmp(n, "google.protobuf.Value") == 0) {
		static const int want[] = { T_ENUM, T_DOUBLE, T_STRING, T_BOOL, T_MESSAGE,
			T_MESSAGE };
		static const char *const sub[] = { "google.protobuf.NullValue", NULL, NULL, NULL,
			"google.protobuf.Struct", "google.protobuf.ListValue" };
		if (m->nfields != 6)
			return WKT_NONE;
		for (uint32_t i = 0; i < 6; i++) {
			const pj_field *f = field_by_num(m, i + 1);
			if (!singular(f, want[i]) || f->unresolved || f->oneof < 0 ||
			    f->oneof != m->fields[0].oneof)
				return WKT_NONE;
			const char *tn = f->msg ? f->msg->name : f->en ? f->en->name : NULL;
			if (sub[i] != NULL && strcmp(tn, sub[i]) != 0)
				return WKT_NONE;
		}
		return WKT_VALUE;
	}
	return WKT_NONE;
}

void
pbjson_free(pbjson *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nmsgs; i++) {
		pj_msg *m = &p->msgs[i];
		for (size_t k = 0; m->fields != NULL && k < m->nfields; k++)
			free(m->fields[k].json);
		free(m->fields);
		free(m->by_num);
		free(m->by_key);
		free(m->name);
	}
	for (size_t i = 0; i < p->nenums; i++) {
		free(p->enums[i].by_name);
		free(p->enums[i].by_num);
		free(p->enums[i].name);
	}
	free(p->msgs);
	free(p->enums);
	if (p->set != NULL)
		wire_free(&p->set->base);
	free(p);
}

int
pbjson_new(const uint8_t *fdset_buf, size_t len, pbjson **out, char *err, size_t errlen)
{
	builder b = { .err = err, .errlen = errlen };
	int rv = 0;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || (fdset_buf == NULL && len > 0))
		return bfail(&b, SAGA_EINVAL, "invalid arguments");
	*out = NULL;
	if ((b.p = calloc(1, sizeof(*b.p))) == NULL)
		return bfail(&b, SAGA_ENOMEM, "out of memory");
	b.p->set = (fdset *)wire_unpack(
	    &google__protobuf__file_descriptor_set__descriptor, fdset_buf, len, 0, &rv);
	if (b.p->set == NULL) {
		if (rv == SAGA_ENOMEM || rv == SAGA_ETOOBIG)
			bfail(&b, rv, "descriptor set too large or too deeply nested to decode");
		else
			bfail(&b, rv = SAGA_EPROTO,
			    "not a FileDescriptorSet (expected protoc --descriptor_set_out "
			    "output)");
		goto fail;
	}
	for (size_t i = 0; i < b.p->set->n_file; i++) {
		const fileproto *fp = b.p->set->file[i];
		const char *pkg = fp->package != NULL ? fp->package : "";
		bool proto3 = fp->syntax != NULL && strcmp(fp->syntax, "proto3") == 0;
		if ((rv = add_enums(&b, pkg, fp->enum_type, fp->n_enum_type)) != 0 ||
		    (rv = add_msgs(&b, pkg, fp->message_type, fp->n_message_type, proto3)) != 0)
			goto fail;
	}
	pbjson *p = b.p;
	if (p->nmsgs > 0)
		qsort(p->msgs, p->nmsgs, sizeof(*p->msgs), cmp_msg);
	if (p->nenums > 0)
		qsort(p->enums, p->nenums, sizeof(*p->enums), cmp_enum);
	for (size_t i = 1; i < p->nmsgs; i++)
		if (strcmp(p->msgs[i].name, p->msgs[i - 1].name) == 0) {
			rv = bfail(&b, SAGA_EPROTO, "type %s is defined twice", p->msgs[i].name);
			goto fail;
		}
	for (size_t i = 1; i < p->nenums; i++)
		if (strcmp(p->enums[i].name, p->enums[i - 1].name) == 0) {
			rv = bfail(&b, SAGA_EPROTO, "enum %s is defined twice", p->enums[i].name);
			goto fail;
		}
	for (size_t i = 0; i < p->nenums; i++)
		if ((rv = build_enum(&b, &p->enums[i])) != 0)
			goto fail;
	for (size_t i = 0; i < p->nmsgs; i++)
		if ((rv = build_fields(&b, &p->msgs[i])) != 0)
			goto fail;
	/* Maps and well-known types need every message's fields. */
	for (size_t i = 0; i < p->nmsgs; i++) {
		pj_msg *m = &p->msgs[i];
		for (size_t k = 0; k < m->nfields; k++) {
			pj_field *f = &m->fields[k];
			f->is_map = f->repeated && f->type == T_MESSAGE && f->msg != NULL &&
			    is_map_entry_shape(f->msg);
		}
	}
	for (size_t i = 0; i < p->nmsgs; i++)
		p->msgs[i].wkt = wkt_of(&p->msgs[i]);
	*out = p;
	return 0;
fail:
	pbjson_free(b.p);
	return rv;
}

int
pbjson_has_message(const pbjson *p, const char *full_name)
{
	return p != NULL && full_name != NULL && find_msg(p, full_name) != NULL;
}

/* ======================================================================
 * Binary -> JSON
 * ====================================================================== */

typedef struct rec {
	uint32_t num;
	uint8_t wt;
	bool used;        /* consumed by a known field */
	uint64_t v;       /* varint, fixed64 or fixed32 value */
	const uint8_t *p; /* length-delimited or group payload */
	size_t len;
} rec;

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
static int
next_rec(ctx *c, const uint8_t *p, size_t len, size_t *pos, rec *r)
{
	size_t at = *pos;
	uint64_t tag;
	if (cm_varint_read(p, len, pos, &tag) != 0)
		return fail(
		    c, SAGA_EPROTO, "truncated or malformed tag at byte %zu", off_of(c, p + at));
	if (tag > UINT32_MAX || (tag >> 3) == 0)
		return fail(c, SAGA_EPROTO, "invalid field number %" PRIu64 " at byte %zu",
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
			return fail(c, SAGA_EPROTO,
			    "truncated varint field %" PRIu32 " at byte %zu", r->num,
			    off_of(c, p + at));
		return 0;
	case WT_I64:
		if (len - *pos < 8)
			return fail(c, SAGA_EPROTO,
			    "truncated fixed64 field %" PRIu32 " at byte %zu", r->num,
			    off_of(c, p + at));
		for (int k = 7; k >= 0; k--)
			r->v = r->v << 8 | p[*pos + (size_t)k];
		*pos += 8;
		return 0;
	case WT_I32:
		if (len - *pos < 4)
			return fail(c, SAGA_EPROTO,
			    "truncated fixed32 field %" PRIu32 " at byte %zu", r->num,
			    off_of(c, p + at));
		for (int k = 3; k >= 0; k--)
			r->v = r->v << 8 | p[*pos + (size_t)k];
		*pos += 4;
		return 0;
	case WT_LEN: {
		uint64_t l;
		if (cm_varint_read(p, len, pos, &l) != 0 || l > len - *pos)
			return fail(c, SAGA_EPROTO,
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
			return fail(
			    c, SAGA_ETOOBIG, "groups nest deeper than %d levels", PBJSON_MAX_DEPTH);
		stack[sp++] = r->num;
		r->p = p + *pos;
		for (;;) {
			size_t tat = *pos;
			uint64_t t, skip;
			if (cm_varint_read(p, len, pos, &t) != 0 || t > UINT32_MAX || (t >> 3) == 0)
				return fail(c, SAGA_EPROTO,
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
					return fail(c, SAGA_ETOOBIG,
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
				return fail(c, SAGA_EPROTO,
				    "malformed group field %" PRIu32 " at byte %zu", r->num,
				    off_of(c, p + at));
		}
	}
	default:
		return fail(c, SAGA_EPROTO, "invalid wire type %u (field %" PRIu32 ") at byte %zu",
		    (unsigned)r->wt, r->num, off_of(c, p + at));
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
					rv = oom(c);
					goto fail;
				}
				rs->r = nr;
				cap = nc;
			}
			if ((rv = next_rec(c, sp[s].p, sp[s].len, &pos, &rs->r[rs->n])) != 0)
				goto fail;
			if (rs->r[rs->n].wt == WT_EGROUP) {
				rv = fail(c, SAGA_EPROTO, "unexpected end-group tag at byte %zu",
				    off_of(c, sp[s].p + at));
				goto fail;
			}
			rs->n++;
		}
	}
	if (rs->n == 0)
		return 0;
	if ((rs->ord = malloc(rs->n * sizeof(*rs->ord))) == NULL) {
		rv = oom(c);
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

static bool
wt_ok(const pj_field *f, unsigned wt)
{
	return wt == type_wt(f->type) || (f->repeated && is_packable(f->type) && wt == WT_LEN);
}

/* The last record of field f in rs, or NULL. */
static const rec *
last_rec(const recs *rs, const pj_field *f)
{
	const rec *last = NULL;
	for (size_t i = recs_lower(rs, f->number); i < rs->n && rs->ord[i].num == f->number; i++)
		if (wt_ok(f, rs->r[rs->ord[i].i].wt))
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
	TRY(put(c, "\n", 1));
	size_t n = (size_t)c->level * (size_t)c->indent;
	while (n > 0) {
		size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
		TRY(put(c, spaces, k));
		n -= k;
	}
	return 0;
}

static int
w_open(ctx *c, char ch)
{
	if (c->level + 1 >= sizeof(c->first))
		return fail(c, SAGA_ETOOBIG, "JSON would nest too deeply");
	TRY(put(c, &ch, 1));
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
	return put(c, &ch, 1);
}

static int
w_item(ctx *c)
{
	if (!c->first[c->level])
		TRY(put(c, ",", 1));
	c->first[c->level] = 0;
	return w_nl(c);
}

/* A JSON string from valid UTF-8. */
static int
w_str(ctx *c, const uint8_t *s, size_t len)
{
	size_t n = cm_json_escaped_len((const char *)s, len, CM_JSON_BF);
	TRY(reserve(c, n + 2));
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
	return c->indent ? put(c, ": ", 2) : put(c, ":", 1);
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
		return puts_(c, "\"NaN\"");
	if (isinf(d))
		return puts_(c, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
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
	return puts_(c, buf);
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
			return puts_(c, "null");
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
		TRY(put(c, "\"", 1));
		TRY(put(c, buf, (size_t)k));
		return put(c, "\"", 1);
	}
	return put(c, buf, (size_t)k);
}

static int
w_string_field(ctx *c, const uint8_t *p, size_t len)
{
	if (!cm_utf8_valid(p, len))
		return fail(c, SAGA_EPROTO, "invalid UTF-8 in a string at byte %zu", off_of(c, p));
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
		TRY(put(c, "\"", 1));
		TRY(put_b64(c, r->p, r->len));
		return put(c, "\"", 1);
	default:
		return w_scalar(c, f, norm(f->type, r->v));
	}
}

/* The default value of a field (map values and wrappers print it). */
static int
w_default(ctx *c, const pj_field *f)
{
	if (f->type == T_STRING || f->type == T_BYTES)
		return puts_(c, "\"\"");
	return w_scalar(c, f, 0);
}

static int print_msg(ctx *c, const pj_msg *m, const span *sp, size_t nsp);

static int
unresolved(ctx *c, const pj_field *f)
{
	return fail(c, SAGA_ENOTFOUND,
	    "type %s of field %s is not in the descriptor set (compile with --include_imports)",
	    f->type_name, f->name);
}

/* Prints a singular message field from its records in rs->ord[lo..hi)
 * that come after binary position `after` (a oneof's cut). */
static int
print_merged(ctx *c, const pj_field *f, const recs *rs, size_t lo, size_t hi, size_t after)
{
	span one = { NULL, 0 }, *sp = &one;
	size_t n = 0;
	for (size_t i = lo; i < hi; i++)
		if (rs->ord[i].i + 1 > after && wt_ok(f, rs->r[rs->ord[i].i].wt))
			n++;
	if (n > 1 && (sp = malloc(n * sizeof(*sp))) == NULL)
		return oom(c);
	n = 0;
	for (size_t i = lo; i < hi; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (rs->ord[i].i + 1 > after && wt_ok(f, r->wt))
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
	unsigned wt = type_wt(f->type);
	size_t w = wt == WT_I64 ? 8 : 4;
	if (wt != WT_VARINT && r->len % w != 0)
		return fail(c, SAGA_EPROTO,
		    "packed field of %zu bytes is not a whole number of %zu-byte values at byte "
		    "%zu",
		    r->len, w, off_of(c, r->p));
	while (pos < r->len) {
		uint64_t v = 0;
		if (wt == WT_VARINT) {
			size_t at = pos;
			if (cm_varint_read(r->p, r->len, &pos, &v) != 0) {
				path_index(c, *idx);
				return fail(c, SAGA_EPROTO, "malformed packed field at byte %zu",
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
		any = wt_ok(f, r->wt) && (r->wt != WT_LEN || !is_packable(f->type) || r->len > 0);
	}
	if (!any)
		return 0;
	TRY(w_key(c, f->json, strlen(f->json)));
	TRY(w_open(c, '['));
	size_t idx = 0;
	for (size_t i = lo; i < hi; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (!wt_ok(f, r->wt))
			continue;
		if (r->wt == WT_LEN && is_packable(f->type)) {
			TRY(print_packed(c, f, r, &idx));
			continue;
		}
		size_t mark = path_index(c, idx);
		TRY(w_item(c));
		if (f->type == T_MESSAGE || f->type == T_GROUP) {
			span s = { r->p, r->len };
			TRY(print_msg(c, f->msg, &s, 1));
		} else {
			TRY(w_rec_value(c, f, r));
		}
		idx++;
		path_pop(c, mark);
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
			rv = fail(c, SAGA_EPROTO, "invalid UTF-8 in a map key at byte %zu",
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
	const pj_field *kf = field_by_num(f->msg, 1), *vf = field_by_num(f->msg, 2);
	size_t n = 0, keep = 0;
	int rv = 0;
	mapent *es = NULL;
	for (size_t i = lo; i < hi; i++)
		n += rs->r[rs->ord[i].i].wt == WT_LEN;
	if (vf->unresolved)
		return unresolved(c, vf);
	if (c->depth >= PBJSON_MAX_DEPTH && n > 0)
		return fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	if (n > 0 && (es = calloc(n, sizeof(*es))) == NULL) {
		rv = oom(c);
		goto out;
	}
	n = 0;
	for (size_t i = lo; i < hi; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (r->wt != WT_LEN)
			continue;
		es[n].e = (span) { r->p, r->len };
		es[n].idx = rs->ord[i].i;
		size_t mark = path_index(c, n);
		rv = map_key(c, kf, &es[n]);
		path_pop(c, mark);
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
		size_t mark = path_key(c, k, es[i].klen);
		if ((rv = w_key(c, k, es[i].klen)) != 0 || (rv = map_value(c, vf, &es[i].e)) != 0)
			goto out;
		path_pop(c, mark);
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
		TRY(puts_(c, buf));
		TRY(w_ckey(c, "wire"));
		TRY(w_str(c, (const uint8_t *)wire[r->wt], strlen(wire[r->wt])));
		TRY(w_ckey(c, "value"));
		switch (r->wt) {
		case WT_VARINT:
		case WT_I64:
			snprintf(buf, sizeof(buf), "\"%" PRIu64 "\"", r->v);
			TRY(puts_(c, buf));
			break;
		case WT_I32:
			snprintf(buf, sizeof(buf), "%" PRIu64, r->v);
			TRY(puts_(c, buf));
			break;
		default:
			TRY(put(c, "\"", 1));
			TRY(put_b64(c, r->p, r->len));
			TRY(put(c, "\"", 1));
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
		return unresolved(c, f);
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
			rv = oom(c);
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
			if (!wt_ok(f, r->wt))
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
		if (fr[fi].latest == 0)
			continue;
		if (f->oneof >= 0) {
			if (win[f->oneof] != fi)
				continue;
			after = second[f->oneof];
		}
		size_t mark = path_field(c, f->json);
		rv = print_field(c, f, rs, &fr[fi], after);
		path_pop(c, mark);
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
	const rec *sr = last_rec(rs, field_by_num(m, 1)), *nr = last_rec(rs, field_by_num(m, 2));
	int64_t s = sr ? (int64_t)sr->v : 0;
	int32_t ns = nr ? (int32_t)(uint32_t)nr->v : 0;
	if (s < TS_MIN_SECONDS || s > TS_MAX_SECONDS || ns < 0 || ns > 999999999)
		return fail(c, SAGA_EPROTO,
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
	return put(c, buf, (size_t)k);
}

static int
print_duration(ctx *c, const pj_msg *m, const recs *rs)
{
	const rec *sr = last_rec(rs, field_by_num(m, 1)), *nr = last_rec(rs, field_by_num(m, 2));
	int64_t s = sr ? (int64_t)sr->v : 0;
	int32_t ns = nr ? (int32_t)(uint32_t)nr->v : 0;
	if (s < -DUR_MAX_SECONDS || s > DUR_MAX_SECONDS || ns < -999999999 || ns > 999999999 ||
	    (s > 0 && ns < 0) || (s < 0 && ns > 0))
		return fail(c, SAGA_EPROTO,
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
	return put(c, buf, (size_t)k);
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
		if (r->num < 1 || r->num > 6 || !wt_ok(field_by_num(m, r->num), r->wt))
			continue;
		if (r->num != kind) {
			kind = r->num;
			start = i;
		}
		last = r;
	}
	const pj_field *f = kind ? field_by_num(m, kind) : NULL;
	switch (kind) {
	case 0:
	case 1:
		return puts_(c, "null");
	case 2:
		if (!isfinite(f64(last->v)))
			return fail(c, SAGA_EINVAL,
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
			return oom(c);
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
	const pj_field *f = field_by_num(m, 1);
	size_t lo = recs_lower(rs, 1), idx = 0;
	TRY(w_open(c, '['));
	for (size_t i = lo; i < rs->n && rs->ord[i].num == 1; i++) {
		const rec *r = &rs->r[rs->ord[i].i];
		if (r->wt != WT_LEN)
			continue;
		size_t mark = path_index(c, idx++);
		span s = { r->p, r->len };
		TRY(w_item(c));
		TRY(print_msg(c, f->msg, &s, 1));
		path_pop(c, mark);
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
		return oom(c);
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
			return fail(c, SAGA_EPROTO,
			    "FieldMask path %s (at byte %zu) has no lowerCamelCase JSON form",
			    snip((const char *)r->p, r->len, true, buf, sizeof(buf)),
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
		return fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	recs rs;
	int rv = collect(c, sp, nsp, &rs);
	if (rv == 0) {
		switch (m->wkt) {
		case WKT_ANY:
			rv = fail(c, SAGA_EINVAL, "google.protobuf.Any is not supported");
			break;
		case WKT_TIMESTAMP:
			rv = print_timestamp(c, m, &rs);
			break;
		case WKT_DURATION:
			rv = print_duration(c, m, &rs);
			break;
		case WKT_WRAPPER: {
			const pj_field *f = field_by_num(m, 1);
			const rec *r = last_rec(&rs, f);
			rv = r ? w_rec_value(c, f, r) : w_default(c, f);
			break;
		}
		case WKT_STRUCT: {
			const pj_field *f = field_by_num(m, 1);
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

static const pj_msg *
root_type(ctx *c, const pbjson *p, const char *type)
{
	const pj_msg *m = find_msg(p, type);
	if (m == NULL) {
		char buf[200];
		fail(c, SAGA_ENOTFOUND, "message type %s is not in the descriptor set",
		    snip(type, strlen(type), false, buf, sizeof(buf)));
	}
	return m;
}

int
pbjson_to_json(const pbjson *p, const char *type, const uint8_t *buf, size_t len, int indent,
    char **out, char *err, size_t errlen)
{
	ctx c = { .p = p, .err = err, .errlen = errlen, .base = buf, .indent = indent };
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return fail(&c, SAGA_EINVAL, "invalid arguments");
	*out = NULL;
	if (p == NULL || type == NULL || (buf == NULL && len > 0) || indent < 0 ||
	    indent > PBJSON_MAX_INDENT)
		return fail(&c, SAGA_EINVAL, "invalid arguments");
	const pj_msg *m = root_type(&c, p, type);
	if (m == NULL)
		return c.rv;
	span s = { buf, len };
	int rv = print_msg(&c, m, &s, 1);
	if (rv == 0)
		rv = put(&c, "", 1);
	if (rv != 0) {
		free(c.b);
		return rv;
	}
	*out = (char *)c.b;
	return 0;
}

/* ======================================================================
 * JSON -> binary
 * ====================================================================== */

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jnode {
	struct jnode *next; /* sibling */
	struct jnode *kid;  /* first child */
	const char *s;      /* J_NUM: text in the input; J_STR: decoded */
	const char *key;    /* member name, decoded */
	size_t len, klen, nkids;
	uint8_t t;
} jnode;

#define JBLOCK 256
typedef struct jblock {
	struct jblock *next;
	size_t used;
	jnode n[JBLOCK];
} jblock;

typedef struct jparser {
	ctx *c;
	const char *s;
	size_t len, pos;
	jblock *blocks;
	char *sbuf; /* decoded strings and keys: never longer than the input */
	size_t sn;
	unsigned depth;
} jparser;

static int
jp_fail(jparser *j, int rv, const char *what)
{
	unsigned line = 1, col = 1;
	for (size_t i = 0; i < j->pos && i < j->len; i++) {
		if (j->s[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return fail(j->c, rv, "invalid JSON at line %u, column %u: %s", line, col, what);
}

static jnode *
jp_node(jparser *j, uint8_t t)
{
	if (j->blocks == NULL || j->blocks->used == JBLOCK) {
		jblock *b = malloc(sizeof(*b));
		if (b == NULL)
			return NULL;
		b->next = j->blocks;
		b->used = 0;
		j->blocks = b;
	}
	jnode *n = &j->blocks->n[j->blocks->used++];
	memset(n, 0, sizeof(*n));
	n->t = t;
	return n;
}

static void
jp_ws(jparser *j)
{
	while (j->pos < j->len) {
		char ch = j->s[j->pos];
		if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
			break;
		j->pos++;
	}
}

static int
hex4(const char *s, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char ch = s[i];
		int d = ch >= '0' && ch <= '9' ? ch - '0'
		    : ch >= 'a' && ch <= 'f'   ? ch - 'a' + 10
		    : ch >= 'A' && ch <= 'F'   ? ch - 'A' + 10
					       : -1;
		if (d < 0)
			return -1;
		*v = *v << 4 | (uint32_t)d;
	}
	return 0;
}

/* A JSON string at j->pos (the opening quote), decoded into sbuf. */
static int
jp_string(jparser *j, const char **out, size_t *outlen)
{
	char *o = j->sbuf + j->sn;
	size_t n = 0;
	j->pos++;
	for (;;) {
		if (j->pos >= j->len)
			return jp_fail(j, SAGA_EINVAL, "unterminated string");
		unsigned char ch = (unsigned char)j->s[j->pos];
		if (ch == '"') {
			j->pos++;
			break;
		}
		if (ch < 0x20)
			return jp_fail(j, SAGA_EINVAL, "control character in a string (escape it)");
		if (ch == '\\') {
			if (j->len - j->pos < 2)
				return jp_fail(j, SAGA_EINVAL, "unterminated string");
			char e = j->s[j->pos + 1];
			const char *simple = strchr("\"\\/bfnrt", e);
			if (e != '\0' && e != 'u' && simple != NULL) {
				static const char map[] = "\"\\/\b\f\n\r\t";
				o[n++] = map[simple - "\"\\/bfnrt"];
				j->pos += 2;
				continue;
			}
			if (e != 'u')
				return jp_fail(j, SAGA_EINVAL, "invalid escape in a string");
			uint32_t cp, lo;
			if (j->len - j->pos < 6 || hex4(j->s + j->pos + 2, &cp) != 0)
				return jp_fail(j, SAGA_EINVAL, "invalid \\u escape");
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return jp_fail(
				    j, SAGA_EINVAL, "unpaired surrogate in a \\u escape");
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (j->len - j->pos < 12 || j->s[j->pos + 6] != '\\' ||
				    j->s[j->pos + 7] != 'u' || hex4(j->s + j->pos + 8, &lo) != 0 ||
				    lo < 0xdc00 || lo > 0xdfff)
					return jp_fail(
					    j, SAGA_EINVAL, "unpaired surrogate in a \\u escape");
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				j->pos += 6;
			}
			j->pos += 6;
			if (cp < 0x80) {
				o[n++] = (char)cp;
			} else if (cp < 0x800) {
				o[n++] = (char)(0xc0 | cp >> 6);
				o[n++] = (char)(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				o[n++] = (char)(0xe0 | cp >> 12);
				o[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
				o[n++] = (char)(0x80 | (cp & 0x3f));
			} else {
				o[n++] = (char)(0xf0 | cp >> 18);
				o[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
				o[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
				o[n++] = (char)(0x80 | (cp & 0x3f));
			}
			continue;
		}
		/* A raw run up to the next quote, backslash or control
		 * character must be valid UTF-8 by itself. */
		size_t end = j->pos;
		while (end < j->len && j->s[end] != '"' && j->s[end] != '\\' &&
		    (unsigned char)j->s[end] >= 0x20)
			end++;
		if (!cm_utf8_valid((const uint8_t *)j->s + j->pos, end - j->pos)) {
			for (size_t k = j->pos; k < end; k++) /* point at the fault */
				if (!cm_utf8_valid(
					(const uint8_t *)j->s + j->pos, k + 1 - j->pos) &&
				    ((unsigned char)j->s[k] & 0xc0) != 0x80) {
					j->pos = k;
					break;
				}
			return jp_fail(j, SAGA_EINVAL, "invalid UTF-8 in a string");
		}
		memcpy(o + n, j->s + j->pos, end - j->pos);
		n += end - j->pos;
		j->pos = end;
	}
	*out = o;
	*outlen = n;
	j->sn += n;
	return 0;
}

static int
cmp_member(const void *a, const void *b)
{
	const jnode *x = *(const jnode *const *)a, *y = *(const jnode *const *)b;
	size_t l = x->klen < y->klen ? x->klen : y->klen;
	int r = memcmp(x->key, y->key, l);
	if (r != 0)
		return r;
	return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static int
jp_dupkeys(jparser *j, const jnode *obj, size_t at)
{
	const jnode *dup = NULL;
	if (obj->nkids <= 16) {
		for (const jnode *a = obj->kid; a != NULL && dup == NULL; a = a->next)
			for (const jnode *b = a->next; b != NULL; b = b->next)
				if (a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0) {
					dup = a;
					break;
				}
	} else {
		const jnode **v = malloc(obj->nkids * sizeof(*v));
		if (v == NULL)
			return oom(j->c);
		size_t n = 0;
		for (const jnode *a = obj->kid; a != NULL; a = a->next)
			v[n++] = a;
		qsort(v, n, sizeof(*v), cmp_member);
		for (size_t i = 1; i < n && dup == NULL; i++)
			if (cmp_member(&v[i - 1], &v[i]) == 0)
				dup = v[i];
		free(v);
	}
	if (dup == NULL)
		return 0;
	char buf[200], what[260];
	snprintf(what, sizeof(what), "duplicate key %s in the object",
	    snip(dup->key, dup->klen, true, buf, sizeof(buf)));
	j->pos = at;
	return jp_fail(j, SAGA_EINVAL, what);
}

static int
jp_value(jparser *j, jnode **out)
{
	jp_ws(j);
	if (j->pos >= j->len)
		return jp_fail(j, SAGA_EINVAL, "expected a value");
	char ch = j->s[j->pos];
	jnode *n;
	if (ch == '{' || ch == '[') {
		size_t at = j->pos;
		if (++j->depth > JSON_LEVELS)
			return jp_fail(j, SAGA_ETOOBIG, "nested too deeply");
		if ((n = jp_node(j, ch == '{' ? J_OBJ : J_ARR)) == NULL)
			return oom(j->c);
		char close = ch == '{' ? '}' : ']';
		jnode **tail = &n->kid;
		j->pos++;
		jp_ws(j);
		if (j->pos < j->len && j->s[j->pos] == close) {
			j->pos++;
		} else {
			for (;;) {
				const char *key = NULL;
				size_t klen = 0;
				jnode *v;
				if (ch == '{') {
					jp_ws(j);
					if (j->pos >= j->len || j->s[j->pos] != '"')
						return jp_fail(
						    j, SAGA_EINVAL, "expected a key string");
					TRY(jp_string(j, &key, &klen));
					jp_ws(j);
					if (j->pos >= j->len || j->s[j->pos] != ':')
						return jp_fail(j, SAGA_EINVAL, "expected ':'");
					j->pos++;
				}
				TRY(jp_value(j, &v));
				v->key = key;
				v->klen = klen;
				*tail = v;
				tail = &v->next;
				n->nkids++;
				jp_ws(j);
				if (j->pos < j->len && j->s[j->pos] == ',') {
					j->pos++;
					continue;
				}
				if (j->pos < j->len && j->s[j->pos] == close) {
					j->pos++;
					break;
				}
				return jp_fail(j, SAGA_EINVAL,
				    ch == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
			}
		}
		j->depth--;
		if (ch == '{' && n->nkids > 1)
			TRY(jp_dupkeys(j, n, at));
		*out = n;
		return 0;
	}
	if (ch == '"') {
		if ((n = jp_node(j, J_STR)) == NULL)
			return oom(j->c);
		TRY(jp_string(j, &n->s, &n->len));
		*out = n;
		return 0;
	}
	static const struct {
		const char *word;
		uint8_t t;
	} lits[] = { { "null", J_NULL }, { "true", J_TRUE }, { "false", J_FALSE } };
	for (size_t i = 0; i < 3; i++) {
		size_t wl = strlen(lits[i].word);
		if (j->len - j->pos >= wl && memcmp(j->s + j->pos, lits[i].word, wl) == 0) {
			if ((n = jp_node(j, lits[i].t)) == NULL)
				return oom(j->c);
			j->pos += wl;
			*out = n;
			return 0;
		}
	}
	if (ch == '-' || isdig(ch)) {
		size_t end = j->pos;
		while (end < j->len && (isdig(j->s[end]) || strchr("+-.eE", j->s[end]) != NULL) &&
		    j->s[end] != '\0')
			end++;
		if (!num_syntax(j->s + j->pos, end - j->pos))
			return jp_fail(j, SAGA_EINVAL, "malformed number");
		if ((n = jp_node(j, J_NUM)) == NULL)
			return oom(j->c);
		n->s = j->s + j->pos;
		n->len = end - j->pos;
		j->pos = end;
		*out = n;
		return 0;
	}
	return jp_fail(j, SAGA_EINVAL, "unexpected character");
}

static void
jp_free(jparser *j)
{
	while (j->blocks != NULL) {
		jblock *b = j->blocks;
		j->blocks = b->next;
		free(b);
	}
	free(j->sbuf);
}

static int
jp_parse(jparser *j, jnode **root)
{
	if ((j->sbuf = malloc(j->len + 1)) == NULL)
		return oom(j->c);
	TRY(jp_value(j, root));
	jp_ws(j);
	if (j->pos != j->len)
		return jp_fail(j, SAGA_EINVAL, "unexpected text after the value");
	return 0;
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
		return snip(n->s, n->len, false, buf, cap);
	default:
		return snip(n->s, n->len, true, buf, cap);
	}
}

static int
expected(ctx *c, const char *what, const jnode *n)
{
	char buf[200];
	return fail(c, SAGA_EINVAL, "expected %s, got %s", what, jdesc(n, buf, sizeof(buf)));
}

/* ---- binary writer ---- */

static int
put_varint(ctx *c, uint64_t v)
{
	uint8_t b[CM_VARINT_MAX];
	return put(c, b, cm_varint_write(b, v));
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
	return put(c, b, w);
}

/* Length-delimited content: one byte is reserved for the length, the
 * content moves if its length needs more. */
static int
len_begin(ctx *c, size_t *mark)
{
	TRY(put(c, "", 1));
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
		TRY(reserve(c, k - 1));
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
		return fail(c, SAGA_EINVAL, "expected an integer, got %s (not a whole number)",
		    jdesc(n, buf, sizeof(buf)));
	if (r == NUM_RANGE || !int_fits(type, *neg, *mag))
		return fail(c, SAGA_EINVAL, "%s is out of range for %s (%s)",
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
		if (!num_syntax(n->s, n->len))
			return expected(c, "a number (or \"NaN\", \"Infinity\", \"-Infinity\")", n);
	} else if (n->t != J_NUM) {
		return expected(c, "a number", n);
	}
	TRY(num_double(c, n->s, n->len, d));
	if (isinf(*d))
		return fail(c, SAGA_EINVAL, "%s is out of range for %s", jdesc(n, buf, sizeof(buf)),
		    is_float ? "float" : "double");
	if (is_float && fabs(*d) > FLT_MAX) {
		/* Within half an ulp of FLT_MAX rounds to it; past that, inf. */
		if (fabs(*d) >= (double)FLT_MAX + ldexp(1.0, 103))
			return fail(c, SAGA_EINVAL, "%s is out of range for float",
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
			return fail(c, SAGA_EINVAL,
			    "unknown value %s for enum %s (expected one of %s, or a number)",
			    snip(n->s, n->len, true, buf, sizeof(buf)), e->name, names);
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
 * value or fixed bits), *zero whether it is the type's default. */
static int
json_scalar(ctx *c, const pj_field *f, const jnode *n, uint64_t *v, bool *zero)
{
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
	switch (type_wt(type)) {
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
	TRY(reserve(c, n->len / 4 * 3 + 3));
	if (cm_base64_decode(n->s, n->len, c->b + c->n, &dl, &bad) != 0) {
		char buf[200];
		return fail(c, SAGA_EINVAL, "invalid base64 at character %zu of %s", bad,
		    snip(n->s, n->len, true, buf, sizeof(buf)));
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
		return unresolved(c, f);
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
		return put(c, n->s, n->len);
	case T_BYTES:
		return enc_bytes(c, f->number, n, omit_default);
	default: {
		uint64_t v;
		bool zero;
		TRY(json_scalar(c, f, n, &v, &zero));
		if (omit_default && zero)
			return 0;
		TRY(put_tag(c, f->number, type_wt(f->type)));
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
		mark = path_index(c, i);
		if (el->t == J_NULL && !takes_null(f))
			return fail(c, SAGA_EINVAL, "null is not allowed in a repeated field");
		if (f->packed) {
			uint64_t v;
			bool zero;
			TRY(json_scalar(c, f, el, &v, &zero));
			TRY(put_scalar(c, f->type, v));
		} else {
			TRY(enc_one(c, f, el, false));
		}
		path_pop(c, mark);
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
		return put(c, key, len);
	}
	uint64_t v = 0;
	if (kf->type == T_BOOL) {
		if (len == 4 && memcmp(key, "true", 4) == 0)
			v = 1;
		else if (!(len == 5 && memcmp(key, "false", 5) == 0))
			return fail(c, SAGA_EINVAL, "map key %s is not true or false",
			    snip(key, len, true, buf, sizeof(buf)));
	} else {
		bool neg;
		uint64_t mag;
		size_t d = len > 0 && key[0] == '-';
		bool canon = len > d && isdig(key[d]) && (key[d] != '0' || (len == 1));
		for (size_t i = d; i < len && canon; i++)
			canon = isdig(key[i]);
		if (!canon || num_int(key, len, &neg, &mag) != NUM_OK ||
		    !int_fits(kf->type, neg, mag))
			return fail(c, SAGA_EINVAL,
			    "map key %s is not a valid %s key (%s, no leading zeros)",
			    snip(key, len, true, buf, sizeof(buf)), type_label(kf->type),
			    int_range(kf->type));
		v = int_wire(kf->type, neg, mag);
	}
	TRY(put_tag(c, 1, type_wt(kf->type)));
	return put_scalar(c, kf->type, v);
}

static int
enc_map(ctx *c, const pj_field *f, const jnode *n)
{
	if (n->t != J_OBJ)
		return expected(c, "an object", n);
	if (n->nkids == 0)
		return 0;
	const pj_field *kf = field_by_num(f->msg, 1), *vf = field_by_num(f->msg, 2);
	if (c->depth >= PBJSON_MAX_DEPTH)
		return fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	for (const jnode *el = n->kid; el != NULL; el = el->next) {
		size_t pmark = path_key(c, el->key, el->klen), lmark;
		if (el->t == J_NULL && !takes_null(vf))
			return fail(c, SAGA_EINVAL, "null is not a valid map value");
		TRY(put_tag(c, f->number, WT_LEN));
		TRY(len_begin(c, &lmark));
		TRY(enc_map_key(c, kf, el->key, el->klen));
		TRY(enc_one(c, vf, el, false));
		TRY(len_end(c, lmark));
		path_pop(c, pmark);
	}
	c->depth--;
	return 0;
}

static int
enc_field(ctx *c, const pj_field *f, const jnode *n)
{
	if (f->unresolved)
		return unresolved(c, f);
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
	return fail(c, SAGA_EINVAL, "unknown field %s in %s (its fields: %s)",
	    snip(el->key, el->klen, true, buf, sizeof(buf)), m->name, m->nfields ? names : "none");
}

/* "@unknown": [{"field": N, "wire": W, "value": V}, ...] */
static int
enc_unknown(ctx *c, const pj_msg *m, const jnode *n)
{
	static const char *const wires[] = { "varint", "fixed64", "bytes", "group", "", "fixed32" };
	size_t pmark = path_field(c, "@unknown"), i = 0;
	if (n->t != J_ARR)
		return expected(c, "an array of {\"field\", \"wire\", \"value\"} objects", n);
	for (const jnode *el = n->kid; el != NULL; el = el->next, i++) {
		size_t imark = path_index(c, i);
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
				return fail(c, SAGA_EINVAL,
				    "an unknown-field entry has only field, wire and value");
		}
		if (fn == NULL || wn == NULL || vn == NULL)
			return fail(
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
		const pj_field *known = field_by_num(m, (uint32_t)num);
		if (known != NULL && wt_ok(known, wt))
			return fail(c, SAGA_EINVAL,
			    "field %" PRIu64 " is %s of %s: give it by name, not as unknown", num,
			    known->json, m->name);
		uint64_t v;
		size_t vmark = path_field(c, "value");
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
			TRY(reserve(c, vn->len / 4 * 3 + 3));
			if (cm_base64_decode(vn->s, vn->len, c->b + c->n, &dl, &bad) != 0) {
				char buf[200];
				return fail(c, SAGA_EINVAL, "invalid base64 at character %zu of %s",
				    bad, snip(vn->s, vn->len, true, buf, sizeof(buf)));
			}
			c->n += dl;
			while (pos < dl) {
				rec gr;
				/* c->b may not move in here: nothing is written. */
				/* Bad content is a bad JSON value: EINVAL. */
				if (next_rec(c, c->b + cstart, dl, &pos, &gr) != 0)
					return c->rv = SAGA_EINVAL;
				if (gr.wt == WT_EGROUP)
					return fail(c, SAGA_EINVAL,
					    "group content holds an unmatched end-group tag");
			}
			TRY(put_tag(c, (uint32_t)num, WT_EGROUP));
		}
		}
		path_pop(c, vmark);
		path_pop(c, imark);
	}
	path_pop(c, pmark);
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
		return oom(c);
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
			rv = fail(c, SAGA_EINVAL, "field %s is given twice (as %s and %s)", f->json,
			    snip(slot[fi]->key, slot[fi]->klen, true, a, sizeof(a)),
			    snip(el->key, el->klen, true, b, sizeof(b)));
			goto out;
		}
		slot[fi] = el;
		if (f->oneof >= 0 && (el->t != J_NULL || takes_null(f))) {
			const jnode *prev = oneof_set[f->oneof];
			if (prev != NULL) {
				char a[200], b[200];
				const char *on = m->dp->oneof_decl[f->oneof]->name;
				rv = fail(c, SAGA_EINVAL,
				    "%s and %s are both set, but oneof %s takes one",
				    snip(prev->key, prev->klen, true, a, sizeof(a)),
				    snip(el->key, el->klen, true, b, sizeof(b)), on ? on : "?");
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
		size_t mark = path_field(c, f->json);
		rv = enc_field(c, f, el);
		path_pop(c, mark);
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
		if (!isdig(s[i]))
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
		for (i++; i < len && isdig(s[i]); i++, k++) {
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
	for (; i < len && isdig(s[i]); i++, nd++) {
		if (nd >= 12)
			return false;
		sv = sv * 10 + (s[i] - '0');
	}
	if (nd == 0)
		return false;
	int32_t ns = 0;
	if (i < len && s[i] == '.') {
		size_t k = 0;
		for (i++; i < len && isdig(s[i]); i++, k++) {
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
		return put(c, n->s, n->len);
	case J_TRUE:
	case J_FALSE:
		TRY(put_tag(c, 4, WT_VARINT));
		return put_varint(c, n->t == J_TRUE);
	default: {
		uint32_t num = n->t == J_OBJ ? 5 : 6;
		const pj_field *f = field_by_num(m, num); /* wkt_of checked the shape */
		if (f == NULL)
			return fail(
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
				TRY(put(c, two, 2));
			} else {
				TRY(put(c, &ch, 1));
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
		return fail(
		    c, SAGA_ETOOBIG, "messages nest deeper than %d levels", PBJSON_MAX_DEPTH);
	c->depth++;
	int rv;
	switch (m->wkt) {
	case WKT_ANY:
		rv = fail(c, SAGA_EINVAL, "google.protobuf.Any is not supported");
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
			rv = enc_one(c, field_by_num(m, 1), n, true);
		break;
	case WKT_STRUCT:
		rv =
		    n->t == J_OBJ ? enc_map(c, field_by_num(m, 1), n) : expected(c, "an object", n);
		break;
	case WKT_VALUE:
		rv = enc_value(c, m, n);
		break;
	case WKT_LIST:
		rv = enc_repeated(c, field_by_num(m, 1), n);
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
		return fail(&c, SAGA_EINVAL, "invalid arguments");
	*out = NULL;
	*outlen = 0;
	if (p == NULL || type == NULL || (json == NULL && len > 0))
		return fail(&c, SAGA_EINVAL, "invalid arguments");
	const pj_msg *m = root_type(&c, p, type);
	if (m == NULL)
		return c.rv;
	if ((rv = jp_parse(&j, &root)) == 0)
		rv = enc_msg(&c, m, root);
	jp_free(&j);
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
