//! Lookup as a table: what is stored, how old, what the request asks ->
//! the step.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use super::*;
use crate::entry::{CachedResponse, VariantRule};

const NOW: SystemTime = SystemTime::UNIX_EPOCH;
const PRIMARY: &str = "t:dev:http:/p";

fn keys() -> KeyBuilder {
    KeyBuilder::new("t", "dev")
}

/// A stored response `age` seconds old, fresh for `ttl`, kept `kept` past
/// it, with this `Cache-Control`.
fn response(age: u64, ttl: u64, kept: u64, cache_control: &'static str) -> Arc<Entry> {
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static(cache_control));
    let now = NOW + Duration::from_secs(1_000_000);
    Arc::new(Entry {
        key: PRIMARY.to_owned(),
        name: "/p".to_owned(),
        user: None,
        tags: Vec::new(),
        stored_at: now - Duration::from_secs(age),
        ttl: Duration::from_secs(ttl),
        stale: Duration::from_secs(kept),
        kind: EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            headers,
            Bytes::from_static(b"body"),
            NOW,
        )),
    })
}

fn rule(rule: VariantRule) -> Arc<Entry> {
    let now = NOW + Duration::from_secs(1_000_000);
    Arc::new(Entry {
        key: PRIMARY.to_owned(),
        name: "/p".to_owned(),
        user: None,
        tags: Vec::new(),
        stored_at: now,
        ttl: Duration::from_secs(60),
        stale: Duration::ZERO,
        kind: EntryKind::Variants(rule),
    })
}

/// The step's name, and for a miss its `fwd` and whether a stale copy and
/// `stale-if-error` come along.
fn name(step: &Step) -> String {
    match step {
        Step::Hit(..) => "hit".to_owned(),
        Step::Variant(key) => format!("variant {key}"),
        Step::Miss {
            fwd,
            stale,
            fallback,
            ..
        } => format!(
            "miss {fwd:?}{}{}",
            if stale.is_some() { " +stale" } else { "" },
            if fallback.if_error { " +if-error" } else { "" }
        ),
        Step::Accepted(..) => "accepted".to_owned(),
        Step::Unsatisfiable => "504".to_owned(),
        Step::Stale { .. } => "stale-while-revalidate".to_owned(),
        Step::Pass => "pass".to_owned(),
        Step::Bypass => "bypass".to_owned(),
    }
}

