//! The reverse proxy behind `examples/gateway.rs`: a tower [`Service`] that
//! forwards every request to one HTTP/1.1 upstream through a pooled hyper
//! client, and [`gateway`], the axum `Router` that puts strata's cache layer
//! in front of it.
//!
//! What the proxy does to a message on its way through (RFC 9110 §7.6):
//!
//! - removes the hop-by-hop fields in both directions: `Connection` and
//!   every field it names, `Keep-Alive`, `Proxy-Connection`, `TE`,
//!   `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authenticate`,
//!   `Proxy-Authorization`;
//! - sends the upstream's authority as `Host` (or the client's `Host` with
//!   [`ProxyOptions::preserve_host`]), appends the client's address to
//!   `X-Forwarded-For`, sets `X-Forwarded-Proto` and `X-Forwarded-Host`,
//!   and appends `Via: 1.1 strata` to requests and responses;
//! - streams both bodies frame by frame: nothing is buffered here, so a
//!   body the cache does not store reaches the other side as it arrives;
//! - answers `502 Bad Gateway` when the upstream cannot be reached or fails
//!   before its response headers are complete, and `504 Gateway Timeout`
//!   when those headers take longer than [`ProxyOptions::timeout`]. A
//!   failure after the headers (the upstream dies mid-body) can no longer
//!   change the status: the client's connection is cut instead, so it sees
//!   a truncated body, never a complete-looking one.
//!
//! This module is shared: the example includes it with
//! `#[path = "gateway/proxy.rs"] mod proxy;`, and so does
//! `integration/tests/gateway.rs`.

// Shared by the example and the tests, each of which uses only part of it;
// `pub` marks the module's interface even though no crate root re-exports it.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use strata::fields::remove_hop_by_hop;
use strata::{Cache, CacheBuilder, CachePolicy, Disconnected, TargetedField};
use tower::Service;

/// How long the upstream may take to send its response headers when
/// `UPSTREAM_TIMEOUT_MS` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The gateway: [`Proxy`] to `upstream` as the fallback of an axum
/// `Router`, with `cache`'s layer in front of it.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so
/// that the client's address reaches `X-Forwarded-For`; without it the
/// proxy forwards `X-Forwarded-For` as the client sent it.
pub fn gateway(upstream: Upstream, cache: &Cache, options: ProxyOptions) -> Router {
    Router::new()
        .fallback_service(Proxy::new(upstream, options))
        // THE CACHE. Build `cache` with `options.cache_policy()` as its
        // default policy (as `main` does) and it stores what the upstream's
        // own headers allow; GET and HEAD are looked up, writes invalidate
        // their URLs.
        .layer(cache.layer())
        // Outside the cache: the request as both the cache and the proxy
        // see it, so a variant key never reads a field the upstream does
        // not get, nor misses one it does; and one access line per
        // request it lets through. One middleware: each costs a hit a
        // boxed future.
        .layer(axum::middleware::from_fn(client_request))
}

/// How long the upstream took to send its response headers, for the
/// access line (a response extension the proxy sets; absent on hits).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub Duration);

