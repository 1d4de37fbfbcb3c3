/* auth: principals, credentials and roles. See auth.h. */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "saga_base.h"
#include "store.h"
#include "utf8.h"
#include "wire.h"

#define ID_LEN     16 /* hex characters of a principal id */
#define SECRET_LEN 43 /* base64url characters of 32 bytes, no padding */
#define CRED_LEN   (ID_LEN + 1 + SECRET_LEN)

/* Refusals logged per window; the rest are counted and summed up once. */
#define REFUSALS_LOGGED    20
#define REFUSAL_WINDOW_MS  10000
#define BOOTSTRAP_NAME     "bootstrap"
#define BOOTSTRAP_FILENAME "bootstrap-admin.credential"

/* One active principal, as loaded. */
typedef struct principal {
	char id[ID_LEN + 1];
	char *name;
	int role;
	char *participant;
	char *defs; /* names each followed by '\n'; NULL = all */
	uint8_t sha[SHA256_DIGEST_LENGTH];
	/* The secret last verified against sha: the same secret again is
	 * compared, not hashed (the steady state costs one lookup). */
	char verified[SECRET_LEN + 1];
	bool has_verified;
} principal;

/* The active principals: an array and an open-addressing index by id. */
typedef struct pset {
	principal *p;
	size_t n;
	uint32_t *slots; /* index + 1; 0 = empty */
	size_t nslots;   /* a power of two, >= 2n */
	long long version, count;
} pset;

static struct {
	bool on;
	const cfg *cfg;
	char *conninfo;
	pthread_mutex_t mu; /* set, and each principal's verified secret */
	pset set;
	pthread_t thread;
	bool started;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	bool stop;
	/* refusal log limit */
	pthread_mutex_t log_mu;
	int64_t window_ms;
	unsigned logged, dropped;
	_Atomic uint64_t refused_auth, refused_perm; /* for /metrics */
} A = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.stop_mu = PTHREAD_MUTEX_INITIALIZER,
	.stop_cv = PTHREAD_COND_INITIALIZER,
	.log_mu = PTHREAD_MUTEX_INITIALIZER,
};

static const char *const role_names[] = { "none", "participant", "client", "operator", "admin" };

const char *
auth_role_name(auth_role r)
{
	return (int)r >= 0 && (size_t)r < sizeof(role_names) / sizeof(role_names[0]) ? role_names[r]
										     : "none";
}

int
auth_role_parse(const char *s)
{
	for (int i = AUTH_PARTICIPANT; i <= AUTH_ADMIN; i++)
		if (s != NULL && strcmp(s, role_names[i]) == 0)
			return i;
	return -1;
}

bool
auth_enabled(void)
{
	return A.on;
}

/* ---- credentials ---------------------------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool
b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '_';
}

int
auth_parse_credential(
    const char *cred, size_t len, char id[17], const char **secret, size_t *secret_len)
{
	if (cred == NULL || len != CRED_LEN || cred[ID_LEN] != '.')
		return SAGA_EAUTH;
	for (size_t i = 0; i < ID_LEN; i++)
		if (hexval(cred[i]) < 0)
			return SAGA_EAUTH;
	for (size_t i = ID_LEN + 1; i < len; i++)
		if (!b64url_char(cred[i]))
			return SAGA_EAUTH;
	memcpy(id, cred, ID_LEN);
	id[ID_LEN] = '\0';
	*secret = cred + ID_LEN + 1;
	*secret_len = SECRET_LEN;
	return 0;
}

static uint64_t
id_hash(const char *id)
{
	uint64_t h = 0;
	for (size_t i = 0; i < ID_LEN; i++)
		h = h << 4 | (uint64_t)hexval(id[i]);
	return h; /* random already */
}

static principal *
find_in(const pset *set, const char *id)
{
	if (set->nslots == 0)
		return NULL;
	size_t mask = set->nslots - 1;
	for (size_t i = (size_t)id_hash(id) & mask;; i = (i + 1) & mask) {
		uint32_t s = set->slots[i];
		if (s == 0)
			return NULL;
		if (memcmp(set->p[s - 1].id, id, ID_LEN) == 0)
			return &set->p[s - 1];
	}
}

/* 32 random bytes as 43 characters of base64url, and 8 as 16 hex: a new
 * credential into cred (CRED_LEN + 1) and the SHA-256 of its secret. */
static int
new_credential(char cred[CRED_LEN + 1], uint8_t sha[SHA256_DIGEST_LENGTH])
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t idb[8], sec[33];
	if (RAND_bytes(idb, sizeof(idb)) != 1 || RAND_bytes(sec, 32) != 1)
		return SAGA_EINTERNAL;
	sec[32] = 0;
	for (size_t i = 0; i < 8; i++)
		snprintf(cred + 2 * i, 3, "%02x", idb[i]);
	cred[ID_LEN] = '.';
	char *o = cred + ID_LEN + 1;
	size_t k = 0;
	for (size_t i = 0; i < 33 && k < SECRET_LEN; i += 3) {
		uint32_t v = (uint32_t)sec[i] << 16 | (uint32_t)sec[i + 1] << 8 |
		    (i + 2 < 33 ? sec[i + 2] : 0);
		for (int j = 3; j >= 0 && k < SECRET_LEN; j--)
			o[k++] = b64[(v >> (6 * j)) & 63];
	}
	cred[CRED_LEN] = '\0';
	SHA256((const unsigned char *)o, SECRET_LEN, sha);
	OPENSSL_cleanse(sec, sizeof(sec));
	return 0;
}

