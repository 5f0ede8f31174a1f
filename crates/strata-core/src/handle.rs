//! [`Cache`], its builder, and [`CacheHandle`]: what the application holds
//! to invalidate, read figures and cache computed values.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Clock, SystemClock};
use crate::entry::{Entry, EntryKind};
use crate::error::Error;
use crate::fence::Names;
use crate::flight::Join;
use crate::key::KeyBuilder;
use crate::layer::CacheLayer;
use crate::policy::CachePolicy;
use crate::shared::{InvalidationHook, Shared, UserResolver, Written};
use crate::stats::{Stats, StatsSnapshot, bump};
use crate::store::{HealthReport, Invalidation, MemoryStore, Store};

/// The default largest body the layer buffers and stores: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// How long the layer remembers that a URL's responses are not storable,
/// unless set otherwise: 60 s.
pub const DEFAULT_PASS_TTL: Duration = Duration::from_secs(60);

/// A configured cache: make its [`layer`](Cache::layer) and hand out
/// [`handle`](Cache::handle)s.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use strata_core::{Cache, CachePolicy};
///
/// let cache = Cache::builder().prefix("thebot", "production").build();
/// let app: Router = Router::new()
///     .route("/api/materials/", get(|| async { "[]" })
///         .layer(CachePolicy::public(Duration::from_secs(1800)).tag("materials")))
///     .layer(cache.layer());
/// let handle = cache.handle(); // for handlers: invalidate, stats, get_or_compute
/// # let _ = (app, handle);
/// ```
#[derive(Debug, Clone)]
pub struct Cache {
    shared: Arc<Shared>,
}

impl Cache {
    /// A builder with the defaults: prefix `strata:development:`, a 256 MiB
    /// memory store, no default policy (routes without a policy pass
    /// through untouched).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The tower layer to put in front of a service or an axum `Router`.
    pub fn layer(&self) -> CacheLayer {
        CacheLayer::new(Arc::clone(&self.shared))
    }

