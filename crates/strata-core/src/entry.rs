//! What a store holds: a response, a URL's variant rule, or a computed value.

use std::mem::size_of;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AGE, CONTENT_ENCODING, CONTENT_LENGTH, ETAG};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::compress::Coding;
use crate::conditional::{copy_not_modified_headers, etag_for_coding};
use crate::rfc9111::STRATA_CACHE_CONTROL;
use crate::status::CACHE_STATUS;

/// One stored item with the metadata every layer needs to expire and
/// invalidate it. Stores hand it out as `Arc<Entry>`, so a hit copies nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The full storage key (see [`KeyBuilder`](crate::KeyBuilder)).
    pub key: String,
    /// What prefix invalidation matches: the normalised URL of a response
    /// or rule (`/api/materials/?page=2`), or the name of a value.
    pub name: String,
    /// The user the entry belongs to, for per-user entries.
    pub user: Option<String>,
    /// Tags for [`Invalidation::Tag`](crate::Invalidation::Tag).
    pub tags: Vec<String>,
    /// When it was stored (by the cache's [`Clock`](crate::Clock)).
    pub stored_at: SystemTime,
    /// How long it is fresh after `stored_at`.
    pub ttl: Duration,
    /// How long past `ttl` a store keeps it (for serving stale content);
    /// zero means it is dropped when it stops being fresh.
    pub stale: Duration,
    /// The stored item.
    pub kind: EntryKind,
}

/// The three things a store holds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
// Entries live behind an `Arc`; boxing the response would only add a
// pointer chase to every hit.
#[allow(clippy::large_enum_variant)]
pub enum EntryKind {
    /// A response, ready to serve.
    Response(CachedResponse),
    /// How the responses of a URL vary, stored at the URL's primary key so
    /// that the first lookup can find the right variant key.
    Variants(VariantRule),
    /// A serialised `get_or_compute` value (JSON).
    Value(Bytes),
}

/// A stored response. Its headers are final: they already carry `ETag`,
/// `Last-Modified`, `Cache-Control` and `Content-Length`, plus `Age` and
/// `Cache-Status` slots that a hit overwrites in place. What a hit needs
/// besides is derived once, never per request: the ETag when the response
/// is stored or decoded, the headers of a 304 when it first answers one
/// (most entries never do, and the map would cost them some 600 bytes).
#[derive(Debug, Clone)]
pub struct CachedResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    last_modified: SystemTime,
    etag: Option<HeaderValue>,
    /// Boxed: an empty `OnceLock<HeaderMap>` would make every entry some
    /// 90 bytes larger.
    not_modified: OnceLock<Box<HeaderMap>>,
    /// Whether the stored headers hold a `Strata-Cache-Control` field: kept
    /// for the cache's own later decisions (RFC 9213), removed from every
    /// response sent.
    targeted: bool,
    /// The same response in other content codings, made when it was stored
    /// (built-in compression, see [`compress`](crate::compress)); empty
    /// for most responses.
    encoded: Box<[(Coding, CachedResponse)]>,
}

impl PartialEq for CachedResponse {
    fn eq(&self, other: &Self) -> bool {
        // The 304 headers follow from the others, built or not.
        self.status == other.status
            && self.headers == other.headers
            && self.body == other.body
            && self.last_modified == other.last_modified
            && self.etag == other.etag
            && self.encoded == other.encoded
    }
}

