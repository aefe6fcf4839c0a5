//! Serving: the loaded models (ONNX Runtime engines, loaded on first use and shared), the model worker
//! (exports a registered model to ONNX; answers a model test) and the QA worker (answers questions).
//!
//! Both are durable JetStream consumers. Generation is CPU (or GPU) work and runs on blocking threads.
//! Answers to questions without earlier turns, decoded greedily, are cached per model (the same question
//! gets the same answer; see [`AnswerCache`]), marked `cached` in the event.

use crate::answer_cache::AnswerCache;
use crate::consumer::{consume, Fetch, WorkerConsumer};
use crate::{EventBus, Processed};
use bonsai_commands::{CommandBus, CommandError, CommandMetadata};
use bonsai_domain::model::{ModelCommand, ModelEvent, ModelSource, ModelStatus, TestCase};
use bonsai_domain::qa::{Answer, AnswerParams, QaCommand, QaEvent, Turn};
use bonsai_domain::{AggregateKind, Event};
use bonsai_infra::Cache;
use bonsai_infra::LocalModels;
use bonsai_ml::engine::{ChatMessage, ChatRequest, Engine, EngineOptions, FinishReason, GenerationParams};
use bonsai_projections::StoredEvent;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Models one node keeps loaded at most; past that the least used is dropped (and loaded again when asked).
const MAX_LOADED_MODELS: u64 = 64;

/// Loaded engines by model id. Cheap to clone.
#[derive(Clone)]
pub struct Engines {
    loaded: Cache<Uuid, Arc<Engine>>,
    /// Intra-op threads per ONNX Runtime session (0: one per core).
    threads: usize,
    /// Sessions per model: answers generated at once.
    sessions: usize,
}

impl Default for Engines {
    fn default() -> Self {
        Self::new(0, 2)
    }
}

impl Engines {
    /// Engines whose sessions use `threads` intra-op threads each (0: one per core), `sessions` per model
    /// (at least 1).
    pub fn new(threads: usize, sessions: usize) -> Self {
        Self { loaded: Cache::new("engines", MAX_LOADED_MODELS, None), threads, sessions: sessions.max(1) }
    }

    /// The engine of model `id` from its export folder, loading it once (blocking: call it off the runtime).
    fn get(&self, id: Uuid, dir: &Path) -> Result<Arc<Engine>, String> {
        let options = EngineOptions { sessions: self.sessions, threads: self.threads, ..EngineOptions::default() };
        self.loaded.try_get_with(id, || Engine::load(dir, options)).map_err(|e| e.to_string())
    }

    /// Forgets model `id`'s engine (undeployed: its memory is given back once no answer in progress
    /// holds it).
    pub fn unload(&self, id: Uuid) {
        self.loaded.remove(&id);
    }

    /// How many models this node has loaded.
    pub fn loaded(&self) -> usize {
        self.loaded.len() as usize
    }
}

/// What a question asks of the engine, as its event carries it.
struct Prompt<'a> {
    system: Option<&'a str>,
    context: &'a [Turn],
    question: &'a str,
}

/// Leaves out the answer's leading and trailing white space from the pieces sent (trailing white space is held
/// back until something follows it), so the pieces add up to the answer as stored.
#[derive(Default)]
struct Trimmed {
    text: String,
    sent: usize,
}

impl Trimmed {
    /// Adds a decoded piece; the part now safe to send.
    fn push(&mut self, piece: &str) -> &str {
        self.text.push_str(piece);
        let lead = self.text.len() - self.text.trim_start().len();
        let start = self.sent.max(lead);
        self.sent = self.text.trim_end().len().max(start);
        &self.text[start..self.sent]
    }

    /// The answer: what was sent.
    fn answer(&self) -> &str {
        self.text[..self.sent].trim_start()
    }
}

