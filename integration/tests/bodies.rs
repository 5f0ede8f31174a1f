//! Which response bodies the layer stores, and that everything it does not
//! store reaches the client whole (or, if the body fails, as a failure).

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use common::{Calls, TestServer, clone_head, header};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use strata::{Cache, CachePolicy, MockClock};
use tokio::sync::Semaphore;
use tokio::time::timeout;

const MINUTE: Duration = Duration::from_secs(60);
/// Long enough for a local round trip, short enough to fail fast.
const PATIENCE: Duration = Duration::from_secs(5);

fn cache_with_max_body(max_body: usize) -> Cache {
    Cache::builder()
        .clock(MockClock::new())
        .max_body(max_body)
        .build()
}

/// A body of `first`, then (once `gate` gives a permit) `second`.
fn gated_stream(
    first: Bytes,
    second: Bytes,
    gate: Arc<Semaphore>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::unfold(0u8, move |step| {
        let (first, second, gate) = (first.clone(), second.clone(), Arc::clone(&gate));
        async move {
            match step {
                0 => Some((Ok(first), 1)),
                1 => {
                    gate.acquire().await.unwrap().forget();
                    Some((Ok(second), 2))
                }
                _ => None,
            }
        }
    })
}

/// Reads the first chunk while the handler still holds the rest back, then
/// lets it go and reads the rest: only an unbuffered pass-through can
/// deliver the first chunk before the body is complete.
async fn read_gated(
    server: &TestServer,
    path: &str,
    gate: &Semaphore,
) -> (reqwest::Response, Vec<u8>) {
    let mut response = timeout(PATIENCE, server.get(path).send())
        .await
        .expect("headers arrive before the body is complete")
        .unwrap();
    let head = clone_head(&response);
    let first = timeout(PATIENCE, response.chunk())
        .await
        .expect("the first chunk arrives before the body is complete")
        .unwrap()
        .expect("a first chunk");
    let mut body = first.to_vec();
    gate.add_permits(1);
    while let Some(chunk) = timeout(PATIENCE, response.chunk()).await.unwrap().unwrap() {
        body.extend_from_slice(&chunk);
    }
    (head, body)
}

