//! Targeted cache-control fields (RFC 9213): which field's directives this
//! cache obeys.
//!
//! A cache's target list is configured ([`TargetedField`]): by default
//! `[Strata-Cache-Control]`, and `[Strata-Cache-Control, CDN-Cache-Control]`
//! for a CDN-class cache such as the gateway. The first
//! field on the list that is present, valid and non-empty replaces
//! `Cache-Control` *and* `Expires` entirely (RFC 9213 §2.1); otherwise
//! `Cache-Control` applies as usual. Targeted fields are Structured Field
//! Dictionaries (RFC 9213 §2.2, RFC 8941 §3.2), parsed strictly: a parse
//! error makes the whole field ignored.

use std::borrow::Cow;

use http::HeaderMap;

use super::directives::{
    DELTA_SECONDS_MAX, DirectiveSource, FieldScope, ResponseDirectives, field_list,
};

/// A targeted cache-control field (RFC 9213) that a cache can be told to
/// obey ([`CacheBuilder::targeted_fields`](crate::CacheBuilder::targeted_fields)).
/// When the first field of a cache's list that a response carries is
/// valid, its directives replace `Cache-Control` and `Expires` for that
/// cache's storage and freshness decisions (under
/// [`CachePolicy::origin`](crate::CachePolicy::origin)); an invalid one is
/// ignored and the next, or `Cache-Control`, applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetedField {
    /// `Strata-Cache-Control`: strata's own field, for strata caches only.
    /// Kept in the stored copy and removed from every response sent.
    Strata,
    /// `CDN-Cache-Control` (RFC 9213 §3): for CDN-class caches, such as a
    /// gateway in front of an origin. Passed on untouched.
    Cdn,
}

impl TargetedField {
    fn source(self) -> DirectiveSource {
        match self {
            Self::Strata => DirectiveSource::Strata,
            Self::Cdn => DirectiveSource::Cdn,
        }
    }
}

/// The targeted fields a cache obeys, in its order (most specific first).
/// The default, for a cache inside an application, is its own field only:
/// the CDN in front of the application reads `CDN-Cache-Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Targets([Option<TargetedField>; 2]);

impl Default for Targets {
    fn default() -> Self {
        Self::APP
    }
}

impl Targets {
    /// `Strata-Cache-Control` only.
    pub(crate) const APP: Self = Self([Some(TargetedField::Strata), None]);
    /// `Strata-Cache-Control`, then `CDN-Cache-Control`.
    #[cfg(test)]
    pub(crate) const STRATA_THEN_CDN: Self =
        Self([Some(TargetedField::Strata), Some(TargetedField::Cdn)]);

    /// These fields, in this order; a repeated field counts once, where it
    /// first appears.
    pub(crate) fn new(fields: impl IntoIterator<Item = TargetedField>) -> Self {
        let mut targets = [None; 2];
        let mut len = 0;
        for field in fields {
            if targets[..len].contains(&Some(field)) {
                continue;
            }
            if let Some(slot) = targets.get_mut(len) {
                *slot = Some(field);
                len += 1;
            }
        }
        Self(targets)
    }

    fn iter(self) -> impl Iterator<Item = TargetedField> {
        self.0.into_iter().flatten()
    }
}

/// The directives this cache obeys for a response (RFC 9213 §2.1): those of
/// the first field of `targets` that the response carries valid and
/// non-empty, else of `Cache-Control`. [`ResponseDirectives::source`] says
/// which field was used.
pub(crate) fn response_directives(headers: &HeaderMap, targets: Targets) -> ResponseDirectives {
    for field in targets.iter() {
        if let Some(directives) = targeted_directives(headers, field.source()) {
            return directives;
        }
    }
    ResponseDirectives::from_cache_control(headers)
}

