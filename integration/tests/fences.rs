//! Invalidations fence exactly what they name, through real sockets: an
//! unrelated write, handle invalidation or remote invalidation (another
//! instance, a real redis-server) landing during a slow fill lets the fill
//! be stored and the next read hit; one that names the fill (its URL, its
//! tag, its user, everything) leaves nothing old readable.
//!
//! The slow handler parks on a [`Gate`] the test opens, so "during the
//! fill" is an ordering, not a sleep.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use common::{Calls, TestServer, count_arrivals, header, user_from_header};
use strata::{Cache, CacheHandle, CachePolicy, Invalidates, MemoryStore};
use strata_redis::{RedisStore, TieredStore};
use strata_testkit::RedisServer;
use tokio::sync::{Notify, Semaphore};

const TTL: Duration = Duration::from_secs(600);
/// No step of these tests should take this long; a hang fails instead.
const BOUND: Duration = Duration::from_secs(10);

/// Holds the slow handler between reading its data and answering.
struct Gate {
    entered: Notify,
    open: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            entered: Notify::new(),
            open: Semaphore::new(0),
        }
    }
}

impl Gate {
    async fn wait_entered(&self) {
        tokio::time::timeout(BOUND, self.entered.notified())
            .await
            .expect("the slow handler was never called");
    }

    fn release(&self, n: usize) {
        self.open.add_permits(n);
    }
}

/// The app: `/slow` (public, tag `slow`) and `/mine` (private, tag `mine`)
/// read the version then park on the gate; `/fast` is public and untagged;
/// `POST /other` invalidates its own URL and tag `other`, `POST /slow`
/// invalidates its own URL (the same as `GET /slow`).
fn app(cache: &Cache, db: &Arc<AtomicU64>, gate: &Arc<Gate>, calls: &Calls) -> Router {
    let parked = |tag: &'static str, private: bool| {
        let (db, gate, calls) = (Arc::clone(db), Arc::clone(gate), calls.clone());
        let policy = if private {
            CachePolicy::private(TTL)
        } else {
            CachePolicy::public(TTL)
        };
        get(move |headers: HeaderMap| async move {
            calls.hit();
            let version = db.load(Ordering::SeqCst);
            gate.entered.notify_one();
            gate.open.acquire().await.unwrap().forget();
            let user = headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("anyone")
                .to_owned();
            format!("v{version} for {user}")
        })
        .layer(policy.tag(tag))
    };
    let write_db = Arc::clone(db);
    Router::new()
        .route(
            "/slow",
            parked("slow", false).merge(post(|| async { "ok" })),
        )
        .route("/mine", parked("mine", true))
        .route(
            "/fast",
            get(|| async { "fast" }).layer(CachePolicy::public(TTL)),
        )
        .route(
            "/other",
            post(move || async move {
                write_db.fetch_add(1000, Ordering::SeqCst);
                "written"
            })
            .layer(Invalidates::tags(["other"])),
        )
        .layer(cache.layer())
}

struct Fixture {
    server: TestServer,
    handle: CacheHandle,
    db: Arc<AtomicU64>,
    gate: Arc<Gate>,
    calls: Calls,
    /// Requests that reached the server, before the cache saw them.
    arrivals: Calls,
}

async fn fixture(cache: Cache) -> Fixture {
    let db = Arc::new(AtomicU64::new(1));
    let gate = Arc::new(Gate::default());
    let calls = Calls::default();
    let arrivals = Calls::default();
    let app = count_arrivals(app(&cache, &db, &gate, &calls), None, &arrivals);
    let server = TestServer::start(app).await;
    Fixture {
        server,
        handle: cache.handle(),
        db,
        gate,
        calls,
        arrivals,
    }
}

async fn memory_fixture() -> Fixture {
    fixture(Cache::builder().user(user_from_header).build()).await
}

