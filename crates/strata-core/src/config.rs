//! Configuration from serde or the environment: prefix, sizes, Redis
//! switch and the named TTL profiles.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::builder::{CacheBuilder, DEFAULT_MAX_BODY};
use crate::error::Error;
use crate::key::DEFAULT_MAX_KEY_LEN;
use crate::store::DEFAULT_MEMORY_BYTES;

/// Named TTLs, in seconds, so routes say `profiles.get("reports")` and
/// operators tune one table. A name that is missing falls back to
/// `default`, which is 300 s unless set.
///
/// The application names its own profiles; the environment
/// (`CACHE_TTL_<NAME>`) or a config file then overrides them by name.
///
/// ```
/// use std::time::Duration;
/// use strata::TtlProfiles;
///
/// let mut profiles = TtlProfiles::default().with("reports", Duration::from_secs(60));
/// assert_eq!(profiles.get("reports"), Duration::from_secs(60));
/// assert_eq!(profiles.get("no_such_profile"), Duration::from_secs(300));
///
/// // What the deployment says wins over what the application said.
/// let mut deployed = TtlProfiles::default();
/// deployed.set("reports", Duration::from_secs(120));
/// profiles.override_with(&deployed);
/// assert_eq!(profiles.get("reports"), Duration::from_secs(120));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TtlProfiles(BTreeMap<String, u64>);

/// A table read from a config file adds to the default and overrides it,
/// as `CACHE_TTL_*` variables do.
impl<'de> Deserialize<'de> for TtlProfiles {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let given = BTreeMap::<String, u64>::deserialize(deserializer)?;
        let mut profiles = Self::default();
        profiles.0.extend(given);
        Ok(profiles)
    }
}

/// The TTL of a profile nobody named: 300 s.
const DEFAULT_PROFILE_SECS: u64 = 300;

impl Default for TtlProfiles {
    /// Only `default`: 300 s.
    fn default() -> Self {
        Self(BTreeMap::from([(
            "default".to_owned(),
            DEFAULT_PROFILE_SECS,
        )]))
    }
}

impl TtlProfiles {
    /// The TTL of `name`, or of `default` when `name` is not in the table
    /// (300 s when neither is).
    pub fn get(&self, name: &str) -> Duration {
        let secs = self
            .0
            .get(name)
            .or_else(|| self.0.get("default"))
            .copied()
            .unwrap_or(DEFAULT_PROFILE_SECS);
        Duration::from_secs(secs)
    }

    /// This table with `name` set to `ttl` (for building one in code).
    pub fn with(mut self, name: impl Into<String>, ttl: Duration) -> Self {
        self.set(name, ttl);
        self
    }

    /// Sets every profile `overrides` has, keeping the others: what a
    /// deployment's config or environment says wins over the application's
    /// own table.
    pub fn override_with(&mut self, overrides: &TtlProfiles) {
        self.0
            .extend(overrides.0.iter().map(|(name, secs)| (name.clone(), *secs)));
    }

    /// Sets (or adds) a profile.
    pub fn set(&mut self, name: impl Into<String>, ttl: Duration) {
        self.0.insert(name.into(), ttl.as_secs());
    }

    /// Every profile, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.0
            .iter()
            .map(|(name, secs)| (name.as_str(), Duration::from_secs(*secs)))
    }
}

