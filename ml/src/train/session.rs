//! A training run in memory: the frozen base, the adapters, the optimiser, the data and the run's position
//! (step, epoch, place in the epoch's shuffled order). [`Session::run`] drives it step by step; everything
//! that decides the next step is in [`RunState`] plus the adapter and optimiser moments, which is exactly
//! what a checkpoint stores, so a resumed run repeats the uninterrupted one bit for bit.

use super::acts::Arena;
use super::backward::backward;
use super::base::FrozenBase;
use super::data::{Batch, Example};
use super::error::TrainError;
use super::forward::{forward_blocks, head_loss};
use super::gpu::{self, Accelerator, DeviceSteps};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig, LrSchedule};
use crate::lora::LoraParams;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Optimisation hyper-parameters of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    pub lr: f32,
    pub epochs: usize,
    /// Stop after this many optimiser steps (overrides `epochs` when set).
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub warmup_steps: usize,
    /// The learning-rate schedule after the warm-up (checkpoints written before it existed: cosine).
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Global gradient-norm clip; 0 disables.
    pub max_grad_norm: f32,
    pub seed: u64,
    pub adamw: AdamWConfig,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    pub patience: Option<usize>,
    /// Write `checkpoint-<step>/` every this many steps (0: never).
    pub checkpoint_every: usize,
    /// Token id used to pad batches ([`crate::train::train`] sets it from the model config).
    pub pad_id: u32,
}

/// One optimiser step's record (the loss curve).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub loss: f64,
    pub lr: f32,
    pub eval_loss: Option<f64>,
}

/// Where a run is; with the adapter and the optimiser moments, all a checkpoint needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub step: usize,
    pub epoch: usize,
    /// Next micro-batch of the current epoch.
    pub cursor: usize,
    /// The current epoch's order of training examples.
    pub order: Vec<usize>,
    pub best_eval: Option<f64>,
    pub bad_evals: usize,
    pub history: Vec<StepRecord>,
    /// The examples' tokens the run has trained on so far, every segment and epoch (padding not counted);
    /// 0 in checkpoints written before it was kept.
    #[serde(default)]
    pub trained_tokens: u64,
}

/// What the progress callback receives after each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub step: usize,
    pub total_steps: usize,
    /// Fractional epoch (1.5 = half-way through the second epoch).
    pub epoch: f64,
    pub loss: f64,
    pub lr: f32,
    pub tokens_per_sec: f64,
    pub eta_secs: f64,
    pub eval_loss: Option<f64>,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    Completed,
    Cancelled,
    EarlyStopped,
}

/// Where the steps are computed: the CPU kernels over an activation arena, or a device trainer.
enum Compute {
    Cpu(Box<Arena>),
    Device(Box<dyn DeviceSteps>),
}

/// A run in memory.
pub struct Session {
    pub base: FrozenBase,
    pub lora: LoraParams,
    pub opt: AdamW,
    pub hyper: Hyper,
    pub state: RunState,
    pub train: Vec<Example>,
    pub eval: Vec<Example>,
    grads: Vec<f32>,
    compute: Compute,
}

fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

impl Session {
    /// Sets up a fresh run on the CPU. Fails when there is nothing to train on.
    pub fn new(
        base: FrozenBase,
        lora: LoraParams,
        hyper: Hyper,
        train: Vec<Example>,
        eval: Vec<Example>,
    ) -> Result<Self, TrainError> {
        Self::on(None, base, lora, hyper, train, eval)
    }

    /// Sets up a fresh run on `device` (`None`: the CPU). Fails when there is nothing to train on or the
    /// device cannot be opened.
    pub fn on(
        device: Option<Accelerator>,
        base: FrozenBase,
        lora: LoraParams,
        hyper: Hyper,
        train: Vec<Example>,
        eval: Vec<Example>,
    ) -> Result<Self, TrainError> {
        if train.is_empty() {
            return Err(TrainError::Data("no training example has an answer token to learn".into()));
        }
        if hyper.batch_size == 0 || hyper.grad_accum == 0 {
            return Err(TrainError::Config("batch size and gradient accumulation must be at least 1".into()));
        }
        let max_seq = train.iter().chain(&eval).map(|e| e.tokens.len()).max().unwrap_or(1);
        let vocab = base.config.vocab_size as u32;
        if train.iter().chain(&eval).any(|e| e.tokens.iter().any(|&t| t >= vocab)) || hyper.pad_id >= vocab {
            return Err(TrainError::Data("a token id is outside the model's vocabulary".into()));
        }
        let compute = match device {
            None => Compute::Cpu(Box::new(Arena::new(&base, &lora, hyper.batch_size, max_seq))),
            Some(acc) => Compute::Device(gpu::open(acc, &base, &lora, hyper.batch_size, max_seq)?),
        };
        let n = lora.values.len();
        let state = RunState {
            step: 0,
            epoch: 0,
            cursor: 0,
            order: epoch_order(train.len(), hyper.seed, 0),
            best_eval: None,
            bad_evals: 0,
            history: Vec::new(),
            trained_tokens: 0,
        };
        Ok(Self {
            base,
            lora,
            opt: AdamW::new(hyper.adamw, n),
            hyper,
            state,
            train,
            eval,
            grads: vec![0.0; n],
            compute,
        })
    }

