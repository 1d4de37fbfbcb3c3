/* output: text tables, JSON output, times; a saga shown like `get`. See
 * sagactl.h. */
#include "sagactl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "jsonstr.h"
#include "utf8.h"

#define ERROR_COL_MAX 60

/* ---- time -------------------------------------------------------------- */

/* Local time as ISO 8601 with milliseconds and offset; "-" for 0. */
const char *
ctl_local_time(int64_t us, char *buf, size_t n)
{
	if (us <= 0)
		return "-";
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	char off[8];
	if (localtime_r(&t, &tm) == NULL)
		return "?";
	size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(off, sizeof(off), "%z", &tm); /* +0100 */
	snprintf(buf + k, n - k, ".%03d%.3s:%.2s", (int)(us / 1000 % 1000), off, off + 3);
	return buf;
}

/* UTC RFC 3339 for JSON; "" for 0. */
const char *
ctl_utc_time(int64_t us, char *buf, size_t n)
{
	if (us <= 0)
		return "";
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		return "";
	size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + k, n - k, ".%06dZ", (int)(us % 1000000));
	return buf;
}

static const char *
duration(int64_t us, char *buf, size_t n)
{
	int64_t ms = us / 1000;
	if (ms < 1000)
		snprintf(buf, n, "%" PRId64 "ms", ms);
	else if (ms < 60000)
		snprintf(buf, n, "%.1fs", (double)ms / 1000.0);
	else if (ms < 3600000)
		snprintf(buf, n, "%" PRId64 "m%02" PRId64 "s", ms / 60000, ms / 1000 % 60);
	else
		snprintf(buf, n, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, ms / 60000 % 60);
	return buf;
}

int64_t
ctl_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- text output ------------------------------------------------------- */

/* Copies s for a table cell: control characters become spaces, and text
 * longer than max bytes is cut at a character boundary with "...". */
char *
ctl_cell(const char *s, size_t max, int *cut)
{
	size_t n = strlen(s);
	if (cut != NULL)
		*cut = 0;
	if (n > max) {
		n = cm_utf8_cut(s, max);
		if (cut != NULL)
			*cut = 1;
	}
	char *out = malloc(n + 4);
	if (out == NULL) {
		fprintf(stderr, "sagactl: out of memory\n");
		exit(SAGA_ENOMEM);
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
	strcpy(out + n, n < strlen(s) ? "..." : "");
	return out;
}

char *
ctl_cellf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return ctl_cell(buf, sizeof(buf), NULL);
}

void
ctl_table_add(table *t, char **row)
{
	if (t->rows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = realloc(t->cells, t->cap * t->cols * sizeof(char *));
		if (t->cells == NULL) {
			fprintf(stderr, "sagactl: out of memory\n");
			exit(SAGA_ENOMEM);
		}
	}
	memcpy(t->cells + t->rows * t->cols, row, t->cols * sizeof(char *));
	t->rows++;
}

char *
ctl_state_cell(const char *state, const char *suffix)
{
	const char *c = NULL;
	if (ctl_color) {
		if (strcmp(state, "completed") == 0 || strcmp(state, "succeeded") == 0)
			c = "32";
		else if (strcmp(state, "compensated") == 0)
			c = "33";
		else if (strcmp(state, "terminated") == 0)
			c = "35";
		else if (strcmp(state, "failed") == 0 || strcmp(state, "comp_failed") == 0)
			c = "31";
		else if (strcmp(state, "running") == 0 || strcmp(state, "compensating") == 0)
			c = "36";
	}
	if (c == NULL)
		return ctl_cellf("%s%s", state, suffix ? suffix : "");
	/* Not through ctl_cellf, which blanks control characters (cells may
	 * hold text from the network): state names and suffixes are ours. */
	const char *sfx = suffix ? suffix : "";
	size_t n = strlen(state) + strlen(sfx) + 16;
	char *cell = malloc(n);
	if (cell == NULL)
		exit(SAGA_ENOMEM);
	snprintf(cell, n, "\033[%sm%s\033[0m%s", c, state, sfx);
	return cell;
}

