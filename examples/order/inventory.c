/*
 * order-inventory: the "inventory" participant of shop.OrderSaga.
 *
 *   ReserveStock  takes quantity units of sku out of `stock` and records a
 *                 reservation -> ReserveResult{reservation_id: "res_<order_id>"}
 *   ReleaseStock  puts the reserved units back
 *
 * Both run through libsaga's barrier on the participant's own database
 * (--db): the stock change and the barrier's record commit together, so a
 * redelivered ReserveStock does not take stock twice, a ReleaseStock whose
 * ReserveStock never ran gives nothing back, and a ReserveStock arriving
 * after its ReleaseStock is refused.
 *
 * Stock starts at 100 units for each of SKU-1, SKU-2 and SKU-3; an unknown
 * sku or too few units is a business failure.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS stock ("
    "  sku text PRIMARY KEY,"
    "  qty integer NOT NULL CHECK (qty >= 0));"
    "INSERT INTO stock VALUES ('SKU-1', 100), ('SKU-2', 100), ('SKU-3', 100)"
    "  ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS reservations ("
    "  reservation_id text PRIMARY KEY,"
    "  sku text NOT NULL,"
    "  qty integer NOT NULL,"
    "  released boolean NOT NULL DEFAULT false);";

/* Inside the barrier's transaction. */
static void
reserve_tx(PGconn *db, const saga_step *step, saga_reply *reply, void *user)
{
	const Shop__OrderRequest *req = user;
	Shop__ReserveResult res = SHOP__RESERVE_RESULT__INIT;
	char id[256], qty[16];
	uint8_t *buf;
	size_t len;
	PGresult *r;

	(void)step;
	if (req->quantity == 0) {
		saga_reply_fail(reply, "quantity must be at least 1");
		return;
	}
	snprintf(id, sizeof(id), "res_%s", req->order_id);
	snprintf(qty, sizeof(qty), "%u", req->quantity);
	const char *upd[2] = { req->sku, qty };
	r = ex_sql(db, reply,
	    "UPDATE stock SET qty = qty - $2::int WHERE sku = $1 AND qty >= $2::int", 2, upd);
	if (r == NULL)
		return;
	int took = atoi(PQcmdTuples(r));
	PQclear(r);
	if (!took) {
		char msg[300];
		snprintf(msg, sizeof(msg), "not enough stock of %.200s (or no such sku)", req->sku);
		saga_reply_fail(reply, msg);
		return;
	}
	const char *ins[3] = { id, req->sku, qty };
	if ((r = ex_sql(db, reply,
		 "INSERT INTO reservations (reservation_id, sku, qty) VALUES ($1, $2, $3::int)", 3,
		 ins)) == NULL)
		return;
	PQclear(r);
	res.reservation_id = id;
	if ((buf = ex_pack(&res.base, &len)) == NULL) {
		saga_reply_retry(reply, "out of memory");
		return;
	}
	ex_say("reserved %u x %s as %s", req->quantity, req->sku, id);
	saga_reply_success(reply, buf, len);
	free(buf);
}

static void
release_tx(PGconn *db, const saga_step *step, saga_reply *reply, void *user)
{
	const Shop__OrderRequest *req = user;
	char id[256];
	PGresult *r;

	(void)step;
	snprintf(id, sizeof(id), "res_%s", req->order_id);
	const char *v[1] = { id };
	r = ex_sql(db, reply,
	    "WITH rel AS (UPDATE reservations SET released = true"
	    "  WHERE reservation_id = $1 AND NOT released RETURNING sku, qty)"
	    " UPDATE stock s SET qty = s.qty + rel.qty FROM rel WHERE s.sku = rel.sku",
	    1, v);
	if (r == NULL)
		return;
	ex_say("released %s (%s row%s of stock put back)", id, PQcmdTuples(r),
	    atoi(PQcmdTuples(r)) == 1 ? "" : "s");
	PQclear(r);
	saga_reply_success(reply, NULL, 0);
}

static void
reserve_stock(const saga_step *step, saga_reply *reply, void *user)
{
	Shop__OrderRequest *req;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("ReserveStock saga=%s: bad input, failed", step->saga_id);
		return;
	}
	ex_run_barrier(step, reply, reserve_tx, req);
	shop__order_request__free_unpacked(req, NULL);
}

static void
release_stock(const saga_step *step, saga_reply *reply, void *user)
{
	Shop__OrderRequest *req;

	(void)user;
	if ((req = ex_order_input(step, reply)) == NULL) {
		ex_out("ReleaseStock saga=%s: bad input, failed", step->saga_id);
		return;
	}
	ex_run_barrier(step, reply, release_tx, req);
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
	    argc, argv, "inventory", SCHEMA, handlers, sizeof(handlers) / sizeof(handlers[0]));
}
