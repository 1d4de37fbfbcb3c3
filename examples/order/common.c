/*
 * common: argument parsing, signals, logging and input decoding shared by
 * the example order participants. See common.h.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* The worker the signal handler stops. Set before the handlers are
 * installed and cleared only after they are restored, so the handler never
 * sees a freed worker. */
static saga_worker *ex_worker;

static volatile sig_atomic_t ex_log_max = SAGA_LOG_INFO;

/* The participant's database, and each handler thread's connection. */
static const char *ex_conninfo;
static __thread PGconn *ex_conn;
static __thread char ex_said[512];
/* Closes a handler thread's connection when the thread ends. */
static pthread_key_t ex_conn_key;
static pthread_once_t ex_conn_once = PTHREAD_ONCE_INIT;

static void
ex_conn_close(void *c)
{
	PQfinish(c);
}

static void
ex_conn_key_make(void)
{
	pthread_key_create(&ex_conn_key, ex_conn_close);
}

static void
ex_on_signal(int sig)
{
	(void)sig;
	/* saga_worker_stop is async-signal-safe; a second signal is harmless. */
	if (ex_worker != NULL)
		saga_worker_stop(ex_worker);
}

const char *
ex_default_url(void)
{
	const char *env = getenv("SAGA_URL");

	return (env != NULL && env[0] != '\0') ? env : SAGA_DEFAULT_URL;
}

/* An environment variable, or NULL when unset or empty. */
static const char *
env_or_null(const char *name)
{
	const char *v = getenv(name);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

int
ex_tls_from_env(const char *prog, saga_client *c, saga_worker *w)
{
	const char *ca = env_or_null("SAGA_TLS_CA"), *cert = env_or_null("SAGA_TLS_CERT");
	const char *key = env_or_null("SAGA_TLS_KEY"), *name = env_or_null("SAGA_TLS_SERVER_NAME");
	int rv;

	if (ca == NULL)
		return 1; /* no TLS settings; a tls+tcp:// URL then fails naming them */
	rv = c != NULL ? saga_client_set_tls(c, ca, cert, key, name)
		       : saga_worker_set_tls(w, ca, cert, key, name);
	if (rv != SAGA_OK) {
		fprintf(stderr, "%s: TLS settings (SAGA_TLS_*): %s: %s\n", prog, saga_strerror(rv),
		    c != NULL ? saga_client_errmsg(c) : saga_worker_errmsg(w));
		return 0;
	}
	return 1;
}

void
ex_set_log_level(saga_log_level max)
{
	ex_log_max = (sig_atomic_t)max;
}

void
ex_log(saga_log_level level, const char *line, void *user)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *prog = user != NULL ? (const char *)user : "saga";
	const char *name = (unsigned)level < 4 ? names[level] : "log";

	if ((int)level > (int)ex_log_max)
		return;
	/* One fprintf per line: stdio locks the stream, so lines from the
	 * library's threads do not interleave. */
	fprintf(stderr, "%s: %s: %s\n", prog, name, line);
}

void
ex_out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	flockfile(stdout);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	funlockfile(stdout);
	va_end(ap);
}

Shop__OrderRequest *
ex_order_input(const saga_step *step, saga_reply *reply)
{
	Shop__OrderRequest *req;
	char msg[160];

	req = shop__order_request__unpack(NULL, step->input_len, step->input);
	if (req == NULL) {
		snprintf(msg, sizeof(msg), "bad input: %zu bytes that are not a shop.OrderRequest",
		    step->input_len);
		saga_reply_fail(reply, msg);
		return NULL;
	}
	if (req->order_id == NULL || req->order_id[0] == '\0') {
		shop__order_request__free_unpacked(req, NULL);
		saga_reply_fail(reply, "bad input: OrderRequest.order_id is empty");
		return NULL;
	}
	return req;
}

uint8_t *
ex_pack(const ProtobufCMessage *msg, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	/* +1: malloc(0) may return NULL for an all-default (empty) message. */
	uint8_t *buf = malloc(n + 1);

	if (buf == NULL)
		return NULL;
	*len = protobuf_c_message_pack(msg, buf);
	return buf;
}

