//! Which model answers and how a model's versions are managed, over HTTP: the default model, aliases,
//! rollback (with who did it in the audit trail), model tests run back to back (each scored, with exact
//! match, containment and token F1), the installed base models, tasks whose settings are chosen for them,
//! and OpenAI's legacy prompt/completion data format.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

impl TestApp {
    /// Registers the installed `tiny` model as `name` (a new version each time), waits until it is ready
    /// and deploys it; returns its id and the deploy answer.
    async fn deployed_as(&self, token: &str, name: &str) -> (String, Value) {
        let response = self.post("/api/models", Some(token), json!({"name": name, "base_model_id": "tiny"})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        self.model_until(token, &id, |m| m["status"] == "ready").await;
        let response = self.post(&format!("/api/models/{id}/deploy"), Some(token), json!({})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let deployed = response.json().await.unwrap();
        self.model_until(token, &id, |m| m["deployed"] == true).await;
        (id, deployed)
    }

    /// DELETE /api/models/{id}/aliases/{alias}.
    async fn remove_alias(&self, token: &str, id: &str, alias: &str) -> reqwest::Response {
        self.delete(&format!("/api/models/{id}/aliases/{alias}"), Some(token)).await
    }

    /// POST /api/models/{id}/aliases.
    async fn set_alias(&self, token: &str, id: &str, alias: &str) -> reqwest::Response {
        self.post(&format!("/api/models/{id}/aliases"), Some(token), json!({"alias": alias})).await
    }

    /// The model that answered `body`'s question.
    async fn answered_by(&self, token: &str, mut body: Value) -> String {
        body["question"] = json!("What is Bonsai?");
        body["max_new_tokens"] = json!(4);
        let (status, answer) = self.ask(token, body).await;
        assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("answered")), "{answer}");
        answer["model_id"].as_str().unwrap().to_owned()
    }

    /// The payloads of model `id`'s events of `event_type`, oldest first, with the user who caused each.
    async fn model_events(&self, id: &str, event_type: &str) -> Vec<(Value, Value)> {
        sqlx::query_as::<_, (sqlx::types::Json<Value>, sqlx::types::Json<Value>)>(
            "SELECT payload, metadata FROM events WHERE aggregate_type = 'Model' AND aggregate_id = $1 \
             AND event_type = $2 ORDER BY sequence",
        )
        .bind(id)
        .bind(event_type)
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(p, m)| (p.0[event_type].clone(), m.0))
        .collect()
    }
}

