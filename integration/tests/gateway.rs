//! The gateway of `examples/gateway.rs` as a reverse proxy, through real
//! sockets: an upstream axum app (or a raw TCP server, where the upstream
//! has to misbehave) on `127.0.0.1:0`, the gateway's router on another
//! port, and reqwest or a raw HTTP/1.1 client in front. Every method with
//! its path, query, body and headers; hop-by-hop fields removed in both
//! directions; `Via` and `X-Forwarded-*`; bodies streamed both ways (shown
//! with channels, not timing); 502 and 504, and the gateway working on
//! after them.
//!
//! The cache here runs `CachePolicy::origin`, but these upstream responses
//! say nothing about caching, so nothing is stored: the caching rules are
//! tested in integration/tests/gateway_cache.rs.

#[path = "../../examples/gateway/proxy.rs"]
mod proxy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http_body_util::BodyExt;
use proxy::{Proxy, ProxyOptions, Upstream};
use reqwest::Method;
use serde_json::{Map, Value, json};
use strata::Cache;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once before
/// it calls it a failure (so a buffering proxy fails instead of hanging).
const PATIENCE: Duration = Duration::from_secs(10);

/// The headers a proxy must not forward, in either direction, besides
/// whatever `Connection` names: strata's one list, less
/// `Transfer-Encoding`, which is left out of the checks: each hop frames
/// its own body, so the next hop may well send `Transfer-Encoding:
/// chunked` of its own.
fn hop_by_hop() -> impl Iterator<Item = &'static str> {
    strata::fields::HOP_BY_HOP
        .iter()
        .map(|name| name.as_str())
        .filter(|name| *name != "transfer-encoding")
}

// ----------------------------------------------------------------------------
// Harness
// ----------------------------------------------------------------------------

/// A router served on `127.0.0.1:0` (with the client's address, as the
/// example serves it) until dropped.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, router)
    }

    fn on(listener: TcpListener, router: Router) -> Self {
        let addr = listener.local_addr().unwrap();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, service).await.unwrap();
        });
        Self { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn upstream_at(addr: SocketAddr) -> Upstream {
    Upstream::parse(&format!("http://{addr}")).unwrap()
}

/// The gateway (proxy under the cache layer, memory store) to `upstream`.
async fn gateway(upstream: SocketAddr, options: ProxyOptions) -> (Server, Cache) {
    let cache = options
        .configure(Cache::builder().prefix("gateway", "test"))
        .build();
    let router = proxy::gateway(upstream_at(upstream), &cache, options);
    (Server::start(router).await, cache)
}

/// The proxy alone, without the cache layer.
async fn bare_proxy(upstream: SocketAddr) -> Server {
    let proxy = Proxy::new(upstream_at(upstream), ProxyOptions::default());
    Server::start(Router::new().fallback_service(proxy)).await
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

// ----------------------------------------------------------------------------
// The upstream
// ----------------------------------------------------------------------------

/// What the upstream's tests control: the body `/stream` sends, where
/// `/upload` reports each piece of body it receives, and where `/slow`
/// reports that it started and that its request was dropped.
#[derive(Clone, Default)]
struct Controls {
    stream: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
    upload: Arc<Mutex<Option<mpsc::UnboundedSender<Bytes>>>>,
    slow: Arc<Mutex<Option<mpsc::UnboundedSender<&'static str>>>>,
}

/// The upstream app: `/hop` answers with hop-by-hop headers, `/slow` never
/// answers, `/stream` sends what the test feeds it, `/upload` reads its
/// body piece by piece, and everything else is echoed as JSON.
fn upstream_app(controls: Controls) -> Router {
    Router::new()
        .route("/hop", get(hop))
        .route("/slow", any(slow))
        .route("/stream", get(stream))
        .route("/upload", post(upload))
        .fallback(echo)
        .with_state(controls)
}

async fn upstream(controls: Controls) -> Server {
    Server::start(upstream_app(controls)).await
}

/// The request as the upstream saw it, as JSON: method, path, query, every
/// header (all values, in order) and the body. The status is the request's
/// `x-want-status`, else 200; the response carries `x-echo-method` (HEAD
/// has no body to tell it) and two `x-upstream` lines.
async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let values = headers
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values {
            values.push(Value::from(String::from_utf8_lossy(value.as_bytes())));
        }
    }
    let status = parts
        .headers
        .get("x-want-status")
        .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let seen = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = (status, axum::Json(seen)).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(
        "x-echo-method",
        HeaderValue::from_str(parts.method.as_str()).unwrap(),
    );
    response_headers.append("x-upstream", HeaderValue::from_static("one"));
    response_headers.append("x-upstream", HeaderValue::from_static("two"));
    response
}

