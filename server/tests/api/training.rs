//! The training service end to end: a task created over HTTP is trained by the training worker (through
//! NATS), reports progress as events, stops and resumes from its checkpoint, and fails with a code.

use crate::helpers::*;
use bonsai_projections::training::{all_rows, TrainingProjection};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

impl TestApp {
    /// Installs a tiny model (tokenizer trained on the demo FAQ) as `tiny`, and uploads and validates the
    /// demo FAQ; returns the dataset id.
    pub async fn training_fixture(&self, token: &str) -> String {
        let model_dir = self.settings.models_dir().join("tiny");
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/faq.jsonl");
        bonsai_ml::tiny::init_tiny(&model_dir, &bonsai_ml::tiny::TinySpec::default(), Some(&corpus)).unwrap();
        let id = self.upload_ok(token, std::fs::read(&corpus).unwrap()).await;
        assert_eq!(self.validated(token, &id).await["status"], "valid");
        id
    }

    /// Creates a task on `tiny` and `dataset` with `config`; returns the answer's status and body.
    pub async fn create_task(&self, token: &str, dataset: &str, config: Value, start: bool) -> (StatusCode, Value) {
        let body = json!({"name": "faq bot", "base_model_id": "tiny", "dataset_id": dataset, "config": config,
            "start": start});
        let response = self.post("/api/training/tasks", Some(token), body).await;
        (response.status(), response.json().await.unwrap())
    }

