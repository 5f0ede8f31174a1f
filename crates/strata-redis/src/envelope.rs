//! The binary envelope an [`Entry`] is stored in on Redis.
//!
//! [`encode`] turns an entry into one value; [`decode_bytes`] (or
//! [`decode`]) turns it back, validating every byte. A value that is not an
//! envelope, is of an unknown version, or is damaged decodes to an
//! [`EnvelopeError`], never to a panic; the store treats every error as a
//! miss, deletes the value and counts it.
//!
//! # Why binary, not JSON
//!
//! - The in-process layer holds the decoded [`Entry`] as it is, so nothing
//!   is serialised on an L1 hit whatever the format; on an L2 hit, decoding
//!   this layout is a handful of length reads, header validation and one
//!   copy of the value at most ([`decode_bytes`] shares the body and header
//!   values with the Redis reply, see below).
//! - Bodies are arbitrary bytes: JSON would need base64 (a third bigger,
//!   and an encode/decode pass over every body) where this layout stores
//!   them raw.
//! - Lengths are varints and times fixed 8-byte integers, so the overhead
//!   next to the body is small: a typical response entry costs its body
//!   plus its header bytes plus a few dozen bytes.
//!
//! # Layout, version 2
//!
//! A fixed 30-byte head, then variable-length fields in this order:
//!
//! | offset | size  | field        | encoding                                               |
//! |-------:|------:|--------------|--------------------------------------------------------|
//! | 0      | 4     | magic        | `b"STRA"` ([`MAGIC`])                                  |
//! | 4      | 1     | version      | `2` ([`VERSION`])                                      |
//! | 5      | 8     | `stored_at`  | u64 LE, milliseconds since the Unix epoch              |
//! | 13     | 8     | `ttl`        | u64 LE, milliseconds                                   |
//! | 21     | 8     | `stale`      | u64 LE, milliseconds                                   |
//! | 29     | 1     | kind tag     | `1` response, `2` variants, `3` value                  |
//! | 30     | var   | `key`        | *str*                                                  |
//! |        | var   | `name`       | *str*                                                  |
//! |        | 1     | user flag    | `0` none, `1` some, then `user` as *str*               |
//! |        | var   | `tags`       | *varint* count, then each tag as *str*                 |
//! |        | var   | kind payload | see below                                              |
//!
//! Kind payloads:
//!
//! | kind         | field           | encoding                                                  |
//! |--------------|-----------------|-----------------------------------------------------------|
//! | 1 `Response` | status          | u16 LE, 100–999                                           |
//! |              | `last_modified` | u64 LE, milliseconds since the Unix epoch                 |
//! |              | headers         | *varint* count, then (name *bytes*, value *bytes*) pairs  |
//! |              | body            | *bytes*                                                   |
//! |              | encodings       | *varint* count, then for each: coding *str* (`gzip`, `br`, `zstd`), headers as above, body *bytes* (version 2) |
//! | 2 `Variants` | flags           | u8: bit 0 `per_user`, bit 1 `pass`, other bits zero       |
//! |              | `vary`          | *varint* count, then each header name as *bytes*          |
//! | 3 `Value`    | value           | *bytes*                                                   |
//!
//! where *varint* is an unsigned LEB128 integer of at most 10 bytes in its
//! shortest form (7 bits a byte, least significant group first, high bit
//! set on every byte but the last), *bytes* is a *varint* length followed
//! by that many raw bytes, and *str* is *bytes* holding UTF-8.
//!
//! Headers are written in [`HeaderMap`] iteration order, one pair per
//! value, so repeated headers (two `vary` or `set-cookie` lines) come back
//! as separate values in their order. Header names are lowercase, as
//! [`HeaderName`](http::HeaderName) holds them. The value must end exactly after the payload.
//!
//! # Resolution
//!
//! Times and durations are stored in whole milliseconds: `stored_at`,
//! `ttl`, `stale` and `last_modified` are truncated to the millisecond
//! (times before the Unix epoch become the epoch, durations beyond
//! `u64::MAX` milliseconds saturate). A decoded entry therefore equals the
//! encoded one when those four are whole milliseconds, which
//! [`Clock`](strata_core::Clock)s in practice are not: a sub-millisecond
//! difference in `Age` is the only effect. `last_modified` only matters at
//! the one-second resolution of HTTP dates.
//!
//! # Validation
//!
//! Decoding checks the magic and version first, then every length against
//! the input that is left (nothing is allocated from an unchecked length),
//! UTF-8 of every string, every header name and value
//! ([`HeaderName::from_bytes`](http::HeaderName::from_bytes), [`HeaderValue`](http::HeaderValue) rules), the status, the
//! flag bytes, that varints are minimal, and that no bytes follow the
//! payload. The derived parts of a response (its ETag, its 304 headers)
//! are not stored; [`CachedResponse::new`](strata_core::CachedResponse::new) derives them again.
//!
//! There is no checksum: computing one would hash every body on every L2
//! hit, which the design rules out, and Redis does not corrupt values in
//! place. The envelope guards against foreign values, other versions and
//! truncation, and its structure catches most corruption; a flipped bit
//! inside a body or header value goes unnoticed.
//!
//! # Versioning
//!
//! Any change to the layout, a new kind tag included, bumps [`VERSION`].
//! A reader decodes only its own version: any other version byte is
//! [`EnvelopeError::Version`], which the store treats like any other
//! undecodable value (a miss; the value is deleted and counted), so an old
//! instance and a new one never misread each other's entries; they only
//! refill them. A value without the magic is [`EnvelopeError::Foreign`].
//!
//! # Zero copy
//!
//! [`decode_bytes`] takes the Redis reply as [`Bytes`] and slices the
//! body, a value's bytes and every header value out of it
//! ([`Bytes::slice`], [`HeaderValue::from_maybe_shared`](http::HeaderValue::from_maybe_shared)), so an L2 hit
//! allocates only for the strings (key, name, user, tags), custom header
//! names and the header map itself. [`decode`] copies its input once into
//! a [`Bytes`] and then does the same.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderMap;
use strata_core::{Entry, EntryKind};

