'use strict';
// A Node.js participant process for the tests: node participant.js URL ROLES
// serves each role (comma-separated) with a Worker of that participant
// name. The saga input is text directives, e.g. "fail=Charge;retry=Reserve:2;sleep=900;beat=1".
// Prints "ready" once running, one line per notable event, and closes
// its workers on SIGTERM. Environment: CAPACITY; TLS_CA, TLS_CERT, TLS_KEY
// (mutual TLS); CREDENTIAL_<ROLE> (e.g. CREDENTIAL_INVENTORY), the
// credential that role's worker calls with.

const { Worker, RetryableError, BusinessFailure } = require('..');

const [url, roles] = process.argv.slice(2);
const capacity = Number(process.env.CAPACITY || 4);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (line) => process.stdout.write(line + '\n');

function directives(step) {
  const d = {};
  for (const part of step.input.toString().split(';')) {
    const [k, v = ''] = part.split('=');
    if (k) d[k] = v;
  }
  return d;
}

// retry=Step:N fails the first N attempts of Step with a RetryableError.
function common(step, d) {
  if (d.retry) {
    const [name, n] = d.retry.split(':');
    if (name === step.step && step.attempt <= Number(n)) {
      throw new RetryableError(`${name} is not ready (attempt ${step.attempt})`);
    }
  }
  if (d.fail === step.step) throw new BusinessFailure(`${step.step} refused`);
}

let inFlight = 0;
let maxInFlight = 0;

const workers = [];
const onError = (e) => say(`WARN ${e.message}`);
for (const role of roles.split(',')) {
  const participant = role === 'shipping-typo' ? 'shipping' : role;
  const options = { url, participant, capacity, onError };
  if (process.env.TLS_CA) {
    options.tls = { ca: process.env.TLS_CA, cert: process.env.TLS_CERT, key: process.env.TLS_KEY };
  }
  const cred = process.env[`CREDENTIAL_${role.toUpperCase().replace(/-/g, '_')}`];
  if (cred) options.credential = cred;
  const w = new Worker(options);
  switch (role) {
    case 'inventory':
      w.handle('Reserve', async (step) => {
        common(step, directives(step));
        say(`ACTION Reserve ${step.sagaId} attempt=${step.attempt} key=${step.idempotencyKey} tp=${step.traceparent}`);
        return Buffer.from(`reserved:${step.sagaId}`);
      });
      w.handle('Release', async (step) => {
        say(`COMP Release ${step.sagaId} reserve=${step.results.Reserve}`);
      }, { kind: 'compensation' });
      break;
    case 'payments':
      w.handle('Charge', async (step) => {
        common(step, directives(step));
        say(`ACTION Charge ${step.sagaId} reserve=${step.results.Reserve}`);
        return Buffer.from(`charge-42-for-${step.sagaId}`);
      });
      w.handle('Refund', async (step) => {
        say(`COMP Refund ${step.sagaId} charge=${step.result('Charge')} kind=${step.kind}`);
      }, { kind: 'compensation' });
      break;
    case 'shipping':
      w.handle('Ship', async (step) => {
        common(step, directives(step));
        return Buffer.from('shipped');
      });
      break;
    case 'shipping-typo': // a participant whose rpc name is wrong: sagad's Ship finds no handler
      break;
    case 'slow':
      w.handle('Work', async (step) => {
        const d = directives(step);
        const end = Date.now() + Number(d.sleep || 0);
        say(`START Work ${step.sagaId} attempt=${step.attempt} timeoutMs=${step.timeoutMs}`);
        while (Date.now() < end) {
          await sleep(100);
          if (d.beat) step.heartbeat();
        }
        return Buffer.from(`worked:${step.attempt}`);
      });
      break;
    case 'busy':
      w.handle('Task', (step) => {
        const d = directives(step);
        switch (d.bad) {
          case 'nonerror':
            return Promise.reject('boom'); // eslint-disable-line prefer-promise-reject-errors
          case 'string':
            return Promise.resolve('not a buffer');
          case 'number':
            return 42;
          case 'twice':
            // A thenable that settles twice, the second time with a bad value.
            return { then(ok) { ok(Buffer.from('first')); ok('second'); } };
          case 'never':
            say(`NEVER ${step.sagaId} attempt=${step.attempt}`);
            return new Promise(() => {});
          case 'sync-throw':
            throw new TypeError('thrown before any await');
          default:
        }
        return (async () => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          if (w.inFlight > capacity) say(`OVER ${w.inFlight}`);
          await sleep(Number(d.sleep || 150));
          inFlight--;
          if (d.say) say(`RAN Task ${step.sagaId} attempt=${step.attempt}`);
          return Buffer.from(`max=${maxInFlight}`);
        })();
      });
      break;
    default:
      throw new Error(`unknown role ${role}`);
  }
  if (role === 'shipping-typo') {
    w.handle('Shipp', async () => Buffer.from('never called'));
  }
  workers.push(w);
}

const live = workers.filter(Boolean);
for (const w of live) {
  w.run().catch((e) => {
    say(`FATAL ${w.participant} ${e.name} ${e.message}`);
    process.exitCode = 3;
  });
}
process.on('SIGTERM', async () => {
  const t0 = Date.now();
  await Promise.all(live.map((w) => w.close()));
  say(`closed in ${Date.now() - t0} ms`);
});
say('ready');
