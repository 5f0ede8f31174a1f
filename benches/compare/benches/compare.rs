//! strata beside the other Rust HTTP caches for tower, over real sockets.
//!
//! One handler (a 2 KiB JSON body, 2 ms of simulated work with
//! `tokio::time::sleep`, `Cache-Control: public, max-age=600`) is served
//! on 127.0.0.1 by `axum::serve` on a current-thread tokio runtime in its
//! own OS thread, behind, in turn:
//!
//! - no cache, with a handler that returns the pre-built bytes without
//!   work (the **ceiling**), and no cache with the real handler;
//! - strata with its memory store: a hit with `Router::layer(cache.layer())`
//!   and with `CachedRouter` (the cache in front of routing), a `304` (the
//!   request carries the stored ETag in `If-None-Match`) in both
//!   placements, and a miss (a new query string on every request);
//! - strata with a `TieredStore` whose memory layer admits nothing, so
//!   every hit reads Redis (a redis-server the bench starts on a free port);
//! - `axum-response-cache` 0.5, `tower-http-cache` 0.6 (in-memory backend)
//!   and `http-cache-tower-server` 0.2 (moka manager), each configured as
//!   its documentation says to cache this response for 600 s: a hit, and a
//!   304 when the crate answers conditional requests;
//! - a static upstream (the same body without work, plus an ETag and
//!   `Date`) served directly (that group's ceiling), behind strata's
//!   gateway (`examples/gateway/proxy.rs`, `CachePolicy::origin`, on the
//!   same current-thread server), and behind nginx `proxy_cache` when
//!   `nginx` is installed (a child process on a config the bench writes to
//!   a temporary folder: one process, one worker; its CPU time is its
//!   process's `utime + stime`). Without nginx the line says how to
//!   install it (`apt-get install nginx`).
//!
//! Before each run the bench checks the contender: a full 2 KiB body, and
//! for a cache that the second request did not reach the handler (a
//! cache that does not cache shows up in the notes and in the inner-call
//! column, it is not hidden).
//!
//! The load generator runs on the main thread, on a current-thread
//! runtime: hyper HTTP/1.1 client connections (32 by default), each sending
//! requests back to back; after a warm-up, the requests that start and end
//! in the measured window count. It records every latency, the server
//! thread's CPU time over the window (`/proc/thread-self/schedstat`, read
//! by a task on the server's runtime), the client thread's, and the inner
//! handler's calls. On a 2-core machine the client is usually the
//! bottleneck, so the server's CPU time per request is the figure that
//! separates the contenders; the table shows both.
//!
//! Then: `redis-benchmark -t get -d 2048` against the same redis-server
//! (when it is on `PATH`) as the reference of the tiered L2 hit, the
//! targets, and a stampede: for each cache, 1 000 connections send their
//! first request at once to a 100 ms handler on a fresh cache, and the
//! bench counts how often the handler ran.
//!
//! The chart of requests/s and CPU per request goes to
//! `docs/img/compare.svg`.
//!
//! ```sh
//! cargo bench -p strata-compare --bench compare -- --quick   # 1 s + 3 s per contender
//! cargo bench -p strata-compare --bench compare              # 2 s + 10 s per contender
//! ```
//!
//! Options (after `--`): `--quick`, `--warmup S`, `--duration S`,
//! `--connections N` (32), `--stampede N` (1000), `--no-stampede`,
//! `--chart PATH`, `--filter TEXT` (only contenders whose name contains
//! TEXT, or one of its `|`-separated parts: `--filter 'gateway|nginx'`).
//!
//! `cargo test --all-targets` runs bench targets without `--bench`: then
//! this prints a line and returns.

#[path = "compare/chart.rs"]
mod chart;
#[path = "compare/contenders.rs"]
mod contenders;
#[path = "compare/gateway.rs"]
mod gateway;
#[path = "compare/loadgen.rs"]
mod loadgen;
#[path = "compare/options.rs"]
mod options;
#[path = "../../../examples/gateway/proxy.rs"]
mod proxy;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::ETAG;
use strata_testkit::RedisServer;
use tokio::runtime::Runtime;