/* Printed width of a cell: escape sequences take no room. */
static size_t
visible_len(const char *s)
{
	size_t n = 0;
	while (*s) {
		if (*s == '\033' && s[1] == '[') {
			s += 2;
			while (*s && *s != 'm')
				s++;
			if (*s)
				s++;
			continue;
		}
		s++, n++;
	}
	return n;
}

void
ctl_table_free(table *t)
{
	for (size_t i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->rows = t->cap = 0;
}

void
ctl_table_print(table *t)
{
	size_t *w = calloc(t->cols, sizeof(size_t));
	if (w == NULL)
		exit(SAGA_ENOMEM);
	for (size_t r = 0; r < t->rows; r++)
		for (size_t c = 0; c < t->cols; c++) {
			size_t n = visible_len(t->cells[r * t->cols + c]);
			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r < t->rows; r++) {
		char **row = t->cells + r * t->cols;
		size_t last = t->cols;
		/* No padding after the last non-empty cell. */
		while (last > 1 && row[last - 1][0] == '\0')
			last--;
		for (size_t c = 0; c < last; c++) {
			if (c + 1 == last)
				printf("%s\n", row[c]);
			else
				printf("%s%*s  ", row[c], (int)(w[c] - visible_len(row[c])), "");
		}
	}
	ctl_table_free(t);
	free(w);
}

/* ---- events ------------------------------------------------------------ */

/* "12.3ms", "4.567s", "3m02s" */
static const char *
span(int64_t us, char *buf, size_t n)
{
	if (us < 0)
		us = 0;
	if (us < 1000000)
		snprintf(buf, n, "%.1fms", (double)us / 1000.0);
	else if (us < 60000000)
		snprintf(buf, n, "%.3fs", (double)us / 1e6);
	else
		snprintf(buf, n, "%lldm%02llds", (long long)(us / 60000000),
		    (long long)(us / 1000000 % 60));
	return buf;
}

void
ctl_print_event_head(void)
{
	printf("%-29s %10s %10s  %-27s %-16s %3s  %s\n", "TIME", "+PREV", "+START", "EVENT", "STEP",
	    "ATT", "DETAIL");
}

void
ctl_print_event_row(const saga_event *e, int64_t start, int64_t prev)
{
	char tb[64], d1[32], d2[32], att[16] = "-";
	if (e->attempt)
		snprintf(att, sizeof(att), "%u", e->attempt);
	char *detail = ctl_cell(e->detail, 4096, NULL);
	printf("%-29s %10s %10s  %-27s %-16s %3s  %s\n", ctl_local_time(e->at_us, tb, sizeof(tb)),
	    span(e->at_us - prev, d1, sizeof(d1)), span(e->at_us - start, d2, sizeof(d2)), e->type,
	    *e->step ? e->step : "-", att, *detail ? detail : "-");
	free(detail);
}

/* ---- JSON output ------------------------------------------------------- */

void
ctl_json_str(const char *s)
{
	char buf[256];
	size_t n = strlen(s), used;
	putchar('"');
	while (n > 0) {
		fwrite(buf, 1, cm_json_escape(buf, sizeof(buf), s, n, CM_JSON_DEL, &used), stdout);
		s += used;
		n -= used;
	}
	putchar('"');
}

static void
json_base64(const uint8_t *b, size_t n)
{
	char buf[CM_BASE64_LEN(192)];
	putchar('"');
	for (size_t i = 0; i < n; i += 192) /* whole groups of 3 but the last */
		fwrite(buf, 1, cm_base64_encode(buf, b + i, n - i < 192 ? n - i : 192), stdout);
	putchar('"');
}

/* "key": for the members of an object; first says whether to omit the comma. */
void
ctl_json_key(int *first, const char *k)
{
	if (!*first)
		putchar(',');
	*first = 0;
	ctl_json_str(k);
	putchar(':');
}

void
ctl_json_kv_str(int *first, const char *k, const char *v)
{
	ctl_json_key(first, k);
	ctl_json_str(v);
}

void
ctl_json_kv_int(int *first, const char *k, int64_t v)
{
	ctl_json_key(first, k);
	printf("%" PRId64, v);
}

void
ctl_json_kv_bool(int *first, const char *k, int v)
{
	ctl_json_key(first, k);
	fputs(v ? "true" : "false", stdout);
}

void
ctl_json_kv_strs(int *first, const char *k, char *const *v, size_t n)
{
	ctl_json_key(first, k);
	putchar('[');
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			putchar(',');
		ctl_json_str(v[i]);
	}
	putchar(']');
}

