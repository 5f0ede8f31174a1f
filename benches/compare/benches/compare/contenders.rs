//! The contenders: one handler (a 2 KiB JSON body, `Cache-Control: public,
//! max-age=600`, optional simulated work) behind no cache, strata in its
//! placements and stores, and the peer caches configured as their docs say;
//! and the reverse-proxy group (a static upstream directly, behind strata's
//! gateway and behind nginx), started by `gateway.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::{MethodRouter, get};
use axum::{BoxError, Router};
use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use strata::redis::{RedisStore, TieredStore};
use strata::{Cache, CachePolicy, CachedRouter, MemoryStore};
use tower::ServiceBuilder;

use crate::server::{App, Build};

/// The one route every contender serves.
pub(crate) const PATH: &str = "/api/materials/";
/// How long every cache may reuse the response (its `max-age`).
pub(crate) const TTL: Duration = Duration::from_secs(600);
/// The `Cache-Control` the handler sends.
const CACHE_CONTROL_VALUE: &str = "public, max-age=600";

/// A 2 KiB JSON array, built once (the body of `benches/support/cases.rs`).
pub(crate) fn json_body() -> Bytes {
    let mut out = String::from("[");
    let mut id = 0;
    while out.len() < 2048 - 80 {
        if id > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{id},"title":"Material {id:04}","kind":"article"}}"#
        ));
        id += 1;
    }
    out.push(']');
    while out.len() < 2048 {
        out.insert(out.len() - 1, ' ');
    }
    Bytes::from(out)
}

/// What serves the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No cache; the handler returns the pre-built bytes without work.
    Ceiling,
    /// The ceiling with the four header fields a strata hit adds (`ETag`,
    /// `Last-Modified`, `Age`, `Cache-Status`), as fixed values: what those
    /// bytes alone cost the server, the kernel and the client.
    CeilingHeaders,
    /// No cache; the real handler.
    NoCache,
    /// strata, memory store, `Router::layer(cache.layer())`.
    StrataLayer,
    /// strata, memory store, `CachedRouter` (in front of routing).
    StrataRouter,
    /// strata, `TieredStore` whose memory layer admits nothing: every hit
    /// reads Redis. `Router::layer` placement.
    StrataTiered,
    /// `axum-response-cache` 0.5: `CacheLayer::with_lifespan(600 s)`.
    AxumResponseCache,
    /// `tower-http-cache` 0.6, in-memory backend, `ttl(600 s)`.
    TowerHttpCache,
    /// `http-cache-tower-server` 0.2, `MokaManager`, TTL from `max-age`.
    HttpCacheTowerServer,
    /// The static upstream of the gateway group (the 2 KiB body without
    /// work, with an ETag), served directly: that group's ceiling.
    Upstream,
    /// strata's gateway (`examples/gateway/proxy.rs`, `CachePolicy::origin`)
    /// in front of the static upstream.
    Gateway,
    /// nginx `proxy_cache` in front of the static upstream (a child
    /// process, one worker), when nginx is installed.
    Nginx,
}

impl Kind {
    /// Whether this is one of the other crates.
    pub(crate) fn is_peer(self) -> bool {
        matches!(
            self,
            Kind::AxumResponseCache | Kind::TowerHttpCache | Kind::HttpCacheTowerServer
        )
    }

    /// Whether a cache sits in front of the handler.
    pub(crate) fn is_cache(self) -> bool {
        !matches!(
            self,
            Kind::Ceiling | Kind::CeilingHeaders | Kind::NoCache | Kind::Upstream
        )
    }

    /// Whether this is one of the reverse proxies or their static upstream
    /// (started by `gateway::start`, not by [`build`]).
    pub(crate) fn in_gateway_group(self) -> bool {
        matches!(self, Kind::Upstream | Kind::Gateway | Kind::Nginx)
    }

    /// The no-cache line this one's `req/s ÷ ceiling` is against.
    pub(crate) fn ceiling(self) -> Kind {
        if self.in_gateway_group() {
            Kind::Upstream
        } else {
            Kind::Ceiling
        }
    }

