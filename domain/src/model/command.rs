//! Commands of the Model aggregate and the decisions they lead to.

use super::*;

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
        /// Deploy the model as soon as its export is ready (a fine-tuning job's model).
        deploy_when_ready: bool,
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
    /// Asks the serving worker to answer `cases` with this model and score the answers; `test_id` names
    /// the run.
    RequestTest {
        by: Actor,
        cases: Vec<TestCase>,
        test_id: Uuid,
    },
    /// The worker's score; ignored unless that test is pending (`test_id` none: a test requested before
    /// tests were named).
    RecordTest {
        accuracy: f64,
        report: Value,
        test_id: Option<Uuid>,
    },
    /// Makes this deployed model the one that answers questions naming no model.
    MakeDefault {
        by: Actor,
    },
    /// Points `alias` at this ready model.
    SetAlias {
        by: Actor,
        alias: String,
    },
    /// Removes `alias`, which the caller has found names this model (the latest alias event wins, so a removal
    /// after a move to another model is still a removal: the alias was named last by this one).
    RemoveAlias {
        by: Actor,
        alias: String,
    },
    /// Takes this deployed model out of service for `to_model_id`, version `to_version` of its name, which
    /// the caller has deployed first.
    RollBack {
        by: Actor,
        to_model_id: Uuid,
        to_version: u32,
    },
}

/// One test question and the answer expected (matched after normalising case and spaces; an answer that
/// contains the expected one counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    pub question: String,
    pub expected: String,
}

impl Model {
    pub(super) fn decide(&self, command: ModelCommand) -> Result<Vec<ModelEvent>, ModelError> {
        if let ModelCommand::RegisterModel {
            model_id,
            owner_id,
            name,
            version,
            base_model_id,
            source,
            metrics,
            deploy_when_ready,
        } = command
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
                deploy_when_ready,
            }]);
        }
        if self.id.is_none() {
            return Err(ModelError::NotFound);
        }
        if let ModelCommand::Deploy { by }
        | ModelCommand::Undeploy { by }
        | ModelCommand::RequestTest { by, .. }
        | ModelCommand::MakeDefault { by }
        | ModelCommand::SetAlias { by, .. }
        | ModelCommand::RemoveAlias { by, .. }
        | ModelCommand::RollBack { by, .. } = &command
        {
            if !self.managed_by(by) {
                return Err(ModelError::NotFound);
            }
        }
        let exporting = self.status == ModelStatus::Exporting;
        match command {
            ModelCommand::RegisterModel { .. } => unreachable!("handled above"),
            ModelCommand::RecordExport { onnx_path, export_secs } if exporting => {
                let exported = ModelEvent::ModelExported { onnx_path, export_secs };
                Ok(if self.deploy_when_ready { vec![exported, ModelEvent::ModelDeployed] } else { vec![exported] })
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
            ModelCommand::RequestTest { cases, test_id, .. } => {
                let blank = |s: &str| s.trim().is_empty();
                if cases.is_empty()
                    || cases.len() > MAX_TEST_CASES
                    || cases.iter().any(|c| blank(&c.question) || blank(&c.expected))
                {
                    return Err(ModelError::InvalidTest);
                }
                Ok(vec![ModelEvent::ModelTestRequested { cases, test_id: Some(test_id) }])
            }
            ModelCommand::RecordTest { accuracy, report, test_id } => {
                let pending = match test_id {
                    Some(id) => self.pending_tests.contains(&id),
                    None => self.test_pending,
                };
                Ok(if pending { vec![ModelEvent::ModelTested { accuracy, report, test_id }] } else { vec![] })
            }
            ModelCommand::MakeDefault { .. } if !self.deployed => Err(ModelError::NotDeployed),
            ModelCommand::MakeDefault { .. } => Ok(vec![ModelEvent::ModelMadeDefault]),
            ModelCommand::SetAlias { alias, .. } => {
                if !valid_alias(&alias) {
                    return Err(ModelError::InvalidAlias);
                }
                if self.status != ModelStatus::Ready {
                    return Err(ModelError::NotReady(self.status));
                }
                Ok(vec![ModelEvent::ModelAliasSet { alias }])
            }
            ModelCommand::RemoveAlias { alias, .. } => Ok(vec![ModelEvent::ModelAliasRemoved { alias }]),
            ModelCommand::RollBack { .. } if !self.deployed => Err(ModelError::NotDeployed),
            ModelCommand::RollBack { to_model_id, to_version, .. } => {
                Ok(vec![ModelEvent::ModelRolledBack { to_model_id, to_version }])
            }
        }
    }
}
