/*
 * order-payment: the "payment" participant of shop.OrderSaga.
 *
 *   ChargePayment  records a charge in `charges`
 *                  -> ChargeResult{charge_id: "ch_<order_id>", amount_cents}
 *   RefundPayment  marks the charge that ChargePayment returned refunded
 *
 * RefundPayment shows how a compensation uses what its action returned:
 * sagad hands a compensation its own step's result, so the charge id comes
 * from step->results. Both run through libsaga's barrier on the
 * participant's own database (--db), so a redelivered charge is not taken
 * twice and a refund is paid at most once.
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

static const char SCHEMA[] = "CREATE TABLE IF NOT EXISTS charges ("
			     "  charge_id text PRIMARY KEY,"
			     "  order_id text NOT NULL,"
			     "  card text NOT NULL,"
			     "  amount_cents bigint NOT NULL,"
			     "  refunded boolean NOT NULL DEFAULT false);";

static void
charge_tx(PGconn *db, const saga_step *step, saga_reply *reply, void *user)
{
	const Shop__OrderRequest *req = user;
	Shop__ChargeResult res = SHOP__CHARGE_RESULT__INIT;
	char id[256], amount[32];
	uint8_t *buf;
	size_t len;
	PGresult *r;

	if (req->amount_cents == 0) {
		saga_reply_fail(reply, "amount_cents must be positive");
		return;
	}
	if (strcmp(req->card, "declined") == 0) {
		saga_reply_fail(reply, "card declined");
		return;
	}
	if (strcmp(req->card, "flaky") == 0 && step->attempt == 1) {
		saga_reply_retry(reply, "card processor timed out (simulated)");
		return;
	}
	snprintf(id, sizeof(id), "ch_%s", req->order_id);
	snprintf(amount, sizeof(amount), "%llu", (unsigned long long)req->amount_cents);
	const char *v[4] = { id, req->order_id, req->card, amount };
	if ((r = ex_sql(db, reply,
		 "INSERT INTO charges (charge_id, order_id, card, amount_cents)"
		 " VALUES ($1, $2, $3, $4::bigint)",
		 4, v)) == NULL)
		return;
	PQclear(r);
	res.charge_id = id;
	res.amount_cents = req->amount_cents;
	if ((buf = ex_pack(&res.base, &len)) == NULL) {
		saga_reply_retry(reply, "out of memory");
		return;
	}
	ex_say("charged %llu cents as %s", (unsigned long long)req->amount_cents, id);
	saga_reply_success(reply, buf, len);
	free(buf);
}

static void
refund_tx(PGconn *db, const saga_step *step, saga_reply *reply, void *user)
{
	const saga_step_result *sr;
	Shop__ChargeResult *charge;
	PGresult *r;

	(void)user;
	/* The barrier runs this only if the charge committed, so its result
	 * is there. */
	sr = saga_step_find_result(step, "ChargePayment");
	charge = sr ? shop__charge_result__unpack(NULL, sr->len, sr->data) : NULL;
	if (charge == NULL || charge->charge_id[0] == '\0') {
		saga_reply_retry(reply, "ChargePayment's result is not a shop.ChargeResult");
		if (charge != NULL)
			shop__charge_result__free_unpacked(charge, NULL);
		return;
	}
	const char *v[1] = { charge->charge_id };
	if ((r = ex_sql(db, reply,
		 "UPDATE charges SET refunded = true WHERE charge_id = $1 AND NOT refunded", 1,
		 v)) != NULL) {
		ex_say("refunded %s (%llu cents)", charge->charge_id,
		    (unsigned long long)charge->amount_cents);
		PQclear(r);
		saga_reply_success(reply, NULL, 0);
	}
	shop__charge_result__free_unpacked(charge, NULL);
}

static void
charge_payment(const saga_step *step, saga_reply *reply, void *user)
{
	Shop__OrderRequest *req;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("ChargePayment saga=%s: bad input, failed", step->saga_id);
		return;
	}
	ex_run_barrier(step, reply, charge_tx, req);
	shop__order_request__free_unpacked(req, NULL);
}

static void
refund_payment(const saga_step *step, saga_reply *reply, void *user)
{
	(void)user;
	ex_run_barrier(step, reply, refund_tx, NULL);
}

int
main(int argc, char **argv)
{
	static const ex_handler handlers[] = {
		{ SAGA_ACTION, "ChargePayment", charge_payment },
		{ SAGA_COMPENSATION, "RefundPayment", refund_payment },
	};

	return ex_participant_main(
	    argc, argv, "payment", SCHEMA, handlers, sizeof(handlers) / sizeof(handlers[0]));
}
