//! The data service end to end: upload, validation through NATS and the worker, versions, preview,
//! archive, access rules, replay. Bad input is in `datasets_input.rs`.

use crate::helpers::*;
use bonsai_projections::datasets::all_rows;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `n` question/answer pairs as JSONL.
pub fn qa_jsonl(n: usize) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{{\"question\": \"question {i}\", \"answer\": \"answer {i}\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

impl TestApp {
    /// Uploads `bytes` as `filename` with extra text fields (raw file name, no percent-encoding).
    pub async fn upload(
        &self,
        token: Option<&str>,
        filename: &str,
        bytes: Vec<u8>,
        fields: &[(&str, &str)],
    ) -> Response {
        let mut form =
            Form::new().percent_encode_noop().part("file", Part::bytes(bytes).file_name(filename.to_owned()));
        for (key, value) in fields {
            form = form.text(key.to_string(), value.to_string());
        }
        let mut request = self.client.post(self.url("/api/data/upload")).multipart(form);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request is sent")
    }

    /// Uploads a valid dataset and returns its id once the view has it.
    pub async fn upload_ok(&self, token: &str, bytes: Vec<u8>) -> String {
        let response = self.upload(Some(token), "qa.jsonl", bytes, &[("name", "capitals")]).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let path = format!("/api/data/datasets/{id}");
        eventually(|| async { self.get(&path, Some(token)).await.status() == StatusCode::OK }).await;
        id
    }

    /// Asks for validation and waits until the latest version is `valid` or `invalid`; returns the detail.
    pub async fn validated(&self, token: &str, id: &str) -> Value {
        self.validated_with(token, id, &[]).await
    }

    /// Asks for validation of dataset `id`, with `query` parameters.
    pub async fn request_validation(&self, token: &str, id: &str, query: &[(&str, &str)]) -> Response {
        let url = self.url(&format!("/api/data/datasets/{id}/validate"));
        self.client.post(url).query(query).bearer_auth(token).send().await.unwrap()
    }

    /// [`TestApp::validated`] with `query` parameters on the request.
    pub async fn validated_with(&self, token: &str, id: &str, query: &[(&str, &str)]) -> Value {
        let response = self.request_validation(token, id, query).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let accepted: Value = response.json().await.unwrap();
        // The worker may already have decided by the time the answer is built (small files validate in
        // milliseconds), so any status from "validating" on is right here; "uploaded" is not.
        assert!(["validating", "valid", "invalid"].contains(&accepted["status"].as_str().unwrap()), "{accepted}");
        let path = format!("/api/data/datasets/{id}");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let detail: Value = self.get(&path, Some(token)).await.json().await.unwrap();
            if detail["status"] == "valid" || detail["status"] == "invalid" {
                return detail;
            }
            assert!(tokio::time::Instant::now() < deadline, "not validated within 20 s: {detail}");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.settings.data_dir.join("datasets").join("blobs")
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn an_uploaded_dataset_is_validated_by_the_worker_with_stats() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, trainer) = app.create_user(&admin, "tina", "trainer").await;
    let response =
        app.upload(Some(&trainer), "qa.jsonl", qa_jsonl(12), &[("name", "capitals"), ("description", "d")]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!((created["version"].as_i64(), created["status"].as_str()), (Some(1), Some("uploaded")));
    assert_eq!((created["format"].as_str(), created["name"].as_str()), (Some("jsonl"), Some("capitals")));
    assert_eq!(created["file_size"].as_u64(), Some(qa_jsonl(12).len() as u64));
    let sha = created["sha256"].as_str().unwrap();
    assert!(app.blobs_dir().join(&sha[..2]).join(sha).is_file(), "stored under its hash");

    let id = created["id"].as_str().unwrap();
    eventually(|| async {
        app.get(&format!("/api/data/datasets/{id}"), Some(&trainer)).await.status() == StatusCode::OK
    })
    .await;
    let detail = app.validated(&trainer, id).await;
    assert_eq!(detail["status"], "valid");
    assert_eq!(detail["record_count"], 12);
    assert_eq!(detail["stats"]["records"], 12);
    assert_eq!(detail["stats"]["prompt_chars"]["min"], "question 1".len());
    assert_eq!(detail["stats"]["answer_chars"]["max"], "answer 10".len());
    assert_eq!(detail["error_count"], 0);
    assert_eq!(detail["versions"][0]["shape"], "question_answer");
    assert!(detail["stats"]["prompt_tokens"].is_null(), "no tokenizer was named: {detail}");

    let listed: Value = app.get("/api/data/datasets?status=valid", Some(&trainer)).await.json().await.unwrap();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["id"], id);
    let none: Value = app.get("/api/data/datasets?status=invalid", Some(&trainer)).await.json().await.unwrap();
    assert_eq!(none["total"], 0);
    let bad = app.get("/api/data/datasets?status=bogus", Some(&trainer)).await;
    assert_eq!(error_code(bad).await, "validation_failed");
    for query in ["page=0", "page_size=0", "page_size=101"] {
        let bad = app.get(&format!("/api/data/datasets?{query}"), Some(&trainer)).await;
        assert_eq!(error_code(bad).await, "validation_failed", "{query}");
    }
    let second: Value = app.get("/api/data/datasets?page=2&page_size=1", Some(&trainer)).await.json().await.unwrap();
    assert_eq!((second["page"].as_i64(), second["page_size"].as_i64()), (Some(2), Some(1)));
}

#[tokio::test]
async fn a_new_version_is_added_and_the_old_one_stays_readable() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let id = app.upload_ok(&admin, qa_jsonl(3)).await;
    let response = app.upload(Some(&admin), "more.jsonl", qa_jsonl(5), &[("dataset_id", &id)]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let v2: Value = response.json().await.unwrap();
    assert_eq!(
        (v2["version"].as_i64(), v2["name"].as_str(), v2["id"].as_str()),
        (Some(2), Some("capitals"), Some(id.as_str()))
    );
    let detail = app.validated(&admin, &id).await;
    assert_eq!(detail["version"], 2);
    assert_eq!(detail["record_count"], 5);
    let versions = detail["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!((versions[0]["status"].as_str(), versions[1]["status"].as_str()), (Some("uploaded"), Some("valid")));
    assert_eq!(versions[1]["warnings"][0]["kind"], "few_records", "5 records: a warning, not an error");
    let old: Value = app
        .get(&format!("/api/data/datasets/{id}/preview?version=1&limit=100"), Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(old["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn preview_pages_through_normalised_records() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let id = app.upload_ok(&admin, qa_jsonl(10)).await;
    let page: Value =
        app.get(&format!("/api/data/datasets/{id}/preview?offset=2&limit=3"), Some(&admin)).await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["messages"][0], serde_json::json!({"role": "user", "content": "question 3"}));
    assert_eq!(items[0]["messages"][1], serde_json::json!({"role": "assistant", "content": "answer 3"}));
    let too_many = app.get(&format!("/api/data/datasets/{id}/preview?limit=101"), Some(&admin)).await;
    assert_eq!(too_many.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let past_end: Value =
        app.get(&format!("/api/data/datasets/{id}/preview?offset=50"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(past_end["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_archived_dataset_leaves_the_lists_and_refuses_new_work() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let id = app.upload_ok(&admin, qa_jsonl(3)).await;
    let path = format!("/api/data/datasets/{id}");
    let deleted = app.client.delete(app.url(&path)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    eventually(|| async { app.get(&path, Some(&admin)).await.status() == StatusCode::NOT_FOUND }).await;
    let listed: Value = app.get("/api/data/datasets", Some(&admin)).await.json().await.unwrap();
    assert_eq!(listed["total"], 0);
    let validate = app.client.post(app.url(&format!("{path}/validate"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(validate.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(validate).await, "dataset_archived");
    let version = app.upload(Some(&admin), "v2.jsonl", qa_jsonl(4), &[("dataset_id", &id)]).await;
    assert_eq!(error_code(version).await, "dataset_archived");
    let history: Value = app.get(&format!("/api/audit/Dataset/{id}"), Some(&admin)).await.json().await.unwrap();
    assert!(history.to_string().contains("DatasetArchived"), "the events remain for audit");
}

#[tokio::test]
async fn another_users_dataset_is_not_found_and_an_admin_sees_every_one() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, ann) = app.create_user(&admin, "ann", "trainer").await;
    let (_, bob) = app.create_user(&admin, "bob", "trainer").await;
    let id = app.upload_ok(&ann, qa_jsonl(3)).await;
    let path = format!("/api/data/datasets/{id}");
    assert_eq!(app.get(&path, Some(&bob)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("{path}/preview"), Some(&bob)).await.status(), StatusCode::NOT_FOUND);
    let validate = app.client.post(app.url(&format!("{path}/validate"))).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(validate.status(), StatusCode::NOT_FOUND);
    let delete = app.client.delete(app.url(&path)).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);
    let version = app.upload(Some(&bob), "v2.jsonl", qa_jsonl(4), &[("dataset_id", &id)]).await;
    assert_eq!(version.status(), StatusCode::NOT_FOUND);
    let bobs: Value = app.get("/api/data/datasets", Some(&bob)).await.json().await.unwrap();
    assert_eq!(bobs["total"], 0);
    assert_eq!(app.get(&path, Some(&admin)).await.status(), StatusCode::OK);
    let all: Value = app.get("/api/data/datasets", Some(&admin)).await.json().await.unwrap();
    assert_eq!(all["total"], 1);
}

#[tokio::test]
async fn data_endpoints_need_a_token_and_a_role_that_manages_datasets() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, user) = app.create_user(&admin, "uma", "user").await;
    assert_eq!(app.get("/api/data/datasets", None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.upload(None, "qa.jsonl", qa_jsonl(2), &[]).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/data/datasets", Some(&user)).await.status(), StatusCode::FORBIDDEN);
    let refused = app.upload(Some(&user), "qa.jsonl", qa_jsonl(2), &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(files_under(&app.blobs_dir()).is_empty(), "nothing stored for a refused caller");
}

#[tokio::test]
async fn the_datasets_view_rebuilt_by_replay_equals_the_live_one() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let id = app.upload_ok(&admin, qa_jsonl(12)).await;
    app.validated(&admin, &id).await;
    let other = app.upload_ok(&admin, b"{\"question\": \"q\"}\n".to_vec()).await;
    assert_eq!(app.validated(&admin, &other).await["status"], "invalid");
    let live = all_rows(&app.pool).await.unwrap();
    assert_eq!((live.0.len(), live.1.len()), (2, 2));
    sqlx::query("UPDATE dataset_versions_view SET status = 'wrong', stats = NULL").execute(&app.pool).await.unwrap();
    let output = app.cli(&["replay", "--projection", "datasets"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(all_rows(&app.pool).await.unwrap(), live);
}

#[tokio::test]
async fn token_counts_come_from_the_named_models_tokenizer() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // A tiny model with a tokenizer trained on the demo FAQ, installed as `tiny` in the models folder.
    let model_dir = app.settings.models_dir().join("tiny");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/faq.jsonl");
    bonsai_ml::tiny::init_tiny(&model_dir, &bonsai_ml::tiny::TinySpec::default(), Some(&corpus)).unwrap();
    let tokenizer = bonsai_ml::tokenizer::TextTokenizer::load(&model_dir).unwrap();
    let count = |text: String| tokenizer.encode(&text, false).unwrap().len() as u64;
    let id = app.upload_ok(&admin, qa_jsonl(12)).await;

    for (model, code) in
        [("nope", "unknown_tokenizer_model"), ("../tiny", "validation_failed"), ("/etc", "validation_failed")]
    {
        let response = app.request_validation(&admin, &id, &[("tokenizer_model_id", model)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{model}");
        assert_eq!(error_code(response).await, code, "{model}");
    }
    let unknown = app.request_validation(&admin, &id, &[("tokenizer", "tiny")]).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST, "unknown query parameters are refused");
    let history = bonsai_projections::log::aggregate_history(&app.pool, "Dataset", &id).await.unwrap();
    assert_eq!(history.len(), 1, "refused requests record nothing: {history:?}");

    let detail = app.validated_with(&admin, &id, &[("tokenizer_model_id", "tiny")]).await;
    assert_eq!(detail["status"], "valid", "{detail}");
    let prompts: Vec<u64> = (1..=12).map(|i| count(format!("question {i}"))).collect();
    let answers: Vec<u64> = (1..=12).map(|i| count(format!("answer {i}"))).collect();
    let stats = &detail["stats"];
    assert_eq!(stats["prompt_tokens"]["total"], prompts.iter().sum::<u64>(), "{stats}");
    assert_eq!(stats["prompt_tokens"]["min"], *prompts.iter().min().unwrap());
    assert_eq!(stats["prompt_tokens"]["max"], *prompts.iter().max().unwrap());
    assert_eq!(stats["answer_tokens"]["total"], answers.iter().sum::<u64>());
    assert!(stats["answer_tokens"]["total"].as_u64().unwrap() >= 12, "every answer has a token at least");
    assert_eq!(stats["tokenizer_model_id"], "tiny", "the stats say whose tokens they count");
    let history = bonsai_projections::log::aggregate_history(&app.pool, "Dataset", &id).await.unwrap();
    let request = history.iter().find(|e| e.event_type == "DatasetValidationRequested").unwrap();
    let asked = &request.payload["DatasetValidationRequested"]["tokenizer_model_id"];
    assert_eq!((request.event_version.as_str(), asked), ("2", &Value::from("tiny")));

    // A model whose tokenizer cannot be loaded (here: a broken tokenizer.json) still validates the data,
    // without token counts and with a warning that says why.
    let broken = app.settings.models_dir().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("tokenizer.json"), "{}").unwrap();
    let second = app.upload_ok(&admin, qa_jsonl(12)).await;
    let detail = app.validated_with(&admin, &second, &[("tokenizer_model_id", "broken")]).await;
    assert_eq!(detail["status"], "valid", "{detail}");
    assert!(detail["stats"]["prompt_tokens"].is_null(), "{detail}");
    assert!(detail["stats"].get("tokenizer_model_id").is_none(), "{detail}");
    let warnings = detail["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w["kind"] == "tokenizer_unavailable" && w["model_id"] == "broken"), "{detail}");
}
