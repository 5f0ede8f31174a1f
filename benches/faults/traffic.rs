//! The three instances, and the readers, writers and health pollers that
//! drive them; every request is recorded with its start, its end and what
//! it returned, for `analysis.rs` to judge.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::Value;
use strata::redis::{RedisStore, TieredStore};
use strata::{Config, MemoryStore};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{INSTANCES, Options, app};

/// The materials the writers change (ids 1 to this), and the readers read.
pub(crate) const WRITTEN: usize = 4;
const ADMIN: &str = "faults-admin-token";
/// Every client request gives up after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_EVERY: Duration = Duration::from_millis(200);

/// One demo instance on its loopback socket.
#[derive(Debug)]
pub(crate) struct Instance {
    base: String,
    pub(crate) server: JoinHandle<()>,
}

/// What a read returned for the written materials: the version of each
/// (index `id - 1`) that it showed, `None` for those it did not show.
pub(crate) type Versions = [Option<u32>; WRITTEN];

#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    pub(crate) ok: bool,
    pub(crate) versions: Versions,
    /// The `cache-status` header, for telling where stale reads came from.
    pub(crate) cache_status: String,
    pub(crate) instance: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Write {
    /// Index of the material (`id - 1`).
    pub(crate) material: usize,
    pub(crate) version: u32,
    pub(crate) started: Instant,
    pub(crate) responded: Instant,
    pub(crate) ok: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Poll {
    pub(crate) at: Instant,
    pub(crate) ok: bool,
}

/// Everything the traffic saw.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) reads: Vec<Read>,
    pub(crate) writes: Vec<Write>,
    pub(crate) polls: Vec<Poll>,
}

/// Starts [`INSTANCES`] instances over one database file and one Redis,
/// each with its own tiered store, the way `examples/thebot.rs` builds
/// them with `USE_REDIS_CACHE=true`, and waits for their subscriptions.
pub(crate) async fn start_instances(
    redis_url: &str,
    database: &Path,
    options: &Options,
) -> Vec<Instance> {
    let config = Config {
        app: "thebot".to_owned(),
        env: "faults".to_owned(),
        use_redis: true,
        redis_url: Some(redis_url.to_owned()),
        ..Config::default()
    };
    let mut instances = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        // One after the other: the first creates and seeds the file.
        let db = app::Db::open(database, options.db_latency).expect("the shared SQLite file");
        // As `strata::redis::store_from_config`, keeping the tiered store
        // to wait for its subscription.
        let redis = RedisStore::standalone(redis_url)
            .prefix(config.key_prefix())
            .op_timeout(Duration::from_millis(config.redis_timeout_ms))
            .build()
            .expect("a Redis store");
        let tiered =
            TieredStore::new(MemoryStore::new(config.memory_bytes), redis).expect("a tiered store");
        let cache = config
            .builder()
            .store(Arc::new(tiered.clone()))
            .user(app::user_of)
            .build();
        let router = app::app(&cache, db, ADMIN);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        assert!(
            tiered.wait_subscribed(Duration::from_secs(5)).await,
            "an instance did not subscribe to the bus within 5 s"
        );
        instances.push(Instance { base, server });
    }
    instances
}

