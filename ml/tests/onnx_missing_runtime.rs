//! A missing ONNX Runtime library is one clear error naming the install script, not a panic. Its own test
//! binary: the library is loaded once per process, so this process must never find it.

use bonsai_ml::engine::{Engine, EngineError, EngineOptions};

#[test]
fn a_missing_library_is_an_error_that_names_the_install_script() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("ORT_DYLIB_PATH", dir.path().join("no-such-libonnxruntime.so"));
    bonsai_ml::onnx::GenaiConfig::for_model(
        &bonsai_ml::config::ModelConfig::from_json(serde_json::json!({
            "model_type": "llama", "vocab_size": 8, "hidden_size": 4, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 1
        }))
        .unwrap(),
    )
    .save(&dir.path().join("genai_config.json"))
    .unwrap();
    std::fs::write(dir.path().join("model.onnx"), b"").unwrap();
    match Engine::load(dir.path(), EngineOptions::default()) {
        Err(EngineError::Runtime(message)) => {
            assert!(message.contains("scripts/install-onnxruntime.sh"), "{message}");
            assert!(message.contains("no-such-libonnxruntime.so"), "{message}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
}
