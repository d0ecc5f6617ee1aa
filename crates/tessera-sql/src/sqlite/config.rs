//! [`SqliteConfig`]: where the database is and how connections behave.

use std::path::PathBuf;
use time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// How to open a SQLite store.
///
/// A file database uses WAL, `synchronous = NORMAL`, foreign keys and a busy timeout, and is
/// safe to share between processes. An in-memory database is a named shared-cache database
/// private to its store: the store holds one connection to it for its whole life, so every
/// connection of the pool sees the same data whatever happens to them (a connection sqlx closes
/// because a query was cancelled no longer takes the database with it); it is gone when the
/// store is dropped.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file; `None` for an in-memory database.
    pub path: Option<PathBuf>,
    /// How long a statement waits for another connection's lock before failing with
    /// `Unavailable`.
    pub busy_timeout: Duration,
    /// The most connections the pool opens (always one in memory).
    pub max_connections: u32,
    /// Whether to create the file when it does not exist.
    pub create_if_missing: bool,
}

impl SqliteConfig {
    /// The default busy timeout: 5 seconds.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::seconds(5);

    /// The default pool size for a file.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

    /// A database file, created when missing.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            create_if_missing: true,
        }
    }

    /// A private in-memory database.
    pub const fn in_memory() -> Self {
        Self {
            path: None,
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            max_connections: 1,
            create_if_missing: true,
        }
    }

    /// Wait this long for a lock.
    #[must_use]
    pub const fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Open at most this many connections (at least one).
    #[must_use]
    pub const fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Create the file when missing, or fail.
    #[must_use]
    pub const fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// `memory`: the name of the in-memory database (unique per store), unused for a file.
    pub(crate) fn connect_options(&self, memory: &str) -> SqliteConnectOptions {
        let base = SqliteConnectOptions::new()
            .foreign_keys(true)
            .busy_timeout(crate::std_duration(self.busy_timeout));
        match &self.path {
            Some(path) => base
                .filename(path)
                .create_if_missing(self.create_if_missing)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
            None => base
                .filename(format!("file:{memory}?mode=memory&cache=shared"))
                .in_memory(true)
                .shared_cache(true),
        }
    }

    pub(crate) fn pool_options(&self) -> SqlitePoolOptions {
        match self.path {
            Some(_) => crate::pool::never_in_transaction(
                SqlitePoolOptions::new()
                    .max_connections(self.max_connections.max(1))
                    .acquire_timeout(crate::std_duration(self.busy_timeout.saturating_mul(2))),
            ),
            // One connection at a time: no table locks between connections of the shared cache.
            None => crate::pool::never_in_transaction(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(crate::std_duration(self.busy_timeout.saturating_mul(2))),
            ),
        }
    }
}
