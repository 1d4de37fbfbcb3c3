'use strict';
/*
 * The barrier in JavaScript against a real PostgreSQL: its own semantics
 * (the cases of tests/integration/test_barrier.c), and that a C replica on
 * libsaga's saga_barrier_run() and a Node replica share one barrier: each
 * sees the other's rows, replays the other's outcomes, refuses the other's
 * late actions, waits for the other's open transaction, and both write the
 * same rows for the same deliveries.
 *
 * BARRIER_REPLICA names the C replica (tests/node/barrier_replica.c);
 * meson sets it. Without it the C-and-Node tests are skipped.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const pg = require('pg');

const barrier = require('../barrier');
const { TestCluster } = require('./pg');

const REPLICA = process.env.BARRIER_REPLICA || '';
const SRC = path.join(__dirname, '..', '..', '..'); /* client-lib/ */
const needC = REPLICA ? {} : { skip: 'BARRIER_REPLICA is not set (meson test sets it)' };

let cluster;
let admin;
let dbSeq = 0;

test.before(async () => {
  cluster = new TestCluster().start();
  admin = new pg.Client(cluster.config());
  await admin.connect();
});

test.after(async () => {
  if (admin) await admin.end();
  if (cluster) cluster.stop();
});

/* A fresh database with the barrier, effects (who ran what) and stock
 * ('x' = 10). Returns {name, pool, conninfo}; the pool ends with the test. */
async function freshDb(t, { migrate = true } = {}) {
  const name = `b${process.pid}_${++dbSeq}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const pool = new pg.Pool({ ...cluster.config(name), max: 8 });
  t.after(() => pool.end());
  if (migrate) await barrier.migrate(pool);
  await pool.query(
    'CREATE TABLE effects (saga_id uuid NOT NULL, step text NOT NULL, kind text NOT NULL, who text NOT NULL);' +
      'CREATE TABLE stock (item text PRIMARY KEY, qty int NOT NULL);' +
      "INSERT INTO stock VALUES ('x', 10)"
  );
  return { name, pool, conninfo: cluster.conninfo(name) };
}

function step(sagaId, name, kind) {
  return { sagaId, step: name, kind, idempotencyKey: `${sagaId}/${name}/${kind}`, attempt: 1 };
}

async function qty(db) {
  return (await db.pool.query("SELECT qty FROM stock WHERE item = 'x'")).rows[0].qty;
}

async function effects(db, sagaId) {
  const r = await db.pool.query('SELECT step, kind, who FROM effects WHERE saga_id = $1 ORDER BY step, kind, who', [sagaId]);
  return r.rows.map((x) => `${x.step}/${x.kind}/${x.who}`);
}

/* The barrier's rows of a saga, without saga id and time. */
async function rows(db, sagaId) {
  const r = await db.pool.query(
    'SELECT step, kind, outcome, nulled, result, error FROM saga_barrier WHERE saga_id = $1 ORDER BY step, kind',
    [sagaId]
  );
  return r.rows.map((x) => ({ ...x, result: x.result === null ? null : x.result.toString('hex') }));
}

/* A Node handler: records its run, changes the stock, answers as told. */
function jsHandler(answer, { delta = -1, holdMs = 0, onIn } = {}) {
  return async (client, s) => {
    await client.query("INSERT INTO effects VALUES ($1, $2, $3, 'js')", [s.sagaId, s.step, s.kind]);
    await client.query("UPDATE stock SET qty = qty + $1 WHERE item = 'x'", [delta]);
    if (onIn) onIn();
    if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
    if (answer.fail !== undefined) throw new barrier.BusinessFailure(answer.fail);
    if (answer.retry !== undefined) throw new Error(answer.retry);
    return answer.result;
  };
}

/* The C replica: runs one delivery; resolves to its JSON verdict. With
 * onIn, calls it once the C handler is inside its transaction. */
function cRun(db, sagaId, name, kind, answer, holdMs = 0, onIn) {
  return new Promise((resolve, reject) => {
    const args = [db.conninfo, 'run', sagaId, name, kind, answer, String(holdMs)];
    const p = spawn(REPLICA, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = null;
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    readline.createInterface({ input: p.stdout }).on('line', (line) => {
      const j = JSON.parse(line);
      if (j.event === 'in-handler') {
        if (onIn) onIn();
      } else out = j;
    });
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0 || out === null) reject(new Error(`barrier_replica ${args.join(' ')}: exit ${code}: ${err}`));
      else resolve(out);
    });
  });
}

function cMigrate(db) {
  return new Promise((resolve, reject) => {
    const p = spawn(REPLICA, [db.conninfo, 'migrate'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`barrier_replica migrate: exit ${code}: ${err}`))));
  });
}

/* A verdict of the JS side in the C replica's shape, to compare. */
function shape(r) {
  return {
    verdict: r.verdict,
    outcome: r.outcome,
    result: r.result === null ? '' : r.result.toString('hex'),
    error: r.error,
  };
}

/* ---- the same table and statements as libsaga's ---------------------------- */

test('the table, statements and lock are libsaga barrier\'s, byte for byte', () => {
  const sql = fs.readFileSync(path.join(SRC, 'sql', 'saga_barrier.sql'), 'utf8');
  assert.equal(barrier.SQL, sql, 'barrier.js SQL differs from client-lib/sql/saga_barrier.sql');
  /* barrier.c with its adjacent string literals joined */
  const c = fs.readFileSync(path.join(SRC, 'src', 'barrier.c'), 'utf8').replace(/"\s*\n\s*"/g, '');
  for (const [name, text] of Object.entries(barrier.STATEMENTS)) assert.ok(c.includes(text), `statement ${name} is not barrier.c's: ${text}`);
  const m = /#define BARRIER_LOCK_KEY (0x[0-9a-fA-F]+)LL/.exec(c);
  assert.ok(m, 'BARRIER_LOCK_KEY not found in barrier.c');
  assert.equal(BigInt(barrier.LOCK_KEY), BigInt(m[1]));
  assert.deepEqual(Object.values(barrier.VERDICTS), ['ran', 'duplicate', 'null compensation', 'refused', 'database error']);
});

