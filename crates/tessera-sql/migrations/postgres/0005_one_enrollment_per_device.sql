-- One device, one use (PostgreSQL): a device is enrolled by a token at most once. A repeat
-- redemption by an enrolled device consumes nothing and returns its enrollment; this index
-- makes a second enrollment of the same device impossible, whatever the interleaving (a
-- concurrent duplicate fails and is retried, then sees the enrollment).
-- Earlier builds could enrol a device twice: keep its first enrollment.
DELETE FROM enrollments WHERE EXISTS (
    SELECT 1 FROM enrollments AS first
    WHERE first.token_id = enrollments.token_id AND first.device = enrollments.device
      AND (first.at < enrollments.at OR (first.at = enrollments.at AND first.seq < enrollments.seq))
);
CREATE UNIQUE INDEX enrollments_device ON enrollments (token_id, device);
