//! Run with: `UPSTREAM=http://127.0.0.1:8000 BIND=127.0.0.1:8002 cargo run --release --example gateway`
//!
//! A caching reverse proxy in front of any HTTP/1.1 service, the way Varnish
//! sits in front of a backend: every method, path and query goes to
//! `UPSTREAM` through a pooled hyper client, hop-by-hop headers are removed
//! in both directions, `X-Forwarded-For`/`-Proto`/`-Host` and
//! `Via: 1.1 strata` are added, and bodies stream through as they arrive.
//! strata's cache layer wraps the proxy (see `gateway/proxy.rs`, `gateway`).
//!
//! The cache's default policy is [`strata::CachePolicy::origin`]: what it stores,
//! for how long and under which tags is what the upstream's own headers say
//! (RFC 9111 as a shared cache: `s-maxage`, `max-age`, `Expires`, heuristic
//! freshness from `Last-Modified`, `Age`, `Vary`, `private`, `no-store`,
//! the `Authorization` rule, `stale-while-revalidate` and `stale-if-error`,
//! `Strata-Cache-Control`, then `CDN-Cache-Control` as a CDN-class cache,
//! `Surrogate-Key` and `Cache-Tag`). A successful
//! write drops its URL and the same-origin `Location` and
//! `Content-Location` URLs. Clients' request directives (`no-cache`,
//! `max-age`, `min-fresh`, `max-stale`, `only-if-cached`) are obeyed only
//! with `HONOUR_REQUEST_DIRECTIVES=true`. A stale entry with validators is
//! revalidated upstream with them, and a 304 refreshes it; `no-cache`
//! responses with validators are stored and revalidated before every use.
//! While the upstream is out of reach (refused, failed or timed-out
//! connections, a body cut short) a stale copy answers for up to an hour,
//! unless it forbids that (then: 504).
//!
//! No client can poison it: the client's `Host` is validated (400
//! otherwise), normalised and part of the key whenever it is told
//! upstream (`X-Forwarded-Host`, see `FORWARDED_HOST`); the client's own `X-Forwarded-*` and
//! `Forwarded`, hop-by-hop fields and the fields `Connection` names are
//! removed before the cache sees the request. A GET on a pooled upstream
//! connection the upstream had closed is retried once on a fresh one.
//! Each request logs one `info` access line (target `gateway::access`:
//! method, path without the query, status, `Cache-Status`, upstream and
//! total time); `RUST_LOG` filters. SIGTERM and Ctrl-C stop accepting and
//! let requests in flight complete.
//!
//! # Environment
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `UPSTREAM` | required | `http://host[:port][/base]`; a request for `/x?y` goes to `{base}/x?y` |
//! | `BIND` | `127.0.0.1:8002` | address to listen on |
//! | `UPSTREAM_TIMEOUT_MS` | `30000` | how long the upstream may take to send its response headers before the client gets `504` |
//! | `PRESERVE_HOST` | `false` | `true`: send the client's `Host` upstream instead of the upstream's authority |
//! | `FORWARDED_HOST` | none | what `X-Forwarded-Host` tells the upstream: unset, nothing (with `PRESERVE_HOST=true`, the client's host); a host name, that fixed value; `client`, the client's `Host` (validated, normalised), and the cache then varies on `Host`. A client's made-up host never reaches another client |
//! | `HONOUR_REQUEST_DIRECTIVES` | `false` | `true`: obey clients' `Cache-Control` request directives (`no-cache`, `max-age`, `max-stale`, `only-if-cached`, ...); off, as on CDNs, so no client can make the gateway refetch and replace a fresh entry |
//! | `STALE_IF_DISCONNECTED_S` | `3600` | how stale a stored copy may answer while the upstream is out of reach (`0`: never); copies that forbid it get a 504 instead |
//! | `CACHE_ENV` | `development` | the key prefix's environment (`gateway:<env>:`) |
//! | `USE_REDIS_CACHE` | off | `true`: memory in front of Redis (tiered store) |
//! | `REDIS_URL` | none | the Redis to use with `USE_REDIS_CACHE=true`, e.g. `redis://127.0.0.1:6379/1` |
//!
//! The other `strata::Config::from_env` variables apply too (`CACHE_APP`,
//! default `gateway` here; `REDIS_CLUSTER_URLS`; `CACHE_MEMORY_BYTES`;
//! `CACHE_MAX_BODY_BYTES`).
//!
//! A missing or invalid setting (`UPSTREAM=https://..`, `UPSTREAM=foo`,
//! `UPSTREAM_TIMEOUT_MS=soon`) stops the gateway at start with a message
//! and exit code 2. The upstream being down is not a start error: requests
//! get `502 Bad Gateway` until it answers, and `504 Gateway Timeout` when
//! it takes longer than `UPSTREAM_TIMEOUT_MS`.
//!
//! # A curl session
//!
//! ```text
//! $ UPSTREAM=http://127.0.0.1:8000 cargo run --release --example gateway
//! gateway listening on http://127.0.0.1:8002, upstream http://127.0.0.1:8000, timeout 30000 ms, cache store memory (key prefix gateway:development:)
//! $ curl -si localhost:8002/some/path?q=1            # whatever the upstream answers, plus
//! via: 1.1 strata
//! $ curl -si -X POST localhost:8002/items -d '{"a":1}' # every method, body streamed
//! $ curl -si localhost:8002/                         # upstream stopped
//! HTTP/1.1 502 Bad Gateway
//!
//! 502 Bad Gateway: upstream unreachable
//! ```

