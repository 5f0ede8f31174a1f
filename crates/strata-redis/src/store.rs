//! [`RedisStore`]: entries in Redis or Redis Cluster, with tag, user and
//! URL indexes that expire with the entries they name.
//!
//! # Layout
//!
//! ```text
//! {key}                      the entry's envelope, PX = ttl + stale
//! {prefix}~i:t:{tag}         SET of keys carrying the tag
//! {prefix}~i:u:{user}        SET of keys of the user
//! {prefix}~i:p:{path}        SET of keys under the URL path
//! ```
//!
//! Every index set is given at least the retention of the newest member it
//! received (`PEXPIRE`, only ever lengthened), so it never outlives the
//! entries it names by more than that and memory stays bounded without a
//! sweeper. Invalidating a tag (user, path) takes the set's members and
//! deletes the set in one Lua script on the set's own key, so two
//! invalidations never both miss a member and a member added later starts
//! a new set; then the members are deleted. Each command touches one key,
//! so every step is valid in Redis Cluster, where entries and sets live in
//! different slots. Prefix and clear-all invalidation walk the keyspace
//! with `SCAN ... MATCH` on every master; never `KEYS`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Script, Value};
use sha2::{Digest, Sha256};
use strata_core::key::{path_of, path_of_url};
use strata_core::store::{BoxFuture, Health, Invalidation, Store, StoreStats};
use strata_core::{Entry, Error};

use crate::breaker::Breaker;
use crate::envelope;

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

const INDEX_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1";

const INDEX_TAKE: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return members";

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
    index_take: Script,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    /// Whether an eviction risk was logged already (see `eviction_risk`).
    eviction_warned: std::sync::atomic::AtomicBool,
}

enum Conn {
    Single(ConnectionManager),
    Cluster(Box<ClusterConn>),
}

/// A cluster client and its connection, made on first use.
struct ClusterConn {
    client: ClusterClient,
    connection: tokio::sync::OnceCell<ClusterConnection>,
    connect_timeout: Duration,
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
        let conn = if self.cluster {
            let client = ClusterClient::builder(self.nodes.iter().cloned())
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.op_timeout)
                .retries(1)
                .build()
                .map_err(|e| Error::Config(format!("redis cluster {:?}: {e}", self.nodes)))?;
            Conn::Cluster(Box::new(ClusterConn {
                client,
                connection: tokio::sync::OnceCell::new(),
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
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                nodes: self.nodes,
                connect_timeout: self.connect_timeout,
                prefix: self.prefix,
                op_timeout: self.op_timeout,
                breaker: Breaker::new(self.breaker_threshold, self.breaker_cooldown),
                index_add: Script::new(INDEX_ADD),
                index_take: Script::new(INDEX_TAKE),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                eviction_warned: std::sync::atomic::AtomicBool::new(false),
                corrupt: AtomicU64::new(0),
            }),
        })
    }
}

/// A connection handle for one operation: a clone of the shared,
/// multiplexed connection.
#[derive(Clone)]
enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(conn) => conn.req_packed_command(cmd),
            Handle::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Handle::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(conn) => conn.get_db(),
            Handle::Cluster(conn) => conn.get_db(),
        }
    }
}

