/*
 * sagactl: the command-line tool for sagad. Built on libsaga's public API
 * (saga.h) and nothing else, so it doubles as an example of using it.
 *
 * Output is a readable table by default and one JSON document with --json.
 * The exit status is 0 on success, the saga_err of a failed call (so a
 * script can tell "not found" from "sagad is down"), and the values listed
 * in usage() otherwise.
 */
#include <saga.h>

#include "base64.h"
#include "jsonstr.h"
#include "pbjson.h"
#include "utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_COMPENSATED 16 /* wait: the saga was compensated */
#define EXIT_PARKED      17 /* wait: the saga failed and is parked */
#define EXIT_USAGE       64 /* as in sysexits.h */
#define EXIT_DATAERR     65 /* the input JSON does not fit the definition's input type */
#define EXIT_NOINPUT     66

#define DEFAULT_WAIT_MS 60000
#define MAX_INPUT_FILE  ((size_t)256 << 20)
#define ERROR_COL_MAX   60

/* Global options. */
static const char *opt_url;
static int opt_timeout_ms;
static int opt_json;
static int opt_raw; /* --raw: inputs and results as bytes, not decoded */

/* ---- usage ------------------------------------------------------------- */

static const char usage_text[] =
    "usage: sagactl [--url URL] [--timeout MS] [--json] [--raw] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  register FILE.binpb     register the saga definitions in a descriptor set\n"
    "  start DEFINITION        start a saga\n"
    "  get SAGA_ID             show a saga and its steps\n"
    "  wait SAGA_ID            wait until a saga is final, then show it\n"
    "  watch SAGA_ID           follow a saga's events live until it is final\n"
    "  history SAGA_ID         every event of a saga, with times and durations\n"
    "  list                    list sagas, newest first (filters, counts per state)\n"
    "  cancel SAGA_ID          cancel a running saga (it compensates)\n"
    "  retry SAGA_ID STEP      run a waiting or failed step (or compensation) now\n"
    "  skip SAGA_ID STEP       mark a waiting or failed step done by hand\n"
    "  describe [DEFINITION]   registered definitions; one's versions and steps as a graph\n"
    "  participants            connected participants, capacity, circuit breakers\n"
    "\n"
    "Options (before or after the command):\n"
    "  --url URL      sagad's address (default: $SAGA_URL, else " SAGA_DEFAULT_URL ")\n"
    "  --timeout MS   time limit of each call to sagad (default 10000)\n"
    "  --json         print one JSON document instead of text (watch: one per line)\n"
    "  --raw          show saga inputs and step results as bytes (base64 in JSON)\n"
    "                 instead of decoding them with the definition's types\n"
    "  --help         this text; `sagactl COMMAND --help` for a command's options\n"
    "  --version      print the version of sagactl/libsaga\n"
    "\n"
    "Exit status:\n"
    "  0      success; for wait and start --wait: the saga completed\n"
    "  1-15   the libsaga error of the call that failed (see saga.h), e.g.\n"
    "         3 not found, 5 timed out, 6 cannot reach sagad, 9 invalid definition\n"
    "  16     wait: the saga ended compensated\n"
    "  17     wait: the saga failed and is parked (needs an operator)\n"
    "  64     usage error\n"
    "  65     start: the input JSON does not fit the definition's input type\n"
    "  66     an input file cannot be read\n"
    "  74     the output cannot be written\n";

typedef struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} command;

static int cmd_register(int argc, char **argv);
static int cmd_start(int argc, char **argv);
static int cmd_get(int argc, char **argv);
static int cmd_wait(int argc, char **argv);
static int cmd_list(int argc, char **argv);
static int cmd_cancel(int argc, char **argv);
static int cmd_participants(int argc, char **argv);
static int cmd_history(int argc, char **argv);
static int cmd_retry(int argc, char **argv);
static int cmd_skip(int argc, char **argv);
static int cmd_watch(int argc, char **argv);
static int cmd_describe(int argc, char **argv);

static const command commands[] = {
	{ "register", cmd_register,
	    "usage: sagactl register FILE.binpb\n"
	    "\n"
	    "Registers every saga service in FILE.binpb, a descriptor set made with\n"
	    "  protoc --include_imports --descriptor_set_out=FILE.binpb x.proto\n"
	    "(FILE may be - for standard input). Prints each definition with the\n"
	    "version now current; \"(unchanged)\" when it was identical to the latest\n"
	    "version and no new version was made. An invalid definition exits 9 and\n"
	    "names the problem.\n" },
	{ "start", cmd_start,
	    "usage: sagactl start DEFINITION [options]\n"
	    "\n"
	    "Starts a saga and prints its id (\"(existing)\" when the idempotency key\n"
	    "matched an earlier start: no new saga was made).\n"
	    "\n"
	    "  --version N          definition version (default: the latest)\n"
	    "  --input JSON         the saga input as JSON, encoded with the input type of\n"
	    "                       the definition (proto3 JSON mapping; `sagactl describe`\n"
	    "                       shows the type), e.g. --input '{\"orderId\":\"A-1\"}'\n"
	    "  --input-file PATH    read the JSON input from PATH (- = standard input)\n"
	    "  --input-raw BYTES    the input bytes as given (already serialized)\n"
	    "  --input-raw-file P   the input bytes from file P (- = standard input)\n"
	    "  --key KEY            idempotency key: the same key always gives the same saga\n"
	    "  --business-key KEY   searchable label, e.g. an order id\n"
	    "  --deadline MS        compensate if not completed within MS of the start\n"
	    "                       (default: the definition's deadline_ms, if any)\n"
	    "  --traceparent TP     W3C trace context to join (00-TRACEID-PARENTID-FLAGS);\n"
	    "                       default: sagad starts a trace whose id is the saga id\n"
	    "  --wait               wait for a final state, then print it like `get`;\n"
	    "                       exit status as for `wait`\n"
	    "  --wait-timeout MS    how long --wait waits (default 60000; 0 = no limit)\n" },
	{ "get", cmd_get,
	    "usage: sagactl get SAGA_ID\n"
	    "\n"
	    "Shows a saga (definition, state, keys, times in local time, trace, error,\n"
	    "its input as JSON) and a table of its steps: state, attempts, compensation\n"
	    "attempts, start time, duration, last error and result size, then each\n"
	    "result as JSON. Inputs and results are decoded with the types the\n"
	    "definition was registered with (--raw: as bytes). Exits 3 if there is no\n"
	    "such saga.\n" },
	{ "wait", cmd_wait,
	    "usage: sagactl wait SAGA_ID [--wait-timeout MS]\n"
	    "\n"
	    "Waits until the saga is completed, compensated or failed, then shows it\n"
	    "like `get`. Exit status: 0 completed, 16 compensated, 17 failed (parked),\n"
	    "5 if it is still not final after --wait-timeout (default 60000 ms;\n"
	    "0 = no limit).\n" },
	{ "list", cmd_list,
	    "usage: sagactl list [options]\n"
	    "\n"
	    "Lists sagas, newest first: id, definition@version, state, steps\n"
	    "done/total, creation time, business key. When more remain, the token\n"
	    "of the next page is printed last.\n"
	    "\n"
	    "  --state S            only sagas in state S (running, compensating,\n"
	    "                       completed, compensated, failed); repeatable\n"
	    "  --definition D       only sagas of definition D\n"
	    "  --business-key K     only sagas with business key K\n"
	    "  --since TIME         created at or after TIME\n"
	    "  --until TIME         created before TIME\n"
	    "  --limit N            sagas per page (default 50, at most 1000)\n"
	    "  --page TOKEN         continue from a previous listing\n"
	    "  --all                follow the pages to the end\n"
	    "  --version N          with --definition: only version N\n"
	    "  --counts             first print how many matching sagas are in each state\n"
	    "                       (a scan of the matching rows: filter on a big table)\n"
	    "\n"
	    "TIME is RFC 3339 (2026-11-22T10:00:00Z, 2026-11-22T11:00:00+01:00,\n"
	    "2026-11-22) or unix seconds.\n" },
	{ "cancel", cmd_cancel,
	    "usage: sagactl cancel SAGA_ID [--reason TEXT]\n"
	    "\n"
	    "Cancels a running saga: it stops going forward and compensates the steps\n"
	    "it completed. Prints the state after the cancel. Exits 10 if the saga is\n"
	    "already final.\n" },
	{ "history", cmd_history,
	    "usage: sagactl history SAGA_ID\n"
	    "\n"
	    "Every event of a saga in order: started, each attempt and its outcome,\n"
	    "retries, compensation, operator actions, the end. With the time of each\n"
	    "and how long after the previous event and after the start it came.\n" },
	{ "retry", cmd_retry,
	    "usage: sagactl retry SAGA_ID STEP [--reason TEXT]\n"
	    "\n"
	    "Runs a step again now, its attempts counted from 1: a step waiting to\n"
	    "retry, or a compensation waiting to retry or failed (a parked saga goes\n"
	    "back to compensating). Recorded in the saga's history. Exits 10 if the\n"
	    "step is in no such state.\n" },
	{ "skip", cmd_skip,
	    "usage: sagactl skip SAGA_ID STEP --reason TEXT\n"
	    "\n"
	    "Marks a step done by hand instead of running it: a step waiting to retry\n"
	    "becomes succeeded, a compensation waiting to retry or failed becomes\n"
	    "compensated (say what you did in --reason: it goes into the history).\n"
	    "The saga then moves on. Exits 10 if the step is in no such state.\n" },
	{ "watch", cmd_watch,
	    "usage: sagactl watch SAGA_ID [--interval MS] [--wait-timeout MS]\n"
	    "\n"
	    "Follows a saga live: prints each event of its history as it happens\n"
	    "(like `history`), until the saga is completed, compensated or failed.\n"
	    "With --json, one JSON object per event and line, then the saga.\n"
	    "Exit status as for `wait`: 0 completed, 16 compensated, 17 failed,\n"
	    "5 if still running after --wait-timeout (default: no limit).\n"
	    "\n"
	    "  --interval MS   how often sagad is asked (default 500)\n" },
	{ "describe", cmd_describe,
	    "usage: sagactl describe [DEFINITION] [--version N]\n"
	    "\n"
	    "Without DEFINITION: every registered definition, its latest version and\n"
	    "its number of steps. With DEFINITION: its versions, input type, business\n"
	    "key field, deadline, a table of its steps (participant, compensation,\n"
	    "timeout, attempts, dependencies, result type) and its flow as a graph in\n"
	    "text, with the order compensations run in. Exits 3 for an unknown\n"
	    "definition or version.\n"
	    "\n"
	    "  --version N     describe version N (default: the latest)\n" },
	{ "participants", cmd_participants,
	    "usage: sagactl participants\n"
	    "\n"
	    "Lists the participants sagad knows: connections, capacity, steps in flight\n"
	    "and waiting, and the circuit breaker (closed, open until a time, or\n"
	    "half-open while one probe step runs) with its current window's counts.\n" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("sagactl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(see sagactl --help)\n", stderr);
	exit(EXIT_USAGE);
}

/* ---- argument parsing -------------------------------------------------- */

/*
 * Is argv[*i] the option `name`? Options with a value take it from the
 * next argument or after '=' (--url=tcp://...). On a match *val is set (for
 * options with a value) and *i advanced past what was consumed.
 */
static int
match_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, name, n) != 0)
		return 0;
	if (val == NULL) {
		if (a[n] != '\0')
			return 0;
		return 1;
	}
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		usage_error("%s needs a value", name);
	*val = argv[++*i];
	return 1;
}

