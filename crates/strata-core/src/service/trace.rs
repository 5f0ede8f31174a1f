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
/// are recorded once known.
pub(crate) fn decision_span(primary: &str) -> tracing::Span {
    tracing::debug_span!(
        target: "strata",
        "strata.request",
        key = %KeyDigest(primary),
        outcome = tracing::field::Empty,
        layer = tracing::field::Empty,
    )
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
