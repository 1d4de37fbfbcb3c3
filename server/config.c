/* config: the settings table and its parser. See config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "otel.h"
#include "saga_base.h"

enum opt_type { OPT_STR, OPT_U32, OPT_BOOL };

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
check_client_auth(const char *v)
{
	return v[0] == '\0' || strcmp(v, "none") == 0 || strcmp(v, "optional") == 0 ||
	    strcmp(v, "required") == 0;
}

static int
check_auth(const char *v)
{
	return strcmp(v, "on") == 0 || strcmp(v, "off") == 0;
}

static int
check_otlp_endpoint(const char *v)
{
	otel_endpoint ep;
	char err[8];
	return v[0] == '\0' || otel_parse_endpoint(v, &ep, err, sizeof(err)) == 0;
}

static int
check_otlp_headers(const char *v)
{
	char *h = NULL, err[8];
	int ok = otel_parse_headers(v, &h, err, sizeof(err)) == 0;
	free(h);
	return ok;
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
#define B(field, env, def, help)                                                           \
	{                                                                                  \
#field, env, OPT_BOOL, offsetof(cfg, field), def, 0, 1, NULL, "BOOL", help \
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
	S(log_format, "SAGAD_LOG_FORMAT", "json", check_format, "FORMAT",
	    "json (one object per line, for log pipelines) or logfmt (easier to read by eye)"),
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
	U(max_saga_memory_mb, "SAGAD_MAX_SAGA_MEMORY_MB", 512, 1, 1048576,
	    "inputs of unfinished sagas held in memory, in MiB; past it new starts are refused "
	    "(SAGA_EBUSY) until sagas finish"),
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
	    "http://HOST:PORT (or https:// with tls-cert and tls-key) to serve /healthz, /readyz, "
	    "/metrics, the web UI (/ui/) and its JSON API (/api/v1/) on; with auth off, the UI and "
	    "API only on loopback unless --insecure (docs/HTTP-API.md); empty = off"),
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
	U(shutdown_grace_ms, "SAGAD_SHUTDOWN_GRACE_MS", 10000, 0, 600000,
	    "on SIGTERM: how long to wait for the outcomes of steps already dispatched "
	    "(new sagas are refused meanwhile)"),
	S(instance_id, "SAGAD_INSTANCE_ID", "", NULL, "ID",
	    "this sagad's name among several sharing one database (its shards are leased under "
	    "it); empty = HOST/LISTEN-URLS; must differ between instances and stay the same "
	    "across restarts of one"),
	U(lease_ms, "SAGAD_LEASE_MS", 8000, 1000, 600000,
	    "shard lease: renewed every quarter of it; the shards of an instance that stops "
	    "renewing are taken over after it"),
	S(tls_cert, "SAGAD_TLS_CERT", "", NULL, "FILE",
	    "PEM certificate (with its chain) that sagad shows on every tls+tcp:// listen URL; "
	    "SIGHUP reads it again"),
	S(tls_key, "SAGAD_TLS_KEY", "", NULL, "FILE",
	    "PEM private key of tls-cert (unencrypted; keep it mode 0600); SIGHUP reads it again"),
	S(tls_ca, "SAGAD_TLS_CA", "", NULL, "FILE",
	    "PEM certificates of the CAs that sign client certificates (mutual TLS); SIGHUP "
	    "reads it again; empty = none"),
	S(tls_client_auth, "SAGAD_TLS_CLIENT_AUTH", "", check_client_auth, "MODE",
	    "client certificates on tls+tcp://: none, optional (checked if shown) or required "
	    "(mutual TLS); empty = required when tls-ca is set, else none"),
	S(auth, "SAGAD_AUTH", "off", check_auth, "MODE",
	    "on: every request needs a credential whose role allows it (docs/SECURITY.md); off: "
	    "anyone who reaches a listen URL may do anything, so only loopback and ipc:// URLs "
	    "are accepted unless --insecure"),
	B(insecure, "SAGAD_INSECURE", "false",
	    "with auth off, listen on non-loopback addresses anyway (for labs: anyone on the "
	    "network may then start, read, cancel and report)"),
	S(bootstrap_credential_file, "SAGAD_BOOTSTRAP_CREDENTIAL_FILE", "", NULL, "FILE",
	    "with auth on and no active admin: where the credential of the `bootstrap` admin "
	    "sagad creates is written (mode 0600); empty = DATA-DIR/bootstrap-admin.credential"),
	U(participant_series_ttl_ms, "SAGAD_PARTICIPANT_SERIES_TTL_MS", 600000, 1000, 604800000,
	    "a participant with no connection and no step waiting for it is forgotten after "
	    "this many milliseconds: its /metrics series and its line in `sagactl "
	    "participants` go (they come back when it connects)"),
	S(otlp_endpoint, "SAGAD_OTLP_ENDPOINT", "", check_otlp_endpoint, "URL",
	    "OpenTelemetry: http://HOST[:PORT][/PATH] of an OTLP/HTTP collector to send spans "
	    "to (port 4318 and /v1/traces when left out; docs/TRACING.md); empty = no spans"),
	S(otlp_service_name, "SAGAD_OTLP_SERVICE_NAME", "sagad", check_nonempty, "NAME",
	    "OpenTelemetry: the service.name of the spans sagad exports"),
	S(otlp_headers, "SAGAD_OTLP_HEADERS", "", check_otlp_headers, "LIST",
	    "OpenTelemetry: extra HTTP headers of every export request, as "
	    "name=value,name=value (e.g. an API key the collector wants); empty = none"),
	U(otlp_timeout_ms, "SAGAD_OTLP_TIMEOUT_MS", 5000, 100, 60000,
	    "OpenTelemetry: how long one export request may take (connect, send, answer)"),
	U(otlp_queue_spans, "SAGAD_OTLP_QUEUE_SPANS", 8192, 64, 1048576,
	    "OpenTelemetry: spans waiting for export, at most; more are dropped and counted "
	    "(sagad_otlp_spans_dropped_total), never waited for"),
	B(allow_root, "SAGAD_ALLOW_ROOT", "false",
	    "run even as root (refused by default: run sagad as an unprivileged user)"),
	S(config, "SAGAD_CONFIG", "", NULL, "FILE",
	    "config file of `name = value` lines (sagad print-config writes one); flags and "
	    "SAGAD_* variables override it; empty = none"),
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Settings a SIGHUP applies to the running daemon (main.c reload()). */
static const char *const live_opts[] = { "log_level", "log_format", "breaker_window_ms",
	"breaker_min_calls", "breaker_failure_pct", "breaker_cooloff_ms", "shutdown_grace_ms",
	"tls_cert", "tls_key", "tls_ca", "tls_client_auth" };

