//! ONNX export of Llama-family decoders (Llama, Qwen2, Mistral, SmolLM) with a KV-cache interface, written
//! without Python: the protobuf messages are hand-written `prost` structs ([`proto`]), the graph is built by
//! [`llama`], and the weights go to an external data file beside `model.onnx`.
//!
//! The export folder is self-contained: `model.onnx`, `model.onnx.data`, `config.json`, the tokenizer files,
//! the chat template (inside `tokenizer_config.json`) and `genai_config.json` (generation settings in the
//! layout ONNX Runtime GenAI reads, so that runtime can load the same folder).

mod builder;
mod genai;
mod gqa;
mod linear;
mod llama;
pub mod proto;
mod rope;
mod signature;

use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message;

use crate::config::ModelConfig;
use crate::error::MlError;
use crate::weights::Weights;

pub use genai::{GenaiConfig, SearchSettings, FILE as GENAI_FILE};

/// File name of the graph inside an export folder.
pub const MODEL_FILE: &str = "model.onnx";
/// File name of the external weights inside an export folder.
pub const DATA_FILE: &str = "model.onnx.data";
/// Files copied from the model folder when present (tokenizer, template, generation settings).
const COPIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
];

/// ONNX opset of the default domain the graph uses.
const OPSET: i64 = 17;
/// ONNX IR version matching opset 17.
const IR_VERSION: i64 = 8;

/// Errors of the exporter.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// Loading the model folder (config, weights) failed.
    #[error(transparent)]
    Ml(#[from] MlError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model cannot be expressed (shape mismatch, unsupported layout).
    #[error("onnx export: {0}")]
    Model(String),
}

impl OnnxError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OnnxError::Io { path: path.into(), source }
    }
}

/// What an export wrote, for the CLI and the training job's report.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Size of `model.onnx` (graph only).
    pub model_bytes: u64,
    /// Size of `model.onnx.data` (weights).
    pub data_bytes: u64,
    /// Wall time of the whole export, loading included.
    pub seconds: f64,
    /// Every file in the export folder.
    pub files: Vec<PathBuf>,
}

/// Choices of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// `logits` holds the last position only ([batch, 1, vocab]): what generation needs, and a much cheaper
    /// prefill. False gives every position ([batch, sequence_length, vocab]), for scoring whole texts.
    pub last_token_logits: bool,
    /// Attention as ONNX Runtime's `com.microsoft.GroupQueryAttention` contrib op (one fused kernel per
    /// layer, as GenAI's exporter does) instead of standard ONNX ops (portable to any ONNX runtime).
    pub fused_attention: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { last_token_logits: true, fused_attention: true }
    }
}

/// Exports the Hugging Face style folder `model_dir` (config.json, safetensors, tokenizer) to `out_dir`
/// with the default options.
pub fn export_dir(model_dir: &Path, out_dir: &Path) -> Result<ExportReport, OnnxError> {
    export_dir_with(model_dir, out_dir, &ExportOptions::default())
}

/// [`export_dir`] with explicit options.
pub fn export_dir_with(model_dir: &Path, out_dir: &Path, options: &ExportOptions) -> Result<ExportReport, OnnxError> {
    let start = Instant::now();
    let config = ModelConfig::from_dir(model_dir)?;
    let weights = Weights::load_dir(model_dir)?;
    let mut report = export_model(&config, &weights, out_dir, options)?;
    for name in COPIED_FILES {
        let src = model_dir.join(name);
        if src.is_file() {
            let dst = out_dir.join(name);
            std::fs::copy(&src, &dst).map_err(|e| OnnxError::io(&src, e))?;
            report.files.push(dst);
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes `model.onnx`, `model.onnx.data`, `config.json` and `genai_config.json` for an in-memory model.
/// Tokenizer files are the caller's (see [`export_dir`]).
pub fn export_model(
    config: &ModelConfig,
    weights: &Weights,
    out_dir: &Path,
    options: &ExportOptions,
) -> Result<ExportReport, OnnxError> {
    let start = Instant::now();
    check_supported(config)?;
    std::fs::create_dir_all(out_dir).map_err(|e| OnnxError::io(out_dir, e))?;
    let data_path = out_dir.join(DATA_FILE);
    let mut g = builder::GraphBuilder::new(&data_path)?;
    llama::build(&mut g, config, weights, options)?;
    let (node, initializer, data_bytes) = g.finish()?;

    let model = proto::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![
            proto::OperatorSetIdProto { domain: String::new(), version: OPSET },
            proto::OperatorSetIdProto { domain: builder::CONTRIB_DOMAIN.to_string(), version: 1 },
        ],
        producer_name: "bonsai".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        graph: Some(proto::GraphProto {
            node,
            name: config.architecture.class_name().to_string(),
            initializer,
            input: signature::graph_inputs(config),
            output: signature::graph_outputs(config, options.last_token_logits),
            ..Default::default()
        }),
        ..Default::default()
    };
    let model_path = out_dir.join(MODEL_FILE);
    let bytes = model.encode_to_vec();
    std::fs::write(&model_path, &bytes).map_err(|e| OnnxError::io(&model_path, e))?;
    config.save(out_dir)?;
    let genai_path = out_dir.join(genai::FILE);
    GenaiConfig::for_model(config).save(&genai_path)?;

    Ok(ExportReport {
        model_bytes: bytes.len() as u64,
        data_bytes,
        seconds: start.elapsed().as_secs_f64(),
        files: vec![model_path, data_path, out_dir.join("config.json"), genai_path],
    })
}

fn check_supported(config: &ModelConfig) -> Result<(), OnnxError> {
    let c = config;
    if !c.head_dim.is_multiple_of(2) || !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
        return Err(OnnxError::Model(format!(
            "unsupported attention layout: head_dim {} with {} query heads over {} kv heads",
            c.head_dim, c.num_attention_heads, c.num_key_value_heads
        )));
    }
    if let Some(window) = c.sliding_window {
        // Exact while a sequence stays within the window, which covers every context this project serves.
        tracing::warn!(window, "sliding-window attention exported as full attention");
    }
    Ok(())
}
