//! The SQLite backend: an embedded database in a file (WAL, shareable between processes) or in
//! memory.

mod config;
mod store;

pub use config::{SqliteConfig, Synchronous};
pub use store::SqliteStore;

use crate::migrate::{Migration, embed};

/// The migrations this build ships for SQLite, in version order.
pub(crate) const MIGRATIONS: &[Migration] = embed!("sqlite":
    1 "initial" "0001_initial.sql",
    2 "audit actor index" "0002_audit_actor_index.sql",
    3 "sealed secret" "0003_sealed_secret.sql",
    4 "one enrollment per device" "0004_one_enrollment_per_device.sql",
    5 "unique names" "0005_unique_names.sql",
    6 "usage ledger" "0006_usage_ledger.sql",
    7 "blocked addresses index" "0007_blocked_index.sql",
    8 "blocked address count" "0008_blocked_count.sql",
    9 "audit row keys" "0009_audit_row_keys.sql",
);
