//! Built-in compression: the cache compresses a response once, when it
//! stores it, in every content coding it is set up for, and answers each
//! hit with the best representation the request accepts, already
//! compressed, so a hit costs no compression at all.
//!
//! Turned on for every storing policy with
//! [`CacheBuilder::compression`](crate::CacheBuilder::compression), or per
//! route with [`CachePolicy::compress`](crate::CachePolicy::compress). The
//! codings need the `compression` feature; without it nothing is
//! compressed.
//!
//! A response is compressed when it is a 200 of at least
//! [`Compression::min_size`] bytes, has no `Content-Encoding` of its own
//! and no `Cache-Control: no-transform`, and its `Content-Type` is text-like (`text/*`, JSON, XML, JavaScript,
//! SVG, WebAssembly, `+json`/`+xml` types): images, archives, video and
//! other already compressed types are left alone, and a coding that does
//! not save a tenth of the size is dropped. Each representation is stored
//! with its own headers (`Content-Encoding`, `Content-Length`, and a strong
//! `ETag` of its own: the identity tag with the coding appended, `"…-gzip"`),
//! and every one of them says `Vary: Accept-Encoding`. Memory accounting
//! counts every representation.
//!
//! Negotiation follows RFC 9110 §12.5.3: q-values are honoured (`q=0`
//! refuses a coding), `*` stands for every coding not named, and identity
//! is acceptable unless refused (`identity;q=0`, or `*;q=0` without
//! `identity`). Identity named with a higher q-value than every coding
//! wins; left implicit it ranks below any coding the request names. Among
//! equally preferred codings the smallest stored body wins. A request that accepts nothing strata stored gets identity (a
//! server may always send it, §12.5.3).

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

use crate::policy::CachePolicy;

/// A content coding strata can store a representation in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Coding {
    /// `gzip` (RFC 9110 §8.4.1.3).
    Gzip,
    /// `br`, Brotli (RFC 7932).
    Brotli,
    /// `zstd`, Zstandard (RFC 8878).
    Zstd,
}

impl Coding {
    /// Every coding, in the order strata prefers them on a tie.
    pub const ALL: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

    /// The token in `Content-Encoding` and `Accept-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding named by `token` (case-insensitive; `x-gzip` is gzip).
    pub fn from_token(token: &str) -> Option<Self> {
        let token = token.trim();
        if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Some(Coding::Gzip)
        } else if token.eq_ignore_ascii_case("br") {
            Some(Coding::Brotli)
        } else if token.eq_ignore_ascii_case("zstd") {
            Some(Coding::Zstd)
        } else {
            None
        }
    }

    /// Whether this build can compress in this coding (the `compression`
    /// feature).
    pub fn is_available(self) -> bool {
        cfg!(feature = "compression")
    }
}

/// How the cache compresses what it stores (see the [module docs](self)).
///
/// ```
/// use strata::compress::{Coding, Compression};
///
/// let compression = Compression::default()
///     .codings([Coding::Gzip, Coding::Brotli])
///     .min_size(512);
/// assert_eq!(compression.codings_list(), [Coding::Gzip, Coding::Brotli]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    codings: Vec<Coding>,
    min_size: usize,
    level: u32,
}

impl Default for Compression {
    /// gzip, br and zstd; bodies of 1 KiB or more; level 6 (of 9 for gzip,
    /// 11 for br; zstd 6 of 22), a middle ground that compresses a 20 KiB
    /// JSON document in well under a millisecond, once per store.
    fn default() -> Self {
        Self {
            codings: Coding::ALL.to_vec(),
            min_size: 1024,
            level: 6,
        }
    }
}

impl Compression {
    /// The codings to store (default: all three).
    pub fn codings(mut self, codings: impl IntoIterator<Item = Coding>) -> Self {
        self.codings = codings.into_iter().collect();
        self.codings.dedup();
        self
    }

    /// The codings this configuration stores.
    pub fn codings_list(&self) -> &[Coding] {
        &self.codings
    }

    /// The smallest body compressed (default 1024 bytes): below it the
    /// codings' framing eats most of the saving.
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// The compression level, 1 (fastest) to 9 (smallest) for every coding
    /// (brotli's and zstd's scales are mapped onto it); default 6.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.clamp(1, 9);
        self
    }

    /// Whether a response with these headers and this body is compressed.
    pub(crate) fn applies(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        body.len() >= self.min_size
            && !self.codings.is_empty()
            && !headers.contains_key(CONTENT_ENCODING)
            && !no_transform(headers)
            && headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(compressible)
    }

    /// `body` in `coding`, if this build has it and it saves a tenth.
    pub(crate) fn encode(&self, coding: Coding, body: &[u8]) -> Option<Bytes> {
        let encoded = codec::encode(coding, body, self.level)?;
        (encoded.len() * 10 <= body.len() * 9).then(|| Bytes::from(encoded))
    }
}

