//! `Cache-Status` (RFC 9211): how strata handled a request, as types that
//! are mapped to the field's text in one place, and the `Age` a response
//! carries.
//!
//! A hit is the common case and costs nothing here: the stored headers
//! already hold `Cache-Status: strata; hit` and an `Age` slot, and a hit
//! only puts a value from a table built once into that slot.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::admit::NotStored;

/// The `Cache-Status` response header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// What a stored response's `Cache-Status` says until a request is
/// answered otherwise.
pub(crate) static HIT: HeaderValue = HeaderValue::from_static("strata; hit");

/// Why a request went to the inner service (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fwd {
    /// Not looked up: an anonymous request for a per-user URL, or a route
    /// that does not store.
    Bypass,
    /// The URL is known not to be storable (a pass marker), so it was not
    /// looked up as a miss would be.
    Miss,
    /// Nothing stored under the URL.
    UriMiss,
    /// The URL is stored, not this request's variant.
    VaryMiss,
    /// The stored response is stale.
    Stale,
    /// The client's request directives sent it on (`no-cache`, `max-age`,
    /// `min-fresh`), although a stored response would have served.
    Request,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Miss => "miss",
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Stale => "stale",
            Self::Request => "request",
        }
    }
}

/// How a request was answered: everything `Cache-Status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// A fresh stored response.
    Hit,
    /// Forwarded, and the answer stored.
    Stored(Fwd),
    /// Forwarded and meant to be stored, but the write did not happen (an
    /// invalidation named it meanwhile, or the store failed).
    Fetched(Fwd),
    /// Answered by another request's fill (single flight).
    Collapsed(Fwd),
    /// Stale, while one background request refreshes it.
    StaleWhileRevalidate,
    /// Stale, as the client accepts (`max-stale`).
    Accepted,
    /// Sent on with the stored copy's validators (because it was stale, or
    /// the client asked), confirmed by a 304, and stored again or not.
    Revalidated { fwd: Fwd, stored: bool },
    /// Stale, instead of the error the service answered (its status, or
    /// none when the service failed).
    StaleIfError(Option<StatusCode>),
    /// Stale, instead of what the service answered when the origin could
    /// not be reached (RFC 9111 §4.2.4).
    StaleIfDisconnected,
    /// 504 from the cache: the stored response must be validated first
    /// and the origin could not be reached (§5.2.2.2).
    Disconnected,
    /// Forwarded; the answer is not stored, for this reason.
    NotStored(Fwd, NotStored),
    /// `only-if-cached`, and nothing stored fits: 504.
    OnlyIfCached,
    /// A GET or HEAD with a request body: passed to the service as it is,
    /// never answered from or stored in an entry.
    RequestBody,
}

impl Served {
    /// The `Cache-Status` member of strata for this answer.
    pub(crate) fn header(self) -> HeaderValue {
        let text = match self {
            Self::Hit => return HIT.clone(),
            Self::StaleWhileRevalidate => "strata; hit; detail=stale-while-revalidate",
            Self::Accepted => "strata; hit; detail=max-stale",
            Self::OnlyIfCached => "strata; fwd=miss; detail=only-if-cached",
            Self::RequestBody => "strata; fwd=bypass; detail=request-body",
            Self::Stored(Fwd::UriMiss) => "strata; fwd=uri-miss; stored",
            Self::Stored(Fwd::VaryMiss) => "strata; fwd=vary-miss; stored",
            Self::Stored(Fwd::Stale) => "strata; fwd=stale; stored",
            // The rest is off the common paths: built when needed.
            Self::Stored(fwd) => return text(format_args!("strata; fwd={}; stored", fwd.as_str())),
            Self::Fetched(fwd) => return text(format_args!("strata; fwd={}", fwd.as_str())),
            Self::Collapsed(fwd) => {
                return text(format_args!("strata; fwd={}; collapsed", fwd.as_str()));
            }
            Self::Revalidated { fwd, stored } => {
                let stored = if stored { "; stored" } else { "" };
                return text(format_args!(
                    "strata; fwd={}; fwd-status=304{stored}",
                    fwd.as_str()
                ));
            }
            // Forwarded, so not a `hit` (RFC 9211 §2.1), though the stored
            // response answers.
            Self::StaleIfError(None) => "strata; fwd=stale; detail=stale-if-error",
            Self::StaleIfDisconnected => "strata; fwd=stale; detail=stale-if-disconnected",
            Self::Disconnected => "strata; fwd=stale; detail=disconnected",
            Self::StaleIfError(Some(status)) => {
                return text(format_args!(
                    "strata; fwd=stale; fwd-status={}; detail=stale-if-error",
                    status.as_u16()
                ));
            }
            Self::NotStored(fwd, why) => {
                return text(format_args!(
                    "strata; fwd={}; detail={}",
                    fwd.as_str(),
                    why.detail()
                ));
            }
        };
        HeaderValue::from_static(text)
    }
}

