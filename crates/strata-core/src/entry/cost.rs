//! The sizes [`Entry::size`](super::Entry::size) adds up. Those of `http`'s private types are
//! rebuilt from their fields' public types; the store's bookkeeping was
//! measured (see each constant).

use std::mem::{align_of, size_of};

use http::{HeaderName, HeaderValue};

/// The strong and weak counts in front of an `Arc`'s value.
pub(super) const ARC_HEADER: usize = 2 * size_of::<usize>();

/// One slot of a `HeaderMap`'s index table: `Pos { index: u16, hash: u16 }`.
pub(super) const HEADER_INDEX: usize = 2 * size_of::<u16>();

/// One entry of a `HeaderMap` (http 1.x `Bucket`): a 16-bit hash, the
/// name, the value and `Option<Links { next: usize, tail: usize }>`,
/// padded to the alignment of `usize`. 104 bytes on 64-bit targets.
pub(super) const HEADER_SLOT: usize = round_up(
    size_of::<u16>()
        + size_of::<HeaderName>()
        + size_of::<HeaderValue>()
        + size_of::<Option<[usize; 2]>>(),
    align_of::<usize>(),
);

/// One extra value of a repeated header name (http 1.x `ExtraValue`):
/// the value and two links, each an enum over an index. 72 bytes on
/// 64-bit targets.
pub(super) const HEADER_EXTRA: usize =
    size_of::<HeaderValue>() + 2 * size_of::<Result<usize, usize>>();

/// What a header value costs besides its bytes: the allocator's
/// rounding of a small buffer, and the shared-count block `Bytes` adds
/// once a value is cloned. Static values (`Age: 0`, `Cache-Status`)
/// cost nothing and values of one allocation share it, so this is an
/// average over a stored response's usual headers, not a bound.
pub(super) const VALUE: usize = 16;

/// moka's bookkeeping for one entry of the memory store: the hash
/// table bucket and its share of the bucket array, the `Arc` around
/// the key, the value entry and its entry info (atomics for weight,
/// access and expiry times), the nodes of the access, write and
/// timer-wheel queues that per-entry expiry needs, and the frequency
/// sketch.
///
/// Measured with `cargo bench -p strata-compare --bench memory`
/// (100,000 entries, glibc 2.36 malloc, x86_64): RSS growth per entry
/// less everything else `Entry::size` counts (with this constant and
/// [`INDEX_LABEL`] at zero) was 464 B in the `query` case (one label,
/// shared by every entry), 522 B in `untagged` (one label of its own)
/// and 731 B in `tagged` (two of its own, one shared). 420 + 90 per
/// label gives 510, 510 and 690.
pub(super) const STORE_ENTRY: usize = 420;

/// The invalidation index's cost for one label of an entry (its path,
/// user and each tag), measured with [`STORE_ENTRY`]: a label shared
/// by many entries costs a slot in its key set (about 40 bytes), one of
/// its own an index slot and a copy of the label (about 120 bytes);
/// 90 is between the two, as labels of both kinds are common.
pub(super) const INDEX_LABEL: usize = 90;

/// What the index slot of a label costs besides the label's copy: chosen
/// so that a label of up to 24 bytes (one 32-byte chunk) costs exactly
/// [`INDEX_LABEL`], the measured average.
const INDEX_SLOT: usize = INDEX_LABEL - 32;

/// The index's cost for one label of an entry: [`INDEX_LABEL`], or the
/// slot and the label's copy at its real length when that is more (a
/// label longer than a few dozen bytes), so a store full of long paths
/// stays within its byte budget.
pub(super) fn index_label(label: &str) -> usize {
    INDEX_LABEL.max(INDEX_SLOT + heap(label.len()))
}

/// What the allocator takes for a request of `n` bytes: glibc's
/// malloc adds an 8-byte header and rounds up to 16, 32 at least.
/// Nothing for `n == 0`, which does not allocate.
pub(super) const fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        let chunk = round_up(n + size_of::<usize>(), 16);
        if chunk < 32 { 32 } else { chunk }
    }
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}
