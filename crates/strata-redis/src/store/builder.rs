//! [`RedisStoreBuilder`]: the connection, timeouts and breaker of a
//! [`RedisStore`], made lazily.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use strata_core::Error;

use super::index::{INDEX_ADD, INDEX_CLAIM};
use super::{
    ClusterConn, Conn, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_OP_TIMEOUT, Inner, RedisStore,
};
use crate::breaker::Breaker;

/// Builds a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    nodes: Vec<String>,
    cluster: bool,
    prefix: String,
    op_timeout: Duration,
    connect_timeout: Duration,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
}

impl RedisStoreBuilder {
    pub(super) fn new(nodes: Vec<String>, cluster: bool) -> Self {
        Self {
            nodes,
            cluster,
            prefix: String::new(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
    }

    /// The cache's key prefix (`{app}:{env}:`, as
    /// [`KeyBuilder::prefix`](strata_core::KeyBuilder::prefix) gives it):
    /// index keys live under it, and prefix and clear-all invalidation only
    /// ever touch keys under it. Required: an empty prefix is refused.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on one operation (default [`DEFAULT_OP_TIMEOUT`]).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The bound on connecting (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Failures in a row that open the breaker, and how long it stays open
    /// (defaults [`DEFAULT_BREAKER_THRESHOLD`], [`DEFAULT_BREAKER_COOLDOWN`]).
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cooldown = cooldown;
        self
    }

    /// Builds the store without connecting. Call it inside a tokio runtime.
    pub fn build(self) -> Result<RedisStore, Error> {
        if self.prefix.is_empty() {
            return Err(Error::Config(
                "a RedisStore needs the cache's key prefix".to_owned(),
            ));
        }
        if self.cluster && empty_hash_tag(&self.prefix) {
            // Every key would then hash whole, and an index and the key it
            // is renamed to when taken would land in different slots.
            return Err(Error::Config(format!(
                "redis cluster prefix {:?}: its first `{{` is followed by `}}`, an empty hash tag",
                self.prefix
            )));
        }
        let conn = if self.cluster {
            let client = ClusterClient::builder(self.nodes.iter().cloned())
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.op_timeout)
                .retries(1)
                .build()
                .map_err(|e| Error::Config(format!("redis cluster {:?}: {e}", self.nodes)))?;
            Conn::Cluster(Box::new(ClusterConn {
                client,
                connection: std::sync::Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                connect_timeout: self.connect_timeout,
            }))
        } else {
            let url = self.nodes.first().cloned().unwrap_or_default();
            let client = redis::Client::open(url.as_str())
                .map_err(|e| Error::Config(format!("redis url {url:?}: {e}")))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.op_timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(200));
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| Error::Config(format!("redis {url:?}: {e}")))?;
            Conn::Single(manager)
        };
        let store = RedisStore {
            inner: Arc::new(Inner {
                conn,
                nodes: self.nodes,
                connect_timeout: self.connect_timeout,
                prefix: self.prefix,
                op_timeout: self.op_timeout,
                breaker: Breaker::new(self.breaker_threshold, self.breaker_cooldown),
                index_add: Script::new(INDEX_ADD),
                index_claim: Script::new(INDEX_CLAIM),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                last_error: std::sync::Mutex::new(None),
                eviction_warned: std::sync::atomic::AtomicBool::new(false),
                corrupt: AtomicU64::new(0),
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(RedisStore::check_at_start(Arc::downgrade(&store.inner)));
        }
        Ok(store)
    }
}

/// Whether a key starting with `prefix` has an empty hash tag (its first
/// `{` is directly followed by `}`), so Redis Cluster hashes it whole.
fn empty_hash_tag(prefix: &str) -> bool {
    prefix
        .find('{')
        .is_some_and(|open| prefix[open + 1..].starts_with('}'))
}

#[cfg(test)]
mod tests {
    use super::empty_hash_tag;

    #[test]
    fn empty_hash_tags_are_found() {
        assert!(empty_hash_tag("app{}:"));
        assert!(empty_hash_tag("{}{x}:"));
        assert!(!empty_hash_tag("app:"));
        assert!(!empty_hash_tag("{app}:"));
        assert!(!empty_hash_tag("app{:"));
        assert!(!empty_hash_tag("a{b}{}:"));
    }
}
