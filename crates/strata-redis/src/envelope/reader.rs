//! Reading an envelope: a cursor that checks the input left before every
//! read, and the decoders of each field (see the layout in the parent
//! module).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use strata_core::compress::Coding;
use strata_core::{CachedResponse, VariantRule};

use super::{EnvelopeError, FLAG_PASS, FLAG_PER_USER};

/// A cursor over the envelope. Every read checks the input left first.
pub(super) struct Reader {
    pub(super) buf: Bytes,
    pub(super) pos: usize,
}

impl Reader {
    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `len` bytes' range, or `Truncated`.
    pub(super) fn take(&mut self, len: usize) -> Result<std::ops::Range<usize>, EnvelopeError> {
        if len > self.remaining() {
            return Err(EnvelopeError::Truncated);
        }
        let start = self.pos;
        self.pos += len;
        Ok(start..self.pos)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let range = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[range]);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, EnvelopeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, EnvelopeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(super) fn time(&mut self) -> Result<SystemTime, EnvelopeError> {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(self.u64()?))
            .ok_or(EnvelopeError::Invalid("time out of range"))
    }

    pub(super) fn varint(&mut self) -> Result<u64, EnvelopeError> {
        let mut value = 0u64;
        for group in 0..10 {
            let byte = self.u8()?;
            // The tenth group holds bit 63 alone.
            if group == 9 && byte > 1 {
                return Err(EnvelopeError::Invalid("varint overflows u64"));
            }
            value |= u64::from(byte & 0x7f) << (7 * group);
            if byte & 0x80 == 0 {
                if byte == 0 && group > 0 {
                    return Err(EnvelopeError::Invalid("varint not minimal"));
                }
                return Ok(value);
            }
        }
        Err(EnvelopeError::Invalid("varint overflows u64"))
    }

    /// A length or count; more than the input left cannot be right (every
    /// counted item takes at least one byte).
    pub(super) fn count(&mut self) -> Result<usize, EnvelopeError> {
        let value = self.varint()?;
        match usize::try_from(value) {
            Ok(len) if len <= self.remaining() => Ok(len),
            _ => Err(EnvelopeError::Truncated),
        }
    }

    pub(super) fn slice(&mut self) -> Result<&[u8], EnvelopeError> {
        let len = self.count()?;
        let range = self.take(len)?;
        Ok(&self.buf[range])
    }

    pub(super) fn shared(&mut self) -> Result<Bytes, EnvelopeError> {
        let len = self.count()?;
        let range = self.take(len)?;
        Ok(self.buf.slice(range))
    }

    pub(super) fn string(&mut self) -> Result<String, EnvelopeError> {
        std::str::from_utf8(self.slice()?)
            .map(str::to_owned)
            .map_err(|_| EnvelopeError::Invalid("string is not UTF-8"))
    }

    pub(super) fn header_name(&mut self) -> Result<HeaderName, EnvelopeError> {
        let raw = self.slice()?;
        let name = HeaderName::from_bytes(raw)
            .map_err(|_| EnvelopeError::Invalid("invalid header name"))?;
        // `from_bytes` lowercases; the encoder never writes uppercase.
        if name.as_str().as_bytes() != raw {
            return Err(EnvelopeError::Invalid("header name not lowercase"));
        }
        Ok(name)
    }

    pub(super) fn response(&mut self) -> Result<CachedResponse, EnvelopeError> {
        let status = StatusCode::from_u16(self.u16()?)
            .map_err(|_| EnvelopeError::Invalid("invalid status code"))?;
        let last_modified = self.time()?;
        let headers = self.headers()?;
        let body = self.shared()?;
        let identity = CachedResponse::new(status, headers, body, last_modified);
        let count = self.count()?;
        // An encoding takes at least a coding, a header count and a body.
        let mut encoded = Vec::with_capacity(count.min(self.remaining() / 3));
        for _ in 0..count {
            let coding = Coding::from_token(&self.string()?)
                .ok_or(EnvelopeError::Invalid("unknown content coding"))?;
            let headers = self.headers()?;
            let body = self.shared()?;
            encoded.push((
                coding,
                CachedResponse::new(status, headers, body, last_modified),
            ));
        }
        Ok(identity.with_encodings(encoded))
    }

    pub(super) fn headers(&mut self) -> Result<HeaderMap, EnvelopeError> {
        let count = self.count()?;
        // A pair takes at least three bytes (a name is never empty).
        let mut headers = HeaderMap::try_with_capacity(count.min(self.remaining() / 3))
            .map_err(|_| EnvelopeError::Invalid("too many headers"))?;
        for _ in 0..count {
            let name = self.header_name()?;
            let value = HeaderValue::from_maybe_shared(self.shared()?)
                .map_err(|_| EnvelopeError::Invalid("invalid header value"))?;
            headers
                .try_append(name, value)
                .map_err(|_| EnvelopeError::Invalid("too many headers"))?;
        }
        Ok(headers)
    }

    pub(super) fn rule(&mut self) -> Result<VariantRule, EnvelopeError> {
        let flags = self.u8()?;
        if flags & !(FLAG_PER_USER | FLAG_PASS) != 0 {
            return Err(EnvelopeError::Invalid("unknown variant flags"));
        }
        let count = self.count()?;
        let mut vary = Vec::with_capacity(count.min(self.remaining()));
        for _ in 0..count {
            vary.push(self.header_name()?);
        }
        Ok(VariantRule {
            per_user: flags & FLAG_PER_USER != 0,
            vary,
            pass: flags & FLAG_PASS != 0,
        })
    }
}
