/*
 * order-shipping: the "shipping" participant of shop.OrderSaga.
 *
 *   BookShipping -> ShipResult{tracking}
 *
 * BookShipping is the last step and has no compensation. It refuses the
 * address "nowhere" (and an empty one) with a business failure, which makes
 * sagad compensate the steps before it: RefundPayment, then ReleaseStock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static void
book_shipping(const saga_step *step, saga_reply *reply, void *user)
{
	Shop__ShipResult res = SHOP__SHIP_RESULT__INIT;
	Shop__OrderRequest *req;
	char msg[600], tracking[256];
	uint8_t *buf;
	size_t len;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("BookShipping saga=%s: bad input, failed", step->saga_id);
		return;
	}
	if (req->address[0] == '\0' || strcmp(req->address, "nowhere") == 0) {
		snprintf(msg, sizeof(msg), "cannot ship to %s",
		    req->address[0] != '\0' ? req->address : "an empty address");
		/* Business failure: no retry, the saga compensates. */
		ex_out("BookShipping saga=%s order=%s attempt=%u: %s", step->saga_id, req->order_id,
		    step->attempt, msg);
		saga_reply_fail(reply, msg);
		goto out;
	}
	snprintf(tracking, sizeof(tracking), "TRK-%s", req->order_id);
	res.tracking = tracking;
	if ((buf = ex_pack(&res.base, &len)) == NULL) {
		saga_reply_retry(reply, "out of memory");
		goto out;
	}
	ex_out("BookShipping saga=%s order=%s attempt=%u: booked to %s, tracking %s", step->saga_id,
	    req->order_id, step->attempt, req->address, tracking);
	saga_reply_success(reply, buf, len);
	free(buf);
out:
	shop__order_request__free_unpacked(req, NULL);
}

int
main(int argc, char **argv)
{
	static const ex_handler handlers[] = {
		{ SAGA_ACTION, "BookShipping", book_shipping },
	};

	return ex_participant_main(
	    argc, argv, "shipping", handlers, sizeof(handlers) / sizeof(handlers[0]));
}
