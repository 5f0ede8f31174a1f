//! What the demo's handlers read from a request, checked: the user, a
//! material id, a `{"title": ..}` body; and [`ApiError`], the JSON answer
//! when one is missing or wrong (or the database failed).

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::db::DbError;

/// The user of a request: `Authorization: Bearer user-<id>` is user `<id>`
/// (ASCII letters, digits, `-` and `_`, at most 64 of them); anything else
/// is anonymous. This is the cache's user resolver and the handlers' too.
pub fn user_of(parts: &axum::http::request::Parts) -> Option<String> {
    user_from_headers(&parts.headers)
}

/// [`user_of`] over a header map.
pub fn user_from_headers(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let id = token.trim().strip_prefix("user-")?;
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| id.to_owned())
}

/// A JSON error: `{"error": message}` with its status; 401s also say
/// `WWW-Authenticate: Bearer`, 5xx `Cache-Control: no-store`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn no_material() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such material")
    }

    /// A per-user route asked without a user.
    pub(crate) fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer user-<id>",
        )
    }
}

/// A query that failed is the database's fault, not the client's: 503,
/// never stored (see [`ApiError::into_response`]).
impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database failed: {error}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status.is_server_error() {
            // A route's policy must not keep a failure for its TTL.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}

/// The user of a per-user route, or 401.
pub(crate) fn user_required(headers: &HeaderMap) -> Result<String, ApiError> {
    user_from_headers(headers).ok_or_else(ApiError::unauthenticated)
}

/// A material id from the path; anything but a number is no material.
pub(crate) fn material_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::no_material())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TitleBody {
    title: String,
}

/// The `{"title": ...}` body of a write, or a 400 saying what is wrong.
pub(crate) fn title_of(body: &[u8]) -> Result<String, ApiError> {
    let parsed: TitleBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON body {{\"title\": \"...\"}}: {e}"),
        )
    })?;
    let title = parsed.title.trim();
    if title.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the title must not be empty",
        ));
    }
    Ok(title.to_owned())
}
