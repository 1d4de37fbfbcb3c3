'use strict';
// Two replicas of the example's payment participant, one in C
// (examples/order/payment.c) and one in Node.js (examples/order-node),
// on one database and one barrier table, serve one stream of orders
// beside a C inventory and a Node.js shipping: both replicas take steps,
// and every order is charged once, and every compensated one refunded and
// released once, whichever replica ran which step.

const test = require('node:test');
const assert = require('node:assert/strict');
const { startShop } = require('./order_example');

const ORDERS = 16;

test('a C and a Node.js payment replica share one barrier: both serve, every effect once', async (t) => {
  const shop = await startShop();
  t.after(() => shop.stop());
  const { messages, encode } = require('../../examples/order-node/shop');

  await shop.c('inventory');
  await shop.node('shipping');
  // Capacity 1 each: with many charges at once, neither replica can take
  // them all.
  const cPay = await shop.c('payment', ['--capacity', '1']);
  const nodePay = await shop.node('payment', ['--capacity', '1']);
  await shop.connected({ inventory: 1, payment: 2, shipping: 1 });

  const ids = [];
  for (let i = 0; i < ORDERS; i++) ids.push(`mix-${i}`);
  const address = (i) => (i % 2 === 1 ? 'nowhere' : `${i} Main St`);
  // All started first (a start is short), then waited for: the sagas run
  // at once.
  const started = await Promise.all(ids.map((id, i) => shop.sagad.client.start('shop.OrderSaga',
    encode(messages.OrderRequest, { orderId: id, sku: 'SKU-2', quantity: 1, amountCents: String(100 + i), card: '4242', address: address(i) }),
    { idempotencyKey: id, businessKey: id })));
  const runs = [];
  for (const s of started) runs.push(await shop.sagad.client.wait(s.sagaId, { timeoutMs: 120000 }));
  runs.forEach((r, i) => assert.equal(r.state, i % 2 === 1 ? 'compensated' : 'completed', `${ids[i]}: ${r.state}`));

  // Both replicas ran steps of these sagas.
  const served = (p) => p.count(/^(ChargePayment|RefundPayment) saga=/);
  t.diagnostic(`payment steps served: C ${served(cPay)}, Node.js ${served(nodePay)}`);
  assert.ok(served(cPay) > 0, `the C replica served no step:\n${nodePay.lines.join('\n')}`);
  assert.ok(served(nodePay) > 0, `the Node.js replica served no step:\n${cPay.lines.join('\n')}`);
  assert.equal(served(cPay) + served(nodePay) >= ORDERS + ORDERS / 2, true);

  // Every effect once: one charge per order, the compensated ones refunded,
  // their stock back (8 of 100 kept), one barrier row per step and kind.
  const q = async (sql) => (await shop.db.query(sql)).rows;
  assert.deepEqual(await q("SELECT count(*)::int AS n, count(*) FILTER (WHERE refunded)::int AS refunded FROM charges WHERE order_id LIKE 'mix-%'"),
    [{ n: ORDERS, refunded: ORDERS / 2 }]);
  assert.deepEqual(await q("SELECT count(*)::int AS n FROM charges WHERE order_id LIKE 'mix-%' AND refunded <> (substring(order_id from 5)::int % 2 = 1)"),
    [{ n: 0 }]);
  assert.deepEqual(await q("SELECT count(*) FILTER (WHERE released)::int AS released FROM reservations WHERE reservation_id LIKE 'res_mix-%'"),
    [{ released: ORDERS / 2 }]);
  assert.deepEqual(await q("SELECT qty FROM stock WHERE sku = 'SKU-2'"), [{ qty: 100 - ORDERS / 2 }]);
  const sagaIds = runs.map((r) => r.sagaId);
  const rows = (await shop.db.query(
    'SELECT step, kind, count(*)::int AS n, bool_or(nulled) AS nulled FROM saga_barrier WHERE saga_id = ANY($1::uuid[]) GROUP BY step, kind ORDER BY step, kind',
    [sagaIds])).rows;
  assert.deepEqual(rows, [
    { step: 'BookShipping', kind: 1, n: ORDERS, nulled: false },
    { step: 'ChargePayment', kind: 1, n: ORDERS, nulled: false },
    { step: 'ChargePayment', kind: 2, n: ORDERS / 2, nulled: false },
    { step: 'ReserveStock', kind: 1, n: ORDERS, nulled: false },
    { step: 'ReserveStock', kind: 2, n: ORDERS / 2, nulled: false },
  ]);
  // And each refund was paid by exactly one replica, once.
  for (let i = 1; i < ORDERS; i += 2) {
    const re = new RegExp(`refunded ch_mix-${i} \\(`);
    assert.equal(cPay.count(re) + nodePay.count(re), 1, `refund of mix-${i}`);
  }
});
