//! `Store::watch`: PostgreSQL reports, through LISTEN/NOTIFY, every committed change a
//! validation depends on, made through any connection, and nothing else; SQLite does not watch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::sync::{Arc, Mutex};

use common::fixtures;
use tessera_core::format::Spelling;
use tessera_sql::SqliteStore;
use tessera_store::{Change, Store};

#[tokio::test]
async fn sqlite_does_not_watch() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    store.migrate().await.unwrap();
    assert!(!store.watch(Arc::new(|_| true)).await.unwrap());
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::{Duration, Instant};

    use tessera_core::lifecycle::State;
    use tessera_sql::postgres::PostgresStore;

    use crate::common::pg::{connect, drop_schema};
    use tessera_store::StateChange;

    use super::*;

    /// Changes seen so far.
    type Seen = Arc<Mutex<Vec<Change>>>;

    async fn watching(store: &PostgresStore) -> Seen {
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let watches = store
            .watch(Arc::new(move |c| {
                sink.lock().unwrap().push(c);
                true
            }))
            .await
            .expect("watch");
        assert!(watches, "PostgreSQL watches");
        seen
    }

    /// Wait (up to 10 s) until `seen` holds `want`; how long it took.
    async fn until_seen(seen: &Seen, want: Change) -> Duration {
        let start = Instant::now();
        while !seen.lock().unwrap().contains(&want) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{want:?} not reported; saw {:?}",
                seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        start.elapsed()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_reports_changes_from_any_connection_and_only_those() {
        let Some(url) = common::postgres_url_or_skip() else {
            return;
        };
        let schema = common::fresh_schema();
        let other_schema = common::fresh_schema();
        // A pool of one connection: the watch must not hold it.
        let (watched, writer) = (
            connect(&url, &schema, 1).await,
            connect(&url, &schema, 4).await,
        );
        let elsewhere = connect(&url, &other_schema, 4).await;
        let seen = watching(&watched).await;

        let pepper = fixtures::pepper();
        let (_, dep) = fixtures::issue(&pepper, fixtures::deployment("fleet"), Spelling::Prefixed);
        let (_, gone) = fixtures::issue(&pepper, fixtures::deployment("gone"), Spelling::Prefixed);
        writer
            .insert_many(&[dep.clone(), gone.clone()], &[])
            .await
            .unwrap();
        let (_, far) = fixtures::issue(&pepper, fixtures::deployment("far"), Spelling::Prefixed);
        elsewhere.insert(&far, &[]).await.unwrap();

        // A last use and a usage count are not announced.
        let now = fixtures::now();
        writer
            .touch(dep.id, now, time::Duration::seconds(60))
            .await
            .unwrap();
        // Another schema's change is not this store's.
        elsewhere
            .change_state(
                far.id,
                &StateChange::new(State::Active, State::Revoked, now),
                &[],
            )
            .await
            .unwrap();
        // A revocation through another connection is.
        writer
            .change_state(
                dep.id,
                &StateChange::new(State::Active, State::Revoked, now),
                &[],
            )
            .await
            .unwrap();
        let latency = until_seen(&seen, Change::Token(dep.id)).await;
        println!("revocation reported after {} µs", latency.as_micros());
        writer.purge(&[gone.id], &[]).await.unwrap();
        until_seen(&seen, Change::Token(gone.id)).await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Change::Token(dep.id), Change::Token(gone.id)],
            "the touch, the inserts and the other schema's revocation were not reported"
        );

        // A sink that answers false stops the watch: nothing more reaches it.
        let stopped: Seen = Arc::default();
        let sink = stopped.clone();
        watched
            .watch(Arc::new(move |c| {
                sink.lock().unwrap().push(c);
                false
            }))
            .await
            .unwrap();
        let (_, a) = fixtures::issue(&pepper, fixtures::deployment("a"), Spelling::Prefixed);
        let (_, b) = fixtures::issue(&pepper, fixtures::deployment("b"), Spelling::Prefixed);
        writer
            .insert_many(&[a.clone(), b.clone()], &[])
            .await
            .unwrap();
        for id in [a.id, b.id] {
            writer
                .change_state(
                    id,
                    &StateChange::new(State::Active, State::Revoked, now),
                    &[],
                )
                .await
                .unwrap();
        }
        until_seen(&seen, Change::Token(b.id)).await;
        assert_eq!(
            stopped.lock().unwrap().len(),
            1,
            "one report, then it stopped"
        );
        // The watched store still answers through its one pooled connection.
        assert!(watched.get(dep.id).await.unwrap().is_some());

        for (store, schema) in [(watched, &schema), (elsewhere, &other_schema)] {
            drop_schema(store, &url, schema).await;
        }
        writer.close().await;
    }
}
