/*
 * log: the daemon's one log call family. Lines are structured, one per
 * event, on stderr: a JSON object ({"ts":...,"level":...,"saga":...,
 * "msg":...}, sagad's default) or logfmt (ts=... level=... saga=...
 * msg="..."). Until slog_init() the format is logfmt. The level is checked before anything
 * is formatted, so debug logging costs one comparison when off.
 */
#ifndef SAGAD_LOG_H
#define SAGAD_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

enum slog_level { SLOG_ERROR = 0, SLOG_WARN = 1, SLOG_INFO = 2, SLOG_DEBUG = 3 };

enum slog_format { SLOG_LOGFMT = 0, SLOG_JSON = 1 };

extern int slog_level;

/* Configure. out NULL = stderr. Safe to call again (e.g. on reload). */
void slog_init(int level, int format, FILE *out);
/* "error", "warn", "info", "debug" -> level; -1 if unknown. */
int slog_parse_level(const char *s);
/* "logfmt", "json" -> format; -1 if unknown. */
int slog_parse_format(const char *s);

/* Writes one line. saga and step may be NULL (then omitted). Thread safe:
 * each line is written with one write(2). */
void slog_write(int level, const char *saga, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What a line is about; every field may be NULL (0) and is then omitted.
 * Lines about a saga carry its id and W3C trace id, so one grep (or a log
 * pipeline joining on trace_id) finds everything a saga did. */
typedef struct slog_ctx {
	const char *saga;
	const char *step;
	const char *participant;
	uint32_t attempt;
	const char *trace; /* the saga's trace id, 32 hex digits */
} slog_ctx;

void slog_write_ctx(int level, const slog_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void slog_vwrite(int level, const slog_ctx *c, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define slog(lvl, ...)                                              \
	do {                                                        \
		if ((lvl) <= slog_level)                            \
			slog_write((lvl), NULL, NULL, __VA_ARGS__); \
	} while (0)

/* A line about one saga (and optionally one step of it). */
#define slog_saga(lvl, saga, step, ...)                                 \
	do {                                                            \
		if ((lvl) <= slog_level)                                \
			slog_write((lvl), (saga), (step), __VA_ARGS__); \
	} while (0)

#define slog_error(...) slog(SLOG_ERROR, __VA_ARGS__)
#define slog_warn(...)  slog(SLOG_WARN, __VA_ARGS__)
#define slog_info(...)  slog(SLOG_INFO, __VA_ARGS__)
#define slog_debug(...) slog(SLOG_DEBUG, __VA_ARGS__)

#endif