/* ---- its own semantics ------------------------------------------------------ */

test('a duplicate action is a no-op that replays the first outcome', async (t) => {
  const db = await freshDb(t);
  await barrier.migrate(db.pool); /* again: idempotent */
  const id = randomUUID();
  const bytes = Buffer.from([0x72, 0x00, 0xff, 0x31]);
  const first = await barrier.run(db.pool, step(id, 'Reserve', 'action'), jsHandler({ result: bytes }));
  assert.deepEqual(shape(first), { verdict: 'ran', outcome: 'success', result: '7200ff31', error: '' });
  for (let i = 0; i < 3; i++) {
    const again = await barrier.run(db.pool, step(id, 'Reserve', 'action'), jsHandler({ result: Buffer.from('other') }));
    assert.deepEqual(shape(again), { verdict: 'duplicate', outcome: 'success', result: '7200ff31', error: '' });
  }
  assert.equal(await qty(db), 9);
  assert.deepEqual(await effects(db, id), ['Reserve/action/js']);
});

test('a compensation undoes the action once; its duplicates are no-ops', async (t) => {
  const db = await freshDb(t);
  const id = randomUUID();
  await barrier.run(db.pool, step(id, 'Reserve', 'action'), jsHandler({}));
  const comp = await barrier.run(db.pool, step(id, 'Reserve', 'compensation'), jsHandler({ result: Buffer.from('undone') }, { delta: 1 }));
  assert.deepEqual(shape(comp), { verdict: 'ran', outcome: 'success', result: Buffer.from('undone').toString('hex'), error: '' });
  const dup = await barrier.run(db.pool, step(id, 'Reserve', 'compensation'), jsHandler({}, { delta: 1 }));
  assert.equal(dup.verdict, 'duplicate');
  assert.equal(dup.outcome, 'success');
  assert.equal(await qty(db), 10);
  /* and the action again, after all that: a duplicate, not applied */
  const late = await barrier.run(db.pool, step(id, 'Reserve', 'action'), jsHandler({}));
  assert.equal(late.verdict, 'duplicate');
  assert.equal(await qty(db), 10);
});

