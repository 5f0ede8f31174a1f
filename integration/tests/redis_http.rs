//! Two app instances, each with its own cache and tiered store, sharing a
//! real redis-server the test starts (strata-testkit), talked to over real
//! sockets: fills shared through Redis, invalidations carried by the bus,
//! private data kept apart, and Redis dying and coming back mid-run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, put};
use common::{Calls, TestServer, header, user_from_header};
use strata::{Cache, CachePolicy, Invalidates, MemoryStore, Store};
use strata_redis::{RedisStore, TieredStore};
use strata_testkit::RedisServer;

const TTL: Duration = Duration::from_secs(60);
/// How long the bus may take to reach the other instance before a test
/// fails (documented: one Redis hop; room left for a loaded CI machine).
const BUS_BOUND: Duration = Duration::from_millis(100);
/// The longest a request may take while Redis is down: the store's
/// operation timeout (50 ms) for a lookup and a write until the breaker
/// opens, plus the handler, with room for a slow machine.
const DOWN_REQUEST_BOUND: Duration = Duration::from_millis(500);
const MATERIALS_KEY: &str = "t:redis:http:/materials";

/// One app instance: its cache on its own tiered store, served on a socket.
struct Instance {
    cache: Cache,
    tiered: TieredStore,
    server: TestServer,
    /// Calls of this instance's GET handlers.
    calls: Calls,
}

/// The app: a public, tagged list; a write that invalidates the tag; a
/// private page. `db` is the data behind them, shared by the instances.
fn app(cache: &Cache, db: &Arc<AtomicU64>, calls: &Calls) -> Router {
    let (list_db, list_calls) = (Arc::clone(db), calls.clone());
    let write_db = Arc::clone(db);
    let me_calls = calls.clone();
    Router::new()
        .route(
            "/materials",
            get(move || async move {
                list_calls.hit();
                format!("materials v{}", list_db.load(Ordering::SeqCst))
            })
            .layer(CachePolicy::public(TTL).tag("materials")),
        )
        .route(
            "/slow",
            get({
                let db = Arc::clone(db);
                move || async move {
                    // Read the data, then take a while to render it: a fill
                    // that an invalidation elsewhere can overtake.
                    let version = db.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    format!("slow v{version}")
                }
            })
            .layer(CachePolicy::public(TTL).tag("materials")),
        )
        .route(
            "/materials/{id}",
            put(move || async move {
                write_db.fetch_add(1, Ordering::SeqCst);
                "updated"
            })
            .layer(Invalidates::tags(["materials"])),
        )
        .route(
            "/me",
            get(move |headers: http::HeaderMap| async move {
                me_calls.hit();
                let user = headers
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .unwrap_or("nobody");
                format!("private data of {user}")
            })
            .layer(CachePolicy::private(TTL)),
        )
        .layer(cache.layer())
}

async fn instance(server: &RedisServer, db: &Arc<AtomicU64>) -> Instance {
    let redis = RedisStore::standalone(&server.url())
        .prefix("t:redis:")
        .build()
        .unwrap();
    let tiered = TieredStore::new(MemoryStore::new(64 << 20), redis).unwrap();
    assert!(tiered.wait_subscribed(Duration::from_secs(5)).await);
    let cache = Cache::builder()
        .prefix("t", "redis")
        .user(user_from_header)
        .store(Arc::new(tiered.clone()))
        .build();
    let calls = Calls::default();
    let server = TestServer::start(app(&cache, db, &calls)).await;
    Instance {
        cache,
        tiered,
        server,
        calls,
    }
}

async fn pair(server: &RedisServer) -> (Instance, Instance, Arc<AtomicU64>) {
    let db = Arc::new(AtomicU64::new(1));
    let a = instance(server, &db).await;
    let b = instance(server, &db).await;
    (a, b, db)
}

