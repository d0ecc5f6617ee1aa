//! The validation cache: records found by digest, kept for a bounded time so that repeated
//! validations of one token skip the store.
//!
//! The cache sits in front of the store as a [`Store`] itself, so every write of this process
//! goes through it — whether the service makes it or a caller reaches
//! [`TokenService::store`](crate::TokenService::store) — and drops what it changed before it
//! returns. Inside one process revocation is therefore exact: once a revoke, rotation, expiry or
//! update returns, no validation anywhere in the process accepts the old record.
//!
//! Another process (another instance over the same database) writes past this cache. Before it
//! keeps anything, the cache asks the store to [watch](Store::watch) for changes: PostgreSQL
//! reports every committed change a validation depends on (LISTEN/NOTIFY), and the cache drops
//! the record when the report arrives, milliseconds after the commit. The cache fails closed:
//! from the moment the store reports that its watch may be missing changes ([`Change::Lost`]:
//! a lost connection, an unanswered heartbeat) until it reports listening again
//! ([`Change::Resumed`]), the cache answers nothing from memory and keeps nothing (every
//! validation reads the store), then starts empty. Both moments are logged through `tracing`
//! (lost: `warn`; resumed, with how long caching was off: `info`). A store that cannot watch
//! (SQLite shared between processes) leaves the time to live as the bound, which the caller
//! chooses.
//!
//! Only hits of records are cached, never "not found": a token issued by another instance is
//! accepted at once, and unknown tokens cannot fill the memory.
//!
//! Each thread that validates keeps a copy of what it found in the shared map (its front, see
//! [`Front`]), so that a repeated validation on that thread writes to no memory another thread
//! reads (the shared map's lock word would move between the cores on every hit). A front's
//! entries are valid for the cache's epoch they were copied at: every write, every change the
//! watch reports and every loss bumps the epoch while it holds the shared map's write lock,
//! which empties every front at its next lookup; and an entry keeps the time to live it had.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Instant;

use async_trait::async_trait;
use tessera_core::audit::AuditEvent;
use tessera_core::digest::{Digest, Hint};
use tessera_core::id::{DeviceId, EndpointId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use tessera_store::{
    AuditFilter, Capabilities, Change, ChangeSink, Enrollment, RedeemEvents, Redemption,
    Result as StoreResult, SharedRecord, StateChange, Store, TokenFilter, UsageBatch, UsageEntry,
    UsageOutcome, UsageSubject, Watcher,
};
use thread_local::ThreadLocal;
use time::{Duration, OffsetDateTime};

use crate::observe::CacheMetrics;
use crate::ready::WatchState;
use crate::service::IdHasher;

/// How long and how many records the validation cache keeps (see
/// [`Builder::validation_cache`](crate::Builder::validation_cache)).
///
/// ```
/// use tessera::ValidationCache;
/// use time::Duration;
///
/// let cache = ValidationCache::new(Duration::seconds(2)).capacity(50_000);
/// assert_eq!(cache.ttl(), Duration::seconds(2));
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ValidationCache {
    ttl: Duration,
    capacity: usize,
}

impl ValidationCache {
    /// Default number of records kept.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// Keep a found record for at most `ttl`: the longest another instance's revocation can go
    /// unseen here. A zero or negative `ttl` keeps nothing.
    pub const fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            capacity: Self::DEFAULT_CAPACITY,
        }
    }

    /// Keep at most `capacity` records (default 100,000); when full, an arbitrary one makes
    /// room.
    #[must_use]
    pub const fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The time to live.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The capacity.
    pub const fn max_records(&self) -> usize {
        self.capacity
    }
}

struct Entry {
    record: Arc<SharedRecord>,
    /// Loaded at, and to be reloaded from, in Unix nanoseconds.
    loaded_at: i64,
    fresh_until: i64,
}

/// `t` in Unix nanoseconds, saturating (the cache and last-use coalescing compare integers,
/// not dates, on the validation path).
pub(crate) fn unix_nanos(t: OffsetDateTime) -> i64 {
    let nanos = t.unix_timestamp_nanos();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN + 1 } else { i64::MAX })
}

/// A thread's copy of the entries it found in the shared map, valid while the cache's epoch is
/// `epoch`.
#[derive(Default)]
struct Front {
    epoch: u64,
    entries: HashMap<Digest, FrontEntry, BuildHasherDefault<IdHasher>>,
}