/* Parses a non-negative integer no larger than max. */
static long long
parse_num(const char *what, const char *s, long long max)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max)
		usage_error("%s: '%s' is not a number from 0 to %lld", what, s, max);
	return v;
}

/* The global options are accepted anywhere on the line. */
static int
match_global(int argc, char **argv, int *i)
{
	const char *v;
	if (match_opt(argc, argv, i, "--url", &v)) {
		opt_url = v;
		return 1;
	}
	if (match_opt(argc, argv, i, "--timeout", &v)) {
		opt_timeout_ms = (int)parse_num("--timeout", v, INT_MAX);
		if (opt_timeout_ms == 0)
			usage_error("--timeout must be at least 1 ms");
		return 1;
	}
	if (match_opt(argc, argv, i, "--json", NULL)) {
		opt_json = 1;
		return 1;
	}
	if (match_opt(argc, argv, i, "--raw", NULL)) {
		opt_raw = 1;
		return 1;
	}
	return 0;
}

/* Prints a command's help and exits 0 if argv has --help/-h. */
static void
check_help(int argc, char **argv, const char *help)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(help, stdout);
			exit(0);
		}
	}
}

/* Rejects an unknown option or a surplus argument. */
static void
unknown_arg(const char *cmd, const char *a)
{
	if (a[0] == '-' && a[1] != '\0')
		usage_error("%s: unknown option %s", cmd, a);
	usage_error("%s: unexpected argument '%s'", cmd, a);
}

/* ---- errors and the client --------------------------------------------- */

static const char *
url(void)
{
	if (opt_url != NULL)
		return opt_url;
	const char *env = getenv("SAGA_URL");
	return env != NULL && *env != '\0' ? env : SAGA_DEFAULT_URL;
}

/* Reports a failed call on stderr with a hint where one is obvious; returns
 * the exit status (the saga_err). */
static int
fail(saga_client *c, int err, const char *what)
{
	const char *detail = c != NULL ? saga_client_errmsg(c) : "";
	if (*detail != '\0')
		fprintf(stderr, "sagactl: %s: %s: %s\n", what, saga_strerror(err), detail);
	else
		fprintf(stderr, "sagactl: %s: %s\n", what, saga_strerror(err));
	switch (err) {
	case SAGA_ECONN:
	case SAGA_ETIMEDOUT:
		if (strstr(detail, "sagad at") != NULL)
			fprintf(stderr, "sagactl: is sagad running at %s? set --url or SAGA_URL\n",
			    url());
		break;
	case SAGA_EBUSY:
		fprintf(stderr, "sagactl: sagad is overloaded; try again shortly\n");
		break;
	case SAGA_EDEFINITION:
		fprintf(stderr,
		    "sagactl: fix the saga's .proto, rebuild the descriptor set "
		    "and register it again\n");
		break;
	case SAGA_EUNSUPPORTED:
		fprintf(stderr, "sagactl: sagad at %s is older than this sagactl (%s)\n", url(),
		    saga_version());
		break;
	default:
		break;
	}
	return err;
}

static saga_client *
connect_client(void)
{
	saga_client *c = NULL;
	int rv = saga_client_new(url(), &c);
	if (rv != SAGA_OK) {
		if (rv == SAGA_EINVAL)
			usage_error("invalid sagad URL '%s' (e.g. tcp://127.0.0.1:7700 or "
				    "ipc:///run/sagad.sock)",
			    url());
		exit(fail(NULL, rv, "cannot create a client"));
	}
	if (opt_timeout_ms > 0)
		saga_client_set_timeout(c, opt_timeout_ms);
	return c;
}

/* Reads a whole file (- = stdin) into *buf; exits 66 if it cannot. */
static void
read_file(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 65536, n = 0;
	uint8_t *b;

	if (f == NULL) {
		fprintf(stderr, "sagactl: cannot open %s: %s\n", path, strerror(errno));
		exit(EXIT_NOINPUT);
	}
	if ((b = malloc(cap)) == NULL) {
		fprintf(stderr, "sagactl: out of memory\n");
		exit(SAGA_ENOMEM);
	}
	for (;;) {
		if (n == cap) {
			if (cap >= MAX_INPUT_FILE) {
				fprintf(stderr, "sagactl: %s is larger than %zu bytes\n", path,
				    MAX_INPUT_FILE);
				exit(EXIT_NOINPUT);
			}
			uint8_t *nb = realloc(b, cap * 2);
			if (nb == NULL) {
				fprintf(stderr, "sagactl: out of memory\n");
				exit(SAGA_ENOMEM);
			}
			b = nb;
			cap *= 2;
		}
		size_t got = fread(b + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "sagactl: cannot read %s: %s\n", path, strerror(errno));
		exit(EXIT_NOINPUT);
	}
	if (f != stdin)
		fclose(f);
	*buf = b;
	*len = n;
}

/* ---- time -------------------------------------------------------------- */

/* Local time as ISO 8601 with milliseconds and offset; "-" for 0. */
static const char *
local_time(int64_t us, char *buf, size_t n)
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
static const char *
utc_time(int64_t us, char *buf, size_t n)
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

static int64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 1;
}

