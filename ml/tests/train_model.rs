//! The training model against the model core's inference forward (logits equal within 1e-4 relative, with
//! LoRA checked through merging), its whole backward against finite differences, and PEFT adapter files.

mod train_common;

use bonsai_ml::lora::{merge::merge_into, peft, LoraParams};
use bonsai_ml::train::acts::Arena;
use bonsai_ml::train::backward::backward;
use bonsai_ml::train::base::FrozenBase;
use bonsai_ml::train::forward::{forward_blocks, head_loss, logits};
use rand::SeedableRng;
use train_common::{random_lora, small_model};

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

const SEQ_A: [u32; 7] = [5, 17, 200, 3, 99, 42, 7];
const SEQ_B: [u32; 7] = [150, 8, 8, 61, 250, 12, 1];

fn training_logits(model: &bonsai_ml::model::LlamaModel, lora: &LoraParams) -> Vec<f32> {
    let base = FrozenBase::from_model(model.clone(), 16);
    let mut arena = Arena::new(&base, lora, 2, 7);
    let tokens: Vec<u32> = SEQ_A.iter().chain(&SEQ_B).copied().collect();
    logits(&base, lora, &mut arena, &tokens, 2, 7)
}

fn check_against_inference(qwen: bool, targets: &str) {
    let model = small_model(qwen);
    let lora = random_lora(&model.config, targets, 4, 0.0);
    let ours = training_logits(&model, &lora);
    let mut merged = model.clone();
    merge_into(&mut merged, &lora).expect("merge");
    let v = model.config.vocab_size;
    for (b, seq) in [SEQ_A, SEQ_B].iter().enumerate() {
        let reference = merged.logits(seq).expect("inference forward").data;
        let diff = max_rel_diff(&ours[b * 7 * v..(b + 1) * 7 * v], &reference);
        assert!(diff < 1e-4, "qwen={qwen} targets={targets} sequence {b}: relative difference {diff}");
        let plain = model.logits(seq).expect("base forward").data;
        assert!(max_rel_diff(&plain, &reference) > 1e-3, "the adapters must change the logits");
    }
}

#[test]
fn llama_forward_with_lora_equals_the_inference_forward_of_the_merged_model() {
    check_against_inference(false, "q,v");
    check_against_inference(false, "all");
}

#[test]
fn qwen2_forward_with_biases_and_untied_head_equals_the_inference_forward() {
    check_against_inference(true, "q_proj,k_proj,o_proj,down_proj");
}

#[test]
fn a_fresh_adapter_leaves_the_base_model_unchanged() {
    let model = small_model(false);
    let cfg = random_lora(&model.config, "all", 4, 0.0).config;
    let fresh = LoraParams::init(cfg, &model.config, 9);
    let ours = training_logits(&model, &fresh);
    let v = model.config.vocab_size;
    let reference = model.logits(&SEQ_A).expect("forward").data;
    assert!(max_rel_diff(&ours[..7 * v], &reference) < 1e-4);
}

fn loss_and_grads(base: &FrozenBase, lora: &LoraParams, arena: &mut Arena, grads: Option<&mut Vec<f32>>) -> f64 {
    // A fixed seed per call: with dropout on, every evaluation draws the same masks.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let tokens: Vec<u32> = SEQ_A.iter().chain(&SEQ_B).copied().collect();
    let targets: Vec<u32> = tokens.iter().skip(1).chain([&0]).copied().collect();
    let weights: Vec<f32> = (0..14).map(|p| if p % 7 >= 2 && p % 7 < 6 { 0.125 } else { 0.0 }).collect();
    forward_blocks(base, lora, arena, &tokens, 2, 7, Some(&mut rng));
    let loss = head_loss(base, arena, &targets, &weights);
    if let Some(g) = grads {
        backward(base, lora, arena, g, 2, 7);
    }
    loss
}

#[test]
fn whole_model_lora_gradients_match_finite_differences() {
    for (qwen, dropout) in [(false, 0.0), (true, 0.0), (false, 0.3)] {
        let model = small_model(qwen);
        let mut lora = random_lora(&model.config, "all", 3, dropout);
        let base = FrozenBase::from_model(model, 16);
        let mut arena = Arena::new(&base, &lora, 2, 7);
        let mut grads = vec![0.0f32; lora.values.len()];
        loss_and_grads(&base, &lora, &mut arena, Some(&mut grads));
        let gmax = grads.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        assert!(gmax > 1e-3, "gradients are not trivially zero");
        let eps = 1e-2f32;
        // Every adapter's A and B, a few coordinates each.
        for s in lora.slots.clone() {
            for idx in [s.a, s.a + 5, s.b, s.b + 3] {
                let orig = lora.values[idx];
                lora.values[idx] = orig + eps;
                let up = loss_and_grads(&base, &lora, &mut arena, None);
                lora.values[idx] = orig - eps;
                let down = loss_and_grads(&base, &lora, &mut arena, None);
                lora.values[idx] = orig;
                let numeric = ((up - down) / (2.0 * eps as f64)) as f32;
                let err = (numeric - grads[idx]).abs();
                assert!(
                    err < 2e-3 + 2e-2 * grads[idx].abs(),
                    "qwen={qwen} dropout={dropout} layer {} {:?} index {idx}: numeric {numeric} analytic {}",
                    s.layer,
                    s.target,
                    grads[idx]
                );
            }
        }
    }
}

#[test]
fn a_saved_adapter_loads_back_with_peft_names_shapes_and_identical_logits() {
    let model = small_model(false);
    let lora = random_lora(&model.config, "q,v,gate", 4, 0.1);
    let dir = tempfile::tempdir().expect("tempdir");
    peft::save(dir.path(), &lora, "some/base").expect("save");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(cfg["bias"], "none");
    assert_eq!(cfg["use_rslora"], false);
    assert_eq!(cfg["base_model_name_or_path"], "some/base");
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "v_proj", "gate_proj"]));
    assert!((cfg["lora_dropout"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    let w = bonsai_ml::weights::Weights::load_file(&dir.path().join("adapter_model.safetensors")).unwrap();
    let a = w.get("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight").expect("A key");
    assert_eq!(a.shape, vec![4, 32]);
    let b = w.get("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight").expect("B key");
    assert_eq!(b.shape, vec![16, 4]); // kv_heads 2 * head_dim 8
    let g = w.get("base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight").expect("gate key");
    assert_eq!(g.shape, vec![48, 4]);
    assert_eq!(w.len(), 2 * 2 * 3);
    let back = peft::load(dir.path(), &model.config).expect("load");
    assert_eq!(back, lora);
    assert_eq!(training_logits(&model, &back), training_logits(&model, &lora));
}
