//! Building a response from a stored entry: 304 when the request's
//! validators match, else the stored status, headers and body (none for
//! HEAD; the part a GET's `Range` asks for, see [`range`]), with `Age`
//! and `Cache-Status`.

use std::time::Duration;

use http::header::{
    AGE, CONTENT_LENGTH, CONTENT_RANGE, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE,
    SET_COOKIE,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::CacheBody;
use crate::conditional::is_not_modified;
use crate::entry::{CachedResponse, Entry};
use crate::range::{self, Wanted};
use crate::rfc9111;
use crate::shared::Shared;
use crate::stats::bump;
use crate::status::{self, Served};

/// Who is being answered: the request's headers (for its validators) and
/// whether it is a HEAD.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) request: &'a HeaderMap,
    pub(crate) head: bool,
}

impl Answer<'_> {
    /// The response for `entry`, `age` old, served as `served`. An entry
    /// that holds no response (a rule or a value, which no path serves)
    /// answers 500 rather than panic.
    pub(crate) fn entry<B>(
        &self,
        entry: &Entry,
        age: Duration,
        served: Served,
    ) -> Response<CacheBody<B>> {
        match entry.response() {
            Some(stored) => {
                let mut response = self.stored(stored, age, served);
                // A user's own copy: a browser (or any cache downstream)
                // must not show it to the next user of the same client,
                // so it varies on what tells the users apart.
                if entry.user.is_some()
                    && let Some(vary) = &self.shared.user_vary
                {
                    response
                        .headers_mut()
                        .append(http::header::VARY, vary.clone());
                }
                response
            }
            None => {
                tracing::error!("a lookup tried to serve an entry that holds no response");
                let mut response = Response::new(CacheBody::empty());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    }

    fn stored<B>(
        &self,
        stored: &CachedResponse,
        age: Duration,
        served: Served,
    ) -> Response<CacheBody<B>> {
        // The representation in the coding the request prefers, when the
        // cache compressed the response (HEAD, 304 and Range all follow it).
        let stored = stored.select(self.request);
        let age = status::age_value(age.as_secs());
        // One pass over the request's field names finds the validators and
        // a range (cheaper than a lookup for each on a hit's few fields).
        let (mut conditional, mut ranged) = (false, false);
        for name in self.request.keys() {
            if name == IF_NONE_MATCH || name == IF_MODIFIED_SINCE {
                conditional = true;
            } else if name == RANGE {
                ranged = true;
            }
        }
        if conditional
            && stored.status().is_success()
            && is_not_modified(self.request, stored.etag(), Some(stored.last_modified()))
        {
            bump(&self.shared.stats.not_modified);
            let mut response = Response::new(CacheBody::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            let headers = response.headers_mut();
            *headers = stored.not_modified_headers().clone();
            headers.insert(AGE, age);
            if !matches!(served, Served::Hit) {
                status::replace_own(headers, served.header());
            }
            return response;
        }
        // Range is defined for GET alone (RFC 9110 §14.2), and answered
        // from a whole stored 200.
        let wanted = if ranged && !self.head && stored.status() == StatusCode::OK {
            range::wanted(
                self.request,
                stored.body().len() as u64,
                stored.etag(),
                stored.headers().get(LAST_MODIFIED),
            )
        } else {
            Wanted::Whole
        };
        let (status, body) = match wanted {
            Wanted::Whole if self.head => (stored.status(), CacheBody::empty()),
            Wanted::Whole => (stored.status(), CacheBody::full(stored.body().clone())),
            Wanted::Part { first, last } => {
                let part = stored.body().slice(first as usize..=last as usize);
                (StatusCode::PARTIAL_CONTENT, CacheBody::full(part))
            }
            Wanted::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, CacheBody::empty()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        *headers = stored.headers().clone();
        let length = stored.body().len();
        match wanted {
            Wanted::Whole => {}
            Wanted::Part { first, last } => {
                let range = format!("bytes {first}-{last}/{length}");
                headers.insert(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&range).expect("digits"),
                );
                headers.insert(CONTENT_LENGTH, HeaderValue::from(last - first + 1));
            }
            Wanted::Unsatisfiable => {
                let range = format!("bytes */{length}");
                headers.insert(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&range).expect("digits"),
                );
                headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            }
        }
        if stored.has_targeted_field() {
            headers.remove(rfc9111::STRATA_CACHE_CONTROL);
        }
        // Both slots exist in the stored headers, so these replace in place.
        headers.insert(AGE, age);
        if !matches!(served, Served::Hit) {
            status::replace_own(headers, served.header());
        }
        response
    }
}

/// `response` with the `Set-Cookie` lines meant for its client alone.
/// `504 Gateway Timeout` from the cache itself, with its `Cache-Status`:
/// `only-if-cached` with nothing that fits (RFC 9111 §5.2.1.7), or a
/// stored response that must be validated while the origin cannot be
/// reached (§5.2.2.2).
pub(crate) fn gateway_timeout<B>(served: Served) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response
        .headers_mut()
        .insert(crate::CACHE_STATUS, served.header());
    response
}

pub(crate) fn with_cookies<B>(mut response: Response<B>, cookies: Vec<HeaderValue>) -> Response<B> {
    for cookie in cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}
