//! Range requests answered from a stored response (RFC 9110 §14): which
//! part of the representation a GET asks for, given its `Range` and
//! `If-Range`. Pure functions of the request's headers and the stored
//! validators; the response is built in `service::respond`.
//!
//! One range is answered with 206 and `Content-Range`; a range that starts
//! past the end, or a zero-length suffix, with 416. Several ranges get the
//! whole 200 (a server may ignore `Range`, RFC 9110 §14.2): a
//! `multipart/byteranges` answer would copy the body for a form of request
//! browsers and download tools rarely send. A `Range` that does not parse,
//! or names another unit than `bytes`, is ignored the same way.

use std::time::SystemTime;

use http::HeaderMap;
use http::HeaderValue;
use http::header::{IF_RANGE, RANGE};

use crate::conditional;

/// What a request's `Range` asks of a representation of some length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The whole representation (no `Range`, one ignored, or an `If-Range`
    /// that does not match).
    Whole,
    /// Bytes `first..=last` (inclusive, within the length).
    Part { first: u64, last: u64 },
    /// Nothing the representation holds: 416.
    Unsatisfiable,
}

/// What `request` asks of a stored representation `length` bytes long,
/// whose validators are `etag` and `last_modified` (the stored
/// `Last-Modified` field, if it has one).
pub(crate) fn wanted(
    request: &HeaderMap,
    length: u64,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
) -> Wanted {
    let Some(range) = request.get(RANGE) else {
        return Wanted::Whole;
    };
    if request.get_all(RANGE).iter().nth(1).is_some() {
        return Wanted::Whole;
    }
    if let Some(condition) = request.get(IF_RANGE)
        && !if_range_matches(condition, etag, last_modified)
    {
        return Wanted::Whole;
    }
    parse(range.as_bytes(), length)
}

/// `If-Range` (RFC 9110 §13.1.5): an entity tag matches by strong
/// comparison with a strong stored tag; a date matches when it is exactly
/// the stored `Last-Modified`.
fn if_range_matches(
    condition: &HeaderValue,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
) -> bool {
    let condition = condition.as_bytes().trim_ascii();
    if condition.starts_with(b"\"") || condition.starts_with(b"W/") {
        return etag.is_some_and(|etag| {
            let etag = etag.as_bytes();
            !etag.starts_with(b"W/") && !condition.starts_with(b"W/") && etag == condition
        });
    }
    let (Some(stored), Ok(condition)) = (last_modified, HeaderValue::from_bytes(condition)) else {
        return false;
    };
    let parse = |value: &HeaderValue| -> Option<SystemTime> { conditional::parse_http_date(value) };
    matches!((parse(&condition), parse(stored)), (Some(a), Some(b)) if a == b)
}

/// `bytes=first-last`, `bytes=first-` or `bytes=-suffix`, one range.
fn parse(range: &[u8], length: u64) -> Wanted {
    let Some(spec) = strip_unit(range) else {
        return Wanted::Whole;
    };
    let spec = spec.trim_ascii();
    if spec.contains(&b',') {
        return Wanted::Whole;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Wanted::Whole;
    };
    let (first, last) = (spec[..dash].trim_ascii(), spec[dash + 1..].trim_ascii());
    match (number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || length == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part {
                    first: length.saturating_sub(suffix),
                    last: length - 1,
                }
            }
        }
        // bytes=N-: from N to the end.
        (Some(first), None) if last.is_empty() => part(first, u64::MAX, length),
        (Some(first), Some(last)) if first <= last => part(first, last, length),
        _ => Wanted::Whole,
    }
}

fn part(first: u64, last: u64, length: u64) -> Wanted {
    if first >= length {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part {
        first,
        last: last.min(length - 1),
    }
}

/// The range set after `bytes=` (the unit compared without case).
fn strip_unit(range: &[u8]) -> Option<&[u8]> {
    let range = range.trim_ascii_start();
    let (unit, rest) = range.split_at_checked(6)?;
    unit.eq_ignore_ascii_case(b"bytes=").then_some(rest)
}

/// Digits only, no sign, no overflow.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(range: &str, if_range: Option<&str>) -> Wanted {
        let mut request = HeaderMap::new();
        request.insert(RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(condition) = if_range {
            request.insert(IF_RANGE, HeaderValue::from_str(condition).unwrap());
        }
        let etag = HeaderValue::from_static("\"v1\"");
        let modified = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        wanted(&request, 1000, Some(&etag), Some(&modified))
    }

    fn part(first: u64, last: u64) -> Wanted {
        Wanted::Part { first, last }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(ask("bytes=0-99", None), part(0, 99));
        assert_eq!(ask("bytes=-100", None), part(900, 999));
        assert_eq!(ask("bytes=900-", None), part(900, 999));
        assert_eq!(ask("bytes=990-5000", None), part(990, 999), "clamped");
        assert_eq!(ask("BYTES= 5 - 5", None), part(5, 5));
        assert_eq!(
            ask("bytes=-5000", None),
            part(0, 999),
            "a suffix longer than it all"
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(ask("bytes=1000-", None), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=5000-6000", None), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=-0", None), Wanted::Unsatisfiable);
    }

    #[test]
    fn what_is_ignored() {
        for range in [
            "bytes=0-0,-1",
            "bytes=abc",
            "bytes=5-1",
            "items=0-5",
            "bytes=",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(ask(range, None), Wanted::Whole, "{range}");
        }
        assert_eq!(wanted(&HeaderMap::new(), 10, None, None), Wanted::Whole);
    }

    #[test]
    fn if_range_by_tag_and_by_date() {
        assert_eq!(ask("bytes=0-9", Some("\"v1\"")), part(0, 9));
        assert_eq!(ask("bytes=0-9", Some("\"v2\"")), Wanted::Whole);
        assert_eq!(
            ask("bytes=0-9", Some("W/\"v1\"")),
            Wanted::Whole,
            "weak never matches"
        );
        assert_eq!(
            ask("bytes=0-9", Some("Sun, 06 Nov 1994 08:49:37 GMT")),
            part(0, 9)
        );
        assert_eq!(
            ask("bytes=0-9", Some("Sun, 06 Nov 1994 08:49:38 GMT")),
            Wanted::Whole
        );
        assert_eq!(ask("bytes=0-9", Some("tomorrow")), Wanted::Whole);
    }

    #[test]
    fn a_weak_stored_tag_never_matches() {
        let mut request = HeaderMap::new();
        request.insert(RANGE, HeaderValue::from_static("bytes=0-9"));
        request.insert(IF_RANGE, HeaderValue::from_static("\"v1\""));
        let weak = HeaderValue::from_static("W/\"v1\"");
        assert_eq!(wanted(&request, 100, Some(&weak), None), Wanted::Whole);
    }
}
