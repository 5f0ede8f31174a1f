//! A contender served on 127.0.0.1 by `axum::serve`, on a current-thread
//! tokio runtime in its own OS thread, with a probe that reads that thread's
//! CPU time.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::thread::JoinHandle;

use axum::Router;
use axum::serve::ListenerExt;
use strata::CachedRouter;
use tokio::sync::{mpsc, oneshot};

/// What a server runs: an axum `Router` (caches inside it) or the routes
/// behind strata's `CachedRouter`.
#[derive(Debug)]
pub(crate) enum App {
    /// A `Router`, served as `axum::serve(listener, router)`.
    Router(Router),
    /// A `CachedRouter`, served through `into_make_service`.
    Cached(CachedRouter),
}

/// Builds an [`App`] on the server's runtime (stores that talk to Redis
/// must be built there).
pub(crate) type Build = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = App>>> + Send>;

/// A running server. Dropping it stops the runtime (connections and all).
#[derive(Debug)]
pub(crate) struct Server {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    probe: mpsc::UnboundedSender<oneshot::Sender<CpuTimes>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A cheap handle that asks the server thread for its CPU time.
#[derive(Debug, Clone)]
pub(crate) struct CpuProbe {
    probe: mpsc::UnboundedSender<oneshot::Sender<CpuTimes>>,
}

impl CpuProbe {
    /// The server thread's CPU times, read by a task on the server's own
    /// runtime. Empty when /proc cannot tell or the server is gone.
    pub(crate) async fn times(&self) -> CpuTimes {
        let (tx, rx) = oneshot::channel();
        if self.probe.send(tx).is_err() {
            return CpuTimes::default();
        }
        rx.await.unwrap_or_default()
    }
}

impl Server {
    /// Starts a server thread that builds its app with `build` and serves it.
    pub(crate) fn start(name: &str, build: Build) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (probe, mut probes) = mpsc::unbounded_channel::<oneshot::Sender<CpuTimes>>();
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("server {name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(async move {
                    let app = build().await;
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1");
                    addr_tx
                        .send(listener.local_addr().expect("local address"))
                        .expect("report the address");
                    tokio::spawn(async move {
                        while let Some(reply) = probes.recv().await {
                            let _ = reply.send(CpuTimes::of_this_thread());
                        }
                    });
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    let serve = async move {
                        let result = match app {
                            App::Router(router) => axum::serve(listener, router).await,
                            App::Cached(cached) => {
                                axum::serve(listener, cached.into_make_service()).await
                            }
                        };
                        if let Err(error) = result {
                            eprintln!("server stopped: {error}");
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = stop => {}
                    }
                });
                // Dropping the runtime drops every connection task.
            })
            .expect("spawn the server thread");
        let addr = addr_rx.recv().expect("the server thread started");
        Server {
            addr,
            probe,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// A handle that reads the server thread's CPU time.
    pub(crate) fn cpu_probe(&self) -> CpuProbe {
        CpuProbe {
            probe: self.probe.clone(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// CPU times of one thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTimes {
    /// Nanoseconds on a CPU (`schedstat`, exact).
    pub(crate) on_cpu_ns: Option<u64>,
    /// Of which in user space, in nanoseconds (`stat`'s `utime`, counted in
    /// ticks of 10 ms, so only meaningful over many requests).
    pub(crate) user_ns: Option<u64>,
}

impl CpuTimes {
    /// The calling thread's.
    pub(crate) fn of_this_thread() -> Self {
        Self {
            on_cpu_ns: thread_cpu_ns(),
            user_ns: thread_user_ns(),
        }
    }
}

/// Nanoseconds the calling thread has spent in user space: field 14
/// (`utime`) of `/proc/thread-self/stat`, in clock ticks of 1/100 s
/// (`USER_HZ` is 100 on Linux).
fn thread_user_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name may hold spaces: count fields after its `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(11)?.parse().ok()?;
    Some(ticks * 10_000_000)
}

/// Nanoseconds the calling thread has spent on a CPU (first field of
/// `/proc/thread-self/schedstat`).
pub(crate) fn thread_cpu_ns() -> Option<u64> {
    first_field("/proc/thread-self/schedstat")
}

/// Nanoseconds the main thread of process `pid` has spent on a CPU.
pub(crate) fn process_cpu_ns(pid: u32) -> Option<u64> {
    first_field(&format!("/proc/{pid}/schedstat"))
}

fn first_field(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
