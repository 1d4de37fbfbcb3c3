'use strict';
// A start's input given as JSON (an object or JSON text) is encoded by
// libsaga with the definition's input type, from the descriptor set sagad
// stores (saga_client_encode_json, sagactl's encoder too): the saga gets
// the protobuf bytes, and JSON that does not fit is refused with a typed
// error naming the path of the value at fault, starting nothing.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startSagad, saga } = require('./helpers');

let sagad;

before(async () => {
  sagad = await startSagad();
});

after(async () => {
  if (sagad) await sagad.stop();
});

// protobuf's encoding, by hand, to check the bytes the saga got.
function varint(n) {
  let v = BigInt(n);
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
const field = (num, wire, body) => Buffer.concat([varint((num << 3) | wire), body]);
const lenField = (num, bytes) => field(num, 2, Buffer.concat([varint(bytes.length), bytes]));

const big = 12345678901234567890n; // above 2^63: only a string or BigInt holds it
const expected = Buffer.concat([
  lenField(1, Buffer.from('o-1')),
  field(2, 0, varint(big)),
  lenField(3, Buffer.from([1, 2, 3])),
  lenField(4, Buffer.concat([lenField(1, Buffer.from('a')), field(2, 0, varint(2))])),
]);

test('an object input is encoded with the definition\'s input type (BigInt, Buffer, nested, repeated)', async () => {
  const c = sagad.client;
  const { sagaId } = await c.start('nodetest.Typed', {
    orderId: 'o-1', amountCents: big, blob: Buffer.from([1, 2, 3]), lines: [{ sku: 'a', qty: 2 }],
  });
  const info = await c.get(sagaId);
  assert.deepEqual(info.input, expected);
  await c.cancel(sagaId, 'test done');
});

test('JSON text is encoded the same, proto field names and 64-bit strings included; Buffers still pass as bytes', async () => {
  const c = sagad.client;
  const json = '{"order_id":"o-1","amountCents":"12345678901234567890","blob":"AQID",' +
    '"lines":[{"sku":"a","qty":2}]}';
  const a = await c.start('nodetest.Typed', json, { version: 0, businessKey: 'json-text' });
  const info = await c.get(a.sagaId);
  assert.deepEqual(info.input, expected);
  assert.equal(info.businessKey, 'json-text');
  const b = await c.start('nodetest.Typed', expected);
  assert.deepEqual((await c.get(b.sagaId)).input, expected);
  // {} encodes to nothing: an empty input.
  const e = await c.start('nodetest.Typed', {});
  assert.equal((await c.get(e.sagaId)).input.length, 0);
  for (const id of [a.sagaId, b.sagaId, e.sagaId]) await c.cancel(id, 'test done');
});

test('run() takes JSON too, with the idempotency key making one saga', async () => {
  const c = sagad.client;
  const r = await c.run('nodetest.Shop', { text: 'ok' }, { idempotencyKey: 'json-run-1', timeoutMs: 1 })
    .catch((err) => err);
  // Nobody serves the Shop here: the run times out with the saga named.
  assert.ok(r instanceof saga.SagaTimeoutError, String(r));
  const again = await c.start('nodetest.Shop', { text: 'ok' }, { idempotencyKey: 'json-run-1' });
  assert.deepEqual(again, { sagaId: r.sagaId, existing: true });
  assert.deepEqual((await c.get(r.sagaId)).input, lenField(1, Buffer.from('ok')));
  await c.cancel(r.sagaId, 'test done');
});

test('JSON that does not fit the type is refused with SagaInvalidError naming the path, and starts nothing', async () => {
  const c = sagad.client;
  const before = (await c.list({ definition: 'nodetest.Typed', counts: true })).sagas.length;
  const cases = [
    [{ lines: [{ sku: 'a', qty: -1 }] }, /not a valid nodetest\.TypedOrder: lines\[0\]\.qty/],
    [{ lines: [{ sku: 'a', qty: 'two' }] }, /lines\[0\]\.qty/],
    [{ nope: 1 }, /nope/],
    [{ amountCents: 'abc' }, /amountCents/],
    [{ blob: '%%%' }, /blob/],
    [[1, 2], /not a valid nodetest\.TypedOrder/],
    ['{"orderId": ', /not a valid nodetest\.TypedOrder/],
    ['{"orderId":"a","orderId":"b"}', /orderId/],
  ];
  for (const [input, re] of cases) {
    await assert.rejects(c.start('nodetest.Typed', input), (e) => {
      assert.ok(e instanceof saga.SagaInvalidError, `${JSON.stringify(input)}: ${e}`);
      assert.equal(e.code, saga.codes.SAGA_EINVAL);
      assert.match(e.message, re);
      return true;
    });
  }
  // Too deep to encode: refused, no crash.
  let deep = { sku: 'x' };
  for (let i = 0; i < 300; i++) deep = { lines: [deep] };
  await assert.rejects(c.start('nodetest.Typed', deep), saga.SagaInvalidError);
  // An unknown definition or version: as a start of bytes would say.
  await assert.rejects(c.start('nodetest.NoSuch', { a: 1 }), saga.SagaNotFoundError);
  await assert.rejects(c.start('nodetest.Typed', {}, { version: 99 }), saga.SagaNotFoundError);
  // What JSON cannot hold, and what is no input at all.
  const cyclic = {};
  cyclic.self = cyclic;
  await assert.rejects(c.start('nodetest.Typed', cyclic), TypeError);
  await assert.rejects(c.start('nodetest.Typed', 42), TypeError);
  await assert.rejects(c.start('nodetest.Typed', 'x\u0000y'), TypeError);
  const after = (await c.list({ definition: 'nodetest.Typed', counts: true })).sagas.length;
  assert.equal(after, before);
});
