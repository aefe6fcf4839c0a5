//! `/api/qa`: questions to deployed models, in conversations that keep their history. Asking records a
//! `QuestionAsked` event; the QA worker answers it; the endpoint waits for that answer (up to `wait_secs`,
//! watching the conversation's NATS subject) and otherwise answers 202, to be polled at
//! `/api/qa/questions/{id}`.

use crate::auth::AuthUser;
use crate::extract::{page_window, ApiJson, ApiPath, ApiQuery, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::qa::{Answer, AnswerParams, Conversation, QaCommand, QaEvent};
use bonsai_domain::Permission;
use bonsai_domain::{Actor, AggregateKind, Event};
use bonsai_projections::qa::{self, QuestionRow};
use bonsai_projections::StoredEvent;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Longest an ask waits for its answer.
const MAX_WAIT_SECS: u64 = 120;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AskRequest {
    /// 1 to 4,000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    pub question: String,
    /// A deployed model: its id or an alias (`production`); without it, the default model
    /// (`POST /api/models/{id}/default`), or the only deployed one (422 `no_default_model` when several are
    /// deployed and none is the default).
    pub model_id: Option<String>,
    /// Continue this conversation of yours (its last answered turns are the context); default: a new one.
    pub session_id: Option<Uuid>,
    /// 1 to 1,024 (default 128).
    #[schema(minimum = 1, maximum = 1024)]
    pub max_new_tokens: Option<u32>,
    /// 0 (default, deterministic) to 2.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    /// How long to wait for the answer, 0 to 120 seconds (default 30); then 202.
    #[schema(minimum = 0, maximum = 120)]
    pub wait_secs: Option<u64>,
    /// Answer as `text/event-stream`: `question` (the question, pending), `delta` (`{"text"}`, pieces of the
    /// answer as they are generated), then `done` (the question as recorded: answer, usage, finish reason,
    /// response time) or, past `wait_secs`, `pending`. A client that disconnects stops the generation; the
    /// question is recorded with what was generated and finish reason `cancelled`.
    pub stream: Option<bool>,
}

/// A question and, once there, its answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuestionDto {
    pub question_id: Uuid,
    pub session_id: Uuid,
    pub model_id: Uuid,
    pub question: String,
    /// `pending`, `answered` or `failed`.
    pub status: String,
    pub answer: Option<String>,
    /// Time to answer, in milliseconds (0 for a cached answer).
    pub response_ms: Option<i64>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub finish_reason: Option<String>,
    pub cached: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    pub asked_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
}

