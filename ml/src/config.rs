//! `config.json` of a Hugging Face Llama-family decoder (Llama, Qwen2, Mistral, SmolLM), parsed once into one
//! shape the rest of the crate uses. Defaults follow the transformers config classes, so a folder written by
//! `save_pretrained` loads with the same meaning it has there.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod rope;

pub use rope::RopeScaling;

use crate::error::{read_json, write_json, MlError, Result};

/// Which transformers class family a config comes from; it decides the few layout differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// `LlamaForCausalLM` (also SmolLM): optional biases through `attention_bias` / `mlp_bias`.
    Llama,
    /// `Qwen2ForCausalLM`: q/k/v projections always carry a bias, o_proj never does.
    Qwen2,
    /// `MistralForCausalLM`: Llama layout plus an optional sliding attention window.
    Mistral,
}

impl Architecture {
    /// The `model_type` string of `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Mistral => "mistral",
        }
    }

    /// The class name listed under `architectures`.
    pub fn class_name(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
        }
    }
}

/// A Llama-family decoder's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v (Qwen2 always; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama with `attention_bias`; never for Qwen2).
    pub o_bias: bool,
    /// Bias on gate/up/down (Llama with `mlp_bias`).
    pub mlp_bias: bool,
    /// Mistral's sliding attention window, when one is in force.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

/// The raw JSON, with the transformers defaults where a key may be absent.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    /// transformers 5 folds `rope_theta` and `rope_scaling` into this one object.
    rope_parameters: Option<Value>,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_act: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    pad_token_id: Option<Value>,
}

impl ModelConfig {
    /// Reads `<dir>/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("config.json"))
    }

    /// Reads a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let value: Value = read_json(path)?;
        Self::from_json(value)
    }

    /// Parses a `config.json` value.
    pub fn from_json(value: Value) -> Result<Self> {
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| MlError::Config(e.to_string()))?;
        let kind = raw
            .model_type
            .clone()
            .or_else(|| raw.architectures.first().cloned())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let architecture = if kind.starts_with("qwen2") {
            Architecture::Qwen2
        } else if kind.starts_with("mistral") {
            Architecture::Mistral
        } else if kind.starts_with("llama") || kind.starts_with("smollm") {
            Architecture::Llama
        } else {
            return Err(MlError::Config(format!(
                "model_type {kind:?} is not a Llama-family decoder (llama, qwen2, mistral)"
            )));
        };
        if let Some(act) = &raw.hidden_act {
            if act != "silu" && act != "swish" {
                return Err(MlError::Config(format!("hidden_act {act:?} (only silu)")));
            }
        }
        if raw.num_attention_heads == 0 || raw.hidden_size == 0 || raw.num_hidden_layers == 0 {
            return Err(MlError::Config("zero heads, hidden size or layers".into()));
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if kv_heads == 0 || !raw.num_attention_heads.is_multiple_of(kv_heads) {
            return Err(MlError::Config(format!(
                "{} attention heads do not divide into {kv_heads} key/value heads",
                raw.num_attention_heads
            )));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if !head_dim.is_multiple_of(2) {
            return Err(MlError::Config(format!("head_dim {head_dim} is odd")));
        }
        let sliding_window = match architecture {
            Architecture::Mistral => raw.sliding_window,
            Architecture::Qwen2 if raw.use_sliding_window == Some(true) => raw.sliding_window,
            _ => None,
        };
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 => (true, false),
            _ => (raw.attention_bias, raw.attention_bias),
        };
        Ok(ModelConfig {
            architecture,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: kv_heads,
            head_dim,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: raw
                .rope_theta
                .or_else(|| raw.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
                .unwrap_or(10_000.0),
            rope_scaling: rope::parse_rope_scaling(raw.rope_scaling.as_ref().or(raw.rope_parameters.as_ref()))?,
            // LlamaConfig, Qwen2Config and MistralConfig all default to untied.
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: raw.mlp_bias && architecture == Architecture::Llama,
            sliding_window,
            bos_token_id: token_ids(raw.bos_token_id.as_ref()).into_iter().next(),
            eos_token_ids: token_ids(raw.eos_token_id.as_ref()),
            pad_token_id: token_ids(raw.pad_token_id.as_ref()).into_iter().next(),
        })
    }

    /// The `config.json` value transformers would write for this model.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "architectures": [self.architecture.class_name()],
            "model_type": self.architecture.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "use_cache": true,
        });
        let obj = v.as_object_mut().expect("json! object");
        if self.architecture != Architecture::Qwen2 {
            obj.insert("attention_bias".into(), json!(self.o_bias));
        }
        if self.architecture == Architecture::Llama {
            obj.insert("mlp_bias".into(), json!(self.mlp_bias));
        }
        if self.architecture != Architecture::Llama {
            obj.insert("sliding_window".into(), json!(self.sliding_window));
            if self.architecture == Architecture::Qwen2 {
                obj.insert("use_sliding_window".into(), json!(self.sliding_window.is_some()));
            }
        }
        obj.insert(
            "rope_scaling".into(),
            match &self.rope_scaling {
                None => Value::Null,
                Some(RopeScaling::Linear { factor }) => {
                    json!({"rope_type": "linear", "factor": factor})
                }
                Some(RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings,
                }) => json!({
                    "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                }),
            },
        );
        if let Some(id) = self.bos_token_id {
            obj.insert("bos_token_id".into(), json!(id));
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                obj.insert("eos_token_id".into(), json!(one));
            }
            many => {
                obj.insert("eos_token_id".into(), json!(many));
            }
        }
        if let Some(id) = self.pad_token_id {
            obj.insert("pad_token_id".into(), json!(id));
        }
        v
    }

    /// Writes `<dir>/config.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join("config.json"), &self.to_json())
    }

    /// Width of the key (and value) projection output: `num_key_value_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Width of the query projection output: `num_attention_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }
}

/// `bos_token_id` / `eos_token_id` may be a number, a list of numbers or null.
fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_u64).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen2_gets_qkv_bias_and_no_o_bias() {
        let c = ModelConfig::from_json(json!({
            "model_type": "qwen2", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "eos_token_id": [3, 4], "tie_word_embeddings": false
        }))
        .unwrap();
        assert_eq!(c.architecture, Architecture::Qwen2);
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.head_dim, 4);
        assert_eq!(c.eos_token_ids, vec![3, 4]);
        let back = ModelConfig::from_json(c.to_json()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn reads_transformers_5_rope_parameters() {
        let c = ModelConfig::from_json(json!({
            "model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2,
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "linear", "factor": 2.0}
        }))
        .unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
    }

    #[test]
    fn refuses_heads_that_do_not_divide() {
        let err = ModelConfig::from_json(json!({
            "model_type": "llama", "vocab_size": 10, "hidden_size": 12, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2
        }))
        .unwrap_err();
        assert!(err.to_string().contains("key/value heads"), "{err}");
    }

    #[test]
    fn refuses_an_unsupported_rope_scaling() {
        let err = ModelConfig::from_json(json!({
            "model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2,
            "rope_scaling": {"rope_type": "yarn", "factor": 4.0}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("yarn"), "{err}");
    }
}
