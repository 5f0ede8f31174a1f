//! Whether a shared cache may store a response (RFC 9111 §3, §3.1, §3.5).

use std::fmt;

use http::header::{AUTHORIZATION, EXPIRES};
use http::{HeaderMap, Method, StatusCode};

use super::directives::{FieldScope, RequestDirectives, ResponseDirectives};
use super::vary::Vary;
use crate::fields::remove_hop_by_hop;

/// The status codes defined as heuristically cacheable (RFC 9110 §15.1):
/// their responses may be stored without explicit freshness information,
/// and given a heuristic lifetime (RFC 9111 §4.2.2). 206 is one of them in
/// the RFC, but strata does not store partial content (see
/// [`NotStorable::PartialContent`]).
pub(crate) const HEURISTICALLY_CACHEABLE: [StatusCode; 11] = [
    StatusCode::OK,
    StatusCode::NON_AUTHORITATIVE_INFORMATION,
    StatusCode::NO_CONTENT,
    StatusCode::MULTIPLE_CHOICES,
    StatusCode::MOVED_PERMANENTLY,
    StatusCode::PERMANENT_REDIRECT,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::GONE,
    StatusCode::URI_TOO_LONG,
    StatusCode::NOT_IMPLEMENTED,
];

/// Whether `status` is heuristically cacheable (RFC 9110 §15.1), among the
/// statuses strata stores: [`HEURISTICALLY_CACHEABLE`].
pub(crate) fn is_heuristically_cacheable(status: StatusCode) -> bool {
    HEURISTICALLY_CACHEABLE.contains(&status)
}

/// Whether strata understands the caching requirements of `status` (RFC
/// 9111 §3, §5.2.2.3): the final status codes RFC 9110 §15 defines, less
/// 206 (ranges are not stored) and 304 (which freshens a stored response,
/// §4.3.4, and is never stored itself). Under `must-understand` only these
/// are stored; without it, any other final status may be, with explicit
/// freshness (RFC 9111 §3).
pub(crate) fn is_understood_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=303 | 305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// Why a response is not stored; [`detail`](Self::detail) is the token for
/// `Cache-Status: ...; detail=` (RFC 9211 §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum NotStorable {
    /// The request method is not GET or HEAD, the only ones whose responses
    /// strata stores (RFC 9111 §3: "the request method is understood by the
    /// cache").
    Method,
    /// The status is not final (1xx), or is 304, which freshens a stored
    /// response and is never stored itself (RFC 9111 §3, §4.3.4).
    Status,
    /// 206 Partial Content: storing it needs range bookkeeping (RFC 9111
    /// §3.3, §3.4) that strata does not have, and serving a stored part as
    /// a whole would be wrong.
    PartialContent,
    /// `must-understand` with a status strata does not understand (§5.2.2.3).
    MustUnderstand,
    /// `no-store` in the request (§5.2.1.5).
    RequestNoStore,
    /// `no-store` in the response (§5.2.2.5), not lifted by `must-understand`.
    NoStore,
    /// Unqualified `private` (§5.2.2.7): never in a shared cache.
    Private,
    /// The request had `Authorization` and the response neither
    /// `must-revalidate`, `public` nor `s-maxage` (§3.5).
    Authorization,
    /// No `public`, `Expires`, `max-age` or `s-maxage`, and a status that is
    /// not heuristically cacheable (§3); or a status strata does not
    /// understand without `Expires`, `max-age` or `s-maxage` (`public`
    /// alone would leave it a heuristic lifetime, which only the
    /// heuristically cacheable statuses may have).
    NoFreshness,
    /// `Vary: *`: such a response never matches a later request (§4.1), so
    /// storing it would only take room. A choice of strata's; the RFC lets
    /// a cache store it.
    VaryAny,
}

impl NotStorable {
    /// A short token for `Cache-Status` `detail=` and logs.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::PartialContent => "partial-content",
            Self::MustUnderstand => "must-understand",
            Self::RequestNoStore => "request-no-store",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::NoFreshness => "no-freshness",
            Self::VaryAny => "vary-star",
        }
    }
}

impl fmt::Display for NotStorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

/// Whether a shared cache may store this response to this request (RFC
/// 9111 §3, with the Authorization rule of §3.5).
///
/// `request` and `response` are the parsed directives; `response` should
/// come from [`response_directives`](super::response_directives), so that a
/// targeted field counts and `Expires` is ignored under one (RFC 9213 §2.1).
/// `no-cache` does not prevent storing (the response is then revalidated
/// before every reuse), and qualified `private` only keeps its fields out
/// (see [`strip_unstorable_fields`]).
pub(crate) fn storable(
    method: &Method,
    request_headers: &HeaderMap,
    request: &RequestDirectives,
    status: StatusCode,
    response_headers: &HeaderMap,
    response: &ResponseDirectives,
) -> Result<(), NotStorable> {
    if method != Method::GET && method != Method::HEAD {
        return Err(NotStorable::Method);
    }
    // §3: only final responses, and a 304 only freshens (§4.3.4).
    if status.is_informational() || status == StatusCode::NOT_MODIFIED {
        return Err(NotStorable::Status);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(NotStorable::PartialContent);
    }
    // §3: the cache must understand the status only for 206, 304 and
    // under `must-understand`; any other final status may be stored when
    // its freshness is explicit (below) and nothing forbids it.
    let understood = is_understood_status(status);
    if response.must_understand && !understood {
        return Err(NotStorable::MustUnderstand);
    }
    if request.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    // §5.2.2.3: a cache that understands the status ignores `no-store`
    // when `must-understand` is present.
    if response.no_store && !response.must_understand {
        return Err(NotStorable::NoStore);
    }
    if response.private == Some(FieldScope::All) {
        return Err(NotStorable::Private);
    }
    if request_headers.contains_key(AUTHORIZATION)
        && !(response.must_revalidate || response.public || response.s_maxage.is_some())
    {
        return Err(NotStorable::Authorization);
    }
    if Vary::from_headers(response_headers).is_any() {
        return Err(NotStorable::VaryAny);
    }
    let has_expires = !response.source.is_targeted() && response_headers.contains_key(EXPIRES);
    let lifetime = has_expires || response.max_age.is_some() || response.s_maxage.is_some();
    let explicit = response.public || lifetime;
    if !explicit && !is_heuristically_cacheable(status) || !understood && !lifetime {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// Removes from a response about to be stored what a shared cache must
/// not store (RFC 9111 §3.1, §5.2.2.7): the hop-by-hop fields, the fields
/// named in `Connection`, and the fields a qualified `private` lists.
///
/// The fields of a qualified `no-cache` are kept: strata treats that form
/// as unqualified (always revalidate), which RFC 9111 §5.2.2.4 notes is
/// what caches commonly do, so they are never sent unvalidated.
pub(crate) fn strip_unstorable_fields(headers: &mut HeaderMap, directives: &ResponseDirectives) {
    remove_hop_by_hop(headers);
    if let Some(FieldScope::Only(names)) = &directives.private {
        for name in names {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests;
