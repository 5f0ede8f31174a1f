//! The slow path of a GET or HEAD: look up through every layer, then
//! answer from the store, answer stale while one background refresh runs,
//! join another request's flight, or lead one to the inner service (with
//! a stale copy standing by for `stale-if-error`).

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::ctx::Mode;
use super::forward::{Outgoing, forward};
use super::lookup::{Asking, Fallback, LazyUser, Step};
use super::respond::{Answer, gateway_timeout};
use super::trace::record_decision;
use crate::body::{BoxError, CacheBody};
use crate::disconnected::Disconnected;
use crate::fence::{Names, Start};
use crate::flight::Join;
use crate::key::normalize_url;
use crate::rfc9111::{self, IfDisconnected, RequestDirectives};
use crate::shared::{Filled, Outcome, Shared};
use crate::stats::bump;
use crate::status::{Fwd, Served};

/// How often one request goes round lookup and flight before it stops
/// waiting on others and asks the inner service itself.
const MAX_ROUNDS: usize = 4;

/// What the lookup rounds settled on, when the answer is not already known.
struct Settled {
    start: Start,
    mode: Mode,
    leader: Option<crate::flight::Leader<Outcome>>,
    stale: Option<Arc<crate::entry::Entry>>,
    fallback: Fallback,
}

