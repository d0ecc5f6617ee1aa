//! Every public async method of `TokenService` and of its kind handles is safe to drop at any
//! await point: each is dropped after 0, 1, 2, … polls (until it completes on its own) on every
//! backend — memory, SQLite file, SQLite in memory, PostgreSQL — with and without the
//! validation cache, and after each drop the store is checked:
//!
//! - consistent: every token created since the case began has exactly one `Issued` event (a
//!   record is never stored without its event, nor its event without it), its stored state is
//!   the one its last `StateChanged` event names (a change and its event together), and an
//!   onboarding token's use count equals its enrolled devices and its `Used` events (N-use
//!   counts exact, each redemption stored with its event);
//! - usable: a write succeeds promptly (no lock held, no connection left in a transaction), and
//!   at the end a token can be issued, validated and revoked.
//!
//! The cases are keyed by `file::method`, and the list of methods is read from the source: a
//! new `pub async fn` without a case fails the test. `TESSERA_CANCEL_TIMES=1` prints how long
//! each case took.
//!
//! Memory and SQLite (rusqlite steps every statement on the calling thread) finish nearly every
//! operation in its first poll, so there the drops fall before the first poll; PostgreSQL
//! suspends at every round trip, and is dropped at each.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::postgres_url;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tessera::core::audit::AuditAction;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{
    AccessType, ApplicationName, Description, DeviceId, EndpointId, Permission, TokenId, TokenName,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::core::lifecycle::State;
use tessera::deployment::NewDeployment;
use tessera::endpoint::{SecondaryFilter, TrafficFilter};
use tessera::memory::MemoryStore;
use tessera::onboarding::NewOnboarding;
use tessera::sql::postgres::PostgresConfig;
use tessera::sql::{PostgresStore, SqliteStore};
use tessera::store::{AuditFilter, Store, TokenFilter};
use tessera::{Issued, Principal, Rejection, RequestContext, TokenService, ValidationCache};
use time::OffsetDateTime;

fn peppers() -> Peppers {
    Peppers::new(Pepper::new(KeyId(1), [6; 32]))
}

fn root() -> Principal {
    Principal::admin("root").unwrap()
}

fn ip() -> IpAddr {
    "192.0.2.30".parse().unwrap()
}

fn perm(s: &str) -> Permission {
    Permission::parse(s).unwrap()
}

fn held() -> BTreeSet<Permission> {
    [perm("tickets.read"), perm("tickets.write")]
        .into_iter()
        .collect()
}

/// Every `pub async fn` of the facade, as `file::method`, read from its source.
fn methods() -> Vec<String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some(rest) = line.trim_start().strip_prefix("pub async fn ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(format!("{stem}::{name}"));
            }
        }
    }
    assert!(
        out.len() > 40,
        "the facade's methods were not found: {out:?}"
    );
    out
}

/// Poll `fut` at most `polls` times, letting the runtime run between polls (so I/O moves on
/// and each poll can stop at another await point), then drop it. Whether it finished.
async fn drop_after<F: Future>(fut: F, polls: usize) -> bool {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        let step = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if step.is_ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    false
}

/// After a drop at `polls` polls, the next drop point: every one of the first 64 (every await
/// point of all but the longest operations), then points spaced a sixteenth apart, so a listing
/// that awaits once per row (hundreds of rows by then) is dropped along its length without
/// costing the square of it.
const fn next_polls(polls: usize) -> usize {
    if polls < 64 {
        polls + 1
    } else {
        polls + polls / 16
    }
}

/// One backend, with or without the cache.
struct Ctx {
    what: String,
    svc: TokenService,
    /// A PostgreSQL store: a dropped statement may still commit after the drop.
    remote: bool,
    n: Cell<u64>,
    /// A token every check touches (a write that must succeed promptly).
    probe: TokenId,
}

impl Ctx {
    fn next(&self) -> u64 {
        self.n.set(self.n.get() + 1);
        self.n.get()
    }

    async fn deployment(&self) -> Issued {
        let spec = NewDeployment::named(format!("dep-{}", self.next())).unwrap();
        self.svc.deployment().generate(spec, &root()).await.unwrap()
    }

