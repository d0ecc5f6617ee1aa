//! One SQLite file shared by several stores, as several processes share it: redemptions across
//! them never over-enroll, and a lock held past the busy timeout is `Unavailable` (temporary),
//! never a hang or a permanent error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::fixtures;
use tessera_core::format::Spelling;
use tessera_core::id::DeviceId;
use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera_sql::SqliteStore;
use tessera_sql::sqlite::SqliteConfig;
use tessera_store::{Redemption, Store, StoreError, TokenFilter};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redemptions_across_stores_never_over_enroll() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).await.expect("open");
    first.migrate().await.expect("migrate");
    let second = SqliteStore::open(&path)
        .await
        .expect("open again, as another process would");

    let pepper = fixtures::pepper();
    let (_, mut record) = fixtures::issue(
        &pepper,
        fixtures::onboarding("p", "g", DeviceBinding::Any),
        Spelling::Prefixed,
    );
    record.limit = UsageLimit::uses(5).expect("five uses");
    first.insert(&record, &[]).await.expect("insert");

    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let digest = record.digest;
        tasks.push(tokio::spawn(async move {
            let device = DeviceId::parse(format!("device-{i}")).expect("a device");
            store
                .redeem(
                    &digest,
                    &device,
                    fixtures::now(),
                    &tessera_store::RedeemEvents::NONE,
                )
                .await
        }));
    }
    let mut redeemed = 0;
    for t in tasks {
        match t
            .await
            .expect("join")
            .expect("no store error under contention")
        {
            Redemption::Redeemed(_) => redeemed += 1,
            Redemption::Refused(_) => {}
            other @ Redemption::Repeated { .. } => panic!("each device redeems once: {other:?}"),
        }
    }
    assert_eq!(redeemed, 5, "exactly the usage limit");
    assert_eq!(
        second
            .enrollments(record.id)
            .await
            .expect("enrollments")
            .len(),
        5
    );
    let stored = second.get(record.id).await.expect("get").expect("stored");
    assert_eq!(stored.uses, 5);
}

#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_unavailable() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("locked.db");
    let store = SqliteStore::open_with(
        SqliteConfig::file(&path).busy_timeout(time::Duration::milliseconds(200)),
    )
    .await
    .expect("open");
    store.migrate().await.expect("migrate");

    // Another process takes the write lock and keeps it.
    let mut other = rusqlite::Connection::open(&path).expect("a second connection");
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("take the write lock");

    let pepper = fixtures::pepper();
    let (_, record) = fixtures::issue(&pepper, fixtures::deployment("d"), Spelling::Prefixed);
    match store.insert(&record, &[]).await {
        Err(e @ StoreError::Unavailable(_)) => assert!(e.is_temporary()),
        other => panic!("a write under another's lock: {other:?}"),
    }
    tx.execute_batch("SELECT 1")
        .expect("the lock holder still works");
    tx.rollback().expect("release the lock");

    store
        .insert(&record, &[])
        .await
        .expect("the retry succeeds once the lock is gone");
    assert_eq!(
        store
            .list(&TokenFilter::default())
            .await
            .expect("list")
            .len(),
        1
    );
}