/// A GET of `path` (as `user`), returning `cache-status` and body.
async fn fetch(server: &TestServer, path: &str, user: Option<&str>) -> (String, String) {
    let request = match user {
        Some(user) => server.get_as(path, user),
        None => server.get(path),
    };
    let response = tokio::time::timeout(BOUND, request.send())
        .await
        .expect("GET answered in time")
        .unwrap();
    assert!(response.status().is_success(), "GET {path}");
    let status = header(&response, "cache-status");
    (status, response.text().await.unwrap())
}

/// Starts a GET of `path` that will park in the slow handler; returns once
/// it is parked.
async fn start_fill(
    at: &Fixture,
    path: &'static str,
    user: Option<&'static str>,
) -> tokio::task::JoinHandle<(String, String)> {
    let server_url = at.server.url(path);
    let client = at.server.client.clone();
    let fill = tokio::spawn(async move {
        let mut request = client.get(server_url);
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        let response = request.send().await.unwrap();
        let status = header(&response, "cache-status");
        (status, response.text().await.unwrap())
    });
    at.gate.wait_entered().await;
    fill
}

async fn finish(fill: tokio::task::JoinHandle<(String, String)>) -> (String, String) {
    tokio::time::timeout(BOUND, fill)
        .await
        .expect("the fill finished")
        .unwrap()
}

/// What an unrelated event during a fill must not change: the fill is
/// stored and the next read is a hit, with one handler call in all.
async fn assert_stored_then_hit(at: &Fixture, path: &str, user: Option<&str>, what: &str) {
    let (status, _) = fetch(&at.server, path, user).await;
    assert_eq!(status, "strata; hit", "after {what}: the next read hits");
    assert_eq!(at.calls.count(), 1, "after {what}: one handler call");
    assert_eq!(at.handle.stats().fenced, 0, "after {what}: nothing fenced");
}

#[tokio::test]
async fn an_unrelated_write_during_a_slow_fill_does_not_stop_it() {
    let at = memory_fixture().await;
    let fill = start_fill(&at, "/slow", None).await;
    let response = at.server.client.post(at.server.url("/other")).send();
    let response = tokio::time::timeout(BOUND, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    at.gate.release(1);
    let (status, body) = finish(fill).await;
    assert_eq!(body, "v1 for anyone");
    assert_eq!(status, "strata; fwd=uri-miss; stored");
    assert_stored_then_hit(&at, "/slow", None, "an unrelated POST").await;
}

#[tokio::test]
async fn unrelated_handle_invalidations_during_a_slow_fill_do_not_stop_it() {
    for (path, user) in [("/slow", None), ("/mine", Some("alice"))] {
        let at = memory_fixture().await;
        let fill = start_fill(&at, path, user).await;
        // Each names something else: another tag, URL, prefix, user, value.
        let handle = &at.handle;
        handle.invalidate_tag("other").await.unwrap();
        handle.invalidate_tags(["x", "y"]).await.unwrap();
        handle.invalidate_url("/fast").await.unwrap();
        handle.invalidate_url("/slower").await.unwrap();
        handle.invalidate_prefix("/other").await.unwrap();
        handle.invalidate_user("bob").await.unwrap();
        handle.invalidate_key("some-value").await.unwrap();
        at.gate.release(1);
        let (status, _) = finish(fill).await;
        assert!(status.ends_with("; stored"), "{path}: {status}");
        assert_stored_then_hit(&at, path, user, "unrelated invalidations").await;
    }
}

#[tokio::test]
async fn twenty_concurrent_misses_around_an_unrelated_write_make_one_call() {
    let at = memory_fixture().await;
    let first = start_fill(&at, "/slow", None).await;
    let mut rest = Vec::new();
    for i in 0..19 {
        if i == 9 {
            let post = at.server.client.post(at.server.url("/other")).send();
            assert_eq!(
                tokio::time::timeout(BOUND, post)
                    .await
                    .unwrap()
                    .unwrap()
                    .status(),
                200
            );
        }
        let client = at.server.client.clone();
        let url = at.server.url("/slow");
        rest.push(tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            let status = header(&response, "cache-status");
            (status, response.text().await.unwrap())
        }));
    }
    // Let the waiters reach the flight before the leader answers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    at.gate.release(20);
    let (status, body) = finish(first).await;
    assert_eq!(status, "strata; fwd=uri-miss; stored");
    for waiter in rest {
        let (_, other) = finish(waiter).await;
        assert_eq!(other, body, "every request gets the one answer");
    }
    assert_eq!(at.calls.count(), 1, "20 misses, 1 handler call");
    assert_stored_then_hit(&at, "/slow", None, "20 misses").await;
}

