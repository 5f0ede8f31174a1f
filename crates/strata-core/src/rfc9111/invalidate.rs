//! What a successful unsafe request invalidates (RFC 9111 §4.4).

use http::header::{CONTENT_LOCATION, HOST, LOCATION};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, StatusCode, Uri};

/// An origin: scheme, host and port (RFC 9110 §4.3.1). Hosts compare
/// case-insensitively; a missing port is the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `scheme://authority`, or `None` when the scheme has no
    /// default port (only `http` and `https` do) and none is given.
    pub(crate) fn new(scheme: Scheme, authority: &Authority) -> Option<Self> {
        let port = match authority.port_u16() {
            Some(port) => port,
            None if scheme == Scheme::HTTP => 80,
            None if scheme == Scheme::HTTPS => 443,
            None => return None,
        };
        Some(Self {
            host: authority.host().to_ascii_lowercase(),
            scheme,
            port,
        })
    }

    /// The origin of an absolute URI.
    pub(crate) fn of_uri(uri: &Uri) -> Option<Self> {
        Self::new(uri.scheme()?.clone(), uri.authority()?)
    }

    /// The origin a request was sent to: its URI's, if absolute, else
    /// `default_scheme` with its `Host` field (a server sees origin-form
    /// targets, RFC 9112 §3.2.1, and the scheme from its own listener).
    pub(crate) fn of_request(
        uri: &Uri,
        headers: &HeaderMap,
        default_scheme: Scheme,
    ) -> Option<Self> {
        if let Some(origin) = Self::of_uri(uri) {
            return Some(origin);
        }
        let host = headers.get(HOST)?.to_str().ok()?;
        let authority: Authority = host.trim().parse().ok()?;
        Self::new(default_scheme, &authority)
    }
}

/// Whether `method` is safe (RFC 9110 §9.2.1): GET, HEAD, OPTIONS, TRACE.
/// Every other method, known or not, is unsafe for invalidation (RFC 9111
/// §4.4: "including methods whose safety is unknown").
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The path-and-query of every URI a response invalidates (RFC 9111
/// §4.4), empty unless the method is unsafe and the status is 2xx or 3xx:
/// the request's target, then the `Location` and `Content-Location` URIs
/// when they are on the request's origin. Relative references resolve
/// against the target (RFC 3986 §5.2); absolute ones count only when their
/// origin equals `origin`, so with `origin` unknown only relative ones do
/// (a cross-origin invalidation could be used for denial of service).
/// Fragments are dropped, duplicates listed once.
pub(crate) fn invalidation_targets(
    method: &Method,
    status: StatusCode,
    target: &Uri,
    origin: Option<&Origin>,
    response_headers: &HeaderMap,
) -> Vec<String> {
    if is_safe(method) || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let base_path = if target.path().is_empty() {
        "/"
    } else {
        target.path()
    };
    let base_query = target.query();
    let mut targets = vec![path_and_query(base_path, base_query)];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(reference) = response_headers
            .get(&name)
            .and_then(|value| value.to_str().ok())
        else {
            continue;
        };
        let Some(resolved) = resolve(reference.trim(), base_path, base_query, origin) else {
            continue;
        };
        if !targets.contains(&resolved) {
            targets.push(resolved);
        }
    }
    targets
}

/// Resolves a URI reference against the request target (RFC 3986 §5.2.2)
/// into a path-and-query on the request's origin, or `None` when it is on
/// another origin (or one that cannot be told).
fn resolve(
    reference: &str,
    base_path: &str,
    base_query: Option<&str>,
    origin: Option<&Origin>,
) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or_default();
    let (reference, query) = match reference.split_once('?') {
        Some((reference, query)) => (reference, Some(query)),
        None => (reference, None),
    };
    if has_scheme(reference) || reference.starts_with("//") {
        let absolute: Uri = if reference.starts_with("//") {
            // A network-path reference takes the request's scheme.
            let scheme = origin?.scheme.as_str();
            format!("{scheme}:{reference}").parse().ok()?
        } else {
            reference.parse().ok()?
        };
        if Origin::of_uri(&absolute).as_ref() != Some(origin?) {
            return None;
        }
        let path = absolute.path();
        let path = remove_dot_segments(if path.is_empty() { "/" } else { path });
        return Some(path_and_query(&path, query));
    }
    if reference.is_empty() {
        return Some(path_and_query(base_path, query.or(base_query)));
    }
    let path = if reference.starts_with('/') {
        remove_dot_segments(reference)
    } else {
        // Merge with the base path's directory (§5.2.3).
        let directory = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        remove_dot_segments(&format!("{directory}{reference}"))
    };
    Some(path_and_query(&path, query))
}

