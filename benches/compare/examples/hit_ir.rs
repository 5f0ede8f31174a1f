//! The contenders of the `compare` bench, called in process (tower
//! `oneshot` on the router, no sockets), a fixed number of times, for
//! instruction counts under callgrind:
//!
//! ```text
//! cargo build --release -p strata-compare --example hit_ir
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/hit_ir strata_layer_hit 21000
//! ```
//!
//! `benches/compare/ir.sh` runs every case at two request counts and
//! prints instructions per request = (Ir at N − Ir at a small N) /
//! (difference in N), which removes setup, priming and warm-up.
//!
//! The routers are the ones `benches/compare/contenders.rs` builds for the
//! socket bench, with no simulated work (the handler never sleeps). Each
//! case primes the cache with one request, checks one more, then sends N
//! requests, reading every body to the end; at the end it checks the last
//! response (a hit with the 2 KiB body, or a 304 without body) and how
//! often the handler ran (only for the priming request, when cached).
//! The app is leaked at exit, so the teardown of what a miss run stored
//! does not count per request.
//!
//! Cases: `ceiling` (no cache, the handler returns the pre-built bytes),
//! `strata_layer_hit`, `strata_outer_hit` (`CachedRouter`),
//! `strata_layer_304`, `strata_outer_304`, `axum_response_cache_hit`,
//! `tower_http_cache_hit`, `http_cache_tower_server_hit`, `strata_miss`
//! (a new URL per request: `?n=<i>`) and `handler_no_cache` (no cache, the
//! same new URL per request: the reference of `strata_miss`).

// The socket bench's table, labels and stampede list are not used here.
#[allow(dead_code)]
#[path = "../benches/compare/contenders.rs"]
mod contenders;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use contenders::{Kind, PATH, Shape};

/// The two items `contenders.rs` takes from the socket bench's `server`
/// module, without the server itself.
mod server {
    use std::future::Future;
    use std::pin::Pin;

    use axum::Router;
    use strata::CachedRouter;

    /// What a contender is: an axum `Router` (caches inside it) or the
    /// routes behind strata's `CachedRouter`.
    #[derive(Debug)]
    pub(crate) enum App {
        /// A `Router`.
        Router(Router),
        /// A `CachedRouter`.
        Cached(CachedRouter),
    }

    /// Builds an [`App`].
    pub(crate) type Build = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = App>>> + Send>;
}

use server::App;

/// Every case: its name, what serves it, what is sent.
const CASES: [(&str, Kind, Shape); 10] = [
    ("ceiling", Kind::Ceiling, Shape::Plain),
    ("strata_layer_hit", Kind::StrataLayer, Shape::Plain),
    ("strata_outer_hit", Kind::StrataRouter, Shape::Plain),
    ("strata_layer_304", Kind::StrataLayer, Shape::Conditional),
    ("strata_outer_304", Kind::StrataRouter, Shape::Conditional),
    (
        "axum_response_cache_hit",
        Kind::AxumResponseCache,
        Shape::Plain,
    ),
    ("tower_http_cache_hit", Kind::TowerHttpCache, Shape::Plain),
    (
        "http_cache_tower_server_hit",
        Kind::HttpCacheTowerServer,
        Shape::Plain,
    ),
    ("strata_miss", Kind::StrataLayer, Shape::Distinct),
    ("handler_no_cache", Kind::NoCache, Shape::Distinct),
];

/// The request of `shape`; `n` numbers the distinct URLs.
fn request(shape: Shape, n: u64, etag: Option<&HeaderValue>) -> Request<Body> {
    let builder = match shape {
        Shape::Plain => Request::get(PATH),
        Shape::Conditional => {
            Request::get(PATH).header(IF_NONE_MATCH, etag.expect("an ETag").clone())
        }
        Shape::Distinct => Request::get(format!("{PATH}?n={n}")),
    };
    builder.body(Body::empty()).unwrap()
}

/// Calls a clone of `app` with `request`, as a server does per request.
async fn respond(app: &App, request: Request<Body>) -> Response {
    match app {
        App::Router(router) => router.clone().oneshot(request).await.unwrap(),
        App::Cached(cached) => cached.clone().oneshot(request).await.unwrap(),
    }
}

