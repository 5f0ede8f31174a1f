//! To the inner service and back: a fill asks for the whole representation
//! (with a stale copy's own validators, if it has some; HEAD as GET), and
//! the response goes where its policy sends it: a 304 to [`revalidate`],
//! a storing policy to [`fill`], `no-cache` to [`no_cache`], anything else
//! through untouched.
//!
//! [`revalidate`]: super::revalidate
//! [`fill`]: super::fill
//! [`no_cache`]: super::no_cache

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::ctx::{Ctx, Mode};
use super::lookup::LazyUser;
use super::{fill, no_cache, revalidate};
use crate::admit::NotStored;
use crate::body::{BoxError, CacheBody};
use crate::entry::{CachedResponse, Entry};
use crate::fence::Start;
use crate::key::normalize_url;
use crate::policy::{CachePolicy, Scope};
use crate::shared::{Outcome, Shared};
use crate::status::{CACHE_STATUS, Fwd, Served};

/// A request on its way to the inner service.
pub(crate) struct Outgoing<ReqBody> {
    pub(crate) parts: Parts,
    pub(crate) body: ReqBody,
    pub(crate) primary: String,
    pub(crate) user: LazyUser,
    /// Where its lookup began: its fill's fence ticket starts there.
    pub(crate) start: Start,
    pub(crate) mode: Mode,
    /// The stored response that may not answer as it is, if any.
    pub(crate) stale: Option<Arc<Entry>>,
}

pub(crate) async fn forward<S, ReqBody, ResBody>(
    shared: &Shared,
    mut inner: S,
    outgoing: Outgoing<ReqBody>,
) -> Result<(Response<CacheBody<ResBody>>, Outcome), S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let Outgoing {
        mut parts,
        body,
        primary,
        mut user,
        start,
        mode,
        stale,
    } = outgoing;
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
        // The app's handler is asked for the whole body, which the cache
        // stores and answers the range from. Behind the gateway a range
        // goes on as asked: fetching a whole large file for its first
        // bytes would cost more than it saves; the upstream's 206 passes
        // through, not stored.
        let origin = shared
            .default_policy
            .as_ref()
            .is_some_and(|policy| policy.scope() == Scope::Origin);
        if !origin {
            parts.headers.remove(RANGE);
            parts.headers.remove(IF_RANGE);
        }
        // With the stale copy's own validators instead, a 304 says the
        // copy is still good (RFC 9111 §4.3.1).
        if let Some(stale) = stale
            && let Some(stored) = stale.response().filter(|stored| has_validators(stored))
        {
            if let Some(etag) = stored.etag() {
                parts.headers.insert(IF_NONE_MATCH, etag.clone());
            }
            if let Some(date) = stored.headers().get(LAST_MODIFIED) {
                parts.headers.insert(IF_MODIFIED_SINCE, date.clone());
            }
            revalidating = Some(Arc::clone(&stale));
        }
    }
    let ctx = Ctx {
        primary: &primary,
        name: normalize_url(super::cache_uri(&parts.uri, &parts.extensions)),
        user: user.get(|| shared.user_of(&parts)).map(str::to_owned),
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

/// Whether a stored response can be revalidated: it has an `ETag` or a
/// `Last-Modified`.
fn has_validators(stored: &CachedResponse) -> bool {
    stored.etag().is_some() || stored.headers().contains_key(LAST_MODIFIED)
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
        return revalidate::not_modified(shared, response, policy.as_ref(), &stale, ctx).await;
    }
    let Some(policy) = policy else {
        ctx.tally(&shared.stats.bypasses);
        fill::remember_pass(shared, &ctx, response.status()).await;
        return (response.map(CacheBody::inner), Outcome::Unshareable);
    };
    match policy.scope() {
        Scope::NoStore => {
            ctx.tally(&shared.stats.bypasses);
            fill::remember_pass(shared, &ctx, response.status()).await;
            let mut response = response.map(CacheBody::inner);
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, policy.cache_control().clone());
            headers.append(
                CACHE_STATUS,
                Served::NotStored(Fwd::Bypass, NotStored::NoStore).header(),
            );
            (response, Outcome::Unshareable)
        }
        Scope::NoCache => {
            ctx.tally(&shared.stats.bypasses);
            fill::remember_pass(shared, &ctx, response.status()).await;
            let response = no_cache::respond(shared, response, &policy, &ctx).await;
            (response, Outcome::Unshareable)
        }
        Scope::Public | Scope::Private | Scope::Origin => {
            fill::store(shared, response, &policy, ctx).await
        }
    }
}
