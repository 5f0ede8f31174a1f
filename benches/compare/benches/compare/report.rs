//! The printed results: the throughput table, the targets, the
//! redis-benchmark reference and the stampede table.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use strata_testkit::RedisServer;

use crate::contenders::{Contender, Kind, Shape};
use crate::loadgen::{Measured, Stampede};

/// What became of one contender.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// It ran; these are its figures.
    Measured(Measured),
    /// The contender cannot do this case (why).
    NotApplicable(String),
    /// It could not be run (why).
    Skipped(String),
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Who and what.
    pub(crate) contender: Contender,
    /// What happened.
    pub(crate) outcome: Outcome,
    /// What the checks before the run found (cache headers, caveats).
    pub(crate) note: String,
}

impl Row {
    /// The figures, when measured.
    pub(crate) fn measured(&self) -> Option<&Measured> {
        match &self.outcome {
            Outcome::Measured(m) => Some(m),
            _ => None,
        }
    }
}

/// The table's reference figures.
#[derive(Debug, Clone, Copy, Default)]
struct References {
    ceiling_rps: Option<f64>,
    ceiling_cpu: Option<f64>,
    /// Highest req/s of a peer's hit.
    peer_rps: Option<f64>,
    /// Lowest server CPU per request of a peer's hit.
    peer_cpu: Option<f64>,
    ceiling_user: Option<f64>,
    /// Lowest server user-space CPU per request of a peer's hit.
    peer_user: Option<f64>,
}

fn server_cpu(m: &Measured) -> Option<f64> {
    m.per_request_us(m.server_cpu_ns)
}

fn server_user(m: &Measured) -> Option<f64> {
    m.per_request_us(m.server_user_ns)
}

fn find(rows: &[Row], kind: Kind, shape: Shape) -> Option<&Measured> {
    rows.iter()
        .find(|r| r.contender.kind == kind && r.contender.shape == shape)
        .and_then(Row::measured)
}

fn references(rows: &[Row]) -> References {
    let ceiling = find(rows, Kind::Ceiling, Shape::Plain);
    let peer_hits = || {
        rows.iter()
            .filter(|r| r.contender.kind.is_peer() && r.contender.shape == Shape::Plain)
            .filter_map(Row::measured)
    };
    References {
        ceiling_rps: ceiling.map(Measured::rps),
        ceiling_cpu: ceiling.and_then(server_cpu),
        peer_rps: peer_hits().map(|m| m.rps()).reduce(f64::max),
        peer_cpu: peer_hits().filter_map(server_cpu).reduce(f64::min),
        ceiling_user: ceiling.and_then(server_user),
        peer_user: peer_hits().filter_map(server_user).reduce(f64::min),
    }
}

fn ratio(value: Option<f64>, reference: Option<f64>) -> String {
    match (value, reference) {
        (Some(v), Some(r)) if r > 0.0 => format!("{:.2}x", v / r),
        _ => "-".to_owned(),
    }
}

fn opt<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), show)
}

