//! The builder's settings for how the cache reads and speaks HTTP: which
//! request and targeted directives it obeys, what it tells CDNs, and what
//! it may serve while the origin is out of reach.

use std::time::Duration;

use super::CacheBuilder;
use crate::rfc9111::{TargetedField, Targets};

impl CacheBuilder {
    /// Obey the request directives of clients' `Cache-Control` (and
    /// `Pragma: no-cache`), as RFC 9111 §5.2.1 describes: `no-cache` and
    /// `max-age` make the cache fetch anew (and store the answer),
    /// `min-fresh` asks for that much freshness left, `max-stale` accepts
    /// a stale response, `only-if-cached` gets a `504` when nothing stored
    /// fits, and `no-store` keeps the answer out of the store under
    /// [`CachePolicy::origin`](crate::CachePolicy::origin). Default off: any client could otherwise
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

    /// How stale a stored response may be (past its lifetime) and still
    /// answer when the origin cannot be reached: the service's response
    /// carries [`Disconnected`](crate::Disconnected) (a proxy's `502` or
    /// `504` for a refused, failed or timed-out connection), the service
    /// failed (`Err`), or the body broke off before its end (RFC 9111
    /// §4.2.4; Varnish's grace, nginx's `proxy_cache_use_stale error
    /// timeout`). Such an answer says `Cache-Status: strata; fwd=stale;
    /// detail=stale-if-disconnected`.
    ///
    /// A stored response that forbids serving stale (`must-revalidate`,
    /// `proxy-revalidate`, `s-maxage`, `no-cache`) is never served so: the
    /// cache answers `504 Gateway Timeout` itself instead (§5.2.2.2,
    /// `detail=disconnected`). A client that asked for a validated or
    /// fresher response (`no-cache`, `max-age`, `min-fresh`) gets the
    /// service's answer. Entries are kept this long past their lifetime
    /// (bounded by memory, as ever) so that there is something to serve.
    ///
    /// Default: zero, never (an application's handlers do not lose their
    /// origin). The gateway sets an hour.
    pub fn stale_if_disconnected(mut self, max_staleness: Duration) -> Self {
        self.stale_if_disconnected = max_staleness;
        self
    }

    /// The targeted cache-control fields (RFC 9213) this cache obeys, most
    /// specific first. Under [`CachePolicy::origin`](crate::CachePolicy::origin) the first one a
    /// response carries, valid and non-empty, replaces its `Cache-Control`
    /// and `Expires` for this cache's storage and freshness decisions; an
    /// invalid one is ignored and `Cache-Control` applies. Route policies
    /// of an application decide for themselves and read none of them.
    ///
    /// Default: [`TargetedField::Strata`] alone. A cache in front of an
    /// application is not the CDN: the CDN in front of it reads
    /// `CDN-Cache-Control`. A CDN-class cache (a gateway in front of an
    /// origin) adds [`TargetedField::Cdn`]:
    ///
    /// ```
    /// use strata::{Cache, CachePolicy, TargetedField};
    ///
    /// let gateway_cache = Cache::builder()
    ///     .default_policy(CachePolicy::origin())
    ///     .targeted_fields([TargetedField::Strata, TargetedField::Cdn])
    ///     .build();
    /// # let _ = gateway_cache;
    /// ```
    ///
    /// An empty list obeys `Cache-Control` alone; a field listed twice
    /// counts where it first appears.
    pub fn targeted_fields(mut self, fields: impl IntoIterator<Item = TargetedField>) -> Self {
        self.targets = Targets::new(fields);
        self
    }
}
