-- 001_init: definitions and sagas.
--
-- A saga is one row. Its per-step state (attempts, timings, results, errors)
-- is one bytea column holding a sagawire.StoredSteps message, so that every
-- transition is a single-row write, and a step transition, which changes no
-- indexed column, is a HOT update (hence the fillfactor).
--
-- The row is also the saga's outbox: a step in state RUNNING or COMPENSATING
-- is a dispatch owed to a participant, written in the same transaction as
-- the transition that made it owed. After a crash, sagad re-sends every owed
-- dispatch of every active saga (see docs/ARCHITECTURE.md).

CREATE TABLE saga_definitions (
    name            text        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    fingerprint     bigint      NOT NULL,
    n_steps         integer     NOT NULL,
    descriptor_set  bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE sagas (
    id               uuid        PRIMARY KEY,
    definition       text        NOT NULL,
    version          integer     NOT NULL,
    state            smallint    NOT NULL,  -- sagawire.SagaState
    rev              integer     NOT NULL,  -- bumped by every transition; writes only move it forward
    idempotency_key  text,
    business_key     text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    input            bytea       NOT NULL,
    steps            bytea       NOT NULL,  -- sagawire.StoredSteps
    error            text        NOT NULL DEFAULT '',
    FOREIGN KEY (definition, version) REFERENCES saga_definitions (name, version)
) WITH (fillfactor = 70);

CREATE UNIQUE INDEX sagas_idempotency_key ON sagas (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX sagas_created ON sagas (created_at DESC, id DESC);
CREATE INDEX sagas_definition_created ON sagas (definition, created_at DESC, id DESC);
CREATE INDEX sagas_state_created ON sagas (state, created_at DESC, id DESC);
CREATE INDEX sagas_business_key ON sagas (business_key, created_at DESC)
    WHERE business_key IS NOT NULL;
-- Recovery reads every unfinished saga at start.
CREATE INDEX sagas_active ON sagas (created_at) WHERE state IN (1, 2);
