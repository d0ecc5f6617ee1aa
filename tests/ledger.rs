//! The usage ledger through the public API: writes behind the request path, counts once when a
//! write is dropped after it committed, keeps its batch while the store is down, bounds its
//! memory, merges what it holds into reads, and never delays a decision (a block holds at once,
//! through the validation cache too).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use common::{T0, admin, peppers};
use tessera::core::audit::AuditAction;
use tessera::core::clock::ManualClock;
use tessera::core::id::{AccessType, ApplicationName, Description, EndpointId, TokenId};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::store::{AuditFilter, StateChange, Store, StoreError, UsageBatch};
use tessera::{Issued, LedgerSettings, Rejection, TokenService, ValidationCache};
use time::Duration;

/// The memory store, whose `record_batch` can fail (the store down) or answer late (after it
/// wrote: a commit whose answer is lost when the caller gives up).
#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
    slow: AtomicBool,
    batches: AtomicU64,
}

macro_rules! flaky_store {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        #[async_trait::async_trait]
        impl Store for Flaky {
            fn capabilities(&self) -> tessera::store::Capabilities {
                self.inner.capabilities()
            }

            async fn record_batch(&self, batch: &UsageBatch) -> tessera::store::Result<bool> {
                if self.down.load(Ordering::SeqCst) {
                    return Err(StoreError::Unavailable("the test took the store down".into()));
                }
                let wrote = self.inner.record_batch(batch).await?;
                self.batches.fetch_add(1, Ordering::SeqCst);
                if self.slow.load(Ordering::SeqCst) {
                    // Written; the answer comes late.
                    tokio::time::sleep(StdDuration::from_secs(5)).await;
                }
                Ok(wrote)
            }

            $(async fn $name(&self, $($arg: $ty),*) -> tessera::store::Result<$out> {
                self.inner.$name($($arg),*).await
            })*
        }
    };
}

flaky_store! {
    insert(record: &tessera::core::record::TokenRecord, events: &[tessera::core::audit::AuditEvent]) -> ();
    insert_many(records: &[tessera::core::record::TokenRecord], events: &[tessera::core::audit::AuditEvent]) -> ();
    get(id: TokenId) -> Option<tessera::core::record::TokenRecord>;
    list(filter: &tessera::store::TokenFilter) -> Vec<tessera::core::record::TokenRecord>;
    change_state(id: TokenId, change: &StateChange, events: &[tessera::core::audit::AuditEvent]) -> tessera::core::record::TokenRecord;
    replace(old: TokenId, change: &StateChange, new: &tessera::core::record::TokenRecord, events: &[tessera::core::audit::AuditEvent]) -> tessera::core::record::TokenRecord;
    update_data(id: TokenId, data: &tessera::core::kind::KindData, events: &[tessera::core::audit::AuditEvent]) -> tessera::core::record::TokenRecord;
    set_digest(id: TokenId, digest: &tessera::core::digest::Digest, hint: &tessera::core::digest::Hint, events: &[tessera::core::audit::AuditEvent]) -> tessera::core::record::TokenRecord;
    set_sealed(id: TokenId, sealed: Option<&tessera::core::seal::Sealed>, events: &[tessera::core::audit::AuditEvent]) -> tessera::core::record::TokenRecord;
    touch(id: TokenId, now: time::OffsetDateTime, interval: Duration) -> bool;
    purge(ids: &[TokenId], events: &[tessera::core::audit::AuditEvent]) -> u64;
    redeem(digest: &tessera::core::digest::Digest, device: &tessera::core::id::DeviceId, now: time::OffsetDateTime, events: &tessera::store::RedeemEvents) -> tessera::store::Redemption;
    enrollments(id: TokenId) -> Vec<tessera::store::Enrollment>;
    record_usage(id: TokenId, subject: &tessera::store::UsageSubject, now: time::OffsetDateTime) -> tessera::store::UsageOutcome;
    is_blocked(id: TokenId, ip: IpAddr) -> bool;
    set_blocked(id: TokenId, ip: IpAddr, blocked: bool, events: &[tessera::core::audit::AuditEvent]) -> tessera::store::UsageEntry;
    usage(id: TokenId) -> Vec<tessera::store::UsageEntry>;
    endpoint_usage(endpoint: &EndpointId) -> Vec<tessera::store::UsageEntry>;
    put_mapping(mapping: &tessera::core::kind::endpoint::Mapping, events: &[tessera::core::audit::AuditEvent]) -> ();
    mapping(secondary: TokenId, endpoint: &EndpointId, method: Method) -> Option<tessera::core::kind::endpoint::Mapping>;
    set_mapping_enabled(secondary: TokenId, endpoint: &EndpointId, method: Method, enabled: bool, events: &[tessera::core::audit::AuditEvent]) -> tessera::core::kind::endpoint::Mapping;
    remove_mapping(secondary: TokenId, endpoint: &EndpointId, method: Method, events: &[tessera::core::audit::AuditEvent]) -> ();
    mappings(secondary: Option<TokenId>, endpoint: Option<&EndpointId>) -> Vec<tessera::core::kind::endpoint::Mapping>;
    append(event: &tessera::core::audit::AuditEvent) -> ();
    events(filter: &AuditFilter) -> Vec<tessera::core::audit::AuditEvent>;
    find_by_digest(digest: &tessera::core::digest::Digest) -> Option<tessera::core::record::TokenRecord>;
    find_shared(digest: &tessera::core::digest::Digest) -> Option<Arc<tessera::store::SharedRecord>>;
}

