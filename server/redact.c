/* redact: sensitive fields out of a message's bytes. See redact.h. */
#include "redact.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_base.h"
#include "varint.h"

typedef struct rbuf {
	uint8_t *p;
	size_t n, cap;
	bool oom;
} rbuf;

static void
put(rbuf *b, const void *p, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->n + n > b->cap) {
		size_t nc = b->cap ? b->cap : 64;
		while (nc < b->n + n)
			nc *= 2;
		uint8_t *q = realloc(b->p, nc);
		if (q == NULL) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = nc;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void
put_varint(rbuf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			t[n] |= 0x80;
		n++;
	} while (v);
	put(b, t, n);
}

typedef struct rctx {
	rdx_out *o;
	bool oom;
	char path[1024];
} rctx;

/* Notes the path (path + "." + name, or "*") once. */
static void
note(rctx *c, size_t plen, const char *name)
{
	char full[sizeof(c->path) + 130];
	if (name == NULL)
		snprintf(full, sizeof(full), "*");
	else if (plen == 0)
		snprintf(full, sizeof(full), "%.128s", name);
	else
		snprintf(full, sizeof(full), "%.*s.%.128s", (int)plen, c->path, name);
	rdx_out *o = c->o;
	for (size_t i = 0; i < o->n_paths; i++)
		if (strcmp(o->paths[i], full) == 0)
			return;
	if (o->n_paths >= RDX_MAX_PATHS)
		return; /* the field is removed all the same */
	char *dup = strdup(full);
	char **v = realloc(o->paths, (o->n_paths + 1) * sizeof(*v));
	if (dup == NULL || v == NULL) {
		free(dup);
		if (v != NULL)
			o->paths = v;
		c->oom = true;
		return;
	}
	o->paths = v;
	o->paths[o->n_paths++] = dup;
}

/* Moves *pos past one field of wire type wt (its tag read already). -1 if
 * it does not parse. A group is skipped to its matching end. */
static int
skip(const uint8_t *in, size_t len, size_t *pos, unsigned wt, uint64_t field, int depth)
{
	uint64_t v;
	switch (wt) {
	case 0:
		return cm_varint_read(in, len, pos, &v);
	case 1:
		if (len - *pos < 8)
			return -1;
		*pos += 8;
		return 0;
	case 2:
		if (cm_varint_read(in, len, pos, &v) != 0 || v > len - *pos)
			return -1;
		*pos += (size_t)v;
		return 0;
	case 5:
		if (len - *pos < 4)
			return -1;
		*pos += 4;
		return 0;
	case 3:
		if (depth >= RDX_MAX_DEPTH)
			return -1;
		for (;;) {
			uint64_t tag;
			if (*pos >= len || cm_varint_read(in, len, pos, &tag) != 0)
				return -1;
			if ((tag & 7) == 4)
				return (tag >> 3) == field ? 0 : -1;
			if (skip(in, len, pos, (unsigned)(tag & 7), tag >> 3, depth + 1) != 0)
				return -1;
		}
	default:
		return -1;
	}
}

static const defn_rfield *
find(const defn_redact *r, uint64_t number)
{
	size_t lo = 0, hi = r->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->f[mid].number == number)
			return &r->f[mid];
		if (r->f[mid].number < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Writes in[0..len) less its sensitive fields to out; -1 if it does not
 * parse as a message. c->path holds the message's path (plen bytes). */
static int
redact_msg(
    rctx *c, const defn_redact *r, const uint8_t *in, size_t len, rbuf *out, size_t plen, int depth)
{
	size_t pos = 0;
	while (pos < len) {
		size_t start = pos;
		uint64_t tag;
		if (cm_varint_read(in, len, &pos, &tag) != 0 || (tag >> 3) == 0)
			return -1;
		unsigned wt = (unsigned)(tag & 7);
		if (wt == 4)
			return -1;
		const defn_rfield *f = find(r, tag >> 3);
		if (f == NULL) {
			if (skip(in, len, &pos, wt, tag >> 3, depth) != 0)
				return -1;
			put(out, in + start, pos - start);
			continue;
		}
		size_t body = pos;
		if (skip(in, len, &pos, wt, tag >> 3, depth) != 0)
			return -1;
		if (f->sub == NULL || wt != 2) {
			note(c, plen, f->name);
			continue;
		}
		/* A message holding sensitive fields: redact inside it. */
		uint64_t n;
		cm_varint_read(in, len, &body, &n);
		size_t sub_plen = plen;
		int k = plen == 0
		    ? snprintf(c->path, sizeof(c->path), "%.128s", f->name)
		    : snprintf(c->path + plen, sizeof(c->path) - plen, ".%.128s", f->name);
		if (k > 0 && (size_t)k < sizeof(c->path) - plen)
			sub_plen = plen + (size_t)k;
		rbuf sub = { 0 };
		int rv = depth + 1 >= RDX_MAX_DEPTH || sub_plen == plen
		    ? -1
		    : redact_msg(c, f->sub, in + body, (size_t)n, &sub, sub_plen, depth + 1);
		c->path[plen] = '\0';
		if (rv != 0 || sub.oom) {
			c->oom |= sub.oom;
			note(c, plen, f->name); /* unreadable inside: not shown at all */
		} else {
			put_varint(out, tag);
			put_varint(out, sub.n);
			put(out, sub.p, sub.n);
		}
		free(sub.p);
	}
	return 0;
}

void
rdx_out_free(rdx_out *o)
{
	if (o == NULL)
		return;
	free(o->buf);
	for (size_t i = 0; i < o->n_paths; i++)
		free(o->paths[i]);
	free(o->paths);
	memset(o, 0, sizeof(*o));
}

int
rdx_apply(const defn_redact *plan, const uint8_t *in, size_t len, rdx_out *o)
{
	memset(o, 0, sizeof(*o));
	rbuf b = { 0 };
	if (plan == NULL) {
		put(&b, in, len);
	} else {
		rctx c = { .o = o };
		if (redact_msg(&c, plan, in, len, &b, 0, 0) != 0) {
			b.n = 0; /* not a message of its type: nothing of it is shown */
			note(&c, 0, NULL);
		}
		if (c.oom)
			b.oom = true;
	}
	if (b.oom) {
		free(b.p);
		rdx_out_free(o);
		return SAGA_ENOMEM;
	}
	o->buf = b.n ? b.p : NULL;
	if (b.n == 0)
		free(b.p);
	o->len = b.n;
	return 0;
}
