//! Parsing cache directives: every name, quoting, field lists, duplicates, bad values, Pragma.

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, HeaderValue};

use super::request::MaxStale;
use super::*;

fn response(lines: &[&'static str]) -> ResponseDirectives {
    let values: Vec<HeaderValue> = lines.iter().map(|l| HeaderValue::from_static(l)).collect();
    ResponseDirectives::parse(&values)
}

fn request(lines: &[&'static str]) -> RequestDirectives {
    let values: Vec<HeaderValue> = lines.iter().map(|l| HeaderValue::from_static(l)).collect();
    RequestDirectives::parse(&values)
}

fn names(list: &[&'static str]) -> FieldScope {
    FieldScope::Only(list.iter().map(|n| HeaderName::from_static(n)).collect())
}

#[test]
fn every_response_directive_is_read() {
    let cc = response(&[
        "max-age=60, s-maxage=120, no-cache, no-store, private, public",
        "must-revalidate, proxy-revalidate, must-understand, no-transform, immutable",
        "stale-while-revalidate=30, stale-if-error=600",
    ]);
    assert_eq!(cc.max_age, Some(60));
    assert_eq!(cc.s_maxage, Some(120));
    assert_eq!(cc.no_cache, Some(FieldScope::All));
    assert_eq!(cc.private, Some(FieldScope::All));
    assert!(cc.no_store && cc.public && cc.must_revalidate && cc.proxy_revalidate);
    assert!(cc.must_understand && cc.no_transform && cc.immutable);
    assert_eq!(cc.stale_while_revalidate, Some(30));
    assert_eq!(cc.stale_if_error, Some(600));
    assert!(!cc.invalid_freshness);
    assert_eq!(cc.source, DirectiveSource::CacheControl);
}

#[test]
fn every_request_directive_is_read() {
    let cc = request(&[
        "max-age=5, max-stale=10, min-fresh=3",
        "no-cache, no-store, no-transform, only-if-cached, stale-if-error=20",
    ]);
    assert_eq!(cc.max_age, Some(5));
    assert_eq!(cc.max_stale, Some(MaxStale::Within(10)));
    assert_eq!(cc.min_fresh, Some(3));
    assert!(cc.no_cache && cc.no_store && cc.no_transform && cc.only_if_cached);
    assert_eq!(cc.stale_if_error, Some(20));
    assert_eq!(request(&["max-stale"]).max_stale, Some(MaxStale::Any));
}

#[test]
fn names_are_case_insensitive_and_whitespace_is_tolerated() {
    let cc = response(&["  PUBLIC ,\tMax-Age = 60 ,, ,NO-Transform  "]);
    assert!(cc.public && cc.no_transform);
    assert_eq!(cc.max_age, Some(60));
}

#[test]
fn quoted_arguments_are_tolerated() {
    assert_eq!(response(&["max-age=\"60\""]).max_age, Some(60));
    assert_eq!(response(&["max-age=\"6\\0\""]).max_age, Some(60));
    assert_eq!(
        request(&["max-stale=\"7\""]).max_stale,
        Some(MaxStale::Within(7))
    );
}

#[test]
fn field_lists_are_read_from_quoted_strings_with_commas() {
    let cc = response(&["private=\"Set-Cookie, X-User\", no-cache=\"x-a\", max-age=5"]);
    assert_eq!(cc.private, Some(names(&["set-cookie", "x-user"])));
    assert_eq!(cc.no_cache, Some(names(&["x-a"])));
    assert_eq!(cc.max_age, Some(5));
    // The token form is tolerated too.
    assert_eq!(
        response(&["private=set-cookie"]).private,
        Some(names(&["set-cookie"]))
    );
}

#[test]
fn field_lists_merge_and_the_unqualified_form_wins() {
    let cc = response(&["private=\"a\"", "private=\"b, a\""]);
    assert_eq!(cc.private, Some(names(&["a", "b"])));
    assert_eq!(
        response(&["private=\"a\", private"]).private,
        Some(FieldScope::All)
    );
    assert_eq!(
        response(&["no-cache, no-cache=\"a\""]).no_cache,
        Some(FieldScope::All)
    );
}

#[test]
fn unreadable_field_lists_apply_to_the_whole_response() {
    assert_eq!(
        response(&["private=\"bad name\""]).private,
        Some(FieldScope::All)
    );
    assert_eq!(response(&["private=\"\""]).private, Some(FieldScope::All));
    assert_eq!(response(&["private=\"a"]).private, Some(FieldScope::All));
}

#[test]
fn invalid_delta_seconds_make_the_response_stale() {
    for line in [
        "max-age=-1",
        "max-age=abc",
        "max-age=",
        "max-age",
        "max-age=1.5",
        "max-age=6 0",
        "s-maxage=x",
    ] {
        let cc = response(&[line]);
        assert!(cc.invalid_freshness, "{line}");
    }
}

#[test]
fn overflowing_delta_seconds_saturate_at_two_to_the_31() {
    assert_eq!(
        response(&["max-age=2147483647"]).max_age,
        Some(2_147_483_647)
    );
    assert_eq!(
        response(&["max-age=2147483648"]).max_age,
        Some(DELTA_SECONDS_MAX)
    );
    let huge = response(&["max-age=99999999999999999999999999999"]);
    assert_eq!(huge.max_age, Some(DELTA_SECONDS_MAX));
    assert!(!huge.invalid_freshness);
}

#[test]
fn conflicting_duplicates_make_the_response_stale() {
    let cc = response(&["max-age=60", "max-age=120"]);
    assert!(cc.invalid_freshness);
    assert_eq!(cc.max_age, Some(60));
    // The same value twice is not a conflict.
    assert!(!response(&["max-age=60, max-age=60"]).invalid_freshness);
    assert!(response(&["s-maxage=1, s-maxage=2"]).invalid_freshness);
    assert!(response(&["max-age=1, max-age=x"]).invalid_freshness);
}

#[test]
fn conflicting_stale_windows_are_dropped() {
    let cc = response(&["stale-while-revalidate=1, stale-while-revalidate=2"]);
    assert_eq!(cc.stale_while_revalidate, None);
    assert_eq!(response(&["stale-if-error=x"]).stale_if_error, None);
    assert!(!response(&["stale-if-error=x"]).invalid_freshness);
}

#[test]
fn request_duplicates_take_the_most_restrictive_value() {
    let cc = request(&["max-age=10, max-age=5, min-fresh=1, min-fresh=9"]);
    assert_eq!(cc.max_age, Some(5));
    assert_eq!(cc.min_fresh, Some(9));
    let cc = request(&[
        "max-stale, max-stale=30",
        "stale-if-error=9, stale-if-error=4",
    ]);
    assert_eq!(cc.max_stale, Some(MaxStale::Within(30)));
    assert_eq!(cc.stale_if_error, Some(4));
    // Invalid arguments are ignored.
    let cc = request(&["max-age=-3, max-stale=x, min-fresh="]);
    assert_eq!((cc.max_age, cc.max_stale, cc.min_fresh), (None, None, None));
}

#[test]
fn pragma_counts_only_without_cache_control() {
    let mut headers = HeaderMap::new();
    headers.insert(PRAGMA, HeaderValue::from_static("foo, No-Cache"));
    assert!(RequestDirectives::from_headers(&headers).no_cache);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=10"));
    let cc = RequestDirectives::from_headers(&headers);
    assert!(!cc.no_cache);
    assert_eq!(cc.max_age, Some(10));
}

#[test]
fn unknown_directives_and_garbage_are_skipped() {
    let cc = response(&["foo=\"a,b\", =5, \"x\", bar=baz, public, ext=\"unterminated"]);
    assert!(cc.public);
    let cc = response(&["max-age=60;q=1, public"]);
    assert!(cc.invalid_freshness && cc.public);
    // Garbage does not hide a directive.
    let cc = response(&[
        "public private",
        "foo;bar no-store",
        "\"x, y\" must-revalidate",
    ]);
    assert!(cc.public && cc.no_store && cc.must_revalidate);
    assert_eq!(cc.private, Some(FieldScope::All));
}

#[test]
fn forbids_stale_follows_the_revalidation_directives() {
    assert!(response(&["must-revalidate"]).forbids_stale());
    assert!(response(&["proxy-revalidate"]).forbids_stale());
    assert!(response(&["no-cache"]).forbids_stale());
    assert!(!response(&["max-age=5, s-maxage=5"]).forbids_stale());
}

#[test]
fn max_stale_accepts_within_its_bound() {
    use std::time::Duration;
    assert!(MaxStale::Any.accepts(Duration::from_secs(u64::MAX)));
    assert!(MaxStale::Within(10).accepts(Duration::from_secs(10)));
    assert!(!MaxStale::Within(10).accepts(Duration::from_millis(10_001)));
}
