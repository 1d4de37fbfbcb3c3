'use strict';
// shop.js: what the three order participants share. The Node.js twin of
// examples/order/common.c: the order.proto messages (protobufjs), the
// command line, the participant's own database (pg) with its tables and
// the barrier table, and serve(), which runs a Worker whose every handler
// goes through the barrier and prints one line per step.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const pg = require('pg');
const protobuf = require('protobufjs');
const { Worker, BusinessFailure, RetryableError } = require('libsaga');
const barrier = require('saga-barrier');

const DEFAULT_URL = 'tcp://127.0.0.1:7700';

// ---- the messages --------------------------------------------------------

// order.proto imports sagaspec.proto (the step options sagad reads); the
// messages need neither, but protobufjs parses the import. Both files are
// found in the repository unless SAGA_PROTO_PATH (colon-separated folders)
// says where.
const here = __dirname;
const protoPath = (process.env.SAGA_PROTO_PATH || '')
  .split(':')
  .filter(Boolean)
  .concat([path.join(here, '..', 'order'), path.join(here, '..', '..', 'proto'), '/usr/include']);

function loadMessages() {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    for (const dir of protoPath) {
      const f = path.join(dir, target);
      if (fs.existsSync(f)) return f;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  try {
    root.loadSync('order.proto', { keepCase: false });
  } catch (e) {
    throw new Error(`cannot load order.proto and sagaspec.proto from ${protoPath.join(':')} (set SAGA_PROTO_PATH): ${e.message}`);
  }
  const t = (name) => root.lookupType(`shop.${name}`);
  return {
    OrderRequest: t('OrderRequest'),
    ReserveResult: t('ReserveResult'),
    ChargeResult: t('ChargeResult'),
    ShipResult: t('ShipResult'),
  };
}
const messages = loadMessages();

/** Encodes a message of `type` from a plain object (uint64 as a decimal string) into a Buffer. */
function encode(type, fields) {
  return Buffer.from(type.encode(type.fromObject(fields)).finish());
}

/**
 * The saga input as a plain object (uint64 as a decimal string), or a
 * BusinessFailure: bad input does not get better on retry.
 */
function orderOf(step) {
  let order;
  try {
    order = messages.OrderRequest.toObject(messages.OrderRequest.decode(step.input), {
      longs: String,
      defaults: true,
    });
  } catch (e) {
    throw new BusinessFailure(`bad input: ${step.input.length} bytes that are not a shop.OrderRequest (${e.message})`);
  }
  if (order.orderId === '') throw new BusinessFailure('bad input: OrderRequest.order_id is empty');
  return order;
}

// ---- the database --------------------------------------------------------

/**
 * pg settings from a libpq connection string: a URL
 * (postgresql://user@host/db) or key=value words as the C participants take
 * them ("host=/run/postgresql dbname=shop"; values may be 'quoted').
 */
function pgConfig(conninfo) {
  if (/^postgres(ql)?:\/\//.test(conninfo)) return { connectionString: conninfo };
  const keys = { host: 'host', hostaddr: 'host', port: 'port', user: 'user', dbname: 'database',
    password: 'password', application_name: 'application_name', connect_timeout: 'connectionTimeoutMillis' };
  const cfg = {};
  const re = /\s*([a-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))/gy;
  let m;
  let end = 0;
  while ((m = re.exec(conninfo)) !== null) {
    const key = keys[m[1]];
    if (key === undefined) throw new Error(`--db: unsupported key "${m[1]}" (known: ${Object.keys(keys).join(', ')})`);
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    cfg[key] = key === 'connectionTimeoutMillis' ? Number(value) * 1000 : value;
    end = re.lastIndex;
  }
  if (conninfo.slice(end).trim() !== '') throw new Error(`--db: cannot read "${conninfo.slice(end).trim()}" as key=value`);
  return cfg;
}

// The participant's tables, made under one advisory lock (7001, as the C
// participants take it) so that replicas starting at once, in C or in
// Node.js, do not race on CREATE TABLE IF NOT EXISTS.
async function migrate(pool, schemaSql) {
  await barrier.migrate(pool);
  const c = await pool.connect();
  try {
    await c.query(`BEGIN; SET LOCAL client_min_messages = warning; SELECT pg_advisory_xact_lock(7001); ${schemaSql}; COMMIT`);
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

// ---- the participant -----------------------------------------------------

/** TLS for tls+tcp:// URLs from $SAGA_TLS_CA, _CERT, _KEY, _SERVER_NAME, as sagactl takes them. */
function tlsFromEnv() {
  const e = process.env;
  if (!e.SAGA_TLS_CA) return undefined;
  return { ca: e.SAGA_TLS_CA, cert: e.SAGA_TLS_CERT || undefined, key: e.SAGA_TLS_KEY || undefined,
    serverName: e.SAGA_TLS_SERVER_NAME || undefined };
}

const say = (line) => process.stdout.write(`${line}\n`);

function usage(prog, participant) {
  return `usage: node ${prog} --db CONNINFO [--url URLS] [--capacity N] [--verbose]
Example participant "${participant}" of the shop.OrderSaga saga, in Node.js.
  --db CONNINFO  its own PostgreSQL database (default $SHOP_DB): a URL or
                 libpq key=value words; its tables and the barrier table
                 are created if missing
  --url URLS     sagad address (default $SAGA_URL, else ${DEFAULT_URL}), or
                 several, separated by commas; for tls+tcp:// URLs
                 $SAGA_TLS_CA, $SAGA_TLS_CERT, $SAGA_TLS_KEY and
                 $SAGA_TLS_SERVER_NAME as for sagactl
  --capacity N   steps run at once (default 16)
  --verbose      also print libsaga's debug lines
Prints one line per handled step to stdout; libsaga's log goes to stderr.
Stops cleanly on SIGINT or SIGTERM.
`;
}

/**
 * Runs participant `participant` until SIGINT/SIGTERM. handlers: {rpc:
 * {kind: 'action'|'compensation', tx: async (db, order, step) => ({result,
 * said})}}; tx runs inside the barrier's transaction on `db` and throws
 * BusinessFailure (undo, no retry) or anything else (retry).
 */
async function serve(participant, schemaSql, handlers) {
  const prog = path.basename(process.argv[1] || participant);
  const fail = (msg, code = 2) => {
    process.stderr.write(`${prog}: ${msg}\n`);
    process.exit(code);
  };
  let args;
  try {
    args = parseArgs({
      options: {
        db: { type: 'string' },
        url: { type: 'string' },
        capacity: { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    process.stderr.write(usage(prog, participant));
    fail(e.message);
  }
  if (args.help) {
    process.stdout.write(usage(prog, participant));
    return;
  }
  const conninfo = args.db || process.env.SHOP_DB || '';
  if (conninfo === '') fail("no database: give --db CONNINFO (or set SHOP_DB), e.g. --db 'host=/tmp dbname=shop'");
  const url = args.url || process.env.SAGA_URL || DEFAULT_URL;
  let capacity = 16;
  if (args.capacity !== undefined) {
    capacity = Number(args.capacity);
    if (!/^[0-9]+$/.test(args.capacity) || capacity < 1 || capacity > 4096)
      fail(`--capacity: not a number from 1 to 4096: ${args.capacity}`);
  }
  let cfg;
  try {
    cfg = pgConfig(conninfo);
  } catch (e) {
    fail(e.message);
  }

  // One connection per step in flight: a barrier transaction holds one.
  const pool = new pg.Pool({ ...cfg, max: capacity });
  pool.on('error', (e) => process.stderr.write(`${prog}: warn: database: ${e.message}\n`));
  try {
    await migrate(pool, schemaSql);
  } catch (e) {
    await pool.end();
    fail(`--db: cannot create the tables: ${e.message}`, 1);
  }

  const worker = new Worker({
    url,
    participant,
    capacity,
    tls: tlsFromEnv(),
    instance: `${os.hostname()}:${process.pid}:node`,
    logLevel: args.verbose ? 'debug' : 'info',
    log: (level, line) => process.stderr.write(`${prog}: ${level}: ${line}\n`),
    onError: (e) => process.stderr.write(`${prog}: warn: ${e.message}\n`),
  });
  for (const [rpc, h] of Object.entries(handlers)) {
    worker.handle(rpc, async (step) => {
      let order;
      try {
        order = orderOf(step);
      } catch (e) {
        say(`${rpc} saga=${step.sagaId}: bad input, failed`);
        throw e;
      }
      let said = '';
      const r = await barrier.run(pool, step, async (db) => {
        const out = await h.tx(db, order, step);
        said = out.said;
        return out.result;
      });
      if (r.verdict !== barrier.VERDICTS.RAN || said === '' || r.outcome === 'retry')
        said = r.outcome === 'success' ? 'success' : `${r.outcome === 'fail' ? 'failed' : 'retry'}: ${r.error}`;
      say(`${rpc} saga=${step.sagaId} attempt=${step.attempt}: ${said} [barrier: ${r.verdict}]`);
      if (r.outcome === 'success') return r.result;
      if (r.outcome === 'fail') throw new BusinessFailure(r.error);
      throw new RetryableError(r.error);
    }, { kind: h.kind });
  }

  const stop = () => worker.close();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.stderr.write(`${prog}: participant "${participant}" serving at ${url}\n`);
  try {
    await worker.run();
  } catch (e) {
    await pool.end();
    fail(`worker stopped: ${e.message}`, 1);
  }
  await pool.end();
  process.stderr.write(`${prog}: stopped\n`);
}

module.exports = { messages, encode, orderOf, pgConfig, serve, tlsFromEnv, BusinessFailure, RetryableError, DEFAULT_URL };