/// Runs the readers, writers and pollers from `start` to `end`.
pub(crate) async fn run(
    instances: &[Instance],
    start: Instant,
    end: Instant,
    options: &Options,
) -> Record {
    let client = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(options.vus * 4)
        .build()
        .unwrap();
    let bases: Arc<[String]> = instances.iter().map(|i| i.base.clone()).collect();

    let mut readers = Vec::new();
    for reader in 0..INSTANCES * options.vus {
        let mut rng = Rng::new(options.seed, 1 + reader as u64);
        let (client, bases) = (client.clone(), Arc::clone(&bases));
        let offset = options.interval.mul_f64(rng.unit());
        let mut ticker = ticker(start + offset, options.interval);
        readers.push(tokio::spawn(async move {
            let mut reads = Vec::new();
            loop {
                let started = ticker.tick().await.into_std();
                if started >= end {
                    return reads;
                }
                let instance = rng.below(INSTANCES as u64) as usize;
                let path = if rng.below(5) == 0 {
                    "/api/materials/".to_owned()
                } else {
                    format!("/api/materials/{}/", 1 + rng.below(WRITTEN as u64))
                };
                let url = format!("{}{path}", bases[instance]);
                reads.push(read(&client, &url, instance).await);
            }
        }));
    }

    let mut writers = Vec::new();
    for material in 0..WRITTEN {
        let mut rng = Rng::new(options.seed, 1000 + material as u64);
        let (client, bases) = (client.clone(), Arc::clone(&bases));
        let every = options.write_every * WRITTEN as u32;
        let mut ticker = ticker(start + options.write_every * material as u32, every);
        writers.push(tokio::spawn(async move {
            let mut writes = Vec::new();
            for version in 1u32.. {
                if ticker.tick().await.into_std() >= end {
                    break;
                }
                let started = Instant::now();
                let instance = rng.below(INSTANCES as u64) as usize;
                let id = material + 1;
                let url = format!("{}/api/materials/{id}/", bases[instance]);
                let body = format!("{{\"title\":\"faults m{id} v{version}\"}}");
                let sent = client
                    .put(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = match sent {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                writes.push(Write {
                    material,
                    version,
                    started,
                    responded: Instant::now(),
                    ok,
                });
            }
            writes
        }));
    }

    let mut pollers = Vec::new();
    for base in bases.iter() {
        let client = client.clone();
        let url = format!("{base}/api/core/cache-health/");
        let mut ticker = ticker(start, HEALTH_EVERY);
        pollers.push(tokio::spawn(async move {
            let mut polls = Vec::new();
            loop {
                let at = ticker.tick().await.into_std();
                if at >= end {
                    return polls;
                }
                let ok = match client.get(&url).bearer_auth(ADMIN).send().await {
                    Ok(response) => response.status().is_success(),
                    Err(_) => false,
                };
                polls.push(Poll { at, ok });
            }
        }));
    }

    let mut record = Record::default();
    for task in readers {
        record.reads.extend(task.await.unwrap());
    }
    for task in writers {
        record.writes.extend(task.await.unwrap());
    }
    for task in pollers {
        record.polls.extend(task.await.unwrap());
    }
    record
}

/// A ticker that starts late rather than bursting to catch up.
fn ticker(first: Instant, every: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(first.into(), every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

async fn read(client: &Client, url: &str, instance: usize) -> Read {
    let started = Instant::now();
    let mut versions = [None; WRITTEN];
    let mut cache_status = String::new();
    let ok = match client.get(url).send().await {
        Ok(response) => {
            cache_status = response
                .headers()
                .get("cache-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let status = response.status();
            match response.json::<Value>().await {
                Ok(body) if status.is_success() => {
                    versions_of(&body, &mut versions);
                    true
                }
                _ => false,
            }
        }
        Err(_) => false,
    };
    Read {
        started,
        ended: Instant::now(),
        ok,
        versions,
        cache_status,
        instance,
    }
}

/// The versions a detail (`{"id", "title"}`) or the list (`{"materials":
/// [..]}`) shows of the written materials: `v{n}` in a title written here,
/// 0 for the seeded title.
fn versions_of(body: &Value, versions: &mut Versions) {
    let one = |material: &Value, versions: &mut Versions| {
        let id = material["id"].as_u64().unwrap_or(0) as usize;
        if (1..=WRITTEN).contains(&id) {
            let title = material["title"].as_str().unwrap_or_default();
            let version = title
                .rsplit_once(" v")
                .filter(|_| title.starts_with("faults m"))
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(0);
            versions[id - 1] = Some(version);
        }
    };
    match body["materials"].as_array() {
        Some(list) => list.iter().for_each(|material| one(material, versions)),
        None => one(body, versions),
    }
}

/// A small, fast, seedable generator (splitmix64), one stream per task.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        Self(seed ^ stream.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

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

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
