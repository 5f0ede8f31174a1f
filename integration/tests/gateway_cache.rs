//! The gateway caching by the upstream's own headers
//! (`CachePolicy::origin`, RFC 9111 as a shared cache), through real
//! sockets: client -> gateway (strata layer + proxy) -> an upstream this
//! test starts. Time moves on a mock clock that the cache and the
//! upstream's `Date`, `Expires` and `Last-Modified` share.
//!
//! The upstream answers `/r/{name}` with the headers its query asks for
//! (`cc`, `scc`, `age`, `vary`, `expires`, `lm`, `sk`, `cookie`,
//! `rollcookie`, `status`, `chunked`), and a body naming how often that URL was called and the
//! request's `Accept-Language` and `Accept-Encoding`.

mod gateway_support;

use gateway_support::*;

#[tokio::test]
async fn s_maxage_wins_over_max_age_which_wins_over_expires() {
    let t = setup().await;
    // s-maxage=100 beats max-age=10 for a shared cache.
    t.stored("/r/smax?cc=public,max-age=10,s-maxage=100").await;
    // max-age=10 beats an Expires 1000 s away.
    t.stored("/r/maxage?cc=max-age=10&expires=1000").await;
    // Expires - Date = 30 s when nothing else says.
    t.stored("/r/expires?expires=30").await;

    t.advance(20);
    assert_eq!(
        t.get("/r/smax?cc=public,max-age=10,s-maxage=100")
            .await
            .cache_status,
        "strata; hit"
    );
    assert_eq!(
        t.get("/r/maxage?cc=max-age=10&expires=1000")
            .await
            .cache_status,
        "strata; fwd=stale; stored"
    );
    let expires = t.get("/r/expires?expires=30").await;
    assert_eq!(expires.cache_status, "strata; hit");
    assert_eq!(expires.age, "20");

    t.advance(15);
    assert_eq!(
        t.get("/r/expires?expires=30").await.cache_status,
        "strata; fwd=stale; stored"
    );
    t.advance(70);
    assert_eq!(
        t.get("/r/smax?cc=public,max-age=10,s-maxage=100")
            .await
            .cache_status,
        "strata; fwd=stale; stored"
    );
}

#[tokio::test]
async fn an_invalid_expires_means_already_stale() {
    let t = setup().await;
    // `Expires: 0` (not a date) with nothing else: stale at once.
    t.not_stored("/r/bad?cc=public&rawexpires=0", "no-freshness")
        .await;
}

#[tokio::test]
async fn private_no_store_and_no_cache_are_not_stored_and_reach_the_client_as_sent() {
    let t = setup().await;
    t.not_stored("/r/private?cc=private,max-age=60", "private")
        .await;
    t.not_stored("/r/nostore?cc=no-store,max-age=60", "no-store")
        .await;
    t.not_stored("/r/nocache?cc=no-cache,max-age=60", "no-cache")
        .await;
    let seen = t.get("/r/private?cc=private,max-age=60").await;
    assert_eq!(seen.headers["cache-control"], "private,max-age=60");
    // Nothing said at all: nothing stored.
    t.not_stored("/r/silent", "no-freshness").await;
}

#[tokio::test]
async fn a_request_saying_no_store_is_not_stored() {
    let t = setup().await;
    for _ in 0..2 {
        let seen = t
            .get_with("/r/asked?cc=max-age=60", &[("cache-control", "no-store")])
            .await;
        assert!(
            seen.cache_status.contains("detail="),
            "{}",
            seen.cache_status
        );
    }
    assert_eq!(t.origin.calls("/r/asked"), 2);
}

#[tokio::test]
async fn with_authorization_only_public_s_maxage_or_must_revalidate_are_shared() {
    let t = setup().await;
    let auth = [("authorization", "Bearer alice")];
    for _ in 0..2 {
        let seen = t.get_with("/r/auth-plain?cc=max-age=60", &auth).await;
        assert!(
            seen.cache_status.ends_with("detail=authorization"),
            "{}",
            seen.cache_status
        );
    }
    for url in [
        "/r/auth-public?cc=public,max-age=60",
        "/r/auth-smax?cc=s-maxage=60",
        "/r/auth-must?cc=max-age=60,must-revalidate",
    ] {
        let miss = t.get_with(url, &auth).await;
        assert!(
            miss.cache_status.ends_with("stored"),
            "{url}: {}",
            miss.cache_status
        );
        let hit = t.get_with(url, &auth).await;
        assert_eq!(hit.cache_status, "strata; hit", "{url}");
    }
}

