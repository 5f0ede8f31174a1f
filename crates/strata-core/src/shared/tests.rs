//! The one door for writes and invalidations: fences through `put_all`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::entry::EntryKind;
use crate::store::MemoryStore;
use crate::store::{BoxFuture, Health, StoreStats};
use crate::{Cache, Error};

/// A memory store that counts writes.
#[derive(Debug)]
struct CountingStore {
    inner: MemoryStore,
    puts: AtomicUsize,
    /// How long a write takes before it lands (a slow remote store).
    put_delay: Duration,
}

impl Store for CountingStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
        self.inner.get(key)
    }

    fn put(&self, entry: Arc<Entry>) -> BoxFuture<'_, Result<(), Error>> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.put_delay).await;
            self.inner.put_entry(entry);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        self.inner.delete(key)
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation) -> BoxFuture<'a, Result<u64, Error>> {
        self.inner.invalidate(what)
    }

    fn stats(&self) -> Vec<StoreStats> {
        self.inner.stats()
    }

    fn health(&self) -> BoxFuture<'_, Vec<Health>> {
        self.inner.health()
    }
}

impl Default for CountingStore {
    fn default() -> Self {
        Self {
            inner: MemoryStore::new(1 << 20),
            puts: AtomicUsize::new(0),
            put_delay: Duration::ZERO,
        }
    }
}

fn value(cache: &Cache, name: &str, tags: &[&str]) -> Arc<Entry> {
    Arc::new(Entry {
        key: cache.handle().keys().value_key(name),
        name: name.to_owned(),
        user: None,
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        stored_at: SystemTime::now(),
        ttl: Duration::from_secs(60),
        stale: Duration::ZERO,
        kind: EntryKind::Value(Bytes::from_static(b"old")),
    })
}

#[tokio::test]
async fn a_fill_older_than_a_finished_invalidation_writes_nothing() {
    let store = Arc::new(CountingStore::default());
    let cache = Cache::builder().store(Arc::clone(&store) as _).build();
    let shared = &cache.shared;
    let entry = value(&cache, "k", &[]);

    let ticket = shared.fences.ticket_now();
    cache.handle().invalidate_key("k").await.unwrap();
    let written = shared.put_all(&[Arc::clone(&entry)], &ticket).await;
    assert_eq!(written, Written::Fenced);
    assert_eq!(store.puts.load(Ordering::SeqCst), 0, "not even briefly");
    assert!(store.inner.get_entry(&entry.key).is_none());

    let written = shared
        .put_all(std::slice::from_ref(&entry), &shared.fences.ticket_now())
        .await;
    assert_eq!(written, Written::Stored);
    assert_eq!(store.puts.load(Ordering::SeqCst), 1);
    assert!(store.inner.get_entry(&entry.key).is_some());
}

#[tokio::test]
async fn an_unrelated_invalidation_lets_the_fill_write() {
    let store = Arc::new(CountingStore::default());
    let cache = Cache::builder().store(Arc::clone(&store) as _).build();
    let shared = &cache.shared;
    let entry = value(&cache, "k", &["mine"]);
    let ticket = shared.fences.ticket_now();
    let handle = cache.handle();
    handle.invalidate_key("other").await.unwrap();
    handle.invalidate_tag("theirs").await.unwrap();
    handle.invalidate_url("/elsewhere/").await.unwrap();
    handle.invalidate_user("bob").await.unwrap();
    handle.invalidate_prefix("/x").await.unwrap();
    let written = shared.put_all(&[Arc::clone(&entry)], &ticket).await;
    assert_eq!(written, Written::Stored);
    assert!(store.inner.get_entry(&entry.key).is_some());
    handle.clear().await.unwrap();
    let written = shared.put_all(&[entry], &ticket).await;
    assert_eq!(written, Written::Fenced, "clear names everything");
}

#[tokio::test]
async fn an_invalidation_during_a_slow_write_waits_and_then_removes_it() {
    let store = Arc::new(CountingStore {
        put_delay: Duration::from_millis(50),
        ..CountingStore::default()
    });
    let cache = Cache::builder().store(Arc::clone(&store) as _).build();
    let entry = value(&cache, "k", &["t"]);
    let key = entry.key.clone();
    let shared = Arc::clone(&cache.shared);
    let ticket = shared.fences.ticket_now();
    let fill = tokio::spawn(async move { shared.put_all(&[entry], &ticket).await });
    // The fill has passed its fence and is inside the slow write.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(store.puts.load(Ordering::SeqCst), 1);
    // An unrelated invalidation does not wait for it.
    let unrelated = tokio::time::timeout(
        Duration::from_millis(30),
        cache.handle().invalidate_tag("other"),
    )
    .await;
    assert!(unrelated.is_ok(), "an unrelated invalidation must not wait");
    cache.handle().invalidate_tag("t").await.unwrap();
    assert!(
        store.inner.get_entry(&key).is_none(),
        "the old value must not be readable once invalidate_tag returned"
    );
    fill.await.unwrap();
    assert!(store.inner.get_entry(&key).is_none());
}
