//! Values the store traits take and return, beyond the core's records.

use std::net::IpAddr;
use std::sync::Arc;

use tessera_core::Kind;
use tessera_core::audit::{AuditAction, AuditEvent};
use tessera_core::id::{DeviceId, EndpointId, TokenId, UserId};
use tessera_core::kind::endpoint::Method;
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::validate::Rejection;
use time::OffsetDateTime;

use crate::slot::UseSlot;

/// A change to stored records that a watching backend reports (see
/// [`Store::watch`](crate::Store::watch)).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// What a validation reads of this token (its state, secret, expiry, grace, kind data)
    /// changed, or the token was removed.
    Token(TokenId),
    /// Changes may have gone unreported: take anything as changed.
    Unknown,
    /// The watch lost its connection (or stopped hearing from the server): from now until
    /// [`Change::Resumed`], changes may go unreported. A cache must keep nothing and serve
    /// nothing from memory meanwhile.
    Lost,
    /// The watch listens again (a fresh subscription the server confirmed): every change
    /// committed from now on is reported. Changes made while it was lost were not; take
    /// anything as changed.
    Resumed,
}

/// Where a watching backend reports [`Change`]s (see [`Store::watch`](crate::Store::watch)).
///
/// A closure `Fn(Change) -> bool` is a watcher that is always wanted.
pub trait Watcher: Send + Sync {
    /// Take a report; answer whether more are wanted. Once it answers `false` it is told
    /// nothing more.
    fn changed(&self, change: Change) -> bool;

    /// Whether reports are still wanted, asked now and then between reports: once it answers
    /// `false` the backend stops watching for it and frees what the watch held.
    fn wanted(&self) -> bool {
        true
    }
}

impl<F: Fn(Change) -> bool + Send + Sync> Watcher for F {
    fn changed(&self, change: Change) -> bool {
        self(change)
    }
}

/// A [`Watcher`], shared with the backend that reports to it.
pub type ChangeSink = Arc<dyn Watcher>;

/// A compare-and-set state change: applied only if the token is still in `from`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StateChange {
    /// The state the caller read.
    pub from: State,
    /// The state to set.
    pub to: State,
    /// When (becomes `activated_at` when `to` is `Active`).
    pub at: OffsetDateTime,
    /// The grace window end to store (`None` clears it).
    pub grace_until: Option<OffsetDateTime>,
    /// The successor to record, if any (`None` leaves it as it is).
    pub successor: Option<TokenId>,
}

impl StateChange {
    /// `from` -> `to` at `at`, with no grace and no successor.
    pub const fn new(from: State, to: State, at: OffsetDateTime) -> Self {
        Self {
            from,
            to,
            at,
            grace_until: None,
            successor: None,
        }
    }
}

/// What an atomic redemption did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Redemption {
    /// One use was consumed and the device recorded; the record as it is now.
    Redeemed(TokenRecord),
    /// The device was enrolled by this token already: nothing was consumed or recorded; the
    /// record as it is now and the device's enrollment (one device, one use).
    Repeated {
        /// The record, unchanged.
        record: TokenRecord,
        /// The device's first (and only) enrollment.
        enrollment: Enrollment,
    },
    /// Nothing changed, for this reason.
    Refused(Rejection),
}

impl Redemption {
    /// Whether a device already enrolled by `record` gets its enrollment back at `now`
    /// ([`Redemption::Repeated`]): yes while the token is active, in its grace window or
    /// exhausted, and not expired; otherwise the refusal any redemption would get. Every
    /// backend answers a repeat by this rule.
    ///
    /// # Errors
    ///
    /// The rejection: `Expired`, `Revoked`, `Disabled`, `RotatedOut`, ...
    pub fn repeat_allowed(record: &TokenRecord, now: OffsetDateTime) -> Result<(), Rejection> {
        if record.expires_at.is_some_and(|e| e <= now) {
            return Err(Rejection::Expired);
        }
        match record.effective_state(now) {
            State::Active | State::Superseded | State::Exhausted => Ok(()),
            State::Disabled => Err(Rejection::Disabled),
            State::Dormant => Err(Rejection::Dormant),
            State::RotatedOut => Err(Rejection::RotatedOut),
            State::Expired => Err(Rejection::Expired),
            State::Revoked => Err(Rejection::Revoked),
            State::Deleted => Err(Rejection::Deleted),
        }
    }
}

