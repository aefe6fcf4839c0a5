//! Rotary position embedding in Hugging Face's `rotate_half` layout.
//!
//! For a head vector of `d` values and position `p`, pair `i < d/2` with `i + d/2` and rotate it by
//! `p * theta^(-2i/d)`. The backward is the inverse rotation applied to the gradient, so nothing needs saving.

use rayon::prelude::*;

/// Precomputed `cos`/`sin` for every position up to `max_pos` and every frequency.
#[derive(Debug, Clone)]
pub struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
    max_pos: usize,
}

impl RopeTable {
    /// Builds the table for plain RoPE (`inv_freq = 1 / theta^(2i/d)`).
    pub fn new(head_dim: usize, max_pos: usize, theta: f64) -> Self {
        let inv: Vec<f64> = (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64)).collect();
        Self::from_inv_freq(&inv, head_dim, max_pos)
    }

    /// Builds the table from inverse frequencies (one per pair; scaled ones for Llama 3 / linear scaling).
    pub fn from_inv_freq(inv: &[f64], head_dim: usize, max_pos: usize) -> Self {
        let half = head_dim / 2;
        assert_eq!(inv.len(), half);
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for &inv_freq in inv {
                // transformers computes the angle in f32: round it first so long positions agree.
                let angle = (p as f32 * inv_freq as f32) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { cos, sin, half, max_pos }
    }

    /// `cos(p * inv_freq[i])` at `p * half + i`.
    pub fn cos(&self) -> &[f32] {
        &self.cos
    }

    /// `sin(p * inv_freq[i])` at `p * half + i`.
    pub fn sin(&self) -> &[f32] {
        &self.sin
    }

    /// Positions the table covers.
    pub fn max_pos(&self) -> usize {
        self.max_pos
    }

    /// Rotates, in place, the first `heads` head vectors of every row of `x` (rows `row_stride` apart, one
    /// row per token; token `t` is at position `t % seq`). `inverse` applies the backward rotation.
    pub fn apply(&self, x: &mut [f32], row_stride: usize, heads: usize, seq: usize, inverse: bool) {
        let half = self.half;
        assert!(seq <= self.max_pos, "sequence longer than the rope table");
        assert!(heads * 2 * half <= row_stride);
        assert_eq!(x.len() % row_stride, 0);
        let sign = if inverse { -1.0f32 } else { 1.0 };
        x.par_chunks_mut(row_stride).enumerate().with_min_len(8).for_each(|(t, row)| {
            let p = t % seq;
            let cos = &self.cos[p * half..(p + 1) * half];
            let sin = &self.sin[p * half..(p + 1) * half];
            for h in 0..heads {
                let (lo, hi) = row[h * 2 * half..(h + 1) * 2 * half].split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (lo[i], hi[i]);
                    let s = sign * sin[i];
                    lo[i] = a * cos[i] - b * s;
                    hi[i] = b * cos[i] + a * s;
                }
            }
        });
    }
}