    fn micro_batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.hyper.batch_size)
    }

    /// Optimiser steps in one epoch (its last step may accumulate fewer micro-batches).
    pub fn steps_per_epoch(&self) -> usize {
        self.micro_batches_per_epoch().div_ceil(self.hyper.grad_accum)
    }

    /// Steps the run will do unless stopped early.
    pub fn total_steps(&self) -> usize {
        self.hyper.max_steps.unwrap_or(self.hyper.epochs * self.steps_per_epoch())
    }

    /// Bytes of the trainer's buffers (base weights, adapters, optimiser, activations).
    pub fn memory_bytes(&self) -> usize {
        let b = &self.base;
        let base: usize = b.embed.len()
            + b.lm_head.as_ref().map_or(0, Vec::len)
            + b.layers.iter().map(|l| l.w_qkv.len() + l.w_o.len() + l.w_gu.len() + l.w_down.len()).sum::<usize>();
        let acts = match &self.compute {
            Compute::Cpu(arena) => arena.bytes(),
            Compute::Device(d) => d.device_bytes(),
        };
        4 * (base + 4 * self.lora.values.len()) + acts
    }

    /// Bytes the run holds on its device (`None` on the CPU).
    pub fn device_bytes(&self) -> Option<usize> {
        match &self.compute {
            Compute::Cpu(_) => None,
            Compute::Device(d) => Some(d.device_bytes()),
        }
    }

    /// Where the run computes, in words.
    pub fn device(&self) -> String {
        match &self.compute {
            Compute::Cpu(_) => format!("cpu ({} threads)", rayon::current_num_threads()),
            Compute::Device(d) => d.describe(),
        }
    }

    /// The next step's micro-batches, advancing the epoch when it runs out.
    fn next_batches(&mut self) -> Vec<Batch> {
        let per_epoch = self.micro_batches_per_epoch();
        if self.state.cursor >= per_epoch {
            self.state.epoch += 1;
            self.state.cursor = 0;
            self.state.order = epoch_order(self.train.len(), self.hyper.seed, self.state.epoch);
        }
        let end = (self.state.cursor + self.hyper.grad_accum).min(per_epoch);
        let bs = self.hyper.batch_size;
        let out = (self.state.cursor..end)
            .map(|mb| {
                let idx = &self.state.order[mb * bs..((mb + 1) * bs).min(self.train.len())];
                let ex: Vec<&Example> = idx.iter().map(|&i| &self.train[i]).collect();
                Batch::new(&ex, self.hyper.pad_id)
            })
            .collect();
        self.state.cursor = end;
        out
    }

    /// One optimiser step; returns the mean loss over its counted tokens and the tokens processed.
    pub fn train_step(&mut self) -> Result<(f64, usize), TrainError> {
        let batches = self.next_batches();
        let denom: usize = batches.iter().map(|b| b.counted).sum();
        self.grads.fill(0.0);
        let mut rng =
            StdRng::seed_from_u64(self.hyper.seed.wrapping_add(0xD1B5_4A32_D192_ED03) ^ self.state.step as u64);
        let mut loss = 0.0;
        let mut tokens = 0;
        if let Compute::Device(d) = &mut self.compute {
            d.set_lora(&self.lora)?;
            d.zero_grads()?;
        }
        for b in &batches {
            let weights = b.weights(denom);
            loss += match &mut self.compute {
                Compute::Cpu(arena) => {
                    forward_blocks(&self.base, &self.lora, arena, &b.tokens, b.batch, b.seq, Some(&mut rng));
                    let l = head_loss(&self.base, arena, &b.targets, &weights);
                    backward(&self.base, &self.lora, arena, &mut self.grads, b.batch, b.seq);
                    l
                }
                Compute::Device(d) => d.micro_batch(b, &weights, Some(&mut rng), true)?,
            };
            tokens += b.batch * b.seq;
            self.state.trained_tokens += b.real as u64;
        }
        if let Compute::Device(d) = &mut self.compute {
            d.read_grads(&mut self.grads)?;
        }
        let total = self.total_steps();
        let lr = self.hyper.schedule.lr(self.hyper.lr, self.state.step, self.hyper.warmup_steps, total);
        clip_grad_norm(&mut self.grads, self.hyper.max_grad_norm);
        self.opt.step(&mut self.lora.values, &self.grads, lr);
        self.state.step += 1;
        self.state.history.push(StepRecord { step: self.state.step, loss, lr, eval_loss: None });
        Ok((loss, tokens))
    }

    /// Mean loss over the counted tokens of the validation examples (`None` without any).
    pub fn eval_loss(&mut self) -> Result<Option<f64>, TrainError> {
        let denom: usize = self.eval.iter().map(Example::counted).sum();
        if denom == 0 {
            return Ok(None);
        }
        if let Compute::Device(d) = &mut self.compute {
            d.set_lora(&self.lora)?;
        }
        let mut loss = 0.0;
        for chunk in self.eval.chunks(self.hyper.batch_size) {
            let b = Batch::new(&chunk.iter().collect::<Vec<_>>(), self.hyper.pad_id);
            let weights = b.weights(denom);
            loss += match &mut self.compute {
                Compute::Cpu(arena) => {
                    forward_blocks(&self.base, &self.lora, arena, &b.tokens, b.batch, b.seq, None);
                    head_loss(&self.base, arena, &b.targets, &weights)
                }
                Compute::Device(d) => d.micro_batch(&b, &weights, None, false)?,
            };
        }
        Ok(Some(loss))
    }

    /// Runs until the last step, cancellation or early stopping. `checkpoint` is called after every
    /// `checkpoint_every` steps (the caller writes the files).
    pub fn run(
        &mut self,
        progress: &mut dyn FnMut(&Progress),
        cancel: &AtomicBool,
        checkpoint: &mut dyn FnMut(&Session) -> Result<(), TrainError>,
    ) -> Result<StopReason, TrainError> {
        let total = self.total_steps();
        let started = Instant::now();
        let first_step = self.state.step;
        let mut tokens_done = 0usize;
        while self.state.step < total {
            if cancel.load(Ordering::Relaxed) {
                return Ok(StopReason::Cancelled);
            }
            let (loss, tokens) = self.train_step()?;
            tokens_done += tokens;
            if !loss.is_finite() {
                return Err(TrainError::Diverged { step: self.state.step, loss });
            }
            let step = self.state.step;
            let due = self.hyper.eval_every > 0 && step.is_multiple_of(self.hyper.eval_every);
            let eval_loss = if due || step == total { self.eval_loss()? } else { None };
            let mut stop = false;
            if let Some(e) = eval_loss {
                self.state.history.last_mut().expect("a step was recorded").eval_loss = Some(e);
                if self.state.best_eval.is_none_or(|b| e < b) {
                    self.state.best_eval = Some(e);
                    self.state.bad_evals = 0;
                } else {
                    self.state.bad_evals += 1;
                    stop = self.hyper.patience.is_some_and(|p| self.state.bad_evals >= p);
                }
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let done = (step - first_step) as f64;
            let last = self.state.history.last().expect("a step was recorded");
            progress(&Progress {
                step,
                total_steps: total,
                epoch: self.state.epoch as f64 + self.state.cursor as f64 / self.micro_batches_per_epoch() as f64,
                loss,
                lr: last.lr,
                tokens_per_sec: tokens_done as f64 / secs,
                eta_secs: secs / done * (total - step) as f64,
                eval_loss,
            });
            if self.hyper.checkpoint_every > 0 && step.is_multiple_of(self.hyper.checkpoint_every) {
                checkpoint(self)?;
            }
            if stop {
                return Ok(StopReason::EarlyStopped);
            }
        }
        Ok(StopReason::Completed)
    }

    /// Mutable access to the optimiser's gradient buffer size check (used by resume).
    pub fn param_count(&self) -> usize {
        self.grads.len()
    }
}