/// One `info` line per request (target `gateway::access`): method, path
/// (without the query, which may carry tokens), status, `Cache-Status`,
/// the upstream's time (`-` when the cache answered) and the total.
async fn logged(request: Request<Body>, next: axum::middleware::Next) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    let upstream_ms = response.extensions().get::<UpstreamTime>().map_or_else(
        || "-".to_owned(),
        |time| format!("{:.1}", time.0.as_secs_f64() * 1e3),
    );
    tracing::info!(
        target: "gateway::access",
        %method,
        path,
        status = response.status().as_u16(),
        cache_status,
        upstream_ms,
        total_ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
    );
    response
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, for `with_graceful_shutdown`:
/// requests in flight complete, new connections are refused.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The client's request made what the cache keys and the proxy forwards
/// (the one place for these rules; the cache and the proxy both see its
/// result):
///
/// - `Host`: taken from the URI's authority when absent (HTTP/2 sends
///   `:authority`), refused with `400` when it is not a valid `host[:port]`
///   (`Host: a"b<c>`), and normalised (lowercase, `:80` dropped), so one
///   host is one variant;
/// - the hop-by-hop fields and every field `Connection` names are removed:
///   the upstream never gets them, so no variant may be chosen by them
///   (`Connection: close, Accept-Language` must not put an English page
///   under French users' key);
/// - the client's own `X-Forwarded-For`, `X-Forwarded-Host`,
///   `X-Forwarded-Proto` and `Forwarded` are removed: the proxy writes the
///   gateway's own, and a client never speaks for the gateway.
async fn client_request(
    mut request: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    if !request.headers().contains_key(header::HOST)
        && let Some(host) = request
            .uri()
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    let headers = request.headers_mut();
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => {}
        (Some(host), None) => match normalized_host(host) {
            Some(Normalized::AsSent) => {}
            Some(Normalized::Rewritten(host)) => {
                headers.insert(header::HOST, host);
            }
            None => return error_response(StatusCode::BAD_REQUEST, "invalid Host"),
        },
        (Some(_), Some(_)) => return error_response(StatusCode::BAD_REQUEST, "more than one Host"),
    }
    remove_hop_by_hop(headers);
    remove_forwarding_fields(headers);
    if tracing::enabled!(target: "gateway::access", tracing::Level::INFO) {
        logged(request, next).await
    } else {
        next.run(request).await
    }
}

/// Removes `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`
/// and `Forwarded`: only the gateway speaks for the gateway.
fn remove_forwarding_fields(headers: &mut axum::http::HeaderMap) {
    for name in [
        &X_FORWARDED_FOR,
        &X_FORWARDED_HOST,
        &X_FORWARDED_PROTO,
        &FORWARDED,
    ] {
        headers.remove(name);
    }
}

/// `host` as one spelling of it: a valid `host[:port]` (RFC 9110 §7.2: an
/// authority without user info), lowercased, without the default port
/// `:80`; `None` when it is not one.
fn normalized_host(host: &HeaderValue) -> Option<Normalized> {
    let text = host.to_str().ok()?;
    if text.is_empty() || text.contains('@') {
        return None;
    }
    let authority: Authority = text.parse().ok()?;
    let name = authority.host();
    let name_ok = if let Some(literal) = name.strip_prefix('[') {
        literal
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    if !name_ok || authority.as_str().ends_with(':') {
        return None;
    }
    let default_port = authority.port_u16() == Some(80);
    if !default_port && !name.bytes().any(|b| b.is_ascii_uppercase()) {
        // The common case: already one spelling, nothing to allocate.
        return Some(Normalized::AsSent);
    }
    let mut normalized = name.to_ascii_lowercase();
    if let Some(port) = authority.port_u16().filter(|&port| port != 80) {
        normalized.push(':');
        normalized.push_str(&port.to_string());
    }
    HeaderValue::from_str(&normalized)
        .ok()
        .map(Normalized::Rewritten)
}

/// What [`normalized_host`] made of a valid `Host`.
enum Normalized {
    /// Already in its one spelling.
    AsSent,
    /// Rewritten (lowercased, `:80` dropped).
    Rewritten(HeaderValue),
}

/// How the proxy treats requests; [`Default`] is what the example uses when
/// the environment says nothing.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// How long the upstream may take to answer with its response headers
    /// (connecting included) before the client gets `504 Gateway Timeout`.
    /// The bodies are not bounded: a slow stream keeps flowing. Default
    /// [`DEFAULT_TIMEOUT`] (30 s).
    pub timeout: Duration,
    /// Send the client's `Host` to the upstream instead of the upstream's
    /// own authority. Default `false`.
    pub preserve_host: bool,
    /// What `X-Forwarded-Host` tells the upstream (see [`ForwardedHost`]).
    /// Default [`ForwardedHost::None`]: nothing, so nothing a client says
    /// about its host reaches the upstream outside the cache key.
    pub forwarded_host: ForwardedHost,
    /// Obey clients' request directives (`no-cache`, `max-age`,
    /// `max-stale`, ...). Default `false`, as CDNs do: otherwise any client
    /// can make the gateway refetch and replace a fresh entry at will.
    pub honour_request_directives: bool,
    /// The targeted cache-control fields the cache obeys, most specific
    /// first (RFC 9213). Default: `Strata-Cache-Control`, then
    /// `CDN-Cache-Control`, as a CDN-class cache.
    pub targeted_fields: Vec<TargetedField>,
    /// How stale a stored response may answer while the upstream cannot
    /// be reached (refused, failed or timed-out connections, a body cut
    /// short), unless it forbids that: then the client gets a 504 from the
    /// cache. Default [`DEFAULT_STALE_IF_DISCONNECTED`] (an hour), as
    /// Varnish's grace or nginx's `proxy_cache_use_stale error timeout`.
    pub stale_if_disconnected: Duration,
}

