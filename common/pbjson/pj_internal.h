/*
 * pj_internal.h: what the files of pbjson offer each other. Prefix pj_.
 * Private: users include pbjson.h.
 *
 *   util.c       the shared context (first error with its JSON path,
 *                nesting depth, the growable output), lookups by field
 *                number and wire type, JSON number syntax
 *   pool.c       the type pool: pbjson_new() reads a FileDescriptorSet
 *                into messages and enums by full name, each message's
 *                fields by declaration, by number and by JSON key
 *   to_json.c    binary -> JSON: a message's bytes are first cut into
 *                records (tag, wire type, value or payload), sorted by
 *                field number, then printed field by field, recursing into
 *                nested messages (pbjson_to_json)
 *   parse.c      a small JSON parser that builds a tree (arena-allocated)
 *   from_json.c  JSON -> binary: the tree encoded field by field in number
 *                order (pbjson_from_json)
 *
 * Nothing recurses more than PBJSON_MAX_DEPTH message levels (plus the
 * JSON parser's 2 * PBJSON_MAX_DEPTH + 8 levels).
 */
#ifndef SAGA_PJ_INTERNAL_H
#define SAGA_PJ_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "descriptor.pb-c.h"
#include "pbjson.h"
#include "saga_base.h"

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

/* ---- the type pool (pool.c) -------------------------------------------- */

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

/* ---- context: errors, path, depth, output (util.c) --------------------- */

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
	/* pbjson_to_json_redacted: the fields removed as sensitive (proto
	 * field paths), and the proto path of the message at hand. */
	const char *const *redacted;
	size_t n_redacted;
	char rpath[PATH_CAP];
	size_t rplen;
} ctx;

/* Returns x's error from the calling function, if it has one. */
#define TRY(x)                      \
	do {                        \
		int rv_ = (x);      \
		if (rv_ != 0)       \
			return rv_; \
	} while (0)

/* Records the first error: "path: message" into c->err. Returns rv (or
 * the first error's code if there was one before). */
int pj_fail(ctx *c, int rv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* pj_fail with SAGA_ENOMEM. */
int pj_oom(ctx *c);
/* Replaces what is not printable ASCII in s with '?'. */
void pj_sanitize(char *s);
/* Quotes up to 40 bytes of s for an error message (into buf, cap bytes):
 * printable ASCII as is, the rest as \xNN, "..." when cut. Returns buf. */
const char *pj_snip(const char *s, size_t len, bool quote, char *buf, size_t cap);

/* The JSON path of the value at hand, for error messages: each function
 * appends one segment (".name", "[3]", "[\"key\"]") and returns the mark
 * that pj_path_pop() goes back to. */
size_t pj_path_field(ctx *c, const char *name);
size_t pj_path_index(ctx *c, size_t i);
size_t pj_path_key(ctx *c, const char *key, size_t len);
void pj_path_pop(ctx *c, size_t mark);

/* Room for len more output bytes (SAGA_ETOOBIG past PBJSON_MAX_OUTPUT). */
int pj_reserve(ctx *c, size_t len);
/* Appends len bytes, or a NUL-terminated string, to the output. */
int pj_put(ctx *c, const void *s, size_t len);
int pj_puts(ctx *c, const char *s);

/* ---- small shared helpers (util.c) ------------------------------------- */

bool pj_isdig(char ch);
/* Is s[0..len) a JSON number? */
bool pj_num_syntax(const char *s, size_t len);
/* Can a repeated field of this T_* type be packed? */
bool pj_is_packable(int type);
/* The wire type (WT_*) of a T_* type. */
unsigned pj_type_wt(int type);
/* Is wire type wt one field f may arrive with (packed runs included)? */
bool pj_wt_ok(const pj_field *f, unsigned wt);
/* The field of m numbered num, or NULL. */
const pj_field *pj_field_by_num(const pj_msg *m, uint32_t num);
/* Fails with SAGA_ENOTFOUND: f's type is not in the descriptor set. */
int pj_unresolved(ctx *c, const pj_field *f);

/* The message type named `type` (a leading dot accepted), or NULL after
 * failing c with SAGA_ENOTFOUND (pool.c). */
const pj_msg *pj_root_type(ctx *c, const pbjson *p, const char *type);

/* ---- binary records (to_json.c) ---------------------------------------- */

typedef struct rec {
	uint32_t num;
	uint8_t wt;
	bool used;        /* consumed by a known field */
	uint64_t v;       /* varint, fixed64 or fixed32 value */
	const uint8_t *p; /* length-delimited or group payload */
	size_t len;
} rec;

/* Reads one record from p[*pos..len) and moves *pos past it. A group's
 * payload is what lies between its start and end tags, whose nesting is
 * checked without recursion. An end-group tag is returned as a record of
 * wire type WT_EGROUP: the caller says whether one may come. Fails c with
 * SAGA_EPROTO (or SAGA_ETOOBIG for groups nested too deep). */
int pj_next_rec(ctx *c, const uint8_t *p, size_t len, size_t *pos, rec *r);

/* ---- the JSON parser (parse.c) ----------------------------------------- */

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

/* Parses j->s[0..j->len) (one JSON value, white space around it) into a
 * tree at *root that lives in j until pj_json_free(j). Fails j->c with
 * SAGA_EINVAL (the line and column of the fault), SAGA_ETOOBIG (nested
 * deeper than JSON_LEVELS) or SAGA_ENOMEM. */
int pj_json_parse(jparser *j, jnode **root);
void pj_json_free(jparser *j);

#endif
