//! The invalidation bus: one pub/sub subscription on `{prefix}~bus`,
//! reconnected with backoff; L1 is trusted only while it is alive, and
//! each message from another instance is fenced, then dropped from L1.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use strata_core::store::Invalidation;

use super::Inner;

/// How long the subscriber waits before reconnecting, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What travels on the bus.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Message {
    pub(super) origin: String,
    pub(super) what: Invalidation,
}

impl Inner {
    pub(super) fn set_trusted(&self, trusted: bool) {
        // Flush on both edges: entries filled while untrusted may have
        // missed invalidations, and so may entries from before a loss.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate_now(&Invalidation::All);
        self.trusted.store(trusted, Ordering::Release);
    }

    pub(super) async fn on_message(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Message>(payload) else {
            tracing::warn!("ignoring a malformed bus message");
            return;
        };
        if message.origin == self.instance {
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        // Fence first: a fill of ours that writes after this sees the
        // invalidation and writes nothing; one already writing is waited
        // for below. Then drop what L1 holds.
        let wait = self
            .listener
            .get()
            .and_then(|listener| listener(&message.what));
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate_now(&message.what);
        if let Some(fills_done) = wait {
            // Fills of ours were writing while the other instance removed
            // the entries: their writes may have landed after it. Remove
            // again, once they are done (without publishing again).
            fills_done.await;
            if let Err(error) = self.l2.invalidate_entries(&message.what).await {
                tracing::warn!(%error, "repeating a remote invalidation failed");
            }
            // After Redis, as in `invalidate`.
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.l1.invalidate_now(&message.what);
        }
    }
}

/// The subscriber: keeps one pub/sub connection on the bus channel,
/// reconnecting with backoff, and marks L1 trusted only while it is alive.
pub(super) async fn subscribe(inner: Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let mut node = 0usize;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let nodes = strong.l2.nodes().to_vec();
        let channel = strong.channel.clone();
        let connect_timeout = strong.l2.connect_timeout().max(Duration::from_millis(100));
        drop(strong);
        let url = nodes
            .get(node % nodes.len().max(1))
            .cloned()
            .unwrap_or_default();
        node += 1;
        let pubsub = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        if let Ok(Ok(mut pubsub)) = tokio::time::timeout(connect_timeout, pubsub).await {
            backoff = Duration::from_millis(50);
            if let Some(strong) = inner.upgrade() {
                strong.set_trusted(true);
            }
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                strong.on_message(message.get_payload_bytes()).await;
            }
            let Some(strong) = inner.upgrade() else {
                return;
            };
            tracing::warn!("invalidation bus lost; not using process memory until it is back");
            strong.set_trusted(false);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
