//! Application tokens: "Administration > Application Tokens" of a security console.
//!
//! An admin creates a bearer token for a SIEM integration. Requests carry
//! `Authorization: Bearer <token>` from several addresses; the admin lists the addresses with
//! their first and last use, blocks one, deactivates and activates the token. Unused for 30
//! days it goes dormant and is refused until reactivated; unused for 90 days it is deleted.
//!
//! Run it with `cargo run --example application`.

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tessera::application::{ApplicationAccess, ApplicationListing};
use tessera::core::clock::{Clock, ManualClock};
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description, TokenId};
use tessera::core::kind::application::AccessTypes;
use tessera::core::lifecycle::State;
use tessera::memory::MemoryStore;
use tessera::store::UsageSubject;
use tessera::{Principal, Rejection, TokenService};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const COLLECTOR_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 8, 1, 21));
const COLLECTOR_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 8, 1, 22));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));

async fn run() -> Result<(), Box<dyn Error>> {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-23 09:00 UTC)));
    let peppers = Peppers::new(Pepper::generate(KeyId(1))?);
    let service = TokenService::builder(MemoryStore::new(), peppers)
        .clock(clock.clone())
        .build();
    let admin = Principal::admin("secops-admin")?;
    let tokens = service.application();

    println!(
        "== {}: Application Tokens > + (name, description, access type)",
        when(clock.now())
    );
    let access = AccessTypes::new([
        AccessType::parse("security-director")?,
        AccessType::parse("third-party-feeds")?,
    ])?;
    let issued = tokens
        .create(
            ApplicationName::parse("siem-export")?,
            Description::parse("Splunk pulls policy hits every 5 minutes")?,
            access,
            &admin,
        )
        .await?;
    println!(
        "   token (copy it now, it is shown once): {}",
        issued.secret.expose_secret()
    );
    let id = issued.token.id;
    let header = format!("Bearer {}", issued.secret.expose_secret());
    match tokens
        .create(
            ApplicationName::parse("siem-export")?,
            Description::parse("a second one")?,
            AccessTypes::new([AccessType::parse("third-party-feeds")?])?,
            &admin,
        )
        .await
    {
        Err(e) => println!("   another token named siem-export: not created ({e})"),
        Ok(_) => return Err("application names must be unique".into()),
    }

    println!();
    println!("== requests with `Authorization: Bearer ...`");
    for (minutes, ip) in [
        (0, COLLECTOR_A),
        (5, COLLECTOR_A),
        (10, COLLECTOR_B),
        (15, STRANGER),
        (20, COLLECTOR_A),
    ] {
        clock.set(datetime!(2026-11-23 10:00 UTC) + Duration::minutes(minutes));
        let r = tokens.validate_bearer(&header, ip).await?;
        verdict(&format!("{} from {ip}", when(clock.now())), &r);
        assert!(r.is_ok());
    }
    let r = tokens
        .validate_bearer(
            &format!("Basic {}", issued.secret.expose_secret()),
            COLLECTOR_A,
        )
        .await?;
    verdict("a Basic header", &r);
    assert_eq!(r, Err(Rejection::Malformed));
    let r = tokens
        .validate_bearer("Bearer tsr_app_notarealtoken", COLLECTOR_A)
        .await?;
    verdict("a made-up token", &r);
    assert_eq!(r, Err(Rejection::Malformed));

    println!();
    println!("== click siem-export: addresses that used it");
    print_ips(&service, id).await?;
    let ips = tokens.ips(id).await?;
    let a = ips
        .iter()
        .find(|u| u.subject == UsageSubject::Ip(COLLECTOR_A))
        .ok_or("collector A missing")?;
    assert_eq!(a.count, 3);
    assert_eq!(a.first_seen, Some(datetime!(2026-11-23 10:00 UTC)));
    assert_eq!(a.last_seen, Some(datetime!(2026-11-23 10:20 UTC)));

    println!();
    println!("== {STRANGER} is not ours: select it, Block");
    let entry = tokens.block(id, STRANGER, &admin).await?;
    assert!(entry.blocked);
    let r = tokens.validate_bearer(&header, STRANGER).await?;
    verdict(&format!("from {STRANGER}"), &r);
    assert_eq!(r, Err(Rejection::IpBlocked));
    let r = tokens.validate_bearer(&header, COLLECTOR_B).await?;
    verdict(&format!("from {COLLECTOR_B}"), &r);
    assert!(r.is_ok());
    print_ips(&service, id).await?;

    println!();
    println!("== maintenance window: Deactivate, then Activate");
    let t = tokens.deactivate(id, &admin).await?;
    println!("   siem-export is {}", t.state);
    let r = tokens.validate_bearer(&header, COLLECTOR_A).await?;
    verdict(&format!("from {COLLECTOR_A}"), &r);
    assert_eq!(r, Err(Rejection::Disabled));
    let t = tokens.activate(id, &admin).await?;
    println!("   siem-export is {}", t.state);
    let r = tokens.validate_bearer(&header, COLLECTOR_A).await?;
    verdict(&format!("from {COLLECTOR_A}"), &r);
    assert!(r.is_ok());

    println!();
    println!("== the Splunk forwarder is switched off and forgotten");
    clock.advance(Duration::days(30));
    let report = service.sweep(false).await?;
    println!(
        "   {}: sweep marks {} token(s) dormant",
        when(clock.now()),
        report.dormant.len()
    );
    assert_eq!(report.dormant, vec![id]);
    let r = tokens.validate_bearer(&header, COLLECTOR_A).await?;
    verdict(&format!("from {COLLECTOR_A}"), &r);
    assert_eq!(r, Err(Rejection::Dormant));
    listing(&tokens.list().await?);
    let t = tokens.activate(id, &admin).await?;
    println!("   the admin activates it again: {}", t.state);
    assert_eq!(t.state, State::Active);
    let r = tokens.validate_bearer(&header, COLLECTOR_A).await?;
    verdict(&format!("from {COLLECTOR_A}"), &r);
    assert!(r.is_ok());

    println!();
    println!("== then nobody uses it for 90 days");
    clock.advance(Duration::days(90));
    let report = service.sweep(false).await?;
    println!(
        "   {}: sweep marks {} dormant, deletes {}",
        when(clock.now()),
        report.dormant.len(),
        report.deleted.len()
    );
    assert_eq!(report.deleted, vec![id]);
    let r = tokens.validate_bearer(&header, COLLECTOR_A).await?;
    verdict(&format!("from {COLLECTOR_A}"), &r);
    assert_eq!(r, Err(Rejection::Deleted));
    match tokens.activate(id, &admin).await {
        Err(e) => println!("   activating it: impossible ({e})"),
        Ok(_) => return Err("a deleted token cannot come back".into()),
    }
    let left = tokens.list().await?;
    listing(&left);
    assert!(left.is_empty());
    Ok(())
}

