//! The LoRA branch of a linear layer: `y += scale * (x A^T) B^T`, with `A: [r, in]` and `B: [out, r]`.
//!
//! The base weight `W` is frozen: its product and its input gradient `dY W` are done by the caller with the
//! plain linear kernels, and `W` gets no gradient. Here only A and B get gradients, plus the branch's share
//! of the input gradient. The output may be a column block of a wider buffer (the fused q|k|v projection),
//! hence the views.

use crate::train::kernels::linalg::{matmul, MatMut, MatRef, Par};

/// Shapes of one LoRA branch.
#[derive(Debug, Clone, Copy)]
pub struct LoraDims {
    pub rows: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub rank: usize,
    pub scale: f32,
}

/// Forward: writes `h = x A^T` (`[rows, r]`, saved for the backward) and adds `scale * h B^T` into `y`.
pub fn lora_fwd(y: MatMut<'_>, h: &mut [f32], x: &[f32], a: &[f32], b: &[f32], d: &LoraDims) {
    matmul(
        MatMut::new(h, d.rows, d.rank),
        MatRef::new(x, d.rows, d.in_features),
        MatRef::new(a, d.rank, d.in_features).t(),
        1.0,
        false,
        Par::Threads,
    );
    matmul(y, MatRef::new(h, d.rows, d.rank), MatRef::new(b, d.out_features, d.rank).t(), d.scale, true, Par::Threads);
}

/// Where the backward writes: gradients of A and B are always accumulated (gradient accumulation over
/// micro-batches); the input gradient is added to or written into `dx` as `dx_accumulate` says.
pub struct LoraGrads<'a> {
    pub da: &'a mut [f32],
    pub db: &'a mut [f32],
    pub dx: &'a mut [f32],
    pub dx_accumulate: bool,
}

/// Backward from `dy` (a view of `[rows, out]`), given the forward's input `x` and saved `h`; `dh` is
/// `[rows, r]` scratch.
#[allow(clippy::too_many_arguments)]
pub fn lora_bwd(
    g: LoraGrads<'_>,
    dh: &mut [f32],
    dy: MatRef<'_>,
    x: &[f32],
    h: &[f32],
    a: &[f32],
    b: &[f32],
    d: &LoraDims,
) {
    // dB += scale * dy^T h
    matmul(
        MatMut::new(g.db, d.out_features, d.rank),
        dy.t(),
        MatRef::new(h, d.rows, d.rank),
        d.scale,
        true,
        Par::Threads,
    );
    // dh = scale * dy B
    matmul(MatMut::new(dh, d.rows, d.rank), dy, MatRef::new(b, d.out_features, d.rank), d.scale, false, Par::Threads);
    // dA += dh^T x
    matmul(
        MatMut::new(g.da, d.rank, d.in_features),
        MatRef::new(dh, d.rows, d.rank).t(),
        MatRef::new(x, d.rows, d.in_features),
        1.0,
        true,
        Par::Threads,
    );
    // dx (+)= dh A
    matmul(
        MatMut::new(g.dx, d.rows, d.in_features),
        MatRef::new(dh, d.rows, d.rank),
        MatRef::new(a, d.rank, d.in_features),
        1.0,
        g.dx_accumulate,
        Par::Threads,
    );
}
