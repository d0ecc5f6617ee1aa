//! PostgreSQL lookups keep their connection between queries without the pool's check (a round
//! trip each way): a kept connection the server ended meanwhile never fails a lookup, and
//! closing the store waits for none of them.
//!
//! Alone in its own test binary: it ends every other client backend of the test database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use sqlx::{Connection, PgConnection};
    use tessera_core::format::Spelling;
    use tessera_core::record::TokenRecord;
    use tessera_sql::postgres::{PostgresConfig, PostgresStore};
    use tessera_store::{SharedRecord, Store, StoreError};

    use crate::common::pg::drop_schema;
    use crate::common::{fixtures, fresh_schema, postgres_url_or_skip};

    /// End every client backend of the database but `admin`'s; wait until they are gone.
    async fn end_other_backends(admin: &mut PgConnection) {
        let others = "FROM pg_stat_activity WHERE datname = current_database() \
                      AND pid <> pg_backend_pid() AND backend_type = 'client backend'";
        sqlx::query(&format!("SELECT pg_terminate_backend(pid) {others}"))
            .execute(&mut *admin)
            .await
            .unwrap();
        let start = Instant::now();
        loop {
            let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) {others}"))
                .fetch_one(&mut *admin)
                .await
                .unwrap();
            if left == 0 {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "backends linger");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every record of `recs` looked up at once, one task each (lookups batched together).
    async fn all_at_once(
        store: &Arc<PostgresStore>,
        recs: &[TokenRecord],
    ) -> Vec<Result<Option<Arc<SharedRecord>>, StoreError>> {
        let tasks: Vec<_> = recs
            .iter()
            .map(|r| {
                let (store, digest) = (store.clone(), r.digest);
                tokio::spawn(async move { store.find_shared(&digest).await })
            })
            .collect();
        let mut found = Vec::with_capacity(tasks.len());
        for t in tasks {
            found.push(t.await.unwrap());
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_connection_ended_by_the_server_never_fails_a_lookup() {
        let Some(url) = postgres_url_or_skip() else {
            return;
        };
        let schema = fresh_schema();
        for lookups in [1, 2] {
            let config = PostgresConfig::new(url.as_str())
                .schema(&schema)
                .unwrap()
                .max_connections(4)
                .acquire_timeout(time::Duration::seconds(5))
                .lookup_queries(lookups);
            let store = PostgresStore::connect_with(config).await.unwrap();
            store.migrate().await.unwrap();
            let pepper = fixtures::pepper();
            let recs: Vec<TokenRecord> = (0..64)
                .map(|i| {
                    fixtures::issue(
                        &pepper,
                        fixtures::application(&format!("app-{lookups}-{i}"), "", &["feeds"]),
                        Spelling::Prefixed,
                    )
                    .1
                })
                .collect();
            store.insert_many(&recs, &[]).await.unwrap();
            let store = Arc::new(store);
            let mut admin = PgConnection::connect(&url).await.unwrap();
            for round in 0..3 {
                // Lookups alone, then many at once (batches): each leaves its connection kept.
                let r = &recs[round];
                let found = store.find_shared(&r.digest).await.unwrap().unwrap();
                assert_eq!(found.record().id, r.id);
                end_other_backends(&mut admin).await;
                // The kept connection is dead: the lookup still answers, on another one.
                let found = store.find_shared(&r.digest).await.expect(
                    "a lookup on a kept connection the server ended is retried on a checked one",
                );
                assert_eq!(found.unwrap().record().id, r.id);
                for (found, r) in all_at_once(&store, &recs).await.into_iter().zip(&recs) {
                    assert_eq!(found.unwrap().unwrap().record().id, r.id);
                }
                end_other_backends(&mut admin).await;
                for (found, r) in all_at_once(&store, &recs).await.into_iter().zip(&recs) {
                    let found = found.expect("lookups on ended kept connections are retried");
                    assert_eq!(found.unwrap().record().id, r.id);
                }
            }
            admin.close().await.unwrap();
            // Closing waits for every connection handed out: the kept ones are handed back.
            let store = Arc::into_inner(store).expect("no task holds the store");
            tokio::time::timeout(Duration::from_secs(10), drop_schema(store, &url, &schema))
                .await
                .expect("closing the store waits for no kept connection");
        }
    }
}
