//! [`Cache`] and [`CacheHandle`]: what the application holds to make the
//! layer, invalidate, and read figures. The builder is in `builder.rs`,
//! cached values (`get_or_compute`) in `values.rs`.

use std::sync::Arc;

use crate::error::Error;
use crate::key::KeyBuilder;
use crate::layer::CacheLayer;
use crate::shared::Shared;
use crate::stats::StatsSnapshot;
use crate::store::{HealthReport, Invalidation, Store};

/// A configured cache: make its [`layer`](Cache::layer) and hand out
/// [`handle`](Cache::handle)s.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use strata::{Cache, CachePolicy};
///
/// let cache = Cache::builder().prefix("thebot", "production").build();
/// let app: Router = Router::new()
///     .route("/api/materials/", get(|| async { "[]" })
///         .layer(CachePolicy::public(Duration::from_secs(1800)).tag("materials")))
///     .layer(cache.layer());
/// let handle = cache.handle(); // for handlers: invalidate, stats, get_or_compute
/// # let _ = (app, handle);
/// ```
#[derive(Debug, Clone)]
pub struct Cache {
    pub(crate) shared: Arc<Shared>,
}

impl Cache {
    /// The tower layer to put in front of a service or an axum `Router`.
    pub fn layer(&self) -> CacheLayer {
        CacheLayer::new(Arc::clone(&self.shared))
    }

    /// A handle for invalidation, figures and `get_or_compute`.
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A cheap, cloneable handle on a [`Cache`], for handlers and background
/// jobs: invalidate, read and reset figures, cache computed values.
///
/// Every `invalidate_*` returns once the store has dropped the entries; a
/// response that was being computed when it was called is not stored
/// afterwards.
#[derive(Debug, Clone)]
pub struct CacheHandle {
    pub(crate) shared: Arc<Shared>,
}

impl CacheHandle {
    /// Drops what `what` names; returns how many entries the store dropped.
    pub async fn invalidate(&self, what: &Invalidation) -> Result<u64, Error> {
        self.shared.invalidate(what).await
    }

    /// Drops the value cached under `name` by [`get_or_compute`](Self::get_or_compute).
    pub async fn invalidate_key(&self, name: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Key(name.to_owned())).await
    }

    /// Drops every cached response under this URL's path: all query
    /// strings, users and variants.
    pub async fn invalidate_url(&self, url: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Url(url.to_owned())).await
    }

    /// Drops every entry tagged `tag`.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Tag(tag.to_owned())).await
    }

    /// Drops every entry carrying any of `tags`.
    pub async fn invalidate_tags<I, T>(&self, tags: I) -> Result<u64, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let tags = tags.into_iter().map(Into::into).collect();
        self.invalidate(&Invalidation::Tags(tags)).await
    }

    /// Drops every entry whose URL (or value name) starts with `prefix`.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Prefix(prefix.to_owned()))
            .await
    }

    /// Drops every entry of one user: private responses and values named
    /// with [`KeyBuilder::user_name`]. Call it on logout.
    pub async fn invalidate_user(&self, user: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::User(user.to_owned())).await
    }

    /// Drops everything.
    pub async fn clear(&self) -> Result<u64, Error> {
        self.invalidate(&Invalidation::All).await
    }

    /// The counters and the store's figures, now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(self.shared.store.stats())
    }

    /// Hands the current figures to the installed `metrics` recorder (see
    /// [`metrics`](crate::metrics) for the names).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_metrics(&self) {
        crate::metrics::record(&self.stats());
    }

    /// Records the figures every `period` on a background task until the
    /// task is aborted. Call it inside a tokio runtime.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn spawn_metrics(&self, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                handle.record_metrics();
            }
        })
    }

    /// Sets the counters back to zero (stored entries stay).
    pub fn reset_stats(&self) {
        self.shared.stats.reset(&self.shared.store.stats());
    }

    /// Probes every store layer: `ok`, or `degraded` with the failing ones.
    pub async fn health(&self) -> HealthReport {
        HealthReport::new(self.shared.store.health().await)
    }

    /// The key builder, for keys that match the cache's own.
    pub fn keys(&self) -> &KeyBuilder {
        &self.shared.keys
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }
}
