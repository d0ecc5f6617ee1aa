//! Validation: a pure function from (record, request, now) to [`Accepted`] or a [`Rejection`].
//!
//! Rejections are values, not errors. They are distinct inside (for audit and logs) and collapse
//! to one outside answer through [`Rejection::oauth`] (RFC 6750), so callers facing the outside
//! leak nothing about which tokens exist.

use core::fmt;
use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::FormatError;
use crate::format::Kind;
use crate::id::{DeviceId, EndpointId, Permission, TokenId};
use crate::kind::endpoint::{EndpointData, Mapping, Method};
use crate::kind::{KindData, OnboardingData};
use crate::lifecycle::State;
use crate::record::TokenRecord;

/// Why a token was refused. Every variant but the two scope ones answers `invalid_token`.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// The text is not a token of the expected kind.
    #[error("token is malformed")]
    Malformed,
    /// No token has this digest (or it was purged).
    #[error("token is not known")]
    NotFound,
    /// Past its expiry.
    #[error("token has expired")]
    Expired,
    /// Revoked by an admin.
    #[error("token was revoked")]
    Revoked,
    /// Rotated and past its grace window.
    #[error("token was rotated out")]
    RotatedOut,
    /// Deactivated by an admin (an application token or an endpoint secondary); an admin can
    /// activate it again. State word `deactivated`, code `disabled`.
    #[error("token is deactivated")]
    Disabled,
    /// Unused too long; an admin must reactivate it.
    #[error("token is dormant")]
    Dormant,
    /// Usage limit reached.
    #[error("token has no uses left")]
    Exhausted,
    /// Deleted for good.
    #[error("token was deleted")]
    Deleted,
    /// The client IP is blocked for this token.
    #[error("client ip is blocked for this token")]
    IpBlocked,
    /// The action is not in the token's scope.
    #[error("action is outside the token's scope")]
    InsufficientScope,
    /// The action is in scope but the user no longer holds it.
    #[error("user no longer holds the action")]
    PermissionWithdrawn,
    /// An endpoint token for another endpoint, or a secondary not mapped to it.
    #[error("token is not for this endpoint")]
    WrongEndpoint,
    /// A primary for another method of this endpoint.
    #[error("token is not for this method")]
    WrongMethod,
    /// The secondary's mapping to this endpoint and method is turned off.
    #[error("token's mapping to this endpoint is disabled")]
    MappingDisabled,
    /// A device other than the one the token is bound to.
    #[error("token is bound to another device")]
    DeviceMismatch,
    /// An endpoint secondary whose enabled toggle is off (it stays active and listed; every
    /// integration using it stops until the toggle is on again).
    #[error("token's enabled toggle is off")]
    ToggledOff,
}

/// The single outside answer of RFC 6750 section 3.1.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum OAuthError {
    /// The request is malformed (a broken `Authorization` header).
    InvalidRequest,
    /// Any invalid, unknown, expired, revoked or blocked token alike.
    InvalidToken,
    /// The token is valid but lacks the scope.
    InsufficientScope,
}

impl OAuthError {
    /// The `error` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }

    /// The HTTP status that goes with it.
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::InvalidToken => 401,
            Self::InsufficientScope => 403,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Rejection {
    /// The outside answer. This is the only mapping.
    pub const fn oauth(self) -> OAuthError {
        match self {
            Self::InsufficientScope | Self::PermissionWithdrawn => OAuthError::InsufficientScope,
            _ => OAuthError::InvalidToken,
        }
    }

    /// A stable snake-case code for audit and logs.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotFound => "not_found",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::RotatedOut => "rotated_out",
            Self::Disabled => "disabled",
            Self::Dormant => "dormant",
            Self::Exhausted => "exhausted",
            Self::Deleted => "deleted",
            Self::IpBlocked => "ip_blocked",
            Self::InsufficientScope => "insufficient_scope",
            Self::PermissionWithdrawn => "permission_withdrawn",
            Self::WrongEndpoint => "wrong_endpoint",
            Self::WrongMethod => "wrong_method",
            Self::MappingDisabled => "mapping_disabled",
            Self::ToggledOff => "toggled_off",
            Self::DeviceMismatch => "device_mismatch",
        }
    }
}

impl From<FormatError> for Rejection {
    fn from(_: FormatError) -> Self {
        Self::Malformed
    }
}

