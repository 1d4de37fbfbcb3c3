/* sagas: the saga commands (start, get, wait, list, cancel, history,
 * retry, skip, terminate, force, rerun, watch, participants). See
 * sagactl.h. */
#include "sagactl.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_WAIT_MS 60000

/* ---- start, get, wait, cancel ------------------------------------------ */

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
	case SAGA_STATE_TERMINATED:
		return EXIT_TERMINATED;
	default:
		return SAGA_ETIMEDOUT;
	}
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
		return ctl_fail(c, rv, what);
	}
	if (info != NULL) {
		if (ctl_opt_json) {
			if (st != NULL) {
				int f = 1;
				putchar('{');
				ctl_json_kv_str(&f, "saga_id", st->id);
				ctl_json_key(&f, "existing");
				printf("%s", st->existing ? "true" : "false");
				ctl_json_key(&f, "saga");
			}
			ctl_show_info(c, info, 1);
			printf(st != NULL ? "}\n" : "\n");
		} else {
			ctl_show_info(c, info, 0);
		}
	}
	if (rv == SAGA_ETIMEDOUT) {
		char what[256];
		snprintf(what, sizeof(what), "saga %s is not final", id);
		ctl_fail(c, rv, what);
		saga_info_free(info);
		return SAGA_ETIMEDOUT;
	}
	rv = final_status(info);
	saga_info_free(info);
	return rv;
}

/* The JSON text of a start's input, encoded with the input type of the
 * definition version being started, by libsaga (saga_client_encode_json:
 * the Node.js package encodes the same way). Exits EXIT_DATAERR (with the
 * path of the offending value) if it does not fit. */
static void
encode_input(saga_client *c, const char *def, uint32_t version, const char *json, size_t len,
    uint8_t **out, size_t *outlen)
{
	int rv = saga_client_encode_json(c, def, version, json, len, out, outlen);
	if (rv == SAGA_EDEFINITION) {
		fprintf(stderr,
		    "sagactl: %s\n"
		    "sagactl: give the serialized bytes with --input-raw or --input-raw-file\n",
		    saga_client_errmsg(c));
		exit(EXIT_DATAERR);
	}
	if (rv == SAGA_EINVAL) {
		fprintf(stderr,
		    "sagactl: %s\n"
		    "sagactl: `sagactl describe %s` shows the input type; the JSON uses the\n"
		    "sagactl: fields' lowerCamelCase (or proto) names, 64-bit integers as "
		    "strings\n",
		    saga_client_errmsg(c), def);
		exit(EXIT_DATAERR);
	}
	if (rv != SAGA_OK) {
		char what[600];
		snprintf(what, sizeof(what), "cannot start %s", def);
		rv = ctl_fail(c, rv, what);
		if (rv == SAGA_ENOTFOUND)
			fprintf(stderr, "sagactl: is %s registered? see `sagactl describe`\n", def);
		exit(rv);
	}
}

int
ctl_cmd_start(int argc, char **argv)
{
	const char *def = NULL, *input = NULL, *input_file = NULL, *raw = NULL, *raw_file = NULL,
		   *v;
	saga_start_opts o = { 0 };
	int wait = 0;
	long long wait_ms = DEFAULT_WAIT_MS;

	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--version", &v))
			o.version = (uint32_t)ctl_parse_num("--version", v, UINT32_MAX);
		else if (ctl_match_opt(argc, argv, &i, "--input", &v))
			input = v;
		else if (ctl_match_opt(argc, argv, &i, "--input-file", &v))
			input_file = v;
		else if (ctl_match_opt(argc, argv, &i, "--input-raw", &v))
			raw = v;
		else if (ctl_match_opt(argc, argv, &i, "--input-raw-file", &v))
			raw_file = v;
		else if (ctl_match_opt(argc, argv, &i, "--key", &v))
			o.idempotency_key = v;
		else if (ctl_match_opt(argc, argv, &i, "--business-key", &v))
			o.business_key = v;
		else if (ctl_match_opt(argc, argv, &i, "--deadline", &v))
			o.deadline_ms = (uint32_t)ctl_parse_num("--deadline", v, UINT32_MAX);
		else if (ctl_match_opt(argc, argv, &i, "--traceparent", &v))
			o.traceparent = v;
		else if (ctl_match_opt(argc, argv, &i, "--wait", NULL))
			wait = 1;
		else if (ctl_match_opt(argc, argv, &i, "--wait-timeout", &v))
			wait_ms = ctl_parse_num("--wait-timeout", v, INT_MAX);
		else if (def == NULL && argv[i][0] != '-')
			def = argv[i];
		else
			ctl_unknown_arg("start", argv[i]);
	}
	if (def == NULL)
		ctl_usage_error("start: which definition? (sagactl start DEFINITION)");
	if ((input != NULL) + (input_file != NULL) + (raw != NULL) + (raw_file != NULL) > 1)
		ctl_usage_error(
		    "start: give one of --input, --input-file, --input-raw, --input-raw-file");

	uint8_t *buf = NULL, *enc = NULL;
	size_t len = 0;
	const void *payload = NULL;
	saga_client *c = ctl_connect();
	if (input_file != NULL || raw_file != NULL)
		ctl_read_file(input_file != NULL ? input_file : raw_file, &buf, &len);
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
	saga_bytes_free(enc);
	if (rv != SAGA_OK) {
		char what[512];
		snprintf(what, sizeof(what), "cannot start %s", def);
		rv = ctl_fail(c, rv, what);
		if (rv == SAGA_ENOTFOUND)
			fprintf(stderr, "sagactl: is %s registered? see `sagactl describe`\n", def);
		saga_client_free(c);
		return rv;
	}
	if (!wait) {
		if (ctl_opt_json) {
			int f = 1;
			putchar('{');
			ctl_json_kv_str(&f, "saga_id", id);
			ctl_json_key(&f, "existing");
			printf("%s}\n", existing ? "true" : "false");
		} else {
			printf("%s%s\n", id, existing ? " (existing)" : "");
		}
	} else {
		started st = { id, existing };
		if (!ctl_opt_json) {
			printf("%s%s\n\n", id, existing ? " (existing)" : "");
			fflush(stdout);
		}
		rv = wait_and_print(c, id, wait_ms, &st);
	}
	saga_string_free(id);
	saga_client_free(c);
	return rv;
}

