//! # tessera-sql
//!
//! SQL backends for Tessera: [`SqliteStore`] (feature `sqlite`: an embedded database in a file,
//! or in memory) and [`PostgresStore`] (feature `postgres`: one shared database for several
//! service instances). Both implement [`tessera_store::Store`] and pass its conformance suite
//! unchanged.
//!
//! ## Design
//!
//! - **Digests, never secrets.** A token is stored as its keyed digest (pepper key id and 32
//!   bytes) and a short hint. Nothing here ever receives a secret.
//! - **Atomic where it decides.** Redemption, compare-and-set state changes, usage counting,
//!   blocking and coalesced last-use are each one conditional SQL statement or one
//!   transaction; nothing reads a row in Rust to decide a write. SQLite write transactions
//!   start with `BEGIN IMMEDIATE`, so processes sharing a file wait for each other instead of
//!   failing; PostgreSQL relies on row locks and re-checked conditions.
//! - **Bound values only.** Every value is a bind parameter. The one identifier formatted into
//!   SQL, a PostgreSQL schema name, is checked to be a plain identifier first.
//! - **Versioned migrations.** `migrations/{sqlite,postgres}/NNNN_<description>.sql` are
//!   embedded at build time and applied by [`SqliteStore::migrate`] /
//!   [`PostgresStore::migrate`], tracked in Tessera's own `_tessera_migrations` table with a
//!   checksum each. An older schema is upgraded in place; a database migrated by a newer build
//!   is refused with [`Error::SchemaTooNew`]. PostgreSQL migrations hold an advisory lock, so
//!   several instances may start at once.
//! - **Errors.** Opening and migrating fail with this crate's [`Error`]; store operations fail
//!   with [`tessera_store::StoreError`], mapped from driver error codes (unique violation to
//!   `AlreadyExists`, SQLite busy or locked and PostgreSQL connection, serialization and
//!   deadlock failures to `Unavailable`).
//!
//! ## Getting started
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use tessera_sql::SqliteStore;
//! use tessera_store::{Store, TokenFilter};
//!
//! // A file works the same: `SqliteStore::open("tessera.db")`.
//! let store = SqliteStore::open_in_memory().await?;
//! store.migrate().await?;
//! assert!(store.list(&TokenFilter::default()).await?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! PostgreSQL takes a URL and, optionally, a schema of its own:
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn f() -> Result<(), tessera_sql::Error> {
//! use tessera_sql::postgres::{PostgresConfig, PostgresStore};
//!
//! let config = PostgresConfig::new("postgres://tessera@db.internal/tessera").schema("tessera")?;
//! let store = PostgresStore::connect_with(config).await?;
//! store.migrate().await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "tessera-sql has no backend: enable the `sqlite` feature, the `postgres` feature, or both"
);

mod codec;
mod error;
mod migrate;
mod sql;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::{Error, Result};
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
