//! Targeted cache-control fields: which one wins, how they are typed, when they fall back.

use super::*;
use http::HeaderName;

use crate::rfc9111::STRATA_CACHE_CONTROL;
use http::HeaderValue;

use crate::rfc9111::header_map as headers;

#[test]
fn the_strata_field_wins_over_the_cdn_field_and_cache_control() {
    let map = headers(&[
        ("cache-control", "max-age=10"),
        ("cdn-cache-control", "max-age=20"),
        ("strata-cache-control", "max-age=30"),
    ]);
    let cc = response_directives(&map, crate::rfc9111::Targets::STRATA_THEN_CDN);
    assert_eq!((cc.source, cc.max_age), (DirectiveSource::Strata, Some(30)));
    assert_eq!(cc.source.header_name(), STRATA_CACHE_CONTROL);
}

#[test]
fn the_cdn_field_counts_only_when_configured() {
    let map = headers(&[
        ("cache-control", "max-age=10"),
        ("cdn-cache-control", "max-age=20"),
    ]);
    assert_eq!(
        response_directives(&map, crate::rfc9111::Targets::STRATA_THEN_CDN).max_age,
        Some(20)
    );
    let plain = response_directives(&map, crate::rfc9111::Targets::APP);
    assert_eq!(
        (plain.source, plain.max_age),
        (DirectiveSource::CacheControl, Some(10))
    );
}

#[test]
fn a_targeted_field_replaces_cache_control_entirely() {
    let map = headers(&[
        ("cache-control", "private, no-store, must-revalidate"),
        ("strata-cache-control", "max-age=60"),
    ]);
    let cc = response_directives(&map, crate::rfc9111::Targets::APP);
    assert_eq!(cc.max_age, Some(60));
    assert!(cc.private.is_none() && !cc.no_store && !cc.must_revalidate);
    assert!(cc.source.is_targeted());
}

#[test]
fn an_invalid_or_empty_targeted_field_falls_back() {
    for bad in [
        "Max-Age=60",
        "max-age=60,",
        "max-age=60 x",
        "max-age=1234567890123456",
        "private=\"unterminated",
        "",
        "   ",
        "max-age=é",
    ] {
        let mut map = headers(&[("cache-control", "max-age=10")]);
        map.append(
            STRATA_CACHE_CONTROL,
            HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        );
        let cc = response_directives(&map, crate::rfc9111::Targets::APP);
        assert_eq!(cc.source, DirectiveSource::CacheControl, "{bad:?}");
        assert_eq!(cc.max_age, Some(10));
    }
    // An invalid strata field does not hide a valid CDN one.
    let map = headers(&[
        ("strata-cache-control", "MAX-AGE"),
        ("cdn-cache-control", "max-age=20"),
    ]);
    assert_eq!(
        response_directives(&map, crate::rfc9111::Targets::STRATA_THEN_CDN).source,
        DirectiveSource::Cdn
    );
}

#[test]
fn structured_values_are_typed() {
    let map = headers(&[(
        "cdn-cache-control",
        "max-age=60;x=1, no-store=?0, must-revalidate, private=(set-cookie \"x-user\"), stale-if-error=30",
    )]);
    let cc = targeted_directives(&map, DirectiveSource::Cdn).unwrap();
    assert_eq!(cc.max_age, Some(60));
    assert!(!cc.no_store && cc.must_revalidate);
    assert_eq!(
        cc.private,
        Some(FieldScope::Only(vec![
            HeaderName::from_static("set-cookie"),
            HeaderName::from_static("x-user")
        ]))
    );
    assert_eq!(cc.stale_if_error, Some(30));
    let map = headers(&[("cdn-cache-control", "no-cache=\"set-cookie, x-a\"")]);
    let cc = targeted_directives(&map, DirectiveSource::Cdn).unwrap();
    assert!(matches!(cc.no_cache, Some(FieldScope::Only(ref n)) if n.len() == 2));
}

#[test]
fn wrongly_typed_max_age_makes_the_response_stale() {
    for value in [
        "max-age=\"60\"",
        "max-age=-1",
        "max-age=1.5",
        "max-age",
        "s-maxage=:AA==:",
    ] {
        let map = headers(&[("cdn-cache-control", value)]);
        let cc = targeted_directives(&map, DirectiveSource::Cdn).unwrap();
        assert!(cc.invalid_freshness, "{value}");
    }
}

#[test]
fn the_last_duplicate_member_wins_in_a_targeted_field() {
    let map = headers(&[
        ("cdn-cache-control", "max-age=-1, max-age=60"),
        ("cdn-cache-control", "no-store, no-store=?0"),
    ]);
    let cc = targeted_directives(&map, DirectiveSource::Cdn).unwrap();
    assert_eq!(cc.max_age, Some(60));
    assert!(!cc.invalid_freshness && !cc.no_store);
}

#[test]
fn large_integers_saturate() {
    let map = headers(&[("cdn-cache-control", "max-age=999999999999999")]);
    let cc = targeted_directives(&map, DirectiveSource::Cdn).unwrap();
    assert_eq!(cc.max_age, Some(DELTA_SECONDS_MAX));
}

#[test]
fn cache_control_is_never_read_as_a_targeted_field() {
    let map = headers(&[("cache-control", "max-age=1")]);
    assert_eq!(
        targeted_directives(&map, DirectiveSource::CacheControl),
        None
    );
}
