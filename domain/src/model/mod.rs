//! The Model aggregate: a registered, versioned model that can be served. A model is registered from a
//! completed training task (its merged weights) or from an installed base model; an export worker then
//! writes its ONNX export (`exporting -> ready | failed`); a ready model can be deployed (answers questions)
//! and undeployed, and tested against question/answer pairs.

mod event;
#[cfg(test)]
mod tests;

pub use event::ModelEvent;

use crate::dataset::Actor;
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
}

/// Where a model's weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ModelSource {
    /// The merged model of a completed training task (`merged_path` relative to the data folder).
    TrainingTask { task_id: Uuid, merged_path: String },
    /// An installed model folder (`BONSAI_MODELS_DIR/<model_id>`).
    Installed { model_id: String },
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

#[derive(Debug, Clone)]
pub enum ModelCommand {
    RegisterModel {
        model_id: Uuid,
        owner_id: Uuid,
        name: String,
        version: u32,
        base_model_id: String,
        source: ModelSource,
        /// The training result or other facts worth keeping with the model.
        metrics: Value,
    },
    /// The export worker's answers; ignored unless the model is exporting.
    RecordExport {
        onnx_path: String,
        export_secs: f64,
    },
    FailExport {
        code: String,
        message: String,
    },
    Deploy {
        by: Actor,
    },
    Undeploy {
        by: Actor,
    },
    /// Asks the serving worker to answer `cases` with this model and score the answers.
    RequestTest {
        by: Actor,
        cases: Vec<TestCase>,
    },
    /// The worker's score; ignored unless a test is pending.
    RecordTest {
        accuracy: f64,
        report: Value,
    },
}

/// One test question and the answer expected (matched after normalising case and spaces; an answer that
/// contains the expected one counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    pub question: String,
    pub expected: String,
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
    pub test_pending: bool,
}

impl Model {
    /// Whether `actor` may manage this model: its owner, or an admin.
    pub fn managed_by(&self, actor: &Actor) -> bool {
        self.owner_id == Some(actor.id) || actor.role == crate::Role::Admin
    }

    fn decide(&self, command: ModelCommand) -> Result<Vec<ModelEvent>, ModelError> {
        if let ModelCommand::RegisterModel { model_id, owner_id, name, version, base_model_id, source, metrics } =
            command
        {
            if self.id.is_some() {
                return Err(ModelError::AlreadyExists);
            }
            let name = crate::values::thing_name(&name).ok_or(ModelError::InvalidName)?;
            return Ok(vec![ModelEvent::ModelRegistered {
                model_id,
                owner_id,
                name,
                version,
                base_model_id,
                source,
                metrics,
            }]);
        }
        if self.id.is_none() {
            return Err(ModelError::NotFound);
        }
        if let ModelCommand::Deploy { by } | ModelCommand::Undeploy { by } | ModelCommand::RequestTest { by, .. } =
            &command
        {
            if !self.managed_by(by) {
                return Err(ModelError::NotFound);
            }
        }
        let exporting = self.status == ModelStatus::Exporting;
        match command {
            ModelCommand::RegisterModel { .. } => unreachable!("handled above"),
            ModelCommand::RecordExport { onnx_path, export_secs } if exporting => {
                Ok(vec![ModelEvent::ModelExported { onnx_path, export_secs }])
            }
            ModelCommand::FailExport { code, message } if exporting => {
                Ok(vec![ModelEvent::ModelExportFailed { code, message }])
            }
            ModelCommand::RecordExport { .. } | ModelCommand::FailExport { .. } => Ok(vec![]),
            ModelCommand::Deploy { .. } if self.status != ModelStatus::Ready => Err(ModelError::NotReady(self.status)),
            ModelCommand::Deploy { .. } if self.deployed => Ok(vec![]),
            ModelCommand::Deploy { .. } => Ok(vec![ModelEvent::ModelDeployed]),
            ModelCommand::Undeploy { .. } if !self.deployed => Ok(vec![]),
            ModelCommand::Undeploy { .. } => Ok(vec![ModelEvent::ModelUndeployed]),
            ModelCommand::RequestTest { .. } if self.status != ModelStatus::Ready => {
                Err(ModelError::NotReady(self.status))
            }
            ModelCommand::RequestTest { cases, .. } => {
                let blank = |s: &str| s.trim().is_empty();
                if cases.is_empty()
                    || cases.len() > MAX_TEST_CASES
                    || cases.iter().any(|c| blank(&c.question) || blank(&c.expected))
                {
                    return Err(ModelError::InvalidTest);
                }
                Ok(vec![ModelEvent::ModelTestRequested { cases }])
            }
            ModelCommand::RecordTest { accuracy, report } if self.test_pending => {
                Ok(vec![ModelEvent::ModelTested { accuracy, report }])
            }
            ModelCommand::RecordTest { .. } => Ok(vec![]),
        }
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
            ModelEvent::ModelRegistered { model_id, owner_id, source, .. } => {
                self.id = Some(model_id);
                self.owner_id = Some(owner_id);
                self.source = Some(source);
            }
            ModelEvent::ModelExported { onnx_path, .. } => {
                self.status = ModelStatus::Ready;
                self.onnx_path = Some(onnx_path);
            }
            ModelEvent::ModelExportFailed { .. } => self.status = ModelStatus::Failed,
            ModelEvent::ModelDeployed => self.deployed = true,
            ModelEvent::ModelUndeployed => self.deployed = false,
            ModelEvent::ModelTestRequested { .. } => self.test_pending = true,
            ModelEvent::ModelTested { .. } => self.test_pending = false,
        }
    }
}
