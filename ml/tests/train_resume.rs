//! Checkpoint and resume: a run interrupted after a checkpoint and resumed from it has exactly the loss
//! curve of the uninterrupted run; cancellation stops before the next step; early stopping stops a run.

mod train_common;

use bonsai_ml::lora::{LoraConfig, LoraParams, Target};
use bonsai_ml::train::base::FrozenBase;
use bonsai_ml::train::checkpoint;
use bonsai_ml::train::optim::AdamWConfig;
use bonsai_ml::train::{Hyper, Session, StopReason, TrainError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use train_common::{small_model, synthetic_examples};

fn hyper() -> Hyper {
    Hyper {
        lr: 5e-3,
        epochs: 3,
        max_steps: None,
        batch_size: 3,
        grad_accum: 2,
        warmup_steps: 2,
        schedule: bonsai_ml::train::optim::LrSchedule::Cosine,
        max_grad_norm: 0.5,
        seed: 7,
        adamw: AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() },
        eval_every: 2,
        patience: None,
        checkpoint_every: 4,
        pad_id: 0,
    }
}

fn session(hyper: Hyper) -> Session {
    let model = small_model(true);
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1, // dropout on, so the resumed run must also replay the random draws
        targets: Target::parse_list("q,v,down").unwrap(),
        use_rslora: true,
    };
    let lora = LoraParams::init(config, &model.config, 3);
    let base = FrozenBase::from_model(model, 32);
    let data = synthetic_examples(16, 300, 1);
    let (train, eval) = (data[..13].to_vec(), data[13..].to_vec());
    Session::new(base, lora, hyper, train, eval).expect("session")
}

fn save_to(out: &Path) -> impl FnMut(&Session) -> Result<(), TrainError> + '_ {
    move |s: &Session| checkpoint::save(s, &checkpoint::dir_for(out, s.state.step), "tiny")
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_loss_curve_exactly() {
    let out = tempfile::tempdir().unwrap();
    let mut full = session(hyper());
    assert_eq!(full.total_steps(), 9, "13 examples / batch 3 = 5 micro-batches = 3 steps per epoch");
    let stop = full.run(&mut |_| {}, &AtomicBool::new(false), &mut save_to(out.path())).unwrap();
    assert_eq!(stop, StopReason::Completed);
    let curve = full.state.history.clone();
    assert_eq!(curve.len(), 9);
    assert!(curve[8].loss < curve[0].loss, "training lowers the loss: {curve:?}");
    assert!(curve.iter().filter(|r| r.eval_loss.is_some()).count() >= 4);

    // Interrupt a second run right after its step-4 checkpoint...
    let out2 = tempfile::tempdir().unwrap();
    let mut first = session(hyper());
    let cancel = AtomicBool::new(false);
    let stop =
        first.run(&mut |p| cancel.store(p.step == 4, Ordering::Relaxed), &cancel, &mut save_to(out2.path())).unwrap();
    assert_eq!(stop, StopReason::Cancelled);
    assert_eq!(first.state.step, 4, "cancellation is seen before the next step");
    // ... and continue it in a fresh session from the checkpoint.
    let mut resumed = session(hyper());
    checkpoint::load(&mut resumed, &checkpoint::dir_for(out2.path(), 4)).unwrap();
    resumed.run(&mut |_| {}, &AtomicBool::new(false), &mut save_to(out2.path())).unwrap();
    assert_eq!(resumed.state.history, curve, "identical loss curve, evaluations included");
    assert_eq!(resumed.lora.values, full.lora.values, "identical final adapter");
    assert!(out2.path().join("checkpoint-8/adapter_model.safetensors").exists());
}

#[test]
fn a_checkpoint_from_another_configuration_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let mut s = session(Hyper { max_steps: Some(4), ..hyper() });
    s.run(&mut |_| {}, &AtomicBool::new(false), &mut save_to(out.path())).unwrap();
    let mut other = session(Hyper { seed: 8, ..hyper() });
    let err = checkpoint::load(&mut other, &checkpoint::dir_for(out.path(), 4)).unwrap_err();
    assert!(err.to_string().contains("seed"), "{err}");
}

#[test]
fn early_stopping_ends_the_run_when_eval_loss_stops_improving() {
    // A learning rate this high makes the validation loss go up, so patience 1 stops at the second eval.
    let mut s = session(Hyper { lr: 2.0, max_grad_norm: 0.0, eval_every: 1, patience: Some(1), ..hyper() });
    let mut evals = Vec::new();
    let stop = s.run(&mut |p| evals.extend(p.eval_loss), &AtomicBool::new(false), &mut |_: &Session| Ok(())).unwrap();
    assert_eq!(stop, StopReason::EarlyStopped, "evals: {evals:?}");
    assert!(s.state.step < s.total_steps());
}