use contenders::{Contender, Kind, Shape};
use gateway::Running;
use loadgen::{Expected, Fetched, Load, Measured, Target, Watch};
use options::Options;
use report::{Outcome, Row};
use server::Server;

/// The simulated work of the measured handler.
const WORK: Duration = Duration::from_millis(2);
/// The simulated work of the stampede handler.
const STAMPEDE_WORK: Duration = Duration::from_millis(100);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "compare: a load benchmark, run it with `cargo bench -p strata-compare --bench compare -- --quick`"
        );
        return;
    }
    let root = workspace_root();
    let options = match Options::parse(&args, root.join("docs/img/compare.svg")) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let body = contenders::json_body();
    let redis = RedisServer::start();

    println!(
        "# strata compare\n\n{} connections, {:.1} s warm-up + {:.1} s measured per contender \
         in {} interleaved rounds; server: axum::serve on a current-thread runtime in its own thread; client: hyper \
         HTTP/1.1 on a current-thread runtime on the main thread; {} CPUs.\n",
        options.connections,
        options.warmup.as_secs_f64(),
        options.duration.as_secs_f64(),
        options.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let selected: Vec<Contender> = contenders::all()
        .into_iter()
        .filter(|c| options.selects(&c.name()))
        .collect();
    let rows = measure_all(&client, &selected, &body, &options, redis.as_ref());

    let redis_get = match &redis {
        Some(server) if options.selects("tiered") => {
            let seconds = options.duration.as_secs_f64().min(5.0);
            match report::redis_benchmark(server, options.connections, seconds) {
                Ok(rps) => Some(rps),
                Err(why) => {
                    println!("redis-benchmark: {why}");
                    None
                }
            }
        }
        _ => None,
    };

    println!("\n## Throughput\n");
    print!("{}", report::table(&rows));
    if let Some(rps) = redis_get {
        let tiered = rows
            .iter()
            .find(|r| r.contender.kind == Kind::StrataTiered)
            .and_then(Row::measured)
            .map(|m| m.rps());
        println!(
            "\nredis-benchmark GET, 2 KiB value, {} clients, same redis-server: {} req/s{}",
            options.connections,
            report::thousands(rps.round() as u64),
            tiered.map_or_else(String::new, |t| format!(
                "; strata tiered L2 hit ÷ that: {:.2}x",
                t / rps
            )),
        );
    }
    println!("\n## Targets\n");
    print!("{}", report::targets(&rows, redis_get));

    if !options.no_stampede {
        println!(
            "\n## Stampede: {} concurrent first requests, 100 ms handler, fresh cache\n",
            options.stampede
        );
        let results: Vec<_> = contenders::STAMPEDE
            .into_iter()
            .filter(|kind| options.selects(kind.label()))
            .map(|kind| {
                (
                    kind,
                    stampede(&client, kind, &body, &options, redis.as_ref()),
                )
            })
            .collect();
        print!("{}", report::stampede_table(&results, options.stampede));
    }

    let subtitle = format!(
        "{} connections, {:.0} s per contender",
        options.connections,
        options.duration.as_secs_f64()
    );
    match chart::write(&options.chart, &rows, &subtitle) {
        Ok(()) => println!("\nchart: {}", shown(&options.chart, &root)),
        Err(why) => println!("\nchart not written: {why}"),
    }
}

