'use strict';
// bench-participant.js: bench-participant.c in Node.js, on the npm package
// libsaga (client-lib/node), for `sagabench --participant node`. Same
// options, same rpcs, same replies, same stats file, same signals: see the
// top of bench-participant.c. It does no work of its own: every action
// answers success at once, so what sagabench measures next to the C
// participant is the Node addon's hand-off (libsaga thread -> event loop ->
// libsaga thread) and the JavaScript per step.
//
//   node bench-participant.js --url URL --participant NAME[,NAME...]
//       [--capacity N] [--instance ID] [--fail-on RPC]
//       [--delay-ms MS --delay-rpc RPC] [--stats FILE]
//       [--tls-ca FILE [--tls-cert FILE --tls-key FILE]] [--credential-dir DIR]
//
// The package is found at SAGA_NODE_PACKAGE (default: ../client-lib/node
// from here), its addon as the package finds it (SAGA_NODE_ADDON: sagabench
// passes the in-tree build). Exit status: 0 after a clean stop, 1 if a
// worker failed, 2 on bad usage.

const fs = require('node:fs');
const path = require('node:path');

const saga = require(process.env.SAGA_NODE_PACKAGE || path.join(__dirname, '..', 'client-lib', 'node'));

const FLAG_FAIL_LAST = 1;
const FLAG_ECHO = 2;
const ECHO_MAX = 256 * 1024;
const ACTIONS = ['S1', 'S2', 'S3', 'T1', 'T2', 'T3', 'T4', 'T5', 'T6', 'T7', 'T8', 'T9', 'T10',
  'B1', 'B2', 'B3', 'J'];
const COMPS = ['U1', 'U2', 'U3', 'UT1', 'UT2', 'UT3', 'UT4', 'UT5', 'UT6', 'UT7', 'UT8', 'UT9',
  'UT10', 'UB1', 'UB2', 'UB3', 'UJ'];

function usage(why) {
  if (why) process.stderr.write(`bench-participant.js: ${why}\n`);
  process.stderr.write(
    'usage: bench-participant.js --url URL --participant NAME[,NAME...] [--capacity N]\n' +
    '         [--instance ID] [--fail-on RPC] [--delay-ms MS --delay-rpc RPC]\n' +
    '         [--stats FILE] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n' +
    '         [--credential-dir DIR]\n');
  process.exit(2);
}

const P = { names: [], capacity: 256, delayMs: 0 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const a = argv[i];
  const v = argv[i + 1];
  if (v === undefined) usage(`${a} needs a value`);
  switch (a) {
    case '--url': P.url = v; break;
    case '--participant': P.names.push(...v.split(',').filter(Boolean)); break;
    case '--capacity': P.capacity = Number(v); break;
    case '--instance': P.instance = v; break;
    case '--fail-on': P.failOn = v; break;
    case '--delay-ms': P.delayMs = Number(v); break;
    case '--delay-rpc': P.delayRpc = v; break;
    case '--stats': P.stats = v; break;
    case '--tls-ca': P.tlsCa = v; break;
    case '--tls-cert': P.tlsCert = v; break;
    case '--tls-key': P.tlsKey = v; break;
    case '--credential-dir': P.credentialDir = v; break;
    default: usage(`unknown option ${a}`);
  }
}
if (!P.url || P.names.length === 0) usage();
if (!Number.isInteger(P.capacity) || P.capacity < 1 || P.capacity > 4096) {
  usage('--capacity must be an integer from 1 to 4096');
}

const monoNs = () => process.hrtime.bigint(); // CLOCK_MONOTONIC, as sagabench's clock
const counts = new Map();
let firstNs = 0n;
let releasedNs = 0n;
let firstAfterReleaseNs = 0n;
let stopping = false;
const releaseWaiters = new Set();

const OK = Buffer.from([0x0a, 0x02, 0x6f, 0x6b]); // bench.Result{tag: "ok"}

function noteEntry(rpc) {
  const now = monoNs();
  if (firstNs === 0n) firstNs = now;
  if (releasedNs !== 0n && firstAfterReleaseNs === 0n) firstAfterReleaseNs = now;
  counts.set(rpc, (counts.get(rpc) || 0) + 1);
}

function inputFlags(input) {
  return input.length >= 2 && input[0] === 0x08 && input[1] < 0x80 ? input[1] : 0;
}

