//! The admission gate, through real sockets: whichever path writes an
//! entry (a fill, a HEAD fill, a 304 revalidation in line, a background
//! stale-while-revalidate refresh), a stored response never holds a
//! `Set-Cookie` or a connection's own fields. The client whose request
//! brought the cookie gets it; every later one gets none; on public and
//! private routes alike.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::{Calls, TestServer, mock_cache};
use strata::{CachePolicy, MockClock};

const FRESH: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(60);

/// A handler with its own validator: 304 to `If-None-Match: "v1"`, rolling
/// the client's session (its `Cookie`) into a `Set-Cookie` as it does so;
/// 200 otherwise, with `Set-Cookie` only when `cookie_on_200`.
fn rolling(calls: &Calls, cookie_on_200: bool) -> axum::routing::MethodRouter {
    let calls = calls.clone();
    get(move |headers: HeaderMap| async move {
        let n = calls.hit();
        let mut out = HeaderMap::new();
        out.insert("etag", HeaderValue::from_static("\"v1\""));
        // A connection's own fields, which no stored copy may replay.
        out.insert("connection", HeaderValue::from_static("x-conn-trace"));
        out.insert("x-conn-trace", HeaderValue::from(n));
        let cookie = headers
            .get("cookie")
            .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
        let rolled = HeaderValue::from_str(&format!("rolled={cookie}")).unwrap();
        if headers
            .get("if-none-match")
            .is_some_and(|v| v.as_bytes() == b"\"v1\"")
        {
            out.insert("set-cookie", rolled);
            return (StatusCode::NOT_MODIFIED, out).into_response();
        }
        if cookie_on_200 {
            out.insert("set-cookie", rolled);
        }
        (out, format!("body of call {n}")).into_response()
    })
}

struct Fixture {
    server: TestServer,
    clock: MockClock,
    calls: Calls,
}

async fn fixture(policy: CachePolicy, cookie_on_200: bool) -> Fixture {
    let (cache, clock) = mock_cache();
    let calls = Calls::default();
    let app = Router::new()
        .route("/r", rolling(&calls, cookie_on_200).layer(policy))
        .layer(cache.layer());
    Fixture {
        server: TestServer::start(app).await,
        clock,
        calls,
    }
}

struct Seen {
    status: StatusCode,
    cache_status: String,
    cookies: Vec<String>,
    headers: reqwest::header::HeaderMap,
}

impl Fixture {
    async fn get(&self, user: Option<&str>, cookie: Option<&str>) -> Seen {
        self.send(reqwest::Method::GET, user, cookie).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        user: Option<&str>,
        cookie: Option<&str>,
    ) -> Seen {
        let mut request = self.server.client.request(method, self.server.url("/r"));
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        Seen {
            status: response.status(),
            cache_status: common::header(&response, "cache-status"),
            cookies: response
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            headers: response.headers().clone(),
        }
    }

    /// Later requests, as `user`, with another cookie and with none: hits,
    /// and none carries a cookie or the fill's connection fields.
    async fn assert_hits_carry_nothing(&self, user: Option<&str>, what: &str) {
        for cookie in [None, Some("sid=mallory")] {
            let seen = self.get(user, cookie).await;
            assert_eq!(seen.cache_status, "strata; hit", "{what}");
            assert!(
                seen.cookies.is_empty(),
                "{what}: a hit set {:?}",
                seen.cookies
            );
            assert!(
                !seen.headers.contains_key("x-conn-trace"),
                "{what}: a hit replayed a connection field"
            );
        }
    }
}

#[tokio::test]
async fn a_304_revalidation_in_line_gives_its_cookie_to_its_client_only() {
    for (policy, user) in [
        (CachePolicy::public(FRESH), None),
        (CachePolicy::private(FRESH), Some("alice")),
    ] {
        let policy = policy.stale_if_error(WINDOW);
        let what = format!("{:?}", policy.scope());
        let t = fixture(policy, false).await;
        let first = t.get(user, None).await;
        assert!(first.cache_status.ends_with("stored"), "{what}");
        t.clock.advance(FRESH + Duration::from_secs(1));
        let revalidated = t.get(user, Some("sid=alice")).await;
        assert_eq!(
            revalidated.cache_status, "strata; fwd=stale; fwd-status=304; stored",
            "{what}"
        );
        assert_eq!(revalidated.status, StatusCode::OK);
        assert_eq!(revalidated.cookies, ["rolled=sid=alice"], "{what}");
        t.assert_hits_carry_nothing(user, &what).await;
        assert_eq!(t.calls.count(), 2, "{what}");
    }
}

#[tokio::test]
async fn a_background_refresh_answered_304_stores_no_cookie() {
    for (policy, user) in [
        (CachePolicy::public(FRESH), None),
        (CachePolicy::private(FRESH), Some("alice")),
    ] {
        let policy = policy.stale_while_revalidate(WINDOW);
        let what = format!("{:?}", policy.scope());
        let t = fixture(policy, false).await;
        t.get(user, None).await;
        t.clock.advance(FRESH + Duration::from_secs(1));
        let stale = t.get(user, Some("sid=alice")).await;
        assert_eq!(
            stale.cache_status, "strata; hit; detail=stale-while-revalidate",
            "{what}"
        );
        // The refresh runs in the background; wait for its 304 to land.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let seen = t.get(user, None).await;
            if seen.cache_status == "strata; hit" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: no refresh");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        t.assert_hits_carry_nothing(user, &what).await;
        assert_eq!(t.calls.count(), 2, "{what}");
    }
}

#[tokio::test]
async fn a_private_fill_and_a_head_fill_give_the_cookie_to_their_client_only() {
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let t = fixture(CachePolicy::private(FRESH), true).await;
        let first = t
            .send(method.clone(), Some("alice"), Some("sid=alice"))
            .await;
        assert_eq!(
            first.cache_status, "strata; fwd=uri-miss; stored",
            "{method}"
        );
        assert_eq!(first.cookies, ["rolled=sid=alice"], "{method}");
        t.assert_hits_carry_nothing(Some("alice"), method.as_str())
            .await;
        assert_eq!(t.calls.count(), 1, "{method}");
    }
}

#[tokio::test]
async fn a_public_response_that_sets_a_cookie_is_not_stored() {
    let t = fixture(CachePolicy::public(FRESH), true).await;
    for _ in 0..2 {
        let seen = t.get(None, Some("sid=alice")).await;
        assert_eq!(seen.cache_status, "strata; fwd=uri-miss; detail=set-cookie");
        assert_eq!(seen.cookies, ["rolled=sid=alice"]);
    }
    assert_eq!(t.calls.count(), 2);
}
