//! The usage ledger: the bookkeeping of accepted uses and refusals, aggregated in memory per
//! token and written behind the request path in batches.
//!
//! A validation decides on the record alone (state, expiry, limits, the block list that travels
//! with it) and then notes what happened here: a lock of one shard and a few counters, no
//! store call. What is noted is written by [`Store::record_batch`] in one transaction: every
//! [`LedgerSettings::interval`] (1 s by default) by a task of the service, as soon as
//! [`LedgerSettings::max_pending`] entries are waiting, and whenever
//! [`TokenService::flush`](crate::TokenService::flush) is called (a graceful shutdown calls it).
//!
//! What a crash can lose: what was noted since the last batch was written, at most one interval
//! of counts while the store answers. Nothing is counted twice: each batch carries a random id
//! the store remembers, and a batch whose answer was lost (the write dropped mid-way, a
//! connection cut after the commit) is retried with the same id until the store says it has
//! it. While the store is down the ledger keeps its batch and retries every interval; it goes
//! on aggregating uses of the tokens it already holds, and beyond
//! [`LedgerSettings::max_held`] tokens it drops the counts of new ones (counted in
//! `tessera_ledger_dropped_total` and logged), so memory stays bounded.
//!
//! Uses and refusals are audited as aggregated rows, one per token, carrier and window of uses
//! ([`LedgerSettings::audit_window`], a minute by default): each batch of the window writes the
//! row's totals so far, in the same transaction as the counts, and the store keeps one version
//! of each row (its key), the latest.
//!
//! What is not yet written is included in this process's reads
//! ([`ips`](crate::ApplicationTokens::ips), [`traffic`](crate::EndpointTokens::traffic),
//! [`audit`](crate::TokenService::audit)); other processes see it once it is written.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tessera_core::audit::{AuditAction, AuditEvent, RowKey};
use tessera_core::clock::Clock;
use tessera_core::id::{EndpointId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::EndpointData;
use tessera_core::kind::endpoint::Method;
use tessera_core::validate::Rejection;
use tessera_store::{
    AuditFilter, BatchId, SharedRecord, SlotKey, Store, StoreError, UsageBatch, UsageDelta,
    UsageEntry, UsageSubject,
};
use time::{Duration, OffsetDateTime};

use crate::cache::unix_nanos;
use crate::service::IdHasher;

/// How the usage ledger writes (see [`Builder::ledger`](crate::Builder::ledger)).
///
/// ```
/// use tessera::LedgerSettings;
/// use time::Duration;
///
/// let ledger = LedgerSettings::new()
///     .interval(Duration::milliseconds(500))
///     .max_pending(50_000);
/// assert_eq!(ledger.flush_interval(), Duration::milliseconds(500));
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct LedgerSettings {
    interval: Duration,
    audit_window: Duration,
    max_pending: usize,
    max_held: usize,
    each_use: bool,
}

impl LedgerSettings {
    /// The default interval: one second.
    pub const DEFAULT_INTERVAL: Duration = Duration::seconds(1);
    /// The default window of an aggregated audit row: one minute.
    pub const DEFAULT_AUDIT_WINDOW: Duration = Duration::minutes(1);
    /// The default number of waiting entries that triggers a write before the interval ends.
    pub const DEFAULT_MAX_PENDING: usize = 100_000;
    /// The default number of tokens held while the store cannot be written.
    pub const DEFAULT_MAX_HELD: usize = 1_000_000;

    /// The defaults: write every second, or at 100,000 waiting entries; hold at most
    /// 1,000,000 tokens' counts while the store is down; audit uses as aggregated rows, one per
    /// token and minute of uses.
    pub const fn new() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            audit_window: Self::DEFAULT_AUDIT_WINDOW,
            max_pending: Self::DEFAULT_MAX_PENDING,
            max_held: Self::DEFAULT_MAX_HELD,
            each_use: false,
        }
    }

    /// Write every `interval` (at least one millisecond): the most a crash can lose while
    /// the store answers.
    #[must_use]
    pub const fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Aggregate a token's uses (and refusals) into one audit row per `window` of them (default
    /// one minute; never less than the interval): the row is written with its totals so far at
    /// every write of its window, in the same transaction as the counts it sums, and the store
    /// keeps its latest version. A row stays open until `window` has passed since its first use
    /// (by the service's clock); a use that no open row of the token (and carrier, and refusal
    /// reason) takes starts a new one.
    ///
    /// A longer window writes fewer audit rows (a busy token adds one row per window to the
    /// audit trail, instead of one per interval) and fewer index entries.
    #[must_use]
    pub const fn audit_window(mut self, window: Duration) -> Self {
        self.audit_window = window;
        self
    }

    /// Write as soon as `n` entries (tokens, addresses, endpoints, per-use events) wait.
    #[must_use]
    pub const fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// Hold at most `n` tokens' counts while the store cannot be written; uses of further
    /// tokens are not counted (decisions are not affected).
    #[must_use]
    pub const fn max_held(mut self, n: usize) -> Self {
        self.max_held = n;
        self
    }

    /// Audit every accepted use (and refusal) as one row of its own, as well as through the
    /// aggregated rows being off (default: aggregated rows, one per token, carrier and
    /// interval). Takes effect where uses and refusals are audited at all
    /// ([`Builder::audit_uses`](crate::Builder::audit_uses),
    /// [`Builder::audit_refusals`](crate::Builder::audit_refusals)).
    #[must_use]
    pub const fn audit_each_use(mut self, on: bool) -> Self {
        self.each_use = on;
        self
    }

    /// The write interval.
    pub const fn flush_interval(&self) -> Duration {
        self.interval
    }

    /// Whether each use is audited as a row of its own.
    pub const fn audits_each_use(&self) -> bool {
        self.each_use
    }

    /// The window of an aggregated audit row: as set, but never less than the interval.
    pub fn aggregation_window(&self) -> Duration {
        if self.audit_window < self.interval {
            self.interval
        } else {
            self.audit_window
        }
    }

    fn interval_std(&self) -> std::time::Duration {
        let ms = self
            .interval
            .whole_milliseconds()
            .clamp(1, i128::from(u32::MAX));
        std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(1))
    }
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self::new()
    }
}

