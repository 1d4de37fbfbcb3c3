/*
 * sagactl.h: what the files of sagactl offer each other. Prefix ctl_.
 *
 *   main.c         the command table and usage, arguments and the global
 *                  options, errors and the client, main()
 *   output.c       text tables, JSON output, times; a saga shown like
 *                  `get` (text or JSON) and its events
 *   payload.c      payloads as JSON: the types of a definition version
 *   sagas.c        the saga commands: start, get, wait, list, cancel,
 *                  history, retry, skip, watch, participants
 *   definitions.c  the definition commands: register, describe
 *   principals.c   principal create, list, revoke (auth)
 *
 * The exit status is 0 on success, the saga_err of a failed call (so a
 * script can tell "not found" from "sagad is down"), and the values below
 * and in main.c's usage text otherwise.
 */
#ifndef SAGACTL_H
#define SAGACTL_H

#include <saga.h>

#include <stddef.h>
#include <stdint.h>

#include "pbjson.h"

#define EXIT_COMPENSATED 16 /* wait: the saga was compensated */
#define EXIT_PARKED      17 /* wait: the saga failed and is parked */
#define EXIT_TERMINATED  18 /* wait: an operator terminated the saga */
#define EXIT_USAGE       64 /* as in sysexits.h */
#define EXIT_REFUSED     77 /* EX_NOPERM: not authenticated, or not allowed */
#define EXIT_DATAERR     65 /* the input JSON does not fit the definition's input type */
#define EXIT_NOINPUT     66

/* ---- main.c: arguments, errors, the client ------------------------------ */

/* Global options, accepted anywhere on the line. */
extern int ctl_opt_json;  /* --json, --output json or jsonl */
extern int ctl_opt_jsonl; /* --output jsonl: list prints one saga per line */
extern int ctl_color;     /* colour state names (--color; NO_COLOR; a terminal) */
/* A table cell with a saga or step state name, coloured when ctl_color:
 * green done, yellow undone, red failed or parked, cyan in progress. */
char *ctl_state_cell(const char *state, const char *suffix);
/* The whole command line, as main() got it. */
extern int ctl_argc;
extern char **ctl_argv;
/* Prints s as one shell word (quoted if it needs to be). */
void ctl_print_shell_word(const char *s);
extern int ctl_opt_raw; /* --raw: inputs and results as bytes, not decoded */

