//! A tour of Tessera: the five token kinds, one after the other, over one service and store.
//!
//! Each kind has its own longer example (`deployment`, `onboarding`, `endpoint`, `auth`,
//! `application`); this one runs a short scene of each. Time is a manual clock, so expiry,
//! renewal and dormancy happen without waiting.
//!
//! Run it with `cargo run --example tour`.

use std::collections::BTreeSet;
use std::error::Error;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tessera::auth::NewAuth;
use tessera::core::clock::{Clock, ManualClock};
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{
    AccessType, ApplicationName, Description, DeviceId, EndpointId, Permission, TokenName,
};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::auth::{Expiry, Scope};
use tessera::core::kind::endpoint::Method;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::core::validate::OAuthError;
use tessera::deployment::NewDeployment;
use tessera::onboarding::NewOnboarding;
use tessera::store::{AuditFilter, UsageSubject};
use tessera::{Principal, Rejection, Store, TokenService, ValidationCache};
use tessera_sql::SqliteStore;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The one place that chooses where tokens are kept. Swap the body to run the tour on another
/// backend; everything below only sees a [`Store`].
/// The embedded default: a SQLite file (WAL mode), migrated on open. The file lives in a
/// temporary directory that is removed when the tour ends; point `SqliteStore::open` at a real
/// path to keep it.
async fn open_store() -> Result<(impl Store, String, tempfile::TempDir), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tessera.db");
    let store = SqliteStore::open(&path).await?;
    store.migrate().await?;
    let described = format!("the embedded SQLite store at {}", path.display());
    Ok((store, described, dir))
}

async fn run() -> Result<(), Box<dyn Error>> {
    let (store, described, _dir) = open_store().await?;
    println!("Tessera tour, on {described}.");
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-23 09:00 UTC)));
    // In a real service the pepper comes from a key file or a secret manager, never the store.
    let peppers = Peppers::new(Pepper::generate(KeyId(1))?);
    // Found tokens are kept for a minute, so repeated validations skip the store; every change
    // below goes through the same service and is refused at once all the same.
    let service = TokenService::builder(store, peppers)
        .clock(clock.clone())
        .validation_cache(ValidationCache::new(Duration::minutes(1)))
        .build();
    let admin = Principal::admin("admin")?;

    deployment(&service, &clock, &admin).await?;
    onboarding(&service, &admin).await?;
    endpoint(&service, &admin).await?;
    auth(&service, &admin).await?;
    application(&service, &clock, &admin).await?;

    let events = service.audit(&AuditFilter::default(), &admin).await?;
    println!();
    println!(
        "The audit trail holds {} events; none of them holds a secret.",
        events.len()
    );
    assert!(!events.is_empty());
    println!(
        "The validation cache keeps {} records; each change above dropped its token from it at once.",
        service.cached_records()
    );
    Ok(())
}

async fn deployment(
    service: &TokenService,
    clock: &ManualClock,
    admin: &Principal,
) -> Result<(), Box<dyn Error>> {
    const TEMPLATE: &str = "msiexec /i inSyncClient.msi TOKEN={token} /quiet";
    heading(
        "1. Deployment: the installer command carries the token",
        clock,
    );
    let tokens = service.deployment();
    // Auto-renewal is on by default.
    let spec = NewDeployment::named("imd-2026-q4")?.expires_at(clock.now() + Duration::days(30));
    let first = tokens.generate(spec, admin).await?;
    println!("   token (shown once): {}", first.secret.expose_secret());
    let old_command = tokens.render_command(TEMPLATE, &first.secret).await?;
    println!("   installer command rendered with {}", first.token.hint);

    clock.advance(Duration::days(31));
    let report = service.sweep(false).await?;
    let renewal = report
        .renewed
        .into_iter()
        .next()
        .ok_or("the sweep renewed nothing")?;
    let second = renewal
        .successor
        .ok_or("a sweep that writes returns the successor")?;
    println!(
        "   {}: expired and auto-renewed as {}; the sweep prints no secret",
        when(clock.now()),
        second.hint
    );
    // The current installer command, shown again with no secret in hand.
    let new_command = tokens.command(TEMPLATE).await?;
    let old = tokens
        .validate(token_in(old_command.expose_secret())?)
        .await?;
    verdict("last month's command", &old);
    assert_eq!(old, Err(Rejection::Expired));
    let new = tokens
        .validate(token_in(new_command.expose_secret())?)
        .await?;
    verdict("the updated command", &new);
    assert!(new.is_ok());
    Ok(())
}

