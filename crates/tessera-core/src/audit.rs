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
    /// window of uses (a minute by default, see `LedgerSettings::audit_window` in `tessera`).
    UsedMany {
        /// Accepted uses in the row's window.
        count: u64,
        /// The last of them (the event's `at` is the first).
        #[serde(with = "time::serde::rfc3339")]
        last: OffsetDateTime,
        /// Distinct client addresses among them (counted up to
        /// [`AuditAction::MAX_DISTINCT`], the bound when reached).
        addresses: u64,
        /// The row's key: a later version of the row (more uses in its window) replaces the
        /// stored one with the same key. `None` in rows written before keys existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        row: Option<RowKey>,
    },
    /// A token was presented and refused `count` times for `reason` between `at` (the first)
    /// and `last`: the usage ledger's aggregated row.
    RefusedMany {
        /// Why (the exact internal reason; never sent to the client).
        reason: Rejection,
        /// Refusals in the row's window.
        count: u64,
        /// The last of them (the event's `at` is the first).
        #[serde(with = "time::serde::rfc3339")]
        last: OffsetDateTime,
        /// Distinct client addresses among them (counted up to
        /// [`AuditAction::MAX_DISTINCT`]).
        addresses: u64,
        /// The row's key (see [`AuditAction::UsedMany`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        row: Option<RowKey>,
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

    /// The key of an aggregated row, if this is one that has a key.
    pub const fn row(&self) -> Option<RowKey> {
        match self {
            Self::UsedMany { row, .. } | Self::RefusedMany { row, .. } => *row,
            _ => None,
        }
    }
}

/// The key of one aggregated row of the usage ledger ([`AuditAction::UsedMany`],
/// [`AuditAction::RefusedMany`]): the ledger writes a row's totals so far at every batch of its
/// window, and a store keeps one row per key, the latest.
///
/// Written as 32 hexadecimal digits.
///
/// ```
/// use tessera_core::audit::RowKey;
///
/// let key = RowKey::from_u128(0x2a);
/// assert_eq!(key.to_string(), "0000000000000000000000000000002a");
/// assert_eq!("0000000000000000000000000000002a".parse::<RowKey>(), Ok(key));
/// assert!("2a".parse::<RowKey>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct RowKey(u128);

impl RowKey {
    /// The key with this value.
    pub const fn from_u128(value: u128) -> Self {
        Self(value)
    }

    /// Its value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A row key that is not 32 hexadecimal digits.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("a row key is 32 hexadecimal digits")]
pub struct RowKeyError;

impl core::str::FromStr for RowKey {
    type Err = RowKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::id::hex128(s).map(Self).ok_or(RowKeyError)
    }
}

impl Serialize for RowKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RowKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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
