//! [`TokenService::validate`]: one validation call for every kind, taking what the request
//! carries ([`RequestContext`]) and answering one [`Outcome`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use tessera_core::Kind;
use tessera_core::id::{DeviceId, EndpointId, Permission, TokenId};
use tessera_core::kind::endpoint::Method;
use tessera_core::validate::{Accepted, Rejection};
use tracing::Instrument;

use crate::application::ApplicationAccess;
use crate::auth::AuthAccess;
use crate::endpoint::EndpointAccess;
use crate::error::{Error, Result};
use crate::onboarding::Enrolled;
use crate::service::TokenService;

/// What a request carries, and so which kinds of token it admits.
///
/// Each kind is admitted only when the request says what that kind is checked against:
///
/// | call | admits | checked against |
/// |---|---|---|
/// | [`application`](Self::application) | application bearer tokens | the client address (logged per IP, blockable) |
/// | [`endpoint`](Self::endpoint) | endpoint primaries and mapped secondaries | the endpoint and method |
/// | [`action`](Self::action) | auth tokens | the action, and what the user holds now |
/// | [`installer`](Self::installer) | deployment tokens | nothing more |
/// | [`device`](Self::device) | onboarding tokens, **redeemed** (one use consumed) | the device |
///
/// A token of a kind the request does not admit is refused as malformed or not found, never
/// accepted, so a route guarded for one kind cannot be opened with another. A prefixed token
/// names its kind; an unprefixed one (the endpoint kind's 64-character spelling, an onboarding
/// short code) is read as the first admitted of endpoint, onboarding.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use tessera::RequestContext;
/// use tessera::core::id::EndpointId;
/// use tessera::core::kind::endpoint::Method;
///
/// let orders = EndpointId::parse("/orders")?;
/// let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// // An endpoint that also takes integrations' application tokens.
/// let request = RequestContext::new()
///     .endpoint(&orders, Method::Post)
///     .application(client);
/// assert!(request.admits(tessera::Kind::Endpoint) && request.admits(tessera::Kind::Application));
/// assert!(!request.admits(tessera::Kind::Auth));
/// # Ok::<(), tessera::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestContext<'a> {
    client: Option<IpAddr>,
    application: bool,
    installer: bool,
    endpoint: Option<(&'a EndpointId, Method)>,
    action: Option<(&'a Permission, &'a BTreeSet<Permission>)>,
    device: Option<&'a DeviceId>,
}

impl<'a> RequestContext<'a> {
    /// A request that admits no token yet.
    pub const fn new() -> Self {
        Self {
            client: None,
            application: false,
            installer: false,
            endpoint: None,
            action: None,
            device: None,
        }
    }

    /// The client's address, recorded with endpoint uses (the application kind takes it in
    /// [`application`](Self::application)).
    #[must_use]
    pub const fn client(mut self, ip: IpAddr) -> Self {
        self.client = Some(ip);
        self
    }

    /// Admit application bearer tokens from `client`: an accepted use is counted in the
    /// token's per-IP log, and a blocked address is refused.
    #[must_use]
    pub const fn application(mut self, client: IpAddr) -> Self {
        self.client = Some(client);
        self.application = true;
        self
    }

    /// Admit endpoint tokens for a call to `endpoint` with `method`.
    #[must_use]
    pub const fn endpoint(mut self, endpoint: &'a EndpointId, method: Method) -> Self {
        self.endpoint = Some((endpoint, method));
        self
    }

    /// Admit auth tokens for `action`, on behalf of an owner who holds `held` now (the
    /// application's own permission check, asked per request).
    #[must_use]
    pub const fn action(mut self, action: &'a Permission, held: &'a BTreeSet<Permission>) -> Self {
        self.action = Some((action, held));
        self
    }

    /// Admit deployment tokens (an installer).
    #[must_use]
    pub const fn installer(mut self) -> Self {
        self.installer = true;
        self
    }

    /// Admit onboarding tokens for `device`: an accepted token is redeemed, consuming one use.
    #[must_use]
    pub const fn device(mut self, device: &'a DeviceId) -> Self {
        self.device = Some(device);
        self
    }

    /// Whether tokens of `kind` are admitted.
    pub const fn admits(&self, kind: Kind) -> bool {
        match kind {
            Kind::Deployment => self.installer,
            Kind::Onboarding => self.device.is_some(),
            Kind::Endpoint => self.endpoint.is_some(),
            Kind::Auth => self.action.is_some(),
            Kind::Application => self.application,
        }
    }

