//! [`CacheService`]: the middleware itself.
//!
//! A GET or HEAD first tries the store's in-process layer synchronously;
//! a fresh entry is answered right there, with no boxed future. Anything
//! else takes the slow path: look up through every layer, join or lead the
//! single flight for the key, call the inner service, decide from the
//! response's policy whether and where to store it.
//!
//! A route's policy arrives with its first response, so the cache learns
//! how a URL varies from that response and stores the lesson at the URL's
//! primary key (a [`VariantRule`]): shared responses live at the primary key
//! itself; per-user or `Vary` responses live at variant keys that the rule
//! tells how to build. A request for a per-user URL without a user never
//! reaches a stored variant.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, PRAGMA, SET_COOKIE, VARY,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use sha2::Digest as _;
use tower::util::Oneshot;
use tower_service::Service;
use tracing::Instrument as _;

use crate::admit;
use crate::body::{BoxError, CacheBody};
use crate::conditional::{self, copy_not_modified_headers, etag_for, http_date, is_not_modified};
use crate::entry::{CachedResponse, Entry, EntryKind, VariantRule};
use crate::fence::{Names, Start, Ticket};
use crate::flight::Join;
use crate::key::normalize_url;
use crate::policy::{CachePolicy, Invalidates, Scope};
use crate::rfc9111::{self, RequestDirectives, ResponseDirectives, ResponseTiming};
use crate::shared::{Filled, Outcome, Shared, Written};
use crate::stats::bump;
use crate::store::{BoxFuture, Invalidation};

/// The `Cache-Status` response header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Status codes whose responses the layer stores under a public or private
/// policy: success and permanent redirects. Errors (404 included) are not
/// stored, so a created resource is not hidden behind a cached 404.
pub const STORABLE_STATUSES: [StatusCode; 6] = [
    StatusCode::OK,
    StatusCode::NON_AUTHORITATIVE_INFORMATION,
    StatusCode::NO_CONTENT,
    StatusCode::MULTIPLE_CHOICES,
    StatusCode::MOVED_PERMANENTLY,
    StatusCode::PERMANENT_REDIRECT,
];

/// How often one request goes round lookup and flight before it stops
/// waiting on others and asks the inner service itself.
const MAX_ROUNDS: usize = 4;

/// The middleware. Built by [`CacheLayer`](crate::CacheLayer).
///
/// The inner service is kept behind an `Arc` and cloned only when a
/// request has to reach it (a miss, a pass-through, a write): axum clones
/// route services on every request, and a hit should not pay for cloning
/// the route it never calls. For the same reason `poll_ready` is always
/// ready; each call drives its own clone of the inner service to
/// readiness before calling it.
#[derive(Debug)]
pub struct CacheService<S> {
    inner: Arc<S>,
    shared: Arc<Shared>,
}

impl<S> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner: Arc::new(inner),
            shared,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> CacheService<S> {
    /// The inner service, mutably (cloned first if other clones share it).
    pub fn get_mut(&mut self) -> &mut S {
        Arc::make_mut(&mut self.inner)
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        Arc::unwrap_or_clone(self.inner)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.method();
        if method == Method::GET || method == Method::HEAD {
            let (parts, body) = request.into_parts();
            let primary = self.shared.keys.url_key(&parts.uri);
            // Read before looking, as `serve` does (see there).
            let start = self.shared.start();
            let (mode, user) = match fast_path(&self.shared, &parts, &primary) {
                Fast::Hit(response) => return ResponseFuture::ready(response),
                Fast::Go(mode, user) => (mode, user),
                Fast::Lookup => {
                    let inner = S::clone(&self.inner);
                    let shared = Arc::clone(&self.shared);
                    let span = decision_span(&primary);
                    let serving = serve(shared, inner, parts, body, primary);
                    return ResponseFuture::boxed(serving.instrument(span));
                }
            };
            let inner = S::clone(&self.inner);
            let shared = Arc::clone(&self.shared);
            let span = decision_span(&primary);
            let outcome = match mode {
                Mode::Bypass => "bypass",
                _ => "pass",
            };
            span.record("outcome", outcome);
            span.record("layer", "service");
            return ResponseFuture::boxed(
                async move {
                    let forwarded = forward(
                        &shared, inner, parts, body, &primary, user, start, mode, None,
                    )
                    .await?;
                    Ok(forwarded.0)
                }
                .instrument(span),
            );
        }
        if method.is_safe() {
            let future = Oneshot::new(S::clone(&self.inner), request);
            return ResponseFuture::boxed(async move {
                let response = future.await?;
                Ok(response.map(CacheBody::inner))
            });
        }
        let write = Write {
            method: request.method().clone(),
            origin: rfc9111::Origin::of_request(
                request.uri(),
                request.headers(),
                http::uri::Scheme::HTTP,
            ),
            target: request.uri().clone(),
        };
        let future = Oneshot::new(S::clone(&self.inner), request);
        ResponseFuture::boxed(after_write(Arc::clone(&self.shared), future, write))
    }
}

// ----------------------------------------------------------------------------
// Decisions: small pure functions the fast and slow paths share.
// ----------------------------------------------------------------------------

/// Why a lookup went to the inner service (RFC 9211 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fwd {
    UriMiss,
    VaryMiss,
    Stale,
    /// The client's request directives sent it on (`no-cache`, `max-age`,
    /// `min-fresh`).
    Request,
}

enum Step {
    /// A fresh stored response and its age (computed once, here).
    Hit(Arc<Entry>, Duration),
    /// The primary key holds a rule; look up this variant key next.
    Variant(String),
    Miss {
        flight_key: String,
        fwd: Fwd,
        /// The stored response that is no longer fresh, if any.
        stale: Option<Arc<Entry>>,
        /// Whether `stale` may answer instead of a server error
        /// (`stale-if-error`).
        if_error: bool,
    },
    /// A stale response the client accepts as it is (`max-stale`), and
    /// its age.
    Accepted(Arc<Entry>, Duration),
    /// `only-if-cached`, and nothing stored fits: 504.
    Unsatisfiable,
    /// A stale response that may answer now while one background request
    /// refreshes it (`stale-while-revalidate`), its age, and the key the
    /// refresh leads a flight for.
    Stale {
        entry: Arc<Entry>,
        age: Duration,
        flight_key: String,
    },
    /// Known not storable: straight to the inner service, no waiting.
    Pass,
    /// Per-user URL, anonymous request: inner service, nothing stored.
    Bypass,
}

/// The user of a request, asked for at most once.
#[derive(Default)]
struct LazyUser(Option<Option<String>>);

impl LazyUser {
    fn get(&mut self, shared: &Shared, parts: &Parts) -> Option<&str> {
        self.0
            .get_or_insert_with(|| shared.user_of(parts))
            .as_deref()
    }
}

fn step_at_primary(
    shared: &Shared,
    primary: &str,
    found: Option<Arc<Entry>>,
    parts: &Parts,
    user: &mut LazyUser,
    now: SystemTime,
) -> Step {
    // A rule past its time is as good as none (rules follow the cache's
    // clock like responses do, not only moka's).
    let found = found.filter(|entry| entry.response().is_some() || entry.is_fresh(now));
    let Some(entry) = found else {
        // Nothing known about the URL yet. Requests of different users
        // never share a flight, so a private first response cannot reach
        // another user even before the rule is learnt.
        let flight_key = match user.get(shared, parts) {
            Some(user) => format!("{primary}#?u={user}"),
            None => primary.to_owned(),
        };
        return Step::Miss {
            flight_key,
            fwd: Fwd::UriMiss,
            stale: None,
            if_error: false,
        };
    };
    match &entry.kind {
        EntryKind::Response(_) => match fresh_age(&entry, now) {
            Some(age) => Step::Hit(entry, age),
            None => stale_step(entry, now, primary.to_owned()),
        },
        EntryKind::Variants(rule) if rule.pass => Step::Pass,
        EntryKind::Variants(rule) => {
            let user = if rule.per_user {
                match user.get(shared, parts) {
                    Some(user) => Some(user),
                    None => return Step::Bypass,
                }
            } else {
                None
            };
            Step::Variant(
                shared
                    .keys
                    .variant_key(primary, user, &rule.vary, &parts.headers),
            )
        }
        EntryKind::Value(_) => Step::Pass,
    }
}

