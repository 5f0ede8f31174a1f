//! HTTP semantics through a real socket: per-route policies, TTL profiles,
//! validators and 304s, `Age` and expiry on a mock clock, `Cache-Status`,
//! HEAD, query normalisation, `Vary`, and the layer's error type.

mod common;

use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use common::{Calls, TestServer, get_text, header, mock_cache};
use http::HeaderMap;
use http::header::{ACCEPT_LANGUAGE, ETAG};
use strata::{Cache, CachePolicy, Config, MockClock, TtlProfiles};

const MINUTE: Duration = Duration::from_secs(60);

/// A GET route whose body says how often it was called.
fn counting(calls: &Calls) -> MethodRouter {
    let calls = calls.clone();
    get(move || async move { format!("call {}", calls.hit()) })
}

/// One route, `/r`, under `policy`, behind the cache's layer.
async fn serve_one(cache: &Cache, calls: &Calls, policy: CachePolicy) -> TestServer {
    let app = Router::new()
        .route("/r", counting(calls).layer(policy))
        .layer(cache.layer());
    TestServer::start(app).await
}

fn is_strong_hex_etag(etag: &str) -> bool {
    etag.len() == 34
        && etag.starts_with('"')
        && etag.ends_with('"')
        && etag[1..33]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

// ----------------------------------------------------------------------------
// 1. Policies per route
// ----------------------------------------------------------------------------

#[tokio::test]
async fn public_policy_writes_public_max_age_and_stores() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let (first, body) = get_text(&server, "/r").await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "cache-control"), "public, max-age=60");
    assert_eq!(body, "call 1");

    let (second, body) = get_text(&server, "/r").await;
    assert_eq!(header(&second, "cache-control"), "public, max-age=60");
    assert_eq!(header(&second, "cache-status"), "strata; hit");
    assert_eq!(body, "call 1");
    assert_eq!(
        calls.count(),
        1,
        "the second request must not call the handler"
    );
}

#[tokio::test]
async fn private_policy_writes_private_max_age_and_stores_per_user() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::private(MINUTE * 5)).await;

    let alice = server.get_as("/r", "alice").send().await.unwrap();
    assert_eq!(header(&alice, "cache-control"), "private, max-age=300");
    assert_eq!(
        header(&alice, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(alice.text().await.unwrap(), "call 1");

    let again = server.get_as("/r", "alice").send().await.unwrap();
    assert_eq!(header(&again, "cache-control"), "private, max-age=300");
    assert_eq!(header(&again, "cache-status"), "strata; hit");
    assert_eq!(again.text().await.unwrap(), "call 1");
    assert_eq!(calls.count(), 1);

    let bob = server.get_as("/r", "bob").send().await.unwrap();
    assert_eq!(
        bob.text().await.unwrap(),
        "call 2",
        "bob gets his own entry"
    );
    assert_eq!(calls.count(), 2);
}

#[tokio::test]
async fn no_cache_policy_validates_but_calls_the_handler_every_time() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let app = Router::new()
        .route(
            "/r",
            get(|| async { "same body" }).layer(CachePolicy::no_cache()),
        )
        .route("/counted", counting(&calls).layer(CachePolicy::no_cache()))
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for n in 1..=3 {
        let (response, body) = get_text(&server, "/counted").await;
        assert_eq!(header(&response, "cache-control"), "no-cache");
        assert!(is_strong_hex_etag(&header(&response, "etag")));
        assert_eq!(body, format!("call {n}"));
    }
    assert_eq!(calls.count(), 3, "no-cache responses are never stored");

    let first = server.get("/r").send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag");
    assert!(is_strong_hex_etag(&etag), "{etag}");

    let revalidated = server
        .get("/r")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(header(&revalidated, "etag"), etag);
    assert_eq!(header(&revalidated, "cache-control"), "no-cache");
    assert_eq!(revalidated.bytes().await.unwrap().len(), 0);

    let changed = server
        .get("/r")
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.text().await.unwrap(), "same body");
}

#[tokio::test]
async fn no_store_policy_is_never_stored_and_gets_no_validators() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::no_store()).await;

    for n in 1..=3 {
        let (response, body) = get_text(&server, "/r").await;
        assert_eq!(header(&response, "cache-control"), "no-store");
        assert_eq!(header(&response, "etag"), "", "no-store adds no ETag");
        assert_eq!(body, format!("call {n}"));
    }
    assert_eq!(calls.count(), 3);
}

