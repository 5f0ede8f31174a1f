//! The invalidation bus's lease and its sharded form on Redis Cluster,
//! against real redis-server processes the tests start (strata-testkit):
//! a stalled Redis stops every instance using its memory within the
//! staleness bound and the instances resume without a flush; the lease
//! does not flap in normal operation; on a cluster the bus follows its
//! channel through a failover.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use strata_core::store::{Invalidation, Store};
use strata_core::{CachedResponse, Entry, EntryKind, MemoryStore};
use strata_redis::{RedisStore, TieredStore};
use strata_testkit::{RedisCluster, RedisServer, Reply};

const PREFIX: &str = "test:bus:";
/// Room for a loaded machine on top of a bound.
const SLACK: Duration = Duration::from_millis(500);

fn entry(name: &str, tag: &str) -> Entry {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Entry {
        key: format!("{PREFIX}http:{name}"),
        name: name.to_owned(),
        user: None,
        tags: vec![tag.to_owned()],
        stored_at: UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap()),
        ttl: Duration::from_secs(60),
        stale: Duration::ZERO,
        kind: EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(format!("body of {name}")),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )),
    }
}

async fn standalone(url: &str) -> TieredStore {
    let redis = RedisStore::standalone(url)
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let store = TieredStore::new(MemoryStore::new(16 << 20), redis).unwrap();
    assert_eq!(
        store.staleness_bound(),
        Duration::from_secs(1),
        "the default"
    );
    assert!(store.wait_subscribed(Duration::from_secs(5)).await);
    store
}

/// Waits until `done` holds, up to `deadline`; returns how long it took.
async fn until(deadline: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

/// Redis stalls with the subscriptions connected, and the invalidation
/// one instance makes meanwhile cannot reach it. Within the bound neither
/// instance serves its memory copy; after the stall both use memory again
/// without having reconnected (what was not invalidated is still there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_stops_memory_within_the_bound_and_its_end_resumes_it_without_a_flush() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = standalone(&server.url()).await;
    let b = standalone(&server.url()).await;
    let named = entry("/api/named/", "named");
    let kept = entry("/api/kept/", "kept");
    for stored in [&named, &kept] {
        a.put(Arc::new(stored.clone())).await.unwrap();
        assert!(b.get(&stored.key).await.unwrap().is_some());
        for store in [&a, &b] {
            assert!(store.get_local(&stored.key).is_some(), "in both memories");
        }
    }

    let paused = Instant::now();
    assert_eq!(
        server.command(&["CLIENT", "PAUSE", "3000", "ALL"]),
        Reply::ok()
    );
    let refused = b.invalidate(&Invalidation::Tag("named".into())).await;
    assert!(refused.is_err(), "Redis is paused: {refused:?}");
    let bound = a.staleness_bound();
    until(bound + SLACK, "A stops using memory", || {
        a.get_local(&named.key).is_none() && !a.is_subscribed()
    })
    .await;
    until(bound + SLACK, "B stops using memory", || !b.is_subscribed()).await;
    let stopped = paused.elapsed();
    assert!(stopped <= bound + SLACK, "{stopped:?}");
    assert!(
        a.get_local(&kept.key).is_none(),
        "nothing is served from memory"
    );
    assert!(
        a.memory().get_entry(&kept.key).is_some(),
        "a stall does not flush: nothing was lost, only delayed"
    );
    let bus = a
        .health()
        .await
        .into_iter()
        .find(|h| h.layer == "bus")
        .unwrap();
    assert!(!bus.ok);
    let error = bus.error.unwrap();
    assert!(
        error.contains("unconfirmed") && error.contains("last confirmed beat"),
        "{error}"
    );

    for store in [&a, &b] {
        assert!(
            store.wait_subscribed(Duration::from_secs(3) + SLACK).await,
            "memory in use again after the pause"
        );
    }
    let resumed = paused.elapsed();
    for store in [&a, &b] {
        assert!(
            store.get_local(&kept.key).is_some(),
            "the same subscription: memory was not flushed"
        );
    }
    // The invalidation B could not make is replayed and heard by A.
    until(
        Duration::from_secs(3),
        "A hears the replayed invalidation",
        || a.memory().get_entry(&named.key).is_none(),
    )
    .await;
    for store in [&a, &b] {
        let bus = store.health().await.into_iter().find(|h| h.layer == "bus");
        assert!(bus.is_some_and(|bus| bus.ok));
    }
    // Once B's replay is done, nothing old is readable from any layer of
    // any instance.
    until(Duration::from_secs(3), "B's replay finishes", || {
        b.queued_invalidations() == 0
    })
    .await;
    for store in [&a, &b] {
        assert!(store.redis().get_entry(&named.key).await.unwrap().is_none());
        assert!(store.get(&named.key).await.unwrap().is_none());
        assert!(store.get(&kept.key).await.unwrap().is_some());
    }
    eprintln!("memory unused {stopped:?} after the pause began; in use again after {resumed:?}");
}

