//! The five admin consoles over SQLite, with a demo sign-in and seeded data.
//!
//! Run it with `cargo run --example console`, open the printed address, and sign in as the
//! administrator `alice` or the technician `bob`. Set `CONSOLE_ADDR` (default
//! `127.0.0.1:8080`) to listen elsewhere, `CONSOLE_DB` to keep the tokens in a file.
//!
//! The demo sign-in trusts a cookie naming the user: a real application reads its own session
//! in [`Host::principal`].

use std::collections::BTreeSet;
use std::error::Error;
use std::net::{IpAddr, SocketAddr};

use axum::http::header;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use tessera::auth::NewAuth;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{
    AccessType, ApplicationName, Description, EndpointId, Permission, TokenName, UserId,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::deployment::NewDeployment;
use tessera::onboarding::NewOnboarding;
use tessera::{Principal, TokenService};
use tessera_console::{EndpointConfig, Host, Refusal, Settings};
use tessera_sql::SqliteStore;
use tokio::net::TcpListener;

/// Who is signed in: the `demo_user` cookie. `alice` administers, everyone else is a
/// technician.
#[derive(Debug)]
struct DemoHost;

fn demo_user(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("demo_user=").map(str::to_owned))
        .filter(|u| !u.is_empty())
}

#[async_trait::async_trait]
impl Host for DemoHost {
    async fn principal(&self, request: &Parts) -> Result<Principal, Refusal> {
        match demo_user(request).as_deref() {
            None => Err(Refusal::SignIn(String::from("/"))),
            Some("alice") => Principal::admin("alice").map_err(|_| Refusal::Unauthenticated),
            Some(user) => Principal::user(user).map_err(|_| Refusal::Unauthenticated),
        }
    }

    async fn delegated(&self, user: &UserId) -> BTreeSet<Permission> {
        let names: &[&str] = match user.as_str() {
            "alice" => &[
                "reset_password",
                "unlock_account",
                "create_user",
                "delete_user",
            ],
            "bob" => &["reset_password", "unlock_account"],
            "carol" => &["reset_password"],
            _ => &[],
        };
        names
            .iter()
            .filter_map(|n| Permission::parse(*n).ok())
            .collect()
    }

    async fn technicians(&self) -> Vec<UserId> {
        ["bob", "carol"]
            .into_iter()
            .filter_map(|u| UserId::parse(u).ok())
            .collect()
    }
}

const SIGN_IN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in – Tessera demo</title>
<link rel="stylesheet" href="/admin/tokens/assets/console.css"></head>
<body><header class="top"><span class="brand">Tessera demo</span></header>
<main id="main"><h1>Sign in</h1>
<p>A demo sign-in: pick who you are. The consoles ask the application who is signed in.</p>
<form method="post" action="/signin" class="dialog">
<div class="check"><input type="radio" id="u-alice" name="user" value="alice" checked>
<label for="u-alice">alice, administrator</label></div>
<div class="check"><input type="radio" id="u-bob" name="user" value="bob">
<label for="u-bob">bob, technician</label></div>
<div class="check"><input type="radio" id="u-carol" name="user" value="carol">
<label for="u-carol">carol, technician</label></div>
<div class="actions"><button class="primary" type="submit">Sign in</button></div>
</form></main></body></html>"#;

#[derive(serde::Deserialize)]
struct SignIn {
    user: String,
}