/* ---- the set of active principals ----------------------------------------------- */

static void
pset_free(pset *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->p[i].name);
		free(s->p[i].participant);
		free(s->p[i].defs);
		OPENSSL_cleanse(s->p[i].verified, sizeof(s->p[i].verified));
	}
	free(s->p);
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

static int
hexbyte(const char *s)
{
	int a = hexval(s[0] | 0x20), b = hexval(s[1] | 0x20);
	return a < 0 || b < 0 ? -1 : a * 16 + b;
}

/* The current version and count of the table (what the poller watches). */
static int
read_version(PGconn *c, long long *version, long long *count, char *err, size_t errlen)
{
	PGresult *r =
	    PQexecParams(c, "SELECT coalesce(max(version), 0), count(*) FROM saga_principals", 0,
		NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
		PQclear(r);
		return SAGA_EDB;
	}
	*version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	*count = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	PQclear(r);
	return 0;
}

/* Reads every active principal into a new set and swaps it in. */
static int
reload(PGconn *c, char *err, size_t errlen)
{
	pset ns;
	memset(&ns, 0, sizeof(ns));
	PGresult *r = PQexecParams(
	    c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL, NULL, NULL, 0);
	PQclear(r);
	int rv = read_version(c, &ns.version, &ns.count, err, errlen);
	if (rv != 0)
		goto out;
	r = PQexecParams(c,
	    "SELECT id, name, role, participant, array_to_string(definitions, E'\\n'),"
	    " encode(secret_sha256, 'hex'), cardinality(definitions)"
	    " FROM saga_principals WHERE revoked_at IS NULL",
	    0, NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
		PQclear(r);
		rv = SAGA_EDB;
		goto out;
	}
	size_t n = (size_t)PQntuples(r);
	ns.nslots = 16;
	while (ns.nslots < 2 * n)
		ns.nslots *= 2;
	ns.p = calloc(n ? n : 1, sizeof(*ns.p));
	ns.slots = calloc(ns.nslots, sizeof(*ns.slots));
	if (ns.p == NULL || ns.slots == NULL) {
		PQclear(r);
		rv = SAGA_ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		principal *p = &ns.p[ns.n];
		const char *id = PQgetvalue(r, (int)i, 0), *hex = PQgetvalue(r, (int)i, 5);
		if (strlen(id) != ID_LEN || strlen(hex) != 2 * SHA256_DIGEST_LENGTH)
			continue;
		memcpy(p->id, id, ID_LEN + 1);
		for (size_t k = 0; k < SHA256_DIGEST_LENGTH; k++)
			p->sha[k] = (uint8_t)hexbyte(hex + 2 * k);
		p->role = auth_role_parse(PQgetvalue(r, (int)i, 2));
		p->name = strdup(PQgetvalue(r, (int)i, 1));
		p->participant = strdup(PQgetvalue(r, (int)i, 3));
		if (atoi(PQgetvalue(r, (int)i, 6)) > 0) {
			const char *d = PQgetvalue(r, (int)i, 4);
			size_t dl = strlen(d);
			if ((p->defs = malloc(dl + 2)) != NULL) {
				memcpy(p->defs, d, dl);
				p->defs[dl] = '\n';
				p->defs[dl + 1] = '\0';
			}
		}
		ns.n++;
		if (p->name == NULL || p->participant == NULL || p->role < 0 ||
		    (atoi(PQgetvalue(r, (int)i, 6)) > 0 && p->defs == NULL)) {
			PQclear(r);
			rv = SAGA_ENOMEM;
			snprintf(err, errlen, "out of memory (or a bad role in the table)");
			goto out;
		}
		size_t mask = ns.nslots - 1, s = (size_t)id_hash(p->id) & mask;
		while (ns.slots[s] != 0)
			s = (s + 1) & mask;
		ns.slots[s] = (uint32_t)ns.n;
	}
	PQclear(r);
	pthread_mutex_lock(&A.mu);
	/* Keep what was verified for the principals still there. */
	for (size_t i = 0; i < A.set.n; i++) {
		principal *old = &A.set.p[i];
		if (!old->has_verified)
			continue;
		principal *nw = find_in(&ns, old->id);
		if (nw != NULL && memcmp(nw->sha, old->sha, sizeof(nw->sha)) == 0) {
			memcpy(nw->verified, old->verified, sizeof(nw->verified));
			nw->has_verified = true;
		}
	}
	size_t loaded = ns.n;
	long long version = ns.version;
	pset old = A.set;
	A.set = ns;
	memset(&ns, 0, sizeof(ns));
	pthread_mutex_unlock(&A.mu);
	slog_debug("principals loaded: %zu active (version %lld)", loaded, version);
	pset_free(&old);
out:
	pset_free(&ns);
	r = PQexecParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	PQclear(r);
	return rv;
}

