//! Storing a response: admission ([`admit::decide`]), the body buffered
//! once, the entry built with the headers every hit needs, and written
//! with the URL's variant rule through the one door ([`Shared::put_all`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT_ENCODING, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, DATE, ETAG,
    LAST_MODIFIED, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;

use super::ctx::{Ctx, Mode};
use super::respond::{Answer, with_cookies};
use crate::admit::{self, Input, NotStored};
use crate::body::{BoxError, Buffered, CacheBody, buffer};
use crate::compress::Compression;
use crate::conditional::{self, etag_for, http_date};
use crate::entry::{CachedResponse, Entry, EntryKind, VariantRule};
use crate::policy::{CachePolicy, Scope};
use crate::rfc9111::{self, Vary};
use crate::shared::{Filled, Outcome, Shared, Written};
use crate::stats::bump;
use crate::status::{CACHE_STATUS, HIT, Served};

/// Stores `response` if its policy and headers allow, and answers with it.
pub(crate) async fn store<B>(
    shared: &Shared,
    response: Response<B>,
    policy: &CachePolicy,
    ctx: Ctx<'_>,
) -> (Response<CacheBody<B>>, Outcome)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let fwd = ctx.mode.fwd();
    let origin = policy.scope() == Scope::Origin;
    let decided = admit::decide(&Input {
        policy,
        status: response.status(),
        headers: response.headers(),
        length: admit::body_length(&response),
        max_body: shared.max_body,
        user: ctx.user.as_deref(),
        request_headers: &ctx.request_headers,
        sent_at: ctx.sent_at,
        now: shared.clock.now(),
        targets: shared.targets,
        stale_if_disconnected: shared.stale_if_disconnected,
    })
    .and_then(|plan| match ctx.mode {
        Mode::Bypass => Err(NotStored::Bypass),
        _ => Ok(plan),
    });
    let plan = match decided {
        Ok(plan) => plan,
        Err(why) => {
            ctx.tally(&shared.stats.bypasses);
            if why == NotStored::Anonymous {
                shared.note_anonymous_private();
            }
            if why.teaches_pass() {
                remember_pass(shared, &ctx, response.status()).await;
            }
            if why == NotStored::Anonymous && ctx.mode != Mode::Bypass {
                // Learn that the URL is per-user: later anonymous requests
                // then pass by, and users go to their own variants.
                let rule = VariantRule {
                    per_user: true,
                    vary: admit::vary_of(policy, response.headers()),
                    pass: false,
                };
                let marker = rule_entry(shared, &ctx, rule, policy.ttl());
                shared.put_all(&[marker], &ctx.ticket).await;
            }
            let mut response = response.map(CacheBody::inner);
            let headers = response.headers_mut();
            if origin {
                // The response's own headers stand.
                headers.remove(rfc9111::STRATA_CACHE_CONTROL);
            } else if why == NotStored::Anonymous {
                // Made for nobody in particular on a per-user URL: a browser
                // must not keep it and show it after its user logs in.
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            } else if why.takes_policy_headers() {
                write_policy_headers(headers, policy);
            }
            headers.append(CACHE_STATUS, Served::NotStored(fwd, why).header());
            return (response, Outcome::Unshareable);
        }
    };

    // Every request is one of hit, miss or bypass: this one went to the
    // service with a response the cache means to store.
    ctx.tally(&shared.stats.misses);
    let (head_parts, body) = response.into_parts();
    let body = match buffer(Box::pin(body), shared.max_body).await {
        Buffered::Whole(bytes) => bytes,
        Buffered::TooLong(read, rest) => {
            let mut response = Response::from_parts(head_parts, CacheBody::prefixed(read, rest));
            let headers = response.headers_mut();
            if origin {
                headers.remove(rfc9111::STRATA_CACHE_CONTROL);
            } else {
                write_policy_headers(headers, policy);
            }
            let status = Served::NotStored(fwd, NotStored::TooLarge).header();
            headers.append(CACHE_STATUS, status);
            return (response, Outcome::Unshareable);
        }
        Buffered::Failed(error) => {
            // The client sees the inner body's failure; nothing is stored.
            // The connection broke before a complete response: to the
            // caller, the origin is out of reach (a stale copy may answer
            // instead, RFC 9111 §4.2.4).
            let mut head_parts = head_parts;
            head_parts.extensions.insert(crate::Disconnected);
            return (
                Response::from_parts(head_parts, CacheBody::failed(error)),
                Outcome::Unshareable,
            );
        }
    };

    let now = shared.clock.now();
    let mut headers = head_parts.headers;
    // A stored copy never replays a cookie on hits (a shared route's
    // response with one was not admitted at all), but the response made
    // for this very request still sets it.
    let cookies = admit::strip(&mut headers);
    match &plan.origin {
        // The origin's own fields stand, less those `private="..."` keeps
        // out of a shared entry. `Strata-Cache-Control` stays in the
        // stored copy, for the stale and revalidation decisions to come,
        // and is left out of every response (`respond`).
        Some(directives) => {
            rfc9111::strip_unstorable_fields(&mut headers, directives);
            // A response without a `Date` gets the time it was received
            // (RFC 9110 §6.6.1), not the time of each hit.
            if !headers.contains_key(DATE) {
                headers.insert(DATE, http_date(now));
            }
        }
        None => write_policy_headers(&mut headers, policy),
    }
    let last_modified = add_validators(&mut headers, &body, head_parts.status, origin, now);
    let listed = Vary::from_headers(&headers);
    for name in policy.vary_list() {
        if !listed.names().contains(name) {
            headers.append(VARY, HeaderValue::from_name(name.clone()));
        }
    }
    headers.insert(AGE, HeaderValue::from_static("0"));
    headers.append(CACHE_STATUS, HIT.clone());
    if shared.emit_surrogate_keys {
        add_surrogate_key(&mut headers, &plan.tags);
    }

    let rule = (plan.per_user || !plan.vary.is_empty()).then(|| VariantRule {
        per_user: plan.per_user,
        vary: plan.vary,
        pass: false,
    });
    let user = if plan.per_user {
        ctx.user.clone()
    } else {
        None
    };
    let key = match &rule {
        Some(rule) => shared.keys.variant_key(
            ctx.primary,
            user.as_deref(),
            &rule.vary,
            &ctx.request_headers,
        ),
        None => ctx.primary.to_owned(),
    };
    let compression =
        Compression::for_policy(shared.compression.as_ref(), policy).filter(|compression| {
            head_parts.status == StatusCode::OK && compression.applies(&headers, &body)
        });
    let encoded = match compression {
        Some(compression) => compression.encode_all(&body).await,
        None => Vec::new(),
    };
    // Every representation says it depends on `Accept-Encoding`, identity
    // too, once there is more than one.
    if !encoded.is_empty()
        && !Vary::from_headers(&headers)
            .names()
            .contains(&ACCEPT_ENCODING)
    {
        headers.append(VARY, crate::compress::vary());
    }
    let stored = CachedResponse::new(head_parts.status, headers, body, last_modified);
    let encoded = encoded
        .into_iter()
        .map(|(coding, body)| (coding, stored.representation(coding, body)))
        .collect();
    let stored = stored.with_encodings(encoded);
    let entry = Arc::new(Entry {
        key,
        name: ctx.name.clone(),
        user,
        tags: plan.tags,
        stored_at: plan.stored_at,
        ttl: plan.ttl,
        stale: plan.stale,
        kind: EntryKind::Response(stored),
    });
    let mut writes = vec![Arc::clone(&entry)];
    if let Some(rule) = &rule {
        // The rule lasts as long as the variants may be served, stale too.
        writes.push(rule_entry(shared, &ctx, rule.clone(), entry.retention()));
    }
    let written = shared.put_all(&writes, &ctx.ticket).await;
    let served = if written == Written::Stored {
        bump(&shared.stats.stores);
        Served::Stored(fwd)
    } else {
        // Fenced by an invalidation, or the store failed: the answer is
        // right, but the cache does not hold it.
        Served::Fetched(fwd)
    };
    let answer = Answer {
        shared,
        request: &ctx.request_headers,
        head: ctx.head,
    };
    // Not zero when an upstream said how old its response already was.
    let mut response = answer.entry(&entry, entry.age(now), served);
    // The service's extensions go on with the answer it made (a stored
    // copy keeps none: hits carry only what the cache adds).
    response.extensions_mut().extend(head_parts.extensions);
    let filled = Arc::new(Filled {
        entry,
        rule,
        start: ctx.ticket.seq(),
    });
    let outcome = match written {
        Written::Fenced => Outcome::Fenced(filled),
        // Stored, or the store failed: the answer is right either way.
        Written::Stored | Written::Failed => Outcome::Filled(filled),
    };
    (with_cookies(response, cookies), outcome)
}

