//! Every operation is safe to drop at any await point: a harness drops each one after 0, 1, 2,
//! … polls (until it completes on its own) on every backend — memory, SQLite file, SQLite in
//! memory, PostgreSQL — and after each drop checks that the store is consistent (no
//! half-written change, no lost database, no leaked lock, no connection left in a transaction)
//! and usable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::postgres_url;

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tessera::core::audit::{Actor, AuditAction, AuditEvent};
use tessera::core::digest::{Digest, KeyId, Pepper, Peppers};
use tessera::core::id::{
    AccessType, ApplicationName, Description, DeviceId, EndpointId, TokenId, TokenName,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::{Mapping, Method};
use tessera::core::kind::onboarding::UsageLimit;
use tessera::core::lifecycle::State;
use tessera::core::record::TokenRecord;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::onboarding::NewOnboarding;
use tessera::sql::postgres::PostgresConfig;
use tessera::sql::{PostgresStore, SqliteStore};
use tessera::store::{
    AuditFilter, BatchId, RedeemEvents, StateChange, Store, TokenFilter, UsageBatch, UsageDelta,
    UsageSubject,
};
use tessera::{Principal, Rejection, TokenService, ValidationCache};
use time::OffsetDateTime;

fn peppers() -> Peppers {
    Peppers::new(Pepper::new(KeyId(1), [5; 32]))
}

fn root() -> Principal {
    Principal::admin("root").unwrap()
}

fn ip() -> IpAddr {
    "192.0.2.20".parse().unwrap()
}

/// Poll `fut` at most `polls` times, letting the runtime run between polls (so I/O moves on
/// and each poll can stop at another await point), then drop it. Its output if it finished.
async fn drop_after<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        let step = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(out) = step {
            return Some(out);
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    None
}

/// Drop the operation `op` makes after 0, 1, 2, … polls until it completes within that many,
/// calling `check` after each drop. Returns how many drops were made.
async fn every_drop_point<F, Fut>(what: &str, mut op: F, mut check: impl AsyncFnMut(usize))
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    for polls in 0.. {
        let done = drop_after(op(), polls).await.is_some();
        check(polls).await;
        if done {
            return;
        }
        assert!(polls < 10_000, "{what}: never completes");
    }
}

/// What each backend case is built on.
async fn services(label: &str) -> Vec<(String, TokenService)> {
    let mut out = vec![];
    let mut add = |name: &str, store: Arc<dyn Store>| {
        out.push((
            format!("{label} {name}"),
            TokenService::builder_shared(store.clone(), peppers()).build(),
        ));
        out.push((
            format!("{label} {name} cached"),
            TokenService::builder_shared(store, peppers())
                .validation_cache(ValidationCache::new(time::Duration::hours(1)))
                .build(),
        ));
    };
    add("memory", Arc::new(MemoryStore::new()));
    let memory = SqliteStore::open_in_memory().await.unwrap();
    memory.migrate().await.unwrap();
    add("sqlite in memory", Arc::new(memory));
    let dir = tempfile::tempdir().unwrap().keep();
    let file = SqliteStore::open(dir.join("cancel.db")).await.unwrap();
    file.migrate().await.unwrap();
    add("sqlite file", Arc::new(file));
    if let Some(url) = postgres_url() {
        let schema = format!("tessera_cancel_{}_{label}", std::process::id());
        let pg = PostgresStore::connect_with(
            PostgresConfig::new(url)
                .schema(&schema)
                .unwrap()
                .max_connections(4),
        )
        .await
        .unwrap();
        pg.migrate().await.unwrap();
        add("postgres", Arc::new(pg));
    }
    out
}

/// The reproduction: a validation cancelled before it got anywhere, then another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite_survives_a_cancelled_validation() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    store.migrate().await.unwrap();
    let svc = TokenService::new(store, peppers());
    let dep = svc
        .deployment()
        .generate(NewDeployment::named("fleet").unwrap(), &root())
        .await
        .unwrap();
    let tok = dep.secret.expose_secret();
    for _ in 0..50 {
        let _ = tokio::time::timeout(Duration::ZERO, svc.deployment().validate(tok)).await;
        assert!(svc.deployment().validate(tok).await.unwrap().is_ok());
    }
}

