//! Audit event types: every state change and every use, append-only.
//!
//! No field can hold a secret: every field is a non-secret type (ids, hints, states, codes),
//! and [`crate::Secret`] converts into none of them.

use core::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::digest::Hint;
use crate::format::Kind;
use crate::id::{DeviceId, EndpointId, Permission, TokenId, UserId};
use crate::kind::KindData;
use crate::kind::endpoint::Method;
use crate::lifecycle::State;
use crate::record::TokenRecord;
use crate::validate::Rejection;

/// Who did something.
#[derive(Clone, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// Tessera itself: sweeps, renewal, grace windows.
    System,
    /// A person acting through an application or the CLI.
    User(UserId),
    /// A client presenting a token (a device, an installer, an integration).
    Client,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::User(u) => write!(f, "user:{u}"),
            Self::Client => f.write_str("client"),
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A token was issued.
    Issued,
    /// A token was presented and accepted.
    Used,
    /// A token was presented and refused.
    Refused {
        /// Why (the exact internal reason; never sent to the client).
        reason: Rejection,
    },
    /// A token was presented and accepted `count` times between `at` (the first) and `last`:
    /// the usage ledger's aggregated row, one per token, carrier (endpoint and method) and
    /// interval.
    UsedMany {
        /// Accepted uses in the interval.
        count: u64,
        /// The last of them (the event's `at` is the first).
        #[serde(with = "time::serde::rfc3339")]
        last: OffsetDateTime,
        /// Distinct client addresses among them (counted up to
        /// [`AuditAction::MAX_DISTINCT`], the bound when reached).
        addresses: u64,
    },
    /// A token was presented and refused `count` times for `reason` between `at` (the first)
    /// and `last`: the usage ledger's aggregated row.
    RefusedMany {
        /// Why (the exact internal reason; never sent to the client).
        reason: Rejection,
        /// Refusals in the interval.
        count: u64,
        /// The last of them (the event's `at` is the first).
        #[serde(with = "time::serde::rfc3339")]
        last: OffsetDateTime,
        /// Distinct client addresses among them (counted up to
        /// [`AuditAction::MAX_DISTINCT`]).
        addresses: u64,
    },
    /// A token's state changed.
    StateChanged {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// A token was rotated; the subject is the old token.
    Rotated {
        /// The new token.
        successor: TokenId,
    },
    /// An auto-renewing token was renewed; the subject is the expired token.
    Renewed {
        /// The new token.
        successor: TokenId,
    },
    /// A secondary was mapped to an endpoint's primary.
    Mapped,
    /// A mapping was removed.
    Unmapped,
    /// A mapping was turned on or off.
    MappingToggled {
        /// Now on?
        enabled: bool,
    },
    /// A secondary's enabled toggle changed.
    Toggled {
        /// Now on?
        enabled: bool,
    },
    /// An IP was blocked for a token.
    IpBlocked,
    /// An IP was unblocked for a token.
    IpUnblocked,
    /// Stored records were purged for good.
    Purged,
    /// Token authentication was turned on for an endpoint (its primaries are issued events of
    /// their own).
    EndpointEnabled {
        /// Whether the endpoint allows deleting (a DELETE primary was issued).
        allow_delete: bool,
    },
    /// Token authentication was turned off for an endpoint.
    EndpointDisabled,
    /// Deleting was allowed or forbidden on an endpoint.
    DeleteAllowed {
        /// Allowed now?
        allowed: bool,
    },
    /// A device the onboarding token had enrolled redeemed it again and got its enrollment
    /// back; nothing was consumed (one device, one use).
    EnrolledAgain,
    /// A token's sealed secret was sealed anew under the current pepper (the secret itself is
    /// unchanged and never part of the event).
    Resealed,
}

/// What an event is about.
#[derive(Clone, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
pub struct Subject {
    /// The token.
    pub token: Option<TokenId>,
    /// Its kind.
    pub kind: Option<Kind>,
    /// Its hint.
    pub hint: Option<Hint>,
    /// The device, for onboarding.
    pub device: Option<DeviceId>,
    /// The endpoint, for endpoint tokens.
    pub endpoint: Option<EndpointId>,
    /// The method, for endpoint tokens.
    pub method: Option<Method>,
    /// The user an auth token belongs to (who may read its history besides an administrator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
    /// The token's name, where its kind has one (an auth token's, an endpoint secondary's,
    /// an application token's, a deployment token's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action an auth token was checked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<Permission>,
}

impl AuditAction {
    /// How many distinct client addresses an aggregated row counts at most (beyond it, the
    /// count stays at this bound).
    pub const MAX_DISTINCT: u64 = 1024;
}

/// One append-only audit event.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct AuditEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who.
    pub actor: Actor,
    /// The admin who issued the token for someone else, when one did.
    pub generated_by: Option<UserId>,
    /// From which address.
    pub ip: Option<IpAddr>,
    /// About what.
    pub subject: Subject,
    /// What happened.
    pub action: AuditAction,
}

impl AuditEvent {
    /// An event at `at` by `actor`.
    pub fn new(at: OffsetDateTime, actor: Actor, action: AuditAction) -> Self {
        Self {
            at,
            actor,
            generated_by: None,
            ip: None,
            subject: Subject::default(),
            action,
        }
    }

    /// About this token.
    #[must_use]
    pub fn token(mut self, id: TokenId, kind: Kind, hint: &Hint) -> Self {
        self.subject.token = Some(id);
        self.subject.kind = Some(kind);
        self.subject.hint = Some(hint.clone());
        self
    }

    /// About this token record: its id, kind and hint, its owner and name where its kind has
    /// them, and the admin who generated it for someone else.
    #[must_use]
    pub fn about(mut self, record: &TokenRecord) -> Self {
        self = self.token(record.id, record.kind(), &record.hint);
        self.subject.owner = match &record.data {
            KindData::Auth(a) => Some(a.owner.clone()),
            _ => None,
        };
        self.subject.name = record.data.display_name().map(str::to_owned);
        self.generated_by = record.generated_by.clone();
        self
    }

    /// From this address, in its [canonical](crate::net::canonical) spelling.
    #[must_use]
    pub const fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = match ip {
            Some(ip) => Some(crate::net::canonical(ip)),
            None => None,
        };
        self
    }

    /// Issued by this admin for someone else.
    #[must_use]
    pub fn generated_by(mut self, by: Option<UserId>) -> Self {
        self.generated_by = by;
        self
    }

    /// For this device.
    #[must_use]
    pub fn device(mut self, device: &DeviceId) -> Self {
        self.subject.device = Some(device.clone());
        self
    }

    /// For a check of this action (auth tokens).
    #[must_use]
    pub fn permission(mut self, action: &Permission) -> Self {
        self.subject.permission = Some(action.clone());
        self
    }

    /// For this endpoint, no method in particular.
    #[must_use]
    pub fn at_endpoint(mut self, endpoint: &EndpointId) -> Self {
        self.subject.endpoint = Some(endpoint.clone());
        self
    }

    /// For this endpoint and method.
    #[must_use]
    pub fn endpoint(mut self, endpoint: &EndpointId, method: Method) -> Self {
        self.subject.endpoint = Some(endpoint.clone());
        self.subject.method = Some(method);
        self
    }
}