/// Everything a deployment sets about the cache. Deserialise it from a
/// config file (every field has a default), or read it from the
/// environment with [`Config::from_env`].
///
/// ```
/// let config: strata::Config =
///     serde_json::from_str(r#"{"env": "production", "ttl": {"reports": 120}}"#).unwrap();
/// assert_eq!(config.key_prefix(), "strata:production:");
/// assert_eq!(config.ttl.get("reports").as_secs(), 120);
/// assert_eq!(config.ttl.get("other").as_secs(), 300, "default falls back to 300 s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Application name, the first part of the key prefix.
    pub app: String,
    /// Environment (`CACHE_ENV`), the second part of the key prefix.
    pub env: String,
    /// Whether to put Redis behind the memory store (`USE_REDIS_CACHE`).
    pub use_redis: bool,
    /// The Redis URL (`REDIS_URL`), e.g. `redis://127.0.0.1:6379/1`.
    pub redis_url: Option<String>,
    /// Redis Cluster node URLs (`REDIS_CLUSTER_URLS`, comma-separated).
    /// When set, Redis is used as a cluster through these nodes and
    /// `redis_url` is not needed.
    pub redis_cluster_urls: Vec<String>,
    /// The bound on one Redis operation, in milliseconds
    /// (`CACHE_REDIS_TIMEOUT_MS`, default 50).
    pub redis_timeout_ms: u64,
    /// With Redis, how long after an invalidation another instance may
    /// still serve what it names from memory when the bus stalls or
    /// breaks, in milliseconds (`CACHE_STALENESS_BOUND_MS`, default 1000,
    /// at least 20; see `TieredStore::with_staleness_bound`).
    pub staleness_bound_ms: u64,
    /// Memory store capacity in bytes.
    pub memory_bytes: u64,
    /// Largest body stored, in bytes.
    pub max_body_bytes: usize,
    /// Keys longer than this are hashed.
    pub max_key_len: usize,
    /// Named TTLs.
    pub ttl: TtlProfiles,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app: "strata".to_owned(),
            env: "development".to_owned(),
            use_redis: false,
            redis_url: None,
            redis_cluster_urls: Vec::new(),
            redis_timeout_ms: 50,
            staleness_bound_ms: 1000,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            ttl: TtlProfiles::default(),
        }
    }
}

impl Config {
    /// The defaults, overridden by the process environment: `CACHE_APP`,
    /// `CACHE_ENV`, `USE_REDIS_CACHE` (`true`/`1`/`yes`/`on`, any case),
    /// `REDIS_URL`, `REDIS_CLUSTER_URLS`, `CACHE_REDIS_TIMEOUT_MS`,
    /// `CACHE_STALENESS_BOUND_MS`, `CACHE_MEMORY_BYTES`, `CACHE_MAX_BODY_BYTES`, and
    /// `CACHE_TTL_<PROFILE>` in seconds (e.g. `CACHE_TTL_REPORTS=120`).
    pub fn from_env() -> Result<Self, Error> {
        let mut config = Self::from_lookup(|name| std::env::var(name).ok())?;
        for (name, value) in std::env::vars() {
            if let Some(profile) = name.strip_prefix("CACHE_TTL_") {
                let secs = parse_number::<u64>(&name, &value)?;
                config
                    .ttl
                    .set(profile.to_ascii_lowercase(), Duration::from_secs(secs));
            }
        }
        Ok(config)
    }

    /// Like [`from_env`](Self::from_env), reading variables through
    /// `lookup` (without the `CACHE_TTL_*` scan), so tests need not touch
    /// the process environment.
    ///
    /// ```
    /// let config = strata::Config::from_lookup(|name| match name {
    ///     "CACHE_ENV" => Some("production".to_owned()),
    ///     "USE_REDIS_CACHE" => Some("True".to_owned()),
    ///     "REDIS_URL" => Some("redis://127.0.0.1:6379/1".to_owned()),
    ///     _ => None,
    /// }).unwrap();
    /// assert!(config.use_redis);
    /// assert_eq!(config.key_prefix(), "strata:production:");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut config = Self::default();
        if let Some(app) = lookup("CACHE_APP") {
            config.app = app;
        }
        if let Some(env) = lookup("CACHE_ENV") {
            config.env = env;
        }
        if let Some(flag) = lookup("USE_REDIS_CACHE") {
            config.use_redis = parse_flag("USE_REDIS_CACHE", &flag)?;
        }
        config.redis_url = lookup("REDIS_URL").filter(|url| !url.trim().is_empty());
        if let Some(urls) = lookup("REDIS_CLUSTER_URLS") {
            config.redis_cluster_urls = urls
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(millis) = lookup("CACHE_REDIS_TIMEOUT_MS") {
            config.redis_timeout_ms = parse_number("CACHE_REDIS_TIMEOUT_MS", &millis)?;
        }
        if let Some(millis) = lookup("CACHE_STALENESS_BOUND_MS") {
            config.staleness_bound_ms = parse_number("CACHE_STALENESS_BOUND_MS", &millis)?;
        }
        if let Some(bytes) = lookup("CACHE_MEMORY_BYTES") {
            config.memory_bytes = parse_number("CACHE_MEMORY_BYTES", &bytes)?;
        }
        if let Some(bytes) = lookup("CACHE_MAX_BODY_BYTES") {
            config.max_body_bytes = parse_number("CACHE_MAX_BODY_BYTES", &bytes)?;
        }
        if config.use_redis && config.redis_url.is_none() && config.redis_cluster_urls.is_empty() {
            return Err(Error::Config(
                "USE_REDIS_CACHE is on but neither REDIS_URL nor REDIS_CLUSTER_URLS is set"
                    .to_owned(),
            ));
        }
        Ok(config)
    }

