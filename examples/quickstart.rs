//! Run with: `cargo run --example quickstart`, then
//! `curl -i http://127.0.0.1:3000/api/materials/` twice: a miss, then a hit.
use std::time::Duration;

use axum::{Router, routing::get};
use strata::{Cache, CachePolicy};

fn app(cache: &Cache) -> Router {
    Router::new()
        .route(
            "/api/materials/",
            get(|| async { r#"[{"id":1,"title":"Algebra"}]"# })
                .layer(CachePolicy::public(Duration::from_secs(1800)).tag("materials")),
        )
        .layer(cache.layer())
}

#[tokio::main]
async fn main() {
    let cache = Cache::builder().prefix("myapp", "dev").build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app(&cache)).await.unwrap();
}