/// The audit events a redemption writes with the outcome it decides, in the same transaction
/// as that outcome (see [`Store::redeem`](crate::Store::redeem)): one template per outcome,
/// completed by the store with the token it decided on ([`AuditEvent::about`]). A redemption
/// that consumed a use and its event are stored together or not at all.
///
/// A template left `None` writes nothing for that outcome; [`RedeemEvents::NONE`] writes
/// nothing at all.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct RedeemEvents {
    /// Written with a redemption that consumed a use ([`Redemption::Redeemed`]), about the
    /// record as stored after it.
    pub redeemed: Option<AuditEvent>,
    /// Written when a device the token enrolled already got its enrollment back
    /// ([`Redemption::Repeated`]; nothing consumed).
    pub repeated: Option<AuditEvent>,
    /// Written when an onboarding token refused the redemption ([`Redemption::Refused`] of a
    /// token that exists and is an onboarding token), its action set to
    /// [`AuditAction::Refused`] with the store's reason.
    pub refused: Option<AuditEvent>,
}

impl RedeemEvents {
    /// No events for any outcome.
    pub const NONE: Self = Self {
        redeemed: None,
        repeated: None,
        refused: None,
    };

    /// Write `event` with a redemption that consumed a use.
    #[must_use]
    pub fn redeemed(mut self, event: AuditEvent) -> Self {
        self.redeemed = Some(event);
        self
    }

    /// Write `event` when an enrolled device gets its enrollment back.
    #[must_use]
    pub fn repeated(mut self, event: AuditEvent) -> Self {
        self.repeated = Some(event);
        self
    }

    /// Write `event` (its action replaced by the refusal) when the token refuses.
    #[must_use]
    pub fn refused(mut self, event: AuditEvent) -> Self {
        self.refused = Some(event);
        self
    }

    /// The templates given, to check before anything changes that each can be stored.
    pub fn templates(&self) -> impl Iterator<Item = &AuditEvent> {
        [&self.redeemed, &self.repeated, &self.refused]
            .into_iter()
            .flatten()
    }

    /// The event to store with `outcome`, decided on `record` (the onboarding token as the
    /// store holds it once the outcome is decided; `None` when no onboarding token has the
    /// digest). Every backend writes exactly this.
    pub fn event(&self, outcome: &Redemption, record: Option<&TokenRecord>) -> Option<AuditEvent> {
        match outcome {
            Redemption::Redeemed(r) => self.redeemed.clone().map(|e| e.about(r)),
            Redemption::Repeated { record, .. } => self.repeated.clone().map(|e| e.about(record)),
            Redemption::Refused(Rejection::NotFound) => None,
            Redemption::Refused(reason) => {
                let record = record?;
                let mut e = self.refused.clone()?.about(record);
                e.action = AuditAction::Refused { reason: *reason };
                Some(e)
            }
        }
    }
}

/// One device that redeemed an onboarding token.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Enrollment {
    /// The device.
    pub device: DeviceId,
    /// When it redeemed.
    pub at: OffsetDateTime,
}

/// What usage is counted against.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum UsageSubject {
    /// A client address (application tokens).
    Ip(IpAddr),
    /// An endpoint and method (endpoint tokens: traffic per integration).
    Endpoint(EndpointId, Method),
}

/// Counted usage of one token by one subject.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UsageEntry {
    /// The token.
    pub token: TokenId,
    /// By what.
    pub subject: UsageSubject,
    /// First accepted use.
    pub first_seen: Option<OffsetDateTime>,
    /// Last accepted use.
    pub last_seen: Option<OffsetDateTime>,
    /// Accepted uses.
    pub count: u64,
    /// Whether this subject is blocked for this token (addresses only).
    pub blocked: bool,
}

