//! [`RedisStore`]: entries in Redis or Redis Cluster, with tag, user and
//! URL-path indexes that track the entries they name.
//!
//! # Layout
//!
//! ```text
//! {key}                          the entry's envelope, PX = ttl + stale
//! {prefix}~i:{t:tag}             ZSET of keys carrying the tag, scored by expiry
//! {prefix}~i:{u:user}            ZSET of keys of the user
//! {prefix}~i:{p:path}            ZSET of keys under the URL path
//! {prefix}~i:{t:tag}~taking      an index being invalidated (same slot)
//! ```
//!
//! An entry is written first and registered in its indexes second, so an
//! index can name an entry that is gone (harmless) but an entry stored
//! without its indexes is deleted again at once (see [`write`]). Each
//! registration prunes members that have expired, and the index lives as
//! long as its longest-lived member: index memory tracks live entries with
//! no sweeper. Invalidating a tag (user, path) claims the index and drains
//! it in chunks, in steps that a retry can repeat (see [`index`]). Each
//! command touches one slot, so every step is valid in Redis Cluster, where
//! entries and indexes live in different slots. Prefix and clear-all
//! invalidation walk the keyspace with `SCAN ... MATCH` on every master;
//! never `KEYS`.
//!
//! # What Redis must be configured with
//!
//! Invalidation relies on the indexes: a Redis that evicts them under
//! memory pressure (`maxmemory` with any `maxmemory-policy` but
//! `noeviction`) keeps entries no invalidation can reach. Use
//! `noeviction` with a `maxmemory` (writes then fail, and are counted, once
//! it is full; nothing is kept unreachable) or no `maxmemory`. The health
//! probe reports any other setting.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::Script;
use strata_core::store::{BoxFuture, Health, Invalidation, Store, StoreStats};
use strata_core::{Entry, Error};

use crate::breaker::Breaker;
use crate::envelope;

mod builder;
mod conn;
mod health;
mod index;
mod invalidate;
mod walk;
mod write;

pub use builder::RedisStoreBuilder;
use conn::{ClusterConn, Conn, Failed, Handle};

/// The default bound on one Redis operation: 50 ms. A slower answer is a
/// miss (and counts towards opening the circuit breaker).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(50);
/// The default bound on (re)connecting: 250 ms.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Failures in a row that open the circuit breaker, by default.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// How long the breaker stays open before it lets a probe through.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(1);

/// Index keys longer than this are hashed.
const MAX_INDEX_KEY: usize = 200;
/// Keys deleted per command or in flight at once.
const DELETE_BATCH: usize = 256;

/// Entries in Redis (standalone) or Redis Cluster.
///
/// Built lazily: `build` does not connect, so an app starts while Redis is
/// down; the first operations connect (within the connect timeout), and a
/// lost connection is re-established on its own. Every operation is bounded
/// by the operation timeout, and a run of failures opens a circuit breaker
/// that makes later calls fail at once until a probe succeeds. Failures are
/// errors to the caller (the cache layer turns them into misses).
///
/// Cloning is cheap and shares the connection, which is multiplexed: no
/// mutex around it, concurrent requests pipeline on one socket.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    nodes: Vec<String>,
    connect_timeout: Duration,
    prefix: String,
    op_timeout: Duration,
    breaker: Breaker,
    index_add: Script,
    index_claim: Script,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    /// The last error an operation met, for health reports.
    last_error: std::sync::Mutex<Option<String>>,
    /// Whether an eviction risk was logged already (see `eviction_risk`).
    eviction_warned: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner.conn {
            Conn::Single(_) => "standalone",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("kind", &kind)
            .field("prefix", &self.inner.prefix)
            .field("op_timeout", &self.inner.op_timeout)
            .field("breaker_open", &self.inner.breaker.is_open())
            .finish()
    }
}

