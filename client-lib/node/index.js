'use strict';
// libsaga for Node.js: a participant worker and a client of sagad, over
// libsaga's C core (a Node-API addon: src/). See index.d.ts for the API and
// README.md ("Participants in Node.js") for an example.

const path = require('node:path');

function loadAddon() {
  // SAGA_NODE_ADDON: the in-tree build (meson's tests), or any other build.
  const candidates = [
    process.env.SAGA_NODE_ADDON,
    path.join(__dirname, 'build', 'Release', 'saga_node.node'),
    path.join(__dirname, 'build', 'Debug', 'saga_node.node'),
  ].filter(Boolean);
  let firstError;
  for (const file of candidates) {
    try {
      return require(file);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND' || file === process.env.SAGA_NODE_ADDON) throw e;
      firstError = firstError || e;
    }
  }
  throw new Error(
    'libsaga: the native addon is not built (run `npm install` in ' + __dirname +
      ', which needs libsaga installed and found by pkg-config, or set SAGA_NODE_ADDON)',
    { cause: firstError });
}

const native = loadAddon();

// ---- errors --------------------------------------------------------------

// libsaga's error codes (saga_base.h): stable, also sagactl's exit codes.
const CODES = {
  1: ['SAGA_EINVAL', 'SagaInvalidError'],
  2: ['SAGA_ENOMEM', 'SagaNoMemoryError'],
  3: ['SAGA_ENOTFOUND', 'SagaNotFoundError'],
  4: ['SAGA_EEXIST', 'SagaExistsError'],
  5: ['SAGA_ETIMEDOUT', 'SagaTimeoutError'],
  6: ['SAGA_ECONN', 'SagaConnectionError'],
  7: ['SAGA_EPROTO', 'SagaProtocolError'],
  8: ['SAGA_ETOOBIG', 'SagaTooBigError'],
  9: ['SAGA_EDEFINITION', 'SagaDefinitionError'],
  10: ['SAGA_ESTATE', 'SagaStateError'],
  11: ['SAGA_EDB', 'SagaDatabaseError'],
  12: ['SAGA_ECLOSED', 'SagaClosedError'],
  13: ['SAGA_EINTERNAL', 'SagaInternalError'],
  14: ['SAGA_EBUSY', 'SagaBusyError'],
  15: ['SAGA_EUNSUPPORTED', 'SagaUnsupportedError'],
  16: ['SAGA_EAUTH', 'SagaAuthError'],
  17: ['SAGA_EPERM', 'SagaPermissionError'],
};

/** An error from libsaga or sagad: code is libsaga's (saga_err), codeName its name. */
class SagaError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.codeName = CODES[code] ? CODES[code][0] : 'SAGA_E' + code;
    this.description = native.strerror(code);
  }
}
Object.defineProperty(SagaError.prototype, 'name', { value: 'SagaError', writable: true });

const errorClasses = { SagaError };
const byCode = {};
for (const [code, [, className]] of Object.entries(CODES)) {
  const cls = { [className]: class extends SagaError {} }[className];
  Object.defineProperty(cls.prototype, 'name', { value: className, writable: true });
  errorClasses[className] = cls;
  byCode[code] = cls;
}

native.setErrorFactory((code, message) => {
  const Cls = byCode[code] || SagaError;
  return new Cls(code, message);
});

/** Thrown by a handler: the attempt failed for now; sagad retries it with backoff. */
class RetryableError extends Error {}
Object.defineProperty(RetryableError.prototype, 'name', { value: 'RetryableError', writable: true });

/** Thrown by an action handler: a business failure; no retry, the saga compensates. */
class BusinessFailure extends Error {}
Object.defineProperty(BusinessFailure.prototype, 'name', { value: 'BusinessFailure', writable: true });

// ---- the participant -------------------------------------------------------

const OUT_SUCCESS = 0;
const OUT_RETRY = 1;
const OUT_FAIL = 2;

