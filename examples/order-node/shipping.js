'use strict';
// shipping.js: the "shipping" participant of shop.OrderSaga, in Node.js;
// the twin of examples/order/shipping.c, on the same table.
//
//   BookShipping  records a shipment -> ShipResult{tracking: "TRK-<order_id>"}
//
// The last step, with nothing to undo. The address "nowhere" (or an empty
// one) is a business failure: sagad then refunds the payment and releases
// the stock, newest first.

const { messages, encode, serve, BusinessFailure } = require('./shop');

const SCHEMA = `
CREATE TABLE IF NOT EXISTS shipments (
  tracking text PRIMARY KEY,
  order_id text NOT NULL,
  address text NOT NULL)`;

async function book(db, order) {
  if (order.address === '' || order.address === 'nowhere')
    throw new BusinessFailure(`cannot ship to ${order.address !== '' ? order.address : 'an empty address'}`);
  const tracking = `TRK-${order.orderId}`;
  await db.query('INSERT INTO shipments (tracking, order_id, address) VALUES ($1, $2, $3)', [tracking, order.orderId, order.address]);
  return {
    result: encode(messages.ShipResult, { tracking }),
    said: `booked to ${order.address}, tracking ${tracking}`,
  };
}

serve('shipping', SCHEMA, {
  BookShipping: { kind: 'action', tx: book },
});
