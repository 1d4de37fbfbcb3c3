/* breaker: per-participant circuit breaker. See breaker.h. */
#include "breaker.h"

void
breaker_init(breaker *b, int64_t now_ms)
{
	*b = (breaker) { .state = BRK_CLOSED, .window_start_ms = now_ms };
}

const char *
breaker_state_name(int state)
{
	switch (state) {
	case BRK_CLOSED:
		return "closed";
	case BRK_OPEN:
		return "open";
	case BRK_HALF_OPEN:
		return "half-open";
	}
	return "unknown";
}

static void
open_now(breaker *b, const breaker_cfg *c, int64_t now_ms)
{
	b->state = BRK_OPEN;
	b->open_until_ms = now_ms + c->cooloff_ms;
	b->probes = 0;
	b->times_opened++;
}

uint32_t
breaker_allow(breaker *b, const breaker_cfg *c, int64_t now_ms)
{
	(void)c;
	if (b->state == BRK_OPEN && now_ms >= b->open_until_ms) {
		b->state = BRK_HALF_OPEN;
		b->probes = 0;
	}
	switch (b->state) {
	case BRK_CLOSED:
		return UINT32_MAX;
	case BRK_HALF_OPEN:
		return b->probes == 0 ? 1 : 0;
	default:
		return 0;
	}
}

void
breaker_dispatched(breaker *b, uint32_t n)
{
	if (b->state == BRK_HALF_OPEN)
		b->probes += n;
}

int
breaker_record(breaker *b, const breaker_cfg *c, int64_t now_ms, bool failure)
{
	switch (b->state) {
	case BRK_OPEN:
		return -1; /* sent before it opened: says nothing new */
	case BRK_HALF_OPEN:
		if (b->probes == 0)
			return -1; /* not the probe's outcome */
		if (failure) {
			open_now(b, c, now_ms);
			return BRK_OPEN;
		}
		uint32_t opened = b->times_opened, lc = b->last_calls, lf = b->last_fails;
		breaker_init(b, now_ms);
		b->times_opened = opened;
		b->last_calls = lc;
		b->last_fails = lf;
		return BRK_CLOSED;
	default:
		break;
	}
	if (now_ms - b->window_start_ms >= (int64_t)c->window_ms) {
		b->window_start_ms = now_ms;
		b->calls = b->fails = 0;
	}
	b->calls++;
	if (failure)
		b->fails++;
	if (c->fail_pct > 0 && b->calls >= c->min_calls &&
	    (uint64_t)b->fails * 100 >= (uint64_t)c->fail_pct * b->calls) {
		b->last_calls = b->calls;
		b->last_fails = b->fails;
		b->calls = b->fails = 0;
		b->window_start_ms = now_ms;
		open_now(b, c, now_ms);
		return BRK_OPEN;
	}
	return -1;
}
