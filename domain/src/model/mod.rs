//! The Model aggregate: a registered, versioned model that can be served. A model is registered from a
//! completed training task (its merged weights) or from an installed base model; an export worker then
//! writes its ONNX export (`exporting -> ready | failed`; a model registered with `deploy_when_ready`, as a
//! fine-tuning job's is, is deployed in the same step); a ready model can be deployed (answers questions)
//! and undeployed, and tested against question/answer pairs (several tests may run, each named by its
//! `test_id`). A deployed model can be made the default (it answers questions that name no model), be named
//! by aliases (`production`, `staging`, any name: each alias names one model; setting it on another model
//! moves it in one event), and be rolled back to the version of its name deployed before it.

mod command;
mod event;
#[cfg(test)]
mod tests;

pub use command::{ModelCommand, TestCase};
pub use event::ModelEvent;

use crate::Actor;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("a model with this id already exists")]
    AlreadyExists,
    #[error("no such model")]
    NotFound,
    #[error("the name must be 1 to 100 characters, without control characters")]
    InvalidName,
    #[error("the model is {0}; only a ready model can be deployed or tested")]
    NotReady(ModelStatus),
    #[error("a test needs 1 to {MAX_TEST_CASES} cases, each with a question and an expected answer")]
    InvalidTest,
    #[error("the model is not deployed")]
    NotDeployed,
    #[error("an alias is 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter")]
    InvalidAlias,
}

/// Whether `alias` may name a model: 1 to 64 characters of `a-z 0-9 . _ -`, starting with a letter (so it is
/// never mistaken for a model id).
pub fn valid_alias(alias: &str) -> bool {
    alias.len() <= 64
        && alias.starts_with(|c: char| c.is_ascii_lowercase())
        && alias.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// Where a model's weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ModelSource {
    /// The merged model of a completed training task (`merged_path` relative to the data folder).
    TrainingTask { task_id: Uuid, merged_path: String },
    /// An installed model folder (`BONSAI_MODELS_DIR/<model_id>`).
    Installed { model_id: String },
    /// A checkpoint of a training task (at `step`): its LoRA adapter, copied to `adapter_path` (relative to
    /// the data folder) when the model was registered, is merged into the base when the model is exported.
    TrainingCheckpoint { task_id: Uuid, step: u64, adapter_path: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    #[default]
    Exporting,
    Ready,
    Failed,
}

impl ModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Exporting => "exporting",
            ModelStatus::Ready => "ready",
            ModelStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most cases one test may have.
pub const MAX_TEST_CASES: usize = 200;

/// The state the Model aggregate decides on.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Model {
    pub id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub source: Option<ModelSource>,
    pub status: ModelStatus,
    /// The ONNX export folder, relative to the data folder.
    pub onnx_path: Option<String>,
    pub deployed: bool,
    /// Whether a test is pending (any of `pending_tests`, or one requested before tests were named).
    pub test_pending: bool,
    /// The tests requested and not yet scored.
    #[serde(default)]
    pub pending_tests: Vec<Uuid>,
    #[serde(default)]
    pub name: Option<String>,
    /// 1, 2, ... per name.
    #[serde(default)]
    pub version: Option<u32>,
    /// Deployed as soon as it is exported.
    #[serde(default)]
    pub deploy_when_ready: bool,
    /// The installed base model it was made from (or is).
    #[serde(default)]
    pub base_model_id: String,
}

impl Model {
    /// Whether `actor` may manage this model: its owner, or an admin.
    pub fn managed_by(&self, actor: &Actor) -> bool {
        actor.may_see(crate::Owned::Model, self.owner_id)
    }
}

impl Aggregate for Model {
    const TYPE: &'static str = "Model";
    type Command = ModelCommand;
    type Event = ModelEvent;
    type Error = ModelError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ModelEvent::ModelRegistered {
                model_id,
                owner_id,
                source,
                name,
                version,
                deploy_when_ready,
                base_model_id,
                ..
            } => {
                self.deploy_when_ready = deploy_when_ready;
                self.base_model_id = base_model_id;
                self.id = Some(model_id);
                self.name = Some(name);
                self.version = Some(version);
                self.owner_id = Some(owner_id);
                self.source = Some(source);
            }
            ModelEvent::ModelExported { onnx_path, .. } => {
                self.status = ModelStatus::Ready;
                self.onnx_path = Some(onnx_path);
            }
            ModelEvent::ModelExportFailed { .. } => self.status = ModelStatus::Failed,
            ModelEvent::ModelDeployed => self.deployed = true,
            ModelEvent::ModelUndeployed | ModelEvent::ModelRolledBack { .. } => self.deployed = false,
            ModelEvent::ModelTestRequested { test_id, .. } => {
                self.pending_tests.extend(test_id);
                self.test_pending = true;
            }
            ModelEvent::ModelTested { test_id, .. } => {
                match test_id {
                    Some(id) => self.pending_tests.retain(|t| *t != id),
                    None => self.pending_tests.clear(),
                }
                self.test_pending = !self.pending_tests.is_empty();
            }
            ModelEvent::ModelMadeDefault | ModelEvent::ModelAliasSet { .. } | ModelEvent::ModelAliasRemoved { .. } => {}
        }
    }
}