int
auth_cache_add(const char *credential, auth_role role, const char *participant, const char *defs)
{
	char id[ID_LEN + 1];
	const char *secret;
	size_t slen;
	if (auth_parse_credential(credential, strlen(credential), id, &secret, &slen) != 0)
		return SAGA_EINVAL;
	pthread_mutex_lock(&A.mu);
	pset ns = A.set;
	size_t n = ns.n + 1, nslots = 16;
	while (nslots < 2 * n)
		nslots *= 2;
	principal *np = realloc(ns.p, n * sizeof(*np));
	uint32_t *slots = calloc(nslots, sizeof(*slots));
	if (np == NULL || slots == NULL) {
		if (np != NULL)
			A.set.p = np;
		free(slots);
		pthread_mutex_unlock(&A.mu);
		return SAGA_ENOMEM;
	}
	principal *p = &np[n - 1];
	memset(p, 0, sizeof(*p));
	memcpy(p->id, id, sizeof(p->id));
	SHA256((const unsigned char *)secret, slen, p->sha);
	p->role = role;
	p->name = strdup(id);
	p->participant = strdup(participant != NULL ? participant : "");
	p->defs = defs != NULL ? strdup(defs) : NULL;
	free(ns.slots);
	ns.p = np;
	ns.n = n;
	ns.slots = slots;
	ns.nslots = nslots;
	for (size_t i = 0; i < n; i++) {
		size_t mask = nslots - 1, k = (size_t)id_hash(np[i].id) & mask;
		while (slots[k] != 0)
			k = (k + 1) & mask;
		slots[k] = (uint32_t)(i + 1);
	}
	A.set = ns;
	pthread_mutex_unlock(&A.mu);
	return 0;
}

/* ---- the poller: other instances' changes ----------------------------------------- */

static void *
poller_main(void *arg)
{
	(void)arg;
	PGconn *c = NULL;
	bool warned = false;
	pthread_mutex_lock(&A.stop_mu);
	while (!A.stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(AUTH_POLL_MS % 1000) * 1000000L;
		ts.tv_sec += AUTH_POLL_MS / 1000 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&A.stop_cv, &A.stop_mu, &ts);
		if (A.stop)
			break;
		pthread_mutex_unlock(&A.stop_mu);
		char err[512] = "";
		long long v = 0, n = 0;
		int rv = SAGA_EDB;
		if (c == NULL || PQstatus(c) != CONNECTION_OK) {
			if (c != NULL)
				PQfinish(c);
			c = store_connect(A.conninfo, "sagad-auth", err, sizeof(err));
		}
		if (c != NULL && (rv = read_version(c, &v, &n, err, sizeof(err))) == 0) {
			pthread_mutex_lock(&A.mu);
			bool same = v == A.set.version && n == A.set.count;
			pthread_mutex_unlock(&A.mu);
			if (!same)
				rv = reload(c, err, sizeof(err));
		}
		if (rv != 0 && !warned)
			slog_warn(
			    "principals: cannot read changes (revocations made elsewhere wait "
			    "until the database answers): %s",
			    err);
		warned = rv != 0;
		pthread_mutex_lock(&A.stop_mu);
	}
	pthread_mutex_unlock(&A.stop_mu);
	if (c != NULL)
		PQfinish(c);
	return NULL;
}

/* ---- bootstrap ------------------------------------------------------------------ */

static int
write_secret_file(const char *path, const char *text, char *err, size_t errlen)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return SAGA_EINVAL;
	}
	size_t len = strlen(text);
	bool ok = fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len &&
	    write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return SAGA_EINVAL;
	}
	return 0;
}

/* With no active admin, creates `bootstrap` and writes its credential. The
 * INSERT decides among instances starting at once: the partial unique
 * index on active names lets one of them insert; the others insert
 * nothing (and see the admin the next time they load). */
