-- Tessera schema, version 1 (PostgreSQL).
--
-- Stores digests and short hints only, never secrets. Times are BIGINT nanoseconds since the
-- Unix epoch (UTC), the same as the SQLite schema, at full precision. Kind data is JSON in
-- `data`; the columns listings filter on and the onboarding binding (which redemption updates
-- atomically) are copied out beside it.

CREATE TABLE tokens (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL
        CHECK (kind IN ('deployment', 'onboarding', 'endpoint', 'auth', 'application')),
    digest_key   BIGINT  NOT NULL,
    digest       BYTEA   NOT NULL CHECK (octet_length(digest) = 32),
    spelling     TEXT    NOT NULL,
    hint         TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    created_by   TEXT    NOT NULL,
    generated_by TEXT,
    expires_at   BIGINT,
    last_used_at BIGINT,
    activated_at BIGINT  NOT NULL,
    grace_until  BIGINT,
    successor    TEXT,
    max_uses     BIGINT  CHECK (max_uses IS NULL OR max_uses > 0),
    uses         BIGINT  NOT NULL DEFAULT 0 CHECK (uses >= 0),
    app_name     TEXT,
    owner        TEXT,
    endpoint     TEXT,
    method       TEXT,
    binding      TEXT    CHECK (binding IS NULL OR binding IN ('any', 'device', 'first_device')),
    bound_device TEXT,
    data         TEXT    NOT NULL
);

-- The validation lookup.
CREATE UNIQUE INDEX tokens_digest ON tokens (digest_key, digest);
-- Application names are unique among tokens in force, so a rotation can reuse the name.
CREATE UNIQUE INDEX tokens_app_name_in_force ON tokens (app_name)
    WHERE app_name IS NOT NULL
      AND state NOT IN ('superseded', 'rotated_out', 'revoked', 'deleted');
-- Listings, oldest first, narrowed by kind, state, owner, endpoint or expiry.
CREATE INDEX tokens_created ON tokens (created_at, seq);
CREATE INDEX tokens_kind_state ON tokens (kind, state);
CREATE INDEX tokens_state ON tokens (state);
CREATE INDEX tokens_owner ON tokens (owner) WHERE owner IS NOT NULL;
CREATE INDEX tokens_endpoint ON tokens (endpoint, method) WHERE endpoint IS NOT NULL;
CREATE INDEX tokens_expires_at ON tokens (expires_at) WHERE expires_at IS NOT NULL;

-- Devices that redeemed an onboarding token.
CREATE TABLE enrollments (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_id TEXT   NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    device   TEXT   NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX enrollments_token ON enrollments (token_id, at, seq);

-- Accepted uses per token and subject (a client address, or an endpoint and method), with the
-- per-address block list of application tokens. `method` is '' for addresses.
CREATE TABLE token_usage (
    token_id     TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    subject_kind TEXT    NOT NULL CHECK (subject_kind IN ('ip', 'endpoint')),
    subject      TEXT    NOT NULL,
    method       TEXT    NOT NULL DEFAULT '',
    first_seen   BIGINT,
    last_seen    BIGINT,
    hits         BIGINT  NOT NULL DEFAULT 0 CHECK (hits >= 0),
    blocked      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (token_id, subject_kind, subject, method)
);
CREATE INDEX token_usage_subject ON token_usage (subject_kind, subject);

-- Endpoint secondaries mapped to an endpoint's primary slot (endpoint and method).
CREATE TABLE mappings (
    seq       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    secondary TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    endpoint  TEXT    NOT NULL,
    method    TEXT    NOT NULL,
    enabled   BOOLEAN NOT NULL,
    UNIQUE (secondary, endpoint, method)
);
CREATE INDEX mappings_endpoint ON mappings (endpoint, method);

-- Append-only audit events; the body is the event as JSON. Not tied to tokens: purging a
-- token keeps its history.
CREATE TABLE audit_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    token_id TEXT,
    actor    TEXT   NOT NULL,
    body     TEXT   NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at, seq);
CREATE INDEX audit_events_token ON audit_events (token_id, at, seq);
