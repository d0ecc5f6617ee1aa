//! Several `TokenService` instances over one database agree: a token revoked, disabled or
//! rotated through one is refused by the others on their next validation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::net::IpAddr;
use std::sync::Arc;

use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::deployment::NewDeployment;
use tessera::sql::postgres::PostgresConfig;
use tessera::sql::{PostgresStore, SqliteStore};
use tessera::store::Store;
use tessera::{Principal, Rejection, TokenService};

fn instance(store: Arc<dyn Store>) -> TokenService {
    TokenService::builder_shared(store, Peppers::new(Pepper::new(KeyId(1), [9; 32]))).build()
}

fn ip() -> IpAddr {
    "192.0.2.10".parse().unwrap()
}

async fn instances_agree(a: TokenService, b: TokenService) {
    let root = Principal::admin("root").unwrap();
    let app = a
        .application()
        .create(
            ApplicationName::parse("shared").unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("feeds").unwrap()]).unwrap(),
            &root,
        )
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_instances_on_one_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    instances_agree(instance(Arc::new(first)), instance(Arc::new(second))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_instances_on_one_database_agree() {
    let url = match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!(
                "CI=true but TESSERA_TEST_POSTGRES_URL is unset: start a server with `eval \"$(.ci/postgres-up)\"`"
            )
        }
        _ => {
            println!("SKIPPED: set TESSERA_TEST_POSTGRES_URL (see .ci/postgres-up)");
            return;
        }
    };
    let schema = format!("tessera_inst_{}", std::process::id());
    let connect = || async {
        let cfg = PostgresConfig::new(url.clone()).schema(&schema).unwrap();
        let s = PostgresStore::connect_with(cfg).await.unwrap();
        s.migrate().await.unwrap();
        Arc::new(s) as Arc<dyn Store>
    };
    let (a, b) = (connect().await, connect().await);
    instances_agree(instance(a), instance(b)).await;
}
