//! Selecting a stored response by its `Vary` header (RFC 9111 §4.1, RFC
//! 9110 §12.5.5).
//!
//! A request matches a stored response when, for every field the response
//! varies on, the two requests' values are equal after normalisation.
//! [`secondary_key`] writes that normalised form, so variants can be stored
//! and looked up under a key without comparing header maps.
//!
//! What is normalised, and why, is on [`secondary_key`].
//!
//! `Vary: *` never matches (§4.1): [`secondary_key`] returns `None`.

use http::header::{ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, VARY};
use http::{HeaderMap, HeaderName};

/// A response's `Vary` (RFC 9110 §12.5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vary {
    /// The request fields that select the response: lowercase, sorted,
    /// without duplicates; empty when the response has no `Vary`.
    Fields(Vec<HeaderName>),
    /// `*`, or a member that is not a field name: the response matches no
    /// later request.
    Any,
}

impl Vary {
    /// Reads every `Vary` field line of a response. A member that is not a
    /// valid field name is read as `*`: the response's variance is unknown,
    /// so it must not be served to any other request.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut names: Vec<HeaderName> = Vec::new();
        for line in headers.get_all(VARY) {
            for member in line.as_bytes().split(|&b| b == b',') {
                let member = member.trim_ascii();
                if member.is_empty() {
                    continue;
                }
                match HeaderName::from_bytes(member) {
                    Ok(name) if member != b"*" => names.push(name),
                    _ => return Self::Any,
                }
            }
        }
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Self::Fields(names)
    }

    /// Whether it is `*`, which no request matches.
    pub(crate) fn is_any(&self) -> bool {
        matches!(self, Self::Any)
    }

    /// The field names; empty for `*`.
    pub(crate) fn names(&self) -> &[HeaderName] {
        match self {
            Self::Fields(names) => names,
            Self::Any => &[],
        }
    }
}

/// The normalised values of the request fields `vary` names, as one string,
/// or `None` for `Vary: *`, which matches no request (RFC 9111 §4.1).
///
/// What is normalised, and why §4.1 allows it ("adding or removing
/// whitespace, where allowed in the header field's syntax; combining
/// multiple header field lines with the same field name; normalizing both
/// header field values in a way that is known to have identical
/// semantics"):
///
/// - several field lines are combined into one, joined by `,` (RFC 9110
///   §5.3);
/// - whitespace at either end of the value and around each comma outside a
///   quoted string is removed: list syntax allows optional whitespace there
///   (RFC 9110 §5.6.1). For a field that is not a list, this can only make
///   two values that differ by spaces after a comma match;
/// - empty list elements (`a,,b`, a trailing comma) are dropped, as list
///   recipients must ignore them (RFC 9110 §5.6.1);
/// - `Accept-Encoding` members are also lowercased, stripped of whitespace
///   around `;` and `=`, and sorted: content codings and the `q` parameter
///   are case-insensitive (RFC 9110 §8.4.1, §12.4.2) and the list's order
///   carries no meaning, preference being given by weights (§12.5.3).
///   Every coding the origin may pick for one ordering is acceptable to a
///   client that sent another, and all decode to the same representation.
///   Other negotiation fields (`Accept-Language`, `Accept`) are kept as
///   sent: origins commonly break ties by list order, and a different
///   language or media type is a different representation;
/// - a field that is absent differs from one that is present but empty
///   (§4.1: an absent field "can only match another request if it is also
///   absent there").
///
/// The form is `name=value` for a present field and `name` alone for an
/// absent one, joined by `&`, in the order of [`Vary::names`]. Bytes other
/// than visible ASCII, and `%` and `&`, are written as `%XX`, so the string
/// is unambiguous and printable. An empty `Vary` gives the empty string.
#[cfg(test)]
pub(crate) fn secondary_key(vary: &Vary, request: &HeaderMap) -> Option<String> {
    let Vary::Fields(names) = vary else {
        return None;
    };
    let mut key = String::new();
    write_secondary_key(&mut key, names, request);
    Some(key)
}

