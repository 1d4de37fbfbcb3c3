/*
 * th_sagad: the integration tests' world around one test case, on top of
 * th.h. Prefix ths_.
 *
 * A ths is one test case's setup: a temp dir, a fresh database in the
 * shared cluster, a real `sagad` listening on ipc://<dir>/s.sock, real
 * `test-participant` processes journaling to <dir>/journal, and a libsaga
 * client. Programs come from the environment meson gives the tests:
 *   SAGAD_BIN, SAGACTL_BIN, TEST_PARTICIPANT_BIN, IT_SAGAS (the compiled
 *   tests/integration/sagas.proto), IT_FIXTURES (tests/fixtures build dir).
 *
 * Functions named *_ok assert with Check (ck_assert_msg) and so may only
 * be called from a test function; the others return 0 / a value and print
 * why they failed. If a test fails (so never reaches ths_free), its temp
 * dir is kept for inspection and ths_runner_end() prints the tails of
 * sagad's and the participants' logs.
 *
 * Processes are started from the calling thread, which must be the test's
 * own (th.h: PR_SET_PDEATHSIG).
 */
#ifndef TH_SAGAD_H
#define TH_SAGAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "saga.h"
#include "th.h"

typedef struct ths ths;

/* Around srunner_run_all() in main(): ths_runner_end() prints the logs of
 * every world whose test failed (its dir was not removed by ths_free),
 * stops what such a test left behind, and returns how many there were. */
void ths_runner_begin(void);
int ths_runner_end(void);

/* The value of environment variable name; fails the test if unset. */
const char *ths_env_ok(const char *name);

/* A new world for one test: temp dir, database dbname (dropped and made
 * afresh in pg), paths. Starts nothing. */
ths *ths_new_ok(th_pg *pg, const char *dbname);
/* Stops every process it started (participants first, then sagad),
 * removes the temp dir, frees. */
void ths_free(ths *t);

/* A world made with pg NULL gets its database from here (e.g. a multi-host
 * conninfo). */
void ths_set_conninfo(ths *t, const char *conninfo);
const char *ths_dir(const ths *t);
const char *ths_url(const ths *t);
const char *ths_conninfo(const ths *t);
const char *ths_journal_path(const ths *t);
const char *ths_sagad_log(const ths *t);
pid_t ths_sagad_pid(const ths *t);

/* Starts sagad (--db <conninfo> --listen <url> --log-level debug, then
 * extra, NULL-terminated, may be NULL) and waits up to 30 s until it
 * answers a list. */
void ths_sagad_start_ok(ths *t, const char *const extra[]);
/* Like ths_sagad_start_ok but with exactly argv after the program name
 * (no --db added), e.g. for the embedded default; waits up to wait_ms. */
void ths_sagad_start_args_ok(ths *t, const char *const args[], int wait_ms);
/* Sends sig to sagad and waits for it to exit (10 s, then SIGKILL).
 * Returns the waitpid status. */
int ths_sagad_signal(ths *t, int sig);
/* Waits up to timeout_ms (0 = just look) for sagad to exit by itself (a
 * failpoint): 0 if it did (*status, may be NULL, gets the waitpid status;
 * it can be started again), -1 if it still runs. */
int ths_sagad_wait_exit(ths *t, int timeout_ms, int *status);
/* Starts sagad like ths_sagad_start_ok without waiting for it to answer
 * (one that may die at a failpoint before it does). */
void ths_sagad_start_nowait(ths *t, const char *const extra[]);
/* Waits until the sagad at the world's URL answers a list (timeout_ms). */
int ths_wait_ready(ths *t, int timeout_ms);
/* A PostgreSQL that sagad started itself (the embedded default) and that
 * outlives sagad by design: killed at ths_free or when the test fails. */
void ths_track_postmaster(ths *t, const char *pgdata);

/* Starts a test-participant process serving the participant names in
 * names (NULL-terminated; NULL = every name sagas.proto uses: pA pB pC
 * pD pT) as replica `instance` with the given capacity. Its log is
 * <dir>/part-<instance>.log. Returns its pid. */