/// The entry's age at `now`, if it is still fresh.
fn fresh_age(entry: &Entry, now: SystemTime) -> Option<Duration> {
    let age = entry.age(now);
    (age < entry.ttl).then_some(age)
}

fn step_at_variant(key: String, found: Option<Arc<Entry>>, now: SystemTime) -> Step {
    match found {
        Some(entry) if entry.response().is_some() => match fresh_age(&entry, now) {
            Some(age) => Step::Hit(entry, age),
            None => stale_step(entry, now, key),
        },
        _ => Step::Miss {
            flight_key: key,
            fwd: Fwd::VaryMiss,
            stale: None,
            if_error: false,
        },
    }
}

/// What a stored response past its freshness may still do (RFC 5861):
/// answer now while a refresh runs, stand by in case the refresh fails,
/// or nothing.
fn stale_step(entry: Arc<Entry>, now: SystemTime, flight_key: String) -> Step {
    let age = entry.age(now);
    let windows = entry
        .response()
        .filter(|_| !entry.stale.is_zero())
        .map(|stored| StaleWindows::of(stored.headers()))
        .unwrap_or_default();
    // How long the response has been stale; a store keeps it no longer
    // than `ttl + stale`, whatever its headers say.
    let over = age.saturating_sub(entry.ttl);
    if over < windows.while_revalidate.min(entry.stale) {
        return Step::Stale {
            entry,
            age,
            flight_key,
        };
    }
    let if_error = over < windows.if_error.min(entry.stale);
    Step::Miss {
        flight_key,
        fwd: Fwd::Stale,
        stale: Some(entry),
        if_error,
    }
}

/// The step once the client's request directives are obeyed (RFC 9111
/// §5.2.1, with [`CacheBuilder::honour_request_directives`](crate::CacheBuilder::honour_request_directives)).
fn obey_request(step: Step, request: &RequestDirectives, now: SystemTime) -> Step {
    let (entry, age) = match &step {
        Step::Hit(entry, age) | Step::Stale { entry, age, .. } => (Some(Arc::clone(entry)), *age),
        Step::Miss {
            stale: Some(entry), ..
        } => (Some(Arc::clone(entry)), entry.age(now)),
        Step::Miss { stale: None, .. } | Step::Pass | Step::Bypass => (None, Duration::ZERO),
        Step::Variant(_) | Step::Accepted(..) | Step::Unsatisfiable => return step,
    };
    let directives = entry
        .as_ref()
        .and_then(|entry| entry.response())
        .map(|stored| rfc9111::response_directives(stored.headers(), false));
    let stored = entry
        .as_ref()
        .zip(directives.as_ref())
        .map(|(entry, directives)| rfc9111::Stored {
            directives,
            lifetime: entry.ttl,
            current_age: age,
        });
    match (rfc9111::serve(request, stored.as_ref(), now), entry) {
        (rfc9111::Serve::GatewayTimeout, _) => Step::Unsatisfiable,
        (rfc9111::Serve::Stale, Some(entry)) if !matches!(step, Step::Hit(..)) => {
            Step::Accepted(entry, age)
        }
        (
            rfc9111::Serve::Revalidate {
                stale_if_error_until,
            },
            Some(entry),
        ) => {
            // A copy the cache would have served, sent on by the client's
            // directives, is `fwd=request` (RFC 9211 §2.2).
            let (flight_key, fwd) = match step {
                Step::Miss {
                    flight_key, fwd, ..
                } => (flight_key, fwd),
                Step::Stale { flight_key, .. } => (flight_key, Fwd::Request),
                _ => (entry.key.clone(), Fwd::Request),
            };
            Step::Miss {
                flight_key,
                fwd,
                if_error: stale_if_error_until.is_some_and(|until| now <= until),
                stale: Some(entry),
            }
        }
        _ => step,
    }
}

/// The stale windows a stored response's `Cache-Control` grants (RFC 5861
/// §3 and §4); none when it also says `must-revalidate`,
/// `proxy-revalidate` or `no-cache` (RFC 9111 §4.2.4).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct StaleWindows {
    while_revalidate: Duration,
    if_error: Duration,
}

impl StaleWindows {
    fn of(headers: &HeaderMap) -> Self {
        Self::from_directives(&rfc9111::response_directives(headers, false))
    }

    fn from_directives(directives: &ResponseDirectives) -> Self {
        if directives.forbids_stale() {
            return Self::default();
        }
        let window = |seconds: Option<u32>| Duration::from_secs(u64::from(seconds.unwrap_or(0)));
        Self {
            while_revalidate: window(directives.stale_while_revalidate),
            if_error: window(directives.stale_if_error),
        }
    }
}

/// The statuses `stale-if-error` covers (RFC 5861 §4).
fn is_server_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Why a response with a storing policy was not stored (RFC 9211 `detail`).
fn unstorable_reason<B: Body>(
    policy: &CachePolicy,
    response: &Response<B>,
    user: Option<&str>,
    max_body: usize,
) -> Option<&'static str> {
    let headers = response.headers();
    let origin = policy.scope() == Scope::Origin;
    // Under `origin` the response's headers decided status and freshness
    // already (`origin_plan`).
    if !origin && !STORABLE_STATUSES.contains(&response.status()) {
        return Some("status");
    }
    if policy.scope() == Scope::Private && user.is_none() {
        return Some("anonymous");
    }
    // A shared entry never replays one client's cookie to others.
    if (policy.scope() == Scope::Public || origin) && headers.contains_key(SET_COOKIE) {
        return Some("set-cookie");
    }
    // The handler marked its own response as one user's (RFC 9111
    // §5.2.2.7): a shared entry would serve it to everyone.
    // Under `origin`, `origin_plan` read these from the field that
    // applies to strata (perhaps `Strata-Cache-Control`, not these).
    if !origin {
        if policy.scope() == Scope::Public && header_has_token(headers, &CACHE_CONTROL, "private") {
            return Some("private");
        }
        if header_has_token(headers, &CACHE_CONTROL, "no-store") {
            return Some("no-store");
        }
        // The handler asked for revalidation on every use. App-declared
        // routes are not revalidated before each use (only once stale),
        // so such a response is not stored.
        if header_has_token(headers, &CACHE_CONTROL, "no-cache") {
            return Some("no-cache");
        }
        if policy.ttl().is_zero() {
            return Some("ttl");
        }
        if header_has_token(headers, &VARY, "*") {
            return Some("vary-star");
        }
    }
    let is_event_stream = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if is_event_stream {
        return Some("stream");
    }
    match body_length(response) {
        None => Some("unknown-length"),
        Some(len) if len > max_body as u64 => Some("too-large"),
        Some(_) => None,
    }
}

/// The body length known before reading it: `Content-Length`, else an
/// exact or bounded size hint.
fn body_length<B: Body>(response: &Response<B>) -> Option<u64> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    declared.or_else(|| response.body().size_hint().upper())
}

fn header_has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|part| {
                part.trim()
                    .split('=')
                    .next()
                    .is_some_and(|t| t.eq_ignore_ascii_case(token))
            })
        })
    })
}

/// The request headers that select a variant: the policy's, and those the
/// response's own `Vary` names, sorted and without repeats.
fn vary_of(policy: &CachePolicy, response_headers: &HeaderMap) -> Vec<HeaderName> {
    let mut vary: Vec<HeaderName> = policy.vary_headers().to_vec();
    for value in response_headers.get_all(VARY) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if let Ok(name) = HeaderName::try_from(name.to_ascii_lowercase()) {
                vary.push(name);
            }
        }
    }
    vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    vary.dedup();
    vary
}

// ----------------------------------------------------------------------------
// Tracing
// ----------------------------------------------------------------------------

/// A key as logs show it: the first 64 bits of its SHA-256, so logs can
/// follow one key without carrying URLs, query strings or user ids.
/// Computed only when a subscriber wants the event.
struct KeyDigest<'a>(&'a str);

impl fmt::Display for KeyDigest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = sha2::Sha256::digest(self.0.as_bytes());
        f.write_str(&hex::encode(&digest[..8]))
    }
}

/// The span of one cache decision on the slow path; `outcome` and `layer`
/// are recorded once known.
fn decision_span(primary: &str) -> tracing::Span {
    tracing::debug_span!(
        target: "strata",
        "strata.request",
        key = %KeyDigest(primary),
        outcome = tracing::field::Empty,
        layer = tracing::field::Empty,
    )
}

