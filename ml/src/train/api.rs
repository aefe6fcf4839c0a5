//! The library entry point: [`train`] reads a base model folder and a dataset file, fine-tunes LoRA adapters
//! and writes them (plus checkpoints and, on request, the merged model). The CLI and the training worker
//! both call it; progress goes through a callback and cancellation through a flag checked every step.

use super::base::FrozenBase;
use super::checkpoint;
use super::data::{encode, read_records, Example};
use super::error::TrainError;
use super::gpu::{self, Accelerator};
use super::session::{Hyper, Progress, Session, StepRecord, StopReason};
use crate::lora::{merge, peft, LoraConfig, LoraParams};
use crate::model::LlamaModel;
use crate::template::ChatTemplate;
use crate::tokenizer::TextTokenizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Where the computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// The first visible CUDA GPU (choose with `CUDA_VISIBLE_DEVICES`); needs the `cuda` feature.
    Cuda,
    /// The CUDA trainer's code path emulated on the CPU: slow, for testing it where no GPU is.
    EmulatedGpu,
}

impl std::str::FromStr for Device {
    type Err = String;

    /// `cpu`, `cuda` or `emulated-gpu` (the names the CLI and the bench take).
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "emulated-gpu" => Ok(Device::EmulatedGpu),
            other => Err(format!("unknown device {other:?} (cpu, cuda or emulated-gpu)")),
        }
    }
}

impl Device {
    /// The device trainer to open (`None` for the CPU trainer).
    pub fn accelerator(self) -> Option<Accelerator> {
        match self {
            Device::Cpu => None,
            Device::Cuda => Some(Accelerator::Cuda(0)),
            Device::EmulatedGpu => Some(Accelerator::Emulated),
        }
    }
}

/// Everything a training run needs.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// A Hugging Face model folder (config.json, safetensors, tokenizer.json, tokenizer_config.json).
    pub base: PathBuf,
    /// A dataset file (question/answer, Alpaca or chat records; JSONL, JSON or CSV).
    pub data: PathBuf,
    /// Output folder: `adapter/`, `checkpoint-<step>/`, `merged/`.
    pub out: PathBuf,
    pub lora: LoraConfig,
    pub hyper: Hyper,
    pub max_seq_len: usize,
    /// Fraction of the examples held out for validation (0 for none).
    pub eval_split: f32,
    /// A validation dataset file to evaluate on instead (then `eval_split` must be 0): every example of
    /// `data` trains.
    pub eval_data: Option<PathBuf>,
    /// A `checkpoint-<step>` folder of an earlier run with the same settings to continue from.
    pub resume: Option<PathBuf>,
    /// Also write the merged model to `<out>/merged/`.
    pub merge: bool,
    pub device: Device,
}

/// What a finished (or stopped) run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub stop: StopReason,
    pub steps: usize,
    pub history: Vec<StepRecord>,
    pub best_eval_loss: Option<f64>,
    pub adapter_dir: PathBuf,
    pub merged_dir: Option<PathBuf>,
    pub train_examples: usize,
    pub eval_examples: usize,
    /// The examples' tokens trained on, every epoch (padding not counted).
    pub trained_tokens: u64,
    /// Where it ran, in words (`cpu (2 threads)`, `cuda:0 (NVIDIA H200, sm_90)`).
    pub device: String,
}

/// Tokenises a dataset for a model folder, dropping examples with nothing to learn after truncation.
pub fn load_examples(base: &Path, data: &Path, max_seq_len: usize) -> Result<Vec<Example>, TrainError> {
    let tokenizer = TextTokenizer::load(base)?;
    let template = ChatTemplate::load(base)?;
    let mut out = Vec::new();
    for (source, r) in read_records(data)?.iter().enumerate() {
        let e = encode(r, &template, &tokenizer, max_seq_len)?;
        if e.counted() > 0 {
            out.push(Example { source, ..e });
        }
    }
    Ok(out)
}

/// Splits off `fraction` of the examples (at least one when the fraction is positive and there are two or
/// more), chosen by a seeded shuffle.
pub fn split(mut examples: Vec<Example>, fraction: f32, seed: u64) -> (Vec<Example>, Vec<Example>) {
    if fraction <= 0.0 || examples.len() < 2 {
        return (examples, Vec::new());
    }
    examples.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n = ((examples.len() as f32 * fraction).round() as usize).clamp(1, examples.len() - 1);
    let eval = examples.split_off(examples.len() - n);
    (examples, eval)
}

/// The file in a run's output folder that names the records held out for evaluation: `{"records": [i, ...]}`,
/// their positions in the data file (counting from 0), ascending. Only written when some are held out.
pub const EVAL_RECORDS_FILE: &str = "eval_records.json";

