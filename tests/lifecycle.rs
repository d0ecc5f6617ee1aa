//! Operations every kind shares: rotation, revocation, peppers, last use, cleanup, audit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::{admin, service};
use tessera::core::audit::{Actor, AuditAction};
use tessera::core::clock::ManualClock;
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::{AccessType, ApplicationName, Description, DeviceId};
use tessera::core::kind::application::AccessTypes;
use tessera::core::kind::onboarding::UsageLimit;
use tessera::core::lifecycle::State;
use tessera::deployment::NewDeployment;
use tessera::memory::MemoryStore;
use tessera::onboarding::NewOnboarding;
use tessera::store::{AuditFilter, Store};
use tessera::{Rejection, TokenService};
use time::Duration;

fn ip() -> IpAddr {
    "10.1.2.3".parse().unwrap()
}

async fn app(svc: &TokenService, name: &str) -> tessera::Issued {
    svc.application()
        .create(
            ApplicationName::parse(name).unwrap(),
            Description::default(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &admin(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn rotation_with_a_grace_window() {
    let (svc, clock) = service();
    let old = app(&svc, "rotating").await;
    let new = svc
        .rotate(old.token.id, Some(Duration::hours(24)), &admin())
        .await
        .unwrap();
    assert_eq!(
        new.token.name.as_deref(),
        Some("rotating"),
        "the successor keeps the name"
    );
    let a = svc.application();
    let ok = a.validate(old.secret.expose_secret(), ip()).await.unwrap();
    assert!(ok.is_ok(), "old token works during grace");
    assert!(
        a.validate(new.secret.expose_secret(), ip())
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        svc.token(old.token.id).await.unwrap().state,
        State::Superseded
    );
    clock.advance(Duration::hours(24));
    assert_eq!(
        a.validate(old.secret.expose_secret(), ip()).await.unwrap(),
        Err(Rejection::RotatedOut)
    );
    assert_eq!(svc.sweep(false).await.unwrap().retired, vec![old.token.id]);
    assert_eq!(
        svc.token(old.token.id).await.unwrap().state,
        State::RotatedOut
    );
    // Rotating again from the rotated-out token is refused; from the successor it works.
    assert!(svc.rotate(old.token.id, None, &admin()).await.is_err());
    let third = svc.rotate(new.token.id, None, &admin()).await.unwrap();
    assert_eq!(
        a.validate(new.secret.expose_secret(), ip()).await.unwrap(),
        Err(Rejection::RotatedOut)
    );
    assert!(
        a.validate(third.secret.expose_secret(), ip())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn rotating_an_onboarding_token_carries_only_the_uses_left() {
    let (svc, _) = service();
    let o = svc.onboarding();
    let t = o
        .create(
            NewOnboarding::new("p", "g")
                .unwrap()
                .limit(UsageLimit::uses(3).unwrap()),
            &admin(),
        )
        .await
        .unwrap();
    o.redeem(t.secret.expose_secret(), &DeviceId::parse("a").unwrap())
        .await
        .unwrap()
        .unwrap();
    let new = svc.rotate(t.token.id, None, &admin()).await.unwrap();
    assert_eq!(new.token.remaining, Some(2));
    let r = o
        .redeem(t.secret.expose_secret(), &DeviceId::parse("b").unwrap())
        .await
        .unwrap();
    assert_eq!(r, Err(Rejection::RotatedOut));
}

#[tokio::test]
async fn revoke_is_final_for_every_kind() {
    let (svc, _) = service();
    let d = svc
        .deployment()
        .generate(NewDeployment::named("d").unwrap(), &admin())
        .await
        .unwrap();
    let a = app(&svc, "a").await;
    svc.revoke(d.token.id, &admin()).await.unwrap();
    svc.revoke(a.token.id, &admin()).await.unwrap();
    assert_eq!(
        svc.deployment()
            .validate(d.secret.expose_secret())
            .await
            .unwrap(),
        Err(Rejection::Revoked)
    );
    assert_eq!(
        svc.application()
            .validate(a.secret.expose_secret(), ip())
            .await
            .unwrap(),
        Err(Rejection::Revoked)
    );
    assert!(svc.revoke(a.token.id, &admin()).await.is_err());
    assert!(
        svc.application()
            .activate(a.token.id, &admin())
            .await
            .is_err()
    );
    assert!(svc.rotate(a.token.id, None, &admin()).await.is_err());
    // A revoked application name can be used again.
    app(&svc, "a").await;
}

#[tokio::test]
async fn older_peppers_keep_validating_while_configured() {
    let clock = Arc::new(ManualClock::new(common::T0));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let old_svc =
        TokenService::builder_shared(store.clone(), Peppers::new(Pepper::new(KeyId(1), [1; 32])))
            .clock(clock.clone())
            .build();
    let t = app(&old_svc, "peppered").await;
    let rotated =
        Peppers::new(Pepper::new(KeyId(2), [2; 32])).with_previous(Pepper::new(KeyId(1), [1; 32]));
    let new_svc = TokenService::builder_shared(store.clone(), rotated)
        .clock(clock.clone())
        .build();
    assert!(
        new_svc
            .application()
            .validate(t.secret.expose_secret(), ip())
            .await
            .unwrap()
            .is_ok()
    );
    let fresh = app(&new_svc, "fresh").await;
    assert!(
        new_svc
            .application()
            .validate(fresh.secret.expose_secret(), ip())
            .await
            .unwrap()
            .is_ok()
    );
    let dropped = TokenService::builder_shared(store, Peppers::new(Pepper::new(KeyId(2), [2; 32])))
        .clock(clock)
        .build();
    assert_eq!(
        dropped
            .application()
            .validate(t.secret.expose_secret(), ip())
            .await
            .unwrap(),
        Err(Rejection::NotFound)
    );
}

#[tokio::test]
async fn last_use_is_written_by_the_ledger_not_by_validation() {
    let (svc, clock) = service();
    let d = svc
        .deployment()
        .generate(NewDeployment::named("hot").unwrap(), &admin())
        .await
        .unwrap();
    for _ in 0..100 {
        svc.deployment()
            .validate(d.secret.expose_secret())
            .await
            .unwrap()
            .unwrap();
        clock.advance(Duration::milliseconds(100));
    }
    // 10 simulated seconds of validations, nothing written yet (the ledger writes every real
    // second, or on flush)...
    assert_eq!(svc.token(d.token.id).await.unwrap().last_used_at, None);
    // ...then one write, with the last use.
    assert_eq!(svc.flush().await.unwrap().batches, 1);
    assert_eq!(
        svc.token(d.token.id).await.unwrap().last_used_at,
        Some(common::T0 + Duration::milliseconds(9_900))
    );
}

#[tokio::test]
async fn cleanup_purges_dead_tokens_after_retention_and_keeps_audit() {
    let (svc, clock) = service();
    let short = NewDeployment::named("short")
        .unwrap()
        .expires_at(common::T0 + Duration::days(1));
    let dead = svc.deployment().generate(short, &admin()).await.unwrap();
    let alive = svc
        .deployment()
        .generate(NewDeployment::named("alive").unwrap(), &admin())
        .await
        .unwrap();
    clock.advance(Duration::days(2));
    assert!(
        svc.cleanup(Duration::days(30), &admin())
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::days(30));
    let purged = svc.cleanup(Duration::days(30), &admin()).await.unwrap();
    assert_eq!(purged, vec![dead.token.id]);
    assert!(svc.token(dead.token.id).await.is_err());
    assert!(svc.token(alive.token.id).await.is_ok());
    assert_eq!(
        svc.deployment()
            .validate(dead.secret.expose_secret())
            .await
            .unwrap(),
        Err(Rejection::NotFound)
    );
    let trail = svc
        .audit(&AuditFilter::default().token(dead.token.id), &admin())
        .await
        .unwrap();
    assert!(matches!(trail.first().unwrap().action, AuditAction::Issued));
    assert!(matches!(trail.last().unwrap().action, AuditAction::Purged));
}

#[tokio::test]
async fn audit_trail_records_every_change_and_use_without_secrets() {
    let (svc, clock) = service();
    let t = app(&svc, "audited").await;
    let h = format!("Bearer {}", t.secret.expose_secret());
    svc.application()
        .validate_bearer(&h, ip())
        .await
        .unwrap()
        .unwrap();
    clock.advance(Duration::minutes(1));
    svc.application()
        .deactivate(t.token.id, &admin())
        .await
        .unwrap();
    let _ = svc.application().validate_bearer(&h, ip()).await.unwrap();
    svc.application()
        .block(t.token.id, ip(), &admin())
        .await
        .unwrap();

    let all = svc
        .audit(&AuditFilter::default().token(t.token.id), &admin())
        .await
        .unwrap();
    let kinds: Vec<String> = all.iter().map(|e| format!("{:?}", e.action)).collect();
    assert_eq!(all.len(), 5, "{kinds:?}");
    assert!(matches!(all[0].action, AuditAction::Issued));
    // The use and the refusal are the usage ledger's aggregated rows (count, last, distinct
    // addresses), read before they are written.
    assert!(matches!(
        all[1].action,
        AuditAction::UsedMany {
            count: 1,
            addresses: 1,
            ..
        }
    ));
    assert_eq!(all[1].at, common::T0);
    assert!(matches!(
        all[2].action,
        AuditAction::StateChanged {
            from: State::Active,
            to: State::Disabled
        }
    ));
    // The refusal and the block happened at one instant: an aggregated row not yet written
    // lists after the events stored at its instant.
    assert!(all[3..].iter().any(|e| matches!(
        e.action,
        AuditAction::RefusedMany {
            reason: Rejection::Disabled,
            count: 1,
            ..
        }
    )));
    assert!(
        all[3..]
            .iter()
            .any(|e| matches!(e.action, AuditAction::IpBlocked))
    );
    let by_admin = svc
        .audit(
            &AuditFilter::default().actor(Actor::User(admin().id().clone())),
            &admin(),
        )
        .await
        .unwrap();
    assert_eq!(by_admin.len(), 3);
    let later = svc
        .audit(
            &AuditFilter::default().since(common::T0 + Duration::seconds(30)),
            &admin(),
        )
        .await
        .unwrap();
    assert_eq!(later.len(), 3);
    let dump = format!("{all:?}");
    assert!(!dump.contains(t.secret.expose_secret()));
    assert!(!dump.contains(&t.secret.expose_secret()[12..30]));
}