fn record_decision(outcome: &'static str, layer: &'static str) {
    let span = tracing::Span::current();
    span.record("outcome", outcome);
    span.record("layer", layer);
}

// ----------------------------------------------------------------------------
// Responses
// ----------------------------------------------------------------------------

static HIT: HeaderValue = HeaderValue::from_static("strata; hit");

/// Ages below this many seconds come from a table built once, so a hit
/// does not allocate to say how old it is.
const AGE_TABLE_LEN: usize = 3601;

fn age_value(secs: u64) -> HeaderValue {
    static TABLE: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
        let mut digits = String::new();
        let mut ends = Vec::with_capacity(AGE_TABLE_LEN);
        for age in 0..AGE_TABLE_LEN {
            digits.push_str(&age.to_string());
            ends.push(digits.len());
        }
        let digits: &'static str = Box::leak(digits.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let value = HeaderValue::from_static(&digits[start..end]);
                start = end;
                value
            })
            .collect()
    });
    match usize::try_from(secs).ok().and_then(|i| TABLE.get(i)) {
        Some(value) => value.clone(),
        None => HeaderValue::from(secs),
    }
}

/// How a stored response reached this request.
#[derive(Debug, Clone, Copy)]
enum Served {
    Hit,
    Stored(Fwd),
    /// Fetched and meant to be stored, but the write did not happen.
    Fetched(Fwd),
    Collapsed(Fwd),
    /// Stale, while one background request refreshes it.
    StaleWhileRevalidate,
    /// Stale, as the client accepts (`max-stale`).
    Accepted,
    /// Sent to the service with the stored copy's validators (because it
    /// was stale, or the client asked), confirmed by a 304, and stored
    /// again or not.
    Revalidated {
        fwd: Fwd,
        stored: bool,
    },
    /// Stale, instead of the error the service answered (its status, or
    /// none when the service failed).
    StaleIfError(Option<StatusCode>),
}

fn cache_status(served: Served) -> HeaderValue {
    let text = match served {
        Served::Hit => return HIT.clone(),
        Served::StaleWhileRevalidate => "strata; hit; detail=stale-while-revalidate",
        Served::Accepted => "strata; hit; detail=max-stale",
        Served::Revalidated { fwd, stored: true } => match fwd {
            Fwd::Request => "strata; fwd=request; fwd-status=304; stored",
            _ => "strata; fwd=stale; fwd-status=304; stored",
        },
        Served::Revalidated { fwd, stored: false } => match fwd {
            Fwd::Request => "strata; fwd=request; fwd-status=304",
            _ => "strata; fwd=stale; fwd-status=304",
        },
        // Forwarded, so not a `hit` (RFC 9211 §2.1), though the stored
        // response answers.
        Served::StaleIfError(None) => "strata; fwd=stale; detail=stale-if-error",
        Served::StaleIfError(Some(status)) => {
            return HeaderValue::try_from(format!(
                "strata; fwd=stale; fwd-status={}; detail=stale-if-error",
                status.as_u16()
            ))
            .unwrap_or_else(|_| {
                HeaderValue::from_static("strata; fwd=stale; detail=stale-if-error")
            });
        }
        Served::Stored(Fwd::UriMiss) => "strata; fwd=uri-miss; stored",
        Served::Stored(Fwd::VaryMiss) => "strata; fwd=vary-miss; stored",
        Served::Stored(Fwd::Stale) => "strata; fwd=stale; stored",
        Served::Fetched(Fwd::UriMiss) => "strata; fwd=uri-miss",
        Served::Fetched(Fwd::VaryMiss) => "strata; fwd=vary-miss",
        Served::Fetched(Fwd::Stale) => "strata; fwd=stale",
        Served::Collapsed(Fwd::UriMiss) => "strata; fwd=uri-miss; collapsed",
        Served::Collapsed(Fwd::VaryMiss) => "strata; fwd=vary-miss; collapsed",
        Served::Collapsed(Fwd::Stale) => "strata; fwd=stale; collapsed",
        Served::Stored(Fwd::Request) => "strata; fwd=request; stored",
        Served::Fetched(Fwd::Request) => "strata; fwd=request",
        Served::Collapsed(Fwd::Request) => "strata; fwd=request; collapsed",
    };
    HeaderValue::from_static(text)
}

fn not_stored_status(fwd: &str, detail: &str) -> HeaderValue {
    HeaderValue::try_from(format!("strata; fwd={fwd}; detail={detail}"))
        .unwrap_or_else(|_| HeaderValue::from_static("strata; fwd=miss"))
}

fn fwd_name(fwd: Fwd) -> &'static str {
    match fwd {
        Fwd::UriMiss => "uri-miss",
        Fwd::VaryMiss => "vary-miss",
        Fwd::Stale => "stale",
        Fwd::Request => "request",
    }
}