    /// Polls task `id` until `done` holds for it, failing after `secs` seconds.
    pub async fn task_until(&self, token: &str, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/training/tasks/{id}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let response = self.get(&path, Some(token)).await;
            if response.status() == StatusCode::OK {
                let task: Value = response.json().await.unwrap();
                if done(&task) {
                    return task;
                }
                assert!(tokio::time::Instant::now() < deadline, "condition not met within {secs} s: {task}");
            } else {
                assert!(tokio::time::Instant::now() < deadline, "task {id} not visible within {secs} s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn task_command(&self, token: &str, id: &str, action: &str) -> (StatusCode, Value) {
        let response = self.post(&format!("/api/training/tasks/{id}/{action}"), Some(token), json!({})).await;
        (response.status(), response.json().await.unwrap())
    }

    /// The payloads of task `id`'s `TrainingStarted` events, once there are `n` (failing after `secs`).
    pub async fn task_starts(&self, id: &str, n: usize, secs: u64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let history = bonsai_projections::log::aggregate_history(&self.pool, "TrainingTask", id).await.unwrap();
            let starts: Vec<Value> = history
                .iter()
                .filter(|e| e.event_type == "TrainingStarted")
                .map(|e| e.payload["TrainingStarted"].clone())
                .collect();
            if starts.len() >= n {
                return starts;
            }
            assert!(tokio::time::Instant::now() < deadline, "{n} starts not recorded within {secs} s: {history:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The types of task `id`'s events, in order.
    async fn task_event_types(&self, id: &str) -> Vec<String> {
        let history = bonsai_projections::log::aggregate_history(&self.pool, "TrainingTask", id).await.unwrap();
        history.into_iter().map(|e| e.event_type).collect()
    }
}

#[tokio::test]
async fn a_task_trains_to_completion_and_reports_its_progress() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let config = json!({"max_steps": 6, "learning_rate": 1e-3, "eval_split": 0.1, "eval_every": 3,
        "checkpoint_every": 2, "targets": ["q_proj", "v", "q"]});
    let (status, created) = app.create_task(&admin, &dataset, config, true).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((created["status"].as_str(), created["attempt"].as_u64()), (Some("queued"), Some(1)));
    let id = created["id"].as_str().unwrap().to_owned();

    let task = app.task_until(&admin, &id, 180, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["config"]["targets"], json!(["q", "v"]), "targets are stored canonical");
    assert_eq!(task["progress"]["step"], 6);
    assert_eq!(task["progress"]["fraction"], 1.0);
    let result = &task["result"];
    assert_eq!((result["steps"].as_u64(), result["stop_reason"].as_str()), (Some(6), Some("completed")));
    assert!(result["final_loss"].as_f64().unwrap().is_finite(), "{result}");
    assert!(result["best_eval_loss"].as_f64().is_some(), "an eval split gives an eval loss: {result}");
    let data_dir = &app.settings.data_dir;
    let adapter = data_dir.join(result["adapter_path"].as_str().unwrap());
    let peft: Value = serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!((peft["peft_type"].as_str(), peft["r"].as_u64()), (Some("LORA"), Some(8)));
    let run = data_dir.join("training").join(&id);
    let kept: Vec<bool> = [2, 4, 6].iter().map(|s| run.join(format!("checkpoint-{s}")).is_dir()).collect();
    assert_eq!(kept, [false, true, true], "the newest two checkpoints are kept");
    let merged = data_dir.join(result["merged_path"].as_str().unwrap());
    assert!(merged.join("config.json").is_file() && merged.join("tokenizer.json").is_file(), "a whole model");

    let progress: Value =
        app.get(&format!("/api/training/tasks/{id}/progress"), Some(&admin)).await.json().await.unwrap();
    let history = progress["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["step"], 6, "the last step is always recorded: {progress}");
    let evaluated: Vec<u64> =
        history.iter().filter(|p| p["eval_loss"].is_number()).map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(evaluated, [3, 6], "every evaluation is recorded");
    assert!(history.windows(2).all(|w| w[0]["step"].as_u64() < w[1]["step"].as_u64()), "in step order");

    let types = app.task_event_types(&id).await;
    assert_eq!(&types[..3], ["TrainingTaskCreated", "TrainingStartRequested", "TrainingStarted"]);
    assert_eq!(types.last().unwrap(), "TrainingCompleted");
    assert!(types.iter().filter(|t| *t == "TrainingProgressed").count() >= 2, "{types:?}");

    let (status, body) = app.task_command(&admin, &id, "start").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_state")));
    let listed: Value = app.get("/api/training/tasks?status=completed", Some(&admin)).await.json().await.unwrap();
    assert_eq!((listed["total"].as_i64(), listed["items"][0]["id"].as_str()), (Some(1), Some(id.as_str())));
    let on_dataset = format!("/api/training/tasks?dataset_id={dataset}");
    let listed: Value = app.get(&on_dataset, Some(&admin)).await.json().await.unwrap();
    assert_eq!(listed["total"], 1);
    let other = format!("/api/training/tasks?dataset_id={}", uuid::Uuid::new_v4());
    assert_eq!(app.get(&other, Some(&admin)).await.json::<Value>().await.unwrap()["total"], 0);

    // Monitoring sees the outcome and the requests, by route template.
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.unwrap();
    for line in ["bonsai_training_tasks{status=\"completed\"} 1", "bonsai_training_success_ratio 1", "bonsai_up 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let polled = "bonsai_http_requests_total{method=\"GET\",route=\"/api/training/tasks/{id}\",status=\"200\"} ";
    let count: u64 =
        metrics.lines().find_map(|l| l.strip_prefix(polled)).expect("the polled route is counted").parse().unwrap();
    assert!(count >= 1, "{metrics}");
    assert!(metrics.contains(
        "bonsai_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/training/tasks\",le=\"+Inf\"} 1"
    ));

    // The view is rebuilt from the events to the same rows.
    let live = all_rows(&app.pool).await.unwrap();
    bonsai_projections::rebuild(&app.pool, &TrainingProjection).await.unwrap();
    assert_eq!(all_rows(&app.pool).await.unwrap(), live);
}

#[tokio::test]
async fn a_stopped_task_resumes_from_the_step_it_reached() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let config = json!({"max_steps": 1000000, "checkpoint_every": 0, "merge": false});
    let (status, created) = app.create_task(&admin, &dataset, config, false).await;
    assert_eq!((status, created["status"].as_str()), (StatusCode::CREATED, Some("created")));
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, body) = app.task_command(&admin, &id, "stop").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_state")));

    let (status, started) = app.task_command(&admin, &id, "start").await;
    assert_eq!((status, started["status"].as_str()), (StatusCode::ACCEPTED, Some("queued")));
    app.task_until(&admin, &id, 120, |t| t["status"] == "running" && t["progress"]["step"].as_u64() >= Some(2)).await;
    let (status, stopping) = app.task_command(&admin, &id, "stop").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(["stopping", "stopped"].contains(&stopping["status"].as_str().unwrap()), "{stopping}");
    let stopped = app.task_until(&admin, &id, 60, |t| t["status"] == "stopped").await;
    let reached = stopped["progress"]["step"].as_u64().unwrap();
    let task_dir = app.settings.data_dir.join("training").join(&id);
    assert!(task_dir.join(format!("checkpoint-{reached}/trainer_state.json")).is_file(), "a stop writes a checkpoint");

    let (status, again) = app.task_command(&admin, &id, "start").await;
    assert_eq!((status, again["attempt"].as_u64()), (StatusCode::ACCEPTED, Some(2)));
    app.task_until(&admin, &id, 120, |t| t["attempt"] == 2 && t["progress"]["step"].as_u64() > Some(reached)).await;
    let history = bonsai_projections::log::aggregate_history(&app.pool, "TrainingTask", &id).await.unwrap();
    let resumed: Vec<Value> = history
        .iter()
        .filter(|e| e.event_type == "TrainingStarted")
        .map(|e| e.payload["TrainingStarted"]["resumed_from_step"].clone())
        .collect();
    assert_eq!(resumed, [Value::Null, json!(reached)], "the second run continues from the first one's checkpoint");
    let progress: Value =
        app.get(&format!("/api/training/tasks/{id}/progress"), Some(&admin)).await.json().await.unwrap();
    let second: Vec<u64> = progress["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attempt"] == 2)
        .map(|p| p["step"].as_u64().unwrap())
        .collect();
    assert!(second.first().is_some_and(|s| *s > reached), "run 2 counts on from step {reached}: {second:?}");

    app.task_command(&admin, &id, "stop").await;
    app.task_until(&admin, &id, 60, |t| t["status"] == "stopped").await;
    let types = app.task_event_types(&id).await;
    assert_eq!(types.iter().filter(|t| *t == "TrainingStopped").count(), 2, "{types:?}");
}

#[tokio::test]
async fn a_task_whose_base_model_is_gone_fails_with_a_code() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (status, created) = app.create_task(&admin, &dataset, json!({"max_steps": 2}), false).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    std::fs::remove_dir_all(app.settings.models_dir().join("tiny")).unwrap();
    app.task_command(&admin, &id, "start").await;
    let failed = app.task_until(&admin, &id, 60, |t| t["status"] == "failed").await;
    assert_eq!(failed["error"]["code"], "base_model_missing", "{failed}");
    // A failed task may be started again (and fails again the same way here).
    let (status, again) = app.task_command(&admin, &id, "start").await;
    assert_eq!((status, again["attempt"].as_u64()), (StatusCode::ACCEPTED, Some(2)));
}

#[tokio::test]
async fn bad_task_requests_are_refused_and_record_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, user) = app.create_user(&admin, "reader", "user").await;
    let (_, trainer) = app.create_user(&admin, "trainer", "trainer").await;