/// Number of shards: validations on different cores rarely meet on one lock.
const SHARDS: usize = 16;

/// Distinct subjects (addresses, endpoints) counted per token and interval; beyond, further
/// new subjects of that token are not counted until the next write.
const MAX_SUBJECTS: usize = 4_096;

/// Aggregated audit rows held per token before rows stop starting a new one per window.
const MAX_ROWS: usize = 64;

type ById<V> = HashMap<TokenId, V, BuildHasherDefault<IdHasher>>;

/// Ledger numbers (the owner in a use slot's key): unique in the process.
static LEDGERS: AtomicU64 = AtomicU64::new(1);
/// Bits of a slot key's tag left for the owner (the low 16 say what kind of use).
const OWNER_MASK: u64 = (1 << 48) - 1;

/// Counts of one subject (or one aggregated audit row) over the interval.
#[derive(Clone, Copy, Debug)]
struct Span {
    first: OffsetDateTime,
    last: OffsetDateTime,
    count: u64,
}

impl Span {
    const fn new(at: OffsetDateTime) -> Self {
        Self {
            first: at,
            last: at,
            count: 1,
        }
    }

    /// `count` more uses, the latest at `last` (none before `first`).
    fn add_many(&mut self, count: u64, last: OffsetDateTime) {
        self.count = self.count.saturating_add(count);
        if last > self.last {
            self.last = last;
        }
    }

    fn add(&mut self, at: OffsetDateTime) {
        self.count = self.count.saturating_add(1);
        if at < self.first {
            self.first = at;
        }
        if at > self.last {
            self.last = at;
        }
    }
}

/// One aggregated audit row in the making.
#[derive(Debug)]
struct Row {
    /// Its key: each write of the row replaces the version stored before.
    key: RowKey,
    /// Uses counted since it was last taken into a batch.
    dirty: bool,
    /// Started since the last batch was taken (an entry of `pending`).
    fresh: bool,
    /// The time of its event once a version was taken to be written: the store finds the row
    /// by it, so a use noted later with an earlier clock reading does not move it.
    at: Option<OffsetDateTime>,
    /// The event it becomes (subject, carrier), its action and times set when written.
    template: AuditEvent,
    span: Span,
    addresses: HashSet<IpAddr, BuildHasherDefault<IdHasher>>,
    /// `None`: uses; else refusals for this reason.
    refused: Option<Rejection>,
    /// The endpoint and method it counts (endpoint tokens), so rows of two carriers stay apart.
    carrier: Option<(EndpointId, Method)>,
}

impl Row {
    fn add(&mut self, at: OffsetDateTime, ip: Option<IpAddr>) {
        self.span.add(at);
        self.dirty = true;
        self.note_ip(ip);
    }

