//! The in-process store, on moka.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::{BoxFuture, Health, Invalidation, Store, StoreStats};
use crate::entry::Entry;
use crate::error::Error;
use crate::key::path_of_url;

mod index;

use index::{Index, Keys, Label, labels, lock};

/// The default byte capacity of a [`MemoryStore`]: 256 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// How many housekeeping rounds [`Invalidation::All`] runs at most while
/// moka removes what it dropped: some 15,000 entries a round, so about
/// 9 million entries, or a minute.
const MAX_CLEAR_ROUNDS: usize = 600;

/// An in-process store on [moka](https://docs.rs/moka): bounded in bytes,
/// per-entry TTL, and indexes for invalidation by tag, user and URL.
///
/// Things worth knowing:
/// - capacity counts [`Entry::size`]: what an entry really costs in
///   process memory (body, header maps, keys, metadata, and the store's
///   own bookkeeping, about 2 KiB beside a body of 2 KiB), so a store of
///   256 MiB holds about 256 MiB of RSS, not 256 MiB of bodies;
/// - [`Invalidation::All`] returns once moka has dropped every entry (it
///   may take a few rounds of moka's housekeeping, about 100 ms for
///   15,000 entries each), so the memory is free and `entries` reads 0;
/// - moka evicts in the background, so for a moment after an insert the
///   store may hold a little more than its capacity; evictions and
///   expirations are counted when moka reports them;
/// - the tag, user and URL indexes drop a key when moka drops the entry,
///   whatever the reason, so they never outgrow the cache.
///
/// Cloning is cheap and shares the store.
///
/// ```
/// use strata::MemoryStore;
///
/// let store = MemoryStore::builder().max_bytes(64 * 1024 * 1024).build();
/// assert_eq!(store.capacity_bytes(), 64 * 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Keyed by `Arc<str>`: the index shares each key instead of copying it
    /// once per label, and a lookup by `&str` hashes the same bytes as before.
    cache: Cache<Arc<str>, Slot, foldhash::fast::RandomState>,
    index: Arc<Mutex<Index>>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
    /// Held across one insert and its registration, so that two puts of
    /// one key cannot register in the opposite order to their inserts
    /// (which would leave the loser's labels behind for good).
    puts: Mutex<()>,
    capacity: u64,
}

/// A cached entry and the id of the insert that put it there, so the
/// indexes can tell a replaced entry from its replacement.
#[derive(Debug, Clone)]
struct Slot {
    id: u64,
    entry: Arc<Entry>,
    /// How long moka keeps it from the insert.
    keep: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    evictions: AtomicU64,
    expirations: AtomicU64,
    /// Lookups through [`Store`] that found an entry (the cache's own;
    /// [`MemoryStore::get_entry`] does not count, so a store built on
    /// this one counts its lookups itself).
    hits: AtomicU64,
    /// Lookups through [`Store`] that found nothing.
    misses: AtomicU64,
}

struct RetentionExpiry;

impl Expiry<Arc<str>, Slot> for RetentionExpiry {
    fn expire_after_create(&self, _key: &Arc<str>, slot: &Slot, _now: Instant) -> Option<Duration> {
        Some(slot.keep)
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        slot: &Slot,
        _now: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.keep)
    }
}

/// Builds a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_bytes: u64,
}