/// Appends the [`secondary_key`] of a request for these field names to
/// `key` (the cache's variant keys are built this way).
pub(crate) fn write_secondary_key(key: &mut String, names: &[HeaderName], request: &HeaderMap) {
    for (index, name) in names.iter().enumerate() {
        if index > 0 {
            key.push('&');
        }
        key.push_str(name.as_str());
        let mut lines = request.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            continue;
        }
        key.push('=');
        if name == ACCEPT_ENCODING {
            // Sorting needs the members at hand; elsewhere they are written
            // as they are read.
            let mut members: Vec<Vec<u8>> = lines
                .flat_map(|line| split_list(line.as_bytes()))
                .filter(|member| !member.is_empty())
                .map(|member| {
                    let mut member = member.to_vec();
                    normalize_coding(&mut member);
                    member
                })
                .collect();
            members.sort_unstable();
            push_members(key, members.iter().map(Vec::as_slice));
        } else if name == ACCEPT_LANGUAGE || name == ACCEPT {
            let members: Vec<&[u8]> = lines
                .flat_map(|line| split_list(line.as_bytes()))
                .filter(|member| !member.is_empty())
                .collect();
            match normalize_weighted(&members) {
                Some(normalized) => push_members(key, normalized.iter().map(Vec::as_slice)),
                None => push_members(key, members.into_iter()),
            }
        } else {
            // Empty list elements carry nothing (RFC 9110 §5.6.1).
            push_members(
                key,
                lines
                    .flat_map(|line| split_list(line.as_bytes()))
                    .filter(|member| !member.is_empty()),
            );
        }
    }
}

/// Whether a request with headers `request` may be served the stored
/// response selected by a request with headers `stored_request`, as far as
/// `vary` goes (RFC 9111 §4.1).
#[cfg(test)]
pub(crate) fn variant_matches(
    vary: &Vary,
    stored_request: &HeaderMap,
    request: &HeaderMap,
) -> bool {
    match (
        secondary_key(vary, stored_request),
        secondary_key(vary, request),
    ) {
        (Some(stored), Some(new)) => stored == new,
        _ => false,
    }
}

/// Splits a field line at commas outside quoted strings, trimming optional
/// whitespace around each member.
fn split_list(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut in_quotes = false;
        let mut i = 0;
        while i < current.len() {
            match current[i] {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => break,
                _ => {}
            }
            i += 1;
        }
        let end = i.min(current.len());
        rest = (end < current.len()).then(|| &current[end + 1..]);
        Some(current[..end].trim_ascii())
    })
}

/// Lowercases a coding member and drops whitespace around `;` and `=`
/// (`GZip ; Q=0.5` becomes `gzip;q=0.5`).
fn normalize_coding(member: &mut Vec<u8>) {
    member.make_ascii_lowercase();
    let mut out = Vec::with_capacity(member.len());
    for (i, &b) in member.iter().enumerate() {
        if b == b' ' || b == b'\t' {
            let prev = out.last().copied();
            let next = member[i + 1..].iter().find(|&&c| c != b' ' && c != b'\t');
            if matches!(prev, Some(b';' | b'=')) || matches!(next, Some(b';' | b'=')) {
                continue;
            }
        }
        out.push(b);
    }
    *member = out;
}

