//! A Llama-family decoder held in f32, with the inference forward pass (KV cache) and generation.
//!
//! This is the reference the trainer and the ONNX export are checked against, and it is itself checked
//! against PyTorch/transformers logits (`tests/model_forward.rs`). Weight names are the Hugging Face ones
//! (`model.layers.{i}.self_attn.q_proj.weight`, ...); linear weights are `[out, in]` as stored there.

mod forward;
mod generate;
pub mod ops;

use std::path::Path;

pub use forward::KvCache;
pub use generate::{argmax, GenerateOptions, GenerationOutput, Sampler, StopReason};

use crate::config::ModelConfig;
use crate::error::{MlError, Result};
use crate::weights::{Tensor, Weights};

/// A linear layer `y = x W^T (+ b)` with `W` stored `[out, in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape[0]
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.shape[1]
    }

    /// `x` is `[rows, in]`; returns `[rows, out]`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = ops::matmul_t(x, &self.weight.data, rows, self.in_features(), self.out_features());
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        y
    }
}

/// One decoder block.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderLayer {
    pub input_layernorm: Vec<f32>,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub post_attention_layernorm: Vec<f32>,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

/// A whole decoder: embeddings, blocks, final norm and LM head.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaModel {
    pub config: ModelConfig,
    /// `[vocab, hidden]`.
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: Vec<f32>,
    /// `[vocab, hidden]`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<Tensor>,
}

/// The projections of a block, by their short and Hugging Face names.
pub const PROJECTIONS: [(&str, &str); 7] = [
    ("q", "self_attn.q_proj"),
    ("k", "self_attn.k_proj"),
    ("v", "self_attn.v_proj"),
    ("o", "self_attn.o_proj"),
    ("gate", "mlp.gate_proj"),
    ("up", "mlp.up_proj"),
    ("down", "mlp.down_proj"),
];

impl LlamaModel {
    /// Loads `config.json` and the safetensors weights of a Hugging Face model folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = ModelConfig::from_dir(dir)?;
        let weights = Weights::load_dir(dir)?;
        Self::from_weights(config, weights)
    }

    /// Builds the model from Hugging Face-named tensors, checking every shape against the config.
    pub fn from_weights(config: ModelConfig, mut w: Weights) -> Result<Self> {
        let (h, v) = (config.hidden_size, config.vocab_size);
        let embed_tokens = w.take("model.embed_tokens.weight")?;
        embed_tokens.expect_shape("model.embed_tokens.weight", &[v, h])?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut vector = |name: &str| -> Result<Vec<f32>> {
                let t = w.take(&format!("{p}.{name}.weight"))?;
                t.expect_shape(name, &[h])?;
                Ok(t.data)
            };
            let input_layernorm = vector("input_layernorm")?;
            let post_attention_layernorm = vector("post_attention_layernorm")?;
            let (q, kv, inter) = (config.q_dim(), config.kv_dim(), config.intermediate_size);
            let mut linear = |name: &str, out: usize, inp: usize, bias: bool| {
                take_linear(&mut w, &format!("{p}.{name}"), out, inp, bias)
            };
            layers.push(DecoderLayer {
                input_layernorm,
                q_proj: linear("self_attn.q_proj", q, h, config.qkv_bias)?,
                k_proj: linear("self_attn.k_proj", kv, h, config.qkv_bias)?,
                v_proj: linear("self_attn.v_proj", kv, h, config.qkv_bias)?,
                o_proj: linear("self_attn.o_proj", h, q, config.o_bias)?,
                post_attention_layernorm,
                gate_proj: linear("mlp.gate_proj", inter, h, config.mlp_bias)?,
                up_proj: linear("mlp.up_proj", inter, h, config.mlp_bias)?,
                down_proj: linear("mlp.down_proj", h, inter, config.mlp_bias)?,
            });
        }
        let norm = w.take("model.norm.weight")?;
        norm.expect_shape("model.norm.weight", &[h])?;
        // Tied checkpoints normally omit lm_head; some keep a copy, which is ignored when tied.
        let lm_head = match (config.tie_word_embeddings, w.take("lm_head.weight")) {
            (true, _) => None,
            (false, Ok(t)) => {
                t.expect_shape("lm_head.weight", &[v, h])?;
                Some(t)
            }
            (false, Err(e)) => return Err(e),
        };
        // Rotary caches some exporters store are derived data, not parameters.
        let unused: Vec<&str> = w.names().filter(|n| !n.ends_with("rotary_emb.inv_freq")).collect();
        if !unused.is_empty() {
            return Err(MlError::Weights(format!("tensors the model does not use: {}", unused.join(", "))));
        }
        Ok(LlamaModel { config, embed_tokens, layers, norm: norm.data, lm_head })
    }

    /// The weights under their Hugging Face names (what `save_pretrained` writes).
    pub fn to_weights(&self) -> Weights {
        let mut w = Weights::new();
        let h = self.config.hidden_size;
        w.insert("model.embed_tokens.weight", self.embed_tokens.clone());
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let vec = |d: &Vec<f32>| Tensor { shape: vec![h], data: d.clone() };
            w.insert(format!("{p}.input_layernorm.weight"), vec(&l.input_layernorm));
            w.insert(format!("{p}.post_attention_layernorm.weight"), vec(&l.post_attention_layernorm));
            for (_, name) in PROJECTIONS {
                let lin = l.projection(name).expect("known projection");
                w.insert(format!("{p}.{name}.weight"), lin.weight.clone());
                if let Some(b) = &lin.bias {
                    w.insert(format!("{p}.{name}.bias"), Tensor { shape: vec![b.len()], data: b.clone() });
                }
            }
        }
        w.insert("model.norm.weight", Tensor { shape: vec![h], data: self.norm.clone() });
        if let Some(head) = &self.lm_head {
            w.insert("lm_head.weight", head.clone());
        }
        w
    }

    /// Writes `config.json` and `model.safetensors` (f32) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| MlError::io(dir, e))?;
        self.config.save(dir)?;
        let meta = [("format".to_string(), "pt".to_string())].into_iter().collect();
        self.to_weights().save_file(&dir.join("model.safetensors"), Some(&meta))
    }

    /// The LM head matrix `[vocab, hidden]` (the embeddings when tied).
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }
}

