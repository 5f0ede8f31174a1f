//! Fences: an invalidation stops exactly the fills it names.
//!
//! A fill (a miss, a revalidation, a background refresh, a computed value)
//! reads what it stores *before* an invalidation may land, and writes
//! *after*. Without a fence its old data would outlive the invalidation.
//! With one global fence (a counter every invalidation moves), every
//! invalidation would stop every fill, related or not, and a service with
//! a few writes a second would store almost nothing.
//!
//! So each fill holds a [`Ticket`] taken before its lookup, and each
//! invalidation is logged with a sequence number. When the fill writes,
//! [`Fences::admit`] asks: did an invalidation newer than my ticket name
//! any of the entries I am about to write (by key, URL path, tag, user,
//! name prefix, or everything)? If so the write is dropped; if not it
//! proceeds, registered as *writing*. An invalidation, in turn, waits for
//! the writes in progress that it names (and only those) before it removes
//! entries from the stores. Either the write finished before the removal
//! (which takes it away) or it saw the invalidation and wrote nothing: once
//! an invalidation returns, nothing it names is readable in its old form,
//! and nothing it does not name was held up.
//!
//! The log keeps what open tickets may still need: invalidations newer than
//! the oldest open ticket, and at least the last `MIN_KEPT` (a ticket is
//! registered a moment after its sequence number is read, lock-free, on the
//! hit path's way out). A ticket older than everything trimmed is treated as
//! fenced by everything: safe, and only reachable by a fill that ran while
//! more than `MAX_KEPT` invalidations happened (both in `fence/state.rs`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::entry::Entry;
use crate::store::{BoxFuture, Invalidation};

pub(crate) use self::state::{Names, names};
use self::state::{State, Writing};

/// URL paths whose tags are remembered for flights (see
/// [`Fences::flight_fenced`]); past this many the memory starts over.
const MAX_LEARNT_PATHS: usize = 65_536;

/// Every fence of one cache.
pub(crate) struct Fences {
    /// The sequence number of the last invalidation; read without the lock
    /// when a ticket's start is taken.
    seq: AtomicU64,
    state: Mutex<State>,
}

impl fmt::Debug for Fences {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Fences")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("logged", &state.log.len())
            .field("open", &state.open.values().sum::<usize>())
            .field("writing", &state.writing.len())
            .finish()
    }
}

impl Default for Fences {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }
}

/// Where a fill started: invalidations after it may fence its writes.
/// Dropping it lets the log forget what only it needed.
pub(crate) struct Ticket {
    fences: Arc<Fences>,
    start: u64,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("start", &self.start)
            .finish()
    }
}

/// A start read before a lookup, not yet registered: [`Fences::start`] is
/// one atomic load, cheap enough for the hit path; [`Fences::ticket`]
/// registers it once the request turns out to need one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start(u64);

impl Start {
    /// The sequence number (for a flight that a fill with it leads).
    pub(crate) fn seq(self) -> u64 {
        self.0
    }
}

/// A write in progress that passed its fence; invalidations naming its
/// entries wait until it is dropped.
pub(crate) struct WriteGuard {
    fences: Arc<Fences>,
    id: u64,
    _done: watch::Sender<()>,
}

impl Fences {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Only a panic inside HashMap code could leave the state half
        // updated; keep serving rather than fail every later request.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current position, before a lookup.
    pub(crate) fn start(&self) -> Start {
        Start(self.seq.load(Ordering::SeqCst))
    }

    /// Registers a fill that started at `start`.
    pub(crate) fn ticket(self: &Arc<Self>, start: Start) -> Ticket {
        let mut state = self.lock();
        *state.open.entry(start.0).or_default() += 1;
        Ticket {
            fences: Arc::clone(self),
            start: start.0,
        }
    }

    /// A ticket starting now.
    #[cfg(test)]
    pub(crate) fn ticket_now(self: &Arc<Self>) -> Ticket {
        let start = self.start();
        self.ticket(start)
    }