/// What the gateway tells the upstream about the host the client asked
/// for, in `X-Forwarded-Host` (origins that build absolute URLs read it:
/// Rails, Django with `USE_X_FORWARDED_HOST`, Express with `trust proxy`).
/// Whatever it tells is either fixed or part of the cache key, so no
/// client's made-up host is ever stored for another client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForwardedHost {
    /// Nothing (with [`ProxyOptions::preserve_host`], the client's host
    /// goes in `Host` and `X-Forwarded-Host`, and the cache varies on it).
    #[default]
    None,
    /// This value, whatever the client sent: one public site.
    Fixed(HeaderValue),
    /// The client's `Host`, validated and normalised; the cache then
    /// varies on `Host` (one variant per host, a hit costs one more
    /// lookup).
    Client,
}

/// The default [`ProxyOptions::stale_if_disconnected`]: an hour.
pub const DEFAULT_STALE_IF_DISCONNECTED: Duration = Duration::from_secs(3600);

impl ProxyOptions {
    /// The gateway's default cache policy: [`CachePolicy::origin`], so
    /// the upstream's headers decide what is stored. With
    /// [`preserve_host`](Self::preserve_host) the upstream may answer each
    /// `Host` differently (name-based virtual hosts), and the cache key
    /// holds the path and query only, so the policy also varies on `Host`:
    /// one host's pages are never served for another's.
    pub fn cache_policy(&self) -> CachePolicy {
        if self.preserve_host || self.forwarded_host == ForwardedHost::Client {
            CachePolicy::origin().vary(header::HOST)
        } else {
            CachePolicy::origin()
        }
    }

    /// `builder` set up as the gateway's cache: [`cache_policy`](Self::cache_policy)
    /// for every response, the [targeted fields](Self::targeted_fields)
    /// of a CDN-class cache, and stale answers while the upstream is out
    /// of reach ([`stale_if_disconnected`](Self::stale_if_disconnected)).
    pub fn configure(&self, builder: CacheBuilder) -> CacheBuilder {
        builder
            .default_policy(self.cache_policy())
            .targeted_fields(self.targeted_fields.iter().copied())
            .stale_if_disconnected(self.stale_if_disconnected)
            .honour_request_directives(self.honour_request_directives)
    }
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            preserve_host: false,
            forwarded_host: ForwardedHost::None,
            honour_request_directives: false,
            targeted_fields: vec![TargetedField::Strata, TargetedField::Cdn],
            stale_if_disconnected: DEFAULT_STALE_IF_DISCONNECTED,
        }
    }
}

/// Where requests go: an `http://host[:port][/base]` URL, checked once by
/// [`Upstream::parse`]. A request for `/x?y` goes to `{base}/x?y`.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without its trailing `/`; empty for the root.
    base_path: String,
    /// `Host` as the upstream expects it: the authority.
    host: HeaderValue,
}

/// Why an `UPSTREAM` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUpstream(String);

impl fmt::Display for InvalidUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for InvalidUpstream {}

