//! Serving: the loaded models (ONNX Runtime engines, loaded on first use and shared), the model worker
//! (exports a registered model to ONNX; answers a model test) and the QA worker (answers questions).
//!
//! Both are durable JetStream consumers. A deployed model is served by a [`BatchEngine`] (continuous
//! batching: one copy of the weights, one shared decode step for every answer in progress, fair between
//! users), or, for exports without the fused attention op, by an [`Engine`] with one session per answer.
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
use bonsai_ml::engine::{
    BatchEngine, BatchLoad, BatchOptions, ChatMessage, ChatRequest, Engine, EngineError, EngineOptions, FinishReason,
    Generation, GenerationParams,
};
use bonsai_projections::StoredEvent;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Models one node keeps loaded at most; past that the least used is dropped (and loaded again when asked).
const MAX_LOADED_MODELS: u64 = 64;

/// A loaded model.
pub(crate) enum Served {
    /// Continuous batching: every answer in progress shares one decode step.
    Batch(Arc<BatchEngine>),
    /// An export without fused attention: one answer per session at a time.
    Single(Arc<Engine>),
}

/// Loaded engines by model id. Cheap to clone.
#[derive(Clone)]
pub struct Engines {
    loaded: Cache<Uuid, Arc<Served>>,
    /// Intra-op threads per ONNX Runtime session (0: one per core).
    threads: usize,
    /// Sessions per model served without batching: answers generated at once.
    sessions: usize,
    /// Rows of a batch engine's decode step: answers generated at once per model (0: no batching, every
    /// model served by `sessions` sessions).
    slots: usize,
    /// Tokens each row holds (0: the model's context, at most 2048).
    slot_tokens: usize,
}

impl Default for Engines {
    fn default() -> Self {
        Self::new(0, 2, 8)
    }
}

impl Engines {
    /// Engines whose sessions use `threads` intra-op threads each (0: one per core), with `slots` rows in each
    /// model's decode batch, or `sessions` sessions (at least 1) for exports that cannot batch and when `slots`
    /// is 0.
    pub fn new(threads: usize, sessions: usize, slots: usize) -> Self {
        Self {
            loaded: Cache::new("engines", MAX_LOADED_MODELS, None),
            threads,
            sessions: sessions.max(1),
            slots,
            slot_tokens: 0,
        }
    }

    /// With rows of `tokens` tokens (prompt and answer; 0: the model's context, at most 2048).
    pub fn with_slot_tokens(mut self, tokens: usize) -> Self {
        self.slot_tokens = tokens;
        self
    }

