//! Helpers shared by the trainer's integration tests: small random models and synthetic examples.
#![allow(dead_code)]

use bonsai_ml::config::ModelConfig;
use bonsai_ml::lora::{LoraConfig, LoraParams, Target};
use bonsai_ml::model::LlamaModel;
use bonsai_ml::tiny::{random_model, TinySpec};
use bonsai_ml::train::data::Example;
use rand::{Rng, SeedableRng};

/// A small GQA model; with `qwen` it has q/k/v biases (random, so they matter) and an untied LM head.
pub(crate) fn small_model(qwen: bool) -> LlamaModel {
    let spec = TinySpec {
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 300,
        max_position_embeddings: 64,
        seed: 11,
    };
    let mut json = spec.config().to_json();
    if qwen {
        json["model_type"] = "qwen2".into();
        json["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
        json["tie_word_embeddings"] = false.into();
        json["rope_theta"] = 1_000_000.0.into();
    }
    let config = ModelConfig::from_json(json).expect("valid config");
    let mut model = random_model(config, 5);
    if qwen {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for l in &mut model.layers {
            for p in [&mut l.q_proj, &mut l.k_proj, &mut l.v_proj] {
                let n = p.out_features();
                p.bias = Some((0..n).map(|_| rng.gen_range(-0.5..0.5)).collect());
            }
        }
    }
    model
}

/// Adapters on `targets` with random A and B (B non-zero, unlike a fresh init, so they change the output).
pub(crate) fn random_lora(model: &ModelConfig, targets: &str, rank: usize, dropout: f32) -> LoraParams {
    let config = LoraConfig {
        rank,
        alpha: 2.0 * rank as f32,
        dropout,
        targets: Target::parse_list(targets).expect("targets"),
        use_rslora: false,
    };
    let mut p = LoraParams::init(config, model, 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for s in p.slots.clone() {
        let (_, b) = p.values_mut(&s);
        b.iter_mut().for_each(|v| *v = rng.gen_range(-0.2..0.2));
    }
    p
}

/// Random sequences whose second half is marked as answer tokens.
pub(crate) fn synthetic_examples(n: usize, vocab: u32, seed: u64) -> Vec<Example> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.gen_range(6..14);
            let tokens: Vec<u32> = (0..len).map(|_| rng.gen_range(3..vocab)).collect();
            let train = (0..len).map(|p| p >= len / 2).collect();
            Example { tokens, train, source: 0 }
        })
        .collect()
}