/* Parses RFC 3339 (or a plain date, or unix seconds) into unix us. */
static int64_t
parse_time(const char *what, const char *s)
{
	size_t len = strlen(s);
	int all_digits = len > 0 && strspn(s, "0123456789") == len;
	if (all_digits)
		return parse_num(what, s, INT64_MAX / 1000000) * 1000000;

	struct tm tm;
	int y, mo, d, h = 0, mi = 0, sec = 0, frac_us = 0, off = 0;
	const char *p = s;
	memset(&tm, 0, sizeof(tm));
	if (len < 10 || !digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) || p[7] != '-' ||
	    !digits(p + 8, 2, &d))
		goto bad;
	p += 10;
	if (*p != '\0') {
		if ((*p != 'T' && *p != 't' && *p != ' ') || strlen(p) < 9 ||
		    !digits(p + 1, 2, &h) || p[3] != ':' || !digits(p + 4, 2, &mi) || p[6] != ':' ||
		    !digits(p + 7, 2, &sec))
			goto bad;
		p += 9;
		if (*p == '.') {
			int scale = 100000;
			p++;
			if (*p < '0' || *p > '9')
				goto bad;
			for (; *p >= '0' && *p <= '9'; p++) {
				frac_us += (*p - '0') * scale;
				scale /= 10;
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int oh, om;
			if (strlen(p) != 6 || !digits(p + 1, 2, &oh) || p[3] != ':' ||
			    !digits(p + 4, 2, &om))
				goto bad;
			off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
			p += 6;
		} else {
			goto bad;
		}
		if (*p != '\0')
			goto bad;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		goto bad;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	return ((int64_t)t - off) * 1000000 + frac_us;

bad:
	usage_error("%s: '%s' is not a time (use RFC 3339 like 2026-11-22T10:00:00Z, "
		    "or unix seconds)",
	    what, s);
}

/* ---- text output ------------------------------------------------------- */

/* Copies s for a table cell: control characters become spaces, and text
 * longer than max bytes is cut at a character boundary with "...". */
static char *
cell(const char *s, size_t max, int *cut)
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

static char *cellf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
cellf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return cell(buf, sizeof(buf), NULL);
}

/* A table of owned cells printed with aligned columns. */
typedef struct table {
	size_t cols, rows, cap;
	char **cells;
} table;

static void
table_add(table *t, char **row)
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

static void
table_print(table *t)
{
	size_t *w = calloc(t->cols, sizeof(size_t));
	if (w == NULL)
		exit(SAGA_ENOMEM);
	for (size_t r = 0; r < t->rows; r++)
		for (size_t c = 0; c < t->cols; c++) {
			size_t n = strlen(t->cells[r * t->cols + c]);
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
				printf("%-*s  ", (int)w[c], row[c]);
		}
	}
	for (size_t i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(w);
}

/* ---- payloads as JSON ------------------------------------------------------ */

/* The types of one definition version, from the descriptor set it was
 * registered with (sagad keeps it; `describe` sends it). */
typedef struct schema {
	saga_definition_list *l;
	const saga_definition *d; /* the version described */
	pbjson *pb;
	char why[512]; /* when pb is NULL: why there are no types */
} schema;

static void
schema_free(schema *sc)
{
	pbjson_free(sc->pb);
	saga_definition_list_free(sc->l);
	memset(sc, 0, sizeof(*sc));
}

/* Loads the types of def@version (0 = latest). Returns 0 or the error of
 * the describe call; a descriptor set that pbjson cannot read leaves pb
 * NULL with the reason in why (payloads are then shown as bytes). */
static int
schema_load(saga_client *c, const char *def, uint32_t version, schema *sc)
{
	memset(sc, 0, sizeof(*sc));
	int rv = saga_client_describe(c, def, version, &sc->l);
	if (rv != SAGA_OK) {
		snprintf(
		    sc->why, sizeof(sc->why), "cannot describe %s: %s", def, saga_client_errmsg(c));
		return rv;
	}
	for (size_t i = 0; i < sc->l->count; i++)
		if (sc->d == NULL || sc->l->definitions[i].version == version)
			sc->d = &sc->l->definitions[i];
	if (sc->l->descriptor_set == NULL) {
		snprintf(sc->why, sizeof(sc->why), "sagad sent no descriptor set for %s", def);
		return 0;
	}
	char err[400];
	if (pbjson_new(
		sc->l->descriptor_set, sc->l->descriptor_set_len, &sc->pb, err, sizeof(err)) != 0)
		snprintf(sc->why, sizeof(sc->why), "its descriptor set cannot be read: %s", err);
	return 0;
}

/* bytes of message `type` as JSON (malloc'd; one line if indent is 0), or
 * NULL with the reason in why. */
static char *
payload_json(const schema *sc, const char *type, const uint8_t *b, size_t n, int indent, char *why,
    size_t whylen)
{
	char *out = NULL, err[400];
	if (sc == NULL || sc->pb == NULL) {
		snprintf(why, whylen, "%s", sc != NULL ? sc->why : "no types");
		return NULL;
	}
	if (pbjson_to_json(sc->pb, type, b, n, indent, &out, err, sizeof(err)) != 0) {
		snprintf(why, whylen, "not a valid %s: %s", type, err);
		return NULL;
	}
	return out;
}

static const char *
step_output_type(const schema *sc, const char *step)
{
	if (sc == NULL || sc->d == NULL)
		return "";
	for (size_t i = 0; i < sc->d->n_steps; i++)
		if (strcmp(sc->d->steps[i].name, step) == 0)
			return sc->d->steps[i].output_type;
	return "";
}

/* The schema for a saga's definition version, unless --raw. NULL if it
 * cannot be had (the payloads are then shown as bytes, with why). */
static schema *
schema_for_info(saga_client *c, const saga_info *s, schema *buf)
{
	if (opt_raw)
		return NULL;
	if (schema_load(c, s->definition, s->version, buf) != SAGA_OK) {
		fprintf(stderr, "sagactl: %s; showing payloads as bytes\n", buf->why);
		schema_free(buf);
		return NULL;
	}
	return buf;
}

static void
print_info_text(const saga_info *s, const schema *sc)
{
	char tb[64], tb2[64], db[32];
	int64_t now = now_us();

	printf("saga         %s\n", s->saga_id);
	printf("definition   %s@%" PRIu32 "\n", s->definition, s->version);
	printf("state        %s\n", saga_state_name(s->state));
	if (*s->business_key)
		printf("business key %s\n", s->business_key);
	if (*s->idempotency_key)
		printf("idem. key    %s\n", s->idempotency_key);
	printf("created      %s\n", local_time(s->created_us, tb, sizeof(tb)));
	printf("updated      %s\n", local_time(s->updated_us, tb, sizeof(tb)));
	if (s->deadline_us)
		printf("deadline     %s\n", local_time(s->deadline_us, tb, sizeof(tb)));
	if (*s->traceparent)
		printf("trace        %s\n", s->traceparent);
	if (sc != NULL && sc->d != NULL) {
		char why[600];
		char *j = payload_json(
		    sc, sc->d->input_type, s->input, s->input_len, 0, why, sizeof(why));
		if (j != NULL)
			printf("input        %s\n", j);
		else
			printf("input        %zu bytes (%s; --raw --json shows them)\n",
			    s->input_len, why);
		free(j);
	} else {
		printf("input        %zu bytes\n", s->input_len);
	}
	if (*s->error) {
		char *e = cell(s->error, 4096, NULL);
		printf("error        %s\n", e);
		free(e);
	}
	if (s->n_steps == 0)
		return;
	putchar('\n');

	table t = { .cols = 9 };
	char *head[] = { cellf("STEP"), cellf("PARTICIPANT"), cellf("STATE"), cellf("ATTEMPTS"),
		cellf("COMP"), cellf("STARTED"), cellf("DURATION"), cellf("RESULT"),
		cellf("LAST ERROR") };
	table_add(&t, head);
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
			cell(st->name, 64, NULL),
			cell(st->participant, 40, NULL),
			cellf("%s", saga_step_state_name(st->state)),
			cellf("%" PRIu32, st->attempts),
			cellf("%" PRIu32, st->comp_attempts),
			cellf("%s", local_time(st->started_us, tb2, sizeof(tb2))),
			cellf("%s", dur),
			st->result_len > 0 || st->state == SAGA_STEP_SUCCEEDED
			    ? cellf("%zu B", st->result_len)
			    : cellf("-"),
			cell(*st->last_error ? st->last_error : "-", ERROR_COL_MAX, &cut),
		};
		any_cut |= cut;
		table_add(&t, row);
	}
	table_print(&t);
	int any_result = 0, w = 0;
	for (size_t i = 0; i < s->n_steps; i++)
		if ((int)strlen(s->steps[i].name) > w)
			w = (int)strlen(s->steps[i].name);
	for (size_t i = 0; sc != NULL && sc->pb != NULL && i < s->n_steps; i++) {
		const saga_step_info *st = &s->steps[i];
		if (st->state != SAGA_STEP_SUCCEEDED && st->result_len == 0)
			continue;
		char why[600];
		char *j = payload_json(sc, step_output_type(sc, st->name), st->result,
		    st->result_len, 0, why, sizeof(why));
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
			char *e = cell(s->steps[i].last_error, 16384, NULL);
			printf("  %s: %s\n", s->steps[i].name, e);
			free(e);
		}
	}
}