/// GETs `path` (as `user`, if any); returns the status, `cache-status`
/// and body.
async fn fetch(at: &Instance, path: &str, user: Option<&str>) -> (u16, String, String) {
    let request = match user {
        Some(user) => at.server.get_as(path, user),
        None => at.server.get(path),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache_status = header(&response, "cache-status");
    (status, cache_status, response.text().await.unwrap())
}

fn in_redis(server: &RedisServer, key: &str) -> bool {
    server.command(&["EXISTS", key]).to_string().trim() == "1"
}

/// Waits until `key` is gone from `at`'s process memory; returns how long.
async fn until_dropped(at: &Instance, key: &str) -> Duration {
    let started = Instant::now();
    while at.tiered.memory().get_entry(key).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{key} still in memory after 1 s"
        );
        tokio::task::yield_now().await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_fill_on_one_instance_is_a_hit_on_the_other_and_a_write_reaches_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b, _db) = pair(&server).await;

    let (status, cache_status, body) = fetch(&a, "/materials", None).await;
    assert_eq!((status, body.as_str()), (200, "materials v1"));
    assert_eq!(cache_status, "strata; fwd=uri-miss; stored");
    assert!(in_redis(&server, MATERIALS_KEY), "A's fill is in Redis");
    assert_eq!(a.calls.count(), 1);

    // B finds it in Redis: its handler is not called.
    let (_, cache_status, body) = fetch(&b, "/materials", None).await;
    assert_eq!(
        (cache_status.as_str(), body.as_str()),
        ("strata; hit", "materials v1")
    );
    assert_eq!(b.calls.count(), 0);
    assert!(
        b.tiered.memory().get_entry(MATERIALS_KEY).is_some(),
        "promoted"
    );
    let redis_hits = b.tiered.stats()[1].hits;
    let memory_hits = b.tiered.stats()[0].hits.unwrap();
    let (_, cache_status, body) = fetch(&b, "/materials", None).await;
    assert_eq!(
        (cache_status.as_str(), body.as_str()),
        ("strata; hit", "materials v1")
    );
    assert!(
        b.tiered.stats()[0].hits.unwrap() > memory_hits,
        "from B's memory"
    );
    assert_eq!(b.tiered.stats()[1].hits, redis_hits, "not from Redis");

    // A write on A invalidates the tag; B's memory drops the list.
    let response = a
        .server
        .client
        .put(a.server.url("/materials/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let delay = until_dropped(&b, MATERIALS_KEY).await;
    eprintln!("B's memory dropped the list {delay:?} after A's PUT returned");
    assert!(delay <= BUS_BOUND, "{delay:?}");
    assert!(!in_redis(&server, MATERIALS_KEY));

    let (_, cache_status, body) = fetch(&b, "/materials", None).await;
    assert_eq!(body, "materials v2", "new data on B");
    assert_eq!(cache_status, "strata; fwd=uri-miss; stored");
    assert_eq!(b.calls.count(), 1);
    // And A now reads B's fill from Redis.
    let (_, cache_status, body) = fetch(&a, "/materials", None).await;
    assert_eq!(
        (cache_status.as_str(), body.as_str()),
        ("strata; hit", "materials v2")
    );
    assert_eq!(a.calls.count(), 1);
}

#[tokio::test]
async fn private_data_stored_through_one_instance_is_never_served_to_others_on_the_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b, _db) = pair(&server).await;

    let (_, cache_status, body) = fetch(&a, "/me", Some("1")).await;
    assert_eq!(body, "private data of 1");
    assert!(cache_status.ends_with("stored"), "{cache_status}");
    assert!(in_redis(&server, "t:redis:http:/me#u=1"));
    assert!(
        !in_redis(&server, "t:redis:http:/me") || {
            // The primary key holds the URL's rule (per user), never a body.
            let raw = server.command(&["GET", "t:redis:http:/me"]).to_string();
            !raw.contains("private data")
        }
    );

    for round in 0..3 {
        let (_, cache_status, body) = fetch(&b, "/me", Some("2")).await;
        assert_eq!(body, "private data of 2", "round {round}");
        assert_eq!(cache_status == "strata; hit", round > 0, "{cache_status}");
        let (_, cache_status, body) = fetch(&b, "/me", None).await;
        assert_eq!(
            body, "private data of nobody",
            "round {round}: {cache_status}"
        );
        assert_ne!(cache_status, "strata; hit");
        let (_, cache_status, body) = fetch(&b, "/me", Some("")).await;
        assert_eq!(
            body, "private data of nobody",
            "round {round}: {cache_status}"
        );
        assert_ne!(cache_status, "strata; hit");
        let (_, cache_status, body) = fetch(&b, "/me", Some("1")).await;
        assert_eq!(
            (cache_status.as_str(), body.as_str()),
            ("strata; hit", "private data of 1"),
            "round {round}"
        );
        // And the other way round: what B stored for user 2 stays user 2's.
        let (_, _, body) = fetch(&a, "/me", Some("2")).await;
        assert_eq!(body, "private data of 2");
        let (_, _, body) = fetch(&a, "/me", None).await;
        assert_eq!(body, "private data of nobody");
    }
    // B's handler ran once for user 2 and for every anonymous request,
    // never for user 1.
    assert_eq!(b.calls.count(), 1 + 3 * 2);

    // Logging user 1 out on A drops user 1's page on B as well.
    a.cache.handle().invalidate_user("1").await.unwrap();
    let delay = until_dropped(&b, "t:redis:http:/me#u=1").await;
    assert!(delay <= BUS_BOUND, "{delay:?}");
    let (_, cache_status, body) = fetch(&b, "/me", Some("1")).await;
    assert_eq!(body, "private data of 1");
    assert_ne!(cache_status, "strata; hit");
    let (_, cache_status, _) = fetch(&b, "/me", Some("2")).await;
    assert_eq!(cache_status, "strata; hit", "user 2 kept");
}