impl CachedResponse {
    /// A stored response from its parts.
    ///
    /// The headers are kept in a copy of their exact size: a response's
    /// map has usually grown by doubling, and each spare slot costs about
    /// 100 bytes for as long as the entry lives.
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        last_modified: SystemTime,
    ) -> Self {
        let headers = exact_copy(headers);
        let etag = headers.get(ETAG).cloned();
        let targeted = headers.contains_key(STRATA_CACHE_CONTROL);
        Self {
            status,
            headers,
            body,
            last_modified,
            etag,
            not_modified: OnceLock::new(),
            targeted,
            encoded: Box::new([]),
        }
    }

    /// This response with its representations in other content codings
    /// (each made with [`representation`](Self::representation)).
    pub fn with_encodings(mut self, encoded: Vec<(Coding, CachedResponse)>) -> Self {
        self.encoded = encoded.into_boxed_slice();
        self
    }

    /// The representations in other content codings, if any.
    pub fn encodings(&self) -> &[(Coding, CachedResponse)] {
        &self.encoded
    }

    /// This response's representation in `coding`, whose encoded body is
    /// `body`: the same status and headers, with `Content-Encoding`, its
    /// own `Content-Length` and an `ETag` of its own (a strong tag gets the
    /// coding appended, `"v1"` becoming `"v1-gzip"`).
    pub fn representation(&self, coding: Coding, body: Bytes) -> CachedResponse {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.as_str()));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        if let Some(tagged) = self
            .etag
            .as_ref()
            .and_then(|etag| etag_for_coding(etag, coding.as_str()))
        {
            headers.insert(ETAG, tagged);
        }
        CachedResponse::new(self.status, headers, body, self.last_modified)
    }

    /// The representation that answers a request with these headers: the
    /// best stored coding its `Accept-Encoding` accepts, else this one.
    pub(crate) fn select(&self, request: &HeaderMap) -> &CachedResponse {
        if self.encoded.is_empty() {
            return self;
        }
        let available = self
            .encoded
            .iter()
            .map(|(coding, response)| (*coding, response.body.len()));
        match crate::compress::choose(request, available) {
            Some(index) => &self.encoded[index].1,
            None => self,
        }
    }

    /// Whether the stored headers hold a `Strata-Cache-Control` field,
    /// which responses must not carry.
    pub fn has_targeted_field(&self) -> bool {
        self.targeted
    }

    /// The heap bytes its header maps, header values and body occupy.
    fn heap_size(&self) -> usize {
        // The 304 headers are left out: built at the first 304, after the
        // store has weighed the entry, and a size that changed with them
        // would no longer match that weight. Their values are clones of
        // the 200's (the same `Bytes`); the map adds `HEADER_SLOT` per
        // header, some 600 bytes, to an entry that answered a 304.
        header_map_heap(&self.headers)
            + self
                .headers
                .values()
                .map(|value| value.len() + cost::VALUE)
                .sum::<usize>()
            + cost::heap(self.body.len())
            + cost::heap(self.encoded.len() * size_of::<(Coding, CachedResponse)>())
            + self
                .encoded
                .iter()
                .map(|(_, response)| response.heap_size())
                .sum::<usize>()
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers a 200 (or other stored status) is sent with.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The `Last-Modified` time, kept parsed for `If-Modified-Since`.
    pub fn last_modified(&self) -> SystemTime {
        self.last_modified
    }

    /// The entity tag, if the response has one.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.etag.as_ref()
    }

    /// The headers of a 304 for this response (RFC 9110 §15.4.5), with
    /// the same `Age` and `Cache-Status` slots; built on the first call.
    pub fn not_modified_headers(&self) -> &HeaderMap {
        self.not_modified.get_or_init(|| {
            let mut not_modified = HeaderMap::new();
            copy_not_modified_headers(&self.headers, &mut not_modified);
            // Content-Length of the 200 is allowed on a 304 (RFC 9110
            // §8.6), and without it a server would add `content-length: 0`,
            // which is not.
            for slot in [CONTENT_LENGTH, AGE, CACHE_STATUS] {
                // Every `Cache-Status` line: those of the caches behind
                // strata come before its own.
                for value in self.headers.get_all(&slot) {
                    not_modified.append(slot.clone(), value.clone());
                }
            }
            Box::new(exact_copy(not_modified))
        })
    }
}

