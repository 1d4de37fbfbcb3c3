'use strict';
// The Node.js order example end to end: its three participants
// (examples/order-node) and its HTTP order service against a real sagad on
// a real PostgreSQL. A good order answers `completed`; an order to
// "nowhere" answers `compensated`, and the participants' rows show the
// refund and the release happened exactly once, also when the same order
// is posted again. Bad requests get a clear 4xx.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { startShop, request, app } = require('./order_example');

let shop;
let base;
let payment;

test.before(async () => {
  shop = await startShop();
  await shop.node('inventory');
  payment = await shop.node('payment');
  await shop.node('shipping');
  const svc = await shop.start('order-service', process.execPath,
    [path.join(app, 'order-service.js'), '--url', shop.url, '--listen', '127.0.0.1:0', '--wait-ms', '60000'],
    /listening on http:/);
  base = /listening on (http:\/\/[^ ]+)/.exec(svc.lines.find((l) => /listening on/.test(l)))[1];
});

test.after(async () => {
  if (shop) await shop.stop();
});

const order = (id, address) => ({ orderId: id, sku: 'SKU-1', quantity: 1, amountCents: 1999, card: '4242', address });
const one = async (sql, args) => (await shop.db.query(sql, args)).rows;

test('a good order completes: 201, every step succeeded, stock taken, charged, shipped', async () => {
  const r = await request(base, 'POST', '/orders', { body: order('ok-1', '1 Main St') });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.state, 'completed');
  assert.equal(r.body.orderId, 'ok-1');
  assert.equal(r.body.existing, false);
  assert.match(r.body.sagaId, /^[0-9a-f-]{36}$/);
  assert.deepEqual(r.body.steps.map((s) => `${s.name}:${s.state}`),
    ['ReserveStock:succeeded', 'ChargePayment:succeeded', 'BookShipping:succeeded']);
  assert.deepEqual(await one("SELECT qty FROM stock WHERE sku = 'SKU-1'"), [{ qty: 99 }]);
  assert.deepEqual(await one("SELECT refunded FROM charges WHERE charge_id = 'ch_ok-1'"), [{ refunded: false }]);
  assert.deepEqual(await one("SELECT tracking FROM shipments WHERE order_id = 'ok-1'"), [{ tracking: 'TRK-ok-1' }]);

  const g = await request(base, 'GET', `/orders/${r.body.sagaId}`);
  assert.equal(g.status, 200);
  assert.equal(g.body.state, 'completed');
});

test('an order to "nowhere" is compensated: 422, refunded and released exactly once, also when posted again', async () => {
  const body = order('nowhere-1', 'nowhere');
  const r = await request(base, 'POST', '/orders', { body, headers: { 'Idempotency-Key': 'key-nowhere-1' } });
  assert.equal(r.status, 422, JSON.stringify(r.body));
  assert.equal(r.body.state, 'compensated');
  assert.deepEqual(r.body.steps.map((s) => `${s.name}:${s.state}`),
    ['ReserveStock:compensated', 'ChargePayment:compensated', 'BookShipping:failed']);
  assert.match(r.body.steps[2].lastError, /cannot ship to nowhere/);

  // The effects: the charge refunded, the reservation released, stock back
  // (99: only ok-1's unit is gone), each once.
  assert.deepEqual(await one("SELECT amount_cents, refunded FROM charges WHERE order_id = 'nowhere-1'"),
    [{ amount_cents: '1999', refunded: true }]);
  assert.deepEqual(await one("SELECT released FROM reservations WHERE reservation_id = 'res_nowhere-1'"), [{ released: true }]);
  assert.deepEqual(await one("SELECT qty FROM stock WHERE sku = 'SKU-1'"), [{ qty: 99 }]);
  // The barrier: one row per step and kind, the compensations not null ones.
  assert.deepEqual(await one(
    'SELECT step, kind, outcome, nulled FROM saga_barrier WHERE saga_id = $1 ORDER BY step, kind', [r.body.sagaId]),
  [
    { step: 'BookShipping', kind: 1, outcome: 2, nulled: false },
    { step: 'ChargePayment', kind: 1, outcome: 1, nulled: false },
    { step: 'ChargePayment', kind: 2, outcome: 1, nulled: false },
    { step: 'ReserveStock', kind: 1, outcome: 1, nulled: false },
    { step: 'ReserveStock', kind: 2, outcome: 1, nulled: false },
  ]);
  await payment.waitFor(/^RefundPayment saga=.* refunded ch_nowhere-1 \(1999 cents\) \[barrier: ran\]$/);

  // The same key again: the same saga, nothing run again.
  const again = await request(base, 'POST', '/orders', { body, headers: { 'Idempotency-Key': 'key-nowhere-1' } });
  assert.equal(again.status, 422);
  assert.equal(again.body.sagaId, r.body.sagaId);
  assert.equal(again.body.existing, true);
  // The same key with another order is refused, naming the first saga.
  const other = await request(base, 'POST', '/orders', { body: order('nowhere-2', 'nowhere'), headers: { 'Idempotency-Key': 'key-nowhere-1' } });
  assert.equal(other.status, 409, JSON.stringify(other.body));
  assert.equal(other.body.sagaId, r.body.sagaId);
  assert.equal(payment.count(/refunded ch_nowhere-1/), 1);
  assert.deepEqual(await one("SELECT count(*)::int AS n FROM charges WHERE order_id = 'nowhere-1'"), [{ n: 1 }]);
  assert.deepEqual(await one("SELECT qty FROM stock WHERE sku = 'SKU-1'"), [{ qty: 99 }]);
});

