//! Per-route declarations: how a GET response may be reused ([`CachePolicy`])
//! and what a successful write makes stale ([`Invalidates`]).
//!
//! Both travel as response extensions. With axum, `Router::layer` puts the
//! cache *outside* a route's own layers, so the cache only learns a route's
//! policy from the response it produces; that is why these are layers that
//! stamp the response (and why a handler may stamp its own response instead,
//! for example to add a tag that depends on a path parameter).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;

use crate::annotate::Annotate;

mod invalidates;

pub use invalidates::Invalidates;

/// Who may reuse a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Any client may be served the stored response (`public, max-age=N`).
    Public,
    /// Stored per user, under that user's key only (`private, max-age=N`).
    /// A request without a user identity is never served such an entry.
    Private,
    /// Never stored, but given an ETag so clients revalidate with 304
    /// (`no-cache`).
    NoCache,
    /// Never stored and never revalidated (`no-store`).
    NoStore,
    /// Decided by the response's own headers, as a shared cache decides
    /// (RFC 9111): see [`CachePolicy::origin`].
    Origin,
}

/// How a route's GET responses may be cached.
///
/// Attach it to a route as a layer (`get(handler).layer(policy)`), set it as
/// a response extension from the handler, or make it the cache's default
/// with [`CacheBuilder::default_policy`](crate::CacheBuilder::default_policy).
/// A policy set by the handler wins over the route layer's.
///
/// Cloning is cheap (one reference count).
///
/// Methods that take `self` set something and are named after the
/// directive or field they set (`tag`, `tags`, `vary`, `s_maxage`,
/// `cdn_max_age`, `stale_while_revalidate`, `stale_if_error`); methods
/// that take `&self` read it back and are named after what they return:
/// lists end in `_list` ([`tag_list`](Self::tag_list),
/// [`vary_list`](Self::vary_list)), windows in `_window`, rendered fields
/// after the field ([`cache_control`](Self::cache_control),
/// [`cdn_cache_control`](Self::cdn_cache_control)).
///
/// ```
/// use std::time::Duration;
/// use strata::CachePolicy;
///
/// let list = CachePolicy::public(Duration::from_secs(1800)).tag("materials");
/// assert_eq!(list.cache_control(), "public, max-age=1800");
/// let mine = CachePolicy::private(Duration::from_secs(300));
/// assert_eq!(mine.cache_control(), "private, max-age=300");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    inner: Arc<PolicyInner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PolicyInner {
    scope: Scope,
    ttl: Duration,
    tags: Vec<String>,
    vary: Vec<HeaderName>,
    s_maxage: Option<Duration>,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    cache_control: HeaderValue,
    cdn_cache_control: Option<HeaderValue>,
    /// Built-in compression for this route: `None` follows the builder.
    compress: Option<bool>,
}