/// What a request asks of a token, with the facts the store looked up for it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Request<'a> {
    /// A client installer presenting a deployment token.
    Deployment,
    /// A device redeeming an onboarding token.
    Onboarding {
        /// The device.
        device: &'a DeviceId,
    },
    /// A call to an endpoint.
    Endpoint {
        /// The endpoint called.
        endpoint: &'a EndpointId,
        /// The method used.
        method: Method,
        /// For a secondary: its mapping to this endpoint and method, if any.
        mapping: Option<&'a Mapping>,
    },
    /// A REST call for an action on behalf of the token's owner.
    Auth {
        /// The action.
        action: &'a Permission,
        /// What the owner holds now, as the application says.
        held: &'a BTreeSet<Permission>,
    },
    /// An integration presenting an application bearer token.
    Application {
        /// The client's address.
        ip: IpAddr,
        /// Whether the store has that address blocked for this token.
        ip_blocked: bool,
    },
}

/// A token that passed validation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Accepted {
    /// The token that carried the request.
    pub token: TokenId,
    /// Its kind.
    pub kind: Kind,
    /// It was rotated and is accepted only until its grace window ends.
    pub in_grace: bool,
}

/// Decide whether `record` admits `request` at `now`.
///
/// # Errors
///
/// The first [`Rejection`] that applies: state and time rules first, then the kind's rules.
pub fn validate(
    record: &TokenRecord,
    request: &Request<'_>,
    now: OffsetDateTime,
) -> Result<Accepted, Rejection> {
    let state = record.effective_state(now);
    let lifecycle = match state {
        State::Active | State::Superseded => Ok(()),
        State::Disabled => Err(Rejection::Disabled),
        State::Dormant => Err(Rejection::Dormant),
        State::RotatedOut => Err(Rejection::RotatedOut),
        State::Expired => Err(Rejection::Expired),
        State::Exhausted => Err(Rejection::Exhausted),
        State::Revoked => Err(Rejection::Revoked),
        State::Deleted => Err(Rejection::Deleted),
    };
    lifecycle?;
    match (&record.data, request) {
        (KindData::Deployment(_), Request::Deployment) => Ok(()),
        (KindData::Onboarding(OnboardingData { binding, .. }), Request::Onboarding { device }) => {
            if binding.admits(device) {
                Ok(())
            } else {
                Err(Rejection::DeviceMismatch)
            }
        }
        (
            KindData::Endpoint(e),
            Request::Endpoint {
                endpoint,
                method,
                mapping,
            },
        ) => check_endpoint(record.id, e, endpoint, *method, *mapping),
        (KindData::Auth(a), Request::Auth { action, held }) => {
            if !a.scope.contains(action) {
                Err(Rejection::InsufficientScope)
            } else if !held.contains(*action) {
                Err(Rejection::PermissionWithdrawn)
            } else {
                Ok(())
            }
        }
        (KindData::Application(_), Request::Application { ip_blocked, .. }) => {
            if *ip_blocked {
                Err(Rejection::IpBlocked)
            } else {
                Ok(())
            }
        }
        // A token of another kind is, to this request, a token that does not exist.
        _ => Err(Rejection::NotFound),
    }?;
    Ok(Accepted {
        token: record.id,
        kind: record.kind(),
        in_grace: state == State::Superseded,
    })
}

fn check_endpoint(
    id: TokenId,
    data: &EndpointData,
    endpoint: &EndpointId,
    method: Method,
    mapping: Option<&Mapping>,
) -> Result<(), Rejection> {
    match data {
        EndpointData::Primary {
            endpoint: e,
            method: m,
        } => {
            if e != endpoint {
                Err(Rejection::WrongEndpoint)
            } else if *m != method {
                Err(Rejection::WrongMethod)
            } else {
                Ok(())
            }
        }
        EndpointData::Secondary { enabled, .. } => {
            if !enabled {
                return Err(Rejection::ToggledOff);
            }
            match mapping {
                Some(m) if m.secondary == id && &m.endpoint == endpoint && m.method == method => {
                    if m.enabled {
                        Ok(())
                    } else {
                        Err(Rejection::MappingDisabled)
                    }
                }
                _ => Err(Rejection::WrongEndpoint),
            }
        }
    }
}

#[cfg(test)]
mod tests;
