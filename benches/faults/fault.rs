//! The faults, injected on the real `redis-server` from a thread of their
//! own: each blocks (a restart waits for `PING`, `DEBUG SLEEP` for its
//! answer), and none may stall the traffic's runtime.

use std::thread;
use std::time::{Duration, Instant};

use strata_testkit::{RedisServer, Reply};

use super::Phase;

/// How long the kill, the pause and the OOM last.
pub(crate) const FAULT_LENGTH: Duration = Duration::from_secs(3);

/// How far under the memory in use the OOM sets `maxmemory`.
const OOM_MARGIN: u64 = 64 * 1024;

/// One kind of Redis misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Killed (`SIGKILL`), restarted empty after [`FAULT_LENGTH`].
    Kill,
    /// `CLIENT PAUSE 3000 ALL`: every client waits.
    Pause,
    /// `DEBUG SLEEP 2`: the server answers nobody for two seconds (longer
    /// than the default 1 s staleness bound, so the bound shows).
    Stall,
    /// `maxmemory` just under the memory in use, `noeviction`: writes
    /// refused.
    Oom,
}

impl Fault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Stall => "stall",
            Self::Oom => "oom",
        }
    }
}

/// What the injector did in one phase.
#[derive(Debug, Clone)]
pub(crate) struct Injected {
    /// When the fault began (nominal for the baseline).
    pub(crate) started: Instant,
    /// When the injector's action ended: restart answering, pause
    /// expired, `DEBUG SLEEP` answered, `maxmemory 0` set.
    pub(crate) ended: Instant,
    /// What the injector has to say: a command that failed or was
    /// refused, or what the fault did (commands refused with OOM).
    pub(crate) note: Option<String>,
}

/// Injects every phase's fault at its time; returns the server (to be
/// dropped after the traffic) and what was done, phase by phase.
pub(crate) fn inject_all(
    mut server: RedisServer,
    phases: &[Phase],
) -> (RedisServer, Vec<Injected>) {
    let mut injected = Vec::with_capacity(phases.len());
    for phase in phases {
        sleep_until(phase.fault_at);
        let started = Instant::now();
        let note = match phase.fault {
            None => {
                sleep_until(started + FAULT_LENGTH);
                None
            }
            Some(fault) => {
                eprintln!("faults: {} at {:?}", fault.name(), started);
                inject(&mut server, fault, started)
            }
        };
        if let Some(note) = &note {
            eprintln!("faults: {note}");
        }
        injected.push(Injected {
            started,
            ended: Instant::now(),
            note,
        });
    }
    if let Some(last) = phases.last() {
        sleep_until(last.end);
    }
    (server, injected)
}

fn inject(server: &mut RedisServer, fault: Fault, started: Instant) -> Option<String> {
    match fault {
        Fault::Kill => {
            server.stop();
            sleep_until(started + FAULT_LENGTH);
            // Panics (with the log) if the port stays taken for 5 s.
            server.restart();
            None
        }
        Fault::Pause => {
            let millis = FAULT_LENGTH.as_millis().to_string();
            let problem = run(server, &["CLIENT", "PAUSE", &millis, "ALL"]);
            sleep_until(started + FAULT_LENGTH);
            problem
        }
        Fault::Stall => run(server, &["DEBUG", "SLEEP", "2"]),
        Fault::Oom => {
            let used = match strata_testkit::command(server.addr(), &["INFO", "memory"]) {
                Ok(info) => info
                    .to_string()
                    .lines()
                    .find_map(|line| line.strip_prefix("used_memory:"))
                    .and_then(|value| value.trim().parse::<u64>().ok()),
                Err(error) => return Some(format!("INFO memory: {error}")),
            };
            let Some(used) = used else {
                return Some("INFO memory without used_memory".to_owned());
            };
            // Just under the memory in use. At exactly `used_memory`,
            // nothing is refused: the INFO connection's buffers are freed
            // as it closes, and the cache's working set no longer grows.
            let limit = used.saturating_sub(OOM_MARGIN).max(1).to_string();
            let refused_before = oom_errors(server);
            let set = run(server, &["CONFIG", "SET", "maxmemory-policy", "noeviction"])
                .or_else(|| run(server, &["CONFIG", "SET", "maxmemory", &limit]));
            sleep_until(started + FAULT_LENGTH);
            let refused = oom_errors(server).saturating_sub(refused_before);
            // Reset even if setting failed half-way.
            let reset = run(server, &["CONFIG", "SET", "maxmemory", "0"]);
            Some(set.or(reset).map_or_else(
                || {
                    format!(
                        "maxmemory {limit} bytes (used {used}): {refused} commands refused with OOM"
                    )
                },
                |problem| format!("{problem} ({refused} commands refused with OOM)"),
            ))
        }
    }
}

/// How many commands Redis has refused with `OOM` since it started.
fn oom_errors(server: &RedisServer) -> u64 {
    strata_testkit::command(server.addr(), &["INFO", "errorstats"])
        .map(|info| {
            info.to_string()
                .lines()
                .find_map(|line| line.strip_prefix("errorstat_OOM:count="))
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Sends one command on a new connection; the problem, if it failed or
/// was refused.
fn run(server: &RedisServer, args: &[&str]) -> Option<String> {
    match strata_testkit::command(server.addr(), args) {
        Ok(Reply::Error(error)) => Some(format!("{args:?}: {error}")),
        Ok(_) => None,
        Err(error) => Some(format!("{args:?}: {error}")),
    }
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}
