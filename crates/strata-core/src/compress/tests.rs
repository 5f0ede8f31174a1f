use super::*;

fn accept(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
    headers
}

const STORED: [(Coding, usize); 3] = [
    (Coding::Gzip, 300),
    (Coding::Brotli, 250),
    (Coding::Zstd, 280),
];

fn picked(value: &str) -> Option<Coding> {
    choose(&accept(value), STORED).map(|i| STORED[i].0)
}

#[test]
fn q_values_and_ties() {
    assert_eq!(picked("gzip"), Some(Coding::Gzip));
    assert_eq!(
        picked("gzip, br"),
        Some(Coding::Brotli),
        "the smaller on a tie"
    );
    assert_eq!(picked("gzip;q=1, br;q=0.5"), Some(Coding::Gzip));
    assert_eq!(picked("GZIP;Q=0.9, zstd;q=0.95"), Some(Coding::Zstd));
    assert_eq!(picked("br;q=0, gzip"), Some(Coding::Gzip));
    assert_eq!(picked("deflate"), None);
    assert_eq!(picked("identity"), None);
    assert_eq!(picked("gzip;q=0.5, identity"), None, "identity preferred");
    assert_eq!(
        picked("gzip;q=0.5"),
        Some(Coding::Gzip),
        "identity left implicit"
    );
    assert_eq!(
        picked("gzip, identity"),
        Some(Coding::Gzip),
        "a tie goes to the coding"
    );
    assert_eq!(
        choose(&HeaderMap::new(), STORED),
        None,
        "no header: identity"
    );
}

#[test]
fn star_and_refusals() {
    assert_eq!(picked("*"), Some(Coding::Brotli));
    assert_eq!(picked("*;q=0.5, gzip;q=0.8"), Some(Coding::Gzip));
    assert_eq!(picked("*;q=0"), None);
    assert_eq!(picked("gzip;q=0, br;q=0, zstd;q=0"), None);
    assert_eq!(picked("identity;q=0, gzip"), Some(Coding::Gzip));
    assert_eq!(picked("gzip;q=abc"), None, "an invalid q-value is ignored");
    assert_eq!(picked("gzip;q=1.5"), None);
}

#[test]
fn q_values_parse_to_thousandths() {
    assert_eq!(qvalue("1"), Some(1000));
    assert_eq!(qvalue("1.000"), Some(1000));
    assert_eq!(qvalue("0.5"), Some(500));
    assert_eq!(qvalue("0.125"), Some(125));
    assert_eq!(qvalue("0"), Some(0));
    for bad in ["1.001", "2", "0.1234", "-1", "", "."] {
        assert_eq!(qvalue(bad), None, "{bad}");
    }
}

#[test]
fn what_is_compressible() {
    for yes in [
        "text/html; charset=utf-8",
        "application/json",
        "application/problem+json",
        "image/svg+xml",
        "APPLICATION/JAVASCRIPT",
    ] {
        assert!(compressible(yes), "{yes}");
    }
    for no in [
        "image/png",
        "application/zip",
        "video/mp4",
        "application/octet-stream",
        "bogus",
    ] {
        assert!(!compressible(no), "{no}");
    }
}