/// Calls `app` and reads the whole body.
async fn fetch(app: &App, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = respond(app, request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// The cache's own word on a response, for the printed line.
fn cache_header(headers: &HeaderMap) -> String {
    ["cache-status", "x-cache", "x-cache-status"]
        .iter()
        .find_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(format!("{name}: {value}"))
        })
        .unwrap_or_else(|| "no cache header".to_owned())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hit_ir <case> <requests>";
    let name = args.next().expect(usage);
    let requests: u64 = args.next().expect(usage).parse().expect(usage);
    let Some(&(_, kind, shape)) = CASES.iter().find(|(case, _, _)| *case == name) else {
        let names: Vec<_> = CASES.iter().map(|(case, _, _)| *case).collect();
        panic!("unknown case {name:?}; one of {names:?}");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = contenders::json_body();
    let calls = Arc::new(AtomicU64::new(0));
    let build = contenders::build(kind, body.clone(), Arc::clone(&calls), Duration::ZERO, None);
    let cached = kind.is_cache();
    let (last, note) = runtime.block_on(async {
        // As `axum::serve` does (through `into_make_service`): turn every
        // handler and layer into a `Route` once, not on every request.
        let app = match build().await {
            App::Router(router) => App::Router(router.with_state(())),
            App::Cached(cached) => App::Cached(cached),
        };
        // Prime (a distinct request numbers past the measured ones), then
        // check that the measured request is what the case claims.
        let prime = match shape {
            Shape::Distinct => Shape::Distinct,
            Shape::Plain | Shape::Conditional => Shape::Plain,
        };
        let (status, _, got) = fetch(&app, request(prime, u64::MAX, None)).await;
        assert_eq!(status, StatusCode::OK, "{name}: priming status");
        assert_eq!(got, body, "{name}: priming body");
        // Let tasks the priming request spawned run (http-cache-tower-server
        // stores from a spawned task), as a server's runtime would between
        // requests.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let (status, headers, got) = fetch(&app, request(prime, u64::MAX - 1, None)).await;
        assert_eq!((status, &got), (StatusCode::OK, &body), "{name}: check");
        let etag = headers.get(ETAG).cloned();
        let note = cache_header(&headers);
        let mut last = None;
        let mut bytes = 0usize;
        for n in 0..requests {
            let (status, headers, got) = fetch(&app, request(shape, n, etag.as_ref())).await;
            bytes += got.len();
            last = Some((status, headers, got));
        }
        black_box(bytes);
        // Not dropped: tearing down the N entries a miss run stored is not
        // work of the requests, and would grow with N.
        std::mem::forget(app);
        (last.expect("at least one request"), note)
    });
    let (status, headers, got) = last;
    let handler_runs = calls.load(Ordering::Relaxed);
    let strata_status = headers
        .get(strata::CACHE_STATUS)
        .and_then(|v| v.to_str().ok());
    match shape {
        Shape::Plain => {
            assert_eq!(status, StatusCode::OK, "{name}: last status");
            assert_eq!(got, body, "{name}: last body");
        }
        Shape::Conditional => {
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{name}: last status");
            assert!(got.is_empty(), "{name}: the 304 has a body");
        }
        Shape::Distinct => {
            assert_eq!(status, StatusCode::OK, "{name}: last status");
            assert_eq!(got, body, "{name}: last body");
            assert!(
                !strata_status.is_some_and(|s| s.contains("hit")),
                "{name}: a new URL was a hit: {strata_status:?}"
            );
        }
    }
    if matches!(kind, Kind::StrataLayer | Kind::StrataRouter) && shape != Shape::Distinct {
        assert_eq!(strata_status, Some("strata; hit"), "{name}: not a hit");
    }
    let expected_runs = match (cached, shape) {
        (true, Shape::Plain | Shape::Conditional) => 1,
        (_, _) => requests + 2,
    };
    assert_eq!(
        handler_runs, expected_runs,
        "{name}: the handler ran {handler_runs} times for {requests} requests"
    );
    println!(
        "{name}: {requests} requests, last {status} with {} bytes, handler ran {handler_runs}x, {note}",
        got.len()
    );
}
