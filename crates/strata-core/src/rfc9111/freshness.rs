//! How long a stored response stays fresh (RFC 9111 §4.2.1, §4.2.2, §5.3).

use std::time::{Duration, SystemTime};

use http::header::{DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};

use super::directives::ResponseDirectives;
use super::storable::is_heuristically_cacheable;
use crate::conditional::parse_http_date;

/// The default upper bound of a heuristic freshness lifetime: one day.
/// RFC 9111 §4.2.2 sets no bound; one day is what RFC 7234 §4.2.2 still
/// mentioned (a warning past 24 hours) and what common caches use.
pub(crate) const DEFAULT_HEURISTIC_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// The fraction of the time since `Last-Modified` that a heuristic lifetime
/// is, in percent ("a typical setting of this fraction might be 10%", RFC
/// 9111 §4.2.2).
pub(crate) const HEURISTIC_PERCENT: u32 = 10;

/// Where a freshness lifetime came from (RFC 9111 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LifetimeSource {
    /// `s-maxage` (§5.2.2.10).
    SharedMaxAge,
    /// `max-age` (§5.2.2.1).
    MaxAge,
    /// `Expires` − `Date` (§5.3); an invalid `Expires` gives zero.
    Expires,
    /// The heuristic of §4.2.2.
    Heuristic,
    /// Invalid or conflicting freshness information: zero, stale.
    Invalid,
    /// No explicit expiry and no heuristic applies: zero.
    None,
}

/// A response's freshness lifetime and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Lifetime {
    /// How long after its generation the response is fresh.
    pub(crate) duration: Duration,
    /// Which rule gave it.
    pub(crate) source: LifetimeSource,
}

impl Lifetime {
    const fn new(duration: Duration, source: LifetimeSource) -> Self {
        Self { duration, source }
    }
}

/// The freshness lifetime of a response in a shared cache (RFC 9111
/// §4.2.1), in this order: `s-maxage`, `max-age`, `Expires` − `Date`, and
/// only when none of them is present the heuristic of §4.2.2.
///
/// - Invalid or conflicting `max-age`/`s-maxage` ([`ResponseDirectives::invalid_freshness`])
///   or several different `Expires` lines make the lifetime zero (§4.2.1).
/// - An `Expires` that is not a valid HTTP date (`0` included) means
///   "already expired" (§5.3). Under a targeted field `Expires` is ignored
///   (RFC 9213 §2.1).
/// - A missing or invalid `Date` is taken as `response_time`, the time the
///   response was received.
/// - The heuristic applies to a heuristically cacheable status or a
///   `public` response with a `Last-Modified`: [`HEURISTIC_PERCENT`] of
///   `Date` − `Last-Modified`, at most `heuristic_cap` (for example
///   [`DEFAULT_HEURISTIC_CAP`]).
pub(crate) fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    response_time: SystemTime,
    heuristic_cap: Duration,
) -> Lifetime {
    if directives.invalid_freshness {
        return Lifetime::new(Duration::ZERO, LifetimeSource::Invalid);
    }
    if let Some(seconds) = directives.s_maxage {
        return Lifetime::new(secs(seconds), LifetimeSource::SharedMaxAge);
    }
    if let Some(seconds) = directives.max_age {
        return Lifetime::new(secs(seconds), LifetimeSource::MaxAge);
    }
    let date = date_or(headers, response_time);
    if !directives.source.is_targeted() && headers.contains_key(EXPIRES) {
        return expires_lifetime(headers, date);
    }
    if (is_heuristically_cacheable(status) || directives.public)
        && let Some(modified) = headers.get(LAST_MODIFIED).and_then(parse_http_date)
    {
        return Lifetime::new(
            heuristic_lifetime(date, modified, heuristic_cap),
            LifetimeSource::Heuristic,
        );
    }
    Lifetime::new(Duration::ZERO, LifetimeSource::None)
}

/// `Expires` − `Date` (RFC 9111 §4.2.1, §5.3): zero when the field lines
/// disagree, when the value is not a valid HTTP date, or when it is not
/// after `date`.
fn expires_lifetime(headers: &HeaderMap, date: SystemTime) -> Lifetime {
    let mut lines = headers.get_all(EXPIRES).iter();
    let first = lines.next();
    if lines.any(|line| Some(line) != first) {
        return Lifetime::new(Duration::ZERO, LifetimeSource::Invalid);
    }
    let lifetime = first
        .and_then(parse_http_date)
        .and_then(|expires| expires.duration_since(date).ok())
        .unwrap_or_default();
    Lifetime::new(lifetime, LifetimeSource::Expires)
}

/// The heuristic freshness lifetime (RFC 9111 §4.2.2): [`HEURISTIC_PERCENT`]
/// of the time between `last_modified` and `date`, at most `cap`; zero when
/// `last_modified` is not before `date`.
pub(crate) fn heuristic_lifetime(
    date: SystemTime,
    last_modified: SystemTime,
    cap: Duration,
) -> Duration {
    let since = date.duration_since(last_modified).unwrap_or_default();
    (since / 100 * HEURISTIC_PERCENT).min(cap)
}

/// The response's `Date` (RFC 9110 §6.6.1), or `fallback` when it is
/// missing or invalid.
pub(super) fn date_or(headers: &HeaderMap, fallback: SystemTime) -> SystemTime {
    headers
        .get(DATE)
        .and_then(parse_http_date)
        .unwrap_or(fallback)
}

