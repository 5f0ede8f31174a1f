//! Where entries live: the [`Store`] trait and the in-process [`MemoryStore`].
//!
//! The layer talks to one `Arc<dyn Store>`. A store may also answer
//! synchronously from process memory ([`Store::get_local`]); the layer uses
//! that on the hit path so a hit needs no boxed future and no await.

mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::error::Error;

pub use memory::{DEFAULT_MEMORY_BYTES, MemoryStore, MemoryStoreBuilder};

/// A boxed, `Send` future, as [`Store`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to invalidate. Also the JSON body the admin endpoint takes and the
/// message the invalidation bus carries.
///
/// ```
/// use strata::Invalidation;
///
/// let parsed: Invalidation = serde_json::from_str(r#"{"tag":"materials"}"#).unwrap();
/// assert_eq!(parsed, Invalidation::Tag("materials".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Invalidation {
    /// One value: through [`CacheHandle::invalidate`](crate::CacheHandle::invalidate)
    /// and the admin endpoint, the name given to `get_or_compute` (the
    /// cache adds its prefix); a store receives the full storage key.
    Key(String),
    /// Every stored response under this URL's path: all query strings, all
    /// users, all variants, and the URL's variant rule.
    Url(String),
    /// Every entry carrying this tag.
    Tag(String),
    /// Every entry carrying any of these tags.
    Tags(Vec<String>),
    /// Every entry whose name (normalised URL, or value name) starts with this.
    Prefix(String),
    /// Every entry that belongs to this user.
    User(String),
    /// Everything under the cache's prefix.
    All,
}

impl Invalidation {
    /// Whether this invalidation names `entry`: the rule every store and
    /// the cache's fences apply, in one place.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use bytes::Bytes;
    /// use strata::store::Invalidation;
    /// use strata::{Entry, EntryKind};
    ///
    /// let entry = Entry {
    ///     key: "app:prod:v:report".to_owned(),
    ///     name: "report".to_owned(),
    ///     user: None,
    ///     tags: vec!["reports".to_owned()],
    ///     stored_at: SystemTime::now(),
    ///     ttl: Duration::from_secs(60),
    ///     stale: Duration::ZERO,
    ///     kind: EntryKind::Value(Bytes::from_static(b"{}")),
    /// };
    /// assert!(Invalidation::Tag("reports".to_owned()).names(&entry));
    /// assert!(Invalidation::Prefix("rep".to_owned()).names(&entry));
    /// assert!(!Invalidation::User("1".to_owned()).names(&entry));
    /// ```
    pub fn names(&self, entry: &Entry) -> bool {
        crate::fence::names(self, crate::fence::Names::of(entry))
    }

    /// What kind of invalidation this is (`key`, `url`, `tag`, `tags`,
    /// `prefix`, `user`, `all`), for logs and figures.
    pub fn kind(&self) -> &'static str {
        match self {
            Invalidation::Key(_) => "key",
            Invalidation::Url(_) => "url",
            Invalidation::Tag(_) => "tag",
            Invalidation::Tags(_) => "tags",
            Invalidation::Prefix(_) => "prefix",
            Invalidation::User(_) => "user",
            Invalidation::All => "all",
        }
    }

    /// What it names, as one string (tags joined by `,`; empty for `All`):
    /// logs show a digest of it, never the URL, tag or user itself.
    pub(crate) fn scope(&self) -> String {
        match self {
            Invalidation::Key(value)
            | Invalidation::Url(value)
            | Invalidation::Tag(value)
            | Invalidation::Prefix(value)
            | Invalidation::User(value) => value.clone(),
            Invalidation::Tags(tags) => tags.join(","),
            Invalidation::All => String::new(),
        }
    }
}

