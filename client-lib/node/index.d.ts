// Type declarations of libsaga for Node.js (index.js).

/// <reference types="node" />

export type SagaState = 'running' | 'compensating' | 'completed' | 'compensated' | 'failed' | 'terminated';
export type StepState =
  | 'pending' | 'running' | 'retry_wait' | 'succeeded' | 'failed'
  | 'compensating' | 'comp_retry_wait' | 'compensated' | 'comp_failed';

/** TLS for tls+tcp:// URLs (file paths; see docs/SECURITY.md). */
export interface TlsOptions {
  /** PEM file of the CAs sagad's certificate must be signed by (required for TLS). */
  ca: string;
  /** Client certificate and its key, for a sagad that wants client certificates. */
  cert?: string;
  key?: string;
  /** The name sagad's certificate must carry (default: each URL's host). */
  serverName?: string;
}

// ---- errors ----

/** An error from libsaga or sagad. */
export class SagaError extends Error {
  /** libsaga's error code (saga_err; also sagactl's exit code), e.g. 3. */
  readonly code: number;
  /** Its name, e.g. 'SAGA_ENOTFOUND'. */
  readonly codeName: string;
  /** libsaga's description of the code (saga_strerror). */
  readonly description: string;
  /** run() and wait() that timed out: the saga, which goes on. */
  sagaId?: string;
  /** run() that timed out: the saga's state then. */
  state?: SagaState;
  /** wait() that timed out: the last status seen. */
  info?: SagaInfo;
}
export class SagaInvalidError extends SagaError {}
export class SagaNoMemoryError extends SagaError {}
export class SagaNotFoundError extends SagaError {}
export class SagaExistsError extends SagaError {}
export class SagaTimeoutError extends SagaError {}
export class SagaConnectionError extends SagaError {}
export class SagaProtocolError extends SagaError {}
export class SagaTooBigError extends SagaError {}
export class SagaDefinitionError extends SagaError {}
export class SagaStateError extends SagaError {}
export class SagaDatabaseError extends SagaError {}
export class SagaClosedError extends SagaError {}
export class SagaInternalError extends SagaError {}
export class SagaBusyError extends SagaError {}
export class SagaUnsupportedError extends SagaError {}
export class SagaAuthError extends SagaError {}
export class SagaPermissionError extends SagaError {}

/** libsaga's error codes by name, e.g. codes.SAGA_ENOTFOUND === 3. */
export const codes: Readonly<Record<string, number>>;
/** The version of the libsaga the addon runs on. */
export const libsagaVersion: string;

/** Thrown by a handler: this attempt failed; sagad retries with backoff. */
export class RetryableError extends Error {}
/** Thrown by an action handler: a business failure; no retry, the saga compensates. */
export class BusinessFailure extends Error {}

// ---- the participant ----

/** One step attempt, as a handler sees it. */
export interface Step {
  readonly sagaId: string;
  /** The saga definition's name and version. */
  readonly definition: string;
  readonly version: number;
  /** The step's name (its action rpc). */
  readonly step: string;
  /** The rpc run: the action or the compensation. */
  readonly rpc: string;
  readonly kind: 'action' | 'compensation';
  /** 1-based attempt of this kind. */
  readonly attempt: number;
  /** Stable across attempts and redeliveries of this step and kind. */
  readonly idempotencyKey: string;
  /** sagad gives up on this attempt after this long (from the last heartbeat). */
  readonly timeoutMs: number;
  /** When sagad gives up on this attempt; moved by heartbeat(). */
  deadline: Date;
  /** The saga's input. */
  readonly input: Buffer;
  /** Results of the steps this one depends on; a compensation also gets its own step's. */
  readonly results: Readonly<Record<string, Buffer>>;
  /** results[name], or undefined. */
  result(name: string): Buffer | undefined;
  /** W3C trace context of this attempt ("" if none). */
  readonly traceparent: string;
  /** Tells sagad this attempt is alive, so its timeout starts again. False once settled or given up on. */
  heartbeat(): boolean;
}

/** Resolve with a Buffer (the step's result) or nothing; throw to fail the attempt. */
export type Handler = (step: Step) => Promise<Buffer | Uint8Array | undefined | void> | Buffer | Uint8Array | undefined | void;