async fn sign_in(Form(form): Form<SignIn>) -> Response {
    let user = form.user.as_str();
    if !matches!(user, "alice" | "bob" | "carol") {
        return Redirect::to("/").into_response();
    }
    (
        [(
            header::SET_COOKIE,
            format!("demo_user={user}; Path=/; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/admin/tokens"),
    )
        .into_response()
}

async fn sign_out() -> Response {
    (
        [(header::SET_COOKIE, "demo_user=; Path=/; Max-Age=0")],
        Redirect::to("/"),
    )
        .into_response()
}

/// Tokens of every kind, some used, so each console has something to show.
async fn seed(service: &TokenService) -> Result<(), Box<dyn Error>> {
    let alice = Principal::admin("alice")?;
    let bob = Principal::user("bob")?;
    let in_days = |d| time::OffsetDateTime::now_utc() + time::Duration::days(d);
    service
        .deployment()
        .generate(
            NewDeployment::named("Pilot wave")?.expires_at(in_days(30)),
            &alice,
        )
        .await?;
    service
        .deployment()
        .generate(NewDeployment::named("Rollout")?.auto_renew(true), &alice)
        .await?;

    let kiosk = service
        .onboarding()
        .create(
            NewOnboarding::new("kiosk", "lobby")?
                .limit(UsageLimit::uses(5)?)
                .expires_at(in_days(14)),
            &alice,
        )
        .await?;
    for d in ["kiosk-01", "kiosk-02"] {
        let _ = service
            .onboarding()
            .redeem(
                kiosk.secret.expose_secret(),
                &tessera::core::id::DeviceId::parse(d)?,
            )
            .await?;
    }
    service
        .onboarding()
        .create(NewOnboarding::new("staff", "sales")?, &alice)
        .await?;

    let orders = EndpointId::parse("orders")?;
    service.endpoint().enable(&orders, true, &alice).await?;
    service
        .endpoint()
        .enable(&EndpointId::parse("reports")?, false, &alice)
        .await?;
    let crm = service
        .endpoint()
        .create_secondary(
            TokenName::parse("crm")?,
            Description::parse("The CRM's order sync")?,
            &alice,
        )
        .await?;
    service
        .endpoint()
        .map(crm.token.id, &orders, Method::Get, &alice)
        .await?;
    service
        .endpoint()
        .map(crm.token.id, &orders, Method::Post, &alice)
        .await?;
    for _ in 0..3 {
        let _ = service
            .endpoint()
            .check(&orders, Method::Get, crm.secret.expose_secret(), None)
            .await?;
    }
    service
        .endpoint()
        .create_secondary(
            TokenName::parse("warehouse")?,
            Description::parse("Not connected yet")?,
            &alice,
        )
        .await?;

    let bob_perms: BTreeSet<Permission> = DemoHost.delegated(bob.id()).await;
    service
        .auth()
        .generate(
            NewAuth::new("bob", "helpdesk-script", ["reset_password"], "30d")?,
            &bob_perms,
            &bob,
        )
        .await?;
    service
        .auth()
        .generate(
            NewAuth::new("bob", "night-unlock", ["unlock_account"], "12h")?,
            &bob_perms,
            &alice,
        )
        .await?;

    let feed = service
        .application()
        .create(
            ApplicationName::parse("siem-feed")?,
            Description::parse("Threat feed pushed by the SIEM")?,
            AccessTypes::new([AccessType::parse("third-party-feeds")?])?,
            &alice,
        )
        .await?;
    for ip in ["192.0.2.10", "192.0.2.11", "198.51.100.7"] {
        let ip: IpAddr = ip.parse()?;
        let _ = service
            .application()
            .validate(feed.secret.expose_secret(), ip)
            .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let store = match std::env::var("CONSOLE_DB") {
        Ok(path) => SqliteStore::open(path).await?,
        Err(_) => SqliteStore::open_in_memory().await?,
    };
    store.migrate().await?;
    // A demo pepper drawn at start: a real service loads its pepper from its secret store.
    let service = TokenService::new(store, Peppers::new(Pepper::generate(KeyId(1))?));
    if service.deployment().list().await?.is_empty() {
        seed(&service).await?;
    }
    let settings = Settings::new(DemoHost)
        .title("Tessera demo")
        .installer_template("msiexec /i inSyncClient.msi TOKEN={token} /qn")
        .endpoint(EndpointConfig::new("orders", true)?)
        .endpoint(EndpointConfig::new("reports", false)?)
        .android(tessera_qr::AndroidProvisioning::new(
            "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver",
            "https://play.google.com/managed/downloadManagingApp?identifier=setup",
            "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
        )?);
    let app = Router::new()
        .route("/", get(|| async { Html(SIGN_IN) }))
        .route("/signin", post(sign_in))
        .route("/signout", get(sign_out))
        .nest("/admin/tokens", tessera_console::router(service, settings));
    let wanted: SocketAddr = std::env::var("CONSOLE_ADDR")
        .unwrap_or_else(|_| String::from("127.0.0.1:8080"))
        .parse()?;
    let listener = match TcpListener::bind(wanted).await {
        Ok(l) => l,
        // Taken: any free port on the same address.
        Err(_) => TcpListener::bind(SocketAddr::new(wanted.ip(), 0)).await?,
    };
    println!("Tessera consoles: http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
