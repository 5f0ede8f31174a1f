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

use super::{Failed, RedisStore};
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
            Ok(()) => match self
                .add_to_indexes(key, millis, self.index_keys(entry))
                .await
            {
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
        // The entry may be in Redis without all its indexes. Delete it; on
        // the same connection the delete runs after the write even when the
        // write's answer was lost.
        let stray = self
            .delete_keys(std::slice::from_ref(&entry.key))
            .await
            .is_err();
        Err(WriteFailure { error, stray })
    }
}
