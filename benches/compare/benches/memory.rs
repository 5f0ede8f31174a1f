//! Memory: 100,000 responses of 2 KiB in strata's memory store, and what
//! they cost in process RSS per stored body byte (issue 6, item 3).
//!
//! Each case runs in a child process of its own (this binary re-executed
//! with `--only CASE`), so that no case inherits another's heap:
//!
//! - `baseline`: the same 100,000 bodies as `Bytes` in a
//!   `HashMap<String, Bytes>` keyed by URL, the raw data plus a map;
//! - `tagged`: `GET /api/items/{n}/` through `cache.layer()` on an axum
//!   `Router`, called in process with `tower::ServiceExt::oneshot`; the
//!   handler sets `CachePolicy::public(1 h).tags(["items", "item:{n}"])` as
//!   a response extension, as the demo's material detail does;
//! - `untagged`: the same URLs, `CachePolicy::public(1 h)` as a route
//!   layer, no tags;
//! - `query`: `GET /api/items/?id={n}`, one path for every entry, no tags.
//!
//! Every body is 2,048 bytes of JSON with its id in it, built with an
//! exact capacity, so nothing is shared and no slack is kept. The store's
//! capacity (384 MiB) is large enough that nothing is evicted and small
//! enough that moka's frequency sketch is switched on (it is at half
//! capacity), as in a store in use. A child reads `VmRSS` from
//! `/proc/self/status` before the fill and after it (with moka's pending
//! work applied and every request and response dropped), checks that the
//! store holds 100,000 entries, evicted none and answers a sample of the
//! URLs with hits. Then it clears the store (`handle.clear()`), reads
//! `VmRSS` when `clear` returns and again once moka has dropped every
//! entry, and fills the store a second time, to see whether the freed
//! memory is used again.
//!
//! Run with `cargo bench -p strata-compare --bench memory` (about 15 s;
//! Linux only, as it reads `/proc`). Without `--bench` (as `cargo test
//! --all-targets` runs it) it prints one line and returns.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Path;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use strata::{Cache, CachePolicy, MemoryStore};
use tower::ServiceExt;

/// Entries stored.
const ENTRIES: usize = 100_000;
/// Bytes of each body.
const BODY: usize = 2048;
/// The memory store's capacity: room for 100,000 entries of up to 5.2 KiB
/// each as the store accounts them (a 2 KiB body with its headers, key,
/// labels and bookkeeping comes to about 4.4 KiB), and more than half
/// filled by them.
const CAPACITY: u64 = 512 * 1024 * 1024;
/// How long the entries stay fresh: far beyond the run.
const TTL: Duration = Duration::from_secs(3600);
/// Every how many entries one is read back as a hit after the fill.
const SAMPLE_EVERY: usize = 100;

/// The cases, in the order they run and are shown.
const CASES: [&str; 4] = ["baseline", "tagged", "untagged", "query"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|arg| arg == "--only") {
        let case = args.get(at + 1).map(String::as_str).unwrap_or_default();
        run_case(case);
        return;
    }
    if !args.iter().any(|arg| arg == "--bench") {
        println!("memory: skipped (run it with `cargo bench -p strata-compare --bench memory`)");
        return;
    }
    if rss().is_none() {
        println!("memory: skipped (no VmRSS in /proc/self/status on this system)");
        return;
    }
    report();
}

// ---------------------------------------------------------------------------
// The parent: runs each case in a child and prints the table.

/// Figures one child reported, by name.
type Figures = HashMap<String, f64>;

