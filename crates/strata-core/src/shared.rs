//! [`Shared`]: the state the layer, every service clone and every handle
//! share, and the two doors to the store that every path goes through:
//! [`Shared::put_all`] for writes (the fence and the admission gate) and
//! [`Shared::invalidate`] for invalidations (the fence, then the stores).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;

use crate::admit;
use crate::clock::Clock;
use crate::entry::{Entry, VariantRule};
use crate::error::Error;
use crate::fence::{Fences, Start, Ticket};
use crate::flight::Flights;
use crate::key::KeyBuilder;
use crate::policy::CachePolicy;
use crate::stats::{Stats, bump};
use crate::store::{BoxFuture, Invalidation, Store};

/// Who is asking: a user id from the request, for per-user entries.
///
/// Implemented for every `Fn(&Parts) -> Option<String>`, so a closure
/// reading an extension or a header is enough.
pub trait UserResolver: Send + Sync + 'static {
    /// The user id of this request, or `None` for an anonymous request.
    fn user(&self, parts: &Parts) -> Option<String>;
}

impl<F> UserResolver for F
where
    F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
{
    fn user(&self, parts: &Parts) -> Option<String> {
        self(parts)
    }
}

/// A function told of every invalidation a cache makes
/// ([`CacheBuilder::on_invalidate`](crate::CacheBuilder::on_invalidate)).
pub type InvalidationHook = Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// A stored response that a flight leader hands to its waiters, with the
/// variant rule it was stored under (`None`: stored at the primary key).
#[derive(Debug)]
pub(crate) struct Filled {
    pub(crate) entry: Arc<Entry>,
    pub(crate) rule: Option<VariantRule>,
    /// Where the leader's fence ticket started: what it fetched may be
    /// older than any invalidation since.
    pub(crate) start: u64,
}

/// What a flight leader publishes to its waiters.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// A response that may answer them (if their key matches).
    Filled(Arc<Filled>),
    /// The response may not answer anyone else: each asks for itself.
    Unshareable,
    /// An invalidation named what the leader fetched while it was on its
    /// way, so it was not stored. A waiter that joined before that
    /// invalidation may still take it (its request was concurrent with
    /// the invalidation); one that joined after looks again.
    Fenced(Arc<Filled>),
}

/// How a write through [`Shared::put_all`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Every entry is in the store.
    Stored,
    /// An invalidation since the ticket names an entry: nothing written.
    Fenced,
    /// The admission gate refused an entry, or the store failed.
    Failed,
}

