//! The service answered 304 to a stale copy's validators: the copy is good
//! again. Its headers are updated from the 304 (RFC 9111 §3.2, §4.3.4),
//! less what no stored copy may hold (the gate: a 304's `Set-Cookie` goes
//! to this client alone), admitted like any response, stored anew through
//! the one door, and it answers the request.

use std::sync::Arc;

use http::header::SET_COOKIE;
use http::{HeaderValue, Response};

use super::ctx::Ctx;
use super::fill::write_policy_headers;
use super::respond::{Answer, with_cookies};
use crate::admit::{self, Input};
use crate::body::CacheBody;
use crate::entry::{CachedResponse, Entry, EntryKind};
use crate::policy::{CachePolicy, Scope};
use crate::rfc9111;
use crate::shared::{Filled, Outcome, Shared, Written};
use crate::stats::bump;
use crate::status::{CACHE_STATUS, Served};

pub(crate) async fn not_modified<B>(
    shared: &Shared,
    response: Response<B>,
    policy: Option<&CachePolicy>,
    stale: &Entry,
    ctx: Ctx<'_>,
) -> (Response<CacheBody<B>>, Outcome) {
    ctx.tally(&shared.stats.misses);
    let answer = Answer {
        shared,
        request: &ctx.request_headers,
        head: ctx.head,
    };
    let now = shared.clock.now();
    let fwd = ctx.mode.fwd();
    // What the 304 sets for this client (a rolling session, a balancer's
    // stickiness) goes to this client alone, never into the stored copy.
    let cookies: Vec<HeaderValue> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let Some(stored) = stale.response() else {
        // Only responses are revalidated; pass the 304 on, untouched.
        return (response.map(CacheBody::inner), Outcome::Unshareable);
    };
    if !rfc9111::not_modified_selects(stored.headers(), response.headers()) {
        // The 304 names another response than the copy whose validators
        // went up (RFC 9111 §4.3.4): update nothing. The upstream did find
        // those validators current, so the copy answers this request, and
        // stays stale, so the next one asks again.
        let served = Served::Revalidated { fwd, stored: false };
        let response = answer.entry(stale, stale.age(now), served);
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
    // The route's policy, not the 304, says how the copy may be reused.
    if let Some(policy) = policy.filter(|p| matches!(p.scope(), Scope::Public | Scope::Private)) {
        write_policy_headers(&mut headers, policy);
    }
    let plan = policy.and_then(|policy| {
        admit::decide(&Input {
            policy,
            status: stored.status(),
            headers: &headers,
            length: Some(stored.body().len() as u64),
            max_body: shared.max_body,
            user: stale.user.as_deref(),
            request_headers: &ctx.request_headers,
            sent_at: ctx.sent_at,
            now,
            targets: shared.targets,
            stale_if_disconnected: shared.stale_if_disconnected,
        })
        .ok()
    });
    if let Some(directives) = plan.as_ref().and_then(|plan| plan.origin.as_ref()) {
        rfc9111::strip_unstorable_fields(&mut headers, directives);
    }
    let entry = Arc::new(Entry {
        key: stale.key.clone(),
        name: stale.name.clone(),
        user: stale.user.clone(),
        // A route's tags stay those the copy was stored with; the origin's
        // are read again from the updated headers.
        tags: match &plan {
            Some(plan) if plan.origin.is_some() => plan.tags.clone(),
            _ => stale.tags.clone(),
        },
        stored_at: plan.as_ref().map_or(now, |plan| plan.stored_at),
        ttl: plan
            .as_ref()
            .map_or(std::time::Duration::ZERO, |plan| plan.ttl),
        stale: plan
            .as_ref()
            .map_or(std::time::Duration::ZERO, |plan| plan.stale),
        kind: EntryKind::Response(refreshed(stored, headers)),
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
    let response = answer.entry(&entry, entry.age(now), served);
    let outcome = match written {
        Written::Stored => Outcome::Filled(Arc::new(Filled {
            entry,
            rule: None,
            start: ctx.ticket.seq(),
        })),
        Written::Fenced => Outcome::Fenced(Arc::new(Filled {
            entry,
            rule: None,
            start: ctx.ticket.seq(),
        })),
        Written::Failed => Outcome::Unshareable,
    };
    (with_cookies(response, cookies), outcome)
}

/// `stored` with the headers a 304 refreshed, and its other codings (built
/// from the new headers, their bodies kept).
fn refreshed(stored: &CachedResponse, headers: http::HeaderMap) -> CachedResponse {
    let identity = CachedResponse::new(
        stored.status(),
        headers,
        stored.body().clone(),
        stored.last_modified(),
    );
    let encoded = stored
        .encodings()
        .iter()
        .map(|(coding, response)| {
            (
                *coding,
                identity.representation(*coding, response.body().clone()),
            )
        })
        .collect();
    identity.with_encodings(encoded)
}
