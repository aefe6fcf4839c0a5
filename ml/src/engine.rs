//! Text generation through ONNX Runtime from an export folder (see [`crate::onnx`]): chat template, prefill,
//! then one decode step per token with the KV cache, greedy or seeded sampling, streaming, statistics.
//!
//! An [`Engine`] is loaded once and shared (`Arc`); any number of threads may call [`Engine::generate`] at
//! once. The serving worker holds one per model:
//!
//! ```no_run
//! # use bonsai_ml::engine::*;
//! let engine = Engine::load("exports/m".as_ref(), EngineOptions::default())?;
//! let request = ChatRequest::user("What is the capital of France?");
//! let answer = engine.generate(&request, &mut |piece| print!("{piece}"))?;
//! eprintln!("{} tokens, {:.1} tokens/s", answer.stats.completion_tokens, answer.stats.tokens_per_second);
//! # Ok::<(), EngineError>(())
//! ```
//!
//! A [`BatchEngine`] serves many requests at once through one shared decode batch (continuous batching,
//! see [`batch`]): what a server under load should hold per model.

pub mod batch;
mod generate;
mod model;
mod runtime;
mod stream;

use std::time::Duration;

pub use crate::template::ChatMessage;
pub use batch::{BatchEngine, BatchLoad, BatchOptions, Canceller, Completion, GenerationHandle, Piece};
pub use generate::Engine;
pub use model::{GraphShape, OnnxModel, Sequence};
pub use runtime::{cuda_available, library_path};

use crate::error::MlError;
use crate::onnx::OnnxError;

/// Where the graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CPU execution provider.
    Cpu,
    /// CUDA execution provider; an error when the loaded library has none.
    Cuda,
    /// CUDA when available, else the CPU (with a log line).
    #[default]
    Auto,
}

/// How to load an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub device: Device,
    /// Intra-op threads per session; 0 lets ONNX Runtime choose (one per core).
    pub threads: usize,
    /// Sessions over the same graph; each runs one step at a time, so more sessions serve concurrent
    /// generations in parallel at the cost of one weight copy each. At least 1.
    pub sessions: usize,
    /// Let idle intra-op threads spin between the many small kernels of a decode step. Faster with cores to
    /// spare; off by default because on shared or oversubscribed cores spinning threads steal the time the
    /// working ones need (measured here: 1.2-1.5x faster decode with it off on a busy 2-core machine).
    pub spin: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { device: Device::Auto, threads: 0, sessions: 1, spin: false }
    }
}

/// Errors of the generation engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ONNX Runtime library is missing, too old or failed to start; the message names the fix.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// CUDA was asked for and cannot be used.
    #[error("CUDA: {0}")]
    CudaUnavailable(String),
    /// Creating or running an inference session failed.
    #[error("inference session: {0}")]
    Session(String),
    /// The export folder's tokenizer, template or settings could not be used.
    #[error(transparent)]
    Model(#[from] MlError),
    /// The export folder's settings could not be read.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The request cannot be served (empty, too long for the context).
    #[error("invalid request: {0}")]
    Input(String),
    /// The export cannot join a shared decode batch (no fused attention); serve it with [`Engine`].
    #[error("not batchable: {0}")]
    NotBatchable(String),
    /// Too many requests wait already (a batch engine's `max_waiting`); retry later.
    #[error("busy: {0}")]
    Busy(String),
    /// The request was cancelled (its handle dropped or cancelled) before it ended.
    #[error("the request was cancelled")]
    Cancelled,
    /// The engine was unloaded before the request ended.
    #[error("the engine was unloaded")]
    Closed,
}

/// Decoding settings of one request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
    /// 0 is greedy.
    pub temperature: f32,
    /// 1.0 keeps all tokens.
    pub top_p: f32,
    /// 0 keeps all tokens.
    pub top_k: usize,
    /// 1.0 is none.
    pub repetition_penalty: f32,
    /// Seed of the sampler (sampling only); the same seed and request give the same output.
    pub seed: u64,
    /// Keep generating through end tokens until `max_new_tokens` (benchmarks need fixed lengths).
    pub ignore_eos: bool,
    /// Texts that end the answer where they appear (not included, never streamed).
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            seed: 0,
            ignore_eos: false,
            stop: Vec::new(),
        }
    }
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub params: GenerationParams,
}

impl ChatRequest {
    /// One user message, default (greedy) settings.
    pub fn user(content: impl Into<String>) -> Self {
        ChatRequest { messages: vec![ChatMessage::new("user", content)], params: GenerationParams::default() }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end token (EOS or the template's end of turn) came up.
    Stop,
    /// `max_new_tokens` were generated, or the context is full.
    Length,
    /// The caller stopped it (the client went away, or a stop sequence came up).
    Cancelled,
}

/// Measurements of one generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// From the call until the first completion token was chosen (template, tokenization and prefill).
    pub time_to_first_token: Duration,
    /// The whole call.
    pub total_time: Duration,
    /// Decode speed: tokens after the first one divided by the time after the first one.
    pub tokens_per_second: f64,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The completion, end token excluded.
    pub text: String,
    /// Its token ids, end token excluded.
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stats: GenerationStats,
}
