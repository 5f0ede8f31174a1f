//! Run with: cargo run --release --example thebot
//!
//! A demo JSON API (a learning platform: materials, assignments, reports,
//! analytics, notifications, dashboards) behind strata, over a SQLite
//! database whose every query sleeps `DB_LATENCY_MS` and is counted, so
//! hits show as fast answers and a flat query count. It needs no setup: the
//! database is a file in the system temp dir, created and seeded on first
//! start, and by default the cache is in process memory.
//!
//! Instances started with the same `DATABASE_PATH` share their data: a write
//! through one is what the others' database returns. With one Redis as well
//! (`USE_REDIS_CACHE=true`, the same `REDIS_URL` and `CACHE_ENV`), they share
//! their cache too, and a write on one invalidates it on all (see [Two
//! instances](#two-instances-one-database-one-redis)).
//!
//! # Environment
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `BIND` | `127.0.0.1:3000` | address to listen on |
//! | `RUST_LOG` | `info` | log filter, e.g. `strata=debug` for every cache decision and invalidation |
//! | `ADMIN_TOKEN` | random, printed at start | `Authorization: Bearer <ADMIN_TOKEN>` opens `/api/core/cache-*` |
//! | `DATABASE_PATH` | `thebot.sqlite3` in the system temp dir (`/tmp` on Linux) | the SQLite file; created and seeded if missing, used as it is otherwise; `:memory:` for a database of this process alone |
//! | `DB_LATENCY_MS` | `150` | the simulated cost of one database query (slept on top of SQLite's own) |
//! | `CACHE_ENV` | `development` | the key prefix's environment (`thebot:<env>:`) |
//! | `USE_REDIS_CACHE` | off | `true`: memory in front of Redis (tiered store) |
//! | `REDIS_URL` | none | the Redis to use with `USE_REDIS_CACHE=true`, e.g. `redis://127.0.0.1:6379/1` |
//!
//! The other `strata::Config::from_env` variables apply too (`CACHE_APP`,
//! default `thebot` here; `REDIS_CLUSTER_URLS`; `CACHE_TTL_<PROFILE>` in
//! seconds, e.g. `CACHE_TTL_REPORTS=60`).
//!
//! `Authorization: Bearer user-<id>` makes a request user `<id>`.
//!
//! # Routes (all JSON)
//!
//! | Route | Caching |
//! |---|---|
//! | `GET /api/materials/` | public 30 min, tag `materials` |
//! | `POST /api/materials/` `{"title": ..}` | invalidates `materials` |
//! | `GET /api/materials/{id}/` | public 1 h, tags `materials`, `material:{id}`; 404 for unknown ids, not stored |
//! | `PUT /api/materials/{id}/` `{"title": ..}` | invalidates the list (its URL) and `material:{id}`; the other details stay cached |
//! | `GET /api/assignments/` / `POST` | public 5 min, tag `assignments` / invalidates it |
//! | `GET /api/reports/` | private 5 min (401 without a user) |
//! | `GET /api/analytics/` | public 30 min |
//! | `GET /api/notifications/` | private 1 min |
//! | `GET /api/dashboard/` | private 5 min |
//! | `GET /api/realtime/` | `no-cache`: never stored, ETag and 304 |
//! | `POST /api/auth/logout/` | drops the caller's per-user entries |
//! | `GET /api/core/db-stats/` | not cached: `{"queries": n}`, this instance's queries since it started |
//! | `/api/core/cache-stats/`, `cache-health/`, `cache-clear/`, `cache-reset-stats/`, `cache-invalidate/` | the admin endpoints (`strata::admin`), admin only |
//!
//! Writes with a body that is not `{"title": "..."}` get 400 with a JSON
//! `{"error": ..}`.
//!
//! # A curl session
//!
//! ```text
//! $ ADMIN_TOKEN=s3cret cargo run --release --example thebot
//! $ curl -si localhost:3000/api/materials/ | grep -i -e cache-status -e etag
//! cache-status: strata; fwd=uri-miss; stored        # ~150 ms: one query
//! etag: "…"
//! $ curl -si localhost:3000/api/materials/ | grep -i cache-status
//! cache-status: strata; hit                         # no query
//! $ curl -si localhost:3000/api/materials/ -H 'if-none-match: "…"'
//! HTTP/1.1 304 Not Modified
//! $ curl -s localhost:3000/api/dashboard/ -H 'authorization: Bearer user-1'
//! {"assignments_open":5,"greeting":"Hello, user-1",...,"user":"1"}
//! $ curl -si localhost:3000/api/dashboard/               # anonymous
//! HTTP/1.1 401 Unauthorized
//! $ curl -s -X PUT localhost:3000/api/materials/3/ -d '{"title":"Decimals"}'
//! $ curl -s localhost:3000/api/materials/3/               # the new title
//! $ curl -s localhost:3000/api/core/db-stats/
//! {"queries":4}
//! $ curl -si localhost:3000/api/core/cache-stats/         # 401
//! $ curl -s localhost:3000/api/core/cache-stats/ -H 'authorization: Bearer s3cret'
//! {"hit_rate":...,"hits":...,...}
//! $ curl -s -X POST localhost:3000/api/core/cache-invalidate/ \
//!     -H 'authorization: Bearer s3cret' -H 'content-type: application/json' \
//!     -d '{"tag":"materials"}'
//! ```
//!
//! The data outlives the process: delete the file (and its `-wal` and
//! `-shm` companions, while no instance runs) to start from the seed again,
//! e.g. `rm /tmp/thebot.sqlite3*`.
//!
//! # Two instances, one database, one Redis
//!
//! Start a Redis (`redis-server --port 6379`), then two instances on two
//! ports, over the same default database file and the same Redis:
//!
//! ```text
//! $ export USE_REDIS_CACHE=true REDIS_URL=redis://127.0.0.1:6379/1 ADMIN_TOKEN=s3cret
//! $ BIND=127.0.0.1:3000 cargo run --release --example thebot    # A
//! $ BIND=127.0.0.1:3001 cargo run --release --example thebot    # B, another terminal
//! $ curl -si localhost:3000/api/materials/8/ | grep -i cache-status
//! cache-status: strata; fwd=uri-miss; stored        # A queried, stored in Redis
//! $ curl -si localhost:3001/api/materials/8/ | grep -i cache-status
//! cache-status: strata; hit                         # B: from Redis, no query
//! $ curl -s localhost:3001/api/core/db-stats/
//! {"queries":0}
//! $ curl -s -X PUT localhost:3000/api/materials/8/ -d '{"title":"Quadratics, revised"}'
//! $ curl -s localhost:3001/api/materials/8/         # B: the new title
//! {"id":8,"title":"Quadratics, revised"}
//! ```
//!
//! B answers with A's write: the write went to the shared file, and its
//! invalidation reached B's memory through Redis. Without
//! `USE_REDIS_CACHE`, each instance's cache is its own: B reads A's write
//! from the database only once its own copy is gone (its TTL, here an hour,
//! or `cache-invalidate` on B), while a page B never stored shows it at once.

