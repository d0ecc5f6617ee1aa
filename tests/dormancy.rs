//! Application-token inactivity holds at the moment of use, whether or not a sweep ran: a token
//! unused past the dormancy threshold is refused as `Dormant`, one unused past the deletion
//! threshold as `Deleted`, and a refused use writes nothing that would revive it. On every
//! backend (memory, SQLite, PostgreSQL), with the validation cache off and on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::{T0, admin, peppers, postgres_url};
use tessera::core::audit::{Actor, AuditAction};
use tessera::core::clock::ManualClock;
use tessera::core::id::{AccessType, ApplicationName, Description, TokenId, UserId};
use tessera::core::kind::application::{AccessTypes, InactivityPolicy};
use tessera::core::lifecycle::State;
use tessera::memory::MemoryStore;
use tessera::sql::postgres::PostgresConfig;
use tessera::sql::{PostgresStore, SqliteStore};
use tessera::store::{AuditFilter, Store, TokenFilter};
use tessera::{LedgerSettings, Rejection, TokenService, ValidationCache};
use time::Duration;

fn ip() -> IpAddr {
    "192.0.2.44".parse().unwrap()
}

fn day(n: i64) -> time::OffsetDateTime {
    T0 + Duration::days(n)
}

/// A service over `store` on `clock`; with a cache that keeps records far longer than any
/// threshold, so a cached record is what validation decides on.
fn service(store: Arc<dyn Store>, clock: &Arc<ManualClock>, cached: bool) -> TokenService {
    // One audit row per use (this test counts them), written by a flush after each validation.
    let b = TokenService::builder_shared(store, peppers())
        .clock(clock.clone())
        .ledger(LedgerSettings::new().audit_each_use(true));
    if cached {
        b.validation_cache(ValidationCache::new(Duration::days(400)))
            .build()
    } else {
        b.build()
    }
}

async fn create(svc: &TokenService, name: &str) -> tessera::Issued {
    svc.application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("security-director").unwrap()]).unwrap(),
            &admin(),
        )
        .await
        .unwrap()
}

/// Validate, then write the usage ledger (last use, audit row), so the store shows the use.
async fn validate(svc: &TokenService, secret: &str) -> Result<(), Rejection> {
    let out = svc
        .application()
        .validate(secret, ip())
        .await
        .unwrap()
        .map(drop);
    svc.flush().await.unwrap();
    out
}

async fn state_changes(store: &dyn Store, id: TokenId) -> Vec<(State, State, Actor)> {
    store
        .events(&AuditFilter::default().token(id))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.action {
            AuditAction::StateChanged { from, to } => Some((from, to, e.actor)),
            _ => None,
        })
        .collect()
}

async fn uses(store: &dyn Store, id: TokenId) -> usize {
    store
        .events(&AuditFilter::default().token(id))
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == AuditAction::Used)
        .count()
}

