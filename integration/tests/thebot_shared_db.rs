//! Two instances of the demo of `examples/thebot.rs` on one SQLite file
//! (two `Db::open` of one path, two routers on two real sockets, each with
//! its own memory cache), talked to with a real HTTP client: what one
//! writes is what the other's database returns, the second open neither
//! reseeds nor clobbers the file, and writes from both at once all land.
//!
//! The cache coherence across instances over one Redis is in
//! `integration/tests/thebot.rs` (`on_the_tiered_store_...`).

#[path = "../../examples/thebot/app.rs"]
mod app;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use app::{Db, SEED_MATERIALS};
use common::{TestServer, header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata::{Cache, Config};
use tempfile::TempDir;

const DB_LATENCY: Duration = Duration::from_millis(3);
const ADMIN: &str = "admin-secret-for-tests";
const STORED: &str = "strata; fwd=uri-miss; stored";
const HIT: &str = "strata; hit";

/// One instance of the demo: its server, its own cache and its own
/// connection to the shared file.
struct Instance {
    server: TestServer,
    db: Db,
}

/// One answer: status, `Cache-Status` and the body as JSON.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    cache_status: String,
    json: Value,
}

/// A fresh directory and the database file path in it (not created yet).
fn database_file() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("thebot.sqlite3");
    (dir, path)
}

/// An instance over the file at `path`, with a memory cache of its own.
async fn instance(path: &Path) -> Instance {
    let db = Db::open(path, DB_LATENCY).unwrap();
    let cache: Cache = app::cache_from_config(&Config::default()).unwrap();
    let server = TestServer::start(app::app(&cache, db.clone(), ADMIN)).await;
    Instance { server, db }
}

impl Instance {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.server.client.request(method, self.server.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let cache_status = header(&response, "cache-status");
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text:?}"));
        Answer {
            status,
            cache_status,
            json,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn write(&self, method: Method, path: &str, title: &str) -> Answer {
        let answer = self
            .send(method, path, Some(json!({ "title": title })))
            .await;
        assert!(answer.status.is_success(), "{path}: {answer:?}");
        answer
    }

    /// What `/api/core/db-stats/` says: this instance's queries.
    async fn db_stats(&self) -> u64 {
        self.get("/api/core/db-stats/").await.json["queries"]
            .as_u64()
            .unwrap()
    }
}

#[tokio::test]
async fn a_second_instance_on_the_file_finds_the_first_ones_writes_and_does_not_reseed() {
    let (_dir, path) = database_file();
    let a = instance(&path).await;
    assert!(a.db.seeded(), "the first open seeds");
    a.write(Method::PUT, "/api/materials/8/", "Quadratics, revised")
        .await;
    let created = a.write(Method::POST, "/api/materials/", "Matrices").await;
    let new_id = SEED_MATERIALS as u64 + 1;
    assert_eq!(created.json, json!({"id": new_id, "title": "Matrices"}));

    let b = instance(&path).await;
    assert!(!b.db.seeded(), "the second open finds the file seeded");
    let detail = b.get("/api/materials/8/").await;
    assert_eq!(detail.cache_status, STORED, "B's own first fill");
    assert_eq!(
        detail.json,
        json!({"id": 8, "title": "Quadratics, revised"})
    );
    let list = b.get("/api/materials/").await;
    assert_eq!(list.json["count"], SEED_MATERIALS + 1);
    assert_eq!(list.json["materials"][SEED_MATERIALS]["title"], "Matrices");
    // Ids go on from the file, not from a fresh seed.
    let next = b
        .write(Method::POST, "/api/materials/", "Complex numbers")
        .await;
    assert_eq!(next.json["id"], new_id + 1);

    // Each instance counts its own queries.
    assert_eq!(a.db.queries(), 2);
    assert_eq!(b.db.queries(), 3);
    assert_eq!(b.db_stats().await, 3);
}

#[tokio::test]
async fn two_instances_on_one_file_read_each_others_writes_from_the_database() {
    let (_dir, path) = database_file();
    let a = instance(&path).await;
    let b = instance(&path).await;

    // B stores material 9 before A renames it.
    let before = b.get("/api/materials/9/").await;
    assert_eq!(before.json["title"], "Functions and graphs");
    a.write(Method::PUT, "/api/materials/9/", "Functions, revised")
        .await;
    a.write(Method::POST, "/api/assignments/", "Sketch five graphs")
        .await;

    // What B has not stored comes from the file, with A's writes.
    let assignments = b.get("/api/assignments/").await;
    assert_eq!(assignments.cache_status, STORED);
    assert_eq!(assignments.json["count"], 6);
    assert_eq!(
        assignments.json["assignments"][5]["title"],
        "Sketch five graphs"
    );
    let list = b.get("/api/materials/").await;
    assert_eq!(list.json["materials"][8]["title"], "Functions, revised");
    assert_eq!(
        b.db.material(9).await.unwrap().unwrap().title,
        "Functions, revised",
        "B's database returns A's write"
    );

    // B's memory cache heard nothing of A's write: it keeps its copy
    // (instances share a cache only through Redis) until B drops it.
    let stale = b.get("/api/materials/9/").await;
    assert_eq!(
        (stale.cache_status.as_str(), &stale.json["title"]),
        (HIT, &json!("Functions and graphs"))
    );
    let dropped = b
        .server
        .client
        .post(b.server.url("/api/core/cache-invalidate/"))
        .bearer_auth(ADMIN)
        .json(&json!({"tag": "material:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::OK);
    let refilled = b.get("/api/materials/9/").await;
    assert_eq!(refilled.cache_status, STORED);
    assert_eq!(
        refilled.json,
        json!({"id": 9, "title": "Functions, revised"})
    );
}

/// Two connections writing at once: the second waits for the first's
/// lock (the busy timeout) instead of failing with `SQLITE_BUSY`. Straight
/// on the two databases, with no latency, so that the writes overlap often
/// (through HTTP they rarely do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_two_instances_at_once_all_land_in_the_file() {
    const EACH: usize = 1000;
    let (_dir, path) = database_file();
    let a = Db::open(&path, Duration::ZERO).unwrap();
    let b = Db::open(&path, Duration::ZERO).unwrap();

    let writer = |db: Db, name: &'static str| {
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(EACH);
            for n in 0..EACH {
                let created = db.create_material(format!("{name} {n}")).await;
                ids.push(
                    created
                        .unwrap_or_else(|e| panic!("{name}, write {n}: {e}"))
                        .id,
                );
            }
            ids
        })
    };
    let (from_a, from_b) = (writer(a.clone(), "from A"), writer(b.clone(), "from B"));
    let mut ids = from_a.await.unwrap();
    ids.extend(from_b.await.unwrap());
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2 * EACH, "every write got its own id");
    for db in [&a, &b] {
        assert_eq!(db.counts().await.unwrap().0, SEED_MATERIALS + 2 * EACH);
    }
}
