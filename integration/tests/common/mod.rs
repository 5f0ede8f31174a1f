//! Shared test support: serve a router on a real socket and talk to it
//! with a real HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An axum app served on `127.0.0.1:0` until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Binds a free port and serves `app` on it.
    pub async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("server runs");
        });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("client");
        Self { addr, client, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A GET request builder for `path`.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// A GET as user `user` (the `x-user` header, see [`user_from_header`]).
    pub fn get_as(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.get(path).header("x-user", user)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The user resolver the tests configure: the `x-user` request header.
pub fn user_from_header(parts: &http::request::Parts) -> Option<String> {
    parts
        .headers
        .get("x-user")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Counts calls of a handler.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A header's value as a string, or "" when absent.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The status and headers of a response, as a body-less response, so a
/// test can read the body and still look at the headers.
pub fn clone_head(response: &reqwest::Response) -> reqwest::Response {
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    reqwest::Response::from(builder.body(Vec::<u8>::new()).unwrap())
}

/// GETs `path`; returns the response's head and its body as text.
pub async fn get_text(server: &TestServer, path: &str) -> (reqwest::Response, String) {
    let response = server.get(path).send().await.unwrap();
    let head = clone_head(&response);
    (head, response.text().await.unwrap())
}

/// Counts requests as they reach the server, before the cache sees them
/// (only those for `path`, when given).
pub fn count_arrivals(router: Router, path: Option<&'static str>, arrivals: &Calls) -> Router {
    use axum::extract::Request;
    use axum::middleware::{self, Next};

    let arrivals = arrivals.clone();
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let arrivals = arrivals.clone();
        async move {
            if path.is_none_or(|path| request.uri().path() == path) {
                arrivals.hit();
            }
            next.run(request).await
        }
    }))
}

/// A cache on a mock clock that resolves users from `x-user`.
pub fn mock_cache() -> (strata::Cache, strata::MockClock) {
    let clock = strata::MockClock::new();
    let cache = strata::Cache::builder()
        .clock(clock.clone())
        .user(user_from_header)
        .build();
    (cache, clock)
}

/// Collects what a `tracing_subscriber::fmt` subscriber writes, for tests
/// that read the logs.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
