/*
 * sagactl: the command-line tool for sagad. Built on libsaga's public API
 * (saga.h), so its calls double as an example of using it, and on pbjson
 * and common/'s text helpers for showing and reading payloads.
 *
 * Output is a readable table by default and one JSON document with --json.
 * The exit status is 0 on success, the saga_err of a failed call (so a
 * script can tell "not found" from "sagad is down"), and the values listed
 * in usage() otherwise.
 *
 * main.c: the command table and usage, arguments and the global options,
 * errors and the client, main(). See sagactl.h for the other files.
 */
#include "sagactl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#define MAX_INPUT_FILE ((size_t)256 << 20)

/* Global options. */
static int opt_color = -1; /* --color: -1 auto, 0 never, 1 always */
static const char *opt_url;
static const char *opt_credential_file;
static int opt_timeout_ms;
static const char *opt_tls_ca, *opt_tls_cert, *opt_tls_key, *opt_tls_server_name;
int ctl_opt_json;
int ctl_opt_raw;

/* ---- usage ------------------------------------------------------------- */

static const char usage_text[] =
    "usage: sagactl [--url URL[,URL...]] [--credential-file FILE] [--timeout MS]\n"
    "               [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]\n"
    "               [--json | --output FORMAT] [--color WHEN] [--raw] COMMAND [ARGS]\n"
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
    "  terminate SAGA_ID       stop a saga at once without compensating\n"
    "  force SAGA_ID STEP      force a step succeeded (with a result) or compensated\n"
    "  rerun SAGA_ID           start a finished saga again with its input (linked)\n"
    "  batch ACTION            cancel, terminate, retry or rerun the sagas of a filter\n"
    "  describe [DEFINITION]   registered definitions; one's versions and steps as a graph\n"
    "  participants            connected participants, capacity, circuit breakers\n"
    "  principal create|list|revoke   who may call sagad with auth on (admin)\n"
    "\n"
    "Options (before or after the command):\n"
    "  --url URLS     sagad's address (default: $SAGA_URL, else " SAGA_DEFAULT_URL "),\n"
    "                 or the addresses of several sagad instances sharing one\n"
    "                 database, separated by commas (at most 16), e.g.\n"
    "                 tcp://10.0.0.1:7700,tcp://10.0.0.2:7700: each call goes to\n"
    "                 one that is up; $SAGA_URL takes the same list\n"
    "  --credential-file FILE\n"
    "                 the credential to call a sagad with auth on (first line of\n"
    "                 FILE); default: $SAGA_CREDENTIAL_FILE, else $SAGA_CREDENTIAL\n"
    "                 (the credential itself)\n"
    "  --timeout MS   time limit of each call to sagad (default 10000)\n"
    "  --tls-ca FILE  for tls+tcp:// URLs: PEM file of the CAs sagad's certificate\n"
    "                 must be signed by (default: $SAGA_TLS_CA)\n"
    "  --tls-cert FILE, --tls-key FILE\n"
    "                 this client's certificate and key, for a sagad that requires\n"
    "                 client certificates (default: $SAGA_TLS_CERT, $SAGA_TLS_KEY)\n"
    "  --tls-server-name NAME\n"
    "                 the name sagad's certificate must carry (default:\n"
    "                 $SAGA_TLS_SERVER_NAME, else the URL's host)\n"
    "  --output FORMAT\n"
    "                 table (the default), json (as --json), or jsonl: as json,\n"
    "                 but list prints one saga per line (then counts and the\n"
    "                 next page token, each on a line of its own)\n"
    "  --color WHEN   colour state names: auto (on a terminal, unless NO_COLOR\n"
    "                 is set or TERM is dumb), always or never\n"
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
    "  18     wait: the saga was terminated by an operator\n"
    "  77     refused: no valid credential, or the role does not allow the command\n"
    "  64     usage error\n"
    "  65     start: the input JSON does not fit the definition's input type\n"
    "  66     an input file cannot be read\n"
    "  74     the output cannot be written\n";

typedef struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} command;