/// A header value from ASCII text made of tokens, digits and `;= `.
fn text(args: std::fmt::Arguments<'_>) -> HeaderValue {
    let text = std::fmt::format(args);
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("strata"))
}

/// Ages below this many seconds come from a table built once, so a hit
/// does not allocate to say how old it is.
const AGE_TABLE_LEN: usize = 3601;

/// The `Age` value for an age of `secs` seconds.
pub(crate) fn age_value(secs: u64) -> HeaderValue {
    static TABLE: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
        let mut digits = String::new();
        let mut ends = Vec::with_capacity(AGE_TABLE_LEN);
        for age in 0..AGE_TABLE_LEN {
            digits.push_str(&age.to_string());
            ends.push(digits.len());
        }
        let digits: &'static str = Box::leak(digits.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let value = HeaderValue::from_static(&digits[start..end]);
                start = end;
                value
            })
            .collect()
    });
    match usize::try_from(secs).ok().and_then(|i| TABLE.get(i)) {
        Some(value) => value.clone(),
        None => HeaderValue::from(secs),
    }
}

/// Puts `status` in place of strata's own `Cache-Status` member in a
/// stored copy's headers: the last line, after those of the caches behind
/// strata, which stay (RFC 9211 §2).
pub(crate) fn replace_own(headers: &mut HeaderMap, status: HeaderValue) {
    let mut lines = headers.get_all(CACHE_STATUS).iter();
    if lines.next().is_none() || lines.next().is_none() {
        headers.insert(CACHE_STATUS, status);
        return;
    }
    let mut behind: Vec<HeaderValue> = headers.get_all(CACHE_STATUS).iter().cloned().collect();
    behind.pop();
    headers.remove(CACHE_STATUS);
    for line in behind {
        headers.append(CACHE_STATUS, line);
    }
    headers.append(CACHE_STATUS, status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_has_its_text() {
        let cases = [
            (Served::Hit, "strata; hit"),
            (Served::Stored(Fwd::UriMiss), "strata; fwd=uri-miss; stored"),
            (Served::Stored(Fwd::Miss), "strata; fwd=miss; stored"),
            (Served::Fetched(Fwd::VaryMiss), "strata; fwd=vary-miss"),
            (
                Served::Collapsed(Fwd::Request),
                "strata; fwd=request; collapsed",
            ),
            (
                Served::Revalidated {
                    fwd: Fwd::Stale,
                    stored: true,
                },
                "strata; fwd=stale; fwd-status=304; stored",
            ),
            (
                Served::Revalidated {
                    fwd: Fwd::Request,
                    stored: false,
                },
                "strata; fwd=request; fwd-status=304",
            ),
            (
                Served::StaleIfError(Some(StatusCode::BAD_GATEWAY)),
                "strata; fwd=stale; fwd-status=502; detail=stale-if-error",
            ),
            (
                Served::NotStored(Fwd::Bypass, NotStored::Anonymous),
                "strata; fwd=bypass; detail=anonymous",
            ),
            (
                Served::OnlyIfCached,
                "strata; fwd=miss; detail=only-if-cached",
            ),
        ];
        for (served, text) in cases {
            assert_eq!(served.header(), text, "{served:?}");
        }
    }

    #[test]
    fn ages_read_from_the_table_and_beyond_it() {
        assert_eq!(age_value(0), "0");
        assert_eq!(age_value(3600), "3600");
        assert_eq!(age_value(3601), "3601");
        assert_eq!(age_value(u64::MAX), u64::MAX.to_string().as_str());
    }
}
