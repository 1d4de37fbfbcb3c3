'use strict';
// Helpers of the Node.js order example's tests: sagad (client-lib/node's
// test helpers start it on its embedded PostgreSQL), the order saga
// registered, the participants' database `shop` in that PostgreSQL, and
// the example's programs as processes whose output the tests read.

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const pg = require('pg');

const repo = path.resolve(__dirname, '..', '..');
const app = path.join(repo, 'examples', 'order-node');
const helpers = require(path.join(repo, 'client-lib', 'node', 'test', 'helpers.js'));

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (meson test sets it)`);
  return v;
}

/** sagad with shop.OrderSaga registered and an empty database `shop`. */
async function startShop() {
  const sagad = await helpers.startSagad();
  await sagad.client.register(fs.readFileSync(need('ORDER_BINPB')));
  const pgHost = path.join(sagad.dir, 'data', 'pg');
  const admin = new pg.Client({ host: pgHost, port: 5432, user: 'saga', database: 'postgres' });
  await admin.connect();
  await admin.query('CREATE DATABASE shop');
  await admin.end();
  const conninfo = `host=${pgHost} port=5432 user=saga dbname=shop`;
  const db = new pg.Pool({ host: pgHost, port: 5432, user: 'saga', database: 'shop', max: 2 });
  const procs = [];
  return {
    sagad,
    url: sagad.url,
    conninfo,
    db,
    procs,
    /** Starts a program; resolves once a line matches `ready`. */
    async start(name, cmd, args, ready, env = {}) {
      const p = startProc(name, cmd, args, env);
      procs.push(p);
      await p.waitFor(ready);
      return p;
    },
    /** A Node.js participant of the example (inventory, payment, shipping). */
    node(role, extra = []) {
      return this.start(`node ${role}`, process.execPath, [path.join(app, `${role}.js`), '--url', this.url, '--db', conninfo, ...extra],
        /serving at/);
    },
    /** A C participant of the example (examples/order). */
    c(role, extra = []) {
      const env = { LD_PRELOAD: '' }; // the sanitizer runtimes are node's, not theirs
      return this.start(`C ${role}`, path.join(need('ORDER_BIN_DIR'), `order-${role}`), ['--url', this.url, '--db', conninfo, ...extra],
        /serving at/, env);
    },
    /**
     * Resolves once sagad counts `want` connections ({participant: n}) of
     * each participant (sagactl participants): replicas print that they
     * serve before they have connected.
     */
    async connected(want, ms = 30000) {
      const t0 = Date.now();
      for (;;) {
        const out = await new Promise((resolve, reject) => execFile(need('SAGACTL_BIN'), ['--url', this.url, '--json', 'participants'],
          { env: { ...process.env, LD_PRELOAD: '' } }, (e, stdout) => (e ? reject(e) : resolve(stdout))));
        const have = Object.fromEntries(JSON.parse(out).map((p) => [p.name, p.connections]));
        if (Object.entries(want).every(([name, n]) => have[name] === n)) return;
        if (Date.now() - t0 > ms) throw new Error(`participants not connected in ${ms} ms: want ${JSON.stringify(want)}, have ${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      await Promise.all(procs.map((p) => p.stop()));
      await db.end();
      await sagad.stop();
    },
  };
}

/** A process whose stdout and stderr lines are kept; waitFor(re) resolves the first match. */
function startProc(name, cmd, args, env) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines = [];
  const waiters = [];
  const onLine = (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  readline.createInterface({ input: child.stdout }).on('line', onLine);
  readline.createInterface({ input: child.stderr }).on('line', onLine);
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  exited.then(({ code, signal }) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`${name} exited (${code ?? signal}) before a line matched ${w.re}:\n${lines.join('\n')}`));
  });
  return {
    name,
    child,
    lines,
    waitFor(re, ms = 30000) {
      const found = lines.find((l) => re.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        waiters.push({ re, resolve, reject });
        setTimeout(() => reject(new Error(`${name}: no line matching ${re} in ${ms} ms; got:\n${lines.join('\n')}`)), ms).unref();
      });
    },
    count(re) {
      return lines.filter((l) => re.test(l)).length;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 20000);
        await exited;
        clearTimeout(t);
      }
      return exited;
    },
  };
}

/** An HTTP request to the order service: resolves {status, headers, body (parsed JSON)}. */
async function request(base, method, urlPath, { body, headers = {} } = {}) {
  const res = await fetch(base + urlPath, {
    method,
    headers: body !== undefined ? { 'content-type': 'application/json', ...headers } : headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${method} ${urlPath}: ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, headers: res.headers, body: json };
}

module.exports = { startShop, request, app };
