/*
 * order-client: starts one shop.OrderSaga and, with --wait, waits for its
 * outcome.
 *
 *   order-client [--url URL] [--order-id ID] [--sku SKU] [--quantity N]
 *                [--amount CENTS] [--card CARD] [--address ADDR]
 *                [--key IDEMPOTENCY_KEY] [--wait] [--timeout MS] [--verbose]
 *
 * Prints the saga id as the first line of stdout. With --wait it then
 * prints the final state and every step, and exits 0 if the saga
 * completed, 2 if it was compensated, 1 otherwise (failed, timed out or an
 * error).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define EXIT_COMPENSATED 2

static const char *prog = "order-client";

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: %s [options]\n"
	    "Starts one shop.OrderSaga and prints its saga id.\n"
	    "  --url URLS         sagad address (default $SAGA_URL, else %s), or\n"
	    "                     several, separated by commas; for tls+tcp:// URLs\n"
	    "                     $SAGA_TLS_CA, $SAGA_TLS_CERT, $SAGA_TLS_KEY and\n"
	    "                     $SAGA_TLS_SERVER_NAME as for sagactl\n"
	    "  --order-id ID      order id (default: order-<time>-<pid>)\n"
	    "  --sku SKU          (default SKU-1)\n"
	    "  --quantity N       (default 1)\n"
	    "  --amount CENTS     (default 1999)\n"
	    "  --card CARD        (default 4242424242424242; \"declined\" and\n"
	    "                     \"flaky\" make the payment participant fail)\n"
	    "  --address ADDR     (default \"1 Main St, Springfield\";\n"
	    "                     \"nowhere\" makes shipping fail)\n"
	    "  --key KEY          idempotency key: the same key always returns\n"
	    "                     the same saga\n"
	    "  --wait             wait for the outcome and print every step\n"
	    "  --timeout MS       how long --wait waits (default 60000)\n"
	    "  --verbose          print libsaga's log lines (debug and up)\n"
	    "Exit status with --wait: 0 completed, 2 compensated, 1 otherwise.\n",
	    prog, SAGA_DEFAULT_URL);
}

static int
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] == '\0' || s[0] == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

/* Shows an example step's result decoded; other bytes as a length. */
static void
print_result(const saga_step_info *s)
{
	Shop__ReserveResult *rr;
	Shop__ChargeResult *cr;
	Shop__ShipResult *sr;

	if (s->result_len == 0)
		return;
	if (strcmp(s->name, "ReserveStock") == 0 &&
	    (rr = shop__reserve_result__unpack(NULL, s->result_len, s->result)) != NULL) {
		printf("      result: reservation_id=%s\n", rr->reservation_id);
		shop__reserve_result__free_unpacked(rr, NULL);
	} else if (strcmp(s->name, "ChargePayment") == 0 &&
	    (cr = shop__charge_result__unpack(NULL, s->result_len, s->result)) != NULL) {
		printf("      result: charge_id=%s amount_cents=%" PRIu64 "\n", cr->charge_id,
		    (uint64_t)cr->amount_cents);
		shop__charge_result__free_unpacked(cr, NULL);
	} else if (strcmp(s->name, "BookShipping") == 0 &&
	    (sr = shop__ship_result__unpack(NULL, s->result_len, s->result)) != NULL) {
		printf("      result: tracking=%s\n", sr->tracking);
		shop__ship_result__free_unpacked(sr, NULL);
	} else if (s->result_len > 0) {
		printf("      result: %zu bytes\n", s->result_len);
	}
}