test('a compensation before its action is null and the late action is refused', async (t) => {
  const db = await freshDb(t);
  const id = randomUUID();
  const comp = await barrier.run(db.pool, step(id, 'Reserve', 'compensation'), jsHandler({}, { delta: 1 }));
  assert.deepEqual(shape(comp), { verdict: 'null compensation', outcome: 'success', result: '', error: '' });
  const late = await barrier.run(db.pool, step(id, 'Reserve', 'action'), jsHandler({}));
  assert.equal(late.verdict, 'refused');
  assert.equal(late.outcome, 'fail');
  assert.match(late.error, /refused by the barrier/);
  assert.equal(await qty(db), 10);
  assert.deepEqual(await effects(db, id), []);
  assert.deepEqual(await rows(db, id), [
    { step: 'Reserve', kind: 1, outcome: 3, nulled: false, result: null, error: '' },
    { step: 'Reserve', kind: 2, outcome: 1, nulled: true, result: null, error: '' },
  ]);
});

test('a business failure applies nothing but is remembered', async (t) => {
  const db = await freshDb(t);
  const id = randomUUID();
  const r = await barrier.run(db.pool, step(id, 'Charge', 'action'), jsHandler({ fail: 'card declined' }));
  assert.deepEqual(shape(r), { verdict: 'ran', outcome: 'fail', result: '', error: 'card declined' });
  assert.ok(barrier.isBusinessFailure(r.cause));
  assert.equal(await qty(db), 10, 'the failed action\'s write was rolled back');
  assert.deepEqual(await effects(db, id), []);
  const dup = await barrier.run(db.pool, step(id, 'Charge', 'action'), jsHandler({}));
  assert.deepEqual(shape(dup), { verdict: 'duplicate', outcome: 'fail', result: '', error: 'card declined' });
  /* nothing to undo: the compensation is null */
  const comp = await barrier.run(db.pool, step(id, 'Charge', 'compensation'), jsHandler({}, { delta: 1 }));
  assert.equal(comp.verdict, 'null compensation');
  assert.equal(await qty(db), 10);
  /* a business failure with no message replays as barrier.c says */
  const id2 = randomUUID();
  await barrier.run(db.pool, step(id2, 'Charge', 'action'), jsHandler({ fail: '' }));
  const dup2 = await barrier.run(db.pool, step(id2, 'Charge', 'action'), jsHandler({}));
  assert.equal(dup2.error, 'failed (recorded by the barrier)');
});

test('retryable outcomes record nothing, so the next attempt runs', async (t) => {
  const db = await freshDb(t);
  const id = randomUUID();
  const r1 = await barrier.run(db.pool, step(id, 'Charge', 'action'), jsHandler({ retry: 'bank unreachable' }));
  assert.deepEqual(shape(r1), { verdict: 'ran', outcome: 'retry', result: '', error: 'bank unreachable' });
  /* a handler throwing a non-Error, and one returning a non-Buffer */
  const r2 = await barrier.run(db.pool, step(id, 'Charge', 'action'), async () => {
    throw 42; // eslint-disable-line no-throw-literal
  });
  assert.equal(r2.outcome, 'retry');
  assert.match(r2.error, /number was thrown: 42/);
  const r3 = await barrier.run(db.pool, step(id, 'Charge', 'action'), async (c) => {
    await c.query("UPDATE stock SET qty = qty - 1 WHERE item = 'x'");
    return 'a string';
  });
  assert.equal(r3.outcome, 'retry');
  assert.match(r3.error, /not a Buffer/);
  /* SQL that fails inside the handler */
  const r4 = await barrier.run(db.pool, step(id, 'Charge', 'action'), async (c) => {
    await c.query('SELECT * FROM no_such_table');
  });
  assert.equal(r4.outcome, 'retry');
  assert.match(r4.error, /no_such_table/);
  assert.deepEqual(await rows(db, id), []);
  assert.equal(await qty(db), 10);
  const ok = await barrier.run(db.pool, step(id, 'Charge', 'action'), jsHandler({ result: Buffer.from('ch_1') }));
  assert.equal(ok.verdict, 'ran');
  assert.equal(ok.outcome, 'success');
  assert.equal(await qty(db), 9);
});

