//! The demo's database: SQLite, either in a file that several instances of
//! the demo open together (each sees what the others write) or in memory
//! for one process. Every query sleeps the configured latency and is
//! counted, so a cache hit shows as a query count that stays flat.
//!
//! The count is per [`Db`] value (clones share it), not per file: each
//! instance reports its own queries, which is what shows that a hit on one
//! instance spared its database.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;

/// How many materials the database starts with.
pub const SEED_MATERIALS: usize = 20;

const MATERIAL_TITLES: [&str; SEED_MATERIALS] = [
    "Numbers and counting",
    "Fractions",
    "Decimals and percentages",
    "Ratios and proportion",
    "Algebraic expressions",
    "Linear equations",
    "Inequalities",
    "Quadratic equations",
    "Functions and graphs",
    "Sequences and series",
    "Angles and triangles",
    "Circles",
    "Area and volume",
    "Pythagoras' theorem",
    "Trigonometry",
    "Vectors",
    "Probability",
    "Statistics: averages and spread",
    "Sets and logic",
    "Introduction to calculus",
];

const ASSIGNMENT_TITLES: [&str; 5] = [
    "Fractions worksheet",
    "Solve ten linear equations",
    "Graph three functions",
    "Triangle proofs",
    "Probability experiment",
];

/// `PRAGMA user_version` once the tables exist and are seeded: a file that
/// has it is opened as it is.
const SCHEMA_VERSION: i32 = 1;

/// How long a write waits for another connection's write to finish before
/// SQLite gives up with `SQLITE_BUSY`. Writes are single short statements,
/// so this is only reached if another process holds the lock for long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One learning material.
#[derive(Debug, Clone, Serialize)]
pub struct Material {
    /// Its id, from 1.
    pub id: u64,
    /// Its title.
    pub title: String,
}

/// One assignment.
#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    /// Its id, from 1.
    pub id: u64,
    /// Its title.
    pub title: String,
}

/// A query or an open that failed: SQLite's error, or the blocking task
/// that ran the query died.
#[derive(Debug)]
pub enum DbError {
    /// SQLite refused (busy past the timeout, a full disk, a file that is
    /// not this demo's database, ...).
    Sqlite(rusqlite::Error),
    /// The task running the query panicked or was cancelled.
    Task(tokio::task::JoinError),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(error) => write!(f, "SQLite: {error}"),
            Self::Task(error) => write!(f, "the query's task failed: {error}"),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sqlite(error) => Some(error),
            Self::Task(error) => Some(error),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

#[derive(Debug)]
struct DbInner {
    latency: Duration,
    queries: AtomicU64,
    seeded: bool,
    /// One connection per instance: queries are a few rows each, so they
    /// queue here for microseconds, while the latency is slept outside.
    connection: Mutex<Connection>,
}

/// The demo's database: every query sleeps the configured latency and is
/// counted, so a cache hit shows as a query count that stays flat. Clones
/// share the same connection and counter.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

impl Db {
    /// A database of this process alone, in memory, seeded with
    /// [`SEED_MATERIALS`] materials and a few assignments, whose every
    /// query takes `latency`.
    ///
    /// # Panics
    ///
    /// Panics when SQLite cannot create an in-memory database.
    pub fn new(latency: Duration) -> Self {
        Self::open(":memory:", latency).expect("an in-memory SQLite database")
    }