/// What an atomic usage upsert did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum UsageOutcome {
    /// Counted; the entry as it is now.
    Counted(UsageEntry),
    /// The subject is blocked for this token; nothing was counted.
    Blocked,
}

/// Which tokens a listing returns. Every field narrows; the default lists everything.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct TokenFilter {
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only tokens in one of these stored states.
    pub states: Option<Vec<State>>,
    /// Only auth tokens of this owner.
    pub owner: Option<UserId>,
    /// Only endpoint primaries of this endpoint.
    pub endpoint: Option<EndpointId>,
    /// Only tokens whose expiry is set and at or before this instant.
    pub expires_before: Option<OffsetDateTime>,
}

impl TokenFilter {
    /// Only this kind.
    #[must_use]
    pub const fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only these stored states.
    #[must_use]
    pub fn states(mut self, states: impl IntoIterator<Item = State>) -> Self {
        self.states = Some(states.into_iter().collect());
        self
    }

    /// Only this owner's auth tokens.
    #[must_use]
    pub fn owner(mut self, owner: UserId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Only this endpoint's primaries.
    #[must_use]
    pub fn endpoint(mut self, endpoint: EndpointId) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Only tokens expiring at or before `at`.
    #[must_use]
    pub const fn expires_before(mut self, at: OffsetDateTime) -> Self {
        self.expires_before = Some(at);
        self
    }

    /// Whether `r` passes the filter (the reference semantics every backend implements).
    pub fn matches(&self, r: &TokenRecord) -> bool {
        use tessera_core::kind::{EndpointData, KindData};
        self.kind.is_none_or(|k| r.kind() == k)
            && self.states.as_ref().is_none_or(|s| s.contains(&r.state))
            && self.owner.as_ref().is_none_or(|o| {
                matches!(&r.data, KindData::Auth(a) if &a.owner == o)
            })
            && self.endpoint.as_ref().is_none_or(|e| {
                matches!(&r.data, KindData::Endpoint(EndpointData::Primary { endpoint, .. }) if endpoint == e)
            })
            && self
                .expires_before
                .is_none_or(|t| r.expires_at.is_some_and(|e| e <= t))
    }
}

/// Which audit events a query returns, oldest first.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct AuditFilter {
    /// Only events about this token.
    pub token: Option<TokenId>,
    /// Only events by this actor.
    pub actor: Option<tessera_core::audit::Actor>,
    /// Only events at or after.
    pub since: Option<OffsetDateTime>,
    /// Only events before.
    pub until: Option<OffsetDateTime>,
    /// At most this many (the oldest that match).
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Only events about this token.
    #[must_use]
    pub const fn token(mut self, id: TokenId) -> Self {
        self.token = Some(id);
        self
    }

    /// Only events by this actor.
    #[must_use]
    pub fn actor(mut self, actor: tessera_core::audit::Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Only events at or after `at`.
    #[must_use]
    pub const fn since(mut self, at: OffsetDateTime) -> Self {
        self.since = Some(at);
        self
    }

    /// Only events before `at`.
    #[must_use]
    pub const fn until(mut self, at: OffsetDateTime) -> Self {
        self.until = Some(at);
        self
    }

    /// At most `n` events.
    #[must_use]
    pub const fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether `e` passes the filter, limit aside.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.token.is_none_or(|t| e.subject.token == Some(t))
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self.since.is_none_or(|s| e.at >= s)
            && self.until.is_none_or(|u| e.at < u)
    }
}

/// What a backend can do beyond the traits' contract; conformance cases gate on it.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Several processes can share the store.
    pub shared_across_processes: bool,
    /// Data survives a restart.
    pub durable: bool,
}

/// A stored record shared between the store, the validation cache and the validations using
/// it ([`Store::find_shared`](crate::Store::find_shared)), with what a validation decides on
/// beside the record: the addresses blocked for the token.
///
/// Shared read-only behind an [`Arc`]: a validation holds it without copying the record. Beside
/// it, a [`UseSlot`] where a service's usage ledger counts repeated uses without a lock.
#[derive(Clone, Debug, Eq, PartialEq)]
// The slot and the block list first: beside the `Arc`'s counts, which a validation touches
// anyway.
#[repr(C)]
pub struct SharedRecord {
    uses: UseSlot,
    /// Blocked addresses in their canonical spelling, sorted.
    blocked: Box<[IpAddr]>,
    record: TokenRecord,
}