impl Upstream {
    /// Parses an absolute `http://` URL with a host, an optional port and an
    /// optional base path; no user info, query or fragment. `https` is
    /// refused: the example's client speaks plain HTTP/1.1 (put a TLS
    /// terminator in front of a TLS upstream, or add a TLS connector).
    ///
    /// ```text
    /// http://127.0.0.1:8000        -> /a?b goes to http://127.0.0.1:8000/a?b
    /// http://backend/api/          -> /a?b goes to http://backend/api/a?b
    /// ```
    pub fn parse(text: &str) -> Result<Self, InvalidUpstream> {
        let text = text.trim();
        let invalid = |why: &str| InvalidUpstream(format!("UPSTREAM={text:?}: {why}"));
        if text.is_empty() {
            return Err(invalid("empty; expected a URL like http://127.0.0.1:8000"));
        }
        let uri: Uri = text
            .parse()
            .map_err(|_| invalid("not a URL; expected one like http://127.0.0.1:8000"))?;
        match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP => {}
            Some(scheme) if *scheme == Scheme::HTTPS => {
                return Err(invalid(
                    "https is not supported (this gateway's client speaks plain HTTP/1.1)",
                ));
            }
            Some(_) => return Err(invalid("the scheme must be http")),
            None => return Err(invalid("missing http:// scheme")),
        }
        let Some(authority) = uri.authority().cloned() else {
            return Err(invalid("missing host"));
        };
        if authority.as_str().contains('@') {
            return Err(invalid("user info is not supported"));
        }
        if authority.host().is_empty() {
            return Err(invalid("missing host"));
        }
        if uri.query().is_some() || text.contains('#') {
            return Err(invalid("a query or fragment is not supported"));
        }
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| invalid("bad host"))?;
        Ok(Self {
            scheme: Scheme::HTTP,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            host,
        })
    }

    /// The upstream URL for a request's target (origin form `/path?query`,
    /// or absolute form, of which only the path and query are kept).
    pub fn uri_for(&self, target: &Uri) -> Option<Uri> {
        let path_and_query = target.path_and_query().map_or("/", PathAndQuery::as_str);
        // `OPTIONS *` asks about the server as a whole: ask the upstream's.
        let path_and_query = if path_and_query == "*" && self.base_path.is_empty() {
            "*".to_owned()
        } else if path_and_query.starts_with('/') {
            format!("{}{path_and_query}", self.base_path)
        } else {
            format!("{}/{path_and_query}", self.base_path)
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .ok()
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// The reverse proxy as a tower [`Service`]: it never fails (its errors
/// are `502`/`504` responses), so it drops into `Router::fallback_service`
/// and under strata's layer. Clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: Client<HttpConnector, Body>,
    upstream: Upstream,
    options: ProxyOptions,
}

impl Proxy {
    /// A proxy to `upstream` with its own pool of keep-alive connections.
    pub fn new(upstream: Upstream, options: ProxyOptions) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self {
            shared: Arc::new(Shared {
                client,
                upstream,
                options,
            }),
        }
    }

    /// Forwards one request and returns the upstream's response, or the
    /// `502`/`504` that stands for it.
    pub async fn forward(&self, request: Request<Body>) -> Response<Body> {
        let shared = &self.shared;
        let method = request.method().clone();
        let Some(request) = shared.upstream_request(request) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "cannot forward this request target",
            );
        };
        // Logged without the query, which may carry tokens.
        let path = request.uri().path().to_owned();
        let started = std::time::Instant::now();
        // A GET or HEAD without content can be sent again as it was: kept,
        // in case a pooled connection the upstream had closed fails it.
        let replay = (matches!(method, axum::http::Method::GET | axum::http::Method::HEAD)
            && !request.headers().contains_key(header::CONTENT_LENGTH)
            && !request.headers().contains_key(header::TRANSFER_ENCODING))
        .then(|| (request.uri().clone(), request.headers().clone()));
        let sent = tokio::time::timeout(shared.options.timeout, async {
            match shared.client.request(request).await {
                // Not a refused connection: the request went out on a pooled
                // connection the upstream closed meanwhile (its idle timeout
                // raced ours). Idempotent and whole at hand: once more, on a
                // fresh connection.
                Err(error) if !error.is_connect() && replay.is_some() => {
                    tracing::debug!(
                        target: "gateway", %method, %path, error = %ErrorChain(&error),
                        "upstream connection failed; retrying once"
                    );
                    let (uri, headers) = replay.unwrap_or_default();
                    let mut again = Request::new(Body::empty());
                    *again.method_mut() = method.clone();
                    *again.uri_mut() = uri;
                    *again.headers_mut() = headers;
                    shared.client.request(again).await
                }
                other => other,
            }
        });
        let mut response = match sent.await {
            Ok(Ok(response)) => downstream_response(response.map(Body::new)),
            Ok(Err(error)) => {
                tracing::warn!(
                    target: "gateway", %method, %path, error = %ErrorChain(&error),
                    "upstream failed"
                );
                let message = if error.is_connect() {
                    "upstream unreachable"
                } else {
                    "upstream failed before its response headers"
                };
                disconnected(error_response(StatusCode::BAD_GATEWAY, message))
            }
            Err(_elapsed) => {
                let timeout_ms = shared.options.timeout.as_millis();
                tracing::warn!(
                    target: "gateway", %method, %path, timeout_ms, "upstream timed out"
                );
                disconnected(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream timed out",
                ))
            }
        };
        response
            .extensions_mut()
            .insert(UpstreamTime(started.elapsed()));
        response
    }
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The pool grows on demand; there is nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let proxy = self.clone();
        Box::pin(async move { Ok(proxy.forward(request).await) })
    }
}

