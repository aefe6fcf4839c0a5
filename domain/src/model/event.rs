//! Events of the Model aggregate (JSON documented in docs/events.md).

use super::{ModelSource, TestCase};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelEvent {
    /// `version` counts the registrations of models with the same name (1, 2, ...).
    ModelRegistered {
        model_id: Uuid,
        owner_id: Uuid,
        name: String,
        version: u32,
        base_model_id: String,
        source: ModelSource,
        metrics: Value,
    },
    /// The ONNX export (graph, weights, tokenizer, template) is in `onnx_path`, relative to the data folder.
    ModelExported {
        onnx_path: String,
        export_secs: f64,
    },
    ModelExportFailed {
        code: String,
        message: String,
    },
    /// The model answers questions.
    ModelDeployed,
    ModelUndeployed,
    ModelTestRequested {
        cases: Vec<TestCase>,
    },
    /// `accuracy`: the share of test questions answered as expected; `report` has each answer.
    ModelTested {
        accuracy: f64,
        report: Value,
    },
}

impl DomainEvent for ModelEvent {
    fn event_type(&self) -> String {
        match self {
            ModelEvent::ModelRegistered { .. } => "ModelRegistered",
            ModelEvent::ModelExported { .. } => "ModelExported",
            ModelEvent::ModelExportFailed { .. } => "ModelExportFailed",
            ModelEvent::ModelDeployed => "ModelDeployed",
            ModelEvent::ModelUndeployed => "ModelUndeployed",
            ModelEvent::ModelTestRequested { .. } => "ModelTestRequested",
            ModelEvent::ModelTested { .. } => "ModelTested",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
