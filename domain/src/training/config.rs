//! What a training task trains with: the LoRA adapter and the optimiser settings, checked once when the
//! task is created (parse, don't validate), so that a worker never starts a run that cannot work.
//!
//! Defaults follow the `bonsai train` CLI (and PEFT's usual LoRA settings). The domain does not depend on
//! the ML crate: target names are checked here against the Llama-family projection names it knows.

use serde::{Deserialize, Serialize};

/// The LoRA target names, in their canonical short form and order.
pub const TARGETS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// Learning-rate schedules (each after a linear warm-up of `warmup_steps`).
pub const SCHEDULES: [&str; 3] = ["constant", "linear", "cosine"];

/// Devices a task may ask for.
pub const DEVICES: [&str; 2] = ["cpu", "cuda"];

/// Hyper-parameters of one fine-tuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    pub rank: u32,
    pub alpha: f32,
    pub dropout: f32,
    /// LoRA targets: short (`q`) or PEFT (`q_proj`) names, or `all`; stored canonical (short, sorted).
    pub targets: Vec<String>,
    /// rsLoRA scaling (`alpha / sqrt(rank)`).
    pub use_rslora: bool,
    pub learning_rate: f32,
    pub epochs: u32,
    /// Stop after this many optimiser steps (overrides `epochs`).
    pub max_steps: Option<u32>,
    pub batch_size: u32,
    pub grad_accum: u32,
    pub max_seq_len: u32,
    pub warmup_steps: u32,
    /// The learning rate after the warm-up: `constant`, `linear` (down to 0) or `cosine` (down to 0).
    pub lr_schedule: String,
    pub weight_decay: f32,
    /// Global gradient-norm clip (0 disables).
    pub max_grad_norm: f32,
    pub seed: u64,
    /// Fraction of the examples held out for evaluation.
    pub eval_split: f32,
    /// A validation dataset version to evaluate on instead of a held-out share (then `eval_split` is 0): set
    /// by the API from `eval_dataset_id` (or `/v1`'s `validation_file`), after checking the caller may use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_dataset: Option<super::DatasetRef>,
    /// Evaluate every this many steps (0: at the end only).
    pub eval_every: u32,
    /// Early stopping after this many evaluations without improvement.
    pub patience: Option<u32>,
    /// Checkpoint every this many steps (0: only when stopped); a restarted task resumes from the last one.
    pub checkpoint_every: u32,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Also write the merged model (base + adapter), ready to export and serve.
    pub merge: bool,
    /// Register the merged model under this name when a run completes (and deploy it once exported, with
    /// `deploy`): what a fine-tuning job of the OpenAI-compatible API asks for. Needs `merge`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register_as: Option<RegisterAs>,
}

/// The model a completed run becomes: registered by the training worker as `name` (the next version of
/// it), from the run's merged weights; with `deploy`, deployed as soon as its export is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAs {
    pub name: String,
    #[serde(default)]
    pub deploy: bool,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec!["q".into(), "v".into()],
            use_rslora: false,
            learning_rate: 2e-4,
            epochs: 3,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            max_seq_len: 512,
            warmup_steps: 0,
            lr_schedule: "cosine".into(),
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 42,
            eval_split: 0.0,
            eval_dataset: None,
            eval_every: 0,
            patience: None,
            checkpoint_every: 50,
            device: "cpu".into(),
            merge: true,
            register_as: None,
        }
    }
}

/// How much training a task without settings gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// About half the epochs of `balanced`: a first look.
    Quick,
    /// The default.
    Balanced,
    /// About twice the epochs of `balanced`.
    Thorough,
}

impl Preset {
    pub fn parse(name: &str) -> Option<Preset> {
        match name {
            "quick" => Some(Preset::Quick),
            "balanced" => Some(Preset::Balanced),
            "thorough" => Some(Preset::Thorough),
            _ => None,
        }
    }
}

/// Below this many parameters a base model is taken to know nothing yet (the random demo model): it must
/// learn its answers from scratch, with many more epochs at a higher rate.
pub const UNTRAINED_BELOW_PARAMETERS: u64 = 50_000_000;

