//! Fill latency under unrelated invalidations: does a stream of
//! invalidations that name nothing a fill stores slow the fills down, or
//! keep them from being stored?
//!
//! An invalidation only fences the fills in flight whose key, URL, tag,
//! user or prefix it names. This bench checks that from the outside, with
//! the public API only, in one process and one run:
//!
//! - the app: an axum `Router` with `GET /item/{id}`, whose handler waits
//!   for a simulated upstream (`tokio::time::sleep`, 1 ms) and returns a
//!   small body, under `CachePolicy::public(600 s).tag("items")`, all
//!   behind `cache.layer()` of `Cache::builder().build()` (memory store);
//! - the client: `tower::ServiceExt::oneshot` on the router (no socket),
//!   16 concurrent tasks, each request for a new id, so every request is a
//!   fill (a miss that stores); a multi-thread tokio runtime;
//! - fill latency: from sending the request to having the whole body; each
//!   fill's `cache-status` must say `stored`.
//!
//! Scenarios, each on a fresh cache:
//!
//! - **A**: no invalidations;
//! - **B**: a background task calls `handle.invalidate_tag("other:{n}")`
//!   10 000 times a second (batches every millisecond, paced against the
//!   clock): tags that name nothing the fills store. Every fill must still
//!   be stored, about as fast as in A;
//! - **C** (control): the same rate of `invalidate_tag("items")`, the tag
//!   every fill carries: fills are fenced and the stored share drops,
//!   which shows the bench can tell the difference;
//! - **D** (control): B's invalidator, same tags, same pace, aimed at a
//!   second cache that no request reaches: what issuing 10 000
//!   invalidations a second costs the process (two shared cores) without
//!   touching the fills' fences. B ÷ D is what the fences add.
//!
//! They run in interleaved rounds, forwards and backwards in turn
//! (A B C D, D C B A, ...), with the same number of fills each, so outside
//! load hits all of them alike. The report gives, per scenario, the fills,
//! the stored share, p50 / p90 / p99 fill latency and the invalidations a
//! second achieved, then each scenario ÷ A, and B ÷ D, for p50 and p99
//! (pooled, and the median of the per-round ratios), each round's figures
//! and every `cache-status` value seen.
//!
//! ```sh
//! cargo bench -p strata-bench --bench fill_latency              # 8 rounds x 10 000 fills per scenario: about 50 s
//! cargo bench -p strata-bench --bench fill_latency -- --quick   # 4 rounds x 2 000 fills: about 6 s
//! ```
//!
//! With the default 1 ms `sleep`, a fill takes about 2.1 ms even one at a
//! time: tokio's timer works in whole milliseconds. `--upstream-us 0`
//! takes the timer out: fills are then bound by the CPU (60 000 to
//! 120 000 a second on two shared cores), and any cost the fences add
//! shows undiluted.
//!
//! Options (after `--`): `--quick`, `--rounds N` (8), `--fills N` (10 000
//! measured fills per scenario and round, after `--warmup N` (500) that
//! are not), `--concurrency N` (16), `--rate N` (10 000 invalidations/s),
//! `--batch-ms MS` (1), `--upstream-us US` (1 000; 0 = the handler only
//! yields once), `--no-control` (A and B only: no C, no D).
//!
//! `cargo test --all-targets` runs bench targets without `--bench`: then
//! this prints a line and returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use strata::{CACHE_STATUS, Cache, CacheHandle, CachePolicy};
use tokio::time::MissedTickBehavior;
use tower::ServiceExt;

