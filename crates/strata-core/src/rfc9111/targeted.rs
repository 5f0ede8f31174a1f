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

use self::structured::{Item, parse_dictionary};

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

mod structured;

#[cfg(test)]
mod tests;
