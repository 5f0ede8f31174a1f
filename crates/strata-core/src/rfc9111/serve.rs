//! Whether, and how, a stored response may answer a request (RFC 9111
//! §4, §4.2.4, §5.2.1, §5.2.2; RFC 5861).

use std::time::{Duration, SystemTime};

use http::StatusCode;

use super::directives::{RequestDirectives, ResponseDirectives};

/// What to do with a request, given what is stored for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Serve {
    /// Serve the stored response: it is fresh enough for the request.
    Fresh,
    /// Serve the stored response although it is stale: the client accepts
    /// it with `max-stale` (RFC 9111 §5.2.1.2). No revalidation is needed.
    Stale,
    /// Serve the stale stored response now, and revalidate it in the
    /// background, once for all requests (RFC 5861 §3).
    StaleWhileRevalidate,
    /// Ask the origin first: conditionally, with the stored validators
    /// (`If-None-Match`, `If-Modified-Since`), if it has any (§4.3.1).
    Revalidate {
        /// Until when the stored response may be served instead, should the
        /// origin fail or answer 500, 502, 503 or 504 (RFC 5861 §4; see
        /// [`is_error_for_stale`]). `None`: pass the error on, or answer
        /// 504 if the origin cannot be reached (§5.2.2.2).
        stale_if_error_until: Option<SystemTime>,
    },
    /// Nothing usable is stored: send the request on as it is.
    Forward,
    /// `only-if-cached` and nothing usable without the origin: answer
    /// 504 Gateway Timeout (§5.2.1.7).
    GatewayTimeout,
}

/// What [`serve`] needs to know of a stored response that matched the
/// request (same method and target, and its `Vary` matched, §4.1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored<'a> {
    /// Its directives (see [`response_directives`](super::response_directives)).
    pub(crate) directives: &'a ResponseDirectives,
    /// Its freshness lifetime (see [`freshness_lifetime`](super::freshness_lifetime)).
    pub(crate) lifetime: Duration,
    /// Its current age at the time of the request (see
    /// [`ResponseTiming::current_age`](super::ResponseTiming::current_age)).
    pub(crate) current_age: Duration,
}

/// Decides how to answer a request with these directives from `stored`, the
/// matching stored response if there is one, at `now` (RFC 9111 §4).
///
/// In order:
/// 1. Nothing stored: [`Serve::Forward`], or [`Serve::GatewayTimeout`] under
///    `only-if-cached`.
/// 2. The stored response must be validated first when it has `no-cache`
///    (§5.2.2.4; a qualified `no-cache` is treated as unqualified), or the
///    request has `no-cache` (§5.2.1.4), a `max-age` below the current age
///    (§5.2.1.1) or a `min-fresh` the remaining lifetime does not cover
///    (§5.2.1.3).
/// 3. Otherwise a fresh response is served ([`Serve::Fresh`]).
/// 4. A stale one is revalidated if it has `must-revalidate`,
///    `proxy-revalidate` or `no-cache` (§4.2.4). Otherwise it is served
///    while being revalidated within its `stale-while-revalidate` window
///    (RFC 5861 §3), else served as is if the request's `max-stale` covers
///    its staleness, else revalidated.
/// 5. Whenever the decision is to revalidate and the request has
///    `only-if-cached`, the answer is [`Serve::GatewayTimeout`].
///
/// Where the RFCs leave a choice:
/// - `s-maxage` implies `proxy-revalidate` (§5.2.2.10), so the *client's*
///   permissions to use stale content (`max-stale`, request
///   `stale-if-error`) do not apply to it; the *origin's* own
///   `stale-while-revalidate` and `stale-if-error` sent alongside
///   `s-maxage` do, as CDNs honour them (`s-maxage=60,
///   stale-while-revalidate=30` is a common origin setting).
/// - A request's own restrictions (`no-cache`, `max-age`, `min-fresh`)
///   disable the response's `stale-while-revalidate` and `stale-if-error`
///   for that request: the client asked for a validated or fresher
///   response. The request's own `stale-if-error` still applies.
/// - Windows are inclusive: staleness equal to the window is accepted.
/// - `immutable` (RFC 8246) does not change a shared cache's decision.
pub(crate) fn serve(
    request: &RequestDirectives,
    stored: Option<&Stored<'_>>,
    now: SystemTime,
) -> Serve {
    let Some(stored) = stored else {
        return if request.only_if_cached {
            Serve::GatewayTimeout
        } else {
            Serve::Forward
        };
    };
    let response = stored.directives;
    let age = stored.current_age;
    let lifetime = stored.lifetime;
    let fresh = lifetime > age;
    let staleness = age.saturating_sub(lifetime);
    let client_restricts = request.no_cache
        || request.max_age.is_some_and(|max_age| age > secs(max_age))
        || request
            .min_fresh
            .is_some_and(|min_fresh| lifetime < age.saturating_add(secs(min_fresh)));
    let revalidate = || {
        if request.only_if_cached {
            return Serve::GatewayTimeout;
        }
        Serve::Revalidate {
            stale_if_error_until: stale_if_error_until(request, stored, client_restricts, now),
        }
    };
    if response.no_cache.is_some() || client_restricts {
        return revalidate();
    }
    if fresh {
        return Serve::Fresh;
    }
    if response.forbids_stale() {
        return revalidate();
    }
    if response
        .stale_while_revalidate
        .is_some_and(|window| staleness <= secs(window))
    {
        return Serve::StaleWhileRevalidate;
    }
    let client_may_accept_stale = response.s_maxage.is_none();
    if client_may_accept_stale
        && request
            .max_stale
            .is_some_and(|max_stale| max_stale.accepts(staleness))
    {
        return Serve::Stale;
    }
    revalidate()
}

