//! Write amplification of validation: a store wrapper counts every write call while tokens are
//! validated in a flood for a simulated minute on a manual clock. With the usage ledger no
//! validation writes anything on the request path; a flush writes everything (counts, last
//! uses, audit rows) as one batch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tessera::core::audit::AuditAction;
use tessera::core::audit::AuditEvent;
use tessera::core::clock::ManualClock;
use tessera::core::digest::{Digest, Hint, KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description, DeviceId, EndpointId, TokenId};
use tessera::core::kind::KindData;
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::{Mapping, Method};
use tessera::core::record::TokenRecord;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::store::{
    AuditFilter, Capabilities, Enrollment, RedeemEvents, Redemption, Result, StateChange,
    TokenFilter, UsageBatch, UsageEntry, UsageOutcome, UsageSubject,
};
use tessera::{LedgerSettings, Principal, Store, TokenService, ValidationCache};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A memory store that counts write calls by operation, and touches that wrote.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryStore,
    writes: Mutex<BTreeMap<&'static str, u64>>,
    touch_wrote: AtomicU64,
}

impl Counting {
    fn count(&self, op: &'static str) {
        *self.writes.lock().unwrap().entry(op).or_default() += 1;
    }

    fn writes(&self, op: &str) -> u64 {
        self.writes.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.writes.lock().unwrap().values().sum()
    }

    fn reset(&self) {
        self.writes.lock().unwrap().clear();
        self.touch_wrote.store(0, Ordering::Relaxed);
    }
}

