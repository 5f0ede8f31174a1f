//! The one error type of `strata-core`.

/// Errors that `strata-core` reports to the application.
///
/// None of these ever reaches an HTTP client: the layer turns store failures
/// into misses and counts them (see [`StatsSnapshot::errors`](crate::StatsSnapshot::errors)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store could not do what was asked (connection refused, timeout, ...).
    #[error("cache store error: {0}")]
    Store(String),
    /// A configuration value could not be read.
    #[error("invalid cache configuration: {0}")]
    Config(String),
}

/// The result type of `strata-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
