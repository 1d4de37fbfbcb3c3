'use strict';
// order-service.js: a small HTTP order service on node:http. Each
// POST /orders starts one shop.OrderSaga and answers with its outcome.
//
//   POST /orders   {"orderId": "o-1", "sku": "SKU-1", "quantity": 1,
//                   "amountCents": 1999, "card": "4242", "address": "1 Main St"}
//                  Idempotency-Key: <key>   (optional; default: the order id)
//   GET /orders/<saga id>   the saga's state now
//
// Answers JSON {sagaId, orderId, state, existing, error?, steps}:
//   201 completed; 200 the same for a repeated key (existing: true)
//   409 a repeated key with a different order
//   422 compensated: a step refused the order and everything done was undone
//   500 failed: a compensation gave up; the saga waits for an operator
//   202 still running after --wait-ms; Location: /orders/<saga id>
//   400 bad JSON or fields, 404, 405, 413 body over 64 KiB, 415 not JSON,
//   503 sagad unreachable or too many orders waiting (Retry-After)

const http = require('node:http');
const { parseArgs } = require('node:util');
const { messages, encode, tlsFromEnv, DEFAULT_URL } = require('./shop');

const MAX_BODY = 64 * 1024;
const STATUS = { completed: 201, compensated: 422, failed: 500 };

function usage() {
  return `usage: node order-service.js [--url URLS] [--listen [HOST:]PORT] [--wait-ms MS] [--max-waiting N]
An HTTP order service: POST /orders starts one shop.OrderSaga and answers
with its outcome; GET /orders/SAGA_ID shows one.
  --url URLS         sagad address (default $SAGA_URL, else ${DEFAULT_URL});
                     for tls+tcp:// URLs $SAGA_TLS_* as for sagactl
  --listen ADDR      where to listen (default 127.0.0.1:8080; port 0 = any
                     free port, printed on start)
  --wait-ms MS       how long a request waits for its saga (default 30000);
                     then 202 with a Location to poll
  --max-waiting N    orders waited on at once (default 32); more get 503
`;
}

