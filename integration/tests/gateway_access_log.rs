//! The gateway's access log: one line per request. (Its own test binary:
//! a thread-local subscriber sees events only when no other test in the
//! process has the same callsites cached as uninteresting.)

mod common;
mod gateway_support;

use common::Captured;
use gateway_support::*;

/// One access line per request: method, path without its query, status,
/// `Cache-Status`, the upstream's time (`-` on a hit).
#[tokio::test]
async fn every_request_leaves_one_access_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter(tracing_subscriber::EnvFilter::new("gateway::access=info"))
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let t = setup().await;
    t.stored("/r/logged?cc=max-age=60&token=secret").await;
    let log = captured.text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("gateway::access"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    for needle in [
        "method=GET",
        "path=\"/r/logged\"",
        "status=200",
        "upstream_ms=",
        "total_ms=",
    ] {
        assert!(
            lines.iter().all(|line| line.contains(needle)),
            "{needle}: {log}"
        );
    }
    assert!(lines[0].contains("fwd=uri-miss; stored"), "{log}");
    assert!(
        !lines[0].contains("upstream_ms=\"-\"") && !lines[0].contains("upstream_ms=-"),
        "{log}"
    );
    assert!(lines[1].contains("cache_status=\"strata; hit\""), "{log}");
    assert!(
        lines[1].contains("upstream_ms=-") || lines[1].contains("upstream_ms=\"-\""),
        "{log}"
    );
    assert!(
        !log.contains("secret"),
        "the query stays out of the log: {log}"
    );
}