async fn onboarding(service: &TokenService, admin: &Principal) -> Result<(), Box<dyn Error>> {
    println!();
    println!("== 2. Onboarding: QR codes and short codes that enroll devices");
    let tokens = service.onboarding();
    let spec = NewOnboarding::new("kiosk-lockdown", "lobby")?.limit(UsageLimit::uses(2)?);
    let qr = tokens.create(spec, admin).await?;
    println!(
        "   two-use QR token (shown once): {}",
        qr.secret.expose_secret()
    );
    for device in ["KIOSK-01", "KIOSK-02", "KIOSK-03"] {
        let r = tokens
            .redeem(qr.secret.expose_secret(), &DeviceId::parse(device)?)
            .await?;
        verdict(&format!("{device} scans it"), &r);
        if device == "KIOSK-03" {
            assert_eq!(r, Err(Rejection::Exhausted));
        } else {
            assert_eq!(r.map(|e| e.group.to_string()), Ok(String::from("lobby")));
        }
    }
    let code = tokens
        .create(
            NewOnboarding::new("rugged-scanner", "warehouse")?.short_code(),
            admin,
        )
        .await?;
    println!(
        "   short code to read out (shown once): {}",
        code.secret.expose_secret()
    );
    let typed = code.secret.expose_secret().to_ascii_lowercase();
    let r = tokens.redeem(&typed, &DeviceId::parse("SCN-204")?).await?;
    verdict("SCN-204 has it typed in", &r);
    assert!(r.is_ok());
    Ok(())
}

async fn endpoint(service: &TokenService, admin: &Principal) -> Result<(), Box<dyn Error>> {
    println!();
    println!("== 3. Endpoint: primaries per method, one secondary per application");
    let tokens = service.endpoint();
    let orders = EndpointId::parse("/api/v1/orders")?;
    let primaries = tokens.enable(&orders, false, admin).await?;
    for (method, issued) in &primaries {
        println!(
            "   {:<4} primary (shown once): {}",
            method.as_str(),
            issued.secret.expose_secret()
        );
    }
    let (_, get) = primaries
        .iter()
        .find(|(m, _)| *m == Method::Get)
        .ok_or("no GET primary")?;
    let erp = tokens
        .create_secondary(
            TokenName::parse("erp-connector")?,
            Description::parse("SAP ERP")?,
            admin,
        )
        .await?;
    println!(
        "   erp-connector secondary (shown once): {}",
        erp.secret.expose_secret()
    );
    tokens
        .map(erp.token.id, &orders, Method::Get, admin)
        .await?;
    let r = tokens
        .check(&orders, Method::Get, get.secret.expose_secret(), None)
        .await?;
    verdict("GET with the GET primary", &r);
    assert!(r.is_ok());
    let r = tokens
        .check(&orders, Method::Get, erp.secret.expose_secret(), None)
        .await?;
    verdict("GET with erp-connector", &r);
    assert!(r.is_ok());
    let r = tokens
        .check(&orders, Method::Delete, get.secret.expose_secret(), None)
        .await?;
    verdict("DELETE with the GET primary", &r);
    assert_eq!(r, Err(Rejection::WrongMethod));
    tokens
        .set_mapping_enabled(erp.token.id, &orders, Method::Get, false, admin)
        .await?;
    let r = tokens
        .check(&orders, Method::Get, erp.secret.expose_secret(), None)
        .await?;
    verdict("GET with erp-connector, its mapping switched off", &r);
    assert_eq!(r, Err(Rejection::MappingDisabled));
    Ok(())
}

