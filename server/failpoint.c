/* failpoint: self-inflicted faults for the fault suite. See failpoint.h. */
#include "failpoint.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *const names[FP_N] = { "after-commit", "after-dispatch", "before-report-commit",
	"mid-compensation", "dup-dispatch", "slow-register", "drop-start-reply" };
static unsigned long every[FP_N];
static atomic_ulong passes[FP_N];

int
fp_init(const char *spec, char *err, size_t errlen)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
	for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		char *end = NULL;
		unsigned long n = colon ? strtoul(colon + 1, &end, 10) : 0;
		int found = -1;
		if (colon)
			*colon = '\0';
		for (int i = 0; i < FP_N; i++)
			if (strcmp(tok, names[i]) == 0)
				found = i;
		if (found < 0 || n == 0 || end == NULL || *end != '\0') {
			snprintf(err, errlen,
			    "--failpoints: '%s' is not NAME:N with N > 0 and NAME one of "
			    "after-commit, after-dispatch, before-report-commit, "
			    "mid-compensation, dup-dispatch, slow-register, drop-start-reply",
			    tok);
			return -1;
		}
		every[found] = n;
	}
	return 0;
}

bool
fp_hit(enum fp_point p)
{
	if (every[p] == 0)
		return false;
	unsigned long k = atomic_fetch_add(&passes[p], 1) + 1;
	return p == FP_DUP_DISPATCH ? k % every[p] == 0 : k == every[p];
}

void
fp_kill(enum fp_point p)
{
	if (!fp_hit(p))
		return;
	slog_warn("failpoint %s reached (pass %lu): exiting as if killed", names[p], every[p]);
	_exit(137);
}

void
fp_delay(enum fp_point p)
{
	if (every[p] == 0)
		return;
	slog_warn("failpoint %s: waiting %lu ms", names[p], every[p]);
	struct timespec ts = { (time_t)(every[p] / 1000), (long)(every[p] % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}