static const command commands[] = {
	{ "register", ctl_cmd_register,
	    "usage: sagactl register FILE.binpb\n"
	    "\n"
	    "Registers every saga service in FILE.binpb, a descriptor set made with\n"
	    "  protoc --include_imports --descriptor_set_out=FILE.binpb x.proto\n"
	    "(FILE may be - for standard input). Prints each definition with the\n"
	    "version now current; \"(unchanged)\" when it was identical to the latest\n"
	    "version and no new version was made. An invalid definition exits 9 and\n"
	    "names the problem.\n" },
	{ "start", ctl_cmd_start,
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
	{ "get", ctl_cmd_get,
	    "usage: sagactl get SAGA_ID [--reveal]\n"
	    "\n"
	    "Shows a saga (definition, state, keys, times in local time, trace, error,\n"
	    "its input as JSON) and a table of its steps: state, attempts, compensation\n"
	    "attempts, start time, duration, last error and result size, then each\n"
	    "result as JSON. Inputs and results are decoded with the types the\n"
	    "definition was registered with (--raw: as bytes). Exits 3 if there is no\n"
	    "such saga.\n"
	    "\n"
	    "Fields marked (sagaspec.sensitive) show as \"[redacted]\" (--json also lists\n"
	    "them under \"redacted\"); --reveal shows them, if sagad lets you.\n" },
	{ "wait", ctl_cmd_wait,
	    "usage: sagactl wait SAGA_ID [--wait-timeout MS]\n"
	    "\n"
	    "Waits until the saga is completed, compensated or failed, then shows it\n"
	    "like `get`. Exit status: 0 completed, 16 compensated, 17 failed (parked),\n"
	    "18 terminated,\n"
	    "5 if it is still not final after --wait-timeout (default 60000 ms;\n"
	    "0 = no limit).\n" },
	{ "list", ctl_cmd_list,
	    "usage: sagactl list [options]\n"
	    "\n"
	    "Lists sagas, newest first: id, definition@version, state, steps\n"
	    "done/total, creation time, business key. When more remain, the token\n"
	    "of the next page is printed last.\n"
	    "\n"
	    "  --state S            only sagas in state S (running, compensating,\n"
	    "                       completed, compensated, failed, terminated);\n"
	    "                       repeatable\n"
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
	{ "cancel", ctl_cmd_cancel,
	    "usage: sagactl cancel SAGA_ID [--reason TEXT]\n"
	    "\n"
	    "Cancels a running saga: it stops going forward and compensates the steps\n"
	    "it completed. Prints the state after the cancel. Exits 10 if the saga is\n"
	    "already final.\n" },
	{ "history", ctl_cmd_history,
	    "usage: sagactl history SAGA_ID\n"
	    "\n"
	    "Every event of a saga in order: started, each attempt and its outcome,\n"
	    "retries, compensation, operator actions, the end. With the time of each\n"
	    "and how long after the previous event and after the start it came.\n" },
	{ "retry", ctl_cmd_retry,
	    "usage: sagactl retry SAGA_ID STEP [--reason TEXT]\n"
	    "\n"
	    "Runs a step again now, its attempts counted from 1: a step waiting to\n"
	    "retry, or a compensation waiting to retry or failed (a parked saga goes\n"
	    "back to compensating). Recorded in the saga's history. Exits 10 if the\n"
	    "step is in no such state.\n" },
	{ "skip", ctl_cmd_skip,
	    "usage: sagactl skip SAGA_ID STEP --reason TEXT\n"
	    "\n"
	    "Marks a step done by hand instead of running it: a step waiting to retry\n"
	    "becomes succeeded, a compensation waiting to retry or failed becomes\n"
	    "compensated (say what you did in --reason: it goes into the history).\n"
	    "The saga then moves on. Exits 10 if the step is in no such state.\n" },
	{ "terminate", ctl_cmd_terminate,
	    "usage: sagactl terminate SAGA_ID --reason TEXT\n"
	    "\n"
	    "Stops a running, compensating or parked (failed) saga at once WITHOUT\n"
	    "compensating: it ends terminated. Nothing more is dispatched; steps in\n"
	    "flight keep the state they had and their late answers are ignored. The\n"
	    "reason and who asked go into the saga's history. Use cancel to undo\n"
	    "what was done instead. Exits 10 if the saga is already completed,\n"
	    "compensated or terminated.\n" },
	{ "force", ctl_cmd_force,
	    "usage: sagactl force SAGA_ID STEP succeeded [RESULT] --reason TEXT\n"
	    "       sagactl force SAGA_ID STEP compensated --reason TEXT\n"
	    "\n"
	    "Forces a step's outcome when its participant cannot give it:\n"
	    "  succeeded    a step running (in flight, its outcome unknown) or waiting\n"
	    "               to retry, in a running saga, succeeds with RESULT (default:\n"
	    "               none) and the saga goes on\n"
	    "  compensated  in a compensating or parked saga, a step owed an undo, being\n"
	    "               undone, waiting to retry its undo or whose undo failed counts\n"
	    "               as undone by hand; a parked saga resumes compensating\n"
	    "A late answer of the abandoned attempt is ignored. skip is the narrow,\n"
	    "older form (succeeded without a result, only from waiting to retry).\n"
	    "Exits 10 if the step is in no such state.\n"
	    "\n"
	    "RESULT, one of:\n"
	    "  --result JSON          encoded with the step's result type (proto3 JSON;\n"
	    "                         `sagactl describe` shows it); exits 65 if it does\n"
	    "                         not fit\n"
	    "  --result-file PATH     the JSON from PATH (- = standard input)\n"
	    "  --result-raw BYTES     the result bytes as given (already serialized)\n"
	    "  --result-raw-file P    the result bytes from file P\n" },
	{ "rerun", ctl_cmd_rerun,
	    "usage: sagactl rerun SAGA_ID [--key KEY] [--latest]\n"
	    "\n"
	    "Starts a finished saga (completed, compensated, failed or terminated)\n"
	    "again with its input and business key, as a new saga, and prints the new\n"
	    "saga's id. The new saga's history says \"rerun of SAGA_ID\", the old one's\n"
	    "\"rerun as NEW_ID\"; get and list show the link. Exits 10 if the saga is\n"
	    "not finished.\n"
	    "\n"
	    "  --key KEY    idempotency key: the same key gives the same new saga (a\n"
	    "               retried rerun makes no second one)\n"
	    "  --latest     run on the latest version of the definition (default: the\n"
	    "               version the saga ran)\n" },
	{ "batch", ctl_cmd_batch,
	    "usage: sagactl batch cancel|terminate|retry|rerun [filters] [options]\n"
	    "\n"
	    "Applies an action to every saga matching the filters (those of `list`),\n"
	    "a page at a time: each saga gets the command `sagactl ACTION` would send\n"
	    "for it alone, on whichever sagad runs it, and its outcome is printed:\n"
	    "done, or skipped and why (e.g. not in a state the action applies to).\n"
	    "Run it with --dry-run first: nothing changes, the page shows what would\n"
	    "be tried, and the count of every matching saga the action applies to.\n"
	    "\n"
	    "  --state S, --definition D, --version N, --business-key K,\n"
	    "  --since TIME, --until TIME\n"
	    "                   which sagas, as for list\n"
	    "  --limit N        sagas per call (default 50, at most 100)\n"
	    "  --page TOKEN     continue where the last call stopped\n"
	    "  --all            follow the pages to the end\n"
	    "  --dry-run        change nothing; count what would be touched\n"
	    "  --reason TEXT    into each saga's history (required to terminate)\n"
	    "  --step STEP      retry: the step to retry in each saga\n"
	    "  --latest         rerun: on the latest version of the definition\n"
	    "  --key KEY        rerun: idempotency key; each new saga's is KEY/OLD_ID,\n"
	    "                   so running the batch again reruns no saga twice\n" },
	{ "watch", ctl_cmd_watch,
	    "usage: sagactl watch SAGA_ID [--interval MS] [--wait-timeout MS]\n"
	    "\n"
	    "Follows a saga live: prints each event of its history as it happens\n"
	    "(like `history`), until the saga is completed, compensated or failed.\n"
	    "With --json, one JSON object per event and line, then the saga.\n"
	    "Exit status as for `wait`: 0 completed, 16 compensated, 17 failed,\n"
	    "5 if still running after --wait-timeout (default: no limit).\n"
	    "\n"
	    "  --interval MS   how often sagad is asked (default 500)\n" },
	{ "describe", ctl_cmd_describe,
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
	{ "principal", ctl_cmd_principal,
	    "usage: sagactl principal create NAME --role ROLE [--participant P]\n"
	    "                                [--definitions A,B]\n"
	    "       sagactl principal list\n"
	    "       sagactl principal revoke NAME|ID\n"
	    "\n"
	    "Manages who may call a sagad with auth on (the caller must be an admin;\n"
	    "see docs/SECURITY.md). ROLE is one of:\n"
	    "  participant   poll and report as participant P only (default: NAME);\n"
	    "                also written participant:P\n"
	    "  client        start, get, wait, list, describe, participants\n"
	    "  operator      also cancel, retry, skip, terminate, force, rerun, batch\n"
	    "  admin         also register, principals, see sensitive fields\n"
	    "--definitions limits a client or operator to those definitions.\n"
	    "\n"
	    "create prints the new credential on stdout, once (sagad keeps only a\n"
	    "hash): redirect it into a file of mode 0600 for --credential-file.\n"
	    "With --json: {\"credential\": ..., \"principal\": {...}}. list shows every\n"
	    "principal, revoked ones too. revoke takes a name or an id; the credential\n"
	    "is refused by every sagad within 2 s. The last active admin cannot be\n"
	    "revoked (exit 10).\n" },
	{ "participants", ctl_cmd_participants,
	    "usage: sagactl participants\n"
	    "\n"
	    "Lists the participants sagad knows: connections, capacity, steps in flight\n"
	    "and waiting, and the circuit breaker (closed, open until a time, or\n"
	    "half-open while one probe step runs) with its current window's counts.\n" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

void
ctl_usage_error(const char *fmt, ...)
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
int
ctl_match_opt(int argc, char **argv, int *i, const char *name, const char **val)
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
		ctl_usage_error("%s needs a value", name);
	*val = argv[++*i];
	return 1;
}

/* Parses a non-negative integer no larger than max. */
long long
ctl_parse_num(const char *what, const char *s, long long max)
{
	return ctl_parse_range(what, s, 0, max);
}

long long
ctl_parse_range(const char *what, const char *s, long long min, long long max)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		ctl_usage_error("%s: '%s' is not a number from %lld to %lld", what, s, min, max);
	return v;
}

/* The global options are accepted anywhere on the line. */
int
ctl_match_global(int argc, char **argv, int *i)
{
	const char *v;
	if (ctl_match_opt(argc, argv, i, "--url", &v)) {
		opt_url = v;
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--credential-file", &v)) {
		opt_credential_file = v;
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--timeout", &v)) {
		opt_timeout_ms = (int)ctl_parse_num("--timeout", v, INT_MAX);
		if (opt_timeout_ms == 0)
			ctl_usage_error("--timeout must be at least 1 ms");
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--tls-ca", &v)) {
		opt_tls_ca = v;
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--tls-cert", &v)) {
		opt_tls_cert = v;
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--tls-key", &v)) {
		opt_tls_key = v;
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--tls-server-name", &v)) {
		opt_tls_server_name = v;
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--json", NULL)) {
		ctl_opt_json = 1;
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--output", &v)) {
		if (strcmp(v, "table") == 0)
			ctl_opt_json = ctl_opt_jsonl = 0;
		else if (strcmp(v, "json") == 0)
			ctl_opt_json = 1, ctl_opt_jsonl = 0;
		else if (strcmp(v, "jsonl") == 0)
			ctl_opt_json = ctl_opt_jsonl = 1;
		else
			ctl_usage_error("--output: '%s' is not table, json or jsonl", v);
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--color", &v)) {
		if (strcmp(v, "auto") == 0)
			opt_color = -1;
		else if (strcmp(v, "always") == 0)
			opt_color = 1;
		else if (strcmp(v, "never") == 0)
			opt_color = 0;
		else
			ctl_usage_error("--color: '%s' is not auto, always or never", v);
		return 1;
	}
	if (ctl_match_opt(argc, argv, i, "--raw", NULL)) {
		ctl_opt_raw = 1;
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
void
ctl_unknown_arg(const char *cmd, const char *a)
{
	if (a[0] == '-' && a[1] != '\0')
		ctl_usage_error("%s: unknown option %s", cmd, a);
	ctl_usage_error("%s: unexpected argument '%s'", cmd, a);
}

/* ---- errors and the client --------------------------------------------- */

/* sagad's address: one URL or a comma-separated list (saga.h, "Addresses"),
 * named as given in messages. */
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
int
ctl_fail(saga_client *c, int err, const char *what)
{
	const char *detail = c != NULL ? saga_client_errmsg(c) : "";
	if (*detail != '\0')
		fprintf(stderr, "sagactl: %s: %s: %s\n", what, saga_strerror(err), detail);
	else
		fprintf(stderr, "sagactl: %s: %s\n", what, saga_strerror(err));
	switch (err) {
	case SAGA_ECONN:
	case SAGA_ETIMEDOUT:
		if (strstr(detail, "TLS") != NULL) {
			fprintf(stderr,
			    "sagactl: check --tls-ca, --tls-cert, --tls-key and "
			    "--tls-server-name (SAGA_TLS_*; see docs/SECURITY.md)\n");
			break;
		}
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
	case SAGA_EAUTH:
		fprintf(stderr,
		    "sagactl: give a credential with --credential-file FILE or "
		    "SAGA_CREDENTIAL_FILE (see docs/SECURITY.md)\n");
		return EXIT_REFUSED;
	case SAGA_EPERM:
		return EXIT_REFUSED;
	default:
		break;
	}
	return err;
}

/* An option, else its environment variable, else NULL. */
static const char *
opt_or_env(const char *opt, const char *env)
{
	if (opt != NULL)
		return opt;
	const char *v = getenv(env);
	return v != NULL && *v != '\0' ? v : NULL;
}

/* The --tls-* options (or SAGA_TLS_*), if any is given. A file that cannot
 * be used is a usage error naming it. */
static void
set_tls(saga_client *c)
{
	const char *ca = opt_or_env(opt_tls_ca, "SAGA_TLS_CA");
	const char *cert = opt_or_env(opt_tls_cert, "SAGA_TLS_CERT");
	const char *key = opt_or_env(opt_tls_key, "SAGA_TLS_KEY");
	const char *name = opt_or_env(opt_tls_server_name, "SAGA_TLS_SERVER_NAME");
	if (ca == NULL && cert == NULL && key == NULL && name == NULL)
		return;
	if (ca == NULL)
		ctl_usage_error(
		    "--tls-cert, --tls-key and --tls-server-name need --tls-ca FILE "
		    "(or SAGA_TLS_CA): the CA that sagad's certificate is checked against");
	if (saga_client_set_tls(c, ca, cert, key, name) != SAGA_OK)
		ctl_usage_error("TLS settings: %s", saga_client_errmsg(c));
}

/* The credential from --credential-file, $SAGA_CREDENTIAL_FILE or
 * $SAGA_CREDENTIAL, into buf; "" if none is given. Exits 66 if the file
 * cannot be read. */
static void
credential(char *buf, size_t len)
{
	const char *file = opt_credential_file;
	buf[0] = '\0';
	if (file == NULL && (file = getenv("SAGA_CREDENTIAL_FILE")) != NULL && *file == '\0')
		file = NULL;
	if (file == NULL) {
		const char *env = getenv("SAGA_CREDENTIAL");
		snprintf(buf, len, "%s", env != NULL ? env : "");
	} else {
		FILE *f = fopen(file, "r");
		if (f == NULL) {
			fprintf(stderr, "sagactl: cannot open the credential file %s: %s\n", file,
			    strerror(errno));
			exit(EXIT_NOINPUT);
		}
		if (fgets(buf, (int)len, f) == NULL)
			buf[0] = '\0';
		fclose(f);
	}
	/* A file ends with a newline; spaces around are not part of it. */
	size_t n = strlen(buf);
	while (n > 0 &&
	    (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (file != NULL && n == 0) {
		fprintf(stderr, "sagactl: the credential file %s is empty\n", file);
		exit(EXIT_NOINPUT);
	}
}

saga_client *
ctl_connect(void)
{
	saga_client *c = NULL;
	int rv = saga_client_new(url(), &c);
	if (rv != SAGA_OK) {
		char why[1024];
		if (rv == SAGA_EINVAL && saga_url_list_check(url(), why, sizeof(why)) != SAGA_OK)
			ctl_usage_error(
			    "invalid %s: %s", opt_url != NULL ? "--url" : "$SAGA_URL", why);
		exit(ctl_fail(NULL, rv, "cannot create a client"));
	}
	if (opt_timeout_ms > 0)
		saga_client_set_timeout(c, opt_timeout_ms);
	set_tls(c);
	char cred[1024];
	credential(cred, sizeof(cred));
	if (cred[0] != '\0' && saga_client_set_credential(c, cred) != SAGA_OK)
		ctl_usage_error("the credential given is not one (printable ASCII without spaces, "
				"as `sagactl principal create` prints it)");
	memset(cred, 0, sizeof(cred));
	return c;
}

/* Reads a whole file (- = stdin) into *buf; exits 66 if it cannot. */
void
ctl_read_file(const char *path, uint8_t **buf, size_t *len)
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

/* ---- times in arguments ------------------------------------------------ */

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
int64_t
ctl_parse_time(const char *what, const char *s)
{
	size_t len = strlen(s);
	int all_digits = len > 0 && strspn(s, "0123456789") == len;
	if (all_digits)
		return ctl_parse_num(what, s, INT64_MAX / 1000000) * 1000000;

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
	ctl_usage_error("%s: '%s' is not a time (use RFC 3339 like 2026-11-22T10:00:00Z, "
			"or unix seconds)",
	    what, s);
}

/* ---- main -------------------------------------------------------------- */

int ctl_argc;
char **ctl_argv;
int ctl_opt_jsonl;
int ctl_color;

/* --color auto: on a terminal, unless NO_COLOR is set and not empty
 * (no-color.org) or TERM is dumb. --color always/never decide alone. */
static void
decide_color(void)
{
	if (opt_color >= 0) {
		ctl_color = opt_color;
		return;
	}
	const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
	ctl_color = isatty(STDOUT_FILENO) && (nc == NULL || nc[0] == '\0') &&
	    !(term != NULL && strcmp(term, "dumb") == 0);
}

void
ctl_print_shell_word(const char *s)
{
	int plain = *s != '\0';
	for (const char *p = s; *p && plain; p++)
		plain = isalnum((unsigned char)*p) || strchr("-_./:=,@+%", *p) != NULL;
	if (plain) {
		fputs(s, stdout);
		return;
	}
	putchar('\'');
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*p);
	}
	putchar('\'');
}

int
main(int argc, char **argv)
{
	int i;

	ctl_argc = argc;
	ctl_argv = argv;
	/* Global options may come anywhere: find --color and --output first. */
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--") == 0)
			break;
		if (strncmp(argv[k], "--color", 7) == 0 || strncmp(argv[k], "--output", 8) == 0) {
			int j = k;
			ctl_match_global(argc, argv, &j);
		}
	}
	decide_color();
	for (i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
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
			ctl_usage_error("unknown option %s", argv[i]);
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
	ctl_usage_error("unknown command '%s'", argv[i]);
}