async fn hop() -> Response {
    let mut response = "hop".into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("connection", "X-Hop-Secret"),
        ("x-hop-secret", "from-upstream"),
        ("keep-alive", "timeout=5, max=100"),
        ("proxy-connection", "keep-alive"),
        ("proxy-authenticate", "Basic realm=\"upstream\""),
        ("trailer", "X-Checksum"),
        ("upgrade", "h2c"),
        ("te", "trailers"),
        ("x-end-to-end", "kept"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// Never answers; says when it starts and when it is dropped (the gateway
/// gave up and closed the connection).
async fn slow(State(controls): State<Controls>) {
    struct Dropped(Option<mpsc::UnboundedSender<&'static str>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            if let Some(events) = &self.0 {
                let _ = events.send("dropped");
            }
        }
    }
    let events = controls.slow.lock().unwrap().clone();
    if let Some(events) = &events {
        let _ = events.send("started");
    }
    let _dropped = Dropped(events);
    std::future::pending::<()>().await;
}

async fn stream(State(controls): State<Controls>) -> Response {
    let receiver = controls.stream.lock().unwrap().take();
    let Some(receiver) = receiver else {
        return StatusCode::CONFLICT.into_response();
    };
    let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, Infallible>(chunk), receiver))
    });
    Body::from_stream(chunks).into_response()
}

/// Reads the body frame by frame, reporting each data frame to the test
/// as it arrives; answers with how many bytes came.
async fn upload(State(controls): State<Controls>, body: Body) -> Response {
    let report = controls.upload.lock().unwrap().take();
    let mut body = body;
    let mut received = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        if let Ok(data) = frame.into_data() {
            if let Some(report) = &report {
                let _ = report.send(data.clone());
            }
            received.extend_from_slice(&data);
        }
    }
    axum::Json(json!({ "bytes": received.len(), "body": String::from_utf8_lossy(&received) }))
        .into_response()
}

