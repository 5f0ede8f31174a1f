//! The connection under a [`RedisStore`]: one multiplexed connection (or
//! a cluster connection made on first use and renewed when the breaker
//! opens), and every operation run through the breaker and the timeout,
//! telling a failure that never reached Redis from one whose outcome is
//! unknown.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use strata_core::Error;

use super::RedisStore;

pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(Box<ClusterConn>),
}

/// A cluster client and its connection, made on first use and made anew
/// after the breaker opens: a connection that lived through a master's
/// failure can stay stuck refreshing its slot map (every request timing
/// out) long after a new connection would work.
pub(super) struct ClusterConn {
    pub(super) client: ClusterClient,
    pub(super) connection: std::sync::Mutex<Option<ClusterConnection>>,
    pub(super) connecting: tokio::sync::Mutex<()>,
    pub(super) connect_timeout: Duration,
}

impl ClusterConn {
    fn current(&self) -> Option<ClusterConnection> {
        self.connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn get(&self) -> RedisResult<ClusterConnection> {
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        // One connect at a time; the others then take its connection.
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let connection =
            match tokio::time::timeout(self.connect_timeout, self.client.get_async_connection())
                .await
            {
                Ok(result) => result?,
                Err(_) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "cluster connect timed out",
                    )));
                }
            };
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection: the next operation makes a new one.
    pub(super) fn reset(&self) {
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A connection handle for one operation: a clone of the shared,
/// multiplexed connection.
#[derive(Clone)]
pub(super) enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(conn) => conn.req_packed_command(cmd),
            Handle::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Handle::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(conn) => conn.get_db(),
            Handle::Cluster(conn) => conn.get_db(),
        }
    }
}

fn store_error(what: &str, error: impl fmt::Display) -> Error {
    Error::Store(format!("redis {what}: {error}"))
}

/// A failed operation, and whether it may have reached Redis.
pub(super) struct Failed {
    pub(super) error: Error,
    pub(super) sent: bool,
}

impl Failed {
    fn sent(error: Error) -> Self {
        Self { error, sent: true }
    }

    fn unsent(error: Error) -> Self {
        Self { error, sent: false }
    }
}

impl RedisStore {
    pub(super) async fn handle(&self) -> RedisResult<Handle> {
        match &self.inner.conn {
            Conn::Single(manager) => Ok(Handle::Single(manager.clone())),
            Conn::Cluster(cluster) => Ok(Handle::Cluster(cluster.get().await?)),
        }
    }

    /// Runs one operation through the breaker, bounded by the timeout.
    pub(super) async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, Error>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.attempt(what, op).await.map_err(|failed| failed.error)
    }

    /// Like [`run`](Self::run), telling a failure that never reached Redis
    /// (the breaker was open, no connection could be made) from one whose
    /// outcome is unknown: Redis may have run the operation and the answer
    /// was lost (a timeout, a dropped connection) or refused it.
    pub(super) async fn attempt<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, Failed>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = &self.inner;
        if !inner.breaker.allow() {
            inner.errors.fetch_add(1, Ordering::Relaxed);
            return Err(Failed::unsent(store_error(what, "circuit open")));
        }
        // Connecting (the cluster connection is made on first use) has its
        // own bound; the operation itself gets `op_timeout`.
        let result = match tokio::time::timeout(inner.connect_timeout, self.handle()).await {
            Ok(Ok(handle)) => {
                let bound = inner.op_timeout.max(Duration::from_millis(1));
                match tokio::time::timeout(bound, op(handle)).await {
                    Ok(result) => result.map_err(|e| Failed::sent(store_error(what, e))),
                    Err(_) => Err(Failed::sent(store_error(what, "timed out"))),
                }
            }
            Ok(Err(error)) => Err(Failed::unsent(store_error(what, error))),
            Err(_) => Err(Failed::unsent(store_error(what, "connect timed out"))),
        };
        match &result {
            Ok(_) => inner.breaker.success(),
            Err(failed) => {
                inner.errors.fetch_add(1, Ordering::Relaxed);
                if inner.breaker.failure()
                    && let Conn::Cluster(cluster) = &inner.conn
                {
                    cluster.reset();
                }
                *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(failed.error.to_string());
            }
        }
        result
    }

    /// Counts an error met on Redis outside this store's own calls (the
    /// tiered store's bus connection), in its figures and health.
    pub(crate) fn count_error(&self, error: &str) {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(error.to_owned());
    }

    /// The last error a Redis operation of this store met, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