/// State shared by the layer, every service clone and every handle.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: KeyBuilder,
    pub(crate) stats: Stats,
    pub(crate) fences: Arc<Fences>,
    pub(crate) flights: Arc<Flights<Outcome>>,
    pub(crate) value_flights: Arc<Flights<Option<Bytes>>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) user: Option<Arc<dyn UserResolver>>,
    pub(crate) default_policy: Option<CachePolicy>,
    pub(crate) max_body: usize,
    pub(crate) pass_ttl: Duration,
    /// Whether clients' `Cache-Control` (and `Pragma`) request directives
    /// are obeyed.
    pub(crate) request_directives: bool,
    /// The `Vary` every user's own (private) answer carries: the request
    /// fields the user resolver reads (`None`: none).
    pub(crate) user_vary: Option<http::HeaderValue>,
    /// The targeted cache-control fields this cache obeys (RFC 9213).
    pub(crate) targets: crate::rfc9111::Targets,
    /// How stale a stored response may answer when the origin cannot be
    /// reached (zero: never; RFC 9111 §4.2.4).
    pub(crate) stale_if_disconnected: Duration,
    /// Whether stored responses list their tags in `Surrogate-Key`.
    pub(crate) emit_surrogate_keys: bool,
    /// Built-in compression for every storing policy, if set.
    pub(crate) compression: Option<crate::compress::Compression>,
    /// Told of every invalidation made here (not those from other
    /// instances).
    pub(crate) on_invalidate: Option<InvalidationHook>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("keys", &self.keys)
            .field("default_policy", &self.default_policy)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn user_of(&self, parts: &Parts) -> Option<String> {
        // An empty identity is no identity: it must not become a shared
        // "user" that every such request would see.
        self.user
            .as_ref()
            .and_then(|resolver| resolver.user(parts))
            .filter(|user| !user.is_empty())
    }

    /// An anonymous request was answered with a per-user (private)
    /// response, which is then never stored. Once in a while that is a
    /// signed-out visitor; on every request it is a trap: no user resolver,
    /// or one that runs before the application's authentication has put
    /// the user into the request (an auth middleware added after the cache
    /// layer runs after it). A `debug` event says so on the 1st, 2nd, 4th,
    /// 8th, ... such request, with the count, and no URL or user.
    pub(crate) fn note_anonymous_private(&self) {
        let seen = self.stats.anonymous_private.fetch_add(1, Ordering::Relaxed) + 1;
        if !seen.is_power_of_two() {
            return;
        }
        if self.user.is_some() {
            tracing::debug!(
                target: "strata",
                anonymous_requests = seen,
                "strata private route answered anonymous requests: nothing stored for them; \
                 if they were signed in, the user resolver ran before authentication \
                 (add the authentication layer after `.layer(cache.layer())`, so it runs first)"
            );
        } else {
            tracing::debug!(
                target: "strata",
                anonymous_requests = seen,
                "strata private route answered anonymous requests: no user resolver is set \
                 (`CacheBuilder::user`), so private responses are never stored"
            );
        }
    }

    /// Where a fill starts, read before its lookup (one atomic load).
    pub(crate) fn start(&self) -> Start {
        self.fences.start()
    }

    /// Registers a fill that started at `start`.
    pub(crate) fn ticket(&self, start: Start) -> Ticket {
        self.fences.ticket(start)
    }

    /// Reads through the store; an error is counted and is a miss.
    pub(crate) async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        match self.store.get(key).await {
            Ok(entry) => entry,
            Err(error) => {
                bump(&self.stats.store_errors);
                tracing::warn!(%error, "cache read failed; treating as a miss");
                None
            }
        }
    }

    /// The one door for writes: every fill, revalidation, background
    /// refresh, rule and computed value is stored here, in order, if
    ///
    /// - each entry passes the admission gate ([`admit::check`]: nothing
    ///   per-client in a stored response), and
    /// - no invalidation since `ticket` names any of them (`fence.rs`);
    ///   invalidations that name them wait until the write is done.
    pub(crate) async fn put_all(&self, entries: &[Arc<Entry>], ticket: &Ticket) -> Written {
        if let Some(refused) = entries.iter().find_map(|entry| admit::check(entry).err()) {
            // A bug of the path that built the entry: every path strips
            // these fields first. Refuse rather than leak.
            debug_assert!(false, "an entry reached the store with {refused}");
            bump(&self.stats.errors);
            tracing::error!(field = %refused, "refused to store a per-client field");
            return Written::Failed;
        }
        let Some(_writing) = self.fences.admit(ticket, entries) else {
            bump(&self.stats.fenced);
            return Written::Fenced;
        };
        let mut written = Written::Stored;
        for entry in entries {
            if let Err(error) = self.store.put(Arc::clone(entry)).await {
                bump(&self.stats.store_errors);
                tracing::warn!(%error, "cache write failed");
                written = Written::Failed;
            }
        }
        written
    }

    /// An invalidation made by another instance, whose store already
    /// dropped its local entries: fence the fills it names. If some of them
    /// are writing right now, hand back a future that completes when they
    /// are done (the store then applies the invalidation once more).
    pub(crate) fn remote_invalidation(
        &self,
        what: &Invalidation,
    ) -> Option<BoxFuture<'static, ()>> {
        bump(&self.stats.invalidations);
        tracing::debug!(
            target: "strata",
            kind = what.kind(),
            scope = %crate::service::KeyDigest(&what.scope()),
            "strata invalidation from another instance"
        );
        // It arrives as the other instance's store received it: full keys.
        self.fences.fence(what)
    }

    /// The one door for invalidations: fence what `what` names (waiting
    /// only for the writes it names), drop it from the stores, tell the
    /// hook.
    pub(crate) async fn invalidate(&self, what: &Invalidation) -> Result<u64, Error> {
        let full = self.full(what);
        if let Some(writes_done) = self.fences.fence(&full) {
            writes_done.await;
        }
        bump(&self.stats.invalidations);
        let result = self.store.invalidate(&full).await;
        if let Some(hook) = &self.on_invalidate {
            hook(what);
        }
        match &result {
            Ok(entries) => tracing::debug!(
                target: "strata",
                kind = what.kind(),
                scope = %crate::service::KeyDigest(&what.scope()),
                entries,
                "strata invalidation"
            ),
            Err(error) => {
                bump(&self.stats.store_errors);
                tracing::warn!(%error, kind = what.kind(), "cache invalidation failed");
            }
        }
        result
    }

    /// `what` as the stores see it: a value's name becomes its full key.
    fn full(&self, what: &Invalidation) -> Invalidation {
        match what {
            Invalidation::Key(name) => Invalidation::Key(self.keys.value_key(name)),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
