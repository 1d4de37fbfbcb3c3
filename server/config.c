/* config: the settings table and its parser. See config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "saga.h"

enum opt_type { OPT_STR, OPT_U32 };

typedef int (*opt_check)(const char *v);

/*
 * One row per setting. The flag is the field name with '_' -> '-'
 * (--max-message-bytes); env is spelled out so that grep finds it.
 * Every number has a range: a value from the command line or the
 * environment is refused, not clamped, when it is outside.
 */
typedef struct opt {
	const char *name;
	const char *env;
	enum opt_type type;
	size_t off;
	const char *def;
	uint32_t min, max;
	opt_check check; /* extra validation of a string; NULL = any */
	const char *metavar;
	const char *help;
} opt;

static int
check_level(const char *v)
{
	return slog_parse_level(v) >= 0;
}

static int
check_format(const char *v)
{
	return slog_parse_format(v) >= 0;
}

static int
check_nonempty(const char *v)
{
	return v[0] != '\0';
}

#define S(field, env, def, chk, meta, help)                                            \
	{                                                                              \
#field, env, OPT_STR, offsetof(cfg, field), def, 0, 0, chk, meta, help \
	}
#define U(field, env, def, lo, hi, help)                                                  \
	{                                                                                 \
#field, env, OPT_U32, offsetof(cfg, field), #def, lo, hi, NULL, "N", help \
	}

static const opt opts[] = {
	S(db, "SAGAD_DB", "", NULL, "CONNINFO",
	    "PostgreSQL conninfo (e.g. \"host=db dbname=saga\"); empty = run a private cluster in "
	    "--data-dir"),
	S(data_dir, "SAGAD_DATA_DIR", "./sagad-data", check_nonempty, "DIR",
	    "directory for sagad's own files; the embedded PostgreSQL lives in DIR/pg"),
	S(listen, "SAGAD_LISTEN", SAGA_DEFAULT_URL, check_nonempty, "URLS",
	    "comma-separated nng URLs to listen on (tcp://, tls+tcp://, ipc://)"),
	S(log_level, "SAGAD_LOG_LEVEL", "info", check_level, "LEVEL", "error, warn, info or debug"),
	S(log_format, "SAGAD_LOG_FORMAT", "logfmt", check_format, "FORMAT", "logfmt or json"),
	S(pg_bindir, "SAGAD_PG_BINDIR", "", NULL, "DIR",
	    "directory holding initdb and pg_ctl for the embedded PostgreSQL; empty = search"),
	S(pg_user, "SAGAD_PG_USER", "postgres", check_nonempty, "USER",
	    "OS user that runs the embedded PostgreSQL when sagad runs as root"),
	U(max_message_bytes, "SAGAD_MAX_MESSAGE_BYTES", 1048576, 1024, 268435456,
	    "largest message accepted from the network, in bytes"),
	U(max_connections, "SAGAD_MAX_CONNECTIONS", 1024, 1, 1000000,
	    "network connections accepted at once"),
	U(max_pending, "SAGAD_MAX_PENDING", 65536, 16, 10000000,
	    "requests held at once (waiting polls, RPCs awaiting a commit)"),
	U(max_batch, "SAGAD_MAX_BATCH", 2000, 1, 100000,
	    "saga transitions written in one PostgreSQL transaction"),
	U(dispatch_batch, "SAGAD_DISPATCH_BATCH", 64, 1, 4096,
	    "steps sent to a participant in one message"),
	U(poll_timeout_ms, "SAGAD_POLL_TIMEOUT_MS", 20000, 100, 600000,
	    "a participant's poll is answered empty after this many idle milliseconds"),
	U(max_capacity, "SAGAD_MAX_CAPACITY", 4096, 1, 65536,
	    "cap on the capacity (steps at once) a connection may declare"),
	U(readers, "SAGAD_READERS", 2, 1, 64,
	    "threads (each with its own database connection) serving get and list"),
	S(http_listen, "SAGAD_HTTP_LISTEN", "", NULL, "URL",
	    "http://HOST:PORT to serve /healthz, /readyz and /metrics on; empty = off"),
	S(failpoints, "SAGAD_FAILPOINTS", "", NULL, "SPEC",
	    "for fault tests only: faults sagad injects into itself, e.g. after-commit:3 "
	    "(server/failpoint.h); empty = none"),
	U(breaker_window_ms, "SAGAD_BREAKER_WINDOW_MS", 10000, 100, 3600000,
	    "circuit breaker: window in which a participant's failed attempts are counted"),
	U(breaker_min_calls, "SAGAD_BREAKER_MIN_CALLS", 20, 1, 1000000,
	    "circuit breaker: attempts ended in a window before it may open"),
	U(breaker_failure_pct, "SAGAD_BREAKER_FAILURE_PCT", 50, 0, 100,
	    "circuit breaker: share of retryable errors and timeouts that opens it (0 = off)"),
	U(breaker_cooloff_ms, "SAGAD_BREAKER_COOLOFF_MS", 5000, 10, 3600000,
	    "circuit breaker: how long dispatching to the participant stops before a probe"),
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const commands[] = { "run", "migrate", "help", "version" };

static char **
str_field(cfg *c, const opt *o)
{
	return (char **)(void *)((char *)c + o->off);
}

static uint32_t *
u32_field(cfg *c, const opt *o)
{
	return (uint32_t *)(void *)((char *)c + o->off);
}

static void
flag_name(const opt *o, char *buf, size_t len)
{
	size_t i;
	for (i = 0; o->name[i] != '\0' && i + 1 < len; i++)
		buf[i] = o->name[i] == '_' ? '-' : o->name[i];
	buf[i] = '\0';
}

static __attribute__((format(printf, 3, 4))) void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Digits only: no sign, no spaces, no hex, so "-1" or "1e3" is refused
 * instead of turning into a surprising number. */
static int
parse_u32(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			v = (uint64_t)UINT32_MAX + 1; /* stays out of range, no overflow */
	}
	*out = v;
	return 0;
}

