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
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// One chat completion with `engine` (blocking).
fn answer(
    engine: &Engine,
    context: &[Turn],
    question: &str,
    params: AnswerParams,
    seed: u64,
) -> Result<Answer, String> {
    let started = Instant::now();
    let mut messages = Vec::new();
    for turn in context {
        messages.push(ChatMessage::new("user", turn.question.clone()));
        messages.push(ChatMessage::new("assistant", turn.answer.clone()));
    }
    messages.push(ChatMessage::new("user", question.to_owned()));
    let request = ChatRequest {
        messages,
        params: GenerationParams {
            max_new_tokens: params.max_new_tokens as usize,
            temperature: params.temperature,
            seed,
            ..GenerationParams::default()
        },
    };
    let generation = engine.generate(&request, &mut |_| {}).map_err(|e| e.to_string())?;
    Ok(Answer {
        answer: generation.text.trim().to_owned(),
        response_ms: started.elapsed().as_millis() as u64,
        prompt_tokens: generation.stats.prompt_tokens as u32,
        completion_tokens: generation.stats.completion_tokens as u32,
        finish_reason: match generation.finish_reason {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
        .to_owned(),
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
            let params = AnswerParams { max_new_tokens: 64, temperature: 0.0 };
            let mut report = Vec::new();
            let mut total = Score::default();
            for case in &cases {
                let got = answer(&engine, &[], &case.question, params, 0)?;
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
        let (session_id, question_id, model_id, question, params, context) = match event.event() {
            Ok((
                Event::QaSession(QaEvent::QuestionAsked {
                    session_id,
                    question_id,
                    model_id,
                    question,
                    params,
                    context,
                    ..
                }),
                _,
            )) => (session_id, question_id, model_id, question, params, context),
            Ok(_) => return Processed::AlreadyApplied,
            Err(_) => return Processed::Terminated,
        };
        let meta = CommandMetadata::system(event.message_id());
        let command = match self.answer(model_id, question_id, question, params, context).await {
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

    async fn answer(
        &self,
        model_id: Uuid,
        question_id: Uuid,
        question: String,
        params: AnswerParams,
        context: Vec<Turn>,
    ) -> Result<Answer, (&'static str, String)> {
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
        let key = self.cache.key(model_id, &question, params.max_new_tokens);
        let cacheable = context.is_empty() && params.temperature == 0.0;
        if cacheable {
            if let Some(hit) = self.cache.get(self.commands.pool(), &key).await {
                return Ok(Answer { cached: true, response_ms: 0, ..hit });
            }
        }
        let engines = self.engines.clone();
        let seed = question_id.as_u64_pair().0;
        let result = tokio::task::spawn_blocking(move || {
            let engine = engines.get(model_id, &onnx).map_err(|e| ("model_unavailable", e))?;
            answer(&engine, &context, &question, params, seed).map_err(|e| ("generation_failed", e))
        })
        .await
        .map_err(|e| ("generation_failed", e.to_string()))??;
        if cacheable {
            self.cache.put(&key, &result, question_id).await;
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