/// A service over `store` whose ledger writes only when flushed (interval of an hour).
fn service(store: Arc<dyn Store>, ledger: LedgerSettings) -> TokenService {
    TokenService::builder_shared(store, peppers())
        .clock(Arc::new(ManualClock::new(T0)))
        .ledger(ledger.interval(Duration::hours(1)))
        .build()
}

async fn app(svc: &TokenService, name: &str) -> Issued {
    svc.application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &admin(),
        )
        .await
        .unwrap()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

async fn stored_count(store: &dyn Store, id: TokenId) -> u64 {
    store.usage(id).await.unwrap().iter().map(|u| u.count).sum()
}

async fn use_n(svc: &TokenService, t: &Issued, n: u64) {
    for i in 0..n {
        let addr = ip(u8::try_from(i % 3).unwrap() + 1);
        svc.application()
            .validate(t.secret.expose_secret(), addr)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_flush_dropped_after_its_write_committed_counts_once() {
    let store = Arc::new(Flaky::default());
    let svc = service(store.clone(), LedgerSettings::new());
    let t = app(&svc, "app").await;
    use_n(&svc, &t, 10).await;
    store.slow.store(true, Ordering::SeqCst);
    // The write commits, then its answer is late: the caller gives up (drops the flush).
    let gave_up = tokio::time::timeout(StdDuration::from_millis(200), svc.flush()).await;
    assert!(gave_up.is_err(), "the flush was dropped mid-write");
    assert_eq!(store.batches.load(Ordering::SeqCst), 1, "it did write");
    assert_eq!(stored_count(&store.inner, t.token.id).await, 10);
    store.slow.store(false, Ordering::SeqCst);
    use_n(&svc, &t, 5).await;
    // The next flush writes the dropped batch again (same id: refused), then the new one.
    let f = svc.flush().await.unwrap();
    assert_eq!(f.batches, 2);
    assert_eq!(
        stored_count(&store.inner, t.token.id).await,
        15,
        "the dropped batch counted once"
    );
    let ips = svc.application().ips(t.token.id).await.unwrap();
    assert_eq!(ips.iter().map(|e| e.count).sum::<u64>(), 15);
}

#[tokio::test]
async fn while_the_store_is_down_validation_goes_on_and_the_batch_waits() {
    let store = Arc::new(Flaky::default());
    let svc = service(store.clone(), LedgerSettings::new());
    let t = app(&svc, "app").await;
    use_n(&svc, &t, 4).await;
    store.down.store(true, Ordering::SeqCst);
    assert!(svc.flush().await.is_err(), "the store is down");
    // Validation does not wait for the ledger: still accepted, still counted in memory.
    use_n(&svc, &t, 6).await;
    let ips = svc.application().ips(t.token.id).await.unwrap();
    assert_eq!(
        ips.iter().map(|e| e.count).sum::<u64>(),
        10,
        "reads include it"
    );
    assert!(svc.flush().await.is_err());
    store.down.store(false, Ordering::SeqCst);
    svc.flush().await.unwrap();
    assert_eq!(
        stored_count(&store.inner, t.token.id).await,
        10,
        "all of it, once"
    );
    assert_eq!(svc.ledger_pending(), 0);
}

#[tokio::test]
async fn beyond_max_held_tokens_further_uses_are_not_counted_but_accepted() {
    let store = Arc::new(Flaky::default());
    let svc = service(store.clone(), LedgerSettings::new().max_held(3));
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(app(&svc, &format!("app-{i}")).await);
    }
    store.down.store(true, Ordering::SeqCst);
    for t in &tokens {
        use_n(&svc, t, 2).await;
    }
    store.down.store(false, Ordering::SeqCst);
    svc.flush().await.unwrap();
    let mut counts = Vec::new();
    for t in &tokens {
        counts.push(stored_count(&store.inner, t.token.id).await);
    }
    assert_eq!(
        counts,
        vec![2, 2, 2, 0, 0],
        "three tokens held, two dropped"
    );
}

#[tokio::test]
async fn uses_and_refusals_are_audited_as_aggregated_rows_or_one_per_use() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let rows = service(store.clone(), LedgerSettings::new());
    let each = service(store.clone(), LedgerSettings::new().audit_each_use(true));
    let t = app(&rows, "app").await;
    use_n(&rows, &t, 7).await;
    rows.application()
        .block(t.token.id, ip(9), &admin())
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            rows.application()
                .validate(t.secret.expose_secret(), ip(9))
                .await
                .unwrap(),
            Err(Rejection::IpBlocked)
        );
    }
    use_n(&each, &t, 3).await;
    // Before the flush, from the service that holds them.
    let audit = |svc: TokenService| async move {
        svc.audit(&AuditFilter::default().token(t.token.id), &admin())
            .await
            .unwrap()
    };
    let before = audit(rows.clone()).await;
    let used: Vec<_> = before
        .iter()
        .filter_map(|e| match e.action {
            AuditAction::UsedMany {
                count, addresses, ..
            } => Some((count, addresses)),
            _ => None,
        })
        .collect();
    assert_eq!(used, vec![(7, 3)], "one row: 7 uses from 3 addresses");
    assert!(before.iter().any(|e| matches!(
        e.action,
        AuditAction::RefusedMany {
            reason: Rejection::IpBlocked,
            count: 2,
            addresses: 1,
            ..
        }
    )));
    rows.flush().await.unwrap();
    each.flush().await.unwrap();
    let after = store
        .events(&AuditFilter::default().token(t.token.id))
        .await
        .unwrap();
    let singles = after
        .iter()
        .filter(|e| e.action == AuditAction::Used)
        .count();
    assert_eq!(singles, 3, "one row per use where asked");
    let rows_written = after
        .iter()
        .filter(|e| {
            matches!(
                e.action,
                AuditAction::UsedMany { .. } | AuditAction::RefusedMany { .. }
            )
        })
        .count();
    assert_eq!(rows_written, 2);
    // Nothing of a secret in the rows: the token's hint only.
    let text = format!("{after:?}");
    assert!(!text.contains(t.secret.expose_secret()));
}

