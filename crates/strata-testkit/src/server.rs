//! One `redis-server` child process on a free port.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::{self, Tool};
use crate::resp::{self, Reply};
use crate::tempdir::{self, TempDir};

/// How many fresh ports [`RedisServer::start`] tries when another process
/// takes the chosen port before `redis-server` binds it.
const START_ATTEMPTS: usize = 5;
/// How long a started server has to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::restart`] waits for its old port to be free.
const RESTART_PORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of log put into panic messages.
const LOG_TAIL_LINES: usize = 40;
/// The cluster bus listens on the client port plus this.
pub(crate) const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// A `redis-server` child process on a free port of `127.0.0.1`, owned by
/// a test.
///
/// The server runs without persistence (`--save ""`, `--appendonly no`)
/// in its own temporary directory, which also holds its log. Dropping the
/// value kills the process (`SIGKILL`), waits for it, and removes the
/// directory.
///
/// Everything that can go wrong while starting, stopping or talking to the
/// server panics with the tail of the server log in the message.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    extra_args: Vec<String>,
    cluster_node: bool,
    dir: TempDir,
    child: Option<Child>,
}

/// Why one attempt to launch `redis-server` did not produce a ready server.
enum LaunchError {
    /// The port (or the cluster bus port) was taken: try again.
    PortTaken,
}

impl RedisServer {
    /// Starts a standalone `redis-server` on a free port and waits until it
    /// answers `PING`.
    ///
    /// Returns `None` (after printing the reason to stderr) when
    /// `redis-server` is not installed and the `CI` environment variable is
    /// not set; see the [crate docs](crate#when-redis-is-not-installed).
    ///
    /// # Panics
    ///
    /// Panics when `redis-server` is missing and `CI` is set, and when the
    /// server does not start (with its log in the message).
    pub fn start() -> Option<Self> {
        Self::start_with_args(&[])
    }

    /// Like [`start`](Self::start), with extra `redis-server` arguments
    /// appended to the command line, for example
    /// `&["--maxmemory", "1mb", "--maxmemory-policy", "allkeys-lru"]` or
    /// `&["--requirepass", "secret"]`.
    ///
    /// The harness itself probes the server without credentials, so an
    /// argument that makes an unauthenticated `PING` fail (such as
    /// `--requirepass`) is detected through the `NOAUTH` error reply, which
    /// still proves the server is up.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_args(args: &[&str]) -> Option<Self> {
        let binary = binary::find_or_skip(Tool::Server)?;
        let extra_args = args.iter().map(|arg| (*arg).to_owned()).collect();
        Some(Self::launch(binary, extra_args, false))
    }

    /// Starts a cluster-enabled server for [`crate::RedisCluster`], whose
    /// cluster bus port (`port + 10000`) is free as well.
    pub(crate) fn start_cluster_node(binary: PathBuf) -> Self {
        Self::launch(binary, Vec::new(), true)
    }

    fn launch(binary: PathBuf, extra_args: Vec<String>, cluster_node: bool) -> Self {
        let dir = TempDir::new("redis")
            .unwrap_or_else(|error| panic!("strata-testkit: cannot create a temp dir: {error}"));
        // Built before the process starts, so a panic below still runs `Drop`.
        let mut server = Self {
            binary,
            port: 0,
            extra_args,
            cluster_node,
            dir,
            child: None,
        };
        for _ in 0..START_ATTEMPTS {
            server.port = free_port(cluster_node);
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(LaunchError::PortTaken) => continue,
            }
        }
        server.fail(&format!(
            "redis-server could not bind a free port in {START_ATTEMPTS} attempts \
             (another process took each one first)"
        ))
    }

    /// The server's port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The URL for Redis clients, `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id of the running server, or `None` after
    /// [`stop`](Self::stop).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends one command and returns the reply; see [`crate::command`].
    ///
    /// Error replies from Redis are returned as [`Reply::Error`]. To expect
    /// a connection failure (after [`stop`](Self::stop)), call
    /// [`crate::command`] with [`addr`](Self::addr) instead.
    ///
    /// # Panics
    ///
    /// Panics, with the server log, if the connection fails.
    pub fn command(&self, args: &[&str]) -> Reply {
        resp::command(self.addr(), args).unwrap_or_else(|error| {
            self.fail(&format!("{args:?} on {} failed: {error}", self.addr()))
        })
    }

    /// Runs `redis-cli -h 127.0.0.1 -p <port> <args>` and returns its
    /// standard output, for example `server.redis_cli(&["--cluster",
    /// "check", &server.addr().to_string()])` or `&["INFO", "memory"]`.
    ///
    /// # Panics
    ///
    /// Panics if `redis-cli` cannot be found (see
    /// [`STRATA_REDIS_CLI`](crate#when-redis-is-not-installed)) or exits
    /// unsuccessfully; the message holds its output and the server log.
    pub fn redis_cli(&self, args: &[&str]) -> String {
        let cli = binary::find_or_panic(Tool::Cli);
        let port = self.port.to_string();
        let output = Command::new(&cli)
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| self.fail(&format!("cannot run {}: {error}", cli.display())));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            self.fail(&format!(
                "redis-cli {args:?} exited with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        stdout
    }

    /// Kills the server (`SIGKILL`) and waits for it to exit, so that
    /// connections to its port are refused from now on. Does nothing if it
    /// is already stopped.
    ///
    /// Without persistence, the data is gone: [`restart`](Self::restart)
    /// brings back an empty server. A cluster node keeps its cluster
    /// configuration (`nodes.conf`) and rejoins.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `kill` fails only if the process has already exited; `wait`
            // then reaps it all the same.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, stopping it first if it is
    /// running, and waits until it answers `PING`.
    ///
    /// If the port is still held (for example by a connection the kernel
    /// is tearing down), binding is retried for up to five seconds.
    ///
    /// # Panics
    ///
    /// Panics, with the server log, if the port stays taken or the server
    /// does not come up.
    pub fn restart(&mut self) {
        self.stop();
        let give_up = Instant::now() + RESTART_PORT_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(LaunchError::PortTaken) if Instant::now() < give_up => {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(LaunchError::PortTaken) => self.fail(&format!(
                    "cannot restart: port {} was still taken after {RESTART_PORT_TIMEOUT:?}",
                    self.port
                )),
            }
        }
    }

    /// The last lines of the server log (and of its stdout/stderr), as put
    /// into the harness's panic messages; handy in a test's own `assert!`
    /// messages.
    pub fn log_tail(&self) -> String {
        let mut out = format!(
            "--- redis.log of 127.0.0.1:{} ({}) ---\n{}",
            self.port,
            self.dir.path().display(),
            tempdir::tail(&self.log_path(), LOG_TAIL_LINES)
        );
        let console = tempdir::tail(&self.console_path(), LOG_TAIL_LINES);
        if console != "(empty)" {
            out.push_str("\n--- stdout/stderr ---\n");
            out.push_str(&console);
        }
        out
    }

    /// Panics with `what` followed by the tail of the server log.
    pub(crate) fn fail(&self, what: &str) -> ! {
        panic!("strata-testkit: {what}\n{}", self.log_tail())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn console_path(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// Starts `redis-server` on `self.port` and waits until it answers.
    fn spawn_and_wait(&mut self) -> Result<(), LaunchError> {
        let log_path = self.log_path();
        // Only this attempt's part of the (appended) log decides whether
        // the port was taken.
        let log_start = file_len(&log_path);
        let console = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_path())
            .unwrap_or_else(|error| self.fail(&format!("cannot create console.log: {error}")));
        let console_err = console
            .try_clone()
            .unwrap_or_else(|error| self.fail(&format!("cannot clone console.log: {error}")));

        let dir = self.dir.path();
        let mut command = Command::new(&self.binary);
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log_path);
        if self.cluster_node {
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(dir.join("nodes.conf"));
        }
        command
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        let child = command.spawn().unwrap_or_else(|error| {
            self.fail(&format!("cannot run {}: {error}", self.binary.display()))
        });
        let pid = child.id();
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                if port_was_taken(&log_path, log_start) {
                    return Err(LaunchError::PortTaken);
                }
                self.fail(&format!(
                    "redis-server on port {} exited with {status} before answering PING",
                    self.port
                ));
            }
            if answers_as(self.addr(), pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}",
                    self.port
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// If the child has exited, reaps it and returns its status.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(error) => self.fail(&format!("cannot check on redis-server: {error}")),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Kill before `dir` is dropped, so the directory is not removed
        // from under a live server.
        self.stop();
    }
}