PGconn *
ex_db(saga_reply *reply)
{
	char msg[600];
	if (ex_conn != NULL && PQstatus(ex_conn) == CONNECTION_OK)
		return ex_conn;
	pthread_once(&ex_conn_once, ex_conn_key_make);
	if (ex_conn != NULL)
		PQfinish(ex_conn);
	ex_conn = PQconnectdb(ex_conninfo);
	pthread_setspecific(ex_conn_key, ex_conn);
	if (ex_conn == NULL || PQstatus(ex_conn) != CONNECTION_OK) {
		snprintf(msg, sizeof(msg), "cannot reach the participant's database: %s",
		    ex_conn ? PQerrorMessage(ex_conn) : "out of memory");
		PQfinish(ex_conn);
		ex_conn = NULL;
		pthread_setspecific(ex_conn_key, NULL);
		saga_reply_retry(reply, msg);
		return NULL;
	}
	return ex_conn;
}

void
ex_say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ex_said, sizeof(ex_said), fmt, ap);
	va_end(ap);
}

PGresult *
ex_sql(PGconn *db, saga_reply *reply, const char *sql, int n, const char *const *vals)
{
	char msg[600];
	PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	snprintf(msg, sizeof(msg), "database: %s", PQresultErrorMessage(r));
	msg[strcspn(msg, "\n")] = '\0';
	PQclear(r);
	saga_reply_retry(reply, msg);
	return NULL;
}

void
ex_run_barrier(const saga_step *step, saga_reply *reply, saga_barrier_fn fn, void *user)
{
	PGconn *db;
	const char *error;

	ex_said[0] = '\0';
	if ((db = ex_db(reply)) == NULL) {
		ex_out("%s saga=%s attempt=%u: no database, asking for a retry", step->rpc,
		    step->saga_id, step->attempt);
		return;
	}
	saga_barrier_result br = saga_barrier_run(db, step, reply, fn, user);
	saga_outcome o = saga_reply_outcome(reply, NULL, NULL, &error);
	if (br != SAGA_BARRIER_RAN || ex_said[0] == '\0' || o == SAGA_OUTCOME_RETRY)
		snprintf(ex_said, sizeof(ex_said), "%s%s",
		    o == SAGA_OUTCOME_SUCCESS    ? "success"
			: o == SAGA_OUTCOME_FAIL ? "failed: "
						 : "retry: ",
		    o == SAGA_OUTCOME_SUCCESS ? "" : error);
	ex_out("%s saga=%s attempt=%u: %s [barrier: %s]", step->rpc, step->saga_id, step->attempt,
	    ex_said, saga_barrier_result_name(br));
}

static void
ex_usage(FILE *out, const char *prog, const char *participant)
{
	fprintf(out,
	    "usage: %s --db CONNINFO [--url URLS] [--capacity N] [--verbose]\n"
	    "Example participant \"%s\" of the shop.OrderSaga saga.\n"
	    "  --db CONNINFO  its own PostgreSQL database (default $SHOP_DB); its\n"
	    "                 tables and the barrier table are created if missing\n"
	    "  --url URLS     sagad address (default $SAGA_URL, else %s), or\n"
	    "                 several, separated by commas: every instance is served;\n"
	    "                 for tls+tcp:// URLs $SAGA_TLS_CA, $SAGA_TLS_CERT,\n"
	    "                 $SAGA_TLS_KEY and $SAGA_TLS_SERVER_NAME as for sagactl\n"
	    "  --capacity N   steps run at once (default: libsaga's, 16)\n"
	    "  --verbose      also print libsaga's debug lines\n"
	    "Prints one line per handled step to stdout; libsaga's log goes to\n"
	    "stderr. Stops cleanly on SIGINT or SIGTERM.\n",
	    prog, participant, SAGA_DEFAULT_URL);
}

static int
ex_parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (s[0] == '\0' || s[0] == '-')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* Applies the barrier table and the participant's schema. */
static int
ex_migrate(const char *prog, const char *schema_sql)
{
	char err[600];
	PGconn *c = PQconnectdb(ex_conninfo);
	int ok = 0;
	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "%s: --db: cannot connect: %s", prog,
		    c ? PQerrorMessage(c) : "out of memory\n");
	} else if (saga_barrier_migrate(c, err, sizeof(err)) != SAGA_OK) {
		fprintf(stderr, "%s: --db: cannot create the barrier table: %s\n", prog, err);
	} else {
		/* Replicas may start at once: one creates the tables at a
		 * time (CREATE TABLE IF NOT EXISTS alone races). */
		PGresult *r = PQexec(c,
		    "BEGIN; SET LOCAL client_min_messages = warning;"
		    " SELECT pg_advisory_xact_lock(7001)");
		PQclear(r);
		r = PQexec(c, schema_sql);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			PQclear(r);
			r = PQexec(c, "COMMIT");
		}
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			fprintf(stderr, "%s: --db: cannot create the tables: %s", prog,
			    PQresultErrorMessage(r));
		else
			ok = 1;
		PQclear(r);
	}
	PQfinish(c);
	return ok;
}

