//! Continuous batching: many generations share one decode step of one loaded model.
//!
//! A [`BatchEngine`] owns one ONNX Runtime session and a KV cache with a row per slot, allocated once. Each
//! request waits in a fair line ([`queue`]), gets a free slot, is prefilled alone (batch 1), then joins the
//! shared decode step: one token per row, each row at its own length. A row leaves when it ends (end token,
//! stop text, length, cancel) without stopping the others, and its slot takes the next request at once.
//! Sampling settings, stop texts and streaming are per row. The loop runs on its own thread; callers get a
//! [`GenerationHandle`] that streams the pieces and ends with the [`Completion`], usable from async code
//! (`next_piece().await`, `finish().await`) or from plain threads (`blocking_next_piece`, `wait`).
//!
//! ```no_run
//! # use bonsai_ml::engine::*;
//! # async fn serve() -> Result<(), EngineError> {
//! let engine = BatchEngine::load("exports/m".as_ref(), BatchOptions::default())?;
//! let mut handle = engine.submit("user-1", &ChatRequest::user("What is the capital of France?"))?;
//! while let Some(piece) = handle.next_piece().await {
//!     print!("{}", piece.text);
//! }
//! let done = handle.finish().await?;
//! eprintln!("{} tokens, queued {:?}", done.generation.stats.completion_tokens, done.queued);
//! # Ok(()) }
//! ```
//!
//! Greedy (and seeded) outputs equal [`super::Engine::generate`]'s token for token: same graph, same sampler.
//! Only exports with the fused attention op (`GroupQueryAttention`, the default) can batch; others are refused
//! at load with [`EngineError::NotBatchable`].

mod graph;
mod queue;
mod scheduler;
pub(crate) mod stop;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use super::model::GraphShape;
use super::{runtime, ChatRequest, Device, EngineError, EngineOptions, Generation, GenerationParams};
use crate::onnx::{GenaiConfig, GENAI_FILE, MODEL_FILE};
use crate::template::ChatTemplate;
use crate::tokenizer::TextTokenizer;

/// How to load a batch engine.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub device: Device,
    /// Intra-op threads of the session; 0 lets ONNX Runtime choose (one per core).
    pub threads: usize,
    /// Let idle intra-op threads spin (see [`EngineOptions::spin`]).
    pub spin: bool,
    /// Rows of the decode batch: requests generated at once. Each holds a KV row of `slot_tokens` tokens.
    pub slots: usize,
    /// Tokens (prompt and completion) one row can hold; 0 takes the model's context, at most
    /// [`DEFAULT_SLOT_TOKENS`]. Memory: slots x slot_tokens x the model's KV bytes per token.
    pub slot_tokens: usize,
    /// Requests that may wait for a slot; one more is refused ([`EngineError::Busy`]).
    pub max_waiting: usize,
    /// Prompts prefilled between two decode steps while rows are decoding: more admits a burst sooner, fewer
    /// keeps the running rows' token rate steadier.
    pub prefills_per_step: usize,
}

/// Slot length taken when [`BatchOptions::slot_tokens`] is 0 and the model's context is longer.
pub const DEFAULT_SLOT_TOKENS: usize = 2048;

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            device: Device::Auto,
            threads: 0,
            spin: false,
            slots: 8,
            slot_tokens: 0,
            max_waiting: 256,
            prefills_per_step: 1,
        }
    }
}

/// A piece of streamed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The token that completed this text; `None` for the rest held back until the end (an incomplete
    /// character, or text that could have begun a stop text).
    pub token: Option<u32>,
    /// New text, possibly empty (a token in the middle of a multi-byte character).
    pub text: String,
}

/// A finished request of the batch engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text, tokens, finish reason and timings (measured from `submit`, waiting included).
    pub generation: Generation,
    /// Time spent waiting for a slot.
    pub queued: Duration,
    /// Order in which the request got its slot, counted from 0 over the engine's life.
    pub admission: u64,
    /// The most rows it shared a decode step with, itself included.
    pub peak_batch: usize,
}

