//! The hit-path cases shared by `benches/hit_path.rs` and
//! `benches/hit_path_profile.rs`, so the criterion timings and the
//! callgrind instruction counts measure exactly the same routers and
//! requests.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use strata::{CACHE_STATUS, Cache, CachePolicy, CachedRouter};
use tower::ServiceExt;

/// The shared route: a public policy when cached.
pub(crate) const PUBLIC_PATH: &str = "/api/materials/";
/// The per-user route: a private policy when cached.
pub(crate) const PRIVATE_PATH: &str = "/api/dashboard/";
/// A route that declares no policy: the layer passes it through.
pub(crate) const PASS_PATH: &str = "/api/plain/";
/// The user of the private case.
pub(crate) const USER: &str = "42";
/// How long the cached routes may be reused.
const TTL: Duration = Duration::from_secs(600);

/// Every case, in the order they are reported.
pub(crate) const CASES: [Case; 6] = [
    Case::PrebuiltBytes,
    Case::StrataHit,
    Case::StrataHit304,
    Case::StrataHitPrivate,
    Case::StrataMissPass,
    Case::StrataHitOuter,
];

/// One measured request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// No cache layer; the handler returns pre-built bytes.
    PrebuiltBytes,
    /// A memory hit on a public route.
    StrataHit,
    /// A memory hit with a matching `If-None-Match`: 304.
    StrataHit304,
    /// A memory hit on a private route, for one user.
    StrataHitPrivate,
    /// A route without policy behind the layer (pass-through).
    StrataMissPass,
    /// The `strata_hit` request with the layer wrapped around the whole
    /// router (`CachedRouter`) instead of `Router::layer`,
    /// so a hit skips routing and the per-route boxed service.
    StrataHitOuter,
}

impl Case {
    /// The case's name, as criterion and the profiler know it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Case::PrebuiltBytes => "prebuilt_bytes",
            Case::StrataHit => "strata_hit",
            Case::StrataHit304 => "strata_hit_304",
            Case::StrataHitPrivate => "strata_hit_private",
            Case::StrataMissPass => "strata_miss_pass",
            Case::StrataHitOuter => "strata_hit_outer",
        }
    }
}

/// A 2 KiB JSON array, built once.
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

/// The router every case runs through, with or without the cache layer.
///
/// Both shapes have the same three routes and the same handlers; only the
/// cached shape adds the route policies and `.layer(cache.layer())`.
///
/// Both end with `.with_state(())`, as `axum::serve` does (through
/// `into_make_service`): it turns every handler and layer into a `Route`
/// once. Without it a `Router<()>` called as a service rebuilds the route,
/// and with it the cache layer's service, on every request.
pub(crate) fn router(body: &Bytes, cached: bool) -> Router {
    let (router, cache) = routes(body, cached);
    match cache {
        Some(cache) => router.layer(cache.layer()).with_state(()),
        None => router.with_state(()),
    }
}

/// The routes of [`router`] behind a [`CachedRouter`]: the cache in front
/// of routing, as `axum::serve` would run it, so a hit skips routing.
pub(crate) fn outer_router(body: &Bytes) -> CachedRouter {
    let (router, cache) = routes(body, true);
    CachedRouter::new(router.with_state(()), &cache.expect("cached"))
}

