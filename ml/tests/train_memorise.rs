//! End to end through the library entry point: a tiny random model (with a tokenizer trained on the data)
//! is fine-tuned with LoRA on 20 question/answer pairs, merged, and must then answer at least 18 of them
//! exactly with greedy decoding through its chat template.
//!
//! Full-batch steps (all 20 pairs at once): on a random base the answer has to be routed by attention from
//! the country token, which LoRA learns far sooner from clean full-batch gradients than from noisy
//! mini-batches (with batch 4 the model first settles on one capital for every question).

use bonsai_ml::lora::{LoraConfig, Target};
use bonsai_ml::model::{GenerateOptions, LlamaModel};
use bonsai_ml::template::ChatTemplate;
use bonsai_ml::tiny::{init_tiny, TinySpec};
use bonsai_ml::tokenizer::TextTokenizer;
use bonsai_ml::train::optim::AdamWConfig;
use bonsai_ml::train::{train, Device, Hyper, StopReason, TrainConfig};
use std::sync::atomic::AtomicBool;

const PAIRS: [(&str, &str); 20] = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Austria", "Vienna"),
    ("Poland", "Warsaw"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Greece", "Athens"),
    ("Egypt", "Cairo"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Canada", "Ottawa"),
    ("Cuba", "Havana"),
    ("Ireland", "Dublin"),
    ("Hungary", "Budapest"),
];

#[test]
fn a_tiny_model_memorises_twenty_answers_and_the_merged_model_recites_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("capitals.jsonl");
    let lines: Vec<String> = PAIRS
        .iter()
        .map(|(c, a)| serde_json::json!({"question": format!("What is the capital of {c}?"), "answer": a}).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let base = dir.path().join("base");
    let spec = TinySpec {
        hidden_size: 128,
        intermediate_size: 344,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 600,
        max_position_embeddings: 256,
        seed: 1,
    };
    init_tiny(&base, &spec, Some(&data)).expect("tiny model");
    let out = dir.path().join("run");
    let cfg = TrainConfig {
        base: base.clone(),
        data: data.clone(),
        out: out.clone(),
        lora: LoraConfig { rank: 16, alpha: 32.0, dropout: 0.0, targets: Target::ALL.to_vec(), use_rslora: false },
        hyper: Hyper {
            lr: 3e-3,
            epochs: 600,
            max_steps: None,
            batch_size: 20,
            grad_accum: 1,
            warmup_steps: 20,
            schedule: bonsai_ml::train::optim::LrSchedule::Cosine,
            max_grad_norm: 1.0,
            seed: 0,
            adamw: AdamWConfig::default(),
            eval_every: 0,
            patience: None,
            checkpoint_every: 300,
            pad_id: 0,
        },
        max_seq_len: 64,
        eval_split: 0.0,
        eval_data: None,
        resume: None,
        merge: true,
        device: Device::Cpu,
    };
    let mut seen = Vec::new();
    let outcome = train(cfg, &mut |p| seen.push(p.clone()), &AtomicBool::new(false)).expect("training");
    assert_eq!(outcome.stop, StopReason::Completed);
    assert_eq!(outcome.steps, 600);
    assert_eq!(seen.len(), 600, "progress after every step");
    let last = seen.last().unwrap();
    assert_eq!((last.step, last.total_steps), (600, 600));
    // A random tiny model's frozen LM head bounds how confident it can get (small embeddings), so the loss
    // stays well above zero even when every answer is the argmax: check that it fell, then check answers.
    assert!(last.loss < seen[0].loss - 1.0, "loss {} -> {}", seen[0].loss, last.loss);
    assert!(out.join("checkpoint-300/trainer_state.json").exists());
    assert!(out.join("adapter/adapter_model.safetensors").exists());

    let merged = LlamaModel::load(&out.join("merged")).expect("merged model folder");
    let tokenizer = TextTokenizer::load(&out.join("merged")).unwrap();
    let template = ChatTemplate::load(&out.join("merged")).unwrap();
    let stop = tokenizer.token_to_id("<|im_end|>").expect("end-of-turn token");
    let opts = GenerateOptions { max_new_tokens: 12, stop_tokens: vec![stop], ..Default::default() };
    let mut right = 0;
    let mut answers = Vec::new();
    for (country, capital) in PAIRS {
        let prompt = template.render_prompt(None, &format!("What is the capital of {country}?")).unwrap();
        let ids = tokenizer.encode(&prompt, false).unwrap();
        let out = merged.generate(&ids, &opts, |_| true).unwrap();
        let text = tokenizer.decode(&out.tokens, true).unwrap();
        right += usize::from(text.trim() == capital);
        answers.push(text);
    }
    eprintln!("{right}/20 answered exactly: {answers:?}");
    assert!(right >= 18, "{right}/20 right: {answers:?}");
}
