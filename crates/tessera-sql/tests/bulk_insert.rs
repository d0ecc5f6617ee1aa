//! `insert_many` with batches larger than one multi-row statement (PostgreSQL inserts 4,096
//! records per statement, SQLite 1,365): stored whole and in order, or, when any record
//! collides, not at all, with the same error as inserting the records one by one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::fixtures;
use tessera_core::format::Spelling;
use tessera_core::record::TokenRecord;
use tessera_sql::SqliteStore;
use tessera_store::{Store, StoreError, TokenFilter};

/// Records per batch: several statements on either backend.
const N: usize = 5_000;
/// Where the colliding record sits: past the first statement on either backend.
const LATE: usize = 4_500;

fn batch(prefix: &str) -> Vec<TokenRecord> {
    let pepper = fixtures::pepper();
    (0..N)
        .map(|i| {
            let name = format!("{prefix}-{i}");
            fixtures::issue(&pepper, fixtures::deployment(&name), Spelling::Prefixed).1
        })
        .collect()
}

async fn everything(store: &dyn Store) -> Vec<TokenRecord> {
    store.list(&TokenFilter::default()).await.expect("list")
}

/// A batch spanning several statements is stored whole, in batch order (every record has the
/// same creation time, so `list` orders them by insertion).
async fn spanning_batches_are_stored_whole(store: &dyn Store) {
    let all = batch("whole");
    store.insert_many(&all, &[]).await.expect("insert_many");
    assert_eq!(everything(store).await, all);
}

/// Make a batch collide: given the stored record and a fresh application token of its name.
type Collide = fn(&mut [TokenRecord], &TokenRecord, TokenRecord);

/// A spanning batch with a collision in a later statement stores nothing, and says what
/// collided as one-by-one inserts would.
async fn spanning_batches_that_collide_store_nothing(store: &dyn Store) {
    let pepper = fixtures::pepper();
    let app = |name: &str| {
        let data = fixtures::application(name, "an application", &["read"]);
        fixtures::issue(&pepper, data, Spelling::Prefixed).1
    };
    let existing = app("taken");
    store.insert(&existing, &[]).await.expect("insert");
    let cases: [(&str, Collide); 5] = [
        ("token id", |b, existing, _| b[LATE].id = existing.id),
        ("token digest", |b, existing, _| {
            b[LATE].digest = existing.digest;
        }),
        ("application token name", |b, _, taken| b[LATE] = taken),
        ("token id", |b, _, _| b[N - 1].id = b[3].id),
        ("token digest", |b, _, _| b[LATE].digest = b[N - 1].digest),
    ];
    for (i, (what, collide)) in cases.into_iter().enumerate() {
        let mut b = batch(&format!("case{i}"));
        collide(&mut b, &existing, app("taken"));
        match store.insert_many(&b, &[]).await {
            Err(StoreError::AlreadyExists { what: got }) => assert_eq!(got, what, "case {i}"),
            other => panic!("case {i}: expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(everything(store).await, vec![existing.clone()], "case {i}");
    }
}

async fn sqlite() -> SqliteStore {
    let store = SqliteStore::open_in_memory().await.expect("open");
    store.migrate().await.expect("migrate");
    store
}

#[tokio::test]
async fn sqlite_stores_spanning_batches_whole() {
    spanning_batches_are_stored_whole(&sqlite().await).await;
}

#[tokio::test]
async fn sqlite_stores_nothing_of_colliding_spanning_batches() {
    spanning_batches_that_collide_store_nothing(&sqlite().await).await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use tessera_sql::postgres::PostgresStore;

    use super::common::pg::drop_schema;

    async fn fresh() -> Option<(PostgresStore, String, String)> {
        super::common::pg::fresh(4).await
    }

    #[tokio::test]
    async fn postgres_stores_spanning_batches_whole() {
        let Some((store, url, schema)) = fresh().await else {
            return;
        };
        super::spanning_batches_are_stored_whole(&store).await;
        drop_schema(store, &url, &schema).await;
    }

    #[tokio::test]
    async fn postgres_stores_nothing_of_colliding_spanning_batches() {
        let Some((store, url, schema)) = fresh().await else {
            return;
        };
        super::spanning_batches_that_collide_store_nothing(&store).await;
        drop_schema(store, &url, &schema).await;
    }
}