    /// The client address, if given.
    pub const fn client_ip(&self) -> Option<IpAddr> {
        self.client
    }

    /// The kind `token` is read as: the one its prefix names if admitted, else the first
    /// admitted (whose parser then refuses a foreign prefix as malformed).
    fn kind_for(&self, token: &str) -> Option<Kind> {
        const ORDER: [Kind; 5] = [
            Kind::Endpoint,
            Kind::Onboarding,
            Kind::Application,
            Kind::Auth,
            Kind::Deployment,
        ];
        ORDER
            .into_iter()
            .find(|k| self.admits(*k) && token.starts_with(k.prefix()))
            .or_else(|| ORDER.into_iter().find(|k| self.admits(*k)))
    }
}

/// What one accepted token grants, by kind.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Access {
    /// A deployment token an installer presented.
    Deployment(Accepted),
    /// An onboarding token, redeemed for a device.
    Onboarding(Enrolled),
    /// An endpoint primary or mapped secondary.
    Endpoint(EndpointAccess),
    /// An auth token, for its owner.
    Auth(AuthAccess),
    /// An application bearer token.
    Application(ApplicationAccess),
}

impl Access {
    /// The token that carried the request.
    pub const fn token(&self) -> TokenId {
        match self {
            Self::Deployment(a) => a.token,
            Self::Onboarding(e) => e.token,
            Self::Endpoint(e) => e.token,
            Self::Auth(a) => a.token,
            Self::Application(a) => a.token,
        }
    }

    /// Its kind.
    pub const fn kind(&self) -> Kind {
        match self {
            Self::Deployment(_) => Kind::Deployment,
            Self::Onboarding(_) => Kind::Onboarding,
            Self::Endpoint(_) => Kind::Endpoint,
            Self::Auth(_) => Kind::Auth,
            Self::Application(_) => Kind::Application,
        }
    }
}

/// The answer of [`TokenService::validate`]: matched once.
///
/// ```
/// # use tessera::{Outcome, Access};
/// fn answer(outcome: Outcome) -> (u16, String) {
///     match outcome {
///         Outcome::Accepted(access) => (200, format!("hello, token {}", access.token())),
///         // One RFC 6750 answer outside; the exact reason is in the audit trail and the logs.
///         Outcome::Refused(rejection) => {
///             let e = rejection.oauth();
///             (e.status(), e.as_str().to_owned())
///         }
///         // The store failed: nothing was decided; retry later.
///         Outcome::Failed(_) => (503, "try again later".to_owned()),
///     }
/// }
/// ```
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// The token is accepted; its use was recorded.
    Accepted(Access),
    /// The token is refused, for this reason (send [`Rejection::oauth`] outside, nothing
    /// more).
    Refused(Rejection),
    /// The store failed and nothing was decided (fail closed: refuse, and retry later).
    Failed(Error),
}

impl Outcome {
    /// Whether accepted.
    pub const fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted(_))
    }

    /// As the per-kind methods answer: the store's error outside, the refusal inside.
    ///
    /// # Errors
    ///
    /// The store's error of [`Outcome::Failed`].
    pub fn into_result(self) -> Result<core::result::Result<Access, Rejection>> {
        match self {
            Self::Accepted(a) => Ok(Ok(a)),
            Self::Refused(r) => Ok(Err(r)),
            Self::Failed(e) => Err(e),
        }
    }

    /// A stable snake-case code: `accepted`, the rejection's [code](Rejection::code), or
    /// `error` (metrics and logs use it).
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Refused(r) => r.code(),
            Self::Failed(_) => "error",
        }
    }

    pub(crate) fn from_result<T: Into<Access>>(
        r: Result<core::result::Result<T, Rejection>>,
    ) -> Self {
        match r {
            Ok(Ok(a)) => Self::Accepted(a.into()),
            Ok(Err(rej)) => Self::Refused(rej),
            Err(e) => Self::Failed(e),
        }
    }
}

macro_rules! access_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for Access {
            fn from(a: $ty) -> Self {
                Self::$variant(a)
            }
        }
    )*};
}
access_from!(
    Deployment(Accepted),
    Onboarding(Enrolled),
    Endpoint(EndpointAccess),
    Auth(AuthAccess),
    Application(ApplicationAccess)
);

