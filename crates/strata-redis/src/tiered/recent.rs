//! The writes this instance made to Redis lately, so a remote invalidation
//! that arrives after one of them landed can be applied to Redis again.
//!
//! Instance A removes what a tag names from Redis and publishes; a fill of
//! instance B that read the database before A's write may land in Redis
//! after A's removal and before A's message reaches B. B's cache fences
//! fills still writing when the message arrives; this record covers the
//! ones that finished just before: if a write B finished within the window
//! is named by the message, B removes what it names from Redis once more.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_core::Entry;
use strata_core::store::Invalidation;

/// Writes remembered at most; past this the record answers "maybe" for
/// every invalidation until the overflow has left the window.
const MAX_WRITES: usize = 4096;

pub(super) struct Recent {
    window: Duration,
    writes: Mutex<Writes>,
}

struct Writes {
    /// Oldest first; the entries are the ones L1 holds (no copy).
    list: VecDeque<(Instant, Arc<Entry>)>,
    /// When the list last dropped a write still inside the window.
    overflowed: Option<Instant>,
}

impl Recent {
    /// Remembers writes for `window`: how late, after a write, a remote
    /// invalidation that it may have raced can arrive (the bus delay, with
    /// resends and the staleness bound).
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            writes: Mutex::new(Writes {
                list: VecDeque::new(),
                overflowed: None,
            }),
        }
    }

    /// Remembers writes for twice the staleness bound, and at least 2 s:
    /// the bus delay, a resent publish (resends run every 100 ms, once a
    /// second while refused) and a lease.
    pub(super) fn for_bound(bound: Duration) -> Self {
        Self::new((bound * 2).max(Duration::from_secs(2)))
    }

    /// Records a write Redis took.
    pub(super) fn record(&self, entry: Arc<Entry>) {
        let now = Instant::now();
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        self.forget_old(&mut writes, now);
        if writes.list.len() >= MAX_WRITES {
            writes.list.pop_front();
            writes.overflowed = Some(now);
        }
        writes.list.push_back((now, entry));
    }

    /// Whether a write within the window may be named by `what`.
    pub(super) fn named(&self, what: &Invalidation) -> bool {
        let now = Instant::now();
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        self.forget_old(&mut writes, now);
        writes.overflowed.is_some() || writes.list.iter().any(|(_, entry)| what.names(entry))
    }

    fn forget_old(&self, writes: &mut Writes, now: Instant) {
        let old = |at: Instant| now.saturating_duration_since(at) > self.window;
        while writes.list.front().is_some_and(|(at, _)| old(*at)) {
            writes.list.pop_front();
        }
        if writes.overflowed.is_some_and(old) {
            writes.overflowed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;
    use strata_core::EntryKind;

    use super::*;

    fn entry(name: &str, tag: &str) -> Arc<Entry> {
        Arc::new(Entry {
            key: format!("p:http:{name}"),
            name: name.to_owned(),
            user: None,
            tags: vec![tag.to_owned()],
            stored_at: SystemTime::now(),
            ttl: Duration::from_secs(60),
            stale: Duration::ZERO,
            kind: EntryKind::Value(Bytes::new()),
        })
    }

    #[test]
    fn only_writes_it_names_within_the_window_count() {
        let recent = Recent::new(Duration::from_millis(50));
        recent.record(entry("/a/1/", "a"));
        assert!(recent.named(&Invalidation::Tag("a".to_owned())));
        assert!(recent.named(&Invalidation::Url("/a/1/?x=1".to_owned())));
        assert!(!recent.named(&Invalidation::Tag("b".to_owned())));
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            !recent.named(&Invalidation::Tag("a".to_owned())),
            "forgotten"
        );
    }

    #[test]
    fn an_overflow_answers_maybe_until_it_leaves_the_window() {
        let recent = Recent::new(Duration::from_millis(50));
        for i in 0..=MAX_WRITES {
            recent.record(entry(&format!("/a/{i}/"), "a"));
        }
        assert!(recent.named(&Invalidation::Tag("b".to_owned())));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!recent.named(&Invalidation::Tag("b".to_owned())));
    }
}
