// saga-barrier: exactly-once step effects for Node.js participants over pg.
// The JavaScript twin of libsaga's saga_barrier.h, on the same table.

/** What the barrier needs of a pg.Client or pg.PoolClient. */
export interface BarrierClient {
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
  /** pg >= 8.16: 'I' idle, 'T' in a transaction, 'E' in a failed one. */
  getTransactionStatus?(): string | null;
}

/** What the barrier needs of a pg.Pool: each step gets a client of its own. */
export interface BarrierPool {
  connect(): Promise<BarrierClient & { release(err?: Error | boolean): void }>;
  query(text: string, values?: unknown[]): Promise<unknown>;
  readonly idleCount: number;
}

export type BarrierDb = BarrierClient | BarrierPool;

/** The fields of a step the barrier reads; the participant API's step object fits. */
export interface BarrierStep {
  /** The saga's id: UUID text, or its 16 bytes. */
  sagaId: string | Uint8Array;
  /** The step's name (its action rpc), also for a compensation. */
  step: string;
  kind: 'action' | 'compensation';
  idempotencyKey?: string;
  [more: string]: unknown;
}

/** What run() did: the names libsaga's saga_barrier_result_name() gives. */
export type Verdict = 'ran' | 'duplicate' | 'null compensation' | 'refused' | 'database error';

export const VERDICTS: Readonly<{
  RAN: 'ran';
  DUPLICATE: 'duplicate';
  NULL_COMPENSATION: 'null compensation';
  REFUSED: 'refused';
  DB_ERROR: 'database error';
}>;

export interface BarrierOutcome {
  verdict: Verdict;
  /** What to answer sagad: success (result), fail (business failure: compensate), retry. */
  outcome: 'success' | 'fail' | 'retry';
  /** On success the result bytes (empty when none); otherwise null. */
  result: Buffer | null;
  /** On fail or retry, why; '' on success. */
  error: string;
  /** The error the handler threw, or the database's. */
  cause?: unknown;
}

/**
 * The business part of a handler, run inside the barrier's transaction on
 * `client`. Return the result (Buffer, Uint8Array, or nothing) for success;
 * throw a BusinessFailure (any error named 'BusinessFailure') for a business
 * failure; anything else thrown is retried. Use only `client` for the
 * writes that must be exactly-once; never COMMIT or ROLLBACK.
 */
export type BarrierFn<S extends BarrierStep = BarrierStep, C = any> = (
  client: C,
  step: S
) => Promise<Buffer | Uint8Array | null | undefined | void> | Buffer | Uint8Array | null | undefined | void;

/**
 * Runs fn for step exactly once per (saga, step, kind). Resolves in every
 * case with what to answer; rejects only for bad arguments (TypeError).
 */
export function run<S extends BarrierStep>(db: BarrierDb, step: S, fn: BarrierFn<S>): Promise<BarrierOutcome>;

export interface HandlerOptions {
  /** Error classes to throw (the participant API's), instead of this module's. */
  BusinessFailure?: new (message: string) => Error;
  RetryableError?: new (message: string, options?: { cause?: unknown }) => Error;
}

/**
 * A participant handler on the barrier: resolves to the result bytes,
 * throws a BusinessFailure for a business failure (first, replayed or
 * refused), and the handler's own error or a RetryableError to retry.
 */
export function handler<S extends BarrierStep>(
  db: BarrierDb,
  fn: BarrierFn<S>,
  opts?: HandlerOptions
): (step: S) => Promise<Buffer>;

/** Creates the table and its index if missing (safe for replicas starting at once, C ones too). */
export function migrate(db: BarrierDb): Promise<void>;

export class BusinessFailure extends Error {
  constructor(message?: string, options?: { cause?: unknown });
  name: 'BusinessFailure';
}

export class RetryableError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
  name: 'RetryableError';
}

export function isBusinessFailure(e: unknown): boolean;

/** client-lib/sql/saga_barrier.sql, byte for byte. */
export const SQL: string;
/** The advisory lock key migrate() takes, as a decimal string. */
export const LOCK_KEY: string;
/** The statements the barrier runs, word for word barrier.c's. */
export const STATEMENTS: Readonly<{ insert: string; read: string; record: string; nulled: string }>;
