/* common: error and state names, strings, logging. See internal.h. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "names.h"

/* saga.h's states are sagawire's, value for value: libsaga hands the
 * decoded values on as they are, and common/names.c names them. */
#define SAME(a, b) _Static_assert((int)(a) == (int)(b), #a " must equal " #b)
SAME(SAGA_STATE_UNKNOWN, SAGAWIRE__SAGA_STATE__SAGA_STATE_UNSPECIFIED);
SAME(SAGA_STATE_RUNNING, SAGAWIRE__SAGA_STATE__SAGA_RUNNING);
SAME(SAGA_STATE_COMPENSATING, SAGAWIRE__SAGA_STATE__SAGA_COMPENSATING);
SAME(SAGA_STATE_COMPLETED, SAGAWIRE__SAGA_STATE__SAGA_COMPLETED);
SAME(SAGA_STATE_COMPENSATED, SAGAWIRE__SAGA_STATE__SAGA_COMPENSATED);
SAME(SAGA_STATE_FAILED, SAGAWIRE__SAGA_STATE__SAGA_FAILED);
SAME(SAGA_STEP_UNKNOWN, SAGAWIRE__STEP_STATE__STEP_STATE_UNSPECIFIED);
SAME(SAGA_STEP_PENDING, SAGAWIRE__STEP_STATE__STEP_PENDING);
SAME(SAGA_STEP_RUNNING, SAGAWIRE__STEP_STATE__STEP_RUNNING);
SAME(SAGA_STEP_RETRY_WAIT, SAGAWIRE__STEP_STATE__STEP_RETRY_WAIT);
SAME(SAGA_STEP_SUCCEEDED, SAGAWIRE__STEP_STATE__STEP_SUCCEEDED);
SAME(SAGA_STEP_FAILED, SAGAWIRE__STEP_STATE__STEP_FAILED);
SAME(SAGA_STEP_COMPENSATING, SAGAWIRE__STEP_STATE__STEP_COMPENSATING);
SAME(SAGA_STEP_COMP_RETRY_WAIT, SAGAWIRE__STEP_STATE__STEP_COMP_RETRY_WAIT);
SAME(SAGA_STEP_COMPENSATED, SAGAWIRE__STEP_STATE__STEP_COMPENSATED);
SAME(SAGA_STEP_COMP_FAILED, SAGAWIRE__STEP_STATE__STEP_COMP_FAILED);
#undef SAME

const char *
saga_strerror(int err)
{
	return cm_strerror(err);
}

const char *
saga_version(void)
{
	return cm_version();
}

const char *
saga_state_name(saga_state s)
{
	return cm_saga_state_name((int)s);
}

const char *
saga_step_state_name(saga_step_state s)
{
	return cm_step_state_name((int)s);
}

saga_state
saga_state_parse(const char *name)
{
	return (saga_state)cm_saga_state_parse(name);
}

int
saga_state_is_final(saga_state s)
{
	return s == SAGA_STATE_COMPLETED || s == SAGA_STATE_COMPENSATED || s == SAGA_STATE_FAILED;
}

void
saga_string_free(char *s)
{
	free(s);
}

/* ---- internal helpers -------------------------------------------------- */

char *
sl_strdup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

int
sl_utf8_ok(const char *s)
{
	return s == NULL || wire_utf8_ok(s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	if (s[0] < 0x80)
		return s[0] != 0;
	else if ((s[0] & 0xe0) == 0xc0)
		len = 2;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	return wire_utf8_ok((const char *)s, len) ? len : 0;
}

char *
sl_strdup_utf8(const char *s, size_t max)
{
	if (s == NULL)
		s = "";
	size_t full = strlen(s), n = full < max ? full : max;
	char *out = malloc(n + 1);
	if (out == NULL)
		return NULL;
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;
	while (i < n) {
		size_t k = utf8_seq(u + i, n - i);
		if (k == 0) {
			/* A character cut by max is dropped, not replaced:
			 * the text was truncated there. */
			if (n < full && utf8_seq(u + i, full - i) > n - i)
				break;
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, u + i, k);
		o += k;
		i += k;
	}
	out[o] = '\0';
	return out;
}

/* Cuts buf (NUL-terminated, possibly truncated mid-character) back to the
 * last complete UTF-8 character. */
static void
utf8_trim_tail(char *buf)
{
	size_t n = strlen(buf);
	size_t i = n;
	/* Back over at most 3 continuation bytes to the lead byte. */
	while (i > 0 && n - i < 4 && ((unsigned char)buf[i - 1] & 0xc0) == 0x80)
		i--;
	if (i > 0 && ((unsigned char)buf[i - 1] & 0x80) != 0) {
		size_t lead = i - 1;
		if (utf8_seq((unsigned char *)buf + lead, n - lead) != n - lead)
			buf[lead] = '\0';
	}
}

void
sl_seterr(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, SL_ERRMSG_MAX, fmt, ap);
	va_end(ap);
	if (n >= SL_ERRMSG_MAX)
		utf8_trim_tail(buf);
}

void
sl_log(saga_log_fn fn, void *user, saga_log_level level, const char *fmt, ...)
{
	if (fn == NULL)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		utf8_trim_tail(line);
	fn(level, line, user);
}

int
sl_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	if (pthread_condattr_init(&a) != 0)
		return SAGA_ENOMEM;
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	int rv = pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
	return rv == 0 ? SAGA_OK : SAGA_ENOMEM;
}

void
sl_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
	struct timespec ts;
	if (ms < 0)
		ms = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cv, mu, &ts);
}
