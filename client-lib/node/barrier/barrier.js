'use strict';
/*
 * saga-barrier: exactly-once step effects for Node.js participants that keep
 * their data in PostgreSQL through `pg`. The JavaScript twin of libsaga's
 * saga_barrier.h (client-lib/src/barrier.c): the same table, the same
 * statements in the same order, the same verdicts, so a C replica and a Node
 * replica of one participant can share one database and one barrier.
 *
 * sagad delivers every step at least once. run(db, step, fn) opens a
 * transaction, records the step (saga id, step name, action or
 * compensation) in the table saga_barrier, runs fn inside that transaction
 * for the business writes, and records fn's outcome before committing:
 *
 *   - a duplicate delivery does not run fn: the first recorded outcome
 *     (success with its result, or business failure) is given again
 *     ('duplicate');
 *   - a compensation whose action never ran (or failed for certain) does not
 *     run fn: it is recorded and succeeds ('null compensation');
 *   - an action that arrives after its compensation does not run fn: it is
 *     refused with a business failure ('refused');
 *   - a retryable outcome (fn threw anything but a business failure, or a
 *     database error) rolls everything back and records nothing;
 *   - a business failure of an action rolls fn's writes back (a savepoint)
 *     but is recorded, so a duplicate gets the same failure.
 *
 * Action (kind 1), in one transaction:
 *   INSERT its row ON CONFLICT DO NOTHING
 *     conflict: the row is committed (a concurrent insert waits for the
 *       other transaction): outcome 1/2 -> duplicate, replay; 3 -> refused.
 *     inserted: SAVEPOINT, fn(); success -> record result, COMMIT;
 *       business failure -> ROLLBACK TO SAVEPOINT, record error, COMMIT;
 *       anything else -> ROLLBACK (nothing recorded).
 * Compensation (kind 2):
 *   INSERT its row ON CONFLICT DO NOTHING -> conflict: duplicate, replay.
 *   INSERT the action's row as "prevented" ON CONFLICT DO NOTHING
 *     inserted: the action never ran and now never will: null
 *       compensation, COMMIT, success.
 *     conflict: action failed (2) -> null compensation; succeeded (1) ->
 *       SAVEPOINT, fn(); success -> COMMIT; anything else -> ROLLBACK.
 *
 * This module does not load `pg` itself: it takes the caller's pg.Client,
 * pg.PoolClient or pg.Pool (pg >= 8). With a Pool each step runs on a
 * client of its own; a Client is used by one step at a time (steps given the
 * same Client wait for each other), because a transaction is per connection.
 */

/* The table, byte for byte client-lib/sql/saga_barrier.sql (the test
 * test/barrier.test.js compares them). */
const SQL = `-- saga_barrier: the table libsaga's barrier (saga_barrier.h) keeps in a
-- participant's own database. Apply it once per database, or call
-- saga_barrier_migrate(). Idempotent.
--
-- One row per (saga, step, kind) a participant has handled. A row commits in
-- the same transaction as the business writes of its step, so a row exists
-- exactly when the step's effect does.
--   kind:    1 = action, 2 = compensation
--   outcome: 1 = succeeded, 2 = failed (business failure, nothing applied),
--            3 = prevented (an action row written by a compensation that
--                arrived first: the action must never apply)
--   nulled:  a compensation that had nothing to undo
CREATE TABLE IF NOT EXISTS saga_barrier (
    saga_id     uuid        NOT NULL,
    step        text        NOT NULL,
    kind        smallint    NOT NULL CHECK (kind IN (1, 2)),
    outcome     smallint    NOT NULL CHECK (outcome IN (1, 2, 3)),
    nulled      boolean     NOT NULL DEFAULT false,
    result      bytea,
    error       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, step, kind)
);
-- For pruning old rows: DELETE FROM saga_barrier WHERE created_at < ...
-- (only once no delivery of those sagas can still be in flight).
CREATE INDEX IF NOT EXISTS saga_barrier_created ON saga_barrier (created_at);
`;

