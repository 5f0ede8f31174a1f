//! Tags set by the origin for purging: `Surrogate-Key` (space-separated,
//! as Fastly reads it) and `Cache-Tag` (comma-separated, as Cloudflare
//! reads it). Neither is an RFC; strata stores them as the entry's tags so
//! that an invalidation by tag reaches what the origin labelled.

use http::HeaderMap;

pub(crate) use crate::fields::{CACHE_TAG, SURROGATE_KEY};

/// The most tags one response may carry.
pub(crate) const MAX_SURROGATE_KEYS: usize = 128;

/// The longest tag accepted, in bytes (Fastly's limit for one key).
pub(crate) const MAX_SURROGATE_KEY_LEN: usize = 1024;

/// Why a response's tags cannot be stored as given.
///
/// A tag that is dropped or cut could never be purged by its full name,
/// so the entry would outlive an invalidation its origin expects; the
/// caller should not store such a response (or store it without sharing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub(crate) enum SurrogateKeyError {
    /// More than [`MAX_SURROGATE_KEYS`] distinct tags.
    #[error("more than 128 surrogate keys")]
    TooMany,
    /// A tag longer than [`MAX_SURROGATE_KEY_LEN`] bytes.
    #[error("a surrogate key longer than 1024 bytes")]
    TooLong,
    /// A field value that is not UTF-8 text.
    #[error("a surrogate key that is not text")]
    NotText,
}

/// The tags of a response: the space-separated members of every
/// `Surrogate-Key` line, then the comma-separated members of every
/// `Cache-Tag` line, each trimmed, empty ones dropped, duplicates listed
/// once in order of first appearance. Tags are case-sensitive.
pub(crate) fn surrogate_keys(headers: &HeaderMap) -> Result<Vec<String>, SurrogateKeyError> {
    let mut keys: Vec<String> = Vec::new();
    let space_separated = headers
        .get_all(SURROGATE_KEY)
        .iter()
        .map(|line| (line, &[' ', '\t'][..]));
    let comma_separated = headers
        .get_all(CACHE_TAG)
        .iter()
        .map(|line| (line, &[','][..]));
    for (line, separators) in space_separated.chain(comma_separated) {
        let text = std::str::from_utf8(line.as_bytes()).map_err(|_| SurrogateKeyError::NotText)?;
        for key in text
            .split(separators)
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            if key.len() > MAX_SURROGATE_KEY_LEN {
                return Err(SurrogateKeyError::TooLong);
            }
            if keys.iter().any(|known| known == key) {
                continue;
            }
            if keys.len() == MAX_SURROGATE_KEYS {
                return Err(SurrogateKeyError::TooMany);
            }
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn keys(fields: &[(&http::HeaderName, &str)]) -> Result<Vec<String>, SurrogateKeyError> {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
        }
        surrogate_keys(&headers)
    }

    #[test]
    fn both_fields_are_read_trimmed_and_deduplicated() {
        let got = keys(&[
            (&SURROGATE_KEY, " a\tb  a "),
            (&SURROGATE_KEY, "c"),
            (&CACHE_TAG, " b , d,, e f ,"),
        ])
        .unwrap();
        assert_eq!(got, ["a", "b", "c", "d", "e f"]);
        assert_eq!(keys(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(keys(&[(&CACHE_TAG, " , ")]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn case_is_kept() {
        assert_eq!(keys(&[(&SURROGATE_KEY, "A a")]).unwrap(), ["A", "a"]);
    }

    #[test]
    fn limits_are_errors_not_silent_truncation() {
        let many: Vec<String> = (0..=MAX_SURROGATE_KEYS).map(|i| format!("k{i}")).collect();
        let line = many.join(" ");
        assert_eq!(
            keys(&[(&SURROGATE_KEY, &line)]),
            Err(SurrogateKeyError::TooMany)
        );
        let exactly = many[..MAX_SURROGATE_KEYS].join(" ");
        assert_eq!(
            keys(&[(&SURROGATE_KEY, &exactly)]).unwrap().len(),
            MAX_SURROGATE_KEYS
        );
        // Duplicates do not count towards the limit.
        let repeated = vec!["same"; 1000].join(",");
        assert_eq!(keys(&[(&CACHE_TAG, &repeated)]).unwrap(), ["same"]);
        let long = "x".repeat(MAX_SURROGATE_KEY_LEN + 1);
        assert_eq!(
            keys(&[(&CACHE_TAG, &long)]),
            Err(SurrogateKeyError::TooLong)
        );
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_TAG, HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(surrogate_keys(&headers), Err(SurrogateKeyError::NotText));
        assert_eq!(
            SurrogateKeyError::TooMany.to_string(),
            "more than 128 surrogate keys"
        );
    }
}
