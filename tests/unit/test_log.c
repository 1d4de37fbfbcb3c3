/* Unit tests of server/log.c: line format, escaping, levels, atomic lines. */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* ---- capture ------------------------------------------------------------ */

static FILE *capf;

static void
capture(int level, int format)
{
	if (capf != NULL)
		fclose(capf);
	capf = tmpfile();
	ck_assert_ptr_nonnull(capf);
	slog_init(level, format, capf);
}

/* Everything logged so far (the logger writes to the fd, not the FILE). */
static char *
captured(void)
{
	int fd = fileno(capf);
	off_t end = lseek(fd, 0, SEEK_END);
	char *buf = malloc((size_t)end + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(pread(fd, buf, (size_t)end, 0), end);
	buf[end] = '\0';
	return buf;
}

static int
count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* ---- a small strict JSON reader for our lines: one object of strings ----- */

typedef struct kv {
	char key[16];
	char val[40000];
} kv;

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parses a JSON string at *p into out (UTF-8); -1 if not valid JSON. */
static int
json_str(const char **p, char *out, size_t cap)
{
	const char *s = *p;
	size_t o = 0;
	if (*s++ != '"')
		return -1;
	while (*s != '"') {
		unsigned cp;
		if (*s == '\0' || (unsigned char)*s < 0x20)
			return -1;
		if (*s != '\\') {
			if (o + 1 >= cap)
				return -1;
			out[o++] = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case '"':
		case '\\':
		case '/':
			cp = (unsigned char)*s;
			break;
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			cp = 0;
			for (int i = 1; i <= 4; i++) {
				int h = hexval(s[i]);
				if (h < 0)
					return -1;
				cp = cp * 16 + (unsigned)h;
			}
			s += 4;
			break;
		default:
			return -1;
		}
		s++;
		if (o + 4 >= cap)
			return -1;
		if (cp < 0x80) {
			out[o++] = (char)cp;
		} else if (cp < 0x800) {
			out[o++] = (char)(0xc0 | cp >> 6);
			out[o++] = (char)(0x80 | (cp & 0x3f));
		} else {
			out[o++] = (char)(0xe0 | cp >> 12);
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (cp & 0x3f));
		}
	}
	out[o] = '\0';
	*p = s + 1;
	return 0;
}

/* Parses `{"k":"v",...}\n`; returns the number of pairs or -1. */
static int
json_line(const char *line, kv *kvs, int max)
{
	const char *p = line;
	int n = 0;
	if (*p++ != '{')
		return -1;
	for (;;) {
		if (n == max)
			return -1;
		if (json_str(&p, kvs[n].key, sizeof(kvs[n].key)) != 0 || *p++ != ':' ||
		    json_str(&p, kvs[n].val, sizeof(kvs[n].val)) != 0)
			return -1;
		n++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p++ != '}')
			return -1;
		break;
	}
	return (p[0] == '\n' && p[1] == '\0') || p[0] == '\0' ? n : -1;
}

static const char *
get(kv *kvs, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(kvs[i].key, key) == 0)
			return kvs[i].val;
	return NULL;
}

