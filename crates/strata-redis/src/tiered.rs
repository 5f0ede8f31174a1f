//! [`TieredStore`]: process memory (L1) in front of Redis (L2), kept
//! coherent across instances by an invalidation bus on Redis pub/sub.
//!
//! # Coherence
//!
//! Every invalidation made through this store drops the matching entries
//! from its L1 and from Redis, then is published on the channel
//! `{prefix}~bus`. Every other instance subscribed to the channel tells its
//! cache, which fences the fills the invalidation names (only those), then
//! drops the matching entries from its own L1. If some of those fills were
//! writing, or one it names was written to Redis lately (within twice the
//! staleness bound, at least 2 s), the write may have landed after the
//! other instance's removal: the instance applies the invalidation to
//! Redis and L1 once more (after the fills finish), and replays it until
//! Redis takes it.
//!
//! An instance trusts its L1 only while its bus is confirmed: every
//! `bound / 4` it publishes a heartbeat on the channel, and it uses L1 only
//! while one of its own beats, sent less than `bound - bound / 4` ago, has
//! come back through its subscription. Pub/sub on one Redis node delivers
//! in order, so such a beat proves every message Redis took before it was
//! handled. Until the first beat comes back, and from the moment the
//! subscription is lost (the connection drops, Redis restarts) until it is
//! back, the instance flushes its L1 and serves neither from it nor into
//! it: every lookup goes to Redis (or, if Redis is down too, to the
//! service). On resubscribing it flushes again, since messages sent
//! meanwhile are lost. A stall (Redis paused or busy: the subscription
//! stays connected but nothing flows) stops the beats too: L1 goes unused
//! when the lease runs out, and is used again, without a flush, when the
//! beats come back behind the delayed messages. The `bus` health layer is
//! degraded while the bus is unconfirmed.
//!
//! On Redis Cluster the bus is sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`,
//! Redis 7): the channel lives on the master of its slot, which delivers
//! in order without a hop over the cluster bus; when the slot moves (a
//! failover), the subscriber follows it and flushes, as on a reconnect.
//!
//! **Staleness bound** (1 s by default, see
//! [`TieredStore::with_staleness_bound`]). Once an invalidation's publish
//! has returned, no instance serves what it names from L1 for longer than
//! the bound, whatever happens to Redis or the network in between:
//! usually for the pub/sub delivery time (one Redis hop, well under a
//! millisecond on a LAN), and at most until the lease of an instance that
//! stopped hearing the bus runs out. The bound assumes the writer can
//! publish: a writer whose publish is refused or times out reports it in
//! its `invalidations` health and resends it until Redis takes it, and
//! other instances may serve their copies until then. It also assumes the
//! tokio runtime runs the heartbeat task roughly on time (the watchdog
//! runs once per `bound / 4`). L1 copies never outlive the L2 entry they
//! came from: a promotion reads the entry's remaining Redis TTL in the
//! same round trip and keeps the copy no longer.
//!
//! An invalidation Redis does not take (unreachable, stalled, or its
//! answer lost) is kept and replayed every 100 ms, the whole backlog at
//! once, until Redis takes it, then published again; until then this
//! instance reads nothing from Redis. Others can read what it names from
//! Redis until the replay, about 100 ms after Redis answers again.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use strata_core::store::{BoxFuture, Health, Invalidation, RemoteListener, Store, StoreStats};
use strata_core::{Entry, Error, MemoryStore};
use tokio::task::JoinHandle;

use crate::store::RedisStore;

mod bus;
mod heartbeat;
mod recent;
mod replay;
mod shard;

/// Memory in front of Redis, coherent across instances. Cloning is cheap.
///
/// ```no_run
/// # async fn run() -> Result<(), strata::Error> {
/// use std::sync::Arc;
/// use strata::{Cache, MemoryStore};
/// use strata::redis::{RedisStore, TieredStore};
///
/// let prefix = "thebot:production:";
/// let redis = RedisStore::standalone("redis://127.0.0.1:6379/1").prefix(prefix).build()?;
/// let tiered = TieredStore::new(MemoryStore::new(256 << 20), redis)?;
/// let cache = Cache::builder().prefix("thebot", "production").store(Arc::new(tiered)).build();
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TieredStore {
    inner: Arc<Inner>,
}

