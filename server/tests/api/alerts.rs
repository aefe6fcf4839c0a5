//! Alerts end to end (design 6.3): the alert worker raises them from events (a failed training run, a
//! model test whose accuracy drops) and from resource checks; people see, acknowledge and resolve them
//! over HTTP, by role; conditions that clear resolve their alerts; everything is in the audit log.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

impl TestApp {
    /// The alerts `token` sees with `query`, once `done` holds for the page.
    pub async fn alerts_until(&self, token: &str, query: &str, done: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/api/alerts{query}");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let response = self.get(&path, Some(token)).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let page: Value = response.json().await.unwrap();
            if done(&page) {
                return page;
            }
            assert!(tokio::time::Instant::now() < deadline, "alerts never matched: {page}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn alert_action(&self, token: &str, id: &str, action: &str, body: Value) -> (StatusCode, Value) {
        let response = self.post(&format!("/api/alerts/{id}/{action}"), Some(token), body).await;
        (response.status(), response.json().await.unwrap())
    }
}

fn total(page: &Value) -> i64 {
    page["total"].as_i64().unwrap()
}

#[tokio::test]
async fn a_failed_training_run_raises_an_alert_its_owner_acknowledges_and_resolves() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (trainer_id, trainer) = app.create_user(&admin, "trainer", "trainer").await;
    let (_, other) = app.create_user(&admin, "other", "trainer").await;
    let (_, user) = app.create_user(&admin, "asker", "user").await;
    let dataset = app.training_fixture(&trainer).await;
    let (status, created) = app.create_task(&trainer, &dataset, json!({"max_steps": 2}), false).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let task = created["id"].as_str().unwrap().to_owned();
    std::fs::remove_dir_all(app.settings.models_dir().join("tiny")).unwrap();
    app.task_command(&trainer, &task, "start").await;

    let page = app.alerts_until(&trainer, "", |p| total(p) == 1).await;
    let alert = &page["items"][0];
    assert_eq!(
        (alert["kind"].as_str(), alert["severity"].as_str(), alert["status"].as_str()),
        (Some("training_failed"), Some("warning"), Some("open"))
    );
    assert_eq!(alert["subject"], format!("TrainingTask/{task}"));
    assert_eq!(alert["owner_id"], trainer_id.as_str());
    assert_eq!(
        (alert["details"]["code"].as_str(), alert["details"]["attempt"].as_u64()),
        (Some("base_model_missing"), Some(1))
    );
    assert!(alert["message"].as_str().unwrap().contains("faq bot"), "{alert}");
    let id = alert["id"].as_str().unwrap().to_owned();

