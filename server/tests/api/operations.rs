//! Running Bonsai as several nodes and watching it (docs/operations.md): nodes with roles (`--role api|workers`)
//! that meet only through PostgreSQL and NATS, and the `/metrics` figures the Prometheus rules alert on (the
//! relay's backlog, whether each dependency answers, the host's CPU).

use crate::helpers::*;
use bonsai_server::settings::NodeRole;
use reqwest::StatusCode;
use serde_json::json;

/// The value of the series that `series` (name and labels, as exposed) names in `metrics`.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_question_asked_on_an_api_node_is_answered_by_a_worker_node() {
    let mut settings = test_settings();
    settings.role = NodeRole::Api;
    let api = TestApp::spawn_with(settings.clone()).await;
    settings.role = NodeRole::Workers;
    let worker = TestApp::spawn_with(settings).await;

    // The worker node answers health checks and scrapes, not the API.
    assert_eq!(worker.get("/api/models", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(worker.get("/readyz", None).await.status(), StatusCode::OK);

    // Validation, export and answering all happen on the worker node: the API node runs none of them.
    let admin = api.admin_token().await;
    api.training_fixture(&admin).await;
    let model = api.deployed_tiny(&admin).await;
    let (_, user) = api.create_user(&admin, "asker", "user").await;
    let (status, answer) = api.ask(&user, json!({"question": "What is Bonsai?", "max_new_tokens": 6})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["status"].as_str(), answer["model_id"].as_str()), (Some("answered"), Some(model.as_str())));
    assert!(!answer["answer"].as_str().unwrap_or_default().is_empty(), "{answer}");
    // The model is loaded where the answer was made.
    assert_eq!(value(&metrics(&worker).await, "bonsai_serving_models_loaded"), Some(1.0));
    assert_eq!(value(&metrics(&api).await, "bonsai_serving_models_loaded"), Some(0.0));

    worker.stop().await.unwrap();
    api.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_the_events_no_relay_has_published_and_say_which_dependencies_answer() {
    // A worker node alone: it runs no relay, so the first admin's registration stays unpublished.
    let mut settings = test_settings();
    settings.role = NodeRole::Workers;
    let worker = TestApp::spawn_with(settings.clone()).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&worker.pool).await.unwrap();
    assert!(stored > 0);
    let scraped = metrics(&worker).await;
    assert_eq!(value(&scraped, "bonsai_relay_lag_events"), Some(stored as f64), "{scraped}");
    for dependency in ["postgresql", "nats", "redis"] {
        let series = format!("bonsai_dependency_up{{dependency=\"{dependency}\"}}");
        assert_eq!(value(&scraped, &series), Some(1.0), "{series} in {scraped}");
    }
    assert!(value(&scraped, "bonsai_host_cpu_seconds_total{mode=\"busy\"}").is_some_and(|s| s > 0.0), "{scraped}");
    assert!(value(&scraped, "bonsai_host_cpus").is_some_and(|n| n >= 1.0));
    assert_eq!(value(&scraped, "bonsai_qa_answers{cached=\"true\"}"), Some(0.0));

    // An API node joins and its relay publishes the backlog.
    settings.role = NodeRole::Api;
    let api = TestApp::spawn_with(settings).await;
    eventually(|| async { value(&metrics(&worker).await, "bonsai_relay_lag_events") == Some(0.0) }).await;

    api.stop().await.unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn repeated_server_errors_and_a_panic_raise_alerts_that_admins_see() {
    let mut settings = test_settings();
    settings.alerts.check_every_secs = 0.2;
    settings.alerts.server_errors = 3;
    // Counted over a window much longer than the check period: the three errors may straddle checks.
    settings.alerts.server_errors_window_secs = 5.0;
    settings.alerts.node_name = Some("ops-node".into());
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;

    // The datasets view is away: listing datasets fails with 500, three times in a row.
    sqlx::query("ALTER TABLE datasets_view RENAME TO datasets_view_away").execute(&app.pool).await.unwrap();
    for _ in 0..3 {
        let response = app.get("/api/data/datasets", Some(&admin)).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let open = |page: &serde_json::Value| {
        page["items"].as_array().unwrap().iter().any(|a| a["subject"] == "node/ops-node/http" && a["status"] == "open")
    };
    let page = app.alerts_until(&admin, "?kind=server_errors", open).await;
    let alert = &page["items"][0];
    assert_eq!((alert["severity"].as_str(), alert["details"]["server_errors"].as_u64()), (Some("critical"), Some(3)));
    // Back, and a window without a server error resolves it.
    sqlx::query("ALTER TABLE datasets_view_away RENAME TO datasets_view").execute(&app.pool).await.unwrap();
    assert_eq!(app.get("/api/data/datasets", Some(&admin)).await.status(), StatusCode::OK);
    app.alerts_until(&admin, "?kind=server_errors", |page| page["items"][0]["status"] == "resolved").await;

    // A panic anywhere in the process (here a thread of its own) is raised with its message and place. (Another
    // test's node with checks on may take a panic first: it panics until this node has raised one.)
    let message = format!("ops test panic {}", uuid::Uuid::new_v4());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let said = message.clone();
        let _ = std::thread::spawn(move || panic!("{said}")).join();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let page: serde_json::Value = app.get("/api/alerts?kind=panic", Some(&admin)).await.json().await.unwrap();
        let raised = page["items"].as_array().unwrap().iter().find(|a| a["details"]["message"] == message.as_str());
        if let Some(alert) = raised {
            assert_eq!((alert["severity"].as_str(), alert["status"].as_str()), (Some("critical"), Some("open")));
            assert!(alert["details"]["place"].as_str().unwrap().contains("operations.rs"), "{alert}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no panic alert: {page}");
    }
    app.stop().await.unwrap();
}
