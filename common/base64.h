/*
 * base64: RFC 4648 base64, for bytes in JSON (sagactl --raw --json, pbjson's
 * bytes fields and unknown fields). Prefix cm_.
 */
#ifndef SAGA_CM_BASE64_H
#define SAGA_CM_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* The length of n bytes encoded, padding included. */
#define CM_BASE64_LEN(n) (((n) + 2) / 3 * 4)

/* Writes in[0..n) as standard base64 with padding into out (room for
 * CM_BASE64_LEN(n) bytes; no NUL is added). Returns CM_BASE64_LEN(n). */
size_t cm_base64_encode(char *out, const uint8_t *in, size_t n);

/* Decodes s[0..len), standard or URL-safe base64, padded or not, into out
 * (room for len / 4 * 3 + 3 bytes). Returns 0 with the length in *outlen,
 * or SAGA_EINVAL with the offset of the fault in *bad. */
int cm_base64_decode(const char *s, size_t len, uint8_t *out, size_t *outlen, size_t *bad);

#endif
