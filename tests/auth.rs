//! Auth tokens through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeSet;

use common::{admin, service, user};
use tessera::auth::NewAuth;
use tessera::core::id::{Permission, UserId};
use tessera::core::validate::OAuthError;
use tessera::{Error, Rejection};
use time::Duration;

fn perm(s: &str) -> Permission {
    Permission::parse(s).unwrap()
}

fn perms(list: &[&str]) -> BTreeSet<Permission> {
    list.iter().map(|p| perm(p)).collect()
}

fn spec(owner: &str, name: &str, scope: &[&str], expiry: &str) -> NewAuth {
    NewAuth::new(owner, name, scope.iter().copied(), expiry).unwrap()
}

#[tokio::test]
async fn technician_generates_own_scoped_token() {
    let (svc, clock) = service();
    let a = svc.auth();
    let bob = user("bob");
    let delegated = perms(&["reset_password", "unlock_account", "create_user"]);
    let t = a
        .generate(
            spec(
                "bob",
                "helpdesk-script",
                &["reset_password", "unlock_account"],
                "12h",
            ),
            &delegated,
            &bob,
        )
        .await
        .unwrap();
    assert_eq!(t.token.expires_at, Some(common::T0 + Duration::hours(12)));
    assert_eq!(t.token.generated_by, None);
    let tok = t.secret.expose_secret();

    let ok = a
        .check(tok, &perm("reset_password"), &delegated)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.owner().as_str(), "bob");
    // Outside the scope, though the user holds it.
    let r = a
        .check(tok, &perm("create_user"), &delegated)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(r, Rejection::InsufficientScope);
    assert_eq!(r.oauth(), OAuthError::InsufficientScope);
    // In scope, but the user no longer holds it.
    let now_held = perms(&["unlock_account"]);
    let r = a
        .check(tok, &perm("reset_password"), &now_held)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(r, Rejection::PermissionWithdrawn);
    assert_eq!(r.oauth(), OAuthError::InsufficientScope);
    assert_eq!(a.owner_of(tok).await.unwrap().unwrap().as_str(), "bob");

    clock.advance(Duration::hours(12));
    let r = a
        .check(tok, &perm("unlock_account"), &delegated)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(r, Rejection::Expired);
    assert_eq!(r.oauth(), OAuthError::InvalidToken);
}

#[tokio::test]
async fn scope_must_be_delegated_and_expiry_in_future() {
    let (svc, _) = service();
    let bob = user("bob");
    let delegated = perms(&["reset_password"]);
    let e = svc
        .auth()
        .generate(spec("bob", "x", &["delete_user"], "30d"), &delegated, &bob)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("delete_user"), "{e}");
    let e = svc
        .auth()
        .generate(
            spec("bob", "x", &["reset_password"], "2020-01-01"),
            &delegated,
            &bob,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Core(_)));
    let ok = svc
        .auth()
        .generate(
            spec("bob", "x", &["reset_password"], "2027-01-31"),
            &delegated,
            &bob,
        )
        .await
        .unwrap();
    assert_eq!(
        ok.token.expires_at,
        Some(time::macros::datetime!(2027-01-31 0:00 UTC))
    );
}