/* Parses the one SAGA_ID argument of get/wait/cancel and their options
 * (reveal: get's --reveal, when not NULL). */
static const char *
one_id_opts(
    const char *cmd, int argc, char **argv, long long *wait_ms, const char **reason, int *reveal)
{
	const char *id = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (reveal != NULL && strcmp(argv[i], "--reveal") == 0)
			*reveal = 1;
		else if (wait_ms != NULL && ctl_match_opt(argc, argv, &i, "--wait-timeout", &v))
			*wait_ms = ctl_parse_num("--wait-timeout", v, INT_MAX);
		else if (reason != NULL && ctl_match_opt(argc, argv, &i, "--reason", &v))
			*reason = v;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			ctl_unknown_arg(cmd, argv[i]);
	}
	if (id == NULL)
		ctl_usage_error("%s: which saga? (sagactl %s SAGA_ID)", cmd, cmd);
	return id;
}

static const char *
one_id(const char *cmd, int argc, char **argv, long long *wait_ms, const char **reason)
{
	return one_id_opts(cmd, argc, argv, wait_ms, reason, NULL);
}

static int
not_found_hint(int rv)
{
	if (rv == SAGA_ENOTFOUND)
		fprintf(stderr, "sagactl: check the id with `sagactl list`\n");
	return rv;
}

/* `sagactl CMD SAGA_ID`: connects and reads the saga (sensitive fields
 * too with `get --reveal`, if sagad allows this caller). On error, reports
 * it and returns the exit status; otherwise *c and *info are the caller's. */
static int
get_info(const char *cmd, int argc, char **argv, saga_client **c, saga_info **info)
{
	int reveal = 0;
	const char *id =
	    one_id_opts(cmd, argc, argv, NULL, NULL, strcmp(cmd, "get") == 0 ? &reveal : NULL);
	*c = ctl_connect();
	int rv = reveal ? saga_client_get_revealed(*c, id, info) : saga_client_get(*c, id, info);
	if (rv == SAGA_OK && reveal && (*info)->n_redacted > 0)
		fprintf(stderr,
		    "sagactl: sagad did not reveal the sensitive fields: this caller may not "
		    "(docs/SECURITY.md)\n");
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot get saga %s", id);
		rv = not_found_hint(ctl_fail(*c, rv, what));
		saga_client_free(*c);
		*c = NULL;
	}
	return rv;
}

int
ctl_cmd_get(int argc, char **argv)
{
	saga_client *c = NULL;
	saga_info *info = NULL;
	int rv = get_info("get", argc, argv, &c, &info);
	if (rv != SAGA_OK)
		return rv;
	ctl_show_info(c, info, ctl_opt_json);
	if (ctl_opt_json)
		putchar('\n');
	saga_info_free(info);
	saga_client_free(c);
	return 0;
}

int
ctl_cmd_wait(int argc, char **argv)
{
	long long wait_ms = DEFAULT_WAIT_MS;
	const char *id = one_id("wait", argc, argv, &wait_ms, NULL);
	saga_client *c = ctl_connect();
	int rv = not_found_hint(wait_and_print(c, id, wait_ms, NULL));
	saga_client_free(c);
	return rv;
}

