//! [`Disconnected`]: the mark of a response that stands for an origin the
//! service could not reach.

/// A response extension saying that the origin could not be reached: the
/// service behind the cache generated this response itself (a proxy's
/// `502` or `504`) because the connection was refused, failed or timed out
/// before the origin's response, or the origin dropped the connection
/// before a complete response.
///
/// RFC 9111 §4.2.4 lets a cache that is disconnected from the origin answer
/// with a stale response, unless the stored response forbids it
/// (`must-revalidate`, `proxy-revalidate`, `s-maxage`, `no-cache`), in
/// which case the cache answers `504 Gateway Timeout` itself (§5.2.2.2).
/// strata does both for a marked response, within
/// [`CacheBuilder::stale_if_disconnected`](crate::CacheBuilder::stale_if_disconnected).
/// A service error (`Err`) counts as disconnected too; an origin's own
/// `502` does not (that is `stale-if-error`'s case).
///
/// ```
/// use http::{Response, StatusCode};
/// use strata::Disconnected;
///
/// let mut response = Response::new("502 Bad Gateway: upstream unreachable");
/// *response.status_mut() = StatusCode::BAD_GATEWAY;
/// response.extensions_mut().insert(Disconnected);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disconnected;