test('deliveries of one step at once apply it once; one Client runs one step at a time', async (t) => {
  const db = await freshDb(t);
  const id = randomUUID();
  const all = await Promise.all(
    Array.from({ length: 6 }, (_, i) => barrier.run(db.pool, step(id, 'Reserve', 'action'), jsHandler({ result: Buffer.from(`r${i}`) }, { holdMs: 50 })))
  );
  assert.equal(all.filter((r) => r.verdict === 'ran').length, 1);
  assert.equal(all.filter((r) => r.verdict === 'duplicate').length, 5);
  const winner = all.find((r) => r.verdict === 'ran').result.toString('hex');
  for (const r of all) assert.equal(r.result.toString('hex'), winner);
  assert.equal(await qty(db), 9);
  /* Steps given the same Client wait for each other instead of mixing
   * their transactions on one connection. */
  const client = new pg.Client(cluster.config(db.name));
  await client.connect();
  t.after(() => client.end());
  const ids = Array.from({ length: 5 }, () => randomUUID());
  const res = await Promise.all(ids.map((sid) => barrier.run(client, step(sid, 'Reserve', 'action'), jsHandler({ result: Buffer.from(sid) }, { holdMs: 10 }))));
  res.forEach((r, i) => assert.deepEqual(shape(r), { verdict: 'ran', outcome: 'success', result: Buffer.from(ids[i]).toString('hex'), error: '' }));
  assert.equal(await qty(db), 4);
});

test('bad use gets a clear answer: a connection in a transaction, a handler that commits, bad arguments', async (t) => {
  const db = await freshDb(t);
  const id = randomUUID();
  const client = new pg.Client(cluster.config(db.name));
  await client.connect();
  t.after(() => client.end());
  await client.query('BEGIN');
  let ran = false;
  const busy = await barrier.run(client, step(id, 'Reserve', 'action'), async () => {
    ran = true;
  });
  assert.equal(busy.verdict, 'database error');
  assert.equal(busy.outcome, 'retry');
  assert.match(busy.error, /not idle/);
  assert.equal(ran, false);
  assert.equal(client.getTransactionStatus(), 'I', 'the caller\'s transaction was rolled back');
  const commits = await barrier.run(client, step(id, 'Reserve', 'action'), async (c) => {
    await c.query('COMMIT');
  });
  assert.equal(commits.verdict, 'database error');
  assert.match(commits.error, /the handler ended the transaction/);
  await assert.rejects(barrier.run(db.pool, { sagaId: 'not-a-uuid', step: 'X', kind: 'action' }, async () => {}), TypeError);
  await assert.rejects(barrier.run(db.pool, step(id, '', 'action'), async () => {}), TypeError);
  await assert.rejects(barrier.run(db.pool, step(id, 'X', 'undo'), async () => {}), TypeError);
  await assert.rejects(barrier.run(db.pool, step(id, 'X', 'action')), TypeError);
  await assert.rejects(barrier.run({}, step(id, 'X', 'action'), async () => {}), TypeError);
  /* the saga id as its 16 bytes is the same saga */
  const hex = id.replace(/-/g, '');
  const r = await barrier.run(db.pool, { ...step(id, 'Bytes', 'action'), sagaId: Buffer.from(hex, 'hex') }, jsHandler({ result: Buffer.from('b') }));
  assert.equal(r.verdict, 'ran');
  const d = await barrier.run(db.pool, step(id.toUpperCase(), 'Bytes', 'action'), jsHandler({}));
  assert.equal(d.verdict, 'duplicate');
});

