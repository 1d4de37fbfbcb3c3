'use strict';
// inventory.js: the "inventory" participant of shop.OrderSaga, in Node.js;
// the twin of examples/order/inventory.c, on the same tables.
//
//   ReserveStock  takes quantity units of sku out of `stock` and records a
//                 reservation -> ReserveResult{reservation_id: "res_<order_id>"}
//   ReleaseStock  puts the reserved units back
//
// Both run through the barrier (saga-barrier) on the participant's own
// database: a redelivered ReserveStock does not take stock twice, a
// ReleaseStock whose ReserveStock never ran gives nothing back, and a
// ReserveStock arriving after its ReleaseStock is refused. Stock starts at
// 100 units of SKU-1, SKU-2 and SKU-3; an unknown sku or too few units is
// a business failure.

const { messages, encode, serve, BusinessFailure } = require('./shop');

const SCHEMA = `
CREATE TABLE IF NOT EXISTS stock (
  sku text PRIMARY KEY,
  qty integer NOT NULL CHECK (qty >= 0));
INSERT INTO stock VALUES ('SKU-1', 100), ('SKU-2', 100), ('SKU-3', 100)
  ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS reservations (
  reservation_id text PRIMARY KEY,
  sku text NOT NULL,
  qty integer NOT NULL,
  released boolean NOT NULL DEFAULT false)`;

async function reserve(db, order) {
  if (order.quantity === 0) throw new BusinessFailure('quantity must be at least 1');
  const id = `res_${order.orderId}`;
  const took = await db.query('UPDATE stock SET qty = qty - $2::int WHERE sku = $1 AND qty >= $2::int', [order.sku, order.quantity]);
  if (took.rowCount === 0) throw new BusinessFailure(`not enough stock of ${order.sku.slice(0, 200)} (or no such sku)`);
  await db.query('INSERT INTO reservations (reservation_id, sku, qty) VALUES ($1, $2, $3::int)', [id, order.sku, order.quantity]);
  return {
    result: encode(messages.ReserveResult, { reservationId: id }),
    said: `reserved ${order.quantity} x ${order.sku} as ${id}`,
  };
}

async function release(db, order) {
  const id = `res_${order.orderId}`;
  const r = await db.query(
    'WITH rel AS (UPDATE reservations SET released = true' +
      '  WHERE reservation_id = $1 AND NOT released RETURNING sku, qty)' +
      ' UPDATE stock s SET qty = s.qty + rel.qty FROM rel WHERE s.sku = rel.sku',
    [id]);
  return { result: null, said: `released ${id} (${r.rowCount} row${r.rowCount === 1 ? '' : 's'} of stock put back)` };
}

serve('inventory', SCHEMA, {
  ReserveStock: { kind: 'action', tx: reserve },
  ReleaseStock: { kind: 'compensation', tx: release },
});