#[tokio::test]
async fn body_within_max_body_is_stored() {
    let cache = cache_with_max_body(1024);
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/exact",
            get(move || async move {
                counted.hit();
                "x".repeat(1024)
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let first = server.get("/exact").send().await.unwrap();
    assert_eq!(
        header(&first, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(first.bytes().await.unwrap().len(), 1024);
    let second = server.get("/exact").send().await.unwrap();
    assert_eq!(header(&second, "cache-status"), "strata; hit");
    assert_eq!(second.bytes().await.unwrap().len(), 1024);
    assert_eq!(calls.count(), 1, "a body of exactly max_body is stored");
}

#[tokio::test]
async fn body_over_max_body_passes_through_whole_and_is_not_stored() {
    let cache = cache_with_max_body(1024);
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/big",
            get(move || async move {
                let n = counted.hit();
                format!("{n}{}", "y".repeat(4999))
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for n in 1..=2 {
        let response = server.get("/big").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "cache-status"),
            "strata; fwd=uri-miss; detail=too-large"
        );
        assert_eq!(header(&response, "etag"), "", "not buffered, no digest");
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), 5000);
        assert_eq!(body[0], b'0' + n as u8);
    }
    assert_eq!(
        calls.count(),
        2,
        "too large to store: the handler runs again"
    );
}

#[tokio::test]
async fn body_over_max_body_is_streamed_not_buffered() {
    let cache = cache_with_max_body(1024);
    let calls = Calls::default();
    let counted = calls.clone();
    let gate = Arc::new(Semaphore::new(0));
    let handler_gate = Arc::clone(&gate);
    let app = Router::new()
        .route(
            "/big",
            get(move || async move {
                counted.hit();
                let stream = gated_stream(
                    Bytes::from(vec![b'a'; 1000]),
                    Bytes::from(vec![b'b'; 1000]),
                    handler_gate,
                );
                ([(CONTENT_LENGTH, "2000")], Body::from_stream(stream))
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for _ in 0..2 {
        let (head, body) = read_gated(&server, "/big", &gate).await;
        assert_eq!(
            header(&head, "cache-status"),
            "strata; fwd=uri-miss; detail=too-large"
        );
        assert_eq!(header(&head, "content-length"), "2000");
        assert_eq!(body.len(), 2000);
        assert!(body[..1000].iter().all(|&b| b == b'a'));
        assert!(body[1000..].iter().all(|&b| b == b'b'));
    }
    assert_eq!(calls.count(), 2);
}

/// A body of unknown length (streamed, chunked, compressed on the fly) is
/// read until it ends, within the limit, and stored like any other: the
/// next request is a hit with a `Content-Length`.
#[tokio::test]
async fn streaming_body_of_unknown_length_is_buffered_and_stored() {
    let cache = cache_with_max_body(1024 * 1024);
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/stream",
            get(move || async move {
                counted.hit();
                let chunks: Vec<Result<Bytes, Infallible>> = vec![
                    Ok(Bytes::from_static(b"first,")),
                    Ok(Bytes::from_static(b"second")),
                ];
                Body::from_stream(futures_util::stream::iter(chunks))
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for expected in ["strata; fwd=uri-miss; stored", "strata; hit"] {
        let response = server.get("/stream").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "cache-status"), expected);
        assert_eq!(header(&response, "content-length"), "12");
        assert_eq!(header(&response, "transfer-encoding"), "");
        assert_ne!(header(&response, "etag"), "");
        assert_eq!(response.bytes().await.unwrap(), "first,second");
    }
    assert_eq!(calls.count(), 1, "stored once, hit after");
}

/// A stream of unknown length that passes the limit goes through whole and
/// is not stored; what was read while looking for its end is not held
/// back once the limit is passed (the first chunk, over the limit, reaches
/// the client while the handler still holds the rest).
#[tokio::test]
async fn streaming_body_of_unknown_length_over_the_limit_streams_through() {
    let cache = cache_with_max_body(1024);
    let calls = Calls::default();
    let counted = calls.clone();
    let gate = Arc::new(Semaphore::new(0));
    let handler_gate = Arc::clone(&gate);
    let app = Router::new()
        .route(
            "/stream",
            get(move || async move {
                counted.hit();
                let stream = gated_stream(
                    Bytes::from(vec![b'a'; 1500]),
                    Bytes::from(vec![b'b'; 500]),
                    handler_gate,
                );
                Body::from_stream(stream)
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for _ in 0..2 {
        let (head, body) = read_gated(&server, "/stream", &gate).await;
        assert_eq!(head.status(), 200);
        assert_eq!(
            header(&head, "cache-status"),
            "strata; fwd=uri-miss; detail=too-large"
        );
        assert_eq!(body.len(), 2000);
        assert!(body[..1500].iter().all(|&b| b == b'a'));
        assert!(body[1500..].iter().all(|&b| b == b'b'));
    }
    assert_eq!(calls.count(), 2, "too large to store");
}

#[tokio::test]
async fn event_stream_is_not_stored() {
    let cache = cache_with_max_body(1024 * 1024);
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/events",
            get(move || async move {
                let n = counted.hit();
                (
                    [(CONTENT_TYPE, "text/event-stream")],
                    format!("data: {n}\n\n"),
                )
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for n in 1..=2 {
        let response = server.get("/events").send().await.unwrap();
        assert_eq!(
            header(&response, "cache-status"),
            "strata; fwd=uri-miss; detail=stream"
        );
        assert_eq!(response.text().await.unwrap(), format!("data: {n}\n\n"));
    }
    assert_eq!(calls.count(), 2);
}

#[tokio::test]
async fn error_statuses_are_not_stored_and_get_no_policy_cache_control() {
    let cache = cache_with_max_body(1024 * 1024);
    let calls = Calls::default();
    let (not_found, failing) = (calls.clone(), calls.clone());
    let app = Router::new()
        .route(
            "/missing",
            get(move || async move {
                (
                    StatusCode::NOT_FOUND,
                    format!("missing {}", not_found.hit()),
                )
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .route(
            "/broken",
            get(move || async move {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("broken {}", failing.hit()),
                )
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for n in 1..=2 {
        let response = server.get("/missing").send().await.unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(header(&response, "cache-control"), "");
        assert_eq!(
            header(&response, "cache-status"),
            "strata; fwd=uri-miss; detail=status"
        );
        assert_eq!(header(&response, "etag"), "");
        assert_eq!(
            response.text().await.unwrap(),
            format!("missing {}", 2 * n - 1)
        );

        let response = server.get("/broken").send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(header(&response, "cache-control"), "");
        assert_eq!(response.text().await.unwrap(), format!("broken {}", 2 * n));
    }
    assert_eq!(calls.count(), 4, "no error response was stored");
}

/// A handler whose body yields some bytes and then fails.
fn failing_body() -> Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"partial ")),
        Err(std::io::Error::other("database went away mid-body")),
    ];
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn body_failing_mid_stream_reaches_the_client_as_an_error_and_is_not_stored() {
    let cache = cache_with_max_body(1024 * 1024);
    let calls = Calls::default();
    let (unknown, declared) = (calls.clone(), calls.clone());
    let app = Router::new()
        // Unknown length: streamed through.
        .route(
            "/unknown",
            get(move || async move {
                unknown.hit();
                failing_body()
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        // Declared length within the limit: the cache buffers it and
        // meets the failure itself.
        .route(
            "/declared",
            get(move || async move {
                declared.hit();
                ([(CONTENT_LENGTH, "100")], failing_body())
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .route(
            "/no-cache",
            get(|| async { ([(CONTENT_LENGTH, "100")], failing_body()) })
                .layer(CachePolicy::no_cache()),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for path in ["/unknown", "/declared", "/no-cache"] {
        for _ in 0..2 {
            let outcome = match server.get(path).send().await {
                Ok(response) => response.bytes().await.map(|_| ()),
                Err(error) => Err(error),
            };
            assert!(outcome.is_err(), "{path}: the client must see the failure");
        }
    }
    assert_eq!(calls.count(), 4, "a failed body is never stored");
}

#[tokio::test]
async fn set_cookie_on_a_public_route_is_not_stored() {
    let cache = cache_with_max_body(1024 * 1024);
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/login",
            get(move || async move {
                let n = counted.hit();
                (
                    [(SET_COOKIE, format!("session={n}"))],
                    format!("welcome {n}"),
                )
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for n in 1..=2 {
        let response = server.get("/login").send().await.unwrap();
        assert_eq!(header(&response, "set-cookie"), format!("session={n}"));
        assert_eq!(
            header(&response, "cache-status"),
            "strata; fwd=uri-miss; detail=set-cookie"
        );
        assert_eq!(
            header(&response, "cache-control"),
            "",
            "no public Cache-Control on a response with a cookie"
        );
        assert_eq!(response.text().await.unwrap(), format!("welcome {n}"));
    }
    assert_eq!(calls.count(), 2, "each client gets its own cookie");
}

/// A body longer than its `Content-Length` said, and longer than the
/// limit: admission let it in on its declared length, the buffer finds
/// out. It reaches the caller whole and is not stored. (In process: on a
/// socket, HTTP framing would cut the body at the declared length.)
#[tokio::test]
async fn a_body_longer_than_declared_and_than_the_limit_is_passed_on_whole() {
    use tower::ServiceExt as _;

    let cache = cache_with_max_body(1024);
    let calls = Calls::default();
    let handler_calls = calls.clone();
    let big = Bytes::from(vec![b'x'; 4096]);
    let body = big.clone();
    let app = Router::new()
        .route(
            "/liar",
            get(move || {
                handler_calls.hit();
                let body = body.clone();
                async move {
                    let stream = futures_util::stream::iter(
                        body.chunks(512)
                            .map(|chunk| Ok::<_, Infallible>(Bytes::copy_from_slice(chunk)))
                            .collect::<Vec<_>>(),
                    );
                    axum::response::Response::builder()
                        .header(CONTENT_LENGTH, "10")
                        .body(Body::from_stream(stream))
                        .unwrap()
                }
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    for round in 1..=2 {
        let request = http::Request::get("/liar").body(Body::empty()).unwrap();
        let response = timeout(PATIENCE, app.clone().oneshot(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            response.headers()["cache-status"],
            "strata; fwd=uri-miss; detail=too-large",
            "round {round}"
        );
        let read = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(read, big, "round {round}: the whole body");
    }
    assert_eq!(calls.count(), 2, "never stored");
}