/// An entry of a [`Front`]: the shared entry's record and times.
struct FrontEntry {
    record: Arc<SharedRecord>,
    loaded_at: i64,
    fresh_until: i64,
}

/// The most entries one thread's front holds (at most the cache's capacity): when full, it starts
/// empty again.
const FRONT_MAX: usize = 16_384;

#[derive(Default)]
struct Map {
    by_digest: HashMap<Digest, Entry, BuildHasherDefault<IdHasher>>,
    by_id: HashMap<TokenId, Digest, BuildHasherDefault<IdHasher>>,
}

impl Map {
    fn remove_id(&mut self, id: TokenId) {
        if let Some(d) = self.by_id.remove(&id) {
            self.by_digest.remove(&d);
        }
    }

    fn remove_digest(&mut self, digest: &Digest) {
        if let Some(e) = self.by_digest.remove(digest) {
            self.by_id.remove(&e.record.id);
        }
    }
}

/// A [`Store`] in front of another, caching `find_by_digest` hits.
pub(crate) struct CachingStore {
    inner: Arc<dyn Store>,
    config: ValidationCache,
    ttl_nanos: i64,
    map: RwLock<Map>,
    /// Bumped by every write while it holds `map`'s write lock, before it drops entries: a
    /// record read from the store before a write finished is not cached after it, and every
    /// thread's front is emptied.
    epoch: Padded<AtomicU64>,
    /// Each thread's copy of the entries it found (read without touching `map`'s lock).
    front: ThreadLocal<RefCell<Front>>,
    /// The most entries a front holds.
    front_max: usize,
    /// Whether the store reports other instances' changes to this cache (see [`Watch`]).
    watch: AtomicU8,
    /// Since when the watch is lost (caching off), or when asking for a watch last failed.
    since: Mutex<Option<Instant>>,
    /// Tokens a write dropped before it returned may still change (see [`InDoubt`]).
    in_doubt: Mutex<InDoubt>,
    /// Whether `in_doubt` may hold anything (so loads skip its lock when it does not).
    any_in_doubt: AtomicBool,
    /// Hits, misses, evictions, time not caching, watch losses and resumptions.
    pub(crate) metrics: CacheMetrics,
    me: Weak<Self>,
}

/// A value on a cache line of its own: the epoch, read by every validation, is not moved between
/// the cores by writes to the fields beside it (the shared map's lock word).
#[repr(align(64))]
struct Padded<T>(T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Where the cache stands with [`Store::watch`]: nothing is cached until the store answered,
/// so no change committed after a record was read can go unreported.
struct Watch;

impl Watch {
    const NOT_ASKED: u8 = 0;
    const ASKING: u8 = 1;
    /// The store reports changes: other instances' revocations show within milliseconds.
    const WATCHING: u8 = 2;
    /// The store cannot watch: the time to live alone bounds other instances' changes.
    const UNSUPPORTED: u8 = 3;
    /// The watch may be missing changes until it resumes: nothing is served from memory or
    /// kept.
    const LOST: u8 = 4;

    /// How long after a failed [`Store::watch`] the cache asks again (meanwhile it keeps
    /// nothing).
    const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
}

/// Tokens written by a write that was dropped before it returned, and until when they are not
/// kept.
///
/// A dropped write may still commit after the drop — SQLite finishes a statement it started,
/// PostgreSQL one it received — so the cache cannot know when its change lands. Its tokens
/// are dropped at once and then not kept for [`InDoubt::FOR`] (longer than a statement can wait
/// for a lock or a connection with the default settings); every validation of them reads the
/// store meanwhile.
#[derive(Default)]
struct InDoubt {
    ids: HashMap<TokenId, Instant, BuildHasherDefault<IdHasher>>,
    digests: HashMap<Digest, Instant, BuildHasherDefault<IdHasher>>,
}

impl InDoubt {
    const FOR: std::time::Duration = std::time::Duration::from_secs(30);

    fn prune(&mut self) {
        let now = Instant::now();
        self.ids.retain(|_, until| *until > now);
        self.digests.retain(|_, until| *until > now);
    }

    fn holds(&self, id: TokenId, digest: &Digest) -> bool {
        let now = Instant::now();
        self.ids.get(&id).is_some_and(|u| *u > now)
            || self.digests.get(digest).is_some_and(|u| *u > now)
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.digests.is_empty()
    }
}

/// Drops what a write changes when the write ends, whether it returned or was dropped (then
/// its tokens are also [in doubt](InDoubt) for a while).
struct Writing<'a> {
    cache: &'a CachingStore,
    ids: Vec<TokenId>,
    digest: Option<Digest>,
    returned: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let cache = self.cache;
        if !self.returned {
            let until = Instant::now() + InDoubt::FOR;
            let mut doubt = cache
                .in_doubt
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            doubt.prune();
            for id in &self.ids {
                doubt.ids.insert(*id, until);
            }
            if let Some(d) = self.digest {
                doubt.digests.insert(d, until);
            }
            cache.any_in_doubt.store(true, Ordering::SeqCst);
        }
        cache.invalidate_ids(self.ids.iter().copied());
        if let Some(d) = &self.digest {
            cache.invalidate_digest(d);
        }
    }
}

