//! Redis for [strata](https://docs.rs/strata): the shared layer behind the
//! in-process one, for several app instances and for Redis Cluster.
//!
//! - [`RedisStore`]: entries in Redis or Redis Cluster, with bounded
//!   indexes for invalidation by tag, user and URL, a short operation
//!   timeout and a circuit breaker.
//! - [`TieredStore`]: process memory in front of Redis, kept coherent
//!   across instances by an invalidation bus on Redis pub/sub.
//! - [`store_from_config`]: the store a [`Config`](strata_core::Config)
//!   (`USE_REDIS_CACHE`, `REDIS_URL`, `REDIS_CLUSTER_URLS`) asks for.

mod breaker;
mod config;
pub mod envelope;
mod store;
mod tiered;

pub use config::store_from_config;
pub use store::{
    DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_OP_TIMEOUT, RedisStore, RedisStoreBuilder,
};
pub use tiered::TieredStore;
