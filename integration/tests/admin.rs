//! The admin router (`strata-admin`) served on a real socket, nested into an
//! app with cached routes: each endpoint's status and JSON, refusals that
//! change nothing, counters that follow real hits and misses, clear and
//! invalidate that drop exactly what they name, and health following a
//! real Redis that dies and comes back.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{Calls, TestServer, clone_head, header, user_from_header};
use http::request::Parts;
use serde_json::{Value, json};
use strata::{Cache, CacheHandle, CachePolicy, MemoryStore};
use strata_admin::{BearerToken, Decision};
use strata_redis::{RedisStore, TieredStore};
use strata_testkit::RedisServer;

const TTL: Duration = Duration::from_secs(60);
const TOKEN: &str = "admin-token-123";

/// Calls of each cached handler.
#[derive(Clone, Default)]
struct Handlers {
    materials: Calls,
    weekly: Calls,
    monthly: Calls,
    me: Calls,
}

/// The application's own routes: a tagged list, two reports under one
/// prefix and tag, and a per-user page.
fn routes(handlers: &Handlers) -> Router {
    let h = handlers.clone();
    Router::new()
        .route(
            "/api/materials/",
            get(move || async move { format!("materials #{}", h.materials.hit()) })
                .layer(CachePolicy::public(TTL).tag("materials")),
        )
        .route(
            "/api/reports/weekly",
            get({
                let calls = handlers.weekly.clone();
                move || async move { format!("weekly #{}", calls.hit()) }
            })
            .layer(CachePolicy::public(TTL).tag("reports")),
        )
        .route(
            "/api/reports/monthly",
            get({
                let calls = handlers.monthly.clone();
                move || async move { format!("monthly #{}", calls.hit()) }
            })
            .layer(CachePolicy::public(TTL).tag("reports")),
        )
        .route(
            "/api/me/",
            get({
                let calls = handlers.me.clone();
                move |headers: http::HeaderMap| async move {
                    let user = headers
                        .get("x-user")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("nobody")
                        .to_owned();
                    format!("page of {user} #{}", calls.hit())
                }
            })
            .layer(CachePolicy::private(TTL)),
        )
}

/// An app instance: the cached routes, the admin router nested after the
/// cache layer, on a socket.
struct Fixture {
    cache: Cache,
    server: TestServer,
    handlers: Handlers,
}

impl Fixture {
    fn handle(&self) -> CacheHandle {
        self.cache.handle()
    }
}

async fn fixture_with(cache: Cache, authorize: impl strata_admin::Authorize) -> Fixture {
    let handlers = Handlers::default();
    let app = routes(&handlers)
        .layer(cache.layer())
        .nest("/api/core", strata_admin::router(cache.handle(), authorize));
    let server = TestServer::start(app).await;
    Fixture {
        cache,
        server,
        handlers,
    }
}

fn memory_cache() -> Cache {
    Cache::builder()
        .prefix("t", "admin")
        .user(user_from_header)
        .build()
}

async fn fixture() -> Fixture {
    fixture_with(memory_cache(), BearerToken::new(TOKEN)).await
}

/// GETs an app URL (as `user`, if any); returns `cache-status` and body.
async fn fetch(server: &TestServer, path: &str, user: Option<&str>) -> (String, String) {
    let request = match user {
        Some(user) => server.get_as(path, user),
        None => server.get(path),
    };
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let cache_status = header(&response, "cache-status");
    (cache_status, response.text().await.unwrap())
}

fn is_hit(cache_status: &str) -> bool {
    cache_status == "strata; hit"
}