fn header_values(seen: &Value, name: &str) -> Vec<String> {
    seen["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ----------------------------------------------------------------------------
// A raw HTTP/1.1 client: for headers a library client would not send as
// given (Connection, TE, Upgrade, Proxy-*) and for pacing a request body.
// ----------------------------------------------------------------------------

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads one response (head, then a `Content-Length` or chunked body).
async fn read_response(reader: &mut BufReader<TcpStream>) -> RawResponse {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(length) = response.header("content-length") {
        let mut body = vec![0; length.parse().unwrap()];
        reader.read_exact(&mut body).await.unwrap();
        response.body = body;
    } else if response.header("transfer-encoding") == Some("chunked") {
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    }
    response
}

/// Sends `request` as written and reads the response.
async fn raw_exchange(addr: SocketAddr, request: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    within("the response", read_response(&mut reader)).await
}

// ----------------------------------------------------------------------------
// Forwarding
// ----------------------------------------------------------------------------

/// Every method reaches the upstream with its path, query, body and
/// headers as sent, and the upstream's status, headers and body come back;
/// behind the cache layer and without it.
#[tokio::test]
async fn every_method_reaches_the_upstream_intact() {
    let upstream = upstream(Controls::default()).await;
    let (behind_cache, _cache) = gateway(upstream.addr, ProxyOptions::default()).await;
    let bare = bare_proxy(upstream.addr).await;
    let client = client();
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    for (server, cached) in [(&bare, false), (&behind_cache, true)] {
        for method in methods.clone() {
            let path = format!("/items/7/{}?b=2&a=1&a=%20x&empty=", method.as_str());
            let body = format!("the {method} body");
            let response = client
                .request(method.clone(), server.url(&path))
                .header("x-custom", "kept as sent")
                .header("x-multi", "first")
                .header("x-multi", "second")
                .header("content-type", "text/plain")
                .header("x-want-status", "202")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let context = format!("{method} (behind the cache: {cached})");
            assert_eq!(response.status(), StatusCode::ACCEPTED, "{context}");
            let upstream_headers: Vec<_> = response
                .headers()
                .get_all("x-upstream")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            assert_eq!(upstream_headers, ["one", "two"], "{context}");
            assert_eq!(response.headers()["content-type"], "application/json");
            assert_eq!(response.headers()["via"], "1.1 strata", "{context}");
            let echoed_method = response.headers()["x-echo-method"]
                .to_str()
                .unwrap()
                .to_owned();
            let bytes = response.bytes().await.unwrap();
            if method == Method::HEAD {
                assert!(bytes.is_empty(), "{context}: a HEAD response has no body");
                // The cache layer fetches a GET to fill its entry when it
                // knows nothing about the URL yet (as Varnish does); the
                // bare proxy forwards the HEAD as it is.
                if cached {
                    assert!(
                        matches!(echoed_method.as_str(), "HEAD" | "GET"),
                        "{context}"
                    );
                } else {
                    assert_eq!(echoed_method, "HEAD", "{context}");
                }
                continue;
            }
            assert_eq!(echoed_method, method.as_str(), "{context}");
            let seen: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(seen["method"], method.as_str(), "{context}");
            assert_eq!(seen["path"], format!("/items/7/{method}"), "{context}");
            assert_eq!(seen["query"], "b=2&a=1&a=%20x&empty=", "{context}");
            assert_eq!(seen["body"], body, "{context}");
            assert_eq!(
                header_values(&seen, "x-custom"),
                ["kept as sent"],
                "{context}"
            );
            assert_eq!(
                header_values(&seen, "x-multi"),
                ["first", "second"],
                "{context}"
            );
            assert_eq!(
                header_values(&seen, "content-type"),
                ["text/plain"],
                "{context}"
            );
            assert_eq!(
                header_values(&seen, "content-length"),
                [body.len().to_string()],
                "{context}"
            );
            assert_eq!(
                header_values(&seen, "host"),
                [upstream.addr.to_string()],
                "{context}"
            );
        }
    }
}

/// The gateway is the proxy under strata's layer: the layer sees the GETs
/// (and, with no policy on a proxied response, stores nothing).
#[tokio::test]
async fn the_proxy_runs_under_the_cache_layer() {
    let upstream = upstream(Controls::default()).await;
    let (gateway, cache) = gateway(upstream.addr, ProxyOptions::default()).await;
    let client = client();
    for _ in 0..3 {
        let response = client.get(gateway.url("/page")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-echo-method"], "GET");
    }
    let stats = cache.handle().stats();
    assert_eq!(
        stats.hits + stats.misses + stats.bypasses,
        3,
        "the layer saw every GET: {stats:?}"
    );
    // The upstream says nothing about caching `/page` (no Cache-Control,
    // Expires or Last-Modified): under `CachePolicy::origin` nothing is
    // stored (integration/tests/gateway_cache.rs has the responses that are).
    assert_eq!(stats.stores, 0, "{stats:?}");
}

/// A base path in `UPSTREAM` prefixes every forwarded path.
#[tokio::test]
async fn an_upstream_base_path_prefixes_the_request_path() {
    let upstream = upstream(Controls::default()).await;
    let cache = Cache::builder().build();
    let base = Upstream::parse(&format!("http://{}/api/v2/", upstream.addr)).unwrap();
    let gateway = Server::start(proxy::gateway(base, &cache, ProxyOptions::default())).await;
    let seen: Value = client()
        .get(gateway.url("/users/1?full=yes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/api/v2/users/1");
    assert_eq!(seen["query"], "full=yes");
}

#[test]
fn upstream_urls_are_checked() {
    for good in [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        " http://backend/api/ ",
        "http://[::1]:8080",
    ] {
        assert!(Upstream::parse(good).is_ok(), "{good}");
    }
    assert_eq!(
        Upstream::parse("http://backend/api/").unwrap().to_string(),
        "http://backend/api"
    );
    for (bad, why) in [
        ("", "empty"),
        ("127.0.0.1:8000", "scheme"),
        ("localhost", "scheme"),
        ("https://backend", "https"),
        ("ftp://backend", "scheme"),
        ("http://user:secret@backend", "user info"),
        ("http://backend/?a=1", "query"),
        ("http://backend/#top", "fragment"),
        ("http:// spaces", "URL"),
    ] {
        let error = Upstream::parse(bad).unwrap_err().to_string();
        assert!(error.contains(why), "{bad:?}: {error}");
        assert!(error.contains("UPSTREAM"), "{bad:?}: {error}");
    }
}

// ----------------------------------------------------------------------------
// Headers
// ----------------------------------------------------------------------------

/// Hop-by-hop fields, and the field `Connection` names, stop at the
/// gateway on the way in; `Host` becomes the upstream's, the client's own
/// `X-Forwarded-*` are replaced by the gateway's (`X-Forwarded-For` is the
/// client's address: the gateway is the edge and trusts no client's list),
/// `X-Forwarded-Proto` says how the client asked (`X-Forwarded-Host` only
/// when configured), `Via` says who forwarded.
#[tokio::test]
async fn request_hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let upstream = upstream(Controls::default()).await;
    let (gateway, _cache) = gateway(upstream.addr, ProxyOptions::default()).await;
    let response = raw_exchange(
        gateway.addr,
        "POST /submit?x=1 HTTP/1.1\r\n\
         Host: client.example\r\n\
         Connection: keep-alive, X-Hop-Secret\r\n\
         X-Hop-Secret: do-not-forward\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         Trailer: X-Checksum\r\n\
         Upgrade: h2c\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         Authorization: Bearer end-to-end\r\n\
         X-Forwarded-For: 203.0.113.7, 198.51.100.2\r\n\
         X-Forwarded-Proto: https\r\n\
         Via: 1.0 edge\r\n\
         X-Custom: kept\r\n\
         Transfer-Encoding: chunked\r\n\
         \r\n\
         5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = response.json();
    for name in hop_by_hop().chain(["x-hop-secret"]) {
        assert!(
            header_values(&seen, name).is_empty(),
            "{name} reached the upstream: {seen}"
        );
    }
    assert_eq!(seen["body"], "hello", "a chunked body arrives whole");
    assert_eq!(header_values(&seen, "x-custom"), ["kept"]);
    assert_eq!(
        header_values(&seen, "authorization"),
        ["Bearer end-to-end"],
        "Authorization is end-to-end"
    );
    assert_eq!(header_values(&seen, "host"), [upstream.addr.to_string()]);
    assert_eq!(header_values(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_values(&seen, "x-forwarded-proto"), ["http"]);
    // Nothing about the client's host, unless configured (`FORWARDED_HOST`).
    assert!(
        header_values(&seen, "x-forwarded-host").is_empty(),
        "{seen}"
    );
    assert_eq!(header_values(&seen, "via"), ["1.0 edge", "1.1 strata"]);
}

/// The gateway writes `X-Forwarded-For` with the client's address; with
/// `preserve_host` the client's `Host` goes upstream.
#[tokio::test]
async fn forwarded_for_starts_with_the_client_and_preserve_host_keeps_host() {
    let upstream = upstream(Controls::default()).await;
    let options = ProxyOptions {
        preserve_host: true,
        ..ProxyOptions::default()
    };
    let (gateway, _cache) = gateway(upstream.addr, options).await;
    let response = raw_exchange(
        gateway.addr,
        "GET /where HTTP/1.1\r\nHost: shop.example:8443\r\n\r\n",
    )
    .await;
    let seen = response.json();
    assert_eq!(header_values(&seen, "host"), ["shop.example:8443"]);
    assert_eq!(
        header_values(&seen, "x-forwarded-host"),
        ["shop.example:8443"]
    );
    assert_eq!(header_values(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_values(&seen, "via"), ["1.1 strata"]);
}

/// On the way out too: the upstream's hop-by-hop fields and the field its
/// `Connection` names stop at the gateway; `Via` is added.
#[tokio::test]
async fn response_hop_by_hop_headers_are_removed() {
    let upstream = upstream(Controls::default()).await;
    let (gateway, _cache) = gateway(upstream.addr, ProxyOptions::default()).await;

    // First check that the upstream really sends them.
    let direct = raw_exchange(upstream.addr, "GET /hop HTTP/1.1\r\nHost: u\r\n\r\n").await;
    for name in [
        "x-hop-secret",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
    ] {
        assert!(direct.has(name), "the upstream sends {name}: {direct:?}");
    }

    // Keep-alive request: the gateway has no reason to add a Connection
    // header of its own, so any Connection seen would be the upstream's.
    let response = raw_exchange(gateway.addr, "GET /hop HTTP/1.1\r\nHost: g\r\n\r\n").await;
    assert_eq!(response.status, 200, "{response:?}");
    for name in hop_by_hop().chain(["x-hop-secret"]) {
        assert!(
            !response.has(name),
            "{name} reached the client: {response:?}"
        );
    }
    assert_eq!(response.header("x-end-to-end"), Some("kept"));
    assert_eq!(response.header("via"), Some("1.1 strata"));
    assert_eq!(response.body, b"hop");
}

// ----------------------------------------------------------------------------
// Streaming
// ----------------------------------------------------------------------------

/// A large response body reaches the client as the upstream sends it: the
/// client holds the first chunk while the upstream cannot have finished,
/// because the test has not given it the rest yet.
#[tokio::test]
async fn a_response_body_streams_through() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 32;
    let controls = Controls::default();
    let (feed, body) = mpsc::channel::<Bytes>(1);
    *controls.stream.lock().unwrap() = Some(body);
    let upstream = upstream(controls).await;
    let (gateway, _cache) = gateway(upstream.addr, ProxyOptions::default()).await;

    let chunk = |i: usize| Bytes::from(vec![b'a' + (i % 26) as u8; CHUNK]);
    feed.send(chunk(0)).await.unwrap();
    let mut response = within(
        "the response headers",
        client().get(gateway.url("/stream")).send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("content-length").is_none(),
        "a streamed body has no length"
    );
    let mut received = Vec::new();
    while received.len() < CHUNK {
        let piece = within("the first chunk", response.chunk()).await.unwrap();
        received.extend_from_slice(&piece.expect("the body goes on"));
    }
    assert_eq!(received.len(), CHUNK, "only the first chunk exists yet");
    assert!(!feed.is_closed(), "the upstream is still sending");

    for i in 1..CHUNKS {
        feed.send(chunk(i)).await.unwrap();
    }
    drop(feed);
    while let Some(piece) = within("the rest", response.chunk()).await.unwrap() {
        received.extend_from_slice(&piece);
    }
    assert_eq!(received.len(), CHUNK * CHUNKS);
    for (i, piece) in received.chunks(CHUNK).enumerate() {
        assert_eq!(piece, &chunk(i)[..], "chunk {i}");
    }
}

/// A request body reaches the upstream as the client sends it: the upstream
/// holds the first piece while the client has not sent the rest.
#[tokio::test]
async fn a_request_body_streams_through() {
    let controls = Controls::default();
    let (report, mut reports) = mpsc::unbounded_channel();
    *controls.upload.lock().unwrap() = Some(report);
    let upstream = upstream(controls).await;
    let (gateway, _cache) = gateway(upstream.addr, ProxyOptions::default()).await;

    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n\
              6\r\nfirst \r\n",
        )
        .await
        .unwrap();
    let mut first = Vec::new();
    while first.len() < 6 {
        let piece = within("the first piece upstream", reports.recv()).await;
        first.extend_from_slice(&piece.expect("upload reports"));
    }
    assert_eq!(first, b"first ", "the upstream has the first piece only");

    stream
        .write_all(b"7\r\nsecond \r\n5\r\nthird\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let response = within("the response", read_response(&mut reader)).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({ "bytes": 18, "body": "first second third" })
    );
}

// ----------------------------------------------------------------------------
// Failures
// ----------------------------------------------------------------------------

/// Nothing listening upstream: 502 with a short text; once the upstream is
/// up, the same gateway forwards again.
#[tokio::test]
async fn an_unreachable_upstream_is_502_until_it_comes_up() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let (gateway, _cache) = gateway(addr, ProxyOptions::default()).await;
    let client = client();

    for method in [Method::GET, Method::POST] {
        let response = client
            .request(method.clone(), gateway.url("/anything"))
            .body("lost")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{method}");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        assert_eq!(text, "502 Bad Gateway: upstream unreachable\n");
    }

    let listener = TcpListener::bind(addr).await.unwrap();
    let _upstream = Server::on(listener, upstream_app(Controls::default()));
    let response = client.get(gateway.url("/anything")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-echo-method"], "GET");
}

/// An upstream that breaks off or garbles its response head: 502; its next
/// good answer goes through.
#[tokio::test]
async fn an_upstream_failing_before_its_headers_is_502() {
    // A raw upstream: `/cut` gets half a head and a closed connection,
    // `/garbage` gets something that is not HTTP, the rest a good answer.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let raw_upstream = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                reader.read_line(&mut request_line).await.unwrap();
                let mut line = String::new();
                while reader.read_line(&mut line).await.unwrap() > 2 {
                    line.clear();
                }
                let answer: &[u8] = if request_line.contains("/cut") {
                    b"HTTP/1.1 200 OK\r\nContent-Len"
                } else if request_line.contains("/garbage") {
                    b"SPDY/9 banana\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                };
                let mut stream = reader.into_inner();
                stream.write_all(answer).await.unwrap();
                stream.shutdown().await.unwrap();
            });
        }
    });
    let (gateway, _cache) = gateway(addr, ProxyOptions::default()).await;
    let client = client();
    for path in ["/cut", "/garbage", "/cut"] {
        let response = client.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{path}");
        let text = response.text().await.unwrap();
        assert_eq!(
            text, "502 Bad Gateway: upstream failed before its response headers\n",
            "{path}"
        );
        let good = client.get(gateway.url("/fine")).send().await.unwrap();
        assert_eq!(good.status(), StatusCode::OK, "after {path}");
        assert_eq!(good.text().await.unwrap(), "ok");
    }
    raw_upstream.abort();
}