    async fn sealed_deployment(&self) -> Issued {
        // Deployment tokens are kept sealed (their installer command is shown again).
        self.deployment().await
    }

    async fn onboarding(&self, uses: u64) -> Issued {
        let spec = NewOnboarding::new("policy", "group")
            .unwrap()
            .limit(UsageLimit::uses(uses).unwrap())
            .keep_sealed(true);
        self.svc.onboarding().create(spec, &root()).await.unwrap()
    }

    async fn application(&self) -> Issued {
        self.svc
            .application()
            .create(
                ApplicationName::parse(format!("app-{}", self.next())).unwrap(),
                Description::default(),
                AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
                &root(),
            )
            .await
            .unwrap()
    }

    fn auth_spec(&self) -> tessera::auth::NewAuth {
        tessera::auth::NewAuth::new(
            "tech",
            &format!("auth-{}", self.next()),
            ["tickets.read"],
            "30d",
        )
        .unwrap()
    }

    async fn auth(&self) -> Issued {
        self.svc
            .auth()
            .generate(self.auth_spec(), &held(), &root())
            .await
            .unwrap()
    }

    fn endpoint_id(&self) -> EndpointId {
        EndpointId::parse(format!("/cancel/{}", self.next())).unwrap()
    }

    /// An endpoint with token authentication on (GET, POST, DELETE primaries).
    async fn endpoint(&self) -> (EndpointId, Vec<(Method, Issued)>) {
        let e = self.endpoint_id();
        let primaries = self.svc.endpoint().enable(&e, true, &root()).await.unwrap();
        (e, primaries)
    }

    async fn secondary(&self) -> Issued {
        self.svc
            .endpoint()
            .create_secondary(
                TokenName::parse(format!("sec-{}", self.next())).unwrap(),
                Description::default(),
                &root(),
            )
            .await
            .unwrap()
    }

    /// A secondary mapped to a fresh endpoint's GET primary.
    async fn mapped(&self) -> (EndpointId, Issued) {
        let (e, _) = self.endpoint().await;
        let s = self.secondary().await;
        self.svc
            .endpoint()
            .map(s.token.id, &e, Method::Get, &root())
            .await
            .unwrap();
        (e, s)
    }
}

