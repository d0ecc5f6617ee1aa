-- The validation lookup reads a token's blocked addresses only when it has some (SQLite).
-- `blocked_ips` is how many addresses are blocked for the token: triggers on `token_usage`
-- recount it in the same statement (so the same transaction) as every insert, change or
-- removal of a blocked entry, so it is never stale. Most tokens have none, and the lookup then
-- skips its probe of `token_usage_blocked`. Existing tokens are counted here.
ALTER TABLE tokens ADD COLUMN blocked_ips INTEGER NOT NULL DEFAULT 0 CHECK (blocked_ips >= 0);

UPDATE tokens SET blocked_ips = (
    SELECT COUNT(*) FROM token_usage u
    WHERE u.token_id = tokens.id AND u.subject_kind = 'ip' AND u.blocked = 1)
WHERE id IN (SELECT token_id FROM token_usage WHERE subject_kind = 'ip' AND blocked = 1);

CREATE TRIGGER token_usage_blocked_insert AFTER INSERT ON token_usage
WHEN NEW.subject_kind = 'ip' AND NEW.blocked = 1
BEGIN
    UPDATE tokens SET blocked_ips = (
        SELECT COUNT(*) FROM token_usage u
        WHERE u.token_id = NEW.token_id AND u.subject_kind = 'ip' AND u.blocked = 1)
    WHERE id = NEW.token_id;
END;

-- Counting uses (`hits`, first and last seen) changes none of these columns: no recount then.
CREATE TRIGGER token_usage_blocked_update AFTER UPDATE OF token_id, subject_kind, blocked
ON token_usage
WHEN OLD.token_id IS NOT NEW.token_id OR OLD.subject_kind IS NOT NEW.subject_kind
  OR OLD.blocked IS NOT NEW.blocked
BEGIN
    UPDATE tokens SET blocked_ips = (
        SELECT COUNT(*) FROM token_usage u
        WHERE u.token_id = tokens.id AND u.subject_kind = 'ip' AND u.blocked = 1)
    WHERE id IN (OLD.token_id, NEW.token_id);
END;

CREATE TRIGGER token_usage_blocked_delete AFTER DELETE ON token_usage
WHEN OLD.subject_kind = 'ip' AND OLD.blocked = 1
BEGIN
    UPDATE tokens SET blocked_ips = (
        SELECT COUNT(*) FROM token_usage u
        WHERE u.token_id = OLD.token_id AND u.subject_kind = 'ip' AND u.blocked = 1)
    WHERE id = OLD.token_id;
END;
