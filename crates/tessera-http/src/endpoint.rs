//! [`EndpointLayer`]: endpoint tokens, primary or mapped secondary, per route and method.

use std::sync::Arc;

use axum::extract::MatchedPath;
use http::request::Parts;
use tessera::core::id::EndpointId;
use tessera::core::kind::endpoint::Method;
use tessera::endpoint::Carrier;
use tessera::{Access, Outcome, Rejection, RequestContext, TokenService};
use tower::Layer;

use crate::bearer;
use crate::client_ip::{ClientIp, ClientIpSource};
use crate::guarded::{Admit, Guarded};
use crate::refusal::{LOG_TARGET, Refusal, misconfigured, refused, rejected, unavailable};

const KIND: &str = "endpoint";

/// Checks (route, method, token) with endpoint tokens: the endpoint's primary token for the
/// method, or an enabled secondary whose mapping to that primary is enabled.
///
/// The accepted request reaches the inner service with
/// [`EndpointAccess`](tessera::endpoint::EndpointAccess) in its extensions: the
/// token that carried it and whether that is the primary or which secondary ([`Carrier`]), so
/// the application can log or meter traffic per integration. The use is also counted in the
/// store, where [`EndpointTokens::traffic`](tessera::endpoint::EndpointTokens::traffic) reads it.
/// The client address ([`ClientIp`]) is recorded in the audit trail when it is known, but is
/// not required.
///
/// Methods: `GET`, `POST` and `DELETE` are checked against their own primaries; `HEAD` counts
/// as `GET`. Any other method is refused like a token for the wrong method (401
/// `invalid_token`). Answers are those of [`ApplicationLayer`](crate::ApplicationLayer).
///
/// # Examples
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use tessera::core::id::EndpointId;
/// use tessera::endpoint::{Carrier, EndpointAccess};
/// use tessera_http::EndpointLayer;
///
/// fn orders(service: tessera::TokenService) -> Result<Router, tessera::core::Error> {
///     let endpoint = EndpointId::parse("/api/v1/orders")?;
///     Ok(Router::new()
///         .route("/api/v1/orders", get(|Extension(access): Extension<EndpointAccess>| async move {
///             match access.carrier {
///                 Carrier::Primary => "primary".to_owned(),
///                 Carrier::Secondary { name } => format!("integration {name}"),
///             }
///         }))
///         .layer(EndpointLayer::new(service, endpoint)))
/// }
/// ```
#[derive(Clone, Debug)]
pub struct EndpointLayer {
    guard: Arc<EndpointGuard>,
}

/// What an [`EndpointLayer`] checks with.
#[derive(Clone, Debug)]
struct EndpointGuard {
    service: TokenService,
    endpoint: Route,
    client_ip: ClientIpSource,
}

#[derive(Clone, Debug)]
enum Route {
    Fixed(EndpointId),
    Matched,
}

impl EndpointLayer {
    /// Guard the routes it is applied to as the one endpoint `endpoint`.
    pub fn new(service: TokenService, endpoint: EndpointId) -> Self {
        Self::of(service, Route::Fixed(endpoint))
    }

    /// Guard every route it is applied to as its own endpoint, named by axum's route template
    /// ([`MatchedPath`], e.g. `/orders/{id}`). Apply it with `Router::route_layer` or
    /// `Router::layer` so that the route is matched first; without a matched path the request
    /// gets a 500 and the log says why.
    pub fn matched_path(service: TokenService) -> Self {
        Self::of(service, Route::Matched)
    }

    fn of(service: TokenService, endpoint: Route) -> Self {
        Self {
            guard: Arc::new(EndpointGuard {
                service,
                endpoint,
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

impl Admit for EndpointGuard {
    async fn admit(&self, parts: &mut Parts) -> Result<(), Refusal> {
        bearer::hide(&mut parts.headers);
        let token = bearer::token(&parts.headers, KIND)?;
        let matched;
        let endpoint = match &self.endpoint {
            Route::Fixed(endpoint) => endpoint,
            Route::Matched => {
                let Some(path) = parts.extensions.get::<MatchedPath>() else {
                    return Err(misconfigured(
                        KIND,
                        "no MatchedPath in the request; add the layer to an axum Router",
                    ));
                };
                let Ok(endpoint) = EndpointId::parse(path.as_str()) else {
                    return Err(misconfigured(
                        KIND,
                        "the matched route is not a valid endpoint id",
                    ));
                };
                matched = endpoint;
                &matched
            }
        };
        let method = if parts.method == http::Method::HEAD {
            Some(Method::Get)
        } else {
            Method::parse(parts.method.as_str())
        };
        let Some(method) = method else {
            return Err(refused(
                KIND,
                "method_without_tokens",
                Refusal::InvalidToken,
            ));
        };
        let ip = self.client_ip.client_ip(parts);
        let mut request = RequestContext::new().endpoint(endpoint, method);
        if let Some(ip) = ip {
            request = request.client(ip);
        }
        let access = match self.service.validate(token, &request).await {
            Outcome::Accepted(Access::Endpoint(access)) => access,
            // The request admits endpoint tokens alone.
            Outcome::Accepted(_) => return Err(rejected(KIND, Rejection::NotFound, ip)),
            Outcome::Refused(rejection) => return Err(rejected(KIND, rejection, ip)),
            Outcome::Failed(e) => return Err(unavailable(KIND, &e)),
        };
        match &access.carrier {
            Carrier::Secondary { name } => {
                tracing::trace!(target: LOG_TARGET, kind = KIND, %endpoint, %method, token_id = %access.token, secondary = %name, "request admitted");
            }
            Carrier::Primary => {
                tracing::trace!(target: LOG_TARGET, kind = KIND, %endpoint, %method, token_id = %access.token, "request admitted with the primary");
            }
        }
        if let Some(ip) = ip {
            parts.extensions.insert(ClientIp(ip));
        }
        parts.extensions.insert(access);
        Ok(())
    }
}

impl<S> Layer<S> for EndpointLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded::new(inner, Arc::clone(&self.guard) as _)
    }
}