/// `1234567` as `1 234 567`.
pub(crate) fn thousands(n: u64) -> String {
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

/// The references of one row: its group's ceiling, and the fastest peer
/// (for the gateway group: nginx, the other reverse proxy).
fn row_references(rows: &[Row], kind: Kind, refs: References) -> References {
    let ceiling = find(rows, kind.ceiling(), Shape::Plain);
    let mut refs = References {
        ceiling_rps: ceiling.map(Measured::rps),
        ceiling_cpu: ceiling.and_then(server_cpu),
        ..refs
    };
    if kind.in_gateway_group() {
        let nginx = find(rows, Kind::Nginx, Shape::Plain);
        refs.peer_rps = nginx.map(Measured::rps);
        refs.peer_cpu = nginx.and_then(server_cpu);
    }
    refs
}

/// The markdown throughput table.
pub(crate) fn table(rows: &[Row]) -> String {
    let all_refs = references(rows);
    let mut out = String::new();
    out.push_str(
        "| contender | req/s | rounds, req/s | p50 µs | p99 µs | server CPU µs/req | of which user µs/req | server busy | client busy \
         | req/s ÷ ceiling | req/s ÷ fastest peer | CPU: ceiling ÷ this | CPU: best peer ÷ this \
         | inner calls / requests | notes |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for row in rows {
        let name = row.contender.name();
        let m = match &row.outcome {
            Outcome::Measured(m) => m,
            Outcome::NotApplicable(why) | Outcome::Skipped(why) => {
                let _ = writeln!(out, "| {name} | n/a | | | | | | | | | | | {why} |");
                continue;
            }
        };
        let kind = row.contender.kind;
        let refs = row_references(rows, kind, all_refs);
        let cpu = server_cpu(m);
        let mut notes = row.note.clone();
        if let Some(process) = m.per_request_us(m.redis_cpu_ns) {
            if kind == Kind::Nginx {
                let _ = write!(
                    notes,
                    "; CPU of its process (`/proc/PID/stat`, 10 ms ticks); \
                     its main thread's `schedstat`: {process:.1} µs/req"
                );
            } else {
                let _ = write!(notes, "; redis-server CPU {process:.1} µs/req");
            }
        }
        if kind.in_gateway_group() && kind.is_cache() && m.inner_calls > 0 {
            let _ = write!(
                notes,
                "; **the upstream was called {} times in the window**",
                thousands(m.inner_calls)
            );
        }
        if m.wrong > 0 {
            let _ = write!(notes, "; **{} wrong responses**", thousands(m.wrong));
        }
        if m.errors > 0 {
            let _ = write!(notes, "; **{} connection errors**", m.errors);
        }
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            thousands(m.rps().round() as u64),
            spread(&m.rounds_rps),
            opt(m.quantile_us(0.50), |v| v.to_string()),
            opt(m.quantile_us(0.99), |v| v.to_string()),
            opt(cpu, |v| format!("{v:.1}")),
            opt(m.per_request_us(m.server_user_ns), |v| format!("{v:.1}")),
            opt(m.busy(m.server_cpu_ns), |v| format!("{:.0} %", v * 100.0)),
            opt(m.busy(m.client_cpu_ns), |v| format!("{:.0} %", v * 100.0)),
            ratio(Some(m.rps()), refs.ceiling_rps),
            ratio(Some(m.rps()), refs.peer_rps),
            ratio(refs.ceiling_cpu, cpu),
            ratio(refs.peer_cpu, cpu),
            thousands(m.inner_calls),
            thousands(m.requests),
            notes.trim_start_matches("; "),
        );
    }
    if rows.iter().any(|r| r.contender.kind.in_gateway_group()) {
        out.push_str(
            "\nGateway group (a static upstream without work, directly and behind each reverse proxy): \
             `req/s ÷ ceiling` and `CPU: ceiling ÷ this` are against `upstream direct`, the peer columns \
             against nginx `proxy_cache`; inner calls are the upstream's. The gateway's server CPU is its \
             server thread's (the upstream's thread is idle on hits); nginx's is its whole process \
             (`master_process off`, one worker, `utime + stime`).\n",
        );
    }
    out
}

/// The lowest and highest of the rounds' req/s, in thousands.
fn spread(rounds: &[f64]) -> String {
    let low = rounds.iter().copied().reduce(f64::min);
    let high = rounds.iter().copied().reduce(f64::max);
    match (low, high) {
        (Some(low), Some(high)) if rounds.len() > 1 => {
            format!("{:.1}k–{:.1}k", low / 1000.0, high / 1000.0)
        }
        _ => "-".to_owned(),
    }
}

/// One target line: `value` against `goal`, met or not.
fn target(out: &mut String, what: &str, value: Option<f64>, goal: f64) {
    let verdict = match value {
        Some(v) if v >= goal => format!("{v:.2}x, met"),
        Some(v) => format!("{v:.2}x, **not met**"),
        None => "not measured".to_owned(),
    };
    let _ = writeln!(out, "- {what} (target >= {goal:.2}x): {verdict}");
}