mod reader;

use reader::Reader;

/// The four bytes every envelope starts with.
pub const MAGIC: [u8; 4] = *b"STRA";

/// The layout version this build writes and reads.
pub const VERSION: u8 = 2;

/// Bytes before the first variable-length field: magic, version,
/// `stored_at`, `ttl`, `stale`, kind tag.
const HEAD_LEN: usize = 4 + 1 + 8 + 8 + 8 + 1;

const KIND_RESPONSE: u8 = 1;
const KIND_VARIANTS: u8 = 2;
const KIND_VALUE: u8 = 3;
/// Written for an [`EntryKind`] this codec does not know (the enum is
/// non-exhaustive); never valid, so such a value always decodes to an error.
const KIND_UNSUPPORTED: u8 = 0;

const FLAG_PER_USER: u8 = 1;
const FLAG_PASS: u8 = 2;

/// Why a stored value is not an entry. Every variant means the same to a
/// store: a miss, and a value to delete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The value does not start with [`MAGIC`]: it was not written by
    /// strata (or is empty).
    #[error("not a strata envelope")]
    Foreign,
    /// The value is an envelope of a version this build does not read.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// The value ends before its last field does.
    #[error("envelope truncated")]
    Truncated,
    /// A field holds something no encoder writes.
    #[error("invalid envelope: {0}")]
    Invalid(&'static str),
}