pid_t ths_participant_ok(
    ths *t, const char *instance, uint32_t capacity, const char *const names[]);
/* The same, dialing sagad at urls (a URL list, see saga.h) instead of the
 * world's URL. */
pid_t ths_participant_at_ok(
    ths *t, const char *urls, const char *instance, uint32_t capacity, const char *const names[]);
/* Signals a participant and waits for it to exit (SIGKILL after 10 s);
 * returns the waitpid status. */
int ths_participant_signal(ths *t, pid_t pid, int sig);
/* Nonzero if pid (a participant of t) has exited; reaps it. */
int ths_participant_exited(ths *t, pid_t pid);

/* The world's client (made on first use; 10 s per call). */
saga_client *ths_client(ths *t);
/* A loopback TCP port free right now. */
int ths_free_port(void);
/* GET path from 127.0.0.1:port over HTTP/1.1 (5 s receive timeout): the
 * whole response, headers included (caller frees). */
char *ths_http_get(int port, const char *path);
/* The same without asserting (any thread may call it): the reply (status
 * line first, at most 4095 bytes) or "" if none came within timeout_ms;
 * *ms gets how long it took (caller frees). */
char *ths_http_get_timed(int port, const char *path, int timeout_ms, long long *ms);
/* A new client of the world (of urls; NULL = the world's URL) with its TLS
 * settings and credential, for tests that need a client of their own
 * (caller frees). */
saga_client *ths_client_new(ths *t, const char *urls);

/* Registers the descriptor set at path; asserts success. */
void ths_register_file_ok(ths *t, const char *path);
/* Registers sagas.proto (IT_SAGAS). */
void ths_register_sagas_ok(ths *t);
/* Starts definition with input (text); asserts success; caller frees the
 * id with saga_string_free. */
char *ths_start_ok(ths *t, const char *definition, const char *input);
/* Waits up to timeout_ms for the saga to be final; asserts it is, and
 * returns its status (caller frees with saga_info_free). */
saga_info *ths_wait_final_ok(ths *t, const char *saga_id, int timeout_ms);
/* The named step of a status, or fails the test. */
const saga_step_info *ths_step_ok(const saga_info *info, const char *name);
/* Polls get until step `step` of the saga is in state st (timeout_ms). */
void ths_wait_step_state_ok(
    ths *t, const char *saga_id, const char *step, saga_step_state st, int timeout_ms);

/* ---- TLS (docs/SECURITY.md) ---------------------------------------------- */

/* Makes the world's URL tls+tcp:// (same host and port) and has everything
 * the world starts trust ca: its client (ths_client and the readiness check
 * of ths_sagad_start_ok), its participants (--tls-* of test-participant)
 * and ths_sagactl (--tls-* options). cert/key: the client certificate they
 * show (NULL = none); server_name NULL = the URL's host. Call before
 * starting anything. sagad's own TLS settings are the test's extra
 * arguments. */
void ths_use_tls(
    ths *t, const char *ca, const char *cert, const char *key, const char *server_name);

/* ---- several sagads on the world's database (docs/SCALING.md) ----------- */

#define THS_MAX_SAGADS 4

/* Instance 0 is the world's own sagad (ths_sagad_start_ok, ths_url);
 * instances 1..THS_MAX_SAGADS-1 listen on ports of their own and log to
 * <dir>/sagad-<i>.log. Every instance i gets --instance-id inst<i> (kept
 * across its restarts), then the standard arguments and extra. Waits up to
 * 30 s until it answers. */
void ths_sagad_n_start_ok(ths *t, int i, const char *const extra[]);
/* Sends sig to instance i; for a signal that ends it, waits for it to exit
 * (10 s, then SIGKILL) and returns the waitpid status; for SIGSTOP and
 * SIGCONT returns 0 at once. */
int ths_sagad_n_signal(ths *t, int i, int sig);
/* 0 if instance i has exited (*status gets the waitpid status), -1 if it
 * still runs after timeout_ms. */
int ths_sagad_n_wait_exit(ths *t, int i, int timeout_ms, int *status);
pid_t ths_sagad_n_pid(const ths *t, int i);
const char *ths_sagad_n_url(const ths *t, int i);
const char *ths_sagad_n_log(const ths *t, int i);
/* The URLs of instances 0..n-1, comma-separated (for clients and workers
 * that serve them all). */
