//! The gateway test harness: an upstream this test starts, answering
//! `/r/{name}` with the headers its query asks for, a gateway (the strata
//! layer and the proxy) in front of it, both on 127.0.0.1, sharing a mock
//! clock; and a client. Used by `gateway_cache.rs` and `gateway_rfc.rs`.

#![allow(dead_code, unreachable_pub)]

#[path = "../../../examples/gateway/proxy.rs"]
pub mod proxy;

pub use std::collections::HashMap;
pub use std::net::SocketAddr;
pub use std::sync::atomic::{AtomicBool, Ordering};
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use axum::Router;
pub use axum::extract::{Request, State};
pub use axum::http::{HeaderMap, HeaderValue, StatusCode};
pub use axum::response::{IntoResponse, Response};
pub use axum::routing::any;
pub use proxy::{ProxyOptions, Upstream};
pub use strata::{Cache, Clock, MockClock};
pub use tokio::net::TcpListener;
pub use tokio::task::JoinHandle;

/// What the upstream shares with the test.
#[derive(Clone)]
pub struct Origin {
    pub clock: MockClock,
    pub calls: Arc<Mutex<HashMap<String, usize>>>,
    pub failing: Arc<AtomicBool>,
    /// Answer GETs 200 ms late (real time), so a refresh stays in flight.
    pub slow: Arc<AtomicBool>,
    /// Answer GETs with a 200 whose body breaks off after its first chunk
    /// (the connection is dropped before a complete response).
    pub broken: Arc<AtomicBool>,
}

