/*
 * order-payment: the "payment" participant of shop.OrderSaga.
 *
 *   ChargePayment  -> ChargeResult{charge_id: "ch_<order_id>", amount_cents}
 *   RefundPayment  -> refunds the charge that ChargePayment returned
 *
 * RefundPayment shows how a compensation uses what its action returned:
 * sagad hands a compensation its own step's result, so the charge id comes
 * from step->results, not from any state kept here.
 *
 * For trying out the failure handling, two card values are special:
 *   "declined"  ChargePayment fails for good (business failure)
 *   "flaky"     the first attempt fails with a retryable error; sagad
 *               retries it after a backoff (see the retry policy in
 *               order.proto)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static void
charge_payment(const saga_step *step, saga_reply *reply, void *user)
{
	Shop__ChargeResult res = SHOP__CHARGE_RESULT__INIT;
	Shop__OrderRequest *req;
	char id[256];
	uint8_t *buf;
	size_t len;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("ChargePayment saga=%s: bad input, failed", step->saga_id);
		return;
	}
	if (req->amount_cents == 0) {
		ex_out("ChargePayment saga=%s order=%s: amount 0, failed", step->saga_id,
		    req->order_id);
		saga_reply_fail(reply, "amount_cents must be positive");
		goto out;
	}
	if (strcmp(req->card, "declined") == 0) {
		ex_out(
		    "ChargePayment saga=%s order=%s: card declined", step->saga_id, req->order_id);
		saga_reply_fail(reply, "card declined");
		goto out;
	}
	if (strcmp(req->card, "flaky") == 0 && step->attempt == 1) {
		ex_out("ChargePayment saga=%s order=%s attempt=%u: processor "
		       "timeout, asking for a retry",
		    step->saga_id, req->order_id, step->attempt);
		saga_reply_retry(reply, "card processor timed out (simulated)");
		goto out;
	}
	snprintf(id, sizeof(id), "ch_%s", req->order_id);
	res.charge_id = id;
	res.amount_cents = req->amount_cents;
	if ((buf = ex_pack(&res.base, &len)) == NULL) {
		saga_reply_retry(reply, "out of memory");
		goto out;
	}
	ex_out("ChargePayment saga=%s order=%s attempt=%u: charged %llu cents as %s", step->saga_id,
	    req->order_id, step->attempt, (unsigned long long)req->amount_cents, id);
	saga_reply_success(reply, buf, len);
	free(buf);
out:
	shop__order_request__free_unpacked(req, NULL);
}

static void
refund_payment(const saga_step *step, saga_reply *reply, void *user)
{
	const saga_step_result *r;
	Shop__ChargeResult *charge;
	Shop__OrderRequest *req;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("RefundPayment saga=%s: bad input, failed", step->saga_id);
		return;
	}
	r = saga_step_find_result(step, "ChargePayment");
	if (r == NULL) {
		/* The charge never succeeded: there is nothing to give back. */
		ex_out("RefundPayment saga=%s order=%s attempt=%u: nothing charged, "
		       "nothing to refund",
		    step->saga_id, req->order_id, step->attempt);
		saga_reply_success(reply, NULL, 0);
		goto out;
	}
	charge = shop__charge_result__unpack(NULL, r->len, r->data);
	if (charge == NULL || charge->charge_id[0] == '\0') {
		ex_out("RefundPayment saga=%s order=%s: unreadable charge result, failed",
		    step->saga_id, req->order_id);
		saga_reply_fail(
		    reply, "ChargePayment's result is not a shop.ChargeResult with a charge_id");
		if (charge != NULL)
			shop__charge_result__free_unpacked(charge, NULL);
		goto out;
	}
	/* A real service would call its payment provider here with
	 * step->idempotency_key, so that a redelivered refund is not paid
	 * twice. */
	ex_out("RefundPayment saga=%s order=%s attempt=%u: refunded %s (%llu cents)", step->saga_id,
	    req->order_id, step->attempt, charge->charge_id,
	    (unsigned long long)charge->amount_cents);
	saga_reply_success(reply, NULL, 0);
	shop__charge_result__free_unpacked(charge, NULL);
out:
	shop__order_request__free_unpacked(req, NULL);
}

int
main(int argc, char **argv)
{
	static const ex_handler handlers[] = {
		{ SAGA_ACTION, "ChargePayment", charge_payment },
		{ SAGA_COMPENSATION, "RefundPayment", refund_payment },
	};

	return ex_participant_main(
	    argc, argv, "payment", handlers, sizeof(handlers) / sizeof(handlers[0]));
}