/// Answers a request from a stored response: 304 when the request's
/// validators match, else the stored status, headers and body (no body
/// for HEAD), with `Age` and `Cache-Status`.
fn respond_from_entry<B>(
    shared: &Shared,
    entry: &Entry,
    request_headers: &HeaderMap,
    head: bool,
    age: Duration,
    served: Served,
) -> Response<CacheBody<B>> {
    let Some(stored) = entry.response() else {
        unreachable!("only response entries are served");
    };
    let age = age_value(age.as_secs());
    let conditional = request_headers.contains_key(IF_NONE_MATCH)
        || request_headers.contains_key(IF_MODIFIED_SINCE);
    if conditional
        && stored.status().is_success()
        && is_not_modified(request_headers, stored.etag(), Some(stored.last_modified()))
    {
        bump(&shared.stats.not_modified);
        let mut response = Response::new(CacheBody::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let headers = response.headers_mut();
        *headers = stored.not_modified_headers().clone();
        headers.insert(AGE, age);
        if !matches!(served, Served::Hit) {
            replace_own_status(headers, cache_status(served));
        }
        return response;
    }
    let body = if head {
        CacheBody::empty()
    } else {
        CacheBody::full(stored.body().clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = stored.status();
    let headers = response.headers_mut();
    *headers = stored.headers().clone();
    if stored.has_targeted_field() {
        headers.remove(rfc9111::STRATA_CACHE_CONTROL);
    }
    // Both slots exist in the stored headers, so these replace in place.
    headers.insert(AGE, age);
    if !matches!(served, Served::Hit) {
        replace_own_status(headers, cache_status(served));
    }
    response
}

/// Puts `status` in place of strata's own `Cache-Status` member in a
/// stored copy's headers: the last line, after those of the caches behind
/// strata, which stay (RFC 9211 §2).
fn replace_own_status(headers: &mut HeaderMap, status: HeaderValue) {
    let mut lines = headers.get_all(CACHE_STATUS).iter();
    if lines.next().is_none() || lines.next().is_none() {
        headers.insert(CACHE_STATUS, status);
        return;
    }
    let mut behind: Vec<HeaderValue> = headers.get_all(CACHE_STATUS).iter().cloned().collect();
    behind.pop();
    headers.remove(CACHE_STATUS);
    for line in behind {
        headers.append(CACHE_STATUS, line);
    }
    headers.append(CACHE_STATUS, status);
}

/// What the synchronous, in-process lookup found out.
enum Fast<B> {
    /// A fresh stored response: the answer.
    Hit(Response<CacheBody<B>>),
    /// The URL is known not to be storable for this request: go to the
    /// inner service without another lookup and without a flight.
    Go(Mode, LazyUser),
    /// Not known here: look up through every layer.
    Lookup,
}

fn fast_path<B>(shared: &Shared, parts: &Parts, primary: &str) -> Fast<B> {
    // A client's directives are weighed on the slow path.
    if shared.request_directives
        && (parts.headers.contains_key(CACHE_CONTROL) || parts.headers.contains_key(PRAGMA))
    {
        return Fast::Lookup;
    }
    let Some(found) = shared.store.get_local(primary) else {
        return Fast::Lookup;
    };
    let now = shared.clock.now();
    let mut user = LazyUser::default();
    let (entry, age) = match step_at_primary(shared, primary, Some(found), parts, &mut user, now) {
        Step::Hit(entry, age) => (entry, age),
        Step::Variant(key) => {
            let found = shared.store.get_local(&key);
            match step_at_variant(key, found, now) {
                Step::Hit(entry, age) => (entry, age),
                _ => return Fast::Lookup,
            }
        }
        Step::Pass => return Fast::Go(Mode::Pass, user),
        Step::Bypass => return Fast::Go(Mode::Bypass, user),
        Step::Miss { .. } | Step::Stale { .. } => return Fast::Lookup,
        Step::Accepted(..) | Step::Unsatisfiable => unreachable!("only from request directives"),
    };
    bump(&shared.stats.hits);
    tracing::trace!(target: "strata", key = %KeyDigest(primary), outcome = "hit", layer = "memory");
    let head = parts.method == Method::HEAD;
    Fast::Hit(respond_from_entry(
        shared,
        &entry,
        &parts.headers,
        head,
        age,
        Served::Hit,
    ))
}

// ----------------------------------------------------------------------------
// The slow path
// ----------------------------------------------------------------------------

/// What `forward` may do with the response.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// A miss: store if the policy allows, and learn the URL's rule.
    Fill(Fwd),
    /// The URL was last seen not storable: store only if that changed.
    Pass,
    /// Anonymous request for a per-user URL: store nothing.
    Bypass,
    /// A background refresh of a stale response (`stale-while-revalidate`):
    /// a fill that no client waits for, so it is not counted as a request.
    Refresh,
}

async fn serve<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    inner: S,
    parts: Parts,
    body: ReqBody,
    primary: String,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let mut user = LazyUser::default();
    let head = parts.method == Method::HEAD;
    let mut rounds = 0;
    let request = (shared.request_directives
        && (parts.headers.contains_key(CACHE_CONTROL) || parts.headers.contains_key(PRAGMA)))
    .then(|| RequestDirectives::from_headers(&parts.headers));
    let name = normalize_url(&parts.uri);
    let (start, mode, leader, stale, if_error) = loop {
        rounds += 1;
        // Read before looking: an invalidation from here on that names
        // what this request's fill (if it leads one) stores keeps it out.
        let start = shared.start();
        if rounds > MAX_ROUNDS {
            record_decision("miss", "service");
            break (start, Mode::Fill(Fwd::UriMiss), None, None, false);
        }
        let now = shared.clock.now();
        let found = shared.get(&primary).await;
        let mut step = step_at_primary(&shared, &primary, found, &parts, &mut user, now);
        if let Step::Variant(key) = step {
            let found = shared.get(&key).await;
            step = step_at_variant(key, found, now);
        }
        if let Some(request) = &request {
            step = obey_request(step, request, now);
        }
        let (flight_key, fwd, stale, if_error) = match step {
            Step::Accepted(entry, age) => {
                bump(&shared.stats.hits);
                record_decision("stale", "store");
                return Ok(respond_from_entry(
                    &shared,
                    &entry,
                    &parts.headers,
                    head,
                    age,
                    Served::Accepted,
                ));
            }
            Step::Unsatisfiable => {
                bump(&shared.stats.bypasses);
                record_decision("bypass", "service");
                let mut response = Response::new(CacheBody::empty());
                *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
                response.headers_mut().insert(
                    CACHE_STATUS,
                    HeaderValue::from_static("strata; fwd=miss; detail=only-if-cached"),
                );
                return Ok(response);
            }
            Step::Hit(entry, age) => {
                bump(&shared.stats.hits);
                record_decision("hit", "store");
                let served = Served::Hit;
                return Ok(respond_from_entry(
                    &shared,
                    &entry,
                    &parts.headers,
                    head,
                    age,
                    served,
                ));
            }
            Step::Stale {
                entry,
                age,
                flight_key,
            } => match tokio::runtime::Handle::try_current() {
                // No runtime to refresh on: refresh in line instead.
                Err(_) => (flight_key, Fwd::Stale, Some(entry), false),
                Ok(runtime) => {
                    bump(&shared.stats.hits);
                    record_decision("stale", "store");
                    let response = respond_from_entry(
                        &shared,
                        &entry,
                        &parts.headers,
                        head,
                        age,
                        Served::StaleWhileRevalidate,
                    );
                    // One refresh per key: when another request leads it
                    // already, this one only answers.
                    let join = join_flight(&shared, &flight_key, start, &name, &parts, &mut user);
                    if let Join::Leader(leader) = join {
                        let shared = Arc::clone(&shared);
                        runtime.spawn(async move {
                            let refreshed = forward(
                                &shared,
                                inner,
                                parts,
                                body,
                                &primary,
                                user,
                                start,
                                Mode::Refresh,
                                Some(entry),
                            )
                            .await;
                            match refreshed {
                                Ok((_, outcome)) => leader.complete(outcome),
                                Err(_) => leader.complete(Outcome::Unshareable),
                            }
                        });
                    }
                    return Ok(response);
                }
            },
            Step::Pass => {
                record_decision("pass", "service");
                break (start, Mode::Pass, None, None, false);
            }
            Step::Bypass => {
                record_decision("bypass", "service");
                break (start, Mode::Bypass, None, None, false);
            }
            Step::Miss {
                flight_key,
                fwd,
                stale,
                if_error,
            } => (flight_key, fwd, stale, if_error),
            Step::Variant(_) => unreachable!("resolved above"),
        };
        match join_flight(&shared, &flight_key, start, &name, &parts, &mut user) {
            Join::Leader(leader) => {
                record_decision("miss", "service");
                break (start, Mode::Fill(fwd), Some(leader), stale, if_error);
            }
            Join::Waiter(waiter) => match waiter.wait().await {
                Some(Outcome::Filled(filled))
                    if serves(&shared, &filled, &primary, &parts, &mut user) =>
                {
                    bump(&shared.stats.coalesced);
                    bump(&shared.stats.hits);
                    record_decision("collapsed", "flight");
                    let entry = &filled.entry;
                    let age = entry.age(shared.clock.now());
                    let served = Served::Collapsed(fwd);
                    return Ok(respond_from_entry(
                        &shared,
                        entry,
                        &parts.headers,
                        head,
                        age,
                        served,
                    ));
                }
                Some(Outcome::Unshareable) => {
                    // The leader's response was not shareable: ask ourselves.
                    record_decision("miss", "service");
                    break (start, Mode::Fill(fwd), None, stale, if_error);
                }
                // Stored for another variant, fenced by an invalidation, or
                // the leader went away: look again (with the rule now
                // known), perhaps lead.
                Some(Outcome::Filled(_) | Outcome::Fenced) | None => {}
            },
        }
    };
    let fallback = stale.clone().filter(|_| if_error);
    let request_headers = fallback.as_ref().map(|_| parts.headers.clone());
    let forwarded = forward(
        &shared, inner, parts, body, &primary, user, start, mode, stale,
    )
    .await;
    // `stale-if-error`: a stale response stands in for a server error or
    // a failed service.
    let failed = match &forwarded {
        Ok((response, _)) if is_server_error(response.status()) => Some(Some(response.status())),
        Ok(_) => None,
        Err(_) => Some(None),
    };
    if let (Some(status), Some(stale), Some(request_headers)) = (failed, fallback, request_headers)
    {
        if let Some(leader) = leader {
            leader.complete(Outcome::Unshareable);
        }
        record_decision("stale", "store");
        let age = stale.age(shared.clock.now());
        return Ok(respond_from_entry(
            &shared,
            &stale,
            &request_headers,
            head,
            age,
            Served::StaleIfError(status),
        ));
    }
    let (response, outcome) = forwarded?;
    if let Some(leader) = leader {
        leader.complete(outcome);
    }
    Ok(response)
}

/// Joins the flight for `flight_key`, or leads one from `start`. A flight
/// that an invalidation since its start names (by this request's URL and
/// user, or the tags the URL was last stored with) is not joined.
fn join_flight(
    shared: &Shared,
    flight_key: &str,
    start: Start,
    name: &str,
    parts: &Parts,
    user: &mut LazyUser,
) -> Join<Outcome> {
    let names = Names {
        key: flight_key,
        name,
        user: user.get(shared, parts),
        tags: &[],
    };
    let fences = &shared.fences;
    shared.flights.join(flight_key, start.seq(), |at| {
        fences.flight_fenced(at, names)
    })
}

/// Whether a response a flight leader stored may answer this request: only
/// if this request would have looked it up under the same key.
fn serves(
    shared: &Shared,
    filled: &Filled,
    primary: &str,
    parts: &Parts,
    user: &mut LazyUser,
) -> bool {
    let expected = match &filled.rule {
        None => primary.to_owned(),
        Some(rule) => {
            let user = if rule.per_user {
                match user.get(shared, parts) {
                    Some(user) => Some(user),
                    None => return false,
                }
            } else {
                None
            };
            shared
                .keys
                .variant_key(primary, user, &rule.vary, &parts.headers)
        }
    };
    expected == filled.entry.key
}

/// What the response handling needs to know about the request, once the
/// request itself has gone to the inner service.
struct Ctx<'a> {
    primary: &'a str,
    name: String,
    user: Option<String>,
    head: bool,
    request_headers: HeaderMap,
    /// The fill's fence ticket, taken where its lookup began.
    ticket: Ticket,
    mode: Mode,
    /// Whether this is a client's request, which the figures count (a
    /// background refresh is not).
    counted: bool,
    /// When the request went to the inner service (RFC 9111 §4.2.3
    /// `request_time`).
    sent_at: SystemTime,
    /// The stale stored response whose validators the request carries.
    revalidating: Option<Arc<Entry>>,
}