#[tokio::test]
async fn tags_given_by_the_policy_drop_the_entry_on_invalidate_tag() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let other_calls = Calls::default();
    let app = Router::new()
        .route(
            "/tagged",
            counting(&calls).layer(CachePolicy::public(MINUTE).tags(["materials", "material:42"])),
        )
        .route(
            "/other",
            counting(&other_calls).layer(CachePolicy::public(MINUTE).tag("reports")),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for path in ["/tagged", "/tagged", "/other", "/other"] {
        server.get(path).send().await.unwrap();
    }
    assert_eq!((calls.count(), other_calls.count()), (1, 1));

    cache.handle().invalidate_tag("material:42").await.unwrap();
    let (response, body) = get_text(&server, "/tagged").await;
    assert_eq!(body, "call 2", "the tagged entry was dropped");
    assert_eq!(
        header(&response, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    let (response, _) = get_text(&server, "/other").await;
    assert_eq!(header(&response, "cache-status"), "strata; hit");
    assert_eq!(other_calls.count(), 1, "other tags are untouched");

    cache.handle().invalidate_tag("materials").await.unwrap();
    let (_, body) = get_text(&server, "/tagged").await;
    assert_eq!(body, "call 3");
}

#[tokio::test]
async fn policy_set_by_the_handler_is_honoured() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/r",
            get(move || async move {
                (
                    axum::Extension(CachePolicy::public(Duration::from_secs(90))),
                    format!("call {}", counted.hit()),
                )
            }),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let (first, _) = get_text(&server, "/r").await;
    assert_eq!(header(&first, "cache-control"), "public, max-age=90");
    let (second, body) = get_text(&server, "/r").await;
    assert_eq!(header(&second, "cache-status"), "strata; hit");
    assert_eq!(body, "call 1");
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn policy_set_by_the_handler_wins_over_the_route_layer() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/r",
            get(move || async move {
                (
                    axum::Extension(CachePolicy::public(Duration::from_secs(90))),
                    format!("call {}", counted.hit()),
                )
            })
            .layer(CachePolicy::no_store()),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let (first, _) = get_text(&server, "/r").await;
    assert_eq!(header(&first, "cache-control"), "public, max-age=90");
    let (second, body) = get_text(&server, "/r").await;
    assert_eq!(header(&second, "cache-control"), "public, max-age=90");
    assert_eq!(body, "call 1", "stored under the handler's policy");
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn default_policy_applies_where_the_route_declares_none() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .clock(clock.clone())
        .default_policy(CachePolicy::public(Duration::from_secs(120)))
        .build();
    let plain = Calls::default();
    let declared = Calls::default();
    let app = Router::new()
        .route("/plain", counting(&plain))
        .route(
            "/declared",
            counting(&declared).layer(CachePolicy::no_store()),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let (first, _) = get_text(&server, "/plain").await;
    assert_eq!(header(&first, "cache-control"), "public, max-age=120");
    let (second, body) = get_text(&server, "/plain").await;
    assert_eq!(header(&second, "cache-status"), "strata; hit");
    assert_eq!(body, "call 1");
    assert_eq!(plain.count(), 1);

    for _ in 0..2 {
        let (response, _) = get_text(&server, "/declared").await;
        assert_eq!(header(&response, "cache-control"), "no-store");
    }
    assert_eq!(declared.count(), 2, "the route's own policy wins");
}

#[tokio::test]
async fn without_policy_or_default_a_route_passes_through_untouched() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let app = Router::new()
        .route("/plain", counting(&calls))
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for n in 1..=3 {
        let (response, body) = get_text(&server, "/plain").await;
        assert_eq!(response.status(), 200);
        for name in [
            "cache-control",
            "cache-status",
            "age",
            "etag",
            "last-modified",
        ] {
            assert_eq!(header(&response, name), "", "{name} must not be added");
        }
        assert_eq!(body, format!("call {n}"));
    }
    assert_eq!(calls.count(), 3);
}

#[tokio::test]
async fn handler_cache_control_private_keeps_a_public_route_unshared() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/me",
            get(move || async move {
                let n = counted.hit();
                (
                    [("cache-control", "private, max-age=30")],
                    format!("mine {n}"),
                )
            })
            .layer(CachePolicy::public(MINUTE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for n in 1..=2 {
        let (response, body) = get_text(&server, "/me").await;
        assert_eq!(
            header(&response, "cache-control"),
            "private, max-age=30",
            "the handler's own directive is not overwritten with public"
        );
        // The first answer teaches that the URL is not shared (a pass
        // marker): the second passes by the flight (`fwd=miss`).
        let fwd = if n == 1 { "uri-miss" } else { "miss" };
        assert_eq!(
            header(&response, "cache-status"),
            format!("strata; fwd={fwd}; detail=private")
        );
        assert_eq!(body, format!("mine {n}"));
    }
    assert_eq!(calls.count(), 2, "never stored in a shared entry");
}

// ----------------------------------------------------------------------------
// 2. Named TTL profiles and configuration
// ----------------------------------------------------------------------------

#[tokio::test]
async fn ttl_profiles_build_route_policies() {
    let profiles = TtlProfiles::default()
        .with("materials_list", Duration::from_secs(1800))
        .with("material_detail", Duration::from_secs(3600))
        .with("notifications", Duration::from_secs(60));
    let (cache, _clock) = mock_cache();
    let app = Router::new()
        .route(
            "/materials/",
            get(|| async { "[]" }).layer(CachePolicy::public(profiles.get("materials_list"))),
        )
        .route(
            "/materials/1/",
            get(|| async { "{}" }).layer(CachePolicy::public(profiles.get("material_detail"))),
        )
        .route(
            "/notifications/",
            get(|| async { "[]" }).layer(CachePolicy::private(profiles.get("notifications"))),
        )
        .route(
            "/unknown/",
            get(|| async { "?" }).layer(CachePolicy::public(profiles.get("no_such_profile"))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for (path, expected) in [
        ("/materials/", "public, max-age=1800"),
        ("/materials/1/", "public, max-age=3600"),
        ("/notifications/", "private, max-age=60"),
        ("/unknown/", "public, max-age=300"),
    ] {
        let response = server.get_as(path, "alice").send().await.unwrap();
        assert_eq!(header(&response, "cache-control"), expected, "{path}");
    }
}

#[tokio::test]
async fn config_from_lookup_puts_cache_env_into_the_key_prefix() {
    let config = Config::from_lookup(|name| match name {
        "CACHE_ENV" => Some("staging".to_owned()),
        _ => None,
    })
    .unwrap();
    assert_eq!(config.key_prefix(), "strata:staging:");
    assert_eq!(
        config.ttl.get("materials_list"),
        Duration::from_secs(300),
        "no such profile: default"
    );

    let cache = config.builder().build();
    let handle = cache.handle();
    assert_eq!(handle.keys().prefix(), "strata:staging:");
    let key = handle
        .keys()
        .url_key(&"/materials/?page=2".parse().unwrap());
    assert!(key.starts_with("strata:staging:"), "{key}");
    assert!(
        handle
            .keys()
            .make_key(&["active_users"])
            .starts_with("strata:staging:")
    );

    // The layer stores under the same prefixed key.
    let app = Router::new()
        .route(
            "/materials/",
            get(|| async { "[]" }).layer(CachePolicy::public(config.ttl.get("materials_list"))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    let response = server.get("/materials/?page=2").send().await.unwrap();
    assert_eq!(header(&response, "cache-control"), "public, max-age=300");
    let stored = handle.store().get(&key).await.unwrap();
    let stored = stored.expect("the response is stored under the prefixed key");
    assert!(stored.key.starts_with("strata:staging:"));
    assert_eq!(stored.name, "/materials/?page=2");
}

// ----------------------------------------------------------------------------
// 3. Validators, conditional requests, Age, expiry, Cache-Status, HEAD
// ----------------------------------------------------------------------------

#[tokio::test]
async fn strong_etag_is_32_quoted_hex_and_the_same_on_miss_and_hit() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let miss = server.get("/r").send().await.unwrap();
    let etag = header(&miss, "etag");
    assert!(is_strong_hex_etag(&etag), "{etag}");
    assert_eq!(
        etag,
        strata::conditional::etag_for(b"call 1").to_str().unwrap(),
        "the ETag is the digest of the body"
    );
    let hit = server.get("/r").send().await.unwrap();
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert_eq!(header(&hit, "etag"), etag);
}

#[tokio::test]
async fn etag_set_by_the_handler_is_kept_unchanged() {
    let (cache, _clock) = mock_cache();
    let app = Router::new()
        .route(
            "/r",
            get(|| async { ([(ETAG, "W/\"v1-handler\"")], "body") })
                .layer(CachePolicy::public(MINUTE)),
        )
        .route(
            "/nc",
            get(|| async { ([(ETAG, "\"nc-handler\"")], "body") }).layer(CachePolicy::no_cache()),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let miss = server.get("/r").send().await.unwrap();
    assert_eq!(header(&miss, "etag"), "W/\"v1-handler\"");
    let hit = server.get("/r").send().await.unwrap();
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert_eq!(header(&hit, "etag"), "W/\"v1-handler\"");
    let not_modified = server
        .get("/r")
        .header("if-none-match", "\"v1-handler\"")
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(header(&not_modified, "etag"), "W/\"v1-handler\"");

    let no_cache = server.get("/nc").send().await.unwrap();
    assert_eq!(header(&no_cache, "etag"), "\"nc-handler\"");
}

#[tokio::test]
async fn last_modified_is_present_on_miss_and_hit() {
    let (cache, clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let stored_at = strata::conditional::http_date(strata::Clock::now(&clock));
    let miss = server.get("/r").send().await.unwrap();
    assert_eq!(header(&miss, "last-modified"), stored_at.to_str().unwrap());
    clock.advance(Duration::from_secs(5));
    let hit = server.get("/r").send().await.unwrap();
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert_eq!(
        header(&hit, "last-modified"),
        stored_at.to_str().unwrap(),
        "a hit keeps the stored Last-Modified"
    );
}

#[tokio::test]
async fn last_modified_set_by_the_handler_is_kept_and_validates() {
    let (cache, _clock) = mock_cache();
    const MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    let app = Router::new()
        .route(
            "/stored",
            get(|| async { ([("last-modified", MODIFIED)], "stored") })
                .layer(CachePolicy::public(MINUTE)),
        )
        .route(
            "/no-cache",
            get(|| async { ([("last-modified", MODIFIED)], "fresh") })
                .layer(CachePolicy::no_cache()),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    for path in ["/stored", "/stored", "/no-cache"] {
        let response = server.get(path).send().await.unwrap();
        assert_eq!(header(&response, "last-modified"), MODIFIED, "{path}");
        let since = |date: &'static str| server.get(path).header("if-modified-since", date).send();
        let not_modified = since(MODIFIED).await.unwrap();
        assert_eq!(not_modified.status(), 304, "{path}");
        let older = since("Tue, 20 Oct 2015 07:28:00 GMT").await.unwrap();
        assert_eq!(older.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn if_none_match_weak_list_and_star_get_304() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    // `*` matches any current representation, even on the first request.
    let star_on_miss = server
        .get("/r")
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(star_on_miss.status(), 304);
    assert_eq!(
        header(&star_on_miss, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    let etag = header(&star_on_miss, "etag");
    assert!(is_strong_hex_etag(&etag), "{etag}");
    assert_eq!(star_on_miss.bytes().await.unwrap().len(), 0);

    let weak = format!("W/{etag}");
    let list = format!("\"nope\", {weak}, \"other\"");
    for value in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        let response = server
            .get("/r")
            .header("if-none-match", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 304, "If-None-Match: {value}");
        assert_eq!(header(&response, "cache-status"), "strata; hit");
        assert_eq!(response.bytes().await.unwrap().len(), 0);
    }
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn if_none_match_not_matching_gets_200_with_body() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;
    server.get("/r").send().await.unwrap();

    for value in ["\"0123456789abcdef0123456789abcdef\"", "W/\"x\", \"y\"", ""] {
        let response = server
            .get("/r")
            .header("if-none-match", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "If-None-Match: {value}");
        assert_eq!(header(&response, "cache-status"), "strata; hit");
        assert_eq!(response.text().await.unwrap(), "call 1");
    }
}

#[tokio::test]
async fn if_modified_since_at_or_after_last_modified_gets_304_before_gets_200() {
    let (cache, clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let miss = server.get("/r").send().await.unwrap();
    let last_modified = miss.headers()["last-modified"].clone();
    let modified = strata::conditional::parse_http_date(&last_modified).unwrap();
    clock.advance(Duration::from_secs(10));

    let http_date = strata::conditional::http_date;
    let at = http_date(modified);
    let after = http_date(modified + Duration::from_secs(3600));
    for since in [&at, &after] {
        let response = server
            .get("/r")
            .header("if-modified-since", since)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 304, "If-Modified-Since: {since:?}");
        assert_eq!(response.bytes().await.unwrap().len(), 0);
    }

    let before = http_date(modified - Duration::from_secs(1));
    let response = server
        .get("/r")
        .header("if-modified-since", &before)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "call 1");

    let garbage = server
        .get("/r")
        .header("if-modified-since", "last tuesday")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 200, "an unparsable date is ignored");
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn if_none_match_takes_precedence_over_if_modified_since() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let miss = server.get("/r").send().await.unwrap();
    let etag = header(&miss, "etag");
    let last_modified = header(&miss, "last-modified");

    // IMS alone would say 304; a non-matching INM decides: 200.
    let response = server
        .get("/r")
        .header("if-none-match", "\"different\"")
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "call 1");

    // IMS alone would say 200; a matching INM decides: 304.
    let long_ago = "Thu, 01 Jan 1998 00:00:00 GMT";
    let response = server
        .get("/r")
        .header("if-none-match", &etag)
        .header("if-modified-since", long_ago)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
}

#[tokio::test]
async fn not_modified_carries_etag_cache_control_vary_and_no_body() {
    let (cache, _clock) = mock_cache();
    let app = Router::new()
        .route(
            "/r",
            get(|| async { ([("content-type", "text/plain"), ("x-extra", "1")], "hello") })
                .layer(CachePolicy::public(MINUTE).vary(ACCEPT_LANGUAGE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let miss = server
        .get("/r")
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let etag = header(&miss, "etag");

    let response = server
        .get("/r")
        .header("accept-language", "en")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "cache-control"), "public, max-age=60");
    assert_eq!(header(&response, "vary"), "accept-language");
    assert_eq!(header(&response, "cache-status"), "strata; hit");
    assert_eq!(header(&response, "x-extra"), "", "only the RFC's list");
    assert_eq!(response.bytes().await.unwrap().len(), 0);
}

#[tokio::test]
async fn age_grows_with_the_mock_clock() {
    let (cache, clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let miss = server.get("/r").send().await.unwrap();
    assert_eq!(header(&miss, "age"), "0");
    let hit = server.get("/r").send().await.unwrap();
    assert_eq!(header(&hit, "age"), "0");

    clock.advance(Duration::from_secs(7));
    let hit = server.get("/r").send().await.unwrap();
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert_eq!(header(&hit, "age"), "7");

    clock.advance(Duration::from_millis(45_500));
    let hit = server.get("/r").send().await.unwrap();
    assert_eq!(header(&hit, "age"), "52", "whole seconds");
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn entry_expires_after_its_ttl_on_the_mock_clock() {
    let (cache, clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(Duration::from_secs(10))).await;

    let (_, body) = get_text(&server, "/r").await;
    assert_eq!(body, "call 1");
    clock.advance(Duration::from_secs(9));
    let (hit, body) = get_text(&server, "/r").await;
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert_eq!(body, "call 1");

    clock.advance(Duration::from_secs(1));
    let (expired, body) = get_text(&server, "/r").await;
    assert_eq!(body, "call 2", "past the TTL the handler is called again");
    assert_eq!(
        header(&expired, "cache-status"),
        "strata; fwd=stale; stored"
    );
    assert_eq!(header(&expired, "age"), "0");

    let (hit, body) = get_text(&server, "/r").await;
    assert_eq!(header(&hit, "cache-status"), "strata; hit");
    assert_eq!(body, "call 2");
    assert_eq!(calls.count(), 2);
}

#[tokio::test]
async fn cache_status_reports_miss_hit_and_bypass() {
    let (cache, _clock) = mock_cache();
    let app = Router::new()
        .route(
            "/public",
            get(|| async { "p" }).layer(CachePolicy::public(MINUTE)),
        )
        .route(
            "/no-cache",
            get(|| async { "c" }).layer(CachePolicy::no_cache()),
        )
        .route(
            "/no-store",
            get(|| async { "s" }).layer(CachePolicy::no_store()),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let status = |response: &reqwest::Response| header(response, "cache-status");
    let miss = server.get("/public").send().await.unwrap();
    assert_eq!(status(&miss), "strata; fwd=uri-miss; stored");
    let hit = server.get("/public").send().await.unwrap();
    assert_eq!(status(&hit), "strata; hit");

    // The first request learns the route is not storable, the second
    // passes straight by: both report a bypass.
    for _ in 0..2 {
        let no_cache = server.get("/no-cache").send().await.unwrap();
        assert_eq!(status(&no_cache), "strata; fwd=bypass; detail=no-cache");
        let no_store = server.get("/no-store").send().await.unwrap();
        assert_eq!(status(&no_store), "strata; fwd=bypass; detail=no-store");
    }
}

#[tokio::test]
async fn head_is_served_from_the_get_entry_without_a_body() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let get = server.get("/r").send().await.unwrap();
    let length = header(&get, "content-length");
    let etag = header(&get, "etag");
    assert_eq!(length, "6");
    assert_eq!(get.text().await.unwrap(), "call 1");

    let head = server.client.head(server.url("/r")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "cache-status"), "strata; hit");
    assert_eq!(header(&head, "content-length"), length);
    assert_eq!(header(&head, "etag"), etag);
    assert_eq!(head.bytes().await.unwrap().len(), 0);
    assert_eq!(calls.count(), 1);

    let head_304 = server
        .client
        .head(server.url("/r"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(head_304.status(), 304);
}

#[tokio::test]
async fn head_miss_stores_an_entry_that_a_later_get_hits() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let server = serve_one(&cache, &calls, CachePolicy::public(MINUTE)).await;

    let head = server.client.head(server.url("/r")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(header(&head, "content-length"), "6");
    let etag = header(&head, "etag");
    assert!(is_strong_hex_etag(&etag), "{etag}");
    assert_eq!(head.bytes().await.unwrap().len(), 0);
    assert_eq!(calls.count(), 1);

    let get = server.get("/r").send().await.unwrap();
    assert_eq!(header(&get, "cache-status"), "strata; hit");
    assert_eq!(header(&get, "etag"), etag);
    assert_eq!(get.text().await.unwrap(), "call 1");
    assert_eq!(calls.count(), 1);
}

// ----------------------------------------------------------------------------
// 4. Query normalisation and Vary
// ----------------------------------------------------------------------------

#[tokio::test]
async fn query_parameter_order_does_not_split_entries() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let app = Router::new()
        .route("/x", counting(&calls).layer(CachePolicy::public(MINUTE)))
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let (first, body) = get_text(&server, "/x?b=1&a=2").await;
    assert_eq!(
        header(&first, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(body, "call 1");
    let (second, body) = get_text(&server, "/x?a=2&b=1").await;
    assert_eq!(header(&second, "cache-status"), "strata; hit");
    assert_eq!(body, "call 1");

    let (different, body) = get_text(&server, "/x?a=3&b=1").await;
    assert_eq!(
        header(&different, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(body, "call 2", "another value is another entry");
}

#[tokio::test]
async fn vary_accept_language_keeps_one_entry_per_language() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/greeting",
            get(move |headers: HeaderMap| async move {
                counted.hit();
                let lang = headers
                    .get(ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                format!("hello in {lang}")
            })
            .layer(CachePolicy::public(MINUTE).vary(ACCEPT_LANGUAGE)),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let in_lang = |lang: &'static str| {
        server
            .get("/greeting")
            .header("accept-language", lang)
            .send()
    };

    let en = in_lang("en").await.unwrap();
    assert_eq!(header(&en, "vary"), "accept-language");
    assert_eq!(header(&en, "cache-status"), "strata; fwd=uri-miss; stored");
    assert_eq!(en.text().await.unwrap(), "hello in en");

    let de = in_lang("de").await.unwrap();
    assert_eq!(header(&de, "vary"), "accept-language");
    assert_eq!(header(&de, "cache-status"), "strata; fwd=vary-miss; stored");
    assert_eq!(de.text().await.unwrap(), "hello in de");
    assert_eq!(calls.count(), 2);

    for (lang, expected) in [("en", "hello in en"), ("de", "hello in de")] {
        let response = in_lang(lang).await.unwrap();
        assert_eq!(header(&response, "cache-status"), "strata; hit", "{lang}");
        assert_eq!(header(&response, "vary"), "accept-language");
        assert_eq!(response.text().await.unwrap(), expected);
    }
    assert_eq!(calls.count(), 2, "each language was served from its entry");
}

// ----------------------------------------------------------------------------
// 6. The error type
// ----------------------------------------------------------------------------

/// An inner service's own error type, which the layer must hand back as is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InnerError {
    code: u16,
    reason: String,
}

impl std::fmt::Display for InnerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inner error {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for InnerError {}

#[tokio::test]
async fn layer_keeps_the_custom_error_type_of_a_plain_tower_service() {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use tower::{Service, ServiceBuilder, ServiceExt};

    let calls = Calls::default();
    let counted = calls.clone();
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let counted = counted.clone();
        async move {
            let n = counted.hit();
            if request.uri().path().starts_with("/fail") {
                return Err(InnerError {
                    code: 503,
                    reason: request.uri().to_string(),
                });
            }
            let mut response = Response::new(Full::new(Bytes::from(format!("call {n}"))));
            response
                .extensions_mut()
                .insert(CachePolicy::public(MINUTE));
            Ok::<_, InnerError>(response)
        }
    });
    let cache = Cache::builder().clock(MockClock::new()).build();
    let service = ServiceBuilder::new().layer(cache.layer()).service(inner);

    // The error type is the inner service's, at the type level.
    fn error_type_is<S: Service<Request<Full<Bytes>>, Error = InnerError>>(_: &S) {}
    error_type_is(&service);

    let request = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    for method in ["GET", "HEAD", "POST", "DELETE"] {
        let error = service
            .clone()
            .oneshot(request(method, "/fail?x=1"))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            InnerError {
                code: 503,
                reason: "/fail?x=1".to_owned(),
            },
            "{method}"
        );
    }

    // The same stack still caches successful responses.
    let first = service
        .clone()
        .oneshot(request("GET", "/ok"))
        .await
        .unwrap();
    assert_eq!(first.headers()["cache-control"], "public, max-age=60");
    let first_body = first.into_body().collect().await.unwrap().to_bytes();
    let second = service
        .clone()
        .oneshot(request("GET", "/ok"))
        .await
        .unwrap();
    assert_eq!(second.headers()["cache-status"], "strata; hit");
    let second_body = second.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(first_body, second_body);
    assert_eq!(calls.count(), 5, "four failures and one fill");

    // An error on a URL that failed before is still not cached.
    let again = service
        .clone()
        .oneshot(request("GET", "/fail?x=1"))
        .await
        .unwrap_err();
    assert_eq!(again.code, 503);
    assert_eq!(calls.count(), 6);
}

#[tokio::test]
async fn an_anonymous_answer_on_a_private_route_is_no_store_for_browsers() {
    let (cache, _clock) = mock_cache();
    let app = Router::new()
        .route(
            "/me",
            get(|| async { "logged out view" })
                .layer(CachePolicy::private(Duration::from_secs(300))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    let anonymous = server.get("/me").send().await.unwrap();
    assert_eq!(header(&anonymous, "cache-control"), "no-store");
    let user = server.get_as("/me", "alice").send().await.unwrap();
    assert_eq!(header(&user, "cache-control"), "private, max-age=300");
}

#[tokio::test]
async fn a_fill_does_not_pass_the_clients_validators_to_the_service() {
    let (cache, _clock) = mock_cache();
    let calls = Calls::default();
    let counted = calls.clone();
    // A service that answers validators itself, as a file server does.
    let app = Router::new()
        .route(
            "/file",
            get(move |headers: HeaderMap| async move {
                counted.hit();
                if headers.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                    return (http::StatusCode::NOT_MODIFIED, [(ETAG, "\"v1\"")], "")
                        .into_response();
                }
                ([(ETAG, "\"v1\"")], "file body").into_response()
            })
            .layer(CachePolicy::public(Duration::from_secs(60))),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    let first = server
        .get("/file")
        .header("if-none-match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 304, "the cache answers the validator");
    assert_eq!(
        header(&first, "cache-status"),
        "strata; fwd=uri-miss; stored"
    );
    let (second, body) = get_text(&server, "/file").await;
    assert_eq!(header(&second, "cache-status"), "strata; hit");
    assert_eq!(body, "file body");
    assert_eq!(calls.count(), 1);
}
