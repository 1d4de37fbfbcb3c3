/* token: per-dispatch HMAC tokens. See token.h. */
#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "saga_base.h"

/*
 * HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)). The two padded key
 * blocks are hashed once, at load, into `inner` and `outer`; a token copies
 * those states and hashes only the message and the inner digest. OpenSSL's
 * one-shot HMAC() costs about 1 us here (it looks the digest up every
 * time), this about 150 ns, and a result costs one.
 */
static struct {
	pthread_mutex_t mu;
	EVP_MD *md;
	EVP_MD_CTX *inner, *outer, *tmp; /* NULL = no key */
} T = { .mu = PTHREAD_MUTEX_INITIALIZER };

void
tok_fini(void)
{
	pthread_mutex_lock(&T.mu);
	EVP_MD_CTX_free(T.inner);
	EVP_MD_CTX_free(T.outer);
	EVP_MD_CTX_free(T.tmp);
	EVP_MD_free(T.md);
	T.inner = T.outer = T.tmp = NULL;
	T.md = NULL;
	pthread_mutex_unlock(&T.mu);
}

static int
keyed_state(EVP_MD_CTX *c, const EVP_MD *md, const uint8_t key[TOK_KEY_LEN], uint8_t pad)
{
	uint8_t block[64];
	memset(block, pad, sizeof(block));
	for (size_t i = 0; i < TOK_KEY_LEN; i++)
		block[i] ^= key[i];
	int ok =
	    EVP_DigestInit_ex(c, md, NULL) == 1 && EVP_DigestUpdate(c, block, sizeof(block)) == 1;
	OPENSSL_cleanse(block, sizeof(block));
	return ok ? 0 : SAGA_ENOMEM;
}

int
tok_set_key(const uint8_t key[TOK_KEY_LEN])
{
	tok_fini();
	EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
	EVP_MD_CTX *in = EVP_MD_CTX_new(), *out = EVP_MD_CTX_new(), *tmp = EVP_MD_CTX_new();
	if (md == NULL || in == NULL || out == NULL || tmp == NULL ||
	    keyed_state(in, md, key, 0x36) != 0 || keyed_state(out, md, key, 0x5c) != 0) {
		EVP_MD_CTX_free(in);
		EVP_MD_CTX_free(out);
		EVP_MD_CTX_free(tmp);
		EVP_MD_free(md);
		return SAGA_ENOMEM;
	}
	pthread_mutex_lock(&T.mu);
	T.md = md;
	T.inner = in;
	T.outer = out;
	T.tmp = tmp;
	pthread_mutex_unlock(&T.mu);
	return 0;
}

static __attribute__((format(printf, 3, 4))) int
db_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	size_t n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
	return SAGA_EDB;
}

int
tok_load(PGconn *conn, char *err, size_t errlen)
{
	uint8_t fresh[TOK_KEY_LEN], key[TOK_KEY_LEN];
	if (RAND_bytes(fresh, sizeof(fresh)) != 1) {
		snprintf(err, errlen, "dispatch key: no random bytes from OpenSSL");
		return SAGA_EINTERNAL;
	}
	const char *vals[1] = { (const char *)fresh };
	int lens[1] = { TOK_KEY_LEN }, fmts[1] = { 1 };
	/* Two statements, not one: once the insert is done (or found a row a
	 * concurrent start committed) a new statement's snapshot sees the row
	 * that won. */
	PGresult *res = PQexecParams(conn,
	    "INSERT INTO saga_dispatch_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", 1,
	    NULL, vals, lens, fmts, 0);
	OPENSSL_cleanse(fresh, sizeof(fresh));
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		int rv = db_fail(err, errlen, "dispatch key: %s",
		    res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return rv;
	}
	bool made = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	res = PQexecParams(
	    conn, "SELECT key FROM saga_dispatch_key WHERE id = 1", 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		int rv = db_fail(err, errlen, "dispatch key: %s",
		    res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return rv;
	}
	if (PQntuples(res) != 1 || PQgetlength(res, 0, 0) != TOK_KEY_LEN) {
		PQclear(res);
		snprintf(err, errlen, "dispatch key: table saga_dispatch_key holds no 32-byte key");
		return SAGA_EDB;
	}
	memcpy(key, PQgetvalue(res, 0, 0), TOK_KEY_LEN);
	PQclear(res);
	int rv = tok_set_key(key);
	OPENSSL_cleanse(key, sizeof(key));
	if (rv != 0) {
		snprintf(err, errlen, "dispatch key: out of memory");
		return rv;
	}
	slog_info("dispatch key %s (table saga_dispatch_key): reports are checked against it",
	    made ? "made" : "read");
	return 0;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* 0 with out filled, or -1 (no key, or OpenSSL failed: out is zero). */
static int
mac(const uint8_t saga_id[16], uint32_t step, uint8_t kind, uint32_t attempt, uint8_t out[TOK_LEN])
{
	uint8_t m[16 + 4 + 1 + 4], d[EVP_MAX_MD_SIZE];
	unsigned dl = 0;
	memcpy(m, saga_id, 16);
	put32(m + 16, step);
	m[20] = kind;
	put32(m + 21, attempt);
	pthread_mutex_lock(&T.mu);
	int ok = T.inner != NULL && EVP_MD_CTX_copy_ex(T.tmp, T.inner) == 1 &&
	    EVP_DigestUpdate(T.tmp, m, sizeof(m)) == 1 && EVP_DigestFinal_ex(T.tmp, d, &dl) == 1 &&
	    EVP_MD_CTX_copy_ex(T.tmp, T.outer) == 1 && EVP_DigestUpdate(T.tmp, d, dl) == 1 &&
	    EVP_DigestFinal_ex(T.tmp, d, &dl) == 1 && dl >= TOK_LEN;
	pthread_mutex_unlock(&T.mu);
	if (!ok) {
		memset(out, 0, TOK_LEN);
		return -1;
	}
	memcpy(out, d, TOK_LEN);
	return 0;
}

void
tok_make(
    const uint8_t saga_id[16], uint32_t step, uint8_t kind, uint32_t attempt, uint8_t out[TOK_LEN])
{
	mac(saga_id, step, kind, attempt, out);
}

bool
tok_check(const uint8_t saga_id[16], uint32_t step, uint8_t kind, uint32_t attempt,
    const uint8_t *token, size_t len)
{
	uint8_t want[TOK_LEN];
	if (token == NULL || len != TOK_LEN || mac(saga_id, step, kind, attempt, want) != 0)
		return false;
	return CRYPTO_memcmp(want, token, TOK_LEN) == 0;
}
