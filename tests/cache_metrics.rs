//! The validation cache's metrics through a real Prometheus recorder: hits, misses, evictions
//! (capacity and time to live), whether it caches and how long it did not, and the change
//! watch's losses and resumptions (PostgreSQL, its watch connection terminated); and
//! [`TokenService::ready`] on SQLite, memory and PostgreSQL (watch down: not ready, saying why).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up fails loudly

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use common::{T0, admin, peppers};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tessera::core::clock::ManualClock;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::sql::postgres::PostgresConfig;
use tessera::sql::{PostgresStore, SqliteStore};
use tessera::store::Store;
use tessera::{Duration, Rejection, TokenService, ValidationCache, WatchState};
use tokio::sync::{Mutex, MutexGuard};

/// The process's recorder (installed once).
fn recorder() -> &'static PrometheusHandle {
    static R: OnceLock<PrometheusHandle> = OnceLock::new();
    R.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        handle
    })
}

/// Held by each test that compares figures, so the tests' deltas do not mix; the recorder is
/// installed first (services take their metric handles from it at first use).
async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    recorder();
    SERIAL.lock().await
}

/// The value of one series (name with its labels as rendered, e.g.
/// `tessera_cache_evictions_total{reason="ttl"}`), zero when absent.
fn value(series: &str) -> f64 {
    let text = recorder().render();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

/// The values of the cache's series now, to compare with later.
#[derive(Clone, Copy, Debug)]
struct Figures {
    hits: f64,
    misses: f64,
    capacity: f64,
    ttl: f64,
    uncached_ms: f64,
    caching: f64,
    lost: f64,
    resumed: f64,
}

fn figures(svc: &TokenService) -> Figures {
    svc.publish_metrics();
    Figures {
        hits: value("tessera_cache_hits_total"),
        misses: value("tessera_cache_misses_total"),
        capacity: value("tessera_cache_evictions_total{reason=\"capacity\"}"),
        ttl: value("tessera_cache_evictions_total{reason=\"ttl\"}"),
        uncached_ms: value("tessera_cache_uncached_milliseconds_total"),
        caching: value("tessera_cache_caching"),
        lost: value("tessera_watch_lost_total"),
        resumed: value("tessera_watch_resumed_total"),
    }
}

fn cached(store: Arc<dyn Store>, clock: &Arc<ManualClock>, cache: ValidationCache) -> TokenService {
    TokenService::builder_shared(store, peppers())
        .clock(clock.clone())
        .validation_cache(cache)
        .build()
}

async fn issue(svc: &TokenService, name: &str) -> String {
    svc.deployment()
        .generate(NewDeployment::named(name).unwrap(), &admin())
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_owned()
}

async fn accepted(svc: &TokenService, token: &str) {
    assert!(svc.deployment().validate(token).await.unwrap().is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn hits_misses_and_evictions_are_counted() {
    let _serial = serial().await;
    let clock = Arc::new(ManualClock::new(T0));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = cached(
        store.clone(),
        &clock,
        ValidationCache::new(Duration::seconds(60)),
    );
    let a = issue(&svc, "a").await;
    assert_eq!(svc.watch_state(), WatchState::NotStarted);

    // The first validation reads the store (a miss) and starts the watch; ten more are hits.
    let before = figures(&svc);
    accepted(&svc, &a).await;
    assert_eq!(svc.watch_state(), WatchState::Watching);
    for _ in 0..10 {
        accepted(&svc, &a).await;
    }
    let after = figures(&svc);
    assert_eq!(after.misses - before.misses, 1.0, "{after:?}");
    assert_eq!(after.hits - before.hits, 10.0, "{after:?}");
    assert_eq!(after.caching, 1.0);
    assert_eq!(after.ttl - before.ttl, 0.0);

    // Past the time to live the record is read again: a miss, and a time-to-live eviction.
    clock.advance(Duration::seconds(61));
    accepted(&svc, &a).await;
    accepted(&svc, &a).await;
    let later = figures(&svc);
    assert_eq!(later.misses - after.misses, 1.0, "{later:?}");
    assert_eq!(later.ttl - after.ttl, 1.0, "{later:?}");
    assert_eq!(later.hits - after.hits, 1.0, "{later:?}");

    // An unknown token is a miss every time (never cached).
    let unknown = tessera::Secret::generate(tessera::Kind::Deployment).unwrap();
    for _ in 0..3 {
        assert_eq!(
            svc.deployment()
                .validate(unknown.expose_secret())
                .await
                .unwrap(),
            Err(Rejection::NotFound)
        );
    }
    let unknowns = figures(&svc);
    assert_eq!(unknowns.misses - later.misses, 3.0);
    assert_eq!(unknowns.hits - later.hits, 0.0);

    // A cache of one record: the second token makes room (a capacity eviction), and so does
    // the first again.
    let small = cached(
        store,
        &clock,
        ValidationCache::new(Duration::seconds(60)).capacity(1),
    );
    let b = issue(&small, "b").await;
    let before = figures(&small);
    accepted(&small, &a).await;
    accepted(&small, &b).await;
    accepted(&small, &b).await;
    accepted(&small, &a).await;
    let after = figures(&small);
    assert_eq!(after.misses - before.misses, 3.0, "{after:?}");
    assert_eq!(after.hits - before.hits, 1.0, "{after:?}");
    assert_eq!(after.capacity - before.capacity, 2.0, "{after:?}");
    assert_eq!(after.ttl - before.ttl, 0.0, "{after:?}");
    // No loss on a memory store.
    assert_eq!(after.lost - before.lost, 0.0);
    assert_eq!(after.uncached_ms - before.uncached_ms, 0.0);
}

/// Hits of many threads add up exactly once published.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hits_of_many_threads_add_up() {
    let _serial = serial().await;
    let clock = Arc::new(ManualClock::new(T0));
    let svc = cached(
        Arc::new(MemoryStore::new()),
        &clock,
        ValidationCache::new(Duration::seconds(60)),
    );
    let a = issue(&svc, "a").await;
    accepted(&svc, &a).await;
    let before = figures(&svc);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (svc, a) = (svc.clone(), a.clone());
            tokio::spawn(async move {
                for _ in 0..5_000 {
                    accepted(&svc, &a).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = figures(&svc);
    assert_eq!(after.hits - before.hits, 40_000.0, "{after:?}");
    assert_eq!(after.misses - before.misses, 0.0, "{after:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn readiness_on_sqlite_and_memory() {
    let clock = Arc::new(ManualClock::new(T0));
    let sqlite = SqliteStore::open_in_memory().await.unwrap();
    sqlite.migrate().await.unwrap();
    let svc = cached(
        Arc::new(sqlite.clone()),
        &clock,
        ValidationCache::new(Duration::seconds(2)),
    );
    assert_eq!(svc.watch_state(), WatchState::NotStarted);
    let ready = svc.ready().await;
    assert!(ready.is_ready(), "{ready}");
    // SQLite cannot watch: the time to live bounds another process's changes.
    assert_eq!(ready.watch, WatchState::TtlBounded);
    assert!(ready.to_string().starts_with("ready: store ok"), "{ready}");

    let plain = TokenService::new(MemoryStore::new(), peppers());
    let ready = plain.ready().await;
    assert!(ready.is_ready());
    assert_eq!(ready.watch, WatchState::NoCache);

    // A closed store: not ready, and the answer says the store failed.
    sqlite.close().await;
    let ready = svc.ready().await;
    assert!(!ready.is_ready());
    assert!(ready.store.is_err());
    assert!(
        ready.to_string().starts_with("not ready: the store failed"),
        "{ready}"
    );
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < StdDuration::from_secs(20),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

/// The watch connection of a PostgreSQL store terminated while new connections are refused:
/// the loss is counted, caching is off (gauge 0) and its time counted, readiness says the watch
/// is lost; once connections are allowed again the watch resumes and all of it is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_watch_loss_is_counted_and_reported_by_readiness() {
    let Some(cluster) = cluster::Cluster::start() else {
        return;
    };
    let _serial = serial().await;
    // The service's database, so that the watch's connection can be refused while the
    // cluster still answers the test's own statements on `postgres`.
    cluster.sql("CREATE DATABASE tessera_obs");
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/tessera_obs",
        cluster.port()
    );
    let store = PostgresStore::connect_with(PostgresConfig::new(url))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let svc = cached(
        Arc::new(store.clone()),
        &clock,
        ValidationCache::new(Duration::hours(1)),
    );
    let a = issue(&svc, "a").await;

    let ready = svc.ready().await;
    assert!(ready.is_ready(), "{ready}");
    assert_eq!(ready.watch, WatchState::Watching);
    accepted(&svc, &a).await;
    accepted(&svc, &a).await;
    // Written now: the usage ledger's writer would otherwise write these uses about a second
    // later, holding a pooled connection, and the readiness check below, needing a second one
    // while new connections are refused, would fail for that reason (seen once in CI).
    svc.flush().await.unwrap();
    let before = figures(&svc);
    assert_eq!(before.caching, 1.0);

    // Refuse new connections to the service's database, then end the watch's connection
    // (its last statement is its LISTEN or its heartbeat); the pool's stay.
    cluster.sql("ALTER DATABASE tessera_obs WITH ALLOW_CONNECTIONS false");
    let killed = cluster.sql(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = 'tessera_obs' AND (query ILIKE 'LISTEN%' OR query = 'SELECT 1')",
    );
    assert_eq!(killed.trim(), "1", "the watch's connection was terminated");
    until("the watch is lost", || {
        svc.watch_state() == WatchState::Lost
    })
    .await;
    let lost = figures(&svc);
    assert_eq!(lost.lost - before.lost, 1.0, "{lost:?}");
    assert_eq!(lost.caching, 0.0);
    let ready = svc.ready().await;
    assert!(!ready.is_ready(), "{ready}");
    assert!(ready.store.is_ok(), "the pool still answers: {ready}");
    assert_eq!(ready.watch, WatchState::Lost);
    assert!(
        ready.to_string().contains("change watch is lost"),
        "{ready}"
    );
    // While lost, nothing is answered from memory: a validation is a miss.
    accepted(&svc, &a).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let down = figures(&svc);
    assert_eq!(down.misses - lost.misses, 1.0, "{down:?}");
    assert_eq!(down.hits - lost.hits, 0.0, "{down:?}");
    assert!(
        down.uncached_ms - before.uncached_ms >= 300.0,
        "time not caching is counted while down: {down:?}"
    );

    cluster.sql("ALTER DATABASE tessera_obs WITH ALLOW_CONNECTIONS true");
    until("the watch resumes", || {
        svc.watch_state() == WatchState::Watching
    })
    .await;
    let up = figures(&svc);
    assert_eq!(up.resumed - before.resumed, 1.0, "{up:?}");
    assert_eq!(up.caching, 1.0);
    assert!(svc.ready().await.is_ready());
    // Caching again: the first validation reads the store, the next is a hit.
    accepted(&svc, &a).await;
    accepted(&svc, &a).await;
    let after = figures(&svc);
    assert_eq!(after.misses - up.misses, 1.0, "{after:?}");
    assert_eq!(after.hits - up.hits, 1.0, "{after:?}");
    // Stopped counting once on again.
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let settled = figures(&svc);
    assert_eq!(settled.uncached_ms, up.uncached_ms, "{settled:?}");
    store.close().await;
}
