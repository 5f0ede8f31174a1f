//! Per-user isolation through a real socket (DESIGN invariant: a response
//! stored for one user is never served to another user or to an anonymous
//! request). These tests try to break it: randomized interleavings with
//! HEAD, query strings, foreign ETags and expiry, concurrent first
//! requests, a route that turns private, and `Set-Cookie`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header::SET_COOKIE};
use axum::response::IntoResponse;
use axum::{Extension, Router, routing::get};
use common::{Calls, TestServer, header, user_from_header};
use futures_util::future::join_all;
use strata::{Cache, CachePolicy, MockClock};

const TTL: Duration = Duration::from_secs(60);

/// The requesting user as the handlers see it.
fn who(headers: &HeaderMap) -> String {
    headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned()
}

/// A handler that names the requesting user in its body and in `x-owner`.
fn echo_route(label: &'static str, calls: &Calls) -> axum::routing::MethodRouter {
    let calls = calls.clone();
    get(move |headers: HeaderMap| async move {
        let n = calls.hit();
        let who = who(&headers);
        (
            [("x-owner", who.clone())],
            format!("{label} for {who} #{n}"),
        )
    })
}

/// splitmix64: a seeded generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One randomized request and what came back.
#[derive(Debug)]
struct Exchange {
    user: Option<&'static str>,
    url: &'static str,
    method: Method,
    if_none_match: Option<String>,
    status: StatusCode,
    cache_status: String,
    owner: String,
    etag: String,
    body: String,
}

