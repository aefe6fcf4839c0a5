//! OpenAI's files and fine-tuning jobs API on the dataset, training and model commands: a file uploaded with
//! `POST /v1/files` becomes a job's training data, the job trains `tiny` to completion, its model is registered
//! and deployed by the platform and answers `/v1/chat/completions` by its `fine_tuned_model` name; events and
//! checkpoints; cancel; errors in OpenAI's shape (the official Python client drives the same in
//! `scripts/test-openai.sh`).

use crate::helpers::*;
use bonsai_commands::CommandBus;
use bonsai_infra::{FileStore, LocalFileStore, LocalModels};
use bonsai_projections::log::aggregate_history;
use bonsai_workers::{EventBus, Processed, TrainingWorker};
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn faq() -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/faq.jsonl")).unwrap()
}

impl TestApp {
    /// `POST /v1/files` with `purpose` and a file called `filename`.
    async fn upload_file(&self, token: &str, purpose: &str, filename: &str, bytes: Vec<u8>) -> Response {
        let form = Form::new()
            .text("purpose", purpose.to_owned())
            .part("file", Part::bytes(bytes).file_name(filename.to_owned()));
        self.client.post(self.url("/v1/files")).bearer_auth(token).multipart(form).send().await.unwrap()
    }

    /// Uploads the demo FAQ as a fine-tuning file; returns its id.
    async fn faq_file(&self, token: &str) -> String {
        let response = self.upload_file(token, "fine-tune", "faq.jsonl", faq()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let file: Value = response.json().await.unwrap();
        assert_eq!(file["status"], "processed", "validated before the answer: {file}");
        file["id"].as_str().unwrap().to_owned()
    }

    async fn create_job(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self.post("/v1/fine_tuning/jobs", Some(token), body).await;
        (response.status(), response.json().await.unwrap())
    }

    async fn get_json(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self.get(path, Some(token)).await;
        (response.status(), response.json().await.unwrap())
    }

    /// Polls job `id` until its status is final, failing after `secs` seconds.
    async fn job_until_done(&self, token: &str, id: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, job) = self.get_json(&format!("/v1/fine_tuning/jobs/{id}"), token).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "job not done within {secs} s: {job}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The `error` object of an OpenAI-shaped error answer, after checking its status.
async fn openai_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    for key in ["message", "type", "param", "code"] {
        assert!(body["error"].get(key).is_some(), "OpenAI's error shape has {key}: {body}");
    }
    body["error"].clone()
}

#[tokio::test]
async fn an_uploaded_file_becomes_a_job_whose_model_answers_chat_completions() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;