/// How the responses of one URL are told apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VariantRule {
    /// The URL's responses are private: one variant per user, none for
    /// anonymous requests.
    pub per_user: bool,
    /// Request headers whose values select a variant, sorted by name.
    pub vary: Vec<HeaderName>,
    /// The URL's responses were not storable when last seen: go straight
    /// to the inner service, without waiting on other requests.
    pub pass: bool,
}

impl Entry {
    /// How long ago it was stored, as of `now` (zero if the clock went back).
    #[inline]
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.stored_at).unwrap_or_default()
    }

    /// Whether it is still fresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.age(now) < self.ttl
    }

    /// How long a store should keep it: `ttl + stale`.
    pub fn retention(&self) -> Duration {
        self.ttl.saturating_add(self.stale)
    }

    /// The stored response, if this entry is one.
    pub fn response(&self) -> Option<&CachedResponse> {
        match &self.kind {
            EntryKind::Response(response) => Some(response),
            _ => None,
        }
    }

    /// The bytes this entry costs in the memory store, which is what
    /// [`MemoryStore`](crate::MemoryStore)'s capacity and `bytes` figure
    /// count: its own allocations (the entry, key, name, user, tags, header
    /// maps at their real slot size, header values, body), as the allocator
    /// rounds them, plus the store's bookkeeping for one entry (moka's
    /// per-entry structures, the shared key and the invalidation index).
    /// An estimate from known sizes, checked against process RSS by the
    /// memory bench (`benches/compare/benches/memory.rs`).
    pub fn size(&self) -> usize {
        let strings = cost::heap(self.name.len())
            + self.user.as_ref().map_or(0, |user| cost::heap(user.len()))
            + cost::heap(self.tags.capacity() * size_of::<String>())
            + self
                .tags
                .iter()
                .map(|tag| cost::heap(tag.len()))
                .sum::<usize>();
        let payload = match &self.kind {
            EntryKind::Response(response) => response.heap_size(),
            EntryKind::Variants(rule) => {
                cost::heap(rule.vary.capacity() * size_of::<HeaderName>())
                    + rule
                        .vary
                        .iter()
                        .map(|name| name.as_str().len())
                        .sum::<usize>()
            }
            EntryKind::Value(value) => cost::heap(value.len()),
        };
        // The invalidation index holds each label (the path, the user,
        // each tag) once, as a copy: a long one costs its length, which a
        // flat figure would leave uncounted (30 KB paths).
        let labels = std::iter::once(crate::key::path_of(&self.name))
            .chain(self.user.as_deref())
            .chain(self.tags.iter().map(String::as_str))
            .map(cost::index_label)
            .sum::<usize>();
        cost::heap(cost::ARC_HEADER + size_of::<Self>())
            + cost::heap(cost::ARC_HEADER + self.key.len())
            + strings
            + payload
            + cost::STORE_ENTRY
            + labels
    }
}

/// A copy of `headers` that takes no more room than it needs: cloning a
/// `HeaderMap` allocates its entries at their exact count, where a map
/// that grew by inserts keeps up to a third of its slots spare (axum's
/// response maps: 12 slots of about 100 bytes for 7 headers).
fn exact_copy(headers: HeaderMap) -> HeaderMap {
    let exact = headers.clone();
    drop(headers);
    exact
}

/// The heap bytes of a header map whose entries are exactly as many as its
/// names (as [`exact_copy`] makes them): the index table, the entries and
/// the extra values of repeated names.
fn header_map_heap(headers: &HeaderMap) -> usize {
    // `capacity()` is 3/4 of the index table's length (a power of two).
    let indices = headers.capacity() + headers.capacity() / 3;
    let extra = headers.len() - headers.keys_len();
    cost::heap(indices * cost::HEADER_INDEX)
        + cost::heap(headers.keys_len() * cost::HEADER_SLOT)
        + cost::heap(extra * cost::HEADER_EXTRA)
}

mod cost;

#[cfg(test)]
mod tests;
