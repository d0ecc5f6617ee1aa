//! The SQLite WAL stays bounded under sustained traffic: validations of every kind that write
//! (application IP log, deployment last use, audit of uses) run from several tasks while others
//! read, for several seconds, and the `-wal` file never grows past [`WAL_BOUND`].
//!
//! The bound holds because no connection keeps a read snapshot between calls (each read is one
//! statement in its own transaction), so the automatic checkpoint every 1000 pages (about
//! 4 MiB) completes and the WAL restarts from its beginning, and `journal_size_limit` cuts the
//! file back to 8 MiB after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::deployment::NewDeployment;
use tessera::sql::SqliteStore;
use tessera::{Principal, TokenService};

/// The most the WAL may hold: twice the journal size limit (8 MiB), with room for the frames
/// written while a checkpoint runs.
const WAL_BOUND: u64 = 16 << 20;

/// How long the traffic runs.
const RUN: Duration = Duration::from_secs(6);

fn peppers() -> Peppers {
    Peppers::new(Pepper::new(KeyId(1), [9; 32]))
}

fn root() -> Principal {
    Principal::admin("root").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_bounded_under_sustained_validations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let svc = TokenService::new(store, peppers());

    let mut apps = vec![];
    for i in 0..32 {
        let app = svc
            .application()
            .create(
                ApplicationName::parse(format!("wal-{i}")).unwrap(),
                Description::default(),
                AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                &root(),
            )
            .await
            .unwrap();
        apps.push(app.secret.expose_secret().to_owned());
    }
    let mut deps = vec![];
    for i in 0..32 {
        let dep = svc
            .deployment()
            .generate(NewDeployment::named(format!("wal-{i}")).unwrap(), &root())
            .await
            .unwrap();
        deps.push(dep.secret.expose_secret().to_owned());
    }
    let apps = Arc::new(apps);
    let deps = Arc::new(deps);
    let stop = Arc::new(AtomicBool::new(false));
    let validations = Arc::new(AtomicU64::new(0));

    let mut tasks = vec![];
    for t in 0..4u64 {
        let (svc, apps, deps, stop, validations) = (
            svc.clone(),
            apps.clone(),
            deps.clone(),
            stop.clone(),
            validations.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let i = usize::try_from(n >> 33).unwrap();
                // A new address now and then: the IP log grows as well as being updated.
                let ip = IpAddr::from([10, 0, u8::try_from((n >> 20) & 0x3f).unwrap(), 1]);
                if t % 2 == 0 {
                    let tok = &apps[i % apps.len()];
                    assert!(svc.application().validate(tok, ip).await.unwrap().is_ok());
                } else {
                    let tok = &deps[i % deps.len()];
                    assert!(svc.deployment().validate(tok).await.unwrap().is_ok());
                }
                validations.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    // Readers that list and read audit while the validations write.
    for _ in 0..2 {
        let (svc, stop) = (svc.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = svc
                    .store()
                    .list(&tessera::store::TokenFilter::default())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    let wal = dir.path().join("wal.db-wal");
    let started = Instant::now();
    let mut largest = 0;
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        largest = largest.max(size);
        assert!(
            size <= WAL_BOUND,
            "the WAL reached {size} bytes after {:?} (bound {WAL_BOUND})",
            started.elapsed()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let done = validations.load(Ordering::Relaxed);
    println!("{done} validations in {RUN:?}; the WAL peaked at {largest} bytes");
    // The traffic wrote enough to reach the automatic checkpoint (1000 pages) and go on.
    assert!(
        largest >= 1 << 20,
        "the WAL peaked at {largest} bytes: too little traffic to test the bound"
    );
}
