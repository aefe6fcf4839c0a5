//! `POST /api/data/upload` (and `POST /v1/files`, which shares [`store`]): the file is streamed to the file store (never held whole in memory),
//! refused past the size limit (413, nothing kept), scanned for viruses where a scanner is set up (422
//! `file_infected` or 503, nothing kept), sniffed (415/422, nothing kept), then recorded.

use super::{dto, unprocessable, DatasetDto, UploadForm};
use crate::auth::AuthUser;
use crate::extract::Correlation;
use crate::{ApiError, AppState};
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_datasets::{DatasetError as FormatError, ErrorClass};
use bonsai_domain::alert::{alert_id, AlertCommand, AlertSpec, Severity};
use bonsai_domain::dataset::{DatasetCommand, DatasetFile};
use bonsai_domain::values::{thing_name, MAX_NAME_CHARS};
use bonsai_domain::Permission;
use bonsai_infra::{FileStoreError, Staged, Verdict};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

/// Longest text field (name, description, ...).
const MAX_TEXT_FIELD: usize = 4096;

/// 415 for content that is not a dataset we read, 422 for one that is empty; the library's own code
/// goes in `details.reason`.
pub(super) fn content_error(error: FormatError) -> ApiError {
    let message = error.to_string();
    let details = Some(json!({ "reason": error.code() }));
    match error.class() {
        ErrorClass::UnsupportedContent => {
            ApiError::UnsupportedContent { code: "unsupported_content", message, details }
        }
        ErrorClass::Invalid => ApiError::Unprocessable { code: "dataset_invalid", message, details },
        ErrorClass::Internal => ApiError::Internal(message),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge {
        code: "dataset_too_large",
        message: format!("the upload is larger than the limit of {limit} bytes"),
        details: Some(serde_json::json!({ "limit_bytes": limit })),
    }
}

fn multipart_error(error: MultipartError, limit: u64) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(limit);
    }
    ApiError::BadRequest { code: "invalid_multipart", message: error.body_text() }
}

fn store_error(error: FileStoreError, limit: u64) -> ApiError {
    match error {
        FileStoreError::TooLarge { .. } => too_large(limit),
        FileStoreError::Source(io) => match io.get_ref().and_then(|e| e.downcast_ref::<MultipartError>()) {
            Some(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(limit),
            _ => ApiError::BadRequest {
                code: "upload_interrupted",
                message: format!("the upload did not complete: {io}"),
            },
        },
        FileStoreError::NotFound(_) | FileStoreError::InvalidKey | FileStoreError::Io(_) => {
            ApiError::Internal(error.to_string())
        }
    }
}

/// Reads what is left of the body (bounded by the route's body limit) so that the client, still
/// sending, gets the error response instead of a reset connection.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

async fn text_field(mut field: axum::extract::multipart::Field<'_>, limit: u64) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TEXT_FIELD {
            return Err(unprocessable(format!("the `{name}` field is longer than {MAX_TEXT_FIELD} bytes")));
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| unprocessable(format!("the `{name}` field is not UTF-8")))?;
    crate::extract::no_nul(&name, &text)?;
    Ok(text)
}

/// The uploader's file name as metadata: its base name only (`../../../../etc/passwd` is `passwd`; a
/// client's folders are none of the server's business), control characters (NUL included) and quotes
/// dropped, bounded length; `upload` where nothing is left. It is shown back to the user (and would be
/// safe in a `Content-Disposition`) and never used to name anything on the server.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).find(|part| !part.trim().is_empty()).unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control() && *c != '"').take(255).collect();
    match clean.trim() {
        "" | "." | ".." => "upload".to_owned(),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::clean_filename;

    #[test]
    fn file_names_keep_only_a_safe_base_name() {
        for (sent, kept) in [
            ("../../../../etc/passwd", "passwd"),
            ("/etc/passwd", "passwd"),
            ("..\\..\\windows\\win.ini", "win.ini"),
            ("dir/", "dir"),
            ("..", "upload"),
            ("", "upload"),
            ("nul\0by\"te.jsonl", "nulbyte.jsonl"),
            ("qa data.jsonl", "qa data.jsonl"),
        ] {
            assert_eq!(clean_filename(sent), kept, "{sent:?}");
        }
    }
}

#[derive(Default)]
struct Form {
    file: Option<(Staged, String)>,
    name: Option<String>,
    description: Option<String>,
    format: Option<String>,
    dataset_id: Option<String>,
    purpose: Option<String>,
}

/// Which form a multipart upload is: the native one, or OpenAI's (`POST /v1/files`: `file` and `purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormKind {
    Native,
    OpenAi,
}