async fn print_ips(service: &TokenService, id: TokenId) -> Result<(), Box<dyn Error>> {
    println!(
        "   {:<15} {:<17} {:<17} {:>5}  status",
        "ip", "first used", "last used", "uses"
    );
    for u in service.application().ips(id).await? {
        let UsageSubject::Ip(ip) = u.subject else {
            continue;
        };
        println!(
            "   {:<15} {:<17} {:<17} {:>5}  {}",
            ip.to_string(),
            u.first_seen.map_or_else(|| String::from("-"), when),
            u.last_seen.map_or_else(|| String::from("-"), when),
            u.count,
            if u.blocked { "blocked" } else { "allowed" }
        );
    }
    Ok(())
}

fn listing(rows: &[ApplicationListing]) {
    println!("   Application Tokens ({}):", rows.len());
    for l in rows {
        let access: Vec<&str> = l.data.access.iter().map(AccessType::as_str).collect();
        println!(
            "     {:<12} {:<13} {:<8} last used {}  access {}",
            l.data.name.as_str(),
            l.token.hint,
            l.token.state.to_string(),
            l.token
                .last_used_at
                .map_or_else(|| String::from("never"), when),
            access.join(", ")
        );
    }
}

fn verdict(what: &str, outcome: &Result<ApplicationAccess, Rejection>) {
    match outcome {
        Ok(a) => println!("   {what}: accepted as {}", a.name()),
        Err(r) => println!(
            "   {what}: refused: {r} [{}]; the caller is told {} (HTTP {})",
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
