//! [`CacheService`]: the middleware itself, as a pipeline of phases, one
//! idea per module.
//!
//! A GET or HEAD first tries the store's in-process layer synchronously
//! ([`fast`]); a fresh entry is answered right there, with no boxed future.
//! Anything else takes the slow path ([`read`]): look up through every
//! layer ([`lookup`] decides what the entries found mean), join or lead the
//! single flight for the key, call the inner service ([`forward`]), and
//! store the response if admission allows ([`fill`], [`revalidate`] for a
//! 304, [`no_cache`] for routes that only validate). Stored responses are
//! answered by [`respond`]. Unsafe methods go through [`write`], which
//! invalidates what they change.
//!
//! A route's policy arrives with its first response, so the cache learns
//! how a URL varies from that response and stores the lesson at the URL's
//! primary key (a [`VariantRule`](crate::VariantRule)): shared responses
//! live at the primary key itself; per-user or `Vary` responses live at
//! variant keys that the rule tells how to build. A request for a per-user
//! URL without a user never reaches a stored variant.

mod ctx;
mod fast;
mod fill;
mod forward;
mod future;
mod lookup;
mod no_cache;
mod read;
mod respond;
mod revalidate;
mod trace;
mod uri;
mod write;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower::util::Oneshot;
use tower_service::Service;
use tracing::Instrument as _;

use self::ctx::Mode;
use self::fast::{Fast, fast_path};
use self::forward::{Outgoing, forward};
pub(crate) use self::trace::KeyDigest;
use self::trace::{decision_span, log_decision};
pub(crate) use self::uri::cache_uri;
use self::write::{Write, after_write};
use crate::body::{BoxError, CacheBody};
use crate::rfc9111;
use crate::shared::Shared;
use crate::stats::bump;
use crate::status::Served;

pub use self::future::ResponseFuture;

/// The middleware. Built by [`CacheLayer`](crate::CacheLayer).
///
/// The inner service is kept behind an `Arc` and cloned only when a
/// request has to reach it (a miss, a pass-through, a write): axum clones
/// route services on every request, and a hit should not pay for cloning
/// the route it never calls. For the same reason `poll_ready` is always
/// ready; each call drives its own clone of the inner service to
/// readiness before calling it.
#[derive(Debug)]
pub struct CacheService<S> {
    inner: Arc<S>,
    shared: Arc<Shared>,
}

impl<S> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner: Arc::new(inner),
            shared,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> CacheService<S> {
    /// The inner service, mutably (cloned first if other clones share it).
    pub fn get_mut(&mut self) -> &mut S {
        Arc::make_mut(&mut self.inner)
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        Arc::unwrap_or_clone(self.inner)
    }
}

/// Whether a request carries content (RFC 9112 §6.3: `Transfer-Encoding`,
/// or a `Content-Length` other than 0).
fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes() != b"0")
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.method();
        let cacheable = method == Method::GET || method == Method::HEAD;
        if cacheable && has_body(request.headers()) {
            // A GET or HEAD with content: what it selects is the origin's
            // business, so it is neither answered from nor stored in an
            // entry, and never waits in (or holds) a single flight while
            // its body arrives.
            bump(&self.shared.stats.bypasses);
            let future = Oneshot::new(S::clone(&self.inner), request);
            return ResponseFuture::boxed(async move {
                let mut response = future.await?;
                response
                    .headers_mut()
                    .append(crate::CACHE_STATUS, Served::RequestBody.header());
                Ok(response.map(CacheBody::inner))
            });
        }
        if cacheable {
            let (parts, body) = request.into_parts();
            let primary = self
                .shared
                .keys
                .url_key(cache_uri(&parts.uri, &parts.extensions));
            // Read before looking, as `read` does (see there).
            let start = self.shared.start();
            let (mode, user) = match fast_path(&self.shared, &parts, &primary) {
                Fast::Hit(response) => return ResponseFuture::ready(response),
                Fast::Go(mode, user) => (mode, user),
                Fast::Lookup => {
                    let inner = S::clone(&self.inner);
                    let shared = Arc::clone(&self.shared);
                    let span = decision_span(&primary, &parts);
                    let reading = read::read(shared, inner, parts, body, primary);
                    let logged = async move {
                        let response = reading.await?;
                        log_decision(&response);
                        Ok(response)
                    };
                    return ResponseFuture::boxed(logged.instrument(span));
                }
            };
            let inner = S::clone(&self.inner);
            let shared = Arc::clone(&self.shared);
            let span = decision_span(&primary, &parts);
            let outcome = match mode {
                Mode::Bypass => "bypass",
                _ => "pass",
            };
            span.record("outcome", outcome);
            span.record("layer", "service");
            let outgoing = Outgoing {
                parts,
                body,
                primary,
                user,
                start,
                mode,
                stale: None,
            };
            return ResponseFuture::boxed(
                async move {
                    let (response, _) = forward(&shared, inner, outgoing).await?;
                    log_decision(&response);
                    Ok(response)
                }
                .instrument(span),
            );
        }
        if method.is_safe() {
            let future = Oneshot::new(S::clone(&self.inner), request);
            return ResponseFuture::boxed(async move {
                let response = future.await?;
                Ok(response.map(CacheBody::inner))
            });
        }
        let target = cache_uri(request.uri(), request.extensions());
        let write = Write {
            method: request.method().clone(),
            origin: rfc9111::Origin::of_request(target, request.headers(), http::uri::Scheme::HTTP),
            target: target.clone(),
        };
        let future = Oneshot::new(S::clone(&self.inner), request);
        ResponseFuture::boxed(after_write(Arc::clone(&self.shared), future, write))
    }
}
