-- 006_list_indexes: the web UI's list on a million sagas (docs/HTTP-API.md).
--
-- (This is the UI branch's migration 007 of issue 14; it is numbered 006
-- here because no 006 existed on its branch: renumber on merge.)
--
-- The list counts sagas per state, each up to a limit (ListRequest
-- .counts_limit): with a definition filter, "definition = $1 AND state = k"
-- must be an index range, not a walk of every saga in state k fetching
-- rows to compare their definition.
CREATE INDEX sagas_definition_state_created
    ON sagas (definition, state, created_at DESC, id DESC);
-- The error text filter is a substring search (not indexable without an
-- extension); only sagas with an error can match, and those are few (the
-- ones that compensated or parked): this index holds just them.
CREATE INDEX sagas_errors_state_created
    ON sagas (state, created_at DESC, id DESC) WHERE error <> '';
