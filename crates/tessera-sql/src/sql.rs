//! The statements both backends run unchanged (SQLite reads `$N` parameters as PostgreSQL does).
//! Every value is bound; nothing is formatted into these strings.
//!
//! Each statement that decides something under concurrency is one conditional statement:
//! redemption, state changes, usage counting, blocking and coalesced last-use.

use crate::codec::{record_columns, usage_columns};

/// The columns of `tokens` an insert writes, in [`crate::codec::RecordColumns`] order (the data
/// columns in the order `bind_data` binds them, the JSON last).
macro_rules! insert_columns {
    () => {
        "id, kind, digest_key, digest, spelling, hint, state, created_at, created_by, \
         generated_by, expires_at, last_used_at, activated_at, grace_until, successor, max_uses, \
         uses, app_name, owner, endpoint, method, binding, bound_device, data, sealed"
    };
}
pub(crate) use insert_columns;

/// How many values an insert binds per record: the [`insert_columns!`].
#[cfg(any(test, feature = "sqlite"))]
pub(crate) const INSERT_COLUMNS: usize = 25;

/// Insert a record: [`crate::codec::RecordColumns`] in order.
pub(crate) const INSERT_TOKEN: &str = concat!(
    "INSERT INTO tokens (",
    insert_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $19, $20, $21, $22, $23, $24, $25)"
);

/// Which unique key a failed insert collided with: id, digest, or else the application name.
pub(crate) const COLLISION: &str = "SELECT CASE \
     WHEN EXISTS (SELECT 1 FROM tokens WHERE id = $1) THEN 'id' \
     WHEN EXISTS (SELECT 1 FROM tokens WHERE digest_key = $2 AND digest = $3) THEN 'digest' \
     ELSE 'name' END AS collided";

/// A record by id.
pub(crate) const GET_TOKEN: &str =
    concat!("SELECT ", record_columns!(), " FROM tokens WHERE id = $1");

/// A record by digest.
pub(crate) const FIND_BY_DIGEST: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM tokens WHERE digest_key = $1 AND digest = $2"
);

/// A record's kind, to tell `NotFound` from `Conflict` after a conditional update missed.
pub(crate) const TOKEN_KIND: &str = "SELECT kind FROM tokens WHERE id = $1";

/// Compare-and-set a state: $1 id, $2 from, $3 to, $4 at, $5 grace until, $6 successor.
pub(crate) const CHANGE_STATE: &str = concat!(
    "UPDATE tokens SET state = $3, \
     activated_at = CASE WHEN $3 = 'active' THEN $4 ELSE activated_at END, \
     grace_until = $5, successor = COALESCE($6, successor) \
     WHERE id = $1 AND state = $2 RETURNING ",
    record_columns!()
);

/// Replace kind data of the same kind: $1 id, $2 kind, $3 data, $4 app name, $5 owner,
/// $6 endpoint, $7 method, $8 binding, $9 bound device. A first-device binding already made
/// is kept: a concurrent redemption's binding is never undone by an edit.
pub(crate) const UPDATE_DATA: &str = concat!(
    "UPDATE tokens SET data = $3, app_name = $4, owner = $5, endpoint = $6, method = $7, \
     binding = $8, \
     bound_device = CASE WHEN binding = 'first_device' AND $8 = 'first_device' \
         THEN COALESCE(bound_device, $9) ELSE $9 END \
     WHERE id = $1 AND kind = $2 RETURNING ",
    record_columns!()
);

/// Give a token a new digest and hint: $1 id, $2 key id, $3 digest, $4 hint.
pub(crate) const SET_DIGEST: &str = concat!(
    "UPDATE tokens SET digest_key = $2, digest = $3, hint = $4, sealed = NULL WHERE id = $1 \
     RETURNING ",
    record_columns!()
);

/// Seal a secret anew (or drop it): $1 id, $2 the sealed bytes or NULL.
pub(crate) const SET_SEALED: &str = concat!(
    "UPDATE tokens SET sealed = $2 WHERE id = $1 RETURNING ",
    record_columns!()
);

/// Coalesced last use: $1 id, $2 now, $3 now minus the interval.
pub(crate) const TOUCH: &str = "UPDATE tokens SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)";

/// Remove a record; usage, enrollments and mappings go with it (foreign keys cascade).
pub(crate) const PURGE: &str = "DELETE FROM tokens WHERE id = $1";