/// The directives of one targeted field, or `None` when it is absent,
/// empty or not a valid Structured Field Dictionary (RFC 9213 §2.2).
///
/// Members' parameters are ignored. A repeated member counts only in its
/// last occurrence (RFC 8941 §3.2). Directives without an argument are
/// Boolean `true`, and `?0` reads as absent. A delta-seconds directive
/// whose value is not a non-negative Integer makes the freshness invalid
/// (`max-age`, `s-maxage`: the response is stale) or is dropped (stale
/// windows), as in `Cache-Control`. Field lists (`private`, `no-cache`) may
/// be a String (`"a, b"`) or an Inner List of Tokens or Strings.
pub(crate) fn targeted_directives(
    headers: &HeaderMap,
    source: DirectiveSource,
) -> Option<ResponseDirectives> {
    if !source.is_targeted() {
        return None;
    }
    let mut lines = headers.get_all(source.header_name()).iter();
    let first = lines.next()?;
    let combined: Cow<'_, [u8]> = match lines.next() {
        None => Cow::Borrowed(first.as_bytes()),
        Some(second) => {
            // RFC 8941 §4.2: combine field lines with commas before parsing.
            let mut joined = first.as_bytes().to_vec();
            for line in std::iter::once(second).chain(lines) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(line.as_bytes());
            }
            Cow::Owned(joined)
        }
    };
    let mut directives = ResponseDirectives {
        source,
        ..ResponseDirectives::default()
    };
    // Applied in order, each member overwriting what an earlier one with
    // the same key set: only the last occurrence counts (RFC 8941 §3.2).
    let mut invalid = Invalid::default();
    let members = parse_dictionary(&combined, |key, item| {
        apply(&mut directives, &mut invalid, key, &item);
    })?;
    if members == 0 {
        return None;
    }
    directives.invalid_freshness = invalid.max_age || invalid.s_maxage;
    Some(directives)
}

/// Which delta-seconds directives had, in their last occurrence, a value
/// that is not a non-negative Integer.
#[derive(Debug, Default)]
struct Invalid {
    max_age: bool,
    s_maxage: bool,
}

fn apply(directives: &mut ResponseDirectives, invalid: &mut Invalid, key: &str, item: &Item<'_>) {
    match key {
        "max-age" => {
            directives.max_age = seconds(item);
            invalid.max_age = directives.max_age.is_none();
        }
        "s-maxage" => {
            directives.s_maxage = seconds(item);
            invalid.s_maxage = directives.s_maxage.is_none();
        }
        "stale-while-revalidate" => directives.stale_while_revalidate = seconds(item),
        "stale-if-error" => directives.stale_if_error = seconds(item),
        "no-cache" => directives.no_cache = scope(item),
        "private" => directives.private = scope(item),
        "no-store" => directives.no_store = flag(item),
        "public" => directives.public = flag(item),
        "must-revalidate" => directives.must_revalidate = flag(item),
        "proxy-revalidate" => directives.proxy_revalidate = flag(item),
        "must-understand" => directives.must_understand = flag(item),
        "no-transform" => directives.no_transform = flag(item),
        "immutable" => directives.immutable = flag(item),
        _ => {}
    }
}

fn seconds(item: &Item<'_>) -> Option<u32> {
    match *item {
        Item::Integer(value) if value >= 0 => {
            Some(u32::try_from(value).map_or(DELTA_SECONDS_MAX, |v| v.min(DELTA_SECONDS_MAX)))
        }
        _ => None,
    }
}

/// A directive that takes no argument: present unless `?0`.
fn flag(item: &Item<'_>) -> bool {
    !matches!(item, Item::Boolean(false))
}

fn scope(item: &Item<'_>) -> Option<FieldScope> {
    match item {
        Item::Boolean(false) => None,
        Item::String(list) => Some(field_list(list.as_bytes())),
        Item::InnerList(members) => {
            let mut joined = String::new();
            for member in members {
                match member {
                    Item::Token(name) => joined.push_str(name),
                    Item::String(name) => joined.push_str(name),
                    _ => return Some(FieldScope::All),
                }
                joined.push(',');
            }
            Some(field_list(joined.as_bytes()))
        }
        _ => Some(FieldScope::All),
    }
}

