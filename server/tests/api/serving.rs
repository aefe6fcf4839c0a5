//! Models and questions end to end: a model registered over HTTP is exported to ONNX by the model worker,
//! deployed, tested, and answers questions through the QA worker, in conversations with a history.

use crate::helpers::*;
use bonsai_crypto::data_keys::ERASED;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

impl TestApp {
    /// Polls model `id` until `done` holds for it.
    pub(crate) async fn model_until(&self, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/models/{id}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let response = self.get(&path, Some(token)).await;
            if response.status() == StatusCode::OK {
                let model: Value = response.json().await.unwrap();
                if done(&model) {
                    return model;
                }
                assert!(tokio::time::Instant::now() < deadline, "condition not met: {model}");
            } else {
                assert!(tokio::time::Instant::now() < deadline, "model {id} not visible");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers, exports and deploys the installed `tiny` model; returns its id.
    pub(crate) async fn deployed_tiny(&self, token: &str) -> String {
        let response =
            self.post("/api/models", Some(token), json!({"name": "tiny bot", "base_model_id": "tiny"})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.unwrap();
        assert_eq!((created["status"].as_str(), created["version"].as_u64()), (Some("exporting"), Some(1)));
        let id = created["id"].as_str().unwrap().to_owned();
        let ready = self.model_until(token, &id, |m| m["status"] != "exporting").await;
        assert_eq!(ready["status"], "ready", "{ready}");
        let response = self.post(&format!("/api/models/{id}/deploy"), Some(token), json!({})).await;
        assert_eq!(response.status(), StatusCode::OK);
        self.model_until(token, &id, |m| m["deployed"] == true).await;
        id
    }

    /// DELETE /api/qa/history/{id}: its status.
    async fn delete_history(&self, id: &str, token: &str) -> StatusCode {
        self.delete(&format!("/api/qa/history/{id}"), Some(token)).await.status()
    }

    pub(crate) async fn ask(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self.post("/api/qa/ask", Some(token), body).await;
        (response.status(), response.json().await.unwrap())
    }
}

#[tokio::test]
async fn a_deployed_model_answers_questions_in_conversations_with_a_history() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let model = app.deployed_tiny(&admin).await;
    let (_, user) = app.create_user(&admin, "asker", "user").await;
    let (_, other) = app.create_user(&admin, "other", "user").await;

    // What the export answers when run directly: the service must give the same greedy answer.
    let detail: Value = app.get(&format!("/api/models/{model}"), Some(&user)).await.json().await.unwrap();
    assert_eq!(detail["deployed"], true, "users see deployed models");
    let export = app.settings.data_dir.join("serving").join(&model).join("onnx");
    let engine = bonsai_ml::engine::Engine::load(&export, Default::default()).unwrap();
    let mut direct = bonsai_ml::engine::ChatRequest::user("What is Bonsai?");
    direct.params.max_new_tokens = 12;
    let expected = engine.generate(&direct, &mut |_| {}).unwrap().text.trim().to_owned();

    let (status, first) = app.ask(&user, json!({"question": "What is Bonsai?", "max_new_tokens": 12})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!((first["status"].as_str(), first["model_id"].as_str()), (Some("answered"), Some(model.as_str())));
    assert_eq!(first["answer"], expected.as_str(), "the service's answer is the model's");
    assert_eq!(first["cached"], false);
    let session = first["session_id"].as_str().unwrap().to_owned();

    let (status, again) = app.ask(&user, json!({"question": "What is Bonsai?", "max_new_tokens": 12})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((again["answer"].as_str(), again["cached"].as_bool()), (Some(expected.as_str()), Some(true)));
    assert_ne!(again["session_id"], first["session_id"], "a new conversation without session_id");
    // The cache is Redis, shared by every node: the answer is stored under this instance's namespace.
    let redis = redis::Client::open(app.settings.redis_url.as_str()).unwrap();
    let mut redis = redis.get_multiplexed_async_connection().await.expect("Redis runs (scripts/ensure-services.sh)");
    let pattern = format!("{}:answer:{model}:12:*", app.settings.nats_prefix);
    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut redis).await.unwrap();
    assert_eq!(keys.len(), 1, "{pattern}");
    // Sealed like the answer in the event store: Redis holds neither the question nor the answer in the clear.
    let stored: String = redis::cmd("GET").arg(&keys[0]).query_async(&mut redis).await.unwrap();
    // With the data key of the question that produced it, so that deleting that question erases this copy too.
    let produced_by = format!("sealed:e1:{}:", first["question_id"].as_str().unwrap());
    assert!(stored.starts_with(&produced_by) && !stored.contains(expected.as_str()), "{stored}");
    let opened = bonsai_crypto::sealed::open(&stored, &bonsai_crypto::sealed::context("AnswerCache", &keys[0]));
    assert_eq!(serde_json::from_str::<Value>(&opened.unwrap()).unwrap()["answer"], expected.as_str());
    use sha2::Digest;
    let plain_digest = hex::encode(sha2::Sha256::digest(b"What is Bonsai?"));
    assert!(!keys[0].ends_with(&plain_digest), "the key is a keyed digest of the question");
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query_async(&mut redis).await.unwrap();
    assert!(ttl > 0 && ttl <= 24 * 3600, "cached answers expire: {ttl}");

    let (status, follow) =
        app.ask(&user, json!({"question": "Tell me more.", "session_id": session, "max_new_tokens": 8})).await;
    assert_eq!((status, follow["session_id"].as_str()), (StatusCode::OK, Some(session.as_str())));
    let events = bonsai_projections::log::aggregate_history(&app.pool, "QaSession", &session).await.unwrap();
    let asked: Vec<&Value> =
        events.iter().filter(|e| e.event_type == "QuestionAsked").map(|e| &e.payload["QuestionAsked"]).collect();
    let context = json!([{"question_id": first["question_id"], "question": "What is Bonsai?", "answer": expected}]);
    assert_eq!(asked[1]["context"], context, "in context");

    let history: Value = app.get("/api/qa/history", Some(&user)).await.json().await.unwrap();
    assert_eq!(history["total"], 3);
    let one: Value = app.get(&format!("/api/qa/history?session_id={session}"), Some(&user)).await.json().await.unwrap();
    assert_eq!(one["total"], 2);
    assert_eq!(one["items"][0]["question"], "Tell me more.", "newest first");
    let theirs: Value = app.get("/api/qa/history", Some(&other)).await.json().await.unwrap();
    assert_eq!(theirs["total"], 0, "a history is its user's own");
    let question = first["question_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/qa/questions/{question}"), Some(&other)).await.status(), StatusCode::NOT_FOUND);
    let (status, _) = app.ask(&other, json!({"question": "Mine?", "session_id": session})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's conversation cannot be continued");

    // Without waiting, the question is accepted (202) and its answer is polled.
    let (status, pending) =
        app.ask(&user, json!({"question": "Is it open?", "max_new_tokens": 4, "wait_secs": 0})).await;
    assert_eq!((status, pending["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{pending}");
    assert_eq!(pending["question"], "Is it open?");
    let path = format!("/api/qa/questions/{}", pending["question_id"].as_str().unwrap());
    eventually(|| async {
        let response = app.get(&path, Some(&user)).await;
        response.status() == StatusCode::OK && response.json::<Value>().await.unwrap()["status"] == "answered"
    })
    .await;
    let deployed: Value = app.get("/api/models?deployed=true", Some(&admin)).await.json().await.unwrap();
    assert_eq!((deployed["total"].as_i64(), deployed["items"][0]["id"].as_str()), (Some(1), Some(model.as_str())));

    // A test scores greedy answers against the expected ones.
    let cases = json!({"cases": [{"question": "What is Bonsai?", "expected": expected},
        {"question": "What is Bonsai?", "expected": "zzz never said"}]});
    let response = app.post(&format!("/api/models/{model}/test"), Some(&admin), cases).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let tested = app.model_until(&admin, &model, |m| m["accuracy"].is_number()).await;
    // The test answers with up to 64 tokens, so the first case holds the 12-token answer at least.
    assert_eq!(tested["accuracy"], 0.5, "{tested}");
    assert_eq!(tested["test_report"]["cases"][1]["correct"], false);

    // Both views are rebuilt from the events to the same rows.
    let (models, questions) = (
        bonsai_projections::models::all_rows(&app.pool).await.unwrap(),
        bonsai_projections::qa::all_rows(&app.pool).await.unwrap(),
    );
    bonsai_projections::rebuild(&app.pool, &bonsai_projections::models::ModelsProjection).await.unwrap();
    bonsai_projections::rebuild(&app.pool, &bonsai_projections::qa::QaProjection).await.unwrap();
    assert_eq!(bonsai_projections::models::all_rows(&app.pool).await.unwrap(), models);
    assert_eq!(bonsai_projections::qa::all_rows(&app.pool).await.unwrap(), questions);
    assert_eq!(questions.len(), 4);

    // Deleting the question whose answer is cached erases the cached copy: the next asker gets a fresh one.
    let first_id = first["question_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/qa/history/{first_id}"), Some(&user)).await.status(), StatusCode::NO_CONTENT);
    app.until_erased(first_id).await;
    let (status, fresh) = app.ask(&other, json!({"question": "What is Bonsai?", "max_new_tokens": 12})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((fresh["answer"].as_str(), fresh["cached"].as_bool()), (Some(expected.as_str()), Some(false)));
    let (_, again) = app.ask(&other, json!({"question": "What is Bonsai?", "max_new_tokens": 12})).await;
    assert_eq!(again["cached"], true, "cached again, under the new question's key");

    // Undeployed, it answers no more.
    let response = app.post(&format!("/api/models/{model}/undeploy"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = app.ask(&user, json!({"question": "Hi?", "model_id": model})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("model_not_deployed"))
    );
    app.model_until(&admin, &model, |m| m["deployed"] == false).await;
    let (status, body) = app.ask(&user, json!({"question": "Hi?"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("no_deployed_model")));
    assert_eq!(app.get(&format!("/api/models/{model}"), Some(&user)).await.status(), StatusCode::NOT_FOUND);
}

/// The questions of conversation `session` in its QuestionAsked events: (question, context questions).
async fn asked_with_context(app: &TestApp, session: &str) -> Vec<(String, Vec<String>)> {
    let events = bonsai_projections::log::aggregate_history(&app.pool, "QaSession", session).await.unwrap();
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    events
        .iter()
        .filter(|e| e.event_type == "QuestionAsked")
        .map(|e| &e.payload["QuestionAsked"])
        .map(|a| {
            (text(&a["question"]), a["context"].as_array().unwrap().iter().map(|t| text(&t["question"])).collect())
        })
        .collect()
}

/// Whether the data key of each question is erased (in the database: the test process shares the app's
/// cache of keys).
async fn erased_keys(app: &TestApp, questions: &[String]) -> Vec<bool> {
    let mut erased = Vec::new();
    for id in questions {
        let (key_gone, at): (bool, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as("SELECT key IS NULL, erased_at FROM data_keys WHERE id = $1::uuid")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(key_gone, at.is_some());
        erased.push(key_gone);
    }
    erased
}

#[tokio::test]
async fn a_conversation_reads_as_a_transcript_and_its_history_can_be_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let (_, user) = app.create_user(&admin, "asker", "user").await;
    let (_, other) = app.create_user(&admin, "other", "user").await;
    let (status, first) = app.ask(&user, json!({"question": "q1", "max_new_tokens": 3})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let session = first["session_id"].as_str().unwrap().to_owned();
    let mut ids = vec![first["question_id"].as_str().unwrap().to_owned()];
    for question in ["q2", "q3"] {
        let (status, asked) =
            app.ask(&user, json!({"question": question, "session_id": session, "max_new_tokens": 3})).await;
        assert_eq!(status, StatusCode::OK, "{asked}");
        ids.push(asked["question_id"].as_str().unwrap().to_owned());
    }
    let (_, elsewhere) = app.ask(&user, json!({"question": "another talk", "max_new_tokens": 3})).await;

    // The transcript: oldest first, paged.
    let transcript = format!("/api/qa/history/{session}");
    let questions = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|q| q["question"].as_str().unwrap().to_owned()).collect()
    };
    let page: Value = app.get(&transcript, Some(&user)).await.json().await.unwrap();
    assert_eq!((page["session_id"].as_str(), page["total"].as_i64()), (Some(session.as_str()), Some(3)));
    assert_eq!(questions(&page), ["q1", "q2", "q3"]);
    let last: Value = app.get(&format!("{transcript}?page=2&page_size=2"), Some(&user)).await.json().await.unwrap();
    assert_eq!(questions(&last), ["q3"]);
    let beyond: Value = app.get(&format!("{transcript}?page=5&page_size=2"), Some(&user)).await.json().await.unwrap();
    assert_eq!((questions(&beyond).len(), beyond["total"].as_i64()), (0, Some(3)), "a page past the end still counts");
    let response = app.get(&transcript, Some(&other)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "another user's conversation does not exist for them");
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(app.get(&format!("/api/qa/history/{unknown}"), Some(&user)).await.status(), StatusCode::NOT_FOUND);
    let response = app.get("/api/qa/history/not-an-id", Some(&user)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = app.get(&format!("{transcript}?page_size=0"), Some(&user)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Deleting one question: only its owner can, and it leaves the transcript and the next question's context.
    assert_eq!(app.delete_history(&ids[1], &other).await, StatusCode::NOT_FOUND);
    assert_eq!(app.delete_history(&session, &other).await, StatusCode::NOT_FOUND);
    assert_eq!(app.delete_history(&unknown.to_string(), &user).await, StatusCode::NOT_FOUND);
    let page: Value = app.get(&transcript, Some(&user)).await.json().await.unwrap();
    assert_eq!(questions(&page), ["q1", "q2", "q3"], "refused deletes change nothing");
    assert_eq!(app.delete_history(&ids[1], &user).await, StatusCode::NO_CONTENT);
    eventually(|| async {
        let page: Value = app.get(&transcript, Some(&user)).await.json().await.unwrap();
        questions(&page) == ["q1", "q3"]
    })
    .await;
    assert_eq!(app.get(&format!("/api/qa/questions/{}", ids[1]), Some(&user)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete_history(&ids[1], &user).await, StatusCode::NOT_FOUND, "deleted once");
    let (status, _) = app.ask(&user, json!({"question": "q4", "session_id": session, "max_new_tokens": 3})).await;
    assert_eq!(status, StatusCode::OK);
    let asked = asked_with_context(&app, &session).await;
    assert_eq!(asked[3], ("q4".to_owned(), vec!["q1".to_owned(), "q3".to_owned()]), "q2 left the context");
    // Erased, not only hidden: the events stay, but q2's data key is gone, so its text reads as erased.
    assert_eq!(asked[1].0, ERASED, "q2's own event");
    assert_eq!(erased_keys(&app, &ids).await, [false, true, false]);

    // Deleting the conversation: everything asked so far goes; the conversation can go on, afresh.
    assert_eq!(app.delete_history(&session, &user).await, StatusCode::NO_CONTENT);
    eventually(|| async { app.get(&transcript, Some(&user)).await.status() == StatusCode::NOT_FOUND }).await;
    let all: Value = app.get("/api/qa/history", Some(&user)).await.json().await.unwrap();
    assert_eq!(
        (all["total"].as_i64(), all["items"][0]["question_id"].as_str()),
        (Some(1), elsewhere["question_id"].as_str()),
        "the other conversation stays"
    );
    let (status, _) = app.ask(&user, json!({"question": "q5", "session_id": session, "max_new_tokens": 3})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(asked_with_context(&app, &session).await[4], ("q5".to_owned(), vec![]), "no context after clearing");
    let page: Value = app.get(&transcript, Some(&user)).await.json().await.unwrap();
    assert_eq!(questions(&page), ["q5"]);
    assert_eq!(erased_keys(&app, &ids).await, [true, true, true]);
    let asked = asked_with_context(&app, &session).await;
    assert_eq!(asked.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>(), [ERASED, ERASED, ERASED, ERASED, "q5"]);
    assert_eq!(asked[3].1, [ERASED, ERASED], "copies of erased questions in later context are erased too");

    // The audit log keeps what was deleted; a rebuilt view agrees with the live one.
    let audit: Value = app.get(&format!("/api/audit/QaSession/{session}"), Some(&admin)).await.json().await.unwrap();
    let types: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert!(types.contains(&"QuestionDeleted") && types.contains(&"HistoryCleared"), "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "QuestionAsked").count(), 5);
    let answers: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "QuestionAnswered")
        .map(|e| e["payload"]["QuestionAnswered"]["answer"]["answer"].as_str().unwrap())
        .collect();
    assert_eq!(answers.len(), 5);
    assert!(answers[..4].iter().all(|a| *a == ERASED) && answers[4] != ERASED, "{answers:?}");
    let rows = bonsai_projections::qa::all_rows(&app.pool).await.unwrap();
    bonsai_projections::rebuild(&app.pool, &bonsai_projections::qa::QaProjection).await.unwrap();
    assert_eq!(bonsai_projections::qa::all_rows(&app.pool).await.unwrap(), rows);
    assert_eq!(rows.len(), 2);
}

/// The serving gauge `name` in a node's `/metrics`.
pub(crate) async fn serving_gauge(node: &TestApp, name: &str) -> f64 {
    let metrics = node.get("/metrics", None).await.text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).expect("the gauge is there");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn models_loaded(node: &TestApp) -> f64 {
    serving_gauge(node, "bonsai_serving_models_loaded").await
}

#[tokio::test]
async fn questions_asked_at_once_share_one_decode_batch_and_those_beyond_its_rows_wait_their_turn() {
    let mut settings = test_settings();
    settings.serving_slots = 2;
    settings.serving_threads = 1;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    assert_eq!(serving_gauge(&app, "bonsai_serving_mean_batch").await, 0.0, "nothing decoded yet");

    // Five people ask at once (different questions: no cached answer), more than the batch has rows.
    let asks = (0..5).map(|i| {
        let (app, admin) = (&app, &admin);
        async move {
            let body = json!({"question": format!("Question number {i} for the batch?"), "max_new_tokens": 40});
            app.ask(admin, body).await
        }
    });
    for (status, body) in futures::future::join_all(asks).await {
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("answered")), "{body}");
        assert!(body["completion_tokens"].as_u64().is_some_and(|n| n > 0), "{body}");
    }
    // They were decoded together, never more than the two rows at a time, and nothing is left running.
    let mean = serving_gauge(&app, "bonsai_serving_mean_batch").await;
    assert!(mean > 1.0 && mean <= 2.0, "mean rows per decode step: {mean}");
    assert_eq!(serving_gauge(&app, "bonsai_serving_batch_rows").await, 0.0);
    assert_eq!(serving_gauge(&app, "bonsai_serving_batch_waiting").await, 0.0);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn undeploying_a_model_frees_it_on_every_node() {
    let first = TestApp::spawn().await;
    let admin = first.admin_token().await;
    first.training_fixture(&admin).await;
    let model = first.deployed_tiny(&admin).await;
    // A second node of the same platform: same database, NATS subjects and data folder.
    let second = TestApp::spawn_with(first.settings.clone()).await;
    assert_eq!((models_loaded(&first).await, models_loaded(&second).await), (0.0, 0.0), "loaded on first use");
    // Questions go to whichever node's QA worker takes them: ask until both nodes have loaded the model.
    let mut asked = 0;
    while models_loaded(&first).await < 1.0 || models_loaded(&second).await < 1.0 {
        assert!(asked < 60, "the questions never reached both nodes");
        let node = if asked % 2 == 0 { &first } else { &second };
        let (status, body) =
            node.ask(&admin, json!({"question": format!("question {asked}"), "max_new_tokens": 2})).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("answered")), "{body}");
        asked += 1;
    }
    let response = second.post(&format!("/api/models/{model}/undeploy"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    eventually(|| async { models_loaded(&first).await == 0.0 && models_loaded(&second).await == 0.0 }).await;
}

#[tokio::test]
async fn a_completed_training_task_becomes_a_versioned_model() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (status, created) = app.create_task(&admin, &dataset, json!({"max_steps": 2, "eval_split": 0.2}), false).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let task = created["id"].as_str().unwrap().to_owned();
    let body = json!({"name": "faq bot", "training_task_id": task});
    let response = app.post("/api/models", Some(&admin), body.clone()).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(response).await, "training_not_completed");

    app.task_command(&admin, &task, "start").await;
    app.task_until(&admin, &task, 120, |t| t["status"] == "completed").await;
    let response = app.post("/api/models", Some(&admin), body.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let first: Value = response.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    let model = app.model_until(&admin, &id, |m| m["status"] != "exporting").await;
    assert_eq!(model["status"], "ready", "{model}");
    assert_eq!(
        (model["source"]["kind"].as_str(), model["training_task_id"].as_str()),
        (Some("training_task"), Some(task.as_str()))
    );
    assert_eq!(model["metrics"]["steps"], 2, "the training result comes with the model");
    assert_eq!(model["base_model_id"], "tiny");
    app.model_until(&admin, &id, |m| m["version"] == 1).await;
    let response = app.post("/api/models", Some(&admin), body).await;
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["version"], 2, "the same name again is the next version");

    // Tested on the records its training held out (20% of 20): exactly those, never the ones it learned.
    let finished: Value = app.get(&format!("/api/training/tasks/{task}"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(finished["result"]["eval_examples"], 4, "{finished}");
    let listed = app.settings.data_dir.join(finished["result"]["eval_records_path"].as_str().unwrap());
    let listed: Value = serde_json::from_slice(&std::fs::read(listed).unwrap()).unwrap();
    let held: Vec<usize> = listed["records"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect();
    assert_eq!(held.len(), 4);
    let faq =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/faq.jsonl")).unwrap();
    let lines: Vec<&str> = faq.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut expected: Vec<String> = held
        .iter()
        .map(|&i| serde_json::from_str::<Value>(lines[i]).unwrap())
        .map(|r| {
            let user =
                r["messages"].as_array().and_then(|m| m.iter().find(|m| m["role"] == "user")).map(|m| &m["content"]);
            user.or(r.get("question")).or(r.get("instruction")).and_then(Value::as_str).unwrap().to_owned()
        })
        .collect();
    let response = app.post(&format!("/api/models/{id}/test"), Some(&admin), json!({"split": "eval"})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let tested = app.model_until(&admin, &id, |m| m["accuracy"].is_number()).await;
    let mut asked: Vec<String> = tested["test_report"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["question"].as_str().unwrap().to_owned())
        .collect();
    asked.sort();
    expected.sort();
    assert_eq!(asked, expected, "the held-out questions, no others");
    // Bad splits: an unknown one; a model not trained here has none.
    let response = app.post(&format!("/api/models/{id}/test"), Some(&admin), json!({"split": "train"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let installed = app.post("/api/models", Some(&admin), json!({"name": "plain", "base_model_id": "tiny"})).await;
    let installed = installed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.model_until(&admin, &installed, |m| m["status"] == "ready").await;
    let response = app.post(&format!("/api/models/{installed}/test"), Some(&admin), json!({"split": "eval"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(response).await, "no_eval_split");
}

#[tokio::test]
async fn bad_model_and_question_requests_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let (_, user) = app.create_user(&admin, "asker", "user").await;

    let response = app.post("/api/models", Some(&user), json!({"name": "x", "base_model_id": "tiny"})).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "users do not register models");
    let cases = [
        (json!({"name": "x"}), "validation_failed"),
        (json!({"name": "x", "base_model_id": "tiny", "training_task_id": uuid::Uuid::new_v4()}), "validation_failed"),
        (json!({"name": "x", "training_task_id": uuid::Uuid::new_v4()}), "unknown_training_task"),
        (json!({"name": "x", "base_model_id": "nope"}), "unknown_base_model"),
        (json!({"name": "x", "base_model_id": "../tiny"}), "validation_failed"),
        (json!({"name": " ", "base_model_id": "tiny"}), "validation_failed"),
        (json!({"name": "x", "base_model_id": "tiny", "extra": true}), "invalid_body"),
    ];
    for (body, code) in cases {
        let response = app.post("/api/models", Some(&admin), body.clone()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_code(response).await, code, "{body}");
    }
    let unknown = uuid::Uuid::new_v4();
    let response = app.post(&format!("/api/models/{unknown}/deploy"), Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let (status, body) = app.ask(&user, json!({"question": "Hi?"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("no_deployed_model")));
    let model = app.deployed_tiny(&admin).await;
    let response = app.post(&format!("/api/models/{model}/test"), Some(&admin), json!({"cases": []})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for (body, field) in [
        (json!({"question": "  "}), Some("question")),
        (json!({"question": "x".repeat(4001)}), Some("question")),
        (json!({"question": "Hi?", "max_new_tokens": 0}), Some("max_new_tokens")),
        (json!({"question": "Hi?", "temperature": 3.0}), Some("temperature")),
        (json!({"question": "Hi?", "wait_secs": 500}), Some("wait_secs")),
        (json!({"question": "Hi?", "model_id": uuid::Uuid::new_v4()}), Some("model_id")),
        (json!({"question": "Hi?", "mood": "happy"}), None),
    ] {
        let (status, error) = app.ask(&user, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        if let Some(field) = field {
            assert_eq!(error["error"]["details"]["field"], field, "{body}: {error}");
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'QaSession'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "refused questions record nothing");
}

#[tokio::test]
async fn a_model_is_tested_on_a_dataset_and_its_adapter_downloads() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, created) = app.create_task(&admin, &dataset, json!({"max_steps": 2}), true).await;
    let task = created["id"].as_str().unwrap().to_owned();
    let adapter = format!("/api/training/tasks/{task}/adapter/adapter_config.json");
    app.task_until(&admin, &task, 120, |t| t["status"] == "completed").await;
    let config = app.get(&adapter, Some(&admin)).await;
    assert_eq!(config.status(), StatusCode::OK);
    let config: Value = config.json().await.unwrap();
    assert_eq!((config["peft_type"].as_str(), config["r"].as_u64()), (Some("LORA"), Some(8)));
    let weights = app.get(&format!("/api/training/tasks/{task}/adapter/adapter_model.safetensors"), Some(&admin)).await;
    assert_eq!(weights.status(), StatusCode::OK);
    let bytes = weights.bytes().await.unwrap();
    let on_disk =
        std::fs::read(app.settings.data_dir.join("training").join(&task).join("adapter/adapter_model.safetensors"))
            .unwrap();
    assert_eq!(bytes.as_ref(), on_disk.as_slice(), "the stored adapter, byte for byte");
    for bad in ["../data", "model.onnx"] {
        assert_eq!(
            app.get(&format!("/api/training/tasks/{task}/adapter/{bad}"), Some(&admin)).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    let response = app.post("/api/models", Some(&admin), json!({"name": "faq bot", "training_task_id": task})).await;
    let model = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.model_until(&admin, &model, |m| m["status"] == "ready").await;
    let body = json!({"dataset_id": dataset, "limit": 5});
    let response = app.post(&format!("/api/models/{model}/test"), Some(&admin), body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let tested = app.model_until(&admin, &model, |m| m["accuracy"].is_number()).await;
    let cases = tested["test_report"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5, "{tested}");
    assert_eq!(cases[0]["question"], "What is Bonsai?", "the dataset's first question");
    assert_eq!(cases[0]["expected"], "Bonsai is our platform for training and serving small language models.");
    let correct = cases.iter().filter(|c| c["correct"] == true).count() as f64;
    assert_eq!(tested["accuracy"].as_f64().unwrap(), correct / 5.0);
    let both = json!({"dataset_id": dataset, "cases": [{"question": "q", "expected": "a"}]});
    let response = app.post(&format!("/api/models/{model}/test"), Some(&admin), both).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let named: Value = app.get("/api/models?name=faq%20bot", Some(&admin)).await.json().await.unwrap();
    assert_eq!(named["total"], 1);
    let other: Value = app.get("/api/models?name=nothing", Some(&admin)).await.json().await.unwrap();
    assert_eq!(other["total"], 0);
}

#[tokio::test]
async fn answers_are_cached_in_memory_when_redis_is_unreachable() {
    let mut settings = test_settings();
    settings.redis_url = "redis://127.0.0.1:1".into();
    let app = TestApp::spawn_with(settings).await;
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["redis"], "degraded", "no Redis at start: the node runs without it meanwhile: {ready}");
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let ask = json!({"question": "Who can create training tasks?", "max_new_tokens": 6});
    let (status, first) = app.ask(&admin, ask.clone()).await;
    assert_eq!((status, first["cached"].as_bool()), (StatusCode::OK, Some(false)), "{first}");
    let (status, again) = app.ask(&admin, ask).await;
    assert_eq!((status, again["cached"].as_bool()), (StatusCode::OK, Some(true)), "{again}");
    assert_eq!(again["answer"], first["answer"]);
}

/// The platform's promise end to end: a task trained on the demo FAQ through the API, registered, exported
/// and deployed, answers the FAQ's questions with its answers (scored by the model test on the dataset).
#[tokio::test]
async fn a_model_trained_on_the_faq_answers_its_questions() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    // Full-batch steps on all 20 pairs, every linear layer (as the ML memorisation test does).
    let config = json!({"rank": 16, "alpha": 32, "targets": ["all"], "learning_rate": 3e-3, "epochs": 400,
        "batch_size": 20, "warmup_steps": 20, "max_seq_len": 96, "checkpoint_every": 0, "seed": 0});
    let (status, created) = app.create_task(&admin, &dataset, config, true).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let task = created["id"].as_str().unwrap().to_owned();
    let done = app.task_until(&admin, &task, 600, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    let response = app.post("/api/models", Some(&admin), json!({"name": "faq bot", "training_task_id": task})).await;
    let model = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    app.model_until(&admin, &model, |m| m["status"] == "ready").await;
    let response =
        app.post(&format!("/api/models/{model}/test"), Some(&admin), json!({"dataset_id": dataset, "limit": 20})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let tested = app.model_until(&admin, &model, |m| m["accuracy"].is_number()).await;
    let accuracy = tested["accuracy"].as_f64().unwrap();
    eprintln!("FAQ accuracy after training through the platform: {accuracy} ({})", done["result"]);
    assert!(accuracy >= 0.9, "{tested}");

    app.post(&format!("/api/models/{model}/deploy"), Some(&admin), json!({})).await;
    app.model_until(&admin, &model, |m| m["deployed"] == true).await;
    let (status, answer) =
        app.ask(&admin, json!({"question": "Who can create training tasks?", "max_new_tokens": 40})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["answer"], "Admins and trainers can create training tasks.", "{answer}");
}

#[tokio::test]
async fn a_user_deletes_their_whole_history_and_an_admin_erases_a_users_history_on_request() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    app.deployed_tiny(&admin).await;
    let (_, user) = app.create_user(&admin, "asker", "user").await;
    let (other_id, other) = app.create_user(&admin, "other", "user").await;
    let mut asked = Vec::new();
    for (token, question) in [(&user, "first talk"), (&user, "second talk"), (&other, "their talk")] {
        let (status, body) = app.ask(token, json!({"question": question, "max_new_tokens": 3})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        asked.push(body["question_id"].as_str().unwrap().to_owned());
    }
    let total = |token: &str| {
        let token = token.to_owned();
        let app = &app;
        async move {
            let page: Value = app.get("/api/qa/history", Some(&token)).await.json().await.unwrap();
            page["total"].as_i64().unwrap()
        }
    };

    // The caller's own history: both conversations, not the other user's.
    let response = app.delete("/api/qa/history", Some(&user)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["conversations"], 2);
    eventually(|| async { total(&user).await == 0 }).await;
    assert_eq!(erased_keys(&app, &asked).await, [true, true, false]);
    assert_eq!(total(&other).await, 1);
    let response = app.delete("/api/qa/history", Some(&user)).await;
    assert_eq!(response.json::<Value>().await.unwrap()["conversations"], 0, "nothing left to delete");

    // An admin erases another user's history; nobody else may, and an unknown user is a 404.
    let path = format!("/api/users/{other_id}/qa-history");
    let response = app.delete(&path, Some(&user)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let unknown = format!("/api/users/{}/qa-history", uuid::Uuid::new_v4());
    assert_eq!(app.delete(&unknown, Some(&admin)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(total(&other).await, 1, "refused requests change nothing");
    let response = app.delete(&path, Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["conversations"], 1);
    eventually(|| async { total(&other).await == 0 }).await;
    assert_eq!(erased_keys(&app, &asked).await, [true, true, true]);
    // The audit log names the admin as the one who cleared it.
    let session: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'QuestionAsked' AND payload->'QuestionAsked'->>'question_id' = $1",
    )
    .bind(&asked[2])
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let audit: Value = app.get(&format!("/api/audit/QaSession/{session}"), Some(&admin)).await.json().await.unwrap();
    let cleared = audit.as_array().unwrap().iter().find(|e| e["event_type"] == "HistoryCleared").expect("cleared");
    let admin_id: Value = app.get("/api/users/profile", Some(&admin)).await.json().await.unwrap();
    assert_eq!(cleared["metadata"]["actor"], admin_id["id"], "{cleared}");
}