/* Sets o from text v; `src` names where v came from (a flag or an env
 * variable) for the error message. */
static int
set_value(cfg *c, const opt *o, const char *v, const char *src, char *err, size_t errlen)
{
	if (o->type == OPT_U32) {
		uint64_t n;
		if (parse_u32(v, &n) != 0) {
			seterr(err, errlen, "%s: \"%s\" is not a number", src, v);
			return SAGA_EINVAL;
		}
		if (n < o->min || n > o->max) {
			seterr(err, errlen, "%s: %s is out of range (%u..%u)", src, v,
			    (unsigned)o->min, (unsigned)o->max);
			return SAGA_EINVAL;
		}
		*u32_field(c, o) = (uint32_t)n;
		return 0;
	}
	if (o->check != NULL && !o->check(v)) {
		if (o->check == check_level)
			seterr(err, errlen, "%s: \"%s\" is not one of error, warn, info, debug",
			    src, v);
		else if (o->check == check_format)
			seterr(err, errlen, "%s: \"%s\" is not one of logfmt, json", src, v);
		else
			seterr(err, errlen, "%s must not be empty", src);
		return SAGA_EINVAL;
	}
	char *dup = strdup(v);
	if (dup == NULL) {
		seterr(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	free(*str_field(c, o));
	*str_field(c, o) = dup;
	return 0;
}

static int
set_command(cfg *c, const char *v, char *err, size_t errlen)
{
	char *dup;
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(v, commands[i]) == 0)
			break;
	if (i == sizeof(commands) / sizeof(commands[0])) {
		seterr(err, errlen,
		    "unknown command \"%s\"; commands: run, migrate, help, version "
		    "(see sagad --help)",
		    v);
		return SAGA_EINVAL;
	}
	if ((dup = strdup(v)) == NULL) {
		seterr(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	free(c->command);
	c->command = dup;
	return 0;
}

static const opt *
find_flag(const char *name, size_t len)
{
	char fl[64];
	for (size_t i = 0; i < N_OPTS; i++) {
		flag_name(&opts[i], fl, sizeof(fl));
		if (strlen(fl) == len && strncmp(fl, name, len) == 0)
			return &opts[i];
	}
	return NULL;
}

/*
 * The first error wins and is kept in err, but parsing goes on: `help` and
 * `version` must work even with a bad SAGAD_* variable in the environment,
 * so they are decided only at the end.
 */
int
cfg_parse(cfg *c, int argc, char **argv, char *err, size_t errlen)
{
	int rv = 0, r, positional_only = 0, have_command = 0;
	char src[96];

	memset(c, 0, sizeof(*c));
	if (err != NULL && errlen > 0)
		err[0] = '\0';

#define KEEP(expr)                                   \
	do {                                         \
		int keep_ = (expr);                  \
		if (keep_ != 0 && rv == 0) {         \
			rv = keep_;                  \
			err = NULL; /* keep first */ \
		}                                    \
	} while (0)

	/* Defaults cannot fail validation, but allocation can. */
	if ((r = set_command(c, "run", err, errlen)) != 0)
		goto fail;
	for (size_t i = 0; i < N_OPTS; i++) {
		if ((r = set_value(c, &opts[i], opts[i].def, opts[i].name, err, errlen)) != 0)
			goto fail;
	}

	for (size_t i = 0; i < N_OPTS; i++) {
		const char *v = getenv(opts[i].env);
		if (v != NULL)
			KEEP(set_value(c, &opts[i], v, opts[i].env, err, errlen));
	}

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!positional_only && strcmp(a, "--") == 0) {
			positional_only = 1;
			continue;
		}
		if (!positional_only && a[0] == '-') {
			const char *name = a + 2, *eq, *val;
			const opt *o;
			size_t nlen;

			if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
				KEEP(set_command(c, "help", err, errlen));
				have_command = 1;
				continue;
			}
			if (strcmp(a, "--version") == 0) {
				KEEP(set_command(c, "version", err, errlen));
				have_command = 1;
				continue;
			}
			eq = strchr(name, '=');
			nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
			if (a[1] != '-' || (o = find_flag(name, nlen)) == NULL) {
				int shown = eq != NULL ? (int)(eq - a) : (int)strlen(a);
				seterr(
				    err, errlen, "unknown flag %.*s (see sagad --help)", shown, a);
				KEEP(SAGA_EINVAL);
				continue;
			}
			snprintf(src, sizeof(src), "--%.*s", (int)nlen, name);
			if (eq != NULL) {
				val = eq + 1;
			} else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
				val = argv[++i];
			} else {
				seterr(
				    err, errlen, "%s needs a value (%s=%s)", src, src, o->metavar);
				KEEP(SAGA_EINVAL);
				continue;
			}
			KEEP(set_value(c, o, val, src, err, errlen));
			continue;
		}
		if (have_command) {
			/* `sagad run --help` is help; two commands is a mistake. */
			if (strcmp(c->command, "help") != 0 && strcmp(c->command, "version") != 0) {
				seterr(err, errlen,
				    "unexpected argument \"%s\" after command \"%s\" "
				    "(see sagad --help)",
				    a, c->command);
				KEEP(SAGA_EINVAL);
			}
			continue;
		}
		have_command = 1;
		KEEP(set_command(c, a, err, errlen));
	}