/* Prints "sagactl: " and the message, a hint to --help, and exits 64. */
void ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Is argv[*i] the option `name`? Options with a value take it from the
 * next argument or after '=' (--url=tcp://...). On a match *val is set
 * (for options with a value) and *i advanced past what was consumed. */
int ctl_match_opt(int argc, char **argv, int *i, const char *name, const char **val);
/* Is argv[*i] a global option (then taken)? */
int ctl_match_global(int argc, char **argv, int *i);
/* Parses a non-negative integer no larger than max, or exits 64. */
long long ctl_parse_num(const char *what, const char *s, long long max);
/* The same, for a number from min to max; one message for every value out
 * of range. */
long long ctl_parse_range(const char *what, const char *s, long long min, long long max);
/* Parses RFC 3339 (or a plain date, or unix seconds) into unix us, or
 * exits 64. */
int64_t ctl_parse_time(const char *what, const char *s);
/* Rejects an unknown option or a surplus argument of cmd: exits 64. */
void ctl_unknown_arg(const char *cmd, const char *a) __attribute__((noreturn));

/* Reports a failed call on stderr with a hint where one is obvious;
 * returns the exit status (the saga_err). c may be NULL. */
int ctl_fail(saga_client *c, int err, const char *what);
/* A client for --url, $SAGA_URL or the default, with --timeout; exits
 * when it cannot be made. */
saga_client *ctl_connect(void);
/* Reads a whole file (- = stdin) into *buf (the caller frees it); exits
 * 66 if it cannot. */
void ctl_read_file(const char *path, uint8_t **buf, size_t *len);

/* ---- output.c: tables, JSON, times, sagas -------------------------------- */

/* Local time as ISO 8601 with milliseconds and offset; "-" for 0. */
const char *ctl_local_time(int64_t us, char *buf, size_t n);
/* UTC RFC 3339 for JSON; "" for 0. */
const char *ctl_utc_time(int64_t us, char *buf, size_t n);
/* Wall-clock microseconds. */
int64_t ctl_now_us(void);

/* A malloc'd copy of s for a table cell: control characters become
 * spaces, and text longer than max bytes is cut at a character boundary
 * with "..." (*cut, if not NULL, says whether it was). */
char *ctl_cell(const char *s, size_t max, int *cut);
char *ctl_cellf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A table of owned cells printed with aligned columns. */
typedef struct table {
	size_t cols, rows, cap;
	char **cells;
} table;

/* Adds a row of t->cols cells (which the table then owns). */
void ctl_table_add(table *t, char **row);
/* Prints the table and frees its cells. */
void ctl_table_print(table *t);
/* Frees the cells without printing them. */
void ctl_table_free(table *t);

/* JSON on stdout: a string; "key": for the members of an object (first
 * says whether to omit the comma); "key": value; "key": [strings]. */
void ctl_json_str(const char *s);
void ctl_json_key(int *first, const char *k);
void ctl_json_kv_str(int *first, const char *k, const char *v);
void ctl_json_kv_int(int *first, const char *k, int64_t v);
void ctl_json_kv_bool(int *first, const char *k, int v);
void ctl_json_kv_strs(int *first, const char *k, char *const *v, size_t n);

/* A saga as `get` shows it (JSON without a newline), its payloads
 * decoded with its definition's types unless --raw. */
void ctl_show_info(saga_client *c, const saga_info *info, int json);
/* A saga of a list as a JSON object. */
void ctl_json_summary(const saga_summary *s);
/* Events: the header and one row of the text form, and the JSON form. */
void ctl_print_event_head(void);
void ctl_print_event_row(const saga_event *e, int64_t start, int64_t prev);
void ctl_json_event(const saga_event *e);

/* ---- payload.c: payloads as JSON ---------------------------------------- */

/* The types of one definition version, from the descriptor set it was
 * registered with (sagad keeps it; `describe` sends it). */
typedef struct schema {
	saga_definition_list *l;
	const saga_definition *d; /* the version described */
	pbjson *pb;
	char why[512]; /* when pb is NULL: why there are no types */
} schema;

/* Loads the types of def@version (0 = latest). Returns 0 or the error of
 * the describe call; a descriptor set that pbjson cannot read leaves pb
 * NULL with the reason in why (payloads are then shown as bytes). */
int ctl_schema_load(saga_client *c, const char *def, uint32_t version, schema *sc);
void ctl_schema_free(schema *sc);
/* The schema for a saga's definition version in buf, unless --raw. NULL
 * if it cannot be had (the payloads are then shown as bytes, with why). */
schema *ctl_schema_for_info(saga_client *c, const saga_info *s, schema *buf);
/* bytes of message `type` as JSON (malloc'd; one line if indent is 0), or
 * NULL with the reason in why. The fields of info->redacted under prefix
 * ("input.", "steps.NAME.result."; info and prefix may be NULL) show as
 * "[redacted]". */
char *ctl_payload_json(const schema *sc, const char *type, const uint8_t *b, size_t n, int indent,
    const saga_info *info, const char *prefix, char *why, size_t whylen);
/* The result type of a step of the schema's definition, or "". */
const char *ctl_step_output_type(const schema *sc, const char *step);

/* ---- the commands: sagas.c, definitions.c -------------------------------- */

/* Each runs `sagactl NAME ARGS` (argv[0] is NAME) and returns the exit
 * status. */
int ctl_cmd_register(int argc, char **argv);
int ctl_cmd_start(int argc, char **argv);
int ctl_cmd_get(int argc, char **argv);
int ctl_cmd_wait(int argc, char **argv);
int ctl_cmd_list(int argc, char **argv);
int ctl_cmd_cancel(int argc, char **argv);
int ctl_cmd_participants(int argc, char **argv);
int ctl_cmd_history(int argc, char **argv);
int ctl_cmd_retry(int argc, char **argv);
int ctl_cmd_skip(int argc, char **argv);
int ctl_cmd_terminate(int argc, char **argv);
int ctl_cmd_force(int argc, char **argv);
int ctl_cmd_rerun(int argc, char **argv);
int ctl_cmd_batch(int argc, char **argv);
int ctl_cmd_watch(int argc, char **argv);
int ctl_cmd_describe(int argc, char **argv);
/* principals.c: principal create|list|revoke. */
int ctl_cmd_principal(int argc, char **argv);

#endif