test('without getTransactionStatus (pg < 8.16) the barrier asks PostgreSQL and behaves the same', async (t) => {
  const db = await freshDb(t);
  const client = new pg.Client(cluster.config(db.name));
  await client.connect();
  t.after(() => client.end());
  client.getTransactionStatus = undefined; /* as an older pg */
  const id = randomUUID();
  const ok = await barrier.run(client, step(id, 'Reserve', 'action'), jsHandler({ result: Buffer.from('ok') }));
  assert.deepEqual(shape(ok), { verdict: 'ran', outcome: 'success', result: Buffer.from('ok').toString('hex'), error: '' });
  const dup = await barrier.run(client, step(id, 'Reserve', 'action'), jsHandler({}));
  assert.equal(dup.verdict, 'duplicate');
  const commits = await barrier.run(client, step(randomUUID(), 'Reserve', 'action'), async (c) => {
    await c.query('COMMIT');
  });
  assert.match(commits.error, /the handler ended the transaction/);
  const broken = await barrier.run(client, step(randomUUID(), 'Reserve', 'action'), async (c) => {
    await c.query('SELECT 1/0').catch(() => {});
  });
  assert.match(broken.error, /transaction failed/);
  assert.equal(await qty(db), 9);
});

test('handler() answers as a participant handler: result, BusinessFailure, the error to retry', async (t) => {
  const db = await freshDb(t);
  const id = randomUUID();
  const h = barrier.handler(db.pool, jsHandler({ result: Buffer.from('r') }));
  assert.deepEqual(await h(step(id, 'A', 'action')), Buffer.from('r'));
  assert.deepEqual(await h(step(id, 'A', 'action')), Buffer.from('r'));
  await assert.rejects(barrier.handler(db.pool, jsHandler({ fail: 'no' }))(step(id, 'B', 'action')), { name: 'BusinessFailure', message: 'no' });
  await assert.rejects(barrier.handler(db.pool, jsHandler({}))(step(id, 'B', 'action')), { name: 'BusinessFailure', message: 'no' });
  const boom = new Error('boom');
  await assert.rejects(
    barrier.handler(db.pool, async () => {
      throw boom;
    })(step(id, 'C', 'action')),
    (e) => e === boom
  );
  /* the participant API's own classes */
  class MyFailure extends Error {}
  await assert.rejects(barrier.handler(db.pool, jsHandler({}), { BusinessFailure: MyFailure })(step(id, 'B', 'action')), MyFailure);
  /* a late action refused */
  await barrier.run(db.pool, step(id, 'D', 'compensation'), jsHandler({}));
  await assert.rejects(h(step(id, 'D', 'action')), { name: 'BusinessFailure', message: /refused by the barrier/ });
});

test('replicas creating the table at once all succeed', async (t) => {
  const db = await freshDb(t, { migrate: false });
  const clients = [];
  for (let i = 0; i < 6; i++) {
    const c = new pg.Client(cluster.config(db.name));
    await c.connect();
    clients.push(c);
  }
  t.after(() => Promise.all(clients.map((c) => c.end())));
  const jobs = clients.map((c) => barrier.migrate(c));
  if (REPLICA) for (let i = 0; i < 4; i++) jobs.push(cMigrate(db));
  await Promise.all(jobs);
  const n = await db.pool.query("SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('saga_barrier', 'saga_barrier_created')");
  assert.equal(n.rows[0].n, 2);
});

/* ---- a C replica and a Node replica on one barrier ------------------------- */

