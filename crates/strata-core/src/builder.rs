//! [`CacheBuilder`]: every knob of a [`Cache`], with its default.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::compress::Compression;
use crate::error::Error;
use crate::key::KeyBuilder;
use crate::policy::CachePolicy;
use crate::rfc9111::Targets;
use crate::shared::{InvalidationHook, Shared, UserResolver};
use crate::stats::Stats;
use crate::store::{Invalidation, MemoryStore, Store};

/// The default largest body the layer buffers and stores: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// How long the layer remembers that a URL's responses are not storable,
/// unless set otherwise: 60 s.
pub const DEFAULT_PASS_TTL: Duration = Duration::from_secs(60);

mod protocol;

impl Cache {
    /// A builder with the defaults: prefix `strata:development:`, a 256 MiB
    /// memory store, no default policy (routes without a policy pass
    /// through untouched).
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
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
    targets: Targets,
    user_vary: Option<http::HeaderValue>,
    stale_if_disconnected: Duration,
    compression: Option<Compression>,
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
            targets: Targets::default(),
            user_vary: Some(http::HeaderValue::from_static("authorization, cookie")),
            stale_if_disconnected: Duration::ZERO,
            compression: None,
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

    /// How to tell who is asking, for [`CachePolicy::private`] routes: a
    /// function of the request's head returning the user's id, or `None`
    /// for an anonymous request. Without it every request is anonymous,
    /// and private responses are never stored.
    ///
    /// The closure's argument type is inferred, so `|parts| ...` is enough:
    ///
    /// ```
    /// use strata::Cache;
    ///
    /// #[derive(Clone)]
    /// struct UserId(u64); // put there by the application's authentication
    ///
    /// let cache = Cache::builder()
    ///     .user(|parts| parts.extensions.get::<UserId>().map(|id| id.0.to_string()))
    ///     .build();
    /// # let _ = cache;
    /// ```
    ///
    /// A type of the application's implementing [`UserResolver`] goes to
    /// [`user_resolver`](Self::user_resolver).
    pub fn user<F>(self, resolver: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.user_resolver(resolver)
    }

    /// The request fields the user resolver reads, which every user's own
    /// (private) answer names in `Vary`, so that a browser's cache, or any
    /// cache downstream, never shows one user's page to the next user of
    /// the same browser (default `Authorization` and `Cookie`). An empty
    /// list adds nothing. The cache itself keys private entries by the
    /// user, not by these fields.
    ///
    /// ```
    /// use strata::Cache;
    ///
    /// let cache = Cache::builder()
    ///     .user(|parts| parts.headers.get("x-session")?.to_str().ok().map(str::to_owned))
    ///     .user_vary(["x-session"])
    ///     .build();
    /// # let _ = cache;
    /// ```
    ///
    /// # Panics
    ///
    /// When a name is not a valid header name.
    pub fn user_vary<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        let names: Vec<String> = names
            .into_iter()
            .map(|name| {
                http::HeaderName::from_bytes(name.trim().as_bytes())
                    .unwrap_or_else(|_| panic!("user_vary: {name:?} is not a header name"))
                    .as_str()
                    .to_owned()
            })
            .collect();
        self.user_vary = (!names.is_empty())
            .then(|| http::HeaderValue::from_str(&names.join(", ")))
            .and_then(Result::ok);
        self
    }

    /// As [`user`](Self::user), for any [`UserResolver`].
    pub fn user_resolver(mut self, resolver: impl UserResolver) -> Self {
        self.user = Some(Arc::new(resolver));
        self
    }

    /// The policy for routes that declare none (default: none, so they pass
    /// through untouched).
    pub fn default_policy(mut self, policy: CachePolicy) -> Self {
        self.default_policy = Some(policy);
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
    /// use strata::{Cache, store::Invalidation};
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

    /// Built-in compression for every storing policy (a route can opt out
    /// with [`CachePolicy::compress`]`(false)`): each response is stored
    /// compressed once, in every coding of `compression`, and each hit is
    /// answered in the best one the request accepts (see
    /// [`compress`](crate::compress); needs the `compression` feature).
    ///
    /// ```
    /// use strata::Cache;
    /// use strata::compress::Compression;
    ///
    /// let cache = Cache::builder().compression(Compression::default()).build();
    /// # let _ = cache;
    /// ```
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// The largest body the layer buffers and stores (default
    /// [`DEFAULT_MAX_BODY`]). A body declared larger streams through
    /// without being buffered; a body of unknown length (streamed, chunked,
    /// compressed on the fly) is read until it ends and stored when it
    /// fits, or, once it passes the limit, streams through with what was
    /// read first. Such a body reaches the client only once it is read
    /// whole (or past the limit): a stream that must reach the client as
    /// it is produced needs `no-store` (or `text/event-stream`).
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
    /// # use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder()
    ///     .prefix("thebot", "production")
    ///     .store(Arc::new(MemoryStore::new(64 << 20)))
    ///     .try_build()?;
    /// # Ok::<(), strata::Error>(())
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
            targets: self.targets,
            user_vary: self.user_vary,
            stale_if_disconnected: self.stale_if_disconnected,
            compression: self.compression,
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
