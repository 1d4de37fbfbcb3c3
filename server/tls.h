/*
 * tls: what sagad's tls+tcp:// listeners show and ask for, built from the
 * settings tls-cert, tls-key, tls-ca and tls-client-auth (config.h).
 *
 * The files are read whole by sagad (not handed to nng by name), so that a
 * missing or bad file is found and named before anything changes: at start
 * (sagad refuses to start) and on SIGHUP (rpc_tls_reload keeps the running
 * configuration and logs why).
 *
 * nng 1.5.2 (mbedtls 2.28) speaks TLS 1.2 only, and its verification of a
 * peer's name matches DNS names and the common name, never IP addresses:
 * see docs/SECURITY.md.
 */
#ifndef SAGAD_TLS_H
#define SAGAD_TLS_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Is url one whose transport runs over TLS (tls+tcp://, tls+tcp4://,
 * tls+tcp6://, wss://...)? */
bool tls_url(const char *url);

/* Does c->listen name a TLS URL? */
bool tls_wanted(const cfg *c);

/* The client authentication mode the settings ask for (an
 * NNG_TLS_AUTH_MODE_*): tls-client-auth, or when empty, required if tls-ca
 * is set and none otherwise. */
int tls_client_auth_mode(const cfg *c);
const char *tls_client_auth_name(int mode);

/* Checks the TLS settings against each other and the listen URLs: a TLS
 * URL needs tls-cert and tls-key; each needs the other; client
 * authentication optional or required needs tls-ca. SAGA_OK, or
 * SAGA_EINVAL with the reason (and how to fix it) in err. */
int tls_check_settings(const cfg *c, char *err, size_t errlen);

/* Reads the files and makes a server configuration (caller frees with
 * nng_tls_config_free). SAGA_EINVAL with err naming the file and what is
 * wrong with it, or SAGA_ENOMEM. */
int tls_server_config(const cfg *c, nng_tls_config **out, char *err, size_t errlen);

#endif
