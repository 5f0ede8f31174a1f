//! TieredStore (process memory in front of Redis, kept coherent by the
//! invalidation bus) against real redis-server processes the tests start on
//! free ports (strata-testkit): promotion, TTL bounds, per-layer figures,
//! invalidations between two instances sharing one Redis, losing and
//! regaining the bus, Redis Cluster, and `store_from_config`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use strata_core::store::{Invalidation, Store};
use strata_core::{CachedResponse, Config, Entry, EntryKind, MemoryStore};
use strata_redis::{RedisStore, TieredStore, store_from_config};
use strata_testkit::{RedisCluster, RedisServer, Reply};

const PREFIX: &str = "test:tiered:";

/// How long the bus may take to carry an invalidation to the other
/// instance before a test fails. The documented bound is one Redis hop
/// (well under a millisecond); this leaves room for a loaded CI machine.
const BUS_BOUND: Duration = Duration::from_millis(100);

/// Whole milliseconds, as the envelope keeps them.
fn now() -> SystemTime {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap())
}

fn entry_with_body(name: &str, tags: &[&str], user: Option<&str>, body: Bytes) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    let key = match user {
        Some(user) => format!("{PREFIX}http:{name}#u={user}"),
        None => format!("{PREFIX}http:{name}"),
    };
    Entry {
        key,
        name: name.to_owned(),
        user: user.map(str::to_owned),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        stored_at: now(),
        ttl: Duration::from_secs(60),
        stale: Duration::ZERO,
        kind: EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            headers,
            body,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )),
    }
}

fn entry(name: &str, tags: &[&str], user: Option<&str>) -> Entry {
    let body = Bytes::from(format!("body of {name} for {user:?}"));
    entry_with_body(name, tags, user, body)
}

