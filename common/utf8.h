/*
 * utf8: checking, cutting and cleaning UTF-8 text, for sagad, libsaga,
 * sagactl and pbjson alike. Prefix cm_.
 *
 * Valid UTF-8 here is the strict form (RFC 3629): no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing past U+10FFFF.
 */
#ifndef SAGA_CM_UTF8_H
#define SAGA_CM_UTF8_H

#include <stddef.h>

/* Length (1 to 4) of the valid character at s, where n > 0 bytes are
 * left, or 0 if the bytes there are not one (a stray continuation byte,
 * an invalid lead byte, an overlong form, a surrogate, past U+10FFFF, or
 * cut short by n). NUL is a character of length 1. */
size_t cm_utf8_char(const void *s, size_t n);

/* Is s[0..len) valid UTF-8? NUL is allowed: a proto3 string may hold it. */
int cm_utf8_valid(const void *s, size_t len);

/* Is s[0..len) valid UTF-8 without a NUL byte? What strings from the
 * network must be: protobuf-c hands strings on as C strings, so an
 * embedded NUL would silently cut one short. */
int cm_utf8_ok(const char *s, size_t len);

/* The length of s[0..n) without a character that a cut at n left
 * incomplete: when the text was cut at n bytes (a truncating snprintf, a
 * byte limit), a multi-byte sequence started before n and not finished by
 * it is dropped. Nothing else is checked: invalid bytes before it stay. */
size_t cm_utf8_cut(const char *s, size_t n);

/* cm_utf8_cut on the NUL-terminated s, in place. */
void cm_utf8_trim(char *s);

/* A new NUL-terminated copy of at most max bytes of s (NULL = ""), always
 * valid UTF-8 without NUL: a character that max cuts is dropped, and each
 * byte that is not valid UTF-8 becomes '?'. NULL only when out of memory;
 * the caller frees it. */
char *cm_utf8_dup(const char *s, size_t max);

#endif
