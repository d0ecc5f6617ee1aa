-- Unique names (SQLite). The `app_name` column now holds the key of a token's unique name
-- (tessera_store::names::name_key): an application token's name lowercased, so names are
-- unique ignoring case, and an auth token's `auth:<owner length in bytes>:<owner>:<name
-- lowercased>`, so auth names are unique per owner ignoring case. The existing partial unique
-- index (tokens in force) enforces both. Rows written before keep working: each is given its
-- key unless another token in force already spells the same key (such duplicates, made before
-- the rule, keep their old value and are left alone).
UPDATE tokens SET app_name = lower(app_name)
WHERE kind = 'application' AND app_name IS NOT NULL AND app_name <> lower(app_name)
  AND NOT EXISTS (
    SELECT 1 FROM tokens o
    WHERE o.id <> tokens.id AND o.kind = 'application' AND o.app_name IS NOT NULL
      AND lower(o.app_name) = lower(tokens.app_name)
      AND o.state NOT IN ('superseded', 'rotated_out', 'revoked', 'deleted'));

UPDATE tokens
SET app_name = 'auth:' || length(CAST(owner AS BLOB)) || ':' || owner || ':'
    || lower(json_extract(data, '$.name'))
WHERE kind = 'auth' AND app_name IS NULL AND owner IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM tokens o
    WHERE o.id <> tokens.id AND o.kind = 'auth' AND o.owner = tokens.owner
      AND lower(json_extract(o.data, '$.name')) = lower(json_extract(tokens.data, '$.name'))
      AND o.state NOT IN ('superseded', 'rotated_out', 'revoked', 'deleted'));