async fn auth(service: &TokenService, admin: &Principal) -> Result<(), Box<dyn Error>> {
    println!();
    println!("== 4. Auth: a technician's REST token, scoped to what she is delegated");
    let tokens = service.auth();
    let tina = Principal::user("tina")?;
    let perm = Permission::parse;
    let mut held: BTreeSet<Permission> = [perm("reset_password")?, perm("unlock_account")?].into();
    let spec = NewAuth {
        owner: tina.id().clone(),
        name: TokenName::parse("helpdesk-script")?,
        scope: Scope::new([perm("reset_password")?, perm("unlock_account")?])?,
        expiry: Expiry::parse("30d")?,
    };
    let own = tokens.generate(spec, &held, &tina).await?;
    println!(
        "   tina's own token (shown once): {}",
        own.secret.expose_secret()
    );
    let r = tokens
        .check(own.secret.expose_secret(), &perm("unlock_account")?, &held)
        .await?;
    verdict("unlock_account", &r);
    assert!(r.is_ok());
    held.remove(&perm("unlock_account")?);
    let r = tokens
        .check(own.secret.expose_secret(), &perm("unlock_account")?, &held)
        .await?;
    verdict("unlock_account, after it was withdrawn from tina", &r);
    assert_eq!(
        r.map_err(Rejection::oauth),
        Err(OAuthError::InsufficientScope)
    );
    let spec = NewAuth {
        owner: tina.id().clone(),
        name: TokenName::parse("from-admin")?,
        scope: Scope::new([perm("reset_password")?])?,
        expiry: Expiry::parse("12h")?,
    };
    let given = tokens.generate(spec, &held, admin).await?;
    println!(
        "   admin generates one for tina (shown once): {}; generated by {}",
        given.secret.expose_secret(),
        given
            .token
            .generated_by
            .as_ref()
            .map_or("-", |u| u.as_str())
    );
    assert_eq!(given.token.generated_by.as_ref(), Some(admin.id()));
    Ok(())
}

async fn application(
    service: &TokenService,
    clock: &ManualClock,
    admin: &Principal,
) -> Result<(), Box<dyn Error>> {
    heading("5. Application: a bearer token with a per-IP log", clock);
    let tokens = service.application();
    let access = AccessTypes::new([AccessType::parse("third-party-feeds")?])?;
    let name = ApplicationName::parse("siem-export")?;
    let issued = tokens
        .create(
            name,
            Description::parse("Splunk pulls policy hits")?,
            access,
            admin,
        )
        .await?;
    println!(
        "   token (copy it now, it is shown once): {}",
        issued.secret.expose_secret()
    );
    let id = issued.token.id;
    let header = format!("Bearer {}", issued.secret.expose_secret());
    let collector = IpAddr::V4(Ipv4Addr::new(10, 8, 1, 21));
    let stranger = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));
    for ip in [collector, collector, stranger] {
        assert!(tokens.validate_bearer(&header, ip).await?.is_ok());
    }
    for u in tokens.ips(id).await? {
        if let UsageSubject::Ip(ip) = u.subject {
            println!("   used from {ip}: {} time(s)", u.count);
        }
    }
    tokens.block(id, stranger, admin).await?;
    let r = tokens.validate_bearer(&header, stranger).await?;
    verdict(&format!("from {stranger}, now blocked"), &r);
    assert_eq!(r, Err(Rejection::IpBlocked));

    clock.advance(Duration::days(30));
    let report = service.sweep(false).await?;
    println!(
        "   {}: unused for 30 days; the sweep made it dormant",
        when(clock.now())
    );
    assert!(report.dormant.contains(&id));
    let r = tokens.validate_bearer(&header, collector).await?;
    verdict(&format!("from {collector}"), &r);
    assert_eq!(r, Err(Rejection::Dormant));
    tokens.activate(id, admin).await?;
    let r = tokens.validate_bearer(&header, collector).await?;
    verdict(
        &format!("from {collector}, after the admin activated it"),
        &r,
    );
    assert!(r.is_ok());
    Ok(())
}

fn heading(title: &str, clock: &ManualClock) {
    println!();
    println!("== {title} ({})", when(clock.now()));
}

/// The token an installer reads from its `TOKEN=` property.
fn token_in(command: &str) -> Result<&str, &'static str> {
    command
        .split_whitespace()
        .find_map(|w| w.strip_prefix("TOKEN="))
        .ok_or("the command carries no TOKEN= property")
}

fn verdict<T>(what: &str, outcome: &Result<T, Rejection>) {
    match outcome {
        Ok(_) => println!("   {what}: accepted"),
        Err(r) => println!(
            "   {what}: refused: {r} [{}]; the client is told {} (HTTP {})",
            r.code(),
            r.oauth(),
            r.oauth().status()
        ),
    }
}

fn when(t: OffsetDateTime) -> String {
    format!("{} {:02}:{:02}", t.date(), t.hour(), t.minute())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs() {
        super::run().await.unwrap();
    }
}