#undef KEEP

	if (strcmp(c->command, "help") == 0 || strcmp(c->command, "version") == 0)
		return 0;
	if (rv != 0) {
		cfg_free(c);
		return rv;
	}
	return 0;

fail:
	cfg_free(c);
	return r;
}

void
cfg_free(cfg *c)
{
	if (c == NULL)
		return;
	free(c->command);
	c->command = NULL;
	for (size_t i = 0; i < N_OPTS; i++) {
		if (opts[i].type == OPT_STR) {
			free(*str_field(c, &opts[i]));
			*str_field(c, &opts[i]) = NULL;
		}
	}
}

void
cfg_usage(FILE *out)
{
	char fl[64];

	fprintf(out,
	    "usage: sagad [command] [--setting=value | --setting value]...\n"
	    "\n"
	    "commands:\n"
	    "  run       run the orchestrator (the default)\n"
	    "  migrate   apply pending database schema migrations, then exit\n"
	    "  help      show this help (also -h, --help)\n"
	    "  version   print the version, then exit (also --version)\n"
	    "\n"
	    "settings: a flag overrides the environment variable, which overrides the default\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		const opt *o = &opts[i];
		flag_name(o, fl, sizeof(fl));
		fprintf(out, "\n  --%s=%s\n      env %s, default \"%s\"", fl, o->metavar, o->env,
		    o->def);
		if (o->type == OPT_U32)
			fprintf(out, ", range %u..%u", (unsigned)o->min, (unsigned)o->max);
		fprintf(out, "\n      %s\n", o->help);
	}
}