    /// A handle for invalidation, figures and `get_or_compute`.
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Builds a [`Cache`].
pub struct CacheBuilder {
    keys: KeyBuilder,
    max_key_len: Option<usize>,
    memory_bytes: u64,
    store: Option<Arc<dyn Store>>,
    user: Option<Arc<dyn UserResolver>>,
    default_policy: Option<CachePolicy>,
    max_body: usize,
    pass_ttl: Duration,
    request_directives: bool,
    emit_surrogate_keys: bool,
    on_invalidate: Option<InvalidationHook>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("keys", &self.keys)
            .field("memory_bytes", &self.memory_bytes)
            .field("store", &self.store)
            .field("default_policy", &self.default_policy)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        Self {
            keys: KeyBuilder::new("strata", "development"),
            max_key_len: None,
            memory_bytes: crate::store::DEFAULT_MEMORY_BYTES,
            store: None,
            user: None,
            default_policy: None,
            max_body: DEFAULT_MAX_BODY,
            pass_ttl: DEFAULT_PASS_TTL,
            request_directives: false,
            emit_surrogate_keys: false,
            on_invalidate: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl CacheBuilder {
    /// Prefixes every key with `{app}:{env}:` (default `strata:development:`),
    /// so several apps and environments can share one Redis.
    pub fn prefix(mut self, app: &str, env: &str) -> Self {
        self.keys = KeyBuilder::new(app, env);
        self
    }

    /// Keys longer than this are hashed (default
    /// [`DEFAULT_MAX_KEY_LEN`](crate::key::DEFAULT_MAX_KEY_LEN)).
    pub fn max_key_len(mut self, max_key_len: usize) -> Self {
        self.max_key_len = Some(max_key_len);
        self
    }

    /// The memory store's capacity in bytes (default 256 MiB). Ignored when
    /// a [`store`](Self::store) is given.
    pub fn memory(mut self, max_bytes: u64) -> Self {
        self.memory_bytes = max_bytes;
        self
    }

    /// Uses this store instead of a [`MemoryStore`] (for example the tiered
    /// store of `strata-redis`).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How to tell who is asking, for [`CachePolicy::private`] routes. Without
    /// it every request is anonymous, and private responses are never stored.
    pub fn user(mut self, resolver: impl UserResolver) -> Self {
        self.user = Some(Arc::new(resolver));
        self
    }

    /// The policy for routes that declare none (default: none, so they pass
    /// through untouched).
    pub fn default_policy(mut self, policy: CachePolicy) -> Self {
        self.default_policy = Some(policy);
        self
    }

    /// Obey the request directives of clients' `Cache-Control` (and
    /// `Pragma: no-cache`), as RFC 9111 §5.2.1 describes: `no-cache` and
    /// `max-age` make the cache fetch anew (and store the answer),
    /// `min-fresh` asks for that much freshness left, `max-stale` accepts
    /// a stale response, `only-if-cached` gets a `504` when nothing stored
    /// fits, and `no-store` keeps the answer out of the store under
    /// [`CachePolicy::origin`]. Default off: any client could otherwise
    /// send every request past the cache to the service behind it, which
    /// is why CDNs and reverse proxies commonly ignore them too. Turn it on
    /// for a gateway whose clients are trusted to ask.
    pub fn honour_request_directives(mut self, honour: bool) -> Self {
        self.request_directives = honour;
        self
    }

    /// List each stored response's tags in a `Surrogate-Key` header (space
    /// separated; tags containing white space are left out), for a CDN in
    /// front that purges by key (Fastly's `Surrogate-Key`; others read a
    /// field of their own). A response that already has one keeps it.
    pub fn emit_surrogate_keys(mut self, emit: bool) -> Self {
        self.emit_surrogate_keys = emit;
        self
    }

    /// Calls `hook` with every invalidation this cache makes: writes'
    /// automatic ones and every `invalidate_*` call, after the stores have
    /// dropped the entries (invalidations from other instances are theirs
    /// to report). Forward them to a CDN's purge API, so a purge by tag
    /// reaches the CDN's copies too. Keep it quick: it runs on the
    /// invalidating task; spawn the purge request.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use strata_core::{Cache, store::Invalidation};
    ///
    /// let purged = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&purged);
    /// let cache = Cache::builder()
    ///     .on_invalidate(move |what: &Invalidation| {
    ///         if let Invalidation::Tag(tag) = what {
    ///             seen.lock().unwrap().push(tag.clone()); // e.g. POST /purge/{tag} to the CDN
    ///         }
    ///     })
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn on_invalidate(mut self, hook: impl Fn(&Invalidation) + Send + Sync + 'static) -> Self {
        self.on_invalidate = Some(Arc::new(hook));
        self
    }

    /// The largest body the layer buffers and stores (default
    /// [`DEFAULT_MAX_BODY`]). Larger bodies, and bodies of unknown length,
    /// are streamed through without being buffered.
    pub fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// How long the layer remembers that a URL's responses are not storable
    /// (default [`DEFAULT_PASS_TTL`]). While it does, requests for the URL go
    /// straight to the service instead of waiting on each other.
    pub fn pass_ttl(mut self, pass_ttl: Duration) -> Self {
        self.pass_ttl = pass_ttl;
        self
    }

    /// The clock for freshness, `Age` and `Last-Modified` (default the
    /// system clock; tests pass a [`MockClock`](crate::MockClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the cache.
    ///
    /// # Panics
    ///
    /// Panics when the store was built for another key prefix (see
    /// [`try_build`](Self::try_build)): a startup mistake, caught before
    /// the first request.
    pub fn build(self) -> Cache {
        match self.try_build() {
            Ok(cache) => cache,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds the cache, or says why it cannot: the store was built for a
    /// key prefix other than the cache's (a Redis store's index and its
    /// prefix and clear-all walks would then find none of the cache's
    /// entries).
    ///
    /// ```
    /// use std::sync::Arc;
    /// # use strata_core::{Cache, MemoryStore};
    /// let cache = Cache::builder()
    ///     .prefix("thebot", "production")
    ///     .store(Arc::new(MemoryStore::new(64 << 20)))
    ///     .try_build()?;
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn try_build(self) -> Result<Cache, Error> {
        let keys = match self.max_key_len {
            Some(max) => self.keys.max_len(max),
            None => self.keys,
        };
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new(self.memory_bytes)));
        if let Some(bound) = store.key_prefix()
            && bound != keys.prefix()
        {
            return Err(Error::Config(format!(
                "the store was built for key prefix {bound:?}, the cache's is {:?}: \
                 give the store the cache's prefix",
                keys.prefix()
            )));
        }
        let shared = Arc::new(Shared {
            store,
            keys,
            stats: Stats::default(),
            fences: Arc::default(),
            flights: Arc::default(),
            value_flights: Arc::default(),
            clock: self.clock,
            user: self.user,
            default_policy: self.default_policy,
            max_body: self.max_body,
            pass_ttl: self.pass_ttl,
            request_directives: self.request_directives,
            emit_surrogate_keys: self.emit_surrogate_keys,
            on_invalidate: self.on_invalidate,
        });
        let weak = Arc::downgrade(&shared);
        shared
            .store
            .set_remote_listener(Arc::new(move |what: &Invalidation| {
                weak.upgrade()
                    .and_then(|shared| shared.remote_invalidation(what))
            }));
        Ok(Cache { shared })
    }
}

/// A cheap, cloneable handle on a [`Cache`], for handlers and background
/// jobs: invalidate, read and reset figures, cache computed values.
///
/// Every `invalidate_*` returns once the store has dropped the entries; a
/// response that was being computed when it was called is not stored
/// afterwards.
#[derive(Debug, Clone)]
pub struct CacheHandle {
    pub(crate) shared: Arc<Shared>,
}

impl CacheHandle {
    /// Drops what `what` names; returns how many entries the store dropped.
    pub async fn invalidate(&self, what: &Invalidation) -> Result<u64, Error> {
        self.shared.invalidate(what).await
    }

    /// Drops the value cached under `name` by [`get_or_compute`](Self::get_or_compute).
    pub async fn invalidate_key(&self, name: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Key(name.to_owned())).await
    }

    /// Drops every cached response under this URL's path: all query
    /// strings, users and variants.
    pub async fn invalidate_url(&self, url: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Url(url.to_owned())).await
    }