static int
bootstrap(PGconn *c, char *err, size_t errlen)
{
	char cred[CRED_LEN + 1], shahex[2 * SHA256_DIGEST_LENGTH + 1];
	uint8_t sha[SHA256_DIGEST_LENGTH];
	if (new_credential(cred, sha) != 0) {
		snprintf(err, errlen, "no random bytes for a credential");
		return SAGA_EINTERNAL;
	}
	for (size_t i = 0; i < sizeof(sha); i++)
		snprintf(shahex + 2 * i, 3, "%02x", sha[i]);
	char id[ID_LEN + 1];
	memcpy(id, cred, ID_LEN);
	id[ID_LEN] = '\0';
	const char *v[3] = { id, BOOTSTRAP_NAME, shahex };
	PGresult *r = PQexecParams(c,
	    "INSERT INTO saga_principals (id, name, role, secret_sha256, created_by, version)"
	    " SELECT $1, $2, 'admin', decode($3, 'hex'), 'sagad',"
	    "  nextval('saga_principals_version')"
	    " WHERE NOT EXISTS (SELECT 1 FROM saga_principals"
	    "  WHERE role = 'admin' AND revoked_at IS NULL)"
	    " ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING RETURNING id",
	    3, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "creating the bootstrap admin: %s", PQresultErrorMessage(r));
		PQclear(r);
		OPENSSL_cleanse(cred, sizeof(cred));
		return SAGA_EDB;
	}
	int made = PQntuples(r);
	PQclear(r);
	int rv = 0;
	if (made == 1) {
		char path[4096];
		const char *f = A.cfg->bootstrap_credential_file;
		if (f[0] == '\0') {
			(void)mkdir(A.cfg->data_dir, 0700);
			snprintf(path, sizeof(path), "%s/%s", A.cfg->data_dir, BOOTSTRAP_FILENAME);
		} else {
			snprintf(path, sizeof(path), "%s", f);
		}
		rv = write_secret_file(path, cred, err, errlen);
		if (rv == 0) {
			slog_warn(
			    "auth: no active admin: created principal `%s` (admin, id %s); its "
			    "credential is in %s (mode 0600). Use it to create your own admin "
			    "(sagactl principal create), then revoke it",
			    BOOTSTRAP_NAME, id, path);
		} else {
			/* Nobody could use it: take it back, so the next start tries again. */
			const char *v1[1] = { id };
			r = PQexecParams(c, "DELETE FROM saga_principals WHERE id = $1", 1, NULL,
			    v1, NULL, NULL, 0);
			PQclear(r);
		}
	} else {
		r = PQexecParams(c,
		    "SELECT count(*) FROM saga_principals WHERE role = 'admin' AND revoked_at IS "
		    "NULL",
		    0, NULL, NULL, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) == 0)
			slog_error(
			    "auth: no active admin, and the name `%s` is taken by another "
			    "principal: revoke it (in the database) to get a bootstrap admin",
			    BOOTSTRAP_NAME);
		PQclear(r);
	}
	OPENSSL_cleanse(cred, sizeof(cred));
	return rv;
}

int
auth_start(const cfg *c, const char *conninfo, char *err, size_t errlen)
{
	A.cfg = c;
	A.on = strcmp(c->auth, "on") == 0;
	if (!A.on)
		return 0;
	if ((A.conninfo = strdup(conninfo)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	PGconn *conn = store_connect(conninfo, "sagad-auth", err, errlen);
	if (conn == NULL)
		return SAGA_EDB;
	int rv = bootstrap(conn, err, errlen);
	if (rv == 0)
		rv = reload(conn, err, errlen);
	PQfinish(conn);
	if (rv != 0)
		return rv;
	slog_info("auth on: %zu active principal(s); every request needs a credential", A.set.n);
	A.stop = false;
	if (pthread_create(&A.thread, NULL, poller_main, NULL) != 0) {
		snprintf(err, errlen, "cannot start the principals poller");
		return SAGA_ENOMEM;
	}
	A.started = true;
	return 0;
}

void
auth_stop(void)
{
	if (A.started) {
		pthread_mutex_lock(&A.stop_mu);
		A.stop = true;
		pthread_cond_signal(&A.stop_cv);
		pthread_mutex_unlock(&A.stop_mu);
		pthread_join(A.thread, NULL);
		A.started = false;
	}
	pthread_mutex_lock(&A.mu);
	pset_free(&A.set);
	pthread_mutex_unlock(&A.mu);
	free(A.conninfo);
	A.conninfo = NULL;
}

/* ---- listen URLs ---------------------------------------------------------------- */

bool
auth_url_is_local(const char *url)
{
	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0 ||
	    strncmp(url, "abstract://", 11) == 0)
		return true;
	const char *p = strstr(url, "://");
	if (p == NULL)
		return false;
	p += 3;
	char host[256];
	size_t n;
	if (*p == '[') {
		const char *e = strchr(p, ']');
		if (e == NULL)
			return false;
		n = (size_t)(e - p - 1);
		p++;
	} else {
		const char *e = strrchr(p, ':');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
	}
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, p, n);
	host[n] = '\0';
	/* nng's tcp://HOST;LOCAL:PORT is for dialers; a listener has one host. */
	if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
		return true;
	struct in_addr a;
	if (inet_pton(AF_INET, host, &a) == 1)
		return (ntohl(a.s_addr) >> 24) == 127;
	return false;
}