impl From<QuestionRow> for QuestionDto {
    fn from(r: QuestionRow) -> Self {
        QuestionDto {
            question_id: r.question_id,
            session_id: r.session_id,
            model_id: r.model_id,
            question: r.question,
            status: r.status,
            answer: r.answer,
            response_ms: r.response_ms,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            finish_reason: r.finish_reason,
            cached: r.cached,
            error: r.error_code.map(|code| json!({ "code": code, "message": r.error_message })),
            asked_at: r.asked_at,
            answered_at: r.answered_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuestionPage {
    pub items: Vec<QuestionDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

/// How a question was decided, from its event.
pub(crate) enum Decision {
    Answered(Answer),
    Failed { code: String, message: String },
}

/// The decision on `question_id` a message on its conversation's subject carries, if it carries one: the
/// event itself, opened with the question's data key, as the relay publishes it when it commits (the history
/// view follows it; waiting for the view would add its lag). `(decision, recorded at)`.
async fn decision_in(state: &AppState, payload: &[u8], question_id: Uuid) -> Option<(Decision, chrono::DateTime<Utc>)> {
    // The envelope first: only the deciding event is opened (its data key read if not loaded).
    let envelope = StoredEvent::envelope(payload).ok()?;
    let decides = match envelope.event() {
        Ok((Event::QaSession(QaEvent::QuestionAnswered { question_id: id, .. }), _)) => id == question_id,
        Ok((Event::QaSession(QaEvent::QuestionFailed { question_id: id, .. }), _)) => id == question_id,
        _ => false,
    };
    if !decides {
        return None;
    }
    let event = StoredEvent::from_bus(&state.pool, payload).await.ok()?;
    match event.event().ok()? {
        (Event::QaSession(QaEvent::QuestionAnswered { answer, .. }), _) => {
            Some((Decision::Answered(answer), event.recorded_at))
        }
        (Event::QaSession(QaEvent::QuestionFailed { code, message, .. }), _) => {
            Some((Decision::Failed { code, message }, event.recorded_at))
        }
        _ => None,
    }
}

/// A question being answered: asked, with the subscriptions that bring its text and its decision.
pub(crate) struct Asking {
    pub(crate) session_id: Uuid,
    pub(crate) question_id: Uuid,
    pub(crate) model_id: Uuid,
    pub(crate) question: String,
    pub(crate) asked_at: chrono::DateTime<Utc>,
    answers: async_nats::Subscriber,
    tokens: async_nats::Subscriber,
}

/// What `ask` and `/v1/chat/completions` ask.
pub(crate) struct Ask {
    pub(crate) model_id: Uuid,
    pub(crate) session_id: Option<Uuid>,
    pub(crate) question: String,
    pub(crate) params: AnswerParams,
    pub(crate) conversation: Option<Conversation>,
}

/// Asks: subscribes to the conversation's events and the question's tokens first (so nothing passes unseen),
/// then executes `AskQuestion` (the question's budget is the caller's to check).
pub(crate) async fn start(
    state: &AppState,
    user: &AuthUser,
    correlation: String,
    ask: Ask,
) -> Result<Asking, ApiError> {
    let session_id = ask.session_id.unwrap_or_else(Uuid::now_v7);
    let question_id = Uuid::now_v7();
    let unavailable = |e: async_nats::SubscribeError| ApiError::Unavailable(e.to_string());
    let answers = state
        .nats
        .subscribe(state.subjects.events_of_one(AggregateKind::QaSession, session_id))
        .await
        .map_err(unavailable)?;
    let tokens = state.nats.subscribe(state.subjects.question_tokens(question_id)).await.map_err(unavailable)?;
    let question = ask.question.trim().to_owned();
    let command = QaCommand::AskQuestion {
        session_id,
        by: user.actor(),
        question_id,
        model_id: ask.model_id,
        question: question.clone(),
        params: ask.params,
        conversation: ask.conversation,
    };
    let asked_at = Utc::now();
    state.commands.execute(session_id, command, &CommandMetadata::new(Some(user.id), correlation)).await?;
    Ok(Asking { session_id, question_id, model_id: ask.model_id, question, asked_at, answers, tokens })
}

impl Asking {
    /// The question as `ask` shows it, still pending.
    pub(crate) fn pending(&self) -> QuestionDto {
        QuestionDto {
            question_id: self.question_id,
            session_id: self.session_id,
            model_id: self.model_id,
            question: self.question.clone(),
            status: "pending".into(),
            answer: None,
            response_ms: None,
            prompt_tokens: None,
            completion_tokens: None,
            finish_reason: None,
            cached: None,
            error: None,
            asked_at: self.asked_at,
            answered_at: None,
        }
    }

    /// The question as decided.
    pub(crate) fn decided(&self, decision: Decision, at: chrono::DateTime<Utc>) -> QuestionDto {
        let mut dto = self.pending();
        dto.answered_at = Some(at);
        match decision {
            Decision::Answered(a) => {
                dto.status = "answered".into();
                dto.answer = Some(a.answer);
                dto.response_ms = Some(a.response_ms as i64);
                dto.prompt_tokens = Some(a.prompt_tokens as i32);
                dto.completion_tokens = Some(a.completion_tokens as i32);
                dto.finish_reason = Some(a.finish_reason);
                dto.cached = Some(a.cached);
            }
            Decision::Failed { code, message } => {
                dto.status = "failed".into();
                dto.error = Some(json!({ "code": code, "message": message }));
            }
        }
        dto
    }

    /// Waits for the decision until `deadline` (none after it).
    pub(crate) async fn decision(&mut self, state: &AppState, deadline: tokio::time::Instant) -> Option<QuestionDto> {
        loop {
            let message = tokio::select! {
                message = self.answers.next() => message?,
                _ = tokio::time::sleep_until(deadline) => return None,
            };
            if let Some((decision, at)) = decision_in(state, &message.payload, self.question_id).await {
                return Some(self.decided(decision, at));
            }
        }
    }

    /// The answer as it is generated: its pieces, then the decided question (or, past `deadline`, the pending
    /// one). Dropping the stream before the end (the client went away) stops the generation, wherever it runs.
    pub(crate) fn live(self, state: AppState, deadline: tokio::time::Instant) -> BoxStream<'static, Streamed> {
        let cancel = CancelOnDrop {
            nats: state.nats.clone(),
            subject: state.subjects.question_cancel(self.question_id),
            armed: true,
        };
        futures::stream::unfold((self, state, cancel, false), move |(mut asking, state, mut cancel, done)| async move {
            if done {
                return None;
            }
            loop {
                tokio::select! {
                    biased;
                    Some(message) = asking.tokens.next() => {
                        let piece: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
                        if let Some(text) = piece["delta"].as_str().filter(|t| !t.is_empty()) {
                            return Some((Streamed::Delta(text.to_owned()), (asking, state, cancel, false)));
                        }
                    }
                    message = asking.answers.next() => {
                        let Some(message) = message else { break };
                        if let Some((decision, at)) = decision_in(&state, &message.payload, asking.question_id).await {
                            cancel.armed = false;
                            let dto = asking.decided(decision, at);
                            return Some((Streamed::Done(Box::new(dto)), (asking, state, cancel, true)));
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            // Past the deadline: the answer goes on and is recorded; the client polls for it.
            cancel.armed = false;
            let pending = asking.pending();
            Some((Streamed::Pending(Box::new(pending)), (asking, state, cancel, true)))
        })
        .boxed()
    }
}

/// One item of a live answer.
pub(crate) enum Streamed {
    /// The next piece of the answer's text.
    Delta(String),
    /// Answered or failed: the question as recorded.
    Done(Box<QuestionDto>),
    /// Not decided before the deadline.
    Pending(Box<QuestionDto>),
}

/// Tells the answering node to stop when a live answer is dropped before its end.
struct CancelOnDrop {
    nats: async_nats::Client,
    subject: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (nats, subject) = (self.nats.clone(), std::mem::take(&mut self.subject));
            tokio::spawn(async move {
                let _ = nats.publish(subject, bytes::Bytes::new()).await;
                let _ = nats.flush().await;
            });
        }
    }
}

/// Asks a deployed model a question and waits for the answer (200), or answers 202 after `wait_secs`.
#[utoipa::path(post, path = "/api/qa/ask", tag = "qa", security(("bearer" = [])), request_body = AskRequest,
    responses((status = 200, description = "the question as answered (or failed); with `stream`, text/event-stream", body = QuestionDto), (status = 202, description = "not answered yet", body = QuestionDto),
    (status = 404, description = "no such conversation", body = crate::ErrorBody),
    (status = 422, description = "validation_failed, invalid_body, no_deployed_model, no_default_model, unknown_model \
        or model_not_deployed",
        body = crate::ErrorBody),
    (status = 429, description = "rate_limited: the user's question budget is spent (Retry-After)", body = crate::ErrorBody)))]
pub(crate) async fn ask(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiJson(request): ApiJson<AskRequest>,
) -> Result<Response, ApiError> {
    user.require(Permission::AskQuestions)?;
    let wait = request.wait_secs.unwrap_or(30);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::field("validation_failed", "wait_secs must be 0 to 120", "wait_secs"));
    }
    // Every question costs a generation: each user has a budget of them (429 with Retry-After when spent).
    state.limits.question(user.id).await.map_err(ApiError::rate_limited)?;
    let model_id = super::models::answering_model(&state, request.model_id.as_deref()).await?;
    let defaults = AnswerParams::default();
    let params = AnswerParams {
        max_new_tokens: request.max_new_tokens.unwrap_or(defaults.max_new_tokens),
        temperature: request.temperature.unwrap_or(defaults.temperature),
        ..defaults
    };
    let ask = Ask { model_id, session_id: request.session_id, question: request.question, params, conversation: None };
    let mut asking = start(&state, &user, correlation, ask).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    if request.stream == Some(true) {
        let pending = asking.pending();
        let first = futures::stream::once(async move { sse_json("question", &pending) });
        let rest = asking.live(state, deadline).map(|item| match item {
            Streamed::Delta(text) => sse_json("delta", &json!({ "text": text })),
            Streamed::Done(dto) => sse_json("done", &dto),
            Streamed::Pending(dto) => sse_json("pending", &dto),
        });
        let events = first.chain(rest).map(Ok::<_, std::convert::Infallible>);
        return Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response());
    }
    let decided = asking.decision(&state, deadline).await;
    Ok(match decided {
        Some(dto) => (StatusCode::OK, Json(dto)).into_response(),
        None => (StatusCode::ACCEPTED, Json(asking.pending())).into_response(),
    })
}