int
ctl_cmd_cancel(int argc, char **argv)
{
	const char *reason = NULL;
	const char *id = one_id("cancel", argc, argv, NULL, &reason);
	saga_client *c = ctl_connect();
	saga_state after = SAGA_STATE_UNKNOWN;
	int rv = saga_client_cancel(c, id, reason, &after);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot cancel saga %s", id);
		rv = not_found_hint(ctl_fail(c, rv, what));
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_json) {
		int f = 1;
		putchar('{');
		ctl_json_kv_str(&f, "saga_id", id);
		ctl_json_kv_str(&f, "state", saga_state_name(after));
		printf("}\n");
	} else {
		printf("saga %s is now %s\n", id, saga_state_name(after));
	}
	saga_client_free(c);
	return 0;
}

/* ---- watch, history ---------------------------------------------------- */

/*
 * watch: follows a saga until it is final, printing each event of its
 * history as it happens (NDJSON with --json: one event object a line, then
 * the saga). Polls: sagad keeps the first 20 and last 180 events, and
 * events are matched by time and type, so a saga that logs more than 180
 * between two polls loses lines here, not in sagad.
 */
int
ctl_cmd_watch(int argc, char **argv)
{
	const char *id = NULL, *v;
	long long interval = 500, wait_ms = 0;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--interval", &v))
			interval = ctl_parse_num("--interval", v, 60000);
		else if (ctl_match_opt(argc, argv, &i, "--wait-timeout", &v))
			wait_ms = ctl_parse_num("--wait-timeout", v, INT_MAX);
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			ctl_unknown_arg("watch", argv[i]);
	}
	if (id == NULL)
		ctl_usage_error("watch: which saga? (sagactl watch SAGA_ID)");
	if (interval < 50)
		interval = 50;
	saga_client *c = ctl_connect();
	int64_t last_at = -1, start = 0, prev = 0,
		deadline = wait_ms ? ctl_now_us() + wait_ms * 1000 : 0;
	size_t printed_at_last = 0; /* events printed with at_us == last_at */
	int first = 1, rv;
	for (;;) {
		saga_info *info = NULL;
		if ((rv = saga_client_get(c, id, &info)) != SAGA_OK) {
			char what[256];
			snprintf(what, sizeof(what), "cannot get saga %s", id);
			rv = not_found_hint(ctl_fail(c, rv, what));
			break;
		}
		if (first && !ctl_opt_json) {
			printf("saga %s (%s@%u)\n", info->saga_id, info->definition, info->version);
			ctl_print_event_head();
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
			if (ctl_opt_json) {
				ctl_json_event(e);
				putchar('\n');
			} else {
				ctl_print_event_row(e, start, prev);
			}
			prev = e->at_us;
		}
		fflush(stdout);
		if (saga_state_is_final(info->state)) {
			if (ctl_opt_json) {
				ctl_show_info(c, info, 1);
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
		if (deadline && ctl_now_us() >= deadline) {
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

int
ctl_cmd_history(int argc, char **argv)
{
	saga_client *c = NULL;
	saga_info *info = NULL;
	int rv = get_info("history", argc, argv, &c, &info);
	if (rv != SAGA_OK)
		return rv;
	if (ctl_opt_json) {
		/* The history only: `get --json` has the rest. */
		int f = 1;
		putchar('{');
		ctl_json_kv_str(&f, "saga_id", info->saga_id);
		ctl_json_kv_str(&f, "definition", info->definition);
		ctl_json_kv_int(&f, "version", info->version);
		ctl_json_kv_str(&f, "state", saga_state_name(info->state));
		ctl_json_key(&f, "events");
		putchar('[');
		for (size_t i = 0; i < info->n_events; i++) {
			if (i > 0)
				putchar(',');
			ctl_json_event(&info->events[i]);
		}
		printf("]}\n");
	} else {
		printf("saga %s (%s@%u): %s\n", info->saga_id, info->definition, info->version,
		    saga_state_name(info->state));
		ctl_print_event_head();
		int64_t start = info->n_events ? info->events[0].at_us : 0, prev = start;
		for (size_t i = 0; i < info->n_events; i++) {
			ctl_print_event_row(&info->events[i], start, prev);
			prev = info->events[i].at_us;
		}
	}
	saga_info_free(info);
	saga_client_free(c);
	return 0;
}

/* ---- retry, skip ------------------------------------------------------- */

/* retry/skip SAGA_ID STEP [--reason TEXT] */
static int
operate_cmd(const char *cmd, int argc, char **argv, int skip)
{
	const char *id = NULL, *step = NULL, *reason = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--reason", &v))
			reason = v;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else if (step == NULL && argv[i][0] != '-')
			step = argv[i];
		else
			ctl_unknown_arg(cmd, argv[i]);
	}
	if (id == NULL || step == NULL)
		ctl_usage_error("%s: which saga and step? (sagactl %s SAGA_ID STEP%s)", cmd, cmd,
		    skip ? " --reason TEXT" : "");
	if (skip && (reason == NULL || *reason == '\0'))
		ctl_usage_error(
		    "skip: say why with --reason TEXT (it goes into the saga's history)");
	saga_client *c = ctl_connect();
	saga_state after = SAGA_STATE_UNKNOWN;
	int rv = skip ? saga_client_skip_step(c, id, step, reason, &after)
		      : saga_client_retry_step(c, id, step, reason, &after);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot %s step %s of saga %s", cmd, step, id);
		rv = not_found_hint(ctl_fail(c, rv, what));
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_json) {
		int f = 1;
		putchar('{');
		ctl_json_kv_str(&f, "saga_id", id);
		ctl_json_kv_str(&f, "step", step);
		ctl_json_kv_str(&f, "state", saga_state_name(after));
		printf("}\n");
	} else {
		printf("saga %s: step %s %s; the saga is now %s\n", id, step,
		    skip ? "skipped" : "retried", saga_state_name(after));
	}
	saga_client_free(c);
	return 0;
}

int
ctl_cmd_retry(int argc, char **argv)
{
	return operate_cmd("retry", argc, argv, 0);
}

int
ctl_cmd_skip(int argc, char **argv)
{
	return operate_cmd("skip", argc, argv, 1);
}

/* ---- terminate, force, rerun ------------------------------------------- */

/* What an operator action did, as text or JSON. */
static void
print_done(const char *id, const char *step, const char *what, saga_state after)
{
	if (ctl_opt_json) {
		int f = 1;
		putchar('{');
		ctl_json_kv_str(&f, "saga_id", id);
		if (step != NULL)
			ctl_json_kv_str(&f, "step", step);
		ctl_json_kv_str(&f, "state", saga_state_name(after));
		printf("}\n");
	} else if (step != NULL) {
		printf("saga %s: step %s %s; the saga is now %s\n", id, step, what,
		    saga_state_name(after));
	} else {
		printf("saga %s %s; it is now %s\n", id, what, saga_state_name(after));
	}
}

static int
op_failed(saga_client *c, int rv, const char *what)
{
	rv = not_found_hint(ctl_fail(c, rv, what));
	saga_client_free(c);
	return rv;
}

int
ctl_cmd_terminate(int argc, char **argv)
{
	const char *id = NULL, *reason = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--reason", &v))
			reason = v;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			ctl_unknown_arg("terminate", argv[i]);
	}
	if (id == NULL)
		ctl_usage_error("terminate: which saga? (sagactl terminate SAGA_ID --reason TEXT)");
	if (reason == NULL || *reason == '\0')
		ctl_usage_error(
		    "terminate: say why with --reason TEXT (it goes into the saga's history)");
	saga_client *c = ctl_connect();
	saga_state after = SAGA_STATE_UNKNOWN;
	int rv = saga_client_terminate(c, id, reason, &after);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot terminate saga %s", id);
		return op_failed(c, rv, what);
	}
	print_done(id, NULL, "terminated (nothing compensated)", after);
	saga_client_free(c);
	return 0;
}

