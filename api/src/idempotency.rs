//! Safe retries (issue 16, item 6): a request cut off by a crash or a lost connection may have committed, and
//! its client cannot tell. An authenticated POST (every one that creates something: upload, training task,
//! model, question, user) may carry an `Idempotency-Key` header (1 to 255 visible ASCII characters); keys
//! are per user. Within 24 h of the first answer:
//! - the same key with the same request (method, path and query, body) answers the first answer again
//!   (status, body, `Content-Type` and `Location`), with `Idempotent-Replayed: true`, and does nothing else;
//! - the same key with another request answers 409 `idempotency_key_reused`;
//! - while the first request with that key is still being handled, 409 `idempotency_key_in_progress`.
//!
//! Only successful answers (2xx) are remembered: a failed attempt frees its key, so a retry tries again
//! (the request did nothing, or nothing that the answer did not say).
//!
//! A key whose request never finished because its node died (killed, crashed, cut off: its lease in `nodes`
//! lapsed, see `bonsai_infra::nodes`) is settled by the first retry that finds it so: the events appended
//! since the request began that carry its request id (the commands' correlation id) say whether it
//! committed. If it did, the key answers 409 `idempotency_key_committed` naming what was created
//! (`details.aggregate_type`, `details.aggregate_id`), for as long as an answer is kept, so a retry never
//! makes a second one; if it did not, the key is free and the retry runs. A key left by a node that
//! recorded no name (from before nodes held leases) is settled so after [`ABANDONED_AFTER`].
//!
//! Where keys live: PostgreSQL (`idempotency_keys`), not Redis. The case this exists for is a crash, so the
//! record must survive one as the events do; a unique row per `(user, key)` makes "first request wins" a
//! single `INSERT ... ON CONFLICT DO NOTHING` that every node agrees on; and it costs one insert and one
//! update per keyed request only (requests without a key never touch it). Redis without persistence would
//! forget keys on a restart, and a Redis-then-PostgreSQL fallback would have two sources of truth.
//!
//! One middleware for every route, not code in each handler: it hashes the request body as the handler
//! reads it (an upload is never held in memory), and a replay or refusal drains the body to hash it.

use crate::{ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

pub(crate) const HEADER: &str = "idempotency-key";

/// How long a first answer is kept and replayed.
const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);

/// An in-progress key older than this, whose node is not known, belongs to a request whose node died.
const ABANDONED_AFTER: Duration = Duration::from_secs(300);

/// Answers larger than this are not remembered (the key is freed): create answers are small JSON.
const MAX_REMEMBERED_BODY: usize = 1 << 20;

/// Every this many keyed requests, keys past [`KEPT_FOR`] are deleted.
const SWEEP_EVERY: u64 = 256;

static KEYED_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The key of a request, if it carries a valid one.
fn key_of(headers: &HeaderMap) -> Option<Result<String, ApiError>> {
    let value = headers.get(HEADER)?;
    let key =
        value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    Some(key.map(str::to_owned).ok_or_else(|| {
        ApiError::field(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            "Idempotency-Key",
        )
    }))
}

/// What is hashed: the bytes of the body, less a multipart body's boundary (a client picks a new random
/// one for each attempt of the same upload). A match cut by a chunk's end is found with the next chunk.
struct Digesting {
    sha: Sha256,
    boundary: Option<Vec<u8>>,
    carry: Vec<u8>,
}

impl Digesting {
    fn feed(&mut self, bytes: &[u8]) {
        let Some(boundary) = self.boundary.as_deref().filter(|b| !b.is_empty()) else {
            self.sha.update(bytes);
            return;
        };
        self.carry.extend_from_slice(bytes);
        let (mut at, mut hashed) = (0, 0);
        while let Some(found) = self.carry[at..].windows(boundary.len()).position(|w| w == boundary) {
            self.sha.update(&self.carry[hashed..at + found]);
            at += found + boundary.len();
            hashed = at;
        }
        let keep_from = hashed.max(self.carry.len().saturating_sub(boundary.len() - 1));
        self.sha.update(&self.carry[hashed..keep_from]);
        self.carry.drain(..keep_from);
    }

