//! RedisStore against real redis-server processes the tests start on free
//! ports (strata-testkit): standalone and a 3-master cluster.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use strata_core::store::{Invalidation, Store};
use strata_core::{CachedResponse, Entry, EntryKind, VariantRule};
use strata_redis::RedisStore;
use strata_testkit::{RedisCluster, RedisServer};

const PREFIX: &str = "test:redis:";

/// Whole milliseconds, as the envelope keeps them.
fn now() -> SystemTime {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap())
}

fn response_entry(name: &str, tags: &[&str], user: Option<&str>) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    headers.insert(ETAG, HeaderValue::from_static("\"abc\""));
    headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
    headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
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
        stale: Duration::from_secs(5),
        kind: EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            headers,
            Bytes::from(body),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )),
    }
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::standalone(&server.url())
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_entry_field_round_trips() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    let response = response_entry("/api/a/?x=1", &["t1", "t2"], Some("42"));
    let rule = Entry {
        key: format!("{PREFIX}http:/api/a/"),
        name: "/api/a/".to_owned(),
        user: None,
        tags: Vec::new(),
        stored_at: now(),
        ttl: Duration::from_secs(30),
        stale: Duration::ZERO,
        kind: EntryKind::Variants(VariantRule {
            per_user: true,
            vary: vec![http::header::ACCEPT_LANGUAGE],
            pass: false,
        }),
    };
    let value = Entry {
        key: format!("{PREFIX}active_users"),
        name: "active_users".to_owned(),
        user: None,
        tags: vec!["users".to_owned()],
        stored_at: now(),
        ttl: Duration::from_secs(600),
        stale: Duration::ZERO,
        kind: EntryKind::Value(Bytes::from_static(b"{\"n\":42}")),
    };
    for entry in [response, rule, value] {
        store.put(Arc::new(entry.clone())).await.unwrap();
        let back = store.get(&entry.key).await.unwrap().expect("stored");
        assert_eq!(*back, entry);
        // Redis keeps it for ttl + stale, no longer.
        let pttl = server.command(&["PTTL", &entry.key]).to_string();
        let pttl: i64 = pttl.trim().parse().unwrap_or(-1);
        let retention = i64::try_from(entry.retention().as_millis()).unwrap();
        assert!(pttl > 0 && pttl <= retention, "PTTL {pttl} vs {retention}");
    }
    assert!(
        store
            .get(&format!("{PREFIX}missing"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_foreign_or_corrupt_value_is_a_counted_miss_and_is_deleted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    let key = format!("{PREFIX}http:/foreign");
    server.command(&["SET", &key, "hello"]);
    assert!(store.get(&key).await.unwrap().is_none());
    assert_eq!(store.corrupt_values(), 1);
    assert_eq!(server.command(&["EXISTS", &key]).to_string().trim(), "0");

    // A valid envelope cut short.
    let entry = response_entry("/cut", &[], None);
    let bytes = strata_redis::envelope::encode(&entry);
    let cut = String::from_utf8_lossy(&bytes[..bytes.len() / 2]).into_owned();
    server.command(&["SET", &entry.key, &cut]);
    assert!(store.get(&entry.key).await.unwrap().is_none());
    assert_eq!(store.corrupt_values(), 2);
}

async fn fill(store: &RedisStore) -> Vec<Entry> {
    let entries = vec![
        response_entry("/api/materials/", &["materials"], None),
        response_entry("/api/materials/?page=2", &["materials"], None),
        response_entry("/api/materials/42/", &["materials", "material:42"], None),
        response_entry("/api/dashboard/", &[], Some("1")),
        response_entry("/api/dashboard/", &[], Some("2")),
        response_entry("/api/reports/", &["reports"], Some("1")),
    ];
    for entry in &entries {
        store.put(Arc::new(entry.clone())).await.unwrap();
    }
    entries
}

async fn present(store: &RedisStore, entries: &[Entry]) -> Vec<bool> {
    let mut out = Vec::new();
    for entry in entries {
        out.push(store.get(&entry.key).await.unwrap().is_some());
    }
    out
}

async fn invalidation_drops_exactly_what_it_names(store: RedisStore) {
    let entries = fill(&store).await;
    assert_eq!(present(&store, &entries).await, [true; 6]);

    let dropped = store
        .invalidate(&Invalidation::Tag("material:42".into()))
        .await
        .unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(
        present(&store, &entries).await,
        [true, true, false, true, true, true]
    );

    let dropped = store
        .invalidate(&Invalidation::User("1".into()))
        .await
        .unwrap();
    assert_eq!(dropped, 2);
    assert_eq!(
        present(&store, &entries).await,
        [true, true, false, false, true, false]
    );

    let dropped = store
        .invalidate(&Invalidation::Url("/api/materials/?any=1".into()))
        .await
        .unwrap();
    assert_eq!(dropped, 2, "every query string of the path");
    assert_eq!(
        present(&store, &entries).await,
        [false, false, false, false, true, false]
    );

    let entries = fill(&store).await;
    let dropped = store
        .invalidate(&Invalidation::Prefix("/api/materials/".into()))
        .await
        .unwrap();
    assert_eq!(dropped, 3);
    assert_eq!(
        present(&store, &entries).await,
        [false, false, false, true, true, true]
    );

    let dropped = store
        .invalidate(&Invalidation::Tags(vec![
            "reports".into(),
            "nothing".into(),
        ]))
        .await
        .unwrap();
    assert_eq!(dropped, 1);

    let entries = fill(&store).await;
    let dropped = store.invalidate(&Invalidation::All).await.unwrap();
    assert!(dropped >= 6, "{dropped}");
    assert_eq!(present(&store, &entries).await, [false; 6]);
}

#[tokio::test]
async fn standalone_invalidation_by_tag_user_url_prefix_and_all() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    invalidation_drops_exactly_what_it_names(store(&server)).await;
    // Nothing of the prefix is left behind, index sets included.
    assert_eq!(server.command(&["DBSIZE"]).to_string().trim(), "0");
}

#[tokio::test]
async fn clear_all_touches_only_its_own_prefix() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    server.command(&["SET", "someone-else:key", "kept"]);
    fill(&store).await;
    store.invalidate(&Invalidation::All).await.unwrap();
    assert_eq!(
        server
            .command(&["GET", "someone-else:key"])
            .to_string()
            .trim(),
        "kept"
    );
}

