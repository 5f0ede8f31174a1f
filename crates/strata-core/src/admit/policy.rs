//! Admission under a route's [`CachePolicy`] (public or private): the
//! policy says how long and for whom; the response may only narrow it.

use http::StatusCode;

use super::plan::{Input, NotStored, Plan, vary_of};
use crate::policy::Scope;
use crate::rfc9111::{HEURISTICALLY_CACHEABLE, ResponseDirectives, Vary};

/// Status codes whose responses the layer stores under a public or private
/// policy: success and permanent redirects, the first six of the
/// heuristically cacheable statuses (RFC 9110 §15.1). Errors (404
/// included) are not stored, so a created resource is not hidden behind a
/// cached 404.
pub const STORABLE_STATUSES: &[StatusCode] = HEURISTICALLY_CACHEABLE.split_at(6).0;

pub(super) fn plan(input: &Input<'_>) -> Result<Plan, NotStored> {
    let policy = input.policy;
    if !STORABLE_STATUSES.contains(&input.status) {
        return Err(NotStored::Status);
    }
    let per_user = policy.scope() == Scope::Private;
    if per_user && input.user.is_none() {
        return Err(NotStored::Anonymous);
    }
    let own = ResponseDirectives::from_cache_control(input.headers);
    // The handler marked its own response as one user's (RFC 9111
    // §5.2.2.7): a shared entry would serve it to everyone. Under a
    // private policy the entry is per user anyway.
    if !per_user && own.private.is_some() {
        return Err(NotStored::Private);
    }
    if own.no_store {
        return Err(NotStored::NoStore);
    }
    // The handler asked for revalidation on every use. Route entries are
    // revalidated once stale, not before each use, so it is not stored.
    if own.no_cache.is_some() {
        return Err(NotStored::NoCache);
    }
    if policy.ttl().is_zero() {
        return Err(NotStored::Ttl);
    }
    if Vary::from_headers(input.headers).is_any() {
        return Err(NotStored::VaryStar);
    }
    Ok(Plan {
        per_user,
        vary: vary_of(policy, input.headers),
        stored_at: input.now,
        ttl: policy.ttl(),
        stale: policy.stale_retention(),
        tags: policy.tag_list().to_vec(),
        origin: None,
    })
}