    fn note_ip(&mut self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            if self.addresses.len() < usize::try_from(AuditAction::MAX_DISTINCT).unwrap_or(0) {
                self.addresses.insert(ip);
            }
        }
    }

    fn event(&self) -> AuditEvent {
        let mut e = self.template.clone();
        e.at = self.at.unwrap_or(self.span.first);
        let addresses = self.addresses.len() as u64;
        e.action = match self.refused {
            None => AuditAction::UsedMany {
                count: self.span.count,
                last: self.span.last,
                addresses,
                row: Some(self.key),
            },
            Some(reason) => AuditAction::RefusedMany {
                reason,
                count: self.span.count,
                last: self.span.last,
                addresses,
                row: Some(self.key),
            },
        };
        e
    }
}

/// What one token did over the interval, and its audit rows still open.
#[derive(Debug, Default)]
struct Tally {
    /// Noted since the last batch was taken (an entry of `pending`); a tally carried over with
    /// open rows only is not, until its next note.
    noted: bool,
    last_used: Option<OffsetDateTime>,
    subjects: Vec<(UsageSubject, Span)>,
    rows: Vec<Row>,
    /// The record whose [`UseSlot`](tessera_store::UseSlot) counts this token's repeated uses
    /// of one key, if one was registered: its count belongs here.
    fast: Option<Fast>,
}

/// A registration of a record's use slot to a tally: the uses it counts go to `subject` and
/// `row` (indices in the tally, which only grows until it is taken).
#[derive(Debug)]
struct Fast {
    record: Arc<SharedRecord>,
    number: u64,
    subject: Option<usize>,
    row: Option<usize>,
}

impl Tally {
    /// Take the uses the record's slot counted into this tally; `close` frees the slot (the
    /// tally is being taken).
    fn settle(&mut self, close: bool) {
        let Some(fast) = &self.fast else { return };
        let slot = fast.record.use_slot();
        let counted = if close {
            slot.close(fast.number)
        } else {
            slot.settle(fast.number)
        };
        if let Some(c) = counted.filter(|c| c.uses > 0) {
            let last = OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.last))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            if self.last_used.is_none_or(|l| l < last) {
                self.last_used = Some(last);
            }
            if let Some((_, span)) = fast.subject.and_then(|i| self.subjects.get_mut(i)) {
                span.add_many(c.uses, last);
            }
            if let Some(row) = fast.row.and_then(|i| self.rows.get_mut(i)) {
                row.span.add_many(c.uses, last);
                row.dirty = true;
            }
        }
        if close {
            self.fast = None;
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    tokens: ById<Tally>,
    /// One event per use or refusal (with [`LedgerSettings::audit_each_use`]).
    each: Vec<AuditEvent>,
}

/// What a validation notes: an accepted use or a refusal of a known token.
pub(crate) struct Note<'a> {
    /// The token.
    pub(crate) token: TokenId,
    /// Its record as the validation found it (its use slot counts repeated uses).
    pub(crate) record: &'a Arc<SharedRecord>,
    /// When.
    pub(crate) at: OffsetDateTime,
    /// What to count it against (an address for application tokens, an endpoint and method
    /// for endpoint tokens), for accepted uses.
    pub(crate) subject: Option<Subject<'a>>,
    /// The client address, if known (counted in the audit rows' distinct addresses).
    pub(crate) ip: Option<IpAddr>,
    /// `None` for an accepted use.
    pub(crate) refused: Option<Rejection>,
    /// The carrier of an endpoint request.
    pub(crate) carrier: Option<(&'a EndpointId, Method)>,
}

/// A usage subject borrowed from the request (cloned only for a new entry).
#[derive(Clone, Copy)]
pub(crate) enum Subject<'a> {
    Ip(IpAddr),
    Endpoint(&'a EndpointId, Method),
}

impl Subject<'_> {
    fn is(&self, s: &UsageSubject) -> bool {
        match (self, s) {
            (Self::Ip(a), UsageSubject::Ip(b)) => a == b,
            (Self::Endpoint(e, m), UsageSubject::Endpoint(f, n)) => m == n && *e == f,
            _ => false,
        }
    }

    fn owned(self) -> UsageSubject {
        match self {
            Self::Ip(a) => UsageSubject::Ip(a),
            Self::Endpoint(e, m) => UsageSubject::Endpoint(e.clone(), m),
        }
    }
}

