//! [`Refusal`]: the one answer a guard gives when it does not let a request through.

use std::net::IpAddr;

use axum::response::IntoResponse;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Response, StatusCode};
use tessera::Rejection;
use tessera::core::validate::OAuthError;

/// The target every log line of this crate is written under, so operators can turn the refusal
/// reasons on alone (`RUST_LOG=tessera_http=debug`).
pub const LOG_TARGET: &str = "tessera_http";

/// Why a guard answered instead of the service it guards, as the client sees it (RFC 6750
/// section 3.1).
///
/// Every refused token gets the same [`InvalidToken`](Self::InvalidToken), whether it is unknown,
/// malformed, expired, revoked, disabled, dormant, rotated out, blocked for the client's address or
/// meant for another endpoint: nothing tells the caller which. The exact reason is logged at DEBUG
/// under [`LOG_TARGET`], without the token.
///
/// The response has an empty body, so it cannot echo anything the client sent.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// 403 `WWW-Authenticate: Bearer error="insufficient_scope"`: a valid token that does not
    /// allow the action (outside its scope, or its owner no longer holds it).
    #[error("the token does not allow this action")]
    InsufficientScope,
    /// 500 without a challenge: the guard is set up wrong (no client address in the request, no
    /// matched route); the log says what to fix.
    #[error("the server's token check is misconfigured")]
    Internal,
    /// 400 `WWW-Authenticate: Bearer error="invalid_request"`: the `Authorization` header is
    /// there but broken (no token after `Bearer`, characters a token cannot hold, several
    /// headers).
    #[error("the authorization header is malformed")]
    InvalidRequest,
    /// 401 `WWW-Authenticate: Bearer error="invalid_token"`: any token that is not accepted.
    #[error("the access token is invalid")]
    InvalidToken,
    /// 401 `WWW-Authenticate: Bearer` without an error code: no bearer credentials at all (no
    /// `Authorization` header, or one with another scheme such as `Basic`).
    #[error("bearer credentials are required")]
    NoCredentials,
    /// 503 without a challenge: the token store (or the permissions callback) failed; retry
    /// later. Details go to the log only.
    #[error("token checks are temporarily unavailable")]
    Unavailable,
}

impl Refusal {
    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::InvalidToken | Self::NoCredentials => StatusCode::UNAUTHORIZED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `WWW-Authenticate` challenge, for the refusals that carry one.
    pub const fn challenge(self) -> Option<&'static str> {
        match self {
            Self::InsufficientScope => Some("Bearer error=\"insufficient_scope\""),
            Self::InvalidRequest => Some("Bearer error=\"invalid_request\""),
            Self::InvalidToken => Some("Bearer error=\"invalid_token\""),
            Self::NoCredentials => Some("Bearer"),
            Self::Internal | Self::Unavailable => None,
        }
    }

    /// The response: status, challenge and an empty body.
    pub fn response<B: Default>(self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.status();
        if let Some(challenge) = self.challenge() {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

impl From<Rejection> for Refusal {
    /// The RFC 6750 answer for a refused token, through [`Rejection::oauth`] and nothing else.
    fn from(rejection: Rejection) -> Self {
        match rejection.oauth() {
            OAuthError::InsufficientScope => Self::InsufficientScope,
            OAuthError::InvalidRequest => Self::InvalidRequest,
            OAuthError::InvalidToken => Self::InvalidToken,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        self.response()
    }
}

/// Log a refusal at DEBUG (the exact reason, never the token) and return it.
pub(crate) fn refused(kind: &'static str, reason: &'static str, refusal: Refusal) -> Refusal {
    tracing::debug!(
        target: LOG_TARGET,
        kind,
        reason,
        status = refusal.status().as_u16(),
        "request refused"
    );
    refusal
}

/// Log a refused token at DEBUG with its exact rejection and return the client's answer.
pub(crate) fn rejected(
    kind: &'static str,
    rejection: Rejection,
    client_ip: Option<IpAddr>,
) -> Refusal {
    let refusal = Refusal::from(rejection);
    tracing::debug!(
        target: LOG_TARGET,
        kind,
        reason = rejection.code(),
        status = refusal.status().as_u16(),
        client_ip = ?client_ip,
        "request refused"
    );
    refusal
}

/// Log a failing store at WARN (the operator must see it; the client only gets a 503).
pub(crate) fn unavailable(kind: &'static str, error: &dyn std::error::Error) -> Refusal {
    tracing::warn!(
        target: LOG_TARGET,
        kind,
        error = %error,
        "token check failed; answering 503"
    );
    Refusal::Unavailable
}

/// Log a misconfigured guard at WARN (the operator must fix it) and answer 500.
pub(crate) fn misconfigured(kind: &'static str, what: &'static str) -> Refusal {
    tracing::warn!(target: LOG_TARGET, kind, problem = what, "token guard misconfigured; answering 500");
    Refusal::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_but_scope_is_invalid_token() {
        let scope = [Rejection::InsufficientScope, Rejection::PermissionWithdrawn];
        let others = [
            Rejection::Malformed,
            Rejection::NotFound,
            Rejection::Expired,
            Rejection::Revoked,
            Rejection::RotatedOut,
            Rejection::Disabled,
            Rejection::Dormant,
            Rejection::Exhausted,
            Rejection::Deleted,
            Rejection::IpBlocked,
            Rejection::WrongEndpoint,
            Rejection::WrongMethod,
            Rejection::MappingDisabled,
            Rejection::DeviceMismatch,
            Rejection::ToggledOff,
        ];
        for r in scope {
            assert_eq!(Refusal::from(r), Refusal::InsufficientScope);
        }
        for r in others {
            assert_eq!(Refusal::from(r), Refusal::InvalidToken);
        }
    }

    #[test]
    fn responses_carry_the_rfc_6750_challenge() {
        let r: Response<String> = Refusal::NoCredentials.response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
        assert!(r.body().is_empty());
        let r: Response<String> = Refusal::Unavailable.response();
        assert_eq!(r.status(), 503);
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
