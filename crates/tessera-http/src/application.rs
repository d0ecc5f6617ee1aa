//! [`ApplicationLayer`]: application bearer tokens.

use std::sync::Arc;

use http::request::Parts;
use tessera::{Access, Outcome, Rejection, RequestContext, TokenService};
use tower::Layer;

use crate::bearer;
use crate::client_ip::{ClientIp, ClientIpSource};
use crate::guarded::{Admit, Guarded};
use crate::refusal::{LOG_TARGET, Refusal, misconfigured, rejected, unavailable};

const KIND: &str = "application";

/// Authenticates `Authorization: Bearer <token>` with an application token.
///
/// For each request it takes the client's address (see [`ClientIpSource`]), validates the token
/// from that address, which records the use in the token's per-IP log (first and last use,
/// count) and refuses addresses blocked for the token, and then either calls the inner service
/// with [`ApplicationAccess`](tessera::application::ApplicationAccess) (token id, name, access types) and [`ClientIp`] in the request
/// extensions, or answers with a [`Refusal`]:
///
/// | request | answer |
/// |---|---|
/// | no `Authorization` header, or another scheme | 401 `WWW-Authenticate: Bearer` |
/// | broken header | 400 `Bearer error="invalid_request"` |
/// | any token not accepted, for any reason | 401 `Bearer error="invalid_token"` |
/// | the store fails | 503 |
/// | no client address in the request (a setup error) | 500 |
///
/// # Examples
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use tessera::application::ApplicationAccess;
/// use tessera_http::ApplicationLayer;
///
/// fn feed(service: tessera::TokenService) -> Router {
///     Router::new()
///         .route("/feed", get(|Extension(access): Extension<ApplicationAccess>| async move {
///             format!("hello {}", access.name())
///         }))
///         .layer(ApplicationLayer::new(service))
///     // serve with `into_make_service_with_connect_info::<SocketAddr>()`
/// }
/// ```
///
/// Applying the layer costs a reference count, nothing more: it can wrap a handler
/// (`handler.layer(...)`, applied per request by axum) as cheaply as a route.
#[derive(Clone, Debug)]
pub struct ApplicationLayer {
    guard: Arc<ApplicationGuard>,
}

/// What an [`ApplicationLayer`] checks with.
#[derive(Clone, Debug)]
struct ApplicationGuard {
    service: TokenService,
    client_ip: ClientIpSource,
}

impl ApplicationLayer {
    /// Check application tokens with `service`, taking the client address from the connection.
    pub fn new(service: TokenService) -> Self {
        Self {
            guard: Arc::new(ApplicationGuard {
                service,
                client_ip: ClientIpSource::connection(),
            }),
        }
    }

    /// Take the client address from `source` instead (behind a trusted reverse proxy).
    #[must_use]
    pub fn client_ip(mut self, source: ClientIpSource) -> Self {
        Arc::make_mut(&mut self.guard).client_ip = source;
        self
    }
}

impl Admit for ApplicationGuard {
    async fn admit(&self, parts: &mut Parts) -> Result<(), Refusal> {
        bearer::hide(&mut parts.headers);
        let token = bearer::token(&parts.headers, KIND)?;
        let Some(ip) = self.client_ip.client_ip(parts) else {
            return Err(misconfigured(
                KIND,
                "no ConnectInfo<SocketAddr> in the request; serve with \
                 into_make_service_with_connect_info::<SocketAddr>()",
            ));
        };
        let request = RequestContext::new().application(ip);
        let access = match self.service.validate(token, &request).await {
            Outcome::Accepted(Access::Application(access)) => access,
            // The request admits application tokens alone.
            Outcome::Accepted(_) => return Err(rejected(KIND, Rejection::NotFound, Some(ip))),
            Outcome::Refused(rejection) => return Err(rejected(KIND, rejection, Some(ip))),
            Outcome::Failed(e) => return Err(unavailable(KIND, &e)),
        };
        tracing::trace!(target: LOG_TARGET, kind = KIND, token_id = %access.token, name = %access.name(), "request admitted");
        parts.extensions.insert(ClientIp(ip));
        parts.extensions.insert(access);
        Ok(())
    }
}

impl<S> Layer<S> for ApplicationLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded::new(inner, Arc::clone(&self.guard) as _)
    }
}
