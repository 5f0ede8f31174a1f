//! The endpoints, their JSON bodies, and the two middlewares every admin
//! response passes through (authorization, `Cache-Control: no-store`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::json;
use strata_core::{CacheHandle, Health, HealthStatus, Invalidation, StatsSnapshot};

use crate::authorize::{Authorize, Decision};

/// The body of `GET cache-stats/`: every counter the cache keeps and each
/// layer's own figures, one name per figure.
///
/// Every number is measured. A figure a layer cannot measure is `null`,
/// never an estimate (Redis does not count one cache's entries or bytes).
/// `entries` and `bytes` are the in-process layer's; a layer's `hits` and
/// `misses` are its own lookups since it started (a request can make two:
/// the URL's variant rule, then the variant), where the top-level ones
/// count requests since the last reset.
///
/// ```json
/// {"hits":3,"misses":1,"hit_rate":0.75,"stores":1,"bypasses":0,
///  "not_modified":0,"coalesced":0,"invalidations":0,"fenced":0,"errors":0,
///  "evictions":0,"entries":2,"bytes":1480,
///  "layers":[{"layer":"memory","entries":2,"bytes":1480,
///             "capacity_bytes":268435456,"hits":3,"misses":2,
///             "errors":null,"evictions":0,"expirations":0}]}
/// ```
///
/// (Names some dashboards expect from other caches: `size` and
/// `memory_usage` are `bytes`, `keys_count` is `entries`.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Every counter and figure the cache keeps, under the core's names
    /// (`hits`, `misses`, `hit_rate`, `stores`, `bypasses`, `not_modified`,
    /// `coalesced`, `invalidations`, `fenced`, `errors`, `evictions`, `entries`,
    /// `bytes`, `layers`): see [`StatsSnapshot`].
    #[serde(flatten)]
    pub snapshot: StatsSnapshot,
}

impl From<StatsSnapshot> for CacheStats {
    fn from(snapshot: StatsSnapshot) -> Self {
        Self { snapshot }
    }
}

/// The body of `GET cache-health/`.
#[derive(Debug, Serialize)]
struct HealthBody {
    status: HealthStatus,
    /// The names of the layers that do not answer (empty when `ok`).
    failing: Vec<&'static str>,
    layers: Vec<Health>,
}

/// A JSON error response: `{"error": message}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message: String = message.into();
    (status, Json(json!({ "error": message }))).into_response()
}

pub(crate) async fn stats(State(handle): State<CacheHandle>) -> Json<CacheStats> {
    Json(CacheStats::from(handle.stats()))
}

pub(crate) async fn health(State(handle): State<CacheHandle>) -> Response {
    let report = handle.health().await;
    let status = if report.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthBody {
        status: report.status,
        failing: report.failing().map(|layer| layer.layer).collect(),
        layers: report.layers,
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn clear(State(handle): State<CacheHandle>) -> Response {
    match handle.clear().await {
        Ok(cleared) => Json(json!({ "cleared": cleared })).into_response(),
        Err(failure) => store_failed(&failure),
    }
}

pub(crate) async fn reset_stats(State(handle): State<CacheHandle>) -> Json<serde_json::Value> {
    handle.reset_stats();
    Json(json!({ "reset": true }))
}

pub(crate) async fn invalidate(
    State(handle): State<CacheHandle>,
    body: Result<Json<Invalidation>, JsonRejection>,
) -> Response {
    let what = match body {
        Ok(Json(what)) => what,
        Err(rejection) => return rejected(&rejection),
    };
    if let Some(problem) = empty_name(&what) {
        return error(StatusCode::BAD_REQUEST, problem);
    }
    match handle.invalidate(&what).await {
        Ok(invalidated) => {
            Json(json!({ "invalidated": invalidated, "what": what })).into_response()
        }
        Err(failure) => store_failed(&failure),
    }
}

/// Why an invalidation body names nothing sensible, if it does not: an
/// empty prefix would drop everything and an empty tag or URL nothing,
/// both most likely a client's mistake.
fn empty_name(what: &Invalidation) -> Option<&'static str> {
    let empty = match what {
        Invalidation::Key(name)
        | Invalidation::Url(name)
        | Invalidation::Tag(name)
        | Invalidation::Prefix(name)
        | Invalidation::User(name) => name.is_empty(),
        Invalidation::Tags(tags) => tags.is_empty() || tags.iter().any(String::is_empty),
        _ => false,
    };
    empty.then_some(
        "the invalidation names nothing: give a non-empty key, url, tag, tags, prefix \
         or user, or \"all\" to drop everything",
    )
}

/// A body that is not an [`Invalidation`]: 400 for malformed or
/// wrongly-shaped JSON, axum's own status otherwise (415 without a JSON
/// `Content-Type`, 413 for a body over the limit).
fn rejected(rejection: &JsonRejection) -> Response {
    let status = match rejection {
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            StatusCode::BAD_REQUEST
        }
        other => other.status(),
    };
    error(
        status,
        format!(
            "{}; expected one of {{\"key\":..}}, {{\"url\":..}}, {{\"tag\":..}}, \
             {{\"tags\":[..]}}, {{\"prefix\":..}}, {{\"user\":..}} or \"all\"",
            rejection.body_text()
        ),
    )
}

fn store_failed(failure: &strata_core::Error) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string())
}

/// Runs the [`Authorize`] check on the request's head; a refused request
/// never reaches an endpoint, so its body is not even read.
pub(crate) async fn authorize(
    State(check): State<Arc<dyn Authorize>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match check.authorize(&parts) {
        Decision::Allow => next.run(Request::from_parts(parts, body)).await,
        Decision::Unauthenticated => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "authentication required: send Authorization: Bearer <token>",
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Decision::Forbidden => error(
            StatusCode::FORBIDDEN,
            "not allowed to use the cache admin endpoints",
        ),
    }
}

/// Admin answers describe the cache at one moment: no one may reuse them.
pub(crate) async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::Cache;

    /// The body carries the core's figures under their own names, and no
    /// figure twice.
    #[test]
    fn the_stats_body_carries_every_figure_of_the_snapshot_once() {
        let snapshot = Cache::builder().build().handle().stats();
        let core = serde_json::to_value(&snapshot).unwrap();
        let admin = serde_json::to_value(CacheStats::from(snapshot)).unwrap();
        assert_eq!(admin, core);
        for alias in ["size", "keys_count", "memory_usage"] {
            assert!(admin.get(alias).is_none(), "{alias}: {admin}");
        }
    }

    #[test]
    fn empty_names_are_refused_and_all_is_not() {
        assert!(empty_name(&Invalidation::Prefix(String::new())).is_some());
        assert!(empty_name(&Invalidation::Tags(vec![])).is_some());
        assert!(empty_name(&Invalidation::Tags(vec!["a".into(), String::new()])).is_some());
        assert!(empty_name(&Invalidation::Tag("a".into())).is_none());
        assert!(empty_name(&Invalidation::All).is_none());
    }
}
