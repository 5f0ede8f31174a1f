//! Redis under memory pressure, against real redis-servers with a small
//! `maxmemory`: an evicting policy is reported, and under `noeviction`
//! writes fail without leaving an entry no invalidation can reach.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use strata_core::store::{Invalidation, Store};
use strata_core::{CachedResponse, Entry, EntryKind};
use strata_redis::RedisStore;
use strata_testkit::{RedisServer, Reply};

const PREFIX: &str = "test:eviction:";

fn entry(i: usize, tag: &str) -> Entry {
    let name = format!("/api/materials/{i}/");
    Entry {
        key: format!("{PREFIX}http:{name}"),
        name,
        user: None,
        tags: vec![tag.to_owned()],
        stored_at: SystemTime::now(),
        ttl: Duration::from_secs(3600),
        stale: Duration::ZERO,
        kind: EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![b'x'; 4096]),
            SystemTime::now(),
        )),
    }
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::standalone(&server.url())
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(500))
        .breaker(100_000, Duration::from_millis(1))
        .build()
        .unwrap()
}

fn stat(server: &RedisServer, name: &str) -> u64 {
    let info = server.command(&["INFO", "stats"]).to_string();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO stats"))
}

fn entry_keys(server: &RedisServer) -> usize {
    match server.command(&["KEYS", &format!("{PREFIX}http:*")]) {
        Reply::Array(keys) => keys.len(),
        other => panic!("KEYS: {other:?}"),
    }
}

/// Under `allkeys-lru`, Redis evicts what it likes, index sets included:
/// the store says so in its health while Redis is evicting.
#[tokio::test]
async fn an_evicting_policy_is_reported_under_pressure() {
    let Some(server) =
        RedisServer::start_with_args(&["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"])
    else {
        return;
    };
    let store = store(&server);
    for i in 0..2000 {
        store.put(Arc::new(entry(i, "materials"))).await.unwrap();
    }
    assert!(
        stat(&server, "evicted_keys") > 0,
        "Redis was not under pressure"
    );
    let health = store.health().await;
    let redis = health.iter().find(|h| h.layer == "redis").unwrap();
    assert!(!redis.ok, "{redis:?}");
    let error = redis.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("allkeys-lru") && error.contains("noeviction"),
        "{error}"
    );
}

/// Under `noeviction`, a full Redis refuses writes: they fail and are
/// counted, health says so, and no entry is left that an invalidation
/// cannot reach (an entry stored whose index was refused is deleted).
#[tokio::test]
async fn a_full_redis_under_noeviction_refuses_writes_and_loses_nothing() {
    let Some(server) =
        RedisServer::start_with_args(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"])
    else {
        return;
    };
    let store = store(&server);
    let mut refused = 0;
    for i in 0..2000 {
        if store.put(Arc::new(entry(i, "materials"))).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0, "Redis never filled up");
    let stored = entry_keys(&server);
    assert!(stored > 0);
    assert!(store.snapshot().errors.unwrap() >= refused);
    let health = store.health().await;
    assert!(
        health.iter().any(|h| h.layer == "redis" && !h.ok),
        "{health:?}"
    );

    // Every entry Redis kept is reachable: invalidating the tag removes
    // them all, full as Redis is.
    let deleted = store
        .invalidate(&Invalidation::Tag("materials".to_owned()))
        .await
        .unwrap();
    assert_eq!(deleted, u64::try_from(stored).unwrap());
    assert_eq!(entry_keys(&server), 0, "an entry no index named was left");
}
