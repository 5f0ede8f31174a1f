//! Compression and the cache, in process: a 20 KiB JSON response asked for
//! by a gzip client, side by side in one run (a current-thread runtime,
//! routers called with `tower::ServiceExt::oneshot`, no socket, the whole
//! body read each time, so time per request is the CPU one thread spends):
//!
//! - `builtin_hit`: the cache's built-in compression
//!   (`CacheBuilder::compression`): gzip, br and zstd stored when the
//!   response is, every request a hit answered with the stored gzip;
//! - `inside_hit`: tower-http's `CompressionLayer` inside the cache; the
//!   gzip variant is stored, so every request is a hit on compressed bytes;
//! - `outside_hit`: the cache inside `CompressionLayer`; the identity body
//!   is stored and every hit is compressed again;
//! - `uncached`: the handler under `CompressionLayer`, no cache.
//!
//! Cases run in interleaved rounds (forwards and backwards in turn), and the
//! report gives each case's median time per request over the rounds,
//! requests per second on one thread, and ratios.
//!
//! ```sh
//! cargo bench -p strata-bench --bench compression              # 7 rounds of 2 000 requests per case
//! cargo bench -p strata-bench --bench compression -- --quick   # 3 rounds of 300
//! ```
//!
//! `cargo test --all-targets` runs bench targets without `--bench`: then
//! this prints a line and returns.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use http_body_util::BodyExt;
use strata::{Cache, CachePolicy};
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;

/// About 20 KiB of JSON.
fn document() -> String {
    let items: Vec<String> = (0..384)
        .map(|i| format!(r#"{{"id":{i},"title":"Material number {i}","done":false}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

fn routes(body: &str) -> Router {
    let body = body.to_owned();
    Router::new().route(
        "/data",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        })
        .layer(CachePolicy::public(Duration::from_secs(600))),
    )
}

struct Case {
    name: &'static str,
    router: Router,
    /// Kept alive with its router.
    _cache: Option<Cache>,
}

fn cases(body: &str) -> Vec<Case> {
    let inside = Cache::builder().build();
    let outside = Cache::builder().build();
    let builtin = Cache::builder()
        .compression(strata::compress::Compression::default())
        .build();
    vec![
        Case {
            name: "builtin_hit",
            router: routes(body).layer(builtin.layer()),
            _cache: Some(builtin),
        },
        Case {
            name: "inside_hit",
            router: routes(body)
                .layer(CompressionLayer::new())
                .layer(inside.layer()),
            _cache: Some(inside),
        },
        Case {
            name: "outside_hit",
            router: routes(body)
                .layer(outside.layer())
                .layer(CompressionLayer::new()),
            _cache: Some(outside),
        },
        Case {
            name: "uncached",
            router: routes(body).layer(CompressionLayer::new()),
            _cache: None,
        },
    ]
}

/// One gzip request; the encoded length and the `Cache-Status`.
async fn once(router: &Router) -> (usize, String) {
    let request = Request::get("/data")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.headers().get(header::CONTENT_ENCODING).unwrap(),
        "gzip"
    );
    let status = response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (bytes.len(), status)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("compression bench: run with `cargo bench -p strata-bench --bench compression`");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, per_round) = if quick { (3, 300) } else { (7, 2000) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = document();
    let cases = cases(&body);
    runtime.block_on(async {
        for case in &cases {
            once(&case.router).await;
            let (length, status) = once(&case.router).await;
            let expected = if case.name == "uncached" {
                ""
            } else {
                "strata; hit"
            };
            assert_eq!(status, expected, "{}: warmed", case.name);
            println!(
                "{:<12} {} bytes of JSON, {length} bytes gzip, cache-status {status:?}",
                case.name,
                body.len()
            );
        }
    });
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..cases.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let router = &cases[index].router;
            let started = Instant::now();
            runtime.block_on(async {
                for _ in 0..per_round {
                    std::hint::black_box(once(router).await);
                }
            });
            times[index].push(started.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    println!("\n{rounds} rounds of {per_round} requests per case, median per request:\n");
    println!("| case | µs/request | requests/s (one thread) | ÷ outside_hit | ÷ uncached |");
    println!("|---|---:|---:|---:|---:|");
    let outside = medians[2];
    let uncached = medians[3];
    for (case, median) in cases.iter().zip(&medians) {
        println!(
            "| {} | {median:.1} | {:.0} | {:.3}x | {:.3}x |",
            case.name,
            1e6 / median,
            median / outside,
            median / uncached
        );
    }
}