/// In normal operation the lease is renewed long before it runs out: over
/// several bounds memory is in use the whole time, and health is ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_does_not_flap_in_normal_operation() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = standalone(&server.url()).await;
    let b = standalone(&server.url()).await;
    let started = Instant::now();
    let mut samples = 0u32;
    while started.elapsed() < a.staleness_bound() * 4 {
        assert!(
            a.is_subscribed() && b.is_subscribed(),
            "memory went unused after {:?} of normal operation",
            started.elapsed()
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(samples > 100);
    for store in [&a, &b] {
        assert!(store.health().await.iter().all(|h| h.ok));
    }
    assert!(
        TieredStore::with_staleness_bound(
            MemoryStore::new(1 << 20),
            RedisStore::standalone(&server.url())
                .prefix(PREFIX)
                .build()
                .unwrap(),
            Duration::from_millis(5),
        )
        .is_err(),
        "a bound below the minimum is refused"
    );
}

/// Which node of the cluster serves the slot of `key`.
fn owner_of(nodes: &[&RedisServer], key: &str) -> usize {
    let owners: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| matches!(node.command(&["EXISTS", key]), Reply::Integer(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(owners.len(), 1, "exactly one node serves {key}: {owners:?}");
    owners[0]
}

/// How many shard-channel subscribers `node` has on `channel`.
fn shard_subscribers(node: &RedisServer, channel: &str) -> i64 {
    match node.command(&["PUBSUB", "SHARDNUMSUB", channel]) {
        Reply::Array(items) => match items.get(1) {
            Some(Reply::Integer(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

/// Invalidations reach the other instance's memory through the sharded
/// bus on the channel's master; after that shard fails over, both
/// instances follow the channel to the new master (flushing memory, as on
/// a reconnect) and invalidations reach them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sharded_bus_follows_its_channel_through_a_failover() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let channel = format!("{PREFIX}~bus");
    let masters: Vec<&RedisServer> = cluster.nodes().iter().collect();
    let owner = owner_of(&masters, &channel);
    let replica = cluster.add_replica(owner);
    let nodes: Vec<&RedisServer> = cluster.nodes()[..3].iter().collect();
    let replica = &cluster.nodes()[replica];
    let build = |urls: Vec<String>| {
        let redis = RedisStore::cluster(urls)
            .prefix(PREFIX)
            .op_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        TieredStore::new(MemoryStore::new(16 << 20), redis).unwrap()
    };
    // B is given a node that does not own the channel first.
    let mut b_urls = cluster.urls();
    b_urls.rotate_left((owner + 1) % 3);
    let (a, b) = (build(cluster.urls()), build(b_urls));
    for store in [&a, &b] {
        assert!(store.wait_subscribed(Duration::from_secs(5)).await);
    }
    assert_eq!(
        shard_subscribers(nodes[owner], &channel),
        2,
        "both on the owner"
    );

    let invalidated_for_b = async |name: &str| {
        let stored = entry(name, name);
        a.put(Arc::new(stored.clone())).await.unwrap();
        assert!(b.get(&stored.key).await.unwrap().is_some());
        assert!(b.memory().get_entry(&stored.key).is_some(), "promoted in B");
        a.invalidate(&Invalidation::Tag(name.into())).await.unwrap();
        until(Duration::from_secs(1), "B hears A's invalidation", || {
            b.memory().get_entry(&stored.key).is_none()
        })
        .await
    };
    let before = invalidated_for_b("/before/").await;
    let held = entry("/held/", "held");
    a.put(Arc::new(held.clone())).await.unwrap();
    assert!(b.get(&held.key).await.unwrap().is_some());
    assert!(b.memory().get_entry(&held.key).is_some());

    assert_eq!(replica.command(&["CLUSTER", "FAILOVER"]), Reply::ok());
    let failed_over = Instant::now();
    let deadline = Duration::from_secs(20);
    // (While the roles change, both may answer for the slot for a moment.)
    until(deadline, "the replica owns the channel", || {
        let serves =
            |node: &RedisServer| matches!(node.command(&["EXISTS", &channel]), Reply::Integer(_));
        serves(replica) && !serves(nodes[owner])
    })
    .await;
    until(deadline, "both subscribe on the new master", || {
        shard_subscribers(replica, &channel) == 2
    })
    .await;
    for store in [&a, &b] {
        assert!(store.wait_subscribed(deadline).await);
    }
    let followed = failed_over.elapsed();
    assert!(
        b.memory().get_entry(&held.key).is_none(),
        "resubscribing flushed B's memory: messages may have been lost"
    );
    let after = invalidated_for_b("/after/").await;
    eprintln!(
        "invalidation heard in {before:?} before the failover, {after:?} after; \
         bus followed the channel {followed:?} after CLUSTER FAILOVER"
    );
}

/// A fill of B's that lands in Redis after A removed what a tag names, and
/// before A's message reaches B, is removed again when the message comes:
/// B remembers what it wrote lately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_raced_a_remote_invalidation_is_removed_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let b = standalone(&server.url()).await;
    // A, a bare store: its removal reaches Redis now, its message later.
    let a = RedisStore::standalone(&server.url())
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let raced = entry("/api/raced/", "raced");
    let other = entry("/api/other/", "other");
    a.invalidate(&Invalidation::Tag("raced".into()))
        .await
        .unwrap();
    for stored in [&raced, &other] {
        b.put(Arc::new(stored.clone())).await.unwrap();
    }
    assert!(a.get_entry(&raced.key).await.unwrap().is_some());
    let message = r#"{"origin":"instance-a","what":{"tag":"raced"}}"#;
    let channel = format!("{PREFIX}~bus");
    assert_eq!(
        server.command(&["PUBLISH", &channel, message]),
        Reply::Integer(1)
    );
    until(Duration::from_secs(2), "B drops its memory copy", || {
        b.memory().get_entry(&raced.key).is_none()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while a.get_entry(&raced.key).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "B's raced write stayed in Redis, for every instance to read"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(a.get_entry(&other.key).await.unwrap().is_some());
    assert!(b.get(&other.key).await.unwrap().is_some());
}
