/* tls: the TLS settings of a client or worker, and the nng configuration
 * of each dialer made from them. See internal.h. */
#include "internal.h"

#include <errno.h>
#include <nng/supplemental/tls/tls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest CA, certificate or key file read. */
#define SL_TLS_FILE_MAX ((size_t)4 << 20)

int
sl_url_is_tls(const char *url)
{
	return strncmp(url, "tls+", 4) == 0 || strncmp(url, "wss", 3) == 0;
}

void
sl_tls_free(sl_tls *t)
{
	if (t == NULL)
		return;
	free(t->ca);
	free(t->cert);
	if (t->key != NULL) {
		/* The private key does not linger in freed memory. */
		volatile char *p = t->key;
		while (*p != '\0')
			*p++ = '\0';
		free(t->key);
	}
	free(t->server_name);
	free(t->ca_file);
	free(t->cert_file);
	free(t->key_file);
	memset(t, 0, sizeof(*t));
}

/* Reads the PEM file at path (what names it in messages) into *out. */
static int
read_pem(const char *what, const char *path, char **out, char *err)
{
	FILE *f;
	char *buf;
	size_t n;

	*out = NULL;
	if ((f = fopen(path, "rb")) == NULL) {
		sl_seterr(err, "%s %s: %s", what, path, strerror(errno));
		return SAGA_EINVAL;
	}
	if ((buf = malloc(SL_TLS_FILE_MAX + 1)) == NULL) {
		fclose(f);
		sl_seterr(err, "out of memory");
		return SAGA_ENOMEM;
	}
	n = fread(buf, 1, SL_TLS_FILE_MAX + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || n > SL_TLS_FILE_MAX) {
		sl_seterr(
		    err, "%s %s: %s", what, path, bad ? "cannot be read" : "larger than 4 MiB");
		free(buf);
		return SAGA_EINVAL;
	}
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL || strstr(buf, "-----BEGIN ") == NULL) {
		sl_seterr(err, "%s %s: not a PEM file (no -----BEGIN line)", what, path);
		free(buf);
		return SAGA_EINVAL;
	}
	*out = buf;
	return SAGA_OK;
}

/* A client configuration for one dialer; server_name NULL = none set. */
static int
make_config(const sl_tls *t, const char *server_name, nng_tls_config **out, char *err)
{
	nng_tls_config *cfg;
	int rv;

	*out = NULL;
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT)) != 0) {
		sl_seterr(err, "cannot make a TLS configuration: %s", nng_strerror(rv));
		return wire_err_from_nng(rv);
	}
	if ((rv = nng_tls_config_ca_chain(cfg, t->ca, NULL)) != 0) {
		sl_seterr(err, "CA file %s: no certificate nng's TLS can use (%s)", t->ca_file,
		    nng_strerror(rv));
		goto fail;
	}
	if (t->cert != NULL && (rv = nng_tls_config_own_cert(cfg, t->cert, t->key, NULL)) != 0) {
		sl_seterr(err,
		    "certificate %s with key %s: not usable by nng's TLS (%s; the key must be "
		    "unencrypted PEM)",
		    t->cert_file, t->key_file, nng_strerror(rv));
		goto fail;
	}
	if (server_name != NULL && (rv = nng_tls_config_server_name(cfg, server_name)) != 0) {
		sl_seterr(err, "server name %s: %s", server_name, nng_strerror(rv));
		goto fail;
	}
	if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0) {
		sl_seterr(err, "cannot require sagad's certificate: %s", nng_strerror(rv));
		goto fail;
	}
	*out = cfg;
	return SAGA_OK;
fail:
	nng_tls_config_free(cfg);
	return SAGA_EINVAL;
}

int
sl_tls_load(sl_tls *out, const char *ca_file, const char *cert_file, const char *key_file,
    const char *server_name, char *err)
{
	sl_tls t;
	nng_tls_config *probe = NULL;
	int rv;

	memset(&t, 0, sizeof(t));
	if (ca_file == NULL || *ca_file == '\0') {
		sl_seterr(err, "a CA file is needed: sagad's certificate is checked against it");
		return SAGA_EINVAL;
	}
	if ((cert_file == NULL || *cert_file == '\0') != (key_file == NULL || *key_file == '\0')) {
		sl_seterr(err,
		    "a client certificate needs its key and a key its certificate: give "
		    "both or neither");
		return SAGA_EINVAL;
	}
	if (server_name != NULL && (*server_name == '\0' || !sl_utf8_ok(server_name))) {
		sl_seterr(err, "the server name must be a non-empty host name (or NULL)");
		return SAGA_EINVAL;
	}
	if ((rv = read_pem("CA file", ca_file, &t.ca, err)) != SAGA_OK)
		goto fail;
	if (cert_file != NULL && *cert_file != '\0') {
		if ((rv = read_pem("certificate file", cert_file, &t.cert, err)) != SAGA_OK ||
		    (rv = read_pem("key file", key_file, &t.key, err)) != SAGA_OK)
			goto fail;
	}
	if ((t.ca_file = sl_strdup(ca_file)) == NULL ||
	    (t.cert_file = sl_strdup(cert_file)) == NULL ||
	    (t.key_file = sl_strdup(key_file)) == NULL ||
	    (server_name != NULL && (t.server_name = strdup(server_name)) == NULL)) {
		sl_seterr(err, "out of memory");
		rv = SAGA_ENOMEM;
		goto fail;
	}
	/* Made once now so that a file nng cannot use is reported here, by
	 * name, rather than at the first call. */
	if ((rv = make_config(&t, t.server_name, &probe, err)) != SAGA_OK)
		goto fail;
	nng_tls_config_free(probe);
	t.set = 1;
	sl_tls_free(out);
	*out = t;
	return SAGA_OK;
fail:
	sl_tls_free(&t);
	return rv;
}

int
sl_tls_dialer(const sl_tls *t, nng_dialer d, const char *url, char *err)
{
	nng_tls_config *cfg = NULL;
	nng_url *u = NULL;
	int rv;

	if (t == NULL || !t->set) {
		sl_seterr(err,
		    "%s uses TLS but no CA is set to check sagad's certificate against: call "
		    "saga_client_set_tls / saga_worker_set_tls (sagactl: --tls-ca FILE or "
		    "SAGA_TLS_CA)",
		    url);
		return SAGA_EINVAL;
	}
	/* By default sagad's certificate must name the host of the URL. */
	if (t->server_name == NULL && (rv = nng_url_parse(&u, url)) != 0) {
		sl_seterr(err, "%s: %s", url, nng_strerror(rv));
		return SAGA_EINVAL;
	}
	rv = make_config(t, t->server_name != NULL ? t->server_name : u->u_hostname, &cfg, err);
	if (u != NULL)
		nng_url_free(u);
	if (rv != SAGA_OK)
		return rv;
	rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
	nng_tls_config_free(cfg); /* the dialer holds it */
	if (rv != 0) {
		sl_seterr(err, "cannot set TLS on the dialer of %s: %s", url, nng_strerror(rv));
		return wire_err_from_nng(rv);
	}
	return SAGA_OK;
}
