//! Write amplification of validation: a store wrapper counts every write call while one token
//! is validated in a flood for a simulated minute on a manual clock. With last-use coalescing a
//! token's last-use time is written at most once per `touch_interval`, however many validations
//! land in it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    AuditFilter, Capabilities, Enrollment, Redemption, Result, StateChange, TokenFilter,
    UsageEntry, UsageOutcome, UsageSubject,
};
use tessera::{Principal, Store, TokenService, ValidationCache};
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

    fn redeem<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        digest: &'life1 Digest,
        device: &'life2 DeviceId,
        now: OffsetDateTime,
    ) -> Fut<'async_trait, Redemption>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.count("redeem");
        self.inner.redeem(digest, device, now)
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

/// `instances` services over one counting store on one manual clock, audit of uses off, each
/// with a validation cache (time to live 5 s) when `cached`.
fn services(
    interval: Duration,
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
            .touch_interval(interval)
            .audit_uses(false)
            .audit_refusals(false);
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

#[tokio::test]
async fn a_flood_of_validations_touches_at_most_once_per_interval() {
    for (interval_s, cached) in [1, 10, 60]
        .into_iter()
        .flat_map(|i| [(i, false), (i, true)])
    {
        let interval = Duration::seconds(interval_s);
        let (store, svcs, clock) = services(interval, 1, cached);
        let t = svcs[0]
            .deployment()
            .generate(NewDeployment::named("flood").unwrap(), &admin())
            .await
            .unwrap();
        store.reset();
        let n = flood(&svcs, &clock, t.secret.expose_secret(), 100).await;
        let intervals = u64::try_from(60 / interval_s).unwrap();
        let touches = store.writes("touch");
        println!(
            "interval {interval_s:>2} s, cache {cached}: {n} validations in 60 simulated s -> \
             {touches} touch calls, {} wrote, {} writes in all",
            store.touch_wrote.load(Ordering::Relaxed),
            store.total()
        );
        assert!(touches >= 1, "the first use is recorded");
        assert!(
            touches <= intervals,
            "{touches} touches for {intervals} intervals"
        );
        assert_eq!(store.total(), touches, "no other write on this path");
    }
}

#[tokio::test]
async fn several_instances_write_at_most_once_per_interval_between_them() {
    // Each instance coalesces in its own cache, so each may call touch once per interval; the
    // store's conditional update lets only one of those calls write.
    for cached in [false, true] {
        let (store, svcs, clock) = services(Duration::seconds(10), 4, cached);
        let t = svcs[0]
            .deployment()
            .generate(NewDeployment::named("flood").unwrap(), &admin())
            .await
            .unwrap();
        store.reset();
        flood(&svcs, &clock, t.secret.expose_secret(), 100).await;
        let calls = store.writes("touch");
        let wrote = store.touch_wrote.load(Ordering::Relaxed);
        println!(
            "4 instances, cache {cached}, interval 10 s, 60 s: {calls} touch calls, {wrote} wrote"
        );
        assert!(wrote <= 6, "{wrote} last-use writes for 6 intervals");
        assert!(wrote >= 1, "uses are recorded");
        assert!(
            calls <= 4 * 6,
            "{calls} touch calls for 4 instances x 6 intervals"
        );
    }
}

#[tokio::test]
async fn application_validation_counts_each_use_in_the_ip_log() {
    // The IP log is a per-use counter (first seen, last seen, count): one upsert per accepted
    // validation by design; only the token's last-use time is coalesced.
    let (store, svcs, clock) = services(Duration::seconds(60), 1, false);
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
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let mut n = 0;
    for _ in 0..600 {
        for _ in 0..10 {
            svc.application()
                .validate(t.secret.expose_secret(), ip)
                .await
                .unwrap()
                .unwrap();
            n += 1;
        }
        clock.advance(Duration::milliseconds(100));
    }
    println!(
        "application: {n} validations -> {} usage upserts, {} touch calls",
        store.writes("record_usage"),
        store.writes("touch")
    );
    assert_eq!(store.writes("record_usage"), n);
    assert_eq!(store.writes("touch"), 1);
}
