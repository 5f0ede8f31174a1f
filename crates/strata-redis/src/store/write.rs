//! Writing an entry: the entry first, its index registrations second, and
//! an entry that could not be registered deleted again, so no entry stays
//! in Redis that no invalidation can reach.
//!
//! The order matters against an invalidation running at the same time
//! (from another instance): if the registration lands before the index is
//! claimed, the claim deletes the entry, which was already written; if it
//! lands after, it starts a new index, which the writer's repeat of that
//! invalidation (after its fence, see the tiered store) or a later one
//! takes. Registering first would let a claim run between the
//! registration and the write and miss the entry for good.

use strata_core::{Entry, Error};

use super::index::{INDEX_ADD, PRUNE, SLACK_MS};
use super::{Conn, Failed, RedisStore};
use crate::envelope;

/// Why an entry was not stored, and whether a copy of it may be left in
/// Redis that no index names (the write's outcome is unknown and the
/// delete that should have removed it failed too). Such a key must be
/// deleted before Redis is trusted again.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    pub(crate) error: Error,
    pub(crate) stray: bool,
}

impl RedisStore {
    /// Writes one entry and registers it in its indexes. On failure the
    /// entry is deleted again; when even that fails after a write whose
    /// answer was lost, a warning is logged: an unindexed copy may then
    /// stay readable until it expires (a [`TieredStore`](crate::TieredStore)
    /// queues its deletion instead).
    pub async fn put_entry(&self, entry: &Entry) -> Result<(), Error> {
        self.write_entry(entry).await.map_err(|failed| {
            if failed.stray {
                tracing::warn!(key = %entry.key, "an unindexed copy may be left in Redis until it expires");
            }
            failed.error
        })
    }

    pub(crate) async fn write_entry(&self, entry: &Entry) -> Result<(), WriteFailure> {
        let millis = u64::try_from(entry.retention().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let value = envelope::encode(entry);
        let key = entry.key.as_str();
        let indexes = self.index_keys(entry);
        if matches!(self.inner.conn, Conn::Single(_)) {
            // One connection, so one pipeline keeps the order (the write,
            // then its registrations) in one round trip.
            return match self.write_pipelined(key, &value, millis, &indexes).await {
                Ok(()) => Ok(()),
                Err(Failed { error, sent: false }) => Err(WriteFailure {
                    error,
                    stray: false,
                }),
                Err(Failed { error, sent: true }) => Err(self.take_back(entry, error).await),
            };
        }
        // Cluster: the entry and its indexes live on different nodes, so
        // the registrations wait for the write.
        let written = self
            .attempt("SET", |mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(millis)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
        let error = match written {
            Ok(()) => match self.add_to_indexes(key, millis, indexes).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            },
            // Redis never saw it: nothing to take back.
            Err(Failed { error, sent: false }) => {
                return Err(WriteFailure {
                    error,
                    stray: false,
                });
            }
            // Redis may have written it (the answer was lost): take it back.
            Err(Failed { error, sent: true }) => error,
        };
        Err(self.take_back(entry, error).await)
    }

    /// The entry may be in Redis without all its indexes: deletes it. On
    /// the same connection the delete runs after the write even when the
    /// write's answer was lost.
    async fn take_back(&self, entry: &Entry, error: Error) -> WriteFailure {
        let stray = self
            .delete_keys(std::slice::from_ref(&entry.key))
            .await
            .is_err();
        WriteFailure { error, stray }
    }

    /// `SET` and the index registrations in one pipeline on the one
    /// connection (standalone Redis runs them in order).
    async fn write_pipelined(
        &self,
        key: &str,
        value: &[u8],
        millis: u64,
        indexes: &[String],
    ) -> Result<(), Failed> {
        let add = &self.inner.index_add;
        self.attempt("SET", |mut conn| async move {
            let registrations: Vec<_> = indexes
                .iter()
                .map(|index| {
                    let mut invocation = add.key(index);
                    invocation.arg(key).arg(millis).arg(SLACK_MS).arg(PRUNE);
                    invocation
                })
                .collect();
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis)
                .ignore();
            for registration in &registrations {
                pipe.invoke_script(registration).ignore();
            }
            match pipe.query_async::<()>(&mut conn).await {
                Err(error) if lost_scripts(&error) => {
                    // Redis lost its scripts (a restart): load, write again.
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(INDEX_ADD)
                        .query_async::<()>(&mut conn)
                        .await?;
                    pipe.query_async::<()>(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }
}

/// Whether Redis answered that it does not know a script (its script
/// cache was emptied by a restart or `SCRIPT FLUSH`), for one command or
/// inside a pipeline's failures.
fn lost_scripts(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || error.to_string().contains("NoScript")
}
