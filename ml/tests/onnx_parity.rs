//! ONNX Runtime logits equal the Rust forward pass (1e-4 relative) at every step of a 16-token greedy
//! continuation with the KV cache fed back, for each layout the exporter handles.
//! Needs the ONNX Runtime library: `scripts/install-onnxruntime.sh`.

mod onnx_support;

use bonsai_ml::engine::{Device, EngineOptions, OnnxModel};
use bonsai_ml::model::{KvCache, LlamaModel};
use bonsai_ml::onnx;
use onnx_support::{argmax, random_weights, relative_error, tiny_config};

const TOLERANCE: f32 = 1e-4;

fn check_parity(model_type: &str, tied: bool, seed: u64, options: onnx::ExportOptions) {
    let config = tiny_config(model_type, tied);
    let weights = random_weights(&config, seed);
    let dir = tempfile::tempdir().unwrap();
    let report = onnx::export_model(&config, &weights, dir.path(), &options).expect("export");
    assert!(report.data_bytes > 0 && report.model_bytes > 0);

    let reference = LlamaModel::from_weights(config.clone(), weights).expect("reference model");
    let options = EngineOptions { device: Device::Cpu, threads: 1, sessions: 1, spin: false };
    let ort = OnnxModel::load(dir.path(), &options).expect("ONNX Runtime loads the export");

    let prompt: Vec<u32> = vec![1, 17, 42, 5, 88, 23, 9];
    let mut cache = KvCache::new(&config);
    let mut seq = ort.new_sequence().unwrap();
    let mut want = reference.forward_last(&prompt, &mut cache).unwrap();
    let mut got = ort.step(&mut seq, &prompt).unwrap();
    for step in 0..=16 {
        let err = relative_error(&got, &want);
        assert!(err <= TOLERANCE, "{model_type}: step {step}: relative error {err}");
        let next = argmax(&want);
        assert_eq!(argmax(&got), next, "{model_type}: step {step}: greedy tokens differ");
        if step == 16 {
            break;
        }
        want = reference.forward_last(&[next], &mut cache).unwrap();
        got = ort.step(&mut seq, &[next]).unwrap();
    }
    assert_eq!(seq.tokens().len(), prompt.len() + 16);
}

#[test]
fn llama_with_gqa_tied_embeddings_and_the_fused_attention_op_matches_the_rust_forward_pass() {
    check_parity("llama", true, 11, onnx::ExportOptions::default());
}

#[test]
fn qwen2_with_biases_separate_head_standard_ops_and_all_logits_matches_the_rust_forward_pass() {
    let options = onnx::ExportOptions { last_token_logits: false, fused_attention: false };
    check_parity("qwen2", false, 12, options);
}

#[test]
fn qwen2_with_biases_through_the_fused_attention_op_matches_the_rust_forward_pass() {
    check_parity("qwen2", false, 14, onnx::ExportOptions::default());
}

#[test]
fn a_prompt_fed_in_pieces_gives_the_same_logits_as_in_one_prefill() {
    let config = tiny_config("llama", true);
    let dir = tempfile::tempdir().unwrap();
    let options = onnx::ExportOptions::default();
    onnx::export_model(&config, &random_weights(&config, 13), dir.path(), &options).unwrap();
    let ort = OnnxModel::load(dir.path(), &EngineOptions::default()).unwrap();
    let prompt = [3u32, 14, 15, 92, 65, 35];
    let whole = ort.step(&mut ort.new_sequence().unwrap(), &prompt).unwrap();
    let mut seq = ort.new_sequence().unwrap();
    ort.step(&mut seq, &prompt[..2]).unwrap();
    ort.step(&mut seq, &prompt[2..5]).unwrap();
    let pieces = ort.step(&mut seq, &prompt[5..]).unwrap();
    assert!(relative_error(&pieces, &whole) <= TOLERANCE);
}
