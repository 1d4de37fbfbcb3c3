/* metrics: text, histograms and named counters for /metrics. See metrics.h. */
#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const double HIST_LE_MS[MX_N_HIST] = { 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000,
	5000, 30000 };

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

/* The start time, taken when the program starts: /proc/stat (boot time)
 * is hidden from a unit with ProcSubset=pid. */
static double start_s;

__attribute__((constructor)) static void
note_start(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	start_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
mx_process(mx_buf *b, const char *version)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long long ut = 0, st = 0, vsize = 0;
	long long rss = 0;
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	if (f != NULL) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		/* After the command name in parentheses (which may hold spaces):
		 * field 3 is the state; utime and stime are 14 and 15, vsize 23,
		 * rss 24. */
		char *p = strrchr(buf, ')');
		if (p != NULL &&
		    sscanf(p + 2,
			"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
			"%*d %*d %*u %llu %lld",
			&ut, &st, &vsize, &rss) != 4)
			ut = st = vsize = 0, rss = 0;
	}
	long fds = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d != NULL) {
		for (struct dirent *e; (e = readdir(d)) != NULL;)
			fds += e->d_name[0] != '.';
		closedir(d);
		fds--; /* the directory's own descriptor */
	}
	struct rlimit rl = { 0, 0 };
	getrlimit(RLIMIT_NOFILE, &rl);
	double ticks = tick > 0 ? (double)tick : 100.0;
	mx_printf(b,
	    "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
	    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
	    "# HELP process_resident_memory_bytes Resident memory.\n"
	    "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n"
	    "# HELP process_virtual_memory_bytes Virtual memory.\n"
	    "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n"
	    "# HELP process_open_fds Open file descriptors.\n"
	    "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n"
	    "# HELP process_max_fds The limit on open file descriptors.\n"
	    "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n"
	    "# HELP process_start_time_seconds Start time, unix seconds.\n"
	    "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n"
	    "# HELP sagad_build_info The running sagad's version (always 1).\n"
	    "# TYPE sagad_build_info gauge\nsagad_build_info{version=\"",
	    (double)(ut + st) / ticks, rss * (long long)(page > 0 ? page : 4096), vsize, fds,
	    (unsigned long long)rl.rlim_cur, start_s);
	mx_label(b, version);
	mx_printf(b, "\"} 1\n");
}
