#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! This facade re-exports [`strata_core`] (see its documentation for every
//! module) and, with the default `axum` feature, adds [`CachedRouter`];
//! the `redis` feature adds [`redis`] (`strata::redis::TieredStore`, ...),
//! the `admin` feature adds [`admin`] (`strata::admin::router`), and the
//! `compression` feature gives [`compress`] its codings (gzip, br, zstd).

#[cfg(feature = "axum")]
mod router;

#[cfg(feature = "axum")]
pub use router::{CachedRouter, CachedRouterFuture};
pub use strata_core::*;

/// Redis and Redis Cluster (feature `redis`): see [`strata_redis`].
#[cfg(feature = "redis")]
pub mod redis {
    pub use strata_redis::*;
}

/// JSON admin endpoints (feature `admin`): see [`strata_admin`].
#[cfg(feature = "admin")]
pub mod admin {
    pub use strata_admin::*;
}
