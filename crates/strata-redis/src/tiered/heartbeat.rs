//! The bus lease: each instance publishes a heartbeat on the bus channel
//! every `bound / 4` and trusts its L1 only while one of its own beats,
//! sent recently enough, has come back through its subscription.
//!
//! Pub/sub on one Redis node delivers in the order Redis ran the publishes,
//! so a beat sent at `s` that came back proves every message Redis took
//! before `s` has been handled. A stalled Redis (`CLIENT PAUSE`, `DEBUG
//! SLEEP`, a slow disk) keeps the subscription connected but delivers
//! nothing; the beats stop coming back, and the watchdog stops using L1
//! once the newest confirmed beat is older than `bound - interval` (it
//! runs once per interval, so trust never outlives the bound). Nothing is
//! lost in a stall, only delayed: when the beats come back, the delayed
//! messages came first, and L1 is used again without a flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::{PoisonError, Weak};
use std::time::Duration;

use redis::RedisError;
use strata_core::store::{Health, Invalidation};
use tokio::time::MissedTickBehavior;

use super::Inner;
use super::bus::Publisher;

/// The staleness bound when none is given: 1 s.
pub(super) const DEFAULT_BOUND: Duration = Duration::from_secs(1);
/// The smallest bound accepted: a beat needs a round trip to Redis.
pub(super) const MIN_BOUND: Duration = Duration::from_millis(20);
/// What a beat's payload starts with; invalidations are JSON objects.
const BEAT: &[u8] = b"~beat ";

/// Trust decisions from the beats that came back, in nanoseconds since the
/// store's base `Instant` (process-local, monotonic).
#[derive(Debug)]
pub(super) struct Lease {
    /// How old the newest confirmed beat may be while L1 is trusted:
    /// `bound - interval`.
    limit: u64,
    /// When the current subscription was made; `None` while there is none.
    subscribed_at: Option<u64>,
    /// When the newest beat that came back was sent, ever.
    confirmed: Option<u64>,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Lease {
    pub(super) fn new(bound: Duration) -> Self {
        Self {
            limit: nanos(bound - interval(bound)),
            subscribed_at: None,
            confirmed: None,
        }
    }

    /// A new subscription: only beats sent from now on confirm it.
    pub(super) fn opened(&mut self, now: u64) {
        self.subscribed_at = Some(now);
    }

    pub(super) fn closed(&mut self) {
        self.subscribed_at = None;
    }

    /// One of our beats, sent at `sent`, came back at `now`: whether L1
    /// may be trusted.
    pub(super) fn confirm(&mut self, sent: u64, now: u64) -> bool {
        match self.subscribed_at {
            Some(since) if sent >= since => {
                self.confirmed = Some(self.confirmed.map_or(sent, |old| old.max(sent)));
                self.fresh(now)
            }
            _ => false,
        }
    }

    /// Whether L1 may still be trusted at `now`.
    pub(super) fn fresh(&self, now: u64) -> bool {
        match (self.subscribed_at, self.confirmed) {
            (Some(since), Some(sent)) => sent >= since && now.saturating_sub(sent) <= self.limit,
            _ => false,
        }
    }

    /// How long ago the newest beat that came back was sent.
    pub(super) fn since_confirmed(&self, now: u64) -> Option<Duration> {
        self.confirmed
            .map(|sent| Duration::from_nanos(now.saturating_sub(sent)))
    }
}

/// How often beats are sent (and the watchdog runs) for `bound`.
pub(super) fn interval(bound: Duration) -> Duration {
    bound / 4
}

/// What a beat of `instance`, sent at `sent`, looks like on the bus.
pub(super) fn beat_payload(instance: &str, sent: u64) -> String {
    format!("~beat {instance} {sent}")
}

/// `Some((instance, sent))` if `payload` is a beat (`Some((_, None))` for
/// a beat whose time does not parse), `None` if it is something else.
pub(super) fn parse_beat(payload: &[u8]) -> Option<(&[u8], Option<u64>)> {
    let rest = payload.strip_prefix(BEAT)?;
    let (instance, sent) = match rest.iter().position(|b| *b == b' ') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    let sent = std::str::from_utf8(sent).ok().and_then(|s| s.parse().ok());
    Some((instance, sent))
}

/// Whether a failed publish shows the session is useless (its connection
/// dropped, or the channel's shard moved), rather than Redis being slow.
pub(super) fn session_broken(error: &RedisError) -> bool {
    error.is_unrecoverable_error()
        || error.is_connection_dropped()
        || error.redirect_node().is_some()
}

impl Inner {
    /// Nanoseconds since this store's base instant.
    pub(super) fn now(&self) -> u64 {
        nanos(self.bus.base.elapsed())
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.bus
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops everything from L1 (a removal, so the epoch moves first).
    fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate_now(&Invalidation::All);
    }

    /// A subscription was made: messages sent before it are lost, so L1
    /// is flushed, and used once a beat sent from now on comes back.
    pub(super) fn bus_opened(&self) {
        let mut lease = self.lease();
        self.trusted.store(false, Ordering::Release);
        self.flush();
        lease.opened(self.now());
    }

