//! The memory store: what each invalidation drops, what its indexes keep, and clearing.

use super::*;
use crate::entry::EntryKind;
use bytes::Bytes;
use std::time::SystemTime;

fn value(key: &str, name: &str, tags: &[&str], user: Option<&str>, body: usize) -> Arc<Entry> {
    Arc::new(Entry {
        key: key.to_owned(),
        name: name.to_owned(),
        user: user.map(str::to_owned),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        stored_at: SystemTime::now(),
        ttl: Duration::from_secs(60),
        stale: Duration::ZERO,
        kind: EntryKind::Value(Bytes::from(vec![b'x'; body])),
    })
}

#[test]
fn tag_user_url_and_prefix_invalidation_drop_exactly_their_entries() {
    let store = MemoryStore::new(1 << 20);
    store.put_entry(value("k1", "/a/?x=1", &["t1"], None, 1));
    store.put_entry(value("k2", "/a/", &["t2"], Some("u1"), 1));
    store.put_entry(value("k3", "/b/", &["t1", "t2"], Some("u2"), 1));
    store.put_entry(value("k4", "/bc/", &[], None, 1));

    assert_eq!(store.invalidate_now(&Invalidation::Tag("t1".into())), 2);
    assert!(store.get_entry("k1").is_none() && store.get_entry("k3").is_none());
    assert!(store.get_entry("k2").is_some());
    assert_eq!(store.invalidate_now(&Invalidation::User("u1".into())), 1);
    assert!(store.get_entry("k2").is_none());
    assert_eq!(store.invalidate_now(&Invalidation::Prefix("/b".into())), 1);
    assert!(store.get_entry("k4").is_none());
    assert_eq!(store.index_len(), 0);
}

#[test]
fn url_invalidation_covers_every_query_and_variant_of_a_path() {
    let store = MemoryStore::new(1 << 20);
    store.put_entry(value("k1", "/a/?x=1", &[], None, 1));
    store.put_entry(value("k2", "/a/", &[], Some("u"), 1));
    store.put_entry(value("k3", "/a/b", &[], None, 1));
    assert_eq!(
        store.invalidate_now(&Invalidation::Url("/a/?y=2".into())),
        2
    );
    assert!(store.get_entry("k3").is_some());
}

#[test]
fn replacing_an_entry_keeps_the_new_tags_indexed() {
    let store = MemoryStore::new(1 << 20);
    store.put_entry(value("k", "/a", &["t"], None, 1));
    store.put_entry(value("k", "/a", &["t"], None, 2));
    assert_eq!(store.invalidate_now(&Invalidation::Tag("t".into())), 1);
    assert!(store.get_entry("k").is_none());
}

#[test]
fn eviction_is_counted_and_indexes_do_not_leak() {
    let store = MemoryStore::new(64 * 1024);
    for i in 0..200 {
        store.put_entry(value(
            &format!("k{i}"),
            &format!("/p/{i}"),
            &["t"],
            Some("u"),
            2048,
        ));
    }
    let stats = store.snapshot();
    assert!(stats.bytes.unwrap() <= 64 * 1024, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    // Every key the index still names is in the cache: three labels each.
    assert_eq!(store.index_len() as u64, stats.entries.unwrap() * 3);
}

#[test]
fn concurrent_puts_of_one_key_leave_only_the_live_entry_indexed() {
    let store = MemoryStore::new(1 << 20);
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let store = store.clone();
            scope.spawn(move || {
                let tag = format!("t{thread}");
                for i in 0..1500 {
                    let key = format!("k{}", i % 8);
                    store.put_entry(value(&key, &format!("/{key}"), &[&tag], None, 8));
                }
            });
        }
    });
    // One tag and one path label per live entry, and no label naming
    // a key under a tag it no longer has.
    assert_eq!(
        store.index_len() as u64,
        2 * store.snapshot().entries.unwrap()
    );
    for thread in 0..8 {
        let tag = format!("t{thread}");
        let live = (0..8)
            .filter(|i| {
                store
                    .get_entry(&format!("k{i}"))
                    .is_some_and(|entry| entry.tags == [tag.clone()])
            })
            .count() as u64;
        assert_eq!(store.invalidate_now(&Invalidation::Tag(tag)), live);
    }
    assert_eq!(store.snapshot().entries, Some(0));
    assert_eq!(store.index_len(), 0);
}

#[test]
fn clear_returns_once_moka_has_let_go_of_every_entry() {
    // moka removes what `invalidate_all` hid in rounds of ~100 ms; one
    // round is far from enough for this many.
    const ENTRIES: usize = 50_000;
    let store = MemoryStore::new(1 << 30);
    for i in 0..ENTRIES {
        let tag = format!("t{}", i % 7);
        store.put_entry(value(
            &format!("k{i}"),
            &format!("/p/{i}"),
            &[&tag],
            None,
            8,
        ));
    }
    assert_eq!(store.snapshot().entries, Some(ENTRIES as u64));
    assert_eq!(store.invalidate_now(&Invalidation::All), ENTRIES as u64);
    // Read moka directly: `snapshot` would run another round first.
    assert_eq!(store.inner.cache.entry_count(), 0);
    assert_eq!(store.inner.cache.weighted_size(), 0);
    assert_eq!(lock(&store.inner.index).len(), 0);
    assert_eq!(store.snapshot().entries, Some(0));
    assert_eq!(store.snapshot().bytes, Some(0));

    // What is stored after the clear is indexed as usual.
    store.put_entry(value("k1", "/p/1", &["t1"], None, 8));
    assert_eq!(store.invalidate_now(&Invalidation::Tag("t1".into())), 1);
    assert_eq!(store.index_len(), 0);
}

#[test]
fn labels_of_one_key_and_of_many_are_kept_and_dropped_alike() {
    let store = MemoryStore::new(1 << 20);
    store.put_entry(value("k1", "/a", &["one", "many"], Some("u"), 1));
    store.put_entry(value("k2", "/b", &["many"], None, 1));
    store.put_entry(value("k3", "/c", &["many"], Some("u"), 1));
    // k1: 4 labels, k2: 2, k3: 3.
    assert_eq!(store.index_len(), 9);
    store.delete_entry("k2");
    assert_eq!(store.index_len(), 7);
    assert_eq!(store.invalidate_now(&Invalidation::Tag("many".into())), 2);
    assert_eq!(store.index_len(), 0);
    assert_eq!(store.snapshot().entries, Some(0));
}

#[test]
fn clear_drops_everything_and_the_index() {
    let store = MemoryStore::new(1 << 20);
    store.put_entry(value("k1", "/a", &["t"], None, 1));
    store.put_entry(value("k2", "/b", &[], Some("u"), 1));
    assert_eq!(store.invalidate_now(&Invalidation::All), 2);
    assert!(store.get_entry("k1").is_none());
    assert_eq!(store.snapshot().entries, Some(0));
    assert_eq!(store.index_len(), 0);
}