/// An invalidation naming the fill lands while it runs, with the data
/// changed: the fill's old answer is not stored, and the next read goes to
/// the handler and gets the new data.
async fn assert_named_leaves_nothing_old(
    path: &'static str,
    user: Option<&'static str>,
    invalidate: impl AsyncFnOnce(&Fixture),
    what: &str,
) {
    let at = memory_fixture().await;
    let fill = start_fill(&at, path, user).await;
    at.db.store(2, Ordering::SeqCst);
    invalidate(&at).await;
    at.gate.release(2);
    let (status, body) = finish(fill).await;
    assert!(body.starts_with("v1 "), "{what}: the fill began before");
    assert!(
        !status.contains("stored"),
        "{what}: the old answer must not be stored: {status}"
    );
    let (status, body) = fetch(&at.server, path, user).await;
    assert!(
        body.starts_with("v2 "),
        "{what}: old data read: {body} ({status})"
    );
    assert_eq!(at.calls.count(), 2, "{what}");
}

#[tokio::test]
async fn a_named_invalidation_during_a_fill_leaves_nothing_old() {
    assert_named_leaves_nothing_old(
        "/slow",
        None,
        async |at: &Fixture| {
            at.handle.invalidate_url("/slow").await.unwrap();
        },
        "invalidate_url",
    )
    .await;
    assert_named_leaves_nothing_old(
        "/slow",
        None,
        async |at: &Fixture| {
            at.handle.invalidate_tag("slow").await.unwrap();
        },
        "invalidate_tag",
    )
    .await;
    assert_named_leaves_nothing_old(
        "/slow",
        None,
        async |at: &Fixture| {
            at.handle.invalidate_prefix("/sl").await.unwrap();
        },
        "invalidate_prefix",
    )
    .await;
    assert_named_leaves_nothing_old(
        "/slow",
        None,
        async |at: &Fixture| {
            at.handle.clear().await.unwrap();
        },
        "clear",
    )
    .await;
    assert_named_leaves_nothing_old(
        "/slow",
        None,
        async |at: &Fixture| {
            let post = at.server.client.post(at.server.url("/slow")).send();
            assert_eq!(post.await.unwrap().status(), 200);
        },
        "a write to the same URL",
    )
    .await;
    assert_named_leaves_nothing_old(
        "/mine",
        Some("alice"),
        async |at: &Fixture| {
            at.handle.invalidate_user("alice").await.unwrap();
        },
        "invalidate_user",
    )
    .await;
}

// ---------------------------------------------------------------------------
// Two instances on one real redis-server: remote invalidations.
// ---------------------------------------------------------------------------

/// An instance on `server`; instances of one `env` share their entries.
async fn redis_fixture(server: &RedisServer, env: &str) -> Fixture {
    let redis = RedisStore::standalone(&server.url())
        .prefix(format!("t:{env}:"))
        .build()
        .unwrap();
    let tiered = TieredStore::new(MemoryStore::new(64 << 20), redis).unwrap();
    assert!(tiered.wait_subscribed(BOUND).await);
    let cache = Cache::builder()
        .prefix("t", env)
        .user(user_from_header)
        .store(Arc::new(tiered))
        .build();
    fixture(cache).await
}

