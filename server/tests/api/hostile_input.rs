//! Hostile input (issue 16, item 7): an oversized JSON body is 413 with the limit, a negative audit cursor
//! is 422, and the OpenAPI document states the rules the handlers enforce.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn a_json_body_over_the_limit_is_413_with_the_limit() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let big = format!("{{\"question\": \"{}\"}}", "a".repeat(50 << 20));
    let response = app
        .client
        .post(app.url("/api/qa/ask"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    // The server may close the connection while the client is still sending; an answer, if any, is 413.
    if let Ok(response) = response {
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "body_too_large");
        assert_eq!(body["error"]["details"]["limit_bytes"], 2 << 20);
    }
    // Just over the limit, small enough to be sent whole: always answered.
    let over = format!("{{\"question\": \"{}\"}}", "a".repeat((2 << 20) + 10));
    let response = app
        .client
        .post(app.url("/api/users"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(over)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["details"]["limit_bytes"].as_u64()),
        (Some("body_too_large"), Some(2 << 20))
    );
}

#[tokio::test]
async fn a_negative_audit_cursor_is_422() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let response = app.get("/api/audit/events?after=-1", Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["details"]["field"].as_str()),
        (Some("validation_failed"), Some("after"))
    );
    assert_eq!(app.get("/api/audit/events?after=0", Some(&admin)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_document_states_the_rules_the_handlers_enforce() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/api/openapi.json", None).await.json().await.unwrap();
    let schema = |name: &str| doc["components"]["schemas"][name]["properties"].clone();
    let user = schema("CreateUserRequest");
    assert_eq!((user["username"]["minLength"].as_u64(), user["username"]["maxLength"].as_u64()), (Some(3), Some(50)));
    assert_eq!((user["password"]["minLength"].as_u64(), user["password"]["maxLength"].as_u64()), (Some(8), Some(128)));
    let ask = schema("AskRequest");
    assert_eq!(ask["question"]["maxLength"].as_u64(), Some(4000));
    assert_eq!(ask["wait_secs"]["maximum"].as_f64(), Some(120.0));
    assert_eq!(schema("CreateTaskRequest")["name"]["maxLength"].as_u64(), Some(100));
    assert_eq!(schema("AlertAction")["note"]["maxLength"].as_u64(), Some(1000));
    let audit = &doc["paths"]["/api/audit/events"]["get"];
    let after = audit["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "after").unwrap();
    assert_eq!(after["schema"]["minimum"].as_f64(), Some(0.0), "{after}");
    // Every error answer has the one shape; every signed-in POST takes an Idempotency-Key.
    assert_eq!(
        audit["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let upload = &doc["paths"]["/api/data/upload"]["post"]["parameters"];
    assert!(
        upload.as_array().unwrap().iter().any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
        "{upload}"
    );
}
