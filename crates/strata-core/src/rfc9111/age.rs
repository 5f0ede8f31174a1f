//! A stored response's current age (RFC 9111 §4.2.3, §5.1).
//!
//! Every quantity is a [`Duration`] that saturates: a clock that went back
//! gives zero rather than a negative age, and the result is capped at
//! [`DELTA_SECONDS_MAX`] seconds (§1.2.2).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::AGE;

use super::directives::{DELTA_SECONDS_MAX, parse_delta_seconds};
use super::freshness::date_or;

const MAX_AGE: Duration = Duration::from_secs(DELTA_SECONDS_MAX as u64);

/// The `Age` a response arrived with (RFC 9111 §5.1), if any. `Age` is a
/// singleton, but a list-based value (`7200, 0`, or several field lines,
/// which combine into one list) uses its first member and discards the
/// rest; when that member is not a non-negative integer the field is
/// ignored: the response is neither taken as fresh nor as infinitely old.
pub(crate) fn parse_age(headers: &HeaderMap) -> Option<Duration> {
    let first = headers
        .get_all(AGE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        // Empty list members are no members (RFC 9110 §5.6.1).
        .find(|member| !member.is_empty())?;
    parse_delta_seconds(first).map(|seconds| Duration::from_secs(seconds.into()))
}

/// `apparent_age = max(0, response_time - date_value)` (§4.2.3).
pub(crate) fn apparent_age(date: SystemTime, response_time: SystemTime) -> Duration {
    response_time.duration_since(date).unwrap_or_default()
}

/// `corrected_age_value = age_value + response_delay`, where
/// `response_delay = response_time - request_time` (§4.2.3).
pub(crate) fn corrected_age_value(
    age: Duration,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    age.saturating_add(response_delay).min(MAX_AGE)
}

/// `corrected_initial_age = max(apparent_age, corrected_age_value)` (§4.2.3).
pub(crate) fn corrected_initial_age(
    apparent_age: Duration,
    corrected_age_value: Duration,
) -> Duration {
    apparent_age.max(corrected_age_value).min(MAX_AGE)
}

/// `current_age = corrected_initial_age + resident_time`, where
/// `resident_time = now - response_time` (§4.2.3).
#[cfg(test)]
pub(crate) fn current_age(
    corrected_initial_age: Duration,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let resident_time = now.duration_since(response_time).unwrap_or_default();
    corrected_initial_age
        .saturating_add(resident_time)
        .min(MAX_AGE)
}

/// What the age calculation needs from one exchange with the origin (RFC
/// 9111 §4.2.3), kept with the stored response. After a 304 freshens it
/// (§4.3.4), build a new one from the revalidation's times and the 304's
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ResponseTiming {
    /// When the request that produced the response was sent.
    pub(crate) request_time: SystemTime,
    /// When the response was received.
    pub(crate) response_time: SystemTime,
    /// The response's `Date`, or `response_time` when it had none (or an
    /// invalid one).
    pub(crate) date: SystemTime,
    /// The response's `Age`, zero when it had none (or an invalid one).
    pub(crate) age: Duration,
}

impl ResponseTiming {
    /// Reads `Date` and `Age` from a response received at `response_time`
    /// for a request sent at `request_time`.
    pub(crate) fn new(
        request_time: SystemTime,
        response_time: SystemTime,
        headers: &HeaderMap,
    ) -> Self {
        Self {
            request_time,
            response_time,
            date: date_or(headers, response_time),
            age: parse_age(headers).unwrap_or_default(),
        }
    }

    /// `corrected_initial_age` (§4.2.3): how old the response was when it
    /// arrived. Storing this and `response_time` is enough for
    /// [`current_age`] later.
    pub(crate) fn corrected_initial_age(&self) -> Duration {
        corrected_initial_age(
            apparent_age(self.date, self.response_time),
            corrected_age_value(self.age, self.request_time, self.response_time),
        )
    }

    /// The response's current age at `now` (§4.2.3), what the `Age` header
    /// of a response served from the cache says (§5.1).
    #[cfg(test)]
    pub(crate) fn current_age(&self, now: SystemTime) -> Duration {
        current_age(self.corrected_initial_age(), self.response_time, now)
    }

    /// When the response was, in effect, generated: `response_time` less
    /// its `corrected_initial_age`. Its current age at `now` is
    /// `now - generated_at()` (§4.2.3), so this can stand for an entry's
    /// store time and make an age computed from it the RFC's current age.
    pub(crate) fn generated_at(&self) -> SystemTime {
        self.response_time
            .checked_sub(self.corrected_initial_age())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditional::http_date;
    use http::HeaderValue;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn age_of(lines: &[&'static str]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(AGE, HeaderValue::from_static(line));
        }
        parse_age(&headers)
    }

    #[test]
    fn the_first_member_of_the_first_line_counts_and_an_invalid_one_is_ignored() {
        assert_eq!(age_of(&[]), None);
        assert_eq!(age_of(&[" 30 "]), Some(secs(30)));
        // A list value: its first member.
        assert_eq!(age_of(&["7200, 0"]), Some(secs(7200)));
        assert_eq!(age_of(&[", 12, 0"]), Some(secs(12)));
        // Several lines: the first.
        assert_eq!(age_of(&["0", "7200"]), Some(secs(0)));
        assert_eq!(age_of(&["7200", "0"]), Some(secs(7200)));
        // An invalid first member: the whole field is ignored, even when a
        // later one would be valid.
        for invalid in [&["abc"][..], &["-5"], &["x", "30"], &["1.5, 2"], &[""]] {
            assert_eq!(age_of(invalid), None, "{invalid:?}");
        }
        assert_eq!(age_of(&["99999999999"]), Some(MAX_AGE));
    }

    #[test]
    fn apparent_age_is_never_negative() {
        assert_eq!(apparent_age(at(0), at(5)), secs(5));
        assert_eq!(apparent_age(at(9), at(5)), Duration::ZERO);
    }

    #[test]
    fn corrected_age_adds_the_response_delay() {
        assert_eq!(corrected_age_value(secs(10), at(0), at(3)), secs(13));
        // A response "received" before its request: no delay.
        assert_eq!(corrected_age_value(secs(10), at(3), at(0)), secs(10));
        assert_eq!(corrected_initial_age(secs(4), secs(13)), secs(13));
        assert_eq!(corrected_initial_age(secs(40), secs(13)), secs(40));
    }

    #[test]
    fn current_age_adds_the_resident_time() {
        assert_eq!(current_age(secs(13), at(3), at(10)), secs(20));
        assert_eq!(current_age(secs(13), at(3), at(0)), secs(13));
        assert_eq!(current_age(MAX_AGE, at(0), at(100)), MAX_AGE);
    }

    #[test]
    fn timing_uses_date_and_the_upstream_age() {
        let mut headers = HeaderMap::new();
        headers.insert("date", http_date(at(0)));
        headers.insert(AGE, HeaderValue::from_static("5"));
        // Sent at 1, received at 3, dated 0: apparent 3, corrected 5 + 2.
        let timing = ResponseTiming::new(at(1), at(3), &headers);
        assert_eq!(timing.corrected_initial_age(), secs(7));
        assert_eq!(timing.current_age(at(13)), secs(17));
        assert_eq!(timing.generated_at(), at(3) - secs(7));
        assert_eq!(
            at(13).duration_since(timing.generated_at()).unwrap(),
            secs(17)
        );
        // A Date far in the past (a skewed origin clock) wins.
        headers.insert("date", http_date(at(0) - secs(100)));
        let timing = ResponseTiming::new(at(1), at(3), &headers);
        assert_eq!(timing.corrected_initial_age(), secs(103));
    }

    #[test]
    fn a_missing_date_uses_the_response_time() {
        let timing = ResponseTiming::new(at(0), at(2), &HeaderMap::new());
        assert_eq!(timing.date, at(2));
        assert_eq!(timing.age, Duration::ZERO);
        assert_eq!(timing.corrected_initial_age(), secs(2));
    }
}
