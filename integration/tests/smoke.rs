//! The first request is a miss that stores, the second a hit.

mod common;

use std::time::Duration;

use axum::{Router, routing::get};
use common::{Calls, TestServer, header};
use strata::{Cache, CachePolicy};

#[tokio::test]
async fn miss_then_hit_through_a_socket() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/hello",
            get(move || async move { format!("hello {}", counted.hit()) })
                .layer(CachePolicy::public(Duration::from_secs(60))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let first = server.get("/hello").send().await.unwrap();
    assert_eq!(
        header(&first, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(header(&first, "cache-control"), "public, max-age=60");
    let etag = header(&first, "etag");
    assert_eq!(first.text().await.unwrap(), "hello 1");

    let second = server.get("/hello").send().await.unwrap();
    assert_eq!(header(&second, "cache-status"), "strata; hit");
    assert_eq!(header(&second, "etag"), etag);
    assert_eq!(second.text().await.unwrap(), "hello 1");
    assert_eq!(calls.count(), 1);

    let revalidated = server
        .get("/hello")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(header(&revalidated, "etag"), etag);
    assert_eq!(revalidated.text().await.unwrap(), "");
}
