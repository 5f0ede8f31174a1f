//! Freshening a stored response with a 304 Not Modified (RFC 9111 §4.3.3,
//! §4.3.4, §3.2).

use http::header::{CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue};

use crate::fields::is_hop_by_hop;

/// Whether a 304 received for a revalidation refers to the stored response
/// it revalidated (RFC 9111 §4.3.4):
///
/// - a strong `ETag` in the 304 must equal the stored one, strongly (both
///   strong, same opaque tag);
/// - else a weak `ETag` must equal the stored one by weak comparison;
/// - else a `Last-Modified` must equal the stored one;
/// - a 304 with no validator at all selects the stored response. §4.3.4
///   asks the stored response to lack validators too; strata is lenient
///   here because it sent the stored validators itself, so the 304 can
///   only be about that response.
///
/// When this is `false` the 304 must not update the stored response; the
/// caller should repeat the request without conditions.
pub(crate) fn not_modified_selects(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    if let Some(new) = not_modified.get(ETAG) {
        let Some(old) = stored.get(ETAG) else {
            return false;
        };
        let (new_weak, new_tag) = split_etag(new);
        let (old_weak, old_tag) = split_etag(old);
        return if new_weak {
            new_tag == old_tag
        } else {
            !old_weak && new_tag == old_tag
        };
    }
    if let Some(new) = not_modified.get(LAST_MODIFIED) {
        return stored.get(LAST_MODIFIED) == Some(new);
    }
    true
}

fn split_etag(value: &HeaderValue) -> (bool, &[u8]) {
    let bytes = value.as_bytes().trim_ascii();
    match bytes.strip_prefix(b"W/") {
        Some(tag) => (true, tag),
        None => (false, bytes),
    }
}

/// The stored response's headers updated with those of a 304 (RFC 9111
/// §3.2, §4.3.4): every field the 304 carries replaces all lines of that
/// field in the stored headers, or is added; the stored fields the 304
/// does not carry stay.
///
/// Not taken from the 304 (§3.2): `Content-Length` (it describes the 304's
/// empty body), the hop-by-hop fields and those the 304's `Connection`
/// names (§3.1). The caller should then read the directives again from the
/// result, strip what a qualified `private` lists
/// ([`strip_unstorable_fields`](super::strip_unstorable_fields)), and
/// restart the age calculation from the revalidation's times and the 304's
/// `Date` and `Age` ([`ResponseTiming`](super::ResponseTiming)).
pub(crate) fn freshen_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut updated = stored.clone();
    for name in not_modified.keys() {
        if name == CONTENT_LENGTH || is_hop_by_hop(name, not_modified) {
            continue;
        }
        let mut values = not_modified.get_all(name).iter();
        if let Some(first) = values.next() {
            updated.insert(name.clone(), first.clone());
            for value in values {
                updated.append(name.clone(), value.clone());
            }
        }
    }
    updated
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rfc9111::header_map as map;

    #[test]
    fn present_fields_are_replaced_and_new_ones_added() {
        let stored = map(&[
            ("cache-control", "max-age=10"),
            ("content-type", "text/plain"),
            ("x-old", "1"),
            ("x-old", "2"),
            ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ]);
        let not_modified = map(&[
            ("cache-control", "max-age=60"),
            ("x-old", "3"),
            ("x-new", "a"),
            ("x-new", "b"),
            ("date", "Tue, 02 Jan 2024 00:00:00 GMT"),
        ]);
        let updated = freshen_headers(&stored, &not_modified);
        assert_eq!(updated["cache-control"], "max-age=60");
        assert_eq!(updated["content-type"], "text/plain");
        let old: Vec<_> = updated.get_all("x-old").iter().collect();
        assert_eq!(old, ["3"]);
        let new: Vec<_> = updated.get_all("x-new").iter().collect();
        assert_eq!(new, ["a", "b"]);
        assert_eq!(updated["date"], "Tue, 02 Jan 2024 00:00:00 GMT");
    }

    #[test]
    fn content_length_and_hop_by_hop_fields_are_kept_from_the_stored_response() {
        let stored = map(&[("content-length", "42"), ("x-trace", "stored")]);
        let not_modified = map(&[
            ("content-length", "0"),
            ("connection", "x-trace"),
            ("transfer-encoding", "chunked"),
            ("keep-alive", "timeout=5"),
            ("x-trace", "new"),
            ("etag", "\"v1\""),
        ]);
        let updated = freshen_headers(&stored, &not_modified);
        assert_eq!(updated["content-length"], "42");
        assert_eq!(updated["x-trace"], "stored");
        assert_eq!(updated["etag"], "\"v1\"");
        for name in ["connection", "transfer-encoding", "keep-alive"] {
            assert!(!updated.contains_key(name), "{name}");
        }
    }

    #[test]
    fn strong_etags_select_only_an_equal_strong_etag() {
        let stored = map(&[("etag", "\"v1\"")]);
        assert!(not_modified_selects(&stored, &map(&[("etag", "\"v1\"")])));
        assert!(!not_modified_selects(&stored, &map(&[("etag", "\"v2\"")])));
        let weak = map(&[("etag", "W/\"v1\"")]);
        assert!(!not_modified_selects(&weak, &map(&[("etag", "\"v1\"")])));
        assert!(!not_modified_selects(
            &HeaderMap::new(),
            &map(&[("etag", "\"v1\"")])
        ));
    }

    #[test]
    fn weak_etags_compare_weakly() {
        let weak = map(&[("etag", "W/\"v1\"")]);
        let strong = map(&[("etag", "\"v1\"")]);
        assert!(not_modified_selects(&weak, &map(&[("etag", "W/\"v1\"")])));
        assert!(not_modified_selects(&strong, &map(&[("etag", "W/\"v1\"")])));
        assert!(!not_modified_selects(&weak, &map(&[("etag", "W/\"v2\"")])));
    }

    #[test]
    fn last_modified_and_no_validator() {
        let date = "Mon, 01 Jan 2024 00:00:00 GMT";
        let stored = map(&[("last-modified", date)]);
        assert!(not_modified_selects(
            &stored,
            &map(&[("last-modified", date)])
        ));
        assert!(!not_modified_selects(
            &stored,
            &map(&[("last-modified", "Tue, 02 Jan 2024 00:00:00 GMT")])
        ));
        assert!(not_modified_selects(&stored, &HeaderMap::new()));
    }
}