/// The members of a weighted list (`Accept-Language`, `Accept`) written
/// so that requests an origin cannot tell apart share a variant: the
/// value (language range, media range) and parameter names lowercased,
/// white space around `;` and `=` dropped, `q` written in its shortest
/// form (`q=1.0` and no `q` alike, `q=0.50` as `q=0.5`), and the members
/// ordered by descending weight. Members of equal weight keep their order,
/// since an origin may break the tie by it; parameter values other than
/// `q` keep their case. `None` when a member's `q` is not a valid weight
/// (RFC 9110 §12.4.2): then nothing is reordered.
fn normalize_weighted(members: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
    let mut weighted = Vec::with_capacity(members.len());
    for member in members {
        let mut parts = member.split(|&b| b == b';').map(<[u8]>::trim_ascii);
        let mut out = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut weight = 1000;
        for parameter in parts {
            let (name, value) = match parameter.iter().position(|&b| b == b'=') {
                Some(at) => (
                    parameter[..at].trim_ascii(),
                    parameter[at + 1..].trim_ascii(),
                ),
                None => (parameter, &b""[..]),
            };
            if name.eq_ignore_ascii_case(b"q") {
                weight = parse_weight(value)?;
                continue;
            }
            out.push(b';');
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            if parameter.contains(&b'=') {
                out.push(b'=');
                out.extend_from_slice(value);
            }
        }
        if weight < 1000 {
            out.extend_from_slice(b";q=0");
            let digits = [weight / 100, weight / 10 % 10, weight % 10];
            let significant = digits.iter().rposition(|&d| d != 0).map_or(0, |at| at + 1);
            if significant > 0 {
                out.push(b'.');
                // Each digit is below 10.
                out.extend(digits[..significant].iter().map(|&d| b'0' + d as u8));
            }
        }
        weighted.push((weight, out));
    }
    // Stable: equal weights keep their order.
    weighted.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    Some(weighted.into_iter().map(|(_, member)| member).collect())
}

/// A `q` value in thousandths (RFC 9110 §12.4.2: `0` to `1` with at most
/// three decimals), or `None` when it is not one.
fn parse_weight(value: &[u8]) -> Option<u16> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for (index, digit) in fraction.iter().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][index];
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn push_members<'a>(key: &mut String, members: impl Iterator<Item = &'a [u8]>) {
    for (index, member) in members.enumerate() {
        if index > 0 {
            key.push(',');
        }
        push_escaped(key, member);
    }
}

