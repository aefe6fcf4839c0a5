//! Weights of linear layers in the graph. Hugging Face stores them `[out, in]`; the graph multiplies with a
//! plain MatMul, so they are written transposed `[in, out]`. Projections reading the same input (q/k/v,
//! gate/up) are fused into one wider MatMul and split after: fewer, larger kernels, which matters when a
//! decode step is a chain of small matrix-vector products.

use super::builder::{attr_i, GraphBuilder};
use super::OnnxError;
use crate::weights::Weights;

/// One HF tensor as stored, its shape checked.
pub(crate) fn load(g: &mut GraphBuilder, weights: &Weights, name: &str, shape: &[usize]) -> Result<String, OnnxError> {
    let tensor = weights.get(name)?;
    if tensor.shape != shape {
        return Err(OnnxError::Model(format!("{name}: expected shape {shape:?}, found {:?}", tensor.shape)));
    }
    g.weight(name, &tensor.shape, &tensor.data)
}

/// One projection of a fused linear layer: the HF module name (`...q_proj`) and its output width.
pub(crate) struct Part<'a> {
    pub(crate) module: &'a str,
    pub(crate) out: usize,
}

/// `x @ [W_1; W_2; ...]^T (+ [b_1; b_2; ...])`, split back into one output per part. Biases are added where
/// `bias` asks for them or the checkpoint carries them.
pub(crate) fn fused_linear(
    g: &mut GraphBuilder,
    weights: &Weights,
    x: &str,
    parts: &[Part<'_>],
    in_dim: usize,
    bias: bool,
) -> Result<Vec<String>, OnnxError> {
    let y = fused_linear_unsplit(g, weights, x, parts, in_dim, bias)?;
    if parts.len() == 1 {
        return Ok(vec![y]);
    }
    let sizes: Vec<i64> = parts.iter().map(|p| p.out as i64).collect();
    let split = g.const_i64(&sizes);
    Ok(g.op_n("Split", &[&y, &split], vec![attr_i("axis", -1)], parts.len()))
}

/// [`fused_linear`] without the split: the parts side by side in the last dimension.
pub(crate) fn fused_linear_unsplit(
    g: &mut GraphBuilder,
    weights: &Weights,
    x: &str,
    parts: &[Part<'_>],
    in_dim: usize,
    bias: bool,
) -> Result<String, OnnxError> {
    let total: usize = parts.iter().map(|p| p.out).sum();
    let mut fused = vec![0f32; in_dim * total];
    let mut col = 0;
    for part in parts {
        let name = format!("{}.weight", part.module);
        let w = weights.get(&name)?;
        if w.shape != [part.out, in_dim] {
            return Err(OnnxError::Model(format!(
                "{name}: expected shape {:?}, found {:?}",
                [part.out, in_dim],
                w.shape
            )));
        }
        for o in 0..part.out {
            let row = &w.data[o * in_dim..(o + 1) * in_dim];
            for (i, v) in row.iter().enumerate() {
                fused[i * total + col + o] = *v;
            }
        }
        col += part.out;
    }
    let name = parts.iter().map(|p| p.module).collect::<Vec<_>>().join("+");
    let w = g.weight(&format!("{name}.weight_t"), &[in_dim, total], &fused)?;
    let mut y = g.op("MatMul", &[x, &w], vec![]);

    let has_bias = parts.iter().any(|p| bias || weights.contains(&format!("{}.bias", p.module)));
    if has_bias {
        let mut b = Vec::with_capacity(total);
        for part in parts {
            let name = format!("{}.bias", part.module);
            match weights.get(&name) {
                Ok(t) if t.shape == [part.out] => b.extend_from_slice(&t.data),
                Ok(t) => {
                    return Err(OnnxError::Model(format!("{name}: expected shape [{}], found {:?}", part.out, t.shape)))
                }
                // Some parts of a fused layer may have no bias: zeros keep them unchanged.
                Err(_) if !bias => b.extend(std::iter::repeat_n(0.0, part.out)),
                Err(e) => return Err(e.into()),
            }
        }
        let b = g.weight(&format!("{name}.bias"), &[total], &b)?;
        y = g.op("Add", &[&y, &b], vec![]);
    }
    Ok(y)
}

/// A `[out, in]` HF tensor written transposed, `[in, out]`, for `x @ W^T` as one MatMul.
pub(crate) fn load_transposed(
    g: &mut GraphBuilder,
    weights: &Weights,
    name: &str,
    out: usize,
    in_dim: usize,
) -> Result<String, OnnxError> {
    let w = weights.get(name)?;
    if w.shape != [out, in_dim] {
        return Err(OnnxError::Model(format!("{name}: expected shape {:?}, found {:?}", [out, in_dim], w.shape)));
    }
    let mut t = vec![0f32; w.data.len()];
    for o in 0..out {
        for i in 0..in_dim {
            t[i * out + o] = w.data[o * in_dim + i];
        }
    }
    g.weight(&format!("{name}_t"), &[in_dim, out], &t)
}