impl Origin {
    pub fn calls(&self, path: &str) -> usize {
        self.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

pub fn http_date(at: std::time::SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap()
}

pub fn offset(at: std::time::SystemTime, seconds: &str) -> std::time::SystemTime {
    let seconds: i64 = seconds.parse().unwrap();
    if seconds >= 0 {
        at + Duration::from_secs(seconds.unsigned_abs())
    } else {
        at - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// The query's pairs (only `%20` is decoded: the tests need no more).
pub fn asked(request: &Request) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.replace("%20", " ")))
        .collect()
}

pub async fn upstream_handler(State(origin): State<Origin>, request: Request) -> Response {
    let ask = asked(&request);
    let path = request.uri().path().to_owned();
    let call = {
        let mut calls = origin.calls.lock().unwrap();
        let count = calls.entry(path.clone()).or_default();
        *count += 1;
        *count
    };
    if request.method() == "POST" {
        let mut headers = HeaderMap::new();
        if let Some(location) = ask.get("location") {
            headers.insert("location", HeaderValue::from_str(location).unwrap());
        }
        if let Some(location) = ask.get("clocation") {
            headers.insert("content-location", HeaderValue::from_str(location).unwrap());
        }
        return (StatusCode::CREATED, headers, "created").into_response();
    }
    if origin.broken.load(Ordering::SeqCst) && request.method() == "GET" {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
            Ok(bytes::Bytes::from_static(b"the first part, then ")),
            Err(std::io::Error::other("the origin went away")),
        ];
        let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
        return (StatusCode::OK, [("cache-control", "max-age=60")], body).into_response();
    }
    if origin.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if origin.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let now = origin.clock.now();
    let mut headers = HeaderMap::new();
    headers.insert("date", http_date(now));
    // `etag=V`: this ETag, and 304 to a request that carries it;
    // `etag=each`: a new ETag on every call (the resource keeps changing).
    if let Some(etag) = ask.get("etag") {
        let etag = if etag == "each" {
            format!("\"c{call}\"")
        } else {
            format!("\"{etag}\"")
        };
        let matches = request
            .headers()
            .get("if-none-match")
            .is_some_and(|value| value.to_str().unwrap() == etag);
        headers.insert("etag", HeaderValue::from_str(&etag).unwrap());
        headers.insert("x-call", HeaderValue::from(call));
        if matches {
            // `nmetag=W`: the 304 names another response than the one
            // whose ETag the request carried.
            if let Some(other) = ask.get("nmetag") {
                headers.insert(
                    "etag",
                    HeaderValue::from_str(&format!("\"{other}\"")).unwrap(),
                );
            }
            if let Some(cc) = ask.get("cc") {
                headers.insert("cache-control", HeaderValue::from_str(cc).unwrap());
            }
            // `rollcookie=1`: the 304 rolls the client's session (its
            // request's `Cookie`) into a `Set-Cookie`, as rolling sessions
            // and balancer stickiness do.
            if ask.contains_key("rollcookie") {
                let cookie = request
                    .headers()
                    .get("cookie")
                    .map_or("none", |v| v.to_str().unwrap());
                headers.insert(
                    "set-cookie",
                    HeaderValue::from_str(&format!("rolled={cookie}")).unwrap(),
                );
            }
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
    }
    // `lmfixed=1`: no ETag, a fixed `Last-Modified`, and 304 to an
    // `If-Modified-Since` at or after it.
    if ask.contains_key("lmfixed") {
        let modified = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        headers.insert("last-modified", http_date(modified));
        headers.insert("x-call", HeaderValue::from(call));
        let since = request
            .headers()
            .get("if-modified-since")
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
        if !request.headers().contains_key("if-none-match") && since.is_some_and(|s| s >= modified)
        {
            if let Some(cc) = ask.get("cc") {
                headers.insert("cache-control", HeaderValue::from_str(cc).unwrap());
            }
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
    }
    let mut set = |name: &'static str, value: &str| {
        headers.insert(name, HeaderValue::from_str(value).unwrap());
    };
    for (query, header) in [
        ("cc", "cache-control"),
        ("scc", "strata-cache-control"),
        ("cdn", "cdn-cache-control"),
        ("age", "age"),
        ("vary", "vary"),
        ("sk", "surrogate-key"),
        ("ct", "cache-tag"),
        ("cs", "cache-status"),
    ] {
        if let Some(value) = ask.get(query) {
            set(header, value);
        }
    }
    if let Some(raw) = ask.get("rawexpires") {
        set("expires", raw);
    }
    // `age2=N`: a second `Age` field line after the one `age` sets.
    if let Some(second) = ask.get("age2") {
        headers.append("age", HeaderValue::from_str(second).unwrap());
    }
    if let Some(seconds) = ask.get("expires") {
        headers.insert("expires", http_date(offset(now, seconds)));
    }
    // `dateoffset=N`: the upstream's clock is N seconds off.
    if let Some(seconds) = ask.get("dateoffset") {
        headers.insert("date", http_date(offset(now, seconds)));
    }
    if let Some(seconds) = ask.get("lm") {
        headers.insert("last-modified", http_date(offset(now, seconds)));
    }
    if ask.contains_key("cookie") {
        headers.insert("set-cookie", HeaderValue::from_static("session=abc"));
    }
    // `lower`: dates in lower case, which caches should still read
    // (RFC 9111 §4.2).
    if ask.contains_key("lower") {
        for name in ["date", "expires", "last-modified"] {
            if let Some(value) = headers.get(name) {
                let lower = value.to_str().unwrap().to_ascii_lowercase();
                headers.insert(name, HeaderValue::from_str(&lower).unwrap());
            }
        }
    }
    let status = ask.get("status").map_or(StatusCode::OK, |s| {
        StatusCode::from_u16(s.parse().unwrap()).unwrap()
    });
    let lang = request
        .headers()
        .get("accept-language")
        .map_or("-", |v| v.to_str().unwrap());
    let encoding = request
        .headers()
        .get("accept-encoding")
        .map_or("-", |v| v.to_str().unwrap());
    let host = request
        .headers()
        .get("host")
        .map_or("-", |v| v.to_str().unwrap());
    // What the upstream was told of the client's host, as an origin that
    // builds absolute URLs from it writes it into the page.
    let forwarded_host = request
        .headers()
        .get_all("x-forwarded-host")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect::<Vec<_>>()
        .join("|");
    let body = format!(
        "call {call} of {path} lang={lang} enc={encoding} host={host} \
         <script src=\"http://{forwarded_host}/app.js\">"
    );
    // `chunked=N`: the body padded to N bytes and sent in three chunks,
    // with no `Content-Length` (chunked transfer coding on the wire).
    if let Some(size) = ask.get("chunked") {
        let size: usize = size.parse().unwrap();
        let mut padded = body.into_bytes();
        padded.resize(size.max(padded.len()), b'.');
        let third = padded.len() / 3;
        let mut rest = bytes::Bytes::from(padded);
        let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> =
            vec![Ok(rest.split_to(third)), Ok(rest.split_to(third)), Ok(rest)];
        let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
        return (status, headers, body).into_response();
    }
    (status, headers, body).into_response()
}

pub struct Served {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(router: Router) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, service).await.unwrap();
    });
    Served { addr, task }
}

