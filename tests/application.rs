//! Application tokens through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::net::IpAddr;

use common::{admin, service};
use tessera::application::{BearerError, parse_bearer};
use tessera::core::id::{AccessType, ApplicationName, Description};
use tessera::core::kind::application::AccessTypes;
use tessera::core::lifecycle::State;
use tessera::store::{StoreError, UsageSubject};
use tessera::{Error, Rejection};
use time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn access(list: &[&str]) -> AccessTypes {
    AccessTypes::new(list.iter().map(|a| AccessType::parse(*a).unwrap())).unwrap()
}

async fn create(svc: &tessera::TokenService, name: &str) -> tessera::Issued {
    svc.application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::parse("feeds threat intel").unwrap(),
            access(&["security-director", "third-party-feeds"]),
            &admin(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn create_validate_and_log_ips() {
    let (svc, clock) = service();
    let a = svc.application();
    let t = create(&svc, "siem-01").await;
    assert_eq!(t.token.state, State::Active);
    let header = format!("Bearer {}", t.secret.expose_secret());
    let ok = a
        .validate_bearer(&header, ip("10.0.0.1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.name().as_str(), "siem-01");
    assert!(
        ok.access()
            .contains(&AccessType::parse("third-party-feeds").unwrap())
    );
    clock.advance(Duration::minutes(5));
    a.validate_bearer(&header, ip("10.0.0.1"))
        .await
        .unwrap()
        .unwrap();
    a.validate_bearer(&header, ip("2001:db8::7"))
        .await
        .unwrap()
        .unwrap();

    let ips = a.ips(t.token.id).await.unwrap();
    assert_eq!(ips.len(), 2);
    let first = ips
        .iter()
        .find(|u| u.subject == UsageSubject::Ip(ip("10.0.0.1")))
        .unwrap();
    assert_eq!(first.count, 2);
    assert_eq!(first.first_seen, Some(common::T0));
    assert_eq!(first.last_seen, Some(common::T0 + Duration::minutes(5)));

    // Listings never carry the secret; it cannot be shown again.
    let listed = a.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!format!("{listed:?}").contains(t.secret.expose_secret()));
}

#[tokio::test]
async fn names_are_unique_and_checked() {
    let (svc, _) = service();
    create(&svc, "feed").await;
    let dup = svc
        .application()
        .create(
            ApplicationName::parse("feed").unwrap(),
            Description::default(),
            access(&["security-director"]),
            &admin(),
        )
        .await;
    assert!(matches!(
        dup,
        Err(Error::Store(StoreError::AlreadyExists { .. }))
    ));
    assert!(ApplicationName::parse("has space").is_err());
    assert!(ApplicationName::parse("a".repeat(33)).is_err());
    assert!(Description::parse("d".repeat(1025)).is_err());
    assert!(AccessTypes::new([]).is_err());
}

#[tokio::test]
async fn bearer_header_parsing() {
    assert_eq!(parse_bearer("Bearer abc"), Ok("abc"));
    assert_eq!(parse_bearer("bearer   abc "), Ok("abc"));
    assert_eq!(parse_bearer("Basic abc"), Err(BearerError::Scheme));
    assert_eq!(parse_bearer("Bearer"), Err(BearerError::Missing));
    let (svc, _) = service();
    let r = svc
        .application()
        .validate_bearer("Token abc", ip("10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(r, Err(Rejection::Malformed));
}

#[tokio::test]
async fn block_and_unblock_an_ip_for_one_token() {
    let (svc, _) = service();
    let a = svc.application();
    let t = create(&svc, "one").await;
    let other = create(&svc, "two").await;
    let h = format!("Bearer {}", t.secret.expose_secret());
    let h2 = format!("Bearer {}", other.secret.expose_secret());
    a.validate_bearer(&h, ip("10.0.0.9"))
        .await
        .unwrap()
        .unwrap();
    let e = a.block(t.token.id, ip("10.0.0.9"), &admin()).await.unwrap();
    assert!(e.blocked);
    assert_eq!(
        a.validate_bearer(&h, ip("10.0.0.9")).await.unwrap(),
        Err(Rejection::IpBlocked)
    );
    // Other addresses, and other tokens from that address, are not affected.
    assert!(
        a.validate_bearer(&h, ip("10.0.0.10"))
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        a.validate_bearer(&h2, ip("10.0.0.9"))
            .await
            .unwrap()
            .is_ok()
    );
    let ips = a.ips(t.token.id).await.unwrap();
    let blocked = ips
        .iter()
        .find(|u| u.subject == UsageSubject::Ip(ip("10.0.0.9")))
        .unwrap();
    assert_eq!(
        blocked.count, 1,
        "a blocked attempt is not counted as a use"
    );
    a.unblock(t.token.id, ip("10.0.0.9"), &admin())
        .await
        .unwrap();
    assert!(a.validate_bearer(&h, ip("10.0.0.9")).await.unwrap().is_ok());
    // Blocking an address that never used the token is allowed (pre-emptive).
    assert!(
        a.block(t.token.id, ip("192.0.2.1"), &admin())
            .await
            .unwrap()
            .blocked
    );
}

#[tokio::test]
async fn deactivate_and_activate() {
    let (svc, _) = service();
    let a = svc.application();
    let t = create(&svc, "toggle").await;
    let h = format!("Bearer {}", t.secret.expose_secret());
    assert_eq!(
        a.deactivate(t.token.id, &admin()).await.unwrap().state,
        State::Disabled
    );
    assert_eq!(
        a.validate_bearer(&h, ip("10.0.0.1")).await.unwrap(),
        Err(Rejection::Disabled)
    );
    assert!(a.deactivate(t.token.id, &admin()).await.is_err());
    assert_eq!(
        a.activate(t.token.id, &admin()).await.unwrap().state,
        State::Active
    );
    assert!(a.validate_bearer(&h, ip("10.0.0.1")).await.unwrap().is_ok());
}

#[tokio::test]
async fn dormant_after_30_days_deleted_after_90() {
    let (svc, clock) = service();
    let a = svc.application();
    let idle = create(&svc, "idle").await;
    let busy = create(&svc, "busy").await;
    let h_idle = format!("Bearer {}", idle.secret.expose_secret());
    let h_busy = format!("Bearer {}", busy.secret.expose_secret());
    for _ in 0..6 {
        clock.advance(Duration::days(5));
        a.validate_bearer(&h_busy, ip("10.0.0.2"))
            .await
            .unwrap()
            .unwrap();
    }
    // Day 30: idle goes dormant, busy stays active.
    let report = svc.sweep(false).await.unwrap();
    assert_eq!(report.dormant, vec![idle.token.id]);
    assert_eq!(
        a.validate_bearer(&h_idle, ip("10.0.0.1")).await.unwrap(),
        Err(Rejection::Dormant)
    );
    assert!(
        a.validate_bearer(&h_busy, ip("10.0.0.2"))
            .await
            .unwrap()
            .is_ok()
    );
    // Reactivated, the inactivity clock restarts.
    a.activate(idle.token.id, &admin()).await.unwrap();
    assert!(
        a.validate_bearer(&h_idle, ip("10.0.0.1"))
            .await
            .unwrap()
            .is_ok()
    );
    clock.advance(Duration::days(31));
    assert_eq!(svc.sweep(false).await.unwrap().dormant.len(), 2);
    clock.advance(Duration::days(59));
    let report = svc.sweep(false).await.unwrap();
    assert_eq!(report.deleted.len(), 2);
    assert_eq!(
        a.validate_bearer(&h_idle, ip("10.0.0.1")).await.unwrap(),
        Err(Rejection::Deleted)
    );
    assert!(
        a.activate(idle.token.id, &admin()).await.is_err(),
        "deleted cannot be recovered"
    );
    assert!(a.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn inactivity_thresholds_are_configurable() {
    use tessera::core::kind::application::InactivityPolicy;
    let clock = std::sync::Arc::new(tessera::core::clock::ManualClock::new(common::T0));
    let svc =
        tessera::TokenService::builder(tessera::memory::MemoryStore::new(), common::peppers())
            .clock(clock.clone())
            .inactivity(InactivityPolicy::new(Duration::days(7), Duration::days(14)).unwrap())
            .build();
    let t = create(&svc, "weekly").await;
    clock.advance(Duration::days(7));
    assert_eq!(svc.sweep(false).await.unwrap().dormant, vec![t.token.id]);
    clock.advance(Duration::days(7));
    assert_eq!(svc.sweep(false).await.unwrap().deleted, vec![t.token.id]);
}

/// The access types are a closed set, the service's configuration: the seed's two by default,
/// another set when configured; others and repeats are refused, and nothing is stored.
#[tokio::test]
async fn access_types_are_a_closed_set_configured_per_service() {
    use tessera::core::kind::application::AccessCatalog;
    let (svc, _) = service();
    let a = svc.application();
    let offered: Vec<&str> = a.access_types().iter().map(AccessType::as_str).collect();
    assert_eq!(offered, AccessCatalog::SEED);
    let name = |n: &str| ApplicationName::parse(n).unwrap();
    let err = a
        .create(
            name("other-1"),
            Description::parse("").unwrap(),
            access(&["security-director", "billing"]),
            &admin(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "access type `billing` is not offered; pick from: security-director, third-party-feeds"
        ),
        "{err}"
    );
    let repeated = AccessTypes::new(
        ["security-director", "security-director"].map(|t| AccessType::parse(t).unwrap()),
    )
    .unwrap_err();
    assert!(repeated.to_string().contains("given twice"), "{repeated}");
    assert!(a.list().await.unwrap().is_empty(), "nothing was created");

    // Another service offers another set.
    let store = tessera::memory::MemoryStore::new();
    let billing = tessera::TokenService::builder(store, common::peppers())
        .access_types(AccessCatalog::new([AccessType::parse("billing").unwrap()]).unwrap())
        .build();
    billing
        .application()
        .create(
            name("billing-1"),
            Description::parse("").unwrap(),
            access(&["billing"]),
            &admin(),
        )
        .await
        .unwrap();
    assert!(
        billing
            .application()
            .create(
                name("billing-2"),
                Description::parse("").unwrap(),
                access(&["security-director"]),
                &admin(),
            )
            .await
            .is_err()
    );
}
