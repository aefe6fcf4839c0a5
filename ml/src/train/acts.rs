//! Activation and gradient arenas: every buffer the forward saves and the backward uses, allocated once for
//! the largest batch (`max_batch * max_seq` tokens) and reused by every step as prefix slices.

use super::base::FrozenBase;
use crate::lora::{LoraParams, Target};

/// What one decoder block saves for its backward.
#[derive(Debug, Default)]
pub struct LayerActs {
    pub inv1: Vec<f32>,
    pub xn1: Vec<f32>,
    /// q|k|v after RoPE.
    pub qkv: Vec<f32>,
    /// Log-sum-exp of each attention row `[batch, heads, seq]` (the backward recomputes the probabilities).
    pub lse: Vec<f32>,
    pub attn: Vec<f32>,
    pub x_mid: Vec<f32>,
    pub inv2: Vec<f32>,
    pub xn2: Vec<f32>,
    pub gu: Vec<f32>,
    pub act: Vec<f32>,
    /// LoRA hidden `x A^T` per target (empty where the layer has no adapter).
    pub h: [Vec<f32>; 7],
    /// Dropout masks (0 or 1/keep) per target's input, only when dropout is on.
    pub mask: [Vec<f32>; 7],
}

/// The forward's saved state plus the backward's scratch, for up to `cap` tokens.
#[derive(Debug)]
pub struct Arena {
    pub cap: usize,
    pub max_seq: usize,
    /// Residual stream entering each block, then the one leaving the last (`layers + 1` buffers).
    pub xs: Vec<Vec<f32>>,
    pub layers: Vec<LayerActs>,
    pub inv_f: Vec<f32>,
    pub xn_f: Vec<f32>,
    /// Rows of `xn_f` whose logits are needed (the counted tokens), gathered.
    pub head_x: Vec<f32>,
    pub head_rows: Vec<usize>,
    /// Logits of the gathered rows, overwritten by their gradient.
    pub logits: Vec<f32>,
    // Backward scratch.
    pub dx: Vec<f32>,
    pub dxn: Vec<f32>,
    pub d_act: Vec<f32>,
    pub d_gu: Vec<f32>,
    pub d_o: Vec<f32>,
    pub d_qkv: Vec<f32>,
    pub dh: Vec<f32>,
    /// Dropped-out LoRA input (forward) and its gradient (backward), `[cap, max in_features]`.
    pub drop_x: Vec<f32>,
    pub drop_dx: Vec<f32>,
    /// Whether the last forward dropped out LoRA inputs (the backward must then apply the masks).
    pub dropped: bool,
}

impl Arena {
    /// Allocates for batches of at most `max_batch` sequences of at most `max_seq` tokens.
    pub fn new(base: &FrozenBase, lora: &LoraParams, max_batch: usize, max_seq: usize) -> Self {
        let c = &base.config;
        let cap = max_batch * max_seq;
        let (h, i, qkv_w, q) = (c.hidden_size, c.intermediate_size, base.qkv_width(), c.q_dim());
        let lse = max_batch * c.num_attention_heads * max_seq;
        let r = lora.config.rank;
        let dropout = lora.config.dropout > 0.0;
        let z = |n: usize| vec![0.0f32; n];
        let layers = (0..c.num_hidden_layers)
            .map(|l| {
                let mut la = LayerActs {
                    inv1: z(cap),
                    xn1: z(cap * h),
                    qkv: z(cap * qkv_w),
                    lse: z(lse),
                    attn: z(cap * q),
                    x_mid: z(cap * h),
                    inv2: z(cap),
                    xn2: z(cap * h),
                    gu: z(cap * 2 * i),
                    act: z(cap * i),
                    ..Default::default()
                };
                for t in Target::ALL {
                    if let Some(s) = lora.slot(l, t) {
                        la.h[t as usize] = z(cap * r);
                        if dropout {
                            la.mask[t as usize] = z(cap * s.in_features);
                        }
                    }
                }
                la
            })
            .collect();
        let max_in = if dropout { lora.slots.iter().map(|s| s.in_features).max().unwrap_or(0) } else { 0 };
        Self {
            cap,
            max_seq,
            xs: (0..=c.num_hidden_layers).map(|_| z(cap * h)).collect(),
            layers,
            inv_f: z(cap),
            xn_f: z(cap * h),
            head_x: z(cap * h),
            head_rows: Vec::with_capacity(cap),
            logits: z(cap * c.vocab_size),
            dx: z(cap * h),
            dxn: z(cap * h),
            d_act: z(cap * i),
            d_gu: z(cap * 2 * i),
            d_o: z(cap * q),
            d_qkv: z(cap * qkv_w),
            dh: z(cap * r),
            drop_x: z(cap * max_in),
            drop_dx: z(cap * max_in),
            dropped: false,
        }
    }

    /// Bytes held by the arena (reported as part of the trainer's memory).
    pub fn bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|a| {
                let fixed = [&a.inv1, &a.xn1, &a.qkv, &a.lse, &a.attn, &a.x_mid, &a.inv2, &a.xn2, &a.gu, &a.act];
                fixed.iter().map(|v| v.len()).sum::<usize>() + a.h.iter().chain(&a.mask).map(Vec::len).sum::<usize>()
            })
            .sum();
        let rest = [
            &self.inv_f,
            &self.xn_f,
            &self.head_x,
            &self.logits,
            &self.dx,
            &self.dxn,
            &self.d_act,
            &self.d_gu,
            &self.d_o,
            &self.d_qkv,
            &self.dh,
            &self.drop_x,
            &self.drop_dx,
        ];
        4 * (l + self.xs.iter().map(Vec::len).sum::<usize>() + rest.iter().map(|v| v.len()).sum::<usize>())
    }
}
