//! Several `TokenService` instances over one database agree: a token revoked, disabled or
//! rotated through one is refused by the others on their next validation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::postgres_url;

use std::net::IpAddr;
use std::sync::Arc;

use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::deployment::NewDeployment;
use tessera::sql::postgres::PostgresConfig;
use tessera::sql::{PostgresStore, SqliteStore};
use tessera::store::Store;
use tessera::{Principal, Rejection, TokenService, ValidationCache};

fn instance(store: Arc<dyn Store>) -> TokenService {
    TokenService::builder_shared(store, Peppers::new(Pepper::new(KeyId(1), [9; 32]))).build()
}

/// An instance keeping found records for `ttl`.
fn cached_instance(store: Arc<dyn Store>, ttl: time::Duration) -> TokenService {
    TokenService::builder_shared(store, Peppers::new(Pepper::new(KeyId(1), [9; 32])))
        .validation_cache(ValidationCache::new(ttl))
        .build()
}

fn ip() -> IpAddr {
    "192.0.2.10".parse().unwrap()
}

/// An application token named `name`, issued through `svc`.
async fn application(svc: &TokenService, name: &str, root: &Principal) -> tessera::Issued {
    svc.application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            root,
        )
        .await
        .unwrap()
}

async fn instances_agree(a: TokenService, b: TokenService) {
    let root = Principal::admin("root").unwrap();
    let app = application(&a, "shared", &root).await;
    let tok = app.secret.expose_secret();
    assert!(b.application().validate(tok, ip()).await.unwrap().is_ok());
    a.application()
        .deactivate(app.token.id, &root)
        .await
        .unwrap();
    assert_eq!(
        b.application().validate(tok, ip()).await.unwrap(),
        Err(Rejection::Disabled)
    );
    b.application().activate(app.token.id, &root).await.unwrap();
    assert!(a.application().validate(tok, ip()).await.unwrap().is_ok());

    let rotated = b.rotate(app.token.id, None, &root).await.unwrap();
    assert_eq!(
        a.application().validate(tok, ip()).await.unwrap(),
        Err(Rejection::RotatedOut)
    );
    assert!(
        a.application()
            .validate(rotated.secret.expose_secret(), ip())
            .await
            .unwrap()
            .is_ok()
    );

    let dep = a
        .deployment()
        .generate(NewDeployment::named("fleet").unwrap(), &root)
        .await
        .unwrap();
    assert!(
        b.deployment()
            .validate(dep.secret.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );
    b.revoke(dep.token.id, &root).await.unwrap();
    assert_eq!(
        a.deployment()
            .validate(dep.secret.expose_secret())
            .await
            .unwrap(),
        Err(Rejection::Revoked)
    );
}

/// B revokes a token A has cached. A refuses it at the latest once its copy is `ttl` old; the
/// staleness observed is printed (`--nocapture`). A new token from B works on A at once.
async fn a_cached_instance_sees_a_revoke_within_its_ttl(a: TokenService, b: TokenService) {
    const TTL: std::time::Duration = std::time::Duration::from_millis(300);
    let root = Principal::admin("root").unwrap();
    let dep = b
        .deployment()
        .generate(NewDeployment::named("fleet").unwrap(), &root)
        .await
        .unwrap();
    let tok = dep.secret.expose_secret();
    let loaded = std::time::Instant::now();
    assert!(a.deployment().validate(tok).await.unwrap().is_ok());
    b.revoke(dep.token.id, &root).await.unwrap();
    let revoked = std::time::Instant::now();
    let mut stale = 0u32;
    let seen = loop {
        match a.deployment().validate(tok).await.unwrap() {
            Ok(_) => stale += 1,
            Err(r) => {
                assert_eq!(r, Rejection::Revoked);
                break revoked.elapsed();
            }
        }
        // Past the time to live the copy cannot be served: the next answer must be a refusal.
        assert!(
            loaded.elapsed() < TTL + TTL,
            "still accepted long after the ttl"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    println!(
        "revocation seen by the cached instance after {} ms ({stale} stale acceptances; ttl {} ms)",
        seen.as_millis(),
        TTL.as_millis()
    );
    tokio::time::sleep(TTL).await;
    assert_eq!(
        a.deployment().validate(tok).await.unwrap(),
        Err(Rejection::Revoked)
    );
    let fresh = b
        .deployment()
        .generate(NewDeployment::named("fleet-2").unwrap(), &root)
        .await
        .unwrap();
    assert!(
        a.deployment()
            .validate(fresh.secret.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_cached_instance_sees_a_revoke_within_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    assert!(
        !first.watch(Arc::new(|_| true)).await.unwrap(),
        "SQLite has no watch"
    );
    a_cached_instance_sees_a_revoke_within_its_ttl(
        cached_instance(Arc::new(first), time::Duration::milliseconds(300)),
        instance(Arc::new(second)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_instances_on_one_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    instances_agree(instance(Arc::new(first)), instance(Arc::new(second))).await;
}

async fn postgres_store(url: &str, schema: &str) -> Arc<dyn Store> {
    let cfg = PostgresConfig::new(url.to_owned()).schema(schema).unwrap();
    let s = PostgresStore::connect_with(cfg).await.unwrap();
    s.migrate().await.unwrap();
    Arc::new(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_instances_on_one_database_agree() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("tessera_inst_{}", std::process::id());
    let (a, b) = (
        postgres_store(&url, &schema).await,
        postgres_store(&url, &schema).await,
    );
    instances_agree(instance(a), instance(b)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_cached_instance_sees_a_revoke_within_its_ttl() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("tessera_inst_cache_{}", std::process::id());
    let (a, b) = (
        postgres_store(&url, &schema).await,
        postgres_store(&url, &schema).await,
    );
    a_cached_instance_sees_a_revoke_within_its_ttl(
        cached_instance(a, time::Duration::milliseconds(300)),
        instance(b),
    )
    .await;
}

/// On PostgreSQL the store watches for changes: with a cache that would keep records for an
/// hour, another instance's revocation, rotation and update are seen as soon as the
/// notification arrives (the latencies are printed; `--nocapture`).
#[tokio::test(flavor = "multi_thread")]
async fn postgres_cached_instance_sees_other_instances_changes_by_notification() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("tessera_inst_notify_{}", std::process::id());
    let (a, b) = (
        postgres_store(&url, &schema).await,
        postgres_store(&url, &schema).await,
    );
    let a = cached_instance(a, time::Duration::hours(1));
    let b = cached_instance(b, time::Duration::hours(1));
    let root = Principal::admin("root").unwrap();

    /// Validate on `svc` until it refuses (at most 10 s); the time it took.
    async fn until_refused(svc: &TokenService, tok: &str, want: Rejection) -> std::time::Duration {
        let start = std::time::Instant::now();
        loop {
            if let Err(r) = svc.application().validate(tok, ip()).await.unwrap() {
                assert_eq!(r, want);
                return start.elapsed();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the change never reached the other instance"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    let app = application(&a, "notified", &root).await;
    let tok = app.secret.expose_secret();
    for svc in [&a, &b] {
        assert!(svc.application().validate(tok, ip()).await.unwrap().is_ok());
        assert!(svc.cache_watches_changes());
        assert_eq!(svc.cached_records(), 1);
    }
    b.application()
        .deactivate(app.token.id, &root)
        .await
        .unwrap();
    let disabled = until_refused(&a, tok, Rejection::Disabled).await;
    b.application().activate(app.token.id, &root).await.unwrap();
    let start = std::time::Instant::now();
    while a.application().validate(tok, ip()).await.unwrap().is_err() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let reactivated = start.elapsed();
    b.rotate(app.token.id, None, &root).await.unwrap();
    let rotated = until_refused(&a, tok, Rejection::RotatedOut).await;
    println!(
        "instance A saw B's changes through its one-hour cache after: deactivate {} µs, \
         activate {} µs, rotate {} µs",
        disabled.as_micros(),
        reactivated.as_micros(),
        rotated.as_micros()
    );
}
