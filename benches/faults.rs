//! The demo under Redis faults: three instances of `examples/thebot/app.rs`
//! in one process, each an axum server on its own loopback socket with its
//! own cache on a `TieredStore` (its own memory L1) over ONE real
//! `redis-server` started here (strata-testkit), and all three on ONE
//! SQLite file, so a write through one instance is what the others'
//! database returns. Traffic runs at a fixed rate through phases: a
//! baseline without a fault, then one phase per fault, each fault followed
//! by a quiet recovery period.
//!
//! ```sh
//! cargo bench -p strata-bench --bench faults -- --quick      # 5 phases of 12 s
//! cargo bench -p strata-bench --bench faults                 # 5 phases of 30 s
//! ```
//!
//! Options (after `--`): `--quick`, `--phase-secs S` (30; quick 12),
//! `--vus N` (readers per instance, 4), `--interval-ms MS` (25: each reader
//! starts a request every 25 ms), `--write-ms MS` (150: one write every
//! 150 ms overall), `--db-ms MS` (5: the cost of one query, small so the
//! database is not the bottleneck), `--seed N`.
//!
//! # Traffic
//!
//! - Readers: 3 instances x `--vus` readers. Each reader, every interval,
//!   picks an instance at random and reads `GET /api/materials/{id}/` of
//!   one of the 4 written materials (80 %) or the list `GET
//!   /api/materials/` (20 %, which shows all 4).
//! - Writers: one per written material (ids 1-4), each sequential, every
//!   `4 x --write-ms`, staggered, so one `PUT /api/materials/{id}/` every
//!   `--write-ms` overall, through a random instance, with the title
//!   `faults m{id} v{n}`: `n` is that material's version, 1, 2, ...
//! - A health poller per instance: `GET /api/core/cache-health/` every
//!   200 ms.
//!
//! Every client request has a 5 s timeout (1 s to connect), every Redis
//! command of the fault injector 1 s to connect and 5 s to answer: a
//! misbehaving Redis makes requests fail, not the bench hang. The schedule
//! (phase times, instances, ids, titles) depends only on the options and
//! `--seed`; what the servers answer does not.
//!
//! # Phases
//!
//! A 3 s warm-up (not measured), then five phases of `--phase-secs` each:
//! `baseline`, `kill`, `pause`, `stall`, `oom`. A fault starts a fifth of
//! the way into its phase:
//!
//! - **kill**: `redis-server` killed (`SIGKILL`), restarted 3 s later,
//!   empty (no persistence);
//! - **pause**: `CLIENT PAUSE 3000 ALL` from a raw connection;
//! - **stall**: `DEBUG SLEEP 2` (the server answers nobody for 2 s, longer
//!   than the default 1 s staleness bound);
//! - **oom**: `CONFIG SET maxmemory <used_memory - 64 KiB>` with
//!   `maxmemory-policy noeviction` for 3 s (every write refused), then
//!   `maxmemory 0`. At exactly `used_memory` nothing was refused: the
//!   `INFO` connection's buffers are freed as it closes, and the cache's
//!   working set does not grow in steady state. The injector prints how
//!   many commands Redis refused with `OOM`.
//!
//! The fault's end is when the injector's action ends: the restart answers
//! `PING`, the pause expires (start + 3 s), `DEBUG SLEEP` answers,
//! `maxmemory 0` is set. The baseline has a nominal fault, 3 s at the same
//! offset, so its recovery columns show the noise floor.
//!
//! # Definitions
//!
//! A request belongs to the phase in which it started.
//!
//! - **failed**: a non-2xx answer or a transport error (timeout included).
//!   Nothing in this mix is expected to fail: the cache falls back to the
//!   handler when Redis does not answer.
//! - **stale read**: a read of material X (its detail, or the list, which
//!   is a read of each written material) that started after the response
//!   of the PUT of version v of X and returned a version older than v.
//!   Failed writes oblige nothing (a newer version they may have written
//!   is not stale either).
//! - **max staleness window**: for each successful write, the time from
//!   its response to the start of the last read that still returned an
//!   older version (0 when none did); the maximum over the writes whose
//!   response falls in the phase.
//! - **recovery (requests)**: from the fault's end to the start of the
//!   last bad request (stale or failed) that started after the fault's
//!   end; 0 when none did. Bad requests that started during the fault
//!   count in the phase, not here. Resolution: the read interval.
//! - **recovery (health)**: the same with health polls: to the start of
//!   the last poll, on any instance, that did not answer 200 (`ok`).
//!
//! When the last bad request or poll came within 1 s of the phase's end,
//! the recovery is printed as `> <rest of the phase>`: not recovered by
//! the phase's end.
//!
//! `cargo test --all-targets` runs bench targets without `--bench`: then
//! this prints a line and returns.