// Written out as `#[async_trait]` would expand it: the root package has no async-trait
// dependency of its own.
impl Store for Counting {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn insert<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        record: &'life1 TokenRecord,
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("insert");
        self.inner.insert(record, events)
    }

    fn insert_many<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        records: &'life1 [TokenRecord],
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("insert_many");
        self.inner.insert_many(records, events)
    }

    fn get<'life0, 'async_trait>(
        &'life0 self,
        id: TokenId,
    ) -> Fut<'async_trait, Option<TokenRecord>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.get(id)
    }

    fn find_by_digest<'life0, 'life1, 'async_trait>(
        &'life0 self,
        digest: &'life1 Digest,
    ) -> Fut<'async_trait, Option<TokenRecord>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.find_by_digest(digest)
    }

    fn list<'life0, 'life1, 'async_trait>(
        &'life0 self,
        filter: &'life1 TokenFilter,
    ) -> Fut<'async_trait, Vec<TokenRecord>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.list(filter)
    }

    fn change_state<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        id: TokenId,
        change: &'life1 StateChange,
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, TokenRecord>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("change_state");
        self.inner.change_state(id, change, events)
    }

    fn replace<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        old: TokenId,
        change: &'life1 StateChange,
        new: &'life2 TokenRecord,
        events: &'life3 [AuditEvent],
    ) -> Fut<'async_trait, TokenRecord>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        self.count("replace");
        self.inner.replace(old, change, new, events)
    }

    fn update_data<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        id: TokenId,
        data: &'life1 KindData,
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, TokenRecord>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("update_data");
        self.inner.update_data(id, data, events)
    }

    fn set_digest<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        id: TokenId,
        digest: &'life1 Digest,
        hint: &'life2 Hint,
        events: &'life3 [AuditEvent],
    ) -> Fut<'async_trait, TokenRecord>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        self.count("set_digest");
        self.inner.set_digest(id, digest, hint, events)
    }

    fn set_sealed<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        id: TokenId,
        sealed: Option<&'life1 tessera::core::seal::Sealed>,
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, TokenRecord>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("set_sealed");
        self.inner.set_sealed(id, sealed, events)
    }

    fn touch<'life0, 'async_trait>(
        &'life0 self,
        id: TokenId,
        now: OffsetDateTime,
        interval: Duration,
    ) -> Fut<'async_trait, bool>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.count("touch");
        let wrote = &self.touch_wrote;
        let fut = self.inner.touch(id, now, interval);
        Box::pin(async move {
            let r = fut.await;
            if matches!(r, Ok(true)) {
                wrote.fetch_add(1, Ordering::Relaxed);
            }
            r
        })
    }

    fn purge<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        ids: &'life1 [TokenId],
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, u64>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("purge");
        self.inner.purge(ids, events)
    }

    fn redeem<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        digest: &'life1 Digest,
        device: &'life2 DeviceId,
        now: OffsetDateTime,
        events: &'life3 RedeemEvents,
    ) -> Fut<'async_trait, Redemption>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        self.count("redeem");
        self.inner.redeem(digest, device, now, events)
    }

    fn enrollments<'life0, 'async_trait>(
        &'life0 self,
        id: TokenId,
    ) -> Fut<'async_trait, Vec<Enrollment>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.enrollments(id)
    }

    fn record_usage<'life0, 'life1, 'async_trait>(
        &'life0 self,
        id: TokenId,
        subject: &'life1 UsageSubject,
        now: OffsetDateTime,
    ) -> Fut<'async_trait, UsageOutcome>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.count("record_usage");
        self.inner.record_usage(id, subject, now)
    }

    fn is_blocked<'life0, 'async_trait>(
        &'life0 self,
        id: TokenId,
        ip: IpAddr,
    ) -> Fut<'async_trait, bool>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.is_blocked(id, ip)
    }

    fn set_blocked<'life0, 'life1, 'async_trait>(
        &'life0 self,
        id: TokenId,
        ip: IpAddr,
        blocked: bool,
        events: &'life1 [AuditEvent],
    ) -> Fut<'async_trait, UsageEntry>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.count("set_blocked");
        self.inner.set_blocked(id, ip, blocked, events)
    }

    fn usage<'life0, 'async_trait>(&'life0 self, id: TokenId) -> Fut<'async_trait, Vec<UsageEntry>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.usage(id)
    }

    fn endpoint_usage<'life0, 'life1, 'async_trait>(
        &'life0 self,
        endpoint: &'life1 EndpointId,
    ) -> Fut<'async_trait, Vec<UsageEntry>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.endpoint_usage(endpoint)
    }

    fn put_mapping<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        mapping: &'life1 Mapping,
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("put_mapping");
        self.inner.put_mapping(mapping, events)
    }

    fn mapping<'life0, 'life1, 'async_trait>(
        &'life0 self,
        secondary: TokenId,
        endpoint: &'life1 EndpointId,
        method: Method,
    ) -> Fut<'async_trait, Option<Mapping>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.mapping(secondary, endpoint, method)
    }

    fn set_mapping_enabled<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        secondary: TokenId,
        endpoint: &'life1 EndpointId,
        method: Method,
        enabled: bool,
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, Mapping>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("set_mapping_enabled");
        self.inner
            .set_mapping_enabled(secondary, endpoint, method, enabled, events)
    }

    fn remove_mapping<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        secondary: TokenId,
        endpoint: &'life1 EndpointId,
        method: Method,
        events: &'life2 [AuditEvent],
    ) -> Fut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("remove_mapping");
        self.inner
            .remove_mapping(secondary, endpoint, method, events)
    }

    fn mappings<'life0, 'life1, 'async_trait>(
        &'life0 self,
        secondary: Option<TokenId>,
        endpoint: Option<&'life1 EndpointId>,
    ) -> Fut<'async_trait, Vec<Mapping>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.mappings(secondary, endpoint)
    }

    fn append<'life0, 'life1, 'async_trait>(
        &'life0 self,
        event: &'life1 AuditEvent,
    ) -> Fut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.count("append");
        self.inner.append(event)
    }

    fn record_batch<'life0, 'life1, 'async_trait>(
        &'life0 self,
        batch: &'life1 UsageBatch,
    ) -> Fut<'async_trait, bool>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.count("record_batch");
        self.inner.record_batch(batch)
    }

    fn events<'life0, 'life1, 'async_trait>(
        &'life0 self,
        filter: &'life1 AuditFilter,
    ) -> Fut<'async_trait, Vec<AuditEvent>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.events(filter)
    }
}

const T0: OffsetDateTime = datetime!(2026-11-23 09:00 UTC);

fn admin() -> Principal {
    Principal::admin("root").unwrap()
}

/// `instances` services over one counting store on one manual clock, with the service defaults
/// (audit of uses and refusals on) but a ledger interval of an hour (so only `flush` writes),
/// each with a validation cache (time to live 5 s) when `cached`.
fn services(
    instances: usize,
    cached: bool,
) -> (Arc<Counting>, Vec<TokenService>, Arc<ManualClock>) {
    let store = Arc::new(Counting::default());
    let clock = Arc::new(ManualClock::new(T0));
    let svcs = (0..instances)
        .map(|_| {
            let b = TokenService::builder_shared(
                store.clone(),
                Peppers::new(Pepper::new(KeyId(1), [7; 32])),
            )
            .clock(clock.clone())
            .ledger(LedgerSettings::new().interval(Duration::hours(1)));
            if cached {
                b.validation_cache(ValidationCache::new(Duration::seconds(5)))
                    .build()
            } else {
                b.build()
            }
        })
        .collect();
    (store, svcs, clock)
}

/// Validate `token` `per_step` times per 100 ms step for a simulated minute, round-robin over
/// the instances; the number of validations.
async fn flood(svcs: &[TokenService], clock: &ManualClock, token: &str, per_step: u64) -> u64 {
    let mut n = 0;
    for _ in 0..600 {
        for i in 0..per_step {
            let svc = &svcs[usize::try_from(i).unwrap() % svcs.len()];
            svc.deployment().validate(token).await.unwrap().unwrap();
            n += 1;
        }
        clock.advance(Duration::milliseconds(100));
    }
    n
}

