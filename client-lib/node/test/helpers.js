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

/**
 * Development certificates made by openssl in dir, as the C harness's
 * world_tls makes them: a CA, sagad's and a client's (both for localhost
 * and 127.0.0.1, as a DNS name too: nng 1.5.2 checks DNS names, not IP
 * addresses). Returns the file names.
 */
function makeCerts(dir) {
  const script = `set -e
cd "$1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \\
  -out ca.pem -days 2 -subj /CN=node-test-ca 2>/dev/null
for n in sagad client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key \\
    -out $n.csr -subj /CN=$n 2>/dev/null
  printf 'subjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1\\n' > $n.ext
  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial \\
    -out $n.pem -days 2 -extfile $n.ext 2>/dev/null
done
`;
  execFileSync('/bin/sh', ['-c', script, 'sh', dir]);
  const f = (n) => path.join(dir, n);
  return {
    ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key'),
    sagadCert: f('sagad.pem'), sagadKey: f('sagad.key'),
  };
}

/**
 * Starts sagad on its own PostgreSQL; resolves {url, client, stop()} once
 * it answers. {tls: true}: a tls+tcp:// listener wanting client
 * certificates (mutual TLS), certificates in `certs`, `tls` the options a
 * Worker or Client needs; {auth: true}: --auth on, `adminCredential` the
 * bootstrap admin's, which `client` calls with.
 */
async function startSagad({ tls = false, auth = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saga-node-'));
  fs.chmodSync(dir, 0o711); // the embedded PostgreSQL runs as another user under root
  const port = await freePort();
  const url = `${tls ? 'tls+tcp' : 'tcp'}://127.0.0.1:${port}`;
  const dataDir = path.join(dir, 'data');
  const args = ['--allow-root', '--data-dir', dataDir, '--listen', url, '--log-level', 'info'];
  let certs;
  let tlsOptions;
  if (tls) {
    certs = makeCerts(dir);
    tlsOptions = { ca: certs.ca, cert: certs.cert, key: certs.key };
    args.push('--tls-cert', certs.sagadCert, '--tls-key', certs.sagadKey, '--tls-ca', certs.ca);
  }
  if (auth) args.push('--auth', 'on');
  const log = fs.openSync(path.join(dir, 'sagad.log'), 'a');
  const child = spawn(sagadBin(), args, { stdio: ['ignore', log, log], env: sagadEnv() });
  let exited = null;
  child.on('exit', (code, sig) => { exited = { code, sig }; });
  let client = null;
  let adminCredential;
  const t0 = Date.now();
  for (;;) {
    if (exited) {
      throw new Error(`sagad exited (${JSON.stringify(exited)}); log:\n` +
        fs.readFileSync(path.join(dir, 'sagad.log'), 'utf8').slice(-3000));
    }
    try {
      if (!client && auth) {
        // Written once the database is up (mode 0600).
        adminCredential = fs.readFileSync(path.join(dataDir, 'bootstrap-admin.credential'), 'utf8').trim();
      }
      if (!client) client = new saga.Client({ url, timeoutMs: 5000, tls: tlsOptions, credential: adminCredential });
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
    certs,
    tls: tlsOptions,
    adminCredential,
    /** A principal made with sagactl as the admin; resolves its credential. */
    principal(name, role, participant) {
      const sagactl = process.env.SAGACTL_BIN || path.join(repo, 'build-dev', 'client-lib', 'sagactl');
      const a = ['--url', url, 'principal', 'create', name, '--role', role];
      if (participant) a.push('--participant', participant);
      const env = { ...sagadEnv(), SAGA_CREDENTIAL: adminCredential };
      if (certs) Object.assign(env, { SAGA_TLS_CA: certs.ca, SAGA_TLS_CERT: certs.cert, SAGA_TLS_KEY: certs.key });
      return execFileSync(sagactl, a, { env }).toString().trim();
    },
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

module.exports = { startSagad, startParticipant, text, saga, repo };