/// Figures a store measures about itself. A figure a layer cannot measure
/// cheaply is `None` rather than a guess.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Which store these figures are for (`memory`, `redis`, ...).
    pub layer: &'static str,
    /// Entries held now.
    pub entries: Option<u64>,
    /// Bytes held now (as [`Entry::size`] counts them, for memory).
    pub bytes: Option<u64>,
    /// The byte capacity, if bounded.
    pub capacity_bytes: Option<u64>,
    /// Lookups this layer answered with an entry, where it counts them.
    pub hits: Option<u64>,
    /// Lookups this layer had nothing for, where it counts them.
    pub misses: Option<u64>,
    /// Operations that failed or timed out, where it counts them.
    pub errors: Option<u64>,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Entries dropped because their time ran out.
    pub expirations: u64,
}

/// Whether a store can serve, and how fast it answered a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Which store this is for.
    pub layer: &'static str,
    /// `true` when the store answers.
    pub ok: bool,
    /// Round trip of the probe.
    #[serde(rename = "latency_us", serialize_with = "as_micros")]
    pub latency: Duration,
    /// Why it is not ok, when it is not.
    pub error: Option<String>,
}

/// The health of every layer, and whether the cache as a whole is fully
/// working (`ok`) or working around a failed layer (`degraded`: requests
/// are still answered, from the layers that work and from the service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// `ok` when every layer is, else `degraded`.
    pub status: HealthStatus,
    /// Each layer, outermost first.
    pub layers: Vec<Health>,
}

/// See [`HealthReport::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every layer answers.
    Ok,
    /// At least one layer does not.
    Degraded,
}

impl HealthReport {
    /// A report over these layers.
    pub fn new(layers: Vec<Health>) -> Self {
        let status = if layers.iter().all(|layer| layer.ok) {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        };
        Self { status, layers }
    }

    /// Whether every layer answers.
    pub fn is_ok(&self) -> bool {
        self.status == HealthStatus::Ok
    }

    /// The layers that do not answer.
    pub fn failing(&self) -> impl Iterator<Item = &Health> {
        self.layers.iter().filter(|layer| !layer.ok)
    }
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A place entries live. Implement it to add a backend; the layer never lets
/// its errors reach a client (they become misses and are counted).
///
/// Keys are full storage keys made by [`KeyBuilder`](crate::KeyBuilder).
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Answers from process memory without waiting, if the store has such a
    /// layer. The default has none.
    fn get_local(&self, key: &str) -> Option<Arc<Entry>> {
        let _ = key;
        None
    }

    /// Looks an entry up in every layer.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>>;

    /// Stores an entry under `entry.key` for [`Entry::retention`].
    fn put(&self, entry: Arc<Entry>) -> BoxFuture<'_, Result<(), Error>>;

    /// Drops one key; `true` if something was there.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// Drops what `what` names; returns how many entries went.
    fn invalidate<'a>(&'a self, what: &'a Invalidation) -> BoxFuture<'a, Result<u64, Error>>;

    /// Figures per layer, outermost first.
    fn stats(&self) -> Vec<StoreStats>;

    /// Probes every layer, outermost first.
    fn health(&self) -> BoxFuture<'_, Vec<Health>>;

    /// Gives the store a listener to call when an invalidation arrives
    /// from elsewhere (another instance, through a bus). The cache sets it
    /// when it is built; stores without remote invalidations ignore it.
    fn set_remote_listener(&self, listener: RemoteListener) {
        let _ = listener;
    }

    /// The key prefix (`{app}:{env}:`) this store was built for, if it
    /// keeps keys of its own under one (Redis keeps its invalidation index
    /// there, and prefix and clear-all walks look only there). A cache
    /// refuses a store bound to a prefix other than its own, where
    /// invalidations would silently miss every entry. The default: none.
    fn key_prefix(&self) -> Option<&str> {
        None
    }
}

/// Called by a store for every invalidation that comes from another
/// instance, before the store drops the matching local entries.
///
/// The cache fences what the invalidation names, so no fill of this
/// instance that began earlier and would store something it names writes
/// afterwards; fills of other keys go on. If such fills were already
/// writing, it returns a future that completes once they have finished:
/// the store should then apply the invalidation to its layers once more
/// (without publishing it again), because those writes may have landed
/// after the other instance's removal.
pub type RemoteListener =
    Arc<dyn Fn(&Invalidation) -> Option<BoxFuture<'static, ()>> + Send + Sync>;
