//! The endpoint console through the public API: traffic filtered per token, per secondary name
//! and per time window; endpoints never set up are errors; "Hide unassigned" is relative to the
//! endpoint in view; turning token authentication on and off and allowing delete are events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::{admin, service};
use tessera::core::audit::AuditAction;
use tessera::core::id::{Description, EndpointId, TokenName};
use tessera::core::kind::endpoint::Method;
use tessera::endpoint::{SecondaryFilter, TrafficFilter};
use tessera::store::AuditFilter;
use tessera::{Error, Issued, TokenService};
use time::Duration;

fn ep(s: &str) -> EndpointId {
    EndpointId::parse(s).unwrap()
}

async fn secondary(svc: &TokenService, name: &str) -> Issued {
    svc.endpoint()
        .create_secondary(
            TokenName::parse(name).unwrap(),
            Description::parse("integration").unwrap(),
            &admin(),
        )
        .await
        .unwrap()
}

async fn call(svc: &TokenService, endpoint: &EndpointId, token: &Issued) {
    svc.endpoint()
        .check(endpoint, Method::Get, token.secret.expose_secret(), None)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn traffic_filters_by_token_name_and_window() {
    let (svc, clock) = service();
    let e = svc.endpoint();
    let orders = ep("/orders");
    e.enable(&orders, false, &admin()).await.unwrap();
    let (erp, crm) = (secondary(&svc, "erp").await, secondary(&svc, "CRM").await);
    for s in [&erp, &crm] {
        e.map(s.token.id, &orders, Method::Get, &admin())
            .await
            .unwrap();
    }
    call(&svc, &orders, &erp).await;
    call(&svc, &orders, &crm).await;
    clock.advance(Duration::hours(2));
    let cut = common::T0 + Duration::hours(1);
    for _ in 0..3 {
        call(&svc, &orders, &erp).await;
    }

    let all = e
        .traffic_filtered(&orders, &TrafficFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let by_erp = e
        .traffic_filtered(&orders, &TrafficFilter::default().token(erp.token.id))
        .await
        .unwrap();
    assert_eq!(by_erp.len(), 1);
    assert_eq!(
        (by_erp[0].count, by_erp[0].name.as_deref()),
        (4, Some("erp"))
    );
    // By name, case ignored, as the console's Tokens filter.
    let by_name = e
        .traffic_filtered(&orders, &TrafficFilter::default().name("crm"))
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].token, crm.token.id);
    // A window counts only the requests inside it.
    let late = e
        .traffic_filtered(&orders, &TrafficFilter::default().since(cut))
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].count, 3);
    assert_eq!(late[0].first_seen, Some(common::T0 + Duration::hours(2)));
    let early = e
        .traffic_filtered(&orders, &TrafficFilter::default().until(cut))
        .await
        .unwrap();
    assert_eq!(early.iter().map(|t| t.count).sum::<u64>(), 2);
    assert!(
        e.traffic_filtered(&orders, &TrafficFilter::default().name("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_endpoint_never_set_up_is_an_error() {
    let (svc, _) = service();
    let e = svc.endpoint();
    let nowhere = ep("/nowhere");
    let no = |r: Result<(), Error>| {
        assert!(matches!(r, Err(Error::NoSuchEndpoint { .. })), "{r:?}");
    };
    no(e.traffic_filtered(&nowhere, &TrafficFilter::default())
        .await
        .map(|_| ()));
    assert!(e.primaries(&nowhere).await.unwrap().is_empty());
    assert!(!e.was_set_up(&nowhere).await.unwrap());
    no(e.disable(&nowhere, &admin()).await);
    // Once set up and turned off, it is known: no primaries, no error.
    let orders = ep("/orders");
    e.enable(&orders, false, &admin()).await.unwrap();
    e.disable(&orders, &admin()).await.unwrap();
    assert!(e.was_set_up(&orders).await.unwrap());
    assert!(e.primaries(&orders).await.unwrap().is_empty());
    assert!(
        e.traffic_filtered(&orders, &TrafficFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn hide_unassigned_is_relative_to_the_endpoint_in_view() {
    let (svc, _) = service();
    let e = svc.endpoint();
    let (orders, items) = (ep("/orders"), ep("/items"));
    e.enable(&orders, false, &admin()).await.unwrap();
    e.enable(&items, false, &admin()).await.unwrap();
    let erp = secondary(&svc, "erp").await;
    let shop = secondary(&svc, "shop").await;
    let idle = secondary(&svc, "idle").await;
    let gone = secondary(&svc, "gone").await;
    e.map(erp.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    e.map(shop.token.id, &items, Method::Post, &admin())
        .await
        .unwrap();
    e.map(gone.token.id, &orders, Method::Post, &admin())
        .await
        .unwrap();
    e.deactivate(gone.token.id, &admin()).await.unwrap();
    let names = |filter: SecondaryFilter| {
        let e = svc.endpoint();
        async move {
            e.secondaries(filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.token.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    let view = |endpoint: &EndpointId, hide: bool| SecondaryFilter {
        hide_unassigned: hide,
        endpoint: Some(endpoint.clone()),
        ..SecondaryFilter::default()
    };
    assert_eq!(names(view(&orders, true)).await, ["erp"]);
    assert_eq!(names(view(&items, true)).await, ["shop"]);
    assert_eq!(names(view(&orders, false)).await, ["erp", "shop", "idle"]);
    // Active only by default; deactivated ones with include_inactive.
    let with_inactive = SecondaryFilter {
        include_inactive: true,
        ..view(&orders, true)
    };
    assert_eq!(names(with_inactive).await, ["erp", "gone"]);
    // With no endpoint in view, unassigned means mapped nowhere.
    let nowhere = SecondaryFilter {
        hide_unassigned: true,
        ..SecondaryFilter::default()
    };
    assert_eq!(names(nowhere).await, ["erp", "shop"]);
    let _ = idle;
}

#[tokio::test]
async fn endpoint_settings_and_secondaries_have_events_of_their_own() {
    let (svc, _) = service();
    let e = svc.endpoint();
    let orders = ep("/orders");
    e.enable(&orders, false, &admin()).await.unwrap();
    e.set_allow_delete(&orders, true, &admin()).await.unwrap();
    e.set_allow_delete(&orders, false, &admin()).await.unwrap();
    let erp = secondary(&svc, "erp").await;
    e.map(erp.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    // Mapping twice says so, rather than asking for another name.
    let twice = e.map(erp.token.id, &orders, Method::Get, &admin()).await;
    assert!(
        matches!(&twice, Err(Error::Unsupported(m)) if m.contains("already mapped")),
        "{twice:?}"
    );
    e.set_enabled(erp.token.id, false, &admin()).await.unwrap();
    e.disable(&orders, &admin()).await.unwrap();
    let events = svc.audit(&AuditFilter::default(), &admin()).await.unwrap();
    let settings: Vec<&AuditAction> = events
        .iter()
        .filter(|ev| ev.subject.token.is_none())
        .map(|ev| &ev.action)
        .collect();
    assert_eq!(
        settings,
        [
            &AuditAction::EndpointEnabled {
                allow_delete: false
            },
            &AuditAction::DeleteAllowed { allowed: true },
            &AuditAction::DeleteAllowed { allowed: false },
            &AuditAction::EndpointDisabled,
        ]
    );
    assert!(
        events
            .iter()
            .filter(|ev| ev.subject.token.is_none())
            .all(|ev| ev.subject.endpoint.as_ref() == Some(&orders))
    );
    // The secondary's events carry its name.
    let about_erp: Vec<_> = events
        .iter()
        .filter(|ev| ev.subject.token == Some(erp.token.id))
        .collect();
    assert!(about_erp.len() >= 3);
    assert!(
        about_erp
            .iter()
            .all(|ev| ev.subject.name.as_deref() == Some("erp"))
    );
}