impl DecoderLayer {
    /// A projection by its Hugging Face name relative to the block (`self_attn.q_proj`, `mlp.up_proj`, ...)
    /// or its short name (`q`, `up`, ...).
    pub fn projection(&self, name: &str) -> Option<&Linear> {
        Some(match short_name(name)? {
            "q" => &self.q_proj,
            "k" => &self.k_proj,
            "v" => &self.v_proj,
            "o" => &self.o_proj,
            "gate" => &self.gate_proj,
            "up" => &self.up_proj,
            _ => &self.down_proj,
        })
    }

    /// Mutable access to a projection, named as in [`DecoderLayer::projection`] (merging uses it).
    pub fn projection_mut(&mut self, name: &str) -> Option<&mut Linear> {
        Some(match short_name(name)? {
            "q" => &mut self.q_proj,
            "k" => &mut self.k_proj,
            "v" => &mut self.v_proj,
            "o" => &mut self.o_proj,
            "gate" => &mut self.gate_proj,
            "up" => &mut self.up_proj,
            _ => &mut self.down_proj,
        })
    }
}

/// `q`, `q_proj` and `self_attn.q_proj` all name the query projection; returns the short name.
pub fn short_name(name: &str) -> Option<&'static str> {
    let last = name.rsplit('.').next().unwrap_or(name);
    let bare = last.strip_suffix("_proj").unwrap_or(last);
    PROJECTIONS.iter().map(|(s, _)| *s).find(|s| *s == bare)
}

fn take_linear(w: &mut Weights, prefix: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
    let name = format!("{prefix}.weight");
    let weight = w.take(&name)?;
    weight.expect_shape(&name, &[out, inp])?;
    let bias_name = format!("{prefix}.bias");
    let bias = match (bias, w.take(&bias_name)) {
        (true, Ok(b)) => {
            b.expect_shape(&bias_name, &[out])?;
            Some(b.data)
        }
        (true, Err(e)) => return Err(e),
        (false, Ok(_)) => {
            return Err(MlError::Weights(format!("{bias_name} is present but the config says the layer has no bias")))
        }
        (false, Err(_)) => None,
    };
    Ok(Linear { weight, bias })
}
