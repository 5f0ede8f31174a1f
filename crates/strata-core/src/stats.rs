//! Counters the layer keeps: plain atomics, no lock anywhere near a hit.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::store::StoreStats;

/// Live counters. Read them with [`CacheHandle::stats`](crate::CacheHandle::stats).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stores: AtomicU64,
    pub(crate) bypasses: AtomicU64,
    pub(crate) not_modified: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) fenced: AtomicU64,
    /// Failures of the cache's own: an entry the admission gate refused,
    /// a value that cannot be serialised.
    pub(crate) errors: AtomicU64,
    /// Failures the store returned. Counted at the top level only when no
    /// layer counts its own (a store's layers see failures the cache does
    /// not: a write kept in memory while Redis refused it, a replay).
    pub(crate) store_errors: AtomicU64,
    /// The layers' own error counts when the counters were last reset.
    pub(crate) layer_errors_at_reset: AtomicU64,
    /// Anonymous requests answered with a per-user (private) response,
    /// for the debug event that points at a misplaced authentication
    /// layer ([`Shared::note_anonymous_private`](crate::shared::Shared::note_anonymous_private)).
    pub(crate) anonymous_private: AtomicU64,
}

/// The errors the store's layers count themselves, if any layer does.
pub(crate) fn layer_errors(layers: &[StoreStats]) -> Option<u64> {
    layers
        .iter()
        .filter_map(|layer| layer.errors)
        .reduce(|a, b| a + b)
}

#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// Sets every counter back to zero; `layers` are the store's figures
    /// now, whose error counts the top level then counts from.
    pub(crate) fn reset(&self, layers: &[StoreStats]) {
        self.layer_errors_at_reset
            .store(layer_errors(layers).unwrap_or(0), Ordering::Relaxed);
        for counter in [
            &self.hits,
            &self.misses,
            &self.stores,
            &self.bypasses,
            &self.not_modified,
            &self.coalesced,
            &self.invalidations,
            &self.fenced,
            &self.errors,
            &self.store_errors,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, layers: Vec<StoreStats>) -> StatsSnapshot {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let lookups = hits + misses;
        // The in-process layer's figures; a store without one holds nothing
        // in process memory, which is a measured zero, not a guess.
        let memory = layers
            .iter()
            .find(|layer| layer.layer == "memory")
            .cloned()
            .unwrap_or_default();
        StatsSnapshot {
            hits,
            misses,
            hit_rate: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
            stores: self.stores.load(Ordering::Relaxed),
            bypasses: self.bypasses.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            fenced: self.fenced.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed)
                + match layer_errors(&layers) {
                    Some(counted) => {
                        counted.saturating_sub(self.layer_errors_at_reset.load(Ordering::Relaxed))
                    }
                    None => self.store_errors.load(Ordering::Relaxed),
                },
            evictions: layers.iter().map(|layer| layer.evictions).sum(),
            entries: memory.entries.unwrap_or(0),
            bytes: memory.bytes.unwrap_or(0),
            layers,
        }
    }
}

/// The counters at one moment, with the store's own figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Requests served from a stored response (including 304s from one,
    /// and requests answered by another request's identical miss).
    pub hits: u64,
    /// Requests that went to the inner service and whose response the
    /// cache then meant to store (stored, or found too long midway, or
    /// superseded by an invalidation). Every GET or HEAD the layer sees is
    /// exactly one of a hit, a miss or a bypass.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 when there were none.
    pub hit_rate: f64,
    /// Responses and values written to the store.
    pub stores: u64,
    /// Requests that went to the inner service with a response the cache
    /// would not store (no policy, `no-store`, `no-cache`, private without
    /// a user, an error status, `Set-Cookie` on a shared response, too
    /// large, ...).
    pub bypasses: u64,
    /// 304 responses sent.
    pub not_modified: u64,
    /// Requests that waited for another request's identical miss.
    pub coalesced: u64,
    /// Invalidation calls (by key, URL, tag, prefix, user or all).
    pub invalidations: u64,
    /// Fills not stored because an invalidation named what they fetched
    /// while they ran (their answer still served their own requests). A
    /// high figure means writes keep overtaking slow fills of the same
    /// data; unrelated invalidations never count here.
    pub fenced: u64,
    /// Failures, none of which reached a client: the store's, as its
    /// layers count them (a Redis read, write, invalidation, replay or
    /// publish refused or timed out, also when the entry was kept in
    /// memory), or as the cache saw them when no layer counts its own;
    /// and the cache's own (an entry the admission gate refused, a value
    /// that cannot be serialised).
    pub errors: u64,
    /// Entries evicted for room, over all layers.
    pub evictions: u64,
    /// Entries held in process memory (the `memory` layer; 0 for a store
    /// without one). Other layers' figures are in `layers`.
    pub entries: u64,
    /// Bytes held in process memory, as [`Entry::size`](crate::Entry::size)
    /// counts them (0 for a store without a memory layer).
    pub bytes: u64,
    /// Each layer's own figures, outermost first.
    pub layers: Vec<StoreStats>,
}
