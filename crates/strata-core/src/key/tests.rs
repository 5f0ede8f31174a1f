//! Cache keys: prefix, query normalisation, escaping, and the length bound.

use super::*;
use http::HeaderValue;
use std::collections::HashSet;

fn keys() -> KeyBuilder {
    KeyBuilder::new("thebot", "production")
}

#[test]
fn prefix_has_app_and_env() {
    assert_eq!(keys().prefix(), "thebot:production:");
    assert_eq!(
        keys().make_key(&["materials", "list"]),
        "thebot:production:materials:list"
    );
}

#[test]
fn same_input_same_key() {
    let a: Uri = "/api/x/?b=1&a=2".parse().unwrap();
    let b: Uri = "/api/x/?a=2&b=1".parse().unwrap();
    assert_eq!(keys().url_key(&a), keys().url_key(&b));
    assert_eq!(keys().url_key(&a), keys().url_key(&a));
}

#[test]
fn query_normalisation_keeps_repeated_order_and_drops_empties() {
    let uri: Uri = "/p?b=1&&a=2&a=1&".parse().unwrap();
    assert_eq!(normalize_url(&uri), "/p?a=2&a=1&b=1");
    let bare: Uri = "/p?".parse().unwrap();
    assert_eq!(normalize_url(&bare), "/p");
    let empty: Uri = "/p?&&".parse().unwrap();
    assert_eq!(normalize_url(&empty), "/p");
}

/// Parameters sort by their decoded name, stably: two spellings of one
/// name keep their order, so requests an origin answers differently (it
/// decodes, then takes the first) never share a key.
#[test]
fn query_parameters_sort_stably_by_their_decoded_name() {
    let a: Uri = "/p?role=admin&%72ole=user".parse().unwrap();
    let b: Uri = "/p?%72ole=user&role=admin".parse().unwrap();
    assert_ne!(normalize_url(&a), normalize_url(&b));
    assert_eq!(normalize_url(&a), "/p?role=admin&%72ole=user");
    assert_eq!(normalize_url(&b), "/p?%72ole=user&role=admin");
    // Decoded names sort among the others: `%61` is `a`, `+` a space.
    let c: Uri = "/p?b=1&%61=2&a+b=3".parse().unwrap();
    assert_eq!(normalize_url(&c), "/p?%61=2&a+b=3&b=1");
    // A malformed escape is a name of its own, compared as written.
    let d: Uri = "/p?%zz=1&a=2".parse().unwrap();
    assert_eq!(normalize_url(&d), "/p?%zz=1&a=2");
    // Equivalent orders of different names still share a key.
    let e: Uri = "/p?%62=1&a=2".parse().unwrap();
    let f: Uri = "/p?a=2&%62=1".parse().unwrap();
    assert_eq!(normalize_url(&e), normalize_url(&f));
}

#[test]
fn different_urls_users_and_headers_make_different_keys() {
    let k = keys();
    let mut headers_en = HeaderMap::new();
    headers_en.insert("accept-language", HeaderValue::from_static("en"));
    let mut headers_de = HeaderMap::new();
    headers_de.insert("accept-language", HeaderValue::from_static("de"));
    let vary = [HeaderName::from_static("accept-language")];
    let primary = k.url_key(&"/a".parse().unwrap());
    let all = [
        primary.clone(),
        k.url_key(&"/a?x=1".parse().unwrap()),
        k.url_key(&"/b".parse().unwrap()),
        k.variant_key(&primary, Some("1"), &[], &HeaderMap::new()),
        k.variant_key(&primary, Some("2"), &[], &HeaderMap::new()),
        k.variant_key(&primary, Some("1#h=x"), &[], &HeaderMap::new()),
        k.variant_key(&primary, None, &vary, &headers_en),
        k.variant_key(&primary, None, &vary, &headers_de),
        k.variant_key(&primary, None, &vary, &HeaderMap::new()),
        k.variant_key(&primary, Some("1"), &vary, &headers_en),
        k.make_key(&["a"]),
        k.user_key("a", "1"),
        k.user_key("a", "2"),
    ];
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "{all:#?}");
}

#[test]
fn separators_in_user_ids_are_escaped() {
    let k = keys();
    let key = k.variant_key("p", Some("a#u=b"), &[], &HeaderMap::new());
    assert_eq!(key, "p#u=a%23u=b");
    assert_eq!(KeyBuilder::user_name("x", "1:2"), "user:1%3A2:x");
    assert_eq!(
        KeyBuilder::user_of_name("user:1%3A2:x").as_deref(),
        Some("1:2")
    );
    assert_eq!(KeyBuilder::user_of_name("users:1"), None);
}

#[test]
fn long_keys_are_hashed_to_a_bounded_unique_length() {
    let k = keys();
    let long_a = format!("/{}", "a".repeat(1000));
    let long_b = format!("/{}b", "a".repeat(999));
    let key_a = k.url_key(&long_a.parse().unwrap());
    let key_b = k.url_key(&long_b.parse().unwrap());
    assert!(key_a.len() <= DEFAULT_MAX_KEY_LEN);
    assert!(key_a.starts_with("thebot:production:sha256:"));
    assert_ne!(key_a, key_b);
    assert_eq!(key_a, k.url_key(&long_a.parse().unwrap()));
    let short = k.url_key(&"/short".parse().unwrap());
    assert!(!short.contains("sha256"));
}

#[test]
fn max_len_never_drops_below_a_hashed_key() {
    let k = keys().max_len(1);
    assert_eq!(k.max_key_len(), "thebot:production:sha256:".len() + 64);
    let key = k.make_key(&[&"x".repeat(100)]);
    assert!(key.len() <= k.max_key_len());
    assert!(key.starts_with("thebot:production:sha256:"));
    assert_eq!(k.make_key(&["short"]), "thebot:production:short");
}

#[test]
fn path_of_strips_the_query() {
    assert_eq!(path_of("/a/b?x=1"), "/a/b");
    assert_eq!(path_of("/a/b"), "/a/b");
}