/// A Structured Field item (RFC 8941 §3.3), parameters dropped; the types
/// no directive uses are kept as [`Item::Other`].
#[derive(Debug, Clone, PartialEq)]
enum Item<'a> {
    Integer(i64),
    String(Cow<'a, str>),
    Token(&'a str),
    Boolean(bool),
    InnerList(Vec<Item<'a>>),
    /// A Decimal or a Byte Sequence.
    Other,
}

/// Parses a Structured Field Dictionary (RFC 8941 §4.2.2), handing each
/// member to `member` in order; returns how many there were, or `None` on
/// any parse error (after which what `member` saw must be discarded).
fn parse_dictionary<'a>(
    input: &'a [u8],
    mut member: impl FnMut(&'a str, Item<'a>),
) -> Option<usize> {
    // Structured fields are ASCII; anything else is a parse error.
    let input = std::str::from_utf8(input).ok().filter(|s| s.is_ascii())?;
    let mut parser = Parser {
        input: input.as_bytes(),
        text: input,
        pos: 0,
    };
    parser.skip_sp();
    let mut members = 0;
    while !parser.at_end() {
        let key = parser.key()?;
        let item = if parser.eat(b'=') {
            parser.item_or_inner_list()?
        } else {
            parser.parameters()?;
            Item::Boolean(true)
        };
        member(key, item);
        members += 1;
        parser.skip_ows();
        if parser.at_end() {
            break;
        }
        if !parser.eat(b',') {
            return None;
        }
        parser.skip_ows();
        if parser.at_end() {
            return None; // a trailing comma
        }
    }
    Some(members)
}

#[derive(Debug)]
struct Parser<'a> {
    input: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        // Trailing SP was part of the field value's OWS.
        self.input[self.pos..].iter().all(|&b| b == b' ')
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<&'a str> {
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
            return None;
        }
        Some(
            self.take_while(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')),
        )
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn item_or_inner_list(&mut self) -> Option<Item<'a>> {
        if self.eat(b'(') {
            let mut members = Vec::new();
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    self.parameters()?;
                    return Some(Item::InnerList(members));
                }
                let member = self.bare_item()?;
                self.parameters()?;
                members.push(member);
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
        }
        let item = self.bare_item()?;
        self.parameters()?;
        Some(item)
    }

    fn bare_item(&mut self) -> Option<Item<'a>> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'*' | b'a'..=b'z' | b'A'..=b'Z' => {
                Some(Item::Token(self.take_while(|b| {
                    super::directives::is_tchar(b) || b == b':' || b == b'/'
                })))
            }
            b':' => {
                self.pos += 1;
                self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                self.eat(b':').then_some(Item::Other)
            }
            b'?' => {
                self.pos += 1;
                let value = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.pos += 1;
                Some(Item::Boolean(value))
            }
            _ => None,
        }
    }

    /// RFC 8941 §4.2.4: at most 15 integer digits, or 12 and up to 3
    /// fractional digits for a Decimal.
    fn number(&mut self) -> Option<Item<'a>> {
        let negative = self.eat(b'-');
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit());
            return (digits.len() <= 12 && (1..=3).contains(&fraction.len()))
                .then_some(Item::Other);
        }
        if digits.len() > 15 {
            return None;
        }
        let value: i64 = digits.parse().ok()?;
        Some(Item::Integer(if negative { -value } else { value }))
    }

    fn string(&mut self) -> Option<Item<'a>> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'\\' => {
                    self.pos += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    escaped = true;
                    self.pos += 1;
                }
                b'"' => break,
                0x20..=0x7e => self.pos += 1,
                _ => return None,
            }
        }
        let raw = &self.text[start..self.pos];
        self.pos += 1;
        Some(Item::String(if escaped {
            Cow::Owned(raw.replace("\\\\", "\\").replace("\\\"", "\""))
        } else {
            Cow::Borrowed(raw)
        }))
    }
}

#[cfg(test)]
mod tests;