/* ---- a saga as `get` shows it ------------------------------------------ */

/* "key": the payload as a JSON value; if it cannot be decoded (or --raw),
 * "key": null, "key_base64": the bytes and "key_error": why. */
static void
json_payload(int *f, const char *key, const schema *sc, const char *type, const uint8_t *b,
    size_t n, const saga_info *info, const char *prefix)
{
	char why[600] = "--raw", k[64];
	char *j =
	    sc != NULL ? ctl_payload_json(sc, type, b, n, 0, info, prefix, why, sizeof(why)) : NULL;
	ctl_json_key(f, key);
	if (j != NULL) {
		fputs(j, stdout);
		free(j);
		return;
	}
	fputs("null", stdout);
	snprintf(k, sizeof(k), "%s_base64", key);
	ctl_json_key(f, k);
	json_base64(b, n);
	if (!ctl_opt_raw) {
		snprintf(k, sizeof(k), "%s_error", key);
		ctl_json_kv_str(f, k, why);
	}
}

static void
json_info(const saga_info *s, const schema *sc)
{
	char tb[64];
	int f = 1;
	putchar('{');
	ctl_json_kv_str(&f, "saga_id", s->saga_id);
	ctl_json_kv_str(&f, "definition", s->definition);
	ctl_json_kv_int(&f, "version", s->version);
	ctl_json_kv_str(&f, "state", saga_state_name(s->state));
	ctl_json_kv_str(&f, "idempotency_key", s->idempotency_key);
	ctl_json_kv_str(&f, "business_key", s->business_key);
	ctl_json_kv_int(&f, "created_us", s->created_us);
	ctl_json_kv_str(&f, "created", ctl_utc_time(s->created_us, tb, sizeof(tb)));
	ctl_json_kv_int(&f, "updated_us", s->updated_us);
	ctl_json_kv_str(&f, "updated", ctl_utc_time(s->updated_us, tb, sizeof(tb)));
	ctl_json_kv_str(&f, "updated", ctl_utc_time(s->updated_us, tb, sizeof(tb)));
	ctl_json_kv_int(&f, "deadline_us", s->deadline_us);
	ctl_json_kv_str(&f, "traceparent", s->traceparent);
	ctl_json_kv_str(&f, "error", s->error);
	ctl_json_kv_str(&f, "rerun_of", s->rerun_of ? s->rerun_of : "");
	ctl_json_kv_strs(&f, "rerun_as", s->rerun_as, s->n_rerun_as);
	json_payload(&f, "input", sc, sc != NULL && sc->d != NULL ? sc->d->input_type : "",
	    s->input, s->input_len, s, "input.");
	if (s->n_redacted > 0)
		ctl_json_kv_strs(&f, "redacted", s->redacted, s->n_redacted);
	ctl_json_key(&f, "steps");
	putchar('[');
	for (size_t i = 0; i < s->n_steps; i++) {
		const saga_step_info *st = &s->steps[i];
		int g = 1;
		if (i > 0)
			putchar(',');
		putchar('{');
		ctl_json_kv_str(&g, "name", st->name);
		ctl_json_kv_str(&g, "participant", st->participant);
		ctl_json_kv_str(&g, "compensation", st->compensation);
		ctl_json_kv_strs(&g, "depends_on", st->depends_on, st->n_depends_on);
		ctl_json_kv_str(&g, "state", saga_step_state_name(st->state));
		ctl_json_kv_bool(&g, "queued", st->queued);
		ctl_json_kv_int(&g, "attempts", st->attempts);
		ctl_json_kv_int(&g, "comp_attempts", st->comp_attempts);
		ctl_json_kv_int(&g, "started_us", st->started_us);
		ctl_json_kv_int(&g, "finished_us", st->finished_us);
		ctl_json_kv_int(&g, "comp_started_us", st->comp_started_us);
		ctl_json_kv_int(&g, "comp_finished_us", st->comp_finished_us);
		ctl_json_kv_int(&g, "next_attempt_us", st->next_attempt_us);
		ctl_json_kv_int(&g, "completion_seq", st->completion_seq);
		ctl_json_kv_str(&g, "last_error", st->last_error);
		if (st->result_len > 0 || st->state == SAGA_STEP_SUCCEEDED) {
			char prefix[300];
			snprintf(prefix, sizeof(prefix), "steps.%.256s.result.", st->name);
			json_payload(&g, "result", sc, ctl_step_output_type(sc, st->name),
			    st->result, st->result_len, s, prefix);
		}
		putchar('}');
	}
	printf("]");
	ctl_json_key(&f, "events");
	putchar('[');
	for (size_t i = 0; i < s->n_events; i++) {
		if (i > 0)
			putchar(',');
		ctl_json_event(&s->events[i]);
	}
	printf("]}");
}

