//! The HTTP fields strata reads or writes beyond the standard ones, and
//! the hop-by-hop fields it never stores (and a proxy never forwards).
//!
//! ```
//! use http::{HeaderMap, HeaderValue};
//! use strata::fields;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("connection", HeaderValue::from_static("x-trace"));
//! headers.insert("x-trace", HeaderValue::from_static("1"));
//! headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
//! headers.insert("etag", HeaderValue::from_static("\"a\""));
//! fields::remove_hop_by_hop(&mut headers);
//! assert_eq!(headers.len(), 1);
//! ```

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName};

pub use crate::status::CACHE_STATUS;

/// `Strata-Cache-Control`: directives for strata alone (RFC 9213), which it
/// obeys before `Cache-Control` and leaves out of every response it sends.
pub const STRATA_CACHE_CONTROL: HeaderName = HeaderName::from_static("strata-cache-control");

/// `CDN-Cache-Control` (RFC 9213 §3): directives for CDN caches, which a
/// policy can write ([`CachePolicy::cdn_max_age`](crate::CachePolicy::cdn_max_age)).
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// `Surrogate-Key`: purge tags separated by spaces (Fastly's field), read
/// under [`CachePolicy::origin`](crate::CachePolicy::origin) and written
/// with [`CacheBuilder::emit_surrogate_keys`](crate::CacheBuilder::emit_surrogate_keys).
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// `Cache-Tag`: purge tags separated by commas (Cloudflare's field), read
/// under [`CachePolicy::origin`](crate::CachePolicy::origin).
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// The hop-by-hop fields: those RFC 9110 §7.6.1 names (`Connection`,
/// `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`),
/// `Trailer` (a stored body has no trailers), and the proxy-addressed
/// authentication fields. A cache does not store them (RFC 9111 §3.1), a
/// 304 does not update them (§3.2), a proxy does not forward them.
/// `Connection` may name more: see [`is_hop_by_hop`].
pub static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
];

/// Whether `name` is hop-by-hop in a message with these headers: one of
/// [`HOP_BY_HOP`] or a field its `Connection` names.
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    HOP_BY_HOP.contains(name)
        || headers.get_all(CONNECTION).iter().any(|line| {
            line.as_bytes().split(|&b| b == b',').any(|option| {
                option
                    .trim_ascii()
                    .eq_ignore_ascii_case(name.as_str().as_bytes())
            })
        })
}

/// Removes the hop-by-hop fields: every field `Connection` names, then
/// [`HOP_BY_HOP`] (`Connection` itself included).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .filter_map(|option| HeaderName::from_bytes(option.trim_ascii()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}
