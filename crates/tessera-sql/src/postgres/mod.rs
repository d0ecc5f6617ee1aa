//! The PostgreSQL backend: one shared database for several service instances.

mod config;
mod lookup;
mod store;
mod watch;

pub use config::{PostgresConfig, SslMode};
pub use store::PostgresStore;

use crate::migrate::{Migration, embed};

/// The migrations this build ships for PostgreSQL, in version order.
pub(crate) const MIGRATIONS: &[Migration] = embed!("postgres":
    1 "initial" "0001_initial.sql",
    2 "audit actor index" "0002_audit_actor_index.sql",
    3 "token change notify" "0003_token_change_notify.sql",
    4 "sealed secret" "0004_sealed_secret.sql",
    5 "one enrollment per device" "0005_one_enrollment_per_device.sql",
    6 "unique names" "0006_unique_names.sql",
    7 "usage ledger" "0007_usage_ledger.sql",
    8 "validation upkeep" "0008_validation_upkeep.sql",
    9 "audit row keys" "0009_audit_row_keys.sql",
);
