//! Validators and conditional requests: ETag, `If-None-Match`,
//! `If-Modified-Since` and the headers of a 304 (RFC 9110 §8.8, §13, §15.4.5).

use std::time::SystemTime;

use http::header::{
    CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, IF_MODIFIED_SINCE, IF_NONE_MATCH, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

/// The headers RFC 9110 §15.4.5 has a 304 carry, when a 200 would have.
pub const NOT_MODIFIED_HEADERS: [HeaderName; 6] =
    [CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, VARY];

/// A strong ETag for `body`: the first 128 bits of its SHA-256, in hex,
/// quoted. Computed once, when a response is stored.
///
/// ```
/// let etag = strata::conditional::etag_for(b"hello");
/// assert_eq!(etag, "\"2cf24dba5fb0a30e26e83b2ac5b9e29e\"");
/// ```
pub fn etag_for(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let mut quoted = [0u8; 34];
    quoted[0] = b'"';
    quoted[33] = b'"';
    hex::encode_to_slice(&digest[..16], &mut quoted[1..33]).expect("32 hex digits fit");
    HeaderValue::from_bytes(&quoted).expect("quoted hex is a valid header value")
}

/// A strong `etag` made particular to `coding` (`"v1"` for `gzip` becomes
/// `"v1-gzip"`, as Apache's `mod_deflate` does), for a response stored
/// with that `Content-Encoding`: a compression layer keeps its handler's
/// ETag on every encoding it makes, while RFC 9110 §8.8.3 wants each
/// representation's strong tag to be its own. `None` (keep the tag) for a
/// weak tag, one already particular to `coding`, or identity.
///
/// ```
/// use http::HeaderValue;
/// use strata::conditional::etag_for_coding;
///
/// let tag = HeaderValue::from_static("\"v1\"");
/// assert_eq!(etag_for_coding(&tag, "gzip").unwrap(), "\"v1-gzip\"");
/// assert_eq!(etag_for_coding(&HeaderValue::from_static("\"v1-gzip\""), "gzip"), None);
/// assert_eq!(etag_for_coding(&HeaderValue::from_static("W/\"v1\""), "gzip"), None);
/// assert_eq!(etag_for_coding(&tag, "gzip, br"), None);
/// ```
pub fn etag_for_coding(etag: &HeaderValue, coding: &str) -> Option<HeaderValue> {
    let coding = coding.trim();
    // One coding, a token (several, as in `gzip, br`, are left alone).
    let token = coding
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if coding.is_empty() || !token || coding.eq_ignore_ascii_case("identity") {
        return None;
    }
    let inner = etag.as_bytes().strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut suffix = Vec::with_capacity(coding.len() + 1);
    suffix.push(b'-');
    suffix.extend(coding.bytes().map(|b| b.to_ascii_lowercase()));
    if inner.ends_with(&suffix) {
        return None;
    }
    let mut tagged = Vec::with_capacity(inner.len() + suffix.len() + 2);
    tagged.push(b'"');
    tagged.extend_from_slice(inner);
    tagged.extend_from_slice(&suffix);
    tagged.push(b'"');
    HeaderValue::from_bytes(&tagged).ok()
}

/// The opaque part of an entity tag, without `W/` and quotes.
fn opaque(tag: &[u8]) -> &[u8] {
    let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
    tag.strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(tag)
}

/// Whether the request's `If-None-Match` fields match `etag` by weak
/// comparison (RFC 9110 §8.8.3.2): `*` matches any current representation,
/// and each list member is compared without its `W/`.
pub fn if_none_match_matches(request_headers: &HeaderMap, etag: &HeaderValue) -> bool {
    // What a browser sends back is, nearly always, the very value it got.
    if request_headers.get(IF_NONE_MATCH) == Some(etag) {
        return true;
    }
    let current = opaque(etag.as_bytes());
    request_headers.get_all(IF_NONE_MATCH).iter().any(|field| {
        field.as_bytes().split(|&b| b == b',').any(|member| {
            let member = member.trim_ascii();
            member == b"*" || (!member.is_empty() && opaque(member) == current)
        })
    })
}

/// Whether a GET or HEAD with these headers should get 304 for a
/// representation with these validators (RFC 9110 §13.2.2): `If-None-Match`
/// decides when present, else `If-Modified-Since` against `last_modified`
/// (an unparsable date is ignored, as the RFC says).
pub fn is_not_modified(
    request_headers: &HeaderMap,
    etag: Option<&HeaderValue>,
    last_modified: Option<SystemTime>,
) -> bool {
    if request_headers.contains_key(IF_NONE_MATCH) {
        return etag.is_some_and(|etag| if_none_match_matches(request_headers, etag));
    }
    let mut lines = request_headers.get_all(IF_MODIFIED_SINCE).iter();
    let (Some(since), None, Some(modified)) = (lines.next(), lines.next(), last_modified) else {
        // Absent, or several lines: a field with more than one member is
        // ignored (RFC 9110 §13.1.3).
        return false;
    };
    let Some(since) = parse_http_date(since) else {
        return false;
    };
    // HTTP dates have whole seconds; compare at that resolution.
    whole_seconds(modified) <= whole_seconds(since)
}

fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Copies the headers a 304 carries from the headers of the 200.
pub fn copy_not_modified_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in &NOT_MODIFIED_HEADERS {
        for value in from.get_all(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Formats `time` as an HTTP date (`Last-Modified`, `Date`).
pub fn http_date(time: SystemTime) -> HeaderValue {
    HeaderValue::try_from(httpdate::fmt_http_date(time)).expect("an HTTP date is a valid header")
}

/// Reads an HTTP date header (`Last-Modified`, `Date`, `Expires`,
/// `If-Modified-Since`), if it parses.
///
/// All three formats of RFC 9110 §5.6.7 are read, and case-insensitively,
/// as RFC 9111 §4.2 asks of caches: `mon, 01 jan 2024 00:00:00 gmt` is a
/// date, as it is to most servers.
///
/// ```
/// use http::HeaderValue;
/// use strata::conditional::parse_http_date;
///
/// let exact = parse_http_date(&HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"));
/// let lower = parse_http_date(&HeaderValue::from_static("mon, 01 jan 2024 00:00:00 gmt"));
/// assert!(exact.is_some());
/// assert_eq!(exact, lower);
/// assert_eq!(parse_http_date(&HeaderValue::from_static("yesterday")), None);
/// ```
pub fn parse_http_date(value: &HeaderValue) -> Option<SystemTime> {
    let text = value.to_str().ok()?;
    if let Ok(time) = httpdate::parse_http_date(text) {
        return Some(time);
    }
    // The longest valid form, RFC 850's with "Wednesday", is 38 bytes.
    const LONGEST: usize = 40;
    if text.len() > LONGEST {
        return None;
    }
    let mut canonical = [0u8; LONGEST];
    let canonical = &mut canonical[..text.len()];
    let mut word_start = true;
    for (to, &from) in canonical.iter_mut().zip(text.as_bytes()) {
        *to = if word_start {
            from.to_ascii_uppercase()
        } else {
            from.to_ascii_lowercase()
        };
        word_start = !from.is_ascii_alphabetic();
    }
    if let Some(zone) = canonical.strip_suffix(b"Gmt".as_slice()).map(<[u8]>::len) {
        canonical[zone..].make_ascii_uppercase();
    }
    httpdate::parse_http_date(std::str::from_utf8(canonical).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with(name: HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn etag_is_strong_quoted_and_stable() {
        let a = etag_for(b"body");
        assert_eq!(a, etag_for(b"body"));
        assert_ne!(a, etag_for(b"body2"));
        assert_eq!(a.len(), 34);
        assert!(a.to_str().unwrap().starts_with('"'));
    }

    #[test]
    fn weak_comparison_lists_and_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(if_none_match_matches(
            &with(IF_NONE_MATCH, "\"abc\""),
            &etag
        ));
        assert!(if_none_match_matches(
            &with(IF_NONE_MATCH, "W/\"abc\""),
            &etag
        ));
        assert!(if_none_match_matches(
            &with(IF_NONE_MATCH, "\"x\", W/\"abc\""),
            &etag
        ));
        assert!(if_none_match_matches(&with(IF_NONE_MATCH, "*"), &etag));
        assert!(!if_none_match_matches(
            &with(IF_NONE_MATCH, "\"abcd\""),
            &etag
        ));
        assert!(!if_none_match_matches(&with(IF_NONE_MATCH, ""), &etag));
        assert!(!if_none_match_matches(&HeaderMap::new(), &etag));
        let weak_stored = HeaderValue::from_static("W/\"abc\"");
        assert!(if_none_match_matches(
            &with(IF_NONE_MATCH, "\"abc\""),
            &weak_stored
        ));
    }

    #[test]
    fn several_if_none_match_fields_are_one_list() {
        let mut headers = with(IF_NONE_MATCH, "\"x\"");
        headers.append(IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(if_none_match_matches(
            &headers,
            &HeaderValue::from_static("\"abc\"")
        ));
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut headers = with(IF_NONE_MATCH, "\"other\"");
        headers.insert(
            IF_MODIFIED_SINCE,
            http_date(modified + Duration::from_secs(10)),
        );
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(!is_not_modified(&headers, Some(&etag), Some(modified)));
        headers.remove(IF_NONE_MATCH);
        assert!(is_not_modified(&headers, Some(&etag), Some(modified)));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds_and_ignores_garbage() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_500);
        let mut headers = HeaderMap::new();
        headers.insert(IF_MODIFIED_SINCE, http_date(modified));
        assert!(is_not_modified(&headers, None, Some(modified)));
        headers.insert(
            IF_MODIFIED_SINCE,
            http_date(modified - Duration::from_secs(1)),
        );
        assert!(!is_not_modified(&headers, None, Some(modified)));
        headers.insert(IF_MODIFIED_SINCE, HeaderValue::from_static("yesterday"));
        assert!(!is_not_modified(&headers, None, Some(modified)));
        assert!(!is_not_modified(&HeaderMap::new(), None, Some(modified)));
    }

    #[test]
    fn several_if_modified_since_lines_are_ignored() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(IF_MODIFIED_SINCE, http_date(modified));
        assert!(is_not_modified(&headers, None, Some(modified)));
        headers.append(IF_MODIFIED_SINCE, http_date(modified));
        assert!(!is_not_modified(&headers, None, Some(modified)));
    }

    #[test]
    fn dates_are_read_in_any_case_and_in_all_three_formats() {
        let at = |text: &'static str| parse_http_date(&HeaderValue::from_static(text));
        let expected = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777));
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "SUNDAY, 06-NOV-94 08:49:37 gmt",
            "Sun Nov  6 08:49:37 1994",
            "sun nov  6 08:49:37 1994",
        ] {
            assert_eq!(at(text), expected, "{text}");
        }
        for text in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 GMT and some more text to be long",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(at(text), None, "{text}");
        }
        let not_ascii =
            HeaderValue::from_bytes("Sün, 06 Nov 1994 08:49:37 GMT".as_bytes()).unwrap();
        assert_eq!(parse_http_date(&not_ascii), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            IF_MODIFIED_SINCE,
            HeaderValue::from_static("sun, 06 nov 1994 08:49:37 gmt"),
        );
        assert!(is_not_modified(&headers, None, expected));
    }

    #[test]
    fn not_modified_copies_only_the_listed_headers() {
        let mut from = HeaderMap::new();
        from.insert(ETAG, HeaderValue::from_static("\"a\""));
        from.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=1"));
        from.insert(VARY, HeaderValue::from_static("accept-language"));
        from.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        let mut to = HeaderMap::new();
        copy_not_modified_headers(&from, &mut to);
        assert_eq!(to.len(), 3);
        assert!(!to.contains_key(http::header::CONTENT_TYPE));
    }
}