    // Who sees it: its owner and admins; another trainer neither lists nor acts on it; users may not ask.
    assert_eq!(total(&app.alerts_until(&admin, "", |_| true).await), 1);
    assert_eq!(total(&app.alerts_until(&other, "", |_| true).await), 0);
    assert_eq!(app.get(&format!("/api/alerts/{id}"), Some(&other)).await.status(), StatusCode::NOT_FOUND);
    let (status, _) = app.alert_action(&other, &id, "acknowledge", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/alerts", Some(&user)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/alerts", None).await.status(), StatusCode::UNAUTHORIZED);

    // A second run fails too: a second alert (one per run).
    app.task_command(&trainer, &task, "start").await;
    let page = app.alerts_until(&trainer, "?kind=training_failed", |p| total(p) == 2).await;
    assert_eq!(page["items"][0]["details"]["attempt"], 2, "most recent first");

    // Bad requests change nothing.
    for (query, field) in [("?status=firing", "status"), ("?severity=loud", "severity")] {
        let response = app.get(&format!("/api/alerts{query}"), Some(&admin)).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["details"]["field"], field);
    }
    assert_eq!(app.get("/api/alerts?bogus=1", Some(&admin)).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/api/alerts/not-an-id", Some(&admin)).await.status(), StatusCode::BAD_REQUEST);
    let unknown = uuid::Uuid::now_v7();
    let (status, body) = app.alert_action(&admin, &unknown.to_string(), "resolve", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let long = "x".repeat(1001);
    let (status, body) = app.alert_action(&trainer, &id, "acknowledge", json!({"note": long})).await;
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("note")));
    let (status, _) = app.alert_action(&trainer, &id, "acknowledge", json!({"notes": "typo"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Acknowledge (twice: no change), resolve, and a resolved alert can be neither again.
    let (status, acked) = app.alert_action(&trainer, &id, "acknowledge", json!({"note": "reinstalling tiny"})).await;
    assert_eq!((status, acked["status"].as_str()), (StatusCode::OK, Some("acknowledged")), "{acked}");
    let (status, again) = app.alert_action(&trainer, &id, "acknowledge", json!({})).await;
    assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("acknowledged")));
    let (status, resolved) = app.alert_action(&admin, &id, "resolve", json!({"note": "model restored"})).await;
    assert_eq!((status, resolved["status"].as_str()), (StatusCode::OK, Some("resolved")));
    for action in ["resolve", "acknowledge"] {
        let (status, body) = app.alert_action(&trainer, &id, action, json!({})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_state")), "{action}");
    }
    let page = app.alerts_until(&trainer, "?status=resolved", |p| total(p) == 1).await;
    let done = &page["items"][0];
    assert_eq!(
        (done["id"].as_str(), done["acknowledge_note"].as_str()),
        (Some(id.as_str()), Some("reinstalling tiny"))
    );
    assert_eq!(done["resolve_note"], "model restored");
    assert_eq!(done["acknowledged_by"], trainer_id.as_str());
    assert_eq!(total(&app.alerts_until(&trainer, "?status=active", |_| true).await), 1);

    // Monitoring counts the active one; the audit log has the whole story; a rebuilt view agrees.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("bonsai_alerts_active{kind=\"training_failed\",severity=\"warning\"} 1"), "{metrics}");
    let history = bonsai_projections::log::aggregate_history(&app.pool, "Alert", &id).await.unwrap();
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["AlertRaised", "AlertAcknowledged", "AlertResolved"]);
    let rows = bonsai_projections::alerts::all_rows(&app.pool).await.unwrap();
    bonsai_projections::rebuild(&app.pool, &bonsai_projections::alerts::AlertsProjection).await.unwrap();
    assert_eq!(bonsai_projections::alerts::all_rows(&app.pool).await.unwrap(), rows);
}

#[tokio::test]
async fn a_test_whose_accuracy_drops_raises_an_alert_that_a_better_test_resolves() {
    let mut settings = test_settings();
    settings.alerts.min_accuracy = Some(0.9);
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    app.training_fixture(&admin).await;
    let model = app.deployed_tiny(&admin).await;
    // The model's own greedy answer is what a correct case expects (tests answer with 64 tokens).
    let (_, asked) = app.ask(&admin, json!({"question": "What is Bonsai?", "max_new_tokens": 64})).await;
    let answer = asked["answer"].as_str().unwrap().to_owned();
    let test = |expected: &str| json!({"cases": [{"question": "What is Bonsai?", "expected": expected}]});
    let mut tests = 0;
    let mut run_test = |expected: String| {
        tests += 1;
        let (app, model, admin, n) = (&app, &model, &admin, tests);
        async move {
            let response = app.post(&format!("/api/models/{model}/test"), Some(admin), test(&expected)).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let path = format!("/api/audit/Model/{model}");
            crate::helpers::eventually(|| async {
                let events: Value = app.get(&path, Some(admin)).await.json().await.unwrap();
                events.as_array().unwrap().iter().filter(|e| e["event_type"] == "ModelTested").count() == n
            })
            .await;
        }
    };

    run_test(answer.clone()).await;
    run_test("zzz never said".into()).await;
    let page = app.alerts_until(&admin, "?status=open", |p| total(p) == 2).await;
    let by_kind = |kind: &str| page["items"].as_array().unwrap().iter().find(|a| a["kind"] == kind).unwrap().clone();
    let drop = by_kind("accuracy_drop");
    assert_eq!(drop["severity"], "critical", "the model is deployed: {drop}");
    assert_eq!((drop["details"]["baseline"].as_f64(), drop["details"]["accuracy"].as_f64()), (Some(1.0), Some(0.0)));
    assert_eq!(drop["subject"], format!("Model/{model}"));
    let minimum = by_kind("accuracy_below_minimum");
    assert_eq!(minimum["details"]["minimum"], 0.9);

    // A test that scores well again resolves both, by itself.
    run_test(answer).await;
    let page = app.alerts_until(&admin, "?status=resolved", |p| total(p) == 2).await;
    for alert in page["items"].as_array().unwrap() {
        assert_eq!(
            (alert["resolved_by"].as_str(), alert["resolve_note"].as_str()),
            (None, Some("a later test scored 1.000"))
        );
    }
    assert_eq!(total(&app.alerts_until(&admin, "?status=active", |_| true).await), 0);
}

