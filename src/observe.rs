//! Traces and metrics of the service: a `tracing` span per validation and per administrative
//! operation, and `metrics` counters and histograms, through the facades only (the application
//! installs the subscriber and the recorder it wants; none is forced on it).
//!
//! Nothing here ever sees a secret: a validation is described by its kind, the token's id
//! (once found), and the outcome's code.
//!
//! # Metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | `tessera_validations_total` | counter | `kind`, `outcome` (`accepted`, a rejection code, `error`) |
//! | `tessera_validation_duration_seconds` | histogram | `kind`; one validation in 16 per thread is timed |
//! | `tessera_redemptions_total` | counter | `outcome` |
//! | `tessera_store_errors_total` | counter | `class` (`unavailable`, `conflict`, `corrupt`, ...) |
//! | `tessera_cache_hits_total` | counter | validations answered by the [validation cache](crate::ValidationCache) (published lazily, see below) |
//! | `tessera_cache_misses_total` | counter | cache lookups that read the store (one per pepper tried; also every lookup while caching is off) |
//! | `tessera_cache_evictions_total` | counter | `reason`: `capacity` (dropped to make room), `ttl` (dropped after outliving its time to live) |
//! | `tessera_cache_uncached_milliseconds_total` | counter | time the cache served nothing because the store's change watch was lost or could not be started |
//! | `tessera_cache_caching` | gauge | 1 while the cache may answer from memory, 0 while it is off (watch lost) |
//! | `tessera_watch_lost_total` | counter | times the store reported its change watch lost (PostgreSQL: connection lost, heartbeat unanswered) |
//! | `tessera_watch_resumed_total` | counter | times the watch listened again after a loss (reconnects) |
//! | `tessera_ledger_batches_total` | counter | usage-ledger batches written |
//! | `tessera_ledger_write_seconds` | histogram | time to write one usage-ledger batch |
//! | `tessera_ledger_write_errors_total` | counter | usage-ledger writes that failed (retried) |
//! | `tessera_ledger_dropped_total` | counter | uses the usage ledger could not hold (full) |
//!
//! Handles are taken from the recorder at their first use, so install the recorder before the
//! first validation. The duration is sampled because reading a clock twice costs more than a
//! whole validation answered by the cache. For the same reason a cache hit adds to a
//! per-thread stripe, not to the recorder: hits are published every 4,096 hits of a thread,
//! at every miss, and when [`TokenService::publish_metrics`](crate::TokenService::publish_metrics)
//! is called (call it before rendering a scrape, as `tessera-service` does); the time spent
//! not caching is published when caching resumes and by the same call.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, TryLockError};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use tessera_core::Kind;
use tessera_core::id::TokenId;
use tessera_core::validate::Rejection;
use tessera_store::StoreError;
use tracing::Instrument;
use tracing::field::{self, display};

use crate::request::Outcome;

/// Validation outcomes counted apart: accepted, error, and each rejection.
const OUTCOMES: usize = 20;

/// Time one validation in this many, per thread.
const SAMPLE_EVERY: u32 = 16;

thread_local! {
    static TICK: Cell<u32> = const { Cell::new(0) };
}

/// The service's metric handles, taken from the recorder at first use.
#[derive(Default)]
pub(crate) struct Observer {
    validations: [[OnceLock<Counter>; OUTCOMES]; 5],
    latency: [OnceLock<Histogram>; 5],
}

impl core::fmt::Debug for Observer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

const fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Deployment => 0,
        Kind::Onboarding => 1,
        Kind::Endpoint => 2,
        Kind::Auth => 3,
        Kind::Application => 4,
    }
}

const fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Accepted(_) => 0,
        Outcome::Failed(_) => 1,
        Outcome::Refused(r) => {
            2 + match r {
                Rejection::Malformed => 0,
                Rejection::NotFound => 1,
                Rejection::Expired => 2,
                Rejection::Revoked => 3,
                Rejection::RotatedOut => 4,
                Rejection::Disabled => 5,
                Rejection::Dormant => 6,
                Rejection::Exhausted => 7,
                Rejection::Deleted => 8,
                Rejection::IpBlocked => 9,
                Rejection::InsufficientScope => 10,
                Rejection::PermissionWithdrawn => 11,
                Rejection::WrongEndpoint => 12,
                Rejection::WrongMethod => 13,
                Rejection::MappingDisabled => 14,
                Rejection::DeviceMismatch => 15,
                Rejection::ToggledOff => 16,
                #[allow(unreachable_patterns, reason = "Rejection may grow")]
                _ => 17,
            }
        }
    }
}

