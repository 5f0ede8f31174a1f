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
    let vary = ["x-custom"];
    assert_ne!(
        key(&vary, &[("x-custom", "en, fr")]),
        key(&vary, &[("x-custom", "fr, en")])
    );
    assert_eq!(
        key(&vary, &[("x-custom", "en,fr")]),
        key(&vary, &[("x-custom", " en , fr ")])
    );
    assert_ne!(key(&vary, &[]), key(&vary, &[("x-custom", "")]));
    let vary = ["accept-language"];
    assert_ne!(key(&vary, &[]), key(&vary, &[("accept-language", "")]));
}

/// `Accept-Language` and `Accept`: case, white space, the spelling of `q`
/// and the order of members of different weights do not split variants;
/// the order of members of equal weight does (an origin may break the tie
/// by it), and so does any weight.
#[test]
fn weighted_lists_share_a_variant_when_the_origin_cannot_tell_them_apart() {
    let lang = ["accept-language"];
    let same = |a: &'static str, b: &'static str| {
        assert_eq!(
            key(&lang, &[("accept-language", a)]),
            key(&lang, &[("accept-language", b)]),
            "{a:?} and {b:?}"
        );
    };
    same("fr-CH, fr;q=0.9, en;q=0.8", "en;q=0.8,FR-ch,fr;q=0.90");
    same("fr, en;q=0.5", "en ; Q=0.500 , fr;q=1.0");
    same("de;q=0", "de;q=0.000");
    let differ = |a: &'static str, b: &'static str| {
        assert_ne!(
            key(&lang, &[("accept-language", a)]),
            key(&lang, &[("accept-language", b)]),
            "{a:?} and {b:?}"
        );
    };
    differ("en, fr", "fr, en");
    differ("fr;q=0.9, en;q=0.8", "fr;q=0.8, en;q=0.9");
    differ("fr", "fr;q=0");
    // An invalid weight: nothing is reordered.
    differ("fr;q=2, en", "en, fr;q=2");

    let accept = ["accept"];
    assert_eq!(
        key(&accept, &[("accept", "text/html, application/json;q=0.5")]),
        key(&accept, &[("accept", "Application/JSON ; q=0.5,TEXT/HTML")])
    );
    // Parameter values other than q keep their case.
    assert_ne!(
        key(&accept, &[("accept", "text/html;level=A")]),
        key(&accept, &[("accept", "text/html;level=a")])
    );
}