impl Ctx<'_> {
    /// Counts the request as a miss or a bypass, if it is a client's.
    fn tally(&self, counter: &std::sync::atomic::AtomicU64) {
        if self.counted {
            bump(counter);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward<S, ReqBody, ResBody>(
    shared: &Shared,
    mut inner: S,
    mut parts: Parts,
    body: ReqBody,
    primary: &str,
    mut user: LazyUser,
    start: Start,
    mode: Mode,
    stale: Option<Arc<Entry>>,
) -> Result<(Response<CacheBody<ResBody>>, Outcome), S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let head = parts.method == Method::HEAD;
    let (mode, counted) = match mode {
        // A HEAD response has no body to store.
        Mode::Pass if head => (Mode::Bypass, true),
        Mode::Refresh => (Mode::Fill(Fwd::Stale), false),
        other => (other, true),
    };
    if head && matches!(mode, Mode::Fill(_)) {
        // Fetch the GET, store it, answer the HEAD without its body.
        parts.method = Method::GET;
    }
    let request_headers = parts.headers.clone();
    let mut revalidating = None;
    if matches!(mode, Mode::Fill(_)) {
        // A fill fetches the whole representation for everyone: a 304 the
        // service might answer to this client's validators could not be
        // stored. The cache answers the validators itself afterwards.
        parts.headers.remove(IF_NONE_MATCH);
        parts.headers.remove(IF_MODIFIED_SINCE);
        // With the stale copy's own validators instead, a 304 says the
        // copy is still good (RFC 9111 §4.3.1).
        if let Some(stale) = stale.filter(|entry| entry.response().is_some_and(has_validators)) {
            if let Some(stored) = stale.response() {
                if let Some(etag) = stored.etag() {
                    parts.headers.insert(IF_NONE_MATCH, etag.clone());
                }
                if let Some(date) = stored.headers().get(LAST_MODIFIED) {
                    parts.headers.insert(IF_MODIFIED_SINCE, date.clone());
                }
            }
            revalidating = Some(stale);
        }
    }
    let ctx = Ctx {
        primary,
        name: normalize_url(&parts.uri),
        user: user.get(shared, &parts).map(str::to_owned),
        head,
        request_headers,
        ticket: shared.ticket(start),
        mode,
        counted,
        sent_at: shared.clock.now(),
        revalidating,
    };
    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
    let response = inner.call(Request::from_parts(parts, body)).await?;
    let (response, outcome) = handle_response(shared, response, ctx).await;
    // A HEAD sent on as GET must not answer with the GET's body.
    let response = if head {
        response.map(|_| CacheBody::empty())
    } else {
        response
    };
    Ok((response, outcome))
}

async fn handle_response<B>(
    shared: &Shared,
    response: Response<B>,
    ctx: Ctx<'_>,
) -> (Response<CacheBody<B>>, Outcome)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let policy = response
        .extensions()
        .get::<CachePolicy>()
        .cloned()
        .or_else(|| shared.default_policy.clone());
    if response.status() == StatusCode::NOT_MODIFIED
        && let Some(stale) = ctx.revalidating.clone()
    {
        return refresh(shared, response, policy, &stale, ctx).await;
    }
    let Some(policy) = policy else {
        ctx.tally(&shared.stats.bypasses);
        remember_pass(shared, &ctx, response.status()).await;
        return (response.map(CacheBody::inner), Outcome::Unshareable);
    };
    match policy.scope() {
        Scope::NoStore => {
            ctx.tally(&shared.stats.bypasses);
            remember_pass(shared, &ctx, response.status()).await;
            let mut response = response.map(CacheBody::inner);
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, policy.cache_control().clone());
            headers.append(
                CACHE_STATUS,
                HeaderValue::from_static("strata; fwd=bypass; detail=no-store"),
            );
            (response, Outcome::Unshareable)
        }
        Scope::NoCache => {
            ctx.tally(&shared.stats.bypasses);
            remember_pass(shared, &ctx, response.status()).await;
            (
                no_cache_response(shared, response, &policy, &ctx).await,
                Outcome::Unshareable,
            )
        }
        Scope::Public | Scope::Private | Scope::Origin => {
            store_response(shared, response, &policy, ctx).await
        }
    }
}

/// Records that the URL's responses are not storable, so later requests
/// skip the single flight (and, on a tiered store, the remote lookup).
///
/// Only a successful response teaches this: an error or a 404 says
/// nothing about the route's policy, and remembering every unknown URL a
/// client makes up would let it push real entries out of memory.
async fn remember_pass(shared: &Shared, ctx: &Ctx<'_>, status: StatusCode) {
    let learnt = status.is_success() || status.is_redirection();
    if !learnt || !matches!(ctx.mode, Mode::Fill(_)) || shared.pass_ttl.is_zero() {
        return;
    }
    let rule = VariantRule {
        pass: true,
        ..VariantRule::default()
    };
    let marker = rule_entry(shared, ctx, rule, shared.pass_ttl);
    shared.put_all(&[marker], &ctx.ticket).await;
}

fn rule_entry(
    shared: &Shared,
    ctx: &Ctx<'_>,
    rule: VariantRule,
    ttl: std::time::Duration,
) -> Arc<Entry> {
    Arc::new(Entry {
        key: ctx.primary.to_owned(),
        name: ctx.name.clone(),
        user: None,
        tags: Vec::new(),
        stored_at: shared.clock.now(),
        ttl,
        stale: Duration::ZERO,
        kind: EntryKind::Variants(rule),
    })
}

/// A body read whole, or the reason it was not.
enum Buffered<B> {
    Whole(Bytes),
    /// Longer than the limit after all: what was read, and the rest.
    TooLong(Bytes, B),
    Failed(BoxError),
}

async fn buffer<B>(mut body: Pin<Box<B>>, limit: usize) -> Buffered<Pin<Box<B>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return Buffered::Failed(error.into()),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        }; // trailers are not stored
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(first) = first.take() {
                    rest.extend_from_slice(&first);
                }
                rest.extend_from_slice(&data);
            }
        }
        let read = first.as_ref().map_or(rest.len(), Bytes::len);
        if read > limit {
            let read = first.take().unwrap_or_else(|| rest.split().freeze());
            return Buffered::TooLong(read, body);
        }
    }
    Buffered::Whole(first.unwrap_or_else(|| rest.freeze()))
}

/// The fields a policy writes on a response: `Cache-Control`, and
/// `CDN-Cache-Control` when it has one.
fn write_policy_headers(headers: &mut HeaderMap, policy: &CachePolicy) {
    headers.insert(CACHE_CONTROL, policy.cache_control().clone());
    if let Some(cdn) = policy.cdn_cache_control() {
        headers.insert(rfc9111::CDN_CACHE_CONTROL, cdn.clone());
    }
}

/// Whether a stored response can be revalidated: it has an `ETag` or a
/// `Last-Modified`.
fn has_validators(stored: &CachedResponse) -> bool {
    stored.etag().is_some() || stored.headers().contains_key(LAST_MODIFIED)
}