    let (status, _) = app.create_task(&user, &dataset, json!({}), false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the user role does not train");
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (json!({"base_model_id": "nope"}), "unknown_base_model", Some("base_model_id")),
        (json!({"base_model_id": "../tiny"}), "validation_failed", Some("base_model_id")),
        (json!({"dataset_id": uuid::Uuid::new_v4()}), "unknown_dataset", Some("dataset_id")),
        (json!({"dataset_version": 9}), "unknown_dataset_version", Some("dataset_version")),
        (json!({"config": {"rank": 0}}), "validation_failed", Some("config.rank")),
        (json!({"config": {"targets": ["lm_head"]}}), "validation_failed", Some("config.targets")),
        (json!({"config": {"device": "tpu"}}), "validation_failed", Some("config.device")),
        (json!({"config": {"lerning_rate": 0.1}}), "invalid_body", None),
        (json!({"name": " "}), "validation_failed", Some("name")),
        (json!({"extra": 1}), "invalid_body", None),
    ];
    for (change, code, field) in cases {
        let mut body = json!({"name": "t", "base_model_id": "tiny", "dataset_id": dataset});
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = app.post("/api/training/tasks", Some(&admin), body.clone()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        if let Some(field) = field {
            assert_eq!(error["error"]["details"]["field"], field, "{body}: {error}");
        }
    }
    let malformed = app.client.post(app.url("/api/training/tasks")).bearer_auth(&admin);
    let malformed = malformed.header("content-type", "application/json").body("{").send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    // Another trainer's dataset is unknown to this trainer; a dataset not yet validated is refused.
    let (status, body) = app.create_task(&trainer, &dataset, json!({}), false).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_dataset")));
    let fresh = app
        .upload_ok(&admin, std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/faq.jsonl")).unwrap())
        .await;
    let (status, body) = app.create_task(&admin, &fresh, json!({}), false).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("dataset_not_valid")));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'TrainingTask'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "refused requests record nothing");

    // A task is its owner's (and the admins'): another trainer neither sees nor commands it.
    let (status, created) = app.create_task(&admin, &dataset, json!({"max_steps": 1}), false).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    app.task_until(&admin, &id, 20, |_| true).await;
    for path in [format!("/api/training/tasks/{id}"), format!("/api/training/tasks/{id}/progress")] {
        assert_eq!(app.get(&path, Some(&trainer)).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app.task_command(&trainer, &id, "start").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mine: Value = app.get("/api/training/tasks", Some(&trainer)).await.json().await.unwrap();
    assert_eq!(mine["total"], 0);
    let bad_filter = app.get("/api/training/tasks?status=done", Some(&admin)).await;
    assert_eq!(bad_filter.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_id = app.get("/api/training/tasks/not-a-uuid", Some(&admin)).await;
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get(&format!("/api/training/tasks/{}", uuid::Uuid::new_v4()), Some(&admin)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_run_interrupted_by_a_shutdown_resumes_when_the_platform_restarts() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let config = json!({"max_steps": 1000000, "checkpoint_every": 0, "merge": false});
    let (status, created) = app.create_task(&admin, &dataset, config, true).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    app.task_until(&admin, &id, 120, |t| t["status"] == "running" && t["progress"]["step"].as_u64() >= Some(2)).await;

    let settings = app.settings.clone();
    app.stop().await.expect("the platform stops cleanly while a task trains");
    let restarted = TestApp::spawn_with(settings).await;
    let types = restarted.task_event_types(&id).await;
    assert!(
        !types.iter().any(|t| t == "TrainingStopped" || t == "TrainingFailed"),
        "a shutdown is not a stop: {types:?}"
    );
    // The worker said why it let go of the run.
    let history = bonsai_projections::log::aggregate_history(&restarted.pool, "TrainingTask", &id).await.unwrap();
    let interrupted = history.iter().find(|e| e.event_type == "TrainingInterrupted").expect("an interruption");
    assert_eq!(interrupted.payload["TrainingInterrupted"]["reason"], "shutdown");
    let task_dir = restarted.settings.data_dir.join("training").join(&id);
    let (reached, _) = bonsai_workers::latest_checkpoint(&task_dir).expect("the interrupted run left a checkpoint");

    // The unfinished run is delivered again and continues from its checkpoint, as the same attempt.
    let admin = restarted.admin_token().await;
    let starts = restarted.task_starts(&id, 2, 120).await;
    assert_eq!((starts[1]["attempt"].as_u64(), starts[1]["resumed_from_step"].as_u64()), (Some(1), Some(reached)));
    restarted.task_until(&admin, &id, 60, |t| t["progress"]["step"].as_u64() > Some(reached)).await;
    restarted.task_command(&admin, &id, "stop").await;
    restarted.task_until(&admin, &id, 60, |t| t["status"] == "stopped").await;
}

#[tokio::test]
async fn a_tasks_events_are_pushed_live_until_its_run_ends() {
    use futures::StreamExt;
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, created) = app.create_task(&admin, &dataset, json!({"max_steps": 4, "merge": false}), false).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.task_until(&admin, &id, 20, |_| true).await;
    let response =
        app.client.get(app.url(&format!("/api/training/tasks/{id}/events"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        text
    });
    let (status, _) = app.task_command(&admin, &id, "start").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let text =
        tokio::time::timeout(Duration::from_secs(120), reader).await.expect("the stream ends with the run").unwrap();
    let kinds: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(kinds.first(), Some(&"snapshot"), "{text}");
    assert_eq!(&kinds[1..3], ["TrainingStartRequested", "TrainingStarted"], "{kinds:?}");
    assert!(kinds.contains(&"TrainingProgressed"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"TrainingCompleted"), "the stream closes after the run's last event");
    let other = app.create_user(&admin, "someone", "trainer").await.1;
    let hidden =
        app.client.get(app.url(&format!("/api/training/tasks/{id}/events"))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tasks_events_are_pushed_over_a_websocket_with_the_token_in_the_url() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, created) = app.create_task(&admin, &dataset, json!({"max_steps": 3, "merge": false}), false).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.task_until(&admin, &id, 20, |_| true).await;
    let ws_url =
        |token: &str| format!("{}/api/training/tasks/{id}/ws?access_token={token}", app.addr.replacen("http", "ws", 1));
    // As a browser opens it: no headers, the token in the query.
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(&admin)).await.expect("the upgrade is accepted");
    let first: Value = match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected the snapshot, got {other:?}"),
    };
    assert_eq!((first["type"].as_str(), first["task"]["status"].as_str()), (Some("snapshot"), Some("created")));
    let (status, _) = app.task_command(&admin, &id, "start").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let reader = async {
        let mut kinds = Vec::new();
        while let Some(message) = socket.next().await {
            match message.unwrap() {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(value["event"]["aggregate_id"], id.as_str(), "{value}");
                    kinds.push(value["type"].as_str().unwrap().to_owned());
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        kinds
    };
    let kinds = tokio::time::timeout(Duration::from_secs(120), reader).await.expect("the socket closes with the run");
    assert_eq!(&kinds[..2], ["TrainingStartRequested", "TrainingStarted"], "{kinds:?}");
    assert!(kinds.contains(&"TrainingProgressed".to_owned()), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("TrainingCompleted"));

    // Refused before any upgrade: no token, a bad one, another trainer's view of the task.
    for (token, status) in [("", 401), ("not-a-jwt", 401)] {
        match tokio_tungstenite::connect_async(ws_url(token)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status)
            }
            other => panic!("expected {status}, got {other:?}"),
        }
    }
    let other = app.create_user(&admin, "someone", "trainer").await.1;
    match tokio_tungstenite::connect_async(ws_url(&other)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 404),
        other => panic!("expected 404, got {other:?}"),
    }
    // The token in the URL is only for the streaming endpoints.
    let response = app.get(&format!("/api/training/tasks/{id}?access_token={admin}"), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.get(&format!("/api/training/tasks/{id}/events?access_token={admin}"), None).await;
    assert_eq!(response.status(), StatusCode::OK, "an EventSource opens it the same way");
}

#[tokio::test]
async fn the_cli_follows_a_task_until_its_run_ends() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, created) = app.create_task(&admin, &dataset, json!({"max_steps": 5, "merge": false}), false).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.task_until(&admin, &id, 20, |_| true).await;
    let watch = |id: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_bonsai"))
            .args(["watch-task", &id, "--url", &app.addr, "--token", &admin])
            .env("BONSAI_CONFIG", "/nonexistent.toml")
            .output()
    };
    let watching = tokio::spawn(watch(id.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.task_command(&admin, &id, "start").await;
    let output = tokio::time::timeout(Duration::from_secs(120), watching).await.unwrap().unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // Off a terminal, a line per progress report, then the result.
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("completed: ") && last.contains("\"steps\":5"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("step ")), "{stdout}");
    // A task at rest answers at once; an unknown one is an error.
    let again = tokio::time::timeout(Duration::from_secs(60), watch(id.clone())).await.unwrap().unwrap();
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && again_out.lines().last().unwrap_or_default().starts_with("completed: "));
    let unknown =
        tokio::time::timeout(Duration::from_secs(60), watch(uuid::Uuid::new_v4().to_string())).await.unwrap().unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("404"), "{}", String::from_utf8_lossy(&unknown.stderr));
}

