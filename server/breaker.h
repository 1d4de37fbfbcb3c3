/*
 * breaker: the circuit breaker sagad keeps per participant. Pure logic on
 * numbers and a clock the caller passes in, so it is tested on its own; the
 * engine owns one per participant and asks it before every dispatch.
 *
 *   closed     dispatch freely. Every attempt's end is recorded: a
 *              retryable error or a timeout is a failure; a success or a
 *              business failure is not (the participant answered). When, in
 *              the current window, at least min_calls attempts ended and
 *              failures reached fail_pct of them, it opens.
 *   open       nothing is dispatched for cooloff_ms: steps wait in sagad's
 *              queue (their timeouts run only once dispatched), so sagas wait
 *              instead of failing. Outcomes of attempts sent before it opened
 *              are ignored.
 *   half-open  after the cool-off, one attempt (the probe) goes out. Its
 *              success closes the breaker; its failure opens it again.
 */
#ifndef SAGAD_BREAKER_H
#define SAGAD_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

enum { BRK_CLOSED = 0, BRK_OPEN = 1, BRK_HALF_OPEN = 2 };

typedef struct breaker_cfg {
	uint32_t window_ms;  /* length of a counting window */
	uint32_t min_calls;  /* ended attempts in a window before it may open */
	uint32_t fail_pct;   /* failure share that opens it, 1..100; 0 = never opens */
	uint32_t cooloff_ms; /* how long it stays open before a probe */
} breaker_cfg;

typedef struct breaker {
	uint8_t state;
	int64_t window_start_ms;
	uint32_t calls, fails; /* in the current window */
	int64_t open_until_ms; /* while open */
	uint32_t probes;       /* half-open: probes in flight (at most 1) */
	uint32_t times_opened;
	/* What opened it last, for status and logs. */
	uint32_t last_calls, last_fails;
} breaker;

void breaker_init(breaker *b, int64_t now_ms);

/* How many dispatches may go now: UINT32_MAX when closed, 0 or 1 when
 * half-open, 0 when open. Moves open -> half-open once the cool-off is
 * over (then returns 1). */
uint32_t breaker_allow(breaker *b, const breaker_cfg *c, int64_t now_ms);

/* n dispatches went out (counts the probe in half-open). */
void breaker_dispatched(breaker *b, uint32_t n);

/* An attempt ended; failure = retryable error or timeout. Returns the new
 * state if this changed it, else -1. */
int breaker_record(breaker *b, const breaker_cfg *c, int64_t now_ms, bool failure);

const char *breaker_state_name(int state);

#endif