/// A server-sent event named `name` with `data` as JSON.
fn sse_json(name: &str, data: &impl Serialize) -> SseEvent {
    SseEvent::default().event(name).data(serde_json::to_string(data).unwrap_or_default())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    #[param(minimum = 1)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
    /// One conversation only.
    pub session_id: Option<Uuid>,
}

/// Your questions and answers, newest first.
#[utoipa::path(get, path = "/api/qa/history", tag = "qa", security(("bearer" = [])), params(HistoryQuery),
    responses((status = 200, body = QuestionPage), (status = 422, body = crate::ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<QuestionPage>, ApiError> {
    user.require(Permission::AskQuestions)?;
    let (page, page_size) = page_window(query.page, query.page_size)?;
    if let Some(session) = query.session_id {
        crate::fresh::current(&state, "qa", "QaSession", session).await?;
    }
    let (rows, total) = qa::history(&state.pool, user.id, query.session_id, page, page_size).await?;
    Ok(Json(QuestionPage { items: rows.into_iter().map(QuestionDto::from).collect(), total, page, page_size }))
}

/// One of your questions (poll it after a 202).
#[utoipa::path(get, path = "/api/qa/questions/{id}", tag = "qa", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "question id")),
    responses((status = 200, body = QuestionDto), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_question(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<QuestionDto>, ApiError> {
    user.require(Permission::AskQuestions)?;
    match qa::find(&state.pool, id).await? {
        Some(row) if row.user_id == user.id && row.status == "pending" => {
            // `ask` answers from the event; the view may not have it yet (read your writes).
            crate::fresh::current(&state, "qa", "QaSession", row.session_id).await?;
            let row = qa::find(&state.pool, id).await?.unwrap_or(row);
            Ok(Json(row.into()))
        }
        Some(row) if row.user_id == user.id => Ok(Json(row.into())),
        _ => Err(ApiError::NotFound("no such question".into())),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConversationPage {
    pub session_id: Uuid,
    /// Oldest first.
    pub items: Vec<QuestionDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[param(minimum = 1)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
}

/// One of your conversations, oldest question first (a transcript).
#[utoipa::path(get, path = "/api/qa/history/{session_id}", tag = "qa", security(("bearer" = [])),
    params(("session_id" = Uuid, Path, description = "conversation id"), PageQuery),
    responses((status = 200, body = ConversationPage), (status = 404, body = crate::ErrorBody),
    (status = 422, body = crate::ErrorBody)))]
pub(crate) async fn conversation(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(session_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ConversationPage>, ApiError> {
    user.require(Permission::AskQuestions)?;
    let (page, page_size) = page_window(query.page, query.page_size)?;
    crate::fresh::current(&state, "qa", "QaSession", session_id).await?;
    let (rows, total) = qa::conversation(&state.pool, user.id, session_id, page, page_size).await?;
    if total == 0 {
        return Err(ApiError::NotFound("no such conversation".into()));
    }
    let items = rows.into_iter().map(QuestionDto::from).collect();
    Ok(Json(ConversationPage { session_id, items, total, page, page_size }))
}

/// Deletes history: a question id deletes that question and its answer; a conversation id deletes every
/// question asked in it so far. Either leaves the context of later questions. The audit log keeps the
/// original events.
#[utoipa::path(delete, path = "/api/qa/history/{id}", tag = "qa", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "a question id or a conversation id")),
    responses((status = 204, description = "deleted"), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn delete_history(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Permission::AskQuestions)?;
    let by = user.actor();
    let meta = CommandMetadata::new(Some(user.id), correlation);
    match qa::find(&state.pool, id).await? {
        Some(row) if row.user_id == user.id => {
            state.commands.execute(row.session_id, QaCommand::DeleteQuestion { by, question_id: id }, &meta).await?
        }
        Some(_) => return Err(ApiError::NotFound("no such question or conversation".into())),
        None => {
            state.commands.execute(id, QaCommand::ClearHistory { by }, &meta).await.map_err(
                |e| match ApiError::from(e) {
                    ApiError::NotFound(_) => ApiError::NotFound("no such question or conversation".into()),
                    other => other,
                },
            )?
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What deleting a whole history did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryDeleted {
    /// Conversations cleared (their questions deleted and their text erased).
    pub conversations: usize,
}

/// Clears every conversation of `owner` that holds questions, as `by` (the owner, or an admin for them).
pub(crate) async fn clear_all(
    state: &AppState,
    owner: Uuid,
    by: Actor,
    meta: &CommandMetadata,
) -> Result<HistoryDeleted, ApiError> {
    let sessions = qa::sessions_of(&state.pool, owner).await?;
    for session in &sessions {
        let command =
            if by.id == owner { QaCommand::ClearHistory { by } } else { QaCommand::ClearHistoryForOwner { by } };
        state.commands.execute(*session, command, meta).await?;
    }
    Ok(HistoryDeleted { conversations: sessions.len() })
}

/// Deletes the caller's whole history: every conversation is cleared as `DELETE /api/qa/history/{id}` clears
/// one (the text erased, the audit log keeps the events). The conversations can go on afterwards, afresh.
#[utoipa::path(delete, path = "/api/qa/history", tag = "qa", security(("bearer" = [])),
    responses((status = 200, body = HistoryDeleted)))]
pub(crate) async fn delete_all_history(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
) -> Result<Json<HistoryDeleted>, ApiError> {
    user.require(Permission::AskQuestions)?;
    let by = user.actor();
    let meta = CommandMetadata::new(Some(user.id), correlation);
    Ok(Json(clear_all(&state, user.id, by, &meta).await?))
}