#[tokio::test]
async fn two_model_tests_started_back_to_back_are_both_scored() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let (model, _) = app.deployed_as(&admin, "tested bot").await;
    let mut runs = Vec::new();
    for expected in ["platform", "nothing like this"] {
        let body = json!({"cases": [{"question": "What is Bonsai?", "expected": expected}]});
        let response = app.post(&format!("/api/models/{model}/test"), Some(&admin), body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let accepted: Value = response.json().await.unwrap();
        runs.push(accepted["test_id"].as_str().expect("the answer names the test run").to_owned());
    }
    assert_ne!(runs[0], runs[1]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let tested = loop {
        let tested = app.model_events(&model, "ModelTested").await;
        if tested.len() == 2 || tokio::time::Instant::now() > deadline {
            break tested;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let scored: Vec<&str> = tested.iter().filter_map(|(t, _)| t["test_id"].as_str()).collect();
    assert_eq!(scored, runs, "each test is scored once, the second too: {tested:?}");
    for (result, _) in &tested {
        let report = &result["report"];
        assert_eq!(report["test_id"], result["test_id"]);
        let case = &report["cases"][0];
        for score in ["exact_match", "contains"] {
            assert!(case[score].is_boolean(), "{score}: {report}");
            assert!((0.0..=1.0).contains(&report["totals"][score].as_f64().unwrap()), "{score}: {report}");
        }
        assert!((0.0..=1.0).contains(&case["token_f1"].as_f64().unwrap()), "{report}");
        assert_eq!(report["totals"]["cases"], 1);
    }
    // The second expectation is in no answer of the random model.
    assert_eq!(tested[1].0["report"]["totals"]["contains"], 0.0);
}

#[tokio::test]
async fn the_default_model_answers_questions_that_name_none_and_aliases_name_models() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let (first, _) = app.deployed_as(&admin, "first bot").await;
    // One deployed model answers without being named.
    assert_eq!(app.answered_by(&admin, json!({})).await, first);
    let (second, _) = app.deployed_as(&admin, "second bot").await;
    app.model_until(&admin, &second, |m| m["deployed"] == true).await;
    let (status, body) = app.ask(&admin, json!({"question": "Hi?"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_default_model")),
        "two deployed and no default: which would answer is not guessed"
    );
    let response = app.post(&format!("/api/models/{first}/default"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.answered_by(&admin, json!({})).await, first);
    let response = app.post(&format!("/api/models/{second}/default"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.answered_by(&admin, json!({})).await, second, "the latest default wins");

    // An alias names a model, and moves in one step.
    assert_eq!(app.set_alias(&admin, &first, "production").await.status(), StatusCode::OK);
    assert_eq!(app.set_alias(&admin, &second, "staging").await.status(), StatusCode::OK);
    assert_eq!(app.answered_by(&admin, json!({"model_id": "production"})).await, first);
    assert_eq!(app.answered_by(&admin, json!({"model_id": "staging"})).await, second);
    assert_eq!(app.set_alias(&admin, &second, "production").await.status(), StatusCode::OK);
    assert_eq!(app.answered_by(&admin, json!({"model_id": "production"})).await, second);
    let routing: Value = app.get("/api/models/aliases", Some(&admin)).await.json().await.unwrap();
    assert_eq!(routing, json!({"default_model_id": second, "aliases": {"production": second, "staging": second}}));

    let (status, body) = app.ask(&admin, json!({"question": "Hi?", "model_id": "canary"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_model")));
    let response = app.set_alias(&admin, &first, "Not An Alias").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // An alias is removed from the model it names, and names nothing until it is set again.
    let response = app.remove_alias(&admin, &first, "staging").await;
    assert_eq!((response.status(), error_code(response).await.as_str()), (StatusCode::NOT_FOUND, "alias_not_found"));
    assert_eq!(app.remove_alias(&admin, &second, "staging").await.status(), StatusCode::OK);
    let (status, body) = app.ask(&admin, json!({"question": "Hi?", "model_id": "staging"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_model")));
    let routing: Value = app.get("/api/models/aliases", Some(&admin)).await.json().await.unwrap();
    assert_eq!(routing["aliases"], json!({"production": second}));
    assert_eq!(app.remove_alias(&admin, &second, "staging").await.status(), StatusCode::NOT_FOUND, "removed once");
    assert_eq!(app.set_alias(&admin, &first, "staging").await.status(), StatusCode::OK);
    assert_eq!(app.answered_by(&admin, json!({"model_id": "staging"})).await, first, "set again after removal");
    assert_eq!(app.model_events(&second, "ModelAliasRemoved").await.len(), 1);
    // Undeployed, the default answers no more: the other model is the only one left.
    app.post(&format!("/api/models/{second}/undeploy"), Some(&admin), json!({})).await;
    app.model_until(&admin, &second, |m| m["deployed"] == false).await;
    assert_eq!(app.answered_by(&admin, json!({})).await, first);
    let response = app.post(&format!("/api/models/{second}/default"), Some(&admin), json!({})).await;
    assert_eq!((response.status(), error_code(response).await.as_str()), (StatusCode::CONFLICT, "model_not_deployed"));
}

#[tokio::test]
async fn a_rollback_deploys_the_version_before_in_one_step_and_the_audit_says_who() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let (v1, deployed) = app.deployed_as(&admin, "faq bot").await;
    assert_eq!((deployed["version"].as_u64(), deployed["deployed"].as_bool()), (Some(1), Some(true)));
    let response = app.post(&format!("/api/models/{v1}/rollback"), Some(&admin), json!({})).await;
    assert_eq!((response.status(), error_code(response).await.as_str()), (StatusCode::CONFLICT, "no_previous_version"));
    let (v2, deployed) = app.deployed_as(&admin, "faq bot").await;
    assert_eq!(deployed["version"].as_u64(), Some(2), "deploy answers the real version: {deployed}");
    app.post(&format!("/api/models/{v1}/undeploy"), Some(&admin), json!({})).await;
    app.post(&format!("/api/models/{v2}/default"), Some(&admin), json!({})).await;

    let response = app.post(&format!("/api/models/{v2}/rollback"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let back: Value = response.json().await.unwrap();
    assert_eq!(
        (back["id"].as_str(), back["version"].as_u64(), back["deployed"].as_bool()),
        (Some(v1.as_str()), Some(1), Some(true))
    );
    app.model_until(&admin, &v2, |m| m["deployed"] == false).await;
    assert_eq!(app.answered_by(&admin, json!({})).await, v1, "the default moved with the rollback");
    let rolled = app.model_events(&v2, "ModelRolledBack").await;
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0].0, json!({"to_model_id": v1, "to_version": 1}));
    let me: Value = app.get("/api/users/profile", Some(&admin)).await.json().await.unwrap();
    assert_eq!(rolled[0].1["actor"], me["id"], "the event names who rolled back: {:?}", rolled[0].1);
    // Not deployed any more, v2 cannot be rolled back again.
    let response = app.post(&format!("/api/models/{v2}/rollback"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn installed_base_models_are_listed_with_their_shape_and_origin() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    std::fs::write(app.settings.models_dir().join("tiny/bonsai-source.json"), r#"{"source": "test"}"#).unwrap();
    std::fs::create_dir_all(app.settings.models_dir().join("half-installed")).unwrap();
    let response = app.get("/api/models/base", Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "a folder without a model is not listed: {listed}");
    let tiny = &items[0];
    let config: Value =
        serde_json::from_slice(&std::fs::read(app.settings.models_dir().join("tiny/config.json")).unwrap()).unwrap();
    let architecture = config["architectures"][0].as_str().or(config["model_type"].as_str());
    assert_eq!((tiny["id"].as_str(), tiny["architecture"].as_str()), (Some("tiny"), architecture));
    assert!(architecture.is_some(), "{config}");
    assert_eq!(tiny["layers"], config["num_hidden_layers"]);
    assert_eq!(tiny["vocab_size"], config["vocab_size"]);
    assert_eq!(tiny["context_length"], config["max_position_embeddings"]);
    assert!(tiny["parameters"].as_u64().unwrap() > 1_000_000, "{tiny}");
    assert!(tiny["size_bytes"].as_u64().unwrap() > tiny["parameters"].as_u64().unwrap(), "f32 weights: {tiny}");
    assert_eq!((tiny["chat_template"].as_bool(), &tiny["source"]), (Some(true), &json!({"source": "test"})));
    let (_, user) = app.create_user(&admin, "reader", "user").await;
    assert_eq!(app.get("/api/models/base", Some(&user)).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_task_without_settings_gets_settings_chosen_for_its_data_and_model() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let body = json!({"name": "auto", "base_model_id": "tiny", "dataset_id": dataset});
    let response = app.post("/api/training/tasks", Some(&admin), body.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let task = app.task_until(&admin, &id, 20, |_| true).await;
    let config = &task["config"];
    // The demo FAQ has 20 records; `tiny` is a random model (learns from scratch).
    assert_eq!((config["batch_size"].as_u64(), config["epochs"].as_u64()), (Some(20), Some(400)), "{config}");
    assert_eq!((config["lr_schedule"].as_str(), config["rank"].as_u64()), (Some("constant"), Some(16)));
    assert_eq!(config["targets"].as_array().unwrap().len(), 7);
    let quick = json!({"name": "auto", "base_model_id": "tiny", "dataset_id": dataset, "preset": "quick"});
    let response = app.post("/api/training/tasks", Some(&admin), quick).await;
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let task = app.task_until(&admin, &id, 20, |_| true).await;
    assert_eq!(task["config"]["epochs"], 200);
    for (change, field) in [(json!({"preset": "fast"}), "preset"), (json!({"preset": "quick", "config": {}}), "preset")]
    {
        let mut bad = body.clone();
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let response = app.post("/api/training/tasks", Some(&admin), bad).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["details"]["field"], field);
    }
}

#[tokio::test]
async fn openai_legacy_prompt_completion_files_are_valid_datasets() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let file = b"{\"prompt\": \"What is Bonsai?\", \"completion\": \"A platform.\"}\n\
                 {\"prompt\": \"Who runs it?\", \"completion\": \"You do.\"}\n";
    let id = app.upload_ok(&admin, file.to_vec()).await;
    let detail = app.validated(&admin, &id).await;
    assert_eq!((detail["status"].as_str(), detail["record_count"].as_u64()), (Some("valid"), Some(2)), "{detail}");
}

/// A checkpoint of a stopped run becomes a model: its adapter is copied when registered (the run prunes old
/// checkpoints) and merged into the base when exported; the model deploys and answers.
#[tokio::test]
async fn a_checkpoint_of_a_run_is_registered_exported_and_deployed_as_a_model() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let config = json!({"max_steps": 1000000, "checkpoint_every": 2, "merge": false});
    let (_, created) = app.create_task(&admin, &dataset, config, true).await;
    let task = created["id"].as_str().unwrap().to_owned();
    app.task_until(&admin, &task, 120, |t| t["progress"]["step"].as_u64() >= Some(4)).await;
    app.task_command(&admin, &task, "stop").await;
    app.task_until(&admin, &task, 60, |t| t["status"] == "stopped").await;
    let listed: Value =
        app.get(&format!("/api/training/tasks/{task}/checkpoints"), Some(&admin)).await.json().await.unwrap();
    let step = listed["items"][0]["step"].as_u64().expect("a checkpoint");

    let register = |body: Value| app.post("/api/models", Some(&admin), body);
    let response = register(json!({"name": "early", "training_task_id": task, "checkpoint_step": 999_999})).await;
    assert_eq!(
        (response.status(), error_code(response).await.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_checkpoint")
    );
    let response = register(json!({"name": "early", "base_model_id": "tiny", "checkpoint_step": step})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = register(json!({"name": " ", "training_task_id": task, "checkpoint_step": step})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let serving = app.settings.data_dir.join("serving");
    let left = std::fs::read_dir(&serving).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a refused registration leaves no copied adapter");
    let response = register(json!({"name": "early", "training_task_id": task, "checkpoint_step": step})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let ready = app.model_until(&admin, &id, |m| m["status"] != "exporting").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["source"]["kind"], "training_checkpoint");
    assert_eq!(
        (ready["source"]["step"].as_u64(), ready["training_task_id"].as_str()),
        (Some(step), Some(task.as_str()))
    );
    assert!(app.settings.data_dir.join(format!("serving/{id}/adapter/adapter_model.safetensors")).is_file());
    assert!(!app.settings.data_dir.join(format!("serving/{id}/merged")).exists(), "no second copy once exported");
    let response = app.post(&format!("/api/models/{id}/deploy"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.model_until(&admin, &id, |m| m["deployed"] == true).await;
    let (status, asked) =
        app.ask(&admin, json!({"question": "What is Bonsai?", "model_id": id, "max_new_tokens": 4})).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(asked["model_id"], id.as_str());
}
