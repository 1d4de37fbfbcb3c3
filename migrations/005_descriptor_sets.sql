-- 005_descriptor_sets: a registered descriptor set is stored once.
--
-- A register stores the FileDescriptorSet every saga of it was defined by
-- (sagactl shows payloads with it). It used to be copied into each
-- definition's row: a set defining many sagas was stored once per saga.
-- Now it is kept once here, by its SHA-256, and a definition names it;
-- rows written before keep their own copy (descriptor_set), so readers
-- take whichever is there.
CREATE TABLE saga_descriptor_sets (
    digest          bytea       PRIMARY KEY CHECK (length(digest) = 32),
    descriptor_set  bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE saga_definitions
    ADD COLUMN set_digest bytea REFERENCES saga_descriptor_sets (digest),
    ALTER COLUMN descriptor_set DROP NOT NULL,
    ADD CONSTRAINT saga_definitions_one_set
        CHECK ((descriptor_set IS NULL) <> (set_digest IS NULL));
