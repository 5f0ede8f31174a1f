//! Tracing: one span per decision on the slow path, keys shown as digests.

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
