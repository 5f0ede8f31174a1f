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
use strata::compress::Compression;
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

/// A cache with built-in compression, all codings.
fn compressing_cache() -> Cache {
    Cache::builder()
        .clock(MockClock::new())
        .compression(Compression::default())
        .build()
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
    fetch_path(server, "/data", accept, if_none_match).await
}

async fn fetch_path(
    server: &TestServer,
    path: &str,
    accept: Option<&str>,
    if_none_match: Option<&str>,
) -> Seen {
    let mut request = server.get(path);
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
        "zstd" => String::from_utf8(zstd::decode_all(&raw[..]).unwrap()).unwrap(),
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

/// Built-in compression: one fill, every encoding stored with it, each
/// request answered in the coding it prefers, already compressed.
#[tokio::test]
async fn built_in_compression_stores_once_and_negotiates_every_hit() {
    let cache = compressing_cache();
    let calls = Calls::default();
    let server = TestServer::start(routes(&calls, None).layer(cache.layer())).await;
    let first = fetch(&server, Some("gzip"), None).await;
    assert!(
        first.cache_status.ends_with("stored"),
        "{}",
        first.cache_status
    );
    assert_eq!(first.encoding, "gzip");
    let mut etags = std::collections::HashMap::new();
    for (accept, expected) in [
        (Some("gzip"), "gzip"),
        (Some("br"), "br"),
        (Some("zstd"), "zstd"),
        (None, ""),
        (Some("identity"), ""),
        (Some("gzip;q=0.5, br;q=0.9"), "br"),
        (Some("gzip, deflate"), "gzip"),
        (Some("br;q=0, gzip;q=0.1"), "gzip"),
        (Some("gzip;q=0.5, identity"), ""),
        (Some("*;q=0, identity"), ""),
        (Some("deflate"), ""),
        // Nothing acceptable: identity all the same (RFC 9110 §12.5.3).
        (Some("identity;q=0"), ""),
    ] {
        let seen = fetch(&server, accept, None).await;
        assert_eq!(seen.status, 200, "{accept:?}");
        assert_eq!(seen.cache_status, "strata; hit", "{accept:?}");
        assert_eq!(seen.encoding, expected, "{accept:?}");
        assert_eq!(seen.body, document(), "{accept:?}");
        assert!(
            seen.vary.contains("accept-encoding"),
            "{accept:?}: {}",
            seen.vary
        );
        let previous = etags.insert(expected, seen.etag.clone());
        assert!(previous.is_none_or(|tag| tag == seen.etag), "{accept:?}");
    }
    // `*` takes the smallest stored coding.
    let star = fetch(&server, Some("*"), None).await;
    assert!(["br", "zstd", "gzip"].contains(&star.encoding.as_str()));
    assert_eq!(calls.count(), 1, "compressed once, when stored");
    let mut distinct: Vec<&String> = etags.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "one strong ETag per representation: {etags:?}"
    );
    // 304 for the representation the request selects, only.
    let gzip_tag = etags["gzip"].clone();
    assert_eq!(
        fetch(&server, Some("gzip"), Some(&gzip_tag)).await.status,
        304
    );
    assert_eq!(
        fetch(&server, Some("br"), Some(&gzip_tag)).await.status,
        200
    );
    assert_eq!(fetch(&server, None, Some(&etags[""])).await.status, 304);
}