int
auth_check_listen(const cfg *c, char *err, size_t errlen)
{
	if (strcmp(c->auth, "on") == 0 || c->insecure)
		return 0;
	char *urls = strdup(c->listen), *save = NULL;
	if (urls == NULL) {
		snprintf(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	/* Mutual TLS admits only holders of a certificate from tls-ca: the
	 * network is kept out, though every holder may then do anything. */
	bool mtls = c->tls_client_auth[0] != '\0' ? strcmp(c->tls_client_auth, "required") == 0
						  : c->tls_ca[0] != '\0';
	int rv = 0;
	for (char *u = strtok_r(urls, ", ", &save); u; u = strtok_r(NULL, ", ", &save)) {
		if (auth_url_is_local(u) || (mtls && strncmp(u, "tls+tcp://", 10) == 0))
			continue;
		snprintf(err, errlen,
		    "refusing to listen on %s without authentication: anyone who reaches it could "
		    "start, read and cancel sagas and report as any participant. Set --auth on "
		    "(SAGAD_AUTH=on): sagad then creates a first admin credential in "
		    "DATA-DIR/" BOOTSTRAP_FILENAME " to make principals with `sagactl principal "
		    "create` (docs/SECURITY.md); or listen on tls+tcp:// with client certificates "
		    "required (--tls-ca, mutual TLS); or listen on 127.0.0.1 or ipc:// only; or, "
		    "for "
		    "a lab, pass --insecure",
		    u);
		rv = SAGA_EINVAL;
		break;
	}
	free(urls);
	return rv;
}

/* ---- the check of every request --------------------------------------------------- */

static const char *
what(const rpc_req *r)
{
	switch (r->req->body_case) {
	case SAGAWIRE__REQUEST__BODY_REGISTER:
		return "register";
	case SAGAWIRE__REQUEST__BODY_START:
		return "start";
	case SAGAWIRE__REQUEST__BODY_GET:
		return "get";
	case SAGAWIRE__REQUEST__BODY_LIST:
		return "list";
	case SAGAWIRE__REQUEST__BODY_CANCEL:
		return "cancel";
	case SAGAWIRE__REQUEST__BODY_WAIT:
		return "wait";
	case SAGAWIRE__REQUEST__BODY_PARTICIPANTS:
		return "participants";
	case SAGAWIRE__REQUEST__BODY_OPERATE:
		return "operate";
	case SAGAWIRE__REQUEST__BODY_DESCRIBE:
		return "describe";
	case SAGAWIRE__REQUEST__BODY_POLL:
		return "poll";
	case SAGAWIRE__REQUEST__BODY_REPORT:
		return "report";
	case SAGAWIRE__REQUEST__BODY_PRINCIPAL:
		return "principal";
	case SAGAWIRE__REQUEST__BODY_BATCH:
		return "batch";
	default:
		return "unknown";
	}
}

/* Logs a refusal, at most REFUSALS_LOGGED per window; the others are
 * counted and summed up in the first line of the next window. */
static void
log_refusal(const rpc_req *r, const char *who, const char *why)
{
	int64_t now = wire_mono_ms();
	unsigned dropped = 0;
	bool log = false, last = false;
	pthread_mutex_lock(&A.log_mu);
	if (now - A.window_ms >= REFUSAL_WINDOW_MS) {
		dropped = A.dropped;
		A.dropped = 0;
		A.logged = 0;
		A.window_ms = now;
	}
	if (A.logged < REFUSALS_LOGGED) {
		A.logged++;
		log = true;
		last = A.logged == REFUSALS_LOGGED;
	} else {
		A.dropped++;
	}
	pthread_mutex_unlock(&A.log_mu);
	if (dropped > 0)
		slog_warn("auth: %u more refusals in the last %d s were not logged", dropped,
		    REFUSAL_WINDOW_MS / 1000);
	if (log) {
		char peer[128];
		rpc_pipe_peer(r->pipe_id, peer, sizeof(peer));
		slog_warn("auth: refused %s from %s on connection %u (%s): %s%s", what(r), who,
		    r->pipe_id, peer, why,
		    last ? " (further refusals in the next 10 s are counted)" : "");
	}
}

/* Refuses r with code; the message names what and why, never the secret. */
static int
refuse(rpc_req *r, int code, const char *who, const char *why)
{
	atomic_fetch_add(code == SAGA_EAUTH ? &A.refused_auth : &A.refused_perm, 1);
	log_refusal(r, who, why);
	if (code == SAGA_EAUTH)
		rpc_reply_error(r, code, "not authenticated: %s", why);
	else
		rpc_reply_error(r, code, "permission denied: %s", why);
	return code;
}

static bool
defs_contain(const char *defs, const char *d)
{
	size_t n = strlen(d);
	for (const char *p = defs; p != NULL && *p != '\0';) {
		const char *e = strchr(p, '\n');
		if (e == NULL)
			break;
		if ((size_t)(e - p) == n && memcmp(p, d, n) == 0)
			return true;
		p = e + 1;
	}
	return false;
}

bool
auth_definition_allowed(const rpc_req *r, const char *d)
{
	return r->auth.defs == NULL || (d != NULL && defs_contain(r->auth.defs, d));
}

void
auth_refusals(uint64_t *unauthenticated, uint64_t *denied)
{
	*unauthenticated = atomic_load(&A.refused_auth);
	*denied = atomic_load(&A.refused_perm);
}

bool
auth_may_reveal(const rpc_req *r)
{
	return !A.on || r->forwarded || r->auth.role == AUTH_ADMIN;
}

int
auth_check(rpc_req *r, auth_role need)
{
	char *cred = r->req->credential;
	size_t len = cred != NULL ? strlen(cred) : 0;
	char id[ID_LEN + 1], who[AUTH_NAME_MAX + 64], why[AUTH_NAME_MAX * 2 + 128];
	const char *secret = NULL;
	size_t slen = 0;

	if (len == 0)
		return refuse(r, SAGA_EAUTH, "anonymous", "no credential");
	if (auth_parse_credential(cred, len, id, &secret, &slen) != 0) {
		OPENSSL_cleanse(cred, len);
		return refuse(r, SAGA_EAUTH, "anonymous",
		    "malformed credential (expected <16 hex>.<43 base64url characters>)");
	}
	pthread_mutex_lock(&A.mu);
	principal *p = find_in(&A.set, id);
	bool ok = false;
	if (p != NULL) {
		if (p->has_verified) {
			ok = CRYPTO_memcmp(p->verified, secret, SECRET_LEN) == 0;
		}
		if (!ok) {
			uint8_t sha[SHA256_DIGEST_LENGTH];
			SHA256((const unsigned char *)secret, slen, sha);
			ok = CRYPTO_memcmp(sha, p->sha, sizeof(sha)) == 0;
			if (ok) {
				memcpy(p->verified, secret, SECRET_LEN);
				p->verified[SECRET_LEN] = '\0';
				p->has_verified = true;
			}
		}
	}
	if (ok) {
		r->auth.role = p->role;
		memcpy(r->auth.id, p->id, sizeof(r->auth.id));
		snprintf(r->auth.name, sizeof(r->auth.name), "%s", p->name);
		if (p->defs != NULL && (r->auth.defs = strdup(p->defs)) == NULL)
			ok = false;
	}
	/* The participant name this principal may act as, for poll/report. */
	char part[AUTH_NAME_MAX + 1] = "";
	if (ok)
		snprintf(part, sizeof(part), "%s", p->participant);
	pthread_mutex_unlock(&A.mu);
	OPENSSL_cleanse(cred, len); /* never forwarded, stored or kept */
	if (!ok) {
		snprintf(who, sizeof(who), "credential id %s", id);
		return refuse(r, SAGA_EAUTH, who, "unknown or revoked credential");
	}
	snprintf(who, sizeof(who), "%s (%s, id %s)", r->auth.name, auth_role_name(r->auth.role),
	    r->auth.id);

	if (need == AUTH_PARTICIPANT) {
		const char *as = NULL;
		if (r->req->body_case == SAGAWIRE__REQUEST__BODY_POLL)
			as = r->req->poll->participant;
		else if (r->req->body_case == SAGAWIRE__REQUEST__BODY_REPORT)
			as = r->req->report->participant;
		if (r->auth.role != AUTH_PARTICIPANT) {
			snprintf(why, sizeof(why),
			    "only a participant principal may %s (this one is %s)", what(r),
			    auth_role_name(r->auth.role));
			return refuse(r, SAGA_EPERM, who, why);
		}
		if (as == NULL || strcmp(as, part) != 0) {
			snprintf(why, sizeof(why),
			    "participant:%.*s may not %s as participant '%.*s'", AUTH_NAME_MAX,
			    part, what(r), AUTH_NAME_MAX, as ? as : "");
			return refuse(r, SAGA_EPERM, who, why);
		}
		return 0;
	}
	if (r->auth.role < (int)need) {
		snprintf(why, sizeof(why), "%s needs role %s or above (this principal is %s)",
		    what(r), auth_role_name(need), auth_role_name(r->auth.role));
		return refuse(r, SAGA_EPERM, who, why);
	}
	/* Definition limits that the request itself shows; the others (a
	 * saga's definition, list and describe filters) are applied where
	 * the saga or the list is read (route.c, reader.c). */
	const char *d = NULL;
	if (r->req->body_case == SAGAWIRE__REQUEST__BODY_START)
		d = r->req->start->definition;
	else if (r->req->body_case == SAGAWIRE__REQUEST__BODY_LIST &&
	    r->req->list->definition[0] != '\0')
		d = r->req->list->definition;
	else if (r->req->body_case == SAGAWIRE__REQUEST__BODY_DESCRIBE &&
	    r->req->describe->definition[0] != '\0')
		d = r->req->describe->definition;
	if (d != NULL && !auth_definition_allowed(r, d)) {
		snprintf(why, sizeof(why), "principal %.*s may not %s sagas of definition %.*s",
		    AUTH_NAME_MAX, r->auth.name, what(r), AUTH_NAME_MAX, d);
		return refuse(r, SAGA_EPERM, who, why);
	}
	return 0;
}

/* ---- the principals RPC ----------------------------------------------------------- */

static bool
name_ok(const char *s, bool dots)
{
	size_t n = strlen(s);
	if (n == 0 || n > AUTH_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '_' || c == '-' || (dots && (c == '.' || c == '@' || c == ':'))))
			return false;
	}
	return true;
}