#[tokio::test]
async fn a_task_waits_for_a_worker_of_its_device() {
    let mut settings = test_settings();
    settings.training_devices = "cpu".into();
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, gpu) = app.create_task(&admin, &dataset, json!({"max_steps": 2, "device": "cuda"}), true).await;
    let (_, cpu) = app.create_task(&admin, &dataset, json!({"max_steps": 2, "merge": false}), true).await;
    let (gpu, cpu) = (gpu["id"].as_str().unwrap().to_owned(), cpu["id"].as_str().unwrap().to_owned());
    // The CPU task, queued after the GPU one, is trained; the GPU one waits for a CUDA worker.
    app.task_until(&admin, &cpu, 120, |t| t["status"] == "completed").await;
    let waiting = app.task_until(&admin, &gpu, 20, |_| true).await;
    assert_eq!(waiting["status"], "queued", "no node here runs cuda tasks: {waiting}");
    let (status, stopped) = app.task_command(&admin, &gpu, "stop").await;
    assert_eq!((status, stopped["status"].as_str()), (StatusCode::ACCEPTED, Some("stopped")));
}

#[tokio::test]
async fn a_cuda_task_on_a_node_without_a_gpu_fails_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, created) = app.create_task(&admin, &dataset, json!({"max_steps": 2, "device": "cuda"}), true).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ended =
        app.task_until(&admin, &id, 120, |t| ["completed", "failed"].contains(&t["status"].as_str().unwrap())).await;
    // Where a GPU and the CUDA libraries are present the task trains on it; elsewhere it says why not.
    if ended["status"] == "failed" {
        assert_eq!(ended["error"]["code"], "device_unavailable", "{ended}");
        assert!(ended["error"]["message"].as_str().unwrap().contains("cuda"), "{ended}");
    } else {
        assert!(ended["result"]["device"].as_str().unwrap().starts_with("cuda"), "{ended}");
    }
}

