//! Invalidation through a real socket: every `invalidate_*` of the handle
//! drops exactly what it names, successful writes drop the GETs of their
//! URL and the tags they declare, failed writes drop nothing, and a fill
//! that began before an invalidation does not leave old data behind.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{MethodRouter, get, put};
use axum::{Extension, Router};
use common::{Calls, TestServer, header, user_from_header};
use strata::{Cache, CacheHandle, CachePolicy, Invalidates};
use tokio::sync::mpsc;

const TTL: Duration = Duration::from_secs(600);
const STORED: &str = "strata; fwd=uri-miss; stored";
const STORED_VARIANT: &str = "strata; fwd=vary-miss; stored";
const HIT: &str = "strata; hit";

/// A GET handler whose body names the URL, the user and its call number.
fn echo(calls: &Calls) -> MethodRouter {
    let calls = calls.clone();
    get(move |request: Request| async move {
        let n = calls.hit();
        let user = request
            .headers()
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned();
        format!("{} for {user} #{n}", request.uri())
    })
}

/// `Cache-Status` and body of a GET, as `user` or anonymous.
async fn fetch(server: &TestServer, path: &str, user: Option<&str>) -> (String, String) {
    let request = match user {
        Some(user) => server.get_as(path, user),
        None => server.get(path),
    };
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let status = header(&response, "cache-status");
    (status, response.text().await.unwrap())
}

async fn assert_hit(server: &TestServer, path: &str, user: Option<&str>) {
    let (status, body) = fetch(server, path, user).await;
    assert_eq!(status, HIT, "GET {path} as {user:?} should hit: {body}");
}

/// Asserts the GET went to the handler (and stored again).
async fn assert_miss(server: &TestServer, path: &str, user: Option<&str>) {
    let (status, body) = fetch(server, path, user).await;
    assert!(
        status == STORED || status == STORED_VARIANT,
        "GET {path} as {user:?} should miss, got {status:?}: {body}"
    );
}

const PUBLIC_PATHS: [&str; 9] = [
    "/a",
    "/a?x=1",
    "/b",
    "/c",
    "/pre/one",
    "/pre/two",
    "/pre/two?page=2",
    "/other",
    "/prefix-lookalike",
];

struct Fixture {
    server: TestServer,
    handle: CacheHandle,
    computes: Calls,
}

impl Fixture {
    async fn start() -> Self {
        let cache = Cache::builder().user(user_from_header).build();
        let calls = Calls::default();
        let public = |tags: &[&str]| CachePolicy::public(TTL).tags(tags.iter().copied());
        let app = Router::new()
            .route("/a", echo(&calls).layer(public(&["ta"])))
            .route("/b", echo(&calls).layer(public(&["tb"])))
            .route("/c", echo(&calls).layer(public(&["tc", "shared"])))
            .route("/pre/one", echo(&calls).layer(public(&[])))
            .route("/pre/two", echo(&calls).layer(public(&[])))
            .route("/other", echo(&calls).layer(public(&["shared"])))
            .route("/prefix-lookalike", echo(&calls).layer(public(&[])))
            .route(
                "/me",
                echo(&calls).layer(CachePolicy::private(TTL).tag("me")),
            )
            .layer(cache.layer());
        let fixture = Self {
            server: TestServer::start(app).await,
            handle: cache.handle(),
            computes: Calls::default(),
        };
        for path in PUBLIC_PATHS {
            assert_miss(&fixture.server, path, None).await;
        }
        for user in ["alice", "bob"] {
            assert_miss(&fixture.server, "/me", Some(user)).await;
        }
        assert_eq!(fixture.value().await, 1);
        fixture.assert_all_hit_except(&[], &[]).await;
        fixture
    }

    async fn value(&self) -> usize {
        let computes = self.computes.clone();
        self.handle
            .get_or_compute("answer", TTL, || async move { computes.hit() })
            .await
    }

    /// Every primed entry is a hit, except the public `paths` and the
    /// private `/me` of `users`, which are misses (and so stored again).
    async fn assert_all_hit_except(&self, paths: &[&str], users: &[&str]) {
        for path in PUBLIC_PATHS {
            if paths.contains(&path) {
                assert_miss(&self.server, path, None).await;
            } else {
                assert_hit(&self.server, path, None).await;
            }
        }
        for user in ["alice", "bob"] {
            if users.contains(&user) {
                assert_miss(&self.server, "/me", Some(user)).await;
            } else {
                assert_hit(&self.server, "/me", Some(user)).await;
            }
        }
    }
}