#[tokio::test]
async fn admin_generates_for_others_and_manages_everyone() {
    let (svc, _) = service();
    let a = svc.auth();
    let root = admin();
    let bob = user("bob");
    let carol = user("carol");
    let delegated = perms(&["reset_password", "unlock_account"]);
    let for_bob = a
        .generate(
            spec("bob", "from-admin", &["unlock_account"], "90m"),
            &delegated,
            &root,
        )
        .await
        .unwrap();
    assert_eq!(
        for_bob.token.generated_by.as_ref().map(UserId::as_str),
        Some("root")
    );
    let own = a
        .generate(
            spec("bob", "own", &["reset_password"], "1d"),
            &delegated,
            &bob,
        )
        .await
        .unwrap();
    let carols = a
        .generate(
            spec("carol", "c", &["reset_password"], "1d"),
            &delegated,
            &carol,
        )
        .await
        .unwrap();

    // A non-admin cannot generate for, list, revoke or delete another user's tokens.
    assert!(matches!(
        a.generate(
            spec("carol", "x", &["reset_password"], "1d"),
            &delegated,
            &bob
        )
        .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        a.list(Some(carol.id()), &bob).await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        a.revoke(carols.token.id, &bob).await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        a.delete_many(&[own.token.id, carols.token.id], &bob).await,
        Err(Error::Forbidden { .. })
    ));
    // ...and the refused bulk delete deleted nothing.
    assert!(
        a.check(
            own.secret.expose_secret(),
            &perm("reset_password"),
            &delegated
        )
        .await
        .unwrap()
        .is_ok()
    );

    let bobs = a.list(None, &bob).await.unwrap();
    assert_eq!(bobs.len(), 2);
    let by_admin = bobs
        .iter()
        .find(|l| l.token.id == for_bob.token.id)
        .unwrap();
    assert_eq!(
        by_admin.token.generated_by.as_ref().map(UserId::as_str),
        Some("root")
    );
    assert_eq!(a.list(None, &root).await.unwrap().len(), 3);
    assert_eq!(a.list(Some(carol.id()), &root).await.unwrap().len(), 1);

    let n = a
        .delete_many(&[for_bob.token.id, own.token.id, carols.token.id], &root)
        .await
        .unwrap();
    assert_eq!(n, 3);
    for t in [&for_bob, &own, &carols] {
        let r = a
            .check(
                t.secret.expose_secret(),
                &perm("reset_password"),
                &delegated,
            )
            .await
            .unwrap();
        assert_eq!(r.unwrap_err(), Rejection::Deleted);
    }
    // Audit records the admin as generated_by on the issue event.
    let events = svc
        .audit(
            &tessera::store::AuditFilter::default().token(for_bob.token.id),
            &admin(),
        )
        .await
        .unwrap();
    assert_eq!(
        events[0].generated_by.as_ref().map(UserId::as_str),
        Some("root")
    );
}

#[tokio::test]
async fn own_revoke() {
    let (svc, _) = service();
    let bob = user("bob");
    let delegated = perms(&["reset_password"]);
    let t = svc
        .auth()
        .generate(
            spec("bob", "x", &["reset_password"], "1d"),
            &delegated,
            &bob,
        )
        .await
        .unwrap();
    svc.auth().revoke(t.token.id, &bob).await.unwrap();
    let r = svc
        .auth()
        .check(
            t.secret.expose_secret(),
            &perm("reset_password"),
            &delegated,
        )
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), Rejection::Revoked);
}

/// Auth token names are unique per owner, ignoring case, among tokens in force: a second
/// `CI` of alice's is refused with `AlreadyExists` (also when an administrator generates it),
/// bob may have his own, and a deleted token's name is free again.
#[tokio::test]
async fn names_are_unique_per_owner_ignoring_case() {
    let (svc, _) = service();
    let a = svc.auth();
    let held = perms(&["reset_password"]);
    let first = a
        .generate(
            spec("alice", "CI", &["reset_password"], "30d"),
            &held,
            &user("alice"),
        )
        .await
        .unwrap();
    for (name, by) in [
        ("CI", user("alice")),
        ("ci", user("alice")),
        ("Ci", admin()),
    ] {
        let again = a
            .generate(spec("alice", name, &["reset_password"], "30d"), &held, &by)
            .await;
        assert!(
            matches!(
                again,
                Err(Error::Store(
                    tessera::store::StoreError::AlreadyExists { .. }
                ))
            ),
            "{name}: {again:?}"
        );
    }
    a.generate(
        spec("bob", "ci", &["reset_password"], "30d"),
        &held,
        &user("bob"),
    )
    .await
    .unwrap();
    a.delete_many(&[first.token.id], &user("alice"))
        .await
        .unwrap();
    a.generate(
        spec("alice", "ci", &["reset_password"], "30d"),
        &held,
        &user("alice"),
    )
    .await
    .unwrap();
    let active = a
        .list(None, &admin())
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.token.state == tessera::core::lifecycle::State::Active)
        .count();
    assert_eq!(active, 2, "alice's new CI and bob's ci");
}
