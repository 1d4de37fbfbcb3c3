-- 003_principals: who may call sagad when auth is on (docs/SECURITY.md).
--
-- A principal is a name with a role and a credential "<id>.<secret>": id
-- is 16 random hex characters (the key of this table, sent in the clear as
-- part of every request), secret 32 random bytes in base64url, of which
-- only the SHA-256 is kept. A revoked principal keeps its row (revoked_at
-- set) so that its id is never reused and the list says who was revoked
-- when. `version` orders every change: sagad instances poll its maximum
-- to reload their cache of active principals.
CREATE TABLE saga_principals (
    id             text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    name           text        NOT NULL CHECK (name <> ''),
    role           text        NOT NULL
                               CHECK (role IN ('participant', 'client', 'operator', 'admin')),
    participant    text        NOT NULL DEFAULT '',
    definitions    text[]      NOT NULL DEFAULT '{}',
    secret_sha256  bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text        NOT NULL DEFAULT '',
    revoked_at     timestamptz,
    version        bigint      NOT NULL
);

-- A name is unique among the active principals; a revoked name may be
-- given again (to a new id). The bootstrap admin is created under this
-- index too, so two sagads starting at once cannot both create one.
CREATE UNIQUE INDEX saga_principals_active_name
    ON saga_principals (name) WHERE revoked_at IS NULL;

-- Grows on every insert and revoke (nextval in the same statement).
CREATE SEQUENCE saga_principals_version;
