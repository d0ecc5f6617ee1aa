#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "tessera-sql has no backend: enable the `sqlite` feature, the `postgres` feature, or both"
);

mod codec;
mod error;
mod migrate;
mod pool;
mod sql;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::{Error, Result};

/// A `time` duration as the driver takes it: negative is zero, too long is the longest.
#[allow(dead_code, reason = "used by whichever backends are built")]
pub(crate) fn std_duration(d: time::Duration) -> std::time::Duration {
    if d.is_negative() {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::try_from(d).unwrap_or(std::time::Duration::MAX)
    }
}
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

#[cfg(all(test, feature = "sqlite", feature = "postgres"))]
mod send_check {
    fn is_send<T: Send>(_: T) {}

    /// `tokio::spawn` needs these futures `Send` for every lifetime (`sqlx::raw_sql` breaks that).
    #[allow(dead_code)]
    fn futures_are_send(s: &crate::SqliteStore, p: &crate::PostgresStore) {
        is_send(s.migrate());
        is_send(p.migrate());
        is_send(s.schema_version());
        is_send(p.schema_version());
    }
}
