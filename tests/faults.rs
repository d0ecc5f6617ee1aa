//! Exact under faults, on real PostgreSQL servers of the tests' own: the server stopped and
//! started again (fast and immediate), its backends terminated, and the path to it gone silent
//! (a half-open connection), while validations, redemptions and the change watch run.
//!
//! An instance with a one-hour validation cache never accepts a token revoked, deactivated or
//! rotated by another instance once the change committed, beyond a bound measured here and
//! asserted (1 s); onboarding redemptions stay exact (uses = enrolled devices = what was
//! answered, never more than the limit); and the instance recovers by itself (its cache watches
//! changes again). The figures are printed (`--nocapture`).
//!
//! Each test starts a cluster of its own (so stopping it disturbs no other test) and the
//! cluster is stopped and removed on drop, also when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

#[path = "common/cluster.rs"]
mod cluster;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{Cluster, Relay};
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description, DeviceId};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::deployment::NewDeployment;
use tessera::onboarding::NewOnboarding;
use tessera::sql::PostgresStore;
use tessera::sql::postgres::PostgresConfig;
use tessera::store::Store;
use tessera::{Principal, Rejection, TokenService, ValidationCache};

/// The bound asserted: how long after a change committed (the server answering again) an
/// instance may still accept the old token.
const BOUND: Duration = Duration::from_secs(1);

/// An onboarding token's uses, redeemed across the fault.
const USES: u64 = 300;

fn peppers() -> Peppers {
    Peppers::new(Pepper::new(KeyId(1), [9; 32]))
}

fn root() -> Principal {
    Principal::admin("root").unwrap()
}

fn ip() -> IpAddr {
    "192.0.2.10".parse().unwrap()
}

