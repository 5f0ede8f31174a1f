//! The gateway against RFC 9111, 9110 and 9213, rule by rule, through real
//! sockets and a real upstream on 127.0.0.1, on the mock clock the cache
//! and the upstream share (see `gateway_support`).

mod gateway_support;

use gateway_support::*;
use strata::TargetedField;

/// RFC 9213: the gateway, a CDN-class cache, obeys `CDN-Cache-Control`
/// (after its own `Strata-Cache-Control`): when present and valid it
/// replaces `Cache-Control` for storage and freshness.
#[tokio::test]
async fn cdn_cache_control_replaces_cache_control_at_the_gateway() {
    let t = setup().await;
    // What CDN-Cache-Control forbids is not stored, whatever Cache-Control says.
    t.not_stored(
        "/r/cdn-nostore?cc=public,max-age=60&cdn=no-store",
        "no-store",
    )
    .await;
    t.not_stored("/r/cdn-private?cc=public,max-age=60&cdn=private", "private")
        .await;
    t.not_stored(
        "/r/cdn-nocache?cc=public,max-age=60&cdn=no-cache",
        "no-cache",
    )
    .await;
    t.not_stored(
        "/r/cdn-zero?cc=public,max-age=60&cdn=max-age=0",
        "no-freshness",
    )
    .await;
    // And what it allows is stored, whatever Cache-Control says.
    t.stored("/r/cdn-allows?cc=no-store&cdn=max-age=60").await;
    // `no-cache` with a validator: stored, revalidated before every use.
    let url = "/r/cdn-nocache-etag?cc=public,max-age=60&cdn=no-cache&etag=v1";
    assert!(t.get(url).await.cache_status.ends_with("stored"));
    let again = t.get(url).await;
    assert!(
        again.cache_status.contains("fwd=stale") && again.cache_status.contains("fwd-status=304"),
        "{}",
        again.cache_status
    );

    // Its lifetime wins, longer or shorter than Cache-Control's.
    let longer = "/r/cdn-longer?cc=max-age=10&cdn=max-age=100";
    let shorter = "/r/cdn-shorter?cc=max-age=100&cdn=max-age=10";
    t.stored(longer).await;
    t.stored(shorter).await;
    t.advance(50);
    assert_eq!(t.get(longer).await.cache_status, "strata; hit");
    assert!(
        t.get(shorter)
            .await
            .cache_status
            .starts_with("strata; fwd=stale")
    );
}

/// An invalid `CDN-Cache-Control` (not a Structured Fields Dictionary, or
/// empty) is ignored: `Cache-Control` applies.
#[tokio::test]
async fn an_invalid_cdn_cache_control_is_ignored() {
    let t = setup().await;
    for url in [
        "/r/cdn-bad-key?cc=max-age=10&cdn=@bad",
        "/r/cdn-trailing?cc=max-age=10&cdn=no-store,",
        "/r/cdn-empty?cc=max-age=10&cdn=",
    ] {
        t.stored(url).await;
    }
    t.advance(20);
    for url in [
        "/r/cdn-bad-key?cc=max-age=10&cdn=@bad",
        "/r/cdn-trailing?cc=max-age=10&cdn=no-store,",
        "/r/cdn-empty?cc=max-age=10&cdn=",
    ] {
        let seen = t.get(url).await;
        assert!(
            seen.cache_status.starts_with("strata; fwd=stale"),
            "{url}: {}",
            seen.cache_status
        );
    }
}

/// Strata's own field is more specific than `CDN-Cache-Control`; the order
/// is the cache's to choose; and a cache told to obey only its own field
/// (an in-app layer's default) ignores `CDN-Cache-Control`.
#[tokio::test]
async fn the_target_list_decides_which_field_counts() {
    let url = "/r/both?cc=max-age=1&scc=max-age=100&cdn=max-age=10";
    let cdn_only = "/r/cdn?cc=max-age=10&cdn=max-age=100";

    let t = setup().await;
    t.stored(url).await;
    t.stored(cdn_only).await;
    t.advance(50);
    assert_eq!(
        t.get(url).await.cache_status,
        "strata; hit",
        "Strata-Cache-Control first"
    );
    assert_eq!(t.get(cdn_only).await.cache_status, "strata; hit");

    let cdn_first = ProxyOptions {
        targeted_fields: vec![TargetedField::Cdn, TargetedField::Strata],
        ..ProxyOptions::default()
    };
    let t = setup_full(true, cdn_first).await;
    t.stored(url).await;
    t.advance(50);
    assert!(
        t.get(url)
            .await
            .cache_status
            .starts_with("strata; fwd=stale"),
        "CDN-Cache-Control first: 10 s"
    );

    let own_only = ProxyOptions {
        targeted_fields: vec![TargetedField::Strata],
        ..ProxyOptions::default()
    };
    let t = setup_full(true, own_only).await;
    t.stored(cdn_only).await;
    t.advance(50);
    assert!(
        t.get(cdn_only)
            .await
            .cache_status
            .starts_with("strata; fwd=stale"),
        "CDN-Cache-Control ignored: Cache-Control's 10 s"
    );
}

