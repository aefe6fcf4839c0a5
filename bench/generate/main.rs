//! Our side of the generation benchmark (issue 5): greedy decode of N new tokens after fixed prompt token
//! ids through the ONNX Runtime engine, printing one JSON line per measured run. `bench/generate/run.py`
//! runs it interleaved with the references.
//!
//! cargo run -p bonsai-ml --example generate_bench -- <export-dir> <comma-separated prompt ids> \
//!     [--new-tokens 128] [--threads 2] [--runs 3]
//! Preparing the models (the same library calls as `bonsai model init-tiny|import-gguf` and `bonsai export-onnx`):
//! generate_bench prepare-tiny <hf-dir> <export-dir>
//! generate_bench prepare-gguf <file.gguf> <hf-dir> <export-dir>

use std::path::PathBuf;

use anyhow::{bail, Context};
use bonsai_ml::engine::{Device, Engine, EngineOptions, GenerationParams};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("prepare-tiny") if args.len() == 3 => {
            let spec = bonsai_ml::tiny::TinySpec::default();
            bonsai_ml::tiny::init_tiny(args[1].as_ref(), &spec, None)?;
            return export(&args[1], &args[2]);
        }
        Some("prepare-gguf") if args.len() == 4 => {
            bonsai_ml::gguf::import_gguf(args[1].as_ref(), args[2].as_ref())?;
            return export(&args[2], &args[3]);
        }
        _ => {}
    }
    if args.len() < 2 {
        bail!("usage: generate_bench <export-dir> <prompt ids> [--new-tokens N] [--threads T] [--runs R]");
    }
    let dir = PathBuf::from(&args[0]);
    let prompt: Vec<u32> =
        args[1].split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>().context("prompt ids")?;
    let flag = |name: &str, default: usize| -> anyhow::Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args.get(i + 1).context("flag value")?.parse()?),
            None => Ok(default),
        }
    };
    let (new_tokens, threads, runs) = (flag("--new-tokens", 128)?, flag("--threads", 2)?, flag("--runs", 3)?);
    // BONSAI_ORT_SPIN=1: let ORT's idle intra-op threads spin (see EngineOptions::spin).
    let spin = std::env::var("BONSAI_ORT_SPIN").is_ok_and(|v| v == "1");
    let options = EngineOptions { device: Device::Cpu, threads, sessions: 1, spin };
    let engine = Engine::load(&dir, options)?;
    let params = GenerationParams { max_new_tokens: new_tokens, ignore_eos: true, ..GenerationParams::default() };
    // Warm-up: the first run pays for lazy allocations and weight pre-packing.
    engine.generate_tokens(&prompt, &params, &mut |_| {})?;
    for _ in 0..runs {
        let out = engine.generate_tokens(&prompt, &params, &mut |_| {})?;
        let s = &out.stats;
        println!(
            "{}",
            serde_json::json!({
                "engine": "bonsai",
                "prompt_tokens": s.prompt_tokens,
                "new_tokens": s.completion_tokens,
                "ttft_ms": s.time_to_first_token.as_secs_f64() * 1e3,
                "tokens_per_s": s.tokens_per_second,
                "first_tokens": &out.tokens[..out.tokens.len().min(8)],
            })
        );
    }
    Ok(())
}

fn export(model_dir: &str, out_dir: &str) -> anyhow::Result<()> {
    let report = bonsai_ml::onnx::export_dir(model_dir.as_ref(), out_dir.as_ref())?;
    eprintln!(
        "exported {model_dir} -> {out_dir} in {:.2}s ({:.1} MB of weights)",
        report.seconds,
        report.data_bytes as f64 / 1e6
    );
    Ok(())
}