struct Inner {
    l1: MemoryStore,
    l2: RedisStore,
    channel: String,
    instance: String,
    /// Whether the bus is confirmed (see `heartbeat`), so L1 may be used.
    trusted: AtomicBool,
    /// The bus's lease and sessions.
    bus: bus::Link,
    heartbeat: OnceLock<JoinHandle<()>>,
    /// Moves before every removal from L1 (invalidations, local or from
    /// the bus, and flushes), so a promotion that read Redis before one
    /// can tell and take its copy back out.
    epoch: AtomicU64,
    listener: OnceLock<RemoteListener>,
    subscriber: OnceLock<JoinHandle<()>>,
    /// Invalidations Redis did not take (it was unreachable): replayed by
    /// a background task until it does. While any is pending, this
    /// instance does not read Redis, which may still hold what they name.
    pending: Mutex<Vec<Invalidation>>,
    /// Invalidations Redis took but whose publish failed: the other
    /// instances have not heard of them. Resent by the replay task.
    unpublished: Mutex<Vec<Invalidation>>,
    replayer: OnceLock<JoinHandle<()>>,
    /// Writes Redis took lately, for remote invalidations they may have
    /// raced (see `recent`).
    recent: recent::Recent,
    l1_hits: AtomicU64,
    l1_misses: AtomicU64,
    received: AtomicU64,
    published: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in [
            self.subscriber.get(),
            self.replayer.get(),
            self.heartbeat.get(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
    }
}

impl fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredStore")
            .field("l1", &self.inner.l1)
            .field("l2", &self.inner.l2)
            .field("channel", &self.inner.channel)
            .field("subscribed", &self.is_subscribed())
            .finish()
    }
}

impl TieredStore {
    /// `l1` in front of `l2`, and a subscriber task on `l2`'s Redis that
    /// keeps the L1 coherent, with the default staleness bound (1 s). Call
    /// it inside a tokio runtime.
    pub fn new(l1: MemoryStore, l2: RedisStore) -> Result<Self, Error> {
        Self::with_staleness_bound(l1, l2, heartbeat::DEFAULT_BOUND)
    }

    /// Like [`new`](Self::new), with the staleness bound: how long after an
    /// invalidation's publish another instance may still serve what it
    /// names from memory when the bus stalls or breaks (docs/ARCHITECTURE.md,
    /// "Several instances", states the conditions). Heartbeats go out every
    /// `bound / 4`; a shorter bound costs more of them. At least 20 ms.
    pub fn with_staleness_bound(
        l1: MemoryStore,
        l2: RedisStore,
        bound: Duration,
    ) -> Result<Self, Error> {
        if bound < heartbeat::MIN_BOUND {
            return Err(Error::Config(format!(
                "a staleness bound of {bound:?} is below the minimum of {:?}",
                heartbeat::MIN_BOUND
            )));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("a TieredStore must be built inside a tokio runtime".to_owned())
        })?;
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let instance = format!("{:016x}", hasher.finish());
        let store = Self {
            inner: Arc::new(Inner {
                channel: format!("{}~bus", l2.prefix()),
                l1,
                l2,
                instance,
                trusted: AtomicBool::new(false),
                bus: bus::Link::new(bound),
                heartbeat: OnceLock::new(),
                epoch: AtomicU64::new(0),
                listener: OnceLock::new(),
                subscriber: OnceLock::new(),
                pending: Mutex::new(Vec::new()),
                unpublished: Mutex::new(Vec::new()),
                replayer: OnceLock::new(),
                recent: recent::Recent::for_bound(bound),
                l1_hits: AtomicU64::new(0),
                l1_misses: AtomicU64::new(0),
                received: AtomicU64::new(0),
                published: AtomicU64::new(0),
            }),
        };
        let task = runtime.spawn(bus::subscribe(Arc::downgrade(&store.inner)));
        let _ = store.inner.subscriber.set(task);
        let task = runtime.spawn(replay::replay(Arc::downgrade(&store.inner)));
        let _ = store.inner.replayer.set(task);
        let every = heartbeat::interval(bound);
        let task = runtime.spawn(heartbeat::heartbeat(Arc::downgrade(&store.inner), every));
        let _ = store.inner.heartbeat.set(task);
        Ok(store)
    }

    /// Invalidations this instance holds that Redis has not taken yet, or
    /// that the other instances have not heard of yet (see the module
    /// docs); they are retried in the background.
    pub fn queued_invalidations(&self) -> usize {
        let (queued, unsent) = self.inner.queued();
        queued + unsent
    }

    /// Whether L1 is in use: the bus subscription is alive and one of this
    /// instance's heartbeats came back within the staleness bound.
    pub fn is_subscribed(&self) -> bool {
        self.inner.trusted.load(Ordering::Acquire)
    }

    /// The staleness bound this store was built with.
    pub fn staleness_bound(&self) -> Duration {
        self.inner.bus.bound
    }

    /// The in-process layer.
    pub fn memory(&self) -> &MemoryStore {
        &self.inner.l1
    }

    /// The Redis layer.
    pub fn redis(&self) -> &RedisStore {
        &self.inner.l2
    }

    /// Waits until L1 is in use (see [`is_subscribed`](Self::is_subscribed)),
    /// up to `timeout`; returns whether it is.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_subscribed() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Tells the other instances; a publish that fails is resent by the
    /// replay task until one succeeds.
    async fn publish(&self, what: &Invalidation) {
        if !self.inner.send(what).await {
            self.inner.queue_unpublished(what.clone());
        }
    }
}