fn secs(seconds: u32) -> Duration {
    Duration::from_secs(seconds.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditional::http_date;
    use crate::rfc9111::response_directives;
    use http::HeaderValue;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn lifetime(status: u16, fields: &[(&'static str, HeaderValue)]) -> Lifetime {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, value.clone());
        }
        let directives = response_directives(&headers, crate::rfc9111::Targets::STRATA_THEN_CDN);
        freshness_lifetime(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            &directives,
            at(0),
            DEFAULT_HEURISTIC_CAP,
        )
    }

    fn text(value: &'static str) -> HeaderValue {
        HeaderValue::from_static(value)
    }

    #[test]
    fn s_maxage_wins_over_max_age_and_expires() {
        let l = lifetime(
            200,
            &[
                ("cache-control", text("max-age=60, s-maxage=120")),
                ("expires", http_date(at(10))),
            ],
        );
        assert_eq!(
            l,
            Lifetime::new(Duration::from_secs(120), LifetimeSource::SharedMaxAge)
        );
    }

    #[test]
    fn max_age_wins_over_expires() {
        let l = lifetime(
            200,
            &[
                ("cache-control", text("max-age=60")),
                ("expires", text("0")),
            ],
        );
        assert_eq!(
            l,
            Lifetime::new(Duration::from_secs(60), LifetimeSource::MaxAge)
        );
    }

    #[test]
    fn expires_minus_date() {
        let l = lifetime(
            200,
            &[
                ("date", http_date(at(100))),
                ("expires", http_date(at(400))),
            ],
        );
        assert_eq!(
            l,
            Lifetime::new(Duration::from_secs(300), LifetimeSource::Expires)
        );
        // Without Date, the response time (at(0)) stands in.
        let l = lifetime(200, &[("expires", http_date(at(400)))]);
        assert_eq!(l.duration, Duration::from_secs(400));
        // An invalid Date too.
        let l = lifetime(
            200,
            &[("date", text("yesterday")), ("expires", http_date(at(5)))],
        );
        assert_eq!(l.duration, Duration::from_secs(5));
    }

    #[test]
    fn invalid_or_past_expires_is_already_expired() {
        for expires in [
            text("0"),
            text("-1"),
            text("soon"),
            http_date(at(0)),
            http_date(at(1) - HOUR),
        ] {
            let l = lifetime(
                200,
                &[
                    ("date", http_date(at(0))),
                    ("last-modified", http_date(at(0) - HOUR)),
                    ("expires", expires),
                ],
            );
            assert_eq!(l, Lifetime::new(Duration::ZERO, LifetimeSource::Expires));
        }
    }

    #[test]
    fn conflicting_expires_lines_are_stale_and_identical_ones_are_not() {
        let l = lifetime(
            200,
            &[
                ("expires", http_date(at(60))),
                ("expires", http_date(at(90))),
            ],
        );
        assert_eq!(l, Lifetime::new(Duration::ZERO, LifetimeSource::Invalid));
        let l = lifetime(
            200,
            &[
                ("expires", http_date(at(60))),
                ("expires", http_date(at(60))),
            ],
        );
        assert_eq!(l.duration, Duration::from_secs(60));
    }

    #[test]
    fn invalid_max_age_is_stale_even_with_expires() {
        let l = lifetime(
            200,
            &[
                ("cache-control", text("max-age=ten")),
                ("expires", http_date(at(600))),
            ],
        );
        assert_eq!(l, Lifetime::new(Duration::ZERO, LifetimeSource::Invalid));
    }

    #[test]
    fn heuristic_is_a_tenth_of_the_age_of_the_last_modification_capped() {
        let l = lifetime(
            200,
            &[
                ("date", http_date(at(0))),
                ("last-modified", http_date(at(0) - 10 * HOUR)),
            ],
        );
        assert_eq!(l, Lifetime::new(HOUR, LifetimeSource::Heuristic));
        let l = lifetime(200, &[("last-modified", http_date(at(0) - 1000 * HOUR))]);
        assert_eq!(l.duration, DEFAULT_HEURISTIC_CAP);
        assert_eq!(
            heuristic_lifetime(at(0), at(0) - 1000 * HOUR, Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        // Last-Modified in the future gives nothing.
        assert_eq!(heuristic_lifetime(at(0), at(10), HOUR), Duration::ZERO);
    }

    #[test]
    fn heuristic_only_for_heuristic_statuses_or_public() {
        let modified = ("last-modified", http_date(at(0) - 10 * HOUR));
        assert_eq!(
            lifetime(302, std::slice::from_ref(&modified)).source,
            LifetimeSource::None
        );
        let public = lifetime(302, &[modified.clone(), ("cache-control", text("public"))]);
        assert_eq!(public.duration, HOUR);
        for status in [404, 410, 501] {
            assert_eq!(
                lifetime(status, std::slice::from_ref(&modified)).duration,
                HOUR
            );
        }
        // No Last-Modified: no basis for a heuristic.
        assert_eq!(
            lifetime(200, &[]),
            Lifetime::new(Duration::ZERO, LifetimeSource::None)
        );
    }

    #[test]
    fn heuristic_never_overrides_explicit_expiry() {
        let l = lifetime(
            200,
            &[
                ("last-modified", http_date(at(0) - 10 * HOUR)),
                ("expires", text("0")),
            ],
        );
        assert_eq!(l, Lifetime::new(Duration::ZERO, LifetimeSource::Expires));
    }

    #[test]
    fn targeted_fields_ignore_expires() {
        let l = lifetime(
            200,
            &[
                ("cdn-cache-control", text("no-transform")),
                ("expires", http_date(at(600))),
                ("last-modified", http_date(at(0) - 10 * HOUR)),
            ],
        );
        assert_eq!(l, Lifetime::new(HOUR, LifetimeSource::Heuristic));
        let l = lifetime(
            200,
            &[
                ("cdn-cache-control", text("max-age=5")),
                ("cache-control", text("max-age=500")),
            ],
        );
        assert_eq!(l.duration, Duration::from_secs(5));
    }
}