export interface WorkerOptions {
  /** sagad's URL list, e.g. "tcp://127.0.0.1:7700" (default). */
  url?: string;
  /** The participant name the saga definitions use. */
  participant: string;
  /** Handlers running at once, at most (default 16, 1..4096). */
  capacity?: number;
  /** "<id>.<secret>", for a sagad with auth on. */
  credential?: string;
  tls?: TlsOptions;
  /** Replica name in sagad's logs (default "host:pid"). */
  instance?: string;
  /** Largest message accepted, in bytes. */
  maxMessage?: number;
  /** libsaga's log lines (connections, retries, handlers), on the event loop. Default: none. */
  log?: (level: 'error' | 'warn' | 'info' | 'debug', line: string) => void;
  /** The most detailed level passed to log (default 'info'). */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** A handler misbehaved (bad result, non-Error throw, late settle). Default: process.emitWarning. */
  onError?: (err: Error) => void;
}

export class Worker {
  constructor(options: WorkerOptions);
  readonly participant: string;
  readonly capacity: number;
  /** Handlers running now. */
  readonly inFlight: number;
  /** Serves an action rpc, or with {kind: 'compensation'} a compensation rpc. Before run(). */
  handle(rpcName: string, fn: Handler, options?: { kind?: 'action' | 'compensation' }): this;
  /** Serves until close(); rejects on a fatal error (e.g. a refused credential). */
  run(): Promise<void>;
  /** Stops taking steps, lets those in flight finish and report, then resolves. */
  close(): Promise<void>;
}

// ---- the client ----

export interface ClientOptions {
  url?: string;
  /** Per-call timeout in ms (default 10000). */
  timeoutMs?: number;
  credential?: string;
  tls?: TlsOptions;
}

export interface StartOptions {
  /** Same key, same saga, always. */
  idempotencyKey?: string;
  businessKey?: string;
  /** W3C trace context of the caller. */
  traceparent?: string;
  /** 0 = latest. */
  version?: number;
  /** 0 = the definition's. */
  deadlineMs?: number;
}

/**
 * A saga's input: the serialized input message (Buffer or Uint8Array), or
 * the message as JSON, which libsaga encodes with the input type of the
 * definition version started (the descriptor set sagad stores; one extra
 * round trip per start), by protobuf's proto3 JSON mapping: an object
 * (written with JSON.stringify; BigInt values go as decimal strings,
 * Buffer/Uint8Array values as base64 for bytes fields) or a string of JSON
 * text. JSON that does not fit the type rejects with SagaInvalidError whose
 * message names the type and the path of the value at fault, e.g.
 * "the input is not a valid shop.OrderRequest: quantity: expected an
 * integer, got \"two\"".
 */
export type SagaInput = Buffer | Uint8Array | string | { [field: string]: unknown };

export interface Registered { name: string; version: number; unchanged: boolean; steps: number; }

export interface StepInfo {
  name: string;
  participant: string;
  compensation: string;
  dependsOn: string[];
  state: StepState;
  attempts: number;
  compAttempts: number;
  startedUs: number;
  finishedUs: number;
  compStartedUs: number;
  compFinishedUs: number;
  nextAttemptUs: number;
  completionSeq: number;
  lastError: string;
  result: Buffer;
  queued: boolean;
}

export interface SagaEvent { atUs: number; type: string; step: string; attempt: number; detail: string; }

export interface SagaInfo {
  sagaId: string;
  definition: string;
  version: number;
  state: SagaState;
  idempotencyKey: string;
  businessKey: string;
  /** Unix microseconds. */
  createdUs: number;
  updatedUs: number;
  error: string;
  deadlineUs: number;
  input: Buffer;
  steps: StepInfo[];
  events: SagaEvent[];
  traceparent: string;
  redacted: string[];
  /** The saga this one reruns (Client.rerun); "" if none. */
  rerunOf: string;
  /** The sagas this one was rerun as, oldest first. */
  rerunAs: string[];
}

export interface SagaSummary {
  sagaId: string;
  definition: string;
  version: number;
  state: SagaState;
  businessKey: string;
  createdUs: number;
  updatedUs: number;
  error: string;
  stepsTotal: number;
  stepsDone: number;
  /** The saga this one reruns; "" if none. */
  rerunOf: string;
}