/// The tag every fill's response carries.
const TAG: &str = "items";
/// How long the route's responses may be reused: far longer than a run.
const TTL: Duration = Duration::from_secs(600);
/// The invalidator starts this long before the fills, in every scenario.
const LEAD_IN: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
struct Options {
    rounds: usize,
    fills: usize,
    warmup: usize,
    concurrency: usize,
    rate: u64,
    batch: Duration,
    upstream: Duration,
    control: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            rounds: 8,
            fills: 10_000,
            warmup: 500,
            concurrency: 16,
            rate: 10_000,
            batch: Duration::from_millis(1),
            upstream: Duration::from_millis(1),
            control: true,
        };
        let (mut rounds_set, mut fills_set, mut warmup_set) = (false, false, false);
        let mut quick = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let raw = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse()
                    .map_err(|_| format!("{name} {raw:?}: not a whole number"))
            };
            match arg.as_str() {
                "--bench" => {}
                "--quick" => quick = true,
                "--rounds" => {
                    options.rounds = value(arg)?.max(1) as usize;
                    rounds_set = true;
                }
                "--fills" => {
                    options.fills = value(arg)?.max(1) as usize;
                    fills_set = true;
                }
                "--warmup" => {
                    options.warmup = value(arg)? as usize;
                    warmup_set = true;
                }
                "--concurrency" => options.concurrency = value(arg)?.max(1) as usize,
                "--rate" => options.rate = value(arg)?,
                "--batch-ms" => options.batch = Duration::from_millis(value(arg)?.max(1)),
                "--upstream-us" => options.upstream = Duration::from_micros(value(arg)?),
                "--no-control" => options.control = false,
                // Filters and flags cargo may pass; nothing to filter here.
                _ => {}
            }
        }
        if quick {
            if !rounds_set {
                options.rounds = 4;
            }
            if !fills_set {
                options.fills = 2_000;
            }
            if !warmup_set {
                options.warmup = 200;
            }
        }
        if options.rate == 0 {
            return Err("--rate must be at least 1".to_owned());
        }
        Ok(options)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// No invalidations.
    Quiet,
    /// Invalidations of tags no fill carries.
    Unrelated,
    /// Invalidations of the tag every fill carries (the control).
    Related,
    /// B's invalidations, sent to a second cache: what issuing them costs
    /// the process, without this cache's fences.
    Elsewhere,
}

impl Scenario {
    fn letter(self) -> &'static str {
        match self {
            Scenario::Quiet => "A",
            Scenario::Unrelated => "B",
            Scenario::Related => "C",
            Scenario::Elsewhere => "D",
        }
    }

    fn label(self, rate: u64) -> String {
        match self {
            Scenario::Quiet => "A: no invalidations".to_owned(),
            Scenario::Unrelated => {
                format!(
                    "B: {}/s invalidate_tag(\"other:{{n}}\") (unrelated)",
                    thousands(rate)
                )
            }
            Scenario::Related => format!(
                "C (control): {}/s invalidate_tag(\"{TAG}\") (names every fill)",
                thousands(rate)
            ),
            Scenario::Elsewhere => format!(
                "D (control): B's {}/s invalidations on a second cache",
                thousands(rate)
            ),
        }
    }
}

/// What one scenario measured in one round.
#[derive(Debug, Default)]
struct Run {
    /// Fill latencies, in nanoseconds.
    nanos: Vec<u64>,
    /// Fills whose `cache-status` says `stored`.
    stored: u64,
    /// Responses that were not a 200 with the expected body.
    errors: u64,
    /// Every `cache-status` value seen, with its count.
    statuses: BTreeMap<String, u64>,
    /// Invalidations issued and the seconds they were issued over.
    invalidations: u64,
    invalidation_secs: f64,
    /// Invalidations that returned an error.
    invalidation_errors: u64,
    /// Wall time of the measured fills.
    fill_secs: f64,
}

/// The app: `GET /item/{id}`, a small body after a simulated upstream,
/// public for 600 s and tagged `items`, behind the cache layer.
fn app(cache: &Cache, upstream: Duration) -> Router {
    let handler = move |Path(id): Path<u64>| async move {
        if upstream.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(upstream).await;
        }
        body_of(id)
    };
    Router::new()
        .route(
            "/item/{id}",
            get(handler).layer(CachePolicy::public(TTL).tag(TAG)),
        )
        .layer(cache.layer())
        .with_state(())
}

fn body_of(id: u64) -> String {
    format!(
        "{{\"id\":{id},\"name\":\"item {id}\",\"price\":{}}}",
        id % 997
    )
}