#[tokio::test]
async fn a_resource_over_its_threshold_raises_one_alert_until_it_clears() {
    let mut settings = test_settings();
    settings.alerts.check_every_secs = 0.1;
    settings.alerts.disk_used_ratio = 0.0; // any disk is over it
    settings.alerts.memory_used_ratio = 1.5; // never
    settings.alerts.node_name = Some("node-a".into());
    let app = TestApp::spawn_with(settings.clone()).await;
    let admin = app.admin_token().await;
    let page = app.alerts_until(&admin, "?kind=disk_space_low", |p| total(p) == 1).await;
    let alert = page["items"][0].clone();
    assert_eq!(
        (alert["severity"].as_str(), alert["subject"].as_str(), alert["recurring"].as_bool()),
        (Some("critical"), Some("node/node-a/disk"), Some(true))
    );
    let ratio = alert["details"]["used_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ratio) && alert["details"]["total_bytes"].as_u64() > Some(0), "{alert}");
    assert_eq!(alert["owner_id"], Value::Null, "a platform alert: admins only");
    // Checks go on every 100 ms; the alert is raised once while the condition lasts.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let raised = bonsai_projections::log::aggregate_history(&app.pool, "Alert", &id).await.unwrap();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(total(&app.alerts_until(&admin, "", |_| true).await), 1, "no memory alert over 150%");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("bonsai_data_disk_used_ratio ") && metrics.contains("bonsai_host_memory_used_ratio "));

    // The same node back with a threshold the disk is well under: the alert resolves by itself.
    app.stop().await.unwrap();
    settings.alerts.disk_used_ratio = 1.5;
    let restarted = TestApp::spawn_with(settings).await;
    let admin = restarted.admin_token().await;
    let page = restarted.alerts_until(&admin, "?status=resolved", |p| total(p) == 1).await;
    assert_eq!(page["items"][0]["id"], id.as_str());
    assert_eq!(page["items"][0]["resolved_by"], Value::Null);
    assert!(page["items"][0]["resolve_note"].as_str().unwrap().starts_with("back to "), "{page}");
}

#[tokio::test]
async fn memory_over_its_threshold_raises_a_warning_for_admins() {
    let mut settings = test_settings();
    settings.alerts.check_every_secs = 0.1;
    settings.alerts.disk_used_ratio = 1.5; // never
    settings.alerts.memory_used_ratio = 0.0; // any host is over it
    settings.alerts.node_name = Some("node-m".into());
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let page = app.alerts_until(&admin, "?kind=memory_high", |p| total(p) == 1).await;
    let alert = &page["items"][0];
    assert_eq!(
        (alert["severity"].as_str(), alert["subject"].as_str(), alert["status"].as_str()),
        (Some("warning"), Some("node/node-m/memory"), Some("open")),
        "{alert}"
    );
    let ratio = alert["details"]["used_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0 && alert["details"]["total_bytes"].as_u64() > Some(0), "{alert}");
    assert_eq!(alert["details"]["threshold"], 0.0);
    // Only admins see platform alerts (a trainer sees the alerts of their own work).
    let (_, trainer) = app.create_user(&admin, "mia", "trainer").await;
    let theirs: Value = app.get("/api/alerts?kind=memory_high", Some(&trainer)).await.json().await.unwrap();
    assert_eq!(total(&theirs), 0, "{theirs}");
}

#[tokio::test]
async fn a_model_whose_export_fails_raises_an_alert_for_its_registrant() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, trainer) = app.create_user(&admin, "tom", "trainer").await;
    // An installed model whose weights file is damaged: it registers, but cannot be exported.
    let dir = app.settings.models_dir().join("damaged");
    bonsai_ml::tiny::init_tiny(&dir, &bonsai_ml::tiny::TinySpec::default(), None).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let response =
        app.post("/api/models", Some(&trainer), json!({"name": "damaged bot", "base_model_id": "damaged"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let model = app.model_until(&trainer, &id, |m| m["status"] != "exporting").await;
    assert_eq!(model["status"], "failed", "{model}");

    let page = app.alerts_until(&trainer, "?kind=model_export_failed", |p| total(p) == 1).await;
    let alert = &page["items"][0];
    assert_eq!(
        (alert["severity"].as_str(), alert["subject"].as_str(), alert["recurring"].as_bool()),
        (Some("warning"), Some(format!("Model/{id}").as_str()), Some(false)),
        "{alert}"
    );
    assert_eq!(alert["details"]["code"], "export_failed", "{alert}");
    assert!(alert["message"].as_str().unwrap().contains("damaged bot"), "{alert}");
    // The registrant's alert: the admin sees it too, another trainer does not.
    assert_eq!(total(&app.alerts_until(&admin, "?kind=model_export_failed", |_| true).await), 1);
    let (_, other) = app.create_user(&admin, "tess", "trainer").await;
    assert_eq!(total(&app.alerts_until(&other, "?kind=model_export_failed", |_| true).await), 0);
}

/// A webhook receiver: answers 503 to the first delivery and 200 after; keeps (status answered, headers,
/// body) of every delivery.
type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(u16, axum::http::HeaderMap, Value)>>>;

async fn webhook_receiver() -> (String, Deliveries) {
    use axum::routing::post;
    let deliveries: Deliveries = Default::default();
    let kept = deliveries.clone();
    let router = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let mut kept = kept.lock().unwrap();
                let status = if kept.is_empty() { 503 } else { 200 };
                kept.push((status, headers, serde_json::from_slice(&body).unwrap()));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, deliveries)
}

#[tokio::test]
async fn alerts_are_posted_to_a_signed_webhook_until_it_takes_them() {
    use hmac::Mac;
    let (url, deliveries) = webhook_receiver().await;
    let mut settings = test_settings();
    settings.alerts.webhook_url = Some(url);
    settings.alerts.webhook_secret = Some(bonsai_server::settings::Secret::new("hook-secret"));
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let dataset = app.training_fixture(&admin).await;
    let (_, created) = app.create_task(&admin, &dataset, json!({"max_steps": 2}), false).await;
    let task = created["id"].as_str().unwrap().to_owned();
    std::fs::remove_dir_all(app.settings.models_dir().join("tiny")).unwrap();
    app.task_command(&admin, &task, "start").await;
    let page = app.alerts_until(&admin, "", |p| total(p) == 1).await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = app.alert_action(&admin, &id, "acknowledge", json!({"note": "on it"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.alert_action(&admin, &id, "resolve", json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let delivered = || deliveries.lock().unwrap().iter().filter(|d| d.0 == 200).count();
    crate::helpers::eventually(|| async { delivered() == 3 }).await;
    let deliveries = deliveries.lock().unwrap().clone();
    // The receiver was down for the first delivery: the same notification came again.
    assert_eq!(deliveries[0].0, 503);
    assert_eq!(deliveries[0].1["bonsai-delivery"], deliveries[1].1["bonsai-delivery"]);
    let taken: Vec<&(u16, axum::http::HeaderMap, Value)> = deliveries.iter().filter(|d| d.0 == 200).collect();
    let events: Vec<&str> = taken.iter().map(|d| d.2["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["raised", "acknowledged", "resolved"], "in order");
    let raised = &taken[0].2;
    assert_eq!((raised["alert_id"].as_str(), raised["kind"].as_str()), (Some(id.as_str()), Some("training_failed")));
    assert!(raised["text"].as_str().unwrap().starts_with("[WARNING] training_failed raised: "), "{raised}");
    assert_eq!((taken[1].2["note"].as_str(), taken[2].2["status"].as_str()), (Some("on it"), Some("resolved")));
    for (_, headers, body) in &taken {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").unwrap();
        mac.update(&serde_json::to_vec(body).unwrap());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(headers["bonsai-signature"].to_str().unwrap(), expected);
    }
}
