/* jsonstr: escaping text for JSON strings. See jsonstr.h. */
#include "jsonstr.h"

#include <string.h>

#include "utf8.h"

/* The escaped form of the character at p (n > 0 bytes left) in tmp;
 * returns its length, and in *adv how many bytes of p it stands for. */
static size_t
esc_one(const unsigned char *p, size_t n, unsigned flags, char tmp[CM_JSON_ESC_MAX], size_t *adv)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c = p[0];
	char short_form = 0;

	*adv = 1;
	switch (c) {
	case '"':
	case '\\':
		short_form = (char)c;
		break;
	case '\n':
		short_form = 'n';
		break;
	case '\r':
		short_form = 'r';
		break;
	case '\t':
		short_form = 't';
		break;
	case '\b':
		short_form = flags & CM_JSON_BF ? 'b' : 0;
		break;
	case '\f':
		short_form = flags & CM_JSON_BF ? 'f' : 0;
		break;
	default:
		break;
	}
	if (short_form != 0) {
		tmp[0] = '\\';
		tmp[1] = short_form;
		return 2;
	}
	if (c < 0x20 || (c == 0x7f && (flags & CM_JSON_DEL))) {
		memcpy(tmp, "\\u00", 4);
		tmp[4] = hex[c >> 4];
		tmp[5] = hex[c & 15];
		return 6;
	}
	if (c < 0x80) {
		tmp[0] = (char)c;
		return 1;
	}
	size_t k = cm_utf8_char(p, n);
	if (k != 0) {
		memcpy(tmp, p, k);
		*adv = k;
		return k;
	}
	if (flags & CM_JSON_FFFD) {
		memcpy(tmp, "\\ufffd", 6);
		return 6;
	}
	if (flags & CM_JSON_XNN) {
		tmp[0] = '\\';
		tmp[1] = 'x';
		tmp[2] = hex[c >> 4];
		tmp[3] = hex[c & 15];
		return 4;
	}
	tmp[0] = (char)c;
	return 1;
}

/* Printable ASCII that stands for itself. */
static int
plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

size_t
cm_json_escape(char *out, size_t cap, const char *s, size_t n, unsigned flags, size_t *used)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0;
	while (i < n) {
		if (plain(p[i])) {
			if (o == cap)
				break;
			out[o++] = (char)p[i++];
			continue;
		}
		char tmp[CM_JSON_ESC_MAX];
		size_t adv, tl = esc_one(p + i, n - i, flags, tmp, &adv);
		if (cap - o < tl)
			break;
		memcpy(out + o, tmp, tl);
		o += tl;
		i += adv;
	}
	if (used != NULL)
		*used = i;
	return o;
}

size_t
cm_json_escaped_len(const char *s, size_t n, unsigned flags)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0;
	while (i < n) {
		char tmp[CM_JSON_ESC_MAX];
		size_t adv = 1;
		o += plain(p[i]) ? 1 : esc_one(p + i, n - i, flags, tmp, &adv);
		i += adv;
	}
	return o;
}
