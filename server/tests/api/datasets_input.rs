//! Bad input to the data service: each a clear 4xx with a stable code, nothing stored half-way.

use crate::datasets::{files_under, qa_jsonl};
use crate::helpers::*;
use bonsai_commands::CommandBus;
use bonsai_infra::{FileStore, LocalFileStore};
use bonsai_projections::log::aggregate_history;
use bonsai_workers::{EventBus, Processed, ValidationWorker};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;

#[tokio::test]
async fn an_upload_over_the_limit_is_413_and_leaves_no_file() {
    let mut settings = test_settings();
    settings.max_upload_bytes = 64 * 1024;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let big = qa_jsonl(4000);
    assert!(big.len() > 64 * 1024);
    let response = app.upload(Some(&admin), "big.jsonl", big, &[]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(response).await, "dataset_too_large");
    let root = app.settings.data_dir.join("datasets");
    assert!(files_under(&root).is_empty(), "no partial or stored file: {:?}", files_under(&root));
    // Just under the limit is fine.
    let small = app.upload(Some(&admin), "ok.jsonl", qa_jsonl(100), &[]).await;
    assert_eq!(small.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn binary_content_with_a_jsonl_name_is_415_and_not_kept() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00some zipped bytes".to_vec();
    let elf = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    let nul = b"{\"question\": \"a\0b\", \"answer\": \"c\"}\n".to_vec();
    for (bytes, reason) in [(zip, "dataset_not_text"), (elf, "dataset_not_text"), (nul, "dataset_not_text")] {
        let response = app.upload(Some(&admin), "data.jsonl", bytes, &[]).await;
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_content");
        assert_eq!(body["error"]["details"]["reason"], reason);
    }
    assert!(files_under(&app.blobs_dir()).is_empty());
}

#[tokio::test]
async fn invalid_utf8_unknown_formats_and_empty_files_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let latin1 = b"{\"question\": \"caf\xe9\", \"answer\": \"ok\"}\n".to_vec();
    let response = app.upload(Some(&admin), "qa.jsonl", latin1, &[]).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["details"]["reason"], "dataset_invalid_utf8");
    let prose = app.upload(Some(&admin), "qa.jsonl", b"Dear diary, today I wrote no JSON.\n".to_vec(), &[]).await;
    assert_eq!(prose.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let empty = app.upload(Some(&admin), "qa.jsonl", Vec::new(), &[]).await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(empty).await, "dataset_invalid");
    let mismatch = app.upload(Some(&admin), "qa.csv", qa_jsonl(3), &[("format", "csv")]).await;
    assert_eq!(error_code(mismatch).await, "format_mismatch");
    let missing = app
        .client
        .post(app.url("/api/data/upload"))
        .bearer_auth(&admin)
        .multipart(reqwest::multipart::Form::new().text("name", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let not_multipart = app.post("/api/data/upload", Some(&admin), serde_json::json!({"file": "x"})).await;
    assert_eq!(error_code(not_multipart).await, "invalid_multipart");
    assert!(files_under(&app.blobs_dir()).is_empty());
}

#[tokio::test]
async fn hostile_file_names_are_kept_as_metadata_only() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let names = [
        ("../../escape.jsonl", "escape.jsonl"),
        ("../../../../etc/passwd", "passwd"),
        ("nul\0byte.jsonl", "nulbyte.jsonl"),
    ];
    for (i, (name, kept)) in names.iter().enumerate() {
        let response = app.upload(Some(&admin), name, qa_jsonl(i + 1), &[]).await;
        if response.status() == StatusCode::BAD_REQUEST {
            continue; // a NUL in a header may be refused by the multipart parser: equally safe
        }
        assert_eq!(response.status(), StatusCode::CREATED, "{name:?}");
        let body: Value = response.json().await.unwrap();
        let stored = body["filename"].as_str().unwrap();
        assert!(!stored.contains('\0'));
        assert_eq!(stored, *kept, "only a safe base name is kept");
    }
    let escaped = app.settings.data_dir.parent().unwrap().join("escape.jsonl");
    assert!(!escaped.exists());
    let files = files_under(&app.settings.data_dir);
    assert!(files.len() >= 2);
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()), "server-chosen name: {file:?}");
    }
}

