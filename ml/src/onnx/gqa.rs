//! Attention through ONNX Runtime's `com.microsoft.GroupQueryAttention` contrib op: one fused kernel for
//! rotary embedding, the KV-cache append, grouped-query attention with the causal mask and the softmax, the
//! same op ONNX Runtime GenAI's own exporter emits. The standard-op graph in [`super::llama`] computes the
//! same thing with ~35 nodes per layer; this is 1, which matters when a decode step is dominated by per-node
//! overhead (small models).
//!
//! Positions come from the attention mask (`seqlens_k`: the number of real tokens), so `position_ids` is
//! left unused by this graph: right for one sequence or right-padded batches, as GenAI feeds it.

use super::builder::{attr_f, attr_i, GraphBuilder};
use super::linear::{fused_linear, fused_linear_unsplit, Part};
use super::proto::data_type;
use super::rope::rope_cos_sin;
use super::OnnxError;
use crate::config::ModelConfig;
use crate::weights::Weights;

/// Graph-wide inputs of every GQA node.
pub(crate) struct GqaInputs {
    seqlens_k: String,
    total_len: String,
    cos: String,
    sin: String,
}

/// `seqlens_k` = real tokens - 1 per row, `total_sequence_length` = mask width, and the [max_pos, head_dim/2]
/// cos/sin caches.
pub(crate) fn inputs(g: &mut GraphBuilder, spec: &ModelConfig) -> Result<GqaInputs, OnnxError> {
    let axis1 = g.const_i64(&[1]);
    let real = g.op("ReduceSum", &["attention_mask", &axis1], vec![attr_i("keepdims", 0)]);
    let one = g.const_i64(&[1]);
    let last = g.op("Sub", &[&real, &one], vec![]);
    let seqlens_k = g.op("Cast", &[&last], vec![attr_i("to", data_type::INT32 as i64)]);
    let width = g.op("Shape", &["attention_mask"], vec![attr_i("start", 1), attr_i("end", 2)]);
    let axis0 = g.const_i64(&[0]);
    let width = g.op("Squeeze", &[&width, &axis0], vec![]);
    let total_len = g.op("Cast", &[&width], vec![attr_i("to", data_type::INT32 as i64)]);

    let (cos_full, sin_full) = rope_cos_sin(spec);
    let (rows, hd) = (spec.max_position_embeddings, spec.head_dim);
    let half = |full: &[f32]| -> Vec<f32> { full.chunks_exact(hd).flat_map(|r| r[..hd / 2].to_vec()).collect() };
    let cos = g.weight("rope.cos_cache", &[rows, hd / 2], &half(&cos_full))?;
    let sin = g.weight("rope.sin_cache", &[rows, hd / 2], &half(&sin_full))?;
    Ok(GqaInputs { seqlens_k, total_len, cos, sin })
}

/// One layer's attention, [batch, seq, hidden] -> [batch, seq, hidden], writing `present.{layer}.*`.
pub(crate) fn attention(
    g: &mut GraphBuilder,
    spec: &ModelConfig,
    weights: &Weights,
    layer: usize,
    h: &str,
    gqa: &GqaInputs,
) -> Result<String, OnnxError> {
    let p = format!("model.layers.{layer}.self_attn");
    let (q_out, kv_out) = (spec.q_dim(), spec.kv_dim());
    let (qm, km, vm) = (format!("{p}.q_proj"), format!("{p}.k_proj"), format!("{p}.v_proj"));
    // Packed QKV: one MatMul, passed whole as `query` with `key`/`value` left empty.
    let parts =
        [Part { module: &qm, out: q_out }, Part { module: &km, out: kv_out }, Part { module: &vm, out: kv_out }];
    let qkv = fused_linear_unsplit(g, weights, h, &parts, spec.hidden_size, spec.qkv_bias)?;
    let past_k = format!("past_key_values.{layer}.key");
    let past_v = format!("past_key_values.{layer}.value");
    let ctx = format!("attn_{layer}");
    g.op_contrib(
        "GroupQueryAttention",
        &[&qkv, "", "", &past_k, &past_v, &gqa.seqlens_k, &gqa.total_len, &gqa.cos, &gqa.sin],
        vec![
            attr_i("num_heads", spec.num_attention_heads as i64),
            attr_i("kv_num_heads", spec.num_key_value_heads as i64),
            attr_i("do_rotary", 1),
            attr_i("rotary_interleaved", 0),
            attr_f("scale", 1.0 / (spec.head_dim as f32).sqrt()),
        ],
        vec![ctx.clone(), format!("present.{layer}.key"), format!("present.{layer}.value")],
    );
    let om = format!("{p}.o_proj");
    let parts = [Part { module: &om, out: spec.hidden_size }];
    let mut out = fused_linear(g, weights, &ctx, &parts, q_out, spec.o_bias)?;
    Ok(out.remove(0))
}