/// Encodes `entry` into one envelope (see the [module docs](self) for the
/// layout). Times and durations are truncated to whole milliseconds.
///
/// An [`EntryKind`] added to the core after this codec is encoded as an
/// invalid value that always decodes to [`EnvelopeError::Invalid`], so it
/// is a miss rather than a panic.
pub fn encode(entry: &Entry) -> Bytes {
    let mut out = Vec::with_capacity(encoded_len(entry));
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    put_u64(&mut out, unix_millis(entry.stored_at));
    put_u64(&mut out, millis(entry.ttl));
    put_u64(&mut out, millis(entry.stale));
    out.push(kind_tag(&entry.kind));
    put_bytes(&mut out, entry.key.as_bytes());
    put_bytes(&mut out, entry.name.as_bytes());
    match &entry.user {
        None => out.push(0),
        Some(user) => {
            out.push(1);
            put_bytes(&mut out, user.as_bytes());
        }
    }
    put_varint(&mut out, entry.tags.len() as u64);
    for tag in &entry.tags {
        put_bytes(&mut out, tag.as_bytes());
    }
    match &entry.kind {
        EntryKind::Response(response) => {
            out.extend_from_slice(&response.status().as_u16().to_le_bytes());
            put_u64(&mut out, unix_millis(response.last_modified()));
            put_headers(&mut out, response.headers());
            put_bytes(&mut out, response.body());
            put_varint(&mut out, response.encodings().len() as u64);
            for (coding, encoded) in response.encodings() {
                put_bytes(&mut out, coding.as_str().as_bytes());
                put_headers(&mut out, encoded.headers());
                put_bytes(&mut out, encoded.body());
            }
        }
        EntryKind::Variants(rule) => {
            let mut flags = 0;
            if rule.per_user {
                flags |= FLAG_PER_USER;
            }
            if rule.pass {
                flags |= FLAG_PASS;
            }
            out.push(flags);
            put_varint(&mut out, rule.vary.len() as u64);
            for name in &rule.vary {
                put_bytes(&mut out, name.as_str().as_bytes());
            }
        }
        EntryKind::Value(value) => put_bytes(&mut out, value),
        _ => {}
    }
    debug_assert_eq!(out.len(), encoded_len(entry));
    Bytes::from(out)
}

/// Decodes an envelope from a borrowed buffer, copying it once into a
/// [`Bytes`] that the body and header values then share. Prefer
/// [`decode_bytes`] when the value is already owned.
pub fn decode(bytes: &[u8]) -> Result<Entry, EnvelopeError> {
    // Reject foreign values and other versions before copying anything.
    check_head(bytes)?;
    decode_bytes(Bytes::copy_from_slice(bytes))
}

/// Decodes an envelope without copying its body: the body (or a value's
/// bytes) and every header value are [slices](Bytes::slice) of `bytes`.
pub fn decode_bytes(bytes: Bytes) -> Result<Entry, EnvelopeError> {
    check_head(&bytes)?;
    let mut reader = Reader {
        pos: MAGIC.len() + 1,
        buf: bytes,
    };
    let stored_at = reader.time()?;
    let ttl = Duration::from_millis(reader.u64()?);
    let stale = Duration::from_millis(reader.u64()?);
    let tag = reader.u8()?;
    let key = reader.string()?;
    let name = reader.string()?;
    let user = match reader.u8()? {
        0 => None,
        1 => Some(reader.string()?),
        _ => return Err(EnvelopeError::Invalid("user flag is neither 0 nor 1")),
    };
    let tag_count = reader.count()?;
    // Every tag takes at least its length byte.
    let mut tags = Vec::with_capacity(tag_count.min(reader.remaining()));
    for _ in 0..tag_count {
        tags.push(reader.string()?);
    }
    let kind = match tag {
        KIND_RESPONSE => EntryKind::Response(reader.response()?),
        KIND_VARIANTS => EntryKind::Variants(reader.rule()?),
        KIND_VALUE => EntryKind::Value(reader.shared()?),
        _ => return Err(EnvelopeError::Invalid("unknown entry kind")),
    };
    if reader.remaining() != 0 {
        return Err(EnvelopeError::Invalid("bytes after the payload"));
    }
    Ok(Entry {
        key,
        name,
        user,
        tags,
        stored_at,
        ttl,
        stale,
        kind,
    })
}

fn check_head(bytes: &[u8]) -> Result<(), EnvelopeError> {
    if !bytes.starts_with(&MAGIC) {
        return Err(EnvelopeError::Foreign);
    }
    match bytes.get(MAGIC.len()) {
        None => Err(EnvelopeError::Truncated),
        Some(&VERSION) => Ok(()),
        Some(&other) => Err(EnvelopeError::Version(other)),
    }
}

fn kind_tag(kind: &EntryKind) -> u8 {
    match kind {
        EntryKind::Response(_) => KIND_RESPONSE,
        EntryKind::Variants(_) => KIND_VARIANTS,
        EntryKind::Value(_) => KIND_VALUE,
        _ => KIND_UNSUPPORTED,
    }
}

