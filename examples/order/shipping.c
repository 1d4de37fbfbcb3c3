/*
 * order-shipping: the "shipping" participant of shop.OrderSaga.
 *
 *   BookShipping -> ShipResult{tracking}
 *
 * BookShipping is the last step and has no compensation. It refuses the
 * address "nowhere" (and an empty one) with a business failure, which makes
 * sagad compensate the steps before it: RefundPayment, then ReleaseStock.
 * A booking is a row in `shipments`, written through libsaga's barrier on
 * the participant's own database (--db), so a redelivery books nothing twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char SCHEMA[] = "CREATE TABLE IF NOT EXISTS shipments ("
			     "  tracking text PRIMARY KEY,"
			     "  order_id text NOT NULL,"
			     "  address text NOT NULL);";

static void
book_tx(PGconn *db, const saga_step *step, saga_reply *reply, void *user)
{
	const Shop__OrderRequest *req = user;
	Shop__ShipResult res = SHOP__SHIP_RESULT__INIT;
	char msg[600], tracking[256];
	uint8_t *buf;
	size_t len;
	PGresult *r;

	(void)step;
	if (req->address[0] == '\0' || strcmp(req->address, "nowhere") == 0) {
		snprintf(msg, sizeof(msg), "cannot ship to %s",
		    req->address[0] != '\0' ? req->address : "an empty address");
		/* Business failure: no retry, the saga compensates. */
		saga_reply_fail(reply, msg);
		return;
	}
	snprintf(tracking, sizeof(tracking), "TRK-%s", req->order_id);
	const char *v[3] = { tracking, req->order_id, req->address };
	if ((r = ex_sql(db, reply,
		 "INSERT INTO shipments (tracking, order_id, address) VALUES ($1, $2, $3)", 3,
		 v)) == NULL)
		return;
	PQclear(r);
	res.tracking = tracking;
	if ((buf = ex_pack(&res.base, &len)) == NULL) {
		saga_reply_retry(reply, "out of memory");
		return;
	}
	ex_say("booked to %s, tracking %s", req->address, tracking);
	saga_reply_success(reply, buf, len);
	free(buf);
}

static void
book_shipping(const saga_step *step, saga_reply *reply, void *user)
{
	Shop__OrderRequest *req;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("BookShipping saga=%s: bad input, failed", step->saga_id);
		return;
	}
	ex_run_barrier(step, reply, book_tx, req);
	shop__order_request__free_unpacked(req, NULL);
}

int
main(int argc, char **argv)
{
	static const ex_handler handlers[] = {
		{ SAGA_ACTION, "BookShipping", book_shipping },
	};

	return ex_participant_main(
	    argc, argv, "shipping", SCHEMA, handlers, sizeof(handlers) / sizeof(handlers[0]));
}