/* The advisory lock that serializes migrate() ("sagabarr"), the same key as
 * saga_barrier_migrate(), so C and Node replicas starting at once take turns. */
const LOCK_KEY = '8314040055062688370'; /* 0x7361676162617272 */

const KIND_ACTION = 1;
const KIND_COMP = 2;
const OUT_SUCCESS = 1;
const OUT_FAILED = 2;
const OUT_PREVENTED = 3;

/* What run() did: the names of saga_barrier_result_name(). */
const VERDICTS = Object.freeze({
  RAN: 'ran',
  DUPLICATE: 'duplicate',
  NULL_COMPENSATION: 'null compensation',
  REFUSED: 'refused',
  DB_ERROR: 'database error',
});

/* The statements barrier.c runs, word for word. */
const Q = {
  insert:
    'INSERT INTO saga_barrier (saga_id, step, kind, outcome, nulled)' +
    ' VALUES ($1::uuid, $2, $3::int2, $4::int2, $5::bool) ON CONFLICT DO NOTHING',
  read:
    'SELECT outcome::int4, result, error FROM saga_barrier' +
    ' WHERE saga_id = $1::uuid AND step = $2 AND kind = $3::int2',
  record:
    'UPDATE saga_barrier SET outcome = $4::int2, result = $5, error = $6' +
    ' WHERE saga_id = $1::uuid AND step = $2 AND kind = $3::int2',
  nulled:
    'UPDATE saga_barrier SET nulled = true' +
    ' WHERE saga_id = $1::uuid AND step = $2 AND kind = 2',
};

/* A business failure: no retry, the saga compensates. The participant API
 * may throw its own class: any error whose name is 'BusinessFailure' counts. */
class BusinessFailure extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'BusinessFailure';
  }
}

/* A transient failure: sagad retries the step with backoff. */
class RetryableError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'RetryableError';
  }
}

