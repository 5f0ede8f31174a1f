//! [`CachedRouter`]: the cache in front of an axum `Router`'s routing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::IntoMakeService;
use pin_project_lite::pin_project;
use strata_core::{Cache, CacheService, ResponseFuture};
use tower_layer::Layer;
use tower_service::Service;

/// An axum [`Router`] with the cache in front of its routing.
///
/// `Router::layer(cache.layer())` puts the cache *after* routing, so every
/// hit still pays for matching the path and for the route's own service
/// stack. `CachedRouter` looks the request up first and only routes on a
/// miss, which makes a hit cheaper than calling the cheapest handler (see
/// docs/BENCHMARKS.md). Route policies work the same way in both
/// placements: they travel on the response.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use strata::{Cache, CachePolicy, CachedRouter};
///
/// # async fn run() {
/// let cache = Cache::builder().build();
/// let routes = Router::new().route(
///     "/api/materials/",
///     get(|| async { "[]" }).layer(CachePolicy::public(Duration::from_secs(1800))),
/// );
/// let app = CachedRouter::new(routes, &cache);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
/// axum::serve(listener, app.into_make_service()).await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CachedRouter {
    inner: CacheService<Router>,
}

impl CachedRouter {
    /// Puts `cache` in front of `router`.
    pub fn new(router: Router, cache: &Cache) -> Self {
        Self {
            inner: cache.layer().layer(router),
        }
    }

    /// A make-service for `axum::serve`.
    pub fn into_make_service(self) -> IntoMakeService<Self> {
        axum::ServiceExt::<Request>::into_make_service(self)
    }
}

impl Service<Request> for CachedRouter {
    type Response = Response;
    type Error = Infallible;
    type Future = CachedRouterFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        CachedRouterFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// Response future of [`CachedRouter`].
    #[derive(Debug)]
    pub struct CachedRouterFuture {
        #[pin]
        inner: ResponseFuture<Body, Infallible>,
    }
}

impl Future for CachedRouterFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map_ok(|response| response.map(Body::new))
    }
}