/// The exact length [`encode`] produces, so that it allocates once.
fn encoded_len(entry: &Entry) -> usize {
    let user = entry.user.as_ref().map_or(0, |user| bytes_len(user.len()));
    let tags = varint_len(entry.tags.len() as u64)
        + entry.tags.iter().map(|t| bytes_len(t.len())).sum::<usize>();
    let payload = match &entry.kind {
        EntryKind::Response(response) => {
            2 + 8
                + headers_len(response.headers())
                + bytes_len(response.body().len())
                + varint_len(response.encodings().len() as u64)
                + response
                    .encodings()
                    .iter()
                    .map(|(coding, encoded)| {
                        bytes_len(coding.as_str().len())
                            + headers_len(encoded.headers())
                            + bytes_len(encoded.body().len())
                    })
                    .sum::<usize>()
        }
        EntryKind::Variants(rule) => {
            1 + varint_len(rule.vary.len() as u64)
                + rule
                    .vary
                    .iter()
                    .map(|n| bytes_len(n.as_str().len()))
                    .sum::<usize>()
        }
        EntryKind::Value(value) => bytes_len(value.len()),
        _ => 0,
    };
    HEAD_LEN + bytes_len(entry.key.len()) + bytes_len(entry.name.len()) + 1 + user + tags + payload
}

fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    put_varint(out, headers.len() as u64);
    for (name, value) in headers {
        put_bytes(out, name.as_str().as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

fn headers_len(headers: &HeaderMap) -> usize {
    varint_len(headers.len() as u64)
        + headers
            .iter()
            .map(|(n, v)| bytes_len(n.as_str().len()) + bytes_len(v.len()))
            .sum::<usize>()
}

fn bytes_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

fn varint_len(value: u64) -> usize {
    // One byte per started group of 7 bits, at least one.
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, millis)
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue, StatusCode};
    use proptest::prelude::*;
    use strata_core::compress::Coding;
    use strata_core::{CachedResponse, VariantRule};

    use super::*;

    fn at_millis(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn entry(kind: EntryKind) -> Entry {
        Entry {
            key: "thebot:production:http:/api/materials/?page=2#u=42".to_owned(),
            name: "/api/materials/?page=2".to_owned(),
            user: Some("42".to_owned()),
            tags: vec![
                "materials".to_owned(),
                "material:42".to_owned(),
                "ünïcødé ✓".to_owned(),
            ],
            stored_at: at_millis(1_700_000_000_123),
            ttl: Duration::from_millis(300_000),
            stale: Duration::from_millis(60_500),
            kind,
        }
    }

    fn response_entry() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("etag", HeaderValue::from_static("\"abc123\""));
        headers.insert(
            "last-modified",
            HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
        );
        headers.insert(
            "cache-control",
            HeaderValue::from_static("private, max-age=300"),
        );
        headers.insert("content-length", HeaderValue::from(256));
        headers.append("vary", HeaderValue::from_static("accept-language"));
        headers.append("vary", HeaderValue::from_static("accept-encoding"));
        headers.append("set-cookie", HeaderValue::from_static("a=1; Path=/"));
        headers.append("set-cookie", HeaderValue::from_static("b=2; HttpOnly"));
        headers.insert(
            "x-custom-header",
            HeaderValue::from_bytes(b"\tobs\xff").unwrap(),
        );
        headers.insert("age", HeaderValue::from_static("0"));
        headers.insert("x-empty", HeaderValue::from_static(""));
        let body: Vec<u8> = (0..=255).collect();
        entry(EntryKind::Response(CachedResponse::new(
            StatusCode::OK,
            headers,
            Bytes::from(body),
            at_millis(1_700_000_000_000),
        )))
    }

    fn rule_entry() -> Entry {
        entry(EntryKind::Variants(VariantRule {
            per_user: true,
            vary: vec![
                HeaderName::from_static("accept-language"),
                HeaderName::from_static("x-tenant"),
            ],
            pass: true,
        }))
    }

    fn value_entry() -> Entry {
        let mut entry = entry(EntryKind::Value(Bytes::from_static(b"{\"active\":17}")));
        entry.user = None;
        entry.tags.clear();
        entry.stale = Duration::ZERO;
        entry
    }

    /// A response stored with two more representations (built-in
    /// compression).
    fn encoded_entry() -> Entry {
        let mut entry = response_entry();
        let EntryKind::Response(identity) = entry.kind else {
            unreachable!()
        };
        let encoded = vec![
            (
                Coding::Gzip,
                identity.representation(Coding::Gzip, Bytes::from_static(b"\x1f\x8bgz")),
            ),
            (
                Coding::Brotli,
                identity.representation(Coding::Brotli, Bytes::from_static(b"br")),
            ),
        ];
        entry.kind = EntryKind::Response(identity.with_encodings(encoded));
        entry
    }

    fn samples() -> Vec<Entry> {
        vec![
            response_entry(),
            encoded_entry(),
            rule_entry(),
            value_entry(),
        ]
    }

    #[test]
    fn encodings_round_trip_with_their_own_headers() {
        let decoded = decode(&encode(&encoded_entry())).unwrap();
        let EntryKind::Response(response) = &decoded.kind else {
            panic!("a response");
        };
        let codings: Vec<Coding> = response.encodings().iter().map(|(c, _)| *c).collect();
        assert_eq!(codings, [Coding::Gzip, Coding::Brotli]);
        let (_, gzip) = &response.encodings()[0];
        assert_eq!(gzip.headers()["content-encoding"], "gzip");
        assert_eq!(gzip.etag().unwrap(), "\"abc123-gzip\"");
        assert_eq!(gzip.body().as_ref(), b"\x1f\x8bgz");
    }

    #[test]
    fn an_unknown_coding_is_invalid() {
        let encoded = encode(&encoded_entry()).to_vec();
        let at = encoded
            .windows(4)
            .position(|w| w == b"gzip")
            .expect("the coding is written");
        let mut damaged = encoded;
        damaged[at..at + 4].copy_from_slice(b"lzma");
        assert_eq!(
            decode(&damaged),
            Err(EnvelopeError::Invalid("unknown content coding"))
        );
    }

    fn round_trip(entry: &Entry) {
        let encoded = encode(entry);
        assert_eq!(encoded.len(), encoded_len(entry));
        assert_eq!(decode(&encoded).as_ref(), Ok(entry));
        assert_eq!(decode_bytes(encoded).as_ref(), Ok(entry));
    }

    #[test]
    fn every_kind_round_trips() {
        for entry in samples() {
            round_trip(&entry);
        }
    }

    #[test]
    fn response_fields_survive_in_order() {
        let entry = decode(&encode(&response_entry())).unwrap();
        let response = entry.response().unwrap();
        let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
        assert_eq!(vary, ["accept-language", "accept-encoding"]);
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
        assert_eq!(response.body().len(), 256);
        assert!(response.body().iter().copied().eq(0..=255));
        // Derived again by `CachedResponse::new`.
        assert_eq!(response.etag().unwrap(), "\"abc123\"");
        assert!(response.not_modified_headers().contains_key("etag"));
        assert_eq!(entry.stale, Duration::from_millis(60_500));
    }

    #[test]
    fn edge_values_round_trip() {
        let mut entry = value_entry();
        entry.key = String::new();
        entry.name = String::new();
        entry.user = Some(String::new());
        entry.tags = vec![String::new(); 3];
        entry.stored_at = UNIX_EPOCH;
        entry.ttl = Duration::from_millis(u64::MAX);
        entry.stale = Duration::ZERO;
        entry.kind = EntryKind::Value(Bytes::new());
        round_trip(&entry);

        entry.kind = EntryKind::Response(CachedResponse::new(
            StatusCode::from_u16(999).unwrap(),
            HeaderMap::new(),
            Bytes::new(),
            UNIX_EPOCH,
        ));
        round_trip(&entry);

        entry.kind = EntryKind::Variants(VariantRule::default());
        round_trip(&entry);
    }

    #[test]
    fn times_are_truncated_to_milliseconds() {
        let mut entry = value_entry();
        entry.stored_at = at_millis(1_000) + Duration::from_nanos(999_999);
        entry.ttl = Duration::from_micros(1_500);
        let decoded = decode(&encode(&entry)).unwrap();
        assert_eq!(decoded.stored_at, at_millis(1_000));
        assert_eq!(decoded.ttl, Duration::from_millis(1));
        // Before the epoch: the epoch.
        entry.stored_at = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(decode(&encode(&entry)).unwrap().stored_at, UNIX_EPOCH);
    }

    #[test]
    fn head_layout_is_as_documented() {
        let encoded = encode(&value_entry());
        assert_eq!(&encoded[..4], b"STRA");
        assert_eq!(encoded[4], 2);
        assert_eq!(encoded[5..13], 1_700_000_000_123u64.to_le_bytes());
        assert_eq!(encoded[13..21], 300_000u64.to_le_bytes());
        assert_eq!(encoded[21..29], 0u64.to_le_bytes());
        assert_eq!(encoded[29], KIND_VALUE);
        let key = value_entry().key;
        assert_eq!(usize::from(encoded[30]), key.len());
        assert_eq!(&encoded[31..31 + key.len()], key.as_bytes());
        assert!(encoded.ends_with(b"{\"active\":17}"));
    }

    #[test]
    fn varints_are_leb128() {
        for (value, bytes) in [
            (0u64, &[0x00][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes);
            assert_eq!(varint_len(value), bytes.len());
            let mut reader = Reader {
                buf: Bytes::from(out),
                pos: 0,
            };
            assert_eq!(reader.varint(), Ok(value));
        }
        for bad in [
            &[0x80, 0x00][..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0xff; 11],
        ] {
            let mut reader = Reader {
                buf: Bytes::copy_from_slice(bad),
                pos: 0,
            };
            assert!(matches!(reader.varint(), Err(EnvelopeError::Invalid(_))));
        }
    }

    #[test]
    fn foreign_values_are_foreign() {
        for value in [
            &b""[..],
            b"hello",
            b"{\"status\":200,\"body\":\"...\"}",
            b"STR",
            b"STRB\x01",
            b"\x00\x00\x00\x00\x01",
        ] {
            assert_eq!(decode(value), Err(EnvelopeError::Foreign), "{value:?}");
            assert_eq!(
                decode_bytes(Bytes::copy_from_slice(value)),
                Err(EnvelopeError::Foreign)
            );
        }
    }

    #[test]
    fn other_versions_are_refused() {
        let mut encoded = encode(&response_entry()).to_vec();
        // Version 1 (before the encodings) included: an old instance's
        // entries are misses, refilled, never misread.
        for version in [0, 1, 3, 255] {
            encoded[4] = version;
            assert_eq!(decode(&encoded), Err(EnvelopeError::Version(version)));
        }
        assert_eq!(decode(b"STRA"), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"STRA\x01"), Err(EnvelopeError::Version(1)));
    }

    #[test]
    fn trailing_bytes_are_invalid() {
        let mut encoded = encode(&rule_entry()).to_vec();
        encoded.push(0);
        assert_eq!(
            decode(&encoded),
            Err(EnvelopeError::Invalid("bytes after the payload"))
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for entry in samples() {
            let encoded = encode(&entry);
            for len in 0..encoded.len() {
                let expected = if len < MAGIC.len() {
                    EnvelopeError::Foreign
                } else {
                    EnvelopeError::Truncated
                };
                assert_eq!(decode(&encoded[..len]), Err(expected), "length {len}");
            }
        }
    }

    /// Flips each bit of `encoded` in turn and checks each result decodes
    /// to an error or a sane entry.
    fn check_every_bit_flip(encoded: &[u8]) {
        for at in 0..encoded.len() {
            for bit in 0..8 {
                let mut flipped = encoded.to_vec();
                flipped[at] ^= 1 << bit;
                check_decodes_sanely(&flipped);
            }
        }
    }

    #[test]
    fn every_bit_flip_is_an_error_or_an_entry() {
        for entry in samples() {
            check_every_bit_flip(&encode(&entry));
        }
    }

    /// Whatever `bytes` holds, decoding must not panic, and an entry it
    /// yields must survive a round trip of its own.
    fn check_decodes_sanely(bytes: &[u8]) {
        if let Ok(entry) = decode(bytes) {
            assert_eq!(decode(&encode(&entry)).as_ref(), Ok(&entry));
        }
    }

    #[test]
    fn invalid_fields_are_caught() {
        let valid = encode(&response_entry()).to_vec();
        let status_at = {
            // The status follows the tags; find it by re-encoding the prefix.
            let entry = response_entry();
            let mut prefix = Vec::new();
            prefix.extend_from_slice(&valid[..HEAD_LEN]);
            put_bytes(&mut prefix, entry.key.as_bytes());
            put_bytes(&mut prefix, entry.name.as_bytes());
            prefix.push(1);
            put_bytes(&mut prefix, entry.user.unwrap().as_bytes());
            put_varint(&mut prefix, entry.tags.len() as u64);
            for tag in &entry.tags {
                put_bytes(&mut prefix, tag.as_bytes());
            }
            prefix.len()
        };
        let mut bad_status = valid.clone();
        bad_status[status_at..status_at + 2].copy_from_slice(&99u16.to_le_bytes());
        assert_eq!(
            decode(&bad_status),
            Err(EnvelopeError::Invalid("invalid status code"))
        );

        let mut bad_kind = valid.clone();
        bad_kind[HEAD_LEN - 1] = 9;
        assert_eq!(
            decode(&bad_kind),
            Err(EnvelopeError::Invalid("unknown entry kind"))
        );

        // Bad UTF-8 in the key (its first byte).
        let mut bad_key = valid.clone();
        bad_key[HEAD_LEN + 1] = 0xff;
        assert_eq!(
            decode(&bad_key),
            Err(EnvelopeError::Invalid("string is not UTF-8"))
        );

        // A header value with a newline, an uppercase header name.
        let patch = |from: &[u8], to: &[u8]| {
            let at = valid.windows(from.len()).position(|w| w == from).unwrap();
            let mut patched = valid.clone();
            patched[at..at + to.len()].copy_from_slice(to);
            decode(&patched)
        };
        assert_eq!(
            patch(b"a=1; Path=/", b"a=1\n"),
            Err(EnvelopeError::Invalid("invalid header value"))
        );
        assert_eq!(
            patch(b"x-custom-header", b"X"),
            Err(EnvelopeError::Invalid("header name not lowercase"))
        );
        assert_eq!(
            patch(b"x-custom-header", b"x custom"),
            Err(EnvelopeError::Invalid("invalid header name"))
        );
    }

    /// The head of a response envelope with no strings or tags.
    fn bare_response_head() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&[0; 24]);
        out.push(KIND_RESPONSE);
        out.extend_from_slice(&[0, 0, 0, 0]); // key, name, no user, no tags
        out.extend_from_slice(&200u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out
    }

    #[test]
    fn huge_counts_do_not_allocate_or_panic() {
        let mut out = bare_response_head();
        put_varint(&mut out, u64::MAX);
        assert_eq!(decode(&out), Err(EnvelopeError::Truncated));

        let mut out = bare_response_head();
        put_varint(&mut out, u64::from(u32::MAX));
        out.extend_from_slice(b"\x01a\x00");
        assert_eq!(decode(&out), Err(EnvelopeError::Truncated));
    }

    #[test]
    fn more_headers_than_a_header_map_holds_is_an_error() {
        let count = 40_000;
        let mut out = bare_response_head();
        put_varint(&mut out, count);
        for _ in 0..count {
            out.extend_from_slice(b"\x01a\x00");
        }
        out.push(0); // empty body
        assert_eq!(
            decode(&out),
            Err(EnvelopeError::Invalid("too many headers"))
        );
    }

    fn inside(buf: &Bytes, ptr: *const u8, len: usize) -> bool {
        let range = buf.as_ptr_range();
        range.start <= ptr && ptr.wrapping_add(len) <= range.end
    }

    #[test]
    fn decode_bytes_shares_the_input() {
        let input = encode(&response_entry());
        let entry = decode_bytes(input.clone()).unwrap();
        let response = entry.response().unwrap();
        let body = response.body();
        assert!(!body.is_empty());
        assert!(inside(&input, body.as_ptr(), body.len()));
        for value in response.headers().values().filter(|v| !v.is_empty()) {
            let bytes = value.as_bytes();
            assert!(inside(&input, bytes.as_ptr(), bytes.len()));
        }

        let input = encode(&value_entry());
        let EntryKind::Value(value) = decode_bytes(input.clone()).unwrap().kind else {
            panic!("not a value");
        };
        assert!(inside(&input, value.as_ptr(), value.len()));
    }

    #[test]
    fn decode_copies_the_input_once() {
        let input = encode(&response_entry()).to_vec();
        let entry = decode(&input).unwrap();
        let body = entry.response().unwrap().body();
        let range = input.as_ptr_range();
        assert!(!range.contains(&body.as_ptr()));
    }

    fn header_name() -> impl Strategy<Value = HeaderName> {
        prop_oneof![
            Just(HeaderName::from_static("content-type")),
            Just(HeaderName::from_static("vary")),
            Just(HeaderName::from_static("set-cookie")),
            Just(HeaderName::from_static("etag")),
            "[a-z0-9!#$%&'*+.^_`|~-]{1,24}"
                .prop_map(|s| HeaderName::from_bytes(s.as_bytes()).unwrap()),
        ]
    }

    fn header_value() -> impl Strategy<Value = HeaderValue> {
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..40)
            .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap())
    }

    fn kind() -> impl Strategy<Value = EntryKind> {
        let response = (
            100u16..1000,
            proptest::collection::vec((header_name(), header_value()), 0..12),
            proptest::collection::vec(any::<u8>(), 0..512),
            0u64..(1 << 50),
        )
            .prop_map(|(status, pairs, body, modified)| {
                let mut headers = HeaderMap::new();
                for (name, value) in pairs {
                    headers.append(name, value);
                }
                EntryKind::Response(CachedResponse::new(
                    StatusCode::from_u16(status).unwrap(),
                    headers,
                    Bytes::from(body),
                    at_millis(modified),
                ))
            });
        let rule = (
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(header_name(), 0..5),
        )
            .prop_map(|(per_user, pass, mut vary)| {
                vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                EntryKind::Variants(VariantRule {
                    per_user,
                    vary,
                    pass,
                })
            });
        let value = proptest::collection::vec(any::<u8>(), 0..256)
            .prop_map(|bytes| EntryKind::Value(Bytes::from(bytes)));
        prop_oneof![response, rule, value]
    }

    fn any_entry() -> impl Strategy<Value = Entry> {
        (
            (
                any::<String>(),
                any::<String>(),
                any::<Option<String>>(),
                proptest::collection::vec(any::<String>(), 0..6),
            ),
            (0u64..(1 << 50), any::<u64>(), any::<u64>()),
            kind(),
        )
            .prop_map(
                |((key, name, user, tags), (stored, ttl, stale), kind)| Entry {
                    key,
                    name,
                    user,
                    tags,
                    stored_at: at_millis(stored),
                    ttl: Duration::from_millis(ttl),
                    stale: Duration::from_millis(stale),
                    kind,
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_entries_round_trip(entry in any_entry()) {
            let encoded = encode(&entry);
            prop_assert_eq!(encoded.len(), encoded_len(&entry));
            let copied = decode(&encoded);
            prop_assert_eq!(copied.as_ref(), Ok(&entry));
            let shared = decode_bytes(encoded);
            prop_assert_eq!(shared.as_ref(), Ok(&entry));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            check_decodes_sanely(&bytes);
            let mut enveloped = MAGIC.to_vec();
            enveloped.push(VERSION);
            enveloped.extend_from_slice(&bytes);
            check_decodes_sanely(&enveloped);
        }

        #[test]
        fn truncations_of_arbitrary_entries_are_errors(entry in any_entry()) {
            let encoded = encode(&entry);
            for len in 0..encoded.len() {
                prop_assert!(decode(&encoded[..len]).is_err());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn bit_flips_of_arbitrary_entries_never_panic(entry in any_entry()) {
            check_every_bit_flip(&encode(&entry));
        }
    }
}
