/*
 * sagad: the saga orchestrator daemon.
 *
 * Start-up order matters: database (embedded or given), migrations,
 * definitions, unfinished sagas (engine_init), and only then the network,
 * so no request is ever served from a half-loaded state. Shutdown
 * (SIGTERM/SIGINT) is the reverse: refuse new work, stop dispatching, let
 * the outcomes of steps in flight land (up to shutdown_grace_ms), commit
 * what is open, stop. Steps still unanswered then stay owed in the
 * database and are sent again on the next start. SIGHUP reloads the
 * settings that can change live (config.h).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "engine.h"
#include "forward.h"
#include "http.h"
#include "log.h"
#include "otel.h"
#include "migrate.h"
#include "pgembed.h"
#include "reader.h"
#include "registry.h"
#include "route.h"
#include "rpc.h"
#include "sdnotify.h"
#include "shards.h"
#include "names.h"
#include "saga_base.h"
#include "store.h"
#include "tls.h"
#include "token.h"

#define EXIT_USAGE 64

#define EXIT_CONFIG 78 /* sysexits.h: configuration error */

static sigset_t sigs;
static const cfg *g_cfg; /* for the close watchdog */
static int g_embedded;
static cfg *g_running; /* the settings in force, for SIGHUP */
static int g_argc;
static char **g_argv;

/* SIGHUP: read the config file, environment and flags again; apply the
 * settings that can change live, and name the others that changed (they
 * need a restart). A file that does not parse changes nothing. */
static void
reload(void)
{
	char err[1024] = "", changed[512], restart[512];

	if (cfg_reload(g_running, g_argc, g_argv, changed, sizeof(changed), restart,
		sizeof(restart), err, sizeof(err)) != 0) {
		slog_error("SIGHUP: settings not reloaded, the running ones stay: %s", err);
		return;
	}
	slog_init(
	    slog_parse_level(g_running->log_level), slog_parse_format(g_running->log_format), NULL);
	engine_reload(g_running);
	rpc_tls_reload(g_running); /* reads the TLS files again even if unchanged */
	if (restart[0] != '\0')
		slog_warn("SIGHUP: changed but applied only at a restart: %s", restart);
	slog_info("SIGHUP: settings reloaded%s%s", changed[0] ? "; applied: " : ", none changed",
	    changed);
}

static void *
signal_main(void *arg)
{
	(void)arg;
	for (;;) {
		int sig = 0;
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload();
			continue;
		}
		slog_info("signal %d: shutting down", sig);
		sdn_send("STOPPING=1\nSTATUS=draining");
		rpc_stop_receiving();
		engine_stop();
		return NULL;
	}
}

/* nng 1.5.2's nng_close can hang for good when a message arrives while
 * the socket closes (nng issue 1543). By the time we close, every batch is
 * committed, so a close that does not finish in time is cut short: nothing
 * is lost by exiting. */
static void *
close_watchdog(void *arg)
{
	struct timespec ts = { 5, 0 };
	(void)arg;
	nanosleep(&ts, NULL);
	slog_warn("closing the network endpoint hangs (nng 1.5.2 bug); exiting anyway");
	if (g_embedded)
		pgembed_stop(g_cfg->data_dir, g_cfg->pg_bindir, g_cfg->pg_user);
	_exit(0);
	return NULL;
}

static int
prepare_database(const cfg *c, char *conninfo, size_t len, int *embedded)
{
	char err[1024] = "";
	int rv;
	if (c->db[0] == '\0') {
		slog_info("no --db given: using the embedded PostgreSQL in %s", c->data_dir);
		rv = pgembed_start(
		    c->data_dir, c->pg_bindir, c->pg_user, conninfo, len, err, sizeof(err));
		if (rv != 0) {
			slog_error("embedded PostgreSQL: %s", err);
			return rv;
		}
		*embedded = 1;
	} else {
		snprintf(conninfo, len, "%s", c->db);
	}
	PGconn *conn = store_connect(conninfo, "sagad-migrate", err, sizeof(err));
	if (conn == NULL) {
		slog_error("%s", err);
		return SAGA_EDB;
	}
	int applied = 0;
	rv = migrate_apply(conn, &applied, err, sizeof(err));
	if (rv != 0) {
		slog_error("migrations: %s", err);
		PQfinish(conn);
		return rv;
	}
	if (applied > 0)
		slog_info("applied %d migration(s)", applied);
	if (strcmp(c->command, "migrate") != 0) {
		rv = store_load_definitions(conn, err, sizeof(err));
		if (rv != 0)
			slog_error("loading definitions: %s", err);
		else
			slog_info("loaded %zu definition version(s)", registry_count());
		if (rv == 0 && (rv = tok_load(conn, err, sizeof(err))) != 0)
			slog_error("%s", err);
	}
	PQfinish(conn);
	return rv;
}

