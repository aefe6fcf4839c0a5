//! Conditional GETs (the API's response cache, design 5.1): every complete JSON answer of a `GET /api/...`
//! carries a weak `ETag` (a digest of its body; weak because the same answer may travel gzipped or not) and `Cache-Control: private, no-cache` (a client or a
//! browser may keep it, must revalidate it, and no shared cache may store it). A client that sends the
//! `ETag` back in `If-None-Match` gets `304 Not Modified` with no body when nothing changed: polling a
//! task's progress, a model list or a conversation costs a few bytes instead of the whole answer.
//!
//! The handler still runs (authentication, permissions and the query are never skipped), so a 304 can only
//! confirm what this user may see now. Streams (server-sent events, file downloads) are left alone.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The largest answer given an `ETag` (larger ones are sent as they are).
const MAX_TAGGED_BYTES: u64 = 8 << 20;

/// The (weak) entity tag of `body`.
fn entity_tag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("W/\"{}\"", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]))
}

/// The request's `If-None-Match` values.
fn if_none_match(headers: &HeaderMap) -> Vec<HeaderValue> {
    headers.get_all(header::IF_NONE_MATCH).iter().cloned().collect()
}

/// Whether `If-None-Match` (its `values`) names `tag` (the weak comparison of RFC 9110 13.1.2, as GET asks for).
fn none_match(values: &[HeaderValue], tag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| value.split(',').any(|candidate| candidate.trim() == "*" || bare(candidate) == bare(tag)))
}

pub(crate) async fn conditional_get(request: Request, next: Next) -> Response {
    // Not HEAD: the router has already dropped a HEAD answer's body, so its digest would be wrong.
    let conditional = request.method() == Method::GET && request.uri().path().starts_with("/api/");
    let wanted = conditional.then(|| if_none_match(request.headers()));
    let response = next.run(request).await;
    let Some(wanted) = wanted else { return response };
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let size = response.body().size_hint().exact();
    if response.status() != StatusCode::OK || !json || size.is_none_or(|n| n > MAX_TAGGED_BYTES) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes): Result<Bytes, _> = axum::body::to_bytes(body, MAX_TAGGED_BYTES as usize).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the response body could not be read").into_response();
    };
    let tag = entity_tag(&bytes);
    let value = HeaderValue::from_str(&tag).expect("an entity tag is a valid header value");
    parts.headers.insert(header::ETAG, value.clone());
    parts.headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("private, no-cache"));
    if none_match(&wanted, &tag) {
        let mut not_modified = Response::new(Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        // RFC 9110 15.4.5: the headers a 200 would have had that matter to a cache, without the body's.
        for name in [header::ETAG, header::CACHE_CONTROL, header::VARY, header::EXPIRES, header::CONTENT_LOCATION] {
            if let Some(v) = parts.headers.get(&name) {
                not_modified.headers_mut().insert(name, v.clone());
            }
        }
        return not_modified;
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> Vec<HeaderValue> {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        if_none_match(&h)
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_the_wildcard() {
        let tag = entity_tag(b"{}");
        assert!(none_match(&headers(&tag), &tag));
        assert!(tag.starts_with("W/\""), "{tag}");
        assert!(none_match(&headers(&format!("\"other\", {}", tag.trim_start_matches("W/"))), &tag));
        assert!(none_match(&headers("*"), &tag));
        assert!(!none_match(&headers("\"other\""), &tag));
        assert!(!none_match(&if_none_match(&HeaderMap::new()), &tag));
        assert_ne!(entity_tag(b"{}"), entity_tag(b"[]"));
    }
}
