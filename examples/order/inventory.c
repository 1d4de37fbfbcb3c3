/*
 * order-inventory: the "inventory" participant of shop.OrderSaga.
 *
 *   ReserveStock  -> ReserveResult{reservation_id: "res_<order_id>"}
 *   ReleaseStock  -> undoes it
 *
 * The reservation id is derived from the order id, so a redelivered
 * ReserveStock returns the same answer and a ReleaseStock needs no state of
 * its own. A real service would write the reservation and its undo in its
 * own database transaction, keyed by step->idempotency_key.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

static void
reserve_stock(const saga_step *step, saga_reply *reply, void *user)
{
	Shop__ReserveResult res = SHOP__RESERVE_RESULT__INIT;
	Shop__OrderRequest *req;
	char id[256];
	uint8_t *buf;
	size_t len;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("ReserveStock saga=%s: bad input, failed", step->saga_id);
		return;
	}
	if (req->quantity == 0) {
		ex_out("ReserveStock saga=%s order=%s: quantity 0, failed", step->saga_id,
		    req->order_id);
		saga_reply_fail(reply, "quantity must be at least 1");
		goto out;
	}
	snprintf(id, sizeof(id), "res_%s", req->order_id);
	res.reservation_id = id;
	if ((buf = ex_pack(&res.base, &len)) == NULL) {
		saga_reply_retry(reply, "out of memory");
		goto out;
	}
	ex_out("ReserveStock saga=%s order=%s attempt=%u: reserved %u x %s as %s", step->saga_id,
	    req->order_id, step->attempt, req->quantity, req->sku, id);
	saga_reply_success(reply, buf, len);
	free(buf);
out:
	shop__order_request__free_unpacked(req, NULL);
}

static void
release_stock(const saga_step *step, saga_reply *reply, void *user)
{
	const saga_step_result *r;
	Shop__ReserveResult *res = NULL;
	Shop__OrderRequest *req;
	char derived[256];
	const char *id;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("ReleaseStock saga=%s: bad input, failed", step->saga_id);
		return;
	}
	/* A compensation also receives its own step's result. None means the
	 * reservation never happened: nothing to release, which is success. */
	r = saga_step_find_result(step, "ReserveStock");
	if (r == NULL) {
		ex_out("ReleaseStock saga=%s order=%s attempt=%u: nothing reserved, "
		       "nothing to release",
		    step->saga_id, req->order_id, step->attempt);
		saga_reply_success(reply, NULL, 0);
		goto out;
	}
	/* The id is derived from the order id, so an unreadable result can
	 * still be undone. */
	snprintf(derived, sizeof(derived), "res_%s", req->order_id);
	res = shop__reserve_result__unpack(NULL, r->len, r->data);
	id = (res != NULL && res->reservation_id[0] != '\0') ? res->reservation_id : derived;
	ex_out("ReleaseStock saga=%s order=%s attempt=%u: released %s", step->saga_id,
	    req->order_id, step->attempt, id);
	saga_reply_success(reply, NULL, 0);
	if (res != NULL)
		shop__reserve_result__free_unpacked(res, NULL);
out:
	shop__order_request__free_unpacked(req, NULL);
}

int
main(int argc, char **argv)
{
	static const ex_handler handlers[] = {
		{ SAGA_ACTION, "ReserveStock", reserve_stock },
		{ SAGA_COMPENSATION, "ReleaseStock", release_stock },
	};

	return ex_participant_main(
	    argc, argv, "inventory", handlers, sizeof(handlers) / sizeof(handlers[0]));
}
