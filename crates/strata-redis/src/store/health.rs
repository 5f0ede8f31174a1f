//! The redis layer's health: a probe by a short-lived write, and whether
//! Redis may evict what invalidation relies on.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use strata_core::store::Health;

use std::sync::Weak;

use super::{Inner, RedisStore};

impl RedisStore {
    /// Probes Redis directly (past the breaker) with a write: a short-lived
    /// key under the prefix, so a Redis that answers but refuses writes
    /// (`maxmemory` reached under `noeviction`, a read-only replica, an
    /// ACL) is reported as failing, as it is for the cache. A success
    /// closes the breaker.
    pub async fn probe(&self) -> Health {
        let started = Instant::now();
        let key = format!("{}~health", self.inner.prefix);
        let ping = async {
            let mut conn = self.handle().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg("1")
                .arg("PX")
                .arg(1000)
                .query_async::<()>(&mut conn)
                .await
        };
        let result = tokio::time::timeout(
            self.inner.op_timeout.max(Duration::from_millis(1)) * 4,
            ping,
        )
        .await;
        let latency = started.elapsed();
        let error = match result {
            Ok(Ok(_)) => {
                self.inner.breaker.success();
                self.eviction_risk().await
            }
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("timed out".to_owned()),
        };
        Health {
            layer: "redis",
            ok: error.is_none(),
            latency,
            error,
        }
    }
    /// Why Redis may evict what invalidation relies on, if it may: with a
    /// `maxmemory` and any `maxmemory-policy` but `noeviction`, Redis can
    /// evict the index sets (they are rarely read) and keep the entries
    /// they list, and an invalidation then misses those entries. `None`
    /// when the settings are safe, or cannot be read (`CONFIG` disabled,
    /// as on some managed services).
    async fn eviction_risk(&self) -> Option<String> {
        let settings = self.memory_settings().await.ok()?.ok()?;
        self.report_eviction_risk(&settings)
    }

    /// `CONFIG GET maxmemory maxmemory-policy`: `Err` when Redis did not
    /// answer, `Ok(Err)` when it refused (`CONFIG` disabled).
    async fn memory_settings(&self) -> Result<Result<Vec<String>, ()>, ()> {
        let read = async {
            let mut conn = self.handle().await?;
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory")
                .arg("maxmemory-policy")
                .query_async::<Vec<String>>(&mut conn)
                .await
        };
        let bound = self.inner.op_timeout.max(Duration::from_millis(1)) * 4;
        match tokio::time::timeout(bound, read).await {
            Ok(Ok(settings)) => Ok(Ok(settings)),
            Ok(Err(error)) if matches!(error.kind(), redis::ErrorKind::Server(_)) => Ok(Err(())),
            _ => Err(()),
        }
    }

    /// Checks the eviction settings once Redis first answers (trying for
    /// about a minute), so a risky `maxmemory-policy` is logged at start
    /// rather than at the first health probe.
    pub(super) async fn check_at_start(inner: Weak<Inner>) {
        for _ in 0..60 {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let store = RedisStore { inner };
            match store.memory_settings().await {
                Ok(Ok(settings)) => {
                    store.report_eviction_risk(&settings);
                    return;
                }
                Ok(Err(())) => return,
                Err(()) => {}
            }
            drop(store);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn report_eviction_risk(&self, settings: &[String]) -> Option<String> {
        let risk = eviction_risk(settings);
        if let Some(risk) = &risk
            && !self.inner.eviction_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("{risk}");
        }
        risk
    }
}

/// See [`RedisStore::eviction_risk`]: `settings` is the reply of `CONFIG
/// GET maxmemory maxmemory-policy`, names and values in turn.
fn eviction_risk(settings: &[String]) -> Option<String> {
    let get = |name: &str| {
        settings
            .chunks(2)
            .find(|pair| pair[0].eq_ignore_ascii_case(name))
            .and_then(|pair| pair.get(1))
    };
    let limited = get("maxmemory").is_some_and(|bytes| bytes.trim() != "0");
    let policy = get("maxmemory-policy")?;
    (limited && policy != "noeviction").then(|| {
        format!(
            "maxmemory-policy {policy} may evict the invalidation index sets, and an \
             invalidation then misses their entries: use noeviction (or no maxmemory) \
             for the cache's Redis"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::eviction_risk;

    fn settings(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_noeviction_or_no_limit_is_safe() {
        for (maxmemory, policy, risky) in [
            ("0", "allkeys-lru", false),
            ("104857600", "noeviction", false),
            ("104857600", "allkeys-lru", true),
            ("104857600", "volatile-lru", true),
            ("104857600", "allkeys-random", true),
            ("104857600", "volatile-ttl", true),
        ] {
            let risk = eviction_risk(&settings(&[
                "maxmemory",
                maxmemory,
                "maxmemory-policy",
                policy,
            ]));
            assert_eq!(risk.is_some(), risky, "{maxmemory} {policy}");
            if let Some(risk) = risk {
                assert!(
                    risk.contains(policy) && risk.contains("noeviction"),
                    "{risk}"
                );
            }
        }
        assert_eq!(eviction_risk(&[]), None, "unreadable: unknown, not failing");
    }
}