/// The service answered 304 to the stale copy's validators: the copy is
/// good again. Its headers are updated from the 304 (RFC 9111 §3.2,
/// §4.3.4), it is stored anew with the freshness the updated headers (or
/// the route's policy) give, and it answers the request.
async fn refresh<B>(
    shared: &Shared,
    response: Response<B>,
    policy: Option<CachePolicy>,
    stale: &Entry,
    ctx: Ctx<'_>,
) -> (Response<CacheBody<B>>, Outcome) {
    ctx.tally(&shared.stats.misses);
    let Some(stored) = stale.response() else {
        unreachable!("only response entries are revalidated");
    };
    let now = shared.clock.now();
    let fwd = match ctx.mode {
        Mode::Fill(fwd) => fwd,
        _ => Fwd::Stale,
    };
    // What the 304 sets for this client (a rolling session, a balancer's
    // stickiness) goes to this client alone, never into the stored copy.
    let cookies: Vec<HeaderValue> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if !rfc9111::not_modified_selects(stored.headers(), response.headers()) {
        // The 304 names another response than the copy whose validators
        // went up (RFC 9111 §4.3.4): update nothing. The upstream did find
        // those validators current, so the copy answers this request, and
        // stays stale, so the next one asks again.
        let served = Served::Revalidated { fwd, stored: false };
        let response = respond_from_entry(
            shared,
            stale,
            &ctx.request_headers,
            ctx.head,
            stale.age(now),
            served,
        );
        return (with_cookies(response, cookies), Outcome::Unshareable);
    }
    let mut headers = rfc9111::freshen_headers(stored.headers(), response.headers());
    admit::strip(&mut headers);
    // `Cache-Status` tells how the stored response was handled, by the
    // caches behind strata and by strata: a 304 does not change that.
    headers.remove(CACHE_STATUS);
    for line in stored.headers().get_all(CACHE_STATUS) {
        headers.append(CACHE_STATUS, line.clone());
    }
    let plan = match policy.as_ref().map(CachePolicy::scope) {
        Some(Scope::Origin) => {
            let mut probe = Response::new(());
            *probe.status_mut() = stored.status();
            *probe.headers_mut() = headers.clone();
            origin_plan(shared, &probe, &ctx).ok().map(|plan| {
                rfc9111::strip_unstorable_fields(&mut headers, &plan.directives);
                let mut tags = policy
                    .as_ref()
                    .map(|p| p.tag_list().to_vec())
                    .unwrap_or_default();
                tags.extend(plan.tags);
                (plan.stored_at, plan.ttl, plan.stale, tags)
            })
        }
        Some(Scope::Public | Scope::Private) => policy.as_ref().map(|policy| {
            // The policy, not the 304, says how the copy may be reused.
            write_policy_headers(&mut headers, policy);
            (
                now,
                policy.ttl(),
                policy.stale_retention(),
                stale.tags.clone(),
            )
        }),
        _ => None,
    };
    let (stored_at, ttl, keep, tags) =
        plan.clone()
            .unwrap_or((now, Duration::ZERO, Duration::ZERO, stale.tags.clone()));
    let entry = Arc::new(Entry {
        key: stale.key.clone(),
        name: stale.name.clone(),
        user: stale.user.clone(),
        tags,
        stored_at,
        ttl,
        stale: keep,
        kind: EntryKind::Response(CachedResponse::new(
            stored.status(),
            headers,
            stored.body().clone(),
            stored.last_modified(),
        )),
    });
    // Without a plan the copy is good for this request, but nothing says
    // for how long: it is not stored.
    let written = match plan {
        Some(_) => shared.put_all(&[Arc::clone(&entry)], &ctx.ticket).await,
        None => Written::Failed,
    };
    if written == Written::Stored {
        bump(&shared.stats.stores);
    }
    let served = Served::Revalidated {
        fwd,
        stored: written == Written::Stored,
    };
    let response = respond_from_entry(
        shared,
        &entry,
        &ctx.request_headers,
        ctx.head,
        entry.age(now),
        served,
    );
    let outcome = match written {
        Written::Stored => Outcome::Filled(Arc::new(Filled { entry, rule: None })),
        Written::Fenced => Outcome::Fenced,
        Written::Failed => Outcome::Unshareable,
    };
    (with_cookies(response, cookies), outcome)
}

/// `response` with the `Set-Cookie` lines meant for its client alone.
fn with_cookies<B>(mut response: Response<B>, cookies: Vec<HeaderValue>) -> Response<B> {
    for cookie in cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// The longest a response's own headers may keep it (fresh or stale):
/// RFC 9111 lets them ask for up to 2^31 s.
const MAX_ORIGIN_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long past its freshness a response with validators of its own is
/// kept, to be revalidated rather than fetched whole.
const KEEP_FOR_REVALIDATION: Duration = Duration::from_secs(3600);

/// What a response's own headers say about storing it, under
/// [`CachePolicy::origin`].
struct OriginPlan {
    directives: ResponseDirectives,
    ttl: Duration,
    stale: Duration,
    /// When the response was generated, by its corrected initial age, so
    /// an entry's age is its RFC 9111 current age.
    stored_at: SystemTime,
    tags: Vec<String>,
}

/// Whether and how to store a response by its own headers (RFC 9111 §3,
/// §4.2; RFC 5861; RFC 9213 for `Strata-Cache-Control`), or the
/// `Cache-Status` detail of why not.
fn origin_plan<B>(
    shared: &Shared,
    response: &Response<B>,
    ctx: &Ctx<'_>,
) -> Result<OriginPlan, &'static str> {
    let headers = response.headers();
    let directives = rfc9111::response_directives(headers, false);
    let request = RequestDirectives::from_headers(&ctx.request_headers);
    rfc9111::storable(
        &Method::GET,
        &ctx.request_headers,
        &request,
        response.status(),
        headers,
        &directives,
    )
    .map_err(rfc9111::NotStorable::detail)?;
    // Validators of the upstream's own: a stale copy can be revalidated
    // with them instead of fetched whole.
    let validators = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
    // `no-cache`: stored, but revalidated before every use (RFC 9111
    // §5.2.2.4), which needs validators; without them it is useless.
    if directives.no_cache.is_some() && !validators {
        return Err("no-cache");
    }
    let now = shared.clock.now();
    let mut lifetime = rfc9111::freshness_lifetime(
        response.status(),
        headers,
        &directives,
        now,
        rfc9111::DEFAULT_HEURISTIC_CAP,
    );
    if directives.no_cache.is_some() {
        lifetime.duration = Duration::ZERO;
    }
    if lifetime.duration.is_zero() && !validators {
        return Err("no-freshness");
    }
    let tags = rfc9111::surrogate_keys(headers).map_err(|_| "surrogate-key")?;
    let windows = StaleWindows::from_directives(&directives);
    let timing = ResponseTiming::new(ctx.sent_at, now, headers);
    // Older than its lifetime on arrival, with no stale window to serve it
    // in and nothing to revalidate it with: it could never answer.
    if timing.corrected_initial_age() >= lifetime.duration
        && windows.while_revalidate.is_zero()
        && windows.if_error.is_zero()
        && !validators
    {
        return Err("already-stale");
    }
    let keep = if validators {
        KEEP_FOR_REVALIDATION
    } else {
        Duration::ZERO
    };
    Ok(OriginPlan {
        ttl: lifetime.duration.min(MAX_ORIGIN_RETENTION),
        stale: windows
            .while_revalidate
            .max(windows.if_error)
            .max(keep)
            .min(MAX_ORIGIN_RETENTION),
        stored_at: timing.generated_at(),
        directives,
        tags,
    })
}

