//! `genai_config.json`: the generation settings of an export folder, in the layout ONNX Runtime GenAI reads
//! (so that runtime can load our export for comparison). Our engine reads the same file for its end tokens
//! and context length.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::OnnxError;
use crate::config::ModelConfig;
use crate::error::{read_json, write_json};

/// File name inside an export folder.
pub const FILE: &str = "genai_config.json";

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenaiConfig {
    pub model: GenaiModel,
    pub search: SearchSettings,
}

/// `model` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenaiModel {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bos_token_id: Option<u32>,
    pub context_length: usize,
    pub decoder: Decoder,
    pub eos_token_id: Vec<u32>,
    pub pad_token_id: u32,
    #[serde(rename = "type")]
    pub model_type: String,
    pub vocab_size: usize,
}

/// `model.decoder` section: the graph's file and tensor names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decoder {
    pub session_options: serde_json::Value,
    pub filename: String,
    pub head_size: usize,
    pub hidden_size: usize,
    pub inputs: serde_json::Value,
    pub outputs: serde_json::Value,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub num_key_value_heads: usize,
}

/// `search` section: default decoding settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchSettings {
    pub diversity_penalty: f32,
    pub do_sample: bool,
    pub early_stopping: bool,
    pub length_penalty: f32,
    pub max_length: usize,
    pub min_length: usize,
    pub no_repeat_ngram_size: usize,
    pub num_beams: usize,
    pub num_return_sequences: usize,
    /// Must stay false: the graph concatenates past and new keys instead of writing into a shared buffer.
    pub past_present_share_buffer: bool,
    pub repetition_penalty: f32,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
}

impl GenaiConfig {
    /// Settings for an exported model: greedy by default, the model's own end tokens.
    pub fn for_model(config: &ModelConfig) -> Self {
        let eos = config.eos_token_ids.clone();
        let pad = config.pad_token_id.or(eos.first().copied()).unwrap_or(0);
        GenaiConfig {
            model: GenaiModel {
                bos_token_id: config.bos_token_id,
                context_length: config.max_position_embeddings,
                decoder: Decoder {
                    session_options: serde_json::json!({"log_id": "onnxruntime-genai", "provider_options": []}),
                    filename: super::MODEL_FILE.to_string(),
                    head_size: config.head_dim,
                    hidden_size: config.hidden_size,
                    inputs: serde_json::json!({
                        "input_ids": "input_ids",
                        "attention_mask": "attention_mask",
                        "position_ids": "position_ids",
                        "past_key_names": "past_key_values.%d.key",
                        "past_value_names": "past_key_values.%d.value"
                    }),
                    outputs: serde_json::json!({
                        "logits": "logits",
                        "present_key_names": "present.%d.key",
                        "present_value_names": "present.%d.value"
                    }),
                    num_attention_heads: config.num_attention_heads,
                    num_hidden_layers: config.num_hidden_layers,
                    num_key_value_heads: config.num_key_value_heads,
                },
                eos_token_id: eos,
                pad_token_id: pad,
                model_type: config.architecture.model_type().to_string(),
                vocab_size: config.vocab_size,
            },
            search: SearchSettings {
                diversity_penalty: 0.0,
                do_sample: false,
                early_stopping: true,
                length_penalty: 1.0,
                max_length: config.max_position_embeddings,
                min_length: 0,
                no_repeat_ngram_size: 0,
                num_beams: 1,
                num_return_sequences: 1,
                past_present_share_buffer: false,
                repetition_penalty: 1.0,
                temperature: 1.0,
                top_k: 50,
                top_p: 1.0,
            },
        }
    }

    /// Reads the file.
    pub fn load(path: &Path) -> Result<Self, OnnxError> {
        Ok(read_json(path)?)
    }

    /// Writes the file.
    pub fn save(&self, path: &Path) -> Result<(), OnnxError> {
        Ok(write_json(path, self)?)
    }
}
