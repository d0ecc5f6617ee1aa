//! [`Guarded`]: the tower service every layer of this crate wraps around the one it protects.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::sync::Arc;

use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use crate::refusal::Refusal;

/// A request's admission, owning what it reads: the guard and the request's head (given back
/// with the verdict, the accepted outcome in its extensions).
type Admission = Pin<Box<dyn Future<Output = (Result<(), Refusal>, Parts)> + Send + 'static>>;

pin_project! {
    /// The future a [`Guarded`] service returns: the inner service's own future when the
    /// request was admitted without waiting (a validation answered by the validation cache),
    /// else the admission and then the inner call, or the refusal.
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        state: State<F, R, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R, E> {
        /// Admitted at once: the inner service was called in `call`.
        Inner { #[pin] future: F },
        /// The admission waits (the store is read): it and the inner call, boxed.
        Waiting { future: Pin<Box<dyn Future<Output = Result<R, E>> + Send + 'static>> },
        /// Refused at once.
        Refused { response: Option<R> },
    }
}

impl<F, R, E> fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "admitted",
            State::Waiting { .. } => "admitting",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, R, E> Future for ResponseFuture<F, R, E>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Waiting { future } => future.as_mut().poll(cx),
            StateProj::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled again after it answered: a caller's bug; answer never again.
                None => Poll::Pending,
            },
        }
    }
}

/// A service behind one of this crate's layers ([`ApplicationLayer`](crate::ApplicationLayer), [`EndpointLayer`],
/// [`AuthLayer`]): it checks the request's token and either calls the inner service, with the
/// accepted outcome in the request extensions, or answers with the [`Refusal`] itself.
///
/// The inner service's response body must implement `Default`: refusals have an empty body.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<dyn Guard>,
}

/// What a layer checks a request with: its settings, shared by every service it wraps.
pub(crate) trait Admit: fmt::Debug + Send + Sync + 'static {
    /// Check the request whose head is `parts`; an admitted request's outcome goes into its
    /// extensions.
    fn admit(&self, parts: &mut Parts) -> impl Future<Output = Result<(), Refusal>> + Send;
}

/// [`Admit`] as a trait object: what a [`Guarded`] holds, whatever the layer.
pub(crate) trait Guard: fmt::Debug + Send + Sync + 'static {
    /// Admit the request whose head is `parts`, as a future owning what it needs.
    fn admission(self: Arc<Self>, parts: Parts) -> Admission;
}

impl<G: Admit> Guard for G {
    fn admission(self: Arc<Self>, mut parts: Parts) -> Admission {
        Box::pin(async move {
            let verdict = self.admit(&mut parts).await;
            (verdict, parts)
        })
    }
}

impl<S> Guarded<S> {
    /// `inner` behind `guard`: a reference count, the layer's settings shared (axum applies a
    /// layer given to a handler once per request).
    pub(crate) fn new(inner: S, guard: Arc<dyn Guard>) -> Self {
        Self { inner, guard }
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
    type Future = ResponseFuture<S::Future, Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let mut admission = Arc::clone(&self.guard).admission(parts);
        // Most admissions wait for nothing (the validation cache answers): polled once here,
        // such a request goes straight to the inner service this one readied, with no clone of
        // it and no second box. A waker that does nothing is enough for this first poll: an
        // admission that is not done is polled again, with the caller's waker, by the future
        // returned below before anything can have been missed.
        let state = match admission
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready((Ok(()), parts)) => State::Inner {
                future: self.inner.call(Request::from_parts(parts, body)),
            },
            Poll::Ready((Err(refusal), _)) => State::Refused {
                response: Some(refusal.response()),
            },
            Poll::Pending => {
                // The clone is not ready; the one `poll_ready` readied is taken for this call.
                let clone = self.inner.clone();
                let mut inner = core::mem::replace(&mut self.inner, clone);
                State::Waiting {
                    future: Box::pin(async move {
                        match admission.await {
                            (Ok(()), parts) => inner.call(Request::from_parts(parts, body)).await,
                            (Err(refusal), _) => Ok(refusal.response()),
                        }
                    }),
                }
            }
        };
        ResponseFuture { state }
    }
}