/// The aggregated use rows of `id` and the uses they count.
async fn audited_uses(svc: &TokenService, id: TokenId) -> (usize, u64) {
    let rows: Vec<_> = svc
        .audit(&AuditFilter::default().token(id), &admin())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.action {
            AuditAction::UsedMany { count, .. } => Some(count),
            _ => None,
        })
        .collect();
    (rows.len(), rows.iter().sum())
}

#[tokio::test]
async fn a_flood_of_validations_writes_nothing_until_one_batch() {
    for cached in [false, true] {
        let (store, svcs, clock) = services(1, cached);
        let svc = &svcs[0];
        let t = svc
            .deployment()
            .generate(NewDeployment::named("flood").unwrap(), &admin())
            .await
            .unwrap();
        store.reset();
        let n = flood(&svcs, &clock, t.secret.expose_secret(), 100).await;
        println!(
            "cache {cached}: {n} validations in 60 simulated s -> {} writes before the flush",
            store.total()
        );
        assert_eq!(store.total(), 0, "no write on the request path (audit on)");
        // Not yet written, already read: the audit row counts every use.
        assert_eq!(audited_uses(svc, t.token.id).await, (1, n));
        let flushed = svc.flush().await.unwrap();
        assert_eq!(flushed.batches, 1);
        assert_eq!(store.writes("record_batch"), 1, "one batch");
        assert_eq!(store.total(), 1, "and nothing else");
        assert_eq!(audited_uses(svc, t.token.id).await, (1, n), "written once");
        let stored = store.inner.get(t.token.id).await.unwrap().unwrap();
        assert_eq!(
            stored.last_used_at,
            Some(T0 + Duration::milliseconds(59_900)),
            "the last use"
        );
        // Nothing left: a second flush writes nothing.
        assert_eq!(svc.flush().await.unwrap().batches, 0);
        assert_eq!(store.total(), 1);
    }
}

#[tokio::test]
async fn several_instances_write_one_batch_each() {
    for cached in [false, true] {
        let (store, svcs, clock) = services(4, cached);
        let t = svcs[0]
            .deployment()
            .generate(NewDeployment::named("flood").unwrap(), &admin())
            .await
            .unwrap();
        store.reset();
        let n = flood(&svcs, &clock, t.secret.expose_secret(), 100).await;
        assert_eq!(store.total(), 0, "no write on the request path");
        for svc in &svcs {
            svc.flush().await.unwrap();
        }
        assert_eq!(store.writes("record_batch"), 4, "one batch per instance");
        let stored = store
            .inner
            .events(&AuditFilter::default().token(t.token.id))
            .await
            .unwrap();
        let counted: u64 = stored
            .iter()
            .filter_map(|e| match e.action {
                AuditAction::UsedMany { count, .. } => Some(count),
                _ => None,
            })
            .sum();
        assert_eq!(counted, n, "every use audited once, across instances");
    }
}

#[tokio::test]
async fn application_validations_count_each_use_in_the_ip_log_through_one_batch() {
    let (store, svcs, clock) = services(1, false);
    let svc = &svcs[0];
    let t = svc
        .application()
        .create(
            ApplicationName::parse("flood").unwrap(),
            Description::parse("flood").unwrap(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &admin(),
        )
        .await
        .unwrap();
    store.reset();
    let ips: [IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
    let mut n = 0;
    for step in 0..600 {
        for i in 0..10 {
            svc.application()
                .validate(t.secret.expose_secret(), ips[i % 2])
                .await
                .unwrap()
                .unwrap();
            n += 1;
        }
        if step == 300 {
            // Half way: written, then counted on top.
            svc.flush().await.unwrap();
        }
        clock.advance(Duration::milliseconds(100));
    }
    let log = svc.application().ips(t.token.id).await.unwrap();
    println!(
        "application: {n} validations -> {} writes ({:?})",
        store.total(),
        log
    );
    assert_eq!(
        store.writes("record_batch"),
        1,
        "only the flush half way wrote"
    );
    assert_eq!(store.writes("record_usage"), 0);
    assert_eq!(store.writes("touch"), 0);
    assert_eq!(log.len(), 2);
    assert_eq!(
        log.iter().map(|e| e.count).sum::<u64>(),
        n,
        "written plus waiting"
    );
    assert!(log.iter().all(|e| e.first_seen == Some(T0)));
    svc.flush().await.unwrap();
    let stored = store.inner.usage(t.token.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.count).sum::<u64>(),
        n,
        "all written"
    );
    assert_eq!(svc.application().ips(t.token.id).await.unwrap(), log);
}
