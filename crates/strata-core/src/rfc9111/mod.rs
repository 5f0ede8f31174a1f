//! HTTP caching semantics for a shared cache, as pure decisions: RFC 9111
//! (HTTP Caching), RFC 5861 (`stale-while-revalidate`, `stale-if-error`),
//! RFC 9213 (targeted cache-control fields) and RFC 8246 (`immutable`).
//!
//! These rules decide for [`CachePolicy::origin`](crate::CachePolicy::origin),
//! where the origin's headers say whether and how long a response is
//! stored (`admit/origin.rs`), and for every stored response, route
//! policies included, whether it may serve, fresh or stale
//! (`service/lookup.rs` asks [`serve`]). Every function here is pure: it
//! reads `http` types and times passed in (never the clock), and returns a
//! decision. The layer does the I/O. Internal: not part of the public API.
//!
//! | Step | RFC | Here |
//! |---|---|---|
//! | Read directives | 9111 §5.2, §5.4 | [`ResponseDirectives`], [`RequestDirectives`] |
//! | Pick the field that applies | 9213 §2 | [`response_directives`], [`DirectiveSource`] |
//! | May it be stored? | 9111 §3, §3.5 | [`storable`], [`NotStorable`], [`strip_unstorable_fields`] |
//! | For how long is it fresh? | 9111 §4.2.1, §4.2.2 | [`freshness_lifetime`], [`Lifetime`] |
//! | How old is it? | 9111 §4.2.3 | [`ResponseTiming`], [`current_age`] |
//! | Which variant? | 9111 §4.1 | [`Vary`], [`secondary_key`] |
//! | Serve, revalidate or forward? | 9111 §4, 5861 | [`serve`], [`Serve`] |
//! | Update with a 304 | 9111 §4.3.4, §3.2 | [`not_modified_selects`], [`freshen_headers`] |
//! | What does a write invalidate? | 9111 §4.4 | [`invalidation_targets`], [`Origin`] |
//! | Origin-set purge tags | (CDN practice) | [`surrogate_keys`] |
//!
//! strata is a *shared* cache throughout: `s-maxage` and `proxy-revalidate`
//! always apply, unqualified `private` is never stored.
//!
//! # Choices where the RFCs leave room
//!
//! - **Duplicates and invalid values** (§4.2.1). Response `max-age` or
//!   `s-maxage` repeated with different values, or without a valid
//!   delta-seconds, make the response stale; so do several different
//!   `Expires` lines. A conflicting or invalid `stale-while-revalidate` /
//!   `stale-if-error` is dropped. A request directive repeated takes its
//!   most restrictive value; one with an invalid argument is ignored.
//!   Delta-seconds saturate at 2^31 (§1.2.2). Quoted arguments
//!   (`max-age="60"`) are accepted (§5.2).
//! - **Qualified `no-cache`** is treated as unqualified (the response is
//!   always revalidated), as §5.2.2.4 notes caches commonly do. **Qualified
//!   `private`** is honoured: the response is stored without the listed
//!   fields.
//! - **`Pragma: no-cache`** on a request counts as `Cache-Control: no-cache`
//!   only when the request has no `Cache-Control` field (RFC 7234 §5.4; RFC
//!   9111 §5.4 deprecates `Pragma`).
//! - **206** responses are not stored (no range support), nor are status
//!   codes RFC 9110 does not define, nor `Vary: *` responses (they would
//!   never match).
//! - **Heuristic freshness** is 10 % of `Date` − `Last-Modified`, at most a
//!   cap the caller passes ([`DEFAULT_HEURISTIC_CAP`], one day), for
//!   heuristically cacheable statuses and `public` responses only.
//! - **`s-maxage` and stale content**: `s-maxage` implies
//!   `proxy-revalidate` (§5.2.2.10), so it disables the client's `max-stale`
//!   and request `stale-if-error`, but the origin's own
//!   `stale-while-revalidate` / `stale-if-error` next to it still apply.
//!   `must-revalidate`, `proxy-revalidate` and `no-cache` disable every
//!   kind of stale serving.
//! - **Vary normalisation**: see [`secondary_key`].
//! - **A 304 without validators** freshens the response strata revalidated
//!   (see [`not_modified_selects`]).
//! - **Targeted fields** are parsed as strict Structured Field Dictionaries;
//!   an invalid one is ignored as a whole, as RFC 9213 §2.2 requires.

