//! `bonsai train`: LoRA fine-tuning from the command line, with a progress bar.

use crate::lora::{LoraConfig, Target};
use crate::train::optim::AdamWConfig;
use crate::train::{train, Device, Hyper, TrainConfig};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Arguments of `bonsai train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Base model folder (Hugging Face layout).
    #[arg(long)]
    pub base: PathBuf,
    /// Dataset file: question/answer, Alpaca or chat records as JSONL, JSON or CSV.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (adapter/, checkpoint-<step>/, merged/).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f32,
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Comma list of target layers: q,k,v,o,gate,up,down (or q_proj, ...), or `all`.
    #[arg(long, default_value = "q,v")]
    pub targets: String,
    /// Scale adapters by alpha / sqrt(rank) (rsLoRA).
    #[arg(long)]
    pub rslora: bool,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f32,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Stop after this many optimiser steps (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 512)]
    pub max_seq_len: usize,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// Learning-rate schedule after the warm-up: constant, linear or cosine.
    #[arg(long, default_value = "cosine", value_parser = parse_schedule)]
    pub schedule: crate::train::optim::LrSchedule,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of the data held out for validation.
    #[arg(long, default_value_t = 0.0)]
    pub eval_split: f32,
    /// Evaluate every N steps (0: at the end only).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Early stopping: evaluations without improvement before stopping.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Write a checkpoint every N steps (0: never).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue from a checkpoint-<step> folder.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Also write the merged model to <out>/merged.
    #[arg(long)]
    pub merge: bool,
    /// Then export the merged model to ONNX in <out>/onnx (implies --merge), ready to serve.
    #[arg(long)]
    pub export_onnx: bool,
    /// cpu, cuda or emulated-gpu. cuda needs a build with `--features cuda`, an NVIDIA driver and the CUDA 13
    /// cuBLAS and NVRTC libraries (choose the GPU with CUDA_VISIBLE_DEVICES); emulated-gpu runs the CUDA
    /// trainer's code path on the CPU (slow; for checking it without a GPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<()> {
    let device: Device = args.device.parse().map_err(anyhow::Error::msg)?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("configuring worker threads")?;
    }
    let targets = Target::parse_list(&args.targets).map_err(anyhow::Error::msg).context("--targets")?;
    let cfg = TrainConfig {
        base: args.base,
        data: args.data,
        out: args.out.clone(),
        lora: LoraConfig {
            rank: args.rank,
            alpha: args.alpha,
            dropout: args.dropout,
            targets,
            use_rslora: args.rslora,
        },
        hyper: Hyper {
            lr: args.lr,
            epochs: args.epochs,
            max_steps: args.max_steps,
            batch_size: args.batch_size,
            grad_accum: args.grad_accum,
            warmup_steps: args.warmup_steps,
            schedule: args.schedule,
            max_grad_norm: args.max_grad_norm,
            seed: args.seed,
            adamw: AdamWConfig { weight_decay: args.weight_decay, ..AdamWConfig::default() },
            eval_every: args.eval_every,
            patience: args.patience,
            checkpoint_every: args.checkpoint_every,
            pad_id: 0,
        },
        max_seq_len: args.max_seq_len,
        eval_split: args.eval_split,
        eval_data: None,
        resume: args.resume,
        merge: args.merge || args.export_onnx,
        device,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}").context("progress bar template")?);
    let mut last_eval = None;
    let mut on_progress = |p: &crate::train::Progress| {
        bar.set_length(p.total_steps as u64);
        bar.set_position(p.step as u64);
        if p.eval_loss.is_some() {
            last_eval = p.eval_loss;
        }
        let eval = last_eval.map(|e| format!(" eval {e:.4}")).unwrap_or_default();
        bar.set_message(format!(
            "epoch {:.2} loss {:.4}{eval} lr {:.2e} {:.0} tok/s ETA {:.0}s",
            p.epoch, p.loss, p.lr, p.tokens_per_sec, p.eta_secs
        ));
    };
    let outcome = train(cfg, &mut on_progress, &AtomicBool::new(false)).context("training")?;
    bar.finish();
    println!(
        "{:?} after {} steps on {} ({} training / {} validation examples); adapter in {}",
        outcome.stop,
        outcome.steps,
        outcome.device,
        outcome.train_examples,
        outcome.eval_examples,
        outcome.adapter_dir.display()
    );
    if let Some(e) = outcome.best_eval_loss {
        println!("best eval loss {e:.4}");
    }
    if let Some(m) = outcome.merged_dir {
        println!("merged model in {}", m.display());
        if args.export_onnx {
            // The last step of a training job: the merged weights as a self-contained ONNX folder.
            let out = args.out.join("onnx");
            let report = crate::onnx::export_dir(&m, &out).context("exporting the merged model to ONNX")?;
            println!(
                "ONNX export in {} ({:.2} s; model.onnx {} bytes, weights {} bytes)",
                out.display(),
                report.seconds,
                report.model_bytes,
                report.data_bytes
            );
        }
    }
    Ok(())
}

fn parse_schedule(name: &str) -> Result<crate::train::optim::LrSchedule, String> {
    crate::train::optim::LrSchedule::parse(name).ok_or_else(|| format!("{name:?}: use constant, linear or cosine"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    #[derive(Parser)]
    struct MergeCli {
        #[command(flatten)]
        merge: crate::cli::merge::MergeArgs,
    }

    #[test]
    fn train_then_merge_from_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let data = d.join("qa.jsonl");
        std::fs::write(
            &data,
            "{\"question\": \"hi?\", \"answer\": \"hello\"}\n{\"question\": \"bye?\", \"answer\": \"ciao\"}\n",
        )
        .unwrap();
        let spec = crate::tiny::TinySpec {
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 2,
            vocab_size: 300,
            max_position_embeddings: 64,
            seed: 0,
        };
        crate::tiny::init_tiny(&d.join("base"), &spec, Some(&data)).unwrap();
        let p = |s: &str| d.join(s).display().to_string();
        let args = [
            "t",
            "--base",
            &p("base"),
            "--data",
            &p("qa.jsonl"),
            "--out",
            &p("out"),
            "--targets",
            "q_proj,v_proj",
            "--max-steps",
            "2",
            "--batch-size",
            "1",
            "--checkpoint-every",
            "1",
            "--merge",
            "--export-onnx",
        ];
        run(Cli::parse_from(args).train).unwrap();
        for f in [
            "adapter/adapter_config.json",
            "checkpoint-1/optimizer.safetensors",
            "merged/model.safetensors",
            "onnx/model.onnx",
            "onnx/model.onnx.data",
            "onnx/tokenizer.json",
        ] {
            assert!(d.join("out").join(f).exists(), "{f} written");
        }
        let cfg = std::fs::read_to_string(d.join("out/adapter/adapter_config.json")).unwrap();
        assert!(cfg.contains("\"q_proj\"") && cfg.contains("\"v_proj\""));
        let merge = ["m", "--base", &p("base"), "--adapter", &p("out/adapter"), "--out", &p("merged2")];
        crate::cli::merge::run(MergeCli::parse_from(merge).merge).unwrap();
        assert_eq!(
            std::fs::read(d.join("merged2/model.safetensors")).unwrap(),
            std::fs::read(d.join("out/merged/model.safetensors")).unwrap()
        );
        let bad = ["t", "--base", &p("base"), "--data", &p("qa.jsonl"), "--out", &p("o2"), "--device", "cuda"];
        let err = run(Cli::parse_from(bad).train).unwrap_err();
        assert!(format!("{err:#}").contains("device cuda: "), "{err:#}");
        // The CUDA trainer's code path, emulated on the CPU, trains from the command line too.
        let o3 = p("o3");
        let emu =
            [&args[..5], &["--out", &o3, "--device", "emulated-gpu", "--max-steps", "2", "--batch-size", "1"]].concat();
        run(Cli::parse_from(emu).train).unwrap();
        assert!(d.join("o3/adapter/adapter_model.safetensors").exists());
    }
}
