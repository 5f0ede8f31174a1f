//! A Redis Cluster of N masters, built with `redis-cli --cluster create`.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::{self, Tool};
use crate::resp::{self, Reply};
use crate::server::RedisServer;
use crate::tempdir::{self, TempDir};

mod replica;

/// Slots in a Redis Cluster.
const SLOTS: u32 = 16_384;
/// How long `redis-cli --cluster create` may run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the nodes have to agree on the slot map after `create`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A Redis Cluster of cluster-enabled [`RedisServer`]s on free ports, each
/// a master serving a share of the 16384 slots, with no replicas.
///
/// [`start`](Self::start) returns only once every node reports
/// `cluster_state:ok` and every node's `CLUSTER NODES` shows the same
/// masters owning all 16384 slots, so a cluster client connecting right
/// away sees a settled cluster. Dropping the value kills every node.
///
/// Each node is an ordinary [`RedisServer`] (see [`nodes`](Self::nodes)):
/// [`nodes_mut`](Self::nodes_mut) lets a test [`stop`](RedisServer::stop)
/// and [`restart`](RedisServer::restart) one; a restarted node keeps its
/// cluster configuration and rejoins. With no replicas, the slots of a
/// stopped master are not served: once the node timeout (2 s) passes, the
/// cluster reports `cluster_state:fail` until the node is back, and after a
/// [restart](RedisServer::restart) the other nodes clear the failure only
/// after about twice the node timeout (so about 4 s): call
/// [`wait_until_ready`](Self::wait_until_ready) before relying on it again.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    cli: PathBuf,
    dir: TempDir,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, joins them with
    /// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`,
    /// and waits until the cluster is ready (at most about 20 seconds; in
    /// practice 1 to 3).
    ///
    /// Returns `None` (after printing the reason to stderr) when
    /// `redis-server` or `redis-cli` is not installed and the `CI`
    /// environment variable is not set; see the
    /// [crate docs](crate#when-redis-is-not-installed).
    ///
    /// # Panics
    ///
    /// Panics if `masters` is below 3 (the minimum `redis-cli` accepts);
    /// when a binary is missing and `CI` is set; and when a node does not
    /// start, the create command fails, or the cluster does not settle in
    /// time. The message then holds the create output and each node's log.
    pub fn start(masters: usize) -> Option<Self> {
        assert!(
            masters >= 3,
            "strata-testkit: a Redis Cluster needs at least 3 masters (got {masters})"
        );
        let server = binary::find_or_skip(Tool::Server)?;
        let cli = binary::find_or_skip(Tool::Cli)?;
        let dir = TempDir::new("cluster")
            .unwrap_or_else(|error| panic!("strata-testkit: cannot create a temp dir: {error}"));
        // Nodes are pushed as they start, so a panic below kills the ones
        // already running.
        let mut cluster = Self {
            nodes: Vec::with_capacity(masters),
            cli,
            dir,
        };
        for _ in 0..masters {
            cluster
                .nodes
                .push(RedisServer::start_cluster_node(server.clone()));
        }
        cluster.create();
        cluster.wait_until_ready();
        Some(cluster)
    }

    /// The nodes' URLs, `redis://127.0.0.1:<port>/`, as cluster clients
    /// take them as seeds.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes' addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The nodes, to send a command to one of them or read its log.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to stop or restart one of them.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The output of `redis-cli --cluster create` followed by the tail of
    /// each node's log, as put into the harness's panic messages.
    pub fn log_tail(&self) -> String {
        let mut out = format!(
            "--- redis-cli --cluster create output ---\n{}",
            tempdir::tail(&self.create_log_path(), 60)
        );
        for node in &self.nodes {
            out.push('\n');
            out.push_str(&node.log_tail());
        }
        out
    }

    fn fail(&self, what: &str) -> ! {
        panic!("strata-testkit: {what}\n{}", self.log_tail())
    }

    fn create_log_path(&self) -> PathBuf {
        self.dir.path().join("create.log")
    }

    /// Runs `redis-cli --cluster create`, killing it if it hangs.
    fn create(&self) {
        let output = File::create(self.create_log_path())
            .and_then(|file| Ok((file.try_clone()?, file)))
            .unwrap_or_else(|error| self.fail(&format!("cannot create create.log: {error}")));
        let nodes: Vec<String> = self.addrs().iter().map(ToString::to_string).collect();
        let mut child = Command::new(&self.cli)
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(output.0)
            .stderr(output.1)
            .spawn()
            .unwrap_or_else(|error| {
                self.fail(&format!("cannot run {}: {error}", self.cli.display()))
            });
        let deadline = Instant::now() + CREATE_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => {
                    self.fail(&format!("redis-cli --cluster create exited with {status}"))
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.fail(&format!(
                        "redis-cli --cluster create did not finish within {CREATE_TIMEOUT:?}"
                    ));
                }
                Ok(None) => thread::sleep(POLL_INTERVAL),
                Err(error) => self.fail(&format!("cannot wait for redis-cli: {error}")),
            }
        }
    }

    /// Waits until the cluster is settled: every node reports
    /// `cluster_state:ok` and knows every other node, and all nodes agree
    /// which master owns each of the 16384 slots.
    ///
    /// [`start`](Self::start) calls this before returning; call it again
    /// after [restarting](RedisServer::restart) a node to wait until the
    /// cluster has taken it back.
    ///
    /// # Panics
    ///
    /// Panics, with the create output and node logs, if the cluster has
    /// not settled within 20 seconds.
    pub fn wait_until_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let reason = match self.not_ready_reason() {
                None => return,
                Some(reason) => reason,
            };
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "the cluster did not settle within {READY_TIMEOUT:?}: {reason}"
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Why the cluster is not ready yet, or `None` if it is: every node
    /// says `cluster_state:ok`, knows all nodes, and sees the same masters
    /// owning all slots.
    fn not_ready_reason(&self) -> Option<String> {
        let mut first_view: Option<(u16, SlotMap)> = None;
        for node in &self.nodes {
            let port = node.port();
            let info = match resp::command(node.addr(), &["CLUSTER", "INFO"]) {
                Ok(Reply::Bulk(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                other => return Some(format!("CLUSTER INFO on {port}: {other:?}")),
            };
            let known_nodes = format!("cluster_known_nodes:{}", self.nodes.len());
            for wanted in [
                "cluster_state:ok",
                "cluster_slots_assigned:16384",
                "cluster_slots_ok:16384",
                known_nodes.as_str(),
            ] {
                if !info.lines().any(|line| line.trim_end() == wanted) {
                    return Some(format!("node {port}: CLUSTER INFO lacks {wanted}"));
                }
            }
            let nodes_text = match resp::command(node.addr(), &["CLUSTER", "NODES"]) {
                Ok(Reply::Bulk(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                other => return Some(format!("CLUSTER NODES on {port}: {other:?}")),
            };
            let view = match slot_map(&nodes_text, self.nodes.len()) {
                Ok(view) => view,
                Err(reason) => return Some(format!("node {port}: {reason}")),
            };
            match &first_view {
                None => first_view = Some((port, view)),
                Some((first_port, first)) if *first != view => {
                    return Some(format!(
                        "nodes {first_port} and {port} disagree on the slot map: \
                         {first:?} vs {view:?}"
                    ));
                }
                Some(_) => {}
            }
        }
        None
    }
}

/// Which master (by address) owns which slot ranges, sorted, as one node
/// sees it.
type SlotMap = BTreeSet<(u32, u32, String)>;

/// Parses `CLUSTER NODES` output and checks that it shows `masters`
/// healthy, connected masters that together own every slot exactly once.
fn slot_map(cluster_nodes: &str, masters: usize) -> Result<SlotMap, String> {
    let mut map = SlotMap::new();
    let mut master_count = 0;
    for line in cluster_nodes.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [
            _id,
            addr,
            flags,
            _master,
            _ping,
            _pong,
            _epoch,
            link,
            slots @ ..,
        ] = &fields[..]
        else {
            return Err(format!("malformed CLUSTER NODES line {line:?}"));
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if let Some(bad) = flags
            .iter()
            .find(|flag| ["fail", "fail?", "handshake", "noaddr", "nofailover"].contains(flag))
        {
            return Err(format!("{addr} is flagged {bad}"));
        }
        if *link != "connected" {
            return Err(format!("{addr} link is {link}"));
        }
        if !flags.contains(&"master") {
            continue;
        }
        master_count += 1;
        // `ip:port@busport[,hostname]`: the client address is what matters.
        let client_addr = addr.split('@').next().unwrap_or(addr).to_owned();
        // Skip `[slot->-node]` / `[slot-<-node]` migration markers.
        for range in slots.iter().filter(|slot| !slot.starts_with('[')) {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            let parse = |slot: &str| {
                slot.parse::<u32>()
                    .map_err(|_| format!("bad slot {range:?} in {line:?}"))
            };
            map.insert((parse(start)?, parse(end)?, client_addr.clone()));
        }
    }
    if master_count != masters {
        return Err(format!("{master_count} masters, expected {masters}"));
    }
    let mut next = 0;
    for (start, end, owner) in &map {
        if *start != next || end < start {
            return Err(format!(
                "slots {next}.. not covered exactly once (next range {start}-{end} on {owner})"
            ));
        }
        next = end + 1;
    }
    if next != SLOTS {
        return Err(format!("only slots 0-{} are assigned", i64::from(next) - 1));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLED: &str = "\
a1 127.0.0.1:40001@50001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:40002@50002 master - 0 1700000000000 2 connected 5461-10922
c3 127.0.0.1:40003@50003 master - 0 1700000000000 3 connected 10923-16383
";

    #[test]
    fn a_settled_cluster_covers_every_slot_once() {
        let map = slot_map(SETTLED, 3).unwrap();
        assert_eq!(map.len(), 3);
        assert!(map.contains(&(5461, 10922, "127.0.0.1:40002".to_owned())));
    }

    #[test]
    fn single_slots_and_migration_markers_are_understood() {
        let text = "\
a1 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-99 100 [101->-b2] 101-16383
b2 127.0.0.1:3@4 master - 0 0 2 connected
";
        assert!(slot_map(text, 2).is_ok());
    }

    #[test]
    fn an_unsettled_cluster_is_not_ready() {
        let handshake = SETTLED.replace("b2 127.0.0.1:40002@50002 master", "b2 :0@0 handshake");
        assert!(slot_map(&handshake, 3).is_err());
        let failing = SETTLED.replace("master - 0 1700000000000 3", "master,fail? - 0 0 3");
        assert_eq!(
            slot_map(&failing, 3).unwrap_err(),
            "127.0.0.1:40003@50003 is flagged fail?"
        );
        let missing = SETTLED.replace("10923-16383", "10923-16382");
        assert!(
            slot_map(&missing, 3)
                .unwrap_err()
                .contains("only slots 0-16382")
        );
        let overlap = SETTLED.replace("5461-10922", "5460-10922");
        assert!(
            slot_map(&overlap, 3)
                .unwrap_err()
                .contains("not covered exactly once")
        );
        assert!(
            slot_map(SETTLED, 4)
                .unwrap_err()
                .contains("3 masters, expected 4")
        );
        let disconnected = SETTLED.replace("2 connected", "2 disconnected");
        assert!(slot_map(&disconnected, 3).is_err());
    }
}