/// The seed's rules with the default thresholds (30 and 90 days), no sweep until the end.
async fn idle_tokens_are_refused_at_use(store: Arc<dyn Store>, cached: bool) {
    let clock = Arc::new(ManualClock::new(T0));
    let svc = service(store.clone(), &clock, cached);
    let used = create(&svc, "used").await;
    let never = create(&svc, "never-used").await;
    let (tok, id) = (used.secret.expose_secret(), used.token.id);

    // Used on day 29: awake for 30 more days.
    clock.set(day(29));
    assert_eq!(validate(&svc, tok).await, Ok(()));
    assert_eq!(uses(&*store, id).await, 1);
    clock.set(day(29) + Duration::days(30) - Duration::seconds(1));
    assert_eq!(validate(&svc, tok).await, Ok(()), "29 days 23:59:59 idle");
    let last_use = clock_now(&clock);

    // Never used: dormant 30 days after its creation, with no sweep.
    clock.set(day(30));
    assert_eq!(
        validate(&svc, never.secret.expose_secret()).await,
        Err(Rejection::Dormant)
    );
    assert_eq!(
        svc.token(never.token.id).await.unwrap().state,
        State::Dormant
    );
    // A state filter finds what the listing shows, not what is stored.
    let listed = |states: &[State]| {
        let filter = TokenFilter::default().states(states.iter().copied());
        let svc = &svc;
        async move {
            let mut ids: Vec<TokenId> = svc
                .list(&filter)
                .await
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect();
            ids.sort_unstable();
            ids
        }
    };
    assert_eq!(listed(&[State::Dormant]).await, vec![never.token.id]);
    assert_eq!(listed(&[State::Active]).await, vec![id]);

    // 30 days after its last use: dormant, and every refused use leaves the idle clock alone.
    clock.set(last_use + Duration::days(30));
    for _ in 0..3 {
        assert_eq!(validate(&svc, tok).await, Err(Rejection::Dormant));
        clock.advance(Duration::hours(1));
    }
    let stored = store.get(id).await.unwrap().unwrap();
    assert_eq!(stored.state, State::Active, "no sweep ran: nothing written");
    assert_eq!(
        stored.last_used_at,
        Some(last_use),
        "a refused use revives nothing"
    );
    assert_eq!(uses(&*store, id).await, 2, "a refused use is no use");
    assert_eq!(svc.token(id).await.unwrap().state, State::Dormant);
    assert!(
        svc.application()
            .list()
            .await
            .unwrap()
            .iter()
            .any(|l| l.token.id == id && l.token.state == State::Dormant)
    );

    // An administrator re-activates it: usable again, and its idle clock starts then. The
    // dormancy the sweep would have recorded is audited with the reactivation.
    let back = svc.application().activate(id, &admin()).await.unwrap();
    assert_eq!(back.state, State::Active);
    let reactivated = clock_now(&clock);
    assert_eq!(validate(&svc, tok).await, Ok(()));
    let changes = state_changes(&*store, id).await;
    assert_eq!(
        changes[changes.len() - 2..],
        [
            (State::Active, State::Dormant, Actor::System),
            (
                State::Dormant,
                State::Active,
                Actor::User(UserId::parse("root").unwrap())
            ),
        ]
    );
    // An active token cannot be activated again.
    assert!(svc.application().activate(id, &admin()).await.is_err());

    // Unused 90 days after that use: deleted for good, whether or not a sweep ran.
    clock.set(reactivated + Duration::days(90) - Duration::seconds(1));
    assert_eq!(validate(&svc, tok).await, Err(Rejection::Dormant));
    clock.set(reactivated + Duration::days(90));
    assert_eq!(validate(&svc, tok).await, Err(Rejection::Deleted));
    assert_eq!(validate(&svc, tok).await, Err(Rejection::Deleted));
    assert_eq!(svc.token(id).await.unwrap().state, State::Deleted);
    assert!(
        svc.application().activate(id, &admin()).await.is_err(),
        "a deleted token cannot be activated"
    );
    assert!(
        !svc.application()
            .list()
            .await
            .unwrap()
            .iter()
            .any(|l| l.token.id == id),
        "deleted tokens are not listed"
    );
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        State::Active,
        "still nothing written before the sweep"
    );

    // The sweep still records the transitions and deletes.
    let report = svc.sweep(false).await.unwrap();
    assert!(report.deleted.contains(&id), "{report:?}");
    assert!(report.deleted.contains(&never.token.id), "{report:?}");
    assert_eq!(store.get(id).await.unwrap().unwrap().state, State::Deleted);
    assert_eq!(validate(&svc, tok).await, Err(Rejection::Deleted));
}

fn clock_now(clock: &ManualClock) -> time::OffsetDateTime {
    use tessera::core::clock::Clock;
    clock.now()
}

