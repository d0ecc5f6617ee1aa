-- The usage ledger's aggregated audit rows cover a window of uses (a minute by default) and
-- are written again, with their totals so far, at every batch of their window: each carries a
-- key, and a batch replaces the stored row with the same key. Only the row's body changes, so
-- none of the table's other indexes moves (before, a row per token every second put an entry
-- at a random place of `audit_events_token`: 85 % of a batch's pages). Older rows have no key.
ALTER TABLE audit_events ADD COLUMN row_key TEXT;
CREATE UNIQUE INDEX audit_events_row_key ON audit_events (row_key) WHERE row_key IS NOT NULL;
