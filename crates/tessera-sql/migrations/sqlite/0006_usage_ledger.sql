-- The usage ledger (SQLite): ids of the batches of aggregated uses already written, so a batch
-- retried after its answer was lost (a commit whose reply never came) counts once. The id is
-- 128 random bits as 32 hexadecimal digits; `at` is when it was written (nanoseconds since the
-- Unix epoch), so old ids can be pruned.
CREATE TABLE usage_batches (
    id TEXT    NOT NULL PRIMARY KEY,
    at INTEGER NOT NULL
) STRICT;
CREATE INDEX usage_batches_at ON usage_batches (at);
