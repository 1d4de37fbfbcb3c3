/*
 * jsonstr: text escaped for the inside of a double-quoted JSON string, for
 * sagad's log, sagactl's --json output and pbjson. Prefix cm_.
 *
 * Always escaped: '"' and '\\' with a backslash, \n \r \t in their short
 * forms, the other control characters (below 0x20) as \u00XX (lower-case
 * hex). Valid UTF-8 is copied as it is. Where the callers differ, each
 * keeps the output it always had through flags:
 *
 *   CM_JSON_DEL   DEL (0x7f) as \u007f too (sagad's log, sagactl); without
 *                 it DEL is copied (pbjson)
 *   CM_JSON_BF    \b and \f in their short forms (pbjson); without it
 *                 \u0008 and \u000c
 *   CM_JSON_FFFD  a byte that is not part of valid UTF-8 as \ufffd, so the
 *                 result is valid JSON (sagad's JSON log)
 *   CM_JSON_XNN   such a byte as \xNN, which keeps it visible (sagad's
 *                 logfmt log: not JSON)
 *
 * Without CM_JSON_FFFD or CM_JSON_XNN such bytes are copied as they are:
 * the caller checked the text (pbjson) or hands it on as it got it
 * (sagactl).
 */
#ifndef SAGA_CM_JSONSTR_H
#define SAGA_CM_JSONSTR_H

#include <stddef.h>

enum {
	CM_JSON_DEL = 1,
	CM_JSON_BF = 2,
	CM_JSON_FFFD = 4,
	CM_JSON_XNN = 8,
};

/* The most bytes one character takes once escaped (\u00XX, \ufffd). */
#define CM_JSON_ESC_MAX 6

/* Escapes s[0..n) into out[0..cap) (no quotes, no NUL added), whole
 * characters only: it stops before the first one that does not fit.
 * Returns the bytes written; *used (may be NULL) receives how many bytes
 * of s they stand for (n unless it stopped early). */
size_t cm_json_escape(char *out, size_t cap, const char *s, size_t n, unsigned flags, size_t *used);

/* How many bytes cm_json_escape writes for all of s[0..n). */
size_t cm_json_escaped_len(const char *s, size_t n, unsigned flags);

#endif
