-- The validation lookup reads a token's blocked addresses with its record. This index holds
-- the blocked entries only, with every column the lookup reads: the lookup probes it (usually
-- one page, empty) instead of the usage table, whose pages the usage ledger rewrites every
-- second. Counting uses never changes it.
CREATE INDEX token_usage_blocked ON token_usage (token_id, subject_kind, blocked, subject)
    WHERE subject_kind = 'ip' AND blocked = 1;
