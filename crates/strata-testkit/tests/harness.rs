//! Tests of the harness itself, against real `redis-server` processes.
//!
//! Each test returns early (after the harness prints `skipping: ...`) when
//! Redis is not installed and `CI` is not set.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use strata_testkit::{RedisCluster, RedisServer, Reply, command};

/// Whether nothing answers on `addr` any more.
fn refuses_connections(addr: SocketAddr) -> bool {
    command(addr, &["PING"]).is_err()
}

#[test]
fn a_server_answers_ping_and_keeps_data() {
    let started = Instant::now();
    let Some(server) = RedisServer::start() else {
        return;
    };
    eprintln!(
        "server on {} ready in {:?}",
        server.addr(),
        started.elapsed()
    );

    assert_ne!(
        server.port(),
        6379,
        "must never use the machine's own Redis"
    );
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert_eq!(server.addr().port(), server.port());

    assert_eq!(server.command(&["PING"]), Reply::Status("PONG".to_owned()));
    assert_eq!(server.command(&["SET", "greeting", "hello"]), Reply::ok());
    assert_eq!(server.command(&["GET", "greeting"]), Reply::bulk("hello"));
    assert_eq!(server.command(&["GET", "greeting"]).to_string(), "hello");
    assert_eq!(server.command(&["GET", "missing"]), Reply::Nil);
    assert_eq!(server.command(&["INCR", "counter"]), Reply::Integer(1));
    assert!(server.command(&["NO-SUCH-COMMAND"]).is_error());
    // Persistence is off, as the harness promises.
    assert_eq!(
        server.command(&["CONFIG", "GET", "save"]),
        Reply::Array(vec![Reply::bulk("save"), Reply::bulk("")])
    );
}

#[test]
fn stop_makes_redis_go_away_and_restart_brings_it_back_on_the_same_port() {
    let started = Instant::now();
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let port = server.port();
    let first_pid = server.pid().unwrap();
    assert_eq!(server.command(&["SET", "k", "v"]), Reply::ok());

    server.stop();
    assert!(
        refuses_connections(server.addr()),
        "Redis still answers after stop()"
    );
    assert_eq!(server.pid(), None);
    server.stop(); // stopping twice is fine

    server.restart();
    assert_eq!(server.port(), port, "restart() must keep the port");
    assert_ne!(server.pid(), Some(first_pid));
    assert_eq!(server.command(&["PING"]), Reply::Status("PONG".to_owned()));
    // A new process without persistence: the data is gone.
    assert_eq!(server.command(&["GET", "k"]), Reply::Nil);

    // Restarting a running server replaces it, again on the same port.
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.command(&["PING"]).to_string(), "PONG");
    eprintln!("stop/restart cycle took {:?}", started.elapsed());
}

#[test]
fn dropping_a_server_kills_the_process() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let addr = server.addr();
    let pid = server.pid().unwrap();
    assert_eq!(server.command(&["PING"]).to_string(), "PONG");

    drop(server);
    assert!(refuses_connections(addr), "Redis still answers after drop");
    #[cfg(target_os = "linux")]
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists after drop"
    );
    let _ = pid;
}

#[test]
fn servers_started_together_get_their_own_ports() {
    let servers: Vec<RedisServer> = (0..4).filter_map(|_| RedisServer::start()).collect();
    if servers.is_empty() {
        return;
    }
    let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
    for (index, server) in servers.iter().enumerate() {
        let value = index.to_string();
        assert_eq!(server.command(&["SET", "who", &value]), Reply::ok());
    }
    for (index, server) in servers.iter().enumerate() {
        assert_eq!(
            server.command(&["GET", "who"]).to_string(),
            index.to_string()
        );
    }
}

#[test]
fn extra_arguments_reach_the_server() {
    let Some(server) = RedisServer::start_with_args(&["--maxmemory", "1mb"]) else {
        return;
    };
    assert_eq!(
        server.command(&["CONFIG", "GET", "maxmemory"]),
        Reply::Array(vec![Reply::bulk("maxmemory"), Reply::bulk("1048576")])
    );
}