const SAME_BODY: &str = "the same for everyone";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_randomized_requests_never_cross_users() {
    const USERS: [Option<&str>; 3] = [Some("alice"), Some("bob"), None];
    const URLS: [&str; 8] = [
        "/p/a",
        "/p/a?x=1",
        "/p/a?x=1&y=2",
        "/p/a?y=2&x=1",
        "/p/b",
        "/p/b?page=2",
        "/p/c/",
        "/p/same",
    ];
    let clock = MockClock::new();
    let cache = Cache::builder()
        .user(user_from_header)
        .clock(clock.clone())
        .build();
    let handle = cache.handle();
    let calls = Calls::default();
    let private = || CachePolicy::private(TTL).tag("p");
    let app = Router::new()
        .route("/p/a", echo_route("a", &calls).layer(private()))
        .route("/p/b", echo_route("b", &calls).layer(private()))
        .route("/p/c/", echo_route("c", &calls).layer(private()))
        .route("/p/same", get(|| async { SAME_BODY }).layer(private()))
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let mut rng = Rng(0x5EED_0001);
    // Every ETag seen so far, with the user whose representation it names
    // ("*" for the body every user shares).
    let mut etag_owner: HashMap<String, String> = HashMap::new();
    let mut etags_by_url: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    let mut exchanges = 0;
    let mut cross_user_conditionals = 0;
    let mut foreign_conditionals = 0;
    let mut hits = 0;
    let mut head_requests = 0;

    for batch in 0..100 {
        if batch % 15 == 14 {
            // Let every stored entry go stale: refills race with hits.
            clock.advance(TTL + Duration::from_secs(1));
        }
        if batch == 50 {
            handle.invalidate_user("alice").await.unwrap();
        }
        let mut planned = Vec::new();
        for _ in 0..10 {
            let user = USERS[rng.below(USERS.len())];
            let url = URLS[rng.below(URLS.len())];
            let method = if rng.chance(20) {
                Method::HEAD
            } else {
                Method::GET
            };
            let me = user.unwrap_or("anonymous");
            // Prefer an ETag another user obtained for this URL.
            let if_none_match = if rng.chance(35) {
                let seen = etags_by_url.get(url).map(Vec::as_slice).unwrap_or(&[]);
                let foreign: Vec<&String> = seen
                    .iter()
                    .filter(|(owner, _)| owner != me)
                    .map(|(_, etag)| etag)
                    .collect();
                if !foreign.is_empty() && rng.chance(80) {
                    Some(foreign[rng.below(foreign.len())].clone())
                } else if !seen.is_empty() {
                    Some(seen[rng.below(seen.len())].1.clone())
                } else {
                    None
                }
            } else {
                None
            };
            planned.push((user, url, method, if_none_match));
        }
        let results = join_all(planned.into_iter().map(|(user, url, method, inm)| {
            let mut request = server.client.request(method.clone(), server.url(url));
            if let Some(user) = user {
                request = request.header("x-user", user);
            }
            if let Some(etag) = &inm {
                request = request.header("if-none-match", etag);
            }
            async move {
                let response = request.send().await.unwrap();
                Exchange {
                    user,
                    url,
                    method,
                    if_none_match: inm,
                    status: response.status(),
                    cache_status: header(&response, "cache-status"),
                    owner: header(&response, "x-owner"),
                    etag: header(&response, "etag"),
                    body: response.text().await.unwrap(),
                }
            }
        }))
        .await;

        for exchange in results {
            exchanges += 1;
            let me = exchange.user.unwrap_or("anonymous");
            let shared_body = exchange.url == "/p/same";
            if exchange.method == Method::HEAD {
                head_requests += 1;
            }
            if exchange.cache_status == "strata; hit" {
                hits += 1;
            }
            let asked_with = exchange.if_none_match.as_deref();
            if asked_with
                .and_then(|etag| etag_owner.get(etag))
                .is_some_and(|owner| owner != me && owner != "*")
            {
                foreign_conditionals += 1;
            }
            match exchange.status {
                StatusCode::OK => {
                    if exchange.method == Method::GET {
                        if shared_body {
                            assert_eq!(exchange.body, SAME_BODY, "{exchange:?}");
                        } else {
                            assert!(
                                exchange.body.contains(&format!(" for {me} #")),
                                "body names another user: {exchange:?}"
                            );
                        }
                    } else {
                        assert_eq!(exchange.body, "", "HEAD has no body: {exchange:?}");
                    }
                    if !shared_body {
                        assert_eq!(exchange.owner, me, "x-owner of another user: {exchange:?}");
                    }
                    if !exchange.etag.is_empty() {
                        let owner = if shared_body { "*" } else { me }.to_owned();
                        etag_owner.insert(exchange.etag.clone(), owner.clone());
                        let seen = etags_by_url.entry(exchange.url).or_default();
                        if !seen.contains(&(owner.clone(), exchange.etag.clone())) {
                            seen.push((owner, exchange.etag.clone()));
                        }
                    }
                }
                StatusCode::NOT_MODIFIED => {
                    assert!(exchange.user.is_some(), "304 for anonymous: {exchange:?}");
                    let sent = exchange.if_none_match.as_deref().expect("a 304 needs one");
                    assert_eq!(exchange.etag, sent, "{exchange:?}");
                    let owner = etag_owner
                        .get(sent)
                        .map(String::as_str)
                        .unwrap_or("unknown");
                    assert!(
                        owner == me || owner == "*",
                        "304 for {me} on a representation of {owner}: {exchange:?}"
                    );
                    if owner == "*" {
                        cross_user_conditionals += 1;
                    }
                    assert_eq!(exchange.body, "");
                }
                other => panic!("unexpected status {other}: {exchange:?}"),
            }
            if exchange.user.is_none() {
                assert!(
                    !exchange.cache_status.contains("hit")
                        && !exchange.cache_status.contains("collapsed")
                        && !exchange.cache_status.contains("stored"),
                    "anonymous request answered from the cache: {exchange:?}"
                );
                assert_ne!(exchange.status, StatusCode::NOT_MODIFIED);
            }
        }
    }

    assert_eq!(exchanges, 1000);
    // The run exercised what it claims to: hits, HEADs, and 304s legitimately
    // given for a body that every user shares.
    assert!(hits > 100, "only {hits} hits");
    assert!(head_requests > 100, "only {head_requests} HEAD requests");
    assert!(
        foreign_conditionals > 100,
        "only {foreign_conditionals} requests carried another user's ETag"
    );
    assert!(
        cross_user_conditionals > 0,
        "no 304 on the shared body at all"
    );
}