/// Stops one generation; cheap to clone, can be sent to another task.
#[derive(Debug, Clone, Default)]
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    /// Asks the engine to stop the generation; its slot is freed before the next decode step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One submitted request: its streamed pieces, then its [`Completion`]. Dropping the handle cancels the request.
/// It keeps its engine loaded: an engine unloaded (dropped by its owner) while answers are in progress is freed
/// once the last of their handles goes.
#[derive(Debug)]
pub struct GenerationHandle {
    id: u64,
    pieces: tokio_mpsc::UnboundedReceiver<Piece>,
    result: Option<oneshot::Receiver<Result<Completion, EngineError>>>,
    cancel: Canceller,
    _engine: Arc<BatchEngine>,
}

impl GenerationHandle {
    /// The engine-wide id of the request (in submission order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next piece of text; `None` once the generation has ended.
    pub async fn next_piece(&mut self) -> Option<Piece> {
        self.pieces.recv().await
    }

    /// [`Self::next_piece`] for plain threads (panics inside an async runtime, as tokio's `blocking_recv`).
    pub fn blocking_next_piece(&mut self) -> Option<Piece> {
        self.pieces.blocking_recv()
    }

    /// Waits for the end (pieces not read are dropped). Dropping the future cancels the request.
    pub async fn finish(mut self) -> Result<Completion, EngineError> {
        let result = self.result.take().ok_or(EngineError::Closed)?;
        result.await.unwrap_or(Err(EngineError::Closed))
    }

    /// [`Self::finish`] for plain threads.
    pub fn wait(mut self) -> Result<Completion, EngineError> {
        let result = self.result.take().ok_or(EngineError::Closed)?;
        result.blocking_recv().unwrap_or(Err(EngineError::Closed))
    }

    /// A handle that cancels this request from elsewhere.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// Cancels the request: its slot is freed within one step, and it ends with what it generated so far
    /// (finish reason [`super::FinishReason::Cancelled`]), or with [`EngineError::Cancelled`] if it had not
    /// got a slot yet.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for GenerationHandle {
    fn drop(&mut self) {
        // Nobody can read the answer any more: stop spending steps on it (no-op once it has ended).
        self.cancel.cancel();
    }
}

/// Load figures of a batch engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchLoad {
    /// Requests holding a slot.
    pub active: usize,
    /// Requests waiting for one.
    pub waiting: usize,
    /// Decode steps run so far.
    pub steps: u64,
    /// Rows summed over those steps (`rows / steps` is the mean batch).
    pub rows: u64,
}

/// Counters shared by the engine's callers and its thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) active: AtomicUsize,
    pub(crate) waiting: AtomicUsize,
    pub(crate) steps: AtomicU64,
    pub(crate) rows: AtomicU64,
    /// Set when the engine is dropped: the loop ends the requests in flight and stops.
    pub(crate) closing: AtomicBool,
}

/// A request on its way to the loop.
pub(crate) struct Submission {
    pub(crate) id: u64,
    pub(crate) user: String,
    pub(crate) prompt: Vec<u32>,
    pub(crate) params: GenerationParams,
    pub(crate) submitted: Instant,
    pub(crate) pieces: tokio_mpsc::UnboundedSender<Piece>,
    pub(crate) result: oneshot::Sender<Result<Completion, EngineError>>,
    pub(crate) cancel: Canceller,
}

impl Submission {
    /// Whether nobody waits for the answer any more.
    pub(crate) fn abandoned(&self) -> bool {
        self.cancel.is_cancelled() || self.result.is_closed()
    }
}

