//! A change committed before a validation began is seen by it, under 64 concurrent validations
//! on PostgreSQL without the validation cache, where lookups asked while the store's lookup
//! queries are busy are answered together by one query (`PostgresConfig::lookup_queries`): a
//! token deactivated, or an address blocked, is never accepted by a validation that started
//! after the change returned, whether its lookup ran alone or in a batch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::postgres_url;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::sql::PostgresStore;
use tessera::sql::postgres::PostgresConfig;
use tessera::{Principal, Rejection, TokenService};

const TOKENS: usize = 240;
const TASKS: u64 = 64;

fn ip() -> IpAddr {
    "192.0.2.30".parse().unwrap()
}

/// Deactivate (even tokens) or block the address (odd tokens) of each token in turn, while 64
/// tasks validate the tokens around the one being changed; a validation that began after a
/// change returned must be refused, with the change's reason.
async fn changes_are_seen_by_later_validations(lookups: u32) {
    let Some(url) = postgres_url() else {
        return;
    };
    let schema = format!("tessera_revoke_load_{}_{lookups}", std::process::id());
    let store = PostgresStore::connect_with(
        PostgresConfig::new(url)
            .schema(&schema)
            .unwrap()
            .max_connections(16)
            .lookup_queries(lookups),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let svc = TokenService::new(store, Peppers::new(Pepper::new(KeyId(1), [3; 32])));
    let root = Principal::admin("root").unwrap();
    let mut tokens = Vec::with_capacity(TOKENS);
    for i in 0..TOKENS {
        let issued = svc
            .application()
            .create(
                ApplicationName::parse(format!("load-{i}")).unwrap(),
                Description::default(),
                AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                &root,
            )
            .await
            .unwrap();
        tokens.push((issued.token.id, issued.secret.expose_secret().to_owned()));
    }
    let tokens = Arc::new(tokens);
    let changed: Arc<Vec<AtomicBool>> =
        Arc::new((0..TOKENS).map(|_| AtomicBool::new(false)).collect());
    let frontier = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (accepted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..TASKS)
        .map(|k| {
            let (svc, tokens, changed, frontier, done) = (
                svc.clone(),
                tokens.clone(),
                changed.clone(),
                frontier.clone(),
                done.clone(),
            );
            let (accepted, refused) = (accepted.clone(), refused.clone());
            tokio::spawn(async move {
                let mut x = 0x2545_f491_u64 + k;
                while !done.load(Ordering::SeqCst) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // The token being changed, the ones just changed, and the next ones.
                    let f = frontier.load(Ordering::SeqCst);
                    let i = (f + usize::try_from(x % 6).unwrap()).saturating_sub(3);
                    let Some((_, secret)) = tokens.get(i) else {
                        continue;
                    };
                    let was_changed = changed[i].load(Ordering::SeqCst);
                    let outcome = svc.application().validate(secret, ip()).await.unwrap();
                    match outcome {
                        Ok(_) => {
                            assert!(
                                !was_changed,
                                "token {i} accepted by a validation that began after its change"
                            );
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => {
                            let expected = if i % 2 == 0 {
                                Rejection::Disabled
                            } else {
                                Rejection::IpBlocked
                            };
                            assert_eq!(why, expected, "token {i}");
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for (i, (id, _)) in tokens.iter().enumerate() {
        // Let the validations run on this token before it changes.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        if i % 2 == 0 {
            svc.application().deactivate(*id, &root).await.unwrap();
        } else {
            svc.application().block(*id, ip(), &root).await.unwrap();
        }
        changed[i].store(true, Ordering::SeqCst);
        frontier.store(i + 1, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let (accepted, refused) = (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    println!("lookup_queries {lookups}: {accepted} accepted, {refused} refused");
    assert!(
        accepted > 1_000 && refused > 1_000,
        "too few validations to tell"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_are_seen_under_load_with_one_lookup_query() {
    changes_are_seen_by_later_validations(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_are_seen_under_load_with_the_default_lookup_queries() {
    changes_are_seen_by_later_validations(PostgresConfig::DEFAULT_LOOKUP_QUERIES).await;
}
