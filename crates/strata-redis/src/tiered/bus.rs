//! The invalidation bus: one subscription on `{prefix}~bus`, reconnected
//! with backoff, and a publishing connection to the same node for the
//! heartbeat. Each message from another instance is fenced, then dropped
//! from L1; our own beats confirm the lease (see `heartbeat`).
//!
//! On a standalone Redis the bus is `SUBSCRIBE`/`PUBLISH`. On Redis Cluster
//! it is sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7): the channel
//! lives on the master of its slot, which delivers in order and without a
//! hop over the cluster bus; the subscriber follows the slot when it moves
//! (see `shard`). Which one is asked of the server (`HELLO`'s `mode`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{PushInfo, PushKind, RedisResult, Value};
use serde::{Deserialize, Serialize};
use strata_core::store::Invalidation;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

use super::Inner;
use super::heartbeat::{self, Lease, parse_beat, session_broken};
use super::shard;

/// How long the subscriber waits before reconnecting, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What travels on the bus (besides heartbeats).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Message {
    pub(super) origin: String,
    pub(super) what: Invalidation,
}

/// The bus's state besides the trust flag.
pub(super) struct Link {
    /// How long an invalidation may go unheard by a trusting instance.
    pub(super) bound: Duration,
    /// Where heartbeat send times are counted from.
    pub(super) base: Instant,
    pub(super) lease: Mutex<Lease>,
    /// Whether L1 went unused for a stall (to log its end once).
    pub(super) stalled: AtomicBool,
    /// The current session's publishing connection.
    pub(super) publisher: Mutex<Option<Publisher>>,
    /// Whether the bus is sharded (a cluster); unknown until it connects.
    pub(super) sharded: OnceLock<bool>,
    /// Sessions opened so far; a session's number names it.
    sessions: AtomicU64,
    /// The number of a session found broken, for the subscriber to end.
    ended: watch::Sender<u64>,
}

impl Link {
    pub(super) fn new(bound: Duration) -> Self {
        Self {
            bound,
            base: Instant::now(),
            lease: Mutex::new(Lease::new(bound)),
            stalled: AtomicBool::new(false),
            publisher: Mutex::new(None),
            sharded: OnceLock::new(),
            sessions: AtomicU64::new(0),
            ended: watch::Sender::new(0),
        }
    }
}

/// A connection to the node the subscription is on, for publishing.
#[derive(Clone)]
pub(super) struct Publisher {
    conn: MultiplexedConnection,
    sharded: bool,
    /// The subscription session this belongs to.
    pub(super) session: u64,
}

impl Publisher {
    pub(super) fn new(conn: MultiplexedConnection, sharded: bool, session: u64) -> Self {
        Self {
            conn,
            sharded,
            session,
        }
    }

    pub(super) async fn publish(&mut self, channel: &str, payload: &str) -> RedisResult<()> {
        let command = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        redis::cmd(command)
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn)
            .await
    }
}

/// Where a session's messages come from.
pub(super) enum Feed {
    /// `SUBSCRIBE` on a standalone Redis.
    Plain(PubSubStream),
    /// `SSUBSCRIBE` on the master of the channel's slot, as RESP3 pushes.
    Sharded {
        /// Kept open: dropping it ends the subscription.
        _connection: MultiplexedConnection,
        pushes: UnboundedReceiver<PushInfo>,
    },
}

/// One subscription and the connection that publishes next to it.
pub(super) struct Session {
    pub(super) feed: Feed,
    pub(super) publisher: Publisher,
}

impl Feed {
    /// The next message's payload, or why the subscription is gone.
    async fn next(&mut self) -> Result<Vec<u8>, &'static str> {
        match self {
            Feed::Plain(stream) => match stream.next().await {
                Some(message) => Ok(message.get_payload_bytes().to_vec()),
                None => Err("connection lost"),
            },
            Feed::Sharded { pushes, .. } => loop {
                let Some(PushInfo { kind, data }) = pushes.recv().await else {
                    return Err("connection lost");
                };
                match (kind, data.get(1)) {
                    (PushKind::SMessage, Some(Value::BulkString(payload))) => {
                        return Ok(payload.clone());
                    }
                    // The server dropped the subscription: the slot moved
                    // (failover, resharding).
                    (PushKind::SUnsubscribe, _) => return Err("the channel's shard moved"),
                    (PushKind::Disconnection, _) => return Err("connection lost"),
                    _ => {}
                }
            },
        }
    }
}

impl Inner {
    pub(super) async fn on_message(&self, payload: &[u8]) {
        if let Some((origin, sent)) = parse_beat(payload) {
            // Beats of other instances are theirs to confirm.
            if origin == self.instance.as_bytes()
                && let Some(sent) = sent
            {
                self.on_beat(sent);
            }
            return;
        }
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
        // Fills of ours that were writing when the message came, or that
        // wrote lately: their writes may have landed in Redis after the
        // other instance removed what it names. Remove again once they are
        // done (without publishing again).
        let raced = self.recent.named(&message.what);
        if wait.is_some() || raced {
            if let Some(fills_done) = wait {
                fills_done.await;
            }
            if let Err(error) = self.l2.invalidate_entries(&message.what).await {
                // Unknown outcome: queued and replayed until Redis takes it.
                tracing::warn!(%error, "repeating a remote invalidation failed; it will be replayed");
                self.defer(message.what.clone());
            }
            // After Redis, as in `invalidate`.
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.l1.invalidate_now(&message.what);
        }
    }

