/* util: pbjson's shared context and helpers. See pj_internal.h. */
#include "pj_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- context: errors, path, depth, output ------------------------------ */

void
pj_sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* Records the first error: "path: message". Returns rv. */
int
pj_fail(ctx *c, int rv, const char *fmt, ...)
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
	pj_sanitize(c->err);
	return rv;
}

int
pj_oom(ctx *c)
{
	return pj_fail(c, SAGA_ENOMEM, "out of memory");
}

/* Quotes up to 40 bytes of s for an error message: printable ASCII as is,
 * the rest as \xNN, "..." when cut. */
const char *
pj_snip(const char *s, size_t len, bool quote, char *buf, size_t cap)
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

size_t
pj_path_field(ctx *c, const char *name)
{
	size_t mark = c->plen;
	path_add(c, c->plen > 0 ? ".%.64s" : "%.64s", name);
	return mark;
}

size_t
pj_path_index(ctx *c, size_t i)
{
	size_t mark = c->plen;
	path_add(c, "[%zu]", i);
	return mark;
}

size_t
pj_path_key(ctx *c, const char *key, size_t len)
{
	char buf[200];
	size_t mark = c->plen;
	path_add(c, "[%s]", pj_snip(key, len, true, buf, sizeof(buf)));
	return mark;
}

void
pj_path_pop(ctx *c, size_t mark)
{
	c->plen = mark;
	c->path[mark] = '\0';
}

/* Room for len more output bytes. */
int
pj_reserve(ctx *c, size_t len)
{
	if (len <= c->cap - c->n)
		return 0;
	if (len > PBJSON_MAX_OUTPUT - c->n)
		return pj_fail(
		    c, SAGA_ETOOBIG, "output would be larger than %u bytes", PBJSON_MAX_OUTPUT);
	size_t nc = c->cap ? c->cap : 256;
	while (nc - c->n < len)
		nc *= 2;
	if (nc > PBJSON_MAX_OUTPUT)
		nc = PBJSON_MAX_OUTPUT;
	uint8_t *nb = realloc(c->b, nc);
	if (nb == NULL)
		return pj_oom(c);
	c->b = nb;
	c->cap = nc;
	return 0;
}

int
pj_put(ctx *c, const void *s, size_t len)
{
	int rv;
	if ((rv = pj_reserve(c, len)) != 0)
		return rv;
	if (len > 0)
		memcpy(c->b + c->n, s, len);
	c->n += len;
	return 0;
}

int
pj_puts(ctx *c, const char *s)
{
	return pj_put(c, s, strlen(s));
}

/* ---- small shared helpers ---------------------------------------------- */

bool
pj_isdig(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Is s[0..len) a JSON number? */
bool
pj_num_syntax(const char *s, size_t len)
{
	size_t i = 0;
	if (i < len && s[i] == '-')
		i++;
	if (i >= len || !pj_isdig(s[i]))
		return false;
	if (s[i] == '0')
		i++;
	else
		while (i < len && pj_isdig(s[i]))
			i++;
	if (i < len && s[i] == '.') {
		i++;
		if (i >= len || !pj_isdig(s[i]))
			return false;
		while (i < len && pj_isdig(s[i]))
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || !pj_isdig(s[i]))
			return false;
		while (i < len && pj_isdig(s[i]))
			i++;
	}
	return i == len;
}

bool
pj_is_packable(int type)
{
	return type != T_STRING && type != T_BYTES && type != T_MESSAGE && type != T_GROUP;
}

unsigned
pj_type_wt(int type)
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

bool
pj_wt_ok(const pj_field *f, unsigned wt)
{
	return wt == pj_type_wt(f->type) ||
	    (f->repeated && pj_is_packable(f->type) && wt == WT_LEN);
}

/* Binary search over a by_num array. */
const pj_field *
pj_field_by_num(const pj_msg *m, uint32_t num)
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

int
pj_unresolved(ctx *c, const pj_field *f)
{
	return pj_fail(c, SAGA_ENOTFOUND,
	    "type %s of field %s is not in the descriptor set (compile with --include_imports)",
	    f->type_name, f->name);
}