/// A route that answers with a private policy, slowly, so that concurrent
/// requests overlap in the cache.
fn slow_private_echo(calls: &Calls) -> axum::routing::MethodRouter {
    let calls = calls.clone();
    get(move |headers: HeaderMap| async move {
        let n = calls.hit();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let who = who(&headers);
        ([("x-owner", who.clone())], format!("mine for {who} #{n}"))
    })
    .layer(CachePolicy::private(TTL))
}

async fn get_as(server: &TestServer, path: &str, user: Option<&str>) -> (String, String) {
    let request = match user {
        Some(user) => server.get_as(path, user),
        None => server.get(path),
    };
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let status = header(&response, "cache-status");
    (status, response.text().await.unwrap())
}

fn names(body: &str, user: &str) -> bool {
    body.starts_with(&format!("mine for {user} #"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anonymous_first_request_then_users_get_their_own_data() {
    let cache = Cache::builder().user(user_from_header).build();
    let calls = Calls::default();
    let app = Router::new()
        .route("/mine", slow_private_echo(&calls))
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let (status, body) = get_as(&server, "/mine", None).await;
    assert!(names(&body, "anonymous"), "{body}");
    assert!(status.contains("detail=anonymous"), "{status}");

    // Now everyone at once: users get their own, anonymous gets its own.
    let who_asks = [
        Some("alice"),
        Some("bob"),
        None,
        Some("alice"),
        Some("bob"),
        None,
    ];
    let answers = join_all(who_asks.iter().map(|user| get_as(&server, "/mine", *user))).await;
    for (user, (status, body)) in who_asks.iter().zip(&answers) {
        let me = user.unwrap_or("anonymous");
        assert!(names(body, me), "{me} got {body}");
        if user.is_none() {
            assert!(!status.contains("hit") && !status.contains("collapsed"));
        }
    }

    let (status, body) = get_as(&server, "/mine", Some("alice")).await;
    assert_eq!(status, "strata; hit");
    assert!(names(&body, "alice"), "{body}");
    let (status, body) = get_as(&server, "/mine", Some("bob")).await;
    assert_eq!(status, "strata; hit");
    assert!(names(&body, "bob"), "{body}");
    let (status, body) = get_as(&server, "/mine", None).await;
    assert_ne!(status, "strata; hit");
    assert!(names(&body, "anonymous"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_request_by_one_user_is_not_served_to_another() {
    let cache = Cache::builder().user(user_from_header).build();
    let calls = Calls::default();
    let app = Router::new()
        .route("/mine", slow_private_echo(&calls))
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    // Alice's first request is still in the handler when Bob and an
    // anonymous client ask.
    let alice = get_as(&server, "/mine", Some("alice"));
    let late = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::join!(
            get_as(&server, "/mine", Some("bob")),
            get_as(&server, "/mine", None)
        )
    };
    let ((_, alice), ((_, bob), (anon_status, anon))) = tokio::join!(alice, late);
    assert!(names(&alice, "alice"), "{alice}");
    assert!(names(&bob, "bob"), "{bob}");
    assert!(names(&anon, "anonymous"), "{anon}");
    assert!(!anon_status.contains("collapsed"), "{anon_status}");
    assert_eq!(calls.count(), 3);

    let (status, body) = get_as(&server, "/mine", Some("bob")).await;
    assert_eq!(status, "strata; hit");
    assert_eq!(body, bob);
    let (status, body) = get_as(&server, "/mine", None).await;
    assert_ne!(status, "strata; hit");
    assert!(names(&body, "anonymous"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_public_url_that_turns_private_never_leaks_between_users() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .user(user_from_header)
        .clock(clock.clone())
        .build();
    let handle = cache.handle();
    let private_now = Arc::new(AtomicBool::new(false));
    let calls = Calls::default();
    let (flag, counted) = (Arc::clone(&private_now), calls.clone());
    let app = Router::new()
        .route(
            "/switch",
            get(move |headers: HeaderMap| {
                let (flag, counted) = (Arc::clone(&flag), counted.clone());
                async move {
                    let n = counted.hit();
                    if !flag.load(Ordering::SeqCst) {
                        let policy = CachePolicy::public(TTL);
                        return (Extension(policy), "public content".to_owned()).into_response();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let who = who(&headers);
                    let policy = CachePolicy::private(TTL);
                    (Extension(policy), format!("mine for {who} #{n}")).into_response()
                }
            }),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for round in 0..2 {
        private_now.store(false, Ordering::SeqCst);
        let (status, body) = get_as(&server, "/switch", Some("alice")).await;
        assert_eq!(body, "public content");
        assert_eq!(status, "strata; fwd=uri-miss; stored", "round {round}");
        let (status, body) = get_as(&server, "/switch", Some("bob")).await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("strata; hit", "public content")
        );

        // The handler now answers privately; the public entry is still fresh.
        private_now.store(true, Ordering::SeqCst);
        let (_, body) = get_as(&server, "/switch", None).await;
        assert_eq!(body, "public content");

        // Expired (round 0) or dropped (round 1): everyone asks at once and
        // overlaps in the refill of the URL.
        if round == 0 {
            clock.advance(TTL + Duration::from_secs(1));
        } else {
            handle.invalidate_url("/switch").await.unwrap();
        }
        let who_asks = [
            Some("alice"),
            Some("bob"),
            None,
            Some("bob"),
            Some("alice"),
            None,
        ];
        let answers = join_all(
            who_asks
                .iter()
                .map(|user| get_as(&server, "/switch", *user)),
        )
        .await;
        for (user, (status, body)) in who_asks.iter().zip(&answers) {
            let me = user.unwrap_or("anonymous");
            assert!(names(body, me), "round {round}: {me} got {body} ({status})");
        }
        for user in ["alice", "bob"] {
            let (status, body) = get_as(&server, "/switch", Some(user)).await;
            assert!(names(&body, user), "round {round}: {user} got {body}");
            assert_eq!(status, "strata; hit");
        }
        let (status, body) = get_as(&server, "/switch", None).await;
        assert!(names(&body, "anonymous"), "round {round}: {body}");
        assert_ne!(status, "strata; hit");

        // Back to public for the next round.
        handle.invalidate_url("/switch").await.unwrap();
    }
}

/// The `Set-Cookie` values of a response.
fn cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_route(calls: &Calls, policy: CachePolicy) -> axum::routing::MethodRouter {
    let calls = calls.clone();
    get(move |headers: HeaderMap| async move {
        let n = calls.hit();
        let who = who(&headers);
        let cookie = HeaderValue::try_from(format!("session={who}-{n}")).unwrap();
        (
            [(SET_COOKIE, cookie)],
            format!("cookie page for {who} #{n}"),
        )
    })
    .layer(policy)
}

#[tokio::test]
async fn set_cookie_on_a_public_route_is_never_stored_in_a_shared_entry() {
    let cache = Cache::builder().user(user_from_header).build();
    let handle = cache.handle();
    let calls = Calls::default();
    let app = Router::new()
        .route(
            "/public-cookie",
            cookie_route(&calls, CachePolicy::public(TTL)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let alice = server
        .get_as("/public-cookie", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(cookies(&alice), ["session=alice-1"]);
    assert!(header(&alice, "cache-status").contains("detail=set-cookie"));
    let bob = server.get_as("/public-cookie", "bob").send().await.unwrap();
    assert_eq!(cookies(&bob), ["session=bob-2"], "alice's cookie replayed");
    assert_eq!(bob.text().await.unwrap(), "cookie page for bob #2");
    let anon = server.get("/public-cookie").send().await.unwrap();
    assert_eq!(cookies(&anon), ["session=anonymous-3"]);
    assert_eq!(calls.count(), 3, "the handler answered every request");
    assert_eq!(handle.stats().stores, 0);
}

#[tokio::test]
async fn a_private_entry_does_not_replay_set_cookie_on_hits() {
    let cache = Cache::builder().user(user_from_header).build();
    let calls = Calls::default();
    let app = Router::new()
        .route(
            "/private-cookie",
            cookie_route(&calls, CachePolicy::private(TTL)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    // The response that the handler produced still sets its cookie...
    let first = server
        .get_as("/private-cookie", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&first, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(cookies(&first), ["session=alice-1"]);
    // ...but the stored copy does not replay it.
    let hit = server
        .get_as("/private-cookie", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert!(cookies(&hit).is_empty(), "replayed: {:?}", cookies(&hit));
    assert_eq!(hit.text().await.unwrap(), "cookie page for alice #1");

    let bob = server
        .get_as("/private-cookie", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(cookies(&bob), ["session=bob-2"]);
    assert_eq!(bob.text().await.unwrap(), "cookie page for bob #2");
    let bob_hit = server
        .get_as("/private-cookie", "bob")
        .send()
        .await
        .unwrap();
    assert!(cookies(&bob_hit).is_empty());
    assert_eq!(calls.count(), 2);
}

/// A learnt per-user rule follows the cache's clock: once it is past its
/// TTL, a route that turned public is stored again for anonymous requests,
/// and an empty user id counts as anonymous, never as a shared identity.
#[tokio::test]
async fn a_per_user_rule_expires_on_the_cache_clock_and_empty_users_are_anonymous() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .user(user_from_header)
        .clock(clock.clone())
        .build();
    let private = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&private);
    let app = Router::new()
        .route(
            "/turns",
            get(move |headers: HeaderMap| {
                let flag = Arc::clone(&flag);
                async move {
                    let policy = if flag.load(Ordering::SeqCst) {
                        CachePolicy::private(Duration::from_secs(30))
                    } else {
                        CachePolicy::public(Duration::from_secs(30))
                    };
                    (Extension(policy), format!("for {}", who(&headers)))
                }
            }),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let alice = server.get_as("/turns", "alice").send().await.unwrap();
    assert_eq!(
        header(&alice, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    let empty = server.get_as("/turns", "").send().await.unwrap();
    assert!(
        header(&empty, "cache-status").contains("fwd=bypass"),
        "{}",
        header(&empty, "cache-status")
    );

    private.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(31));
    let anonymous = server.get("/turns").send().await.unwrap();
    assert_eq!(
        header(&anonymous, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    let again = server.get("/turns").send().await.unwrap();
    assert_eq!(header(&again, "cache-status"), "strata; hit");
    assert_eq!(again.text().await.unwrap(), "for anonymous");
}

/// A user's own answer varies on what tells users apart (by default
/// `Authorization` and `Cookie`), on the miss and on hits, so a browser's
/// cache never shows it to the next user of the same browser; shared
/// answers do not.
#[tokio::test]
async fn private_answers_vary_on_the_fields_that_tell_users_apart() {
    let cache = Cache::builder().user(user_from_header).build();
    let app = Router::new()
        .route(
            "/mine",
            get(|| async { "mine" }).layer(CachePolicy::private(Duration::from_secs(60))),
        )
        .route(
            "/shared",
            get(|| async { "shared" }).layer(CachePolicy::public(Duration::from_secs(60))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    for expected in ["strata; fwd=uri-miss; stored", "strata; hit"] {
        let response = server.get_as("/mine", "7").send().await.unwrap();
        assert_eq!(header(&response, "cache-status"), expected);
        let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
        assert!(
            vary.iter()
                .any(|v| v.to_str().unwrap() == "authorization, cookie"),
            "{expected}: {vary:?}"
        );
        let shared = server.get("/shared").send().await.unwrap();
        assert!(
            shared.headers().get("vary").is_none(),
            "{:?}",
            shared.headers()
        );
    }
}