static int
is_ts(const char *t)
{
	/* 2026-11-22T10:00:00.123456Z */
	const char *pat = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	size_t i;
	for (i = 0; pat[i]; i++) {
		if (pat[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != pat[i])
			return 0;
	}
	return t[i] == '\0' || t[i] == ' ' || t[i] == '"';
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(logfmt_line_has_ts_level_saga_step_and_quoted_msg)
{
	capture(SLOG_INFO, SLOG_LOGFMT);
	slog_saga(SLOG_INFO, "0190b5a2-8c1e-7f00-a000-000000000001", "charge_card",
	    "charged %d cents", 1250);
	char *out = captured();
	ck_assert_int_eq(count_lines(out), 1);
	ck_assert(strncmp(out, "ts=", 3) == 0);
	ck_assert_msg(is_ts(out + 3), "bad ts in %s", out);
	const char *rest = strchr(out, ' ');
	ck_assert_str_eq(rest,
	    " level=info saga=0190b5a2-8c1e-7f00-a000-000000000001 "
	    "step=charge_card msg=\"charged 1250 cents\"\n");
	free(out);
}
END_TEST

START_TEST(saga_context_lines_carry_participant_attempt_and_trace_id_in_both_formats)
{
	slog_ctx c = { .saga = "s1",
		.step = "ship",
		.participant = "shipping",
		.attempt = 3,
		.trace = "4bf92f3577b34da6a3ce929d0e0e4736" };
	capture(SLOG_INFO, SLOG_LOGFMT);
	slog_write_ctx(SLOG_INFO, &c, "attempt %s", "failed");
	char *out = captured();
	ck_assert_ptr_nonnull(strstr(out,
	    " level=info saga=s1 step=ship participant=shipping "
	    "attempt=3 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 "
	    "msg=\"attempt failed\"\n"));
	free(out);

	capture(SLOG_INFO, SLOG_JSON);
	slog_write_ctx(SLOG_INFO, &c, "x");
	c.attempt = 0;
	c.participant = NULL;
	slog_write_ctx(SLOG_INFO, &c, "y");
	out = captured();
	ck_assert_int_eq(count_lines(out), 2);
	ck_assert_ptr_nonnull(strstr(out,
	    "\"level\":\"info\",\"saga\":\"s1\",\"step\":\"ship\","
	    "\"participant\":\"shipping\",\"attempt\":\"3\","
	    "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"msg\":\"x\"}"));
	ck_assert_ptr_nonnull(strstr(out,
	    "\"step\":\"ship\",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"msg\":\"y\"}"));
	free(out);
}
END_TEST

START_TEST(logfmt_omits_saga_and_step_when_null)
{
	capture(SLOG_DEBUG, SLOG_LOGFMT);
	slog_warn("disk %s", "slow");
	slog_saga(SLOG_ERROR, "s1", NULL, "x");
	char *out = captured();
	ck_assert_int_eq(count_lines(out), 2);
	ck_assert_ptr_nonnull(strstr(out, " level=warn msg=\"disk slow\"\n"));
	ck_assert_ptr_nonnull(strstr(out, " level=error saga=s1 msg=\"x\"\n"));
	ck_assert_ptr_null(strstr(out, "step="));
	free(out);
}
END_TEST

START_TEST(logfmt_escapes_quotes_backslashes_and_control_chars)
{
	capture(SLOG_INFO, SLOG_LOGFMT);
	slog_info("a\"b\\c\nd\te\r\x01 \xff end");
	slog_saga(SLOG_INFO, "has space", "a=b", "m");
	char *out = captured();
	ck_assert_int_eq(count_lines(out), 2);
	ck_assert_ptr_nonnull(strstr(out, " msg=\"a\\\"b\\\\c\\nd\\te\\r\\u0001 \\xff end\"\n"));
	ck_assert_ptr_nonnull(strstr(out, " saga=\"has space\" step=\"a=b\" msg=\"m\"\n"));
	free(out);
}
END_TEST

START_TEST(json_line_is_valid_json_with_escaped_fields)
{
	static kv kvs[8];
	const char *msg = "quote\" back\\ nl\n tab\t ctl\x02 del\x7f utf8 \xc3\xa9 bad \xc3(";
	capture(SLOG_INFO, SLOG_JSON);
	slog_saga(SLOG_INFO, "saga\"1", "step\n2", "%s", msg);
	slog_error("plain");
	char *out = captured();
	ck_assert_int_eq(count_lines(out), 2);
	char *second = strchr(out, '\n') + 1;
	second[-1] = '\0';

	int n = json_line(out, kvs, 8);
	ck_assert_msg(n == 5, "not valid JSON: %s", out);
	ck_assert_str_eq(kvs[0].key, "ts");
	ck_assert(is_ts(kvs[0].val));
	ck_assert_str_eq(get(kvs, n, "level"), "info");
	ck_assert_str_eq(get(kvs, n, "saga"), "saga\"1");
	ck_assert_str_eq(get(kvs, n, "step"), "step\n2");
	/* Invalid UTF-8 (\xc3 followed by '(') becomes U+FFFD. */
	ck_assert_str_eq(get(kvs, n, "msg"),
	    "quote\" back\\ nl\n tab\t ctl\x02 del\x7f utf8 \xc3\xa9 bad \xef\xbf\xbd(");

	n = json_line(second, kvs, 8);
	ck_assert_msg(n == 3, "not valid JSON: %s", second);
	ck_assert_str_eq(get(kvs, n, "level"), "error");
	ck_assert_ptr_null(get(kvs, n, "saga"));
	ck_assert_ptr_null(get(kvs, n, "step"));
	free(out);
}
END_TEST

START_TEST(level_filter_drops_lines_below_the_configured_level)
{
	capture(SLOG_WARN, SLOG_LOGFMT);
	slog_debug("d");
	slog_info("i");
	slog_warn("w");
	slog_error("e");
	/* The direct call filters too. */
	slog_write(SLOG_INFO, NULL, NULL, "direct");
	char *out = captured();
	ck_assert_int_eq(count_lines(out), 2);
	ck_assert_ptr_nonnull(strstr(out, "level=warn msg=\"w\""));
	ck_assert_ptr_nonnull(strstr(out, "level=error msg=\"e\""));
	free(out);

	capture(SLOG_DEBUG, SLOG_LOGFMT);
	slog_debug("d%d", 1);
	out = captured();
	ck_assert_ptr_nonnull(strstr(out, "level=debug msg=\"d1\""));
	free(out);
}
END_TEST

START_TEST(parse_level_and_format_accept_known_names_only)
{
	ck_assert_int_eq(slog_parse_level("error"), SLOG_ERROR);
	ck_assert_int_eq(slog_parse_level("warn"), SLOG_WARN);
	ck_assert_int_eq(slog_parse_level("info"), SLOG_INFO);
	ck_assert_int_eq(slog_parse_level("debug"), SLOG_DEBUG);
	ck_assert_int_eq(slog_parse_level("INFO"), -1);
	ck_assert_int_eq(slog_parse_level("trace"), -1);
	ck_assert_int_eq(slog_parse_level(NULL), -1);
	ck_assert_int_eq(slog_parse_format("logfmt"), SLOG_LOGFMT);
	ck_assert_int_eq(slog_parse_format("json"), SLOG_JSON);
	ck_assert_int_eq(slog_parse_format("text"), -1);
}
END_TEST

START_TEST(huge_message_is_truncated_with_a_marker_on_one_valid_line)
{
	static kv kvs[8];
	size_t big = 200000;
	char *m = malloc(big + 1);
	memset(m, 'x', big);
	m[big] = '\0';
	/* Escapes that would grow past the line buffer. */
	for (size_t i = 0; i < big; i += 3)
		m[i] = '\n';

	capture(SLOG_INFO, SLOG_JSON);
	slog_info("%s", m);
	char *out = captured();
	ck_assert_int_eq(count_lines(out), 1);
	ck_assert_uint_lt(strlen(out), 20000);
	ck_assert_int_eq(json_line(out, kvs, 8), 3);
	ck_assert_ptr_nonnull(strstr(get(kvs, 3, "msg"), "[truncated, 200000 bytes in all]"));
	free(out);

	capture(SLOG_INFO, SLOG_LOGFMT);
	slog_info("%s", m);
	out = captured();
	ck_assert_int_eq(count_lines(out), 1);
	ck_assert_ptr_nonnull(strstr(out, "[truncated, 200000 bytes in all]\"\n"));
	free(out);
	free(m);
}
END_TEST

START_TEST(truncation_never_splits_a_utf8_character)
{
	static kv kvs[8];
	/* 8191 ASCII bytes then a 3-byte character straddling the cut. */
	char *m = malloc(9000);
	memset(m, 'a', 8191);
	strcpy(m + 8191, "\xe2\x82\xac tail");
	capture(SLOG_INFO, SLOG_JSON);
	slog_info("%s", m);
	char *out = captured();
	ck_assert_int_eq(json_line(out, kvs, 8), 3);
	ck_assert_ptr_null(strstr(out, "\\ufffd"));
	ck_assert_ptr_nonnull(strstr(out, "a...[truncated"));
	free(out);
	free(m);
}
END_TEST

/* ---- concurrency ---------------------------------------------------------- */

#define THREADS 8
#define LINES   400

static void *
writer(void *arg)
{
	int t = (int)(long)arg;
	char pad[6001];
	for (int i = 0; i < LINES; i++) {
		/* Lengths up to ~6 KB: beyond PIPE_BUF, where the kernel
		 * would split and interleave writes. */
		size_t len = (size_t)((i * 977 + t * 131) % 6000);
		memset(pad, 'a' + t, len);
		pad[len] = '\0';
		slog_saga(SLOG_INFO, "saga", "step", "t%d n%d %s", t, i, pad);
	}
	return NULL;
}

typedef struct reader_arg {
	int fd;
	char *buf;
	size_t len;
} reader_arg;

static void *
reader(void *arg)
{
	reader_arg *ra = arg;
	size_t cap = 1 << 20;
	ra->buf = malloc(cap);
	for (;;) {
		if (cap - ra->len < 65536) {
			cap *= 2;
			ra->buf = realloc(ra->buf, cap);
		}
		ssize_t n = read(ra->fd, ra->buf + ra->len, cap - ra->len - 1);
		if (n <= 0)
			break;
		ra->len += (size_t)n;
	}
	ra->buf[ra->len] = '\0';
	return NULL;
}

START_TEST(concurrent_writers_never_interleave_lines)
{
	static kv kvs[8];
	int pfd[2];
	pthread_t w[THREADS], r;
	reader_arg ra = { 0, NULL, 0 };
	int seen[THREADS] = { 0 };

	ck_assert_int_eq(pipe(pfd), 0);
	FILE *wf = fdopen(pfd[1], "w");
	ck_assert_ptr_nonnull(wf);
	ra.fd = pfd[0];
	slog_init(SLOG_INFO, SLOG_JSON, wf);
	pthread_create(&r, NULL, reader, &ra);
	for (long t = 0; t < THREADS; t++)
		pthread_create(&w[t], NULL, writer, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(w[t], NULL);
	slog_init(SLOG_INFO, SLOG_JSON, NULL);
	fclose(wf);
	pthread_join(r, NULL);

	int lines = 0;
	for (char *line = ra.buf, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		ck_assert_ptr_nonnull(nl);
		*nl = '\0';
		int n = json_line(line, kvs, 8);
		ck_assert_msg(n == 5, "line %d is not one JSON object: %.200s", lines, line);
		int t, i, off;
		ck_assert_int_eq(sscanf(get(kvs, n, "msg"), "t%d n%d %n", &t, &i, &off), 2);
		ck_assert(t >= 0 && t < THREADS);
		ck_assert_int_eq(i, seen[t]); /* each thread's lines in order */
		seen[t]++;
		const char *pad = get(kvs, n, "msg") + off;
		size_t want = (size_t)((i * 977 + t * 131) % 6000);
		/* One assertion per line, not per byte: Check records every
		 * assertion it passes. */
		char fill[2] = { (char)('a' + t), '\0' };
		ck_assert_msg(strlen(pad) == want && strspn(pad, fill) == want,
		    "line %d: thread %d's padding is damaged", lines, t);
		lines++;
	}
	ck_assert_int_eq(lines, THREADS * LINES);
	free(ra.buf);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, logfmt_line_has_ts_level_saga_step_and_quoted_msg);
	tcase_add_test(tc, logfmt_omits_saga_and_step_when_null);
	tcase_add_test(
	    tc, saga_context_lines_carry_participant_attempt_and_trace_id_in_both_formats);
	tcase_add_test(tc, logfmt_escapes_quotes_backslashes_and_control_chars);
	tcase_add_test(tc, json_line_is_valid_json_with_escaped_fields);
	tcase_add_test(tc, level_filter_drops_lines_below_the_configured_level);
	tcase_add_test(tc, parse_level_and_format_accept_known_names_only);
	tcase_add_test(tc, huge_message_is_truncated_with_a_marker_on_one_valid_line);
	tcase_add_test(tc, truncation_never_splits_a_utf8_character);
	tcase_add_test(tc, concurrent_writers_never_interleave_lines);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