/* ---- JSON output ------------------------------------------------------- */

static void
json_str(const char *s)
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
static void
json_key(int *first, const char *k)
{
	if (!*first)
		putchar(',');
	*first = 0;
	json_str(k);
	putchar(':');
}

static void
json_kv_str(int *first, const char *k, const char *v)
{
	json_key(first, k);
	json_str(v);
}

static void
json_kv_int(int *first, const char *k, int64_t v)
{
	json_key(first, k);
	printf("%" PRId64, v);
}

static void json_event(const saga_event *e);

/* "key": the payload as a JSON value; if it cannot be decoded (or --raw),
 * "key": null, "key_base64": the bytes and "key_error": why. */
static void
json_payload(
    int *f, const char *key, const schema *sc, const char *type, const uint8_t *b, size_t n)
{
	char why[600] = "--raw", k[64];
	char *j = sc != NULL ? payload_json(sc, type, b, n, 0, why, sizeof(why)) : NULL;
	json_key(f, key);
	if (j != NULL) {
		fputs(j, stdout);
		free(j);
		return;
	}
	fputs("null", stdout);
	snprintf(k, sizeof(k), "%s_base64", key);
	json_key(f, k);
	json_base64(b, n);
	if (!opt_raw) {
		snprintf(k, sizeof(k), "%s_error", key);
		json_kv_str(f, k, why);
	}
}

static void
json_info(const saga_info *s, const schema *sc)
{
	char tb[64];
	int f = 1;
	putchar('{');
	json_kv_str(&f, "saga_id", s->saga_id);
	json_kv_str(&f, "definition", s->definition);
	json_kv_int(&f, "version", s->version);
	json_kv_str(&f, "state", saga_state_name(s->state));
	json_kv_str(&f, "idempotency_key", s->idempotency_key);
	json_kv_str(&f, "business_key", s->business_key);
	json_kv_int(&f, "created_us", s->created_us);
	json_kv_str(&f, "created", utc_time(s->created_us, tb, sizeof(tb)));
	json_kv_int(&f, "updated_us", s->updated_us);
	json_kv_str(&f, "updated", utc_time(s->updated_us, tb, sizeof(tb)));
	json_kv_int(&f, "deadline_us", s->deadline_us);
	json_kv_str(&f, "traceparent", s->traceparent);
	json_kv_str(&f, "error", s->error);
	json_payload(&f, "input", sc, sc != NULL && sc->d != NULL ? sc->d->input_type : "",
	    s->input, s->input_len);
	json_key(&f, "steps");
	putchar('[');
	for (size_t i = 0; i < s->n_steps; i++) {
		const saga_step_info *st = &s->steps[i];
		int g = 1;
		if (i > 0)
			putchar(',');
		putchar('{');
		json_kv_str(&g, "name", st->name);
		json_kv_str(&g, "participant", st->participant);
		json_kv_str(&g, "compensation", st->compensation);
		json_key(&g, "depends_on");
		putchar('[');
		for (size_t k = 0; k < st->n_depends_on; k++) {
			if (k > 0)
				putchar(',');
			json_str(st->depends_on[k]);
		}
		putchar(']');
		json_kv_str(&g, "state", saga_step_state_name(st->state));
		json_kv_int(&g, "attempts", st->attempts);
		json_kv_int(&g, "comp_attempts", st->comp_attempts);
		json_kv_int(&g, "started_us", st->started_us);
		json_kv_int(&g, "finished_us", st->finished_us);
		json_kv_int(&g, "comp_started_us", st->comp_started_us);
		json_kv_int(&g, "comp_finished_us", st->comp_finished_us);
		json_kv_int(&g, "next_attempt_us", st->next_attempt_us);
		json_kv_int(&g, "completion_seq", st->completion_seq);
		json_kv_str(&g, "last_error", st->last_error);
		if (st->result_len > 0 || st->state == SAGA_STEP_SUCCEEDED)
			json_payload(&g, "result", sc, step_output_type(sc, st->name), st->result,
			    st->result_len);
		putchar('}');
	}
	printf("]");
	json_key(&f, "events");
	putchar('[');
	for (size_t i = 0; i < s->n_events; i++) {
		if (i > 0)
			putchar(',');
		json_event(&s->events[i]);
	}
	printf("]}");
}

static void
json_summary(const saga_summary *s)
{
	char tb[64];
	int f = 1;
	putchar('{');
	json_kv_str(&f, "saga_id", s->saga_id);
	json_kv_str(&f, "definition", s->definition);
	json_kv_int(&f, "version", s->version);
	json_kv_str(&f, "state", saga_state_name(s->state));
	json_kv_str(&f, "business_key", s->business_key);
	json_kv_int(&f, "created_us", s->created_us);
	json_kv_str(&f, "created", utc_time(s->created_us, tb, sizeof(tb)));
	json_kv_int(&f, "updated_us", s->updated_us);
	json_kv_str(&f, "error", s->error);
	json_kv_int(&f, "steps_total", s->steps_total);
	json_kv_int(&f, "steps_done", s->steps_done);
	putchar('}');
}

/* ---- commands ---------------------------------------------------------- */

/* Prints a saga like `get` (JSON without a newline), its payloads
 * decoded with its definition's types unless --raw. */
static void
show_info(saga_client *c, const saga_info *info, int json)
{
	schema buf, *sc = schema_for_info(c, info, &buf);
	if (json)
		json_info(info, sc);
	else
		print_info_text(info, sc);
	if (sc != NULL)
		schema_free(sc);
}

/* Exit status of a waited-for saga (see usage). */
static int
final_status(const saga_info *s)
{
	switch (s->state) {
	case SAGA_STATE_COMPLETED:
		return 0;
	case SAGA_STATE_COMPENSATED:
		return EXIT_COMPENSATED;
	case SAGA_STATE_FAILED:
		return EXIT_PARKED;
	default:
		return SAGA_ETIMEDOUT;
	}
}

static int
cmd_register(int argc, char **argv)
{
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (file == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0))
			file = argv[i];
		else
			unknown_arg("register", argv[i]);
	}
	if (file == NULL)
		usage_error("register: which descriptor set? (sagactl register FILE.binpb)");

	uint8_t *buf;
	size_t len;
	read_file(file, &buf, &len);
	saga_client *c = connect_client();
	saga_register_result *r = NULL;
	int rv = saga_client_register(c, buf, len, &r);
	free(buf);
	if (rv != SAGA_OK) {
		char what[512];
		snprintf(what, sizeof(what), "cannot register %s", file);
		rv = fail(c, rv, what);
		saga_client_free(c);
		return rv;
	}
	if (opt_json) {
		printf("{\"definitions\":[");
		for (size_t i = 0; i < r->count; i++) {
			int f = 1;
			printf(i ? ",{" : "{");
			json_kv_str(&f, "name", r->defs[i].name);
			json_kv_int(&f, "version", r->defs[i].version);
			json_kv_int(&f, "steps", r->defs[i].steps);
			json_key(&f, "unchanged");
			printf(r->defs[i].unchanged ? "true}" : "false}");
		}
		printf("]}\n");
	} else if (r->count == 0) {
		printf("no saga services in %s\n", file);
	} else {
		table t = { .cols = 4 };
		for (size_t i = 0; i < r->count; i++) {
			char *row[] = { cell(r->defs[i].name, 200, NULL),
				cellf("version %" PRIu32, r->defs[i].version),
				cellf("%" PRIu32 " steps", r->defs[i].steps),
				cellf("%s", r->defs[i].unchanged ? "(unchanged)" : "") };
			table_add(&t, row);
		}
		table_print(&t);
	}
	saga_register_result_free(r);
	saga_client_free(c);
	return 0;
}

/* How `start --wait` prefixes the JSON of the saga it waited for. */
typedef struct started {
	const char *id;
	int existing;
} started;

/* Waits for a saga and prints it like `get`; returns the exit status (see
 * usage). st is set when called by start --wait. */