/// What the store reports changes to: the cache, for as long as it exists.
struct CacheWatcher(Weak<CachingStore>);

impl Watcher for CacheWatcher {
    fn changed(&self, change: Change) -> bool {
        match self.0.upgrade() {
            Some(cache) => {
                cache.changed(change);
                true
            }
            None => false,
        }
    }

    fn wanted(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// Puts the watch state back to "not asked" if asking is abandoned (the future dropped).
struct Asking<'a>(&'a AtomicU8);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        let _ = self.0.compare_exchange(
            Watch::ASKING,
            Watch::NOT_ASKED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

impl core::fmt::Debug for CachingStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CachingStore")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CachingStore {
    pub(crate) fn new(inner: Arc<dyn Store>, config: ValidationCache) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            watch: AtomicU8::new(Watch::NOT_ASKED),
            since: Mutex::new(None),
            in_doubt: Mutex::default(),
            any_in_doubt: AtomicBool::new(false),
            metrics: CacheMetrics::default(),
            me: me.clone(),
            inner,
            config,
            ttl_nanos: i64::try_from(config.ttl.whole_nanoseconds()).unwrap_or(i64::MAX),
            map: RwLock::new(Map::default()),
            epoch: Padded(AtomicU64::new(0)),
            front: ThreadLocal::new(),
            front_max: config.capacity.min(FRONT_MAX),
        })
    }

    /// Whether records may be kept: once the store said whether it watches for changes (asking
    /// it the first time), and not while the watch is lost. While another load is asking, or
    /// for [`Watch::RETRY`] after asking failed, this one keeps nothing.
    async fn may_keep(&self) -> bool {
        match self.watch.load(Ordering::SeqCst) {
            Watch::WATCHING | Watch::UNSUPPORTED => return true,
            Watch::NOT_ASKED => {}
            _ => return false,
        }
        if self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|failed| failed.elapsed() < Watch::RETRY)
        {
            return false;
        }
        if self
            .watch
            .compare_exchange(
                Watch::NOT_ASKED,
                Watch::ASKING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        let guard = Asking(&self.watch);
        let sink: ChangeSink = Arc::new(CacheWatcher(self.me.clone()));
        let watching = match self.inner.watch(sink).await {
            Ok(watching) => watching,
            Err(e) => {
                // Keep nothing (the store is asked for every validation) and ask again later.
                tracing::warn!(error = %e,
                    "tessera: validation cache off: the store cannot watch for changes now");
                *self.since.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                self.metrics.caching_off();
                return false;
            }
        };
        // A loss reported before this answer came back wins: then the state is no longer
        // ASKING and stays as the report left it.
        let asked = self.watch.compare_exchange(
            Watch::ASKING,
            if watching {
                Watch::WATCHING
            } else {
                Watch::UNSUPPORTED
            },
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        drop(guard);
        if asked.is_ok() {
            *self.since.lock().unwrap_or_else(PoisonError::into_inner) = None;
            self.metrics.caching_on();
        }
        true
    }

    /// Another instance changed something: drop it (everything, when changes were missed).
    fn changed(&self, change: Change) {
        match change {
            Change::Token(id) => self.invalidate_ids([id]),
            Change::Lost => {
                // Off first, then no load in flight may be kept, then nothing is left.
                let before = self.watch.swap(Watch::LOST, Ordering::SeqCst);
                self.clear();
                if before != Watch::LOST {
                    *self.since.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Instant::now());
                    self.metrics.watch_lost();
                    self.metrics.caching_off();
                    tracing::warn!(
                        "tessera: validation cache off: the store's change watch was lost; \
                         every validation reads the store until it resumes"
                    );
                }
            }
            Change::Resumed => {
                // Empty (what was loaded before may have missed changes), then on again.
                self.clear();
                if self
                    .watch
                    .compare_exchange(
                        Watch::LOST,
                        Watch::WATCHING,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok()
                {
                    let off = self
                        .since
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take()
                        .map_or(0, |t| t.elapsed().as_millis());
                    self.metrics.watch_resumed();
                    self.metrics.caching_on();
                    tracing::info!(
                        off_ms = u64::try_from(off).unwrap_or(u64::MAX),
                        "tessera: validation cache on again: the store's change watch resumed"
                    );
                }
            }
            _ => self.clear(),
        }
    }

    /// No load in flight may be kept, and nothing kept is left.
    fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.by_digest.clear();
        map.by_id.clear();
    }

    /// Whether the store reports other instances' changes to this cache right now (known
    /// after the first load; false while the watch is lost).
    pub(crate) fn watching(&self) -> bool {
        self.watch.load(Ordering::Acquire) == Watch::WATCHING
    }

    /// The cached record with this digest, if loaded less than the time to live before `now`
    /// (never while the watch is lost).
    pub(crate) fn cached(&self, digest: &Digest, at: i64) -> Option<Arc<SharedRecord>> {
        if self.watch.load(Ordering::Acquire) == Watch::LOST {
            return None;
        }
        // This thread's front first: valid while no write, reported change or loss bumped the
        // epoch since its entries were copied.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let front = self.front.get_or(RefCell::default);
        if let Ok(mut front) = front.try_borrow_mut() {
            if front.epoch == epoch {
                if let Some(e) = front.entries.get(digest) {
                    if e.loaded_at <= at && at < e.fresh_until {
                        let hit = Arc::clone(&e.record);
                        drop(front);
                        self.metrics.hit();
                        return Some(hit);
                    }
                }
            } else {
                front.entries.clear();
                front.epoch = epoch;
            }
        }
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let e = map.by_digest.get(digest)?;
        if !(e.loaded_at <= at && at < e.fresh_until) {
            return None;
        }
        // Read under the read lock: an invalidation of this entry bumps the epoch under the
        // write lock, so after this lock, and a copy made at this epoch is no longer used.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let copy = FrontEntry {
            record: Arc::clone(&e.record),
            loaded_at: e.loaded_at,
            fresh_until: e.fresh_until,
        };
        drop(map);
        let hit = Arc::clone(&copy.record);
        if let Ok(mut front) = front.try_borrow_mut() {
            if front.epoch != epoch || front.entries.len() >= self.front_max {
                front.entries.clear();
                front.epoch = epoch;
            }
            front.entries.insert(*digest, copy);
        }
        self.metrics.hit();
        Some(hit)
    }

    /// Read the record from the store and keep it, unless a write ran meanwhile.
    pub(crate) async fn load(
        &self,
        digest: &Digest,
        at: i64,
    ) -> StoreResult<Option<Arc<SharedRecord>>> {
        self.metrics.miss();
        let keep = self.ttl_nanos > 0 && self.config.capacity > 0 && self.may_keep().await;
        // The epoch before the state: a loss reported after this check bumps the epoch, so
        // what is read below is not kept.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let keep = keep
            && matches!(
                self.watch.load(Ordering::SeqCst),
                Watch::WATCHING | Watch::UNSUPPORTED
            );
        let Some(record) = self.inner.find_shared(digest).await? else {
            return Ok(None);
        };
        if keep && self.any_in_doubt.load(Ordering::SeqCst) {
            let mut doubt = self.in_doubt.lock().unwrap_or_else(PoisonError::into_inner);
            doubt.prune();
            if doubt.is_empty() {
                self.any_in_doubt.store(false, Ordering::SeqCst);
            }
            if doubt.holds(record.id, digest) {
                return Ok(Some(record));
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if !keep || self.epoch.load(Ordering::SeqCst) != epoch {
            return Ok(Some(record));
        }
        if map
            .by_digest
            .get(digest)
            .is_some_and(|e| e.fresh_until <= at)
        {
            self.metrics.evicted(true);
        }
        map.remove_digest(digest);
        map.remove_id(record.id);
        if map.by_digest.len() >= self.config.capacity {
            if let Some((victim, stale)) = map
                .by_digest
                .iter()
                .next()
                .map(|(d, e)| (*d, e.fresh_until <= at))
            {
                map.remove_digest(&victim);
                self.metrics.evicted(stale);
            }
        }
        map.by_id.insert(record.id, *digest);
        map.by_digest.insert(
            *digest,
            Entry {
                record: Arc::clone(&record),
                loaded_at: at,
                fresh_until: at.saturating_add(self.ttl_nanos),
            },
        );
        Ok(Some(record))
    }

    /// After a write: no load that began before it may be kept, and `ids` are dropped.
    fn invalidate_ids(&self, ids: impl IntoIterator<Item = TokenId>) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for id in ids {
            map.remove_id(id);
        }
    }

    fn invalidate_digest(&self, digest: &Digest) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.remove_digest(digest);
    }

    /// Ask the store to watch for changes if nobody asked yet (or the last failed ask is old
    /// enough to retry), and say where the watch stands.
    pub(crate) async fn start_watch(&self) -> WatchState {
        if self.ttl_nanos > 0 && self.config.capacity > 0 {
            self.may_keep().await;
        }
        self.watch_state()
    }

    /// Where the watch stands now.
    pub(crate) fn watch_state(&self) -> WatchState {
        if self.ttl_nanos <= 0 || self.config.capacity == 0 {
            return WatchState::NoCache;
        }
        match self.watch.load(Ordering::SeqCst) {
            Watch::WATCHING => WatchState::Watching,
            Watch::UNSUPPORTED => WatchState::TtlBounded,
            Watch::LOST => WatchState::Lost,
            Watch::ASKING => WatchState::Starting,
            _ => {
                if self
                    .since
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some()
                {
                    WatchState::Failed
                } else {
                    WatchState::NotStarted
                }
            }
        }
    }

    /// How many records are cached (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_digest
            .len()
    }
}