/// A sweep that marked a token dormant, and thresholds set on the service.
async fn thresholds_are_service_settings(store: Arc<dyn Store>, cached: bool) {
    let clock = Arc::new(ManualClock::new(T0));
    let policy = InactivityPolicy::new(Duration::days(2), Duration::days(5)).unwrap();
    let b = TokenService::builder_shared(store.clone(), peppers())
        .clock(clock.clone())
        .inactivity(policy);
    let svc = if cached {
        b.validation_cache(ValidationCache::new(Duration::days(400)))
            .build()
    } else {
        b.build()
    };
    let t = create(&svc, "short").await;
    let tok = t.secret.expose_secret();
    assert_eq!(validate(&svc, tok).await, Ok(()));
    clock.set(T0 + Duration::days(2));
    assert_eq!(validate(&svc, tok).await, Err(Rejection::Dormant));
    let report = svc.sweep(false).await.unwrap();
    assert_eq!(report.dormant, vec![t.token.id]);
    assert_eq!(validate(&svc, tok).await, Err(Rejection::Dormant));
    // Reactivated on day 4: the clock restarts, so day 5 (five days after the last use) is
    // not a deletion.
    clock.set(T0 + Duration::days(4));
    svc.application()
        .activate(t.token.id, &admin())
        .await
        .unwrap();
    clock.set(T0 + Duration::days(5));
    assert_eq!(validate(&svc, tok).await, Ok(()));
    clock.set(T0 + Duration::days(10));
    assert_eq!(validate(&svc, tok).await, Err(Rejection::Deleted));
}

/// A cached record lags behind another instance's use: the store decides before refusing.
async fn a_use_elsewhere_keeps_a_cached_token_awake(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let clock = Arc::new(ManualClock::new(T0));
    let cached = service(a, &clock, true);
    let other = service(b, &clock, false);
    let t = create(&cached, "shared").await;
    let tok = t.secret.expose_secret();
    assert_eq!(validate(&cached, tok).await, Ok(()), "cached now");
    clock.set(day(20));
    assert_eq!(validate(&other, tok).await, Ok(()), "used elsewhere");
    clock.set(day(35));
    assert_eq!(validate(&cached, tok).await, Ok(()), "15 days idle, not 35");
    clock.set(day(35) + Duration::days(30));
    assert_eq!(validate(&cached, tok).await, Err(Rejection::Dormant));
    assert_eq!(validate(&other, tok).await, Err(Rejection::Dormant));
}

async fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    s.migrate().await.unwrap();
    Arc::new(s)
}

async fn postgres(url: &str, schema: &str) -> Arc<dyn Store> {
    let cfg = PostgresConfig::new(url.to_owned()).schema(schema).unwrap();
    let s = PostgresStore::connect_with(cfg).await.unwrap();
    s.migrate().await.unwrap();
    Arc::new(s)
}

fn schema(what: &str) -> String {
    format!("tessera_dormancy_{what}_{}", std::process::id())
}

#[tokio::test]
async fn memory_idle_tokens_are_refused_at_use() {
    idle_tokens_are_refused_at_use(memory().await, false).await;
    idle_tokens_are_refused_at_use(memory().await, true).await;
    thresholds_are_service_settings(memory().await, false).await;
    thresholds_are_service_settings(memory().await, true).await;
    let shared = memory().await;
    a_use_elsewhere_keeps_a_cached_token_awake(shared.clone(), shared).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_idle_tokens_are_refused_at_use() {
    for cached in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        idle_tokens_are_refused_at_use(sqlite(&dir).await, cached).await;
        let dir = tempfile::tempdir().unwrap();
        thresholds_are_service_settings(sqlite(&dir).await, cached).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (sqlite(&dir).await, sqlite(&dir).await);
    a_use_elsewhere_keeps_a_cached_token_awake(a, b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_idle_tokens_are_refused_at_use() {
    let Some(url) = postgres_url() else { return };
    for cached in [false, true] {
        let s = schema(if cached { "rules_c" } else { "rules" });
        idle_tokens_are_refused_at_use(postgres(&url, &s).await, cached).await;
        let s = schema(if cached { "set_c" } else { "set" });
        thresholds_are_service_settings(postgres(&url, &s).await, cached).await;
    }
    let s = schema("elsewhere");
    let (a, b) = (postgres(&url, &s).await, postgres(&url, &s).await);
    a_use_elsewhere_keeps_a_cached_token_awake(a, b).await;
}