function reply(step, flags) {
  if ((flags & FLAG_FAIL_LAST) && P.failOn !== undefined && step.rpc === P.failOn) {
    throw new saga.BusinessFailure('bench: planned failure');
  }
  if (flags & FLAG_ECHO) {
    // A bench.Result whose encoding is as long as the input.
    const len = Math.min(Math.max(step.input.length, 8), ECHO_MAX);
    const data = len - 5; // tag + 4-byte varint length
    // A Buffer of its own: handlers may settle after another one ran.
    const out = Buffer.alloc(len);
    out[0] = 0x0a;
    out[1] = 0x80 | (data & 0x7f);
    out[2] = 0x80 | ((data >> 7) & 0x7f);
    out[3] = 0x80 | ((data >> 14) & 0x7f);
    out[4] = (data >> 21) & 0x7f;
    return out;
  }
  return OK;
}

// The slow participant of the in-flight scenario: sleeps until the delay
// passes, SIGUSR1 arrives or the process stops.
function delay(ms) {
  return new Promise((resolve) => {
    const w = { resolve };
    const done = () => {
      clearTimeout(w.timer);
      releaseWaiters.delete(w);
      resolve();
    };
    w.resolve = done;
    w.timer = setTimeout(done, ms);
    releaseWaiters.add(w);
  });
}

function onAction(step) {
  noteEntry(step.rpc);
  const flags = inputFlags(step.input);
  if (P.delayMs > 0 && step.rpc === P.delayRpc && releasedNs === 0n && !stopping) {
    return delay(P.delayMs).then(() => reply(step, flags));
  }
  return reply(step, flags);
}

function onComp(step) {
  noteEntry(step.rpc);
  return undefined;
}

let lastStats = '';
function writeStats() {
  let text = `released_ns ${releasedNs}\nfirst_after_release_ns ${firstAfterReleaseNs}\n` +
    `first_ns ${firstNs}\n`;
  for (const rpc of [...ACTIONS, ...COMPS]) {
    const c = counts.get(rpc);
    if (c) text += `rpc ${rpc} ${c}\n`;
  }
  if (text === lastStats) return;
  try {
    fs.writeFileSync(P.stats + '.tmp', text);
    fs.renameSync(P.stats + '.tmp', P.stats); // a reader never sees half of it
    lastStats = text;
  } catch {
    // tried again in 20 ms
  }
}

const workers = [];
let failed = false;
for (const name of P.names) {
  const options = {
    url: P.url,
    participant: name,
    capacity: P.capacity,
    onError: (e) => process.stderr.write(`bench-participant.js[${process.pid}]: ${e.message}\n`),
    log: (level, line) => process.stderr.write(`bench-participant.js[${process.pid}]: ${line}\n`),
    logLevel: 'warn',
  };
  if (P.instance) options.instance = `${P.instance}/${name}`;
  if (P.tlsCa) options.tls = { ca: P.tlsCa, cert: P.tlsCert, key: P.tlsKey };
  if (P.credentialDir) {
    const file = path.join(P.credentialDir, `${name}.credential`);
    try {
      options.credential = fs.readFileSync(file, 'utf8').split(/\r?\n/)[0];
    } catch (e) {
      process.stderr.write(`bench-participant.js: cannot read ${file}: ${e.message}\n`);
      process.exit(1);
    }
  }
  let w;
  try {
    w = new saga.Worker(options);
  } catch (e) {
    process.stderr.write(`bench-participant.js: ${name}: ${e.message}\n`);
    process.exit(e instanceof saga.SagaError ? 1 : 2);
  }
  for (const rpc of ACTIONS) w.handle(rpc, onAction);
  for (const rpc of COMPS) w.handle(rpc, onComp, { kind: 'compensation' });
  workers.push(w);
}

const running = workers.map((w, i) => w.run().catch((e) => {
  failed = true;
  process.stderr.write(`bench-participant.js: worker ${P.names[i]}: ${e.codeName}: ${e.message}\n`);
}));

const statsTimer = P.stats ? setInterval(writeStats, 20) : null;

process.on('SIGUSR1', () => {
  if (releasedNs === 0n) releasedNs = monoNs();
  for (const w of [...releaseWaiters]) w.resolve();
});

async function stop() {
  if (stopping) return;
  stopping = true;
  for (const w of [...releaseWaiters]) w.resolve();
  await Promise.all(workers.map((w) => w.close()));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

Promise.all(running).then(() => {
  if (statsTimer) clearInterval(statsTimer);
  if (P.stats) writeStats();
  // A worker that failed (a refused credential) ends the process, as the
  // C participant's does.
  process.exitCode = failed ? 1 : 0;
  if (!stopping) stop();
});