fn redis(url: &str) -> RedisStore {
    RedisStore::standalone(url)
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// A tiered store on `url`, with its bus subscription alive.
async fn tiered(url: &str) -> TieredStore {
    let store = TieredStore::new(MemoryStore::new(64 << 20), redis(url)).unwrap();
    assert!(
        store.wait_subscribed(Duration::from_secs(5)).await,
        "the bus subscription did not come up"
    );
    store
}

fn in_redis(server: &RedisServer, key: &str) -> bool {
    server.command(&["EXISTS", key]).to_string().trim() == "1"
}

fn figures(store: &TieredStore) -> [(Option<u64>, Option<u64>); 2] {
    let stats = store.stats();
    assert_eq!(stats.len(), 2);
    [
        (stats[0].hits, stats[0].misses),
        (stats[1].hits, stats[1].misses),
    ]
}

/// Waits, up to `deadline`, until none of `keys` is in `store`'s memory;
/// returns how long that took.
async fn until_gone_from_memory(
    store: &TieredStore,
    keys: &[&str],
    deadline: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if keys
            .iter()
            .all(|key| store.memory().get_entry(key).is_none())
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "the other instance's memory still holds {:?} after {deadline:?}",
            keys.iter()
                .filter(|key| store.memory().get_entry(key).is_some())
                .collect::<Vec<_>>()
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn memory_first_then_redis_with_promotion_and_per_layer_figures() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = tiered(&server.url()).await;
    let b = tiered(&server.url()).await;
    let stats = b.stats();
    assert_eq!(
        stats.iter().map(|s| s.layer).collect::<Vec<_>>(),
        ["memory", "redis"]
    );
    assert_eq!(figures(&b), [(Some(0), Some(0)), (Some(0), Some(0))]);

    let stored = entry("/api/materials/", &["materials"], None);
    a.put(Arc::new(stored.clone())).await.unwrap();
    assert!(in_redis(&server, &stored.key), "written through to Redis");
    assert!(
        a.memory().get_entry(&stored.key).is_some(),
        "and to A's memory"
    );
    assert!(b.memory().get_entry(&stored.key).is_none());

    // B: memory misses, Redis hits, and the entry is promoted.
    assert_eq!(*b.get(&stored.key).await.unwrap().expect("found"), stored);
    assert_eq!(figures(&b), [(Some(0), Some(1)), (Some(1), Some(0))]);
    assert!(b.memory().get_entry(&stored.key).is_some(), "promoted");
    assert_eq!(b.stats()[0].entries, Some(1));

    // Now memory answers first: Redis is not asked (its counters stay).
    assert_eq!(*b.get(&stored.key).await.unwrap().expect("found"), stored);
    assert_eq!(figures(&b), [(Some(1), Some(1)), (Some(1), Some(0))]);
    // Even with the Redis copy removed behind strata's back (no bus
    // message), the memory copy answers: memory really is asked first.
    server.command(&["DEL", &stored.key]);
    assert!(b.get(&stored.key).await.unwrap().is_some());
    assert_eq!(figures(&b), [(Some(2), Some(1)), (Some(1), Some(0))]);
    assert_eq!(b.get_local(&stored.key).as_deref(), Some(&stored));

    // A miss in both layers.
    let missing = format!("{PREFIX}http:/missing");
    assert!(b.get(&missing).await.unwrap().is_none());
    assert_eq!(figures(&b), [(Some(3), Some(2)), (Some(1), Some(1))]);
    assert!(b.memory().get_entry(&missing).is_none());

    // A's figures moved only with A's own lookups.
    assert_eq!(figures(&a), [(Some(0), Some(0)), (Some(0), Some(0))]);
}

#[tokio::test]
async fn a_promoted_copy_never_outlives_the_redis_entry() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = tiered(&server.url()).await;
    let b = tiered(&server.url()).await;
    let mut short = entry("/short", &[], None);
    short.ttl = Duration::from_millis(500);
    // Straight into Redis, through A's Redis layer.
    a.redis().put_entry(&short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;

    // B promotes it with ~250 ms left in Redis, although the entry itself
    // (ttl 500 ms, read now) would allow keeping it for 500 ms.
    assert!(b.get(&short.key).await.unwrap().is_some());
    let promoted = Instant::now();
    assert!(b.memory().get_entry(&short.key).is_some(), "promoted");

    let deadline = promoted + Duration::from_secs(2);
    let (mut redis_gone, mut memory_gone) = (None, None);
    while redis_gone.is_none() || memory_gone.is_none() {
        assert!(Instant::now() < deadline, "the entry never expired");
        // Redis first: once Redis has lost it, memory must have too.
        let in_redis = in_redis(&server, &short.key);
        let in_memory = b.memory().get_entry(&short.key).is_some();
        let at = promoted.elapsed();
        if !in_redis {
            redis_gone.get_or_insert(at);
        }
        if !in_memory {
            memory_gone.get_or_insert(at);
        }
        assert!(
            in_redis || !in_memory,
            "memory still holds the entry {:?} after promotion, Redis lost it at {redis_gone:?}",
            promoted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (redis_gone, memory_gone) = (redis_gone.unwrap(), memory_gone.unwrap());
    eprintln!(
        "promoted copy: gone from memory after {memory_gone:?}, from Redis after {redis_gone:?}"
    );
    assert!(memory_gone <= redis_gone);
    assert!(
        memory_gone < Duration::from_millis(400),
        "kept for the entry's ttl instead of Redis's remaining time: {memory_gone:?}"
    );
}

/// The entries every invalidation case starts from, in both layers of A
/// (written by A) and in B's memory (read by B).
fn sample() -> Vec<Entry> {
    vec![
        entry("/api/materials/", &["materials"], None),
        entry("/api/materials/?page=2", &["materials"], None),
        entry("/api/materials/42/", &["materials", "material:42"], None),
        entry("/api/dashboard/", &[], Some("1")),
        entry("/api/dashboard/", &[], Some("2")),
        entry("/api/reports/", &["reports"], Some("1")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalidation_of_one_instance_reaches_the_others_memory_within_the_bound() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = tiered(&server.url()).await;
    let b = tiered(&server.url()).await;
    let entries = sample();
    let cases: Vec<(Invalidation, Vec<usize>)> = vec![
        (Invalidation::Tag("material:42".into()), vec![2]),
        (
            Invalidation::Tags(vec!["reports".into(), "nothing".into()]),
            vec![5],
        ),
        (Invalidation::User("1".into()), vec![3, 5]),
        (
            Invalidation::Url("/api/materials/?any=1".into()),
            vec![0, 1],
        ),
        (
            Invalidation::Prefix("/api/materials/".into()),
            vec![0, 1, 2],
        ),
        (Invalidation::Key(entries[4].key.clone()), vec![4]),
        (Invalidation::All, vec![0, 1, 2, 3, 4, 5]),
    ];
    let mut delays = Vec::new();
    for (what, dropped) in cases {
        // Start clean everywhere (the clear travels on the bus as well).
        a.invalidate(&Invalidation::All).await.unwrap();
        until_gone_from_memory(
            &b,
            &entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            Duration::from_secs(1),
        )
        .await;
        for entry in &entries {
            a.put(Arc::new(entry.clone())).await.unwrap();
            assert!(b.get(&entry.key).await.unwrap().is_some());
            assert!(b.memory().get_entry(&entry.key).is_some(), "B promoted it");
        }
        let dropped_keys: Vec<&str> = dropped.iter().map(|&i| entries[i].key.as_str()).collect();

        // B keeps reading the entries that are about to go.
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (b, stop) = (b.clone(), Arc::clone(&stop));
            let keys: Vec<String> = dropped_keys.iter().map(|k| (*k).to_owned()).collect();
            tokio::spawn(async move {
                let mut reads = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    for key in &keys {
                        let started = Instant::now();
                        let found = b.get(key).await.unwrap().is_some();
                        reads.push((started, key.clone(), found));
                    }
                    tokio::task::yield_now().await;
                }
                reads
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;

        a.invalidate(&what).await.unwrap();
        let returned = Instant::now();
        let delay = until_gone_from_memory(&b, &dropped_keys, Duration::from_secs(1)).await;
        let clean = returned + delay;
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, Ordering::SeqCst);
        let reads = reader.await.unwrap();
        eprintln!("{what:?}: B's memory dropped it {delay:?} after A's call returned");
        delays.push(delay);
        assert!(
            delay <= BUS_BOUND,
            "{what:?}: the bus took {delay:?} (bound {BUS_BOUND:?})"
        );
        let late: Vec<_> = reads
            .iter()
            .filter(|(started, _, found)| *started >= clean && *found)
            .collect();
        let after = reads
            .iter()
            .filter(|(started, ..)| *started >= clean)
            .count();
        assert!(after > 0, "the reader made no reads after the invalidation");
        assert!(
            late.is_empty(),
            "{what:?}: B served invalidated entries after A's call returned and the bus \
             delivered it: {late:?}"
        );

        for (i, entry) in entries.iter().enumerate() {
            let gone = dropped.contains(&i);
            assert_eq!(
                b.memory().get_entry(&entry.key).is_none(),
                gone,
                "{what:?}: B's memory, entry {i}"
            );
            assert_eq!(
                !in_redis(&server, &entry.key),
                gone,
                "{what:?}: Redis, entry {i}"
            );
            assert_eq!(
                b.get(&entry.key).await.unwrap().is_none(),
                gone,
                "{what:?}: B, entry {i}"
            );
        }
    }
    eprintln!(
        "bus delays: max {:?}",
        delays.iter().max().copied().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_racing_an_invalidation_does_not_bring_the_entry_back() {
    // B reads a large entry from Redis while A invalidates it: the reply
    // is still on its way when the bus message arrives, so B's promotion
    // lands after B's memory dropped the entry. It must not keep it.
    let Some(server) = RedisServer::start() else {
        return;
    };
    let slow = |url: &str| {
        RedisStore::standalone(url)
            .prefix(PREFIX)
            .op_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let a = TieredStore::new(MemoryStore::new(256 << 20), slow(&server.url())).unwrap();
    let b = TieredStore::new(MemoryStore::new(256 << 20), slow(&server.url())).unwrap();
    assert!(a.wait_subscribed(Duration::from_secs(5)).await);
    assert!(b.wait_subscribed(Duration::from_secs(5)).await);
    let body = Bytes::from(vec![b'x'; 16 << 20]);
    let big = entry_with_body("/big", &["big"], None, body);

    let mut raced = 0;
    for attempt in 0..20u64 {
        a.redis().put_entry(&big).await.unwrap();
        let reader = {
            let (b, key) = (b.clone(), big.key.clone());
            tokio::spawn(async move { b.get(&key).await.unwrap().is_some() })
        };
        // Let B's GET reach Redis first (most of the time).
        tokio::time::sleep(Duration::from_micros(200 * (attempt % 5))).await;
        a.invalidate(&Invalidation::Tag("big".into()))
            .await
            .unwrap();
        let found = reader.await.unwrap();
        tokio::time::sleep(BUS_BOUND).await;
        if found {
            raced += 1;
        }
        assert!(
            b.memory().get_entry(&big.key).is_none(),
            "attempt {attempt}: B's memory kept an entry invalidated while it was read"
        );
        assert!(b.get(&big.key).await.unwrap().is_none());
    }
    eprintln!("{raced} of 20 reads returned the entry while it was being invalidated");
}

#[tokio::test]
async fn losing_the_bus_flushes_memory_and_regaining_it_uses_memory_again() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let a = tiered(&server.url()).await;
    let b = tiered(&server.url()).await;
    let stored = entry("/api/materials/", &["materials"], None);
    a.put(Arc::new(stored.clone())).await.unwrap();
    assert!(b.get(&stored.key).await.unwrap().is_some());
    assert!(b.memory().get_entry(&stored.key).is_some());

    server.stop();
    let stopped = Instant::now();
    while b.is_subscribed() {
        assert!(
            stopped.elapsed() < Duration::from_secs(2),
            "B did not notice the bus was gone"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let noticed = stopped.elapsed();
    assert_eq!(b.stats()[0].entries, Some(0), "B's memory was flushed");
    assert!(b.memory().get_entry(&stored.key).is_none());
    assert!(b.get_local(&stored.key).is_none(), "memory is not trusted");
    // Redis is down: a lookup fails (a miss to the cache), and fast.
    let started = Instant::now();
    assert!(b.get(&stored.key).await.is_err());
    let failed_in = started.elapsed();
    assert!(failed_in < Duration::from_millis(500), "{failed_in:?}");
    // A put while untrusted does not fill memory. Its write timed out: an
    // unknown outcome, so the key is queued for deletion and B reads
    // nothing from Redis until that is done.
    assert!(b.put(Arc::new(stored.clone())).await.is_err());
    assert!(b.memory().get_entry(&stored.key).is_none());
    // Nor does memory answer for what reached it another way meanwhile:
    // it may have missed invalidations.
    b.memory().put_entry(Arc::new(stored.clone()));
    assert!(
        b.get_local(&stored.key).is_none(),
        "untrusted memory answers"
    );
    assert!(
        !matches!(b.get(&stored.key).await, Ok(Some(_))),
        "only Redis may answer, and it is down"
    );
    let health = b.health().await;
    assert_eq!(
        health.iter().map(|h| (h.layer, h.ok)).collect::<Vec<_>>(),
        [
            ("memory", true),
            ("redis", false),
            ("bus", false),
            ("invalidations", false)
        ]
    );

    server.restart();
    let restarted = Instant::now();
    assert!(
        b.wait_subscribed(Duration::from_secs(5)).await,
        "B resubscribed"
    );
    assert!(
        a.wait_subscribed(Duration::from_secs(5)).await,
        "A resubscribed"
    );
    let resubscribed = restarted.elapsed();
    eprintln!(
        "bus loss seen after {noticed:?}; a lookup while down failed in {failed_in:?}; \
         resubscribed {resubscribed:?} after the restart"
    );

    // B's queued deletion of the key whose write timed out is replayed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b
        .health()
        .await
        .iter()
        .all(|h| h.layer != "invalidations" || h.ok)
    {
        assert!(Instant::now() < deadline, "B's queued deletion never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Redis came back empty; once the store works again, memory is used.
    let deadline = Instant::now() + Duration::from_secs(5);
    // (A tiered write succeeds as soon as memory holds it; wait for Redis
    // itself to take writes again, then write through A.)
    while a.redis().put_entry(&stored).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "A could not write after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.put(Arc::new(stored.clone())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get(&stored.key).await.ok().flatten().is_none() {
        assert!(
            Instant::now() < deadline,
            "B could not read after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        b.memory().get_entry(&stored.key).is_some(),
        "promoted again"
    );
    let [(hits, _), _] = figures(&b);
    assert!(b.get(&stored.key).await.unwrap().is_some());
    assert_eq!(figures(&b)[0].0, hits.map(|h| h + 1), "a memory hit");
    let health = b.health().await;
    assert!(health.iter().all(|h| h.ok), "{health:?}");

    // And the bus carries invalidations again.
    a.invalidate(&Invalidation::Tag("materials".into()))
        .await
        .unwrap();
    let delay = until_gone_from_memory(&b, &[&stored.key], Duration::from_secs(1)).await;
    assert!(delay <= BUS_BOUND, "{delay:?}");
}

/// Which node of the cluster serves the slot of `key`.
fn owner_of(cluster: &RedisCluster, key: &str) -> usize {
    let owners: Vec<usize> = cluster
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, node)| !matches!(node.command(&["EXISTS", key]), Reply::Error(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(owners.len(), 1, "exactly one node serves {key}");
    owners[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiered_pair_on_a_cluster_spreads_keys_and_invalidates_everywhere() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let build = |urls: Vec<String>| {
        let redis = RedisStore::cluster(urls)
            .prefix(PREFIX)
            .op_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        TieredStore::new(MemoryStore::new(64 << 20), redis).unwrap()
    };
    // The bus is sharded: whichever node an instance is given first, it
    // subscribes on the master of the channel's slot, and A publishes
    // there, so no message crosses the cluster bus.
    let channel = format!("{PREFIX}~bus");
    let owner = owner_of(&cluster, &channel);
    let other = (owner + 1) % 3;
    let mut b_urls = cluster.urls();
    b_urls.rotate_left(other);
    let a = build(cluster.urls());
    let b = build(b_urls);
    assert!(a.wait_subscribed(Duration::from_secs(5)).await);
    assert!(b.wait_subscribed(Duration::from_secs(5)).await);
    let listening = cluster.nodes()[owner].command(&["PUBSUB", "SHARDNUMSUB", &channel]);
    assert!(
        matches!(&listening, Reply::Array(items) if matches!(items.get(1), Some(Reply::Integer(2)))),
        "B was given node {other} first, yet both listen on the owner: {listening:?}"
    );

    let entries: Vec<Entry> = (0..60)
        .map(|i| entry(&format!("/api/items/{i}/"), &["items"], None))
        .collect();
    for entry in &entries {
        a.put(Arc::new(entry.clone())).await.unwrap();
    }
    let holding = cluster
        .nodes()
        .iter()
        .filter(|node| node.command(&["DBSIZE"]).to_string().trim() != "0")
        .count();
    assert_eq!(holding, 3, "keys spread over the three masters");
    for entry in &entries {
        assert_eq!(*b.get(&entry.key).await.unwrap().expect("stored"), *entry);
    }
    assert_eq!(
        b.stats()[0].entries,
        Some(60),
        "all promoted into B's memory"
    );

    let dropped = a
        .invalidate(&Invalidation::Tag("items".into()))
        .await
        .unwrap();
    let returned = Instant::now();
    assert_eq!(dropped, 60);
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let delay = until_gone_from_memory(&b, &keys, Duration::from_secs(1)).await;
    eprintln!(
        "cluster: B's memory dropped 60 entries {delay:?} after A's call returned \
         ({:?} since)",
        returned.elapsed()
    );
    assert!(delay <= BUS_BOUND, "{delay:?}");
    for entry in &entries {
        assert!(b.get(&entry.key).await.unwrap().is_none());
        assert!(a.redis().get_entry(&entry.key).await.unwrap().is_none());
    }

    // USE_REDIS_CACHE + REDIS_CLUSTER_URLS make a tiered store on the cluster.
    let urls = cluster.urls().join(",");
    let config = Config::from_lookup(|name| match name {
        "USE_REDIS_CACHE" => Some("true".to_owned()),
        "REDIS_CLUSTER_URLS" => Some(urls.clone()),
        "CACHE_APP" => Some("cfgcluster".to_owned()),
        "CACHE_REDIS_TIMEOUT_MS" => Some("500".to_owned()),
        _ => None,
    })
    .unwrap();
    round_trips_through_config(&config, 2).await;
    let key = "cfgcluster:development:answer";
    let owner = owner_of(&cluster, key);
    assert_eq!(
        cluster.nodes()[owner]
            .command(&["EXISTS", key])
            .to_string()
            .trim(),
        "1",
        "the value is in the cluster"
    );
}

/// Builds the store `config` asks for, checks it has `layers` layers, and
/// round-trips a value through `get_or_compute` (a second cache on a
/// second store from the same config finds it without computing).
async fn round_trips_through_config(config: &Config, layers: usize) {
    let store = store_from_config(config).unwrap();
    let names: Vec<&str> = store.stats().iter().map(|s| s.layer).collect();
    assert_eq!(names, ["memory", "redis"][..layers]);
    let cache = config.builder().store(store).build();
    let answer: u64 = cache
        .handle()
        .get_or_compute("answer", Duration::from_secs(60), || async { 42 })
        .await;
    assert_eq!(answer, 42);
    let again: u64 = cache
        .handle()
        .get_or_compute("answer", Duration::from_secs(60), || async { 0 })
        .await;
    assert_eq!(again, 42, "cached");
    let other = config
        .builder()
        .store(store_from_config(config).unwrap())
        .build();
    let shared: u64 = other
        .handle()
        .get_or_compute("answer", Duration::from_secs(60), || async { 7 })
        .await;
    assert_eq!(
        shared,
        if layers == 2 { 42 } else { 7 },
        "shared only through Redis"
    );
}

#[tokio::test]
async fn config_with_use_redis_cache_makes_a_tiered_store_and_without_a_memory_store() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let lookup = |use_redis: Option<&'static str>| {
        let url = url.clone();
        move |name: &str| match name {
            "USE_REDIS_CACHE" => use_redis.map(str::to_owned),
            "REDIS_URL" => Some(url.clone()),
            "CACHE_APP" => Some("cfg".to_owned()),
            "CACHE_ENV" => Some("test".to_owned()),
            _ => None,
        }
    };

    let config = Config::from_lookup(lookup(Some("true"))).unwrap();
    assert!(config.use_redis);
    round_trips_through_config(&config, 2).await;
    assert!(
        in_redis(&server, "cfg:test:answer"),
        "stored under the config's prefix"
    );

    server.command(&["FLUSHALL"]);
    for off in [None, Some("false")] {
        let config = Config::from_lookup(lookup(off)).unwrap();
        assert!(!config.use_redis);
        round_trips_through_config(&config, 1).await;
        assert_eq!(
            server.command(&["DBSIZE"]).to_string().trim(),
            "0",
            "Redis untouched"
        );
    }
}

/// Redis stalls (its data intact, as in a network partition) while an
/// instance invalidates: the invalidation is kept, the instance stops
/// reading Redis, and once Redis answers the invalidation is replayed so
/// no instance is served the old entry from Redis afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_redis_refused_is_replayed_once_it_answers() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = tiered(&server.url()).await;
    let b = tiered(&server.url()).await;
    let stale = entry("/api/stale/", &["stalled"], None);
    a.put(Arc::new(stale.clone())).await.unwrap();
    assert!(in_redis(&server, &stale.key));

    // Writes (and scripts) stall for a second; reads still answer.
    server.command(&["CLIENT", "PAUSE", "1000", "WRITE"]);
    let refused = a.invalidate(&Invalidation::Tag("stalled".into())).await;
    assert!(
        refused.is_err(),
        "the stalled invalidation must fail: {refused:?}"
    );
    assert!(in_redis(&server, &stale.key), "Redis still holds it");
    // The instance that could not invalidate does not read Redis meanwhile.
    assert!(a.get(&stale.key).await.unwrap().is_none());

    // Once Redis takes writes again, the replay removes it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_redis(&server, &stale.key) {
        assert!(
            Instant::now() < deadline,
            "the invalidation was never replayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.get(&stale.key).await.unwrap().is_none());
    assert!(a.get(&stale.key).await.unwrap().is_none());
    // And the instance reads Redis again.
    a.put(Arc::new(stale.clone())).await.unwrap();
    a.memory().delete_entry(&stale.key);
    assert!(a.get(&stale.key).await.unwrap().is_some());
}

/// A backlog of refused invalidations clears in one round once Redis
/// answers, not one per replay tick (100 queued used to take 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_refused_invalidations_is_replayed_at_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = tiered(&server.url()).await;
    let entries: Vec<Entry> = (0..100)
        .map(|i| entry(&format!("/api/backlog/{i}"), &[&format!("b{i}")], None))
        .collect();
    for stored in &entries {
        a.put(Arc::new(stored.clone())).await.unwrap();
    }
    let paused = Instant::now();
    server.command(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    for i in 0..100 {
        // Refused: Redis stalls (then the breaker fails them at once).
        let refused = a.invalidate(&Invalidation::Tag(format!("b{i}"))).await;
        assert!(refused.is_err(), "{i}: {refused:?}");
        // The same one twice is replayed once.
        if i == 50 {
            let _ = a.invalidate(&Invalidation::Tag(format!("b{i}"))).await;
        }
    }
    assert!(entries.iter().all(|e| in_redis(&server, &e.key)));
    // Health says so, with the count.
    let queued = a
        .health()
        .await
        .into_iter()
        .find(|layer| layer.layer == "invalidations")
        .unwrap();
    assert!(!queued.ok);
    let error = queued.error.unwrap_or_default();
    assert!(
        error.starts_with("100 queued for Redis, 0 not yet published; last error: ")
            && error.contains("timed out"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(paused.elapsed())).await;
    let answering = Instant::now();
    let last = &entries[99].key;
    while in_redis(&server, last) {
        assert!(
            answering.elapsed() < Duration::from_secs(3),
            "the backlog was not replayed within 3 s of Redis answering"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cleared = answering.elapsed();
    eprintln!("100 queued invalidations replayed {cleared:?} after Redis answered");
    // Once the replay has also published them, health is ok again.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let health = a.health().await;
        if health.iter().all(|layer| layer.ok) {
            break;
        }
        assert!(Instant::now() < deadline, "{health:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for stored in &entries {
        assert!(!in_redis(&server, &stored.key), "{}", stored.key);
    }
    // With nothing pending, the instance reads Redis again.
    a.put(Arc::new(entries[0].clone())).await.unwrap();
    a.memory().delete_entry(&entries[0].key);
    assert!(a.get(&entries[0].key).await.unwrap().is_some());
}

/// Redis takes an invalidation but refuses its publish (here an ACL
/// without PUBLISH): the other instances have not heard of it and keep
/// their copies. The publish is resent until Redis takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_failed_is_resent() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let granted = server.command(&[
        "ACL", "SETUSER", "nopub", "on", "nopass", "~*", "&*", "+@all", "-publish",
    ]);
    assert!(!granted.is_error(), "{granted}");
    // A cannot publish its heartbeats either: its bus is never confirmed,
    // so it does not use its memory, and says so.
    let a = TieredStore::new(
        MemoryStore::new(64 << 20),
        redis(&format!("redis://nopub:any@{}", server.addr())),
    )
    .unwrap();
    let b = tiered(&server.url()).await;
    assert!(!a.wait_subscribed(Duration::from_millis(500)).await);
    let bus = a.health().await.into_iter().find(|h| h.layer == "bus");
    assert!(bus.is_some_and(|bus| !bus.ok), "A's bus is unconfirmed");
    let stored = entry("/api/published/", &["published"], None);
    a.put(Arc::new(stored.clone())).await.unwrap();
    assert!(b.get(&stored.key).await.unwrap().is_some());
    assert!(
        b.memory().get_entry(&stored.key).is_some(),
        "B holds a copy"
    );

    a.invalidate(&Invalidation::Tag("published".into()))
        .await
        .unwrap();
    assert!(
        !in_redis(&server, &stored.key),
        "Redis took the invalidation"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.memory().get_entry(&stored.key).is_some(),
        "the publish was refused: B has not heard"
    );

    let granted = server.command(&["ACL", "SETUSER", "nopub", "+publish"]);
    assert!(!granted.is_error(), "{granted}");
    let delay = until_gone_from_memory(&b, &[&stored.key], Duration::from_secs(3)).await;
    eprintln!("resent and heard {delay:?} after PUBLISH was allowed");
}

/// Redis answers `PING` but refuses every write (`maxmemory` reached with
/// `noeviction`): the redis layer reports it, and recovers with the first
/// write Redis takes again.
#[tokio::test]
async fn health_reports_a_redis_that_answers_but_refuses_writes() {
    let Some(server) =
        RedisServer::start_with_args(&["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"])
    else {
        return;
    };
    let store = redis(&server.url());
    let stored = entry_with_body("/api/big/", &[], None, Bytes::from(vec![b'x'; 2 << 20]));
    assert!(store.put_entry(&stored).await.is_err(), "over maxmemory");
    let health = store.probe().await;
    assert!(!health.ok, "{health:?}");
    let error = health.error.unwrap_or_default();
    assert!(error.contains("OOM"), "{error}");

    server.command(&["CONFIG", "SET", "maxmemory", "0"]);
    store.put_entry(&stored).await.unwrap();
    let health = store.probe().await;
    assert!(health.ok, "{health:?}");
}

/// A Redis that may evict the index sets (a `maxmemory` with an evicting
/// policy) is reported: invalidations could miss entries there. Safe
/// settings are not.
#[tokio::test]
async fn health_reports_a_maxmemory_policy_that_can_evict_index_sets() {
    for (args, risky) in [
        (
            &["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"][..],
            true,
        ),
        (
            &["--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru"][..],
            true,
        ),
        (
            &["--maxmemory", "100mb", "--maxmemory-policy", "noeviction"][..],
            false,
        ),
        (&["--maxmemory-policy", "allkeys-lru"][..], false),
    ] {
        let Some(server) = RedisServer::start_with_args(args) else {
            return;
        };
        let health = redis(&server.url()).probe().await;
        assert_eq!(!health.ok, risky, "{args:?}: {health:?}");
        if risky {
            let error = health.error.unwrap_or_default();
            assert!(error.contains("noeviction"), "{error}");
        }
    }
}

/// Every write Redis refuses counts at the top level, even when the tiered
/// store kept the entry in memory and the request never noticed.
#[tokio::test]
async fn writes_redis_refuses_count_as_errors_at_the_top_level() {
    let Some(server) =
        RedisServer::start_with_args(&["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"])
    else {
        return;
    };
    let cache = strata_core::Cache::builder()
        .prefix("test", "tiered")
        .store(Arc::new(tiered(&server.url()).await))
        .build();
    let handle = cache.handle();
    let big = "x".repeat(2 << 20);
    let value: String = handle
        .get_or_compute("big", Duration::from_secs(60), || async { big.clone() })
        .await;
    assert_eq!(value.len(), big.len(), "the caller got its value");
    let stats = handle.stats();
    assert!(stats.errors >= 1, "{stats:?}");
    assert!(!handle.health().await.is_ok());
    handle.reset_stats();
    assert_eq!(handle.stats().errors, 0, "reset counts from now");
}