#[path = "thebot/app.rs"]
mod app;

use std::collections::hash_map::RandomState;
use std::error::Error;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use strata::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // `RUST_LOG` as usual (`RUST_LOG=strata=debug` shows every decision
    // and invalidation); `info` otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let latency_ms: u64 = match std::env::var("DB_LATENCY_MS") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("DB_LATENCY_MS={value:?} is not a number of milliseconds"))?,
        Err(_) => 150,
    };
    let admin_token = match std::env::var("ADMIN_TOKEN") {
        Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
        _ => random_token(),
    };

    let mut config = Config::from_env()?;
    if std::env::var_os("CACHE_APP").is_none() {
        config.app = "thebot".to_owned();
    }
    let cache = app::cache_from_config(&config)?;
    let database_path = std::env::var_os("DATABASE_PATH")
        .filter(|path| !path.is_empty())
        .map_or_else(
            || std::env::temp_dir().join("thebot.sqlite3"),
            PathBuf::from,
        );
    let db = app::Db::open(&database_path, Duration::from_millis(latency_ms))
        .map_err(|e| format!("the database {}: {e}", database_path.display()))?;
    let mut ttl = app::profiles();
    ttl.override_with(&config.ttl);
    let router = app::app_with_ttl(&cache, db.clone(), &admin_token, ttl);

    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|error| {
            format!("cannot listen on {bind} (set BIND to another address): {error}")
        })?;
    let store = if config.use_redis {
        match config.redis_url.as_deref() {
            Some(url) if config.redis_cluster_urls.is_empty() => {
                format!("memory + Redis at {}", redact(url))
            }
            _ => format!(
                "memory + Redis Cluster ({} nodes)",
                config.redis_cluster_urls.len()
            ),
        }
    } else {
        "memory".to_owned()
    };
    println!("thebot listening on http://{}", listener.local_addr()?);
    println!(
        "  cache store:   {store}, key prefix {}",
        config.key_prefix()
    );
    println!(
        "  database:      {} ({})",
        database_path.display(),
        if db.seeded() {
            "created and seeded"
        } else {
            "opened as it was"
        }
    );
    println!("  db latency:    {latency_ms} ms per query");
    println!("  admin token:   {admin_token}");
    println!("  user requests: Authorization: Bearer user-<id>");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// 128 random bits as hex, from the standard library's randomly keyed
/// hasher (no extra dependency for a demo's default token).
fn random_token() -> String {
    let half = || RandomState::new().build_hasher().finish();
    format!("{:016x}{:016x}", half(), half())
}

/// The URL without a password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
