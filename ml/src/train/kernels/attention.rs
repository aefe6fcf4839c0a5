//! Causal grouped-query attention, forward and backward, one rayon task per sequence of the batch.
//!
//! Inputs live in the fused projection buffer `qkv` of shape `[batch * seq, (heads + 2 * kv_heads) * d]`
//! (q heads, then k heads, then v heads on each row, as the fused q|k|v linear writes them), so a head is a
//! strided view and nothing is copied. Query head `h` reads kv head `h / (heads / kv_heads)`, as
//! transformers' `repeat_kv` does. The forward saves only each row's log-sum-exp `[batch, heads, seq]`;
//! the backward recomputes the probabilities from it one head at a time (as flash attention does), so the
//! memory kept per layer grows with the sequence length, not with its square. Products are done in row
//! blocks that skip the masked upper triangle.

use super::fastmath;
use super::linalg::{matmul, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Row block of the causal products: smaller skips more of the masked triangle, larger amortises calls.
const BLOCK: usize = 32;

/// The dimensions of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Mistral's sliding window: query `i` sees keys `i + 1 - window ..= i` (`None`: all earlier keys).
    pub window: Option<usize>,
}

impl AttnShape {
    /// Width of a row of the fused q|k|v buffer.
    pub fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// Width of a row of the attention output.
    pub fn out_width(&self) -> usize {
        self.heads * self.head_dim
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    fn k_col(&self, h: usize) -> usize {
        (self.heads + h / (self.heads / self.kv_heads)) * self.head_dim
    }

    fn v_col(&self, h: usize) -> usize {
        self.k_col(h) + self.kv_heads * self.head_dim
    }
}

fn blocks(seq: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..seq).step_by(BLOCK).map(move |i0| (i0, (i0 + BLOCK).min(seq)))
}

/// The scaled scores `q k^T / sqrt(d)` of head `h` into `p` (`[seq, seq]`), on the causal blocks only.
fn scores(p: &mut [f32], xb: &[f32], h: usize, s: &AttnShape) {
    let (sq, d, w) = (s.seq, s.head_dim, s.qkv_width());
    let (qc, kc) = (h * d, s.k_col(h));
    for (i0, i1) in blocks(sq) {
        matmul(
            MatMut::strided(&mut p[i0 * sq..], i1 - i0, i1, sq),
            MatRef::strided(&xb[i0 * w + qc..], i1 - i0, d, w),
            MatRef::strided(&xb[kc..], i1, d, w).t(),
            s.scale(),
            false,
            Par::Single,
        );
    }
}

/// The keys query `i` sees: `first..=i` (all earlier keys, or the sliding window's).
fn live_range(i: usize, s: &AttnShape) -> usize {
    s.window.map_or(0, |w| (i + 1).saturating_sub(w))
}

/// `o = softmax(q k^T / sqrt(d) + causal mask) v`, saving each row's log-sum-exp into `lse`.
pub fn attention_fwd(o: &mut [f32], lse: &mut [f32], qkv: &[f32], s: &AttnShape) {
    let (sq, d, w, ow) = (s.seq, s.head_dim, s.qkv_width(), s.out_width());
    assert_eq!(qkv.len(), s.batch * sq * w);
    assert_eq!(o.len(), s.batch * sq * ow);
    assert_eq!(lse.len(), s.batch * s.heads * sq);
    assert_eq!(s.heads % s.kv_heads, 0);
    o.par_chunks_mut(sq * ow).zip(lse.par_chunks_mut(s.heads * sq)).zip(qkv.par_chunks(sq * w)).for_each(
        |((ob, lb), xb)| {
            let mut p = vec![0.0f32; sq * sq];
            for h in 0..s.heads {
                let vc = s.v_col(h);
                scores(&mut p, xb, h, s);
                for (i, (row, l)) in p.chunks_mut(sq).zip(&mut lb[h * sq..(h + 1) * sq]).enumerate() {
                    let (seen, masked) = row.split_at_mut(i + 1);
                    let (outside, live) = seen.split_at_mut(live_range(i, s));
                    outside.fill(0.0);
                    let max = fastmath::max(live);
                    live.iter_mut().for_each(|v| *v = fastmath::exp(*v - max));
                    let sum = fastmath::sum(live);
                    let inv = 1.0 / sum;
                    live.iter_mut().for_each(|v| *v *= inv);
                    masked.fill(0.0);
                    *l = max + sum.ln();
                }
                for (i0, i1) in blocks(sq) {
                    matmul(
                        MatMut::strided(&mut ob[i0 * ow + h * d..], i1 - i0, d, ow),
                        MatRef::strided(&p[i0 * sq..], i1 - i0, i1, sq),
                        MatRef::strided(&xb[vc..], i1, d, w),
                        1.0,
                        false,
                        Par::Single,
                    );
                }
            }
        },
    );
}

