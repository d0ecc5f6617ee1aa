//! Repeated uses counted beside the shared record (its use slot) instead of in the usage
//! ledger's tables: every accepted use is counted once, whatever runs at the same time —
//! validations on many threads, the ledger's writer, flushes, reads of what is waiting, two
//! services over one store, records replaced by writes, a clock that moves past the interval.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{T0, admin, peppers};
use tessera::core::audit::AuditAction;
use tessera::core::clock::ManualClock;
use tessera::core::id::{AccessType, ApplicationName, Description, EndpointId, TokenId};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::store::{AuditFilter, Store};
use tessera::{Issued, LedgerSettings, TokenService};
use time::Duration;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

/// What a test validates: a token of a kind, with what its request carries.
enum Target {
    Deployment(Issued),
    Application(Issued),
    Endpoint(EndpointId, Method, Issued),
}

impl Target {
    fn id(&self) -> TokenId {
        match self {
            Self::Deployment(t) | Self::Application(t) | Self::Endpoint(_, _, t) => t.token.id,
        }
    }

    /// Validate once from `addr`: whether it was accepted.
    async fn validate(&self, svc: &TokenService, addr: IpAddr) -> bool {
        match self {
            Self::Deployment(t) => svc
                .deployment()
                .validate(t.secret.expose_secret())
                .await
                .unwrap()
                .is_ok(),
            Self::Application(t) => svc
                .application()
                .validate(t.secret.expose_secret(), addr)
                .await
                .unwrap()
                .is_ok(),
            Self::Endpoint(ep, m, t) => svc
                .endpoint()
                .check(ep, *m, t.secret.expose_secret(), Some(addr))
                .await
                .unwrap()
                .is_ok(),
        }
    }
}

async fn targets(svc: &TokenService, n: usize) -> Vec<Target> {
    let mut out = Vec::new();
    for i in 0..n {
        let d = svc
            .deployment()
            .generate(
                NewDeployment::named(format!("fleet-{i}")).unwrap(),
                &admin(),
            )
            .await
            .unwrap();
        out.push(Target::Deployment(d));
        let a = svc
            .application()
            .create(
                ApplicationName::parse(format!("app-{i}")).unwrap(),
                Description::default(),
                AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                &admin(),
            )
            .await
            .unwrap();
        out.push(Target::Application(a));
        let ep = EndpointId::parse(format!("/orders-{i}")).unwrap();
        for (m, t) in svc.endpoint().enable(&ep, false, &admin()).await.unwrap() {
            out.push(Target::Endpoint(ep.clone(), m, t));
        }
    }
    out
}

/// Uses of `id` in the audit rows (aggregated or single) the store holds.
async fn audited_uses(store: &dyn Store, id: TokenId) -> u64 {
    store
        .events(&AuditFilter::default().token(id))
        .await
        .unwrap()
        .iter()
        .map(|e| match e.action {
            AuditAction::UsedMany { count, .. } => count,
            AuditAction::Used => 1,
            _ => 0,
        })
        .sum()
}

/// Uses of `t` in its stored usage entries (IP log, endpoint traffic).
async fn stored_usage(store: &dyn Store, t: &Target) -> Option<u64> {
    match t {
        Target::Deployment(_) => None,
        Target::Application(a) => Some(
            store
                .usage(a.token.id)
                .await
                .unwrap()
                .iter()
                .map(|u| u.count)
                .sum(),
        ),
        Target::Endpoint(ep, _, a) => Some(
            store
                .endpoint_usage(ep)
                .await
                .unwrap()
                .iter()
                .filter(|u| u.token == a.token.id)
                .map(|u| u.count)
                .sum(),
        ),
    }
}

/// A cheap per-task random sequence.
struct Pick(u64);

