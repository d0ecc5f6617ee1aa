//! [`TokenService`]: the one entry point, over any [`Store`].

use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::digest::{Digest, Peppers};
use tessera_core::format::{self, Entropy, Presented, Spelling};
use tessera_core::id::{EndpointId, TokenId, UserId};
use tessera_core::kind::KindData;
use tessera_core::kind::application::{AccessCatalog, InactivityPolicy};
use tessera_core::kind::endpoint::Method;
use tessera_core::kind::onboarding::UsageLimit;
use tessera_core::lifecycle::{Action, State};
use tessera_core::record::{TokenRecord, TokenSummary};
use tessera_core::validate::Rejection;
use tessera_core::{Kind, Secret};
use tessera_store::{SharedRecord, StateChange, Store, StoreError};
use time::OffsetDateTime;

use crate::cache::{CachingStore, ValidationCache, unix_nanos};
use crate::error::{Error, Result};
use crate::ledger::{Flushed, Ledger, LedgerSettings, Note, Subject};
use crate::observe::Observer;

/// A token just issued: its secret, shown once, and its stored summary.
///
/// The secret is never stored and cannot be shown again; hand it to the person now.
#[derive(Debug)]
pub struct Issued {
    /// The secret: show it once.
    pub secret: Secret,
    /// What was stored.
    pub token: TokenSummary,
}

/// Hashes token ids and digests for the maps on the validation path. Ids are 128 random bits drawn by the service, so
/// folding them is enough and no outsider can aim collisions at it; SipHash cost more than the
/// rest of the cache lookup on the validation hot path.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u128(&mut self, v: u128) {
        // Both halves, so ids differing in either still spread.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "keeping the low 64 bits is the point"
        )]
        let (hi, lo) = ((v >> 64) as u64, v as u64);
        self.0 = (hi ^ lo.rotate_left(32)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A record found by its digest, and the time it was looked up at.
pub(crate) struct Found {
    pub(crate) record: Arc<SharedRecord>,
    pub(crate) now: OffsetDateTime,
}

impl Found {
    /// The record found for a token presented as `kind`: a record of another kind is as good
    /// as none.
    fn of(
        record: Arc<SharedRecord>,
        kind: Kind,
        now: OffsetDateTime,
    ) -> core::result::Result<Self, Rejection> {
        if record.kind() == kind {
            Ok(Self { record, now })
        } else {
            Err(Rejection::NotFound)
        }
    }
}

/// What [`TokenService::lookup_quick`] found out without the store.
pub(crate) enum Quick<'t> {
    /// The answer: a refusal, or the record (from the cache).
    Done(core::result::Result<Found, Rejection>),
    /// Ask the store for this digest under the current pepper (others follow), with the time
    /// if it was read.
    Ask(Presented<'t>, Digest, Option<(OffsetDateTime, i64)>),
}

/// The record a validation presents, or `return Ok(Err(rejection))` from the calling
/// validation: [`TokenService::lookup_quick`], then the store only when needed.
macro_rules! found_or_refuse {
    ($svc:expr, $kind:expr, $token:expr) => {
        match $svc.lookup_quick($kind, $token) {
            $crate::service::Quick::Done(Ok(found)) => found,
            $crate::service::Quick::Done(Err(rejection)) => return Ok(Err(rejection)),
            $crate::service::Quick::Ask(presented, digest, when) => {
                match $svc.lookup_stored(&presented, digest, when).await? {
                    Ok(found) => found,
                    Err(rejection) => return Ok(Err(rejection)),
                }
            }
        }
    };
}
pub(crate) use found_or_refuse;

/// Settings of a [`TokenService`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// How the usage ledger writes uses, last uses and their audit (every second by default).
    pub ledger: LedgerSettings,
    /// When unused application tokens go dormant and are deleted.
    pub inactivity: InactivityPolicy,
    /// Entropy of generated prefixed tokens.
    pub entropy: Entropy,
    /// Whether accepted uses are audited: as aggregated rows through the usage ledger (one per
    /// token, carrier and window of uses, [`LedgerSettings::audit_window`]), or one per use with
    /// [`LedgerSettings::audit_each_use`].
    pub audit_uses: bool,
    /// Whether refusals of known tokens are appended to the audit trail.
    pub audit_refusals: bool,
    /// The validation cache, if any (default none).
    pub validation_cache: Option<ValidationCache>,
    /// The access types application tokens may carry (default the seed's two).
    pub access_types: AccessCatalog,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ledger: LedgerSettings::new(),
            inactivity: InactivityPolicy::DEFAULT,
            entropy: Entropy::DEFAULT,
            audit_uses: true,
            audit_refusals: true,
            validation_cache: None,
            access_types: AccessCatalog::seed(),
        }
    }
}