/* The JSON text of a forced result, encoded with the step's output type
 * (from the descriptor set the saga's definition version was registered
 * with). Exits EXIT_DATAERR if it does not fit. */
static void
encode_result(saga_client *c, const char *id, const char *step, const char *json, size_t len,
    uint8_t **out, size_t *outlen)
{
	saga_info *info = NULL;
	int rv = saga_client_get(c, id, &info);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot read saga %s", id);
		exit(not_found_hint(ctl_fail(c, rv, what)));
	}
	schema sc;
	char err[600];
	if ((rv = ctl_schema_load(c, info->definition, info->version, &sc)) != SAGA_OK) {
		char what[600];
		snprintf(what, sizeof(what), "cannot read the types of %s@%u", info->definition,
		    info->version);
		exit(ctl_fail(c, rv, what));
	}
	const char *type = sc.pb != NULL && sc.d != NULL ? ctl_step_output_type(&sc, step) : "";
	if (*type == '\0') {
		fprintf(stderr,
		    "sagactl: cannot encode the result of step %s of %s@%u: %s\n"
		    "sagactl: give the serialized bytes with --result-raw or --result-raw-file\n",
		    step, info->definition, info->version,
		    sc.pb == NULL ? sc.why : "no such step, or it has no result type");
		exit(EXIT_DATAERR);
	}
	if (pbjson_from_json(sc.pb, type, json, len, out, outlen, err, sizeof(err)) != 0) {
		fprintf(stderr,
		    "sagactl: the result is not a valid %s: %s\n"
		    "sagactl: `sagactl describe %s` shows the step's result type\n",
		    type, err, info->definition);
		exit(EXIT_DATAERR);
	}
	ctl_schema_free(&sc);
	saga_info_free(info);
}

