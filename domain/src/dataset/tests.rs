//! Given/when/then tests of the Dataset aggregate.

use super::*;
use crate::Role;
use cqrs_es::test::TestFramework;
use serde_json::json;

fn framework() -> TestFramework<Dataset> {
    TestFramework::with(())
}

fn id() -> Uuid {
    Uuid::from_u128(7)
}

fn owner() -> Uuid {
    Uuid::from_u128(42)
}

fn me() -> Actor {
    Actor { id: owner(), role: Role::Trainer }
}

fn file(sha: &str) -> DatasetFile {
    DatasetFile { sha256: sha.repeat(64), size: 120, filename: "qa.jsonl".into(), format: "jsonl".into() }
}

fn uploaded() -> DatasetEvent {
    DatasetEvent::DatasetUploaded {
        dataset_id: id(),
        owner_id: owner(),
        name: "capitals".into(),
        description: String::new(),
        file: file("a"),
    }
}

fn requested(version: u32, sha: &str) -> DatasetEvent {
    DatasetEvent::DatasetValidationRequested { version, sha256: sha.repeat(64), tokenizer_model_id: None }
}

fn summary() -> ValidationSummary {
    ValidationSummary {
        record_count: 12,
        shape: Some("question_answer".into()),
        stats: json!({"records": 12}),
        warnings: json!([]),
    }
}

fn validated(version: u32) -> DatasetEvent {
    let s = summary();
    DatasetEvent::DatasetValidated { version, record_count: 12, shape: s.shape, stats: s.stats, warnings: s.warnings }
}

#[test]
fn uploading_records_the_first_version() {
    framework()
        .given_no_previous_events()
        .when(DatasetCommand::UploadDataset {
            dataset_id: id(),
            owner_id: owner(),
            name: "capitals".into(),
            description: String::new(),
            file: file("a"),
        })
        .then_expect_events(vec![uploaded()]);
}

#[test]
fn uploading_twice_with_the_same_id_is_refused() {
    framework()
        .given(vec![uploaded()])
        .when(DatasetCommand::UploadDataset {
            dataset_id: id(),
            owner_id: owner(),
            name: "again".into(),
            description: String::new(),
            file: file("b"),
        })
        .then_expect_error(DatasetError::AlreadyExists);
}

#[test]
fn a_new_version_gets_the_next_number() {
    framework()
        .given(vec![uploaded(), DatasetEvent::DatasetVersionAdded { version: 2, file: file("b") }])
        .when(DatasetCommand::AddDatasetVersion { by: me(), file: file("c") })
        .then_expect_events(vec![DatasetEvent::DatasetVersionAdded { version: 3, file: file("c") }]);
}

#[test]
fn commands_to_an_unknown_dataset_are_not_found() {
    framework()
        .given_no_previous_events()
        .when(DatasetCommand::RequestValidation { by: me(), tokenizer_model_id: None })
        .then_expect_error(DatasetError::NotFound);
}

#[test]
fn validation_is_requested_for_the_latest_version_and_names_its_file() {
    framework()
        .given(vec![uploaded(), DatasetEvent::DatasetVersionAdded { version: 2, file: file("b") }])
        .when(DatasetCommand::RequestValidation { by: me(), tokenizer_model_id: None })
        .then_expect_events(vec![requested(2, "b")]);
}

#[test]
fn the_requested_tokenizer_travels_with_the_request() {
    framework()
        .given(vec![uploaded()])
        .when(DatasetCommand::RequestValidation { by: me(), tokenizer_model_id: Some("smollm2".into()) })
        .then_expect_events(vec![DatasetEvent::DatasetValidationRequested {
            version: 1,
            sha256: "a".repeat(64),
            tokenizer_model_id: Some("smollm2".into()),
        }]);
}

#[test]
fn asking_again_while_validating_changes_nothing() {
    framework()
        .given(vec![uploaded(), requested(1, "a")])
        .when(DatasetCommand::RequestValidation { by: me(), tokenizer_model_id: None })
        .then_expect_events(vec![]);
}

