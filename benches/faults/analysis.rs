//! Judging the record: failed requests, stale reads, staleness windows and
//! recovery times per phase (definitions in the bench's module doc), and
//! the table printed at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::fault::Injected;
use super::traffic::{Read, Record, WRITTEN};
use super::{Options, Phase};

/// A read closer than this to its phase's end leaves the recovery open.
const OPEN_MARGIN: Duration = Duration::from_secs(1);

/// The phases, what was injected in each, and what the traffic saw.
#[derive(Debug)]
pub(crate) struct Run {
    phases: Vec<Phase>,
    injected: Vec<Injected>,
    record: Record,
    /// Per material, the successful writes: (response, version), in order.
    acknowledged: Vec<Vec<(Instant, u32)>>,
}

impl Run {
    pub(crate) fn new(phases: Vec<Phase>, injected: Vec<Injected>, record: Record) -> Self {
        let mut acknowledged = vec![Vec::new(); WRITTEN];
        for write in record.writes.iter().filter(|w| w.ok) {
            acknowledged[write.material].push((write.responded, write.version));
        }
        for writes in &mut acknowledged {
            writes.sort_unstable();
        }
        Self {
            phases,
            injected,
            record,
            acknowledged,
        }
    }

    /// The newest version of `material` whose write had answered before
    /// `at` (0: none had).
    fn acknowledged_before(&self, material: usize, at: Instant) -> u32 {
        let writes = &self.acknowledged[material];
        let answered = writes.partition_point(|&(responded, _)| responded < at);
        writes[..answered]
            .iter()
            .map(|&(_, version)| version)
            .max()
            .unwrap_or(0)
    }

    /// The materials this read showed older than an answered write.
    fn stale_in(&self, read: &Read) -> Vec<(usize, u32)> {
        read.versions
            .iter()
            .enumerate()
            .filter_map(|(material, shown)| {
                let shown = (*shown)?;
                (shown < self.acknowledged_before(material, read.started))
                    .then_some((material, shown))
            })
            .collect()
    }
}

/// One phase's figures.
#[derive(Debug, Default)]
struct Figures {
    reads: usize,
    writes: usize,
    failed_reads: usize,
    failed_writes: usize,
    stale: usize,
    max_window: Duration,
    unhealthy_polls: usize,
    recovery_requests: Option<Duration>,
    recovery_health: Option<Duration>,
    /// Whether a bad request or poll came within [`OPEN_MARGIN`] of the
    /// phase's end: not recovered.
    open_requests: bool,
    open_health: bool,
    read_p99: Duration,
    stale_by_status: BTreeMap<String, usize>,
    stale_by_instance: [usize; super::INSTANCES],
}

