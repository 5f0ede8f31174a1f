//! Redis for [strata](https://docs.rs/strata): the shared layer behind the
//! in-process one, for several app instances and for Redis Cluster.
//!
//! - [`RedisStore`]: entries in Redis or Redis Cluster, with bounded
//!   indexes for invalidation by tag, user and URL, a short operation
//!   timeout and a circuit breaker.

mod breaker;
pub mod envelope;
mod store;

pub use store::{
    DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_OP_TIMEOUT, RedisStore, RedisStoreBuilder,
};
