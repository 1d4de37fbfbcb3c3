-- saga_barrier: the table libsaga's barrier (saga_barrier.h) keeps in a
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
