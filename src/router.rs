//! [`CachedRouter`]: the cache in front of an axum `Router`'s routing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::IntoMakeService;
use pin_project_lite::pin_project;
use strata_core::{Cache, CacheService, ResponseFuture};
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;
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
///
/// # With tower-http and other tower layers
///
/// [`layer`](Self::layer) wraps the cached router in any tower layer whose
/// service answers something axum can turn into a response, as
/// `Router::layer` does: a layer added this way runs on every request,
/// hits included (tracing, request ids, timeouts, authentication). A layer
/// meant to run only on misses, whose output is stored (compression),
/// goes on the routes inside.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use strata::{Cache, CachePolicy, CachedRouter};
/// use tower_http::{compression::CompressionLayer, trace::TraceLayer};
///
/// # async fn run() {
/// let cache = Cache::builder().build();
/// let routes = Router::new()
///     .route(
///         "/api/materials/",
///         get(|| async { "[]" }).layer(CachePolicy::public(Duration::from_secs(1800))),
///     )
///     .layer(CompressionLayer::new()); // on misses: stored compressed
/// let app = CachedRouter::new(routes, &cache).layer(TraceLayer::new_for_http()); // on every request
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
/// axum::serve(listener, app.into_make_service()).await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CachedRouter {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    /// The cache in front of the router: a hit allocates nothing here.
    Cache(CacheService<Router>),
    /// Wrapped by [`CachedRouter::layer`]: the layers' service, boxed.
    Layered(BoxCloneSyncService<Request, Response, Infallible>),
}

impl CachedRouter {
    /// Puts `cache` in front of `router`.
    pub fn new(router: Router, cache: &Cache) -> Self {
        Self {
            inner: Inner::Cache(cache.layer().layer(router)),
        }
    }

    /// Wraps the cached router in `layer` (see [above](Self#with-tower-http-and-other-tower-layers)):
    /// the layer's service sees every request before the cache does, and
    /// its responses go out as axum [`Response`]s. Calls chain; the layer
    /// added last runs first.
    pub fn layer<L>(self, layer: L) -> Self
    where
        L: Layer<CachedRouter>,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        let service = layer
            .layer(self)
            .map_response(IntoResponse::into_response)
            .map_err(Into::into);
        Self {
            inner: Inner::Layered(BoxCloneSyncService::new(service)),
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
        match &mut self.inner {
            Inner::Cache(service) => Service::<Request>::poll_ready(service, cx),
            Inner::Layered(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let kind = match &mut self.inner {
            Inner::Cache(service) => Kind::Cache {
                inner: service.call(request),
            },
            Inner::Layered(service) => Kind::Layered {
                inner: service.call(request),
            },
        };
        CachedRouterFuture { kind }
    }
}

pin_project! {
    /// Response future of [`CachedRouter`].
    pub struct CachedRouterFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Cache { #[pin] inner: ResponseFuture<Body, Infallible> },
        Layered { #[pin] inner: LayeredFuture },
    }
}

impl std::fmt::Debug for CachedRouterFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedRouterFuture").finish_non_exhaustive()
    }
}

type LayeredFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Future for CachedRouterFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Cache { inner } => inner.poll(cx).map_ok(|response| response.map(Body::new)),
            KindProj::Layered { inner } => inner.poll(cx),
        }
    }
}
