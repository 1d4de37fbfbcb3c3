/* utf8: checking, cutting and cleaning UTF-8. See utf8.h. */
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

size_t
cm_utf8_char(const void *str, size_t n)
{
	const unsigned char *s = str;
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong below U+0800 */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xf4)
			hi = 0x8f; /* past U+10FFFF */
	} else {
		return 0; /* continuation byte, 0xc0, 0xc1, 0xf5.. */
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

int
cm_utf8_valid(const void *str, size_t len)
{
	const unsigned char *s = str;
	size_t i = 0;
	while (i < len) {
		size_t k = s[i] < 0x80 ? 1 : cm_utf8_char(s + i, len - i);
		if (k == 0)
			return 0;
		i += k;
	}
	return 1;
}

int
cm_utf8_ok(const char *s, size_t len)
{
	return memchr(s, '\0', len) == NULL && cm_utf8_valid(s, len);
}

size_t
cm_utf8_cut(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = n;
	/* Back over the continuation bytes at the end to their lead byte. */
	while (i > 0 && n - i < 4 && (s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0 || (s[i - 1] & 0x80) == 0)
		return n; /* ends in ASCII, or no lead byte found */
	unsigned char c = s[i - 1];
	size_t want = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
	return n - (i - 1) < want ? i - 1 : n;
}

void
cm_utf8_trim(char *s)
{
	s[cm_utf8_cut(s, strlen(s))] = '\0';
}

char *
cm_utf8_dup(const char *s, size_t max)
{
	if (s == NULL)
		s = "";
	size_t full = strlen(s), n = full < max ? full : max;
	char *out = malloc(n + 1);
	if (out == NULL)
		return NULL;
	size_t i = 0, o = 0;
	while (i < n) {
		size_t k = cm_utf8_char(s + i, n - i);
		if (k == 0) {
			/* A character cut by max is dropped, not replaced:
			 * the text was truncated there. */
			if (n < full && cm_utf8_char(s + i, full - i) > n - i)
				break;
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, k);
		o += k;
		i += k;
	}
	out[o] = '\0';
	return out;
}
