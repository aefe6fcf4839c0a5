//! The engine proper: an export folder's graph, tokenizer and chat template, and the generation loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::batch::stop::{Released, StopText};
use super::model::OnnxModel;
use super::stream::TextStream;
use super::{ChatRequest, EngineError, EngineOptions, FinishReason, Generation, GenerationParams, GenerationStats};
use crate::model::{GenerateOptions, Sampler};
use crate::onnx::GenaiConfig;
use crate::template::ChatTemplate;
use crate::tokenizer::TextTokenizer;

/// The tokens that end a generation: the tokenizer's (end of turn) and the export's EOS ids.
pub(crate) fn stop_tokens(tokenizer: &TextTokenizer, genai: &GenaiConfig) -> Vec<u32> {
    let mut stop_tokens = tokenizer.stop_token_ids.clone();
    for &id in &genai.model.eos_token_id {
        if !stop_tokens.contains(&id) {
            stop_tokens.push(id);
        }
    }
    stop_tokens
}

/// A loaded model ready to generate; share it with `Arc` (it is `Send + Sync`).
pub struct Engine {
    dir: PathBuf,
    model: OnnxModel,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    stop_tokens: Vec<u32>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("dir", &self.dir).field("device", &self.model.device()).finish()
    }
}

impl Engine {
    /// Loads an export folder (`model.onnx`, `genai_config.json`, tokenizer files): the ONNX Runtime
    /// sessions are created here, once.
    pub fn load(dir: &Path, options: EngineOptions) -> Result<Arc<Engine>, EngineError> {
        let model = OnnxModel::load(dir, &options)?;
        let tokenizer = TextTokenizer::load(dir)?;
        let template = ChatTemplate::load(dir)?;
        let stop_tokens = stop_tokens(&tokenizer, model.genai());
        tracing::info!(dir = %dir.display(), device = ?model.device(), "engine loaded");
        Ok(Arc::new(Engine { dir: dir.to_path_buf(), model, tokenizer, template, stop_tokens }))
    }

    /// The graph and its sessions.
    pub fn model(&self) -> &OnnxModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Token ids that end a generation.
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    /// Applies the chat template and tokenizes the prompt.
    pub fn prompt_tokens(&self, request: &ChatRequest) -> Result<Vec<u32>, EngineError> {
        if request.messages.is_empty() {
            return Err(EngineError::Input("a request needs at least one message".into()));
        }
        let text = self.template.render(&request.messages, true)?;
        Ok(self.tokenizer.encode(&text, false)?)
    }

    /// Answers a chat request, streaming the completion's text through `on_token` as it is decoded.
    pub fn generate(&self, request: &ChatRequest, on_token: &mut dyn FnMut(&str)) -> Result<Generation, EngineError> {
        self.generate_until(request, on_token, &|| false)
    }

    /// [`Engine::generate`], stopping (finish reason `Cancelled`) before the next decoding step once `stop`
    /// says so: a client that went away, a stop sequence seen in the text so far.
    pub fn generate_until(
        &self,
        request: &ChatRequest,
        on_token: &mut dyn FnMut(&str),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation, EngineError> {
        let start = Instant::now();
        let prompt = self.prompt_tokens(request)?;
        self.generate_from(start, &prompt, &request.params, on_token, cancelled)
    }

    /// Continues raw prompt tokens (no chat template); what the benchmark and the parity tests drive.
    pub fn generate_tokens(
        &self,
        prompt: &[u32],
        params: &GenerationParams,
        on_token: &mut dyn FnMut(&str),
    ) -> Result<Generation, EngineError> {
        self.generate_from(Instant::now(), prompt, params, on_token, &|| false)
    }

    fn generate_from(
        &self,
        start: Instant,
        prompt: &[u32],
        params: &GenerationParams,
        on_token: &mut dyn FnMut(&str),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::Input("the prompt is empty".into()));
        }
        let mut sampler = Sampler::new(&GenerateOptions {
            max_new_tokens: params.max_new_tokens,
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            repetition_penalty: params.repetition_penalty,
            seed: params.seed,
            stop_tokens: self.stop_tokens.clone(),
        });
        let context = self.model.shape().context_length;
        let mut seq = self.model.new_sequence()?;
        let mut stream = TextStream::default();
        let mut stop = StopText::new(&params.stop);
        let decode = |ids: &[u32]| self.tokenizer.decode(ids, true);
        let mut tokens = Vec::new();
        let mut first_token_at = None;
        let mut finish = FinishReason::Length;
        let mut logits = self.model.step(&mut seq, prompt)?;
        while tokens.len() < params.max_new_tokens {
            let next = sampler.sample(&mut logits, seq.tokens());
            first_token_at.get_or_insert_with(Instant::now);
            if !params.ignore_eos && self.stop_tokens.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            tokens.push(next);
            let piece = stream.push(next, decode)?;
            let piece = match stop.active() {
                false => piece,
                true => match stop.push(&piece) {
                    Released::More(text) => text,
                    Released::Stopped(text) => {
                        if !text.is_empty() {
                            on_token(&text);
                        }
                        finish = FinishReason::Stop;
                        break;
                    }
                },
            };
            if !piece.is_empty() {
                on_token(&piece);
            }
            if tokens.len() == params.max_new_tokens || seq.tokens().len() >= context {
                break;
            }
            if cancelled() {
                finish = FinishReason::Cancelled;
                break;
            }
            logits = self.model.step(&mut seq, &[next])?;
        }
        let mut rest = stream.flush(decode)?;
        if stop.active() && finish != FinishReason::Stop {
            rest = match stop.push(&rest) {
                Released::More(text) => text + &stop.flush(),
                Released::Stopped(text) => {
                    finish = FinishReason::Stop;
                    text
                }
            };
        }
        if !rest.is_empty() {
            on_token(&rest);
        }
        let end = Instant::now();
        let first = first_token_at.unwrap_or(end);
        let decode_secs = (end - first).as_secs_f64();
        let tokens_per_second =
            if tokens.len() > 1 && decode_secs > 0.0 { (tokens.len() - 1) as f64 / decode_secs } else { 0.0 };
        // With stop texts, the answer is exactly what was streamed (cut before the stop text).
        let text = if stop.active() { stop.text().to_string() } else { self.tokenizer.decode(&tokens, true)? };
        Ok(Generation {
            text,
            finish_reason: finish,
            stats: GenerationStats {
                prompt_tokens: prompt.len(),
                completion_tokens: tokens.len(),
                time_to_first_token: first - start,
                total_time: end - start,
                tokens_per_second,
            },
            tokens,
        })
    }
}
