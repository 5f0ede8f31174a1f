//! What a store holds: a response, a URL's variant rule, or a computed value.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AGE, CONTENT_LENGTH, ETAG};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::conditional::{NOT_MODIFIED_HEADERS, copy_not_modified_headers};
use crate::service::CACHE_STATUS;

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
/// besides (the ETag, the headers of a 304) is derived once, here, when
/// the response is stored or decoded, never per request.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    last_modified: SystemTime,
    etag: Option<HeaderValue>,
    not_modified: HeaderMap,
}

impl CachedResponse {
    /// A stored response from its parts.
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        last_modified: SystemTime,
    ) -> Self {
        let etag = headers.get(ETAG).cloned();
        let mut not_modified = HeaderMap::with_capacity(NOT_MODIFIED_HEADERS.len() + 2);
        copy_not_modified_headers(&headers, &mut not_modified);
        // Content-Length of the 200 is allowed on a 304 (RFC 9110 §8.6), and
        // without it a server would add `content-length: 0`, which is not.
        for slot in [CONTENT_LENGTH, AGE, CACHE_STATUS] {
            if let Some(value) = headers.get(&slot) {
                not_modified.insert(slot, value.clone());
            }
        }
        Self {
            status,
            headers,
            body,
            last_modified,
            etag,
            not_modified,
        }
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
    /// the same `Age` and `Cache-Status` slots.
    pub fn not_modified_headers(&self) -> &HeaderMap {
        &self.not_modified
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

    /// The bytes this entry occupies, as memory capacity counts them: key,
    /// name, user, tags, headers and body, plus a fixed overhead for the
    /// structures around them.
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 160;
        let meta = self.key.len()
            + self.name.len()
            + self.user.as_ref().map_or(0, String::len)
            + self.tags.iter().map(String::len).sum::<usize>();
        let payload = match &self.kind {
            EntryKind::Response(response) => {
                response.body.len()
                    + response
                        .headers
                        .iter()
                        .chain(response.not_modified.iter())
                        .map(|(name, value)| name.as_str().len() + value.len() + 16)
                        .sum::<usize>()
            }
            EntryKind::Variants(rule) => rule.vary.iter().map(|h| h.as_str().len()).sum(),
            EntryKind::Value(value) => value.len(),
        };
        OVERHEAD + meta + payload
    }
}
