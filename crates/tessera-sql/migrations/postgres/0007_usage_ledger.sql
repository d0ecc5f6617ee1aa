-- The usage ledger (PostgreSQL): ids of the batches of aggregated uses already written, so a
-- batch retried after its answer was lost (a commit whose reply never came) counts once. The
-- id is 128 random bits as 32 hexadecimal digits; `at` is when it was written (nanoseconds
-- since the Unix epoch), so old ids can be pruned.
CREATE TABLE usage_batches (
    id TEXT   NOT NULL PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE INDEX usage_batches_at ON usage_batches (at);

-- The block list of an application token travels with its record (validation reads both in
-- one lookup), so blocking or unblocking an address is a change listening instances' caches
-- must hear of, like a revocation. Counts and last-seen times are not announced.
CREATE FUNCTION tessera_token_block_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_token_changes', TG_TABLE_SCHEMA || ' ' || NEW.token_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER token_usage_blocked AFTER INSERT ON token_usage FOR EACH ROW
    WHEN (NEW.blocked)
    EXECUTE FUNCTION tessera_token_block_changed();

CREATE TRIGGER token_usage_unblocked AFTER UPDATE ON token_usage FOR EACH ROW
    WHEN (OLD.blocked IS DISTINCT FROM NEW.blocked)
    EXECUTE FUNCTION tessera_token_block_changed();