#[path = "faults/analysis.rs"]
mod analysis;
#[path = "../examples/thebot/app.rs"]
mod app;
#[path = "faults/fault.rs"]
mod fault;
#[path = "faults/traffic.rs"]
mod traffic;

use std::time::{Duration, Instant};

use fault::Fault;
use strata_testkit::RedisServer;

/// The instances the traffic is spread over.
const INSTANCES: usize = 3;
/// Not measured: the caches fill, the subscriptions settle.
const WARMUP: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
struct Options {
    phase: Duration,
    vus: usize,
    interval: Duration,
    write_every: Duration,
    db_latency: Duration,
    seed: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            phase: Duration::from_secs(30),
            vus: 4,
            interval: Duration::from_millis(25),
            write_every: Duration::from_millis(150),
            db_latency: Duration::from_millis(5),
            seed: 0x5eed_fa17,
        };
        let mut phase_set = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let raw = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse()
                    .map_err(|_| format!("{name} {raw:?}: not a whole number"))
            };
            match arg.as_str() {
                "--quick" if !phase_set => options.phase = Duration::from_secs(12),
                "--phase-secs" => {
                    options.phase = Duration::from_secs(value(arg)?);
                    phase_set = true;
                }
                "--vus" => options.vus = value(arg)?.max(1) as usize,
                "--interval-ms" => options.interval = Duration::from_millis(value(arg)?.max(1)),
                "--write-ms" => options.write_every = Duration::from_millis(value(arg)?.max(10)),
                "--db-ms" => options.db_latency = Duration::from_millis(value(arg)?),
                "--seed" => options.seed = value(arg)?,
                // `--bench`, and filters and flags cargo may pass.
                _ => {}
            }
        }
        if options.phase < Duration::from_secs(8) {
            return Err("--phase-secs must be at least 8 (a 3 s fault and a recovery)".to_owned());
        }
        Ok(options)
    }
}

/// When each phase's fault is due, from the start of the traffic.
#[derive(Debug, Clone, Copy)]
struct Phase {
    fault: Option<Fault>,
    start: Instant,
    end: Instant,
    /// When the fault is injected (a fifth into the phase).
    fault_at: Instant,
}

fn schedule(start: Instant, options: &Options) -> Vec<Phase> {
    let faults = [
        None,
        Some(Fault::Kill),
        Some(Fault::Pause),
        Some(Fault::Stall),
        Some(Fault::Oom),
    ];
    faults
        .iter()
        .enumerate()
        .map(|(index, &fault)| {
            let begin = start + WARMUP + options.phase * index as u32;
            Phase {
                fault,
                start: begin,
                end: begin + options.phase,
                fault_at: begin + options.phase / 5,
            }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "faults: a fault benchmark; run it with `cargo bench -p strata-bench --bench faults -- --quick`"
        );
        return;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("faults: {e}");
            std::process::exit(2);
        }
    };
    // DEBUG is off by default since Redis 7; the stall needs it.
    let Some(server) = RedisServer::start_with_args(&["--enable-debug-command", "yes"]) else {
        eprintln!("faults: redis-server is not installed; nothing to measure");
        return;
    };
    let database = tempfile::tempdir().expect("a temp dir for the database");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "thebot under Redis faults: {INSTANCES} instances, one Redis ({}), one SQLite file; \
         {} readers every {} ms, one write every {} ms, DB {} ms/query; \
         {} s warm-up, then 5 phases of {} s",
        server.url(),
        INSTANCES * options.vus,
        options.interval.as_millis(),
        options.write_every.as_millis(),
        options.db_latency.as_millis(),
        WARMUP.as_secs(),
        options.phase.as_secs(),
    );
    let (server, record) = runtime.block_on(async {
        let instances = traffic::start_instances(
            &server.url(),
            &database.path().join("faults.sqlite3"),
            &options,
        )
        .await;
        let start = Instant::now() + Duration::from_millis(200);
        let phases = schedule(start, &options);
        let end = phases.last().map_or(start, |phase| phase.end);
        // The injector blocks (restart, DEBUG SLEEP): its own thread, which
        // owns the server until the last phase ends.
        let injector = {
            let phases = phases.clone();
            std::thread::spawn(move || fault::inject_all(server, &phases))
        };
        let record = traffic::run(&instances, start, end, &options).await;
        let (server, injected) = tokio::task::spawn_blocking(move || injector.join().unwrap())
            .await
            .unwrap();
        for instance in &instances {
            instance.server.abort();
        }
        (server, analysis::Run::new(phases, injected, record))
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    analysis::report(&record, &options);
    drop(server);
}