/// The workspace root: two folders above this package.
fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `path` relative to `root` when it is inside it.
fn shown(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The line of a contender that is not measured.
fn not_measured(contender: Contender, outcome: &Outcome) {
    let name = contender.name();
    match outcome {
        Outcome::NotApplicable(why) => println!("{name}: n/a, {why}"),
        Outcome::Skipped(why) => println!("{name}: skipped, {why}"),
        Outcome::Measured(_) => {}
    }
}

/// A contender whose server runs and passed its checks.
#[derive(Debug)]
struct Ready {
    running: Running,
    target: Target,
    expected: Expected,
    watch: Watch,
}

/// Starts `contender`'s server and checks it. Returns the server ready to
/// measure, or the row that says why it is not measured, and the note of
/// the checks.
fn prepare(
    client: &Runtime,
    contender: Contender,
    body: &Bytes,
    redis: Option<&RedisServer>,
) -> (Result<Ready, Outcome>, String) {
    let kind = contender.kind;
    if kind == Kind::StrataTiered && redis.is_none() {
        let why = Outcome::Skipped("redis-server not found".to_owned());
        return (Err(why), String::new());
    }
    let running = if kind.in_gateway_group() {
        match gateway::start(kind, body) {
            Ok(running) => running,
            Err(why) => return (Err(Outcome::Skipped(why)), String::new()),
        }
    } else {
        let calls = Arc::new(AtomicU64::new(0));
        let work = if matches!(kind, Kind::Ceiling | Kind::CeilingHeaders) {
            Duration::ZERO
        } else {
            WORK
        };
        let server = Server::start(
            &contender.name(),
            contenders::build(
                kind,
                body.clone(),
                Arc::clone(&calls),
                work,
                redis.map(RedisServer::url),
            ),
        );
        Running::server(server, calls)
    };
    let mut target = Target {
        addr: running.addr,
        shape: contender.shape,
        etag: None,
    };
    let note = match client.block_on(check(contender, &mut target, body, &running.calls)) {
        Ok(note) => note,
        Err(outcome) => return (Err(outcome), String::new()),
    };
    let expected = Expected {
        status: contender.status(),
        len: if contender.status() == StatusCode::OK {
            body.len()
        } else {
            0
        },
    };
    let watch = Watch {
        cpu: running.cpu.clone(),
        calls: Arc::clone(&running.calls),
        redis_pid: redis
            .filter(|_| kind == Kind::StrataTiered)
            .and_then(RedisServer::pid),
    };
    let ready = Ready {
        running,
        target,
        expected,
        watch,
    };
    (Ok(ready), note)
}

/// Checks every selected contender, then measures them in `rounds`
/// interleaved rounds, in turn forwards and backwards (A B C, C B A, ...),
/// so that a drift of the machine's speed, within a round or across
/// rounds, spreads over all of them instead of favouring the last ones.
fn measure_all(
    client: &Runtime,
    contenders: &[Contender],
    body: &Bytes,
    options: &Options,
    redis: Option<&RedisServer>,
) -> Vec<Row> {
    let mut prepared = Vec::new();
    for &contender in contenders {
        let (ready, note) = prepare(client, contender, body, redis);
        match &ready {
            Ok(_) => println!("checked {}: {note}", contender.name()),
            Err(outcome) => not_measured(contender, outcome),
        }
        prepared.push((contender, ready, note, Vec::new()));
    }
    let rounds = options.rounds.max(1);
    let load = Load {
        connections: options.connections,
        warmup: options.warmup / rounds,
        duration: options.duration / rounds,
    };
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for index in order {
            let (contender, ready, _, results) = &mut prepared[index];
            let Ok(ready) = ready else { continue };
            let measured = client.block_on(gateway::run(
                &ready.target,
                load,
                ready.expected,
                &ready.watch,
                ready.running.process,
            ));
            println!(
                "  {}: {} req/s, server {} µs/req, inner calls {} / {} requests",
                contender.name(),
                report::thousands(measured.rps().round() as u64),
                measured
                    .per_request_us(measured.server_cpu_ns)
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
                measured.inner_calls,
                measured.requests,
            );
            results.push(measured);
        }
    }
    prepared
        .into_iter()
        .map(|(contender, ready, note, results)| {
            let outcome = match ready {
                Ok(ready) => {
                    ready.running.stop();
                    Outcome::Measured(Measured::merge(results))
                }
                Err(outcome) => outcome,
            };
            Row {
                contender,
                outcome,
                note,
            }
        })
        .collect()
}

/// The cache's own word on a response: `cache-status` or `x-cache`.
fn cache_header(got: &Fetched) -> String {
    ["cache-status", "x-cache", "x-cache-status"]
        .iter()
        .find_map(|name| {
            got.headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!("`{name}: {v}`"))
        })
        .unwrap_or_else(|| "no cache header".to_owned())
}

