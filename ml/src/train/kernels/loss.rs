//! Softmax cross-entropy over the vocabulary with a per-row weight (the loss mask divided by the number of
//! counted tokens), fused with its gradient: the logits buffer is overwritten by `d loss / d logits`.

use super::fastmath;
use rayon::prelude::*;

/// Returns `sum_r weight[r] * (logsumexp(logits[r]) - logits[r, target[r]])` and replaces each row of
/// `logits` by its gradient, `weight[r] * (softmax(logits[r]) - onehot(target[r]))`; rows of weight 0 become 0.
pub fn softmax_xent(logits: &mut [f32], vocab: usize, targets: &[u32], weights: &[f32]) -> f64 {
    assert_eq!(logits.len(), targets.len() * vocab);
    assert_eq!(targets.len(), weights.len());
    // Per-row losses are collected in order and summed sequentially: a rayon `sum` would associate them
    // differently from run to run, and a resumed run must reproduce the loss curve exactly.
    let per_row: Vec<f64> = logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .zip(weights.par_iter())
        .with_min_len(4)
        .map(|((row, &t), &w)| {
            if w == 0.0 {
                row.fill(0.0);
                return 0.0;
            }
            let t = t as usize;
            assert!(t < vocab, "target token outside the vocabulary");
            let target_logit = row[t];
            let max = fastmath::max(row);
            row.iter_mut().for_each(|v| *v = fastmath::exp(*v - max));
            let sum = fastmath::sum(row);
            let scale = w / sum;
            for v in row.iter_mut() {
                *v *= scale;
            }
            row[t] -= w;
            (sum.ln() + max - target_logit) as f64 * w as f64
        })
        .collect();
    per_row.iter().sum()
}
