//! The validation cache: exact revocation inside one process, bounded by the time to live
//! across instances, never caching unknown tokens, bounded in size.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{T0, admin, peppers, user};
use tessera::auth::NewAuth;
use tessera::core::clock::ManualClock;
use tessera::core::id::{
    AccessType, ApplicationName, Description, EndpointId, Permission, TokenId, TokenName,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::core::lifecycle::State;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::store::{StateChange, Store};
use tessera::{Rejection, TokenService, ValidationCache};
use time::Duration;

const TTL: Duration = Duration::seconds(30);

/// Services sharing one memory store are exact with each other too: the store tells every
/// cache of a change before the write returns.
#[tokio::test]
async fn services_sharing_a_memory_store_see_each_others_changes_at_once() {
    let clock = Arc::new(ManualClock::new(T0));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = cached_over(store.clone(), &clock, Duration::hours(1));
    let b = cached_over(store, &clock, Duration::hours(1));
    let dep = deployment(&b, "fleet").await;
    let tok = dep.secret.expose_secret();
    assert!(a.deployment().validate(tok).await.unwrap().is_ok());
    assert!(a.cache_watches_changes());
    assert_eq!(a.cached_records(), 1);
    b.revoke(dep.token.id, &admin()).await.unwrap();
    assert_eq!(
        a.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Revoked)
    );
}

/// The memory store, answering `find_by_digest` late: the record it returns was read before
/// the pause, so a write can land in between (a loaded database does the same).
#[derive(Debug)]
struct SlowReads {
    inner: MemoryStore,
    pause: std::time::Duration,
}

/// Implements `Store` for `SlowReads`: `find_by_digest` pauses, the rest goes straight through.
macro_rules! slow_reads_store {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        #[async_trait::async_trait]
        impl Store for SlowReads {
            fn capabilities(&self) -> tessera::store::Capabilities {
                self.inner.capabilities()
            }

            async fn find_by_digest(
                &self,
                digest: &tessera::core::digest::Digest,
            ) -> tessera::store::Result<Option<tessera::core::record::TokenRecord>> {
                let found = self.inner.find_by_digest(digest).await;
                tokio::time::sleep(self.pause).await;
                found
            }

            $(async fn $name(&self, $($arg: $ty),*) -> tessera::store::Result<$out> {
                self.inner.$name($($arg),*).await
            })*
        }
    };
}

slow_reads_store! {
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
        record_batch(batch: &tessera::store::UsageBatch) -> bool;
    events(filter: &tessera::store::AuditFilter) -> Vec<tessera::core::audit::AuditEvent>;
}

fn cached_over(store: Arc<dyn Store>, clock: &Arc<ManualClock>, ttl: Duration) -> TokenService {
    TokenService::builder_shared(store, peppers())
        .clock(clock.clone())
        .validation_cache(ValidationCache::new(ttl))
        .build()
}

fn cached() -> (TokenService, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    (
        cached_over(Arc::new(MemoryStore::new()), &clock, TTL),
        clock,
    )
}

fn ip() -> IpAddr {
    "198.51.100.7".parse().unwrap()
}