/// The store is usable and consistent: a new token can be issued, validated and revoked.
async fn usable(what: &str, svc: &TokenService) {
    let dep = svc
        .deployment()
        .generate(NewDeployment::named("probe").unwrap(), &root())
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot issue after a cancellation: {e}"));
    let tok = dep.secret.expose_secret();
    assert!(
        svc.deployment().validate(tok).await.unwrap().is_ok(),
        "{what}"
    );
    svc.revoke(dep.token.id, &root()).await.unwrap();
    assert_eq!(
        svc.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Revoked),
        "{what}"
    );
}

/// A token's state and successor as stored.
async fn state(svc: &TokenService, id: TokenId) -> (State, Option<TokenId>) {
    let r = svc.store().get(id).await.unwrap().unwrap();
    (r.state, r.successor)
}

/// `(state, answer)`: the stored state read before and after `answer` and equal both times (a
/// write dropped after PostgreSQL received it may still commit meanwhile: then read again).
macro_rules! settled {
    ($svc:expr, $id:expr, $answer:expr) => {{
        let mut tries = 0;
        loop {
            let before = state($svc, $id).await;
            let answer = $answer;
            let after = state($svc, $id).await;
            if before == after {
                break (after, answer);
            }
            tries += 1;
            assert!(tries < 1000, "the stored state never settled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }};
}

/// Validations (every kind that counts something: deployment last use, application usage),
/// redemptions, issues, revocations, rotations and deactivations, each dropped at every await
/// point, on every backend, with and without a validation cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_operations_dropped_at_every_await_point() {
    for (i, (what, svc)) in services("svc").await.into_iter().enumerate() {
        let what = what.as_str();
        let dep = svc
            .deployment()
            .generate(NewDeployment::named("fleet").unwrap(), &root())
            .await
            .unwrap();
        let tok = dep.secret.expose_secret().to_owned();

        // Validation.
        every_drop_point(
            what,
            || async { svc.deployment().validate(&tok).await },
            async |_| {
                assert!(
                    svc.deployment().validate(&tok).await.unwrap().is_ok(),
                    "{what}"
                );
            },
        )
        .await;

        // Application validation (records the client address).
        let app = svc
            .application()
            .create(
                ApplicationName::parse(format!("cancelled-{i}")).unwrap(),
                Description::default(),
                AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                &root(),
            )
            .await
            .unwrap();
        let app_tok = app.secret.expose_secret().to_owned();
        every_drop_point(
            what,
            || async { svc.application().validate(&app_tok, ip()).await },
            async |_| {
                let ok = svc.application().validate(&app_tok, ip()).await.unwrap();
                assert!(ok.is_ok(), "{what}");
                let ips = svc.application().ips(app.token.id).await.unwrap();
                assert_eq!(ips.len(), 1, "{what}: one entry per address");
            },
        )
        .await;

        // Redemption: uses and enrolled devices always agree.
        let onb = svc
            .onboarding()
            .create(
                NewOnboarding::new("p", "g")
                    .unwrap()
                    .limit(UsageLimit::uses(100_000).unwrap()),
                &root(),
            )
            .await
            .unwrap();
        let onb_tok = onb.secret.expose_secret().to_owned();
        let mut n = 0u32;
        every_drop_point(
            what,
            || {
                n += 1;
                let device = DeviceId::parse(format!("d{n}")).unwrap();
                let svc = svc.clone();
                let onb_tok = onb_tok.clone();
                async move { svc.onboarding().redeem(&onb_tok, &device).await }
            },
            async |_| {
                // A redemption dropped after PostgreSQL received it may still commit: read until
                // two reads of the use count around the enrollments agree.
                for _ in 0..1000 {
                    let before = svc.store().get(onb.token.id).await.unwrap().unwrap().uses;
                    let enrolled = svc.store().enrollments(onb.token.id).await.unwrap().len();
                    let after = svc.store().get(onb.token.id).await.unwrap().unwrap().uses;
                    if before == after {
                        assert_eq!(after, enrolled as u64, "{what}: uses = enrolled devices");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                panic!("{what}: the use count never settled");
            },
        )
        .await;

        // Issue: a token is stored whole or not at all.
        every_drop_point(
            what,
            || async {
                svc.deployment()
                    .generate(NewDeployment::named("issued").unwrap(), &root())
                    .await
            },
            async |polls| {
                // Each record listed can be read on its own (whatever connection answers).
                // The ledger writes last uses behind the requests, possibly between the two
                // reads: compare everything else.
                for mut r in svc.store().list(&TokenFilter::default()).await.unwrap() {
                    let mut got = svc.store().get(r.id).await.unwrap();
                    if let Some(g) = got.as_mut() {
                        g.last_used_at = None;
                    }
                    r.last_used_at = None;
                    assert_eq!(got.as_ref(), Some(&r), "{what}: after {polls} polls");
                }
            },
        )
        .await;

        // Revocation: revoked or not, and the cache agrees with the store.
        let victim = svc
            .deployment()
            .generate(NewDeployment::named("victim").unwrap(), &root())
            .await
            .unwrap();
        let victim_tok = victim.secret.expose_secret().to_owned();
        assert!(
            svc.deployment()
                .validate(&victim_tok)
                .await
                .unwrap()
                .is_ok()
        );
        every_drop_point(
            what,
            || async { svc.revoke(victim.token.id, &root()).await },
            async |_| {
                let ((stored, _), answer) = settled!(
                    &svc,
                    victim.token.id,
                    svc.deployment().validate(&victim_tok).await.unwrap()
                );
                match stored {
                    State::Active => assert!(answer.is_ok(), "{what}"),
                    State::Revoked => assert_eq!(answer, Err(Rejection::Revoked), "{what}"),
                    other => panic!("{what}: {other:?}"),
                }
            },
        )
        .await;

        // Rotation: both halves or neither.
        let rotating = svc
            .deployment()
            .generate(NewDeployment::named("rotating").unwrap(), &root())
            .await
            .unwrap();
        let rot_tok = rotating.secret.expose_secret().to_owned();
        assert!(svc.deployment().validate(&rot_tok).await.unwrap().is_ok());
        every_drop_point(
            what,
            || async { svc.rotate(rotating.token.id, None, &root()).await },
            async |_| {
                let ((old_state, successor), answer) = settled!(
                    &svc,
                    rotating.token.id,
                    svc.deployment().validate(&rot_tok).await.unwrap()
                );
                match successor {
                    None => {
                        assert_eq!(old_state, State::Active, "{what}");
                        assert!(answer.is_ok(), "{what}");
                    }
                    Some(new) => {
                        assert!(svc.store().get(new).await.unwrap().is_some(), "{what}");
                        assert!(answer.is_err(), "{what}: the rotated-out token is refused");
                    }
                }
            },
        )
        .await;

        // Deactivation of an application.
        every_drop_point(
            what,
            || async { svc.application().deactivate(app.token.id, &root()).await },
            async |_| {
                let ((stored, _), answer) = settled!(
                    &svc,
                    app.token.id,
                    svc.application().validate(&app_tok, ip()).await.unwrap()
                );
                match stored {
                    State::Active => assert!(answer.is_ok(), "{what}"),
                    State::Disabled => assert_eq!(answer, Err(Rejection::Disabled), "{what}"),
                    other => panic!("{what}: {other:?}"),
                }
            },
        )
        .await;

        usable(what, &svc).await;
        println!("{what}: every drop point left the store consistent and usable");
    }
}

// ---- every Store method ----

/// A new deployment record like `template`, with its own id and digest.
fn fresh(template: &TokenRecord) -> TokenRecord {
    let id = TokenId::generate().unwrap();
    let mut r = template.clone();
    r.id = id;
    r.digest = Digest::from_parts(
        KeyId(1),
        *blake3::hash(&id.as_u128().to_le_bytes()).as_bytes(),
    );
    r.state = State::Active;
    r.successor = None;
    r.sealed = None;
    r
}

fn issued(r: &TokenRecord) -> AuditEvent {
    AuditEvent::new(
        OffsetDateTime::now_utc(),
        Actor::System,
        AuditAction::Issued,
    )
    .token(r.id, r.kind(), &r.hint)
}

fn revoked(r: &TokenRecord) -> AuditEvent {
    let action = AuditAction::StateChanged {
        from: State::Active,
        to: State::Revoked,
    };
    AuditEvent::new(OffsetDateTime::now_utc(), Actor::System, action).token(r.id, r.kind(), &r.hint)
}

/// `read` once it gives the same answer twice in a row (a write dropped after PostgreSQL
/// received it may still commit meanwhile).
async fn settled<T: PartialEq + std::fmt::Debug>(read: impl AsyncFn() -> T) -> T {
    let mut last = read().await;
    for _ in 0..1000 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = read().await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("never settled: {last:?}");
}

async fn event_count(store: &dyn Store, id: TokenId) -> usize {
    store
        .events(&AuditFilter::default().token(id))
        .await
        .unwrap()
        .len()
}

/// A record inserted with its issue event, ready for the next attempt.
async fn inserted(store: &dyn Store, template: &TokenRecord) -> TokenRecord {
    let r = fresh(template);
    store.insert(&r, &[issued(&r)]).await.unwrap();
    r
}

/// Reads and writes still work: a record and its event stored, read back and purged.
async fn store_usable(what: &str, store: &dyn Store, template: &TokenRecord) {
    let r = fresh(template);
    store
        .insert(&r, &[issued(&r)])
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot write after a cancellation: {e}"));
    assert_eq!(store.get(r.id).await.unwrap().as_ref(), Some(&r), "{what}");
    assert_eq!(
        store.find_by_digest(&r.digest).await.unwrap().as_ref(),
        Some(&r),
        "{what}"
    );
    assert_eq!(event_count(store, r.id).await, 1, "{what}");
    assert_eq!(store.purge(&[r.id], &[]).await.unwrap(), 1, "{what}");
}

/// Every `Store` method (every backend, and the validation cache in front of each), dropped
/// after 0, 1, 2, … polls: each change is whole or absent, with its audit events, and the store
/// stays consistent and usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_methods_dropped_at_every_await_point() {
    for (what, svc) in services("store").await {
        let what = what.as_str();
        let store: &dyn Store = &**svc.store();
        let dep = svc
            .deployment()
            .generate(NewDeployment::named("template").unwrap(), &root())
            .await
            .unwrap();
        let template = store.get(dep.token.id).await.unwrap().unwrap();
        let now = OffsetDateTime::now_utc();

        // insert: the record and its event together, or neither.
        let next = RefCell::new(fresh(&template));
        every_drop_point(
            what,
            || {
                let r = next.borrow().clone();
                async move { store.insert(&r, &[issued(&r)]).await }
            },
            async |_| {
                let r = next.borrow().clone();
                let (kept, events) = settled(async || {
                    (
                        store.get(r.id).await.unwrap().is_some(),
                        event_count(store, r.id).await,
                    )
                })
                .await;
                assert_eq!(events, usize::from(kept), "{what}: insert");
                *next.borrow_mut() = fresh(&template);
            },
        )
        .await;

        // insert_many: all three with their events, or none.
        let batch = RefCell::new(vec![]);
        let new_batch = || (0..3).map(|_| fresh(&template)).collect::<Vec<_>>();
        *batch.borrow_mut() = new_batch();
        every_drop_point(
            what,
            || {
                let rs = batch.borrow().clone();
                async move {
                    let events: Vec<_> = rs.iter().map(issued).collect();
                    store.insert_many(&rs, &events).await
                }
            },
            async |_| {
                let rs = batch.borrow().clone();
                let (kept, events) = settled(async || {
                    let mut kept = 0;
                    let mut events = 0;
                    for r in &rs {
                        kept += usize::from(store.get(r.id).await.unwrap().is_some());
                        events += event_count(store, r.id).await;
                    }
                    (kept, events)
                })
                .await;
                assert!(
                    kept == 0 || kept == 3,
                    "{what}: insert_many kept {kept} of 3"
                );
                assert_eq!(events, kept, "{what}: insert_many events");
                *batch.borrow_mut() = new_batch();
            },
        )
        .await;

        // change_state: revoked with its event, or active without.
        let cur = RefCell::new(inserted(store, &template).await);
        every_drop_point(
            what,
            || {
                let r = cur.borrow().clone();
                async move {
                    let change = StateChange::new(State::Active, State::Revoked, now);
                    store.change_state(r.id, &change, &[revoked(&r)]).await
                }
            },
            async |_| {
                let r = cur.borrow().clone();
                let (state, events) = settled(async || {
                    (
                        store.get(r.id).await.unwrap().unwrap().state,
                        event_count(store, r.id).await,
                    )
                })
                .await;
                match state {
                    State::Active => assert_eq!(events, 1, "{what}: change_state"),
                    State::Revoked => assert_eq!(events, 2, "{what}: change_state"),
                    other => panic!("{what}: {other:?}"),
                }
                *cur.borrow_mut() = inserted(store, &template).await;
            },
        )
        .await;

        // replace: superseded and successor stored, or neither.
        let cur = RefCell::new((inserted(store, &template).await, fresh(&template)));
        every_drop_point(
            what,
            || {
                let (old, new) = cur.borrow().clone();
                async move {
                    let mut change = StateChange::new(State::Active, State::Superseded, now);
                    change.successor = Some(new.id);
                    store.replace(old.id, &change, &new, &[issued(&new)]).await
                }
            },
            async |_| {
                let (old, new) = cur.borrow().clone();
                let (state, kept, events) = settled(async || {
                    (
                        store.get(old.id).await.unwrap().unwrap().state,
                        store.get(new.id).await.unwrap().is_some(),
                        event_count(store, new.id).await,
                    )
                })
                .await;
                match state {
                    State::Active => assert_eq!((kept, events), (false, 0), "{what}: replace"),
                    State::Superseded => {
                        assert_eq!((kept, events), (true, 1), "{what}: replace");
                    }
                    other => panic!("{what}: {other:?}"),
                }
                *cur.borrow_mut() = (inserted(store, &template).await, fresh(&template));
            },
        )
        .await;

        // update_data, set_digest, set_sealed, touch: the record reads back whole either way.
        let r = inserted(store, &template).await;
        every_drop_point(
            what,
            || store.update_data(r.id, &r.data, &[]),
            async |_| assert!(store.get(r.id).await.unwrap().is_some(), "{what}"),
        )
        .await;
        let digests = RefCell::new(fresh(&template).digest);
        every_drop_point(
            what,
            || {
                let d = *digests.borrow();
                let r = &r;
                async move { store.set_digest(r.id, &d, &r.hint, &[]).await }
            },
            async |_| {
                let d = *digests.borrow();
                let now = settled(async || store.get(r.id).await.unwrap().unwrap().digest).await;
                // Found under the digest it has, whichever attempt set it.
                assert_eq!(
                    store.find_by_digest(&now).await.unwrap().map(|f| f.id),
                    Some(r.id),
                    "{what}: set_digest"
                );
                if now == d {
                    *digests.borrow_mut() = fresh(&template).digest;
                }
            },
        )
        .await;
        every_drop_point(
            what,
            || store.set_sealed(r.id, None, &[]),
            async |_| assert!(store.get(r.id).await.unwrap().is_some(), "{what}"),
        )
        .await;
        every_drop_point(
            what,
            || store.touch(r.id, now, time::Duration::ZERO),
            async |_| assert!(store.get(r.id).await.unwrap().is_some(), "{what}"),
        )
        .await;

        // record_usage, set_blocked: one entry per address, blocked as stored.
        every_drop_point(
            what,
            || async { store.record_usage(r.id, &UsageSubject::Ip(ip()), now).await },
            async |_| {
                let entries = settled(async || store.usage(r.id).await.unwrap().len()).await;
                assert!(entries <= 1, "{what}: record_usage");
            },
        )
        .await;
        every_drop_point(
            what,
            || store.set_blocked(r.id, ip(), true, &[]),
            async |_| {
                let blocked = settled(async || store.is_blocked(r.id, ip()).await.unwrap()).await;
                let entries = store.usage(r.id).await.unwrap();
                assert!(entries.len() <= 1, "{what}: set_blocked");
                assert_eq!(
                    entries.first().is_some_and(|e| e.blocked),
                    blocked,
                    "{what}: set_blocked"
                );
            },
        )
        .await;

        // record_batch: counts, last use and events of a batch all written, or none; the same
        // batch retried after the drop is written exactly once.
        let batch_ids = Cell::new(TokenId::generate().unwrap().as_u128());
        let used_at = now + time::Duration::minutes(5);
        let next_batch = async || {
            batch_ids.set(batch_ids.get().wrapping_add(1));
            let r = inserted(store, &template).await;
            let mut batch = UsageBatch::new(BatchId(batch_ids.get()));
            batch.usage.push(UsageDelta {
                token: r.id,
                subject: UsageSubject::Ip(ip()),
                first_seen: now,
                last_seen: used_at,
                count: 3,
            });
            batch.last_used.push((r.id, used_at));
            batch.events.push(revoked(&r));
            (r, batch)
        };
        let cur = RefCell::new(next_batch().await);
        every_drop_point(
            what,
            || {
                let (_, batch) = cur.borrow().clone();
                async move { store.record_batch(&batch).await }
            },
            async |_| {
                let (r, batch) = cur.borrow().clone();
                let written = async || {
                    let usage = store.usage(r.id).await.unwrap();
                    (
                        usage.iter().map(|u| u.count).sum::<u64>(),
                        store.get(r.id).await.unwrap().unwrap().last_used_at,
                        event_count(store, r.id).await,
                    )
                };
                let state = settled(written).await;
                let applied = state.0 != 0;
                if applied {
                    assert_eq!(state, (3, Some(used_at), 2), "{what}: record_batch whole");
                } else {
                    assert_eq!(state, (0, r.last_used_at, 1), "{what}: record_batch absent");
                }
                // Retried: written now if it was not, refused (and nothing added) if it was.
                assert_eq!(
                    store.record_batch(&batch).await.unwrap(),
                    !applied,
                    "{what}: record_batch retried"
                );
                assert_eq!(
                    written().await,
                    (3, Some(used_at), 2),
                    "{what}: record_batch counted once"
                );
                *cur.borrow_mut() = next_batch().await;
            },
        )
        .await;

        // redeem: uses and enrolled devices agree.
        let onb = svc
            .onboarding()
            .create(
                NewOnboarding::new("p", "g")
                    .unwrap()
                    .limit(UsageLimit::uses(100_000).unwrap()),
                &root(),
            )
            .await
            .unwrap();
        let onb_record = store.get(onb.token.id).await.unwrap().unwrap();
        let n = Cell::new(0u32);
        every_drop_point(
            what,
            || {
                n.set(n.get() + 1);
                let device = DeviceId::parse(format!("s{}", n.get())).unwrap();
                let digest = onb_record.digest;
                let events = RedeemEvents::NONE.redeemed(
                    AuditEvent::new(now, Actor::Client, AuditAction::Used).device(&device),
                );
                async move { store.redeem(&digest, &device, now, &events).await }
            },
            async |_| {
                let (uses, enrolled, events) = settled(async || {
                    (
                        store.get(onb_record.id).await.unwrap().unwrap().uses,
                        store.enrollments(onb_record.id).await.unwrap().len(),
                        event_count(store, onb_record.id).await,
                    )
                })
                .await;
                assert_eq!(uses, enrolled as u64, "{what}: redeem");
                // Each use with its event (besides the issue event): stored together.
                assert_eq!(uses + 1, events as u64, "{what}: redeem events");
            },
        )
        .await;

        // Mappings: put, enable, remove — each there or not, never a torn row.
        let secondary = svc
            .endpoint()
            .create_secondary(
                TokenName::parse("cancel").unwrap(),
                Description::default(),
                &root(),
            )
            .await
            .unwrap();
        let endpoint = EndpointId::parse(format!("/cancel/{}", secondary.token.id)).unwrap();
        let mapping = Mapping {
            secondary: secondary.token.id,
            endpoint: endpoint.clone(),
            method: Method::Get,
            enabled: true,
        };
        let mapped = async || {
            store
                .mapping(secondary.token.id, &endpoint, Method::Get)
                .await
                .unwrap()
        };
        every_drop_point(
            what,
            || store.put_mapping(&mapping, &[]),
            async |_| {
                let got = settled(mapped).await;
                assert!(got.is_none() || got == Some(mapping.clone()), "{what}");
                let all = store
                    .mappings(Some(secondary.token.id), None)
                    .await
                    .unwrap();
                assert_eq!(all.len(), usize::from(got.is_some()), "{what}");
            },
        )
        .await;
        every_drop_point(
            what,
            || store.set_mapping_enabled(secondary.token.id, &endpoint, Method::Get, false, &[]),
            async |_| assert!(settled(mapped).await.is_some(), "{what}"),
        )
        .await;
        every_drop_point(
            what,
            || store.remove_mapping(secondary.token.id, &endpoint, Method::Get, &[]),
            async |_| {
                let got = settled(mapped).await;
                let all = store.mappings(None, Some(&endpoint)).await.unwrap();
                assert_eq!(all.len(), usize::from(got.is_some()), "{what}");
            },
        )
        .await;

        // append: an event is stored whole or not at all.
        let appended = inserted(store, &template).await;
        every_drop_point(
            what,
            || {
                let e = revoked(&appended);
                async move { store.append(&e).await }
            },
            async |_| {
                for e in store
                    .events(&AuditFilter::default().token(appended.id))
                    .await
                    .unwrap()
                {
                    assert_eq!(e.subject.token, Some(appended.id), "{what}");
                }
            },
        )
        .await;

        // purge: gone with everything of it, or there.
        let cur = RefCell::new(inserted(store, &template).await);
        every_drop_point(
            what,
            || {
                let r = cur.borrow().clone();
                async move { store.purge(&[r.id], &[revoked(&r)]).await }
            },
            async |_| {
                let r = cur.borrow().clone();
                let (kept, events) = settled(async || {
                    (
                        store.get(r.id).await.unwrap().is_some(),
                        event_count(store, r.id).await,
                    )
                })
                .await;
                // The purge's own event stays with the purge (the issue event may go or stay
                // with the record, as the backend keeps history).
                if kept {
                    assert!(events >= 1, "{what}: purge");
                }
                *cur.borrow_mut() = inserted(store, &template).await;
            },
        )
        .await;

        // Reads, and the watch: dropping them leaves nothing behind.
        let id = template.id;
        let digest = template.digest;
        every_drop_point(what, || store.get(id), async |_| {}).await;
        every_drop_point(what, || store.find_by_digest(&digest), async |_| {}).await;
        // find_shared: the record with its blocked address (blocked above), read whole.
        let blocked_digest = store.get(r.id).await.unwrap().unwrap().digest;
        every_drop_point(
            what,
            || store.find_shared(&blocked_digest),
            async |_| {
                let shared = store.find_shared(&blocked_digest).await.unwrap().unwrap();
                assert_eq!(shared.record().id, r.id, "{what}: find_shared");
                assert_eq!(shared.blocked(), [ip()], "{what}: find_shared blocked");
            },
        )
        .await;
        let filter = TokenFilter::default();
        every_drop_point(what, || store.list(&filter), async |_| {}).await;
        every_drop_point(what, || store.enrollments(id), async |_| {}).await;
        every_drop_point(what, || store.is_blocked(id, ip()), async |_| {}).await;
        every_drop_point(what, || store.usage(id), async |_| {}).await;
        every_drop_point(what, || store.endpoint_usage(&endpoint), async |_| {}).await;
        every_drop_point(
            what,
            || store.mapping(id, &endpoint, Method::Get),
            async |_| {},
        )
        .await;
        every_drop_point(what, || store.mappings(None, None), async |_| {}).await;
        let audit = AuditFilter::default();
        every_drop_point(what, || store.events(&audit), async |_| {}).await;

        store_usable(what, store, &template).await;
        usable(what, &svc).await;
        println!("{what}: every Store method dropped at every point left it consistent and usable");
    }
}