async fn store(config: PostgresConfig) -> Arc<dyn Store> {
    let store = PostgresStore::connect_with(config).await.unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

/// An instance keeping found records for an hour: only the change watch bounds staleness.
fn cached(store: Arc<dyn Store>) -> TokenService {
    TokenService::builder_shared(store, peppers())
        .validation_cache(ValidationCache::new(time::Duration::hours(1)))
        .build()
}

fn plain(store: Arc<dyn Store>) -> TokenService {
    TokenService::builder_shared(store, peppers()).build()
}

/// Retry `op` (a store may answer errors while it reconnects) for up to 30 s.
macro_rules! retry {
    ($op:expr) => {{
        let start = Instant::now();
        loop {
            match $op.await {
                Ok(v) => break v,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "still failing after 30 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }};
}

/// Tokens issued by the writer and cached by the reader before the fault.
struct Tokens {
    revoked: tessera::Issued,
    deactivated: tessera::Issued,
    rotated: tessera::Issued,
    later: tessera::Issued,
    onboarding: tessera::Issued,
}

async fn application(svc: &TokenService, name: &str) -> tessera::Issued {
    svc.application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &root(),
        )
        .await
        .unwrap()
}

async fn issue(writer: &TokenService, reader: &TokenService) -> Tokens {
    let dep = |n: &str| NewDeployment::named(n).unwrap();
    let t = Tokens {
        revoked: writer
            .deployment()
            .generate(dep("revoked"), &root())
            .await
            .unwrap(),
        deactivated: application(writer, "deactivated").await,
        rotated: application(writer, "rotated").await,
        later: writer
            .deployment()
            .generate(dep("later"), &root())
            .await
            .unwrap(),
        onboarding: writer
            .onboarding()
            .create(
                NewOnboarding::new("policy", "group")
                    .unwrap()
                    .limit(UsageLimit::uses(USES).unwrap()),
                &root(),
            )
            .await
            .unwrap(),
    };
    // The reader caches every one of them and watches for changes.
    for d in [&t.revoked, &t.later] {
        let tok = d.secret.expose_secret();
        assert!(reader.deployment().validate(tok).await.unwrap().is_ok());
    }
    for a in [&t.deactivated, &t.rotated] {
        let tok = a.secret.expose_secret();
        assert!(
            reader
                .application()
                .validate(tok, ip())
                .await
                .unwrap()
                .is_ok()
        );
    }
    assert!(reader.cache_watches_changes());
    assert_eq!(reader.cached_records(), 4);
    t
}

/// Devices redeeming the onboarding token through both instances, across the fault, each
/// device once; what each was answered.
struct Redeemers {
    stop: Arc<AtomicBool>,
    enrolled: Arc<Mutex<Vec<DeviceId>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Redeemers {
    fn start(instances: &[TokenService], token: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let enrolled: Arc<Mutex<Vec<DeviceId>>> = Arc::default();
        let mut tasks = Vec::new();
        for (n, svc) in instances.iter().cycle().take(4).enumerate() {
            let (svc, token, stop, enrolled) = (
                svc.clone(),
                token.to_owned(),
                stop.clone(),
                enrolled.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let device = DeviceId::parse(format!("dev-{n}-{i}")).unwrap();
                    let answer = tokio::time::timeout(
                        Duration::from_secs(5),
                        svc.onboarding().redeem(&token, &device),
                    )
                    .await;
                    match answer {
                        Ok(Ok(Ok(_))) => enrolled.lock().unwrap().push(device),
                        Ok(Ok(Err(Rejection::Exhausted))) => return,
                        Ok(Ok(Err(other))) => panic!("redemption refused: {other:?}"),
                        // The store is down or reconnecting (or the answer was lost: the use
                        // may have counted, which the check below allows for).
                        Ok(Err(_)) | Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }));
        }
        Self {
            stop,
            enrolled,
            tasks,
        }
    }

    /// Stop them; then check the token is exact and redeem it to the end.
    async fn finish(self, writer: &TokenService, id: tessera::core::id::TokenId, token: &str) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let answered: HashSet<DeviceId> = self.enrolled.lock().unwrap().iter().cloned().collect();
        let store = writer.store();
        let record = retry!(store.get(id)).unwrap();
        let devices: HashSet<DeviceId> = retry!(store.enrollments(id))
            .into_iter()
            .map(|e| e.device)
            .collect();
        assert_eq!(
            record.uses,
            devices.len() as u64,
            "every use counted enrolled exactly one device"
        );
        assert!(record.uses <= USES);
        assert!(
            answered.is_subset(&devices),
            "every device answered 'enrolled' is enrolled"
        );
        // The rest of the uses, then no more.
        let mut extra = 0u64;
        loop {
            let device = DeviceId::parse(format!("last-{extra}")).unwrap();
            match retry!(writer.onboarding().redeem(token, &device)) {
                Ok(_) => extra += 1,
                Err(Rejection::Exhausted) => break,
                Err(other) => panic!("refused: {other:?}"),
            }
        }
        let record = retry!(store.get(id)).unwrap();
        assert_eq!(record.uses, USES, "exactly the limit, not one more");
        assert_eq!(retry!(store.enrollments(id)).len() as u64, USES);
        println!(
            "redemptions: {} answered during the run, {} counted, {extra} after",
            answered.len(),
            devices.len()
        );
    }
}

/// Wait until `cond` holds (up to 30 s); how long it took.
async fn until(what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not within 30 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// How long after `committed` the reader went on accepting `accepted` (zero when its first
/// answer was already a refusal); asserts it is within [`BOUND`] and that the refusal is
/// `want` and stays.
async fn refused_within(
    what: &str,
    committed: Instant,
    want: Rejection,
    accepted: impl AsyncFn() -> tessera::Result<Result<(), Rejection>>,
) -> Duration {
    let mut stale = Duration::ZERO;
    loop {
        match accepted().await {
            Ok(Ok(())) => stale = committed.elapsed(),
            Ok(Err(r)) => {
                assert_eq!(r, want, "{what}");
                break;
            }
            // The store is not answering this instance yet: nothing was accepted.
            Err(_) => {}
        }
        assert!(
            committed.elapsed() < Duration::from_secs(30),
            "{what}: still accepted 30 s after the change committed"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        stale <= BOUND,
        "{what}: accepted {} ms after the change committed (bound {} ms)",
        stale.as_millis(),
        BOUND.as_millis()
    );
    for _ in 0..20 {
        assert_eq!(retry!(accepted()), Err(want), "{what}: the refusal stays");
    }
    stale
}

enum Fault {
    Stop(&'static str),
    Terminate,
}

/// Two instances (a reader with a one-hour cache, a writer), tokens cached, redemptions
/// running; then `fault`; then the writer revokes, deactivates and rotates as soon as the
/// server answers again, and the reader must refuse within [`BOUND`].
async fn survive(fault: Fault) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url();
    let reader = cached(store(PostgresConfig::new(url.clone())).await);
    let writer = plain(store(PostgresConfig::new(url.clone())).await);
    let t = issue(&writer, &reader).await;
    let onboarding = t.onboarding.secret.expose_secret().to_owned();
    let redeemers = Redeemers::start(&[reader.clone(), writer.clone()], &onboarding);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let label;
    let faulted = Instant::now();
    match fault {
        Fault::Stop(mode) => {
            label = format!("stop -m {mode}");
            cluster.stop(mode);
            let noticed = until("the reader notices the watch is lost", || {
                !reader.cache_watches_changes()
            })
            .await;
            println!(
                "{label}: watch lost noticed {} ms after the server was down",
                noticed.as_millis()
            );
            // Down: nothing is served from memory, nothing is kept.
            assert_eq!(reader.cached_records(), 0);
            let tok = t.revoked.secret.expose_secret();
            assert!(
                reader.deployment().validate(tok).await.is_err(),
                "with the server down and the watch lost, no answer comes from memory"
            );
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cluster.restart();
        }
        Fault::Terminate => {
            label = "pg_terminate_backend".to_owned();
            let killed: u32 = cluster
                .sql(
                    "WITH v AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) \
                     SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM v",
                )
                .parse()
                .unwrap();
            assert!(
                killed >= 3,
                "the watch's and the pools' backends were terminated"
            );
        }
    }
    let up = Instant::now();
    // When the reader watches again, measured from the server answering.
    let resumed_at: Arc<Mutex<Option<Duration>>> = Arc::default();
    let monitor = {
        let (reader, resumed_at) = (reader.clone(), resumed_at.clone());
        tokio::spawn(async move {
            while !reader.cache_watches_changes() && up.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            *resumed_at.lock().unwrap() = Some(up.elapsed());
        })
    };

    // As soon as the server answers, the writer changes the cached tokens.
    retry!(writer.revoke(t.revoked.token.id, &root()));
    let revoked = Instant::now();
    let tok = t.revoked.secret.expose_secret().to_owned();
    let stale_revoked = refused_within("revoked", revoked, Rejection::Revoked, async || {
        reader
            .deployment()
            .validate(&tok)
            .await
            .map(|r| r.map(drop))
    })
    .await;

    retry!(
        writer
            .application()
            .deactivate(t.deactivated.token.id, &root())
    );
    let deactivated = Instant::now();
    let tok = t.deactivated.secret.expose_secret().to_owned();
    let stale_deactivated = refused_within(
        "deactivated",
        deactivated,
        Rejection::Disabled,
        async || {
            reader
                .application()
                .validate(&tok, ip())
                .await
                .map(|r| r.map(drop))
        },
    )
    .await;

    retry!(writer.rotate(t.rotated.token.id, None, &root()));
    let rotated = Instant::now();
    let tok = t.rotated.secret.expose_secret().to_owned();
    let stale_rotated = refused_within("rotated", rotated, Rejection::RotatedOut, async || {
        reader
            .application()
            .validate(&tok, ip())
            .await
            .map(|r| r.map(drop))
    })
    .await;

    // It recovers by itself: the watch listens again and the cache keeps records again.
    monitor.await.unwrap();
    assert!(
        reader.cache_watches_changes(),
        "the watch resumed by itself"
    );
    let resumed_after_up = resumed_at.lock().unwrap().unwrap();
    let tok = t.later.secret.expose_secret().to_owned();
    assert!(retry!(reader.deployment().validate(&tok)).is_ok());
    assert!(reader.cached_records() >= 1, "caching again");
    retry!(writer.revoke(t.later.token.id, &root()));
    let later = Instant::now();
    let after = refused_within(
        "revoked after recovery",
        later,
        Rejection::Revoked,
        async || {
            reader
                .deployment()
                .validate(&tok)
                .await
                .map(|r| r.map(drop))
        },
    )
    .await;
    let fresh = retry!(
        reader
            .deployment()
            .generate(NewDeployment::named("fresh").unwrap(), &root())
    );
    assert!(
        retry!(writer.deployment().validate(fresh.secret.expose_secret())).is_ok(),
        "the reader issues again"
    );

    redeemers
        .finish(&writer, t.onboarding.token.id, &onboarding)
        .await;
    println!(
        "{label}: fault to answering {} ms; accepted after commit: revoked {} ms, deactivated \
         {} ms, rotated {} ms; watch resumed within {} ms of the server answering; a revoke \
         after recovery {} ms",
        up.duration_since(faulted).as_millis(),
        stale_revoked.as_millis(),
        stale_deactivated.as_millis(),
        stale_rotated.as_millis(),
        resumed_after_up.as_millis(),
        after.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fast_stop_and_start() {
    survive(Fault::Stop("fast")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_immediate_stop_and_start() {
    survive(Fault::Stop("immediate")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_terminated() {
    survive(Fault::Terminate).await;
}

/// The path to the server goes silent without closing (a half-open connection): the heartbeat
/// notices within twice its period, and until then is the only window in which a cached token
/// changed elsewhere may still be accepted. Cut and restored, the reader recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_silent_connection_is_noticed_by_the_heartbeat() {
    const HEARTBEAT: Duration = Duration::from_millis(250);
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let relay = Relay::start(cluster.port()).await;
    let through = format!("postgres://postgres@127.0.0.1:{}/postgres", relay.port());
    let reader = cached(
        store(
            PostgresConfig::new(through)
                .watch_heartbeat(time::Duration::try_from(HEARTBEAT).unwrap())
                .acquire_timeout(time::Duration::seconds(1)),
        )
        .await,
    );
    let writer = plain(store(PostgresConfig::new(cluster.url())).await);
    let t = issue(&writer, &reader).await;

    relay.freeze();
    let frozen = Instant::now();
    writer.revoke(t.revoked.token.id, &root()).await.unwrap();
    let committed = Instant::now();
    let tok = t.revoked.secret.expose_secret();
    // Until the heartbeat notices, the cached copy answers; afterwards the store is asked,
    // which does not answer through the silent path: no acceptance either way.
    let mut stale = Duration::ZERO;
    while reader.cache_watches_changes() {
        let answer = tokio::time::timeout(HEARTBEAT, reader.deployment().validate(tok)).await;
        if let Ok(Ok(Ok(_))) = answer {
            stale = committed.elapsed();
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(10),
            "the silence went unnoticed"
        );
    }
    let noticed = frozen.elapsed();
    let answer = tokio::time::timeout(HEARTBEAT, reader.deployment().validate(tok)).await;
    assert!(
        !matches!(answer, Ok(Ok(Ok(_)))),
        "once the watch is lost nothing is served from memory"
    );
    assert!(
        noticed <= HEARTBEAT * 2 + Duration::from_millis(250),
        "noticed after {} ms (heartbeat {} ms)",
        noticed.as_millis(),
        HEARTBEAT.as_millis()
    );
    relay.cut_and_thaw();
    let resumed = until("the reader's watch resumes", || {
        reader.cache_watches_changes()
    })
    .await;
    assert_eq!(
        retry!(reader.deployment().validate(tok)),
        Err(Rejection::Revoked)
    );
    println!(
        "silent path: noticed {} ms after it went silent (heartbeat {} ms); the revoked token \
         was accepted up to {} ms after its commit; resumed {} ms after the path came back",
        noticed.as_millis(),
        HEARTBEAT.as_millis(),
        stale.as_millis(),
        resumed.as_millis()
    );
}
