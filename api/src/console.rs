//! The web console (`web/`, built by Vite into a folder of files) served at `/` on the API's own origin, so
//! the browser needs no CORS: hashed assets (`/assets/<name>-<hash>.js`) are cached for a year, `index.html`
//! is revalidated on every load (a new build is picked up at once), and any other path that is not the API's
//! (`/api/...`, `/v1/...`) falls back to `index.html`, where the console's router draws the page (deep links).
//! Every answer carries a Content-Security-Policy that allows only the origin's own scripts (no inline
//! script, no `eval`): user text that slipped into markup could still not run. Anything under `/api` keeps
//! the API's JSON 404.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use std::path::{Component, Path, PathBuf};

/// Scripts only from this origin; Ant Design writes its styles into `<style>` elements at run time, hence
/// inline styles; the training feed is a WebSocket to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; \
     form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Whether `path` belongs to the API (never answered with the console).
fn is_api(path: &str) -> bool {
    ["/api", "/v1"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// `path` as a file under `dir`, when it names one plainly (no `..`, no hidden parts).
fn file_under(dir: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    let plain =
        relative.components().all(|c| matches!(c, Component::Normal(part) if !part.to_string_lossy().starts_with('.')));
    (plain && !relative.as_os_str().is_empty()).then(|| dir.join(relative))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn file_response(path: &Path, cache: &'static str, head: bool) -> Option<Response> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let mut response = if head { ().into_response() } else { bytes.into_response() };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    Some(response)
}

/// The router's fallback: the console's files and pages, or the API's JSON 404.
pub(crate) async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    let head = request.method() == Method::HEAD;
    let Some(dir) = state.console_dir.as_deref() else { return crate::routes::not_found().await.into_response() };
    if is_api(path) || !(head || request.method() == Method::GET) {
        return crate::routes::not_found().await.into_response();
    }
    if let Some(file) = file_under(dir, path) {
        // Vite names every built asset by its content: a year-long, immutable cache is safe.
        let cache = if path.starts_with("/assets/") { IMMUTABLE } else { "no-cache" };
        if file.is_file() {
            if let Some(response) = file_response(&file, cache, head).await {
                return response;
            }
        }
        if path.starts_with("/assets/") {
            return ApiError::NotFound("no such asset".into()).into_response();
        }
    }
    match file_response(&dir.join("index.html"), "no-cache", head).await {
        Some(response) => response,
        None => ApiError::NotFound("the console is not built".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_name_files() {
        let dir = Path::new("/srv/console");
        assert_eq!(file_under(dir, "/assets/a.js"), Some(PathBuf::from("/srv/console/assets/a.js")));
        assert_eq!(file_under(dir, "/../etc/passwd"), None);
        assert_eq!(file_under(dir, "/assets/../../x"), None);
        assert_eq!(file_under(dir, "/.env"), None);
        assert_eq!(file_under(dir, "/"), None);
    }

    #[test]
    fn api_paths_are_never_the_console() {
        assert!(is_api("/api") && is_api("/api/nothing") && is_api("/v1/x"));
        assert!(!is_api("/apiary") && !is_api("/datasets/1"));
    }
}