static int
wait_and_print(saga_client *c, const char *id, long long wait_ms, const started *st)
{
	saga_info *info = NULL;
	int rv = saga_client_wait(c, id, wait_ms == 0 ? -1 : (int)wait_ms, &info);
	if (rv != SAGA_OK && rv != SAGA_ETIMEDOUT) {
		char what[256];
		snprintf(what, sizeof(what), "cannot wait for saga %s", id);
		return fail(c, rv, what);
	}
	if (info != NULL) {
		if (opt_json) {
			if (st != NULL) {
				int f = 1;
				putchar('{');
				json_kv_str(&f, "saga_id", st->id);
				json_key(&f, "existing");
				printf("%s", st->existing ? "true" : "false");
				json_key(&f, "saga");
			}
			show_info(c, info, 1);
			printf(st != NULL ? "}\n" : "\n");
		} else {
			show_info(c, info, 0);
		}
	}
	if (rv == SAGA_ETIMEDOUT) {
		char what[256];
		snprintf(what, sizeof(what), "saga %s is not final", id);
		fail(c, rv, what);
		saga_info_free(info);
		return SAGA_ETIMEDOUT;
	}
	rv = final_status(info);
	saga_info_free(info);
	return rv;
}

/* The JSON text of a start's input, encoded with the input type of the
 * definition version being started. Exits EXIT_DATAERR (with the path of
 * the offending value) if it does not fit. */
static void
encode_input(saga_client *c, const char *def, uint32_t version, const char *json, size_t len,
    uint8_t **out, size_t *outlen)
{
	schema sc;
	char err[600];
	int rv = schema_load(c, def, version, &sc);
	if (rv != SAGA_OK) {
		char what[600];
		snprintf(what, sizeof(what), "cannot start %s", def);
		rv = fail(c, rv, what);
		if (rv == SAGA_ENOTFOUND)
			fprintf(stderr, "sagactl: is %s registered? see `sagactl describe`\n", def);
		exit(rv);
	}
	if (sc.pb == NULL || sc.d == NULL) {
		fprintf(stderr,
		    "sagactl: cannot encode the input of %s: %s\n"
		    "sagactl: give the serialized bytes with --input-raw or --input-raw-file\n",
		    def, sc.why);
		exit(EXIT_DATAERR);
	}
	if (pbjson_from_json(sc.pb, sc.d->input_type, json, len, out, outlen, err, sizeof(err)) !=
	    0) {
		fprintf(stderr,
		    "sagactl: the input is not a valid %s: %s\n"
		    "sagactl: `sagactl describe %s` shows the input type; the JSON uses the\n"
		    "sagactl: fields' lowerCamelCase (or proto) names, 64-bit integers as "
		    "strings\n",
		    sc.d->input_type, err, def);
		exit(EXIT_DATAERR);
	}
	schema_free(&sc);
}

static int
cmd_start(int argc, char **argv)
{
	const char *def = NULL, *input = NULL, *input_file = NULL, *raw = NULL, *raw_file = NULL,
		   *v;
	saga_start_opts o = { 0 };
	int wait = 0;
	long long wait_ms = DEFAULT_WAIT_MS;

	for (int i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (match_opt(argc, argv, &i, "--version", &v))
			o.version = (uint32_t)parse_num("--version", v, UINT32_MAX);
		else if (match_opt(argc, argv, &i, "--input", &v))
			input = v;
		else if (match_opt(argc, argv, &i, "--input-file", &v))
			input_file = v;
		else if (match_opt(argc, argv, &i, "--input-raw", &v))
			raw = v;
		else if (match_opt(argc, argv, &i, "--input-raw-file", &v))
			raw_file = v;
		else if (match_opt(argc, argv, &i, "--key", &v))
			o.idempotency_key = v;
		else if (match_opt(argc, argv, &i, "--business-key", &v))
			o.business_key = v;
		else if (match_opt(argc, argv, &i, "--deadline", &v))
			o.deadline_ms = (uint32_t)parse_num("--deadline", v, UINT32_MAX);
		else if (match_opt(argc, argv, &i, "--traceparent", &v))
			o.traceparent = v;
		else if (match_opt(argc, argv, &i, "--wait", NULL))
			wait = 1;
		else if (match_opt(argc, argv, &i, "--wait-timeout", &v))
			wait_ms = parse_num("--wait-timeout", v, INT_MAX);
		else if (def == NULL && argv[i][0] != '-')
			def = argv[i];
		else
			unknown_arg("start", argv[i]);
	}
	if (def == NULL)
		usage_error("start: which definition? (sagactl start DEFINITION)");
	if ((input != NULL) + (input_file != NULL) + (raw != NULL) + (raw_file != NULL) > 1)
		usage_error(
		    "start: give one of --input, --input-file, --input-raw, --input-raw-file");

	uint8_t *buf = NULL, *enc = NULL;
	size_t len = 0;
	const void *payload = NULL;
	saga_client *c = connect_client();
	if (input_file != NULL || raw_file != NULL)
		read_file(input_file != NULL ? input_file : raw_file, &buf, &len);
	if (input != NULL || input_file != NULL) {
		const char *text = input != NULL ? input : (const char *)buf;
		encode_input(
		    c, def, o.version, text, input != NULL ? strlen(input) : len, &enc, &len);
		payload = enc;
	} else if (raw != NULL) {
		payload = raw;
		len = strlen(raw);
	} else {
		payload = buf;
	}
	char *id = NULL;
	int existing = 0;
	int rv = saga_client_start(c, def, payload, len, &o, &id, &existing);
	free(buf);
	free(enc);
	if (rv != SAGA_OK) {
		char what[512];
		snprintf(what, sizeof(what), "cannot start %s", def);
		rv = fail(c, rv, what);
		if (rv == SAGA_ENOTFOUND)
			fprintf(stderr, "sagactl: is %s registered? see `sagactl describe`\n", def);
		saga_client_free(c);
		return rv;
	}
	if (!wait) {
		if (opt_json) {
			int f = 1;
			putchar('{');
			json_kv_str(&f, "saga_id", id);
			json_key(&f, "existing");
			printf("%s}\n", existing ? "true" : "false");
		} else {
			printf("%s%s\n", id, existing ? " (existing)" : "");
		}
	} else {
		started st = { id, existing };
		if (!opt_json) {
			printf("%s%s\n\n", id, existing ? " (existing)" : "");
			fflush(stdout);
		}
		rv = wait_and_print(c, id, wait_ms, &st);
	}
	saga_string_free(id);
	saga_client_free(c);
	return rv;
}

/* Parses the one SAGA_ID argument of get/wait/cancel and their options. */
static const char *
one_id(const char *cmd, int argc, char **argv, long long *wait_ms, const char **reason)
{
	const char *id = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (wait_ms != NULL && match_opt(argc, argv, &i, "--wait-timeout", &v))
			*wait_ms = parse_num("--wait-timeout", v, INT_MAX);
		else if (reason != NULL && match_opt(argc, argv, &i, "--reason", &v))
			*reason = v;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			unknown_arg(cmd, argv[i]);
	}
	if (id == NULL)
		usage_error("%s: which saga? (sagactl %s SAGA_ID)", cmd, cmd);
	return id;
}

static int
not_found_hint(int rv)
{
	if (rv == SAGA_ENOTFOUND)
		fprintf(stderr, "sagactl: check the id with `sagactl list`\n");
	return rv;
}

/* `sagactl CMD SAGA_ID`: connects and reads the saga. On error, reports it
 * and returns the exit status; otherwise *c and *info are the caller's. */
static int
get_info(const char *cmd, int argc, char **argv, saga_client **c, saga_info **info)
{
	const char *id = one_id(cmd, argc, argv, NULL, NULL);
	*c = connect_client();
	int rv = saga_client_get(*c, id, info);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot get saga %s", id);
		rv = not_found_hint(fail(*c, rv, what));
		saga_client_free(*c);
		*c = NULL;
	}
	return rv;
}

static int
cmd_get(int argc, char **argv)
{
	saga_client *c = NULL;
	saga_info *info = NULL;
	int rv = get_info("get", argc, argv, &c, &info);
	if (rv != SAGA_OK)
		return rv;
	show_info(c, info, opt_json);
	if (opt_json)
		putchar('\n');
	saga_info_free(info);
	saga_client_free(c);
	return 0;
}

