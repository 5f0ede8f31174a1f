//! The tiered store's catch-up: invalidations Redis refused, replayed in
//! bulk until it takes them, and publishes that failed, resent.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use strata_core::store::{Health, Invalidation};

use super::bus::Message;
use super::{Inner, TieredStore};

/// Pending invalidations beyond this many collapse into one clear-all.
const MAX_PENDING: usize = 4096;

impl Inner {
    /// Publishes `what` on the bus; whether Redis took the message.
    pub(super) async fn send(&self, what: &Invalidation) -> bool {
        let message = Message {
            origin: self.instance.clone(),
            what: what.clone(),
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            return true;
        };
        let sent = match self.bus.sharded.get() {
            Some(false) => self
                .l2
                .publish(&self.channel, &payload)
                .await
                .map_err(|e| e.to_string()),
            Some(true) => self.publish_sharded(&payload).await.inspect_err(|error| {
                // Past the store's own calls: count it where errors are.
                self.l2.count_error(&format!("redis SPUBLISH: {error}"));
            }),
            // A cluster takes only sharded publishes for the bus, and which
            // one this is shows when the bus first connects.
            None => Err("the bus has not reached Redis yet".to_owned()),
        };
        match sent {
            Ok(()) => {
                self.published.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "invalidation not published; it will be resent");
                false
            }
        }
    }

    pub(super) fn queue_unpublished(&self, what: Invalidation) {
        let mut queue = self.unpublished.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= MAX_PENDING || what == Invalidation::All {
            queue.clear();
            queue.push(Invalidation::All);
        } else if !queue.contains(&what) && !queue.contains(&Invalidation::All) {
            queue.push(what);
        }
    }

    /// Resends what could not be published, oldest first, until a send
    /// fails again; whether nothing is left.
    pub(super) async fn resend(&self) -> bool {
        let queued: Vec<Invalidation> = self
            .unpublished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut sent = 0;
        for what in &queued {
            if !self.send(what).await {
                break;
            }
            sent += 1;
        }
        let mut queue = self.unpublished.lock().unwrap_or_else(|p| p.into_inner());
        if sent > 0 && queue.get(..sent) == queued.get(..sent) {
            queue.drain(..sent);
        }
        sent == queued.len()
    }

    pub(super) fn defer(&self, what: Invalidation) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING || what == Invalidation::All {
            pending.clear();
            pending.push(Invalidation::All);
        } else if !pending.contains(&Invalidation::All) && !pending.contains(&what) {
            pending.push(what);
        }
    }

    /// How many invalidations Redis has not taken, and how many the other
    /// instances have not heard of.
    pub(super) fn queued(&self) -> (usize, usize) {
        let queued = self.pending.lock().unwrap_or_else(|p| p.into_inner()).len();
        let unsent = self
            .unpublished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        (queued, unsent)
    }

    /// The `invalidations` health layer: until the queues are empty, some
    /// instance may serve what they name.
    pub(super) fn queue_health(&self) -> Health {
        let (queued, unsent) = self.queued();
        Health {
            layer: "invalidations",
            ok: queued == 0 && unsent == 0,
            latency: Duration::ZERO,
            error: (queued + unsent > 0).then(|| {
                let last = self.l2.last_error().unwrap_or_default();
                format!("{queued} queued for Redis, {unsent} not yet published; last error: {last}")
            }),
        }
    }

    pub(super) fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// Replays invalidations Redis refused, oldest first, until it takes them;
/// each one taken is published again, since other instances may have
/// copied the entries it names while it was pending. Also resends the
/// publishes that failed after Redis took their invalidation. Every tick
/// drains as many as Redis takes (duplicates once), so a backlog clears in
/// one round of Redis calls once Redis answers, not one invalidation per
/// tick.
pub(super) async fn replay(inner: Weak<Inner>) {
    // A publish Redis keeps refusing (an ACL, say) is resent once a
    // second, not every tick: each failure counts toward the breaker that
    // guards every other Redis call.
    let mut resend_at = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if Instant::now() >= resend_at && !strong.resend().await {
            resend_at = Instant::now() + Duration::from_secs(1);
        }
        let queued: Vec<Invalidation> = strong
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut taken: Vec<Invalidation> = Vec::new();
        // How many queued invalidations were handled: taken, or repeats of
        // one taken.
        let mut handled = 0;
        for what in &queued {
            if !taken.contains(what) {
                if strong.l2.invalidate_entries(what).await.is_err() {
                    // Redis still refuses: the rest waits for the next
                    // tick, in order.
                    break;
                }
                strong.epoch.fetch_add(1, Ordering::SeqCst);
                strong.l1.invalidate_now(what);
                taken.push(what.clone());
            }
            handled += 1;
        }
        if handled == 0 {
            continue;
        }
        let store = TieredStore {
            inner: Arc::clone(&strong),
        };
        for what in &taken {
            store.publish(what).await;
        }
        // The queue only grows at its end, unless it collapsed into one
        // clear-all meanwhile (then that stays, to be replayed).
        let mut pending = strong.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.get(..handled) == queued.get(..handled) {
            pending.drain(..handled);
        }
    }
}
