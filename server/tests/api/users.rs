use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn a_user_calling_an_admin_endpoint_gets_403() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, token) = app.create_user(&admin, "carol", "user").await;
    for response in [
        app.get("/api/users", Some(&token)).await,
        app.post(
            "/api/users",
            Some(&token),
            json!({"username": "x1x", "email": "x@x.io", "password": "12345678", "role": "admin"}),
        )
        .await,
        app.get("/api/audit/events", Some(&token)).await,
    ] {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_code(response).await, "forbidden");
    }
}

#[tokio::test]
async fn duplicate_usernames_and_emails_are_409() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "dave", "trainer").await;
    let again = json!({"username": "DAVE", "email": "other@example.com", "password": "password-9", "role": "user"});
    let response = app.post("/api/users", Some(&admin), again).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "username_taken");
    let same_email =
        json!({"username": "dave2", "email": "dave@example.com", "password": "password-9", "role": "user"});
    let response = app.post("/api/users", Some(&admin), same_email).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "email_taken");
}

#[tokio::test]
async fn bad_emails_passwords_and_roles_are_422_with_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for (body, field) in [
        (json!({"username": "erin", "email": "not-an-email", "password": "password-9", "role": "user"}), Some("email")),
        (
            json!({"username": "erin", "email": "erin@example.com", "password": "short", "role": "user"}),
            Some("password"),
        ),
        (
            json!({"username": "e", "email": "erin@example.com", "password": "password-9", "role": "user"}),
            Some("username"),
        ),
        (json!({"username": "erin", "email": "erin@example.com", "password": "password-9", "role": "root"}), None),
    ] {
        let response = app.post("/api/users", Some(&admin), body.clone()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = response.json().await.unwrap();
        if let Some(field) = field {
            assert_eq!(error["error"]["code"], "validation_failed");
            assert_eq!(error["error"]["details"]["field"], field);
        }
    }
    // Nothing was stored by the refused requests.
    let page: Value = app.get("/api/users", Some(&admin)).await.json().await.unwrap();
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in_and_their_tokens_stop_working() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "frank", "user").await;
    let response = app.patch(&format!("/api/users/{id}"), &admin, json!({"is_active": false})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["is_active"], false);
    eventually(|| async { app.get("/api/users/profile", Some(&token)).await.status() == StatusCode::UNAUTHORIZED })
        .await;
    let response = app.get("/api/users/profile", Some(&token)).await;
    assert_eq!(error_code(response).await, "account_disabled");
    let response = app.login("frank", "frank-password").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Reactivated, they can sign in again.
    app.patch(&format!("/api/users/{id}"), &admin, json!({"is_active": true})).await;
    assert_eq!(app.login("frank", "frank-password").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn role_changes_and_deactivation_reach_a_warm_authentication_cache_through_nats() {
    // A time limit that never runs out in a test: only the NATS notices can make the change visible.
    let mut settings = test_settings();
    settings.auth_cache_ttl_ms = 3_600_000;
    let app = TestApp::spawn_with(settings).await;
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "rita", "user").await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/users", Some(&token)).await.status(), StatusCode::FORBIDDEN, "cached as a user");
    }
    let promoted = app.patch(&format!("/api/users/{id}"), &admin, json!({"role": "admin"})).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    eventually(|| async { app.get("/api/users", Some(&token)).await.status() == StatusCode::OK }).await;
    // Her own profile changes do not invalidate anything (and need not): she stays an admin.
    let renamed = app.put("/api/users/profile", &token, json!({"display_name": "Rita"})).await;
    assert_eq!(renamed.json::<Value>().await.unwrap()["role"], "admin");
    assert_eq!(app.get("/api/users", Some(&token)).await.status(), StatusCode::OK);

    let off = app.patch(&format!("/api/users/{id}"), &admin, json!({"is_active": false})).await;
    assert_eq!(off.status(), StatusCode::OK);
    eventually(|| async { app.get("/api/users/profile", Some(&token)).await.status() == StatusCode::UNAUTHORIZED })
        .await;
    assert_eq!(error_code(app.get("/api/users", Some(&token)).await).await, "account_disabled");
}

#[tokio::test]
async fn an_admin_cannot_deactivate_or_demote_themselves() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let me: Value = app.get("/api/users/profile", Some(&admin)).await.json().await.unwrap();
    let id = me["id"].as_str().unwrap();
    let response = app.patch(&format!("/api/users/{id}"), &admin, json!({"is_active": false})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(response).await, "self_lockout");
}

#[tokio::test]
async fn users_update_their_profile_and_password() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, token) = app.create_user(&admin, "gina", "trainer").await;
    let response =
        app.put("/api/users/profile", &token, json!({"display_name": "Gina G.", "email": "gina@corp.example"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["display_name"], "Gina G.");
    assert_eq!(body["email"], "gina@corp.example");
    assert!(body.get("password_hash").is_none());
    eventually(|| async {
        let p: Value = app.get("/api/users/profile", Some(&token)).await.json().await.unwrap();
        p["display_name"] == "Gina G."
    })
    .await;

    let response = app
        .put(
            "/api/users/profile/password",
            &token,
            json!({"current_password": "wrong-one!", "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(response).await, "wrong_password");
    let response = app
        .put(
            "/api/users/profile/password",
            &token,
            json!({"current_password": "gina-password", "new_password": "short"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = app
        .put(
            "/api/users/profile/password",
            &token,
            json!({"current_password": "gina-password", "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.login("gina", "gina-password").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("gina", "new-password-1").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_user_list_is_paginated_with_a_total() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for name in ["hank", "ivy", "jack"] {
        app.create_user(&admin, name, "user").await;
    }
    let page: Value = app.get("/api/users?page=2&page_size=2", Some(&admin)).await.json().await.unwrap();
    assert_eq!(page["total"], 4);
    assert_eq!(page["page"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let response = app.get("/api/users?page=0", Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = app.get("/api/users?page=abc", Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn concurrent_profile_updates_store_every_accepted_command_once_and_never_500() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "kate", "user").await;
    let updates = (0..40).map(|i| {
        let (app, token) = (&app, &token);
        async move { app.put("/api/users/profile", token, json!({"display_name": format!("Kate {i}")})).await.status() }
    });
    let statuses = futures::future::join_all(updates).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT), "{statuses:?}");
    let accepted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(accepted > 0);
    let history: Vec<Value> = app.get(&format!("/api/audit/User/{id}"), Some(&admin)).await.json().await.unwrap();
    let updated: Vec<&Value> = history.iter().filter(|e| e["event_type"] == "ProfileUpdated").collect();
    assert_eq!(updated.len(), accepted, "one event per accepted command");
    let names: std::collections::HashSet<&str> =
        updated.iter().map(|e| e["payload"]["ProfileUpdated"]["display_name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), accepted, "no event stored twice");
    let sequences: Vec<i64> = history.iter().map(|e| e["sequence"].as_i64().unwrap()).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "sequences are gapless: {sequences:?}");
}