#[tokio::test]
async fn every_heuristically_cacheable_status_is_stored_with_freshness_from_last_modified() {
    let t = setup().await;
    // Modified 10 hours ago: 10 % is an hour of freshness.
    for status in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
        let url = format!("/r/h{status}?status={status}&lm=-36000");
        let miss = t.get(&url).await;
        assert_eq!(miss.status.as_u16(), status);
        assert!(
            miss.cache_status.ends_with("stored"),
            "{status}: {}",
            miss.cache_status
        );
        let hit = t.get(&url).await;
        assert_eq!(hit.cache_status, "strata; hit", "{status}");
        assert_eq!(hit.status.as_u16(), status);
    }
    t.advance(3_500);
    assert_eq!(
        t.get("/r/h200?status=200&lm=-36000").await.cache_status,
        "strata; hit"
    );
    t.advance(200);
    assert_eq!(
        t.get("/r/h200?status=200&lm=-36000").await.cache_status,
        "strata; fwd=stale; stored"
    );
    // Not heuristically cacheable: a 201 or a 500 with Last-Modified only.
    t.not_stored("/r/h201?status=201&lm=-36000", "no-freshness")
        .await;
    t.not_stored("/r/h500?status=500&lm=-36000", "no-freshness")
        .await;
    // But any status the cache understands is stored when told explicitly.
    t.stored("/r/e500?status=500&cc=max-age=60").await;
}

#[tokio::test]
async fn age_counts_the_upstreams_age() {
    let t = setup().await;
    let miss = t.get("/r/aged?cc=max-age=60&age=30").await;
    assert!(miss.cache_status.ends_with("stored"));
    assert_eq!(miss.age, "30");
    t.advance(20);
    let hit = t.get("/r/aged?cc=max-age=60&age=30").await;
    assert_eq!(hit.cache_status, "strata; hit");
    assert_eq!(hit.age, "50");
    t.advance(11);
    assert_eq!(
        t.get("/r/aged?cc=max-age=60&age=30").await.cache_status,
        "strata; fwd=stale; stored"
    );
    // Already older than its lifetime: never fresh here.
    t.not_stored("/r/old?cc=max-age=60&age=90", "already-stale")
        .await;
}

#[tokio::test]
async fn vary_keeps_two_and_three_variants_apart_and_vary_star_is_not_stored() {
    let t = setup().await;
    let url = "/r/lang?cc=max-age=60&vary=Accept-Language";
    let mut bodies = Vec::new();
    for lang in ["en", "fr"] {
        let miss = t.get_with(url, &[("accept-language", lang)]).await;
        assert!(
            miss.cache_status.contains("stored"),
            "{lang}: {}",
            miss.cache_status
        );
        assert!(miss.body.contains(&format!("lang={lang}")));
        bodies.push(miss.body);
    }
    for (lang, body) in ["en", "fr"].iter().zip(&bodies) {
        let hit = t.get_with(url, &[("accept-language", lang)]).await;
        assert_eq!(hit.cache_status, "strata; hit", "{lang}");
        assert_eq!(&hit.body, body);
    }
    assert_eq!(t.origin.calls("/r/lang"), 2);

    let url = "/r/three?cc=max-age=60&vary=Accept-Language,Accept-Encoding";
    let variants = [("en", "gzip"), ("en", "br"), ("de", "gzip")];
    for (lang, enc) in variants {
        let miss = t
            .get_with(url, &[("accept-language", lang), ("accept-encoding", enc)])
            .await;
        assert!(
            miss.body.contains(&format!("lang={lang} enc={enc}")),
            "{}",
            miss.body
        );
    }
    for (lang, enc) in variants {
        let hit = t
            .get_with(url, &[("accept-language", lang), ("accept-encoding", enc)])
            .await;
        assert_eq!(hit.cache_status, "strata; hit");
        assert!(
            hit.body.contains(&format!("lang={lang} enc={enc}")),
            "{}",
            hit.body
        );
    }
    assert_eq!(t.origin.calls("/r/three"), 3);
    // Accept-Encoding is compared case- and order-insensitively (RFC 9111
    // §4.1 allows normalising it); Accept-Language is not.
    let same = t
        .get_with(
            url,
            &[("accept-language", "en"), ("accept-encoding", " GZIP ")],
        )
        .await;
    assert_eq!(same.cache_status, "strata; hit");
    assert_eq!(t.origin.calls("/r/three"), 3);

    t.not_stored("/r/star?cc=max-age=60&vary=*", "vary-star")
        .await;
}