async fn deployment(svc: &TokenService, name: &str) -> tessera::Issued {
    svc.deployment()
        .generate(NewDeployment::named(name).unwrap(), &admin())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cached_token_is_refused_as_soon_as_this_process_changes_it() {
    let (svc, _) = cached();
    let root = admin();

    // Expire (the console's "Expire Token").
    let dep = deployment(&svc, "fleet").await;
    let tok = dep.secret.expose_secret();
    assert!(svc.deployment().validate(tok).await.unwrap().is_ok());
    assert!(svc.deployment().validate(tok).await.unwrap().is_ok());
    assert_eq!(svc.cached_records(), 1, "the second validation was a hit");
    svc.deployment().expire(dep.token.id, &root).await.unwrap();
    assert_eq!(
        svc.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Expired)
    );

    // Revoke.
    let dep = deployment(&svc, "fleet-2").await;
    let tok = dep.secret.expose_secret();
    assert!(svc.deployment().validate(tok).await.unwrap().is_ok());
    svc.revoke(dep.token.id, &root).await.unwrap();
    assert_eq!(
        svc.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Revoked)
    );

    // Deactivate and reactivate an application token.
    let app = svc
        .application()
        .create(
            ApplicationName::parse("billing").unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &root,
        )
        .await
        .unwrap();
    let tok = app.secret.expose_secret();
    assert!(svc.application().validate(tok, ip()).await.unwrap().is_ok());
    svc.application()
        .deactivate(app.token.id, &root)
        .await
        .unwrap();
    assert_eq!(
        svc.application().validate(tok, ip()).await.unwrap(),
        Err(Rejection::Disabled)
    );
    svc.application()
        .activate(app.token.id, &root)
        .await
        .unwrap();
    assert!(svc.application().validate(tok, ip()).await.unwrap().is_ok());

    // Rotate without grace: the old secret stops at once, the new one works.
    let rotated = svc.rotate(app.token.id, None, &root).await.unwrap();
    assert_eq!(
        svc.application().validate(tok, ip()).await.unwrap(),
        Err(Rejection::RotatedOut)
    );
    assert!(
        svc.application()
            .validate(rotated.secret.expose_secret(), ip())
            .await
            .unwrap()
            .is_ok()
    );

    // Revoke a user's auth token.
    let bob = user("bob");
    let held: BTreeSet<Permission> = [Permission::parse("reset_password").unwrap()].into();
    let auth = svc
        .auth()
        .generate(
            NewAuth::new("bob", "script", ["reset_password"], "12h").unwrap(),
            &held,
            &bob,
        )
        .await
        .unwrap();
    let tok = auth.secret.expose_secret();
    let action = Permission::parse("reset_password").unwrap();
    assert!(svc.auth().check(tok, &action, &held).await.unwrap().is_ok());
    svc.auth().revoke(auth.token.id, &bob).await.unwrap();
    assert_eq!(
        svc.auth().check(tok, &action, &held).await.unwrap(),
        Err(Rejection::Revoked)
    );
}

#[tokio::test]
async fn a_regenerated_secondary_and_a_disabled_mapping_take_effect_at_once() {
    let (svc, _) = cached();
    let e = svc.endpoint();
    let orders = EndpointId::parse("/api/orders").unwrap();
    e.enable(&orders, false, &admin()).await.unwrap();
    let erp = e
        .create_secondary(
            TokenName::parse("erp").unwrap(),
            Description::default(),
            &admin(),
        )
        .await
        .unwrap();
    e.map(erp.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    let old = erp.secret.expose_secret();
    assert!(
        e.check(&orders, Method::Get, old, None)
            .await
            .unwrap()
            .is_ok()
    );

    e.set_mapping_enabled(erp.token.id, &orders, Method::Get, false, &admin())
        .await
        .unwrap();
    assert!(
        e.check(&orders, Method::Get, old, None)
            .await
            .unwrap()
            .is_err(),
        "a disabled mapping refuses although the record is cached"
    );
    e.set_mapping_enabled(erp.token.id, &orders, Method::Get, true, &admin())
        .await
        .unwrap();

    let new = e
        .regenerate_secondary(erp.token.id, &admin())
        .await
        .unwrap();
    assert_eq!(
        e.check(&orders, Method::Get, old, None).await.unwrap(),
        Err(Rejection::NotFound)
    );
    assert!(
        e.check(&orders, Method::Get, new.expose_secret(), None)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn writes_through_the_store_handle_keep_the_cache_exact() {
    let (svc, clock) = cached();
    let dep = deployment(&svc, "fleet").await;
    let tok = dep.secret.expose_secret();
    assert!(svc.deployment().validate(tok).await.unwrap().is_ok());
    svc.store()
        .change_state(
            dep.token.id,
            &StateChange::new(
                State::Active,
                State::Revoked,
                tessera::core::clock::Clock::now(&*clock),
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        svc.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Revoked)
    );
}

#[tokio::test]
async fn expiry_by_time_needs_no_write_to_be_seen() {
    let (svc, clock) = cached();
    let dep = svc
        .deployment()
        .generate(
            NewDeployment::named("short")
                .unwrap()
                .expires_at(T0 + Duration::seconds(10)),
            &admin(),
        )
        .await
        .unwrap();
    let tok = dep.secret.expose_secret();
    assert!(svc.deployment().validate(tok).await.unwrap().is_ok());
    clock.advance(Duration::seconds(10));
    assert_eq!(
        svc.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Expired)
    );
}

#[tokio::test]
async fn another_instance_sees_a_change_within_the_time_to_live_and_new_tokens_at_once() {
    let clock = Arc::new(ManualClock::new(T0));
    // A store that does not watch for changes (as SQLite shared between processes): only the
    // time to live bounds what the other instance's cache serves.
    let store: Arc<dyn Store> = Arc::new(SlowReads {
        inner: MemoryStore::new(),
        pause: std::time::Duration::ZERO,
    });
    let a = cached_over(store.clone(), &clock, TTL);
    let b = cached_over(store, &clock, TTL);

    // Unknown tokens are not cached: a token B issues after A refused it works on A at once.
    let dep = b
        .deployment()
        .generate(NewDeployment::named("fleet").unwrap(), &admin())
        .await
        .unwrap();
    let tok = dep.secret.expose_secret();
    assert!(a.deployment().validate(tok).await.unwrap().is_ok());
    assert_eq!(a.cached_records(), 1);

    // B revokes at T0 + 1 s. A's copy was loaded at T0: it may be accepted until T0 + TTL, and
    // not one instant later.
    clock.advance(Duration::seconds(1));
    b.revoke(dep.token.id, &admin()).await.unwrap();
    assert_eq!(
        b.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Revoked)
    );
    clock.advance(TTL - Duration::seconds(1) - Duration::milliseconds(1));
    assert!(
        a.deployment().validate(tok).await.unwrap().is_ok(),
        "within its time to live A's copy is what the bound allows"
    );
    clock.advance(Duration::milliseconds(1));
    assert_eq!(
        a.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Revoked)
    );
}

