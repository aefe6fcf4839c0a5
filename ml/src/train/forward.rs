//! The training forward pass: a Llama decoder with LoRA branches that saves, into the [`Arena`], everything
//! the hand-written backward needs. Sequences are packed `[batch, seq]` row-major, right-padded: a causal
//! model never lets a real token see the padding after it, and padding carries no loss.

use super::acts::Arena;
use super::base::FrozenBase;
use super::kernels::attention::{attention_fwd, AttnShape};
use super::kernels::linalg::{linear_fwd, MatMut};
use super::kernels::loss::softmax_xent;
use super::kernels::norm::rmsnorm_fwd;
use super::kernels::swiglu::swiglu_fwd;
use crate::lora::linear::{lora_fwd, LoraDims};
use crate::lora::{LoraParams, Slot, Target};
use rand::rngs::StdRng;
use rand::Rng;
use rayon::prelude::*;

/// Adds a bias to every row.
pub(crate) fn add_bias(y: &mut [f32], bias: &[f32]) {
    y.par_chunks_mut(bias.len()).with_min_len(16).for_each(|row| row.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
}

pub(crate) fn attn_shape(base: &FrozenBase, batch: usize, seq: usize) -> AttnShape {
    let c = &base.config;
    AttnShape {
        batch,
        seq,
        heads: c.num_attention_heads,
        kv_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        window: c.sliding_window,
    }
}

pub(crate) fn dims(lora: &LoraParams, s: &Slot, rows: usize) -> LoraDims {
    LoraDims {
        rows,
        in_features: s.in_features,
        out_features: s.out_features,
        rank: lora.config.rank,
        scale: lora.config.scale(),
    }
}

/// One LoRA branch added into `y` (a fused buffer `width` wide, the target's block at `col`).
#[allow(clippy::too_many_arguments)]
fn branch(
    lora: &LoraParams,
    s: &Slot,
    col: usize,
    x: &[f32],
    y: &mut [f32],
    width: usize,
    h: &mut [f32],
    mask: &mut [f32],
    drop_x: &mut [f32],
    drop: Option<&mut StdRng>,
) {
    let rows = x.len() / s.in_features;
    let d = dims(lora, s, rows);
    let (a, b) = lora.split(&lora.values, s);
    let input: &[f32] = match drop {
        Some(rng) => {
            let p = lora.config.dropout;
            let keep = 1.0 / (1.0 - p);
            let n = x.len();
            for (m, (xd, xv)) in mask[..n].iter_mut().zip(drop_x[..n].iter_mut().zip(x)) {
                *m = if rng.gen::<f32>() < p { 0.0 } else { keep };
                *xd = xv * *m;
            }
            &drop_x[..n]
        }
        None => x,
    };
    lora_fwd(MatMut::strided(&mut y[col..], rows, s.out_features, width), &mut h[..rows * d.rank], input, a, b, &d);
}

/// Runs the decoder over `tokens` (`batch * seq` ids), saving activations; the residual stream leaving the
/// last block is `arena.xs[layers]`. With `drop` the LoRA inputs are dropped out (training).
pub fn forward_blocks(
    base: &FrozenBase,
    lora: &LoraParams,
    ar: &mut Arena,
    tokens: &[u32],
    batch: usize,
    seq: usize,
    mut drop: Option<&mut StdRng>,
) {
    let c = &base.config;
    let t = batch * seq;
    assert_eq!(tokens.len(), t);
    assert!(t <= ar.cap && seq <= ar.max_seq, "batch larger than the arena");
    if lora.config.dropout <= 0.0 {
        drop = None;
    }
    let (h, i, w, q) = (c.hidden_size, c.intermediate_size, base.qkv_width(), c.q_dim());
    let eps = c.rms_norm_eps as f32;
    let shape = attn_shape(base, batch, seq);
    let np = batch * c.num_attention_heads * seq;
    for (row, &tok) in ar.xs[0][..t * h].chunks_mut(h).zip(tokens) {
        let tok = tok as usize;
        row.copy_from_slice(&base.embed[tok * h..(tok + 1) * h]);
    }
    for (l, bl) in base.layers.iter().enumerate() {
        let (before, after) = ar.xs.split_at_mut(l + 1);
        let x_in = &before[l][..t * h];
        let x_out = &mut after[0][..t * h];
        let la = &mut ar.layers[l];
        rmsnorm_fwd(&mut la.xn1[..t * h], &mut la.inv1[..t], x_in, &bl.ln1, eps);
        let qkv = &mut la.qkv[..t * w];
        linear_fwd(qkv, &la.xn1[..t * h], &bl.w_qkv, t, h, w, false);
        if let Some(b) = &bl.b_qkv {
            add_bias(qkv, b);
        }
        for tg in [Target::Q, Target::K, Target::V] {
            if let Some(s) = lora.slot(l, tg) {
                let k = tg as usize;
                let (hb, mb) = (&mut la.h[k], &mut la.mask[k]);
                branch(lora, s, base.column(tg), &la.xn1[..t * h], qkv, w, hb, mb, &mut ar.drop_x, drop.as_deref_mut());
            }
        }
        base.rope.apply(qkv, w, c.num_attention_heads + c.num_key_value_heads, seq, false);
        attention_fwd(&mut la.attn[..t * q], &mut la.lse[..np], qkv, &shape);
        let x_mid = &mut la.x_mid[..t * h];
        x_mid.copy_from_slice(x_in);
        linear_fwd(x_mid, &la.attn[..t * q], &bl.w_o, t, q, h, true);
        if let Some(b) = &bl.b_o {
            add_bias(x_mid, b);
        }
        if let Some(s) = lora.slot(l, Target::O) {
            let k = Target::O as usize;
            let (hb, mb) = (&mut la.h[k], &mut la.mask[k]);
            branch(lora, s, 0, &la.attn[..t * q], x_mid, h, hb, mb, &mut ar.drop_x, drop.as_deref_mut());
        }
        rmsnorm_fwd(&mut la.xn2[..t * h], &mut la.inv2[..t], x_mid, &bl.ln2, eps);
        let gu = &mut la.gu[..t * 2 * i];
        linear_fwd(gu, &la.xn2[..t * h], &bl.w_gu, t, h, 2 * i, false);
        if let Some(b) = &bl.b_gu {
            add_bias(gu, b);
        }
        for tg in [Target::Gate, Target::Up] {
            if let Some(s) = lora.slot(l, tg) {
                let k = tg as usize;
                let (hb, mb) = (&mut la.h[k], &mut la.mask[k]);
                let col = base.column(tg);
                branch(lora, s, col, &la.xn2[..t * h], gu, 2 * i, hb, mb, &mut ar.drop_x, drop.as_deref_mut());
            }
        }
        swiglu_fwd(&mut la.act[..t * i], gu, i);
        x_out.copy_from_slice(x_mid);
        linear_fwd(x_out, &la.act[..t * i], &bl.w_down, t, i, h, true);
        if let Some(b) = &bl.b_down {
            add_bias(x_out, b);
        }
        if let Some(s) = lora.slot(l, Target::Down) {
            let k = Target::Down as usize;
            let (hb, mb) = (&mut la.h[k], &mut la.mask[k]);
            branch(lora, s, 0, &la.act[..t * i], x_out, h, hb, mb, &mut ar.drop_x, drop.as_deref_mut());
        }
    }
    ar.dropped = drop.is_some();
}

/// The final norm and the LM head on the rows with a non-zero weight, then the weighted cross-entropy of
/// `targets` (next tokens). Returns `sum(weight * nll)`; leaves `d loss / d logits` in `arena.logits`.
pub fn head_loss(base: &FrozenBase, ar: &mut Arena, targets: &[u32], weights: &[f32]) -> f64 {
    let c = &base.config;
    let (h, v) = (c.hidden_size, c.vocab_size);
    let t = targets.len();
    let top = &ar.xs[c.num_hidden_layers][..t * h];
    rmsnorm_fwd(&mut ar.xn_f[..t * h], &mut ar.inv_f[..t], top, &base.norm, c.rms_norm_eps as f32);
    ar.head_rows.clear();
    ar.head_rows.extend((0..t).filter(|&r| weights[r] != 0.0));
    let n = ar.head_rows.len();
    for (dst, &r) in ar.head_x.chunks_mut(h).zip(&ar.head_rows) {
        dst.copy_from_slice(&ar.xn_f[r * h..(r + 1) * h]);
    }
    linear_fwd(&mut ar.logits[..n * v], &ar.head_x[..n * h], base.head(), n, h, v, false);
    let tg: Vec<u32> = ar.head_rows.iter().map(|&r| targets[r]).collect();
    let wt: Vec<f32> = ar.head_rows.iter().map(|&r| weights[r]).collect();
    softmax_xent(&mut ar.logits[..n * v], v, &tg, &wt)
}

/// Logits `[batch * seq, vocab]` of every position, without dropout (evaluation, tests).
pub fn logits(
    base: &FrozenBase,
    lora: &LoraParams,
    ar: &mut Arena,
    tokens: &[u32],
    batch: usize,
    seq: usize,
) -> Vec<f32> {
    let c = &base.config;
    let (h, v, t) = (c.hidden_size, c.vocab_size, batch * seq);
    forward_blocks(base, lora, ar, tokens, batch, seq, None);
    let top = &ar.xs[c.num_hidden_layers][..t * h];
    rmsnorm_fwd(&mut ar.xn_f[..t * h], &mut ar.inv_f[..t], top, &base.norm, c.rms_norm_eps as f32);
    let mut out = vec![0.0; t * v];
    linear_fwd(&mut out, &ar.xn_f[..t * h], base.head(), t, h, v, false);
    out
}