/// An upstream slower than the timeout: 504, and the gateway gives up the
/// upstream request (the upstream sees it go); other requests, during and
/// after, go through. The timeout is generous for a loaded test machine:
/// every request through this gateway is bound by it.
#[tokio::test]
async fn a_slow_upstream_is_504_and_the_gateway_goes_on() {
    let controls = Controls::default();
    let (events, mut slow_events) = mpsc::unbounded_channel();
    *controls.slow.lock().unwrap() = Some(events);
    let upstream = upstream(controls).await;
    let options = ProxyOptions {
        timeout: Duration::from_secs(1),
        ..ProxyOptions::default()
    };
    let (gateway, _cache) = gateway(upstream.addr, options).await;
    let client = client();

    let slow_get = tokio::spawn(client.get(gateway.url("/slow")).send());
    let slow_post = tokio::spawn(client.post(gateway.url("/slow")).body("x").send());
    let mut seen = Vec::new();
    while seen.iter().filter(|event| **event == "started").count() < 2 {
        let event = within("the slow handlers starting", slow_events.recv()).await;
        seen.push(event.unwrap());
    }
    let meanwhile = client.get(gateway.url("/fast")).send().await.unwrap();
    assert_eq!(meanwhile.status(), StatusCode::OK);

    for slow in [slow_get, slow_post] {
        let response = within("the 504", slow).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            response.text().await.unwrap(),
            "504 Gateway Timeout: upstream timed out\n"
        );
    }
    while seen.iter().filter(|event| **event == "dropped").count() < 2 {
        let event = within("the upstream requests dropped", slow_events.recv()).await;
        seen.push(event.unwrap());
    }

    for path in ["/after", "/slow-but-not-really"] {
        let response = client.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

/// Requests a proxy could choke on are answered, not panicked on.
#[tokio::test]
async fn odd_requests_are_answered() {
    let upstream = upstream(Controls::default()).await;
    let (gateway, _cache) = gateway(upstream.addr, ProxyOptions::default()).await;
    // Absolute form, as sent to a forward proxy: the path and query go on.
    let response = raw_exchange(
        gateway.addr,
        "GET http://elsewhere.example/abs?q=1 HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = response.json();
    assert_eq!(seen["path"], "/abs");
    assert_eq!(seen["query"], "q=1");
    assert_eq!(header_values(&seen, "host"), [upstream.addr.to_string()]);
    // `OPTIONS *` goes to the upstream as it is.
    let response = raw_exchange(gateway.addr, "OPTIONS * HTTP/1.1\r\nHost: g\r\n\r\n").await;
    assert!(response.status < 500, "{response:?}");
    // HTTP/1.0 without Host.
    let response = raw_exchange(gateway.addr, "GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = response.json();
    assert_eq!(header_values(&seen, "via"), ["1.0 strata"]);
    assert!(header_values(&seen, "x-forwarded-host").is_empty());
    // The gateway still works.
    let response = client().get(gateway.url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// `Connection` may come in several lines, any case, with empty list
/// elements; every field it names goes, with the fixed hop-by-hop list.
#[test]
fn remove_hop_by_hop_handles_lists_and_case() {
    let mut headers = HeaderMap::new();
    headers.append("connection", HeaderValue::from_static("Keep-Alive, X-A"));
    headers.append("connection", HeaderValue::from_static(" x-b ,,"));
    headers.insert("x-a", HeaderValue::from_static("1"));
    headers.insert("x-b", HeaderValue::from_static("2"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("x-c", HeaderValue::from_static("3"));
    strata::fields::remove_hop_by_hop(&mut headers);
    let left: Vec<_> = headers.keys().map(|name| name.as_str()).collect();
    assert_eq!(left, ["x-c"]);
}
