//! `bonsai generate --model <export-dir> --prompt ...`: one chat completion through ONNX Runtime. The
//! completion alone goes to stdout, streamed as it is decoded; the statistics go to stderr, so scripts can
//! capture the answer with `$(bonsai generate ...)`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::engine::{ChatMessage, ChatRequest, Device, Engine, EngineOptions, GenerationParams};

/// Arguments of `bonsai generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Export folder written by `bonsai export-onnx`.
    #[arg(long)]
    pub model: PathBuf,
    /// The user message.
    #[arg(long)]
    pub prompt: String,
    /// An optional system message.
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 keeps every token.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
    /// Intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Let idle ONNX Runtime threads spin between kernels: faster on cores nothing else uses, slower on
    /// shared or busy ones.
    #[arg(long)]
    pub spin: bool,
}

pub(crate) fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let options = EngineOptions { device: args.device, threads: args.threads, sessions: 1, spin: args.spin };
    let engine = Engine::load(&args.model, options)
        .with_context(|| format!("loading the export folder {}", args.model.display()))?;
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", args.prompt));
    let request = ChatRequest {
        messages,
        params: GenerationParams {
            max_new_tokens: args.max_new_tokens,
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
            ignore_eos: false,
            stop: Vec::new(),
        },
    };
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let generation = engine
        .generate(&request, &mut |piece| {
            if write_error.is_none() {
                if let Err(e) = stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush()) {
                    write_error = Some(e);
                }
            }
        })
        .context("generating")?;
    if let Some(e) = write_error {
        return Err(e).context("writing the completion to stdout");
    }
    writeln!(stdout).context("writing the completion to stdout")?;
    let s = &generation.stats;
    eprintln!(
        "prompt tokens: {}, completion tokens: {}, time to first token: {:.1} ms, {:.1} tokens/s, finish: {:?}",
        s.prompt_tokens,
        s.completion_tokens,
        s.time_to_first_token.as_secs_f64() * 1e3,
        s.tokens_per_second,
        generation.finish_reason
    );
    Ok(())
}
