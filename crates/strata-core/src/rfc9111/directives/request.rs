//! The directives of a request (RFC 9111 §5.2.1, RFC 5861 §4), with the `Pragma: no-cache` fallback (§5.4).

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, HeaderValue};

use super::{Argument, Lexer};

/// `max-stale` on a request (RFC 9111 §5.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaxStale {
    /// No argument: any staleness is acceptable.
    Any,
    /// Staleness up to this many seconds is acceptable.
    Within(u32),
}

impl MaxStale {
    /// Whether a response stale by `staleness` seconds is acceptable.
    pub(crate) fn accepts(self, staleness: std::time::Duration) -> bool {
        match self {
            Self::Any => true,
            Self::Within(limit) => staleness <= std::time::Duration::from_secs(limit.into()),
        }
    }

    fn stricter(self, other: Self) -> Self {
        match (self, other) {
            (Self::Within(a), Self::Within(b)) => Self::Within(a.min(b)),
            (Self::Within(a), Self::Any) | (Self::Any, Self::Within(a)) => Self::Within(a),
            (Self::Any, Self::Any) => Self::Any,
        }
    }
}

/// The request directives a cache acts on (RFC 9111 §5.2.1, RFC 5861 §4).
///
/// A directive repeated with different arguments takes the most restrictive
/// one (§4.2.1: "the most restrictive directive should be honored"): the
/// smallest `max-age`, `max-stale` and `stale-if-error`, the largest
/// `min-fresh`. A directive whose argument is not a valid delta-seconds is
/// ignored, as if the client had not sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestDirectives {
    /// `max-age=N` (§5.2.1.1): the client wants a response no older than N.
    pub(crate) max_age: Option<u32>,
    /// `max-stale[=N]` (§5.2.1.2).
    pub(crate) max_stale: Option<MaxStale>,
    /// `min-fresh=N` (§5.2.1.3).
    pub(crate) min_fresh: Option<u32>,
    /// `no-cache` (§5.2.1.4), or `Pragma: no-cache` without any
    /// `Cache-Control` field (§5.4).
    pub(crate) no_cache: bool,
    /// `no-store` (§5.2.1.5): store nothing of this exchange.
    pub(crate) no_store: bool,
    /// `no-transform` (§5.2.1.6).
    pub(crate) no_transform: bool,
    /// `only-if-cached` (§5.2.1.7): answer from the cache or with 504.
    pub(crate) only_if_cached: bool,
    /// `stale-if-error=N` (RFC 5861 §4).
    pub(crate) stale_if_error: Option<u32>,
}

impl RequestDirectives {
    /// Reads a request's `Cache-Control` field lines, or, when it has none,
    /// its `Pragma: no-cache` (RFC 9111 §5.4; RFC 9111 deprecates `Pragma`
    /// but HTTP/1.0 clients still send it, and RFC 7234 §5.4 had caches
    /// honour it).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        if !headers.contains_key(CACHE_CONTROL) {
            let no_cache = headers.get_all(PRAGMA).iter().any(|line| {
                Lexer::new(line.as_bytes()).any(|raw| raw.name.eq_ignore_ascii_case(b"no-cache"))
            });
            return Self {
                no_cache,
                ..Self::default()
            };
        }
        Self::parse(headers.get_all(CACHE_CONTROL))
    }

    /// Reads the directives of these `Cache-Control` field lines, in order.
    pub(crate) fn parse<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut directives = Self::default();
        for line in lines {
            for raw in Lexer::new(line.as_bytes()) {
                let name = raw.name;
                if name.eq_ignore_ascii_case(b"max-age") {
                    if let Some(value) = raw.delta_seconds() {
                        directives.max_age =
                            Some(directives.max_age.map_or(value, |v| v.min(value)));
                    }
                } else if name.eq_ignore_ascii_case(b"max-stale") {
                    let value = match raw.argument {
                        Argument::None => Some(MaxStale::Any),
                        _ => raw.delta_seconds().map(MaxStale::Within),
                    };
                    if let Some(value) = value {
                        directives.max_stale =
                            Some(directives.max_stale.map_or(value, |v| v.stricter(value)));
                    }
                } else if name.eq_ignore_ascii_case(b"min-fresh") {
                    if let Some(value) = raw.delta_seconds() {
                        directives.min_fresh =
                            Some(directives.min_fresh.map_or(value, |v| v.max(value)));
                    }
                } else if name.eq_ignore_ascii_case(b"no-cache") {
                    directives.no_cache = true;
                } else if name.eq_ignore_ascii_case(b"no-store") {
                    directives.no_store = true;
                } else if name.eq_ignore_ascii_case(b"no-transform") {
                    directives.no_transform = true;
                } else if name.eq_ignore_ascii_case(b"only-if-cached") {
                    directives.only_if_cached = true;
                } else if name.eq_ignore_ascii_case(b"stale-if-error")
                    && let Some(value) = raw.delta_seconds()
                {
                    directives.stale_if_error =
                        Some(directives.stale_if_error.map_or(value, |v| v.min(value)));
                }
            }
        }
        directives
    }
}
