/* parse: a bounded JSON parser into an arena-allocated tree. See
 * pj_internal.h. */
#include "pj_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

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
	return pj_fail(j->c, rv, "invalid JSON at line %u, column %u: %s", line, col, what);
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
			return pj_oom(j->c);
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
	    pj_snip(dup->key, dup->klen, true, buf, sizeof(buf)));
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
			return pj_oom(j->c);
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
			return pj_oom(j->c);
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
				return pj_oom(j->c);
			j->pos += wl;
			*out = n;
			return 0;
		}
	}
	if (ch == '-' || pj_isdig(ch)) {
		size_t end = j->pos;
		while (end < j->len &&
		    (pj_isdig(j->s[end]) || strchr("+-.eE", j->s[end]) != NULL) &&
		    j->s[end] != '\0')
			end++;
		if (!pj_num_syntax(j->s + j->pos, end - j->pos))
			return jp_fail(j, SAGA_EINVAL, "malformed number");
		if ((n = jp_node(j, J_NUM)) == NULL)
			return pj_oom(j->c);
		n->s = j->s + j->pos;
		n->len = end - j->pos;
		j->pos = end;
		*out = n;
		return 0;
	}
	return jp_fail(j, SAGA_EINVAL, "unexpected character");
}

void
pj_json_free(jparser *j)
{
	while (j->blocks != NULL) {
		jblock *b = j->blocks;
		j->blocks = b->next;
		free(b);
	}
	free(j->sbuf);
}

int
pj_json_parse(jparser *j, jnode **root)
{
	if ((j->sbuf = malloc(j->len + 1)) == NULL)
		return pj_oom(j->c);
	TRY(jp_value(j, root));
	jp_ws(j);
	if (j->pos != j->len)
		return jp_fail(j, SAGA_EINVAL, "unexpected text after the value");
	return 0;
}
