//! The slow path of a GET or HEAD: look up through every layer, then
//! answer from the store, answer stale while one background refresh runs,
//! join another request's flight, or lead one to the inner service (with
//! a stale copy standing by for `stale-if-error`).

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::ctx::Mode;
use super::forward::{Outgoing, forward};
use super::lookup::{Asking, LazyUser, Step};
use super::respond::Answer;
use super::trace::record_decision;
use crate::body::{BoxError, CacheBody};
use crate::fence::{Names, Start};
use crate::flight::Join;
use crate::key::normalize_url;
use crate::rfc9111::{self, RequestDirectives};
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
    if_error: bool,
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
            break Settled::fill(start, Fwd::UriMiss, None, None, false);
        }
        let answer = Answer {
            stats: &shared.stats,
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
        };
        let mut step = asking.at_primary(&primary, found);
        if let Step::Variant(key) = step {
            let found = shared.get(&key).await;
            step = asking.at_variant(key, found);
        }
        let (flight_key, fwd, stale, if_error) = match step {
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
                let mut response = Response::new(CacheBody::empty());
                *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
                response
                    .headers_mut()
                    .insert(crate::CACHE_STATUS, Served::OnlyIfCached.header());
                return Ok(response);
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
                if_error,
            } => (flight_key, fwd, stale, if_error),
            // `at_variant` never answers with another variant; were it to,
            // the request would simply go to the service.
            Step::Variant(_) => {
                record_decision("miss", "service");
                break Settled::fill(start, Fwd::VaryMiss, None, None, false);
            }
        };
        match join_flight(&shared, &flight_key, start, &name, &parts, &mut user) {
            Join::Leader(leader) => {
                record_decision("miss", "service");
                break Settled::fill(start, fwd, Some(leader), stale, if_error);
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
                    break Settled::fill(start, fwd, None, stale, if_error);
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
        if_error,
    } = settled;
    let fallback = stale.clone().filter(|_| if_error);
    let request_headers = fallback.as_ref().map(|_| parts.headers.clone());
    let outgoing = Outgoing {
        parts,
        body,
        primary,
        user,
        start,
        mode,
        stale,
    };
    let forwarded = forward(&shared, inner, outgoing).await;
    // `stale-if-error`: a stale response stands in for a server error or
    // a failed service.
    let failed = match &forwarded {
        Ok((response, _)) if rfc9111::is_error_for_stale(response.status()) => {
            Some(Some(response.status()))
        }
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
        let answer = Answer {
            stats: &shared.stats,
            request: &request_headers,
            head,
        };
        return Ok(answer.entry(&stale, age, Served::StaleIfError(status)));
    }
    let (response, outcome) = forwarded?;
    if let Some(leader) = leader {
        leader.complete(outcome);
    }
    Ok(response)
}

impl Settled {
    fn fill(
        start: Start,
        fwd: Fwd,
        leader: Option<crate::flight::Leader<Outcome>>,
        stale: Option<Arc<crate::entry::Entry>>,
        if_error: bool,
    ) -> Self {
        Self {
            start,
            mode: Mode::Fill(fwd),
            leader,
            stale,
            if_error,
        }
    }

    fn go(start: Start, mode: Mode) -> Self {
        Self {
            start,
            mode,
            leader: None,
            stale: None,
            if_error: false,
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