/// Waits until `at` has received `count` invalidations from another
/// instance (the cache counts each as it fences it).
async fn heard(at: &Fixture, count: u64) {
    let deadline = std::time::Instant::now() + BOUND;
    while at.handle.stats().invalidations < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the bus did not deliver {count} invalidations"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_remote_invalidation_fences_only_what_it_names() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Unrelated: A invalidates a tag, a URL and a user B's fill is not.
    let a = redis_fixture(&server, "unrelated").await;
    let b = redis_fixture(&server, "unrelated").await;
    let fill = start_fill(&b, "/slow", None).await;
    a.handle.invalidate_tag("other").await.unwrap();
    a.handle.invalidate_url("/fast").await.unwrap();
    a.handle.invalidate_user("bob").await.unwrap();
    // B heard all three before its fill writes.
    heard(&b, 3).await;
    b.gate.release(1);
    let (status, _) = finish(fill).await;
    assert_eq!(status, "strata; fwd=uri-miss; stored");
    assert_stored_then_hit(&b, "/slow", None, "unrelated remote invalidations").await;
    // And A reads B's fill from Redis without calling its handler.
    let (status, _) = fetch(&a.server, "/slow", None).await;
    assert_eq!(status, "strata; hit");
    assert_eq!(a.calls.count(), 0);

    // Related: A invalidates B's fill's tag while it runs; neither
    // instance can read the old answer afterwards.
    for (what, path, user) in [
        ("tag", "/mine", Some("alice")),
        ("user", "/mine", Some("alice")),
        ("url", "/mine", Some("alice")),
        ("clear", "/mine", Some("alice")),
    ] {
        let a = redis_fixture(&server, what).await;
        let b = redis_fixture(&server, what).await;
        // One database for both instances.
        let db = Arc::clone(&b.db);
        let fill = start_fill(&b, path, user).await;
        db.store(2, Ordering::SeqCst);
        a.db.store(2, Ordering::SeqCst);
        match what {
            "tag" => a.handle.invalidate_tag("mine").await.unwrap(),
            "user" => a.handle.invalidate_user("alice").await.unwrap(),
            "url" => a.handle.invalidate_url("/mine").await.unwrap(),
            _ => a.handle.clear().await.unwrap(),
        };
        heard(&b, 1).await;
        b.gate.release(2);
        a.gate.release(2);
        let (status, body) = finish(fill).await;
        assert!(body.starts_with("v1 "), "{what}");
        assert!(!status.contains("stored"), "{what}: {status}");
        for at in [&b, &a] {
            let (status, body) = fetch(&at.server, path, user).await;
            assert!(
                body.starts_with("v2 "),
                "remote {what}: old data readable: {body} ({status})"
            );
        }
    }
}

/// Requests that joined a fill before an invalidation named it were
/// concurrent with that invalidation: the fill's answer serves them (it is
/// not stored), without a second trip to the handler each. The first
/// request after the invalidation gets the new data.
#[tokio::test]
async fn waiters_that_joined_before_a_related_invalidation_take_the_unstored_answer() {
    let at = memory_fixture().await;
    let leader = start_fill(&at, "/slow", None).await;
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let client = at.server.client.clone();
        let url = at.server.url("/slow");
        waiters.push(tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            let status = header(&response, "cache-status");
            (status, response.text().await.unwrap())
        }));
    }
    // Let them reach the flight (past the server, then a lookup that finds
    // nothing), then change the data and invalidate it.
    let deadline = std::time::Instant::now() + BOUND;
    while at.arrivals.count() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    at.db.store(2, Ordering::SeqCst);
    at.handle.invalidate_tag("slow").await.unwrap();
    at.gate.release(10);
    let (status, body) = finish(leader).await;
    assert_eq!(body, "v1 for anyone");
    assert_eq!(status, "strata; fwd=uri-miss", "not stored");
    for waiter in waiters {
        let (status, body) = finish(waiter).await;
        assert_eq!(body, "v1 for anyone", "{status}");
        assert_eq!(status, "strata; fwd=uri-miss; collapsed");
    }
    assert_eq!(at.calls.count(), 1, "one handler call for the six");
    let (status, body) = fetch(&at.server, "/slow", None).await;
    assert_eq!(body, "v2 for anyone", "{status}");
    assert_eq!(at.calls.count(), 2);
}
