//! [`StoreError`]: what a backend can report.

/// A `Result` whose error defaults to [`StoreError`].
pub type Result<T, E = StoreError> = core::result::Result<T, E>;

/// What went wrong in a store. Never holds a secret or a digest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No record with that key.
    #[error("{what} not found; check the id, or list to find it")]
    NotFound {
        /// What was looked for ("token", "mapping").
        what: &'static str,
    },
    /// A record with that key or unique value already exists.
    #[error("{what} already exists; pick another")]
    AlreadyExists {
        /// What collided ("application token name", "token id", "mapping").
        what: &'static str,
    },
    /// A conditional update lost: the record changed since it was read.
    #[error("the token changed concurrently; read it again and retry")]
    Conflict,
    /// The backend is temporarily unavailable (busy, locked, connection lost).
    #[error("storage is temporarily unavailable; retry: {0}")]
    Unavailable(String),
    /// The store keeps no more of this for one token (a bound an in-memory backend sets so one
    /// token cannot exhaust memory); nothing was changed.
    #[error(
        "{what} of one token is at the store's limit of {limit}; nothing was changed: raise the \
         limit or use a SQL store, which keeps every one"
    )]
    LimitReached {
        /// What is bounded ("enrollments").
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// The stored data could not be read back (corrupt or from a newer version).
    #[error("stored data is unreadable: {0}; check the database version and integrity")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("storage failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether retrying may succeed.
    pub const fn is_temporary(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict)
    }
}
