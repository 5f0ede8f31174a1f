//! Whether a response may be stored, the reason when not, and the fields stripped first.

use super::*;
use crate::fields::is_hop_by_hop;
use http::{HeaderName, HeaderValue};

struct Case {
    method: Method,
    request: HeaderMap,
    status: StatusCode,
    response: HeaderMap,
}

impl Case {
    fn new(cache_control: &'static str) -> Self {
        let mut response = HeaderMap::new();
        if !cache_control.is_empty() {
            response.insert("cache-control", HeaderValue::from_static(cache_control));
        }
        Self {
            method: Method::GET,
            request: HeaderMap::new(),
            status: StatusCode::OK,
            response,
        }
    }

    fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).unwrap();
        self
    }

    fn request(mut self, name: &'static str, value: &'static str) -> Self {
        self.request.append(name, HeaderValue::from_static(value));
        self
    }

    fn response(mut self, name: &'static str, value: &'static str) -> Self {
        self.response.append(name, HeaderValue::from_static(value));
        self
    }

    fn verdict(&self) -> Result<(), NotStorable> {
        storable(
            &self.method,
            &self.request,
            &RequestDirectives::from_headers(&self.request),
            self.status,
            &self.response,
            &super::super::response_directives(
                &self.response,
                crate::rfc9111::Targets::STRATA_THEN_CDN,
            ),
        )
    }
}

#[test]
fn only_get_and_head_are_stored() {
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let case = Case {
            method,
            ..Case::new("max-age=60")
        };
        assert_eq!(case.verdict(), Err(NotStorable::Method));
    }
    let head = Case {
        method: Method::HEAD,
        ..Case::new("max-age=60")
    };
    assert_eq!(head.verdict(), Ok(()));
}

#[test]
fn every_heuristically_cacheable_status_is_stored_without_freshness() {
    for status in HEURISTICALLY_CACHEABLE {
        assert_eq!(
            Case::new("").status(status.as_u16()).verdict(),
            Ok(()),
            "{status}"
        );
    }
}

