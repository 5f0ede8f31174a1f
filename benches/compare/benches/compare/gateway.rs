//! The reverse-proxy group: a static upstream (the 2 KiB body without
//! work, `Cache-Control: public, max-age=600`, an ETag and hyper's `Date`)
//! served directly, behind strata's gateway (`examples/gateway/proxy.rs`,
//! cache built as `examples/gateway.rs` builds it), and behind nginx
//! `proxy_cache` when nginx is installed.
//!
//! nginx runs as a child process on a config this module writes to a
//! temporary folder: one process (`master_process off`, `worker_processes
//! 1`), so that it has one thread serving like strata's current-thread
//! server. Its CPU time is read from `/proc/PID/stat` (`utime + stime`, in
//! ticks of 10 ms) at the edges of the measured window.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, DATE, ETAG};
use strata::{Cache, CachePolicy};

use crate::contenders::{Kind, PATH};
use crate::loadgen::{self, Expected, Fetched, Load, Measured, Target, Watch};
use crate::proxy::{self, ProxyOptions};
use crate::server::{App, CpuProbe, Server, process_cpu_ns};

/// The static upstream's validator.
const UPSTREAM_ETAG: &str = "\"strata-compare-2k\"";
/// How long nginx may take to listen.
const NGINX_START: Duration = Duration::from_secs(10);
/// Linux's `USER_HZ`: `/proc/PID/stat` counts CPU time in 1/100 s.
const NS_PER_TICK: u64 = 10_000_000;

/// A running contender: where it listens, what watches it, and what keeps
/// it up (dropped in field order: the front first, then the upstream).
#[derive(Debug)]
pub(crate) struct Running {
    /// Where the load goes.
    pub(crate) addr: SocketAddr,
    /// The serving thread's CPU probe. For nginx, the (idle) upstream's: its
    /// figure is replaced by the process's, see [`run`].
    pub(crate) cpu: CpuProbe,
    /// The handler's (or the upstream's) calls.
    pub(crate) calls: Arc<AtomicU64>,
    /// nginx's process id, whose CPU time is the server's.
    pub(crate) process: Option<u32>,
    front: Front,
    upstream: Option<Server>,
}

#[derive(Debug)]
enum Front {
    Server(Server),
    Nginx(Nginx),
}

impl Running {
    /// A contender served by one [`Server`].
    pub(crate) fn server(server: Server, calls: Arc<AtomicU64>) -> Self {
        Self {
            addr: server.addr,
            cpu: server.cpu_probe(),
            calls,
            process: None,
            front: Front::Server(server),
            upstream: None,
        }
    }

    /// Stops it (the front, then the upstream).
    pub(crate) fn stop(self) {
        let Self {
            front, upstream, ..
        } = self;
        match front {
            Front::Server(server) => drop(server),
            // Killed, its folder removed.
            Front::Nginx(nginx) => drop(nginx),
        }
        drop(upstream);
    }
}

/// The static upstream: `GET /api/materials/` answers `body` at once with
/// `Cache-Control`, `ETag` and (hyper's) `Date`, counting into `calls`.
fn upstream_app(body: Bytes, calls: Arc<AtomicU64>) -> App {
    App::Router(Router::new().route(
        PATH,
        get(move || {
            calls.fetch_add(1, Ordering::Relaxed);
            let body = body.clone();
            async move {
                (
                    [
                        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                        (
                            CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=600"),
                        ),
                        (ETAG, HeaderValue::from_static(UPSTREAM_ETAG)),
                    ],
                    body,
                )
            }
        }),
    ))
}

fn start_upstream(name: &str, body: Bytes, calls: &Arc<AtomicU64>) -> Server {
    let calls = Arc::clone(calls);
    Server::start(
        name,
        Box::new(move || Box::pin(async move { upstream_app(body, calls) })),
    )
}

/// Starts `kind` (one of [`Kind::in_gateway_group`]): the static upstream,
/// and the gateway or nginx in front of it. `Err` says why it is skipped
/// (nginx missing or failing to start).
pub(crate) fn start(kind: Kind, body: &Bytes) -> Result<Running, String> {
    let calls = Arc::new(AtomicU64::new(0));
    let upstream = start_upstream(&format!("{} upstream", kind.label()), body.clone(), &calls);
    match kind {
        Kind::Upstream => Ok(Running::server(upstream, calls)),
        Kind::Gateway => {
            let origin = proxy::Upstream::parse(&format!("http://{}", upstream.addr))
                .map_err(|e| e.to_string())?;
            let server = Server::start(
                kind.label(),
                Box::new(move || {
                    Box::pin(async move {
                        // As examples/gateway.rs builds it, memory store.
                        let cache = Cache::builder()
                            .prefix("compare", "gateway")
                            .default_policy(CachePolicy::origin())
                            .honour_request_directives(true)
                            .build();
                        App::Router(proxy::gateway(origin, &cache, ProxyOptions::default()))
                    })
                }),
            );
            Ok(Running {
                addr: server.addr,
                cpu: server.cpu_probe(),
                calls,
                process: None,
                front: Front::Server(server),
                upstream: Some(upstream),
            })
        }
        Kind::Nginx => {
            let nginx = Nginx::start(upstream.addr)?;
            Ok(Running {
                addr: nginx.addr,
                cpu: upstream.cpu_probe(),
                calls,
                process: Some(nginx.pid),
                front: Front::Nginx(nginx),
                upstream: Some(upstream),
            })
        }
        other => unreachable!("{other:?} is not in the gateway group"),
    }
}

/// Checks the first response of the group: the static upstream's headers
/// reach the client (through the gateway and nginx too).
pub(crate) fn verify_first(kind: Kind, first: &Fetched) -> Result<(), String> {
    if !kind.in_gateway_group() {
        return Ok(());
    }
    for name in [CACHE_CONTROL, ETAG, DATE] {
        if !first.headers.contains_key(&name) {
            return Err(format!("the first response has no {name} header"));
        }
    }
    Ok(())
}