#[test]
fn a_password_protected_server_starts() {
    let Some(server) = RedisServer::start_with_args(&["--requirepass", "secret"]) else {
        return;
    };
    assert!(server.command(&["PING"]).to_string().starts_with("NOAUTH"));
}

#[test]
fn redis_cli_talks_to_the_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    assert_eq!(server.redis_cli(&["SET", "k", "from-cli"]).trim(), "OK");
    assert_eq!(server.command(&["GET", "k"]).to_string(), "from-cli");
}

#[test]
fn the_log_tail_comes_from_the_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = server.log_tail();
    assert!(
        log.contains(&format!("127.0.0.1:{}", server.port())),
        "{log}"
    );
    assert!(log.contains("Ready to accept connections"), "{log}");
}

#[test]
fn a_three_master_cluster_serves_all_slots() {
    let started = Instant::now();
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    eprintln!("3-master cluster ready in {:?}", started.elapsed());

    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(cluster.urls().len(), 3);
    for (url, port) in cluster.urls().iter().zip(cluster.ports()) {
        assert_eq!(url, &format!("redis://127.0.0.1:{port}/"));
    }

    for node in cluster.nodes() {
        let info = node.command(&["CLUSTER", "INFO"]).to_string();
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
    }

    // CLUSTER SLOTS: [[start, end, [ip, port, id, ...], ...], ...]
    let Reply::Array(ranges) = cluster.nodes()[0].command(&["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS is not an array");
    };
    let mut owned = 0;
    let mut masters = Vec::new();
    for range in ranges {
        let Reply::Array(fields) = range else {
            panic!("slot range is not an array: {range:?}");
        };
        let (Reply::Integer(start), Reply::Integer(end), Reply::Array(master)) =
            (&fields[0], &fields[1], &fields[2])
        else {
            panic!("unexpected slot range {fields:?}");
        };
        owned += end - start + 1;
        let Reply::Integer(port) = master[1] else {
            panic!("unexpected master {master:?}");
        };
        masters.push(u16::try_from(port).unwrap());
    }
    assert_eq!(owned, 16384);
    masters.sort_unstable();
    masters.dedup();
    let mut ports = cluster.ports();
    ports.sort_unstable();
    assert_eq!(
        masters, ports,
        "each of the 3 nodes must be a master owning slots"
    );

    // Exactly one node owns a key; the others redirect with MOVED.
    let replies: Vec<Reply> = cluster
        .nodes()
        .iter()
        .map(|node| node.command(&["SET", "some-key", "v"]))
        .collect();
    assert_eq!(
        replies
            .iter()
            .filter(|reply| **reply == Reply::ok())
            .count(),
        1
    );
    assert!(
        replies
            .iter()
            .filter(|reply| reply.is_error())
            .all(|reply| reply.to_string().starts_with("MOVED ")),
        "{replies:?}"
    );

    let addrs = cluster.addrs();
    drop(cluster);
    for addr in addrs {
        assert!(
            refuses_connections(addr),
            "cluster node {addr} still answers"
        );
    }
    eprintln!("cluster test took {:?}", started.elapsed());
}

#[test]
fn a_failed_cluster_node_rejoins_after_restart() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let started = Instant::now();
    let port = cluster.ports()[1];
    cluster.nodes_mut()[1].stop();
    assert!(refuses_connections(cluster.addrs()[1]));
    // Past the 2 s node timeout, the other nodes mark it failed and the
    // cluster stops serving: what a store sees when a master goes away.
    let survivor = &cluster.nodes()[0];
    while !survivor
        .command(&["CLUSTER", "INFO"])
        .to_string()
        .contains("cluster_state:fail")
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the cluster never noticed"
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("cluster_state:fail after {:?}", started.elapsed());

    cluster.nodes_mut()[1].restart();
    assert_eq!(cluster.ports()[1], port);
    cluster.wait_until_ready();
    for node in cluster.nodes() {
        let info = node.command(&["CLUSTER", "INFO"]).to_string();
        assert!(info.contains("cluster_state:ok"), "{info}");
    }
    eprintln!("node stop/restart/rejoin took {:?}", started.elapsed());
}
