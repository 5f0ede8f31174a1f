//! The admission gate: what may never be in a stored response, whichever
//! path stores it (a fill, a 304 refresh, a background refresh, a HEAD
//! fill).
//!
//! A stored response is replayed to other requests: to every client for a
//! shared entry, to the same user on other connections for a private one.
//! So it never holds
//!
//! - `Set-Cookie` (one client's session, or a load balancer's stickiness
//!   for one connection): the response made for the request that fetched
//!   it still sets the cookie, hits never do;
//! - hop-by-hop fields and those the response's `Connection` names (RFC
//!   9111 §3.1): they describe one connection, not the representation.
//!
//! [`strip`] removes them (and hands back the cookies for the one client
//! they were meant for); [`check`] is what [`Shared::put_all`](crate::shared::Shared::put_all)
//! asks of every entry before it writes, so a path that forgot to strip
//! stores nothing rather than leak.

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::entry::Entry;
use crate::fields::{HOP_BY_HOP, remove_hop_by_hop};

/// Removes what a stored response must not hold from `headers`, and
/// returns the `Set-Cookie` values for the requesting client alone.
pub(crate) fn strip(headers: &mut HeaderMap) -> Vec<HeaderValue> {
    remove_hop_by_hop(headers);
    let cookies = headers.get_all(SET_COOKIE).iter().cloned().collect();
    headers.remove(SET_COOKIE);
    cookies
}

/// Whether `entry` may be written: `Err` names the first field that must
/// not be stored.
pub(crate) fn check(entry: &Entry) -> Result<(), HeaderName> {
    let Some(stored) = entry.response() else {
        return Ok(());
    };
    let headers = stored.headers();
    if headers.contains_key(SET_COOKIE) {
        return Err(SET_COOKIE);
    }
    match HOP_BY_HOP.iter().find(|name| headers.contains_key(*name)) {
        Some(name) => Err(name.clone()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_fields_are_stripped_and_cookies_handed_back() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.insert("connection", HeaderValue::from_static("x-trace, close"));
        headers.insert("x-trace", HeaderValue::from_static("conn-7"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let cookies = strip(&mut headers);
        assert_eq!(cookies, ["a=1", "b=2"]);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type"]);
    }
}
