'use strict';
// The participant side under stress and misuse, against a real sagad and
// its real PostgreSQL, with Node.js participant processes: timeouts and
// heartbeats, capacity, close() draining, and bad use that must give a
// clear error, never a crash or a hang.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startSagad, startParticipant, text, saga } = require('./helpers');

let sagad;
const procs = [];

before(async () => {
  sagad = await startSagad();
});

after(async () => {
  for (const p of procs) await p.stop();
  if (sagad) await sagad.stop();
});

async function participant(roles, env) {
  const p = await startParticipant(sagad.url, roles, env);
  procs.push(p);
  return p;
}

test('a step that outlives its timeout is retried and fails; one that heartbeats outlives it and succeeds', async () => {
  const p = await participant('slow');
  const c = sagad.client;
  const [late, beating] = await Promise.all([
    c.run('nodetest.Slow', text('sleep=2500'), { timeoutMs: 30000 }),
    c.run('nodetest.Slow', text('sleep=1500;beat=1'), { timeoutMs: 30000 }),
  ]);
  assert.equal(beating.state, 'completed');
  const b = await c.get(beating.sagaId);
  assert.equal(b.steps[0].attempts, 1);
  assert.equal(b.steps[0].result.toString(), 'worked:1');

  assert.equal(late.state, 'compensated');
  const l = await c.get(late.sagaId);
  assert.equal(l.steps[0].attempts, 2);
  assert.match(l.steps[0].lastError, /time/i);
  const start = await p.waitFor(new RegExp(`^START Work ${late.sagaId} attempt=1`));
  assert.match(start, /timeoutMs=600$/);
  // Its handler settled long after its timeout (and after the worker gave
  // up on it at timeout + 1 s, freeing its slot): the outcome is dropped
  // with a warning.
  await p.waitFor(new RegExp(`^WARN saga ${late.sagaId} step Work: .*settled after it was given up on`));
  await p.stop();
});

test('a worker never runs more handlers at once than its capacity, and uses all of it', async () => {
  const p = await participant('busy', { CAPACITY: '3' });
  const c = sagad.client;
  const runs = await Promise.all(Array.from({ length: 12 }, (_, i) =>
    c.run('nodetest.Busy', text(`sleep=200;n=${i}`), { timeoutMs: 30000 })));
  let max = 0;
  for (const r of runs) {
    assert.equal(r.state, 'completed');
    const info = await c.get(r.sagaId);
    const m = Number(/^max=(\d+)$/.exec(info.steps[0].result.toString())[1]);
    assert.ok(m <= 3, `a handler saw ${m} running at once`);
    max = Math.max(max, m);
  }
  assert.equal(max, 3);
  assert.ok(!p.lines.some((l) => l.startsWith('OVER')), p.lines.join('\n'));
  await p.stop();
});

test('close() waits for the steps in flight to finish and report', async () => {
  const p = await participant('busy', { CAPACITY: '4' });
  const c = sagad.client;
  const ids = await Promise.all(Array.from({ length: 4 }, () =>
    c.start('nodetest.Busy', text('sleep=1000')).then((r) => r.sagaId)));
  await new Promise((r) => setTimeout(r, 400)); // dispatched, running in JS
  const exit = await p.stop();
  assert.equal(exit.code, 0);
  const closed = p.lines.find((l) => l.startsWith('closed in '));
  assert.ok(closed, p.lines.join('\n'));
  assert.ok(Number(closed.split(' ')[2]) >= 300, closed);
  for (const id of ids) {
    const info = await c.wait(id, { timeoutMs: 10000 });
    assert.equal(info.state, 'completed');
    assert.equal(info.steps[0].attempts, 1, 'the step finished in the closing worker, not redelivered');
  }
});

test('bad handlers get a clear retryable error and the worker goes on: non-Error throw, non-Buffer result, settling twice, sync throw', async () => {
  const p = await participant('busy');
  const c = sagad.client;
  const cases = {
    nonerror: /the handler threw a non-Error value: a string \("boom"\)/,
    string: /returned a string \("not a buffer"\), not a Buffer, a Uint8Array or undefined/,
    number: /returned a number \(42\), not a Buffer/,
    'sync-throw': /thrown before any await/,
  };
  const runs = await Promise.all(Object.keys(cases).map((bad) =>
    c.run('nodetest.Busy', text(`bad=${bad}`), { timeoutMs: 30000 })));
  for (const [i, [bad, re]] of Object.entries(Object.entries(cases))) {
    assert.equal(runs[i].state, 'compensated', bad);
    const info = await c.get(runs[i].sagaId);
    assert.equal(info.steps[0].attempts, 2, bad);
    assert.match(info.steps[0].lastError, re, bad);
  }
  assert.ok(p.lines.some((l) => /^WARN .*not a Buffer/.test(l)), p.lines.join('\n'));
  // The first settlement wins; the second is ignored.
  const twice = await c.run('nodetest.Busy', text('bad=twice'), { timeoutMs: 30000 });
  assert.equal(twice.state, 'completed');
  assert.equal((await c.get(twice.sagaId)).steps[0].result.toString(), 'first');
  // Still serving.
  const ok = await c.run('nodetest.Busy', text('sleep=10'), { timeoutMs: 30000 });
  assert.equal(ok.state, 'completed');
  assert.equal(p.child.exitCode, null);
  await p.stop();
});