static int
cmd_wait(int argc, char **argv)
{
	long long wait_ms = DEFAULT_WAIT_MS;
	const char *id = one_id("wait", argc, argv, &wait_ms, NULL);
	saga_client *c = connect_client();
	int rv = not_found_hint(wait_and_print(c, id, wait_ms, NULL));
	saga_client_free(c);
	return rv;
}

static int
cmd_cancel(int argc, char **argv)
{
	const char *reason = NULL;
	const char *id = one_id("cancel", argc, argv, NULL, &reason);
	saga_client *c = connect_client();
	saga_state after = SAGA_STATE_UNKNOWN;
	int rv = saga_client_cancel(c, id, reason, &after);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot cancel saga %s", id);
		rv = not_found_hint(fail(c, rv, what));
		saga_client_free(c);
		return rv;
	}
	if (opt_json) {
		int f = 1;
		putchar('{');
		json_kv_str(&f, "saga_id", id);
		json_kv_str(&f, "state", saga_state_name(after));
		printf("}\n");
	} else {
		printf("saga %s is now %s\n", id, saga_state_name(after));
	}
	saga_client_free(c);
	return 0;
}

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

static void
print_event_head(void)
{
	printf("%-29s %10s %10s  %-27s %-16s %3s  %s\n", "TIME", "+PREV", "+START", "EVENT", "STEP",
	    "ATT", "DETAIL");
}

static void
print_event_row(const saga_event *e, int64_t start, int64_t prev)
{
	char tb[64], d1[32], d2[32], att[16] = "-";
	if (e->attempt)
		snprintf(att, sizeof(att), "%u", e->attempt);
	char *detail = cell(e->detail, 4096, NULL);
	printf("%-29s %10s %10s  %-27s %-16s %3s  %s\n", local_time(e->at_us, tb, sizeof(tb)),
	    span(e->at_us - prev, d1, sizeof(d1)), span(e->at_us - start, d2, sizeof(d2)), e->type,
	    *e->step ? e->step : "-", att, *detail ? detail : "-");
	free(detail);
}

static void
json_event(const saga_event *e)
{
	char tb[64];
	int g = 1;
	putchar('{');
	json_kv_int(&g, "at_us", e->at_us);
	json_kv_str(&g, "at", utc_time(e->at_us, tb, sizeof(tb)));
	json_kv_str(&g, "type", e->type);
	json_kv_str(&g, "step", e->step);
	json_kv_int(&g, "attempt", e->attempt);
	json_kv_str(&g, "detail", e->detail);
	putchar('}');
}

/*
 * watch: follows a saga until it is final, printing each event of its
 * history as it happens (NDJSON with --json: one event object a line, then
 * the saga). Polls: sagad keeps the first 20 and last 180 events, and
 * events are matched by time and type, so a saga that logs more than 180
 * between two polls loses lines here, not in sagad.
 */