const char *ths_urls(ths *t, int n);

/* ---- the participants' journal (see test_participant.c) ------------------ */

#define THS_MAX_DEPS 8

typedef struct ths_jline {
	char saga_id[40];
	char kind; /* 'a' action, 'c' compensation */
	char rpc[64];
	unsigned attempt;
	char instance[64];
	char outcome[16];       /* ok retry fail crash */
	long long t0_us, t1_us; /* handler entry, decision */
	char traceparent[64];   /* as the handler got it; "-" if none */
	size_t n_deps;
	char dep_step[THS_MAX_DEPS][64];
	char dep_val[THS_MAX_DEPS][128];
} ths_jline;

typedef struct ths_journal {
	size_t n;
	ths_jline *lines; /* in file order */
} ths_journal;

/* Reads and parses the journal (an empty journal if it does not exist
 * yet); asserts every line parses. */
ths_journal *ths_journal_read_ok(ths *t);
void ths_journal_free(ths_journal *j);
/* Lines matching saga_id (NULL any), kind (0 any), rpc (NULL any) and
 * outcome (NULL any). */
int ths_journal_count(
    const ths_journal *j, const char *saga_id, char kind, const char *rpc, const char *outcome);
/* Index of the first matching line at or after `from`, or -1. */
int ths_journal_find(const ths_journal *j, size_t from, const char *saga_id, char kind,
    const char *rpc, const char *outcome);
/* The result a line carried for step, or NULL. */
const char *ths_jline_dep(const ths_jline *l, const char *step);
/* Polls the journal until count(saga_id, kind, rpc, outcome) >= n. */
void ths_journal_wait_ok(ths *t, const char *saga_id, char kind, const char *rpc,
    const char *outcome, int n, int timeout_ms);

/* ---- auth (docs/SECURITY.md) ----------------------------------------------- */

/* From now on the world's sagads (every instance) start with --auth on and
 * --data-dir <dir>/data, so the bootstrap admin's credential is
 * <dir>/data/bootstrap-admin.credential. Once one has started, the world's
 * client and sagactl runs use the credential set with ths_set_credential,
 * else the bootstrap admin's; each participant started with
 * ths_participant_ok gets, per name, a principal `part-NAME` of role
 * participant:NAME made on first use (its credential in
 * <dir>/creds/NAME.credential). Call before the first start. With
 * THS_AUTH=1 in the environment every world starts this way (a whole suite
 * with credentials: `THS_AUTH=1 meson test -C build it-lifecycle`). */
void ths_auth_on(ths *t);
/* The bootstrap admin's credential (read from its file; sagad must have
 * started with auth on). Owned by t. */
const char *ths_admin_credential_ok(ths *t);
/* Makes a principal with the admin's credential: role "participant",
 * "client", "operator" or "admin"; participant NULL = name (role
 * participant only); definitions comma-separated or NULL. Returns its
 * credential (caller frees). */
char *ths_principal_ok(
    ths *t, const char *name, const char *role, const char *participant, const char *definitions);
/* The credential of the world's client and of sagactl runs from now on;
 * NULL = back to the default (the admin's with auth on, else none). */
void ths_set_credential(ths *t, const char *credential);
/* The path of a file holding the credential of the world's client (for
 * sagactl --credential-file); NULL when there is none. */
const char *ths_credential_file(ths *t);

/* ---- misc --------------------------------------------------------------- */

/* Runs sagactl with --url <url> (and, with a credential, --credential-file:
 * see ths_auth_on) and args (NULL-terminated); stdout into
 * *out (may be NULL; caller frees). Returns the exit status (or -1 if it
 * did not exit normally within 30 s). */
int ths_sagactl(ths *t, const char *const args[], char **out);
/* What the last ths_sagactl run wrote to stderr (caller frees). */
char *ths_sagactl_stderr(const ths *t);

/* Nonzero if haystack contains needle, ignoring case. */
int ths_contains(const char *haystack, const char *needle);

#endif