int
ex_participant_main(int argc, char **argv, const char *participant, const char *schema_sql,
    const ex_handler *handlers, size_t n)
{
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "url", required_argument, NULL, 'u' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *prog = argc > 0 && argv[0] != NULL ? argv[0] : participant;
	const char *url = ex_default_url();
	uint32_t capacity = 0;
	struct sigaction sa, old_int, old_term;
	saga_worker *w = NULL;
	int opt, rv, status = 1;
	size_t i;

	/* Keep just the base name for log prefixes. */
	if (strrchr(prog, '/') != NULL)
		prog = strrchr(prog, '/') + 1;

	ex_conninfo = getenv("SHOP_DB");
	while ((opt = getopt_long(argc, argv, "d:u:c:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			ex_conninfo = optarg;
			break;
		case 'u':
			url = optarg;
			break;
		case 'c':
			if (ex_parse_u32(optarg, &capacity) != 0 || capacity == 0) {
				fprintf(stderr, "%s: --capacity: not a positive number: %s\n", prog,
				    optarg);
				return 2;
			}
			break;
		case 'v':
			ex_set_log_level(SAGA_LOG_DEBUG);
			break;
		case 'h':
			ex_usage(stdout, prog, participant);
			return 0;
		default:
			ex_usage(stderr, prog, participant);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument: %s\n", prog, argv[optind]);
		ex_usage(stderr, prog, participant);
		return 2;
	}

	if (ex_conninfo == NULL || ex_conninfo[0] == '\0') {
		fprintf(stderr,
		    "%s: no database: give --db CONNINFO (or set SHOP_DB), e.g. "
		    "--db 'host=/tmp dbname=shop'\n",
		    prog);
		return 2;
	}
	if (!ex_migrate(prog, schema_sql))
		return 1;

	if ((rv = saga_worker_new(url, participant, &w)) != SAGA_OK) {
		char why[512] = "";
		if (rv == SAGA_EINVAL)
			saga_url_list_check(url, why, sizeof(why));
		fprintf(stderr, "%s: cannot create worker: %s%s%s\n", prog, saga_strerror(rv),
		    why[0] != '\0' ? ": " : "", why);
		return 1;
	}
	saga_worker_set_log(w, ex_log, (void *)prog);
	if (!ex_tls_from_env(prog, NULL, w)) {
		rv = SAGA_EINVAL;
		goto out;
	}
	if (capacity != 0 && (rv = saga_worker_set_capacity(w, capacity)) != SAGA_OK) {
		fprintf(stderr, "%s: --capacity %u: %s: %s\n", prog, capacity, saga_strerror(rv),
		    saga_worker_errmsg(w));
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (handlers[i].kind == SAGA_ACTION)
			rv = saga_worker_on_action(w, handlers[i].rpc, handlers[i].fn, NULL);
		else
			rv = saga_worker_on_compensation(w, handlers[i].rpc, handlers[i].fn, NULL);
		if (rv != SAGA_OK) {
			fprintf(stderr, "%s: cannot register handler %s: %s: %s\n", prog,
			    handlers[i].rpc, saga_strerror(rv), saga_worker_errmsg(w));
			goto out;
		}
	}

	ex_worker = w;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ex_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	fprintf(stderr, "%s: participant \"%s\" serving at %s\n", prog, participant, url);
	rv = saga_worker_run(w);

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	ex_worker = NULL;

	if (rv != SAGA_OK) {
		fprintf(stderr, "%s: worker stopped: %s: %s\n", prog, saga_strerror(rv),
		    saga_worker_errmsg(w));
		goto out;
	}
	fprintf(stderr, "%s: stopped\n", prog);
	status = 0;
out:
	saga_worker_free(w);
	return status;
}