    fn finish(&self) -> Vec<u8> {
        let mut sha = self.sha.clone();
        sha.update(&self.carry);
        sha.finalize().to_vec()
    }
}

/// The request's digest so far: method, path and query, then the body as it is read.
#[derive(Clone)]
struct Hasher {
    state: Arc<Mutex<Digesting>>,
    /// Whether the whole body went through (and without an error): its end was read, or as many bytes as
    /// its `Content-Length` said (a multipart parser stops at the closing boundary).
    complete: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    length: Option<u64>,
    seen: Arc<AtomicU64>,
}

impl Hasher {
    fn new(request: &Request) -> Self {
        let mut sha = Sha256::new();
        sha.update(request.method().as_str().as_bytes());
        sha.update(b" ");
        sha.update(request.uri().path_and_query().map(|p| p.as_str()).unwrap_or_default().as_bytes());
        sha.update(b"\n");
        let headers = request.headers();
        let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        let boundary = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|t| t.to_ascii_lowercase().starts_with("multipart/"))
            .and_then(|t| t.split(';').find_map(|p| p.trim().strip_prefix("boundary=")))
            .map(|b| b.trim_matches('"').as_bytes().to_vec());
        Self {
            state: Arc::new(Mutex::new(Digesting { sha, boundary, carry: Vec::new() })),
            complete: Arc::default(),
            failed: Arc::default(),
            length,
            seen: Arc::default(),
        }
    }

    /// The digest, once the whole body went through.
    fn finish(&self) -> Option<Vec<u8>> {
        let whole = self.complete.load(Ordering::SeqCst) || Some(self.seen.load(Ordering::SeqCst)) == self.length;
        (whole && !self.failed.load(Ordering::SeqCst))
            .then(|| self.state.lock().unwrap_or_else(|p| p.into_inner()).finish())
    }

    /// `body`, hashed as it is read.
    fn wrap(&self, body: Body) -> Body {
        let (seen, done) = (self.clone(), self.clone());
        let stream = body
            .into_data_stream()
            .inspect(move |chunk| match chunk {
                Ok(bytes) => {
                    seen.state.lock().unwrap_or_else(|p| p.into_inner()).feed(bytes);
                    seen.seen.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                }
                Err(_) => seen.failed.store(true, Ordering::SeqCst),
            })
            .chain(futures::stream::poll_fn(move |_| {
                done.complete.store(true, Ordering::SeqCst);
                std::task::Poll::Ready(None)
            }));
        Body::from_stream(stream)
    }

    /// Reads all of `body` (for a request that will not be handled): the digest, or none if it broke off.
    async fn drain(self, body: Body) -> Option<Vec<u8>> {
        let mut stream = self.wrap(body).into_data_stream();
        while let Some(chunk) = stream.next().await {
            chunk.ok()?;
        }
        self.finish()
    }
}

/// A remembered key: `(request digest, status, content type, location, body)`, the status none while the
/// first request is in progress.
type Row = (Option<Vec<u8>>, Option<i16>, Option<String>, Option<String>, Option<Vec<u8>>);

fn conflict(code: &'static str, message: &str) -> Response {
    ApiError::Conflict { code, message: message.to_owned() }.into_response()
}

/// The user a request's access token names, if it is valid (otherwise the handler answers 401 anyway).
fn user_of(state: &AppState, headers: &HeaderMap) -> Option<Uuid> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    state.tokens.verify_access(token.trim()).ok().map(|claims| claims.sub)
}

