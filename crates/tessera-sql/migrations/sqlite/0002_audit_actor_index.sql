-- Audit queries by actor ("what did this admin do?") without a full scan.
CREATE INDEX audit_events_actor ON audit_events (actor, at, seq);