/// The [`REDEEM`] statement, for backends that wrap it (PostgreSQL enrolls the device in the
/// same statement).
macro_rules! redeem_update {
    () => {
        concat!(
            "UPDATE tokens SET uses = uses + 1, \
     state = CASE WHEN max_uses IS NOT NULL AND uses + 1 >= max_uses \
         THEN 'exhausted' ELSE state END, \
     last_used_at = $3, \
     bound_device = CASE WHEN binding = 'first_device' \
         THEN COALESCE(bound_device, $4) ELSE bound_device END \
     WHERE digest_key = $1 AND digest = $2 AND kind = 'onboarding' \
       AND (state = 'active' OR (state = 'superseded' AND grace_until > $3)) \
       AND (expires_at IS NULL OR expires_at > $3) \
       AND (max_uses IS NULL OR uses < max_uses) \
       AND (binding = 'any' OR bound_device = $4 \
            OR (binding = 'first_device' AND bound_device IS NULL)) \
       AND NOT EXISTS (SELECT 1 FROM enrollments \
            WHERE enrollments.token_id = tokens.id AND enrollments.device = $4) \
     RETURNING ",
            record_columns!()
        )
    };
}
// Only the PostgreSQL store wraps it; SQLite uses `REDEEM` below.
#[cfg(feature = "postgres")]
pub(crate) use redeem_update;

/// Consume one use of a usable onboarding token: $1 key id, $2 digest, $3 now, $4 device.
/// A device the token enrolled already consumes nothing (one device, one use): no row.
pub(crate) const REDEEM: &str = redeem_update!();

/// Record a device's enrollment: $1 token, $2 device, $3 at.
pub(crate) const INSERT_ENROLLMENT: &str =
    "INSERT INTO enrollments (token_id, device, at) VALUES ($1, $2, $3)";

/// A device's enrollment by the token with a digest: $1 key id, $2 digest, $3 device.
pub(crate) const ENROLLMENT_OF: &str = "SELECT e.device, e.at FROM enrollments e \
     JOIN tokens t ON t.id = e.token_id \
     WHERE t.digest_key = $1 AND t.digest = $2 AND e.device = $3";

/// A token's enrollments, oldest first.
pub(crate) const ENROLLMENTS: &str =
    "SELECT device, at FROM enrollments WHERE token_id = $1 ORDER BY at, seq";

/// The enrollments of many tokens (PostgreSQL): $1 the token ids as a text array; each token's
/// oldest first.
#[cfg(feature = "postgres")]
pub(crate) const ENROLLMENTS_OF: &str = "SELECT device, at, token_id FROM enrollments \
     WHERE token_id = ANY($1) ORDER BY token_id, at, seq";

/// The enrollments of many tokens (SQLite): $1 the token ids as a JSON array of strings; each
/// token's oldest first.
#[cfg(feature = "sqlite")]
pub(crate) const ENROLLMENTS_OF_LITE: &str = "SELECT device, at, token_id FROM enrollments \
     WHERE token_id IN (SELECT value FROM json_each($1)) ORDER BY token_id, at, seq";

/// Count one use unless blocked: $1 token, $2 subject kind, $3 subject, $4 method, $5 now.
/// First and last seen only ever widen, whatever order concurrent uses land in.
pub(crate) const RECORD_USAGE: &str = concat!(
    "INSERT INTO token_usage AS u (token_id, subject_kind, subject, method, first_seen, \
     last_seen, hits, blocked) VALUES ($1, $2, $3, $4, $5, $5, 1, FALSE) \
     ON CONFLICT (token_id, subject_kind, subject, method) DO UPDATE SET \
     hits = u.hits + 1, \
     first_seen = CASE WHEN u.first_seen IS NULL OR excluded.first_seen < u.first_seen \
         THEN excluded.first_seen ELSE u.first_seen END, \
     last_seen = CASE WHEN u.last_seen IS NULL OR excluded.last_seen > u.last_seen \
         THEN excluded.last_seen ELSE u.last_seen END \
     WHERE NOT u.blocked RETURNING ",
    usage_columns!()
);

/// Add a ledger delta to a usage entry, if the token exists: $1 token, $2 subject kind,
/// $3 subject, $4 method, $5 first seen, $6 last seen, $7 count. Blocked entries count too
/// (the uses were accepted before the block); first and last seen only widen. (PostgreSQL
/// binds arrays instead.)
#[cfg(feature = "sqlite")]
pub(crate) const ADD_USAGE: &str = "INSERT INTO token_usage AS u (token_id, subject_kind, \
     subject, method, first_seen, last_seen, hits, blocked) \
     SELECT $1, $2, $3, $4, $5, $6, $7, FALSE WHERE EXISTS (SELECT 1 FROM tokens WHERE id = $1) \
     ON CONFLICT (token_id, subject_kind, subject, method) DO UPDATE SET \
     hits = u.hits + excluded.hits, \
     first_seen = CASE WHEN u.first_seen IS NULL OR excluded.first_seen < u.first_seen \
         THEN excluded.first_seen ELSE u.first_seen END, \
     last_seen = CASE WHEN u.last_seen IS NULL OR excluded.last_seen > u.last_seen \
         THEN excluded.last_seen ELSE u.last_seen END";

