//! The demo API behind `examples/thebot.rs`: a small learning platform
//! (materials, assignments, reports, analytics, notifications, dashboards)
//! over a SQLite database whose every query is slow and counted ([`Db`], in
//! `db.rs`), with strata in front of it.
//!
//! This module is shared: the example includes it with
//! `#[path = "thebot/app.rs"] mod app;`, and so do the tests
//! (`integration/tests/thebot*.rs`) and the load generator. Keep [`app`], [`Db`] and
//! [`user_of`] as they are; each includer uses a part of the rest.

// Shared by several crates (the example, the tests, the load generator),
// each of which uses only some of these items; `pub` marks the module's
// interface even though the including crate's root never re-exports it.
#![allow(dead_code, unreachable_pub)]

#[path = "db.rs"]
mod db;
#[path = "request.rs"]
mod request;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use strata::{Cache, CacheHandle, CachePolicy, Config, Invalidates, TtlProfiles};

// Each includer uses some of these.
#[allow(unused_imports)]
pub use db::{Assignment, Db, DbError, Material, SEED_MATERIALS};
#[allow(unused_imports)]
pub use request::{user_from_headers, user_of};

use request::{ApiError, material_id, title_of, user_required};

/// The materials list's path, which an update of any material invalidates.
const MATERIALS_LIST: &str = "/api/materials/";

/// The cache the example runs on, from `config`: memory alone, or with
/// `use_redis` the tiered store (memory in front of Redis), with
/// [`user_of`] as its user resolver. Call it inside a tokio runtime.
pub fn cache_from_config(config: &Config) -> Result<Cache, strata::Error> {
    let store = strata::redis::store_from_config(config)?;
    Ok(config.builder().store(store).user(user_of).build())
}

#[derive(Debug, Clone)]
struct AppState {
    db: Db,
    handle: CacheHandle,
    ttl: Arc<TtlProfiles>,
}

/// The demo's TTL profiles: default 300 s, materials_list 1800,
/// material_detail 3600, reports 300, analytics 1800, notifications 60 (the
/// table this API's Django version had; docs/FROM_DJANGO.md). `CACHE_TTL_<NAME>`
/// overrides them (see `examples/thebot.rs`).
pub fn profiles() -> TtlProfiles {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    TtlProfiles::default()
        .with("materials_list", minutes(30))
        .with("material_detail", minutes(60))
        .with("reports", minutes(5))
        .with("analytics", minutes(30))
        .with("notifications", minutes(1))
}

/// The demo API over `db`, cached by `cache`, with the admin endpoints under
/// `/api/core/` for `Bearer <admin_token>`, and the demo's TTL [`profiles`].
///
/// # Panics
///
/// Panics when `admin_token` is empty.
pub fn app(cache: &Cache, db: Db, admin_token: &str) -> Router {
    app_with_ttl(cache, db, admin_token, profiles())
}

/// [`app`] with these TTL profiles (`materials_list`, `material_detail`,
/// `assignments`, `reports`, `analytics`, `notifications`, `dashboard`;
/// missing ones fall back to `default`).
///
/// # Panics
///
/// Panics when `admin_token` is empty.
pub fn app_with_ttl(cache: &Cache, db: Db, admin_token: &str, ttl: TtlProfiles) -> Router {
    routes(cache, db, admin_token, ttl, true)
}

/// The same routes as [`app`] with no caching: no cache layer, so every
/// request reaches its handler (the policies the routes set are ignored).
/// The admin endpoints and logout work on a memory cache that serves
/// nothing. The load generator's baseline.
///
/// # Panics
///
/// Panics when `admin_token` is empty.
pub fn app_uncached(db: Db, admin_token: &str) -> Router {
    let unused = Cache::builder().user(user_of).build();
    routes(&unused, db, admin_token, profiles(), false)
}

fn routes(cache: &Cache, db: Db, admin_token: &str, ttl: TtlProfiles, layered: bool) -> Router {
    let handle = cache.handle();
    let admin = strata::admin::router(handle.clone(), strata::admin::BearerToken::new(admin_token));
    let state = AppState {
        db: db.clone(),
        handle,
        ttl: Arc::new(ttl),
    };
    let ttl = Arc::clone(&state.ttl);
    let cached = Router::new()
        .route(
            MATERIALS_LIST,
            get(list_materials)
                .layer(CachePolicy::public(ttl.get("materials_list")).tag("materials"))
                .merge(post(create_material).layer(Invalidates::tags(["materials"]))),
        )
        .route(
            "/api/materials/{id}/",
            // The GET sets its policy, the PUT what it invalidates, on the
            // response: the tag `material:{id}` names the id.
            get(material_detail).put(update_material),
        )
        .route(
            "/api/assignments/",
            get(list_assignments)
                .layer(CachePolicy::public(ttl.get("assignments")).tag("assignments"))
                .merge(post(create_assignment).layer(Invalidates::tags(["assignments"]))),
        )
        .route(
            "/api/reports/",
            get(reports).layer(CachePolicy::private(ttl.get("reports"))),
        )
        .route(
            "/api/analytics/",
            get(analytics).layer(CachePolicy::public(ttl.get("analytics"))),
        )
        .route(
            "/api/notifications/",
            get(notifications).layer(CachePolicy::private(ttl.get("notifications"))),
        )
        .route(
            "/api/dashboard/",
            get(dashboard).layer(CachePolicy::private(ttl.get("dashboard"))),
        )
        .route(
            "/api/realtime/",
            get(realtime).layer(CachePolicy::no_cache()),
        )
        .route(
            "/api/auth/logout/",
            // Logging out drops the caller's entries itself, and changes no
            // cached response of its own URL.
            post(logout).layer(Invalidates::none()),
        )
        .with_state(state);
    let cached = if layered {
        cached.layer(cache.layer())
    } else {
        cached
    };
    // Added after the cache layer, so the cache never sees them.
    cached
        .route(
            "/api/core/db-stats/",
            get(move || async move {
                (
                    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                    Json(json!({ "queries": db.queries() })),
                )
            }),
        )
        .nest("/api/core", admin)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
}

