//! An entry's size: the header slots, values and allocations it is counted at.

use super::*;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LAST_MODIFIED, VARY};

/// A response as the layer stores it for an axum handler: seven
/// headers, two of them static.
fn stored_headers(capacity: usize) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(capacity);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        ETAG,
        HeaderValue::from_static("\"0123456789abcdef0123456789abcdef\""),
    );
    headers.insert(
        LAST_MODIFIED,
        HeaderValue::from_static("Thu, 01 Jan 2026 00:00:00 GMT"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("2048"));
    headers.insert(AGE, HeaderValue::from_static("0"));
    headers.insert(CACHE_STATUS, HeaderValue::from_static("strata; hit"));
    headers
}

fn entry(headers: HeaderMap) -> Entry {
    Entry {
        key: "bench:memory:/api/items/12345/".to_owned(),
        name: "/api/items/12345/".to_owned(),
        user: None,
        tags: vec!["items".to_owned(), "item:12345".to_owned()],
        stored_at: SystemTime::UNIX_EPOCH,
        ttl: Duration::from_secs(3600),
        stale: Duration::ZERO,
        kind: EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            headers,
            Bytes::from(vec![b'x'; 2048]),
            SystemTime::UNIX_EPOCH,
        )),
    }
}

#[cfg(target_pointer_width = "64")]
#[test]
fn header_slots_and_allocations_have_their_known_sizes() {
    // http 1.x `Bucket<HeaderValue>`: u16 hash, 32-byte name, 40-byte
    // value, 24-byte `Option<Links>`, padded: the ~104 B per slot that
    // heaptrack showed.
    assert_eq!(size_of::<HeaderName>(), 32);
    assert_eq!(size_of::<HeaderValue>(), 40);
    assert_eq!(cost::HEADER_SLOT, 104);
    assert_eq!(cost::HEADER_EXTRA, 72);
    // glibc: 8 bytes of header, rounded up to 16, 32 at least.
    let chunks = [0, 1, 24, 25, 40, 41, 2048].map(cost::heap);
    assert_eq!(chunks, [0, 32, 32, 48, 48, 64, 2064]);
}

#[cfg(target_pointer_width = "64")]
#[test]
fn a_typical_response_is_counted_at_what_it_allocates() {
    let entry = entry(stored_headers(0));
    let response = entry.response().unwrap();
    // Seven headers need a 16-slot index table (12 usable).
    assert_eq!(response.headers().capacity(), 12);
    let entry_alloc = cost::heap(16 + size_of::<Entry>());
    let expected = entry_alloc
        + 64 // key: Arc<str> of 16 + 30 bytes
        + 32 // name
        + 64 + 32 + 32 // the tag Vec (2 × 24 bytes) and the two tags
        + 80 // index table: 16 × 4 bytes
        + 736 // seven 104-byte slots, exactly: not 12 (the map's 3/4)
        + (16 + 20 + 34 + 29 + 4 + 1 + 11) + 7 * 16 // the values
        + 2064 // the body
        + 420 + 3 * 90; // moka's bookkeeping and three labels
    assert_eq!(entry.size(), expected);
}

/// A long path is a long label in the invalidation index: the entry is
/// charged its length there too, not a flat figure (30 KB paths drove RSS
/// to 3.7 times the configured bytes).
#[test]
fn long_labels_are_charged_at_their_length() {
    let short = entry(stored_headers(0));
    let mut long = entry(stored_headers(0));
    let path = format!("/{}", "p".repeat(30_000));
    long.name = format!("{path}?q=1");
    long.key = format!("k:{}", long.name);
    let extra_name = cost::heap(long.name.len()) - cost::heap(short.name.len());
    let extra_key = cost::heap(16 + long.key.len()) - cost::heap(16 + short.key.len());
    let extra_label =
        cost::index_label(&path) - cost::index_label(crate::key::path_of(&short.name));
    assert_eq!(
        long.size() - short.size(),
        extra_name + extra_key + extra_label
    );
    assert!(extra_label > 29_900, "{extra_label}");
    // A user id and tags are labels too.
    let mut tagged = entry(stored_headers(0));
    tagged.tags.push("t".repeat(10_000));
    assert!(tagged.size() >= short.size() + 2 * 10_000);
}

#[test]
fn spare_room_in_a_handlers_header_map_is_not_kept() {
    // A map made with room for 100 headers: its entries are copied at
    // their count, so only the index table (which a clone keeps) costs
    // more than in a map grown from empty.
    let roomy = entry(stored_headers(100));
    let snug = entry(stored_headers(0));
    let roomy_indices = cost::heap(256 * cost::HEADER_INDEX);
    let snug_indices = cost::heap(16 * cost::HEADER_INDEX);
    assert_eq!(roomy.size() - snug.size(), roomy_indices - snug_indices);
}

#[test]
fn the_304_headers_are_built_once_and_do_not_change_the_size() {
    let entry = entry(stored_headers(0));
    let size = entry.size();
    let response = entry.response().unwrap();
    let not_modified = response.not_modified_headers();
    let names: Vec<&str> = not_modified.keys().map(HeaderName::as_str).collect();
    assert_eq!(
        names,
        [
            "cache-control",
            "etag",
            "content-length",
            "age",
            "cache-status"
        ]
    );
    assert!(std::ptr::eq(not_modified, response.not_modified_headers()));
    // The store weighed the entry before; its size stays that weight.
    assert_eq!(entry.size(), size);
    assert_eq!(entry.clone(), entry);
}

#[test]
fn repeated_header_values_are_counted() {
    let mut headers = stored_headers(0);
    let single = entry(headers.clone()).size();
    headers.append(VARY, HeaderValue::from_static("accept"));
    headers.append(VARY, HeaderValue::from_static("accept-language"));
    // One more slot, one extra value, and the two values' bytes.
    let expected = single
        + (cost::heap(8 * cost::HEADER_SLOT) - cost::heap(7 * cost::HEADER_SLOT))
        + cost::heap(cost::HEADER_EXTRA)
        + (6 + cost::VALUE)
        + (15 + cost::VALUE);
    assert_eq!(entry(headers).size(), expected);
}
