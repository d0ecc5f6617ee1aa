//! [`MemoryStore`]: the [`Store`] trait over in-process maps.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use tessera_core::audit::AuditEvent;
use tessera_core::digest::{Digest, Hint};
use tessera_core::id::{DeviceId, EndpointId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use tessera_core::validate::{Rejection, Request, validate};
use tessera_store::{
    AuditFilter, BatchId, Capabilities, Change, ChangeSink, Enrollment, RedeemEvents, Redemption,
    Result, SharedRecord, StateChange, Store, StoreError, TokenFilter, UsageBatch, UsageEntry,
    UsageOutcome, UsageSubject, names,
};
use time::{Duration, OffsetDateTime};

use crate::config::MemoryLimits;

/// A [`Store`] that keeps everything in this process's memory: the embedded default for tests,
/// examples and single-process tools.
///
/// Every operation takes one lock for its whole duration, so each is atomic, and none holds a
/// lock across an `.await` (nothing in it awaits). Records, usage, enrollments and mappings
/// share one reader-writer lock (a purge removes them together); audit events have their own.
/// Nothing survives the process, and two processes never share a store.
///
/// Records are kept shared ([`Store::find_shared`] hands out the one held, without a copy).
/// What is kept per token, and the audit trail, are bounded by [`MemoryLimits`].
pub struct MemoryStore {
    limits: MemoryLimits,
    tables: RwLock<Tables>,
    audit: RwLock<VecDeque<AuditEvent>>,
    /// Told of every change a validation reads, before the write that made it returns.
    watchers: Mutex<Vec<ChangeSink>>,
}

/// Everything but audit, under one lock.
#[derive(Default)]
struct Tables {
    /// Insertion counter: ties in `created_at` list in insertion order.
    next_seq: u64,
    records: RandomKeyed<TokenId, Stored>,
    /// The validation lookup: one probe to the shared record.
    by_digest: RandomKeyed<Digest, Arc<SharedRecord>>,
    /// Ledger batches written, newest last (see [`BATCHES_KEPT`]).
    batches: VecDeque<BatchId>,
    batch_ids: HashSet<BatchId>,
    /// Names of application tokens in force (see [`held_name`]).
    /// Unique names held, by key ([`names::name_key`]): application names, auth names per owner.
    app_names: HashMap<String, TokenId>,
    usage: RandomKeyed<TokenId, BTreeMap<UsageSubject, Usage>>,
    enrollments: RandomKeyed<TokenId, Enrollments>,
    /// Mapping key to its enabled flag.
    mappings: BTreeMap<(TokenId, EndpointId, Method), bool>,
}

/// A map whose keys are already uniformly random: token ids (128 random bits) and keyed-BLAKE3
/// digests (pseudo-random under a pepper no outsider knows, so nobody can aim collisions).
/// Folding their bytes is enough; SipHash was the largest single cost of a validation's lookup.
type RandomKeyed<K, V> = HashMap<K, V, BuildHasherDefault<RandomKeyHasher>>;

#[derive(Default)]
struct RandomKeyHasher(u64);

impl Hasher for RandomKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(v)).wrapping_mul(K);
    }

    fn write_u128(&mut self, v: u128) {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "splitting into halves is the point"
        )]
        let (hi, lo) = ((v >> 64) as u64, v as u64);
        self.0 = (self.0.rotate_left(5) ^ hi ^ lo.rotate_left(32)).wrapping_mul(K);
    }

    fn write_usize(&mut self, _len: usize) {
        // Only slice length prefixes come here, and every key has fixed-size parts.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An odd constant with well-mixed bits (FxHash's).
const K: u64 = 0x517c_c1b7_2722_0a95;

/// Every device a token enrolled: oldest first, and by device (repeat detection is one probe,
/// and exact however many there are).
#[derive(Default)]
struct Enrollments {
    list: VecDeque<Enrollment>,
    by_device: HashMap<DeviceId, OffsetDateTime>,
}

struct Stored {
    seq: u64,
    shared: Arc<SharedRecord>,
}

impl Stored {
    fn record(&self) -> &TokenRecord {
        self.shared.record()
    }
}

/// How many ledger batch ids the store remembers, to refuse a batch written twice: far more than
/// a writer retries (it retries one batch until it is written).
const BATCHES_KEPT: usize = 4_096;

/// One usage entry, without its keys.
#[derive(Clone, Copy, Default)]
struct Usage {
    first_seen: Option<OffsetDateTime>,
    last_seen: Option<OffsetDateTime>,
    count: u64,
    blocked: bool,
}

impl Usage {
    fn entry(self, token: TokenId, subject: UsageSubject) -> UsageEntry {
        UsageEntry {
            token,
            subject,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            count: self.count,
            blocked: self.blocked,
        }
    }
}

/// The unique name `r` holds now, as its key ([`names`]).
fn held_name(r: &TokenRecord) -> Option<String> {
    names::held_name(r)
}

const TOKEN: StoreError = StoreError::NotFound { what: "token" };

/// Refuse events the SQL backends could not store either (times outside Unix nanoseconds in an
/// `i64`, the years 1677 to 2262), before anything changes.
fn storable<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> Result<()> {
    if events
        .into_iter()
        .all(|e| i64::try_from(e.at.unix_timestamp_nanos()).is_ok())
    {
        Ok(())
    } else {
        Err(StoreError::Backend(
            "audit event time is out of the range a store keeps (the years 1677 to 2262); \
             record events at the current time"
                .into(),
        ))
    }
}

impl MemoryStore {
    /// An empty store with the default [`MemoryLimits`].
    pub fn new() -> Self {
        Self::with_limits(MemoryLimits::default())
    }

    /// An empty store with these limits.
    pub fn with_limits(limits: MemoryLimits) -> Self {
        Self {
            limits,
            tables: RwLock::new(Tables::default()),
            audit: RwLock::new(VecDeque::new()),
            watchers: Mutex::new(Vec::new()),
        }
    }

    /// The limits this store applies.
    pub const fn limits(&self) -> MemoryLimits {
        self.limits
    }

    // A panic while a lock is held cannot leave the tables half-updated: every write checks
    // everything before it changes anything. So a poisoned lock is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keep `event` in time order (after others at the same instant), dropping the oldest
    /// beyond [`MemoryLimits::max_audit_events`].
    fn push_event(&self, events: &mut VecDeque<AuditEvent>, event: &AuditEvent) {
        self.merge_events(events, core::slice::from_ref(event));
    }

    /// Merge `new` into the time-ordered `events` (each after those at the same instant,
    /// `new` in its own order among equals), dropping the oldest beyond
    /// [`MemoryLimits::max_audit_events`]. Costs the batch plus the events later than its
    /// earliest, not one shift of the log per event: the usage ledger's batches hold
    /// thousands of rows, in no time order.
    ///
    /// An aggregated row whose key is already in `events` replaces it in place (a row's `at`,
    /// its first use, never changes: the stored version is among the events at that instant).
    fn merge_events(&self, events: &mut VecDeque<AuditEvent>, new: &[AuditEvent]) {
        let mut batch: Vec<&AuditEvent> = Vec::with_capacity(new.len());
        for event in new {
            if let Some(key) = event.action.row() {
                let from = events.partition_point(|e| e.at < event.at);
                let stored = (from..events.len())
                    .take_while(|&i| events[i].at == event.at)
                    .find(|&i| events[i].action.row() == Some(key));
                if let Some(i) = stored {
                    events[i] = event.clone();
                    continue;
                }
            }
            batch.push(event);
        }
        let Some(earliest) = batch.iter().map(|e| e.at).min() else {
            return;
        };
        batch.sort_by_key(|e| e.at);
        let at = events.partition_point(|e| e.at <= earliest);
        let later = events.split_off(at);
        let mut later = later.into_iter().peekable();
        for event in batch {
            while let Some(old) = later.next_if(|old| old.at <= event.at) {
                events.push_back(old);
            }
            events.push_back(event.clone());
        }
        events.extend(later);
        let cap = self.limits.audit_cap();
        if events.len() > cap {
            let excess = events.len() - cap;
            events.drain(..excess);
        }
    }

    /// Append a change's `events` while the tables' write lock `_tables` is held, so readers see
    /// the change and its events together. Lock order: tables, then audit.
    fn log(&self, _tables: &RwLockWriteGuard<'_, Tables>, events: &[AuditEvent]) {
        if events.is_empty() {
            return;
        }
        let mut log = self.audit.write().unwrap_or_else(PoisonError::into_inner);
        // Oldest first; an event at the same instant as others goes after them.
        self.merge_events(&mut log, events);
    }

    /// Tell the watchers that what validation reads of `ids` changed, once the tables' lock is
    /// released and before the write returns: a cache over this store in any service of the
    /// process drops the record before the revoke that changed it returns.
    fn announce(&self, ids: impl IntoIterator<Item = TokenId>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if watchers.is_empty() {
            return;
        }
        watchers.retain(|w| w.wanted());
        for id in ids {
            watchers.retain(|sink| sink.changed(Change::Token(id)));
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens = self.read().records.len();
        let events = self
            .audit
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("tokens", &tokens)
            .field("audit_events", &events)
            .finish_non_exhaustive()
    }
}

impl Tables {
    /// Decide a redemption and apply it (see [`Store::redeem`]): the outcome, the onboarding
    /// token it was decided on, and whether what a validation reads of it changed.
    fn redeem(
        &mut self,
        digest: &Digest,
        device: &DeviceId,
        now: OffsetDateTime,
        cap: usize,
    ) -> Result<(Redemption, Option<TokenId>, bool)> {
        let Some(shared) = self.by_digest.get(digest) else {
            return Ok((Redemption::Refused(Rejection::NotFound), None, false));
        };
        let id = shared.id;
        let KindData::Onboarding(_) = &shared.data else {
            // To a redemption, a token of another kind does not exist.
            return Ok((Redemption::Refused(Rejection::NotFound), None, false));
        };
        let stored = self.records.get(&id).ok_or(TOKEN)?;
        // One device, one use: an enrolled device gets its enrollment back, consuming nothing
        // (decided under the same write lock as the redemptions).
        if let Some(&first) = self
            .enrollments
            .get(&id)
            .and_then(|l| l.by_device.get(device))
        {
            let record = stored.record().clone();
            let outcome = match Redemption::repeat_allowed(&record, now) {
                Ok(()) => Redemption::Repeated {
                    record,
                    enrollment: Enrollment {
                        device: device.clone(),
                        at: first,
                    },
                },
                Err(why) => Redemption::Refused(why),
            };
            return Ok((outcome, Some(id), false));
        }
        if let Err(why) = validate(stored.record(), &Request::Onboarding { device }, now) {
            return Ok((Redemption::Refused(why), Some(id), false));
        }
        // Every enrollment is kept, so a repeat is always known as one: past the bound, a new
        // device is refused with an error rather than enrolled and forgotten.
        if self
            .enrollments
            .get(&id)
            .is_some_and(|l| l.list.len() >= cap)
        {
            return Err(StoreError::LimitReached {
                what: "enrollments",
                limit: u64::try_from(cap).unwrap_or(u64::MAX),
            });
        }
        let mut next = SharedRecord::clone(&stored.shared);
        let r = next.record_mut();
        // Usable, uses left and the binding admits the device: consume one use.
        // The last use (exhausted) or a first device bound changes what validation reads.
        let mut changed = false;
        r.uses = r.uses.saturating_add(1);
        r.last_used_at = Some(now);
        if let KindData::Onboarding(o) = &mut r.data {
            let bound = o.binding.after_redeem(device);
            changed = bound != o.binding;
            o.binding = bound;
        }
        if r.limit.is_exhausted(r.uses) {
            r.state = State::Exhausted;
            changed = true;
        }
        let after = r.clone();
        self.share(id, next);
        let enrolled = self.enrollments.entry(id).or_default();
        let at = enrolled.list.partition_point(|e| e.at <= now);
        enrolled.list.insert(
            at,
            Enrollment {
                device: device.clone(),
                at: now,
            },
        );
        enrolled.by_device.insert(device.clone(), now);
        Ok((Redemption::Redeemed(after), Some(id), changed))
    }

    /// Why `r` cannot be added as a new record, if it cannot. `batch` holds records about to be
    /// added with it.
    fn check_new(&self, r: &TokenRecord, batch: &[TokenRecord]) -> Result<()> {
        if self.records.contains_key(&r.id) || batch.iter().any(|b| b.id == r.id) {
            return Err(StoreError::AlreadyExists { what: "token id" });
        }
        if self.by_digest.contains_key(&r.digest) || batch.iter().any(|b| b.digest == r.digest) {
            return Err(StoreError::AlreadyExists {
                what: "token digest",
            });
        }
        if let Some(name) = held_name(r) {
            if self.app_names.contains_key(&name)
                || batch.iter().any(|b| held_name(b).as_ref() == Some(&name))
            {
                return Err(StoreError::AlreadyExists {
                    what: names::taken(r.kind()),
                });
            }
        }
        Ok(())
    }

    /// Add a record that passed [`Tables::check_new`].
    fn add(&mut self, r: &TokenRecord) {
        let shared = Arc::new(SharedRecord::new(r.clone(), []));
        self.by_digest.insert(r.digest, Arc::clone(&shared));
        if let Some(name) = held_name(r) {
            self.app_names.insert(name, r.id);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.records.insert(r.id, Stored { seq, shared });
    }

    /// Replace the shared record of `id` (same digest) by `next`, in both maps.
    fn share(&mut self, id: TokenId, next: SharedRecord) -> Option<Arc<SharedRecord>> {
        let stored = self.records.get_mut(&id)?;
        let next = Arc::new(next);
        let old = core::mem::replace(&mut stored.shared, Arc::clone(&next));
        if old.digest != next.digest {
            self.by_digest.remove(&old.digest);
        }
        self.by_digest.insert(next.digest, Arc::clone(&next));
        Some(next)
    }

    /// Why the stored record `id` cannot become `next`, if it cannot: its new digest or its new
    /// application name is another token's.
    fn check_update(&self, id: TokenId, old: &TokenRecord, next: &TokenRecord) -> Result<()> {
        if next.digest != old.digest && self.by_digest.contains_key(&next.digest) {
            return Err(StoreError::AlreadyExists {
                what: "token digest",
            });
        }
        if let Some(name) = held_name(next) {
            if held_name(old).as_ref() != Some(&name)
                && self.app_names.get(&name).is_some_and(|h| *h != id)
            {
                return Err(StoreError::AlreadyExists {
                    what: names::taken(next.kind()),
                });
            }
        }
        Ok(())
    }

    /// Make the stored record `id` into `next` (checked or known consistent), keeping the indexes
    /// in step; returns the record it was.
    fn set(&mut self, id: TokenId, next: TokenRecord) -> Option<TokenRecord> {
        let stored = self.records.get(&id)?;
        let old = stored.record().clone();
        let mut shared = SharedRecord::clone(&stored.shared);
        *shared.record_mut() = next;
        let next = self.share(id, shared)?;
        let next = next.record();
        if held_name(&old) != held_name(next) {
            if let Some(name) = held_name(&old) {
                if self.app_names.get(&name) == Some(&id) {
                    self.app_names.remove(&name);
                }
            }
            if let Some(name) = held_name(next) {
                self.app_names.insert(name, id);
            }
        }
        Some(old)
    }

    /// Check and apply `next` to the stored record `id`; returns it as stored now.
    fn update(&mut self, id: TokenId, next: TokenRecord) -> Result<TokenRecord> {
        let old = self.records.get(&id).ok_or(TOKEN)?.record();
        self.check_update(id, old, &next)?;
        self.set(id, next.clone());
        Ok(next)
    }

    /// The record `id` after `change`, if it is still in `change.from`.
    fn changed(&self, id: TokenId, change: &StateChange) -> Result<TokenRecord> {
        let r = self.records.get(&id).ok_or(TOKEN)?.record();
        if r.state != change.from {
            return Err(StoreError::Conflict);
        }
        let mut next = r.clone();
        next.state = change.to;
        if change.to == State::Active {
            next.activated_at = change.at;
        }
        next.grace_until = change.grace_until;
        if let Some(s) = change.successor {
            next.successor = Some(s);
        }
        Ok(next)
    }

    /// Make room for one more usage entry of a token: drop the least recently seen entry that
    /// is not blocked while the token is at its cap.
    fn make_room(entries: &mut BTreeMap<UsageSubject, Usage>, cap: usize) {
        while entries.len() >= cap {
            let victim = entries
                .iter()
                .filter(|(_, u)| !u.blocked)
                .min_by_key(|(_, u)| u.last_seen)
                .map(|(s, _)| s.clone());
            match victim {
                Some(s) => {
                    entries.remove(&s);
                }
                // Every entry is blocked: a block list is never dropped.
                None => return,
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        // Not shared across processes, not durable.
        Capabilities::default()
    }

    async fn insert(&self, record: &TokenRecord, events: &[AuditEvent]) -> Result<()> {
        storable(events)?;
        let mut t = self.write();
        t.check_new(record, &[])?;
        t.add(record);
        self.log(&t, events);
        Ok(())
    }

    async fn insert_many(&self, records: &[TokenRecord], events: &[AuditEvent]) -> Result<()> {
        storable(events)?;
        let mut t = self.write();
        // Check against the store and against the batch in one pass (sets, not a rescan of
        // the batch per record: bulk loads of 10^4 records stay linear).
        let mut ids = HashSet::with_capacity(records.len());
        let mut digests = HashSet::with_capacity(records.len());
        let mut held = HashSet::new();
        for r in records {
            // The same checks in the same order as `check_new`.
            if t.records.contains_key(&r.id) || !ids.insert(r.id) {
                return Err(StoreError::AlreadyExists { what: "token id" });
            }
            if t.by_digest.contains_key(&r.digest) || !digests.insert(r.digest) {
                return Err(StoreError::AlreadyExists {
                    what: "token digest",
                });
            }
            if let Some(name) = held_name(r) {
                if t.app_names.contains_key(&name) || !held.insert(name) {
                    return Err(StoreError::AlreadyExists {
                        what: names::taken(r.kind()),
                    });
                }
            }
        }
        for r in records {
            t.add(r);
        }
        self.log(&t, events);
        Ok(())
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord>> {
        Ok(self.read().records.get(&id).map(|s| s.record().clone()))
    }

    async fn find_by_digest(&self, digest: &Digest) -> Result<Option<TokenRecord>> {
        Ok(self
            .read()
            .by_digest
            .get(digest)
            .map(|s| s.record().clone()))
    }

    async fn find_shared(&self, digest: &Digest) -> Result<Option<Arc<SharedRecord>>> {
        Ok(self.read().by_digest.get(digest).map(Arc::clone))
    }

    async fn list(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>> {
        let t = self.read();
        let mut found: Vec<&Stored> = t
            .records
            .values()
            .filter(|s| filter.matches(s.record()))
            .collect();
        found.sort_by_key(|s| (s.record().created_at, s.seq));
        Ok(found.into_iter().map(|s| s.record().clone()).collect())
    }

    async fn change_state(
        &self,
        id: TokenId,
        change: &StateChange,
        events: &[AuditEvent],
    ) -> Result<TokenRecord> {
        storable(events)?;
        let next = {
            let mut t = self.write();
            let next = t.changed(id, change)?;
            let next = t.update(id, next)?;
            self.log(&t, events);
            next
        };
        self.announce([id]);
        Ok(next)
    }

    async fn replace(
        &self,
        old: TokenId,
        change: &StateChange,
        new: &TokenRecord,
        events: &[AuditEvent],
    ) -> Result<TokenRecord> {
        storable(events)?;
        let mut t = self.write();
        let next = t.changed(old, change)?;
        let before = t.records.get(&old).ok_or(TOKEN)?.record().clone();
        t.check_update(old, &before, &next)?;
        // The change goes first, so `new` may take the name `old` held. If `new` cannot be added
        // the change is undone; nobody sees the middle, as the write lock is held throughout.
        t.set(old, next.clone());
        if let Err(e) = t.check_new(new, &[]) {
            t.set(old, before);
            return Err(e);
        }
        t.add(new);
        self.log(&t, events);
        drop(t);
        self.announce([old]);
        Ok(next)
    }

    async fn update_data(
        &self,
        id: TokenId,
        data: &KindData,
        events: &[AuditEvent],
    ) -> Result<TokenRecord> {
        storable(events)?;
        let next = {
            let mut t = self.write();
            let r = t.records.get(&id).ok_or(TOKEN)?.record();
            if r.kind() != data.kind() {
                return Err(StoreError::Conflict);
            }
            let next = TokenRecord {
                data: data.clone(),
                ..r.clone()
            };
            let next = t.update(id, next)?;
            self.log(&t, events);
            next
        };
        self.announce([id]);
        Ok(next)
    }

    async fn set_digest(
        &self,
        id: TokenId,
        digest: &Digest,
        hint: &Hint,
        events: &[AuditEvent],
    ) -> Result<TokenRecord> {
        storable(events)?;
        let next = {
            let mut t = self.write();
            let r = t.records.get(&id).ok_or(TOKEN)?.record();
            let next = TokenRecord {
                digest: *digest,
                hint: hint.clone(),
                sealed: None,
                ..r.clone()
            };
            let next = t.update(id, next)?;
            self.log(&t, events);
            next
        };
        self.announce([id]);
        Ok(next)
    }

    async fn set_sealed(
        &self,
        id: TokenId,
        sealed: Option<&Sealed>,
        events: &[AuditEvent],
    ) -> Result<TokenRecord> {
        storable(events)?;
        let mut t = self.write();
        let r = t.records.get(&id).ok_or(TOKEN)?.record();
        let next = TokenRecord {
            sealed: sealed.cloned(),
            ..r.clone()
        };
        let next = t.update(id, next)?;
        self.log(&t, events);
        Ok(next)
    }

    async fn touch(&self, id: TokenId, now: OffsetDateTime, interval: Duration) -> Result<bool> {
        let mut t = self.write();
        let stored = t.records.get(&id).ok_or(TOKEN)?;
        if stored
            .record()
            .last_used_at
            .is_some_and(|last| now - last < interval)
        {
            return Ok(false);
        }
        let mut next = SharedRecord::clone(&stored.shared);
        next.record_mut().last_used_at = Some(now);
        t.share(id, next);
        Ok(true)
    }

    async fn purge(&self, ids: &[TokenId], events: &[AuditEvent]) -> Result<u64> {
        storable(events)?;
        let mut gone = Vec::new();
        let mut t = self.write();
        for id in ids {
            let Some(stored) = t.records.remove(id) else {
                continue;
            };
            let r = stored.record();
            t.by_digest.remove(&r.digest);
            if let Some(name) = held_name(r) {
                if t.app_names.get(&name) == Some(id) {
                    t.app_names.remove(&name);
                }
            }
            t.usage.remove(id);
            t.enrollments.remove(id);
            t.mappings.retain(|(secondary, _, _), _| secondary != id);
            gone.push(*id);
        }
        self.log(&t, events);
        drop(t);
        let removed = gone.len() as u64;
        self.announce(gone);
        Ok(removed)
    }

    async fn redeem(
        &self,
        digest: &Digest,
        device: &DeviceId,
        now: OffsetDateTime,
        events: &RedeemEvents,
    ) -> Result<Redemption> {
        storable(events.templates())?;
        let cap = self.limits.enrollment_cap();
        let mut t = self.write();
        let (outcome, id, changed) = t.redeem(digest, device, now, cap)?;
        // The outcome's event under the same write lock: readers see both or neither.
        let record = id.and_then(|id| t.records.get(&id)).map(Stored::record);
        if let Some(event) = events.event(&outcome, record) {
            self.log(&t, &[event]);
        }
        drop(t);
        if let (true, Some(id)) = (changed, id) {
            self.announce([id]);
        }
        Ok(outcome)
    }

    async fn enrollments(&self, id: TokenId) -> Result<Vec<Enrollment>> {
        Ok(self
            .read()
            .enrollments
            .get(&id)
            .map(|l| l.list.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn enrollments_of(&self, ids: &[TokenId]) -> Result<Vec<(TokenId, Enrollment)>> {
        let t = self.read();
        Ok(ids
            .iter()
            .filter_map(|id| t.enrollments.get(id).map(|l| (*id, l)))
            .flat_map(|(id, l)| l.list.iter().map(move |e| (id, e.clone())))
            .collect())
    }

    async fn record_usage(
        &self,
        id: TokenId,
        subject: &UsageSubject,
        now: OffsetDateTime,
    ) -> Result<UsageOutcome> {
        let cap = self.limits.usage_cap();
        let mut t = self.write();
        if !t.records.contains_key(&id) {
            return Err(TOKEN);
        }
        let entries = t.usage.entry(id).or_default();
        let usage = match entries.get_mut(subject) {
            Some(u) if u.blocked => return Ok(UsageOutcome::Blocked),
            Some(u) => u,
            None => {
                Tables::make_room(entries, cap);
                entries.entry(subject.clone()).or_default()
            }
        };
        usage.count = usage.count.saturating_add(1);
        usage.first_seen = Some(usage.first_seen.map_or(now, |f| f.min(now)));
        usage.last_seen = Some(usage.last_seen.map_or(now, |l| l.max(now)));
        Ok(UsageOutcome::Counted(usage.entry(id, subject.clone())))
    }

    async fn is_blocked(&self, id: TokenId, ip: IpAddr) -> Result<bool> {
        Ok(self
            .read()
            .usage
            .get(&id)
            .and_then(|entries| entries.get(&UsageSubject::Ip(ip)))
            .is_some_and(|u| u.blocked))
    }

    async fn set_blocked(
        &self,
        id: TokenId,
        ip: IpAddr,
        blocked: bool,
        events: &[AuditEvent],
    ) -> Result<UsageEntry> {
        storable(events)?;
        let cap = self.limits.usage_cap();
        let mut t = self.write();
        if !t.records.contains_key(&id) {
            return Err(TOKEN);
        }
        let entries = t.usage.entry(id).or_default();
        let subject = UsageSubject::Ip(ip);
        if !entries.contains_key(&subject) {
            Tables::make_room(entries, cap);
        }
        let usage = entries.entry(subject.clone()).or_default();
        let was = usage.blocked;
        usage.blocked = blocked;
        let entry = usage.entry(id, subject);
        if was != blocked {
            if let Some(stored) = t.records.get(&id) {
                let mut next = SharedRecord::clone(&stored.shared);
                next.set_blocked(ip, blocked);
                t.share(id, next);
            }
        }
        self.log(&t, events);
        drop(t);
        if was != blocked {
            self.announce([id]);
        }
        Ok(entry)
    }

    async fn record_batch(&self, batch: &UsageBatch) -> Result<bool> {
        storable(&batch.events)?;
        let cap = self.limits.usage_cap();
        let mut t = self.write();
        if t.batch_ids.contains(&batch.id) {
            return Ok(false);
        }
        t.batch_ids.insert(batch.id);
        t.batches.push_back(batch.id);
        while t.batches.len() > BATCHES_KEPT {
            if let Some(old) = t.batches.pop_front() {
                t.batch_ids.remove(&old);
            }
        }
        for d in &batch.usage {
            if !t.records.contains_key(&d.token) {
                continue;
            }
            let entries = t.usage.entry(d.token).or_default();
            if !entries.contains_key(&d.subject) {
                Tables::make_room(entries, cap);
            }
            let u = entries.entry(d.subject.clone()).or_default();
            u.count = u.count.saturating_add(d.count);
            u.first_seen = Some(u.first_seen.map_or(d.first_seen, |f| f.min(d.first_seen)));
            u.last_seen = Some(u.last_seen.map_or(d.last_seen, |l| l.max(d.last_seen)));
        }
        for (id, at) in &batch.last_used {
            let Some(stored) = t.records.get(id) else {
                continue;
            };
            if stored.record().last_used_at.is_some_and(|l| l >= *at) {
                continue;
            }
            let mut next = SharedRecord::clone(&stored.shared);
            next.record_mut().last_used_at = Some(*at);
            t.share(*id, next);
        }
        self.log(&t, &batch.events);
        Ok(true)
    }

    async fn usage(&self, id: TokenId) -> Result<Vec<UsageEntry>> {
        Ok(self
            .read()
            .usage
            .get(&id)
            .map(|entries| {
                entries
                    .iter()
                    .map(|(s, u)| u.entry(id, s.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn endpoint_usage(&self, endpoint: &EndpointId) -> Result<Vec<UsageEntry>> {
        let t = self.read();
        let mut out: Vec<UsageEntry> = t
            .usage
            .iter()
            .flat_map(|(id, entries)| {
                entries
                    .iter()
                    .filter(|(s, _)| matches!(s, UsageSubject::Endpoint(e, _) if e == endpoint))
                    .map(|(s, u)| u.entry(*id, s.clone()))
            })
            .collect();
        out.sort_by(|a, b| (a.token, &a.subject).cmp(&(b.token, &b.subject)));
        Ok(out)
    }

    async fn put_mapping(&self, mapping: &Mapping, events: &[AuditEvent]) -> Result<()> {
        storable(events)?;
        let mut t = self.write();
        if !t.records.contains_key(&mapping.secondary) {
            return Err(StoreError::NotFound {
                what: "secondary token",
            });
        }
        let key = (mapping.secondary, mapping.endpoint.clone(), mapping.method);
        if t.mappings.contains_key(&key) {
            return Err(StoreError::AlreadyExists { what: "mapping" });
        }
        t.mappings.insert(key, mapping.enabled);
        self.log(&t, events);
        Ok(())
    }

    async fn mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
    ) -> Result<Option<Mapping>> {
        let key = (secondary, endpoint.clone(), method);
        Ok(self.read().mappings.get(&key).map(|enabled| Mapping {
            secondary,
            endpoint: endpoint.clone(),
            method,
            enabled: *enabled,
        }))
    }

    async fn set_mapping_enabled(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        enabled: bool,
        events: &[AuditEvent],
    ) -> Result<Mapping> {
        storable(events)?;
        let key = (secondary, endpoint.clone(), method);
        let mut t = self.write();
        let flag = t
            .mappings
            .get_mut(&key)
            .ok_or(StoreError::NotFound { what: "mapping" })?;
        *flag = enabled;
        self.log(&t, events);
        Ok(Mapping {
            secondary,
            endpoint: endpoint.clone(),
            method,
            enabled,
        })
    }

    async fn remove_mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        events: &[AuditEvent],
    ) -> Result<()> {
        storable(events)?;
        let key = (secondary, endpoint.clone(), method);
        let mut t = self.write();
        match t.mappings.remove(&key) {
            Some(_) => {
                self.log(&t, events);
                Ok(())
            }
            None => Err(StoreError::NotFound { what: "mapping" }),
        }
    }

    async fn mappings(
        &self,
        secondary: Option<TokenId>,
        endpoint: Option<&EndpointId>,
    ) -> Result<Vec<Mapping>> {
        Ok(self
            .read()
            .mappings
            .iter()
            .filter(|((s, e, _), _)| {
                secondary.is_none_or(|x| *s == x) && endpoint.is_none_or(|x| e == x)
            })
            .map(|((s, e, m), enabled)| Mapping {
                secondary: *s,
                endpoint: e.clone(),
                method: *m,
                enabled: *enabled,
            })
            .collect())
    }

    /// Always watches: every change is announced to the sinks before the write returns.
    async fn watch(&self, sink: ChangeSink) -> Result<bool> {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        // Watchers no longer wanted (their caches dropped) go as new ones come.
        watchers.retain(|w| w.wanted());
        watchers.push(sink);
        Ok(true)
    }

    async fn append(&self, event: &AuditEvent) -> Result<()> {
        storable([event])?;
        let mut events = self.audit.write().unwrap_or_else(PoisonError::into_inner);
        self.push_event(&mut events, event);
        Ok(())
    }

    async fn events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let events = self.audit.read().unwrap_or_else(PoisonError::into_inner);
        let start = filter
            .since
            .map_or(0, |s| events.partition_point(|e| e.at < s));
        Ok(events
            .range(start..)
            .filter(|e| filter.matches(e))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use tessera_core::audit::Actor;
    use tessera_core::digest::{KeyId, Pepper};
    use tessera_core::id::{AccessType, ApplicationName, Description, DeviceGroup, PolicyId};
    use tessera_core::kind::application::AccessTypes;
    use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
    use tessera_core::kind::{ApplicationData, OnboardingData};
    use tessera_core::{Secret, format};
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn at(secs: i64) -> OffsetDateTime {
        T0 + Duration::seconds(secs)
    }

    fn token(data: KindData, limit: UsageLimit) -> TokenRecord {
        let secret = Secret::generate(data.kind()).unwrap();
        let presented = format::parse(data.kind(), secret.expose_secret()).unwrap();
        TokenRecord {
            id: TokenId::generate().unwrap(),
            digest: Pepper::new(KeyId(1), [3; 32]).digest(&presented),
            spelling: presented.spelling(),
            hint: presented.hint(),
            sealed: None,
            state: State::Active,
            created_at: T0,
            created_by: Actor::System,
            generated_by: None,
            expires_at: None,
            last_used_at: None,
            activated_at: T0,
            grace_until: None,
            successor: None,
            limit,
            uses: 0,
            data,
        }
    }

    fn app() -> TokenRecord {
        let data = KindData::Application(ApplicationData {
            name: ApplicationName::parse("app").unwrap(),
            description: Description::default(),
            access: AccessTypes::new([AccessType::parse("feeds").unwrap()]).unwrap(),
        });
        token(data, UsageLimit::Unlimited)
    }

    fn onboarding(limit: UsageLimit) -> TokenRecord {
        let data = KindData::Onboarding(OnboardingData {
            policy: PolicyId::parse("p").unwrap(),
            group: DeviceGroup::parse("g").unwrap(),
            binding: DeviceBinding::Any,
        });
        token(data, limit)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    async fn addresses(store: &MemoryStore, id: TokenId) -> Vec<(IpAddr, u64, bool)> {
        store
            .usage(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| match e.subject {
                UsageSubject::Ip(a) => (a, e.count, e.blocked),
                UsageSubject::Endpoint(..) => panic!("unexpected endpoint entry"),
            })
            .collect()
    }

    fn store(usage: usize, enrollments: usize) -> MemoryStore {
        MemoryStore::with_limits(
            MemoryLimits::new()
                .with_max_usage_entries_per_token(usage)
                .with_max_enrollments_per_token(enrollments),
        )
    }

    #[tokio::test]
    async fn a_new_address_evicts_the_least_recently_seen() {
        let s = store(3, 10);
        let r = app();
        s.insert(&r, &[]).await.unwrap();
        // 1 is seen last at 40, 2 at 20, 3 at 30: 2 is the least recently seen.
        for (a, secs) in [(1, 10), (2, 20), (3, 30), (1, 40)] {
            s.record_usage(r.id, &UsageSubject::Ip(ip(a)), at(secs))
                .await
                .unwrap();
        }
        s.record_usage(r.id, &UsageSubject::Ip(ip(4)), at(50))
            .await
            .unwrap();
        assert_eq!(
            addresses(&s, r.id).await,
            vec![(ip(1), 2, false), (ip(3), 1, false), (ip(4), 1, false)]
        );
        // A known address at the cap evicts nothing.
        s.record_usage(r.id, &UsageSubject::Ip(ip(3)), at(60))
            .await
            .unwrap();
        assert_eq!(addresses(&s, r.id).await.len(), 3);
    }

    #[tokio::test]
    async fn blocked_entries_are_never_evicted() {
        let s = store(2, 10);
        let r = app();
        s.insert(&r, &[]).await.unwrap();
        // The block has never been seen (the least recent of all) but stays.
        s.set_blocked(r.id, ip(1), true, &[]).await.unwrap();
        s.record_usage(r.id, &UsageSubject::Ip(ip(2)), at(10))
            .await
            .unwrap();
        s.record_usage(r.id, &UsageSubject::Ip(ip(3)), at(20))
            .await
            .unwrap();
        assert_eq!(
            addresses(&s, r.id).await,
            vec![(ip(1), 0, true), (ip(3), 1, false)]
        );
        assert!(s.is_blocked(r.id, ip(1)).await.unwrap());
        assert_eq!(
            s.record_usage(r.id, &UsageSubject::Ip(ip(1)), at(30))
                .await
                .unwrap(),
            UsageOutcome::Blocked
        );
    }

    #[tokio::test]
    async fn blocking_a_new_address_at_the_cap_evicts_an_unblocked_one() {
        let s = store(2, 10);
        let r = app();
        s.insert(&r, &[]).await.unwrap();
        s.record_usage(r.id, &UsageSubject::Ip(ip(1)), at(10))
            .await
            .unwrap();
        s.record_usage(r.id, &UsageSubject::Ip(ip(2)), at(20))
            .await
            .unwrap();
        s.set_blocked(r.id, ip(9), true, &[]).await.unwrap();
        assert_eq!(
            addresses(&s, r.id).await,
            vec![(ip(2), 1, false), (ip(9), 0, true)]
        );
    }

    #[tokio::test]
    async fn a_token_with_only_blocked_entries_grows_past_the_cap() {
        let s = store(2, 10);
        let r = app();
        s.insert(&r, &[]).await.unwrap();
        s.set_blocked(r.id, ip(1), true, &[]).await.unwrap();
        s.set_blocked(r.id, ip(2), true, &[]).await.unwrap();
        s.set_blocked(r.id, ip(3), true, &[]).await.unwrap();
        s.record_usage(r.id, &UsageSubject::Ip(ip(4)), at(10))
            .await
            .unwrap();
        assert_eq!(
            addresses(&s, r.id).await,
            vec![
                (ip(1), 0, true),
                (ip(2), 0, true),
                (ip(3), 0, true),
                (ip(4), 1, false)
            ]
        );
        // The next new address evicts the one unblocked entry, not a block.
        s.record_usage(r.id, &UsageSubject::Ip(ip(5)), at(20))
            .await
            .unwrap();
        let kept: Vec<_> = addresses(&s, r.id)
            .await
            .into_iter()
            .map(|(a, ..)| a)
            .collect();
        assert_eq!(kept, vec![ip(1), ip(2), ip(3), ip(5)]);
    }

    #[tokio::test]
    async fn enrollments_past_the_bound_are_refused_and_repeats_stay_exact() {
        let s = store(10, 3);
        let r = onboarding(UsageLimit::Unlimited);
        s.insert(&r, &[]).await.unwrap();
        let dev = |i: i64| DeviceId::parse(format!("dev-{i}")).unwrap();
        for i in 0..3 {
            assert!(matches!(
                s.redeem(&r.digest, &dev(i), at(i), &RedeemEvents::NONE)
                    .await
                    .unwrap(),
                Redemption::Redeemed(_)
            ));
        }
        // A fourth device: a typed error, nothing consumed, nothing recorded.
        let err = s
            .redeem(&r.digest, &dev(3), at(3), &RedeemEvents::NONE)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::LimitReached {
                    what: "enrollments",
                    limit: 3
                }
            ),
            "{err:?}"
        );
        assert_eq!(s.get(r.id).await.unwrap().unwrap().uses, 3);
        // The first device is still known: its repeat consumes nothing.
        assert!(matches!(
            s.redeem(&r.digest, &dev(0), at(4), &RedeemEvents::NONE)
                .await
                .unwrap(),
            Redemption::Repeated { ref enrollment, .. } if enrollment.at == at(0)
        ));
        assert_eq!(s.get(r.id).await.unwrap().unwrap().uses, 3);
        let listed: Vec<_> = s
            .enrollments(r.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.device.to_string())
            .collect();
        assert_eq!(listed, ["dev-0", "dev-1", "dev-2"]);
    }

    #[tokio::test]
    async fn zero_limits_are_taken_as_one() {
        let s = store(0, 0);
        let r = app();
        let o = onboarding(UsageLimit::Unlimited);
        s.insert(&r, &[]).await.unwrap();
        s.insert(&o, &[]).await.unwrap();
        s.record_usage(r.id, &UsageSubject::Ip(ip(1)), at(1))
            .await
            .unwrap();
        s.record_usage(r.id, &UsageSubject::Ip(ip(2)), at(2))
            .await
            .unwrap();
        assert_eq!(addresses(&s, r.id).await, vec![(ip(2), 1, false)]);
        let d = |i: i64| DeviceId::parse(format!("dev-{i}")).unwrap();
        s.redeem(&o.digest, &d(0), at(0), &RedeemEvents::NONE)
            .await
            .unwrap();
        assert!(
            s.redeem(&o.digest, &d(1), at(1), &RedeemEvents::NONE)
                .await
                .is_err()
        );
        assert_eq!(s.enrollments(o.id).await.unwrap().len(), 1);
    }

    #[test]
    fn defaults_and_capabilities() {
        let s = MemoryStore::default();
        assert_eq!(s.limits(), MemoryLimits::new());
        assert_eq!(s.limits().max_usage_entries_per_token, 4_096);
        assert_eq!(s.limits().max_enrollments_per_token, 100_000);
        let c = s.capabilities();
        assert!(!c.durable && !c.shared_across_processes);
        let shown = format!("{s:?}");
        assert!(
            shown.starts_with("MemoryStore") && shown.contains("tokens: 0"),
            "{shown}"
        );
    }

    #[test]
    fn redemptions_from_many_threads_never_exceed_the_limit() {
        let s = Arc::new(MemoryStore::new());
        let r = onboarding(UsageLimit::uses(50).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(s.insert(&r, &[])).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (s, digest) = (Arc::clone(&s), r.digest);
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    (0..20)
                        .filter(|i| {
                            let d = DeviceId::parse(format!("t{t}-{i}")).unwrap();
                            let got = rt
                                .block_on(s.redeem(&digest, &d, at(1), &RedeemEvents::NONE))
                                .unwrap();
                            matches!(got, Redemption::Redeemed(_))
                        })
                        .count()
                })
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(admitted, 50);
        let after = rt.block_on(s.get(r.id)).unwrap().unwrap();
        assert_eq!((after.uses, after.state), (50, State::Exhausted));
        assert_eq!(rt.block_on(s.enrollments(r.id)).unwrap().len(), 50);
    }

    /// A watcher no longer wanted is told nothing more and is let go, while others still are.
    #[tokio::test]
    async fn watchers_no_longer_wanted_are_let_go() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

        use tessera_store::Watcher;

        struct Counted {
            wanted: AtomicBool,
            told: AtomicUsize,
        }
        impl Watcher for Counted {
            fn changed(&self, _: Change) -> bool {
                self.told.fetch_add(1, Ordering::SeqCst);
                true
            }
            fn wanted(&self) -> bool {
                self.wanted.load(Ordering::SeqCst)
            }
        }
        let watcher = || {
            Arc::new(Counted {
                wanted: AtomicBool::new(true),
                told: AtomicUsize::new(0),
            })
        };

        let store = MemoryStore::new();
        let (gone, kept) = (watcher(), watcher());
        assert!(store.watch(gone.clone()).await.unwrap());
        assert!(store.watch(kept.clone()).await.unwrap());
        let r = app();
        store.insert(&r, &[]).await.unwrap();
        let revoke = |from| StateChange::new(from, State::Disabled, at(1));
        store
            .change_state(r.id, &revoke(State::Active), &[])
            .await
            .unwrap();
        assert_eq!(gone.told.load(Ordering::SeqCst), 1);
        gone.wanted.store(false, Ordering::SeqCst);
        store
            .change_state(
                r.id,
                &StateChange::new(State::Disabled, State::Active, at(2)),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            gone.told.load(Ordering::SeqCst),
            1,
            "not told once unwanted"
        );
        assert_eq!(kept.told.load(Ordering::SeqCst), 2);
        assert_eq!(Arc::strong_count(&gone), 1, "the store let it go");
    }
}