impl Observer {
    /// When this validation started, if it is one of those timed.
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        let due = TICK.with(|t| {
            let n = t.get().wrapping_add(1);
            t.set(n);
            n % SAMPLE_EVERY == 0
        });
        due.then(Instant::now)
    }

    /// Run a validation of `kind` inside its span (at DEBUG: kind, token id once accepted,
    /// outcome code), when a subscriber wants it.
    #[inline]
    pub(crate) async fn instrument(
        &self,
        kind: Kind,
        validation: impl Future<Output = Outcome>,
    ) -> Outcome {
        let span = tracing::debug_span!(
            "tessera.validate",
            kind = kind.as_str(),
            token_id = field::Empty,
            outcome = field::Empty,
        );
        if span.is_disabled() {
            return validation.await;
        }
        let started = Instant::now();
        let outcome = validation.instrument(span.clone()).await;
        span.record("outcome", outcome.code());
        if let Outcome::Accepted(access) = &outcome {
            span.record("token_id", display(access.token()));
        }
        let micros = started.elapsed().as_micros();
        span.in_scope(|| match &outcome {
            Outcome::Refused(r) => {
                tracing::debug!(reason = r.code(), elapsed_us = micros, "token refused");
            }
            _ => tracing::debug!(outcome = outcome.code(), elapsed_us = micros, "validated"),
        });
        outcome
    }

    /// Count a finished validation (and time it, if it was started timed).
    #[inline]
    pub(crate) fn validated(&self, kind: Kind, outcome: &Outcome, started: Option<Instant>) {
        let k = kind_index(kind);
        self.validations[k][outcome_index(outcome)]
            .get_or_init(|| {
                metrics::counter!(
                    "tessera_validations_total",
                    "kind" => kind.as_str(),
                    "outcome" => outcome.code(),
                )
            })
            .increment(1);
        if let Some(started) = started {
            self.latency[k]
                .get_or_init(|| {
                    metrics::histogram!(
                        "tessera_validation_duration_seconds",
                        "kind" => kind.as_str(),
                    )
                })
                .record(started.elapsed().as_secs_f64());
        }
        if kind == Kind::Onboarding {
            metrics::counter!("tessera_redemptions_total", "outcome" => outcome.code())
                .increment(1);
        }
        if let Outcome::Failed(e) = outcome {
            tracing::warn!(
                kind = kind.as_str(),
                error = %e,
                "validation undecided: the store failed; the request is refused"
            );
        }
    }
}

/// The class of a store error, as the `class` label of `tessera_store_errors_total`.
pub(crate) const fn store_error_class(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound { .. } => "not_found",
        StoreError::AlreadyExists { .. } => "already_exists",
        StoreError::Conflict => "conflict",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Backend(_) => "backend",
        #[allow(unreachable_patterns, reason = "StoreError may grow")]
        _ => "other",
    }
}

/// Count a store error reaching the caller.
pub(crate) fn store_error(e: &StoreError) {
    metrics::counter!("tessera_store_errors_total", "class" => store_error_class(e)).increment(1);
}

/// Stripes the cache's hit count is spread over (threads pick one each): a hit adds to a
/// counter other threads rarely touch, never to one shared line.
const HIT_STRIPES: usize = 8;

/// Publish the hits counted so far every this many hits of one thread (and at every miss).
const PUBLISH_EVERY: u32 = 4096;

/// A hit counter on its own cache line.
#[derive(Default)]
#[repr(align(64))]
struct Stripe(AtomicU64);

