//! The inference forward pass, one sequence at a time, with a key/value cache so generation feeds only the
//! new tokens.

use rayon::prelude::*;

use super::ops::{apply_rope, rms_norm, rope_tables, silu, softmax_in_place};
use super::{DecoderLayer, LlamaModel};
use crate::config::ModelConfig;
use crate::error::{MlError, Result};
use crate::weights::Tensor;

/// Keys and values of the positions seen so far, per layer, each `[positions, kv_heads * head_dim]`
/// (keys already rotated).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for a model with this config.
    pub fn new(config: &ModelConfig) -> Self {
        KvCache {
            keys: vec![Vec::new(); config.num_hidden_layers],
            values: vec![Vec::new(); config.num_hidden_layers],
            len: 0,
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the first `len` positions (to re-run from a common prefix).
    pub fn truncate(&mut self, len: usize, config: &ModelConfig) {
        let len = len.min(self.len);
        let width = config.kv_dim();
        self.keys.iter_mut().for_each(|k| k.truncate(len * width));
        self.values.iter_mut().for_each(|v| v.truncate(len * width));
        self.len = len;
    }

    /// The cached keys of one layer, `[positions, kv_heads * head_dim]`.
    pub fn keys(&self, layer: usize) -> &[f32] {
        &self.keys[layer]
    }

    /// The cached values of one layer, `[positions, kv_heads * head_dim]`.
    pub fn values(&self, layer: usize) -> &[f32] {
        &self.values[layer]
    }
}

impl LlamaModel {
    /// Logits `[tokens, vocab]` of a whole sequence from position 0 (no cache kept).
    pub fn logits(&self, tokens: &[u32]) -> Result<Tensor> {
        let mut cache = KvCache::new(&self.config);
        let data = self.forward(tokens, &mut cache)?;
        Ok(Tensor { shape: vec![tokens.len(), self.config.vocab_size], data })
    }

    /// Runs `tokens` at the positions following the cache, appends their keys/values to it, and returns the
    /// logits of every new position, `[tokens, vocab]`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let hidden = self.forward_hidden(tokens, cache)?;
        let head = self.lm_head_weight();
        Ok(super::ops::matmul_t(&hidden, &head.data, tokens.len(), self.config.hidden_size, self.config.vocab_size))
    }

    /// Like [`LlamaModel::forward`] but returns only the last position's logits `[vocab]`: what decoding
    /// needs, without the LM-head product for the other positions.
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let hidden = self.forward_hidden(tokens, cache)?;
        let h = self.config.hidden_size;
        let last = &hidden[hidden.len() - h..];
        let head = self.lm_head_weight();
        Ok(super::ops::matmul_t(last, &head.data, 1, h, self.config.vocab_size))
    }

    /// Final-norm hidden states `[tokens, hidden]` of the new positions.
    pub fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let c = &self.config;
        if tokens.is_empty() {
            return Err(MlError::Input("no tokens to run".into()));
        }
        if cache.keys.len() != c.num_hidden_layers {
            return Err(MlError::Input("the KV cache belongs to another model".into()));
        }
        let h = c.hidden_size;
        let mut x = Vec::with_capacity(tokens.len() * h);
        for &t in tokens {
            let t = t as usize;
            if t >= c.vocab_size {
                return Err(MlError::Input(format!("token id {t} is outside the vocabulary ({})", c.vocab_size)));
            }
            x.extend_from_slice(&self.embed_tokens.data[t * h..(t + 1) * h]);
        }
        let (cos, sin) = rope_tables(&c.rope_inv_freq(), cache.len, tokens.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let (keys, values) = (&mut cache.keys[i], &mut cache.values[i]);
            x = block(c, layer, x, tokens.len(), cache.len, keys, values, (&cos, &sin));
        }
        cache.len += tokens.len();
        Ok(rms_norm(&x, &self.norm, c.rms_norm_eps))
    }
}

/// One decoder block over `n` new positions starting at `past`.
#[allow(clippy::too_many_arguments)]
fn block(
    c: &ModelConfig,
    l: &DecoderLayer,
    mut x: Vec<f32>,
    n: usize,
    past: usize,
    keys: &mut Vec<f32>,
    values: &mut Vec<f32>,
    (cos, sin): (&[f32], &[f32]),
) -> Vec<f32> {
    let xn = rms_norm(&x, &l.input_layernorm, c.rms_norm_eps);
    let mut q = l.q_proj.forward(&xn, n);
    let mut k = l.k_proj.forward(&xn, n);
    let v = l.v_proj.forward(&xn, n);
    apply_rope(&mut q, c.num_attention_heads, c.head_dim, cos, sin);
    apply_rope(&mut k, c.num_key_value_heads, c.head_dim, cos, sin);
    keys.extend_from_slice(&k);
    values.extend_from_slice(&v);
    let attn = attention(c, &q, keys, values, n, past);
    let o = l.o_proj.forward(&attn, n);
    x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

    let xn = rms_norm(&x, &l.post_attention_layernorm, c.rms_norm_eps);
    let mut gate = l.gate_proj.forward(&xn, n);
    let up = l.up_proj.forward(&xn, n);
    gate.iter_mut().zip(&up).for_each(|(g, u)| *g = silu(*g) * u);
    let down = l.down_proj.forward(&gate, n);
    x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
    x
}

/// Causal grouped-query attention of `n` new queries against all `past + n` cached keys/values.
/// Returns `[n, heads * head_dim]`.
fn attention(c: &ModelConfig, q: &[f32], keys: &[f32], values: &[f32], n: usize, past: usize) -> Vec<f32> {
    let (heads, hd, kv_w) = (c.num_attention_heads, c.head_dim, c.kv_dim());
    let group = heads / c.num_key_value_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let per_head = |h: usize| -> Vec<f32> {
        let kv_off = (h / group) * hd;
        let mut out = vec![0.0; n * hd];
        let mut scores = Vec::with_capacity(past + n);
        for i in 0..n {
            let pos = past + i;
            // Mistral's window: a query sees itself and the window - 1 positions before it.
            let first = c.sliding_window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let qi = &q[i * heads * hd + h * hd..][..hd];
            scores.clear();
            for j in first..=pos {
                let kj = &keys[j * kv_w + kv_off..][..hd];
                scores.push(qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale);
            }
            softmax_in_place(&mut scores);
            let oi = &mut out[i * hd..(i + 1) * hd];
            for (s, j) in scores.iter().zip(first..=pos) {
                let vj = &values[j * kv_w + kv_off..][..hd];
                oi.iter_mut().zip(vj).for_each(|(o, v)| *o += s * v);
            }
        }
        out
    };
    // Decoding one token is too little work to share out; a prompt is split by head.
    let per: Vec<Vec<f32>> = if n * (past + n) * hd * heads >= 1 << 16 {
        (0..heads).into_par_iter().map(per_head).collect()
    } else {
        (0..heads).map(per_head).collect()
    };
    let mut out = vec![0.0; n * heads * hd];
    for (h, o) in per.iter().enumerate() {
        for i in 0..n {
            out[i * heads * hd + h * hd..][..hd].copy_from_slice(&o[i * hd..(i + 1) * hd]);
        }
    }
    out
}
