//! The demo API of `examples/thebot.rs`, served on a real socket and talked
//! to with a real HTTP client: every route's caching behaviour (miss then
//! hit with the database left alone, 304, private data kept per user and
//! away from anonymous requests, writes showing in the list and the detail,
//! logout, the admin endpoints refusing strangers), on the memory store and
//! on the tiered store against a redis-server the test starts.

#[path = "../../examples/thebot/app.rs"]
mod app;
mod common;

use std::time::{Duration, Instant};

use app::Db;
use common::{TestServer, header};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use strata::{Cache, Config};
use strata_testkit::RedisServer;

/// A few milliseconds per query: enough for a miss to be a real call,
/// little enough for the tests to be fast.
const DB_LATENCY: Duration = Duration::from_millis(3);
const ADMIN: &str = "admin-secret-for-tests";
const STORED: &str = "strata; fwd=uri-miss; stored";
const VARY_STORED: &str = "strata; fwd=vary-miss; stored";
const HIT: &str = "strata; hit";

/// The demo on the memory store, with its database.
struct Demo {
    server: TestServer,
    db: Db,
}

async fn demo() -> Demo {
    let cache = app::cache_from_config(&Config::default()).unwrap();
    demo_on(&cache, Db::new(DB_LATENCY)).await
}

async fn demo_on(cache: &Cache, db: Db) -> Demo {
    let server = TestServer::start(app::app(cache, db.clone(), ADMIN)).await;
    Demo { server, db }
}

