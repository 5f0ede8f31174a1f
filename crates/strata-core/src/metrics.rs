//! The cache's figures through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`), so an app with a Prometheus (or any other)
//! exporter graphs them.
//!
//! Nothing is emitted per request: the hit path only bumps the cache's own
//! atomic counters. [`record`] reads them (with the store's per-layer
//! figures) and hands them to the installed recorder: counters as absolute
//! values, sizes as gauges. Call it on a timer
//! ([`CacheHandle::spawn_metrics`](crate::CacheHandle::spawn_metrics)) or
//! before each scrape. Counters go back to zero after `reset_stats`, which
//! Prometheus reads as a counter reset.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `strata_hits_total`, `strata_misses_total`, `strata_stores_total`, `strata_bypasses_total`, `strata_not_modified_total`, `strata_coalesced_total`, `strata_invalidations_total`, `strata_fenced_total`, `strata_errors_total`, `strata_evictions_total` | counter | |
//! | `strata_hit_ratio`, `strata_entries`, `strata_bytes` | gauge | |
//! | `strata_layer_hits_total`, `strata_layer_misses_total`, `strata_layer_errors_total`, `strata_layer_evictions_total`, `strata_layer_expirations_total` | counter | `layer` |
//! | `strata_layer_entries`, `strata_layer_bytes` | gauge | `layer` |
//!
//! A layer figure that is not measured (see [`StoreStats`](crate::StoreStats))
//! is not emitted. Every metric is described (unit and help text, the
//! `# HELP` line of a Prometheus exporter) by [`describe`], which
//! [`record`] calls.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::stats::StatsSnapshot;

/// Every counter, with what it counts (the `# HELP` line of a Prometheus
/// exporter).
const COUNTERS: [(&str, &str); 15] = [
    (
        "strata_hits_total",
        "GET and HEAD requests answered from the cache",
    ),
    (
        "strata_misses_total",
        "requests that went to the service with a response the cache stored or meant to store",
    ),
    ("strata_stores_total", "responses written to the store"),
    (
        "strata_bypasses_total",
        "requests that went to the service with a response the cache would not store",
    ),
    ("strata_not_modified_total", "304 responses sent"),
    (
        "strata_coalesced_total",
        "requests answered by another request's fill",
    ),
    (
        "strata_invalidations_total",
        "invalidations made through this cache",
    ),
    (
        "strata_fenced_total",
        "fills not stored because an invalidation since their start named them",
    ),
    (
        "strata_errors_total",
        "errors of the cache and its store layers",
    ),
    ("strata_evictions_total", "entries evicted for room"),
    ("strata_layer_hits_total", "lookups a store layer answered"),
    (
        "strata_layer_misses_total",
        "lookups a store layer did not answer",
    ),
    ("strata_layer_errors_total", "errors of a store layer"),
    (
        "strata_layer_evictions_total",
        "entries a store layer evicted for room",
    ),
    (
        "strata_layer_expirations_total",
        "entries a store layer dropped at the end of their life",
    ),
];

/// Every gauge, with its unit and what it measures.
const GAUGES: [(&str, Unit, &str); 5] = [
    (
        "strata_hit_ratio",
        Unit::Count,
        "hits over hits and misses, 0 to 1",
    ),
    ("strata_entries", Unit::Count, "entries held in memory"),
    ("strata_bytes", Unit::Bytes, "bytes held in memory"),
    (
        "strata_layer_entries",
        Unit::Count,
        "entries a store layer holds",
    ),
    (
        "strata_layer_bytes",
        Unit::Bytes,
        "bytes a store layer holds",
    ),
];

/// Describes every metric to the installed recorder (name, unit, help),
/// which a Prometheus exporter prints as `# HELP`. [`record`] calls it.
pub fn describe() {
    for (name, help) in COUNTERS {
        describe_counter!(name, Unit::Count, help);
    }
    for (name, unit, help) in GAUGES {
        describe_gauge!(name, unit, help);
    }
}

/// Hands every figure of `snapshot` to the installed `metrics` recorder
/// (describing each metric first: a recorder keeps the first description).
pub fn record(snapshot: &StatsSnapshot) {
    describe();
    for (name, value) in [
        ("strata_hits_total", snapshot.hits),
        ("strata_misses_total", snapshot.misses),
        ("strata_stores_total", snapshot.stores),
        ("strata_bypasses_total", snapshot.bypasses),
        ("strata_not_modified_total", snapshot.not_modified),
        ("strata_coalesced_total", snapshot.coalesced),
        ("strata_invalidations_total", snapshot.invalidations),
        ("strata_fenced_total", snapshot.fenced),
        ("strata_errors_total", snapshot.errors),
        ("strata_evictions_total", snapshot.evictions),
    ] {
        counter!(name).absolute(value);
    }
    gauge!("strata_hit_ratio").set(snapshot.hit_rate);
    gauge!("strata_entries").set(snapshot.entries as f64);
    gauge!("strata_bytes").set(snapshot.bytes as f64);
    for layer in &snapshot.layers {
        let label = layer.layer;
        for (name, value) in [
            ("strata_layer_hits_total", layer.hits),
            ("strata_layer_misses_total", layer.misses),
            ("strata_layer_errors_total", layer.errors),
            ("strata_layer_evictions_total", Some(layer.evictions)),
            ("strata_layer_expirations_total", Some(layer.expirations)),
        ] {
            if let Some(value) = value {
                counter!(name, "layer" => label).absolute(value);
            }
        }
        for (name, value) in [
            ("strata_layer_entries", layer.entries),
            ("strata_layer_bytes", layer.bytes),
        ] {
            if let Some(value) = value {
                gauge!(name, "layer" => label).set(value as f64);
            }
        }
    }
}
