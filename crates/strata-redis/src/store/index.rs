//! The tag, user and URL-path indexes: sorted sets of entry keys scored by
//! when each entry expires, written after the entry and pruned as they are
//! written; taken for invalidation by a claim and a drain in short,
//! repeatable steps.
//!
//! # Why a claim and a drain
//!
//! A Redis step whose reply is lost (a timeout, a dropped connection) may
//! or may not have run. Every step here is safe to run again and leaves
//! its work where a retry, from this instance or any other, finds it:
//!
//! 1. **Drain** what an earlier invalidation of the same index claimed and
//!    did not finish: read a chunk of `{index}~taking` (`ZRANGE`), delete
//!    those entries, then remove them from the set (`ZREM`). A lost reply
//!    at any point leaves the chunk in the set, to be read again.
//! 2. **Claim**: rename the index to `{index}~taking` (a script, O(1)),
//!    unless a claim is already there (then drain that first and claim
//!    again). Entries written from now on start a new index. A lost reply
//!    leaves the claimed set under the one name every retry drains.
//! 3. **Drain** the claim as in step 1, until the set is gone.
//!
//! No step reads or writes more than [`CHUNK`] members, so no command or
//! script of strata holds Redis for long whatever the index size. The
//! taking key shares the index's hash tag (`{kind:value}`), so the rename
//! stays in one slot of a cluster.

use futures_util::future::try_join_all;
use strata_core::Entry;
use strata_core::Error;
use strata_core::key::path_of;

use super::{MAX_INDEX_KEY, RedisStore};

/// Members read, deleted and removed per drain step.
pub(super) const CHUNK: usize = 256;
/// Members a write prunes from its index at most, when they have expired.
pub(super) const PRUNE: usize = 64;
/// Added to every member's expiry and to the index's own, for the clocks
/// of a cluster's nodes (the entry's and the index's) to disagree by. A
/// larger skew only lets a member be pruned that much before its entry
/// expires, so an invalidation in that last moment of the entry's life
/// misses it: it is then served at most that much longer.
pub(super) const SLACK_MS: u64 = 10;
/// Claims tried per invalidation while other instances keep claiming the
/// same index; past this the invalidation fails and is retried later.
const MAX_CLAIMS: usize = 8;

/// Adds `ARGV[1]` (an entry key) to the index `KEYS[1]`, scored by when it
/// expires on Redis's clock (`ARGV[2]` ms from now, plus slack; a later
/// expiry already there is kept), prunes up to `PRUNE` members that have
/// expired, and makes the index live at least as long as the entry.
pub(super) const INDEX_ADD: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local keep = tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'GT', string.format('%.0f', ms + keep), ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', ms),
  'LIMIT', 0, tonumber(ARGV[4]))
if #old > 0 then redis.call('ZREM', KEYS[1], unpack(old)) end
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return #old";

/// Renames the index `KEYS[1]` to its taking key `KEYS[2]`: 1 when
/// claimed, 0 when there is no index, -1 when a claim is already there.
pub(super) const INDEX_CLAIM: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1";

/// The key of an index being taken.
pub(super) fn taking_key(index: &str) -> String {
    format!("{index}~taking")
}

impl RedisStore {
    /// The index of entries with `value` of `kind` (`t`ag, `u`ser, `p`ath):
    /// `{prefix}~i:{kind:value}`; a long value is hashed.
    pub(super) fn index_key(&self, kind: char, value: &str) -> String {
        let prefix = &self.inner.prefix;
        let mut key = String::with_capacity(prefix.len() + 7 + value.len().min(64));
        key.push_str(prefix);
        key.push_str("~i:{");
        key.push(kind);
        key.push(':');
        if prefix.len() + 7 + value.len() > MAX_INDEX_KEY {
            use sha2::{Digest, Sha256};
            key.push_str(&hex::encode(Sha256::digest(value.as_bytes())));
        } else {
            key.push_str(value);
        }
        key.push('}');
        key
    }

    /// Every index `entry` belongs to.
    pub(super) fn index_keys(&self, entry: &Entry) -> Vec<String> {
        let mut keys: Vec<String> = entry.tags.iter().map(|t| self.index_key('t', t)).collect();
        if let Some(user) = &entry.user {
            keys.push(self.index_key('u', user));
        }
        keys.push(self.index_key('p', path_of(&entry.name)));
        keys
    }

    /// Registers `key`, kept `millis`, in each of `indexes`.
    pub(super) async fn add_to_indexes(
        &self,
        key: &str,
        millis: u64,
        indexes: Vec<String>,
    ) -> Result<(), Error> {
        let add = &self.inner.index_add;
        self.run("index", |conn| async move {
            let registrations = indexes.into_iter().map(|index| {
                let mut conn = conn.clone();
                async move {
                    add.key(index)
                        .arg(key)
                        .arg(millis)
                        .arg(SLACK_MS)
                        .arg(PRUNE)
                        .invoke_async::<()>(&mut conn)
                        .await
                }
            });
            try_join_all(registrations).await.map(|_| ())
        })
        .await
    }

    /// Deletes every entry `index` names (see the module docs); returns
    /// how many existed. Safe to run again after any failure: a retry
    /// finds the work an interrupted run left.
    pub(super) async fn take_index(&self, index: String) -> Result<u64, Error> {
        let taking = taking_key(&index);
        // What an earlier, interrupted invalidation of this index claimed.
        let mut deleted = self.drain(&taking).await?;
        for _ in 0..MAX_CLAIMS {
            let claim = &self.inner.index_claim;
            let (index, taking) = (&index, &taking);
            let claimed: i64 = self
                .run("claim index", |mut conn| async move {
                    claim.key(index).key(taking).invoke_async(&mut conn).await
                })
                .await?;
            match claimed {
                0 => return Ok(deleted),
                1 => return Ok(deleted + self.drain(taking).await?),
                // Another invalidation of this index is draining its claim:
                // help it finish, then claim what was written since.
                _ => deleted += self.drain(taking).await?,
            }
        }
        Err(Error::Store(format!(
            "redis: index {index} claimed by others {MAX_CLAIMS} times in a row"
        )))
    }

    /// Deletes the entries `taking` lists, a chunk at a time: read, delete,
    /// then remove from the set, so a chunk leaves the set only once its
    /// entries are gone.
    async fn drain(&self, taking: &str) -> Result<u64, Error> {
        let mut deleted = 0;
        loop {
            let members: Vec<String> = self
                .run("read index", |mut conn| async move {
                    redis::cmd("ZRANGE")
                        .arg(taking)
                        .arg(0)
                        .arg(CHUNK - 1)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            if members.is_empty() {
                return Ok(deleted);
            }
            deleted += self.delete_keys(&members).await?;
            let members = &members;
            self.run("trim index", |mut conn| async move {
                redis::cmd("ZREM")
                    .arg(taking)
                    .arg(members)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await?;
        }
    }
}
