/* common: error and state names, strings, logging. See internal.h. The
 * names and the UTF-8 code are common/'s, shared with sagad. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "names.h"
#include "utf8.h"

/* saga.h's states are sagawire's, value for value: libsaga hands the
 * decoded values on as they are, and common/names.c names them. */
#define SAME(a, b) _Static_assert((int)(a) == (int)(b), #a " must equal " #b)
SAME(SAGA_STATE_UNKNOWN, SAGAWIRE__SAGA_STATE__SAGA_STATE_UNSPECIFIED);
SAME(SAGA_STATE_RUNNING, SAGAWIRE__SAGA_STATE__SAGA_RUNNING);
SAME(SAGA_STATE_COMPENSATING, SAGAWIRE__SAGA_STATE__SAGA_COMPENSATING);
SAME(SAGA_STATE_COMPLETED, SAGAWIRE__SAGA_STATE__SAGA_COMPLETED);
SAME(SAGA_STATE_COMPENSATED, SAGAWIRE__SAGA_STATE__SAGA_COMPENSATED);
SAME(SAGA_STATE_FAILED, SAGAWIRE__SAGA_STATE__SAGA_FAILED);
SAME(SAGA_STATE_TERMINATED, SAGAWIRE__SAGA_STATE__SAGA_TERMINATED);
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
	return s == SAGA_STATE_COMPLETED || s == SAGA_STATE_COMPENSATED || s == SAGA_STATE_FAILED ||
	    s == SAGA_STATE_TERMINATED;
}

void
saga_string_free(char *s)
{
	free(s);
}

void
saga_bytes_free(void *p)
{
	free(p);
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
	return s == NULL || cm_utf8_ok(s, strlen(s));
}

void
sl_seterr(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, SL_ERRMSG_MAX, fmt, ap);
	va_end(ap);
	if (n >= SL_ERRMSG_MAX)
		cm_utf8_trim(buf);
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
		cm_utf8_trim(line);
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

int
sl_credential_dup(const char *cred, char **out)
{
	*out = NULL;
	if (cred == NULL || *cred == '\0')
		return SAGA_OK;
	size_t n = strlen(cred);
	if (n > SL_CREDENTIAL_MAX)
		return SAGA_EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)cred[i] <= ' ' || (unsigned char)cred[i] >= 0x7f)
			return SAGA_EINVAL;
	if ((*out = strdup(cred)) == NULL)
		return SAGA_ENOMEM;
	return SAGA_OK;
}

void
sl_credential_free(char *cred)
{
	if (cred == NULL)
		return;
	/* Not left in freed memory; volatile so the stores stay. */
	for (volatile char *p = cred; *p != '\0'; p++)
		*p = 0;
	free(cred);
}
