//! The storage trait every backend implements.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tessera_core::audit::AuditEvent;
use tessera_core::digest::{Digest, Hint};
use tessera_core::id::{DeviceId, EndpointId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use time::{Duration, OffsetDateTime};

use crate::error::Result;
use crate::model::{
    AuditFilter, Capabilities, ChangeSink, Enrollment, RedeemEvents, Redemption, SharedRecord,
    StateChange, TokenFilter, UsageBatch, UsageEntry, UsageOutcome, UsageSubject,
};

/// Storage for token records, usage, endpoint mappings and audit.
///
/// Every method that decides something under concurrency is one atomic operation in the backend
/// (a conditional update or a transaction): callers never read then write to decide.
///
/// Every method that changes what an administrator manages (records, their state, data and
/// secret, purges, address blocks, endpoint mappings) takes the audit `events` that record the
/// change and commits them with it, in one transaction: either the change and all its events
/// are stored, or neither (a crash, a dropped future or an event that cannot be stored leaves
/// nothing). Events are appended in the order given, after the change. Uses and refusals,
/// which are many and change no decision, are appended on their own with [`Store::append`].
/// An event whose time falls outside the years 1677 to 2262 (Unix nanoseconds in an `i64`)
/// cannot be stored: the change it goes with is refused whole.
///
/// Every record field round-trips exactly, text byte for byte and timestamps to at least the
/// microsecond (as instants: the offset they were given in need not be kept). The conformance
/// suite (`tessera_store::conformance`, feature `conformance`) is the executable form of this
/// contract.
#[async_trait]
pub trait Store: core::fmt::Debug + Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    // ---- records ----

    /// Store a new record.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` when the id or digest is taken, or an application token's name is taken
    /// by another application token that is still in force (any state but `Superseded`,
    /// `RotatedOut`, `Revoked` and `Deleted`, so a rotation can reuse the name).
    async fn insert(&self, record: &TokenRecord, events: &[AuditEvent]) -> Result<()>;

    /// Store many new records, all or none.
    ///
    /// # Errors
    ///
    /// As [`Store::insert`]; on error nothing is stored, events included.
    async fn insert_many(&self, records: &[TokenRecord], events: &[AuditEvent]) -> Result<()>;

    /// The record with this id (in any state, including `Deleted` tombstones).
    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord>>;

    /// The record whose digest is `digest` (the validation lookup; indexed).
    async fn find_by_digest(&self, digest: &Digest) -> Result<Option<TokenRecord>>;

    /// The record whose digest is `digest` with the addresses blocked for it, shared: the
    /// validation lookup, one read. A backend that keeps records in memory hands out the one it
    /// holds (no copy); the default reads [`Store::find_by_digest`] and, for an application
    /// token, its [`Store::usage`].
    ///
    /// The block list is read with the record: a block set after it was read is not in it
    /// (a validation that read it decided before the block).
    async fn find_shared(&self, digest: &Digest) -> Result<Option<Arc<SharedRecord>>> {
        let Some(record) = self.find_by_digest(digest).await? else {
            return Ok(None);
        };
        let blocked = if record.kind() == tessera_core::Kind::Application {
            self.usage(record.id)
                .await?
                .into_iter()
                .filter(|u| u.blocked)
                .filter_map(|u| match u.subject {
                    UsageSubject::Ip(ip) => Some(ip),
                    UsageSubject::Endpoint(..) => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Some(Arc::new(SharedRecord::new(record, blocked))))
    }

    /// Records passing `filter` (as [`TokenFilter::matches`]), oldest `created_at` first.
    async fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>>;

    /// Apply `change` if the token is still in `change.from`; returns the updated record.
    ///
    /// # Errors
    ///
    /// `NotFound`; `Conflict` when the state is no longer `change.from`; `AlreadyExists` when
    /// the change brings an application token back into force while another token in force
    /// holds its name (a superseded token expired after its successor took the name).
    async fn change_state(
        &self,
        id: TokenId,
        change: &StateChange,
        events: &[AuditEvent],
    ) -> Result<TokenRecord>;

    /// Atomically apply `change` to `old` (as [`Store::change_state`]) and then insert `new`: a
    /// rotation or a renewal. Either both happen or neither. The change is applied first, so
    /// `new` may reuse the application name `old` held. Returns `old` as changed (as
    /// [`Store::change_state`] does).
    ///
    /// # Errors
    ///
    /// As both halves (`NotFound` and `Conflict` for `old`, `AlreadyExists` for `new`); on error
    /// nothing changed.
    async fn replace(
        &self,
        old: TokenId,
        change: &StateChange,
        new: &TokenRecord,
        events: &[AuditEvent],
    ) -> Result<TokenRecord>;

    /// Replace a token's kind data (toggles, descriptions). The kind must not change.
    ///
    /// # Errors
    ///
    /// `NotFound`; `Conflict` when the stored kind differs; `AlreadyExists` when an application
    /// token is renamed to a name another token in force holds.
    async fn update_data(
        &self,
        id: TokenId,
        data: &KindData,
        events: &[AuditEvent],
    ) -> Result<TokenRecord>;

    /// Give a token a new secret in place (same id, same mappings): the old secret stops
    /// working at once. Any sealed secret (the old one's) is dropped.
    ///
    /// # Errors
    ///
    /// `NotFound`; `AlreadyExists` when the digest is taken.
    async fn set_digest(
        &self,
        id: TokenId,
        digest: &Digest,
        hint: &Hint,
        events: &[AuditEvent],
    ) -> Result<TokenRecord>;

    /// Replace a token's sealed secret (a re-seal under a newer pepper), or drop it with
    /// `None`, with its `events`. Changes nothing else.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn set_sealed(
        &self,
        id: TokenId,
        sealed: Option<&Sealed>,
        events: &[AuditEvent],
    ) -> Result<TokenRecord>;

    /// Record a use at `now` unless one was recorded less than `interval` ago: at most one
    /// write per token per interval (a use exactly `interval` later writes). Returns whether it
    /// wrote. Changes nothing but `last_used_at`.
    async fn touch(&self, id: TokenId, now: OffsetDateTime, interval: Duration) -> Result<bool>;

    /// Remove records for good, with their usage, enrollments and mappings (audit stays).
    /// Returns how many were removed.
    async fn purge(&self, ids: &[TokenId], events: &[AuditEvent]) -> Result<u64>;

    // ---- onboarding ----

    /// Atomically redeem the onboarding token with `digest` for `device` at `now`: if it is
    /// usable (active or in grace, not expired, uses left, binding admits the device), consume
    /// one use, record the device, bind a first-device binding, mark it `Exhausted` on its last
    /// use and set its last use; otherwise change nothing and say why.
    ///
    /// Precisely: a digest no token has, or a token of another kind (in any state), is refused
    /// as [`Rejection::NotFound`](tessera_core::validate::Rejection::NotFound). Otherwise the
    /// answer is [`validate`](tessera_core::validate::validate) of the current record with
    /// `Request::Onboarding { device }` at `now`: its rejection is the refusal; if it accepts
    /// (effective state `Active` or `Superseded` with `grace_until > now`, `expires_at > now`
    /// if set, `uses < limit`, binding admits `device`), `uses` grows by one, `last_used_at`
    /// becomes `now`, `FirstDevice(None)` becomes `FirstDevice(Some(device))`, the state becomes
    /// `Exhausted` when no use is left, the device is enrolled at `now`, and the record as
    /// stored is returned. Under any concurrency a token with N uses admits at most N.
    ///
    /// One device, one use: when `device` is already enrolled by this token, nothing is
    /// consumed or recorded and the answer is [`Redemption::Repeated`] with its enrollment, as
    /// long as the token is active, in grace or exhausted (a repeat after the last use still
    /// gets the device its enrollment back) and not expired; a revoked, disabled, rotated-out or
    /// expired token refuses the repeat as it refuses any redemption. The decision is atomic
    /// with the redemptions: under any concurrency and repetition a token with N uses enrolls
    /// exactly min(N, distinct devices) devices, each once.
    ///
    /// The audit event of the outcome ([`RedeemEvents::event`]: the use, the repeat or the
    /// refusal) is written in the same transaction as the outcome: a redemption that consumed a
    /// use is stored with its event or, on any error (an event that cannot be stored, a dropped
    /// future, a lost connection), not at all.
    ///
    /// # Errors
    ///
    /// Store failures; an event template whose time cannot be stored (see the trait's
    /// documentation), before anything changes.
    async fn redeem(
        &self,
        digest: &Digest,
        device: &DeviceId,
        now: OffsetDateTime,
        events: &RedeemEvents,
    ) -> Result<Redemption>;

    /// Devices that redeemed a token, oldest first.
    async fn enrollments(&self, id: TokenId) -> Result<Vec<Enrollment>>;

    /// The devices that redeemed each of `ids`, as (token, enrollment) pairs: each token's
    /// oldest first, tokens in the order of `ids` (a listing's enrollments in one read; a
    /// token with none, or that does not exist, has no pair).
    ///
    /// The default asks [`enrollments`](Self::enrollments) once per token; the bundled
    /// backends answer in one query.
    async fn enrollments_of(&self, ids: &[TokenId]) -> Result<Vec<(TokenId, Enrollment)>> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend(self.enrollments(id).await?.into_iter().map(|e| (id, e)));
        }
        Ok(out)
    }

    // ---- usage (IP log, endpoint traffic) ----

    /// Atomically count one accepted use of token `id` by `subject` at `now` (first seen, last
    /// seen, count + 1), unless the subject is blocked for the token.
    ///
    /// # Errors
    ///
    /// `NotFound` when the token does not exist; nothing is stored.
    async fn record_usage(
        &self,
        id: TokenId,
        subject: &UsageSubject,
        now: OffsetDateTime,
    ) -> Result<UsageOutcome>;

    /// Write the usage ledger's bookkeeping of one interval in one transaction, all or
    /// nothing: add each [`UsageDelta`](crate::UsageDelta)'s count to its usage entry (creating
    /// it unblocked; first seen only moves earlier, last seen only later; a blocked entry
    /// counts too: the uses were accepted before the block), move each token's `last_used_at`
    /// later (never earlier), and append the events. Counts and last uses of tokens that no
    /// longer exist are skipped; their events are appended (audit outlives a purge).
    ///
    /// An aggregated row with a key ([`AuditAction::row`](tessera_core::audit::AuditAction::row))
    /// whose key is already stored **replaces** that stored row instead (the ledger writes a
    /// row's totals so far at every batch of its window): one row per key, the latest.
    ///
    /// Returns `false`, changing nothing, when a batch with the same [`id`](UsageBatch::id)
    /// was written before: a batch retried after its answer was lost counts once. Nothing here
    /// is announced to [watchers](Store::watch): a validation decides nothing on counts.
    async fn record_batch(&self, batch: &UsageBatch) -> Result<bool>;

    /// Whether `ip` is blocked for token `id`.
    async fn is_blocked(&self, id: TokenId, ip: IpAddr) -> Result<bool>;

    /// Block or unblock `ip` for token `id` (creating the entry with no uses if new); returns
    /// the entry. This changes what a validation reads ([`Store::find_shared`]'s block list):
    /// a watching backend reports it as a change of the token.
    ///
    /// # Errors
    ///
    /// `NotFound` when the token does not exist.
    async fn set_blocked(
        &self,
        id: TokenId,
        ip: IpAddr,
        blocked: bool,
        events: &[AuditEvent],
    ) -> Result<UsageEntry>;

    /// Usage entries of one token, in [`UsageSubject`] order (addresses first, then endpoints).
    async fn usage(&self, id: TokenId) -> Result<Vec<UsageEntry>>;

    /// Usage entries of every token on one endpoint, any method (traffic per integration), in
    /// no particular order.
    async fn endpoint_usage(&self, endpoint: &EndpointId) -> Result<Vec<UsageEntry>>;

    // ---- endpoint mappings ----

    /// Map a secondary to an endpoint's primary slot.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` when that mapping exists; `NotFound` when the secondary does not.
    async fn put_mapping(&self, mapping: &Mapping, events: &[AuditEvent]) -> Result<()>;

    /// The mapping of `secondary` to (`endpoint`, `method`).
    async fn mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
    ) -> Result<Option<Mapping>>;

    /// Turn a mapping on or off.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn set_mapping_enabled(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        enabled: bool,
        events: &[AuditEvent],
    ) -> Result<Mapping>;

    /// Remove a mapping.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn remove_mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        events: &[AuditEvent],
    ) -> Result<()>;

    /// Mappings, narrowed to one secondary and/or one endpoint, in no particular order.
    async fn mappings(
        &self,
        secondary: Option<TokenId>,
        endpoint: Option<&EndpointId>,
    ) -> Result<Vec<Mapping>>;

    // ---- change notification ----

    /// Report to `sink`, from now on, every change to what a validation reads of a token (its
    /// state, secret, expiry, grace window or kind data; not its last use or use count) made
    /// through any handle on this storage, including other processes, until `sink` answers
    /// `false`. Returns whether the backend watches; the default does not (`false`), and then
    /// caches must rely on their time to live alone.
    ///
    /// A backend that returns `true` reports every change committed after this call returned,
    /// shortly after its commit, or [`Change::Unknown`](crate::Change::Unknown) when it may
    /// have missed some. When it may be missing changes for a while (a lost connection) it
    /// reports [`Change::Lost`](crate::Change::Lost) as soon as it notices, then
    /// [`Change::Resumed`](crate::Change::Resumed) once it is sure to see every change again;
    /// between the two nothing it reports can be relied on.
    async fn watch(&self, sink: ChangeSink) -> Result<bool> {
        let _ = sink;
        Ok(false)
    }

    // ---- audit ----

    /// Append an event on its own: for uses and refusals. A change's events go with the
    /// change (see the trait's documentation), a redemption's with the redemption.
    async fn append(&self, event: &AuditEvent) -> Result<()>;

    /// Events passing `filter`, oldest `at` first (events at one instant in the order they were
    /// appended), at most `filter.limit` of them (the oldest).
    async fn events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;
}