/// Set up what `case` needs, then drop it after `polls` polls. Whether it completed.
#[allow(clippy::too_many_lines)] // one arm per method
async fn attempt(c: &Ctx, case: &str, polls: usize) -> bool {
    let svc = &c.svc;
    let by = root();
    let by = &by;
    match case {
        // ---- application ----
        "application::create" => {
            let name = ApplicationName::parse(format!("app-{}", c.next())).unwrap();
            let access = AccessTypes::new([AccessType::parse("feeds").unwrap()]).unwrap();
            drop_after(
                svc.application()
                    .create(name, Description::default(), access, by),
                polls,
            )
            .await
        }
        "application::list" => drop_after(svc.application().list(), polls).await,
        "application::deactivate" => {
            let a = c.application().await;
            drop_after(svc.application().deactivate(a.token.id, by), polls).await
        }
        "application::activate" => {
            let a = c.application().await;
            svc.application().deactivate(a.token.id, by).await.unwrap();
            drop_after(svc.application().activate(a.token.id, by), polls).await
        }
        "application::validate_bearer" => {
            let a = c.application().await;
            let header = format!("Bearer {}", a.secret.expose_secret());
            drop_after(svc.application().validate_bearer(&header, ip()), polls).await
        }
        "application::validate" => {
            let a = c.application().await;
            let tok = a.secret.expose_secret();
            drop_after(svc.application().validate(tok, ip()), polls).await
        }
        "application::ips" => {
            let a = c.application().await;
            drop_after(svc.application().ips(a.token.id), polls).await
        }
        "application::block" => {
            let a = c.application().await;
            drop_after(svc.application().block(a.token.id, ip(), by), polls).await
        }
        "application::unblock" => {
            let a = c.application().await;
            svc.application().block(a.token.id, ip(), by).await.unwrap();
            drop_after(svc.application().unblock(a.token.id, ip(), by), polls).await
        }
        // ---- auth ----
        "auth::generate" => {
            let spec = c.auth_spec();
            let held = held();
            drop_after(svc.auth().generate(spec, &held, by), polls).await
        }
        "auth::list" => drop_after(svc.auth().list(None, by), polls).await,
        "auth::revoke" => {
            let a = c.auth().await;
            drop_after(svc.auth().revoke(a.token.id, by), polls).await
        }
        "auth::delete_many" => {
            let (a, b) = (c.auth().await, c.auth().await);
            let ids = [a.token.id, b.token.id];
            drop_after(svc.auth().delete_many(&ids, by), polls).await
        }
        "auth::check" => {
            let a = c.auth().await;
            let (action, held) = (perm("tickets.read"), held());
            let tok = a.secret.expose_secret();
            drop_after(svc.auth().check(tok, &action, &held), polls).await
        }
        "auth::owner_of" => {
            let a = c.auth().await;
            drop_after(svc.auth().owner_of(a.secret.expose_secret()), polls).await
        }
        // ---- deployment ----
        "deployment::generate" => {
            let spec = NewDeployment::named(format!("dep-{}", c.next())).unwrap();
            drop_after(svc.deployment().generate(spec, by), polls).await
        }
        "deployment::list" => drop_after(svc.deployment().list(), polls).await,
        "deployment::latest" => drop_after(svc.deployment().latest(), polls).await,
        "deployment::latest_secret" => {
            c.sealed_deployment().await;
            drop_after(svc.deployment().latest_secret(), polls).await
        }
        "deployment::command" => {
            c.sealed_deployment().await;
            drop_after(svc.deployment().command("install --token {token}"), polls).await
        }
        "deployment::expire" => {
            let d = c.deployment().await;
            drop_after(svc.deployment().expire(d.token.id, by), polls).await
        }
        "deployment::render_command" => {
            let d = c.deployment().await;
            drop_after(
                svc.deployment()
                    .render_command("install --token {token}", &d.secret),
                polls,
            )
            .await
        }
        "deployment::validate" => {
            let d = c.deployment().await;
            drop_after(svc.deployment().validate(d.secret.expose_secret()), polls).await
        }
        // ---- endpoint ----
        "endpoint::was_set_up" => {
            let (e, _) = c.endpoint().await;
            drop_after(svc.endpoint().was_set_up(&e), polls).await
        }
        "endpoint::enable" => {
            let e = c.endpoint_id();
            drop_after(svc.endpoint().enable(&e, true, by), polls).await
        }
        "endpoint::set_allow_delete" => {
            let e = c.endpoint_id();
            svc.endpoint().enable(&e, false, by).await.unwrap();
            drop_after(svc.endpoint().set_allow_delete(&e, true, by), polls).await
        }
        "endpoint::disable" => {
            let (e, _) = c.mapped().await;
            drop_after(svc.endpoint().disable(&e, by), polls).await
        }
        "endpoint::primaries" => {
            let (e, _) = c.endpoint().await;
            drop_after(svc.endpoint().primaries(&e), polls).await
        }
        "endpoint::regenerate_primary" => {
            let (e, _) = c.endpoint().await;
            let grace = Some(time::Duration::minutes(5));
            drop_after(
                svc.endpoint()
                    .regenerate_primary(&e, Method::Get, grace, by),
                polls,
            )
            .await
        }
        "endpoint::create_secondary" => {
            let name = TokenName::parse(format!("sec-{}", c.next())).unwrap();
            drop_after(
                svc.endpoint()
                    .create_secondary(name, Description::default(), by),
                polls,
            )
            .await
        }
        "endpoint::regenerate_secondary" => {
            let s = c.secondary().await;
            drop_after(svc.endpoint().regenerate_secondary(s.token.id, by), polls).await
        }
        "endpoint::set_enabled" => {
            let s = c.secondary().await;
            drop_after(svc.endpoint().set_enabled(s.token.id, false, by), polls).await
        }
        "endpoint::deactivate" => {
            let s = c.secondary().await;
            drop_after(svc.endpoint().deactivate(s.token.id, by), polls).await
        }
        "endpoint::activate" => {
            let s = c.secondary().await;
            svc.endpoint().deactivate(s.token.id, by).await.unwrap();
            drop_after(svc.endpoint().activate(s.token.id, by), polls).await
        }
        "endpoint::map" => {
            let (e, _) = c.endpoint().await;
            let s = c.secondary().await;
            drop_after(svc.endpoint().map(s.token.id, &e, Method::Get, by), polls).await
        }
        "endpoint::unmap" => {
            let (e, s) = c.mapped().await;
            drop_after(svc.endpoint().unmap(s.token.id, &e, Method::Get, by), polls).await
        }
        "endpoint::set_mapping_enabled" => {
            let (e, s) = c.mapped().await;
            drop_after(
                svc.endpoint()
                    .set_mapping_enabled(s.token.id, &e, Method::Get, false, by),
                polls,
            )
            .await
        }
        "endpoint::secondaries" => {
            drop_after(
                svc.endpoint().secondaries(SecondaryFilter::default()),
                polls,
            )
            .await
        }
        "endpoint::check" => {
            let (e, s) = c.mapped().await;
            let tok = s.secret.expose_secret();
            drop_after(
                svc.endpoint().check(&e, Method::Get, tok, Some(ip())),
                polls,
            )
            .await
        }
        "endpoint::traffic" => {
            let (e, _) = c.mapped().await;
            drop_after(svc.endpoint().traffic(&e), polls).await
        }
        "endpoint::traffic_filtered" => {
            let (e, _) = c.mapped().await;
            let filter = TrafficFilter::default();
            drop_after(svc.endpoint().traffic_filtered(&e, &filter), polls).await
        }
        // ---- onboarding ----
        "onboarding::create" => {
            let spec = NewOnboarding::new("policy", "group").unwrap();
            drop_after(svc.onboarding().create(spec, by), polls).await
        }
        "onboarding::bulk" => {
            let specs = (0..3)
                .map(|i| NewOnboarding::new("policy", format!("group-{i}")).unwrap())
                .collect();
            drop_after(svc.onboarding().bulk(specs, by), polls).await
        }
        "onboarding::redeem" => {
            // Two uses: a first device, then (each attempt) a new one that exhausts it.
            let o = c.onboarding(2).await;
            let tok = o.secret.expose_secret();
            let first = DeviceId::parse(format!("dev-{}", c.next())).unwrap();
            svc.onboarding().redeem(tok, &first).await.unwrap().unwrap();
            let device = DeviceId::parse(format!("dev-{}", c.next())).unwrap();
            drop_after(svc.onboarding().redeem(tok, &device), polls).await
        }
        "onboarding::reveal" => {
            let o = c.onboarding(1).await;
            drop_after(svc.onboarding().reveal(o.token.id), polls).await
        }
        "onboarding::revoke" => {
            let o = c.onboarding(1).await;
            drop_after(svc.onboarding().revoke(o.token.id, by), polls).await
        }
        "onboarding::list" => drop_after(svc.onboarding().list(), polls).await,
        // ---- the service ----
        "ready::ready" => drop_after(svc.ready(), polls).await,
        "request::validate" => {
            let o = c.onboarding(3).await;
            let device = DeviceId::parse(format!("dev-{}", c.next())).unwrap();
            let request = RequestContext::new().device(&device);
            drop_after(svc.validate(o.secret.expose_secret(), &request), polls).await
        }
        "service::flush" => {
            // Something for the ledger to write: an application's use from an address.
            let a = c.application().await;
            svc.application()
                .validate(a.secret.expose_secret(), ip())
                .await
                .unwrap()
                .unwrap();
            drop_after(svc.flush(), polls).await
        }
        "tokens::token" => {
            let d = c.deployment().await;
            drop_after(svc.token(d.token.id), polls).await
        }
        "tokens::list" => {
            let filter = TokenFilter::default();
            drop_after(svc.list(&filter), polls).await
        }
        "tokens::rotate" => {
            let d = c.deployment().await;
            let grace = Some(time::Duration::minutes(5));
            drop_after(svc.rotate(d.token.id, grace, by), polls).await
        }
        "tokens::revoke" => {
            let d = c.deployment().await;
            drop_after(svc.revoke(d.token.id, by), polls).await
        }
        "tokens::expiring_within" => {
            drop_after(svc.expiring_within(time::Duration::days(30)), polls).await
        }
        "tokens::exhausted" => drop_after(svc.exhausted(), polls).await,
        "tokens::sweep" => {
            // A deployment token past its expiry for the sweep to expire: issued to expire
            // soon, then waited out. On a loaded machine issuing it can take longer than the
            // margin (the expiry is then refused as past): try again with a wider one.
            let mut margin = Duration::from_millis(2);
            loop {
                let spec = NewDeployment::named(format!("dep-{}", c.next()))
                    .unwrap()
                    .expires_at(OffsetDateTime::now_utc() + margin);
                match svc.deployment().generate(spec, by).await {
                    Ok(_) => break,
                    Err(e) if margin < Duration::from_secs(4) => {
                        eprintln!("{}: issuing with {margin:?} to expiry: {e}", c.what);
                        margin *= 2;
                    }
                    Err(e) => panic!("{}: issuing a token that expires soon: {e}", c.what),
                }
            }
            tokio::time::sleep(margin + Duration::from_millis(1)).await;
            drop_after(svc.sweep(false), polls).await
        }
        "tokens::reseal" => {
            c.onboarding(1).await;
            drop_after(svc.reseal(), polls).await
        }
        "tokens::cleanup" => {
            let d = c.deployment().await;
            svc.revoke(d.token.id, by).await.unwrap();
            drop_after(svc.cleanup(time::Duration::ZERO, by), polls).await
        }
        "tokens::audit" => {
            let filter = AuditFilter::default().limit(50);
            drop_after(svc.audit(&filter, by), polls).await
        }
        other => panic!(
            "no cancellation case for the public async method {other}: add one to \
             tests/cancel_service.rs"
        ),
    }
}