static int
cmd_watch(int argc, char **argv)
{
	const char *id = NULL, *v;
	long long interval = 500, wait_ms = 0;
	for (int i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (match_opt(argc, argv, &i, "--interval", &v))
			interval = parse_num("--interval", v, 60000);
		else if (match_opt(argc, argv, &i, "--wait-timeout", &v))
			wait_ms = parse_num("--wait-timeout", v, INT_MAX);
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			unknown_arg("watch", argv[i]);
	}
	if (id == NULL)
		usage_error("watch: which saga? (sagactl watch SAGA_ID)");
	if (interval < 50)
		interval = 50;
	saga_client *c = connect_client();
	int64_t last_at = -1, start = 0, prev = 0,
		deadline = wait_ms ? now_us() + wait_ms * 1000 : 0;
	size_t printed_at_last = 0; /* events printed with at_us == last_at */
	int first = 1, rv;
	for (;;) {
		saga_info *info = NULL;
		if ((rv = saga_client_get(c, id, &info)) != SAGA_OK) {
			char what[256];
			snprintf(what, sizeof(what), "cannot get saga %s", id);
			rv = not_found_hint(fail(c, rv, what));
			break;
		}
		if (first && !opt_json) {
			printf("saga %s (%s@%u)\n", info->saga_id, info->definition, info->version);
			print_event_head();
		}
		if (first && info->n_events)
			start = prev = info->events[0].at_us;
		first = 0;
		size_t same = 0;
		for (size_t i = 0; i < info->n_events; i++) {
			const saga_event *e = &info->events[i];
			if (e->at_us < last_at)
				continue;
			if (e->at_us == last_at && ++same <= printed_at_last)
				continue;
			if (e->at_us > last_at) {
				last_at = e->at_us;
				same = 1;
				printed_at_last = 0;
			}
			printed_at_last++;
			if (opt_json) {
				json_event(e);
				putchar('\n');
			} else {
				print_event_row(e, start, prev);
			}
			prev = e->at_us;
		}
		fflush(stdout);
		if (saga_state_is_final(info->state)) {
			if (opt_json) {
				show_info(c, info, 1);
				putchar('\n');
			} else {
				printf("\nsaga %s is %s%s%s\n", info->saga_id,
				    saga_state_name(info->state), *info->error ? ": " : "",
				    info->error);
			}
			rv = final_status(info);
			saga_info_free(info);
			break;
		}
		saga_info_free(info);
		if (deadline && now_us() >= deadline) {
			fprintf(stderr, "sagactl: saga %s is not final after --wait-timeout\n", id);
			rv = SAGA_ETIMEDOUT;
			break;
		}
		struct timespec ts = { interval / 1000, (interval % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	saga_client_free(c);
	return rv;
}

/* ---- describe ---------------------------------------------------------------- */

/* Depth of each step: 0 without dependencies, else 1 + the deepest one. */
static void
step_levels(const saga_definition *d, int *level)
{
	for (size_t i = 0; i < d->n_steps; i++)
		level[i] = -1;
	for (size_t done = 0, pass = 0; done < d->n_steps && pass <= d->n_steps; pass++) {
		for (size_t i = 0; i < d->n_steps; i++) {
			if (level[i] >= 0)
				continue;
			int lv = 0, ready = 1;
			for (size_t k = 0; k < d->steps[i].n_depends_on && ready; k++) {
				for (size_t j = 0; j < d->n_steps; j++) {
					if (strcmp(d->steps[j].name, d->steps[i].depends_on[k]) !=
					    0)
						continue;
					if (level[j] < 0)
						ready = 0;
					else if (level[j] + 1 > lv)
						lv = level[j] + 1;
				}
			}
			if (ready) {
				level[i] = lv;
				done++;
			}
		}
	}
}

/* The steps as a graph in text: a chain on one line, otherwise one line
 * per level with what each step waits for. */
static void
print_graph(const saga_definition *d)
{
	int level[256], maxlv = 0, chain = 1;
	if (d->n_steps > 256)
		return;
	step_levels(d, level);
	for (size_t i = 0; i < d->n_steps; i++) {
		if (level[i] > maxlv)
			maxlv = level[i];
		if (d->steps[i].n_depends_on > 1)
			chain = 0;
	}
	for (int lv = 0; lv <= maxlv; lv++) {
		int n = 0;
		for (size_t i = 0; i < d->n_steps; i++)
			n += level[i] == lv;
		if (n != 1)
			chain = 0;
	}
	printf("\nflow:\n");
	if (chain) {
		printf("  ");
		for (int lv = 0; lv <= maxlv; lv++)
			for (size_t i = 0; i < d->n_steps; i++)
				if (level[i] == lv)
					printf("%s%s", lv ? " --> " : "", d->steps[i].name);
		printf("\n");
	} else {
		for (int lv = 0; lv <= maxlv; lv++) {
			printf("  %d:", lv + 1);
			for (size_t i = 0; i < d->n_steps; i++) {
				if (level[i] != lv)
					continue;
				printf("  %s", d->steps[i].name);
				if (d->steps[i].n_depends_on > 0) {
					printf(" <- ");
					for (size_t k = 0; k < d->steps[i].n_depends_on; k++)
						printf("%s%s", k ? "+" : "",
						    d->steps[i].depends_on[k]);
				}
			}
			printf("\n");
		}
	}
	printf("on failure, compensations run newest first:");
	int any = 0;
	for (int lv = maxlv; lv >= 0; lv--)
		for (size_t i = d->n_steps; i-- > 0;)
			if (level[i] == lv && *d->steps[i].compensation) {
				printf("%s %s", any ? "," : "", d->steps[i].compensation);
				any = 1;
			}
	printf("%s\n", any ? "" : " (none)");
}

static void
json_definition(const saga_definition *d)
{
	char tb[64];
	int f = 1;
	putchar('{');
	json_kv_str(&f, "name", d->name);
	json_kv_int(&f, "version", d->version);
	json_kv_int(&f, "registered_us", d->registered_us);
	json_kv_str(&f, "registered", utc_time(d->registered_us, tb, sizeof(tb)));
	json_kv_str(&f, "input_type", d->input_type);
	json_kv_str(&f, "description", d->description);
	json_kv_int(&f, "deadline_ms", d->deadline_ms);
	json_kv_str(&f, "business_key", d->business_key);
	json_key(&f, "steps");
	putchar('[');
	for (size_t i = 0; i < d->n_steps; i++) {
		const saga_definition_step *st = &d->steps[i];
		int g = 1;
		printf("%s{", i ? "," : "");
		json_kv_str(&g, "name", st->name);
		json_kv_str(&g, "participant", st->participant);
		json_kv_str(&g, "compensation", st->compensation);
		json_key(&g, "depends_on");
		putchar('[');
		for (size_t k = 0; k < st->n_depends_on; k++) {
			if (k > 0)
				putchar(',');
			json_str(st->depends_on[k]);
		}
		putchar(']');
		json_kv_int(&g, "timeout_ms", st->timeout_ms);
		json_kv_int(&g, "max_attempts", st->max_attempts);
		json_kv_int(&g, "compensation_timeout_ms", st->compensation_timeout_ms);
		json_kv_int(&g, "compensation_max_attempts", st->compensation_max_attempts);
		json_kv_int(&g, "heartbeat_timeout_ms", st->heartbeat_timeout_ms);
		json_kv_str(&g, "input_type", st->input_type);
		json_kv_str(&g, "output_type", st->output_type);
		putchar('}');
	}
	printf("]}");
}

static int
cmd_describe(int argc, char **argv)
{
	const char *def = NULL, *v;
	uint32_t version = 0;
	for (int i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (match_opt(argc, argv, &i, "--version", &v))
			version = (uint32_t)parse_num("--version", v, UINT32_MAX);
		else if (def == NULL && argv[i][0] != '-')
			def = argv[i];
		else
			unknown_arg("describe", argv[i]);
	}
	if (version != 0 && def == NULL)
		usage_error("describe: --version needs a DEFINITION");
	saga_client *c = connect_client();
	saga_definition_list *l = NULL;
	int rv = saga_client_describe(c, def, version, &l);
	if (rv != SAGA_OK) {
		char what[512];
		snprintf(what, sizeof(what), "cannot describe %s", def ? def : "the definitions");
		rv = fail(c, rv, what);
		saga_client_free(c);
		return rv;
	}
	char tb[64];
	if (opt_json) {
		printf("{\"definitions\":[");
		for (size_t i = 0; i < l->count; i++) {
			if (i > 0)
				putchar(',');
			json_definition(&l->definitions[i]);
		}
		printf("]}\n");
	} else if (def == NULL) {
		table t = { .cols = 5 };
		char *head[] = { cellf("DEFINITION"), cellf("LATEST"), cellf("STEPS"),
			cellf("REGISTERED"), cellf("DESCRIPTION") };
		table_add(&t, head);
		for (size_t i = 0; i < l->count; i++) {
			const saga_definition *d = &l->definitions[i];
			char *row[] = { cell(d->name, 80, NULL), cellf("v%" PRIu32, d->version),
				cellf("%zu", d->n_steps),
				cellf("%s", local_time(d->registered_us, tb, sizeof(tb))),
				cell(*d->description ? d->description : "-", 60, NULL) };
			table_add(&t, row);
		}
		table_print(&t);
		if (l->count == 0)
			printf(
			    "(no definitions; register one with `sagactl register FILE.binpb`)\n");
	} else {
		const saga_definition *d = &l->definitions[0];
		for (size_t i = 0; i < l->count; i++)
			if (l->definitions[i].version == (version ? version : d->version))
				d = &l->definitions[i];
		printf("definition   %s\n", d->name);
		printf("version      %" PRIu32 " of", d->version);
		for (size_t i = l->count; i-- > 0;)
			printf(" %" PRIu32, l->definitions[i].version);
		printf(" (registered %s)\n", local_time(d->registered_us, tb, sizeof(tb)));
		if (*d->description)
			printf("description  %s\n", d->description);
		printf("input        %s\n", d->input_type);
		if (*d->business_key)
			printf("business key input field %s\n", d->business_key);
		if (d->deadline_ms)
			printf("deadline     %" PRIu32 " ms\n", d->deadline_ms);
		putchar('\n');
		table t = { .cols = 7 };
		char *head[] = { cellf("STEP"), cellf("PARTICIPANT"), cellf("COMPENSATION"),
			cellf("TIMEOUT"), cellf("ATTEMPTS"), cellf("AFTER"), cellf("RESULT TYPE") };
		table_add(&t, head);
		for (size_t i = 0; i < d->n_steps; i++) {
			const saga_definition_step *st = &d->steps[i];
			char after[512] = "";
			size_t n = 0;
			for (size_t k = 0; k < st->n_depends_on && n < sizeof(after); k++)
				n += (size_t)snprintf(after + n, sizeof(after) - n, "%s%s",
				    k ? "," : "", st->depends_on[k]);
			char *row[] = { cell(st->name, 64, NULL), cell(st->participant, 40, NULL),
				cell(*st->compensation ? st->compensation : "-", 64, NULL),
				cellf("%" PRIu32 " ms", st->timeout_ms),
				st->compensation_max_attempts
				    ? cellf("%" PRIu32 " (undo %" PRIu32 ")", st->max_attempts,
					  st->compensation_max_attempts)
				    : cellf("%" PRIu32, st->max_attempts),
				cell(n ? after : "-", 80, NULL), cell(st->output_type, 80, NULL) };
			table_add(&t, row);
		}
		table_print(&t);
		print_graph(d);
	}
	saga_definition_list_free(l);
	saga_client_free(c);
	return 0;
}

static int
cmd_history(int argc, char **argv)
{
	saga_client *c = NULL;
	saga_info *info = NULL;
	int rv = get_info("history", argc, argv, &c, &info);
	if (rv != SAGA_OK)
		return rv;
	if (opt_json) {
		show_info(c, info, 1);
		putchar('\n');
	} else {
		printf("saga %s (%s@%u): %s\n", info->saga_id, info->definition, info->version,
		    saga_state_name(info->state));
		print_event_head();
		int64_t start = info->n_events ? info->events[0].at_us : 0, prev = start;
		for (size_t i = 0; i < info->n_events; i++) {
			print_event_row(&info->events[i], start, prev);
			prev = info->events[i].at_us;
		}
	}
	saga_info_free(info);
	saga_client_free(c);
	return 0;
}

/* retry/skip SAGA_ID STEP [--reason TEXT] */
static int
operate_cmd(const char *cmd, int argc, char **argv, int skip)
{
	const char *id = NULL, *step = NULL, *reason = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (match_opt(argc, argv, &i, "--reason", &v))
			reason = v;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else if (step == NULL && argv[i][0] != '-')
			step = argv[i];
		else
			unknown_arg(cmd, argv[i]);
	}
	if (id == NULL || step == NULL)
		usage_error("%s: which saga and step? (sagactl %s SAGA_ID STEP%s)", cmd, cmd,
		    skip ? " --reason TEXT" : "");
	if (skip && (reason == NULL || *reason == '\0'))
		usage_error("skip: say why with --reason TEXT (it goes into the saga's history)");
	saga_client *c = connect_client();
	saga_state after = SAGA_STATE_UNKNOWN;
	int rv = skip ? saga_client_skip_step(c, id, step, reason, &after)
		      : saga_client_retry_step(c, id, step, reason, &after);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot %s step %s of saga %s", cmd, step, id);
		rv = not_found_hint(fail(c, rv, what));
		saga_client_free(c);
		return rv;
	}
	if (opt_json) {
		int f = 1;
		putchar('{');
		json_kv_str(&f, "saga_id", id);
		json_kv_str(&f, "step", step);
		json_kv_str(&f, "state", saga_state_name(after));
		printf("}\n");
	} else {
		printf("saga %s: step %s %s; the saga is now %s\n", id, step,
		    skip ? "skipped" : "retried", saga_state_name(after));
	}
	saga_client_free(c);
	return 0;
}

static int
cmd_retry(int argc, char **argv)
{
	return operate_cmd("retry", argc, argv, 0);
}

static int
cmd_skip(int argc, char **argv)
{
	return operate_cmd("skip", argc, argv, 1);
}

static int
cmd_participants(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!match_global(argc, argv, &i))
			unknown_arg("participants", argv[i]);
	saga_client *c = connect_client();
	saga_participant_list *l = NULL;
	int rv = saga_client_participants(c, &l);
	if (rv != SAGA_OK) {
		rv = fail(c, rv, "cannot list participants");
		saga_client_free(c);
		return rv;
	}
	char tb[64];
	if (opt_json) {
		printf("[");
		for (size_t i = 0; i < l->count; i++) {
			const saga_participant *p = &l->participants[i];
			int f = 1;
			printf("%s{", i ? "," : "");
			json_kv_str(&f, "name", p->name);
			json_kv_int(&f, "connections", p->connections);
			json_kv_int(&f, "capacity", p->capacity);
			json_kv_int(&f, "in_flight", p->in_flight);
			json_kv_int(&f, "queued", p->queued);
			json_kv_str(&f, "breaker", p->breaker);
			json_kv_int(&f, "breaker_open_until_us", p->breaker_open_until_us);
			json_kv_int(&f, "breaker_opened", p->breaker_opened);
			json_kv_int(&f, "window_attempts", p->window_attempts);
			json_kv_int(&f, "window_failures", p->window_failures);
			printf("}");
		}
		printf("]\n");
	} else {
		printf("%-24s %5s %8s %9s %7s  %-10s %s\n", "PARTICIPANT", "CONNS", "CAPACITY",
		    "IN_FLIGHT", "QUEUED", "BREAKER", "WINDOW (failed/ended), OPENED");
		for (size_t i = 0; i < l->count; i++) {
			const saga_participant *p = &l->participants[i];
			printf("%-24s %5u %8u %9u %7u  %-10s %u/%u, %u times", p->name,
			    p->connections, p->capacity, p->in_flight, p->queued, p->breaker,
			    p->window_failures, p->window_attempts, p->breaker_opened);
			if (p->breaker_open_until_us)
				printf(", probe at %s",
				    local_time(p->breaker_open_until_us, tb, sizeof(tb)));
			printf("\n");
		}
	}
	saga_participant_list_free(l);
	saga_client_free(c);
	return 0;
}

