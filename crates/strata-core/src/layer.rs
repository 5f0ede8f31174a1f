//! [`CacheLayer`]: the one `.layer(...)` call.

use std::sync::Arc;

use tower_layer::Layer;

use crate::service::CacheService;
use crate::shared::Shared;

/// Wraps a service in a [`CacheService`]. Made by [`Cache::layer`](crate::Cache::layer);
/// cloning is cheap and every clone shares one cache.
///
/// The error type of the wrapped service is kept, so the layer drops into
/// `axum::Router::layer` without a `HandleErrorLayer`.
#[derive(Debug, Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl CacheLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::new(inner, Arc::clone(&self.shared))
    }
}