test('C and Node replicas: each replays the other\'s outcomes', needC, async (t) => {
  const db = await freshDb(t, { migrate: false });
  await cMigrate(db); /* the C side made the table; Node's migrate is a no-op on it */
  await barrier.migrate(db.pool);

  /* C ran the action: Node's duplicate replays C's bytes, runs nothing */
  const a = randomUUID();
  const c1 = await cRun(db, a, 'Reserve', 'action', 'successhex:00ff10');
  assert.deepEqual(c1, { verdict: 'ran', outcome: 'success', result: '00ff10', error: '' });
  const j1 = await barrier.run(db.pool, step(a, 'Reserve', 'action'), jsHandler({ result: Buffer.from('js') }));
  assert.deepEqual(shape(j1), { verdict: 'duplicate', outcome: 'success', result: '00ff10', error: '' });

  /* Node ran the action: C's duplicate replays Node's bytes */
  const b = randomUUID();
  await barrier.run(db.pool, step(b, 'Reserve', 'action'), jsHandler({ result: Buffer.from([1, 0, 2]) }));
  const c2 = await cRun(db, b, 'Reserve', 'action', 'success:from-c');
  assert.deepEqual(c2, { verdict: 'duplicate', outcome: 'success', result: '010002', error: '' });
  /* and C compensates it (the action applied), Node's duplicate is a no-op */
  const c3 = await cRun(db, b, 'Reserve', 'compensation', 'success:undone');
  assert.equal(c3.verdict, 'ran');
  const j3 = await barrier.run(db.pool, step(b, 'Reserve', 'compensation'), jsHandler({}));
  assert.deepEqual(shape(j3), { verdict: 'duplicate', outcome: 'success', result: Buffer.from('undone').toString('hex'), error: '' });

  /* C's business failure is remembered for Node, and there is nothing to undo */
  const c = randomUUID();
  const c4 = await cRun(db, c, 'Charge', 'action', 'fail:card declined');
  assert.deepEqual(c4, { verdict: 'ran', outcome: 'fail', result: '', error: 'card declined' });
  const j4 = await barrier.run(db.pool, step(c, 'Charge', 'action'), jsHandler({}));
  assert.deepEqual(shape(j4), { verdict: 'duplicate', outcome: 'fail', result: '', error: 'card declined' });
  const j5 = await barrier.run(db.pool, step(c, 'Charge', 'compensation'), jsHandler({}));
  assert.equal(j5.verdict, 'null compensation');
  const c5 = await cRun(db, c, 'Charge', 'compensation', 'success:x');
  assert.deepEqual(c5, { verdict: 'duplicate', outcome: 'success', result: '', error: '' });

  /* Node's failure is remembered for C */
  const d = randomUUID();
  await barrier.run(db.pool, step(d, 'Charge', 'action'), jsHandler({ fail: 'über limit' }));
  assert.deepEqual(await cRun(db, d, 'Charge', 'action', 'success:x'), { verdict: 'duplicate', outcome: 'fail', result: '', error: 'über limit' });

  /* A retry on one side records nothing: the other runs the step */
  const e = randomUUID();
  assert.equal((await cRun(db, e, 'Ship', 'action', 'retry:later')).outcome, 'retry');
  assert.equal((await barrier.run(db.pool, step(e, 'Ship', 'action'), jsHandler({ result: Buffer.from('t') }))).verdict, 'ran');

  assert.deepEqual(await effects(db, a), ['Reserve/action/c']);
  assert.deepEqual(await effects(db, b), ['Reserve/action/js', 'Reserve/compensation/c']);
  assert.deepEqual(await effects(db, c), []);
  assert.deepEqual(await effects(db, e), ['Ship/action/js']);
});

test('C and Node replicas: a compensation on one side refuses the late action on the other', needC, async (t) => {
  const db = await freshDb(t);
  const a = randomUUID();
  const j = await barrier.run(db.pool, step(a, 'Reserve', 'compensation'), jsHandler({}));
  assert.equal(j.verdict, 'null compensation');
  const c = await cRun(db, a, 'Reserve', 'action', 'success:late');
  assert.equal(c.verdict, 'refused');
  assert.equal(c.outcome, 'fail');
  assert.match(c.error, /refused by the barrier/);

  const b = randomUUID();
  const c2 = await cRun(db, b, 'Reserve', 'compensation', 'success:x');
  assert.deepEqual(c2, { verdict: 'null compensation', outcome: 'success', result: '', error: '' });
  const j2 = await barrier.run(db.pool, step(b, 'Reserve', 'action'), jsHandler({}));
  assert.equal(j2.verdict, 'refused');
  assert.equal(j.result.length, 0);
  assert.deepEqual(await effects(db, a), []);
  assert.deepEqual(await effects(db, b), []);
  assert.equal(await qty(db), 10);
});

