//! Which URI the cache keys a request by: the one home of that rule, for
//! the key a lookup reads, the name a fill is fenced by and the target a
//! write invalidates.
//!
//! Inside axum's `Router::nest("/api", ..)` the nested router sees the
//! path with `/api` stripped, while the client, `invalidate_url` and every
//! other instance name the full path. axum keeps the URI the outermost
//! router was given in the `OriginalUri` extension (its `original-uri`
//! feature, on by default); the cache uses that URI when it is there, so a
//! layer inside a nested router keys and invalidates by the full path.

use http::{Extensions, Uri};

/// The URI the cache names this request by: axum's `OriginalUri` when
/// present (feature `axum`), else the request's own.
#[inline]
pub(crate) fn cache_uri<'a>(uri: &'a Uri, extensions: &'a Extensions) -> &'a Uri {
    #[cfg(feature = "axum")]
    if let Some(original) = extensions.get::<axum::extract::OriginalUri>() {
        return &original.0;
    }
    let _ = extensions;
    uri
}