/// What the store holds of the tokens created since `since`, and their events.
#[derive(Debug, PartialEq)]
struct Snapshot {
    tokens: BTreeMap<TokenId, Kept>,
}

/// One token as stored, with what its events say.
#[derive(Debug, PartialEq)]
struct Kept {
    state: State,
    uses: u64,
    /// Enrolled devices and use events (onboarding tokens).
    enrolled: Option<(usize, usize)>,
    /// Its issue events.
    issued: usize,
    /// The target of its last state-change event.
    last_change: Option<State>,
}

async fn snapshot(store: &dyn Store, since: OffsetDateTime) -> Snapshot {
    let records = store.list(&TokenFilter::default()).await.unwrap();
    let events = store
        .events(&AuditFilter::default().since(since))
        .await
        .unwrap();
    let mut tokens = BTreeMap::new();
    for r in records.into_iter().filter(|r| r.created_at >= since) {
        let mine = events.iter().filter(|e| e.subject.token == Some(r.id));
        let enrolled = if r.kind() == tessera::Kind::Onboarding {
            let used = mine
                .clone()
                .filter(|e| e.action == AuditAction::Used)
                .count();
            Some((store.enrollments(r.id).await.unwrap().len(), used))
        } else {
            None
        };
        let issued = mine
            .clone()
            .filter(|e| e.action == AuditAction::Issued)
            .count();
        let last_change = mine
            .filter_map(|e| match e.action {
                AuditAction::StateChanged { to, .. } => Some(to),
                _ => None,
            })
            .next_back();
        let kept = Kept {
            state: r.state,
            uses: r.uses,
            enrolled,
            issued,
            last_change,
        };
        tokens.insert(r.id, kept);
    }
    Snapshot { tokens }
}

