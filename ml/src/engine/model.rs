//! An exported model loaded into ONNX Runtime: a small pool of sessions over one `model.onnx`, and the step
//! function that runs the graph on new tokens with a sequence's KV cache.
//!
//! `ort` makes `Session::run` take `&mut self` (some ONNX Runtime internals are not thread safe), so each
//! session sits behind a mutex and is held for one graph call only: concurrent generations interleave step by
//! step on a shared session, or run truly in parallel when the pool has more than one.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use super::{runtime, Device, EngineError, EngineOptions};
use crate::onnx::{GenaiConfig, MODEL_FILE};

/// The graph's shape facts, read from the export's `genai_config.json`.
#[derive(Debug, Clone)]
pub struct GraphShape {
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
}

/// A loaded `model.onnx`.
pub struct OnnxModel {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    shape: GraphShape,
    genai: GenaiConfig,
    device: Device,
}

/// The KV cache and length of one sequence (batch 1) between steps.
pub struct Sequence {
    past: Vec<DynValue>,
    tokens: Vec<u32>,
}

impl Sequence {
    /// Every token fed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

impl OnnxModel {
    /// Loads `<dir>/model.onnx` (and its `genai_config.json`) with `options.sessions` sessions.
    pub fn load(dir: &Path, options: &EngineOptions) -> Result<Self, EngineError> {
        let genai = GenaiConfig::load(&dir.join(crate::onnx::GENAI_FILE)).map_err(EngineError::from)?;
        let device = runtime::resolve_device(options.device)?;
        let model_path = dir.join(MODEL_FILE);
        if !model_path.is_file() {
            return Err(EngineError::Session(format!("{} not found", model_path.display())));
        }
        let sessions = (0..options.sessions.max(1))
            .map(|_| runtime::session(&model_path, device, options).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let d = &genai.model.decoder;
        let shape = GraphShape {
            num_layers: d.num_hidden_layers,
            num_kv_heads: d.num_key_value_heads,
            head_dim: d.head_size,
            vocab_size: genai.model.vocab_size,
            context_length: genai.model.context_length,
        };
        Ok(OnnxModel { sessions, next: AtomicUsize::new(0), shape, genai, device })
    }

    /// The graph's dimensions.
    pub fn shape(&self) -> &GraphShape {
        &self.shape
    }

    /// The export's generation settings.
    pub fn genai(&self) -> &GenaiConfig {
        &self.genai
    }

    /// The device the sessions run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// An empty sequence (no cache yet).
    pub fn new_sequence(&self) -> Result<Sequence, EngineError> {
        let s = &self.shape;
        let past = (0..2 * s.num_layers)
            .map(|_| {
                Tensor::<f32>::from_array(([1usize, s.num_kv_heads, 0, s.head_dim], Vec::<f32>::new()))
                    .map(|t| t.into_dyn())
                    .map_err(ort_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sequence { past, tokens: Vec::new() })
    }

    /// Runs the graph on `new_tokens` after what `seq` already holds; returns the logits of the last new
    /// token and keeps the grown cache in `seq`.
    pub fn step(&self, seq: &mut Sequence, new_tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        if new_tokens.is_empty() {
            return Err(EngineError::Input("no tokens to run".into()));
        }
        let past_len = seq.tokens.len();
        let total = past_len + new_tokens.len();
        if total > self.shape.context_length {
            return Err(EngineError::Input(format!(
                "{total} tokens exceed the model's context of {}",
                self.shape.context_length
            )));
        }
        if let Some(&bad) = new_tokens.iter().find(|&&t| t as usize >= self.shape.vocab_size) {
            return Err(EngineError::Input(format!("token id {bad} outside the vocabulary")));
        }
        let n = new_tokens.len();
        let ids: Vec<i64> = new_tokens.iter().map(|&t| t as i64).collect();
        let positions: Vec<i64> = (past_len as i64..total as i64).collect();
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(3 + seq.past.len());
        inputs.push(("input_ids".into(), tensor_i64([1, n], ids)?));
        inputs.push(("attention_mask".into(), tensor_i64([1, total], vec![1; total])?));
        inputs.push(("position_ids".into(), tensor_i64([1, n], positions)?));
        for (i, value) in seq.past.drain(..).enumerate() {
            let kind = if i % 2 == 0 { "key" } else { "value" };
            inputs.push((format!("past_key_values.{}.{kind}", i / 2), value.into()));
        }

        let (logits, presents) = {
            let mut session = self.checkout();
            let mut outputs = session.run(inputs).map_err(ort_error)?;
            let logits =
                outputs.get("logits").ok_or_else(|| EngineError::Session("graph has no `logits` output".into()))?;
            let (_, data) = logits.try_extract_tensor::<f32>().map_err(ort_error)?;
            let v = self.shape.vocab_size;
            // [batch, 1, vocab] or [batch, seq, vocab] (see `ExportOptions`): the last row either way.
            let last = data[data.len() - v..].to_vec();
            let mut presents = Vec::with_capacity(2 * self.shape.num_layers);
            for layer in 0..self.shape.num_layers {
                for kind in ["key", "value"] {
                    let name = format!("present.{layer}.{kind}");
                    let value = outputs
                        .remove(name.as_str())
                        .ok_or_else(|| EngineError::Session(format!("graph has no `{name}` output")))?;
                    presents.push(value);
                }
            }
            (last, presents)
        };
        seq.past = presents;
        seq.tokens.extend_from_slice(new_tokens);
        Ok(logits)
    }

    /// A free session if there is one, else waits for the next one in turn.
    fn checkout(&self) -> std::sync::MutexGuard<'_, Session> {
        for slot in &self.sessions {
            if let Ok(guard) = slot.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        // A poisoned lock only means another generation panicked mid-run; the session itself holds no
        // per-call state, so it stays usable.
        self.sessions[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn tensor_i64(shape: [usize; 2], data: Vec<i64>) -> Result<SessionInputValue<'static>, EngineError> {
    Ok(Tensor::<i64>::from_array((shape, data)).map_err(ort_error)?.into())
}

pub(crate) fn ort_error(e: ort::Error) -> EngineError {
    EngineError::Session(e.to_string())
}