pub struct Setup {
    pub origin: Origin,
    pub upstream: Served,
    pub relay: Relay,
    pub gateway: Served,
    pub cache: Cache,
    pub client: reqwest::Client,
}

pub async fn setup() -> Setup {
    setup_with(true).await
}

/// A gateway whose cache obeys clients' request directives, or not.
pub async fn setup_with(honour_request_directives: bool) -> Setup {
    setup_full(honour_request_directives, ProxyOptions::default()).await
}

pub async fn setup_full(honour_request_directives: bool, options: ProxyOptions) -> Setup {
    let origin = Origin {
        clock: MockClock::new(),
        calls: Arc::default(),
        failing: Arc::default(),
        slow: Arc::default(),
        broken: Arc::default(),
    };
    let upstream = serve(
        Router::new()
            .route("/{*path}", any(upstream_handler))
            .with_state(origin.clone()),
    )
    .await;
    let cache = options
        .configure(Cache::builder())
        .clock(origin.clock.clone())
        .honour_request_directives(honour_request_directives)
        .build();
    // The gateway reaches the upstream through a relay that a test can cut.
    let relay = Relay::start(upstream.addr).await;
    let target = Upstream::parse(&format!("http://{}", relay.addr)).unwrap();
    let gateway = serve(proxy::gateway(target, &cache, options)).await;
    Setup {
        origin,
        upstream,
        relay,
        gateway,
        cache,
        client: reqwest::Client::new(),
    }
}

/// A TCP relay in front of the upstream: [`cut`](Self::cut) closes its
/// listener and every connection through it, so the upstream becomes
/// unreachable (connections refused, pooled ones closed) as when its host
/// goes away.
pub struct Relay {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Relay {
    pub async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<tokio::task::JoinSet<()>>> = Arc::default();
        let spawner = Arc::clone(&tasks);
        tasks.lock().unwrap().spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                spawner.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, tasks }
    }

    /// Closes the listener and every relayed connection.
    pub fn cut(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// What a client saw.
#[derive(Debug)]
pub struct Seen {
    pub status: StatusCode,
    pub cache_status: String,
    pub age: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Setup {
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Seen {
        let mut request = self
            .client
            .get(format!("http://{}{url}", self.gateway.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        Seen {
            status: response.status(),
            cache_status: header("cache-status"),
            age: header("age"),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> Seen {
        self.get_with(url, &[]).await
    }

    pub fn advance(&self, seconds: u64) {
        self.origin.clock.advance(Duration::from_secs(seconds));
    }

    /// GETs `url` twice: a stored miss, then a hit with the same body.
    pub async fn stored(&self, url: &str) -> Seen {
        let miss = self.get(url).await;
        assert!(
            miss.cache_status.ends_with("stored"),
            "{url}: {}",
            miss.cache_status
        );
        let hit = self.get(url).await;
        assert_eq!(hit.cache_status, "strata; hit", "{url}");
        assert_eq!(hit.body, miss.body, "{url}");
        hit
    }

    /// GETs `url` twice: neither stored, both reach the upstream.
    pub async fn not_stored(&self, url: &str, detail: &str) {
        let path = url.split('?').next().unwrap();
        let before = self.origin.calls(path);
        for _ in 0..2 {
            let seen = self.get(url).await;
            assert!(
                seen.cache_status.ends_with(&format!("detail={detail}")),
                "{url}: {}",
                seen.cache_status
            );
        }
        assert_eq!(self.origin.calls(path), before + 2, "{url}");
    }
}
