//! The demo under load: `examples/thebot/app.rs` served on a real socket,
//! once without the cache (`app::app_uncached`: the same routes, no cache
//! layer) and once with it (`app::app` on a memory-store cache), each with
//! its own fresh database, driven by the same read-heavy mix from a fixed
//! number of virtual users, in one process, one after the other.
//!
//! Prints, side by side: requests, req/s, database queries and queries per
//! minute, and p50/p90/p99 latency of all requests and of hits only (the
//! requests whose `cache-status` says `hit`), then per kind of request the
//! hit share and how often its handler ran (each run is one query), and
//! the cached variant's queries per minute over time, warm-up included.
//!
//! ```sh
//! cargo bench -p strata-bench --bench load                     # cached: 360 s warm-up + 120 s measured
//! cargo bench -p strata-bench --bench load -- --quick          # cached: 5 s warm-up + 20 s (a cold cache)
//! ```
//!
//! The default warm-up is longer than the longest private TTL (5 min), so
//! the measured window is the steady state of a running service: entries
//! expire and are refilled at their normal rate. The series printed at the
//! end shows the cold start. The run without the cache keeps at most 5 s of
//! warm-up and 60 s of window: its rates do not change with time.
//!
//! Options (after `--`): `--quick`, `--duration S`, `--warmup S`, `--vus N`
//! (32), `--interval-ms MS` (250: each user starts a request every 250 ms,
//! or as soon as the previous one ends when it took longer; 0 = back to
//! back), `--db-ms MS` (150: the cost of one query), `--writes-permille N`
//! (10), `--users N` (200), `--seed N`.
//!
//! The mix, per 1 000 requests (with the default 10 writes):
//!
//! - 200 `GET /api/materials/`;
//! - 640 `GET /api/materials/{id}/`, ids drawn from a Zipf (s = 1)
//!   popularity over the 20 seeded ids (this share is 650 minus the
//!   writes);
//! - 100 private pages: dashboard, reports or notifications (uniformly),
//!   for a user drawn uniformly among 200, `Bearer user-<id>`;
//! - 25 `GET /api/analytics/`, 25 `GET /api/assignments/`;
//! - 10 writes, per 10: 4 `PUT /api/materials/{id}/` (a new title, same
//!   Zipf ids; drops the list and that detail), 1 `POST /api/materials/`
//!   (drops the `materials` tag: the list and every detail) and 5
//!   `POST /api/assignments/` (drops the assignments list).
//!
//! Pacing every user (rather than running back to back) gives both variants
//! the same offered load, so their queries per minute compare like for
//! like; 32 users every 250 ms is 128 req/s, which the uncached variant
//! keeps up with (one 150 ms query per request).
//!
//! `cargo test --all-targets` runs bench targets without `--bench`: then
//! this prints a line and returns.

#[path = "../examples/thebot/app.rs"]
mod app;

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::Db;
use reqwest::{Client, Method};
use strata::Config;
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;

const ADMIN: &str = "load-admin-token";
/// The longest warm-up and window of the run without the cache.
const BASELINE_WARMUP: Duration = Duration::from_secs(5);
const BASELINE_DURATION: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Options {
    warmup: Duration,
    duration: Duration,
    vus: usize,
    interval: Duration,
    db_latency: Duration,
    writes_permille: u32,
    users: u32,
    seed: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            warmup: Duration::from_secs(360),
            duration: Duration::from_secs(120),
            vus: 32,
            interval: Duration::from_millis(250),
            db_latency: Duration::from_millis(150),
            writes_permille: 10,
            users: 200,
            seed: 0x5eed_1234,
        };
        let mut warmup_set = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let raw = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse()
                    .map_err(|_| format!("{name} {raw:?}: not a whole number"))
            };
            match arg.as_str() {
                "--bench" => {}
                "--quick" => {
                    options.duration = Duration::from_secs(20);
                    if !warmup_set {
                        options.warmup = Duration::from_secs(5);
                    }
                }
                "--duration" => options.duration = Duration::from_secs(value(arg)?),
                "--warmup" => {
                    options.warmup = Duration::from_secs(value(arg)?);
                    warmup_set = true;
                }
                "--vus" => options.vus = value(arg)?.max(1) as usize,
                "--interval-ms" => options.interval = Duration::from_millis(value(arg)?),
                "--db-ms" => options.db_latency = Duration::from_millis(value(arg)?),
                "--writes-permille" => options.writes_permille = value(arg)?.min(650) as u32,
                "--users" => options.users = value(arg)?.max(1) as u32,
                "--seed" => options.seed = value(arg)?,
                // Filters and flags cargo may pass; nothing to filter here.
                _ => {}
            }
        }
        if options.duration.is_zero() {
            return Err("--duration must be at least 1 s".to_owned());
        }
        Ok(options)
    }
}

