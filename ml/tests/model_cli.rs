//! `bonsai model init-tiny` and `bonsai model import-gguf` as the binary parses and runs them.

use bonsai_ml::cli::{run, MlCommand};
use bonsai_ml::config::ModelConfig;
use clap::Parser;

/// The binary mounts [`MlCommand`] at its top level; this mirrors that.
#[derive(Parser)]
struct Bonsai {
    #[command(subcommand)]
    command: MlCommand,
}

fn bonsai(args: &[&str]) -> anyhow::Result<()> {
    let parsed = Bonsai::try_parse_from(std::iter::once("bonsai").chain(args.iter().copied()))?;
    run(parsed.command)
}

#[test]
fn init_tiny_writes_a_loadable_model_of_the_asked_shape() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("data.jsonl");
    std::fs::write(&corpus, "{\"instruction\": \"Say hi\", \"output\": \"hi there\"}\n").unwrap();
    let out = dir.path().join("tiny");
    let out_s = out.to_str().unwrap();
    bonsai(&[
        "model",
        "init-tiny",
        out_s,
        "--corpus",
        corpus.to_str().unwrap(),
        "--hidden-size",
        "32",
        "--intermediate-size",
        "48",
        "--layers",
        "1",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--vocab-size",
        "300",
        "--seed",
        "9",
    ])
    .unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let c = ModelConfig::from_dir(&out).unwrap();
    assert_eq!((c.hidden_size, c.intermediate_size, c.num_hidden_layers), (32, 48, 1));
    assert_eq!((c.num_attention_heads, c.num_key_value_heads, c.vocab_size), (4, 2, 300));
    bonsai_ml::model::LlamaModel::load(&out).unwrap();
}

#[test]
fn import_gguf_names_the_file_it_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.gguf");
    std::fs::write(&bad, b"GGUF").unwrap();
    let err =
        bonsai(&["model", "import-gguf", bad.to_str().unwrap(), dir.path().join("out").to_str().unwrap()]).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("broken.gguf"), "{text}");
}
