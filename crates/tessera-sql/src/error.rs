//! [`Error`]: why a store could not be opened or migrated, and the one place each driver's
//! errors become [`StoreError`]s (`map_sqlx_error` for PostgreSQL, `map_sqlite_error` for
//! SQLite).

use tessera_store::StoreError;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Why a database could not be opened, connected to or migrated.
///
/// Never holds a password, a connection string, a secret or a digest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error("invalid {what}: {why}")]
    Config {
        /// Which setting.
        what: &'static str,
        /// What is wrong with it and how to fix it.
        why: &'static str,
    },
    /// The database could not be reached or opened.
    #[error("cannot open the database; check that it is running and reachable: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A migration that this build ships was changed after it was applied to the database.
    #[error(
        "migration {version} applied to the database differs from the one this build ships; \
         restore the released migration file (released migrations are never edited)"
    )]
    MigrationChanged {
        /// The migration's version.
        version: i64,
    },
    /// The database has a migration this build does not know, below its latest one.
    #[error(
        "the database has migration {version}, which this build does not ship; \
         use the build of tessera that migrated it"
    )]
    MigrationUnknown {
        /// The migration's version.
        version: i64,
    },
    /// Running the migrations failed; nothing of the failed migration was applied.
    #[error("migrating the database failed; fix the cause and migrate again: {0}")]
    Migrate(#[source] StoreError),
    /// The schema was migrated by a newer build of Tessera.
    #[error(
        "the database schema is at version {found}, newer than this build supports \
         (up to {supported}); upgrade tessera"
    )]
    SchemaTooNew {
        /// The version the database is at.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The database cannot grow: the disk is full, or it reached its page limit
    /// (`PRAGMA max_page_count`). Kept as a store error's source; the change that met it was
    /// rolled back whole.
    #[error(
        "the database is full (no space left on its disk, or its page limit reached); \
         free space or raise the limit, then retry: nothing of the failed change was written"
    )]
    Full,
    /// A value does not fit in the database's representation (kept as a store error's source).
    #[error("{what} is out of the range the database can store; {fix}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// What to do about it.
        fix: &'static str,
    },
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Migrate(inner) => inner,
            other => Self::Backend(Box::new(other)),
        }
    }
}

/// A value that does not fit, as a store error.
pub(crate) fn out_of_range(what: &'static str, fix: &'static str) -> StoreError {
    Error::OutOfRange { what, fix }.into()
}

/// Convert a driver error into a [`StoreError`]; `what` names the thing that collided when the
/// error is a unique violation ("token", "mapping").
///
/// Decided on error kinds and codes only, never on message text: unique violations become
/// `AlreadyExists`; foreign-key violations `NotFound` (every foreign key points at a token);
/// SQLite's busy and locked codes, PostgreSQL connection failures, serialization failures and
/// deadlocks, and pool or I/O failures become `Unavailable`; decoding failures `Corrupt`.
#[cfg(feature = "postgres")]
pub(crate) fn map_sqlx_error(err: sqlx::Error, what: &'static str) -> StoreError {
    match err {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                StoreError::AlreadyExists { what }
            } else if db.is_foreign_key_violation() {
                StoreError::NotFound { what: "token" }
            } else if is_temporary(db.as_ref()) {
                StoreError::Unavailable(db.to_string())
            } else {
                StoreError::Backend(db.into_error())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(err.to_string()),
        sqlx::Error::RowNotFound => StoreError::NotFound { what },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Decode(_) => StoreError::Corrupt(err.to_string()),
        other => StoreError::Backend(Box::new(other)),
    }
}

/// Whether a database error is worth retrying, by its code.
#[cfg(feature = "postgres")]
fn is_temporary(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        // Class 08: connection exception; 40001 serialization failure; 40P01 deadlock;
        // 53300 too many connections; 55P03 lock not available; 57P01-57P03 shutdown or
        // starting up.
        return code.starts_with("08")
            || matches!(
                code,
                "40001" | "40P01" | "53300" | "55P03" | "57P01" | "57P02" | "57P03"
            );
    }
    let _ = db;
    false
}

/// Convert a SQLite error into a [`StoreError`]; `what` names the thing that collided when the
/// error is a unique violation ("token", "mapping").
///
/// Decided on result codes only, never on message text: unique and primary-key violations become
/// `AlreadyExists`; foreign-key violations `NotFound` (every foreign key points at a token);
/// busy and locked `Unavailable`; a full database [`Error::Full`]; corruption and values that do
/// not decode `Corrupt`.
#[cfg(feature = "sqlite")]
pub(crate) fn map_sqlite_error(err: rusqlite::Error, what: &'static str) -> StoreError {
    use rusqlite::ffi;
    match err {
        rusqlite::Error::SqliteFailure(e, msg) => {
            let text = || msg.clone().unwrap_or_else(|| e.to_string());
            match e.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    return StoreError::AlreadyExists { what };
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    return StoreError::NotFound { what: "token" };
                }
                _ => {}
            }
            match e.code {
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                    StoreError::Unavailable(text())
                }
                rusqlite::ErrorCode::DiskFull => Error::Full.into(),
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => {
                    StoreError::Corrupt(text())
                }
                rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::CannotOpen => {
                    StoreError::Unavailable(text())
                }
                _ => StoreError::Backend(Box::new(rusqlite::Error::SqliteFailure(e, msg))),
            }
        }
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound { what },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::InvalidColumnIndex(_)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(err.to_string()),
        other => StoreError::Backend(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "postgres")]
    #[test]
    fn pool_and_io_failures_are_temporary() {
        assert!(map_sqlx_error(sqlx::Error::PoolTimedOut, "token").is_temporary());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(map_sqlx_error(sqlx::Error::Io(io), "token").is_temporary());
        assert!(matches!(
            map_sqlx_error(sqlx::Error::RowNotFound, "mapping"),
            StoreError::NotFound { what: "mapping" }
        ));
    }

    #[test]
    fn out_of_range_is_a_typed_source() {
        let e = out_of_range("uses", "keep counts below 2^63");
        let StoreError::Backend(inner) = e else {
            panic!("expected a backend error");
        };
        assert!(matches!(
            inner.downcast_ref::<Error>(),
            Some(Error::OutOfRange { what: "uses", .. })
        ));
    }
}
