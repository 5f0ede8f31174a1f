//! A side-by-side measurement, not a check: publish-to-delivery latency
//! of the bus on a 3-master testkit cluster, broadcast pub/sub (what the
//! bus used before) against sharded pub/sub (what it uses now). Run with
//!
//! ```text
//! cargo test -p strata-redis --test bus_latency -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::{AsyncConnectionConfig, Client, PushKind};
use strata_core::MemoryStore;
use strata_core::store::{Invalidation, Store};
use strata_redis::{RedisStore, TieredStore};
use strata_testkit::{RedisCluster, Reply};

const CHANNEL: &str = "test:latency:~bus";
const ROUNDS: usize = 300;
/// Quiet between messages, as between real invalidations.
const GAP: Duration = Duration::from_millis(5);

/// Prints the percentiles; returns p90 and p99.
fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{name:<46} p50 {:>9.3?} p90 {:>9.3?} p99 {:>9.3?} max {:>9.3?}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    (at(0.9), at(0.99))
}

/// `PUBLISH` through the cluster client (routed to the channel's slot
/// owner, as the bus did), received by `SUBSCRIBE` on `listener`.
async fn broadcast(urls: &[String], listener: &str) -> Vec<Duration> {
    let cluster = redis::cluster::ClusterClient::new(urls.to_vec()).unwrap();
    let mut publisher = cluster.get_async_connection().await.unwrap();
    let mut pubsub = Client::open(listener)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(CHANNEL).await.unwrap();
    let mut messages = pubsub.on_message();
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        tokio::time::sleep(GAP).await;
        let sent = Instant::now();
        redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(i)
            .query_async::<()>(&mut publisher)
            .await
            .unwrap();
        messages.next().await.unwrap();
        samples.push(sent.elapsed());
    }
    samples
}

/// `SPUBLISH` and `SSUBSCRIBE` on the channel's master, as the bus does.
async fn sharded(owner: &str) -> Vec<Duration> {
    let mut publisher = Client::open(owner)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let resp3 = format!("{owner}?protocol=resp3");
    let mut subscriber = Client::open(resp3.as_str())
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &AsyncConnectionConfig::new().set_push_sender(tx),
        )
        .await
        .unwrap();
    redis::cmd("SSUBSCRIBE")
        .arg(CHANNEL)
        .query_async::<redis::Value>(&mut subscriber)
        .await
        .unwrap();
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        tokio::time::sleep(GAP).await;
        let sent = Instant::now();
        redis::cmd("SPUBLISH")
            .arg(CHANNEL)
            .arg(i)
            .query_async::<()>(&mut publisher)
            .await
            .unwrap();
        while pushes.recv().await.unwrap().kind != PushKind::SMessage {}
        samples.push(sent.elapsed());
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn publish_to_delivery_broadcast_against_sharded() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let urls = cluster.urls();
    let owner = (0..3)
        .find(|i| {
            matches!(
                cluster.nodes()[*i].command(&["EXISTS", CHANNEL]),
                Reply::Integer(_)
            )
        })
        .unwrap();
    let other = (owner + 1) % 3;
    let (mut cross, mut local, mut shard) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so load on the machine hits all three alike.
    for _ in 0..3 {
        cross.extend(broadcast(&urls, &urls[other]).await);
        local.extend(broadcast(&urls, &urls[owner]).await);
        shard.extend(sharded(&urls[owner]).await);
    }
    let cross = summary("PUBLISH, subscriber on another node", cross);
    let local = summary("PUBLISH, subscriber on the slot's owner", local);
    let shard = summary("SPUBLISH/SSUBSCRIBE on the slot's owner", shard);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    eprintln!(
        "broadcast across nodes / sharded: p90 {:.1}x, p99 {:.1}x; \
         broadcast on the owner / sharded: p90 {:.1}x, p99 {:.1}x",
        ratio(cross.0, shard.0),
        ratio(cross.1, shard.1),
        ratio(local.0, shard.0),
        ratio(local.1, shard.1)
    );

    // End to end through two tiered stores: A's invalidate returns, then
    // how long until B's memory has dropped the entry.
    let build = || {
        let redis = RedisStore::cluster(urls.clone())
            .prefix("test:latency:")
            .op_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        TieredStore::new(MemoryStore::new(16 << 20), redis).unwrap()
    };
    let (a, b) = (build(), build());
    assert!(a.wait_subscribed(Duration::from_secs(5)).await);
    assert!(b.wait_subscribed(Duration::from_secs(5)).await);
    let mut heard = Vec::new();
    for i in 0..100 {
        let key = format!("test:latency:k{i}");
        b.memory().put_entry(Arc::new(strata_core::Entry {
            key: key.clone(),
            name: format!("/k{i}"),
            user: None,
            tags: Vec::new(),
            stored_at: std::time::SystemTime::now(),
            ttl: Duration::from_secs(60),
            stale: Duration::ZERO,
            kind: strata_core::EntryKind::Response(strata_core::CachedResponse::new(
                http::StatusCode::OK,
                http::HeaderMap::new(),
                bytes::Bytes::from_static(b"x"),
                std::time::SystemTime::now(),
            )),
        }));
        let started = Instant::now();
        a.invalidate(&Invalidation::Key(key.clone())).await.unwrap();
        while b.memory().get_entry(&key).is_some() {
            tokio::task::yield_now().await;
        }
        heard.push(started.elapsed());
    }
    summary("tiered: A.invalidate(key) start to B's L1 drop", heard);
}