fn push_escaped(key: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' && b != b'&' || b == b' ' {
            key.push(char::from(b));
        } else {
            key.push('%');
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    use crate::rfc9111::header_map as map;

    fn vary(value: &'static str) -> Vary {
        Vary::from_headers(&map(&[("vary", value)]))
    }

    #[test]
    fn vary_names_are_lowercased_sorted_and_deduplicated() {
        let v = vary("Accept-Language, ACCEPT,accept-language");
        let names: Vec<&str> = v.names().iter().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "accept-language"]);
        assert_eq!(
            Vary::from_headers(&HeaderMap::new()),
            Vary::Fields(Vec::new())
        );
    }

    #[test]
    fn vary_star_or_garbage_never_matches() {
        for value in ["*", "accept, *", "bad name", "accept, \"x\""] {
            let v = vary(value);
            assert!(v.is_any(), "{value}");
            assert_eq!(secondary_key(&v, &HeaderMap::new()), None);
            assert!(!variant_matches(&v, &HeaderMap::new(), &HeaderMap::new()));
        }
    }

    #[test]
    fn no_vary_matches_every_request() {
        let v = Vary::from_headers(&HeaderMap::new());
        assert_eq!(
            secondary_key(&v, &map(&[("accept", "x")])).as_deref(),
            Some("")
        );
        assert!(variant_matches(
            &v,
            &map(&[("accept", "x")]),
            &HeaderMap::new()
        ));
    }

    #[test]
    fn absent_and_empty_differ() {
        let v = vary("accept-language");
        let absent = secondary_key(&v, &HeaderMap::new()).unwrap();
        let empty = secondary_key(&v, &map(&[("accept-language", "")])).unwrap();
        assert_eq!(absent, "accept-language");
        assert_eq!(empty, "accept-language=");
        let commas = secondary_key(&v, &map(&[("accept-language", " , ")])).unwrap();
        assert_eq!(commas, empty);
        let trailing = secondary_key(&v, &map(&[("accept-language", "en,")])).unwrap();
        assert_eq!(trailing, "accept-language=en");
    }

    #[test]
    fn lines_are_combined_and_whitespace_around_commas_dropped() {
        let v = vary("accept");
        let one = secondary_key(&v, &map(&[("accept", "text/html , application/json")]));
        let two = secondary_key(
            &v,
            &map(&[("accept", " text/html"), ("accept", "application/json ")]),
        );
        assert_eq!(one, two);
        assert_eq!(one.unwrap(), "accept=text/html,application/json");
        // The order of equal weights still matters; media types' case
        // does not (see `weighted_lists_share_a_variant_...`).
        let swapped = secondary_key(&v, &map(&[("accept", "application/json, text/html")]));
        assert_ne!(swapped, two);
        let upper = secondary_key(&v, &map(&[("accept", "TEXT/HTML, application/json")]));
        assert_eq!(upper, two);
        // Outside the weighted lists, case matters.
        let v = vary("x-list");
        assert_ne!(
            secondary_key(&v, &map(&[("x-list", "A")])),
            secondary_key(&v, &map(&[("x-list", "a")]))
        );
    }

    #[test]
    fn quoted_commas_are_not_list_separators() {
        let v = vary("x-list");
        let key = secondary_key(&v, &map(&[("x-list", "a;p=\"1 , 2\" , b")])).unwrap();
        assert_eq!(key, "x-list=a;p=\"1 , 2\",b");
    }

    #[test]
    fn accept_encoding_is_case_and_order_insensitive() {
        let v = vary("accept-encoding");
        let a = secondary_key(&v, &map(&[("accept-encoding", "gzip, br;q=0.8, deflate")]));
        let b = secondary_key(
            &v,
            &map(&[
                ("accept-encoding", "Deflate,BR ; Q=0.8"),
                ("accept-encoding", "GZIP"),
            ]),
        );
        assert_eq!(a, b);
        assert_eq!(a.unwrap(), "accept-encoding=br;q=0.8,deflate,gzip");
        let c = secondary_key(&v, &map(&[("accept-encoding", "gzip, br;q=0.9, deflate")]));
        assert_ne!(c, b);
    }

    #[test]
    fn two_headers_select_variants() {
        let v = vary("accept-encoding, accept-language");
        let en_gzip = map(&[("accept-encoding", "gzip"), ("accept-language", "en")]);
        let de_gzip = map(&[("accept-encoding", "gzip"), ("accept-language", "de")]);
        let en_gzip_again = map(&[
            ("accept-language", "en"),
            ("accept-encoding", "GZIP"),
            ("cookie", "x"),
        ]);
        assert!(variant_matches(&v, &en_gzip, &en_gzip_again));
        assert!(!variant_matches(&v, &en_gzip, &de_gzip));
        assert_eq!(
            secondary_key(&v, &en_gzip).unwrap(),
            "accept-encoding=gzip&accept-language=en"
        );
    }

    #[test]
    fn three_headers_select_variants() {
        let v = vary("accept, accept-encoding, x-tenant");
        let base = map(&[
            ("accept", "text/html"),
            ("accept-encoding", "br"),
            ("x-tenant", "a"),
        ]);
        let other_tenant = map(&[
            ("accept", "text/html"),
            ("accept-encoding", "br"),
            ("x-tenant", "b"),
        ]);
        let no_tenant = map(&[("accept", "text/html"), ("accept-encoding", "br")]);
        assert!(variant_matches(&v, &base, &base.clone()));
        assert!(!variant_matches(&v, &base, &other_tenant));
        assert!(!variant_matches(&v, &base, &no_tenant));
        assert_eq!(
            secondary_key(&v, &no_tenant).unwrap(),
            "accept=text/html&accept-encoding=br&x-tenant"
        );
    }

    #[test]
    fn separators_and_non_ascii_are_escaped() {
        let v = vary("x-a, x-b");
        let mut request = HeaderMap::new();
        request.insert("x-a", HeaderValue::from_static("1&x-b=2"));
        request.insert("x-b", HeaderValue::from_bytes(b"caf\xc3\xa9 %").unwrap());
        assert_eq!(
            secondary_key(&v, &request).unwrap(),
            "x-a=1%26x-b=2&x-b=caf%C3%A9 %25"
        );
    }
}