#[tokio::test]
async fn a_strata_targeted_field_overrides_cache_control_and_is_removed() {
    let t = setup().await;
    let hit = t.stored("/r/targeted?cc=no-store&scc=max-age=60").await;
    assert_eq!(
        hit.headers["cache-control"], "no-store",
        "downstream still told no-store"
    );
    assert!(!hit.headers.contains_key("strata-cache-control"));
    // Later decisions keep reading the targeted field: its
    // `must-revalidate` forbids the stale window Cache-Control grants...
    let url =
        "/r/strict-target?cc=max-age=10,stale-while-revalidate=60&scc=max-age=10,must-revalidate";
    t.stored(url).await;
    t.advance(15);
    let refetched = t.get(url).await;
    assert_eq!(refetched.cache_status, "strata; fwd=stale; stored");
    assert!(!refetched.headers.contains_key("strata-cache-control"));
    // ...and its `s-maxage` refuses a client's `max-stale` (RFC 9111 §4.2.4).
    let url = "/r/shared-target?cc=max-age=10&scc=s-maxage=10";
    t.stored(url).await;
    t.advance(15);
    let refused = t.get_with(url, &[("cache-control", "max-stale")]).await;
    assert_eq!(refused.cache_status, "strata; fwd=stale; stored");

    // The other way round: Cache-Control allows, strata is told not to.
    t.not_stored("/r/told?cc=max-age=60&scc=no-store", "no-store")
        .await;
    let seen = t.get("/r/told?cc=max-age=60&scc=no-store").await;
    assert!(!seen.headers.contains_key("strata-cache-control"));
}