int
ctl_cmd_force(int argc, char **argv)
{
	const char *id = NULL, *step = NULL, *outcome = NULL, *reason = NULL, *v;
	const char *json = NULL, *json_file = NULL, *raw = NULL, *raw_file = NULL;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--reason", &v))
			reason = v;
		else if (ctl_match_opt(argc, argv, &i, "--result", &v))
			json = v;
		else if (ctl_match_opt(argc, argv, &i, "--result-file", &v))
			json_file = v;
		else if (ctl_match_opt(argc, argv, &i, "--result-raw", &v))
			raw = v;
		else if (ctl_match_opt(argc, argv, &i, "--result-raw-file", &v))
			raw_file = v;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else if (step == NULL && argv[i][0] != '-')
			step = argv[i];
		else if (outcome == NULL && argv[i][0] != '-')
			outcome = argv[i];
		else
			ctl_unknown_arg("force", argv[i]);
	}
	if (id == NULL || step == NULL || outcome == NULL)
		ctl_usage_error("force: which saga, step and outcome? (sagactl force SAGA_ID STEP "
				"succeeded|compensated --reason TEXT)");
	int compensated = strcmp(outcome, "compensated") == 0;
	if (!compensated && strcmp(outcome, "succeeded") != 0)
		ctl_usage_error(
		    "force: the outcome is succeeded or compensated, not '%s'", outcome);
	int n_results = (json != NULL) + (json_file != NULL) + (raw != NULL) + (raw_file != NULL);
	if (n_results > 1)
		ctl_usage_error("force: give one of --result, --result-file, --result-raw, "
				"--result-raw-file");
	if (compensated && n_results > 0)
		ctl_usage_error("force: a compensation has no result (only succeeded takes one)");
	if (reason == NULL || *reason == '\0')
		ctl_usage_error(
		    "force: say why with --reason TEXT (it goes into the saga's history)");
	saga_client *c = ctl_connect();
	saga_state after = SAGA_STATE_UNKNOWN;
	int rv;
	if (compensated) {
		rv = saga_client_force_compensated(c, id, step, reason, &after);
	} else {
		uint8_t *buf = NULL, *enc = NULL;
		size_t len = 0;
		const void *payload = NULL;
		if (json_file != NULL || raw_file != NULL)
			ctl_read_file(json_file != NULL ? json_file : raw_file, &buf, &len);
		if (json != NULL || json_file != NULL) {
			const char *text = json != NULL ? json : (const char *)buf;
			encode_result(
			    c, id, step, text, json != NULL ? strlen(json) : len, &enc, &len);
			payload = enc;
		} else if (raw != NULL) {
			payload = raw;
			len = strlen(raw);
		} else {
			payload = buf;
		}
		rv = saga_client_force_succeeded(c, id, step, payload, len, reason, &after);
		free(buf);
		free(enc);
	}
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(
		    what, sizeof(what), "cannot force step %s of saga %s %s", step, id, outcome);
		return op_failed(c, rv, what);
	}
	print_done(id, step, compensated ? "forced compensated" : "forced succeeded", after);
	saga_client_free(c);
	return 0;
}

int
ctl_cmd_rerun(int argc, char **argv)
{
	const char *id = NULL, *key = NULL, *v;
	int latest = 0;
	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--key", &v))
			key = v;
		else if (ctl_match_opt(argc, argv, &i, "--latest", NULL))
			latest = 1;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			ctl_unknown_arg("rerun", argv[i]);
	}
	if (id == NULL)
		ctl_usage_error(
		    "rerun: which saga? (sagactl rerun SAGA_ID [--key KEY] [--latest])");
	saga_client *c = ctl_connect();
	char *new_id = NULL;
	int rv = saga_client_rerun(c, id, key, latest, &new_id);
	if (rv != SAGA_OK) {
		char what[256];
		snprintf(what, sizeof(what), "cannot rerun saga %s", id);
		return op_failed(c, rv, what);
	}
	if (ctl_opt_json) {
		int f = 1;
		putchar('{');
		ctl_json_kv_str(&f, "saga_id", new_id);
		ctl_json_kv_str(&f, "rerun_of", id);
		printf("}\n");
	} else {
		printf("%s\n", new_id);
	}
	saga_string_free(new_id);
	saga_client_free(c);
	return 0;
}

/* ---- participants ------------------------------------------------------ */