impl SharedRecord {
    /// `record`, with `blocked` the addresses blocked for it (any spelling, any order).
    pub fn new(record: TokenRecord, blocked: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut blocked: Vec<IpAddr> = blocked
            .into_iter()
            .map(tessera_core::net::canonical)
            .collect();
        blocked.sort_unstable();
        blocked.dedup();
        Self {
            uses: UseSlot::new(),
            blocked: blocked.into_boxed_slice(),
            record,
        }
    }

    /// Where a service's usage ledger counts this record's repeated uses (see [`UseSlot`]).
    pub const fn use_slot(&self) -> &UseSlot {
        &self.uses
    }

    /// The record.
    pub const fn record(&self) -> &TokenRecord {
        &self.record
    }

    /// The record, owned.
    pub fn into_record(self) -> TokenRecord {
        self.record
    }

    /// The record, to change (then [`SharedRecord::set_blocked`] keeps the block list).
    pub fn record_mut(&mut self) -> &mut TokenRecord {
        &mut self.record
    }

    /// The addresses blocked for the token (canonical spelling, sorted).
    pub fn blocked(&self) -> &[IpAddr] {
        &self.blocked
    }

    /// Whether `ip` (any spelling) is blocked for the token.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        !self.blocked.is_empty()
            && self
                .blocked
                .binary_search(&tessera_core::net::canonical(ip))
                .is_ok()
    }

    /// Block or unblock `ip` in this copy.
    pub fn set_blocked(&mut self, ip: IpAddr, blocked: bool) {
        let ip = tessera_core::net::canonical(ip);
        let mut list = core::mem::take(&mut self.blocked).into_vec();
        match (list.binary_search(&ip), blocked) {
            (Err(at), true) => list.insert(at, ip),
            (Ok(at), false) => {
                list.remove(at);
            }
            _ => {}
        }
        self.blocked = list.into_boxed_slice();
    }
}

impl core::ops::Deref for SharedRecord {
    type Target = TokenRecord;

    fn deref(&self) -> &TokenRecord {
        &self.record
    }
}

/// Which batch of bookkeeping this is: a batch written twice (a retry after an answer was lost)
/// counts once. Drawn at random by the writer.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct BatchId(pub u128);

/// Uses of one token by one subject, aggregated over an interval.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UsageDelta {
    /// The token.
    pub token: TokenId,
    /// By what.
    pub subject: UsageSubject,
    /// The first use in the interval.
    pub first_seen: OffsetDateTime,
    /// The last use in the interval.
    pub last_seen: OffsetDateTime,
    /// Uses in the interval (at least one).
    pub count: u64,
}

/// The usage ledger's bookkeeping of one interval, written by
/// [`Store::record_batch`](crate::Store::record_batch) in one transaction.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct UsageBatch {
    /// Its id: a batch with an id already written is not written again.
    pub id: BatchId,
    /// Counts to add to usage entries (first seen only moves earlier, last seen only later).
    pub usage: Vec<UsageDelta>,
    /// Last uses: a token's `last_used_at` becomes this unless it is later already.
    pub last_used: Vec<(TokenId, OffsetDateTime)>,
    /// Audit events to append (aggregated use and refusal rows, or one per use); an
    /// aggregated row whose key is stored replaces the stored row.
    pub events: Vec<AuditEvent>,
}

impl UsageBatch {
    /// An empty batch with this id.
    pub const fn new(id: BatchId) -> Self {
        Self {
            id,
            usage: Vec::new(),
            last_used: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Whether it holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.usage.is_empty() && self.last_used.is_empty() && self.events.is_empty()
    }

    /// Uses it counts (the sum of its deltas).
    pub fn uses(&self) -> u64 {
        self.usage.iter().map(|d| d.count).sum()
    }
}
