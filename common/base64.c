/* base64: encoding and decoding. See base64.h. */
#include "base64.h"

#include "saga_base.h"

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
cm_base64_encode(char *out, const uint8_t *p, size_t len)
{
	char *o = out;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = b64std[v >> 18];
		*o++ = b64std[(v >> 12) & 63];
		*o++ = b64std[(v >> 6) & 63];
		*o++ = b64std[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = b64std[v >> 18];
		*o++ = b64std[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = b64std[v >> 18];
		*o++ = b64std[(v >> 12) & 63];
		*o++ = b64std[(v >> 6) & 63];
		*o++ = '=';
	}
	return (size_t)(o - out);
}

static int
b64val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

int
cm_base64_decode(const char *s, size_t len, uint8_t *out, size_t *outlen, size_t *bad)
{
	size_t n = len, pad = 0;
	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (pad > 0 && len % 4 != 0) {
		*bad = n;
		return SAGA_EINVAL;
	}
	if (n % 4 == 1) {
		*bad = n - 1;
		return SAGA_EINVAL;
	}
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64val((unsigned char)s[i]);
		if (v < 0) {
			*bad = i;
			return SAGA_EINVAL;
		}
		acc = ((acc << 6) | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	*outlen = o;
	return 0;
}
