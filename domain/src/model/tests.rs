//! Given/when/then tests of the Model aggregate.

use super::*;
use crate::Role;
use cqrs_es::test::TestFramework;
use serde_json::json;

fn framework() -> TestFramework<Model> {
    TestFramework::with(())
}

fn owner() -> Actor {
    Actor { id: Uuid::from_u128(42), role: Role::Trainer }
}

fn registered() -> ModelEvent {
    ModelEvent::ModelRegistered {
        model_id: Uuid::from_u128(1),
        owner_id: owner().id,
        name: "faq bot".into(),
        version: 1,
        base_model_id: "tiny".into(),
        source: ModelSource::Installed { model_id: "tiny".into() },
        metrics: json!({}),
    }
}

fn exported() -> ModelEvent {
    ModelEvent::ModelExported { onnx_path: "serving/1/onnx".into(), export_secs: 1.0 }
}

#[test]
fn registering_needs_a_name() {
    let command = ModelCommand::RegisterModel {
        model_id: Uuid::from_u128(1),
        owner_id: owner().id,
        name: " faq bot ".into(),
        version: 1,
        base_model_id: "tiny".into(),
        source: ModelSource::Installed { model_id: "tiny".into() },
        metrics: json!({}),
    };
    framework().given_no_previous_events().when(command.clone()).then_expect_events(vec![registered()]);
    let unnamed = match command {
        ModelCommand::RegisterModel { model_id, owner_id, version, base_model_id, source, metrics, .. } => {
            ModelCommand::RegisterModel {
                model_id,
                owner_id,
                name: "  ".into(),
                version,
                base_model_id,
                source,
                metrics,
            }
        }
        other => other,
    };
    framework().given_no_previous_events().when(unnamed).then_expect_error(ModelError::InvalidName);
}

#[test]
fn only_a_ready_model_is_deployed_and_only_once() {
    framework()
        .given(vec![registered()])
        .when(ModelCommand::Deploy { by: owner() })
        .then_expect_error(ModelError::NotReady(ModelStatus::Exporting));
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::Deploy { by: owner() })
        .then_expect_events(vec![ModelEvent::ModelDeployed]);
    framework()
        .given(vec![registered(), exported(), ModelEvent::ModelDeployed])
        .when(ModelCommand::Deploy { by: owner() })
        .then_expect_events(vec![]);
    framework()
        .given(vec![registered(), exported(), ModelEvent::ModelDeployed])
        .when(ModelCommand::Undeploy { by: owner() })
        .then_expect_events(vec![ModelEvent::ModelUndeployed]);
}

#[test]
fn export_results_count_once_and_strangers_see_nothing() {
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::FailExport { code: "x".into(), message: "late".into() })
        .then_expect_events(vec![]);
    let stranger = Actor { id: Uuid::from_u128(9), role: Role::Trainer };
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::Deploy { by: stranger })
        .then_expect_error(ModelError::NotFound);
    let admin = Actor { id: Uuid::from_u128(9), role: Role::Admin };
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::Deploy { by: admin })
        .then_expect_events(vec![ModelEvent::ModelDeployed]);
}

#[test]
fn a_test_needs_cases_and_records_one_score() {
    let case = TestCase { question: "Q?".into(), expected: "A.".into() };
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::RequestTest { by: owner(), cases: vec![] })
        .then_expect_error(ModelError::InvalidTest);
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::RequestTest { by: owner(), cases: vec![case.clone()] })
        .then_expect_events(vec![ModelEvent::ModelTestRequested { cases: vec![case.clone()] }]);
    let tested = ModelEvent::ModelTested { accuracy: 1.0, report: json!([]) };
    framework()
        .given(vec![registered(), exported(), ModelEvent::ModelTestRequested { cases: vec![case] }])
        .when(ModelCommand::RecordTest { accuracy: 1.0, report: json!([]) })
        .then_expect_events(vec![tested.clone()]);
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::RecordTest { accuracy: 1.0, report: json!([]) })
        .then_expect_events(vec![]);
}