#[tokio::test]
async fn invalidate_url_drops_every_query_of_the_path_only() {
    let fixture = Fixture::start().await;
    let dropped = fixture.handle.invalidate_url("/a").await.unwrap();
    assert_eq!(dropped, 2);
    fixture.assert_all_hit_except(&["/a", "/a?x=1"], &[]).await;
    assert_eq!(fixture.value().await, 1, "values are untouched");
}

#[tokio::test]
async fn invalidate_tag_drops_the_tagged_entries_only() {
    let fixture = Fixture::start().await;
    assert_eq!(fixture.handle.invalidate_tag("tb").await.unwrap(), 1);
    fixture.assert_all_hit_except(&["/b"], &[]).await;
    assert_eq!(fixture.handle.invalidate_tag("shared").await.unwrap(), 2);
    fixture.assert_all_hit_except(&["/c", "/other"], &[]).await;
    assert_eq!(fixture.handle.invalidate_tag("nothing").await.unwrap(), 0);
    fixture.assert_all_hit_except(&[], &[]).await;
}

#[tokio::test]
async fn invalidate_tags_drops_entries_carrying_any_of_them() {
    let fixture = Fixture::start().await;
    let dropped = fixture.handle.invalidate_tags(["ta", "tc"]).await.unwrap();
    // `/a?x=1` carries `ta` too: it is a response of the same route.
    assert_eq!(dropped, 3, "/a, /a?x=1 and /c");
    fixture
        .assert_all_hit_except(&["/a", "/a?x=1", "/c"], &[])
        .await;
}

#[tokio::test]
async fn invalidate_prefix_drops_the_urls_under_it() {
    let fixture = Fixture::start().await;
    let dropped = fixture.handle.invalidate_prefix("/pre/").await.unwrap();
    assert_eq!(dropped, 3);
    fixture
        .assert_all_hit_except(&["/pre/one", "/pre/two", "/pre/two?page=2"], &[])
        .await;
}

#[tokio::test]
async fn invalidate_user_drops_that_users_private_entries_only() {
    let fixture = Fixture::start().await;
    fixture.handle.invalidate_user("alice").await.unwrap();
    fixture.assert_all_hit_except(&[], &["alice"]).await;
    let (_, body) = fetch(&fixture.server, "/me", Some("alice")).await;
    assert!(body.starts_with("/me for alice #"), "{body}");
}

#[tokio::test]
async fn invalidate_key_recomputes_the_value_only() {
    let fixture = Fixture::start().await;
    assert_eq!(fixture.value().await, 1);
    assert_eq!(fixture.handle.invalidate_key("answer").await.unwrap(), 1);
    assert_eq!(fixture.value().await, 2, "recomputed");
    assert_eq!(fixture.value().await, 2, "and stored again");
    fixture.assert_all_hit_except(&[], &[]).await;
}

#[tokio::test]
async fn clear_drops_everything() {
    let fixture = Fixture::start().await;
    fixture.handle.clear().await.unwrap();
    assert_eq!(fixture.handle.stats().entries, 0);
    fixture
        .assert_all_hit_except(&PUBLIC_PATHS, &["alice", "bob"])
        .await;
    assert_eq!(fixture.value().await, 2, "recomputed");
}

/// A write handler: answers with the status the `x-status` header asks for
/// (200 by default).
async fn write(headers: HeaderMap) -> StatusCode {
    headers
        .get("x-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK)
}

fn write_app(cache: &Cache, calls: &Calls) -> Router {
    let list = || CachePolicy::public(TTL).tag("materials");
    Router::new()
        .route(
            "/items",
            echo(calls)
                .layer(CachePolicy::public(TTL).tag("items"))
                .post(write)
                .put(write)
                .patch(write)
                .delete(write),
        )
        .route("/other", echo(calls).layer(CachePolicy::public(TTL)))
        .route("/materials", echo(calls).layer(list()))
        .route("/materials/all", echo(calls).layer(list()))
        .route(
            "/materials/{id}",
            echo(calls)
                .layer(CachePolicy::public(TTL).tag("material:42"))
                .merge(put(write).layer(Invalidates::tags(["materials"]))),
        )
        .route(
            "/touch",
            put(|headers: HeaderMap| async move {
                // The handler decides what it made stale.
                (
                    Extension(Invalidates::tags(["material:42"])),
                    write(headers).await,
                )
            }),
        )
        .layer(cache.layer())
}

async fn send(server: &TestServer, method: Method, path: &str, status: u16) {
    let response = server
        .client
        .request(method.clone(), server.url(path))
        .header("x-status", status.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), status, "{method} {path}");
}