#define MAX_STATES 16
#define MAX_PAGES  100000

static int
cmd_list(int argc, char **argv)
{
	saga_state states[MAX_STATES];
	saga_list_filter f = { 0 };
	const char *v;
	int all = 0;

	for (int i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (match_opt(argc, argv, &i, "--state", &v)) {
			saga_state s = saga_state_parse(v);
			if (s == SAGA_STATE_UNKNOWN)
				usage_error(
				    "list: '%s' is not a saga state (running, compensating, "
				    "completed, compensated, failed)",
				    v);
			if (f.n_states == MAX_STATES)
				usage_error("list: too many --state options");
			states[f.n_states++] = s;
		} else if (match_opt(argc, argv, &i, "--definition", &v)) {
			f.definition = v;
		} else if (match_opt(argc, argv, &i, "--business-key", &v)) {
			f.business_key = v;
		} else if (match_opt(argc, argv, &i, "--since", &v)) {
			f.created_after_us = parse_time("--since", v);
		} else if (match_opt(argc, argv, &i, "--until", &v)) {
			f.created_before_us = parse_time("--until", v);
		} else if (match_opt(argc, argv, &i, "--limit", &v)) {
			f.limit = (uint32_t)parse_num("--limit", v, 1000);
			if (f.limit == 0)
				usage_error("list: --limit must be from 1 to 1000");
		} else if (match_opt(argc, argv, &i, "--page", &v)) {
			f.page_token = v;
		} else if (match_opt(argc, argv, &i, "--all", NULL)) {
			all = 1;
		} else if (match_opt(argc, argv, &i, "--version", &v)) {
			f.version = (uint32_t)parse_num("--version", v, UINT32_MAX);
		} else if (match_opt(argc, argv, &i, "--counts", NULL)) {
			f.counts = 1;
		} else {
			unknown_arg("list", argv[i]);
		}
	}
	f.states = states;
	if (f.version != 0 && f.definition == NULL)
		usage_error("list: --version needs --definition");
	uint64_t counts[6] = { 0 };
	int have_counts = 0;

	saga_client *c = connect_client();
	table t = { .cols = 6 };
	char *token = NULL;
	size_t total = 0;
	int rv = SAGA_OK;

	if (opt_json) {
		printf("{\"sagas\":[");
	} else {
		char *head[] = { cellf("ID"), cellf("DEFINITION"), cellf("STATE"), cellf("STEPS"),
			cellf("CREATED"), cellf("BUSINESS KEY") };
		table_add(&t, head);
	}
	for (int page = 0; page < MAX_PAGES; page++) {
		saga_list *l = NULL;
		if ((rv = saga_client_list(c, &f, &l)) != SAGA_OK)
			break;
		if (l->has_counts && !have_counts) {
			memcpy(counts, l->state_counts, sizeof(counts));
			have_counts = 1;
		}
		f.counts = 0; /* once is enough when following pages */
		for (size_t i = 0; i < l->count; i++, total++) {
			const saga_summary *s = &l->sagas[i];
			if (opt_json) {
				if (total > 0)
					putchar(',');
				json_summary(s);
				continue;
			}
			char tb[64];
			char *row[] = { cell(s->saga_id, 64, NULL),
				cellf("%.150s@%" PRIu32, s->definition, s->version),
				cellf("%s", saga_state_name(s->state)),
				cellf("%" PRIu32 "/%" PRIu32, s->steps_done, s->steps_total),
				cellf("%s", local_time(s->created_us, tb, sizeof(tb))),
				cell(*s->business_key ? s->business_key : "-", 64, NULL) };
			table_add(&t, row);
		}
		free(token);
		token = strdup(l->next_page_token);
		saga_list_free(l);
		if (token == NULL) {
			rv = SAGA_ENOMEM;
			break;
		}
		if (!all || *token == '\0')
			break;
		if (f.page_token != NULL && strcmp(f.page_token, token) == 0) {
			fprintf(stderr,
			    "sagactl: sagad returned the same page token twice; "
			    "stopping\n");
			break;
		}
		f.page_token = token;
	}
	if (rv != SAGA_OK) {
		if (opt_json)
			printf("]}\n");
		else
			table_print(&t);
		rv = fail(c, rv, "cannot list sagas");
		free(token);
		saga_client_free(c);
		return rv;
	}
	if (opt_json) {
		printf("],\"next_page_token\":");
		json_str(token != NULL ? token : "");
		if (have_counts) {
			int g = 1;
			printf(",\"counts\":{");
			for (int k = SAGA_STATE_RUNNING; k <= SAGA_STATE_FAILED; k++)
				json_kv_int(&g, saga_state_name((saga_state)k), (int64_t)counts[k]);
			putchar('}');
		}
		printf("}\n");
	} else {
		if (have_counts) {
			for (int k = SAGA_STATE_RUNNING; k <= SAGA_STATE_FAILED; k++)
				printf("%s%s %" PRIu64, k > SAGA_STATE_RUNNING ? ", " : "",
				    saga_state_name((saga_state)k), counts[k]);
			printf("\n\n");
		}
		table_print(&t);
		if (total == 0)
			printf("(no sagas)\n");
		if (token != NULL && *token != '\0')
			printf("\nmore: sagactl list --page %s (or --all)\n", token);
	}
	free(token);
	saga_client_free(c);
	return 0;
}

/* ---- main -------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (match_global(argc, argv, &i))
			continue;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "help") == 0) {
			if (strcmp(argv[i], "help") == 0 && i + 1 < argc) {
				for (size_t k = 0; k < N_COMMANDS; k++)
					if (strcmp(argv[i + 1], commands[k].name) == 0) {
						fputs(commands[k].help, stdout);
						return 0;
					}
			}
			fputs(usage_text, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("sagactl %s\n", saga_version());
			return 0;
		}
		if (argv[i][0] == '-')
			usage_error("unknown option %s", argv[i]);
		break;
	}
	if (i >= argc) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	for (size_t k = 0; k < N_COMMANDS; k++) {
		if (strcmp(argv[i], commands[k].name) == 0) {
			check_help(argc - i, argv + i, commands[k].help);
			int rv = commands[k].run(argc - i, argv + i);
			if (fflush(stdout) != 0) {
				fprintf(stderr, "sagactl: cannot write the output: %s\n",
				    strerror(errno));
				return rv ? rv : 74; /* EX_IOERR */
			}
			return rv;
		}
	}
	usage_error("unknown command '%s'", argv[i]);
}
