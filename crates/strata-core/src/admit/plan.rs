//! What admission works with: its input, its plan, and why not.

use std::time::{Duration, SystemTime};

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::policy::CachePolicy;
use crate::rfc9111::{NotStorable, ResponseDirectives, Vary};

/// Why a response is not stored: the `detail` of its `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    /// Under a route policy: a status the policy does not store.
    Status,
    /// A private route and a request without a user.
    Anonymous,
    /// A shared entry would replay the response's `Set-Cookie`.
    SetCookie,
    /// A public route whose response says `private`.
    Private,
    /// The response (or the route) says `no-store`.
    NoStore,
    /// The response (or the route) says `no-cache`: validated on every
    /// use, so not stored under a route policy, and not without validators
    /// under `origin`.
    NoCache,
    /// A route policy with no time to live.
    Ttl,
    /// `Vary: *` (or a `Vary` member that is not a field name).
    VaryStar,
    /// `text/event-stream`: never ends, never stored.
    Stream,
    /// Longer than the store's per-entry limit (declared so, or found so
    /// while reading a body of unknown length).
    TooLarge,
    /// An anonymous request for a per-user URL: not even looked at.
    Bypass,
    /// RFC 9111 forbids storing it (under `origin`).
    Rfc(NotStorable),
    /// No freshness and nothing to revalidate with (under `origin`).
    NoFreshness,
    /// Older than its lifetime on arrival, with no stale window and no
    /// validators: it could never answer (under `origin`).
    AlreadyStale,
    /// A `Surrogate-Key` or `Cache-Tag` strata cannot hold (under `origin`).
    SurrogateKey,
}

impl NotStored {
    /// The token for `Cache-Status: ...; detail=` and logs.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Anonymous => "anonymous",
            Self::SetCookie => "set-cookie",
            Self::Private => "private",
            Self::NoStore => "no-store",
            Self::NoCache => "no-cache",
            Self::Ttl => "ttl",
            Self::VaryStar => "vary-star",
            Self::Stream => "stream",
            Self::TooLarge => "too-large",
            Self::Bypass => "bypass",
            Self::Rfc(reason) => reason.detail(),
            Self::NoFreshness => "no-freshness",
            Self::AlreadyStale => "already-stale",
            Self::SurrogateKey => "surrogate-key",
        }
    }

    /// Whether the URL's responses are likely all alike in this, so later
    /// requests should pass by the single flight instead of queueing
    /// behind one another (Varnish's hit-for-pass): the response said
    /// `private`, `no-store` or `no-cache` (without a validator), or
    /// `Vary: *`. Not for what depends on the request (a user,
    /// `Authorization`, a cookie) or on the moment (an error, a size).
    pub(crate) fn teaches_pass(self) -> bool {
        matches!(
            self,
            Self::Private
                | Self::NoStore
                | Self::NoCache
                | Self::VaryStar
                | Self::Rfc(
                    crate::rfc9111::NotStorable::Private
                        | crate::rfc9111::NotStorable::NoStore
                        | crate::rfc9111::NotStorable::VaryAny
                )
        )
    }

    /// Whether the response, passed on unstored, should still carry the
    /// route policy's `Cache-Control`: not when the response said
    /// something of its own that the policy must not override, or when it
    /// is not what the policy describes (a status it does not store).
    pub(crate) fn takes_policy_headers(self) -> bool {
        !matches!(
            self,
            Self::Status
                | Self::SetCookie
                | Self::NoStore
                | Self::NoCache
                | Self::Private
                | Self::Anonymous
        )
    }
}

/// What the admission needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a> {
    pub(crate) policy: &'a CachePolicy,
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    /// The body's length, when known before reading it (see [`body_length`]).
    pub(crate) length: Option<u64>,
    pub(crate) max_body: usize,
    /// The requesting user, if any.
    pub(crate) user: Option<&'a str>,
    pub(crate) request_headers: &'a HeaderMap,
    /// When the request went to the service, and now (RFC 9111 §4.2.3).
    pub(crate) sent_at: SystemTime,
    pub(crate) now: SystemTime,
    /// The targeted fields the cache obeys (RFC 9213), under `origin`.
    pub(crate) targets: crate::rfc9111::Targets,
    /// How long past its lifetime a response may answer while the origin
    /// is out of reach, so how long it is kept (under `origin`).
    pub(crate) stale_if_disconnected: Duration,
}

/// How to store a response.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Stored under the user's key.
    pub(crate) per_user: bool,
    /// The request headers that select a variant (policy and `Vary`).
    pub(crate) vary: Vec<HeaderName>,
    /// When its age is counted from: now, or under `origin` when the
    /// upstream generated it (so that `Age` counts the upstream's too).
    pub(crate) stored_at: SystemTime,
    /// Fresh for this long after `stored_at`.
    pub(crate) ttl: Duration,
    /// Kept this long past `ttl`, to be served stale or revalidated.
    pub(crate) stale: Duration,
    pub(crate) tags: Vec<String>,
    /// Under `origin`: the directives read from the response, for
    /// stripping what a qualified `private` lists. `None` under a route
    /// policy, whose `Cache-Control` replaces the response's.
    pub(crate) origin: Option<ResponseDirectives>,
}

/// The request headers that select a variant: the policy's, and those the
/// response's own `Vary` names, sorted and without repeats.
pub(crate) fn vary_of(policy: &CachePolicy, response_headers: &HeaderMap) -> Vec<HeaderName> {
    let mut vary: Vec<HeaderName> = policy.vary_list().to_vec();
    vary.extend_from_slice(Vary::from_headers(response_headers).names());
    vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    vary.dedup();
    vary
}

/// The body length known before reading it: `Content-Length`, else an
/// exact or bounded size hint.
pub(crate) fn body_length<B: http_body::Body>(response: &http::Response<B>) -> Option<u64> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    declared.or_else(|| response.body().size_hint().upper())
}
