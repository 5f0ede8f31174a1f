//! The route-level service behind [`CachePolicy`](crate::CachePolicy) and
//! [`Invalidates`](crate::Invalidates): it stamps a value into the response
//! extensions unless the handler already put one there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

/// A service that inserts `T` into each response's extensions, unless the
/// inner service already inserted its own `T`.
///
/// Built by the [`Layer`](tower_layer::Layer) impls of
/// [`CachePolicy`](crate::CachePolicy) and [`Invalidates`](crate::Invalidates).
#[derive(Debug, Clone)]
pub struct Annotate<S, T> {
    inner: S,
    value: T,
}

impl<S, T> Annotate<S, T> {
    pub(crate) fn new(inner: S, value: T) -> Self {
        Self { inner, value }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, T, ReqBody, ResBody> Service<Request<ReqBody>> for Annotate<S, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    T: Clone + Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = AnnotateFuture<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        AnnotateFuture {
            inner: self.inner.call(request),
            value: Some(self.value.clone()),
        }
    }
}

pin_project! {
    /// Response future of [`Annotate`].
    #[derive(Debug)]
    pub struct AnnotateFuture<F, T> {
        #[pin]
        inner: F,
        value: Option<T>,
    }
}

impl<F, T, B, E> Future for AnnotateFuture<F, T>
where
    F: Future<Output = Result<Response<B>, E>>,
    T: Clone + Send + Sync + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(value) = this.value.take() {
            let extensions = response.extensions_mut();
            if extensions.get::<T>().is_none() {
                extensions.insert(value);
            }
        }
        Poll::Ready(Ok(response))
    }
}
