/*
 * config: every setting of sagad in one table of {name, env, type, &var,
 * default, help}. Precedence: built-in default < config file (--config
 * FILE or SAGAD_CONFIG) < environment (SAGAD_*) < command-line flag
 * (--name=value or --name value). `sagad --help` prints the table and
 * `sagad print-config` prints a config file documenting every setting
 * (server/sagad.conf is that output).
 *
 * Config file syntax: one `name = value` per line, name as the flag
 * without its dashes (log-level; log_level also works); blank lines and
 * lines starting with # are ignored; a value may be "double quoted" to
 * keep spaces or a #. Settings marked live take effect on SIGHUP
 * (cfg_reload); the others need a restart.
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
	char *log_format; /* json|logfmt; default json */
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
	char *config;                 /* the config file read; "" = none */
	uint32_t allow_root;          /* 1 = run even as root; default 0 (refuse) */
	uint32_t shutdown_grace_ms;   /* SIGTERM: wait this long for in-flight steps */
	char *instance_id;            /* this sagad among several on one database; "" = derived */
	uint32_t lease_ms;            /* shard lease: a dead instance's shards move after it */
	uint32_t max_saga_memory_mb;  /* inputs of the sagas held in memory, at most */
	/* TLS of every tls+tcp:// listen URL (server/tls.h); live on SIGHUP,
	 * which also reads the files again. */
	char *tls_cert;                  /* PEM certificate (chain) of sagad; "" = none */
	char *tls_key;                   /* PEM private key of tls_cert; "" = none */
	char *tls_ca;                    /* PEM CAs that sign client certificates; "" = none */
	char *tls_client_auth;           /* none|optional|required; "" = required if tls_ca set */
	char *auth;                      /* "off" (default) or "on": credentials and roles */
	uint32_t insecure;               /* 1 = allow non-loopback listen URLs with auth off */
	char *bootstrap_credential_file; /* "" = <data_dir>/bootstrap-admin.credential */
	uint32_t participant_series_ttl_ms; /* a participant not connected this long is
	                                     * forgotten (metrics, status); default 10 min */
	/* OpenTelemetry span export (server/otel.h), off while otlp_endpoint is "". */
	char *otlp_endpoint;       /* http://HOST[:PORT][/PATH]; "" = off */
	char *otlp_service_name;   /* service.name; default "sagad" */
	char *otlp_headers;        /* name=value,...; "" = none */
	uint32_t otlp_timeout_ms;  /* one export request, at most; default 5000 */
	uint32_t otlp_queue_spans; /* queued spans, at most (more are dropped) */
} cfg;

/* Parses defaults, environment, then argv. The first non-flag argument is
 * the command. On error returns nonzero and writes a message that names the
 * bad setting into err. The strings in c are owned by c (cfg_free). */
int cfg_parse(cfg *c, int argc, char **argv, char *err, size_t errlen);
void cfg_free(cfg *c);
void cfg_usage(FILE *out);

/* Writes a config file that lists every setting, commented out at its
 * default, with its help text, range, environment variable and whether a
 * SIGHUP applies it (`sagad print-config`). */
void cfg_write_documented(FILE *out);

/* For SIGHUP: parses again (file, environment, flags) and writes into
 * changed/restart (each may be NULL) the comma-separated names of the
 * settings whose value differs from *running: those marked live, whose new
 * values it sets in *running, and the others (which need a restart and
 * are left as they are). On a parse error returns nonzero and changes
 * nothing. Only the live fields of *running are written. */
int cfg_reload(cfg *running, int argc, char **argv, char *changed, size_t changed_len,
    char *restart, size_t restart_len, char *err, size_t errlen);

/* Nonzero if the setting (as its field name, e.g. "log_level") is applied
 * by a SIGHUP. */
int cfg_is_live(const char *name);

#endif