#[tokio::test]
async fn successful_writes_invalidate_the_gets_of_their_url() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let server = TestServer::start(write_app(&cache, &calls)).await;
    let gets = ["/items", "/items?page=2", "/items?a=1&b=2"];

    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for path in gets.iter().chain(&["/other"]) {
            fetch(&server, path, None).await;
            assert_hit(&server, path, None).await;
        }
        send(&server, method.clone(), "/items", 200).await;
        for path in gets {
            assert_miss(&server, path, None).await;
        }
        assert_hit(&server, "/other", None).await;

        // 201 and 204 are successes too.
        send(&server, method.clone(), "/items", 204).await;
        for path in gets {
            assert_miss(&server, path, None).await;
        }
    }
}

#[tokio::test]
async fn failed_writes_invalidate_nothing() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let server = TestServer::start(write_app(&cache, &calls)).await;
    let gets = ["/items", "/items?page=2", "/materials", "/materials/42"];
    for path in gets {
        assert_miss(&server, path, None).await;
    }
    for status in [400, 404, 409, 422, 500, 503] {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            send(&server, method, "/items", status).await;
        }
        send(&server, Method::PUT, "/materials/42", status).await;
        send(&server, Method::PUT, "/touch", status).await;
        for path in gets {
            assert_hit(&server, path, None).await;
        }
    }
    assert_eq!(cache.handle().stats().invalidations, 0);
}

#[tokio::test]
async fn a_declared_invalidates_drops_tagged_gets_elsewhere() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let server = TestServer::start(write_app(&cache, &calls)).await;
    for path in ["/materials", "/materials/all", "/materials/42", "/items"] {
        assert_miss(&server, path, None).await;
    }

    // PUT /materials/7 declares `materials`: both lists go; /materials/42
    // (tagged `material:42`, another path) and /items stay.
    send(&server, Method::PUT, "/materials/7", 200).await;
    assert_miss(&server, "/materials", None).await;
    assert_miss(&server, "/materials/all", None).await;
    assert_hit(&server, "/materials/42", None).await;
    assert_hit(&server, "/items", None).await;

    // PUT /materials/42 also drops its own URL.
    send(&server, Method::PUT, "/materials/42", 200).await;
    assert_miss(&server, "/materials/42", None).await;
    assert_miss(&server, "/materials", None).await;
    assert_hit(&server, "/items", None).await;
}

#[tokio::test]
async fn a_handler_set_invalidates_extension_works() {
    let cache = Cache::builder().build();
    let calls = Calls::default();
    let server = TestServer::start(write_app(&cache, &calls)).await;
    for path in ["/materials", "/materials/42", "/items"] {
        assert_miss(&server, path, None).await;
    }
    send(&server, Method::PUT, "/touch", 200).await;
    assert_miss(&server, "/materials/42", None).await;
    assert_hit(&server, "/materials", None).await;
    assert_hit(&server, "/items", None).await;
}

/// `future`, or a failure after 10 s: a broken invalidation fails these
/// tests instead of hanging them.
async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the race did not finish in 10 s")
}