/// HEAD and Range follow the representation the request selects.
#[tokio::test]
async fn built_in_compression_head_and_range_follow_the_representation() {
    let cache = compressing_cache();
    let calls = Calls::default();
    let server = TestServer::start(routes(&calls, None).layer(cache.layer())).await;
    let client = reqwest::Client::new();
    let full = client
        .get(server.url("/data"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let gzipped = full.bytes().await.unwrap();
    let head = client
        .head(server.url("/data"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-encoding"], "gzip");
    assert_eq!(
        head.headers()["content-length"],
        gzipped.len().to_string().as_str()
    );
    let part = client
        .get(server.url("/data"))
        .header("accept-encoding", "gzip")
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-encoding"], "gzip");
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-9/{}", gzipped.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), gzipped.slice(0..10));
    assert_eq!(calls.count(), 1);
}

/// What is left alone: small bodies, images, a route that opts out; and a
/// route can opt in without the builder.
#[tokio::test]
async fn built_in_compression_leaves_alone_what_it_should() {
    let cache = compressing_cache();
    let plain = Cache::builder().clock(MockClock::new()).build();
    let big = document();
    let route = |content_type: &'static str, body: String, policy: CachePolicy| {
        get(move || {
            let body = body.clone();
            async move {
                let mut response = axum::response::Response::new(axum::body::Body::from(body));
                response.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static(content_type),
                );
                response
            }
        })
        .layer(policy)
    };
    let app = Router::new()
        .route(
            "/small",
            route(
                "application/json",
                "{\"a\":1}".to_owned(),
                CachePolicy::public(MINUTE),
            ),
        )
        .route(
            "/image",
            route("image/png", big.clone(), CachePolicy::public(MINUTE)),
        )
        .route(
            "/out",
            route(
                "application/json",
                big.clone(),
                CachePolicy::public(MINUTE).compress(false),
            ),
        )
        .route(
            "/data",
            route("application/json", big.clone(), CachePolicy::public(MINUTE)),
        );
    let server = TestServer::start(app.layer(cache.layer())).await;
    for path in ["/small", "/image", "/out"] {
        for _ in 0..2 {
            let seen = fetch_path(&server, path, Some("gzip, br"), None).await;
            assert_eq!(seen.status, 200, "{path}");
            assert_eq!(seen.encoding, "", "{path} is left alone");
            assert!(
                !seen.vary.contains("accept-encoding"),
                "{path}: {}",
                seen.vary
            );
        }
    }
    assert_eq!(
        fetch_path(&server, "/data", Some("br"), None)
            .await
            .encoding,
        "br"
    );

    // Opt in per route, without the builder.
    let opted = Router::new().route(
        "/data",
        route(
            "application/json",
            big,
            CachePolicy::public(MINUTE).compress(true),
        ),
    );
    let server = TestServer::start(opted.layer(plain.layer())).await;
    fetch(&server, Some("gzip"), None).await;
    let seen = fetch(&server, Some("gzip"), None).await;
    assert_eq!(
        (seen.cache_status.as_str(), seen.encoding.as_str()),
        ("strata; hit", "gzip")
    );
}

/// `no-transform` from the handler: no coding is added (RFC 9111 §5.2.2.6).
#[tokio::test]
async fn built_in_compression_respects_no_transform() {
    let cache = compressing_cache();
    let app = Router::new().route(
        "/data",
        get(|| async {
            (
                [
                    ("content-type", "application/json"),
                    ("cache-control", "public, max-age=60, no-transform"),
                ],
                document(),
            )
        })
        .layer(CachePolicy::origin()),
    );
    let server = TestServer::start(app.layer(cache.layer())).await;
    for _ in 0..2 {
        let seen = fetch(&server, Some("gzip"), None).await;
        assert_eq!(seen.encoding, "");
        assert_eq!(seen.body, document());
    }
}

/// Memory accounting counts every representation.
#[tokio::test]
async fn built_in_compression_is_counted_in_memory() {
    let compressed = compressing_cache();
    let plain = Cache::builder().clock(MockClock::new()).build();
    let mut bytes = Vec::new();
    for cache in [&plain, &compressed] {
        let calls = Calls::default();
        let server = TestServer::start(routes(&calls, None).layer(cache.layer())).await;
        fetch(&server, Some("gzip"), None).await;
        let stats = cache.handle().stats();
        bytes.push(stats.layers[0].bytes.unwrap());
    }
    // Three codings of a 20 KiB document that compresses about tenfold.
    assert!(
        bytes[1] > bytes[0] + 3 * 1000,
        "with compression {} bytes, without {}",
        bytes[1],
        bytes[0]
    );
}

/// Every representation travels through Redis: an instance that did not
/// fill (and has no compression set up) answers a gzip and a br client
/// from the entry another instance stored.
#[tokio::test]
async fn built_in_compression_travels_through_redis() {
    let Some(server) = strata_testkit::RedisServer::start() else {
        return;
    };
    let store = || {
        std::sync::Arc::new(
            strata_redis::RedisStore::standalone(&server.url())
                .prefix("strata:development:")
                .op_timeout(Duration::from_millis(500))
                .build()
                .unwrap(),
        )
    };
    let filler = Cache::builder()
        .store(store())
        .compression(Compression::default())
        .build();
    let reader = Cache::builder().store(store()).build();
    let (fills, reads) = (Calls::default(), Calls::default());
    let a = TestServer::start(routes(&fills, None).layer(filler.layer())).await;
    let b = TestServer::start(routes(&reads, None).layer(reader.layer())).await;
    let stored = fetch(&a, Some("gzip"), None).await;
    assert!(
        stored.cache_status.ends_with("stored"),
        "{}",
        stored.cache_status
    );
    for (accept, encoding) in [(Some("gzip"), "gzip"), (Some("br"), "br"), (None, "")] {
        let seen = fetch(&b, accept, None).await;
        assert_eq!(seen.cache_status, "strata; hit", "{accept:?}");
        assert_eq!(seen.encoding, encoding, "{accept:?}");
        assert_eq!(seen.body, document(), "{accept:?}");
        if encoding == "gzip" {
            assert_eq!(seen.etag, stored.etag, "the same representation");
        }
    }
    assert_eq!((fills.count(), reads.count()), (1, 0));
}

/// A stale entry refreshed by a 304 keeps its codings: the next request
/// for another coding is still a hit, with no compression and no call.
#[tokio::test]
async fn a_304_refresh_keeps_the_stored_codings() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .clock(clock.clone())
        .compression(Compression::default())
        .build();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new().route(
        "/data",
        get(move |headers: axum::http::HeaderMap| async move {
            counted.hit();
            if headers
                .get("if-none-match")
                .is_some_and(|tag| tag == "\"v1\"")
            {
                return (
                    axum::http::StatusCode::NOT_MODIFIED,
                    [("etag", "\"v1\"")],
                    String::new(),
                );
            }
            (axum::http::StatusCode::OK, [("etag", "\"v1\"")], document())
        })
        .layer(CachePolicy::public(MINUTE)),
    );
    let server = TestServer::start(app.layer(cache.layer())).await;
    assert_eq!(fetch(&server, Some("gzip"), None).await.encoding, "gzip");
    clock.advance(MINUTE * 2);
    let refreshed = fetch(&server, Some("gzip"), None).await;
    assert_eq!(refreshed.status, 200);
    assert!(
        refreshed.cache_status.contains("fwd-status=304; stored"),
        "{}",
        refreshed.cache_status
    );
    assert_eq!(refreshed.encoding, "gzip");
    assert_eq!(refreshed.body, document());
    assert_eq!(refreshed.etag, "\"v1-gzip\"");
    assert_eq!(calls.count(), 2, "one fill, one revalidation");
    let br = fetch(&server, Some("br"), None).await;
    assert_eq!(
        (br.cache_status.as_str(), br.encoding.as_str()),
        ("strata; hit", "br")
    );
    assert_eq!(br.body, document());
    assert_eq!(calls.count(), 2);
}
