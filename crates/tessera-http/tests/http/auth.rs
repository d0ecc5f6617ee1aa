//! Auth tokens: the `AuthLayer` and the `Authorized` extractor, as HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::FromRef;
use axum::routing::post;
use axum::{Extension, Router};
use http::Method;
use tessera::auth::{AuthAccess, NewAuth};
use tessera::core::id::{Permission, TokenId, TokenName, UserId};
use tessera::core::kind::auth::{Expiry, Scope};
use tessera_http::{Action, AuthGuard, Authorized, BoxError, Permissions};
use time::Duration;

use crate::common::{CHALLENGE, INSUFFICIENT_SCOPE, INVALID_REQUEST, INVALID_TOKEN, World};

fn perm(p: &str) -> Permission {
    Permission::parse(p).unwrap()
}

/// The application's user directory: what each user holds now; `None` means it is down.
type Directory = Arc<Mutex<Option<BTreeMap<String, BTreeSet<Permission>>>>>;

fn directory() -> Directory {
    let mut users = BTreeMap::new();
    users.insert(
        "tech-1".to_owned(),
        [perm("reset_password"), perm("unlock_account")].into(),
    );
    Arc::new(Mutex::new(Some(users)))
}

/// What `user` holds in the directory, or the directory's outage.
fn held(dir: &Directory, user: &UserId) -> Result<BTreeSet<Permission>, BoxError> {
    dir.lock()
        .unwrap()
        .as_ref()
        .map(|users| users.get(user.as_str()).cloned().unwrap_or_default())
        .ok_or_else(|| BoxError::from("user directory at ldap.internal is unreachable"))
}

/// `user` loses every permission in the directory.
fn withdraw_all(dir: &Directory, user: &str) {
    dir.lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .insert(user.to_owned(), BTreeSet::new());
}

fn permissions(dir: &Directory) -> Permissions {
    let dir = Arc::clone(dir);
    Permissions::from_fn(move |user: UserId| {
        let held = held(&dir, &user);
        async move { held }
    })
}

/// A counter for unique token names.
static NAMES: AtomicUsize = AtomicUsize::new(0);

async fn issue(w: &World, scope: &[&str], expiry: Expiry) -> (TokenId, String) {
    let delegated: BTreeSet<Permission> = [perm("reset_password"), perm("unlock_account")].into();
    let spec = NewAuth {
        owner: UserId::parse("tech-1").unwrap(),
        // Auth names are unique per owner: each token its own.
        name: TokenName::parse(format!(
            "helpdesk script {}",
            NAMES.fetch_add(1, Ordering::Relaxed)
        ))
        .unwrap(),
        scope: Scope::new(scope.iter().map(|p| perm(p))).unwrap(),
        expiry,
    };
    let issued = w
        .service
        .auth()
        .generate(spec, &delegated, &w.admin)
        .await
        .unwrap();
    (issued.token.id, w.secret(issued.secret.expose_secret()))
}

struct UnlockAccount;
impl Action for UnlockAccount {
    const PERMISSION: &'static str = "unlock_account";
}

struct Broken;
impl Action for Broken {
    const PERMISSION: &'static str = "";
}

#[derive(Clone)]
struct AppState {
    guard: AuthGuard,
}

impl FromRef<AppState> for AuthGuard {
    fn from_ref(state: &AppState) -> Self {
        state.guard.clone()
    }
}

fn app(w: &World, dir: &Directory) -> Router {
    let guard = AuthGuard::new(w.service.clone(), permissions(dir));
    Router::new()
        // As a layer on one route.
        .route(
            "/reset",
            post(|Extension(access): Extension<AuthAccess>| async move {
                format!("reset by {}", access.owner())
            })
            .layer(guard.require(perm("reset_password"))),
        )
        // As an extractor.
        .route(
            "/unlock",
            post(|auth: Authorized<UnlockAccount>| async move {
                format!("unlock by {}", auth.access.owner())
            }),
        )
        .route("/broken", post(|_: Authorized<Broken>| async { "never" }))
        .with_state(AppState { guard })
}

#[tokio::test]
async fn a_token_in_scope_whose_owner_holds_the_action_passes() {
    let w = World::new();
    let dir = directory();
    let (_, token) = issue(&w, &["reset_password", "unlock_account"], Expiry::Days(30)).await;
    let app = app(&w, &dir);

    assert_eq!(
        w.bearer(&app, Method::POST, "/reset", &token)
            .await
            .assert_ok(),
        "reset by tech-1"
    );
    assert_eq!(
        w.bearer(&app, Method::POST, "/unlock", &token)
            .await
            .assert_ok(),
        "unlock by tech-1"
    );
    w.assert_clean();
}