int
ctl_cmd_participants(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!ctl_match_global(argc, argv, &i))
			ctl_unknown_arg("participants", argv[i]);
	saga_client *c = ctl_connect();
	saga_participant_list *l = NULL;
	int rv = saga_client_participants(c, &l);
	if (rv != SAGA_OK) {
		rv = ctl_fail(c, rv, "cannot list participants");
		saga_client_free(c);
		return rv;
	}
	char tb[64];
	if (ctl_opt_json) {
		printf("[");
		for (size_t i = 0; i < l->count; i++) {
			const saga_participant *p = &l->participants[i];
			int f = 1;
			printf("%s{", i ? "," : "");
			ctl_json_kv_str(&f, "name", p->name);
			ctl_json_kv_int(&f, "connections", p->connections);
			ctl_json_kv_int(&f, "capacity", p->capacity);
			ctl_json_kv_int(&f, "in_flight", p->in_flight);
			ctl_json_kv_int(&f, "queued", p->queued);
			ctl_json_kv_str(&f, "breaker", p->breaker);
			ctl_json_kv_int(&f, "breaker_open_until_us", p->breaker_open_until_us);
			ctl_json_kv_int(&f, "breaker_opened", p->breaker_opened);
			ctl_json_kv_int(&f, "window_attempts", p->window_attempts);
			ctl_json_kv_int(&f, "window_failures", p->window_failures);
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
				    ctl_local_time(p->breaker_open_until_us, tb, sizeof(tb)));
			printf("\n");
		}
	}
	saga_participant_list_free(l);
	saga_client_free(c);
	return 0;
}

/* ---- list -------------------------------------------------------------- */

#define MAX_STATES 16
#define MAX_PAGES  100000

/* The list filters list and batch share: matches argv[*i] (and its value)
 * into f and states[MAX_STATES]; cmd names the command in errors. */
static int
match_filter_opt(
    const char *cmd, int argc, char **argv, int *i, saga_list_filter *f, saga_state *states)
{
	const char *v;
	if (ctl_match_opt(argc, argv, i, "--state", &v)) {
		saga_state s = saga_state_parse(v);
		if (s == SAGA_STATE_UNKNOWN)
			ctl_usage_error("%s: '%s' is not a saga state (running, compensating, "
					"completed, compensated, failed, terminated)",
			    cmd, v);
		if (f->n_states == MAX_STATES)
			ctl_usage_error("%s: too many --state options", cmd);
		states[f->n_states++] = s;
	} else if (ctl_match_opt(argc, argv, i, "--definition", &v)) {
		f->definition = v;
	} else if (ctl_match_opt(argc, argv, i, "--business-key", &v)) {
		f->business_key = v;
	} else if (ctl_match_opt(argc, argv, i, "--since", &v)) {
		f->created_after_us = ctl_parse_time("--since", v);
	} else if (ctl_match_opt(argc, argv, i, "--until", &v)) {
		f->created_before_us = ctl_parse_time("--until", v);
	} else if (ctl_match_opt(argc, argv, i, "--version", &v)) {
		f->version = (uint32_t)ctl_parse_num("--version", v, UINT32_MAX);
	} else if (ctl_match_opt(argc, argv, i, "--page", &v)) {
		f->page_token = v;
	} else {
		return 0;
	}
	return 1;
}

