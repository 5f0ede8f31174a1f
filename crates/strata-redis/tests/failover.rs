//! Clearing a Redis Cluster while one of its masters fails over, against a
//! real 3-master cluster with a replica the test adds: the clear is not
//! reported done while a shard is unreachable; the tiered store replays it
//! once the replica has taken over, and then nothing old is left on any
//! node or readable from any instance.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use strata_core::store::{Invalidation, Store};
use strata_core::{CachedResponse, Entry, EntryKind, MemoryStore};
use strata_redis::{RedisStore, TieredStore};
use strata_testkit::{RedisCluster, Reply};

const PREFIX: &str = "test:failover:";

fn entry(i: usize) -> Entry {
    let name = format!("/api/shards/{i}/");
    Entry {
        key: format!("{PREFIX}http:{name}"),
        name,
        user: None,
        tags: vec!["shards".to_owned()],
        stored_at: SystemTime::now(),
        ttl: Duration::from_secs(3600),
        stale: Duration::ZERO,
        kind: EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"old"),
            SystemTime::now(),
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_during_a_failover_is_replayed_until_every_shard_took_it() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let failing = 0;
    let replica = cluster.add_replica(failing);
    let urls: Vec<String> = cluster.urls();
    let redis = RedisStore::cluster(urls)
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let store = TieredStore::new(MemoryStore::new(16 << 20), redis).unwrap();
    assert!(store.wait_subscribed(Duration::from_secs(10)).await);
    let entries: Vec<Entry> = (0..60).map(entry).collect();
    for e in &entries {
        store.put(Arc::new(e.clone())).await.unwrap();
    }
    let on_failing = entries
        .iter()
        .filter(|e| cluster.nodes()[failing].command(&["EXISTS", &e.key]) == Reply::Integer(1))
        .count();
    assert!(on_failing > 0, "the failing master holds some entries");

    cluster.nodes_mut()[failing].stop();
    let stopped = Instant::now();
    let cleared = store.invalidate(&Invalidation::All).await;
    assert!(
        cleared.is_err(),
        "a clear that cannot reach a shard is not done: {cleared:?}"
    );
    assert!(store.queued_invalidations() > 0, "kept for replay");

    // The replica takes over after the node timeout (2 s); the replay
    // then reaches every shard.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.queued_invalidations() > 0 {
        assert!(
            Instant::now() < deadline,
            "the clear was never replayed: {:?}",
            store.health().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replayed = stopped.elapsed();
    let role = cluster.nodes()[replica].command(&["ROLE"]).to_string();
    assert!(role.starts_with("master"), "the replica took over: {role}");
    for (i, node) in cluster.nodes().iter().enumerate() {
        if i == failing {
            continue;
        }
        let Reply::Array(keys) = node.command(&["KEYS", &format!("{PREFIX}http:*")]) else {
            panic!("KEYS on node {i}");
        };
        assert!(
            keys.is_empty(),
            "node {i} still holds {} entries",
            keys.len()
        );
    }
    for e in &entries {
        assert!(
            store.get(&e.key).await.unwrap().is_none(),
            "{} readable after the clear",
            e.key
        );
    }
    eprintln!(
        "{on_failing} of 60 entries on the failing master; the clear was replayed \
         {replayed:?} after it stopped"
    );
}