#[tokio::test]
async fn a_block_holds_at_once_through_the_validation_cache() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = TokenService::builder_shared(store, peppers())
        .clock(Arc::new(ManualClock::new(T0)))
        .validation_cache(ValidationCache::new(Duration::hours(1)))
        .build();
    let t = app(&svc, "app").await;
    let tok = t.secret.expose_secret();
    assert!(
        svc.application()
            .validate(tok, ip(1))
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(svc.cached_records(), 1);
    svc.application()
        .block(t.token.id, ip(1), &admin())
        .await
        .unwrap();
    assert_eq!(
        svc.application().validate(tok, ip(1)).await.unwrap(),
        Err(Rejection::IpBlocked),
        "the very next validation"
    );
    // Any spelling of the address.
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(
        svc.application().validate(tok, mapped).await.unwrap(),
        Err(Rejection::IpBlocked)
    );
    assert!(
        svc.application()
            .validate(tok, ip(2))
            .await
            .unwrap()
            .is_ok()
    );
    svc.application()
        .unblock(t.token.id, ip(1), &admin())
        .await
        .unwrap();
    assert!(
        svc.application()
            .validate(tok, ip(1))
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn endpoint_traffic_includes_what_is_not_written_yet() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = service(store.clone(), LedgerSettings::new());
    let ep = EndpointId::parse("/orders").unwrap();
    let primaries = svc.endpoint().enable(&ep, false, &admin()).await.unwrap();
    let (_, get) = primaries.iter().find(|(m, _)| *m == Method::Get).unwrap();
    for _ in 0..4 {
        svc.endpoint()
            .check(&ep, Method::Get, get.secret.expose_secret(), Some(ip(1)))
            .await
            .unwrap()
            .unwrap();
    }
    let waiting = svc.endpoint().traffic(&ep).await.unwrap();
    assert_eq!(waiting.iter().map(|u| u.count).sum::<u64>(), 4);
    assert!(store.endpoint_usage(&ep).await.unwrap().is_empty());
    svc.flush().await.unwrap();
    assert_eq!(
        svc.endpoint().traffic(&ep).await.unwrap(),
        waiting,
        "the same once written"
    );
}

#[tokio::test]
async fn the_writer_task_writes_every_interval_without_a_flush() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = TokenService::builder_shared(store.clone(), peppers())
        .ledger(LedgerSettings::new().interval(Duration::milliseconds(50)))
        .build();
    let d = svc
        .deployment()
        .generate(NewDeployment::named("fleet").unwrap(), &admin())
        .await
        .unwrap();
    svc.deployment()
        .validate(d.secret.expose_secret())
        .await
        .unwrap()
        .unwrap();
    let mut waited = 0;
    while store
        .get(d.token.id)
        .await
        .unwrap()
        .unwrap()
        .last_used_at
        .is_none()
    {
        assert!(waited < 100, "not written within 5 s");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(svc.ledger_pending(), 0);
}

#[tokio::test]
async fn a_long_outage_keeps_a_bounded_number_of_audit_rows_per_token() {
    let store = Arc::new(Flaky::default());
    let clock = Arc::new(ManualClock::new(T0));
    let svc = TokenService::builder_shared(store.clone(), peppers())
        .clock(clock.clone())
        .ledger(LedgerSettings::new().interval(Duration::hours(1)))
        .build();
    let t = app(&svc, "app").await;
    store.down.store(true, Ordering::SeqCst);
    // 200 uses, each in an interval of its own, while nothing can be written.
    for _ in 0..200 {
        clock.advance(Duration::hours(2));
        use_n(&svc, &t, 1).await;
        assert!(svc.flush().await.is_err(), "the store is down");
    }
    store.down.store(false, Ordering::SeqCst);
    svc.flush().await.unwrap();
    let rows: Vec<(u64, time::OffsetDateTime, time::OffsetDateTime)> = store
        .inner
        .events(&AuditFilter::default().token(t.token.id))
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match e.action {
            AuditAction::UsedMany { count, last, .. } => Some((count, e.at, last)),
            _ => None,
        })
        .collect();
    // The batch taken by the first failed write (one row), then at most 64 held.
    assert!(rows.len() <= 65, "{} rows held for one token", rows.len());
    assert_eq!(
        rows.iter().map(|r| r.0).sum::<u64>(),
        200,
        "every use, once"
    );
    // The row that grew says how long it spans.
    assert!(rows.iter().any(|(count, first, last)| *count > 1
        && *last - *first >= Duration::hours(2) * i32::try_from(*count - 1).unwrap()));
}

