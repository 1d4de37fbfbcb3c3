'use strict';
// The order saga through Node.js participant processes, against a real
// sagad and its real PostgreSQL: success, failure with compensation,
// retry; and the client API with its typed errors.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startSagad, startParticipant, text, saga } = require('./helpers');

let sagad;
let shop;

before(async () => {
  sagad = await startSagad();
  shop = await startParticipant(sagad.url, 'inventory,payments,shipping');
});

after(async () => {
  if (shop) await shop.stop();
  if (sagad) await sagad.stop();
});

test('a saga whose Node.js participants all succeed completes, each step seeing the results it depends on', async () => {
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const r = await sagad.client.run('nodetest.Shop', text('ok'), {
    idempotencyKey: 'order-1', businessKey: 'customer-7', traceparent: tp, timeoutMs: 20000,
  });
  assert.equal(r.state, 'completed');
  assert.equal(r.existing, false);
  const info = await sagad.client.get(r.sagaId);
  assert.equal(info.businessKey, 'customer-7');
  assert.equal(info.idempotencyKey, 'order-1');
  assert.deepEqual(info.steps.map((s) => s.state), ['succeeded', 'succeeded', 'succeeded']);
  assert.ok(Buffer.isBuffer(info.steps[1].result));
  assert.equal(info.steps[1].result.toString(), `charge-42-for-${r.sagaId}`);
  assert.equal(info.input.toString(), 'ok');
  const charge = await shop.waitFor(new RegExp(`^ACTION Charge ${r.sagaId}`));
  assert.match(charge, new RegExp(`reserve=reserved:${r.sagaId}$`));
  const reserve = await shop.waitFor(new RegExp(`^ACTION Reserve ${r.sagaId}`));
  assert.match(reserve, new RegExp(`key=${r.sagaId}/Reserve/action`));
  assert.match(reserve, /tp=00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  // The same idempotency key is the same saga.
  const again = await sagad.client.start('nodetest.Shop', text('ok'), { idempotencyKey: 'order-1' });
  assert.deepEqual(again, { sagaId: r.sagaId, existing: true });
});

test('a business failure compensates, and the Refund compensation reads the Charge result', async () => {
  const r = await sagad.client.run('nodetest.Shop', text('fail=Ship'), { timeoutMs: 20000 });
  assert.equal(r.state, 'compensated');
  const info = await sagad.client.get(r.sagaId);
  assert.deepEqual(info.steps.map((s) => s.state), ['compensated', 'compensated', 'failed']);
  assert.equal(info.steps[2].lastError, 'Ship refused');
  const refund = await shop.waitFor(new RegExp(`^COMP Refund ${r.sagaId}`));
  assert.equal(refund, `COMP Refund ${r.sagaId} charge=charge-42-for-${r.sagaId} kind=compensation`);
  await shop.waitFor(new RegExp(`^COMP Release ${r.sagaId} reserve=reserved:${r.sagaId}$`));
});

test('a RetryableError retries the step with the next attempt, then it succeeds', async () => {
  const r = await sagad.client.run('nodetest.Shop', text('retry=Reserve:2'), { timeoutMs: 20000 });
  assert.equal(r.state, 'completed');
  const info = await sagad.client.get(r.sagaId);
  assert.equal(info.steps[0].attempts, 3);
  await shop.waitFor(new RegExp(`^ACTION Reserve ${r.sagaId} attempt=3 `));
  const failed = info.events.filter((e) => e.type === 'attempt failed' && e.step === 'Reserve');
  assert.equal(failed.length, 2);
  assert.match(failed[0].detail, /Reserve is not ready \(attempt 1\)/);
});

test('client: start, run, wait, list, cancel, retry and skip, with typed errors and timeouts', async () => {
  const c = sagad.client;
  const { sagaId } = await c.start('nodetest.Shop', text('ok'), { businessKey: 'list-me' });
  const done = await c.wait(sagaId, { timeoutMs: 20000 });
  assert.equal(done.state, 'completed');
  const page = await c.list({ businessKey: 'list-me', counts: true });
  assert.equal(page.sagas.length, 1);
  assert.equal(page.sagas[0].sagaId, sagaId);
  assert.equal(page.sagas[0].stepsDone, 3);
  assert.equal(page.stateCounts.completed, 1);
  const byState = await c.list({ states: ['compensated'], definition: 'nodetest.Shop' });
  assert.ok(byState.sagas.every((s) => s.state === 'compensated'));

  await assert.rejects(c.cancel(sagaId, 'too late'), (e) => {
    assert.ok(e instanceof saga.SagaStateError);
    assert.ok(e instanceof saga.SagaError);
    assert.equal(e.code, 10);
    assert.equal(e.codeName, 'SAGA_ESTATE');
    assert.equal(e.name, 'SagaStateError');
    return true;
  });
  const missing = '00000000-0000-4000-8000-000000000000';
  await assert.rejects(c.get(missing), saga.SagaNotFoundError);
  await assert.rejects(c.retry(missing, 'Reserve'), saga.SagaNotFoundError);
  await assert.rejects(c.skip(sagaId, 'Reserve', 'by hand'), saga.SagaStateError);
  await assert.rejects(c.start('nodetest.NoSuchSaga', text('x')), saga.SagaNotFoundError);
  await assert.rejects(c.register(Buffer.from('not a descriptor set')), saga.SagaError);
  // A string is JSON text (json.test.js): this one is not JSON.
  await assert.rejects(c.start('nodetest.Shop', 'a string'), (e) => {
    assert.ok(e instanceof saga.SagaInvalidError, String(e));
    assert.match(e.message, /not a valid nodetest\.Order/);
    return true;
  });
  await assert.rejects(c.start('nodetest.Shop', 42), TypeError);
  await assert.rejects(c.list({ states: ['nonsense'] }), RangeError);

  // run and wait that time out still say which saga and where it is.
  await assert.rejects(c.run('nodetest.Shop', text('retry=Reserve:2'), { timeoutMs: 1 }), (e) => {
    assert.ok(e instanceof saga.SagaTimeoutError, e.stack);
    assert.equal(e.code, 5);
    assert.match(e.sagaId, /^[0-9a-f-]{36}$/);
    assert.equal(e.state, 'running');
    return true;
  });
  const held = await c.start('nodetest.Shop', text('retry=Charge:2'));
  await assert.rejects(c.wait(held.sagaId, { timeoutMs: 1 }), (e) => {
    assert.ok(e instanceof saga.SagaTimeoutError, e.stack);
    assert.equal(e.info.sagaId, held.sagaId);
    assert.equal(e.info.state, 'running');
    return true;
  });
  assert.equal((await c.wait(held.sagaId, { timeoutMs: 20000 })).state, 'completed');

  // A cancel of a running saga: Charge is held back by retries.
  const slow = await c.start('nodetest.Shop', text('retry=Charge:2'));
  const state = await c.cancel(slow.sagaId, 'changed my mind');
  assert.ok(['compensating', 'compensated'].includes(state), state);
  const end = await c.wait(slow.sagaId, { timeoutMs: 20000 });
  assert.equal(end.state, 'compensated');
  assert.equal(end.error.includes('changed my mind'), true, end.error);
});

test('client: terminate, force, rerun and batch (operator actions)', async () => {
  const c = sagad.client;
  // nodetest.Busy's participant is not running here: its sagas stay running.
  const a = await c.start('nodetest.Busy', text('tag=term'));
  await assert.rejects(c.terminate(a.sagaId, ''), saga.SagaInvalidError);
  assert.equal(await c.terminate(a.sagaId, 'not needed'), 'terminated');
  await assert.rejects(c.terminate(a.sagaId, 'again'), saga.SagaStateError);
  const info = await c.get(a.sagaId);
  assert.equal(info.state, 'terminated');
  assert.ok(info.events.some((e) => e.type === 'terminated' && e.detail.includes('not needed')));

  const b = await c.start('nodetest.Busy', text('tag=force'));
  const after = await c.force(b.sagaId, 'Task', 'succeeded', { result: Buffer.from('by hand'), reason: 'done by phone' });
  assert.ok(['running', 'completed'].includes(after), after);
  const bi = await c.wait(b.sagaId, { timeoutMs: 20000 });
  assert.equal(bi.state, 'completed');
  assert.equal(bi.steps[0].result.toString(), 'by hand');
  await assert.rejects(c.force(b.sagaId, 'Task', 'sideways', { reason: 'x' }), RangeError);
  await assert.rejects(c.force(b.sagaId, 'Task', 'compensated', { reason: 'x' }), saga.SagaStateError);

  const r = await c.rerun(a.sagaId, { idempotencyKey: 'node-1' });
  assert.match(r.sagaId, /^[0-9a-f-]{36}$/);
  assert.deepEqual(await c.rerun(a.sagaId, { idempotencyKey: 'node-1' }), r);
  assert.equal((await c.get(r.sagaId)).rerunOf, a.sagaId);
  assert.deepEqual((await c.get(a.sagaId)).rerunAs, [r.sagaId]);
  const listed = await c.list({ definition: 'nodetest.Busy', states: ['running'] });
  assert.deepEqual(listed.sagas.map((s) => [s.sagaId, s.rerunOf]), [[r.sagaId, a.sagaId]]);

  const filter = { definition: 'nodetest.Busy', states: ['running'] };
  assert.equal((await c.list({ definition: 'nodetest.Busy', counts: true })).stateCounts.terminated, 1);
  const dry = await c.batch(filter, 'terminate', { dryRun: true });
  assert.equal(dry.applicable, 1);
  assert.equal((await c.get(r.sagaId)).state, 'running');
  const res = await c.batch(filter, 'terminate', { reason: 'cleanup' });
  assert.equal(res.done, 1);
  assert.equal(res.skipped, 0);
  assert.equal(res.items[0].sagaId, r.sagaId);
  assert.equal(res.items[0].state, 'terminated');
  assert.equal(res.nextPageToken, '');
  await assert.rejects(c.batch({}, 'explode'), RangeError);
  await assert.rejects(c.batch({}, 'terminate', {}), saga.SagaInvalidError);
});

test('sagad unreachable: a client call fails with SagaConnectionError, a worker logs and closes cleanly', async () => {
  const c = new saga.Client({ url: 'tcp://127.0.0.1:1', timeoutMs: 2000 });
  const t0 = Date.now();
  await assert.rejects(c.get('00000000-0000-4000-8000-000000000000'), (e) => {
    assert.ok(e instanceof saga.SagaConnectionError, e.stack);
    assert.equal(e.code, 6);
    assert.match(e.message, /127\.0\.0\.1:1/);
    return true;
  });
  assert.ok(Date.now() - t0 < 5000);
  await c.close();
  await assert.rejects(c.get('x'), saga.SagaClosedError);
  assert.throws(() => new saga.Client({ url: 'nonsense://x' }), saga.SagaInvalidError);

  const logged = [];
  const w = new saga.Worker({
    url: 'tcp://127.0.0.1:1', participant: 'nobody', capacity: 2,
    log: (level, line) => logged.push(`${level} ${line}`),
  });
  w.handle('Nothing', async () => undefined);
  const running = w.run();
  await new Promise((r) => setTimeout(r, 300));
  const t1 = Date.now();
  await w.close();
  await running;
  assert.ok(Date.now() - t1 < 7000, `close took ${Date.now() - t1} ms`);
  // libsaga's log lines reach the log function on the event loop.
  assert.ok(logged.some((l) => /^info participant nobody .*serving sagad at tcp:\/\/127\.0\.0\.1:1$/.test(l)), logged.join('\n'));
  assert.ok(logged.includes('info participant nobody stopped'), logged.join('\n'));
});