fn report() {
    let exe = std::env::current_exe().expect("the path of this bench binary");
    let mut results: Vec<(&str, Figures)> = Vec::new();
    for case in CASES {
        let output = Command::new(&exe)
            .args(["--only", case])
            .output()
            .expect("re-run this bench binary for one case");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "case {case} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let figures: Figures = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("figure "))
            .filter_map(|line| {
                let (name, value) = line.split_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        results.push((case, figures));
    }
    print!("{}", table(&results));
}

fn table(results: &[(&str, Figures)]) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let get = |figures: &Figures, name: &str| figures.get(name).copied().unwrap_or(f64::NAN);
    let baseline_per_entry = results
        .iter()
        .find(|(case, _)| *case == "baseline")
        .map_or(f64::NAN, |(_, f)| get(f, "growth") / get(f, "entries"));

    type Row = (&'static str, fn(&Figures, f64) -> String);
    let rows: [Row; 21] = [
        ("entries held", |f, _| int(f["entries"])),
        ("evictions", |f, _| {
            f.get("evictions")
                .map_or_else(|| "-".to_owned(), |v| int(*v))
        }),
        ("sampled hits", |f, _| {
            f.get("hits_ok").map_or_else(
                || "-".to_owned(),
                |ok| format!("{} / {}", int(*ok), int(f["hits_sampled"])),
            )
        }),
        ("body bytes held", |f, _| {
            format!("{:.1} MiB", f["body_bytes"] / MIB)
        }),
        ("RSS before fill", |f, _| {
            format!("{:.1} MiB", f["rss_before"] / MIB)
        }),
        ("RSS after fill", |f, _| {
            format!("{:.1} MiB", f["rss_after"] / MIB)
        }),
        ("RSS growth", |f, _| format!("{:.1} MiB", f["growth"] / MIB)),
        ("**RSS growth / body byte**", |f, _| {
            format!("**{:.3}x**", f["growth"] / f["body_bytes"])
        }),
        ("RSS growth / entry", |f, _| {
            format!("{} B", int(f["growth"] / f["entries"]))
        }),
        ("  of which not body", |f, _| {
            format!("{} B", int(f["growth"] / f["entries"] - BODY as f64))
        }),
        ("  over the baseline", |f, base| {
            format!("{} B", int(f["growth"] / f["entries"] - base))
        }),
        ("store's `bytes` figure", |f, _| {
            f.get("store_bytes").map_or_else(
                || "-".to_owned(),
                |b| format!("{:.1} MiB ({} B / entry)", b / MIB, int(b / f["entries"])),
            )
        }),
        ("`bytes` / RSS growth", |f, _| {
            f.get("store_bytes")
                .map_or_else(|| "-".to_owned(), |b| format!("{:.3}", b / f["growth"]))
        }),
        ("peak RSS (VmHWM)", |f, _| {
            format!("{:.1} MiB", f["hwm"] / MIB)
        }),
        ("entries left when `clear()` returns", |f, _| {
            f.get("left_after_clear")
                .map_or_else(|| "-".to_owned(), |v| int(*v))
        }),
        ("RSS when `clear()` returns", |f, _| {
            f.get("rss_clear_returned")
                .map_or_else(|| "-".to_owned(), |v| format!("{:.1} MiB", v / MIB))
        }),
        ("`stats()` calls until empty", |f, _| {
            f.get("drain_rounds").map_or_else(
                || "-".to_owned(),
                |v| format!("{} ({:.2} s)", int(*v), f["drain_secs"]),
            )
        }),
        ("RSS once emptied / dropped", |f, _| {
            format!("{:.1} MiB", f["rss_cleared"] / MIB)
        }),
        ("  growth returned", |f, _| {
            format!(
                "{:.0} %",
                // `+ 0.0` turns a rounded -0 into 0.
                (100.0 * (f["rss_after"] - f["rss_cleared"]) / f["growth"]).round() + 0.0
            )
        }),
        ("RSS after filling again", |f, _| {
            format!("{:.1} MiB", f["rss_refilled"] / MIB)
        }),
        ("fill rate", |f, _| {
            format!("{} entries/s", int(f["entries"] / f["fill_secs"]))
        }),
    ];

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Memory: {} entries with {BODY}-byte bodies\n",
        int(ENTRIES as f64)
    );
    out.push_str("| |");
    for (case, _) in results {
        let _ = write!(out, " {case} |");
    }
    out.push_str("\n|---|");
    for _ in results {
        out.push_str("---:|");
    }
    out.push('\n');
    for (name, cell) in rows {
        let _ = write!(out, "| {name} |");
        for (_, figures) in results {
            let _ = write!(out, " {} |", cell(figures, baseline_per_entry));
        }
        out.push('\n');
    }
    if let Some((_, tagged)) = results.iter().find(|(case, _)| *case == "tagged") {
        let _ = writeln!(
            out,
            "\nOne stored entry (`tagged`, `/api/items/0/`): `Entry::size()` = {} B, \
             key {} B, {} headers stored, {} headers for a 304.",
            int(get(tagged, "sample_size")),
            int(get(tagged, "sample_key_len")),
            int(get(tagged, "sample_headers")),
            int(get(tagged, "sample_304_headers")),
        );
    }
    let _ = writeln!(
        out,
        "\nAllocator: the system allocator ({}), no `#[global_allocator]`; each case in a \
         child process, filled from one current-thread tokio runtime (one malloc arena). \
         Store capacity {} MiB. RSS from `VmRSS` in /proc/self/status.",
        libc_version(),
        CAPACITY / (1024 * 1024),
    );
    out
}

/// `n` rounded, with thousands separated by commas.
fn int(n: f64) -> String {
    if !n.is_finite() {
        return "-".to_owned();
    }
    let rounded = n.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn libc_version() -> String {
    Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| {
            let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            format!("{version} malloc")
        })
        .unwrap_or_else(|| "malloc of an unknown libc".to_owned())
}

// ---------------------------------------------------------------------------
// The children: one case each, figures on stdout as `figure NAME VALUE`.

fn figure(name: &str, value: f64) {
    println!("figure {name} {value}");
}

/// `(VmRSS, VmHWM)` of this process in bytes.
fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: u64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn current_rss() -> f64 {
    rss().expect("VmRSS in /proc/self/status").0 as f64
}

/// The body of item `n`: 2,048 bytes of JSON, different for every `n`,
/// in an allocation of exactly that size.
fn body(n: usize) -> Bytes {
    let mut json = String::with_capacity(BODY);
    let _ = write!(
        json,
        r#"{{"id":{n},"title":"Item {n}","kind":"lesson","text":""#
    );
    let tail = "\"}";
    let mut i = n;
    while json.len() < BODY - tail.len() {
        i = i.wrapping_mul(31).wrapping_add(7);
        json.push(char::from(b'a' + (i % 26) as u8));
    }
    json.push_str(tail);
    assert_eq!((json.len(), json.capacity()), (BODY, BODY));
    Bytes::from(json)
}

fn url(case: &str, n: usize) -> String {
    if case == "query" {
        format!("/api/items/?id={n}")
    } else {
        format!("/api/items/{n}/")
    }
}

fn run_case(case: &str) {
    match case {
        "baseline" => baseline(),
        "tagged" | "untagged" | "query" => strata_case(case),
        _ => panic!("unknown case {case:?}; one of {CASES:?}"),
    }
}

fn baseline() {
    let rss_before = current_rss();
    let started = Instant::now();
    let mut map: HashMap<String, Bytes> = HashMap::new();
    for n in 0..ENTRIES {
        map.insert(url("baseline", n), body(n));
    }
    let fill_secs = started.elapsed().as_secs_f64();
    assert_eq!(map.len(), ENTRIES);
    let rss_after = current_rss();
    let (_, hwm) = rss().expect("VmHWM");
    let body_bytes: usize = map.values().map(Bytes::len).sum();
    drop(std::hint::black_box(map));
    let rss_cleared = current_rss();
    // Is the freed memory used again?
    let map: HashMap<String, Bytes> = (0..ENTRIES)
        .map(|n| (url("baseline", n), body(n)))
        .collect();
    assert_eq!(map.len(), ENTRIES);
    figure("rss_refilled", current_rss());
    drop(map);

    figure("entries", ENTRIES as f64);
    figure("body_bytes", body_bytes as f64);
    figure("rss_before", rss_before);
    figure("rss_after", rss_after);
    figure("growth", rss_after - rss_before);
    figure("hwm", hwm as f64);
    figure("rss_cleared", rss_cleared);
    figure("fill_secs", fill_secs);
}

fn router(case: &str, cache: &Cache) -> Router {
    let routes = match case {
        "tagged" => Router::new().route("/api/items/{id}/", get(tagged_item)),
        "untagged" => Router::new().route(
            "/api/items/{id}/",
            get(plain_item).layer(CachePolicy::public(TTL)),
        ),
        _ => Router::new().route(
            "/api/items/",
            get(query_item).layer(CachePolicy::public(TTL)),
        ),
    };
    routes.layer(cache.layer()).with_state(())
}

/// The demo's way: the handler names the entry's tags.
async fn tagged_item(Path(id): Path<usize>) -> impl IntoResponse {
    let policy = CachePolicy::public(TTL).tags(["items".to_owned(), format!("item:{id}")]);
    (
        Extension(policy),
        [(CONTENT_TYPE, "application/json")],
        body(id),
    )
}

async fn plain_item(Path(id): Path<usize>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], body(id))
}