/// Uses of one token over several writes within the audit window are one aggregated row,
/// written with its totals so far at every write and stored once (its latest version); writes
/// that find the row unused leave it open, and a use once its window has passed by the clock
/// starts another. Reads before a write show each row once, with the totals not yet written.
#[tokio::test]
async fn an_audit_row_spans_its_window_across_writes_and_is_stored_once() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    let svc = TokenService::builder_shared(store.clone(), peppers())
        .clock(clock.clone())
        .ledger(
            // The window is never shorter than the interval: an interval of 10 s (of the
            // system's clock, which this test outruns: only its own flushes write).
            LedgerSettings::new()
                .interval(Duration::seconds(10))
                .audit_window(Duration::minutes(1)),
        )
        .build();
    let t = app(&svc, "app").await;
    let rows =
        |events: Vec<tessera::core::audit::AuditEvent>| -> Vec<(time::OffsetDateTime, u64, u64)> {
            events
                .iter()
                .filter_map(|e| match e.action {
                    AuditAction::UsedMany {
                        count,
                        addresses,
                        row,
                        ..
                    } => {
                        assert!(row.is_some(), "an aggregated row has a key");
                        Some((e.at, count, addresses))
                    }
                    _ => None,
                })
                .collect()
        };
    let stored = || async {
        rows(
            store
                .events(&AuditFilter::default().token(t.token.id))
                .await
                .unwrap(),
        )
    };
    let read = || async {
        rows(
            svc.audit(&AuditFilter::default().token(t.token.id), &admin())
                .await
                .unwrap(),
        )
    };
    // Three writes 20 s apart: one row, its totals growing.
    use_n(&svc, &t, 2).await;
    svc.flush().await.unwrap();
    assert_eq!(stored().await, vec![(T0, 2, 2)]);
    clock.advance(Duration::seconds(20));
    use_n(&svc, &t, 3).await;
    assert_eq!(
        read().await,
        vec![(T0, 5, 3)],
        "the open row's totals, once, before the write"
    );
    svc.flush().await.unwrap();
    assert_eq!(
        stored().await,
        vec![(T0, 5, 3)],
        "the stored row replaced, not a second one"
    );
    clock.advance(Duration::seconds(20));
    use_n(&svc, &t, 1).await;
    svc.flush().await.unwrap();
    assert_eq!(stored().await, vec![(T0, 6, 3)]);
    // Past the window: a new row.
    clock.advance(Duration::seconds(30));
    use_n(&svc, &t, 4).await;
    svc.flush().await.unwrap();
    let later = T0 + Duration::seconds(70);
    assert_eq!(stored().await, vec![(T0, 6, 3), (later, 4, 3)]);
    // Writes with nothing new leave the open row as it is; a use within its window still
    // counts in it.
    svc.flush().await.unwrap();
    clock.advance(Duration::seconds(5));
    svc.flush().await.unwrap();
    use_n(&svc, &t, 1).await;
    svc.flush().await.unwrap();
    assert_eq!(stored().await, vec![(T0, 6, 3), (later, 5, 3)]);
    // A use once the window has passed by the clock starts another.
    clock.advance(Duration::seconds(60));
    svc.flush().await.unwrap();
    use_n(&svc, &t, 1).await;
    svc.flush().await.unwrap();
    assert_eq!(
        stored().await,
        vec![
            (T0, 6, 3),
            (later, 5, 3),
            (later + Duration::seconds(65), 1, 1)
        ]
    );
    assert_eq!(
        read().await,
        stored().await,
        "nothing waiting: reads are the store's"
    );
    assert_eq!(
        stored_count(store.as_ref(), t.token.id).await,
        12,
        "the usage entries agree"
    );
}