async fn read_form(state: &AppState, multipart: &mut Multipart, kind: FormKind) -> Result<Form, ApiError> {
    let limit = state.max_upload_bytes;
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| multipart_error(e, limit))? {
        match field.name().unwrap_or_default() {
            "file" if form.file.is_none() => {
                let filename = clean_filename(field.file_name().unwrap_or_default());
                let bytes = field.map(|chunk| chunk.map_err(std::io::Error::other)).boxed();
                let staged = state.files.stage(bytes, limit).await.map_err(|e| store_error(e, limit))?;
                form.file = Some((staged, filename));
            }
            "file" => return Err(unprocessable("only one `file` may be uploaded at a time")),
            "name" => form.name = Some(text_field(field, limit).await?),
            "description" => form.description = Some(text_field(field, limit).await?),
            "format" => form.format = Some(text_field(field, limit).await?),
            "dataset_id" => form.dataset_id = Some(text_field(field, limit).await?),
            "purpose" if kind == FormKind::OpenAi => form.purpose = Some(text_field(field, limit).await?),
            other => return Err(unprocessable(format!("unknown form field `{other}`"))),
        }
    }
    Ok(form)
}

/// Uploads a dataset file (multipart): a new dataset, or with `dataset_id` a new version of one.
#[utoipa::path(post, path = "/api/data/upload", tag = "datasets", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = DatasetDto), (status = 403, body = crate::ErrorBody),
    (status = 404, description = "dataset_id names no dataset of yours", body = crate::ErrorBody),
    (status = 409, description = "dataset_archived", body = crate::ErrorBody),
    (status = 413, description = "dataset_too_large", body = crate::ErrorBody),
    (status = 415, description = "unsupported_content (not text, not UTF-8, unknown format)", body = crate::ErrorBody),
    (status = 422, description = "dataset_invalid, format_mismatch, validation_failed, or file_infected (details.signature)", body = crate::ErrorBody),
    (status = 503, description = "virus_scan_unavailable: scanning is required and the scanner gave no verdict", body = crate::ErrorBody)))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<impl IntoResponse, ApiError> {
    user.require(Permission::ManageDatasets)?;
    let multipart =
        multipart.map_err(|r| ApiError::BadRequest { code: "invalid_multipart", message: r.body_text() })?;
    let id = store(&state, &user, correlation, multipart, FormKind::Native).await?;
    let dto: DatasetDto = dto::current(&state, id).await?;
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/data/datasets/{id}"))], Json(dto)))
}

/// Reads an upload's form, scans, sniffs and stores its file, and records it: a new dataset, or a new
/// version of one (native form only). Returns the dataset's id. OpenAI's form must say `purpose` `fine-tune`.
pub(crate) async fn store(
    state: &AppState,
    user: &AuthUser,
    correlation: String,
    mut multipart: Multipart,
    kind: FormKind,
) -> Result<Uuid, ApiError> {
    let form = match read_form(state, &mut multipart, kind).await {
        Ok(form) => form,
        Err(error) => {
            drain(&mut multipart).await;
            return Err(error);
        }
    };
    if kind == FormKind::OpenAi && form.purpose.as_deref().map(str::trim) != Some("fine-tune") {
        let message = "purpose must be `fine-tune`: files are fine-tuning data sets here".to_owned();
        return Err(ApiError::BadField { code: "invalid_request_error", message, field: "purpose".into() });
    }
    // From here on every refusal drops the staged upload, which removes it: nothing is kept half-way.
    let (staged, filename) = form.file.ok_or_else(|| unprocessable("the `file` field is required"))?;
    let staged = scan(state, staged, user, &filename, &correlation).await?;
    let (staged, format) = sniff(state, staged).await?;
    if let Some(wanted) = form.format.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        if wanted != format {
            let message = format!("the content is {format}, not {wanted}");
            return Err(ApiError::Unprocessable {
                code: "format_mismatch",
                message,
                details: Some(json!({ "detected": format })),
            });
        }
    }
    let meta = CommandMetadata::new(Some(user.id), correlation);
    let (id, command) = match form.dataset_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(existing) => {
            let id: Uuid = existing.parse().map_err(|_| unprocessable("dataset_id is not a UUID"))?;
            // Checked before the file is stored, from the dataset's own events (the aggregate checks
            // again when the command runs); the view could lag behind a dataset just created.
            dto::ensure_open(state, user, id).await?;
            (id, None)
        }
        None => {
            // A name given is checked; one taken from the file name (control characters already dropped) is cut.
            let name = match form.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                Some(given) => thing_name(given).ok_or_else(|| {
                    let message =
                        format!("name must be at most {MAX_NAME_CHARS} characters, without control characters");
                    ApiError::field("validation_failed", message, "name")
                })?,
                None => thing_name(&filename.chars().take(MAX_NAME_CHARS).collect::<String>())
                    .unwrap_or_else(|| "dataset".to_owned()),
            };
            let description = form.description.unwrap_or_default().trim().to_owned();
            (Uuid::now_v7(), Some((name, description)))
        }
    };
    let blob = state.files.commit(staged).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let file = DatasetFile { sha256: blob.sha256, size: blob.size, filename, format };
    let command = match command {
        Some((name, description)) => {
            DatasetCommand::UploadDataset { dataset_id: id, owner_id: user.id, name, description, file }
        }
        None => DatasetCommand::AddDatasetVersion { by: user.actor(), file },
    };
    state.commands.execute(id, command, &meta).await?;
    Ok(id)
}

