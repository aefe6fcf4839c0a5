//! Extractors whose rejections speak the API's error shape instead of axum's plain text.

use crate::ApiError;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use std::net::SocketAddr;

/// JSON body; malformed JSON is 400, a body of the wrong shape (unknown or missing fields) 422.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub(crate) T);

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

/// The peer address, for per-address login throttling ("unknown" when served without connect info).
pub(crate) struct ClientIp(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |ConnectInfo(addr)| addr.ip().to_string());
        Ok(Self(ip))
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
