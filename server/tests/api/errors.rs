use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn malformed_json_is_400_and_unknown_fields_422_never_500() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "malformed_json");

    let response =
        app.post("/api/auth/login", None, serde_json::json!({"username": "a", "password": "b", "admin": true})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_body");
    assert!(body["error"]["message"].as_str().unwrap().contains("admin"));

    let response = app.client.post(app.url("/api/auth/login")).body("username=a").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/nothing-here", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "not_found");
}

#[tokio::test]
async fn health_readiness_and_openapi_are_served() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    for path in [
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/users",
        "/api/users/{id}",
        "/api/audit/events",
        "/api/training/tasks",
        "/api/training/tasks/{id}/events",
        "/api/training/tasks/{id}/adapter/{file}",
        "/api/models/{id}/test",
        "/api/qa/ask",
        "/api/qa/history",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
    let docs = app.get("/api/docs/", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app.get("/healthz", None).await;
    assert!(!response.headers()["x-request-id"].is_empty());
}
