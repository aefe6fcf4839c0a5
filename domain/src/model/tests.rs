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
        deploy_when_ready: false,
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
        deploy_when_ready: false,
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
                deploy_when_ready: false,
            }
        }
        other => other,
    };
    framework().given_no_previous_events().when(unnamed).then_expect_error(ModelError::InvalidName);
}

#[test]
fn a_model_registered_to_be_deployed_is_deployed_when_its_export_is_ready() {
    let mut eager = registered();
    if let ModelEvent::ModelRegistered { deploy_when_ready, .. } = &mut eager {
        *deploy_when_ready = true;
    }
    let export = ModelCommand::RecordExport { onnx_path: "serving/1/onnx".into(), export_secs: 1.0 };
    framework().given(vec![eager]).when(export.clone()).then_expect_events(vec![exported(), ModelEvent::ModelDeployed]);
    framework().given(vec![registered()]).when(export).then_expect_events(vec![exported()]);
    // Older events, without the field, read as not deployed when ready.
    let old = json!({"ModelRegistered": {"model_id": Uuid::from_u128(1), "owner_id": owner().id, "name": "faq bot",
        "version": 1, "base_model_id": "tiny", "source": {"kind": "installed", "model_id": "tiny"}, "metrics": {}}});
    assert_eq!(serde_json::from_value::<ModelEvent>(old).unwrap(), registered());
    let written = serde_json::to_value(registered()).unwrap();
    assert!(written["ModelRegistered"].get("deploy_when_ready").is_none(), "written only when set");
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
    let run = Uuid::from_u128(7);
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::RequestTest { by: owner(), cases: vec![], test_id: run })
        .then_expect_error(ModelError::InvalidTest);
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::RequestTest { by: owner(), cases: vec![case.clone()], test_id: run })
        .then_expect_events(vec![ModelEvent::ModelTestRequested { cases: vec![case.clone()], test_id: Some(run) }]);
    let tested = ModelEvent::ModelTested { accuracy: 1.0, report: json!([]), test_id: Some(run) };
    let requested = ModelEvent::ModelTestRequested { cases: vec![case], test_id: Some(run) };
    framework()
        .given(vec![registered(), exported(), requested.clone()])
        .when(ModelCommand::RecordTest { accuracy: 1.0, report: json!([]), test_id: Some(run) })
        .then_expect_events(vec![tested.clone()]);
    framework()
        .given(vec![registered(), exported(), requested, tested])
        .when(ModelCommand::RecordTest { accuracy: 1.0, report: json!([]), test_id: Some(run) })
        .then_expect_events(vec![]);
}

#[test]
fn two_tests_requested_back_to_back_are_each_scored() {
    let case = TestCase { question: "Q?".into(), expected: "A.".into() };
    let (first, second) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let requested = |id| ModelEvent::ModelTestRequested { cases: vec![case.clone()], test_id: Some(id) };
    let tested = |id| ModelEvent::ModelTested { accuracy: 0.5, report: json!({}), test_id: Some(id) };
    // The first result must not clear the second, still pending.
    framework()
        .given(vec![registered(), exported(), requested(first), requested(second), tested(first)])
        .when(ModelCommand::RecordTest { accuracy: 0.5, report: json!({}), test_id: Some(second) })
        .then_expect_events(vec![tested(second)]);
}

#[test]
fn a_test_requested_before_tests_were_named_is_still_scored_once() {
    let case = TestCase { question: "Q?".into(), expected: "A.".into() };
    let legacy: ModelEvent =
        serde_json::from_value(json!({"ModelTestRequested": {"cases": [{"question": "Q?", "expected": "A."}]}}))
            .unwrap();
    assert_eq!(legacy, ModelEvent::ModelTestRequested { cases: vec![case], test_id: None });
    framework()
        .given(vec![registered(), exported(), legacy])
        .when(ModelCommand::RecordTest { accuracy: 1.0, report: json!([]), test_id: None })
        .then_expect_events(vec![ModelEvent::ModelTested { accuracy: 1.0, report: json!([]), test_id: None }]);
}

#[test]
fn only_a_deployed_model_becomes_the_default_or_is_rolled_back() {
    framework()
        .given(vec![registered(), exported()])
        .when(ModelCommand::MakeDefault { by: owner() })
        .then_expect_error(ModelError::NotDeployed);
    framework()
        .given(vec![registered(), exported(), ModelEvent::ModelDeployed])
        .when(ModelCommand::MakeDefault { by: owner() })
        .then_expect_events(vec![ModelEvent::ModelMadeDefault]);
    let back = ModelCommand::RollBack { by: owner(), to_model_id: Uuid::from_u128(2), to_version: 1 };
    framework().given(vec![registered(), exported()]).when(back.clone()).then_expect_error(ModelError::NotDeployed);
    framework()
        .given(vec![registered(), exported(), ModelEvent::ModelDeployed])
        .when(back)
        .then_expect_events(vec![ModelEvent::ModelRolledBack { to_model_id: Uuid::from_u128(2), to_version: 1 }]);
}

#[test]
fn aliases_are_names_not_ids_and_point_at_ready_models() {
    assert!(valid_alias("production") && valid_alias("staging-2") && valid_alias("v1.2_b"));
    assert!(!valid_alias("") && !valid_alias("Prod") && !valid_alias("1abc") && !valid_alias(&"a".repeat(65)));
    assert!(!valid_alias(&Uuid::from_u128(1).to_string()));
    let set = |alias: &str| ModelCommand::SetAlias { by: owner(), alias: alias.into() };
    framework()
        .given(vec![registered()])
        .when(set("production"))
        .then_expect_error(ModelError::NotReady(ModelStatus::Exporting));
    framework().given(vec![registered(), exported()]).when(set("no way")).then_expect_error(ModelError::InvalidAlias);
    framework()
        .given(vec![registered(), exported()])
        .when(set("production"))
        .then_expect_events(vec![ModelEvent::ModelAliasSet { alias: "production".into() }]);
}