impl Shared {
    /// The request as the upstream gets it, or `None` when its target
    /// cannot be expressed as an upstream URL.
    fn upstream_request(&self, request: Request<Body>) -> Option<Request<Body>> {
        let (mut parts, body) = request.into_parts();
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        // An HTTP/1.1 client names the host in `Host`; an absolute-form or
        // HTTP/2 target carries it in the URI.
        let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            let authority = parts.uri.authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        let client_version = parts.version;

        parts.uri = self.upstream.uri_for(&parts.uri)?;
        parts.version = Version::HTTP_11;
        // Nothing the client side attached (connection info, routing data)
        // concerns the upstream connection.
        parts.extensions = Default::default();

        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        let host = match client_host.clone() {
            Some(host) if self.options.preserve_host => host,
            _ => self.upstream.host.clone(),
        };
        headers.insert(header::HOST, host);
        // The gateway's own forwarding fields, never the client's: what
        // the upstream learns about the client is what the cache keys by
        // (see `ProxyOptions::forwarded_host`).
        remove_forwarding_fields(headers);
        if let Some(ip) = client_ip
            && let Ok(ip) = HeaderValue::from_str(&ip.to_string())
        {
            headers.insert(X_FORWARDED_FOR, ip);
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        let told = match &self.options.forwarded_host {
            ForwardedHost::Fixed(fixed) => Some(fixed.clone()),
            ForwardedHost::Client => client_host,
            ForwardedHost::None if self.options.preserve_host => client_host,
            ForwardedHost::None => None,
        };
        if let Some(host) = told {
            headers.insert(X_FORWARDED_HOST, host);
        }
        headers.append(header::VIA, via_value(client_version));
        Some(Request::from_parts(parts, body))
    }
}

/// The upstream's response as the client gets it: the same status, the
/// end-to-end headers plus `Via`, the body streamed as it arrives.
fn downstream_response(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    parts.headers.append(header::VIA, via_value(parts.version));
    // The client talks to this server, not to the upstream: answer in the
    // client's connection's version (the server picks it), not the
    // upstream's (an HTTP/1.0 upstream would otherwise close every client
    // connection after one response).
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, body)
}

/// `Via`'s entry for a message received in `version`: the protocol
/// version and this proxy's pseudonym (RFC 9110 §7.6.3), `1.1 strata`.
fn via_value(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 strata",
        Version::HTTP_10 => "1.0 strata",
        Version::HTTP_2 => "2 strata",
        Version::HTTP_3 => "3 strata",
        _ => "1.1 strata",
    })
}

/// Marks a response that stands for an upstream out of reach, so the
/// cache may answer with a stale copy instead, or with its own 504.
fn disconnected(mut response: Response<Body>) -> Response<Body> {
    response.extensions_mut().insert(Disconnected);
    response
}

/// A short plain-text error response from the gateway itself.
fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("{} {reason}: {message}\n", status.as_u16());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An error and its sources on one line: hyper's own messages
/// ("client error (Connect)") say little without their causes.
struct ErrorChain<'a>(&'a dyn StdError);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}