function describe(v) {
  if (v === null) return 'null';
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 60 ? v.slice(0, 60) + '...' : v)})`;
  if (typeof v === 'object') return `an object (${Object.prototype.toString.call(v)})`;
  return `${typeof v === 'undefined' ? 'undefined' : 'a ' + typeof v} (${String(v)})`;
}

function errorText(e) {
  if (e instanceof Error) return e.message || e.name;
  return `the handler threw a non-Error value: ${describe(e)}`;
}

/**
 * A participant: serves the steps of the sagas that name `participant`.
 * Handlers run on the event loop; at most `capacity` run at once.
 */
class Worker {
  constructor(options) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('new Worker({url, participant, capacity}) needs an options object');
    }
    const { url, participant, capacity = 16, credential, tls, instance, maxMessage } = options;
    if (typeof participant !== 'string' || participant === '') {
      throw new TypeError('participant must be a non-empty string');
    }
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 4096) {
      throw new RangeError('capacity must be an integer from 1 to 4096');
    }
    this.participant = participant;
    this.capacity = capacity;
    this._handlers = new Map(); // "action:Rpc" -> fn
    this._native = new native.NativeWorker(url, participant, {
      capacity, credential, tls, instance, maxMessage,
    });
    this._running = null;
    this._inFlight = 0;
    this._onError = options.onError || null;
    const levels = ['error', 'warn', 'info', 'debug'];
    const { log, logLevel = 'info' } = options;
    if (log !== undefined && typeof log !== 'function') throw new TypeError('log must be a function');
    if (!levels.includes(logLevel)) throw new TypeError(`logLevel must be one of ${levels.join(', ')}`);
    this._log = log || null;
    this._logLevel = levels.indexOf(logLevel);
  }

  /**
   * Serves rpc `rpcName` with `fn(step)`. kind: 'action' (default) or
   * 'compensation'; a compensation's rpc is its own name (the step's
   * `compensation` option).
   */
  handle(rpcName, fn, { kind = 'action' } = {}) {
    if (typeof rpcName !== 'string' || rpcName === '') {
      throw new TypeError('handle(rpcName, fn): rpcName must be a non-empty string');
    }
    if (typeof fn !== 'function') throw new TypeError(`handle(${rpcName}, fn): fn must be a function`);
    if (kind !== 'action' && kind !== 'compensation') {
      throw new TypeError("kind must be 'action' or 'compensation'");
    }
    if (this._running) throw new errorClasses.SagaStateError(10, 'handlers are added before run()');
    this._native.handle(kind, rpcName);
    this._handlers.set(kind + ':' + rpcName, fn);
    return this;
  }

  /** Serves steps until close(); rejects on a fatal error (e.g. a refused credential). */
  run() {
    if (this._running) return this._running;
    if (this._handlers.size === 0) {
      throw new errorClasses.SagaStateError(10, 'a Worker needs at least one handler before run()');
    }
    const log = this._log && ((level, line) => {
      try {
        this._log(level, line);
      } catch {
        // a broken log function must not break the worker
      }
    });
    this._running = this._native.run((raw, job) => this._dispatch(raw, job), log, this._logLevel);
    return this._running;
  }

  /** Stops polling, lets the steps in flight finish and report, then resolves. */
  async close() {
    if (!this._running) return;
    this._native.stop();
    try {
      await this._running;
    } catch {
      // run()'s own promise reports a fatal error.
    }
  }

  /** Handlers running now. */
  get inFlight() {
    return this._inFlight;
  }

  _report(err) {
    if (this._onError) {
      try {
        this._onError(err);
      } catch {
        // a broken onError must not break the worker
      }
    } else {
      process.emitWarning(err.message, { type: 'SagaWorkerWarning' });
    }
  }

  _dispatch(raw, job) {
    const fn = this._handlers.get(raw.kind + ':' + raw.rpc);
    const started = Date.now();
    const step = {
      sagaId: raw.sagaId,
      definition: raw.definition,
      version: raw.version,
      step: raw.step,
      rpc: raw.rpc,
      kind: raw.kind,
      attempt: raw.attempt,
      idempotencyKey: raw.idempotencyKey,
      timeoutMs: raw.timeoutMs,
      deadline: new Date(started + raw.timeoutMs),
      input: raw.input,
      results: raw.results,
      traceparent: raw.traceparent,
      result(name) {
        return Object.prototype.hasOwnProperty.call(raw.results, name) ? raw.results[name] : undefined;
      },
      heartbeat() {
        const sent = native.heartbeat(job);
        if (sent) step.deadline = new Date(Date.now() + raw.timeoutMs);
        return sent;
      },
    };
    let settled = false;
    const settle = (outcome, payload) => {
      if (settled) return;
      settled = true;
      this._inFlight--;
      if (!native.settle(job, outcome, payload)) {
        this._report(new Error(
          `saga ${step.sagaId} step ${step.step}: the ${step.kind} handler ${step.rpc} settled after ` +
            'it was given up on (its timeout passed); the outcome was dropped'));
      }
      job = null; // the handle may be collected now
    };
    this._inFlight++;
    let p;
    try {
      p = Promise.resolve(fn(step));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (value) => {
        if (value === undefined || value === null) return settle(OUT_SUCCESS, undefined);
        if (value instanceof Uint8Array) return settle(OUT_SUCCESS, value);
        const msg = `the ${step.kind} handler ${step.rpc} returned ${describe(value)}, ` +
          'not a Buffer, a Uint8Array or undefined';
        this._report(new TypeError(`saga ${step.sagaId} step ${step.step}: ${msg}`));
        settle(OUT_RETRY, msg);
      },
      (e) => {
        if (e instanceof BusinessFailure) return settle(OUT_FAIL, errorText(e));
        if (!(e instanceof RetryableError)) {
          this._report(new Error(`saga ${step.sagaId} step ${step.step}: the ${step.kind} handler ` +
            `${step.rpc} failed; retrying: ${errorText(e)}`));
        }
        settle(OUT_RETRY, errorText(e));
      });
  }
}

// ---- the client ----------------------------------------------------------------

function bytes(input, what) {
  if (input === undefined || input === null) return undefined;
  if (input instanceof Uint8Array) return input;
  throw new TypeError(`${what} must be a Buffer or a Uint8Array`);
}

// JSON.stringify for a message given as an object: BigInts as decimal
// strings (how the proto3 JSON mapping takes 64-bit integers) and
// Buffers/Uint8Arrays as base64 (how it takes bytes fields). The original
// value is this[key]: a Buffer's toJSON has run by the time v arrives.
function jsonReplacer(key, v) {
  const orig = this[key];
  if (orig instanceof Uint8Array) return Buffer.from(orig.buffer, orig.byteOffset, orig.byteLength).toString('base64');
  if (typeof v === 'bigint') return v.toString();
  return v;
}

/**
 * A start's input as the addon takes it: [bytes, options]. Bytes pass as
 * they are; an object (the message as JSON) or a string (JSON text) goes
 * as options.json, which libsaga encodes with the definition's input type
 * (saga_client_encode_json), as sagactl's --input does.
 */
function startInput(input, options) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('options must be an object');
  }
  if (input === undefined || input === null || input instanceof Uint8Array) {
    const { json, ...rest } = options; // json is not an option of its own
    return [input === null ? undefined : input, rest];
  }
  let json;
  if (typeof input === 'string') {
    json = input;
  } else if (typeof input === 'object' && !ArrayBuffer.isView(input) && !(input instanceof ArrayBuffer)) {
    try {
      json = JSON.stringify(input, jsonReplacer);
    } catch (e) {
      throw new TypeError(`input: the object cannot be written as JSON: ${e.message}`);
    }
  } else {
    throw new TypeError('input must be a Buffer or a Uint8Array (the serialized input message), ' +
      'an object (the message as JSON) or a string (JSON text)');
  }
  return [undefined, { ...options, json }];
}

/**
 * A client of sagad: every call returns a Promise (bad arguments reject it
 * too) and runs off the event loop, on libuv's thread pool.
 */
class Client {
  constructor(options = {}) {
    const { url, timeoutMs, credential, tls } = options;
    this._native = new native.NativeClient(url, { timeoutMs, credential, tls });
    this._pending = new Set();
    this._closed = false;
  }

  _call(method, ...args) {
    const p = this._native[method](...args);
    this._pending.add(p);
    const done = () => this._pending.delete(p);
    p.then(done, done);
    return p;
  }

  /** Registers every saga in a serialized FileDescriptorSet (protoc --include_imports --descriptor_set_out). */
  async register(descriptorSet, { force = false } = {}) {
    return this._call('register', bytes(descriptorSet, 'descriptorSet') || Buffer.alloc(0), !!force);
  }

  /**
   * Starts a saga; resolves {sagaId, existing}. input: the serialized input
   * message (Buffer/Uint8Array), or the message as JSON (an object, or a
   * string of JSON text), encoded with the definition's input type.
   */
  async start(definition, input, options = {}) {
    return this._call('start', definition, ...startInput(input, options));
  }

  /** Starts a saga and waits for its end (options.timeoutMs, default: no limit); resolves {sagaId, state, existing}. */
  async run(definition, input, options = {}) {
    const [b, o] = startInput(input, options);
    return this._call('run', definition, b, { timeoutMs: -1, ...o });
  }

  /** Full status of one saga. */
  async get(sagaId, { reveal = false } = {}) {
    return this._call('get', sagaId, !!reveal);
  }

  /** Waits until the saga is final (options.timeoutMs, default: no limit); resolves its status. */
  async wait(sagaId, { timeoutMs = -1 } = {}) {
    return this._call('wait', sagaId, { timeoutMs });
  }

  /** Lists sagas, newest first. */
  async list(filter = {}) {
    return this._call('list', filter);
  }

  /** Cancels a running saga; resolves its state after. */
  async cancel(sagaId, reason) {
    return this._call('cancel', sagaId, reason);
  }

  /** Retries a step now (operator); resolves the saga's state after. */
  async retry(sagaId, step, reason) {
    return this._call('retryStep', sagaId, step, reason);
  }

  /** Marks a step done by hand (operator; reason required); resolves the saga's state after. */
  async skip(sagaId, step, reason) {
    return this._call('skipStep', sagaId, step, reason);
  }

  /** Stops a saga without compensating (operator; reason required); resolves 'terminated'. */
  async terminate(sagaId, reason) {
    return this._call('terminate', sagaId, reason);
  }

  /**
   * Forces a step's outcome (operator; reason required): 'succeeded' with
   * options.result (Buffer, a serialized message of the step's output type),
   * or 'compensated' (undone by hand). Resolves the saga's state after.
   */
  async force(sagaId, step, outcome, options = {}) {
    if (outcome === 'succeeded') {
      return this._call('forceSucceeded', sagaId, step, options.result, options.reason);
    }
    if (outcome === 'compensated') {
      if (options.result !== undefined) {
        throw new RangeError('force: a compensation has no result');
      }
      return this._call('forceCompensated', sagaId, step, options.reason);
    }
    throw new RangeError("force: outcome must be 'succeeded' or 'compensated'");
  }

  /** Starts a finished saga again with its input (operator); resolves {sagaId} of the new one. */
  async rerun(sagaId, options = {}) {
    return this._call('rerun', sagaId, options);
  }

  /**
   * Applies action ('cancel', 'terminate', 'retry', 'rerun') to one page of
   * the sagas matching filter (as list; limit at most 100); resolves
   * {items, nextPageToken, done, skipped, applicable}.
   */
  async batch(filter, action, options = {}) {
    return this._call('batch', filter || {}, action, options);
  }

  /** Waits for the calls in flight, then frees the connections. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    await Promise.allSettled([...this._pending]);
    this._native.close();
  }
}

module.exports = {
  Worker,
  Client,
  RetryableError,
  BusinessFailure,
  ...errorClasses,
  codes: Object.fromEntries(Object.entries(CODES).map(([c, [n]]) => [n, Number(c)])),
  libsagaVersion: native.libsagaVersion,
};