/// Unpack the answer of a per-kind convenience: its own access type, or the refusal, or the
/// store's error.
pub(crate) fn narrow<T>(
    outcome: Outcome,
    pick: impl FnOnce(Access) -> Option<T>,
) -> Result<core::result::Result<T, Rejection>> {
    match outcome {
        // The request admitted one kind: any access is of that kind.
        Outcome::Accepted(a) => Ok(pick(a).ok_or(Rejection::NotFound)),
        Outcome::Refused(r) => Ok(Err(r)),
        Outcome::Failed(e) => Err(e),
    }
}

impl TokenService {
    /// Validate `token` for a request carrying `request`: one call for every kind, one
    /// [`Outcome`] to match.
    ///
    /// The token is read as the kind its prefix names, if the request admits it (see
    /// [`RequestContext`]); an accepted use is recorded as that kind records it (last use, IP
    /// log, endpoint traffic, a consumed onboarding use, the audit trail when configured).
    /// A refusal is a value; [`Rejection::oauth`] is the one thing to say outside.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use tessera::core::digest::{KeyId, Pepper, Peppers};
    /// use tessera::core::id::{AccessType, ApplicationName, Description};
    /// use tessera::core::kind::application::AccessTypes;
    /// use tessera::{memory::MemoryStore, Access, Outcome, Principal, RequestContext, TokenService};
    ///
    /// // Key id 1 is stored beside every digest, so the pepper can be rotated later.
    /// let service = TokenService::new(MemoryStore::new(), Peppers::new(Pepper::generate(KeyId(1))?));
    /// let issued = service
    ///     .application()
    ///     .create(
    ///         ApplicationName::parse("siem")?,
    ///         Description::parse("collector")?,
    ///         AccessTypes::new([AccessType::parse("third-party-feeds")?])?,
    ///         &Principal::admin("alice")?,
    ///     )
    ///     .await?;
    ///
    /// let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    /// let request = RequestContext::new().application(client);
    /// match service.validate(issued.secret.expose_secret(), &request).await {
    ///     Outcome::Accepted(Access::Application(a)) => assert_eq!(a.name().as_str(), "siem"),
    ///     other => panic!("{other:?}"),
    /// }
    /// let refused = service.validate("tsr_app_not-a-token", &request).await;
    /// assert!(matches!(refused, Outcome::Refused(tessera::Rejection::Malformed)));
    /// # Ok::<(), tessera::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn validate(&self, token: &str, request: &RequestContext<'_>) -> Outcome {
        let Some(kind) = request.kind_for(token) else {
            // A request admitting no kind: a caller's set-up error, refused like any token.
            return Outcome::Refused(Rejection::NotFound);
        };
        let observer = &self.inner.observer;
        let started = observer.start();
        // The dispatch future is built in place in one branch or the other (never moved
        // through a wrapper that would hold a second copy of it): a validation's future stays
        // the size of its largest kind's.
        let outcome = match observer.span(kind) {
            None => self.dispatch(kind, token, request).await,
            Some(span) => {
                let begun = std::time::Instant::now();
                let outcome = self
                    .dispatch(kind, token, request)
                    .instrument(span.clone())
                    .await;
                observer.traced(&span, &outcome, begun);
                outcome
            }
        };
        observer.validated(kind, &outcome, started);
        outcome
    }

    async fn dispatch(&self, kind: Kind, token: &str, request: &RequestContext<'_>) -> Outcome {
        match kind {
            Kind::Deployment => Outcome::from_result(self.deployment().accept(token).await),
            // A redemption writes to the store whatever happens; its future (the largest, with
            // the events it commits) goes to the heap so every other validation's stays small.
            Kind::Onboarding => match request.device {
                Some(device) => {
                    Outcome::from_result(Box::pin(self.onboarding().accept(token, device)).await)
                }
                None => Outcome::Refused(Rejection::NotFound),
            },
            Kind::Endpoint => match request.endpoint {
                Some((endpoint, method)) => Outcome::from_result(
                    self.endpoint()
                        .accept(endpoint, method, token, request.client)
                        .await,
                ),
                None => Outcome::Refused(Rejection::NotFound),
            },
            Kind::Auth => match request.action {
                Some((action, held)) => {
                    Outcome::from_result(self.auth().accept(token, action, held).await)
                }
                None => Outcome::Refused(Rejection::NotFound),
            },
            Kind::Application => match (request.application, request.client) {
                (true, Some(ip)) => {
                    Outcome::from_result(self.application().accept(token, ip).await)
                }
                _ => Outcome::Refused(Rejection::NotFound),
            },
        }
    }
}
