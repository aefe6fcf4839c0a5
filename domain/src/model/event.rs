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
        /// The model is deployed as soon as it is exported (`ModelDeployed` follows `ModelExported`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deploy_when_ready: bool,
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
    /// `test_id` names the run (absent in events written before tests were named: one run at a time).
    ModelTestRequested {
        cases: Vec<TestCase>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_id: Option<Uuid>,
    },
    /// `accuracy`: the share of test questions answered as expected; `report` has each answer and the
    /// exact-match, contains and token-F1 scores per case and in total.
    ModelTested {
        accuracy: f64,
        report: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test_id: Option<Uuid>,
    },
    /// This model answers questions that name no model (the latest such event among deployed models wins).
    ModelMadeDefault,
    /// The alias now names this model (moved from whichever model it named before: the latest such event
    /// for an alias wins, so a move is one event).
    ModelAliasSet {
        alias: String,
    },
    /// The alias names no model any more (it named this one); questions naming it are refused as unknown.
    ModelAliasRemoved {
        alias: String,
    },
    /// The model was taken out of service in favour of `to_model_id` (version `to_version` of the same name),
    /// the version deployed before it; that model's `ModelDeployed` comes first.
    ModelRolledBack {
        to_model_id: Uuid,
        to_version: u32,
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
            ModelEvent::ModelMadeDefault => "ModelMadeDefault",
            ModelEvent::ModelAliasSet { .. } => "ModelAliasSet",
            ModelEvent::ModelAliasRemoved { .. } => "ModelAliasRemoved",
            ModelEvent::ModelRolledBack { .. } => "ModelRolledBack",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
