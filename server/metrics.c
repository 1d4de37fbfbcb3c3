/* metrics: text, histograms and named counters for /metrics. See metrics.h. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double HIST_LE_MS[MX_N_HIST] = { 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000, 30000 };

void
mx_printf(mx_buf *b, const char *fmt, ...)
{
	for (int tries = 0; tries < 2 && !b->failed; tries++) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->failed = 1;
			return;
		}
		if (b->p && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		size_t ncap = (b->cap ? b->cap * 2 : 8192) + (size_t)k;
		char *np = realloc(b->p, ncap);
		if (np == NULL) {
			b->failed = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Label values: names are checked UTF-8 text; escape \, " and newlines. */
void
mx_label(mx_buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			mx_printf(b, "\\%c", *v);
		else if (*v == '\n')
			mx_printf(b, "\\n");
		else
			mx_printf(b, "%c", *v);
	}
}

void
mx_hist_add(mx_hist *h, double ms)
{
	size_t i = 0;
	while (i < MX_N_HIST && ms > HIST_LE_MS[i])
		i++;
	if (i < MX_N_HIST)
		h->bucket[i]++;
	h->count++;
	h->sum_ms += ms;
}

void
mx_hist_write(mx_buf *b, const char *name, const char *label, const char *value, const mx_hist *h)
{
	/* The label pair once: `participant="x"`, or nothing. */
	mx_buf l = { 0 };
	if (label) {
		mx_printf(&l, "%s=\"", label);
		mx_label(&l, value);
		mx_printf(&l, "\"");
	}
	if (l.failed) {
		b->failed = 1;
		free(l.p);
		return;
	}
	const char *pair = l.p ? l.p : "", *comma = l.p ? "," : "";
	uint64_t cum = 0;
	for (size_t i = 0; i < MX_N_HIST; i++) {
		cum += h->bucket[i];
		mx_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, pair, comma,
		    HIST_LE_MS[i] / 1000.0, (unsigned long long)cum);
	}
	mx_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, pair, comma,
	    (unsigned long long)h->count);
	if (l.p) {
		mx_printf(b, "%s_sum{%s} %.6f\n", name, pair, h->sum_ms / 1000.0);
		mx_printf(b, "%s_count{%s} %llu\n", name, pair, (unsigned long long)h->count);
	} else {
		mx_printf(b, "%s_sum %.6f\n", name, h->sum_ms / 1000.0);
		mx_printf(b, "%s_count %llu\n", name, (unsigned long long)h->count);
	}
	free(l.p);
}

mx_named *
mx_table_get(mx_table *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return &t->v[i];
	if (t->n == MX_MAX_NAMED)
		return NULL;
	mx_named *e = &t->v[t->n];
	memset(e, 0, sizeof(*e));
	if ((e->name = strdup(name)) == NULL)
		return NULL;
	t->n++;
	return e;
}

void
mx_table_remove(mx_table *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].name, name) != 0)
			continue;
		free(t->v[i].name);
		t->v[i] = t->v[--t->n];
		return;
	}
}

void
mx_table_clear(mx_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].name);
	t->n = 0;
}