/// Run a write on the inner store and drop what it may have changed, whether it succeeded or
/// not (a failed write may still have committed before the answer was lost), and also when it
/// is dropped before it returns.
macro_rules! write_through {
    ($self:ident, $ids:expr, $call:expr) => {{
        let mut writing = Writing {
            cache: $self,
            ids: $ids.into_iter().collect(),
            digest: None,
            returned: false,
        };
        let out = $call.await;
        writing.returned = true;
        drop(writing);
        out
    }};
}

#[async_trait]
impl Store for CachingStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn insert(&self, record: &TokenRecord, events: &[AuditEvent]) -> StoreResult<()> {
        // Nothing cached can be stale: only found records are cached, and a new one was not.
        self.inner.insert(record, events).await
    }

    async fn insert_many(&self, records: &[TokenRecord], events: &[AuditEvent]) -> StoreResult<()> {
        self.inner.insert_many(records, events).await
    }

    async fn get(&self, id: TokenId) -> StoreResult<Option<TokenRecord>> {
        self.inner.get(id).await
    }

    async fn find_by_digest(&self, digest: &Digest) -> StoreResult<Option<TokenRecord>> {
        self.inner.find_by_digest(digest).await
    }

    async fn list(&self, filter: &TokenFilter) -> StoreResult<Vec<TokenRecord>> {
        self.inner.list(filter).await
    }

    async fn change_state(
        &self,
        id: TokenId,
        change: &StateChange,
        events: &[AuditEvent],
    ) -> StoreResult<TokenRecord> {
        write_through!(self, [id], self.inner.change_state(id, change, events))
    }

    async fn replace(
        &self,
        old: TokenId,
        change: &StateChange,
        new: &TokenRecord,
        events: &[AuditEvent],
    ) -> StoreResult<TokenRecord> {
        write_through!(
            self,
            [old, new.id],
            self.inner.replace(old, change, new, events)
        )
    }

    async fn update_data(
        &self,
        id: TokenId,
        data: &KindData,
        events: &[AuditEvent],
    ) -> StoreResult<TokenRecord> {
        write_through!(self, [id], self.inner.update_data(id, data, events))
    }

    async fn set_digest(
        &self,
        id: TokenId,
        digest: &Digest,
        hint: &Hint,
        events: &[AuditEvent],
    ) -> StoreResult<TokenRecord> {
        write_through!(self, [id], self.inner.set_digest(id, digest, hint, events))
    }

    async fn set_sealed(
        &self,
        id: TokenId,
        sealed: Option<&Sealed>,
        events: &[AuditEvent],
    ) -> StoreResult<TokenRecord> {
        write_through!(self, [id], self.inner.set_sealed(id, sealed, events))
    }

    async fn touch(
        &self,
        id: TokenId,
        now: OffsetDateTime,
        interval: Duration,
    ) -> StoreResult<bool> {
        // Only the last use changes, which readers take as lagging: nothing cached is dropped.
        self.inner.touch(id, now, interval).await
    }

    async fn purge(&self, ids: &[TokenId], events: &[AuditEvent]) -> StoreResult<u64> {
        write_through!(self, ids.iter().copied(), self.inner.purge(ids, events))
    }

    async fn redeem(
        &self,
        digest: &Digest,
        device: &DeviceId,
        now: OffsetDateTime,
        events: &RedeemEvents,
    ) -> StoreResult<Redemption> {
        let mut writing = Writing {
            cache: self,
            ids: Vec::new(),
            digest: Some(*digest),
            returned: false,
        };
        let out = self.inner.redeem(digest, device, now, events).await;
        writing.returned = true;
        drop(writing);
        out
    }

    async fn enrollments(&self, id: TokenId) -> StoreResult<Vec<Enrollment>> {
        self.inner.enrollments(id).await
    }

    async fn enrollments_of(&self, ids: &[TokenId]) -> StoreResult<Vec<(TokenId, Enrollment)>> {
        self.inner.enrollments_of(ids).await
    }

    async fn record_usage(
        &self,
        id: TokenId,
        subject: &UsageSubject,
        now: OffsetDateTime,
    ) -> StoreResult<UsageOutcome> {
        // Usage entries are not cached, and the block decision is made in this one atomic
        // upsert: nothing cached depends on it.
        self.inner.record_usage(id, subject, now).await
    }

    async fn find_shared(&self, digest: &Digest) -> StoreResult<Option<Arc<SharedRecord>>> {
        self.inner.find_shared(digest).await
    }

    async fn record_batch(&self, batch: &UsageBatch) -> StoreResult<bool> {
        // Counts, last uses and audit: nothing a cached validation decides on (the block list
        // is not in a batch).
        self.inner.record_batch(batch).await
    }

    async fn is_blocked(&self, id: TokenId, ip: IpAddr) -> StoreResult<bool> {
        self.inner.is_blocked(id, ip).await
    }

    async fn set_blocked(
        &self,
        id: TokenId,
        ip: IpAddr,
        blocked: bool,
        events: &[AuditEvent],
    ) -> StoreResult<UsageEntry> {
        // The block list travels with the record: drop it.
        write_through!(self, [id], self.inner.set_blocked(id, ip, blocked, events))
    }

    async fn usage(&self, id: TokenId) -> StoreResult<Vec<UsageEntry>> {
        self.inner.usage(id).await
    }

    async fn endpoint_usage(&self, endpoint: &EndpointId) -> StoreResult<Vec<UsageEntry>> {
        self.inner.endpoint_usage(endpoint).await
    }

    async fn put_mapping(&self, mapping: &Mapping, events: &[AuditEvent]) -> StoreResult<()> {
        self.inner.put_mapping(mapping, events).await
    }

    async fn mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
    ) -> StoreResult<Option<Mapping>> {
        self.inner.mapping(secondary, endpoint, method).await
    }

    async fn set_mapping_enabled(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        enabled: bool,
        events: &[AuditEvent],
    ) -> StoreResult<Mapping> {
        self.inner
            .set_mapping_enabled(secondary, endpoint, method, enabled, events)
            .await
    }

    async fn remove_mapping(
        &self,
        secondary: TokenId,
        endpoint: &EndpointId,
        method: Method,
        events: &[AuditEvent],
    ) -> StoreResult<()> {
        self.inner
            .remove_mapping(secondary, endpoint, method, events)
            .await
    }

    async fn mappings(
        &self,
        secondary: Option<TokenId>,
        endpoint: Option<&EndpointId>,
    ) -> StoreResult<Vec<Mapping>> {
        self.inner.mappings(secondary, endpoint).await
    }

    async fn watch(&self, sink: ChangeSink) -> StoreResult<bool> {
        self.inner.watch(sink).await
    }

    async fn append(&self, event: &AuditEvent) -> StoreResult<()> {
        self.inner.append(event).await
    }

    async fn events(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        self.inner.events(filter).await
    }
}
