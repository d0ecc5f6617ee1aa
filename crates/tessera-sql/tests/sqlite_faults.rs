//! SQLite under faults, during a storm of writes from many tasks: a full database
//! (`max_page_count`) and a file whose write lock another process holds past the busy timeout. Every write either completes or
//! fails with a typed error and leaves nothing of itself behind; once the fault is gone the
//! store works again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::path::Path;

use std::time::Duration;

use common::fixtures;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::format::Spelling;
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_sql::sqlite::SqliteConfig;
use tessera_sql::{Error, SqliteStore};
use tessera_store::{AuditFilter, StateChange, Store, StoreError, TokenFilter};

fn records(n: usize) -> Vec<TokenRecord> {
    let pepper = fixtures::pepper();
    (0..n)
        .map(|i| {
            fixtures::issue(
                &pepper,
                fixtures::deployment(&format!("storm-{i}")),
                Spelling::Prefixed,
            )
            .1
        })
        .collect()
}

/// The issue events of `records`, stored with them.
fn issued(records: &[TokenRecord]) -> Vec<AuditEvent> {
    records
        .iter()
        .map(|r| {
            AuditEvent::new(fixtures::now(), Actor::System, AuditAction::Issued).token(
                r.id,
                r.kind(),
                &r.hint,
            )
        })
        .collect()
}

/// What one write of the storm attempted, and how it ended.
enum Attempt {
    /// A batch of records, stored all or none.
    Batch(Vec<TokenRecord>, Result<(), StoreError>),
    /// A rotation: the old record superseded and the new one stored, both or neither.
    Rotate(Box<(TokenRecord, TokenRecord, Result<TokenRecord, StoreError>)>),
}

/// `tasks` tasks each writing `rounds` times: a batch of three records, then a rotation of the
/// first of them.
async fn storm(store: &SqliteStore, tasks: usize, rounds: usize, pause: Duration) -> Vec<Attempt> {
    let mut handles = vec![];
    for _ in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut out = vec![];
            for _ in 0..rounds {
                let batch = records(3);
                let done = store.insert_many(&batch, &issued(&batch)).await;
                let stored = done.is_ok();
                out.push(Attempt::Batch(batch.clone(), done));
                if stored {
                    let old = batch[0].clone();
                    let new = records(1).remove(0);
                    let change = StateChange {
                        from: State::Active,
                        to: State::Superseded,
                        at: fixtures::now(),
                        grace_until: None,
                        successor: Some(new.id),
                    };
                    let done = store
                        .replace(old.id, &change, &new, &issued(core::slice::from_ref(&new)))
                        .await;
                    out.push(Attempt::Rotate(Box::new((old, new, done))));
                }
                tokio::time::sleep(pause).await;
            }
            out
        }));
    }
    let mut all = vec![];
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

/// Every attempt left exactly what its answer says; `fault` tells the errors the fault may
/// cause. Returns how many attempts failed.
async fn check(
    store: &SqliteStore,
    attempts: &[Attempt],
    fault: impl Fn(&StoreError) -> bool,
) -> usize {
    let mut failed = 0;
    for a in attempts {
        match a {
            Attempt::Batch(batch, done) => {
                let mut kept = 0;
                for r in batch {
                    let stored = store.get(r.id).await.unwrap().is_some();
                    let events = store
                        .events(&AuditFilter::default().token(r.id))
                        .await
                        .unwrap()
                        .len();
                    assert_eq!(
                        events,
                        usize::from(stored),
                        "a record and its event together"
                    );
                    kept += usize::from(stored);
                }
                match done {
                    Ok(()) => assert_eq!(kept, 3, "a stored batch is whole"),
                    Err(e) => {
                        assert!(fault(e), "an unexpected error: {e:?}");
                        assert_eq!(kept, 0, "a failed batch left {kept} of its records");
                        failed += 1;
                    }
                }
            }
            Attempt::Rotate(rotation) => {
                let (old, new, done) = &**rotation;
                let old_state = store.get(old.id).await.unwrap().unwrap().state;
                let new_kept = store.get(new.id).await.unwrap().is_some();
                match done {
                    Ok(_) => assert_eq!((old_state, new_kept), (State::Superseded, true)),
                    Err(e) => {
                        assert!(fault(e), "an unexpected error: {e:?}");
                        assert_eq!(
                            (old_state, new_kept),
                            (State::Active, false),
                            "a failed rotation is undone whole"
                        );
                        failed += 1;
                    }
                }
            }
        }
    }
    failed
}

fn is_full(e: &StoreError) -> bool {
    match e {
        StoreError::Backend(inner) => {
            matches!(inner.downcast_ref::<Error>(), Some(Error::Full))
                && e.to_string().contains("full")
        }
        _ => false,
    }
}

fn page_count(path: &Path) -> u32 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_database_refuses_changes_whole_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let setup = SqliteStore::open(&path).await.unwrap();
    setup.migrate().await.unwrap();
    setup.close().await;
    // Room for a few dozen records beyond the schema.
    let limit = page_count(&path) + 12;
    let store = SqliteStore::open_with(SqliteConfig::file(&path).max_page_count(limit))
        .await
        .unwrap();

    let attempts = storm(&store, 8, 30, Duration::ZERO).await;
    let failed = check(&store, &attempts, is_full).await;
    assert!(failed > 0, "the storm never filled the database");
    assert!(failed < attempts.len(), "nothing fitted at all");
    assert!(page_count(&path) <= limit);

    // Recovery: free space by purging, and writes succeed again.
    let stored = store.list(&TokenFilter::default()).await.unwrap();
    let ids: Vec<_> = stored.iter().map(|r| r.id).collect();
    assert_eq!(store.purge(&ids, &[]).await.unwrap(), ids.len() as u64);
    let more = records(3);
    store
        .insert_many(&more, &issued(&more))
        .await
        .expect("writes again once space is freed");
    for r in &more {
        assert_eq!(store.get(r.id).await.unwrap().as_ref(), Some(r));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_file_refuses_changes_whole_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let store = SqliteStore::open_with(
        SqliteConfig::file(&path).busy_timeout(time::Duration::milliseconds(100)),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();

    // Another process takes the file's write lock partway through and holds it for over ten
    // busy timeouts (readers still read: WAL).
    let holder = std::thread::spawn({
        let path = path.clone();
        move || {
            std::thread::sleep(Duration::from_millis(150));
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE lock_holder (x INTEGER);")
                .unwrap();
            std::thread::sleep(Duration::from_millis(1200));
            conn.execute_batch("ROLLBACK").unwrap();
        }
    });
    let attempts = storm(&store, 8, 40, Duration::from_millis(10)).await;
    holder.join().unwrap();

    let failed = check(&store, &attempts, |e| {
        matches!(e, StoreError::Unavailable(_)) && e.is_temporary()
    })
    .await;
    assert!(failed > 0, "no write met the lock");
    assert!(
        failed < attempts.len(),
        "no write got through before or after the lock"
    );

    // Recovery: writes and reads work once the lock is gone.
    let more = records(3);
    store
        .insert_many(&more, &issued(&more))
        .await
        .expect("writes again once the lock is released");
    assert_eq!(
        store.get(more[0].id).await.unwrap().as_ref(),
        Some(&more[0])
    );
}
