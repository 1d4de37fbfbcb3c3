/* pool: the type pool, read from a FileDescriptorSet (pbjson_new). See
 * pj_internal.h. */
#include "pj_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

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
		pj_sanitize(b->err);
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
		char *at = (char *)base + mid * size;
		int r = strcmp(name, *(char *const *)(void *)at);
		if (r == 0)
			return at;
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
		if (f->repeated && pj_is_packable(f->type)) {
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
	const pj_field *k = pj_field_by_num(e, 1), *v = pj_field_by_num(e, 2);
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
	const pj_field *f1 = pj_field_by_num(m, 1);
	if (strcmp(n, "google.protobuf.Any") == 0)
		return WKT_ANY;
	if (strcmp(n, "google.protobuf.Timestamp") == 0 ||
	    strcmp(n, "google.protobuf.Duration") == 0) {
		if (m->nfields == 2 && singular(f1, T_INT64) &&
		    singular(pj_field_by_num(m, 2), T_INT32))
			return n[16] == 'T' ? WKT_TIMESTAMP : WKT_DURATION;
		return WKT_NONE;
	}
	for (size_t i = 0; i < sizeof(wrappers) / sizeof(wrappers[0]); i++)
		if (strcmp(n, wrappers[i].name) == 0)
			return m->nfields == 1 && singular(f1, wrappers[i].type) ? WKT_WRAPPER
										 : WKT_NONE;
	if (strcmp(n, "google.protobuf.Struct") == 0) {
		if (m->nfields == 1 && f1 != NULL && f1->is_map) {
			const pj_field *k = pj_field_by_num(f1->msg, 1),
				       *v = pj_field_by_num(f1->msg, 2);
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
			const pj_field *f = pj_field_by_num(m, i + 1);
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

const pj_msg *
pj_root_type(ctx *c, const pbjson *p, const char *type)
{
	const pj_msg *m = find_msg(p, type);
	if (m == NULL) {
		char buf[200];
		pj_fail(c, SAGA_ENOTFOUND, "message type %s is not in the descriptor set",
		    pj_snip(type, strlen(type), false, buf, sizeof(buf)));
	}
	return m;
}
