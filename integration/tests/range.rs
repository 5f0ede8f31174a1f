//! Range requests answered from the cache, through real sockets: one
//! range gets 206 with `Content-Range`, an unsatisfiable one 416, several
//! the whole 200; `If-Range` by strong ETag or by date; HEAD ignores
//! `Range`; a matching `If-None-Match` wins over `Range` (304); a range
//! request that fills the cache stores the whole body; a 206 made by the
//! app itself is not stored.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use common::{Calls, TestServer};
use strata::{Cache, CachePolicy, MockClock};

const MINUTE: Duration = Duration::from_secs(60);
const LENGTH: usize = 10_000;

fn body() -> Vec<u8> {
    (0..LENGTH).map(|i| b'a' + (i % 26) as u8).collect()
}

struct Seen {
    status: u16,
    content_range: String,
    content_length: String,
    cache_status: String,
    etag: String,
    last_modified: String,
    body: Vec<u8>,
}

async fn fetch(server: &TestServer, head: bool, headers: &[(&str, &str)]) -> Seen {
    let url = server.url("/file");
    let client = reqwest::Client::new();
    let mut request = if head {
        client.head(url)
    } else {
        client.get(url)
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    Seen {
        status: response.status().as_u16(),
        content_range: header("content-range"),
        content_length: header("content-length"),
        cache_status: header("cache-status"),
        etag: header("etag"),
        last_modified: header("last-modified"),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

async fn server(calls: &Calls) -> TestServer {
    let cache = Cache::builder().clock(MockClock::new()).build();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/file",
            get(move || async move {
                counted.hit();
                body()
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    TestServer::start(app).await
}

#[tokio::test]
async fn ranges_are_answered_from_the_stored_body() {
    let calls = Calls::default();
    let server = server(&calls).await;
    let whole = body();

    // The first request, for a range, fills the cache with the whole body.
    let first = fetch(&server, false, &[("range", "bytes=0-99")]).await;
    assert_eq!(first.status, 206);
    assert!(
        first.cache_status.ends_with("stored"),
        "{}",
        first.cache_status
    );
    assert_eq!(first.content_range, format!("bytes 0-99/{LENGTH}"));
    assert_eq!(first.body, &whole[..100]);

    for (range, first_byte, last_byte) in [
        ("bytes=0-99", 0, 99),
        ("bytes=-500", LENGTH - 500, LENGTH - 1),
        ("bytes=9500-", 9500, LENGTH - 1),
        ("bytes=9990-20000", 9990, LENGTH - 1),
    ] {
        let seen = fetch(&server, false, &[("range", range)]).await;
        assert_eq!(seen.status, 206, "{range}");
        assert_eq!(seen.cache_status, "strata; hit", "{range}");
        assert_eq!(
            seen.content_range,
            format!("bytes {first_byte}-{last_byte}/{LENGTH}"),
            "{range}"
        );
        assert_eq!(
            seen.content_length,
            (last_byte - first_byte + 1).to_string(),
            "{range}"
        );
        assert_eq!(seen.body, &whole[first_byte..=last_byte], "{range}");
        assert_eq!(seen.etag, first.etag, "{range}");
    }

    let unsatisfiable = fetch(&server, false, &[("range", "bytes=20000-")]).await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.content_range, format!("bytes */{LENGTH}"));
    assert!(unsatisfiable.body.is_empty());

    // Several ranges, or one that does not parse: the whole 200.
    for range in ["bytes=0-0,-1", "bytes=oops", "lines=1-2"] {
        let seen = fetch(&server, false, &[("range", range)]).await;
        assert_eq!(seen.status, 200, "{range}");
        assert_eq!(seen.body, whole, "{range}");
        assert_eq!(seen.content_range, "", "{range}");
    }
    assert_eq!(
        calls.count(),
        1,
        "every answer came from the one stored body"
    );
}

#[tokio::test]
async fn if_range_head_and_conditional_requests_agree() {
    let calls = Calls::default();
    let server = server(&calls).await;
    let whole = body();
    let full = fetch(&server, false, &[]).await;
    let (etag, date) = (full.etag.clone(), full.last_modified.clone());
    assert!(!etag.is_empty() && !date.is_empty());

    let partial = |seen: &Seen| seen.status == 206 && seen.body == whole[..10];
    let matched = fetch(
        &server,
        false,
        &[("range", "bytes=0-9"), ("if-range", &etag)],
    )
    .await;
    assert!(
        partial(&matched),
        "If-Range with the ETag: {}",
        matched.status
    );
    let by_date = fetch(
        &server,
        false,
        &[("range", "bytes=0-9"), ("if-range", &date)],
    )
    .await;
    assert!(
        partial(&by_date),
        "If-Range with the date: {}",
        by_date.status
    );
    for other in [
        "\"other\"",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        &format!("W/{etag}"),
    ] {
        let seen = fetch(
            &server,
            false,
            &[("range", "bytes=0-9"), ("if-range", other)],
        )
        .await;
        assert_eq!(seen.status, 200, "If-Range {other}");
        assert_eq!(seen.body, whole, "If-Range {other}");
    }

    // HEAD ignores Range: the GET's headers, no body.
    let head = fetch(&server, true, &[("range", "bytes=0-9")]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length, LENGTH.to_string());
    assert_eq!(head.content_range, "");
    assert!(head.body.is_empty());

    // A matching If-None-Match is answered first: 304, whatever the Range.
    let not_modified = fetch(
        &server,
        false,
        &[("range", "bytes=0-9"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn a_partial_response_made_by_the_app_is_not_stored() {
    let cache = Cache::builder().clock(MockClock::new()).build();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/file",
            get(move || async move {
                counted.hit();
                (
                    StatusCode::PARTIAL_CONTENT,
                    [("content-range", "bytes 0-2/10")],
                    "abc",
                )
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    for _ in 0..2 {
        let seen = fetch(&server, false, &[]).await;
        assert_eq!(seen.status, 206);
        assert_eq!(seen.body, b"abc");
        assert!(
            seen.cache_status.ends_with("detail=status"),
            "{}",
            seen.cache_status
        );
    }
    assert_eq!(calls.count(), 2);
}