    let response = app.upload_file(&admin, "fine-tune", "faq.jsonl", faq()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let file: Value = response.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_owned();
    assert!(file_id.starts_with("file-"), "{file}");
    assert_eq!((file["object"].as_str(), file["purpose"].as_str()), (Some("file"), Some("fine-tune")));
    assert_eq!((file["bytes"].as_u64(), file["filename"].as_str()), (Some(faq().len() as u64), Some("faq.jsonl")));
    assert_eq!(file["status"], "processed", "{file}");
    let (status, read) = app.get_json(&format!("/v1/files/{file_id}"), &admin).await;
    assert_eq!((status, read["id"].as_str()), (StatusCode::OK, Some(file_id.as_str())));
    let (_, files) = app.get_json("/v1/files", &admin).await;
    assert_eq!(files["object"], "list");
    assert!(files["data"].as_array().unwrap().iter().any(|f| f["id"] == file_id.as_str()), "{files}");
    // The file is a dataset like any other.
    let dataset = file_id.strip_prefix("file-").unwrap();
    let (status, detail) = app.get_json(&format!("/api/data/datasets/{dataset}"), &admin).await;
    assert_eq!((status, detail["status"].as_str()), (StatusCode::OK, Some("valid")), "{detail}");

    // A validation file: three of the FAQ's records, evaluated on instead of a held-out share.
    let three: Vec<u8> = faq().split(|&b| b == b'\n').take(3).collect::<Vec<_>>().join(&b'\n');
    let response = app.upload_file(&admin, "fine-tune", "valid.jsonl", three).await;
    let validation_file = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // 20 records, 10 a step: 2 steps an epoch, 4 in all, a checkpoint each epoch.
    let body = json!({"model": "tiny", "training_file": file_id, "validation_file": validation_file, "suffix": "faq",
        "seed": 7, "hyperparameters": {"n_epochs": 2, "batch_size": 10, "learning_rate_multiplier": 2}});
    let (status, job) = app.create_job(&admin, body).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ftjob-"), "{job}");
    assert_eq!(job["object"], "fine_tuning.job");
    assert!(["queued", "running"].contains(&job["status"].as_str().unwrap()), "{job}");
    assert_eq!((job["model"].as_str(), job["training_file"].as_str()), (Some("tiny"), Some(file_id.as_str())));
    assert_eq!(job["validation_file"], validation_file.as_str());
    assert_eq!(job["hyperparameters"], json!({"n_epochs": 2, "batch_size": 10, "learning_rate_multiplier": 2.0}));
    assert_eq!((job["seed"].as_u64(), job["fine_tuned_model"].is_null()), (Some(7), true));
    assert_eq!(job["result_files"], json!([]));

    let done = app.job_until_done(&admin, &id, 240).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let model = done["fine_tuned_model"].as_str().unwrap().to_owned();
    assert!(model.starts_with("ft:tiny:faq:"), "{done}");
    assert!(done["finished_at"].is_number() && done["error"].is_null(), "{done}");
    // The job is a training task: the same settings, natively.
    let task_id = id.strip_prefix("ftjob-").unwrap().parse::<uuid::Uuid>().unwrap();
    let (_, task) = app.get_json(&format!("/api/training/tasks/{task_id}"), &admin).await;
    assert_eq!(task["status"], "completed");
    let trained = done["trained_tokens"].as_u64().expect("trained_tokens once trained");
    assert_eq!(task["result"]["trained_tokens"].as_u64(), Some(trained));
    // Two epochs over the FAQ's examples, each of tens of tokens.
    assert!((2 * 20 * 10..2 * 20 * 200).contains(&trained), "{trained}");
    assert_eq!(task["config"]["register_as"], json!({"name": model, "deploy": true}));
    assert_eq!((task["config"]["epochs"].as_u64(), task["config"]["batch_size"].as_u64()), (Some(2), Some(10)));
    assert_eq!((task["config"]["checkpoint_every"].as_u64(), task["config"]["seed"].as_u64()), (Some(2), Some(7)));
    let lr = task["config"]["learning_rate"].as_f64().unwrap();
    assert!((lr - 6e-3).abs() < 1e-6, "twice the rate chosen for the untrained tiny model: {lr}");
    assert_eq!(task["result"]["steps"], 4, "{task}");
    // Every FAQ record trained; the three validation records were evaluated on.
    assert_eq!(
        (task["result"]["train_examples"].as_u64(), task["result"]["eval_examples"].as_u64()),
        (Some(20), Some(3))
    );
    assert!(task["result"]["best_eval_loss"].is_f64(), "{task}");
    let eval_dataset = task["config"]["eval_dataset"]["dataset_id"].as_str().unwrap().replace('-', "");
    assert_eq!(eval_dataset, validation_file.strip_prefix("file-").unwrap());

    // Events: newest first, the progress as metrics.
    let (status, events) = app.get_json(&format!("/v1/fine_tuning/jobs/{id}/events?limit=100"), &admin).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let data = events["data"].as_array().unwrap();
    assert_eq!(events["has_more"], false);
    assert!(data.iter().all(|e| e["object"] == "fine_tuning.job.event"), "{events}");
    assert!(data[0]["message"].as_str().unwrap().contains("successfully completed"), "{events}");
    assert!(data.last().unwrap()["message"].as_str().unwrap().starts_with("Created fine-tuning job"), "{events}");
    let metrics: Vec<&Value> = data.iter().filter(|e| e["type"] == "metrics").collect();
    assert!(!metrics.is_empty(), "{events}");
    assert!(metrics.iter().all(|e| e["data"]["step"].is_u64() && e["data"]["train_loss"].is_f64()), "{events}");
    assert!(metrics.iter().any(|e| e["data"]["valid_loss"].is_f64()), "the validation file's loss: {events}");
    let (_, first) = app.get_json(&format!("/v1/fine_tuning/jobs/{id}/events?limit=2"), &admin).await;
    assert_eq!((first["data"].as_array().unwrap().len(), first["has_more"].as_bool()), (2, Some(true)));
    let after = first["data"][1]["id"].as_str().unwrap();
    let (_, next) = app.get_json(&format!("/v1/fine_tuning/jobs/{id}/events?limit=1&after={after}"), &admin).await;
    assert_eq!(next["data"][0], data[2], "the page after the second event starts at the third");

    // Checkpoints: one per epoch, newest first, with their losses; natively too, with their size.
    let (status, checkpoints) = app.get_json(&format!("/v1/fine_tuning/jobs/{id}/checkpoints"), &admin).await;
    assert_eq!(status, StatusCode::OK, "{checkpoints}");
    let steps: Vec<u64> =
        checkpoints["data"].as_array().unwrap().iter().map(|c| c["step_number"].as_u64().unwrap()).collect();
    assert_eq!(steps, [4, 2], "{checkpoints}");
    let newest = &checkpoints["data"][0];
    assert_eq!(
        (newest["object"].as_str(), newest["fine_tuning_job_id"].as_str()),
        (Some("fine_tuning.job.checkpoint"), Some(id.as_str()))
    );
    assert!(newest["metrics"]["train_loss"].is_f64() && newest["metrics"]["step"] == 4, "{checkpoints}");
    let (_, native) = app.get_json(&format!("/api/training/tasks/{task_id}/checkpoints"), &admin).await;
    let items = native["items"].as_array().unwrap();
    assert_eq!(items.iter().map(|c| c["step"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 4], "{native}");
    assert!(items.iter().all(|c| c["size_bytes"].as_u64().unwrap() > 0 && c["train_loss"].is_f64()), "{native}");

    // The model is registered, deployed, listed and answers by its name.
    let (_, listed) = app.get_json("/v1/models", &admin).await;
    assert!(listed["data"].as_array().unwrap().iter().any(|m| m["id"] == model.as_str()), "{listed}");
    let body = json!({"model": model, "messages": [{"role": "user", "content": "What is Bonsai?"}], "max_tokens": 8});
    let response = app.post("/v1/chat/completions", Some(&admin), body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["model"], model.as_str());
    assert!(completion["choices"][0]["message"]["content"].is_string(), "{completion}");
    let (_, models) = app.get_json(&format!("/api/models?name={}", urlencode(&model)), &admin).await;
    let registered = &models["items"][0];
    assert_eq!(
        (registered["training_task_id"].as_str(), registered["deployed"].as_bool()),
        (Some(task_id.to_string().as_str()), Some(true))
    );

    // Listed, newest first.
    let (_, jobs) = app.get_json("/v1/fine_tuning/jobs?limit=1", &admin).await;
    assert_eq!((jobs["data"][0]["id"].as_str(), jobs["object"].as_str()), (Some(id.as_str()), Some("list")));

    // The start, redelivered to a training worker after the run completed, registers no second model.
    let history = aggregate_history(&app.pool, "TrainingTask", &task_id.to_string()).await.unwrap();
    let start = history.iter().find(|e| e.event_type == "TrainingStartRequested").unwrap().clone();
    let nats = async_nats::connect(&app.settings.nats_url).await.unwrap();
    let files: Arc<dyn FileStore> = Arc::new(LocalFileStore::new(app.settings.data_dir.join("datasets")).unwrap());
    let worker = TrainingWorker::new(
        EventBus::new(nats, app.settings.nats_prefix.clone()),
        CommandBus::new(app.pool.clone()),
        files,
        LocalModels::new(app.settings.models_dir()),
        app.settings.data_dir.clone(),
        "cpu",
    );
    let processed = worker.handle(&start, None, &CancellationToken::new()).await;
    assert_eq!(processed, Processed::AlreadyApplied);
    let registered = bonsai_projections::models::of_task(&app.pool, task_id).await.unwrap();
    assert_eq!(registered.len(), 1, "one model per run");
    assert_eq!(registered[0].id, bonsai_workers::model_of(task_id, 1));
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_job_is_cancelled_and_bad_requests_are_refused_in_openai_s_shape() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let file = app.faq_file(&admin).await;

    // A long job, cancelled: the stop command.
    let body = json!({"model": "tiny", "training_file": file, "hyperparameters": {"n_epochs": 1000, "batch_size": 1}});
    let (status, job) = app.create_job(&admin, body).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let response = app.post(&format!("/v1/fine_tuning/jobs/{id}/cancel"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let task = id.strip_prefix("ftjob-").unwrap();
    app.task_until(&admin, task, 60, |t| t["status"] == "stopped").await;
    let done = app.job_until_done(&admin, &id, 10).await;
    assert_eq!((done["status"].as_str(), done["finished_at"].is_number()), (Some("cancelled"), true), "{done}");
    assert!(done["fine_tuned_model"].is_null());
    let again = app.post(&format!("/v1/fine_tuning/jobs/{id}/cancel"), Some(&admin), json!({})).await;
    assert_eq!(openai_error(again, StatusCode::BAD_REQUEST).await["type"], "invalid_request_error");
    let (_, events) = app.get_json(&format!("/v1/fine_tuning/jobs/{id}/events"), &admin).await;
    assert!(events["data"][0]["message"].as_str().unwrap().contains("cancelled"), "{events}");

    // Bad fields: 400 with the parameter named; an unknown model: 404.
    let job_with = |patch: Value| {
        let mut body = json!({"model": "tiny", "training_file": file});
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    for (patch, param) in [
        (json!({"training_file": "file-00000000000000000000000000000000"}), "training_file"),
        (json!({"training_file": "nonsense"}), "training_file"),
        (json!({"hyperparameters": {"n_epochs": 0}}), "hyperparameters.n_epochs"),
        (json!({"hyperparameters": {"n_epochs": "many"}}), "hyperparameters.n_epochs"),
        (json!({"hyperparameters": {"batch_size": 1.5}}), "hyperparameters.batch_size"),
        (json!({"hyperparameters": {"learning_rate_multiplier": -1}}), "hyperparameters.learning_rate_multiplier"),
        (json!({"validation_file": "file-nope"}), "validation_file"),
        (json!({"validation_file": "file-00000000000000000000000000000000"}), "validation_file"),
        (json!({"suffix": "bad:suffix"}), "suffix"),
        (json!({"seed": -1}), "seed"),
    ] {
        let response = app.post("/v1/fine_tuning/jobs", Some(&admin), job_with(patch.clone())).await;
        let error = openai_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            (error["type"].as_str(), error["param"].as_str()),
            (Some("invalid_request_error"), Some(param)),
            "{patch}"
        );
    }
    let response = app.post("/v1/fine_tuning/jobs", Some(&admin), job_with(json!({"model": "nobody"}))).await;
    let error = openai_error(response, StatusCode::NOT_FOUND).await;
    assert_eq!((error["code"].as_str(), error["param"].as_str()), (Some("model_not_found"), Some("model")));
    // A file that is not a data set of examples is uploaded, fails validation, and cannot be trained on.
    let response = app.upload_file(&admin, "fine-tune", "bad.jsonl", b"{\"foo\": 1}\n{\"bar\": 2}\n".to_vec()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bad: Value = response.json().await.unwrap();
    assert_eq!(bad["status"], "error", "{bad}");
    let response = app.post("/v1/fine_tuning/jobs", Some(&admin), job_with(json!({"training_file": bad["id"]}))).await;
    assert_eq!(openai_error(response, StatusCode::BAD_REQUEST).await["param"], "training_file");
    let response = app.upload_file(&admin, "assistants", "faq.jsonl", faq()).await;
    assert_eq!(openai_error(response, StatusCode::BAD_REQUEST).await["param"], "purpose");

    // Unknown ids are 404; so are another user's job and file.
    for path in [
        "/v1/fine_tuning/jobs/ftjob-00000000000000000000000000000000",
        "/v1/fine_tuning/jobs/nonsense",
        "/v1/files/file-00000000000000000000000000000000",
    ] {
        let response = app.get(path, Some(&admin)).await;
        assert_eq!(openai_error(response, StatusCode::NOT_FOUND).await["type"], "invalid_request_error", "{path}");
    }
    let (_, tess) = app.create_user(&admin, "tess", "trainer").await;
    for path in [
        format!("/v1/fine_tuning/jobs/{id}"),
        format!("/v1/fine_tuning/jobs/{id}/events"),
        format!("/v1/fine_tuning/jobs/{id}/checkpoints"),
        format!("/v1/files/{file}"),
    ] {
        openai_error(app.get(&path, Some(&tess)).await, StatusCode::NOT_FOUND).await;
    }
    let response = app.post(&format!("/v1/fine_tuning/jobs/{id}/cancel"), Some(&tess), json!({})).await;
    openai_error(response, StatusCode::NOT_FOUND).await;
    let (_, jobs) = app.get_json("/v1/fine_tuning/jobs", &tess).await;
    assert_eq!(jobs["data"], json!([]), "only one's own jobs are listed");
    let (_, files) = app.get_json("/v1/files", &tess).await;
    assert_eq!(files["data"], json!([]), "only one's own files are listed");
    let response = app.post("/v1/fine_tuning/jobs", Some(&tess), job_with(json!({}))).await;
    assert_eq!(openai_error(response, StatusCode::BAD_REQUEST).await["param"], "training_file");
    // The admin sees every job; a user may not fine-tune.
    let (_, all) = app.get_json("/v1/fine_tuning/jobs", &admin).await;
    assert!(all["data"].as_array().unwrap().iter().any(|j| j["id"] == id.as_str()));
    let (_, uma) = app.create_user(&admin, "uma", "user").await;
    let response = app.post("/v1/fine_tuning/jobs", Some(&uma), job_with(json!({}))).await;
    assert_eq!(openai_error(response, StatusCode::FORBIDDEN).await["type"], "permission_error");
}