/// Adds what a stored response needs to be validated and measured: an
/// `ETag` (computed once, here, for the app's own responses), a
/// `Last-Modified` (made up for the app's own responses only) and a
/// `Content-Length` (so HEAD answers carry the GET's). Returns the time a
/// client's `If-Modified-Since` is compared with.
fn add_validators(
    headers: &mut HeaderMap,
    body: &Bytes,
    status: StatusCode,
    origin: bool,
    now: std::time::SystemTime,
) -> std::time::SystemTime {
    // No made-up ETag on another server's response: revalidating with a
    // tag the upstream never issued would only cost it a full answer.
    let etag = (!headers.contains_key(ETAG) && !origin).then(|| etag_for(body));
    // The app's own tag on an encoded body (a compression layer inside the
    // cache keeps it on every encoding) becomes that encoding's own.
    if !origin
        && let Some(coding) = headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok())
        && let Some(tagged) = headers
            .get(ETAG)
            .and_then(|etag| conditional::etag_for_coding(etag, coding))
    {
        headers.insert(ETAG, tagged);
    }
    let stored_last_modified = headers
        .get(LAST_MODIFIED)
        .and_then(conditional::parse_http_date);
    // Without a `Last-Modified`, a client's `If-Modified-Since` is compared
    // with the upstream's `Date`, else the time of receipt (RFC 9111 §4.3.2).
    let last_modified = stored_last_modified
        .or_else(|| {
            origin
                .then(|| headers.get(DATE))
                .flatten()
                .and_then(conditional::parse_http_date)
        })
        .unwrap_or(now);
    let date = (stored_last_modified.is_none() && !origin).then(|| http_date(now));
    let length = (status != StatusCode::NO_CONTENT).then(|| body.len().to_string());
    let [etag, date, length] = packed_values([
        etag.as_ref().map(HeaderValue::as_bytes),
        date.as_ref().map(HeaderValue::as_bytes),
        length.as_ref().map(String::as_bytes),
    ]);
    for (name, value) in [
        (ETAG, etag),
        (LAST_MODIFIED, date),
        (CONTENT_LENGTH, length),
    ] {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    last_modified
}

