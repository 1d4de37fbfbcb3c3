/*
 * metrics: the pieces /metrics is written with (Prometheus text format):
 * a growing text buffer, label escaping, histograms with fixed bounds, and
 * counters kept by name (a definition, a participant). The engine and the
 * dispatcher each keep their own figures with these and write their part
 * of the page (engine_metrics, dsp_metrics). Not thread-safe: each owner
 * uses them under its own lock.
 */
#ifndef SAGAD_METRICS_H
#define SAGAD_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Text that grows as it is written; `failed` once an allocation failed
 * (then the text is incomplete and must not be served). */
typedef struct mx_buf {
	char *p;
	size_t n, cap;
	int failed;
} mx_buf;

void mx_printf(mx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A label value: \, " and newlines escaped. */
void mx_label(mx_buf *b, const char *v);

/* Histogram bucket bounds in milliseconds (Prometheus "le"), shared by
 * commit times and step latencies. */
#define MX_N_HIST 14

typedef struct mx_hist {
	uint64_t bucket[MX_N_HIST]; /* non-cumulative */
	uint64_t count;
	double sum_ms;
} mx_hist;

void mx_hist_add(mx_hist *h, double ms);
/* Writes h as histogram `name` (in seconds), with the label pair
 * label="value" when label is not NULL. */
void mx_hist_write(
    mx_buf *b, const char *name, const char *label, const char *value, const mx_hist *h);

/* Figures kept by name: sagas by definition, step latency by participant. */
#define MX_MAX_NAMED 256
typedef struct mx_named {
	char *name;
	uint64_t started, completed, compensated, parked, terminated;
	mx_hist latency;
	/* step outcomes, by kind (action, compensation) and outcome (success,
	 * retryable error, timeout, business failure) */
	uint64_t outcomes[2][4];
} mx_named;

typedef struct mx_table {
	mx_named v[MX_MAX_NAMED];
	size_t n;
} mx_table;

/* The entry for name, added if absent; NULL when the table is full or out
 * of memory (the figure is then not counted). */
mx_named *mx_table_get(mx_table *t, const char *name);
void mx_table_clear(mx_table *t);
/* Drops the entry for name, if any (the last entry takes its place). */
void mx_table_remove(mx_table *t, const char *name);

/* The standard process figures (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds, from
 * /proc/self) and sagad_build_info{version}. */
void mx_process(mx_buf *b, const char *version);

#endif
