//! The `metrics` feature: figures reach an installed recorder with the
//! values the cache measured.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::{Router, routing::get};
use common::{TestServer, header};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use strata::{Cache, CachePolicy};

/// `name{layer}` -> value, as the debugging recorder saw them.
fn recorded(cache: &Cache) -> HashMap<String, f64> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || cache.handle().record_metrics());
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let layer = key
                .labels()
                .find(|label| label.key() == "layer")
                .map(|label| format!("{{{}}}", label.value()))
                .unwrap_or_default();
            let value = match value {
                DebugValue::Counter(value) => value as f64,
                DebugValue::Gauge(value) => value.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            };
            (format!("{}{layer}", key.name()), value)
        })
        .collect()
}

#[tokio::test]
async fn recorded_metrics_are_the_measured_figures() {
    let cache = Cache::builder().build();
    let app = Router::new()
        .route(
            "/a",
            get(|| async { "a" }).layer(CachePolicy::public(Duration::from_secs(60)).tag("t")),
        )
        .route("/plain", get(|| async { "plain" }))
        .layer(cache.layer());
    let server = TestServer::start(app).await;

    let miss = server.get("/a").send().await.unwrap();
    let etag = header(&miss, "etag");
    server.get("/a").send().await.unwrap();
    server.get("/a").send().await.unwrap();
    let not_modified = server
        .get("/a")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    server.get("/plain").send().await.unwrap();
    cache.handle().invalidate_tag("t").await.unwrap();
    server.get("/a").send().await.unwrap();

    let stats = cache.handle().stats();
    let metrics = recorded(&cache);
    // Hits: two plain hits and the 304; misses: first and after invalidation.
    assert_eq!(metrics["strata_hits_total"], 3.0);
    assert_eq!(metrics["strata_misses_total"], 2.0);
    assert_eq!(metrics["strata_stores_total"], 2.0);
    assert_eq!(metrics["strata_not_modified_total"], 1.0);
    assert_eq!(metrics["strata_bypasses_total"], 1.0);
    assert_eq!(metrics["strata_invalidations_total"], 1.0);
    assert_eq!(metrics["strata_fenced_total"], 0.0, "nothing was filling");
    assert_eq!(metrics["strata_errors_total"], 0.0);
    assert!((metrics["strata_hit_ratio"] - 0.6).abs() < 1e-9);
    assert_eq!(metrics["strata_entries"], stats.entries as f64);
    assert_eq!(metrics["strata_bytes"], stats.bytes as f64);
    assert!(stats.entries >= 1 && stats.bytes > 0);
    assert_eq!(
        metrics["strata_layer_entries{memory}"],
        stats.entries as f64
    );
    assert_eq!(metrics["strata_layer_bytes{memory}"], stats.bytes as f64);
    // The memory store counts its own lookups: three found the entry.
    assert_eq!(metrics["strata_layer_hits_total{memory}"], 3.0);
    assert_eq!(
        metrics["strata_layer_hits_total{memory}"],
        stats.layers[0].hits.unwrap() as f64
    );
    assert!(metrics["strata_layer_misses_total{memory}"] >= 2.0);

    // After a reset the counters read zero again.
    cache.handle().reset_stats();
    let metrics = recorded(&cache);
    assert_eq!(metrics["strata_hits_total"], 0.0);
    assert_eq!(
        metrics["strata_entries"], stats.entries as f64,
        "entries stay"
    );
}

/// Every metric the cache emits is described (unit and help text: the
/// `# HELP` line of a Prometheus exporter).
#[tokio::test]
async fn every_emitted_metric_is_described() {
    let cache = Cache::builder().build();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || cache.handle().record_metrics());
    let emitted = snapshotter.snapshot().into_vec();
    assert!(emitted.len() >= 10, "{} metrics", emitted.len());
    for (key, _unit, help, _) in emitted {
        let name = key.key().name().to_owned();
        assert!(
            help.is_some_and(|help| !help.is_empty()),
            "{name} has no description"
        );
    }
}