async fn store_response<B>(
    shared: &Shared,
    response: Response<B>,
    policy: &CachePolicy,
    ctx: Ctx<'_>,
) -> (Response<CacheBody<B>>, Outcome)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let per_user = policy.scope() == Scope::Private;
    let fwd = match ctx.mode {
        Mode::Fill(fwd) => fwd_name(fwd),
        Mode::Pass => "miss",
        Mode::Bypass => "bypass",
        Mode::Refresh => "stale",
    };
    let origin = match policy.scope() {
        Scope::Origin => match origin_plan(shared, &response, &ctx) {
            Ok(plan) => Some(plan),
            Err(reason) => {
                ctx.tally(&shared.stats.bypasses);
                let mut response = response.map(CacheBody::inner);
                let headers = response.headers_mut();
                headers.remove(rfc9111::STRATA_CACHE_CONTROL);
                headers.append(CACHE_STATUS, not_stored_status(fwd, reason));
                return (response, Outcome::Unshareable);
            }
        },
        _ => None,
    };
    let reason = unstorable_reason(policy, &response, ctx.user.as_deref(), shared.max_body)
        .or(matches!(ctx.mode, Mode::Bypass).then_some("bypass"));
    if let Some(reason) = reason {
        ctx.tally(&shared.stats.bypasses);
        if reason == "anonymous" && !matches!(ctx.mode, Mode::Bypass) {
            // Learn that the URL is per-user: later anonymous requests
            // then pass by, and users go to their own variants.
            let rule = VariantRule {
                per_user: true,
                vary: vary_of(policy, response.headers()),
                pass: false,
            };
            let marker = rule_entry(shared, &ctx, rule, policy.ttl());
            shared.put_all(&[marker], &ctx.ticket).await;
        }
        let mut response = response.map(CacheBody::inner);
        let headers = response.headers_mut();
        if origin.is_some() {
            // The response's own headers stand.
            headers.remove(rfc9111::STRATA_CACHE_CONTROL);
        } else if reason == "anonymous" {
            // Made for nobody in particular on a per-user URL: a browser
            // must not keep it and show it after its user logs in.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        } else if !matches!(
            reason,
            "status" | "set-cookie" | "no-store" | "no-cache" | "private"
        ) {
            write_policy_headers(headers, policy);
        }
        headers.append(CACHE_STATUS, not_stored_status(fwd, reason));
        return (response, Outcome::Unshareable);
    }

    // Every request is one of hit, miss or bypass: this one went to the
    // service with a response the cache means to store.
    ctx.tally(&shared.stats.misses);
    let (head_parts, body) = response.into_parts();
    let body = match buffer(Box::pin(body), shared.max_body).await {
        Buffered::Whole(bytes) => bytes,
        Buffered::TooLong(read, rest) => {
            let mut response = Response::from_parts(head_parts, CacheBody::prefixed(read, rest));
            let headers = response.headers_mut();
            if origin.is_some() {
                headers.remove(rfc9111::STRATA_CACHE_CONTROL);
            } else {
                write_policy_headers(headers, policy);
            }
            headers.append(CACHE_STATUS, not_stored_status(fwd, "too-large"));
            return (response, Outcome::Unshareable);
        }
        Buffered::Failed(error) => {
            // The client sees the inner body's failure; nothing is stored.
            return (
                Response::from_parts(head_parts, CacheBody::failed(error)),
                Outcome::Unshareable,
            );
        }
    };

    let now = shared.clock.now();
    let vary = vary_of(policy, &head_parts.headers);
    let mut headers = head_parts.headers;
    // A stored copy never replays a cookie on hits (a shared route's
    // response with one was not stored at all), but the response made for
    // this very request still sets it.
    let cookies = admit::strip(&mut headers);
    match &origin {
        // The origin's own fields stand, less those `private="..."` keeps
        // out of a shared entry. `Strata-Cache-Control` stays in the
        // stored copy, for the stale and revalidation decisions to come,
        // and is left out of every response (`respond_from_entry`).
        Some(plan) => {
            rfc9111::strip_unstorable_fields(&mut headers, &plan.directives);
            // A response without a `Date` gets the time it was received
            // (RFC 9110 §6.6.1), not the time of each hit.
            if !headers.contains_key(DATE) {
                headers.insert(DATE, http_date(now));
            }
        }
        None => {
            write_policy_headers(&mut headers, policy);
        }
    }
    // No made-up ETag on another server's response: revalidating with a
    // tag the upstream never issued would only cost it a full answer.
    let etag = (!headers.contains_key(ETAG) && origin.is_none()).then(|| etag_for(&body));
    let stored_last_modified = headers
        .get(LAST_MODIFIED)
        .and_then(conditional::parse_http_date);
    // Without a `Last-Modified`, a client's `If-Modified-Since` is compared
    // with the upstream's `Date`, else the time of receipt (RFC 9111 §4.3.2).
    let last_modified = stored_last_modified
        .or_else(|| {
            origin
                .as_ref()
                .and(headers.get(DATE))
                .and_then(conditional::parse_http_date)
        })
        .unwrap_or(now);
    // A made-up modification date is fine for the app's own responses,
    // not for a copy of another server's.
    let date = (stored_last_modified.is_none() && origin.is_none()).then(|| http_date(now));
    // Stored so that HEAD answers carry the GET's length.
    let length = (head_parts.status != StatusCode::NO_CONTENT).then(|| body.len().to_string());
    let [etag, date, length] = packed_values([
        etag.as_ref().map(HeaderValue::as_bytes),
        date.as_ref().map(HeaderValue::as_bytes),
        length.as_ref().map(String::as_bytes),
    ]);
    for (name, value) in [
        (ETAG, etag),
        (LAST_MODIFIED, date),
        (CONTENT_LENGTH, length),
    ] {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    for name in policy.vary_headers() {
        if !header_has_token(&headers, &VARY, name.as_str()) {
            headers.append(VARY, HeaderValue::from_name(name.clone()));
        }
    }
    headers.insert(AGE, HeaderValue::from_static("0"));
    headers.append(CACHE_STATUS, HIT.clone());

    let rule = (per_user || !vary.is_empty()).then(|| VariantRule {
        per_user,
        vary,
        pass: false,
    });
    let user = if per_user { ctx.user.clone() } else { None };
    let key = match &rule {
        Some(rule) => shared.keys.variant_key(
            ctx.primary,
            user.as_deref(),
            &rule.vary,
            &ctx.request_headers,
        ),
        None => ctx.primary.to_owned(),
    };
    let (stored_at, ttl, stale, tags) = match origin {
        Some(plan) => {
            let mut tags = policy.tag_list().to_vec();
            tags.extend(plan.tags);
            (plan.stored_at, plan.ttl, plan.stale, tags)
        }
        None => (
            now,
            policy.ttl(),
            policy.stale_retention(),
            policy.tag_list().to_vec(),
        ),
    };
    if shared.emit_surrogate_keys
        && !tags.is_empty()
        && !headers.contains_key(rfc9111::SURROGATE_KEY)
    {
        // For a CDN in front: the same tags, so a purge by tag can name
        // the same keys there (tags with white space cannot be listed).
        let listed: Vec<&str> = tags
            .iter()
            .map(String::as_str)
            .filter(|tag| !tag.contains(char::is_whitespace))
            .collect();
        if let Ok(value) = HeaderValue::try_from(listed.join(" ")) {
            headers.insert(rfc9111::SURROGATE_KEY, value);
        }
    }
    let entry = Arc::new(Entry {
        key,
        name: ctx.name.clone(),
        user,
        tags,
        stored_at,
        ttl,
        stale,
        kind: EntryKind::Response(CachedResponse::new(
            head_parts.status,
            headers,
            body,
            last_modified,
        )),
    });
    let mut writes = vec![Arc::clone(&entry)];
    if let Some(rule) = &rule {
        // The rule lasts as long as the variants may be served, stale too.
        writes.push(rule_entry(shared, &ctx, rule.clone(), entry.retention()));
    }
    let written = shared.put_all(&writes, &ctx.ticket).await;
    let fwd = match ctx.mode {
        Mode::Fill(fwd) => fwd,
        Mode::Pass | Mode::Bypass => Fwd::UriMiss,
        Mode::Refresh => Fwd::Stale,
    };
    let served = if written == Written::Stored {
        bump(&shared.stats.stores);
        Served::Stored(fwd)
    } else {
        // Superseded by an invalidation, or the store failed: the answer is
        // right, but the cache does not hold it.
        Served::Fetched(fwd)
    };
    // Not zero when an upstream said how old its response already was.
    let age = entry.age(now);
    let response = respond_from_entry(shared, &entry, &ctx.request_headers, ctx.head, age, served);
    let outcome = match written {
        Written::Fenced => Outcome::Fenced,
        // Stored, or the store failed: the answer is right either way.
        Written::Stored | Written::Failed => Outcome::Filled(Arc::new(Filled { entry, rule })),
    };
    (with_cookies(response, cookies), outcome)
}

/// Header values copied into one buffer that they share: a stored
/// response's ETag, `Last-Modified` and `Content-Length` then cost one
/// allocation (and one shared count) for as long as the entry lives,
/// instead of one or two each.
fn packed_values<const N: usize>(values: [Option<&[u8]>; N]) -> [Option<HeaderValue>; N] {
    let total = values.iter().flatten().map(|value| value.len()).sum();
    let mut packed = BytesMut::with_capacity(total);
    for value in values.iter().flatten() {
        packed.extend_from_slice(value);
    }
    let packed = packed.freeze();
    let mut at = 0;
    values.map(|value| {
        let value = value?;
        let slice = packed.slice(at..at + value.len());
        at += value.len();
        Some(HeaderValue::from_maybe_shared(slice).expect("copied from valid header values"))
    })
}