static int64_t
ts_us(const char *s)
{
	return s == NULL || *s == '\0' ? 0 : (int64_t)(strtod(s, NULL) * 1e6);
}

/* Fills infos from rows (id, name, role, participant, defs joined by \n,
 * created epoch, created_by, revoked epoch) and replies. */
static void
reply_rows(rpc_req *r, PGresult *res, const char *credential)
{
	int n = PQntuples(res);
	Sagawire__PrincipalInfo *infos = calloc((size_t)n + 1, sizeof(*infos));
	Sagawire__PrincipalInfo **ptrs = calloc((size_t)n + 1, sizeof(*ptrs));
	char **defs = calloc((size_t)n + 1, sizeof(*defs));
	char **split = NULL;
	size_t nsplit = 0;
	for (int i = 0; i < n; i++)
		nsplit += (size_t)atoi(PQgetvalue(res, i, 8));
	split = calloc(nsplit + 1, sizeof(*split));
	if (infos == NULL || ptrs == NULL || defs == NULL || split == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		goto out;
	}
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		Sagawire__PrincipalInfo *p = &infos[i];
		sagawire__principal_info__init(p);
		p->id = PQgetvalue(res, i, 0);
		p->name = PQgetvalue(res, i, 1);
		p->role = PQgetvalue(res, i, 2);
		p->participant = PQgetvalue(res, i, 3);
		p->created_us = ts_us(PQgetvalue(res, i, 5));
		p->created_by = PQgetvalue(res, i, 6);
		p->revoked_us = PQgetisnull(res, i, 7) ? 0 : ts_us(PQgetvalue(res, i, 7));
		size_t nd = (size_t)atoi(PQgetvalue(res, i, 8));
		if (nd > 0 && (defs[i] = strdup(PQgetvalue(res, i, 4))) != NULL) {
			p->definitions = &split[k];
			char *save = NULL;
			for (char *t = strtok_r(defs[i], "\n", &save); t && k < nsplit;
			     t = strtok_r(NULL, "\n", &save))
				split[k++] = t;
			p->n_definitions = (size_t)(&split[k] - p->definitions);
		}
		ptrs[i] = p;
	}
	Sagawire__PrincipalResponse pr = SAGAWIRE__PRINCIPAL_RESPONSE__INIT;
	pr.n_principals = (size_t)n;
	pr.principals = ptrs;
	if (credential != NULL)
		pr.credential = (char *)credential;
	Sagawire__Response resp = SAGAWIRE__RESPONSE__INIT;
	resp.body_case = SAGAWIRE__RESPONSE__BODY_PRINCIPAL;
	resp.principal = &pr;
	rpc_reply(r, &resp);