impl TrainingConfig {
    /// Settings for a task that gave none, from the data set's size (`records`) and the base model's
    /// (`parameters`, `context_length`): LoRA rank 16, alpha 32 on every linear layer, a constant learning
    /// rate after a short warm-up (what learns a small data set fastest: PEFT's usual recipe, 1e-3 for a
    /// pretrained model), the whole data set per step up to 32 records, and epochs that give a small data
    /// set about as many steps as a large one needs.
    pub fn chosen_for(preset: Preset, records: u64, parameters: u64, context_length: Option<u64>) -> TrainingConfig {
        let records = records.max(1);
        let batch_size = records.min(32) as u32;
        let steps_per_epoch = records.div_ceil(batch_size as u64);
        let untrained = parameters > 0 && parameters < UNTRAINED_BELOW_PARAMETERS;
        // Epochs of `balanced` by data set size; pretrained models need few, untrained ones many.
        let balanced: u32 = match (untrained, steps_per_epoch) {
            (true, _) => 400,
            (false, 0..=4) => 12,
            (false, 5..=40) => 6,
            (false, _) => 3,
        };
        let epochs = match preset {
            Preset::Quick => balanced.div_ceil(2),
            Preset::Balanced => balanced,
            Preset::Thorough => balanced * 2,
        }
        .min(1000);
        let total_steps = steps_per_epoch * epochs as u64;
        TrainingConfig {
            rank: 16,
            alpha: 32.0,
            targets: TARGETS.iter().map(|t| (*t).to_owned()).collect(),
            learning_rate: if untrained { 3e-3 } else { 1e-3 },
            lr_schedule: "constant".into(),
            epochs,
            batch_size,
            warmup_steps: (total_steps / 4).clamp(1, 20) as u32,
            max_seq_len: context_length.unwrap_or(512).clamp(8, 512) as u32,
            ..TrainingConfig::default()
        }
    }
}

/// The first thing wrong with a configuration: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

fn check(ok: bool, field: &'static str, message: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError { field, message: message.to_owned() })
    }
}

/// The canonical short name of a target (`q_proj`, `self_attn.q_proj` and `q` are all `q`).
fn canonical_target(name: &str) -> Option<&'static str> {
    let last = name.trim().rsplit('.').next().unwrap_or(name);
    let bare = last.strip_suffix("_proj").unwrap_or(last);
    TARGETS.iter().copied().find(|t| *t == bare)
}

