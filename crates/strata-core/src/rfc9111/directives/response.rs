//! The directives of a response (RFC 9111 §5.2.2, RFC 5861, RFC 8246) and the field they came from.

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{CDN_CACHE_CONTROL, Lexer, STRATA_CACHE_CONTROL};

/// The fields a directive with a field-name list applies to (RFC 9111
/// §5.2.2.4 `no-cache`, §5.2.2.7 `private`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldScope {
    /// The unqualified form: the directive applies to the whole response.
    /// A list that cannot be read (an invalid field name, an empty list) is
    /// taken as this, the stricter reading.
    All,
    /// The qualified form: the directive applies to these fields only
    /// (lowercase, deduplicated, in order of appearance).
    Only(Vec<HeaderName>),
}

impl FieldScope {
    /// Combines two occurrences of one directive: the unqualified form wins,
    /// two lists are joined.
    fn merge(self, other: Self) -> Self {
        match (self, other) {
            (Self::Only(mut names), Self::Only(more)) => {
                for name in more {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                Self::Only(names)
            }
            _ => Self::All,
        }
    }
}

/// The response directives a shared cache acts on (RFC 9111 §5.2.2, RFC
/// 5861, RFC 8246), read from `Cache-Control` or a targeted field (see
/// [`response_directives`](super::super::response_directives)).
///
/// A delta-seconds argument is a count of whole seconds, saturated at
/// [`DELTA_SECONDS_MAX`](super::DELTA_SECONDS_MAX) (§1.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResponseDirectives {
    /// The field these directives came from. A targeted field makes the
    /// cache ignore `Expires` too (RFC 9213 §2.1).
    pub(crate) source: DirectiveSource,
    /// `max-age=N` (§5.2.2.1).
    pub(crate) max_age: Option<u32>,
    /// `s-maxage=N` (§5.2.2.10); it also implies `proxy-revalidate`.
    pub(crate) s_maxage: Option<u32>,
    /// `no-cache` (§5.2.2.4): store, but revalidate before every reuse.
    pub(crate) no_cache: Option<FieldScope>,
    /// `no-store` (§5.2.2.5).
    pub(crate) no_store: bool,
    /// `private` (§5.2.2.7): unqualified, never stored by a shared cache;
    /// qualified, the listed fields are not stored.
    pub(crate) private: Option<FieldScope>,
    /// `public` (§5.2.2.9).
    pub(crate) public: bool,
    /// `must-revalidate` (§5.2.2.2): never served stale.
    pub(crate) must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8): `must-revalidate` for shared caches.
    pub(crate) proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3).
    pub(crate) must_understand: bool,
    /// `no-transform` (§5.2.2.6).
    pub(crate) no_transform: bool,
    /// `immutable` (RFC 8246).
    pub(crate) immutable: bool,
    /// `stale-while-revalidate=N` (RFC 5861 §3).
    pub(crate) stale_while_revalidate: Option<u32>,
    /// `stale-if-error=N` (RFC 5861 §4).
    pub(crate) stale_if_error: Option<u32>,
    /// The freshness information cannot be trusted: `max-age` or `s-maxage`
    /// without a valid delta-seconds argument, or repeated with different
    /// values. Such a response is treated as stale (RFC 9111 §4.2.1: "either
    /// the first occurrence should be used or the response should be
    /// considered stale"; strata takes the second, and also follows the
    /// encouragement to treat invalid freshness information as stale).
    pub(crate) invalid_freshness: bool,
}

impl ResponseDirectives {
    /// Reads the directives of every `Cache-Control` field line of a
    /// response, ignoring targeted fields (for those see
    /// [`response_directives`](super::super::response_directives)).
    pub(crate) fn from_cache_control(headers: &HeaderMap) -> Self {
        Self::parse(headers.get_all(CACHE_CONTROL))
    }