out:
	for (int i = 0; defs != NULL && i < n; i++)
		free(defs[i]);
	free(defs);
	free(split);
	free(ptrs);
	free(infos);
}

#define PRINCIPAL_COLS                                                                 \
	"id, name, role, participant, array_to_string(definitions, E'\\n'),"           \
	" extract(epoch from created_at), created_by, extract(epoch from revoked_at)," \
	" cardinality(definitions)"

static void
principal_create(PGconn *c, rpc_req *r)
{
	const Sagawire__PrincipalRequest *q = r->req->principal;
	int role = auth_role_parse(q->role);
	const char *part = "";
	if (!name_ok(q->name, true)) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "principal name '%.*s' is not 1 to %d of A-Z a-z 0-9 _ - . @ :", AUTH_NAME_MAX,
		    q->name, AUTH_NAME_MAX);
		return;
	}
	if (role < 0) {
		rpc_reply_error(r, SAGA_EINVAL,
		    "role '%.32s' is not one of participant, client, operator, admin", q->role);
		return;
	}
	if (role == AUTH_PARTICIPANT) {
		part = q->participant[0] != '\0' ? q->participant : q->name;
		if (!name_ok(part, true)) {
			rpc_reply_error(r, SAGA_EINVAL, "participant name '%.*s' is not valid",
			    AUTH_NAME_MAX, part);
			return;
		}
	} else if (q->participant[0] != '\0') {
		rpc_reply_error(
		    r, SAGA_EINVAL, "a participant name goes with role participant only");
		return;
	}
	if (q->n_definitions > 0 && role != AUTH_CLIENT && role != AUTH_OPERATOR) {
		rpc_reply_error(
		    r, SAGA_EINVAL, "a definition limit goes with roles client and operator only");
		return;
	}
	size_t dl = 1;
	for (size_t i = 0; i < q->n_definitions; i++) {
		if (!name_ok(q->definitions[i], true)) {
			rpc_reply_error(r, SAGA_EINVAL, "definition name '%.*s' is not valid",
			    AUTH_NAME_MAX, q->definitions[i]);
			return;
		}
		dl += strlen(q->definitions[i]) + 3;
	}
	char *arr = malloc(dl + 2);
	if (arr == NULL) {
		rpc_reply_error(r, SAGA_ENOMEM, "out of memory");
		return;
	}
	/* A text[] literal: the names are checked to need no quoting. */
	size_t a = 0;
	arr[a++] = '{';
	for (size_t i = 0; i < q->n_definitions; i++)
		a += (size_t)sprintf(arr + a, "%s%s", i ? "," : "", q->definitions[i]);
	arr[a++] = '}';
	arr[a] = '\0';

	char cred[CRED_LEN + 1], shahex[2 * SHA256_DIGEST_LENGTH + 1], id[ID_LEN + 1];
	uint8_t sha[SHA256_DIGEST_LENGTH];
	if (new_credential(cred, sha) != 0) {
		free(arr);
		rpc_reply_error(r, SAGA_EINTERNAL, "no random bytes for a credential");
		return;
	}
	for (size_t i = 0; i < sizeof(sha); i++)
		snprintf(shahex + 2 * i, 3, "%02x", sha[i]);
	memcpy(id, cred, ID_LEN);
	id[ID_LEN] = '\0';
	const char *by = r->auth.role != 0 ? r->auth.name : "(auth off)";
	const char *v[7] = { id, q->name, auth_role_name((auth_role)role), part, arr, shahex, by };
	PGresult *res = PQexecParams(c,
	    "INSERT INTO saga_principals (id, name, role, participant, definitions, secret_sha256,"
	    " created_by, version) VALUES ($1, $2, $3, $4, $5::text[], decode($6, 'hex'), $7,"
	    " nextval('saga_principals_version')) RETURNING " PRINCIPAL_COLS,
	    7, NULL, v, NULL, NULL, 0);
	free(arr);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (state != NULL && strcmp(state, "23505") == 0)
			rpc_reply_error(r, SAGA_EEXIST,
			    "an active principal is already named '%s' (revoke it first)", q->name);
		else
			rpc_reply_error(
			    r, SAGA_EDB, "creating principal: %s", PQresultErrorMessage(res));
		PQclear(res);
		OPENSSL_cleanse(cred, sizeof(cred));
		return;
	}
	char err[256];
	if (reload(c, err, sizeof(err)) != 0)
		slog_warn("principals: reload after a create: %s", err);
	slog_info("auth: principal %s (%s, id %s) created by %s", q->name,
	    auth_role_name((auth_role)role), id, by);
	reply_rows(r, res, cred);
	PQclear(res);
	OPENSSL_cleanse(cred, sizeof(cred));
}