/// The end of the window in which the stored response may replace an error
/// (RFC 5861 §4): the larger of the response's `stale-if-error` (unless the
/// client restricted this request) and the request's (unless `s-maxage`
/// applies), counted as staleness past the lifetime. `None` under
/// `must-revalidate`, `proxy-revalidate` or `no-cache`, which forbid stale
/// responses even when the origin fails (§4.2.4, §5.2.2.2).
fn stale_if_error_until(
    request: &RequestDirectives,
    stored: &Stored<'_>,
    client_restricts: bool,
    now: SystemTime,
) -> Option<SystemTime> {
    let response = stored.directives;
    if response.forbids_stale() {
        return None;
    }
    let from_response = response.stale_if_error.filter(|_| !client_restricts);
    let from_request = request
        .stale_if_error
        .filter(|_| response.s_maxage.is_none());
    let window = from_response.max(from_request)?;
    let limit = stored.lifetime.saturating_add(secs(window));
    let left = limit.checked_sub(stored.current_age)?;
    now.checked_add(left)
}

/// What a stored response that must go to the origin may do when the
/// origin cannot be reached (RFC 9111 §4.2.4, §5.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IfDisconnected {
    /// Answer with it, stale: nothing forbids it, the client did not ask
    /// for a validated or fresher response, and it is no staler than the
    /// cache's configured maximum.
    Serve,
    /// `must-revalidate`, `proxy-revalidate`, `s-maxage` (which implies
    /// `proxy-revalidate` in a shared cache, §5.2.2.10) or `no-cache`: it
    /// must not be served unvalidated, so the cache answers `504 Gateway
    /// Timeout` itself (§5.2.2.2).
    GatewayTimeout,
    /// Neither: the service's own answer goes to the client.
    PassOn,
}

/// [`IfDisconnected`] for `stored`, which must be validated or fetched
/// anew for `request`, when the cache may serve stale responses up to
/// `max_staleness` past their lifetime while disconnected (zero: never).
pub(crate) fn if_disconnected(
    request: &RequestDirectives,
    stored: &Stored<'_>,
    max_staleness: Duration,
) -> IfDisconnected {
    let response = stored.directives;
    if response.forbids_stale() || response.s_maxage.is_some() {
        return IfDisconnected::GatewayTimeout;
    }
    let age = stored.current_age;
    let client_restricts = request.no_cache
        || request.max_age.is_some_and(|max_age| age > secs(max_age))
        || request.min_fresh.is_some();
    let staleness = age.saturating_sub(stored.lifetime);
    if client_restricts || max_staleness.is_zero() || staleness > max_staleness {
        return IfDisconnected::PassOn;
    }
    IfDisconnected::Serve
}

