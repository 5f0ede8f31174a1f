//! Runs one hit-path case of `benches/hit_path.rs` a fixed number of times,
//! for instruction counts under callgrind:
//!
//! ```text
//! cargo build --release -p strata-bench --example hit_path_profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/hit_path_profile strata_hit 100000
//! ```
//!
//! Instructions per request = (Ir at N − Ir at a small N) / (difference in
//! N), which removes setup and warm-up. Cases: `prebuilt_bytes`,
//! `strata_hit`, `strata_hit_304`, `strata_hit_private`, `strata_miss_pass`.

#[path = "support/cases.rs"]
mod cases;

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hit_path_profile <case> <iterations>";
    let name = args.next().expect(usage);
    let iterations: u64 = args.next().expect(usage).parse().expect(usage);
    let Some(case) = cases::CASES.into_iter().find(|case| case.name() == name) else {
        let names: Vec<_> = cases::CASES.iter().map(|c| c.name()).collect();
        panic!("unknown case {name:?}; one of {names:?}");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = cases::json_body();
    let bytes = runtime.block_on(async {
        let prepared = cases::prepare(case, &body).await;
        let mut bytes = 0usize;
        for _ in 0..iterations {
            let (_, len) = black_box(prepared.run_once().await);
            bytes += len;
        }
        bytes
    });
    println!("{name}: {iterations} requests, {bytes} body bytes");
}
