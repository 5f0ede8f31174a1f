//! Redis for [strata](https://docs.rs/strata): the shared layer behind the
//! in-process one, for several app instances and for Redis Cluster.

pub mod envelope;
