//! [`TokenRecord`]: what is stored for a token of any kind. It holds a digest, never a secret in
//! the clear (a deployment token's secret, and an onboarding token's where enabled, is kept
//! [sealed](crate::seal::Sealed) under the pepper).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::Actor;
use crate::digest::{Digest, Hint};
use crate::format::{Kind, Spelling};
use crate::id::{TokenId, UserId};
use crate::kind::KindData;
use crate::kind::onboarding::UsageLimit;
use crate::lifecycle::State;
use crate::seal::Sealed;

/// Everything stored about one token.
#[derive(Clone, Debug, Eq, PartialEq)]
// In this order: what a validation reads (state, limits, times, kind data) together on a few
// cache lines of a shared record; then what listings and writes read.
#[repr(C)]
pub struct TokenRecord {
    /// Its id.
    pub id: TokenId,
    /// Where it is in its life.
    pub state: State,
    /// How many times it may be used.
    pub limit: UsageLimit,
    /// How many times it was used (consumed uses for limited tokens, accepted uses otherwise).
    pub uses: u64,
    /// When it stops being accepted, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// While [`State::Superseded`], when its grace window ends.
    pub grace_until: Option<OffsetDateTime>,
    /// When it last became active (issue, enable or reactivation): the inactivity clock starts
    /// at the later of this and `last_used_at`.
    pub activated_at: OffsetDateTime,
    /// When it was last accepted (coalesced: may lag by the configured interval).
    pub last_used_at: Option<OffsetDateTime>,
    /// Its kind's own fields.
    pub data: KindData,
    /// The keyed digest of its secret.
    pub digest: Digest,
    /// How its secret is spelled.
    pub spelling: Spelling,
    /// The non-secret hint shown in listings.
    pub hint: Hint,
    /// The secret sealed under a pepper, for kinds that show it again (deployment tokens, and
    /// onboarding tokens created with sealing on); `None` for the others.
    pub sealed: Option<Sealed>,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// Who issued it.
    pub created_by: Actor,
    /// The admin who issued it for someone else, when one did.
    pub generated_by: Option<UserId>,
    /// The token that replaced it by rotation or renewal.
    pub successor: Option<TokenId>,
}

impl TokenRecord {
    /// The token's kind.
    pub const fn kind(&self) -> Kind {
        self.data.kind()
    }

    /// Uses left, `None` when unlimited.
    pub fn remaining(&self) -> Option<u64> {
        self.limit.remaining(self.uses)
    }

    /// When inactivity is counted from.
    pub fn last_activity(&self) -> OffsetDateTime {
        match self.last_used_at {
            Some(u) if u > self.activated_at => u,
            _ => self.activated_at,
        }
    }

    /// Whether it is past its expiry at `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.state == State::Expired || self.expires_at.is_some_and(|e| e <= now)
    }

    /// The state a reader should see at `now`: stored state with lazy expiry, grace and
    /// exhaustion applied, without writing anything.
    pub fn effective_state(&self, now: OffsetDateTime) -> State {
        match self.state {
            s if s.is_terminal() => s,
            State::Superseded if self.grace_until.is_none_or(|g| g <= now) => State::RotatedOut,
            s if matches!(
                s,
                State::Active | State::Superseded | State::Disabled | State::Dormant
            ) && self.expires_at.is_some_and(|e| e <= now) =>
            {
                State::Expired
            }
            State::Active | State::Superseded if self.limit.is_exhausted(self.uses) => {
                State::Exhausted
            }
            s => s,
        }
    }
}

/// A record's fields that listings and the CLI print, without the digest.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct TokenSummary {
    /// Its id.
    pub id: TokenId,
    /// Its kind.
    pub kind: Kind,
    /// Its name, when the kind has one.
    pub name: Option<String>,
    /// The hint.
    pub hint: String,
    /// How the secret is spelled (a QR-friendly prefixed token, a short code, ...).
    pub spelling: Spelling,
    /// The effective state.
    pub state: State,
    /// Issued at.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expires at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Last used at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Uses so far.
    pub uses: u64,
    /// Uses left, `None` when unlimited.
    pub remaining: Option<u64>,
    /// Issued by an admin for someone else.
    pub generated_by: Option<UserId>,
}

impl TokenRecord {
    /// A printable summary at `now`.
    pub fn summary(&self, now: OffsetDateTime) -> TokenSummary {
        TokenSummary {
            id: self.id,
            kind: self.kind(),
            name: self.data.display_name().map(str::to_owned),
            hint: self.hint.as_str().to_owned(),
            spelling: self.spelling,
            state: self.effective_state(now),
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            uses: self.uses,
            remaining: self.remaining(),
            generated_by: self.generated_by.clone(),
        }
    }
}