    /// The engine of model `id` from its export folder, loading it once (off the async runtime).
    async fn get(&self, id: Uuid, dir: PathBuf) -> Result<Arc<Served>, String> {
        let engines = self.clone();
        tokio::task::spawn_blocking(move || engines.loaded.try_get_with(id, || engines.load(&dir)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn load(&self, dir: &Path) -> Result<Arc<Served>, EngineError> {
        let options = BatchOptions {
            threads: self.threads,
            slots: self.slots,
            slot_tokens: self.slot_tokens,
            ..BatchOptions::default()
        };
        let batched = match self.slots {
            0 => Err(EngineError::NotBatchable("batching is off (no slots)".into())),
            _ => BatchEngine::load(dir, options),
        };
        match batched {
            Ok(engine) => Ok(Arc::new(Served::Batch(engine))),
            Err(EngineError::NotBatchable(reason)) => {
                tracing::info!(%reason, sessions = self.sessions, "served without batching");
                let options = EngineOptions { sessions: self.sessions, threads: self.threads, ..Default::default() };
                Ok(Arc::new(Served::Single(Engine::load(dir, options)?)))
            }
            Err(error) => Err(error),
        }
    }

    /// Forgets model `id`'s engine (undeployed: its memory is given back once no answer in progress
    /// holds it). A batch engine's thread is joined when it goes, so that happens on a blocking thread.
    pub fn unload(&self, id: Uuid) {
        if let Some(served) = self.loaded.remove(&id) {
            tokio::task::spawn_blocking(move || drop(served));
        }
    }

    /// How many models this node has loaded.
    pub fn loaded(&self) -> usize {
        self.loaded.len() as usize
    }

    /// Answers one model generates at once: what the QA consumer takes at a time.
    pub fn concurrency(&self) -> usize {
        if self.slots == 0 {
            self.sessions
        } else {
            self.slots.max(self.sessions)
        }
    }

    /// The batch engines' figures, summed over the loaded models: rows decoding and requests waiting now,
    /// decode steps and rows over their lives.
    pub fn batch_load(&self) -> BatchLoad {
        let mut sum = BatchLoad::default();
        for (_, served) in self.loaded.entries() {
            if let Served::Batch(engine) = served.as_ref() {
                let load = engine.load_now();
                sum.active += load.active;
                sum.waiting += load.waiting;
                sum.steps += load.steps;
                sum.rows += load.rows;
            }
        }
        sum
    }
}

/// What a question asks of the engine, as its event carries it.
struct Prompt<'a> {
    system: Option<&'a str>,
    context: &'a [Turn],
    question: &'a str,
}

impl Prompt<'_> {
    /// The chat request: the messages, and the question's decoding settings (`seed` unless it names one).
    fn request(&self, params: &AnswerParams, seed: u64) -> ChatRequest {
        let mut messages = Vec::new();
        if let Some(system) = self.system {
            messages.push(ChatMessage::new("system", system.to_owned()));
        }
        for turn in self.context {
            messages.push(ChatMessage::new("user", turn.question.clone()));
            messages.push(ChatMessage::new("assistant", turn.answer.clone()));
        }
        messages.push(ChatMessage::new("user", self.question.to_owned()));
        ChatRequest {
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
        }
    }
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

    /// Adds a piece and sends what is safe through `to` (when someone reads).
    fn forward(&mut self, piece: &str, to: Option<&UnboundedSender<String>>) {
        let safe = self.push(piece);
        if let (false, Some(to)) = (safe.is_empty(), to) {
            let _ = to.send(safe.to_owned());
        }
    }

    /// The answer: what was sent.
    fn answer(&self) -> &str {
        self.text[..self.sent].trim_start()
    }
}

/// One chat completion of `user` (the batch engine takes turns between users): its text sent through `pieces`
/// as it is decoded, ended by an end token, the length, a stop text of the request (finish reason `stop`, cut
/// by the engine) or `cancel` (`cancelled`, before the next decoding step, with what was generated so far).
async fn answer(
    served: Arc<Served>,
    user: String,
    request: ChatRequest,
    pieces: Option<UnboundedSender<String>>,
    cancel: CancellationToken,
) -> Result<Answer, String> {
    let started = Instant::now();
    let mut trimmed = Trimmed::default();
    let generation = match served.as_ref() {
        Served::Batch(engine) => {
            let mut handle = engine.submit(&user, &request).map_err(|e| e.to_string())?;
            let canceller = handle.canceller();
            loop {
                tokio::select! {
                    piece = handle.next_piece() => match piece {
                        Some(piece) => trimmed.forward(&piece.text, pieces.as_ref()),
                        None => break,
                    },
                    () = cancel.cancelled(), if !canceller.is_cancelled() => canceller.cancel(),
                }
            }
            match handle.finish().await {
                Ok(done) => done.generation,
                // Cancelled before it got a slot: nothing was generated.
                Err(EngineError::Cancelled) => Generation {
                    text: String::new(),
                    tokens: Vec::new(),
                    finish_reason: FinishReason::Cancelled,
                    stats: bonsai_ml::engine::GenerationStats {
                        prompt_tokens: engine.prompt_tokens(&request).map_or(0, |p| p.len()),
                        completion_tokens: 0,
                        time_to_first_token: started.elapsed(),
                        total_time: started.elapsed(),
                        tokens_per_second: 0.0,
                    },
                },
                Err(error) => return Err(error.to_string()),
            }
        }
        Served::Single(_) => {
            let served = Arc::clone(&served);
            let (generation, sent) = tokio::task::spawn_blocking(move || {
                let Served::Single(engine) = served.as_ref() else { unreachable!("matched above") };
                let mut trimmed = Trimmed::default();
                let generation =
                    engine.generate_until(&request, &mut |piece| trimmed.forward(piece, pieces.as_ref()), &|| {
                        cancel.is_cancelled()
                    });
                (generation, trimmed)
            })
            .await
            .map_err(|e| e.to_string())?;
            trimmed = sent;
            generation.map_err(|e| e.to_string())?
        }
    };
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
        let model = self.commands.load::<bonsai_domain::model::Model>(id).await?;
        if model.status != ModelStatus::Exporting {
            return Ok(());
        }
        // A checkpoint's adapter is merged into its base first, next to the export.
        let mut merge: Option<(PathBuf, PathBuf)> = None;
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
            ModelSource::TrainingCheckpoint { adapter_path, .. } => {
                let adapter = self.data_dir.join(adapter_path);
                match self.models.model_dir(&model.base_model_id) {
                    Err(e) => Err(e.to_string()),
                    Ok(_) if !adapter.is_dir() => Err(format!("the checkpoint's adapter {adapter_path} is missing")),
                    Ok(base) => {
                        let merged = Self::export_dir(&self.data_dir, id).with_file_name("merged");
                        merge = Some((base, adapter));
                        Ok(merged)
                    }
                }
            }
        };
        let out = Self::export_dir(&self.data_dir, id);
        let exported = match weights {
            Err(message) => Err(("weights_missing", message)),
            Ok(weights) => {
                let out = out.clone();
                // Reading and writing hundreds of MB of weights: a blocking thread.
                tokio::task::spawn_blocking(move || {
                    let Some((base, adapter)) = &merge else {
                        return bonsai_ml::onnx::export_dir(&weights, &out)
                            .map_err(|e| ("export_failed", e.to_string()));
                    };
                    bonsai_ml::train::merge_folders(base, adapter, &weights)
                        .map_err(|e| ("merge_failed", e.to_string()))?;
                    let exported = bonsai_ml::onnx::export_dir(&weights, &out);
                    // The merged weights were only the export's input: the model is served from its export (and
                    // the adapter it was merged from stays), so they would be a second full copy on disk.
                    if let Err(error) = std::fs::remove_dir_all(&weights) {
                        tracing::warn!(%error, dir = %weights.display(), "could not remove the merged weights");
                    }
                    exported.map_err(|e| ("export_failed", e.to_string()))
                })
                .await
                .map_err(|e| ("export_failed", e.to_string()))
                .and_then(|r| r)
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
        let scored = self.score(id, self.data_dir.join(onnx), test_id, &cases).await;
        let (accuracy, report) = match scored {
            Ok(scored) => scored,
            Err(message) => (0.0, json!({"test_id": test_id, "error": message})),
        };
        self.commands.execute_and_get(id, ModelCommand::RecordTest { accuracy, report, test_id }, meta).await.map(drop)
    }

    /// Answers every case (all at once: a batch engine decodes them together) and scores the answers.
    async fn score(
        &self,
        id: Uuid,
        dir: PathBuf,
        test_id: Option<Uuid>,
        cases: &[TestCase],
    ) -> Result<(f64, serde_json::Value), String> {
        let served = self.engines.get(id, dir).await?;
        let params = AnswerParams { max_new_tokens: 64, ..AnswerParams::default() };
        let user = format!("model-test/{id}");
        let answers = futures::future::join_all(cases.iter().map(|case| {
            let prompt = Prompt { system: None, context: &[], question: &case.question };
            answer(Arc::clone(&served), user.clone(), prompt.request(&params, 0), None, CancellationToken::new())
        }))
        .await;
        let mut report = Vec::new();
        let mut total = Score::default();
        for (case, got) in cases.iter().zip(answers) {
            let got = got?;
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
    }
}

/// Answers questions with deployed models.
/// A question as its `QuestionAsked` event asks it.
struct Asked {
    user_id: Uuid,
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
        // As many answers at once as a model's engine generates at once (its batch rows).
        // Each node pulls only what it answers at once, so more nodes answer more questions at a time.
        let spec = WorkerConsumer {
            name,
            subjects: vec![subject],
            ack_wait: Duration::from_secs(120),
            concurrency: self.engines.concurrency(),
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
                    user_id,
                    model_id,
                    question,
                    params,
                    system,
                    context,
                    ..
                }),
                _,
            )) => (session_id, Asked { user_id, model_id, question_id, question, params, system, context }),
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
        let Asked { user_id, model_id, question_id, question, params, system, context } = asked;
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
        let cancel = CancellationToken::new();
        let listener = match client.subscribe(self.bus.subjects.question_cancel(question_id)).await {
            Ok(mut cancels) => {
                let cancel = cancel.clone();
                Some(tokio::spawn(async move {
                    if cancels.next().await.is_some() {
                        cancel.cancel();
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
        let seed = question_id.as_u64_pair().0;
        let request =
            Prompt { system: system.as_deref(), context: &context, question: &question }.request(&params, seed);
        let result = match self.engines.get(model_id, onnx).await {
            Ok(served) => answer(served, user_id.to_string(), request, Some(pieces), cancel)
                .await
                .map_err(|e| ("generation_failed", e)),
            Err(error) => {
                drop(pieces);
                Err(("model_unavailable", error))
            }
        };
        // Every piece is out before the answer is recorded (its event reaches the client after them).
        let _ = publisher.await;
        if let Some(listener) = listener {
            listener.abort();
        }
        let result = result?;
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