/// The store is consistent and a write on it succeeds promptly.
async fn check(c: &Ctx, case: &str, polls: usize, since: OffsetDateTime, done: bool) {
    let what = format!("{} {case} dropped after {polls} polls", c.what);
    let store: &dyn Store = &**c.svc.store();
    // A write: no lock held, no transaction left open on the connection it gets.
    let touched = tokio::time::timeout(
        Duration::from_secs(10),
        store.touch(c.probe, OffsetDateTime::now_utc(), time::Duration::ZERO),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: a write waited 10 s (a lock left held)"));
    touched.unwrap_or_else(|e| panic!("{what}: a write failed: {e}"));
    // A statement dropped after PostgreSQL received it may still commit: read until stable
    // (an operation dropped before its first poll sent nothing).
    let mut snap = snapshot(store, since).await;
    if c.remote && !done && polls > 0 {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(3)).await;
            let again = snapshot(store, since).await;
            if again == snap {
                break;
            }
            snap = again;
        }
    }
    for (id, kept) in &snap.tokens {
        let Kept {
            state,
            uses,
            enrolled,
            issued,
            last_change,
        } = kept;
        assert_eq!(*issued, 1, "{what}: token {id} has {issued} issue events");
        if *state != State::Exhausted {
            assert_eq!(
                *state,
                last_change.unwrap_or(State::Active),
                "{what}: token {id}'s state and its last state-change event disagree"
            );
        }
        if let Some((enrolled, used)) = enrolled {
            assert_eq!(
                *uses, *enrolled as u64,
                "{what}: token {id}: uses and enrolled devices disagree"
            );
            // Each redemption's event is stored with it (the service audits every use).
            assert_eq!(
                *uses, *used as u64,
                "{what}: token {id}: uses and their audit events disagree"
            );
        }
    }
}

