//! PostgreSQL lookups by digest coalesced under load ([`PostgresConfig::lookup_queries`]): each
//! lookup gets its own record, a failed batch fails every lookup it answers, and neither a
//! dropped lookup nor a runtime shut down under one wedges the others.
//!
//! The `tokens` table is held locked (ACCESS EXCLUSIVE, from a connection of the test's own)
//! while lookups are started, so the lookup queries in flight wait on the server and the others
//! queue: the batches these tests need happen every time, not by chance of timing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use sqlx::{Connection, PgConnection};
    use tessera_core::digest::{Digest, KeyId};
    use tessera_core::format::Spelling;
    use tessera_core::record::TokenRecord;
    use tessera_sql::postgres::{PostgresConfig, PostgresStore};
    use tessera_store::Store;

    use crate::common::{fixtures, fresh_schema, postgres_url_or_skip};

    /// A store of `records` application records in a fresh schema, at most `lookups` lookup
    /// queries at once; its URL and schema.
    async fn store(
        lookups: u32,
        connections: u32,
        records: usize,
    ) -> Option<(Arc<PostgresStore>, Vec<TokenRecord>, String, String)> {
        let url = postgres_url_or_skip()?;
        let schema = fresh_schema();
        let config = PostgresConfig::new(url.as_str())
            .schema(&schema)
            .unwrap()
            .max_connections(connections)
            .acquire_timeout(time::Duration::seconds(5))
            .lookup_queries(lookups);
        let store = PostgresStore::connect_with(config).await.unwrap();
        store.migrate().await.unwrap();
        let pepper = fixtures::pepper();
        let recs: Vec<TokenRecord> = (0..records)
            .map(|i| {
                fixtures::issue(
                    &pepper,
                    fixtures::application(&format!("app-{i}"), "", &["feeds"]),
                    Spelling::Prefixed,
                )
                .1
            })
            .collect();
        store.insert_many(&recs, &[]).await.unwrap();
        Some((Arc::new(store), recs, url, schema))
    }

    /// A digest no record has.
    fn unknown(i: usize) -> Digest {
        let mut bytes = [0xA5; 32];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Digest::from_parts(KeyId(1), bytes)
    }

    /// A connection holding `tokens` of `schema` locked until it is committed.
    async fn lock_tokens(url: &str, schema: &str) -> PgConnection {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(&format!(
            "BEGIN; LOCK TABLE \"{schema}\".tokens IN ACCESS EXCLUSIVE MODE"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    }

    /// The queries of the backends waiting for the lock on `tokens` of `schema`, with their pids.
    async fn waiting(admin: &mut PgConnection, schema: &str) -> Vec<(i32, String)> {
        sqlx::query_as(
            "SELECT a.pid, a.query FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
             WHERE NOT l.granted AND l.relation = to_regclass($1)",
        )
        .bind(format!("\"{schema}\".tokens"))
        .fetch_all(admin)
        .await
        .unwrap()
    }

    /// Wait until `n` backends wait for the lock (at most 10 s).
    async fn until_waiting(admin: &mut PgConnection, schema: &str, n: usize) {
        let start = Instant::now();
        while waiting(admin, schema).await.len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{n} lookup queries never reached the server"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn drop_schema(url: &str, schema: &str) {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    /// 64 tasks looking up known and unknown digests at random, first while the table is
    /// locked (every lookup then queues behind the one query in flight and is answered by a
    /// batch), then freely: each gets the record of its own digest, or none for an unknown one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn coalesced_lookups_answer_each_digest_with_its_own_record() {
        let Some((store, recs, url, schema)) = store(1, 8, 500).await else {
            return;
        };
        let recs = Arc::new(recs);
        let mut admin = PgConnection::connect(&url).await.unwrap();
        let lock = lock_tokens(&url, &schema).await;
        let tasks: Vec<_> = (0..64usize)
            .map(|k| {
                let (store, recs) = (store.clone(), recs.clone());
                tokio::spawn(async move {
                    let mut x = 0x9e37_79b9_u64 + k as u64;
                    for n in 0..100usize {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let i = usize::try_from(x % 600).unwrap();
                        if let Some(r) = recs.get(i) {
                            let found = store.find_shared(&r.digest).await.unwrap();
                            let found = found.unwrap_or_else(|| panic!("record {i} not found"));
                            assert_eq!(found.record().id, r.id, "record {i}: another record");
                            assert_eq!(found.record().digest, r.digest);
                            assert!(found.blocked().is_empty());
                        } else {
                            let none = store.find_shared(&unknown(k * 1000 + n)).await.unwrap();
                            assert!(none.is_none(), "an unknown digest found a record");
                        }
                    }
                })
            })
            .collect();
        // The one query in flight waits on the lock; the others queue behind it.
        until_waiting(&mut admin, &schema, 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        lock.close().await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        drop_schema(&url, &schema).await;
    }

    /// The server ends every lookup query waiting on the lock, a batch's included: each of the
    /// 64 lookups fails with an error, none is answered "not found", and the store answers
    /// again afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_failing_on_the_server_fails_every_lookup_it_answers() {
        let Some((store, recs, url, schema)) = store(2, 8, 64).await else {
            return;
        };
        let mut admin = PgConnection::connect(&url).await.unwrap();
        let lock = lock_tokens(&url, &schema).await;
        let tasks: Vec<_> = recs
            .iter()
            .map(|r| {
                let (store, digest) = (store.clone(), r.digest);
                tokio::spawn(async move { store.find_shared(&digest).await })
            })
            .collect();
        let mut batch_killed = false;
        let start = Instant::now();
        while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "lookups still waiting"
            );
            for (pid, query) in waiting(&mut admin, &schema).await {
                batch_killed |= query.contains("UNNEST");
                sqlx::query("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for t in tasks {
            match t.await.unwrap() {
                Err(_) => {}
                Ok(found) => panic!(
                    "a lookup whose query was ended was answered: {:?}",
                    found.map(|r| r.record().id)
                ),
            }
        }
        assert!(
            batch_killed,
            "no batch was in flight when the server ended it"
        );
        lock.close().await.unwrap();
        let r = &recs[0];
        let found = store.find_shared(&r.digest).await.unwrap().unwrap();
        assert_eq!(found.record().id, r.id);
        drop_schema(&url, &schema).await;
    }

    /// Lookups dropped while their query is in flight (the one leading it) or while queued:
    /// the others are all answered, correctly, once the table is free, in several rounds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_lookups_never_wedge_the_others() {
        let Some((store, recs, url, schema)) = store(1, 4, 64).await else {
            return;
        };
        let recs = Arc::new(recs);
        let mut admin = PgConnection::connect(&url).await.unwrap();
        for round in 0..4usize {
            let lock = lock_tokens(&url, &schema).await;
            let spawn = |i: usize| {
                let (store, recs) = (store.clone(), recs.clone());
                tokio::spawn(async move {
                    let r = &recs[i];
                    let found = store.find_shared(&r.digest).await.unwrap().unwrap();
                    assert_eq!(found.record().id, r.id);
                })
            };
            // The first leads the one query (waiting on the lock), the rest queue behind it.
            let first = spawn(0);
            until_waiting(&mut admin, &schema, 1).await;
            let rest: Vec<_> = (1..64).map(spawn).collect();
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Drop the leader: its lead passes to the oldest queued lookup, whose batch
            // query waits on the lock in turn.
            first.abort();
            until_waiting(&mut admin, &schema, 1).await;
            let mut kept = vec![];
            for (i, t) in rest.into_iter().enumerate() {
                // A different half each round, the new leader among them in some.
                if (i + round) % 2 == 0 {
                    t.abort();
                } else {
                    kept.push(t);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            lock.close().await.unwrap();
            let answered = tokio::time::timeout(Duration::from_secs(10), async {
                for t in kept {
                    t.await.unwrap();
                }
            })
            .await;
            assert!(answered.is_ok(), "round {round}: lookups wedged");
        }
        // Usable: a lookup alone, and 64 at once.
        let all: Vec<_> = recs
            .iter()
            .map(|r| {
                let (store, r) = (store.clone(), r.clone());
                tokio::spawn(async move {
                    store
                        .find_shared(&r.digest)
                        .await
                        .unwrap()
                        .unwrap()
                        .record()
                        .id
                        == r.id
                })
            })
            .collect();
        for t in all {
            assert!(t.await.unwrap());
        }
        drop_schema(&url, &schema).await;
    }

    /// The lookup leading a query runs on a runtime that shuts down while the query waits on the
    /// server: the lookups queued behind it, on another runtime, are answered anyway.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_whose_runtime_shuts_down_hands_its_lookups_on() {
        let Some((store, recs, url, schema)) = store(1, 4, 16).await else {
            return;
        };
        let mut admin = PgConnection::connect(&url).await.unwrap();
        let lock = lock_tokens(&url, &schema).await;
        let other = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let leader = {
            let (store, digest) = (store.clone(), recs[0].digest);
            other.spawn(async move { store.find_shared(&digest).await })
        };
        until_waiting(&mut admin, &schema, 1).await;
        let queued: Vec<_> = recs[1..]
            .iter()
            .map(|r| {
                let (store, r) = (store.clone(), r.clone());
                tokio::spawn(async move {
                    let found = store.find_shared(&r.digest).await.unwrap().unwrap();
                    found.record().id == r.id
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        other.shutdown_background();
        assert!(
            leader.await.is_err(),
            "the leader was dropped with its runtime"
        );
        lock.close().await.unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            let mut ids = HashSet::<bool>::new();
            for t in queued {
                ids.insert(t.await.unwrap());
            }
            ids
        })
        .await
        .expect("the queued lookups were left waiting");
        assert_eq!(answered, HashSet::from([true]));
        drop_schema(&url, &schema).await;
    }
}