thread_local! {
    /// This thread's hit stripe (assigned at its first hit) and hits since it last published.
    static HIT_STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % HIT_STRIPES;
    static HIT_TICK: Cell<u32> = const { Cell::new(0) };
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// The metric handles of a validation cache, taken from the recorder at first use.
struct CacheHandles {
    hits: Counter,
    misses: Counter,
    evicted_capacity: Counter,
    evicted_ttl: Counter,
    uncached_ms: Counter,
    caching: Gauge,
    watch_lost: Counter,
    watch_resumed: Counter,
}

impl CacheHandles {
    fn new() -> Self {
        Self {
            hits: metrics::counter!("tessera_cache_hits_total"),
            misses: metrics::counter!("tessera_cache_misses_total"),
            evicted_capacity: metrics::counter!("tessera_cache_evictions_total", "reason" => "capacity"),
            evicted_ttl: metrics::counter!("tessera_cache_evictions_total", "reason" => "ttl"),
            uncached_ms: metrics::counter!("tessera_cache_uncached_milliseconds_total"),
            caching: metrics::gauge!("tessera_cache_caching"),
            watch_lost: metrics::counter!("tessera_watch_lost_total"),
            watch_resumed: metrics::counter!("tessera_watch_resumed_total"),
        }
    }
}

/// Time the cache spent serving nothing, accounted up to `counted_to`.
#[derive(Default)]
struct Uncached {
    /// While caching is off: the instant the time is counted up to.
    off_since: Option<Instant>,
    /// Nanoseconds counted, and milliseconds of them published.
    nanos: u128,
    published_ms: u64,
}

/// The metrics of one validation cache: hits counted in stripes and published lazily (every
/// [`PUBLISH_EVERY`] hits of a thread, at every miss, and on [`publish`](Self::publish)); the
/// rest, which happen on slow paths, counted at once.
#[derive(Default)]
pub(crate) struct CacheMetrics {
    hits: [Stripe; HIT_STRIPES],
    published_hits: Mutex<u64>,
    uncached: Mutex<Uncached>,
    handles: OnceLock<CacheHandles>,
}

impl CacheMetrics {
    fn handles(&self) -> &CacheHandles {
        self.handles.get_or_init(CacheHandles::new)
    }

    /// A validation answered from memory.
    #[inline]
    pub(crate) fn hit(&self) {
        let stripe = HIT_STRIPE.with(|s| *s);
        self.hits[stripe].0.fetch_add(1, Ordering::Relaxed);
        let due = HIT_TICK.with(|t| {
            let n = t.get().wrapping_add(1);
            t.set(n);
            n % PUBLISH_EVERY == 0
        });
        if due {
            self.publish_hits(false);
        }
    }

    /// A lookup the cache could not answer (the store is read).
    pub(crate) fn miss(&self) {
        self.handles().misses.increment(1);
        self.publish_hits(false);
    }

    /// A record dropped to make room (`stale`: it had outlived its time to live anyway).
    pub(crate) fn evicted(&self, stale: bool) {
        let h = self.handles();
        if stale {
            &h.evicted_ttl
        } else {
            &h.evicted_capacity
        }
        .increment(1);
    }

    /// Caching stops (the watch is lost, or asking for one failed).
    pub(crate) fn caching_off(&self) {
        let mut u = self.uncached.lock().unwrap_or_else(PoisonError::into_inner);
        if u.off_since.is_none() {
            u.off_since = Some(Instant::now());
        }
        drop(u);
        self.handles().caching.set(0.0);
    }

    /// Caching starts again (or for the first time).
    pub(crate) fn caching_on(&self) {
        let mut u = self.uncached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = u.off_since.take() {
            u.nanos += since.elapsed().as_nanos();
            self.publish_uncached(&mut u);
        }
        drop(u);
        self.handles().caching.set(1.0);
    }

    /// The store reported its change watch lost.
    pub(crate) fn watch_lost(&self) {
        self.handles().watch_lost.increment(1);
    }

    /// The store reported its change watch listening again.
    pub(crate) fn watch_resumed(&self) {
        self.handles().watch_resumed.increment(1);
    }

    /// Bring the published hits and time spent not caching up to date.
    pub(crate) fn publish(&self) {
        self.publish_hits(true);
        let mut u = self.uncached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = u.off_since {
            let now = Instant::now();
            u.nanos += now.saturating_duration_since(since).as_nanos();
            u.off_since = Some(now);
        }
        self.publish_uncached(&mut u);
    }

    fn publish_uncached(&self, u: &mut Uncached) {
        let ms = u64::try_from(u.nanos / 1_000_000).unwrap_or(u64::MAX);
        if ms > u.published_ms {
            self.handles().uncached_ms.increment(ms - u.published_ms);
            u.published_ms = ms;
        }
    }

    /// Add the hits counted since the last publication to the counter (unless another thread
    /// is publishing and `wait` is false: that one publishes them).
    fn publish_hits(&self, wait: bool) {
        let mut published = if wait {
            self.published_hits
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        } else {
            match self.published_hits.try_lock() {
                Ok(p) => p,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            }
        };
        let total = self
            .hits
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)));
        let delta = total.wrapping_sub(*published);
        if delta > 0 {
            self.handles().hits.increment(delta);
            *published = total;
        }
    }
}

/// Name a found token a validation refuses on the current `tessera.validate` span (its id,
/// never its secret).
pub(crate) fn refused_token(id: TokenId) {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("token_id", display(id));
    }
}
