//! The load generator: hyper HTTP/1.1 client connections over tokio
//! `TcpStream`s, each sending requests back to back, on the caller's
//! (current-thread) runtime, which runs on another OS thread than the
//! server.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::contenders::{PATH, Shape};
use crate::server::{CpuProbe, CpuTimes, process_cpu_ns, thread_cpu_ns};

/// Errors of the client side.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// One response, whole.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Its status.
    pub(crate) status: StatusCode,
    /// Its headers.
    pub(crate) headers: HeaderMap,
    /// Its body.
    pub(crate) body: Bytes,
}

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The server.
    pub(crate) addr: SocketAddr,
    /// The request shape.
    pub(crate) shape: Shape,
    /// The validator [`Shape::Conditional`] sends.
    pub(crate) etag: Option<HeaderValue>,
}

/// Every request of [`Shape::Distinct`] gets its own number, across runs.
static DISTINCT: AtomicU64 = AtomicU64::new(0);

impl Target {
    fn request(&self, plain: &Uri) -> Request<Empty<Bytes>> {
        let uri = match self.shape {
            Shape::Distinct => {
                let n = DISTINCT.fetch_add(1, Ordering::Relaxed);
                Uri::try_from(format!("{PATH}?n={n}")).expect("a valid URI")
            }
            Shape::Plain | Shape::Conditional => plain.clone(),
        };
        let mut builder = Request::get(uri).header(HOST, HeaderValue::from_static("127.0.0.1"));
        if let (Shape::Conditional, Some(etag)) = (self.shape, &self.etag) {
            builder = builder.header(IF_NONE_MATCH, etag.clone());
        }
        builder.body(Empty::new()).expect("a valid request")
    }
}

/// Opens one HTTP/1.1 connection; its driver runs as a task.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request on `sender` and reads the whole response.
async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> Result<Fetched, Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Fetched {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// One request on a new connection (for the checks before a run).
pub(crate) async fn fetch(target: &Target) -> Result<Fetched, Error> {
    let mut sender = connect(target.addr).await?;
    send(&mut sender, target.request(&Uri::from_static(PATH))).await
}

/// How much load, for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Connections, each sending back to back.
    pub(crate) connections: usize,
    /// Unmeasured time first.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
}

/// What every measured response must be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected {
    /// Its status.
    pub(crate) status: StatusCode,
    /// Its body length.
    pub(crate) len: usize,
}

/// What the server side is watched with during the window.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    /// The server thread's CPU time.
    pub(crate) cpu: CpuProbe,
    /// The inner handler's call counter.
    pub(crate) calls: Arc<AtomicU64>,
    /// A redis-server whose CPU time counts too.
    pub(crate) redis_pid: Option<u32>,
}

/// The figures of one measured window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    /// Requests that started and finished within the window.
    pub(crate) requests: u64,
    /// Of those, responses with the wrong status or body length.
    pub(crate) wrong: u64,
    /// Connections that failed (they stop sending).
    pub(crate) errors: u64,
    /// The window's length as measured.
    pub(crate) window: Duration,
    /// Latency of each request in the window, microseconds, sorted.
    pub(crate) latencies_us: Vec<u32>,
    /// The server thread's CPU time in the window.
    pub(crate) server_cpu_ns: Option<u64>,
    /// Of which in user space (10 ms resolution).
    pub(crate) server_user_ns: Option<u64>,
    /// The client thread's CPU time in the window.
    pub(crate) client_cpu_ns: Option<u64>,
    /// The redis-server's (main thread) CPU time in the window.
    pub(crate) redis_cpu_ns: Option<u64>,
    /// Calls of the inner handler in the window.
    pub(crate) inner_calls: u64,
    /// Requests/s of each round, when merged from rounds.
    pub(crate) rounds_rps: Vec<f64>,
}

impl Measured {
    /// The rounds of one contender as one window: counts and CPU times
    /// add up, latencies pool; `rounds_rps` keeps each round's rate.
    pub(crate) fn merge(rounds: Vec<Measured>) -> Measured {
        let add = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        let mut total = Measured {
            server_cpu_ns: Some(0),
            server_user_ns: Some(0),
            client_cpu_ns: Some(0),
            redis_cpu_ns: Some(0),
            ..Measured::default()
        };
        let mut has_redis = false;
        for round in rounds {
            total.rounds_rps.push(round.rps());
            total.requests += round.requests;
            total.wrong += round.wrong;
            total.errors += round.errors;
            total.window += round.window;
            total.inner_calls += round.inner_calls;
            total.server_cpu_ns = add(total.server_cpu_ns, round.server_cpu_ns);
            total.server_user_ns = add(total.server_user_ns, round.server_user_ns);
            total.client_cpu_ns = add(total.client_cpu_ns, round.client_cpu_ns);
            has_redis |= round.redis_cpu_ns.is_some();
            total.redis_cpu_ns = add(total.redis_cpu_ns, round.redis_cpu_ns);
            total.latencies_us.extend(round.latencies_us);
        }
        if !has_redis {
            total.redis_cpu_ns = None;
        }
        total.latencies_us.sort_unstable();
        total
    }

