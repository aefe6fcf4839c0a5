//! Checkpoints: `<out>/checkpoint-<step>/` holds the adapter (PEFT files, usable on their own), the AdamW
//! moments (`optimizer.safetensors`) and `trainer_state.json` (step, epoch, position and order of the data,
//! early-stopping counters, the loss curve so far, and the seed from which every random draw of the run
//! is derived: the epoch shuffles from (seed, epoch), dropout from (seed, step)).

use super::error::TrainError;
use super::session::{Hyper, RunState, Session};
use crate::lora::peft;
use crate::weights::{Tensor, Weights};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[derive(Serialize, Deserialize)]
struct SavedState {
    run: RunState,
    hyper: Hyper,
    adam_t: u64,
}

fn err(path: &Path, message: impl ToString) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), message: message.to_string() }
}

/// The folder of the checkpoint after `step`.
pub fn dir_for(out: &Path, step: usize) -> PathBuf {
    out.join(format!("checkpoint-{step}"))
}

/// Writes the session's checkpoint into `dir` (written beside, then renamed, so a crash never leaves a
/// half-written checkpoint under the final name).
pub fn save(session: &Session, dir: &Path, base_model: &str) -> Result<(), TrainError> {
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    peft::save(&tmp, &session.lora, base_model)?;
    let n = session.opt.m.len();
    let mut w = Weights::new();
    w.insert("exp_avg", Tensor::new(vec![n], session.opt.m.clone())?);
    w.insert("exp_avg_sq", Tensor::new(vec![n], session.opt.v.clone())?);
    w.save_file(&tmp.join(OPTIMIZER_FILE), None)?;
    let state = SavedState { run: session.state.clone(), hyper: session.hyper.clone(), adam_t: session.opt.t };
    let text = serde_json::to_string(&state).map_err(|e| err(dir, e))?;
    std::fs::write(tmp.join(STATE_FILE), text).map_err(|e| TrainError::io(tmp.join(STATE_FILE), e))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, e))
}

/// Restores a checkpoint into a session set up with the same model, data and hyper-parameters.
pub fn load(session: &mut Session, dir: &Path) -> Result<(), TrainError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let saved: SavedState = serde_json::from_str(&text).map_err(|e| err(dir, e))?;
    let lora = peft::load(dir, &session.base.config)?;
    if lora.config != session.lora.config {
        return Err(err(dir, "the checkpoint's LoRA settings differ from this run's"));
    }
    if saved.hyper.seed != session.hyper.seed || saved.hyper.batch_size != session.hyper.batch_size {
        return Err(err(dir, "the checkpoint was made with another seed or batch size"));
    }
    if saved.run.order.len() != session.train.len() {
        return Err(err(dir, "the checkpoint was made on a different number of training examples"));
    }
    let mut w = Weights::load_file(&dir.join(OPTIMIZER_FILE))?;
    let m = w.take("exp_avg")?.data;
    let v = w.take("exp_avg_sq")?.data;
    if m.len() != session.param_count() || v.len() != m.len() {
        return Err(err(dir, "optimizer moments do not match the adapter size"));
    }
    session.lora.values = lora.values;
    session.opt.m = m;
    session.opt.v = v;
    session.opt.t = saved.adam_t;
    session.state = saved.run;
    Ok(())
}