fn write_eval_records(out: &Path, eval_set: &[Example]) -> Result<(), TrainError> {
    let path = out.join(EVAL_RECORDS_FILE);
    if eval_set.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(&path, e)),
            _ => Ok(()),
        };
    }
    let mut records: Vec<usize> = eval_set.iter().map(|e| e.source).collect();
    records.sort_unstable();
    let json = serde_json::json!({ "records": records }).to_string();
    std::fs::write(&path, json).map_err(|e| TrainError::io(&path, e))
}

/// Copies the tokenizer and generation files a model folder needs next to its weights.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<(), TrainError> {
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
        let src = from.join(f);
        if src.exists() {
            std::fs::copy(&src, to.join(f)).map_err(|e| TrainError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Merges the adapter folder `adapter` into the base model folder `base`, writing a model folder to `out`.
pub fn merge_folders(base: &Path, adapter: &Path, out: &Path) -> Result<(), TrainError> {
    let mut model = LlamaModel::load(base)?;
    let params = peft::load(adapter, &model.config)?;
    merge::merge_into(&mut model, &params)?;
    model.save(out)?;
    copy_tokenizer_files(base, out)
}

/// Runs a LoRA fine-tuning job to completion, cancellation or early stop. `progress` is called after
/// every optimiser step; `cancel` is checked before every step (a cancelled run still saves its adapter, and
/// a checkpoint of the step it reached).
pub fn train(
    cfg: TrainConfig,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<TrainOutcome, TrainError> {
    if let Some(acc) = cfg.device.accelerator() {
        gpu::check_built(acc)?;
    }
    if cfg.lora.rank == 0 || cfg.lora.targets.is_empty() {
        return Err(TrainError::Config("LoRA needs a rank of at least 1 and one target".into()));
    }
    if !(0.0..1.0).contains(&cfg.lora.dropout) || !(0.0..1.0).contains(&cfg.eval_split) {
        return Err(TrainError::Config("dropout and eval split must be in [0, 1)".into()));
    }
    let examples = load_examples(&cfg.base, &cfg.data, cfg.max_seq_len)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| TrainError::io(&cfg.out, e))?;
    let (train_set, eval_set) = match &cfg.eval_data {
        Some(eval_data) => {
            if cfg.eval_split > 0.0 {
                return Err(TrainError::Config("give a validation file or an eval split, not both".into()));
            }
            let eval_set = load_examples(&cfg.base, eval_data, cfg.max_seq_len)?;
            // The held-out records name positions of the training file: none are held out of it.
            write_eval_records(&cfg.out, &[])?;
            (examples, eval_set)
        }
        None => {
            let (train_set, eval_set) = split(examples, cfg.eval_split, cfg.hyper.seed);
            write_eval_records(&cfg.out, &eval_set)?;
            (train_set, eval_set)
        }
    };
    let model = LlamaModel::load(&cfg.base)?;
    let mut hyper = cfg.hyper.clone();
    hyper.pad_id = model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0);
    let lora = LoraParams::init(cfg.lora.clone(), &model.config, hyper.seed);
    let base = FrozenBase::from_model(model, cfg.max_seq_len);
    let (n_train, n_eval) = (train_set.len(), eval_set.len());
    let mut session = Session::on(cfg.device.accelerator(), base, lora, hyper, train_set, eval_set)?;
    if let Some(dir) = &cfg.resume {
        checkpoint::load(&mut session, dir)?;
    }
    let base_name = cfg.base.display().to_string();
    let out = cfg.out.clone();
    let mut save_ckpt = |s: &Session| checkpoint::save(s, &checkpoint::dir_for(&out, s.state.step), &base_name);
    let stop = session.run(progress, cancel, &mut save_ckpt)?;
    // A cancelled run is a pause: its checkpoint lets `resume` continue exactly where it stopped.
    if stop == StopReason::Cancelled && session.state.step > 0 {
        save_ckpt(&session)?;
    }
    let adapter_dir = cfg.out.join("adapter");
    peft::save(&adapter_dir, &session.lora, &base_name)?;
    let merged_dir = if cfg.merge && stop != StopReason::Cancelled {
        let dir = cfg.out.join("merged");
        merge_folders(&cfg.base, &adapter_dir, &dir)?;
        Some(dir)
    } else {
        None
    };
    Ok(TrainOutcome {
        stop,
        steps: session.state.step,
        history: session.state.history.clone(),
        best_eval_loss: session.state.best_eval,
        trained_tokens: session.state.trained_tokens,
        adapter_dir,
        merged_dir,
        train_examples: n_train,
        eval_examples: n_eval,
        device: session.device(),
    })
}