/// Checks, before measuring, that the contender serves the 2 KiB body and
/// that a cache answers the measured request without the handler. Returns
/// a note for the table, or why the case cannot be measured. Fills the
/// target's ETag for conditional requests.
async fn check(
    contender: Contender,
    target: &mut Target,
    body: &Bytes,
    calls: &AtomicU64,
) -> Result<String, Outcome> {
    let failed = |why: String| Outcome::Skipped(format!("check failed: {why}"));
    let plain = Target {
        shape: if contender.shape == Shape::Distinct {
            Shape::Distinct
        } else {
            Shape::Plain
        },
        ..target.clone()
    };
    let first = loadgen::fetch(&plain)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if first.status != StatusCode::OK || first.body != *body {
        return Err(failed(format!(
            "first response {} with {} bytes, not 200 with the 2 KiB body",
            first.status,
            first.body.len()
        )));
    }
    gateway::verify_first(contender.kind, &first).map_err(failed)?;
    if !contender.kind.is_cache() {
        return Ok("200 with the 2 KiB body".to_owned());
    }
    let before = calls.load(Ordering::Relaxed);
    let second = loadgen::fetch(&plain)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let reached = calls.load(Ordering::Relaxed) - before;
    if second.status != StatusCode::OK || second.body != *body {
        return Err(failed(format!(
            "second response {} with {} bytes, not 200 with the 2 KiB body",
            second.status,
            second.body.len()
        )));
    }
    gateway::verify_hit(contender.kind, &second).map_err(failed)?;
    let mut note = match (contender.shape, reached) {
        (Shape::Distinct, 0) => "**a new URL did not reach the handler**".to_owned(),
        (Shape::Distinct, _) => format!("new URL: handler called, {}", cache_header(&second)),
        (_, 0) if contender.kind.in_gateway_group() => {
            format!(
                "2nd request: upstream not called, {}",
                cache_header(&second)
            )
        }
        (_, 0) => format!("2nd request: handler not called, {}", cache_header(&second)),
        (_, n) => format!(
            "**not cached: the 2nd request called the handler ({n}x)**, {}",
            cache_header(&second)
        ),
    };
    if contender.shape == Shape::Conditional {
        let Some(etag) = second.headers.get(ETAG).cloned() else {
            return Err(Outcome::NotApplicable(
                "the cached response has no ETag and the crate has no conditional-request support"
                    .to_owned(),
            ));
        };
        target.etag = Some(etag.clone());
        let before = calls.load(Ordering::Relaxed);
        let revalidated = loadgen::fetch(target)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if revalidated.status != StatusCode::NOT_MODIFIED {
            return Err(Outcome::NotApplicable(format!(
                "answers {} to a matching If-None-Match",
                revalidated.status
            )));
        }
        if !revalidated.body.is_empty() {
            return Err(failed("the 304 has a body".to_owned()));
        }
        let reached = calls.load(Ordering::Relaxed) - before;
        note = format!(
            "304 for `If-None-Match: {}`, handler {}, {}",
            etag.to_str().unwrap_or("?"),
            if reached == 0 {
                "not called"
            } else {
                "**called**"
            },
            cache_header(&revalidated)
        );
    }
    Ok(note)
}

/// Sends the stampede to a fresh `kind` cache in front of a 100 ms
/// handler; returns the outcome and how often the handler ran.
fn stampede(
    client: &Runtime,
    kind: Kind,
    body: &Bytes,
    options: &Options,
    redis: Option<&RedisServer>,
) -> Result<loadgen::Stampede, String> {
    if kind == Kind::StrataTiered && redis.is_none() {
        return Err("redis-server not found".to_owned());
    }
    let calls = Arc::new(AtomicU64::new(0));
    let server = Server::start(
        kind.label(),
        contenders::build(
            kind,
            body.clone(),
            Arc::clone(&calls),
            STAMPEDE_WORK,
            redis.map(RedisServer::url),
        ),
    );
    let expected = Expected {
        status: StatusCode::OK,
        len: body.len(),
    };
    let mut outcome = client.block_on(loadgen::stampede(server.addr, options.stampede, expected));
    drop(server);
    outcome.handler_runs = calls.load(Ordering::Relaxed);
    Ok(outcome)
}
