//! The frozen base model in the layout the trainer computes with: q|k|v and gate|up fused into one weight
//! each, so a block does two wide products instead of five narrow ones (forward and input-gradient alike).

use super::kernels::rope::RopeTable;
use crate::config::ModelConfig;
use crate::model::{Linear, LlamaModel};

/// One decoder block's frozen weights.
#[derive(Debug)]
pub struct BaseLayer {
    pub ln1: Vec<f32>,
    pub ln2: Vec<f32>,
    /// `[(heads + 2 * kv_heads) * head_dim, hidden]`: rows of q, then k, then v.
    pub w_qkv: Vec<f32>,
    pub b_qkv: Option<Vec<f32>>,
    pub w_o: Vec<f32>,
    pub b_o: Option<Vec<f32>>,
    /// `[2 * intermediate, hidden]`: rows of gate, then up.
    pub w_gu: Vec<f32>,
    pub b_gu: Option<Vec<f32>>,
    pub w_down: Vec<f32>,
    pub b_down: Option<Vec<f32>>,
}

/// The whole frozen model.
#[derive(Debug)]
pub struct FrozenBase {
    pub config: ModelConfig,
    pub embed: Vec<f32>,
    /// `None` when the LM head is tied to the embeddings.
    pub lm_head: Option<Vec<f32>>,
    pub norm: Vec<f32>,
    pub layers: Vec<BaseLayer>,
    pub rope: RopeTable,
}

fn concat(parts: Vec<Linear>) -> (Vec<f32>, Option<Vec<f32>>) {
    let has_bias = parts.iter().any(|l| l.bias.is_some());
    let bias = has_bias
        .then(|| parts.iter().flat_map(|l| l.bias.clone().unwrap_or_else(|| vec![0.0; l.out_features()])).collect());
    let mut w = Vec::with_capacity(parts.iter().map(|l| l.weight.data.len()).sum());
    for l in parts {
        w.extend_from_slice(&l.weight.data);
    }
    (w, bias)
}

impl FrozenBase {
    /// Takes the model apart into the fused layout (consuming it, so peak memory stays near one copy).
    /// `max_seq` bounds the positions the RoPE table covers.
    pub fn from_model(model: LlamaModel, max_seq: usize) -> Self {
        let LlamaModel { config, embed_tokens, layers, norm, lm_head, .. } = model;
        let rope = RopeTable::from_inv_freq(&config.rope_inv_freq(), config.head_dim, max_seq.max(1));
        let layers = layers
            .into_iter()
            .map(|l| {
                let (w_qkv, b_qkv) = concat(vec![l.q_proj, l.k_proj, l.v_proj]);
                let (w_gu, b_gu) = concat(vec![l.gate_proj, l.up_proj]);
                BaseLayer {
                    ln1: l.input_layernorm,
                    ln2: l.post_attention_layernorm,
                    w_qkv,
                    b_qkv,
                    w_o: l.o_proj.weight.data,
                    b_o: l.o_proj.bias,
                    w_gu,
                    b_gu,
                    w_down: l.down_proj.weight.data,
                    b_down: l.down_proj.bias,
                }
            })
            .collect();
        Self { config, embed: embed_tokens.data, lm_head: lm_head.map(|t| t.data), norm, layers, rope }
    }

    /// The `[vocab, hidden]` LM head (the embeddings when tied).
    pub fn head(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.embed)
    }

    /// Width of the fused q|k|v output.
    pub fn qkv_width(&self) -> usize {
        self.config.q_dim() + 2 * self.config.kv_dim()
    }

    /// Column where a target's output starts inside its fused buffer (q|k|v or gate|up), 0 for o and down.
    pub fn column(&self, target: crate::lora::Target) -> usize {
        use crate::lora::Target;
        let c = &self.config;
        match target {
            Target::K => c.q_dim(),
            Target::V => c.q_dim() + c.kv_dim(),
            Target::Up => c.intermediate_size,
            _ => 0,
        }
    }
}
