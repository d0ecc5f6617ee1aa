//! [`Error`]: what the service reports when it cannot answer (a refused token is not an error:
//! it is a [`Rejection`](crate::Rejection) value).

use tessera_core::Kind;
use tessera_store::StoreError;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong in a [`TokenService`](crate::TokenService) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input or an illegal lifecycle step, from the core.
    #[error(transparent)]
    Core(#[from] tessera_core::Error),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The caller may not do this.
    #[error("permission denied: {why}")]
    Forbidden {
        /// What is not allowed and who may do it.
        why: &'static str,
    },
    /// No such token (or not of this kind).
    #[error("no {} token with id {id}; list the tokens to find the right id", kind.map_or("", Kind::as_str))]
    NoSuchToken {
        /// The kind looked for, if the call was for one kind.
        kind: Option<Kind>,
        /// The id given.
        id: String,
    },
    /// The token's secret was not kept sealed, so it cannot be shown again.
    #[error(
        "the secret of {} token {id} was shown once at issue and not kept sealed, so it cannot be shown again; issue a new token{}",
        kind.as_str(),
        if *kind == Kind::Onboarding { " with sealing on (`--keep-sealed`)" } else { "" }
    )]
    NotSealed {
        /// The token's kind.
        kind: Kind,
        /// Its id.
        id: String,
    },
    /// No endpoint by this name was ever set up for token authentication.
    #[error(
        "endpoint {endpoint} was never set up for token authentication; check the name, or turn it on with enable"
    )]
    NoSuchEndpoint {
        /// The endpoint given.
        endpoint: String,
    },
    /// The operation does not fit the token's current setup.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl Error {
    /// Whether retrying may succeed (a busy store, a lost race).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_temporary())
    }
}

impl From<StoreError> for Error {
    /// Every store error that reaches a caller passes here, and is counted by class
    /// (`tessera_store_errors_total`).
    fn from(e: StoreError) -> Self {
        crate::observe::store_error(&e);
        Self::Store(e)
    }
}

impl From<tessera_core::TransitionError> for Error {
    fn from(e: tessera_core::TransitionError) -> Self {
        Self::Core(e.into())
    }
}

impl From<tessera_core::InvalidInput> for Error {
    fn from(e: tessera_core::InvalidInput) -> Self {
        Self::Core(e.into())
    }
}
