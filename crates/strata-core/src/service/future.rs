//! [`ResponseFuture`]: ready at once on an in-process hit, boxed otherwise.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::CacheBody;
use crate::store::BoxFuture;

pin_project! {
    /// Response future of [`CacheService`]: ready at once on an in-process
    /// hit, boxed otherwise. Kept small, because axum moves and boxes it.
    pub struct ResponseFuture<B, E> {
        #[pin]
        kind: FutureKind<B, E>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<B, E> {
        Ready { response: Option<Response<CacheBody<B>>> },
        Boxed { future: BoxFuture<'static, Result<Response<CacheBody<B>>, E>> },
    }
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn ready(response: Response<CacheBody<B>>) -> Self {
        Self {
            kind: FutureKind::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn boxed(
        future: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
    ) -> Self {
        Self {
            kind: FutureKind::Boxed {
                future: Box::pin(future),
            },
        }
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            FutureKind::Ready { .. } => "ready",
            FutureKind::Boxed { .. } => "boxed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            FutureKindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