#[path = "gateway/proxy.rs"]
mod proxy;

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::http::HeaderValue;
use proxy::{ForwardedHost, ProxyOptions, Upstream};
use strata::{Cache, Config};

/// What the environment asks for, checked before anything starts.
#[derive(Debug)]
struct Settings {
    bind: String,
    upstream: Upstream,
    options: ProxyOptions,
    config: Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    // `RUST_LOG` as usual (`RUST_LOG=strata=debug` shows every decision
    // and invalidation); `info` otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = match settings_from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(2);
        }
    };
    // A store that cannot be built (a malformed REDIS_URL) is a setting
    // error too; a Redis that is down is not (the store starts without it).
    let cache = match strata::redis::store_from_config(&settings.config) {
        Ok(store) => settings
            .options
            .configure(settings.config.builder())
            .store(store)
            .build(),
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(2);
        }
    };
    match run(settings, &cache).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

fn settings_from_env() -> Result<Settings, Box<dyn Error>> {
    let upstream = std::env::var("UPSTREAM")
        .map_err(|_| "UPSTREAM is not set; e.g. UPSTREAM=http://127.0.0.1:8000")?;
    let upstream = Upstream::parse(&upstream)?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8002".to_owned());
    let timeout = match std::env::var("UPSTREAM_TIMEOUT_MS") {
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(format!(
                    "UPSTREAM_TIMEOUT_MS={value:?} is not a positive number of milliseconds"
                )
                .into());
            }
        },
        Err(_) => proxy::DEFAULT_TIMEOUT,
    };
    let preserve_host = match std::env::var("PRESERVE_HOST") {
        Ok(value) => parse_bool("PRESERVE_HOST", &value)?,
        Err(_) => false,
    };
    let forwarded_host = match std::env::var("FORWARDED_HOST") {
        Ok(value) if value.trim() == "client" => ForwardedHost::Client,
        Ok(value) if value.trim().is_empty() => ForwardedHost::None,
        Ok(value) => ForwardedHost::Fixed(
            HeaderValue::from_str(value.trim())
                .map_err(|_| format!("FORWARDED_HOST={value:?} is not a valid header value"))?,
        ),
        Err(_) => ForwardedHost::None,
    };
    let stale_if_disconnected = match std::env::var("STALE_IF_DISCONNECTED_S") {
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => {
                return Err(format!(
                    "STALE_IF_DISCONNECTED_S={value:?} is not a whole number of seconds"
                )
                .into());
            }
        },
        Err(_) => proxy::DEFAULT_STALE_IF_DISCONNECTED,
    };
    let honour_request_directives = match std::env::var("HONOUR_REQUEST_DIRECTIVES") {
        Ok(value) => parse_bool("HONOUR_REQUEST_DIRECTIVES", &value)?,
        Err(_) => false,
    };
    let mut config = Config::from_env()?;
    if std::env::var_os("CACHE_APP").is_none() {
        config.app = "gateway".to_owned();
    }
    Ok(Settings {
        bind,
        upstream,
        options: ProxyOptions {
            timeout,
            preserve_host,
            forwarded_host,
            honour_request_directives,
            stale_if_disconnected,
            ..ProxyOptions::default()
        },
        config,
    })
}

async fn run(settings: Settings, cache: &Cache) -> Result<(), Box<dyn Error>> {
    let Settings {
        bind,
        upstream,
        options,
        config,
    } = settings;
    let timeout_ms = options.timeout.as_millis();
    let app = proxy::gateway(upstream.clone(), cache, options);

    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|error| {
            format!("cannot listen on {bind} (set BIND to another address): {error}")
        })?;
    println!(
        "gateway listening on http://{}, upstream {upstream}, timeout {timeout_ms} ms, \
         cache store {} (key prefix {})",
        listener.local_addr()?,
        store_description(&config),
        config.key_prefix(),
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(proxy::shutdown_signal())
    .await?;
    Ok(())
}

fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{name}={value:?} is not a boolean")),
    }
}

/// The store in words, for the start line.
fn store_description(config: &Config) -> String {
    if !config.use_redis {
        return "memory".to_owned();
    }
    match config.redis_url.as_deref() {
        Some(url) if config.redis_cluster_urls.is_empty() => {
            format!("memory + Redis at {}", redact(url))
        }
        _ => format!(
            "memory + Redis Cluster ({} nodes)",
            config.redis_cluster_urls.len()
        ),
    }
}

/// The URL without a password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