    /// The label used in tables and on the chart.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Ceiling => "no cache, pre-built bytes (ceiling)",
            Kind::CeilingHeaders => "ceiling + a strata hit's 4 header fields",
            Kind::NoCache => "no cache, 2 ms handler",
            Kind::StrataLayer => "strata memory, Router::layer",
            Kind::StrataRouter => "strata memory, CachedRouter",
            Kind::StrataTiered => "strata tiered, L2 (Redis) only",
            Kind::AxumResponseCache => "axum-response-cache 0.5",
            Kind::TowerHttpCache => "tower-http-cache 0.6 (in-memory)",
            Kind::HttpCacheTowerServer => "http-cache-tower-server 0.2 (moka)",
            Kind::Upstream => "upstream direct, static (gateway ceiling)",
            Kind::Gateway => "strata gateway",
            Kind::Nginx => "nginx proxy_cache",
        }
    }
}

/// The requests the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `GET /api/materials/`.
    Plain,
    /// The same plus `If-None-Match` with the stored ETag.
    Conditional,
    /// `GET /api/materials/?n=<counter>`: a new URL every time.
    Distinct,
}

/// One measured line of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Contender {
    /// What serves the route.
    pub(crate) kind: Kind,
    /// What is sent.
    pub(crate) shape: Shape,
}

impl Contender {
    /// `"<kind>: <case>"`, as printed.
    pub(crate) fn name(self) -> String {
        let case = match (self.kind.is_cache(), self.shape) {
            (false, _) => return self.kind.label().to_owned(),
            (true, Shape::Plain) => "hit",
            (true, Shape::Conditional) => "304",
            (true, Shape::Distinct) => "miss",
        };
        format!("{}: {case}", self.kind.label())
    }

    /// The status every measured response must have.
    pub(crate) fn status(self) -> StatusCode {
        match self.shape {
            Shape::Conditional => StatusCode::NOT_MODIFIED,
            Shape::Plain | Shape::Distinct => StatusCode::OK,
        }
    }
}

/// Every contender, in table order.
pub(crate) fn all() -> Vec<Contender> {
    use Kind::*;
    use Shape::*;
    [
        (Ceiling, Plain),
        (CeilingHeaders, Plain),
        (NoCache, Plain),
        (StrataLayer, Plain),
        (StrataRouter, Plain),
        (StrataLayer, Conditional),
        (StrataRouter, Conditional),
        (StrataLayer, Distinct),
        (StrataTiered, Plain),
        (AxumResponseCache, Plain),
        (AxumResponseCache, Conditional),
        (TowerHttpCache, Plain),
        (TowerHttpCache, Conditional),
        (HttpCacheTowerServer, Plain),
        (HttpCacheTowerServer, Conditional),
        (Upstream, Plain),
        (Gateway, Plain),
        (Nginx, Plain),
    ]
    .into_iter()
    .map(|(kind, shape)| Contender { kind, shape })
    .collect()
}

/// The caches the stampede test runs against.
pub(crate) const STAMPEDE: [Kind; 6] = [
    Kind::StrataLayer,
    Kind::StrataRouter,
    Kind::StrataTiered,
    Kind::AxumResponseCache,
    Kind::TowerHttpCache,
    Kind::HttpCacheTowerServer,
];

/// The handler: counts its calls in `calls`, sleeps `work` (unless zero),
/// returns `body` as JSON with `Cache-Control: public, max-age=600`.
fn handler(body: Bytes, calls: Arc<AtomicU64>, work: Duration) -> MethodRouter {
    get(move || {
        let body = body.clone();
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            (
                [
                    (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE)),
                ],
                body,
            )
        }
    })
}

/// The ceiling's handler with the header fields a strata hit adds, at
/// their real lengths.
fn handler_with_hit_headers(body: Bytes, calls: Arc<AtomicU64>) -> MethodRouter {
    get(move || {
        let body = body.clone();
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            (
                [
                    (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE)),
                    (
                        ETAG,
                        HeaderValue::from_static("\"c90ecf9085ffd98652ce88294917e7ad\""),
                    ),
                    (
                        LAST_MODIFIED,
                        HeaderValue::from_static("Wed, 25 Nov 2026 22:00:00 GMT"),
                    ),
                    (AGE, HeaderValue::from_static("0")),
                    (
                        HeaderName::from_static("cache-status"),
                        HeaderValue::from_static("strata; hit"),
                    ),
                ],
                body,
            )
        }
    })
}

