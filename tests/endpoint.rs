//! Endpoint tokens through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use common::{admin, service};
use tessera::core::id::{Description, EndpointId, TokenName};
use tessera::core::kind::endpoint::Method;
use tessera::endpoint::{Carrier, SecondaryFilter};
use tessera::store::UsageSubject;
use tessera::{Error, Rejection};
use time::Duration;

fn ep(s: &str) -> EndpointId {
    EndpointId::parse(s).unwrap()
}

async fn secondary(svc: &tessera::TokenService, name: &str) -> tessera::Issued {
    svc.endpoint()
        .create_secondary(
            TokenName::parse(name).unwrap(),
            Description::parse("integration").unwrap(),
            &admin(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn enabling_generates_get_and_post_and_delete_when_allowed() {
    let (svc, _) = service();
    let e = svc.endpoint();
    let orders = ep("/api/orders");
    let prim = e.enable(&orders, false, &admin()).await.unwrap();
    let methods: Vec<Method> = prim.iter().map(|(m, _)| *m).collect();
    assert_eq!(methods, vec![Method::Get, Method::Post]);
    assert!(matches!(
        e.enable(&orders, false, &admin()).await,
        Err(Error::Unsupported(_))
    ));

    let get = prim[0].1.secret.expose_secret();
    let post = prim[1].1.secret.expose_secret();
    let ok = e
        .check(&orders, Method::Get, get, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.carrier, Carrier::Primary);
    assert_eq!(
        e.check(&orders, Method::Post, get, None).await.unwrap(),
        Err(Rejection::WrongMethod)
    );
    assert_eq!(
        e.check(&ep("/api/other"), Method::Get, get, None)
            .await
            .unwrap(),
        Err(Rejection::WrongEndpoint)
    );
    assert!(
        e.check(&orders, Method::Post, post, None)
            .await
            .unwrap()
            .is_ok()
    );

    // Allowing deleting later creates the DELETE primary; disallowing revokes it.
    let del = e
        .set_allow_delete(&orders, true, &admin())
        .await
        .unwrap()
        .unwrap();
    assert!(
        e.check(&orders, Method::Delete, del.secret.expose_secret(), None)
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(e.primaries(&orders).await.unwrap().len(), 3);
    assert!(
        e.set_allow_delete(&orders, false, &admin())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        e.check(&orders, Method::Delete, del.secret.expose_secret(), None)
            .await
            .unwrap(),
        Err(Rejection::Revoked)
    );
    assert_eq!(e.primaries(&orders).await.unwrap().len(), 2);

    let with_delete = e.enable(&ep("/api/items"), true, &admin()).await.unwrap();
    assert_eq!(with_delete.len(), 3);
    assert!(matches!(
        e.set_allow_delete(&ep("/nope"), true, &admin()).await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn regenerating_a_primary_with_and_without_grace() {
    let (svc, clock) = service();
    let e = svc.endpoint();
    let orders = ep("/api/orders");
    let prim = e.enable(&orders, false, &admin()).await.unwrap();
    let old_get = prim[0].1.secret.expose_secret();
    let new_get = e
        .regenerate_primary(&orders, Method::Get, Some(Duration::hours(1)), &admin())
        .await
        .unwrap();
    let during = e
        .check(&orders, Method::Get, old_get, None)
        .await
        .unwrap()
        .unwrap();
    assert!(during.in_grace);
    assert!(
        e.check(&orders, Method::Get, new_get.secret.expose_secret(), None)
            .await
            .unwrap()
            .is_ok()
    );
    clock.advance(Duration::hours(1));
    assert_eq!(
        e.check(&orders, Method::Get, old_get, None).await.unwrap(),
        Err(Rejection::RotatedOut)
    );

    let old_post = prim[1].1.secret.expose_secret();
    e.regenerate_primary(&orders, Method::Post, None, &admin())
        .await
        .unwrap();
    assert_eq!(
        e.check(&orders, Method::Post, old_post, None)
            .await
            .unwrap(),
        Err(Rejection::RotatedOut)
    );
    assert!(matches!(
        e.regenerate_primary(&orders, Method::Delete, None, &admin())
            .await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn secondaries_mapped_to_primaries() {
    let (svc, _) = service();
    let e = svc.endpoint();
    let orders = ep("/api/orders");
    e.enable(&orders, false, &admin()).await.unwrap();
    let erp = secondary(&svc, "erp").await;
    let crm = secondary(&svc, "crm").await;
    let idle = secondary(&svc, "idle").await;
    // 64 random alphanumerics, as the console generates.
    let erp_tok = erp.secret.expose_secret().to_owned();
    assert_eq!(erp_tok.len(), 64);
    assert!(erp_tok.bytes().all(|b| b.is_ascii_alphanumeric()));

    // Not mapped yet: refused.
    assert_eq!(
        e.check(&orders, Method::Get, &erp_tok, None).await.unwrap(),
        Err(Rejection::WrongEndpoint)
    );
    e.map(erp.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    e.map(crm.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    e.map(crm.token.id, &orders, Method::Post, &admin())
        .await
        .unwrap();
    assert!(
        e.map(crm.token.id, &orders, Method::Post, &admin())
            .await
            .is_err(),
        "mapped twice"
    );
    assert!(matches!(
        e.map(erp.token.id, &orders, Method::Delete, &admin()).await,
        Err(Error::Unsupported(_))
    ));

    let ok = e
        .check(&orders, Method::Get, &erp_tok, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ok.carrier,
        Carrier::Secondary {
            name: TokenName::parse("erp").unwrap()
        }
    );
    assert_eq!(ok.token, erp.token.id);
    assert_eq!(
        e.check(&orders, Method::Post, &erp_tok, None)
            .await
            .unwrap(),
        Err(Rejection::WrongEndpoint)
    );
    for _ in 0..3 {
        assert!(
            e.check(&orders, Method::Get, crm.secret.expose_secret(), None)
                .await
                .unwrap()
                .is_ok()
        );
    }

    // Turning one mapping off stops that integration alone.
    e.set_mapping_enabled(erp.token.id, &orders, Method::Get, false, &admin())
        .await
        .unwrap();
    assert_eq!(
        e.check(&orders, Method::Get, &erp_tok, None).await.unwrap(),
        Err(Rejection::MappingDisabled)
    );
    assert!(
        e.check(&orders, Method::Get, crm.secret.expose_secret(), None)
            .await
            .unwrap()
            .is_ok()
    );
    e.set_mapping_enabled(erp.token.id, &orders, Method::Get, true, &admin())
        .await
        .unwrap();

    // The enabled toggle and activation each stop a secondary everywhere.
    // One word each: toggled off is `ToggledOff`, deactivated is `Disabled` (deactivated).
    e.set_enabled(crm.token.id, false, &admin()).await.unwrap();
    assert_eq!(
        e.check(&orders, Method::Post, crm.secret.expose_secret(), None)
            .await
            .unwrap(),
        Err(Rejection::ToggledOff)
    );
    assert_eq!(Rejection::ToggledOff.code(), "toggled_off");
    assert_ne!(
        Rejection::ToggledOff.to_string(),
        Rejection::Disabled.to_string()
    );
    e.set_enabled(crm.token.id, true, &admin()).await.unwrap();
    e.deactivate(crm.token.id, &admin()).await.unwrap();
    assert_eq!(
        e.check(&orders, Method::Post, crm.secret.expose_secret(), None)
            .await
            .unwrap(),
        Err(Rejection::Disabled)
    );

    // Listings: active only by default; hide unassigned.
    let names = |l: Vec<tessera::endpoint::SecondaryListing>| -> Vec<String> {
        l.into_iter().map(|s| s.token.name.unwrap()).collect()
    };
    assert_eq!(
        names(e.secondaries(SecondaryFilter::default()).await.unwrap()),
        ["erp", "idle"]
    );
    let all = SecondaryFilter {
        include_inactive: true,
        ..SecondaryFilter::default()
    };
    assert_eq!(
        names(e.secondaries(all).await.unwrap()),
        ["erp", "crm", "idle"]
    );
    let assigned = SecondaryFilter {
        include_inactive: true,
        hide_unassigned: true,
        ..SecondaryFilter::default()
    };
    assert_eq!(
        names(e.secondaries(assigned).await.unwrap()),
        ["erp", "crm"]
    );
    e.activate(crm.token.id, &admin()).await.unwrap();
    assert!(
        e.check(&orders, Method::Post, crm.secret.expose_secret(), None)
            .await
            .unwrap()
            .is_ok()
    );
    let _ = idle;

    // Traffic per token: which application talks to the endpoint.
    let traffic = e.traffic(&orders).await.unwrap();
    let count = |id| {
        traffic
            .iter()
            .filter(|u| {
                u.token == id && matches!(&u.subject, UsageSubject::Endpoint(_, Method::Get))
            })
            .map(|u| u.count)
            .sum::<u64>()
    };
    assert_eq!(count(erp.token.id), 1);
    assert_eq!(
        count(crm.token.id),
        4,
        "three calls, then one while erp was cut off"
    );

    // Unmapping stops it.
    e.unmap(erp.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    assert_eq!(
        e.check(&orders, Method::Get, &erp_tok, None).await.unwrap(),
        Err(Rejection::WrongEndpoint)
    );
    assert!(
        e.unmap(erp.token.id, &orders, Method::Get, &admin())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn regenerating_a_secondary_keeps_its_mappings() {
    let (svc, _) = service();
    let e = svc.endpoint();
    let orders = ep("/api/orders");
    e.enable(&orders, false, &admin()).await.unwrap();
    let erp = secondary(&svc, "erp").await;
    e.map(erp.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    let fresh = e
        .regenerate_secondary(erp.token.id, &admin())
        .await
        .unwrap();
    assert_ne!(fresh.expose_secret(), erp.secret.expose_secret());
    assert_eq!(
        e.check(&orders, Method::Get, erp.secret.expose_secret(), None)
            .await
            .unwrap(),
        Err(Rejection::NotFound)
    );
    let ok = e
        .check(&orders, Method::Get, fresh.expose_secret(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.token, erp.token.id);
    assert!(matches!(
        svc.rotate(erp.token.id, None, &admin()).await,
        Err(Error::Unsupported(_))
    ));
}

#[tokio::test]
async fn disabling_token_authentication_revokes_primaries_and_mappings() {
    let (svc, _) = service();
    let e = svc.endpoint();
    let orders = ep("/api/orders");
    let prim = e.enable(&orders, true, &admin()).await.unwrap();
    let erp = secondary(&svc, "erp").await;
    e.map(erp.token.id, &orders, Method::Get, &admin())
        .await
        .unwrap();
    e.disable(&orders, &admin()).await.unwrap();
    for (m, p) in &prim {
        assert_eq!(
            e.check(&orders, *m, p.secret.expose_secret(), None)
                .await
                .unwrap(),
            Err(Rejection::Revoked)
        );
    }
    assert_eq!(
        e.check(&orders, Method::Get, erp.secret.expose_secret(), None)
            .await
            .unwrap(),
        Err(Rejection::WrongEndpoint)
    );
    // It can be turned on again, with fresh primaries.
    assert_eq!(e.enable(&orders, false, &admin()).await.unwrap().len(), 2);
}
