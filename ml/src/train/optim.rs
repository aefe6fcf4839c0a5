//! AdamW (decoupled weight decay, as `torch.optim.AdamW`), the learning-rate schedules with linear warm-up
//! (constant, linear decay and cosine decay, as transformers' `get_constant_schedule_with_warmup`,
//! `get_linear_schedule_with_warmup` and `get_cosine_schedule_with_warmup`) and global gradient-norm clipping.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The optimiser state: first and second moments and the number of updates done.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
}

impl AdamW {
    pub fn new(config: AdamWConfig, n: usize) -> Self {
        Self { config, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One update of `params` from `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        assert_eq!(params.len(), grads.len());
        self.t += 1;
        let c = self.config;
        let bc1 = 1.0 - (c.beta1 as f64).powi(self.t as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(self.t as i32);
        let step = (lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let decay = 1.0 - lr * c.weight_decay;
        params
            .par_iter_mut()
            .zip(grads)
            .zip(self.m.par_iter_mut().zip(self.v.par_iter_mut()))
            .with_min_len(4096)
            .for_each(|((p, &g), (m, v))| {
                *p *= decay;
                *m = c.beta1 * *m + (1.0 - c.beta1) * g;
                *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                *p -= step * *m / (v.sqrt() / bc2_sqrt + c.eps);
            });
    }
}

/// How the learning rate moves after the warm-up (a linear ramp from 0 over the warm-up steps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// Stays at the base rate: what learns a small data set fastest.
    Constant,
    /// Falls linearly to 0 at the last step.
    Linear,
    /// Falls along a half cosine to 0 at the last step.
    #[default]
    Cosine,
}

impl LrSchedule {
    /// `constant`, `linear` or `cosine`.
    pub fn parse(name: &str) -> Option<LrSchedule> {
        match name {
            "constant" => Some(LrSchedule::Constant),
            "linear" => Some(LrSchedule::Linear),
            "cosine" => Some(LrSchedule::Cosine),
            _ => None,
        }
    }

    /// The learning rate of update `step` (0-based) out of `total` with `warmup` warm-up steps.
    pub fn lr(self, base: f32, step: usize, warmup: usize, total: usize) -> f32 {
        if step < warmup {
            return base * step as f32 / warmup.max(1) as f32;
        }
        let progress = ((step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64).min(1.0);
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Linear => (base as f64 * (1.0 - progress)) as f32,
            LrSchedule::Cosine => cosine_lr(base, step, warmup, total),
        }
    }
}

/// The learning rate of update `step` (0-based) out of `total`: linear warmup over `warmup` steps from 0,
/// then a half cosine down to 0 at `total`.
pub fn cosine_lr(base: f32, step: usize, warmup: usize, total: usize) -> f32 {
    if step < warmup {
        return base * step as f32 / warmup.max(1) as f32;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())) as f32
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (when `max_norm > 0`); returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    // Fixed chunks summed in order: deterministic, so a resumed run clips exactly as the original did.
    let partial: Vec<f64> =
        grads.par_chunks(4096).map(|c| c.iter().map(|g| (*g as f64) * (*g as f64)).sum::<f64>()).collect();
    let norm = partial.iter().sum::<f64>().sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        grads.par_iter_mut().for_each(|g| *g *= s);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(cosine_lr(1.0, 0, 10, 100), 0.0);
        assert!((cosine_lr(1.0, 5, 10, 100) - 0.5).abs() < 1e-6);
        assert!((cosine_lr(1.0, 10, 10, 100) - 1.0).abs() < 1e-6);
        assert!((cosine_lr(1.0, 55, 10, 100) - 0.5).abs() < 1e-6);
        assert!(cosine_lr(1.0, 100, 10, 100).abs() < 1e-6);
    }

    #[test]
    fn every_schedule_warms_up_then_holds_or_decays() {
        for schedule in [LrSchedule::Constant, LrSchedule::Linear, LrSchedule::Cosine] {
            assert_eq!(schedule.lr(1.0, 0, 10, 100), 0.0, "{schedule:?}");
            assert!((schedule.lr(1.0, 5, 10, 100) - 0.5).abs() < 1e-6, "{schedule:?}");
            assert!((schedule.lr(1.0, 10, 10, 100) - 1.0).abs() < 1e-6, "{schedule:?}");
        }
        assert_eq!(LrSchedule::Constant.lr(1.0, 99, 10, 100), 1.0);
        assert!((LrSchedule::Linear.lr(1.0, 55, 10, 100) - 0.5).abs() < 1e-6);
        assert!((LrSchedule::Cosine.lr(1.0, 55, 10, 100) - 0.5).abs() < 1e-6);
        assert!((LrSchedule::Linear.lr(1.0, 32, 10, 100) - LrSchedule::Cosine.lr(1.0, 32, 10, 100)).abs() > 0.01);
        assert!(LrSchedule::Linear.lr(1.0, 100, 10, 100).abs() < 1e-6);
        assert_eq!(LrSchedule::parse("linear"), Some(LrSchedule::Linear));
        assert_eq!(LrSchedule::parse("step"), None);
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_the_learning_rate() {
        let mut opt = AdamW::new(AdamWConfig::default(), 2);
        let mut p = vec![1.0, -1.0];
        opt.step(&mut p, &[0.5, -2.0], 0.1);
        assert!((p[0] - 0.9).abs() < 1e-5 && (p[1] + 0.9).abs() < 1e-5, "{p:?}");
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let mut g = vec![3.0, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
    }
}
