//! The Llama-family decoder as an ONNX graph with the KV-cache interface ONNX Runtime GenAI uses:
//!
//! inputs  `input_ids` [batch, sequence_length] i64, `attention_mask` [batch, total_sequence_length] i64,
//!         `position_ids` [batch, sequence_length] i64,
//!         `past_key_values.{i}.key|value` [batch, kv_heads, past_sequence_length, head_dim] f32
//! outputs `logits` [batch, sequence_length, vocab] f32, `present.{i}.key|value` [batch, kv_heads,
//!         total_sequence_length, head_dim] f32
//!
//! Only standard ONNX ops (opset 17). Grouped-query attention does not copy the shared K/V heads: the query
//! heads are viewed as [batch, kv_heads, group, seq, head_dim] and MatMul broadcasts the K/V over the group.

use super::builder::{attr_f, attr_i, attr_ints, GraphBuilder};
use super::linear::{fused_linear, load, load_transposed, Part};
use super::proto::data_type;
use super::OnnxError;
use super::{gqa, rope};
use crate::config::ModelConfig;
use crate::weights::Weights;

/// Large negative score for masked positions: finite so a fully masked row gives a uniform softmax, not NaN.
const MASKED: f32 = -1.0e9;

/// Graph-wide inputs of the attention blocks, per kind of attention.
enum Attn {
    /// `com.microsoft.GroupQueryAttention` (see [`gqa`]).
    Fused(gqa::GqaInputs),
    /// Standard ops: additive mask and gathered cos/sin.
    Standard { mask: String, cos: String, sin: String },
}

/// Adds every node and weight of the decoder to `g`.
///
/// With `last_token_logits`, only the last position goes through the final norm and the LM head: `logits`
/// is then [batch, 1, vocab], all that generation reads, and the prefill skips most of the largest MatMul.
pub(crate) fn build(
    g: &mut GraphBuilder,
    spec: &ModelConfig,
    weights: &Weights,
    options: &super::ExportOptions,
) -> Result<(), OnnxError> {
    let (v, hid) = (spec.vocab_size, spec.hidden_size);
    let embed = load(g, weights, "model.embed_tokens.weight", &[v, hid])?;
    let mut x = g.op("Gather", &[&embed, "input_ids"], vec![attr_i("axis", 0)]);
    // ONNX Runtime's GroupQueryAttention kernels need head_dim to be a multiple of 16.
    let attention_inputs = if options.fused_attention && spec.head_dim.is_multiple_of(16) {
        Attn::Fused(gqa::inputs(g, spec)?)
    } else {
        let mask = attention_bias(g);
        let (cos, sin) = rope::rope_tables(g, spec)?;
        Attn::Standard { mask, cos, sin }
    };

    // With contrib ops allowed, each residual Add and the RMSNorm after it are one
    // com.microsoft.SkipSimplifiedLayerNormalization, as ONNX Runtime GenAI's builder writes them (ONNX Runtime
    // fuses the RMSNorm pattern itself but leaves the residual Add apart).
    let fused_norms = matches!(attention_inputs, Attn::Fused(_));
    let mut h = rms_norm(g, spec, weights, &x, "model.layers.0.input_layernorm.weight")?;
    for layer in 0..spec.num_hidden_layers {
        let p = format!("model.layers.{layer}");
        let attn = match &attention_inputs {
            Attn::Fused(inputs) => gqa::attention(g, spec, weights, layer, &h, inputs)?,
            Attn::Standard { mask, cos, sin } => attention(g, spec, weights, layer, &h, mask, cos, sin)?,
        };
        let post = format!("{p}.post_attention_layernorm.weight");
        let h2 = if fused_norms {
            let (normed, sum) = skip_rms_norm(g, spec, weights, &attn, &x, &post)?;
            x = sum;
            normed
        } else {
            x = g.op("Add", &[&x, &attn], vec![]);
            rms_norm(g, spec, weights, &x, &post)?
        };
        let mlp = mlp(g, spec, weights, &p, &h2, fused_norms)?;
        let next = format!("model.layers.{}.input_layernorm.weight", layer + 1);
        if fused_norms && layer + 1 < spec.num_hidden_layers {
            let (normed, sum) = skip_rms_norm(g, spec, weights, &mlp, &x, &next)?;
            (h, x) = (normed, sum);
        } else {
            x = g.op("Add", &[&x, &mlp], vec![]);
            if layer + 1 < spec.num_hidden_layers {
                h = rms_norm(g, spec, weights, &x, &next)?;
            }
        }
    }

    if options.last_token_logits {
        let last = g.const_i64(&[-1]);
        x = g.op("Gather", &[&x, &last], vec![attr_i("axis", 1)]);
    }
    let h = rms_norm(g, spec, weights, &x, "model.norm.weight")?;
    let head = if spec.tie_word_embeddings || !weights.contains("lm_head.weight") {
        // Tied embeddings: the head is the embedding matrix transposed. The file keeps one copy; ONNX Runtime
        // constant-folds the Transpose once at load.
        g.op("Transpose", &[&embed], vec![attr_ints("perm", &[1, 0])])
    } else {
        load_transposed(g, weights, "lm_head.weight", v, hid)?
    };
    g.op_named("MatMul", &[&h, &head], vec![], "logits");
    Ok(())
}

