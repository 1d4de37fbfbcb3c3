/* log: structured log lines (logfmt or JSON), one write(2) each. See log.h. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonstr.h"
#include "utf8.h"

int slog_level = SLOG_INFO;

static atomic_int log_fd = 2;
static atomic_int log_format = SLOG_LOGFMT;
/* A partial write (a full pipe, a signal) is finished by further write(2)
 * calls; the mutex keeps another thread's line out of the gap. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

/* A message longer than this is cut and marked, so that a runaway caller
 * (e.g. logging a whole payload) costs bounded stack and one bounded line. */
#define MSG_MAX        8192
/* Escaping can grow text up to 6x (\u00XX); past this the escaped message
 * is cut too. Both buffers live on the caller's stack (~25 KiB). */
#define LINE_MAX_BYTES 16384
#define ID_MAX         512 /* escaped saga id / step name */
#define MARK_MAX       64

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
slog_init(int level, int format, FILE *out)
{
	if (level < SLOG_ERROR)
		level = SLOG_ERROR;
	if (level > SLOG_DEBUG)
		level = SLOG_DEBUG;
	if (out != NULL)
		fflush(out);
	slog_level = level;
	atomic_store(&log_format, format == SLOG_JSON ? SLOG_JSON : SLOG_LOGFMT);
	atomic_store(&log_fd, out != NULL ? fileno(out) : 2);
}

int
slog_parse_level(const char *s)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

int
slog_parse_format(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "logfmt") == 0)
		return SLOG_LOGFMT;
	if (strcmp(s, "json") == 0)
		return SLOG_JSON;
	return -1;
}

/*
 * Appends s[0..n) escaped for the inside of a double-quoted logfmt or JSON
 * string to out[*pos..cap). Stops at a whole character when the next one
 * would not fit; returns 1 if it had to stop early.
 * Control characters become \n, \r, \t or \u00XX so that one event is one
 * line whatever it contains. Bytes that are not UTF-8 become \ufffd in
 * JSON (which must be UTF-8) and \xNN in logfmt (keeping the byte).
 */
static int
escape(char *out, size_t *pos, size_t cap, const char *s, size_t n, int json)
{
	size_t used;
	*pos += cm_json_escape(
	    out + *pos, cap - *pos, s, n, CM_JSON_DEL | (json ? CM_JSON_FFFD : CM_JSON_XNN), &used);
	return used < n;
}

static void
put(char *out, size_t *pos, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n > cap - *pos)
		n = cap - *pos;
	memcpy(out + *pos, s, n);
	*pos += n;
}

/* A logfmt value needs quotes if it is empty or holds a space, '=', '"',
 * a control character or anything but ASCII. */
static int
needs_quotes(const char *s)
{
	if (*s == '\0')
		return 1;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p >= 0x7f)
			return 1;
	return 0;
}

static void
put_field(char *out, size_t *pos, size_t cap, const char *key, const char *val, int json)
{
	size_t vcap;

	if (json) {
		put(out, pos, cap, ",\"");
		put(out, pos, cap, key);
		put(out, pos, cap, "\":\"");
	} else {
		put(out, pos, cap, " ");
		put(out, pos, cap, key);
		put(out, pos, cap, "=");
	}
	vcap = *pos + ID_MAX < cap ? *pos + ID_MAX : cap;
	if (json || needs_quotes(val)) {
		if (!json)
			put(out, pos, cap, "\"");
		escape(out, pos, vcap, val, strlen(val), json);
		put(out, pos, cap, "\"");
	} else {
		escape(out, pos, vcap, val, strlen(val), 0);
	}
}

static void
write_all(int fd, const char *buf, size_t len)
{
	pthread_mutex_lock(&log_mu);
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break; /* nowhere to report a failing log */
		}
		buf += n;
		len -= (size_t)n;
	}
	pthread_mutex_unlock(&log_mu);
}

void
slog_write(int level, const char *saga, const char *step, const char *fmt, ...)
{
	slog_ctx c = { .saga = saga, .step = step };
	va_list ap;
	va_start(ap, fmt);
	slog_vwrite(level, &c, fmt, ap);
	va_end(ap);
}

void
slog_write_ctx(int level, const slog_ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	slog_vwrite(level, c, fmt, ap);
	va_end(ap);
}

void
slog_vwrite(int level, const slog_ctx *c, const char *fmt, va_list ap)
{
	char msg[MSG_MAX + 1];
	char line[LINE_MAX_BYTES + MARK_MAX + 8];
	char mark[MARK_MAX];
	size_t pos = 0, mlen;
	int n, json, cut = 0;
	struct timespec ts;
	struct tm tm;
	va_list aq;

	if (level > slog_level)
		return;
	if (level < SLOG_ERROR)
		level = SLOG_ERROR;
	if (level > SLOG_DEBUG)
		level = SLOG_DEBUG;
	json = atomic_load(&log_format) == SLOG_JSON;

	va_copy(aq, ap);
	n = vsnprintf(msg, sizeof(msg), fmt, aq);
	va_end(aq);
	if (n < 0) {
		msg[0] = '\0';
		n = 0;
	}
	mlen = (size_t)n;
	if (mlen > MSG_MAX) {
		/* Do not leave half a UTF-8 character at the cut. */
		mlen = cm_utf8_cut(msg, MSG_MAX);
		cut = 1;
	}

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char tsbuf[96]; /* sized for any int, so the compiler can prove no truncation */
	snprintf(tsbuf, sizeof(tsbuf), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);

	if (json) {
		put(line, &pos, LINE_MAX_BYTES, "{\"ts\":\"");
		put(line, &pos, LINE_MAX_BYTES, tsbuf);
		put(line, &pos, LINE_MAX_BYTES, "\",\"level\":\"");
		put(line, &pos, LINE_MAX_BYTES, level_names[level]);
		put(line, &pos, LINE_MAX_BYTES, "\"");
	} else {
		put(line, &pos, LINE_MAX_BYTES, "ts=");
		put(line, &pos, LINE_MAX_BYTES, tsbuf);
		put(line, &pos, LINE_MAX_BYTES, " level=");
		put(line, &pos, LINE_MAX_BYTES, level_names[level]);
	}
	if (c != NULL && c->saga != NULL)
		put_field(line, &pos, LINE_MAX_BYTES, "saga", c->saga, json);
	if (c != NULL && c->step != NULL)
		put_field(line, &pos, LINE_MAX_BYTES, "step", c->step, json);
	if (c != NULL && c->participant != NULL)
		put_field(line, &pos, LINE_MAX_BYTES, "participant", c->participant, json);
	if (c != NULL && c->attempt != 0) {
		char ab[16];
		snprintf(ab, sizeof(ab), "%u", c->attempt);
		put_field(line, &pos, LINE_MAX_BYTES, "attempt", ab, json);
	}
	if (c != NULL && c->trace != NULL)
		put_field(line, &pos, LINE_MAX_BYTES, "trace_id", c->trace, json);
	put(line, &pos, LINE_MAX_BYTES, json ? ",\"msg\":\"" : " msg=\"");
	if (escape(line, &pos, LINE_MAX_BYTES, msg, mlen, json))
		cut = 1;
	/* The marker and the closing characters have their own reserve past
	 * LINE_MAX_BYTES, so the line is always well-formed. */
	if (cut) {
		snprintf(mark, sizeof(mark), "...[truncated, %d bytes in all]", n);
		put(line, &pos, sizeof(line), mark);
	}
	put(line, &pos, sizeof(line), json ? "\"}\n" : "\"\n");

	write_all(atomic_load(&log_fd), line, pos);
}
