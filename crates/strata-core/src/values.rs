//! Cached values that are not HTTP responses: [`CacheHandle::get_or_compute`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::CacheHandle;
use crate::entry::{Entry, EntryKind};
use crate::fence::Names;
use crate::flight::Join;
use crate::key::KeyBuilder;
use crate::shared::Written;
use crate::stats::bump;

impl CacheHandle {
    /// The cached value of `name`, or `compute`'s result, stored for `ttl`.
    ///
    /// Values are stored as JSON. Concurrent calls for one name run
    /// `compute` once; the others wait for it. A stored value that no
    /// longer deserialises as `T` is recomputed. If the value cannot be
    /// serialised it is returned but not stored (and counted as an error).
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use std::time::Duration;
    /// let handle = strata::Cache::builder().build().handle();
    /// let count: u64 = handle
    ///     .get_or_compute("active_users", Duration::from_secs(600), || async { 42 })
    ///     .await;
    /// assert_eq!(count, 42);
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn get_or_compute<T, F, Fut>(&self, name: &str, ttl: Duration, compute: F) -> T
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let result = self
            .try_get_or_compute(name, ttl, || async { Ok::<T, Infallible>(compute().await) })
            .await;
        match result {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// Like [`get_or_compute`](Self::get_or_compute) for a computation that
    /// can fail: an error is returned to this caller and nothing is stored.
    pub async fn try_get_or_compute<T, E, F, Fut>(
        &self,
        name: &str,
        ttl: Duration,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let shared = &self.shared;
        let key = shared.keys.value_key(name);
        let user = KeyBuilder::user_of_name(name);
        let names = Names {
            key: &key,
            name,
            user: user.as_deref(),
            tags: &[],
        };
        loop {
            // Read before the lookup: an invalidation of this value from
            // here on keeps an older computation out of the store.
            let start = shared.start();
            if let Some(value) = self.stored_value::<T>(&key).await {
                bump(&shared.stats.hits);
                return Ok(value);
            }
            let fences = &shared.fences;
            let join = shared
                .value_flights
                .join(&key, start.seq(), |start| fences.named_since(start, names));
            match join {
                Join::Waiter(waiter) => {
                    bump(&shared.stats.coalesced);
                    if let Some(Some(json)) = waiter.wait().await
                        && let Ok(value) = serde_json::from_slice(&json)
                    {
                        bump(&shared.stats.hits);
                        return Ok(value);
                    }
                    // The leader failed, went away or was fenced: look
                    // again, and lead.
                }
                Join::Leader(leader) => {
                    let ticket = shared.ticket(start);
                    bump(&shared.stats.misses);
                    let value = compute().await?;
                    let json = match serde_json::to_vec(&value) {
                        Ok(json) => Bytes::from(json),
                        Err(error) => {
                            bump(&shared.stats.errors);
                            tracing::warn!(%error, "get_or_compute value is not serialisable");
                            leader.complete(None);
                            return Ok(value);
                        }
                    };
                    let entry = Arc::new(Entry {
                        key: key.clone(),
                        name: name.to_owned(),
                        user: user.clone(),
                        tags: Vec::new(),
                        stored_at: shared.clock.now(),
                        ttl,
                        stale: Duration::ZERO,
                        kind: EntryKind::Value(json.clone()),
                    });
                    match shared.put_all(&[entry], &ticket).await {
                        Written::Stored => {
                            bump(&shared.stats.stores);
                            leader.complete(Some(json));
                        }
                        // Waiters that joined before the invalidation may
                        // not take this older value either: they look again.
                        Written::Fenced => drop(leader),
                        Written::Failed => leader.complete(Some(json)),
                    }
                    return Ok(value);
                }
            }
        }
    }

    async fn stored_value<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let entry = self.shared.get(key).await?;
        if !entry.is_fresh(self.shared.clock.now()) {
            return None;
        }
        match &entry.kind {
            EntryKind::Value(json) => serde_json::from_slice(json).ok(),
            _ => None,
        }
    }
}