/// Writes the gradients of q, k and v (into the fused `dqkv`, same layout as `qkv`) from `d_o`, with
/// the probabilities recomputed from the forward's `lse`.
pub fn attention_bwd(dqkv: &mut [f32], d_o: &[f32], qkv: &[f32], lse: &[f32], s: &AttnShape) {
    let (sq, d, w, ow) = (s.seq, s.head_dim, s.qkv_width(), s.out_width());
    assert_eq!(qkv.len(), s.batch * sq * w);
    assert_eq!(dqkv.len(), qkv.len());
    assert_eq!(d_o.len(), s.batch * sq * ow);
    assert_eq!(lse.len(), s.batch * s.heads * sq);
    let rep = s.heads / s.kv_heads;
    let scale = s.scale();
    dqkv.par_chunks_mut(sq * w)
        .zip(d_o.par_chunks(sq * ow))
        .zip(qkv.par_chunks(sq * w))
        .zip(lse.par_chunks(s.heads * sq))
        .for_each(|(((gb, dob), xb), lb)| {
            let mut ds = vec![0.0f32; sq * sq];
            let mut p = vec![0.0f32; sq * sq];
            for h in 0..s.heads {
                // P = exp(S - lse) on the live keys of each row, as the forward had it.
                scores(&mut p, xb, h, s);
                for (i, (row, l)) in p.chunks_mut(sq).zip(&lb[h * sq..(h + 1) * sq]).enumerate() {
                    let (seen, masked) = row.split_at_mut(i + 1);
                    let (outside, live) = seen.split_at_mut(live_range(i, s));
                    outside.fill(0.0);
                    live.iter_mut().for_each(|v| *v = fastmath::exp(*v - l));
                    masked.fill(0.0);
                }
                let p = &p[..];
                let (qc, kc, vc) = (h * d, s.k_col(h), s.v_col(h));
                let first = h % rep == 0;
                // dP = dO V^T on the causal blocks, then dS = P * (dP - rowsum(P * dP)).
                for (i0, i1) in blocks(sq) {
                    matmul(
                        MatMut::strided(&mut ds[i0 * sq..], i1 - i0, i1, sq),
                        MatRef::strided(&dob[i0 * ow + qc..], i1 - i0, d, ow),
                        MatRef::strided(&xb[vc..], i1, d, w).t(),
                        1.0,
                        false,
                        Par::Single,
                    );
                }
                for (i, (dr, pr)) in ds.chunks_mut(sq).zip(p.chunks(sq)).enumerate() {
                    let dot: f32 = dr[..=i].iter().zip(&pr[..=i]).map(|(a, b)| a * b).sum();
                    for (dv, pv) in dr[..=i].iter_mut().zip(&pr[..=i]) {
                        *dv = pv * (*dv - dot);
                    }
                    dr[i + 1..].fill(0.0);
                }
                // dQ = scale * dS K.
                for (i0, i1) in blocks(sq) {
                    matmul(
                        MatMut::strided(&mut gb[i0 * w + qc..], i1 - i0, d, w),
                        MatRef::strided(&ds[i0 * sq..], i1 - i0, i1, sq),
                        MatRef::strided(&xb[kc..], i1, d, w),
                        scale,
                        false,
                        Par::Single,
                    );
                }
                // dK (+)= scale * dS^T Q and dV (+)= P^T dO; row j only sees rows i >= j.
                for (j0, j1) in blocks(sq) {
                    let tail = sq - j0;
                    let ds_t = MatRef { data: &ds[j0 * sq + j0..], rows: j1 - j0, cols: tail, rs: 1, cs: sq };
                    matmul(
                        MatMut::strided(&mut gb[j0 * w + kc..], j1 - j0, d, w),
                        ds_t,
                        MatRef::strided(&xb[j0 * w + qc..], tail, d, w),
                        scale,
                        !first,
                        Par::Single,
                    );
                    let p_t = MatRef { data: &p[j0 * sq + j0..], rows: j1 - j0, cols: tail, rs: 1, cs: sq };
                    matmul(
                        MatMut::strided(&mut gb[j0 * w + vc..], j1 - j0, d, w),
                        p_t,
                        MatRef::strided(&dob[j0 * ow + qc..], tail, d, ow),
                        1.0,
                        !first,
                        Par::Single,
                    );
                }
            }
        });
}