/// RFC 9111 §3: a final status the cache does not specially understand is
/// stored when its freshness is explicit and nothing forbids it; without
/// explicit freshness, or under `must-understand`, it is not.
#[tokio::test]
async fn unknown_statuses_are_stored_with_explicit_freshness_only() {
    let t = setup().await;
    for status in [299, 499, 599] {
        for freshness in ["cc=max-age=60", "cc=s-maxage=60", "expires=60"] {
            let url = format!(
                "/r/s{status}-{}?status={status}&{freshness}",
                &freshness[..3]
            );
            let hit = t.stored(&url).await;
            assert_eq!(hit.status.as_u16(), status, "{url}");
        }
        t.not_stored(
            &format!("/r/s{status}-none?status={status}"),
            "no-freshness",
        )
        .await;
        t.not_stored(
            &format!("/r/s{status}-public?status={status}&cc=public"),
            "no-freshness",
        )
        .await;
        t.not_stored(
            &format!("/r/s{status}-mu?status={status}&cc=max-age=60,must-understand"),
            "must-understand",
        )
        .await;
    }
    // An understood status under must-understand is stored, its no-store
    // lifted (§5.2.2.3).
    t.stored("/r/mu-ok?cc=max-age=60,must-understand,no-store")
        .await;
}

/// RFC 9111 §5.1: a list-based `Age` uses its first member, several field
/// lines the first line, and an invalid value is ignored: not fresh for
/// ever, not infinitely old.
#[tokio::test]
async fn age_uses_the_first_member_and_ignores_an_invalid_value() {
    let t = setup().await;
    // `7200, 0`: 7200 s old, past its hour of freshness on arrival.
    t.not_stored("/r/age-list?cc=max-age=3600&age=7200,%200", "already-stale")
        .await;
    // Lines `0` then `7200`: the first, so fresh.
    let hit = t
        .stored("/r/age-lines?cc=max-age=3600&age=0&age2=7200")
        .await;
    assert_eq!(hit.age, "0");
    // `abc`: ignored, so the age is the cache's own count from receipt.
    let hit = t.stored("/r/age-abc?cc=max-age=3600&age=abc").await;
    assert_eq!(hit.age, "0");
    t.advance(3599);
    assert_eq!(
        t.get("/r/age-abc?cc=max-age=3600&age=abc")
            .await
            .cache_status,
        "strata; hit"
    );
    t.advance(2);
    assert!(
        t.get("/r/age-abc?cc=max-age=3600&age=abc")
            .await
            .cache_status
            .starts_with("strata; fwd=stale")
    );
}

const STALE_DISCONNECTED: &str = "strata; fwd=stale; detail=stale-if-disconnected";
const DISCONNECTED_504: &str = "strata; fwd=stale; detail=disconnected";

/// RFC 9111 §4.2.4: when the upstream cannot be reached (its host went
/// away: connections refused, pooled ones closed), a stale copy answers,
/// unless it forbids that; then the cache answers 504 itself (§5.2.2.2).
#[tokio::test]
async fn stale_answers_when_the_upstream_is_unreachable_unless_forbidden() {
    let t = setup().await;
    let allowed = "/r/down-ok?cc=max-age=10";
    let forbidding = [
        "/r/down-mr?cc=max-age=10,must-revalidate&etag=v1",
        "/r/down-pr?cc=max-age=10,proxy-revalidate&etag=v1",
        "/r/down-sm?cc=s-maxage=10&etag=v1",
        "/r/down-nc?cc=no-cache&etag=v1",
    ];
    let stored = t.stored(allowed).await;
    for url in forbidding {
        assert!(t.get(url).await.cache_status.ends_with("stored"), "{url}");
    }
    t.advance(20);
    t.relay.cut();

    let seen = t.get(allowed).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.cache_status, STALE_DISCONNECTED);
    assert_eq!(seen.body, stored.body);
    for url in forbidding {
        let seen = t.get(url).await;
        assert_eq!(seen.status, 504, "{url}");
        assert_eq!(seen.cache_status, DISCONNECTED_504, "{url}");
    }
    // A client that asks for a validated response gets the gateway's own
    // error, and a URL with nothing stored too.
    let validated = t.get_with(allowed, &[("cache-control", "no-cache")]).await;
    assert_eq!(validated.status, 502);
    assert_eq!(t.get("/r/never-stored?cc=max-age=10").await.status, 502);
}