test('bad requests get a clear 4xx and start nothing', async () => {
  const before = (await shop.sagad.client.list({ limit: 1000 })).sagas.length;
  const cases = [
    [{ body: '{"orderId": ' }, 400, /not JSON/],
    [{ body: '[1]' }, 400, /JSON object/],
    [{ body: { ...order('x', 'a'), quantity: 0 } }, 400, /"quantity" must be a whole number/],
    [{ body: { ...order('x', 'a'), amountCents: '18446744073709551616' } }, 400, /"amountCents"/],
    [{ body: { ...order('x', 'a'), sku: '' } }, 400, /"sku" must be a non-empty string/],
    [{ body: { ...order('x', 'a'), extra: 1 } }, 400, /unknown field "extra"/],
    [{ body: order('x', 'a'), headers: { 'Idempotency-Key': 'k'.repeat(201) } }, 400, /Idempotency-Key/],
    [{ body: 'x'.repeat(70000) }, 413, /over 65536 bytes/],
  ];
  for (const [opts, status, re] of cases) {
    const r = await request(base, 'POST', '/orders', opts);
    assert.equal(r.status, status, `${JSON.stringify(opts).slice(0, 80)}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error, re);
  }
  const plain = await fetch(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
  assert.equal(plain.status, 415);
  assert.equal((await request(base, 'GET', '/orders')).status, 405);
  assert.equal((await request(base, 'GET', '/orders/00000000-0000-0000-0000-000000000000')).status, 404);
  assert.equal((await request(base, 'GET', '/nothing')).status, 404);
  assert.equal((await shop.sagad.client.list({ limit: 1000 })).sagas.length, before);
});

test('an order still running after --wait-ms gets 202 and a Location that GET polls to its end; sagad unreachable gets 503', async () => {
  const quick = await shop.start('order-service --wait-ms 1', process.execPath,
    [path.join(app, 'order-service.js'), '--url', shop.url, '--listen', '127.0.0.1:0', '--wait-ms', '1'], /listening on http:/);
  const quickBase = /listening on (http:\/\/[^ ]+)/.exec(quick.lines.find((l) => /listening on/.test(l)))[1];
  // "flaky": the charge's first attempt fails and is retried after a
  // backoff, so the saga cannot be over within a millisecond.
  const r = await request(quickBase, 'POST', '/orders', { body: { ...order('slow-1', '3 Oak St'), card: 'flaky' } });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.equal(r.headers.get('location'), `/orders/${r.body.sagaId}`);
  let g;
  for (const t0 = Date.now(); Date.now() - t0 < 30000;) {
    g = await request(quickBase, 'GET', r.headers.get('location'));
    if (g.body.state !== 'running') break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(g.status, 200);
  assert.equal(g.body.state, 'completed');
  assert.equal(g.body.steps[1].attempts, 2);

  // Nothing listens at this sagad address: 503 with Retry-After, in
  // well under the client's timeout.
  const down = await shop.start('order-service, sagad down', process.execPath,
    [path.join(app, 'order-service.js'), '--url', 'tcp://127.0.0.1:1', '--listen', '127.0.0.1:0'], /listening on http:/);
  const downBase = /listening on (http:\/\/[^ ]+)/.exec(down.lines.find((l) => /listening on/.test(l)))[1];
  const t0 = Date.now();
  const d = await request(downBase, 'POST', '/orders', { body: order('down-1', '4 Elm St') });
  assert.equal(d.status, 503, JSON.stringify(d.body));
  assert.equal(d.headers.get('retry-after'), '1');
  assert.match(d.body.error, /^sagad: /);
  assert.ok(Date.now() - t0 < 9000, `503 took ${Date.now() - t0} ms`);
});