impl TrainingConfig {
    /// Checks every field and returns the configuration with its targets in canonical form.
    pub fn validated(mut self) -> Result<Self, ConfigError> {
        check((1..=256).contains(&self.rank), "rank", "must be 1 to 256")?;
        check(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 4096.0, "alpha", "must be in (0, 4096]")?;
        check((0.0..1.0).contains(&self.dropout), "dropout", "must be in [0, 1)")?;
        let mut targets = Vec::new();
        for name in &self.targets {
            if name == "all" || name == "all-linear" {
                targets.extend(TARGETS);
                continue;
            }
            let t = canonical_target(name).ok_or_else(|| ConfigError {
                field: "targets",
                message: format!("unknown target {name:?}: use q, k, v, o, gate, up, down, their *_proj names or all"),
            })?;
            targets.push(t);
        }
        check(!targets.is_empty(), "targets", "name at least one target")?;
        targets.sort_by_key(|t| TARGETS.iter().position(|x| x == t));
        targets.dedup();
        self.targets = targets.into_iter().map(str::to_owned).collect();
        check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate <= 1.0,
            "learning_rate",
            "must be in (0, 1]",
        )?;
        check((1..=1000).contains(&self.epochs), "epochs", "must be 1 to 1000")?;
        check(self.max_steps.is_none_or(|s| (1..=10_000_000).contains(&s)), "max_steps", "must be 1 to 10000000")?;
        check((1..=1024).contains(&self.batch_size), "batch_size", "must be 1 to 1024")?;
        check((1..=1024).contains(&self.grad_accum), "grad_accum", "must be 1 to 1024")?;
        check((8..=131_072).contains(&self.max_seq_len), "max_seq_len", "must be 8 to 131072")?;
        check(self.warmup_steps <= 10_000_000, "warmup_steps", "must be at most 10000000")?;
        check(SCHEDULES.contains(&self.lr_schedule.as_str()), "lr_schedule", "must be constant, linear or cosine")?;
        check((0.0..=1.0).contains(&self.weight_decay), "weight_decay", "must be in [0, 1]")?;
        check(
            self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0,
            "max_grad_norm",
            "must be 0 (off) or positive",
        )?;
        check((0.0..=0.5).contains(&self.eval_split), "eval_split", "must be in [0, 0.5]")?;
        check(
            self.eval_dataset.is_none() || self.eval_split == 0.0,
            "eval_split",
            "must be 0 with a validation dataset (it is evaluated on instead of a held-out share)",
        )?;
        let evaluates = self.eval_split > 0.0 || self.eval_dataset.is_some();
        check(
            self.patience.is_none_or(|p| p >= 1) && (self.patience.is_none() || evaluates),
            "patience",
            "must be at least 1, and needs an eval_split above 0 or a validation dataset",
        )?;
        check(DEVICES.contains(&self.device.as_str()), "device", "must be cpu or cuda")?;
        if let Some(register) = &mut self.register_as {
            register.name = crate::values::thing_name(&register.name).ok_or_else(|| ConfigError {
                field: "register_as",
                message: "the name must be 1 to 100 characters, without control characters".into(),
            })?;
            check(self.merge, "register_as", "needs merge: true (the model is made from the merged weights)")?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_target_q_and_v() {
        let c = TrainingConfig::default().validated().unwrap();
        assert_eq!(c.targets, ["q", "v"]);
    }

    #[test]
    fn targets_become_canonical_sorted_and_unique() {
        let c = TrainingConfig {
            targets: vec!["v_proj".into(), "q".into(), "self_attn.q_proj".into()],
            ..Default::default()
        };
        assert_eq!(c.validated().unwrap().targets, ["q", "v"]);
        let all = TrainingConfig { targets: vec!["all".into()], ..Default::default() };
        assert_eq!(all.validated().unwrap().targets, TARGETS);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(TrainingConfig, &str)> = vec![
            (TrainingConfig { rank: 0, ..Default::default() }, "rank"),
            (TrainingConfig { alpha: f32::NAN, ..Default::default() }, "alpha"),
            (TrainingConfig { dropout: 1.0, ..Default::default() }, "dropout"),
            (TrainingConfig { targets: vec!["lm_head".into()], ..Default::default() }, "targets"),
            (TrainingConfig { targets: vec![], ..Default::default() }, "targets"),
            (TrainingConfig { learning_rate: 0.0, ..Default::default() }, "learning_rate"),
            (TrainingConfig { epochs: 0, ..Default::default() }, "epochs"),
            (TrainingConfig { max_steps: Some(0), ..Default::default() }, "max_steps"),
            (TrainingConfig { batch_size: 0, ..Default::default() }, "batch_size"),
            (TrainingConfig { max_seq_len: 4, ..Default::default() }, "max_seq_len"),
            (TrainingConfig { eval_split: 0.9, ..Default::default() }, "eval_split"),
            (TrainingConfig { patience: Some(2), ..Default::default() }, "patience"),
            (TrainingConfig { device: "tpu".into(), ..Default::default() }, "device"),
            (TrainingConfig { lr_schedule: "step".into(), ..Default::default() }, "lr_schedule"),
            (
                TrainingConfig {
                    register_as: Some(RegisterAs { name: " ".into(), deploy: true }),
                    ..Default::default()
                },
                "register_as",
            ),
            (
                TrainingConfig {
                    merge: false,
                    register_as: Some(RegisterAs { name: "faq".into(), deploy: false }),
                    ..Default::default()
                },
                "register_as",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validated().unwrap_err().field, field);
        }
    }

    #[test]
    fn settings_are_chosen_from_the_data_and_the_model_and_are_valid() {
        // 20 facts on SmolLM2 (135M): the whole set per step, 12 epochs at 1e-3 after warm-up.
        let smol = TrainingConfig::chosen_for(Preset::Balanced, 20, 135_000_000, Some(8192));
        assert_eq!((smol.batch_size, smol.epochs, smol.learning_rate, smol.rank), (20, 12, 1e-3, 16));
        assert_eq!((smol.lr_schedule.as_str(), smol.warmup_steps, smol.max_seq_len), ("constant", 3, 512));
        assert_eq!(smol.targets, TARGETS);
        assert!(smol.clone().validated().is_ok());
        // The random demo model learns from scratch.
        let tiny = TrainingConfig::chosen_for(Preset::Balanced, 20, 3_700_000, Some(1024));
        assert_eq!((tiny.epochs, tiny.learning_rate, tiny.warmup_steps), (400, 3e-3, 20));
        // Presets scale the epochs; big data sets get fewer.
        let quick = TrainingConfig::chosen_for(Preset::Quick, 20, 135_000_000, None).epochs;
        let thorough = TrainingConfig::chosen_for(Preset::Thorough, 20, 135_000_000, None).epochs;
        assert_eq!((quick, thorough), (6, 24));
        let big = TrainingConfig::chosen_for(Preset::Balanced, 100_000, 135_000_000, None);
        assert_eq!((big.batch_size, big.epochs), (32, 3));
        assert_eq!(Preset::parse("thorough"), Some(Preset::Thorough));
        assert_eq!(Preset::parse("fast"), None);
    }

    #[test]
    fn unknown_fields_are_refused_when_parsed() {
        let parsed = serde_json::from_str::<TrainingConfig>(r#"{"rank": 4, "lerning_rate": 0.1}"#);
        assert!(parsed.is_err());
        let parsed = serde_json::from_str::<TrainingConfig>(r#"{"rank": 4}"#).unwrap();
        assert_eq!((parsed.rank, parsed.alpha), (4, 16.0));
    }
}
