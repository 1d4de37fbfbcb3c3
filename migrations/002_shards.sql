-- 002_shards: several sagads on one database.
--
-- Sagas are spread over 64 shards by their id (the low 6 bits of the id's
-- last byte, which is random in a UUIDv7). A sagad owns a shard through a
-- lease row; `epoch` grows on every change of owner. Every batch a sagad
-- commits first locks the rows of the shards it writes (FOR SHARE) and
-- checks they are still its own at the epochs it knows: a sagad paused past its lease and taken over commits nothing, and
-- a takeover (which updates the row) waits for a batch in progress to end,
-- so the new owner loads the last state the old one committed.
-- See docs/SCALING.md.

-- Every running sagad: its lease as an instance (to count how many share
-- the shards) and where clients reach it.
CREATE TABLE saga_instances (
    id          text        PRIMARY KEY,
    url         text        NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE TABLE saga_shards (
    shard       integer     PRIMARY KEY CHECK (shard >= 0 AND shard < 64),
    owner       text,                         -- saga_instances.id; NULL = free
    epoch       bigint      NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO saga_shards (shard) SELECT g FROM generate_series(0, 63) g;

-- A saga's shard, derived from its id (so it can never disagree with it).
ALTER TABLE sagas ADD COLUMN shard smallint
    GENERATED ALWAYS AS ((get_byte(uuid_send(id), 15) & 63)::smallint) STORED;
-- A sagad taking a shard over reads that shard's unfinished sagas; it
-- replaces the index recovery used to read them all.
CREATE INDEX sagas_active_shard ON sagas (shard, created_at) WHERE state IN (1, 2);
DROP INDEX sagas_active;

-- (The fence itself is one statement sagad sends at the head of every
-- batch, server/store.c FENCE_SQL: it locks the shards' rows FOR SHARE
-- and divides by zero unless all of them are still this instance's at the
-- epochs it knows. A plain statement costs less than a function call.)

-- Commands for a saga held by another sagad (cancel, operator actions),
-- forwarded through the database: the sagad that got the request writes
-- it here and NOTIFYs saga_commands; the one holding the saga's shard runs
-- it, writes the response and NOTIFYs saga_command_done.
CREATE TABLE saga_commands (
    id          bigserial   PRIMARY KEY,
    saga_id     uuid        NOT NULL,
    shard       smallint    NOT NULL,
    request     bytea       NOT NULL,  -- sagawire.Request
    response    bytea,                 -- sagawire.Response, once done
    created_at  timestamptz NOT NULL DEFAULT now(),
    taken_by    text,                  -- the instance running it
    taken_at    timestamptz,
    done_at     timestamptz
);
CREATE INDEX saga_commands_pending ON saga_commands (shard, id) WHERE done_at IS NULL;
