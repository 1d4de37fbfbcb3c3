'use strict';
// Node.js participants and clients over mutual TLS with credentials,
// against a sagad with --auth on and a tls+tcp:// listener that wants
// client certificates (development certificates made by openssl here): a
// saga runs end to end with participant:NAME credentials; a wrong
// credential, a missing client certificate and a participant acting as
// another are refused with typed errors; a report forged on the wire (a
// valid credential, no dispatch token) is refused and changes nothing.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const tls = require('node:tls');
const { startSagad, startParticipant, text, saga } = require('./helpers');

let sagad;
let creds;
const procs = [];

before(async () => {
  sagad = await startSagad({ tls: true, auth: true });
  creds = {
    inventory: sagad.principal('inventory-svc', 'participant', 'inventory'),
    payments: sagad.principal('payments-svc', 'participant', 'payments'),
    shipping: sagad.principal('shipping-svc', 'participant', 'shipping'),
    client: sagad.principal('shop-frontend', 'client'),
  };
});

after(async () => {
  for (const p of procs) await p.stop();
  if (sagad) await sagad.stop();
});

function tlsEnv(roles) {
  const env = { TLS_CA: sagad.tls.ca, TLS_CERT: sagad.tls.cert, TLS_KEY: sagad.tls.key };
  for (const r of roles) env[`CREDENTIAL_${r.toUpperCase()}`] = creds[r];
  return env;
}

async function participant(roles, env = tlsEnv(roles.split(','))) {
  const p = await startParticipant(sagad.url, roles, env);
  procs.push(p);
  return p;
}

function clientAs(credential, tlsOptions = sagad.tls) {
  return new saga.Client({ url: sagad.url, timeoutMs: 5000, tls: tlsOptions, credential });
}

async function waitFor(what, fn, ms = 20000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- one request on the wire, as a participant written without libsaga
// would send it (docs/PROTOCOL.md): nng's SP header and framing over TLS,
// the Request encoded by hand.

function varint(n) {
  const out = [];
  let v = n;
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v > 0) b |= 0x80;
    out.push(b);
  } while (v > 0);
  return Buffer.from(out);
}
const tag = (num, wire) => varint(num * 8 + wire);
const lenField = (num, b) => Buffer.concat([tag(num, 2), varint(b.length), b]);
const intField = (num, v) => Buffer.concat([tag(num, 0), varint(v)]);

/** Fields of one protobuf message: number -> last value (number or Buffer). */
function decode(buf) {
  const out = {};
  let i = 0;
  const rv = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < buf.length) {
    const t = rv();
    const wire = t & 7;
    const num = Math.floor(t / 8);
    if (wire === 0) out[num] = rv();
    else if (wire === 2) {
      const n = rv();
      out[num] = buf.subarray(i, i + n);
      i += n;
    } else throw new Error(`wire type ${wire} not expected`);
  }
  return out;
}

/** Sends one Request body over a fresh mutual-TLS connection; resolves the decoded Response. */
function rawRequest(requestBytes) {
  const [host, port] = sagad.url.replace('tls+tcp://', '').split(':');
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host, port: Number(port), ca: fs.readFileSync(sagad.tls.ca),
      cert: fs.readFileSync(sagad.tls.cert), key: fs.readFileSync(sagad.tls.key),
      minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2',
    }, () => {
      // SP header: \0 S P \0, protocol REQ (0x30), reserved.
      sock.write(Buffer.from([0, 0x53, 0x50, 0, 0, 0x30, 0, 0]));
      const id = Buffer.from([0x80, 0, 0, 1]); // request id, high bit set
      const len = Buffer.alloc(8);
      len.writeBigUInt64BE(BigInt(id.length + requestBytes.length));
      sock.write(Buffer.concat([len, id, requestBytes]));
    });
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('no reply in 10 s')); }, 10000);
    sock.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length < 16) return;
      const n = Number(got.readBigUInt64BE(8));
      if (got.length < 16 + n) return;
      clearTimeout(timer);
      sock.end();
      resolve(decode(got.subarray(16 + 4, 16 + n))); // past the header, length, request id
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