impl MemoryStoreBuilder {
    /// The byte capacity (default [`DEFAULT_MEMORY_BYTES`]).
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let index: Arc<Mutex<Index>> = Arc::default();
        let counters: Arc<Counters> = Arc::default();
        let listener_index = Arc::clone(&index);
        let listener_counters = Arc::clone(&counters);
        let cache = Cache::builder()
            .max_capacity(self.max_bytes)
            .weigher(|_key: &Arc<str>, slot: &Slot| {
                u32::try_from(slot.entry.size()).unwrap_or(u32::MAX)
            })
            .expire_after(RetentionExpiry)
            .eviction_listener(move |key: Arc<Arc<str>>, slot: Slot, cause| {
                match cause {
                    RemovalCause::Size => {
                        listener_counters.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                    RemovalCause::Expired => {
                        listener_counters
                            .expirations
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                }
                unregister(&listener_index, &key, &slot);
            })
            // A randomly seeded fast hasher: keys are attacker-chosen URLs,
            // but SipHash costs a hit more than the lookup itself.
            .build_with_hasher(foldhash::fast::RandomState::default());
        MemoryStore {
            inner: Arc::new(Inner {
                cache,
                index,
                counters,
                next_id: AtomicU64::new(1),
                puts: Mutex::new(()),
                capacity: self.max_bytes,
            }),
        }
    }
}

/// Removes `key` from the labels of `slot`, unless a later insert under the
/// same key registered it again.
fn unregister(index: &Mutex<Index>, key: &str, slot: &Slot) {
    let mut index = lock(index);
    for (label, name) in labels(&slot.entry) {
        index.unregister(label, name, key, slot.id);
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self::builder().max_bytes(max_bytes).build()
    }

    /// A builder with the defaults.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_bytes: DEFAULT_MEMORY_BYTES,
        }
    }

    /// The byte capacity.
    pub fn capacity_bytes(&self) -> u64 {
        self.inner.capacity
    }

    /// Looks up `key` (synchronously).
    pub fn get_entry(&self, key: &str) -> Option<Arc<Entry>> {
        self.inner.cache.get(key).map(|slot| slot.entry)
    }

    /// Stores `entry` (synchronously) for its [`Entry::retention`].
    pub fn put_entry(&self, entry: Arc<Entry>) {
        let keep = entry.retention();
        self.put_entry_for(entry, keep);
    }

    /// Stores `entry` (synchronously), kept at most `keep` from now: a copy
    /// of an entry from a slower layer must not outlive the original.
    pub fn put_entry_for(&self, entry: Arc<Entry>, keep: Duration) {
        let keep = keep.min(entry.retention());
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let key: Arc<str> = Arc::from(entry.key.as_str());
        let slot = Slot { id, entry, keep };
        // Insert first, then register: an invalidation that takes a label
        // after this point finds the key; one that took it before was
        // fenced by the cache first, and the filler checked the fence.
        let _put = self
            .inner
            .puts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.inner.cache.insert(Arc::clone(&key), slot.clone());
        {
            let mut index = lock(&self.inner.index);
            for (label, name) in labels(&slot.entry) {
                index.register(label, name, &key, id);
            }
        }
        // Removed (evicted, expired, deleted) before it was registered: the
        // listener found nothing to unregister, so do it here. No other put
        // can have replaced it meanwhile, so absence means it is gone.
        if !self.inner.cache.contains_key(&key) {
            unregister(&self.inner.index, &key, &slot);
        }
    }

    /// Drops `key` (synchronously); `true` if it was there.
    pub fn delete_entry(&self, key: &str) -> bool {
        self.inner.cache.remove(key).is_some()
    }

    /// Drops what `what` names (synchronously); returns how many went.
    pub fn invalidate_now(&self, what: &Invalidation) -> u64 {
        match what {
            Invalidation::Key(key) => u64::from(self.delete_entry(key)),
            Invalidation::Url(url) => self.drop_label(Label::Path, &path_of_url(url)),
            Invalidation::Tag(tag) => self.drop_label(Label::Tag, tag),
            Invalidation::Tags(tags) => tags
                .iter()
                .map(|tag| self.drop_label(Label::Tag, tag))
                .sum(),
            Invalidation::User(user) => self.drop_label(Label::User, user),
            Invalidation::Prefix(prefix) => {
                let keys: Vec<Arc<Arc<str>>> = self
                    .inner
                    .cache
                    .iter()
                    .filter(|(_, slot)| slot.entry.name.starts_with(prefix.as_str()))
                    .map(|(key, _)| key)
                    .collect();
                keys.iter().filter(|key| self.delete_entry(key)).count() as u64
            }
            Invalidation::All => self.clear(),
        }
    }

    /// Drops every entry and returns once moka has let go of them, so that
    /// the memory is free and `entries` and `bytes` read zero (less what
    /// other threads stored meanwhile).
    fn clear(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        let count = self.inner.cache.entry_count();
        {
            // No put is between its insert and its registration here, so
            // every registered key is one that `invalidate_all` drops, and
            // the index can go at once; later puts register afresh.
            let _put = self
                .inner
                .puts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            self.inner.cache.invalidate_all();
            *lock(&self.inner.index) = Index::default();
        }
        // `invalidate_all` only hides the entries; moka removes them in its
        // housekeeping, which with an eviction listener stops after about
        // 100 ms a round (some 15,000 entries). Run rounds until none is
        // left, or until a round frees nothing (other threads filling the
        // store as fast as it empties), within a bound.
        let mut left = count;
        for _ in 0..MAX_CLEAR_ROUNDS {
            self.inner.cache.run_pending_tasks();
            let now = self.inner.cache.entry_count();
            if now == 0 || now >= left {
                break;
            }
            left = now;
        }
        count
    }

    fn drop_label(&self, label: Label, name: &str) -> u64 {
        // Take the key set out under the lock, remove outside it: removal
        // calls the eviction listener, which takes the lock itself.
        let keys = lock(&self.inner.index).take(label, name);
        let keys = keys.map(Keys::into_vec).unwrap_or_default();
        keys.iter().filter(|key| self.delete_entry(key)).count() as u64
    }

    /// Figures for this store, after moka has applied pending work, so the
    /// counts are exact as of the call.
    pub fn snapshot(&self) -> StoreStats {
        self.inner.cache.run_pending_tasks();
        StoreStats {
            layer: "memory",
            entries: Some(self.inner.cache.entry_count()),
            bytes: Some(self.inner.cache.weighted_size()),
            capacity_bytes: Some(self.inner.capacity),
            hits: Some(self.inner.counters.hits.load(Ordering::Relaxed)),
            misses: Some(self.inner.counters.misses.load(Ordering::Relaxed)),
            errors: None,
            evictions: self.inner.counters.evictions.load(Ordering::Relaxed),
            expirations: self.inner.counters.expirations.load(Ordering::Relaxed),
        }
    }

    /// How many label sets the invalidation index holds (for leak tests).
    #[doc(hidden)]
    pub fn index_len(&self) -> usize {
        self.inner.cache.run_pending_tasks();
        lock(&self.inner.index).len()
    }
}

impl Store for MemoryStore {
    fn get_local(&self, key: &str) -> Option<Arc<Entry>> {
        let found = self.get_entry(key);
        let counter = if found.is_some() {
            &self.inner.counters.hits
        } else {
            &self.inner.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        Box::pin(std::future::ready(Ok(self.get_local(key))))
    }

    fn put(&self, entry: Arc<Entry>) -> BoxFuture<'_, Result<(), Error>> {
        self.put_entry(entry);
        Box::pin(std::future::ready(Ok(())))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(std::future::ready(Ok(self.delete_entry(key))))
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(std::future::ready(Ok(self.invalidate_now(what))))
    }

    fn stats(&self) -> Vec<StoreStats> {
        vec![self.snapshot()]
    }

    fn health(&self) -> BoxFuture<'_, Vec<Health>> {
        let started = Instant::now();
        let _ = self.inner.cache.get("\u{0}strata-health-probe");
        let health = Health {
            layer: "memory",
            ok: true,
            latency: started.elapsed(),
            error: None,
        };
        Box::pin(std::future::ready(vec![health]))
    }
}

#[cfg(test)]
mod tests;
