//! `bonsai model import-gguf`: a Llama-family GGUF becomes a Hugging Face folder (`config.json`,
//! `model.safetensors` in f32, `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`).

use std::path::Path;

use serde_json::json;

use super::reader::{GgufFile, MetaValue, TensorInfo};
use super::vocab;
use crate::config::ModelConfig;
use crate::error::{write_json, MlError, Result};
use crate::weights::{Tensor, Weights};

/// What an import produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    pub architecture: String,
    pub tensors: usize,
    pub parameters: usize,
    pub vocab_size: usize,
    /// Storage types seen in the file and how many tensors had each.
    pub types: Vec<(String, usize)>,
}

/// Imports `gguf_path` into `out_dir` (created if needed).
pub fn import_gguf(gguf_path: &Path, out_dir: &Path) -> Result<ImportReport> {
    let g = GgufFile::open(gguf_path)?;
    let arch = g
        .meta("general.architecture")
        .and_then(MetaValue::as_str)
        .ok_or_else(|| MlError::Gguf("general.architecture is missing".into()))?
        .to_string();
    // llama.cpp permutes q/k rows for its interleaved RoPE only in the `llama` architecture (which also
    // covers Mistral); Qwen2 GGUFs keep Hugging Face's layout.
    let permuted = match arch.as_str() {
        "llama" => true,
        "qwen2" => false,
        other => {
            return Err(MlError::Gguf(format!(
                "architecture {other:?} is not a supported Llama-family decoder (llama, qwen2)"
            )))
        }
    };
    let tok = vocab::rebuild(&g)?;
    let config = config_from_meta(&g, &arch, tok.tokens.len())?;

    let mut weights = Weights::new();
    let mut types: Vec<(String, usize)> = Vec::new();
    for info in &g.tensors {
        let ty = format!("{:?}", info.ggml_type);
        match types.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, n)) => *n += 1,
            None => types.push((ty, 1)),
        }
        let Some(name) = hf_name(&info.name) else {
            let why = if info.name.starts_with("rope_freqs") {
                "it holds Llama 3.1 RoPE scaling factors, which the importer does not carry over"
            } else {
                "it is not part of a Llama-family decoder"
            };
            return Err(MlError::Gguf(format!("tensor {}: {why}", info.name)));
        };
        let mut data = g.read_f32(info)?;
        if permuted && (name.contains("q_proj") || name.contains("k_proj")) {
            let heads = if name.contains("q_proj") { config.num_attention_heads } else { config.num_key_value_heads };
            data = unpermute_rows(&data, info, heads)?;
        }
        weights.insert(name, Tensor::new(info.shape(), data)?);
    }
    let parameters = weights.iter().map(|(_, t)| t.len()).sum();
    // Loading through the model checks every name and shape against the config before anything is written.
    let model = crate::model::LlamaModel::from_weights(config.clone(), weights)?;
    model.save(out_dir)?;
    write_tokenizer_files(&g, &config, &tok, out_dir)?;
    Ok(ImportReport { architecture: arch, tensors: g.tensors.len(), parameters, vocab_size: config.vocab_size, types })
}

/// GGUF tensor names to Hugging Face ones.
fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's `permute`: within each head, GGUF row `2i + j` is Hugging Face row `j * half + i`.
/// Works for a weight (`[heads * head_dim, in]`) and for a bias (`[heads * head_dim]`).
fn unpermute_rows(data: &[f32], info: &TensorInfo, heads: usize) -> Result<Vec<f32>> {
    let shape = info.shape();
    let rows = shape[0];
    let width: usize = shape[1..].iter().product();
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(MlError::Gguf(format!("{}: {rows} rows do not split into {heads} heads", info.name)));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * width;
                let dst = (h * head_dim + j * half + i) * width;
                out[dst..dst + width].copy_from_slice(&data[src..src + width]);
            }
        }
    }
    Ok(out)
}