async fn query_item(uri: Uri) -> impl IntoResponse {
    let id = uri
        .query()
        .and_then(|query| query.strip_prefix("id="))
        .and_then(|id| id.parse().ok())
        .expect("?id=N");
    ([(CONTENT_TYPE, "application/json")], body(id))
}

/// Calls the router once; the status, `cache-status` and body.
async fn call(router: &Router, url: String) -> (StatusCode, String, Bytes) {
    let request = Request::get(url).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, cache_status, body)
}

/// Requests every URL once; each must be a miss that the layer stores.
async fn fill(app: &Router, case: &str) {
    for n in 0..ENTRIES {
        let (status, cache_status, body) = call(app, url(case, n)).await;
        assert_eq!(status, StatusCode::OK, "{n}");
        assert!(!cache_status.contains("hit"), "{n}: {cache_status}");
        assert_eq!(body.len(), BODY, "{n}");
    }
}

fn strata_case(case: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = Cache::builder()
        .prefix("bench", "memory")
        .store(Arc::new(MemoryStore::new(CAPACITY)))
        .build();
    let handle = cache.handle();
    let app = router(case, &cache);

    let rss_before = current_rss();
    let started = Instant::now();
    runtime.block_on(fill(&app, case));
    let fill_secs = started.elapsed().as_secs_f64();
    // `stats` applies moka's pending work first, so this is the store as
    // it stays.
    let stats = handle.stats();
    let rss_after = current_rss();
    let (_, hwm) = rss().expect("VmHWM");

    assert_eq!(stats.entries, ENTRIES as u64, "{stats:?}");
    assert_eq!(stats.stores, ENTRIES as u64, "{stats:?}");
    assert_eq!(stats.evictions, 0, "{stats:?}");

    let sampled: Vec<usize> = (0..ENTRIES).step_by(SAMPLE_EVERY).collect();
    let hits_ok = runtime.block_on(async {
        let mut ok = 0;
        for &n in &sampled {
            let (status, cache_status, got) = call(&app, url(case, n)).await;
            if status == StatusCode::OK && cache_status == "strata; hit" && got == body(n) {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(hits_ok, sampled.len(), "sampled URLs that were not hits");

    let uri: Uri = url(case, 0).parse().unwrap();
    let key = handle.keys().url_key(&uri);
    let entry = handle.store().get_local(&key).expect("item 0 in the store");
    let response = entry.response().expect("a stored response");
    figure("sample_size", entry.size() as f64);
    figure("sample_key_len", entry.key.len() as f64);
    figure("sample_headers", response.headers().len() as f64);
    figure(
        "sample_304_headers",
        response.not_modified_headers().len() as f64,
    );
    drop(entry);

    // `clear` returns once nothing can be read any more; moka drops the
    // entries themselves in later housekeeping, in batches, 100 ms at most
    // per call. Each `stats` call runs one such round.
    let cleared = runtime.block_on(handle.clear()).unwrap();
    assert_eq!(cleared, ENTRIES as u64);
    let left_after_clear = handle.stats().entries;
    let rss_clear_returned = current_rss();
    let started = Instant::now();
    let mut rounds = 1;
    while handle.stats().entries > 0 {
        rounds += 1;
        assert!(rounds < 10_000, "the store never emptied after clear");
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let rss_cleared = current_rss();
    // Is the freed memory used again?
    runtime.block_on(fill(&app, case));
    assert_eq!(handle.stats().entries, ENTRIES as u64);
    figure("rss_refilled", current_rss());
    figure("left_after_clear", left_after_clear as f64);
    figure("rss_clear_returned", rss_clear_returned);
    figure("drain_rounds", f64::from(rounds));
    figure("drain_secs", drain_secs);

    figure("entries", stats.entries as f64);
    figure("evictions", stats.evictions as f64);
    figure("hits_ok", hits_ok as f64);
    figure("hits_sampled", sampled.len() as f64);
    figure("body_bytes", (ENTRIES * BODY) as f64);
    figure("store_bytes", stats.bytes as f64);
    figure("rss_before", rss_before);
    figure("rss_after", rss_after);
    figure("growth", rss_after - rss_before);
    figure("hwm", hwm as f64);
    figure("rss_cleared", rss_cleared);
    figure("fill_secs", fill_secs);
}