/// The same when the upstream drops the connection before a complete
/// response: the copy answers instead of the broken body.
#[tokio::test]
async fn stale_answers_when_the_upstream_drops_the_connection_midway() {
    let t = setup().await;
    let url = "/r/broken?cc=max-age=10";
    let stored = t.stored(url).await;
    let forbidden = "/r/broken-mr?cc=max-age=10,must-revalidate&etag=v1";
    assert!(t.get(forbidden).await.cache_status.ends_with("stored"));
    t.advance(20);
    t.origin
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = t.get(url).await;
    assert_eq!(seen.cache_status, STALE_DISCONNECTED);
    assert_eq!(seen.body, stored.body);
    let seen = t.get(forbidden).await;
    assert_eq!(
        (seen.status.as_u16(), seen.cache_status.as_str()),
        (504, DISCONNECTED_504)
    );
}

/// The maximum staleness is the gateway's to set; past it the upstream's
/// failure goes to the client.
#[tokio::test]
async fn stale_when_disconnected_stops_at_its_maximum() {
    let options = ProxyOptions {
        stale_if_disconnected: Duration::from_secs(30),
        ..ProxyOptions::default()
    };
    let t = setup_full(true, options).await;
    let url = "/r/bounded?cc=max-age=10&etag=v1";
    t.stored(url).await;
    t.advance(40);
    t.relay.cut();
    assert_eq!(t.get(url).await.cache_status, STALE_DISCONNECTED);
    t.advance(1);
    let seen = t.get(url).await;
    assert_eq!(seen.status, 502, "41 s past: {}", seen.cache_status);
}