static void
principal_revoke(PGconn *c, rpc_req *r)
{
	const char *key = r->req->principal->name;
	if (key[0] == '\0' || !cm_utf8_ok(key, strlen(key))) {
		rpc_reply_error(r, SAGA_EINVAL, "revoke needs a principal's name or id");
		return;
	}
	PGresult *res = PQexecParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	PQclear(res);
	const char *v[1] = { key };
	res = PQexecParams(c,
	    "UPDATE saga_principals SET revoked_at = now(),"
	    " version = nextval('saga_principals_version')"
	    " WHERE revoked_at IS NULL AND (id = $1 OR name = $1) RETURNING " PRINCIPAL_COLS,
	    1, NULL, v, NULL, NULL, 0);
	int rv = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rpc_reply_error(r, SAGA_EDB, "revoking: %s", PQresultErrorMessage(res));
		rv = SAGA_EDB;
	} else if (PQntuples(res) == 0) {
		rpc_reply_error(r, SAGA_ENOTFOUND, "no active principal named or with id '%.*s'",
		    AUTH_NAME_MAX, key);
		rv = SAGA_ENOTFOUND;
	} else {
		PGresult *cnt = PQexecParams(c,
		    "SELECT count(*) FROM saga_principals WHERE role = 'admin' AND revoked_at IS "
		    "NULL",
		    0, NULL, NULL, NULL, NULL, 0);
		if (PQresultStatus(cnt) != PGRES_TUPLES_OK) {
			rpc_reply_error(r, SAGA_EDB, "revoking: %s", PQresultErrorMessage(cnt));
			rv = SAGA_EDB;
		} else if (atoi(PQgetvalue(cnt, 0, 0)) == 0) {
			rpc_reply_error(r, SAGA_ESTATE,
			    "'%.*s' is the last active admin: create another admin first",
			    AUTH_NAME_MAX, key);
			rv = SAGA_ESTATE;
		}
		PQclear(cnt);
	}
	PGresult *end =
	    PQexecParams(c, rv == 0 ? "COMMIT" : "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);
	if (rv == 0 && PQresultStatus(end) != PGRES_COMMAND_OK) {
		rpc_reply_error(r, SAGA_EDB, "revoking: %s", PQresultErrorMessage(end));
		rv = SAGA_EDB;
	}
	PQclear(end);
	if (rv == 0) {
		char err[256];
		if (reload(c, err, sizeof(err)) != 0)
			slog_warn("principals: reload after a revoke: %s", err);
		slog_info("auth: principal %s (id %s) revoked by %s", PQgetvalue(res, 0, 1),
		    PQgetvalue(res, 0, 0), r->auth.role != 0 ? r->auth.name : "(auth off)");
		reply_rows(r, res, NULL);
	}
	PQclear(res);
}

void
auth_principal_rpc(PGconn *c, rpc_req *r)
{
	switch (r->req->principal->op) {
	case SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_CREATE:
		principal_create(c, r);
		return;
	case SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_REVOKE:
		principal_revoke(c, r);
		return;
	case SAGAWIRE__PRINCIPAL_OP__PRINCIPAL_LIST: {
		PGresult *res = PQexecParams(c,
		    "SELECT " PRINCIPAL_COLS
		    " FROM saga_principals ORDER BY name, revoked_at DESC NULLS FIRST",
		    0, NULL, NULL, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			rpc_reply_error(
			    r, SAGA_EDB, "listing principals: %s", PQresultErrorMessage(res));
		else
			reply_rows(r, res, NULL);
		PQclear(res);
		return;
	}
	default:
		rpc_reply_error(r, SAGA_EINVAL, "principal request without a known op");
	}
}