/// The tags of a material's detail: `materials`, which every material's
/// data carries (an admin's purge of that tag drops them all), and
/// `material:{id}`, which only this one carries.
fn material_tags(id: u64) -> [String; 2] {
    ["materials".to_owned(), material_tag(id)]
}

/// The tag only material `id`'s detail carries: what an update of it
/// invalidates, beside the list.
fn material_tag(id: u64) -> String {
    format!("material:{id}")
}

async fn list_materials(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let materials = state.db.materials().await?;
    Ok(Json(
        json!({ "count": materials.len(), "materials": materials }),
    ))
}

async fn create_material(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Material>), ApiError> {
    let title = title_of(&body)?;
    let material = state.db.create_material(title).await?;
    Ok((StatusCode::CREATED, Json(material)))
}

async fn material_detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(Extension<CachePolicy>, Json<Material>), ApiError> {
    let id = material_id(&id)?;
    // No policy on a 404: it is not data (and 404s are never stored).
    let material = state
        .db
        .material(id)
        .await?
        .ok_or_else(ApiError::no_material)?;
    let policy = CachePolicy::public(state.ttl.get("material_detail")).tags(material_tags(id));
    Ok((Extension(policy), Json(material)))
}

async fn update_material(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(Extension<Invalidates>, Json<Material>), ApiError> {
    let id = material_id(&id)?;
    let title = title_of(&body)?;
    let material = state
        .db
        .update_material(id, title)
        .await?
        .ok_or_else(ApiError::no_material)?;
    // The list and this material's detail show the title, and nothing
    // else does: the other details stay cached. (Invalidating the shared
    // `materials` tag would drop every detail with them.)
    let stale = Invalidates::tags([material_tag(id)]).url(MATERIALS_LIST);
    Ok((Extension(stale), Json(material)))
}

async fn list_assignments(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let assignments = state.db.assignments().await?;
    Ok(Json(
        json!({ "count": assignments.len(), "assignments": assignments }),
    ))
}

async fn create_assignment(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Assignment>), ApiError> {
    let title = title_of(&body)?;
    let assignment = state.db.create_assignment(title).await?;
    Ok((StatusCode::CREATED, Json(assignment)))
}

/// A stable per-user figure, so each user's pages differ visibly.
fn progress_of(user: &str, total: usize) -> usize {
    let sum: usize = user.bytes().map(usize::from).sum();
    sum % (total + 1)
}

async fn reports(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = user_required(&headers)?;
    let (materials, assignments) = state.db.counts().await?;
    Ok(Json(json!({
        "user": user,
        "report": {
            "materials_completed": progress_of(&user, materials),
            "materials_total": materials,
            "assignments_total": assignments,
        },
    })))
}

async fn analytics(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (materials, assignments) = state.db.counts().await?;
    Ok(Json(json!({
        "materials": materials,
        "assignments": assignments,
        "most_viewed": [1, 6, 15],
    })))
}

async fn notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = user_required(&headers)?;
    let (_, assignments) = state.db.counts().await?;
    Ok(Json(json!({
        "user": user,
        "notifications": [
            { "id": 1, "text": format!("Welcome back, user-{user}") },
            { "id": 2, "text": format!("{assignments} assignments are open") },
        ],
    })))
}

async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = user_required(&headers)?;
    let (materials, assignments) = state.db.counts().await?;
    Ok(Json(json!({
        "user": user,
        "greeting": format!("Hello, user-{user}"),
        "progress": {
            "materials_completed": progress_of(&user, materials),
            "materials_total": materials,
        },
        "assignments_open": assignments,
    })))
}

/// Never stored: every request runs the query; the ETag lets clients
/// revalidate (304) while the figures have not changed.
async fn realtime(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (materials, assignments) = state.db.counts().await?;
    Ok(Json(
        json!({ "materials": materials, "assignments": assignments }),
    ))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = user_required(&headers)?;
    let dropped = state.handle.invalidate_user(&user).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not drop the cached entries: {e}"),
        )
    })?;
    Ok(Json(json!({ "logged_out": user, "dropped": dropped })))
}