/// Whether the server at `addr` answers `PING` and is the process `pid`.
///
/// Checking the pid (from `INFO server`) matters: if another process took
/// the port first, our server exits, and a `PONG` from the port would come
/// from someone else's Redis.
fn answers_as(addr: SocketAddr, pid: u32) -> bool {
    match resp::command(addr, &["PING"]) {
        Ok(Reply::Status(status)) if status == "PONG" => {}
        // Started with `--requirepass`: up, but the pid cannot be checked
        // without the password. The exit check before each probe covers
        // most of the port race.
        Ok(Reply::Error(error)) if error.starts_with("NOAUTH") => return true,
        _ => return false,
    }
    let Ok(info) = resp::command(addr, &["INFO", "server"]) else {
        return false;
    };
    let expected = format!("process_id:{pid}");
    info.to_string()
        .lines()
        .any(|line| line.trim_end() == expected)
}

/// Whether the log written since `log_start` says a port was in use.
fn port_was_taken(log_path: &Path, log_start: u64) -> bool {
    let Ok(bytes) = std::fs::read(log_path) else {
        return false;
    };
    let start = usize::try_from(log_start).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    text.contains("Address already in use") || text.contains("Failed listening on port")
}

fn file_len(path: &Path) -> u64 {
    File::open(path)
        .and_then(|file| file.metadata())
        .map_or(0, |meta| meta.len())
}

/// Picks a port that is free on `127.0.0.1` right now, never handed out
/// before by this process, and never Redis's default 6379.
///
/// For a cluster node the cluster bus port (`port + 10000`) must be free
/// too and fit in a `u16`, which rules out the top of the ephemeral range.
/// The port is released before `redis-server` binds it; a process that
/// takes it in between makes the launch fail and retry.
fn free_port(cluster_node: bool) -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..500 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|error| panic!("strata-testkit: cannot bind 127.0.0.1:0: {error}"));
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(error) => panic!("strata-testkit: cannot read a bound port: {error}"),
        };
        if port == 6379 || handed_out.contains(&port) {
            continue;
        }
        if cluster_node {
            let Some(bus_port) = port.checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if bus_port == 6379 || TcpListener::bind((Ipv4Addr::LOCALHOST, bus_port)).is_err() {
                continue;
            }
        }
        handed_out.insert(port);
        if let Some(bus_port) = port.checked_add(CLUSTER_BUS_OFFSET) {
            // Keep it from becoming another server's client port meanwhile.
            handed_out.insert(bus_port);
        }
        return port;
    }
    panic!("strata-testkit: found no free port on 127.0.0.1 in 500 tries")
}
