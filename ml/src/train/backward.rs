//! The hand-written backward pass. The base model is frozen, so every base linear layer only propagates the
//! input gradient `dX = dY W` (no weight gradient is ever formed); only LoRA A and B get gradients, which
//! are accumulated into a flat vector laid out like [`LoraParams::values`].

use super::acts::Arena;
use super::base::FrozenBase;
use super::forward::{attn_shape, dims};
use super::kernels::attention::attention_bwd;
use super::kernels::linalg::{linear_bwd_x, MatRef};
use super::kernels::norm::rmsnorm_bwd;
use super::kernels::swiglu::swiglu_bwd;
use crate::lora::linear::{lora_bwd, LoraGrads};
use crate::lora::{LoraParams, Slot, Target};
use rayon::prelude::*;

/// Scratch a LoRA branch's backward uses.
struct Scratch<'a> {
    dh: &'a mut [f32],
    drop_x: &'a mut [f32],
    drop_dx: &'a mut [f32],
    dropped: bool,
}

/// Backward of one LoRA branch: gradients of A and B into `grads`, its input gradient added into `dx`.
#[allow(clippy::too_many_arguments)]
fn branch_bwd(
    lora: &LoraParams,
    s: &Slot,
    grads: &mut [f32],
    dy: MatRef<'_>,
    x: &[f32],
    h: &[f32],
    mask: &[f32],
    dx: &mut [f32],
    sc: &mut Scratch<'_>,
) {
    let rows = dy.rows;
    let d = dims(lora, s, rows);
    let (a, b) = lora.split(&lora.values, s);
    let (da, db) = lora.split_mut(grads, s);
    let h = &h[..rows * d.rank];
    let dh = &mut sc.dh[..rows * d.rank];
    if sc.dropped {
        let n = x.len();
        let (xd, dxd) = (&mut sc.drop_x[..n], &mut sc.drop_dx[..n]);
        xd.par_iter_mut().zip(x).zip(&mask[..n]).for_each(|((o, v), m)| *o = v * m);
        lora_bwd(LoraGrads { da, db, dx: dxd, dx_accumulate: false }, dh, dy, xd, h, a, b, &d);
        dx.par_iter_mut().zip(&*dxd).zip(&mask[..n]).for_each(|((o, g), m)| *o += g * m);
    } else {
        lora_bwd(LoraGrads { da, db, dx, dx_accumulate: true }, dh, dy, x, h, a, b, &d);
    }
}

/// Backpropagates the loss left by [`super::forward::head_loss`] through the model, adding the LoRA
/// gradients into `grads` (so micro-batches accumulate; the caller zeroes it per optimiser step).
pub fn backward(base: &FrozenBase, lora: &LoraParams, ar: &mut Arena, grads: &mut [f32], batch: usize, seq: usize) {
    let c = &base.config;
    let t = batch * seq;
    let (h, i, w, q, v) = (c.hidden_size, c.intermediate_size, base.qkv_width(), c.q_dim(), c.vocab_size);
    let n = ar.head_rows.len();
    linear_bwd_x(&mut ar.head_x[..n * h], &ar.logits[..n * v], base.head(), n, h, v, false);
    let dxn = &mut ar.dxn[..t * h];
    dxn.fill(0.0);
    for (src, &r) in ar.head_x.chunks(h).zip(&ar.head_rows) {
        dxn[r * h..(r + 1) * h].copy_from_slice(src);
    }
    let top = &ar.xs[c.num_hidden_layers][..t * h];
    rmsnorm_bwd(&mut ar.dx[..t * h], dxn, top, &base.norm, &ar.inv_f[..t], false);
    let shape = attn_shape(base, batch, seq);
    let np = batch * c.num_attention_heads * seq;
    let mut sc = Scratch { dh: &mut ar.dh, drop_x: &mut ar.drop_x, drop_dx: &mut ar.drop_dx, dropped: ar.dropped };
    for (l, bl) in base.layers.iter().enumerate().rev() {
        let la = &ar.layers[l];
        let x_in = &ar.xs[l][..t * h];
        let dx = &mut ar.dx[..t * h];
        let dxn = &mut ar.dxn[..t * h];
        // MLP: x_out = x_mid + down(swiglu(gate|up(norm2(x_mid)))).
        let d_act = &mut ar.d_act[..t * i];
        linear_bwd_x(d_act, dx, &bl.w_down, t, i, h, false);
        if let Some(s) = lora.slot(l, Target::Down) {
            let k = Target::Down as usize;
            let dy = MatRef::new(dx, t, h);
            branch_bwd(lora, s, grads, dy, &la.act[..t * i], &la.h[k], &la.mask[k], d_act, &mut sc);
        }
        let d_gu = &mut ar.d_gu[..t * 2 * i];
        swiglu_bwd(d_gu, d_act, &la.gu[..t * 2 * i], i);
        linear_bwd_x(dxn, d_gu, &bl.w_gu, t, h, 2 * i, false);
        for tg in [Target::Gate, Target::Up] {
            if let Some(s) = lora.slot(l, tg) {
                let k = tg as usize;
                let dy = MatRef::strided(&d_gu[base.column(tg)..], t, i, 2 * i);
                branch_bwd(lora, s, grads, dy, &la.xn2[..t * h], &la.h[k], &la.mask[k], dxn, &mut sc);
            }
        }
        rmsnorm_bwd(dx, dxn, &la.x_mid[..t * h], &bl.ln2, &la.inv2[..t], true);
        // Attention: x_mid = x_in + o(attn(rope(q|k|v(norm1(x_in))))).
        let d_o = &mut ar.d_o[..t * q];
        linear_bwd_x(d_o, dx, &bl.w_o, t, q, h, false);
        if let Some(s) = lora.slot(l, Target::O) {
            let k = Target::O as usize;
            let dy = MatRef::new(dx, t, h);
            branch_bwd(lora, s, grads, dy, &la.attn[..t * q], &la.h[k], &la.mask[k], d_o, &mut sc);
        }
        let d_qkv = &mut ar.d_qkv[..t * w];
        attention_bwd(d_qkv, d_o, &la.qkv[..t * w], &la.lse[..np], &shape);
        base.rope.apply(d_qkv, w, c.num_attention_heads + c.num_key_value_heads, seq, true);
        linear_bwd_x(dxn, d_qkv, &bl.w_qkv, t, h, w, false);
        for tg in [Target::Q, Target::K, Target::V] {
            if let Some(s) = lora.slot(l, tg) {
                let k = tg as usize;
                let (inf, outf) = (s.in_features, s.out_features);
                debug_assert_eq!(inf, h);
                let dy = MatRef::strided(&d_qkv[base.column(tg)..], t, outf, w);
                branch_bwd(lora, s, grads, dy, &la.xn1[..t * h], &la.h[k], &la.mask[k], dxn, &mut sc);
            }
        }
        rmsnorm_bwd(dx, dxn, x_in, &bl.ln1, &la.inv1[..t], true);
    }
}