/// A small, fast, seedable generator (splitmix64): no extra dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
}

/// Zipf over `1..=n`: P(k) proportional to 1 / k^s.
#[derive(Debug)]
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let index = self.cdf.partition_point(|&c| c < u);
        index.min(self.cdf.len() - 1) as u64 + 1
    }
}

/// The kinds of request, for the per-kind table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Detail,
    Private,
    Shared,
    Write,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::List, "materials list"),
    (Kind::Detail, "material detail"),
    (Kind::Private, "private pages"),
    (Kind::Shared, "analytics/assignments"),
    (Kind::Write, "writes (PUT/POST)"),
];

#[derive(Debug)]
struct Planned {
    kind: Kind,
    method: Method,
    path: String,
    user: Option<u32>,
    body: Option<String>,
}

fn plan(rng: &mut Rng, zipf: &Zipf, options: &Options, serial: u64) -> Planned {
    let writes = options.writes_permille;
    // The detail share absorbs a change of the write share.
    let detail = 620 + 30 - writes;
    let draw = rng.below(1000);
    let get = |kind, path: String| Planned {
        kind,
        method: Method::GET,
        path,
        user: None,
        body: None,
    };
    let mut bound = 200;
    if draw < bound {
        return get(Kind::List, "/api/materials/".to_owned());
    }
    bound += detail;
    if draw < bound {
        let id = zipf.sample(rng);
        return get(Kind::Detail, format!("/api/materials/{id}/"));
    }
    bound += 100;
    if draw < bound {
        let page = ["dashboard", "reports", "notifications"][rng.below(3) as usize];
        let mut planned = get(Kind::Private, format!("/api/{page}/"));
        planned.user = Some(rng.below(options.users) + 1);
        return planned;
    }
    bound += 50;
    if draw < bound {
        let path = if draw.is_multiple_of(2) {
            "/api/analytics/"
        } else {
            "/api/assignments/"
        };
        return get(Kind::Shared, path.to_owned());
    }
    // Writes, per 10: 4 edits of a material (same Zipf ids), 1 new
    // material, 5 new assignments.
    let body = Some(format!("{{\"title\":\"Edited {serial}\"}}"));
    let (method, path) = match rng.below(10) {
        0..4 => (Method::PUT, format!("/api/materials/{}/", zipf.sample(rng))),
        4 => (Method::POST, "/api/materials/".to_owned()),
        _ => (Method::POST, "/api/assignments/".to_owned()),
    };
    Planned {
        kind: Kind::Write,
        method,
        path,
        user: None,
        body,
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    kind: Kind,
    /// Served from the cache without waiting (`Cache-Status: strata; hit`).
    hit: bool,
    /// The handler ran for this request (one database query): neither a
    /// hit nor a waiter on another request's fill (`collapsed`).
    ran: bool,
    ok: bool,
    micros: u64,
}

#[derive(Debug)]
struct Outcome {
    samples: Vec<Sample>,
    queries: u64,
    seconds: f64,
    /// Queries per minute in each minute (or each sixth of the run, when
    /// shorter) since the start, warm-up included: how fast the cache
    /// warms. The `bool` says whether the bucket lies in the measured
    /// window.
    series: Vec<(f64, f64, bool)>,
}

/// Serves `router` on 127.0.0.1:0, runs the virtual users against it for
/// warm-up plus duration, and returns what was measured in the duration.
async fn run_variant(router: axum::Router, db: Db, options: &Options) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    let client = Client::builder()
        .pool_max_idle_per_host(options.vus * 2)
        .build()
        .unwrap();
    let base = format!("http://{addr}");
    let zipf = Arc::new(Zipf::new(app::SEED_MATERIALS, 1.0));

    let start = Instant::now();
    let measure_from = start + options.warmup;
    let measure_to = measure_from + options.duration;

    // The query count at both edges of the measured window, and at every
    // bucket boundary since the start.
    let total = options.warmup + options.duration;
    let bucket = Duration::from_secs(60)
        .min(total / 6)
        .max(Duration::from_secs(1));
    let counter = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut series = Vec::new();
            let mut edge = start;
            let mut last = db.queries();
            let mut first = None;
            loop {
                let next = (edge + bucket).min(measure_to);
                if first.is_none() && measure_from <= next {
                    tokio::time::sleep_until(measure_from.into()).await;
                    first = Some(db.queries());
                }
                tokio::time::sleep_until(next.into()).await;
                let now = db.queries();
                let span = (next - edge).as_secs_f64();
                if span > 0.0 {
                    series.push((
                        (next - start).as_secs_f64(),
                        (now - last) as f64 * 60.0 / span,
                        next > measure_from,
                    ));
                }
                (edge, last) = (next, now);
                if next >= measure_to {
                    break;
                }
            }
            (now_minus(&db, first), series)
        })
    };

    let mut users = Vec::with_capacity(options.vus);
    for vu in 0..options.vus {
        let client = client.clone();
        let base = base.clone();
        let zipf = Arc::clone(&zipf);
        let options = options.clone();
        users.push(tokio::spawn(async move {
            let mut rng = Rng(options.seed ^ (vu as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut samples = Vec::new();
            let mut ticker = if options.interval.is_zero() {
                None
            } else {
                // Spread the users over one interval.
                let offset = options.interval.mul_f64(rng.unit());
                let mut ticker =
                    tokio::time::interval_at((start + offset).into(), options.interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                Some(ticker)
            };
            let mut serial = 0u64;
            loop {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let began = Instant::now();
                if began >= measure_to {
                    break;
                }
                serial += 1;
                let planned = plan(&mut rng, &zipf, &options, (vu as u64) << 32 | serial);
                let mut request = client.request(planned.method, format!("{base}{}", planned.path));
                if let Some(user) = planned.user {
                    request = request.bearer_auth(format!("user-{user}"));
                }
                if let Some(body) = planned.body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body);
                }
                let (ok, hit, ran) = match request.send().await {
                    Ok(response) => {
                        let status = response
                            .headers()
                            .get("cache-status")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        let hit = status.starts_with("strata; hit");
                        let ran = !hit && !status.contains("collapsed");
                        let ok = response.status().is_success();
                        // The whole body, as a client would read it.
                        let ok = response.bytes().await.is_ok() && ok;
                        (ok, hit, ran)
                    }
                    Err(_) => (false, false, true),
                };
                let micros = began.elapsed().as_micros() as u64;
                if began >= measure_from {
                    samples.push(Sample {
                        kind: planned.kind,
                        hit,
                        ran,
                        ok,
                        micros,
                    });
                }
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for user in users {
        samples.extend(user.await.unwrap());
    }
    let (queries, series) = counter.await.unwrap();
    server.abort();
    Outcome {
        samples,
        queries,
        seconds: options.duration.as_secs_f64(),
        series,
    }
}

/// The queries since `first` (the count when the measured window began).
fn now_minus(db: &Db, first: Option<u64>) -> u64 {
    db.queries() - first.unwrap_or_default()
}

/// p50, p90, p99 of these latencies (µs), or `None` when empty.
fn percentiles(mut micros: Vec<u64>) -> Option<[u64; 3]> {
    if micros.is_empty() {
        return None;
    }
    micros.sort_unstable();
    let at =
        |q: f64| micros[((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1];
    Some([at(0.50), at(0.90), at(0.99)])
}

fn ms(micros: u64) -> String {
    let ms = micros as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn triple(p: Option<[u64; 3]>) -> String {
    match p {
        Some([a, b, c]) => format!("{} / {} / {}", ms(a), ms(b), ms(c)),
        None => "-".to_owned(),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn report(without: &Outcome, with: &Outcome) {
    let row = |name: &str, f: &dyn Fn(&Outcome) -> String| {
        println!("| {name} | {} | {} |", f(without), f(with));
    };
    println!();
    println!("| | without cache | with cache |");
    println!("|---|---:|---:|");
    row("requests", &|o| thousands(o.samples.len() as u64));
    row("req/s", &|o| {
        format!("{:.1}", o.samples.len() as f64 / o.seconds)
    });
    row("errors (non-2xx)", &|o| {
        o.samples.iter().filter(|s| !s.ok).count().to_string()
    });
    row("DB queries", &|o| thousands(o.queries));
    row("DB queries/min", &|o| {
        thousands((o.queries as f64 * 60.0 / o.seconds).round() as u64)
    });
    row("DB queries/request", &|o| {
        format!("{:.3}", o.queries as f64 / o.samples.len().max(1) as f64)
    });
    row("p50 / p90 / p99, all", &|o| {
        triple(percentiles(o.samples.iter().map(|s| s.micros).collect()))
    });
    row("hits (share)", &|o| {
        let hits = o.samples.iter().filter(|s| s.hit).count();
        format!(
            "{} ({:.1} %)",
            thousands(hits as u64),
            100.0 * hits as f64 / o.samples.len().max(1) as f64
        )
    });
    row("p50 / p90 / p99, hits only", &|o| {
        triple(percentiles(
            o.samples
                .iter()
                .filter(|s| s.hit)
                .map(|s| s.micros)
                .collect(),
        ))
    });
    row("p50 / p90 / p99, the rest", &|o| {
        triple(percentiles(
            o.samples
                .iter()
                .filter(|s| !s.hit)
                .map(|s| s.micros)
                .collect(),
        ))
    });
    let per_min = |o: &Outcome| o.queries as f64 * 60.0 / o.seconds;
    let (a, b) = (per_min(without), per_min(with));
    let fewer = if a > 0.0 { 100.0 * (1.0 - b / a) } else { 0.0 };
    let per_request = |o: &Outcome| o.queries as f64 / o.samples.len().max(1) as f64;
    let fewer_per_request = 100.0 * (1.0 - per_request(with) / per_request(without).max(1e-9));
    println!();
    println!(
        "DB queries/min: {} -> {} ({fewer:.1} % fewer; per request {fewer_per_request:.1} % fewer)",
        thousands(a.round() as u64),
        thousands(b.round() as u64),
    );
    let hits: Vec<u64> = with
        .samples
        .iter()
        .filter(|s| s.hit)
        .map(|s| s.micros)
        .collect();
    let hit_p99 = percentiles(hits).map(|[_, _, p99]| p99);
    println!(
        "targets: hits p99 < 1 ms: {}; >= 90 % fewer queries: {}",
        match hit_p99 {
            Some(p) if p < 1000 => format!("met ({})", ms(p)),
            Some(p) => format!("NOT met ({})", ms(p)),
            None => "no hits".to_owned(),
        },
        if fewer >= 90.0 {
            format!("met ({fewer:.1} %)")
        } else {
            format!("NOT met ({fewer:.1} %)")
        },
    );

    println!();
    println!(
        "| kind (with cache) | requests | hits | handler runs (queries)/min | p50 / p99 without | p50 / p99 with |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, name) in KINDS {
        let of = |o: &Outcome| -> Vec<Sample> {
            o.samples
                .iter()
                .filter(|s| s.kind == kind)
                .copied()
                .collect()
        };
        let (w, c) = (of(without), of(with));
        let two = |v: &[Sample]| match percentiles(v.iter().map(|s| s.micros).collect()) {
            Some([p50, _, p99]) => format!("{} / {}", ms(p50), ms(p99)),
            None => "-".to_owned(),
        };
        let hits = c.iter().filter(|s| s.hit).count();
        let ran = c.iter().filter(|s| s.ran).count();
        println!(
            "| {name} | {} | {:.1} % | {} | {} | {} |",
            thousands(c.len() as u64),
            100.0 * hits as f64 / c.len().max(1) as f64,
            thousands((ran as f64 * 60.0 / with.seconds).round() as u64),
            two(&w),
            two(&c),
        );
    }

    println!();
    println!("DB queries/min with the cache, by time since its start (* = measured):");
    let series: Vec<String> = with
        .series
        .iter()
        .map(|&(at, per_min, measured)| {
            format!(
                "{:.0} s: {}{}",
                at,
                thousands(per_min.round() as u64),
                if measured { "*" } else { "" }
            )
        })
        .collect();
    println!("{}", series.join(" | "));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "load: a load test; run it with `cargo bench -p strata-bench --bench load -- --quick`"
        );
        return;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "thebot under load: {} virtual users, one request each every {} ms{}, DB {} ms/query, \
         writes {} per 1000, {} users for private pages; with the cache {} s warm-up + {} s measured \
         (without: {} s + {} s)",
        options.vus,
        options.interval.as_millis(),
        if options.interval.is_zero() {
            " (back to back)"
        } else {
            ""
        },
        options.db_latency.as_millis(),
        options.writes_permille,
        options.users,
        options.warmup.as_secs(),
        options.duration.as_secs(),
        options.warmup.min(BASELINE_WARMUP).as_secs(),
        options.duration.min(BASELINE_DURATION).as_secs(),
    );
    let (without, with) = runtime.block_on(async {
        let db = Db::new(options.db_latency);
        eprintln!("running without the cache...");
        // Without a cache the figures do not move with time: a shorter
        // window gives the same rates.
        let baseline = Options {
            warmup: options.warmup.min(BASELINE_WARMUP),
            duration: options.duration.min(BASELINE_DURATION),
            ..options.clone()
        };
        let without = run_variant(app::app_uncached(db.clone(), ADMIN), db, &baseline).await;
        let db = Db::new(options.db_latency);
        let cache = app::cache_from_config(&Config::default()).unwrap();
        eprintln!("running with the cache...");
        let with = run_variant(app::app(&cache, db.clone(), ADMIN), db, &options).await;
        (without, with)
    });
    report(&without, &with);
}
