//! The application's handle: typed `get_or_compute`, exact figures after a
//! known sequence of requests, and the memory store's bounds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Router, routing::get};
use common::{Calls, TestServer, count_arrivals, header, user_from_header};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use strata::{Cache, CacheHandle, CachePolicy, MemoryStore, MockClock};

const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Report {
    id: u32,
    title: String,
    scores: Vec<f64>,
    owner: Option<String>,
}

fn report(version: usize) -> Report {
    Report {
        id: 7,
        title: format!("weekly report v{version}"),
        scores: vec![0.5, 1.25, version as f64],
        owner: Some("alice".to_owned()),
    }
}

/// `get_or_compute("report:7")` counting its computations.
async fn cached_report(handle: &CacheHandle, computes: &Calls, ttl: Duration) -> Report {
    handle
        .get_or_compute("report:7", ttl, || async {
            let version = computes.hit();
            tokio::time::sleep(Duration::from_millis(50)).await;
            report(version)
        })
        .await
}

#[tokio::test]
async fn get_or_compute_computes_once_then_returns_the_stored_value() {
    let handle = Cache::builder().build().handle();
    let computes = Calls::default();
    let first = cached_report(&handle, &computes, TTL).await;
    assert_eq!(first, report(1));
    for _ in 0..3 {
        assert_eq!(cached_report(&handle, &computes, TTL).await, report(1));
    }
    assert_eq!(computes.count(), 1);
    // A different name is a different value.
    let other: Vec<String> = handle
        .get_or_compute("report:8", TTL, || async { vec!["x".to_owned()] })
        .await;
    assert_eq!(other, ["x"]);
    let stats = handle.stats();
    assert_eq!((stats.misses, stats.hits, stats.stores), (2, 3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_get_or_compute_calls_compute_once() {
    let handle = Cache::builder().build().handle();
    let computes = Calls::default();
    let results = join_all((0..50).map(|_| {
        let (handle, computes) = (handle.clone(), computes.clone());
        tokio::spawn(async move { cached_report(&handle, &computes, TTL).await })
    }))
    .await;
    assert_eq!(computes.count(), 1);
    for result in results {
        assert_eq!(result.unwrap(), report(1));
    }
    let stats = handle.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.stores, 1);
    // Each call either led, waited for the leader, or (if it started after
    // the leader stored) read the stored value.
    assert_eq!(stats.hits, 49);
    assert!(stats.coalesced <= 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_or_compute_in_handlers_behind_a_socket_computes_once() {
    let cache = Cache::builder().build();
    let computes = Calls::default();
    let app = Router::new()
        .route(
            "/report",
            get(
                |State((handle, computes)): State<(CacheHandle, Calls)>| async move {
                    axum::Json(cached_report(&handle, &computes, TTL).await)
                },
            ),
        )
        .with_state((cache.handle(), computes.clone()))
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    let reports = join_all((0..50).map(|_| async {
        let response = server.get("/report").send().await.unwrap();
        response.json::<Report>().await.unwrap()
    }))
    .await;
    assert!(reports.iter().all(|r| *r == report(1)));
    assert_eq!(computes.count(), 1);
}

#[derive(Debug, PartialEq)]
struct DatabaseDown;

#[tokio::test]
async fn try_get_or_compute_returns_the_error_and_stores_nothing() {
    let handle = Cache::builder().build().handle();
    let attempts = Calls::default();
    let failed: Result<Report, DatabaseDown> = handle
        .try_get_or_compute("report:7", TTL, || async {
            attempts.hit();
            Err(DatabaseDown)
        })
        .await;
    assert_eq!(failed, Err(DatabaseDown));
    assert_eq!(handle.stats().stores, 0);
    assert_eq!(handle.stats().entries, 0);

    let ok: Result<Report, DatabaseDown> = handle
        .try_get_or_compute("report:7", TTL, || async { Ok(report(attempts.hit())) })
        .await;
    assert_eq!(ok, Ok(report(2)), "the error was not stored");
    let again: Result<Report, DatabaseDown> = handle
        .try_get_or_compute("report:7", TTL, || async { Err(DatabaseDown) })
        .await;
    assert_eq!(again, Ok(report(2)), "the success was");
    assert_eq!(attempts.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_leader_does_not_strand_concurrent_get_or_compute_callers() {
    let handle = Cache::builder().build().handle();
    let attempts = Calls::default();
    let results = join_all((0..10).map(|_| {
        let (handle, attempts) = (handle.clone(), attempts.clone());
        tokio::spawn(async move {
            handle
                .try_get_or_compute("flaky", TTL, || async {
                    let attempt = attempts.hit();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if attempt == 1 {
                        Err(DatabaseDown)
                    } else {
                        Ok(attempt)
                    }
                })
                .await
        })
    }))
    .await;
    let results: Vec<Result<usize, DatabaseDown>> =
        results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "only the failing leader's caller sees the error: {results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .all(|v| *v == 2)
    );
    assert_eq!(attempts.count(), 2);
}

#[tokio::test]
async fn get_or_compute_recomputes_after_its_ttl() {
    let clock = MockClock::new();
    let handle = Cache::builder().clock(clock.clone()).build().handle();
    let computes = Calls::default();
    assert_eq!(cached_report(&handle, &computes, TTL).await, report(1));
    clock.advance(TTL - Duration::from_secs(1));
    assert_eq!(cached_report(&handle, &computes, TTL).await, report(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(cached_report(&handle, &computes, TTL).await, report(2));
    assert_eq!(cached_report(&handle, &computes, TTL).await, report(2));
    assert_eq!(computes.count(), 2);
}

#[tokio::test]
async fn invalidate_key_makes_get_or_compute_recompute() {
    let handle = Cache::builder().build().handle();
    let computes = Calls::default();
    assert_eq!(cached_report(&handle, &computes, TTL).await, report(1));
    let unrelated: u32 = handle.get_or_compute("other", TTL, || async { 1 }).await;
    assert_eq!(handle.invalidate_key("report:7").await.unwrap(), 1);
    assert_eq!(cached_report(&handle, &computes, TTL).await, report(2));
    assert_eq!(cached_report(&handle, &computes, TTL).await, report(2));
    let still: u32 = handle.get_or_compute("other", TTL, || async { 2 }).await;
    assert_eq!((unrelated, still), (1, 1));
    assert_eq!(handle.invalidate_key("never-stored").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_count_a_known_sequence_exactly() {
    const SLOW: usize = 5;
    let cache = Cache::builder().user(user_from_header).build();
    let handle = cache.handle();
    let calls = Calls::default();
    let arrivals = Calls::default();
    let (counted, gate) = (calls.clone(), arrivals.clone());
    let app = Router::new()
        .route(
            "/pub",
            get(|| async { "public body" }).layer(CachePolicy::public(TTL)),
        )
        .route("/none", get(|| async { "no policy" }))
        .route(
            "/me",
            get(|headers: HeaderMap| async move { format!("mine: {:?}", headers.get("x-user")) })
                .layer(CachePolicy::private(TTL)),
        )
        .route(
            "/slow",
            get(move || async move {
                counted.hit();
                // Hold the leader until the other requests have arrived.
                let deadline = Instant::now() + Duration::from_secs(10);
                while gate.count() < SLOW && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                "slow body"
            })
            .layer(CachePolicy::public(TTL)),
        )
        .layer(cache.layer());
    let server = TestServer::start(count_arrivals(app, Some("/slow"), &arrivals)).await;

    // 1. miss + store, 2. hit, 3. conditional hit (304), 4. HEAD hit.
    let first = server.get("/pub").send().await.unwrap();
    let etag = header(&first, "etag");
    server.get("/pub").send().await.unwrap();
    let not_modified = server
        .get("/pub")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    let head = server.client.head(server.url("/pub")).send().await.unwrap();
    assert_eq!(header(&head, "cache-status"), "strata; hit");
    // 5. no policy: a bypass (learns the pass rule); 6. known pass: a bypass.
    server.get("/none").send().await.unwrap();
    server.get("/none").send().await.unwrap();
    // 7. anonymous on a private route: a bypass (that learns the URL is
    // per-user); 8. then a plain bypass.
    server.get("/me").send().await.unwrap();
    server.get("/me").send().await.unwrap();
    // 9. alice: miss + store, 10. hit.
    server.get_as("/me", "alice").send().await.unwrap();
    let hit = server.get_as("/me", "alice").send().await.unwrap();
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    // 11. five concurrent first requests: one miss + store, four coalesced hits.
    let statuses = join_all((0..SLOW).map(|_| async {
        let response = server.get("/slow").send().await.unwrap();
        header(&response, "cache-status")
    }))
    .await;
    assert_eq!(calls.count(), 1, "{statuses:?}");
    // 12. two invalidations, one of which drops /pub; 13. /pub again: a miss.
    assert_eq!(handle.invalidate_tag("nothing").await.unwrap(), 0);
    assert_eq!(handle.invalidate_url("/pub").await.unwrap(), 1);
    server.get("/pub").send().await.unwrap();

    let stats = handle.stats();
    assert_eq!(stats.hits, 4 + 4, "{stats:#?}");
    assert_eq!(stats.misses, 4, "{stats:#?}");
    assert_eq!(stats.stores, 4, "{stats:#?}");
    assert_eq!(stats.bypasses, 4, "{stats:#?}");
    assert_eq!(stats.not_modified, 1, "{stats:#?}");
    assert_eq!(stats.coalesced, 4, "{stats:#?}");
    assert_eq!(stats.invalidations, 2, "{stats:#?}");
    assert_eq!(stats.errors, 0, "{stats:#?}");
    assert!((stats.hit_rate - 8.0 / 12.0).abs() < 1e-12, "{stats:#?}");
    // Every request is exactly one of hit, miss, bypass: 16 requests.
    assert_eq!(stats.hits + stats.misses + stats.bypasses, 16, "{stats:#?}");

    // Entries: /pub, the pass marker of /none, the per-user rule of /me,
    // alice's /me, and /slow; bytes are exactly their sizes.
    let keys = handle.keys();
    let primary = |path: &str| keys.url_key(&path.parse().unwrap());
    let alice = keys.variant_key(&primary("/me"), Some("alice"), &[], &HeaderMap::new());
    let stored: Vec<_> = [
        primary("/pub"),
        primary("/none"),
        primary("/me"),
        alice,
        primary("/slow"),
    ]
    .iter()
    .map(|key| {
        handle
            .store()
            .get_local(key)
            .unwrap_or_else(|| panic!("{key} is stored"))
    })
    .collect();
    assert_eq!(stats.entries, 5, "{stats:#?}");
    let bytes: usize = stored.iter().map(|entry| entry.size()).sum();
    assert_eq!(stats.bytes, bytes as u64, "{stats:#?}");
    assert_eq!(stats.layers.len(), 1);
    assert_eq!(stats.layers[0].entries, Some(5));

    // Resetting zeroes the counters and keeps the entries.
    handle.reset_stats();
    let reset = handle.stats();
    assert_eq!(
        (
            reset.hits,
            reset.misses,
            reset.stores,
            reset.bypasses,
            reset.not_modified,
            reset.coalesced,
            reset.invalidations,
        ),
        (0, 0, 0, 0, 0, 0, 0)
    );
    assert_eq!(reset.hit_rate, 0.0);
    assert_eq!((reset.entries, reset.bytes), (5, bytes as u64));
    let after = server.get("/pub").send().await.unwrap();
    assert_eq!(header(&after, "cache-status"), "strata; hit");
    let after = handle.stats();
    assert_eq!((after.hits, after.misses), (1, 0));
    assert_eq!(after.hit_rate, 1.0);
}

fn pages_app(cache: &Cache) -> Router {
    Router::new()
        .route(
            "/page/{n}",
            get(|Path(n): Path<u32>| async move { format!("{n:04}:{}", "x".repeat(1024)) })
                .layer(CachePolicy::public(TTL).tag("pages")),
        )
        .layer(cache.layer())
}

#[tokio::test]
async fn a_small_memory_store_evicts_and_stays_within_its_capacity() {
    const CAPACITY: u64 = 64 * 1024;
    let cache = Cache::builder().memory(CAPACITY).build();
    let handle = cache.handle();
    let server = TestServer::start(pages_app(&cache)).await;
    for n in 0..300 {
        let response = server.get(&format!("/page/{n}")).send().await.unwrap();
        assert_eq!(
            header(&response, "cache-status"),
            "strata; fwd=uri-miss; stored"
        );
        assert!(
            response
                .text()
                .await
                .unwrap()
                .starts_with(&format!("{n:04}:"))
        );
    }
    let stats = handle.stats();
    assert!(stats.evictions > 0, "{stats:#?}");
    assert!(stats.bytes <= CAPACITY, "{stats:#?}");
    assert!(stats.entries > 0 && stats.entries < 300, "{stats:#?}");
    assert_eq!(stats.stores, 300);
    assert_eq!(stats.layers[0].capacity_bytes, Some(CAPACITY));
}

#[tokio::test]
async fn the_invalidation_index_does_not_outgrow_the_cache() {
    const CAPACITY: u64 = 64 * 1024;
    let store = MemoryStore::new(CAPACITY);
    let cache = Cache::builder()
        .user(user_from_header)
        .store(Arc::new(store.clone()))
        .build();
    let handle = cache.handle();
    let app = pages_app(&cache);
    let server = TestServer::start(app).await;

    for round in 0..3 {
        for n in 0..200 {
            server.get(&format!("/page/{n}")).send().await.unwrap();
        }
        let stats = handle.stats();
        assert!(stats.evictions > 0, "{stats:#?}");
        // Each stored page carries two labels: its path and the tag.
        assert_eq!(
            store.index_len() as u64,
            2 * stats.entries,
            "round {round}: {stats:#?}"
        );
    }
    handle.invalidate_tag("pages").await.unwrap();
    assert_eq!(handle.stats().entries, 0);
    assert_eq!(store.index_len(), 0);
}

/// The fences reach `get_or_compute` too: an invalidation that names the
/// value while it is computed keeps that computation out of the store; one
/// that names something else does not.
#[tokio::test]
async fn an_invalidation_during_get_or_compute_fences_only_the_value_it_names() {
    for (what, named) in [("other key", false), ("tag", false), ("its key", true)] {
        let handle = strata::Cache::builder().build().handle();
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let computing = {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle
                    .get_or_compute("report:9", Duration::from_secs(60), || async move {
                        entered_tx.send(()).unwrap();
                        release_rx.await.unwrap();
                        1u32
                    })
                    .await
            })
        };
        entered_rx.await.unwrap();
        match what {
            "other key" => handle.invalidate_key("report:8").await.unwrap(),
            "tag" => handle.invalidate_tag("reports").await.unwrap(),
            _ => handle.invalidate_key("report:9").await.unwrap(),
        };
        release_tx.send(()).unwrap();
        assert_eq!(
            computing.await.unwrap(),
            1,
            "{what}: the caller gets its value"
        );
        let again: u32 = handle
            .get_or_compute("report:9", Duration::from_secs(60), || async { 2 })
            .await;
        assert_eq!(again, if named { 2 } else { 1 }, "{what}");
        assert_eq!(handle.stats().fenced, u64::from(named), "{what}");
    }
}
