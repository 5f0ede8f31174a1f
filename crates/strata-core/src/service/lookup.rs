//! What the store holds means for this request: a hit, a variant to look
//! up next, a miss (perhaps with a stale copy to revalidate or to stand in
//! for an error), a stale answer while one refresh runs, a pass, a bypass.
//!
//! Pure: it reads entries that were already looked up, the request's
//! headers and the time. Whether a stored response may serve, fresh or
//! stale, and for how long, is decided by [`rfc9111::serve`] from its
//! stored directives, for route policies (whose `Cache-Control` is stored
//! with the response) and origin headers alike.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::entry::{Entry, EntryKind};
use crate::key::KeyBuilder;
use crate::rfc9111::{self, IfDisconnected, RequestDirectives, Serve};
use crate::status::Fwd;

/// What a lookup found out.
#[derive(Debug)]
pub(crate) enum Step {
    /// A fresh stored response and its age (computed once, here).
    Hit(Arc<Entry>, Duration),
    /// The primary key holds a rule; look up this variant key next.
    Variant(String),
    /// Go to the service, leading or joining the flight for `flight_key`.
    Miss {
        flight_key: String,
        fwd: Fwd,
        /// The stored response that may not answer as it is, if any: its
        /// validators go along.
        stale: Option<Arc<Entry>>,
        /// What `stale` may do if the service fails.
        fallback: Fallback,
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

/// The user of a request, resolved at most once.
#[derive(Debug, Default)]
pub(crate) struct LazyUser(Option<Option<String>>);

impl LazyUser {
    /// The user, resolved by `resolve` the first time.
    pub(crate) fn get(&mut self, resolve: impl FnOnce() -> Option<String>) -> Option<&str> {
        self.0.get_or_insert_with(resolve).as_deref()
    }
}

/// What the request brings to a lookup.
pub(crate) struct Asking<'a, R> {
    pub(crate) keys: &'a KeyBuilder,
    pub(crate) headers: &'a HeaderMap,
    /// The client's request directives, when the cache obeys them and the
    /// request has some.
    pub(crate) directives: Option<&'a RequestDirectives>,
    pub(crate) user: &'a mut LazyUser,
    pub(crate) resolve: R,
    pub(crate) now: SystemTime,
    /// The targeted fields this cache obeys (RFC 9213), for stored
    /// responses' directives.
    pub(crate) targets: rfc9111::Targets,
    /// How stale a stored response may be served when the origin cannot
    /// be reached (zero: never).
    pub(crate) stale_if_disconnected: Duration,
}

/// What a stale stored response may do when the request it goes to the
/// service for fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback {
    /// Answer instead of a server error or a failed service
    /// (`stale-if-error`).
    pub(crate) if_error: bool,
    /// What to do when the origin cannot be reached (RFC 9111 §4.2.4).
    pub(crate) if_disconnected: IfDisconnected,
}

impl Fallback {
    /// Nothing stored to fall back on.
    pub(crate) const NONE: Self = Self {
        if_error: false,
        if_disconnected: IfDisconnected::PassOn,
    };
}

