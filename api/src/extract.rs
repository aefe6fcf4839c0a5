//! Extractors whose rejections speak the API's error shape instead of axum's plain text.

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, MissingJsonContentType};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::SocketAddr;

/// JSON body; malformed JSON is 400, a body of the wrong shape (unknown or missing fields) 422, and a string
/// holding NUL (U+0000) anywhere in it 422 `invalid_text` naming the field: PostgreSQL cannot store NUL in text,
/// so such a value would be accepted and then fail in every view that stores it.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(JsonRejection::from(MissingJsonContentType::default()).into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(JsonRejection::from)?;
        // JSON carries NUL only as the escape `\u0000`: the document is walked only when that text is in it.
        if bytes.windows(6).any(|w| w == b"\\u0000") {
            if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                if let Some(field) = nul_field(&value, "") {
                    return Err(refuse_nul(&field));
                }
            }
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// `application/json` or `application/<anything>+json`, parameters allowed (as axum's `Json` accepts).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The path (`a.b[2].c`) of the first string in `value` (or key) holding NUL.
fn nul_field(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() { "body".to_owned() } else { at.to_owned() }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_field(v, &format!("{at}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            if k.contains('\0') {
                Some(path)
            } else {
                nul_field(v, &path)
            }
        }),
        _ => None,
    }
}

/// The answer to text holding NUL in `field`.
pub(crate) fn refuse_nul(field: &str) -> ApiError {
    ApiError::field(
        "invalid_text",
        format!("`{field}` contains a NUL character (U+0000), which cannot be stored"),
        field,
    )
}

/// Refuses `text` of `field` when it holds NUL (see [`ApiJson`]).
pub(crate) fn no_nul(field: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(refuse_nul(field));
    }
    Ok(())
}

/// Query string; a bad one is 400 `invalid_query`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub(crate) T);

/// The page and page size of a list query (defaults 1 and 20); a page below 1 or a size outside 1..=100 is
/// 422 `validation_failed`.
pub(crate) fn page_window(page: Option<i64>, page_size: Option<i64>) -> Result<(i64, i64), ApiError> {
    let (page, page_size) = (page.unwrap_or(1), page_size.unwrap_or(20));
    if page < 1 || !(1..=100).contains(&page_size) {
        return Err(ApiError::Unprocessable {
            code: "validation_failed",
            message: "page must be >= 1 and page_size between 1 and 100".into(),
            details: None,
        });
    }
    Ok((page, page_size))
}

/// A list's `status` filter, if given, must be one of `allowed`; otherwise 422 `validation_failed`.
pub(crate) fn status_filter(status: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    match status {
        Some(status) if !allowed.contains(&status) => {
            Err(ApiError::field("validation_failed", format!("status must be one of {}", allowed.join(", ")), "status"))
        }
        _ => Ok(()),
    }
}

/// Path parameters; a bad one is 400 `invalid_path`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub(crate) T);

/// The client's address, for per-address login throttling and a session's address: the peer's, or behind a
/// trusted proxy the one `X-Forwarded-For` names (see [`crate::TrustedProxies`]); "unknown" when served
/// without connect info.
pub(crate) struct ClientIp(pub(crate) String);

impl FromRequestParts<crate::AppState> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &crate::AppState) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self("unknown".to_owned()));
        };
        let forwarded: Vec<&str> =
            parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        Ok(Self(state.trusted_proxies.client(peer.ip(), &forwarded).to_string()))
    }
}

/// The request id (set by the request-id layer), used as the correlation id of commands.
pub(crate) struct Correlation(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Correlation {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
        Ok(Self(id))
    }
}