test('C and Node replicas running one step at once: the second waits and replays the first', needC, async (t) => {
  const db = await freshDb(t);
  /* C first, holding its transaction; Node waits on the row, then replays */
  const a = randomUUID();
  let cIn;
  const inC = new Promise((r) => (cIn = r));
  const cDone = cRun(db, a, 'Reserve', 'action', 'success:c-won', 1500, cIn);
  await inC;
  const t0 = Date.now();
  const j = await barrier.run(db.pool, step(a, 'Reserve', 'action'), jsHandler({ result: Buffer.from('js-won') }));
  const waited = Date.now() - t0;
  const c = await cDone;
  assert.equal(c.verdict, 'ran');
  assert.deepEqual(shape(j), { verdict: 'duplicate', outcome: 'success', result: Buffer.from('c-won').toString('hex'), error: '' });
  assert.ok(waited >= 500, `Node did not wait for C's transaction (${waited} ms)`);
  assert.deepEqual(await effects(db, a), ['Reserve/action/c']);

  /* Node first, holding; C waits, then replays Node's */
  const b = randomUUID();
  let jIn;
  const inJ = new Promise((r) => (jIn = r));
  const jDone = barrier.run(db.pool, step(b, 'Reserve', 'action'), jsHandler({ result: Buffer.from('js-won') }, { holdMs: 1500, onIn: jIn }));
  await inJ;
  const c2 = await cRun(db, b, 'Reserve', 'action', 'success:c-won');
  assert.equal((await jDone).verdict, 'ran');
  assert.deepEqual(c2, { verdict: 'duplicate', outcome: 'success', result: Buffer.from('js-won').toString('hex'), error: '' });
  assert.deepEqual(await effects(db, b), ['Reserve/action/js']);

  /* A compensation racing an uncommitted action on the other side waits
   * for it and then undoes it (not a null compensation) */
  const d = randomUUID();
  let cIn2;
  const inC2 = new Promise((r) => (cIn2 = r));
  const cAct = cRun(db, d, 'Reserve', 'action', 'success:held', 1000, cIn2);
  await inC2;
  const comp = await barrier.run(db.pool, step(d, 'Reserve', 'compensation'), jsHandler({ result: Buffer.from('undone') }, { delta: 1 }));
  assert.equal((await cAct).verdict, 'ran');
  assert.equal(comp.verdict, 'ran');
  assert.deepEqual(await effects(db, d), ['Reserve/action/c', 'Reserve/compensation/js']);
});

test('C and Node replicas write the same rows for the same deliveries', needC, async (t) => {
  const db = await freshDb(t);
  /* One script of deliveries, run once by C alone and once by Node alone. */
  const script = [
    ['A', 'action', { c: 'successhex:00010203', js: { result: Buffer.from([0, 1, 2, 3]) } }],
    ['A', 'action', { c: 'success:dup', js: { result: Buffer.from('dup') } }],
    ['B', 'action', { c: 'success:', js: {} }],
    ['C', 'action', { c: 'fail:declined', js: { fail: 'declined' } }],
    ['C', 'compensation', { c: 'success:x', js: { result: Buffer.from('x') } }],
    ['D', 'compensation', { c: 'success:x', js: { result: Buffer.from('x') } }],
    ['D', 'action', { c: 'success:late', js: { result: Buffer.from('late') } }],
    ['E', 'action', { c: 'retry:later', js: { retry: 'later' } }],
    ['A', 'compensation', { c: 'success:undone', js: { result: Buffer.from('undone') } }],
    ['A', 'compensation', { c: 'success:again', js: { result: Buffer.from('again') } }],
  ];
  const cId = randomUUID();
  const jsId = randomUUID();
  const cVerdicts = [];
  const jsVerdicts = [];
  for (const [name, kind, ans] of script) {
    cVerdicts.push(await cRun(db, cId, name, kind, ans.c));
    jsVerdicts.push(shape(await barrier.run(db.pool, step(jsId, name, kind), jsHandler(ans.js, { delta: 0 }))));
  }
  assert.deepEqual(jsVerdicts, cVerdicts);
  assert.deepEqual(await rows(db, jsId), await rows(db, cId));
  assert.equal((await rows(db, cId)).length, 7);
});