pub(crate) async fn read<S, ReqBody, ResBody>(
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
    let directives = super::fast::has_directives(&shared, &parts)
        .then(|| RequestDirectives::from_headers(&parts.headers));
    let name = normalize_url(super::cache_uri(&parts.uri, &parts.extensions));
    let mut rounds = 0;
    let settled = loop {
        rounds += 1;
        // Read before looking: an invalidation from here on that names
        // what this request's fill (if it leads one) stores keeps it out.
        let start = shared.start();
        if rounds > MAX_ROUNDS {
            record_decision("miss", "service");
            break Settled::fill(start, Fwd::UriMiss, None, None, Fallback::NONE);
        }
        let answer = Answer {
            shared: &shared,
            request: &parts.headers,
            head,
        };
        let found = shared.get(&primary).await;
        let mut asking = Asking {
            keys: &shared.keys,
            headers: &parts.headers,
            directives: directives.as_ref(),
            user: &mut user,
            resolve: || shared.user_of(&parts),
            now: shared.clock.now(),
            targets: shared.targets,
            stale_if_disconnected: shared.stale_if_disconnected,
        };
        let mut step = asking.at_primary(&primary, found);
        if let Step::Variant(key) = step {
            let found = shared.get(&key).await;
            step = asking.at_variant(key, found);
        }
        let (flight_key, fwd, stale, fallback) = match step {
            Step::Hit(entry, age) => {
                bump(&shared.stats.hits);
                record_decision("hit", "store");
                return Ok(answer.entry(&entry, age, Served::Hit));
            }
            Step::Accepted(entry, age) => {
                bump(&shared.stats.hits);
                record_decision("stale", "store");
                return Ok(answer.entry(&entry, age, Served::Accepted));
            }
            Step::Unsatisfiable => {
                bump(&shared.stats.bypasses);
                record_decision("bypass", "service");
                return Ok(gateway_timeout(Served::OnlyIfCached));
            }
            Step::Stale {
                entry,
                age,
                flight_key,
            } => match tokio::runtime::Handle::try_current() {
                // No runtime to refresh on: refresh in line instead.
                Err(_) => (flight_key, Fwd::Stale, Some(entry), Fallback::NONE),
                Ok(runtime) => {
                    bump(&shared.stats.hits);
                    record_decision("stale", "store");
                    let response = answer.entry(&entry, age, Served::StaleWhileRevalidate);
                    // One refresh per key: when another request leads it
                    // already, this one only answers.
                    let join = join_flight(&shared, &flight_key, start, &name, &parts, &mut user);
                    if let Join::Leader(leader) = join {
                        let shared = Arc::clone(&shared);
                        let outgoing = Outgoing {
                            parts,
                            body,
                            primary,
                            user,
                            start,
                            mode: Mode::Refresh,
                            stale: Some(entry),
                        };
                        runtime.spawn(async move {
                            match forward(&shared, inner, outgoing).await {
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
                break Settled::go(start, Mode::Pass);
            }
            Step::Bypass => {
                record_decision("bypass", "service");
                break Settled::go(start, Mode::Bypass);
            }
            Step::Miss {
                flight_key,
                fwd,
                stale,
                fallback,
            } => (flight_key, fwd, stale, fallback),
            // `at_variant` never answers with another variant; were it to,
            // the request would simply go to the service.
            Step::Variant(_) => {
                record_decision("miss", "service");
                break Settled::fill(start, Fwd::VaryMiss, None, None, Fallback::NONE);
            }
        };
        match join_flight(&shared, &flight_key, start, &name, &parts, &mut user) {
            Join::Leader(leader) => {
                record_decision("miss", "service");
                break Settled::fill(start, fwd, Some(leader), stale, fallback);
            }
            Join::Waiter(waiter) => match waiter.wait().await {
                Some(Outcome::Filled(filled) | Outcome::Fenced(filled))
                    if serves(&shared, &filled, &primary, &parts, &mut user)
                        && !shared.fences.named_between(
                            filled.start,
                            start.seq(),
                            Names::of(&filled.entry),
                        ) =>
                {
                    bump(&shared.stats.coalesced);
                    bump(&shared.stats.hits);
                    record_decision("collapsed", "flight");
                    let entry = &filled.entry;
                    let age = entry.age(shared.clock.now());
                    return Ok(answer.entry(entry, age, Served::Collapsed(fwd)));
                }
                Some(Outcome::Unshareable) => {
                    // The leader's response was not shareable: ask ourselves.
                    record_decision("miss", "service");
                    break Settled::fill(start, fwd, None, stale, fallback);
                }
                // Stored for another variant, fenced by an invalidation
                // since this request looked, or the leader went away: look
                // again (with the rule now known), perhaps lead.
                Some(Outcome::Filled(_) | Outcome::Fenced(_)) | None => {}
            },
        }
    };
    let Settled {
        start,
        mode,
        leader,
        stale,
        fallback,
    } = settled;
    // Kept only when the stale copy may stand in for a failure.
    let may_fall_back = fallback.if_error || fallback.if_disconnected != IfDisconnected::PassOn;
    let request_headers = stale
        .as_ref()
        .filter(|_| may_fall_back)
        .map(|_| parts.headers.clone());
    let outgoing = Outgoing {
        parts,
        body,
        primary,
        user,
        start,
        mode,
        stale: stale.clone(),
    };
    let forwarded = forward(&shared, inner, outgoing).await;
    if let (Some(stale), Some(request_headers)) = (stale, request_headers)
        && let Some(served) = fall_back(&forwarded, fallback)
    {
        if let Some(leader) = leader {
            leader.complete(Outcome::Unshareable);
        }
        let answer = Answer {
            shared: &shared,
            request: &request_headers,
            head,
        };
        if served == Served::Disconnected {
            // §5.2.2.2: the stored response must not be served
            // unvalidated, and the origin cannot validate it.
            record_decision("gateway-timeout", "service");
            return Ok(gateway_timeout(served));
        }
        record_decision("stale", "store");
        let age = stale.age(shared.clock.now());
        return Ok(answer.entry(&stale, age, served));
    }
    let (response, outcome) = forwarded?;
    if let Some(leader) = leader {
        leader.complete(outcome);
    }
    Ok(response)
}

/// Whether a stale stored response answers instead of what the service
/// gave (and how), or the cache answers 504 itself: `stale-if-error` for a
/// server error or a failed service (RFC 5861 §4), then, when the origin
/// could not be reached ([`Disconnected`], a failed service), what
/// [`IfDisconnected`] says (RFC 9111 §4.2.4, §5.2.2.2). `None`: the
/// service's answer goes to the client.
fn fall_back<B, E>(
    forwarded: &Result<(http::Response<B>, Outcome), E>,
    fallback: Fallback,
) -> Option<Served> {
    let (status, disconnected) = match forwarded {
        Ok((response, _)) => (
            Some(response.status()),
            response.extensions().get::<Disconnected>().is_some(),
        ),
        Err(_) => (None, true),
    };
    let server_error = status.is_none_or(rfc9111::is_error_for_stale);
    if fallback.if_error && server_error {
        return Some(Served::StaleIfError(status));
    }
    if !disconnected {
        return None;
    }
    match fallback.if_disconnected {
        IfDisconnected::Serve => Some(Served::StaleIfDisconnected),
        // Only a response that says the origin is out of reach is
        // replaced by a 504; a failed service's error stays its own.
        IfDisconnected::GatewayTimeout if status.is_some() => Some(Served::Disconnected),
        IfDisconnected::GatewayTimeout | IfDisconnected::PassOn => None,
    }
}

impl Settled {
    fn fill(
        start: Start,
        fwd: Fwd,
        leader: Option<crate::flight::Leader<Outcome>>,
        stale: Option<Arc<crate::entry::Entry>>,
        fallback: Fallback,
    ) -> Self {
        Self {
            start,
            mode: Mode::Fill(fwd),
            leader,
            stale,
            fallback,
        }
    }

    fn go(start: Start, mode: Mode) -> Self {
        Self {
            start,
            mode,
            leader: None,
            stale: None,
            fallback: Fallback::NONE,
        }
    }
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
        user: user.get(|| shared.user_of(parts)),
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
                match user.get(|| shared.user_of(parts)) {
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