/// Checks that the second response is the cache's hit by its own word:
/// `cache-status: strata; hit` from the gateway, `X-Cache-Status: HIT`
/// from nginx.
pub(crate) fn verify_hit(kind: Kind, second: &Fetched) -> Result<(), String> {
    let (name, wanted) = match kind {
        Kind::Gateway => ("cache-status", "strata; hit"),
        Kind::Nginx => ("x-cache-status", "HIT"),
        _ => return Ok(()),
    };
    match second.headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(value) if value.eq_ignore_ascii_case(wanted) => Ok(()),
        Some(value) => Err(format!("2nd response `{name}: {value}`, not `{wanted}`")),
        None => Err(format!("2nd response without {name}, not `{wanted}`")),
    }
}

/// [`loadgen::run`], and for a process (nginx) its CPU time read from
/// `/proc/PID/stat` at the window's edges as the server's: `utime + stime`
/// as the server CPU, `utime` as its user part. The main thread's exact
/// `schedstat` time lands in the `redis_cpu_ns` slot (shown as a note).
pub(crate) async fn run(
    target: &Target,
    load: Load,
    expected: Expected,
    watch: &Watch,
    process: Option<u32>,
) -> Measured {
    let Some(pid) = process else {
        return loadgen::run(target, load, expected, watch).await;
    };
    // Both start now: the edges fall on the load generator's window edges
    // (its `from` and `until` are computed from the same instant).
    let edges = async {
        let from = tokio::time::Instant::now() + load.warmup;
        tokio::time::sleep_until(from).await;
        let start = ProcessTimes::of(pid);
        tokio::time::sleep_until(from + load.duration).await;
        (start, ProcessTimes::of(pid))
    };
    let (mut measured, (start, end)) =
        tokio::join!(loadgen::run(target, load, expected, watch), edges);
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    measured.server_cpu_ns = delta(start.total_ns, end.total_ns);
    measured.server_user_ns = delta(start.user_ns, end.user_ns);
    measured.redis_cpu_ns = delta(start.main_thread_ns, end.main_thread_ns);
    measured
}

/// One reading of a process's CPU time.
#[derive(Debug, Clone, Copy)]
struct ProcessTimes {
    /// `utime + stime` of `/proc/PID/stat`, all threads, 10 ms ticks.
    total_ns: Option<u64>,
    /// `utime`.
    user_ns: Option<u64>,
    /// The main thread's `schedstat` time (exact).
    main_thread_ns: Option<u64>,
}

impl ProcessTimes {
    fn of(pid: u32) -> Self {
        let ticks = stat_ticks(pid);
        Self {
            total_ns: ticks.map(|(user, system)| (user + system) * NS_PER_TICK),
            user_ns: ticks.map(|(user, _)| user * NS_PER_TICK),
            main_thread_ns: process_cpu_ns(pid),
        }
    }
}

/// `(utime, stime)` of `/proc/PID/stat`, fields 14 and 15, in ticks.
fn stat_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: count fields after its `)`.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some((user, system))
}

/// The nginx binary: on `PATH`, else where the Debian package puts it
/// (`/usr/sbin`, not on every user's `PATH`).
fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|candidate| candidate.is_file())
}

/// A free port on 127.0.0.1 (another process may take it before nginx
/// binds it; then nginx fails to start and says so).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The config nginx runs with: one process, everything it writes in `dir`,
/// listening on `port`, caching `upstream` as `proxy_cache` does by the
/// upstream's `Cache-Control` (`proxy_cache_valid` for responses without).
pub(crate) fn nginx_config(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "\
# Written by strata's compare bench; one process, one thread serving.
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    # Measured here with 2 KiB bodies: sendfile off costs less CPU per hit
    # than on, and open_file_cache (which proxy_cache's files go through)
    # saves an open and a close per hit. nginx's best for this response.
    sendfile off;
    open_file_cache max=1000 inactive=60s;
    tcp_nodelay on;
    keepalive_timeout 75s;
    # The default (1000) closes each client connection after 1000 requests.
    keepalive_requests 1000000000;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=compare:10m max_size=64m inactive=60m use_temp_path=off;

    upstream static_upstream {{
        server {upstream};
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://static_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_cache compare;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"
    )
}

/// An nginx child process on its own config and folder. Dropping it
/// (unwinding from a panic included) kills it and removes the folder.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Its process id.
    pub(crate) pid: u32,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx in front of `upstream` and waits until it accepts
    /// connections. `Err` says why it is not measured (not installed, or
    /// it did not start: its error log).
    pub(crate) fn start(upstream: SocketAddr) -> Result<Nginx, String> {
        let Some(binary) = find_nginx() else {
            return Err(
                "nginx not found on PATH nor at /usr/sbin/nginx; install it with \
                 `apt-get install nginx` (Debian package) to measure it"
                    .to_owned(),
            );
        };
        static RUN: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strata-compare-nginx-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let config = dir.join("nginx.conf");
        std::fs::write(&config, nginx_config(&dir, port, upstream))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let child = Command::new(&binary)
            // `-e`: the error log before the config is read (the compiled-in
            // /var/log/nginx/error.log may not be writable).
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("{}: {e}", binary.display()));
            }
        };
        let mut nginx = Nginx {
            pid: child.id(),
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + NGINX_START;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nginx exited at start ({status}): {}", self.log()));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not listen within {} s: {}",
                    NGINX_START.as_secs(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The tail of its error log, on one line.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let mut out = String::new();
        for line in text
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let _ = write!(out, "{} ", line.trim());
        }
        out.trim_end().to_owned()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
