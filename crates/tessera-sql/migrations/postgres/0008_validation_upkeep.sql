-- What validations cost the server under load: the lookup of each record, and the usage
-- ledger's batched writes (a token's last use and its usage counts, every interval).
--
-- HOT updates for the ledger's writes. The ledger moves `tokens.last_used_at` and a usage
-- row's counts and times once per interval for every token used; none of those columns is
-- indexed, so each update can stay on its page as a heap-only tuple (no new entry in any of
-- the table's indexes, and lookups keep finding one index entry per record) when the page
-- has room. Full pages (fillfactor 100, the default) turned most of them into ordinary
-- updates (a third of them HOT on `tokens`, 2 % on `token_usage`, measured under the
-- 64-task benchmark): a new entry in every index of `tokens` (eight) and of `token_usage` for
-- each. Half a page free lets every row of a page move once before the page is pruned (70 %
-- gave two thirds HOT). Rows written from now on leave that room; existing pages gain it as
-- they are rewritten (`VACUUM FULL tokens, token_usage` applies it at once, under an
-- exclusive lock).
ALTER TABLE tokens SET (fillfactor = 50);
ALTER TABLE token_usage SET (fillfactor = 50);

-- The block-list probe of every lookup by digest reads this index, not the usage table's
-- key: blocked addresses are few, so the probe of a token without any touches one or two
-- index pages instead of descending the (token, kind, subject, method) key, comparing text
-- under the database's collation, and fetching the usage row to see it is not blocked.
CREATE INDEX token_usage_blocked_ip ON token_usage (token_id)
    WHERE subject_kind = 'ip' AND blocked;