/// Scans the staged upload for viruses, when scanning is set up, before anything else reads it.
async fn scan(
    state: &AppState,
    staged: Staged,
    user: &AuthUser,
    filename: &str,
    correlation: &str,
) -> Result<Staged, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(scanning) = state.virus_scan.clone() else { return Ok(staged) };
    let files = state.files.clone();
    let clamd = scanning.clamd.clone();
    let (staged, verdict) = tokio::task::spawn_blocking(move || {
        let verdict = files.open_staged(&staged).map(|content| clamd.scan(content));
        (staged, verdict)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let verdict = verdict.map_err(|e| ApiError::Internal(e.to_string()))?;
    match verdict {
        Ok(Verdict::Clean) => {
            state.scan_metrics.clean.fetch_add(1, Relaxed);
            Ok(staged)
        }
        Ok(Verdict::Infected { signature }) => {
            state.scan_metrics.infected.fetch_add(1, Relaxed);
            tracing::warn!(user = %user.username, %filename, sha256 = %staged.sha256, %signature, "infected upload refused");
            raise_infected_alert(state, &staged, user, filename, &signature, correlation).await;
            Err(ApiError::Unprocessable {
                code: "file_infected",
                message: format!("the virus scanner found {signature} in the file; it was not stored"),
                details: Some(json!({ "signature": signature })),
            })
        }
        Err(error) => {
            state.scan_metrics.failed.fetch_add(1, Relaxed);
            if scanning.required {
                tracing::error!(%error, "upload refused: no virus scan verdict");
                Err(ApiError::DependencyUnavailable {
                    code: "virus_scan_unavailable",
                    message: "the virus scanner gave no verdict; uploads are refused until it does, retry later".into(),
                })
            } else {
                tracing::warn!(%error, sha256 = %staged.sha256, "upload accepted unscanned: no virus scan verdict");
                Ok(staged)
            }
        }
    }
}

/// A critical alert for admins: who uploaded what, and what was found. The same user uploading the same
/// file again raises it again only once it has been resolved.
async fn raise_infected_alert(
    state: &AppState,
    staged: &Staged,
    user: &AuthUser,
    filename: &str,
    signature: &str,
    correlation: &str,
) {
    let spec = AlertSpec {
        kind: "infected_upload".into(),
        severity: Severity::Critical,
        subject: format!("User/{}", user.id),
        message: format!(
            "{} uploaded a file in which the virus scanner found {signature}; it was refused",
            user.username
        ),
        details: json!({
            "user_id": user.id, "username": user.username, "filename": filename, "sha256": staged.sha256,
            "size": staged.size, "signature": signature,
        }),
        owner_id: None,
    };
    let id = alert_id(&format!("infected_upload/{}/{}", user.id, staged.sha256));
    let meta = CommandMetadata::new(Some(user.id), correlation);
    if let Err(error) = state.commands.execute_and_get(id, AlertCommand::Raise { spec, recurring: true }, &meta).await {
        tracing::error!(%error, "the infected_upload alert could not be raised");
    }
}

/// Detects the format from the staged content (the file name plays no part).
async fn sniff(state: &AppState, staged: Staged) -> Result<(Staged, String), ApiError> {
    let files = state.files.clone();
    let (staged, detected) = tokio::task::spawn_blocking(move || {
        let detected = files.open_staged(&staged).map(bonsai_datasets::detect);
        (staged, detected)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let detected = detected.map_err(|e| ApiError::Internal(e.to_string()))?.map_err(content_error)?;
    let format = serde_json::to_value(detected.format).ok().and_then(|v| v.as_str().map(str::to_owned));
    Ok((staged, format.unwrap_or_else(|| "unknown".into())))
}