/// The routes (with their policies when `cached`) and the cache, if any.
fn routes(body: &Bytes, cached: bool) -> (Router, Option<Cache>) {
    let handler = |body: Bytes| {
        move || {
            let body = body.clone();
            async move {
                (
                    [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    body,
                )
            }
        }
    };
    let public = get(handler(body.clone()));
    let private = get(handler(body.clone()));
    let plain = get(handler(body.clone()));
    if !cached {
        let router = Router::new()
            .route(PUBLIC_PATH, public)
            .route(PRIVATE_PATH, private)
            .route(PASS_PATH, plain);
        return (router, None);
    }
    let cache = Cache::builder()
        .prefix("bench", "hit_path")
        .user(|parts: &http::request::Parts| {
            parts
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .build();
    let router = Router::new()
        .route(PUBLIC_PATH, public.layer(CachePolicy::public(TTL)))
        .route(PRIVATE_PATH, private.layer(CachePolicy::private(TTL)))
        .route(PASS_PATH, plain);
    (router, Some(cache))
}

/// The request of a case.
pub(crate) fn request(case: Case, etag: Option<&HeaderValue>) -> Request<Body> {
    let builder = Request::get(match case {
        Case::PrebuiltBytes | Case::StrataHit | Case::StrataHit304 | Case::StrataHitOuter => {
            PUBLIC_PATH
        }
        Case::StrataHitPrivate => PRIVATE_PATH,
        Case::StrataMissPass => PASS_PATH,
    });
    let builder = match case {
        Case::StrataHit304 => builder.header(IF_NONE_MATCH, etag.expect("etag").clone()),
        Case::StrataHitPrivate => builder.header("x-user", USER),
        _ => builder,
    };
    builder.body(Body::empty()).unwrap()
}

/// What a case calls: a `Router` (with or without the layer inside), or
/// the routes behind a [`CachedRouter`].
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A `Router`.
    Router(Router),
    /// A `CachedRouter`.
    Cached(CachedRouter),
}

impl Target {
    /// Calls a clone of the target with `request`.
    async fn response(&self, request: Request<Body>) -> Response {
        match self {
            Target::Router(router) => router.clone().oneshot(request).await.unwrap(),
            Target::Cached(cached) => cached.clone().oneshot(request).await.unwrap(),
        }
    }

    /// Calls the target; returns the status, the `Cache-Status`, the ETag
    /// and the whole body.
    async fn call(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, Option<HeaderValue>, Option<HeaderValue>, Bytes) {
        let (parts, body) = self.response(request).await.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let headers = parts.headers;
        (
            parts.status,
            headers.get(CACHE_STATUS).cloned(),
            headers.get(ETAG).cloned(),
            body,
        )
    }
}

/// A ready-to-measure case: its router, warmed, and the ETag its 304
/// requests send.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// The case.
    pub(crate) case: Case,
    /// What to clone and call per request.
    pub(crate) target: Target,
    /// The validator the 304 case sends.
    pub(crate) etag: Option<HeaderValue>,
}

impl Prepared {
    /// One measured iteration: build the request, call a clone of the
    /// target, read the whole body. Returns the status and the body length.
    pub(crate) async fn run_once(&self) -> (StatusCode, usize) {
        let request = request(self.case, self.etag.as_ref());
        let response = self.target.response(request).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.len())
    }
}

/// Builds the case's router, warms the cache, and checks once that the
/// measured request is what the case claims (a hit is a hit, a 304 is a
/// 304, the pass-through is not stored) and that bodies equal the
/// pre-built bytes, so the measurement cannot silently measure something
/// else.
pub(crate) async fn prepare(case: Case, body: &Bytes) -> Prepared {
    let cached = case != Case::PrebuiltBytes;
    let target = match case {
        Case::StrataHitOuter => Target::Cached(outer_router(body)),
        _ => Target::Router(router(body, cached)),
    };
    let mut etag = None;
    // Warm: the first request fills, the second must already hit.
    if cached {
        for _ in 0..2 {
            let warm = match case {
                Case::StrataHit304 => Case::StrataHit,
                other => other,
            };
            let (_, _, tag, got) = target.call(request(warm, None)).await;
            etag = tag;
            assert_eq!(got, *body, "{}: warm-up body differs", case.name());
        }
    }
    let (status, cache_status, _, got) = target.call(request(case, etag.as_ref())).await;
    match case {
        Case::PrebuiltBytes => {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(cache_status, None);
            assert_eq!(got, *body);
        }
        Case::StrataHit | Case::StrataHitPrivate | Case::StrataHitOuter => {
            assert_eq!(status, StatusCode::OK, "{}", case.name());
            assert_eq!(
                cache_status.as_ref().and_then(|v| v.to_str().ok()),
                Some("strata; hit"),
                "{}: not a hit",
                case.name()
            );
            assert_eq!(got, *body, "{}: hit body differs", case.name());
        }
        Case::StrataHit304 => {
            assert!(etag.is_some(), "stored response has no ETag");
            assert_eq!(status, StatusCode::NOT_MODIFIED);
            assert_eq!(
                cache_status.as_ref().and_then(|v| v.to_str().ok()),
                Some("strata; hit"),
                "strata_hit_304: not a hit"
            );
            assert!(got.is_empty());
        }
        Case::StrataMissPass => {
            assert_eq!(status, StatusCode::OK);
            let status = cache_status.as_ref().and_then(|v| v.to_str().ok());
            assert!(
                !status.is_some_and(|s| s.contains("hit")),
                "strata_miss_pass: a route without policy was served from cache: {status:?}"
            );
            assert_eq!(got, *body);
        }
    }
    Prepared { case, target, etag }
}