/// RMSNorm in the exact op pattern ONNX Runtime fuses into SimplifiedLayerNormalization.
fn rms_norm(
    g: &mut GraphBuilder,
    spec: &ModelConfig,
    weights: &Weights,
    x: &str,
    name: &str,
) -> Result<String, OnnxError> {
    let w = load(g, weights, name, &[spec.hidden_size])?;
    let two = g.scalar_f32(2.0);
    let eps = g.scalar_f32(spec.rms_norm_eps as f32);
    let sq = g.op("Pow", &[x, &two], vec![]);
    let mean = g.op("ReduceMean", &[&sq], vec![attr_ints("axes", &[-1]), attr_i("keepdims", 1)]);
    let var = g.op("Add", &[&mean, &eps], vec![]);
    let rms = g.op("Sqrt", &[&var], vec![]);
    let normed = g.op("Div", &[x, &rms], vec![]);
    Ok(g.op("Mul", &[&normed, &w], vec![]))
}

/// `x + residual` and its RMSNorm in one `com.microsoft.SkipSimplifiedLayerNormalization`; returns
/// (normalised, sum).
fn skip_rms_norm(
    g: &mut GraphBuilder,
    spec: &ModelConfig,
    weights: &Weights,
    x: &str,
    residual: &str,
    name: &str,
) -> Result<(String, String), OnnxError> {
    let w = load(g, weights, name, &[spec.hidden_size])?;
    let (normed, sum) = (g.fresh("skip_norm"), g.fresh("residual"));
    g.op_contrib(
        "SkipSimplifiedLayerNormalization",
        &[x, residual, &w],
        vec![attr_f("epsilon", spec.rms_norm_eps as f32)],
        vec![normed.clone(), String::new(), String::new(), sum.clone()],
    );
    Ok((normed, sum))
}

/// Additive attention bias [batch, 1, 1, seq, total]: 0 where a query may attend a key (key position at most
/// the query position, and the key not padding), a large negative number elsewhere.
fn attention_bias(g: &mut GraphBuilder) -> String {
    let total = g.op("Shape", &["attention_mask"], vec![attr_i("start", 1), attr_i("end", 2)]);
    let seq = g.op("Shape", &["input_ids"], vec![attr_i("start", 1), attr_i("end", 2)]);
    let axis0 = g.const_i64(&[0]);
    let total_s = g.op("Squeeze", &[&total, &axis0], vec![]);
    let seq_s = g.op("Squeeze", &[&seq, &axis0], vec![]);
    let past_s = g.op("Sub", &[&total_s, &seq_s], vec![]);
    let zero = scalar_i64(g, 0);
    let one = scalar_i64(g, 1);
    let keys = g.op("Range", &[&zero, &total_s, &one], vec![]);
    let queries = g.op("Range", &[&past_s, &total_s, &one], vec![]);
    let axis1 = g.const_i64(&[1]);
    let queries = g.op("Unsqueeze", &[&queries, &axis1], vec![]);
    let causal = g.op("LessOrEqual", &[&keys, &queries], vec![]);
    let pad = g.op("Cast", &["attention_mask"], vec![attr_i("to", data_type::BOOL as i64)]);
    let axes = g.const_i64(&[1, 2, 3]);
    let pad = g.op("Unsqueeze", &[&pad, &axes], vec![]);
    let allowed = g.op("And", &[&causal, &pad], vec![]);
    let ok = g.scalar_f32(0.0);
    let masked = g.scalar_f32(MASKED);
    g.op("Where", &[&allowed, &ok, &masked], vec![])
}

fn scalar_i64(g: &mut GraphBuilder, v: i64) -> String {
    let one_d = g.const_i64(&[v]);
    let axis0 = g.const_i64(&[0]);
    g.op("Squeeze", &[&one_d, &axis0], vec![])
}

