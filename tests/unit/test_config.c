/* Unit tests of server/config.c: defaults, environment, flags, validation, help. */
#define _GNU_SOURCE
#include <check.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "saga.h"

/* Every setting, as an operator sees it. Kept by hand on purpose: renaming
 * a flag or variable breaks deployments, so it must break this test. */
static const struct setting {
	const char *flag;
	const char *env;
	int is_str;
	size_t off;
	const char *def;
	const char *valid; /* a valid non-default value */
} settings[] = {
	{ "--db", "SAGAD_DB", 1, offsetof(cfg, db), "", "host=/tmp dbname=x" },
	{ "--data-dir", "SAGAD_DATA_DIR", 1, offsetof(cfg, data_dir), "./sagad-data",
	    "/var/lib/s" },
	{ "--listen", "SAGAD_LISTEN", 1, offsetof(cfg, listen), "tcp://127.0.0.1:7700",
	    "ipc:///tmp/s.sock" },
	{ "--log-level", "SAGAD_LOG_LEVEL", 1, offsetof(cfg, log_level), "info", "debug" },
	{ "--log-format", "SAGAD_LOG_FORMAT", 1, offsetof(cfg, log_format), "json", "logfmt" },
	{ "--pg-bindir", "SAGAD_PG_BINDIR", 1, offsetof(cfg, pg_bindir), "", "/opt/pg/bin" },
	{ "--pg-user", "SAGAD_PG_USER", 1, offsetof(cfg, pg_user), "postgres", "pgsaga" },
	{ "--max-message-bytes", "SAGAD_MAX_MESSAGE_BYTES", 0, offsetof(cfg, max_message_bytes),
	    "1048576", "2048" },
	{ "--max-connections", "SAGAD_MAX_CONNECTIONS", 0, offsetof(cfg, max_connections), "1024",
	    "10" },
	{ "--max-pending", "SAGAD_MAX_PENDING", 0, offsetof(cfg, max_pending), "65536", "100" },
	{ "--max-batch", "SAGAD_MAX_BATCH", 0, offsetof(cfg, max_batch), "2000", "5" },
	{ "--dispatch-batch", "SAGAD_DISPATCH_BATCH", 0, offsetof(cfg, dispatch_batch), "64", "8" },
	{ "--poll-timeout-ms", "SAGAD_POLL_TIMEOUT_MS", 0, offsetof(cfg, poll_timeout_ms), "20000",
	    "1000" },
	{ "--max-capacity", "SAGAD_MAX_CAPACITY", 0, offsetof(cfg, max_capacity), "4096", "16" },
	{ "--readers", "SAGAD_READERS", 0, offsetof(cfg, readers), "2", "4" },
	{ "--http-listen", "SAGAD_HTTP_LISTEN", 1, offsetof(cfg, http_listen), "",
	    "http://127.0.0.1:9090" },
	{ "--breaker-window-ms", "SAGAD_BREAKER_WINDOW_MS", 0, offsetof(cfg, breaker_window_ms),
	    "10000", "2000" },
	{ "--breaker-min-calls", "SAGAD_BREAKER_MIN_CALLS", 0, offsetof(cfg, breaker_min_calls),
	    "20", "3" },
	{ "--breaker-failure-pct", "SAGAD_BREAKER_FAILURE_PCT", 0,
	    offsetof(cfg, breaker_failure_pct), "50", "0" },
	{ "--breaker-cooloff-ms", "SAGAD_BREAKER_COOLOFF_MS", 0, offsetof(cfg, breaker_cooloff_ms),
	    "5000", "100" },
	{ "--shutdown-grace-ms", "SAGAD_SHUTDOWN_GRACE_MS", 0, offsetof(cfg, shutdown_grace_ms),
	    "10000", "0" },
	{ "--allow-root", "SAGAD_ALLOW_ROOT", 2, offsetof(cfg, allow_root), "false", "true" },
	{ "--otlp-endpoint", "SAGAD_OTLP_ENDPOINT", 1, offsetof(cfg, otlp_endpoint), "",
	    "http://127.0.0.1:4318/v1/traces" },
	{ "--otlp-service-name", "SAGAD_OTLP_SERVICE_NAME", 1, offsetof(cfg, otlp_service_name),
	    "sagad", "orders-saga" },
	{ "--otlp-headers", "SAGAD_OTLP_HEADERS", 1, offsetof(cfg, otlp_headers), "",
	    "x-api-key=abc" },
	{ "--otlp-timeout-ms", "SAGAD_OTLP_TIMEOUT_MS", 0, offsetof(cfg, otlp_timeout_ms), "5000",
	    "200" },
	{ "--otlp-queue-spans", "SAGAD_OTLP_QUEUE_SPANS", 0, offsetof(cfg, otlp_queue_spans),
	    "8192", "64" },
};
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static char err[512];