/// The ledger of one service (and its clones).
pub(crate) struct Ledger {
    store: Arc<dyn Store>,
    /// The service's clock: an audit row stays open until its window has passed by it.
    clock: Arc<dyn Clock>,
    /// This ledger among the process's (the owner in the keys of records' use slots).
    id: u64,
    /// An audit row's window in nanoseconds: how far from its claim a use slot counts.
    window: i64,
    settings: LedgerSettings,
    audit_uses: bool,
    audit_refusals: bool,
    shards: Box<[Mutex<Shard>]>,
    /// Entries waiting (tokens, subjects, rows, per-use events), across shards.
    pending: AtomicUsize,
    /// Tokens waiting, across shards.
    tokens: AtomicUsize,
    /// The batch being written, or left by a write that failed or was dropped: written again,
    /// with the same id, before anything newer.
    unwritten: Mutex<Option<Arc<UsageBatch>>>,
    /// One writer at a time.
    writing: tokio::sync::Mutex<()>,
    /// Wakes the writer task early (a size bound reached).
    wake: Arc<tokio::sync::Notify>,
    /// Whether the writer task runs.
    started: Arc<AtomicBool>,
    /// Whether uses are being dropped (logged once until the next write).
    dropping: AtomicBool,
    /// A random base and a counter: batch ids unique across processes.
    batch_base: u128,
    batch_seq: AtomicU64,
    /// Row keys, the same way (the same random id, its halves swapped: a namespace of its own).
    row_base: u128,
    row_seq: AtomicU64,
    me: Weak<Self>,
}

impl core::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ledger")
            .field("settings", &self.settings)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What one [`TokenService::flush`](crate::TokenService::flush) wrote.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Flushed {
    /// Batches written (a batch left by an earlier failed write, then the current one).
    pub batches: u32,
    /// Uses counted in them.
    pub uses: u64,
    /// Audit events written: appended, or aggregated rows replacing their version written
    /// earlier in their window.
    pub events: u64,
}