impl Compression {
    /// The compression a fill under `policy` uses, if any: the policy's
    /// own choice, else the builder's (`default`).
    pub(crate) fn for_policy(default: Option<&Compression>, policy: &CachePolicy) -> Option<Self> {
        match policy.compress_choice() {
            Some(false) => None,
            Some(true) => Some(default.cloned().unwrap_or_default()),
            None => default.cloned(),
        }
    }

    /// `body` in each of the codings that saves enough; a body over
    /// 64 KiB on a blocking thread, so the runtime's workers are not held
    /// for the milliseconds it takes.
    pub(crate) async fn encode_all(self, body: &Bytes) -> Vec<(Coding, Bytes)> {
        const INLINE: usize = 64 * 1024;
        let length = body.len();
        let body = body.clone();
        let encode = move || {
            self.codings
                .iter()
                .filter_map(|&coding| Some((coding, self.encode(coding, &body)?)))
                .collect::<Vec<_>>()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if length > INLINE => {
                runtime.spawn_blocking(encode).await.unwrap_or_default()
            }
            _ => encode(),
        }
    }
}

/// `Cache-Control: no-transform`: no intermediary may change the content
/// (RFC 9111 §5.2.2.6), a new content coding included.
fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

/// Whether a media type is worth compressing: text and the structured
/// text formats, not images, audio, video or archives.
fn compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind == "text"
        || sub.ends_with("+json")
        || sub.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/ecmascript"
                | "application/xml"
                | "application/wasm"
                | "application/x-ndjson"
                | "image/svg+xml"
                | "image/x-icon"
        )
}

/// Which stored representation answers a request: `None` for identity,
/// else the index into `available` (stored codings, with their body
/// lengths for ties).
pub(crate) fn choose(
    request: &HeaderMap,
    available: impl IntoIterator<Item = (Coding, usize)>,
) -> Option<usize> {
    let mut lines = request.get_all(ACCEPT_ENCODING).iter().peekable();
    lines.peek()?;
    let mut named = [None::<u32>; 3];
    let mut star = None::<u32>;
    let mut identity = None::<u32>;
    for line in lines {
        let Ok(line) = line.to_str() else {
            continue;
        };
        for member in line.split(',') {
            let mut parts = member.split(';');
            let token = parts.next().unwrap_or_default().trim();
            if token.is_empty() {
                continue;
            }
            let q = parts
                .find_map(|param| {
                    let (name, value) = param.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("q").then(|| qvalue(value))
                })
                .unwrap_or(Some(1000));
            let Some(q) = q else {
                // An invalid q-value: the member is ignored.
                continue;
            };
            if token == "*" {
                star = Some(q);
            } else if token.eq_ignore_ascii_case("identity") {
                identity = Some(q);
            } else if let Some(coding) = Coding::from_token(token) {
                named[slot(coding)] = Some(q);
            }
        }
    }
    let mut best: Option<(u32, usize, usize)> = None;
    for (index, (coding, length)) in available.into_iter().enumerate() {
        let q = named[slot(coding)].or(star).unwrap_or(0);
        if q == 0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((best_q, best_len, _)) => q > best_q || (q == best_q && length < best_len),
        };
        if better {
            best = Some((q, length, index));
        }
    }
    // Identity named (or covered by `*`) competes by its q-value, and wins
    // only when preferred outright; left implicit, it is acceptable but
    // below any coding the request names.
    let identity = identity.or(star).unwrap_or(1);
    best.filter(|(q, _, _)| *q >= identity)
        .map(|(_, _, index)| index)
}

fn slot(coding: Coding) -> usize {
    match coding {
        Coding::Gzip => 0,
        Coding::Brotli => 1,
        Coding::Zstd => 2,
    }
}

/// A q-value in thousandths: `1`, `1.000`, `0`, `0.5`, ... (RFC 9110
/// §12.4.2); `None` when it is not one.
fn qvalue(text: &str) -> Option<u32> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u32>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The `Vary` value every representation of a compressed response carries.
pub(crate) fn vary() -> HeaderValue {
    HeaderValue::from_static("accept-encoding")
}

#[cfg(feature = "compression")]
mod codec {
    use std::io::Write;

    use super::Coding;

    pub(super) fn encode(coding: Coding, body: &[u8], level: u32) -> Option<Vec<u8>> {
        match coding {
            Coding::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::new(level),
                );
                encoder.write_all(body).ok()?;
                encoder.finish().ok()
            }
            Coding::Brotli => {
                let mut out = Vec::with_capacity(body.len() / 4);
                let params = brotli::enc::BrotliEncoderParams {
                    quality: i32::try_from(level).unwrap_or(6) + 1,
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut &body[..], &mut out, &params).ok()?;
                Some(out)
            }
            Coding::Zstd => zstd::bulk::compress(body, i32::try_from(level).unwrap_or(6)).ok(),
        }
    }
}

#[cfg(not(feature = "compression"))]
mod codec {
    use super::Coding;

    pub(super) fn encode(_coding: Coding, _body: &[u8], _level: u32) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod tests;