#[tokio::test]
async fn unknown_tokens_are_never_cached_and_the_size_is_bounded() {
    let clock = Arc::new(ManualClock::new(T0));
    let svc = TokenService::builder(MemoryStore::new(), peppers())
        .clock(clock.clone())
        .validation_cache(ValidationCache::new(TTL).capacity(3))
        .build();
    let mut tokens = Vec::new();
    for i in 0..10 {
        tokens.push(deployment(&svc, &format!("fleet-{i}")).await);
    }
    let unknown = tessera::Secret::generate(tessera::Kind::Deployment).unwrap();
    assert_eq!(
        svc.deployment()
            .validate(unknown.expose_secret())
            .await
            .unwrap(),
        Err(Rejection::NotFound)
    );
    assert_eq!(svc.cached_records(), 0);
    for _ in 0..3 {
        for t in &tokens {
            assert!(
                svc.deployment()
                    .validate(t.secret.expose_secret())
                    .await
                    .unwrap()
                    .is_ok()
            );
            assert!(svc.cached_records() <= 3);
        }
    }
    assert_eq!(svc.cached_records(), 3);
}

/// Many threads validate one token without pause while another revokes it: every validation
/// that starts after the revoke returned is refused, on the multi-threaded runtime, with the
/// system clock and a cache that would otherwise keep the record for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_validation_after_a_revoke_returns_is_accepted_under_concurrency() {
    for round in 0..20 {
        let svc = TokenService::builder(MemoryStore::new(), peppers())
            .validation_cache(ValidationCache::new(Duration::hours(1)))
            .audit_uses(false)
            .build();
        let dep = deployment(&svc, "fleet").await;
        let tok: Arc<str> = dep.secret.expose_secret().into();
        let revoked = Arc::new(AtomicBool::new(false));
        let (accepted, after) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (svc, tok, revoked) = (svc.clone(), tok.clone(), revoked.clone());
            let (accepted, after) = (accepted.clone(), after.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let started_after = revoked.load(Ordering::SeqCst);
                    let ok = svc.deployment().validate(&tok).await.unwrap().is_ok();
                    if ok {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        assert!(!started_after, "accepted a validation begun after revoke");
                    }
                    if started_after && after.fetch_add(1, Ordering::Relaxed) > 200 {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        // Let the validators fill the cache first.
        while accepted.load(Ordering::Relaxed) < 50 {
            tokio::task::yield_now().await;
        }
        svc.revoke(dep.token.id, &admin()).await.unwrap();
        revoked.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}

/// A validation that read the record before a revoke finished must not leave that record in
/// the cache: the next validation is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_read_before_a_revoke_is_not_cached_after_it() {
    let store = SlowReads {
        inner: MemoryStore::new(),
        pause: std::time::Duration::from_millis(200),
    };
    let svc = TokenService::builder(store, peppers())
        .validation_cache(ValidationCache::new(Duration::hours(1)))
        .build();
    let dep = deployment(&svc, "fleet").await;
    let tok: Arc<str> = dep.secret.expose_secret().into();
    let early = {
        let (svc, tok) = (svc.clone(), tok.clone());
        tokio::spawn(async move { svc.deployment().validate(&tok).await.unwrap() })
    };
    // The early validation has read the active record and is paused before caching it.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    svc.revoke(dep.token.id, &admin()).await.unwrap();
    // Begun before the revoke returned, it may answer either way.
    early.await.unwrap().ok();
    assert_eq!(
        svc.deployment().validate(&tok).await.unwrap(),
        Err(Rejection::Revoked)
    );
}

/// Validate `token` from `from` on each of three threads of its own, three times each (the
/// first fills the shared map, the second copies the entry to the thread's front, the third is
/// answered by the front); every answer of a thread the same.
fn on_three_threads(svc: &TokenService, token: &str, from: IpAddr) -> Vec<Result<(), Rejection>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    let answers: Vec<Result<(), Rejection>> = (0..3)
                        .map(|_| {
                            rt.block_on(svc.application().validate(token, from))
                                .unwrap()
                                .map(drop)
                        })
                        .collect();
                    assert!(
                        answers.windows(2).all(|w| w[0] == w[1]),
                        "one thread answered {answers:?}"
                    );
                    answers[0]
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Each thread keeps its own copy of what it found (its front): a block, a revoke and a write
/// through the store handle made on another thread are seen by every thread's next validation.
#[test]
fn every_thread_sees_a_change_made_on_another_at_once() {
    let svc = TokenService::builder(MemoryStore::new(), peppers())
        .validation_cache(ValidationCache::new(Duration::hours(1)))
        .build();
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let issue = |name: &str| {
        setup
            .block_on(svc.application().create(
                ApplicationName::parse(name).unwrap(),
                Description::parse("front").unwrap(),
                AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                &admin(),
            ))
            .unwrap()
    };
    let (a, b, c) = (issue("app-a"), issue("app-b"), issue("app-c"));
    let secret = |i: &tessera::Issued| i.secret.expose_secret().to_owned();
    let (a_tok, b_tok, c_tok) = (secret(&a), secret(&b), secret(&c));
    let other: IpAddr = "203.0.113.9".parse().unwrap();
    for tok in [&a_tok, &b_tok, &c_tok] {
        assert_eq!(on_three_threads(&svc, tok, ip()), vec![Ok(()); 3]);
    }
    assert_eq!(svc.cached_records(), 3);

    setup
        .block_on(svc.application().block(a.token.id, ip(), &admin()))
        .unwrap();
    assert_eq!(
        on_three_threads(&svc, &a_tok, ip()),
        vec![Err(Rejection::IpBlocked); 3]
    );
    assert_eq!(on_three_threads(&svc, &a_tok, other), vec![Ok(()); 3]);
    assert_eq!(on_three_threads(&svc, &b_tok, ip()), vec![Ok(()); 3]);

    setup.block_on(svc.revoke(b.token.id, &admin())).unwrap();
    assert_eq!(
        on_three_threads(&svc, &b_tok, ip()),
        vec![Err(Rejection::Revoked); 3]
    );
    assert_eq!(on_three_threads(&svc, &c_tok, ip()), vec![Ok(()); 3]);

    setup
        .block_on(svc.store().change_state(
            c.token.id,
            &StateChange::new(
                State::Active,
                State::Disabled,
                time::OffsetDateTime::now_utc(),
            ),
            &[],
        ))
        .unwrap();
    assert_eq!(
        on_three_threads(&svc, &c_tok, ip()),
        vec![Err(Rejection::Disabled); 3]
    );
    assert_eq!(on_three_threads(&svc, &a_tok, other), vec![Ok(()); 3]);
}
