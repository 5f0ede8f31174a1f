//! Command-line options of the comparison bench.

use std::path::PathBuf;
use std::time::Duration;

/// What to run and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Load before the measured window, per contender.
    pub(crate) warmup: Duration,
    /// The measured window, per contender.
    pub(crate) duration: Duration,
    /// Interleaved rounds the warm-up and the window are split into.
    pub(crate) rounds: u32,
    /// Keep-alive connections of the load generator.
    pub(crate) connections: usize,
    /// Concurrent first requests of the stampede test.
    pub(crate) stampede: usize,
    /// Where the SVG chart goes.
    pub(crate) chart: PathBuf,
    /// Only the contenders whose name contains this, or one of its
    /// `|`-separated parts (all when `None`).
    pub(crate) filter: Option<String>,
    /// Skip the stampede test.
    pub(crate) no_stampede: bool,
}

impl Options {
    /// Parses the arguments after `--` (cargo adds `--bench`, ignored).
    pub(crate) fn parse(args: &[String], default_chart: PathBuf) -> Result<Self, String> {
        let mut options = Self {
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            rounds: 5,
            connections: 32,
            stampede: 1000,
            chart: default_chart,
            filter: None,
            no_stampede: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--bench" => {}
                "--quick" => {
                    options.warmup = Duration::from_secs(1);
                    options.duration = Duration::from_secs(3);
                    options.rounds = 3;
                }
                "--duration" => options.duration = seconds(&value("--duration")?)?,
                "--warmup" => options.warmup = seconds(&value("--warmup")?)?,
                "--rounds" => {
                    options.rounds =
                        u32::try_from(count(&value("--rounds")?)?).map_err(|e| e.to_string())?
                }
                "--connections" => options.connections = count(&value("--connections")?)?,
                "--stampede" => options.stampede = count(&value("--stampede")?)?,
                "--chart" => options.chart = PathBuf::from(value("--chart")?),
                "--filter" => options.filter = Some(value("--filter")?),
                "--no-stampede" => options.no_stampede = true,
                "--help" | "-h" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        if options.duration.is_zero() {
            return Err("--duration must be above 0".to_owned());
        }
        Ok(options)
    }

    /// Whether the contender called `name` is selected by `--filter`.
    pub(crate) fn selects(&self, name: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| f.split('|').any(|part| name.contains(part)))
    }
}

/// What `--help` prints.
const USAGE: &str = "options: --quick (1 s warm-up + 3 s per contender), --warmup S (2), \
--duration S (10), --rounds N (5; 3 with --quick), --connections N (32), --stampede N (1000), --no-stampede, \
--chart PATH (docs/img/compare.svg), --filter TEXT (only contenders whose name contains TEXT, \
or one of its |-separated parts: --filter 'gateway|nginx')";

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("not a number of seconds: {text}"))
}

fn count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("not a positive count: {text}"))
}