/// One chat completion with `engine` (blocking): its text sent through `on_piece` as it is decoded, ended by a
/// stop text of `params` (finish reason `stop`, cut by the engine) or, before the next step, by `cancelled`
/// (`cancelled`).
fn answer(
    engine: &Engine,
    prompt: Prompt<'_>,
    params: &AnswerParams,
    seed: u64,
    on_piece: &mut dyn FnMut(&str),
    cancelled: &AtomicBool,
) -> Result<Answer, String> {
    let started = Instant::now();
    let mut messages = Vec::new();
    if let Some(system) = prompt.system {
        messages.push(ChatMessage::new("system", system.to_owned()));
    }
    for turn in prompt.context {
        messages.push(ChatMessage::new("user", turn.question.clone()));
        messages.push(ChatMessage::new("assistant", turn.answer.clone()));
    }
    messages.push(ChatMessage::new("user", prompt.question.to_owned()));
    let request = ChatRequest {
        messages,
        params: GenerationParams {
            max_new_tokens: params.max_new_tokens as usize,
            temperature: params.temperature,
            top_p: params.top_p.unwrap_or(1.0),
            seed: params.seed.unwrap_or(seed),
            // The engine cuts the text before a stop text and never streams any of it.
            stop: params.stop.clone(),
            ..GenerationParams::default()
        },
    };
    let mut trimmed = Trimmed::default();
    let generation = engine
        .generate_until(
            &request,
            &mut |piece| {
                let safe = trimmed.push(piece);
                if !safe.is_empty() {
                    on_piece(safe);
                }
            },
            &|| cancelled.load(Ordering::Relaxed),
        )
        .map_err(|e| e.to_string())?;
    let finish_reason = match generation.finish_reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    };
    Ok(Answer {
        answer: trimmed.answer().to_owned(),
        response_ms: started.elapsed().as_millis() as u64,
        prompt_tokens: generation.stats.prompt_tokens as u32,
        completion_tokens: generation.stats.completion_tokens as u32,
        finish_reason: finish_reason.to_owned(),
        cached: false,
    })
}

/// Lower case, single spaces, no trailing punctuation: how test answers are compared.
fn normalise(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").to_lowercase().trim_end_matches(['.', '!', '?']).to_owned()
}

/// Whether `answer` gives `expected` (equal, or containing it, once normalised).
pub fn matches_expected(answer: &str, expected: &str) -> bool {
    let (answer, expected) = (normalise(answer), normalise(expected));
    !expected.is_empty() && (answer == expected || answer.contains(&expected))
}

/// How well one answer (or, summed, a test) gives the expected text: exact match and containment once
/// normalised ([`matches_expected`]), and the token F1 of SQuAD (the overlap of lower-case words, punctuation
/// aside, as the harmonic mean of precision and recall).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Score {
    pub(crate) exact_match: f64,
    pub(crate) contains: f64,
    pub(crate) token_f1: f64,
}

impl Score {
    pub(crate) fn of(answer: &str, expected: &str) -> Score {
        let exact = !normalise(expected).is_empty() && normalise(answer) == normalise(expected);
        Score {
            exact_match: f64::from(u8::from(exact)),
            contains: f64::from(u8::from(matches_expected(answer, expected))),
            token_f1: token_f1(answer, expected),
        }
    }

    fn add(&mut self, other: &Score) {
        self.exact_match += other.exact_match;
        self.contains += other.contains;
        self.token_f1 += other.token_f1;
    }
}

