//! Admission as a table: policy, response, request -> plan or reason.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;
use crate::CachePolicy;

const NOW: SystemTime = SystemTime::UNIX_EPOCH;
const MAX_BODY: usize = 1024;

fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

struct Case {
    what: &'static str,
    policy: CachePolicy,
    status: u16,
    response: &'static [(&'static str, &'static str)],
    request: &'static [(&'static str, &'static str)],
    length: Option<u64>,
    user: Option<&'static str>,
    expect: Result<(), NotStored>,
}

fn case(what: &'static str, policy: CachePolicy) -> Case {
    Case {
        what,
        policy,
        status: 200,
        response: &[],
        request: &[],
        length: Some(4),
        user: None,
        expect: Ok(()),
    }
}

impl Case {
    fn response(mut self, fields: &'static [(&'static str, &'static str)]) -> Self {
        self.response = fields;
        self
    }
    fn request(mut self, fields: &'static [(&'static str, &'static str)]) -> Self {
        self.request = fields;
        self
    }
    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    fn length(mut self, length: Option<u64>) -> Self {
        self.length = length;
        self
    }
    fn user(mut self, user: &'static str) -> Self {
        self.user = Some(user);
        self
    }
    fn refused(mut self, why: NotStored) -> Self {
        self.expect = Err(why);
        self
    }

    fn run(&self) -> Result<Plan, NotStored> {
        let response = headers(self.response);
        let request = headers(self.request);
        decide(&Input {
            policy: &self.policy,
            status: StatusCode::from_u16(self.status).unwrap(),
            headers: &response,
            length: self.length,
            max_body: MAX_BODY,
            user: self.user,
            request_headers: &request,
            sent_at: NOW,
            now: NOW,
            targets: crate::rfc9111::Targets::APP,
            stale_if_disconnected: Duration::ZERO,
        })
    }
}

fn public() -> CachePolicy {
    CachePolicy::public(Duration::from_secs(60))
}

fn private() -> CachePolicy {
    CachePolicy::private(Duration::from_secs(60))
}

fn origin() -> CachePolicy {
    CachePolicy::origin()
}

