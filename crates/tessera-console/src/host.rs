//! [`Host`]: what the application embedding the consoles tells them about its users.

use std::collections::BTreeSet;
use std::fmt;

use axum::http::request::Parts;
use tessera::Principal;
use tessera::core::id::{Permission, UserId};

/// The application's side of the consoles: who is signed in, what each user may do, and who
/// the technicians are.
///
/// The consoles never authenticate anyone themselves: every request first asks
/// [`principal`](Self::principal), and a refusal is answered before any page is drawn.
/// Administrators ([`Principal::admin`]) reach every console; other users reach only their own
/// auth tokens (My Account › Active Authtokens).
///
/// # Examples
///
/// ```
/// use std::collections::BTreeSet;
/// use axum::http::request::Parts;
/// use tessera::Principal;
/// use tessera::core::id::{Permission, UserId};
/// use tessera_console::{Host, Refusal};
///
/// #[derive(Debug)]
/// struct SignedIn;
///
/// #[async_trait::async_trait]
/// impl Host for SignedIn {
///     async fn principal(&self, request: &Parts) -> Result<Principal, Refusal> {
///         // A real host reads its session here.
///         match request.headers.get("x-user").and_then(|v| v.to_str().ok()) {
///             Some(user) => Principal::admin(user).map_err(|_| Refusal::Unauthenticated),
///             None => Err(Refusal::SignIn(String::from("/login"))),
///         }
///     }
///     async fn delegated(&self, _user: &UserId) -> BTreeSet<Permission> {
///         BTreeSet::new()
///     }
///     async fn technicians(&self) -> Vec<UserId> {
///         Vec::new()
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Host: fmt::Debug + Send + Sync + 'static {
    /// Who makes this request, or why nobody may.
    async fn principal(&self, request: &Parts) -> Result<Principal, Refusal>;

    /// The actions delegated to `user` now: an auth token's scope is chosen among them, and
    /// checked against them when it is generated.
    async fn delegated(&self, user: &UserId) -> BTreeSet<Permission>;

    /// The technicians an administrator may generate auth tokens for.
    async fn technicians(&self) -> Vec<UserId>;
}

/// Why [`Host::principal`] refused a request.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Refusal {
    /// Nobody is signed in: send the browser to this sign-in address (303 See Other).
    SignIn(String),
    /// Nobody is signed in and there is no sign-in page: 401.
    Unauthenticated,
    /// Someone is signed in but may not use the consoles at all: 403.
    Forbidden,
}
