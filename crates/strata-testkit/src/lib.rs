//! Test support for strata (placeholder, being written).