#[test]
fn a_validation_result_is_recorded_once() {
    framework()
        .given(vec![uploaded(), requested(1, "a")])
        .when(DatasetCommand::RecordValidation { version: 1, summary: summary() })
        .then_expect_events(vec![validated(1)]);
    // A redelivered request answered again: the version is decided, nothing more is recorded.
    framework()
        .given(vec![uploaded(), requested(1, "a"), validated(1)])
        .when(DatasetCommand::RecordValidationFailure {
            version: 1,
            errors: json!([]),
            error_count: 1,
            record_count: 0,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_failed_validation_keeps_the_errors_and_their_count() {
    let errors = json!([{"line": 3, "field": "answer", "kind": "missing_field", "message": "no answer"}]);
    framework()
        .given(vec![uploaded(), requested(1, "a")])
        .when(DatasetCommand::RecordValidationFailure {
            version: 1,
            errors: errors.clone(),
            error_count: 250,
            record_count: 9,
        })
        .then_expect_events(vec![DatasetEvent::DatasetValidationFailed {
            version: 1,
            errors,
            error_count: 250,
            record_count: 9,
        }]);
}

#[test]
fn a_result_for_an_unknown_version_is_refused() {
    framework()
        .given(vec![uploaded(), requested(1, "a")])
        .when(DatasetCommand::RecordValidation { version: 5, summary: summary() })
        .then_expect_error(DatasetError::UnknownVersion(5));
}

#[test]
fn a_validated_dataset_may_be_validated_again() {
    framework()
        .given(vec![uploaded(), requested(1, "a"), validated(1)])
        .when(DatasetCommand::RequestValidation { by: me(), tokenizer_model_id: None })
        .then_expect_events(vec![requested(1, "a")]);
}

#[test]
fn an_archived_dataset_refuses_new_versions_and_validation() {
    let given = || vec![uploaded(), DatasetEvent::DatasetArchived];
    framework()
        .given(given())
        .when(DatasetCommand::AddDatasetVersion { by: me(), file: file("b") })
        .then_expect_error(DatasetError::Archived);
    framework()
        .given(given())
        .when(DatasetCommand::RequestValidation { by: me(), tokenizer_model_id: None })
        .then_expect_error(DatasetError::Archived);
    framework().given(given()).when(DatasetCommand::ArchiveDataset { by: me() }).then_expect_events(vec![]);
}

#[test]
fn archiving_is_recorded() {
    framework()
        .given(vec![uploaded()])
        .when(DatasetCommand::ArchiveDataset { by: me() })
        .then_expect_events(vec![DatasetEvent::DatasetArchived]);
}

#[test]
fn status_follows_the_events() {
    let mut dataset = Dataset::default();
    for event in [uploaded(), requested(1, "a")] {
        dataset.apply(event);
    }
    assert_eq!(dataset.version(1).unwrap().status, VersionStatus::Validating);
    dataset.apply(validated(1));
    assert_eq!(dataset.version(1).unwrap().status, VersionStatus::Valid);
    assert_eq!(dataset.latest_version(), 1);
}

#[test]
fn another_users_dataset_is_not_found_unless_the_actor_reads_every_dataset() {
    let stranger = Actor { id: Uuid::from_u128(5), role: Role::Trainer };
    framework()
        .given(vec![uploaded()])
        .when(DatasetCommand::ArchiveDataset { by: stranger })
        .then_expect_error(DatasetError::NotFound);
    framework()
        .given(vec![uploaded()])
        .when(DatasetCommand::AddDatasetVersion { by: stranger, file: file("b") })
        .then_expect_error(DatasetError::NotFound);
    let admin = Actor { id: Uuid::from_u128(6), role: Role::Admin };
    framework()
        .given(vec![uploaded()])
        .when(DatasetCommand::RequestValidation { by: admin, tokenizer_model_id: None })
        .then_expect_events(vec![requested(1, "a")]);
}

#[test]
fn only_a_visible_unarchived_validated_version_is_trainable() {
    let mut dataset = Dataset::default();
    dataset.apply(uploaded());
    let stranger = Actor { id: Uuid::from_u128(5), role: Role::Trainer };
    assert_eq!(
        dataset.trainable(&me(), None),
        Err(NotTrainable::NotValid { version: 1, status: VersionStatus::Uploaded })
    );
    dataset.apply(requested(1, "a"));
    dataset.apply(validated(1));
    let chosen = dataset.trainable(&me(), None).unwrap();
    assert_eq!((chosen.dataset_id, chosen.version, chosen.sha256), (id(), 1, "a".repeat(64)));
    assert_eq!(dataset.trainable(&me(), Some(2)), Err(NotTrainable::UnknownVersion(2)));
    assert_eq!(dataset.trainable(&stranger, None), Err(NotTrainable::Unknown), "another user's is never revealed");
    let admin = Actor { id: Uuid::from_u128(6), role: Role::Admin };
    assert!(dataset.trainable(&admin, Some(1)).is_ok());
    assert_eq!(Dataset::default().trainable(&me(), None), Err(NotTrainable::Unknown));
    dataset.archived = true;
    assert_eq!(dataset.trainable(&me(), Some(1)), Err(NotTrainable::Archived));
}
