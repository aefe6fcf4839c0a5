//! Rotary position embedding: cos/sin tables computed at export time and gathered by `position_ids`, applied in
//! transformers' "rotate half" convention.

use super::builder::{attr_i, GraphBuilder};
use super::OnnxError;
use crate::config::ModelConfig;

/// cos/sin tables [max_positions, head_dim] gathered by `position_ids` into [batch, 1, seq, head_dim].
pub(crate) fn rope_tables(g: &mut GraphBuilder, spec: &ModelConfig) -> Result<(String, String), OnnxError> {
    let (cos, sin) = rope_cos_sin(spec);
    let dims = [spec.max_position_embeddings, spec.head_dim];
    let cos = g.weight("rope.cos", &dims, &cos)?;
    let sin = g.weight("rope.sin", &dims, &sin)?;
    let axis1 = g.const_i64(&[1]);
    let mut out = Vec::new();
    for table in [cos, sin] {
        let rows = g.op("Gather", &[&table, "position_ids"], vec![attr_i("axis", 0)]);
        out.push(g.op("Unsqueeze", &[&rows, &axis1], vec![]));
    }
    let sin = out.pop().expect("two tables");
    let cos = out.pop().expect("two tables");
    Ok((cos, sin))
}

/// cos/sin of position * inverse frequency, each half of the head dimension repeated (HF layout).
pub(crate) fn rope_cos_sin(spec: &ModelConfig) -> (Vec<f32>, Vec<f32>) {
    let inv_freq = spec.rope_inv_freq();
    let (rows, hd) = (spec.max_position_embeddings, spec.head_dim);
    let mut cos = vec![0f32; rows * hd];
    let mut sin = vec![0f32; rows * hd];
    for pos in 0..rows {
        for (i, f) in inv_freq.iter().enumerate() {
            // The angle in f32, as the transformers reference computes it (inv_freq is an f32 buffer there).
            let angle = pos as f32 * (*f as f32);
            for j in [i, i + hd / 2] {
                cos[pos * hd + j] = angle.cos();
                sin[pos * hd + j] = angle.sin();
            }
        }
    }
    (cos, sin)
}

/// HF `apply_rotary_pos_emb`: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].
pub(crate) fn rope(g: &mut GraphBuilder, x: &str, cos: &str, sin: &str) -> String {
    let halves = g.op_n("Split", &[x], vec![attr_i("axis", -1)], 2);
    let neg = g.op("Neg", &[&halves[1]], vec![]);
    let rotated = g.op("Concat", &[&neg, &halves[0]], vec![attr_i("axis", -1)]);
    let a = g.op("Mul", &[x, cos], vec![]);
    let b = g.op("Mul", &[&rotated, sin], vec![]);
    g.op("Add", &[&a, &b], vec![])
}
