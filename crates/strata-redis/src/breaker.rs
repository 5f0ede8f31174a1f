//! A circuit breaker: after a run of failures, stop asking a dead Redis for
//! a while, so requests get their miss at once instead of after a timeout.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Closed (calls go through) until `threshold` failures in a row; then open
/// (calls fail at once) for `cooldown`; then half-open: one call goes
/// through, and its outcome closes or re-opens the breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the breaker is open; 0 when closed.
    open_until: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a call may go to Redis now. When the cooldown has passed,
    /// one caller wins the half-open probe; the others still fail fast.
    pub(crate) fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now < until {
            return false;
        }
        // Let exactly one probe through: push the deadline forward for
        // everyone else while it runs.
        let next = now
            + u64::try_from(self.cooldown.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
        self.open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the breaker is open (Redis considered down).
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
    }

    /// Counts a failure; whether the breaker is open after it.
    pub(crate) fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.threshold {
            let until = self.now_ms()
                + u64::try_from(self.cooldown.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
            self.open_until.store(until, Ordering::Release);
        }
        failures >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_lets_one_probe_through_after_cooldown() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        assert!(breaker.allow());
        breaker.failure();
        breaker.failure();
        assert!(breaker.allow() && !breaker.is_open());
        breaker.failure();
        assert!(breaker.is_open());
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow(), "one probe after the cooldown");
        assert!(!breaker.allow(), "only one");
        breaker.success();
        assert!(!breaker.is_open());
        assert!(breaker.allow());
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let breaker = Breaker::new(1, Duration::from_millis(20));
        breaker.failure();
        std::thread::sleep(Duration::from_millis(25));
        assert!(breaker.allow());
        breaker.failure();
        assert!(!breaker.allow());
    }
}