impl<R: Fn() -> Option<String>> Asking<'_, R> {
    fn user(&mut self) -> Option<&str> {
        let resolve = &self.resolve;
        self.user.get(resolve)
    }

    /// The step for what was found at the URL's primary key.
    pub(crate) fn at_primary(&mut self, primary: &str, found: Option<Arc<Entry>>) -> Step {
        // A rule past its time is as good as none (rules follow the cache's
        // clock like responses do, not only the store's).
        let found = found.filter(|entry| entry.response().is_some() || entry.is_fresh(self.now));
        let Some(entry) = found else {
            // Nothing known about the URL yet. Requests of different users
            // never share a flight, so a private first response cannot
            // reach another user even before the rule is learnt.
            let flight_key = match self.user() {
                Some(user) => format!("{primary}#?u={user}"),
                None => primary.to_owned(),
            };
            return self.nothing_stored(flight_key, Fwd::UriMiss);
        };
        match &entry.kind {
            EntryKind::Response(_) => self.judge(entry, Cow::Borrowed(primary)),
            EntryKind::Variants(rule) if rule.pass => self.passing(Step::Pass),
            EntryKind::Variants(rule) => {
                let user = if rule.per_user {
                    match self.user() {
                        Some(user) => Some(user.to_owned()),
                        None => return self.passing(Step::Bypass),
                    }
                } else {
                    None
                };
                let key = self
                    .keys
                    .variant_key(primary, user.as_deref(), &rule.vary, self.headers);
                Step::Variant(key)
            }
            EntryKind::Value(_) => self.passing(Step::Pass),
        }
    }

    /// The step for what was found at a variant key.
    pub(crate) fn at_variant(&mut self, key: String, found: Option<Arc<Entry>>) -> Step {
        match found {
            Some(entry) if entry.response().is_some() => self.judge(entry, Cow::Owned(key)),
            _ => self.nothing_stored(key, Fwd::VaryMiss),
        }
    }

    fn nothing_stored(&self, flight_key: String, fwd: Fwd) -> Step {
        if self
            .directives
            .is_some_and(|request| request.only_if_cached)
        {
            return Step::Unsatisfiable;
        }
        Step::Miss {
            flight_key,
            fwd,
            stale: None,
            fallback: Fallback::NONE,
        }
    }

    fn passing(&self, step: Step) -> Step {
        if self
            .directives
            .is_some_and(|request| request.only_if_cached)
        {
            return Step::Unsatisfiable;
        }
        step
    }

    /// A stored response: fresh, stale and servable, or to be sent on.
    /// (`flight_key` is only copied when a flight may follow: a hit
    /// allocates nothing here.)
    #[inline]
    fn judge(&self, entry: Arc<Entry>, flight_key: Cow<'_, str>) -> Step {
        let age = entry.age(self.now);
        // The common case, decided without reading the stored headers:
        // fresh, and no request directives to weigh. (A stored response
        // that must be revalidated before every use, `no-cache`, is stored
        // with no freshness at all, so it never gets here.)
        if self.directives.is_none() && age < entry.ttl {
            return Step::Hit(entry, age);
        }
        let default = RequestDirectives::default();
        let request = self.directives.unwrap_or(&default);
        let serve = judgement(request, &entry, age, self.now, self.targets);
        match serve {
            Serve::Fresh => Step::Hit(entry, age),
            Serve::Stale => Step::Accepted(entry, age),
            Serve::StaleWhileRevalidate => Step::Stale {
                entry,
                age,
                flight_key: flight_key.into_owned(),
            },
            Serve::GatewayTimeout => Step::Unsatisfiable,
            Serve::Forward | Serve::Revalidate { .. } => {
                let if_error = match serve {
                    Serve::Revalidate {
                        stale_if_error_until: Some(until),
                    } => self.now <= until,
                    _ => false,
                };
                let if_disconnected = stored_view(&entry, age, self.targets, |stored| {
                    stored.map_or(IfDisconnected::PassOn, |stored| {
                        rfc9111::if_disconnected(request, stored, self.stale_if_disconnected)
                    })
                });
                // A copy the cache would have served, sent on by the
                // client's directives, is `fwd=request` (RFC 9211 §2.2).
                let would_serve = self.directives.is_some()
                    && matches!(
                        judgement(
                            &RequestDirectives::default(),
                            &entry,
                            age,
                            self.now,
                            self.targets
                        ),
                        Serve::Fresh | Serve::StaleWhileRevalidate
                    );
                Step::Miss {
                    flight_key: flight_key.into_owned(),
                    fwd: if would_serve {
                        Fwd::Request
                    } else {
                        Fwd::Stale
                    },
                    stale: Some(entry),
                    fallback: Fallback {
                        if_error,
                        if_disconnected,
                    },
                }
            }
        }
    }
}

/// [`rfc9111::serve`] for a stored entry (see [`stored_view`]).
fn judgement(
    request: &RequestDirectives,
    entry: &Entry,
    age: Duration,
    now: SystemTime,
    targets: rfc9111::Targets,
) -> Serve {
    stored_view(entry, age, targets, |stored| {
        rfc9111::serve(request, stored, now)
    })
}

/// A stored entry as the RFC rules see it: its stored directives (from
/// the targeted field this cache obeys), its lifetime, its age; stale
/// windows no longer than the store keeps it. `None` for a rule entry.
fn stored_view<T>(
    entry: &Entry,
    age: Duration,
    targets: rfc9111::Targets,
    decide: impl FnOnce(Option<&rfc9111::Stored<'_>>) -> T,
) -> T {
    let Some(stored) = entry.response() else {
        return decide(None);
    };
    let mut directives = rfc9111::response_directives(stored.headers(), targets);
    let kept = u32::try_from(entry.stale.as_secs()).unwrap_or(u32::MAX);
    for window in [
        &mut directives.stale_while_revalidate,
        &mut directives.stale_if_error,
    ] {
        *window = window.filter(|_| kept > 0).map(|seconds| seconds.min(kept));
    }
    let stored = rfc9111::Stored {
        directives: &directives,
        lifetime: entry.ttl,
        current_age: age,
    };
    decide(Some(&stored))
}

#[cfg(test)]
mod tests;
