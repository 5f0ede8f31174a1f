//! Injectable time, so tests can move TTL, `Age` and freshness without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time for freshness, `Age` and `Last-Modified`.
///
/// The layer asks the clock once per request. [`SystemClock`] is the
/// default; [`MockClock`] lets tests advance time by hand.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
///
/// ```
/// use std::time::Duration;
/// use strata::{Clock, MockClock};
///
/// let clock = MockClock::new();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(30));
/// ```
///
/// Note: the in-memory store still evicts by real time (moka keeps its own
/// clock); the mock clock decides freshness and `Age`, which is what a
/// client sees.
#[derive(Debug, Clone)]
pub struct MockClock {
    nanos_since_epoch: Arc<AtomicU64>,
}

impl MockClock {
    /// A mock clock that starts at the current real time (whole seconds).
    pub fn new() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Self {
            nanos_since_epoch: Arc::new(AtomicU64::new(secs * 1_000_000_000)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos_since_epoch.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MockClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos_since_epoch.load(Ordering::SeqCst))
    }
}