class BadRequest extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function reply(res, status, body, headers = {}) {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
      else if (chunks !== null) {
        chunks = null; // the rest is read and dropped; the answer closes the connection
        reject(new BadRequest(413, `the body is over ${MAX_BODY} bytes`));
      }
    });
    req.on('end', () => chunks !== null && resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// The order's fields, checked: a clear 400 for each mistake.
function orderFrom(text) {
  let o;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new BadRequest(400, `the body is not JSON: ${e.message}`);
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new BadRequest(400, 'the body must be a JSON object');
  const known = ['orderId', 'sku', 'quantity', 'amountCents', 'card', 'address'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new BadRequest(400, `unknown field "${k}" (known: ${known.join(', ')})`);
  const str = (k, max) => {
    const v = o[k];
    if (typeof v !== 'string' || v === '' || v.length > max || v.includes('\0'))
      throw new BadRequest(400, `"${k}" must be a non-empty string of at most ${max} characters`);
    return v;
  };
  const int = (k, max) => {
    const v = o[k];
    const s = typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : typeof v === 'string' ? v : '';
    if (!/^[1-9][0-9]*$/.test(s) || BigInt(s) > max) throw new BadRequest(400, `"${k}" must be a whole number from 1 to ${max}`);
    return s;
  };
  return {
    orderId: str('orderId', 200),
    sku: str('sku', 200),
    quantity: Number(int('quantity', 4294967295n)),
    amountCents: int('amountCents', 18446744073709551615n),
    card: str('card', 200),
    address: str('address', 1000),
  };
}

function view(info, extra = {}) {
  return {
    sagaId: info.sagaId,
    state: info.state,
    ...extra,
    ...(info.error ? { error: info.error } : {}),
    steps: info.steps.map((s) => ({ name: s.name, state: s.state, attempts: s.attempts, ...(s.lastError ? { lastError: s.lastError } : {}) })),
  };
}

function main() {
  let args;
  try {
    args = parseArgs({
      options: {
        url: { type: 'string' },
        listen: { type: 'string', default: '127.0.0.1:8080' },
        'wait-ms': { type: 'string', default: '30000' },
        'max-waiting': { type: 'string', default: '32' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`order-service: ${e.message}\n${usage()}`);
    process.exit(2);
  }
  if (args.help) return process.stdout.write(usage());
  const num = (name, min, max) => {
    const v = Number(args[name]);
    if (!/^[0-9]+$/.test(args[name]) || v < min || v > max) {
      process.stderr.write(`order-service: --${name}: not a number from ${min} to ${max}: ${args[name]}\n`);
      process.exit(2);
    }
    return v;
  };
  const waitMs = num('wait-ms', 1, 3600000);
  const maxWaiting = num('max-waiting', 1, 1024);
  const m = /^(?:(.*):)?([0-9]+)$/.exec(args.listen);
  if (!m || Number(m[2]) > 65535) {
    process.stderr.write(`order-service: --listen: not [HOST:]PORT: ${args.listen}\n`);
    process.exit(2);
  }
  // Each waiting order holds one of libuv's threads (Client.run): make room
  // for them before the first call starts the pool.
  process.env.UV_THREADPOOL_SIZE = String(Math.max(Number(process.env.UV_THREADPOOL_SIZE) || 4, maxWaiting + 4));
  const { Client, SagaError, SagaTimeoutError, SagaNotFoundError } = require('libsaga');

  const url = args.url || process.env.SAGA_URL || DEFAULT_URL;
  const client = new Client({ url, tls: tlsFromEnv() });
  let waiting = 0;

  async function postOrder(req, res) {
    const type = req.headers['content-type'] || '';
    if (!/^application\/json\s*(;|$)/i.test(type)) throw new BadRequest(415, 'send the order as Content-Type: application/json');
    const order = orderFrom(await readBody(req));
    const key = req.headers['idempotency-key'] !== undefined ? String(req.headers['idempotency-key']) : order.orderId;
    if (key === '' || key.length > 200) throw new BadRequest(400, 'Idempotency-Key must be 1 to 200 characters');
    if (waiting >= maxWaiting) {
      return reply(res, 503, { error: `${maxWaiting} orders are being waited on already; try again` }, { 'retry-after': '1' });
    }
    waiting++;
    try {
      const input = encode(messages.OrderRequest, order);
      let run;
      try {
        run = await client.run('shop.OrderSaga', input, { idempotencyKey: key, businessKey: order.orderId, timeoutMs: waitMs });
      } catch (e) {
        if (e instanceof SagaTimeoutError && e.sagaId) {
          return reply(res, 202, { sagaId: e.sagaId, orderId: order.orderId, state: e.state || 'running' },
            { location: `/orders/${e.sagaId}` });
        }
        throw e;
      }
      const info = await client.get(run.sagaId);
      if (run.existing && !info.input.equals(input)) {
        // A key names one order: sagad returned the saga it started first.
        return reply(res, 409, { sagaId: run.sagaId, error: `Idempotency-Key "${key}" was used for a different order` });
      }
      const status = run.existing && info.state === 'completed' ? 200 : STATUS[info.state] || 202;
      console.log(`order ${order.orderId} key=${key}: saga ${run.sagaId} ${info.state}${run.existing ? ' (existing)' : ''}`);
      reply(res, status, view(info, { orderId: order.orderId, existing: run.existing }));
    } finally {
      waiting--;
    }
  }

  async function getOrder(res, sagaId) {
    try {
      reply(res, 200, view(await client.get(sagaId)));
    } catch (e) {
      if (e instanceof SagaNotFoundError) throw new BadRequest(404, `no saga ${sagaId}`);
      throw e;
    }
  }

  const server = http.createServer(async (req, res) => {
    try {
      const path = req.url.split('?')[0];
      if (path === '/orders') {
        if (req.method !== 'POST') throw new BadRequest(405, 'use POST /orders');
        await postOrder(req, res);
      } else if (path.startsWith('/orders/')) {
        if (req.method !== 'GET') throw new BadRequest(405, 'use GET /orders/SAGA_ID');
        const id = path.slice('/orders/'.length);
        if (!/^[0-9a-f-]{36}$/i.test(id)) throw new BadRequest(404, `no saga ${id.slice(0, 60)}`);
        await getOrder(res, id);
      } else {
        throw new BadRequest(404, 'try POST /orders or GET /orders/SAGA_ID');
      }
    } catch (e) {
      if (res.headersSent) return res.destroy();
      if (e instanceof BadRequest) {
        const headers = e.status === 405 ? { allow: req.url.startsWith('/orders/') ? 'GET' : 'POST' } : {};
        if (e.status === 413) headers.connection = 'close';
        reply(res, e.status, { error: e.message }, headers);
      } else if (e instanceof SagaError) {
        // sagad down or refusing: nothing was decided for this request.
        console.error(`order-service: ${e.codeName}: ${e.message}`);
        reply(res, 503, { error: `sagad: ${e.message}` }, { 'retry-after': '1' });
      } else {
        console.error(`order-service: ${e.stack || e}`);
        reply(res, 500, { error: 'internal error' });
      }
    }
  });
  const host = (m[1] || '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  server.listen(Number(m[2]), host, () => {
    const a = server.address();
    console.log(`order-service listening on http://${a.address}:${a.port} (sagad ${url})`);
  });
  const stop = () => server.close(() => client.close());
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main();