/// An admin request: `method` on `/api/core/{endpoint}`, with `token` as a
/// bearer token and `body` as JSON, if given. Returns the head and the body
/// parsed as JSON.
async fn admin(
    server: &TestServer,
    method: http::Method,
    endpoint: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (reqwest::Response, Value) {
    let mut request = server
        .client
        .request(method, server.url(&format!("/api/core/{endpoint}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let head = clone_head(&response);
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (head, json)
}

async fn admin_get(server: &TestServer, endpoint: &str) -> (reqwest::Response, Value) {
    admin(server, http::Method::GET, endpoint, Some(TOKEN), None).await
}

async fn admin_post(
    server: &TestServer,
    endpoint: &str,
    body: Option<Value>,
) -> (reqwest::Response, Value) {
    admin(server, http::Method::POST, endpoint, Some(TOKEN), body).await
}

/// Every admin response is JSON (when it has a body) and `no-store`.
fn assert_admin_head(head: &reqwest::Response, status: u16) {
    assert_eq!(head.status(), status);
    assert_eq!(header(head, "cache-control"), "no-store");
}

/// Fills every cached route (materials, both reports, /me for users 1
/// and 2), then checks they are all hits.
async fn fill(fixture: &Fixture) {
    let server = &fixture.server;
    for _ in 0..2 {
        fetch(server, "/api/materials/", None).await;
        fetch(server, "/api/reports/weekly", None).await;
        fetch(server, "/api/reports/monthly", None).await;
        fetch(server, "/api/me/", Some("1")).await;
        fetch(server, "/api/me/", Some("2")).await;
    }
    let h = &fixture.handlers;
    assert_eq!(
        (
            h.materials.count(),
            h.weekly.count(),
            h.monthly.count(),
            h.me.count()
        ),
        (1, 1, 1, 2)
    );
}

#[tokio::test]
async fn cache_stats_follow_hits_misses_and_304s_with_every_figure() {
    let fixture = fixture().await;
    let server = &fixture.server;

    let (head, stats) = admin_get(server, "cache-stats/").await;
    assert_admin_head(&head, 200);
    assert!(header(&head, "content-type").starts_with("application/json"));
    assert_eq!(stats["hits"], 0);
    assert_eq!(stats["misses"], 0);
    assert_eq!(stats["hit_rate"], 0.0);
    assert_eq!(stats["entries"], 0);
    assert_eq!(stats["bytes"], 0);
    // One name per figure: no aliases beside `entries` and `bytes`.
    for alias in ["size", "keys_count", "memory_usage"] {
        assert!(stats.get(alias).is_none(), "{alias}: {stats}");
    }

    // One miss, then three hits; one of them a conditional request.
    let (cache_status, _) = fetch(server, "/api/materials/", None).await;
    assert!(!is_hit(&cache_status), "{cache_status}");
    let response = server.get("/api/materials/").send().await.unwrap();
    let etag = header(&response, "etag");
    assert!(!etag.is_empty());
    fetch(server, "/api/materials/", None).await;
    let response = server
        .get("/api/materials/")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(fixture.handlers.materials.count(), 1);

    let (head, stats) = admin_get(server, "cache-stats/").await;
    assert_admin_head(&head, 200);
    assert_eq!(stats["hits"], 3, "{stats}");
    assert_eq!(stats["misses"], 1, "{stats}");
    assert_eq!(stats["hit_rate"], 0.75, "{stats}");
    assert_eq!(stats["stores"], 1, "{stats}");
    assert_eq!(stats["not_modified"], 1, "{stats}");
    for counter in [
        "bypasses",
        "coalesced",
        "invalidations",
        "fenced",
        "errors",
        "evictions",
    ] {
        assert_eq!(stats[counter], 0, "{counter}: {stats}");
    }

    // Sizes are the memory layer's own measured figures.
    let measured = fixture.handle().stats();
    assert!(measured.bytes > 0);
    assert_eq!(stats["bytes"], measured.bytes, "{stats}");
    assert_eq!(stats["entries"], measured.entries, "{stats}");
    assert!(stats["entries"].as_u64().unwrap() >= 1);
    let layers = stats["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{stats}");
    let memory = &layers[0];
    assert_eq!(memory["layer"], "memory");
    assert_eq!(memory["entries"], stats["entries"]);
    assert_eq!(memory["bytes"], stats["bytes"]);
    assert!(memory["capacity_bytes"].as_u64().unwrap() > 0);
    // The memory layer counts its own lookups: the three hits found the
    // entry, the miss's lookups found nothing.
    assert_eq!(memory["hits"], 3, "{memory}");
    assert!(memory["misses"].as_u64().unwrap() >= 1, "{memory}");
    assert_eq!(memory["evictions"], 0);

    // A bypass (anonymous request to a per-user page) is counted too.
    fetch(server, "/api/me/", None).await;
    let (_, stats) = admin_get(server, "cache-stats/").await;
    assert_eq!(stats["bypasses"], 1, "{stats}");
}

#[tokio::test]
async fn cache_health_is_ok_with_each_layer_and_its_latency() {
    let fixture = fixture().await;
    let (head, health) = admin_get(&fixture.server, "cache-health/").await;
    assert_admin_head(&head, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["failing"], json!([]));
    let layers = health["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["layer"], "memory");
    assert_eq!(layers[0]["ok"], true);
    assert!(layers[0]["latency_us"].is_u64(), "{health}");
    assert!(layers[0]["error"].is_null());
}

#[tokio::test]
async fn cache_clear_drops_every_entry_and_says_how_many() {
    let fixture = fixture().await;
    let server = &fixture.server;
    fill(&fixture).await;
    let entries = fixture.handle().stats().entries;
    assert!(entries >= 5, "{entries}");

    let (head, body) = admin_post(server, "cache-clear/", None).await;
    assert_admin_head(&head, 200);
    assert_eq!(body, json!({ "cleared": entries }));
    assert_eq!(fixture.handle().stats().entries, 0);

    let h = &fixture.handlers;
    for (path, user) in [
        ("/api/materials/", None),
        ("/api/reports/weekly", None),
        ("/api/reports/monthly", None),
        ("/api/me/", Some("1")),
        ("/api/me/", Some("2")),
    ] {
        let (cache_status, _) = fetch(server, path, user).await;
        assert!(!is_hit(&cache_status), "{path} {user:?}: {cache_status}");
    }
    assert_eq!(
        (
            h.materials.count(),
            h.weekly.count(),
            h.monthly.count(),
            h.me.count()
        ),
        (2, 2, 2, 4),
        "every handler ran again"
    );
}

/// Invalidates `what` through the endpoint; returns the count it reported.
async fn invalidate(fixture: &Fixture, what: Value) -> u64 {
    let (head, body) = admin_post(&fixture.server, "cache-invalidate/", Some(what.clone())).await;
    assert_admin_head(&head, 200);
    assert_eq!(body["what"], what, "{body}");
    body["invalidated"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count: {body}"))
}

/// Which of the filled URLs are still hits, in the order of [`fill`].
async fn still_hits(fixture: &Fixture) -> [bool; 5] {
    let server = &fixture.server;
    [
        is_hit(&fetch(server, "/api/materials/", None).await.0),
        is_hit(&fetch(server, "/api/reports/weekly", None).await.0),
        is_hit(&fetch(server, "/api/reports/monthly", None).await.0),
        is_hit(&fetch(server, "/api/me/", Some("1")).await.0),
        is_hit(&fetch(server, "/api/me/", Some("2")).await.0),
    ]
}

#[tokio::test]
async fn cache_invalidate_drops_what_each_form_names_and_nothing_else() {
    let cases = [
        (
            json!({"tag": "reports"}),
            2,
            [true, false, false, true, true],
        ),
        (
            json!({"tags": ["materials", "reports"]}),
            3,
            [false, false, false, true, true],
        ),
        (
            json!({"url": "/api/reports/weekly"}),
            1,
            [true, false, true, true, true],
        ),
        (
            json!({"prefix": "/api/reports/"}),
            2,
            [true, false, false, true, true],
        ),
        (json!({"user": "1"}), 1, [true, true, true, false, true]),
        (json!("all"), 0, [false; 5]),
    ];
    for (what, expected, hits_after) in cases {
        let fixture = fixture().await;
        fill(&fixture).await;
        let before = fixture.handle().stats();
        let count = invalidate(&fixture, what.clone()).await;
        if what == json!("all") {
            assert_eq!(count, before.entries, "{what}");
        } else {
            assert_eq!(count, expected, "{what}");
        }
        assert_eq!(
            fixture.handle().stats().invalidations,
            before.invalidations + 1
        );
        assert_eq!(still_hits(&fixture).await, hits_after, "after {what}");
    }
}

#[tokio::test]
async fn cache_invalidate_by_key_drops_a_get_or_compute_value() {
    let fixture = fixture().await;
    let handle = fixture.handle();
    let computed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let active_users = || {
        let computed = Arc::clone(&computed);
        let handle = handle.clone();
        async move {
            handle
                .get_or_compute("active_users", TTL, || async move {
                    computed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
                })
                .await
        }
    };
    assert_eq!(active_users().await, 1);
    assert_eq!(active_users().await, 1, "cached");
    fetch(&fixture.server, "/api/materials/", None).await;

    assert_eq!(
        invalidate(&fixture, json!({"key": "active_users"})).await,
        1
    );
    assert_eq!(active_users().await, 2, "computed again");
    assert!(is_hit(
        &fetch(&fixture.server, "/api/materials/", None).await.0
    ));
}

#[tokio::test]
async fn cache_reset_stats_zeroes_the_counters_and_keeps_the_entries() {
    let fixture = fixture().await;
    let server = &fixture.server;
    fill(&fixture).await;
    let before = fixture.handle().stats();
    assert!(before.hits > 0 && before.misses > 0);

    let (head, body) = admin_post(server, "cache-reset-stats/", None).await;
    assert_admin_head(&head, 200);
    assert_eq!(body, json!({ "reset": true }));

    let (_, stats) = admin_get(server, "cache-stats/").await;
    for counter in [
        "hits",
        "misses",
        "stores",
        "bypasses",
        "not_modified",
        "coalesced",
        "invalidations",
        "fenced",
        "errors",
    ] {
        assert_eq!(stats[counter], 0, "{counter}: {stats}");
    }
    assert_eq!(stats["hit_rate"], 0.0);
    assert_eq!(stats["entries"], before.entries, "entries stay");
    assert!(is_hit(&fetch(server, "/api/materials/", None).await.0));
    assert_eq!(fixture.handle().stats().hits, 1);
}

/// Sends every admin request with `token` (or none) and checks each is
/// refused with `status`, as JSON, `no-store`; then checks the cache is as
/// it was: the same figures, the filled URLs still hits.
async fn assert_all_refused(fixture: &Fixture, token: Option<&str>, status: u16) {
    let server = &fixture.server;
    let before = fixture.handle().stats();
    let requests = [
        (http::Method::GET, "cache-stats/", None),
        (http::Method::GET, "cache-health/", None),
        (http::Method::POST, "cache-clear/", None),
        (http::Method::POST, "cache-reset-stats/", None),
        (
            http::Method::POST,
            "cache-invalidate/",
            Some(json!({"tag": "materials"})),
        ),
        (http::Method::POST, "cache-invalidate/", Some(json!("all"))),
        // Not even parsed: a refusal comes before the body is read.
        (
            http::Method::POST,
            "cache-invalidate/",
            Some(json!({"nonsense": 1})),
        ),
    ];
    for (method, endpoint, body) in requests {
        let (head, json) = admin(server, method.clone(), endpoint, token, body).await;
        assert_admin_head(&head, status);
        assert!(json["error"].is_string(), "{method} {endpoint}: {json}");
        if status == 401 {
            assert_eq!(header(&head, "www-authenticate"), "Bearer");
        } else {
            assert_eq!(header(&head, "www-authenticate"), "");
        }
    }
    let after = fixture.handle().stats();
    assert_eq!(after, before, "a refused request changed the cache");
    assert_eq!(still_hits(fixture).await, [true; 5]);
}

#[tokio::test]
async fn without_a_token_everything_is_401_and_nothing_changes() {
    let fixture = fixture().await;
    fill(&fixture).await;
    assert_all_refused(&fixture, None, 401).await;
}

#[tokio::test]
async fn with_a_wrong_token_everything_is_403_and_nothing_changes() {
    let fixture = fixture().await;
    fill(&fixture).await;
    assert_all_refused(&fixture, Some("admin-token-12"), 403).await;
    assert_all_refused(&fixture, Some("not-the-token"), 403).await;
    // Another scheme is no credentials at all.
    let response = fixture
        .server
        .client
        .post(fixture.server.url("/api/core/cache-clear/"))
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(still_hits(&fixture).await, [true; 5]);
}

#[tokio::test]
async fn a_closure_decides_who_may_and_its_refusals_change_nothing() {
    let is_admin = |parts: &Parts| match parts.headers.get("x-role") {
        None => Decision::Unauthenticated,
        Some(role) => (role == "admin").into(),
    };
    let fixture = fixture_with(memory_cache(), is_admin).await;
    fill(&fixture).await;
    let server = &fixture.server;

    let before = fixture.handle().stats();
    for (role, status) in [(None, 401), (Some("student"), 403)] {
        for endpoint in ["cache-clear/", "cache-reset-stats/"] {
            let mut request = server
                .client
                .post(server.url(&format!("/api/core/{endpoint}")));
            if let Some(role) = role {
                request = request.header("x-role", role);
            }
            let response = request.send().await.unwrap();
            assert_admin_head(&response, status);
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].is_string());
        }
        let mut request = server
            .client
            .post(server.url("/api/core/cache-invalidate/"))
            .json(&json!("all"));
        if let Some(role) = role {
            request = request.header("x-role", role);
        }
        let response = request.send().await.unwrap();
        assert_admin_head(&response, status);
    }
    assert_eq!(fixture.handle().stats(), before);
    assert_eq!(still_hits(&fixture).await, [true; 5]);

    // A plain `bool` closure works too; and the allowed role gets through.
    let response = server
        .client
        .post(server.url("/api/core/cache-clear/"))
        .header("x-role", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fixture = fixture_with(memory_cache(), |_: &Parts| false).await;
    let (head, _) = admin_get(&fixture.server, "cache-stats/").await;
    assert_admin_head(&head, 403);
}

#[tokio::test]
async fn bad_bodies_are_400_wrong_methods_405_and_neither_changes_anything() {
    let fixture = fixture().await;
    fill(&fixture).await;
    let server = &fixture.server;
    let before = fixture.handle().stats();

    for body in [
        json!({"colour": "red"}),
        json!({"tag": 42}),
        json!({"tag": "a", "url": "/b"}),
        json!({"prefix": ""}),
        json!({"tags": []}),
        json!("everything"),
    ] {
        let (head, json) = admin_post(server, "cache-invalidate/", Some(body.clone())).await;
        assert_admin_head(&head, 400);
        assert!(json["error"].is_string(), "{body}: {json}");
    }
    let malformed = server
        .client
        .post(server.url("/api/core/cache-invalidate/"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"tag": "materials""#)
        .send()
        .await
        .unwrap();
    assert_admin_head(&malformed, 400);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("tag"), "{body}");
    let untyped = server
        .client
        .post(server.url("/api/core/cache-invalidate/"))
        .bearer_auth(TOKEN)
        .body(r#"{"tag": "materials"}"#)
        .send()
        .await
        .unwrap();
    assert_admin_head(&untyped, 415);
    let body: Value = untyped.json().await.unwrap();
    assert!(body["error"].is_string());

    for (method, endpoint) in [
        (http::Method::GET, "cache-clear/"),
        (http::Method::GET, "cache-invalidate/"),
        (http::Method::GET, "cache-reset-stats/"),
        (http::Method::DELETE, "cache-stats/"),
        (http::Method::POST, "cache-health/"),
        (http::Method::PUT, "cache-clear/"),
    ] {
        let (head, _) = admin(server, method.clone(), endpoint, Some(TOKEN), None).await;
        assert_admin_head(&head, 405);
    }

    let after = fixture.handle().stats();
    assert_eq!(
        (after.invalidations, after.entries, after.hits),
        (before.invalidations, before.entries, before.hits)
    );
    assert_eq!(still_hits(&fixture).await, [true; 5]);
}

#[tokio::test]
async fn admin_answers_are_never_cached_even_inside_a_cache_with_a_default_policy() {
    // The worst placement: nested inside the cache layer, which would store
    // every GET for a minute.
    let cache = Cache::builder()
        .prefix("t", "admin-inside")
        .default_policy(CachePolicy::public(TTL))
        .build();
    let handlers = Handlers::default();
    let app = routes(&handlers)
        .nest(
            "/api/core",
            strata_admin::router(cache.handle(), BearerToken::new(TOKEN)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    fetch(&server, "/api/materials/", None).await;
    let (head, first) = admin_get(&server, "cache-stats/").await;
    assert_admin_head(&head, 200);
    assert!(!is_hit(&header(&head, "cache-status")));
    fetch(&server, "/api/materials/", None).await;
    let (head, second) = admin_get(&server, "cache-stats/").await;
    assert_admin_head(&head, 200);
    assert!(!is_hit(&header(&head, "cache-status")));
    assert_eq!(
        second["hits"].as_u64().unwrap(),
        first["hits"].as_u64().unwrap() + 1,
        "fresh figures, not a stored answer: {first} then {second}"
    );
    // A refusal is not stored either: the right token is then let through.
    let (head, _) = admin(&server, http::Method::GET, "cache-health/", None, None).await;
    assert_admin_head(&head, 401);
    let (head, health) = admin_get(&server, "cache-health/").await;
    assert_admin_head(&head, 200);
    assert_eq!(health["status"], "ok");
}

// ----------------------------------------------------------------------------
// With Redis: a tiered store per instance, a real redis-server.
// ----------------------------------------------------------------------------

struct RedisInstance {
    fixture: Fixture,
    tiered: TieredStore,
}

async fn redis_instance(server: &RedisServer) -> RedisInstance {
    let redis = RedisStore::standalone(&server.url())
        .prefix("t:admin:")
        .build()
        .unwrap();
    let tiered = TieredStore::new(MemoryStore::new(64 << 20), redis).unwrap();
    assert!(tiered.wait_subscribed(Duration::from_secs(5)).await);
    let cache = Cache::builder()
        .prefix("t", "admin")
        .user(user_from_header)
        .store(Arc::new(tiered.clone()))
        .build();
    let fixture = fixture_with(cache, BearerToken::new(TOKEN)).await;
    RedisInstance { fixture, tiered }
}

/// Polls `cache-health/` until it answers `status`, within `deadline`.
async fn health_until(server: &TestServer, status: u16, deadline: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (head, health) = admin_get(server, "cache-health/").await;
        if head.status() == status {
            assert_admin_head(&head, status);
            return health;
        }
        assert!(
            started.elapsed() < deadline,
            "cache-health/ still {} after {deadline:?}: {health}",
            head.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cache_health_is_503_while_redis_is_down_and_200_once_it_is_back() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let instance = redis_instance(&server).await;
    let app = &instance.fixture.server;

    let health = health_until(app, 200, Duration::ZERO).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["failing"], json!([]));
    let names: Vec<&str> = health["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["layer"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["memory", "redis", "bus", "invalidations"]);
    for layer in health["layers"].as_array().unwrap() {
        assert_eq!(layer["ok"], true, "{layer}");
        assert!(layer["latency_us"].is_u64(), "{layer}");
    }

    server.stop();
    let health = health_until(app, 503, Duration::from_secs(5)).await;
    eprintln!("while Redis is down: {health}");
    assert_eq!(health["status"], "degraded");
    let failing = health["failing"].as_array().unwrap();
    assert!(failing.contains(&json!("redis")), "{health}");
    let redis = &health["layers"][1];
    assert_eq!(
        (redis["layer"].as_str(), redis["ok"].as_bool()),
        (Some("redis"), Some(false))
    );
    assert!(redis["error"].is_string(), "{health}");
    assert!(redis["latency_us"].is_u64(), "{health}");
    // The app still answers (from memory and the handler).
    fetch(app, "/api/materials/", None).await;

    server.restart();
    let health = health_until(app, 200, Duration::from_secs(10)).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["failing"], json!([]));
    drop(instance.tiered);
}

#[tokio::test]
async fn with_redis_stats_show_both_layers_and_clear_reaches_the_other_instance() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = redis_instance(&server).await;
    let b = redis_instance(&server).await;

    // A fills; B reads it from Redis.
    fetch(&a.fixture.server, "/api/materials/", None).await;
    let (cache_status, _) = fetch(&b.fixture.server, "/api/materials/", None).await;
    assert!(is_hit(&cache_status), "{cache_status}");
    assert_eq!(b.fixture.handlers.materials.count(), 0);

    let (head, stats) = admin_get(&b.fixture.server, "cache-stats/").await;
    assert_admin_head(&head, 200);
    assert_eq!(stats["hits"], 1, "{stats}");
    let layers = stats["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{stats}");
    assert_eq!(layers[0]["layer"], "memory");
    assert!(
        layers[0]["hits"].is_u64(),
        "the tiered store counts L1: {stats}"
    );
    assert_eq!(layers[1]["layer"], "redis");
    assert_eq!(layers[1]["hits"], 1, "{stats}");
    // Redis does not count this cache's entries or bytes: null, not a guess.
    assert!(layers[1]["entries"].is_null() && layers[1]["bytes"].is_null());
    assert_eq!(stats["bytes"], layers[0]["bytes"]);

    // Clear on B: Redis empties, and A's memory through the bus.
    let (head, body) = admin_post(&b.fixture.server, "cache-clear/", None).await;
    assert_admin_head(&head, 200);
    assert!(body["cleared"].as_u64().unwrap() >= 1, "{body}");
    let started = Instant::now();
    while a.tiered.memory().snapshot().entries != Some(0) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "A's memory not cleared"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (cache_status, _) = fetch(&a.fixture.server, "/api/materials/", None).await;
    assert!(!is_hit(&cache_status), "{cache_status}");
    assert_eq!(a.fixture.handlers.materials.count(), 2);
}

/// Nested *inside* the cache layer, as the design sketch shows: admin
/// actions are writes that invalidate nothing of their own (their answers
/// carry `Invalidates::none()`), so they do not show up as invalidations.
#[tokio::test]
async fn admin_nested_inside_the_cache_layer_invalidates_nothing_by_itself() {
    let cache = memory_cache();
    let handlers = Handlers::default();
    let app = routes(&handlers)
        .nest(
            "/api/core",
            strata_admin::router(cache.handle(), BearerToken::new(TOKEN)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    let (head, _) = admin_post(&server, "cache-reset-stats/", None).await;
    assert_eq!(head.status(), 200);
    let (head, _) = admin_post(&server, "cache-reset-stats/", None).await;
    assert_eq!(head.status(), 200);
    assert_eq!(cache.handle().stats().invalidations, 0);
    let (head, body) = admin_get(&server, "cache-stats/").await;
    assert_eq!(head.status(), 200);
    assert_eq!(body["invalidations"], 0);
}

/// Every endpoint answers with and without its trailing slash, behind the
/// same authorization.
#[tokio::test]
async fn endpoints_answer_with_and_without_the_trailing_slash() {
    let fixture = fixture().await;
    let server = &fixture.server;
    for endpoint in ["cache-stats", "cache-health"] {
        for path in [endpoint.to_owned(), format!("{endpoint}/")] {
            let (head, _) = admin_get(server, &path).await;
            assert_admin_head(&head, 200);
            let (refused, _) = admin(server, http::Method::GET, &path, None, None).await;
            assert_eq!(refused.status(), 401, "{path}");
        }
    }
    for endpoint in ["cache-clear", "cache-reset-stats"] {
        for path in [endpoint.to_owned(), format!("{endpoint}/")] {
            let (head, _) = admin_post(server, &path, None).await;
            assert_admin_head(&head, 200);
        }
    }
    let body = serde_json::json!({"tag": "materials"});
    let (head, _) = admin_post(server, "cache-invalidate", Some(body)).await;
    assert_admin_head(&head, 200);
}