/// `no-cache`: never stored, but validated. The body is read (when its
/// length is known and within the limit) to give it an ETag, and a
/// matching conditional request gets 304.
async fn no_cache_response<B>(
    shared: &Shared,
    response: Response<B>,
    policy: &CachePolicy,
    ctx: &Ctx<'_>,
) -> Response<CacheBody<B>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let status = HeaderValue::from_static("strata; fwd=bypass; detail=no-cache");
    let measurable = body_length(&response).is_some_and(|len| len <= shared.max_body as u64);
    if !measurable || !response.status().is_success() {
        let mut response = response.map(CacheBody::inner);
        response
            .headers_mut()
            .insert(CACHE_CONTROL, policy.cache_control().clone());
        response.headers_mut().append(CACHE_STATUS, status);
        return response;
    }
    let (mut head_parts, body) = response.into_parts();
    let body = match buffer(Box::pin(body), shared.max_body).await {
        Buffered::Whole(bytes) => bytes,
        Buffered::TooLong(read, rest) => {
            let mut response = Response::from_parts(head_parts, CacheBody::prefixed(read, rest));
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, policy.cache_control().clone());
            headers.append(CACHE_STATUS, status);
            return response;
        }
        Buffered::Failed(error) => {
            return Response::from_parts(head_parts, CacheBody::failed(error));
        }
    };
    let headers = &mut head_parts.headers;
    headers.insert(CACHE_CONTROL, policy.cache_control().clone());
    if !headers.contains_key(ETAG) {
        headers.insert(ETAG, etag_for(&body));
    }
    headers.append(CACHE_STATUS, status);
    let last_modified = headers
        .get(LAST_MODIFIED)
        .and_then(conditional::parse_http_date);
    if is_not_modified(&ctx.request_headers, headers.get(ETAG), last_modified) {
        bump(&shared.stats.not_modified);
        let mut not_modified = Response::new(CacheBody::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        copy_not_modified_headers(headers, not_modified.headers_mut());
        for line in headers.get_all(CACHE_STATUS) {
            not_modified
                .headers_mut()
                .append(CACHE_STATUS, line.clone());
        }
        return not_modified;
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if ctx.head {
        CacheBody::empty()
    } else {
        CacheBody::full(body)
    };
    Response::from_parts(head_parts, body)
}

/// After a successful unsafe request, drop the cached GETs of its URL and
/// whatever the route declared with [`Invalidates`] (RFC 9111 §4.4).
/// An unsafe request, as its invalidations need it.
struct Write {
    method: Method,
    target: http::Uri,
    /// The request's origin (scheme, host, port), when it can be told.
    origin: Option<rfc9111::Origin>,
}

async fn after_write<F, B, E>(
    shared: Arc<Shared>,
    future: F,
    write: Write,
) -> Result<Response<CacheBody<B>>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    let response = future.await?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        let declared = response.extensions().get::<Invalidates>();
        if !declared.is_some_and(Invalidates::keeps_own_url) {
            // Its own URL, and the `Location` and `Content-Location` URLs
            // on the same origin (RFC 9111 §4.4).
            let mut paths = vec![write.target.path().to_owned()];
            for url in rfc9111::invalidation_targets(
                &write.method,
                status,
                &write.target,
                write.origin.as_ref(),
                response.headers(),
            ) {
                let path = url.split('?').next().unwrap_or_default().to_owned();
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
            for path in paths {
                let _ = shared.invalidate(&Invalidation::Url(path)).await;
            }
        }
        if let Some(declared) = declared {
            if !declared.tag_list().is_empty() {
                let tags = Invalidation::Tags(declared.tag_list().to_vec());
                let _ = shared.invalidate(&tags).await;
            }
            for url in declared.url_list() {
                let _ = shared.invalidate(&Invalidation::Url(url.clone())).await;
            }
        }
    }
    Ok(response.map(CacheBody::inner))
}

// ----------------------------------------------------------------------------
// The future
// ----------------------------------------------------------------------------

pin_project! {
    /// Response future of [`CacheService`]: ready at once on an in-process
    /// hit, boxed otherwise. Kept small, because axum moves and boxes it.
    pub struct ResponseFuture<B, E> {
        #[pin]
        kind: FutureKind<B, E>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<B, E> {
        Ready { response: Option<Response<CacheBody<B>>> },
        Boxed { future: BoxFuture<'static, Result<Response<CacheBody<B>>, E>> },
    }
}

impl<B, E> ResponseFuture<B, E> {
    fn ready(response: Response<CacheBody<B>>) -> Self {
        Self {
            kind: FutureKind::Ready {
                response: Some(response),
            },
        }
    }

    fn boxed(
        future: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
    ) -> Self {
        Self {
            kind: FutureKind::Boxed {
                future: Box::pin(future),
            },
        }
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            FutureKind::Ready { .. } => "ready",
            FutureKind::Boxed { .. } => "boxed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            FutureKindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod unstorable_tests {
    use std::time::Duration;

    use super::*;

    fn response(headers: &[(HeaderName, &'static str)]) -> Response<http_body_util::Full<Bytes>> {
        let mut response = Response::new(http_body_util::Full::new(Bytes::from_static(b"body")));
        for (name, value) in headers {
            response
                .headers_mut()
                .append(name.clone(), HeaderValue::from_static(value));
        }
        response
    }

    #[test]
    fn handler_cache_control_private_keeps_a_public_route_out_of_the_store() {
        let public = CachePolicy::public(Duration::from_secs(60));
        let private = CachePolicy::private(Duration::from_secs(60));
        let marked = response(&[(CACHE_CONTROL, "max-age=10, private")]);
        assert_eq!(
            unstorable_reason(&public, &marked, None, 1024),
            Some("private")
        );
        // Under a private policy the entry is per user anyway.
        assert_eq!(
            unstorable_reason(&private, &marked, Some("alice"), 1024),
            None
        );
        let plain = response(&[(CACHE_CONTROL, "max-age=10")]);
        assert_eq!(unstorable_reason(&public, &plain, None, 1024), None);
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    fn windows(values: &[&'static str]) -> StaleWindows {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_static(value));
        }
        StaleWindows::of(&headers)
    }

    fn secs(while_revalidate: u64, if_error: u64) -> StaleWindows {
        StaleWindows {
            while_revalidate: Duration::from_secs(while_revalidate),
            if_error: Duration::from_secs(if_error),
        }
    }

    #[test]
    fn both_windows_are_read_from_any_field_line_in_any_case() {
        assert_eq!(
            windows(&["public, max-age=60, stale-while-revalidate=30, stale-if-error=600"]),
            secs(30, 600)
        );
        assert_eq!(
            windows(&["max-age=60", "Stale-While-Revalidate = \"7\""]),
            secs(7, 0)
        );
        assert_eq!(windows(&["max-age=60"]), secs(0, 0));
    }

    #[test]
    fn revalidation_directives_forbid_stale_content() {
        for forbidding in ["must-revalidate", "proxy-revalidate", "no-cache"] {
            let value = HeaderValue::from_str(&format!(
                "stale-while-revalidate=30, {forbidding}, stale-if-error=60"
            ))
            .unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(CACHE_CONTROL, value);
            assert_eq!(StaleWindows::of(&headers), secs(0, 0), "{forbidding}");
        }
    }

    #[test]
    fn malformed_windows_grant_nothing() {
        assert_eq!(
            windows(&["stale-while-revalidate=-5, stale-if-error=soon"]),
            secs(0, 0)
        );
        assert_eq!(windows(&["stale-while-revalidate"]), secs(0, 0));
        // Too large saturates to 2^31 s (RFC 9111 §1.2.2); the store's
        // retention bounds it in practice.
        assert_eq!(
            windows(&["stale-if-error=99999999999999999999999"]),
            secs(0, 1 << 31)
        );
    }

    #[test]
    fn only_server_errors_are_covered() {
        for code in [500, 502, 503, 504] {
            assert!(is_server_error(StatusCode::from_u16(code).unwrap()));
        }
        for code in [200, 304, 404, 501, 505] {
            assert!(!is_server_error(StatusCode::from_u16(code).unwrap()));
        }
    }
}
