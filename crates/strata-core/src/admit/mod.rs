//! Admission: whether a response may be stored, for how long, under which
//! key and tags, or why not. Pure functions of the response, the request
//! and the time; no store, flight or lock.
//!
//! Two front-ends give the same [`Plan`]:
//!
//! - [`policy`]: a route's [`CachePolicy`] (public, private) decides, and
//!   the response may only narrow it (its own `private`, `no-store`,
//!   `no-cache`, `Vary: *`);
//! - [`origin`]: under [`CachePolicy::origin`] the response's own headers
//!   decide, as RFC 9111 has a shared cache decide.
//!
//! What neither may ever store (an event stream, a body declared too
//! large, a `Set-Cookie` in a shared entry) is checked here for
//! both, and [`gate`] keeps per-client fields out of every stored copy
//! whichever path writes it.

pub(crate) mod gate;
mod origin;
mod plan;
mod policy;

use http::header::{CONTENT_TYPE, SET_COOKIE};

use crate::policy::Scope;

pub(crate) use gate::{check, strip};
pub(crate) use plan::{Input, NotStored, Plan, body_length, vary_of};
pub use policy::STORABLE_STATUSES;

/// Whether and how to store a response: the one decision for fills and
/// revalidations, route policies and origin headers alike.
pub(crate) fn decide(input: &Input<'_>) -> Result<Plan, NotStored> {
    let plan = match input.policy.scope() {
        Scope::Origin => origin::plan(input)?,
        Scope::Public | Scope::Private => policy::plan(input)?,
        Scope::NoCache => return Err(NotStored::NoCache),
        Scope::NoStore => return Err(NotStored::NoStore),
    };
    // A shared entry never replays one client's cookie to others; a
    // private one is stored without it (see `gate`).
    if !plan.per_user && input.headers.contains_key(SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    let is_event_stream = input
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if is_event_stream {
        return Err(NotStored::Stream);
    }
    if !within_limit(input.length, input.max_body) {
        return Err(NotStored::TooLarge);
    }
    Ok(plan)
}

/// Whether a body of `length` (as [`body_length`] reads it) may be read
/// whole, up to `max_body`: one declared (or hinted) within the limit, or
/// one of unknown length (chunked, compressed on the fly, streamed), which
/// is read until it ends or passes the limit, and then streams through
/// with what was read first. The rule for fills and `no-cache` ETags alike.
pub(crate) fn within_limit(length: Option<u64>, max_body: usize) -> bool {
    length.is_none_or(|len| len <= max_body as u64)
}

#[cfg(test)]
mod tests;