#[test]
fn every_rule_in_its_place() {
    let cases = [
        case("public 200", public()),
        case("private with a user", private()).user("alice"),
        case("private, anonymous", private()).refused(NotStored::Anonymous),
        case("404 under a policy", public())
            .status(404)
            .refused(NotStored::Status),
        case("500 under a policy", public())
            .status(500)
            .refused(NotStored::Status),
        case("301 under a policy", public()).status(301),
        case("public and a cookie", public())
            .response(&[("set-cookie", "a=1")])
            .refused(NotStored::SetCookie),
        case("private and a cookie: stored without it", private())
            .user("alice")
            .response(&[("set-cookie", "a=1")]),
        case("origin and a cookie", origin())
            .response(&[("cache-control", "max-age=60"), ("set-cookie", "a=1")])
            .refused(NotStored::SetCookie),
        case("the handler says private", public())
            .response(&[("cache-control", "private, max-age=10")])
            .refused(NotStored::Private),
        case("the handler says private on a private route", private())
            .user("alice")
            .response(&[("cache-control", "private")]),
        case("the handler says no-store", public())
            .response(&[("cache-control", "no-store")])
            .refused(NotStored::NoStore),
        case("the handler says NO-CACHE", public())
            .response(&[("cache-control", "max-age=5, NO-CACHE")])
            .refused(NotStored::NoCache),
        case("zero ttl", CachePolicy::public(Duration::ZERO)).refused(NotStored::Ttl),
        case("vary star", public())
            .response(&[("vary", "accept, *")])
            .refused(NotStored::VaryStar),
        case("event stream", public())
            .response(&[("content-type", "text/event-stream; charset=utf-8")])
            .refused(NotStored::Stream),
        // Read until it ends or passes the limit (see `within_limit`).
        case("unknown length", public()).length(None),
        case("at the limit", public()).length(Some(MAX_BODY as u64)),
        case("past the limit", public())
            .length(Some(MAX_BODY as u64 + 1))
            .refused(NotStored::TooLarge),
        case("no-cache route", CachePolicy::no_cache()).refused(NotStored::NoCache),
        case("no-store route", CachePolicy::no_store()).refused(NotStored::NoStore),
        case("origin: max-age", origin()).response(&[("cache-control", "max-age=60")]),
        case("origin: nothing said", origin()).refused(NotStored::NoFreshness),
        case("origin: a 500 with nothing said", origin())
            .status(500)
            .refused(NotStored::Rfc(crate::rfc9111::NotStorable::NoFreshness)),
        case("origin: no-store", origin())
            .response(&[("cache-control", "no-store, max-age=60")])
            .refused(NotStored::Rfc(crate::rfc9111::NotStorable::NoStore)),
        case("origin: private", origin())
            .response(&[("cache-control", "private, max-age=60")])
            .refused(NotStored::Rfc(crate::rfc9111::NotStorable::Private)),
        case("origin: authorization", origin())
            .request(&[("authorization", "Bearer x")])
            .response(&[("cache-control", "max-age=60")])
            .refused(NotStored::Rfc(crate::rfc9111::NotStorable::Authorization)),
        case("origin: no-cache without validators", origin())
            .response(&[("cache-control", "no-cache")])
            .refused(NotStored::NoCache),
        case("origin: no-cache with an etag", origin())
            .response(&[("cache-control", "no-cache"), ("etag", "\"a\"")]),
        case("origin: 404 with max-age", origin())
            .status(404)
            .response(&[("cache-control", "max-age=60")]),
        case("origin: 206", origin())
            .status(206)
            .response(&[("cache-control", "max-age=60")])
            .refused(NotStored::Rfc(crate::rfc9111::NotStorable::PartialContent)),
        case("origin: already stale", origin())
            .response(&[("cache-control", "max-age=10"), ("age", "20")])
            .refused(NotStored::AlreadyStale),
    ];
    for case in cases {
        let got = case.run().map(|_| ());
        assert_eq!(got, case.expect, "{}", case.what);
    }
}

#[test]
fn a_plan_says_for_whom_how_long_and_under_which_tags() {
    let plan = case(
        "private, tagged, windows",
        CachePolicy::private(Duration::from_secs(60))
            .tag("mine")
            .stale_while_revalidate(Duration::from_secs(30))
            .stale_if_error(Duration::from_secs(90)),
    )
    .user("alice")
    .response(&[("vary", "Accept-Language")])
    .run()
    .unwrap();
    assert!(plan.per_user);
    assert_eq!(plan.ttl, Duration::from_secs(60));
    assert_eq!(plan.stale, Duration::from_secs(90), "the longer window");
    assert_eq!(plan.tags, ["mine"]);
    assert_eq!(plan.vary, ["accept-language"]);
    assert!(plan.origin.is_none());

    let plan = case("origin", CachePolicy::origin().tag("route"))
        .response(&[
            (
                "cache-control",
                "s-maxage=600, max-age=60, stale-while-revalidate=30",
            ),
            ("surrogate-key", "a b"),
            ("age", "100"),
        ])
        .run()
        .unwrap();
    assert!(!plan.per_user);
    assert_eq!(
        plan.ttl,
        Duration::from_secs(600),
        "s-maxage for a shared cache"
    );
    assert_eq!(plan.stale, Duration::from_secs(30));
    assert_eq!(plan.tags, ["route", "a", "b"]);
    assert_eq!(
        plan.stored_at,
        NOW - Duration::from_secs(100),
        "its age counts the upstream's"
    );
    assert!(plan.origin.is_some());
}

#[test]
fn unstored_responses_keep_their_own_cache_control_where_it_matters() {
    for why in [
        NotStored::Status,
        NotStored::SetCookie,
        NotStored::NoStore,
        NotStored::NoCache,
        NotStored::Private,
        NotStored::Anonymous,
    ] {
        assert!(!why.takes_policy_headers(), "{why:?}");
    }
    for why in [NotStored::TooLarge, NotStored::Stream, NotStored::Bypass] {
        assert!(why.takes_policy_headers(), "{why:?}");
    }
}
