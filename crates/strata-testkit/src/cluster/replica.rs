//! Adding a replica to a running [`RedisCluster`], for failover tests.

use std::thread;
use std::time::{Duration, Instant};

use super::{POLL_INTERVAL, RedisCluster};
use crate::binary::{self, Tool};
use crate::resp::Reply;
use crate::server::RedisServer;

/// How long the new node has to join, replicate and be known by all.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

impl RedisCluster {
    /// Starts one more cluster node, makes it a replica of the master at
    /// `master` (an index into [`nodes`](Self::nodes)) and waits until it
    /// replicates and every other node knows it as that master's replica,
    /// so that the masters vote for it in a failover (`CLUSTER FAILOVER`
    /// on it, or its master stopped past the node timeout). Returns the
    /// new node's index; it is dropped (killed) with the cluster.
    ///
    /// # Panics
    ///
    /// Panics, with the nodes' logs, if the node does not start or does
    /// not join in time, or if `master` is out of range.
    pub fn add_replica(&mut self, master: usize) -> usize {
        let server = binary::find_or_panic(Tool::Server);
        let replica = RedisServer::start_cluster_node(server);
        let port = self.nodes[master].port().to_string();
        if replica.command(&["CLUSTER", "MEET", "127.0.0.1", &port]) != Reply::ok() {
            self.fail("CLUSTER MEET failed");
        }
        let master_id = self.nodes[master].command(&["CLUSTER", "MYID"]).to_string();
        self.nodes.push(replica);
        let index = self.nodes.len() - 1;
        let replica = &self.nodes[index];
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while replica.command(&["CLUSTER", "REPLICATE", master_id.trim()]) != Reply::ok() {
            if Instant::now() >= deadline {
                self.fail("the new node never became a replica");
            }
            thread::sleep(POLL_INTERVAL);
        }
        let replica_id = replica.command(&["CLUSTER", "MYID"]).to_string();
        let known = |node: &RedisServer| {
            node.command(&["CLUSTER", "NODES"])
                .to_string()
                .lines()
                .any(|line| line.starts_with(replica_id.trim()) && line.contains("slave"))
        };
        while !replica
            .command(&["INFO", "replication"])
            .to_string()
            .contains("master_link_status:up")
            || !self.nodes.iter().all(known)
        {
            if Instant::now() >= deadline {
                self.fail("the new replica was not known by every node in time");
            }
            thread::sleep(POLL_INTERVAL);
        }
        index
    }
}