/* The test environment (CI) may set SAGAD_* itself. */
static void
clean_env(void)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		unsetenv(settings[i].env);
	unsetenv("SAGAD_CONFIG");
}

static int
parse(cfg *c, const char *first, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = "sagad";
	va_start(ap, first);
	for (const char *a = first; a != NULL; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return cfg_parse(c, argc, argv, err, sizeof(err));
}

/* The setting's value as text, for comparison with the table above. */
static void
value_of(cfg *c, const struct setting *s, char *buf, size_t len)
{
	if (s->is_str == 2)
		snprintf(
		    buf, len, "%s", *(uint32_t *)(void *)((char *)c + s->off) ? "true" : "false");
	else if (s->is_str)
		snprintf(buf, len, "%s", *(char **)(void *)((char *)c + s->off));
	else
		snprintf(buf, len, "%u", *(uint32_t *)(void *)((char *)c + s->off));
}

START_TEST(defaults_apply_when_nothing_is_given)
{
	cfg c;
	char v[256];
	clean_env();
	ck_assert_int_eq(parse(&c, NULL), 0);
	ck_assert_str_eq(c.command, "run");
	for (size_t i = 0; i < N_SETTINGS; i++) {
		value_of(&c, &settings[i], v, sizeof(v));
		ck_assert_msg(strcmp(v, settings[i].def) == 0, "%s default is %s, want %s",
		    settings[i].flag, v, settings[i].def);
	}
	cfg_free(&c);
	cfg_free(&c); /* twice is safe */
}
END_TEST

START_TEST(every_setting_is_read_from_its_env_variable)
{
	cfg c;
	char v[256];
	clean_env();
	for (size_t i = 0; i < N_SETTINGS; i++)
		setenv(settings[i].env, settings[i].valid, 1);
	ck_assert_msg(parse(&c, NULL) == 0, "%s", err);
	for (size_t i = 0; i < N_SETTINGS; i++) {
		value_of(&c, &settings[i], v, sizeof(v));
		ck_assert_msg(strcmp(v, settings[i].valid) == 0, "%s=%s gave %s", settings[i].env,
		    settings[i].valid, v);
	}
	cfg_free(&c);
}
END_TEST

START_TEST(every_setting_is_read_from_its_flag)
{
	cfg c;
	char v[256], arg[256];
	clean_env();
	for (size_t i = 0; i < N_SETTINGS; i++) {
		snprintf(arg, sizeof(arg), "%s=%s", settings[i].flag, settings[i].valid);
		ck_assert_msg(parse(&c, arg, NULL) == 0, "%s: %s", arg, err);
		value_of(&c, &settings[i], v, sizeof(v));
		ck_assert_str_eq(v, settings[i].valid);
		cfg_free(&c);
	}
}
END_TEST

START_TEST(env_overrides_default_and_flag_overrides_env)
{
	cfg c;
	clean_env();
	setenv("SAGAD_MAX_BATCH", "10", 1);
	setenv("SAGAD_LOG_LEVEL", "warn", 1);
	ck_assert_int_eq(parse(&c, NULL), 0);
	ck_assert_uint_eq(c.max_batch, 10);
	ck_assert_str_eq(c.log_level, "warn");
	cfg_free(&c);

	ck_assert_int_eq(parse(&c, "--max-batch=20", "--log-level", "error", NULL), 0);
	ck_assert_uint_eq(c.max_batch, 20);
	ck_assert_str_eq(c.log_level, "error");
	cfg_free(&c);
}
END_TEST

START_TEST(flag_value_may_follow_equals_or_be_the_next_argument)
{
	cfg c;
	clean_env();
	ck_assert_int_eq(parse(&c, "--readers=7", "--listen", "ipc:///tmp/x", "--db=", NULL), 0);
	ck_assert_uint_eq(c.readers, 7);
	ck_assert_str_eq(c.listen, "ipc:///tmp/x");
	ck_assert_str_eq(c.db, "");
	cfg_free(&c);

	/* A value containing '=' is kept whole. */
	ck_assert_int_eq(parse(&c, "--db", "host=/tmp dbname=a", NULL), 0);
	ck_assert_str_eq(c.db, "host=/tmp dbname=a");
	cfg_free(&c);
	ck_assert_int_eq(parse(&c, "--db=host=/tmp dbname=b", NULL), 0);
	ck_assert_str_eq(c.db, "host=/tmp dbname=b");
	cfg_free(&c);

	/* The last occurrence wins. */
	ck_assert_int_eq(parse(&c, "--readers=3", "--readers", "5", NULL), 0);
	ck_assert_uint_eq(c.readers, 5);
	cfg_free(&c);
}
END_TEST

START_TEST(flag_without_value_is_refused)
{
	cfg c;
	clean_env();
	ck_assert_int_ne(parse(&c, "--db", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--db needs a value"));
	ck_assert_int_ne(parse(&c, "--max-batch", "--readers=2", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--max-batch"));
}
END_TEST

START_TEST(unknown_flag_is_refused_naming_it_and_pointing_to_help)
{
	cfg c;
	clean_env();
	ck_assert_int_eq(parse(&c, "--frobnicate=3", NULL), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--frobnicate"));
	ck_assert_ptr_null(strstr(err, "=3"));
	ck_assert_ptr_nonnull(strstr(err, "sagad --help"));
	ck_assert_ptr_null(c.command); /* freed on error */

	ck_assert_int_ne(parse(&c, "-x", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "-x"));
	/* Field names with '_' are not flags. */
	ck_assert_int_ne(parse(&c, "--max_batch=3", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--max_batch"));
}
END_TEST

START_TEST(out_of_range_numbers_are_refused_naming_the_setting_and_range)
{
	static const struct {
		const char *arg, *want;
	} bad[] = {
		{ "--max-batch=0", "--max-batch: 0 is out of range (1..100000)" },
		{ "--max-batch=100001", "--max-batch: 100001 is out of range (1..100000)" },
		{ "--readers=65", "(1..64)" },
		{ "--max-message-bytes=1023", "(1024..268435456)" },
		{ "--max-message-bytes=268435457", "(1024..268435456)" },
		{ "--dispatch-batch=4097", "(1..4096)" },
		{ "--poll-timeout-ms=99", "(100..600000)" },
		{ "--max-capacity=65537", "(1..65536)" },
		{ "--max-connections=1000001", "(1..1000000)" },
		{ "--max-pending=15", "(16..10000000)" },
		{ "--readers=4294967296", "out of range" },
		{ "--readers=99999999999999999999999", "out of range" },
	};
	cfg c;
	clean_env();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(
		    parse(&c, bad[i].arg, NULL) == SAGA_EINVAL, "%s accepted", bad[i].arg);
		ck_assert_msg(
		    strstr(err, bad[i].want) != NULL, "%s: error \"%s\"", bad[i].arg, err);
	}
	/* The limits themselves are fine. */
	ck_assert_int_eq(parse(&c, "--readers=64", "--max-pending=16", NULL), 0);
	cfg_free(&c);

	setenv("SAGAD_READERS", "0", 1);
	ck_assert_int_ne(parse(&c, NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "SAGAD_READERS: 0 is out of range"));
}
END_TEST

START_TEST(non_numeric_numbers_are_refused)
{
	static const char *const bad[] = { "--max-batch=abc", "--max-batch=-1", "--max-batch=12x",
		"--max-batch=", "--max-batch= 5", "--max-batch=+5", "--max-batch=0x10",
		"--max-batch=1e3" };
	cfg c;
	clean_env();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(parse(&c, bad[i], NULL) != 0, "%s accepted", bad[i]);
		ck_assert_msg(strstr(err, "--max-batch") != NULL && strstr(err, "not a number"),
		    "%s: error \"%s\"", bad[i], err);
	}
}
END_TEST

START_TEST(bad_log_level_format_and_empty_listen_are_refused)
{
	cfg c;
	clean_env();
	ck_assert_int_ne(parse(&c, "--log-level=loud", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--log-level"));
	ck_assert_ptr_nonnull(strstr(err, "loud"));
	ck_assert_int_ne(parse(&c, "--log-format=xml", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--log-format"));
	ck_assert_ptr_nonnull(strstr(err, "logfmt, json"));
	ck_assert_int_ne(parse(&c, "--listen=", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--listen must not be empty"));
	setenv("SAGAD_LOG_FORMAT", "yaml", 1);
	ck_assert_int_ne(parse(&c, NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "SAGAD_LOG_FORMAT"));
}
END_TEST

START_TEST(first_error_is_the_one_reported)
{
	cfg c;
	clean_env();
	ck_assert_int_ne(parse(&c, "--readers=0", "--bogus", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--readers"));
	ck_assert_ptr_null(strstr(err, "--bogus"));
}
END_TEST

START_TEST(command_is_the_first_non_flag_argument)
{
	cfg c;
	clean_env();
	ck_assert_int_eq(parse(&c, "migrate", NULL), 0);
	ck_assert_str_eq(c.command, "migrate");
	cfg_free(&c);
	ck_assert_int_eq(parse(&c, "--readers=3", "run", "--max-batch=4", NULL), 0);
	ck_assert_str_eq(c.command, "run");
	ck_assert_uint_eq(c.readers, 3);
	ck_assert_uint_eq(c.max_batch, 4);
	cfg_free(&c);
	ck_assert_int_eq(parse(&c, "version", NULL), 0);
	ck_assert_str_eq(c.command, "version");
	cfg_free(&c);
	ck_assert_int_eq(parse(&c, "help", NULL), 0);
	ck_assert_str_eq(c.command, "help");
	cfg_free(&c);
	/* After "--", a dash starts no flag. */
	ck_assert_int_ne(parse(&c, "--", "--version", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "unknown command \"--version\""));

	ck_assert_int_eq(parse(&c, "frobnicate", NULL), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "unknown command \"frobnicate\""));
	ck_assert_int_ne(parse(&c, "migrate", "run", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "unexpected argument \"run\""));
}
END_TEST

START_TEST(help_and_version_flags_set_the_command_even_with_bad_settings)
{
	static const char *const help[] = { "--help", "-h" };
	cfg c;
	clean_env();
	for (size_t i = 0; i < 2; i++) {
		ck_assert_int_eq(parse(&c, help[i], NULL), 0);
		ck_assert_str_eq(c.command, "help");
		cfg_free(&c);
	}
	ck_assert_int_eq(parse(&c, "--version", NULL), 0);
	ck_assert_str_eq(c.command, "version");
	cfg_free(&c);
	ck_assert_int_eq(parse(&c, "migrate", "--help", NULL), 0);
	ck_assert_str_eq(c.command, "help");
	cfg_free(&c);

	/* Help must work to find out what is wrong. */
	setenv("SAGAD_READERS", "0", 1);
	ck_assert_int_eq(parse(&c, "--help", "--bogus", NULL), 0);
	ck_assert_str_eq(c.command, "help");
	cfg_free(&c);
}
END_TEST

START_TEST(help_lists_every_setting_with_flag_env_and_default)
{
	FILE *f = tmpfile();
	char *text;
	long n;

	ck_assert_ptr_nonnull(f);
	cfg_usage(f);
	n = ftell(f);
	ck_assert_int_gt(n, 0);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	ck_assert_int_eq(fread(text, 1, (size_t)n, f), n);
	fclose(f);

	ck_assert_ptr_nonnull(strstr(text, "usage: sagad"));
	for (const char *cmd = "run\0migrate\0help\0version\0"; *cmd; cmd += strlen(cmd) + 1) {
		char want[32];
		snprintf(want, sizeof(want), "  %s ", cmd);
		ck_assert_msg(strstr(text, want) != NULL, "command %s missing", cmd);
	}
	for (size_t i = 0; i < N_SETTINGS; i++) {
		char want[128];
		snprintf(want, sizeof(want), "%s=", settings[i].flag);
		ck_assert_msg(strstr(text, want) != NULL, "%s missing from help", settings[i].flag);
		ck_assert_msg(strstr(text, settings[i].env) != NULL, "%s missing", settings[i].env);
		snprintf(
		    want, sizeof(want), "env %s, default \"%s\"", settings[i].env, settings[i].def);
		ck_assert_msg(
		    strstr(text, want) != NULL, "default of %s missing", settings[i].flag);
	}
	ck_assert_ptr_nonnull(strstr(text, "range 1..100000"));
	free(text);
}
END_TEST

/* Writes text to a fresh temporary file; returns its path (static). */
static const char *
write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/test_config_XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

START_TEST(config_file_sets_settings_and_env_and_flags_override_it)
{
	cfg c;
	char arg[128];
	clean_env();
	const char *path = write_tmp("# a comment\n"
				     "\n"
				     "  readers = 7\n"
				     "log_level=debug\n"
				     "db = \"host=/tmp dbname=a # not a comment\"\n"
				     "max-batch = 10\r\n"
				     "allow-root = yes\n"
				     "breaker-cooloff-ms = 250\n");
	snprintf(arg, sizeof(arg), "--config=%s", path);
	ck_assert_msg(parse(&c, arg, NULL) == 0, "%s", err);
	ck_assert_uint_eq(c.readers, 7);
	ck_assert_str_eq(c.log_level, "debug");
	ck_assert_str_eq(c.db, "host=/tmp dbname=a # not a comment");
	ck_assert_uint_eq(c.max_batch, 10);
	ck_assert_uint_eq(c.allow_root, 1);
	ck_assert_uint_eq(c.breaker_cooloff_ms, 250);
	ck_assert_str_eq(c.config, path);
	cfg_free(&c);

	/* File < env < flag; SAGAD_CONFIG names the file too. */
	setenv("SAGAD_CONFIG", path, 1);
	setenv("SAGAD_READERS", "8", 1);
	ck_assert_msg(parse(&c, "--max-batch", "11", NULL) == 0, "%s", err);
	ck_assert_uint_eq(c.readers, 8);
	ck_assert_uint_eq(c.max_batch, 11);
	ck_assert_str_eq(c.log_level, "debug");
	cfg_free(&c);
	clean_env();
	unlink(path);
}
END_TEST

START_TEST(config_file_errors_name_the_file_line_and_setting)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "readers = 2\nbogus = 1\n", ":2: unknown setting \"bogus\"" },
		{ "\n\nreaders = 0\n", ":3: readers: 0 is out of range (1..64)" },
		{ "readers\n", ":1: expected `name = value`" },
		{ "db = \"host=x\n", ":1: db: unterminated quoted value" },
		{ "allow-root = maybe\n", ":1: allow-root: \"maybe\" is not one of true, false" },
		{ "config = /etc/other\n", ":1: a config file cannot name another one" },
		{ "log-level = loud\n", ":1: log-level: \"loud\" is not one of error" },
	};
	cfg c;
	char arg[128];
	clean_env();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = write_tmp(cases[i].text);
		snprintf(arg, sizeof(arg), "--config=%s", path);
		ck_assert_int_ne(parse(&c, arg, NULL), 0);
		ck_assert_msg(strstr(err, path) != NULL && strstr(err, cases[i].want) != NULL,
		    "case %zu: got \"%s\", want the path and \"%s\"", i, err, cases[i].want);
		unlink(path);
	}
	ck_assert_int_ne(parse(&c, "--config", "/nonexistent/sagad.conf", NULL), 0);
	ck_assert_msg(strstr(err, "/nonexistent/sagad.conf: No such file") != NULL, "%s", err);
}
END_TEST

/* The documented file as a string the caller frees. The memstream's
 * buffer and size are static: as locals whose address open_memstream
 * keeps, GCC's -Wdangling-pointer (release builds) took the returned text
 * for a pointer to them. */
static char *
documented(void)
{
	static char *text;
	static size_t n;
	text = NULL;
	FILE *f = open_memstream(&text, &n);
	ck_assert_ptr_nonnull(f);
	cfg_write_documented(f);
	fclose(f);
	return text;
}

START_TEST(documented_config_lists_every_setting_and_parses_back_to_the_defaults)
{
	cfg c, d;
	char arg[128], want[128], v1[256], v2[256];
	char *text = documented();
	clean_env();
	for (size_t i = 0; i < N_SETTINGS; i++) {
		snprintf(want, sizeof(want), "\n#%s = ", settings[i].flag + 2);
		ck_assert_msg(strstr(text, want) != NULL, "%s missing from the documented file",
		    settings[i].flag);
		ck_assert_msg(strstr(text, settings[i].env) != NULL, "%s missing", settings[i].env);
	}
	ck_assert_ptr_nonnull(strstr(text, "live (SIGHUP)"));
	ck_assert_ptr_nonnull(strstr(text, "needs a restart"));
	/* Uncommented, every line is a valid setting at its default. */
	for (char *p = strstr(text, "\n#"); p != NULL; p = strstr(p + 1, "\n#"))
		if (p[2] != ' ' && p[2] != '\n')
			p[1] = ' ';
	const char *path = write_tmp(text);
	snprintf(arg, sizeof(arg), "--config=%s", path);
	ck_assert_msg(parse(&c, arg, NULL) == 0, "%s", err);
	ck_assert_int_eq(parse(&d, NULL), 0);
	for (size_t i = 0; i < N_SETTINGS; i++) {
		value_of(&c, &settings[i], v1, sizeof(v1));
		value_of(&d, &settings[i], v2, sizeof(v2));
		ck_assert_msg(strcmp(v1, v2) == 0, "%s: %s from the file, default %s",
		    settings[i].flag, v1, v2);
	}
	cfg_free(&c);
	cfg_free(&d);
	unlink(path);
	free(text);
}
END_TEST

START_TEST(shipped_config_file_is_the_documented_one)
{
	const char *path = getenv("SAGAD_CONF_SHIPPED");
	ck_assert_msg(path != NULL, "SAGAD_CONF_SHIPPED not set");
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s", path);
	char *shipped = calloc(1, 65536);
	size_t n = fread(shipped, 1, 65535, f);
	fclose(f);
	char *text = documented();
	ck_assert_msg(n == strlen(text) && memcmp(shipped, text, n) == 0,
	    "%s is out of date: regenerate it with `sagad print-config > %s`", path, path);
	free(text);
	free(shipped);
}
END_TEST

START_TEST(reload_applies_live_settings_and_names_those_needing_a_restart)
{
	cfg run;
	char arg[128], changed[256], restart[256];
	clean_env();
	const char *path = write_tmp("log-level = info\nreaders = 2\n");
	snprintf(arg, sizeof(arg), "--config=%s", path);
	char *argv[] = { "sagad", arg, NULL };
	ck_assert_int_eq(cfg_parse(&run, 2, argv, err, sizeof(err)), 0);

	FILE *f = fopen(path, "w");
	fputs("log-level = debug\nreaders = 3\nbreaker-min-calls = 5\n", f);
	fclose(f);
	ck_assert_int_eq(cfg_reload(&run, 2, argv, changed, sizeof(changed), restart,
			     sizeof(restart), err, sizeof(err)),
	    0);
	ck_assert_str_eq(changed, "log_level,breaker_min_calls");
	ck_assert_str_eq(restart, "readers");
	/* The live ones are now the running ones; the others wait. */
	ck_assert_str_eq(run.log_level, "debug");
	ck_assert_uint_eq(run.breaker_min_calls, 5);
	ck_assert_uint_eq(run.readers, 2);

	/* A broken file changes nothing and says why. */
	f = fopen(path, "w");
	fputs("log-level = loud\n", f);
	fclose(f);
	ck_assert_int_ne(cfg_reload(&run, 2, argv, changed, sizeof(changed), restart,
			     sizeof(restart), err, sizeof(err)),
	    0);
	ck_assert_ptr_nonnull(strstr(err, "loud"));
	ck_assert_str_eq(run.log_level, "debug");
	ck_assert(cfg_is_live("log_format") && !cfg_is_live("listen"));
	cfg_free(&run);
	unlink(path);
}
END_TEST

START_TEST(tls_client_auth_takes_none_optional_or_required_and_tls_settings_are_live)
{
	cfg c;
	clean_env();
	ck_assert_int_ne(parse(&c, "--tls-client-auth=sometimes", NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "--tls-client-auth"));
	ck_assert_ptr_nonnull(strstr(err, "none, optional, required"));
	const char *modes[] = { "none", "optional", "required", "" };
	for (size_t i = 0; i < 4; i++) {
		char flag[64];
		snprintf(flag, sizeof(flag), "--tls-client-auth=%s", modes[i]);
		ck_assert_int_eq(parse(&c, flag, NULL), 0);
		ck_assert_str_eq(c.tls_client_auth, modes[i]);
		cfg_free(&c);
	}
	/* SIGHUP applies them (and rpc_tls_reload reads the files again). */
	ck_assert(cfg_is_live("tls_cert") && cfg_is_live("tls_key") && cfg_is_live("tls_ca") &&
	    cfg_is_live("tls_client_auth"));
}
END_TEST

START_TEST(bool_flag_alone_means_true_and_accepts_the_usual_spellings)
{
	cfg c;
	clean_env();
	ck_assert_msg(parse(&c, "--allow-root", "run", NULL) == 0, "%s", err);
	ck_assert_uint_eq(c.allow_root, 1);
	ck_assert_str_eq(c.command, "run");
	cfg_free(&c);
	ck_assert_int_eq(parse(&c, "--allow-root=off", NULL), 0);
	ck_assert_uint_eq(c.allow_root, 0);
	cfg_free(&c);
	setenv("SAGAD_ALLOW_ROOT", "1", 1);
	ck_assert_int_eq(parse(&c, NULL), 0);
	ck_assert_uint_eq(c.allow_root, 1);
	cfg_free(&c);
	setenv("SAGAD_ALLOW_ROOT", "2", 1);
	ck_assert_int_ne(parse(&c, NULL), 0);
	ck_assert_ptr_nonnull(strstr(err, "SAGAD_ALLOW_ROOT"));
	clean_env();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, defaults_apply_when_nothing_is_given);
	tcase_add_test(tc, every_setting_is_read_from_its_env_variable);
	tcase_add_test(tc, every_setting_is_read_from_its_flag);
	tcase_add_test(tc, env_overrides_default_and_flag_overrides_env);
	tcase_add_test(tc, flag_value_may_follow_equals_or_be_the_next_argument);
	tcase_add_test(tc, flag_without_value_is_refused);
	tcase_add_test(tc, unknown_flag_is_refused_naming_it_and_pointing_to_help);
	tcase_add_test(tc, out_of_range_numbers_are_refused_naming_the_setting_and_range);
	tcase_add_test(tc, non_numeric_numbers_are_refused);
	tcase_add_test(tc, bad_log_level_format_and_empty_listen_are_refused);
	tcase_add_test(tc, first_error_is_the_one_reported);
	tcase_add_test(tc, command_is_the_first_non_flag_argument);
	tcase_add_test(tc, help_and_version_flags_set_the_command_even_with_bad_settings);
	tcase_add_test(tc, help_lists_every_setting_with_flag_env_and_default);
	tcase_add_test(tc, config_file_sets_settings_and_env_and_flags_override_it);
	tcase_add_test(tc, config_file_errors_name_the_file_line_and_setting);
	tcase_add_test(tc, documented_config_lists_every_setting_and_parses_back_to_the_defaults);
	tcase_add_test(tc, shipped_config_file_is_the_documented_one);
	tcase_add_test(tc, reload_applies_live_settings_and_names_those_needing_a_restart);
	tcase_add_test(tc, bool_flag_alone_means_true_and_accepts_the_usual_spellings);
	tcase_add_test(
	    tc, tls_client_auth_takes_none_optional_or_required_and_tls_settings_are_live);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