void
ctl_json_summary(const saga_summary *s)
{
	char tb[64];
	int f = 1;
	putchar('{');
	ctl_json_kv_str(&f, "saga_id", s->saga_id);
	ctl_json_kv_str(&f, "definition", s->definition);
	ctl_json_kv_int(&f, "version", s->version);
	ctl_json_kv_str(&f, "state", saga_state_name(s->state));
	ctl_json_kv_str(&f, "business_key", s->business_key);
	ctl_json_kv_int(&f, "created_us", s->created_us);
	ctl_json_kv_str(&f, "created", ctl_utc_time(s->created_us, tb, sizeof(tb)));
	ctl_json_kv_int(&f, "updated_us", s->updated_us);
	ctl_json_kv_str(&f, "updated", ctl_utc_time(s->updated_us, tb, sizeof(tb)));
	ctl_json_kv_str(&f, "error", s->error);
	ctl_json_kv_int(&f, "steps_total", s->steps_total);
	ctl_json_kv_int(&f, "steps_done", s->steps_done);
	ctl_json_kv_str(&f, "rerun_of", s->rerun_of ? s->rerun_of : "");
	putchar('}');
}

void
ctl_json_event(const saga_event *e)
{
	char tb[64];
	int g = 1;
	putchar('{');
	ctl_json_kv_int(&g, "at_us", e->at_us);
	ctl_json_kv_str(&g, "at", ctl_utc_time(e->at_us, tb, sizeof(tb)));
	ctl_json_kv_str(&g, "type", e->type);
	ctl_json_kv_str(&g, "step", e->step);
	ctl_json_kv_int(&g, "attempt", e->attempt);
	ctl_json_kv_str(&g, "detail", e->detail);
	putchar('}');
}