/// For a CDN in front: the entry's tags in `Surrogate-Key`, so a purge by
/// tag can name the same keys there (tags with white space cannot be
/// listed). A response that has one keeps it.
fn add_surrogate_key(headers: &mut HeaderMap, tags: &[String]) {
    if tags.is_empty() || headers.contains_key(rfc9111::SURROGATE_KEY) {
        return;
    }
    let listed: Vec<&str> = tags
        .iter()
        .map(String::as_str)
        .filter(|tag| !tag.contains(char::is_whitespace))
        .collect();
    if let Ok(value) = HeaderValue::try_from(listed.join(" ")) {
        headers.insert(rfc9111::SURROGATE_KEY, value);
    }
}

/// The fields a policy writes on a response: `Cache-Control`, and
/// `CDN-Cache-Control` when it has one.
pub(crate) fn write_policy_headers(headers: &mut HeaderMap, policy: &CachePolicy) {
    headers.insert(CACHE_CONTROL, policy.cache_control().clone());
    if let Some(cdn) = policy.cdn_cache_control() {
        headers.insert(rfc9111::CDN_CACHE_CONTROL, cdn.clone());
    }
}

/// Records that the URL's responses are not storable, so later requests
/// skip the single flight (and, on a tiered store, the remote lookup).
///
/// Only a successful response teaches this: an error or a 404 says
/// nothing about the route's policy, and remembering every unknown URL a
/// client makes up would let it push real entries out of memory.
pub(crate) async fn remember_pass(shared: &Shared, ctx: &Ctx<'_>, status: StatusCode) {
    let learnt = status.is_success() || status.is_redirection();
    if !learnt || !matches!(ctx.mode, Mode::Fill(_)) || shared.pass_ttl.is_zero() {
        return;
    }
    let rule = VariantRule {
        pass: true,
        ..VariantRule::default()
    };
    let marker = rule_entry(shared, ctx, rule, shared.pass_ttl);
    shared.put_all(&[marker], &ctx.ticket).await;
}

fn rule_entry(shared: &Shared, ctx: &Ctx<'_>, rule: VariantRule, ttl: Duration) -> Arc<Entry> {
    Arc::new(Entry {
        key: ctx.primary.to_owned(),
        name: ctx.name.clone(),
        user: None,
        tags: Vec::new(),
        stored_at: shared.clock.now(),
        ttl,
        stale: Duration::ZERO,
        kind: EntryKind::Variants(rule),
    })
}

/// Header values copied into one buffer that they share: a stored
/// response's ETag, `Last-Modified` and `Content-Length` then cost one
/// allocation (and one shared count) for as long as the entry lives,
/// instead of one or two each.
fn packed_values<const N: usize>(values: [Option<&[u8]>; N]) -> [Option<HeaderValue>; N] {
    let total = values.iter().flatten().map(|value| value.len()).sum();
    let mut packed = BytesMut::with_capacity(total);
    for value in values.iter().flatten() {
        packed.extend_from_slice(value);
    }
    let packed = packed.freeze();
    let mut at = 0;
    values.map(|value| {
        let value = value?;
        let slice = packed.slice(at..at + value.len());
        at += value.len();
        // Copied from valid header values; should that ever fail, the field
        // is left out rather than the request failed.
        HeaderValue::from_maybe_shared(slice).ok()
    })
}
