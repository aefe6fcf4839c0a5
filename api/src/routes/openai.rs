//! The OpenAI-compatible door (`/v1`): the shapes of OpenAI's API, so the official clients, LangChain, chat
//! front-ends and IDE plug-ins talk to Bonsai as they are. Every call is still a Bonsai command: a chat
//! completion is `AskQuestion` (a conversation of its own, the caller's `messages` as its context), recorded in
//! the caller's question history like `POST /api/qa/ask`, with the same events, erasure and audit. Errors
//! under `/v1` have OpenAI's shape (`ApiError::openai_response`). Files and fine-tuning jobs are in
//! `fine_tuning.rs`.

use super::qa::{self, Ask, Streamed};
use crate::auth::AuthUser;
use crate::extract::Correlation;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bonsai_domain::model::ModelStatus;
use bonsai_domain::qa::{AnswerParams, Conversation, Turn, MAX_NEW_TOKENS};
use bonsai_domain::Permission;
use bonsai_projections::models::{self, ModelRow};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// The longest a chat completion waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// A `/v1` result: errors in OpenAI's shape.
pub(crate) struct V1(pub(crate) Result<Response, ApiError>);

impl IntoResponse for V1 {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(response) => response,
            Err(error) => error.openai_response(),
        }
    }
}

/// A 400 `invalid_request_error` naming the request field `param`.
pub(crate) fn invalid(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::BadField { code: "invalid_request_error", message: message.into(), field: param.to_owned() }
}

/// The JSON body as OpenAI's request `T` (`what` names it in the 400 `invalid_request_error`).
pub(crate) fn request_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let message = format!("the request body is not a {what}: {e}");
        ApiError::BadRequest { code: "invalid_request_error", message }
    })
}

/// The model ids a deployed version answers to: `<name>` (the deployed version of the name) and
/// `<name>:<version>`.
fn ids_of(row: &ModelRow) -> [String; 2] {
    [row.name.clone(), format!("{}:{}", row.name, row.model_version)]
}

/// `GET /v1/models`: the deployed models the caller may ask, each as `<name>` and `<name>:<version>`.
pub(crate) async fn list_models(State(state): State<AppState>, user: Result<AuthUser, ApiError>) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::AskQuestions)?;
        let mut data = Vec::new();
        let (rows, _) = models::list(&state.pool, true, Some("ready"), None, 1, 1000).await?;
        for row in rows {
            for id in ids_of(&row) {
                data.push(
                    json!({"id": id, "object": "model", "created": row.created_at.timestamp(), "owned_by": "bonsai"}),
                );
            }
        }
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await)
}

/// The model `name` (`<name>`, `<name>:<version>`, an id or an alias) names, deployed and ready.
async fn resolve(state: &AppState, name: &str) -> Result<Uuid, ApiError> {
    let not_found = || ApiError::NotFound(format!("The model `{name}` does not exist or is not deployed"));
    // A name with colons of its own (a fine-tuning job's `ft:<base>:<suffix>:<id>`) is first taken whole.
    if name.contains(':') {
        let (rows, _) = models::list(&state.pool, true, Some("ready"), Some(name), 1, 1).await?;
        if let Some(row) = rows.first() {
            return Ok(row.id);
        }
    }
    // `<name>:<version>` or `<name>`: only the versions of that name are read.
    let (named, version) = match name.rsplit_once(':') {
        Some((named, version)) if version.parse::<i32>().is_ok() => (named, version.parse::<i32>().ok()),
        _ => (name, None),
    };
    let (rows, _) = models::list(&state.pool, true, Some("ready"), Some(named), 1, 100).await?;
    if let Some(row) = rows.iter().find(|row| version.is_none_or(|v| row.model_version == v)) {
        return Ok(row.id);
    }
    // An id or an alias, as `POST /api/qa/ask` takes them.
    let id = match name.parse::<Uuid>() {
        Ok(id) => id,
        Err(_) => state.commands.alias_target(name).await?.ok_or_else(not_found)?,
    };
    let model = state.commands.load::<bonsai_domain::model::Model>(id).await?;
    if model.deployed && model.status == ModelStatus::Ready {
        Ok(id)
    } else {
        Err(not_found())
    }
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Value,
}

#[derive(Debug, Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// OpenAI's chat completion request (the fields Bonsai reads; others are accepted and ignored, as OpenAI's
/// clients send several by default).
#[derive(Debug, Deserialize)]
struct ChatCompletionRequest {
    model: String,
    messages: Vec<Message>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<Value>,
    seed: Option<i64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
}

/// A message's text: a string, or the text parts of a content array.
fn text_of(content: &Value, param: &str) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match (part["type"].as_str(), part["text"].as_str()) {
                (Some("text"), Some(text)) => Ok(text.to_owned()),
                _ => Err(invalid("only text content parts are supported", param)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("")),
        Value::Null => Ok(String::new()),
        _ => Err(invalid("content must be a string or an array of text parts", param)),
    }
}

