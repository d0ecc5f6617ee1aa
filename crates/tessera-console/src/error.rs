//! [`Error`]: why a console request was refused, answered as an HTML page with its status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tessera::store::StoreError;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything a console request can be refused for. Each variant knows its HTTP status; the
/// router answers it as an HTML page saying what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token service refused or failed.
    #[error(transparent)]
    Service(#[from] tessera::Error),
    /// A QR code could not be drawn.
    #[error("the QR code could not be drawn: {0}")]
    Qr(#[from] tessera_qr::Error),
    /// The form is missing a field or a field is not what it should be.
    #[error("{0}")]
    BadInput(String),
    /// The form's CSRF token is missing or does not belong to the signed-in user.
    #[error(
        "this form has expired or was not sent from this console; reload the page and try again"
    )]
    Csrf,
    /// The signed-in user may not use this page.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such page or item.
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// A bad-input error with this message.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::BadInput(message.into())
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Service(e) => match e {
                tessera::Error::Core(_) => StatusCode::BAD_REQUEST,
                tessera::Error::Forbidden { .. } => StatusCode::FORBIDDEN,
                tessera::Error::NoSuchToken { .. } | tessera::Error::NoSuchEndpoint { .. } => {
                    StatusCode::NOT_FOUND
                }
                tessera::Error::Unsupported(_) | tessera::Error::NotSealed { .. } => {
                    StatusCode::CONFLICT
                }
                tessera::Error::Store(StoreError::AlreadyExists { .. }) => StatusCode::CONFLICT,
                tessera::Error::Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
                tessera::Error::Store(StoreError::Conflict) => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
            Self::Qr(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadInput(_) => StatusCode::BAD_REQUEST,
            Self::Csrf | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// The message shown on the page: the error's own, except for store failures, whose
    /// detail stays on the server.
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Service(tessera::Error::Store(StoreError::AlreadyExists { .. })) => {
                String::from("a token with this name already exists; choose another name")
            }
            Self::Service(tessera::Error::Store(StoreError::Conflict)) => String::from(
                "the token changed while this was being done; reload the page and try again",
            ),
            Self::Service(tessera::Error::Store(StoreError::NotFound { .. })) => {
                String::from("no such item; reload the page to see the current list")
            }
            Self::Service(tessera::Error::Store(_)) => String::from(
                "the token store is unavailable; try again in a moment or ask the operator",
            ),
            Self::Service(tessera::Error::NotSealed { .. }) => String::from(
                "this token's secret was not kept: it was shown once, when it was generated; \
                 generate a new one (for onboarding, tick Keep the QR code)",
            ),
            other => other.to_string(),
        }
    }
}

/// A failure waiting to be drawn: the router's page layer turns it into the HTML page (it knows
/// where the console is mounted and so where its stylesheet is).
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) title: &'static str,
    pub(crate) message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = match status {
            StatusCode::BAD_REQUEST => "Check the form",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Cannot do that now",
            _ => "Something went wrong",
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(Failure {
            title,
            message: self.message(),
        });
        response
    }
}
