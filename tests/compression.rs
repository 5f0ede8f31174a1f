//! tower-http's `CompressionLayer` composed with the cache, both ways,
//! through real sockets, with gzip, br and identity clients:
//!
//! - **inside** (`.layer(CompressionLayer::new()).layer(cache.layer())`):
//!   each encoding is a variant of its own (`Vary: Accept-Encoding`),
//!   stored once, hit with its own `Content-Encoding` and its own strong
//!   `ETag`, and a conditional request matches only its own encoding;
//! - **outside** (`.layer(cache.layer()).layer(CompressionLayer::new())`):
//!   the cache stores identity once, and every hit is compressed again.

mod common;

use std::io::Read;
use std::time::Duration;

use axum::Router;
use axum::http::header::ETAG;
use axum::routing::get;
use common::{Calls, TestServer};
use strata::{Cache, CachePolicy, MockClock};
use tower_http::compression::CompressionLayer;

const MINUTE: Duration = Duration::from_secs(60);

/// About 20 KiB of JSON, compressible.
fn document() -> String {
    let items: Vec<String> = (0..400)
        .map(|i| format!(r#"{{"id":{i},"title":"Material number {i}","done":false}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

fn cache() -> Cache {
    Cache::builder().clock(MockClock::new()).build()
}

fn routes(calls: &Calls, etag: Option<&'static str>) -> Router {
    let counted = calls.clone();
    Router::new().route(
        "/data",
        get(move || async move {
            counted.hit();
            let mut response = axum::response::Response::new(axum::body::Body::from(document()));
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            if let Some(etag) = etag {
                response
                    .headers_mut()
                    .insert(ETAG, axum::http::HeaderValue::from_static(etag));
            }
            response
        })
        .layer(CachePolicy::public(MINUTE)),
    )
}

/// What a client with `accept` saw, the body decoded.
struct Seen {
    status: u16,
    cache_status: String,
    encoding: String,
    vary: String,
    etag: String,
    body: String,
}

async fn fetch(server: &TestServer, accept: Option<&str>, if_none_match: Option<&str>) -> Seen {
    let mut request = server.get("/data");
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (status, cache_status, encoding, vary, etag) = (
        response.status().as_u16(),
        header("cache-status"),
        header("content-encoding"),
        header("vary").to_ascii_lowercase(),
        header("etag"),
    );
    let raw = response.bytes().await.unwrap();
    let body = match encoding.as_str() {
        "gzip" => {
            let mut out = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut out)
                .unwrap();
            out
        }
        "br" => {
            let mut out = String::new();
            brotli::Decompressor::new(&raw[..], 4096)
                .read_to_string(&mut out)
                .unwrap();
            out
        }
        _ => String::from_utf8(raw.to_vec()).unwrap(),
    };
    Seen {
        status,
        cache_status,
        encoding,
        vary,
        etag,
        body,
    }
}

/// The encodings a client may ask for, and what it should get.
const CLIENTS: [(Option<&str>, &str); 3] = [(Some("gzip"), "gzip"), (Some("br"), "br"), (None, "")];

async fn compression_inside(handler_etag: Option<&'static str>) {
    let cache = cache();
    let calls = Calls::default();
    let app = routes(&calls, handler_etag)
        .layer(CompressionLayer::new())
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    let mut etags = Vec::new();
    for (accept, encoding) in CLIENTS {
        let miss = fetch(&server, accept, None).await;
        assert_eq!(miss.status, 200);
        assert!(
            miss.cache_status.ends_with("stored"),
            "{accept:?}: {}",
            miss.cache_status
        );
        let hit = fetch(&server, accept, None).await;
        assert_eq!(hit.cache_status, "strata; hit", "{accept:?}");
        for seen in [&miss, &hit] {
            assert_eq!(seen.encoding, encoding, "{accept:?}");
            assert!(
                seen.vary.contains("accept-encoding"),
                "{accept:?}: {}",
                seen.vary
            );
            assert_eq!(seen.body, document(), "{accept:?}");
            assert!(
                !seen.etag.is_empty() && !seen.etag.starts_with("W/"),
                "{accept:?}"
            );
        }
        assert_eq!(hit.etag, miss.etag);
        etags.push(hit.etag);
    }
    assert_eq!(calls.count(), 3, "stored once per encoding");
    let mut distinct = etags.clone();
    distinct.dedup();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one strong ETag per encoding: {etags:?}");
    // A conditional request matches its own encoding's ETag only.
    for (i, (accept, _)) in CLIENTS.into_iter().enumerate() {
        for (j, tag) in etags.iter().enumerate() {
            let seen = fetch(&server, accept, Some(tag)).await;
            let expected = if i == j { 304 } else { 200 };
            assert_eq!(seen.status, expected, "{accept:?} with {tag}");
        }
    }
    assert_eq!(
        calls.count(),
        3,
        "conditional requests were answered from the cache"
    );
}

#[tokio::test]
async fn compression_inside_the_cache_stores_each_encoding_with_its_own_etag() {
    compression_inside(None).await;
}

/// The handler's own ETag is the same for every encoding tower-http
/// produces from its body; the cache gives each encoding its own.
#[tokio::test]
async fn compression_inside_keeps_etags_apart_when_the_handler_sets_one() {
    compression_inside(Some("\"v1\"")).await;
}

#[tokio::test]
async fn compression_outside_the_cache_compresses_every_hit_of_one_stored_copy() {
    let cache = cache();
    let calls = Calls::default();
    let app = routes(&calls, None)
        .layer(cache.layer())
        .layer(CompressionLayer::new());
    let server = TestServer::start(app).await;
    let first = fetch(&server, Some("gzip"), None).await;
    assert!(
        first.cache_status.ends_with("stored"),
        "{}",
        first.cache_status
    );
    for (accept, encoding) in CLIENTS {
        let hit = fetch(&server, accept, None).await;
        assert_eq!(hit.cache_status, "strata; hit", "{accept:?}");
        assert_eq!(hit.encoding, encoding, "{accept:?}");
        assert_eq!(hit.body, document());
        // tower-http keeps the stored (identity) ETag on what it
        // compresses: the same strong ETag on every encoding.
        assert_eq!(hit.etag, first.etag);
    }
    assert_eq!(calls.count(), 1, "one identity copy for every encoding");
}