/// Move a last use later, never earlier: $1 token, $2 at.
#[cfg(feature = "sqlite")]
pub(crate) const LAST_USED: &str = "UPDATE tokens SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";

/// Claim a ledger batch id: $1 id, $2 now. Nothing inserted means it was written before.
pub(crate) const CLAIM_BATCH: &str =
    "INSERT INTO usage_batches (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";

/// Forget batch ids older than $1 (a writer retries one batch for seconds, not days).
pub(crate) const PRUNE_BATCHES: &str = "DELETE FROM usage_batches WHERE at < $1";

/// Whether an address is blocked: $1 token, $2 address.
pub(crate) const IS_BLOCKED: &str = "SELECT blocked FROM token_usage \
     WHERE token_id = $1 AND subject_kind = 'ip' AND subject = $2 AND method = ''";

/// Block or unblock an address: $1 token, $2 address, $3 blocked.
pub(crate) const SET_BLOCKED: &str = concat!(
    "INSERT INTO token_usage AS u (token_id, subject_kind, subject, method, first_seen, \
     last_seen, hits, blocked) VALUES ($1, 'ip', $2, '', NULL, NULL, 0, $3) \
     ON CONFLICT (token_id, subject_kind, subject, method) DO UPDATE SET \
     blocked = excluded.blocked RETURNING ",
    usage_columns!()
);

/// A token's usage entries.
pub(crate) const USAGE: &str = concat!(
    "SELECT ",
    usage_columns!(),
    " FROM token_usage WHERE token_id = $1"
);

/// An endpoint's usage entries, every token.
pub(crate) const ENDPOINT_USAGE: &str = concat!(
    "SELECT ",
    usage_columns!(),
    " FROM token_usage WHERE subject_kind = 'endpoint' AND subject = $1"
);

/// Map a secondary: $1 secondary, $2 endpoint, $3 method, $4 enabled.
pub(crate) const PUT_MAPPING: &str =
    "INSERT INTO mappings (secondary, endpoint, method, enabled) VALUES ($1, $2, $3, $4)";

/// One mapping: $1 secondary, $2 endpoint, $3 method.
pub(crate) const GET_MAPPING: &str = "SELECT secondary, endpoint, method, enabled FROM mappings \
     WHERE secondary = $1 AND endpoint = $2 AND method = $3";

/// Turn a mapping on or off: $1 secondary, $2 endpoint, $3 method, $4 enabled.
pub(crate) const SET_MAPPING_ENABLED: &str = "UPDATE mappings SET enabled = $4 \
     WHERE secondary = $1 AND endpoint = $2 AND method = $3 \
     RETURNING secondary, endpoint, method, enabled";

/// Remove a mapping: $1 secondary, $2 endpoint, $3 method.
pub(crate) const REMOVE_MAPPING: &str =
    "DELETE FROM mappings WHERE secondary = $1 AND endpoint = $2 AND method = $3";

/// Mappings narrowed by $1 secondary and $2 endpoint, each optional (sorted in Rust: by
/// secondary, endpoint and method, as the types order them).
pub(crate) const MAPPINGS: &str = "SELECT secondary, endpoint, method, enabled FROM mappings \
     WHERE ($1 IS NULL OR secondary = $1) AND ($2 IS NULL OR endpoint = $2)";

/// Append an event: $1 at, $2 token, $3 actor, $4 body.
pub(crate) const APPEND_EVENT: &str =
    "INSERT INTO audit_events (at, token_id, actor, body) VALUES ($1, $2, $3, $4)";

/// Append an aggregated row, or replace the stored row with its key $5 (its body only: its
/// time, token and actor never change).
#[cfg(feature = "sqlite")]
pub(crate) const UPSERT_ROW: &str = "INSERT INTO audit_events (at, token_id, actor, body, row_key) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (row_key) WHERE row_key IS NOT NULL DO UPDATE SET body = excluded.body";

/// Events narrowed by $1 token, $2 actor, $3 since, $4 until (each optional), at most $5.
pub(crate) const EVENTS: &str = "SELECT body FROM audit_events \
     WHERE ($1 IS NULL OR token_id = $1) AND ($2 IS NULL OR actor = $2) \
       AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) \
     ORDER BY at, seq LIMIT $5";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_binds_one_value_per_column() {
        assert_eq!(insert_columns!().split(',').count(), INSERT_COLUMNS);
        assert_eq!(INSERT_TOKEN.matches('$').count(), INSERT_COLUMNS);
        assert!(INSERT_TOKEN.contains(&format!("${INSERT_COLUMNS})")));
    }
}
