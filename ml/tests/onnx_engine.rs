//! The generation engine on an `init-tiny` model exported to ONNX: same greedy tokens as the Rust forward
//! pass, streaming, statistics, seeded sampling, concurrent generations on one loaded engine, and a
//! self-contained export folder. Needs the ONNX Runtime library: `scripts/install-onnxruntime.sh`.

mod onnx_support;

use std::sync::{Arc, Barrier};

use bonsai_ml::engine::{
    cuda_available, ChatMessage, ChatRequest, Device, Engine, EngineError, EngineOptions, FinishReason,
    GenerationParams,
};
use bonsai_ml::model::{GenerateOptions, LlamaModel};
use onnx_support::tiny_export;

fn cpu(sessions: usize) -> EngineOptions {
    EngineOptions { device: Device::Cpu, threads: 1, sessions, spin: false }
}

fn request(text: &str, max_new_tokens: usize) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new("system", "You are a test."), ChatMessage::new("user", text)],
        params: GenerationParams { max_new_tokens, ..GenerationParams::default() },
    }
}

#[test]
fn greedy_generation_matches_the_rust_model_and_streams_its_text() {
    let (_root, model_dir, export_dir) = tiny_export();
    let engine = Engine::load(&export_dir, cpu(1)).unwrap();
    let req = request("Tell me about trees.", 24);
    let prompt = engine.prompt_tokens(&req).unwrap();

    let mut streamed = String::new();
    let out = engine.generate(&req, &mut |piece| streamed.push_str(piece)).unwrap();

    let reference = LlamaModel::load(&model_dir).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 24,
        stop_tokens: engine.stop_tokens().to_vec(),
        ..GenerateOptions::default()
    };
    let want = reference.generate(&prompt, &opts, |_| true).unwrap();
    assert_eq!(out.tokens, want.tokens);
    assert_eq!(streamed, out.text);
    assert_eq!(out.stats.prompt_tokens, prompt.len());
    assert_eq!(out.stats.completion_tokens, out.tokens.len());
    assert!(out.stats.time_to_first_token <= out.stats.total_time);
    if out.finish_reason == FinishReason::Length {
        assert_eq!(out.tokens.len(), 24);
        assert!(out.stats.tokens_per_second > 0.0);
    }
}

#[test]
fn eight_concurrent_generations_equal_the_same_ones_run_one_at_a_time() {
    let (_root, _model, export_dir) = tiny_export();
    for sessions in [1, 2] {
        let engine = Engine::load(&export_dir, cpu(sessions)).unwrap();
        // Four greedy requests, and four sampled ones whose distinct seeds make the outputs differ, so a
        // cache or sampler mixed up between threads would show.
        let requests: Vec<ChatRequest> = (0..8)
            .map(|i| {
                let mut r = request(&format!("Question number {i}?"), 20);
                if i >= 4 {
                    r.params.temperature = 1.0;
                    r.params.seed = i as u64;
                }
                r
            })
            .collect();
        let sequential: Vec<Vec<u32>> =
            requests.iter().map(|r| engine.generate(r, &mut |_| {}).unwrap().tokens).collect();
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = requests
            .into_iter()
            .map(|r| {
                let (engine, barrier) = (Arc::clone(&engine), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    engine.generate(&r, &mut |_| {}).unwrap().tokens
                })
            })
            .collect();
        let concurrent: Vec<Vec<u32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(concurrent, sequential, "{sessions} session(s)");
        assert!(sequential[4..].iter().any(|t| t != &sequential[4]), "seeds should lead to different outputs");
    }
}

#[test]
fn seeded_sampling_repeats_and_max_new_tokens_is_respected() {
    let (_root, _model, export_dir) = tiny_export();
    let engine = Engine::load(&export_dir, cpu(1)).unwrap();
    let mut req = request("Sample something.", 12);
    req.params = GenerationParams {
        max_new_tokens: 12,
        temperature: 1.5,
        top_k: 50,
        top_p: 0.95,
        repetition_penalty: 1.1,
        seed: 42,
        ignore_eos: false,
        stop: Vec::new(),
    };
    let a = engine.generate(&req, &mut |_| {}).unwrap();
    let b = engine.generate(&req, &mut |_| {}).unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert!(a.tokens.len() <= 12);
    let seeds: Vec<Vec<u32>> = (0..4)
        .map(|seed| {
            req.params.seed = seed;
            engine.generate(&req, &mut |_| {}).unwrap().tokens
        })
        .collect();
    assert!(seeds.iter().any(|t| t != &seeds[0]), "different seeds should sample differently");
}

#[test]
fn the_export_folder_is_self_contained_and_loads_after_a_move() {
    let (root, _model, export_dir) = tiny_export();
    for file in
        ["model.onnx", "model.onnx.data", "config.json", "genai_config.json", "tokenizer.json", "tokenizer_config.json"]
    {
        assert!(export_dir.join(file).is_file(), "{file} missing");
    }
    let moved = root.path().join("moved");
    std::fs::rename(&export_dir, &moved).unwrap();
    std::fs::remove_dir_all(root.path().join("model")).unwrap();
    let engine = Engine::load(&moved, cpu(1)).unwrap();
    let out = engine.generate(&request("Hello", 4), &mut |_| {}).unwrap();
    assert!(out.stats.completion_tokens <= 4);
}

#[test]
fn cuda_is_refused_clearly_when_the_library_has_no_cuda_provider() {
    let (_root, _model, export_dir) = tiny_export();
    let options = EngineOptions { device: Device::Cuda, ..cpu(1) };
    match (cuda_available().unwrap(), Engine::load(&export_dir, options)) {
        (false, Err(EngineError::CudaUnavailable(message))) => {
            assert!(message.contains("install-onnxruntime.sh --gpu"), "{message}")
        }
        (true, Ok(engine)) => assert_eq!(engine.model().device(), Device::Cuda),
        (available, other) => panic!("cuda available: {available}, load gave {other:?}"),
    }
    // `auto` always loads: CUDA where present, else the CPU.
    let auto = Engine::load(&export_dir, EngineOptions { device: Device::Auto, ..cpu(1) }).unwrap();
    let expected = if cuda_available().unwrap() { Device::Cuda } else { Device::Cpu };
    assert_eq!(auto.model().device(), expected);
}