static void
print_info_text(const saga_info *s, const schema *sc)
{
	char tb[64], tb2[64], db[32];
	int64_t now = ctl_now_us();

	printf("saga         %s\n", s->saga_id);
	printf("definition   %s@%" PRIu32 "\n", s->definition, s->version);
	char *state = ctl_state_cell(saga_state_name(s->state), NULL);
	printf("state        %s\n", state);
	free(state);
	if (*s->business_key)
		printf("business key %s\n", s->business_key);
	if (*s->idempotency_key)
		printf("idem. key    %s\n", s->idempotency_key);
	printf("created      %s\n", ctl_local_time(s->created_us, tb, sizeof(tb)));
	printf("updated      %s\n", ctl_local_time(s->updated_us, tb, sizeof(tb)));
	if (s->deadline_us)
		printf("deadline     %s\n", ctl_local_time(s->deadline_us, tb, sizeof(tb)));
	if (*s->traceparent)
		printf("trace        %s\n", s->traceparent);
	if (s->rerun_of != NULL && *s->rerun_of)
		printf("rerun of     %s\n", s->rerun_of);
	for (size_t i = 0; i < s->n_rerun_as; i++)
		printf("rerun as     %s\n", s->rerun_as[i]);
	if (sc != NULL && sc->d != NULL) {
		char why[600];
		char *j = ctl_payload_json(sc, sc->d->input_type, s->input, s->input_len, 0, s,
		    "input.", why, sizeof(why));
		if (j != NULL)
			printf("input        %s\n", j);
		else
			printf("input        %zu bytes (%s; --raw --json shows them)\n",
			    s->input_len, why);
		free(j);
	} else {
		printf("input        %zu bytes\n", s->input_len);
	}
	if (s->n_redacted > 0) {
		printf("redacted    ");
		for (size_t i = 0; i < s->n_redacted; i++) {
			char *r = ctl_cell(s->redacted[i], 300, NULL);
			printf(" %s%s", r, i + 1 < s->n_redacted ? "," : "");
			free(r);
		}
		printf("  (sensitive; get --reveal shows them)\n");
	}
	if (*s->error) {
		char *e = ctl_cell(s->error, 4096, NULL);
		printf("error        %s\n", e);
		free(e);
	}
	if (s->n_steps == 0)
		return;
	putchar('\n');

	table t = { .cols = 9 };
	char *head[] = { ctl_cellf("STEP"), ctl_cellf("PARTICIPANT"), ctl_cellf("STATE"),
		ctl_cellf("ATTEMPTS"), ctl_cellf("COMP"), ctl_cellf("STARTED"),
		ctl_cellf("DURATION"), ctl_cellf("RESULT"), ctl_cellf("LAST ERROR") };
	ctl_table_add(&t, head);
	int any_cut = 0;
	for (size_t i = 0; i < s->n_steps; i++) {
		const saga_step_info *st = &s->steps[i];
		const char *dur = "-";
		if (st->started_us > 0) {
			int64_t end = st->finished_us > 0 ? st->finished_us : now;
			duration(end - st->started_us, db, sizeof(db));
			if (st->finished_us <= 0)
				strcat(db, "+");
			dur = db;
		}
		int cut;
		char *row[] = {
			ctl_cell(st->name, 64, NULL),
			ctl_cell(st->participant, 40, NULL),
			ctl_state_cell(
			    saga_step_state_name(st->state), st->queued ? ", not sent yet" : NULL),
			ctl_cellf("%" PRIu32, st->attempts),
			ctl_cellf("%" PRIu32, st->comp_attempts),
			ctl_cellf("%s", ctl_local_time(st->started_us, tb2, sizeof(tb2))),
			ctl_cellf("%s", dur),
			st->result_len > 0 || st->state == SAGA_STEP_SUCCEEDED
			    ? ctl_cellf("%zu B", st->result_len)
			    : ctl_cellf("-"),
			ctl_cell(*st->last_error ? st->last_error : "-", ERROR_COL_MAX, &cut),
		};
		any_cut |= cut;
		ctl_table_add(&t, row);
	}
	ctl_table_print(&t);
	int any_result = 0, w = 0;
	for (size_t i = 0; i < s->n_steps; i++)
		if ((int)strlen(s->steps[i].name) > w)
			w = (int)strlen(s->steps[i].name);
	for (size_t i = 0; sc != NULL && sc->pb != NULL && i < s->n_steps; i++) {
		const saga_step_info *st = &s->steps[i];
		if (st->state != SAGA_STEP_SUCCEEDED && st->result_len == 0)
			continue;
		char why[600], prefix[300];
		snprintf(prefix, sizeof(prefix), "steps.%.256s.result.", st->name);
		char *j = ctl_payload_json(sc, ctl_step_output_type(sc, st->name), st->result,
		    st->result_len, 0, s, prefix, why, sizeof(why));
		if (!any_result++)
			printf("\nresults:\n");
		if (j != NULL)
			printf("  %-*s  %s\n", w, st->name, j);
		else
			printf("  %-*s  %zu bytes (%s)\n", w, st->name, st->result_len, why);
		free(j);
	}
	if (any_cut) {
		printf("\nlast errors in full:\n");
		for (size_t i = 0; i < s->n_steps; i++) {
			if (strlen(s->steps[i].last_error) <= ERROR_COL_MAX)
				continue;
			char *e = ctl_cell(s->steps[i].last_error, 16384, NULL);
			printf("  %s: %s\n", s->steps[i].name, e);
			free(e);
		}
	}
}

/* Prints a saga like `get` (JSON without a newline), its payloads
 * decoded with its definition's types unless --raw. */
void
ctl_show_info(saga_client *c, const saga_info *info, int json)
{
	schema buf, *sc = ctl_schema_for_info(c, info, &buf);
	if (json)
		json_info(info, sc);
	else
		print_info_text(info, sc);
	if (sc != NULL)
		ctl_schema_free(sc);
}