static void
print_info(const saga_info *info)
{
	size_t i;

	printf("saga %s (%s v%" PRIu32 "): %s\n", info->saga_id, info->definition, info->version,
	    saga_state_name(info->state));
	if (info->error != NULL && info->error[0] != '\0')
		printf("  error: %s\n", info->error);
	for (i = 0; i < info->n_steps; i++) {
		const saga_step_info *s = &info->steps[i];

		printf("  step %-14s %-10s %-16s attempts=%" PRIu32, s->name, s->participant,
		    saga_step_state_name(s->state), s->attempts);
		if (s->compensation != NULL && s->compensation[0] != '\0')
			printf(
			    " undo=%s comp_attempts=%" PRIu32, s->compensation, s->comp_attempts);
		putchar('\n');
		if (s->last_error != NULL && s->last_error[0] != '\0')
			printf("      last error: %s\n", s->last_error);
		print_result(s);
	}
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "order-id", required_argument, NULL, 'o' },
		{ "sku", required_argument, NULL, 's' },
		{ "quantity", required_argument, NULL, 'q' },
		{ "amount", required_argument, NULL, 'a' },
		{ "card", required_argument, NULL, 'c' },
		{ "address", required_argument, NULL, 'd' },
		{ "key", required_argument, NULL, 'k' },
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	Shop__OrderRequest req = SHOP__ORDER_REQUEST__INIT;
	saga_start_opts opts = { 0 };
	const char *url = ex_default_url();
	saga_client *c = NULL;
	saga_info *info = NULL;
	char default_id[64];
	char *saga_id = NULL;
	uint8_t *buf = NULL;
	uint64_t v, timeout_ms = 60000;
	size_t len;
	int opt, rv, existing = 0, wait = 0, status = 1;

	/* A one-shot tool: libsaga's info lines (connects, reconnects) are
	 * noise here; --verbose shows everything. */
	ex_set_log_level(SAGA_LOG_WARN);
	snprintf(default_id, sizeof(default_id), "order-%lld-%ld", (long long)time(NULL),
	    (long)getpid());
	req.order_id = default_id;
	req.sku = "SKU-1";
	req.quantity = 1;
	req.amount_cents = 1999;
	req.card = "4242424242424242";
	req.address = "1 Main St, Springfield";

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'u':
			url = optarg;
			break;
		case 'o':
			req.order_id = optarg;
			break;
		case 's':
			req.sku = optarg;
			break;
		case 'c':
			req.card = optarg;
			break;
		case 'd':
			req.address = optarg;
			break;
		case 'k':
			opts.idempotency_key = optarg;
			break;
		case 'w':
			wait = 1;
			break;
		case 'v':
			ex_set_log_level(SAGA_LOG_DEBUG);
			break;
		case 'q':
			if (parse_u64(optarg, UINT32_MAX, &v) != 0) {
				fprintf(stderr, "%s: --quantity: not a number: %s\n", prog, optarg);
				return 1;
			}
			req.quantity = (uint32_t)v;
			break;
		case 'a':
			if (parse_u64(optarg, UINT64_MAX, &v) != 0) {
				fprintf(stderr, "%s: --amount: not a number of cents: %s\n", prog,
				    optarg);
				return 1;
			}
			req.amount_cents = v;
			break;
		case 't':
			if (parse_u64(optarg, INT_MAX, &timeout_ms) != 0) {
				fprintf(stderr, "%s: --timeout: not a number of ms: %s\n", prog,
				    optarg);
				return 1;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument: %s\n", prog, argv[optind]);
		usage(stderr);
		return 1;
	}
	/* The order id doubles as the business key: `sagactl list` can find
	 * the saga by it. */
	opts.business_key = req.order_id;

	if ((buf = ex_pack(&req.base, &len)) == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	if ((rv = saga_client_new(url, &c)) != SAGA_OK) {
		char why[512] = "";
		if (rv == SAGA_EINVAL)
			saga_url_list_check(url, why, sizeof(why));
		fprintf(stderr, "%s: %s%s%s\n", prog, saga_strerror(rv), why[0] != '\0' ? ": " : "",
		    why);
		goto out;
	}
	saga_client_set_log(c, ex_log, (void *)prog);
	if (!ex_tls_from_env(prog, c, NULL)) {
		rv = SAGA_EINVAL;
		goto out;
	}

	rv = saga_client_start(c, "shop.OrderSaga", buf, len, &opts, &saga_id, &existing);
	if (rv != SAGA_OK) {
		fprintf(stderr, "%s: cannot start shop.OrderSaga at %s: %s: %s\n", prog, url,
		    saga_strerror(rv), saga_client_errmsg(c));
		goto out;
	}
	printf("%s\n", saga_id);
	fflush(stdout);
	if (existing)
		fprintf(stderr,
		    "%s: idempotency key \"%s\" was used before: "
		    "this is that saga, not a new one\n",
		    prog, opts.idempotency_key);
	if (!wait) {
		status = 0;
		goto out;
	}

	rv = saga_client_wait(c, saga_id, (int)timeout_ms, &info);
	if (info != NULL)
		print_info(info);
	if (rv != SAGA_OK) {
		fprintf(stderr, "%s: waiting for saga %s: %s: %s\n", prog, saga_id,
		    saga_strerror(rv), saga_client_errmsg(c));
		goto out;
	}
	if (info == NULL) {
		fprintf(stderr, "%s: no status for saga %s\n", prog, saga_id);
		goto out;
	}
	switch (info->state) {
	case SAGA_STATE_COMPLETED:
		status = 0;
		break;
	case SAGA_STATE_COMPENSATED:
		status = EXIT_COMPENSATED;
		break;
	default:
		status = 1;
		break;
	}
out:
	saga_info_free(info);
	saga_string_free(saga_id);
	saga_client_free(c);
	free(buf);
	return status;
}
