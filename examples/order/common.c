/*
 * common: argument parsing, signals, logging and input decoding shared by
 * the example order participants. See common.h.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* The worker the signal handler stops. Set before the handlers are
 * installed and cleared only after they are restored, so the handler never
 * sees a freed worker. */
static saga_worker *ex_worker;

static volatile sig_atomic_t ex_log_max = SAGA_LOG_INFO;

static void
ex_on_signal(int sig)
{
	(void)sig;
	/* saga_worker_stop is async-signal-safe; a second signal is harmless. */
	if (ex_worker != NULL)
		saga_worker_stop(ex_worker);
}

const char *
ex_default_url(void)
{
	const char *env = getenv("SAGA_URL");

	return (env != NULL && env[0] != '\0') ? env : SAGA_DEFAULT_URL;
}

void
ex_set_log_level(saga_log_level max)
{
	ex_log_max = (sig_atomic_t)max;
}

void
ex_log(saga_log_level level, const char *line, void *user)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *prog = user != NULL ? (const char *)user : "saga";
	const char *name = (unsigned)level < 4 ? names[level] : "log";

	if ((int)level > (int)ex_log_max)
		return;
	/* One fprintf per line: stdio locks the stream, so lines from the
	 * library's threads do not interleave. */
	fprintf(stderr, "%s: %s: %s\n", prog, name, line);
}

void
ex_out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	flockfile(stdout);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	funlockfile(stdout);
	va_end(ap);
}

Shop__OrderRequest *
ex_order_input(const saga_step *step, saga_reply *reply)
{
	Shop__OrderRequest *req;
	char msg[160];

	req = shop__order_request__unpack(NULL, step->input_len, step->input);
	if (req == NULL) {
		snprintf(msg, sizeof(msg), "bad input: %zu bytes that are not a shop.OrderRequest",
		    step->input_len);
		saga_reply_fail(reply, msg);
		return NULL;
	}
	if (req->order_id == NULL || req->order_id[0] == '\0') {
		shop__order_request__free_unpacked(req, NULL);
		saga_reply_fail(reply, "bad input: OrderRequest.order_id is empty");
		return NULL;
	}
	return req;
}

uint8_t *
ex_pack(const ProtobufCMessage *msg, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	/* +1: malloc(0) may return NULL for an all-default (empty) message. */
	uint8_t *buf = malloc(n + 1);

	if (buf == NULL)
		return NULL;
	*len = protobuf_c_message_pack(msg, buf);
	return buf;
}

static void
ex_usage(FILE *out, const char *prog, const char *participant)
{
	fprintf(out,
	    "usage: %s [--url URL] [--capacity N] [--verbose]\n"
	    "Example participant \"%s\" of the shop.OrderSaga saga.\n"
	    "  --url URL      sagad address (default $SAGA_URL, else %s)\n"
	    "  --capacity N   steps run at once (default: libsaga's, 16)\n"
	    "  --verbose      also print libsaga's debug lines\n"
	    "Prints one line per handled step to stdout; libsaga's log goes to\n"
	    "stderr. Stops cleanly on SIGINT or SIGTERM.\n",
	    prog, participant, SAGA_DEFAULT_URL);
}

static int
ex_parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (s[0] == '\0' || s[0] == '-')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int
ex_participant_main(
    int argc, char **argv, const char *participant, const ex_handler *handlers, size_t n)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *prog = argc > 0 && argv[0] != NULL ? argv[0] : participant;
	const char *url = ex_default_url();
	uint32_t capacity = 0;
	struct sigaction sa, old_int, old_term;
	saga_worker *w = NULL;
	int opt, rv, status = 1;
	size_t i;

	/* Keep just the base name for log prefixes. */
	if (strrchr(prog, '/') != NULL)
		prog = strrchr(prog, '/') + 1;

	while ((opt = getopt_long(argc, argv, "u:c:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'u':
			url = optarg;
			break;
		case 'c':
			if (ex_parse_u32(optarg, &capacity) != 0 || capacity == 0) {
				fprintf(stderr, "%s: --capacity: not a positive number: %s\n", prog,
				    optarg);
				return 2;
			}
			break;
		case 'v':
			ex_set_log_level(SAGA_LOG_DEBUG);
			break;
		case 'h':
			ex_usage(stdout, prog, participant);
			return 0;
		default:
			ex_usage(stderr, prog, participant);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument: %s\n", prog, argv[optind]);
		ex_usage(stderr, prog, participant);
		return 2;
	}

	if ((rv = saga_worker_new(url, participant, &w)) != SAGA_OK) {
		fprintf(stderr, "%s: cannot create worker: %s\n", prog, saga_strerror(rv));
		return 1;
	}
	saga_worker_set_log(w, ex_log, (void *)prog);
	if (capacity != 0 && (rv = saga_worker_set_capacity(w, capacity)) != SAGA_OK) {
		fprintf(stderr, "%s: --capacity %u: %s: %s\n", prog, capacity, saga_strerror(rv),
		    saga_worker_errmsg(w));
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (handlers[i].kind == SAGA_ACTION)
			rv = saga_worker_on_action(w, handlers[i].rpc, handlers[i].fn, NULL);
		else
			rv = saga_worker_on_compensation(w, handlers[i].rpc, handlers[i].fn, NULL);
		if (rv != SAGA_OK) {
			fprintf(stderr, "%s: cannot register handler %s: %s: %s\n", prog,
			    handlers[i].rpc, saga_strerror(rv), saga_worker_errmsg(w));
			goto out;
		}
	}

	ex_worker = w;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ex_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	fprintf(stderr, "%s: participant \"%s\" serving at %s\n", prog, participant, url);
	rv = saga_worker_run(w);

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	ex_worker = NULL;

	if (rv != SAGA_OK) {
		fprintf(stderr, "%s: worker stopped: %s: %s\n", prog, saga_strerror(rv),
		    saga_worker_errmsg(w));
		goto out;
	}
	fprintf(stderr, "%s: stopped\n", prog);
	status = 0;
out:
	saga_worker_free(w);
	return status;
}
