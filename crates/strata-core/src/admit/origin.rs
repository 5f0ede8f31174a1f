//! Admission under [`CachePolicy::origin`](crate::CachePolicy::origin): the
//! response's own headers decide, as RFC 9111 has a shared cache decide
//! (§3, §4.2; RFC 5861; RFC 9213 for `Strata-Cache-Control`).

use std::time::Duration;

use http::Method;
use http::header::{ETAG, LAST_MODIFIED};

use super::plan::{Input, NotStored, Plan, vary_of};
use crate::rfc9111::{self, RequestDirectives, ResponseTiming};

/// The longest a response's own headers may keep it (fresh or stale):
/// RFC 9111 lets them ask for up to 2^31 s.
const MAX_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long past its freshness a response with validators of its own is
/// kept, to be revalidated rather than fetched whole.
const KEEP_FOR_REVALIDATION: Duration = Duration::from_secs(3600);

pub(super) fn plan(input: &Input<'_>) -> Result<Plan, NotStored> {
    let headers = input.headers;
    let directives = rfc9111::response_directives(headers, input.targets);
    let request = RequestDirectives::from_headers(input.request_headers);
    rfc9111::storable(
        &Method::GET,
        input.request_headers,
        &request,
        input.status,
        headers,
        &directives,
    )
    .map_err(NotStored::Rfc)?;
    // Validators of the upstream's own: a stale copy can be revalidated
    // with them instead of fetched whole.
    let validators = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
    // `no-cache`: stored, but revalidated before every use (RFC 9111
    // §5.2.2.4), which needs validators; without them it is useless. Its
    // lifetime is zero, so a lookup never takes it for fresh.
    if directives.no_cache.is_some() && !validators {
        return Err(NotStored::NoCache);
    }
    let mut lifetime = rfc9111::freshness_lifetime(
        input.status,
        headers,
        &directives,
        input.now,
        rfc9111::DEFAULT_HEURISTIC_CAP,
    );
    if directives.no_cache.is_some() {
        lifetime.duration = Duration::ZERO;
    }
    if lifetime.duration.is_zero() && !validators {
        return Err(NotStored::NoFreshness);
    }
    let tags = rfc9111::surrogate_keys(headers).map_err(|_| NotStored::SurrogateKey)?;
    let window = |seconds: Option<u32>| Duration::from_secs(u64::from(seconds.unwrap_or(0)));
    let (while_revalidate, if_error) = if directives.forbids_stale() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            window(directives.stale_while_revalidate),
            window(directives.stale_if_error),
        )
    };
    let timing = ResponseTiming::new(input.sent_at, input.now, headers);
    // Older than its lifetime on arrival, with no stale window to serve it
    // in and nothing to revalidate it with: it could never answer.
    if timing.corrected_initial_age() >= lifetime.duration
        && while_revalidate.is_zero()
        && if_error.is_zero()
        && !validators
    {
        return Err(NotStored::AlreadyStale);
    }
    let keep = if validators {
        KEEP_FOR_REVALIDATION
    } else {
        Duration::ZERO
    };
    // Kept for serving while the origin is out of reach (RFC 9111 §4.2.4),
    // where the response allows serving it stale at all.
    let disconnected = if directives.forbids_stale() || directives.s_maxage.is_some() {
        Duration::ZERO
    } else {
        input.stale_if_disconnected
    };
    let mut all_tags = input.policy.tag_list().to_vec();
    all_tags.extend(tags);
    Ok(Plan {
        per_user: false,
        vary: vary_of(input.policy, headers),
        ttl: lifetime.duration.min(MAX_RETENTION),
        stale: while_revalidate
            .max(if_error)
            .max(keep)
            .max(disconnected)
            .min(MAX_RETENTION),
        stored_at: timing.generated_at(),
        tags: all_tags,
        origin: Some(directives),
    })
}