/// A loaded model serving many requests at once through one decode batch; share it with `Arc`.
pub struct BatchEngine {
    dir: PathBuf,
    tokenizer: Arc<TextTokenizer>,
    template: ChatTemplate,
    stop_tokens: Vec<u32>,
    shape: GraphShape,
    slot_tokens: usize,
    max_waiting: usize,
    kv_bytes: usize,
    device: Device,
    next_id: AtomicU64,
    counters: Arc<Counters>,
    // A std mutex: held only to send or to take the channel, never across an await.
    inbox: Mutex<Option<mpsc::Sender<Submission>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for BatchEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchEngine").field("dir", &self.dir).field("device", &self.device).finish()
    }
}

impl BatchEngine {
    /// Loads an export folder and starts the decode loop's thread; the session and the KV cache are made
    /// here, once.
    pub fn load(dir: &Path, options: BatchOptions) -> Result<Arc<BatchEngine>, EngineError> {
        let genai = GenaiConfig::load(&dir.join(GENAI_FILE))?;
        let model_path = dir.join(MODEL_FILE);
        check_batchable(&model_path)?;
        let tokenizer = Arc::new(TextTokenizer::load(dir)?);
        let template = ChatTemplate::load(dir)?;
        let stop_tokens = super::generate::stop_tokens(&tokenizer, &genai);
        let d = &genai.model.decoder;
        let shape = GraphShape {
            num_layers: d.num_hidden_layers,
            num_kv_heads: d.num_key_value_heads,
            head_dim: d.head_size,
            vocab_size: genai.model.vocab_size,
            context_length: genai.model.context_length,
        };
        let slots = options.slots.max(1);
        let slot_tokens = match options.slot_tokens {
            0 => shape.context_length.min(DEFAULT_SLOT_TOKENS),
            n => n.min(shape.context_length),
        };
        let device = runtime::resolve_device(options.device)?;
        let engine_options = EngineOptions { device, threads: options.threads, sessions: 1, spin: options.spin };

        let counters = Arc::new(Counters::default());
        let (inbox, receiver) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let config = scheduler::LoopConfig {
            slots,
            slot_tokens,
            prefills_per_step: options.prefills_per_step.max(1),
            stop_tokens: stop_tokens.clone(),
        };
        let (thread_tokenizer, thread_counters, thread_shape) =
            (Arc::clone(&tokenizer), Arc::clone(&counters), shape.clone());
        let thread = std::thread::Builder::new()
            .name("bonsai-batch".into())
            .spawn(move || {
                // The session and the buffers are made on the loop's own thread and never leave it.
                let graph = runtime::session(&model_path, device, &engine_options)
                    .and_then(|session| graph::BatchGraph::new(session, device, thread_shape, slots, slot_tokens));
                match graph {
                    Ok(graph) => {
                        let _ = ready_tx.send(Ok(graph.kv_bytes()));
                        scheduler::Loop::new(graph, config, thread_tokenizer, receiver, thread_counters).run();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| EngineError::Session(format!("cannot start the batch thread: {e}")))?;
        let kv_bytes =
            ready_rx.recv().map_err(|_| EngineError::Session("the batch thread ended while loading".into()))??;
        tracing::info!(dir = %dir.display(), ?device, slots, slot_tokens, kv_bytes, "batch engine loaded");
        Ok(Arc::new(BatchEngine {
            dir: dir.to_path_buf(),
            tokenizer,
            template,
            stop_tokens,
            shape,
            slot_tokens,
            max_waiting: options.max_waiting,
            kv_bytes,
            device,
            next_id: AtomicU64::new(0),
            counters,
            inbox: Mutex::new(Some(inbox)),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Token ids that end a generation.
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    /// The device the session runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Tokens one request can hold (prompt and completion).
    pub fn slot_tokens(&self) -> usize {
        self.slot_tokens
    }

    /// Bytes of the preallocated KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.kv_bytes
    }

    /// Requests running and waiting now, and the decode steps so far.
    pub fn load_now(&self) -> BatchLoad {
        let c = &self.counters;
        BatchLoad {
            active: c.active.load(Ordering::Relaxed),
            waiting: c.waiting.load(Ordering::Relaxed),
            steps: c.steps.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
        }
    }

    /// Applies the chat template and tokenizes the prompt (what [`Self::submit`] runs).
    pub fn prompt_tokens(&self, request: &ChatRequest) -> Result<Vec<u32>, EngineError> {
        if request.messages.is_empty() {
            return Err(EngineError::Input("a request needs at least one message".into()));
        }
        let text = self.template.render(&request.messages, true)?;
        Ok(self.tokenizer.encode(&text, false)?)
    }

    /// Queues a chat request of `user` (any stable id: requests of several users waiting at once take turns).
    /// Returns at once; the handle streams the answer.
    pub fn submit(self: &Arc<Self>, user: &str, request: &ChatRequest) -> Result<GenerationHandle, EngineError> {
        let submitted = Instant::now();
        let prompt = self.prompt_tokens(request)?;
        self.enqueue(submitted, user, prompt, request.params.clone())
    }

    /// Queues raw prompt tokens (no chat template): what the benchmark and the parity tests drive.
    pub fn submit_tokens(
        self: &Arc<Self>,
        user: &str,
        prompt: Vec<u32>,
        params: GenerationParams,
    ) -> Result<GenerationHandle, EngineError> {
        self.enqueue(Instant::now(), user, prompt, params)
    }

    fn enqueue(
        self: &Arc<Self>,
        submitted: Instant,
        user: &str,
        prompt: Vec<u32>,
        params: GenerationParams,
    ) -> Result<GenerationHandle, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::Input("the prompt is empty".into()));
        }
        if prompt.len() > self.slot_tokens {
            return Err(EngineError::Input(format!(
                "{} prompt tokens exceed the {} tokens of a slot",
                prompt.len(),
                self.slot_tokens
            )));
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= self.shape.vocab_size) {
            return Err(EngineError::Input(format!("token id {bad} outside the vocabulary")));
        }
        let waiting = self.counters.waiting.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_waiting {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::Busy(format!("{waiting} requests already wait for a slot")));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (pieces_tx, pieces) = tokio_mpsc::unbounded_channel();
        let (result_tx, result) = oneshot::channel();
        let cancel = Canceller::default();
        let submission = Submission {
            id,
            user: user.to_string(),
            prompt,
            params,
            submitted,
            pieces: pieces_tx,
            result: result_tx,
            cancel: cancel.clone(),
        };
        let sent = match self.inbox.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(inbox) => inbox.send(submission).is_ok(),
            None => false,
        };
        if !sent {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::Closed);
        }
        Ok(GenerationHandle { id, pieces, result: Some(result), cancel, _engine: Arc::clone(self) })
    }
}

impl Drop for BatchEngine {
    /// Stops the loop and waits for it (at most one step; the handles keep the engine alive, so nothing is
    /// in flight by now unless a handle was leaked). Blocking: drop the last `Arc` off the async runtime.
    fn drop(&mut self) {
        self.counters.closing.store(true, Ordering::Release);
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if thread.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "the batch thread panicked");
            }
        }
    }
}

/// Refuses graphs whose attention is not `GroupQueryAttention`: the standard-op graph concatenates the cache
/// at the end of the longest row, so rows of different lengths cannot share its buffer.
fn check_batchable(model_path: &Path) -> Result<(), EngineError> {
    let bytes =
        std::fs::read(model_path).map_err(|e| EngineError::Session(format!("{}: {e}", model_path.display())))?;
    let model = crate::onnx::proto::ModelProto::decode(bytes.as_slice())
        .map_err(|e| EngineError::Session(format!("{}: {e}", model_path.display())))?;
    let fused = model.graph.is_some_and(|g| g.node.iter().any(|n| n.op_type == "GroupQueryAttention"));
    if fused {
        Ok(())
    } else {
        Err(EngineError::NotBatchable(format!(
            "{} has no GroupQueryAttention nodes: continuous batching needs the fused-attention export (the \
             default; head_dim a multiple of 16)",
            model_path.display()
        )))
    }
}
