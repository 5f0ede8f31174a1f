//! A uniquely named directory under the system temp dir, removed on drop.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A directory created for one server or cluster and removed in `Drop`.
///
/// The name joins the process id, a per-process counter and the current
/// nanoseconds, so parallel tests and concurrent test binaries never share
/// one; `create_dir` (not `create_dir_all`) makes a clash an error that is
/// retried with the next counter value rather than a silent reuse.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<temp>/strata-testkit-<label>-<pid>-<counter>-<nanos>`.
    pub(crate) fn new(label: &str) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        let mut last_error = None;
        for _ in 0..16 {
            let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            let path = std::env::temp_dir()
                .join(format!("strata-testkit-{label}-{pid}-{counter}-{nanos}"));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no unique temp dir name")))
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp must not fail a test.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) if bytes.is_empty() => "(empty)".to_owned(),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = String::new();
            if start > 0 {
                out.push_str(&format!("[... {start} earlier lines]\n"));
            }
            out.push_str(&all[start..].join("\n"));
            out
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "(not written)".to_owned(),
        Err(error) => format!("(could not read {}: {error})", path.display()),
    }
}