test('a saga runs end to end through Node.js participants with participant credentials over mutual TLS', async () => {
  await participant('inventory,payments,shipping');
  const c = clientAs(creds.client);
  try {
    const r = await c.run('nodetest.Shop', text('ok'), { timeoutMs: 30000 });
    assert.equal(r.state, 'completed');
    const info = await c.get(r.sagaId);
    assert.deepEqual(info.steps.map((s) => s.state), ['succeeded', 'succeeded', 'succeeded']);
    assert.equal(info.steps[1].result.toString(), `charge-42-for-${r.sagaId}`);
    // JSON input over the same connection (describe is a client's right).
    const j = await c.run('nodetest.Shop', { text: 'json' }, { timeoutMs: 30000 });
    assert.equal(j.state, 'completed');
    assert.deepEqual((await c.get(j.sagaId)).input, Buffer.from('\x0a\x04json'));
  } finally {
    await c.close();
  }
});

test('a wrong credential, no client certificate, or a participant acting as another: typed errors', async () => {
  // A client with a made-up credential.
  const bad = clientAs('0000000000000000.not-a-secret');
  await assert.rejects(bad.list({ limit: 1 }), saga.SagaAuthError);
  await bad.close();
  // A client credential may not register (admin only).
  const c = clientAs(creds.client);
  await assert.rejects(c.register(fs.readFileSync(`${sagad.dir}/shop.binpb`)), saga.SagaPermissionError);
  await c.close();
  // No client certificate: the TLS handshake is refused, so no connection.
  const nocert = clientAs(creds.client, { ca: sagad.tls.ca });
  await assert.rejects(nocert.list({ limit: 1 }), (e) => {
    assert.ok(e instanceof saga.SagaConnectionError || e instanceof saga.SagaTimeoutError, String(e));
    return true;
  });
  await nocert.close();

  // A Worker with a wrong credential: run() rejects with SagaAuthError.
  const w = new saga.Worker({
    url: sagad.url, participant: 'inventory', tls: sagad.tls, credential: '0000000000000000.wrong',
  });
  w.handle('Reserve', () => Buffer.from('never'));
  await assert.rejects(w.run(), saga.SagaAuthError);
  // payments' credential polling as inventory: SagaPermissionError.
  const w2 = new saga.Worker({
    url: sagad.url, participant: 'inventory', tls: sagad.tls, credential: creds.payments,
  });
  w2.handle('Reserve', () => Buffer.from('never'));
  await assert.rejects(w2.run(), (e) => {
    assert.ok(e instanceof saga.SagaPermissionError, String(e));
    assert.match(e.message, /payments/);
    return true;
  });
});

test('a report forged on the wire (valid credential and certificate, no dispatch token) is refused and changes nothing', async () => {
  // Only inventory serves: the saga waits at Charge, payments' step.
  for (const p of procs.splice(0)) await p.stop();
  const inv = await participant('inventory');
  const c = clientAs(creds.client);
  try {
    const { sagaId } = await c.start('nodetest.Shop', text('ok'));
    await waitFor('Reserve to succeed', async () => {
      const i = await c.get(sagaId);
      return i.steps[0].state === 'succeeded' && i.steps[1].state === 'running';
    });
    const sid = Buffer.from(sagaId.replace(/-/g, ''), 'hex');
    const result = Buffer.concat([
      lenField(1, sid), intField(2, 1), lenField(3, Buffer.from('Charge')), intField(4, 1),
      intField(5, 1), intField(6, 1), lenField(7, Buffer.from('forged')),
      lenField(9, Buffer.alloc(16)), // a made-up token
    ]);
    const report = Buffer.concat([lenField(1, Buffer.from('payments')), lenField(2, result)]);
    const request = Buffer.concat([lenField(1, Buffer.from(creds.payments)), lenField(21, report)]);
    const resp = await rawRequest(request);
    assert.equal(resp[1], undefined, `an error: ${resp[1] && decode(resp[1])[2]}`);
    const ack = decode(resp[21]);
    assert.equal(ack[3], 1, `refused: ${JSON.stringify(ack)}`);
    assert.equal(ack[1] || 0, 0, 'accepted');
    // The same report without a credential: refused before it is read.
    const anon = await rawRequest(lenField(21, report));
    assert.equal(decode(anon[1])[1], saga.codes.SAGA_EAUTH);
    let info = await c.get(sagaId);
    assert.equal(info.state, 'running');
    assert.equal(info.steps[1].state, 'running');
    assert.notEqual(info.steps[1].result.toString(), 'forged');
    // The real payments participant finishes it.
    await participant('payments,shipping');
    info = await c.wait(sagaId, { timeoutMs: 30000 });
    assert.equal(info.state, 'completed');
    assert.equal(info.steps[1].result.toString(), `charge-42-for-${sagaId}`);
  } finally {
    await c.close();
    await inv.stop();
  }
});