impl Store for TieredStore {
    fn get_local(&self, key: &str) -> Option<Arc<Entry>> {
        if !self.is_subscribed() {
            return None;
        }
        let found = self.inner.l1.get_entry(key);
        let counter = if found.is_some() {
            &self.inner.l1_hits
        } else {
            &self.inner.l1_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        Box::pin(async move {
            if let Some(entry) = self.get_local(key) {
                return Ok(Some(entry));
            }
            let epoch = self.inner.epoch.load(Ordering::SeqCst);
            let asked = Instant::now();
            if self.inner.has_pending() {
                // Redis may still hold what a failed invalidation names.
                return Ok(None);
            }
            let found = self.inner.l2.get_entry_with_ttl(key).await?;
            Ok(found.map(|(entry, remaining)| {
                // Redis measured `remaining` (in whole milliseconds) at some
                // point after `asked`: counted from `asked`, less a
                // millisecond for the rounding, the copy cannot outlive it.
                let keep = remaining.saturating_sub(asked.elapsed() + Duration::from_millis(1));
                if self.is_subscribed() && !keep.is_zero() {
                    self.inner.l1.put_entry_for(Arc::clone(&entry), keep);
                    if self.inner.epoch.load(Ordering::SeqCst) != epoch {
                        // Something was removed from L1 while Redis was
                        // read: this copy may be of it, and have landed
                        // after the removal. Take it back out.
                        self.inner.l1.delete_entry(key);
                    }
                }
                entry
            }))
        })
    }

    fn put(&self, entry: Arc<Entry>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let remote = match self.inner.l2.write_entry(&entry).await {
                Ok(()) => {
                    self.inner.recent.record(Arc::clone(&entry));
                    Ok(())
                }
                Err(failed) => {
                    if failed.stray {
                        // A copy Redis may hold that no index names: delete
                        // it before this instance reads Redis again.
                        self.inner.defer(Invalidation::Key(entry.key.clone()));
                    }
                    Err(failed.error)
                }
            };
            if !self.is_subscribed() {
                return remote;
            }
            self.inner.l1.put_entry(entry);
            // Held in memory: stored for this instance. A Redis failure is
            // counted in the redis layer's figures and logged.
            if let Err(error) = remote {
                tracing::warn!(%error, "entry kept in memory only");
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let local = self.inner.l1.delete_entry(key);
            let remote = self.inner.l2.delete(key).await?;
            Ok(local || remote)
        })
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(async move {
            // Redis first, then L1: a promotion that read Redis before the
            // removal either lands before the L1 removal (which takes it)
            // or sees the epoch move (and takes itself back out).
            let remote = self.inner.l2.invalidate_entries(what).await;
            self.inner.epoch.fetch_add(1, Ordering::SeqCst);
            let local = self.inner.l1.invalidate_now(what);
            match &remote {
                // Redis took it: the others must hear of it, now or later.
                Ok(_) => self.publish(what).await,
                // Redis did not: tell the others at once (best effort), and
                // the replay publishes it again once Redis takes it.
                Err(_) => {
                    self.inner.send(what).await;
                    self.inner.defer(what.clone());
                }
            }
            remote.map(|remote| remote.max(local))
        })
    }

    fn stats(&self) -> Vec<StoreStats> {
        let mut memory = self.inner.l1.snapshot();
        memory.hits = Some(self.inner.l1_hits.load(Ordering::Relaxed));
        memory.misses = Some(self.inner.l1_misses.load(Ordering::Relaxed));
        vec![memory, self.inner.l2.snapshot()]
    }

    fn health(&self) -> BoxFuture<'_, Vec<Health>> {
        Box::pin(async move {
            let mut health = self.inner.l1.health().await;
            health.push(self.inner.l2.probe().await);
            health.push(self.inner.bus_health());
            health.push(self.inner.queue_health());
            health
        })
    }

    fn set_remote_listener(&self, listener: RemoteListener) {
        let _ = self.inner.listener.set(listener);
    }

    fn key_prefix(&self) -> Option<&str> {
        Some(self.inner.l2.prefix())
    }
}
