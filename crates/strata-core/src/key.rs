//! Cache keys: one consistent, bounded layout for every layer and instance.
//!
//! ```text
//! {app}:{env}:http:{path}?{sorted query}             a URL's primary key
//! {primary}#u={user}#h={name}={value}&...            one of its variants
//! {app}:{env}:{name}                                 a get_or_compute value
//! {app}:{env}:sha256:{64 hex}                        any of the above, when too long
//! ```
//!
//! `#` cannot occur in a request target (fragments are never sent), and
//! `#` and `%` are percent-encoded in users and header values, so distinct
//! inputs never build the same key.

use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Uri};
use sha2::{Digest, Sha256};

/// Builds every key strata stores under (`make_key` / `user_key`, as
/// docs/FROM_DJANGO.md maps them).
///
/// Cloning is cheap. Keys longer than [`max_len`](Self::max_len) are replaced
/// by the prefix and the SHA-256 of the whole key, so a key never exceeds the
/// bound and stays unique.
///
/// ```
/// use strata::KeyBuilder;
///
/// let keys = KeyBuilder::new("thebot", "production");
/// assert_eq!(keys.make_key(&["materials", "list"]), "thebot:production:materials:list");
/// assert_eq!(keys.user_key("dashboard", "42"), "thebot:production:user:42:dashboard");
/// let uri = "/api/materials/?b=2&a=1".parse().unwrap();
/// assert_eq!(keys.url_key(&uri), "thebot:production:http:/api/materials/?a=1&b=2");
/// ```
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    prefix: Arc<str>,
    max_len: usize,
}

/// The bound above which keys are hashed, unless set otherwise.
pub const DEFAULT_MAX_KEY_LEN: usize = 250;

const HASH_MARK: &str = "sha256:";
const HTTP_MARK: &str = "http:";
const USER_MARK: &str = "user:";

impl KeyBuilder {
    /// Keys prefixed with `{app}:{env}:`, as in `thebot:production:`.
    pub fn new(app: &str, env: &str) -> Self {
        Self::with_prefix(format!("{app}:{env}:"))
    }

    /// Keys prefixed with exactly `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        Self {
            prefix: prefix.into(),
            max_len: DEFAULT_MAX_KEY_LEN,
        }
    }

    /// Sets the length above which keys are hashed (default
    /// [`DEFAULT_MAX_KEY_LEN`]). It never goes below what a hashed key needs.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(self.prefix.len() + HASH_MARK.len() + 64);
        self
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configured bound.
    pub fn max_key_len(&self) -> usize {
        self.max_len
    }

    /// `{prefix}{parts joined by ':'}`.
    pub fn make_key(&self, parts: &[&str]) -> String {
        self.value_key(&parts.join(":"))
    }

    /// `{prefix}user:{user}:{name}`: a value that belongs to one user, dropped
    /// by [`CacheHandle::invalidate_user`](crate::CacheHandle::invalidate_user).
    pub fn user_key(&self, name: &str, user: &str) -> String {
        self.value_key(&Self::user_name(name, user))
    }

    /// `user:{user}:{name}`, the name [`user_key`](Self::user_key) prefixes.
    pub fn user_name(name: &str, user: &str) -> String {
        let mut out = String::with_capacity(USER_MARK.len() + user.len() + 1 + name.len());
        out.push_str(USER_MARK);
        push_escaped(&mut out, user.as_bytes());
        out.push(':');
        out.push_str(name);
        out
    }

    /// The user a name made by [`user_name`](Self::user_name) belongs to.
    pub fn user_of_name(name: &str) -> Option<String> {
        let rest = name.strip_prefix(USER_MARK)?;
        let (escaped, _) = rest.split_once(':')?;
        Some(unescape(escaped))
    }

    /// `{prefix}{name}`, bounded: the key of a `get_or_compute` value.
    pub fn value_key(&self, name: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + name.len());
        key.push_str(&self.prefix);
        key.push_str(name);
        self.bound(key)
    }

    /// The primary key of a URL: `{prefix}http:{normalised URL}`, bounded.
    pub fn url_key(&self, uri: &Uri) -> String {
        let path = uri.path();
        let query = uri.query().unwrap_or("");
        let mut key = String::with_capacity(
            self.prefix.len() + HTTP_MARK.len() + path.len() + query.len() + 1,
        );
        key.push_str(&self.prefix);
        key.push_str(HTTP_MARK);
        push_normalized(&mut key, path, query);
        self.bound(key)
    }

    /// The key of one variant of a URL: its primary key, the user (for
    /// per-user resources) and the request's values of the `vary` headers.
    pub fn variant_key(
        &self,
        primary: &str,
        user: Option<&str>,
        vary: &[HeaderName],
        request_headers: &HeaderMap,
    ) -> String {
        let mut key = String::with_capacity(primary.len() + 32);
        key.push_str(primary);
        if let Some(user) = user {
            key.push_str("#u=");
            push_escaped(&mut key, user.as_bytes());
        }
        if !vary.is_empty() {
            // Normalised where RFC 9111 §4.1 allows: white space, empty
            // list members, and `Accept-Encoding`'s case and order.
            key.push_str("#h=");
            crate::rfc9111::write_secondary_key(&mut key, vary, request_headers);
        }
        self.bound(key)
    }

    fn bound(&self, key: String) -> String {
        if key.len() <= self.max_len {
            return key;
        }
        let digest = Sha256::digest(key.as_bytes());
        let mut hashed = String::with_capacity(self.prefix.len() + HASH_MARK.len() + 64);
        hashed.push_str(&self.prefix);
        hashed.push_str(HASH_MARK);
        hashed.push_str(&hex::encode(digest));
        hashed
    }
}

