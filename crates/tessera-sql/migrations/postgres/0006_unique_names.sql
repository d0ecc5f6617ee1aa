-- Unique names (PostgreSQL). The `app_name` column now holds the key of a token's unique name
-- (tessera_store::names::name_key): an application token's name lowercased, so names are
-- unique ignoring case, and an auth token's `auth:<owner length in bytes>:<owner>:<name
-- lowercased>`, so auth names are unique per owner ignoring case (ASCII case, as the library
-- folds it: `translate`, not the locale's `lower`). The existing partial unique index (tokens
-- in force) enforces both. Rows written before are given their key unless another token in
-- force already spells the same key (such duplicates, made before the rule, are left alone).
UPDATE tokens SET app_name = lower(app_name)
WHERE kind = 'application' AND app_name IS NOT NULL AND app_name <> lower(app_name)
  AND NOT EXISTS (
    SELECT 1 FROM tokens o
    WHERE o.id <> tokens.id AND o.kind = 'application' AND o.app_name IS NOT NULL
      AND lower(o.app_name) = lower(tokens.app_name)
      AND o.state NOT IN ('superseded', 'rotated_out', 'revoked', 'deleted'));

UPDATE tokens
SET app_name = 'auth:' || octet_length(owner) || ':' || owner || ':'
    || translate((data::jsonb) ->> 'name', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
                 'abcdefghijklmnopqrstuvwxyz')
WHERE kind = 'auth' AND app_name IS NULL AND owner IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM tokens o
    WHERE o.id <> tokens.id AND o.kind = 'auth' AND o.owner = tokens.owner
      AND translate((o.data::jsonb) ->> 'name', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
                    'abcdefghijklmnopqrstuvwxyz')
        = translate((tokens.data::jsonb) ->> 'name', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
                    'abcdefghijklmnopqrstuvwxyz')
      AND o.state NOT IN ('superseded', 'rotated_out', 'revoked', 'deleted'));