#[allow(clippy::too_many_arguments)]
fn attention(
    g: &mut GraphBuilder,
    spec: &ModelConfig,
    weights: &Weights,
    layer: usize,
    h: &str,
    mask: &str,
    cos: &str,
    sin: &str,
) -> Result<String, OnnxError> {
    let p = format!("model.layers.{layer}.self_attn");
    let (nh, nkv, hd) = (spec.num_attention_heads as i64, spec.num_key_value_heads as i64, spec.head_dim as i64);
    let (q_out, kv_out) = (spec.q_dim(), spec.kv_dim());
    let (qm, km, vm) = (format!("{p}.q_proj"), format!("{p}.k_proj"), format!("{p}.v_proj"));
    let parts =
        [Part { module: &qm, out: q_out }, Part { module: &km, out: kv_out }, Part { module: &vm, out: kv_out }];
    let qkv = fused_linear(g, weights, h, &parts, spec.hidden_size, spec.qkv_bias)?;
    let q = split_heads(g, &qkv[0], nh, hd);
    let k = split_heads(g, &qkv[1], nkv, hd);
    let v = split_heads(g, &qkv[2], nkv, hd);
    let q = rope::rope(g, &q, cos, sin);
    let k = rope::rope(g, &k, cos, sin);

    let past_k = format!("past_key_values.{layer}.key");
    let past_v = format!("past_key_values.{layer}.value");
    let k = g.op_named("Concat", &[&past_k, &k], vec![attr_i("axis", 2)], &format!("present.{layer}.key"));
    let v = g.op_named("Concat", &[&past_v, &v], vec![attr_i("axis", 2)], &format!("present.{layer}.value"));

    // Scale the queries (seq x head_dim values) rather than the scores (seq x total).
    let scale = g.scalar_f32(1.0 / (spec.head_dim as f32).sqrt());
    let q = g.op("Mul", &[&q, &scale], vec![]);
    let group = nh / nkv;
    let q5_shape = g.const_i64(&[0, nkv, group, -1, hd]);
    let q5 = g.op("Reshape", &[&q, &q5_shape], vec![]);
    let axis2 = g.const_i64(&[2]);
    let k5 = g.op("Unsqueeze", &[&k, &axis2], vec![]);
    let v5 = g.op("Unsqueeze", &[&v, &axis2], vec![]);
    let kt = g.op("Transpose", &[&k5], vec![attr_ints("perm", &[0, 1, 2, 4, 3])]);
    let scores = g.op("MatMul", &[&q5, &kt], vec![]);
    let scores = g.op("Add", &[&scores, mask], vec![]);
    let probs = g.op("Softmax", &[&scores], vec![attr_i("axis", -1)]);
    let ctx = g.op("MatMul", &[&probs, &v5], vec![]);
    let heads_shape = g.const_i64(&[0, nh, -1, hd]);
    let ctx = g.op("Reshape", &[&ctx, &heads_shape], vec![]);
    let ctx = g.op("Transpose", &[&ctx], vec![attr_ints("perm", &[0, 2, 1, 3])]);
    let flat = g.const_i64(&[0, 0, nh * hd]);
    let ctx = g.op("Reshape", &[&ctx, &flat], vec![]);
    let om = format!("{p}.o_proj");
    let parts = [Part { module: &om, out: spec.hidden_size }];
    let mut out = fused_linear(g, weights, &ctx, &parts, q_out, spec.o_bias)?;
    Ok(out.remove(0))
}

/// [batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim].
fn split_heads(g: &mut GraphBuilder, y: &str, heads: i64, hd: i64) -> String {
    let shape = g.const_i64(&[0, 0, heads, hd]);
    let y = g.op("Reshape", &[y, &shape], vec![]);
    g.op("Transpose", &[&y], vec![attr_ints("perm", &[0, 2, 1, 3])])
}

/// SwiGLU: down(silu(gate(h)) * up(h)). With `separate`, gate and up are two MatMuls (what ONNX Runtime's
/// CPU kernels run fastest); otherwise one MatMul and a Split.
fn mlp(
    g: &mut GraphBuilder,
    spec: &ModelConfig,
    weights: &Weights,
    p: &str,
    h: &str,
    separate: bool,
) -> Result<String, OnnxError> {
    let (hid, inter) = (spec.hidden_size, spec.intermediate_size);
    let (gm, um, dm) = (format!("{p}.mlp.gate_proj"), format!("{p}.mlp.up_proj"), format!("{p}.mlp.down_proj"));
    let (gate, up) = (Part { module: &gm, out: inter }, Part { module: &um, out: inter });
    let gate_up = if separate {
        let mut gate = fused_linear(g, weights, h, &[gate], hid, spec.mlp_bias)?;
        let mut up = fused_linear(g, weights, h, &[up], hid, spec.mlp_bias)?;
        vec![gate.remove(0), up.remove(0)]
    } else {
        fused_linear(g, weights, h, &[gate, up], hid, spec.mlp_bias)?
    };
    let sig = g.op("Sigmoid", &[&gate_up[0]], vec![]);
    let act = g.op("Mul", &[&gate_up[0], &sig], vec![]);
    let act = g.op("Mul", &[&act, &gate_up[1]], vec![]);
    let parts = [Part { module: &dm, out: hid }];
    let mut down = fused_linear(g, weights, &act, &parts, inter, spec.mlp_bias)?;
    Ok(down.remove(0))
}