/// Issues `rate` invalidations a second in batches every `batch` until
/// `stop`, paced against the clock (a late batch catches up, by at most
/// four batches at once). Returns the count, the seconds and the errors.
async fn invalidate(
    handle: CacheHandle,
    scenario: Scenario,
    rate: u64,
    batch: Duration,
    stop: Arc<AtomicBool>,
) -> (u64, f64, u64) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(batch);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let per_batch = (rate as f64 * batch.as_secs_f64()).ceil().max(1.0) as u64;
    let (mut done, mut errors) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        let n = due.saturating_sub(done).min(per_batch * 4);
        for _ in 0..n {
            let result = match scenario {
                Scenario::Unrelated | Scenario::Elsewhere => {
                    handle.invalidate_tag(&format!("other:{done}")).await
                }
                Scenario::Related => handle.invalidate_tag(TAG).await,
                Scenario::Quiet => unreachable!("no invalidator in A"),
            };
            if result.is_err() {
                errors += 1;
            }
            done += 1;
        }
    }
    (done, start.elapsed().as_secs_f64(), errors)
}

/// One scenario for one round, on a fresh cache.
async fn run(scenario: Scenario, options: &Options, ids: &Arc<AtomicU64>) -> Run {
    let cache = Cache::builder().build();
    let router = app(&cache, options.upstream);
    let stop = Arc::new(AtomicBool::new(false));
    // D's invalidations go to a cache no request reaches (built in every
    // scenario, so all do the same setup).
    let elsewhere = Cache::builder().build();
    let target = if scenario == Scenario::Elsewhere {
        elsewhere.handle()
    } else {
        cache.handle()
    };
    let invalidator = (scenario != Scenario::Quiet).then(|| {
        tokio::spawn(invalidate(
            target,
            scenario,
            options.rate,
            options.batch,
            Arc::clone(&stop),
        ))
    });
    tokio::time::sleep(LEAD_IN).await;

    let total = options.warmup + options.fills;
    let next = Arc::new(AtomicU64::new(0));
    let measured_from = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut workers = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        let (router, next, ids) = (router.clone(), Arc::clone(&next), Arc::clone(ids));
        let (warmup, measured_from) = (options.warmup as u64, Arc::clone(&measured_from));
        workers.push(tokio::spawn(async move {
            let mut run = Run::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total as u64 {
                    break;
                }
                let measured = index >= warmup;
                if index == warmup {
                    *measured_from.lock().unwrap() = Some(Instant::now());
                }
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let request = Request::get(format!("/item/{id}"))
                    .body(Body::empty())
                    .unwrap();
                let began = Instant::now();
                let response = router.clone().oneshot(request).await.unwrap();
                let (parts, body) = response.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes());
                let nanos = began.elapsed().as_nanos() as u64;
                if !measured {
                    continue;
                }
                let ok = parts.status == StatusCode::OK
                    && body.is_ok_and(|b| b == body_of(id).as_bytes());
                let status = parts
                    .headers
                    .get_all(CACHE_STATUS)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if status.split([';', ',']).any(|m| m.trim() == "stored") {
                    run.stored += 1;
                }
                *run.statuses.entry(status).or_default() += 1;
                if !ok {
                    run.errors += 1;
                }
                run.nanos.push(nanos);
            }
            run
        }));
    }
    let mut out = Run::default();
    for worker in workers {
        let run = worker.await.unwrap();
        out.nanos.extend(run.nanos);
        out.stored += run.stored;
        out.errors += run.errors;
        for (status, count) in run.statuses {
            *out.statuses.entry(status).or_default() += count;
        }
    }
    let from = measured_from.lock().unwrap().take();
    out.fill_secs = from.map_or(0.0, |from| from.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    if let Some(invalidator) = invalidator {
        let (count, secs, errors) = invalidator.await.unwrap();
        out.invalidations = count;
        out.invalidation_secs = secs;
        out.invalidation_errors = errors;
    }
    out
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(nanos: u64) -> String {
    format!("{:.3} ms", nanos as f64 / 1e6)
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

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Every run of one scenario, pooled.
#[derive(Debug)]
struct Pooled {
    sorted: Vec<u64>,
    stored: u64,
    errors: u64,
    statuses: BTreeMap<String, u64>,
    invalidations: u64,
    invalidation_secs: f64,
    invalidation_errors: u64,
    fill_secs: f64,
}

impl Pooled {
    fn of(runs: &[&Run]) -> Self {
        let mut sorted: Vec<u64> = runs.iter().flat_map(|r| r.nanos.iter().copied()).collect();
        sorted.sort_unstable();
        let mut statuses = BTreeMap::new();
        for run in runs {
            for (status, count) in &run.statuses {
                *statuses.entry(status.clone()).or_default() += count;
            }
        }
        Self {
            sorted,
            stored: runs.iter().map(|r| r.stored).sum(),
            errors: runs.iter().map(|r| r.errors).sum(),
            statuses,
            invalidations: runs.iter().map(|r| r.invalidations).sum(),
            invalidation_secs: runs.iter().map(|r| r.invalidation_secs).sum(),
            invalidation_errors: runs.iter().map(|r| r.invalidation_errors).sum(),
            fill_secs: runs.iter().map(|r| r.fill_secs).sum(),
        }
    }

    fn fills(&self) -> u64 {
        self.sorted.len() as u64
    }

    fn stored_share(&self) -> f64 {
        100.0 * self.stored as f64 / self.fills().max(1) as f64
    }

    fn rate(&self) -> Option<f64> {
        (self.invalidation_secs > 0.0).then(|| self.invalidations as f64 / self.invalidation_secs)
    }
}

fn report(scenarios: &[Scenario], rounds: &[Vec<(Scenario, Run)>], options: &Options) {
    let runs_of = |scenario: Scenario| -> Vec<&Run> {
        rounds
            .iter()
            .flatten()
            .filter(|(s, _)| *s == scenario)
            .map(|(_, run)| run)
            .collect()
    };
    let pooled: Vec<(Scenario, Pooled)> = scenarios
        .iter()
        .map(|&s| (s, Pooled::of(&runs_of(s))))
        .collect();

    println!();
    println!(
        "| scenario | fills | stored | p50 | p90 | p99 | fills/s | invalidations/s achieved |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (scenario, p) in &pooled {
        println!(
            "| {} | {} | {:.2} % | {} | {} | {} | {} | {} |",
            scenario.label(options.rate),
            thousands(p.fills()),
            p.stored_share(),
            ms(quantile(&p.sorted, 0.50)),
            ms(quantile(&p.sorted, 0.90)),
            ms(quantile(&p.sorted, 0.99)),
            thousands((p.fills() as f64 / p.fill_secs.max(1e-9)).round() as u64),
            p.rate()
                .map_or("-".to_owned(), |r| thousands(r.round() as u64)),
        );
    }

    let find = |s: Scenario| pooled.iter().find(|(x, _)| *x == s).map(|(_, p)| p);
    let per_round = |s: Scenario, base: Scenario, q: f64| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|round| {
                let of = |x: Scenario| {
                    round.iter().find(|(y, _)| *y == x).map(|(_, run)| {
                        let mut sorted = run.nanos.clone();
                        sorted.sort_unstable();
                        quantile(&sorted, q) as f64
                    })
                };
                Some(of(s)? / of(base)?)
            })
            .collect()
    };
    // Each scenario against A; and B against D: what B costs beyond
    // issuing the same invalidations elsewhere in the process.
    let mut pairs: Vec<(Scenario, Scenario)> = scenarios
        .iter()
        .filter(|&&s| s != Scenario::Quiet)
        .map(|&s| (s, Scenario::Quiet))
        .collect();
    pairs.push((Scenario::Unrelated, Scenario::Elsewhere));
    println!();
    for (s, base) in pairs {
        let (Some(b), Some(x)) = (find(base), find(s)) else {
            continue;
        };
        let ratio = |q: f64| quantile(&x.sorted, q) as f64 / quantile(&b.sorted, q).max(1) as f64;
        let p50s = per_round(s, base, 0.50);
        let p99s = per_round(s, base, 0.99);
        let slower = |v: &[f64]| v.iter().filter(|&&r| r > 1.0).count();
        println!(
            "{} / {}: p50 {:.3}x, p99 {:.3}x pooled; per round, median p50 {:.3}x ({} of {} rounds slower), median p99 {:.3}x ({} of {} slower); stored {:.2} % vs {:.2} %",
            s.letter(),
            base.letter(),
            ratio(0.50),
            ratio(0.99),
            median(p50s.clone()),
            slower(&p50s),
            p50s.len(),
            median(p99s.clone()),
            slower(&p99s),
            p99s.len(),
            x.stored_share(),
            b.stored_share(),
        );
    }

    println!();
    println!("round by round (order, then p50 / p99 / stored per scenario):");
    for (index, round) in rounds.iter().enumerate() {
        let order: Vec<&str> = round.iter().map(|(s, _)| s.letter()).collect();
        let cells: Vec<String> = scenarios
            .iter()
            .filter_map(|&s| {
                let run = &round.iter().find(|(x, _)| *x == s)?.1;
                let mut sorted = run.nanos.clone();
                sorted.sort_unstable();
                Some(format!(
                    "{} {:.3}/{:.3} ms {:.1} %",
                    s.letter(),
                    quantile(&sorted, 0.50) as f64 / 1e6,
                    quantile(&sorted, 0.99) as f64 / 1e6,
                    100.0 * run.stored as f64 / run.nanos.len().max(1) as f64,
                ))
            })
            .collect();
        println!(
            "  {:>2} {}: {}",
            index + 1,
            order.join(" "),
            cells.join(" | ")
        );
    }

    println!();
    println!("cache-status values seen:");
    for (scenario, p) in &pooled {
        let seen: Vec<String> = p
            .statuses
            .iter()
            .map(|(status, count)| format!("{status:?} x {}", thousands(*count)))
            .collect();
        println!("  {}: {}", scenario.letter(), seen.join("; "));
        if p.errors > 0 || p.invalidation_errors > 0 {
            println!(
                "  {}: {} responses not 200 with the expected body, {} invalidations failed",
                scenario.letter(),
                p.errors,
                p.invalidation_errors
            );
        }
    }
    for (scenario, p) in &pooled {
        if *scenario != Scenario::Related && p.stored < p.fills() {
            println!(
                "NOTE: {} stored {} of {} fills: every fill should be stored",
                scenario.letter(),
                p.stored,
                p.fills()
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "fill_latency: a benchmark; run it with `cargo bench -p strata-bench --bench fill_latency -- --quick`"
        );
        return;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("fill_latency: {e}");
            std::process::exit(2);
        }
    };
    let mut scenarios = vec![Scenario::Quiet, Scenario::Unrelated];
    if options.control {
        scenarios.push(Scenario::Related);
        scenarios.push(Scenario::Elsewhere);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "fill latency: GET /item/{{id}} (a new id per request, upstream {} µs), {} concurrent fills, \
         {} rounds x {} measured fills per scenario (+{} warm-up each), invalidations {}/s in \
         batches every {} ms; multi-thread runtime, {} workers",
        options.upstream.as_micros(),
        options.concurrency,
        options.rounds,
        thousands(options.fills as u64),
        options.warmup,
        thousands(options.rate),
        options.batch.as_millis(),
        workers,
    );
    for &s in &scenarios {
        println!("  {}", s.label(options.rate));
    }
    let started = Instant::now();
    let rounds = runtime.block_on(async {
        let ids = Arc::new(AtomicU64::new(1));
        let mut rounds = Vec::with_capacity(options.rounds);
        for round in 0..options.rounds {
            // Forwards, then backwards: A B C, C B A, A B C, ...
            let mut order = scenarios.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            let mut results = Vec::with_capacity(order.len());
            for scenario in order {
                eprintln!(
                    "round {} of {}: {}",
                    round + 1,
                    options.rounds,
                    scenario.letter()
                );
                let run = run(scenario, &options, &ids).await;
                results.push((scenario, run));
            }
            rounds.push(results);
        }
        rounds
    });
    report(&scenarios, &rounds, &options);
    println!();
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}
