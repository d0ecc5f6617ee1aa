//! Who may read which audit trail: an administrator reads all; a technician reads the history
//! of their own auth tokens and never another user's; the kinds no user owns follow listings.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeSet;

use common::{admin, service, service_each_use, user};
use tessera::auth::NewAuth;
use tessera::core::Kind;
use tessera::core::audit::AuditAction;
use tessera::core::id::{
    AccessType, ApplicationName, Description, DeviceId, EndpointId, Permission, TokenId, TokenName,
};
use tessera::core::kind::application::AccessTypes;
use tessera::deployment::NewDeployment;
use tessera::onboarding::NewOnboarding;
use tessera::store::AuditFilter;
use tessera::{Error, Principal, TokenService};
use time::Duration;

fn perms(list: &[&str]) -> BTreeSet<Permission> {
    list.iter()
        .map(|p| Permission::parse(*p).unwrap())
        .collect()
}

/// An auth token for `owner`, issued by `by`, used once for `reset_password`.
async fn auth_token(svc: &TokenService, owner: &str, by: &Principal) -> TokenId {
    let held = perms(&["reset_password"]);
    // Auth names are unique per owner: one per issuer.
    let name = format!("script-by-{}", by.id());
    let t = svc
        .auth()
        .generate(
            NewAuth::new(owner, name.as_str(), ["reset_password"], "1d").unwrap(),
            &held,
            by,
        )
        .await
        .unwrap();
    let token = t.secret.expose_secret();
    svc.auth()
        .check(token, &Permission::parse("reset_password").unwrap(), &held)
        .await
        .unwrap()
        .unwrap();
    // A refusal too: the action is not in scope.
    svc.auth()
        .check(token, &Permission::parse("delete_user").unwrap(), &held)
        .await
        .unwrap()
        .unwrap_err();
    t.token.id
}

/// One token of every unowned kind, each with some history.
async fn unowned(svc: &TokenService) -> Vec<(Kind, TokenId)> {
    let dep = svc
        .deployment()
        .generate(NewDeployment::named("d").unwrap(), &admin())
        .await
        .unwrap();
    svc.deployment()
        .validate(dep.secret.expose_secret())
        .await
        .unwrap()
        .unwrap();
    let onb = svc
        .onboarding()
        .create(NewOnboarding::new("p", "g").unwrap(), &admin())
        .await
        .unwrap();
    svc.onboarding()
        .redeem(
            onb.secret.expose_secret(),
            &DeviceId::parse("dev-1").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let sec = svc
        .endpoint()
        .create_secondary(
            TokenName::parse("erp").unwrap(),
            Description::parse("erp").unwrap(),
            &admin(),
        )
        .await
        .unwrap();
    let orders = EndpointId::parse("/orders").unwrap();
    svc.endpoint()
        .enable(&orders, false, &admin())
        .await
        .unwrap();
    let app = svc
        .application()
        .create(
            ApplicationName::parse("feed").unwrap(),
            Description::parse("d").unwrap(),
            AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
            &admin(),
        )
        .await
        .unwrap();
    vec![
        (Kind::Deployment, dep.token.id),
        (Kind::Onboarding, onb.token.id),
        (Kind::Endpoint, sec.token.id),
        (Kind::Application, app.token.id),
    ]
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
}

#[tokio::test]
async fn auth_history_is_read_by_its_owner_and_admins_only() {
    let (svc, _) = service_each_use(); // one row per use, naming the action
    let (bob, carol) = (user("bob"), user("carol"));
    let bobs = auth_token(&svc, "bob", &bob).await;
    let for_bob = auth_token(&svc, "bob", &admin()).await;
    let carols = auth_token(&svc, "carol", &carol).await;

    for id in [bobs, for_bob] {
        let by_token = AuditFilter::default().token(id);
        // The owner reads it: issued, used (naming the action) and refused.
        let own = svc.audit(&by_token, &bob).await.unwrap();
        assert_eq!(own.len(), 3, "{own:?}");
        assert!(
            own.iter()
                .all(|e| e.subject.owner.as_ref() == Some(bob.id()))
        );
        let used = own.iter().find(|e| e.action == AuditAction::Used).unwrap();
        assert_eq!(
            used.subject.permission.as_ref().map(Permission::as_str),
            Some("reset_password")
        );
        // The admin reads it.
        assert_eq!(svc.audit(&by_token, &admin()).await.unwrap(), own);
        // Another technician may not, however it is asked.
        forbidden(svc.audit(&by_token, &carol).await);
        forbidden(svc.audit(&by_token.clone().since(common::T0), &carol).await);
    }
    // An admin-issued token names its owner and its issuer.
    let issued = svc
        .audit(&AuditFilter::default().token(for_bob), &bob)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(issued.action, AuditAction::Issued);
    assert_eq!(issued.generated_by.as_ref(), Some(admin().id()));

    // Unfiltered, each technician reads only their own auth history.
    let carols_view = svc.audit(&AuditFilter::default(), &carol).await.unwrap();
    assert!(carols_view.iter().all(|e| e.subject.token == Some(carols)));
    assert_eq!(carols_view.len(), 3);
    let bobs_view = svc.audit(&AuditFilter::default(), &bob).await.unwrap();
    assert_eq!(bobs_view.len(), 6);
    assert!(bobs_view.iter().all(|e| e.subject.token != Some(carols)));
    // The admin reads everything.
    assert_eq!(
        svc.audit(&AuditFilter::default(), &admin())
            .await
            .unwrap()
            .len(),
        9
    );
    // A limit counts what the caller may read.
    let first = svc
        .audit(&AuditFilter::default().limit(2), &carol)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|e| e.subject.token == Some(carols)));
}

#[tokio::test]
async fn a_purged_auth_token_stays_its_owners_history() {
    let (svc, clock) = service();
    let (bob, carol) = (user("bob"), user("carol"));
    let id = auth_token(&svc, "bob", &bob).await;
    svc.auth().revoke(id, &bob).await.unwrap();
    clock.advance(Duration::days(60));
    assert_eq!(
        svc.cleanup(Duration::days(30), &admin()).await.unwrap(),
        vec![id]
    );
    let by_token = AuditFilter::default().token(id);
    let own = svc.audit(&by_token, &bob).await.unwrap();
    assert!(own.iter().any(|e| e.action == AuditAction::Purged));
    forbidden(svc.audit(&by_token, &carol).await);
    assert!(
        svc.audit(&AuditFilter::default(), &carol)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unowned_kinds_follow_listings_for_every_role() {
    let (svc, _) = service();
    let tokens = unowned(&svc).await;
    for (kind, id) in tokens {
        let by_token = AuditFilter::default().token(id);
        let all = svc.audit(&by_token, &admin()).await.unwrap();
        assert!(!all.is_empty(), "{kind}");
        assert!(all.iter().all(|e| e.subject.owner.is_none()), "{kind}");
        for who in [user("bob"), user("carol")] {
            assert_eq!(svc.audit(&by_token, &who).await.unwrap(), all, "{kind}");
        }
    }
}
