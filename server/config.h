/*
 * config: every setting of sagad in one table of {name, env, type, &var,
 * default, help}. Precedence: built-in default < environment (SAGAD_*) <
 * command-line flag (--name=value or --name value). `sagad --help` prints
 * the table.
 */
#ifndef SAGAD_CONFIG_H
#define SAGAD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cfg {
	char *command;    /* "run" (default), "migrate", "help", "version" */
	char *db;         /* libpq conninfo; "" = embedded PostgreSQL in data_dir */
	char *data_dir;   /* default "./sagad-data" */
	char *listen;     /* comma-separated nng URLs; default SAGA_DEFAULT_URL */
	char *log_level;  /* error|warn|info|debug; default info */
	char *log_format; /* logfmt|json; default logfmt */
	char *pg_bindir;  /* where initdb/pg_ctl live; "" = search */
	char *pg_user;    /* OS user for the embedded cluster when run as root; default postgres */
	uint32_t max_message_bytes; /* largest message accepted from the network; default 1 MiB */
	uint32_t max_connections;   /* nng pipes accepted at once; default 1024 */
	uint32_t
	    max_pending;    /* requests held at once (polls, RPCs awaiting commit); default 65536 */
	uint32_t max_batch; /* saga transitions per PostgreSQL transaction; default 2000 */
	uint32_t dispatch_batch;      /* steps per WorkBatch message; default 64 */
	uint32_t poll_timeout_ms;     /* empty WorkBatch after this idle time; default 20000 */
	uint32_t max_capacity;        /* cap on a connection's declared capacity; default 4096 */
	uint32_t readers;             /* threads (and connections) serving get/list; default 2 */
	char *http_listen;            /* http://HOST:PORT for /metrics etc.; "" = off */
	char *failpoints;             /* test only: server/failpoint.h; "" = none */
	uint32_t breaker_window_ms;   /* circuit breaker counting window; default 10000 */
	uint32_t breaker_min_calls;   /* attempts in a window before it may open; default 20 */
	uint32_t breaker_failure_pct; /* failure share that opens it; 0 = off; default 50 */
	uint32_t breaker_cooloff_ms;  /* open this long before a probe; default 5000 */
} cfg;

/* Parses defaults, environment, then argv. The first non-flag argument is
 * the command. On error returns nonzero and writes a message that names the
 * bad setting into err. The strings in c are owned by c (cfg_free). */
int cfg_parse(cfg *c, int argc, char **argv, char *err, size_t errlen);
void cfg_free(cfg *c);
void cfg_usage(FILE *out);

#endif