/// The middleware (see the module's comment).
pub(crate) async fn remember(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let key = match key_of(request.headers()) {
        None => return next.run(request).await,
        Some(Err(refused)) => return refused.into_response(),
        Some(Ok(key)) => key,
    };
    let Some(user) = user_of(&state, request.headers()) else { return next.run(request).await };
    // A new API key's answer holds its secret, which is stored nowhere: it cannot be replayed.
    if request.uri().path() == crate::routes::API_KEYS_PATH {
        return next.run(request).await;
    }
    match handle(&state, user, &key, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(state: &AppState, user: Uuid, key: &str, request: Request, next: Next) -> Result<Response, ApiError> {
    let pool = &state.pool;
    if KEYED_REQUESTS.fetch_add(1, Ordering::Relaxed).is_multiple_of(SWEEP_EVERY) {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)")
            .bind(KEPT_FOR.as_secs_f64())
            .execute(pool)
            .await
            .map_err(internal)?;
    }
    let hasher = Hasher::new(&request);
    // Free the key if its answer is older than a day; settle it if its request's node is gone; then claim it.
    sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_at < now() - make_interval(secs => $3)")
        .bind(user)
        .bind(key)
        .bind(KEPT_FOR.as_secs_f64())
        .execute(pool)
        .await
        .map_err(internal)?;
    settle_abandoned(state, user, key).await?;
    let request_id = request.headers().get(crate::REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, node, request_id, after_position) \
         SELECT $1, $2, $3, $4, COALESCE(max(global_position), 0) FROM events \
         ON CONFLICT (user_id, key) DO NOTHING",
    )
    .bind(user)
    .bind(key)
    .bind(&state.node.name)
    .bind(request_id)
    .execute(pool)
    .await
    .map_err(internal)?
    .rows_affected()
        == 1;
    if !claimed {
        let row: Option<Row> = sqlx::query_as(
            "SELECT request_sha256, status, content_type, location, body FROM idempotency_keys \
             WHERE user_id = $1 AND key = $2",
        )
        .bind(user)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(internal)?;
        let digest = hasher.drain(request.into_body()).await;
        return Ok(match row {
            // Freed in between (its first request failed): the client may retry.
            None => conflict("idempotency_key_in_progress", "a request with this Idempotency-Key is in progress"),
            Some((_, None, ..)) => {
                conflict("idempotency_key_in_progress", "a request with this Idempotency-Key is in progress")
            }
            // Its first request was cut off after it committed: whatever this one is, the key is spent.
            Some((None, Some(status), content_type, location, body)) if status == COMMITTED => {
                replay(status, content_type, location, body.unwrap_or_default())
            }
            Some((first, Some(status), content_type, location, body)) => {
                if first.is_none() || first != digest {
                    conflict(
                        "idempotency_key_reused",
                        "this Idempotency-Key was used for another request in the last 24 hours",
                    )
                } else {
                    replay(status, content_type, location, body.unwrap_or_default())
                }
            }
        });
    }
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, hasher.wrap(body));
    let response = next.run(request).await;
    match remembered(response, &hasher).await {
        Ok((response, status, content_type, location, body, digest)) => {
            sqlx::query(
                "UPDATE idempotency_keys SET request_sha256 = $3, status = $4, content_type = $5, location = $6, \
                 body = $7, created_at = now() WHERE user_id = $1 AND key = $2",
            )
            .bind(user)
            .bind(key)
            .bind(digest)
            .bind(status)
            .bind(content_type)
            .bind(location)
            .bind(body)
            .execute(pool)
            .await
            .map_err(internal)?;
            Ok(response)
        }
        Err(response) => {
            sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2")
                .bind(user)
                .bind(key)
                .execute(pool)
                .await
                .map_err(internal)?;
            Ok(response)
        }
    }
}

/// The status a key settled as committed answers (with `request_sha256` empty).
const COMMITTED: i16 = 409;

