//! What strata tells a CDN in front of it: `s-maxage` and
//! `CDN-Cache-Control` (RFC 9213) from the policy, its tags in
//! `Surrogate-Key`, and every invalidation through a hook that can
//! forward purges.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use common::{TestServer, header};
use strata::store::Invalidation;
use strata::{Cache, CachePolicy, Invalidates};

fn app(cache: &Cache) -> Router {
    Router::new()
        .route(
            "/a",
            get(|| async { "a" }).layer(
                CachePolicy::public(Duration::from_secs(60))
                    .s_maxage(Duration::from_secs(600))
                    .cdn_max_age(Duration::from_secs(86_400))
                    .tags(["materials", "material:3", "has space"]),
            ),
        )
        .route(
            "/w",
            post(|| async { "ok" }).layer(Invalidates::tags(["materials"])),
        )
        .layer(cache.layer())
}

#[tokio::test]
async fn the_policy_speaks_to_cdns_on_misses_and_hits() {
    let cache = Cache::builder().emit_surrogate_keys(true).build();
    let server = TestServer::start(app(&cache)).await;
    for expected in ["strata; fwd=uri-miss; stored", "strata; hit"] {
        let response = server.get("/a").send().await.unwrap();
        assert_eq!(header(&response, "cache-status"), expected);
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=60, s-maxage=600"
        );
        assert_eq!(header(&response, "cdn-cache-control"), "max-age=86400");
        // Tags with white space cannot be listed.
        assert_eq!(header(&response, "surrogate-key"), "materials material:3");
    }
}

#[tokio::test]
async fn surrogate_keys_are_only_emitted_when_asked_for() {
    let cache = Cache::builder().build();
    let server = TestServer::start(app(&cache)).await;
    let response = server.get("/a").send().await.unwrap();
    assert!(response.headers().get("surrogate-key").is_none());
}

#[tokio::test]
async fn every_invalidation_made_here_reaches_the_hook() {
    let seen: Arc<Mutex<Vec<Invalidation>>> = Arc::default();
    let record = Arc::clone(&seen);
    let cache = Cache::builder()
        .on_invalidate(move |what: &Invalidation| record.lock().unwrap().push(what.clone()))
        .build();
    let server = TestServer::start(app(&cache)).await;
    let written = server.client.post(server.url("/w")).send().await.unwrap();
    assert_eq!(written.status(), 200);
    cache.handle().invalidate_tag("material:3").await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Invalidation::Url("/w".to_owned()),
            Invalidation::Tags(vec!["materials".to_owned()]),
            Invalidation::Tag("material:3".to_owned()),
        ]
    );
}
