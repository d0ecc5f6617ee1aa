-- Tell listening service instances when what a validation reads of a token changes (state,
-- secret, expiry, grace window, successor, kind data) or a token is removed, so their
-- validation caches drop it at once. The payload is "<schema> <token id>": ids only, never a
-- secret or digest. Last-use times and use counts are not announced: caches do not decide on
-- them, and they change on every use.
CREATE FUNCTION tessera_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_token_changes', TG_TABLE_SCHEMA || ' ' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
       OR OLD.digest IS DISTINCT FROM NEW.digest
       OR OLD.digest_key IS DISTINCT FROM NEW.digest_key
       OR OLD.hint IS DISTINCT FROM NEW.hint
       OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
       OR OLD.activated_at IS DISTINCT FROM NEW.activated_at
       OR OLD.grace_until IS DISTINCT FROM NEW.grace_until
       OR OLD.successor IS DISTINCT FROM NEW.successor
       OR OLD.max_uses IS DISTINCT FROM NEW.max_uses
       OR OLD.binding IS DISTINCT FROM NEW.binding
       OR OLD.bound_device IS DISTINCT FROM NEW.bound_device
       OR OLD.data IS DISTINCT FROM NEW.data)
    EXECUTE FUNCTION tessera_token_changed();

CREATE TRIGGER tokens_removed AFTER DELETE ON tokens FOR EACH ROW
    EXECUTE FUNCTION tessera_token_changed();
