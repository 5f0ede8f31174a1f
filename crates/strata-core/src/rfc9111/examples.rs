//! What the rules' documentation used to show as examples, kept as tests
//! now that the module is internal.

#[test]
fn age_example_1() {
    use crate::rfc9111::ResponseTiming;
    use http::{HeaderMap, HeaderValue};
    use std::time::{Duration, SystemTime};

    let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let received = sent + Duration::from_secs(2);
    let mut headers = HeaderMap::new();
    headers.insert("age", HeaderValue::from_static("10"));
    let timing = ResponseTiming::new(sent, received, &headers);
    assert_eq!(timing.corrected_initial_age(), Duration::from_secs(12));
    assert_eq!(
        timing.current_age(received + Duration::from_secs(5)),
        Duration::from_secs(17)
    );
}

#[test]
fn directives_example_1() {
    use crate::rfc9111::ResponseDirectives;
    use http::{HeaderMap, HeaderValue, header::CACHE_CONTROL};

    let mut headers = HeaderMap::new();
    headers.append(
        CACHE_CONTROL,
        HeaderValue::from_static("Public, max-age=\"60\""),
    );
    headers.append(
        CACHE_CONTROL,
        HeaderValue::from_static("stale-while-revalidate=30"),
    );
    let cc = ResponseDirectives::from_cache_control(&headers);
    assert!(cc.public);
    assert_eq!(cc.max_age, Some(60));
    assert_eq!(cc.stale_while_revalidate, Some(30));
}

#[test]
fn directives_example_2() {
    use crate::rfc9111::RequestDirectives;
    use http::{HeaderMap, HeaderValue, header::PRAGMA};

    let mut headers = HeaderMap::new();
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    assert!(RequestDirectives::from_headers(&headers).no_cache);
}

#[test]
fn freshen_example_1() {
    use crate::rfc9111::freshen_headers;
    use http::{HeaderMap, HeaderValue};

    let mut stored = HeaderMap::new();
    stored.insert("cache-control", HeaderValue::from_static("max-age=10"));
    stored.insert("content-length", HeaderValue::from_static("512"));
    let mut not_modified = HeaderMap::new();
    not_modified.insert("cache-control", HeaderValue::from_static("max-age=600"));
    not_modified.insert("content-length", HeaderValue::from_static("0"));
    let updated = freshen_headers(&stored, &not_modified);
    assert_eq!(updated["cache-control"], "max-age=600");
    assert_eq!(updated["content-length"], "512");
}

#[test]
fn freshness_example_1() {
    use crate::rfc9111::{
        DEFAULT_HEURISTIC_CAP, LifetimeSource, ResponseDirectives, freshness_lifetime,
    };
    use http::{HeaderMap, HeaderValue, StatusCode};
    use std::time::{Duration, SystemTime};

    let mut headers = HeaderMap::new();
    headers.insert(
        "cache-control",
        HeaderValue::from_static("max-age=60, s-maxage=300"),
    );
    let cc = ResponseDirectives::from_cache_control(&headers);
    let lifetime = freshness_lifetime(
        StatusCode::OK,
        &headers,
        &cc,
        SystemTime::now(),
        DEFAULT_HEURISTIC_CAP,
    );
    assert_eq!(lifetime.duration, Duration::from_secs(300));
    assert_eq!(lifetime.source, LifetimeSource::SharedMaxAge);
}

#[test]
fn invalidate_example_1() {
    use crate::rfc9111::{Origin, invalidation_targets};
    use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, uri::Scheme};

    let target: Uri = "/api/items/".parse().unwrap();
    let mut request = HeaderMap::new();
    request.insert("host", HeaderValue::from_static("example.com"));
    let origin = Origin::of_request(&target, &request, Scheme::HTTP);
    let mut response = HeaderMap::new();
    response.insert("location", HeaderValue::from_static("42?full=1"));
    response.insert(
        "content-location",
        HeaderValue::from_static("https://example.com/x"),
    );
    let targets = invalidation_targets(
        &Method::POST,
        StatusCode::CREATED,
        &target,
        origin.as_ref(),
        &response,
    );
    assert_eq!(targets, ["/api/items/", "/api/items/42?full=1"]);
}

#[test]
fn storable_example_1() {
    use crate::rfc9111::{NotStorable, RequestDirectives, ResponseDirectives, storable};
    use http::{HeaderMap, HeaderValue, Method, StatusCode};

    let mut response = HeaderMap::new();
    response.insert(
        "cache-control",
        HeaderValue::from_static("private, max-age=60"),
    );
    let verdict = storable(
        &Method::GET,
        &HeaderMap::new(),
        &RequestDirectives::default(),
        StatusCode::OK,
        &response,
        &ResponseDirectives::from_cache_control(&response),
    );
    assert_eq!(verdict, Err(NotStorable::Private));
}

#[test]
fn tags_example_1() {
    use crate::rfc9111::surrogate_keys;
    use http::{HeaderMap, HeaderValue};

    let mut headers = HeaderMap::new();
    headers.insert(
        "surrogate-key",
        HeaderValue::from_static("materials  material:42"),
    );
    headers.insert(
        "cache-tag",
        HeaderValue::from_static("material:42, reports,"),
    );
    assert_eq!(
        surrogate_keys(&headers).unwrap(),
        ["materials", "material:42", "reports"]
    );
}

#[test]
fn targeted_example_1() {
    use crate::rfc9111::{CDN_CACHE_CONTROL, DirectiveSource, response_directives};
    use http::{HeaderMap, HeaderValue};

    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert(CDN_CACHE_CONTROL, HeaderValue::from_static("max-age=600"));
    let cdn = response_directives(&headers, crate::rfc9111::Targets::STRATA_THEN_CDN);
    assert_eq!(
        (cdn.source, cdn.max_age, cdn.no_store),
        (DirectiveSource::Cdn, Some(600), false)
    );
    let plain = response_directives(&headers, crate::rfc9111::Targets::APP);
    assert!(plain.no_store);
}

#[test]
fn vary_example_1() {
    use crate::rfc9111::Vary;
    use http::{HeaderMap, HeaderName, HeaderValue};

    let mut headers = HeaderMap::new();
    headers.append("vary", HeaderValue::from_static("Accept-Encoding, accept"));
    headers.append("vary", HeaderValue::from_static("Accept-Language"));
    assert_eq!(
        Vary::from_headers(&headers).names(),
        [
            HeaderName::from_static("accept"),
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("accept-language"),
        ]
    );
}

#[test]
fn vary_example_2() {
    use crate::rfc9111::{Vary, secondary_key};
    use http::{HeaderMap, HeaderValue};

    let mut response = HeaderMap::new();
    response.insert(
        "vary",
        HeaderValue::from_static("accept-encoding, accept-language"),
    );
    let vary = Vary::from_headers(&response);
    let mut request = HeaderMap::new();
    request.insert(
        "accept-encoding",
        HeaderValue::from_static("GZIP, br;q=0.5"),
    );
    assert_eq!(
        secondary_key(&vary, &request).unwrap(),
        "accept-encoding=br;q=0.5,gzip&accept-language"
    );
}