#[tokio::test]
async fn surrogate_keys_are_tags_that_invalidation_reaches() {
    let t = setup().await;
    // `Cache-Tag` (comma separated) is read the same way.
    t.stored("/r/four?cc=max-age=600&ct=catalog,x").await;
    t.stored("/r/one?cc=max-age=600&sk=team-7%20catalog").await;
    t.stored("/r/two?cc=max-age=600&sk=catalog").await;
    t.stored("/r/three?cc=max-age=600&sk=other").await;
    let dropped = t.cache.handle().invalidate_tag("catalog").await.unwrap();
    assert_eq!(dropped, 3);
    assert_eq!(
        t.get("/r/four?cc=max-age=600&ct=catalog,x")
            .await
            .cache_status,
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(
        t.get("/r/one?cc=max-age=600&sk=team-7%20catalog")
            .await
            .cache_status,
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(
        t.get("/r/two?cc=max-age=600&sk=catalog").await.cache_status,
        "strata; fwd=uri-miss; stored"
    );
    assert_eq!(
        t.get("/r/three?cc=max-age=600&sk=other").await.cache_status,
        "strata; hit"
    );
}

#[tokio::test]
async fn a_set_cookie_response_is_never_shared() {
    let t = setup().await;
    t.not_stored("/r/cookie?cc=public,max-age=60&cookie=1", "set-cookie")
        .await;
}

#[tokio::test]
async fn stale_while_revalidate_from_the_upstream_refreshes_in_the_background() {
    let t = setup().await;
    let url = "/r/swr?cc=max-age=10,stale-while-revalidate=30";
    t.stored(url).await;
    t.advance(15);
    // The refresh takes 200 ms upstream.
    t.origin.slow.store(true, Ordering::SeqCst);
    let stale = t.get(url).await;
    assert_eq!(
        stale.cache_status,
        "strata; hit; detail=stale-while-revalidate"
    );
    assert!(stale.body.starts_with("call 1 "), "{}", stale.body);
    // More stale requests while that refresh is still upstream: they are
    // answered from the stale copy and start no refresh of their own.
    let more = futures_util::future::join_all((0..20).map(|_| t.get(url))).await;
    for seen in &more {
        assert!(seen.body.starts_with("call 1 "), "{}", seen.body);
    }
    t.origin.slow.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = t.get(url).await;
        if seen.body.starts_with("call 2 ") {
            assert_eq!(seen.cache_status, "strata; hit");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(t.origin.calls("/r/swr"), 2);
}

#[tokio::test]
async fn stale_if_error_covers_an_upstream_500_and_an_upstream_that_is_down() {
    let mut t = setup().await;
    let url = "/r/sie?cc=max-age=10,stale-if-error=300";
    t.stored(url).await;

    t.advance(20);
    t.origin.failing.store(true, Ordering::SeqCst);
    let stale = t.get(url).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(
        stale.cache_status,
        "strata; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    assert!(stale.body.starts_with("call 1 "));

    // The upstream gone altogether: the gateway's own 502 is covered too.
    // (A second gateway on the same cache: the first one's pooled
    // connections would outlive the upstream's listener.)
    let gone = t.upstream.addr;
    t.upstream.task.abort();
    let _ = (&mut t.upstream.task).await;
    let target = Upstream::parse(&format!("http://{gone}")).unwrap();
    let second = serve(proxy::gateway(target, &t.cache, ProxyOptions::default())).await;
    let response = t
        .client
        .get(format!("http://{}{url}", second.addr))
        .send()
        .await
        .unwrap();
    let stale = Seen {
        status: response.status(),
        cache_status: response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned(),
        age: String::new(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    };
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(
        stale.cache_status,
        "strata; fwd=stale; fwd-status=502; detail=stale-if-error"
    );

    // must-revalidate forbids it.
    let t = setup().await;
    let url = "/r/strict?cc=max-age=10,stale-if-error=300,must-revalidate";
    t.stored(url).await;
    t.advance(20);
    t.origin.failing.store(true, Ordering::SeqCst);
    assert_eq!(t.get(url).await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_write_invalidates_its_url_and_its_same_origin_location() {
    let t = setup().await;
    t.stored("/r/items/7?cc=max-age=600").await;
    t.stored("/r/elsewhere/8?cc=max-age=600").await;
    let created = t
        .client
        .post(format!(
            "http://{}/r/items?location=/r/items/7",
            t.gateway.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        t.get("/r/items/7?cc=max-age=600").await.cache_status,
        "strata; fwd=uri-miss; stored"
    );
    // A Location on another origin invalidates nothing (RFC 9111 §4.4).
    t.client
        .post(format!(
            "http://{}/r/items?location=http://elsewhere.example/r/elsewhere/8",
            t.gateway.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.get("/r/elsewhere/8?cc=max-age=600").await.cache_status,
        "strata; hit"
    );
    // Content-Location, relative to the request, too.
    t.stored("/r/items/9?cc=max-age=600").await;
    t.client
        .post(format!("http://{}/r/items/new?clocation=9", t.gateway.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.get("/r/items/9?cc=max-age=600").await.cache_status,
        "strata; fwd=uri-miss; stored"
    );
}

#[tokio::test]
async fn request_no_cache_and_pragma_fetch_anew_and_store_the_answer() {
    let t = setup().await;
    let url = "/r/nc?cc=max-age=600";
    t.stored(url).await;
    for (name, value) in [("cache-control", "no-cache"), ("pragma", "no-cache")] {
        let fetched = t.get_with(url, &[(name, value)]).await;
        assert_eq!(
            fetched.cache_status, "strata; fwd=request; stored",
            "{name}"
        );
        let hit = t.get(url).await;
        assert_eq!(hit.cache_status, "strata; hit");
        assert_eq!(hit.body, fetched.body, "the fetched answer was stored");
    }
    assert_eq!(t.origin.calls("/r/nc"), 3);
}

#[tokio::test]
async fn request_max_age_and_min_fresh_ask_for_a_younger_or_fresher_response() {
    let t = setup().await;
    let url = "/r/young?cc=max-age=60";
    t.stored(url).await;
    t.advance(20);
    let old_enough = t.get_with(url, &[("cache-control", "max-age=30")]).await;
    assert_eq!(old_enough.cache_status, "strata; hit");
    let too_old = t.get_with(url, &[("cache-control", "max-age=5")]).await;
    assert_eq!(too_old.cache_status, "strata; fwd=request; stored");

    t.advance(20);
    // The refetch at 20 s stored a new copy; 20 s later it has 40 s of
    // freshness left.
    let fresh_enough = t.get_with(url, &[("cache-control", "min-fresh=10")]).await;
    assert_eq!(fresh_enough.cache_status, "strata; hit");
    let not_fresh_enough = t.get_with(url, &[("cache-control", "min-fresh=50")]).await;
    assert_eq!(not_fresh_enough.cache_status, "strata; fwd=request; stored");
}

#[tokio::test]
async fn request_max_stale_accepts_a_stale_response_unless_the_upstream_forbids_it() {
    let t = setup().await;
    let url = "/r/ms?cc=max-age=10";
    let stored = t.stored(url).await;
    t.advance(30);
    let accepted = t.get_with(url, &[("cache-control", "max-stale")]).await;
    assert_eq!(accepted.cache_status, "strata; hit; detail=max-stale");
    assert_eq!(accepted.body, stored.body);
    assert_eq!(accepted.age, "30");
    let within = t.get_with(url, &[("cache-control", "max-stale=25")]).await;
    assert_eq!(within.cache_status, "strata; hit; detail=max-stale");
    let beyond = t.get_with(url, &[("cache-control", "max-stale=5")]).await;
    assert_eq!(beyond.cache_status, "strata; fwd=stale; stored");

    let strict = "/r/strict?cc=max-age=10,must-revalidate";
    t.stored(strict).await;
    t.advance(30);
    let refused = t.get_with(strict, &[("cache-control", "max-stale")]).await;
    assert_eq!(refused.cache_status, "strata; fwd=stale; stored");
}

#[tokio::test]
async fn only_if_cached_gets_504_without_asking_the_upstream() {
    let t = setup().await;
    let cold = t
        .get_with(
            "/r/cold?cc=max-age=60",
            &[("cache-control", "only-if-cached")],
        )
        .await;
    assert_eq!(cold.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(cold.cache_status, "strata; fwd=miss; detail=only-if-cached");
    assert_eq!(t.origin.calls("/r/cold"), 0);

    t.stored("/r/warm?cc=max-age=60").await;
    let warm = t
        .get_with(
            "/r/warm?cc=max-age=60",
            &[("cache-control", "only-if-cached")],
        )
        .await;
    assert_eq!(warm.status, StatusCode::OK);
    assert_eq!(warm.cache_status, "strata; hit");
    t.advance(61);
    let stale = t
        .get_with(
            "/r/warm?cc=max-age=60",
            &[("cache-control", "only-if-cached")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(t.origin.calls("/r/warm"), 1);
}

#[tokio::test]
async fn request_directives_are_ignored_unless_the_cache_is_told_to_obey_them() {
    let t = setup_with(false).await;
    let url = "/r/ignored?cc=max-age=600";
    t.stored(url).await;
    for directive in ["no-cache", "max-age=0", "min-fresh=9999"] {
        let seen = t.get_with(url, &[("cache-control", directive)]).await;
        assert_eq!(seen.cache_status, "strata; hit", "{directive}");
    }
    assert_eq!(t.origin.calls("/r/ignored"), 1);
}

#[tokio::test]
async fn a_stale_response_is_revalidated_and_a_304_refreshes_its_headers() {
    let t = setup().await;
    let url = "/r/v?cc=max-age=10&etag=v1";
    let first = t.stored(url).await;
    assert_eq!(first.headers["x-call"], "1");

    t.advance(15);
    let revalidated = t.get(url).await;
    assert_eq!(
        revalidated.cache_status,
        "strata; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(
        revalidated.body, first.body,
        "the stored body, not a new one"
    );
    assert_eq!(revalidated.headers["x-call"], "2", "headers from the 304");
    assert_eq!(revalidated.age, "0");
    assert_eq!(t.origin.calls("/r/v"), 2);

    let hit = t.get(url).await;
    assert_eq!(hit.cache_status, "strata; hit");
    assert_eq!(hit.headers["x-call"], "2");

    // Stale again, and the client's own validator matches: a 304 for it.
    t.advance(15);
    let not_modified = t.get_with(url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(t.origin.calls("/r/v"), 3);
}

#[tokio::test]
async fn a_copy_with_only_last_modified_is_revalidated_with_if_modified_since() {
    let t = setup().await;
    let url = "/r/dated?cc=max-age=10&lmfixed=1";
    let first = t.stored(url).await;
    assert!(
        !first.headers.contains_key("etag"),
        "no ETag the upstream never issued"
    );
    t.advance(15);
    let revalidated = t.get(url).await;
    assert_eq!(
        revalidated.cache_status,
        "strata; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.body, first.body);
    assert_eq!(revalidated.headers["x-call"], "2", "headers from the 304");

    // The client's own `If-Modified-Since` is answered by strata.
    let since = first.headers["last-modified"].to_str().unwrap().to_owned();
    let not_modified = t.get_with(url, &[("if-modified-since", &since)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.cache_status, "strata; hit");
    assert_eq!(t.origin.calls("/r/dated"), 2);
}

#[tokio::test]
async fn without_last_modified_if_modified_since_is_compared_with_date() {
    let t = setup().await;
    // The upstream's clock is behind, so its `Date` is not the time of
    // receipt.
    let url = "/r/undated?cc=max-age=600&dateoffset=-100";
    let hit = t.stored(url).await;
    assert!(!hit.headers.contains_key("last-modified"));
    let date = httpdate::parse_http_date(hit.headers["date"].to_str().unwrap()).unwrap();
    t.advance(30);
    let since = |at| httpdate::fmt_http_date(at);
    let at_date = t
        .get_with(url, &[("if-modified-since", &since(date))])
        .await;
    assert_eq!(at_date.status, StatusCode::NOT_MODIFIED);
    let before = t
        .get_with(
            url,
            &[("if-modified-since", &since(date - Duration::from_secs(1)))],
        )
        .await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(t.origin.calls("/r/undated"), 1);
}

#[tokio::test]
async fn a_304_naming_another_response_updates_nothing() {
    let t = setup().await;
    let url = "/r/other?cc=max-age=10&etag=v1&nmetag=v2";
    let first = t.stored(url).await;
    t.advance(15);
    for calls in [2, 3] {
        let answered = t.get(url).await;
        assert_eq!(answered.cache_status, "strata; fwd=stale; fwd-status=304");
        assert_eq!(answered.status, StatusCode::OK);
        assert_eq!(answered.body, first.body);
        assert_eq!(answered.headers["etag"], "\"v1\"");
        assert_eq!(
            answered.headers["x-call"], "1",
            "no header of the 304 taken"
        );
        // Still stale, so the next request asks again.
        assert_eq!(t.origin.calls("/r/other"), calls);
    }
}

#[tokio::test]
async fn the_cache_status_of_the_caches_behind_comes_first() {
    let t = setup().await;
    let lines = |seen: &Seen| -> Vec<String> {
        seen.headers
            .get_all("cache-status")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let url = "/r/layered?cc=max-age=10&etag=v1&cs=inner;%20hit";
    let miss = t.get(url).await;
    assert_eq!(lines(&miss), ["inner; hit", "strata; fwd=uri-miss; stored"]);
    let hit = t.get(url).await;
    assert_eq!(lines(&hit), ["inner; hit", "strata; hit"]);
    let not_modified = t.get_with(url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(lines(&not_modified), ["inner; hit", "strata; hit"]);
    t.advance(15);
    let revalidated = t.get(url).await;
    assert_eq!(
        lines(&revalidated),
        ["inner; hit", "strata; fwd=stale; fwd-status=304; stored"]
    );
    assert_eq!(lines(&t.get(url).await), ["inner; hit", "strata; hit"]);

    let passed = t.get("/r/unstored?cc=no-store&cs=inner;%20fwd=miss").await;
    assert_eq!(
        lines(&passed),
        ["inner; fwd=miss", "strata; fwd=uri-miss; detail=no-store"]
    );
}

#[tokio::test]
async fn dates_in_lower_case_still_give_freshness() {
    let t = setup().await;
    let url = "/r/lower?expires=60&lower=1";
    let hit = t.stored(url).await;
    assert!(hit.headers["expires"].to_str().unwrap().ends_with("gmt"));
    t.advance(30);
    assert_eq!(t.get(url).await.cache_status, "strata; hit");
    assert_eq!(hit.age, "0");
    t.advance(40);
    assert_ne!(t.get(url).await.cache_status, "strata; hit");

    // Heuristic freshness from a lower-case `Last-Modified`: a tenth of
    // 1000 s.
    let url = "/r/lower-lm?lm=-1000&lower=1";
    t.stored(url).await;
    t.advance(90);
    assert_eq!(t.get(url).await.cache_status, "strata; hit");
}

#[tokio::test]
async fn with_the_clients_host_sent_upstream_each_host_has_its_own_entries() {
    let options = ProxyOptions {
        preserve_host: true,
        ..ProxyOptions::default()
    };
    let t = setup_full(true, options).await;
    let url = "/r/site?cc=max-age=60";
    let a = t.get_with(url, &[("host", "a.example")]).await;
    let b = t.get_with(url, &[("host", "b.example")]).await;
    assert!(a.body.contains("host=a.example "), "{}", a.body);
    assert!(b.body.contains("host=b.example "), "{}", b.body);
    for (host, first) in [("a.example", &a), ("b.example", &b)] {
        let hit = t.get_with(url, &[("host", host)]).await;
        assert_eq!(hit.cache_status, "strata; hit", "{host}");
        assert_eq!(hit.body, first.body, "{host}");
    }
    assert_eq!(t.origin.calls("/r/site"), 2);

    // Without `preserve_host` every request names the upstream, so hosts
    // share one entry.
    let shared = setup().await;
    let a = shared.get_with(url, &[("host", "a.example")]).await;
    let b = shared.get_with(url, &[("host", "b.example")]).await;
    assert_eq!(b.cache_status, "strata; hit");
    assert_eq!(a.body, b.body);
}

#[tokio::test]
async fn a_changed_resource_replaces_the_stale_copy() {
    let t = setup().await;
    let url = "/r/changing?cc=max-age=10&etag=each";
    let first = t.stored(url).await;
    t.advance(15);
    let changed = t.get(url).await;
    assert_eq!(changed.cache_status, "strata; fwd=stale; stored");
    assert_ne!(changed.body, first.body);
    assert_eq!(t.get(url).await.body, changed.body);
}

#[tokio::test]
async fn a_no_cache_response_is_stored_and_revalidated_before_every_use() {
    let t = setup().await;
    let url = "/r/always?cc=no-cache&etag=n1";
    let first = t.get(url).await;
    assert!(
        first.cache_status.ends_with("stored"),
        "{}",
        first.cache_status
    );
    for call in 2..=4 {
        let seen = t.get(url).await;
        assert_eq!(
            seen.cache_status,
            "strata; fwd=stale; fwd-status=304; stored"
        );
        assert_eq!(seen.body, first.body);
        assert_eq!(t.origin.calls("/r/always"), call);
    }
    // Without validators there is nothing to revalidate with.
    t.not_stored("/r/never?cc=no-cache", "no-cache").await;
}

#[tokio::test]
async fn a_request_no_cache_revalidates_a_fresh_copy() {
    let t = setup().await;
    let url = "/r/check?cc=max-age=600&etag=k1";
    let first = t.stored(url).await;
    let checked = t.get_with(url, &[("cache-control", "no-cache")]).await;
    assert_eq!(
        checked.cache_status,
        "strata; fwd=request; fwd-status=304; stored"
    );
    assert_eq!(checked.body, first.body);
    assert_eq!(t.origin.calls("/r/check"), 2);
}

#[tokio::test]
async fn a_304_that_sets_a_cookie_sets_it_for_its_client_only() {
    let t = setup().await;
    let url = "/r/roll?cc=max-age=10&etag=v1&rollcookie=1";
    t.stored(url).await;
    t.advance(15);
    let alice = t.get_with(url, &[("cookie", "sid=alice")]).await;
    assert_eq!(
        alice.cache_status,
        "strata; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(alice.headers["set-cookie"], "rolled=sid=alice");
    // The refreshed copy answers others without alice's cookie.
    for cookie in [None, Some("sid=bob")] {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        let other = t.get_with(url, &headers).await;
        assert_eq!(other.cache_status, "strata; hit");
        assert!(
            !other.headers.contains_key("set-cookie"),
            "{cookie:?} got {:?}",
            other.headers.get("set-cookie")
        );
    }
    // Nor as a 304 to a client revalidating its own copy.
    let conditional = t.get_with(url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(conditional.status, StatusCode::NOT_MODIFIED);
    assert!(!conditional.headers.contains_key("set-cookie"));
    assert_eq!(t.origin.calls("/r/roll"), 2);
}

#[tokio::test]
async fn a_background_refresh_stores_no_cookie_from_its_304() {
    let t = setup().await;
    let url = "/r/rollswr?cc=max-age=10,stale-while-revalidate=60&etag=v1&rollcookie=1";
    t.stored(url).await;
    t.advance(15);
    let alice = t.get_with(url, &[("cookie", "sid=alice")]).await;
    assert_eq!(
        alice.cache_status,
        "strata; hit; detail=stale-while-revalidate"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = t.get(url).await;
        if seen.cache_status == "strata; hit" {
            assert!(
                !seen.headers.contains_key("set-cookie"),
                "the refresh stored alice's cookie: {:?}",
                seen.headers.get("set-cookie")
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(t.origin.calls("/r/rollswr"), 2);
}

#[tokio::test]
async fn if_none_match_against_a_copy_without_an_etag_gets_the_whole_response() {
    let t = setup().await;
    let url = "/r/no-etag?cc=max-age=60&lmfixed=1";
    t.stored(url).await;
    // `If-None-Match` decides when present (RFC 9110 §13.2.2); a copy with
    // no ETag matches none, whatever `If-Modified-Since` would say.
    let seen = t
        .get_with(
            url,
            &[
                ("if-none-match", "\"anything\""),
                ("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT"),
            ],
        )
        .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.cache_status, "strata; hit");
    assert!(!seen.body.is_empty());
    // Without `If-None-Match`, the date alone does give a 304.
    let dated = t
        .get_with(
            url,
            &[("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")],
        )
        .await;
    assert_eq!(dated.status, StatusCode::NOT_MODIFIED);
}

/// An upstream answering with chunked transfer coding (no `Content-Length`)
/// is stored and hit like any other; one past the cache's body limit
/// streams through whole and is not stored.
#[tokio::test]
async fn a_chunked_upstream_response_is_stored_and_a_too_large_one_streams_through() {
    let setup = setup().await;
    let hit = setup.stored("/r/chunked?cc=max-age=60&chunked=3000").await;
    assert_eq!(hit.body.len(), 3000);
    assert_eq!(hit.headers["content-length"], "3000");
    assert!(!hit.headers.contains_key("transfer-encoding"));
    assert_eq!(setup.origin.calls("/r/chunked"), 1);

    let big = 5 << 20;
    let url = format!("/r/big?cc=max-age=60&chunked={big}");
    setup.not_stored(&url, "too-large").await;
    let whole = setup.get(&url).await;
    assert_eq!(whole.body.len(), big, "streamed through whole");
    assert!(whole.body.starts_with("call 3 of /r/big"));
}

/// Behind the gateway a range request goes on as asked (this upstream
/// ignores it and answers 200), the whole response is stored, and ranges
/// are then answered from the cache.
#[tokio::test]
async fn ranges_are_answered_from_a_stored_upstream_response() {
    let setup = setup().await;
    let url = "/r/file?cc=max-age=60&chunked=3000";
    let first = setup.get_with(url, &[("range", "bytes=0-9")]).await;
    assert_eq!(first.status, StatusCode::PARTIAL_CONTENT);
    assert!(
        first.cache_status.ends_with("stored"),
        "{}",
        first.cache_status
    );
    assert_eq!(first.headers["content-range"], "bytes 0-9/3000");
    assert_eq!(first.body, "call 1 of ");
    let tail = setup.get_with(url, &[("range", "bytes=-3")]).await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.cache_status, "strata; hit");
    assert_eq!(tail.headers["content-range"], "bytes 2997-2999/3000");
    assert_eq!(tail.body, "...");
    assert_eq!(setup.origin.calls("/r/file"), 1);
}
