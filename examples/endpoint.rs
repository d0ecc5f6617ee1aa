//! Endpoint tokens: the "Tokens" tab of an integration platform's endpoint settings.
//!
//! An admin turns on token authentication for an orders endpoint that allows deleting (GET,
//! POST and DELETE primaries), creates one secondary token per integrating application and maps
//! them to the primaries. Requests are checked with primaries and secondaries; turning one
//! mapping off cuts one integration alone; the traffic view shows which application talks to
//! the endpoint. A primary is regenerated with a grace window, and the secondary list hides
//! unassigned tokens.
//!
//! Run it with `cargo run --example endpoint`.

use std::collections::HashMap;
use std::error::Error;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tessera::core::clock::{Clock, ManualClock};
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{Description, EndpointId, TokenId, TokenName};
use tessera::core::kind::endpoint::Method;
use tessera::endpoint::{Carrier, EndpointAccess, SecondaryFilter, SecondaryListing};
use tessera::memory::MemoryStore;
use tessera::store::UsageSubject;
use tessera::{Issued, Principal, Rejection, TokenService};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const ERP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 15));
const SHOP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 3, 7));

async fn run() -> Result<(), Box<dyn Error>> {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-23 09:00 UTC)));
    let peppers = Peppers::new(Pepper::generate(KeyId(1))?);
    let service = TokenService::builder(MemoryStore::new(), peppers)
        .clock(clock.clone())
        .build();
    let admin = Principal::admin("integration-admin")?;
    let tokens = service.endpoint();
    let orders = EndpointId::parse("/api/v1/orders")?;

    println!(
        "== {}: {orders} > General > Authentication: Token, Allow deleting: on",
        when(clock.now())
    );
    let primaries = tokens.enable(&orders, true, &admin).await?;
    for (method, issued) in &primaries {
        println!(
            "   {:<6} primary (shown once): {}",
            method.as_str(),
            issued.secret.expose_secret()
        );
    }
    assert_eq!(primaries.len(), 3);
    let primary = |m: Method| {
        primaries
            .iter()
            .find(|(method, _)| *method == m)
            .map(|(_, issued)| issued)
            .ok_or("no primary for this method")
    };
    let get_primary = primary(Method::Get)?;

    println!();
    println!("== Endpoint tokens > +Add: one secondary per application");
    let erp = secondary(
        &service,
        "erp-connector",
        "SAP ERP: pulls new orders, posts status",
        &admin,
    )
    .await?;
    let shop = secondary(
        &service,
        "webshop",
        "Shop frontend: reads order status",
        &admin,
    )
    .await?;
    let legacy = secondary(
        &service,
        "legacy-batch",
        "Nightly CSV export, not migrated yet",
        &admin,
    )
    .await?;
    tokens
        .map(erp.token.id, &orders, Method::Get, &admin)
        .await?;
    tokens
        .map(erp.token.id, &orders, Method::Post, &admin)
        .await?;
    tokens
        .map(shop.token.id, &orders, Method::Get, &admin)
        .await?;
    println!("   assigned: erp-connector -> GET, POST; webshop -> GET; legacy-batch -> nothing");

    println!();
    println!("== requests to {orders}");
    let ep = &orders;
    let r = tokens
        .check(ep, Method::Get, get_primary.secret.expose_secret(), None)
        .await?;
    verdict("GET with the GET primary", &r);
    assert_eq!(r.as_ref().map(|a| a.carrier.clone()), Ok(Carrier::Primary));
    let r = tokens
        .check(ep, Method::Post, get_primary.secret.expose_secret(), None)
        .await?;
    verdict("POST with the GET primary", &r);
    assert_eq!(r, Err(Rejection::WrongMethod));
    for _ in 0..3 {
        clock.advance(Duration::minutes(5));
        assert!(
            tokens
                .check(ep, Method::Get, erp.secret.expose_secret(), Some(ERP))
                .await?
                .is_ok()
        );
    }
    let r = tokens
        .check(ep, Method::Post, erp.secret.expose_secret(), Some(ERP))
        .await?;
    verdict("POST with erp-connector (after 3 GETs)", &r);
    assert!(r.is_ok());
    for _ in 0..2 {
        clock.advance(Duration::minutes(5));
        assert!(
            tokens
                .check(ep, Method::Get, shop.secret.expose_secret(), Some(SHOP))
                .await?
                .is_ok()
        );
    }
    let r = tokens
        .check(ep, Method::Get, shop.secret.expose_secret(), Some(SHOP))
        .await?;
    verdict("GET with webshop", &r);
    assert!(r.is_ok());
    let r = tokens
        .check(ep, Method::Post, shop.secret.expose_secret(), Some(SHOP))
        .await?;
    verdict("POST with webshop (mapped for GET only)", &r);
    assert_eq!(r, Err(Rejection::WrongEndpoint));
    let r = tokens
        .check(ep, Method::Get, legacy.secret.expose_secret(), None)
        .await?;
    verdict("GET with legacy-batch (unassigned)", &r);
    assert_eq!(r, Err(Rejection::WrongEndpoint));

    println!();
    println!("== the webshop misbehaves: switch off its GET mapping, nothing else");
    let m = tokens
        .set_mapping_enabled(shop.token.id, &orders, Method::Get, false, &admin)
        .await?;
    assert!(!m.enabled);
    let r = tokens
        .check(ep, Method::Get, shop.secret.expose_secret(), Some(SHOP))
        .await?;
    verdict("GET with webshop", &r);
    assert_eq!(r, Err(Rejection::MappingDisabled));
    let r = tokens
        .check(ep, Method::Get, erp.secret.expose_secret(), Some(ERP))
        .await?;
    verdict("GET with erp-connector", &r);
    assert!(r.is_ok());

    println!();
    println!("== Endpoint data viewer: traffic per token on {orders}");
    let mut names: HashMap<TokenId, String> = HashMap::new();
    for (method, issued) in &primaries {
        names.insert(issued.token.id, format!("{method} primary"));
    }
    for s in [&erp, &shop, &legacy] {
        names.insert(s.token.id, s.token.name.clone().unwrap_or_default());
    }
    let mut traffic = tokens.traffic(&orders).await?;
    traffic.sort_by_key(|u| (names.get(&u.token).cloned(), u.subject.clone()));
    for u in &traffic {
        let UsageSubject::Endpoint(_, method) = &u.subject else {
            continue;
        };
        let last = u.last_seen.map_or_else(|| String::from("-"), when);
        let name = names.get(&u.token).map_or("?", String::as_str);
        println!(
            "   {name:<14} {:<6} {:>3} request(s), last {last}",
            method.as_str(),
            u.count
        );
    }
    let count = |id: TokenId, m: Method| {
        traffic
            .iter()
            .filter(|u| u.token == id && u.subject == UsageSubject::Endpoint(orders.clone(), m))
            .map(|u| u.count)
            .sum::<u64>()
    };
    assert_eq!(count(erp.token.id, Method::Get), 4);
    assert_eq!(count(erp.token.id, Method::Post), 1);
    assert_eq!(count(shop.token.id, Method::Get), 3);
    assert_eq!(count(legacy.token.id, Method::Get), 0);

    println!();
    clock.advance(Duration::hours(1));
    println!(
        "== {}: Generate a new GET primary, old one valid 1 more hour",
        when(clock.now())
    );
    let new_get = tokens
        .regenerate_primary(&orders, Method::Get, Some(Duration::hours(1)), &admin)
        .await?;
    println!(
        "   new GET primary (shown once): {}",
        new_get.secret.expose_secret()
    );
    let r = tokens
        .check(ep, Method::Get, get_primary.secret.expose_secret(), None)
        .await?;
    verdict("GET with the old primary, in its grace window", &r);
    assert_eq!(r.as_ref().map(|a| a.in_grace), Ok(true));
    clock.advance(Duration::hours(2));
    let swept = service.sweep(false).await?;
    println!(
        "   {}: sweep retired {} rotated token(s)",
        when(clock.now()),
        swept.retired.len()
    );
    assert_eq!(swept.retired, vec![get_primary.token.id]);
    let r = tokens
        .check(ep, Method::Get, get_primary.secret.expose_secret(), None)
        .await?;
    verdict("GET with the old primary", &r);
    assert_eq!(r, Err(Rejection::RotatedOut));
    let r = tokens
        .check(ep, Method::Get, new_get.secret.expose_secret(), None)
        .await?;
    verdict("GET with the new primary", &r);
    assert!(r.is_ok());
    let r = tokens
        .check(ep, Method::Get, erp.secret.expose_secret(), Some(ERP))
        .await?;
    verdict(
        "GET with erp-connector (mappings follow the endpoint, not the old value)",
        &r,
    );
    assert!(r.is_ok());

    println!();
    println!("== Endpoint tokens list");
    let all = tokens.secondaries(SecondaryFilter::default()).await?;
    listing("active tokens (default view)", &all);
    assert_eq!(all.len(), 3);
    let assigned = tokens
        .secondaries(SecondaryFilter {
            hide_unassigned: true,
            ..SecondaryFilter::default()
        })
        .await?;
    listing("with Hide unassigned", &assigned);
    assert_eq!(assigned.len(), 2);
    assert!(assigned.iter().all(|s| s.token.id != legacy.token.id));
    tokens.deactivate(legacy.token.id, &admin).await?;
    let active = tokens.secondaries(SecondaryFilter::default()).await?;
    listing("after deactivating legacy-batch", &active);
    assert_eq!(active.len(), 2);
    Ok(())
}

