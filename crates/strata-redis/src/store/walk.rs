//! Walking the keyspace for prefix and clear-all invalidation: `SCAN` on
//! the one server, or on every master of a cluster when together they
//! serve every slot.

use std::sync::atomic::Ordering;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use strata_core::Error;

use super::{Conn, Handle, RedisStore};

impl RedisStore {
    /// The masters to scan: the one server, or every master of the cluster.
    async fn scan_targets(&self) -> Result<Vec<Option<(String, u16)>>, Error> {
        if matches!(self.inner.conn, Conn::Single(_)) {
            return Ok(vec![None]);
        }
        let nodes: String = self
            .run("CLUSTER NODES", |mut conn| async move {
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        // A walk that skips a shard would leave its keys behind and still
        // report success: refuse it, so the invalidation is kept and
        // replayed once every shard answers.
        let masters = masters_of(&nodes).map_err(|unreached| {
            self.inner.errors.fetch_add(1, Ordering::Relaxed);
            Error::Store(format!("redis SCAN: {unreached}"))
        })?;
        Ok(masters.into_iter().map(Some).collect())
    }

    /// Deletes every key matching `pattern` (and `keep`), walking with SCAN.
    pub(super) async fn scan_delete(
        &self,
        pattern: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<u64, Error> {
        let mut deleted = 0;
        for target in self.scan_targets().await? {
            let mut cursor: u64 = 0;
            loop {
                let target = target.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .run("SCAN", |mut conn| async move {
                        let mut scan = redis::cmd("SCAN");
                        scan.arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000);
                        match (&mut conn, target) {
                            (Handle::Cluster(cluster), Some((host, port))) => {
                                let routing =
                                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                        host,
                                        port,
                                    });
                                let value = cluster.route_command(scan, routing).await?;
                                Ok(redis::from_redis_value(value)?)
                            }
                            _ => scan.query_async(&mut conn).await,
                        }
                    })
                    .await?;
                let keys: Vec<String> = keys.into_iter().filter(|key| keep(key)).collect();
                deleted += self.delete_keys(&keys).await?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

/// `host:port` of every master in `CLUSTER NODES` output that answers,
/// when together they serve every slot; otherwise why not (slots whose
/// master is failing or suspected of failing, or that no master serves
/// during a failover). A failed master that serves no slot any more (its
/// replica took over) is left out and does not count.
fn masters_of(nodes: &str) -> Result<Vec<(String, u16)>, String> {
    const SLOTS: usize = 16384;
    let mut served = vec![false; SLOTS];
    let mut masters = Vec::new();
    let mut failing = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(flags) = fields.get(2) else {
            continue;
        };
        if !flags.split(',').any(|flag| flag == "master") {
            continue;
        }
        let address = fields
            .get(1)
            .and_then(|field| field.split('@').next())
            .unwrap_or_default();
        if flags.contains("fail") {
            failing.push(address.to_owned());
            continue;
        }
        let Some((host, port)) = address.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        // Slot ranges follow the 8 fixed fields; `[...]` entries are
        // slots being migrated, served by this master until they move.
        for range in fields
            .iter()
            .skip(8)
            .filter(|range| !range.starts_with('['))
        {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(first), Ok(last)) = (first.parse::<usize>(), last.parse::<usize>()) {
                for slot in served.iter_mut().take(last.min(SLOTS - 1) + 1).skip(first) {
                    *slot = true;
                }
            }
        }
        masters.push((host.to_owned(), port));
    }
    match served.iter().position(|served| !served) {
        Some(slot) if failing.is_empty() => Err(format!("slot {slot} has no master that answers")),
        Some(slot) => Err(format!(
            "slot {slot} has no master that answers (failing: {})",
            failing.join(", ")
        )),
        None => Ok(masters),
    }
}

#[cfg(test)]
mod tests {
    use super::masters_of;

    const HEALTHY: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
r1 127.0.0.1:7003@17003 slave a1 0 0 1 connected
";

    #[test]
    fn every_master_is_walked_when_all_slots_are_served() {
        assert_eq!(
            masters_of(HEALTHY).unwrap(),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }

    #[test]
    fn a_failing_master_or_unserved_slots_refuse_the_walk() {
        let failing = HEALTHY.replace(
            "a2 127.0.0.1:7001@17001 master",
            "a2 127.0.0.1:7001@17001 master,fail",
        );
        let error = masters_of(&failing).unwrap_err();
        assert!(error.contains("7001") && error.contains("fail"), "{error}");
        let suspected = HEALTHY.replace(
            "a3 127.0.0.1:7002@17002 master",
            "a3 127.0.0.1:7002@17002 master,fail?",
        );
        assert!(masters_of(&suspected).is_err());
        // Mid-failover: the failed master is gone from the list, its slots
        // not yet taken over.
        let uncovered: String = HEALTHY
            .lines()
            .filter(|line| !line.starts_with("a2"))
            .map(|line| format!("{line}\n"))
            .collect();
        let error = masters_of(&uncovered).unwrap_err();
        assert!(error.contains("5461"), "{error}");
        // A slot being migrated is still served by its master.
        let migrating = HEALTHY.replace("0-5460", "0-5459 5460 [5460->-a2]");
        assert!(masters_of(&migrating).is_ok());
    }

    #[test]
    fn masters_are_read_from_cluster_nodes_and_a_failed_one_without_slots_is_left_out() {
        // a4 failed and its replica a3 took its slots over.
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7003@17003 master - 0 0 4 connected 10923-16383
a4 127.0.0.1:7004@17004 master,fail - 0 0 3 disconnected
";
        assert_eq!(
            masters_of(nodes).unwrap(),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002),
                ("127.0.0.1".to_owned(), 7003)
            ]
        );
    }
}