/// `messages` as Bonsai asks them: the system message, the earlier turns, and the question (the last user
/// message).
fn conversation(messages: &[Message]) -> Result<(Conversation, String), ApiError> {
    let Some((last, earlier)) = messages.split_last() else {
        return Err(invalid("messages must not be empty", "messages"));
    };
    if last.role != "user" {
        return Err(invalid("the last message must be the user's", "messages"));
    }
    let question = text_of(&last.content, "messages")?;
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    let mut asked: Option<String> = None;
    for (i, message) in earlier.iter().enumerate() {
        let param = format!("messages[{i}]");
        let text = text_of(&message.content, &param)?;
        match message.role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => {
                if let Some(unanswered) = asked.replace(text) {
                    // Two user messages in a row: the first stays a turn without an answer.
                    turns.push(Turn { question_id: None, question: unanswered, answer: String::new() });
                }
            }
            "assistant" => {
                let question = asked.take().unwrap_or_default();
                turns.push(Turn { question_id: None, question, answer: text });
            }
            other => return Err(invalid(format!("role `{other}` is not supported"), &format!("{param}.role"))),
        }
    }
    if let Some(unanswered) = asked {
        turns.push(Turn { question_id: None, question: unanswered, answer: String::new() });
    }
    // A turn needs a question: an assistant message that opens the conversation keeps a placeholder.
    for turn in &mut turns {
        if turn.question.trim().is_empty() {
            turn.question = "(continue)".into();
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n"));
    Ok((Conversation { system, turns }, question))
}

/// The decoding settings of a request.
fn params(request: &ChatCompletionRequest) -> Result<AnswerParams, ApiError> {
    if request.n.is_some_and(|n| n != 1) {
        return Err(invalid("only n = 1 is supported", "n"));
    }
    let defaults = AnswerParams::default();
    let max = request.max_completion_tokens.or(request.max_tokens).unwrap_or(defaults.max_new_tokens);
    if !(1..=MAX_NEW_TOKENS).contains(&max) {
        let param = if request.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
        return Err(invalid(format!("must be 1 to {MAX_NEW_TOKENS}"), param));
    }
    let stop = match &request.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| invalid("stop must be strings", "stop")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("stop must be a string or an array of strings", "stop")),
    };
    Ok(AnswerParams {
        max_new_tokens: max,
        temperature: request.temperature.unwrap_or(1.0).clamp(0.0, 2.0),
        top_p: request.top_p,
        seed: request.seed.map(|s| s as u64),
        stop,
    })
}

/// OpenAI's `finish_reason` of a Bonsai answer (`cancelled` only reaches a client that has gone).
fn finish_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length") => "length",
        _ => "stop",
    }
}

fn usage(dto: &qa::QuestionDto) -> Value {
    let (prompt, completion) = (dto.prompt_tokens.unwrap_or(0), dto.completion_tokens.unwrap_or(0));
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Correlation(correlation): Correlation,
    body: Bytes,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::AskQuestions)?;
        let request: ChatCompletionRequest = request_body(&body, "chat completion request")?;
        let params = params(&request)?;
        let (conversation, question) = conversation(&request.messages)?;
        state.limits.question(user.id).await.map_err(ApiError::rate_limited)?;
        let model_id = resolve(&state, &request.model).await.map_err(|e| match e {
            ApiError::NotFound(message) => {
                ApiError::MissingField { code: "model_not_found", message, field: "model".into() }
            }
            other => other,
        })?;
        let model = request.model.clone();
        let ask = Ask { model_id, session_id: None, question, params, conversation: Some(conversation) };
        let mut asking = qa::start(&state, &user, correlation, ask).await?;
        let id = format!("chatcmpl-{}", asking.question_id.simple());
        let created = asking.asked_at.timestamp();
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        if !request.stream {
            let dto = asking
                .decision(&state, deadline)
                .await
                .ok_or_else(|| ApiError::Unavailable("no answer within the time limit".into()))?;
            if let Some(error) = &dto.error {
                let message = error["message"].as_str().unwrap_or("the model could not answer").to_owned();
                return Err(ApiError::DependencyUnavailable { code: "model_unavailable", message });
            }
            let body = json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": dto.answer},
                    "logprobs": null, "finish_reason": finish_reason(dto.finish_reason.as_deref())}],
                "usage": usage(&dto),
            });
            return Ok(Json(body).into_response());
        }
        let include_usage = request.stream_options.unwrap_or_default().include_usage;
        let chunk = move |delta: Value, finish: Option<&str>| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        let data = |value: Value| Ok::<_, std::convert::Infallible>(SseEvent::default().data(value.to_string()));
        let first = chunk(json!({"role": "assistant", "content": ""}), None);
        let chunks = {
            let chunk = chunk.clone();
            asking.live(state, deadline).flat_map(move |item| {
                let events: Vec<Value> = match item {
                    Streamed::Delta(text) => vec![chunk(json!({"content": text}), None)],
                    Streamed::Done(dto) => {
                        let mut last = chunk(json!({}), Some(finish_reason(dto.finish_reason.as_deref())));
                        if let Some(error) = &dto.error {
                            last = json!({"error": {"message": error["message"], "type": "server_error",
                                "param": null, "code": error["code"]}});
                        }
                        let mut out = vec![last];
                        if include_usage {
                            let mut with_usage = chunk(json!({}), None);
                            with_usage["choices"] = json!([]);
                            with_usage["usage"] = usage(&dto);
                            out.push(with_usage);
                        }
                        out
                    }
                    Streamed::Pending(_) => vec![json!({"error": {"message": "no answer within the time limit",
                        "type": "server_error", "param": null, "code": "timeout"}})],
                };
                futures::stream::iter(events)
            })
        };
        let events = futures::stream::once(async move { first })
            .chain(chunks)
            .map(data)
            .chain(futures::stream::once(async { Ok(SseEvent::default().data("[DONE]")) }));
        Ok((StatusCode::OK, Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
            .into_response())
    }
    .await)
}