function isBusinessFailure(e) {
  return e instanceof BusinessFailure || (e !== null && typeof e === 'object' && e.name === 'BusinessFailure');
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function uuidText(id) {
  if (typeof id === 'string' && UUID_RE.test(id)) return id.toLowerCase();
  if (id instanceof Uint8Array && id.length === 16) {
    const h = Buffer.from(id.buffer, id.byteOffset, 16).toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  return null;
}

/* The fields of step the barrier uses, checked. Throws TypeError. */
function stepOf(step) {
  if (step === null || typeof step !== 'object')
    throw new TypeError('barrier: step must be an object {sagaId, step, kind, ...}');
  const sagaId = uuidText(step.sagaId);
  if (sagaId === null)
    throw new TypeError(`barrier: step.sagaId must be a UUID (text, or 16 bytes), not ${describe(step.sagaId)}`);
  if (typeof step.step !== 'string' || step.step === '' || step.step.includes('\0'))
    throw new TypeError(`barrier: step.step must be the step's name, not ${describe(step.step)}`);
  let kind;
  if (step.kind === 'action') kind = KIND_ACTION;
  else if (step.kind === 'compensation') kind = KIND_COMP;
  else throw new TypeError(`barrier: step.kind must be 'action' or 'compensation', not ${describe(step.kind)}`);
  return { sagaId, name: step.step, kind };
}

function describe(v) {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v);
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return typeof v;
}

/* Text for PostgreSQL, as a C string would be: cut at the first NUL. */
function cstr(s) {
  const i = s.indexOf('\0');
  return i < 0 ? s : s.slice(0, i);
}

function errText(e) {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  try {
    return `a ${typeof e} was thrown: ${String(e)}`;
  } catch {
    return `a ${typeof e} was thrown`;
  }
}

/* A Pool (not a client checked out of one). */
function isPool(db) {
  return (
    db !== null &&
    typeof db === 'object' &&
    typeof db.connect === 'function' &&
    typeof db.query === 'function' &&
    typeof db.idleCount === 'number' &&
    typeof db.release !== 'function'
  );
}

function isClient(db) {
  return db !== null && typeof db === 'object' && typeof db.query === 'function';
}

/* 'I' idle, 'T' in a transaction, 'E' in a failed transaction, or null
 * (the connection is broken or the answer unknown). pg >= 8.16 knows it
 * from the last ReadyForQuery; with an older pg the barrier asks
 * PostgreSQL, comparing the transaction id it had with the current one. */
async function txStatus(c, xid) {
  if (typeof c.getTransactionStatus === 'function') {
    const s = c.getTransactionStatus();
    if (s === 'I' || s === 'T' || s === 'E') return s;
  }
  try {
    const r = await c.query('SELECT txid_current_if_assigned()::text AS x');
    return r.rows[0].x !== null && r.rows[0].x === xid ? 'T' : 'I';
  } catch (e) {
    return e && e.code === '25P02' ? 'E' : null; /* in_failed_sql_transaction */
  }
}

/* Everything the barrier does with one step on one client. Never throws:
 * every failure is a verdict. */
class Run {
  constructor(c, s, step) {
    this.c = c;
    this.s = s;
    this.step = step;
    this.xid = null; /* the transaction id, for txStatus on an older pg */
    this.broken = false; /* the connection must not be reused (a Pool's client) */
  }

  async cmd(sql) {
    await this.c.query(sql);
  }

  /* INSERT of a barrier row: true inserted, false already there. */
  async insertRow(kind, outcome, nulled) {
    const r = await this.c.query(Q.insert, [this.s.sagaId, this.s.name, String(kind), String(outcome), nulled ? 't' : 'f']);
    return r.rowCount === 1;
  }

  /* A committed row: {outcome, result, error}, or null when there is none. */
  async readRow(kind) {
    const r = await this.c.query(Q.read, [this.s.sagaId, this.s.name, String(kind)]);
    if (r.rows.length !== 1) return null;
    const row = r.rows[0];
    return { outcome: Number(row.outcome), result: row.result, error: row.error };
  }

  /* Records fn's outcome on the row just inserted. */
  async record(kind, outcome, result, error) {
    const r = await this.c.query(Q.record, [this.s.sagaId, this.s.name, String(kind), String(outcome), result, cstr(error)]);
    if (r.rowCount !== 1) throw new Error('the barrier row was not there to record the outcome');
  }

  async rollback() {
    try {
      await this.c.query('ROLLBACK');
    } catch {
      /* the connection broke: nothing was committed either way */
    }
  }

  /* A retryable verdict for a database error; rolls back. */
  async dbError(what, e) {
    const detail = e instanceof Error ? e.message : String(e);
    if (e instanceof Error && typeof e.code !== 'string') this.broken = true; /* not PostgreSQL's: the connection's */
    const st = await txStatus(this.c, this.xid);
    if (st !== 'I') await this.rollback();
    if (st === null) this.broken = true;
    return {
      verdict: VERDICTS.DB_ERROR,
      outcome: 'retry',
      result: null,
      error: `barrier: ${what} for saga ${this.s.sagaId} step ${this.s.name}: ${detail.replace(/\n/g, ' ')}`,
      cause: e,
    };
  }

  async main(fn) {
    const st = await txStatus(this.c, null);
    if (st !== 'I') return this.dbError('the connection is not idle', st === null ? 'broken connection' : 'a transaction is open');
    try {
      await this.cmd('BEGIN');
    } catch (e) {
      return this.dbError('BEGIN failed', e);
    }
    const kind = this.s.kind;
    let inserted;
    try {
      inserted = await this.insertRow(kind, OUT_SUCCESS, false);
    } catch (e) {
      return this.dbError('recording the step failed', e);
    }
    if (!inserted) {
      /* Seen before. */
      let row;
      try {
        row = await this.readRow(kind);
      } catch (e) {
        return this.dbError('reading the first outcome failed', e);
      }
      await this.rollback();
      if (row === null) return this.dbError('the barrier row vanished', 'retry');
      if (row.outcome === OUT_PREVENTED)
        return {
          verdict: VERDICTS.REFUSED,
          outcome: 'fail',
          result: null,
          error: 'refused by the barrier: this step was compensated before the action arrived',
        };
      if (row.outcome === OUT_SUCCESS)
        return { verdict: VERDICTS.DUPLICATE, outcome: 'success', result: row.result === null ? Buffer.alloc(0) : row.result, error: '' };
      return {
        verdict: VERDICTS.DUPLICATE,
        outcome: 'fail',
        result: null,
        error: row.error ? row.error : 'failed (recorded by the barrier)',
      };
    }
    if (kind === KIND_ACTION) return this.runFn(fn, kind);

    /* A compensation seen for the first time: did its action apply? */
    let action;
    try {
      if (await this.insertRow(KIND_ACTION, OUT_PREVENTED, false)) action = OUT_PREVENTED;
      else {
        const row = await this.readRow(KIND_ACTION);
        action = row === null ? 0 : row.outcome;
      }
    } catch (e) {
      return this.dbError('recording the prevented action failed', e);
    }
    if (action === OUT_SUCCESS) return this.runFn(fn, kind);
    /* Never ran (now prevented), or failed for certain: nothing to undo. */
    try {
      await this.c.query(Q.nulled, [this.s.sagaId, this.s.name]);
      await this.cmd('COMMIT');
    } catch (e) {
      return this.dbError('recording the null compensation failed', e);
    }
    return { verdict: VERDICTS.NULL_COMPENSATION, outcome: 'success', result: Buffer.alloc(0), error: '' };
  }

  /* Runs fn after the SAVEPOINT and records what it answered. */
  async runFn(fn, kind) {
    try {
      if (typeof this.c.getTransactionStatus !== 'function') {
        const r = await this.c.query('SELECT txid_current_if_assigned()::text AS x');
        this.xid = r.rows[0].x;
      }
      await this.cmd('SAVEPOINT saga_barrier');
    } catch (e) {
      return this.dbError('SAVEPOINT failed', e);
    }
    let outcome, result = null, error = '', cause;
    try {
      const v = await fn(this.c, this.step);
      if (v === undefined || v === null) result = Buffer.alloc(0);
      else if (Buffer.isBuffer(v)) result = v;
      else if (v instanceof Uint8Array) result = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      if (result !== null) outcome = 'success';
      else {
        outcome = 'retry';
        error = `barrier: the handler returned ${describe(v)}, not a Buffer, Uint8Array or nothing`;
        cause = new TypeError(error);
      }
    } catch (e) {
      cause = e;
      outcome = isBusinessFailure(e) ? 'fail' : 'retry';
      error = errText(e);
    }
    const ts = await txStatus(this.c, this.xid);
    if (ts !== 'T' && ts !== 'E') {
      /* fn committed or rolled back by itself: the record and the effect
       * can no longer go together. */
      if (ts === 'I') return this.dbError('the handler ended the transaction', 'not allowed');
      return this.dbError('the connection broke', cause !== undefined ? cause : 'unknown');
    }
    if (outcome === 'fail' && kind === KIND_ACTION) {
      /* A business failure applies nothing but is remembered. */
      try {
        await this.cmd('ROLLBACK TO SAVEPOINT saga_barrier');
        await this.record(kind, OUT_FAILED, Buffer.alloc(0), error); /* '' as barrier.c stores */
        await this.cmd('COMMIT');
      } catch (e) {
        return this.dbError('recording the failure failed', e);
      }
      return { verdict: VERDICTS.RAN, outcome, result: null, error, cause };
    }
    if (outcome !== 'success') {
      /* Retryable (or a compensation that failed): nothing happened. */
      await this.rollback();
      return { verdict: VERDICTS.RAN, outcome, result: null, error, cause };
    }
    if (ts === 'E')
      return this.dbError('the handler replied success but its transaction failed', 'an earlier statement failed');
    try {
      await this.record(kind, OUT_SUCCESS, result, '');
      await this.cmd('COMMIT');
    } catch (e) {
      return this.dbError('recording the outcome failed', e);
    }
    return { verdict: VERDICTS.RAN, outcome, result, error: '' };
  }
}

/* Steps given the same Client run one after another. */
const queues = new WeakMap();

function serialized(client, job) {
  const prev = queues.get(client) || Promise.resolve();
  const p = prev.then(job, job);
  const tail = p.then(
    () => undefined,
    () => undefined
  );
  queues.set(client, tail);
  return p;
}

/**
 * Runs fn(client, step) for step exactly once per (saga, step, kind).
 * Resolves to {verdict, outcome, result, error, cause}; rejects only for
 * bad arguments (TypeError).
 */
async function run(db, step, fn) {
  const s = stepOf(step);
  if (typeof fn !== 'function') throw new TypeError('barrier: fn must be a function (client, step) => result');
  if (isPool(db)) {
    let c;
    try {
      c = await db.connect();
    } catch (e) {
      return {
        verdict: VERDICTS.DB_ERROR,
        outcome: 'retry',
        result: null,
        error: `barrier: no database connection for saga ${s.sagaId} step ${s.name}: ${errText(e)}`,
        cause: e,
      };
    }
    const r = new Run(c, s, step);
    let out;
    try {
      out = await r.main(fn);
    } finally {
      c.release(r.broken ? new Error('barrier: connection broken') : undefined);
    }
    return out;
  }
  if (!isClient(db)) throw new TypeError('barrier: db must be a pg Client, PoolClient or Pool');
  return serialized(db, () => new Run(db, s, step).main(fn));
}

/**
 * A participant handler on the barrier: (step) => Promise<Buffer>. Resolves
 * to the result on success (also a replayed one); throws a BusinessFailure
 * for a business failure (also a replayed or refused one), and the handler's
 * own error, or a RetryableError, for anything to retry.
 */
function handler(db, fn, opts) {
  const BF = (opts && opts.BusinessFailure) || BusinessFailure;
  const RE = (opts && opts.RetryableError) || RetryableError;
  if (typeof fn !== 'function') throw new TypeError('barrier: fn must be a function (client, step) => result');
  if (!isPool(db) && !isClient(db)) throw new TypeError('barrier: db must be a pg Client, PoolClient or Pool');
  return async function barrierHandler(step) {
    const r = await run(db, step, fn);
    if (r.outcome === 'success') return r.result;
    if (r.outcome === 'fail') {
      if (isBusinessFailure(r.cause)) throw r.cause;
      throw new BF(r.error);
    }
    if (r.cause instanceof Error && !isBusinessFailure(r.cause) && r.verdict === VERDICTS.RAN) throw r.cause;
    throw new RE(r.error, r.cause !== undefined ? { cause: r.cause } : undefined);
  };
}

/**
 * Creates the saga_barrier table and its index if they do not exist, under
 * the advisory lock saga_barrier_migrate() takes. Rejects with PostgreSQL's
 * error.
 */
async function migrate(db) {
  if (isPool(db)) {
    const c = await db.connect();
    let broken;
    try {
      await migrate(c);
    } catch (e) {
      broken = typeof e.code !== 'string' ? e : undefined;
      throw e;
    } finally {
      c.release(broken);
    }
    return;
  }
  if (!isClient(db)) throw new TypeError('barrier: db must be a pg Client, PoolClient or Pool');
  return serialized(db, async () => {
    try {
      await db.query(
        `BEGIN; SET LOCAL client_min_messages = warning; SELECT pg_advisory_xact_lock(${LOCK_KEY}); ${SQL}; COMMIT`
      );
    } catch (e) {
      try {
        await db.query('ROLLBACK');
      } catch {
        /* broken connection */
      }
      e.message = `barrier: migrate: ${e.message}`;
      throw e;
    }
  });
}

module.exports = {
  run,
  handler,
  migrate,
  BusinessFailure,
  RetryableError,
  isBusinessFailure,
  VERDICTS,
  SQL,
  LOCK_KEY,
  STATEMENTS: Object.freeze({ ...Q }),
};