fn config_from_meta(g: &GgufFile, arch: &str, n_tokens: usize) -> Result<ModelConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let num = |k: &str| -> Result<u64> {
        g.meta(&key(k)).and_then(MetaValue::as_u64).ok_or_else(|| MlError::Gguf(format!("{} is missing", key(k))))
    };
    let hidden = num("embedding_length")?;
    let heads = num("attention.head_count")?;
    let vocab = g.meta(&key("vocab_size")).and_then(MetaValue::as_u64).unwrap_or(n_tokens as u64);
    let token = |k: &str| g.meta(&format!("tokenizer.ggml.{k}")).and_then(MetaValue::as_u64);
    let head_dim = g.meta(&key("attention.key_length")).and_then(MetaValue::as_u64).unwrap_or(hidden / heads);
    let mut v = json!({
        "model_type": arch,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": num("feed_forward_length")?,
        "num_hidden_layers": num("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": g.meta(&key("attention.head_count_kv")).and_then(MetaValue::as_u64).unwrap_or(heads),
        "head_dim": head_dim,
        "max_position_embeddings": g.meta(&key("context_length")).and_then(MetaValue::as_u64).unwrap_or(2048),
        "rms_norm_eps": g.meta(&key("attention.layer_norm_rms_epsilon")).and_then(MetaValue::as_f64).unwrap_or(1e-5),
        "rope_theta": g.meta(&key("rope.freq_base")).and_then(MetaValue::as_f64).unwrap_or(10_000.0),
        "tie_word_embeddings": g.tensor_info("output.weight").is_none(),
        "bos_token_id": token("bos_token_id"),
        "eos_token_id": token("eos_token_id"),
        "pad_token_id": token("padding_token_id"),
    });
    if let (Some(kind), Some(factor)) = (
        g.meta(&key("rope.scaling.type")).and_then(MetaValue::as_str),
        g.meta(&key("rope.scaling.factor")).and_then(MetaValue::as_f64),
    ) {
        v["rope_scaling"] = json!({"rope_type": kind, "factor": factor});
    }
    ModelConfig::from_json(v)
}

fn write_tokenizer_files(g: &GgufFile, config: &ModelConfig, tok: &vocab::RebuiltTokenizer, out: &Path) -> Result<()> {
    write_json(&out.join("tokenizer.json"), &tok.tokenizer_json)?;
    let name = |k: &str| {
        g.meta(&format!("tokenizer.ggml.{k}"))
            .and_then(MetaValue::as_u64)
            .and_then(|id| tok.tokens.get(id as usize).cloned())
    };
    let mut tc = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": config.max_position_embeddings,
        "add_bos_token": g.meta("tokenizer.ggml.add_bos_token").and_then(MetaValue::as_bool).unwrap_or(false),
        "add_eos_token": g.meta("tokenizer.ggml.add_eos_token").and_then(MetaValue::as_bool).unwrap_or(false),
        "bos_token": name("bos_token_id"),
        "eos_token": name("eos_token_id"),
        "unk_token": name("unknown_token_id"),
        "pad_token": name("padding_token_id"),
        "additional_special_tokens": tok.special_ids.iter().map(|id| &tok.tokens[*id as usize]).collect::<Vec<_>>(),
    });
    if let Some(t) = g.meta("tokenizer.chat_template").and_then(MetaValue::as_str) {
        tc["chat_template"] = json!(t);
    }
    write_json(&out.join("tokenizer_config.json"), &tc)?;
    write_json(
        &out.join("generation_config.json"),
        &json!({"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_ids, "do_sample": false}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, hd/2, in).swapaxes(1, 2): row (h, j, i) moves to (h, i, j).
        let (heads, hd, width) = (2, 4, 3);
        let hf: Vec<f32> = (0..heads * hd * width).map(|v| v as f32).collect();
        let mut gguf = vec![0.0; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    let src = (h * hd + j * hd / 2 + i) * width;
                    let dst = (h * hd + i * 2 + j) * width;
                    gguf[dst..dst + width].copy_from_slice(&hf[src..src + width]);
                }
            }
        }
        let info = TensorInfo {
            name: "blk.0.attn_q.weight".into(),
            dims: vec![width as u64, (heads * hd) as u64],
            ggml_type: GgmlType::F32,
            offset: 0,
        };
        assert_eq!(unpermute_rows(&gguf, &info, heads).unwrap(), hf);
    }

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(hf_name("blk.12.attn_output.weight").unwrap(), "model.layers.12.self_attn.o_proj.weight");
        assert_eq!(hf_name("blk.0.attn_q.bias").unwrap(), "model.layers.0.self_attn.q_proj.bias");
        assert_eq!(hf_name("token_embd.weight").unwrap(), "model.embed_tokens.weight");
        assert!(hf_name("rope_freqs.weight").is_none());
    }
}