mod age;
mod directives;
mod freshen;
mod freshness;
mod invalidate;
mod serve;
mod storable;
mod tags;
mod targeted;
mod vary;

pub(crate) use age::ResponseTiming;
pub(crate) use directives::{
    CDN_CACHE_CONTROL, RequestDirectives, ResponseDirectives, STRATA_CACHE_CONTROL,
};
pub(crate) use freshen::{freshen_headers, not_modified_selects};
pub(crate) use freshness::{DEFAULT_HEURISTIC_CAP, freshness_lifetime};
pub(crate) use invalidate::{Origin, invalidation_targets};
pub(crate) use serve::{IfDisconnected, Serve, Stored, if_disconnected, is_error_for_stale, serve};
pub(crate) use storable::{
    HEURISTICALLY_CACHEABLE, NotStorable, storable, strip_unstorable_fields,
};
pub(crate) use tags::{SURROGATE_KEY, surrogate_keys};
pub use targeted::TargetedField;
pub(crate) use targeted::{Targets, response_directives};
pub(crate) use vary::{Vary, write_secondary_key};

// What only the rules' own tests and fuzzing call.
#[cfg(test)]
pub(crate) use age::parse_age;
#[cfg(test)]
pub(crate) use directives::{DELTA_SECONDS_MAX, DirectiveSource, FieldScope};
#[cfg(test)]
pub(crate) use freshness::LifetimeSource;
#[cfg(test)]
pub(crate) use tags::CACHE_TAG;
#[cfg(test)]
pub(crate) use vary::{secondary_key, variant_matches};

/// A header map of `fields`, in order, repeated names appended: what the
/// rule tests build their messages from.
#[cfg(test)]
mod examples;

/// A header map of `fields`, in order, repeated names appended: what the
/// rule tests build their messages from.
#[cfg(test)]
fn header_map(fields: &[(&'static str, &'static str)]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in fields {
        headers.append(*name, http::HeaderValue::from_static(value));
    }
    headers
}

#[cfg(test)]
mod fuzz {
    //! "Never panics" and "never serves what it must not", over arbitrary
    //! field values.

    use std::time::{Duration, SystemTime};