    /// Publishes on the sharded bus (a cluster), through the session's
    /// connection to the channel's master.
    pub(super) async fn publish_sharded(&self, payload: &str) -> Result<(), String> {
        let Some(mut publisher) = self.publisher() else {
            return Err("the bus is not subscribed".to_owned());
        };
        let wait = heartbeat::interval(self.bus.bound);
        match tokio::time::timeout(wait, publisher.publish(&self.channel, payload)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                if session_broken(&error) {
                    self.end_session(publisher.session);
                }
                Err(error.to_string())
            }
            Err(_) => Err("timed out".to_owned()),
        }
    }

    /// Ends `session` if it is still the current one: the subscriber
    /// drops it and subscribes again (wherever the channel lives now).
    pub(super) fn end_session(&self, session: u64) {
        self.bus.ended.send_replace(session);
    }

    fn set_publisher(&self, publisher: Option<Publisher>) {
        *self
            .bus
            .publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = publisher;
    }
}

/// Opens a session on `url`: `SUBSCRIBE` there on a standalone Redis,
/// `SSUBSCRIBE` on the channel's master on a cluster.
async fn open(url: &str, channel: &str, session: u64) -> RedisResult<(Session, bool)> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    if shard::is_cluster(&mut conn).await {
        let session =
            shard::open(client.get_connection_info(), &mut conn, channel, session).await?;
        return Ok((session, true));
    }
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let session = Session {
        feed: Feed::Plain(pubsub.into_on_message()),
        publisher: Publisher::new(conn, false, session),
    };
    Ok((session, false))
}

/// Resolves once `session` is ended (see [`Inner::end_session`]).
async fn ended(ended: &mut watch::Receiver<u64>, session: u64) {
    loop {
        if *ended.borrow_and_update() == session {
            return;
        }
        if ended.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The subscriber: keeps one subscription on the bus channel, reconnecting
/// with backoff. L1 is flushed on every new subscription and every loss;
/// the heartbeat decides when it is used.
pub(super) async fn subscribe(inner: Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let mut node = 0usize;
    let Some(mut end) = inner.upgrade().map(|strong| strong.bus.ended.subscribe()) else {
        return;
    };
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let nodes = strong.l2.nodes().to_vec();
        let channel = strong.channel.clone();
        let connect_timeout = strong.l2.connect_timeout().max(Duration::from_millis(100));
        let session = strong.bus.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        drop(strong);
        let url = nodes
            .get(node % nodes.len().max(1))
            .cloned()
            .unwrap_or_default();
        node += 1;
        let opened = tokio::time::timeout(connect_timeout, open(&url, &channel, session)).await;
        if let Ok(Ok((
            Session {
                mut feed,
                publisher,
            },
            sharded,
        ))) = opened
        {
            backoff = Duration::from_millis(50);
            if let Some(strong) = inner.upgrade() {
                let _ = strong.bus.sharded.set(sharded);
                strong.bus_opened();
                strong.set_publisher(Some(publisher));
                // Confirm the new subscription now, not a tick later.
                strong.beat();
            }
            let reason = loop {
                let next = tokio::select! {
                    next = feed.next() => next,
                    () = ended(&mut end, session) => Err("publishing on it failed"),
                };
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                match next {
                    Ok(payload) => strong.on_message(&payload).await,
                    Err(reason) => break reason,
                }
            };
            let Some(strong) = inner.upgrade() else {
                return;
            };
            tracing::warn!(
                reason,
                "invalidation bus lost; not using process memory until it is back"
            );
            strong.set_publisher(None);
            strong.bus_closed();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use strata_core::MemoryStore;

    use super::*;
    use crate::{RedisStore, TieredStore};

    #[tokio::test]
    async fn only_our_own_beats_confirm_and_no_beat_counts_as_a_message() {
        let redis = RedisStore::standalone("redis://127.0.0.1:1/")
            .prefix("unit:")
            .build()
            .unwrap();
        let store = TieredStore::new(MemoryStore::new(1 << 20), redis).unwrap();
        let inner = &store.inner;
        inner.bus_opened();
        let theirs = heartbeat::beat_payload("someone-else", inner.now());
        inner.on_message(theirs.as_bytes()).await;
        inner.on_message(b"~beat garbled").await;
        assert!(
            !store.is_subscribed(),
            "other instances' beats prove nothing"
        );
        let ours = heartbeat::beat_payload(&inner.instance, inner.now());
        inner.on_message(ours.as_bytes()).await;
        assert!(store.is_subscribed(), "our own beat confirms the bus");
        assert_eq!(inner.received.load(Ordering::Relaxed), 0);

        let message = Message {
            origin: "someone-else".to_owned(),
            what: Invalidation::All,
        };
        inner
            .on_message(&serde_json::to_vec(&message).unwrap())
            .await;
        assert_eq!(inner.received.load(Ordering::Relaxed), 1);
    }
}
