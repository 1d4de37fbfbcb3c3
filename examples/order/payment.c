/*
 * order-payment: the "payment" participant of shop.OrderSaga.
 *
 *   ChargePayment  records a charge in `charges`
 *                  -> ChargeResult{charge_id: "ch_<order_id>", amount_cents}
 *   RefundPayment  marks the order's charge (ch_<order_id>) refunded
 *
 * RefundPayment shows how a compensation keys its undo off the saga: the
 * charge is found from the order id in the saga input, not from
 * ChargePayment's result, which is absent when the charge committed but its
 * reply was lost (the step is then uncertain and undone anyway). Both run through libsaga's barrier on the
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
	const Shop__OrderRequest *req = user;
	char id[256];
	PGresult *r;

	(void)step;
	/* The undo is keyed off the saga's input, not ChargePayment's result:
	 * a charge whose reply was lost (timed out, so uncertain) has no
	 * result, yet the barrier runs this because the charge committed. The
	 * charge made for this order is found the way it was named. */
	snprintf(id, sizeof(id), "ch_%s", req->order_id);
	const char *v[1] = { id };
	if ((r = ex_sql(db, reply,
		 "UPDATE charges SET refunded = true WHERE charge_id = $1 AND NOT refunded"
		 " RETURNING amount_cents",
		 1, v)) != NULL) {
		if (PQntuples(r) == 1)
			ex_say("refunded %s (%s cents)", id, PQgetvalue(r, 0, 0));
		else
			ex_say("%s was refunded already", id);
		PQclear(r);
		saga_reply_success(reply, NULL, 0);
	}
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
	Shop__OrderRequest *req;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("RefundPayment saga=%s: bad input, failed", step->saga_id);
		return;
	}
	ex_run_barrier(step, reply, refund_tx, req);
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
	    argc, argv, "payment", SCHEMA, handlers, sizeof(handlers) / sizeof(handlers[0]));
}