test('a handler that never settles is given up on after its timeout, freeing its slot', async () => {
  const p = await participant('busy', { CAPACITY: '1' });
  const c = sagad.client;
  const t0 = Date.now();
  const never = await c.run('nodetest.Busy', text('bad=never'), { timeoutMs: 60000 });
  assert.equal(never.state, 'compensated');
  const info = await c.get(never.sagaId);
  assert.equal(info.steps[0].attempts, 2);
  assert.match(info.steps[0].lastError, /time/i);
  assert.ok(Date.now() - t0 >= 6000);
  // With capacity 1 the next step runs only if the abandoned ones let go.
  const ok = await c.run('nodetest.Busy', text('sleep=10'), { timeoutMs: 30000 });
  assert.equal(ok.state, 'completed');
  await p.stop();
});

test('a step for an rpc the participant has no handler for fails with a clear error', async () => {
  const p = await participant('inventory,payments,shipping-typo');
  const r = await sagad.client.run('nodetest.Shop', text('ok'), { timeoutMs: 30000 });
  assert.equal(r.state, 'compensated');
  const info = await sagad.client.get(r.sagaId);
  assert.equal(info.steps[2].attempts, 3);
  assert.match(info.steps[2].lastError, /participant shipping has no handler for action Ship/);
  await p.stop();
});

test('a Node.js participant killed with SIGKILL mid-step has its step redelivered to a replica', async () => {
  const a = await participant('slow');
  const c = sagad.client;
  const { sagaId } = await c.start('nodetest.Slow', text('sleep=400;beat=1'));
  await a.waitFor(new RegExp(`^START Work ${sagaId} attempt=1`));
  a.child.kill('SIGKILL');
  assert.equal((await a.exited).signal, 'SIGKILL');
  const b = await participant('slow');
  const info = await c.wait(sagaId, { timeoutMs: 20000 });
  assert.equal(info.state, 'completed');
  const seen = await b.waitFor(new RegExp(`^START Work ${sagaId} `));
  assert.ok(!a.lines.some((l) => l.startsWith('WARN')), a.lines.join('\n'));
  assert.ok(seen);
  await b.stop();
});

test('a graceful close under load: every step runs exactly once, on the closing worker or its replica', async () => {
  const a = await participant('busy', { CAPACITY: '4' });
  const c = sagad.client;
  const runs = [];
  for (let i = 0; i < 24; i++) {
    runs.push(c.run('nodetest.Busy', text('sleep=100;say=1'), { timeoutMs: 60000 }));
    if (i === 8) a.child.kill('SIGTERM'); // while steps are queued and in flight
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal((await a.exited).code, 0);
  const b = await participant('busy', { CAPACITY: '4' });
  const done = await Promise.all(runs);
  const ran = [...a.lines, ...b.lines].filter((l) => l.startsWith('RAN Task '));
  for (const r of done) {
    assert.equal(r.state, 'completed');
    const times = ran.filter((l) => l.startsWith(`RAN Task ${r.sagaId} `)).length;
    assert.equal(times, 1, `saga ${r.sagaId} ran ${times} times`);
  }
  assert.ok(a.lines.some((l) => l.startsWith('RAN Task ')), 'the closing worker finished some');
  assert.ok(b.lines.some((l) => l.startsWith('RAN Task ')), 'the replica took the rest');
  await b.stop();
});

test('misuse of the Worker API throws at once with a clear error', async () => {
  assert.throws(() => new saga.Worker(), TypeError);
  assert.throws(() => new saga.Worker({ url: sagad.url }), /participant must be a non-empty string/);
  assert.throws(() => new saga.Worker({ url: sagad.url, participant: 'x', capacity: 0 }), RangeError);
  assert.throws(() => new saga.Worker({ url: 'bogus', participant: 'x' }), saga.SagaInvalidError);
  const w = new saga.Worker({ url: sagad.url, participant: 'x', capacity: 1 });
  assert.throws(() => w.run(), /at least one handler/);
  assert.throws(() => w.handle('', async () => {}), TypeError);
  assert.throws(() => w.handle('A', 'not a function'), TypeError);
  assert.throws(() => w.handle('A', async () => {}, { kind: 'undo' }), TypeError);
  w.handle('A', async () => {});
  assert.throws(() => w.handle('A', async () => {}), saga.SagaExistsError);
  const running = w.run();
  assert.throws(() => w.handle('B', async () => {}), saga.SagaStateError);
  await w.close();
  await running;
});
