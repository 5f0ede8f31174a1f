//! Unsafe methods (POST, PUT, PATCH, DELETE): once the service answered
//! with success, what the write makes stale is invalidated.

use std::future::Future;
use std::sync::Arc;

use http::{Method, Response};

use crate::body::CacheBody;
use crate::key::path_of;
use crate::policy::Invalidates;
use crate::rfc9111;
use crate::shared::Shared;
use crate::store::Invalidation;

/// An unsafe request, as its invalidations need it.
pub(crate) struct Write {
    pub(crate) method: Method,
    pub(crate) target: http::Uri,
    /// The request's origin (scheme, host, port), when it can be told.
    pub(crate) origin: Option<rfc9111::Origin>,
}

/// After a successful unsafe request, drop the cached GETs of its URL and
/// whatever the route declared with [`Invalidates`] (RFC 9111 §4.4).
pub(crate) async fn after_write<F, B, E>(
    shared: Arc<Shared>,
    future: F,
    write: Write,
) -> Result<Response<CacheBody<B>>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    let response = future.await?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        let declared = response.extensions().get::<Invalidates>();
        if !declared.is_some_and(Invalidates::keeps_own_url) {
            // Its own URL, and the `Location` and `Content-Location` URLs
            // on the same origin (RFC 9111 §4.4): every query of each path.
            let mut paths: Vec<String> = Vec::new();
            for url in rfc9111::invalidation_targets(
                &write.method,
                status,
                &write.target,
                write.origin.as_ref(),
                response.headers(),
            ) {
                let path = path_of(&url).to_owned();
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
            for path in paths {
                let _ = shared.invalidate(&Invalidation::Url(path)).await;
            }
        }
        if let Some(declared) = declared {
            if !declared.tag_list().is_empty() {
                let tags = Invalidation::Tags(declared.tag_list().to_vec());
                let _ = shared.invalidate(&tags).await;
            }
            for url in declared.url_list() {
                let _ = shared.invalidate(&Invalidation::Url(url.clone())).await;
            }
        }
    }
    Ok(response.map(CacheBody::inner))
}
