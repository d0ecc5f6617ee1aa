//! One address, every spelling: blocks, the IP log, audit events and endpoint checks see the
//! canonical address whatever spelling a caller hands over.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::net::IpAddr;

use common::{admin, service, service_each_use};
use tessera::Rejection;
use tessera::core::audit::AuditAction;
use tessera::core::id::{AccessType, ApplicationName, Description, EndpointId, TokenName};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::endpoint::Method;
use tessera::core::net::{canonical, parse_ip};
use tessera::store::{AuditFilter, UsageSubject};

/// Every way to write 10.0.0.9, as text and as what a dual-stack listener hands over.
const V4_SPELLINGS: &[&str] = &[
    "10.0.0.9",
    "::ffff:10.0.0.9",
    "::ffff:a00:9",
    "0:0:0:0:0:ffff:a00:9",
    "0000:0000:0000:0000:0000:ffff:0a00:0009",
    "::10.0.0.9",
    "0:0:0:0:0:0:a00:9",
    "[::ffff:10.0.0.9]",
];

/// Every way to write one link-local IPv6 address.
const V6_SPELLINGS: &[&str] = &[
    "fe80::1",
    "FE80::1",
    "fe80:0:0:0:0:0:0:1",
    "fe80:0000:0000:0000:0000:0000:0000:0001",
    "fe80::1%eth0",
    "fe80::1%2",
    "[fe80::1%eth0]",
];

/// The address as a caller holding an `IpAddr` gives it (zone and brackets are text only).
fn raw(s: &str) -> IpAddr {
    let s = s.trim_start_matches('[').trim_end_matches(']');
    s.split('%').next().unwrap().parse().unwrap()
}

async fn app(svc: &tessera::TokenService, name: &str) -> tessera::Issued {
    svc.application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::parse("d").unwrap(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &admin(),
        )
        .await
        .unwrap()
}

#[test]
fn every_spelling_reads_as_one_address() {
    for s in V4_SPELLINGS {
        assert_eq!(parse_ip(s).unwrap(), raw("10.0.0.9"), "{s}");
        assert_eq!(canonical(raw(s)), raw("10.0.0.9"), "{s}");
    }
    for s in V6_SPELLINGS {
        assert_eq!(parse_ip(s).unwrap(), raw("fe80::1"), "{s}");
    }
    // Loopback and unspecified IPv6 are not IPv4-compatible addresses.
    assert_eq!(canonical(raw("::1")), raw("::1"));
    assert_eq!(canonical(raw("::")), raw("::"));
}

#[tokio::test]
async fn a_block_holds_for_every_spelling_of_an_ipv4_address() {
    for blocked_as in V4_SPELLINGS {
        let (svc, _) = service();
        let a = svc.application();
        let t = app(&svc, "feed").await;
        let token = t.secret.expose_secret();
        let entry = a
            .block(t.token.id, raw(blocked_as), &admin())
            .await
            .unwrap();
        assert_eq!(
            entry.subject,
            UsageSubject::Ip(raw("10.0.0.9")),
            "{blocked_as}"
        );
        for from in V4_SPELLINGS {
            assert_eq!(
                a.validate(token, raw(from)).await.unwrap().unwrap_err(),
                Rejection::IpBlocked,
                "blocked as {blocked_as}, presented from {from}"
            );
        }
        // Another address is not affected.
        assert!(a.validate(token, raw("10.0.0.10")).await.unwrap().is_ok());
        // Unblocking by any other spelling lifts it.
        a.unblock(t.token.id, raw("::10.0.0.9"), &admin())
            .await
            .unwrap();
        assert!(
            a.validate(token, raw("::ffff:10.0.0.9"))
                .await
                .unwrap()
                .is_ok()
        );
    }
}

#[tokio::test]
async fn a_block_holds_for_every_spelling_of_an_ipv6_address() {
    let (svc, _) = service();
    let a = svc.application();
    let t = app(&svc, "feed").await;
    let token = t.secret.expose_secret();
    a.block(t.token.id, parse_ip("fe80::1%eth0").unwrap(), &admin())
        .await
        .unwrap();
    for from in V6_SPELLINGS {
        assert_eq!(
            a.validate(token, parse_ip(from).unwrap()).await.unwrap(),
            Err(Rejection::IpBlocked),
            "{from}"
        );
    }
    let header = format!("Bearer {token}");
    assert_eq!(
        a.validate_bearer(&header, raw("fe80:0:0:0:0:0:0:1"))
            .await
            .unwrap(),
        Err(Rejection::IpBlocked)
    );
}

#[tokio::test]
async fn the_ip_log_and_audit_keep_one_address_per_host() {
    // One audit row per use, each with its address.
    let (svc, _) = service_each_use();
    let a = svc.application();
    let t = app(&svc, "feed").await;
    let token = t.secret.expose_secret();
    for from in V4_SPELLINGS {
        a.validate(token, raw(from)).await.unwrap().unwrap();
    }
    let ips = a.ips(t.token.id).await.unwrap();
    assert_eq!(ips.len(), 1, "{ips:?}");
    assert_eq!(ips[0].subject, UsageSubject::Ip(raw("10.0.0.9")));
    assert_eq!(ips[0].count, V4_SPELLINGS.len() as u64);

    a.block(t.token.id, raw("::ffff:10.0.0.9"), &admin())
        .await
        .unwrap();
    let events = svc
        .audit(&AuditFilter::default().token(t.token.id), &admin())
        .await
        .unwrap();
    let ips: Vec<IpAddr> = events.iter().filter_map(|e| e.ip).collect();
    assert_eq!(ips.len(), V4_SPELLINGS.len() + 1);
    assert!(ips.iter().all(|i| *i == raw("10.0.0.9")), "{ips:?}");
    assert!(events.iter().any(|e| e.action == AuditAction::IpBlocked));
}

#[tokio::test]
async fn endpoint_checks_log_the_canonical_address() {
    let (svc, _) = service_each_use();
    let e = svc.endpoint();
    let orders = EndpointId::parse("/orders").unwrap();
    let prim = e.enable(&orders, false, &admin()).await.unwrap();
    let sec = e
        .create_secondary(
            TokenName::parse("erp").unwrap(),
            Description::parse("erp").unwrap(),
            &admin(),
        )
        .await
        .unwrap();
    e.map(sec.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    let get = prim[0].1.secret.expose_secret();
    e.check(&orders, Method::Get, get, Some(raw("::ffff:192.0.2.4")))
        .await
        .unwrap()
        .unwrap();
    e.check(
        &orders,
        Method::Get,
        sec.secret.expose_secret(),
        Some(raw("::192.0.2.4")),
    )
    .await
    .unwrap()
    .unwrap();
    let used: Vec<IpAddr> = svc
        .audit(&AuditFilter::default(), &admin())
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| ev.action == AuditAction::Used)
        .filter_map(|ev| ev.ip)
        .collect();
    assert_eq!(used, vec![raw("192.0.2.4"); 2]);
}
