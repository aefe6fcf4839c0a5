//! The folders training runs write in the data folder, read by the training worker (resume, pruning) and
//! the API (adapter download, checkpoint list): `training/<task>/` holds `adapter/`, `checkpoint-<step>/`
//! (a `.partial` suffix while it is written) and `merged/`.

use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where task `task` keeps its files.
pub fn task_dir(data_dir: &Path, task: Uuid) -> PathBuf {
    data_dir.join("training").join(task.to_string())
}

/// The complete checkpoints in a task's folder (`checkpoint-<step>`; `.partial` folders are unfinished),
/// oldest first.
pub fn checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let step = name.strip_prefix("checkpoint-")?.parse::<u64>().ok()?;
            entry.path().is_dir().then(|| (step, entry.path()))
        })
        .collect();
    found.sort_by_key(|(step, _)| *step);
    found
}
