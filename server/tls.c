/* tls: server TLS configuration from the settings. See tls.h. */
#include "tls.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "saga_base.h"

/* Largest certificate, key or CA file read (a CA bundle of a few hundred
 * certificates fits). */
#define TLS_FILE_MAX (4u << 20)

bool
tls_url(const char *url)
{
	return strncmp(url, "tls+", 4) == 0 || strncmp(url, "wss", 3) == 0;
}

bool
tls_wanted(const cfg *c)
{
	const char *p = c->listen;
	while (*p != '\0') {
		while (*p == ',' || *p == ' ')
			p++;
		if (*p != '\0' && tls_url(p))
			return true;
		while (*p != '\0' && *p != ',' && *p != ' ')
			p++;
	}
	return false;
}

int
tls_client_auth_mode(const cfg *c)
{
	if (strcmp(c->tls_client_auth, "required") == 0)
		return NNG_TLS_AUTH_MODE_REQUIRED;
	if (strcmp(c->tls_client_auth, "optional") == 0)
		return NNG_TLS_AUTH_MODE_OPTIONAL;
	if (strcmp(c->tls_client_auth, "none") == 0)
		return NNG_TLS_AUTH_MODE_NONE;
	return c->tls_ca[0] != '\0' ? NNG_TLS_AUTH_MODE_REQUIRED : NNG_TLS_AUTH_MODE_NONE;
}

const char *
tls_client_auth_name(int mode)
{
	switch (mode) {
	case NNG_TLS_AUTH_MODE_REQUIRED:
		return "required";
	case NNG_TLS_AUTH_MODE_OPTIONAL:
		return "optional";
	default:
		return "none";
	}
}

int
tls_check_settings(const cfg *c, char *err, size_t errlen)
{
	bool want = tls_wanted(c);
	int mode = tls_client_auth_mode(c);

	if (want && (c->tls_cert[0] == '\0' || c->tls_key[0] == '\0')) {
		snprintf(err, errlen,
		    "a tls+tcp:// listen URL needs a certificate and its key: set --tls-cert FILE "
		    "and --tls-key FILE (SAGAD_TLS_CERT, SAGAD_TLS_KEY; see docs/SECURITY.md)");
		return SAGA_EINVAL;
	}
	if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0')) {
		snprintf(err, errlen, "%s is set but %s is not: give both",
		    c->tls_cert[0] != '\0' ? "tls-cert" : "tls-key",
		    c->tls_cert[0] != '\0' ? "tls-key" : "tls-cert");
		return SAGA_EINVAL;
	}
	if (mode != NNG_TLS_AUTH_MODE_NONE && c->tls_ca[0] == '\0') {
		snprintf(err, errlen,
		    "tls-client-auth %s needs tls-ca, the CA file that client certificates are "
		    "checked against",
		    c->tls_client_auth);
		return SAGA_EINVAL;
	}
	return SAGA_OK;
}

/* The whole file at path, NUL-terminated, in *out (caller frees). what
 * names the setting in messages. */
static int
read_pem(const char *what, const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	*out = NULL;
	if (f == NULL) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return SAGA_EINVAL;
	}
	if ((buf = malloc(TLS_FILE_MAX + 1)) == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	n = fread(buf, 1, TLS_FILE_MAX + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		snprintf(err, errlen, "%s %s: cannot be read", what, path);
		free(buf);
		return SAGA_EINVAL;
	}
	if (n > TLS_FILE_MAX) {
		snprintf(err, errlen, "%s %s: larger than %u bytes", what, path, TLS_FILE_MAX);
		free(buf);
		return SAGA_EINVAL;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL || strstr(buf, "-----BEGIN ") == NULL) {
		snprintf(err, errlen, "%s %s: not a PEM file (no -----BEGIN line)", what, path);
		free(buf);
		return SAGA_EINVAL;
	}
	*out = buf;
	return SAGA_OK;
}

/* OpenSSL's reason for the last failure, or a fallback. */
static const char *
ssl_reason(const char *fallback)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r != NULL ? r : fallback;
}