    use http::header::{
        AGE, CACHE_CONTROL, CONTENT_LOCATION, DATE, EXPIRES, LAST_MODIFIED, LOCATION, PRAGMA, VARY,
    };
    use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, uri::Scheme};
    use proptest::prelude::*;

    use super::*;

    /// Field values: mostly directive-shaped text, sometimes any bytes a
    /// header value may hold.
    fn value() -> impl Strategy<Value = HeaderValue> {
        let shaped = proptest::string::string_regex(
            "[ ,=\"\\\\;a-zA-Z0-9*?():/.-]{0,40}|(max-age|s-maxage|no-cache|private|no-store|public|must-revalidate|stale-while-revalidate|stale-if-error|max-stale|min-fresh|only-if-cached)(=\"?-?[0-9]{0,25}\"?)?(, ?[a-z-]{1,12}(=[0-9a-z\"]{0,6})?){0,3}",
        )
        .unwrap()
        .prop_filter_map("header value", |s| HeaderValue::from_str(&s).ok());
        let raw = proptest::collection::vec(any::<u8>(), 0..60)
            .prop_filter_map("header value", |b| HeaderValue::from_bytes(&b).ok());
        prop_oneof![4 => shaped, 1 => raw]
    }

    fn headers() -> impl Strategy<Value = HeaderMap> {
        let names = [
            CACHE_CONTROL,
            STRATA_CACHE_CONTROL,
            CDN_CACHE_CONTROL,
            PRAGMA,
            EXPIRES,
            DATE,
            LAST_MODIFIED,
            AGE,
            VARY,
            LOCATION,
            CONTENT_LOCATION,
            SURROGATE_KEY,
            CACHE_TAG,
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("authorization"),
        ];
        proptest::collection::vec((0..names.len(), value()), 0..8).prop_map(move |fields| {
            let mut map = HeaderMap::new();
            for (index, value) in fields {
                map.append(names[index].clone(), value);
            }
            map
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_decision_panics(
            request in headers(),
            response in headers(),
            status in 100u16..600,
            age in 0u64..1_000_000,
            honour_cdn in any::<bool>(),
        ) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let status = StatusCode::from_u16(status).unwrap();
            let req = RequestDirectives::from_headers(&request);
            let targets = if honour_cdn { Targets::STRATA_THEN_CDN } else { Targets::APP };
            let resp = response_directives(&response, targets);
            prop_assert!(resp.max_age.is_none_or(|v| v <= DELTA_SECONDS_MAX));
            prop_assert!(req.max_age.is_none_or(|v| v <= DELTA_SECONDS_MAX));
            let verdict = storable(&Method::GET, &request, &req, status, &response, &resp);
            if resp.private == Some(FieldScope::All) || req.no_store {
                prop_assert!(verdict.is_err());
            }
            let lifetime = freshness_lifetime(status, &response, &resp, now, DEFAULT_HEURISTIC_CAP);
            let timing = ResponseTiming::new(now, now, &response);
            let current = timing.current_age(now + Duration::from_secs(age));
            let stored = Stored { directives: &resp, lifetime: lifetime.duration, current_age: current };
            let decision = serve(&req, Some(&stored), now);
            let stale = current >= lifetime.duration;
            if resp.forbids_stale() && stale {
                prop_assert!(
                    !matches!(decision, Serve::Stale | Serve::StaleWhileRevalidate | Serve::Fresh),
                    "{decision:?}"
                );
            }
            if resp.no_cache.is_some() {
                prop_assert!(
                    matches!(decision, Serve::Revalidate { stale_if_error_until: None } | Serve::GatewayTimeout),
                    "{decision:?}"
                );
            }
            let vary = Vary::from_headers(&response);
            let key = secondary_key(&vary, &request);
            prop_assert_eq!(key.is_none(), vary.is_any());
            let _ = freshen_headers(&response, &request);
            let _ = not_modified_selects(&response, &request);
            let mut stripped = response.clone();
            strip_unstorable_fields(&mut stripped, &resp);
            let _ = surrogate_keys(&response);
            let origin = Origin::of_request(&"/a/b?c".parse().unwrap(), &request, Scheme::HTTP);
            for target in invalidation_targets(&Method::POST, StatusCode::OK, &"/a/b?c".parse().unwrap(), origin.as_ref(), &response) {
                prop_assert!(target.starts_with('/'), "{target}");
            }
        }

        #[test]
        fn vary_star_never_matches(request in headers(), names in "[a-z, ]{0,20}") {
            let mut response = HeaderMap::new();
            response.insert(VARY, HeaderValue::from_str(&format!("{names}, *")).unwrap());
            let vary = Vary::from_headers(&response);
            prop_assert!(vary.is_any());
            prop_assert!(!variant_matches(&vary, &request, &request));
        }
    }

    /// Random bytes through every parser, seeded so a failure repeats.
    #[test]
    fn seeded_random_bytes_never_panic() {
        let mut state: u64 = 0x5eed_cafe_f00d_beef;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let alphabet = b" \t,=\";\\()?:*-09azAZ\xff";
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        (r >> 8) as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                continue;
            };
            let mut map = HeaderMap::new();
            for name in [
                CACHE_CONTROL,
                STRATA_CACHE_CONTROL,
                VARY,
                AGE,
                EXPIRES,
                LOCATION,
                CACHE_TAG,
            ] {
                map.insert(name, value.clone());
            }
            let _ = response_directives(&map, Targets::STRATA_THEN_CDN);
            let _ = RequestDirectives::from_headers(&map);
            let _ = parse_age(&map);
            let _ = secondary_key(&Vary::from_headers(&map), &map);
            let _ = surrogate_keys(&map);
            let _ = invalidation_targets(
                &Method::DELETE,
                StatusCode::OK,
                &"/x".parse().unwrap(),
                None,
                &map,
            );
        }
    }
}
