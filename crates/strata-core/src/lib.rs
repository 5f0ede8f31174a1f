//! The core of [strata](https://docs.rs/strata): a multi-layer HTTP response
//! cache for tower and axum.
//!
//! Most users depend on the `strata` facade, which re-exports this crate.
//! The pieces, one concept per module:
//!
//! - [`policy`]: [`CachePolicy`] (who may reuse a response, for how long,
//!   under which tags) and [`Invalidates`] (what a write makes stale);
//! - [`key`]: the [`KeyBuilder`] every layer and instance agrees on;
//! - [`conditional`]: ETags, `If-None-Match`, `If-Modified-Since`, 304;
//! - [`entry`] and [`store`]: what is stored and where ([`Store`],
//!   [`MemoryStore`]);
//! - [`Cache`], [`CacheLayer`], [`CacheService`] and [`CacheHandle`]: the
//!   middleware and the application's handle on it;
//! - [`StatsSnapshot`] and [`Config`].
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::{get, put}};
//! use strata::{Cache, CachePolicy, Invalidates};
//!
//! let cache = Cache::builder()
//!     .prefix("thebot", "production")
//!     .user(|parts: &http::request::Parts| {
//!         parts.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned)
//!     })
//!     .build();
//! let app: Router = Router::new()
//!     .route("/api/materials/", get(|| async { "[]" })
//!         .layer(CachePolicy::public(Duration::from_secs(1800)).tag("materials")))
//!     .route("/api/materials/{id}/", put(|| async { "ok" })
//!         .layer(Invalidates::tags(["materials"])))
//!     .route("/api/dashboard/", get(|| async { "mine" })
//!         .layer(CachePolicy::private(Duration::from_secs(300))))
//!     .layer(cache.layer());
//! # let _ = app;
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admit;
mod annotate;
mod body;
mod builder;
mod cache;
mod clock;
pub mod compress;
pub mod conditional;
mod config;
mod disconnected;
pub mod entry;
mod error;
mod fence;
pub mod fields;
mod flight;
pub mod key;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod policy;
mod range;
mod rfc9111;
mod service;
mod shared;
mod stats;
mod status;
pub mod store;
mod values;

pub use admit::STORABLE_STATUSES;
pub use annotate::{Annotate, AnnotateFuture};
pub use body::{BoxError, CacheBody};
pub use builder::{CacheBuilder, DEFAULT_MAX_BODY, DEFAULT_PASS_TTL};
pub use cache::{Cache, CacheHandle};
pub use clock::{Clock, MockClock, SystemClock};
pub use config::{Config, TtlProfiles};
pub use disconnected::Disconnected;
pub use entry::{CachedResponse, Entry, EntryKind, VariantRule};
pub use error::{Error, Result};
pub use key::KeyBuilder;
pub use layer::CacheLayer;
pub use policy::{CachePolicy, Invalidates, Scope};
pub use rfc9111::TargetedField;
pub use service::{CacheService, ResponseFuture};
pub use shared::{InvalidationHook, UserResolver};
pub use stats::StatsSnapshot;
pub use status::CACHE_STATUS;
pub use store::{
    Health, HealthReport, HealthStatus, Invalidation, MemoryStore, RemoteListener, Store,
    StoreStats,
};
