//! The gateway in operation: SIGTERM drains requests in flight, and a
//! pooled upstream connection the upstream closed is retried once. (Its
//! own test binary: it sends SIGTERM to its own process, which the
//! gateway's signal handler catches.)

mod gateway_support;

use std::sync::atomic::AtomicUsize;

use gateway_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one request head from `socket`; `false` when the peer closed.
async fn read_head(socket: &mut tokio::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

const OK: &str = "HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: 2\r\n\r\nok";

/// An upstream whose first connection answers one request and then, on
/// the next request it reads, closes without answering (its idle timeout
/// racing the gateway's reuse); later connections answer normally.
#[tokio::test]
async fn a_closed_pooled_connection_is_retried_once_for_a_get() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                while read_head(&mut socket).await {
                    if first && socket.write_all(OK.as_bytes()).await.is_ok() {
                        // Answer once, then drop the next request unanswered.
                        if read_head(&mut socket).await {
                            return;
                        }
                        return;
                    }
                    if socket.write_all(OK.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let options = ProxyOptions::default();
    let cache = options.configure(Cache::builder()).build();
    let target = proxy::Upstream::parse(&format!("http://{upstream}")).unwrap();
    let gateway = serve(proxy::gateway(target, &cache, options)).await;
    let client = reqwest::Client::new();
    for path in ["/one", "/two", "/three"] {
        let response = client
            .get(format!("http://{}{path}", gateway.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert!(connections.load(Ordering::SeqCst) >= 2);
    server.abort();
}

/// SIGTERM, like Ctrl-C, stops accepting and lets a request in flight (a
/// slow upstream answer) complete before the server returns.
#[tokio::test]
async fn sigterm_drains_a_request_in_flight() {
    let t = setup().await;
    t.origin.slow.store(true, Ordering::SeqCst);
    // A second gateway, served with the binary's shutdown signal.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ProxyOptions::default();
    let cache = options.configure(Cache::builder()).build();
    let target = proxy::Upstream::parse(&format!("http://{}", t.upstream.addr)).unwrap();
    let app = proxy::gateway(target, &cache, options);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(proxy::shutdown_signal())
        .await
    });
    // Let the server install its signal handler.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("http://{addr}/r/slow?cc=max-age=60"))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(80)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let response = in_flight.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("call 1 of /r/slow"));
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the server returned after draining"
    );
}