/// The normalised form of a request target: its path, then `?` and the
/// query's non-empty parameters sorted by name, or the path alone when
/// there are none.
///
/// Parameters are ordered by their *decoded* name (percent-escapes and `+`
/// read as an origin's form decoder reads them), and the sort is stable:
/// parameters that decode to the same name keep their order, whatever
/// their spelling. An origin that takes the first (or the last) of a
/// repeated name therefore never sees two requests it would answer
/// differently under one key: `?role=admin&%72ole=user` and
/// `?%72ole=user&role=admin` stay apart. The parameters themselves are
/// kept as sent.
///
/// ```
/// let uri = "/a/?z=1&&a=2&a=1".parse().unwrap();
/// assert_eq!(strata::key::normalize_url(&uri), "/a/?a=2&a=1&z=1");
/// let spelled = "/a/?role=admin&%72ole=user".parse().unwrap();
/// assert_eq!(strata::key::normalize_url(&spelled), "/a/?role=admin&%72ole=user");
/// ```
pub fn normalize_url(uri: &Uri) -> String {
    let mut out = String::new();
    push_normalized(&mut out, uri.path(), uri.query().unwrap_or(""));
    out
}

/// The path part of a normalised URL or name: everything before `?`.
pub fn path_of(name: &str) -> &str {
    name.split_once('?').map_or(name, |(path, _)| path)
}

/// The path an [`Invalidation::Url`](crate::Invalidation::Url) names: the
/// path of the URL (absolute or not), without its query. Every store and
/// the cache's fences read it here, so they agree on what a URL names.
///
/// ```
/// use strata::key::path_of_url;
/// assert_eq!(path_of_url("/a/?x=1"), "/a/");
/// assert_eq!(path_of_url("https://example.com/a/"), "/a/");
/// ```
pub fn path_of_url(url: &str) -> std::borrow::Cow<'_, str> {
    match url.parse::<Uri>() {
        Ok(uri) if uri.path() != path_of(url) => std::borrow::Cow::Owned(uri.path().to_owned()),
        _ => std::borrow::Cow::Borrowed(path_of(url)),
    }
}

fn push_normalized(out: &mut String, path: &str, query: &str) {
    out.push_str(if path.is_empty() { "/" } else { path });
    if query.is_empty() {
        return;
    }
    let already_normal = !query.split('&').any(str::is_empty)
        && query
            .split('&')
            .zip(query.split('&').skip(1))
            .all(|(a, b)| decoded_name(a) <= decoded_name(b));
    if already_normal {
        out.push('?');
        out.push_str(query);
        return;
    }
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if pairs.is_empty() {
        return;
    }
    // Stable: same decoded names keep their order.
    pairs.sort_by_cached_key(|pair| decoded_name(pair));
    out.push('?');
    for (i, pair) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(pair);
    }
}

/// Undoes [`push_escaped`]; malformed escapes are kept as they are.
fn unescape(escaped: &str) -> String {
    String::from_utf8_lossy(&percent_decode(escaped.as_bytes(), false)).into_owned()
}

/// `%XX` escapes decoded (a malformed one kept as it is), and `+` read as
/// a space when `plus_is_space` (form encoding).
fn percent_decode(bytes: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

fn name_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

/// A parameter's name as an origin's form decoder reads it: `+` is a
/// space and `%XX` the byte it names (a malformed escape stays as it is).
/// Borrowed when there is nothing to decode.
fn decoded_name(pair: &str) -> std::borrow::Cow<'_, [u8]> {
    let name = name_of(pair).as_bytes();
    if name.iter().any(|&b| b == b'%' || b == b'+') {
        std::borrow::Cow::Owned(percent_decode(name, true))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Appends `bytes`, percent-encoding `#`, `%`, `:` and anything that is not
/// visible ASCII, so that user ids and header values cannot forge a separator.
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &byte in bytes {
        if byte.is_ascii_graphic() && !matches!(byte, b'#' | b'%' | b':') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod variant_tests;