int
ctl_cmd_list(int argc, char **argv)
{
	saga_state states[MAX_STATES];
	saga_list_filter f = { 0 };
	const char *v;
	int all = 0;

	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i) ||
		    match_filter_opt("list", argc, argv, &i, &f, states))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--limit", &v)) {
			f.limit = (uint32_t)ctl_parse_range("list: --limit", v, 1, 1000);
		} else if (ctl_match_opt(argc, argv, &i, "--all", NULL)) {
			all = 1;
		} else if (ctl_match_opt(argc, argv, &i, "--counts", NULL)) {
			f.counts = 1;
		} else {
			ctl_unknown_arg("list", argv[i]);
		}
	}
	f.states = states;
	if (f.version != 0 && f.definition == NULL)
		ctl_usage_error("list: --version needs --definition");
	uint64_t counts[7] = { 0 };
	int have_counts = 0;

	saga_client *c = ctl_connect();
	table t = { .cols = 6 };
	char *token = NULL;
	size_t total = 0;
	int rv = SAGA_OK, opened = 0;

	if (!ctl_opt_json) {
		char *head[] = { ctl_cellf("ID"), ctl_cellf("DEFINITION"), ctl_cellf("STATE"),
			ctl_cellf("STEPS"), ctl_cellf("CREATED"), ctl_cellf("BUSINESS KEY") };
		ctl_table_add(&t, head);
	}
	for (int page = 0; page < MAX_PAGES; page++) {
		saga_list *l = NULL;
		if ((rv = saga_client_list(c, &f, &l)) != SAGA_OK)
			break;
		/* Opened once the first page is in: a failed list prints no
		 * JSON that reads as "no sagas". */
		if (ctl_opt_json && !ctl_opt_jsonl && page == 0) {
			printf("{\"sagas\":[");
			opened = 1;
		}
		if (l->has_counts && !have_counts) {
			memcpy(counts, l->state_counts, sizeof(counts));
			have_counts = 1;
		}
		f.counts = 0; /* once is enough when following pages */
		for (size_t i = 0; i < l->count; i++, total++) {
			const saga_summary *s = &l->sagas[i];
			if (ctl_opt_jsonl) { /* one saga per line, as it comes */
				ctl_json_summary(s);
				putchar('\n');
				continue;
			}
			if (ctl_opt_json) {
				if (total > 0)
					putchar(',');
				ctl_json_summary(s);
				continue;
			}
			char tb[64];
			char *row[] = { ctl_cell(s->saga_id, 64, NULL),
				ctl_cellf("%.150s@%" PRIu32, s->definition, s->version),
				ctl_state_cell(saga_state_name(s->state), NULL),
				ctl_cellf("%" PRIu32 "/%" PRIu32, s->steps_done, s->steps_total),
				ctl_cellf("%s", ctl_local_time(s->created_us, tb, sizeof(tb))),
				ctl_cell(*s->business_key ? s->business_key : "-", 64, NULL) };
			ctl_table_add(&t, row);
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
		if (opened)
			printf("]}\n"); /* what was listed before the failure */
		if (!ctl_opt_json && total > 0)
			ctl_table_print(&t);
		else
			ctl_table_free(&t);
		rv = ctl_fail(c, rv, "cannot list sagas");
		free(token);
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_jsonl) {
		/* After the sagas, what is not a saga: counts, the next page. */
		if (have_counts) {
			int g = 1;
			printf("{\"counts\":{");
			for (int k = SAGA_STATE_RUNNING; k <= SAGA_STATE_TERMINATED; k++)
				ctl_json_kv_int(
				    &g, saga_state_name((saga_state)k), (int64_t)counts[k]);
			printf("}}\n");
		}
		if (token != NULL && *token != '\0') {
			printf("{\"next_page_token\":");
			ctl_json_str(token);
			printf("}\n");
		}
	} else if (ctl_opt_json) {
		printf("],\"next_page_token\":");
		ctl_json_str(token != NULL ? token : "");
		if (have_counts) {
			int g = 1;
			printf(",\"counts\":{");
			for (int k = SAGA_STATE_RUNNING; k <= SAGA_STATE_TERMINATED; k++)
				ctl_json_kv_int(
				    &g, saga_state_name((saga_state)k), (int64_t)counts[k]);
			putchar('}');
		}
		printf("}\n");
	} else {
		if (have_counts) {
			for (int k = SAGA_STATE_RUNNING; k <= SAGA_STATE_TERMINATED; k++)
				printf("%s%s %" PRIu64, k > SAGA_STATE_RUNNING ? ", " : "",
				    saga_state_name((saga_state)k), counts[k]);
			printf("\n\n");
		}
		ctl_table_print(&t);
		if (total == 0)
			printf("(no sagas)\n");
		if (token != NULL && *token != '\0') {
			/* The same command, filters and all, for the next page. */
			printf("\nmore: sagactl");
			for (int i = 1; i < ctl_argc; i++) {
				if (strcmp(ctl_argv[i], "--page") == 0 && i + 1 < ctl_argc) {
					i++;
					continue;
				}
				if (strncmp(ctl_argv[i], "--page=", 7) == 0)
					continue;
				putchar(' ');
				ctl_print_shell_word(ctl_argv[i]);
			}
			printf(" --page %s (or --all)\n", token);
		}
	}
	free(token);
	saga_client_free(c);
	return 0;
}

/* ---- batch ---------------------------------------------------------------- */

