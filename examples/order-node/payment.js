'use strict';
// payment.js: the "payment" participant of shop.OrderSaga, in Node.js; the
// twin of examples/order/payment.c, on the same tables, so C and Node
// replicas of payment can serve one saga side by side.
//
//   ChargePayment  records a charge in `charges`
//                  -> ChargeResult{charge_id: "ch_<order_id>", amount_cents}
//   RefundPayment  marks the order's charge (ch_<order_id>) refunded
//
// The refund finds the charge from the order id in the saga input, not
// from ChargePayment's result, which is absent when the charge committed but
// its reply was lost. Two card values are special: "declined" fails the
// charge for good (business failure); "flaky" fails its first attempt with
// a retryable error, which sagad retries after a backoff.

const { messages, encode, serve, BusinessFailure, RetryableError } = require('./shop');

const SCHEMA = `
CREATE TABLE IF NOT EXISTS charges (
  charge_id text PRIMARY KEY,
  order_id text NOT NULL,
  card text NOT NULL,
  amount_cents bigint NOT NULL,
  refunded boolean NOT NULL DEFAULT false)`;

async function charge(db, order, step) {
  if (order.amountCents === '0') throw new BusinessFailure('amount_cents must be positive');
  if (order.card === 'declined') throw new BusinessFailure('card declined');
  if (order.card === 'flaky' && step.attempt === 1) throw new RetryableError('card processor timed out (simulated)');
  const id = `ch_${order.orderId}`;
  await db.query('INSERT INTO charges (charge_id, order_id, card, amount_cents) VALUES ($1, $2, $3, $4::bigint)',
    [id, order.orderId, order.card, order.amountCents]);
  return {
    result: encode(messages.ChargeResult, { chargeId: id, amountCents: order.amountCents }),
    said: `charged ${order.amountCents} cents as ${id}`,
  };
}

async function refund(db, order) {
  const id = `ch_${order.orderId}`;
  const r = await db.query('UPDATE charges SET refunded = true WHERE charge_id = $1 AND NOT refunded RETURNING amount_cents', [id]);
  return { result: null, said: r.rowCount === 1 ? `refunded ${id} (${r.rows[0].amount_cents} cents)` : `${id} was refunded already` };
}

serve('payment', SCHEMA, {
  ChargePayment: { kind: 'action', tx: charge },
  RefundPayment: { kind: 'compensation', tx: refund },
});