    /// Requests per second.
    pub(crate) fn rps(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies, in microseconds.
    pub(crate) fn quantile_us(&self, q: f64) -> Option<u32> {
        let n = self.latencies_us.len();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64 * q).ceil() as usize).clamp(1, n);
        Some(self.latencies_us[rank - 1])
    }

    /// `ns` spread over the window's requests, in microseconds.
    pub(crate) fn per_request_us(&self, ns: Option<u64>) -> Option<f64> {
        let ns = ns?;
        (self.requests > 0).then(|| ns as f64 / 1000.0 / self.requests as f64)
    }

    /// Share of the window `ns` represents (1.0 = one core busy).
    pub(crate) fn busy(&self, ns: Option<u64>) -> Option<f64> {
        Some(ns? as f64 / self.window.as_nanos().max(1) as f64)
    }
}

/// One reading of the counters at a window edge.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    server: CpuTimes,
    client: Option<u64>,
    redis: Option<u64>,
    calls: u64,
}

async fn read(watch: &Watch) -> Reading {
    let server = watch.cpu.times().await;
    Reading {
        at: Instant::now(),
        server,
        client: thread_cpu_ns(),
        redis: watch.redis_pid.and_then(process_cpu_ns),
        calls: watch.calls.load(Ordering::Relaxed),
    }
}

fn delta(from: Option<u64>, to: Option<u64>) -> Option<u64> {
    Some(to?.saturating_sub(from?))
}

/// Per-connection figures, merged at the end.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    wrong: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// Runs `load` against `target`: `connections` connections send back to
/// back for `warmup + duration`; requests that start and finish inside the
/// measured window count. Must run on a current-thread runtime (the
/// connections share one tally).
pub(crate) async fn run(
    target: &Target,
    load: Load,
    expected: Expected,
    watch: &Watch,
) -> Measured {
    let from = tokio::time::Instant::now() + load.warmup;
    let until = from + load.duration;
    let tally = Rc::new(RefCell::new(Tally::default()));
    let local = tokio::task::LocalSet::new();
    for _ in 0..load.connections {
        let target = target.clone();
        let tally = Rc::clone(&tally);
        local.spawn_local(async move {
            let from = from.into_std();
            let until = until.into_std();
            let plain = Uri::from_static(PATH);
            let mut own = Tally::default();
            match connect(target.addr).await {
                Ok(mut sender) => loop {
                    let start = Instant::now();
                    if start >= until {
                        break;
                    }
                    match send(&mut sender, target.request(&plain)).await {
                        Ok(got) => {
                            let done = Instant::now();
                            if start >= from && done <= until {
                                own.requests += 1;
                                if got.status != expected.status || got.body.len() != expected.len {
                                    own.wrong += 1;
                                }
                                let us = done.duration_since(start).as_micros();
                                own.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                            }
                        }
                        Err(_) => {
                            own.errors += 1;
                            break;
                        }
                    }
                },
                Err(_) => own.errors += 1,
            }
            let mut tally = tally.borrow_mut();
            tally.requests += own.requests;
            tally.wrong += own.wrong;
            tally.errors += own.errors;
            tally.latencies_us.append(&mut own.latencies_us);
        });
    }
    let edges = local
        .run_until(async {
            tokio::time::sleep_until(from).await;
            let start = read(watch).await;
            tokio::time::sleep_until(until).await;
            let end = read(watch).await;
            (start, end)
        })
        .await;
    // Let every connection finish its last request.
    local.await;
    let (start, end) = edges;
    let mut tally = tally.take();
    tally.latencies_us.sort_unstable();
    Measured {
        requests: tally.requests,
        wrong: tally.wrong,
        errors: tally.errors,
        window: end.at.duration_since(start.at).max(load.duration),
        latencies_us: tally.latencies_us,
        server_cpu_ns: delta(start.server.on_cpu_ns, end.server.on_cpu_ns),
        server_user_ns: delta(start.server.user_ns, end.server.user_ns),
        client_cpu_ns: delta(start.client, end.client),
        redis_cpu_ns: delta(start.redis, end.redis),
        inner_calls: end.calls.saturating_sub(start.calls),
        rounds_rps: Vec::new(),
    }
}

/// The outcome of a stampede.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stampede {
    /// Connections opened.
    pub(crate) connected: usize,
    /// Responses with the expected status and body length.
    pub(crate) ok: usize,
    /// Other responses.
    pub(crate) wrong: usize,
    /// Failed connections or requests.
    pub(crate) errors: usize,
    /// From the first request sent to the last response read.
    pub(crate) elapsed: Duration,
    /// How often the inner handler ran (filled in by the caller).
    pub(crate) handler_runs: u64,
}

/// Opens `n` connections, then sends one request on each at once.
pub(crate) async fn stampede(addr: SocketAddr, n: usize, expected: Expected) -> Stampede {
    let mut outcome = Stampede::default();
    let mut connecting = JoinSet::new();
    for _ in 0..n {
        connecting.spawn(connect(addr));
    }
    let mut senders = Vec::with_capacity(n);
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(sender)) => senders.push(sender),
            _ => outcome.errors += 1,
        }
    }
    outcome.connected = senders.len();
    let target = Target {
        addr,
        shape: Shape::Plain,
        etag: None,
    };
    let plain = Uri::from_static(PATH);
    let started = Instant::now();
    let mut sending = JoinSet::new();
    for mut sender in senders {
        let request = target.request(&plain);
        sending.spawn(async move { send(&mut sender, request).await });
    }
    while let Some(joined) = sending.join_next().await {
        match joined {
            Ok(Ok(got)) if got.status == expected.status && got.body.len() == expected.len => {
                outcome.ok += 1;
            }
            Ok(Ok(_)) => outcome.wrong += 1,
            _ => outcome.errors += 1,
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}