    /// Drops every entry tagged `tag`.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Tag(tag.to_owned())).await
    }

    /// Drops every entry carrying any of `tags`.
    pub async fn invalidate_tags<I, T>(&self, tags: I) -> Result<u64, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let tags = tags.into_iter().map(Into::into).collect();
        self.invalidate(&Invalidation::Tags(tags)).await
    }

    /// Drops every entry whose URL (or value name) starts with `prefix`.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::Prefix(prefix.to_owned()))
            .await
    }

    /// Drops every entry of one user: private responses and values named
    /// with [`KeyBuilder::user_name`]. Call it on logout.
    pub async fn invalidate_user(&self, user: &str) -> Result<u64, Error> {
        self.invalidate(&Invalidation::User(user.to_owned())).await
    }

    /// Drops everything.
    pub async fn clear(&self) -> Result<u64, Error> {
        self.invalidate(&Invalidation::All).await
    }

    /// The counters and the store's figures, now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(self.shared.store.stats())
    }

    /// Hands the current figures to the installed `metrics` recorder (see
    /// [`metrics`](crate::metrics) for the names).
    #[cfg(feature = "metrics")]
    pub fn record_metrics(&self) {
        crate::metrics::record(&self.stats());
    }

    /// Records the figures every `period` on a background task until the
    /// task is aborted. Call it inside a tokio runtime.
    #[cfg(feature = "metrics")]
    pub fn spawn_metrics(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                handle.record_metrics();
            }
        })
    }

    /// Sets the counters back to zero (stored entries stay).
    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    /// Probes every store layer: `ok`, or `degraded` with the failing ones.
    pub async fn health(&self) -> HealthReport {
        HealthReport::new(self.shared.store.health().await)
    }

    /// The key builder, for keys that match the cache's own.
    pub fn keys(&self) -> &KeyBuilder {
        &self.shared.keys
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

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
    /// let handle = strata_core::Cache::builder().build().handle();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;

    use super::*;
    use crate::store::{BoxFuture, Health, StoreStats};

    /// A memory store that counts writes.
    #[derive(Debug)]
    struct CountingStore {
        inner: MemoryStore,
        puts: AtomicUsize,
        /// How long a write takes before it lands (a slow remote store).
        put_delay: Duration,
    }

    impl Store for CountingStore {
        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<Entry>>, Error>> {
            self.inner.get(key)
        }

        fn put(&self, entry: Arc<Entry>) -> BoxFuture<'_, Result<(), Error>> {
            self.puts.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(self.put_delay).await;
                self.inner.put_entry(entry);
                Ok(())
            })
        }

        fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
            self.inner.delete(key)
        }

        fn invalidate<'a>(&'a self, what: &'a Invalidation) -> BoxFuture<'a, Result<u64, Error>> {
            self.inner.invalidate(what)
        }

        fn stats(&self) -> Vec<StoreStats> {
            self.inner.stats()
        }

        fn health(&self) -> BoxFuture<'_, Vec<Health>> {
            self.inner.health()
        }
    }

    impl Default for CountingStore {
        fn default() -> Self {
            Self {
                inner: MemoryStore::new(1 << 20),
                puts: AtomicUsize::new(0),
                put_delay: Duration::ZERO,
            }
        }
    }

    fn value(cache: &Cache, name: &str, tags: &[&str]) -> Arc<Entry> {
        Arc::new(Entry {
            key: cache.handle().keys().value_key(name),
            name: name.to_owned(),
            user: None,
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            stored_at: SystemTime::now(),
            ttl: Duration::from_secs(60),
            stale: Duration::ZERO,
            kind: EntryKind::Value(Bytes::from_static(b"old")),
        })
    }

    #[tokio::test]
    async fn a_fill_older_than_a_finished_invalidation_writes_nothing() {
        let store = Arc::new(CountingStore::default());
        let cache = Cache::builder().store(Arc::clone(&store) as _).build();
        let shared = &cache.shared;
        let entry = value(&cache, "k", &[]);

        let ticket = shared.fences.ticket_now();
        cache.handle().invalidate_key("k").await.unwrap();
        let written = shared.put_all(&[Arc::clone(&entry)], &ticket).await;
        assert_eq!(written, Written::Fenced);
        assert_eq!(store.puts.load(Ordering::SeqCst), 0, "not even briefly");
        assert!(store.inner.get_entry(&entry.key).is_none());

        let written = shared
            .put_all(std::slice::from_ref(&entry), &shared.fences.ticket_now())
            .await;
        assert_eq!(written, Written::Stored);
        assert_eq!(store.puts.load(Ordering::SeqCst), 1);
        assert!(store.inner.get_entry(&entry.key).is_some());
    }

    #[tokio::test]
    async fn an_unrelated_invalidation_lets_the_fill_write() {
        let store = Arc::new(CountingStore::default());
        let cache = Cache::builder().store(Arc::clone(&store) as _).build();
        let shared = &cache.shared;
        let entry = value(&cache, "k", &["mine"]);
        let ticket = shared.fences.ticket_now();
        let handle = cache.handle();
        handle.invalidate_key("other").await.unwrap();
        handle.invalidate_tag("theirs").await.unwrap();
        handle.invalidate_url("/elsewhere/").await.unwrap();
        handle.invalidate_user("bob").await.unwrap();
        handle.invalidate_prefix("/x").await.unwrap();
        let written = shared.put_all(&[Arc::clone(&entry)], &ticket).await;
        assert_eq!(written, Written::Stored);
        assert!(store.inner.get_entry(&entry.key).is_some());
        handle.clear().await.unwrap();
        let written = shared.put_all(&[entry], &ticket).await;
        assert_eq!(written, Written::Fenced, "clear names everything");
    }

    #[tokio::test]
    async fn an_invalidation_during_a_slow_write_waits_and_then_removes_it() {
        let store = Arc::new(CountingStore {
            put_delay: Duration::from_millis(50),
            ..CountingStore::default()
        });
        let cache = Cache::builder().store(Arc::clone(&store) as _).build();
        let entry = value(&cache, "k", &["t"]);
        let key = entry.key.clone();
        let shared = Arc::clone(&cache.shared);
        let ticket = shared.fences.ticket_now();
        let fill = tokio::spawn(async move { shared.put_all(&[entry], &ticket).await });
        // The fill has passed its fence and is inside the slow write.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(store.puts.load(Ordering::SeqCst), 1);
        // An unrelated invalidation does not wait for it.
        let unrelated = tokio::time::timeout(
            Duration::from_millis(30),
            cache.handle().invalidate_tag("other"),
        )
        .await;
        assert!(unrelated.is_ok(), "an unrelated invalidation must not wait");
        cache.handle().invalidate_tag("t").await.unwrap();
        assert!(
            store.inner.get_entry(&key).is_none(),
            "the old value must not be readable once invalidate_tag returned"
        );
        fill.await.unwrap();
        assert!(store.inner.get_entry(&key).is_none());
    }
}