/// The store is usable: a new token can be issued, validated and revoked.
async fn usable(what: &str, svc: &TokenService) {
    let dep = svc
        .deployment()
        .generate(NewDeployment::named("probe").unwrap(), &root())
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot issue after the cancellations: {e}"));
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

/// A fresh, migrated store of backend `name` (each configuration gets its own, so the cases of
/// one do not lengthen the listings of the next). Whether it is remote (PostgreSQL).
async fn backend(name: &str, tag: &str) -> Option<(Arc<dyn Store>, bool)> {
    Some(match name {
        "memory" => (Arc::new(MemoryStore::new()), false),
        "sqlite in memory" => {
            let store = SqliteStore::open_in_memory().await.unwrap();
            store.migrate().await.unwrap();
            (Arc::new(store), false)
        }
        "sqlite file" => {
            let dir = tempfile::tempdir().unwrap().keep();
            let store = SqliteStore::open(dir.join("cancel_service.db"))
                .await
                .unwrap();
            store.migrate().await.unwrap();
            (Arc::new(store), false)
        }
        _ => {
            let url = postgres_url()?;
            let schema = format!("tessera_cancel_service_{}_{tag}", std::process::id());
            let store = PostgresStore::connect_with(
                PostgresConfig::new(url)
                    .schema(&schema)
                    .unwrap()
                    .max_connections(4),
            )
            .await
            .unwrap();
            store.migrate().await.unwrap();
            (Arc::new(store), true)
        }
    })
}

/// Every public async method of the service, dropped at every await point, on every backend
/// with and without the validation cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_method_dropped_at_every_await_point() {
    let methods = methods();
    for name in ["memory", "sqlite in memory", "sqlite file", "postgres"] {
        for cached in [false, true] {
            let tag = if cached { "cached" } else { "plain" };
            let Some((store, remote)) = backend(name, tag).await else {
                continue;
            };
            let mut builder = TokenService::builder_shared(store.clone(), peppers());
            if cached {
                builder = builder.validation_cache(ValidationCache::new(time::Duration::hours(1)));
            }
            let svc = builder.build();
            let what = format!("{name}{}", if cached { " cached" } else { "" });
            let probe = svc
                .deployment()
                .generate(NewDeployment::named("probe").unwrap(), &root())
                .await
                .unwrap()
                .token
                .id;
            let c = Ctx {
                what: what.clone(),
                svc,
                remote,
                n: Cell::new(0),
                probe,
            };
            let started = std::time::Instant::now();
            let mut drops = 0;
            for case in &methods {
                let case_started = std::time::Instant::now();
                let mut polls = 0;
                loop {
                    let since = OffsetDateTime::now_utc();
                    let done = attempt(&c, case, polls).await;
                    check(&c, case, polls, since, done).await;
                    if done {
                        break;
                    }
                    drops += 1;
                    polls = next_polls(polls);
                    assert!(polls < 100_000, "{what}: {case} never completes");
                }
                if std::env::var_os("TESSERA_CANCEL_TIMES").is_some() {
                    println!("{what}: {case} {:?}", case_started.elapsed());
                }
            }
            usable(&what, &c.svc).await;
            println!(
                "{what}: {} methods, {drops} drops, consistent and usable after each ({:?})",
                methods.len(),
                started.elapsed()
            );
        }
    }
}
