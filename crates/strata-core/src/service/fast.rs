//! The in-process hit: answered synchronously from the store's memory
//! layer, with no boxed future, no await and no allocation beyond the
//! response itself.

use http::header::{CACHE_CONTROL, PRAGMA};
use http::request::Parts;
use http::{Method, Response};

use super::ctx::Mode;
use super::lookup::{Asking, LazyUser, Step};
use super::respond::Answer;
use super::trace::KeyDigest;
use crate::body::CacheBody;
use crate::shared::Shared;
use crate::stats::bump;
use crate::status::Served;

/// What the synchronous, in-process lookup found out.
pub(crate) enum Fast<B> {
    /// A fresh stored response: the answer.
    Hit(Response<CacheBody<B>>),
    /// The URL is known not to be storable for this request: go to the
    /// inner service without another lookup and without a flight.
    Go(Mode, LazyUser),
    /// Not known here: look up through every layer.
    Lookup,
}

/// Whether a request carries directives the cache weighs (with
/// [`CacheBuilder::honour_request_directives`](crate::CacheBuilder::honour_request_directives)):
/// those requests take the slow path.
pub(crate) fn has_directives(shared: &Shared, parts: &Parts) -> bool {
    shared.request_directives
        && (parts.headers.contains_key(CACHE_CONTROL) || parts.headers.contains_key(PRAGMA))
}

pub(crate) fn fast_path<B>(shared: &Shared, parts: &Parts, primary: &str) -> Fast<B> {
    if has_directives(shared, parts) {
        return Fast::Lookup;
    }
    let Some(found) = shared.store.get_local(primary) else {
        return Fast::Lookup;
    };
    let mut user = LazyUser::default();
    let mut asking = Asking {
        keys: &shared.keys,
        headers: &parts.headers,
        directives: None,
        user: &mut user,
        resolve: || shared.user_of(parts),
        now: shared.clock.now(),
        targets: shared.targets,
        stale_if_disconnected: shared.stale_if_disconnected,
    };
    let (entry, age) = match asking.at_primary(primary, Some(found)) {
        Step::Hit(entry, age) => (entry, age),
        Step::Variant(key) => {
            let found = shared.store.get_local(&key);
            match asking.at_variant(key, found) {
                Step::Hit(entry, age) => (entry, age),
                _ => return Fast::Lookup,
            }
        }
        Step::Pass => return Fast::Go(Mode::Pass, user),
        Step::Bypass => return Fast::Go(Mode::Bypass, user),
        // Stale, missing, or what only request directives give (which the
        // fast path does not weigh): the slow path decides.
        Step::Miss { .. } | Step::Stale { .. } | Step::Accepted(..) | Step::Unsatisfiable => {
            return Fast::Lookup;
        }
    };
    bump(&shared.stats.hits);
    tracing::trace!(target: "strata", key = %KeyDigest(primary), outcome = "hit", layer = "memory");
    let answer = Answer {
        shared,
        request: &parts.headers,
        head: parts.method == Method::HEAD,
    };
    Fast::Hit(answer.entry(&entry, age, Served::Hit))
}