    /// `{app}:{env}:`.
    pub fn key_prefix(&self) -> String {
        format!("{}:{}:", self.app, self.env)
    }

    /// A cache builder with this configuration's prefix and sizes (the
    /// memory store; `strata-redis` adds the Redis part).
    pub fn builder(&self) -> CacheBuilder {
        CacheBuilder::default()
            .prefix(&self.app, &self.env)
            .max_key_len(self.max_key_len)
            .memory(self.memory_bytes)
            .max_body(self.max_body_bytes)
    }
}

fn parse_flag(name: &str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(Error::Config(format!("{name}={other:?} is not a boolean"))),
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::Config(format!("{name}={value:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_name_no_application_profiles() {
        let config = Config::default();
        assert_eq!(config.key_prefix(), "strata:development:");
        for name in ["default", "materials_list", "anything"] {
            assert_eq!(config.ttl.get(name), Duration::from_secs(300), "{name}");
        }
        assert_eq!(config.ttl.iter().count(), 1, "only `default`");
        assert!(!config.use_redis);
    }

    #[test]
    fn environment_switches_redis_on() {
        let config = Config::from_lookup(lookup(&[
            ("CACHE_APP", "thebot"),
            ("CACHE_ENV", "production"),
            ("USE_REDIS_CACHE", "TRUE"),
            ("REDIS_URL", "redis://127.0.0.1:6379/1"),
        ]))
        .unwrap();
        assert_eq!(config.key_prefix(), "thebot:production:");
        assert!(config.use_redis);
        assert_eq!(config.staleness_bound_ms, 1000, "the default");
        let bound = Config::from_lookup(lookup(&[("CACHE_STALENESS_BOUND_MS", "250")])).unwrap();
        assert_eq!(bound.staleness_bound_ms, 250);
        assert_eq!(
            config.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379/1")
        );
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err = Config::from_lookup(lookup(&[("USE_REDIS_CACHE", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("USE_REDIS_CACHE"), "{err}");
        let err = Config::from_lookup(lookup(&[("USE_REDIS_CACHE", "1")])).unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
        let err = Config::from_lookup(lookup(&[("CACHE_MEMORY_BYTES", "lots")])).unwrap_err();
        assert!(err.to_string().contains("CACHE_MEMORY_BYTES"), "{err}");
        let err = Config::from_lookup(lookup(&[("CACHE_STALENESS_BOUND_MS", "1s")])).unwrap_err();
        assert!(
            err.to_string().contains("CACHE_STALENESS_BOUND_MS"),
            "{err}"
        );
    }

    #[test]
    fn a_ttl_table_from_config_overrides_the_applications_by_name() {
        let config: Config = serde_json::from_str(r#"{"ttl": {"reports": 120}}"#).unwrap();
        assert_eq!(config.ttl.get("reports"), Duration::from_secs(120));
        assert_eq!(config.ttl.get("unnamed"), Duration::from_secs(300));
        let mut app = TtlProfiles::default()
            .with("reports", Duration::from_secs(60))
            .with("lists", Duration::from_secs(1800));
        app.override_with(&config.ttl);
        assert_eq!(
            app.get("reports"),
            Duration::from_secs(120),
            "deployment wins"
        );
        assert_eq!(
            app.get("lists"),
            Duration::from_secs(1800),
            "the rest stays"
        );
    }

    #[test]
    fn serde_round_trip_and_unknown_fields_rejected() {
        let config = Config::default();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), config);
        assert!(serde_json::from_str::<Config>(r#"{"nope": 1}"#).is_err());
    }
}
