//! Variant keys: how the values of the Vary fields change the key.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::KeyBuilder;

fn key(vary: &[&'static str], headers: &[(&'static str, &'static str)]) -> String {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, HeaderValue::from_static(value));
    }
    let vary: Vec<HeaderName> = vary.iter().map(|n| HeaderName::from_static(n)).collect();
    KeyBuilder::new("app", "test").variant_key("app:test:http:/p", None, &vary, &map)
}

#[test]
fn accept_encoding_variants_ignore_case_order_and_white_space() {
    let vary = ["accept-encoding"];
    let a = key(&vary, &[("accept-encoding", "gzip, br")]);
    assert_eq!(a, key(&vary, &[("accept-encoding", "BR,GZIP")]));
    assert_eq!(
        a,
        key(
            &vary,
            &[("accept-encoding", "br"), ("accept-encoding", " gzip ")]
        )
    );
    assert_ne!(a, key(&vary, &[("accept-encoding", "gzip")]));
}

#[test]
fn other_fields_keep_their_order_and_absent_differs_from_empty() {
    let vary = ["accept-language"];
    assert_ne!(
        key(&vary, &[("accept-language", "en, fr")]),
        key(&vary, &[("accept-language", "fr, en")])
    );
    assert_eq!(
        key(&vary, &[("accept-language", "en,fr")]),
        key(&vary, &[("accept-language", " en , fr ")])
    );
    assert_ne!(key(&vary, &[]), key(&vary, &[("accept-language", "")]));
}
