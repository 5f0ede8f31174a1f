//! Stale content on a `CachePolicy` (RFC 5861): `stale-while-revalidate`
//! answers from the stale response while exactly one background request
//! refreshes it; `stale-if-error` answers from it instead of a server
//! error. Time moves on a mock clock; requests go through a real socket.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{Calls, TestServer, get_text, header, mock_cache};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use strata::{Cache, CachePolicy, MockClock};
use tokio::sync::Semaphore;
use tower::ServiceExt;

const FRESH: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(30);

/// Waits (on real time, for a background task) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `/r` under `policy`; every call after the first waits for a permit of
/// `gate`, so a test can hold a refresh in flight.
async fn gated_server(
    cache: &Cache,
    calls: &Calls,
    gate: &Arc<Semaphore>,
    policy: CachePolicy,
) -> TestServer {
    let (calls, gate) = (calls.clone(), Arc::clone(gate));
    let handler = get(move || {
        let (calls, gate) = (calls.clone(), Arc::clone(&gate));
        async move {
            let n = calls.hit();
            if n > 1 {
                gate.acquire().await.expect("gate open").forget();
            }
            format!("call {n}")
        }
    });
    let app = Router::new()
        .route("/r", handler.layer(policy))
        .layer(cache.layer());
    TestServer::start(app).await
}

#[tokio::test]
async fn while_revalidating_everyone_gets_the_stale_body_and_one_request_refreshes_it() {
    let (cache, clock) = mock_cache();
    let (calls, gate) = (Calls::default(), Arc::new(Semaphore::new(0)));
    let policy = CachePolicy::public(FRESH).stale_while_revalidate(WINDOW);
    let server = gated_server(&cache, &calls, &gate, policy).await;

    let (first, body) = get_text(&server, "/r").await;
    assert_eq!(body, "call 1");
    assert_eq!(
        header(&first, "cache-control"),
        "public, max-age=10, stale-while-revalidate=30"
    );

    clock.advance(Duration::from_secs(15));
    let stale = futures_util::future::join_all((0..20).map(|_| get_text(&server, "/r"))).await;
    for (head, body) in &stale {
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(body, "call 1", "the stale body, without waiting");
        assert_eq!(
            header(head, "cache-status"),
            "strata; hit; detail=stale-while-revalidate"
        );
        assert_eq!(header(head, "age"), "15");
    }
    // One refresh reached the handler, and it is still held.
    eventually("the refresh to reach the handler", || calls.count() == 2).await;

    gate.add_permits(1);
    let mut refreshed = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while refreshed != "call 2" {
        assert!(Instant::now() < deadline, "the refresh was never stored");
        let (head, body) = get_text(&server, "/r").await;
        if body == "call 2" {
            assert_eq!(header(&head, "cache-status"), "strata; hit");
            assert_eq!(header(&head, "age"), "0");
        }
        refreshed = body;
    }
    assert_eq!(
        calls.count(),
        2,
        "exactly one refresh for 20+ stale requests"
    );

    // The refresh is not a client's request: only the first was a miss.
    let stats = cache.handle().stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.stores, 2);
}

#[tokio::test]
async fn past_the_window_a_stale_response_is_fetched_in_line() {
    let (cache, clock) = mock_cache();
    let (calls, gate) = (Calls::default(), Arc::new(Semaphore::new(10)));
    let policy = CachePolicy::public(FRESH).stale_while_revalidate(WINDOW);
    let server = gated_server(&cache, &calls, &gate, policy).await;
    assert_eq!(get_text(&server, "/r").await.1, "call 1");

    clock.advance(FRESH + WINDOW + Duration::from_secs(1));
    let (head, body) = get_text(&server, "/r").await;
    assert_eq!(body, "call 2");
    assert_eq!(header(&head, "cache-status"), "strata; fwd=stale; stored");
}

#[tokio::test]
async fn a_policy_without_stale_windows_never_serves_stale() {
    let (cache, clock) = mock_cache();
    let (calls, gate) = (Calls::default(), Arc::new(Semaphore::new(10)));
    let server = gated_server(&cache, &calls, &gate, CachePolicy::public(FRESH)).await;
    assert_eq!(get_text(&server, "/r").await.1, "call 1");
    clock.advance(FRESH + Duration::from_secs(1));
    let (head, body) = get_text(&server, "/r").await;
    assert_eq!(body, "call 2");
    assert_eq!(header(&head, "cache-status"), "strata; fwd=stale; stored");
}