/// Turns the peers' `BoxError` into a 500, as their examples do with
/// `HandleErrorLayer` (axum routes must be infallible).
async fn cache_error(error: BoxError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// An environment name no earlier server in this process used, so the
/// Redis entries of one run never serve another (the Redis store's prefix
/// must be the cache's `{app}:{env}:`).
fn fresh_env() -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    format!(
        "tiered-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    )
}

/// How to build `kind`'s app on the server thread: a fresh cache, the
/// handler counting into `calls` and working for `work`. `redis_url` is
/// needed by [`Kind::StrataTiered`] only. Not for the gateway group
/// ([`Kind::in_gateway_group`]).
pub(crate) fn build(
    kind: Kind,
    body: Bytes,
    calls: Arc<AtomicU64>,
    work: Duration,
    redis_url: Option<String>,
) -> Build {
    Box::new(move || {
        Box::pin(async move {
            let route = || handler(body.clone(), Arc::clone(&calls), work);
            match kind {
                Kind::Ceiling | Kind::NoCache => App::Router(Router::new().route(PATH, route())),
                Kind::CeilingHeaders => App::Router(
                    Router::new().route(PATH, handler_with_hit_headers(body, Arc::clone(&calls))),
                ),
                Kind::StrataLayer => {
                    let cache = Cache::builder().prefix("compare", "memory").build();
                    App::Router(strata_routes(route()).layer(cache.layer()))
                }
                Kind::StrataRouter => {
                    let cache = Cache::builder().prefix("compare", "memory").build();
                    App::Cached(CachedRouter::new(
                        strata_routes(route()).with_state(()),
                        &cache,
                    ))
                }
                Kind::StrataTiered => {
                    let url = redis_url.expect("the tiered contender needs a redis-server");
                    let env = fresh_env();
                    let redis = RedisStore::standalone(&url)
                        .prefix(format!("compare:{env}:"))
                        .op_timeout(Duration::from_millis(500))
                        .build()
                        .expect("a RedisStore for the tiered contender");
                    // Memory layer of 0 bytes: it admits nothing, so every
                    // hit is a Redis read (as `tiered_l2_hit` in l2_hit.rs).
                    let tiered = TieredStore::new(MemoryStore::new(0), redis)
                        .expect("a TieredStore for the tiered contender");
                    let cache = Cache::builder()
                        .prefix("compare", &env)
                        .store(Arc::new(tiered))
                        .build();
                    App::Router(strata_routes(route()).layer(cache.layer()))
                }
                Kind::AxumResponseCache => App::Router(
                    Router::new()
                        .route(PATH, route())
                        .layer(axum_response_cache::CacheLayer::with_lifespan(TTL)),
                ),
                Kind::TowerHttpCache => {
                    tower_http_cache_app(body.clone(), Arc::clone(&calls), work)
                }
                Kind::HttpCacheTowerServer => {
                    // TTL from the response's `max-age=600` (under the
                    // default `max_ttl` of one hour).
                    let layer = http_cache_tower_server::ServerCacheLayer::new(
                        http_cache::MokaManager::default(),
                    );
                    App::Router(
                        Router::new().route(PATH, route()).layer(
                            ServiceBuilder::new()
                                .layer(HandleErrorLayer::new(cache_error))
                                .layer(layer),
                        ),
                    )
                }
                Kind::Upstream | Kind::Gateway | Kind::Nginx => {
                    unreachable!("{kind:?} is started by gateway::start")
                }
            }
        })
    })
}

/// `tower-http-cache`'s `CacheService` needs a `Sync` response body and
/// axum's `Body` is not, so it cannot wrap an axum handler or `Route`.
/// As its examples do, the cached service is a tower `service_fn` (the same
/// work, headers, body and call counter as [`handler`], answering with
/// `Full<Bytes>`), mounted with `route_service` behind `HandleErrorLayer`.
fn tower_http_cache_app(body: Bytes, calls: Arc<AtomicU64>, work: Duration) -> App {
    let inner = tower::service_fn(move |_request: Request<Body>| {
        let body = body.clone();
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            let mut response = Response::new(Full::new(body));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE));
            Ok::<_, Infallible>(response)
        }
    });
    let layer = tower_http_cache::CacheLayer::builder(
        tower_http_cache::backend::memory::InMemoryBackend::new(10_000),
    )
    .ttl(TTL)
    .build();
    let service = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(cache_error))
        .layer(layer)
        .service(inner);
    App::Router(Router::new().route_service(PATH, service))
}

/// The route with strata's policy as a route layer.
fn strata_routes(route: MethodRouter) -> Router {
    Router::new().route(PATH, route.layer(CachePolicy::public(TTL)))
}
