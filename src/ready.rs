//! [`TokenService::ready`]: whether a service can take traffic — the store answers, and the
//! validation cache's change watch is where it should be.

use core::fmt;

use tessera_core::id::TokenId;

use crate::error::Error;
use crate::service::TokenService;

/// Where the [validation cache](crate::Builder::validation_cache) stands with the store's change
/// watch (how other instances' revocations reach this one).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum WatchState {
    /// No validation cache (or one that keeps nothing): every validation reads the store.
    NoCache,
    /// Nobody asked the store to watch yet (it is asked at the first store read, or by
    /// [`TokenService::ready`]).
    NotStarted,
    /// Another call is asking the store to watch right now.
    Starting,
    /// The store reports other instances' changes (PostgreSQL LISTEN/NOTIFY): their
    /// revocations show here within milliseconds.
    Watching,
    /// The store cannot watch (SQLite): the cache's time to live bounds how long another
    /// process's change may go unseen.
    TtlBounded,
    /// The watch was lost (PostgreSQL: connection lost, heartbeat unanswered) and is not
    /// listening again yet: the cache serves nothing, every validation reads the store.
    Lost,
    /// Asking the store to watch failed; it is asked again within a second. Meanwhile the
    /// cache serves nothing.
    Failed,
}

impl WatchState {
    /// Whether this state is fit for traffic: the cache, if any, answers only what it may
    /// (not [`Lost`](Self::Lost), [`Failed`](Self::Failed), [`Starting`](Self::Starting) or
    /// [`NotStarted`](Self::NotStarted)).
    pub const fn is_ready(self) -> bool {
        matches!(self, Self::NoCache | Self::Watching | Self::TtlBounded)
    }

    /// A short name: `no_cache`, `not_started`, `starting`, `watching`, `ttl_bounded`,
    /// `lost`, `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoCache => "no_cache",
            Self::NotStarted => "not_started",
            Self::Starting => "starting",
            Self::Watching => "watching",
            Self::TtlBounded => "ttl_bounded",
            Self::Lost => "lost",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for WatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoCache => "no validation cache",
            Self::NotStarted => "the change watch is not started",
            Self::Starting => "the change watch is starting",
            Self::Watching => "the cache watches the store's changes",
            Self::TtlBounded => "the store cannot watch; the cache's time to live bounds changes",
            Self::Lost => {
                "the store's change watch is lost; the cache serves nothing until it resumes"
            }
            Self::Failed => {
                "the store's change watch could not be started; the cache serves nothing until it is"
            }
        })
    }
}

/// What [`TokenService::ready`] found.
#[derive(Debug)]
#[non_exhaustive]
pub struct Readiness {
    /// The store's answer to a read: `Ok`, or the error it failed with.
    pub store: Result<(), Error>,
    /// Where the validation cache stands with the change watch.
    pub watch: WatchState,
}

impl Readiness {
    /// Whether the service can take traffic: the store answered and the watch is
    /// [ready](WatchState::is_ready).
    pub const fn is_ready(&self) -> bool {
        self.store.is_ok() && self.watch.is_ready()
    }
}

impl fmt::Display for Readiness {
    /// One line saying why (not) ready, for a readiness probe's answer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.store {
            Ok(()) if self.watch.is_ready() => write!(f, "ready: store ok, {}", self.watch),
            Ok(()) => write!(f, "not ready: store ok, but {}", self.watch),
            Err(e) => write!(f, "not ready: the store failed: {e} ({})", self.watch),
        }
    }
}

impl TokenService {
    /// Whether this service can take traffic, for a readiness probe: reads the store once,
    /// and, with a [validation cache](crate::Builder::validation_cache), starts the store's
    /// change watch if nobody has yet (otherwise the first validation that reads the store
    /// does), then reports where it stands. Nothing is written.
    ///
    /// Call it at start-up before taking traffic, so the watch is up before the first
    /// request, and from the readiness probe. It imposes no time limit: wrap it in the
    /// runtime's timeout (the store's own timeouts bound it otherwise).
    pub async fn ready(&self) -> Readiness {
        let store = match self.inner.store.get(TokenId::from_u128(0)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::from(e)),
        };
        let watch = match &self.inner.cache {
            None => WatchState::NoCache,
            // A store that does not answer cannot start a watch: say where it stands.
            Some(cache) if store.is_err() => cache.watch_state(),
            Some(cache) => cache.start_watch().await,
        };
        Readiness { store, watch }
    }

    /// Where the [validation cache](crate::Builder::validation_cache) stands with the store's
    /// change watch now, without starting it ([`ready`](Self::ready) starts it).
    pub fn watch_state(&self) -> WatchState {
        self.inner
            .cache
            .as_ref()
            .map_or(WatchState::NoCache, |c| c.watch_state())
    }

    /// Bring the metrics published lazily up to date: the validation cache's hits (counted per
    /// thread stripe, published every 4,096 hits of a thread and at every miss) and the time
    /// spent not caching (published when caching resumes). Call it before rendering a scrape
    /// for exact figures. Without a cache it does nothing.
    pub fn publish_metrics(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.metrics.publish();
        }
    }
}