#[test]
fn other_statuses_need_explicit_freshness() {
    for status in [201, 302, 303, 307, 400, 403, 500, 502, 503] {
        assert_eq!(
            Case::new("").status(status).verdict(),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(Case::new("max-age=5").status(status).verdict(), Ok(()));
        assert_eq!(Case::new("s-maxage=5").status(status).verdict(), Ok(()));
        assert_eq!(Case::new("public").status(status).verdict(), Ok(()));
        let expires = Case::new("").status(status).response("expires", "0");
        assert_eq!(expires.verdict(), Ok(()));
    }
}

#[test]
fn partial_content_interim_and_unknown_statuses_are_not_stored() {
    let partial = Case::new("max-age=60").status(206);
    assert_eq!(partial.verdict(), Err(NotStorable::PartialContent));
    for status in [100, 103, 304] {
        assert_eq!(
            Case::new("max-age=60").status(status).verdict(),
            Err(NotStorable::Status)
        );
    }
}

/// RFC 9111 §3: a final status the cache does not understand is stored
/// with explicit freshness (and without `must-understand`); without it,
/// or with `public` alone, it is not (heuristics are for the heuristically
/// cacheable statuses).
#[test]
fn unknown_final_statuses_are_stored_only_with_explicit_freshness() {
    for status in [299, 499, 599, 209] {
        for explicit in ["max-age=60", "s-maxage=60", "public, max-age=60"] {
            assert_eq!(
                Case::new(explicit).status(status).verdict(),
                Ok(()),
                "{status} {explicit}"
            );
        }
        assert_eq!(
            Case::new("")
                .response("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
                .status(status)
                .verdict(),
            Ok(()),
            "{status} with Expires"
        );
        for without in ["", "public", "no-cache"] {
            assert_eq!(
                Case::new(without).status(status).verdict(),
                Err(NotStorable::NoFreshness),
                "{status} {without:?}"
            );
        }
        assert_eq!(
            Case::new("max-age=60, must-understand")
                .status(status)
                .verdict(),
            Err(NotStorable::MustUnderstand)
        );
    }
}

#[test]
fn no_store_in_request_or_response_prevents_storing() {
    assert_eq!(
        Case::new("max-age=60, no-store").verdict(),
        Err(NotStorable::NoStore)
    );
    let request = Case::new("max-age=60").request("cache-control", "no-store");
    assert_eq!(request.verdict(), Err(NotStorable::RequestNoStore));
}

#[test]
fn must_understand_lifts_no_store_only_for_understood_statuses() {
    let understood = Case::new("no-store, must-understand, max-age=60");
    assert_eq!(understood.verdict(), Ok(()));
    let unknown = Case::new("no-store, must-understand, max-age=60").status(299);
    assert_eq!(unknown.verdict(), Err(NotStorable::MustUnderstand));
}

#[test]
fn unqualified_private_is_never_stored_even_with_s_maxage() {
    assert_eq!(
        Case::new("private, max-age=60").verdict(),
        Err(NotStorable::Private)
    );
    assert_eq!(
        Case::new("private, s-maxage=60").verdict(),
        Err(NotStorable::Private)
    );
    assert_eq!(
        Case::new("private, public").verdict(),
        Err(NotStorable::Private)
    );
    assert_eq!(
        Case::new("private=\"set-cookie\", max-age=60").verdict(),
        Ok(())
    );
}

#[test]
fn no_cache_is_stored() {
    assert_eq!(Case::new("no-cache").verdict(), Ok(()));
    assert_eq!(Case::new("no-cache, max-age=60").verdict(), Ok(()));
}

#[test]
fn authorization_needs_public_must_revalidate_or_s_maxage() {
    let auth = |cc| Case::new(cc).request("authorization", "Bearer x");
    assert_eq!(
        auth("max-age=60").verdict(),
        Err(NotStorable::Authorization)
    );
    assert_eq!(auth("").verdict(), Err(NotStorable::Authorization));
    assert_eq!(auth("public").verdict(), Ok(()));
    assert_eq!(auth("public, max-age=60").verdict(), Ok(()));
    assert_eq!(auth("s-maxage=60").verdict(), Ok(()));
    assert_eq!(auth("must-revalidate, max-age=60").verdict(), Ok(()));
    assert_eq!(
        auth("private, s-maxage=60").verdict(),
        Err(NotStorable::Private)
    );
}

#[test]
fn targeted_fields_decide_storability() {
    let case = Case::new("no-store").response("cdn-cache-control", "max-age=60");
    assert_eq!(case.verdict(), Ok(()));
    let case = Case::new("max-age=60").response("strata-cache-control", "private");
    assert_eq!(case.verdict(), Err(NotStorable::Private));
    // Expires does not count under a targeted field.
    let case = Case::new("")
        .status(302)
        .response("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
        .response("strata-cache-control", "no-transform");
    assert_eq!(case.verdict(), Err(NotStorable::NoFreshness));
}

#[test]
fn vary_star_is_not_stored() {
    let case = Case::new("max-age=60").response("vary", "accept, *");
    assert_eq!(case.verdict(), Err(NotStorable::VaryAny));
}

#[test]
fn reasons_have_cache_status_tokens() {
    assert_eq!(NotStorable::PartialContent.to_string(), "partial-content");
    assert_eq!(NotStorable::Authorization.detail(), "authorization");
}

#[test]
fn stripping_removes_hop_by_hop_connection_listed_and_private_fields() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("connection", "x-trace, close"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("x-trace", "1"),
        ("set-cookie", "a=b"),
        ("content-type", "text/plain"),
        ("x-user", "u"),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    assert!(is_hop_by_hop(&HeaderName::from_static("x-trace"), &headers));
    assert!(!is_hop_by_hop(
        &HeaderName::from_static("content-type"),
        &headers
    ));
    let directives = ResponseDirectives::parse(&[HeaderValue::from_static(
        "private=\"set-cookie\", no-cache=\"x-user\"",
    )]);
    strip_unstorable_fields(&mut headers, &directives);
    let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["content-type", "x-user"]);
}
