//! Side-by-side benchmarks of strata and the other Rust HTTP caches for
//! tower. Everything lives in the bench targets:
//!
//! ```sh
//! cargo bench -p strata-compare --bench compare -- --quick
//! cargo bench -p strata-compare --bench memory
//! ```
