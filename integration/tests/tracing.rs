//! Tracing: one span per cache decision with a key digest, the outcome and
//! the layer, and nothing that identifies a user or carries a body.

mod common;

use std::time::Duration;

use axum::{Router, routing::get};
use common::{Captured, TestServer, user_from_header};
use strata::{Cache, CachePolicy};
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::test]
async fn each_decision_is_traced_with_a_key_digest_and_no_user_or_body() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded: the server runs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let cache = Cache::builder().user(user_from_header).build();
    let app = Router::new()
        .route(
            "/api/items/{id}/",
            get(|| async { "BODY-SECRET" }).layer(CachePolicy::private(Duration::from_secs(60))),
        )
        .route("/plain", get(|| async { "plain" }))
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    for _ in 0..2 {
        let response = server
            .get_as("/api/items/secret-42/", "secret-user-42")
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "BODY-SECRET");
    }
    server.get("/api/items/secret-42/").send().await.unwrap();
    server.get("/plain").send().await.unwrap();
    server.get("/plain").send().await.unwrap();

    let log = captured.text();
    let decisions: Vec<&str> = log.lines().filter(|line| line.contains("strata")).collect();
    let has = |needle: &str| decisions.iter().any(|line| line.contains(needle));
    assert!(has("outcome=\"miss\"") || has("outcome=miss"), "{log}");
    assert!(
        has("hit") && has("layer=\"memory\"") || has("layer=memory"),
        "{log}"
    );
    assert!(has("bypass"), "anonymous on a private URL: {log}");
    assert!(has("pass"), "a route without policy: {log}");
    // Keys appear only as 16 hex digits.
    let digest_ok = decisions.iter().all(|line| {
        line.split("key=").skip(1).all(|rest| {
            let digest: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            digest.len() == 16
        })
    });
    assert!(digest_ok && has("key="), "{log}");
    for secret in ["secret-user-42", "BODY-SECRET", "secret-42"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}

/// With a plain `fmt` subscriber and `EnvFilter` at `strata=debug` (no span
/// events), every slow-path decision and every invalidation is an event,
/// with the route axum matched (its template, not the URL), and none
/// carries a URL, a user, a tag or a body.
#[tokio::test]
async fn a_plain_fmt_subscriber_at_strata_debug_shows_decisions_and_invalidations() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter(tracing_subscriber::EnvFilter::new("strata=debug"))
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let cache = Cache::builder().user(user_from_header).build();
    let app = Router::new()
        .route(
            "/api/items/{id}/",
            get(|| async { "BODY-SECRET" })
                .layer(CachePolicy::private(Duration::from_secs(60)).tag("secret-tag")),
        )
        .route("/plain", get(|| async { "plain" }))
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    server
        .get_as("/api/items/secret-42/", "secret-user-42")
        .send()
        .await
        .unwrap();
    // Anonymous on the per-user URL: a bypass, and the hint about it.
    server.get("/api/items/secret-42/").send().await.unwrap();
    server.get("/plain").send().await.unwrap();
    let dropped = cache.handle().invalidate_tag("secret-tag").await.unwrap();
    assert_eq!(dropped, 1);

    let log = captured.text();
    let events: Vec<&str> = log.lines().collect();
    let has = |needles: &[&str]| {
        events
            .iter()
            .any(|line| needles.iter().all(|needle| line.contains(needle)))
    };
    assert!(
        has(&[
            "strata decision",
            "fwd=uri-miss; stored",
            "key=",
            "route=\"/api/items/{id}/\"",
            "outcome=\"miss\""
        ]),
        "a miss:\n{log}"
    );
    assert!(
        has(&[
            "strata decision",
            "fwd=bypass",
            "route=\"/api/items/{id}/\""
        ]),
        "a bypass:\n{log}"
    );
    assert!(
        has(&[
            "private route answered anonymous requests",
            "anonymous_requests=1",
            "user resolver ran before authentication"
        ]),
        "the anonymous-private hint:\n{log}"
    );
    assert!(
        has(&[
            "strata decision",
            "cache_status=\"none (no policy)\"",
            "route=\"/plain\""
        ]),
        "a route without policy:\n{log}"
    );
    assert!(
        has(&["strata invalidation", "kind=\"tag\"", "entries=1"]),
        "an invalidation:\n{log}"
    );
    for secret in ["secret-user-42", "BODY-SECRET", "secret-42", "secret-tag"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}
