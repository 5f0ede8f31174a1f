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
//!
//! The lexing and the argument readers both kinds share are here; the
//! directives themselves are in `response` and `request`.

use std::borrow::Cow;

use http::HeaderName;

mod request;
mod response;

pub(crate) use request::RequestDirectives;
pub(crate) use response::{DirectiveSource, FieldScope, ResponseDirectives};

/// The greatest delta-seconds value kept (2^31): RFC 9111 §1.2.2 has a cache
/// treat any greater value, or an overflowing sum, as 2147483648 seconds.
pub(crate) const DELTA_SECONDS_MAX: u32 = 1 << 31;

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

#[cfg(test)]
mod tests;