/// Whether a reference starts with `scheme:` (RFC 3986 §3.1) rather than
/// a relative path (whose first segment cannot contain `:`).
fn has_scheme(reference: &str) -> bool {
    let Some(colon) = reference.find(':') else {
        return false;
    };
    let scheme = &reference[..colon];
    !scheme.contains('/')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if index == last {
                    output.push("");
                }
            }
            ".." => {
                if output.len() > 1 {
                    output.pop();
                }
                if index == last {
                    output.push("");
                }
            }
            segment => output.push(segment),
        }
    }
    let joined = output.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

fn path_and_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn origin() -> Origin {
        Origin::new(Scheme::HTTP, &Authority::from_static("Example.com")).unwrap()
    }

    fn targets(
        method: &Method,
        status: u16,
        target: &str,
        fields: &[(&'static str, &'static str)],
    ) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_static(value));
        }
        invalidation_targets(
            method,
            StatusCode::from_u16(status).unwrap(),
            &target.parse().unwrap(),
            Some(&origin()),
            &headers,
        )
    }

    #[test]
    fn unsafe_methods_with_success_or_redirect_invalidate_their_target() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(targets(&method, 200, "/a?b=1", &[]), ["/a?b=1"]);
            assert_eq!(targets(&method, 303, "/a", &[]), ["/a"]);
        }
        let unknown = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(targets(&unknown, 204, "/a", &[]), ["/a"]);
    }

    #[test]
    fn safe_methods_and_errors_invalidate_nothing() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(targets(&method, 200, "/a", &[]).is_empty());
        }
        for status in [100, 400, 404, 500, 503] {
            assert!(targets(&Method::POST, status, "/a", &[]).is_empty());
        }
    }

    #[test]
    fn same_origin_location_and_content_location_are_invalidated() {
        let got = targets(
            &Method::POST,
            201,
            "/items/",
            &[
                ("location", "http://EXAMPLE.com:80/items/7"),
                ("content-location", "/items/7?view=full#top"),
            ],
        );
        assert_eq!(got, ["/items/", "/items/7", "/items/7?view=full"]);
    }

    #[test]
    fn other_origins_are_not_invalidated() {
        for location in [
            "https://example.com/x",
            "http://example.com:8080/x",
            "http://other.com/x",
            "//other.com/x",
            "mailto:a@example.com",
        ] {
            let got = targets(&Method::POST, 201, "/items/", &[("location", location)]);
            assert_eq!(got, ["/items/"], "{location}");
        }
        let got = targets(
            &Method::POST,
            201,
            "/items/",
            &[("location", "//example.com/y")],
        );
        assert_eq!(got, ["/items/", "/y"]);
    }

    #[test]
    fn relative_references_resolve_against_the_target() {
        let cases = [
            ("7", "/items/7"),
            ("./7", "/items/7"),
            ("../users/1", "/users/1"),
            ("../../../x", "/x"),
            ("?page=2", "/items/list?page=2"),
            ("", "/items/list?q=1"),
            ("/abs/./b/../c", "/abs/c"),
            ("a/b/..", "/items/a/"),
        ];
        for (reference, expected) in cases {
            let got = targets(
                &Method::PUT,
                200,
                "/items/list?q=1",
                &[("location", reference)],
            );
            let want: Vec<&str> = if expected == "/items/list?q=1" {
                vec![expected]
            } else {
                vec!["/items/list?q=1", expected]
            };
            assert_eq!(got, want, "{reference}");
        }
    }

    #[test]
    fn without_a_known_origin_only_relative_references_count() {
        let mut headers = HeaderMap::new();
        headers.insert("location", HeaderValue::from_static("http://example.com/x"));
        headers.insert("content-location", HeaderValue::from_static("/y"));
        let got = invalidation_targets(
            &Method::POST,
            StatusCode::OK,
            &"/a".parse().unwrap(),
            None,
            &headers,
        );
        assert_eq!(got, ["/a", "/y"]);
    }

    #[test]
    fn origins_of_requests() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.com:80"));
        let from_host = Origin::of_request(&"/a".parse().unwrap(), &headers, Scheme::HTTP);
        assert_eq!(from_host, Some(origin()));
        let absolute = Origin::of_request(
            &"https://example.com/a".parse().unwrap(),
            &headers,
            Scheme::HTTP,
        );
        assert_eq!(absolute.map(|o| o.port), Some(443));
        assert_eq!(
            Origin::of_request(&"/a".parse().unwrap(), &HeaderMap::new(), Scheme::HTTP),
            None
        );
    }
}