#[tokio::test]
async fn a_node_trains_and_answers_on_the_threads_it_is_given() {
    let mut settings = test_settings();
    settings.training_threads = 1;
    settings.serving_threads = 1;
    // Batching off: the model is served by one session of its own.
    settings.serving_slots = 0;
    settings.serving_sessions = 1;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (status, created) = app.create_task(&admin, &dataset, json!({"max_steps": 2, "merge": false}), true).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let task = app.task_until(&admin, &id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(task["result"]["device"], "cpu (1 threads)", "{task}");
    app.deployed_tiny(&admin).await;
    let (status, answered) = app.ask(&admin, json!({"question": "What is Bonsai?", "max_new_tokens": 3})).await;
    assert_eq!((status, answered["status"].as_str()), (StatusCode::OK, Some("answered")), "{answered}");
    assert_eq!(crate::serving::serving_gauge(&app, "bonsai_serving_models_loaded").await, 1.0);
    assert_eq!(crate::serving::serving_gauge(&app, "bonsai_serving_mean_batch").await, 0.0, "no decode batch");

    let mut settings = test_settings();
    settings.serving_sessions = 0;
    let error = bonsai_server::Application::build(&settings).await.err().expect("the start fails");
    assert!(format!("{error:#}").contains("BONSAI__SERVING_SESSIONS"), "{error:#}");
}

/// A run whose loss did not fall (a learning rate far too small) completes with a `loss_not_falling`
/// warning in its result, in the fine-tuning job's events, and as a `training_warning` alert for its owner.
#[tokio::test]
async fn a_run_that_learns_nothing_completes_with_a_warning_and_an_alert_for_its_owner() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    // Every step sees the whole FAQ, so the loss is the same at every step when nothing is learned.
    let config = json!({"max_steps": 6, "learning_rate": 1e-9, "batch_size": 20, "eval_split": 0.0, "warmup_steps": 0, "merge": false});
    let (status, created) = app.create_task(&admin, &dataset, config, true).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let task = app.task_until(&admin, &id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(task["status"], "completed", "{task}");
    let warnings = task["result"]["warnings"].as_array().expect("warnings in the result");
    assert_eq!(warnings.len(), 1, "{task}");
    assert_eq!(warnings[0]["code"], "loss_not_falling");
    assert!(warnings[0]["message"].as_str().unwrap().contains("learning rate"), "{}", warnings[0]);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let page: Value = app.get("/api/alerts?kind=training_warning", Some(&admin)).await.json().await.unwrap();
        if let Some(alert) = page["items"].as_array().and_then(|items| items.first()).cloned() {
            break alert;
        }
        assert!(tokio::time::Instant::now() < deadline, "no training_warning alert: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alert["subject"], format!("TrainingTask/{id}"));
    assert_eq!(alert["details"]["warnings"][0]["code"], "loss_not_falling");

    // A run that learns says nothing of the kind.
    let config = json!({"max_steps": 12, "learning_rate": 1e-2, "batch_size": 20, "eval_split": 0.0, "warmup_steps": 0,
        "merge": false});
    let (_, created) = app.create_task(&admin, &dataset, config, true).await;
    let learnt = created["id"].as_str().unwrap().to_owned();
    let task = app.task_until(&admin, &learnt, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(task["status"], "completed", "{task}");
    assert!(task["result"].get("warnings").is_none(), "{task}");
}

/// A task evaluates on a validation dataset of its own (`eval_dataset_id`) instead of a held-out share.
#[tokio::test]
async fn a_task_evaluates_on_a_validation_dataset_instead_of_a_held_out_share() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let validation = app.upload_ok(&admin, crate::datasets::qa_jsonl(4)).await;
    assert_eq!(app.validated(&admin, &validation).await["status"], "valid");
    let (app_ref, admin_ref) = (&app, &admin);
    let create = |body: Value| async move {
        let response = app_ref.post("/api/training/tasks", Some(admin_ref), body).await;
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let base = json!({"name": "with validation", "base_model_id": "tiny", "dataset_id": dataset,
        "config": {"max_steps": 2, "eval_every": 1, "merge": false}, "start": true});
    let mut bad = base.clone();
    bad["eval_dataset_id"] = json!(uuid::Uuid::new_v4());
    let (status, body) = create(bad).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_dataset")));
    assert_eq!(body["error"]["details"]["field"], "eval_dataset_id", "{body}");
    let mut both = base.clone();
    both["eval_dataset_id"] = json!(validation);
    both["config"]["eval_split"] = json!(0.2);
    let (status, body) = create(both).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
    assert_eq!(
        body["error"]["details"]["field"], "config.eval_split",
        "a held-out share and a validation dataset: {body}"
    );
    let mut good = base.clone();
    good["eval_dataset_id"] = json!(validation);
    good["config"]["eval_dataset"] = json!({"dataset_id": uuid::Uuid::new_v4(), "version": 1, "sha256": "0"});
    let (status, created) = create(good).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let task = app.task_until(&admin, &id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["config"]["eval_dataset"]["dataset_id"],
        validation.as_str(),
        "the checked reference, not the body's"
    );
    assert_eq!(task["config"]["eval_split"], 0.0);
    assert_eq!(
        (task["result"]["train_examples"].as_u64(), task["result"]["eval_examples"].as_u64()),
        (Some(20), Some(4))
    );
    assert!(task["progress"]["eval_loss"].is_f64(), "{task}");
}