static const char *const commands[] = { "run", "migrate", "help", "version", "print-config" };

/* Largest config file read: a whole documented file is ~8 KiB. */
#define CONFIG_FILE_MAX (1u << 20)

int
cfg_is_live(const char *name)
{
	for (size_t i = 0; i < sizeof(live_opts) / sizeof(live_opts[0]); i++)
		if (strcmp(live_opts[i], name) == 0)
			return 1;
	return 0;
}

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
	if (o->type == OPT_BOOL) {
		static const char *const yes[] = { "true", "yes", "on", "1" };
		static const char *const no[] = { "false", "no", "off", "0" };
		for (size_t i = 0; i < 4; i++) {
			if (strcmp(v, yes[i]) == 0 || strcmp(v, no[i]) == 0) {
				*u32_field(c, o) = strcmp(v, yes[i]) == 0;
				return 0;
			}
		}
		seterr(err, errlen, "%s: \"%s\" is not one of true, false (yes/no, on/off, 1/0)",
		    src, v);
		return SAGA_EINVAL;
	}
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
		else if (o->check == check_client_auth)
			seterr(err, errlen, "%s: \"%s\" is not one of none, optional, required",
			    src, v);
		else if (o->check == check_auth)
			seterr(err, errlen, "%s: \"%s\" is not one of off, on", src, v);
		else if (o->check == check_otlp_endpoint)
			seterr(err, errlen,
			    "%s: \"%.200s\" is not http://HOST[:PORT][/PATH] (https is not "
			    "supported: see docs/TRACING.md)",
			    src, v);
		else if (o->check == check_otlp_headers)
			seterr(err, errlen,
			    "%s: not name=value,name=value with HTTP token names and printable "
			    "ASCII values (Host, Content-Type, Content-Length, Connection and "
			    "Transfer-Encoding are sagad's own)",
			    src); /* the value is not echoed: it may hold a key */
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
		    "unknown command \"%s\"; commands: run, migrate, help, version, "
		    "print-config (see sagad --help)",
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

