//! A PostgreSQL change watch whose watcher is no longer wanted releases its connection. Alone in
//! its own test binary, so the server's listening connections are this test's to count.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tessera_store::{Change, Store};

    use crate::common;
    use crate::common::pg::drop_schema;

    /// A watcher no longer wanted is dropped by the backend: its listening connection closes
    /// within the five-second liveness check, with no report needed to notice.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_stops_watching_for_a_watcher_no_longer_wanted() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use tessera_store::Watcher;

        struct Flagged(Arc<AtomicBool>);
        impl Watcher for Flagged {
            fn changed(&self, _: Change) -> bool {
                true
            }
            fn wanted(&self) -> bool {
                self.0.load(Ordering::SeqCst)
            }
        }

        let Some((store, url, schema)) = common::pg::fresh(2).await else {
            return;
        };
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        // Listening connections on this server, from this test's schema's watches alone (the only
        // watch of this test binary).
        let listening = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query LIKE 'LISTEN %tessera_token_changes%'",
            )
            .fetch_one(&admin)
            .await
            .unwrap()
        };
        let before = listening().await;
        let wanted = Arc::new(AtomicBool::new(true));
        assert!(
            store
                .watch(Arc::new(Flagged(wanted.clone())))
                .await
                .unwrap()
        );
        assert_eq!(listening().await, before + 1);
        wanted.store(false, Ordering::SeqCst);
        let start = Instant::now();
        while listening().await > before {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the watch kept its connection"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("watch released after {} ms", start.elapsed().as_millis());
        admin.close().await;
        drop_schema(store, &url, &schema).await;
    }
}