#[tokio::test]
async fn malformed_lines_are_reported_line_by_line() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let long = format!("{{\"question\": \"{}\", \"answer\": \"a\"}}", "x".repeat(1_100_000));
    let lines = [
        "\u{feff}{\"question\": \"q1\", \"answer\": \"a1\"}".to_owned(),
        "{\"question\": \"q2\", \"answer\": ".to_owned(),
        "{\"question\": \"q3\"}".to_owned(),
        deep,
        long,
        "{\"question\": \"q6\", \"answer\": \"a6\"}".to_owned(),
    ];
    let id = app.upload_ok(&admin, lines.join("\r\n").into_bytes()).await;
    let detail = app.validated(&admin, &id).await;
    assert_eq!(detail["status"], "invalid");
    assert_eq!(detail["error_count"], 4);
    assert_eq!(detail["record_count"], 2, "the BOM and CRLF lines are fine");
    let errors = detail["errors"].as_array().unwrap();
    let at = |line: u64| {
        errors.iter().find(|e| e["line"] == line).unwrap_or_else(|| panic!("no error at line {line}: {errors:?}"))
    };
    assert_eq!(at(2)["kind"], "malformed_json");
    assert_eq!((at(3)["kind"].as_str(), at(3)["field"].as_str()), (Some("missing_field"), Some("answer")));
    assert_eq!(at(4)["kind"], "too_deep");
    assert_eq!(at(5)["kind"], "record_too_long");
}

#[tokio::test]
async fn a_redelivered_validation_request_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let id = app.upload_ok(&admin, qa_jsonl(12)).await;
    assert_eq!(app.validated(&admin, &id).await["status"], "valid");
    let history = aggregate_history(&app.pool, "Dataset", &id).await.unwrap();
    let request = history.iter().find(|e| e.event_type == "DatasetValidationRequested").unwrap().clone();

    let nats = async_nats::connect(&app.settings.nats_url).await.unwrap();
    let files: Arc<dyn FileStore> = Arc::new(LocalFileStore::new(app.settings.data_dir.join("datasets")).unwrap());
    let worker = ValidationWorker::new(
        EventBus::new(nats, app.settings.nats_prefix.clone()),
        CommandBus::new(app.pool.clone()),
        files,
        None,
    );
    assert_eq!(worker.handle(&request).await, Processed::Applied);
    let after = aggregate_history(&app.pool, "Dataset", &id).await.unwrap();
    assert_eq!(after.len(), history.len(), "no second result recorded");
    assert_eq!(worker.handle(&history[0]).await, Processed::AlreadyApplied, "other events are skipped");
}

#[tokio::test]
async fn files_no_event_names_are_collected_after_a_grace_period() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let id = app.upload_ok(&admin, qa_jsonl(12)).await;
    let store = LocalFileStore::new(app.settings.data_dir.join("datasets")).unwrap();
    let bytes = |text: &'static str| futures::stream::iter([Ok(bytes::Bytes::from_static(text.as_bytes()))]).boxed();
    // What a refused command leaves behind: a stored file that no event names. One old, one recent.
    let orphan = store.put(bytes("{\"question\": \"q\", \"answer\": \"orphan\"}\n"), 1 << 20).await.unwrap();
    let recent = store.put(bytes("{\"question\": \"q\", \"answer\": \"recent\"}\n"), 1 << 20).await.unwrap();
    let three_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 24 * 3600);
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for blob in &listed {
        if blob.sha256 != recent.sha256 {
            let path = store.path_of(&blob.sha256).unwrap();
            std::fs::File::options().append(true).open(path).unwrap().set_modified(three_days_ago).unwrap();
        }
    }
    let partial = app.settings.data_dir.join("datasets/tmp/crashed.part");
    std::fs::write(&partial, b"half an upload").unwrap();
    std::fs::File::options().append(true).open(&partial).unwrap().set_modified(three_days_ago).unwrap();

    let gc = |dry_run: bool| {
        let mut command = app.cli(&["gc-files"]);
        let output = command.args(dry_run.then_some("--dry-run")).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let planned = gc(true);
    assert!(planned.contains(&format!("would remove {}", orphan.sha256)), "{planned}");
    assert!(planned.contains("kept 1 referenced, 1 recent"), "{planned}");
    assert_eq!(store.list().await.unwrap().len(), 3, "a dry run removes nothing");

    let done = gc(false);
    assert!(done.contains(&format!("removed {}", orphan.sha256)), "{done}");
    assert!(done.contains("and 1 unfinished uploads"), "{done}");
    let left: Vec<String> = store.list().await.unwrap().into_iter().map(|b| b.sha256).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&recent.sha256) && !left.contains(&orphan.sha256));
    assert!(!partial.exists(), "the crashed upload's partial file is gone");
    // The dataset's own file was kept: it still validates and previews.
    assert_eq!(app.validated(&admin, &id).await["status"], "valid");
    let preview = app.get(&format!("/api/data/datasets/{id}/preview?limit=1"), Some(&admin)).await;
    assert_eq!(preview.status(), StatusCode::OK);
}