impl CachePolicy {
    fn new(scope: Scope, ttl: Duration) -> Self {
        let mut inner = PolicyInner {
            scope,
            ttl,
            tags: Vec::new(),
            vary: Vec::new(),
            s_maxage: None,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            cache_control: HeaderValue::from_static("no-store"),
            cdn_cache_control: None,
            compress: None,
        };
        inner.cache_control = render_cache_control(&inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Reusable by everyone for `ttl`: `Cache-Control: public, max-age=N`.
    pub fn public(ttl: Duration) -> Self {
        Self::new(Scope::Public, ttl)
    }

    /// Reusable by one user for `ttl`, stored under that user's key:
    /// `Cache-Control: private, max-age=N`. The user comes from
    /// [`CacheBuilder::user`](crate::CacheBuilder::user); requests without
    /// one pass through uncached.
    pub fn private(ttl: Duration) -> Self {
        Self::new(Scope::Private, ttl)
    }

    /// Never stored; the response still gets an ETag and conditional
    /// requests get 304: `Cache-Control: no-cache`.
    pub fn no_cache() -> Self {
        Self::new(Scope::NoCache, Duration::ZERO)
    }

    /// Never stored, no validators added: `Cache-Control: no-store`.
    pub fn no_store() -> Self {
        Self::new(Scope::NoStore, Duration::ZERO)
    }

    /// Let the response's own headers decide, as a shared cache (RFC 9111)
    /// would: whether it may be stored (`no-store`, `private`, the
    /// `Authorization` rule, the status), for how long (`s-maxage`, then
    /// `max-age`, then `Expires` - `Date`, then 10 % of the time since
    /// `Last-Modified` for the statuses the RFC allows, at most a day),
    /// its `Age` (counting the upstream's), its stale windows, and its
    /// tags (`Surrogate-Key`, `Cache-Tag`). A `Strata-Cache-Control` field
    /// overrides `Cache-Control` for strata alone (RFC 9213) and is
    /// removed. The response's headers are kept as they are.
    ///
    /// Make it the cache's default for a gateway in front of a service
    /// that already says how its responses may be cached
    /// (`CacheBuilder::default_policy`); routes with a policy of their
    /// own keep it. Responses that say nothing are not stored.
    ///
    /// ```
    /// use strata::{CachePolicy, policy::Scope};
    ///
    /// assert_eq!(CachePolicy::origin().scope(), Scope::Origin);
    /// ```
    pub fn origin() -> Self {
        Self::new(Scope::Origin, Duration::ZERO)
    }

    /// Adds a tag, so [`CacheHandle::invalidate_tag`](crate::CacheHandle::invalidate_tag)
    /// drops the stored response.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).tags.push(tag.into());
        self
    }

    /// Adds several tags at once.
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.inner)
            .tags
            .extend(tags.into_iter().map(Into::into));
        self
    }

    /// Stores a separate variant per value of this request header (for
    /// example `accept-language`), and sends `Vary` with its name.
    pub fn vary(mut self, header: HeaderName) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        if !inner.vary.contains(&header) {
            inner.vary.push(header);
            inner.vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        }
        self
    }

    /// For shared caches downstream (CDNs, proxies) only: how long they
    /// may reuse a public response, `s-maxage=N` (RFC 9111 §5.2.2.10),
    /// while browsers keep `max-age`. strata itself keeps the policy's
    /// TTL. Ignored on other scopes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::CachePolicy;
    ///
    /// let policy = CachePolicy::public(Duration::from_secs(60)).s_maxage(Duration::from_secs(3600));
    /// assert_eq!(policy.cache_control(), "public, max-age=60, s-maxage=3600");
    /// ```
    pub fn s_maxage(mut self, ttl: Duration) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.s_maxage = Some(ttl);
        inner.cache_control = render_cache_control(inner);
        self
    }

    /// For CDNs only (RFC 9213): `CDN-Cache-Control: max-age=N`, which a
    /// CDN obeys instead of `Cache-Control` and does not pass on, so the
    /// CDN may keep a public response longer (or shorter) than browsers
    /// and strata do. Ignored on other scopes than public.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::CachePolicy;
    ///
    /// let policy = CachePolicy::public(Duration::from_secs(60)).cdn_max_age(Duration::from_secs(86_400));
    /// assert_eq!(policy.cdn_cache_control().unwrap(), "max-age=86400");
    /// ```
    pub fn cdn_max_age(mut self, ttl: Duration) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.cdn_cache_control = (inner.scope == Scope::Public).then(|| {
            HeaderValue::try_from(format!("max-age={}", ttl.as_secs()))
                .expect("digits and ASCII are a valid header value")
        });
        self
    }

    /// The `CDN-Cache-Control` value the layer writes, if any
    /// ([`cdn_max_age`](Self::cdn_max_age)).
    pub fn cdn_cache_control(&self) -> Option<&HeaderValue> {
        self.inner.cdn_cache_control.as_ref()
    }

    /// Once the response is stale, keep serving it for up to `window`
    /// while one background request refreshes it (RFC 5861 §3,
    /// `stale-while-revalidate=N`): no client waits for the refresh.
    /// Requests past the window wait for a fresh response as usual.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::CachePolicy;
    ///
    /// let policy = CachePolicy::public(Duration::from_secs(60))
    ///     .stale_while_revalidate(Duration::from_secs(30))
    ///     .stale_if_error(Duration::from_secs(600));
    /// assert_eq!(
    ///     policy.cache_control(),
    ///     "public, max-age=60, stale-while-revalidate=30, stale-if-error=600"
    /// );
    /// ```
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.stale_while_revalidate = window;
        inner.cache_control = render_cache_control(inner);
        self
    }

    /// Once the response is stale, serve it for up to `window` instead of
    /// an error when the refresh fails: a 500, 502, 503 or 504, or an
    /// error of the inner service (RFC 5861 §4, `stale-if-error=N`).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.stale_if_error = window;
        inner.cache_control = render_cache_control(inner);
        self
    }

    /// Whether the cache compresses this route's responses when it stores
    /// them (see [`compress`](crate::compress)), whatever the builder says:
    /// `true` with the builder's [`Compression`](crate::compress::Compression)
    /// (or the default one when the builder set none), `false` to keep a
    /// route's responses as they are.
    pub fn compress(mut self, compress: bool) -> Self {
        Arc::make_mut(&mut self.inner).compress = Some(compress);
        self
    }

    /// This route's compression choice, if it made one.
    pub fn compress_choice(&self) -> Option<bool> {
        self.inner.compress
    }

    /// Who may reuse the response.
    pub fn scope(&self) -> Scope {
        self.inner.scope
    }

    /// How long a stored response stays fresh.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The tags stored with the response.
    pub fn tag_list(&self) -> &[String] {
        &self.inner.tags
    }

    /// The request headers that select a variant, sorted by name.
    pub fn vary_list(&self) -> &[HeaderName] {
        &self.inner.vary
    }

    /// The request headers that select a variant.
    #[deprecated(since = "0.1.0", note = "use `vary_list`, named like `tag_list`")]
    pub fn vary_headers(&self) -> &[HeaderName] {
        self.vary_list()
    }

    /// The `Cache-Control` value the layer writes for this policy (none is
    /// written under [`origin`](Self::origin): `no-store` is only this
    /// value's placeholder there).
    pub fn cache_control(&self) -> &HeaderValue {
        &self.inner.cache_control
    }

    /// How long a stale response may still be served while it is
    /// refreshed in the background ([`stale_while_revalidate`](Self::stale_while_revalidate)).
    pub fn stale_while_revalidate_window(&self) -> Duration {
        self.inner.stale_while_revalidate
    }

    /// How long a stale response may still replace an error
    /// ([`stale_if_error`](Self::stale_if_error)).
    pub fn stale_if_error_window(&self) -> Duration {
        self.inner.stale_if_error
    }

    /// How long past its TTL a store keeps a response under this policy:
    /// the longer of the two stale windows.
    pub fn stale_retention(&self) -> Duration {
        self.inner
            .stale_while_revalidate
            .max(self.inner.stale_if_error)
    }

    /// Whether responses under this policy may be stored (under
    /// [`origin`](Self::origin), when their headers allow it).
    pub fn is_storable(&self) -> bool {
        match self.inner.scope {
            Scope::Public | Scope::Private => !self.inner.ttl.is_zero(),
            Scope::Origin => true,
            Scope::NoCache | Scope::NoStore => false,
        }
    }
}

fn render_cache_control(inner: &PolicyInner) -> HeaderValue {
    let ttl = inner.ttl.as_secs();
    let mut value = match inner.scope {
        Scope::Public => format!("public, max-age={ttl}"),
        Scope::Private => format!("private, max-age={ttl}"),
        Scope::NoCache => return HeaderValue::from_static("no-cache"),
        Scope::NoStore | Scope::Origin => return HeaderValue::from_static("no-store"),
    };
    if let (Scope::Public, Some(shared)) = (inner.scope, inner.s_maxage) {
        value.push_str(&format!(", s-maxage={}", shared.as_secs()));
    }
    for (directive, window) in [
        ("stale-while-revalidate", inner.stale_while_revalidate),
        ("stale-if-error", inner.stale_if_error),
    ] {
        if !window.is_zero() {
            value.push_str(&format!(", {directive}={}", window.as_secs()));
        }
    }
    HeaderValue::try_from(value).expect("digits and ASCII are a valid header value")
}

impl<S> Layer<S> for CachePolicy {
    type Service = Annotate<S, CachePolicy>;

    fn layer(&self, inner: S) -> Self::Service {
        Annotate::new(inner, self.clone())
    }
}
