//! The cache composed with axum as applications compose it: inside
//! `Router::nest` (keys and invalidations by the full path), and
//! `CachedRouter` wrapped in tower-http layers.

mod common;

use std::io::Read;
use std::time::Duration;

use axum::{Router, routing::get};
use common::{Calls, TestServer, header};
use strata::{Cache, CachePolicy, CachedRouter};
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

const STORED: &str = "strata; fwd=uri-miss; stored";
const HIT: &str = "strata; hit";

/// A nested router with the cache layer inside it, and a counting handler
/// at `/api/x/` (the nested router sees `/x/`).
fn nested(cache: &Cache, calls: &Calls) -> Router {
    let counted = calls.clone();
    let inner = Router::new()
        .route(
            "/x/",
            get(move || async move { format!("x {}", counted.hit()) })
                .post(|| async { "written" })
                .layer(CachePolicy::public(Duration::from_secs(600)).tag("x")),
        )
        .layer(cache.layer());
    Router::new().nest("/api", inner)
}

async fn cache_status(server: &TestServer, path: &str) -> String {
    let response = server.get(path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    header(&response, "cache-status")
}

#[tokio::test]
async fn inside_router_nest_the_layer_keys_and_invalidates_by_the_full_path() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let server = TestServer::start(nested(&cache, &calls)).await;

    assert_eq!(cache_status(&server, "/api/x/").await, STORED);
    assert_eq!(cache_status(&server, "/api/x/").await, HIT);
    assert_eq!(calls.count(), 1);

    // The full path, as the client and every other part of the app name it.
    let handle = cache.handle();
    assert_eq!(handle.invalidate_url("/api/x/").await.unwrap(), 1);
    assert_eq!(cache_status(&server, "/api/x/").await, STORED);
    assert_eq!(calls.count(), 2);
    // The stripped path names nothing the cache stored.
    assert_eq!(handle.invalidate_url("/x/").await.unwrap(), 0);
    assert_eq!(cache_status(&server, "/api/x/").await, HIT);

    // A write inside the nested router invalidates its full URL too.
    let written = server
        .client
        .post(server.url("/api/x/"))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200);
    assert_eq!(cache_status(&server, "/api/x/").await, STORED);
    assert_eq!(calls.count(), 3);

    // Prefix invalidation by the full path reaches it as well.
    assert_eq!(handle.invalidate_prefix("/api/").await.unwrap(), 1);
    assert_eq!(cache_status(&server, "/api/x/").await, STORED);
}

/// `CachedRouter::layer` with tower-http's `TraceLayer` and
/// `CompressionLayer` around it: hits are served from the cache (the
/// handler runs once) and compressed on the way out; without
/// `Accept-Encoding` the same entry goes out plain.
#[tokio::test]
async fn cached_router_under_trace_and_compression_layers_serves_and_caches() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let counted = calls.clone();
    let body = "materials ".repeat(200);
    let expected = body.clone();
    let routes = Router::new().route(
        "/api/materials/",
        get(move || {
            let body = body.clone();
            counted.hit();
            async move { body }
        })
        .layer(CachePolicy::public(Duration::from_secs(600))),
    );
    let app = CachedRouter::new(routes, &cache)
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service())
            .await
            .unwrap();
    });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/materials/");

    for expected_status in [STORED, HIT, HIT] {
        let response = client
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "cache-status"), expected_status);
        assert_eq!(header(&response, "content-encoding"), "gzip");
        let compressed = response.bytes().await.unwrap();
        assert!(
            compressed.len() < expected.len() / 4,
            "{}",
            compressed.len()
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, expected);
    }
    let plain = client.get(&url).send().await.unwrap();
    assert_eq!(header(&plain, "cache-status"), HIT);
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(plain.text().await.unwrap(), expected);
    assert_eq!(calls.count(), 1, "every answer after the first was a hit");
    server.abort();
}