/* The config file named by the flag (which wins) or SAGAD_CONFIG; NULL if
 * none. Read before the environment and the flags, which override it. */
static const char *
config_path(int argc, char **argv)
{
	const char *path = getenv("SAGAD_CONFIG");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[++i];
	}
	return path != NULL && path[0] != '\0' ? path : NULL;
}

static char *
trim(char *s)
{
	char *e;
	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* Applies every `name = value` line of the file at path. Stops at the
 * first bad line: its number and what is wrong go into err. */
static int
load_file(cfg *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *buf, *line, *next;
	size_t n;
	int lineno = 0, rv = 0;

	if (f == NULL) {
		seterr(err, errlen, "config file %s: %s", path, strerror(errno));
		return SAGA_EINVAL;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		seterr(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	fclose(f);
	if (n > CONFIG_FILE_MAX) {
		seterr(err, errlen, "config file %s: larger than %u bytes", path, CONFIG_FILE_MAX);
		free(buf);
		return SAGA_EINVAL;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL) {
		seterr(err, errlen, "config file %s: contains a NUL byte (not a text file?)", path);
		free(buf);
		return SAGA_EINVAL;
	}
	for (line = buf; line != NULL && rv == 0; line = next) {
		char src[600], key[64], *eq, *k, *v;
		const opt *o;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		line = trim(line);
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			seterr(err, errlen, "%s:%d: expected `name = value`, got \"%.80s\"", path,
			    lineno, line);
			rv = SAGA_EINVAL;
			break;
		}
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		snprintf(key, sizeof(key), "%.63s", k);
		for (char *p = key; *p; p++)
			if (*p == '_')
				*p = '-';
		if ((o = find_flag(key, strlen(key))) == NULL) {
			seterr(err, errlen, "%s:%d: unknown setting \"%.80s\" (see sagad --help)",
			    path, lineno, k);
			rv = SAGA_EINVAL;
			break;
		}
		if (strcmp(o->name, "config") == 0) {
			seterr(err, errlen, "%s:%d: a config file cannot name another one", path,
			    lineno);
			rv = SAGA_EINVAL;
			break;
		}
		if (v[0] == '"') {
			size_t vl = strlen(v);
			if (vl < 2 || v[vl - 1] != '"') {
				seterr(err, errlen, "%s:%d: %s: unterminated quoted value", path,
				    lineno, key);
				rv = SAGA_EINVAL;
				break;
			}
			v[vl - 1] = '\0';
			v++;
		}
		snprintf(src, sizeof(src), "%.400s:%d: %s", path, lineno, key);
		rv = set_value(c, o, v, src, err, errlen);
	}
	free(buf);
	return rv;
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
	const char *path;

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

	if ((path = config_path(argc, argv)) != NULL)
		KEEP(load_file(c, path, err, errlen));

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
			} else if (o->type == OPT_BOOL) {
				val = "true"; /* --allow-root alone */
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

static void
append_name(char *buf, size_t len, const char *name)
{
	size_t used;
	if (buf == NULL || len == 0)
		return;
	used = strlen(buf);
	snprintf(buf + used, len - used, "%s%s", used > 0 ? "," : "", name);
}

int
cfg_reload(cfg *running, int argc, char **argv, char *changed, size_t changed_len, char *restart,
    size_t restart_len, char *err, size_t errlen)
{
	cfg fresh;
	int rv;
	if (changed != NULL && changed_len > 0)
		changed[0] = '\0';
	if (restart != NULL && restart_len > 0)
		restart[0] = '\0';
	if ((rv = cfg_parse(&fresh, argc, argv, err, errlen)) != 0)
		return rv;
	for (size_t i = 0; i < N_OPTS; i++) {
		const opt *o = &opts[i];
		int same;
		if (o->type == OPT_STR)
			same = strcmp(*str_field(running, o), *str_field(&fresh, o)) == 0;
		else
			same = *u32_field(running, o) == *u32_field(&fresh, o);
		if (same)
			continue;
		if (!cfg_is_live(o->name)) {
			append_name(restart, restart_len, o->name);
			continue;
		}
		append_name(changed, changed_len, o->name);
		if (o->type == OPT_STR) { /* swap: fresh frees the old value */
			char *t = *str_field(running, o);
			*str_field(running, o) = *str_field(&fresh, o);
			*str_field(&fresh, o) = t;
		} else {
			*u32_field(running, o) = *u32_field(&fresh, o);
		}
	}
	cfg_free(&fresh);
	return 0;
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
	    "  print-config  print a config file documenting every setting, then exit\n"
	    "\n"
	    "settings: a flag overrides the environment variable, which overrides the config\n"
	    "file (--config), which overrides the default. Settings marked [live] are\n"
	    "applied again on SIGHUP; the others need a restart.\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		const opt *o = &opts[i];
		flag_name(o, fl, sizeof(fl));
		fprintf(out, "\n  --%s=%s\n      env %s, default \"%s\"", fl, o->metavar, o->env,
		    o->def);
		if (o->type == OPT_U32)
			fprintf(out, ", range %u..%u", (unsigned)o->min, (unsigned)o->max);
		fprintf(out, "%s\n      %s\n", cfg_is_live(o->name) ? " [live]" : "", o->help);
	}
}

/* Writes text as # comment lines of at most ~76 columns. */
static void
comment_wrapped(FILE *out, const char *text)
{
	const char *p = text;
	while (*p != '\0') {
		size_t n = strlen(p), cut = n;
		if (n > 74) {
			cut = 74;
			while (cut > 0 && p[cut] != ' ')
				cut--;
			if (cut == 0)
				cut = 74;
		}
		fprintf(out, "# %.*s\n", (int)cut, p);
		p += cut;
		while (*p == ' ')
			p++;
	}
}

void
cfg_write_documented(FILE *out)
{
	char fl[64];

	fprintf(out,
	    "# sagad configuration file (written by `sagad print-config`).\n"
	    "#\n"
	    "# Every setting is listed, commented out at its default. Lines are\n"
	    "# `name = value`; a value may be \"double quoted\" to keep spaces or a #.\n"
	    "# The SAGAD_* environment variable of a setting overrides this file and\n"
	    "# its --flag overrides both. Use it with `sagad --config FILE` (or\n"
	    "# SAGAD_CONFIG=FILE). SIGHUP reads the file again and applies the\n"
	    "# settings marked \"live\"; the others need a restart (sagad logs which).\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		const opt *o = &opts[i];
		const char *d = o->def;
		int quote = d[0] == '\0' || strpbrk(d, " #\"") != NULL;

		if (strcmp(o->name, "config") == 0)
			continue; /* a file cannot name another */
		flag_name(o, fl, sizeof(fl));
		fprintf(out, "\n");
		comment_wrapped(out, o->help);
		fprintf(out, "# env %s", o->env);
		if (o->type == OPT_U32)
			fprintf(out, ", range %u..%u", (unsigned)o->min, (unsigned)o->max);
		if (o->type == OPT_BOOL)
			fprintf(out, ", true or false");
		fprintf(out, "; %s\n", cfg_is_live(o->name) ? "live (SIGHUP)" : "needs a restart");
		fprintf(out, "#%s = %s%s%s\n", fl, quote ? "\"" : "", d, quote ? "\"" : "");
	}
}
