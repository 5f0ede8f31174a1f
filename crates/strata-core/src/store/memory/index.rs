//! The label index of the memory store: which keys carry each tag, user and path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::entry::Entry;
use crate::key::path_of;

/// What an entry can be invalidated by, besides its key.
#[derive(Debug, Clone, Copy)]
pub(super) enum Label {
    Tag,
    User,
    Path,
}

/// label -> the keys that carry it, each with the id of the insert that
/// registered it; one map per kind of label, so that a lookup takes the
/// label as `&str` and allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Index {
    tags: HashMap<String, Keys>,
    users: HashMap<String, Keys>,
    paths: HashMap<String, Keys>,
}

impl Index {
    fn labels_mut(&mut self, label: Label) -> &mut HashMap<String, Keys> {
        match label {
            Label::Tag => &mut self.tags,
            Label::User => &mut self.users,
            Label::Path => &mut self.paths,
        }
    }

    pub(super) fn register(&mut self, label: Label, name: &str, key: &Arc<str>, id: u64) {
        let labels = self.labels_mut(label);
        match labels.get_mut(name) {
            Some(keys) => keys.insert(key, id),
            None => {
                labels.insert(name.to_owned(), Keys::One(Arc::clone(key), id));
            }
        }
    }

    /// Removes `key` from `name`, unless a later insert (not `id`)
    /// registered it again.
    pub(super) fn unregister(&mut self, label: Label, name: &str, key: &str, id: u64) {
        let labels = self.labels_mut(label);
        if labels
            .get_mut(name)
            .is_some_and(|keys| keys.remove(key, id))
        {
            labels.remove(name);
        }
    }

    pub(super) fn take(&mut self, label: Label, name: &str) -> Option<Keys> {
        self.labels_mut(label).remove(name)
    }

    pub(super) fn len(&self) -> usize {
        [&self.tags, &self.users, &self.paths]
            .iter()
            .flat_map(|labels| labels.values())
            .map(Keys::len)
            .sum()
    }
}

/// The keys that carry one label. Most labels (a path, an item's own tag)
/// name one key, which needs no set of its own.
#[derive(Debug)]
pub(super) enum Keys {
    One(Arc<str>, u64),
    #[allow(
        clippy::box_collection,
        reason = "boxed, the set does not make every label's slot 16 bytes larger"
    )]
    Many(Box<HashMap<Arc<str>, u64>>),
}

impl Keys {
    fn insert(&mut self, key: &Arc<str>, id: u64) {
        match self {
            Keys::One(one, one_id) if **one == **key => *one_id = id,
            Keys::One(one, one_id) => {
                let set = HashMap::from([(Arc::clone(one), *one_id), (Arc::clone(key), id)]);
                *self = Keys::Many(Box::new(set));
            }
            Keys::Many(set) => {
                set.insert(Arc::clone(key), id);
            }
        }
    }

    /// Removes `key` if `id` registered it; `true` if no key is left.
    fn remove(&mut self, key: &str, id: u64) -> bool {
        match self {
            Keys::One(one, one_id) => **one == *key && *one_id == id,
            Keys::Many(set) => {
                if set.get(key) == Some(&id) {
                    set.remove(key);
                }
                set.is_empty()
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Keys::One(..) => 1,
            Keys::Many(set) => set.len(),
        }
    }

    pub(super) fn into_vec(self) -> Vec<Arc<str>> {
        match self {
            Keys::One(key, _) => vec![key],
            Keys::Many(set) => set.into_keys().collect(),
        }
    }
}

pub(super) fn labels(entry: &Entry) -> impl Iterator<Item = (Label, &str)> + '_ {
    entry
        .tags
        .iter()
        .map(|tag| (Label::Tag, tag.as_str()))
        .chain(entry.user.iter().map(|user| (Label::User, user.as_str())))
        .chain(std::iter::once((Label::Path, path_of(&entry.name))))
}

pub(super) fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    // The index is only ever left half-updated by a panic in HashMap code;
    // keep serving rather than poison every later request.
    index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
