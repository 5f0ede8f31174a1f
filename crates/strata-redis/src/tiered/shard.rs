//! The bus on Redis Cluster: sharded pub/sub on the master that owns the
//! channel's slot.
//!
//! Plain `PUBLISH` on a cluster is broadcast to every node over the
//! cluster bus: slower, and with no order between messages published
//! through different nodes, which the heartbeat's argument needs. A shard
//! channel lives on one master: every `SPUBLISH` runs there, in one order,
//! and is delivered to its subscribers straight away.
//!
//! The subscriber asks a seed node which master owns the channel's slot
//! (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`) and subscribes there, on a RESP3
//! connection whose pushes carry the messages. When the slot moves
//! (failover, resharding) the old owner sends `sunsubscribe`; that, the
//! connection dropping, or a publish answered with `MOVED` ends the
//! session, and the subscriber starts over from a seed node.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, ProtocolVersion,
    RedisError, RedisResult, Value,
};

use super::bus::{Feed, Publisher, Session};

/// Whether the server behind `conn` runs in cluster mode (`HELLO`'s
/// `mode`). A server that does not know `HELLO` without arguments (Redis
/// before 6.2) has no sharded pub/sub either: treated as standalone.
pub(super) async fn is_cluster(conn: &mut MultiplexedConnection) -> bool {
    let Ok(hello) = conn.req_packed_command(&redis::cmd("HELLO")).await else {
        return false;
    };
    let pairs: Vec<(&Value, &Value)> = match &hello {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect(),
        _ => return false,
    };
    pairs
        .into_iter()
        .any(|(key, value)| text(key) == Some(b"mode") && text(value) == Some(b"cluster"))
}

fn text(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// `SSUBSCRIBE channel` on the master of its slot, found through `seed`
/// (`conn` is connected to it), and a publishing connection to the same
/// node.
///
/// A replica serves `SSUBSCRIBE` (and `SPUBLISH`, to its own subscribers
/// only) for its master's slots, so a `MOVED` answer cannot be relied on
/// to find the master: the node is asked, after subscribing, whether it
/// is the slot's master. If it stops being the master later, it drops the
/// subscription (`sunsubscribe`), which ends the session.
pub(super) async fn open(
    seed: &ConnectionInfo,
    conn: &mut MultiplexedConnection,
    channel: &str,
    session: u64,
) -> RedisResult<Session> {
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(channel)
        .query_async(conn)
        .await?;
    let (host, port, _) = master_of(conn, slot).await?;
    let node = node_at(seed, &host, port)?;
    let mut publisher = Client::open(node.clone())?
        .get_multiplexed_async_connection()
        .await?;
    let (pushes_tx, pushes) = tokio::sync::mpsc::unbounded_channel();
    let settings = node
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = Client::open(node.set_redis_settings(settings))?;
    let config = AsyncConnectionConfig::new().set_push_sender(pushes_tx);
    let mut subscriber = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // A single command on a connection that sends nothing else: its
    // confirmation (a push) is its reply.
    redis::cmd("SSUBSCRIBE")
        .arg(channel)
        .query_async::<Value>(&mut subscriber)
        .await?;
    let id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut publisher)
        .await?;
    let (_, _, master) = master_of(&mut publisher, slot).await?;
    if master != id {
        return Err(RedisError::from((
            ErrorKind::Io,
            "the channel's master moved",
            format!("{host}:{port} no longer serves slot {slot}"),
        )));
    }
    Ok(Session {
        feed: Feed::Sharded {
            _connection: subscriber,
            pushes,
        },
        publisher: Publisher::new(publisher, true, session),
    })
}

/// The master of `slot` as the node behind `conn` sees it (`CLUSTER
/// SLOTS`): its host (empty if the node does not know it), port and id.
async fn master_of(
    conn: &mut MultiplexedConnection,
    slot: i64,
) -> RedisResult<(String, u16, String)> {
    let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let int = |value: Option<&Value>| match value {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let string = |value: Option<&Value>| {
        value
            .and_then(text)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    };
    for range in &ranges {
        let Value::Array(range) = range else { continue };
        let (Some(first), Some(last)) = (int(range.first()), int(range.get(1))) else {
            continue;
        };
        if !(first..=last).contains(&slot) {
            continue;
        }
        if let Some(Value::Array(master)) = range.get(2)
            && let (Some(host), Some(port), Some(id)) = (
                string(master.first()),
                int(master.get(1)).and_then(|port| u16::try_from(port).ok()),
                string(master.get(2)),
            )
        {
            return Ok((host, port, id));
        }
    }
    Err(RedisError::from((
        ErrorKind::Io,
        "no master serves the channel's slot",
        format!("slot {slot}"),
    )))
}

/// `node` with its address replaced by `host:port` (an empty or `?` host
/// means the node's own), keeping credentials and TLS settings.
fn node_at(node: &ConnectionInfo, host: &str, port: u16) -> RedisResult<ConnectionInfo> {
    let keep = |old: &str| {
        if host.is_empty() || host == "?" {
            old.to_owned()
        } else {
            host.to_owned()
        }
    };
    let addr = match node.addr() {
        ConnectionAddr::Tcp(old, _) => ConnectionAddr::Tcp(keep(old), port),
        ConnectionAddr::TcpTls {
            host: old,
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: keep(old),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => {
            return Err(RedisError::from((
                ErrorKind::Io,
                "a sharded bus needs TCP node addresses",
            )));
        }
    };
    Ok(node.clone().set_addr(addr))
}

#[cfg(test)]
mod tests {
    use redis::IntoConnectionInfo;

    use super::*;

    #[test]
    fn the_master_is_reached_with_the_seed_credentials() {
        let seed = "redis://user:secret@10.0.0.1:7000/"
            .into_connection_info()
            .unwrap();
        let master = node_at(&seed, "10.0.0.2", 7001).unwrap();
        assert_eq!(
            master.addr(),
            &ConnectionAddr::Tcp("10.0.0.2".to_owned(), 7001)
        );
        assert_eq!(master.redis_settings().password(), Some("secret"));
        assert_eq!(master.redis_settings().username(), Some("user"));
        let same_host = node_at(&seed, "", 7002).unwrap();
        assert_eq!(
            same_host.addr(),
            &ConnectionAddr::Tcp("10.0.0.1".to_owned(), 7002)
        );
    }
}
