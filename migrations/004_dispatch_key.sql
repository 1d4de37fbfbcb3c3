-- 004_dispatch_key: the key that makes participants' reports unforgeable.
--
-- Every Dispatch carries a token, HMAC-SHA256(key, saga id || step index ||
-- kind || attempt) cut to 16 bytes, and sagad accepts a result (outcome or
-- heartbeat) only with the token of the attempt it is about. The key is one
-- row, shared by every sagad on this database, so an instance that restarts
-- or takes a shard over checks the tokens of dispatches another made. The
-- first sagad to start after this migration makes the key (32 random bytes,
-- INSERT ... ON CONFLICT DO NOTHING, so two starting at once agree); every
-- one reads it at start. Whoever can read this table can forge reports:
-- it is as secret as the database itself. See docs/SECURITY.md.
CREATE TABLE saga_dispatch_key (
    id          integer     PRIMARY KEY CHECK (id = 1),
    key         bytea       NOT NULL CHECK (length(key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