/// Settles `key` if its request is in progress on a node that is gone (see the module's comment).
async fn settle_abandoned(state: &AppState, user: Uuid, key: &str) -> Result<(), ApiError> {
    let pool = &state.pool;
    let abandoned: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT k.request_id, k.after_position FROM idempotency_keys k \
         WHERE k.user_id = $1 AND k.key = $2 AND k.status IS NULL AND CASE \
           WHEN k.node IS NULL THEN k.created_at < now() - make_interval(secs => $3) \
           ELSE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.name = k.node \
                              AND n.renewed_at > now() - make_interval(secs => $4)) \
                AND k.created_at < now() - make_interval(secs => $4) END",
    )
    .bind(user)
    .bind(key)
    .bind(ABANDONED_AFTER.as_secs_f64())
    .bind(state.node.lease.as_secs_f64())
    .fetch_optional(pool)
    .await
    .map_err(internal)?;
    let Some((request_id, after)) = abandoned else { return Ok(()) };
    let committed: Option<(String, String)> = match (request_id, after) {
        (Some(request_id), Some(after)) => sqlx::query_as(
            "SELECT aggregate_type, aggregate_id FROM events \
             WHERE global_position > $1 AND metadata->>'correlation_id' = $2 ORDER BY global_position LIMIT 1",
        )
        .bind(after)
        .bind(request_id)
        .fetch_optional(pool)
        .await
        .map_err(internal)?,
        _ => None,
    };
    match committed {
        None => {
            tracing::info!(%user, "a keyed request's node is gone and it committed nothing: its key is free");
            sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND status IS NULL")
                .bind(user)
                .bind(key)
                .execute(pool)
                .await
                .map_err(internal)?;
        }
        Some((aggregate_type, aggregate_id)) => {
            tracing::info!(%user, %aggregate_type, %aggregate_id, "a keyed request's node is gone after it committed");
            let body = serde_json::json!({"error": {
                "code": "idempotency_key_committed",
                "message": format!(
                    "the first request with this Idempotency-Key was cut off by a node failure after it committed: \
                     it created or changed {aggregate_type} {aggregate_id}"
                ),
                "details": {"aggregate_type": aggregate_type, "aggregate_id": aggregate_id},
            }});
            sqlx::query(
                "UPDATE idempotency_keys SET status = $3, content_type = 'application/json', body = $4, \
                 created_at = now() WHERE user_id = $1 AND key = $2 AND status IS NULL",
            )
            .bind(user)
            .bind(key)
            .bind(COMMITTED)
            .bind(body.to_string().into_bytes())
            .execute(pool)
            .await
            .map_err(internal)?;
        }
    }
    Ok(())
}

/// A successful answer with its parts to remember, or the answer as it is (not to be remembered).
#[allow(clippy::type_complexity)]
async fn remembered(
    response: Response,
    hasher: &Hasher,
) -> Result<(Response, i16, Option<String>, Option<String>, Vec<u8>, Vec<u8>), Response> {
    let Some(digest) = hasher.finish() else { return Err(response) };
    if !response.status().is_success() {
        return Err(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REMEMBERED_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // Over the limit (or broken): the answer is gone, and so is the key; the client sees a 500.
            tracing::error!(%error, "an answer to an idempotent request could not be kept");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    let text = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (content_type, location) = (text(header::CONTENT_TYPE), text(header::LOCATION));
    let status = parts.status.as_u16() as i16;
    let response = Response::from_parts(parts, Body::from(bytes.clone()));
    Ok((response, status, content_type, location, bytes.to_vec(), digest))
}

fn replay(status: i16, content_type: Option<String>, location: Option<String>, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in [(header::CONTENT_TYPE, content_type), (header::LOCATION, location)] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn internal(error: sqlx::Error) -> ApiError {
    ApiError::Internal(format!("idempotency keys: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(boundary: Option<&str>, chunks: &[&[u8]]) -> Vec<u8> {
        let mut d = Digesting { sha: Sha256::new(), boundary: boundary.map(|b| b.as_bytes().to_vec()), carry: vec![] };
        for chunk in chunks {
            d.feed(chunk);
        }
        d.finish()
    }

    #[test]
    fn multipart_bodies_hash_alike_whatever_their_boundary_and_chunks() {
        let body = |b: &str| format!("--{b}\r\ncontent-disposition: form-data; name=\"file\"\r\n\r\nqa\r\n--{b}--\r\n");
        let (one, two) = (body("abcdef123"), body("zyxw98765"));
        let whole = digest(Some("abcdef123"), &[one.as_bytes()]);
        assert_eq!(whole, digest(Some("zyxw98765"), &[two.as_bytes()]));
        for cut in 1..one.len() {
            let (a, b) = one.as_bytes().split_at(cut);
            assert_eq!(digest(Some("abcdef123"), &[a, b]), whole, "cut at {cut}");
        }
        let other = body("abcdef123").replace("qa", "qb");
        assert_ne!(digest(Some("abcdef123"), &[other.as_bytes()]), whole);
        assert_ne!(digest(None, &[one.as_bytes()]), digest(None, &[two.as_bytes()]), "plain bodies hash as sent");
    }
}