    /// Reads the directives of these field lines, in order (RFC 9111 §5.2).
    ///
    /// Names are case-insensitive; arguments may be tokens or quoted
    /// strings; whitespace around `=` is tolerated. Bytes that cannot start
    /// a directive are skipped, so a directive after them still counts,
    /// while a directive directly followed by them (`max-age=6 0`) is read
    /// with an unusable argument. Unknown directives are ignored (§5.2.3).
    pub(crate) fn parse<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut directives = Self::default();
        let mut max_age = Seconds::Absent;
        let mut s_maxage = Seconds::Absent;
        let mut swr = Seconds::Absent;
        let mut sie = Seconds::Absent;
        for line in lines {
            for raw in Lexer::new(line.as_bytes()) {
                let name = raw.name;
                if name.eq_ignore_ascii_case(b"max-age") {
                    max_age.record(raw.delta_seconds());
                } else if name.eq_ignore_ascii_case(b"s-maxage") {
                    s_maxage.record(raw.delta_seconds());
                } else if name.eq_ignore_ascii_case(b"no-cache") {
                    directives.no_cache = Some(merge_scope(directives.no_cache, raw.field_scope()));
                } else if name.eq_ignore_ascii_case(b"no-store") {
                    directives.no_store = true;
                } else if name.eq_ignore_ascii_case(b"private") {
                    directives.private = Some(merge_scope(directives.private, raw.field_scope()));
                } else if name.eq_ignore_ascii_case(b"public") {
                    directives.public = true;
                } else if name.eq_ignore_ascii_case(b"must-revalidate") {
                    directives.must_revalidate = true;
                } else if name.eq_ignore_ascii_case(b"proxy-revalidate") {
                    directives.proxy_revalidate = true;
                } else if name.eq_ignore_ascii_case(b"must-understand") {
                    directives.must_understand = true;
                } else if name.eq_ignore_ascii_case(b"no-transform") {
                    directives.no_transform = true;
                } else if name.eq_ignore_ascii_case(b"immutable") {
                    directives.immutable = true;
                } else if name.eq_ignore_ascii_case(b"stale-while-revalidate") {
                    swr.record(raw.delta_seconds());
                } else if name.eq_ignore_ascii_case(b"stale-if-error") {
                    sie.record(raw.delta_seconds());
                }
                // Unknown extension directives are ignored (§5.2.3).
            }
        }
        directives.max_age = max_age.value();
        directives.s_maxage = s_maxage.value();
        directives.invalid_freshness = max_age.is_invalid() || s_maxage.is_invalid();
        // An unreadable or conflicting stale window only ever permits
        // serving stale content, so it is dropped rather than guessed.
        directives.stale_while_revalidate = swr.valid();
        directives.stale_if_error = sie.valid();
        directives
    }

    /// Whether a stale response may never be served without revalidation
    /// by a shared cache, whatever the client allows: `must-revalidate`,
    /// `proxy-revalidate` or `no-cache` (RFC 9111 §4.2.4, §5.2.2.2,
    /// §5.2.2.8). Origin-given stale windows (RFC 5861) do not override
    /// these either.
    pub(crate) fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.no_cache.is_some()
    }
}

fn merge_scope(current: Option<FieldScope>, new: FieldScope) -> FieldScope {
    match current {
        Some(current) => current.merge(new),
        None => new,
    }
}

/// A delta-seconds directive seen zero or more times.
#[derive(Debug, Clone, Copy)]
enum Seconds {
    Absent,
    Value(u32),
    /// Without a valid argument, or repeated with another value.
    Invalid(Option<u32>),
}

impl Seconds {
    fn record(&mut self, value: Option<u32>) {
        *self = match (*self, value) {
            (Self::Absent, Some(value)) => Self::Value(value),
            (Self::Value(first), Some(value)) if first == value => Self::Value(first),
            (Self::Value(first), _) => Self::Invalid(Some(first)),
            (Self::Absent, None) => Self::Invalid(None),
            (Self::Invalid(first), _) => Self::Invalid(first.or(value)),
        };
    }

    /// The first valid value, even when later ones conflict (for display).
    fn value(self) -> Option<u32> {
        match self {
            Self::Absent => None,
            Self::Value(value) => Some(value),
            Self::Invalid(first) => first,
        }
    }

    /// The value only if it is the only one and valid.
    fn valid(self) -> Option<u32> {
        match self {
            Self::Value(value) => Some(value),
            _ => None,
        }
    }

    fn is_invalid(self) -> bool {
        matches!(self, Self::Invalid(_))
    }
}

/// The field a response's directives were taken from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) enum DirectiveSource {
    /// `Cache-Control` (RFC 9111 §5.2), with `Expires` (§5.3); also when
    /// the response has no directives at all.
    #[default]
    CacheControl,
    /// [`CDN_CACHE_CONTROL`] (RFC 9213 §3).
    Cdn,
    /// [`STRATA_CACHE_CONTROL`].
    Strata,
}

impl DirectiveSource {
    /// The name of the field.
    pub(crate) fn header_name(self) -> HeaderName {
        match self {
            Self::CacheControl => CACHE_CONTROL,
            Self::Cdn => CDN_CACHE_CONTROL,
            Self::Strata => STRATA_CACHE_CONTROL,
        }
    }

    /// Whether it is a targeted field, which makes the cache ignore
    /// `Cache-Control` and `Expires` (RFC 9213 §2.1).
    pub(crate) fn is_targeted(self) -> bool {
        !matches!(self, Self::CacheControl)
    }
}