fn look(found: Option<Arc<Entry>>, request: &[&'static str], user: Option<&str>) -> String {
    let keys = keys();
    let mut headers = HeaderMap::new();
    for value in request {
        headers.append("cache-control", HeaderValue::from_static(value));
    }
    let directives = (!request.is_empty()).then(|| RequestDirectives::from_headers(&headers));
    let mut lazy = LazyUser::default();
    let mut asking = Asking {
        keys: &keys,
        headers: &headers,
        directives: directives.as_ref(),
        user: &mut lazy,
        resolve: || user.map(str::to_owned),
        now: NOW + Duration::from_secs(1_000_000),
        targets: crate::rfc9111::Targets::APP,
        stale_if_disconnected: Duration::ZERO,
    };
    name(&asking.at_primary(PRIMARY, found))
}

#[test]
fn what_a_stored_response_means_at_its_age() {
    let swr = "public, max-age=10, stale-while-revalidate=30, stale-if-error=60";
    let cases: &[(&str, Arc<Entry>, &str)] = &[
        ("fresh", response(5, 10, 60, swr), "hit"),
        (
            "at its lifetime: stale",
            response(10, 10, 60, swr),
            "stale-while-revalidate",
        ),
        (
            "in the swr window",
            response(25, 10, 60, swr),
            "stale-while-revalidate",
        ),
        (
            "at the window's end: inclusive",
            response(40, 10, 60, swr),
            "stale-while-revalidate",
        ),
        (
            "past swr, in sie",
            response(41, 10, 60, swr),
            "miss Stale +stale +if-error",
        ),
        ("past both", response(71, 10, 60, swr), "miss Stale +stale"),
        (
            "windows no longer than the store keeps it",
            response(25, 10, 5, swr),
            "miss Stale +stale",
        ),
        (
            "kept for nothing",
            response(11, 10, 0, swr),
            "miss Stale +stale",
        ),
        (
            "within what is kept",
            response(14, 10, 5, swr),
            "stale-while-revalidate",
        ),
        (
            "must-revalidate forbids stale",
            response(
                15,
                10,
                60,
                "max-age=10, must-revalidate, stale-while-revalidate=30",
            ),
            "miss Stale +stale",
        ),
        (
            "no-cache is stored with no freshness",
            response(0, 0, 3600, "no-cache"),
            "miss Stale +stale",
        ),
    ];
    for (what, entry, expect) in cases {
        assert_eq!(look(Some(Arc::clone(entry)), &[], None), *expect, "{what}");
    }
}

#[test]
fn malformed_windows_grant_nothing_and_huge_ones_saturate() {
    let cases: &[(&str, &'static str, &str)] = &[
        (
            "negative and not a number",
            "max-age=10, stale-while-revalidate=-5, stale-if-error=soon",
            "miss Stale +stale",
        ),
        (
            "no value",
            "max-age=10, stale-while-revalidate",
            "miss Stale +stale",
        ),
        (
            "too large: saturates, bounded by what is kept",
            "max-age=10, stale-if-error=99999999999999999999999",
            "miss Stale +stale +if-error",
        ),
    ];
    for (what, cache_control, expect) in cases {
        let entry = response(15, 10, 60, cache_control);
        assert_eq!(look(Some(entry), &[], None), *expect, "{what}");
    }
}

#[test]
fn what_the_clients_directives_change() {
    let swr = "public, max-age=10, stale-while-revalidate=30";
    let cases: &[(&str, Arc<Entry>, &[&str], &str)] = &[
        (
            "no-cache on a fresh copy",
            response(5, 10, 60, swr),
            &["no-cache"],
            "miss Request +stale",
        ),
        (
            "max-age below its age",
            response(5, 10, 60, swr),
            &["max-age=2"],
            "miss Request +stale",
        ),
        (
            "max-age above its age",
            response(5, 10, 60, swr),
            &["max-age=20"],
            "hit",
        ),
        (
            "min-fresh it cannot give",
            response(5, 10, 60, swr),
            &["min-fresh=8"],
            "miss Request +stale",
        ),
        (
            "no-cache in the swr window",
            response(15, 10, 60, swr),
            &["no-cache"],
            "miss Request +stale",
        ),
        (
            "max-stale",
            response(75, 10, 120, "max-age=10"),
            &["max-stale=100"],
            "accepted",
        ),
        (
            "max-stale not enough",
            response(75, 10, 120, "max-age=10"),
            &["max-stale=10"],
            "miss Stale +stale",
        ),
        (
            "only-if-cached, fresh",
            response(5, 10, 60, swr),
            &["only-if-cached"],
            "hit",
        ),
        (
            "only-if-cached, stale",
            response(75, 10, 120, "max-age=10"),
            &["only-if-cached"],
            "504",
        ),
    ];
    for (what, entry, request, expect) in cases {
        assert_eq!(
            look(Some(Arc::clone(entry)), request, None),
            *expect,
            "{what}"
        );
    }
    assert_eq!(
        look(None, &["only-if-cached"], None),
        "504",
        "nothing stored"
    );
    assert_eq!(look(None, &["no-cache"], None), "miss UriMiss");
}

#[test]
fn rules_send_requests_to_their_variant_or_past_the_cache() {
    let per_user = rule(VariantRule {
        per_user: true,
        vary: Vec::new(),
        pass: false,
    });
    assert_eq!(
        look(Some(Arc::clone(&per_user)), &[], None),
        "bypass",
        "an anonymous request never reaches a private variant"
    );
    assert!(look(Some(per_user), &[], Some("alice")).starts_with("variant t:dev:http:/p#u=alice"));
    let varied = rule(VariantRule {
        per_user: false,
        vary: vec![HeaderName::from_static("accept-language")],
        pass: false,
    });
    assert!(look(Some(varied), &[], Some("alice")).starts_with("variant t:dev:http:/p#"));
    let pass = rule(VariantRule {
        pass: true,
        ..VariantRule::default()
    });
    assert_eq!(look(Some(Arc::clone(&pass)), &[], None), "pass");
    assert_eq!(look(Some(pass), &["only-if-cached"], None), "504");
    assert_eq!(look(None, &[], None), "miss UriMiss");
}

#[test]
fn first_misses_of_different_users_never_share_a_flight() {
    let keys = keys();
    let headers = HeaderMap::new();
    let flight = |user: Option<&'static str>| {
        let mut lazy = LazyUser::default();
        let mut asking = Asking {
            keys: &keys,
            headers: &headers,
            directives: None,
            user: &mut lazy,
            resolve: || user.map(str::to_owned),
            now: NOW,
            targets: crate::rfc9111::Targets::APP,
            stale_if_disconnected: Duration::ZERO,
        };
        match asking.at_primary(PRIMARY, None) {
            Step::Miss { flight_key, .. } => flight_key,
            other => panic!("{}", name(&other)),
        }
    };
    let (alice, bob, anyone) = (flight(Some("alice")), flight(Some("bob")), flight(None));
    assert_ne!(alice, bob);
    assert_ne!(alice, anyone);
    assert_eq!(anyone, PRIMARY);
}