async fn secondary(
    service: &TokenService,
    name: &str,
    description: &str,
    admin: &Principal,
) -> Result<Issued, Box<dyn Error>> {
    let issued = service
        .endpoint()
        .create_secondary(
            TokenName::parse(name)?,
            Description::parse(description)?,
            admin,
        )
        .await?;
    println!(
        "   {name:<14} (shown once): {}",
        issued.secret.expose_secret()
    );
    Ok(issued)
}

fn listing(title: &str, rows: &[SecondaryListing]) {
    println!("   {title}:");
    for s in rows {
        let mapped: Vec<String> = s
            .mappings
            .iter()
            .map(|m| {
                format!(
                    "{} {}{}",
                    m.method,
                    m.endpoint,
                    if m.enabled { "" } else { " (off)" }
                )
            })
            .collect();
        println!(
            "     {:<14} {:<8} {:<8} {:<40} mapped: {}",
            s.token.name.as_deref().unwrap_or("-"),
            s.token.hint,
            if s.enabled { "enabled" } else { "disabled" },
            s.description.as_str(),
            if mapped.is_empty() {
                String::from("-")
            } else {
                mapped.join(", ")
            }
        );
    }
}

fn verdict(what: &str, outcome: &Result<EndpointAccess, Rejection>) {
    match outcome {
        Ok(a) => {
            let by = match &a.carrier {
                Carrier::Primary => String::from("the primary"),
                Carrier::Secondary { name } => format!("secondary {name}"),
            };
            let grace = if a.in_grace { ", in grace window" } else { "" };
            println!("   {what}: accepted, carried by {by}{grace}");
        }
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
