'use strict';
// Test helpers: a real sagad (with its embedded PostgreSQL) in a temp
// directory, the test sagas compiled with protoc, and participant
// processes (participant.js) whose output the tests read.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const repo = path.resolve(__dirname, '..', '..', '..');
const saga = require('..');

function sagadBin() {
  const bin = process.env.SAGAD_BIN || path.join(repo, 'build-dev', 'server', 'sagad');
  if (!fs.existsSync(bin)) throw new Error(`sagad not found at ${bin}: build it or set SAGAD_BIN`);
  return bin;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The test sagas as a FileDescriptorSet (Buffer). */
function descriptorSet(dir) {
  const out = path.join(dir, 'shop.binpb');
  const protoDir = process.env.SAGA_PROTO_DIR || path.join(repo, 'proto');
  execFileSync(process.env.PROTOC || 'protoc', [
    '--include_imports', `--descriptor_set_out=${out}`,
    `--proto_path=${__dirname}`, `--proto_path=${protoDir}`, '--proto_path=/usr/include',
    path.join(__dirname, 'shop.proto'),
  ]);
  return fs.readFileSync(out);
}

// sagad does not get a sanitizer preloaded into node for the addon.
function sagadEnv() {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  return env;
}

/** Starts sagad on its own PostgreSQL; resolves {url, client, stop()} once it answers. */
async function startSagad() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saga-node-'));
  fs.chmodSync(dir, 0o711); // the embedded PostgreSQL runs as another user under root
  const port = await freePort();
  const url = `tcp://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(dir, 'sagad.log'), 'a');
  const child = spawn(sagadBin(), [
    '--allow-root', '--data-dir', path.join(dir, 'data'), '--listen', url, '--log-level', 'info',
  ], { stdio: ['ignore', log, log], env: sagadEnv() });
  let exited = null;
  child.on('exit', (code, sig) => { exited = { code, sig }; });
  const client = new saga.Client({ url, timeoutMs: 5000 });
  const t0 = Date.now();
  for (;;) {
    if (exited) {
      throw new Error(`sagad exited (${JSON.stringify(exited)}); log:\n` +
        fs.readFileSync(path.join(dir, 'sagad.log'), 'utf8').slice(-3000));
    }
    try {
      await client.list({ limit: 1 });
      break;
    } catch (e) {
      if (Date.now() - t0 > 90000) throw new Error(`sagad did not answer in 90 s: ${e.message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await client.register(descriptorSet(dir));
  return {
    url,
    client,
    dir,
    async stop() {
      await client.close();
      if (!exited) {
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
        await done;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts participant.js serving `roles` (comma-separated) in its own
 * process; resolves once its workers run. lines: everything it printed;
 * waitFor(re) resolves the first line matching re.
 */
function startParticipant(url, roles, env = {}) {
  const child = spawn(process.execPath, [path.join(__dirname, 'participant.js'), url, roles], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const lines = [];
  const waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const p = {
    child,
    lines,
    exited,
    waitFor(re, ms = 20000) {
      const found = lines.find((l) => re.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { re, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error(`no line matching ${re} in ${ms} ms; got:\n${lines.join('\n')}`)), ms).unref();
      });
    },
    /** SIGTERM: the participant closes its workers (draining) and exits. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  return p.waitFor(/^ready$/).then(() => p);
}

const text = (s) => Buffer.from(s);

module.exports = { startSagad, startParticipant, text, saga };