#[tokio::test]
async fn per_user_stale_responses_stay_with_their_user() {
    let (cache, clock) = mock_cache();
    let (calls, gate) = (Calls::default(), Arc::new(Semaphore::new(10)));
    let policy = CachePolicy::private(FRESH).stale_while_revalidate(WINDOW);
    let server = gated_server(&cache, &calls, &gate, policy).await;

    let alice = server.get_as("/r", "alice").send().await.unwrap();
    assert_eq!(alice.text().await.unwrap(), "call 1");
    clock.advance(Duration::from_secs(15));

    let stale = server.get_as("/r", "alice").send().await.unwrap();
    assert_eq!(
        header(&stale, "cache-status"),
        "strata; hit; detail=stale-while-revalidate"
    );
    assert_eq!(stale.text().await.unwrap(), "call 1");
    // Bob never gets Alice's response, stale or not.
    let bob = server.get_as("/r", "bob").send().await.unwrap();
    assert_ne!(bob.text().await.unwrap(), "call 1");
}

/// `/r` answers 200 on its first call and then whatever `failing` says.
async fn flaky_server(
    cache: &Cache,
    calls: &Calls,
    failing: &Arc<AtomicBool>,
    policy: CachePolicy,
) -> TestServer {
    let (calls, failing) = (calls.clone(), Arc::clone(failing));
    let handler = get(move || {
        let (calls, failing) = (calls.clone(), Arc::clone(&failing));
        async move {
            let n = calls.hit();
            if failing.load(Ordering::SeqCst) {
                (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned())
            } else {
                (StatusCode::OK, format!("call {n}"))
            }
        }
    });
    let app = Router::new()
        .route("/r", handler.layer(policy))
        .layer(cache.layer());
    TestServer::start(app).await
}

#[tokio::test]
async fn if_error_a_stale_response_stands_in_for_a_server_error_within_its_window() {
    let (cache, clock) = mock_cache();
    let (calls, failing) = (Calls::default(), Arc::new(AtomicBool::new(false)));
    let policy = CachePolicy::public(FRESH).stale_if_error(Duration::from_secs(60));
    let server = flaky_server(&cache, &calls, &failing, policy).await;
    assert_eq!(get_text(&server, "/r").await.1, "call 1");

    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(20));
    let (head, body) = get_text(&server, "/r").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(body, "call 1");
    assert_eq!(
        header(&head, "cache-status"),
        "strata; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    assert_eq!(header(&head, "age"), "20");
    assert_eq!(calls.count(), 2, "the service was asked first");

    // Back up within the window: the fresh answer is served and stored.
    failing.store(false, Ordering::SeqCst);
    let (head, body) = get_text(&server, "/r").await;
    assert_eq!(body, "call 3");
    assert_eq!(header(&head, "cache-status"), "strata; fwd=stale; stored");

    // Past the window the error goes through.
    failing.store(true, Ordering::SeqCst);
    clock.advance(FRESH + Duration::from_secs(61));
    let (head, body) = get_text(&server, "/r").await;
    assert_eq!(head.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "down");
}

#[tokio::test]
async fn if_error_a_stale_response_stands_in_for_a_failing_service() {
    // A service with an error type of its own (not behind axum, which
    // needs infallible services): its errors count as failures too.
    let clock = MockClock::new();
    let cache = Cache::builder()
        .clock(clock.clone())
        .default_policy(CachePolicy::public(FRESH).stale_if_error(WINDOW))
        .build();
    let healthy = Arc::new(AtomicBool::new(true));
    let service = {
        let healthy = Arc::clone(&healthy);
        tower::service_fn(move |_request: Request<Body>| {
            let healthy = healthy.load(Ordering::SeqCst);
            async move {
                if healthy {
                    Ok(Response::new(Body::from("fine")))
                } else {
                    Err(std::io::Error::other("upstream gone"))
                }
            }
        })
    };
    let service = tower::Layer::layer(&cache.layer(), service);
    let get = || Request::get("/r").body(Body::empty()).unwrap();

    let first = service.clone().oneshot(get()).await.unwrap();
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "fine"
    );
    healthy.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(15));
    let stale = service.clone().oneshot(get()).await.unwrap();
    assert_eq!(
        stale.headers()["cache-status"],
        "strata; fwd=stale; detail=stale-if-error"
    );
    assert_eq!(
        stale.into_body().collect().await.unwrap().to_bytes(),
        "fine"
    );

    clock.advance(WINDOW);
    let failed = service.clone().oneshot(get()).await;
    assert!(failed.is_err(), "past the window the error goes through");
}