/// One answer: status, the headers the tests look at, and the body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    cache_status: String,
    cache_control: String,
    etag: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl Demo {
    fn request(&self, method: Method, path: &str, user: Option<&str>) -> RequestBuilder {
        let request = self.server.client.request(method, self.server.url(path));
        match user {
            Some(user) => request.bearer_auth(format!("user-{user}")),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        Answer {
            status: response.status(),
            cache_status: header(&response, "cache-status"),
            cache_control: header(&response, "cache-control"),
            etag: header(&response, "etag"),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path, None)).await
    }

    async fn get_as(&self, path: &str, user: &str) -> Answer {
        self.send(self.request(Method::GET, path, Some(user))).await
    }

    async fn write(&self, method: Method, path: &str, body: &str) -> Answer {
        let request = self
            .request(method, path, None)
            .header("content-type", "application/json")
            .body(body.to_owned());
        self.send(request).await
    }

    async fn admin(&self, method: Method, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.request(method, path, None);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// GETs `path` twice (as `user`, if any): the first a stored miss that
    /// ran one query, the second a hit that ran none and says the same.
    async fn miss_then_hit(&self, path: &str, user: Option<&str>) -> Answer {
        let fetch = || async {
            match user {
                Some(user) => self.get_as(path, user).await,
                None => self.get(path).await,
            }
        };
        let before = self.db.queries();
        let miss = fetch().await;
        assert_eq!(miss.status, StatusCode::OK, "{path}: {}", miss.body);
        // `uri-miss` for the URL's first fill, `vary-miss` for another
        // user's variant of a per-user URL.
        assert!(
            [STORED, VARY_STORED].contains(&miss.cache_status.as_str()),
            "{path}: {}",
            miss.cache_status
        );
        assert_eq!(
            self.db.queries(),
            before + 1,
            "{path}: the miss queries once"
        );
        assert!(!miss.etag.is_empty(), "{path}: an ETag");
        for _ in 0..3 {
            let hit = fetch().await;
            assert_eq!(hit.status, StatusCode::OK, "{path}");
            assert_eq!(hit.cache_status, HIT, "{path}");
            assert_eq!(hit.body, miss.body, "{path}");
            assert_eq!(hit.etag, miss.etag, "{path}");
            assert_eq!(hit.cache_control, miss.cache_control, "{path}");
        }
        assert_eq!(self.db.queries(), before + 1, "{path}: hits query nothing");
        miss
    }
}

#[tokio::test]
async fn the_materials_list_is_public_for_30_minutes_and_hits_leave_the_database_alone() {
    let demo = demo().await;
    let miss = demo.miss_then_hit("/api/materials/", None).await;
    assert_eq!(miss.cache_control, "public, max-age=1800");
    let list = miss.json();
    assert_eq!(list["count"], 20);
    let materials = list["materials"].as_array().unwrap();
    assert_eq!(materials.len(), 20);
    assert_eq!(
        materials[0],
        json!({"id": 1, "title": "Numbers and counting"})
    );
    // A user's request is served the same public entry.
    let hit = demo.get_as("/api/materials/", "7").await;
    assert_eq!((hit.cache_status.as_str(), hit.body), (HIT, miss.body));
    assert_eq!(demo.db.queries(), 1);
}

#[tokio::test]
async fn a_material_is_public_for_an_hour_and_unknown_ids_are_404_and_never_stored() {
    let demo = demo().await;
    let miss = demo.miss_then_hit("/api/materials/5/", None).await;
    assert_eq!(miss.cache_control, "public, max-age=3600");
    assert_eq!(
        miss.json(),
        json!({"id": 5, "title": "Algebraic expressions"})
    );
    // Another id is another entry.
    demo.miss_then_hit("/api/materials/6/", None).await;

    for path in ["/api/materials/999/", "/api/materials/abc/"] {
        for _ in 0..2 {
            let before = demo.db.queries();
            let answer = demo.get(path).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(answer.json(), json!({"error": "no such material"}));
            assert_ne!(answer.cache_status, HIT, "{path}");
            let queries = u64::from(path.ends_with("999/"));
            assert_eq!(demo.db.queries(), before + queries, "{path}: not stored");
        }
    }
    // An unknown route is a JSON 404 as well.
    let answer = demo.get("/api/nothing-here/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json()["error"].is_string());
}

#[tokio::test]
async fn a_matching_etag_gets_304_without_a_query() {
    let demo = demo().await;
    for path in ["/api/materials/", "/api/materials/2/", "/api/analytics/"] {
        let first = demo.get(path).await;
        let before = demo.db.queries();
        let response = demo
            .request(Method::GET, path, None)
            .header("if-none-match", &first.etag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&response, "etag"), first.etag, "{path}");
        assert_eq!(response.text().await.unwrap(), "", "{path}");
        // Another ETag gets the full response.
        let other = demo
            .request(Method::GET, path, None)
            .header("if-none-match", "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK, "{path}");
        assert_eq!(demo.db.queries(), before, "{path}: answered from the cache");
    }
    // Per user, too.
    let mine = demo.get_as("/api/dashboard/", "1").await;
    let response = demo
        .request(Method::GET, "/api/dashboard/", Some("1"))
        .header("if-none-match", &mine.etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn realtime_is_never_stored_but_revalidates_with_304() {
    let demo = demo().await;
    let before = demo.db.queries();
    let first = demo.get("/api/realtime/").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.cache_control, "no-cache");
    assert_eq!(first.json(), json!({"materials": 20, "assignments": 5}));
    assert!(!first.etag.is_empty());
    let second = demo.get("/api/realtime/").await;
    assert_ne!(second.cache_status, HIT);
    assert_eq!(second.etag, first.etag, "same data, same ETag");
    assert_eq!(demo.db.queries(), before + 2, "every request queries");

    let response = demo
        .request(Method::GET, "/api/realtime/", None)
        .header("if-none-match", &first.etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        demo.db.queries(),
        before + 3,
        "revalidation asks the database"
    );

    // New data: a new ETag, and the old one no longer matches.
    let created = demo
        .write(Method::POST, "/api/materials/", r#"{"title":"Logarithms"}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let response = demo
        .request(Method::GET, "/api/realtime/", None)
        .header("if-none-match", &first.etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(header(&response, "etag"), first.etag);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["materials"], 21);
}

#[tokio::test]
async fn private_pages_are_stored_per_user_and_never_reach_others_or_anonymous_requests() {
    let demo = demo().await;
    for (path, max_age) in [
        ("/api/reports/", 300),
        ("/api/notifications/", 60),
        ("/api/dashboard/", 300),
    ] {
        let alice = demo.miss_then_hit(path, Some("alice")).await;
        assert_eq!(alice.cache_control, format!("private, max-age={max_age}"));
        assert_eq!(alice.json()["user"], "alice", "{path}");

        // Bob gets his own page, on his own miss, then his own hits.
        let bob = demo.miss_then_hit(path, Some("bob")).await;
        assert_eq!(bob.json()["user"], "bob", "{path}");
        assert_ne!(bob.body, alice.body, "{path}");
        assert!(!bob.body.contains("alice"), "{path}: {}", bob.body);

        // Anonymous requests get no one's page, whatever they send.
        let before = demo.db.queries();
        for request in [
            demo.request(Method::GET, path, None),
            demo.request(Method::GET, path, None)
                .header("if-none-match", &alice.etag),
            demo.request(Method::GET, path, None).bearer_auth("user-"),
            demo.request(Method::GET, path, None).bearer_auth(ADMIN),
        ] {
            let answer = demo.send(request).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
            assert_ne!(answer.cache_status, HIT, "{path}");
            assert!(!answer.body.contains("alice"), "{path}");
            assert!(!answer.body.contains("bob"), "{path}");
        }
        assert_eq!(demo.db.queries(), before, "{path}: 401 before any query");

        // Alice's ETag means nothing to Bob.
        let response = demo
            .request(Method::GET, path, Some("bob"))
            .header("if-none-match", &alice.etag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"], "bob", "{path}");
        // And both still hit their own entries.
        assert_eq!(demo.get_as(path, "alice").await.body, alice.body);
        assert_eq!(demo.get_as(path, "bob").await.body, bob.body);
    }
}

#[tokio::test]
async fn analytics_are_public_for_30_minutes_and_shared_by_everyone() {
    let demo = demo().await;
    let miss = demo.miss_then_hit("/api/analytics/", Some("carol")).await;
    assert_eq!(miss.cache_control, "public, max-age=1800");
    assert!(!miss.body.contains("carol"));
    let anonymous = demo.get("/api/analytics/").await;
    assert_eq!(
        (anonymous.cache_status.as_str(), anonymous.body),
        (HIT, miss.body)
    );
    assert_eq!(demo.db.queries(), 1);
}

#[tokio::test]
async fn an_update_shows_its_new_title_in_the_list_and_the_detail() {
    let demo = demo().await;
    demo.miss_then_hit("/api/materials/", None).await;
    demo.miss_then_hit("/api/materials/3/", None).await;
    let untouched = demo.miss_then_hit("/api/materials/4/", None).await;

    let updated = demo
        .write(
            Method::PUT,
            "/api/materials/3/",
            r#"{"title":"Decimals, revised"}"#,
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        updated.json(),
        json!({"id": 3, "title": "Decimals, revised"})
    );

    let detail = demo.miss_then_hit("/api/materials/3/", None).await;
    assert_eq!(detail.json()["title"], "Decimals, revised");
    let list = demo.miss_then_hit("/api/materials/", None).await;
    assert_eq!(list.json()["materials"][2]["title"], "Decimals, revised");
    // Only the list and material 3 were dropped: material 4 is still a hit,
    // with no query.
    let before = demo.db.queries();
    let four = demo.get("/api/materials/4/").await;
    assert_eq!(four.cache_status, HIT);
    assert_eq!(four.body, untouched.body);
    assert_eq!(demo.db.queries(), before);
}

#[tokio::test]
async fn a_new_material_shows_in_the_list_and_has_its_own_detail() {
    let demo = demo().await;
    demo.miss_then_hit("/api/materials/", None).await;
    let missing = demo.get("/api/materials/21/").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let created = demo
        .write(Method::POST, "/api/materials/", r#"{"title":"Matrices"}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json(), json!({"id": 21, "title": "Matrices"}));

    let list = demo.miss_then_hit("/api/materials/", None).await.json();
    assert_eq!(list["count"], 21);
    assert_eq!(
        list["materials"][20],
        json!({"id": 21, "title": "Matrices"})
    );
    // The earlier 404 was not stored: the new material is served.
    let detail = demo.miss_then_hit("/api/materials/21/", None).await;
    assert_eq!(detail.json()["title"], "Matrices");
}

#[tokio::test]
async fn assignments_are_public_and_a_new_one_invalidates_the_list() {
    let demo = demo().await;
    let miss = demo.miss_then_hit("/api/assignments/", None).await;
    assert_eq!(miss.cache_control, "public, max-age=300");
    assert_eq!(miss.json()["count"], 5);
    // Materials are untouched by an assignment write.
    demo.miss_then_hit("/api/materials/", None).await;

    let created = demo
        .write(
            Method::POST,
            "/api/assignments/",
            r#"{"title":"Matrix drill"}"#,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json(), json!({"id": 6, "title": "Matrix drill"}));

    let list = demo.miss_then_hit("/api/assignments/", None).await.json();
    assert_eq!(list["count"], 6);
    assert_eq!(list["assignments"][5]["title"], "Matrix drill");
    assert_eq!(demo.get("/api/materials/").await.cache_status, HIT);
}

#[tokio::test]
async fn bad_writes_are_400_or_404_with_json_and_invalidate_nothing() {
    let demo = demo().await;
    demo.miss_then_hit("/api/materials/", None).await;
    demo.miss_then_hit("/api/materials/1/", None).await;
    demo.miss_then_hit("/api/assignments/", None).await;
    let before = demo.db.queries();

    for (method, path) in [
        (Method::POST, "/api/materials/"),
        (Method::PUT, "/api/materials/1/"),
        (Method::POST, "/api/assignments/"),
    ] {
        for body in [
            "not json",
            r#"{"name":"x"}"#,
            r#"{"title":""}"#,
            r#"{"title":7}"#,
            "",
        ] {
            let answer = demo.write(method.clone(), path, body).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{method} {path} {body:?}"
            );
            assert!(answer.json()["error"].is_string(), "{}", answer.body);
        }
    }
    let answer = demo
        .write(Method::PUT, "/api/materials/999/", r#"{"title":"Ghost"}"#)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json()["error"].is_string());
    assert_eq!(
        demo.db.queries(),
        before + 1,
        "only the 404 reached the data"
    );

    for path in ["/api/materials/", "/api/materials/1/", "/api/assignments/"] {
        let answer = demo.get(path).await;
        assert_eq!(answer.cache_status, HIT, "{path}: still cached");
    }
    assert_eq!(
        demo.get("/api/materials/1/").await.json()["title"],
        "Numbers and counting"
    );
}

#[tokio::test]
async fn logout_drops_the_callers_private_entries_only() {
    let demo = demo().await;
    for path in ["/api/dashboard/", "/api/reports/", "/api/notifications/"] {
        demo.miss_then_hit(path, Some("alice")).await;
        demo.miss_then_hit(path, Some("bob")).await;
    }
    demo.miss_then_hit("/api/materials/", None).await;

    let logout = demo
        .send(demo.request(Method::POST, "/api/auth/logout/", Some("alice")))
        .await;
    assert_eq!(logout.status, StatusCode::OK, "{}", logout.body);
    let logout = logout.json();
    assert_eq!(logout["logged_out"], "alice");
    assert!(logout["dropped"].as_u64().unwrap() >= 3, "{logout}");

    for path in ["/api/dashboard/", "/api/reports/", "/api/notifications/"] {
        let bob = demo.get_as(path, "bob").await;
        assert_eq!(bob.cache_status, HIT, "{path}: Bob's entries stay");
        // Alice's are gone: a fresh miss, then hits again.
        let alice = demo.miss_then_hit(path, Some("alice")).await;
        assert_eq!(alice.json()["user"], "alice");
    }
    assert_eq!(demo.get("/api/materials/").await.cache_status, HIT);

    let anonymous = demo
        .send(demo.request(Method::POST, "/api/auth/logout/", None))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.json()["error"].is_string());
}

#[tokio::test]
async fn the_admin_endpoints_refuse_everyone_without_the_token() {
    let demo = demo().await;
    demo.miss_then_hit("/api/materials/", None).await;
    let endpoints = [
        (Method::GET, "/api/core/cache-stats/"),
        (Method::GET, "/api/core/cache-health/"),
        (Method::POST, "/api/core/cache-clear/"),
        (Method::POST, "/api/core/cache-reset-stats/"),
        (Method::POST, "/api/core/cache-invalidate/"),
    ];
    for (method, path) in &endpoints {
        let none = demo.admin(method.clone(), path, None).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(none.json()["error"].is_string(), "{path}");
        for token in ["wrong-token", "user-1"] {
            let refused = demo.admin(method.clone(), path, Some(token)).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path} with {token}");
        }
    }
    // Nothing was cleared or reset by the refused requests.
    assert_eq!(demo.get("/api/materials/").await.cache_status, HIT);

    let stats = demo
        .admin(Method::GET, "/api/core/cache-stats/", Some(ADMIN))
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    assert_eq!(stats.cache_control, "no-store");
    let stats = stats.json();
    assert_eq!(stats["hits"], 4, "{stats}");
    assert_eq!(stats["misses"], 1, "{stats}");
    assert_eq!(stats["stores"], 1, "{stats}");

    let health = demo
        .admin(Method::GET, "/api/core/cache-health/", Some(ADMIN))
        .await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_eq!(health.json()["status"], "ok");

    // Invalidate by tag: the list is refilled, with one query.
    let request = demo
        .request(Method::POST, "/api/core/cache-invalidate/", None)
        .bearer_auth(ADMIN)
        .json(&json!({"tag": "materials"}));
    let invalidated = demo.send(request).await;
    assert_eq!(invalidated.status, StatusCode::OK, "{}", invalidated.body);
    assert_eq!(invalidated.json()["invalidated"], 1);
    demo.miss_then_hit("/api/materials/", None).await;

    let cleared = demo
        .admin(Method::POST, "/api/core/cache-clear/", Some(ADMIN))
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert!(cleared.json()["cleared"].as_u64().unwrap() >= 1);
    demo.miss_then_hit("/api/materials/", None).await;

    let reset = demo
        .admin(Method::POST, "/api/core/cache-reset-stats/", Some(ADMIN))
        .await;
    assert_eq!(reset.json(), json!({"reset": true}));
    let stats = demo
        .admin(Method::GET, "/api/core/cache-stats/", Some(ADMIN))
        .await
        .json();
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn db_stats_report_the_query_count_and_are_never_cached() {
    let demo = demo().await;
    let stats = demo.get("/api/core/db-stats/").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.cache_control, "no-store");
    assert_eq!(stats.cache_status, "", "the cache never sees it");
    assert_eq!(stats.json(), json!({"queries": 0}));

    demo.miss_then_hit("/api/materials/", None).await;
    demo.miss_then_hit("/api/dashboard/", Some("dave")).await;
    assert_eq!(
        demo.get("/api/core/db-stats/").await.json(),
        json!({"queries": 2})
    );
    assert_eq!(demo.db.queries(), 2);
}

#[tokio::test]
async fn hits_are_faster_than_the_database() {
    // With a latency well above a hit's cost, a hit takes less than one query.
    let cache = app::cache_from_config(&Config::default()).unwrap();
    let demo = demo_on(&cache, Db::new(Duration::from_millis(100))).await;
    let started = Instant::now();
    demo.get("/api/materials/").await;
    let miss = started.elapsed();
    assert!(miss >= Duration::from_millis(100), "{miss:?}");
    let started = Instant::now();
    let hit = demo.get("/api/materials/").await;
    let elapsed = started.elapsed();
    assert_eq!(hit.cache_status, HIT);
    assert!(
        elapsed < Duration::from_millis(100),
        "a hit took {elapsed:?}"
    );
}

/// The demo built the way the example builds it with `USE_REDIS_CACHE=true`
/// and `REDIS_URL`: two instances (two app servers, each with its own
/// connection to one SQLite file) over one database and one Redis.
#[tokio::test]
async fn on_the_tiered_store_a_fill_is_a_hit_on_another_instance_and_a_write_reaches_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = Config::from_lookup(|name| match name {
        "USE_REDIS_CACHE" => Some("true".to_owned()),
        "REDIS_URL" => Some(server.url()),
        "CACHE_APP" => Some("thebot".to_owned()),
        "CACHE_ENV" => Some("test".to_owned()),
        _ => None,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("thebot.sqlite3");
    let open = || Db::open(&database, DB_LATENCY).unwrap();
    let a = demo_on(&app::cache_from_config(&config).unwrap(), open()).await;
    let b = demo_on(&app::cache_from_config(&config).unwrap(), open()).await;

    // A fills the detail and the list; B finds them in Redis.
    a.miss_then_hit("/api/materials/8/", None).await;
    a.miss_then_hit("/api/materials/", None).await;
    for path in ["/api/materials/8/", "/api/materials/"] {
        let answer = b.get(path).await;
        assert_eq!(answer.cache_status, HIT, "{path} on B, from Redis");
    }
    assert_eq!(b.db.queries(), 0, "B's hits queried nothing");
    let keys = server.command(&["KEYS", "thebot:test:*"]).to_string();
    assert!(keys.contains("/api/materials/"), "keys in Redis: {keys}");

    // Private pages stay apart across instances too.
    a.miss_then_hit("/api/dashboard/", Some("alice")).await;
    let bob = b.get_as("/api/dashboard/", "bob").await;
    assert_eq!(bob.json()["user"], "bob");
    assert_ne!(bob.cache_status, HIT);

    // A write on A: B serves the new title (its memory hears of the
    // invalidation through the bus, within a bounded delay, and its
    // database reads what A wrote to the file).
    let updated = a
        .write(
            Method::PUT,
            "/api/materials/8/",
            r#"{"title":"Quadratics, revised"}"#,
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let started = Instant::now();
    for path in ["/api/materials/8/", "/api/materials/"] {
        loop {
            let answer = b.get(path).await;
            if answer.body.contains("Quadratics, revised") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{path} on B still old: {}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Refilled, then hits on both instances. (The write sends three
    // invalidations over the bus: a fill on B that overlaps a later one is
    // answered but not stored, so the refill may take another request.)
    let detail = loop {
        let detail = b.get("/api/materials/8/").await;
        if detail.cache_status == HIT {
            break detail;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B never stored the refill: {}",
            detail.cache_status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(detail.body.contains("Quadratics, revised"));
    let on_a = a.get("/api/materials/8/").await;
    assert_eq!((on_a.cache_status.as_str(), on_a.body), (HIT, detail.body));
}
