//! A hit served from Redis (L2) beside a hit served from process memory
//! (L1) and a bare Redis `GET` of the same size: `l2_hit` is a cache over
//! a `RedisStore` alone, `tiered_l2_hit` a `TieredStore` whose memory layer
//! admits nothing (so every hit reads Redis), on a redis-server this
//! bench starts on a free port (strata-testkit). Also counts the Redis
//! commands one L2 hit costs (`INFO commandstats`; the target is one
//! round trip, one command).
//!
//! Run with `cargo bench -p strata-bench --bench l2_hit`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use strata::redis::{RedisStore, TieredStore};
use strata::{Cache, CachePolicy, MemoryStore};
use strata_testkit::RedisServer;
use tower::ServiceExt;

const PATH: &str = "/api/materials/";

fn body() -> Bytes {
    let item = r#"{"id":1,"title":"Algebra I","kind":"lesson"},"#;
    let mut out = String::from("[");
    while out.len() + item.len() < 2047 {
        out.push_str(item);
    }
    out.truncate(out.len() - 1);
    while out.len() < 2047 {
        out.push(' ');
    }
    out.push(']');
    Bytes::from(out)
}

fn app(cache: &Cache, body: Bytes) -> Router {
    Router::new()
        .route(
            PATH,
            get(move || {
                let body = body.clone();
                async move { body }
            })
            .layer(CachePolicy::public(Duration::from_secs(600))),
        )
        .layer(cache.layer())
        .with_state(())
}

async fn hit(router: &Router) -> (String, usize) {
    let request = Request::get(PATH).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.len())
}

/// Total calls of every command so far, and of GET.
fn command_calls(server: &RedisServer) -> (u64, u64) {
    let stats = server.command(&["INFO", "commandstats"]).to_string();
    let mut total = 0;
    let mut gets = 0;
    for line in stats.lines() {
        let Some((name, rest)) = line.split_once(":calls=") else {
            continue;
        };
        let calls: u64 = rest
            .split(',')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // INFO itself is not the cache's doing.
        if name.ends_with("info") {
            continue;
        }
        total += calls;
        if name == "cmdstat_get" {
            gets += calls;
        }
    }
    (total, gets)
}

fn l2_hit(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = body();

    let memory = Cache::builder().prefix("bench", "l1").build();
    let l1 = app(&memory, body.clone());
    let redis = runtime.block_on(async {
        RedisStore::standalone(&server.url())
            .prefix("bench:l2:")
            .op_timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    });
    let remote = Cache::builder()
        .prefix("bench", "l2")
        .store(Arc::new(redis))
        .build();
    let l2 = app(&remote, body.clone());
    // A tiered store whose memory layer admits nothing: every hit is read
    // from Redis with GET and PTTL pipelined (the promotion needs the TTL).
    let tiered = runtime.block_on(async {
        let redis = RedisStore::standalone(&server.url())
            .prefix("bench:tiered:")
            .op_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        TieredStore::new(MemoryStore::new(0), redis).unwrap()
    });
    let tiered_cache = Cache::builder()
        .prefix("bench", "tiered")
        .store(Arc::new(tiered))
        .build();
    let tiered_l2 = app(&tiered_cache, body.clone());

    runtime.block_on(async {
        for router in [&l1, &l2, &tiered_l2] {
            hit(router).await;
            let (status, len) = hit(router).await;
            assert_eq!(status, "strata; hit");
            assert_eq!(len, body.len());
        }
        // Redis commands per L2 hit.
        for (name, router) in [("l2_hit", &l2), ("tiered_l2_hit", &tiered_l2)] {
            let (before, gets_before) = command_calls(&server);
            let n = 1000;
            for _ in 0..n {
                assert_eq!(hit(router).await.0, "strata; hit");
            }
            let (after, gets_after) = command_calls(&server);
            println!(
                "{name}: {:.3} Redis commands per hit ({:.3} GET), {n} hits",
                (after - before) as f64 / f64::from(n),
                (gets_after - gets_before) as f64 / f64::from(n),
            );
        }
    });

    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = runtime
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    runtime.block_on(async {
        redis::cmd("SET")
            .arg("bench:raw")
            .arg(body.as_ref())
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group("l2_hit");
    group.bench_function("l1_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(hit(&l1).await) });
    });
    group.bench_function("l2_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(hit(&l2).await) });
    });
    group.bench_function("tiered_l2_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(hit(&tiered_l2).await) });
    });
    group.bench_function("redis_get_2k", |b| {
        b.to_async(&runtime).iter(|| {
            let mut raw = raw.clone();
            async move {
                let value: Vec<u8> = redis::cmd("GET")
                    .arg("bench:raw")
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                black_box(value.len())
            }
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = l2_hit
}
criterion_main!(benches);