/// A GET whose first call after `slow` is set reads the "database", says
/// so on `read`, and then takes `delay` to answer; later calls are fast.
struct SlowFill {
    database: Arc<AtomicU64>,
    slow: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalidation_racing_a_slow_fill_does_not_leave_old_data() {
    let cache = Cache::builder().build();
    let handle = cache.handle();
    let fill = SlowFill {
        database: Arc::new(AtomicU64::new(0)),
        slow: Arc::new(AtomicBool::new(false)),
        delay_ms: Arc::new(AtomicU64::new(0)),
    };
    let (read_tx, mut read_rx) = mpsc::unbounded_channel::<u64>();
    let (database, slow, delay_ms) = (
        Arc::clone(&fill.database),
        Arc::clone(&fill.slow),
        Arc::clone(&fill.delay_ms),
    );
    let app = Router::new()
        .route(
            "/value",
            get(move || {
                let (database, slow, delay_ms) = (
                    Arc::clone(&database),
                    Arc::clone(&slow),
                    Arc::clone(&delay_ms),
                );
                let read_tx = read_tx.clone();
                async move {
                    let value = database.load(Ordering::SeqCst);
                    if slow.swap(false, Ordering::SeqCst) {
                        let _ = read_tx.send(value);
                        let delay = delay_ms.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    format!("value={value}")
                }
            })
            .layer(CachePolicy::public(TTL).tag("values")),
        )
        .layer(cache.layer());
    let server = Arc::new(TestServer::start(app).await);

    // (fill delay, how long after the handler's read the invalidation runs)
    let timings = [
        (150, 0),
        (150, 60),
        (150, 140),
        (80, 75),
        (200, 10),
        (60, 55),
    ];
    let mut overlapping_reads = 0;
    for (round, (delay, invalidate_after)) in timings.into_iter().enumerate() {
        let old = round as u64 * 2;
        let new = old + 1;
        fill.database.store(old, Ordering::SeqCst);
        handle.invalidate_tag("values").await.unwrap();
        fill.delay_ms.store(delay, Ordering::SeqCst);
        fill.slow.store(true, Ordering::SeqCst);

        let slow_get = {
            let server = Arc::clone(&server);
            tokio::spawn(async move { fetch(&server, "/value", None).await })
        };
        assert_eq!(
            bounded(read_rx.recv()).await,
            Some(old),
            "the fill read the old value"
        );
        tokio::time::sleep(Duration::from_millis(invalidate_after)).await;
        fill.database.store(new, Ordering::SeqCst);
        handle.invalidate_tag("values").await.unwrap();

        // From here on nobody may see the old value: readers hammer the
        // URL while the slow fill completes.
        let mut seen = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !slow_get.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the slow fill never finished"
            );
            let (status, body) = fetch(&server, "/value", None).await;
            assert_eq!(body, format!("value={new}"), "round {round}: {status}");
            seen += 1;
        }
        let (_, slow_body) = bounded(slow_get).await.unwrap();
        assert_eq!(slow_body, format!("value={old}"), "it began before");
        for _ in 0..5 {
            let (status, body) = fetch(&server, "/value", None).await;
            assert_eq!(body, format!("value={new}"), "round {round}: {status}");
        }
        overlapping_reads += seen;
    }
    // The tight timings may leave no room for a reader; the others must.
    assert!(
        overlapping_reads > 10,
        "only {overlapping_reads} reads overlapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalidation_racing_a_slow_fill_without_other_readers() {
    // The same race without readers in between: the slow fill is the only
    // thing that could put the old value back.
    let cache = Cache::builder().build();
    let handle = cache.handle();
    let database = Arc::new(AtomicU64::new(0));
    let (read_tx, mut read_rx) = mpsc::unbounded_channel::<u64>();
    let source = Arc::clone(&database);
    let app = Router::new()
        .route(
            "/value",
            get(move || {
                let (source, read_tx) = (Arc::clone(&source), read_tx.clone());
                async move {
                    let value = source.load(Ordering::SeqCst);
                    let _ = read_tx.send(value);
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    format!("value={value}")
                }
            })
            .layer(CachePolicy::public(TTL).tag("values")),
        )
        .layer(cache.layer());
    let server = Arc::new(TestServer::start(app).await);

    for round in 0..5u64 {
        let old = round * 2;
        let new = old + 1;
        database.store(old, Ordering::SeqCst);
        handle.invalidate_tag("values").await.unwrap();
        let slow_get = {
            let server = Arc::clone(&server);
            tokio::spawn(async move { fetch(&server, "/value", None).await })
        };
        assert_eq!(bounded(read_rx.recv()).await, Some(old));
        tokio::time::sleep(Duration::from_millis(round * 12)).await;
        database.store(new, Ordering::SeqCst);
        handle.invalidate_tag("values").await.unwrap();
        let (_, slow_body) = bounded(slow_get).await.unwrap();
        assert_eq!(slow_body, format!("value={old}"));

        let (status, body) = fetch(&server, "/value", None).await;
        assert_eq!(body, format!("value={new}"), "round {round}");
        assert_eq!(status, STORED, "round {round}: the old fill was not kept");
        assert_eq!(bounded(read_rx.recv()).await, Some(new));
        assert_hit(&server, "/value", None).await;
    }
}