impl Pick {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

/// Validate `rounds` times per task from `tasks` tasks spread over `services`, tokens and
/// addresses (two) at random: the accepted uses per token.
async fn hammer(
    services: &[TokenService],
    targets: &Arc<Vec<Target>>,
    tasks: u64,
    rounds: usize,
) -> HashMap<TokenId, u64> {
    let accepted: Arc<HashMap<TokenId, AtomicU64>> = Arc::new(
        targets
            .iter()
            .map(|t| (t.id(), AtomicU64::new(0)))
            .collect(),
    );
    let mut handles = Vec::new();
    for task in 0..tasks {
        let svc = services[usize::try_from(task).unwrap() % services.len()].clone();
        let targets = Arc::clone(targets);
        let accepted = Arc::clone(&accepted);
        handles.push(tokio::spawn(async move {
            let mut pick = Pick(0x9E37_79B9_7F4A_7C15 ^ (task + 1));
            for i in 0..rounds {
                let t = &targets[pick.next(targets.len())];
                let addr = ip(1 + u8::try_from(pick.next(2)).unwrap());
                assert!(t.validate(&svc, addr).await, "a valid token was refused");
                accepted[&t.id()].fetch_add(1, Ordering::Relaxed);
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    accepted
        .iter()
        .map(|(id, n)| (*id, n.load(Ordering::Relaxed)))
        .collect()
}

async fn assert_counted(store: &dyn Store, targets: &[Target], accepted: &HashMap<TokenId, u64>) {
    let mut total = 0;
    for t in targets {
        let want = accepted[&t.id()];
        total += want;
        assert_eq!(audited_uses(store, t.id()).await, want, "audited uses");
        if let Some(stored) = stored_usage(store, t).await {
            assert_eq!(stored, want, "usage entries");
        }
        if want > 0 {
            assert!(
                store
                    .get(t.id())
                    .await
                    .unwrap()
                    .unwrap()
                    .last_used_at
                    .is_some(),
                "last use written"
            );
        }
    }
    assert!(total > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_use_counts_once_under_threads_flushes_and_reads() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // The writer task writes every 20 ms meanwhile, besides the explicit flushes below.
    let svc = TokenService::builder_shared(Arc::clone(&store), peppers())
        .ledger(LedgerSettings::new().interval(Duration::milliseconds(20)))
        .build();
    let targets = Arc::new(targets(&svc, 6).await);
    let busy = {
        let svc = svc.clone();
        let targets = Arc::clone(&targets);
        tokio::spawn(async move {
            loop {
                svc.flush().await.unwrap();
                for t in targets.iter() {
                    if let Target::Application(a) = t {
                        svc.application().ips(a.token.id).await.unwrap();
                    }
                }
                svc.audit(&AuditFilter::default(), &admin()).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let accepted = hammer(std::slice::from_ref(&svc), &targets, 8, 4_000).await;
    busy.abort();
    let _ = busy.await;
    // Before the last flush, reads include what is waiting, slots too.
    for t in targets.iter() {
        if let Target::Application(a) = t {
            let ips = svc.application().ips(a.token.id).await.unwrap();
            assert_eq!(
                ips.iter().map(|e| e.count).sum::<u64>(),
                accepted[&t.id()],
                "ips() includes the uses not yet written"
            );
        }
    }
    svc.flush().await.unwrap();
    assert_eq!(svc.ledger_pending(), 0);
    assert_counted(store.as_ref(), &targets, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_over_one_store_each_count_their_own_uses() {
    // Both services find the same shared records in the memory store: one record's slot
    // registered to one service's ledger must never take the other's uses.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let services: Vec<TokenService> = (0..2)
        .map(|_| {
            TokenService::builder_shared(Arc::clone(&store), peppers())
                .ledger(LedgerSettings::new().interval(Duration::milliseconds(15)))
                .build()
        })
        .collect();
    let targets = Arc::new(targets(&services[0], 4).await);
    let accepted = hammer(&services, &targets, 8, 3_000).await;
    for s in &services {
        s.flush().await.unwrap();
    }
    assert_counted(store.as_ref(), &targets, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uses_go_on_counting_while_writes_replace_the_records() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = TokenService::builder_shared(Arc::clone(&store), peppers())
        .ledger(LedgerSettings::new().interval(Duration::hours(1)))
        .build();
    let targets = Arc::new(targets(&svc, 3).await);
    // Blocking and unblocking an address no request comes from replaces the shared record
    // (its block list) while validations count into the old one's slot.
    let writer = {
        let svc = svc.clone();
        let targets = Arc::clone(&targets);
        tokio::spawn(async move {
            for i in 0u32.. {
                for t in targets.iter() {
                    if let Target::Application(a) = t {
                        svc.application()
                            .block(a.token.id, ip(200), &admin())
                            .await
                            .unwrap();
                        svc.application()
                            .unblock(a.token.id, ip(200), &admin())
                            .await
                            .unwrap();
                    }
                }
                if i % 4 == 0 {
                    svc.flush().await.unwrap();
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let accepted = hammer(std::slice::from_ref(&svc), &targets, 6, 3_000).await;
    writer.abort();
    let _ = writer.await;
    svc.flush().await.unwrap();
    assert_counted(store.as_ref(), &targets, &accepted).await;
}

#[tokio::test]
async fn a_use_past_the_interval_starts_a_new_row() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    let svc = TokenService::builder_shared(Arc::clone(&store), peppers())
        .clock(clock.clone())
        .ledger(LedgerSettings::new().interval(Duration::minutes(1)))
        .build();
    let d = svc
        .deployment()
        .generate(NewDeployment::named("fleet").unwrap(), &admin())
        .await
        .unwrap();
    let use_n = |n: usize| {
        let svc = svc.clone();
        let secret = d.secret.expose_secret().to_owned();
        async move {
            for _ in 0..n {
                svc.deployment().validate(&secret).await.unwrap().unwrap();
            }
        }
    };
    use_n(3).await;
    clock.advance(Duration::seconds(30));
    use_n(2).await;
    clock.advance(Duration::minutes(2));
    use_n(4).await;
    let rows = |events: Vec<tessera::core::audit::AuditEvent>| {
        let mut rows: Vec<(time::OffsetDateTime, u64, time::OffsetDateTime)> = events
            .iter()
            .filter_map(|e| match e.action {
                AuditAction::UsedMany { count, last, .. } => Some((e.at, count, last)),
                _ => None,
            })
            .collect();
        rows.sort();
        rows
    };
    let want = vec![
        (T0, 5, T0 + Duration::seconds(30)),
        (T0 + Duration::seconds(150), 4, T0 + Duration::seconds(150)),
    ];
    let waiting = svc
        .audit(&AuditFilter::default().token(d.token.id), &admin())
        .await
        .unwrap();
    assert_eq!(
        rows(waiting),
        want,
        "what is waiting, read before the flush"
    );
    svc.flush().await.unwrap();
    let written = store
        .events(&AuditFilter::default().token(d.token.id))
        .await
        .unwrap();
    assert_eq!(rows(written), want, "as written");
    assert_eq!(
        store.get(d.token.id).await.unwrap().unwrap().last_used_at,
        Some(T0 + Duration::seconds(150))
    );
}