/// Issue, validate, rotate and revoke tokens of the five kinds over one store.
///
/// Cheap to clone; clones share the store, peppers, clock and last-use cache. Reach each kind
/// through [`deployment`](Self::deployment), [`onboarding`](Self::onboarding),
/// [`endpoint`](Self::endpoint), [`auth`](Self::auth) and [`application`](Self::application);
/// operations every kind shares (rotate, revoke, sweep, audit) are methods here.
#[derive(Clone)]
pub struct TokenService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) peppers: Peppers,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    /// The validation cache, when configured; `store` is then this cache too.
    pub(crate) cache: Option<Arc<CachingStore>>,
    /// Uses, last uses and their audit, written behind the request path.
    pub(crate) ledger: Arc<Ledger>,
    /// Metric handles.
    pub(crate) observer: Observer,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("store", &self.inner.store)
            .field("clock", &self.inner.clock)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenService`].
#[derive(Debug)]
pub struct Builder {
    store: Arc<dyn Store>,
    peppers: Peppers,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl Builder {
    /// Read the time from this clock (a [`ManualClock`](tessera_core::clock::ManualClock) in
    /// tests).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How the usage ledger writes (default: every second; see [`LedgerSettings`]).
    #[must_use]
    pub const fn ledger(mut self, ledger: LedgerSettings) -> Self {
        self.settings.ledger = ledger;
        self
    }

    /// Application-token inactivity thresholds (default 30 and 90 days).
    #[must_use]
    pub const fn inactivity(mut self, policy: InactivityPolicy) -> Self {
        self.settings.inactivity = policy;
        self
    }

    /// The access types application tokens may carry: a closed set (default
    /// [`AccessCatalog::SEED`], Security Director and Third Party feeds). Creating a token with
    /// another type is refused.
    #[must_use]
    pub fn access_types(mut self, catalog: AccessCatalog) -> Self {
        self.settings.access_types = catalog;
        self
    }

    /// Entropy of generated tokens (default 256 bits).
    #[must_use]
    pub const fn entropy(mut self, entropy: Entropy) -> Self {
        self.settings.entropy = entropy;
        self
    }

    /// Whether to audit accepted uses (default on): as aggregated rows written by the usage
    /// ledger (count, first, last, distinct addresses per token, carrier and window of uses,
    /// [`LedgerSettings::audit_window`]), or one
    /// row per use with [`LedgerSettings::audit_each_use`]. Off, uses still count (last use,
    /// IP log, traffic, redemptions).
    #[must_use]
    pub const fn audit_uses(mut self, on: bool) -> Self {
        self.settings.audit_uses = on;
        self
    }

    /// Whether to audit refusals of known tokens (default on), aggregated as uses are.
    #[must_use]
    pub const fn audit_refusals(mut self, on: bool) -> Self {
        self.settings.audit_refusals = on;
        self
    }

    /// Keep records found by validation for up to `cache.ttl()` (default: no cache).
    ///
    /// In this process revocation stays exact: every write through this service, its clones
    /// or [`TokenService::store`] drops what it changed before it returns. Other instances
    /// over the same database: when the store watches for changes ([`Store::watch`];
    /// PostgreSQL does, with LISTEN/NOTIFY) their revocations, rotations and updates drop the
    /// cached copy as soon as the notification arrives (milliseconds; see
    /// [`cache_watches_changes`](TokenService::cache_watches_changes)); otherwise (SQLite
    /// shared by several processes), and whenever the watch lost its connection, `ttl` bounds
    /// how long a token revoked elsewhere may still be accepted here. Only found records are
    /// cached: a token issued by another instance is accepted at once. Onboarding redemptions
    /// always go to the store.
    #[must_use]
    pub const fn validation_cache(mut self, cache: ValidationCache) -> Self {
        self.settings.validation_cache = Some(cache);
        self
    }

    /// The service.
    pub fn build(self) -> TokenService {
        let cache = self
            .settings
            .validation_cache
            .map(|c| CachingStore::new(self.store.clone(), c));
        let store = match &cache {
            Some(c) => Arc::clone(c) as Arc<dyn Store>,
            None => self.store,
        };
        let ledger = Ledger::new(
            store.clone(),
            Arc::clone(&self.clock),
            self.settings.ledger,
            self.settings.audit_uses,
            self.settings.audit_refusals,
        );
        TokenService {
            inner: Arc::new(Inner {
                store,
                cache,
                peppers: self.peppers,
                clock: self.clock,
                settings: self.settings,
                ledger,
                observer: Observer::default(),
            }),
        }
    }
}

impl TokenService {
    /// A service over `store`, digesting under `peppers`, reading the system clock.
    ///
    /// New tokens are digested under the current pepper, whose [key id](tessera_core::digest::KeyId)
    /// is stored beside each digest; older peppers in `peppers` still validate the tokens
    /// digested under them. The CLI's pepper (its key file or `TESSERA_PEPPER`) has key id 1:
    /// a service sharing the CLI's database configures it as `Pepper::new(KeyId(1), bytes)`.
    pub fn new(store: impl Store, peppers: Peppers) -> Self {
        Self::builder(store, peppers).build()
    }

    /// Configure a service over `store`.
    pub fn builder(store: impl Store, peppers: Peppers) -> Builder {
        Builder {
            store: Arc::new(store),
            peppers,
            clock: Arc::new(SystemClock),
            settings: Settings::default(),
        }
    }

    /// Configure a service over a store shared with other services (several instances over
    /// one database, or one store behind several configurations).
    pub fn builder_shared(store: Arc<dyn Store>, peppers: Peppers) -> Builder {
        Builder {
            store,
            peppers,
            clock: Arc::new(SystemClock),
            settings: Settings::default(),
        }
    }

    /// The store. With a [validation cache](Builder::validation_cache) this is the cache in
    /// front of the store, so writes made through it keep the cache exact.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Generate a secret and the record that stores its digest, without storing it.
    pub(crate) fn mint(
        &self,
        kind: Kind,
        spelling: Spelling,
        data: KindData,
        limit: UsageLimit,
        expires_at: Option<OffsetDateTime>,
        created_by: Actor,
        generated_by: Option<UserId>,
        now: OffsetDateTime,
    ) -> Result<(Secret, TokenRecord)> {
        let secret = Secret::generate_with(kind, spelling, self.inner.settings.entropy)?;
        let presented =
            format::parse(kind, secret.expose_secret()).map_err(tessera_core::Error::from)?;
        let record = TokenRecord {
            id: TokenId::generate()?,
            digest: self.inner.peppers.current().digest(&presented),
            spelling,
            hint: presented.hint(),
            sealed: None,
            state: State::Active,
            created_at: now,
            created_by,
            generated_by,
            expires_at,
            last_used_at: None,
            activated_at: now,
            grace_until: None,
            successor: None,
            limit,
            uses: 0,
            data,
        };
        drop(presented);
        Ok((secret, record))
    }

    /// Keep `secret`, the secret of `record`, sealed in the record under the current pepper (for
    /// the kinds whose secret is shown again).
    pub(crate) fn seal_into(&self, secret: &Secret, record: &mut TokenRecord) -> Result<()> {
        record.sealed = Some(self.inner.peppers.seal(record.id, secret)?);
        Ok(())
    }

    /// Open a record's sealed secret.
    ///
    /// # Errors
    ///
    /// [`Error::NotSealed`] when it has none; the core's seal errors when the pepper that sealed
    /// it is retired or wrong.
    pub(crate) fn open(&self, record: &TokenRecord) -> Result<Secret> {
        let sealed = record.sealed.as_ref().ok_or_else(|| Error::NotSealed {
            kind: record.kind(),
            id: record.id.to_string(),
        })?;
        Ok(self.inner.peppers.open(record.id, sealed)?)
    }

    /// Store a minted token with its issue event, in one transaction.
    pub(crate) async fn store_issued(
        &self,
        secret: Secret,
        record: TokenRecord,
        now: OffsetDateTime,
    ) -> Result<Issued> {
        self.inner
            .store
            .insert(&record, &[issued_event(&record)])
            .await?;
        tracing::info!(kind = record.kind().as_str(), token_id = %record.id, "token issued");
        Ok(Issued {
            secret,
            token: record.summary(now),
        })
    }

    /// Store minted tokens with their issue events and `also`, all or none, in one transaction.
    pub(crate) async fn store_all_issued(
        &self,
        minted: Vec<(Secret, TokenRecord)>,
        also: &[AuditEvent],
        now: OffsetDateTime,
    ) -> Result<Vec<Issued>> {
        let (secrets, records): (Vec<Secret>, Vec<TokenRecord>) = minted.into_iter().unzip();
        let mut events: Vec<AuditEvent> = records.iter().map(issued_event).collect();
        events.extend_from_slice(also);
        self.inner.store.insert_many(&records, &events).await?;
        for record in &records {
            tracing::info!(kind = record.kind().as_str(), token_id = %record.id, "token issued");
        }
        Ok(secrets
            .into_iter()
            .zip(&records)
            .map(|(secret, record)| Issued {
                secret,
                token: record.summary(now),
            })
            .collect())
    }

    /// The part of a lookup that needs no store, as a plain function (a cache hit costs no
    /// future): a malformed token's refusal, a validation-cache hit under the current pepper, or
    /// what to ask the store with ([`lookup_stored`](Self::lookup_stored)).
    pub(crate) fn lookup_quick<'t>(&self, kind: Kind, text: &'t str) -> Quick<'t> {
        let Ok(presented) = format::parse(kind, text) else {
            return Quick::Done(Err(Rejection::Malformed));
        };
        let digest = self.inner.peppers.current().digest(&presented);
        let Some(cache) = &self.inner.cache else {
            // Without a cache the clock is read once the record is found: an unknown token
            // costs none.
            return Quick::Ask(presented, digest, None);
        };
        // With one, before: a record is kept from the instant before it was read.
        let now = self.now();
        let at = unix_nanos(now);
        match cache.cached(&digest, at) {
            Some(record) => Quick::Done(Found::of(record, presented.kind(), now)),
            None => Quick::Ask(presented, digest, Some((now, at))),
        }
    }

    /// Parse presented text and find its record under any configured pepper, with the time it
    /// was looked up at.
    pub(crate) async fn lookup(&self, kind: Kind, text: &str) -> Result<Result<Found, Rejection>> {
        match self.lookup_quick(kind, text) {
            Quick::Done(answer) => Ok(answer),
            Quick::Ask(presented, digest, when) => {
                self.lookup_stored(&presented, digest, when).await
            }
        }
    }

    /// The store (or cache) lookup under every pepper, `current` being the digest under the
    /// current one; `when` is the time already read, if it was.
    pub(crate) async fn lookup_stored(
        &self,
        presented: &Presented<'_>,
        current: Digest,
        when: Option<(OffsetDateTime, i64)>,
    ) -> Result<Result<Found, Rejection>> {
        let older = self
            .inner
            .peppers
            .all()
            .skip(1)
            .map(|p| p.digest(presented));
        for digest in core::iter::once(current).chain(older) {
            let found = match (&self.inner.cache, when) {
                (Some(cache), Some((_, at))) => match cache.cached(&digest, at) {
                    Some(r) => Some(r),
                    None => cache.load(&digest, at).await?,
                },
                _ => self.inner.store.find_shared(&digest).await?,
            };
            if let Some(record) = found {
                let now = when.map_or_else(|| self.now(), |(now, _)| now);
                return Ok(Found::of(record, presented.kind(), now));
            }
        }
        Ok(Err(Rejection::NotFound))
    }

    /// Whether the store reports other instances' changes to the
    /// [validation cache](Builder::validation_cache), so their revocations show here within
    /// milliseconds rather than the time to live (PostgreSQL does; known after the first
    /// validation that reads the store).
    pub fn cache_watches_changes(&self) -> bool {
        self.inner.cache.as_ref().is_some_and(|c| c.watching())
    }

    /// How many records the [validation cache](Builder::validation_cache) holds (zero
    /// without one).
    pub fn cached_records(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, |c| c.len())
    }

    /// A record of `kind` by id.
    pub(crate) async fn record(&self, kind: Kind, id: TokenId) -> Result<TokenRecord> {
        match self.inner.store.get(id).await? {
            Some(r) if r.kind() == kind => Ok(r),
            _ => Err(Error::NoSuchToken {
                kind: Some(kind),
                id: id.to_string(),
            }),
        }
    }

    /// Apply `action` to a token with compare-and-set, retrying when it changed meanwhile.
    pub(crate) async fn transition(
        &self,
        kind: Option<Kind>,
        id: TokenId,
        action: Action,
        actor: Actor,
    ) -> Result<TokenRecord> {
        self.transition_with(kind, id, action, actor, &[]).await
    }

    /// [`transition`](Self::transition), with `also` (the events of the act this change is
    /// part of, such as turning an endpoint's token authentication off) committed in the
    /// change's transaction.
    pub(crate) async fn transition_with(
        &self,
        kind: Option<Kind>,
        id: TokenId,
        action: Action,
        actor: Actor,
        also: &[AuditEvent],
    ) -> Result<TokenRecord> {
        let now = self.now();
        for _ in 0..8 {
            let record = match self.inner.store.get(id).await? {
                Some(r) if kind.is_none_or(|k| r.kind() == k) => r,
                Some(r) => {
                    return Err(Error::NoSuchToken {
                        kind: kind.or_else(|| Some(r.kind())),
                        id: id.to_string(),
                    });
                }
                None => {
                    return Err(Error::NoSuchToken {
                        kind,
                        id: id.to_string(),
                    });
                }
            };
            // An application token idle past a threshold is in that state whether or not a
            // sweep recorded it: the action applies to that state, and the transition the sweep
            // would have recorded is audited (by the system) with the change.
            let from = self.idle_state(&record, now);
            let to = from.apply(action)?;
            let change = StateChange::new(record.state, to, now);
            let mut events = Vec::with_capacity(2);
            if from != record.state {
                events.push(change_event(
                    &record,
                    record.state,
                    from,
                    Actor::System,
                    now,
                ));
            }
            events.push(change_event(&record, from, to, actor.clone(), now));
            events.extend_from_slice(also);
            match self.inner.store.change_state(id, &change, &events).await {
                Ok(updated) => return Ok(updated),
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// The state `record` is in at `now` once the inactivity rules apply: an application token
    /// unused past [`InactivityPolicy::delete_after`] is `Deleted`, an active one unused past
    /// [`InactivityPolicy::dormant_after`] is `Dormant`, whether or not a sweep recorded it;
    /// any other record is in its stored state.
    pub(crate) fn idle_state(&self, record: &TokenRecord, now: OffsetDateTime) -> State {
        if record.kind() == Kind::Application {
            self.inner
                .settings
                .inactivity
                .state_at(record.state, record.last_activity(), now)
        } else {
            record.state
        }
    }

    /// A record's summary at `now` as this service sees it: [`TokenRecord::summary`] with the
    /// inactivity rules applied, so an application token unused past a threshold shows as
    /// `Dormant` or `Deleted` whether or not a sweep recorded it (validation refuses it so).
    pub fn summary(&self, record: &TokenRecord, now: OffsetDateTime) -> TokenSummary {
        let mut summary = record.summary(now);
        let idle = self.idle_state(record, now);
        if idle != record.state && !summary.state.is_terminal() {
            summary.state = idle;
        }
        summary
    }

    /// Note an accepted use in the usage ledger: last use, the count against `subject`, and
    /// the audit row (the event is built only when a row starts, or for each use when so
    /// configured). No store call: the ledger writes behind the request path.
    pub(crate) fn used(
        &self,
        found: &Found,
        subject: Option<Subject<'_>>,
        ip: Option<IpAddr>,
        carrier: Option<(&EndpointId, Method)>,
        event: impl FnOnce() -> AuditEvent,
    ) {
        self.inner.ledger.note(
            &Note {
                token: found.record.id,
                record: &found.record,
                at: found.now,
                subject,
                ip,
                refused: None,
                carrier,
            },
            event,
        );
    }

    /// Note a refusal of a known token in the usage ledger (audited if configured).
    pub(crate) fn refused(
        &self,
        found: &Found,
        reason: Rejection,
        ip: Option<IpAddr>,
        carrier: Option<(&EndpointId, Method)>,
        event: impl FnOnce() -> AuditEvent,
    ) {
        // The validation's span (if a subscriber wants it) names the token refused.
        crate::observe::refused_token(found.record.id);
        tracing::debug!(reason = reason.code(), token_id = %found.record.id, "known token refused");
        self.inner.ledger.note(
            &Note {
                token: found.record.id,
                record: &found.record,
                at: found.now,
                subject: None,
                ip,
                refused: Some(reason),
                carrier,
            },
            event,
        );
    }

    /// Write what the usage ledger holds (uses, last uses, their audit) now, each batch in one
    /// transaction: everything noted before this call. Call it before a graceful shutdown; the
    /// ledger otherwise writes every [`LedgerSettings::flush_interval`].
    ///
    /// Safe to drop at any await: what it was writing is written by the next flush, once.
    ///
    /// # Errors
    ///
    /// Store failures; what was not written is kept and written by the next flush.
    pub async fn flush(&self) -> Result<Flushed> {
        Ok(self.inner.ledger.flush().await?)
    }

    /// Entries (tokens, addresses, endpoints, audit rows) the usage ledger holds, not yet
    /// written.
    pub fn ledger_pending(&self) -> usize {
        self.inner.ledger.pending()
    }

    pub(crate) fn use_event(&self, record: &TokenRecord, now: OffsetDateTime) -> AuditEvent {
        AuditEvent::new(now, Actor::Client, AuditAction::Used).about(record)
    }
}

/// The event of `record`'s issue.
pub(crate) fn issued_event(record: &TokenRecord) -> AuditEvent {
    AuditEvent::new(
        record.created_at,
        record.created_by.clone(),
        AuditAction::Issued,
    )
    .about(record)
}

/// The event of `record`'s state changing from `from` to `to`.
pub(crate) fn change_event(
    record: &TokenRecord,
    from: State,
    to: State,
    actor: Actor,
    now: OffsetDateTime,
) -> AuditEvent {
    AuditEvent::new(now, actor, AuditAction::StateChanged { from, to }).about(record)
}