    /// Logs an invalidation. Returns a future that completes once every
    /// write in progress that `what` names has finished, or `None` when
    /// none does. Call it before removing entries from the stores.
    pub(crate) fn fence(&self, what: &Invalidation) -> Option<BoxFuture<'static, ()>> {
        let mut state = self.lock();
        let seq = self.seq.load(Ordering::SeqCst) + 1;
        state.record(seq, what);
        // Published under the lock: a ticket whose start is `seq` or later
        // is registered after this and need not see it.
        self.seq.store(seq, Ordering::SeqCst);
        state.trim();
        let mut waits: Vec<watch::Receiver<()>> = state
            .writing
            .values()
            .filter(|writing| {
                writing
                    .entries
                    .iter()
                    .any(|entry| names(what, Names::of(entry)))
            })
            .map(|writing| writing.done.clone())
            .collect();
        drop(state);
        if waits.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            for done in &mut waits {
                // Err: the sender is gone, the write is over.
                while done.changed().await.is_ok() {}
            }
        }))
    }

    /// Whether an invalidation after `ticket` started names `what`.
    #[cfg(test)]
    fn is_fenced(&self, ticket: &Ticket, what: Names<'_>) -> bool {
        self.lock().named_since(ticket.start, what)
    }

    /// Whether an invalidation after `start` names `what`.
    pub(crate) fn named_since(&self, start: u64, what: Names<'_>) -> bool {
        self.lock().named_since(start, what)
    }

    /// Whether an invalidation after `after` and at or before `upto` names
    /// `what`: for a waiter that looked at `upto` and is offered what a
    /// leader fetched from `after`. Invalidations after `upto` were
    /// concurrent with the waiter's request and do not count. Read from the
    /// log; a range older than what was trimmed counts as named.
    pub(crate) fn named_between(&self, after: u64, upto: u64, what: Names<'_>) -> bool {
        let state = self.lock();
        if after < state.trimmed {
            return true;
        }
        let from = state.log.partition_point(|(seq, _)| *seq <= after);
        state
            .log
            .range(from..)
            .take_while(|(seq, _)| *seq <= upto)
            .any(|(_, invalidation)| names(invalidation, what))
    }

    /// Whether an invalidation after `start` names what a flight fetches:
    /// `what` (whose tags are not known yet) or the tags its URL path was
    /// last stored with. A flight this is true of is not joined, so
    /// requests after a related invalidation do not wait for an answer
    /// that will be thrown away.
    pub(crate) fn flight_fenced(&self, start: u64, what: Names<'_>) -> bool {
        let state = self.lock();
        if state.named_since(start, what) {
            return true;
        }
        let path = crate::key::path_of(what.name);
        state
            .learnt
            .get(path)
            .is_some_and(|tags| state.named_since(start, Names { tags, ..what }))
    }

    /// Lets a fill write `entries` if no invalidation since its ticket names
    /// any of them, and holds later invalidations that do until the
    /// returned guard is dropped. `None`: fenced, write nothing.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ticket: &Ticket,
        entries: &[Arc<Entry>],
    ) -> Option<WriteGuard> {
        let mut state = self.lock();
        if entries
            .iter()
            .any(|entry| state.named_since(ticket.start, Names::of(entry)))
        {
            return None;
        }
        for entry in entries.iter().filter(|entry| entry.response().is_some()) {
            let path = crate::key::path_of(&entry.name);
            if state.learnt.get(path).map(Vec::as_slice) != Some(&entry.tags[..]) {
                if state.learnt.len() >= MAX_LEARNT_PATHS {
                    state.learnt.clear();
                }
                state.learnt.insert(path.to_owned(), entry.tags.clone());
            }
        }
        let id = state.next_write;
        state.next_write += 1;
        let (sender, receiver) = watch::channel(());
        state.writing.insert(
            id,
            Writing {
                entries: entries.to_vec(),
                done: receiver,
            },
        );
        Some(WriteGuard {
            fences: Arc::clone(self),
            id,
            _done: sender,
        })
    }

    #[cfg(test)]
    fn logged(&self) -> usize {
        self.lock().log.len()
    }
}

impl Ticket {
    /// Where the ticket started.
    pub(crate) fn seq(&self) -> u64 {
        self.start
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.fences.lock();
        if let Some(count) = state.open.get_mut(&self.start) {
            *count -= 1;
            if *count == 0 {
                state.open.remove(&self.start);
            }
        }
        state.trim();
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.fences.lock().writing.remove(&self.id);
    }
}

mod state;
#[cfg(test)]
mod tests;
