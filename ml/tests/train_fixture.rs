//! The training forward pass against logits computed by PyTorch/transformers (the model core's fixtures,
//! made by `bench/reference/make_fixture.py`): within 1e-4 relative, with a fresh (zero-B) adapter attached.

use bonsai_ml::lora::{LoraConfig, LoraParams, Target};
use bonsai_ml::model::LlamaModel;
use bonsai_ml::train::acts::Arena;
use bonsai_ml::train::base::FrozenBase;
use bonsai_ml::train::forward::logits;
use std::path::Path;

fn check(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(dir.join("logits.json")).expect("fixture logits");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let prompt: Vec<u32> = serde_json::from_value(v["prompt"].clone()).unwrap();
    let expected: Vec<Vec<f32>> = serde_json::from_value(v["logits"].clone()).unwrap();
    let model = LlamaModel::load(&dir).expect("fixture model");
    let cfg = LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, targets: Target::ALL.to_vec(), use_rslora: false };
    let lora = LoraParams::init(cfg, &model.config, 0);
    let base = FrozenBase::from_model(model, prompt.len());
    let mut arena = Arena::new(&base, &lora, 1, prompt.len());
    let ours = logits(&base, &lora, &mut arena, &prompt, 1, prompt.len());
    let flat: Vec<f32> = expected.into_iter().flatten().collect();
    assert_eq!(ours.len(), flat.len());
    let scale = flat.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = ours.iter().zip(&flat).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff / scale < 1e-4, "{name}: relative error {} against transformers", diff / scale);
}

#[test]
fn training_forward_matches_transformers_on_llama_with_gqa_and_tied_embeddings() {
    check("llama-tiny");
}

#[test]
fn training_forward_matches_transformers_on_qwen2_with_qkv_bias() {
    check("qwen2-tiny");
}

#[test]
fn training_forward_matches_transformers_on_mistral() {
    check("mistral-tiny");
}
