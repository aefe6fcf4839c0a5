//! `bonsai export-onnx` and `bonsai generate` as the binary parses and runs them (through the ML command
//! enum the binary mounts). Needs the ONNX Runtime library: `scripts/install-onnxruntime.sh`.

use bonsai_ml::cli::{run, MlCommand};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: MlCommand,
}

fn bonsai(args: &[&str]) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("bonsai").chain(args.iter().copied()))?;
    run(cli.command)
}

#[test]
fn export_onnx_then_generate_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let (model, export) = (root.path().join("m"), root.path().join("x"));
    let spec = bonsai_ml::tiny::TinySpec {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        vocab_size: 300,
        max_position_embeddings: 128,
        seed: 1,
    };
    bonsai_ml::tiny::init_tiny(&model, &spec, None).unwrap();
    let (m, x) = (model.to_str().unwrap(), export.to_str().unwrap());

    bonsai(&["export-onnx", m, x]).unwrap();
    assert!(export.join("model.onnx").is_file() && export.join("tokenizer.json").is_file());

    let generate = ["generate", "--model", x, "--prompt", "Hi", "--max-new-tokens", "3"];
    bonsai(&[&generate[..], &["--system", "Be short.", "--device", "cpu", "--threads", "1"]].concat()).unwrap();
    let sampled = ["--temperature", "0.8", "--top-p", "0.9", "--top-k", "20", "--seed", "3"];
    bonsai(&[&generate[..], &sampled[..], &["--repetition-penalty", "1.2"]].concat()).unwrap();

    let err = bonsai(&["generate", "--model", m, "--prompt", "Hi"]).unwrap_err();
    assert!(format!("{err:#}").contains("genai_config.json"), "{err:#}");
}
