//! Test support for strata: real `redis-server` processes and Redis Cluster
//! deployments that the tests start themselves, on free ports.
//!
//! Every Redis test in the project goes through this crate, so that no test
//! assumes a server is already running (in particular not the one a
//! developer may have on `127.0.0.1:6379`) and no test talks to a mock.
//!
//! - [`RedisServer`] starts one `redis-server` child process on a free port,
//!   with persistence off and its log in a private temporary directory. It
//!   can be [stopped](RedisServer::stop) and [restarted on the same
//!   port](RedisServer::restart), so a test can watch Redis go away and come
//!   back. Dropping it kills the process and removes the directory.
//! - [`RedisCluster`] starts N cluster-enabled servers, joins them with
//!   `redis-cli --cluster create`, and waits until every node agrees that
//!   all 16384 slots are served.
//! - [`command`] (and [`RedisServer::command`]) speaks just enough RESP over
//!   a [`std::net::TcpStream`] to send a command and read the [`Reply`], so
//!   the crate has no dependencies and needs no async runtime.
//!
//! Every panic raised by the harness carries the tail of the server log (and
//! for clusters the output of `redis-cli --cluster create`), so a failure
//! in CI can be diagnosed from the test output alone.
//!
//! # When Redis is not installed
//!
//! Both constructors return `Option`. The binaries are looked up on `PATH`
//! (`redis-server`, plus `redis-cli` for clusters); the environment
//! variables `STRATA_REDIS_SERVER` and `STRATA_REDIS_CLI` override them with
//! a path or another name. If a binary cannot be found:
//!
//! - when the environment variable `CI` is set to any non-empty value, the
//!   constructor **panics**: CI must run the Redis tests, not skip them;
//! - otherwise it prints one line such as
//!   `skipping: redis-server not found on PATH` to stderr and returns
//!   `None`, and the test returns early.
//!
//! # Example
//!
//! ```no_run
//! use strata_testkit::{RedisServer, Reply};
//!
//! let Some(mut server) = RedisServer::start() else {
//!     return; // redis-server is not installed here, and this is not CI
//! };
//! assert_eq!(server.command(&["SET", "greeting", "hello"]), Reply::ok());
//! assert_eq!(server.command(&["GET", "greeting"]).to_string(), "hello");
//!
//! // Give `server.url()` (`redis://127.0.0.1:<port>/`) to the code under test.
//! server.stop(); // Redis is gone: connections are refused.
//! server.restart(); // A fresh, empty Redis on the same port.
//! ```
//!
//! # Caveats
//!
//! The servers are child processes killed in `Drop`. If the test process
//! itself is killed with `SIGKILL` (for example by a CI timeout), `Drop`
//! does not run and the servers outlive it; they hold nothing but a port
//! and a directory under [`std::env::temp_dir`] named `strata-testkit-*`.

mod binary;
mod cluster;
mod resp;
mod server;
mod tempdir;

pub use cluster::RedisCluster;
pub use resp::{Reply, command};
pub use server::RedisServer;
