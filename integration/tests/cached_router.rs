//! `CachedRouter`: the cache in front of routing, served by `axum::serve`.

mod common;

use std::time::Duration;

use axum::{Router, routing::get};
use common::{Calls, header};
use strata::{Cache, CachePolicy, CachedRouter};
use tokio::net::TcpListener;

#[tokio::test]
async fn cached_router_serves_hits_before_routing_and_leaves_unknown_urls_alone() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let counted = calls.clone();
    let routes = Router::new()
        .route(
            "/api/materials/",
            get(move || async move { format!("materials {}", counted.hit()) })
                .layer(CachePolicy::public(Duration::from_secs(60)).tag("materials")),
        )
        .route("/plain", get(|| async { "plain" }));
    let app = CachedRouter::new(routes, &cache);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service())
            .await
            .unwrap();
    });
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    let miss = client.get(url("/api/materials/")).send().await.unwrap();
    assert_eq!(
        header(&miss, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(miss.text().await.unwrap(), "materials 1");
    let hit = client.get(url("/api/materials/")).send().await.unwrap();
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert_eq!(hit.text().await.unwrap(), "materials 1");
    assert_eq!(calls.count(), 1);

    // A route without a policy passes through untouched.
    let plain = client.get(url("/plain")).send().await.unwrap();
    assert_eq!(header(&plain, "cache-status"), "");
    assert_eq!(plain.text().await.unwrap(), "plain");

    // Unknown URLs reach the router's 404 and leave nothing behind, so
    // made-up URLs cannot fill the cache.
    let entries_before = cache.handle().stats().entries;
    for i in 0..20 {
        let missing = client.get(url(&format!("/nope/{i}"))).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        assert_eq!(header(&missing, "cache-status"), "");
    }
    assert_eq!(cache.handle().stats().entries, entries_before);

    cache.handle().invalidate_tag("materials").await.unwrap();
    let after = client.get(url("/api/materials/")).send().await.unwrap();
    assert_eq!(after.text().await.unwrap(), "materials 2");
    server.abort();
}
