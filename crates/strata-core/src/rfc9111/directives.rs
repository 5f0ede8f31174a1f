//! `Cache-Control` directives of responses and requests (RFC 9111 §5.2),
//! with the `Pragma: no-cache` fallback for requests (§5.4).
//!
//! The parser is lenient where the RFC tolerates it and conservative where
//! it does not say: names are case-insensitive, arguments may be tokens or
//! quoted strings (`max-age="60"` is read as 60, §5.2), any number of field
//! lines and comma-separated members are read in order, and bytes it
//! cannot read are skipped (a directive after them still counts; the
//! argument of a directive followed by them does not).
//! Nothing here allocates unless a directive carries a field-name list.

use std::borrow::Cow;

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The greatest delta-seconds value kept (2^31): RFC 9111 §1.2.2 has a cache
/// treat any greater value, or an overflowing sum, as 2147483648 seconds.
pub(crate) const DELTA_SECONDS_MAX: u32 = 1 << 31;

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
/// [`response_directives`](super::response_directives)).
///
/// A delta-seconds argument is a count of whole seconds, saturated at
/// [`DELTA_SECONDS_MAX`] (§1.2.2).
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
    /// [`response_directives`](super::response_directives)).
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

/// Reads a delta-seconds value (RFC 9111 §1.2.2): one or more digits, no
/// sign, saturated at [`DELTA_SECONDS_MAX`].
pub(super) fn parse_delta_seconds(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u32 = 0;
    for digit in bytes {
        value = value
            .saturating_mul(10)
            .saturating_add(u32::from(digit - b'0'))
            .min(DELTA_SECONDS_MAX);
    }
    Some(value)
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

/// One directive as written.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawDirective<'a> {
    pub(super) name: &'a [u8],
    pub(super) argument: Argument<'a>,
}

/// The argument of a directive as written.
#[derive(Debug, Clone, Copy)]
pub(super) enum Argument<'a> {
    /// No `=`.
    None,
    /// `=token`.
    Token(&'a [u8]),
    /// `="..."`: the bytes between the quotes, escapes not yet removed.
    Quoted(&'a [u8]),
    /// `=` with nothing readable after it, or trailing garbage.
    Malformed,
}

impl<'a> RawDirective<'a> {
    /// The argument's bytes, unquoted and unescaped.
    fn argument_bytes(&self) -> Option<Cow<'a, [u8]>> {
        match self.argument {
            Argument::Token(token) => Some(Cow::Borrowed(token)),
            Argument::Quoted(inner) => Some(unescape(inner)),
            Argument::None | Argument::Malformed => None,
        }
    }

    /// The argument as delta-seconds (§1.2.2), quoted or not (§5.2).
    fn delta_seconds(&self) -> Option<u32> {
        self.argument_bytes()
            .and_then(|bytes| parse_delta_seconds(bytes.trim_ascii()))
    }

    /// The argument as a field-name list (§5.2.2.4, §5.2.2.7).
    fn field_scope(&self) -> FieldScope {
        match self.argument {
            Argument::None | Argument::Malformed => FieldScope::All,
            _ => self
                .argument_bytes()
                .map_or(FieldScope::All, |bytes| field_list(&bytes)),
        }
    }
}

/// Reads a comma-separated list of field names; anything unreadable, or
/// an empty list, makes the directive apply to the whole response.
pub(super) fn field_list(bytes: &[u8]) -> FieldScope {
    let mut names: Vec<HeaderName> = Vec::new();
    for member in bytes.split(|&b| b == b',') {
        let member = member.trim_ascii();
        if member.is_empty() {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(member) else {
            return FieldScope::All;
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        FieldScope::All
    } else {
        FieldScope::Only(names)
    }
}

/// Removes quoted-pair escapes (RFC 9110 §5.6.4), borrowing when there are
/// none.
fn unescape(inner: &[u8]) -> Cow<'_, [u8]> {
    if !inner.contains(&b'\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        if b == b'\\' {
            if let Some(&escaped) = bytes.next() {
                out.push(escaped);
            }
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// `tchar` (RFC 9110 §5.6.2).
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_start_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// The index of the closing quote of a quoted string starting at
/// `bytes[0] == b'"'`, or `None` if it is not closed.
fn closing_quote(bytes: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Splits `#( token [ "=" ( token / quoted-string ) ] )` field values into
/// directives (RFC 9111 §5.2, RFC 9110 §5.6.1), tolerating whitespace
/// around `=` and stray bytes, which it skips.
#[derive(Debug, Clone)]
pub(super) struct Lexer<'a> {
    rest: &'a [u8],
}

impl<'a> Lexer<'a> {
    pub(super) fn new(line: &'a [u8]) -> Self {
        Self { rest: line }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = RawDirective<'a>;

    fn next(&mut self) -> Option<RawDirective<'a>> {
        loop {
            let start = self
                .rest
                .iter()
                .position(|&b| !matches!(b, b' ' | b'\t' | b','))?;
            self.rest = &self.rest[start..];
            let name_len = self
                .rest
                .iter()
                .position(|&b| !is_tchar(b))
                .unwrap_or(self.rest.len());
            let (name, after) = self.rest.split_at(name_len);
            if name.is_empty() {
                // A stray byte: skip it (a quoted string as a whole), and
                // read on, so no directive hides behind garbage.
                self.rest = match self.rest[0] {
                    b'"' => closing_quote(self.rest).map_or(&[], |end| &self.rest[end + 1..]),
                    _ => &self.rest[1..],
                };
                continue;
            }
            let after = trim_start_ows(after);
            let mut argument = Argument::None;
            self.rest = after;
            if let Some(value) = after.strip_prefix(b"=") {
                let value = trim_start_ows(value);
                if value.first() == Some(&b'"') {
                    match closing_quote(value) {
                        Some(end) => {
                            argument = Argument::Quoted(&value[1..end]);
                            self.rest = &value[end + 1..];
                        }
                        None => {
                            argument = Argument::Malformed;
                            self.rest = &[];
                        }
                    }
                } else {
                    let len = value
                        .iter()
                        .position(|&b| !is_tchar(b))
                        .unwrap_or(value.len());
                    argument = if len == 0 {
                        Argument::Malformed
                    } else {
                        Argument::Token(&value[..len])
                    };
                    self.rest = &value[len..];
                }
            }
            let tail = trim_start_ows(self.rest);
            if !tail.is_empty() && tail[0] != b',' {
                // `max-age=6 0`, `max-age=60;x`: this directive's argument
                // cannot be trusted. What follows is read as more
                // directives, so `public private` still means `private`.
                argument = Argument::Malformed;
            }
            self.rest = tail;
            return Some(RawDirective { name, argument });
        }
    }
}

pub(crate) use crate::fields::{CDN_CACHE_CONTROL, STRATA_CACHE_CONTROL};

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

#[cfg(test)]
mod tests;
