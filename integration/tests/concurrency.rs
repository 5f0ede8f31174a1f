//! Single flight through a real socket: concurrent misses on one key make
//! one call of the handler, a leader that goes away or fails strands no
//! one, and users never share a flight on a per-user route.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::{Router, routing::get};
use common::{Calls, TestServer, count_arrivals, header, user_from_header};
use futures_util::future::join_all;
use strata::{Cache, CachePolicy, MemoryStore};

/// Holds a handler until `expected` requests have reached the server (or a
/// generous deadline passes), then a little longer so that every one of
/// them has joined the flight. Keeps "all requests were concurrent" true
/// however slowly the client opens its connections.
async fn wait_for_arrivals(arrivals: &Calls, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.count() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_first_requests_make_one_call() {
    const N: usize = 200;
    let cache = Cache::builder().build();
    let handle = cache.handle();
    let calls = Calls::default();
    let arrivals = Calls::default();
    let (counted, gate) = (calls.clone(), arrivals.clone());
    let app = Router::new()
        .route(
            "/slow",
            get(move || async move {
                let call = counted.hit();
                wait_for_arrivals(&gate, N).await;
                format!("slow body from call {call}")
            })
            .layer(CachePolicy::public(Duration::from_secs(60))),
        )
        .layer(cache.layer());
    let server = TestServer::start(count_arrivals(app, None, &arrivals)).await;

    let responses = join_all((0..N).map(|_| async {
        let response = server.get("/slow").send().await.unwrap();
        let status = header(&response, "cache-status");
        (response.status(), status, response.text().await.unwrap())
    }))
    .await;

    assert_eq!(arrivals.count(), N, "every request reached the server");
    assert_eq!(calls.count(), 1, "exactly one inner call");
    let bodies: HashSet<&str> = responses.iter().map(|(_, _, body)| body.as_str()).collect();
    assert_eq!(bodies, HashSet::from(["slow body from call 1"]));
    assert!(responses.iter().all(|(status, _, _)| *status == 200));
    let stored = responses
        .iter()
        .filter(|(_, status, _)| status == "strata; fwd=uri-miss; stored")
        .count();
    let collapsed = responses
        .iter()
        .filter(|(_, status, _)| status == "strata; fwd=uri-miss; collapsed")
        .count();
    assert_eq!((stored, collapsed), (1, N - 1));

    // One leader (a miss that stored); every waiter is counted as coalesced
    // and, since it was answered from the stored response, as a hit.
    let stats = handle.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.stores, 1);
    assert_eq!(stats.coalesced, (N - 1) as u64);
    assert_eq!(stats.hits, (N - 1) as u64);
    assert_eq!(stats.bypasses, 0);

    let after = server.get("/slow").send().await.unwrap();
    assert_eq!(header(&after, "cache-status"), "strata; hit");
    assert_eq!(after.text().await.unwrap(), "slow body from call 1");
    assert_eq!(calls.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_client_disconnects_strands_no_waiter() {
    const WAITERS: usize = 20;
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/slow",
            get(move || async move {
                let call = counted.hit();
                tokio::time::sleep(Duration::from_millis(300)).await;
                format!("complete body from call {call}")
            })
            .layer(CachePolicy::public(Duration::from_secs(60))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    // The leader's client gives up long before the handler is done.
    let leader = {
        let request = server.get("/slow").timeout(Duration::from_millis(100));
        tokio::spawn(async move { request.send().await })
    };
    // Let the leader reach the handler before anyone else asks.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(calls.count(), 1, "the leader is in the handler");
    let waiters = join_all((0..WAITERS).map(|_| async {
        let response = server
            .get("/slow")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("a waiter gets a response");
        let status = response.status();
        (status, response.text().await.expect("a complete body"))
    }))
    .await;

    let leader = leader.await.unwrap();
    assert!(
        leader.as_ref().is_err_and(reqwest::Error::is_timeout),
        "the leader's client timed out: {leader:?}"
    );
    let calls_made = calls.count();
    assert!(
        (1..=2).contains(&calls_made),
        "the handler was called {calls_made} times"
    );
    let expected = format!("complete body from call {calls_made}");
    for (status, body) in &waiters {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(body, &expected, "every waiter got the same complete body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_of_different_users_do_not_share_a_flight() {
    const USERS: usize = 8;
    const PER_USER: usize = 5;
    let cache = Cache::builder().user(user_from_header).build();
    let handle = cache.handle();
    let calls = Calls::default();
    let arrivals = Calls::default();
    let (counted, gate) = (calls.clone(), arrivals.clone());
    let app = Router::new()
        .route(
            "/me",
            get(move |headers: HeaderMap| async move {
                let call = counted.hit();
                wait_for_arrivals(&gate, USERS * PER_USER).await;
                let user = headers
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("anonymous")
                    .to_owned();
                format!("private data of {user} (call {call})")
            })
            .layer(CachePolicy::private(Duration::from_secs(60))),
        )
        .layer(cache.layer());
    let server = TestServer::start(count_arrivals(app, None, &arrivals)).await;

    let requests = (0..USERS).flat_map(|user| (0..PER_USER).map(move |_| format!("user-{user}")));
    let responses = join_all(requests.map(|user| {
        let request = server.get_as("/me", &user);
        async move {
            let response = request.send().await.unwrap();
            (user, response.text().await.unwrap())
        }
    }))
    .await;

    assert_eq!(calls.count(), USERS, "one call per user, none shared");
    for user in 0..USERS {
        let user = format!("user-{user}");
        let bodies: HashSet<&str> = responses
            .iter()
            .filter(|(asked, _)| *asked == user)
            .map(|(_, body)| body.as_str())
            .collect();
        assert_eq!(bodies.len(), 1, "{user} got one body: {bodies:?}");
        let body = bodies.into_iter().next().unwrap();
        assert!(
            body.starts_with(&format!("private data of {user} (")),
            "{user} got {body}"
        );
    }
    let stats = handle.stats();
    assert_eq!(stats.misses, USERS as u64);
    assert_eq!(stats.coalesced, (USERS * (PER_USER - 1)) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_leader_strands_no_waiter() {
    const WAITERS: usize = 20;
    let store = MemoryStore::new(1 << 20);
    let cache = Cache::builder().store(Arc::new(store.clone())).build();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/flaky",
            get(move || async move {
                let call = counted.hit();
                if call == 1 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_owned())
                } else {
                    (StatusCode::OK, format!("fine from call {call}"))
                }
            })
            .layer(CachePolicy::public(Duration::from_secs(60))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let leader = {
        let request = server.get("/flaky");
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(calls.count(), 1, "the leader is in the handler");
    let waiters = join_all((0..WAITERS).map(|_| async {
        let response = server
            .get("/flaky")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("a waiter gets a response");
        let status = response.status();
        (status, response.text().await.expect("a complete body"))
    }))
    .await;

    let leader = leader.await.unwrap().unwrap();
    assert_eq!(leader.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(leader.text().await.unwrap(), "boom");
    // The 500 was not shared: every waiter asked the handler itself.
    for (status, body) in &waiters {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(body.starts_with("fine from call "), "{body}");
    }
    assert!(calls.count() <= WAITERS + 1);
    // The error was not stored: the next request is answered from a 200.
    let next = server.get("/flaky").send().await.unwrap();
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(header(&next, "cache-status"), "strata; hit");
    // The waiters stored the URL side by side; one entry is left, and the
    // invalidation index names it once (its path), nothing more.
    assert_eq!(cache.handle().stats().entries, 1);
    assert_eq!(store.index_len(), 1);
}