fn figures(run: &Run, phase: &Phase, injected: &Injected) -> Figures {
    let within = |at: Instant| phase.start <= at && at < phase.end;
    let fault_end = injected.ended;
    let mut out = Figures::default();
    let mut bad_after = Vec::new();
    let mut latencies = Vec::new();
    // Stale reads of each material: (start, version shown).
    let mut stale_reads: Vec<Vec<(Instant, u32)>> = vec![Vec::new(); WRITTEN];
    for read in &run.record.reads {
        let stale = run.stale_in(read);
        for &(material, shown) in &stale {
            stale_reads[material].push((read.started, shown));
        }
        if !within(read.started) {
            continue;
        }
        out.reads += 1;
        latencies.push(read.ended - read.started);
        let bad = !read.ok || !stale.is_empty();
        if !read.ok {
            out.failed_reads += 1;
        }
        if !stale.is_empty() {
            out.stale += 1;
            *out.stale_by_status
                .entry(status_class(&read.cache_status))
                .or_default() += 1;
            out.stale_by_instance[read.instance] += 1;
        }
        if bad && read.started >= fault_end {
            bad_after.push(read.started);
        }
    }
    for write in &run.record.writes {
        if within(write.started) {
            out.writes += 1;
            if !write.ok {
                out.failed_writes += 1;
                if write.started >= fault_end {
                    bad_after.push(write.started);
                }
            }
        }
        if write.ok && within(write.responded) {
            let window = stale_reads[write.material]
                .iter()
                .filter(|&&(started, shown)| started >= write.responded && shown < write.version)
                .map(|&(started, _)| started - write.responded)
                .max()
                .unwrap_or_default();
            out.max_window = out.max_window.max(window);
        }
    }
    let last_bad = bad_after.into_iter().max();
    out.recovery_requests = last_bad.map(|at| at - fault_end);
    out.open_requests = last_bad.is_some_and(|at| phase.end - at < OPEN_MARGIN);
    let unhealthy: Vec<Instant> = run
        .record
        .polls
        .iter()
        .filter(|poll| !poll.ok && within(poll.at))
        .map(|poll| poll.at)
        .collect();
    out.unhealthy_polls = unhealthy.len();
    let last_unhealthy = unhealthy.into_iter().filter(|&at| at >= fault_end).max();
    out.recovery_health = last_unhealthy.map(|at| at - fault_end);
    out.open_health = last_unhealthy.is_some_and(|at| phase.end - at < OPEN_MARGIN);
    latencies.sort_unstable();
    if !latencies.is_empty() {
        out.read_p99 = latencies[(latencies.len() * 99).div_ceil(100).max(1) - 1];
    }
    out
}

/// `hit`, `fwd=uri-miss`, ...: the `cache-status` without the cache's name
/// and the `stored` flag.
fn status_class(status: &str) -> String {
    let parts: Vec<&str> = status
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty() && *part != "strata" && *part != "stored")
        .collect();
    if parts.is_empty() {
        "(none)".to_owned()
    } else {
        parts.join("; ")
    }
}

fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn recovery(value: Option<Duration>, open: bool, rest: Duration) -> String {
    match value {
        None => "0".to_owned(),
        Some(_) if open => format!("> {}", ms(rest)),
        Some(value) => ms(value),
    }
}

pub(crate) fn report(run: &Run, options: &Options) {
    println!();
    println!(
        "| phase | fault (actual) | reads + writes | failed (reads + writes) | unhealthy polls | stale reads | max staleness window | recovery, requests | recovery, health | read p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut details = Vec::new();
    for (phase, injected) in run.phases.iter().zip(&run.injected) {
        let name = phase.fault.map_or("baseline", |fault| fault.name());
        let figures = figures(run, phase, injected);
        let rest = phase.end.saturating_duration_since(injected.ended);
        println!(
            "| {name} | {} | {} + {} | {} ({} + {}) | {} | {} | {} | {} | {} | {} |",
            if phase.fault.is_some() {
                ms(injected.ended - injected.started)
            } else {
                "none".to_owned()
            },
            figures.reads,
            figures.writes,
            figures.failed_reads + figures.failed_writes,
            figures.failed_reads,
            figures.failed_writes,
            figures.unhealthy_polls,
            figures.stale,
            ms(figures.max_window),
            recovery(figures.recovery_requests, figures.open_requests, rest),
            recovery(figures.recovery_health, figures.open_health, rest),
            ms(figures.read_p99),
        );
        details.push((name, figures, injected.note.clone()));
    }
    println!();
    println!(
        "Stale reads by cache-status and by instance (reader's view), and what the injector saw:"
    );
    for (name, figures, note) in details {
        let statuses: Vec<String> = figures
            .stale_by_status
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        println!(
            "  {name}: {} | by instance {:?}{}",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            },
            figures.stale_by_instance,
            note.map_or(String::new(), |note| format!(" | injector: {note}")),
        );
    }
    println!(
        "(phases of {} s; the fault starts {} s in; recovery is measured from the fault's end)",
        options.phase.as_secs(),
        (options.phase / 5).as_secs_f64(),
    );
}