fn store_error(what: &str, error: impl fmt::Display) -> Error {
    Error::Store(format!("redis {what}: {error}"))
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
        RedisStoreBuilder {
            nodes,
            cluster,
            prefix: String::new(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
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

    async fn handle(&self) -> RedisResult<Handle> {
        match &self.inner.conn {
            Conn::Single(manager) => Ok(Handle::Single(manager.clone())),
            Conn::Cluster(cluster) => {
                let ClusterConn {
                    client,
                    connection,
                    connect_timeout,
                } = &**cluster;
                let connect = async {
                    match tokio::time::timeout(*connect_timeout, client.get_async_connection())
                        .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "cluster connect timed out",
                        ))),
                    }
                };
                let connection = connection.get_or_try_init(|| connect).await?;
                Ok(Handle::Cluster(connection.clone()))
            }
        }
    }

    /// Runs one operation through the breaker, bounded by the timeout.
    async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, Error>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = &self.inner;
        if !inner.breaker.allow() {
            inner.errors.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Store(format!("redis {what}: circuit open")));
        }
        // Connecting (the cluster connection is made on first use) has its
        // own bound; the operation itself gets `op_timeout`.
        let result = match tokio::time::timeout(inner.connect_timeout, self.handle()).await {
            Ok(Ok(handle)) => {
                let bound = inner.op_timeout.max(Duration::from_millis(1));
                match tokio::time::timeout(bound, op(handle)).await {
                    Ok(result) => result.map_err(|e| store_error(what, e)),
                    Err(_) => Err(store_error(what, "timed out")),
                }
            }
            Ok(Err(error)) => Err(store_error(what, error)),
            Err(_) => Err(store_error(what, "connect timed out")),
        };
        match &result {
            Ok(_) => inner.breaker.success(),
            Err(_) => {
                inner.errors.fetch_add(1, Ordering::Relaxed);
                inner.breaker.failure();
            }
        }
        result
    }

    fn index_key(&self, kind: char, value: &str) -> String {
        let mut key = String::with_capacity(self.inner.prefix.len() + 5 + value.len());
        key.push_str(&self.inner.prefix);
        key.push_str("~i:");
        key.push(kind);
        key.push(':');
        if self.inner.prefix.len() + 5 + value.len() > MAX_INDEX_KEY {
            key.push_str(&hex::encode(Sha256::digest(value.as_bytes())));
        } else {
            key.push_str(value);
        }
        key
    }

    fn index_keys(&self, entry: &Entry) -> Vec<String> {
        let mut keys: Vec<String> = entry.tags.iter().map(|t| self.index_key('t', t)).collect();
        if let Some(user) = &entry.user {
            keys.push(self.index_key('u', user));
        }
        keys.push(self.index_key('p', path_of(&entry.name)));
        keys
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

    /// Writes one entry and registers it in its indexes.
    pub async fn put_entry(&self, entry: &Entry) -> Result<(), Error> {
        let millis = u64::try_from(entry.retention().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let value = envelope::encode(entry);
        let indexes = self.index_keys(entry);
        let key = entry.key.as_str();
        let add = &self.inner.index_add;
        self.run("SET", |conn| async move {
            let mut set_conn = conn.clone();
            let set = async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(millis)
                    .query_async::<()>(&mut set_conn)
                    .await
            };
            let registrations: Vec<_> = indexes
                .into_iter()
                .map(|index| {
                    let mut conn = conn.clone();
                    let key = key.to_owned();
                    async move {
                        add.key(index)
                            .arg(key)
                            .arg(millis)
                            .invoke_async::<()>(&mut conn)
                            .await
                    }
                })
                .collect();
            let (set, registered) =
                futures_util::future::join(set, try_join_all(registrations)).await;
            set?;
            registered.map(|_| ())
        })
        .await
    }

    /// Deletes keys; returns how many existed.
    async fn delete_keys(&self, keys: &[String]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cluster = matches!(self.inner.conn, Conn::Cluster(_));
        let mut deleted = 0;
        for chunk in keys.chunks(DELETE_BATCH) {
            deleted += self
                .run("DEL", |conn| async move {
                    if cluster {
                        // One key per command: keys of a chunk live in many slots.
                        let deletions: Vec<_> = chunk
                            .iter()
                            .cloned()
                            .map(|key| {
                                let mut conn = conn.clone();
                                async move {
                                    redis::cmd("DEL")
                                        .arg(key)
                                        .query_async::<u64>(&mut conn)
                                        .await
                                }
                            })
                            .collect();
                        let counts = try_join_all(deletions).await?;
                        Ok(counts.into_iter().sum::<u64>())
                    } else {
                        let mut conn = conn;
                        redis::cmd("DEL")
                            .arg(chunk)
                            .query_async::<u64>(&mut conn)
                            .await
                    }
                })
                .await?;
        }
        Ok(deleted)
    }

    async fn take_index(&self, index: String) -> Result<u64, Error> {
        let take = &self.inner.index_take;
        let members: Vec<String> = self
            .run("take index", |mut conn| async move {
                take.key(&index).invoke_async(&mut conn).await
            })
            .await?;
        self.delete_keys(&members).await
    }

    /// The masters to scan: the one server, or every master of the cluster.
    async fn scan_targets(&self) -> Result<Vec<Option<(String, u16)>>, Error> {
        if matches!(self.inner.conn, Conn::Single(_)) {
            return Ok(vec![None]);
        }
        let nodes: String = self
            .run("CLUSTER NODES", |mut conn| async move {
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        // A walk that skips a shard would leave its keys behind and still
        // report success: refuse it, so the invalidation is kept and
        // replayed once every shard answers.
        let masters = masters_of(&nodes).map_err(|unreached| {
            self.inner.errors.fetch_add(1, Ordering::Relaxed);
            Error::Store(format!("redis SCAN: {unreached}"))
        })?;
        Ok(masters.into_iter().map(Some).collect())
    }

    /// Deletes every key matching `pattern` (and `keep`), walking with SCAN.
    async fn scan_delete(&self, pattern: &str, keep: impl Fn(&str) -> bool) -> Result<u64, Error> {
        let mut deleted = 0;
        for target in self.scan_targets().await? {
            let mut cursor: u64 = 0;
            loop {
                let target = target.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .run("SCAN", |mut conn| async move {
                        let mut scan = redis::cmd("SCAN");
                        scan.arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000);
                        match (&mut conn, target) {
                            (Handle::Cluster(cluster), Some((host, port))) => {
                                let routing =
                                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                        host,
                                        port,
                                    });
                                let value = cluster.route_command(scan, routing).await?;
                                Ok(redis::from_redis_value(value)?)
                            }
                            _ => scan.query_async(&mut conn).await,
                        }
                    })
                    .await?;
                let keys: Vec<String> = keys.into_iter().filter(|key| keep(key)).collect();
                deleted += self.delete_keys(&keys).await?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Drops what `what` names.
    pub async fn invalidate_entries(&self, what: &Invalidation) -> Result<u64, Error> {
        let prefix = &self.inner.prefix;
        match what {
            Invalidation::Key(key) => self.delete_keys(std::slice::from_ref(key)).await,
            Invalidation::Url(url) => {
                self.take_index(self.index_key('p', &path_of_url(url)))
                    .await
            }
            Invalidation::Tag(tag) => self.take_index(self.index_key('t', tag)).await,
            Invalidation::Tags(tags) => {
                let mut total = 0;
                for tag in tags {
                    total += self.take_index(self.index_key('t', tag)).await?;
                }
                Ok(total)
            }
            Invalidation::User(user) => self.take_index(self.index_key('u', user)).await,
            Invalidation::Prefix(name) => {
                let http = format!("{}http:{}*", glob_escape(prefix), glob_escape(name));
                let values = format!("{}{}*", glob_escape(prefix), glob_escape(name));
                // The value walk must not reach HTTP entries or index sets
                // that merely start with the same letters (`"h"` would
                // otherwise match every `http:` key), as the memory store,
                // which matches names, would not.
                let http_keys = format!("{prefix}http:");
                let index_keys = format!("{prefix}~");
                let is_value =
                    |key: &str| !key.starts_with(&http_keys) && !key.starts_with(&index_keys);
                Ok(self.scan_delete(&http, |_| true).await?
                    + self.scan_delete(&values, is_value).await?)
            }
            Invalidation::All => {
                self.scan_delete(&format!("{}*", glob_escape(prefix)), |_| true)
                    .await
            }
            other => Err(Error::Store(format!(
                "redis: unsupported invalidation {other:?}"
            ))),
        }
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

    /// Probes Redis directly (past the breaker) with a write: a short-lived
    /// key under the prefix, so a Redis that answers but refuses writes
    /// (`maxmemory` reached under `noeviction`, a read-only replica, an
    /// ACL) is reported as failing, as it is for the cache. A success
    /// closes the breaker.
    pub async fn probe(&self) -> Health {
        let started = Instant::now();
        let key = format!("{}~health", self.inner.prefix);
        let ping = async {
            let mut conn = self.handle().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg("1")
                .arg("PX")
                .arg(1000)
                .query_async::<()>(&mut conn)
                .await
        };
        let result = tokio::time::timeout(
            self.inner.op_timeout.max(Duration::from_millis(1)) * 4,
            ping,
        )
        .await;
        let latency = started.elapsed();
        let error = match result {
            Ok(Ok(_)) => {
                self.inner.breaker.success();
                self.eviction_risk().await
            }
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("timed out".to_owned()),
        };
        Health {
            layer: "redis",
            ok: error.is_none(),
            latency,
            error,
        }
    }
}

impl RedisStore {
    /// Why Redis may evict what invalidation relies on, if it may: with a
    /// `maxmemory` and any `maxmemory-policy` but `noeviction`, Redis can
    /// evict the index sets (they are rarely read) and keep the entries
    /// they list, and an invalidation then misses those entries. `None`
    /// when the settings are safe, or cannot be read (`CONFIG` disabled,
    /// as on some managed services).
    async fn eviction_risk(&self) -> Option<String> {
        let read = async {
            let mut conn = self.handle().await?;
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory")
                .arg("maxmemory-policy")
                .query_async::<Vec<String>>(&mut conn)
                .await
        };
        let bound = self.inner.op_timeout.max(Duration::from_millis(1)) * 4;
        let Ok(Ok(settings)) = tokio::time::timeout(bound, read).await else {
            return None;
        };
        let risk = eviction_risk(&settings);
        if let Some(risk) = &risk
            && !self.inner.eviction_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("{risk}");
        }
        risk
    }
}

/// See [`RedisStore::eviction_risk`]: `settings` is the reply of `CONFIG
/// GET maxmemory maxmemory-policy`, names and values in turn.
fn eviction_risk(settings: &[String]) -> Option<String> {
    let get = |name: &str| {
        settings
            .chunks(2)
            .find(|pair| pair[0].eq_ignore_ascii_case(name))
            .and_then(|pair| pair.get(1))
    };
    let limited = get("maxmemory").is_some_and(|bytes| bytes.trim() != "0");
    let policy = get("maxmemory-policy")?;
    (limited && policy != "noeviction").then(|| {
        format!(
            "maxmemory-policy {policy} may evict the invalidation index sets, and an \
             invalidation then misses their entries: use noeviction (or no maxmemory) \
             for the cache's Redis"
        )
    })
}

/// `host:port` of every master in `CLUSTER NODES` output that answers,
/// when together they serve every slot; otherwise why not (slots whose
/// master is failing or suspected of failing, or that no master serves
/// during a failover). A failed master that serves no slot any more (its
/// replica took over) is left out and does not count.
fn masters_of(nodes: &str) -> Result<Vec<(String, u16)>, String> {
    const SLOTS: usize = 16384;
    let mut served = vec![false; SLOTS];
    let mut masters = Vec::new();
    let mut failing = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(flags) = fields.get(2) else {
            continue;
        };
        if !flags.split(',').any(|flag| flag == "master") {
            continue;
        }
        let address = fields
            .get(1)
            .and_then(|field| field.split('@').next())
            .unwrap_or_default();
        if flags.contains("fail") {
            failing.push(address.to_owned());
            continue;
        }
        let Some((host, port)) = address.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        // Slot ranges follow the 8 fixed fields; `[...]` entries are
        // slots being migrated, served by this master until they move.
        for range in fields
            .iter()
            .skip(8)
            .filter(|range| !range.starts_with('['))
        {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(first), Ok(last)) = (first.parse::<usize>(), last.parse::<usize>()) {
                for slot in served.iter_mut().take(last.min(SLOTS - 1) + 1).skip(first) {
                    *slot = true;
                }
            }
        }
        masters.push((host.to_owned(), port));
    }
    match served.iter().position(|served| !served) {
        Some(slot) if failing.is_empty() => Err(format!("slot {slot} has no master that answers")),
        Some(slot) => Err(format!(
            "slot {slot} has no master that answers (failing: {})",
            failing.join(", ")
        )),
        None => Ok(masters),
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::masters_of;

    const HEALTHY: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
r1 127.0.0.1:7003@17003 slave a1 0 0 1 connected
";

    #[test]
    fn every_master_is_walked_when_all_slots_are_served() {
        assert_eq!(
            masters_of(HEALTHY).unwrap(),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }

    #[test]
    fn a_failing_master_or_unserved_slots_refuse_the_walk() {
        let failing = HEALTHY.replace(
            "a2 127.0.0.1:7001@17001 master",
            "a2 127.0.0.1:7001@17001 master,fail",
        );
        let error = masters_of(&failing).unwrap_err();
        assert!(error.contains("7001") && error.contains("fail"), "{error}");
        let suspected = HEALTHY.replace(
            "a3 127.0.0.1:7002@17002 master",
            "a3 127.0.0.1:7002@17002 master,fail?",
        );
        assert!(masters_of(&suspected).is_err());
        // Mid-failover: the failed master is gone from the list, its slots
        // not yet taken over.
        let uncovered: String = HEALTHY
            .lines()
            .filter(|line| !line.starts_with("a2"))
            .map(|line| format!("{line}\n"))
            .collect();
        let error = masters_of(&uncovered).unwrap_err();
        assert!(error.contains("5461"), "{error}");
        // A slot being migrated is still served by its master.
        let migrating = HEALTHY.replace("0-5460", "0-5459 5460 [5460->-a2]");
        assert!(masters_of(&migrating).is_ok());
    }
}

/// Escapes the glob characters of `text` for `SCAN ... MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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

#[cfg(test)]
mod eviction_tests {
    use super::eviction_risk;

    fn settings(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_noeviction_or_no_limit_is_safe() {
        for (maxmemory, policy, risky) in [
            ("0", "allkeys-lru", false),
            ("104857600", "noeviction", false),
            ("104857600", "allkeys-lru", true),
            ("104857600", "volatile-lru", true),
            ("104857600", "allkeys-random", true),
            ("104857600", "volatile-ttl", true),
        ] {
            let risk = eviction_risk(&settings(&[
                "maxmemory",
                maxmemory,
                "maxmemory-policy",
                policy,
            ]));
            assert_eq!(risk.is_some(), risky, "{maxmemory} {policy}");
            if let Some(risk) = risk {
                assert!(
                    risk.contains(policy) && risk.contains("noeviction"),
                    "{risk}"
                );
            }
        }
        assert_eq!(eviction_risk(&[]), None, "unreadable: unknown, not failing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_read_from_cluster_nodes_and_a_failed_one_without_slots_is_left_out() {
        // a4 failed and its replica a3 took its slots over.
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7003@17003 master - 0 0 4 connected 10923-16383
a4 127.0.0.1:7004@17004 master,fail - 0 0 3 disconnected
";
        assert_eq!(
            masters_of(nodes).unwrap(),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002),
                ("127.0.0.1".to_owned(), 7003)
            ]
        );
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
