//! Throughput of the LoRA trainer on a fixed configuration, for `bench/train/run.sh` (which runs it
//! interleaved with the PyTorch + PEFT reference and prints the comparison).
//!
//! `cargo run -p bonsai-ml --example train_bench -- <tiny|smol> [timed steps] [warmup steps]`
//! prints one JSON line: tokens/s, seconds per step, peak resident memory, measured GEMM GFLOP/s.
//!
//! Environment: `BENCH_DEVICE` = `cpu` (default), `cuda` (needs `--features bonsai-ml/cuda`) or
//! `emulated-gpu`; `BENCH_BATCH` / `BENCH_SEQ` override the configuration's batch shape.

use bonsai_ml::config::ModelConfig;
use bonsai_ml::lora::{LoraConfig, LoraParams, Target};
use bonsai_ml::tiny::{random_model, TinySpec};
use bonsai_ml::train::base::FrozenBase;
use bonsai_ml::train::data::Example;
use bonsai_ml::train::gpu::Accelerator;
use bonsai_ml::train::optim::AdamWConfig;
use bonsai_ml::train::{Device, Hyper, Session};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn config(name: &str) -> (ModelConfig, usize, usize) {
    let (spec, batch, seq) = match name {
        "tiny" => (TinySpec::default(), 8, 128),
        "smol" => (
            TinySpec {
                hidden_size: 576,
                intermediate_size: 1536,
                num_hidden_layers: 30,
                num_attention_heads: 9,
                num_key_value_heads: 3,
                vocab_size: 49152,
                max_position_embeddings: 2048,
                seed: 0,
            },
            4,
            128,
        ),
        other => panic!("unknown configuration {other:?} (tiny or smol)"),
    };
    let mut json = spec.config().to_json();
    if name == "smol" {
        json["rope_theta"] = 100000.0.into();
    }
    (ModelConfig::from_json(json).expect("config"), batch, seq)
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    // Fields 14 and 15 of the file; after the command name, indexes 11 and 12.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// GFLOP/s of a 1024^3 f32 product through the same `gemm` path the trainer uses.
fn gemm_gflops() -> f64 {
    let n = 1024;
    let a = vec![0.5f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        bonsai_ml::train::kernels::linalg::linear_fwd(&mut c, &a, &a, n, n, n, false);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("tiny", String::as_str);
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let warmup: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let (config, batch, seq) = config(name);
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let (batch, seq) = (env("BENCH_BATCH").unwrap_or(batch), env("BENCH_SEQ").unwrap_or(seq));
    let device = std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let accelerator = device.parse::<Device>().unwrap_or_else(|e| panic!("BENCH_DEVICE: {e}")).accelerator();
    let vocab = config.vocab_size as u32;
    let model = random_model(config.clone(), 0);
    let lora_cfg =
        LoraConfig { rank: 8, alpha: 16.0, dropout: 0.0, targets: vec![Target::Q, Target::V], use_rslora: false };
    let lora = LoraParams::init(lora_cfg, &config, 0);
    let base = FrozenBase::from_model(model, seq);
    // Every position of every sequence counts, as `labels = input_ids` does in the reference.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let examples: Vec<Example> = (0..batch)
        .map(|_| Example {
            tokens: (0..seq).map(|_| rng.gen_range(0..vocab)).collect(),
            train: vec![true; seq],
            source: 0,
        })
        .collect();
    let hyper = Hyper {
        lr: 1e-4,
        epochs: 1,
        max_steps: Some(steps + warmup),
        batch_size: batch,
        grad_accum: 1,
        warmup_steps: 0,
        schedule: bonsai_ml::train::optim::LrSchedule::Cosine,
        max_grad_norm: 0.0,
        seed: 0,
        adamw: AdamWConfig::default(),
        eval_every: 0,
        patience: None,
        checkpoint_every: 0,
        pad_id: 0,
    };
    // The CUDA backend reads the same variable (cuBLAS TF32 tensor-op math).
    let tf32 = accelerator == Some(Accelerator::Cuda(0)) && std::env::var("BONSAI_CUDA_TF32").is_ok_and(|v| v == "1");
    let mut session = Session::on(accelerator, base, lora, hyper, examples, Vec::new()).expect("session");
    for _ in 0..warmup {
        session.train_step().expect("step");
    }
    let t = Instant::now();
    let cpu0 = cpu_secs();
    let mut tokens = 0;
    let mut loss = 0.0;
    for _ in 0..steps {
        let (l, n) = session.train_step().expect("step");
        tokens += n;
        loss = l;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    println!(
        "{{\"impl\": \"bonsai\", \"config\": \"{name}\", \"device\": \"{}\", \"batch\": {batch}, \"seq\": {seq}, \"tf32\": {tf32}, \"threads\": {}, \"tokens_per_s\": {:.1}, \"step_s\": {:.4}, \"tokens_per_cpu_s\": {:.1}, \"loss\": {loss:.4}, \"peak_rss_mib\": {:.1}, \"trainer_mib\": {:.1}, \"device_mib\": {:.1}, \"gemm_gflops\": {:.1}}}",
        session.device(),
        rayon::current_num_threads(),
        tokens as f64 / secs,
        secs / steps as f64,
        tokens as f64 / cpu.max(1e-9),
        peak_rss_mib(),
        session.memory_bytes() as f64 / (1 << 20) as f64,
        session.device_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        if accelerator.is_none() { gemm_gflops() } else { 0.0 }
    );
}