impl RedisStore {
    /// A standalone Redis at `url` (`redis://host:port/db`).
    pub fn standalone(url: &str) -> RedisStoreBuilder {
        Self::builder(vec![url.to_owned()], false)
    }

    /// A Redis Cluster reached through any of these node URLs.
    pub fn cluster<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder(nodes.into_iter().map(Into::into).collect(), true)
    }

    fn builder(nodes: Vec<String>, cluster: bool) -> RedisStoreBuilder {
        RedisStoreBuilder::new(nodes, cluster)
    }

    /// Whether the circuit breaker is open (Redis considered unreachable).
    pub fn is_unavailable(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// Values found that were not strata envelopes (or of an unknown
    /// version): each was deleted and read as a miss.
    pub fn corrupt_values(&self) -> u64 {
        self.inner.corrupt.load(Ordering::Relaxed)
    }

    /// Reads and decodes one entry; a value that is not an envelope is
    /// deleted and read as a miss.
    pub async fn get_entry(&self, key: &str) -> Result<Option<Arc<Entry>>, Error> {
        let raw: Option<Vec<u8>> = self
            .run("GET", |mut conn| async move {
                redis::cmd("GET").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(self.decode(key, raw).await)
    }

    /// Like [`get_entry`](Self::get_entry), with how long Redis will still
    /// keep the entry, read in the same round trip (`GET` and `PTTL` in one
    /// pipeline on the key's node), so a copy kept in process memory can be
    /// made to expire no later than this one.
    pub async fn get_entry_with_ttl(
        &self,
        key: &str,
    ) -> Result<Option<(Arc<Entry>, Duration)>, Error> {
        let (raw, pttl): (Option<Vec<u8>>, i64) = self
            .run("GET", |mut conn| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(key)
                    .cmd("PTTL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let remaining = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
        Ok(self.decode(key, raw).await.map(|entry| (entry, remaining)))
    }

    async fn decode(&self, key: &str, raw: Option<Vec<u8>>) -> Option<Arc<Entry>> {
        let Some(raw) = raw else {
            self.inner.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match envelope::decode_bytes(Bytes::from(raw)) {
            Ok(entry) if entry.key == key => {
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                Some(Arc::new(entry))
            }
            Ok(_) | Err(_) => {
                self.inner.corrupt.fetch_add(1, Ordering::Relaxed);
                self.inner.misses.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("deleting a value that is not a strata entry");
                let _ = self.delete_keys(&[key.to_owned()]).await;
                None
            }
        }
    }

    /// Publishes `payload` on `channel` (through the breaker and timeout).
    pub(crate) async fn publish(&self, channel: &str, payload: &str) -> Result<(), Error> {
        self.run("PUBLISH", |mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// The node URLs this store was built with.
    pub(crate) fn nodes(&self) -> &[String] {
        &self.inner.nodes
    }

    /// The key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The connect timeout.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// Figures this store counts itself.
    pub fn snapshot(&self) -> StoreStats {
        let inner = &self.inner;
        StoreStats {
            layer: "redis",
            entries: None,
            bytes: None,
            capacity_bytes: None,
            hits: Some(inner.hits.load(Ordering::Relaxed)),
            misses: Some(inner.misses.load(Ordering::Relaxed)),
            errors: Some(inner.errors.load(Ordering::Relaxed)),
            evictions: 0,
            expirations: 0,
        }
    }
}

impl Store for RedisStore {
    fn key_prefix(&self) -> Option<&str> {
        Some(self.prefix())
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        Box::pin(self.get_entry(key))
    }

    fn put(&self, entry: Arc<Entry>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.put_entry(&entry).await })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move { Ok(self.delete_keys(&[key.to_owned()]).await? > 0) })
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(self.invalidate_entries(what))
    }

    fn stats(&self) -> Vec<StoreStats> {
        vec![self.snapshot()]
    }

    fn health(&self) -> BoxFuture<'_, Vec<Health>> {
        Box::pin(async move { vec![self.probe().await] })
    }
}