int
main(int argc, char **argv)
{
	cfg c;
	char err[1024] = "";
	char conninfo[2048] = "";
	int embedded = 0;
	int rv;

	memset(&c, 0, sizeof(c));
	if (cfg_parse(&c, argc, argv, err, sizeof(err)) != 0) {
		fprintf(stderr, "sagad: %s\n", err);
		cfg_free(&c);
		return EXIT_USAGE;
	}
	if (strcmp(c.command, "help") == 0) {
		cfg_usage(stdout);
		cfg_free(&c);
		return 0;
	}
	if (strcmp(c.command, "version") == 0) {
		printf("sagad %s\n", cm_version());
		cfg_free(&c);
		return 0;
	}
	if (strcmp(c.command, "print-config") == 0) {
		cfg_write_documented(stdout);
		cfg_free(&c);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (geteuid() == 0 && !c.allow_root) {
		fprintf(stderr,
		    "sagad: refusing to run as root. Run it as an unprivileged user (the\n"
		    "systemd unit and the container image do), or pass --allow-root\n"
		    "(SAGAD_ALLOW_ROOT=true) if you must, e.g. in a throwaway VM.\n");
		cfg_free(&c);
		return EXIT_CONFIG;
	}
	if (strcmp(c.command, "run") == 0 && (rv = auth_check_listen(&c, err, sizeof(err))) != 0) {
		fprintf(stderr, "sagad: %s\n", err);
		cfg_free(&c);
		return EXIT_CONFIG;
	}
	g_running = &c;
	g_argc = argc;
	g_argv = argv;
	slog_init(slog_parse_level(c.log_level), slog_parse_format(c.log_format), NULL);
	if (c.config[0] != '\0')
		slog_info(
		    "settings read from %s (flags and SAGAD_* variables override it)", c.config);

	/* Signals go to one thread; every other thread blocks them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (strcmp(c.command, "run") == 0) {
		/* Before the database: a TLS setting that cannot work is
		 * found in a second, with a message that says what to set.
		 * After the signal mask: this starts nng's threads, which
		 * must not take SIGHUP (its default action ends the process). */
		nng_tls_config *tls = NULL;
		if (tls_wanted(&c)) {
			rv = tls_server_config(&c, &tls, err, sizeof(err));
			if (tls != NULL)
				nng_tls_config_free(tls);
		} else {
			rv = tls_check_settings(&c, err, sizeof(err));
		}
		if (rv != 0) {
			fprintf(stderr, "sagad: %s\n", err);
			cfg_free(&c);
			return EXIT_CONFIG;
		}
	}

	registry_init();
	if ((rv = prepare_database(&c, conninfo, sizeof(conninfo), &embedded)) != 0)
		goto out;
	if (strcmp(c.command, "migrate") == 0) {
		slog_info("database schema is up to date");
		goto out;
	}
	/* Before the engine: sagas recovered at start end their spans too. */
	if ((rv = otel_start(&c, c.instance_id, err, sizeof(err))) != 0) {
		slog_error("%s", err);
		goto out;
	}
	if ((rv = engine_init(&c, conninfo, err, sizeof(err))) != 0) {
		slog_error("engine: %s", err);
		goto out;
	}
	/* Claims this instance's shards and loads their unfinished sagas
	 * before anything is served. */
	if ((rv = shd_start(&c, conninfo, err, sizeof(err))) != 0) {
		slog_error("shards: %s", err);
		goto out_readers;
	}
	if ((rv = fwd_start(&c, conninfo, err, sizeof(err))) != 0) {
		slog_error("%s", err);
		goto out_readers;
	}
	if ((rv = reader_start(&c, conninfo, err, sizeof(err))) != 0) {
		slog_error("readers: %s", err);
		goto out_readers;
	}
	/* Principals before the network: no request is served unchecked. */
	if ((rv = auth_start(&c, conninfo, err, sizeof(err))) != 0) {
		slog_error("auth: %s", err);
		goto out_readers;
	}
	if ((rv = rpc_start(&c, route_request, engine_pipe_closed, NULL, err, sizeof(err))) != 0) {
		slog_error("%s", err);
		goto out_rpc;
	}
	if ((rv = http_start(&c, err, sizeof(err))) != 0) {
		slog_error("%s", err);
		goto out_rpc;
	}
	pthread_t sigthr;
	pthread_create(&sigthr, NULL, signal_main, NULL);
	slog_info("sagad %s ready", cm_version());
	sdn_send("READY=1\nSTATUS=serving");
	sdn_watchdog_start(engine_alive_ms);

	engine_run();
	sdn_watchdog_stop();
	/* Everything is committed: hand the shards over now, so that the
	 * other instances do not wait for the leases to expire. */
	shd_stop();
	fwd_stop();
	http_stop();
	pthread_join(sigthr, NULL);
	slog_info("stopped");
	rv = 0;
out_rpc:
	/* Readers before the endpoint: one may be storing a register with its
	 * request in hand, and rpc_close frees every request. A reader
	 * finishes what it is doing and answers; what is queued is refused. */
	shd_stop(); /* done already after a normal stop */
	fwd_stop();
	reader_stop();
	if (rv == 0) {
		pthread_t wd;
		g_cfg = &c;
		g_embedded = embedded;
		if (pthread_create(&wd, NULL, close_watchdog, NULL) == 0)
			pthread_detach(wd);
	}
	rpc_close();
	auth_stop();
	engine_fini();
	goto out;
out_readers:
	shd_stop();
	fwd_stop();
	reader_stop();
	auth_stop();
	engine_fini();
out:
	/* Last: no saga moves any more. Bounded (otel.h) even when the
	 * collector is down or never answers. */
	otel_stop();
	if (embedded)
		pgembed_stop(c.data_dir, c.pg_bindir, c.pg_user);
	registry_fini();
	tok_fini();
	cfg_free(&c);
	return rv == 0 ? 0 : 1;
}
