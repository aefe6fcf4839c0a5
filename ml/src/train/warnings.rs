//! What a finished run's loss curve says a user should know: the training loss did not fall (nothing was
//! learned: the learning rate or the number of steps is too small), or the evaluation loss rose over the last
//! part of the run (the model is fitting its training examples at the expense of the held-out ones).

use super::StepRecord;
use serde::{Deserialize, Serialize};

/// A warning about a run, for its result, its owner's alerts and the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunWarning {
    /// `loss_not_falling` or `eval_loss_rising`.
    pub code: String,
    pub message: String,
}

/// The training loss must fall by at least this share from the run's first tenth to its last.
const MIN_FALL: f64 = 0.05;

/// The evaluation loss rose if it ended this share above its best, and rose at each of the last evaluations.
const MIN_RISE: f64 = 0.02;

fn mean(records: &[StepRecord]) -> f64 {
    records.iter().map(|r| r.loss).sum::<f64>() / records.len().max(1) as f64
}

/// The warnings `history` (every step of a run, in order) calls for.
pub fn warnings(history: &[StepRecord]) -> Vec<RunWarning> {
    let mut out = Vec::new();
    // The mean of the first and last tenth (at least 2 steps each) smooths single noisy batches.
    if history.len() >= 4 {
        let part = (history.len() / 10).max(2).min(history.len() / 2);
        let (first, last) = (mean(&history[..part]), mean(&history[history.len() - part..]));
        if first.is_finite() && last.is_finite() && last > first * (1.0 - MIN_FALL) {
            out.push(RunWarning {
                code: "loss_not_falling".into(),
                message: format!(
                    "the training loss did not fall: {first:.3} over the first {part} steps, {last:.3} over the last \
                     {part}; the model has learned little. Try a higher learning rate, more epochs, or a larger rank"
                ),
            });
        }
    }
    let evals: Vec<(usize, f64)> = history.iter().filter_map(|r| r.eval_loss.map(|e| (r.step, e))).collect();
    if evals.len() >= 3 {
        let best = evals.iter().map(|&(_, e)| e).fold(f64::INFINITY, f64::min);
        // The last third of the evaluations (at least 2 rises), each above the one before.
        let tail = (evals.len() / 3).max(2);
        let rising = evals[evals.len() - tail - 1..].windows(2).all(|w| w[1].1 > w[0].1);
        let (from_step, _) = evals[evals.len() - tail - 1];
        let last = evals[evals.len() - 1].1;
        if rising && last > best * (1.0 + MIN_RISE) {
            out.push(RunWarning {
                code: "eval_loss_rising".into(),
                message: format!(
                    "the evaluation loss rose over the last {tail} evaluations (from step {from_step}), to {last:.3} \
                     against a best of {best:.3}: the model is overfitting its training examples. Try fewer epochs, \
                     early stopping (patience) or more data, or register an earlier checkpoint as the model"
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(losses: &[f64], evals: &[(usize, f64)]) -> Vec<StepRecord> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &loss)| StepRecord {
                step: i + 1,
                loss,
                lr: 1e-3,
                eval_loss: evals.iter().find(|&&(s, _)| s == i + 1).map(|&(_, e)| e),
            })
            .collect()
    }

    fn codes(history: &[StepRecord]) -> Vec<String> {
        warnings(history).into_iter().map(|w| w.code).collect::<Vec<_>>()
    }

    #[test]
    fn a_falling_loss_with_a_falling_eval_loss_warns_of_nothing() {
        let losses: Vec<f64> = (0..40).map(|i| 3.0 - i as f64 * 0.05).collect();
        assert!(codes(&run(&losses, &[(10, 2.9), (20, 2.5), (30, 2.2), (40, 2.0)])).is_empty());
    }

    #[test]
    fn a_flat_loss_warns_that_nothing_was_learned() {
        let losses: Vec<f64> = (0..40).map(|i| 2.59 + if i % 2 == 0 { 0.02 } else { -0.02 }).collect();
        let found = warnings(&run(&losses, &[]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].code, "loss_not_falling");
        assert!(found[0].message.contains("2.59"), "{}", found[0].message);
        // Too short a run to say.
        assert!(codes(&run(&[2.0, 2.0, 2.0], &[])).is_empty());
    }

    #[test]
    fn an_eval_loss_that_rises_at_the_end_warns_of_overfitting() {
        let losses: Vec<f64> = (0..60).map(|i| 3.0 - i as f64 * 0.04).collect();
        let evals = [(10, 2.5), (20, 2.1), (30, 2.0), (40, 2.1), (50, 2.3), (60, 2.6)];
        assert_eq!(codes(&run(&losses, &evals)), vec!["eval_loss_rising"]);
        // One bump that comes back down is noise.
        let evals = [(10, 2.5), (20, 2.1), (30, 2.0), (40, 2.1), (50, 1.9), (60, 1.8)];
        assert!(codes(&run(&losses, &evals)).is_empty());
        // Rising by less than 2% over the best is noise too.
        let evals = [(10, 2.5), (20, 2.0), (30, 2.001), (40, 2.002), (50, 2.003), (60, 2.004)];
        assert!(codes(&run(&losses, &evals)).is_empty());
    }
}