/// Interim responses (1xx): an upstream's `103 Early Hints` before its 200
/// is neither stored nor merged into the final response, on the miss or
/// on later hits. (Forwarding it to the client is not possible: hyper's
/// server cannot send a 1xx response.)
#[tokio::test]
async fn an_interim_response_is_never_stored_or_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = "HTTP/1.1 103 Early Hints\r\n\
                              link: </style.css>; rel=preload\r\n\
                              x-interim: yes\r\n\r\n\
                              HTTP/1.1 200 OK\r\n\
                              cache-control: max-age=60\r\n\
                              content-length: 5\r\n\
                              connection: close\r\n\r\n\
                              hello";
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    let cache = ProxyOptions::default().configure(Cache::builder()).build();
    let target = proxy::Upstream::parse(&format!("http://{upstream}")).unwrap();
    let gateway = serve(proxy::gateway(target, &cache, ProxyOptions::default())).await;
    let client = reqwest::Client::new();
    for expected in ["strata; fwd=uri-miss; stored", "strata; hit"] {
        let response = client
            .get(format!("http://{}/page", gateway.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-status"], expected);
        for interim in ["link", "x-interim"] {
            assert!(
                !response.headers().contains_key(interim),
                "{interim} leaked"
            );
        }
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.abort();
}

/// `Accept-Language` and `Accept` are normalised like `Accept-Encoding`:
/// spellings an origin cannot tell apart share a variant; different
/// preferences do not.
#[tokio::test]
async fn equivalent_accept_language_and_accept_share_a_variant() {
    let t = setup().await;
    let url = "/r/lang?cc=max-age=60&vary=Accept-Language,Accept";
    let first = t
        .get_with(
            url,
            &[
                ("accept-language", "fr-CH, fr;q=0.9, en;q=0.8"),
                ("accept", "text/html, */*;q=0.1"),
            ],
        )
        .await;
    assert!(
        first.cache_status.ends_with("stored"),
        "{}",
        first.cache_status
    );
    let same = t
        .get_with(
            url,
            &[
                ("accept-language", "en;q=0.8,FR-ch , fr;q=0.90"),
                ("accept", "*/*;q=0.100,TEXT/HTML"),
            ],
        )
        .await;
    assert_eq!(same.cache_status, "strata; hit");
    assert_eq!(same.body, first.body);
    let other = t
        .get_with(
            url,
            &[
                ("accept-language", "en, fr-CH;q=0.9"),
                ("accept", "text/html, */*;q=0.1"),
            ],
        )
        .await;
    assert!(
        other.cache_status.ends_with("stored"),
        "{}",
        other.cache_status
    );
    assert!(
        other.body.contains("lang=en, fr-CH;q=0.9"),
        "{}",
        other.body
    );
    assert_eq!(t.origin.calls("/r/lang"), 2);
}

/// Query parameters sort stably by their decoded name: two spellings of
/// one name in either order are two keys, and both reach the origin.
#[tokio::test]
async fn query_spellings_the_origin_tells_apart_reach_it_separately() {
    let t = setup().await;
    let a = t.get("/r/q?cc=max-age=60&role=admin&%72ole=user").await;
    let b = t.get("/r/q?cc=max-age=60&%72ole=user&role=admin").await;
    assert!(a.cache_status.ends_with("stored"), "{}", a.cache_status);
    assert!(b.cache_status.ends_with("stored"), "{}", b.cache_status);
    assert_eq!(t.origin.calls("/r/q"), 2);
    // The same spelling again is a hit.
    assert_eq!(
        t.get("/r/q?cc=max-age=60&role=admin&%72ole=user")
            .await
            .cache_status,
        "strata; hit"
    );
}

/// A GET with a body is passed on as it is: never answered from an entry,
/// never stored.
#[tokio::test]
async fn a_get_with_a_body_is_neither_served_from_nor_stored_in_an_entry() {
    let t = setup().await;
    let url = "/r/body?cc=max-age=60";
    let send_with_body = || {
        t.client
            .get(format!("http://{}{url}", t.gateway.addr))
            .body("{\"filter\":\"mine\"}")
            .send()
    };
    let with_body = send_with_body().await.unwrap();
    assert_eq!(with_body.status(), 200);
    assert_eq!(
        with_body.headers()["cache-status"],
        "strata; fwd=bypass; detail=request-body"
    );
    assert_eq!(t.origin.calls("/r/body"), 1);
    // Nothing was stored: the plain GET fills, then hits.
    t.stored(url).await;
    assert_eq!(t.origin.calls("/r/body"), 2);
    // With an entry stored, a GET with a body still goes to the origin.
    let again = send_with_body().await.unwrap();
    assert_eq!(
        again.headers()["cache-status"],
        "strata; fwd=bypass; detail=request-body"
    );
    assert_eq!(t.origin.calls("/r/body"), 3);
    assert_eq!(t.get(url).await.cache_status, "strata; hit");
}

/// One raw HTTP/1.x exchange with the gateway; returns the whole answer.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// An attacker's `Host` reaches the upstream only as the cache key says.
/// By default the gateway tells the upstream nothing about the client's
/// host, so a page an origin builds from `X-Forwarded-Host` cannot carry
/// `evil.example`; told the client's host (`ForwardedHost::Client`), the
/// cache keys by it, so such a page only ever reaches requests for
/// evil.example. A client's own `X-Forwarded-*` and `Forwarded` never reach
/// the origin; a Host-less HTTP/1.0 request tells it no host; an invalid
/// `Host` gets 400.
#[tokio::test]
async fn no_client_can_poison_the_gateway_through_the_host() {
    let t = setup_with(false).await;
    let url = "/r/page?cc=max-age=600";
    let attack = t
        .get_with(
            url,
            &[
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
                ("forwarded", "host=evil.example"),
            ],
        )
        .await;
    assert!(!attack.body.contains("evil"), "{}", attack.body);
    let victim = t.get_with(url, &[("host", "shop.example")]).await;
    assert_eq!(victim.cache_status, "strata; hit");
    assert!(!victim.body.contains("evil"), "{}", victim.body);

    let options = ProxyOptions {
        forwarded_host: proxy::ForwardedHost::Client,
        ..ProxyOptions::default()
    };
    let t = setup_full(false, options).await;
    let attack = t.get_with(url, &[("host", "evil.example")]).await;
    assert!(
        attack.body.contains("http://evil.example/app.js"),
        "{}",
        attack.body
    );
    let victim = t.get_with(url, &[("host", "shop.example")]).await;
    assert!(
        victim.cache_status.ends_with("stored"),
        "{}",
        victim.cache_status
    );
    assert!(
        victim.body.contains("http://shop.example/app.js"),
        "{}",
        victim.body
    );
    // Case and the default port are one host.
    let again = t.get_with(url, &[("host", "SHOP.example:80")]).await;
    assert_eq!(again.cache_status, "strata; hit");
    assert_eq!(again.body, victim.body);
    // The client's own forwarding fields never reach the origin.
    let spoofed = t
        .get_with(
            "/r/spoof?cc=max-age=600",
            &[
                ("host", "shop.example"),
                ("x-forwarded-host", "evil.example"),
                ("forwarded", "host=evil.example"),
            ],
        )
        .await;
    assert!(
        spoofed.body.contains("http://shop.example/app.js"),
        "{}",
        spoofed.body
    );
    assert!(!spoofed.body.contains("evil"), "{}", spoofed.body);
    // HTTP/1.0 without Host: no host at all, not the client's own field.
    let answer = raw(
        t.gateway.addr,
        "GET /r/nohost?cc=max-age=600 HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await;
    assert!(answer.contains(" 200 OK"), "{answer}");
    assert!(answer.contains("src=\"http:///app.js\""), "{answer}");
    assert!(!answer.contains("evil"), "{answer}");

    // An invalid Host is refused before the cache or the origin sees it.
    for host in [
        "a\"b<c>",
        "user@shop.example",
        "shop.example:",
        "shop example",
    ] {
        let answer = raw(
            t.gateway.addr,
            &format!("GET /r/badhost HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{host}: {answer}");
    }
    assert_eq!(t.origin.calls("/r/badhost"), 0);
}

/// Fields named in `Connection` are removed before the cache computes the
/// variant: an attacker's `Accept-Language: fr` with `Connection: close,
/// Accept-Language` reaches the origin without the language, and is stored
/// as what it is, the page for no language; French users keep theirs.
#[tokio::test]
async fn connection_named_fields_cannot_choose_a_variant() {
    let t = setup_with(false).await;
    let url = "/r/i18n?cc=max-age=600&vary=Accept-Language";
    let attack = raw(
        t.gateway.addr,
        "GET /r/i18n?cc=max-age=600&vary=Accept-Language HTTP/1.1\r\nHost: shop.example\r\n\
         Accept-Language: fr\r\nConnection: close, Accept-Language\r\n\r\n",
    )
    .await;
    assert!(
        attack.contains("lang=-"),
        "the origin got no language: {attack}"
    );
    let french = t
        .get_with(url, &[("host", "shop.example"), ("accept-language", "fr")])
        .await;
    assert!(
        french.cache_status.ends_with("stored"),
        "{}",
        french.cache_status
    );
    assert!(french.body.contains("lang=fr"), "{}", french.body);
    let again = t
        .get_with(url, &[("host", "shop.example"), ("accept-language", "fr")])
        .await;
    assert_eq!(again.cache_status, "strata; hit");
    assert!(again.body.contains("lang=fr"));
}

/// By default the gateway does not obey clients' request directives, as
/// CDNs: a client's `no-cache` cannot make it refetch and replace a fresh
/// entry.
#[tokio::test]
async fn a_client_cannot_replace_a_fresh_entry_by_default() {
    let t = setup_full(false, ProxyOptions::default()).await;
    let url = "/r/fresh?cc=max-age=600";
    let stored = t.stored(url).await;
    for directive in ["no-cache", "max-age=0", "no-store"] {
        let seen = t.get_with(url, &[("cache-control", directive)]).await;
        assert_eq!(seen.cache_status, "strata; hit", "{directive}");
        assert_eq!(seen.body, stored.body);
    }
    assert_eq!(t.origin.calls("/r/fresh"), 1);
}

/// An origin that marks a URL `no-store` (or `private`, or `no-cache`
/// without a validator) leaves a short pass marker, as other unstorable
/// answers do: later concurrent requests go to the origin side by side,
/// not one flight after another.
#[tokio::test]
async fn uncacheable_answers_leave_a_pass_marker_so_requests_do_not_queue() {
    let t = setup().await;
    t.origin.slow.store(true, Ordering::SeqCst);
    for (url, path) in [
        ("/r/ns?cc=no-store", "/r/ns"),
        ("/r/pv?cc=private,max-age=60", "/r/pv"),
        ("/r/nc?cc=no-cache", "/r/nc"),
    ] {
        // The first answer teaches the cache that the URL is not stored.
        t.get(url).await;
        let started = std::time::Instant::now();
        let batch: Vec<_> = (0..10).map(|_| t.get(url)).collect();
        let seen = futures_util::future::join_all(batch).await;
        let elapsed = started.elapsed();
        assert!(seen.iter().all(|seen| seen.status == 200), "{url}");
        assert_eq!(t.origin.calls(path), 11, "{url}");
        // Each takes the upstream's 200 ms; queued behind one flight they
        // took two rounds (400 ms and more).
        assert!(elapsed < Duration::from_millis(380), "{url}: {elapsed:?}");
    }
}