#[tokio::test]
async fn index_sets_expire_with_their_entries() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    let mut entry = response_entry("/short", &["short-lived"], None);
    entry.ttl = Duration::from_millis(300);
    entry.stale = Duration::ZERO;
    store.put(Arc::new(entry)).await.unwrap();
    let index = format!("{PREFIX}~i:{{t:short-lived}}");
    let pttl: i64 = server
        .command(&["PTTL", &index])
        .to_string()
        .trim()
        .parse()
        .unwrap();
    // The entry's retention plus a little slack for clock skew.
    assert!(pttl > 0 && pttl <= 300 + 10, "index PTTL {pttl}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        server.command(&["DBSIZE"]).to_string().trim(),
        "0",
        "nothing outlives its entry"
    );
}

#[tokio::test]
async fn a_dead_redis_makes_fast_errors_and_a_restarted_one_is_used_again() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::standalone(&server.url())
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(50))
        .breaker(3, Duration::from_millis(300))
        .build()
        .unwrap();
    let entry = response_entry("/survives", &[], None);
    store.put(Arc::new(entry.clone())).await.unwrap();
    assert!(store.get(&entry.key).await.unwrap().is_some());

    server.stop();
    let started = Instant::now();
    for _ in 0..10 {
        assert!(store.get(&entry.key).await.is_err());
    }
    assert!(store.is_unavailable(), "the breaker opened");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "errors come fast: {:?}",
        started.elapsed()
    );
    assert!(!store.probe().await.ok);

    server.restart();
    // The data is gone with the process (no persistence); the store must
    // work again without being rebuilt.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if store.probe().await.ok && store.put(Arc::new(entry.clone())).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "store did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.get(&entry.key).await.unwrap().is_some());
    assert!(!store.is_unavailable());
}

#[tokio::test]
async fn cluster_spreads_keys_over_slots_and_invalidation_still_completes() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let store = RedisStore::cluster(cluster.urls())
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let entries: Vec<Entry> = (0..60)
        .map(|i| response_entry(&format!("/api/items/{i}/"), &["items"], None))
        .collect();
    for entry in &entries {
        store.put(Arc::new(entry.clone())).await.unwrap();
    }
    for entry in &entries {
        assert_eq!(
            *store.get(&entry.key).await.unwrap().expect("stored"),
            *entry
        );
    }
    // Every master holds some of them.
    let holding = cluster
        .nodes()
        .iter()
        .filter(|node| node.command(&["DBSIZE"]).to_string().trim() != "0")
        .count();
    assert_eq!(holding, 3, "keys spread over the three masters");

    let dropped = store
        .invalidate(&Invalidation::Tag("items".into()))
        .await
        .unwrap();
    assert_eq!(dropped, 60);
    for entry in &entries {
        assert!(store.get(&entry.key).await.unwrap().is_none());
    }

    for entry in &entries {
        store.put(Arc::new(entry.clone())).await.unwrap();
    }
    let dropped = store
        .invalidate(&Invalidation::Prefix("/api/items/".into()))
        .await
        .unwrap();
    assert_eq!(dropped, 60);
    for entry in &entries[..5] {
        store.put(Arc::new(entry.clone())).await.unwrap();
    }
    store.invalidate(&Invalidation::All).await.unwrap();
    for node in cluster.nodes() {
        assert_eq!(node.command(&["DBSIZE"]).to_string().trim(), "0");
    }
}

