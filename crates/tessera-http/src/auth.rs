//! Auth tokens: a user's scoped REST token, checked for one action against what the user holds
//! now ([`AuthGuard`], as the [`AuthLayer`] or the [`Authorized`] extractor).

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use http::HeaderMap;
use http::request::Parts;
use tessera::auth::AuthAccess;
use tessera::core::id::{Permission, UserId};
use tessera::{Access, Outcome, Rejection, RequestContext, TokenService};
use tower::Layer;

use crate::bearer;
use crate::guarded::{Admit, Guarded};
use crate::refusal::{LOG_TARGET, Refusal, misconfigured, rejected, unavailable};

const KIND: &str = "auth";

/// An error from the application's [`Permissions`] callback.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type HeldFuture = Pin<Box<dyn Future<Output = Result<BTreeSet<Permission>, BoxError>> + Send>>;

/// The application's answer to "what does this user hold now?", asked on every auth-token
/// request: a token is accepted only for an action in its scope that its owner still holds.
///
/// An error from the callback (the user directory is down) makes the request a 503; the error
/// is logged at WARN under [`LOG_TARGET`](crate::LOG_TARGET). A user the application no longer
/// knows should get an empty set (then every request is 403 `insufficient_scope`), or the
/// application revokes the user's tokens.
#[derive(Clone)]
pub struct Permissions(Arc<dyn Fn(UserId) -> HeldFuture + Send + Sync>);

impl Permissions {
    /// The callback `f`, called with the token's owner.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeSet;
    /// use std::convert::Infallible;
    /// use tessera::core::id::Permission;
    /// use tessera_http::Permissions;
    ///
    /// let permissions = Permissions::from_fn(|user| async move {
    ///     let mut held = BTreeSet::new();
    ///     if user.as_str() == "alice" {
    ///         held.insert(Permission::parse("reset_password").unwrap_or_else(|e| panic!("{e}")));
    ///     }
    ///     Ok::<_, Infallible>(held)
    /// });
    /// ```
    pub fn from_fn<F, Fut, E>(f: F) -> Self
    where
        F: Fn(UserId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BTreeSet<Permission>, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Self(Arc::new(move |user| {
            let held = f(user);
            Box::pin(async move { held.await.map_err(Into::into) })
        }))
    }

    async fn held(&self, user: UserId) -> Result<BTreeSet<Permission>, BoxError> {
        (self.0)(user).await
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permissions").finish_non_exhaustive()
    }
}

/// Checks auth tokens: the service and the application's [`Permissions`] callback.
///
/// Use it as a layer per route with [`require`](Self::require), or put it in the router's state
/// (`AuthGuard: FromRef<S>`) and take the [`Authorized`] extractor in handlers. Answers are those
/// of [`ApplicationLayer`](crate::ApplicationLayer), plus 403 `Bearer error="insufficient_scope"`
/// for a valid token whose scope or owner lacks the action.
#[derive(Clone, Debug)]
pub struct AuthGuard {
    service: TokenService,
    permissions: Permissions,
}

impl AuthGuard {
    /// Check auth tokens with `service`, asking `permissions` what their owners hold.
    pub fn new(service: TokenService, permissions: Permissions) -> Self {
        Self {
            service,
            permissions,
        }
    }

    /// A layer that lets through only requests whose token allows `action`, with
    /// [`AuthAccess`] (token id and owner) in the request extensions.
    pub fn require(&self, action: Permission) -> AuthLayer {
        AuthLayer {
            required: Arc::new(Required {
                guard: self.clone(),
                action,
            }),
        }
    }

    /// Check the bearer token in `headers` for `action`.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to answer with; the exact reason is logged at DEBUG.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        action: &Permission,
    ) -> Result<AuthAccess, Refusal> {
        let token = bearer::token(headers, KIND)?;
        let owner = match self.service.auth().owner_of(token).await {
            Ok(Some(owner)) => owner,
            Ok(None) => return Err(rejected(KIND, Rejection::NotFound, None)),
            Err(e) => return Err(unavailable(KIND, &e)),
        };
        let held = match self.permissions.held(owner).await {
            Ok(held) => held,
            Err(e) => return Err(unavailable(KIND, &*e)),
        };
        let request = RequestContext::new().action(action, &held);
        let access = match self.service.validate(token, &request).await {
            Outcome::Accepted(Access::Auth(access)) => access,
            // The request admits auth tokens alone.
            Outcome::Accepted(_) => return Err(rejected(KIND, Rejection::NotFound, None)),
            Outcome::Refused(rejection) => return Err(rejected(KIND, rejection, None)),
            Outcome::Failed(e) => return Err(unavailable(KIND, &e)),
        };
        tracing::trace!(target: LOG_TARGET, kind = KIND, %action, token_id = %access.token, owner = %access.owner(), "request admitted");
        Ok(access)
    }
}

/// Requires one action of an auth token: made by [`AuthGuard::require`].
#[derive(Clone, Debug)]
pub struct AuthLayer {
    required: Arc<Required>,
}

/// What an [`AuthLayer`] checks with: the guard and the action.
#[derive(Debug)]
struct Required {
    guard: AuthGuard,
    action: Permission,
}

impl Admit for Required {
    async fn admit(&self, parts: &mut Parts) -> Result<(), Refusal> {
        bearer::hide(&mut parts.headers);
        let access = self.guard.authorize(&parts.headers, &self.action).await?;
        parts.extensions.insert(access);
        Ok(())
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded::new(inner, Arc::clone(&self.required) as _)
    }
}

/// An action a handler requires, named at the type level for [`Authorized`].
pub trait Action {
    /// The permission (`reset_password`); a name that is not a valid [`Permission`] makes every
    /// request a 500.
    const PERMISSION: &'static str;
}

/// An axum extractor: the request's auth token allows the action `A`. The router's state must
/// give an [`AuthGuard`] (`AuthGuard: FromRef<S>`); a refused request gets the [`Refusal`].
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::post};
/// use tessera_http::{Action, AuthGuard, Authorized};
///
/// struct ResetPassword;
/// impl Action for ResetPassword {
///     const PERMISSION: &'static str = "reset_password";
/// }
///
/// async fn reset(auth: Authorized<ResetPassword>) -> String {
///     format!("password reset on behalf of {}", auth.access.owner())
/// }
///
/// fn api(guard: AuthGuard) -> Router {
///     Router::new().route("/reset", post(reset)).with_state(guard)
/// }
/// ```
pub struct Authorized<A> {
    /// The token and the user the request acts for.
    pub access: AuthAccess,
    action: PhantomData<fn() -> A>,
}

impl<A> fmt::Debug for Authorized<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorized")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl<S, A> FromRequestParts<S> for Authorized<A>
where
    A: Action,
    AuthGuard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let guard = AuthGuard::from_ref(state);
        let Ok(action) = Permission::parse(A::PERMISSION) else {
            return Err(misconfigured(
                KIND,
                "Action::PERMISSION is not a valid permission name",
            ));
        };
        bearer::hide(&mut parts.headers);
        let access = guard.authorize(&parts.headers, &action).await?;
        Ok(Self {
            access,
            action: PhantomData,
        })
    }
}
