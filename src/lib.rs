#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! This facade re-exports [`strata_core`]; see its documentation for every
//! module.

pub use strata_core::*;
