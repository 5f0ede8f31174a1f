//! JSON admin endpoints for [strata](https://docs.rs/strata): the cache's
//! figures, its health, and clearing, resetting and invalidating it, as an
//! axum [`Router`] to nest where the application wants.
//!
//! [`router`] takes the [`CacheHandle`] and an [`Authorize`] check; there
//! is no way to build the router without one. The check runs on the
//! request's head before anything else: a refused request reads no body
//! and changes nothing. Use the ready [`BearerToken`], or a closure over
//! the request's [`Parts`](http::request::Parts) returning a [`Decision`]
//! or a `bool` (for example reading the user an outer authentication
//! layer put into the extensions).
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use strata::{Cache, CachePolicy};
//! use strata::admin::BearerToken;
//!
//! let cache = Cache::builder().prefix("thebot", "production").build();
//! let app: Router = Router::new()
//!     .route("/api/materials/", get(|| async { "[]" })
//!         .layer(CachePolicy::public(Duration::from_secs(1800)).tag("materials")))
//!     .layer(cache.layer())
//!     // Nested after the cache layer, so the cache never sees admin requests.
//!     .nest("/api/core", strata::admin::router(cache.handle(), BearerToken::new("s3cret")));
//! // GET  /api/core/cache-stats/         (Authorization: Bearer s3cret)
//! // POST /api/core/cache-invalidate/    {"tag":"materials"}
//! # let _ = app;
//! ```
//!
//! # Endpoints
//!
//! Paths are relative to where the router is nested. Every response,
//! refusals and errors included, carries `Cache-Control: no-store`, and
//! the responses also carry a [`CachePolicy::no_store`] extension, so a
//! strata layer around the router (even one with a default policy) never
//! stores them.
//!
//! | Request | Success | Body |
//! |---|---|---|
//! | `GET cache-stats/` | 200 | [`CacheStats`] |
//! | `GET cache-health/` | 200 when every layer answers, else 503 | `{"status":"ok"\|"degraded", "failing":["redis",..], "layers":[{"layer":"memory","ok":true,"latency_us":3,"error":null},..]}` |
//! | `POST cache-clear/` | 200 | `{"cleared": n}`: the entries dropped |
//! | `POST cache-reset-stats/` | 200 | `{"reset": true}` |
//! | `POST cache-invalidate/` | 200 | `{"invalidated": n, "what": <the body>}` |
//!
//! Every path answers with or without its trailing slash.
//!
//! `cache-invalidate/` takes an [`Invalidation`](strata_core::Invalidation)
//! as JSON with `Content-Type: application/json`: `{"key":"active_users"}`
//! (a `get_or_compute` name), `{"url":"/api/materials/"}`,
//! `{"tag":"materials"}`, `{"tags":["materials","material:42"]}`,
//! `{"prefix":"/api/reports/"}`, `{"user":"42"}` or `"all"`. `clear` and
//! `invalidate` reach every layer, and on a tiered store every instance
//! through its invalidation bus.
//!
//! Errors are JSON too, `{"error": "..."}`:
//!
//! - 401 with `WWW-Authenticate: Bearer` when the check says
//!   [`Decision::Unauthenticated`] (no credentials), 403 when it says
//!   [`Decision::Forbidden`] (or the closure returned `false`);
//! - 400 for an invalidation body that is not JSON, not one of the forms
//!   above, or names an empty key, URL, tag, prefix or user; 415 without a
//!   JSON `Content-Type`;
//! - 503 when a store layer failed to clear or invalidate (the layers that
//!   work have still dropped their entries);
//! - 405 for a method an endpoint does not take (after the check).
//!
//! # Where to nest it
//!
//! Nest the router after `.layer(cache.layer())`, as above, so admin
//! requests bypass the cache. Nested inside the layer it still works and
//! is never cached, but the layer then counts each admin `GET` as a
//! bypass and, after each successful admin `POST`, invalidates that POST's
//! own URL (RFC 9111 §4.4), which counts as an invalidation.

mod authorize;
mod endpoints;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use strata_core::{CacheHandle, CachePolicy, Invalidates};

pub use authorize::{Authorize, BearerToken, Decision};
pub use endpoints::CacheStats;

/// The admin router over `handle`'s cache, refusing every request that
/// `authorize` does not allow.
///
/// The router has no state of its own to supply (`S` is whatever the
/// application's router uses), so it nests into any `Router<S>`:
/// `app.nest("/api/core", strata_admin::router(cache.handle(), check))`.
/// See the [crate docs](crate) for the endpoints and their JSON.
pub fn router<S>(handle: CacheHandle, authorize: impl Authorize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let check: Arc<dyn Authorize> = Arc::new(authorize);
    let mut routes = Router::new();
    // Each path with and without its trailing slash: a client that leaves
    // it off gets the endpoint, not a 404.
    for (path, handler) in [
        ("/cache-stats", get(endpoints::stats)),
        ("/cache-health", get(endpoints::health)),
        ("/cache-clear", post(endpoints::clear)),
        ("/cache-reset-stats", post(endpoints::reset_stats)),
        ("/cache-invalidate", post(endpoints::invalidate)),
    ] {
        routes = routes
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
    routes
        .layer(middleware::from_fn_with_state(check, endpoints::authorize))
        .layer(middleware::map_response(endpoints::no_store))
        .layer(CachePolicy::no_store())
        // Admin actions change no cached response of their own URL.
        .layer(Invalidates::none())
        .with_state(handle)
}