int
ctl_cmd_batch(int argc, char **argv)
{
	saga_state states[MAX_STATES];
	saga_list_filter f = { 0 };
	saga_batch_opts o = { .struct_size = sizeof(o) };
	const char *v, *action = NULL;
	int all = 0;

	for (int i = 1; i < argc; i++) {
		if (ctl_match_global(argc, argv, &i) ||
		    match_filter_opt("batch", argc, argv, &i, &f, states))
			continue;
		if (ctl_match_opt(argc, argv, &i, "--limit", &v)) {
			f.limit = (uint32_t)ctl_parse_range("batch: --limit", v, 1, 100);
		} else if (ctl_match_opt(argc, argv, &i, "--all", NULL)) {
			all = 1;
		} else if (ctl_match_opt(argc, argv, &i, "--step", &v)) {
			o.step = v;
		} else if (ctl_match_opt(argc, argv, &i, "--reason", &v)) {
			o.reason = v;
		} else if (ctl_match_opt(argc, argv, &i, "--dry-run", NULL)) {
			o.dry_run = 1;
		} else if (ctl_match_opt(argc, argv, &i, "--latest", NULL)) {
			o.latest_version = 1;
		} else if (ctl_match_opt(argc, argv, &i, "--key", &v)) {
			o.idempotency_key = v;
		} else if (action == NULL && argv[i][0] != '-') {
			action = argv[i];
		} else {
			ctl_unknown_arg("batch", argv[i]);
		}
	}
	if (action == NULL)
		ctl_usage_error("batch: which action? (sagactl batch cancel|terminate|retry|rerun "
				"[filters])");
	if (strcmp(action, "cancel") == 0)
		o.action = SAGA_BATCH_CANCEL;
	else if (strcmp(action, "terminate") == 0)
		o.action = SAGA_BATCH_TERMINATE;
	else if (strcmp(action, "retry") == 0)
		o.action = SAGA_BATCH_RETRY;
	else if (strcmp(action, "rerun") == 0)
		o.action = SAGA_BATCH_RERUN;
	else
		ctl_usage_error(
		    "batch: '%s' is not an action (cancel, terminate, retry, rerun)", action);
	if (o.action == SAGA_BATCH_RETRY && o.step == NULL)
		ctl_usage_error("batch retry: which step? (--step STEP)");
	if (o.action == SAGA_BATCH_TERMINATE && !o.dry_run && (o.reason == NULL || !*o.reason))
		ctl_usage_error("batch terminate: say why with --reason TEXT (it goes into each "
				"saga's history)");
	if (f.version != 0 && f.definition == NULL)
		ctl_usage_error("batch: --version needs --definition");
	f.states = states;

	saga_client *c = ctl_connect();
	table t = { .cols = 3 };
	if (!ctl_opt_json) {
		char *head[] = { ctl_cellf("ID"), ctl_cellf("OUTCOME"), ctl_cellf("DETAIL") };
		ctl_table_add(&t, head);
	}
	char *token = NULL;
	uint64_t done = 0, skipped = 0, applicable = 0;
	int rv = SAGA_OK, first = 1;
	if (ctl_opt_json)
		printf("{\"items\":[");
	for (int page = 0; page < MAX_PAGES; page++) {
		saga_batch_result *r = NULL;
		if ((rv = saga_client_batch(c, &f, &o, &r)) != SAGA_OK)
			break;
		done += r->done;
		skipped += r->skipped;
		if (page == 0)
			applicable = r->applicable;
		for (size_t i = 0; i < r->count; i++) {
			const saga_batch_item *x = &r->items[i];
			if (ctl_opt_json) {
				int g = 1;
				if (!first)
					putchar(',');
				first = 0;
				putchar('{');
				ctl_json_kv_str(&g, "saga_id", x->saga_id);
				ctl_json_kv_str(&g, "outcome",
				    x->done ? (o.dry_run ? "would" : "done") : "skipped");
				if (x->done) {
					ctl_json_kv_str(&g, "state", saga_state_name(x->state));
					if (*x->new_saga_id)
						ctl_json_kv_str(&g, "new_saga_id", x->new_saga_id);
				} else {
					ctl_json_kv_int(&g, "code", x->code);
					ctl_json_kv_str(&g, "why", x->why);
				}
				putchar('}');
			} else {
				char *row[3] = { ctl_cellf("%s", x->saga_id),
					ctl_cellf("%s",
					    x->done ? (o.dry_run ? "would" : "done") : "skipped"),
					x->done
					    ? (*x->new_saga_id
						      ? ctl_cellf("rerun as %s", x->new_saga_id)
						      : ctl_cellf("%s", saga_state_name(x->state)))
					    : ctl_cellf("%s", x->why) };
				ctl_table_add(&t, row);
			}
		}
		free(token);
		token = strdup(r->next_page_token);
		saga_batch_result_free(r);
		if (token == NULL)
			exit(SAGA_ENOMEM);
		if (!all || *token == '\0')
			break;
		f.page_token = token;
	}
	if (rv != SAGA_OK) {
		if (ctl_opt_json)
			printf("]}\n");
		ctl_table_free(&t);
		free(token);
		rv = ctl_fail(c, rv, "batch failed");
		saga_client_free(c);
		return rv;
	}
	if (ctl_opt_json) {
		int g = 0;
		printf("]");
		ctl_json_kv_int(&g, "done", (int64_t)done);
		ctl_json_kv_int(&g, "skipped", (int64_t)skipped);
		if (o.dry_run)
			ctl_json_kv_int(&g, "applicable", (int64_t)applicable);
		ctl_json_kv_str(&g, "next_page_token", token ? token : "");
		printf("}\n");
	} else {
		ctl_table_print(&t);
		printf("\n%s %" PRIu64 ", skipped %" PRIu64 "\n", o.dry_run ? "would try" : "done",
		    done, skipped);
		if (o.dry_run)
			printf("%" PRIu64 " matching sagas in all are in a state %s applies to\n",
			    applicable, action);
		if (token != NULL && *token != '\0')
			printf("more: the same command with --page %s (or --all)\n", token);
	}
	free(token);
	saga_client_free(c);
	return 0;
}
