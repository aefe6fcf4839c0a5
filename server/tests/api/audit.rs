use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn the_audit_log_lists_every_event_in_order_with_metadata_and_no_password_hashes() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let me: Value = app.get("/api/users/profile", Some(&admin)).await.json().await.unwrap();
    let response = app
        .client
        .post(app.url("/api/users"))
        .bearer_auth(&admin)
        .header("x-request-id", "req-audit-1")
        .json(&json!({"username": "lena", "email": "lena@example.com", "password": "lena-password", "role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let lena: Value = response.json().await.unwrap();

    // The log shows events once every older transaction has ended (commit order is then final),
    // which can trail the commit by a moment.
    let lena_id = lena["id"].as_str().unwrap().to_owned();
    eventually(|| async {
        let text = app.get("/api/audit/events?limit=1000", Some(&admin)).await.text().await.unwrap();
        text.contains(&lena_id)
    })
    .await;
    let response = app.get("/api/audit/events?limit=1000", Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains("$argon2"), "no password hash leaves the store");
    let page: Value = serde_json::from_str(&text).unwrap();
    let events = page["events"].as_array().unwrap();
    let registered = events
        .iter()
        .find(|e| e["event_type"] == "UserRegistered" && e["aggregate_id"] == lena["id"])
        .expect("lena's registration is in the log");
    assert_eq!(registered["metadata"]["correlation_id"], "req-audit-1");
    assert_eq!(registered["metadata"]["actor"], me["id"]);
    assert_eq!(registered["payload"]["UserRegistered"]["password_hash"], "[redacted]");
    assert_eq!(registered["event_version"], "1");
    assert!(registered["recorded_at"].is_string());

    // Paging with `after` walks the same log.
    let first: Value = app.get("/api/audit/events?limit=1", Some(&admin)).await.json().await.unwrap();
    let after = first["next_after"].as_i64().expect("a next page exists");
    let rest: Value =
        app.get(&format!("/api/audit/events?after={after}&limit=1000"), Some(&admin)).await.json().await.unwrap();
    assert_eq!(rest["events"].as_array().unwrap().len(), events.len() - 1);
    assert_eq!(rest["events"][0]["position"], events[1]["position"]);

    let history: Vec<Value> =
        app.get(&format!("/api/audit/User/{}", lena["id"].as_str().unwrap()), Some(&admin)).await.json().await.unwrap();
    assert_eq!(history[0]["event_type"], "UserRegistered");
    assert_eq!(history[0]["sequence"], 1);
    let missing = app.get("/api/audit/User/00000000-0000-0000-0000-000000000000", Some(&admin)).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bad = app.get("/api/audit/events?limit=0", Some(&admin)).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
