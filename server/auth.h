/*
 * auth: principals, credentials and roles (docs/SECURITY.md). Prefix auth_.
 *
 * A principal is a name with a role and a credential "<id>.<secret>" (id:
 * 16 hex characters; secret: 32 random bytes in base64url). PostgreSQL
 * keeps them (migrations/003_principals.sql) with only the SHA-256 of the
 * secret. sagad keeps the active principals in memory, reloaded at once
 * when this instance changes them and polled every AUTH_POLL_MS for the
 * changes of other instances, so a revocation takes effect everywhere
 * within that time.
 *
 * With auth on, route.c calls auth_check() for every request from the
 * network before it reaches the engine or a reader: no valid credential is
 * SAGA_EAUTH, a role that does not allow the request SAGA_EPERM. Refusals
 * are logged (rate-limited) with who and what, and change nothing.
 *
 * The roles: participant:NAME may poll and report as NAME only; client may
 * start, get, wait, list, describe and see participants (a principal may be
 * limited to some definitions); operator may also cancel and operate; admin
 * may also register definitions, manage principals and reveal sensitive
 * fields. Each of client, operator, admin allows what the one before does.
 */
#ifndef SAGAD_AUTH_H
#define SAGAD_AUTH_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rpc.h"

/* Revocations by another instance take effect within this time. */
#define AUTH_POLL_MS 2000

/* Longest principal name, participant name and definition name kept. */
#define AUTH_NAME_MAX 128

typedef enum auth_role {
	AUTH_ANY = 0,         /* no credential needed (nothing uses it today) */
	AUTH_PARTICIPANT = 1, /* participant:NAME: poll and report as NAME */
	AUTH_CLIENT = 2,      /* start, get, wait, list, describe, participants */
	AUTH_OPERATOR = 3,    /* also cancel and operate */
	AUTH_ADMIN = 4,       /* also register, principals, reveal */
} auth_role;

/* "participant", "client", "operator", "admin"; "none" otherwise. */
const char *auth_role_name(auth_role r);
/* The role named, or -1. */
int auth_role_parse(const char *s);

/* With c->auth on: loads the principals, creates the bootstrap admin if
 * there is no active admin (writing its credential to the bootstrap file;
 * the database decides which of several instances does), and starts the
 * poller. With auth off does nothing. */
int auth_start(const cfg *c, const char *conninfo, char *err, size_t errlen);
void auth_stop(void);
bool auth_enabled(void);

/* Does the listen URL reach only this machine (127.0.0.0/8, ::1,
 * localhost, ipc://, inproc://, abstract://)? */
bool auth_url_is_local(const char *url);
/* With auth off and insecure off: 0 if every URL of c->listen is local,
 * else SAGA_EINVAL with a message saying how to set auth up. */
int auth_check_listen(const cfg *c, char *err, size_t errlen);

/* Checks r's credential and role for a request that needs `need` (see
 * route.c). Returns 0 when allowed (r->auth filled in, the credential
 * wiped from the request), else answers r with SAGA_EAUTH or SAGA_EPERM
 * and returns that code. Call only with auth on. */
int auth_check(rpc_req *r, auth_role need);

/* Parses "<16 hex>.<43 base64url>" (nothing else is a credential):
 * 0 and the id (17 bytes with NUL) and secret (pointer into cred, its
 * length) or SAGA_EAUTH. For the fuzz target too. */
int auth_parse_credential(
    const char *cred, size_t len, char id[17], const char **secret, size_t *secret_len);

/* Requests refused since start: SAGA_EAUTH, SAGA_EPERM (for /metrics,
 * sagad_requests_refused_total). */
void auth_refusals(uint64_t *unauthenticated, uint64_t *denied);

/* May this request see sensitive fields? True with auth off, or for an
 * admin. (rpc_may_reveal's answer once the parts are merged.) */
bool auth_may_reveal(const rpc_req *r);
/* Does the caller's definition limit allow definition d? (true when
 * there is none.) */
bool auth_definition_allowed(const rpc_req *r, const char *d);

/* For tests and the fuzz target: adds an active principal with this
 * credential to the cache, as if loaded from the database (participant:
 * role participant's name; defs: names each followed by '\n', or NULL).
 * 0, or SAGA_EINVAL for a credential of the wrong form. */
int auth_cache_add(
    const char *credential, auth_role role, const char *participant, const char *defs);

/* PrincipalRequest, on a reader thread: create, list, revoke. */
void auth_principal_rpc(PGconn *c, rpc_req *r);

#endif