#[tokio::test]
async fn a_short_prefix_drops_values_but_never_http_entries_or_indexes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    let page = response_entry("/api/page/", &["pages"], None);
    store.put(Arc::new(page.clone())).await.unwrap();
    let value = Entry {
        key: format!("{PREFIX}hello"),
        name: "hello".to_owned(),
        user: None,
        tags: Vec::new(),
        stored_at: now(),
        ttl: Duration::from_secs(60),
        stale: Duration::ZERO,
        kind: EntryKind::Value(Bytes::from_static(b"1")),
    };
    store.put(Arc::new(value.clone())).await.unwrap();
    // "h" is the start of "hello" and of every "http:" key.
    assert_eq!(
        store
            .invalidate(&Invalidation::Prefix("h".into()))
            .await
            .unwrap(),
        1
    );
    assert!(store.get(&value.key).await.unwrap().is_none());
    assert!(store.get(&page.key).await.unwrap().is_some());
    assert_eq!(
        store
            .invalidate(&Invalidation::Tag("pages".into()))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_cache_refuses_a_store_built_for_another_prefix() {
    // No server: building connects lazily, and the check comes first.
    let store = RedisStore::standalone("redis://127.0.0.1:1/")
        .prefix("thebot:staging:")
        .build()
        .unwrap();
    let refused = strata_core::Cache::builder()
        .prefix("thebot", "production")
        .store(Arc::new(store.clone()))
        .try_build()
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("\"thebot:staging:\"") && message.contains("\"thebot:production:\""),
        "{message}"
    );
    let tiered =
        strata_redis::TieredStore::new(strata_core::MemoryStore::new(1 << 20), store.clone())
            .unwrap();
    assert!(
        strata_core::Cache::builder()
            .prefix("thebot", "production")
            .store(Arc::new(tiered))
            .try_build()
            .is_err()
    );
    strata_core::Cache::builder()
        .prefix("thebot", "staging")
        .store(Arc::new(store))
        .try_build()
        .unwrap();
}

/// A master fails (and, with no replica, its slots go unserved): clear
/// and prefix invalidation cannot reach its keys, so they report failure
/// instead of success, and succeed again once it is back. (Before, the
/// walk skipped the failing shard and reported success; its entries were
/// served again when it returned.)
#[tokio::test]
async fn clear_and_prefix_invalidation_fail_while_a_shard_is_unreachable() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let store = RedisStore::cluster(cluster.urls())
        .prefix(PREFIX)
        .op_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let entries: Vec<Entry> = (0..30)
        .map(|i| response_entry(&format!("/api/shards/{i}/"), &[], None))
        .collect();
    for entry in &entries {
        store.put(Arc::new(entry.clone())).await.unwrap();
    }
    let down = 2;
    // An entry only the failing shard holds: a prefix naming it matches
    // nothing on the shards that answer.
    let only_there = entries
        .iter()
        .find(|entry| {
            cluster.nodes()[down]
                .command(&["EXISTS", &entry.key])
                .to_string()
                .trim()
                == "1"
        })
        .expect("the shard that fails holds some entries")
        .name
        .clone();
    cluster.nodes_mut()[down].stop();
    // Wait until the others flag it failing (cluster-node-timeout 2 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = cluster.nodes()[0]
            .command(&["CLUSTER", "NODES"])
            .to_string();
        if nodes.lines().any(|line| line.contains("master,fail ")) {
            break;
        }
        assert!(Instant::now() < deadline, "never flagged failing: {nodes}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for what in [Invalidation::Prefix(only_there), Invalidation::All] {
        let result = store.invalidate(&what).await;
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.to_string().contains("no master")),
            "{what:?}: {result:?}"
        );
    }

    cluster.nodes_mut()[down].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if store.invalidate(&Invalidation::All).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "clear never succeeded again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
