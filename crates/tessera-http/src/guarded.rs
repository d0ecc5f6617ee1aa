//! [`Guarded`]: the tower service every layer of this crate wraps around the one it protects.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Arc;

use http::request::Parts;
use http::{Request, Response};
use tower::Service;

use crate::application::ApplicationLayer;
use crate::auth::AuthLayer;
use crate::endpoint::EndpointLayer;
use crate::refusal::Refusal;

/// The future a [`Guarded`] service returns.
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send + 'static>>;

/// A service behind one of this crate's layers ([`ApplicationLayer`], [`EndpointLayer`],
/// [`AuthLayer`]): it checks the request's token and either calls the inner service, with the
/// accepted outcome in the request extensions, or answers with the [`Refusal`] itself.
///
/// The inner service's response body must implement `Default`: refusals have an empty body.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
}

#[derive(Debug)]
pub(crate) enum Guard {
    Application(ApplicationLayer),
    Auth(AuthLayer),
    Endpoint(EndpointLayer),
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, guard: Guard) -> Self {
        Self {
            inner,
            guard: Arc::new(guard),
        }
    }
}

impl Guard {
    async fn admit(&self, parts: &mut Parts) -> Result<(), Refusal> {
        match self {
            Self::Application(layer) => layer.admit(parts).await,
            Self::Auth(layer) => layer.admit(parts).await,
            Self::Endpoint(layer) => layer.admit(parts).await,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("guard", &self.guard)
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Guarded<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone is not ready; the one `poll_ready` readied is taken for this call.
        let clone = self.inner.clone();
        let mut inner = core::mem::replace(&mut self.inner, clone);
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match guard.admit(&mut parts).await {
                Ok(()) => inner.call(Request::from_parts(parts, body)).await,
                Err(refusal) => Ok(refusal.response()),
            }
        })
    }
}