/// `a ÷ b` round by round, for two contenders measured in the same
/// rounds: the median of the rounds' ratios and in how many rounds `a`
/// was ahead, as ` (round by round: median 1.07x, ahead in 9 of 10)`.
/// The rounds of two contenders run seconds apart, so a machine that
/// changes speed between rounds moves both alike, where the means of the
/// whole window can differ by which speed each contender met more often.
fn paired(a: Option<&Measured>, b: Option<&Measured>) -> String {
    let (Some(a), Some(b)) = (a, b) else {
        return String::new();
    };
    let mut ratios: Vec<f64> = a
        .rounds_rps
        .iter()
        .zip(&b.rounds_rps)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    if ratios.len() < 2 {
        return String::new();
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    let ahead = ratios.iter().filter(|r| **r > 1.0).count();
    format!(" (round by round: median {median:.2}x, ahead in {ahead} of {n})")
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The targets of the issue, in req/s and in server CPU per request.
pub(crate) fn targets(rows: &[Row], redis_get_rps: Option<f64>) -> String {
    let refs = references(rows);
    let mut out = String::new();
    for (kind, label) in [
        (Kind::StrataLayer, "Router::layer"),
        (Kind::StrataRouter, "CachedRouter"),
    ] {
        let hit = find(rows, kind, Shape::Plain);
        let rps = hit.map(Measured::rps);
        let cpu = hit.and_then(server_cpu);
        target(
            &mut out,
            &format!("strata memory hit ({label}) ÷ ceiling, req/s"),
            div(rps, refs.ceiling_rps),
            0.90,
        );
        target(
            &mut out,
            &format!(
                "strata memory hit ({label}) ÷ ceiling, server CPU per request (ceiling ÷ strata)"
            ),
            div(refs.ceiling_cpu, cpu),
            0.90,
        );
        let fastest_peer = rows
            .iter()
            .filter(|r| r.contender.kind.is_peer() && r.contender.shape == Shape::Plain)
            .filter_map(Row::measured)
            .max_by(|a, b| a.rps().total_cmp(&b.rps()));
        target(
            &mut out,
            &format!(
                "strata memory hit ({label}) ÷ fastest peer hit, req/s{}",
                paired(hit, fastest_peer)
            ),
            div(rps, refs.peer_rps),
            1.0,
        );
        target(
            &mut out,
            &format!(
                "strata memory hit ({label}) ÷ best peer hit, server CPU per request (peer ÷ strata)"
            ),
            div(refs.peer_cpu, cpu),
            1.0,
        );
        let same_fields = find(rows, Kind::CeilingHeaders, Shape::Plain);
        if let (Some(strata), Some(same)) = (hit, same_fields) {
            let _ = writeln!(
                out,
                "- strata memory hit ({label}) ÷ the ceiling with a hit's 4 header fields: \
                 req/s {:.2}x{}, server CPU per request {:.2}x",
                strata.rps() / same.rps(),
                paired(hit, same_fields),
                div(server_cpu(same), server_cpu(strata)).unwrap_or(f64::NAN),
            );
        }
        let user = hit.and_then(server_user);
        target(
            &mut out,
            &format!("strata memory hit ({label}) ÷ ceiling, server user-space CPU per request"),
            div(refs.ceiling_user, user),
            0.90,
        );
        target(
            &mut out,
            &format!(
                "strata memory hit ({label}) ÷ best peer hit, server user-space CPU per request"
            ),
            div(refs.peer_user, user),
            1.0,
        );
        let not_modified = find(rows, kind, Shape::Conditional);
        target(
            &mut out,
            &format!("strata 304 ÷ strata hit ({label}), req/s"),
            div(not_modified.map(Measured::rps), rps),
            1.0,
        );
        target(
            &mut out,
            &format!("strata 304 ÷ strata hit ({label}), server CPU per request (hit ÷ 304)"),
            div(cpu, not_modified.and_then(server_cpu)),
            1.0,
        );
    }
    let tiered = find(rows, Kind::StrataTiered, Shape::Plain).map(Measured::rps);
    target(
        &mut out,
        "strata tiered L2 hit ÷ redis-benchmark GET (2 KiB, same connections), req/s",
        div(tiered, redis_get_rps),
        0.5,
    );
    gateway_ratios(&mut out, rows);
    out
}

/// The reverse proxies side by side (no target: the issue asks for the
/// figures): each against the static upstream, and the gateway ÷ nginx.
fn gateway_ratios(out: &mut String, rows: &[Row]) {
    let upstream = find(rows, Kind::Upstream, Shape::Plain);
    let gateway = find(rows, Kind::Gateway, Shape::Plain);
    let nginx = find(rows, Kind::Nginx, Shape::Plain);
    if gateway.is_none() && nginx.is_none() {
        return;
    }
    let show = |value: Option<f64>| opt(value, |v| format!("{v:.2}x"));
    let rps = |m: Option<&Measured>| m.map(Measured::rps);
    let cpu = |m: Option<&Measured>| m.and_then(server_cpu);
    for (label, hit) in [
        ("strata gateway hit", gateway),
        ("nginx proxy_cache hit", nginx),
    ] {
        let _ = writeln!(
            out,
            "- {label} ÷ upstream direct: req/s {}, server CPU per request (upstream ÷ {label}) {}",
            show(div(rps(hit), rps(upstream))),
            show(div(cpu(upstream), cpu(hit))),
        );
    }
    let _ = writeln!(
        out,
        "- strata gateway hit ÷ nginx proxy_cache hit: req/s {}{}, server CPU per request \
         (nginx ÷ gateway) {}, p99 latency (nginx ÷ gateway) {}{}",
        show(div(rps(gateway), rps(nginx))),
        paired(gateway, nginx),
        show(div(cpu(nginx), cpu(gateway))),
        show(div(
            nginx.and_then(|m| m.quantile_us(0.99)).map(f64::from),
            gateway.and_then(|m| m.quantile_us(0.99)).map(f64::from),
        )),
        if nginx.is_none() {
            " (nginx not measured)"
        } else {
            ""
        },
    );
}

/// Runs `redis-benchmark` GET of a 2 KiB value against `server` with
/// `connections` clients for about `seconds`; returns its requests/s.
pub(crate) fn redis_benchmark(
    server: &RedisServer,
    connections: usize,
    seconds: f64,
) -> Result<f64, String> {
    // Without -r every GET reads the one key `key:__rand_int__`; store the
    // 2 KiB value there first, or GET would answer nil.
    let value = "x".repeat(2048);
    server.command(&["SET", "key:__rand_int__", &value]);
    let run = |n: u64| -> Result<f64, String> {
        let output = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
            .args(["-t", "get", "-d", "2048", "-c", &connections.to_string()])
            .args(["-n", &n.to_string(), "--csv", "-q"])
            .output()
            .map_err(|e| format!("redis-benchmark: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find(|line| line.starts_with("\"GET\""))
            .and_then(|line| line.split(',').nth(1))
            .and_then(|rps| rps.trim_matches('"').parse::<f64>().ok())
            .ok_or_else(|| format!("no GET line in redis-benchmark output: {text}"))
    };
    // A short run sizes the real one.
    let probe = run(20_000)?;
    let n = ((probe * seconds) as u64).max(50_000);
    run(n)
}

/// The stampede table: one line per cache.
pub(crate) fn stampede_table(results: &[(Kind, Result<Stampede, String>)], n: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| cache | inner handler runs | 200 + full body | other responses | errors | connections | first request to last response |"
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for (kind, result) in results {
        match result {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "| {} | **{}** | {} | {} | {} | {} / {n} | {} |",
                    kind.label(),
                    thousands(s.handler_runs),
                    s.ok,
                    s.wrong,
                    s.errors,
                    s.connected,
                    millis(s.elapsed),
                );
            }
            Err(why) => {
                let _ = writeln!(out, "| {} | n/a | | | | | {why} |", kind.label());
            }
        }
    }
    out
}

fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