    /// The subscription is gone: stop using L1 and flush it (entries
    /// filled from now on may miss invalidations).
    pub(super) fn bus_closed(&self) {
        let mut lease = self.lease();
        self.trusted.store(false, Ordering::Release);
        self.flush();
        lease.closed();
    }

    /// A beat of ours, sent at `sent`, came back: everything published
    /// before it has been handled.
    pub(super) fn on_beat(&self, sent: u64) {
        let mut lease = self.lease();
        if lease.confirm(sent, self.now()) && !self.trusted.load(Ordering::Acquire) {
            if self.bus.stalled.swap(false, Ordering::Relaxed) {
                tracing::info!("invalidation bus confirmed again; using process memory");
            }
            self.trusted.store(true, Ordering::Release);
        }
    }

    /// Stops using L1 once the newest confirmed beat is too old. No flush:
    /// if the subscription is still there, what is late is only delayed.
    pub(super) fn watchdog(&self) {
        let lease = self.lease();
        if self.trusted.load(Ordering::Acquire) && !lease.fresh(self.now()) {
            self.trusted.store(false, Ordering::Release);
            self.bus.stalled.store(true, Ordering::Relaxed);
            tracing::warn!(
                bound = ?self.bus.bound,
                "invalidation bus unconfirmed; not using process memory until it is"
            );
        }
    }

    /// The `bus` health layer: degraded while L1 is not trusted.
    pub(super) fn bus_health(&self) -> Health {
        let trusted = self.trusted.load(Ordering::Acquire);
        let error = (!trusted).then(|| {
            let lease = self.lease();
            let last = match lease.since_confirmed(self.now()) {
                Some(ago) => format!("last confirmed beat {} ms ago", ago.as_millis()),
                None => "no beat confirmed yet".to_owned(),
            };
            let state = if lease.subscribed_at.is_some() {
                "subscribed but unconfirmed"
            } else {
                "not subscribed"
            };
            format!(
                "invalidation bus {state} ({last}; bound {} ms): process memory not in use",
                self.bus.bound.as_millis()
            )
        });
        Health {
            layer: "bus",
            ok: trusted,
            latency: Duration::ZERO,
            error,
        }
    }

    /// Publishes one beat in the background: a slow Redis must not delay
    /// the watchdog. A beat that fails confirms nothing, which the
    /// watchdog sees; one that shows the session broken ends it.
    pub(super) fn beat(self: &Arc<Self>) {
        let Some(mut publisher) = self.publisher() else {
            return;
        };
        let payload = beat_payload(&self.instance, self.now());
        let inner = Arc::downgrade(self);
        let wait = interval(self.bus.bound);
        tokio::spawn(async move {
            let Some(channel) = inner.upgrade().map(|strong| strong.channel.clone()) else {
                return;
            };
            let sent = tokio::time::timeout(wait, publisher.publish(&channel, &payload)).await;
            if let Ok(Err(error)) = sent {
                tracing::debug!(%error, "heartbeat not published");
                if session_broken(&error)
                    && let Some(strong) = inner.upgrade()
                {
                    strong.end_session(publisher.session);
                }
            }
        });
    }

    pub(super) fn publisher(&self) -> Option<Publisher> {
        self.bus
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The heartbeat and watchdog: every `bound / 4`, checks the lease, then
/// sends a beat.
pub(super) async fn heartbeat(inner: Weak<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        strong.watchdog();
        strong.beat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn trust_needs_a_fresh_beat_of_the_current_subscription() {
        let mut lease = Lease::new(Duration::from_secs(1));
        assert!(!lease.fresh(0), "nothing confirmed");
        assert!(!lease.confirm(5 * MS, 6 * MS), "not subscribed");
        lease.opened(10 * MS);
        assert!(
            !lease.confirm(5 * MS, 12 * MS),
            "sent before the subscription"
        );
        assert!(lease.confirm(11 * MS, 12 * MS));
        assert!(lease.fresh(11 * MS + 750 * MS), "bound - interval");
        assert!(!lease.fresh(11 * MS + 751 * MS));
        // A late beat does not move the newest confirmation back.
        assert!(lease.confirm(300 * MS, 400 * MS));
        assert!(!lease.confirm(8 * MS, 1000 * MS), "older than the limit");
        assert_eq!(
            lease.since_confirmed(400 * MS),
            Some(Duration::from_millis(100))
        );
        lease.closed();
        assert!(!lease.fresh(401 * MS));
        assert!(!lease.confirm(401 * MS, 402 * MS));
    }

    #[test]
    fn beats_are_recognised_and_invalidations_are_not() {
        let payload = beat_payload("00ab", 42);
        assert_eq!(
            parse_beat(payload.as_bytes()),
            Some((&b"00ab"[..], Some(42)))
        );
        assert_eq!(parse_beat(b"~beat x y"), Some((&b"x"[..], None)));
        assert_eq!(parse_beat(br#"{"origin":"x","what":"All"}"#), None);
    }
}
