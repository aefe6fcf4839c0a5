//! The Rust forward pass against PyTorch/transformers logits (fixtures made by
//! `bench/reference/make_fixture.py`), and the properties the other engines rely on: the KV cache gives the
//! logits of a full pass, and a saved model loads back unchanged.

use std::path::{Path, PathBuf};

use bonsai_ml::model::{GenerateOptions, KvCache, LlamaModel};
use bonsai_ml::weights::Weights;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// (prompt, logits [tokens][vocab]) that transformers computed.
fn reference(name: &str) -> (Vec<u32>, Vec<Vec<f32>>) {
    let text = std::fs::read_to_string(fixture(name).join("logits.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (serde_json::from_value(v["prompt"].clone()).unwrap(), serde_json::from_value(v["logits"].clone()).unwrap())
}

/// max |ours - theirs| / max |theirs|: the relative error of the whole logits matrix.
fn relative_error(ours: &[f32], theirs: &[Vec<f32>]) -> f32 {
    let flat: Vec<f32> = theirs.iter().flatten().copied().collect();
    assert_eq!(ours.len(), flat.len());
    let scale = flat.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours.iter().zip(&flat).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

fn check_against_transformers(name: &str) {
    let model = LlamaModel::load(&fixture(name)).unwrap();
    let (prompt, expected) = reference(name);
    let logits = model.logits(&prompt).unwrap();
    assert_eq!(logits.shape, vec![prompt.len(), model.config.vocab_size]);
    let err = relative_error(&logits.data, &expected);
    assert!(err < 1e-4, "{name}: relative error {err:e} against transformers");
}

#[test]
fn llama_with_grouped_query_attention_and_tied_embeddings_matches_transformers() {
    check_against_transformers("llama-tiny");
}

#[test]
fn qwen2_with_qkv_bias_and_bf16_weights_matches_transformers() {
    check_against_transformers("qwen2-tiny");
}

#[test]
fn mistral_with_a_sliding_window_shorter_than_the_prompt_matches_transformers() {
    check_against_transformers("mistral-tiny");
}

#[test]
fn the_kv_cache_gives_the_logits_of_a_full_pass() {
    let model = LlamaModel::load(&fixture("llama-tiny")).unwrap();
    let (prompt, _) = reference("llama-tiny");
    let full = model.logits(&prompt).unwrap();
    let vocab = model.config.vocab_size;
    let mut cache = KvCache::new(&model.config);
    let first = model.forward(&prompt[..5], &mut cache).unwrap();
    let diff = first.iter().zip(&full.data).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-5, "prefill logits differ by {diff}");
    for (i, t) in prompt.iter().enumerate().skip(5) {
        let step = model.forward_last(&[*t], &mut cache).unwrap();
        let want = &full.data[i * vocab..(i + 1) * vocab];
        let diff = step.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-5, "position {i}: cached logits differ by {diff}");
    }
    assert_eq!(cache.len(), prompt.len());
}

#[test]
fn greedy_generation_follows_the_argmax_of_full_passes() {
    let model = LlamaModel::load(&fixture("qwen2-tiny")).unwrap();
    let prompt = [1u32, 17, 42];
    let opts = GenerateOptions { max_new_tokens: 6, ..Default::default() };
    let mut streamed = Vec::new();
    let out = model
        .generate(&prompt, &opts, |t| {
            streamed.push(t);
            true
        })
        .unwrap();
    assert_eq!(out.tokens.len(), 6);
    assert_eq!(streamed, out.tokens);
    let mut seq = prompt.to_vec();
    for t in &out.tokens {
        let logits = model.logits(&seq).unwrap();
        let last = &logits.data[(seq.len() - 1) * model.config.vocab_size..];
        let best = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b });
        assert_eq!(*t as usize, best);
        seq.push(*t);
    }
}

#[test]
fn a_saved_model_loads_back_with_the_same_weights() {
    let model = LlamaModel::load(&fixture("qwen2-tiny")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let back = LlamaModel::load(dir.path()).unwrap();
    assert_eq!(back, model);
    // The file is plain f32 safetensors under Hugging Face names.
    let w = Weights::load_file(&dir.path().join("model.safetensors")).unwrap();
    assert!(w.contains("model.layers.1.self_attn.k_proj.bias"));
    assert!(w.contains("lm_head.weight"));
}

#[test]
fn a_token_outside_the_vocabulary_is_refused() {
    let model = LlamaModel::load(&fixture("llama-tiny")).unwrap();
    let err = model.logits(&[1, 128]).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}