    /// The database in the SQLite file at `path`, created and seeded if it
    /// is new (or `":memory:"`: one of this value's own, as [`Db::new`]).
    /// Any number of instances, in this process or others, may open the
    /// same file: the first seeds it, the others find it seeded and keep
    /// its data, and a write through one is what the others read next.
    pub fn open(path: impl AsRef<Path>, latency: Duration) -> Result<Self, DbError> {
        let mut connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never wait for a writer nor block one, so only
        // writes queue behind writes, which the busy timeout absorbs. (An
        // in-memory database answers "memory" and stays so.)
        connection.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        })?;
        // Safe with WAL (a power cut may lose the last writes, never
        // corrupt), and each write does not wait for an fsync.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        let seeded = create_and_seed(&mut connection)?;
        Ok(Self {
            inner: Arc::new(DbInner {
                latency,
                queries: AtomicU64::new(0),
                seeded,
                connection: Mutex::new(connection),
            }),
        })
    }

    /// Whether opening created and seeded the tables (`false`: another
    /// instance, or an earlier run, had).
    pub fn seeded(&self) -> bool {
        self.inner.seeded
    }

    /// How many queries this instance has run so far.
    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::SeqCst)
    }

    /// The simulated cost of one query.
    pub fn latency(&self) -> Duration {
        self.inner.latency
    }

    /// Runs one query: counts it, takes the latency, then runs `run` on the
    /// connection on a blocking thread (a write may wait for another
    /// process's lock).
    async fn query<T: Send + 'static>(
        &self,
        run: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        self.inner.queries.fetch_add(1, Ordering::SeqCst);
        if !self.inner.latency.is_zero() {
            tokio::time::sleep(self.inner.latency).await;
        }
        let inner = Arc::clone(&self.inner);
        let ran = tokio::task::spawn_blocking(move || run(&connection(&inner))).await;
        ran.map_err(DbError::Task)?.map_err(DbError::Sqlite)
    }

    /// Every material, by id.
    pub async fn materials(&self) -> Result<Vec<Material>, DbError> {
        self.query(|db| {
            let mut select = db.prepare("SELECT id, title FROM materials ORDER BY id")?;
            let rows = select.query_map([], |row| {
                Ok(Material {
                    id: unsigned(row, 0)?,
                    title: row.get(1)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// One material.
    pub async fn material(&self, id: u64) -> Result<Option<Material>, DbError> {
        self.query(move |db| {
            // SQLite's ids are signed: a larger one names nothing.
            let Ok(key) = i64::try_from(id) else {
                return Ok(None);
            };
            db.query_row(
                "SELECT title FROM materials WHERE id = ?1",
                params![key],
                |row| {
                    Ok(Material {
                        id,
                        title: row.get(0)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Adds a material; returns it with its new id.
    pub async fn create_material(&self, title: String) -> Result<Material, DbError> {
        self.query(move |db| {
            db.execute("INSERT INTO materials (title) VALUES (?1)", params![title])?;
            // The connection is held alone until the query returns, so the
            // last rowid is this insert's.
            let id = row_id(db.last_insert_rowid());
            Ok(Material { id, title })
        })
        .await
    }

    /// Renames a material; `None` when there is no such id.
    pub async fn update_material(
        &self,
        id: u64,
        title: String,
    ) -> Result<Option<Material>, DbError> {
        self.query(move |db| {
            let Ok(key) = i64::try_from(id) else {
                return Ok(None);
            };
            let changed = db.execute(
                "UPDATE materials SET title = ?1 WHERE id = ?2",
                params![title, key],
            )?;
            Ok((changed > 0).then_some(Material { id, title }))
        })
        .await
    }

    /// Every assignment, by id.
    pub async fn assignments(&self) -> Result<Vec<Assignment>, DbError> {
        self.query(|db| {
            let mut select = db.prepare("SELECT id, title FROM assignments ORDER BY id")?;
            let rows = select.query_map([], |row| {
                Ok(Assignment {
                    id: unsigned(row, 0)?,
                    title: row.get(1)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Adds an assignment; returns it with its new id.
    pub async fn create_assignment(&self, title: String) -> Result<Assignment, DbError> {
        self.query(move |db| {
            db.execute(
                "INSERT INTO assignments (title) VALUES (?1)",
                params![title],
            )?;
            let id = row_id(db.last_insert_rowid());
            Ok(Assignment { id, title })
        })
        .await
    }

    /// How many materials and assignments there are (one snapshot).
    pub async fn counts(&self) -> Result<(usize, usize), DbError> {
        self.query(|db| {
            db.query_row(
                "SELECT (SELECT count(*) FROM materials), (SELECT count(*) FROM assignments)",
                [],
                |row| Ok((unsigned(row, 0)?, unsigned(row, 1)?)),
            )
        })
        .await
    }
}

fn connection(inner: &DbInner) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave a half-done write:
    // SQLite rolls back what a statement did not finish.
    inner
        .connection
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Column `index` of `row`, an integer that is never negative here (ids,
/// counts), as the unsigned type the demo's types use.
fn unsigned<T: TryFrom<i64>>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let value: i64 = row.get(index)?;
    T::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// A rowid SQLite assigned: positive, since the tables start at 1.
fn row_id(rowid: i64) -> u64 {
    u64::try_from(rowid).unwrap_or_default()
}

/// Creates the tables and the seed rows unless `user_version` says a
/// previous open did; returns whether this one did.
///
/// The transaction takes the write lock first (`IMMEDIATE`), so two
/// instances starting at once seed once: the second waits for the first
/// to commit, then finds the version set.
fn create_and_seed(connection: &mut Connection) -> rusqlite::Result<bool> {
    let seed = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i32 = seed.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(false);
    }
    seed.execute_batch(
        "CREATE TABLE materials (id INTEGER PRIMARY KEY, title TEXT NOT NULL);
         CREATE TABLE assignments (id INTEGER PRIMARY KEY, title TEXT NOT NULL);",
    )?;
    for (id, title) in (1i64..).zip(MATERIAL_TITLES) {
        seed.execute(
            "INSERT INTO materials (id, title) VALUES (?1, ?2)",
            params![id, title],
        )?;
    }
    for (id, title) in (1i64..).zip(ASSIGNMENT_TITLES) {
        seed.execute(
            "INSERT INTO assignments (id, title) VALUES (?1, ?2)",
            params![id, title],
        )?;
    }
    seed.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    seed.commit()?;
    Ok(true)
}
