//! `no-cache` routes: never stored, but validated. The body is read (when
//! it is within the limit, or of unknown length and turns out to be) to
//! give it an ETag, and a matching conditional request gets 304.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use http::{HeaderValue, Response, StatusCode};
use http_body::Body;

use super::ctx::Ctx;
use crate::admit::{self, NotStored};
use crate::body::{BoxError, Buffered, CacheBody, buffer};
use crate::conditional::{self, copy_not_modified_headers, etag_for, is_not_modified};
use crate::policy::CachePolicy;
use crate::shared::Shared;
use crate::stats::bump;
use crate::status::{CACHE_STATUS, Fwd, Served};

/// `no-cache`: never stored, but validated. The body is read (up to the
/// limit) to give it an ETag, and a matching conditional request gets 304.
pub(crate) async fn respond<B>(
    shared: &Shared,
    response: Response<B>,
    policy: &CachePolicy,
    ctx: &Ctx<'_>,
) -> Response<CacheBody<B>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let status = Served::NotStored(Fwd::Bypass, NotStored::NoCache).header();
    let measurable = admit::within_limit(admit::body_length(&response), shared.max_body);
    if !measurable || !response.status().is_success() {
        let mut response = response.map(CacheBody::inner);
        response
            .headers_mut()
            .insert(CACHE_CONTROL, policy.cache_control().clone());
        response.headers_mut().append(CACHE_STATUS, status);
        return response;
    }
    let (mut head_parts, body) = response.into_parts();
    let body = match buffer(Box::pin(body), shared.max_body).await {
        Buffered::Whole(bytes) => bytes,
        Buffered::TooLong(read, rest) => {
            let mut response = Response::from_parts(head_parts, CacheBody::prefixed(read, rest));
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, policy.cache_control().clone());
            headers.append(CACHE_STATUS, status);
            return response;
        }
        Buffered::Failed(error) => {
            return Response::from_parts(head_parts, CacheBody::failed(error));
        }
    };
    let headers = &mut head_parts.headers;
    headers.insert(CACHE_CONTROL, policy.cache_control().clone());
    if !headers.contains_key(ETAG) {
        headers.insert(ETAG, etag_for(&body));
    }
    headers.append(CACHE_STATUS, status);
    let last_modified = headers
        .get(LAST_MODIFIED)
        .and_then(conditional::parse_http_date);
    if is_not_modified(&ctx.request_headers, headers.get(ETAG), last_modified) {
        bump(&shared.stats.not_modified);
        let mut not_modified = Response::new(CacheBody::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        copy_not_modified_headers(headers, not_modified.headers_mut());
        for line in headers.get_all(CACHE_STATUS) {
            not_modified
                .headers_mut()
                .append(CACHE_STATUS, line.clone());
        }
        return not_modified;
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if ctx.head {
        CacheBody::empty()
    } else {
        CacheBody::full(body)
    };
    Response::from_parts(head_parts, body)
}