/// The words of `text` for token F1: lower case, split on anything but letters and digits.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// SQuAD's token F1 of `answer` against `expected` (0 when either has no words).
pub(crate) fn token_f1(answer: &str, expected: &str) -> f64 {
    let (got, want) = (words(answer), words(expected));
    if got.is_empty() || want.is_empty() {
        return 0.0;
    }
    let mut left: HashMap<&str, usize> = HashMap::new();
    for w in &want {
        *left.entry(w.as_str()).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &got {
        if let Some(n) = left.get_mut(w.as_str()).filter(|n| **n > 0) {
            *n -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let (precision, recall) = (common as f64 / got.len() as f64, common as f64 / want.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

fn retried(error: CommandError) -> Processed {
    tracing::warn!(%error, "recording failed, will retry");
    Processed::Retried
}

/// Exports registered models and runs model tests.
pub struct ModelWorker {
    bus: EventBus,
    commands: CommandBus,
    models: LocalModels,
    data_dir: PathBuf,
    engines: Engines,
}

impl ModelWorker {
    pub fn new(bus: EventBus, commands: CommandBus, models: LocalModels, data_dir: PathBuf, engines: Engines) -> Self {
        Self { bus, commands, models, data_dir, engines }
    }

    /// Where model `id`'s ONNX export goes.
    pub fn export_dir(data_dir: &Path, id: Uuid) -> PathBuf {
        data_dir.join("serving").join(id.to_string()).join("onnx")
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let name = self.bus.durable_name("worker_models");
        let subject = self.bus.subjects.events_of(AggregateKind::Model);
        // One export or test at a time: each uses every core.
        let spec = WorkerConsumer {
            name,
            subjects: vec![subject],
            ack_wait: Duration::from_secs(600),
            concurrency: 1,
            max_in_flight: 64,
            fetch: Fetch::Stream,
        };
        consume(&self.bus, self.commands.pool(), spec, &shutdown, |event, _| self.handle(event)).await
    }

    #[tracing::instrument(skip_all, fields(model_id = %event.aggregate_id, sequence = event.sequence))]
    pub async fn handle(&self, event: StoredEvent) -> Processed {
        let Ok((Event::Model(decoded), id)) = event.event() else { return Processed::Terminated };
        let meta = CommandMetadata::system(event.message_id());
        let outcome = match decoded {
            ModelEvent::ModelRegistered { source, .. } => self.export(id, source, &meta).await,
            ModelEvent::ModelTestRequested { cases, test_id } => self.test(id, test_id, cases, &meta).await,
            ModelEvent::ModelUndeployed | ModelEvent::ModelRolledBack { .. } => {
                self.engines.unload(id);
                Ok(())
            }
            _ => Ok(()),
        };
        outcome.map_or_else(retried, |()| Processed::Applied)
    }

    async fn export(&self, id: Uuid, source: ModelSource, meta: &CommandMetadata) -> Result<(), CommandError> {
        if self.commands.load::<bonsai_domain::model::Model>(id).await?.status != ModelStatus::Exporting {
            return Ok(());
        }
        let weights = match &source {
            ModelSource::Installed { model_id } => self.models.model_dir(model_id).map_err(|e| e.to_string()),
            ModelSource::TrainingTask { merged_path, .. } => {
                let dir = self.data_dir.join(merged_path);
                if dir.join("config.json").is_file() {
                    Ok(dir)
                } else {
                    Err(format!("the merged model {merged_path} is missing"))
                }
            }
        };
        let out = Self::export_dir(&self.data_dir, id);
        let exported = match weights {
            Err(message) => Err(("weights_missing", message)),
            Ok(weights) => {
                let out = out.clone();
                // Reading and writing hundreds of MB of weights: a blocking thread.
                tokio::task::spawn_blocking(move || bonsai_ml::onnx::export_dir(&weights, &out))
                    .await
                    .map_err(|e| ("export_failed", e.to_string()))
                    .and_then(|r| r.map_err(|e| ("export_failed", e.to_string())))
            }
        };
        let command = match exported {
            Ok(report) => {
                let onnx_path = out.strip_prefix(&self.data_dir).unwrap_or(&out).display().to_string();
                tracing::info!(secs = report.seconds, "model exported");
                ModelCommand::RecordExport { onnx_path, export_secs: report.seconds }
            }
            Err((code, message)) => {
                tracing::warn!(code, %message, "model export failed");
                ModelCommand::FailExport { code: code.to_owned(), message }
            }
        };
        self.commands.execute_and_get(id, command, meta).await.map(drop)
    }

    async fn test(
        &self,
        id: Uuid,
        test_id: Option<Uuid>,
        cases: Vec<TestCase>,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let model = self.commands.load::<bonsai_domain::model::Model>(id).await?;
        // Each test is scored once: a named one while it is pending, an unnamed (older) one while any is.
        let pending = test_id.map_or(model.test_pending, |t| model.pending_tests.contains(&t));
        let (Some(onnx), true) = (model.onnx_path.clone(), pending) else { return Ok(()) };
        let (engines, dir) = (self.engines.clone(), self.data_dir.join(onnx));
        let scored = tokio::task::spawn_blocking(move || -> Result<(f64, serde_json::Value), String> {
            let engine = engines.get(id, &dir)?;
            let params = AnswerParams { max_new_tokens: 64, ..AnswerParams::default() };
            let mut report = Vec::new();
            let mut total = Score::default();
            for case in &cases {
                let prompt = Prompt { system: None, context: &[], question: &case.question };
                let got = answer(&engine, prompt, &params, 0, &mut |_| {}, &AtomicBool::new(false))?;
                let score = Score::of(&got.answer, &case.expected);
                total.add(&score);
                report.push(json!({"question": case.question, "expected": case.expected, "answer": got.answer,
                    "correct": score.contains == 1.0, "exact_match": score.exact_match == 1.0,
                    "contains": score.contains == 1.0, "token_f1": score.token_f1,
                    "response_ms": got.response_ms}));
            }
            let n = cases.len().max(1) as f64;
            let right = total.contains as usize;
            let totals = json!({"cases": cases.len(), "exact_match": total.exact_match / n,
                "contains": total.contains / n, "token_f1": total.token_f1 / n});
            Ok((total.contains / n, json!({"test_id": test_id, "cases": report, "correct": right, "totals": totals})))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let (accuracy, report) = match scored {
            Ok(scored) => scored,
            Err(message) => (0.0, json!({"test_id": test_id, "error": message})),
        };
        self.commands.execute_and_get(id, ModelCommand::RecordTest { accuracy, report, test_id }, meta).await.map(drop)
    }
}

/// Answers questions with deployed models.
/// A question as its `QuestionAsked` event asks it.
struct Asked {
    model_id: Uuid,
    question_id: Uuid,
    question: String,
    params: AnswerParams,
    system: Option<String>,
    context: Vec<Turn>,
}

pub struct QaWorker {
    bus: EventBus,
    commands: CommandBus,
    data_dir: PathBuf,
    engines: Engines,
    cache: AnswerCache,
}

impl QaWorker {
    pub fn new(bus: EventBus, commands: CommandBus, data_dir: PathBuf, engines: Engines, cache: AnswerCache) -> Self {
        Self { bus, commands, data_dir, engines, cache }
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let name = self.bus.durable_name("worker_qa");
        let subject = self.bus.subjects.events_of(AggregateKind::QaSession);
        // As many answers at once as the engines have sessions.
        // Each node pulls only what it answers at once, so more nodes answer more questions at a time.
        let spec = WorkerConsumer {
            name,
            subjects: vec![subject],
            ack_wait: Duration::from_secs(120),
            concurrency: 2,
            max_in_flight: 256,
            fetch: Fetch::Stream,
        };
        consume(&self.bus, self.commands.pool(), spec, &shutdown, |event, _| self.handle(event)).await
    }

    #[tracing::instrument(skip_all, fields(session_id = %event.aggregate_id, sequence = event.sequence))]
    pub async fn handle(&self, event: StoredEvent) -> Processed {
        let (session_id, asked) = match event.event() {
            Ok((
                Event::QaSession(QaEvent::QuestionAsked {
                    session_id,
                    question_id,
                    model_id,
                    question,
                    params,
                    system,
                    context,
                    ..
                }),
                _,
            )) => (session_id, Asked { model_id, question_id, question, params, system, context }),
            Ok(_) => return Processed::AlreadyApplied,
            Err(_) => return Processed::Terminated,
        };
        let meta = CommandMetadata::system(event.message_id());
        let question_id = asked.question_id;
        let command = match self.answer(asked).await {
            Ok(answer) => QaCommand::RecordAnswer { question_id, answer },
            Err((code, message)) => {
                tracing::warn!(code, %message, "question not answered");
                QaCommand::RecordFailure { question_id, code: code.to_owned(), message }
            }
        };
        match self.commands.execute(session_id, command, &meta).await {
            Ok(()) => Processed::Applied,
            Err(error) => retried(error),
        }
    }

    /// Answers a question, publishing its text on the question's token subject as it is generated (core NATS,
    /// for the node that holds the asking client) and stopping when that node publishes on the question's
    /// cancel subject (the client went away).
    async fn answer(&self, asked: Asked) -> Result<Answer, (&'static str, String)> {
        let Asked { model_id, question_id, question, params, system, context } = asked;
        let unavailable = |m: &str| ("model_unavailable", m.to_owned());
        let model = self
            .commands
            .load::<bonsai_domain::model::Model>(model_id)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        let onnx = match (&model.onnx_path, model.deployed, model.status) {
            (Some(onnx), true, ModelStatus::Ready) => self.data_dir.join(onnx),
            _ => return Err(unavailable("the model is not deployed")),
        };
        let client = self.bus.js.client();
        let tokens = self.bus.subjects.question_tokens(question_id);
        let key = self.cache.key(model_id, &question, params.max_new_tokens);
        let cacheable = context.is_empty() && system.is_none() && params.temperature == 0.0 && params.stop.is_empty();
        if cacheable {
            if let Some(hit) = self.cache.get(self.commands.pool(), &key).await {
                let _ = client.publish(tokens, json!({ "delta": hit.answer }).to_string().into()).await;
                return Ok(Answer { cached: true, response_ms: 0, ..hit });
            }
        }
        // The asking node says when its client went away.
        let cancelled = Arc::new(AtomicBool::new(false));
        let listener = match client.subscribe(self.bus.subjects.question_cancel(question_id)).await {
            Ok(mut cancels) => {
                let flag = Arc::clone(&cancelled);
                Some(tokio::spawn(async move {
                    if cancels.next().await.is_some() {
                        flag.store(true, Ordering::Relaxed);
                    }
                }))
            }
            Err(error) => {
                tracing::warn!(%error, "no cancel subscription; the answer runs to its end");
                None
            }
        };
        let (pieces, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
        let publisher = {
            let client = client.clone();
            tokio::spawn(async move {
                while let Some(piece) = receiver.recv().await {
                    let _ = client.publish(tokens.clone(), json!({ "delta": piece }).to_string().into()).await;
                }
                let _ = client.flush().await;
            })
        };
        let engines = self.engines.clone();
        let seed = question_id.as_u64_pair().0;
        let flag = Arc::clone(&cancelled);
        let result = tokio::task::spawn_blocking(move || {
            let engine = engines.get(model_id, &onnx).map_err(|e| ("model_unavailable", e))?;
            let prompt = Prompt { system: system.as_deref(), context: &context, question: &question };
            let mut send = |piece: &str| drop(pieces.send(piece.to_owned()));
            answer(&engine, prompt, &params, seed, &mut send, &flag).map_err(|e| ("generation_failed", e))
        })
        .await
        .map_err(|e| ("generation_failed", e.to_string()));
        // Every piece is out before the answer is recorded (its event reaches the client after them).
        let _ = publisher.await;
        if let Some(listener) = listener {
            listener.abort();
        }
        let result = result??;
        if cacheable && result.finish_reason != "cancelled" {
            self.cache.put(&key, &result, question_id).await;
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trimmed(pieces: &[&str]) -> (Vec<String>, String) {
        let mut t = Trimmed::default();
        let sent: Vec<String> = pieces.iter().map(|p| t.push(p).to_owned()).filter(|p| !p.is_empty()).collect();
        (sent, t.answer().to_owned())
    }

    #[test]
    fn pieces_sent_add_up_to_the_answer_without_its_outer_white_space() {
        let (sent, answer) = trimmed(&["\n", " Paris", " is", " the", " capital ", "\n"]);
        assert_eq!((sent.concat(), answer.as_str()), ("Paris is the capital".to_owned(), "Paris is the capital"));
        let (sent, answer) = trimmed(&["Hé", "llo ", "wörld \n"]);
        assert_eq!((sent.concat(), answer.as_str()), ("Héllo wörld".to_owned(), "Héllo wörld"));
        assert!(sent.len() >= 2, "streamed as it came: {sent:?}");
        assert_eq!(trimmed(&["  ", "\n"]), (Vec::new(), String::new()), "only white space: nothing");
    }

    #[test]
    fn answers_match_when_they_give_the_expected_text() {
        assert!(matches_expected("Paris.", "paris"));
        assert!(matches_expected("The capital is  Paris!", "Paris"));
        assert!(!matches_expected("Lyon", "Paris"));
        assert!(!matches_expected("anything", "  "));
    }

    #[test]
    fn a_test_scores_exact_match_containment_and_token_f1_apart() {
        let exact = Score::of("Paris.", "paris");
        assert_eq!((exact.exact_match, exact.contains, exact.token_f1), (1.0, 1.0, 1.0));
        let inside = Score::of("The capital is Paris", "Paris");
        assert_eq!((inside.exact_match, inside.contains), (0.0, 1.0));
        // 1 common word of 4 answered and 1 expected: precision 1/4, recall 1, F1 0.4.
        assert!((inside.token_f1 - 0.4).abs() < 1e-9);
        let partly = Score::of("a platform for models", "a platform for training models");
        assert_eq!((partly.exact_match, partly.contains), (0.0, 0.0));
        assert!((partly.token_f1 - 2.0 * 1.0 * 0.8 / 1.8).abs() < 1e-9);
        assert_eq!(Score::of("Lyon", "Paris").token_f1, 0.0);
    }
}