impl Ledger {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: LedgerSettings,
        audit_uses: bool,
        audit_refusals: bool,
    ) -> Arc<Self> {
        // An id drawn from the OS generator; should it fail, the time keeps ids apart across
        // restarts, and the counter within this process.
        let batch_base = TokenId::generate().map_or_else(
            |_| {
                let t = OffsetDateTime::now_utc().unix_timestamp_nanos();
                u128::from_le_bytes(t.to_le_bytes()) << 32
            },
            TokenId::as_u128,
        );
        Arc::new_cyclic(|me| Self {
            store,
            clock,
            id: LEDGERS.fetch_add(1, Ordering::Relaxed) & OWNER_MASK,
            window: i64::try_from(settings.aggregation_window().whole_nanoseconds())
                .unwrap_or(i64::MAX),
            settings,
            audit_uses,
            audit_refusals,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            pending: AtomicUsize::new(0),
            tokens: AtomicUsize::new(0),
            unwritten: Mutex::new(None),
            writing: tokio::sync::Mutex::new(()),
            wake: Arc::new(tokio::sync::Notify::new()),
            started: Arc::new(AtomicBool::new(false)),
            dropping: AtomicBool::new(false),
            batch_base,
            batch_seq: AtomicU64::new(0),
            row_base: batch_base.rotate_left(64),
            row_seq: AtomicU64::new(0),
            me: me.clone(),
        })
    }

    fn shard(&self, id: TokenId) -> &Mutex<Shard> {
        // Ids are random: their low bits spread evenly.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "only the low bits pick a shard"
        )]
        let i = (id.as_u128() as usize) % SHARDS;
        &self.shards[i]
    }

    /// Note an accepted use or a refusal. `event` builds the audit event of this use (only
    /// called when an aggregated row starts or each use is audited).
    pub(crate) fn note(&self, note: &Note<'_>, event: impl FnOnce() -> AuditEvent) {
        self.start();
        // A repeated use of the key the record's slot was registered with this interval is
        // counted there: no lock, no table of this ledger touched.
        let key = self.slot_key(note);
        if let Some(key) = key {
            if note
                .record
                .use_slot()
                .add(key, unix_nanos(note.at), self.window)
            {
                return;
            }
        }
        let audited = if note.refused.is_some() {
            self.audit_refusals
        } else {
            self.audit_uses
        };
        if note.refused.is_some() && !audited {
            return;
        }
        let mut added = 0usize;
        let mut before = 0usize;
        let mut new_token = false;
        let mut dropped = false;
        {
            let mut shard = self
                .shard(note.token)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let shard = &mut *shard;
            let tally = match shard.tokens.get_mut(&note.token) {
                Some(t) => t,
                None => {
                    if self.tokens.load(Ordering::Relaxed) >= self.settings.max_held.max(1) {
                        self.drop_note();
                        return;
                    }
                    new_token = true;
                    shard.tokens.entry(note.token).or_default()
                }
            };
            // New, or carried over with open audit rows only: an entry waiting from now on.
            if !tally.noted {
                tally.noted = true;
                added += 1;
            }
            // Where this use went: the slot may count the next ones there.
            let mut subject_at = None;
            let mut row_at = None;
            if note.refused.is_none() {
                if tally.last_used.is_none_or(|l| l < note.at) {
                    tally.last_used = Some(note.at);
                }
                if let Some(subject) = note.subject {
                    let full = tally.subjects.len() >= MAX_SUBJECTS;
                    match tally.subjects.iter().position(|(s, _)| subject.is(s)) {
                        Some(i) => {
                            tally.subjects[i].1.add(note.at);
                            subject_at = Some(i);
                        }
                        None if !full => {
                            tally.subjects.push((subject.owned(), Span::new(note.at)));
                            subject_at = Some(tally.subjects.len() - 1);
                            added += 1;
                        }
                        None => dropped = true,
                    }
                }
            }
            if audited {
                if self.settings.each_use {
                    let mut e = event();
                    if let Some(reason) = note.refused {
                        e.action = AuditAction::Refused { reason };
                    }
                    shard.each.push(e);
                    added += 1;
                } else {
                    let carrier = note.carrier;
                    let span = self.settings.aggregation_window();
                    // The newest rows are last, and a note belongs to a row of this
                    // interval: searching from the end finds it among the last few however
                    // many intervals wait unwritten (a store that is down, a writer that has
                    // not run yet).
                    // A row spans at most one window of the clock's time (a clock that
                    // jumps, as a test's does, starts a new row) — unless the token already
                    // holds `MAX_ROWS` rows waiting (the store has been down for that many
                    // intervals): then the newest row of its carrier grows instead, its first
                    // and last use saying how long it spans, so memory stays bounded.
                    let crowded = tally.rows.len() >= MAX_ROWS;
                    let found = tally.rows.iter().rposition(|r| {
                        r.refused == note.refused
                            && (crowded || (note.at - r.span.first).abs() < span)
                            && match (&r.carrier, carrier) {
                                (None, None) => true,
                                (Some((e, m)), Some((f, n))) => m == &n && e == f,
                                _ => false,
                            }
                    });
                    match found {
                        Some(i) => {
                            tally.rows[i].add(note.at, note.ip);
                            row_at = Some(i);
                        }
                        None => {
                            let mut template = event();
                            // The row is about the token and its carrier, not one request's
                            // details.
                            template.ip = None;
                            template.subject.permission = None;
                            let key = self.row_base.wrapping_add(u128::from(
                                self.row_seq.fetch_add(1, Ordering::Relaxed),
                            ));
                            let mut row = Row {
                                key: RowKey::from_u128(key),
                                dirty: true,
                                fresh: true,
                                at: None,
                                template,
                                span: Span::new(note.at),
                                addresses: HashSet::default(),
                                refused: note.refused,
                                carrier: carrier.map(|(e, m)| (e.clone(), m)),
                            };
                            row.note_ip(note.ip);
                            tally.rows.push(row);
                            row_at = Some(tally.rows.len() - 1);
                            added += 1;
                        }
                    }
                }
            }
            // The first use of this key since the tally began (or since the record was
            // replaced) registers the record's slot, if every place the use went is known
            // (its subject kept, its row found).
            if let Some(key) = key {
                let complete = (note.subject.is_none() || subject_at.is_some())
                    && (!audited || row_at.is_some());
                // A registration to a record the store (or the cache) has since replaced
                // counts nothing more: take its count, free it, register the current record.
                if tally
                    .fast
                    .as_ref()
                    .is_some_and(|f| !Arc::ptr_eq(&f.record, note.record))
                {
                    tally.settle(true);
                }
                if tally.fast.is_none() && complete {
                    let first = row_at.map_or(note.at, |i| tally.rows[i].span.first);
                    if let Some(number) = note.record.use_slot().claim(key, unix_nanos(first)) {
                        tally.fast = Some(Fast {
                            record: Arc::clone(note.record),
                            number,
                            subject: subject_at,
                            row: row_at,
                        });
                    }
                }
            }
            // Counted while the shard is locked: a `take` of this shard (which subtracts what
            // it took once it lets go of the lock) always follows these additions. Counted
            // after the lock, a take in between made the totals wrap below zero, and the
            // `max_held` check above then dropped the uses of every new token meanwhile.
            if new_token {
                self.tokens.fetch_add(1, Ordering::Relaxed);
            }
            if added > 0 {
                before = self.pending.fetch_add(added, Ordering::Relaxed);
            }
        }
        if dropped {
            self.drop_note();
        }
        if added > 0
            && before < self.settings.max_pending
            && before + added >= self.settings.max_pending
        {
            self.wake.notify_one();
        }
    }

    /// What a use must match to be counted in its record's slot: an accepted use, aggregated
    /// (not an event per use), of one of the common shapes — no subject, the client's address
    /// as subject, or a primary endpoint token on its own endpoint and method — with its
    /// client address. `None`: the ledger's tables count it.
    fn slot_key(&self, note: &Note<'_>) -> Option<SlotKey> {
        if note.refused.is_some() || self.settings.each_use {
            return None;
        }
        let (shape, method) = match (note.subject, note.carrier) {
            (None, None) => (1, 0),
            (Some(Subject::Ip(a)), None) if note.ip == Some(a) => (2, 0),
            (Some(Subject::Endpoint(e, m)), Some((f, n)))
                if m == n
                    && (core::ptr::eq(e, f) || e == f)
                    && matches!(&note.record.data,
                        KindData::Endpoint(EndpointData::Primary { endpoint, method })
                            if endpoint == e && *method == m) =>
            {
                (
                    3,
                    match m {
                        Method::Get => 1,
                        Method::Post => 2,
                        Method::Delete => 3,
                    },
                )
            }
            _ => return None,
        };
        let (family, addr) = match note.ip {
            None => (0, 0),
            Some(IpAddr::V4(a)) => (1, u128::from(u32::from(a))),
            Some(IpAddr::V6(a)) => (2, u128::from(a)),
        };
        Some(SlotKey {
            tag: self.id << 16 | shape << 8 | method << 2 | family,
            addr,
        })
    }

    /// Start the writer task, once, if a tokio runtime is running here.
    fn start(&self) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.me.clone();
        let started = Arc::clone(&self.started);
        let wake = Arc::clone(&self.wake);
        let every = self.settings.interval_std();
        handle.spawn(async move {
            // Whatever ends this task (the service gone, its runtime shut down) lets the next
            // use start another.
            let _running = Running(Arc::clone(&started));
            loop {
                // Sleep until the interval ends or a size bound is reached, holding only a
                // weak reference to the ledger meanwhile (the service may go away).
                let _ = tokio::time::timeout(every, wake.notified()).await;
                let Some(ledger) = me.upgrade() else { return };
                if let Err(e) = write_behind(ledger).await {
                    tracing::warn!(error = %e,
                        "tessera: usage ledger not written; kept and retried next interval");
                }
            }
        });
    }

    /// Whether anything is waiting to be written.
    fn is_empty(&self) -> bool {
        self.pending.load(Ordering::Relaxed) == 0
            && self
                .unwritten
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none()
    }

    /// Take everything noted into a new batch (None when there is nothing).
    fn take(&self) -> Option<UsageBatch> {
        let seq = self.batch_seq.fetch_add(1, Ordering::Relaxed);
        let mut batch = UsageBatch::new(BatchId(self.batch_base.wrapping_add(u128::from(seq))));
        let window = self.settings.aggregation_window();
        let now = self.clock.now();
        for shard in &self.shards {
            let (tokens, each, rows, carried) = {
                let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
                // Under the lock: a use the slot refuses from now on is counted in the
                // next tally.
                for tally in s.tokens.values_mut() {
                    tally.settle(true);
                }
                // The next interval's table starts at this one's size: the same tokens come
                // back, without growing (and rehashing) it again from nothing.
                let room = s.tokens.len();
                let mut tokens = core::mem::replace(
                    &mut s.tokens,
                    ById::with_capacity_and_hasher(room, BuildHasherDefault::default()),
                );
                // Each audit row used since the last batch is written with its totals so far;
                // one whose window has not passed stays open in the next table (moved under
                // the lock: a use meanwhile finds it there, not a new row). A row whose window
                // has passed is done: its stored version is its last.
                let mut rows = Vec::new();
                let mut carried = 0;
                for (id, tally) in &mut tokens {
                    let mut open = Vec::new();
                    for mut row in core::mem::take(&mut tally.rows) {
                        if row.dirty {
                            let event = row.event();
                            row.at = Some(event.at);
                            rows.push((row.fresh, event));
                        }
                        if now - row.span.first < window && row.span.last - row.span.first < window
                        {
                            row.dirty = false;
                            row.fresh = false;
                            open.push(row);
                        }
                    }
                    if !open.is_empty() {
                        s.tokens.insert(
                            *id,
                            Tally {
                                rows: open,
                                ..Tally::default()
                            },
                        );
                        carried += 1;
                    }
                }
                (tokens, core::mem::take(&mut s.each), rows, carried)
            };
            self.tokens
                .fetch_sub(tokens.len() - carried, Ordering::Relaxed);
            let mut taken = each.len();
            batch.events.extend(each);
            for (fresh, event) in rows {
                taken += usize::from(fresh);
                batch.events.push(event);
            }
            for (id, tally) in tokens {
                taken += usize::from(tally.noted) + tally.subjects.len();
                if let Some(at) = tally.last_used {
                    batch.last_used.push((id, at));
                }
                for (subject, span) in tally.subjects {
                    batch.usage.push(UsageDelta {
                        token: id,
                        subject,
                        first_seen: span.first,
                        last_seen: span.last,
                        count: span.count,
                    });
                }
            }
            self.pending.fetch_sub(taken, Ordering::Relaxed);
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// Write what is waiting: first a batch an earlier write left, then everything noted
    /// before this call, each in one transaction. Safe to drop at any await: a batch whose
    /// write was dropped is written again, with the same id, by the next call.
    pub(crate) async fn flush(&self) -> Result<Flushed, StoreError> {
        let _one = self.writing.lock().await;
        let mut done = Flushed::default();
        // At most twice: a batch left over, then the current one (a steady stream of uses
        // must not keep one flush writing forever).
        for _ in 0..2 {
            let batch = {
                let mut slot = self
                    .unwritten
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if slot.is_none() {
                    *slot = self.take().map(Arc::new);
                }
                slot.clone()
            };
            let Some(batch) = batch else { break };
            let started = std::time::Instant::now();
            match self.store.record_batch(&batch).await {
                Ok(wrote) => {
                    *self
                        .unwritten
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                    self.dropping.store(false, Ordering::Relaxed);
                    metrics::counter!("tessera_ledger_batches_total").increment(1);
                    metrics::histogram!("tessera_ledger_write_seconds")
                        .record(started.elapsed().as_secs_f64());
                    done.batches += 1;
                    done.uses += batch.uses();
                    done.events += batch.events.len() as u64;
                    tracing::debug!(
                        uses = batch.uses(),
                        entries = batch.usage.len(),
                        events = batch.events.len(),
                        again = !wrote,
                        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "tessera: usage ledger written"
                    );
                }
                Err(e) => {
                    metrics::counter!("tessera_ledger_write_errors_total").increment(1);
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Keep the writer out while a read combines what the store holds with what waits here:
    /// a batch written between the two reads would count twice or not at all. Hold the guard
    /// across both.
    pub(crate) async fn steady(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// Counts not yet written of one token, as usage entries (`count` is what is waiting).
    pub(crate) fn waiting_usage(&self, id: TokenId) -> Vec<UsageEntry> {
        let mut out: Vec<UsageEntry> = Vec::new();
        let mut add = |subject: &UsageSubject, first, last, count| match out
            .iter_mut()
            .find(|e| &e.subject == subject)
        {
            Some(e) => {
                e.count += count;
                e.first_seen = e.first_seen.min(Some(first)).or(Some(first));
                e.last_seen = e.last_seen.max(Some(last));
            }
            None => out.push(UsageEntry {
                token: id,
                subject: subject.clone(),
                first_seen: Some(first),
                last_seen: Some(last),
                count,
                blocked: false,
            }),
        };
        if let Some(b) = &*self
            .unwritten
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            for d in b.usage.iter().filter(|d| d.token == id) {
                add(&d.subject, d.first_seen, d.last_seen, d.count);
            }
        }
        let mut shard = self
            .shard(id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = shard.tokens.get_mut(&id) {
            t.settle(false);
            for (s, span) in &t.subjects {
                add(s, span.first, span.last, span.count);
            }
        }
        out
    }

    /// Counts not yet written on one endpoint, every token.
    pub(crate) fn waiting_endpoint(&self, endpoint: &EndpointId) -> Vec<UsageEntry> {
        let on = |s: &UsageSubject| matches!(s, UsageSubject::Endpoint(e, _) if e == endpoint);
        let mut deltas: Vec<UsageDelta> = Vec::new();
        if let Some(b) = &*self
            .unwritten
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            deltas.extend(b.usage.iter().filter(|d| on(&d.subject)).cloned());
        }
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, t) in &mut s.tokens {
                t.settle(false);
                for (subject, span) in t.subjects.iter().filter(|(s, _)| on(s)) {
                    deltas.push(UsageDelta {
                        token: *id,
                        subject: subject.clone(),
                        first_seen: span.first,
                        last_seen: span.last,
                        count: span.count,
                    });
                }
            }
        }
        let mut out: Vec<UsageEntry> = Vec::new();
        for d in deltas {
            match out
                .iter_mut()
                .find(|e| e.token == d.token && e.subject == d.subject)
            {
                Some(e) => {
                    e.count += d.count;
                    e.first_seen = e.first_seen.min(Some(d.first_seen));
                    e.last_seen = e.last_seen.max(Some(d.last_seen));
                }
                None => out.push(UsageEntry {
                    token: d.token,
                    subject: d.subject,
                    first_seen: Some(d.first_seen),
                    last_seen: Some(d.last_seen),
                    count: d.count,
                    blocked: false,
                }),
            }
        }
        out
    }

    /// Audit events not yet written that pass `filter` (limit aside).
    pub(crate) fn waiting_events(&self, filter: &AuditFilter) -> Vec<AuditEvent> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<AuditEvent> = Vec::new();
        // The open rows first: a row's version here is later than one in a batch not yet
        // written (the caller drops stored versions of the rows returned).
        let mut open: HashSet<RowKey, BuildHasherDefault<IdHasher>> = HashSet::default();
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(s.each.iter().filter(|e| filter.matches(e)).cloned());
            for (id, t) in &mut s.tokens {
                if filter.token.is_some_and(|want| want != *id) {
                    continue;
                }
                t.settle(false);
                open.extend(t.rows.iter().map(|r| r.key));
                out.extend(t.rows.iter().map(Row::event).filter(|e| filter.matches(e)));
            }
        }
        if let Some(b) = &*self
            .unwritten
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            out.extend(
                b.events
                    .iter()
                    .filter(|e| e.action.row().is_none_or(|k| !open.contains(&k)))
                    .filter(|e| filter.matches(e))
                    .cloned(),
            );
        }
        out
    }

    /// This process's last use of `id` not yet written, if any.
    pub(crate) fn waiting_last_use(&self, id: TokenId) -> Option<OffsetDateTime> {
        let mut last = self
            .shard(id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .get_mut(&id)
            .and_then(|t| {
                t.settle(false);
                t.last_used
            });
        if let Some(b) = &*self
            .unwritten
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            for (t, at) in &b.last_used {
                if *t == id {
                    last = last.max(Some(*at));
                }
            }
        }
        last
    }

    /// A use that could not be counted (the ledger holds its most tokens, or a token its most
    /// subjects): counted in a metric, logged once until the next write.
    #[cold]
    fn drop_note(&self) {
        metrics::counter!("tessera_ledger_dropped_total").increment(1);
        if !self.dropping.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "tessera: usage ledger full (the store cannot be written fast enough): uses \
                 of further tokens are not counted until the next write"
            );
        }
    }

    /// Entries waiting to be written (tokens, subjects, audit rows).
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// Write what the ledger holds from the writer task. On a multi-threaded runtime the write runs
/// on a blocking thread: a store that steps its statements on the calling thread (SQLite) would
/// otherwise stall one runtime worker, and every request queued on it, for the whole batch
/// (measured through `tessera-service` under `wrk -c64` on two cores: 47 ms a batch, a quarter
/// of the guarded route's throughput).
async fn write_behind(ledger: Arc<Ledger>) -> Result<Flushed, StoreError> {
    let handle = tokio::runtime::Handle::current();
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return ledger.flush().await;
    }
    match tokio::task::spawn_blocking(move || handle.block_on(ledger.flush())).await {
        Ok(written) => written,
        // The write panicked (or the runtime is shutting down): what it took is kept in
        // `unwritten` and written by the next flush.
        Err(e) => Err(StoreError::Unavailable(format!(
            "the usage ledger's writer thread ended: {e}"
        ))),
    }
}

/// Marks the writer task as stopped when it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Drop for Ledger {
    /// The last clone of the service is gone: what is still waiting is handed to one last
    /// write on the runtime, if one is running here (best effort: call
    /// [`TokenService::flush`](crate::TokenService::flush) before shutting down to be sure).
    fn drop(&mut self) {
        let left = self
            .unwritten
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let batches: Vec<Arc<UsageBatch>> =
            left.into_iter().chain(self.take().map(Arc::new)).collect();
        if batches.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("tessera: usage ledger dropped unwritten (no runtime to write it)");
            return;
        };
        let store = Arc::clone(&self.store);
        handle.spawn(async move {
            for batch in batches {
                if let Err(e) = store.record_batch(&batch).await {
                    tracing::warn!(error = %e, "tessera: usage ledger's last batch not written");
                }
            }
        });
    }
}