export interface ListFilter {
  states?: SagaState[];
  definition?: string;
  businessKey?: string;
  createdAfterUs?: number;
  createdBeforeUs?: number;
  /** Default 50, at most 1000. */
  limit?: number;
  pageToken?: string;
  version?: number;
  /** Also count the matching sagas per state. */
  counts?: boolean;
}

export interface SagaList {
  sagas: SagaSummary[];
  /** "" on the last page. */
  nextPageToken: string;
  stateCounts?: Record<SagaState, number>;
}

export type BatchAction = 'cancel' | 'terminate' | 'retry' | 'rerun';

export interface BatchOptions {
  /** retry: the step to retry in each saga. */
  step?: string;
  /** Into each saga's history; required to terminate. */
  reason?: string;
  /** Change nothing: say what would be tried, and count (applicable) every matching saga the action applies to. */
  dryRun?: boolean;
  /** rerun: on the latest version of the definition. */
  latestVersion?: boolean;
  /** rerun: each new saga's key is "<key>/<old saga id>". */
  idempotencyKey?: string;
}

export interface BatchItem {
  sagaId: string;
  /** The action was taken (dry run: would be tried). */
  done: boolean;
  /** Not done: the libsaga error code (10: not in a state the action applies to) and why. */
  code: number;
  why: string;
  /** Done: the state after (rerun: the new saga's). */
  state?: SagaState;
  /** rerun: the new saga; "" otherwise. */
  newSagaId: string;
}

export interface BatchResult {
  items: BatchItem[];
  /** "" when no more sagas match; else pass it as filter.pageToken. */
  nextPageToken: string;
  done: number;
  skipped: number;
  /** Dry run: matching sagas, over every page, whose state the action applies to. */
  applicable: number;
}

export class Client {
  constructor(options?: ClientOptions);
  /** Registers every saga in a FileDescriptorSet (protoc --include_imports --descriptor_set_out). */
  register(descriptorSet: Buffer | Uint8Array, options?: { force?: boolean }): Promise<Registered[]>;
  start(definition: string, input?: SagaInput, options?: StartOptions): Promise<{ sagaId: string; existing: boolean }>;
  /** Starts and waits for the end (timeoutMs: default no limit; on expiry SagaTimeoutError with sagaId and state). */
  run(definition: string, input?: SagaInput, options?: StartOptions & { timeoutMs?: number }):
    Promise<{ sagaId: string; existing: boolean; state: SagaState }>;
  get(sagaId: string, options?: { reveal?: boolean }): Promise<SagaInfo>;
  /** Until the saga is final (timeoutMs: default no limit; on expiry SagaTimeoutError with info). */
  wait(sagaId: string, options?: { timeoutMs?: number }): Promise<SagaInfo>;
  list(filter?: ListFilter): Promise<SagaList>;
  /** Resolves the saga's state after the cancel. */
  cancel(sagaId: string, reason?: string): Promise<SagaState>;
  /** Retries a step now (operator). */
  retry(sagaId: string, step: string, reason?: string): Promise<SagaState>;
  /** Marks a step done by hand (operator); reason required. */
  skip(sagaId: string, step: string, reason: string): Promise<SagaState>;
  /** Stops a running, compensating or parked saga without compensating (operator); reason required. */
  terminate(sagaId: string, reason: string): Promise<SagaState>;
  /** Forces a step succeeded (with a result) or compensated (undone by hand) (operator); reason required. */
  force(sagaId: string, step: string, outcome: 'succeeded' | 'compensated',
    options: { result?: Buffer | Uint8Array; reason: string }): Promise<SagaState>;
  /** Starts a finished saga again with its input, linked to it (operator). */
  rerun(sagaId: string, options?: { idempotencyKey?: string; latestVersion?: boolean }): Promise<{ sagaId: string }>;
  /** One page (at most 100) of an action on every saga matching filter (operator). */
  batch(filter: ListFilter, action: BatchAction, options?: BatchOptions): Promise<BatchResult>;
  /** Waits for the calls in flight, then frees the connections. */
  close(): Promise<void>;
}