#[tokio::test]
async fn scope_and_withdrawn_permissions_are_insufficient_scope() {
    let w = World::new();
    let dir = directory();
    let (_, token) = issue(&w, &["reset_password"], Expiry::Days(30)).await;
    let app = app(&w, &dir);

    // Outside the token's scope.
    w.bearer(&app, Method::POST, "/unlock", &token)
        .await
        .assert_refused(403, INSUFFICIENT_SCOPE);
    w.assert_logged_reason("insufficient_scope");

    // In scope, but the user lost the permission since.
    withdraw_all(&dir, "tech-1");
    w.bearer(&app, Method::POST, "/reset", &token)
        .await
        .assert_refused(403, INSUFFICIENT_SCOPE);
    w.assert_logged_reason("permission_withdrawn");
    w.assert_clean();
}

#[tokio::test]
async fn expired_revoked_and_unknown_tokens_are_invalid_alike() {
    let w = World::new();
    let dir = directory();
    let (_, short) = issue(&w, &["reset_password"], Expiry::Minutes(30)).await;
    let (revoked_id, revoked) = issue(&w, &["reset_password"], Expiry::Days(1)).await;
    w.service.auth().revoke(revoked_id, &w.admin).await.unwrap();
    let unknown = w.secret(
        tessera::Secret::generate(tessera::Kind::Auth)
            .unwrap()
            .expose_secret(),
    );
    let app = app(&w, &dir);

    w.advance(Duration::hours(1));
    for (token, reason) in [
        (&short, "expired"),
        (&revoked, "revoked"),
        (&unknown, "not_found"),
    ] {
        for path in ["/reset", "/unlock"] {
            w.bearer(&app, Method::POST, path, token)
                .await
                .assert_refused(401, INVALID_TOKEN);
        }
        w.assert_logged_reason(reason);
    }
    for path in ["/reset", "/unlock"] {
        w.send(&app, Method::POST, path, &[])
            .await
            .assert_refused(401, CHALLENGE);
        w.send(&app, Method::POST, path, &["Bearer "])
            .await
            .assert_refused(400, INVALID_REQUEST);
    }
    w.assert_clean();
}

#[tokio::test]
async fn failing_permissions_or_store_are_503_and_a_bad_action_is_500() {
    let w = World::new();
    let dir = directory();
    let (_, token) = issue(&w, &["reset_password", "unlock_account"], Expiry::Days(1)).await;
    let up_app = app(&w, &dir);

    w.bearer(&up_app, Method::POST, "/broken", &token)
        .await
        .assert_refused(500, None);

    *dir.lock().unwrap() = None;
    for path in ["/reset", "/unlock"] {
        w.bearer(&up_app, Method::POST, path, &token)
            .await
            .assert_refused(503, None);
    }
    let lines = w.logs(tessera_http::LOG_TARGET);
    assert!(
        lines.iter().any(|l| l.text.contains("ldap.internal")),
        "{lines:?}"
    );

    let down = World::down();
    down.secret(&token);
    let down_app = app(&down, &directory());
    for path in ["/reset", "/unlock"] {
        down.bearer(&down_app, Method::POST, path, &token)
            .await
            .assert_refused(503, None);
    }
    w.assert_clean();
    down.assert_clean();
}

/// A permissions callback that answers only after waiting (a user directory over the network):
/// the guard's admission is not done when the layer is called, and the request still reaches
/// the handler, or gets its refusal, once it is.
#[tokio::test]
async fn a_permissions_callback_that_waits_admits_and_refuses_alike() {
    let w = World::new();
    let dir = directory();
    let (_, token) = issue(&w, &["reset_password"], Expiry::Days(30)).await;
    let waited = Arc::new(AtomicUsize::new(0));
    let slow = {
        let (dir, waited) = (Arc::clone(&dir), Arc::clone(&waited));
        Permissions::from_fn(move |user: UserId| {
            let (dir, waited) = (Arc::clone(&dir), Arc::clone(&waited));
            async move {
                // Pending at least once: the admission cannot finish in the layer's `call`.
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                waited.fetch_add(1, Ordering::SeqCst);
                held(&dir, &user)
            }
        })
    };
    let guard = AuthGuard::new(w.service.clone(), slow);
    let app = Router::new().route(
        "/reset",
        post(|Extension(access): Extension<AuthAccess>| async move {
            format!("reset by {}", access.owner())
        })
        .layer(guard.require(perm("reset_password"))),
    );

    assert_eq!(
        w.bearer(&app, Method::POST, "/reset", &token)
            .await
            .assert_ok(),
        "reset by tech-1"
    );
    assert_eq!(waited.load(Ordering::SeqCst), 1);
    // The owner no longer holds the action: refused after the wait.
    withdraw_all(&dir, "tech-1");
    w.bearer(&app, Method::POST, "/reset", &token)
        .await
        .assert_refused(403, INSUFFICIENT_SCOPE);
    // The directory is down: 503 after the wait.
    *dir.lock().unwrap() = None;
    let answer = w.bearer(&app, Method::POST, "/reset", &token).await;
    assert_eq!(answer.status.as_u16(), 503, "{answer:?}");
    assert_eq!(waited.load(Ordering::SeqCst), 3);
    w.assert_clean();
}
