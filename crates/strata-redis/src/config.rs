//! From a [`Config`] to a store: memory alone, or memory in front of Redis.

use std::sync::Arc;
use std::time::Duration;

use strata_core::{Config, Error, MemoryStore, Store};

use crate::{RedisStore, TieredStore};

/// The store `config` asks for: with `use_redis` (`USE_REDIS_CACHE=true`),
/// a [`TieredStore`] of a memory store in front of Redis at `redis_url`, or
/// of Redis Cluster through `redis_cluster_urls`; otherwise the memory store
/// alone. Keys and the bus live under the config's `{app}:{env}:` prefix.
/// Does not wait for Redis: an app starts while Redis is down, and serves
/// from its service until Redis answers. Call it inside a tokio runtime.
///
/// ```no_run
/// # async fn run() -> Result<(), strata::Error> {
/// let config = strata::Config::from_env()?;
/// let store = strata::redis::store_from_config(&config)?;
/// let cache = config.builder().store(store).build();
/// # let _ = cache; Ok(()) }
/// ```
pub fn store_from_config(config: &Config) -> Result<Arc<dyn Store>, Error> {
    let memory = MemoryStore::new(config.memory_bytes);
    if !config.use_redis {
        return Ok(Arc::new(memory));
    }
    let builder = if config.redis_cluster_urls.is_empty() {
        let url = config.redis_url.as_deref().ok_or_else(|| {
            Error::Config("use_redis is on but no Redis URL is configured".to_owned())
        })?;
        RedisStore::standalone(url)
    } else {
        RedisStore::cluster(config.redis_cluster_urls.iter().cloned())
    };
    let redis = builder
        .prefix(config.key_prefix())
        .op_timeout(Duration::from_millis(config.redis_timeout_ms.max(1)))
        .build()?;
    let bound = Duration::from_millis(config.staleness_bound_ms);
    Ok(Arc::new(TieredStore::with_staleness_bound(
        memory, redis, bound,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bound_ms: u64) -> Config {
        Config {
            use_redis: true,
            redis_url: Some("redis://127.0.0.1:1/".to_owned()),
            staleness_bound_ms: bound_ms,
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn the_staleness_bound_comes_from_the_config() {
        assert!(store_from_config(&config(1500)).is_ok());
        let Err(error) = store_from_config(&config(5)) else {
            panic!("a 5 ms bound was taken");
        };
        assert!(error.to_string().contains("staleness bound"), "{error}");
    }
}
