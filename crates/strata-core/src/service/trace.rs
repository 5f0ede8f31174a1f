//! Tracing: one span per decision on the slow path, keys shown as digests,
//! and one `debug` event when it is decided (the response's
//! `Cache-Status`), so a plain `fmt` subscriber at `strata=debug` shows
//! every miss, pass and bypass; hits on the fast path are `trace`.

use std::fmt;

use sha2::Digest as _;

/// A key as logs show it: the first 64 bits of its SHA-256, so logs can
/// follow one key without carrying URLs, query strings or user ids.
/// Computed only when a subscriber wants the event.
pub(crate) struct KeyDigest<'a>(pub(crate) &'a str);

impl fmt::Display for KeyDigest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = sha2::Sha256::digest(self.0.as_bytes());
        f.write_str(&hex::encode(&digest[..8]))
    }
}

/// The span of one cache decision on the slow path; `outcome` and `layer`
/// are recorded once known, `route` when axum matched one.
pub(crate) fn decision_span(primary: &str, parts: &http::request::Parts) -> tracing::Span {
    let span = tracing::debug_span!(
        target: "strata",
        "strata.request",
        key = %KeyDigest(primary),
        route = tracing::field::Empty,
        outcome = tracing::field::Empty,
        layer = tracing::field::Empty,
    );
    if !span.is_disabled()
        && let Some(route) = matched_route(parts)
    {
        span.record("route", route);
    }
    span
}

/// The route template axum matched (`MatchedPath`, such as
/// `/api/materials/{id}/`), when the layer runs inside a `Router`: it names
/// the route without the URL's own values.
fn matched_route(parts: &http::request::Parts) -> Option<&str> {
    #[cfg(feature = "axum")]
    {
        parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str)
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = parts;
        None
    }
}

/// Records the decision on the current span.
pub(crate) fn record_decision(outcome: &'static str, layer: &'static str) {
    let span = tracing::Span::current();
    span.record("outcome", outcome);
    span.record("layer", layer);
}

/// The `debug` event of a decided request on the slow path: its status
/// and `Cache-Status` (outcome, forward reason, detail; never a URL, a
/// user or a body), inside the request's span (which carries the key
/// digest).
pub(crate) fn log_decision<B>(response: &http::Response<B>) {
    if !tracing::enabled!(target: "strata", tracing::Level::DEBUG) {
        return;
    }
    let cache_status = response
        .headers()
        .get_all(crate::status::CACHE_STATUS)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        // No `Cache-Status`: the route has no policy (and no default).
        .unwrap_or("none (no policy)");
    tracing::debug!(
        target: "strata",
        status = response.status().as_u16(),
        cache_status,
        "strata decision"
    );
}
