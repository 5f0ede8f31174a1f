//! The hit path, in process: a cloned axum `Router` called with
//! `tower::ServiceExt::oneshot` (no socket) on a current-thread tokio
//! runtime, the whole body read each time.
//!
//! Cases, side by side in one group:
//!
//! - `prebuilt_bytes`: no cache layer, a handler returning a pre-built
//!   2 KiB JSON `Bytes` (the baseline a hit is compared with);
//! - `strata_hit`: the same route behind `cache.layer()` with
//!   `CachePolicy::public(600 s)`, warmed, every request a memory hit;
//! - `strata_hit_304`: the hit with a matching `If-None-Match`;
//! - `strata_hit_private`: a private route, warmed for user `x-user: 42`;
//! - `strata_miss_pass`: a route without policy behind the layer.
//!
//! Run with `cargo bench -p strata-bench --bench hit_path`. Instruction counts of the same
//! cases come from `benches/hit_path_profile.rs` (see docs/BENCHMARKS.md).

#[path = "support/cases.rs"]
mod cases;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

fn hit_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = cases::json_body();
    assert_eq!(body.len(), 2048);
    let mut group = c.benchmark_group("hit_path");
    for case in cases::CASES {
        let prepared = runtime.block_on(cases::prepare(case, &body));
        group.bench_function(case.name(), |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(prepared.run_once().await) });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(100)
}

criterion_group! {
    name = benches;
    config = config();
    targets = hit_path
}
criterion_main!(benches);
