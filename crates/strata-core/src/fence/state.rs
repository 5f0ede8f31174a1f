//! The fences' state: the invalidation log and its indexes, open tickets,
//! writes in progress, and the tags each path was last stored with; and
//! what an invalidation names ([`Names`], [`names`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;

use crate::entry::Entry;
use crate::key::path_of_url;
use crate::store::Invalidation;

/// Invalidations kept in the log whatever the open tickets.
pub(super) const MIN_KEPT: usize = 4096;

/// Invalidations kept at most; beyond, the oldest go, and tickets older
/// than them count as fenced.
pub(super) const MAX_KEPT: usize = 200_000;

/// What a fill may write, as far as fences are concerned: the fields of an
/// [`Entry`] that an [`Invalidation`] can name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names<'a> {
    pub(crate) key: &'a str,
    /// The normalised URL (or a value's name); its path is what a URL
    /// invalidation names.
    pub(crate) name: &'a str,
    pub(crate) user: Option<&'a str>,
    pub(crate) tags: &'a [String],
}

impl<'a> Names<'a> {
    pub(crate) fn of(entry: &'a Entry) -> Self {
        Self {
            key: &entry.key,
            name: &entry.name,
            user: entry.user.as_deref(),
            tags: &entry.tags,
        }
    }
}

/// Everything the fences know, behind one lock.
#[derive(Default)]
pub(super) struct State {
    /// Invalidations newer than `trimmed`, oldest first.
    pub(super) log: VecDeque<(u64, Invalidation)>,
    /// Everything at or below this was trimmed from the log.
    pub(super) trimmed: u64,
    /// The newest logged invalidation naming each key, path, tag, user.
    pub(super) keys: HashMap<String, u64>,
    pub(super) paths: HashMap<String, u64>,
    pub(super) tags: HashMap<String, u64>,
    pub(super) users: HashMap<String, u64>,
    /// Prefix invalidations in the log, oldest first.
    pub(super) prefixes: VecDeque<(u64, String)>,
    /// The last `All`.
    pub(super) all: u64,
    /// Open tickets by start: start -> how many.
    pub(super) open: BTreeMap<u64, usize>,
    /// Writes in progress: id -> entries, and a channel closed when done.
    pub(super) writing: HashMap<u64, Writing>,
    pub(super) next_write: u64,
    /// The tags each URL path was last stored with: a flight does not know
    /// its response's tags until the response arrives, but most paths keep
    /// theirs from one fill to the next.
    pub(super) learnt: HashMap<String, Vec<String>>,
}

/// A write in progress: its entries, and a channel closed when it ends.
pub(super) struct Writing {
    pub(super) entries: Vec<Arc<Entry>>,
    pub(super) done: watch::Receiver<()>,
}

impl State {
    /// The index each name of `what` lives in: keys, paths, tags, users.
    /// (Prefixes and `All` are kept apart: they are not looked up by name.)
    fn indexed(
        &mut self,
        what: &Invalidation,
        mut each: impl FnMut(&mut HashMap<String, u64>, &str),
    ) {
        match what {
            Invalidation::Key(key) => each(&mut self.keys, key),
            Invalidation::Url(url) => each(&mut self.paths, &path_of_url(url)),
            Invalidation::Tag(tag) => each(&mut self.tags, tag),
            Invalidation::Tags(tags) => {
                for tag in tags {
                    each(&mut self.tags, tag);
                }
            }
            Invalidation::User(user) => each(&mut self.users, user),
            Invalidation::Prefix(_) | Invalidation::All => {}
        }
    }

    pub(super) fn record(&mut self, seq: u64, what: &Invalidation) {
        self.indexed(what, |map, name| {
            // Most names are invalidated again and again: reuse the slot.
            match map.get_mut(name) {
                Some(at) => *at = seq,
                None => {
                    map.insert(name.to_owned(), seq);
                }
            }
        });
        match what {
            Invalidation::Prefix(prefix) => self.prefixes.push_back((seq, prefix.clone())),
            Invalidation::All => self.all = seq,
            _ => {}
        }
        self.log.push_back((seq, what.clone()));
    }

    /// Forgets the invalidations no open ticket can need.
    pub(super) fn trim(&mut self) {
        let oldest_open = self.open.keys().next().copied();
        while let Some((seq, _)) = self.log.front() {
            let seq = *seq;
            let needed = oldest_open.is_some_and(|start| seq > start);
            if self.log.len() <= MIN_KEPT || (needed && self.log.len() <= MAX_KEPT) {
                break;
            }
            let Some((seq, what)) = self.log.pop_front() else {
                break;
            };
            self.trimmed = seq;
            self.indexed(&what, |map, name| {
                if map.get(name) == Some(&seq) {
                    map.remove(name);
                }
            });
            if matches!(what, Invalidation::Prefix(_)) {
                self.prefixes.pop_front();
            }
        }
    }

    pub(super) fn named_since(&self, start: u64, what: Names<'_>) -> bool {
        if start < self.trimmed {
            // Older than the log: whatever came since is unknown.
            return true;
        }
        let after = |at: Option<&u64>| at.is_some_and(|&at| at > start);
        self.all > start
            || after(self.keys.get(what.key))
            || after(self.paths.get(crate::key::path_of(what.name)))
            || what.user.is_some_and(|user| after(self.users.get(user)))
            || what.tags.iter().any(|tag| after(self.tags.get(tag)))
            || self
                .prefixes
                .iter()
                .rev()
                .take_while(|(at, _)| *at > start)
                .any(|(_, prefix)| what.name.starts_with(prefix.as_str()))
    }
}

/// Whether `invalidation` names an entry with these names: the rule both
/// stores apply, in one place for the fences.
pub(crate) fn names(invalidation: &Invalidation, what: Names<'_>) -> bool {
    match invalidation {
        Invalidation::Key(key) => key == what.key,
        Invalidation::Url(url) => path_of_url(url) == crate::key::path_of(what.name),
        Invalidation::Tag(tag) => what.tags.contains(tag),
        Invalidation::Tags(tags) => tags.iter().any(|tag| what.tags.contains(tag)),
        Invalidation::User(user) => what.user == Some(user.as_str()),
        Invalidation::Prefix(prefix) => what.name.starts_with(prefix.as_str()),
        Invalidation::All => true,
    }
}