/* "CN=x, valid until 2027-01-01 12:00:00 UTC" of a certificate. */
static void
describe_cert(X509 *x, char *buf, size_t len)
{
	char subj[256] = "";
	struct tm tm;
	X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		snprintf(buf, len, "%s, valid until %04d-%02d-%02d %02d:%02d:%02d UTC", subj,
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	else
		snprintf(buf, len, "%s", subj);
}

/*
 * Parses what nng (mbedtls) will be given with OpenSSL first: mbedtls only
 * says "cryptographic error", OpenSSL says which file is wrong and how (not
 * a certificate, a key that is not the certificate's, an expired
 * certificate), and the certificate's name and end of validity are logged.
 */
static int
check_pems(
    const cfg *c, const char *cert, const char *key, const char *ca, char *err, size_t errlen)
{
	BIO *b = NULL;
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	int rv = SAGA_EINVAL, n_ca = 0;
	char desc[512];

	ERR_clear_error();
	if ((b = BIO_new_mem_buf(cert, -1)) == NULL ||
	    (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		snprintf(err, errlen, "tls-cert %s: no certificate in it (%s)", c->tls_cert,
		    ssl_reason("not a PEM certificate"));
		goto out;
	}
	BIO_free(b);
	if ((b = BIO_new_mem_buf(key, -1)) == NULL ||
	    (k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) == NULL) {
		snprintf(err, errlen, "tls-key %s: no unencrypted private key in it (%s)",
		    c->tls_key, ssl_reason("not a PEM private key"));
		goto out;
	}
	if (X509_check_private_key(x, k) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "tls-key %s is not the key of the certificate in tls-cert %s",
		    c->tls_key, c->tls_cert);
		goto out;
	}
	describe_cert(x, desc, sizeof(desc));
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		snprintf(err, errlen, "tls-cert %s has expired (%s)", c->tls_cert, desc);
		goto out;
	}
	slog_info("TLS certificate %s: %s", c->tls_cert, desc);
	if (ca != NULL) {
		X509 *a;
		BIO_free(b);
		if ((b = BIO_new_mem_buf(ca, -1)) == NULL)
			goto nomem;
		while ((a = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
			n_ca++;
			X509_free(a);
		}
		ERR_clear_error();
		if (n_ca == 0) {
			snprintf(err, errlen, "tls-ca %s: no certificate in it", c->tls_ca);
			goto out;
		}
	}
	rv = SAGA_OK;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	rv = SAGA_ENOMEM;
out:
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
	return rv;
}

int
tls_server_config(const cfg *c, nng_tls_config **out, char *err, size_t errlen)
{
	char *cert = NULL, *key = NULL, *ca = NULL;
	nng_tls_config *t = NULL;
	int rv, mode = tls_client_auth_mode(c);

	*out = NULL;
	if ((rv = tls_check_settings(c, err, errlen)) != SAGA_OK)
		return rv;
	if ((rv = read_pem("tls-cert", c->tls_cert, &cert, err, errlen)) != SAGA_OK ||
	    (rv = read_pem("tls-key", c->tls_key, &key, err, errlen)) != SAGA_OK)
		goto out;
	if (c->tls_ca[0] != '\0' &&
	    (rv = read_pem("tls-ca", c->tls_ca, &ca, err, errlen)) != SAGA_OK)
		goto out;
	if ((rv = check_pems(c, cert, key, ca, err, errlen)) != SAGA_OK)
		goto out;
	if ((rv = nng_tls_config_alloc(&t, NNG_TLS_MODE_SERVER)) != 0) {
		snprintf(err, errlen, "cannot make a TLS configuration: %s", nng_strerror(rv));
		rv = SAGA_ENOMEM;
		goto out;
	}
	if ((rv = nng_tls_config_own_cert(t, cert, key, NULL)) != 0) {
		snprintf(err, errlen, "tls-cert %s / tls-key %s: refused by nng's TLS: %s",
		    c->tls_cert, c->tls_key, nng_strerror(rv));
		rv = SAGA_EINVAL;
		goto out;
	}
	if (ca != NULL && (rv = nng_tls_config_ca_chain(t, ca, NULL)) != 0) {
		snprintf(err, errlen, "tls-ca %s: refused by nng's TLS: %s", c->tls_ca,
		    nng_strerror(rv));
		rv = SAGA_EINVAL;
		goto out;
	}
	if ((rv = nng_tls_config_auth_mode(t, (nng_tls_auth_mode)mode)) != 0) {
		snprintf(err, errlen, "cannot set client authentication: %s", nng_strerror(rv));
		rv = SAGA_EINVAL;
		goto out;
	}
	*out = t;
	t = NULL;
	rv = SAGA_OK;
out:
	if (t != NULL)
		nng_tls_config_free(t);
	free(cert);
	if (key != NULL) {
		/* The private key does not linger in freed memory. */
		OPENSSL_cleanse(key, strlen(key));
		free(key);
	}
	free(ca);
	return rv;
}