/// `(layer, ok)` of every layer of `at`'s store; checks that the overall
/// status says `degraded` exactly when a layer is down.
async fn health(at: &Instance) -> Vec<(&'static str, bool)> {
    let report = at.cache.handle().health().await;
    let layers: Vec<_> = report.layers.iter().map(|h| (h.layer, h.ok)).collect();
    let expected = if layers.iter().all(|(_, ok)| *ok) {
        strata::HealthStatus::Ok
    } else {
        strata::HealthStatus::Degraded
    };
    assert_eq!(report.status, expected, "{report:?}");
    assert_eq!(
        serde_json::to_value(&report).unwrap()["status"],
        if report.is_ok() { "ok" } else { "degraded" }
    );
    layers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_mid_run_keeps_requests_answered_and_its_return_is_used_again() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (a, b, db) = pair(&server).await;
    let all_ok = [
        ("memory", true),
        ("redis", true),
        ("bus", true),
        ("invalidations", true),
    ];
    for at in [&a, &b] {
        assert_eq!(health(at).await, all_ok);
    }
    fetch(&a, "/materials", None).await;
    assert_eq!(fetch(&b, "/materials", None).await.1, "strata; hit");
    fetch(&a, "/me", Some("1")).await;

    server.stop();
    let mut slowest = Duration::ZERO;
    let mut total = 0u32;
    let calls_before = a.calls.count() + b.calls.count();
    for round in 0..5 {
        if round == 2 {
            // A write while Redis is down: everyone must see its result.
            let response = a
                .server
                .client
                .put(a.server.url("/materials/1"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        for at in [&a, &b] {
            for (path, user, expected) in [
                (
                    "/materials",
                    None,
                    format!("materials v{}", db.load(Ordering::SeqCst)),
                ),
                ("/me", Some("1"), "private data of 1".to_owned()),
                ("/me", Some("2"), "private data of 2".to_owned()),
                ("/me", None, "private data of nobody".to_owned()),
            ] {
                let started = Instant::now();
                let (status, cache_status, body) = fetch(at, path, user).await;
                let took = started.elapsed();
                slowest = slowest.max(took);
                total += 1;
                assert_eq!(status, 200, "{path} as {user:?}, round {round}");
                assert_eq!(
                    body, expected,
                    "{path} as {user:?}, round {round}: {cache_status}"
                );
                assert!(
                    took < DOWN_REQUEST_BOUND,
                    "{path} as {user:?} took {took:?} while Redis was down"
                );
                // Nothing can be stored while Redis is down (and memory is
                // not trusted without the bus): the header must not say so.
                assert!(
                    !cache_status.contains("stored"),
                    "{path} as {user:?}: {cache_status} while Redis was down"
                );
            }
        }
    }
    let origin_calls = a.calls.count() + b.calls.count() - calls_before;
    eprintln!(
        "Redis down: {total} requests, slowest {slowest:?}, {origin_calls} answered by the handlers"
    );
    assert!(origin_calls >= 30, "the handlers answered: {origin_calls}");

    // Health says so; A, which wrote while Redis was down, also has its
    // write's invalidations queued. (B may have some too: a fill whose
    // Redis write timed out before the breaker opened has an unknown
    // outcome, so its key is queued for deletion.)
    let started = Instant::now();
    for (at, wrote) in [(&a, true), (&b, false)] {
        loop {
            let health = health(at).await;
            let expected = [("memory", true), ("redis", false), ("bus", false)];
            let queued = health.get(3) == Some(&("invalidations", false));
            if health[..3] == expected && (queued || !wrote) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(2), "{health:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let health_took = started.elapsed();

    server.restart();
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(5);
    for at in [&a, &b] {
        loop {
            let health = health(at).await;
            if health == all_ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "health after restart: {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let healthy_after = restarted.elapsed();
    // Cached again, without rebuilding anything: a second GET is a hit, on
    // both instances (B's from A's fill in the fresh Redis).
    let version = format!("materials v{}", db.load(Ordering::SeqCst));
    loop {
        fetch(&a, "/materials", None).await;
        let (_, cache_status, body) = fetch(&a, "/materials", None).await;
        assert_eq!(body, version);
        if cache_status == "strata; hit" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A does not cache again: {cache_status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = b.calls.count();
    let (_, cache_status, body) = fetch(&b, "/materials", None).await;
    assert_eq!(
        (cache_status.as_str(), body.as_str()),
        ("strata; hit", version.as_str())
    );
    assert_eq!(b.calls.count(), calls);
    assert!(in_redis(&server, MATERIALS_KEY));
    let (_, _, body) = fetch(&b, "/me", Some("1")).await;
    assert_eq!(body, "private data of 1");
    let (_, cache_status, body) = fetch(&b, "/me", Some("1")).await;
    assert_eq!(
        (cache_status.as_str(), body.as_str()),
        ("strata; hit", "private data of 1")
    );
    let (_, cache_status, body) = fetch(&a, "/me", Some("2")).await;
    assert_eq!(body, "private data of 2");
    assert_ne!(cache_status, "strata; hit");
    eprintln!(
        "health degraded within {health_took:?}; healthy {healthy_after:?} after the restart, \
         caching again {:?} after it",
        restarted.elapsed()
    );

    // The bus works again too: a write on B reaches A's memory.
    assert!(a.tiered.memory().get_entry(MATERIALS_KEY).is_some());
    let response = b
        .server
        .client
        .put(b.server.url("/materials/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let delay = until_dropped(&a, MATERIALS_KEY).await;
    assert!(delay <= BUS_BOUND, "{delay:?}");
    let (_, _, body) = fetch(&a, "/materials", None).await;
    assert_eq!(body, format!("materials v{}", db.load(Ordering::SeqCst)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fill_on_one_instance_does_not_outlive_an_invalidation_made_on_the_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b, db) = pair(&server).await;
    for _round in 0..3 {
        let before = db.load(Ordering::SeqCst);
        // B starts filling /slow with the current data...
        let client = b.server.client.clone();
        let url = b.server.url("/slow");
        let slow =
            tokio::spawn(
                async move { client.get(url).send().await.unwrap().text().await.unwrap() },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...the data changes and A invalidates, while B is still rendering.
        db.fetch_add(1, Ordering::SeqCst);
        a.cache.handle().invalidate_tag("materials").await.unwrap();
        assert_eq!(
            slow.await.unwrap(),
            format!("slow v{before}"),
            "B's own answer is old"
        );
        tokio::time::sleep(BUS_BOUND).await;
        // Neither instance, nor Redis, may keep B's old rendering.
        assert!(
            !in_redis(&server, "t:redis:http:/slow"),
            "B's old fill reached Redis"
        );
        for at in [&a, &b] {
            let (_, _, body) = fetch(at, "/slow", None).await;
            assert_eq!(body, format!("slow v{}", before + 1));
        }
        a.cache.handle().invalidate_tag("materials").await.unwrap();
    }
}