/// Whether an origin's answer lets a stored response be served in its
/// place under `stale-if-error`: 500, 502, 503 or 504 (RFC 5861 §4). An
/// origin that cannot be reached at all counts too; that is the caller's
/// to see.
pub(crate) fn is_error_for_stale(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

fn secs(seconds: u32) -> Duration {
    Duration::from_secs(seconds.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn response(cc: &'static str) -> ResponseDirectives {
        ResponseDirectives::parse(&[HeaderValue::from_static(cc)])
    }

    fn request(cc: &'static str) -> RequestDirectives {
        RequestDirectives::parse(&[HeaderValue::from_static(cc)])
    }

    fn disconnected(
        req: &'static str,
        resp: &'static str,
        lifetime: u64,
        age: u64,
        max: u64,
    ) -> IfDisconnected {
        let directives = response(resp);
        let stored = Stored {
            directives: &directives,
            lifetime: Duration::from_secs(lifetime),
            current_age: Duration::from_secs(age),
        };
        if_disconnected(&request(req), &stored, Duration::from_secs(max))
    }

    #[test]
    fn disconnected_serves_stale_within_the_maximum_unless_forbidden() {
        use IfDisconnected::{GatewayTimeout, PassOn, Serve};
        assert_eq!(disconnected("", "max-age=60", 60, 100, 3600), Serve);
        assert_eq!(disconnected("", "max-age=60", 60, 60 + 3600, 3600), Serve);
        assert_eq!(disconnected("", "max-age=60", 60, 60 + 3601, 3600), PassOn);
        assert_eq!(disconnected("", "max-age=60", 60, 100, 0), PassOn, "off");
        for forbidding in [
            "max-age=60, must-revalidate",
            "max-age=60, proxy-revalidate",
            "s-maxage=60",
            "no-cache",
        ] {
            assert_eq!(
                disconnected("", forbidding, 60, 100, 3600),
                GatewayTimeout,
                "{forbidding}"
            );
        }
        for restricting in ["no-cache", "max-age=10", "min-fresh=5"] {
            assert_eq!(
                disconnected(restricting, "max-age=60", 60, 100, 3600),
                PassOn,
                "{restricting}"
            );
        }
    }

    /// The decision for a stored response with `lifetime` and `age` seconds.
    fn decide(req: &'static str, resp: &'static str, lifetime: u64, age: u64) -> Serve {
        let directives = response(resp);
        let stored = Stored {
            directives: &directives,
            lifetime: Duration::from_secs(lifetime),
            current_age: Duration::from_secs(age),
        };
        serve(&request(req), Some(&stored), NOW)
    }

    fn until(seconds: u64) -> Serve {
        Serve::Revalidate {
            stale_if_error_until: Some(NOW + Duration::from_secs(seconds)),
        }
    }

    const REVALIDATE: Serve = Serve::Revalidate {
        stale_if_error_until: None,
    };

    #[test]
    fn nothing_stored_forwards_or_times_out() {
        assert_eq!(serve(&request(""), None, NOW), Serve::Forward);
        assert_eq!(
            serve(&request("only-if-cached"), None, NOW),
            Serve::GatewayTimeout
        );
    }

    #[test]
    fn fresh_is_served_and_stale_is_revalidated() {
        assert_eq!(decide("", "max-age=60", 60, 59), Serve::Fresh);
        // Age equal to the lifetime is stale (§4.2: lifetime > age).
        assert_eq!(decide("", "max-age=60", 60, 60), REVALIDATE);
    }

    #[test]
    fn response_no_cache_always_revalidates_even_with_max_age() {
        assert_eq!(decide("", "no-cache, max-age=60", 60, 0), REVALIDATE);
        assert_eq!(decide("", "no-cache=\"x\", max-age=60", 60, 0), REVALIDATE);
        assert_eq!(decide("max-stale", "no-cache", 0, 10), REVALIDATE);
        assert_eq!(decide("", "no-cache, stale-if-error=60", 0, 10), REVALIDATE);
    }

    #[test]
    fn request_no_cache_and_max_age_revalidate() {
        assert_eq!(decide("no-cache", "max-age=60", 60, 0), REVALIDATE);
        assert_eq!(decide("max-age=0", "max-age=60", 60, 1), REVALIDATE);
        assert_eq!(decide("max-age=10", "max-age=60", 60, 10), Serve::Fresh);
        assert_eq!(decide("max-age=10", "max-age=60", 60, 11), REVALIDATE);
    }

    #[test]
    fn request_max_age_needs_max_stale_to_accept_stale() {
        assert_eq!(decide("max-age=100", "max-age=60", 60, 70), REVALIDATE);
        assert_eq!(
            decide("max-age=100, max-stale", "max-age=60", 60, 70),
            Serve::Stale
        );
    }

    #[test]
    fn min_fresh_needs_that_much_lifetime_left() {
        assert_eq!(decide("min-fresh=10", "max-age=60", 60, 50), Serve::Fresh);
        assert_eq!(decide("min-fresh=10", "max-age=60", 60, 51), REVALIDATE);
    }

    #[test]
    fn max_stale_with_and_without_a_value() {
        assert_eq!(decide("max-stale", "max-age=60", 60, 10_000), Serve::Stale);
        assert_eq!(decide("max-stale=10", "max-age=60", 60, 70), Serve::Stale);
        assert_eq!(decide("max-stale=10", "max-age=60", 60, 71), REVALIDATE);
    }

    #[test]
    fn must_revalidate_and_proxy_revalidate_never_serve_stale() {
        for resp in [
            "must-revalidate, max-age=60",
            "proxy-revalidate, max-age=60",
        ] {
            assert_eq!(decide("", resp, 60, 0), Serve::Fresh);
            assert_eq!(decide("max-stale", resp, 60, 61), REVALIDATE);
            assert_eq!(decide("stale-if-error=600", resp, 60, 61), REVALIDATE);
        }
        let windows = "must-revalidate, max-age=60, stale-while-revalidate=60, stale-if-error=60";
        assert_eq!(decide("", windows, 60, 61), REVALIDATE);
    }

    #[test]
    fn s_maxage_ignores_the_clients_permission_to_use_stale() {
        assert_eq!(decide("max-stale", "s-maxage=60", 60, 61), REVALIDATE);
        assert_eq!(
            decide("stale-if-error=600", "s-maxage=60", 60, 61),
            REVALIDATE
        );
        // The origin's own windows still apply.
        let resp = "s-maxage=60, stale-while-revalidate=30, stale-if-error=100";
        assert_eq!(decide("", resp, 60, 80), Serve::StaleWhileRevalidate);
        assert_eq!(decide("", resp, 60, 100), until(60));
    }

    #[test]
    fn stale_while_revalidate_window() {
        let resp = "max-age=60, stale-while-revalidate=30";
        assert_eq!(decide("", resp, 60, 30), Serve::Fresh);
        assert_eq!(decide("", resp, 60, 61), Serve::StaleWhileRevalidate);
        assert_eq!(decide("", resp, 60, 90), Serve::StaleWhileRevalidate);
        assert_eq!(decide("", resp, 60, 91), REVALIDATE);
        // The client's restrictions disable it.
        assert_eq!(decide("no-cache", resp, 60, 61), REVALIDATE);
        assert_eq!(decide("max-age=5", resp, 60, 61), REVALIDATE);
    }

    #[test]
    fn stale_if_error_window_from_the_response_and_the_request() {
        let resp = "max-age=60, stale-if-error=100";
        // Stale by 10 of 100 seconds: 90 left.
        assert_eq!(decide("", resp, 60, 70), until(90));
        assert_eq!(decide("", resp, 60, 160), until(0));
        assert_eq!(decide("", resp, 60, 161), REVALIDATE);
        // The request's own window.
        assert_eq!(decide("stale-if-error=20", "max-age=60", 60, 70), until(10));
        // The larger of the two.
        assert_eq!(decide("stale-if-error=500", resp, 60, 70), until(490));
        // The client asked for a validated response: only its own window.
        assert_eq!(decide("no-cache", resp, 60, 70), REVALIDATE);
        assert_eq!(
            decide("no-cache, stale-if-error=20", resp, 60, 70),
            until(10)
        );
    }

    #[test]
    fn only_if_cached_serves_what_is_usable_or_times_out() {
        assert_eq!(decide("only-if-cached", "max-age=60", 60, 1), Serve::Fresh);
        assert_eq!(
            decide("only-if-cached", "max-age=60", 60, 61),
            Serve::GatewayTimeout
        );
        assert_eq!(
            decide("only-if-cached, max-stale", "max-age=60", 60, 61),
            Serve::Stale
        );
        assert_eq!(
            decide("only-if-cached", "no-cache", 60, 0),
            Serve::GatewayTimeout
        );
        let swr = "max-age=60, stale-while-revalidate=30";
        assert_eq!(
            decide("only-if-cached", swr, 60, 70),
            Serve::StaleWhileRevalidate
        );
    }

    #[test]
    fn errors_that_allow_stale_content() {
        for status in [500, 502, 503, 504] {
            assert!(is_error_for_stale(StatusCode::from_u16(status).unwrap()));
        }
        for status in [200, 304, 404, 501, 505] {
            assert!(!is_error_for_stale(StatusCode::from_u16(status).unwrap()));
        }
    }
}
