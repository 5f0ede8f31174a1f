#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! Everything is under `strata::`: the cache, its policies and stores at
//! the top, with the default `axum` feature [`CachedRouter`]; the `redis`
//! feature adds [`redis`] (`strata::redis::TieredStore`, ...), the `admin`
//! feature adds [`admin`] (`strata::admin::router` and its endpoint
//! table), the `metrics` feature [`CacheHandle::record_metrics`], and the
//! `compression` feature gives [`compress`] its codings (gzip, br, zstd).
//! (The items live in the crates `strata-core`, `strata-redis` and
//! `strata-admin`; depend on `strata` and name them through it.)
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod router;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use router::{CachedRouter, CachedRouterFuture};
pub use strata_core::*;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use strata_redis as redis;

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
#[doc(inline)]
pub use strata_admin as admin;

/// The guides' examples, compiled and run as doctests of this crate: what
/// they show is what a project depending on `strata` alone can paste.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../docs/CACHING_STRATEGY.md")]
    struct CachingStrategy;

    #[doc = include_str!("../docs/FROM_DJANGO.md")]
    struct FromDjango;
}
